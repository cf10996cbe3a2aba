"""The paper presets under options/configs/ hold the published hyper-parameters.

One row per preset: the options its script resolves (preset over the parser's defaults, so a default the preset relies
on is checked too) and the constructor arguments of the registry entry it builds (registry values over constructor
defaults, with the preset's architecture flags). Values are the reference implementations' (T2M-GPT README command,
MoMask README command and released model names, MARDM README and train scripts, MotionMillion's
train_tokenizer.sh); where a preset departs from them on purpose its YAML comment says why, and the row holds the
preset's value with that reason next to it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

import train_MARDM
from models.mardm import MARDM_MODELS
from models.mask_transformer import MASK_TRANSFORMERS
from models.res_transformer import RES_TRANSFORMERS
from models.tokenizers import build_tokenizer
from options import token_generator_options, tokenizer_options
from options.config import parse_with_config
from options.generator_options import get_train_mardm_parser
from options.token_generator_options import get_train_res_transformer_parser, get_train_t2m_transformer_parser
from options.tokenizer_options import get_train_ae_parser, get_train_vq_parser

CONFIGS = Path(__file__).resolve().parents[1] / "options" / "configs"

# The 1D-conv backbone every tokenizer shares (T2M-GPT / MoMask / MARDM: width 512, depth 3, dilation growth 3,
# stride 2, relu, no norm).
CONV = dict(down_t=2, stride_t=2, width=512, depth=3, dilation_growth_rate=3, activation="relu", norm=None,
            kernel_size=3)
# MoMask RVQ-VAE: rvq_nq6_dc512_nc512_noshare_qdp0.2, Gumbel code sampling at temperature 0.5, EMA 0.99.
MOMASK_RVQ = dict(num_quantizers=6, nb_code=512, code_dim=512, shared_codebook=False, quantize_dropout_prob=0.2,
                  sample_codebook_temp=0.5, mu=0.99, dropout=0.2, **CONV)
# MoMask RVQ optimisation (README command: gamma 0.05, batch 256, 50 epochs of every 64-frame window).
MOMASK_RVQ_TRAIN = dict(batch_size=256, epoch=50, max_iters=None, lr=2e-4, warm_up_iter=2000,
                        milestones=[150_000, 250_000], lr_decay=0.05, weight_decay=0.0, window_size=64,
                        window_mode="all", window_stride=1, recons_loss="l1_smooth", aux_loss_joints=0.5,
                        commit=0.02, seed=3407)
# MARDM's AE (train_AE.py and README for HumanML3D): the FSQ, LFQ and VQ autoencoders train with the same recipe.
MARDM_AE_TRAIN = dict(dataset_name="t2m_67", batch_size=256, epoch=50, max_iters=None, lr=2e-4, warm_up_iter=2000,
                      milestones=[150_000, 250_000], lr_decay=0.05, weight_decay=0.0, window_size=64,
                      window_mode="all", window_stride=1, recons_loss="l1_smooth", aux_loss_joints=1.0, feat_bias=1.0,
                      seed=3407)
# MARDM's train_MARDM.py for HumanML3D; validation generation with 18 steps and the dataset's guidance (cfg None).
MARDM_TRAIN = dict(dataset_name="t2m_67", batch_size=64, epoch=500, max_iters=None, lr=2e-4, weight_decay=1e-5,
                   warm_up_iter=2000, milestones=[50_000], lr_decay=0.1, ema_decay=0.9999, text_encoder="clip",
                   time_steps=18, cfg=None, seed=3407, train_mask_count="padded")
# MARDM-*-XL: 1 transformer layer of width 1024 (16 heads, ff 4096), DiffMLPs 16 x 1792, 4 draws per token; the
# training mask counted over the padded length, as MARDM's forward_loss.
MARDM_XL = dict(latent_dim=1024, ff_size=4096, num_layers=1, num_heads=16, dropout=0.2, cond_drop_prob=0.1,
                diffmlps_batch_mul=4, diffmlps_depth=16, diffmlps_width=1792, train_mask_count="padded")
SIT = dict(diffusion="sit", flow_solver="dopri5")  # SiT: adaptive dopri5 (atol 1e-6, rtol 1e-3)
# MoMask's masked and residual transformers: train_option.py defaults and the README's batch 64.
MOMASK_TRANSFORMER_TRAIN = dict(dataset_name="t2m", text_encoder="clip", batch_size=64, epoch=500, max_iters=None,
                                lr=2e-4, weight_decay=1e-5, warm_up_iter=2000, milestones=[50_000], lr_decay=0.1,
                                seed=3407)
MOMASK_TRANSFORMER = dict(latent_dim=384, ff_size=1024, num_layers=8, num_heads=6, dropout=0.2, label_smoothing=0.0)

# preset -> (parser, resolved options, registry constructor arguments)
PRESETS: dict[str, tuple[Any, dict[str, Any], dict[str, Any]]] = {
    # T2M-GPT README: --batch-size 256 --lr 2e-4 --total-iter 300000 --lr-scheduler 200000 --nb-code 512 --down-t 2
    # --depth 3 --dilation-growth-rate 3 --vq-act relu --quantizer ema_reset --loss-vel 0.5 --recons-loss l1_smooth;
    # defaults --window-size 64 --warm-up-iter 1000 --gamma 0.05 --commit 0.02 --mu 0.99 --weight-decay 0 --seed 123
    # --eval-iter 1000. feat_bias 1: the dataset's Mean/Std (the TM2T meta it reads is not shipped; YAML comment).
    "t2m_gpt_vq": (get_train_vq_parser,
                   dict(dataset_name="t2m", model="VQVAE", batch_size=256, max_iters=300_000, lr=2e-4,
                        warm_up_iter=1000, milestones=[200_000], lr_decay=0.05, weight_decay=0.0, window_size=64,
                        window_mode="random", recons_loss="l1_smooth", aux_loss_joints=0.5, commit=0.02,
                        feat_bias=1.0, seed=123, eval_every=1000),
                   dict(input_width=263, nb_code=512, code_dim=512, quantizer_type="ema_reset", mu=0.99, dropout=0.0,
                        **CONV)),
    "momask_rvq": (get_train_vq_parser,
                   dict(dataset_name="t2m", model="RVQVAE", feat_bias=25.0, **MOMASK_RVQ_TRAIN),
                   dict(input_width=263, **MOMASK_RVQ)),
    # The training mask counted over the padded length, as MoMask's MaskTransformer.forward.
    "momask_mask": (get_train_t2m_transformer_parser,
                    dict(model="MoMask-Mask", time_steps=18, cond_scale=None, train_mask_count="padded",
                         **MOMASK_TRANSFORMER_TRAIN),
                    dict(cond_drop_prob=0.1, train_mask_count="padded", **MOMASK_TRANSFORMER)),
    "momask_res": (get_train_res_transformer_parser,
                   dict(model="MoMask-Res", cond_scale=2.0, share_weight=True, code_embedding="learned",
                        **MOMASK_TRANSFORMER_TRAIN),
                   dict(cond_drop_prob=0.2, share_weight=True, code_embedding="learned", **MOMASK_TRANSFORMER)),
    "mardm_ae": (get_train_ae_parser, dict(model="AE_Model", **MARDM_AE_TRAIN),
                 dict(input_width=67, output_emb_width=512, dropout=0.2, **CONV)),
    "mardm_sit_xl": (get_train_mardm_parser, dict(model="MARDM-SiT-XL", ae_model="AE_Model", **MARDM_TRAIN),
                     dict(**MARDM_XL, **SIT)),
    # DDPM-XL: 50-step cosine schedule, epsilon prediction.
    "mardm_ddpm_xl": (get_train_mardm_parser, dict(model="MARDM-DDPM-XL", ae_model="AE_Model", **MARDM_TRAIN),
                      dict(diffusion="ddpm", diffusion_steps=50, **MARDM_XL)),
    "fsq_ae_high": (get_train_ae_parser, dict(model="FSQ_AE_High", **MARDM_AE_TRAIN),
                    dict(input_width=67, levels=[8, 8, 8, 5, 5, 5], code_dim=512, dropout=0.2, **CONV)),
    "fsq_mardm_sit_xl": (get_train_mardm_parser,
                         dict(model="FSQ-MARDM-SiT-XL", ae_model="FSQ_AE_High", **MARDM_TRAIN),
                         dict(**MARDM_XL, **SIT)),
    "vq_mardm_sit_xl": (get_train_mardm_parser,
                        dict(model="VQ-MARDM-SiT-XL", ae_model="VQ_AE_Model", **MARDM_TRAIN),
                        dict(**MARDM_XL, **SIT)),
    # LFQ (vector-quantize-pytorch defaults): entropy weight 0.1, diversity gamma 1; the commitment weight is 0.25,
    # not the reference's 0, after a measured code collapse (YAML comment).
    "lfq_ae": (get_train_ae_parser,
               dict(model="LFQ_AE", entropy_loss_weight=0.1, diversity_gamma=1.0, commitment_loss_weight=0.25,
                    **MARDM_AE_TRAIN),
               dict(input_width=67, nb_code=2 ** 13, code_dim=512, dropout=0.2, **CONV)),
    # MotionMillion train_tokenizer.sh: 4 GPUs x batch 64, lr 5e-5, 6M iterations, warm-up 48k, milestone 300k,
    # gamma 0.05, window 96, down_t 1, LayerNorm, FSQ 65536 -> levels [8,8,8,5,5,5], loss-vel 0.5, eval every 3000.
    # The milestone counts global steps (the reference's fired at 75k through accelerate; YAML comment).
    "motionmillion_fsq": (get_train_vq_parser,
                          dict(dataset_name="motionmillion", model="FSQ_MotionMillion", batch_size=256,
                               max_iters=6_000_000, lr=5e-5, warm_up_iter=48_000, milestones=[300_000],
                               lr_decay=0.05, weight_decay=0.0, window_size=96, window_mode="random",
                               recons_loss="l1_smooth", aux_loss_joints=0.5, commit=0.0, feat_bias=1.0,
                               eval_every=3000),
                          dict(input_width=272, levels=[8, 8, 8, 5, 5, 5], code_dim=512, dropout=0.0,
                               **{**CONV, "down_t": 1, "norm": "LN"})),
    # Project models on MoMask's RVQ recipe; the part-aware one keeps the dataset's Mean/Std (YAML comment).
    "part_aware_rvq": (get_train_vq_parser,
                       dict(dataset_name="t2m", model="PartAwareRVQ", feat_bias=1.0, **MOMASK_RVQ_TRAIN),
                       dict(per_part_dim=128, **MOMASK_RVQ)),
    # BEAT-X: one random window per clip (YAML comment), so the length is MoMask's ~360k steps, not 50 epochs.
    "beatx_body_part": (get_train_vq_parser,
                        dict(dataset_name="beatx", model="RVQVAE", body_part="whole",
                             **{**MOMASK_RVQ_TRAIN, "epoch": 50, "max_iters": 360_000, "window_mode": "random",
                                "aux_loss_joints": 0.0, "eval_every": 7200}),
                        dict(**{**MOMASK_RVQ, "nb_code": 1024, "code_dim": 128})),
}


def _parse(preset: str) -> Any:
    return parse_with_config(PRESETS[preset][0](), ["--config", str(CONFIGS / f"{preset}.yaml"), "--name", "x"])


def _model_args(args: Any) -> dict[str, Any]:
    """Constructor arguments of the registry entry the preset builds (on the meta device: no weights allocated)."""
    with torch.device("meta"):
        if args.model in MARDM_MODELS:
            target = {"FSQ-MARDM-SiT-XL": 6}.get(args.model, 512)
            overrides = {k: getattr(args, k) for k in train_MARDM.MODEL_FLAGS if getattr(args, k) is not None}
            return MARDM_MODELS[args.model](ae_dim=512, target_dim=target, text_dim=512, **overrides).model_args
        if args.model in MASK_TRANSFORMERS:
            return MASK_TRANSFORMERS[args.model](512, 512, 512,
                                                 **token_generator_options.model_overrides(args)).model_args
        if args.model in RES_TRANSFORMERS:
            return RES_TRANSFORMERS[args.model](512, 6, 512, 512, share_weight=args.share_weight,
                                                code_embedding=args.code_embedding,
                                                **token_generator_options.model_overrides(args)).model_args
        overrides = tokenizer_options.model_overrides(args)
        if args.model == "VQVAE":
            assert overrides.pop("num_quantizers") == 1  # train_vq.py: T2M-GPT's VQ-VAE is the one-layer case
        return build_tokenizer(args.model, **overrides).model_args


def test_every_shipped_paper_preset_has_a_row():
    shipped = {p.stem for p in CONFIGS.glob("*.yaml") if not p.stem.startswith("tiny_")}
    assert shipped == set(PRESETS)


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_preset_resolves_to_the_reference_values(preset):
    args = _parse(preset)
    expected = PRESETS[preset][1]
    got = {key: getattr(args, key) for key in expected}
    assert got == expected, {k: (got[k], v) for k, v in expected.items() if got[k] != v}


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_preset_builds_the_reference_architecture(preset):
    model_args = _model_args(_parse(preset))
    expected = PRESETS[preset][2]
    got = {key: model_args[key] for key in expected}
    assert got == expected, {k: (got[k], v) for k, v in expected.items() if got[k] != v}
