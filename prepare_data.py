"""Prepare datasets in the HumanML3D layout: synthetic text-motion pairs, BVH and AMASS imports, validation, BVH
and SMPL-parameter export.

    # a procedural dataset (registered as --dataset_name synthetic)
    python prepare_data.py synthetic --out dataset/Synthetic --num_motions 400 --seed 0

    # a folder of BVH clips; the dataset is then found as --dataset_name Bandai (dataset/Bandai/spec.json)
    python prepare_data.py bvh --src ../shared/data/bandai-namco-1/bvh --out dataset/Bandai --skeleton bandai
    python prepare_data.py bvh --src mocap/ --out dataset/MyMocap --skeleton my_skeleton.yaml --fps 20 \\
        --labels captions.csv

    # AMASS SMPL-H / SMPL-X parameters (poses, trans, betas) with the body models in AMASS's layout
    python prepare_data.py amass --src amass/ --body_models body_models/ --out dataset/AMASS20 --fps 20

    # check every file of a dataset (exit status 1 when a loader would fail)
    python prepare_data.py validate --dataset_name Bandai
    python prepare_data.py validate --dataset_name synthetic --data_root /data/Synthetic

    # the files the published protocol reads: dataset, evaluator (+ GloVe), CLIP weights and vocabulary (SHA-256)
    python prepare_data.py assets --dataset_name t2m
    python prepare_data.py assets --dataset_name t2m_67 --evaluator_dir official/t2m

    # Mean.npy / Std.npy of a dataset you built yourself (every clip its split files list, or one split's): an
    # import (its spec.json names the layout), or 263-dim HumanML3D features in a folder of your own (as t2m)
    python prepare_data.py stats --dataset_name MyImport --data_root dataset/MyImport
    python prepare_data.py stats --dataset_name t2m --data_root dataset/MyData
    python prepare_data.py stats --dataset_name t2m --split train

    # PFNN training frames (Input/Output/Phase .npy, normalisation, layout.json) of a HumanML3D-layout dataset
    python prepare_data.py pfnn --dataset_name synthetic --data_root dataset/Synthetic --out pfnn/Synthetic

    # joint positions (T, 22, 3) -> BVH, e.g. to open generated motions in Blender
    python prepare_data.py export_bvh generation/M_t2m/a_person_walks_000_r00.npy --out 0.bvh --dataset_name t2m

    # joint positions or features -> SMPL parameters in AMASS's layout (read back by the amass command)
    python prepare_data.py export_smpl motion.npy --out motion_smpl.npz --body_model smplh/neutral/model.npz

``bvh`` maps each clip onto SMPL-22 with ``options/skeletons/<skeleton>.yaml`` (copy one to map your own skeleton),
resamples to ``--fps`` by time stamps, splits clips longer than 196 feature frames into equal chunks ``<name>_c<k>``,
and takes captions from ``--labels`` (CSV ``id,caption`` or JSON ``{id: caption}``) or from the file names.
``amass`` computes the 22 body joints of each SMPL-H / SMPL-X file with the body model of its type and gender
(``--body_models DIR/smplh/<gender>/model.npz``, or one ``--body_model FILE``), turns Z up into Y up and does the
same; its motion ids are the file paths relative to ``--src`` without ``.npz``.
"""

from __future__ import annotations

import argparse
import errno
import logging
import os
import sys

from tqdm import tqdm

from options.prepare_data_options import get_prepare_data_parser
from utils.cli import USER_ERRORS
from utils.stop_signals import run_with_error_boundary

logger = logging.getLogger("prepare_data")


