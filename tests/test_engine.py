"""The training engine on a toy model: learning, exact resume, LR schedule, best checkpoint, NaN guard, run folder."""

from __future__ import annotations

import errno
import json
import logging
import os
import random
import subprocess
import sys
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from torch import nn

import utils.run_dir as run_dir_module
from utils.batching import EpochBatchSampler, SequentialBatchSampler
from utils.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from utils.ema import EMA
from utils.engine import COLLECTIVE_TIMEOUT, EngineConfig, NonFiniteLossError, train
from utils.lr_schedule import lr_at_step, lr_factor
from utils.run_dir import RunDir, RunDirError
from utils.seed import get_rng_state, set_rng_state, set_seed

META = {"stage": "test", "model_name": "Toy", "model_args": {"width": 16}, "dataset": {"name": "toy"},
        "config": {"lr": 1e-2}, "parent": None}


class Toy(nn.Module):
    """Tiny MLP with dropout (model randomness) and a running-mean buffer updated in forward (like EMA codebooks)."""

    def __init__(self, width: int = 16) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(4, width), nn.ReLU(), nn.Dropout(0.1), nn.Linear(width, 2))
        self.register_buffer("running_mean", torch.zeros(4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            self.running_mean.mul_(0.9).add_(0.1 * x.mean(0).detach())
        return self.net(x)


class ToyData(torch.utils.data.Dataset):
    """Linear targets; every read adds noise from the global torch and numpy RNGs (like random crops)."""

    def __init__(self, n: int = 48, nan_index: int | None = None) -> None:
        g = torch.Generator().manual_seed(0)
        self.x = torch.randn(n, 4, generator=g)
        self.y = self.x[:, :2] * 2.0 - self.x[:, 2:]
        if nan_index is not None:
            self.x[nan_index, 0] = float("nan")

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        noise = 0.01 * torch.randn(4) + 0.01 * float(np.random.rand()) + 0.01 * random.random()
        return {"x": self.x[i] + noise, "y": self.y[i]}


def loss_fn(model: nn.Module, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict]:
    pred = model(batch["x"])
    mse = nn.functional.mse_loss(pred, batch["y"])
    l1 = (pred - batch["y"]).abs().mean()
    return mse + 0.1 * l1, {"mse": mse.detach(), "l1": float(l1.detach())}


def make_cfg(**kw) -> EngineConfig:
    base = dict(max_iters=24, batch_size=8, lr=1e-2, warm_up_iter=4, milestones=(16,), lr_decay=0.5, log_every=5,
                save_every=5, eval_every=5, seed=7, min_free_bytes=0, best_metric="val_loss")
    base.update(kw)
    return EngineConfig(**base)


def run_toy(tmp_path: Path, name: str, cfg: EngineConfig, data: ToyData | None = None, val_fn=None):
    set_seed(0)  # identical init for every run
    run = RunDir(str(tmp_path / "checkpoints"), "t2m", name)
    result = train(Toy(), data or ToyData(), loss_fn, cfg, run, checkpoint_meta=META, val_fn=val_fn)
    return run, result


def read_log(run: RunDir) -> list[dict]:
    with open(run.train_log_path) as f:
        return [json.loads(line) for line in f]


def assert_same_tree(a, b, where="") -> None:
    assert type(a) is type(b), where
    if isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for k in a:
            assert_same_tree(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same_tree(x, y, f"{where}[{i}]")
    elif isinstance(a, torch.Tensor):
        assert a.dtype == b.dtype and torch.equal(a, b), where
    else:
        assert a == b, where


def val_loss(model: nn.Module) -> dict[str, float]:
    data = ToyData()
    torch.randn(3)  # validation that consumes RNG must not change training
    return {"val_loss": float(nn.functional.mse_loss(model(data.x), data.y))}


# ---------------------------------------------------------------------------------------------------------------------


def test_lr_schedule_warm_up_and_milestones():
    kw = dict(warm_up_iter=4, milestones=[10, 20], lr_decay=0.1)
    assert [lr_factor(s, **kw) for s in range(5)] == pytest.approx([0.25, 0.5, 0.75, 1.0, 1.0])
    assert lr_factor(9, **kw) == 1.0
    assert lr_factor(10, **kw) == pytest.approx(0.1)  # milestone at the global step, not warm_up_iter later
    assert lr_factor(19, **kw) == pytest.approx(0.1)
    assert lr_factor(20, **kw) == pytest.approx(0.01)
    assert lr_at_step(25, 2e-4, **kw) == pytest.approx(2e-6)
    assert lr_factor(0, warm_up_iter=0, milestones=[], lr_decay=0.1) == 1.0
    with pytest.raises(ValueError, match="step"):
        lr_factor(-1, **kw)


def test_loss_goes_down_and_lr_follows_schedule(tmp_path):
    run, result = run_toy(tmp_path, "learn", make_cfg(max_iters=60, ema_decay=0.9, milestones=(40,), grad_clip=5.0),
                          val_fn=val_loss)
    log = read_log(run)
    assert [row["step"] for row in log] == list(range(1, 61))
    first, last = np.mean([r["loss"] for r in log[:6]]), np.mean([r["loss"] for r in log[-6:]])
    assert last < 0.5 * first
    assert [r["lr"] for r in log[:5]] == pytest.approx([2.5e-3, 5e-3, 7.5e-3, 1e-2, 1e-2])
    assert log[39]["lr"] == pytest.approx(1e-2) and log[40]["lr"] == pytest.approx(5e-3)
    assert result.step == 60 and result.logs["loss"] == pytest.approx(np.mean([r["loss"] for r in log[-5:]]))
    assert set(result.logs) >= {"loss", "mse", "l1", "lr"}
    events = EventAccumulator(run.model_dir)
    events.Reload()
    tags = set(events.Tags()["scalars"])
    assert tags == {"Train/loss", "Train/mse", "Train/l1", "Train/lr", "Train/grad_norm", "Val/val_loss",
                    "Best/val_loss"}
    assert [e.step for e in events.Scalars("Train/loss")] == list(range(5, 61, 5))
    assert os.path.isfile(run.log_file)


def test_exact_resume_is_bitwise(tmp_path):
    cfg = make_cfg(ema_decay=0.8, grad_clip=1.0)
    full, _ = run_toy(tmp_path, "full", cfg, val_fn=val_loss)
    half, _ = run_toy(tmp_path, "half", make_cfg(ema_decay=0.8, grad_clip=1.0, max_iters=13), val_fn=val_loss)
    assert load_checkpoint(half.latest_path)["data_state"]["batches_done"] == 1  # stopped mid-epoch (6 per epoch)
    with open(half.train_log_path, "a") as f:  # steps logged after the last save of a killed run are dropped
        f.write(json.dumps({"step": 14, "loss": 0.0, "lr": 0.0}) + "\n")
    set_seed(123)  # whatever the process did before, resume restores the saved RNG states
    train(Toy(), ToyData(), loss_fn, make_cfg(ema_decay=0.8, grad_clip=1.0, is_continue=True), half,
          checkpoint_meta=META, val_fn=val_loss)
    a, b = load_checkpoint(full.latest_path), load_checkpoint(half.latest_path)
    for key in ("model", "optimizer", "ema", "step", "epoch", "rng", "data_state", "best", "metrics"):
        assert_same_tree(a[key], b[key], key)
    assert "running_mean" in a["model"] and a["model"]["running_mean"].abs().sum() > 0
    assert read_log(full) == read_log(half)  # every per-step loss and lr, bit for bit
    assert_same_tree(load_checkpoint(full.best_path("val_loss"))["model"],
                     load_checkpoint(half.best_path("val_loss"))["model"])
    no_val, _ = run_toy(tmp_path, "no_val", cfg)  # validation (which draws random numbers) leaves training alone
    assert read_log(no_val) == read_log(full)
    assert_same_tree(load_checkpoint(no_val.latest_path)["model"], a["model"])


def test_resume_past_the_end_trains_nothing_and_says_so(tmp_path, caplog):
    run, _ = run_toy(tmp_path, "done", make_cfg(max_iters=12))
    before = load_checkpoint(run.latest_path)
    with caplog.at_level(logging.INFO, logger="utils.engine"):
        result = train(Toy(), ToyData(), loss_fn, make_cfg(max_iters=8, is_continue=True), run, checkpoint_meta=META)
    assert result.step == 12
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING and "nothing left to train" in r.message]
    assert len(warnings) == 1 and "at step 12 and the run is set to 8 steps" in warnings[0].message
    assert_same_tree(load_checkpoint(run.latest_path)["model"], before["model"])


def test_data_loading_does_not_depend_on_workers(tmp_path):
    # 15 steps span three epochs of 6 batches, served by the same (persistent) workers.
    run0, _ = run_toy(tmp_path, "w0", make_cfg(max_iters=15, num_workers=0))
    run2, _ = run_toy(tmp_path, "w2", make_cfg(max_iters=15, num_workers=2))
    assert read_log(run0) == read_log(run2)
    # resumed mid-epoch with workers: the same batches as the uninterrupted run without
    half, _ = run_toy(tmp_path, "half", make_cfg(max_iters=8, num_workers=2))
    train(Toy(), ToyData(), loss_fn, make_cfg(max_iters=15, num_workers=2, is_continue=True), half,
          checkpoint_meta=META)
    assert read_log(half) == read_log(run0)


def test_batch_sampler_splits_the_global_batch():
    single = list(EpochBatchSampler(20, 8, seed=1, epoch=3))
    ranks = [list(EpochBatchSampler(20, 8, seed=1, epoch=3, rank=r, world_size=2)) for r in range(2)]
    assert len(single) == 2  # 20 // 8, last partial batch dropped
    for b, batch in enumerate(single):
        assert ranks[0][b] + ranks[1][b] == batch
    assert list(EpochBatchSampler(20, 8, seed=1, epoch=3, start=1)) == single[1:]
    assert single != list(EpochBatchSampler(20, 8, seed=1, epoch=4))
    with pytest.raises(ValueError, match="divisible"):
        EpochBatchSampler(20, 8, seed=1, epoch=0, world_size=3)
    with pytest.raises(ValueError, match="fewer than one batch"):
        EpochBatchSampler(5, 8, seed=1, epoch=0)


def test_sequential_sampler_keeps_dataset_order_and_every_sample():
    batches = list(SequentialBatchSampler(20, 8, seed=1))
    assert len(SequentialBatchSampler(20, 8, seed=1)) == len(batches) == 3
    assert [[i for i, _ in batch] for batch in batches] == [list(range(8)), list(range(8, 16)), list(range(16, 20))]
    # A sample's seed depends on the seed alone, not on how the samples are batched.
    seeds = [s for batch in batches for _, s in batch]
    assert seeds == [s for batch in SequentialBatchSampler(20, 3, seed=1) for _, s in batch]
    assert len(set(seeds)) == 20 and seeds != [s for batch in SequentialBatchSampler(20, 8, seed=2) for _, s in batch]
    with pytest.raises(ValueError, match="batch_size 0"):
        SequentialBatchSampler(20, 0, seed=1)


def test_best_checkpoint_follows_the_metric_and_survives_resume(tmp_path):
    scores = iter([3.0, 2.0, 2.5, 1.0, 1.5, 0.5])
    cfg = make_cfg(max_iters=20, ema_decay=0.5, best_metric="fid")
    run, result = run_toy(tmp_path, "best", cfg, val_fn=lambda model: {"fid": next(scores), "top1": 0.1})
    assert result.best_value == 1.0 and result.best_step == 20 and result.best_path == run.best_path()
    best = load_checkpoint(run.best_path())
    assert best["best"] == {"metric": "fid", "mode": "min", "value": 1.0, "step": 20, "evaluated_with": "ema"}
    assert best["metrics"] == {"fid": 1.0, "top1": pytest.approx(0.1)}
    assert best["model_name"] == "Toy" and best["model_args"] == {"width": 16} and "optimizer" not in best
    assert_same_tree(best["ema"], load_checkpoint(run.latest_path)["ema"])  # step-20 weights, used for the eval
    train(Toy(), ToyData(), loss_fn, make_cfg(max_iters=25, ema_decay=0.5, best_metric="fid", is_continue=True), run,
          checkpoint_meta=META, val_fn=lambda model: {"fid": next(scores), "top1": 0.1})
    assert load_checkpoint(run.best_path())["best"]["step"] == 20  # 1.5 is worse than the restored 1.0
    resume_cfg = make_cfg(max_iters=30, ema_decay=0.5, best_metric="fid", is_continue=True)
    result = train(Toy(), ToyData(), loss_fn, resume_cfg, run, checkpoint_meta=META,
                   val_fn=lambda model: {"fid": next(scores), "top1": 0.1})
    assert result.best_value == 0.5 and load_checkpoint(run.best_path())["best"]["step"] == 30


def test_the_result_says_which_step_its_validation_metrics_are_from(tmp_path):
    # Validation runs every eval_every (5) steps: a run of 12 steps last validated at step 10.
    run, result = run_toy(tmp_path, "stale", make_cfg(max_iters=12), val_fn=val_loss)
    assert result.step == 12 and result.metrics_step == 10
    assert result.summary().startswith("step 12; last validation, at step 10: {'val_loss': ")
    result = train(Toy(), ToyData(), loss_fn, make_cfg(max_iters=13, is_continue=True), run, checkpoint_meta=META,
                   val_fn=val_loss)
    assert (result.step, result.metrics_step) == (13, 10)  # kept across the resume
    result = train(Toy(), ToyData(), loss_fn, make_cfg(max_iters=15, is_continue=True), run, checkpoint_meta=META,
                   val_fn=val_loss)
    assert result.metrics_step == 15 and result.summary().startswith("step 15: {'val_loss': ")
    _, result = run_toy(tmp_path, "none", make_cfg(max_iters=3), val_fn=val_loss)
    assert result.summary() == "step 3 (no validation ran)"


def test_best_metric_missing_from_val_fn_is_an_error(tmp_path):
    with pytest.raises(KeyError, match="lacks best_metric .val_loss."):
        run_toy(tmp_path, "nometric", make_cfg(max_iters=5), val_fn=lambda model: {"mpjpe": 1.0})


def test_nan_loss_stops_saves_batch_and_keeps_latest(tmp_path):
    cfg = make_cfg(max_iters=40, save_every=2)
    with pytest.raises(NonFiniteLossError, match="non-finite loss") as info:
        run_toy(tmp_path, "nan", cfg, data=ToyData(n=48, nan_index=30))
    run = RunDir(str(tmp_path / "checkpoints"), "t2m", "nan")
    dumps = [n for n in os.listdir(run.model_dir) if n.startswith("nan_batch_step")]
    assert len(dumps) == 1 and dumps[0] in str(info.value) and run.latest_path in str(info.value)
    bad_step = int(dumps[0][len("nan_batch_step"):-3])
    dump = load_checkpoint(os.path.join(run.model_dir, dumps[0]))
    assert dump["step"] == bad_step and torch.isnan(dump["batch"]["x"]).any()
    latest = load_checkpoint(run.latest_path)
    assert latest["step"] == (bad_step - 1) // 2 * 2
    assert all(torch.isfinite(t).all() for t in latest["model"].values())
    assert [r["step"] for r in read_log(run)] == list(range(1, bad_step))


def test_the_nan_batch_dump_of_a_batch_with_numpy_scalars_loads(tmp_path):
    # A collate function may leave numpy scalars and named tuples in the batch; the dump turns them into plain values,
    # so that it loads as the error message says it can (weights_only) rather than failing to be written.
    class Pair(NamedTuple):
        x: torch.Tensor
        scale: np.float64

    def collate(items):
        return {"pair": Pair(torch.stack([i["x"] for i in items]), np.float64(2.0)),
                "y": torch.stack([i["y"] for i in items]), "fps": np.float32(20.0), "name": np.str_("clip"),
                "flags": np.array([True, False]), "names": np.array(["a", "b"]), "objects": np.array([None])}

    def loss(model, batch):
        return loss_fn(model, {"x": batch["pair"].x * batch["pair"].scale, "y": batch["y"]})

    set_seed(0)
    run = RunDir(str(tmp_path / "checkpoints"), "t2m", "nan_numpy")
    with pytest.raises(NonFiniteLossError, match="non-finite loss"):
        train(Toy(), ToyData(n=8, nan_index=3), loss, make_cfg(max_iters=2), run, checkpoint_meta=META,
              collate_fn=collate)
    dump = load_checkpoint(os.path.join(run.model_dir, "nan_batch_step1.pt"))
    assert dump["batch"]["pair"][1] == 2.0 and dump["batch"]["fps"] == 20.0 and dump["batch"]["name"] == "clip"
    assert torch.isnan(dump["batch"]["pair"][0]).any() and dump["batch"]["flags"].tolist() == [True, False]
    assert dump["batch"]["names"] == ["a", "b"] and dump["batch"]["objects"] == "array([None], dtype=object)"


def test_unwritable_run_dir_fails_before_training(tmp_path, monkeypatch):
    calls = []

    def counting_loss(model, batch):
        calls.append(1)
        return loss_fn(model, batch)

    parent = tmp_path / "readonly"
    parent.mkdir()
    run = RunDir(str(parent), "t2m", "ro")
    os.chmod(parent, 0o500)
    if os.access(parent, os.W_OK):  # root ignores permissions: simulate the failing write instead
        def refuse(path, nbytes):
            raise OSError(errno.EROFS, "Read-only file system", path)

        monkeypatch.setattr(run_dir_module, "_write_probe", refuse)
    try:
        with pytest.raises(RunDirError, match="cannot"):
            train(Toy(), ToyData(), counting_loss, make_cfg(), run, checkpoint_meta=META)
    finally:
        os.chmod(parent, 0o700)
    assert calls == [] and not os.path.exists(run.latest_path)


def test_full_disk_fails_at_start(tmp_path, monkeypatch):
    usage = run_dir_module.shutil.disk_usage(tmp_path)
    monkeypatch.setattr(run_dir_module.shutil, "disk_usage", lambda p: usage._replace(free=10 * 2**20))
    run = RunDir(str(tmp_path / "checkpoints"), "t2m", "full")
    with pytest.raises(RunDirError, match="only 10 MiB free"):
        train(Toy(), ToyData(), loss_fn, make_cfg(min_free_bytes=2**30), run, checkpoint_meta=META)


def test_every_written_file_loads_weights_only(tmp_path):
    run, _ = run_toy(tmp_path, "files", make_cfg(max_iters=10, ema_decay=0.9), val_fn=val_loss)
    written = [n for n in os.listdir(run.model_dir) if n.endswith((".tar", ".pt"))]
    assert sorted(written) == ["latest.tar", "net_best_val_loss.tar"]
    for name in written:
        state = torch.load(os.path.join(run.model_dir, name), weights_only=True)
        assert state["model_name"] == "Toy" and state["config"] == META["config"]
    assert not [n for n in os.listdir(run.model_dir) if n.startswith(".tmp-")]


def test_resume_errors_are_clear(tmp_path):
    with pytest.raises(CheckpointError, match="no checkpoint to resume"):
        run_toy(tmp_path, "missing", make_cfg(is_continue=True))
    run, _ = run_toy(tmp_path, "other", make_cfg(max_iters=2))
    with pytest.raises(CheckpointError, match="model_name"):
        train(Toy(), ToyData(), loss_fn, make_cfg(is_continue=True), run,
              checkpoint_meta={**META, "model_name": "Other"})
    with pytest.raises(RunDirError, match="pass --is_continue"):  # a forgotten flag must not wipe a run
        train(Toy(), ToyData(), loss_fn, make_cfg(), run, checkpoint_meta=META)
    with pytest.raises(ValueError, match="reserved"):
        train(Toy(), ToyData(), loss_fn, make_cfg(), run, checkpoint_meta={**META, "step": 3})
    # A run saved without EMA, resumed with one (train_MARDM.py's default 0.9999), says how to resume it.
    with pytest.raises(CheckpointError, match=r"EMA is on \(--ema_decay 0\.9\) but the checkpoint has no EMA weights; "
                                              r"resume with --ema_decay none"):
        train(Toy(), ToyData(), loss_fn, make_cfg(is_continue=True, ema_decay=0.9), run, checkpoint_meta=META)


def test_stale_temporaries_are_removed(tmp_path):
    run = RunDir(str(tmp_path / "checkpoints"), "t2m", "stale")
    run.make_dirs()
    stale = os.path.join(run.model_dir, ".tmp-latest.tar.abc")
    Path(stale).write_bytes(b"partial")
    run_toy(tmp_path, "stale", make_cfg(max_iters=1))
    assert not os.path.exists(stale)


def test_bf16_mixed_precision_trains(tmp_path):
    run, result = run_toy(tmp_path, "bf16", make_cfg(max_iters=30, mixed_precision="bf16"))
    log = read_log(run)
    assert np.isfinite([r["loss"] for r in log]).all()
    assert np.mean([r["loss"] for r in log[-5:]]) < np.mean([r["loss"] for r in log[:5]])
    assert load_checkpoint(run.latest_path)["model"]["net.0.weight"].dtype == torch.float32


def test_ema_averages_parameters_and_copies_buffers():
    model = Toy()
    ema = EMA(model, decay=0.75)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
        model.running_mean.fill_(5.0)
    ema.update(model)
    shadow = ema.state_dict()
    assert torch.allclose(shadow["net.0.weight"], before["net.0.weight"] + 0.25)
    assert torch.equal(shadow["running_mean"], torch.full((4,), 5.0))
    fresh = Toy()
    ema.copy_to(fresh)
    assert torch.allclose(fresh.net[0].weight, before["net.0.weight"] + 0.25)
    fresh.load_state_dict(shadow)  # the saved EMA loads straight into a model
    with pytest.raises(KeyError, match="missing"):
        ema.load_state_dict({"net.0.weight": shadow["net.0.weight"]})


def test_rng_state_round_trip_is_weights_only(tmp_path):
    set_seed(5)
    state = get_rng_state()
    draws = (random.random(), float(np.random.rand()), torch.rand(1).item())
    path = str(tmp_path / "rng.pt")
    save_checkpoint(path, {"rng": state})
    set_seed(6)
    set_rng_state(load_checkpoint(path)["rng"])
    assert (random.random(), float(np.random.rand()), torch.rand(1).item()) == draws


def test_rng_states_of_gpus_this_process_does_not_see_are_left_out(monkeypatch):
    # A run saved with two GPUs visible and resumed with one (another node, CUDA_VISIBLE_DEVICES): torch's
    # set_rng_state_all indexes its generators by position and fails with an IndexError on the missing device.
    set_seed(5)
    state = {**get_rng_state(include_cuda=False), "cuda": [torch.full((8,), 1, dtype=torch.uint8),
                                                          torch.full((8,), 2, dtype=torch.uint8)]}
    restored = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.cuda, "set_rng_state_all", lambda states: restored.extend(states))
    set_rng_state(state)
    assert len(restored) == 1 and torch.equal(restored[0], state["cuda"][0])

def test_run_dir_layout():
    run = RunDir("ck", "t2m", "AE")
    assert run.root == os.path.join("ck", "t2m", "AE")
    assert run.latest_path == os.path.join("ck", "t2m", "AE", "model", "latest.tar")
    assert run.best_path() == os.path.join("ck", "t2m", "AE", "model", "net_best_fid.tar")
    assert run.config_path == os.path.join("ck", "t2m", "AE", "opt.yaml")
    assert run.eval_dir == os.path.join("ck", "t2m", "AE", "eval")
    assert run.generation_dir == os.path.join("generation", "AE_t2m")
    with pytest.raises(RunDirError, match="--name"):
        RunDir("ck", "t2m", "a/b")


def test_a_launcher_precision_the_run_does_not_use_is_reported(tmp_path, monkeypatch, caplog):
    # What `accelerate launch --mixed_precision bf16` (or its saved config) sets for the script.
    monkeypatch.setenv("ACCELERATE_MIXED_PRECISION", "bf16")
    with caplog.at_level(logging.WARNING, logger="utils.engine"):
        run_toy(tmp_path, "launcher", make_cfg(max_iters=2))
    assert "accelerate launch asks for mixed precision bf16, but this run trains with --mixed_precision no" \
        in caplog.text
    caplog.clear()
    monkeypatch.setenv("ACCELERATE_MIXED_PRECISION", "no")
    with caplog.at_level(logging.WARNING, logger="utils.engine"):
        run_toy(tmp_path, "agreed", make_cfg(max_iters=2))
    assert "accelerate launch asks" not in caplog.text


def test_engine_config_validates():
    with pytest.raises(ValueError, match="mixed_precision"):
        make_cfg(mixed_precision="fp8")
    with pytest.raises(ValueError, match="ema_decay"):
        make_cfg(ema_decay=1.0)


DDP_SCRIPT = """
import sys, torch
sys.path.insert(0, {repo!r}); sys.path.insert(0, {tests!r})
torch.set_num_threads(1)
from test_engine import Toy, ToyData, loss_fn, make_cfg, META
from utils.engine import train
from utils.run_dir import RunDir
from utils.seed import set_seed
set_seed(0)
model = Toy()
model.net[2].p = 0.0  # dropout draws differ per process; the comparison is about gradients and data split
train(model, ToyData(), loss_fn, make_cfg(max_iters=8, eval_every=0, save_every=4), RunDir({root!r}, "t2m", "ddp"),
      checkpoint_meta=META)
import torch.distributed as dist
if dist.get_rank() == 1:  # how long this process would wait for the first one's validation
    timeout = dist.group.WORLD._get_backend(torch.device("cpu")).options._timeout
    open({root!r} + "/timeout_s", "w").write(str(timeout.total_seconds()))
"""


@pytest.mark.slow
def test_two_process_cpu_matches_single_process(tmp_path):
    tests = str(Path(__file__).resolve().parent)
    repo = str(Path(tests).parent)
    script = tmp_path / "ddp.py"
    script.write_text(DDP_SCRIPT.format(repo=repo, tests=tests, root=str(tmp_path / "two")))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", str(script)]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-3000:]
    # Validation runs on the first process while the others wait: longer than the backends' default timeouts.
    with open(tmp_path / "two" / "timeout_s") as f:
        assert float(f.read()) == COLLECTIVE_TIMEOUT.total_seconds() >= 3600
    set_seed(0)
    model = Toy()
    model.net[2].p = 0.0
    single = RunDir(str(tmp_path / "one"), "t2m", "ddp")
    train(model, ToyData(), loss_fn, make_cfg(max_iters=8, eval_every=0, save_every=4), single, checkpoint_meta=META)
    two = load_checkpoint(os.path.join(tmp_path, "two", "t2m", "ddp", "model", "latest.tar"))
    one = load_checkpoint(single.latest_path)
    assert len(two["rng"]) == 2
    for key in one["model"]:
        if key != "running_mean":  # DDP broadcasts rank 0's buffers, which saw half of the batch
            assert torch.allclose(one["model"][key], two["model"][key], atol=1e-6), key
    losses_one = [r["loss"] for r in read_log(single)]
    with open(os.path.join(tmp_path, "two", "t2m", "ddp", "model", "train_log.jsonl")) as f:
        losses_two = [json.loads(line)["loss"] for line in f]
    assert losses_one == pytest.approx(losses_two, rel=1e-5)


def test_setup_logging_holds_set_up_records_for_the_run_log(tmp_path) -> None:
    """What a script logs before its run folder exists (``setup_logging(hold=True)``) reaches the log file named
    later, first and at its own level; without ``hold`` it does not; the held records are handed over once, and a
    new ``hold`` drops what an earlier one kept."""
    from utils.logging_utils import setup_logging

    log = logging.getLogger("test_setup_logging_hold")
    root = logging.getLogger()
    before = list(root.handlers), root.level
    try:
        setup_logging(hold=True, is_main=True)
        log.warning("held by a main() that failed before naming its log file")
        setup_logging(hold=True, is_main=True)  # the next main() starts afresh
        log.debug("debug before the folder")
        log.warning("tokenizer warning before the folder")
        log.info("tokenizer info before the folder")
        first = tmp_path / "run" / "train.log"
        setup_logging(str(first), is_main=True)
        log.info("training starts")
        setup_logging(str(tmp_path / "other.log"), is_main=True)  # nothing held any more
        setup_logging(is_main=True)
        log.warning("not held")
        setup_logging(str(tmp_path / "third.log"), is_main=True)
    finally:
        for handler in [h for h in root.handlers if h not in before[0]]:
            root.removeHandler(handler)
            handler.close()
        root.setLevel(before[1])
    lines = first.read_text().splitlines()
    assert [line.split(": ", 1)[1] for line in lines] == ["tokenizer warning before the folder",
                                                          "tokenizer info before the folder", "training starts"]
    assert "WARNING test_setup_logging_hold" in lines[0]
    assert (tmp_path / "other.log").read_text() == "" and (tmp_path / "third.log").read_text() == ""


@pytest.mark.parametrize("grad_clip", [0.0, 1.0])
def test_non_finite_gradients_of_a_finite_loss_stop_before_the_update(tmp_path, grad_clip):
    # sqrt of a negative number in the branch torch.where discards: the loss is finite, its gradients are NaN. Applied,
    # they would make every weight NaN, be saved to latest.tar and blame the next step's batch.
    calls = []

    def nan_gradients_on_third_step(model, batch):
        pred = model(batch["x"])
        loss = nn.functional.mse_loss(pred, batch["y"])
        calls.append(1)
        if len(calls) == 3:
            loss = loss + torch.where(torch.tensor(False), torch.sqrt(-pred.abs().sum() - 1.0), torch.tensor(0.0))
        return loss, {"mse": loss.detach()}

    set_seed(0)
    run = RunDir(str(tmp_path / "checkpoints"), "t2m", "nan_grad")
    with pytest.raises(NonFiniteLossError, match="non-finite gradient") as info:
        train(Toy(), ToyData(), nan_gradients_on_third_step, make_cfg(max_iters=10, save_every=1, grad_clip=grad_clip),
              run, checkpoint_meta=META)
    assert "at step 3" in str(info.value) and os.path.isfile(os.path.join(run.model_dir, "nan_batch_step3.pt"))
    latest = load_checkpoint(run.latest_path)
    assert latest["step"] == 2 and all(torch.isfinite(t).all() for t in latest["model"].values())


def test_engine_config_refuses_a_negative_warm_up_or_decay_before_the_run_starts():
    # Found at the first step, after the step-0 latest.tar was written, these left a run that only --is_continue could
    # restart; a negative decay would flip the sign of the learning rate at the first milestone.
    with pytest.raises(ValueError, match="warm_up_iter must be >= 0"):
        make_cfg(warm_up_iter=-1)
    with pytest.raises(ValueError, match="lr_decay must be >= 0"):
        make_cfg(lr_decay=-0.1)


def test_a_negative_num_workers_is_refused_before_the_step_0_checkpoint(tmp_path):
    # The DataLoader refused it only after the step-0 latest.tar was written: the same command then failed with
    # "latest.tar exists: pass --is_continue".
    with pytest.raises(ValueError, match="num_workers must be >= 0"):
        run_toy(tmp_path, "workers", make_cfg(max_iters=3, num_workers=-1))
    assert not os.path.exists(RunDir(str(tmp_path / "checkpoints"), "t2m", "workers").latest_path)

def test_a_negative_seed_is_refused_by_name():
    # The data order is drawn from numpy seed sequences of (seed, epoch), which failed with a bare "expected
    # non-negative integer" that named neither the flag nor the value.
    with pytest.raises(ValueError, match="seed must be >= 0"):
        make_cfg(seed=-1)
