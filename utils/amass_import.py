"""Import AMASS-style SMPL-H / SMPL-X parameter files as a HumanML3D-layout dataset (``prepare_data.py amass``).

A motion file is an ``.npz`` with ``poses`` (T, 156) SMPL-H or (T, 165) SMPL-X axis-angle (root, 21 body joints,
then hands / face), ``trans`` (T, 3) metres, ``betas`` (16 or more), ``gender`` ('male', 'female', 'neutral', as
str or bytes) and the frame rate in ``mocap_framerate`` (SMPL-H releases) or ``mocap_frame_rate`` (SMPL-X
releases), a number or its text. Files without ``poses`` (AMASS's per-subject ``shape.npz``) are skipped and counted.

Each clip's 22 body joints come from ``utils.smpl_body`` with the body model of its type and gender
(``--body_models DIR`` in AMASS's layout ``DIR/smplh/<gender>/model.npz``, ``DIR/smplx/<gender>/model.npz``, a
missing gender falling back to ``neutral``; or one ``--body_model FILE`` for every clip). They are turned from Z up to
Y up as HumanML3D does, resampled by time stamps to the target rate (AMASS rates such as 59.94 or 250 fps are not
multiples of 20, so HumanML3D's integer stride ``int(fps / 20)`` would change the motion's speed), and written by the
folder loop shared with the BVH import (``utils.bvh_import.import_clip_folder``). AMASS reuses file names across
subjects (``01_poses.npz``), so a motion's id is its path relative to ``--src`` without ``.npz``
(``CMU/01/01_01_poses``), which ids may be (they then live in sub-folders of ``new_joint_vecs/`` and ``texts/``).
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path
from typing import NamedTuple

import numpy as np

from utils.bvh_import import (
    ImportSummary,
    Progress,
    SourceClip,
    check_import_folders,
    import_clip_folder,
    source_files,
)
from utils.motion_process import joints_fps_resample
from utils.smpl_body import (
    BODY_POSE_WIDTH,
    SmplBody,
    load_body_model,
    npz_array,
    open_npz,
    smpl_joints,
    z_up_to_y_up,
)

logger = logging.getLogger(__name__)

FPS_KEYS = ("mocap_framerate", "mocap_frame_rate")  # SMPL-H releases, SMPL-X releases
MODEL_TYPES = {156: "smplh", 165: "smplx"}  # pose width -> folder of --body_models
MODEL_FILE = "model.npz"
NEUTRAL = "neutral"
# File-name endings of AMASS releases that say nothing about the motion; dropped before captioning by name.
NAME_NOISE = ("_poses", "_stageii")


class BodyModels:
    """Body models by model type and gender, each loaded once: from ``folder`` in AMASS's layout
    (``<folder>/<type>/<gender>/model.npz``) or, with ``file``, one model for every clip."""

    def __init__(self, folder: str | None = None, file: str | None = None) -> None:
        if (folder is None) == (file is None):
            raise ValueError("give one of --body_models DIR (DIR/smplh/<gender>/model.npz, DIR/smplx/<gender>/"
                             "model.npz, as AMASS's) or --body_model FILE (one .npz model for every clip)")
        if folder is not None and not os.path.isdir(folder):
            raise ValueError(f"--body_models {folder}: no such folder; expected DIR/smplh/<gender>/{MODEL_FILE} and "
                             f"DIR/smplx/<gender>/{MODEL_FILE}")
        self.folder = folder
        self.single = load_body_model(file) if file is not None else None
        self._loaded: dict[str, SmplBody] = {}
        self._warned: set[tuple[str, str]] = set()

    def get(self, model_type: str | None, gender: str | None, source: str) -> SmplBody:
        """The model for a clip of ``model_type`` ('smplh' or 'smplx'; anything with ``file``) and ``gender`` (None
        when the file has none) read from ``source``; a gender without a model uses the neutral one, with a
        warning."""
        if self.single is not None:
            return self.single
        if model_type not in MODEL_TYPES.values():
            raise ValueError(f"{source}: no folder of --body_models for model type {model_type!r}; it holds smplh/ "
                             f"and smplx/ models; pass --body_model FILE for this data")
        wanted = gender if gender and re.fullmatch(r"[a-z]+", gender) else NEUTRAL
        path = os.path.join(self.folder, model_type, wanted, MODEL_FILE)
        neutral = os.path.join(self.folder, model_type, NEUTRAL, MODEL_FILE)
        if not os.path.isfile(path):
            if wanted == NEUTRAL or not os.path.isfile(neutral):
                tried = path if wanted == NEUTRAL else f"{path} (nor the neutral fallback {neutral})"
                raise FileNotFoundError(f"{source}: no {model_type} body model for gender {gender!r}: no file "
                                        f"{tried}; --body_models expects <type>/<gender>/{MODEL_FILE}")
            if (model_type, wanted) not in self._warned:
                self._warned.add((model_type, wanted))
                logger.warning("no %s body model for gender %r (%s): using the neutral one for such clips, e.g. %s",
                               model_type, gender, path, source)
            path = neutral
        elif wanted != gender and (model_type, gender or "") not in self._warned:  # none, or no folder's name
            self._warned.add((model_type, gender or ""))
            what = f"gender {gender!r}, which names no folder of --body_models" if gender else "no gender"
            logger.warning("%s has %s: using the neutral %s body model for such clips", source, what, model_type)
        if path not in self._loaded:
            self._loaded[path] = load_body_model(path)
        return self._loaded[path]


def _field(data: np.lib.npyio.NpzFile, key: str, path: Path) -> np.ndarray:
    return npz_array(data, key, path, "; expected a plain array")


def _text(value: np.ndarray) -> str:
    """A str or bytes array (0-d or one element) as lower-case text."""
    item = np.asarray(value).reshape(-1)[0] if np.asarray(value).size else ""
    return (item.decode("utf-8", "replace") if isinstance(item, bytes) else str(item)).strip().lower()


def _rate(value: np.ndarray) -> float:
    """A one-element number or text array (0-d or (1,), as converters write ``mocap_framerate``) as a float; NaN
    for anything else."""
    if value.size != 1:
        return float("nan")
    if value.dtype.kind in "iuf":  # not complex: the real part alone would be read without a word
        return float(value.reshape(-1)[0])
    if value.dtype.kind in "SU":
        try:
            return float(_text(value))
        except ValueError:
            return float("nan")
    return float("nan")


def _check_finite(array: np.ndarray, name: str, path: Path, frames: int) -> None:
    bad = ~np.isfinite(array.reshape(frames, -1)).all(axis=1)
    if bad.any():
        first = int(np.argmax(bad))
        raise ValueError(f"{path}: {name} hold NaN or Inf in frame {first + 1} of {frames} ({int(bad.sum())} frames); "
                         f"expected finite values")


class AmassMotion(NamedTuple):
    """The parameters of one AMASS-layout file: ``poses`` (T, P) axis-angle as stored (P >= 66; the root and body
    columns, the first 66, are checked finite), ``trans`` (T, 3), ``betas`` (n,), ``fps``, ``gender`` (lower case;
    None when the file has none) and ``model_type`` (its ``surface_model_type``, else 'smplh' or 'smplx' by the width
    of ``poses``, else None)."""

    poses: np.ndarray
    trans: np.ndarray
    betas: np.ndarray
    fps: float
    gender: str | None
    model_type: str | None


def _real(stored: np.ndarray, key: str, path: str) -> np.ndarray:
    """``stored`` as float64; ``ValueError`` naming the file and the field for values that are not real numbers."""
    if stored.dtype.kind not in "biuf":  # text, complex numbers, dates: astype would fail without the file's name
        raise ValueError(f"{path}: {key} holds {stored.dtype} values; expected real numbers")
    return stored.astype(np.float64)


def read_amass_motion(path: str | os.PathLike) -> AmassMotion | None:
    """The checked parameters of one AMASS-layout ``.npz`` (see the module docstring); None for a file without
    ``poses`` (AMASS's per-subject ``shape.npz``). Raises ``ValueError`` naming the file (and the field) for a
    truncated or damaged file, a missing key, values that are no real numbers, a wrong shape, no frame,
    NaN or Inf, or a frame rate that is not positive."""
    path = Path(path)
    with open_npz(path, "archive of poses, trans, betas, ...") as data:
        if "poses" not in data.files:
            return None
        missing = [k for k in ("trans", "betas") if k not in data.files]
        fps_key = next((k for k in FPS_KEYS if k in data.files), None)
        if fps_key is None:
            missing.append(" or ".join(FPS_KEYS))
        if missing:
            raise ValueError(f"{path}: lacks {', '.join(missing)}; an AMASS file has poses, trans, betas, gender and "
                             f"the frame rate (has {', '.join(sorted(data.files)[:12])})")
        poses, trans, betas = (_real(_field(data, key, path), key, path) for key in ("poses", "trans", "betas"))
        rate = np.asarray(_field(data, fps_key, path))
        gender = _text(_field(data, "gender", path)) if "gender" in data.files else None
        surface = (_text(_field(data, "surface_model_type", path)) if "surface_model_type" in data.files
                   else None)
    if poses.ndim != 2 or poses.shape[1] < BODY_POSE_WIDTH:
        raise ValueError(f"{path}: poses has shape {poses.shape}; expected (T, 156) SMPL-H or (T, 165) SMPL-X "
                         f"axis-angle (at least {BODY_POSE_WIDTH} columns: the root and 21 body joints)")
    frames = poses.shape[0]
    if frames < 1:  # one frame is a pose: rendered, and skipped by an import (no motion to take features from)
        raise ValueError(f"{path}: poses has no frame")
    if trans.shape != (frames, 3):
        raise ValueError(f"{path}: trans has shape {trans.shape}; expected ({frames}, 3) like poses' {frames} frames")
    if betas.ndim == 2 and betas.shape[0] == 1:
        betas = betas[0]
    if betas.ndim != 1:
        raise ValueError(f"{path}: betas has shape {betas.shape}; expected (n,) shape coefficients")
    fps = _rate(rate)
    if not (np.isfinite(fps) and fps > 0):
        raise ValueError(f"{path}: {fps_key} is {rate.tolist()!r}; expected a positive frame rate")
    _check_finite(poses[:, :BODY_POSE_WIDTH], "poses", path, frames)
    _check_finite(trans, "trans", path, frames)
    if not np.isfinite(betas).all():
        raise ValueError(f"{path}: betas hold NaN or Inf; expected finite shape coefficients")
    return AmassMotion(poses, trans, betas, fps, gender, surface or MODEL_TYPES.get(poses.shape[1]))


def read_amass_clip(path: Path, bodies: BodyModels, target_fps: float, clip_id: str) -> SourceClip | None:
    """One AMASS file as SMPL-22 joints (metres, Y up, ``target_fps``); None for a file without ``poses``.

    Only the root and body columns of ``poses`` (the first 66) are used and checked for NaN; hands and face do not
    move the 22 joints.
    """
    motion = read_amass_motion(path)
    if motion is None:
        return None
    if motion.model_type is None and bodies.single is None:
        raise ValueError(f"{path}: poses has {motion.poses.shape[1]} columns and the file no surface_model_type, so "
                         f"the model is neither SMPL-H (156 columns) nor SMPL-X (165); pass --body_model FILE for it")
    body = bodies.get(motion.model_type, motion.gender, str(path))
    joints = z_up_to_y_up(smpl_joints(body, motion.poses[:, :BODY_POSE_WIDTH], motion.trans, motion.betas))
    caption_name = Path(path).stem
    for noise in NAME_NOISE:
        caption_name = caption_name.removesuffix(noise)
    return SourceClip(clip_id, caption_name, joints_fps_resample(joints, motion.fps, target_fps), motion.fps,
                      len(motion.poses))


def import_amass_folder(src: str, out: str, body_models: str | None = None, body_model: str | None = None,
                        target_fps: float = 20.0, labels: str | None = None, seed: int = 0,
                        progress: Progress | None = None, mirror: bool = False) -> ImportSummary:
    """Convert every ``*.npz`` under ``src`` (AMASS's SMPL-H or SMPL-X parameters) into a HumanML3D-layout dataset
    at ``out``.

    Body models come from ``body_models`` (a folder in AMASS's layout) or ``body_model`` (one file). Ids are paths
    relative to ``src`` without ``.npz``; chunks of clips longer than the spec's maximum are ``<id>_c<k>``. Captions
    come from ``labels`` (CSV/JSON keyed by those ids) and otherwise from the file name's words. Splits, Mean/Std,
    ``clips.csv``, ``spec.json`` and, with ``mirror``, the mirror images as ``utils.bvh_import.import_clip_folder``
    writes them.
    """
    check_import_folders(src, out, "AMASS .npz files")
    bodies = BodyModels(body_models, body_model)
    root = Path(src)
    files = source_files(src, ".npz")
    if not files:
        raise ValueError(f"{src}: no .npz files found (searched recursively, any case of the extension)")

    def read_clip(path: Path) -> SourceClip | None:
        return read_amass_clip(path, bodies, target_fps, path.relative_to(root).with_suffix("").as_posix())

    return import_clip_folder(files, src, out, read_clip, target_fps=target_fps, labels=labels, seed=seed,
                              progress=progress, label_suffixes=(".npz",), mirror=mirror,
                              lying_hint="they are not Z up as AMASS files are (AMASS has lying and crawling "
                                         "motions too)",
                              size_hint="check the files' betas and the body models")
