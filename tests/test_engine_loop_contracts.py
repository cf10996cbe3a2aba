"""The training engine (utils/engine.py, utils/engine_validation.py): contracts the engine tests did not pin yet."""

from __future__ import annotations

import logging
import os
import random
import signal

import numpy as np
import pytest
import torch
import torch._dynamo
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from test_engine import META, Toy, ToyData, loss_fn, make_cfg, read_log, run_toy, val_loss
from test_engine_resume import Killed, killed_at
from torch import nn

import utils.engine as engine
import utils.run_dir as run_dir_module
from utils.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from utils.engine import EngineConfig, check_run_start, compile_model, make_optimizer, train
from utils.engine_validation import run_val_fn
from utils.run_dir import RunDir, RunDirError
from utils.seed import get_rng_state, set_seed
from utils.stop_signals import Stopped, stopping_on_signals

MiB = 2**20


def _resume(run: RunDir, **cfg):
    return train(Toy(), ToyData(), loss_fn, make_cfg(is_continue=True, **cfg), run, checkpoint_meta=META)


def _changed_settings(caplog) -> list[str]:
    return [r.message for r in caplog.records if "resumed with other settings" in r.message]


# -- helpers of the engine: optimizer, compile ------------------------------------------------------------------------

@pytest.mark.parametrize("error", [RuntimeError, ValueError])
def test_make_optimizer_falls_back_to_plain_adamw_with_the_same_settings(monkeypatch, error):
    """Where the fused AdamW kernel is refused (RuntimeError or ValueError), the default AdamW is built with the
    configured lr, betas and weight decay."""
    real = torch.optim.AdamW

    def no_fused(params, **kwargs):
        if kwargs.get("fused"):
            raise error("fused=True is not supported for these parameters")
        return real(params, **kwargs)

    monkeypatch.setattr(torch.optim, "AdamW", no_fused)
    cfg = EngineConfig(max_iters=1, lr=3e-3, betas=(0.8, 0.95), weight_decay=0.05)
    optimizer = make_optimizer(nn.Linear(2, 2), cfg)
    assert isinstance(optimizer, real) and not optimizer.defaults.get("fused")
    assert (optimizer.defaults["lr"], optimizer.defaults["betas"], optimizer.defaults["weight_decay"]) == (
        3e-3, (0.8, 0.95), 0.05)


def test_compile_model_keeps_the_eager_model_when_compile_fails_and_lets_frames_fall_back(monkeypatch, caplog):
    """``compile_model`` turns on dynamo's fallback to eager frames, and returns the model itself, with a warning
    naming the error, when ``torch.compile`` cannot be set up."""

    monkeypatch.setattr(torch._dynamo.config, "suppress_errors", False)
    model = nn.Linear(2, 2)
    compiled = object()
    monkeypatch.setattr(torch, "compile", lambda m: compiled)
    assert compile_model(model) is compiled
    assert torch._dynamo.config.suppress_errors is True

    def broken(m):
        raise RuntimeError("no C++ compiler")

    monkeypatch.setattr(torch, "compile", broken)
    with caplog.at_level(logging.WARNING, logger="utils.engine"):
        assert compile_model(model) is model
    assert "torch.compile failed (RuntimeError: no C++ compiler); training eagerly" in caplog.text


# -- what a start checks before it writes ----------------------------------------------------------------------------

