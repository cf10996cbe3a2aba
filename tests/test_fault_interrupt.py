"""Interruption: train_vq.py / train_AE.py killed with SIGKILL (inside a step, while latest.tar or the best checkpoint
is being written, during the very first save) and resumed with --is_continue end bitwise where an uninterrupted run
ends: weights, optimizer, EMA, RNG, data position, best checkpoint and every logged loss. A killed save never leaves a
truncated checkpoint under its final name; its temporary file is ignored by the loaders and removed on resume."""

from __future__ import annotations

import os
import signal

import pytest
import torch
from fault_helpers import (
    TOKENIZER_FLAGS,
    assert_same_checkpoint,
    read_log,
    run_root,
    run_script,
    tail,
    temporaries,
)

from models.loader import load_tokenizer
from utils.checkpoint import CheckpointError, load_checkpoint
from utils.generator_stage import resolve_tokenizer_checkpoint

pytestmark = pytest.mark.slow
KILLED = -signal.SIGKILL


def _check_killed(done, model_dir: str, latest_step: int | None) -> None:
    """The run died of SIGKILL and left ``latest.tar`` of ``latest_step`` (None: no latest.tar) intact."""
    assert done.returncode == KILLED, tail(done)
    latest = os.path.join(model_dir, "latest.tar")
    if latest_step is None:
        assert not os.path.exists(latest)
        return
    state = torch.load(latest, weights_only=True)  # complete and safe, whatever the kill interrupted
    assert state["step"] == latest_step


def _check_half_written(model_dir: str, final_name: str) -> str:
    """Exactly one temporary file of ``final_name`` is left, and it is not a loadable checkpoint."""
    stale = temporaries(model_dir)
    assert len(stale) == 1 and stale[0].startswith(f".tmp-{final_name}."), stale
    path = os.path.join(model_dir, stale[0])
    with pytest.raises(CheckpointError, match="not a readable checkpoint"):
        load_checkpoint(path)
    return path


def _check_same_as(reference: str, resumed: str) -> None:
    """Final latest.tar, best checkpoint and per-step losses of two runs are bitwise equal."""
    ref_model, res_model = os.path.join(reference, "model"), os.path.join(resumed, "model")
    assert_same_checkpoint(os.path.join(ref_model, "latest.tar"), os.path.join(res_model, "latest.tar"))
    assert_same_checkpoint(os.path.join(ref_model, "net_best_loss.tar"), os.path.join(res_model, "net_best_loss.tar"),
                           keys=("model", "ema", "step", "best", "metrics"))
    ref_log, res_log = read_log(reference), read_log(resumed)
    assert [row["step"] for row in ref_log] == list(range(1, len(ref_log) + 1))
    assert res_log == ref_log
    assert temporaries(res_model) == []
    with open(os.path.join(resumed, "train.log")) as f:
        assert "removed temporary files of an interrupted save" in f.read()


def test_rvq_killed_mid_step_and_mid_save_resumes_bitwise(tmp_path, synthetic_root):
    """RVQ (stochastic code sampling, quantize dropout, EMA codebooks) with EMA weights: killed inside step 6, then
    while latest.tar of step 12 is half written; the third process finishes the run."""
    args = [*TOKENIZER_FLAGS, "--data_root", synthetic_root, "--model", "RVQVAE_Tiny", "--max_iters", "14",
            "--save_every", "4", "--eval_every", "6", "--ema_decay", "0.9", "--seed", "11", "--name", "r"]
    reference = run_script("train_vq.py", [*args, "--checkpoints_dir", str(tmp_path / "ref")])
    assert reference.returncode == 0, tail(reference)

    part = [*args, "--checkpoints_dir", str(tmp_path / "part")]
    root = run_root(tmp_path / "part", "r")
    model_dir = str(root / "model")
    _check_killed(run_script("train_vq.py", part, faults={"kill_at_step": 6}), model_dir, latest_step=4)
    assert temporaries(model_dir) == []

    done = run_script("train_vq.py", [*part, "--is_continue"], faults={"kill_during_save": 12})
    _check_killed(done, model_dir, latest_step=8)
    _check_half_written(model_dir, "latest.tar")
    # A later stage looking for this tokenizer takes a complete file and never the temporary one.
    found = resolve_tokenizer_checkpoint(str(tmp_path / "part"), "synthetic", "r")
    assert os.path.basename(found.path) == "net_best_loss.tar"
    assert load_tokenizer(found.path).model_name == "RVQVAE_Tiny"

    done = run_script("train_vq.py", [*part, "--is_continue"])
    assert done.returncode == 0, tail(done)
    _check_same_as(str(run_root(tmp_path / "ref", "r")), str(root))
    assert load_checkpoint(str(root / "model" / "latest.tar"))["step"] == 14


def test_fsq_ae_killed_in_first_save_and_in_best_save_resumes_bitwise(tmp_path, synthetic_root):
    """FSQ autoencoder: killed while the step-0 latest.tar is written (nothing to resume: a restart without
    --is_continue begins again), then while the best checkpoint of step 8 is written; resumed to the end."""
    args = [*TOKENIZER_FLAGS, "--data_root", synthetic_root, "--model", "FSQ_AE_Tiny", "--max_iters", "10",
            "--save_every", "4", "--eval_every", "4", "--seed", "5", "--name", "f"]
    reference = run_script("train_AE.py", [*args, "--checkpoints_dir", str(tmp_path / "ref")])
    assert reference.returncode == 0, tail(reference)

    ckpt = str(tmp_path / "part")
    part = [*args, "--checkpoints_dir", ckpt]
    model_dir = str(run_root(ckpt, "f") / "model")
    _check_killed(run_script("train_AE.py", part, faults={"kill_during_save": 0}), model_dir, latest_step=None)
    _check_half_written(model_dir, "latest.tar")
    with pytest.raises(CheckpointError, match="found nothing"):
        resolve_tokenizer_checkpoint(ckpt, "synthetic", "f")
    done = run_script("train_AE.py", [*part, "--is_continue"])
    assert done.returncode != 0 and "no checkpoint to resume" in done.stderr, tail(done)

    done = run_script("train_AE.py", part, faults={"kill_during_best_save": 8})
    _check_killed(done, model_dir, latest_step=8 - 4)
    _check_half_written(model_dir, "net_best_loss.tar")
    assert torch.load(os.path.join(model_dir, "net_best_loss.tar"), weights_only=True)["step"] == 4

    done = run_script("train_AE.py", [*part, "--is_continue"])
    assert done.returncode == 0, tail(done)
    _check_same_as(str(run_root(tmp_path / "ref", "f")), str(run_root(ckpt, "f")))
