"""The scripts' error boundary (utils/cli.py): bad input is one line on stderr and exit status 1."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from utils.checkpoint import CheckpointError
from utils.cli import TRACEBACK_ENV, run_script

ROOT = Path(__file__).resolve().parents[1]


def test_user_errors_exit_with_one_line_and_others_propagate(monkeypatch, capsys):
    monkeypatch.delenv(TRACEBACK_ENV, raising=False)

    def bad_checkpoint():
        raise CheckpointError("run/model/latest.tar: truncated")

    with pytest.raises(SystemExit) as exit_info:
        run_script(bad_checkpoint, prog="train_AE.py")
    assert str(exit_info.value).startswith("train_AE.py: error: run/model/latest.tar: truncated\n")

    def bug():
        raise KeyError("not a user error")

    with pytest.raises(KeyError):
        run_script(bug)
    monkeypatch.setenv(TRACEBACK_ENV, "1")
    with pytest.raises(CheckpointError):
        run_script(bad_checkpoint)
    assert run_script(lambda: 7) == 7


def test_a_scripts_own_refusal_has_the_same_form(monkeypatch):
    monkeypatch.delenv(TRACEBACK_ENV, raising=False)

    def refuse():
        raise SystemExit("--kmeans_iters 5: the iterations of --kmeans_init")

    with pytest.raises(SystemExit) as exit_info:
        run_script(refuse, prog="train_vq.py")
    assert exit_info.value.code == "train_vq.py: error: --kmeans_iters 5: the iterations of --kmeans_init"

    def usage_error():  # argparse has printed its message and exits with status 2
        raise SystemExit(2)

    with pytest.raises(SystemExit) as exit_info:
        run_script(usage_error, prog="train_vq.py")
    assert exit_info.value.code == 2


def test_a_script_reports_a_missing_dataset_file_in_one_line(tmp_path):
    argv = [sys.executable, str(ROOT / "evaluation_AE.py"), "--name", "nope", "--dataset_name", "synthetic",
            "--checkpoints_dir", str(tmp_path)]
    env = {k: v for k, v in os.environ.items() if k != TRACEBACK_ENV}
    done = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    assert f"evaluation_AE.py: error: no net_best_fid.tar / net_best_loss.tar / latest.tar in {tmp_path}" in done.stderr


@pytest.mark.parametrize("script", ["evaluation_AE.py", "evaluation_MARDM.py", "sample.py"])
def test_evaluation_and_sampling_refuse_a_multi_process_launch(tmp_path, script):
    # What torchrun / accelerate launch set for the first of two processes: each process would repeat the whole
    # evaluation and write the same files.
    argv = [sys.executable, str(ROOT / script), "--name", "nope", "--dataset_name", "synthetic", "--checkpoints_dir",
            str(tmp_path / "checkpoints"), *(["--output_dir", str(tmp_path / "generation")] if script == "sample.py"
                                             else [])]
    env = {k: v for k, v in os.environ.items() if k != TRACEBACK_ENV}
    env.update(WORLD_SIZE="2", RANK="0", LOCAL_RANK="0")
    done = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1
    assert f"{script}: error: runs in one process, but was launched as 2" in done.stderr
    assert not list(tmp_path.iterdir())  # nothing written
