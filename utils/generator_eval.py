"""The generator side of ``evaluation_MARDM.py``: the tag its evaluation files carry, the family options of the
multimodality repeats, and the loaded generator as the evaluation's ``MotionSource`` (the counterpart of
``utils.saved_motions.replay_source``, which replays saved motions instead). Which checkpoint a run names is
``utils.generator_checkpoints.resolve_run``, shared with ``sample.py``."""

from __future__ import annotations

import argparse
import logging
import os

import torch

from options.eval_generator_options import check_family_flags, family_sampling_options
from utils.checkpoint import CheckpointError
from utils.eval_protocol import protocol_tag
from utils.eval_report import run_folder_of
from utils.generation import load_generator
from utils.generation_backends import GeneratorBackend, SamplingSettings
from utils.generation_momask import resolve_residual_run
from utils.generator_checkpoints import resolve_run
from utils.run_dir import RunDir
from utils.saved_motions import KIND_MM, MotionSource

# Named after the script: what a user reads of its evaluation says ``evaluation_MARDM:``, whichever module logs it.
logger = logging.getLogger("evaluation_MARDM")


def output_tag(cfg: argparse.Namespace, path: str, weights: str, settings: SamplingSettings, options: dict,
               residual: dict | None = None, tokenizer: dict | None = None) -> str:
    """``<checkpoint>[_ema]_ts<steps>_cfg<scale>[_temp<t>][_res-<run>[-<file>]][_tok-<sha>][_<option><value>...]
    [_nosnap][_nomm|_mm<mm_sampling>]`` plus ``protocol_tag``'s suffix (split, seed, batch size, multimodality away
    from the defaults) for the output file names (options: the family options given on the command line). The
    residual's file is named when it is not the one of the generator's name (``--res_ckpt .../net_best_fid.tar``
    beside a ``latest.tar``), and a tokenizer given with ``--tokenizer_path`` by its SHA-256 prefix."""
    stem = os.path.splitext(os.path.basename(path))[0]
    tag = f"{stem}{'_ema' if weights == 'ema' else ''}"
    tag += f"_ts{settings.time_steps}_cfg{settings.cfg:g}"
    if settings.temperature != 1.0:
        tag += f"_temp{settings.temperature:g}"
    if residual is not None:
        parts = os.path.abspath(residual["checkpoint"]).split(os.sep)
        res_stem = os.path.splitext(parts[-1])[0]
        if len(parts) >= 3 and parts[-2] == "model":
            tag += f"_res-{parts[-3]}" + (f"-{res_stem}" if res_stem != stem else "")
        else:
            tag += f"_res-{res_stem}"
    if cfg.tokenizer_path and tokenizer is not None:
        tag += f"_tok-{tokenizer['sha256'][:8]}"
    short = {"topk_filter_thres": "topk", "sampling": "", "res_cond_scale": "rcfg", "head_steps": "hs",
             "head_solver": ""}
    for name, value in options.items():
        tag += f"_{short.get(name, name)}{value:g}" if isinstance(value, float) else f"_{short.get(name, name)}{value}"
    tag += ("_nosnap" if cfg.no_snap else "") + ("" if cfg.cal_mm else "_nomm")
    if cfg.cal_mm and cfg.mm_sampling:
        tag += f"_mm{cfg.mm_sampling}"  # chosen: files of their own (the default's are MoMask's)
    return tag + protocol_tag(cfg.split, cfg.seed, cfg.eval_batch_size,
                              (cfg.mm_batches, cfg.mm_repeats) if cfg.cal_mm else None)


def multimodality_options(cfg: argparse.Namespace, backend: type[GeneratorBackend], options: dict) -> dict:
    """The family options the multimodality repeats are generated with: ``options``, but for a family whose published
    evaluation draws them otherwise (``backend.mm_sampling``: MoMask's Gumbel-max) with ``--mm_sampling`` (default
    that draw) as their ``sampling`` option."""
    if backend.mm_sampling is None:
        if cfg.mm_sampling is not None:
            raise ValueError(f"--mm_sampling is for MoMask generators; {backend.family} generators sample the "
                             "multimodality repeats as every other batch")
        return options
    return {**options, "sampling": cfg.mm_sampling or backend.mm_sampling}


