"""Flags of the generator stages (``train_MARDM.py``, ``train_length_estimator.py``), on top of the base parser."""

from __future__ import annotations

import argparse

from options.base_options import get_base_parser
from options.config import fraction_below_one, int_at_least, non_negative_float, non_negative_int, positive_int
from utils.paths import DEFAULT_CLIP_PATH, project_path

# Files a generator may take from its tokenizer run (--ae_which / --vq_which): "best" is the first of the others that
# exists, in this order; each other one names that file.
TOKENIZER_WHICH = ("best", "net_best_fid", "net_best_loss", "latest")

TEXT_ENCODER_CHOICES = ("minilm", "clip")


def add_train_mask_count_arg(group: argparse._ArgumentGroup, reference: str, length_rule: str) -> None:
    """``--train_mask_count``: how a training step counts the tokens it masks (``reference`` names the code whose
    own rule "padded" is; ``length_rule`` says what "length" masks)."""
    from models.mask_schedule import TRAINING_MASK_COUNTS

    group.add_argument("--train_mask_count", type=str, default=None, choices=TRAINING_MASK_COUNTS,
                       help=f"how a training step counts the tokens it masks at a drawn ratio: length, "
                            f"{length_rule} (the registry default: training masks as generation does); padded, "
                            f"round(ratio * padded length) with the padded positions then dropped, as {reference}'s "
                            f"code does (the published recipes' presets set it)")


def add_text_encoder_args(parser: argparse.ArgumentParser) -> None:
    """``--text_encoder``, ``--clip_path`` and ``--text_cache``: which frozen encoder turns captions into vectors."""
    group = parser.add_argument_group("text encoder (frozen, never saved with the model)")
    group.add_argument("--text_encoder", type=str, default="minilm", choices=TEXT_ENCODER_CHOICES,
                       help="minilm: all-MiniLM-L6-v2 (384-d, ships with the environment); clip: OpenAI CLIP "
                            "ViT-B/32 text tower (512-d, as MoMask and MARDM), read from --clip_path")
    group.add_argument("--clip_path", type=str, default=project_path(DEFAULT_CLIP_PATH),
                       help="OpenAI's ViT-B-32.pt (or a state dict with its keys); bpe_simple_vocab_16e6.txt.gz must "
                            f"lie next to it. Read for --text_encoder clip (default: {DEFAULT_CLIP_PATH}, under "
                            "$FSQ_MARDM_HOME when set)")
    group.add_argument("--text_cache", type=str, default=None,
                       help="optional .npz file that keeps the caption embeddings between runs (read if present, "
                            "written after the captions are encoded; refused when written by another encoder or other "
                            "weights of this one)")


def get_train_mardm_parser() -> argparse.ArgumentParser:
    """``train_MARDM.py``: MARDM / FSQ-MARDM / VQ-MARDM / LFQ-MARDM on a frozen tokenizer (defaults: MARDM's
    HumanML3D recipe)."""
    from models.mardm import MARDM_MODELS
    from models.tokenizers import TOKENIZERS

    parser = get_base_parser("Train a masked autoregressive diffusion generator (MARDM, FSQ-MARDM, VQ-MARDM, "
                             "LFQ-MARDM).")
    group = parser.add_argument_group("generator")
    group.add_argument("--model", type=str, default="MARDM-SiT-XL", choices=sorted(MARDM_MODELS),
                       help="generator registry entry; MARDM-* needs an AE tokenizer, FSQ-MARDM-* an FSQ one, "
                            "VQ-MARDM-* a VQ one, LFQ-MARDM-* an LFQ one")
    group.add_argument("--ae_name", type=str, default=None,
                       help="tokenizer run under <checkpoints_dir>/<dataset_name>/<ae_name>/model/ (its --ae_which "
                            "file)")
    group.add_argument("--ae_which", type=str, default="best", choices=TOKENIZER_WHICH,
                       help="file of the --ae_name run: best (net_best_fid.tar, else net_best_loss.tar, else "
                            "latest.tar) or that file (MARDM's presets: latest, as MARDM trains on its AE's)")
    group.add_argument("--ae_ckpt", type=str, default=None, help="tokenizer checkpoint file instead of --ae_name")
    group.add_argument("--ae_model", type=str, default=None, choices=sorted(TOKENIZERS),
                       help="expected tokenizer registry name; a checkpoint of another model is an error")
    group.add_argument("--diffmlps_batch_mul", type=positive_int, default=None,
                       help="draws of (t, noise) per masked token per step (default: the registry entry's, 4 for XL)")
    group.add_argument("--cond_drop_prob", type=fraction_below_one, default=None,
                       help="probability of dropping the text in training, for classifier-free guidance "
                            "(default: the registry entry's, 0.1)")
    group.add_argument("--flow_solver", type=str, default=None, choices=["dopri5", "euler", "heun"],
                       help="ODE solver of SiT heads at generation (default: the registry entry's, adaptive dopri5 as "
                            "MARDM; a fixed-step solver bounds the sampling cost); refused for DDPM heads")
    group.add_argument("--flow_steps", type=positive_int, default=None,
                       help="steps of the fixed-step euler/heun solvers (default: the registry entry's, 50); refused "
                            "for dopri5, which chooses its own, and for DDPM heads")
    add_train_mask_count_arg(group, "MARDM", "round(ratio * length) of each sample's tokens")
    group.add_argument("--val_batches", type=non_negative_int, default=0,
                       help="validation-loss batches per evaluation (0: the whole val split)")

    gen = parser.add_argument_group("validation generation (--need_evaluation)")
    gen.add_argument("--time_steps", type=positive_int, default=18, help="masked-generation steps")
    gen.add_argument("--cfg", type=non_negative_float, default=None,
                     help="classifier-free guidance scale (default: MARDM's, 4.5, and 2.5 on kit)")
    gen.add_argument("--evaluator_dir", type=str, default=None,
                     help="evaluator checkpoint or folder (default <checkpoints_dir>/<dataset_name>/text_mot_match)")
    gen.add_argument("--glove_dir", type=str, default=project_path("glove"),
                     help="folder of our_vab_{data.npy,words.pkl,idx.pkl}, needed by evaluators using GloVe")

    add_text_encoder_args(parser)
    parser.set_defaults(batch_size=64, lr=2e-4, weight_decay=1e-5, warm_up_iter=2000, milestones=[50_000],
                        lr_decay=0.1, ema_decay=0.9999, epoch=500, seed=3407)
    return parser


def get_train_length_estimator_parser() -> argparse.ArgumentParser:
    """``train_length_estimator.py``: caption embedding -> token-length class (MoMask / MARDM ``LengthEstimator``)."""
    from models.length_estimator import MIN_HIDDEN_DIM

    parser = get_base_parser("Train the text-to-length estimator used to sample motion lengths from captions.")
    group = parser.add_argument_group("length estimator")
    group.add_argument("--unit_length", type=int, default=None,
                       help="frames per token; a class is a token count (default: the dataset spec's, 4 for t2m)")
    group.add_argument("--hidden_dim", type=int_at_least(MIN_HIDDEN_DIM), default=512,
                       help=f"width of the first layer (later ones halve it; at least {MIN_HIDDEN_DIM}, so that the "
                            f"last one has two features)")
    group.add_argument("--dropout", type=fraction_below_one, default=0.2, help="dropout between the layers")
    add_text_encoder_args(parser)
    parser.set_defaults(name="length_estimator", batch_size=64, lr=1e-4, weight_decay=0.0, warm_up_iter=0,
                        milestones=[], lr_decay=1.0, epoch=50, seed=3407)
    return parser
