"""Motion and text-motion datasets over the standard dataset layout.

A dataset root holds::

    new_joint_vecs/<id>.npy   (T, file_dim) float features
    texts/<id>.txt            lines ``caption#word/POS word/POS ...#f_tag#to_tag``
    train.txt val.txt test.txt  one id per line
    Mean.npy Std.npy          (file_dim,) or (dim_pose,)

All motions of a split are read once into a memory-mapped corpus (``MotionIndex``, cached under ``<root>/.cache/``),
so the datasets below hold only index arrays and per-sample records, never per-clip arrays in Python lists:

- ``MotionWindowDataset``: fixed windows for tokenizer training and validation losses;
- ``Text2MotionDataset``: (caption, padded motion, length) for generator training;
- ``Text2MotionEvalDataset``: the Guo et al. evaluation dataset (word vectors, POS one-hots, crops).

Randomness (windows, captions, crop lengths and offsets) is drawn from torch's default generator, which the
``DataLoader`` seeds per worker from the main process's generator: a run is reproducible given ``torch.manual_seed``
and the same ``num_workers``. The reference loaders draw from Python's ``random`` and numpy, with the same
distributions.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import random
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np
import torch
from torch.utils.data import Dataset
from tqdm import tqdm

from utils.dataset_specs import DatasetSpec
from utils.normalization import DatasetError

logger = logging.getLogger(__name__)

__all__ = [
    "DatasetError", "TextEntry", "read_split", "read_texts", "scan_texts", "load_motion", "scan_motion",
    "motion_path", "text_path", "SkipLog", "MotionIndex", "MotionWindowDataset", "TextSamples",
    "collect_text_samples", "max_sample_length", "Text2MotionDataset", "Text2MotionEvalDataset", "sentence_tokens",
    "TextMotionItem", "TextMotionBatch", "EvalItem", "EvalBatch", "collate_text_motion", "collate_eval", "WINDOW_MODES",
]

MOTION_DIR = "new_joint_vecs"
TEXT_DIR = "texts"
CACHE_DIR = ".cache"
INDEX_FORMAT_VERSION = 1
# The reference names a sub-clip "<random letter>_<id>" with a letter drawn from these 23.
SUBCLIP_LETTERS = "ABCDEFGHIJKLMNOPQRSTUVW"
WINDOW_MODES = ("random", "first", "all")
_EXAMPLES = 5  # ids quoted per skip reason in the one warning a dataset logs


# ---------------------------------------------------------------------------------------------------------------------
# Files
# ---------------------------------------------------------------------------------------------------------------------

def motion_path(root: str, clip_id: str) -> str:
    """``<root>/new_joint_vecs/<clip_id>.npy``."""
    return os.path.join(root, MOTION_DIR, clip_id + ".npy")


def text_path(root: str, clip_id: str) -> str:
    """``<root>/texts/<clip_id>.txt``."""
    return os.path.join(root, TEXT_DIR, clip_id + ".txt")


def read_split(root: str, split: str) -> list[str]:
    """The ids listed in ``<root>/<split>.txt`` (one per line, blank lines ignored, order kept).

    Raises ``DatasetError`` when the file is missing, unreadable or lists no id.
    """
    path = os.path.join(root, f"{split}.txt")
    if not os.path.isfile(path):
        raise DatasetError(f"{path}: split file missing; expected one motion id per line", kind="missing_split",
                           path=path)
    try:
        with open(path, encoding="utf-8") as f:
            ids = [line.strip() for line in f]
    except (OSError, UnicodeDecodeError) as e:
        raise DatasetError(f"{path}: cannot read split file ({e}); expected UTF-8 text, one id per line",
                           kind="missing_split", path=path) from e
    ids = [i for i in ids if i]
    if not ids:
        raise DatasetError(f"{path}: split is empty; expected at least one motion id", kind="empty_split", path=path)
    return ids


class TextEntry(NamedTuple):
    """One caption line. ``f_tag``/``to_tag`` are seconds (times ``spec.text_fps`` gives frames); both 0 means the
    caption describes the whole clip. ``tokens`` are ``word/POS`` strings and may be empty."""

    caption: str
    tokens: tuple[str, ...]
    f_tag: float
    to_tag: float


def _parse_tag(value: str, path: str, lineno: int, name: str) -> float:
    try:
        tag = float(value)
    except ValueError as e:
        raise DatasetError(f"{path}: line {lineno}: {name} {value!r} is not a number; expected seconds "
                           f"(caption#tokens#f_tag#to_tag)", kind="malformed_text", path=path) from e
    if math.isnan(tag):
        return 0.0  # the reference treats a NaN tag as 0 (whole clip)
    if tag < 0 or math.isinf(tag):
        raise DatasetError(f"{path}: line {lineno}: {name} is {value!r}; expected a finite time >= 0 in seconds",
                           kind="malformed_text", path=path)
    return tag


def scan_texts(path: str) -> tuple[list[TextEntry], list[DatasetError]]:
    """Parse a caption file, collecting every problem instead of stopping at the first.

    Returns the parsed entries (including captions without tokens) and the problems found: ``undecodable_text``
    (not UTF-8; nothing is parsed then), ``malformed_text`` (a line without four ``#`` fields, an empty caption or a
    tag that is not a time), ``missing_text``. Blank lines are ignored. A line is split from the right, so a caption
    that itself contains ``#`` stays whole.
    """
    if not os.path.isfile(path):
        return [], [DatasetError(f"{path}: caption file missing; expected lines caption#tokens#f_tag#to_tag",
                                 kind="missing_text", path=path)]
    with open(path, "rb") as f:
        raw = f.read()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw[:e.start].count(b"\n") + 1
        return [], [DatasetError(f"{path}: line {line}: byte {e.start} cannot be decoded ({e.reason}); expected "
                                 f"UTF-8 text", kind="undecodable_text", path=path)]
    entries, problems = [], []
    for lineno, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if not line:
            continue
        fields = line.rsplit("#", 3)
        if len(fields) != 4:
            problems.append(DatasetError(f"{path}: line {lineno}: {len(fields)} '#'-separated fields; expected 4 "
                                         f"(caption#tokens#f_tag#to_tag)", kind="malformed_text", path=path))
            continue
        caption, tokens, f_tag, to_tag = fields
        if not caption.strip():
            problems.append(DatasetError(f"{path}: line {lineno}: empty caption; expected text before the first '#'",
                                         kind="malformed_text", path=path))
            continue
        try:
            entries.append(TextEntry(caption.strip(), tuple(tokens.split()),
                                     _parse_tag(f_tag, path, lineno, "f_tag"),
                                     _parse_tag(to_tag, path, lineno, "to_tag")))
        except DatasetError as e:
            problems.append(e)
    return entries, problems


def read_texts(path: str) -> list[TextEntry]:
    """The caption lines of ``path`` as ``TextEntry`` records.

    Raises ``DatasetError`` (naming the file and line) for a missing file, bytes that are not UTF-8, or a malformed
    line. A caption without tokens is returned with ``tokens == ()``: the evaluation dataset, which needs tokens,
    skips and counts it; training datasets only need the caption.
    """
    entries, problems = scan_texts(path)
    if problems:
        raise problems[0]
    return entries


def _field_of(spec: DatasetSpec, feature: int) -> str:
    for group in spec.layout:
        if group.start <= feature < group.stop:
            return f"feature {feature} (group {group.name!r})"
    return f"feature {feature} (beyond dim_pose, in the file's extra columns)"


def _header_problem(path: str, shape: tuple[int, ...], dtype: np.dtype, spec: DatasetSpec) -> DatasetError | None:
    """The first problem visible from the array header (dtype, rank, width, frame count), or None."""
    if not (np.issubdtype(dtype, np.floating) or np.issubdtype(dtype, np.integer)):
        return DatasetError(f"{path}: dtype {dtype} is not numeric; expected float features (T, {spec.file_dim})",
                            kind="non_numeric", path=path)
    if len(shape) != 2:
        return DatasetError(f"{path}: array of shape {shape} has {len(shape)} dims; expected (T, {spec.file_dim}) "
                            f"features for dataset {spec.name!r}", kind="wrong_dim", path=path)
    if shape[1] != spec.file_dim:
        return DatasetError(f"{path}: feature width {shape[1]}; expected {spec.file_dim} features per frame for "
                            f"dataset {spec.name!r}", kind="wrong_dim", path=path)
    if shape[0] == 0:
        return DatasetError(f"{path}: 0 frames; expected at least one frame of {spec.file_dim} features",
                            kind="empty_motion", path=path)
    return None


def _value_problems(path: str, values: np.ndarray, spec: DatasetSpec) -> list[DatasetError]:
    """NaN and inf problems of a (T, file_dim) array, each naming the first frame and feature group."""
    problems = []
    finite = np.isfinite(values)
    if finite.all():
        return problems
    for kind, mask in (("nan", np.isnan(values)), ("inf", np.isinf(values))):
        if mask.any():
            frame, feature = (int(v) for v in np.argwhere(mask)[0])
            problems.append(DatasetError(f"{path}: {int(mask.sum())} {kind.upper()} values (first at frame {frame}, "
                                         f"{_field_of(spec, feature)}); expected finite features",
                                         kind=kind, path=path))
    return problems


def _open_npy(path: str, spec: DatasetSpec) -> np.ndarray:
    if not os.path.isfile(path):
        raise DatasetError(f"{path}: motion file missing; expected (T, {spec.file_dim}) features",
                           kind="missing_motion", path=path)
    if os.path.getsize(path) == 0:
        raise DatasetError(f"{path}: empty file (0 bytes); expected a .npy array (T, {spec.file_dim})",
                           kind="empty_motion", path=path)
    try:
        with open(path, "rb") as f:
            magic = f.read(6)
    except OSError as e:
        raise DatasetError(f"{path}: cannot open ({e}); expected a .npy array (T, {spec.file_dim})",
                           kind="unreadable_motion", path=path) from e
    if magic != b"\x93NUMPY":  # np.load would otherwise try to unpickle it
        raise DatasetError(f"{path}: not a .npy file (no NUMPY header); expected float features (T, {spec.file_dim})",
                           kind="unreadable_motion", path=path)
    try:
        return np.load(path, allow_pickle=False)
    except ValueError as e:
        if "pickle" in str(e) or "object" in str(e).lower():
            raise DatasetError(f"{path}: holds Python objects, not numbers; expected float features "
                               f"(T, {spec.file_dim})", kind="non_numeric", path=path) from e
        raise DatasetError(f"{path}: cannot read as a .npy array ({e}); expected float features (T, {spec.file_dim})",
                           kind="unreadable_motion", path=path) from e
    except (OSError, EOFError) as e:
        raise DatasetError(f"{path}: cannot read as a .npy array ({e}); expected float features (T, {spec.file_dim})",
                           kind="unreadable_motion", path=path) from e


def scan_motion(path: str, spec: DatasetSpec) -> tuple[np.ndarray | None, list[DatasetError]]:
    """Load a feature file, collecting its problems instead of raising.

    Returns (features (T, file_dim) float32 or None when unusable, problems). Problem kinds: ``missing_motion``,
    ``empty_motion``, ``unreadable_motion``, ``non_numeric``, ``wrong_dim``, ``nan``, ``inf``.
    """
    try:
        values = _open_npy(path, spec)
    except DatasetError as e:
        return None, [e]
    problem = _header_problem(path, values.shape, values.dtype, spec)
    if problem is not None:
        return None, [problem]
    with np.errstate(over="ignore"):  # float64 values beyond float32 become inf and are reported as such
        values = values.astype(np.float32)
    problems = _value_problems(path, values, spec)
    return (None if problems else values), problems


def load_motion(path: str, spec: DatasetSpec) -> np.ndarray:
    """Features of one clip as float32 (T, D), D = ``spec.dim_pose`` (the leading slice of a ``file_dim`` file).

    Raises ``DatasetError`` naming the file, the field and what was expected for: a missing, empty or unreadable
    file, a non-numeric dtype, a wrong rank or width, and NaN or inf values.
    """
    values, problems = scan_motion(path, spec)
    if problems:
        raise problems[0]
    return np.ascontiguousarray(values[:, :spec.dim_pose])


# ---------------------------------------------------------------------------------------------------------------------
# Skip accounting
# ---------------------------------------------------------------------------------------------------------------------

@dataclass
class SkipLog:
    """Counts of skipped clips/captions per reason, with the first few ids of each (reported once, not per item)."""

    counts: dict[str, int] = field(default_factory=dict)
    examples: dict[str, list[str]] = field(default_factory=dict)

    def add(self, reason: str, clip_id: str) -> None:
        self.counts[reason] = self.counts.get(reason, 0) + 1
        shown = self.examples.setdefault(reason, [])
        if len(shown) < _EXAMPLES:
            shown.append(clip_id)

    def merge(self, other: SkipLog) -> None:
        for reason, n in other.counts.items():
            self.counts[reason] = self.counts.get(reason, 0) + n
            shown = self.examples.setdefault(reason, [])
            shown.extend(other.examples.get(reason, [])[:max(0, _EXAMPLES - len(shown))])

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def summary(self) -> str:
        parts = []
        for reason, n in self.counts.items():
            ids = ", ".join(self.examples.get(reason, []))
            more = ", ..." if n > len(self.examples.get(reason, [])) else ""
            parts.append(f"{n} {reason} ({ids}{more})")
        return "; ".join(parts)

    def report(self, what: str) -> None:
        """One ``logger.warning`` listing every reason with its count and first ids; silent when nothing was skipped."""
        if self.counts:
            logger.warning("%s: skipped %s", what, self.summary())

    def to_dict(self) -> dict[str, Any]:
        return {"counts": dict(self.counts), "examples": {k: list(v) for k, v in self.examples.items()}}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SkipLog:
        return cls(dict(d.get("counts", {})), {k: list(v) for k, v in d.get("examples", {}).items()})


# ---------------------------------------------------------------------------------------------------------------------
# Memory-mapped corpus index
# ---------------------------------------------------------------------------------------------------------------------

def _fingerprint(root: str, split: str, ids: Sequence[str], file_dim: int) -> str:
    """Hash of the split's file list with each file's size and mtime (a missing file hashes as missing)."""
    h = hashlib.sha256(f"v{INDEX_FORMAT_VERSION}|{split}|{file_dim}\n".encode())
    folder = os.path.join(root, MOTION_DIR, "")  # joined once: per-id os.path.join costs more than the stat
    for clip_id in ids:
        try:
            st = os.stat(f"{folder}{clip_id}.npy")
            h.update(f"{clip_id}|{st.st_size}|{st.st_mtime_ns}\n".encode())
        except FileNotFoundError:
            h.update(f"{clip_id}|missing\n".encode())
    return h.hexdigest()[:20]


class MotionIndex:
    """All motions of one split concatenated into one memory-mapped float32 array.

    Attributes: ``motion`` (F, file_dim) memory-mapped frames; ``offsets``, ``lengths`` (N,) int64, clip i being
    ``motion[offsets[i]:offsets[i] + lengths[i]]``; ``ids`` (N,) clip ids; ``skipped`` ids of the split without a
    motion file; ``built`` True when this call (re)built the cache rather than opening it.

    The cache lives in ``<root>/.cache/motion_index/<split>_d<file_dim>_<fingerprint>/`` (or, with ``cache_dir``,
    in ``<cache_dir>/motion_index/`` with a hash of the root in front of the name). The fingerprint covers the
    split's ids, file sizes and mtimes, so a changed, added or removed file builds a new index; older ones of the
    same split and width are removed. Opening is a few ``np.load`` calls with ``mmap_mode='r'`` plus one ``stat``
    per clip, so it stays cheap at a million clips. Width-sliced datasets
    (t2m_67 over 263-dim files) share the index of their files.
    """

    def __init__(self, folder: str, split: str, file_dim: int, built: bool = False) -> None:
        self.folder = folder
        self.split = split
        self.file_dim = file_dim
        self.built = built
        self._open()

    def _open(self) -> None:
        with open(os.path.join(self.folder, "meta.json")) as f:
            meta = json.load(f)
        if meta.get("format_version") != INDEX_FORMAT_VERSION or meta.get("file_dim") != self.file_dim:
            raise DatasetError(f"{self.folder}: index format {meta.get('format_version')} width "
                               f"{meta.get('file_dim')}; expected format {INDEX_FORMAT_VERSION} width {self.file_dim}",
                               kind="stale_index", path=self.folder)
        self.skipped = SkipLog.from_dict(meta.get("skipped", {}))
        self.motion = np.load(os.path.join(self.folder, "motion.npy"), mmap_mode="r")
        self.offsets = np.load(os.path.join(self.folder, "offsets.npy"))
        self.lengths = np.load(os.path.join(self.folder, "lengths.npy"))
        self.ids = np.load(os.path.join(self.folder, "ids.npy"), mmap_mode="r")
        n = self.offsets.shape[0]
        if self.lengths.shape != (n,) or self.ids.shape != (n,) or self.motion.shape != (meta["frames"], self.file_dim):
            raise DatasetError(f"{self.folder}: index arrays disagree in size; expected {n} clips and "
                               f"{meta['frames']} frames", kind="stale_index", path=self.folder)
        self._positions: dict[str, int] | None = None

    def __getstate__(self) -> dict[str, Any]:
        # Pickling (spawned DataLoader workers) must not copy the corpus: workers reopen the memory map.
        return {"folder": self.folder, "split": self.split, "file_dim": self.file_dim, "built": self.built}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._open()

    def __len__(self) -> int:
        return int(self.offsets.shape[0])

    @property
    def num_frames(self) -> int:
        return int(self.motion.shape[0])

    def clip(self, i: int, start: int = 0, stop: int | None = None, dim: int | None = None) -> np.ndarray:
        """Frames ``[start, stop)`` of clip i, first ``dim`` features: a read-only view (L, dim) of the memory map."""
        length = int(self.lengths[i])
        stop = length if stop is None else min(stop, length)
        base = int(self.offsets[i])
        return self.motion[base + start:base + stop, :dim]

    def clip_id(self, i: int) -> str:
        return str(self.ids[i])

    def position(self, clip_id: str) -> int:
        """Row of ``clip_id`` in this index (KeyError when the split has no motion for it)."""
        if self._positions is None:
            self._positions = {str(c): i for i, c in enumerate(self.ids)}
        return self._positions[clip_id]

    @classmethod
    def build(cls, spec: DatasetSpec, split: str, data_root: str | None = None, *, cache_dir: str | None = None,
              progress: bool = True) -> MotionIndex:
        """Open the cached index of ``split`` under the dataset root, building it first when absent or stale.

        Building streams the files one by one into the output file (one pass, one clip in memory at a time),
        writes into a temporary folder and renames it into place, so a crash or a concurrent
        builder never leaves a partial index under the final name. Ids without a motion file are skipped and
        counted (the reference loaders skip them silently); a corrupt file raises ``DatasetError`` naming it
        (``prepare_data.py validate`` lists every such file at once).
        """
        root = data_root or spec.root
        ids = read_split(root, split)
        base = os.path.join(cache_dir or os.path.join(root, CACHE_DIR), "motion_index")
        prefix = f"{split}_d{spec.file_dim}_"
        if cache_dir:  # a cache shared by several roots: tell them apart, or each build would delete the others
            prefix = hashlib.sha256(os.path.realpath(root).encode()).hexdigest()[:8] + "_" + prefix
        folder = os.path.join(base, prefix + _fingerprint(root, split, ids, spec.file_dim))
        if os.path.isdir(folder):
            try:
                index = cls(folder, split, spec.file_dim)
                index.skipped.report(f"{spec.name} {split} motions")
                return index
            except (OSError, ValueError, KeyError) as e:
                logger.warning("%s: unreadable motion index (%s); rebuilding it", folder, e)
                shutil.rmtree(folder, ignore_errors=True)
        try:
            os.makedirs(base, exist_ok=True)
        except OSError as e:
            raise DatasetError(f"{base}: cannot create the index cache folder ({e}); expected a writable "
                               f"<root>/{CACHE_DIR} or a cache_dir", kind="cache", path=base) from e
        tmp = os.path.join(base, f".tmp-{prefix}{os.getpid()}-{random.getrandbits(32):08x}")
        try:
            _write_index(tmp, root, split, ids, spec, progress)
            try:
                os.rename(tmp, folder)
            except OSError:
                if not os.path.isdir(folder):  # another process did not win the race: a real failure
                    raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        for entry in os.listdir(base):
            old = os.path.join(base, entry)
            if entry.startswith(prefix) and old != folder:
                shutil.rmtree(old, ignore_errors=True)
        index = cls(folder, split, spec.file_dim, built=True)
        index.skipped.report(f"{spec.name} {split} motions")
        return index


_NPY_HEADER_BYTES = 128  # a format-1.0 .npy header for any 2-D float32 shape of realistic size


def _write_index(folder: str, root: str, split: str, ids: list[str], spec: DatasetSpec, progress: bool) -> None:
    """Stream every motion of ``ids`` into ``folder/motion.npy`` in one pass, then write the index arrays.

    The frame count is known only at the end, so the .npy header space is reserved first and written last.
    """
    os.makedirs(folder)
    skipped = SkipLog()
    lengths = np.zeros(len(ids), dtype=np.int64)
    present = np.zeros(len(ids), dtype=bool)
    data_path = os.path.join(folder, "motion.npy")
    with open(data_path, "wb") as out:
        out.write(b"\0" * _NPY_HEADER_BYTES)
        for i, clip_id in enumerate(tqdm(ids, desc=f"index {split}", unit="clip", disable=not progress,
                                         leave=False)):
            path = motion_path(root, clip_id)
            if not os.path.isfile(path):
                skipped.add("ids without a motion file", clip_id)
                continue
            values = _open_npy(path, spec)
            problem = _header_problem(path, values.shape, values.dtype, spec)
            if problem is not None:
                raise problem
            with np.errstate(over="ignore"):  # float64 beyond float32 range becomes inf and is reported below
                chunk = np.ascontiguousarray(values, dtype="<f4")
            problems = _value_problems(path, chunk, spec)
            if problems:
                raise problems[0]
            out.write(memoryview(chunk).cast("B"))
            lengths[i] = chunk.shape[0]
            present[i] = True
        if not present.any():
            raise DatasetError(f"{os.path.join(root, split + '.txt')}: none of its {len(ids)} ids has a motion file in "
                               f"{os.path.join(root, MOTION_DIR)}; expected <id>.npy files", kind="missing_motion",
                               path=os.path.join(root, MOTION_DIR))
        kept = np.flatnonzero(present)
        lengths = lengths[kept]
        frames = int(lengths.sum())
        out.seek(0)
        np.lib.format.write_array_header_1_0(out, {"descr": "<f4", "fortran_order": False,
                                                   "shape": (frames, spec.file_dim)})
        if out.tell() != _NPY_HEADER_BYTES:
            raise DatasetError(f"{data_path}: .npy header of {out.tell()} bytes; expected {_NPY_HEADER_BYTES}",
                               kind="cache", path=data_path)
    offsets = np.zeros_like(lengths)
    np.cumsum(lengths[:-1], out=offsets[1:])
    np.save(os.path.join(folder, "offsets.npy"), offsets)
    np.save(os.path.join(folder, "lengths.npy"), lengths)
    np.save(os.path.join(folder, "ids.npy"), np.array([ids[i] for i in kept], dtype=str))
    meta = {"format_version": INDEX_FORMAT_VERSION, "split": split, "file_dim": spec.file_dim, "frames": frames,
            "clips": len(kept), "skipped": skipped.to_dict()}
    with open(os.path.join(folder, "meta.json"), "w") as f:
        json.dump(meta, f, indent=1)


# ---------------------------------------------------------------------------------------------------------------------
# Tokenizer windows
# ---------------------------------------------------------------------------------------------------------------------

def _check_stats(mean: np.ndarray, std: np.ndarray, spec: DatasetSpec, what: str) -> tuple[np.ndarray, np.ndarray]:
    mean = np.asarray(mean, dtype=np.float32)
    std = np.asarray(std, dtype=np.float32)
    if mean.shape != (spec.dim_pose,) or std.shape != (spec.dim_pose,):
        raise ValueError(f"{what}: mean {mean.shape} and std {std.shape}; expected ({spec.dim_pose},) for dataset "
                         f"{spec.name!r} (use utils.normalization.load_mean_std)")
    return mean, std


def _randint(high: int) -> int:
    """Uniform integer in [0, high) from torch's default generator."""
    return int(torch.randint(high, (1,)).item())