def generator_source(cfg: argparse.Namespace) -> MotionSource:
    """Load the generator of ``--name`` / ``--ckpt`` and generate with the sampling flags: the source's
    ``produce(kind, batch)`` gives the motion (B, T, D) normalised with the generator's statistics and its lengths
    (B,), for the batch's captions and GT lengths."""
    path, name, dataset_name = resolve_run(cfg.ckpt, cfg.name, cfg.dataset_name, cfg.checkpoints_dir, cfg.which_epoch)
    res_run = resolve_residual_run(cfg.checkpoints_dir, dataset_name, cfg.res_name, cfg.res_ckpt)
    options = family_sampling_options(cfg)
    generator = load_generator(path, use_ema=not cfg.no_ema, device=torch.device(cfg.device),
                               text_encoder=cfg.text_encoder, text_encoder_path=cfg.text_encoder_path,
                               tokenizer_path=cfg.tokenizer_path, res_run=res_run, res_which=cfg.which_epoch)
    check_family_flags(options, generator.backend.family, generator.backend.sampling_options)
    # The guidance scale's flag is --cfg (the field's name; cfg itself is the parsed config); None: the family's.
    sampling = generator.sampling_settings(cfg.time_steps, cfg.cfg, cfg.temperature, not cfg.no_snap, **options)
    # Only a --dataset_name given is checked: the folder above a --ckpt run (what finds a --res_name run beside it)
    # may be no dataset at all, a copy of the run put elsewhere.
    if cfg.dataset_name and generator.spec.name != cfg.dataset_name:
        raise CheckpointError(f"{path}: the generator was trained on dataset {generator.spec.name!r} but "
                              f"--dataset_name is {cfg.dataset_name!r}")
    dataset_name = generator.spec.name
    # Results go to the run named by --name, else next to the --ckpt file's own run.
    run_root = (not cfg.name and run_folder_of(path)) or RunDir(cfg.checkpoints_dir, dataset_name, name).root
    settings = {**sampling.to_dict(), "lengths": "GT (m_length // unit_length tokens)",
                "unit_length": generator.unit_length}
    mm_options = multimodality_options(cfg, type(generator.backend), options)
    if cfg.cal_mm and mm_options != options:
        settings["mm_sampling"] = mm_options["sampling"]
    meta = {"checkpoint": generator.info["checkpoint"], "checkpoint_sha256": generator.info["checkpoint_sha256"],
            "generator": generator.info, "sampling": settings}
    residual = generator.info.get("residual")
    title = (f"{generator.info['model_name']}{' + ' + residual['model_name'] if residual else ''} "
             f"({generator.info['weights']} weights of {os.path.basename(path)}), {dataset_name} {cfg.split}: "
             f"time_steps {sampling.time_steps}, cfg {sampling.cfg:g}, temperature {sampling.temperature:g}"
             f"{'' if sampling.snap else ', no snapping'}")
    logger.info("evaluating %s (%s weights): %s, multimodality %s", path, generator.info["weights"],
                sampling.to_dict(), cfg.cal_mm)

    def produce(kind: int, batch) -> tuple[torch.Tensor, torch.Tensor]:
        # The protocol seeds the global RNGs per replication; generation draws from them (no private generator).
        out = generator.generate(batch.captions, batch.m_lengths, time_steps=sampling.time_steps, cfg=sampling.cfg,
                                 temperature=sampling.temperature, snap=sampling.snap,
                                 **(mm_options if kind == KIND_MM else options))
        return out.features_normalised, out.lengths

    return MotionSource(dataset_name, os.path.join(run_root, "eval"),
                        output_tag(cfg, path, generator.info["weights"], sampling, options, residual,
                                   generator.info["tokenizer"]),
                        cfg.which_epoch if not cfg.ckpt else os.path.basename(path), meta, generator.mean,
                        generator.std, title, produce,
                        # What the settings leave to the model, resolved (MARDM: its head's solver and steps); for the
                        # report, outside the meta that keys the evaluation, so earlier replications still resume.
                        sampler=generator.backend.sampler(sampling))

