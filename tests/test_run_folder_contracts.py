"""Run folders and stop signals: the layout and name checks of ``RunDir``, the run lock taken and given back,
what a failed start takes back and reports (``discarding_failed_starts``), the up-front write check, and the
stop-signal blocks' state once they end (utils/run_dir.py, utils/stop_signals.py)."""

from __future__ import annotations

import errno
import os
import signal
from collections import namedtuple
from pathlib import Path

import pytest

from utils import run_dir as run_dir_module
from utils.file_lock import FileLockedError, acquire_lock
from utils.run_dir import PROBE_NAME, MiB, RunDir, RunDirError, discarding_failed_starts, releasing_run_locks
from utils.stop_signals import Stopped, raise_if_stopped, run_with_error_boundary, stopping_on_signals, stops_deferred
from utils.user_errors import TRACEBACK_ENV


def _lock_is_free(path: str) -> bool:
    """Whether another holder could take the lock file at ``path`` now (it is given back at once)."""
    try:
        acquire_lock(path, "the run folder", "").release()
    except FileLockedError:
        return False
    return True


# ---------------------------------------------------------------------------------------------------------------
# Layout and names
# ---------------------------------------------------------------------------------------------------------------

def test_the_run_layout_is_the_one_the_field_s_scripts_use(tmp_path):
    run = RunDir(str(tmp_path / "checkpoints"), "t2m", "fsq", generation_root=str(tmp_path / "generation"))
    root = tmp_path / "checkpoints" / "t2m" / "fsq"
    assert run.root == str(root)
    assert run.model_dir == str(root / "model") and run.eval_dir == str(root / "eval")
    assert run.latest_path == str(root / "model" / "latest.tar")
    assert run.train_log_path == str(root / "model" / "train_log.jsonl")
    assert run.config_path == str(root / "opt.yaml") and run.log_file == str(root / "train.log")
    assert run.lock_path == str(root / ".lock")
    assert run.best_path() == str(root / "model" / "net_best_fid.tar")
    assert run.generation_dir == str(tmp_path / "generation" / "fsq_t2m")


def test_a_metric_with_a_slash_names_one_file_in_the_model_folder(tmp_path):
    run = RunDir(str(tmp_path), "t2m", "fsq")
    assert run.best_path("val/top1") == os.path.join(run.model_dir, "net_best_val_top1.tar")


@pytest.mark.parametrize("value", ["", ".", "..", "a/b"])
def test_a_name_that_is_not_a_plain_folder_name_is_refused_naming_the_flag(tmp_path, value):
    with pytest.raises(RunDirError, match=r"^--name must be a plain folder name \(no path separators\), got "):
        RunDir(str(tmp_path), "t2m", value)
    with pytest.raises(RunDirError, match=r"^--dataset_name must be a plain folder name"):
        RunDir(str(tmp_path), value, "fsq")


# ---------------------------------------------------------------------------------------------------------------
# make_dirs and the run lock
# ---------------------------------------------------------------------------------------------------------------

def test_make_dirs_creates_model_and_eval_and_accepts_an_existing_run(tmp_path):
    run = RunDir(str(tmp_path), "t2m", "fsq")
    with releasing_run_locks():
        run.make_dirs()
        assert os.path.isdir(run.model_dir) and os.path.isdir(run.eval_dir)
    Path(run.latest_path).write_bytes(b"step 4")
    with releasing_run_locks():
        run.make_dirs()  # --is_continue: the folder exists already
    assert Path(run.latest_path).read_bytes() == b"step 4"


def test_a_run_folder_that_cannot_be_created_is_a_run_dir_error_naming_it(tmp_path):
    (tmp_path / "checkpoints").write_text("a file where the folder should be")
    run = RunDir(str(tmp_path / "checkpoints"), "t2m", "fsq")
    with pytest.raises(RunDirError, match=f"^cannot create the run folder {run.root} "):
        run.make_dirs()


def test_a_refused_lock_ends_with_the_advice_of_the_command_that_asked(tmp_path):
    run = RunDir(str(tmp_path), "t2m", "fsq")
    os.makedirs(run.root)
    holder = acquire_lock(run.lock_path, "the run folder", "")
    try:
        with pytest.raises(RunDirError) as info:
            run.make_dirs(lock_advice="import into another --name")
        assert str(info.value).startswith(f"the run folder {run.root} is in use by another process (pid {os.getpid()}")
        assert str(info.value).endswith("; import into another --name")
    finally:
        holder.release()


