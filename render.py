"""Render saved motions as stick-figure or SMPL mesh videos.

Any ``.npy`` of joint positions (T, J, 3) or of motion features (T, D) is accepted; a leading batch axis
((B, T, J, 3) or (B, T, D)) renders one video per motion. Features are told apart from joints by their width
(the dataset's ``dim_pose``) and are converted to joints with ``utils.motion_process.features_to_joints``.

    python render.py generation/FSQ_MARDM_t2m/a_person_walks_000_r00.npy --dataset_name t2m
    python render.py sample_feats.npy --dataset_name t2m --denorm --data_root dataset/HumanML3D --out videos
    python render.py a.npy b.npy --dataset_name kit --format gif --title "a person jumps"
    python render.py CMU/01/01_01_poses.npz --body_model smplh/neutral/model.npz          # AMASS-layout parameters
    python render.py a_person_walks_000_r00.npy --mesh smplh/neutral/model.npz --dataset_name t2m
    python render.py dataset-1_walk_happy_001.bvh --skeleton bandai                     # motion capture, as imported

With a body model (``--body_model`` or ``--mesh``, one flag: an SMPL / SMPL-H / SMPL-X ``.npz``, whose faces give the
topology) the videos show the skinned mesh (``utils/smpl_mesh.py``) as ``<name>_mesh.<ext>``. ``.npz`` inputs are
SMPL parameters in AMASS's layout (AMASS files, ``_smpl.npz`` of ``sample.py --smpl`` and ``prepare_data.py
export_smpl``), turned from Z up to Y up and drawn in real time at ``--fps`` (default: the file's rate, at most 30).
Joints and features of an SMPL-22 dataset are fitted by inverse kinematics first (``utils/smpl_export.py``).

``.bvh`` inputs are read as ``prepare_data.py bvh`` imports them, through the ``--skeleton`` mapping (a name under
``options/skeletons`` or a YAML path) onto SMPL-22 joints in metres, Y up, drawn in real time at ``--fps`` (default:
the file's rate, at most 30): a look at a mapping before a whole folder is imported. No ``--dataset_name`` is needed.

Videos are MP4 when ffmpeg is installed and GIF otherwise (``--format auto``). Joints computed from features or BVH
files are saved as ``<name>_joints.npy`` next to the video before rendering starts. Inputs that would write the same
video (two ``x.npy`` from different folders with one ``--out``) are refused before anything is rendered, and so is a
video or ``<name>_joints.npy`` that exists already, unless ``--overwrite`` is given: the video beside a sample's
joints ``<stem>.npy`` is the one ``sample.py`` wrote, titled with its prompt and listed in its manifest (``--out``
renders elsewhere).

Without ``--out`` the files go next to each input, except for a clip of a dataset
(``dataset/<name>/new_joint_vecs/<id>.npy``, or ``new_joints/``): its files go to
``dataset/<name>/renders/new_joint_vecs/`` (or ``renders/new_joints/``; the id's subfolders kept), so the dataset's
folders keep one file per clip, and a clip's features and joints rendered together do not share a video.

    python render.py dataset/Bandai/new_joint_vecs/dataset-1_walk_happy_001.npy --dataset_name Bandai
    # -> dataset/Bandai/renders/new_joint_vecs/dataset-1_walk_happy_001.mp4 and dataset-1_walk_happy_001_joints.npy
"""

from __future__ import annotations

import argparse
import logging
import math
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from tqdm import tqdm

from utils.dataset_specs import T2M_KINEMATIC_CHAIN, DatasetSpec, get_dataset_spec
from utils.paths import DATASET_CLIP_FOLDERS, RENDERS_DIR
from utils.plot_script import FORMATS, RenderError, check_joints, plot_3d_motion, resolve_format, video_formats
from utils.stop_signals import run_with_error_boundary
from utils.user_errors import PATH_ERRORS

if TYPE_CHECKING:
    from utils.bvh import SkeletonMap

logger = logging.getLogger("render")


