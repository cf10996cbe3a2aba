"""Import a folder of BVH clips as a HumanML3D-layout dataset (``prepare_data.py bvh``), and the folder loop that
the AMASS import (``utils.amass_import``) shares.

Each clip goes through ``utils.bvh`` (parse, map onto SMPL-22, resample) and ``utils.dataset_io`` (263-dim features,
splits, Mean/Std); the dataset is written next to ``--out`` and moved into place when every clip has been converted.
``import_clip_folder`` is that loop for any format: a reader turns one file into SMPL-22 joints (``SourceClip``).

``clips.csv`` records where every motion came from, so that frames and captions can be traced back to the mocap:
``id`` (the motion file), ``source`` (the source file, relative to ``--src``), ``source_fps`` (a BVH file's
1 / Frame Time, an AMASS file's stored frame rate, to 3 decimals) and ``source_frames`` (the file's frame count),
``start_s`` / ``end_s`` (the motion's first and last joint frame in seconds of the source; a chunk of a long clip
starts where the one before it ends), ``fps`` (the dataset's rate) and ``frames`` (the feature frames written, one
fewer than the joint frames, as HumanML3D).
"""

from __future__ import annotations

import csv
import logging
import math
import os
import shutil
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import numpy as np

from utils import dataset_io
from utils.bvh import SMPL22_JOINT_NAMES, load_skeleton_map, read_bvh_smpl22
from utils.bvh_captions import captions_from_name, is_bandai_name, read_labels
from utils.dataset_io import (
    keyed_order,
    keyed_rng,
    make_layout_dirs,
    split_groups,
    write_mean_std,
    write_motion,
    write_split_files,
)
from utils.dataset_specs import DATASETS, SPEC_FILE, DatasetSpec, humanml3d_spec
from utils.motion_process import swap_left_right
from utils.staging import remove_abandoned_staging, staging_folder
from utils.text_tags import format_text_line, mirror_caption

logger = logging.getLogger(__name__)

NO_MOTION = "no motion"  # why a split is empty (ImportSummary.empty_splits)

# Plausibility of imported clips (warnings only: a crawl or a fall is real motion). A clip lies down when, over its
# frames, the body is in the median lower than it is wide AND its trunk (pelvis to neck) leans more than 45 degrees
# from vertical. With a wrong up_axis the true up is horizontal: the 174 Bandai clips read Z up measure at most 0.74
# (height / width) and 0.58 (sine of the trunk's rise), and at least 1.19 and 0.77 read Y up. Neither cue alone is
# enough: a walk seen lying down is 0.46 as high as wide (its strides and arm swings become height), and a person
# sitting on the floor with legs stretched (HumanML3D 011673) is 0.68 as high as wide with the trunk upright (0.95).
LYING_RATIO = 1.0
TRUNK_UPRIGHT_SINE = math.sin(math.radians(45.0))
MIN_BODY_M, MAX_BODY_M = 0.3, 4.0

STAGING_TAG = "importing"  # the staging folder is <out>.importing-<host>-<pid> (utils.staging)
CLIPS_FILE = "clips.csv"
CLIPS_COLUMNS = ("id", "source", "source_fps", "source_frames", "start_s", "end_s", "fps", "frames")

Progress = Callable[..., Iterable]  # tqdm-like: progress(items, desc=..., unit=...) -> items


def _no_progress(items: Iterable, **_: object) -> Iterable:
    return items

