"""Run files and signals: the LR factor's refusals, atomic writes (flushed and synced in the destination folder,
the name's extension through a link), the run lock's file, abandoned staging folders, and stops in the clean-up."""

from __future__ import annotations

import logging
import os
import signal
import socket

import pytest

from utils import file_lock, staging
from utils.atomic_io import atomic_path, atomic_write
from utils.file_lock import FileLockedError, acquire_lock
from utils.lr_schedule import lr_factor
from utils.staging import remove_abandoned_staging, staging_folder
from utils.stop_signals import Stopped, stopping_on_signals, stops_deferred


def test_lr_factor_refuses_a_negative_warm_up():
    """``warm_up_iter < 0`` -> ``< -1``: a warm-up of -1 was taken as none instead of refused."""
    with pytest.raises(ValueError, match="warm_up_iter must be >= 0, got -1"):
        lr_factor(5, warm_up_iter=-1, milestones=[], lr_decay=0.1)


def _record_fsyncs(monkeypatch, folder):
    """Record, for each fsync, the size the kernel sees for the descriptor, and whether the destination exists yet."""
    calls, real = [], os.fsync

    def fsync(fd):
        calls.append((os.fstat(fd).st_size, sorted(os.listdir(folder))))
        return real(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    return calls


def test_atomic_write_flushes_and_fsyncs_the_whole_content_before_the_rename(tmp_path, monkeypatch):
    """(``f.flush()`` removed: fsync ran on an empty file, the data still in Python's buffer) and
    (``os.fsync`` removed): the file renamed into place was not durable, a crash could leave an empty checkpoint."""
    calls = _record_fsyncs(monkeypatch, tmp_path)
    with atomic_write(tmp_path / "x.json") as f:
        f.write("0123456789")
    assert len(calls) == 1
    size, listing = calls[0]
    assert size == 10 and "x.json" not in listing  # all the bytes, synced before the rename
    assert (tmp_path / "x.json").read_text() == "0123456789"


def test_atomic_path_fsyncs_what_the_writer_wrote_before_the_rename(tmp_path, monkeypatch):
    """The fsync of atomic_path's temporary removed."""
    calls = _record_fsyncs(monkeypatch, tmp_path)
    with atomic_path(tmp_path / "plot.png") as tmp:
        with open(tmp, "wb") as f:
            f.write(b"abcdef")
    assert [(size, "plot.png" in listing) for size, listing in calls] == [(6, False)]
    assert (tmp_path / "plot.png").read_bytes() == b"abcdef"


def test_the_temporary_lives_in_the_destination_folder(tmp_path):
    """Mkstemp's ``dir`` dropped: the temporary went to the system temp folder, so os.replace could cross file
    systems (not atomic, or EXDEV)."""
    with atomic_write(tmp_path / "x.json") as f:
        (entry,) = os.listdir(tmp_path)
        assert entry.startswith(".tmp-x.json.")
        f.write("{}")
    assert os.listdir(tmp_path) == ["x.json"]


def test_atomic_path_temporary_takes_the_extension_of_the_name_given_not_of_the_link_target(tmp_path):
    """The suffix taken from the link's target: a ``.png`` named through a link to a ``.dat`` file got a ``.dat``
    temporary, and matplotlib picks the format from it."""
    (tmp_path / "store").mkdir()
    target = tmp_path / "store" / "plot.dat"
    link = tmp_path / "plot.png"
    link.symlink_to(target)
    with atomic_path(link) as tmp:
        assert tmp.endswith(".png") and os.path.dirname(tmp) == str(tmp_path / "store")
        open(tmp, "wb").write(b"png")
    assert link.is_symlink() and target.read_bytes() == b"png"


def test_the_lock_file_holds_only_this_holder_after_a_longer_earlier_one(tmp_path):
    """``os.ftruncate`` removed: a shorter pid/host line was written over a longer one left by a killed holder,
    and the file kept the tail of the old one."""
    path = tmp_path / ".lock"
    path.write_text("99999999 " + "a-very-long-host-name-of-an-earlier-holder" * 3 + "\n")
    lock = acquire_lock(str(path), "the run folder x", "")
    try:
        assert path.read_text() == f"{os.getpid()} {socket.gethostname()}\n"
    finally:
        lock.release()


def test_release_twice_is_safe(tmp_path):
    """``self._fd = None`` removed from release: a second release closed the descriptor again (EBADF, or worse,
    another file that reused the number)."""
    lock = acquire_lock(str(tmp_path / ".lock"), "x", "")
    lock.release()
    assert not lock.locked
    lock.release()


def test_a_lock_file_removed_between_open_and_flock_is_locked_again_at_its_path(tmp_path, monkeypatch):
    """The samestat check dropped: the lock was taken on a file the previous holder had just unlinked, so it
    guarded nothing and a second start got the lock at the path too."""
    path = str(tmp_path / ".lock")
    real, calls = file_lock.fcntl.flock, []

    def flock(fd, operation):
        calls.append(fd)
        if len(calls) == 1:
            os.unlink(path)  # the previous holder's failed start removed the folder with its lock file
        return real(fd, operation)

    monkeypatch.setattr(file_lock.fcntl, "flock", flock)
    lock = acquire_lock(path, "the run folder x", "")
    monkeypatch.setattr(file_lock.fcntl, "flock", real)
    try:
        assert len(calls) == 2 and open(path).read().split()[0] == str(os.getpid())
        with pytest.raises(FileLockedError):
            acquire_lock(path, "the run folder x", "")
    finally:
        lock.release()


def test_a_holder_line_that_is_not_a_pid_reads_pid_unknown(tmp_path):
    """The ``isdigit`` check dropped: a lock file whose holder had not written its pid yet (or held junk) was
    reported as ``pid <junk>``."""
    path = str(tmp_path / ".lock")
    lock = acquire_lock(path, "the run folder x", "")
    try:
        fd = os.open(path, os.O_WRONLY)
        os.ftruncate(fd, 0)
        os.pwrite(fd, b"starting somewhere\n", 0)
        os.close(fd)
        with pytest.raises(FileLockedError, match=r"in use by another process \(pid unknown, holding "):
            acquire_lock(path, "the run folder x", "")
    finally:
        lock.release()


def _dead_staging(tmp_path, pid: int = 4000000):
    """A staging folder of this host named with pid ``pid`` (above any pid_max, so never running)."""
    folder = staging_folder(str(tmp_path / "Mocap"), "importing").rsplit("-", 1)[0] + f"-{pid}"
    os.makedirs(folder)
    return folder


def _staging_warnings(caplog):
    return [r.getMessage() for r in caplog.records if r.name == "utils.staging"]


def test_a_staging_folder_of_another_user_s_running_process_is_kept(tmp_path, monkeypatch, caplog):
    """PermissionError from ``os.kill(pid, 0)`` (a process of another user) taken for 'not running': its
    staging folder was deleted under it."""
    folder = _dead_staging(tmp_path)

    def kill(pid, sig):
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(staging.os, "kill", kill)
    with caplog.at_level(logging.WARNING, logger="utils.staging"):
        assert remove_abandoned_staging(str(tmp_path / "Mocap"), "importing", "an import") == []
    assert os.path.isdir(folder)
    assert any("which is running" in m for m in _staging_warnings(caplog))


def test_a_folder_that_only_begins_like_a_staging_folder_is_left_alone(tmp_path, caplog):
    """``fullmatch`` -> ``match``: a user's folder named ``<staging folder>.backup`` was taken for a staging
    folder and deleted."""
    folder = _dead_staging(tmp_path) + ".backup"
    os.rename(folder[:-len(".backup")], folder)
    with caplog.at_level(logging.WARNING, logger="utils.staging"):
        assert remove_abandoned_staging(str(tmp_path / "Mocap"), "importing", "an import") == []
    assert os.path.isdir(folder) and _staging_warnings(caplog) == []


def test_a_staging_folder_that_cannot_be_removed_is_not_reported_removed(tmp_path, monkeypatch, caplog):
    """The ``continue`` after 'cannot remove' dropped: the folder was also logged as removed and returned."""
    folder = _dead_staging(tmp_path)
    monkeypatch.setattr(staging.shutil, "rmtree", lambda path, ignore_errors=False: None)
    with caplog.at_level(logging.WARNING, logger="utils.staging"):
        assert remove_abandoned_staging(str(tmp_path / "Mocap"), "importing", "an import") == []
    warnings = _staging_warnings(caplog)
    assert len(warnings) == 1 and warnings[0].startswith(f"{folder}: cannot remove the staging folder")


def test_a_link_named_like_a_staging_folder_is_ignored(tmp_path, caplog):
    """The ``islink`` check dropped: a link named like a dead process's staging folder was 'removed' (rmtree
    refuses links, so it logged that it cannot remove it)."""
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "keep.npy").write_bytes(b"x")
    link = staging_folder(str(tmp_path / "Mocap"), "importing").rsplit("-", 1)[0] + "-4000000"
    os.symlink(tmp_path / "elsewhere", link)
    with caplog.at_level(logging.WARNING, logger="utils.staging"):
        assert remove_abandoned_staging(str(tmp_path / "Mocap"), "importing", "an import") == []
    assert os.path.islink(link) and (tmp_path / "elsewhere" / "keep.npy").exists()
    assert _staging_warnings(caplog) == []


