"""Data order and loading (utils/batching.py), the engine's collectives in one process (utils/collectives.py) and the
run lock's file handling (utils/file_lock.py)."""

from __future__ import annotations

import errno
import logging
import os
import socket
import threading
import time

import pytest
import torch
import torch.distributed as dist
from test_collectives import needs_gloo, single_process_group  # noqa: F401 (single_process_group is a fixture)

from utils import collectives, file_lock
from utils.batching import EpochBatchSampler, EpochLoader, SeededSamples, SequentialBatchSampler, epoch_batches
from utils.collectives import (
    _reference_counts,
    _run,
    all_gather_objects,
    all_reduce_mean,
    broadcast_object,
)
from utils.file_lock import FileLockedError, acquire_lock

# ---------------------------------------------------------------------------------------------------------------------
# Batch order
# ---------------------------------------------------------------------------------------------------------------------


def test_epoch_order_and_sample_seeds_are_those_of_earlier_runs():
    """A (seed, epoch) gives the same batches and per-sample seeds as it always has, so old runs resume and replay."""
    assert list(EpochBatchSampler(8, 4, seed=0, epoch=0)) == [
        [(7, 2868730980267863475), (5, 2357649665605133720), (6, 755989460602051470), (3, 1712288419982015620)],
        [(2, 4531824992048980060), (1, 4379437115861346559), (0, 3924283051253813104), (4, 1556201511950753830)]]
    assert list(EpochBatchSampler(6, 2, seed=5, epoch=3, rank=1, world_size=2)) == [
        [(2, 356847810200166650)], [(4, 334542085569555573)], [(1, 3042012188093418236)]]
    assert list(SequentialBatchSampler(3, 2, seed=4)) == [
        [(0, 2183124146297664845), (1, 60999009563491724)], [(2, 3849036923073101614)]]


def test_seed_and_epoch_are_not_interchangeable():
    """Seed 1 at epoch 2 and seed 2 at epoch 1 give different orders."""
    assert list(EpochBatchSampler(8, 4, seed=1, epoch=2)) != list(EpochBatchSampler(8, 4, seed=2, epoch=1))


def test_an_epoch_visits_every_sample_once_in_a_shuffled_order():
    """An epoch of whole batches holds each sample once, not in dataset order, each with its own large seed."""
    keys = [key for batch in EpochBatchSampler(64, 8, seed=3, epoch=1) for key in batch]
    indices = [i for i, _ in keys]
    assert sorted(indices) == list(range(64)) and indices != list(range(64))
    seeds = [s for _, s in keys]
    assert len(set(seeds)) == 64 and all(0 <= s < 2**62 for s in seeds) and max(seeds) > 2**61


def test_sequential_batches_of_an_exact_multiple_and_of_one_extra_sample():
    """16 samples in batches of 8 are two batches; 17 are three, the last holding sample 16 alone."""
    exact = SequentialBatchSampler(16, 8, seed=0)
    assert len(exact) == len(list(exact)) == 2
    extra = list(SequentialBatchSampler(17, 8, seed=0))
    assert len(SequentialBatchSampler(17, 8, seed=0)) == len(extra) == 3
    assert [i for i, _ in extra[-1]] == [16]


# ---------------------------------------------------------------------------------------------------------------------
# Seeded samples and the loaders
# ---------------------------------------------------------------------------------------------------------------------


class _Pid(torch.utils.data.Dataset):
    """Item i is (i, the process that read it)."""

    def __len__(self) -> int:
        return 8

    def __getitem__(self, i: int) -> tuple[int, int]:
        return i, os.getpid()


class _DrawFetch(torch.utils.data.Dataset):
    """A dataset read in one batched fetch of its draws."""

    def __init__(self) -> None:
        self.fetches = []

    def __len__(self) -> int:
        return 8

    def __getitem__(self, i: int):
        raise AssertionError("read item by item")

    def draw(self, i: int):
        return i, float(torch.rand(()))

    def fetch(self, draws):
        self.fetches.append(list(draws))
        return [torch.tensor([float(i), r]) for i, r in draws]


def test_seeded_samples_have_the_length_of_their_dataset():
    """Wrapping a dataset keeps its length."""
    assert len(SeededSamples(_Pid())) == 8


def test_a_batched_fetch_receives_the_draws_in_key_order():
    """The draws reach ``fetch`` in the order of the batch's keys."""
    ds = _DrawFetch()
    items = SeededSamples(ds).__getitems__([(1, 7), (4, 8), (6, 9)])
    assert [i for i, _ in ds.fetches[0]] == [1, 4, 6]
    assert [int(item[0]) for item in items] == [1, 4, 6]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_one_persistent_worker_serves_every_epoch_and_close_stops_it_mid_epoch():
    """With one worker the same worker process reads every epoch, and ``close`` ends it even while an unfinished
    epoch is still referenced (as by an exception's traceback)."""
    loader = EpochLoader(_Pid(), num_workers=1)
    try:
        pids = set()
        for epoch in range(2):
            for batch in loader.epoch(EpochBatchSampler(8, 4, seed=0, epoch=epoch)):
                pids |= {int(p) for p in batch[1]}
        unfinished = loader.epoch(EpochBatchSampler(8, 4, seed=0, epoch=2))
        pids |= {int(p) for p in next(unfinished)[1]}
        assert len(pids) == 1 and os.getpid() not in pids
    finally:
        loader.close()
    pid = pids.pop()
    deadline = time.monotonic() + 10
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not _alive(pid)


