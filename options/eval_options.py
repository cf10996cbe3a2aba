"""Parsers of the evaluator training and the evaluation scripts (``train_evaluator.py``, ``evaluation_AE.py``).

Both parse with ``options.config.parse_with_config``, so ``--config`` YAML presets work as for training.
"""

from __future__ import annotations

import argparse

import torch

from models.evaluator import EVALUATOR_SIZES
from models.tokenizers import TOKENIZERS
from options.base_options import get_base_parser
from options.config import (
    DefaultsHelpFormatter,
    add_off_switch,
    non_negative_float,
    non_negative_int,
    positive_int,
    seed_int,
)
from utils.dataset_specs import dataset_names
from utils.eval_protocol import DEFAULT_REPLICATIONS, DEFAULT_SEED
from utils.paths import project_path

NEG_SHIFTS = ("nonzero", "reference")


def torch_device(text: str) -> str:
    """Flag type of ``--device``: a torch device this machine has. Checked when the flags are parsed, since torch
    itself fails only when the first checkpoint is loaded onto it, with a traceback about deserialisation."""
    try:
        device = torch.device(text)
    except RuntimeError:
        raise argparse.ArgumentTypeError(f"expected a torch device such as cpu, cuda or cuda:1, got {text!r}") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise argparse.ArgumentTypeError(f"{text}: CUDA is not available to this torch ({torch.__version__}); "
                                             "use --device cpu")
        count = torch.cuda.device_count()
        if device.index is not None and device.index >= count:
            raise argparse.ArgumentTypeError(f"{text}: this machine has {count} CUDA device{'s' * (count != 1)} "
                                             f"(cuda:0 to cuda:{count - 1})")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise argparse.ArgumentTypeError(f"{text}: MPS is not available to this torch ({torch.__version__}); "
                                         "use --device cpu")
    # Other accelerators (xpu, ...) through their torch module; a type without one (meta) holds no weights.
    backend = getattr(torch, device.type, None)
    if device.type not in ("cpu", "cuda", "mps") and not getattr(backend, "is_available", lambda: False)():
        raise argparse.ArgumentTypeError(f"{text}: {device.type} devices are not available to this torch "
                                         f"({torch.__version__}); use --device cpu")
    return text


def add_protocol_args(parser: argparse.ArgumentParser) -> argparse._ArgumentGroup:
    """The evaluation-protocol flags every evaluation script shares: evaluator, split, replications, resume."""
    group = parser.add_argument_group("evaluation protocol")
    group.add_argument("--evaluator_dir", type=str, default=None,
                       help="evaluator checkpoint or folder (default <checkpoints_dir>/<dataset_name>/text_mot_match)")
    group.add_argument("--glove_dir", type=str, default=project_path("glove"),
                       help="folder of our_vab_{data.npy,words.pkl,idx.pkl}, needed by evaluators using GloVe")
    group.add_argument("--split", type=str, default="test", help="split the protocol runs on")
    group.add_argument("--replications", type=positive_int, default=DEFAULT_REPLICATIONS,
                       help="passes over the split; metrics are mean ± 1.96·std/√replications")
    add_off_switch(group, "--no_gt_cache",
                   help="recompute the GT embeddings instead of reading/writing <evaluator>/gt_cache")
    group.add_argument("--is_continue", action=argparse.BooleanOptionalAction, default=False,
                       help="reuse the replications already streamed to the eval JSONL file by the same evaluation")
    group.add_argument("--report_json", type=str, default=None,
                       help="also write the result JSON to this path (the run's eval/ copy is written as always), "
                            "for scripts that read the numbers")
    return group


def get_train_evaluator_parser() -> argparse.ArgumentParser:
    """``train_evaluator.py``: the shared training flags with Guo et al.'s evaluator recipe as defaults."""
    parser = get_base_parser("Train a Guo et al. text/motion evaluator (movement encoder, then co-embedding).")
    parser.set_defaults(name="text_mot_match", batch_size=32, lr=1e-4, epoch=300, warm_up_iter=0, milestones=[],
                        lr_decay=1.0, grad_clip=0.5, num_workers=2, seed=DEFAULT_SEED)
    group = parser.add_argument_group("evaluator")
    group.add_argument("--max_epoch", dest="epoch", type=int, default=argparse.SUPPRESS,
                       help="alias of --epoch (passes over the training captions)")
    group.add_argument("--sizes", type=str, default="official", choices=sorted(EVALUATOR_SIZES),
                       help="layer widths: official (the released 512/1024), small, tiny (tests)")
    group.add_argument("--glove_dir", type=str, default=None,
                       help="GloVe folder (our_vab_*); when absent, a vocabulary is learned from the train captions")
    group.add_argument("--dim_word", type=positive_int, default=None,
                       help="width of a learned word embedding (default 300 for official sizes, else smaller); "
                            "with --glove_dir the vectors set it, and another value is an error")
    group.add_argument("--val_split", type=str, default="val", help="split for the validation loss / R-precision")
    group.add_argument("--margin", type=non_negative_float, default=10.0, help="contrastive margin for negative pairs")
    group.add_argument("--neg_shift", type=str, default="nonzero", choices=NEG_SHIFTS,
                       help="negatives are the batch shifted by a random amount: 'nonzero' draws it from [1, B-1]; "
                            "'reference' from [0, B-2] like Guo et al. (a shift of 0 makes negatives positives)")
    pre = parser.add_argument_group("movement-encoder pretraining (Guo et al.'s Decomp stage)")
    pre.add_argument("--pretrain_iters", type=non_negative_int, default=None,
                     help="steps of movement encoder + decoder training (default 5 epochs of windows; 0 skips it)")
    pre.add_argument("--pretrain_window", type=int, default=24, help="frames per pretraining window (multiple of 4)")
    pre.add_argument("--lambda_sparsity", type=non_negative_float, default=0.001,
                     help="weight of mean |movement latent|")
    pre.add_argument("--lambda_smooth", type=non_negative_float, default=0.001,
                     help="weight of the L1 difference of consecutive movement latents")
    return parser


