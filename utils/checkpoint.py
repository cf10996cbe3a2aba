"""Checkpoint I/O: the only place that calls ``torch.save`` / ``torch.load``.

A checkpoint is one dict of tensors and plain Python values (so it loads with ``weights_only=True``):

``format_version``  int, ``CHECKPOINT_VERSION``
``stage``           "tokenizer" | "generator" | "evaluator" | "length_estimator" | ...
``model_name``      registry name the weights belong to
``model_args``      constructor keywords (plain values) so loaders rebuild the model without flags
``model``           state_dict (unwrapped from DDP / torch.compile)
``ema``             EMA state_dict or absent
``optimizer``, ``step``, ``epoch``, ``rng``, ``data_state``, ``loss_window``, ``log_off_cadence``   exact resume
``dataset``         {"name", "spec", "mean", "std"}
``metrics``, ``config``, ``parent``   provenance

Files are written to a temporary name in the same folder and moved into place with ``os.replace``, so a crash never
leaves a truncated checkpoint under the final name.
"""

from __future__ import annotations

import collections
import hashlib
import json
import os
import pickle
import re
import struct
import zipfile
import zlib
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from utils.atomic_io import TMP_PREFIX, atomic_write

CHECKPOINT_VERSION = 1

ZIP_MAGIC = b"PK\x03\x04"
# torch.save's format before PyTorch 1.6: a pickle (opcode 0x80 = protocol marker) whose first value is this
# number (``torch.serialization.MAGIC_NUMBER``, 10 bytes little-endian), or, in the earliest releases, a tar
# archive. torch.load still reads the pickle, which is passed on to it; it refuses the tar under weights_only.
LEGACY_MAGIC = (0x1950A86A20F9469CFC6C).to_bytes(10, "little")
TAR_MAGIC_OFFSET = 257
# torch's zip reader ignores the CRC-32 of each member, so damaged tensor bytes load silently. Checking every CRC
# reads the whole file once more: about half of torch.load's own time (0.09 s against 0.18 s for 300 MB from the
# page cache). Below this size that is at most a few tens of milliseconds; above it only the small members
# (data.pkl, version, byteorder, ...) are checked and the tensor data is trusted.
CRC_CHECK_MAX_BYTES = 128 << 20
# Messages of the RuntimeErrors torch.load raises for damaged bytes; any other RuntimeError (a CUDA map_location
# on a CPU-only machine, ...) is not about the file and goes through unchanged.
_DAMAGE_MESSAGES = ("PytorchStreamReader", "corrupt", "magic number", "protocol version", "unexpected EOF",
                    "wrong byte size", "zip archive")
# UnpicklingErrors from garbled bytes rather than from a refused object.
_GARBLED_PICKLE_MESSAGES = ("Unsupported operand", "String is too long", "truncated")
# What zipfile raises for a damaged archive (a garbled member name is a UnicodeDecodeError, a ValueError).
_ZIP_ERRORS = (zipfile.BadZipFile, EOFError, OSError, ValueError, zlib.error, NotImplementedError)


