"""Flags of ``prepare_data.py``: one subcommand per way of making or checking a dataset in the HumanML3D layout.

The script binds each subcommand (``cfg.command``) to its ``main_<command>``; the parser only knows the flags.
"""

from __future__ import annotations

import argparse

from options.config import positive_float, seed_int
from utils.paths import DEFAULT_CLIP_PATH, project_path


def get_prepare_data_parser(description: str | None = None) -> argparse.ArgumentParser:
    """The parser of ``prepare_data.py``: its subcommands (synthetic, bvh, amass, validate, assets, stats, pfnn,
    export_bvh, export_smpl) and their flags; ``description`` is the script's docstring, printed as written."""
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("synthetic", help="procedural motions with captions (HumanML3D layout)")
    p.add_argument("--out", default=project_path("dataset/Synthetic"),
                   help="output dataset folder: new, empty or an earlier synthetic dataset, which is replaced (never "
                        "a registered dataset's folder, an import or a folder with other files)")
    p.add_argument("--num_motions", type=int, default=400,
                   help="motions to generate (at least 3, so that train, val and test each get one; the quick "
                        "pipeline's 400 by default)")
    p.add_argument("--seed", type=seed_int, default=0, help="motion i is drawn from the seed sequence (seed, i)")
    p.add_argument("--keep_existing", action="store_true",
                   help="keep a finished synthetic dataset already in --out instead of building it again, with a "
                        "warning when it was built with another --num_motions or --seed (the quick pipelines use "
                        "this)")

    p = sub.add_parser("bvh", help="import a folder of BVH clips")
    p.add_argument("--src", required=True, help="folder searched recursively for *.bvh")
    p.add_argument("--out", required=True, help="output dataset folder; its name becomes the dataset name "
                   "(so it must not be a registered one such as t2m or kit)")
    p.add_argument("--skeleton", required=True,
                   help="bandai, lafan, smpl22 for this project's own BVH files (options/skeletons/<name>.yaml) "
                        "or a path to your own mapping .yaml")
    p.add_argument("--fps", type=positive_float, default=20.0, help="target frame rate (default 20, as HumanML3D)")
    p.add_argument("--labels", default=None, help="captions: CSV rows 'id,caption' or JSON {id: caption | [..]}")
    p.add_argument("--seed", type=seed_int, default=0, help="seed of the split assignment and caption choice")
    p.add_argument("--mirror", action="store_true", help="also write every motion's mirror image as HumanML3D "
                   "does: M<name>, left and right swapped in the motion and its captions, in its original's split")

    p = sub.add_parser("amass", help="import a folder of AMASS SMPL-H / SMPL-X parameter files (.npz)")
    p.add_argument("--src", required=True, help="folder searched recursively for *.npz (e.g. AMASS's unpacked "
                   "subsets); files without poses, such as shape.npz, are skipped")
    p.add_argument("--out", required=True, help="output dataset folder; its name becomes the dataset name "
                   "(so it must not be a registered one such as t2m or kit)")
    models = p.add_mutually_exclusive_group(required=True)
    models.add_argument("--body_models", default=None, help="folder of body models in AMASS's layout: "
                        "smplh/<gender>/model.npz and smplx/<gender>/model.npz (neutral stands in for a missing "
                        "gender)")
    models.add_argument("--body_model", default=None, help="one body model .npz for every clip")
    p.add_argument("--fps", type=positive_float, default=20.0,
                   help="target frame rate (default 20, as HumanML3D; resampled by time stamps)")
    p.add_argument("--labels", default=None, help="captions: CSV rows 'id,caption' or JSON {id: caption | [..]}, "
                   "ids being the paths relative to --src without .npz")
    p.add_argument("--seed", type=seed_int, default=0, help="seed of the split assignment and caption choice")
    p.add_argument("--mirror", action="store_true", help="also write every motion's mirror image as HumanML3D "
                   "does: M<name>, left and right swapped in the motion and its captions, in its original's split")

    p = sub.add_parser("validate", help="check every file of a dataset")
    p.add_argument("--dataset_name", required=True)
    p.add_argument("--data_root", default=None, help="dataset folder (default: the registered one)")
    p.add_argument("--splits", nargs="+", default=["train", "val", "test"], help="split files to check")
    p.add_argument("--no_texts", action="store_true",
                   help="skip the caption checks (a motion-only dataset such as BEAT-X)")

    p = sub.add_parser("assets", help="check the files the published protocol reads: the dataset's, the evaluator "
                       "(and the GloVe vectors it reads), the CLIP weights and vocabulary (against OpenAI's SHA-256)")
    p.add_argument("--dataset_name", required=True)
    p.add_argument("--data_root", default=None, help="dataset folder (default: the registered one)")
    p.add_argument("--checkpoints_dir", default=project_path("checkpoints"),
                   help="root of the runs; the evaluator is <checkpoints_dir>/<dataset_name>/text_mot_match")
    p.add_argument("--evaluator_dir", default=None, help="another evaluator folder or file")
    p.add_argument("--glove_dir", default=None, help="folder of the GloVe files (default: glove/)")
    p.add_argument("--clip_path", default=project_path(DEFAULT_CLIP_PATH),
                   help="CLIP ViT-B/32 weights, the vocabulary beside them; '' skips the CLIP check (MiniLM runs)")

    p = sub.add_parser("stats", help="compute Mean.npy and Std.npy of a dataset (HumanML3D's group-averaged std)")
    p.add_argument("--dataset_name", required=True,
                   help="dataset whose spec describes every column of the files (t2m, not t2m_67)")
    p.add_argument("--data_root", default=None, help="dataset folder (default: the registered one)")
    p.add_argument("--split", default=None,
                   help="only the clips of this split (default: every clip, as HumanML3D: the ids of train/val/"
                        "test.txt, other .npy under new_joint_vecs/ left out and named; without those files, every "
                        ".npy there)")
    p.add_argument("--overwrite", action="store_true", help="replace existing Mean.npy / Std.npy (a link to other "
                   "statistics is replaced by the new file; the file it links to is left as it is)")

    p = sub.add_parser("pfnn", help="export PFNN training frames of a HumanML3D-layout dataset")
    p.add_argument("--dataset_name", required=True)
    p.add_argument("--data_root", default=None, help="dataset folder (default: the registered one)")
    p.add_argument("--out", required=True, help="output folder for Input.npy, Output.npy, ..., layout.json, replaced "
                   "whole when the export is done (so it must hold nothing else)")
    p.add_argument("--split", default="train", help="split to export")
    p.add_argument("--gait", action="store_true",
                   help="add stand/walk/run one-hot columns per trajectory sample (ground speed below 0.3 m/s, below "
                        "2 m/s, above; in metres whatever the dataset's unit)")

    p = sub.add_parser("export_bvh", help="write joint positions (T, J, 3) or features (T, D) as a BVH file")
    p.add_argument("input", help=".npy of joint positions (T, J, 3), or of de-normalised features (T, D) such as "
                                 "sample.py's <stem>_features.npy")
    p.add_argument("--out", default=None,
                   help="output .bvh file, its folder made if missing (default: next to the input)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    p.add_argument("--dataset_name", default="t2m",
                   help="dataset whose skeleton the joints use and whose layout features have (default t2m)")
    p.add_argument("--data_root", default=None, help="dataset folder (default: the registered one)")
    p.add_argument("--fps", type=positive_float, default=None, help="frame rate (default: the dataset's)")
    p.add_argument("--scale", type=float, default=1.0, help="length factor (100 writes centimetres)")

    p = sub.add_parser("export_smpl", help="write joint positions (T, 22, 3) or features (T, D) as SMPL parameters "
                       "(AMASS .npz layout)")
    p.add_argument("input", help=".npy of SMPL-22 joint positions (T, 22, 3) in metres, or of de-normalised features "
                                 "(T, D) such as sample.py's <stem>_features.npy")
    p.add_argument("--out", default=None,
                   help="output .npz file, its folder made if missing (default: <input>_smpl.npz next to the input)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    p.add_argument("--body_model", required=True, help="SMPL / SMPL-H / SMPL-X body model .npz (e.g. "
                   "smplh/neutral/model.npz); its joint count sets the width of poses")
    p.add_argument("--dataset_name", default="t2m", help="dataset whose skeleton (SMPL-22) the joints use and "
                   "whose layout features have (default t2m)")
    p.add_argument("--data_root", default=None, help="dataset folder (default: the registered one)")
    p.add_argument("--fps", type=positive_float, default=None, help="frame rate (default: the dataset's)")
    p.add_argument("--gender", default="neutral", choices=("neutral", "male", "female"),
                   help="gender recorded in the file (default neutral); use the body model's")
    return parser
