"""Checkpoint I/O: the only place that calls ``torch.save`` / ``torch.load``.

A checkpoint is one dict of tensors and plain Python values (so it loads with ``weights_only=True``):

``format_version``  int, ``CHECKPOINT_VERSION``
``stage``           "tokenizer" | "generator" | "evaluator" | "length_estimator" | ...
``model_name``      registry name the weights belong to
``model_args``      constructor keywords (plain values) so loaders rebuild the model without flags
``model``           state_dict (unwrapped from DDP / torch.compile)
``ema``             EMA state_dict or absent
``optimizer``, ``step``, ``epoch``, ``rng``, ``data_state``   exact resume
``dataset``         {"name", "spec", "mean", "std"}
``metrics``, ``config``, ``parent``   provenance

Files are written to a temporary name in the same folder and moved into place with ``os.replace``, so a crash never
leaves a truncated checkpoint under the final name.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import tempfile
import zipfile
from typing import Any

import torch

CHECKPOINT_VERSION = 1
TMP_PREFIX = ".tmp-"


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be used: missing, truncated, unsafe or of the wrong kind."""


def check_plain(value: Any, where: str = "checkpoint") -> None:
    """Raise TypeError for anything ``weights_only`` loading would reject (checked before writing)."""
    if value is None or isinstance(value, (bool, int, float, str, torch.Tensor, torch.dtype, torch.device)):
        return
    if isinstance(value, dict):
        for k, v in value.items():
            if not isinstance(k, (str, int)):
                raise TypeError(f"checkpoint key {where}.{k!r} must be str or int, got {type(k).__name__}")
            check_plain(v, f"{where}.{k}")
        return
    if isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            check_plain(v, f"{where}[{i}]")
        return
    raise TypeError(f"checkpoint value at {where} is a {type(value).__name__}; only tensors and plain Python "
                    "values are stored (so every file loads with weights_only=True)")


def unwrap_model(model: torch.nn.Module) -> torch.nn.Module:
    """Strip DDP (``.module``) and ``torch.compile`` (``._orig_mod``) wrappers."""
    while True:
        if hasattr(model, "_orig_mod"):
            model = model._orig_mod
        elif isinstance(model, (torch.nn.parallel.DistributedDataParallel, torch.nn.DataParallel)):
            model = model.module
        else:
            return model


def save_checkpoint(path: str, state: dict[str, Any]) -> None:
    """Atomically write ``state`` to ``path`` (temporary file in the same folder, fsync, ``os.replace``)."""
    check_plain(state, "checkpoint")
    state = {"format_version": CHECKPOINT_VERSION, **state}
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=TMP_PREFIX + os.path.basename(path) + ".", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())
        # mkstemp creates 0600 files; give the checkpoint the permissions an ordinary file would get.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def remove_stale_temporaries(folder: str) -> list[str]:
    """Delete temporary files left by a save that was killed mid-write; returns what was removed."""
    removed = []
    if os.path.isdir(folder):
        for name in os.listdir(folder):
            if name.startswith(TMP_PREFIX):
                os.remove(os.path.join(folder, name))
                removed.append(name)
    return removed


def load_checkpoint(path: str, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint safely (``weights_only=True``) with errors that name the file and the problem."""
    if not os.path.isfile(path):
        raise CheckpointError(f"checkpoint not found: {path}")
    if os.path.getsize(path) == 0:
        raise CheckpointError(f"{path}: empty file (an interrupted copy?)")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        raise CheckpointError(f"{path}: refused to load: the file holds Python objects that could run code when "
                              f"unpickled (only tensors and plain values are accepted). Details: {e}") from e
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError) as e:
        raise CheckpointError(f"{path}: not a readable checkpoint (truncated or corrupt?): {e}") from e
    if not isinstance(state, dict):
        raise CheckpointError(f"{path}: expected a dict at the top level, got {type(state).__name__}")
    return state


def file_sha256(path: str, chunk: int = 1 << 20) -> str:
    """SHA-256 of a file (recorded in reports and as a run's parent)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def require_keys(state: dict[str, Any], keys: list[str], path: str) -> None:
    """Clear error when ``state`` lacks one of ``keys``."""
    missing = [k for k in keys if k not in state]
    if missing:
        raise CheckpointError(f"{path}: missing keys {missing}; top-level keys are {sorted(state)}")


def check_matches(path: str, field: str, found: Any, expected: Any) -> None:
    """Raise when a checkpoint's ``field`` contradicts what the caller asked for, naming both sides."""
    if found != expected:
        raise CheckpointError(f"{path}: {field} is {found!r} in the checkpoint but {expected!r} was requested")
