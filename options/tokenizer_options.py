"""Flags of the tokenizer stages (``train_AE.py``, ``train_vq.py``), on top of the shared base parser."""

from __future__ import annotations

import argparse

from models.fsq import MAX_LEVEL
from options.base_options import get_base_parser
from options.config import (
    fraction_below_one,
    int_between,
    non_negative_float,
    non_negative_int,
    positive_float,
    positive_int,
    probability,
)

RECONS_LOSSES = ("l1_smooth", "l1", "mse")
WINDOW_EPOCHS = ("random", "all")  # training window modes of utils.datasets.MotionWindowDataset
DEFAULT_COMMIT = 0.02  # T2M-GPT / MoMask


def _add_common_tokenizer_args(parser: argparse.ArgumentParser) -> None:
    data = parser.add_argument_group("tokenizer data and loss")
    data.add_argument("--window_size", type=positive_int, default=None,
                      help="frames per training window (default: the dataset spec's, 64 for HumanML3D)")
    data.add_argument("--window_mode", type=str, default="random", choices=WINDOW_EPOCHS,
                      help="what an --epoch is: random = one random window per clip (T2M-GPT / MotionMillion); all = "
                           "every window at --window_stride (MoMask / MARDM with stride 1: about 80x more steps per "
                           "epoch on HumanML3D)")
    data.add_argument("--window_stride", type=positive_int, default=1,
                      help="frames between the starts of consecutive windows of a clip with --window_mode all "
                           "(an error with --window_mode random)")
    data.add_argument("--feat_bias", type=positive_float, default=1.0,
                      help="divide the std of the root and foot-contact feature groups by this before training, so "
                           "those dims weigh more in the loss; 1 uses the dataset's Mean/Std (MARDM, MotionMillion; "
                           "the only value for datasets without those groups, BEAT-X). "
                           "MoMask trains on HumanML3D with 25 (its feat_bias 5, applied twice: the statistics the "
                           "Guo et al. evaluator ships)")
    data.add_argument("--recons_loss", type=str, default="l1_smooth", choices=RECONS_LOSSES,
                      help="reconstruction loss over all features")
    data.add_argument("--aux_loss_joints", "--loss_vel", dest="aux_loss_joints", type=non_negative_float, default=None,
                      help="weight of the joint-POSITION term on the dataset's position slice (MARDM calls it "
                           "--aux_loss_joints, T2M-GPT/MoMask --loss_vel although it is no velocity)")
    data.add_argument("--loss_joint_vel", type=non_negative_float, default=0.0,
                      help="weight of the joint-velocity term (first differences of the position slice)")
    data.add_argument("--commit", type=non_negative_float, default=DEFAULT_COMMIT,
                      help="weight of the codebook commitment loss (VQ / RVQ; an LFQ tokenizer weighs its own terms "
                           "with --entropy_loss_weight and --commitment_loss_weight, and is trained with its "
                           "auxiliary loss unscaled)")
    data.add_argument("--evaluator_dir", type=str, default=None,
                      help="evaluator for --need_evaluation (default: <checkpoints_dir>/<dataset_name>/text_mot_match)")
    data.add_argument("--glove_dir", type=str, default=None,
                      help="official GloVe files, when the evaluator was trained with them")
    data.add_argument("--val_batches", type=non_negative_int, default=50,
                      help="validation batches per evaluation (reconstruction loss, MPJPE, code usage; 0: the "
                           "whole val split)")

    arch = parser.add_argument_group("architecture overrides (default: the registry entry's values)")
    arch.add_argument("--width", type=positive_int, default=None, help="conv channels of encoder and decoder")
    arch.add_argument("--depth", type=positive_int, default=None, help="residual blocks per resolution")
    arch.add_argument("--down_t", type=non_negative_int, default=None, help="number of stride-2 temporal downsamplings")
    arch.add_argument("--dilation_growth_rate", type=positive_int, default=None, help="dilation growth in Resnet1D")
    arch.add_argument("--output_emb_width", type=positive_int, default=None, help="latent width of the continuous AE")
    arch.add_argument("--code_dim", type=positive_int, default=None,
                      help="width of code vectors / latent before the FSQ or LFQ")
    arch.add_argument("--nb_code", type=positive_int, default=None,
                      help="codebook size of VQ codebooks; LFQ: a power of 2, K = 2^d for d signs per token")
    arch.add_argument("--levels", type=int_between(2, MAX_LEVEL), nargs="+", default=None,
                      help="FSQ levels per dimension")
    arch.add_argument("--entropy_loss_weight", type=non_negative_float, default=None,
                      help="LFQ: weight of the entropy penalty (per-token entropy minus --diversity_gamma times the "
                           "entropy of the batch-mean assignment; default 0.1, MAGVIT-v2)")
    arch.add_argument("--diversity_gamma", type=non_negative_float, default=None,
                      help="LFQ: weight of the batch (codebook) entropy inside the penalty (default 1)")
    arch.add_argument("--commitment_loss_weight", type=non_negative_float, default=None,
                      help="LFQ: weight of mse(pre-quantization value, sg(sign code)) (default 0)")
    arch.add_argument("--inv_temperature", type=positive_float, default=None,
                      help="LFQ: inverse temperature of the soft assignment the entropy penalty reads (default 100, "
                           "vector-quantize-pytorch's)")
    arch.add_argument("--mu", type=fraction_below_one, default=None,
                      help="EMA decay of VQ codebooks, in [0, 1) (T2M-GPT / MoMask 0.99; at 1 the codes would never "
                           "move towards the latents assigned to them)")
    arch.add_argument("--kmeans_init", action=argparse.BooleanOptionalAction, default=None,
                      help="VQ / RVQ: initialise each codebook (each residual layer on its own residual) by k-means "
                           "on the first training batch, with EMA statistics of the clusters' sizes, instead of "
                           "copying the batch's leading rows (T2M-GPT / MoMask)")
    arch.add_argument("--kmeans_iters", type=positive_int, default=None,
                      help="k-means iterations of --kmeans_init (default 10)")
    arch.add_argument("--rotation_trick", action=argparse.BooleanOptionalAction, default=None,
                      help="VQ / RVQ: pass the gradient to the encoder through the rotation and rescaling that map "
                           "each latent onto its code (Fifty et al. 2024) instead of straight through (T2M-GPT / "
                           "MoMask)")
    arch.add_argument("--norm", type=str, default=None, choices=["LN", "GN", "BN"], help="normalisation in blocks")
    arch.add_argument("--activation", type=str, default=None, choices=["relu", "silu", "gelu"],
                      help="activation in blocks")
    arch.add_argument("--dropout", type=fraction_below_one, default=None, help="dropout inside the residual blocks")


