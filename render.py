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

from tqdm import tqdm

from utils.dataset_specs import T2M_KINEMATIC_CHAIN, get_dataset_spec
from utils.paths import DATASET_CLIP_FOLDERS
from utils.plot_script import FORMATS, RenderError, check_joints, plot_3d_motion, resolve_format
from utils.render_inputs import (
    bvh_mapping,
    check_distinct_outputs,
    check_no_existing_outputs,
    classify,
    default_folder,
    load_motions,
    load_statistics,
    output_stems,
    read_bvh,
)
from utils.stop_signals import run_with_error_boundary
from utils.user_errors import PATH_ERRORS

logger = logging.getLogger("render")


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
