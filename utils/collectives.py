"""The engine's collectives across the processes of a torch.distributed run, safe to end a script on.

gloo's worker threads drop their reference to a finished collective's tensors only after the waiting caller has been
woken, and dropping a reference to a tensor that Python created needs the GIL. When a script ends right after a
collective (the last save broadcasts its outcome), a worker can still be waiting for the GIL when the interpreter
shuts down. Python then ends that thread in a way C++ cannot unwind, and the process aborts ("terminate called
without an active exception", exit -6) after all its work is done, which fails a ``torchrun ... && next-stage``
pipeline. The collectives here run on tensors they own and return only once the backend has let go of them (the
tensors' reference counts are back where they were; the GIL is free while waiting). Each worker frees its finished
collective before it takes the next one, so when the engine's last collective has been released no tensor of an
earlier one is left either, unless another thread ran it and has not been scheduled since.

Other backends (NCCL) go through torch's own object collectives: their tensors live on the GPU and are released by
the backend's watchdog, which this module does not wait for.
"""

from __future__ import annotations

import logging
import pickle
import sys
import time
from collections.abc import Callable
from typing import Any

import torch
import torch.distributed as dist

logger = logging.getLogger(__name__)

# How long to wait for the backend to let go of a collective's tensors. Release normally takes microseconds; if it
# never comes (a torch whose tensors do not count the backend's references), the collective has still completed, so
# waiting longer would only delay the run.
RELEASE_TIMEOUT_S = 10.0


class MainProcessFailed(RuntimeError):
    """Raised on the other processes when work that only the main process does failed there (the main process
    reports its own error; the others stop with one line)."""


def _own_tensors() -> bool:
    """Whether this module runs the collectives itself (gloo) rather than through torch's object collectives."""
    return dist.get_backend() == "gloo"


def _reference_counts(tensors: list[torch.Tensor]) -> list[int]:
    # Counted the same way every time (this function's own references are the same on each call), so counts taken
    # before and after a collective compare.
    return [sys.getrefcount(t) for t in tensors]


def await_release(tensors: list[torch.Tensor], before: list[int], timeout_s: float = RELEASE_TIMEOUT_S) -> bool:
    """Wait until the reference counts of ``tensors`` are back to ``before`` (``_reference_counts`` taken before the
    collective), and return whether that happened within ``timeout_s``. Sleeping releases the GIL, which is what a
    backend thread that is freeing the tensors needs."""
    deadline = time.monotonic() + timeout_s
    while any(now > then for now, then in zip(_reference_counts(tensors), before)):
        if time.monotonic() > deadline:
            logger.debug("the communication backend still holds a collective's tensors after %.0f s", timeout_s)
            return False
        time.sleep(1e-4)
    return True


def _run(op: Callable[[], Any], tensors: list[torch.Tensor]) -> None:
    """Run ``op()`` (a synchronous collective on ``tensors``) and wait until the backend has let go of them."""
    before = _reference_counts(tensors)
    op()
    await_release(tensors, before)


def broadcast_object(obj: Any, src: int = 0) -> Any:
    """``obj`` of process ``src``, on every process (pickled, like ``torch.distributed.broadcast_object_list``)."""
    if not _own_tensors():
        box = [obj]
        dist.broadcast_object_list(box, src=src)
        return box[0]
    is_src = dist.get_rank() == src
    payload = pickle.dumps(obj) if is_src else b""
    size = torch.tensor([len(payload)], dtype=torch.int64)
    _run(lambda: dist.broadcast(size, src=src), [size])
    data = torch.frombuffer(bytearray(payload), dtype=torch.uint8) if is_src else torch.empty(int(size),
                                                                                             dtype=torch.uint8)
    _run(lambda: dist.broadcast(data, src=src), [data])
    return obj if is_src else pickle.loads(data.numpy().tobytes())


def all_gather_objects(obj: Any) -> list[Any]:
    """Every process's ``obj``, in rank order (pickled, like ``torch.distributed.all_gather_object``)."""
    world = dist.get_world_size()
    if not _own_tensors():
        gathered: list[Any] = [None] * world
        dist.all_gather_object(gathered, obj)
        return gathered
    payload = pickle.dumps(obj)
    size = torch.tensor([len(payload)], dtype=torch.int64)
    sizes = [torch.empty(1, dtype=torch.int64) for _ in range(world)]
    _run(lambda: dist.all_gather(sizes, size), [size, *sizes])
    longest = max(int(s) for s in sizes)
    data = torch.zeros(longest, dtype=torch.uint8)
    data[:len(payload)] = torch.frombuffer(bytearray(payload), dtype=torch.uint8)
    slots = [torch.empty(longest, dtype=torch.uint8) for _ in range(world)]
    _run(lambda: dist.all_gather(slots, data), [data, *slots])
    return [pickle.loads(slot[:int(s)].numpy().tobytes()) for slot, s in zip(slots, sizes)]


def all_reduce_mean(values: torch.Tensor) -> torch.Tensor:
    """The mean of ``values`` (any shape) over processes; ``values`` is left unchanged."""
    total = values.detach().clone()
    if _own_tensors():
        _run(lambda: dist.all_reduce(total), [total])
    else:
        dist.all_reduce(total)
    return total / dist.get_world_size()
