"""Parsers of the generator-side scripts: ``evaluation_MARDM.py`` (the evaluation protocol on generated motion) and
``sample.py`` (motion from free text). Both parse with ``options.config.parse_with_config`` (``--config`` presets).

Both load any generator family (``utils.generation``): MARDM / FSQ-MARDM / VQ-MARDM runs, or a MoMask masked-transformer
run with ``--res_name`` / ``--res_ckpt`` for its residual transformer. ``--time_steps`` and ``--cfg`` default to the
family's published settings; the MoMask options (``--topkr``, ``--sampling`` / ``--gumbel_sample``,
``--res_cond_scale``) are passed only when given."""

from __future__ import annotations

import argparse
from collections.abc import Iterable

import torch

from models.diffusion import DDPM_SAMPLERS, FLOW_SOLVERS
from models.mask_schedule import SAMPLING_MODES
from options.config import (
    DefaultsHelpFormatter,
    add_off_switch,
    fraction_below_one,
    non_negative_float,
    non_negative_int,
    positive_int,
)
from options.eval_options import add_protocol_args, torch_device
from options.generator_options import TEXT_ENCODER_CHOICES
from utils.eval_data import EVAL_BATCH_SIZE
from utils.eval_protocol import DEFAULT_SEED, MM_BATCHES, MM_REPEATS
from utils.paths import project_path
from utils.plot_script import FORMATS


def add_generator_args(parser: argparse.ArgumentParser) -> None:
    """Which generator to load: ``--name``/``--dataset_name`` or ``--ckpt``, ``--which_epoch``, EMA, overrides of the
    recorded tokenizer and text-encoder files, device and seed."""
    run = parser.add_argument_group("generator")
    run.add_argument("--name", type=str, default="",
                     help="generator run: <checkpoints_dir>/<dataset_name>/<name>/model/<which_epoch>.tar; with "
                          "--ckpt, the run whose eval/ (evaluation) receives the results")
    run.add_argument("--dataset_name", type=str, default=None,
                     help="dataset of the run (default with --ckpt: the one recorded in the checkpoint)")
    run.add_argument("--ckpt", type=str, default=None, help="generator checkpoint file instead of --name")
    run.add_argument("--which_epoch", type=str, default="latest",
                     help="latest (model/latest.tar, as MARDM), best (model/net_best_fid.tar, else "
                          "net_best_loss.tar) or a file name in model/")
    add_off_switch(run, "--no_ema", help="use the raw weights instead of the EMA weights the checkpoint carries")
    run.add_argument("--checkpoints_dir", type=str, default=project_path("checkpoints"), help="root folder of all runs")
    run.add_argument("--res_name", type=str, default=None,
                     help="MoMask: residual-transformer run under <checkpoints_dir>/<dataset_name>/ (same "
                          "--which_epoch); without it only the base layer of an RVQ tokenizer is generated")
    run.add_argument("--res_ckpt", type=str, default=None,
                     help="MoMask: residual-transformer checkpoint file (MoMask's evaluation reads the residual run's "
                          "model/net_best_fid.tar next to the base run's latest.tar)")
    run.add_argument("--tokenizer_path", type=str, default=None,
                     help="tokenizer checkpoint replacing the path recorded in the generator (when it was moved)")
    run.add_argument("--text_encoder", type=str, default=None, choices=TEXT_ENCODER_CHOICES,
                     help="expected text encoder; the checkpoint records the one it was trained with and another "
                          "one is an error")
    run.add_argument("--text_encoder_path", type=str, default=None,
                     help="CLIP weights replacing the path recorded in the generator and in its length estimator")
    run.add_argument("--config", type=str, default=None, help="YAML preset (flag: value)")
    run.add_argument("--seed", type=int, default=DEFAULT_SEED,
                     help="base seed (evaluation: >= 0, replication r uses seed + r; sampling: sample k uses seed + k)")
    run.add_argument("--device", type=torch_device, default="cuda" if torch.cuda.is_available() else "cpu",
                     help="torch device")