def test_the_disk_check_counts_the_checkpoint_size_and_the_ema_copy(tmp_path, monkeypatch):
    """With ``min_free_bytes`` 0 the start still needs room for the checkpoint the model makes (weights, AdamW
    moments, the temporary file beside the last one) and for the EMA weights when EMA is on."""
    width = 2**16
    weights = sum(t.numel() * t.element_size() for t in Toy(width).state_dict().values())
    free = 2 * weights * 3.5  # room for a run without EMA, not for one with
    usage = run_dir_module.shutil.disk_usage(tmp_path)
    monkeypatch.setattr(run_dir_module.shutil, "disk_usage", lambda p: usage._replace(free=int(free)))
    meta = {**META, "model_args": {"width": width}}
    ema_run = RunDir(str(tmp_path / "checkpoints"), "t2m", "ema")
    with pytest.raises(RunDirError, match=rf"only {int(free // MiB)} MiB free on the file system of "
                                          rf".*ema.model; at least {-(-2 * weights * 4 // MiB)} MiB are needed"):
        train(Toy(width), ToyData(), loss_fn, make_cfg(max_iters=1, min_free_bytes=0, ema_decay=0.9), ema_run,
              checkpoint_meta=meta)
    assert not os.path.exists(ema_run.latest_path)
    plain = RunDir(str(tmp_path / "checkpoints"), "t2m", "plain")
    result = train(Toy(width), ToyData(), loss_fn, make_cfg(max_iters=1, min_free_bytes=0), plain,
                   checkpoint_meta=meta)
    assert result.step == 1


def test_checkpoint_meta_without_a_required_key_or_with_an_engine_key_is_refused_before_the_run_folder(tmp_path):
    """``checkpoint_meta`` lacking ``model_args``, or using a key the engine writes, fails naming the key, before the
    run folder is made."""
    run = RunDir(str(tmp_path / "checkpoints"), "t2m", "meta")
    bad = {k: v for k, v in META.items() if k != "model_args"}
    with pytest.raises(CheckpointError, match=r"checkpoint_meta: missing keys \['model_args'\]"):
        train(Toy(), ToyData(), loss_fn, make_cfg(max_iters=1), run, checkpoint_meta=bad)
    assert not os.path.exists(run.root)
    with pytest.raises(ValueError, match=r"reserved for the engine: \['data_state'\]"):
        train(Toy(), ToyData(), loss_fn, make_cfg(max_iters=1), run, checkpoint_meta={**META, "data_state": {}})
    assert not os.path.exists(run.root)


def test_every_key_the_engine_writes_is_refused_in_checkpoint_meta(tmp_path):
    """A ``checkpoint_meta`` key that ``latest.tar`` also gets from the engine (weights, EMA, RNG, data position,
    loss window, ...) is refused by name rather than overwritten."""
    run, _ = run_toy(tmp_path, "keys", make_cfg(max_iters=1, ema_decay=0.9))
    engine_keys = sorted(set(load_checkpoint(run.latest_path)) - set(META))
    assert {"model", "ema", "optimizer", "rng", "data_state", "loss_window", "log_off_cadence"} <= set(engine_keys)
    for key in engine_keys:
        other = RunDir(str(tmp_path / "checkpoints"), "t2m", f"clash_{key}")
        with pytest.raises(ValueError, match=rf"reserved for the engine: \['{key}'\]"):
            train(Toy(), ToyData(), loss_fn, make_cfg(max_iters=1), other, checkpoint_meta={**META, key: 0})


def test_resume_of_a_missing_run_names_the_checkpoint_file(tmp_path):
    """``--is_continue`` without a ``latest.tar`` names the file it looked for and the three flags that make it."""
    run = RunDir(str(tmp_path / "checkpoints"), "t2m", "missing")
    with pytest.raises(CheckpointError) as info:
        check_run_start(run, True)
    assert f"no checkpoint to resume at {run.latest_path} (" in str(info.value)
    assert "<checkpoints_dir>/<dataset_name>/<name>" in str(info.value)


def test_check_run_start_with_meta_refuses_other_model_arguments_naming_both(tmp_path):
    """Given ``meta``, a resumed start compares the checkpoint's stage, model and model arguments, naming the
    differing entry with the checkpoint's value and the requested one."""
    run, _ = run_toy(tmp_path, "args", make_cfg(max_iters=1))
    check_run_start(run, True, META)
    with pytest.raises(CheckpointError, match=r"model_args differ in 1 entry: 'width': 16 in the checkpoint but 32 "
                                              r"requested"):
        check_run_start(run, True, {**META, "model_args": {"width": 32}})
    with pytest.raises(CheckpointError, match=r"stage is 'test' in the checkpoint but 'generator' was requested"):
        check_run_start(run, True, {**META, "stage": "generator"})