def test_a_signal_ignored_before_the_block_stays_ignored(monkeypatch):
    """Handlers installed whatever the previous one: under ``nohup`` (SIGHUP ignored) a closed terminal stopped
    the run."""
    previous = signal.signal(signal.SIGHUP, signal.SIG_IGN)
    try:
        with stopping_on_signals():
            assert signal.getsignal(signal.SIGHUP) is signal.SIG_IGN
            signal.raise_signal(signal.SIGHUP)  # ignored: nothing is raised
            assert signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL
    finally:
        signal.signal(signal.SIGHUP, previous)
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL


def test_a_repeat_of_the_signal_during_the_clean_up_is_ignored():
    """The ``if stopping: return`` removed: a second SIGTERM (torchrun passing on the scheduler's) raised again
    inside the first one's clean-up and cut it short."""
    cleaned = []
    with pytest.raises(Stopped) as info:
        with stopping_on_signals():
            try:
                signal.raise_signal(signal.SIGTERM)
            finally:
                signal.raise_signal(signal.SIGTERM)
                cleaned.append(True)
    assert cleaned == [True] and info.value.exit_status == 128 + signal.SIGTERM


def test_a_clean_up_error_after_a_stop_raised_without_a_signal_ends_as_the_stop():
    """``_stop_behind`` never finding the Stopped: a clean-up that failed while a Stopped raised by the code
    (reproduce.py turns Ctrl-C into Stopped(SIGINT)) went up ended the block as that error, exit 1 instead of 130."""
    with pytest.raises(Stopped) as info:
        with stopping_on_signals():
            try:
                raise Stopped(signal.SIGINT)
            finally:
                raise RuntimeError("clean-up failed")
    assert info.value.signum == signal.SIGINT and isinstance(info.value.__cause__, RuntimeError)


def test_a_stop_inside_stops_deferred_is_raised_when_the_block_ends():
    """The deferred stop dropped at the end of ``stops_deferred``: the stop was lost."""
    after = []
    with pytest.raises(Stopped):
        with stopping_on_signals():
            with stops_deferred():
                signal.raise_signal(signal.SIGTERM)
                after.append("inside")
            after.append("after")
    assert after == ["inside"]
