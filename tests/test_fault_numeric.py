"""Numerical faults: a non-finite loss stops a real training script with a message, saves the offending batch and keeps
the last good checkpoint; --detect_anomaly exists on every training script, is off by default and, when given, turns
autograd anomaly detection on."""

from __future__ import annotations

import ast
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from fault_helpers import (
    REPO,
    TOKENIZER_FLAGS,
    read_log,
    run_root,
    run_script,
    synthetic_copy,
    tail,
    write_text_encoder,
    write_tokenizer,
)

import train_AE
import train_MARDM
import utils.tokenizer_stage as tokenizer_stage
from options.config import parse_with_config
from options.generator_options import get_train_mardm_parser
from options.tokenizer_options import get_train_ae_parser
from utils.batching import EpochBatchSampler
from utils.checkpoint import load_checkpoint
from utils.data_validation import validate_dataset
from utils.dataset_specs import get_dataset_spec
from utils.datasets import MotionWindowDataset
from utils.engine import EngineConfig, NonFiniteLossError
from utils.normalization import load_mean_std

HUGE = 3.0e38  # finite in float32 (so it passes validation) but overflows once normalised and convolved


def _clip_of_step(data_root: str, step: int, batch_size: int, seed: int) -> str:
    """The id of the first clip the tokenizer engine trains on at ``step`` (epoch 0, one window per clip)."""
    spec = get_dataset_spec("synthetic", data_root)
    windows = MotionWindowDataset(spec, "train", *load_mean_std(spec, data_root), progress=False)
    item = int(EpochBatchSampler(len(windows), batch_size, seed, epoch=0).perm[(step - 1) * batch_size])
    return windows.index.clip_id(int(windows.clips[item]))


@pytest.mark.slow
def test_huge_value_in_the_data_stops_train_vq_and_keeps_the_last_good_checkpoint(tmp_path, synthetic_root):
    bad_step, seed = 4, 21
    root = synthetic_copy(synthetic_root, tmp_path / "data")
    clip = _clip_of_step(str(root), bad_step, batch_size=8, seed=seed)
    motion_file = root / "new_joint_vecs" / f"{clip}.npy"
    np.save(motion_file, np.full_like(np.load(motion_file), HUGE))
    assert validate_dataset(get_dataset_spec("synthetic", str(root)), str(root), texts=False).ok  # finite: passes

    done = run_script("train_vq.py", [*TOKENIZER_FLAGS, "--data_root", str(root), "--model", "VQVAE_Tiny",
                                      "--max_iters", "12", "--save_every", "2", "--eval_every", "100",
                                      "--seed", str(seed), "--checkpoints_dir", str(tmp_path / "ck"), "--name", "nan"])
    model_dir = run_root(tmp_path / "ck", "nan") / "model"
    dump = model_dir / f"nan_batch_step{bad_step}.pt"
    assert done.returncode == 1, tail(done)
    message = done.stderr.strip().splitlines()[-1]
    assert message.startswith("utils.engine.NonFiniteLossError: non-finite loss"), tail(done)
    for part in (f"at step {bad_step}", str(dump), str(model_dir / "latest.tar"), "--detect_anomaly"):
        assert part in message, (part, message)

    saved = torch.load(dump, weights_only=True)
    assert saved["step"] == bad_step and not torch.isfinite(saved["loss"])
    assert saved["batch"].shape == (8, 64, 263) and (~torch.isfinite(saved["batch"])).any()
    latest = load_checkpoint(str(model_dir / "latest.tar"))
    assert latest["step"] == bad_step - 2  # the last save before the bad step, untouched
    assert all(torch.isfinite(t).all() for t in latest["model"].values() if t.is_floating_point())
    assert [row["step"] for row in read_log(model_dir.parent)] == list(range(1, bad_step))


def test_nan_loss_stops_train_mardm_and_saves_the_text_batch(tmp_path, synthetic_root, monkeypatch):
    tokenizer = write_tokenizer(tmp_path / "fsq.tar", "FSQ_AE_Tiny", synthetic_root)
    clip = write_text_encoder(tmp_path / "clip")
    real_call = train_MARDM.GeneratorLoss.__call__
    calls = []

    def nan_on_third_step(self, model, batch):
        loss, logs = real_call(self, model, batch)
        calls.append(1)
        return (loss * float("nan"), logs) if len(calls) == 3 else (loss, logs)

    monkeypatch.setattr(train_MARDM.GeneratorLoss, "__call__", nan_on_third_step)
    ckpt = str(tmp_path / "ck")
    args = parse_with_config(get_train_mardm_parser(), [
        "--dataset_name", "synthetic", "--data_root", synthetic_root, "--checkpoints_dir", ckpt, "--name", "g",
        "--model", "FSQ-MARDM-SiT-Tiny", "--ae_ckpt", tokenizer, "--text_encoder", "clip", "--clip_path", clip,
        "--batch_size", "4", "--num_workers", "0", "--max_iters", "6", "--save_every", "2", "--eval_every", "100",
        "--log_every", "1", "--warm_up_iter", "1"])
    with pytest.raises(NonFiniteLossError, match="non-finite loss nan at step 3") as info:
        train_MARDM.main(args)
    model_dir = run_root(ckpt, "g") / "model"
    assert str(model_dir / "nan_batch_step3.pt") in str(info.value)
    saved = load_checkpoint(str(model_dir / "nan_batch_step3.pt"))
    captions, motion, lengths = saved["batch"]
    assert len(captions) == 4 and all(isinstance(c, str) and c for c in captions)
    assert motion.shape[0] == 4 and lengths.shape == (4,)
    assert load_checkpoint(str(model_dir / "latest.tar"))["step"] == 2
    assert [row["step"] for row in read_log(model_dir.parent)] == [1, 2]