def test_resume_with_other_model_arguments_is_refused(tmp_path):
    """``train`` with ``is_continue`` refuses a checkpoint of the same model name with other arguments."""
    run, _ = run_toy(tmp_path, "resume_args", make_cfg(max_iters=1))
    with pytest.raises(CheckpointError, match=r"latest.tar: model_args differ in 1 entry: 'width': 16 in the "
                                              r"checkpoint but 8 requested"):
        train(Toy(8), ToyData(), loss_fn, make_cfg(max_iters=2, is_continue=True), run,
              checkpoint_meta={**META, "model_args": {"width": 8}})


# -- how a run trains -------------------------------------------------------------------------------------------------

def test_training_depends_on_cfg_seed_not_on_the_callers_random_state(tmp_path):
    """Two runs of the same model and ``seed`` log the same losses whatever the caller's global RNGs held."""
    logs = []
    for i, caller_seed in enumerate((11, 12)):
        set_seed(0)
        model = Toy()
        torch.manual_seed(caller_seed)
        np.random.seed(caller_seed)
        random.seed(caller_seed)
        run = RunDir(str(tmp_path / "checkpoints"), "t2m", f"seed{i}")
        train(model, ToyData(), loss_fn, make_cfg(max_iters=6), run, checkpoint_meta=META)
        logs.append(read_log(run))
    assert logs[0] == logs[1]


def test_eval_every_and_save_every_of_zero_mean_once_per_epoch(tmp_path, monkeypatch):
    """``eval_every`` / ``save_every`` 0: validation and ``latest.tar`` at every epoch end (48 samples, batch 8: 6
    steps), and the last step is saved."""
    saved = []
    real = engine.replace_checkpoint

    def recording(path, state):
        saved.append((os.path.basename(path), state["step"]))
        return real(path, state)

    monkeypatch.setattr(engine, "replace_checkpoint", recording)
    validated = []

    def val_fn(model):
        validated.append(1)
        return val_loss(model)

    _, result = run_toy(tmp_path, "epochs", make_cfg(max_iters=14, eval_every=0, save_every=0), val_fn=val_fn)
    assert len(validated) == 2 and result.metrics_step == 12
    assert [step for name, step in saved if name == "latest.tar"] == [0, 6, 12, 14]


def test_a_model_handed_over_in_eval_mode_trains_in_train_mode(tmp_path):
    """The engine puts the model in train mode (dropout on, running buffers updated) whatever mode it came in."""
    seen = set()

    def recording_loss(model, batch):
        seen.add(model.training)
        return loss_fn(model, batch)

    set_seed(0)
    run = RunDir(str(tmp_path / "checkpoints"), "t2m", "eval_mode")
    train(Toy().eval(), ToyData(), recording_loss, make_cfg(max_iters=2), run, checkpoint_meta=META)
    assert seen == {True}


def test_each_step_starts_without_the_gradients_of_the_step_before(tmp_path):
    """Gradients are cleared after each update: every step's loss sees no gradient left on the parameters."""
    leftover = []

    def recording_loss(model, batch):
        leftover.append(sum(p.grad is not None for p in model.parameters()))
        return loss_fn(model, batch)

    set_seed(0)
    run = RunDir(str(tmp_path / "checkpoints"), "t2m", "grads")
    train(Toy(), ToyData(), recording_loss, make_cfg(max_iters=4), run, checkpoint_meta=META)
    assert leftover == [0, 0, 0, 0]


def test_a_grad_clip_of_zero_leaves_even_a_huge_gradient_unclipped(tmp_path):
    """``grad_clip`` 0 turns clipping off: plain SGD moves the weights by lr times the whole gradient, however large
    (here a norm far above 1e9)."""
    def huge_loss(model, batch):
        loss, logs = loss_fn(model, batch)
        return loss * 1e12, logs

    lr = 1e-12
    set_seed(0)
    before = {k: v.detach().clone() for k, v in Toy().named_parameters()}
    set_seed(0)
    run = RunDir(str(tmp_path / "checkpoints"), "t2m", "huge")
    train(Toy(), ToyData(), huge_loss, make_cfg(max_iters=1, warm_up_iter=0, grad_clip=0.0, lr=lr), run,
          checkpoint_meta=META, optimizer_factory=lambda m: torch.optim.SGD(m.parameters(), lr=lr))
    after = load_checkpoint(run.latest_path)["model"]
    step = torch.sqrt(sum(((after[k] - before[k]) ** 2).sum() for k in before)).item()
    assert step > 10 * lr * 1e9  # clipped at 1e9 the step could not exceed lr * 1e9


