"""Train MoMask's masked transformer on the base-layer codes of a frozen tokenizer (a VQ, RVQ or FSQ run of
train_vq.py, or an FSQ, LFQ or VQ autoencoder of train_AE.py; not the continuous AE).

Examples:
    python train_vq.py --config options/configs/tiny_vq.yaml --name RVQ_Tiny
    python train_t2m_transformer.py --config options/configs/tiny_momask.yaml --name MoMask_Tiny     # minutes on CPU
    python train_t2m_transformer.py --config options/configs/momask_mask.yaml --name t2m_nlayer8_nhead6_ld384_ff1024 \\
        --vq_name rvq_nq6 --text_encoder clip --clip_path ~/.cache/clip/ViT-B-32.pt
    python train_t2m_transformer.py --config options/configs/momask_mask.yaml --name mtrans --vq_name rvq_nq6 \\
        --need_evaluation --cache_tokens
    python train_t2m_transformer.py --config options/configs/momask_mask.yaml --name mtrans --is_continue

The tokenizer is found by ``--vq_name`` (``checkpoints/<dataset_name>/<vq_name>/model/net_best_fid.tar``, else
``net_best_loss.tar``, else ``latest.tar``) or ``--vq_ckpt``; its recorded Mean/Std normalise the motion. The run is
written to ``checkpoints/<dataset_name>/<name>/``: ``model/latest.tar`` (exact resume), ``model/net_best_acc.tar``
(best validation masked-token accuracy, as MoMask) or, with ``--need_evaluation``, ``model/net_best_fid.tar``,
TensorBoard events in ``model/``, ``opt.yaml`` and, with ``--cache_tokens``, the codes in ``tokens/``. Sample with
``python sample.py --name <name> [--res_name <residual run>]``.
"""

from __future__ import annotations

import argparse
import logging
import sys

import torch

from models.mask_transformer import MASK_TRANSFORMER_SIZES, MASK_TRANSFORMERS
from models.text_encoders import TextEncoder
from options.config import config_to_dict, option_origin, parse_with_config, resolve_max_iters, save_config
from options.token_generator_options import check_head_split, get_train_t2m_transformer_parser, model_overrides
from utils.cli import RESUME_TRAINING, run_script
from utils.dataset_specs import get_dataset_spec
from utils.datasets import Text2MotionDataset, collate_text_motion
from utils.engine import EngineConfig, TrainResult, check_run_start, train
from utils.eval_data import load_validation_evaluator
from utils.generation_momask import MoMaskBackend
from utils.generator_resume import check_resume_matches, check_resumed_settings
from utils.generator_stage import (
    dataset_captions,
    resolve_text_encoder,
    resume_records,
    resumed_tokenizer_ema,
    stage_device,
    text_encoder_record,
    tokenizer_from_command_line,
    tokenizer_statistics,
    warm_caption_cache,
)
from utils.launch_env import is_first_process
from utils.logging_utils import setup_logging
from utils.run_dir import RunDir
from utils.seed import set_seed
from utils.token_stage import (
    TokenLoss,
    cached_token_datasets,
    collate_text_tokens,
    load_token_tokenizer,
    make_token_generation_eval_fn,
    make_token_val_fn,
    resolve_vq_checkpoint,
    token_checkpoint_meta,
)

logger = logging.getLogger("train_t2m_transformer")