@dataclass
class ImportSummary:
    """What ``import_clip_folder`` did: clips read, motions written (chunks count separately), frames at the target
    rate, clips split into chunks, motions shorter than the spec's minimum (written, but skipped by the loaders),
    caption sources (``generic_captions``: clips captioned only by the words of an unknown name), files skipped for
    holding no motion or under two frames at the target rate (``too_brief``), the splits left without a motion the
    loaders keep and the time taken."""

    out_dir: str
    clips: int = 0
    motions: int = 0
    frames: int = 0
    chunked_clips: list[str] = field(default_factory=list)
    too_short: list[str] = field(default_factory=list)
    captions_from_labels: int = 0
    captions_from_names: int = 0
    generic_captions: list[str] = field(default_factory=list)
    lying: list[str] = field(default_factory=list)
    odd_size: list[str] = field(default_factory=list)
    seconds: float = 0.0
    splits: dict[str, int] = field(default_factory=dict)
    clip_ids: list[str] = field(default_factory=list)  # the clips read, before chunking
    skipped: list[str] = field(default_factory=list)  # files without motion (AMASS's shape.npz), relative to src
    too_brief: list[str] = field(default_factory=list)  # files of fewer than 2 frames at the target rate, skipped
    written: set[str] = field(default_factory=set)  # every motion id written, mirror images included
    provenance: list[dict[str, object]] = field(default_factory=list)  # the rows of clips.csv
    # train / val / test without a motion the loaders keep -> why: "no motion", or every one too short.
    empty_splits: dict[str, str] = field(default_factory=dict)

    def empty_splits_message(self) -> str:
        """One line naming the splits without a motion the loaders keep and what needs them; "" when none is."""
        if not self.empty_splits:
            return ""
        names = list(self.empty_splits)
        listed = " and ".join([", ".join(names[:-1]), names[-1]] if len(names) > 1 else names)
        causes = {}
        for split, why in self.empty_splits.items():
            if why != NO_MOTION:
                causes.setdefault(why, []).append(split)
        shown = "; ".join(f"{' and '.join(splits)}: {why}" for why, splits in causes.items())
        message = (f"{'splits' if len(names) > 1 else 'split'} {listed} {'hold' if len(names) > 1 else 'holds'} no "
                   f"motion the loaders keep{f' ({shown})' if shown else ''}: training needs motions in train and "
                   f"val, evaluation in test")
        least = dataset_io.MIN_SPLIT_GROUPS
        if self.clips < least:
            message += f"; {self.clips} clip(s): val and test get one clip each only from {least} clips on"
        return message


def _empty_splits(splits: dict[str, list[str]], too_short: list[str], min_length: int) -> dict[str, str]:
    """train / val / test without a motion the loaders keep (``ImportSummary.empty_splits``)."""
    short = set(too_short)
    empty = {}
    for split in ("train", "val", "test"):
        if not splits[split]:
            empty[split] = NO_MOTION
        elif set(splits[split]) <= short:
            empty[split] = f"only motions shorter than {min_length} frames, which the loaders skip"
    return empty