def add_sampling_args(parser: argparse.ArgumentParser) -> None:
    """``--time_steps``, ``--cfg``, ``--temperature``, ``--no_snap`` and the MoMask options (family defaults)."""
    group = parser.add_argument_group("sampling")
    group.add_argument("--time_steps", type=positive_int, default=None,
                       help="masked-generation steps (default: the family's, MARDM 18, MoMask 10)")
    group.add_argument("--cfg", "--cond_scale", dest="cfg", type=non_negative_float, default=None,
                       help="classifier-free guidance scale (default: the family's, MARDM 4.5 on HumanML3D (2.5 on "
                            "KIT), MoMask 4 (2 on KIT))")
    group.add_argument("--temperature", type=non_negative_float, default=1.0,
                       help="scale of the sampling noise: the diffusion head's (MARDM, honoured unlike the reference "
                            "code) or the base-layer softmax (MoMask; its code divides the probabilities, which "
                            "renormalising undoes, so it samples at 1 whatever it is given)")
    add_off_switch(group, "--no_snap",
                   help="ablation: keep the generated FSQ coordinates / VQ vectors off the grid / codebook (MARDM)")
    momask = parser.add_argument_group("MoMask sampling (default: MoMask's settings)")
    momask.add_argument("--topkr", dest="topk_filter_thres", type=fraction_below_one, default=None,
                        help="keep the top (1 - topkr) fraction of the logits (MoMask 0.9)")
    momask.add_argument("--sampling", type=str, default=None, choices=SAMPLING_MODES,
                        help="base-layer draws: categorical (MoMask's main evaluation batches) or gumbel; residual "
                             "layers always use Gumbel-max, as MoMask")
    momask.add_argument("--gumbel_sample", dest="sampling", action="store_const", const="gumbel",
                        help="MoMask's flag for --sampling gumbel")
    momask.add_argument("--res_cond_scale", type=non_negative_float, default=None,
                        help="guidance scale of the residual layers (MoMask 5)")

    mardm = parser.add_argument_group("MARDM-family sampling (default: the diffusion head's own sampler)")
    mardm.add_argument("--head_steps", type=positive_int, default=None,
                       help="steps of the diffusion head's sampler: a DDPM head visits this many of its training "
                            "steps (respaced, 1 to 50 for MARDM); a SiT head integrates in this many with a fixed-step "
                            "solver, euler or heun (--head_solver, or the one it was built with; MARDM's dopri5 "
                            "chooses its own)")
    mardm.add_argument("--head_solver", type=str, default=None, choices=DDPM_SAMPLERS + FLOW_SOLVERS,
                       help="a DDPM head's sampler (MARDM: ancestral; ddim: deterministic DDIM) or a SiT head's ODE "
                            "solver (MARDM: dopri5, adaptive; euler and heun take --head_steps)")


# Each family option as the user types it (the option is the flag's dest).
FAMILY_FLAGS = {"topk_filter_thres": "--topkr", "sampling": "--sampling/--gumbel_sample",
                "res_cond_scale": "--res_cond_scale", "head_steps": "--head_steps", "head_solver": "--head_solver"}
FAMILY_OPTIONS = tuple(FAMILY_FLAGS)


def family_sampling_options(cfg: argparse.Namespace) -> dict[str, object]:
    """The family-specific sampling options given on the command line (``MotionGenerator.generate(**options)``);
    those left unset are not passed, so the family's defaults apply and other families see none."""
    return {name: getattr(cfg, name) for name in FAMILY_OPTIONS if getattr(cfg, name, None) is not None}


def check_family_flags(options: dict[str, object], family: str, taken: Iterable[str]) -> None:
    """Fail naming the flags of ``options`` (``family_sampling_options``) that generators of ``family``, which take
    the options ``taken``, have no use for, and the flags they do take: before the generator's own check, which
    names the options in code."""
    taken = set(taken)
    refused = [FAMILY_FLAGS[name] for name in options if name not in taken]
    if refused:
        theirs = ", ".join(flag for name, flag in FAMILY_FLAGS.items() if name in taken) or "none"
        raise ValueError(f"{family} generators take no {', '.join(refused)}; their sampling flags: {theirs}")


