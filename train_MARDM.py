"""Train a masked autoregressive diffusion generator on a frozen tokenizer: MARDM on continuous AE latents, FSQ-MARDM
on FSQ grid coordinates, VQ-MARDM on VQ code vectors, LFQ-MARDM on the signs of an LFQ tokenizer.

Examples:
    python train_AE.py --config options/configs/tiny_ae.yaml --name FSQ_Tiny
    python train_MARDM.py --config options/configs/tiny_mardm.yaml --name FSQ_MARDM_Tiny       # minutes on CPU
    python train_MARDM.py --config options/configs/mardm_sit_xl.yaml --name MARDM_SiT_XL       # MARDM's recipe
    python train_MARDM.py --config options/configs/fsq_mardm_sit_xl.yaml --name FSQ_MARDM_SiT_XL --need_evaluation
    accelerate launch --multi_gpu --num_processes 4 train_MARDM.py --config options/configs/mardm_ddpm_xl.yaml \\
        --name MARDM_DDPM_XL
    python train_MARDM.py --config options/configs/mardm_sit_xl.yaml --name MARDM_SiT_XL --is_continue

The tokenizer is found by ``--ae_name`` (``checkpoints/<dataset_name>/<ae_name>/model/net_best_fid.tar``, else
``net_best_loss.tar``, else ``latest.tar``) or ``--ae_ckpt``; its registry family must fit ``--model`` and its
recorded Mean/Std normalise the motion. The run is written to ``checkpoints/<dataset_name>/<name>/``:
``model/latest.tar`` (weights, EMA weights, optimizer, exact resume), ``model/net_best_loss.tar`` (best validation
loss) or, with ``--need_evaluation``, ``model/net_best_fid.tar`` (best validation FID of the EMA weights), TensorBoard
events in ``model/`` and ``opt.yaml``. Sampling and evaluation use the EMA weights.
"""

from __future__ import annotations

import argparse
import logging
import sys

import torch

from models.mardm import MARDM_MODELS, ignored_head_args
from models.text_encoders import TextEncoder
from options.config import (
    config_to_dict,
    given_in_config,
    given_on_command_line,
    option_origin,
    parse_with_config,
    resolve_max_iters,
    save_config,
)
from options.generator_options import get_train_mardm_parser
from utils.cli import RESUME_TRAINING, run_script
from utils.dataset_specs import get_dataset_spec
from utils.datasets import Text2MotionDataset, collate_text_motion
from utils.engine import EngineConfig, TrainResult, check_run_start, train
from utils.eval_data import load_validation_evaluator
from utils.generation_backends import MARDMBackend
from utils.generator_resume import check_resume_matches
from utils.generator_stage import (
    GeneratorLoss,
    dataset_captions,
    generator_checkpoint_meta,
    load_generator_tokenizer,
    make_generation_eval_fn,
    make_val_loss_fn,
    resolve_text_encoder,
    resolve_tokenizer_checkpoint,
    resume_records,
    resumed_tokenizer_ema,
    stage_device,
    text_encoder_record,
    token_dims,
    tokenizer_from_command_line,
    tokenizer_statistics,
    warm_caption_cache,
)
from utils.launch_env import is_first_process
from utils.logging_utils import setup_logging
from utils.run_dir import RunDir
from utils.seed import set_seed

logger = logging.getLogger("train_MARDM")

# Flags passed to the registry entry as overrides.
MODEL_FLAGS = ("diffmlps_batch_mul", "cond_drop_prob", "flow_solver", "flow_steps", "train_mask_count")


def model_overrides(args: argparse.Namespace) -> dict[str, object]:
    """The ``MODEL_FLAGS`` that are set, as overrides of ``--model``'s registry entry. A head flag the model would
    record but never use (``models.mardm.ignored_head_args``: the ODE solver's on a DDPM head, steps for dopri5) is
    refused when typed; one set by the ``--config`` preset, which may serve both heads, is passed on as before and
    logged."""
    overrides = {k: getattr(args, k) for k in MODEL_FLAGS if getattr(args, k) is not None}
    from_preset = given_in_config(args) - given_on_command_line(args)
    for key, why in ignored_head_args(args.model, overrides).items():
        if key not in from_preset:
            raise ValueError(f"--{key} {overrides[key]}: {why}")
        logger.info("%s does not apply to %s: %s", option_origin(args, key), args.model, why)
    return overrides