def chunk_bounds(frames: int, max_features: int) -> list[tuple[int, int]]:
    """Split T joint frames into the fewest equal chunks with at most ``max_features`` feature frames each.

    Chunks share their boundary frame (joint frames ``[a, b]`` inclusive give ``b - a`` feature frames), so no frame
    pair is lost; all chunks have nearly the same length, so none falls under the minimum length by accident.
    """
    pairs = frames - 1
    n = max(1, -(-pairs // max_features))
    edges = np.linspace(0, pairs, n + 1).round().astype(int)
    return [(int(a), int(b)) for a, b in zip(edges[:-1], edges[1:])]


@dataclass
class SourceClip:
    """One source file as SMPL-22 joints, what ``import_clip_folder`` needs from a format's reader.

    ``clip_id`` is the motion id (chunks append ``_c<k>``; may contain ``/``), ``caption_name`` the name whose words
    caption the clip when no label does, ``joints`` (T, 22, 3) metres, Y up, at the import's frame rate, and
    ``source_fps`` / ``source_frames`` the file's own rate and frame count (for ``clips.csv``).
    """

    clip_id: str
    caption_name: str
    joints: np.ndarray
    source_fps: float
    source_frames: int


ClipReader = Callable[[Path], "SourceClip | None"]  # None: a file without motion, skipped and counted


def source_files(src: str, suffix: str) -> list[Path]:
    """The files under ``src`` (searched recursively) whose extension is ``suffix`` in any case, sorted by path.

    Exporters write ``.BVH`` as often as ``.bvh``; a case-sensitive search would leave those out without a word.
    """
    return sorted((p for p in Path(src).rglob("*") if p.suffix.lower() == suffix and p.is_file()), key=str)


def check_import_folders(src: str, out: str, what: str) -> str:
    """Refuse an ``out`` named like a registered dataset, a file or a folder already holding files, and a ``src`` that
    is not a folder (``what`` names the files it should hold). Returns the dataset name, the ``out`` folder's name."""
    name = os.path.basename(os.path.normpath(out))
    if name in DATASETS:
        # A registered name always resolves to the registry's spec, so this folder's spec.json would be ignored.
        raise ValueError(f"{out}: the folder name {name!r} is a registered dataset name; --dataset_name {name} would "
                         f"use the registered spec, not the imported one. Choose another --out folder name (not one "
                         f"of {sorted(DATASETS)})")
    if not os.path.isdir(src):
        raise ValueError(f"--src {src}: " + (f"a file; give the folder that holds the {what}" if os.path.isfile(src)
                                             else "no such folder"))
    if os.path.exists(out) and not os.path.isdir(out):
        # Found here rather than when the converted dataset is moved into place, after every clip.
        raise ValueError(f"--out {out}: a file; import into a new --out folder")
    if os.path.isdir(out) and os.listdir(out):
        # Clips of an earlier import that this one does not have would stay and mix into the new splits.
        raise ValueError(f"{out}: exists and is not empty; import into a new --out folder (or remove this one)")
    return name


def import_bvh_folder(src: str, out: str, skeleton: str, target_fps: float = 20.0, labels: str | None = None,
                      seed: int = 0, progress: Progress | None = None, mirror: bool = False) -> ImportSummary:
    """Convert every ``*.bvh`` under ``src`` into a HumanML3D-layout dataset at ``out``.

    Each clip is mapped onto SMPL-22 with ``skeleton`` (a name under ``options/skeletons`` or a YAML path), converted
    to metres and Y up, resampled by time stamps to ``target_fps`` and turned into 263-dim features. Clips longer
    than the spec's ``max_motion_length`` feature frames are split into equal chunks named ``<stem>_c<k>``
    (``chunk_bounds``); clips shorter than ``min_motion_length`` are written but reported. Captions come from
    ``labels`` (CSV/JSON, see ``read_labels``) and otherwise from the file name (``captions_from_name``). Splits are
    80/5/15 by clip (chunks of one clip share a split). ``mirror`` adds every motion's mirror image as HumanML3D does
    (``import_clip_folder``). Writes ``spec.json`` named after the ``out`` folder, which therefore must not be a
    registered dataset name (``DATASETS``).
    """
    check_import_folders(src, out, ".bvh clips")
    skel = load_skeleton_map(skeleton)
    files = source_files(src, ".bvh")
    if not files:
        raise ValueError(f"{src}: no .bvh files found (searched recursively, any case of the extension)")
    stems = [p.stem for p in files]
    dupes = sorted({s for s in stems if stems.count(s) > 1})
    if dupes:
        raise ValueError(f"{src}: clip names must be unique (they become motion ids); repeated: {dupes[:5]}")

    def read_clip(path: Path) -> SourceClip:
        joints, parsed = read_bvh_smpl22(path, skel, target_fps)  # fewer than 2 frames: import_clip_folder says so
        return SourceClip(path.stem, path.stem, joints, parsed.fps, parsed.frames)

    return import_clip_folder(files, src, out, read_clip, target_fps=target_fps, labels=labels, seed=seed,
                              progress=progress, lying_hint="the skeleton's up_axis is wrong",
                              size_hint="check the skeleton's unit_scale", mirror=mirror)


def import_clip_folder(files: list[Path], src: str, out: str, read_clip: ClipReader, target_fps: float,
                       labels: str | None, seed: int, progress: Progress | None, lying_hint: str,
                       size_hint: str, label_suffixes: tuple[str, ...] = (".bvh",),
                       mirror: bool = False) -> ImportSummary:
    """The folder loop that every importer shares: ``read_clip`` turns each of ``files`` into SMPL-22 joints, and
    this writes their motions (chunked, captioned), the splits, Mean/Std, ``clips.csv`` and ``spec.json`` to a
    staging folder that replaces ``out`` at the end, then logs what looks wrong (``lying_hint`` / ``size_hint``
    say what to check when clips lie down or have an odd size). ``src`` and ``out`` must have passed
    ``check_import_folders``; ``label_suffixes`` are file extensions dropped from the ids of ``labels``.

    ``mirror`` also writes every motion's mirror image, as HumanML3D's ``M`` files: x negated and left and right
    joints swapped (``swap_left_right``), captions with left and right (and clockwise and counterclockwise) swapped
    (``mirror_caption``), named ``M<name>`` (``<folder>/M<name>`` for an id in a folder), in its original's split
    and listed in ``clips.csv`` with the same source."""
    if not (np.isfinite(target_fps) and target_fps > 0):
        # Otherwise the first clip's resampling fails, and the message blames that clip.
        raise ValueError(f"--fps {target_fps}: expected a positive target frame rate (frames per second, e.g. 20)")
    start = time.perf_counter()
    name = os.path.basename(os.path.normpath(out))
    iterate = progress or _no_progress
    label_map = read_labels(labels, suffixes=label_suffixes) if labels else {}
    # Caption tags are seconds, so they convert to frames at the clips' own rate. (The registered HumanML3D and KIT
    # specs keep the reference loaders' factor of 20, which is HumanML3D's frame rate.)
    spec = humanml3d_spec(name=name, root=out, fps=float(target_fps), text_fps=float(target_fps))
    # Written next to --out and moved into place at the end: a clip that fails leaves no half dataset behind. One that
    # a kill -9 left (its process gone) is removed first; nothing else would ever read or remove it.
    remove_abandoned_staging(out, STAGING_TAG, "an import")
    staging = staging_folder(out, STAGING_TAG)
    try:
        summary = _import_clips(files, staging, spec, read_clip, target_fps, label_map, seed, iterate, Path(src),
                                mirror)
        os.replace(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    summary.out_dir = out
    summary.seconds = time.perf_counter() - start
    if label_map:
        unused = sorted(set(label_map) - set(summary.clip_ids))
        if unused:
            logger.warning("%s: %d label ids match no clip, e.g. %s", labels, len(unused), unused[:5])
    if summary.generic_captions:
        logger.warning("%d clips have no label and a name that says nothing about the motion (captioned by their "
                       "name's words, e.g. %s); pass --labels with id,caption rows", len(summary.generic_captions),
                       summary.generic_captions[:3])
    if summary.too_short:
        logger.warning("%d motions are shorter than %d frames (loaders skip them): %s", len(summary.too_short),
                       spec.min_motion_length, summary.too_short[:10])
    if summary.lying:
        logger.warning("%d clips are lower than they are wide, with the trunk more than 45 degrees from vertical, "
                       "through most of their frames, as a body lying down or on all fours is (e.g. %s): if they "
                       "are not, %s", len(summary.lying), summary.lying[:5], lying_hint)
    if summary.odd_size:
        logger.warning("%d clips have a body size outside %g to %g m (e.g. %s): %s", len(summary.odd_size),
                       MIN_BODY_M, MAX_BODY_M, summary.odd_size[:5], size_hint)
    if summary.empty_splits:
        # Written all the same: a one-clip import serves export and quick checks.
        logger.warning("%s", summary.empty_splits_message())
    return summary


class BodyExtent(NamedTuple):
    """A motion's size and posture, medians over its frames (``body_extent``)."""

    height: float  # metres: the joints' vertical extent (Y)
    span: float  # metres: their largest horizontal extent (X or Z)
    height_ratio: float  # of each frame's height / span
    trunk_rise: float  # of each frame's sine of pelvis -> neck above the horizontal: 1 upright, 0 lying, < 0 head down

    @property
    def lies_down(self) -> bool:
        """Lower than wide with the trunk more than 45 degrees from vertical (medians over frames): a body lying
        down or on all fours, or one read with a wrong up axis. Upright, bowing, crouching and sitting bodies stand."""
        return self.height_ratio < LYING_RATIO and self.trunk_rise < TRUNK_UPRIGHT_SINE


_PELVIS, _NECK = SMPL22_JOINT_NAMES.index("pelvis"), SMPL22_JOINT_NAMES.index("neck")


def body_extent(joints: np.ndarray) -> BodyExtent:
    """The size and posture of SMPL-22 joints ``(T, 22, 3)`` in metres, Y up (``BodyExtent``). A standing or walking
    body is about 1.5 m high, under 1 m wide, with a trunk rise near 1."""
    height = np.ptp(joints[..., 1], axis=1)
    span = np.maximum(np.ptp(joints[..., 0], axis=1), np.ptp(joints[..., 2], axis=1))
    trunk = joints[:, _NECK] - joints[:, _PELVIS]
    # A frame without width (every joint on one vertical line, or on one point) does not lie: its ratio is infinite.
    # The size check reports a clip without extent.
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(span > 0, height / span, np.inf)
        length = np.linalg.norm(trunk, axis=-1)
        rise = np.where(length > 0, trunk[:, 1] / length, 0.0)
    return BodyExtent(float(np.median(height)), float(np.median(span)), float(np.median(ratio)),
                      float(np.median(rise)))


def _import_clips(files: list[Path], out: str, spec: DatasetSpec, read_clip: ClipReader, target_fps: float,
                  label_map: dict[str, list[str]], seed: int, iterate: Progress, src: Path,
                  mirror: bool = False) -> ImportSummary:
    """The body of ``import_clip_folder``: every clip, the splits, Mean/Std, ``clips.csv`` and ``spec.json`` written
    to ``out``."""
    make_layout_dirs(out)
    summary = ImportSummary(out_dir=out)
    groups: list[list[str]] = []
    for path in iterate(files, desc=f"import {spec.name}", unit="clip"):
        try:
            clip = read_clip(path)
            if clip is None:
                summary.skipped.append(path.relative_to(src).as_posix())
                continue
            if clip.joints.shape[0] < 2:  # a pose, or under 1/20 s of source: no motion to extract features from
                summary.too_brief.append(f"{path.relative_to(src).as_posix()} ({clip.joints.shape[0]} frame)")
                continue
            # Captions drawn from the clip's own generator and splits ranked by its id: neither depends on the file
            # order or on the other clips of the folder.
            ids = _write_clip(clip, path, out, spec, target_fps, label_map, keyed_rng(seed, clip.clip_id), summary,
                              src, mirror)
        except ValueError as e:
            # Errors of the kinematics and the feature pass do not know the clip; the readers' already name it.
            raise ValueError(str(e) if str(e).startswith(str(path)) else f"{path}: {e}") from e
        groups.append(ids)
        summary.clip_ids.append(clip.clip_id)
        summary.clips += 1
        summary.motions += len(ids)
    if not groups:
        raise ValueError(f"{src}: none of the {len(files)} files holds a motion (skipped: "
                         f"{(summary.skipped + summary.too_brief)[:5]})")
    splits = split_groups(groups, keyed_order(summary.clip_ids, seed))
    summary.empty_splits = _empty_splits(splits, summary.too_short, spec.min_motion_length)
    write_split_files(out, splits)
    write_mean_std(out, splits["all"], spec)
    with open(os.path.join(out, CLIPS_FILE), "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=CLIPS_COLUMNS)
        writer.writeheader()
        writer.writerows(summary.provenance)
    spec.save(os.path.join(out, SPEC_FILE))
    summary.splits = {k: len(v) for k, v in splits.items()}
    return summary


def mirrored_id(clip_id: str) -> str:
    """The id of a motion's mirror image: ``M<name>``, in the same folder for an id with ``/`` (HumanML3D's ``M``
    files)."""
    folder, _, name = clip_id.rpartition("/")
    return f"{folder}/M{name}" if folder else f"M{name}"


def _write_clip(clip: SourceClip, path: Path, out: str, spec: DatasetSpec, target_fps: float,
                label_map: dict[str, list[str]], rng: np.random.Generator, summary: ImportSummary,
                src: Path, mirror: bool = False) -> list[str]:
    """One clip of ``_import_clips``: its motions (chunks, and with ``mirror`` their mirror images) written to
    ``out``, ``summary`` updated; returns their ids."""
    joints = clip.joints
    if joints.shape[0] < 2:
        raise ValueError(f"{path}: {joints.shape[0]} frame(s) at {target_fps} fps; need at least 2")
    extent = body_extent(joints)
    if extent.lies_down:
        summary.lying.append(clip.clip_id)
    size = max(extent.height, extent.span)
    if not MIN_BODY_M <= size <= MAX_BODY_M:
        summary.odd_size.append(f"{clip.clip_id} ({size:.2g} m)")
    if clip.clip_id in label_map:
        captions = label_map[clip.clip_id]
        summary.captions_from_labels += 1
    else:
        captions = captions_from_name(clip.caption_name, rng)
        summary.captions_from_names += 1
        if not is_bandai_name(clip.caption_name):
            summary.generic_captions.append(clip.clip_id)
    lines = [format_text_line(c) for c in captions]
    bounds = chunk_bounds(joints.shape[0], spec.max_motion_length)
    if len(bounds) > 1:
        summary.chunked_clips.append(clip.clip_id)
    mirrored_lines = [format_text_line(mirror_caption(c)) for c in captions] if mirror else []
    ids = []
    for k, (a, b) in enumerate(bounds):
        clip_id = clip.clip_id if len(bounds) == 1 else f"{clip.clip_id}_c{k}"
        versions = [(clip_id, joints[a:b + 1], lines)]
        if mirror:
            versions.append((mirrored_id(clip_id), swap_left_right(joints[a:b + 1]), mirrored_lines))
        for motion_id, motion, captions_of in versions:
            if motion_id in summary.written:
                raise ValueError(f"motion id {motion_id!r} would be written twice (with --mirror, the mirror image of "
                                 f"<name> is M<name>): rename the clip")
            summary.written.add(motion_id)
            features = write_motion(out, motion_id, motion, captions_of, target_fps)
            if features.shape[0] < spec.min_motion_length:
                summary.too_short.append(motion_id)
            summary.frames += features.shape[0]
            summary.provenance.append({"id": motion_id, "source": path.relative_to(src).as_posix(),
                                       "source_fps": round(clip.source_fps, 3), "source_frames": clip.source_frames,
                                       "start_s": round(a / target_fps, 6), "end_s": round(b / target_fps, 6),
                                       "fps": target_fps, "frames": features.shape[0]})
            ids.append(motion_id)
    return ids