def get_evaluation_generator_parser() -> argparse.ArgumentParser:
    """``evaluation_MARDM.py``: generator, sampling settings, multimodality and the protocol flags."""
    parser = argparse.ArgumentParser(description="Evaluate a text-to-motion generator with the Guo et al. protocol.",
                                     formatter_class=DefaultsHelpFormatter)
    add_generator_args(parser)
    add_sampling_args(parser)
    data = parser.add_argument_group("data")
    data.add_argument("--data_root", type=str, default=None, help="folder of the dataset (default: the spec's root)")
    data.add_argument("--eval_dataset", type=str, default=None,
                      help="score under another dataset's GT, captions and evaluator (default folder "
                           "<checkpoints_dir>/<eval_dataset>/text_mot_match): the generator's motion is converted to "
                           "its representation (utils/representation.py; a lossy conversion is flagged) and the "
                           "outputs are tagged _as<eval_dataset>. Both datasets must read the same clips "
                           "(--data_root applies to both). Default: the generator's own dataset")
    data.add_argument("--num_workers", type=non_negative_int, default=0,
                      help="DataLoader workers of the evaluation data")
    data.add_argument("--eval_batch_size", type=positive_int, default=EVAL_BATCH_SIZE,
                      help="captions per batch; R-precision ranks among this many (32 in every published table)")
    mm = parser.add_argument_group("multimodality")
    # On by default, and a flag that really turns it off (the reference's --cal_mm is store_false: passing it
    # disables the computation).
    mm.add_argument("--cal_mm", action=argparse.BooleanOptionalAction, default=True,
                    help="compute multimodality (--no-cal_mm or --no_mm turns it off)")
    mm.add_argument("--no_mm", dest="cal_mm", action="store_false", default=argparse.SUPPRESS,
                    help="do not compute multimodality")
    mm.add_argument("--mm_batches", type=positive_int, default=MM_BATCHES,
                    help="first batches whose captions are repeated")
    mm.add_argument("--mm_repeats", type=positive_int, default=MM_REPEATS,
                    help="generations per caption for multimodality")
    mm.add_argument("--mm_sampling", type=str, default=None, choices=SAMPLING_MODES,
                    help="MoMask generators: base-layer draws of the multimodality repeats (default gumbel, as "
                         "MoMask's evaluation draws them, while its other batches draw categorical: --sampling)")
    saved = parser.add_argument_group("generate once, score many")
    saved.add_argument("--save_motions", action=argparse.BooleanOptionalAction, default=False,
                       help="keep every generated motion in <run>/eval/motions_<tag>/ (float32 frames up to each "
                            "length, about 4 x dim bytes a frame) so that --from_motions can score them again")
    saved.add_argument("--from_motions", type=str, default=None,
                       help="score the motions a --save_motions run kept in this folder instead of generating: no "
                            "generator is loaded, the protocol settings are the saved run's, and the results go next "
                            "to the folder (under another --evaluator_dir, to their own files)")
    add_protocol_args(parser)
    return parser


