"""Seeding and RNG state capture for exact resume.

The states come back as tensors and plain Python values only, so they can be stored in a checkpoint that loads with
``torch.load(..., weights_only=True)`` (Python's ``random.getstate()`` tuple and NumPy's legacy state tuple are
converted field by field).
"""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch


def set_seed(seed: int) -> None:
    """Seed Python's ``random``, NumPy's global RNG and torch (CPU and every CUDA device)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def seed_cpu_generators(seed: int) -> None:
    """Seed only the host-side global RNGs (``random``, ``np.random``, torch CPU); CUDA generators are left alone.

    Used per data sample, where touching device generators would be wasted work.
    """
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.default_generator.manual_seed(seed)


def get_rng_state(include_cuda: bool = True) -> dict[str, Any]:
    """Capture the global RNG states as tensors and plain values.

    Returns ``{"python": {...}, "numpy": {...}, "torch": ByteTensor, "cuda": [ByteTensor per device]}``; ``cuda``
    is present only when CUDA is initialised and ``include_cuda`` is set.
    """
    py_version, py_internal, py_gauss = random.getstate()
    np_kind, np_keys, np_pos, np_has_gauss, np_cached = np.random.get_state(legacy=True)
    state: dict[str, Any] = {
        "python": {"version": int(py_version), "internal": torch.tensor(py_internal, dtype=torch.int64),
                   "gauss_next": py_gauss},
        "numpy": {"kind": str(np_kind), "keys": torch.from_numpy(np_keys.astype(np.int64)), "pos": int(np_pos),
                  "has_gauss": int(np_has_gauss), "cached_gaussian": float(np_cached)},
        "torch": torch.get_rng_state(),
    }
    if include_cuda and torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore the states captured by :func:`get_rng_state` (a missing ``cuda`` entry leaves CUDA untouched; states
    of devices this process does not see are left out)."""
    py = state["python"]
    random.setstate((py["version"], tuple(int(v) for v in py["internal"].tolist()), py["gauss_next"]))
    nps = state["numpy"]
    np.random.set_state((nps["kind"], nps["keys"].numpy().astype(np.uint32), nps["pos"], nps["has_gauss"],
                         nps["cached_gaussian"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        # Saved where more GPUs were visible (another node, CUDA_VISIBLE_DEVICES): torch would index past its devices.
        torch.cuda.set_rng_state_all(list(state["cuda"])[:torch.cuda.device_count()])
