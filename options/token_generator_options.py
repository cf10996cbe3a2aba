"""Flags of MoMask's token-generator stages (``train_t2m_transformer.py``, ``train_res_transformer.py``), on top of the
base parser. Defaults are MoMask's HumanML3D recipe: AdamW lr 2e-4 (betas 0.9/0.99, weight decay 1e-5), 2000 warm-up
steps, lr x0.1 at step 50,000, batch 64, 500 epochs, seed 3407."""

from __future__ import annotations

import argparse
from typing import Any

from options.base_options import get_base_parser
from options.config import fraction_below_one, non_negative_float, non_negative_int, option_origin, positive_int
from options.generator_options import TOKENIZER_WHICH, add_text_encoder_args, add_train_mask_count_arg
from utils.paths import project_path

# Flag dest -> constructor keyword of the transformers (MoMask spells the layer and head counts n_layers / n_heads).
ARCH_FLAGS = {"latent_dim": "latent_dim", "ff_size": "ff_size", "n_layers": "num_layers", "n_heads": "num_heads",
              "dropout": "dropout", "cond_drop_prob": "cond_drop_prob", "label_smoothing": "label_smoothing",
              "train_mask_count": "train_mask_count"}


def _add_tokenizer_args(parser: argparse.ArgumentParser) -> None:
    from models.tokenizers import TOKENIZERS

    group = parser.add_argument_group("tokenizer (a train_vq.py run, frozen)")
    group.add_argument("--vq_name", "--ae_name", dest="vq_name", type=str, default=None,
                       help="tokenizer run under <checkpoints_dir>/<dataset_name>/<vq_name>/model/ (its --vq_which "
                            "file)")
    group.add_argument("--vq_which", "--ae_which", dest="vq_which", type=str, default="best", choices=TOKENIZER_WHICH,
                       help="file of the --vq_name run: best (net_best_fid.tar, else net_best_loss.tar, else "
                            "latest.tar) or that file (MoMask's presets: net_best_fid)")
    group.add_argument("--vq_ckpt", "--ae_ckpt", dest="vq_ckpt", type=str, default=None,
                       help="tokenizer checkpoint file instead of --vq_name")
    group.add_argument("--vq_model", "--ae_model", dest="vq_model", type=str, default=None, choices=sorted(TOKENIZERS),
                       help="expected tokenizer registry name; a checkpoint of another model is an error")
    group.add_argument("--cache_tokens", action=argparse.BooleanOptionalAction, default=False,
                       help="encode every sample's motion once and keep the codes in <run>/tokens/ (crops are then "
                            "taken in token space); default: encode each batch on the fly, as MoMask")


def _add_arch_args(parser: argparse.ArgumentParser, default_cdp: float) -> None:
    group = parser.add_argument_group("architecture overrides (default: the registry entry's values)")
    group.add_argument("--latent_dim", type=positive_int, default=None,
                       help="transformer width, a multiple of --n_heads (MoMask 384)")
    group.add_argument("--ff_size", type=positive_int, default=None, help="feed-forward width (MoMask 1024)")
    group.add_argument("--n_layers", type=positive_int, default=None, help="transformer layers (MoMask 8)")
    group.add_argument("--n_heads", type=positive_int, default=None,
                       help="attention heads, each latent_dim / n_heads wide (MoMask 6)")
    group.add_argument("--dropout", type=fraction_below_one, default=None, help="dropout (MoMask 0.2)")
    group.add_argument("--cond_drop_prob", type=fraction_below_one, default=None,
                       help=f"probability of dropping the text in training, for classifier-free guidance (default: "
                            f"the registry entry's, MoMask {default_cdp})")
    group.add_argument("--label_smoothing", type=fraction_below_one, default=None,
                       help="of the cross-entropy (MoMask 0): PyTorch's, eps/K to every class; MoMask's cal_loss "
                            "would give 1 - eps to the true class and eps/(K-1) to each other one")


def _add_validation_args(parser: argparse.ArgumentParser, cond_scale: float, time_steps: bool,
                         kit_scale: bool = False) -> None:
    group = parser.add_argument_group("validation (token loss and accuracy; FID with --need_evaluation)")
    group.add_argument("--val_batches", type=non_negative_int, default=0,
                       help="validation batches per evaluation (0: the whole val split)")
    if time_steps:
        group.add_argument("--time_steps", type=positive_int, default=18,
                           help="masked-generation steps of the --need_evaluation generation (MoMask 18)")
    group.add_argument("--cond_scale", "--cfg", dest="cond_scale", type=non_negative_float, default=None,
                       help=f"classifier-free guidance scale of the --need_evaluation generation (default "
                            f"{cond_scale:g}{', and 2 on kit, as MoMask' if kit_scale else ''})")
    group.add_argument("--evaluator_dir", type=str, default=None,
                       help="evaluator checkpoint or folder (default <checkpoints_dir>/<dataset_name>/text_mot_match)")
    group.add_argument("--glove_dir", type=str, default=project_path("glove"),
                       help="folder of our_vab_{data.npy,words.pkl,idx.pkl}, needed by evaluators using GloVe")


