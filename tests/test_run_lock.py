"""One process at a time trains a run: the run lock (utils/run_dir.py, utils/file_lock.py)."""

from __future__ import annotations

import errno
import logging
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from utils import file_lock
from utils.cli import TRACEBACK_ENV, run_script
from utils.engine import check_run_start
from utils.file_lock import FileLockedError, acquire_lock
from utils.run_dir import RunDir, RunDirError, releasing_run_locks

ROOT = Path(__file__).resolve().parents[1]
# Takes the lock of checkpoints/synthetic/busy the way a training start does, says so, and holds it until its stdin
# closes (or it is killed).
HOLDER = """
import sys
from utils.run_dir import RunDir
RunDir(sys.argv[1], "synthetic", "busy").make_dirs()
print("locked", flush=True)
sys.stdin.read()
"""


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k not in (TRACEBACK_ENV, "RANK", "WORLD_SIZE", "LOCAL_RANK")}


@pytest.fixture
def holder(tmp_path):
    """A process holding the lock of ``<tmp_path>/checkpoints/synthetic/busy``; yields (process, run)."""
    checkpoints = tmp_path / "checkpoints"
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(checkpoints)], cwd=ROOT, env=_env(),
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "locked"
        yield proc, RunDir(str(checkpoints), "synthetic", "busy")
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=60)


def test_a_second_lock_of_the_same_file_fails_even_in_one_process(tmp_path):
    path = str(tmp_path / ".lock")
    first = acquire_lock(path, "the run folder x", "wait for it to finish, or pick another --name")
    with pytest.raises(FileLockedError) as info:
        acquire_lock(path, "the run folder x", "wait for it to finish, or pick another --name")
    assert str(info.value).startswith(f"the run folder x is in use by another process (pid {os.getpid()} on ")
    assert f"holding {path}); wait for it to finish, or pick another --name" in str(info.value)
    first.release()
    acquire_lock(path, "the run folder x", "").release()  # given back


def test_a_second_start_of_a_running_run_fails_at_once_naming_the_folder_and_pid(holder):
    proc, run = holder
    lock_content = Path(run.lock_path).read_text()
    assert lock_content.split()[0] == str(proc.pid)
    for extra in ([], ["--is_continue"]):
        argv = [sys.executable, str(ROOT / "train_AE.py"), "--model", "AE_Tiny", "--dataset_name", "synthetic",
                "--name", "busy", "--checkpoints_dir", os.path.dirname(os.path.dirname(run.root)), *extra]
        done = subprocess.run(argv, cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=300)
        assert done.returncode == 1, done.stderr
        assert (f"train_AE.py: error: the run folder {run.root} is in use by another process (pid {proc.pid} on "
                in done.stderr)
        assert "wait for it to finish (--is_continue then resumes the run), or pick another --name" in done.stderr
        assert proc.poll() is None  # refused while the first still runs
    # Nothing of the refused starts was written, and the holder's folder and lock are as they were.
    assert sorted(os.listdir(run.root)) == [".lock", "eval", "model"] and not os.listdir(run.model_dir)
    assert Path(run.lock_path).read_text() == lock_content


def test_a_killed_holder_leaves_no_lock_behind(holder):
    proc, run = holder
    with pytest.raises(RunDirError, match=f"pid {proc.pid} "):
        check_run_start(run, is_continue=False)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    assert os.path.exists(run.lock_path)  # the file stays; the kernel released the lock with the process
    with releasing_run_locks():
        check_run_start(run, is_continue=False)
        assert Path(run.lock_path).read_text().split()[0] == str(os.getpid())


def test_a_refused_start_does_not_remove_the_folder_of_the_run_holding_it(holder, monkeypatch):
    """The holder's folder holds only what a start writes (no checkpoint yet): the refused start must not take it
    for a failed start of its own and remove it."""
    monkeypatch.delenv(TRACEBACK_ENV, raising=False)
    _, run = holder
    with pytest.raises(SystemExit, match=f"train_AE.py: error: the run folder {run.root} is in use"):
        run_script(RunDir(os.path.dirname(os.path.dirname(run.root)), "synthetic", "busy").make_dirs,
                   prog="train_AE.py")
    assert os.path.isdir(run.model_dir) and os.path.exists(run.lock_path)