def main(args: argparse.Namespace, text_encoder: TextEncoder | None = None) -> TrainResult:
    """Train ``args.model``; ``text_encoder`` optionally supplies an already built encoder of kind
    ``--text_encoder`` (tests, notebooks). Returns the engine's ``TrainResult``."""
    # -----------------------------------------------------------------------------------------------------------------
    # setup: everything that can fail on bad flags fails before the run folder is written
    # -----------------------------------------------------------------------------------------------------------------
    setup_logging(hold=True)  # the run's train.log receives what set-up logs once the folder exists
    tokenizer_from_command_line(args, "vq")  # a typed --vq_ckpt over the preset's vq_name
    check_head_split(args, MASK_TRANSFORMER_SIZES)
    spec = get_dataset_spec(args.dataset_name, args.data_root)
    if args.cond_scale is None:  # the published guidance of the dataset (MoMask: 4, 2 on KIT-ML)
        args.cond_scale = MoMaskBackend.guidance(spec.name)
    run = RunDir(args.checkpoints_dir, args.dataset_name, args.name)
    check_run_start(run, args.is_continue)
    device = stage_device()
    ref = resolve_vq_checkpoint(args.checkpoints_dir, args.dataset_name, args.vq_name, args.vq_ckpt, args.vq_which)
    resumed = resume_records(run.latest_path, args.is_continue)
    check_resumed_settings(run.latest_path, resumed, config_to_dict(args))
    tokenizer = load_token_tokenizer(ref.path, spec, args.vq_model, device, role="mask", run_name=ref.name,
                                     use_ema=resumed_tokenizer_ema(resumed),
                                     vq_model_source=option_origin(args, "vq_model"))
    mean, std = tokenizer_statistics(tokenizer)
    encoder = resolve_text_encoder(args.text_encoder, args.clip_path, args.text_cache, device, prebuilt=text_encoder)
    evaluator, eval_loader = (load_validation_evaluator(args.evaluator_dir, args.checkpoints_dir, args.dataset_name,
                                                        spec, args.data_root, args.glove_dir, device)
                              if args.need_evaluation else (None, None))
    run.make_dirs()
    setup_logging(run.log_file)
    logger.info("tokenizer %s (%s, %s, K=%d, Q=%d) from %s; text encoder %s (%d-d)", ref.name, tokenizer.model_name,
                tokenizer.kind, tokenizer.codebook_size, tokenizer.num_quantizers, ref.path, encoder.name, encoder.dim)

    # -----------------------------------------------------------------------------------------------------------------
    # data: normalised with the tokenizer's statistics, lengths in whole tokens; codes on the fly or cached
    # -----------------------------------------------------------------------------------------------------------------
    train_set = Text2MotionDataset(spec, "train", mean, std, args.data_root, unit_length=tokenizer.unit_length)
    val_set = Text2MotionDataset(spec, "val", mean, std, args.data_root, unit_length=tokenizer.unit_length)
    warm_caption_cache(encoder, dataset_captions(train_set) + dataset_captions(val_set))
    if args.text_cache and is_first_process():
        encoder.save()
    collate = collate_text_motion
    if args.cache_tokens:
        train_set, val_set = cached_token_datasets(tokenizer, run, train_set, val_set,
                                                   write=is_first_process())
        collate = collate_text_tokens
    logger.info("%s: %d training and %d validation samples (%s codes)", spec.name, len(train_set), len(val_set),
                "cached" if args.cache_tokens else "on-the-fly")

    # -----------------------------------------------------------------------------------------------------------------
    # model
    # -----------------------------------------------------------------------------------------------------------------
    set_seed(args.seed)
    model = MASK_TRANSFORMERS[args.model](tokenizer.codebook_size, tokenizer.latent_dim, encoder.dim,
                                          **model_overrides(args))
    logger.info("%s: %.2fM parameters, args %s", args.model, sum(p.numel() for p in model.parameters()) / 1e6,
                model.model_args)

    # -----------------------------------------------------------------------------------------------------------------
    # train
    # -----------------------------------------------------------------------------------------------------------------
    # --train_mask_count padded counts over the padded length of every sample (49 tokens on HumanML3D), as MoMask does.
    loss_fn = TokenLoss(tokenizer, encoder, role="mask", padded_tokens=spec.max_motion_length // tokenizer.unit_length)
    val_loss_fn = make_token_val_fn(loss_fn, val_set, args.batch_size, args.val_batches, seed=args.seed,
                                    collate_fn=collate)
    gen_eval_fn = None
    if evaluator is not None:
        gen_eval_fn = make_token_generation_eval_fn(tokenizer, encoder, evaluator, eval_loader, mean, std, "mask",
                                                    args.cond_scale, args.time_steps, seed=args.seed)

    def val_fn(net: torch.nn.Module) -> dict[str, float]:
        metrics = val_loss_fn(net)
        if gen_eval_fn is not None:
            metrics.update(gen_eval_fn(net))
        return metrics

    meta = token_checkpoint_meta(args.model, model.model_args, spec, tokenizer, ref,
                                 text_encoder_record(encoder, args.clip_path), config_to_dict(args))
    if args.is_continue:
        check_resume_matches(run.latest_path, meta, resumed)
    save_config(args, run.config_path)  # only now, so that a refused resume leaves the run's opt.yaml as it was
    # MoMask keeps the best validation token accuracy (net_best_acc.tar), or the best FID when it evaluates.
    best = ("fid", "min") if args.need_evaluation else ("acc", "max")
    cfg = EngineConfig.from_namespace(args, max_iters=resolve_max_iters(args, len(train_set)), best_metric=best[0],
                                      best_mode=best[1])
    result = train(model, train_set, loss_fn, cfg, run, checkpoint_meta=meta, collate_fn=collate, val_fn=val_fn)
    logger.info("finished at %s", result.summary())
    return result


if __name__ == "__main__":
    run_script(lambda: main(parse_with_config(get_train_t2m_transformer_parser(), sys.argv[1:])),
               resume=RESUME_TRAINING)