def _momask_defaults(parser: argparse.ArgumentParser) -> None:
    parser.set_defaults(batch_size=64, lr=2e-4, weight_decay=1e-5, warm_up_iter=2000, milestones=[50_000],
                        lr_decay=0.1, epoch=500, seed=3407)


def get_train_t2m_transformer_parser() -> argparse.ArgumentParser:
    """``train_t2m_transformer.py``: MoMask's masked transformer over the base-layer codes of a VQ / RVQ / FSQ run."""
    from models.mask_transformer import MASK_TRANSFORMERS

    parser = get_base_parser("Train MoMask's masked transformer on the base-layer codes of a frozen tokenizer.")
    parser.add_argument("--model", type=str, default="MoMask-Mask", choices=sorted(MASK_TRANSFORMERS),
                        help="masked-transformer registry entry")
    _add_tokenizer_args(parser)
    _add_arch_args(parser, default_cdp=0.1)
    add_train_mask_count_arg(parser.add_argument_group("training mask"), "MoMask",
                             "round(ratio * length) of each sample's tokens")
    _add_validation_args(parser, cond_scale=4.0, time_steps=True, kit_scale=True)
    add_text_encoder_args(parser)
    _momask_defaults(parser)
    return parser


def get_train_res_transformer_parser() -> argparse.ArgumentParser:
    """``train_res_transformer.py``: MoMask's residual transformer over layers 1..Q-1 of an RVQ run."""
    from models.mask_transformer import CODE_EMBEDDINGS
    from models.res_transformer import RES_TRANSFORMERS

    parser = get_base_parser("Train MoMask's residual transformer on the residual codes of a frozen RVQ tokenizer.")
    parser.add_argument("--model", type=str, default="MoMask-Res", choices=sorted(RES_TRANSFORMERS),
                        help="residual-transformer registry entry")
    _add_tokenizer_args(parser)
    _add_arch_args(parser, default_cdp=0.2)
    group = parser.add_argument_group("code embeddings")
    group.add_argument("--share_weight", action=argparse.BooleanOptionalAction, default=None,
                       help="tie each layer's output projection to the input embedding of the next layer (MoMask "
                            "--share_weight; default: on with learned embeddings, off with codebook embeddings)")
    group.add_argument("--code_embedding", type=str, default=None, choices=CODE_EMBEDDINGS,
                       help="learned: embedding tables trained from scratch (MoMask); codebook: the frozen RVQ "
                            "codebooks, so the input is the tokenizer's partial reconstruction (default: learned)")
    _add_validation_args(parser, cond_scale=2.0, time_steps=False)
    add_text_encoder_args(parser)
    _momask_defaults(parser)
    return parser


def model_overrides(args: argparse.Namespace) -> dict[str, object]:
    """Constructor overrides from the architecture flags that were given (the registry entry decides the rest)."""
    out: dict[str, object] = {}
    for flag, keyword in ARCH_FLAGS.items():
        value = getattr(args, flag, None)
        if value is not None:
            out[keyword] = value
    return out


def check_head_split(args: argparse.Namespace, sizes: dict[str, dict[str, Any]]) -> None:
    """Refuse a transformer width that the head count does not divide (each head attends over latent_dim / n_heads
    channels), before any data is read or the run folder written; ``sizes`` maps each registry entry to the sizes it
    builds (``MASK_TRANSFORMER_SIZES``), which stand in for the flags left out. Raises ValueError naming both flags,
    and the preset that set one."""
    def named(dest: str, key: str) -> tuple[int, str]:
        value = getattr(args, dest, None)
        if value is None:
            value = int(sizes[args.model][key])
            return value, f"{args.model}'s {key} {value} (no --{dest})"
        origin = option_origin(args, dest)
        return value, origin if origin != f"--{dest}" else f"--{dest} {value}"

    latent_dim, width = named("latent_dim", "latent_dim")
    heads, head_count = named("n_heads", "num_heads")
    if latent_dim % heads:
        raise ValueError(f"{head_count} does not divide {width}: each attention head takes latent_dim / n_heads "
                         f"channels; pick an --n_heads that divides the width, or a --latent_dim that is a multiple "
                         f"of it")
