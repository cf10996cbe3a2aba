"""The engine's collectives (utils/collectives.py): results match torch's object collectives across two gloo
processes, and a collective returns only once the backend has let go of its tensors."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
from fault_helpers import torchrun_available

from utils import collectives
from utils.collectives import _reference_counts, await_release

needs_gloo = pytest.mark.skipif(not torchrun_available(),
                                reason="needs torch.distributed with the gloo backend, which this torch build lacks")

TWO_PROCESS_SCRIPT = """
import sys
import numpy as np
import torch
import torch.distributed as dist
sys.path.insert(0, {repo!r})
from utils.collectives import all_gather_objects, all_reduce_mean, broadcast_object

dist.init_process_group("gloo")
rank = dist.get_rank()
for src in (0, 1):
    ours = broadcast_object({{"from": rank, "x": torch.arange(3 + rank)}} if rank == src else "ignored", src=src)
    assert ours["from"] == src and torch.equal(ours["x"], torch.arange(3 + src)), ours
assert broadcast_object(None if rank == 0 else "x", src=0) is None
# Payloads of different lengths per rank, as RNG states are.
mine = {{"rank": rank, "state": np.arange(5 * (rank + 1)), "text": "é" * rank}}
theirs = [None, None]
dist.all_gather_object(theirs, mine)  # first, so that the script ends on collectives that wait for their release
gathered = all_gather_objects(mine)
assert [g["rank"] for g in gathered] == [0, 1]
for a, b in zip(gathered, theirs):
    assert a["text"] == b["text"] and np.array_equal(a["state"], b["state"])
values = torch.tensor([1.0, 2.0]) * (rank + 1)
assert torch.equal(all_reduce_mean(values), torch.tensor([1.5, 3.0]))
assert torch.equal(values, torch.tensor([1.0, 2.0]) * (rank + 1))  # the input is left as it was
dist.destroy_process_group()
open({out!r} + f"/ok{{rank}}", "w").close()  # both processes print to one pipe, so each leaves a file instead
"""


@needs_gloo
@pytest.mark.slow
def test_two_process_results_match_torch_object_collectives(tmp_path):
    script = tmp_path / "collectives.py"
    script.write_text(TWO_PROCESS_SCRIPT.format(repo=str(Path(__file__).resolve().parents[1]), out=str(tmp_path)))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", str(script)]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    assert (tmp_path / "ok0").exists() and (tmp_path / "ok1").exists(), done.stderr[-3000:]


@pytest.fixture
def single_process_group():
    if not dist.is_available() or dist.is_initialized():
        pytest.skip("needs torch.distributed and no process group already in this process")
    dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)
    try:
        yield
    finally:
        dist.destroy_process_group()


@needs_gloo
@pytest.mark.parametrize("free_tensors", [0, 1])
def test_await_release_waits_for_the_backend_reference(single_process_group, free_tensors):
    """``await_release`` waits until the backend lets go of a tensor, also when another one is free from the start."""
    tensor = torch.ones(4)
    tensors = [torch.ones(2) for _ in range(free_tensors)] + [tensor]
    before = _reference_counts(tensors)
    handles = [dist.all_reduce(tensor, async_op=True)]  # the Work handle keeps a C++ reference to the tensor
    handles[0].wait()
    assert _reference_counts(tensors)[-1] > before[-1], "this torch does not count the backend's references"
    releasing = threading.Event()

    def release():
        # Set before the reference goes, not after: the Work's destructor runs without the GIL, so await_release may
        # see the count drop and return while clear() has not returned yet.
        releasing.set()
        handles.clear()

    timer = threading.Timer(0.2, release)
    timer.start()
    try:
        assert await_release(tensors, before, timeout_s=30.0)
        # Read before joining the timer: a wait that returned early would find the reference not yet dropped.
        assert releasing.is_set(), "await_release returned before the backend let go of the tensor"
        assert _reference_counts(tensors) == before
    finally:
        timer.join()


@needs_gloo
def test_await_release_gives_up_after_its_timeout(single_process_group, monkeypatch):
    tensor = torch.ones(4)
    tensors = [tensor]
    before = _reference_counts(tensors)
    handle = dist.all_reduce(tensor, async_op=True)
    handle.wait()

    class Clock:  # a clock that moves only when await_release sleeps, so the test does not depend on the machine
        now = 1000.0

        def monotonic(self) -> float:
            return self.now

        def sleep(self, seconds: float) -> None:
            self.now += seconds

    clock = Clock()
    monkeypatch.setattr(collectives, "time", clock)
    assert not await_release(tensors, before, timeout_s=0.1)
    assert 1000.1 <= clock.now <= 1000.1 + 1e-3  # it waited the whole timeout, polling, and not much longer
    monkeypatch.undo()
    del handle
    assert await_release(tensors, before, timeout_s=5.0)
