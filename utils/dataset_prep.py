"""What ``prepare_data.py`` says of a dataset it built, and the statistics its ``stats`` sub-command writes.

The closing lines of ``synthetic``, ``bvh`` and ``amass``: counts, splits, what to look at, and the flags that find the
dataset. ``stats``: ``Mean.npy`` / ``Std.npy`` (D,) of every clip of a dataset's split files (or of one split), each
file checked before it reaches the sums.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from typing import TYPE_CHECKING, NamedTuple

from tqdm import tqdm

from utils.dataset_io import humanml3d_mean_std, save_mean_std
from utils.dataset_specs import DATASETS, DatasetSpec, full_width_names
from utils.motion_files import MOTION_DIR, SPLITS, DatasetClips, dataset_clips, motion_path, read_split, scan_motion
from utils.normalization import DatasetError
from utils.paths import project_path

if TYPE_CHECKING:
    from utils.bvh_import import ImportSummary

# Named after the script: what a user reads of its runs says ``prepare_data``, whichever module logs it.
logger = logging.getLogger("prepare_data")


def summary_lines(what: str, motions: int, frames: int, fps: float, seconds: float, out: str,
                  extra: list[str]) -> list[str]:
    """The closing lines of a build (``what``: the sub-command): its first line and the ``extra`` lines indented."""
    return ([f"{what}: {motions} motions, {frames} frames ({frames / fps / 60:.1f} min at {fps:g} fps) "
             f"in {seconds:.1f} s -> {out}"] + [f"  {line}" for line in extra])


def synthetic_use_line(out: str) -> str:
    """The flags that find a synthetic dataset in ``out``: it is the registered ``synthetic`` dataset (it writes no
    spec.json), found without --data_root only in its registered folder."""
    found = os.path.abspath(out) == os.path.abspath(project_path(DATASETS["synthetic"].root))
    return "use it with --dataset_name synthetic" + ("" if found else f" --data_root {out}")


def import_summary_lines(what: str, summary: ImportSummary, out: str, fps: float) -> list[str]:
    """The closing lines of an import (``utils.bvh_import.ImportSummary``) written to ``out`` at ``fps``: counts,
    splits, what to look at, and the flags that find the dataset."""
    splits = ", ".join(f"{k} {v}" for k, v in summary.splits.items())
    extra = [f"clips: {summary.clips}; captions from labels {summary.captions_from_labels}, "
             f"from file names {summary.captions_from_names}", f"splits: {splits}"]
    if summary.skipped:
        extra.append(f"files without motion, skipped: {len(summary.skipped)}, e.g. {', '.join(summary.skipped[:3])}")
    if summary.too_brief:
        extra.append(f"files under 2 frames at the target rate, skipped: {len(summary.too_brief)}, e.g. "
                     f"{', '.join(summary.too_brief[:3])}")
    if summary.generic_captions:
        extra.append(f"captioned only by the words of their names (pass --labels): {len(summary.generic_captions)}")
    if summary.chunked_clips:
        extra.append(f"split into chunks (longer than the maximum length): {len(summary.chunked_clips)} clips, "
                     f"e.g. {', '.join(summary.chunked_clips[:3])}")
    if summary.too_short:
        extra.append(f"shorter than the minimum length (written; the loaders skip them): {len(summary.too_short)}: "
                     f"{', '.join(summary.too_short[:5])}{' ...' if len(summary.too_short) > 5 else ''}")
    if summary.empty_splits:
        extra.append(summary.empty_splits_message())
    name = os.path.basename(os.path.normpath(out))
    # --dataset_name alone looks in the default dataset folder, under $FSQ_MARDM_HOME when that is set.
    found = os.path.dirname(os.path.abspath(out)) == os.path.abspath(project_path("dataset"))
    extra.append(f"use it with --dataset_name {name}" + ("" if found else f" --data_root {out}"))
    return summary_lines(what, summary.motions, summary.frames, fps, summary.seconds, out, extra)


class DatasetStats(NamedTuple):
    """What ``write_dataset_stats`` read: ``clips`` files, and which clips they were (``source``, in words)."""

    clips: int
    source: str


def _check_stats_target(spec: DatasetSpec, root: str, overwrite: bool) -> None:
    """Refuse, before any file is read, statistics ``spec`` cannot describe (a leading slice of wider files) and,
    without ``overwrite``, a ``root`` that already holds Mean.npy or Std.npy. Raises ``ValueError``."""
    if spec.file_dim != spec.dim_pose:
        # The files' statistics cover all file_dim columns, but this spec's feature groups only its leading dim_pose:
        # the std past them would not be group-averaged, in files that the full-width dataset reads too.
        full = full_width_names(spec)
        raise ValueError(f"--dataset_name {spec.name} reads the first {spec.dim_pose} of the {spec.file_dim} features "
                         f"of its files, whose Mean.npy/Std.npy cover all {spec.file_dim}: compute them with "
                         + (f"--dataset_name {' or '.join(full)}" if full else "a dataset that describes every column")
                         + " (the loaders take the leading slice)")
    targets = [os.path.join(root, name) for name in ("Mean.npy", "Std.npy")]
    existing = [path for path in targets if os.path.exists(path)]
    if existing and not overwrite:
        verb = "exists" if len(existing) == 1 else "exist"
        raise ValueError(f"{' and '.join(existing)} already {verb}; pass --overwrite to replace them (models trained "
                         f"on the old statistics keep them in their checkpoints)")


def write_dataset_stats(spec: DatasetSpec, root: str, split: str | None, overwrite: bool) -> DatasetStats:
    """Write ``Mean.npy`` / ``Std.npy`` (``(spec.file_dim,)``, std averaged within each feature group) in ``root``
    from every clip of its split files, or of ``split`` alone.

    Raises ``ValueError`` (``_check_stats_target``) before anything is read, and ``DatasetError`` for the first clip
    file a loader would refuse, before anything is written. Split ids without a motion file are left out, with a
    warning, as the loaders leave them out.
    """
    _check_stats_target(spec, root, overwrite)
    # Every clip: the ids of the split files, as the loaders and validate read them; files under new_joint_vecs/ that
    # no split lists (a video's joints saved there, notes) are not clips, and are named instead of read.
    clips = DatasetClips(read_split(root, split), True, []) if split else dataset_clips(root)
    if clips.unlisted:
        logger.warning("%d .npy files under %s that no split file (%s.txt) lists are not clips, and are left out: "
                       "%s%s", len(clips.unlisted), os.path.join(root, MOTION_DIR), "/".join(SPLITS),
                       ", ".join(clips.unlisted[:5]), " ..." if len(clips.unlisted) > 5 else "")

    missing: list[str] = []  # split ids without a motion file: skipped, as the loaders and validate skip them
    try:
        mean, std = humanml3d_mean_std(_checked_paths(spec, root, clips, missing), spec)
    finally:  # also before the error of a split none of whose ids has a file ("from 0 frames"), which it explains
        if missing:
            logger.warning("%d ids of the split files have no motion file under %s and are left out, as the loaders "
                           "leave them out: %s%s", len(missing), os.path.join(root, MOTION_DIR), ", ".join(missing[:5]),
                           " ..." if len(missing) > 5 else "")
    save_mean_std(root, mean, std)
    which = f"split {split}" if split else "every clip of " + ("the splits" if clips.listed else MOTION_DIR)
    return DatasetStats(len(clips.ids) - len(missing), which)


def _checked_paths(spec: DatasetSpec, root: str, clips: DatasetClips, missing: list[str]) -> Iterator[str]:
    """The motion file of each clip, checked first, so a NaN or a wrong width cannot reach the statistics; the ids
    without a file are appended to ``missing``."""
    for clip_id in tqdm(clips.ids, desc=f"stats {spec.name}", unit="clip"):
        path = motion_path(root, clip_id)
        if not os.path.exists(path):
            missing.append(clip_id)
            continue
        _, problems = scan_motion(path, spec)
        if problems and not clips.listed and problems[0].kind in ("wrong_dim", "non_numeric", "unreadable_motion"):
            raise DatasetError(f"{problems[0]} (without {'/'.join(SPLITS)}.txt every .npy under "
                               f"{MOTION_DIR}/ is a clip: move other files out, or write the split files)",
                               kind=problems[0].kind, path=problems[0].path)
        if problems:
            raise problems[0]
        yield path