def main_synthetic(cfg: argparse.Namespace) -> int:
    # Imported here so that --help and the other subcommands do not load the kinematics.
    from utils.dataset_prep import summary_lines, synthetic_use_line
    from utils.synthetic import FPS, built_with, check_synthetic_folder, generate_synthetic_dataset, settings_mismatch

    if cfg.keep_existing:  # only a synthetic dataset is kept: a folder the build would refuse is refused here too
        check_synthetic_folder(cfg.out, cfg.num_motions)
    if cfg.keep_existing and built_with(cfg.out) is not None:
        mismatch = settings_mismatch(cfg.out, cfg.num_motions, cfg.seed)
        if mismatch:
            logger.warning("kept as it is (--keep_existing), so results on it are not those of the data asked for: "
                           "%s", mismatch)
        print(f"synthetic: kept the finished dataset in {cfg.out}")
        print(f"  {synthetic_use_line(cfg.out)}")
        return 0
    summary = generate_synthetic_dataset(cfg.out, cfg.num_motions, seed=cfg.seed, progress=tqdm)
    splits = ", ".join(f"{k} {v}" for k, v in summary.splits.items())
    actions = ", ".join(f"{k} {v}" for k, v in sorted(summary.actions.items()))
    print("\n".join(summary_lines("synthetic", summary.motions, summary.frames, FPS, summary.seconds, cfg.out,
                                   [f"splits: {splits}", f"actions: {actions}",
                                    f"sub-clip captions: {summary.subclip_captions}", synthetic_use_line(cfg.out)])))
    return 0


def main_bvh(cfg: argparse.Namespace) -> int:
    from utils.bvh_import import import_bvh_folder
    from utils.dataset_prep import import_summary_lines

    summary = import_bvh_folder(cfg.src, cfg.out, cfg.skeleton, target_fps=cfg.fps, labels=cfg.labels,
                                seed=cfg.seed, progress=tqdm, mirror=cfg.mirror)
    print("\n".join(import_summary_lines("bvh", summary, cfg.out, cfg.fps)))
    return 0


def main_amass(cfg: argparse.Namespace) -> int:
    from utils.amass_import import import_amass_folder
    from utils.dataset_prep import import_summary_lines

    summary = import_amass_folder(cfg.src, cfg.out, body_models=cfg.body_models, body_model=cfg.body_model,
                                  target_fps=cfg.fps, labels=cfg.labels, seed=cfg.seed, progress=tqdm,
                                  mirror=cfg.mirror)
    print("\n".join(import_summary_lines("amass", summary, cfg.out, cfg.fps)))
    return 0


def main_validate(cfg: argparse.Namespace) -> int:
    from utils.data_validation import validate_dataset
    from utils.dataset_specs import get_dataset_spec

    spec = get_dataset_spec(cfg.dataset_name, cfg.data_root)
    report = validate_dataset(spec, cfg.data_root, splits=cfg.splits, texts=not cfg.no_texts, progress=True)
    print(report.format())
    return 0 if report.ok else 1


def main_assets(cfg: argparse.Namespace) -> int:
    from utils.assets import OK, check_clip, check_dataset, check_evaluator, format_checks

    checks = check_dataset(cfg.dataset_name, cfg.data_root)
    evaluator = cfg.evaluator_dir or os.path.join(cfg.checkpoints_dir, cfg.dataset_name, "text_mot_match")
    checks += check_evaluator(evaluator, cfg.dataset_name, cfg.data_root, cfg.glove_dir)
    clip = check_clip(cfg.clip_path) if cfg.clip_path else []
    checks += clip
    print(format_checks(checks))
    if any(c.state != OK for c in clip):
        print("note: only runs with --text_encoder clip (the published generator presets) read the CLIP files; "
              "--clip_path '' checks the rest without them")
    bad = [c for c in checks if c.state != OK]
    print(f"{len(checks) - len(bad)} of {len(checks)} ok" + (f"; {len(bad)} to fix" if bad else ""))
    return 1 if bad else 0


def main_stats(cfg: argparse.Namespace) -> int:
    from utils.dataset_prep import write_dataset_stats
    from utils.dataset_specs import get_dataset_spec

    spec = get_dataset_spec(cfg.dataset_name, cfg.data_root)
    root = cfg.data_root or spec.root
    stats = write_dataset_stats(spec, root, cfg.split, overwrite=cfg.overwrite)
    print(f"stats: Mean.npy and Std.npy ({spec.file_dim},) from {stats.clips} clips ({stats.source}; std "
          f"averaged within each feature group) -> {root}")
    return 0