def test_importing_into_a_running_run_is_refused_in_the_import_tool_s_terms(holder):
    """tools/import_checkpoint.py cannot resume a run: its refusal names the run and the holder's pid and says to
    wait for the training or stop it, not to pass --is_continue."""
    from tool_helpers import load_tool

    proc, run = holder
    tool = load_tool("import_checkpoint")
    official = str(ROOT / "tests" / "fixtures" / "t2m_gpt_vqvae" / "net_last.pth")  # 263-dim, as synthetic
    args = tool.get_parser().parse_args(["--src", official, "--name", "busy", "--dataset_name", "synthetic",
                                         "--checkpoints_dir", os.path.dirname(os.path.dirname(run.root))])
    with pytest.raises(RunDirError) as info:
        tool.main(args)
    message = str(info.value)
    assert message.startswith(f"the run folder {run.root} is in use by another process (pid {proc.pid} on ")
    assert message.endswith("; wait for that training to finish, or stop it, before importing into this run; or "
                            "import under another --name")
    assert "--is_continue" not in message
    assert sorted(os.listdir(run.root)) == [".lock", "eval", "model"] and not os.listdir(run.model_dir)


def test_the_script_boundary_releases_the_lock_and_removes_a_failed_start_with_it(tmp_path, monkeypatch):
    monkeypatch.delenv(TRACEBACK_ENV, raising=False)
    run = RunDir(str(tmp_path / "checkpoints"), "synthetic", "fresh")

    def start(fail: bool):
        def main():
            check_run_start(run, is_continue=False)
            run.make_dirs()
            assert Path(run.lock_path).read_text().split()[0] == str(os.getpid())
            if fail:
                raise ValueError("dataset/Synthetic/Mean.npy: missing")
        return main

    with pytest.raises(SystemExit):
        run_script(start(fail=True), prog="train_AE.py")
    assert not (tmp_path / "checkpoints").exists()  # the lock file does not make it a run
    run_script(start(fail=False), prog="train_AE.py")
    acquire_lock(run.lock_path, "the run", "").release()  # given back when main() returned


def test_only_the_first_process_locks(tmp_path, monkeypatch):
    monkeypatch.setenv("RANK", "1")
    run = RunDir(str(tmp_path), "synthetic", "ddp")
    os.makedirs(run.root)
    run.lock()
    assert not os.path.exists(run.lock_path)


def test_without_flock_support_a_start_warns_once_and_goes_on(tmp_path, monkeypatch, caplog):
    def unsupported(fd, operation):
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(file_lock.fcntl, "flock", unsupported)
    monkeypatch.setattr(file_lock, "_warned_unsupported", False)
    caplog.set_level(logging.WARNING, logger="utils.file_lock")
    path = str(tmp_path / ".lock")
    first = acquire_lock(path, "the run folder x", "")
    second = acquire_lock(path, "the run folder x", "")
    assert not first.locked and not second.locked
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 1 and "does not support flock (No locks available)" in warnings[0]
    with releasing_run_locks():
        RunDir(str(tmp_path / "checkpoints"), "synthetic", "nfs").make_dirs()  # a start goes on unlocked


def test_other_flock_errors_are_not_taken_for_missing_support(tmp_path, monkeypatch):
    def broken(fd, operation):
        raise OSError(errno.EBADF, "Bad file descriptor")

    monkeypatch.setattr(file_lock.fcntl, "flock", broken)
    with pytest.raises(OSError, match="Bad file descriptor"):
        acquire_lock(str(tmp_path / ".lock"), "the run folder x", "")


def test_train_holds_the_lock_while_it_runs_and_gives_back_one_it_took(tmp_path):
    import torch
    from torch import nn

    from utils.engine import EngineConfig, train

    run = RunDir(str(tmp_path), "toy", "engine")
    seen = []

    def loss_fn(model: nn.Module, batch: torch.Tensor):
        with pytest.raises(FileLockedError):  # another start, here or elsewhere, is refused meanwhile
            acquire_lock(run.lock_path, "the run", "")
        seen.append(Path(run.lock_path).read_text().split()[0])
        return model(batch).pow(2).mean(), {}

    cfg = EngineConfig(max_iters=2, batch_size=4, lr=1e-3, seed=0, min_free_bytes=0)
    train(nn.Linear(3, 1), torch.randn(8, 3), loss_fn, cfg, run,
          checkpoint_meta={"stage": "test", "model_name": "Linear", "model_args": {}})
    assert seen == [str(os.getpid())] * 2
    acquire_lock(run.lock_path, "the run", "").release()