def test_a_lock_file_that_cannot_be_created_is_named_in_the_error(tmp_path):
    run = RunDir(str(tmp_path), "t2m", "fsq")
    os.makedirs(run.lock_path)  # a folder where the lock file goes
    with pytest.raises(RunDirError) as info:
        run.lock()
    assert str(info.value).startswith(f"cannot create the lock file {run.lock_path} (")


def test_one_run_reached_by_two_spellings_of_its_path_is_locked_once(tmp_path):
    plain = RunDir(str(tmp_path / "checkpoints"), "t2m", "fsq")
    dotted = RunDir(os.path.join(str(tmp_path), "checkpoints", "."), "t2m", "fsq")
    assert dotted.root != plain.root
    with releasing_run_locks():
        plain.make_dirs()
        dotted.make_dirs()  # the engine's own RunDir of the same run: it holds the lock already
        dotted.lock()
        assert not _lock_is_free(plain.lock_path)
    assert _lock_is_free(plain.lock_path)


def test_leaving_a_block_gives_back_only_the_locks_taken_inside_it(tmp_path):
    outer, inner = RunDir(str(tmp_path), "t2m", "outer"), RunDir(str(tmp_path), "t2m", "inner")
    with releasing_run_locks():
        outer.make_dirs()
        with releasing_run_locks():
            inner.make_dirs()
        assert _lock_is_free(inner.lock_path) and not _lock_is_free(outer.lock_path)
        inner.lock()  # taken again for real after the block gave it back
        assert not _lock_is_free(inner.lock_path)
    assert _lock_is_free(inner.lock_path) and _lock_is_free(outer.lock_path)


# ---------------------------------------------------------------------------------------------------------------
# A failed start
# ---------------------------------------------------------------------------------------------------------------

def test_a_failed_start_reports_the_folder_it_removed_and_still_raises(tmp_path):
    run = RunDir(str(tmp_path / "checkpoints"), "t2m", "fresh")
    with pytest.raises(ValueError, match="missing Mean.npy"):
        with discarding_failed_starts() as failed:
            run.make_dirs()
            Path(run.log_file).write_text("set-up log\n")
            raise ValueError("missing Mean.npy")
    assert failed.removed == [run.root] and failed.resumable == []
    assert not (tmp_path / "checkpoints").exists()


def test_a_disabled_discard_keeps_the_new_folder(tmp_path):
    run = RunDir(str(tmp_path / "checkpoints"), "t2m", "fresh")
    with pytest.raises(ValueError):
        with discarding_failed_starts(enabled=False) as failed:
            run.make_dirs()
            raise ValueError("missing Mean.npy")
    assert os.path.isdir(run.model_dir) and failed.removed == []


def test_a_failed_start_under_a_relative_checkpoints_dir_leaves_no_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValueError):
        with discarding_failed_starts() as failed:
            RunDir("checkpoints", "t2m", "fresh").make_dirs()
            raise ValueError("missing Mean.npy")
    assert failed.removed == [os.path.join("checkpoints", "t2m", "fresh")]
    assert os.listdir(tmp_path) == []


def test_a_failed_start_into_an_existing_folder_without_model_keeps_it(tmp_path):
    """A folder made by hand (or holding only an old opt.yaml) existed before the start: it is not the start's."""
    run = RunDir(str(tmp_path), "t2m", "old")
    os.makedirs(run.root)
    Path(run.config_path).write_text("name: old\n")
    with pytest.raises(ValueError):
        with discarding_failed_starts() as failed:
            run.make_dirs()
            raise ValueError("missing Mean.npy")
    assert failed.removed == [] and Path(run.config_path).read_text() == "name: old\n"


def test_a_new_run_that_logged_steps_is_kept_after_a_failure(tmp_path):
    run = RunDir(str(tmp_path / "checkpoints"), "t2m", "fresh")
    with pytest.raises(RuntimeError):
        with discarding_failed_starts() as failed:
            run.make_dirs()
            Path(run.train_log_path).write_text('{"step": 1, "loss": 0.5, "lr": 0.001}\n')
            raise RuntimeError("CUDA out of memory")
    assert failed.removed == [] and os.path.getsize(run.train_log_path) > 0