# What check_plain lets through, by exact type (nn.Parameter, OrderedDict and torch.Size are among the classes that
# weights_only loads).
PLAIN_TYPES = (type(None), bool, int, float, str, torch.Tensor, torch.nn.Parameter, torch.dtype, torch.device)
PLAIN_DICTS = (dict, collections.OrderedDict)
PLAIN_SEQUENCES = (list, tuple, torch.Size)
PLAIN_KEYS = (str, int, bool)


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be used: missing, truncated, unsafe or of the wrong kind."""


# Weight keys of the reference implementations' files other than tokenizers, which record no stage, and what wrote
# them: MARDM's train_MARDM.py, MoMask's train_t2m_transformer.py (legacy and T2M-GPT: "trans") and
# train_res_transformer.py, the length estimator both ship, and the released text_mot_match evaluator. Only
# tokenizers import (tools/import_checkpoint.py); these are named in the refusal of every loader they reach.
OFFICIAL_FILE_KINDS = {"ema_mardm": "MARDM", "mardm": "MARDM", "t2m_transformer": "MoMask masked transformer",
                       "res_transformer": "MoMask residual transformer", "trans": "T2M-GPT / MoMask transformer",
                       "estimator": "length estimator", "movement_encoder": "text/motion evaluator"}


def official_kind(state: Mapping[str, Any]) -> str | None:
    """What wrote ``state`` when it is one of the ``OFFICIAL_FILE_KINDS`` (a stage-less file with their keys), else
    None."""
    if "stage" in state:
        return None
    return next((who for key, who in OFFICIAL_FILE_KINDS.items() if key in state), None)


def check_plain(value: Any, where: str = "checkpoint") -> None:
    """Raise TypeError for anything ``weights_only`` loading would reject (checked before writing).

    Types are matched exactly: ``torch.save`` pickles a subclass as its own class, which ``weights_only`` refuses, so
    a numpy float (a ``float``), a ``NamedTuple`` (a ``tuple``), a ``defaultdict`` or an ``IntEnum`` would be
    written and then never load.
    """
    if type(value) in PLAIN_TYPES:
        return
    if type(value) in PLAIN_DICTS:
        for k, v in value.items():
            if type(k) not in PLAIN_KEYS:
                raise TypeError(f"checkpoint key {where}.{k!r} must be str or int, got {type(k).__name__}")
            check_plain(v, f"{where}.{k}")
        return
    if type(value) in PLAIN_SEQUENCES:
        for i, v in enumerate(value):
            check_plain(v, f"{where}[{i}]")
        return
    raise TypeError(f"checkpoint value at {where} is a {type(value).__name__}; only tensors and plain Python "
                    "values are stored (so every file loads with weights_only=True)")


def to_plain(value: Any) -> Any:
    """Arbitrary contents (a data batch, for the engine's NaN dump) as tensors and plain values that ``check_plain``
    accepts: numpy arrays become tensors (string arrays lists), numpy scalars Python values, mappings dicts with str
    keys, sequences lists, tensor subclasses plain tensors, anything else its repr.

    Scalars are matched by exact type: a numpy float is a ``float`` and an ``IntEnum`` an ``int``, but saved as they
    are the file would not load with ``weights_only``.
    """
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().as_subclass(torch.Tensor)
    if isinstance(value, np.ndarray):
        try:
            return torch.from_numpy(np.ascontiguousarray(value))
        except TypeError:  # strings, objects, dates: no tensor dtype
            return value.tolist() if value.dtype.kind == "U" else repr(value)
    if isinstance(value, np.generic):
        return to_plain(value.item())
    if isinstance(value, Mapping):
        return {str(k): to_plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_plain(v) for v in value]
    if value is None or type(value) in (bool, int, float, str):
        return value
    return repr(value)


def unwrap_model(model: torch.nn.Module) -> torch.nn.Module:
    """Strip DDP (``.module``) and ``torch.compile`` (``._orig_mod``) wrappers."""
    while True:
        if hasattr(model, "_orig_mod"):
            model = model._orig_mod
        elif isinstance(model, (torch.nn.parallel.DistributedDataParallel, torch.nn.DataParallel)):
            model = model.module
        else:
            return model


class _ClosedDropsWrites:
    """The file ``torch.save`` writes to; a write that comes after the file was closed is dropped.

    torch's zip writer finishes its file from its C++ destructor when ``torch.save`` never did (a stop signal
    between creating the writer and entering its ``with`` block). The destructor runs when the interrupted save's
    traceback is let go, after ``atomic_write`` has closed and removed the temporary: the write to the closed file
    raised inside a destructor, and the process aborted (SIGABRT) after the stop's message. Those bytes were for a
    file that is gone; in a save that completes, ``atomic_write`` closes the file only after ``torch.save`` returns.
    """

    def __init__(self, file: Any) -> None:
        self.file = file

    def write(self, data: Any) -> int:
        if self.file.closed:
            return memoryview(data).nbytes
        return self.file.write(data)

    def flush(self) -> None:
        if not self.file.closed:
            self.file.flush()

    def fileno(self) -> int:
        return self.file.fileno()


def save_checkpoint(path: str, state: dict[str, Any]) -> None:
    """Atomically write ``state`` to ``path`` (temporary file in the same folder, fsync, ``os.replace``)."""
    check_plain(state, "checkpoint")
    state = {"format_version": CHECKPOINT_VERSION, **state}
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with atomic_write(path, "wb") as f:
        torch.save(state, _ClosedDropsWrites(f))


def remove_stale_temporaries(folder: str) -> list[str]:
    """Delete temporary files left by a save that was killed mid-write; returns what was removed."""
    removed = []
    if os.path.isdir(folder):
        for name in os.listdir(folder):
            if name.startswith(TMP_PREFIX):
                os.remove(os.path.join(folder, name))
                removed.append(name)
    return removed


def _describe_content(head: bytes) -> str:
    """What a file that is not a PyTorch checkpoint looks like, from its first bytes."""
    if head.startswith(b"version https://git-lfs"):
        return "a Git LFS pointer (fetch the real file with `git lfs pull`)"
    text = head.decode("utf-8", errors="replace")
    if re.match(r"\s*<(!doctype html|html|head|body)", text, re.IGNORECASE):
        return "an HTML page (a failed download?)"
    body = text.rstrip("\ufffd")  # the first bytes may end inside a UTF-8 character
    if body and "\ufffd" not in body and all(c.isprintable() or c in "\t\n\r\f" for c in body):
        return f"text starting with {body.strip().splitlines()[0][:60]!r}" if body.strip() else "blank text"
    return f"binary data starting with {head[:8].hex(' ')}"


def _is_tensor_data(name: str) -> bool:
    """Whether zip member ``name`` holds a tensor's bytes (``<archive>/data/<key>``) rather than metadata."""
    parts = name.split("/")
    return len(parts) >= 2 and parts[-2] == "data"