def test_each_param_group_follows_the_schedule_from_its_own_base_rate(tmp_path):
    """With an ``optimizer_factory`` of two groups, the schedule scales each group's own lr (warm-up of 4 steps: the
    second step trains at half of each base rate)."""
    def two_groups(model):
        return torch.optim.SGD([{"params": model.net[0].parameters(), "lr": 0.1},
                                {"params": model.net[3].parameters(), "lr": 0.01}])

    set_seed(0)
    run = RunDir(str(tmp_path / "checkpoints"), "t2m", "groups")
    train(Toy(), ToyData(), loss_fn, make_cfg(max_iters=2, lr=1.0, warm_up_iter=4), run, checkpoint_meta=META,
          optimizer_factory=two_groups)
    groups = load_checkpoint(run.latest_path)["optimizer"]["param_groups"]
    assert [g["lr"] for g in groups] == pytest.approx([0.05, 0.005])


def test_each_epoch_reads_the_data_in_a_new_order(tmp_path):
    """Every epoch reads each sample once, in an order drawn for that epoch (48 samples, batch 8: two epochs in 12
    steps)."""
    read = []

    class Recording(ToyData):
        def __getitem__(self, i):
            read.append(int(i))
            return super().__getitem__(i)

    run_toy(tmp_path, "order", make_cfg(max_iters=12), data=Recording())
    first, second = read[:48], read[48:]
    assert sorted(first) == sorted(second) == list(range(48))
    assert first != second


def test_a_run_stopped_in_its_first_step_resumes_from_the_step_0_checkpoint(tmp_path):
    """Before the first step a resumable ``latest.tar`` of step 0 is written; a run stopped inside step 1 resumes
    from it and logs as an uninterrupted one."""
    full, _ = run_toy(tmp_path, "full", make_cfg(max_iters=4, eval_every=0))
    set_seed(0)
    half = RunDir(str(tmp_path / "checkpoints"), "t2m", "half")
    with pytest.raises(Killed):
        train(Toy(), ToyData(), killed_at(1), make_cfg(max_iters=4, eval_every=0), half, checkpoint_meta=META)
    assert load_checkpoint(half.latest_path)["step"] == 0
    set_seed(123)
    train(Toy(), ToyData(), loss_fn, make_cfg(max_iters=4, eval_every=0, is_continue=True), half,
          checkpoint_meta=META)
    assert read_log(half) == read_log(full)


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_a_stop_swallowed_inside_a_step_stops_training_at_the_next_step(tmp_path):
    """SIGTERM whose ``Stopped`` a finalizer swallowed during step 3 stops the run before step 4 trains; the
    checkpoint of step 2 stays."""

    class Finalized:
        def __del__(self) -> None:
            signal.raise_signal(signal.SIGTERM)

    calls = []

    def loss_with_finalizer(model, batch):
        calls.append(1)
        if len(calls) == 3:
            Finalized()
        return loss_fn(model, batch)

    set_seed(0)
    run = RunDir(str(tmp_path / "checkpoints"), "t2m", "stop")
    with pytest.raises(Stopped), stopping_on_signals():
        train(Toy(), ToyData(), loss_with_finalizer, make_cfg(max_iters=10, save_every=2), run, checkpoint_meta=META)
    assert len(calls) == 3
    assert load_checkpoint(run.latest_path)["step"] == 2