class StackedBatch(list):
    """The items of a batch that was read as one tensor: a list of its rows (views), plus ``stacked``, the
    ``(B, ...)`` tensor itself, so that collation can hand it on instead of copying the rows into a new one
    (``utils.engine`` does; any other consumer sees a plain list of tensors)."""

    def __init__(self, stacked: torch.Tensor) -> None:
        super().__init__(stacked.unbind(0))
        self.stacked = stacked


class MotionWindowDataset(Dataset):
    """Fixed-length windows for tokenizer training: item i is a normalised float32 tensor (window_size, D).

    ``mode`` picks the windows:

    - ``"random"`` (training): one item per clip; item i is a uniformly random window of clip i, a fresh offset on
      every access (T2M-GPT / MotionMillion style: an epoch visits each clip once).
    - ``"first"``: the first window of every clip (deterministic validation).
    - ``"all"``: every window starting at multiples of ``stride`` (default ``window_size``; deterministic). With
      ``stride=1`` this is the MoMask/MARDM epoch of all windows; unlike theirs it includes the last start.

    Clips shorter than the window are skipped and reported once with their count and first ids.
    """

    def __init__(self, spec: DatasetSpec, split: str, mean: np.ndarray, std: np.ndarray,
                 window_size: int | None = None, data_root: str | None = None, *, mode: str = "random",
                 stride: int | None = None, cache_dir: str | None = None, index: MotionIndex | None = None,
                 progress: bool = True) -> None:
        if mode not in WINDOW_MODES:
            raise ValueError(f"MotionWindowDataset: mode {mode!r}; expected one of {WINDOW_MODES}")
        self.spec = spec
        self.window_size = int(window_size or spec.window_size)
        self.mode = mode
        self.stride = int(stride or self.window_size)
        if self.window_size < 1 or self.stride < 1:
            raise ValueError(f"MotionWindowDataset: window_size {self.window_size} and stride {self.stride} must be "
                             f">= 1")
        self.mean, self.std = _check_stats(mean, std, spec, "MotionWindowDataset")
        self.index = index or MotionIndex.build(spec, split, data_root, cache_dir=cache_dir, progress=progress)
        self.skipped = SkipLog()
        short = np.flatnonzero(self.index.lengths < self.window_size)
        for i in short:
            self.skipped.add(f"clips shorter than the {self.window_size}-frame window", self.index.clip_id(int(i)))
        self.clips = np.flatnonzero(self.index.lengths >= self.window_size)
        self.skipped.report(f"{spec.name} {split} windows")
        if self.clips.size == 0:
            raise DatasetError(f"{spec.name} {split}: no clip has {self.window_size} frames or more; expected some "
                               f"clips at least as long as the window", kind="too_short",
                               path=data_root or spec.root)
        # "all": window counts per clip and their cumulative starts, to map an item to (clip, offset) by bisection.
        counts = (self.index.lengths[self.clips] - self.window_size) // self.stride + 1
        self._first_item = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)

    def __len__(self) -> int:
        if self.mode == "all":
            return int(self._first_item[-1])
        return int(self.clips.size)

    def draw(self, item: int) -> tuple[int, int]:
        """The random part of item ``item``: ``(index row, first frame)`` of its window (``random`` mode draws the
        offset from torch's default generator; the other modes are deterministic)."""
        if not 0 <= item < len(self):
            raise IndexError(f"window {item} out of range for {len(self)} items")
        if self.mode == "all":
            k = int(np.searchsorted(self._first_item, item, side="right")) - 1
            offset = (item - int(self._first_item[k])) * self.stride
        else:
            k = item
            spare = int(self.index.lengths[self.clips[k]]) - self.window_size
            offset = _randint(spare + 1) if self.mode == "random" else 0
        return int(self.clips[k]), offset

    def fetch(self, windows: Sequence[tuple[int, int]]) -> StackedBatch:
        """Normalised windows ``(window_size, D)`` for ``draw`` results, read from the memory map in one gather and
        normalised in one pass (per window, the work is Python overhead; per batch it is a copy)."""
        rows = np.fromiter((row for row, _ in windows), dtype=np.int64, count=len(windows))
        starts = self.index.offsets[rows] + np.fromiter((o for _, o in windows), dtype=np.int64, count=len(windows))
        frames = starts[:, None] + np.arange(self.window_size)
        batch = np.asarray(self.index.motion[frames.reshape(-1), :self.spec.dim_pose])
        batch = batch.reshape(len(windows), self.window_size, self.spec.dim_pose)
        batch -= self.mean
        batch /= self.std
        return StackedBatch(torch.from_numpy(batch))

    def __getitem__(self, item: int) -> torch.Tensor:
        return self.fetch([self.draw(item)])[0]

    def __getitems__(self, items: Sequence[int]) -> list[torch.Tensor]:
        """A batch of items (the ``DataLoader`` calls this instead of ``__getitem__`` per item)."""
        return self.fetch([self.draw(item) for item in items])