def is_torchscript_member(name: str) -> bool:
    """Whether zip member ``name`` belongs to a TorchScript archive (``torch.jit.save``: its constants or code)."""
    return name.endswith("constants.pkl") or "/code/" in name


def _check_zip(path: str, check_data: bool) -> None:
    """Raise CheckpointError unless ``path`` is a whole zip with ``data.pkl`` and members matching their CRC-32."""
    damaged = f"{path}: not a readable checkpoint (truncated or corrupt?)"
    try:
        archive = zipfile.ZipFile(path)
    except _ZIP_ERRORS as e:
        raise CheckpointError(f"{damaged}: the zip index cannot be read ({e})") from e
    with archive:
        members = archive.infolist()
        if not any(m.filename.split("/")[-1] == "data.pkl" for m in members):
            names = [m.filename for m in members[:5]]
            raise CheckpointError(f"{path}: not a PyTorch checkpoint: a zip archive without data.pkl "
                                  f"(members {names}{' ...' if len(members) > 5 else ''})")
        # torch.load refuses these under weights_only with a message that names no file and suggests turning
        # weights_only off (OpenAI's CLIP ViT-B-32.pt is one).
        if any(is_torchscript_member(m.filename) for m in members):
            raise CheckpointError(f"{path}: not a checkpoint: a TorchScript archive (torch.jit.save), a compiled "
                                  "model rather than a dict of weights")
        for member in members:
            if not check_data and _is_tensor_data(member.filename):
                continue
            try:
                with archive.open(member) as f:
                    while f.read(1 << 20):
                        pass
            except zipfile.BadZipFile as e:
                if str(e).startswith("Bad CRC-32") and member.CRC == 0:
                    # torch.serialization.set_crc32_options(False) writes 0 instead of a checksum: nothing to verify.
                    continue
                if str(e).startswith("Bad CRC-32"):
                    raise CheckpointError(f"{damaged}: member {member.filename!r} fails its CRC-32 check (its "
                                          "bytes changed after it was written)") from e
                raise CheckpointError(f"{damaged}: member {member.filename!r} is damaged: {e}") from e
            except _ZIP_ERRORS as e:
                raise CheckpointError(f"{damaged}: member {member.filename!r} is damaged: {e}") from e


def _check_format(path: str, size: int) -> bool:
    """Raise CheckpointError unless ``path`` is an intact torch.save zip or looks like a legacy torch.save file;
    whether it is a zip."""
    with open(path, "rb") as f:
        head = f.read(TAR_MAGIC_OFFSET + 8)
    if head.startswith(ZIP_MAGIC):
        _check_zip(path, check_data=size <= CRC_CHECK_MAX_BYTES)
        return True
    legacy_pickle = head.startswith(b"\x80") and LEGACY_MAGIC in head[:32]
    legacy_tar = head[TAR_MAGIC_OFFSET:TAR_MAGIC_OFFSET + 5] == b"ustar"
    if legacy_tar:
        # torch.load refuses the pre-1.0 tar format under weights_only with a message that names no file and
        # suggests turning weights_only off; a tar of other files (a packed run folder) is no checkpoint either.
        raise CheckpointError(f"{path}: not a checkpoint this code loads: a tar archive (torch.save's format from "
                              "before PyTorch 1.0, which cannot be loaded with weights_only=True, or a packed folder: "
                              "extract it and pass the checkpoint inside)")
    if not legacy_pickle:
        raise CheckpointError(f"{path}: not a PyTorch checkpoint: expected the zip archive torch.save writes, "
                              f"found {_describe_content(head)}")
    return False


def _folder_given(path: str) -> str:
    """What to say when a folder is passed for a checkpoint file: the checkpoints in it and in its ``model/``."""
    found = [os.path.join(path, sub, name) for sub in ("", "model") if os.path.isdir(os.path.join(path, sub))
             for name in sorted(os.listdir(os.path.join(path, sub)))
             if name.endswith((".tar", ".pth", ".pt")) and not name.startswith(".")  # not a save's temporary
             and os.path.isfile(os.path.join(path, sub, name))]
    if not found:
        return (f"{path} is a folder, not a checkpoint file, and neither it nor its model/ folder holds a checkpoint "
                f"(*.tar, *.pth, *.pt)")
    return f"{path} is a folder, not a checkpoint file; pass one of the checkpoints in it: {', '.join(found)}"