def test_tensorboard_points_are_on_disk_when_the_checkpoint_of_their_step_is_written(tmp_path, monkeypatch):
    """When ``latest.tar`` of step 5 is written, the Train/ points of step 5 are already in the event file (a kill
    right after the save keeps them)."""
    seen = {}
    real = engine.replace_checkpoint

    def reading_events(path, state):
        if os.path.basename(path) == "latest.tar" and state["step"] == 5:
            events = EventAccumulator(os.path.dirname(path))
            events.Reload()
            tags = events.Tags()["scalars"]
            seen["steps"] = [e.step for e in events.Scalars("Train/loss")] if "Train/loss" in tags else []
        return real(path, state)

    monkeypatch.setattr(engine, "replace_checkpoint", reading_events)
    run_toy(tmp_path, "tb", make_cfg(max_iters=6, eval_every=0))
    assert seen["steps"] == [5]


def test_the_result_has_no_best_path_when_no_best_checkpoint_was_written(tmp_path):
    """Without validation ``TrainResult.best_path`` is None (no file); with it, the file's path."""
    run, result = run_toy(tmp_path, "nobest", make_cfg(max_iters=3))
    assert result.best_path is None and not os.path.exists(run.best_path("val_loss"))
    run, result = run_toy(tmp_path, "best", make_cfg(max_iters=5), val_fn=val_loss)
    assert result.best_path == run.best_path("val_loss") and os.path.isfile(result.best_path)


# -- best checkpoint --------------------------------------------------------------------------------------------------

def test_a_non_finite_score_never_becomes_the_best(tmp_path):
    """A NaN validation score writes no best checkpoint; the next finite score does."""
    scores = iter([float("nan"), 2.0])
    run, result = run_toy(tmp_path, "nan_score", make_cfg(max_iters=10, best_metric="fid"),
                          val_fn=lambda model: {"fid": next(scores)})
    assert (result.best_value, result.best_step) == (2.0, 10)
    assert load_checkpoint(run.best_path("fid"))["step"] == 10


def test_an_equal_score_keeps_the_earlier_best_in_max_mode(tmp_path):
    """With ``best_mode`` max an equal score does not replace the best checkpoint either."""
    scores = iter([0.5, 0.5])
    run, result = run_toy(tmp_path, "tie_max", make_cfg(max_iters=10, best_metric="top1", best_mode="max"),
                          val_fn=lambda model: {"top1": next(scores)})
    assert (result.best_value, result.best_step) == (0.5, 5)
    assert load_checkpoint(run.best_path("top1"))["step"] == 5


def test_the_best_checkpoint_says_it_was_evaluated_on_the_model_without_ema(tmp_path):
    """Without EMA the best checkpoint records that the score is the trained model's own."""
    run, _ = run_toy(tmp_path, "no_ema", make_cfg(max_iters=5), val_fn=val_loss)
    assert load_checkpoint(run.best_path("val_loss"))["best"]["evaluated_with"] == "model"


def test_a_changed_best_metric_restarts_best_tracking(tmp_path, caplog):
    """Resumed with another ``best_metric``, the old metric's best value is not compared with the new metric: the
    first validation writes ``net_best_<new>.tar``."""
    run, _ = run_toy(tmp_path, "metric", make_cfg(max_iters=5, best_metric="fid"),
                     val_fn=lambda model: {"fid": 1.0, "mpjpe": 5.0})
    with caplog.at_level(logging.WARNING, logger="utils.engine"):
        result = train(Toy(), ToyData(), loss_fn, make_cfg(max_iters=10, best_metric="mpjpe", is_continue=True), run,
                       checkpoint_meta=META, val_fn=lambda model: {"fid": 1.0, "mpjpe": 5.0})
    assert "best checkpoint criterion changed from fid/min to mpjpe/min; best tracking restarts" in caplog.text
    assert (result.best_value, result.best_step) == (5.0, 10) and os.path.isfile(run.best_path("mpjpe"))


# -- resume -----------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("key, value, shown", [
    ("lr", 2e-2, "lr 0.01 -> 0.02"), ("warm_up_iter", 2, "warm_up_iter 4 -> 2"),
    ("milestones", (8,), "milestones [16] -> [8]"), ("weight_decay", 0.1, "weight_decay 0.0 -> 0.1"),
    ("betas", (0.8, 0.9), "betas [0.9, 0.99] -> [0.8, 0.9]"), ("grad_clip", 1.0, "grad_clip 0.0 -> 1.0")])