def get_sample_parser() -> argparse.ArgumentParser:
    """``sample.py``: prompts, lengths, repeats and outputs."""
    parser = argparse.ArgumentParser(description="Generate motion from text with a trained generator.",
                                     formatter_class=DefaultsHelpFormatter)
    add_generator_args(parser)
    add_sampling_args(parser)
    prompts = parser.add_argument_group("prompts")
    prompts.add_argument("--text_prompt", type=str, default=None, help="one prompt")
    prompts.add_argument("--text_path", type=str, default=None,
                         help="text file, one prompt per line; '<prompt>#<frames>' fixes that prompt's length "
                              "('#NA' or nothing: --motion_length or the length estimator); empty lines and lines "
                              "starting with '#' are skipped; HumanML3D caption lines give their caption. A .jsonl "
                              "file: one {\"text\": ..., \"length\": frames or null} per line; a .csv file: a "
                              "'text' and optionally a 'length' column")
    prompts.add_argument("--motion_length", type=int, default=None,
                         help="length in frames (rounded down to whole tokens); 0 or unset: the length estimator")
    prompts.add_argument("--length_estimator", type=str, default=None,
                         help="length estimator file or run (default: the length_estimator run next to the generator's "
                              "run, <checkpoints>/<dataset>/length_estimator; for a generator file outside a run "
                              "folder, <checkpoints_dir>/<dataset>/length_estimator)")
    prompts.add_argument("--repeat_times", type=positive_int, default=1, help="samples per prompt")
    edit = parser.add_argument_group("editing (regenerate spans of a motion, keep the rest)")
    edit.add_argument("--edit_source", type=str, default=None,
                      help="features .npy (T, D) in the dataset's units to edit: a <name>_features.npy that "
                           "sample.py wrote, or a dataset file (new_joint_vecs/<id>.npy); or joint positions "
                           "(T, J, 3), turned into features by HumanML3D's extraction; or a .bvh (with "
                           "--edit_skeleton) or AMASS .npz (with --edit_body_model) motion, read as prepare_data.py "
                           "imports it; the prompts condition the edited spans and the output has the source's "
                           "length cut to whole tokens")
    edit.add_argument("--edit_skeleton", type=str, default=None, metavar="NAME|YAML",
                      help="the joint mapping of a .bvh --edit_source onto SMPL-22: a name under options/skeletons "
                           "(bandai, lafan, smpl22 for the BVH files sample.py writes) or a YAML path, as "
                           "prepare_data.py bvh --skeleton takes it")
    edit.add_argument("--edit_body_model", type=str, default=None, metavar="FILE|DIR",
                      help="the SMPL-H / SMPL-X body model (.npz file, or a folder in AMASS's layout) that gives the "
                           "joints of an AMASS .npz --edit_source")
    edit.add_argument("--edit_frames", type=str, action="append", default=None, metavar="START:END",
                      help="frames [START, END) to regenerate (repeatable; ':40' a prefix, '100:' a suffix), at the "
                           "dataset's fps (a .bvh or AMASS source is resampled to it first); a token (4 frames for "
                           "the published models) is regenerated when any of its frames is")
    edit.add_argument("--edit_seconds", type=str, action="append", default=None, metavar="START:END",
                      help="as --edit_frames, in seconds at the dataset's fps (START rounded down, END up to frames)")
    edit.add_argument("--span_prompts", action=argparse.BooleanOptionalAction, default=False,
                      help="one prompt per span instead of every prompt for every span: the prompts, in order, go to "
                           "the spans from left to right (which may not share a token), and each repeat makes one "
                           "edited motion")
    edit.add_argument("--anchor_root", action=argparse.BooleanOptionalAction, default=False,
                      help="keep the frames outside the edited spans where the source's stand: each span's root yaw "
                           "and xz velocities are bent evenly so that its end meets the source as its tokens decode, "
                           "and the unedited frames take the source's root velocities (HumanML3D and 67-dim features; "
                           "the manifest gives the yaw and distance spread over each span)")
    seq = parser.add_argument_group("sequence (one long motion from the prompts in order)")
    seq.add_argument("--sequence", action=argparse.BooleanOptionalAction, default=False,
                     help="make one motion whose consecutive segments follow the prompts, in order (lengths per "
                          "prompt as without it): each segment is generated from its prompt, then every seam is "
                          "in-betweened; may be longer than the longest training clip")
    seq.add_argument("--transition_seconds", type=non_negative_float, default=2.0,
                     help="stretch around each seam generated again to join the segments, half before and half "
                          "after (whole tokens; capped so that every segment keeps at least half of its own tokens; 0: "
                          "segments joined as generated)")
    out = parser.add_argument_group("output")
    out.add_argument("--output_dir", type=str, default=None,
                     help="folder of the samples (default generation/<name>_<dataset_name>/)")
    add_off_switch(out, "--no_render",
                   help="no stick-figure video: write joints (and BVH, SMPL, mesh video when asked) only")
    out.add_argument("--format", type=str, default="auto", choices=FORMATS,
                     help="video container: auto is MP4 when ffmpeg is installed, else GIF")
    out.add_argument("--bvh", action=argparse.BooleanOptionalAction, default=False,
                     help="also export every sample as a BVH file")
    out.add_argument("--smpl", type=str, default=None, metavar="BODY_MODEL.npz",
                     help="also export every sample as SMPL parameters in AMASS's layout (<stem>_smpl.npz) for this "
                          "SMPL / SMPL-H / SMPL-X body model file (yours; inverse kinematics, betas zero)")
    out.add_argument("--mesh_video", action=argparse.BooleanOptionalAction, default=False,
                     help="with --smpl, also a video of the body model's mesh skinned from those parameters "
                          "(<stem>_mesh.mp4, .gif without ffmpeg); the model file needs its weights and faces f")
    return parser