def main(args: argparse.Namespace, text_encoder: TextEncoder | None = None) -> TrainResult:
    """Train ``args.model``; ``text_encoder`` optionally supplies an already built encoder of kind
    ``--text_encoder`` (tests, notebooks). Returns the engine's ``TrainResult``."""
    # -----------------------------------------------------------------------------------------------------------------
    # setup: everything that can fail on bad flags fails before the run folder is written
    # -----------------------------------------------------------------------------------------------------------------
    setup_logging(hold=True)  # the run's train.log receives what set-up logs once the folder exists
    tokenizer_from_command_line(args, "ae")  # a typed --ae_ckpt over the preset's ae_name
    spec = get_dataset_spec(args.dataset_name, args.data_root)
    if args.cfg is None:  # the published guidance of the dataset (MARDM: 4.5, 2.5 on KIT-ML)
        args.cfg = MARDMBackend.guidance(spec.name)
    overrides = model_overrides(args)
    run = RunDir(args.checkpoints_dir, args.dataset_name, args.name)
    check_run_start(run, args.is_continue)
    device = stage_device()
    ref = resolve_tokenizer_checkpoint(args.checkpoints_dir, args.dataset_name, args.ae_name, args.ae_ckpt,
                                       which=args.ae_which)
    resumed = resume_records(run.latest_path, args.is_continue)
    tokenizer = load_generator_tokenizer(ref.path, args.model, spec, args.ae_model, device,
                                         ae_model_source=option_origin(args, "ae_model"),
                                         use_ema=resumed_tokenizer_ema(resumed))
    mean, std = tokenizer_statistics(tokenizer)
    encoder = resolve_text_encoder(args.text_encoder, args.clip_path, args.text_cache, device, prebuilt=text_encoder)
    evaluator, eval_loader = (load_validation_evaluator(args.evaluator_dir, args.checkpoints_dir, args.dataset_name,
                                                        spec, args.data_root, args.glove_dir, device)
                              if args.need_evaluation else (None, None))
    run.make_dirs()
    setup_logging(run.log_file)
    logger.info("tokenizer %s (%s, %s) from %s; text encoder %s (%d-d)", ref.name, tokenizer.model_name,
                tokenizer.kind, ref.path, encoder.name, encoder.dim)

    # -----------------------------------------------------------------------------------------------------------------
    # data: normalised with the tokenizer's statistics, lengths in whole tokens of the tokenizer
    # -----------------------------------------------------------------------------------------------------------------
    train_set = Text2MotionDataset(spec, "train", mean, std, args.data_root, unit_length=tokenizer.unit_length)
    val_set = Text2MotionDataset(spec, "val", mean, std, args.data_root, unit_length=tokenizer.unit_length)
    warm_caption_cache(encoder, dataset_captions(train_set) + dataset_captions(val_set))
    if args.text_cache and is_first_process():
        encoder.save()
    logger.info("%s: %d training and %d validation samples", spec.name, len(train_set), len(val_set))

    # -----------------------------------------------------------------------------------------------------------------
    # model
    # -----------------------------------------------------------------------------------------------------------------
    set_seed(args.seed)
    dims = token_dims(tokenizer)
    model = MARDM_MODELS[args.model](dims.ae_dim, dims.target_dim, encoder.dim, **overrides)
    logger.info("%s: %.2fM parameters, args %s", args.model, sum(p.numel() for p in model.parameters()) / 1e6,
                model.model_args)

    # -----------------------------------------------------------------------------------------------------------------
    # train
    # -----------------------------------------------------------------------------------------------------------------
    # --train_mask_count padded counts over the padded length of every sample (49 tokens on HumanML3D), as MARDM does.
    loss_fn = GeneratorLoss(tokenizer, encoder, padded_tokens=spec.max_motion_length // tokenizer.unit_length)
    val_loss_fn = make_val_loss_fn(loss_fn, val_set, args.batch_size, args.val_batches, seed=args.seed)
    gen_eval_fn = None
    if evaluator is not None:
        gen_eval_fn = make_generation_eval_fn(tokenizer, encoder, evaluator, eval_loader, mean, std, args.time_steps,
                                              args.cfg, seed=args.seed)

    def val_fn(net: torch.nn.Module) -> dict[str, float]:
        metrics = val_loss_fn(net)
        if gen_eval_fn is not None:
            metrics.update(gen_eval_fn(net))
        return metrics

    meta = generator_checkpoint_meta(args.model, model.model_args, spec, tokenizer, ref,
                                     text_encoder_record(encoder, args.clip_path), config_to_dict(args))
    if args.is_continue:
        check_resume_matches(run.latest_path, meta, resumed)
    save_config(args, run.config_path)  # only now, so that a refused resume leaves the run's opt.yaml as it was
    cfg = EngineConfig.from_namespace(args, max_iters=resolve_max_iters(args, len(train_set)),
                                      best_metric="fid" if args.need_evaluation else "loss", best_mode="min")
    result = train(model, train_set, loss_fn, cfg, run, checkpoint_meta=meta, collate_fn=collate_text_motion,
                   val_fn=val_fn)
    logger.info("finished at %s", result.summary())
    return result


if __name__ == "__main__":
    run_script(lambda: main(parse_with_config(get_train_mardm_parser(), sys.argv[1:])), resume=RESUME_TRAINING)