def test_the_checkpoint_left_to_resume_is_named_once_and_only_for_this_block(tmp_path):
    done, failing = RunDir(str(tmp_path), "t2m", "done"), RunDir(str(tmp_path), "t2m", "failing")
    with discarding_failed_starts():
        done.make_dirs()
        Path(done.latest_path).write_bytes(b"step 9")
    with pytest.raises(RuntimeError):
        with discarding_failed_starts() as failed:
            with releasing_run_locks():  # the engine takes the lock and gives it back when it returns
                failing.make_dirs()
            failing.lock()  # taken again by the next stage of the same script
            Path(failing.latest_path).write_bytes(b"step 2")
            raise RuntimeError("NaN loss")
    assert failed.resumable == [failing.latest_path] and failed.removed == []


# ---------------------------------------------------------------------------------------------------------------
# ensure_writable
# ---------------------------------------------------------------------------------------------------------------

Usage = namedtuple("Usage", "total used free")


def test_ensure_writable_creates_the_run_and_leaves_no_probe(tmp_path):
    run = RunDir(str(tmp_path), "t2m", "fsq")
    with releasing_run_locks():
        run.ensure_writable(min_free_bytes=0, probe_bytes=3 * MiB // 2)
    assert sorted(os.listdir(run.model_dir)) == [] and PROBE_NAME not in os.listdir(run.model_dir)


def test_the_probe_is_written_to_its_full_size_and_synced(tmp_path, monkeypatch):
    run = RunDir(str(tmp_path), "t2m", "fsq")
    seen, real_fsync = [], os.fsync

    def fsync(fd):
        seen.append(os.fstat(fd).st_size)
        return real_fsync(fd)

    monkeypatch.setattr(run_dir_module.os, "fsync", fsync)
    with releasing_run_locks():
        run.ensure_writable(min_free_bytes=0, probe_bytes=5 * MiB // 2)
    assert seen == [5 * MiB // 2]


def test_a_write_that_fails_only_at_the_sync_is_reported_before_training(tmp_path, monkeypatch):
    def fsync(fd):
        raise OSError(errno.EDQUOT, "Disk quota exceeded")

    monkeypatch.setattr(run_dir_module.os, "fsync", fsync)
    run = RunDir(str(tmp_path), "t2m", "fsq")
    with releasing_run_locks(), pytest.raises(RunDirError, match=f"^cannot write to {run.model_dir} "
                                                                 r"\(Disk quota exceeded\)"):
        run.ensure_writable(min_free_bytes=0, probe_bytes=1024)
    assert os.listdir(run.model_dir) == []


def test_free_space_is_checked_against_the_default_of_256_mib(tmp_path, monkeypatch):
    free = {"bytes": 255 * MiB}
    monkeypatch.setattr(run_dir_module.shutil, "disk_usage", lambda path: Usage(10**12, 0, free["bytes"]))
    run = RunDir(str(tmp_path), "t2m", "fsq")
    with releasing_run_locks():
        with pytest.raises(RunDirError, match=r"^only 255 MiB free on the file system of .* at least 256 MiB are "):
            run.ensure_writable(probe_bytes=1024)
        free["bytes"] = 256 * MiB  # exactly enough
        run.ensure_writable(probe_bytes=1024)


@pytest.mark.parametrize("free, needed, shown_free, shown_needed", [
    (256 * MiB - 1, 256 * MiB, 255, 256),  # a byte short: not "only 256 MiB free; at least 256 MiB are needed"
    (100 * MiB, 100 * MiB + MiB // 4, 100, 101),  # needed rounds up: not "only 100 MiB free; at least 100 MiB"
])
def test_a_refusal_for_free_space_never_says_the_free_space_is_enough(tmp_path, monkeypatch, free, needed,
                                                                      shown_free, shown_needed):
    monkeypatch.setattr(run_dir_module.shutil, "disk_usage", lambda path: Usage(10**12, 0, free))
    run = RunDir(str(tmp_path), "t2m", "fsq")
    with releasing_run_locks(), pytest.raises(RunDirError) as info:
        run.ensure_writable(min_free_bytes=needed, probe_bytes=1024)
    assert str(info.value).startswith(f"only {shown_free} MiB free on the file system of {run.model_dir}; at least "
                                      f"{shown_needed} MiB are needed for the checkpoints of this run.")


# ---------------------------------------------------------------------------------------------------------------
# Stop-signal blocks: the state they leave behind, and the error boundary of scripts outside run_script
# ---------------------------------------------------------------------------------------------------------------

@pytest.fixture
def default_stop_handlers():
    """SIGTERM and SIGHUP at their default action (conftest puts the process's own back afterwards)."""
    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, signal.SIG_DFL)


def test_a_stop_handled_by_one_block_is_not_raised_again_after_it_or_in_the_next(default_stop_handlers):
    with pytest.raises(Stopped):
        with stopping_on_signals():
            signal.raise_signal(signal.SIGTERM)
    raise_if_stopped()  # outside any block: nothing to raise
    with stopping_on_signals():
        raise_if_stopped()  # a new block that had no stop
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL


def test_a_stop_after_a_finished_deferral_is_raised_at_once(default_stop_handlers):
    reached = []
    with pytest.raises(Stopped) as info:
        with stopping_on_signals():
            with stops_deferred():
                reached.append("deferred")
            signal.raise_signal(signal.SIGHUP)
            reached.append("after the signal")
    assert reached == ["deferred"] and info.value.signal_name == "SIGHUP"


def test_a_stop_in_a_nested_deferral_is_raised_when_the_inner_block_ends(default_stop_handlers):
    reached = []
    with pytest.raises(Stopped):
        with stopping_on_signals():
            with stops_deferred():
                with stops_deferred():
                    signal.raise_signal(signal.SIGTERM)
                    reached.append("inner")
                reached.append("between the blocks")
    assert reached == ["inner"]


def test_a_launched_process_leaves_no_wakeup_fd_after_the_block(default_stop_handlers, monkeypatch):
    """Launched as one of several, the block watches the signals through a wakeup fd; it gives it back at the end."""
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert signal.set_wakeup_fd(-1) == -1
    with stopping_on_signals():
        watching = signal.set_wakeup_fd(-1)
        signal.set_wakeup_fd(watching)
        assert watching != -1
    assert signal.set_wakeup_fd(-1) == -1


def test_a_process_forked_after_a_launched_block_keeps_a_wakeup_fd_set_since(default_stop_handlers, monkeypatch):
    """Only a child forked while the watch is on drops its wakeup fd; one set later (an asyncio loop's) stays."""
    monkeypatch.setenv("WORLD_SIZE", "2")
    with stopping_on_signals():
        pass
    wake_read, wake_write = os.pipe()
    result_read, result_write = os.pipe()
    os.set_blocking(wake_write, False)
    previous = signal.set_wakeup_fd(wake_write)
    try:
        pid = os.fork()
        if pid == 0:
            os.write(result_write, str(signal.set_wakeup_fd(-1)).encode())
            os._exit(0)
        os.waitpid(pid, 0)
        seen_in_child = int(os.read(result_read, 64))
    finally:
        signal.set_wakeup_fd(previous)
        for fd in (wake_read, wake_write, result_read, result_write):
            os.close(fd)
    assert seen_in_child == wake_write


def test_the_error_boundary_returns_what_main_returns():
    assert run_with_error_boundary(lambda: 3, "prepare_data.py", (ValueError,), "rerun the same command") == 3


def test_the_error_boundary_turns_a_listed_error_into_one_line_and_status_1(monkeypatch):
    monkeypatch.delenv(TRACEBACK_ENV, raising=False)

    def main():
        raise ValueError("--fps must be positive, got 0")

    with pytest.raises(SystemExit) as info:
        run_with_error_boundary(main, "prepare_data.py", (ValueError,), "rerun the same command")
    assert str(info.value.code).startswith("prepare_data.py: error: --fps must be positive, got 0\n")


def test_the_error_boundary_reports_a_stop_with_its_hint_and_status(default_stop_handlers, monkeypatch, capsys):
    monkeypatch.delenv(TRACEBACK_ENV, raising=False)
    cleaned = []

    def main():
        try:
            signal.raise_signal(signal.SIGTERM)
        finally:
            cleaned.append(True)

    with pytest.raises(SystemExit) as info:
        run_with_error_boundary(main, "plot_loss.py", (ValueError,), "rerun the same command")
    assert info.value.code == 128 + signal.SIGTERM and cleaned == [True]
    assert capsys.readouterr().err == "plot_loss.py: stopped by SIGTERM; rerun the same command\n"
    # The process is exiting: a repeat of the signal (torchrun passing on the scheduler's) must not kill it now.
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_IGN and signal.getsignal(signal.SIGHUP) is signal.SIG_IGN


def test_a_stop_two_clean_up_errors_deep_still_ends_the_block_as_the_stop(default_stop_handlers):
    with pytest.raises(Stopped) as info:
        with stopping_on_signals():
            try:
                try:
                    raise Stopped(signal.SIGINT)  # reproduce.py turns Ctrl-C into a Stopped
                finally:
                    raise RuntimeError("zip writer could not finish the checkpoint")
            finally:
                raise OSError("could not close the log")
    assert info.value.signum == signal.SIGINT and isinstance(info.value.__cause__, OSError)