# ---------------------------------------------------------------------------------------------------------------------
# Text-motion samples
# ---------------------------------------------------------------------------------------------------------------------

@dataclass
class TextSamples:
    """Text-motion samples sorted by length: sample j is frames ``[starts[j], stops[j])`` of index row ``rows[j]``,
    named ``names[j]`` (the clip id, or ``<letter>_<id>`` for a sub-clip) with its ``captions[j]``."""

    rows: np.ndarray
    starts: np.ndarray
    stops: np.ndarray
    names: list[str]
    captions: list[list[TextEntry]]
    skipped: SkipLog

    @property
    def lengths(self) -> np.ndarray:
        return self.stops - self.starts

    def __len__(self) -> int:
        return len(self.names)


def _subclip_name(rng: random.Random, used: set[str], clip_id: str) -> str:
    # The reference redraws a letter until the name is new; once all 23 letters are taken it would loop forever,
    # so further sub-clips get a numbered letter instead.
    if len(used) < len(SUBCLIP_LETTERS):
        while True:
            name = f"{rng.choice(SUBCLIP_LETTERS)}_{clip_id}"
            if name not in used:
                return name
    n = len(used)
    return f"{SUBCLIP_LETTERS[n % len(SUBCLIP_LETTERS)]}{n // len(SUBCLIP_LETTERS)}_{clip_id}"


