"""Files of the standard dataset layout: paths, splits, captions, motion arrays, and the account of skipped ones.

A dataset root holds::

    new_joint_vecs/<id>.npy   (T, file_dim) float features
    texts/<id>.txt            lines ``caption#word/POS word/POS ...#f_tag#to_tag``
    train.txt val.txt test.txt  one id per line
    Mean.npy Std.npy          (file_dim,) or (dim_pose,)

Every reader checks what it reads and raises ``DatasetError`` naming the file, the field and what was expected.
"""

from __future__ import annotations

import codecs
import logging
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np

from utils.dataset_specs import DatasetSpec
from utils.normalization import DatasetError

logger = logging.getLogger(__name__)

MOTION_DIR = "new_joint_vecs"
TEXT_DIR = "texts"
CACHE_DIR = ".cache"
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
    try:  # utf-8-sig: a byte-order mark (Windows editors write one) would otherwise prefix the first id
        with open(path, encoding="utf-8-sig") as f:
            ids = [line.strip() for line in f]
    except (OSError, UnicodeDecodeError) as e:
        raise DatasetError(f"{path}: cannot read split file ({e}); expected UTF-8 text, one id per line",
                           kind="missing_split", path=path) from e
    ids = [i for i in ids if i]
    if not ids:
        raise DatasetError(f"{path}: split is empty; expected at least one motion id", kind="empty_split", path=path)
    # An id names files under the dataset's folders: an absolute one or one climbing out with '..' would read (and
    # cache) motions from elsewhere.
    outside = [i for i in ids if os.path.isabs(i) or ".." in i.replace("\\", "/").split("/")]
    if outside:
        raise DatasetError(f"{path}: ids {outside[:3]} point outside the dataset; expected ids relative to its "
                           f"folders (new_joint_vecs/<id>.npy), without '..'", kind="bad_split", path=path)
    return ids


# The splits the loaders and ``prepare_data.py validate`` read: a dataset's clips are the ids they list.
SPLITS = ("train", "val", "test")


class DatasetClips(NamedTuple):
    """The clips of a dataset root (``dataset_clips``)."""

    ids: list[str]  # each clip once, in split order (or sorted, for a root without split files)
    listed: bool  # True: the ids of the split files; False: no split file, every .npy under new_joint_vecs/
    unlisted: list[str]  # .npy files under new_joint_vecs/ that no split lists (relative, sorted): not clips


