"""What ``render.py`` reads and checks before it draws: input kinds, output names, statistics and BVH joints.

``classify`` tells the joints (T, J, 3), features (T, D), SMPL parameters (``.npz``) and motion capture (``.bvh``) of
a file apart by shape and extension, without reading the whole file. ``output_stems`` names the videos of an input
(beside it, or under ``<dataset>/renders/`` for a dataset's clip, ``default_folder``), and the two checks refuse a run
before anything is written when two inputs would write one video or a file would be replaced. The loaders turn an
input into the joints (B, T, J, 3) the renderers take: ``load_motions`` for ``.npy`` inputs (features de-normalised
with ``load_statistics``), ``read_bvh`` through the ``--skeleton`` mapping of ``bvh_mapping``.

Code that imports torch (the kinematics, the BVH reader, the body model) is imported inside the functions that need
it: ``render.py`` draws joints without it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from utils.dataset_specs import DatasetSpec
from utils.paths import DATASET_CLIP_FOLDERS, RENDERS_DIR
from utils.plot_script import video_formats

if TYPE_CHECKING:
    from utils.bvh import SkeletonMap


@dataclass
class MotionFile:
    """An input of ``render.py``: its path, what it holds and its array shape (``()`` for ``.npz`` and ``.bvh``)."""

    path: str
    kind: str  # "joints", "features", "parameters" (an .npz of SMPL parameters) or "bvh"
    shape: tuple[int, ...]


def classify(path: str, spec: DatasetSpec | None) -> MotionFile:
    """Tell joints from features by shape, without reading the whole file; an ``.npz`` holds SMPL parameters, a
    ``.bvh`` motion capture."""
    if path.lower().endswith(".npz"):
        return MotionFile(path, "parameters", ())
    if path.lower().endswith(".bvh"):
        return MotionFile(path, "bvh", ())
    if spec is None:
        raise ValueError(f"{path}: joints or features need --dataset_name, the dataset whose skeleton they use")
    with open(path, "rb") as f:
        magic = f.read(6)
    if magic != b"\x93NUMPY":  # np.load would read an empty file as EOFError and a text file as "pickled data"
        raise ValueError(f"{path}: not a .npy file (no NUMPY header{': the file is empty' if not magic else ''}); "
                         f"expected joints or features saved with np.save")
    try:
        array = np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, EOFError) as e:
        if "allow_pickle" in str(e) or "Python objects" in str(e):  # numpy's words for an object dtype
            raise ValueError(f"{path}: not a plain numeric .npy (it holds Python objects; save the joints or "
                             f"features array itself with np.save): {e}") from e
        raise ValueError(f"{path}: cannot read as a .npy array, the file is cut short or damaged ({e})") from e
    shape = tuple(array.shape)
    if 0 in shape:  # a batch of no motions would render nothing and succeed
        raise ValueError(f"{path}: shape {shape} holds no motion; expected at least one motion of at least one frame")
    if len(shape) in (3, 4) and shape[-1] == 3:
        if shape[-2] != spec.joints_num:
            raise ValueError(f"{path}: joint positions of shape {shape} have {shape[-2]} joints, but dataset "
                             f"{spec.name!r} has {spec.joints_num}; pick the matching --dataset_name")
        return MotionFile(path, "joints", shape)
    if len(shape) in (2, 3) and shape[-1] in (spec.dim_pose, spec.file_dim):
        return MotionFile(path, "features", shape)
    raise ValueError(f"{path}: shape {shape} is neither joints (T, {spec.joints_num}, 3) nor features "
                     f"(T, {spec.dim_pose}) of dataset {spec.name!r} (a leading batch axis is allowed)")


def default_folder(path: str) -> str:
    """Where the videos of ``path`` go without ``--out``: its own folder, or for a clip of a dataset
    (``<root>/new_joint_vecs/<id>.npy``, or ``new_joints/``) ``<root>/renders/new_joint_vecs/`` (``new_joints/``)
    with the id's subfolders: the clip folder's name is kept, so a clip's features and joints get videos of their
    own. A file under that renders folder already (the ``_joints.npy`` render.py saved there) is its own folder."""
    folder = os.path.dirname(os.path.abspath(path))
    parts = folder.split(os.sep)
    for i in range(len(parts) - 1, 0, -1):  # the innermost one: the dataset the clip belongs to
        if parts[i] in DATASET_CLIP_FOLDERS:
            if parts[i - 1] == RENDERS_DIR:  # not renders/renders/
                return folder
            return os.sep.join([*parts[:i], RENDERS_DIR, *parts[i:]])
    return folder


def output_stems(item: MotionFile, out: str | None) -> list[str]:
    """``<folder>/<name>`` of each video of ``item`` (``<stem>_<i>`` for the motions of a batch), without extension.
    ``out`` None: ``default_folder``."""
    stem = os.path.splitext(os.path.basename(item.path))[0]
    folder = out or default_folder(item.path)
    batched = len(item.shape) == (4 if item.kind == "joints" else 3)
    count = item.shape[0] if batched else 1
    return [os.path.join(folder, stem if count == 1 else f"{stem}_{i}") for i in range(count)]


def check_distinct_outputs(files: list[MotionFile], outputs: list[list[str]], suffix: str = "") -> None:
    """Fail before any work when two inputs would write the same video (``a/x.npy b/x.npy --out videos``): the later
    one would silently replace the earlier one's; or when the joints saved beside a video (``<name>_joints.npy``,
    for features and BVH inputs) would replace one of the inputs. ``suffix`` ends the videos' names (``_mesh`` for
    mesh videos)."""
    owner: dict[str, str] = {}
    inputs = {os.path.abspath(item.path): item.path for item in files}
    for item, stems in zip(files, outputs):
        for stem in stems:
            key = os.path.abspath(stem)
            if key in owner:
                raise ValueError(f"{owner[key]} and {item.path} would both write {stem}{suffix}.<mp4|gif>; render "
                                 f"them into separate --out folders or rename one")
            owner[key] = item.path
            joints = os.path.abspath(f"{stem}_joints.npy")
            if item.kind in ("features", "bvh") and joints in inputs:
                raise ValueError(f"{item.path} would save its joints as {stem}_joints.npy, over the input "
                                 f"{inputs[joints]}; render into another --out folder or rename one")


def check_no_existing_outputs(files: list[MotionFile], outputs: list[list[str]], suffix: str, fmt: str) -> None:
    """Fail before any work when a file this run may write exists already: a video (``<stem><suffix>`` in each
    container ``fmt`` may write; it may be one ``sample.py`` wrote and its manifest lists) or the joints saved beside
    the video of a features or BVH input (``<stem>_joints.npy``). ``--overwrite`` skips this."""
    existing = []
    for item, stems in zip(files, outputs):
        for stem in stems:
            candidates = [f"{stem}{suffix}.{kind}" for kind in video_formats(fmt)]
            if item.kind in ("features", "bvh"):
                candidates.append(f"{stem}_joints.npy")
            existing += [path for path in candidates if os.path.lexists(path)]
    if existing:
        raise FileExistsError(f"{len(existing)} file(s) exist already and would be replaced: "
                              f"{', '.join(existing)}; pass --overwrite to replace them, or --out another folder")


def load_statistics(spec: DatasetSpec) -> tuple[np.ndarray, np.ndarray]:
    """The dataset ``Mean.npy`` / ``Std.npy`` from the data root, cut to ``dim_pose``: two (D,) float32 arrays."""
    stats = []
    for name in ("Mean.npy", "Std.npy"):
        path = os.path.join(spec.root, name)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"--denorm needs {path} (dataset statistics); set --data_root to the folder "
                                    f"holding Mean.npy and Std.npy")
        try:
            values = np.load(path, allow_pickle=False)
        except (ValueError, EOFError, OSError) as e:  # empty, text or damaged: numpy's words name no file
            raise ValueError(f"{path}: cannot read as a .npy array ({e}); expected the dataset's statistics saved "
                             f"with np.save") from e
        if values.ndim != 1 or values.shape[0] not in (spec.dim_pose, spec.file_dim):
            # A spec using a leading slice of wider files (t2m_67) takes the files' own statistics too.
            widths = " or ".join(f"({d},)" for d in dict.fromkeys((spec.dim_pose, spec.file_dim)))
            raise ValueError(f"{path}: expected shape {widths} for dataset {spec.name!r}, got {tuple(values.shape)}")
        stats.append(values[: spec.dim_pose].astype(np.float32))
    return stats[0], stats[1]


def features_to_joints_np(features: np.ndarray, spec: DatasetSpec) -> np.ndarray:
    """(B, T, D) features -> (B, T, J, 3) joints through ``utils.motion_process``."""
    from utils.motion_process import features_to_joints  # only feature inputs need the kinematics

    return np.asarray(features_to_joints(np.ascontiguousarray(features, dtype=np.float32), spec))


def load_motions(item: MotionFile, spec: DatasetSpec, mean: np.ndarray | None,
                 std: np.ndarray | None) -> np.ndarray:
    """The joints (B, T, J, 3) of a joints or features ``.npy`` (features de-normalised with ``mean`` / ``std``
    when given)."""
    array = np.load(item.path, allow_pickle=False)
    if item.kind == "features":
        features = array[..., : spec.dim_pose]
        if mean is not None:
            features = features * std + mean
        return features_to_joints_np(features if features.ndim == 3 else features[None], spec)
    return array if array.ndim == 4 else array[None]


def bvh_mapping(files: list[MotionFile], skeleton: str | None) -> SkeletonMap | None:
    """The ``--skeleton`` mapping the ``.bvh`` inputs need, read before anything renders; None without them."""
    bvh = [f.path for f in files if f.kind == "bvh"]
    if not bvh:
        if skeleton is not None:
            raise ValueError("--skeleton maps the joints of .bvh inputs onto SMPL-22, and no input is a .bvh file")
        return None
    if skeleton is None:
        raise ValueError(f"{bvh[0]}: a BVH file renders through the mapping of its joints onto SMPL-22; pass "
                         f"--skeleton NAME (one under options/skeletons: bandai, lafan, smpl22 for this project's "
                         f"own BVH files) or a YAML path, as prepare_data.py bvh takes it")
    # Imported only for BVH inputs: the BVH code brings torch through the kinematics, which joints do not need.
    from utils.bvh import load_skeleton_map

    return load_skeleton_map(skeleton)


def read_bvh(path: str, mapping: SkeletonMap, fps: float | None) -> tuple[np.ndarray, float]:
    """The SMPL-22 joints (1, T, 22, 3) of a BVH file at ``fps`` (None: the file's rate, at most 30), and that
    rate."""
    from utils.bvh import read_bvh_smpl22, source_fps
    from utils.motion_process import joints_fps_resample
    from utils.smpl_mesh import MAX_VIDEO_FPS

    joints, parsed = read_bvh_smpl22(path, mapping, fps)  # None: at the file's own rate
    if fps is None:
        own = source_fps(parsed, mapping)
        fps = min(own, MAX_VIDEO_FPS)
        if fps < own:
            joints = joints_fps_resample(joints, own, fps)
    return joints[None], fps