def _script_parsers() -> dict[str, object]:
    """Every top-level train_*.py and the parser its ``__main__`` block builds (found in its source)."""
    import importlib

    parsers = {}
    for path in sorted(Path(REPO).glob("train_*.py")):
        tree = ast.parse(path.read_text())
        calls = [node.func.id for node in ast.walk(tree) if isinstance(node, ast.Call)
                 and isinstance(node.func, ast.Name) and node.func.id.startswith("get_") and node.func.id.endswith(
                     "_parser")]
        assert calls, f"{path.name}: no get_*_parser() call found"
        module = importlib.import_module(path.stem)
        parsers[path.name] = getattr(module, calls[-1])()
    return parsers


def test_every_training_script_has_detect_anomaly_off_by_default():
    parsers = _script_parsers()
    assert {"train_AE.py", "train_vq.py", "train_MARDM.py"} <= set(parsers)
    for script, parser in parsers.items():
        assert "--detect_anomaly" in parser._option_string_actions, script
        off, _ = parser.parse_known_args(["--name", "x"])
        on, _ = parser.parse_known_args(["--name", "x", "--detect_anomaly"])
        assert off.detect_anomaly is False and on.detect_anomaly is True, script
        assert EngineConfig.from_namespace(off, max_iters=1).detect_anomaly is False, script
        assert EngineConfig.from_namespace(on, max_iters=1).detect_anomaly is True, script


def test_detect_anomaly_flag_turns_on_anomaly_detection_in_training(tmp_path, synthetic_root, monkeypatch, caplog):
    seen = []
    real_make_loss_fn = tokenizer_stage.make_loss_fn

    def spying_make_loss_fn(*args, **kwargs):
        loss_fn = real_make_loss_fn(*args, **kwargs)

        def loss_and_record(model, batch):
            seen.append(torch.is_anomaly_enabled())
            return loss_fn(model, batch)

        return loss_and_record

    monkeypatch.setattr(tokenizer_stage, "make_loss_fn", spying_make_loss_fn)
    for name, flags in (("plain", []), ("anomaly", ["--detect_anomaly"])):
        args = parse_with_config(get_train_ae_parser(), [
            *TOKENIZER_FLAGS, "--data_root", synthetic_root, "--model", "AE_Tiny", "--max_iters", "2",
            "--save_every", "2", "--eval_every", "100", "--checkpoints_dir", str(tmp_path), "--name", name, *flags])
        if flags:
            with pytest.warns(UserWarning, match="Anomaly Detection has been enabled"):
                train_AE.main(args)
        else:
            train_AE.main(args)
    assert seen == [False, False, True, True]
    assert "autograd anomaly detection is on" in caplog.text
    assert not torch.is_anomaly_enabled()
    assert os.path.isfile(run_root(tmp_path, "anomaly") / "model" / "latest.tar")


def test_a_nan_batch_that_cannot_be_saved_still_stops_with_the_non_finite_report(tmp_path, monkeypatch):
    # A full disk while the batch is dumped: the stop still says what went wrong, and that the dump is missing.
    import errno

    from test_engine import META, Toy, ToyData, loss_fn, make_cfg

    import utils.engine as engine
    from utils.run_dir import RunDir

    save = engine.save_checkpoint

    def full_disk(path, state):
        if os.path.basename(path).startswith("nan_batch"):
            raise OSError(errno.ENOSPC, "No space left on device", path)
        save(path, state)

    monkeypatch.setattr(engine, "save_checkpoint", full_disk)
    run = RunDir(str(tmp_path / "checkpoints"), "t2m", "nan_full")
    with pytest.raises(NonFiniteLossError, match=r"non-finite loss nan at step 1 .*its batch could not be saved to "
                                                 r".*nan_batch_step1\.pt \(No space left on device\)"):
        engine.train(Toy(), ToyData(n=8, nan_index=3), loss_fn, make_cfg(max_iters=2), run, checkpoint_meta=META)