def max_sample_length(spec: DatasetSpec) -> int:
    """Exclusive upper bound on a sample's frames: ``max_motion_length + unit_length`` (the reference's 200 for
    HumanML3D/KIT), so that a length rounded down to ``unit_length`` never exceeds ``max_motion_length``."""
    return spec.max_motion_length + spec.unit_length


def collect_text_samples(spec: DatasetSpec, index: MotionIndex, data_root: str | None = None,
                         require_tokens: bool = False) -> TextSamples:
    """The text-motion samples of ``index``'s clips, following the reference rules (section 4.5 of the notes).

    - A clip is used only if ``spec.min_motion_length <= T < max_sample_length(spec)``; otherwise it is skipped with
      its sub-clips (the reference filters the clip before reading its captions).
    - A caption with ``f_tag == to_tag == 0`` describes the whole clip; the whole clip is a sample only if it has at
      least one such caption, so a clip with only sub-clip captions is dropped as a whole.
    - Any other caption is its own sample: frames ``[int(f_tag * text_fps), int(to_tag * text_fps))`` (text_fps is 20
      even for KIT, as in every reference loader), kept only if its length passes the same bounds, named
      ``<letter>_<id>`` with the letter drawn from a generator seeded by the id (the reference draws it from the
      global RNG, which only changes names).
    - Clips without a caption file or with no caption are skipped; with ``require_tokens`` captions without tokens
      are skipped too. All skips are counted in ``skipped`` (not logged here).

    Samples come sorted by length, stable, with each clip's sub-clips before the clip itself, as in the reference.
    """
    root = data_root or spec.root
    lo, hi = spec.min_motion_length, max_sample_length(spec)
    skipped = SkipLog()
    samples: list[tuple[int, int, int, str, list[TextEntry]]] = []
    for row in range(len(index)):
        clip_id = index.clip_id(row)
        length = int(index.lengths[row])
        if not lo <= length < hi:
            skipped.add(f"clips outside {lo} <= frames < {hi}", clip_id)
            continue
        path = text_path(root, clip_id)
        if not os.path.isfile(path):
            skipped.add("clips without a caption file", clip_id)
            continue
        entries = read_texts(path)
        if not entries:
            skipped.add("clips with an empty caption file", clip_id)
            continue
        whole: list[TextEntry] = []
        used: set[str] = set()
        rng = random.Random(clip_id)
        for entry in entries:
            if require_tokens and not entry.tokens:
                skipped.add("captions without tokens", clip_id)
                continue
            if entry.f_tag == 0.0 and entry.to_tag == 0.0:
                whole.append(entry)
                continue
            start = int(entry.f_tag * spec.text_fps)
            stop = min(int(entry.to_tag * spec.text_fps), length)
            if not lo <= stop - start < hi:
                skipped.add(f"sub-clips outside {lo} <= frames < {hi}", clip_id)
                continue
            name = _subclip_name(rng, used, clip_id)
            used.add(name)
            samples.append((row, start, stop, name, [entry]))
        if whole:
            samples.append((row, 0, length, clip_id, whole))
    samples.sort(key=lambda s: s[2] - s[1])  # stable: ties keep the reference's insertion order
    bounds = np.asarray([s[:3] for s in samples], dtype=np.int64).reshape(-1, 3)
    return TextSamples(rows=bounds[:, 0].copy(), starts=bounds[:, 1].copy(), stops=bounds[:, 2].copy(),
                       names=[s[3] for s in samples], captions=[s[4] for s in samples], skipped=skipped)