def test_resume_reports_each_changed_schedule_setting(tmp_path, caplog, key, value, shown):
    """Every schedule setting that differs from the run's own is named with both values on resume."""
    run, _ = run_toy(tmp_path, key, make_cfg(max_iters=6, eval_every=0))
    with caplog.at_level(logging.WARNING, logger="utils.engine"):
        _resume(run, max_iters=6, eval_every=0, **{key: value})
    changed = _changed_settings(caplog)
    assert len(changed) == 1 and f"saved with: {shown}; the new values apply from step 6" in changed[0]


def test_a_checkpoint_from_before_a_setting_was_recorded_resumes_without_reporting_it(tmp_path, caplog):
    """A ``latest.tar`` whose engine settings lack a key (or the whole record), as older runs wrote them, resumes;
    only the settings it has are compared."""
    run, _ = run_toy(tmp_path, "old", make_cfg(max_iters=6, eval_every=0))
    state = load_checkpoint(run.latest_path)
    del state["engine"]["ema_decay"], state["engine"]["mixed_precision"]
    save_checkpoint(run.latest_path, state)
    with caplog.at_level(logging.WARNING, logger="utils.engine"):
        result = _resume(run, max_iters=8, eval_every=0, mixed_precision="bf16")
    assert result.step == 8 and [m.split("saved with: ")[1].split(";")[0] for m in _changed_settings(caplog)] == [
        "max_iters 6 -> 8"]
    state = load_checkpoint(run.latest_path)
    del state["engine"]
    save_checkpoint(run.latest_path, state)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="utils.engine"):
        assert _resume(run, max_iters=9, eval_every=0, lr=2e-2).step == 9
    assert _changed_settings(caplog) == []


def test_a_checkpoint_without_its_best_record_is_refused_by_name(tmp_path):
    """A ``latest.tar`` lacking ``best`` is refused naming the file and the key, not with a bare KeyError."""
    run, _ = run_toy(tmp_path, "nobest", make_cfg(max_iters=2))
    state = load_checkpoint(run.latest_path)
    del state["best"]
    save_checkpoint(run.latest_path, state)
    with pytest.raises(CheckpointError, match=r"latest.tar: missing keys \['best'\]"):
        _resume(run, max_iters=4)


def test_resume_with_another_batch_size_starts_the_next_epoch(tmp_path, caplog):
    """A changed batch size changes the data order: resume says so and starts the next epoch."""
    run, _ = run_toy(tmp_path, "bs", make_cfg(max_iters=8))
    with caplog.at_level(logging.WARNING, logger="utils.engine"):
        _resume(run, max_iters=9, batch_size=4)
    assert "resuming at the start of the next epoch" in caplog.text
    data = load_checkpoint(run.latest_path)["data_state"]
    assert (data["epoch"], data["batches_done"], data["batch_size"]) == (2, 1, 4)


def test_resume_with_another_seed_at_an_epoch_end_starts_the_epoch_that_follows_it(tmp_path):
    """Saved at the end of epoch 0 (6 of 6 batches), a resume with another seed trains epoch 1, skipping none."""
    run, _ = run_toy(tmp_path, "edge", make_cfg(max_iters=6))
    assert (load_checkpoint(run.latest_path)["data_state"]["epoch"],
            load_checkpoint(run.latest_path)["data_state"]["batches_done"]) == (1, 0)
    _resume(run, max_iters=7, seed=8)
    data = load_checkpoint(run.latest_path)["data_state"]
    assert (data["epoch"], data["batches_done"]) == (1, 1)


def test_rng_states_of_another_process_count_are_not_restored(tmp_path, caplog):
    """A ``latest.tar`` saved by two processes and resumed by one reseeds and says the resume is not bitwise exact,
    rather than taking one process's RNG state."""
    run, _ = run_toy(tmp_path, "procs", make_cfg(max_iters=2))
    state = load_checkpoint(run.latest_path)
    state["rng"] = [state["rng"][0], get_rng_state()]
    save_checkpoint(run.latest_path, state)
    with caplog.at_level(logging.WARNING, logger="utils.engine"):
        _resume(run, max_iters=3)
    assert "saved by 2 processes, resumed with 1; RNG streams are reseeded (not bitwise exact)" in caplog.text