def _output_file(out: str, cfg: argparse.Namespace) -> str:
    """``--out`` checked before any work: not a folder, not the input, not an existing file unless ``--overwrite``,
    and its folder made. Returns ``out``."""
    if os.path.isdir(out):
        raise IsADirectoryError(errno.EISDIR, "--out is a folder; expected the path of the file to write", out)
    if os.path.exists(out) and os.path.exists(cfg.input) and os.path.samefile(out, cfg.input):
        raise ValueError(f"--out {out} is the input file; name another file to write")
    if os.path.lexists(out) and not cfg.overwrite:
        raise FileExistsError(errno.EEXIST, "--out exists; pass --overwrite to replace it", out)
    folder = os.path.dirname(os.path.abspath(out))
    try:
        os.makedirs(folder, exist_ok=True)
    except (FileExistsError, NotADirectoryError) as e:  # a file stands where a folder of the path goes
        raise NotADirectoryError(f"--out {out}: cannot make the folder {folder} ({e.strerror})") from e
    return out


def main_export_bvh(cfg: argparse.Namespace) -> int:
    from utils.bvh_export import write_bvh
    from utils.dataset_specs import get_dataset_spec
    from utils.motion_files import read_joints

    out = _output_file(cfg.out or os.path.splitext(cfg.input)[0] + ".bvh", cfg)
    spec = get_dataset_spec(cfg.dataset_name, cfg.data_root)
    joints = read_joints(cfg.input, spec)
    fps = spec.fps if cfg.fps is None else cfg.fps  # only a flag left out means the dataset's rate
    write_bvh(out, joints, fps, spec.kinematic_chain, scale=cfg.scale, source=cfg.input)
    print(f"export_bvh: {joints.shape[0]} frames -> {out}")
    return 0


def main_export_smpl(cfg: argparse.Namespace) -> int:
    from utils.dataset_specs import get_dataset_spec
    from utils.motion_files import read_joints
    from utils.smpl_body import load_body_model
    from utils.smpl_export import check_smpl_skeleton, write_smpl

    out = _output_file(cfg.out or os.path.splitext(cfg.input)[0] + "_smpl.npz", cfg)
    spec = get_dataset_spec(cfg.dataset_name, cfg.data_root)
    check_smpl_skeleton(spec, "--dataset_name")
    joints = read_joints(cfg.input, spec)
    body = load_body_model(cfg.body_model)
    fps = spec.fps if cfg.fps is None else cfg.fps
    report = write_smpl(out, joints, body, fps, gender=cfg.gender, source=cfg.input)
    print(f"export_smpl: {joints.shape[0]} frames, poses ({joints.shape[0]}, {3 * body.num_joints}) -> {out}; "
          f"joints of the parameters vs the input: mean {report.mean_error_mm:.2f} mm, max "
          f"{report.max_error_mm:.2f} mm (non-zero where the motion's skeleton differs from the body model's: "
          f"bone lengths, or the angles between the bones leaving the pelvis and the upper spine)")
    return 0


def main_pfnn(cfg: argparse.Namespace) -> int:
    from utils.dataset_specs import get_dataset_spec
    from utils.pfnn import export_pfnn

    spec = get_dataset_spec(cfg.dataset_name, cfg.data_root)
    summary = export_pfnn(cfg.data_root or spec.root, spec, cfg.out, split=cfg.split, gait=cfg.gait, progress=True)
    print(f"pfnn: {summary.rows} frames from {summary.clips} {cfg.split} clips -> {cfg.out} "
          f"(X {summary.input_dim} columns, Y {summary.output_dim}; named ranges in layout.json)")
    if summary.skipped:
        print(f"  too short for the trajectory window (-1 s .. +0.83 s), skipped: {len(summary.skipped)}")
    return 0


# Each subcommand of options.prepare_data_options runs its main.
COMMANDS = {"synthetic": main_synthetic, "bvh": main_bvh, "amass": main_amass, "validate": main_validate,
            "assets": main_assets, "stats": main_stats, "pfnn": main_pfnn, "export_bvh": main_export_bvh,
            "export_smpl": main_export_smpl}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    return get_prepare_data_parser(__doc__).parse_args(argv)


def main(cfg: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    return COMMANDS[cfg.command](cfg)


if __name__ == "__main__":
    # A stop removes the staging folder of an import and the temporary files of a write, so the same command starts
    # over (and replaces an earlier synthetic dataset). OSError: a full disk or a file-size limit, whose error names
    # the file (utils.atomic_io).
    sys.exit(run_with_error_boundary(lambda: main(parse_args()), "prepare_data.py",
                                     (*USER_ERRORS, KeyError, OSError), "rerun the same command"))