def _crop_length(length: int, unit_length: int, max_length: int) -> int:
    """The reference's training/evaluation crop: round down to a multiple of unit_length, and with probability 1/3
    (only when unit_length < 10) one unit less."""
    units = length // unit_length
    if unit_length < 10 and units > 1 and _randint(3) == 2:
        units -= 1
    return min(units * unit_length, (max_length // unit_length) * unit_length)


class TextMotionItem(NamedTuple):
    """One generator training sample: caption, motion (max_motion_length, D) normalised and zero-padded, length."""

    caption: str
    motion: torch.Tensor
    length: int


class _TextMotionBase(Dataset):
    def __init__(self, spec: DatasetSpec, split: str, mean: np.ndarray, std: np.ndarray, data_root: str | None,
                 unit_length: int | None, cache_dir: str | None, index: MotionIndex | None, require_tokens: bool,
                 progress: bool) -> None:
        self.spec = spec
        self.split = split
        self.unit_length = int(unit_length or spec.unit_length)
        self.max_motion_length = spec.max_motion_length
        self.mean, self.std = _check_stats(mean, std, spec, type(self).__name__)
        self.index = index or MotionIndex.build(spec, split, data_root, cache_dir=cache_dir, progress=progress)
        self.samples = collect_text_samples(spec, self.index, data_root, require_tokens=require_tokens)
        self.skipped = self.samples.skipped
        self.skipped.report(f"{spec.name} {split} {type(self).__name__}")
        if len(self.samples) == 0:
            raise DatasetError(f"{spec.name} {split}: no text-motion sample left ({self.skipped.summary() or 'none'}); "
                               f"expected clips of {spec.min_motion_length} to {max_sample_length(spec) - 1} frames "
                               f"with captions in {os.path.join(data_root or spec.root, TEXT_DIR)}",
                               kind="empty_split", path=data_root or spec.root)

    def _motion(self, j: int) -> tuple[torch.Tensor, int]:
        """Randomly cropped, normalised and zero-padded motion (max_motion_length, D) of sample j, and its length."""
        start, stop = int(self.samples.starts[j]), int(self.samples.stops[j])
        m_length = _crop_length(stop - start, self.unit_length, self.max_motion_length)
        offset = start + _randint(stop - start - m_length + 1)
        frames = self.index.clip(int(self.samples.rows[j]), offset, offset + m_length, self.spec.dim_pose)
        motion = np.zeros((self.max_motion_length, self.spec.dim_pose), dtype=np.float32)
        motion[:m_length] = (frames - self.mean) / self.std  # padding stays zero in normalised space
        return torch.from_numpy(motion), m_length


class Text2MotionDataset(_TextMotionBase):
    """Generator training samples: ``TextMotionItem(caption, motion (max_motion_length, D), length)``.

    Per access: a random caption of the sample, a length rounded down to ``unit_length`` (one unit less with
    probability 1/3, as the reference), a random offset, z-normalised with (mean, std), zero-padded.
    """

    def __init__(self, spec: DatasetSpec, split: str, mean: np.ndarray, std: np.ndarray, data_root: str | None = None,
                 unit_length: int | None = None, *, cache_dir: str | None = None, index: MotionIndex | None = None,
                 progress: bool = True) -> None:
        super().__init__(spec, split, mean, std, data_root, unit_length, cache_dir, index, require_tokens=False,
                         progress=progress)

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, item: int) -> TextMotionItem:
        captions = self.samples.captions[item]
        caption = captions[_randint(len(captions))].caption
        motion, m_length = self._motion(item)
        return TextMotionItem(caption, motion, m_length)


def sentence_tokens(tokens: Sequence[str], max_text_len: int = 20) -> tuple[list[str], int]:
    """The evaluator's sentence: (max_text_len + 2 tokens, sent_len).

    Shorter sentences become ``sos + tokens + eos`` padded with ``unk/OTHER``; longer ones are cropped to
    ``max_text_len`` tokens before adding sos/eos (sent_len = max_text_len + 2).
    """
    tokens = list(tokens)
    if len(tokens) < max_text_len:
        tokens = ["sos/OTHER"] + tokens + ["eos/OTHER"]
        sent_len = len(tokens)
        tokens += ["unk/OTHER"] * (max_text_len + 2 - sent_len)
    else:
        tokens = ["sos/OTHER"] + tokens[:max_text_len] + ["eos/OTHER"]
        sent_len = len(tokens)
    return tokens, sent_len


class EvalItem(NamedTuple):
    """One evaluation sample; shapes for max_text_len 20: word_embs (22, E), pos_ohot (22, P), motion (T, D)."""

    word_embs: torch.Tensor
    pos_ohot: torch.Tensor
    caption: str
    sent_len: int
    motion: torch.Tensor
    m_length: int
    tokens: str


class Text2MotionEvalDataset(_TextMotionBase):
    """The Guo et al. evaluation dataset (Text2MotionDatasetV2): ``EvalItem`` per access.

    Samples are sorted by length; ``reset_max_len(n)`` hides those shorter than n frames. Each access draws a
    caption, builds its sentence (``sentence_tokens``) through ``word_vectorizer[token] -> (word_vec (E,),
    pos_onehot (P,))``, crops the motion as the training dataset does, normalises with the evaluator (mean, std) and
    zero-pads it to ``max_motion_length``. ``tokens`` is the sentence joined with ``_``. Captions without tokens are
    skipped and counted. Batch with ``collate_eval``.
    """

    def __init__(self, spec: DatasetSpec, split: str, mean: np.ndarray, std: np.ndarray, word_vectorizer: Any,
                 data_root: str | None = None, max_text_len: int = 20, unit_length: int | None = None, *,
                 cache_dir: str | None = None, index: MotionIndex | None = None, progress: bool = True) -> None:
        super().__init__(spec, split, mean, std, data_root, unit_length, cache_dir, index, require_tokens=True,
                         progress=progress)
        self.word_vectorizer = word_vectorizer
        self.max_text_len = int(max_text_len)
        self.pointer = 0
        self.max_length = 0

    def reset_max_len(self, length: int) -> None:
        """Serve only samples of at least ``length`` frames (the reference's pointer into the sorted samples)."""
        if length > self.max_motion_length:
            raise ValueError(f"reset_max_len: {length} exceeds max_motion_length {self.max_motion_length}")
        self.pointer = int(np.searchsorted(self.samples.lengths, length, side="left"))
        self.max_length = length
        logger.info("%s %s evaluation samples from %d (length >= %d): %d left", self.spec.name, self.split,
                    self.pointer, length, len(self))

    def __len__(self) -> int:
        return len(self.samples) - self.pointer

    def __getitem__(self, item: int) -> EvalItem:
        if not 0 <= item < len(self):
            raise IndexError(f"sample {item} out of range for {len(self)} samples")
        j = self.pointer + item
        captions = self.samples.captions[j]
        entry = captions[_randint(len(captions))]
        tokens, sent_len = sentence_tokens(entry.tokens, self.max_text_len)
        vectors = [self.word_vectorizer[token] for token in tokens]
        word_embs = torch.from_numpy(np.stack([np.asarray(v[0], dtype=np.float32) for v in vectors]))
        pos_ohot = torch.from_numpy(np.stack([np.asarray(v[1], dtype=np.float32) for v in vectors]))
        motion, m_length = self._motion(j)
        return EvalItem(word_embs, pos_ohot, entry.caption, sent_len, motion, m_length, "_".join(tokens))


# ---------------------------------------------------------------------------------------------------------------------
# Collate
# ---------------------------------------------------------------------------------------------------------------------

class TextMotionBatch(NamedTuple):
    """captions: B strings; motion (B, T, D) float32; lengths (B,) int64."""

    captions: list[str]
    motion: torch.Tensor
    lengths: torch.Tensor


def collate_text_motion(batch: Sequence[TextMotionItem]) -> TextMotionBatch:
    """Stack ``Text2MotionDataset`` items into a ``TextMotionBatch`` (order kept)."""
    return TextMotionBatch([b[0] for b in batch], torch.stack([b[1] for b in batch]),
                           torch.tensor([b[2] for b in batch], dtype=torch.long))


class EvalBatch(NamedTuple):
    """word_embs (B, S, E), pos_ohot (B, S, P), captions, sent_lens (B,), motion (B, T, D), m_lengths (B,), tokens."""

    word_embs: torch.Tensor
    pos_ohot: torch.Tensor
    captions: list[str]
    sent_lens: torch.Tensor
    motion: torch.Tensor
    m_lengths: torch.Tensor
    tokens: list[str]


def collate_eval(batch: Sequence[EvalItem]) -> EvalBatch:
    """Stack ``Text2MotionEvalDataset`` items sorted by sent_len descending (stable), as the evaluator's text
    encoder packs sequences in that order."""
    batch = sorted(batch, key=lambda b: b[3], reverse=True)
    return EvalBatch(torch.stack([b[0] for b in batch]), torch.stack([b[1] for b in batch]), [b[2] for b in batch],
                     torch.tensor([b[3] for b in batch], dtype=torch.long), torch.stack([b[4] for b in batch]),
                     torch.tensor([b[5] for b in batch], dtype=torch.long), [b[6] for b in batch])