def load_checkpoint(path: str, map_location: str | torch.device = "cpu", mmap: bool = False) -> dict[str, Any]:
    """Load a checkpoint safely (``weights_only=True``) with errors that name the file and the problem.

    The file must be a torch.save zip archive (or a pre-1.6 torch.save file); zip members are checked against their
    CRC-32 first (only the metadata members in files over ``CRC_CHECK_MAX_BYTES``). ``mmap`` maps the tensors of a
    zip archive from the file instead of reading them, for a look at the records of a large checkpoint.
    """
    if os.path.isdir(path):
        raise CheckpointError(_folder_given(path))
    if not os.path.isfile(path):
        raise CheckpointError(f"checkpoint not found: {path}")
    size = os.path.getsize(path)
    if size == 0:
        raise CheckpointError(f"{path}: empty file (an interrupted copy?)")
    zipped = _check_format(path, size)
    damaged = f"{path}: not a readable checkpoint (truncated or corrupt?)"
    try:
        state = torch.load(path, map_location=map_location, weights_only=True, mmap=mmap and zipped)
    except pickle.UnpicklingError as e:
        if any(m in str(e) for m in _GARBLED_PICKLE_MESSAGES):
            raise CheckpointError(f"{damaged}: {e}") from e
        raise CheckpointError(f"{path}: refused to load: the file holds Python objects that could run code when "
                              f"unpickled (only tensors and plain values are accepted). Details: {e}") from e
    except RuntimeError as e:
        if not any(m in str(e) for m in _DAMAGE_MESSAGES):
            raise
        raise CheckpointError(f"{damaged}: {e}") from e
    except (EOFError, KeyError, IndexError, ValueError, struct.error, zipfile.BadZipFile, OSError) as e:
        raise CheckpointError(f"{damaged}: {type(e).__name__}: {e}") from e
    if not isinstance(state, dict):
        raise CheckpointError(f"{path}: expected a dict at the top level, got {type(state).__name__}")
    return state


def digest(*parts: Any) -> Any:
    """A sha256 object fed with each part (arrays by dtype, shape and bytes; others as sorted JSON)."""
    h = hashlib.sha256()
    for part in parts:
        if isinstance(part, np.ndarray):
            h.update(str((part.dtype.str, part.shape)).encode())
            h.update(np.ascontiguousarray(part).tobytes())
        elif isinstance(part, bytes):
            h.update(part)
        else:
            h.update(json.dumps(part, sort_keys=True, default=str).encode())
        h.update(b"|")
    return h


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


def require_types(state: dict[str, Any], types: Mapping[str, type | tuple[type, ...]], path: str) -> None:
    """Clear error when an entry of ``state`` named in ``types`` is there but not of its type (a damaged or
    hand-edited file: ``model`` a list, ``unit_length`` None); missing entries are ``require_keys``' to report."""
    for key, expected in types.items():
        if key in state and not isinstance(state[key], expected):
            kinds = expected if isinstance(expected, tuple) else (expected,)
            wanted = " or ".join("None" if kind is type(None) else kind.__name__ for kind in kinds)
            raise CheckpointError(f"{path}: entry {key!r} is {type(state[key]).__name__} {_shown(state[key])}; "
                                  f"expected {wanted}")


def _shown(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."


def resumed_model_args(saved: dict[str, Any], model_args: dict[str, Any], added: dict[str, Any]) -> dict[str, Any]:
    """The ``model_args`` a resumed run records (``saved``: those of its checkpoint). ``added`` maps constructor
    arguments added after runs were saved to the value those runs trained with: a run saved before one existed keeps
    its record without it when it resumes with that value (loaders rebuild it with that default), so the model check
    does not refuse it for an argument it could not record; any other value stays, and is refused."""
    return {key: value for key, value in model_args.items()
            if key in saved or key not in added or value != added[key]}


def check_matches(path: str, field: str, found: Any, expected: Any) -> None:
    """Raise when a checkpoint's ``field`` contradicts what the caller asked for, naming both sides (for two dicts,
    such as ``model_args``, only the entries that differ)."""
    if found == expected:
        return
    if isinstance(found, dict) and isinstance(expected, dict):
        def shown(side: dict, key: Any) -> str:
            return repr(side[key]) if key in side else "absent"

        differ = [f"{key!r}: {shown(found, key)} in the checkpoint but {shown(expected, key)} requested"
                  for key in sorted(set(found) | set(expected), key=str)
                  if key not in found or key not in expected or found[key] != expected[key]]
        raise CheckpointError(f"{path}: {field} differ in {len(differ)} entr{'y' if len(differ) == 1 else 'ies'}: "
                              + "; ".join(differ))
    raise CheckpointError(f"{path}: {field} is {found!r} in the checkpoint but {expected!r} was requested")