def get_evaluation_ae_parser() -> argparse.ArgumentParser:
    """``evaluation_AE.py``: which tokenizer to load, and the protocol flags."""
    parser = argparse.ArgumentParser(description="Evaluate a motion tokenizer (reconstruction).",
                                     formatter_class=DefaultsHelpFormatter)
    run = parser.add_argument_group("run")
    run.add_argument("--name", type=str, default="",
                     help="tokenizer run name: checkpoints/<dataset_name>/<name>/model/<which_epoch>.tar; with "
                          "--ckpt, the run whose eval/ receives the results (default: the file's own run)")
    run.add_argument("--ckpt", type=str, default=None,
                     help="any tokenizer file load_tokenizer accepts (ours, T2M-GPT, MoMask, MARDM, MotionMillion) "
                          "instead of --name")
    run.add_argument("--which_epoch", type=str, default=None,
                     help="checkpoint file name in the run's model/ folder, .tar optional (net_best_fid, latest, ...); "
                          "default: net_best_fid, else net_best_loss, else latest (the one used is logged)")
    run.add_argument("--ae_model", type=str, default=None, choices=sorted(TOKENIZERS),
                     help="expected registry name; a checkpoint of another model is an error")
    add_off_switch(run, "--no_ema",
                   help="evaluate the raw weights of a run trained with --ema_decay (default: its EMA weights, with "
                        "which it was validated)")
    run.add_argument("--ae_meta_dir", type=str, default=None,
                     help="folder with the mean.npy/std.npy an official tokenizer file was trained with (ours record "
                          "theirs; default for a MoMask file: its run's meta/ beside model/, else for T2M-GPT/MoMask "
                          "files the evaluator's statistics)")
    run.add_argument("--checkpoints_dir", type=str, default=project_path("checkpoints"), help="root folder of all runs")
    run.add_argument("--config", type=str, default=None, help="YAML preset (flag: value)")
    run.add_argument("--seed", type=seed_int, default=DEFAULT_SEED,
                     help="base seed, in [0, 2^64) (replication r uses seed + r)")
    run.add_argument("--device", type=torch_device, default="cuda" if torch.cuda.is_available() else "cpu",
                     help="torch device")
    data = parser.add_argument_group("data")
    data.add_argument("--dataset_name", type=str, default="t2m",
                      help=f"registered dataset ({', '.join(dataset_names())}) or one with a spec.json in "
                           "--data_root or dataset/<name>/ (made by prepare_data.py bvh)")
    data.add_argument("--data_root", type=str, default=None, help="folder of the dataset (default: the spec's root)")
    data.add_argument("--eval_dataset", type=str, default=None,
                      help="run the protocol under another dataset's GT, captions and evaluator (default folder "
                           "<checkpoints_dir>/<eval_dataset>/text_mot_match): its GT converts exactly to the "
                           "tokenizer's input, the reconstruction back to its representation (a lossy conversion is "
                           "flagged), outputs are tagged _as<eval_dataset>. The reconstruction metrics stay on "
                           "--dataset_name. Default: the tokenizer's own dataset")
    data.add_argument("--batch_size", type=int, default=32, help="batch of the reconstruction-metric pass")
    data.add_argument("--num_workers", type=non_negative_int, default=0, help="DataLoader workers")
    add_off_switch(data, "--no_protocol",
                   help="reconstruction metrics only, without the text-motion protocol (the report goes to "
                        "eval_<tag>_recon.json, so it never replaces one with the protocol)")
    data.add_argument("--per_motion", action=argparse.BooleanOptionalAction, default=False,
                      help="reconstruct each motion alone, cut to its length, as T2M-GPT's evaluation does (outputs "
                           "tagged _each); default: the zero-padded batch at once, as MoMask and MARDM do")
    add_protocol_args(parser)
    return parser