def dataset_clips(root: str, splits: Sequence[str] = SPLITS) -> DatasetClips:
    """The clips of the dataset at ``root``: the ids its ``<split>.txt`` files list (those of ``splits`` present), as
    the loaders and ``validate`` find them; other ``.npy`` files under ``new_joint_vecs/`` (a video's joints saved
    there, notes) are returned as ``unlisted``. A root without any of those split files (a dataset being built) has
    every ``.npy`` under ``new_joint_vecs/`` (searched recursively) as its clips.

    Raises ``DatasetError`` for an unreadable or empty split file, and, without split files, when
    ``new_joint_vecs/`` is missing or holds no ``.npy`` file.
    """
    motions = os.path.join(root, MOTION_DIR)
    found = []
    if os.path.isdir(motions):
        found = sorted(os.path.relpath(os.path.join(folder, name), motions)[:-4].replace(os.sep, "/")
                       for folder, _, names in os.walk(motions) for name in names if name.endswith(".npy"))
    present = [split for split in splits if os.path.isfile(os.path.join(root, f"{split}.txt"))]
    if present:
        ids = list(dict.fromkeys(clip_id for split in present for clip_id in read_split(root, split)))
        listed = set(ids)
        return DatasetClips(ids, True, [f"{clip_id}.npy" for clip_id in found if clip_id not in listed])
    if not os.path.isdir(motions):
        raise DatasetError(f"{motions}: no such folder; expected the features <id>.npy of every clip",
                           kind="missing_motion", path=motions)
    if not found:
        raise DatasetError(f"{motions}: no .npy files; expected the features <id>.npy of every clip",
                           kind="missing_motion", path=motions)
    return DatasetClips(found, False, [])


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

    Returns the parsed entries (including captions without tokens) and the problems found: ``unreadable_text`` (the
    file cannot be read), ``undecodable_text`` (not UTF-8; nothing is parsed then), ``malformed_text`` (a line
    without four ``#`` fields, an empty caption or a tag that is not a time), ``missing_text``. Blank lines are
    ignored. A line is split from the right, so a caption that itself contains ``#`` stays whole.
    """
    if not os.path.isfile(path):
        return [], [DatasetError(f"{path}: caption file missing; expected lines caption#tokens#f_tag#to_tag",
                                 kind="missing_text", path=path)]
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as e:  # no permission, an I/O error: one problem of the scan, not its end
        return [], [DatasetError(f"{path}: cannot read the caption file ({e.strerror or e}); expected lines "
                                 f"caption#tokens#f_tag#to_tag", kind="unreadable_text", path=path)]
    # A byte-order mark (Windows editors write one) would otherwise prefix the first caption.
    bom = len(codecs.BOM_UTF8) if raw.startswith(codecs.BOM_UTF8) else 0
    try:
        text = raw[bom:].decode("utf-8")
    except UnicodeDecodeError as e:
        byte = bom + e.start
        line = raw[:byte].count(b"\n") + 1
        return [], [DatasetError(f"{path}: line {line}: byte {byte} cannot be decoded ({e.reason}); expected "
                                 f"UTF-8 text", kind="undecodable_text", path=path)]
    entries, problems = [], []
    # Lines end at \n, \r\n or \r (as text-mode reading has them), not at the other breaks str.splitlines() knows
    # (\f, \x85, U+2028...): those are characters of a caption.
    for lineno, line in enumerate(text.replace("\r\n", "\n").replace("\r", "\n").split("\n"), start=1):
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


def header_problem(path: str, shape: tuple[int, ...], dtype: np.dtype, spec: DatasetSpec) -> DatasetError | None:
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


def value_problems(path: str, values: np.ndarray, spec: DatasetSpec) -> list[DatasetError]:
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


def open_npy(path: str, spec: DatasetSpec) -> np.ndarray:
    """The array of the .npy file at ``path``, or a ``DatasetError`` saying why it cannot be read (missing, empty,
    not a .npy file, pickled objects); shape and values are checked by ``header_problem`` / ``value_problems``."""
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
        values = open_npy(path, spec)
    except DatasetError as e:
        return None, [e]
    problem = header_problem(path, values.shape, values.dtype, spec)
    if problem is not None:
        return None, [problem]
    with np.errstate(over="ignore"):  # float64 values beyond float32 become inf and are reported as such
        values = values.astype(np.float32)
    problems = value_problems(path, values, spec)
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


def read_joints(path: str, spec: DatasetSpec) -> np.ndarray:
    """Joint positions (T, J, 3) of the .npy file at ``path`` (an export's input, not a dataset clip): joints as they
    are, or de-normalised features (T, D), D = ``spec.dim_pose`` or ``spec.file_dim``, through the dataset's
    kinematics. Raises ``FileNotFoundError``, or ``ValueError`` naming the file and the shapes expected."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: no such file")
    with open(path, "rb") as f:
        magic = f.read(6)
    if magic[:2] != b"PK" and magic != b"\x93NUMPY":  # np.load would read a text file as "pickled data"
        raise ValueError(f"{path}: not a .npy file (no NUMPY header{': the file is empty' if not magic else ''}); "
                         f"expected joint positions (T, {spec.joints_num}, 3) or features (T, D) saved with np.save")
    try:
        joints = np.load(path, allow_pickle=False)
    except ValueError as e:
        raise ValueError(f"{path}: not a plain numeric .npy of joint positions ({e})") from e
    if isinstance(joints, np.lib.npyio.NpzFile):  # np.load opens a zip archive whatever the file's extension
        names = ", ".join(joints.files)
        joints.close()
        raise ValueError(f"{path}: an .npz archive ({names}); expected a .npy of joint positions "
                         f"(T, {spec.joints_num}, 3) or features (T, D)")
    if not (np.issubdtype(joints.dtype, np.floating) or np.issubdtype(joints.dtype, np.integer)):
        raise ValueError(f"{path}: dtype {joints.dtype} is not numeric; expected joint positions "
                         f"(T, {spec.joints_num}, 3) or features (T, D)")
    if joints.ndim == 2 and joints.shape[1] in (spec.dim_pose, spec.file_dim):
        # De-normalised features (sample.py's <stem>_features.npy, a dataset's new_joint_vecs): to joints first.
        from utils.motion_process import features_to_joints

        if not np.isfinite(joints).all():
            raise ValueError(f"{path}: the features hold NaN or Inf; expected finite values")
        features = np.ascontiguousarray(joints[None, :, : spec.dim_pose], dtype=np.float32)
        joints = np.asarray(features_to_joints(features, spec))[0]
    if joints.ndim != 3 or joints.shape[1:] != (spec.joints_num, 3):
        widths = " or ".join(str(w) for w in dict.fromkeys((spec.dim_pose, spec.file_dim)))
        raise ValueError(f"{path}: expected joint positions of shape (T, {spec.joints_num}, 3) or features of "
                         f"shape (T, {widths}) for dataset {spec.name!r}, got {joints.shape}")
    return joints


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