def test_a_closed_loader_starts_new_workers_for_a_later_epoch():
    """After ``close`` the loader still serves an epoch, from a worker it starts anew."""
    loader = EpochLoader(_Pid(), num_workers=1)
    try:
        first = {int(p) for batch in loader.epoch(EpochBatchSampler(8, 4, seed=0, epoch=0)) for p in batch[1]}
        loader.close()
        batches = list(loader.epoch(EpochBatchSampler(8, 4, seed=0, epoch=1)))
        assert [len(batch[0]) for batch in batches] == [4, 4]
        later = {int(p) for batch in batches for p in batch[1]}
        assert len(later) == 1 and later != first and os.getpid() not in later
    finally:
        loader.close()


def test_epoch_batches_with_a_worker_read_outside_this_process():
    """``epoch_batches`` with ``num_workers=1`` reads the samples in a worker process."""
    batches = list(epoch_batches(_Pid(), EpochBatchSampler(8, 4, seed=0, epoch=0), None, 1, False))
    assert len(batches) == 2
    assert {int(p) for batch in batches for p in batch[1]} != {os.getpid()}


# ---------------------------------------------------------------------------------------------------------------------
# Collectives in a single-process gloo group
# ---------------------------------------------------------------------------------------------------------------------


@needs_gloo
@pytest.mark.usefixtures("single_process_group")
def test_one_process_collectives_return_its_own_values():
    """Alone, a process gets its own object back (the very object from ``broadcast_object``) and its own mean."""
    obj = {"step": 3, "x": [1, 2]}
    assert broadcast_object(obj) is obj
    assert all_gather_objects(obj) == [obj]
    values = torch.tensor([1.0, -2.5])
    mean = all_reduce_mean(values)
    assert torch.equal(mean, values) and mean.data_ptr() != values.data_ptr()


@needs_gloo
@pytest.mark.usefixtures("single_process_group")
def test_gloo_collectives_run_on_owned_tensors_and_wait_for_their_release(monkeypatch):
    """Under gloo the collectives do not go through torch's object collectives, and each waits for its tensors."""
    def refused(*args, **kwargs):
        raise AssertionError("torch's object collective used under gloo")

    monkeypatch.setattr(dist, "broadcast_object_list", refused)
    monkeypatch.setattr(dist, "all_gather_object", refused)
    waits = []
    real_wait = collectives.await_release

    def counting_wait(tensors, before, *args, **kwargs):
        waits.append(len(tensors))
        return real_wait(tensors, before, *args, **kwargs)

    monkeypatch.setattr(collectives, "await_release", counting_wait)
    assert broadcast_object("text") == "text"
    assert all_gather_objects(5) == [5]
    assert torch.equal(all_reduce_mean(torch.ones(2)), torch.ones(2))
    assert waits == [1, 1, 2, 2, 1]  # size and payload of each, with the gathered slots; then the reduced tensor


@needs_gloo
@pytest.mark.usefixtures("single_process_group")
def test_a_collective_returns_once_the_backend_has_let_go_of_its_tensors():
    """``_run`` returns only after a reference the backend keeps is dropped, and soon after."""
    tensor = torch.ones(3)
    handles = []
    released = threading.Event()

    def release():
        released.set()
        handles.clear()

    def op():
        handles.append(dist.all_reduce(tensor, async_op=True))
        handles[0].wait()

    before = _reference_counts([tensor])
    timer = threading.Timer(0.2, release)
    started = time.monotonic()
    try:
        timer.start()
        _run(op, [tensor])
        assert released.is_set()
        assert time.monotonic() - started < 5.0
        assert _reference_counts([tensor]) == before
    finally:
        timer.join()


# ---------------------------------------------------------------------------------------------------------------------
# The lock file
# ---------------------------------------------------------------------------------------------------------------------


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_a_released_lock_is_no_longer_held_and_releasing_again_is_harmless(tmp_path):
    """After ``release`` the lock reports unlocked, a second release does nothing, and the file can be taken again."""
    path = str(tmp_path / ".lock")
    lock = acquire_lock(path, "the run", "")
    assert lock.locked
    lock.release()
    assert not lock.locked
    lock.release()
    again = acquire_lock(path, "the run", "")
    assert again.locked
    again.release()