def test_resuming_a_finished_run_at_its_length_says_so_without_a_warning(tmp_path, caplog):
    """A run resumed with the length it finished at trains nothing and logs that at INFO level (a no-op, not a
    likely typo)."""
    run, _ = run_toy(tmp_path, "finished", make_cfg(max_iters=4))
    with caplog.at_level(logging.INFO, logger="utils.engine"):
        assert _resume(run, max_iters=4).step == 4
    done = [r for r in caplog.records if "nothing left to train" in r.message]
    assert [r.levelno for r in done] == [logging.INFO]
    assert "is at step 4 and the run is set to 4 steps" in done[0].message


# -- validation -------------------------------------------------------------------------------------------------------

def test_a_failing_validation_still_restores_train_mode_forward_and_rng():
    """When ``val_fn`` raises, the model is back in train mode with its replaced forward, and the global RNG state
    is as before the call."""
    net = nn.Linear(1, 1).train()
    patched = net.forward
    net.__dict__["_original_forward"] = nn.Linear.forward.__get__(net)
    net.forward = patched

    def failing(model):
        torch.rand(5)
        raise ZeroDivisionError("metric of an empty split")

    set_seed(3)
    expected = torch.rand(1)
    set_seed(3)
    with pytest.raises(ZeroDivisionError):
        run_val_fn(failing, net, None, None)
    assert net.training and net.forward is patched
    assert torch.equal(torch.rand(1), expected)


# -- inputs that were handled badly ------------------------------------------------------------------------------------

def test_a_latest_checkpoint_without_its_metrics_is_refused_by_name(tmp_path):
    """A ``latest.tar`` lacking ``metrics`` is refused naming the file and the key, as a missing ``best`` or ``rng``
    is (today: a bare ``KeyError: 'metrics'`` naming no file)."""
    run, _ = run_toy(tmp_path, "nometrics", make_cfg(max_iters=2))
    state = load_checkpoint(run.latest_path)
    del state["metrics"]
    save_checkpoint(run.latest_path, state)
    with pytest.raises(CheckpointError, match=r"latest.tar: missing keys \['metrics'\]"):
        train(Toy(), ToyData(), loss_fn, make_cfg(max_iters=4, is_continue=True), run, checkpoint_meta=META)


def test_a_validation_value_that_is_not_a_number_is_named(tmp_path):
    """``val_fn`` returning a metric that is not one number (a per-class tensor) fails naming that metric (today: a
    bare "only one element tensors can be converted to Python scalars" naming neither the metric nor val_fn)."""
    def per_class(model):
        return {"val_loss": 1.0, "top1": torch.tensor([0.5, 0.7])}

    with pytest.raises((ValueError, TypeError), match="top1"):
        run_toy(tmp_path, "per_class", make_cfg(max_iters=5), val_fn=per_class)


def test_resume_with_another_optimizer_group_layout_names_the_checkpoint(tmp_path):
    """A run resumed with an optimizer of other parameter groups (a changed ``optimizer_factory``) is refused naming
    ``latest.tar`` and its optimizer state (today: torch's bare "loaded state dict has a different number of
    parameter groups", naming no file)."""
    def one_group(model):
        return torch.optim.AdamW(model.parameters(), lr=1e-2)

    def two_groups(model):
        return torch.optim.AdamW([{"params": model.net[0].parameters()}, {"params": model.net[3].parameters()}],
                                 lr=1e-2)

    torch.manual_seed(0)
    run = RunDir(str(tmp_path / "checkpoints"), "t2m", "groups")
    train(Toy(), ToyData(), loss_fn, make_cfg(max_iters=2), run, checkpoint_meta=META, optimizer_factory=one_group)
    with pytest.raises(CheckpointError, match=r"latest.tar.*optimizer"):
        train(Toy(), ToyData(), loss_fn, make_cfg(max_iters=4, is_continue=True), run, checkpoint_meta=META,
              optimizer_factory=two_groups)