def get_train_ae_parser() -> argparse.ArgumentParser:
    """``train_AE.py``: MARDM's continuous AE, the FSQ and LFQ autoencoders and the VQ ablation (defaults: MARDM
    AE)."""
    from models.tokenizers import AE_MODELS

    parser = get_base_parser("Train a motion autoencoder (AE_Model, FSQ_AE_*, LFQ_AE*, VQ_AE_Model).")
    parser.add_argument("--model", type=str, default="AE_Model", choices=sorted(AE_MODELS),
                        help="autoencoder registry entry")
    _add_common_tokenizer_args(parser)
    parser.set_defaults(aux_loss_joints=1.0, lr=2e-4, warm_up_iter=2000, milestones=[150_000, 250_000],
                        lr_decay=0.1, batch_size=256, epoch=50)
    return parser


def get_train_vq_parser() -> argparse.ArgumentParser:
    """``train_vq.py``: T2M-GPT VQ-VAE (``--num_quantizers 1``) and MoMask RVQ-VAE (defaults: MoMask)."""
    from models.part_aware import PART_AWARE_MODELS
    from models.tokenizers import VQ_MODELS

    parser = get_base_parser("Train a VQ-VAE (T2M-GPT), a residual VQ-VAE (MoMask), the MotionMillion FSQ or the "
                             "conditional part-aware RVQ-VAE.")
    parser.add_argument("--model", type=str, default=None, choices=sorted({**VQ_MODELS, **PART_AWARE_MODELS}),
                        help="tokenizer registry entry (default: VQVAE when --num_quantizers is 1, else RVQVAE)")
    parser.add_argument("--num_quantizers", type=positive_int, default=None,
                        help="residual layers Q (1 without --model: T2M-GPT's VQ-VAE)")
    parser.add_argument("--quantize_dropout_prob", type=probability, default=None,
                        help="probability of dropping trailing residual layers in training (MoMask 0.2)")
    parser.add_argument("--shared_codebook", action=argparse.BooleanOptionalAction, default=None,
                        help="one codebook shared by all residual layers")
    parser.add_argument("--quantizer", type=str, default=None,
                        choices=["ema_reset", "ema", "reset", "orig"], help="VQ codebook update rule (T2M-GPT)")
    parser.add_argument("--body_part", type=str, default=None,
                        help="train on one body part of the dataset spec (beatx: upper, lower, hands, face, whole); "
                             "the tokenizer's input width is the part's feature count (not with the part-aware "
                             "models, which split the whole vector themselves)")
    part_aware = parser.add_argument_group("conditional part-aware RVQ-VAE (--model PartAwareRVQ*)")
    part_aware.add_argument("--per_part_dim", type=positive_int, default=None, help="width of each part token")
    part_aware.add_argument("--spatial_layers", type=positive_int, default=None,
                            help="layers of the spatial transformer")
    part_aware.add_argument("--conditions", type=str, nargs="*", default=[],
                            help="condition names read from <data_root>/conditions.json (e.g. species gender)")
    part_aware.add_argument("--cond_drop_prob", type=fraction_below_one, default=0.1,
                            help="with --conditions: probability that a training window's conditions all count as "
                                 "unknown, and otherwise that each one does, so the unknown id (a missing label, or "
                                 "no conditions given) is trained; 0 turns it off")
    _add_common_tokenizer_args(parser)
    parser.set_defaults(aux_loss_joints=0.5, lr=2e-4, warm_up_iter=2000, milestones=[150_000, 250_000],
                        lr_decay=0.1, batch_size=256, epoch=50)
    return parser


ARCH_FLAGS = ("width", "depth", "down_t", "dilation_growth_rate", "output_emb_width", "code_dim", "nb_code", "levels",
              "entropy_loss_weight", "diversity_gamma", "commitment_loss_weight", "inv_temperature", "mu",
              "kmeans_init", "kmeans_iters", "rotation_trick", "norm", "activation", "dropout", "num_quantizers",
              "quantize_dropout_prob", "shared_codebook", "quantizer", "per_part_dim", "spatial_layers")
RENAMED = {"quantizer": "quantizer_type"}  # flag name -> constructor keyword


def model_overrides(args: argparse.Namespace) -> dict:
    """The architecture flags the user set, as constructor keywords (None means: keep the registry value)."""
    return {RENAMED.get(k, k): getattr(args, k) for k in ARCH_FLAGS if getattr(args, k, None) is not None}
