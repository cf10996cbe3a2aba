"""The memory-mapped corpus of one split: every motion concatenated into one float32 array, cached on disk.

Opening a cached index reads the split, ``stat``s each file for the fingerprint and memory-maps the arrays, so a
training run starts in seconds and holds no per-clip arrays in memory, whatever the number of clips.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import random
import shutil
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
from tqdm import tqdm

from utils.dataset_specs import DatasetSpec
from utils.motion_files import (
    CACHE_DIR,
    MOTION_DIR,
    SkipLog,
    header_problem,
    motion_path,
    open_npy,
    read_split,
    value_problems,
)
from utils.normalization import DatasetError, data_root_problem
from utils.paths import CACHE_ENV

logger = logging.getLogger(__name__)

INDEX_FORMAT_VERSION = 1


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

    The cache lives in ``<root>/.cache/motion_index/<split>_d<file_dim>_<fingerprint>/`` (or, with ``cache_dir``, or
    else ``$FSQ_MARDM_CACHE`` for a read-only dataset folder, in ``<cache_dir>/motion_index/`` with a hash of the
    root in front of the name). The fingerprint covers the
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

    @property
    def content_name(self) -> str:
        """The index folder's name without the hash of the data root that a shared cache puts in front: the split,
        the width and the fingerprint of the files, the same wherever the data folder is."""
        name = os.path.basename(self.folder)
        return name if name.startswith(f"{self.split}_d{self.file_dim}_") else name.split("_", 1)[1]

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
        problem = data_root_problem(spec, data_root)
        if problem:
            raise problem
        root = data_root or spec.root
        ids = read_split(root, split)
        cache_dir = cache_dir or os.environ.get(CACHE_ENV) or None
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
            except (OSError, ValueError, KeyError, EOFError) as e:  # EOFError: a file left empty
                logger.warning("%s: unreadable motion index (%s); rebuilding it", folder, e)
                shutil.rmtree(folder, ignore_errors=True)
        try:
            os.makedirs(base, exist_ok=True)
        except OSError as e:
            raise DatasetError(f"{base}: cannot create the index cache folder ({e}); expected a writable "
                               f"<root>/{CACHE_DIR}, or set {CACHE_ENV} to a writable folder for the indexes of a "
                               f"read-only dataset", kind="cache", path=base) from e
        _remove_abandoned_builds(base)
        tmp = os.path.join(base, f"{_TMP}{prefix}{os.getpid()}-{random.getrandbits(32):08x}")
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


_TMP = ".tmp-"
# A build's temporary folder untouched for this long was abandoned (a build killed with SIGKILL or by the OOM killer
# cannot remove it): a live build writes into it all along, and the largest corpora build in minutes.
ABANDONED_BUILD_SECONDS = 24 * 3600


def _remove_abandoned_builds(base: str) -> None:
    """Remove the temporary folders of builds in ``base`` whose newest file is older than ``ABANDONED_BUILD_SECONDS``
    (a partial copy of a split each; on a large corpus, many GB)."""
    now = time.time()
    for entry in os.listdir(base):
        path = os.path.join(base, entry)
        if not entry.startswith(_TMP) or not os.path.isdir(path):
            continue
        try:
            newest = max([os.path.getmtime(path)] + [os.path.getmtime(os.path.join(path, f)) for f in os.listdir(path)])
        except OSError:
            continue  # removed meanwhile, by its build or another cleaner
        if now - newest > ABANDONED_BUILD_SECONDS:
            logger.warning("%s: removing the temporary folder of an index build abandoned %.0f h ago", path,
                           (now - newest) / 3600)
            shutil.rmtree(path, ignore_errors=True)


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
            values = open_npy(path, spec)
            problem = header_problem(path, values.shape, values.dtype, spec)
            if problem is not None:
                raise problem
            with np.errstate(over="ignore"):  # float64 beyond float32 range becomes inf and is reported below
                chunk = np.ascontiguousarray(values, dtype="<f4")
            problems = value_problems(path, chunk, spec)
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