def test_the_lock_file_is_created_readable_by_others(tmp_path):
    """A new lock file gets mode 0o644 under a 022 umask."""
    old = os.umask(0o022)
    try:
        acquire_lock(str(tmp_path / ".lock"), "the run", "").release()
    finally:
        os.umask(old)
    assert os.stat(tmp_path / ".lock").st_mode & 0o777 == 0o644


def test_the_lock_file_holds_exactly_this_process_and_host(tmp_path):
    """An older, longer content of the lock file is replaced by ``<pid> <host>``."""
    path = tmp_path / ".lock"
    path.write_text("1234567890 an-old-and-much-longer-host-name.example.org\n")
    lock = acquire_lock(str(path), "the run", "")
    try:
        assert path.read_text() == f"{os.getpid()} {socket.gethostname()}\n"
    finally:
        lock.release()


def test_a_refusal_names_the_holder_s_pid_and_host(tmp_path):
    """The refusal names the pid and the host written in the lock file, a long host name included."""
    path = str(tmp_path / ".lock")
    lock = acquire_lock(path, "the run", "")
    try:
        with pytest.raises(FileLockedError, match=f"pid {os.getpid()} on {socket.gethostname()}, holding"):
            acquire_lock(path, "the run", "")
        with open(path, "w") as f:
            f.write("4242 a-rather-long-host-name.example.org\n")
        with pytest.raises(FileLockedError,
                           match=r"the run is in use by another process \(pid 4242 on a-rather-long-host-name"
                                 r"\.example\.org, holding "):
            acquire_lock(path, "the run", "")
    finally:
        lock.release()


@pytest.mark.parametrize("content", ["", "\n", "starting up\n"])
def test_a_holder_that_has_not_written_its_pid_is_named_pid_unknown(tmp_path, content):
    """A lock file without a leading pid gives ``pid unknown`` in the refusal."""
    path = str(tmp_path / ".lock")
    lock = acquire_lock(path, "the run", "")
    try:
        with open(path, "w") as f:
            f.write(content)
        with pytest.raises(FileLockedError, match=r"\(pid unknown, holding "):
            acquire_lock(path, "the run", "")
    finally:
        lock.release()


def test_a_refused_acquisition_leaves_no_descriptor_open(tmp_path):
    """A refusal closes the descriptor it opened."""
    path = str(tmp_path / ".lock")
    lock = acquire_lock(path, "the run", "")
    try:
        before = _open_fds()
        for _ in range(3):
            with pytest.raises(FileLockedError):
                acquire_lock(path, "the run", "")
        assert _open_fds() == before
    finally:
        lock.release()


@pytest.mark.parametrize("code", [errno.ENOLCK, errno.EOPNOTSUPP])
def test_unsupported_flock_goes_on_unlocked_without_leaking_a_descriptor(tmp_path, monkeypatch, code):
    """ENOLCK and EOPNOTSUPP from flock give an unlocked lock, and the descriptor is closed."""
    def unsupported(fd, operation):
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(file_lock.fcntl, "flock", unsupported)
    monkeypatch.setattr(file_lock, "_warned_unsupported", True)
    before = _open_fds()
    lock = acquire_lock(str(tmp_path / ".lock"), "the run", "")
    assert not lock.locked and lock.path == str(tmp_path / ".lock")
    assert _open_fds() == before


def test_without_fcntl_the_lock_is_skipped_with_a_warning(tmp_path, monkeypatch, caplog):
    """Where ``fcntl`` cannot be imported, acquiring warns that flock is not available and goes on unlocked."""
    monkeypatch.setattr(file_lock, "fcntl", None)
    monkeypatch.setattr(file_lock, "_warned_unsupported", False)
    caplog.set_level(logging.WARNING, logger="utils.file_lock")
    lock = acquire_lock(str(tmp_path / ".lock"), "the run", "")
    assert not lock.locked
    assert ["fcntl.flock is not available on this platform" in r.getMessage() for r in caplog.records] == [True]


@pytest.mark.parametrize("recreated", [False, True])
def test_a_lock_file_removed_while_locking_is_locked_again_at_its_path(tmp_path, monkeypatch, recreated):
    """If the lock file is removed (or replaced) between its open and its lock, the file now at the path is locked."""
    path = str(tmp_path / ".lock")
    real_flock = file_lock.fcntl.flock
    calls = []

    def racing_flock(fd, operation):
        real_flock(fd, operation)
        calls.append(fd)
        if len(calls) == 1:  # the previous holder removes its failed start's folder, lock file included
            os.unlink(path)
            if recreated:
                with open(path, "w") as f:
                    f.write("")

    monkeypatch.setattr(file_lock.fcntl, "flock", racing_flock)
    lock = acquire_lock(path, "the run", "")
    monkeypatch.setattr(file_lock.fcntl, "flock", real_flock)
    try:
        assert len(calls) == 2
        with open(path) as f:
            assert f.read().split()[0] == str(os.getpid())
        with pytest.raises(FileLockedError, match="the run is in use"):
            acquire_lock(path, "the run", "")
    finally:
        lock.release()
