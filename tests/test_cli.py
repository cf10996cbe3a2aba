"""The scripts' error boundary (utils/cli.py): bad input is one line on stderr and exit status 1."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from utils.checkpoint import CheckpointError
from utils.cli import TRACEBACK_ENV, run_script
from utils.collectives import MainProcessFailed
from utils.run_dir import RunDir

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


def test_a_collective_broken_by_another_process_leaving_is_one_line(monkeypatch):
    """Under torchrun, a process whose peer failed (and printed its own error) got a 50-line gloo traceback, and one
    whose main process failed in work only it does a 30-line one."""
    monkeypatch.delenv(TRACEBACK_ENV, raising=False)
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")

    def peer_left():
        raise RuntimeError("[../third_party/gloo/gloo/transport/tcp/pair.cc:534] Connection closed by peer "
                           "[127.0.0.1]:29500\nException raised from recvBuffer")

    with pytest.raises(SystemExit) as exit_info:
        run_script(peer_left, prog="train_vq.py")
    assert str(exit_info.value).startswith(
        "train_vq.py: error: another process of this launch ended, so this one stops too (see that process's error; "
        "here: [../third_party/gloo/gloo/transport/tcp/pair.cc:534] Connection closed by peer [127.0.0.1]:29500)\n")

    def main_failed():  # work only the main process does (a validation) failed there; it reports why itself
        raise MainProcessFailed("the main process failed: FileNotFoundError: [Errno 2] No such file or directory: "
                                "'val/clip_0001.npy'")

    with pytest.raises(SystemExit) as exit_info:
        run_script(main_failed, prog="train_vq.py")
    assert str(exit_info.value).startswith(
        "train_vq.py: error: the main process failed: FileNotFoundError: [Errno 2] No such file or directory: "
        "'val/clip_0001.npy' (see that process's error)\n")

    def bug():
        raise RuntimeError("shape mismatch")

    with pytest.raises(RuntimeError, match="shape mismatch"):  # any other RuntimeError is a bug: its traceback stays
        run_script(bug, prog="train_vq.py")
    monkeypatch.setenv("WORLD_SIZE", "1")
    with pytest.raises(RuntimeError, match="Connection closed by peer"):  # one process has no peer to lose
        run_script(peer_left, prog="train_vq.py")


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


def test_a_script_reports_a_missing_checkpoint_in_one_line(tmp_path):
    argv = [sys.executable, str(ROOT / "evaluation_AE.py"), "--name", "nope", "--dataset_name", "synthetic",
            "--checkpoints_dir", str(tmp_path)]
    env = {k: v for k, v in os.environ.items() if k != TRACEBACK_ENV}
    done = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    assert f"evaluation_AE.py: error: no run nope of dataset synthetic under {tmp_path}" in done.stderr


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


def test_a_failed_start_leaves_the_checkpoints_folder_as_it_was(monkeypatch, tmp_path):
    monkeypatch.delenv(TRACEBACK_ENV, raising=False)
    checkpoints = tmp_path / "checkpoints"
    (checkpoints / "t2m" / "old").mkdir(parents=True)

    def start(name: str, fail: bool):
        def main():
            run = RunDir(str(checkpoints), "synthetic" if name != "old" else "t2m", name)
            run.make_dirs()
            Path(run.log_file).write_text("set-up log\n")
            if fail:
                raise ValueError("dataset/Synthetic/Mean.npy: missing")
            return run.root
        return main

    # A new folder (with the dataset folder made for it) that failed before its first checkpoint goes entirely.
    with pytest.raises(SystemExit):
        run_script(start("fresh", fail=True), prog="train_AE.py")
    assert sorted(p.name for p in checkpoints.iterdir()) == ["t2m"]
    # One that existed before keeps what it holds, as does a new one that saved a checkpoint.
    with pytest.raises(SystemExit):
        run_script(start("old", fail=True), prog="train_AE.py")
    assert (checkpoints / "t2m" / "old" / "train.log").read_text() == "set-up log\n"
    with pytest.raises(KeyboardInterrupt):
        run_script(_interrupted(checkpoints))
    assert (checkpoints / "synthetic" / "trained" / "model" / "latest.tar").exists()
    # A successful start is never touched, even when a later main() in the same process fails.
    root = run_script(start("done", fail=False))
    with pytest.raises(SystemExit):
        run_script(start("fresh", fail=True), prog="train_AE.py")
    assert os.path.isdir(root) and not (checkpoints / "synthetic" / "fresh").exists()


@pytest.mark.parametrize("rank", [0, 1])
def test_only_the_first_process_says_how_a_stopped_run_goes_on(monkeypatch, tmp_path, capsys, rank):
    """A new run stopped before its first checkpoint: the first process removes the folder and says to start again;
    another process cannot tell, and told to resume with --is_continue, which is then refused (nothing to resume)."""
    import signal

    from utils.cli import RESUME_TRAINING
    from utils.stop_signals import Stopped

    monkeypatch.setenv("RANK", str(rank))
    monkeypatch.setenv("WORLD_SIZE", "2")

    def main():
        if rank == 0:
            RunDir(str(tmp_path / "checkpoints"), "synthetic", "new").make_dirs()
        raise Stopped(signal.SIGTERM)

    with pytest.raises(SystemExit) as exit_info:
        run_script(main, prog="train_vq.py", resume=RESUME_TRAINING)
    assert exit_info.value.code == 128 + signal.SIGTERM
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert line.startswith("train_vq.py: stopped by SIGTERM; ") and "--is_continue" not in line, line
    assert ("the new run folder" in line) if rank == 0 else line.endswith(
        "; process 1 of 2; the first process says how to go on"), line


def test_processes_other_than_the_first_write_nothing_into_a_starting_run(monkeypatch, tmp_path):
    """Under torchrun only the first process creates the run folder and writes its set-up files, so that when a start
    fails it alone decides what to remove: a folder another process had created first was kept (the first found it
    existing), and one that another process wrote into after the first had removed it came back."""
    from options.config import save_config

    monkeypatch.delenv(TRACEBACK_ENV, raising=False)
    monkeypatch.setenv("RANK", "1")
    run = RunDir(str(tmp_path / "checkpoints"), "synthetic", "other_rank")

    def main():
        run.make_dirs()
        save_config({"name": "other_rank"}, run.config_path)
        raise ValueError("dataset/Synthetic/Mean.npy: missing")

    with pytest.raises(SystemExit):
        run_script(main, prog="train_AE.py")
    assert not (tmp_path / "checkpoints").exists()
    # The first process creates it, and removes it when its start fails.
    monkeypatch.setenv("RANK", "0")
    with pytest.raises(SystemExit):
        run_script(main, prog="train_AE.py")
    assert not (tmp_path / "checkpoints").exists()
    run.make_dirs()
    save_config({"name": "other_rank"}, run.config_path)
    assert os.path.isdir(run.model_dir) and os.path.isfile(run.config_path)


def _interrupted(checkpoints: Path):
    def main():
        run = RunDir(str(checkpoints), "synthetic", "trained")
        run.make_dirs()
        Path(run.latest_path).write_bytes(b"step 0")
        raise KeyboardInterrupt
    return main


def test_holds_only_setup_counts_logs_config_and_events(tmp_path):
    run = RunDir(str(tmp_path), "synthetic", "r")
    run.make_dirs()
    Path(run.root, "meta").mkdir()
    for name in ("train.log", "opt.yaml", "model/events.out.tfevents.1.host", "meta/mean.npy", "meta/std.npy"):
        Path(run.root, name).write_text("x")
    assert run.holds_only_setup()  # an evaluator start writes its statistics to meta/ before training
    Path(run.train_log_path).write_text("")  # the engine creates it before its first save
    assert run.holds_only_setup()
    Path(run.train_log_path).write_text('{"step": 1, "loss": 0.5, "lr": 0.001}\n')
    assert not run.holds_only_setup()
    Path(run.train_log_path).unlink()
    for name in ("model/mean.npy", "meta/train.log", "eval/evaluation_AE.log"):
        Path(run.root, name).write_text("x")
        assert not run.holds_only_setup(), name
        Path(run.root, name).unlink()


def test_train_script_refused_for_a_missing_dataset_file_leaves_no_run_folder(tmp_path):
    argv = [sys.executable, str(ROOT / "train_AE.py"), "--name", "typo", "--dataset_name", "synthetic",
            "--data_root", str(tmp_path / "no_data"), "--checkpoints_dir", str(tmp_path / "checkpoints")]
    env = {k: v for k, v in os.environ.items() if k != TRACEBACK_ENV}
    done = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1 and "train_AE.py: error: " in done.stderr
    assert not (tmp_path / "checkpoints").exists()


def test_a_parent_filled_during_the_removal_keeps_the_starts_own_error(monkeypatch, tmp_path):
    monkeypatch.delenv(TRACEBACK_ENV, raising=False)

    def main():
        run = RunDir(str(tmp_path / "checkpoints"), "synthetic", "fresh")
        run.make_dirs()
        raise ValueError("dataset/Synthetic/Mean.npy: missing")

    rmdir = os.rmdir

    def filled(path, *args, **kwargs):  # another start writes into checkpoints/synthetic just before it goes
        if str(path) == str(tmp_path / "checkpoints" / "synthetic"):
            raise OSError(39, "Directory not empty", path)
        return rmdir(path, *args, **kwargs)

    monkeypatch.setattr("utils.run_dir.os.rmdir", filled)
    with pytest.raises(SystemExit, match="train_AE.py: error: dataset/Synthetic/Mean.npy: missing"):
        run_script(main, prog="train_AE.py")
    assert not (tmp_path / "checkpoints" / "synthetic" / "fresh").exists()


@pytest.mark.parametrize("error", [NotADirectoryError, IsADirectoryError, PermissionError])
def test_a_path_of_the_wrong_kind_is_a_user_error(monkeypatch, error):
    monkeypatch.delenv(TRACEBACK_ENV, raising=False)

    def bad_path():
        raise error(20, "Not what was expected", "out/file")

    with pytest.raises(SystemExit) as exit_info:
        run_script(bad_path, prog="sample.py")
    assert str(exit_info.value).startswith("sample.py: error: [Errno 20] Not what was expected: 'out/file'\n")


def test_prepare_data_reports_an_output_folder_that_is_a_file_in_one_line(tmp_path):
    taken = tmp_path / "taken"
    taken.write_text("a file, not a folder")
    argv = [sys.executable, str(ROOT / "prepare_data.py"), "synthetic", "--out", str(taken), "--num_motions", "4"]
    env = {k: v for k, v in os.environ.items() if k != TRACEBACK_ENV}
    done = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    assert "prepare_data.py: error:" in done.stderr and str(taken) in done.stderr
    assert taken.read_text() == "a file, not a folder"
    done = subprocess.run(argv, cwd=ROOT, env={**env, TRACEBACK_ENV: "1"}, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1 and "Traceback" in done.stderr and str(taken) in done.stderr


@pytest.mark.parametrize("argv", [["render.py", "{tmp}/missing.npy"], ["plot_loss.py", "--log_dir", "{tmp}/missing"],
                                  ["render.py", "{tmp}/joints.npy", "--out", "{tmp}/taken/videos"]])
def test_drawing_scripts_share_the_error_boundary(tmp_path, argv):
    """render.py and plot_loss.py, which do not import torch, report as the other scripts do: one line, a path of the
    wrong kind included, and the traceback with FSQ_MARDM_TRACEBACK=1."""
    np.save(tmp_path / "joints.npy", np.zeros((4, 22, 3), np.float32))
    (tmp_path / "taken").write_text("a file, not a folder")
    command = [sys.executable, str(ROOT / argv[0]), *(a.format(tmp=tmp_path) for a in argv[1:])]
    env = {k: v for k, v in os.environ.items() if k != TRACEBACK_ENV}
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert f"{argv[0]}: error: " in done.stderr and str(tmp_path) in done.stderr
    env[TRACEBACK_ENV] = "1"
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1 and "Traceback" in done.stderr