@dataclass
class MotionFile:
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
    own."""
    folder = os.path.dirname(os.path.abspath(path))
    parts = folder.split(os.sep)
    for i in range(len(parts) - 1, 0, -1):  # the innermost one: the dataset the clip belongs to
        if parts[i] in DATASET_CLIP_FOLDERS:
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
    """The dataset ``Mean.npy`` / ``Std.npy`` from the data root, cut to ``dim_pose``."""
    stats = []
    for name in ("Mean.npy", "Std.npy"):
        path = os.path.join(spec.root, name)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"--denorm needs {path} (dataset statistics); set --data_root to the folder "
                                    f"holding Mean.npy and Std.npy")
        values = np.load(path, allow_pickle=False)
        if values.ndim != 1 or values.shape[0] not in (spec.dim_pose, spec.file_dim):
            raise ValueError(f"{path}: expected shape ({spec.dim_pose},) for dataset {spec.name!r}, "
                             f"got {tuple(values.shape)}")
        stats.append(values[: spec.dim_pose].astype(np.float32))
    return stats[0], stats[1]


def features_to_joints_np(features: np.ndarray, spec: DatasetSpec) -> np.ndarray:
    """(B, T, D) features -> (B, T, J, 3) joints through ``utils.motion_process``."""
    from utils.motion_process import features_to_joints  # only feature inputs need the kinematics

    return np.asarray(features_to_joints(np.ascontiguousarray(features, dtype=np.float32), spec))


def main(cfg: argparse.Namespace) -> list[str]:
    # ------------------------------------------------------------------ setup
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    spec = get_dataset_spec(cfg.dataset_name, cfg.data_root) if cfg.dataset_name else None
    logging.getLogger("matplotlib").setLevel(logging.WARNING)  # it logs every writer choice at INFO
    if resolve_format(cfg.format) == "gif" and cfg.format == "auto":  # an impossible format fails before any work
        logger.warning("ffmpeg not found on the PATH: writing GIF instead of MP4")
    mesh = None
    if cfg.body_model:
        # Only mesh videos need the body model code, which brings torch through the kinematics (a second at start).
        from utils.smpl_export import check_smpl_skeleton
        from utils.smpl_mesh import load_body_mesh, render_amass_file, render_joints_mesh

        try:
            mesh = load_body_mesh(cfg.body_model)
        except (OSError, ValueError) as e:
            raise type(e)(f"--body_model: {e}") from e

    # ------------------------------------------------------------------ data
    for path in cfg.inputs:
        if not os.path.isfile(path):
            raise FileNotFoundError(f"{path}: no such file")
    files = [classify(path, spec) for path in cfg.inputs]  # every shape is checked before the first render
    if mesh is not None and spec is not None and any(f.kind in ("joints", "features") for f in files):
        check_smpl_skeleton(spec, "--mesh")  # the dataset's joints are fitted to the body model
    if mesh is None and any(f.kind == "parameters" for f in files):
        path = next(f.path for f in files if f.kind == "parameters")
        raise ValueError(f"{path}: SMPL parameters render as a mesh; pass --body_model BODY_MODEL.npz (SMPL, SMPL-H "
                         f"or SMPL-X, the model the parameters are for)")
    mapping = bvh_mapping(files, cfg.skeleton)
    outputs = [output_stems(item, cfg.out) for item in files]
    if cfg.out is None:  # a dataset's clips do not render next to themselves: say where they do
        moved = [f.path for f in files if default_folder(f.path) != os.path.dirname(os.path.abspath(f.path))]
        for folder in sorted({default_folder(path) for path in moved}):
            logger.info("clips of a dataset (in its %s) render into %s, not beside them (--out picks another "
                        "folder)", " or ".join(f"{name}/" for name in DATASET_CLIP_FOLDERS), folder)
    check_distinct_outputs(files, outputs, "_mesh" if mesh is not None else "")
    has_features = any(f.kind == "features" for f in files)
    if cfg.denorm and not has_features:
        held = {"joints": "joint positions", "parameters": "SMPL parameters", "bvh": "BVH motion capture"}
        logger.warning("--denorm ignored: it applies to motion features, and the inputs hold %s",
                       " and ".join(dict.fromkeys(held[f.kind] for f in files)))
    mean, std = load_statistics(spec) if cfg.denorm and has_features else (None, None)
    if not cfg.overwrite:  # last of the checks: a run refused for another reason is not told to --overwrite
        check_no_existing_outputs(files, outputs, "_mesh" if mesh is not None else "", cfg.format)

    # ------------------------------------------------------------------ render
    written, failures = [], []
    view = dict(fmt=cfg.format, dpi=cfg.dpi, radius=cfg.radius)
    for item, stems in zip(tqdm(files, desc="render", unit="file"), outputs):
        if item.kind == "parameters":
            try:
                written.append(render_amass_file(item.path, mesh, f"{stems[0]}_mesh.mp4", fps=cfg.fps,
                                                 title=cfg.title or os.path.basename(stems[0]), **view))
            except (RenderError, ValueError) as e:  # bad fields or a failed encoder; the other inputs still render
                failures.append(str(e))
            continue
        fps = cfg.fps or (spec.fps if spec is not None else None)
        if item.kind == "bvh":
            try:
                motions, fps = read_bvh(item.path, mapping, cfg.fps)
            except ValueError as e:
                failures.append(str(e))
                continue
            chain = T2M_KINEMATIC_CHAIN
        else:
            chain = spec.kinematic_chain
            motions = load_motions(item, spec, mean, std)
        for i, (joints, out_stem) in enumerate(zip(motions, stems)):
            name = os.path.basename(out_stem)
            joints_path = f"{out_stem}_joints.npy" if item.kind in ("features", "bvh") else None
            source = item.path if len(stems) == 1 else f"{item.path} motion {i}"
            try:  # the .mp4 extension becomes the format actually written
                if mesh is not None:
                    written.append(render_joints_mesh(f"{out_stem}_mesh.mp4", joints, mesh, fps,
                                                      joints_path=joints_path, source=source,
                                                      title=cfg.title or name, **view))
                else:
                    check_joints(joints, chain, name=source)  # a NaN names the input, not the video not written
                    written.append(plot_3d_motion(f"{out_stem}.mp4", joints, chain, title=cfg.title or name,
                                                  fps=fps, radius=cfg.radius, dpi=cfg.dpi, fmt=cfg.format,
                                                  save_joints=joints_path is not None, joints_path=joints_path))
            except (RenderError, ValueError) as e:  # ValueError: NaN or Inf joints; the other motions still render
                failures.append(str(e))

    for path in written:
        print(path)
    if failures:
        raise RenderError(f"{len(failures)} of {len(written) + len(failures)} videos failed:\n" + "\n".join(failures))
    return written


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


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("inputs", nargs="+", metavar="INPUT",
                        help="joints (T, J, 3) or features (T, D) .npy, SMPL parameters .npz in AMASS's layout, or "
                             "a .bvh (with --skeleton)")
    parser.add_argument("--dataset_name", default=None,
                        help="dataset whose skeleton and features the .npy files use (required for them)")
    parser.add_argument("--body_model", "--mesh", default=None, metavar="BODY_MODEL.npz",
                        help="SMPL / SMPL-H / SMPL-X body model: render the skinned mesh (<name>_mesh.<ext>) instead "
                             "of the stick figure; .npz parameter inputs need it")
    parser.add_argument("--skeleton", default=None, metavar="NAME|YAML",
                        help="the mapping of .bvh inputs onto SMPL-22: a name under options/skeletons (bandai, lafan, "
                             "smpl22) or a YAML path, as prepare_data.py bvh takes it")
    parser.add_argument("--data_root", default=None, help="dataset folder (for --denorm statistics and spec.json)")
    parser.add_argument("--out", default=None,
                        help="output folder (default: next to each input; for a dataset's clip, "
                             "<dataset>/new_joint_vecs/<id>.npy or new_joints/, <dataset>/renders/new_joint_vecs/ or "
                             "renders/new_joints/)")
    parser.add_argument("--fps", type=float, default=None,
                        help="frame rate (default: the dataset's; .npz and .bvh inputs: the file's, at most 30, in "
                             "real time)")
    parser.add_argument("--title", default=None, help="caption above every video (default: the file name)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace videos that exist already (default: refuse before rendering anything)")
    parser.add_argument("--format", choices=FORMATS, default="auto", help="auto: mp4 if ffmpeg is installed, else gif")
    parser.add_argument("--denorm", action="store_true", help="features are normalised: apply the dataset Mean/Std")
    parser.add_argument("--radius", type=float, default=None, help="view size in joint units (default: fitted)")
    parser.add_argument("--dpi", type=int, default=100)
    args = parser.parse_args(argv)
    for flag in ("fps", "radius", "dpi"):
        value = getattr(args, flag)
        if value is not None and not (math.isfinite(value) and value > 0):  # NaN and inf fail only in the encoder
            parser.error(f"--{flag} must be a finite number > 0, got {value:g}")
    return args


if __name__ == "__main__":
    run_with_error_boundary(lambda: main(parse_args()), "render.py", (ValueError, *PATH_ERRORS, RenderError),
                            "rerun the same command")
