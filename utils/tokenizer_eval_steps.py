"""The longer steps of ``evaluation_AE.py``'s ``main()``: the feature columns a body-part tokenizer reads, the evaluator
the text-motion protocol runs with (or why it is skipped), the split the reconstruction metrics are taken on, and the
pass over it that takes them, with per-part errors (``utils/tokenizer_eval.py`` holds the pieces they are made of)."""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np
import torch
from tqdm import tqdm

from models.body_parts import part_feature_errors, part_indices, part_rotation_errors_deg
from models.loader import Tokenizer
from utils.batching import SequentialBatchSampler, epoch_batches
from utils.checkpoint import CheckpointError
from utils.conditions import ConditionLabels
from utils.dataset_specs import DatasetSpec
from utils.datasets import Text2MotionDataset, collate_text_motion
from utils.eval_protocol import evaluator_tag, renormalize
from utils.evaluator import EvaluatorWrapper, load_evaluator
from utils.normalization import DatasetError
from utils.paths import folder_flags
from utils.tokenizer_eval import EVALUATOR_STYLE_FORMATS, ReconstructionStats, batch_conditions

# Named after the script: what a user reads of its evaluation says ``evaluation_AE:``, whichever module logs it.
logger = logging.getLogger("evaluation_AE")

# (motion (B, T, D), lengths (B,), condition ids {name: (B,) long} or None) -> (reconstruction (B, T, D), codes).
Rebuild = Callable[[torch.Tensor, torch.Tensor, dict[str, torch.Tensor] | None], tuple[torch.Tensor, torch.Tensor]]


def body_part_columns(saved: dict[str, Any], spec: DatasetSpec, input_width: int,
                      path: str) -> tuple[dict[str, Any] | None, list[int]]:
    """(the ``body_part`` record of the checkpoint ``saved``, None for a whole-body tokenizer; the spec's feature
    columns the tokenizer reads). A tokenizer ``input_width`` features wide that does not take that many is refused,
    naming ``path``: most likely the wrong ``--dataset_name``."""
    body_part = saved.get("body_part")
    if body_part and list(body_part["indices"]) == list(range(spec.dim_pose)):
        body_part = None  # the whole body: evaluated as any full-width tokenizer, with every part's errors
    columns = list(body_part["indices"]) if body_part else list(range(spec.dim_pose))
    if input_width != len(columns):
        raise CheckpointError(f"{path}: the tokenizer takes {input_width} features but dataset "
                              f"{spec.name!r} has {len(columns)}"
                              f"{' in part ' + repr(body_part['name']) if body_part else ''}; wrong --dataset_name?")
    return body_part, columns


class ProtocolEvaluator(NamedTuple):
    """The evaluator the protocol runs with (None: skipped, ``skipped`` says why), the one an official T2M-GPT /
    MoMask file's statistics are read from (``stats_evaluator``, kept when the protocol is skipped), and the suffix the
    choice adds to the output files' tag (``tag``: ``_recon``, an ``_ev<hash>`` or empty)."""

    evaluator: EvaluatorWrapper | None
    stats_evaluator: EvaluatorWrapper | None
    skipped: str | None
    tag: str


def protocol_evaluator(cfg: argparse.Namespace, eval_name: str, statistics_format: str, *, converted: bool,
                       device: torch.device) -> ProtocolEvaluator:
    """Load the evaluator of ``eval_name`` (``--evaluator_dir``, else ``<checkpoints_dir>/<eval_name>/text_mot_match``)
    unless ``--no_protocol``. None where there is no usable one in the default place: the protocol is skipped with a
    warning that says how to train one. An error where the protocol is all that is asked for (``converted``: an
    ``--eval_dataset`` whose conversions would feed it), where ``--evaluator_dir`` names one that cannot be loaded, and
    for ``--no_protocol`` together with either of those flags."""
    default_evaluator = os.path.join(cfg.checkpoints_dir, eval_name, "text_mot_match")
    evaluator_dir = cfg.evaluator_dir or default_evaluator
    evaluator, skipped, tag = None, None, ""
    if cfg.no_protocol:
        if converted or cfg.evaluator_dir:
            raise ValueError(f"--no_protocol skips the protocol that "
                             f"{'--eval_dataset' if converted else '--evaluator_dir'} is for; "
                             f"leave one of them out")
        skipped, tag = "--no_protocol: the text-motion protocol was not asked for", "_recon"
    stats_evaluator = None  # an official T2M-GPT / MoMask file's statistics are its released evaluator's
    if cfg.no_protocol and statistics_format in EVALUATOR_STYLE_FORMATS:
        with contextlib.suppress(CheckpointError, FileNotFoundError):
            stats_evaluator = load_evaluator(evaluator_dir, eval_name, device, data_root=cfg.data_root)
    try:
        if not cfg.no_protocol:
            evaluator = load_evaluator(evaluator_dir, eval_name, device, data_root=cfg.data_root)
            # Scores under another evaluator than the dataset's own get files of their own.
            tag += evaluator_tag(cfg.evaluator_dir, default_evaluator)
    except (CheckpointError, FileNotFoundError) as e:
        train_one = (f"python train_evaluator.py --dataset_name {eval_name}"
                     f"{folder_flags(cfg.checkpoints_dir, cfg.data_root)}")
        if converted:  # the protocol is all that --eval_dataset asks for
            raise CheckpointError(f"--eval_dataset {eval_name}: no usable evaluator ({e}); place it or pass "
                                  f"--evaluator_dir, or train one with: {train_one}") from e
        if cfg.evaluator_dir:  # an evaluator asked for by name: a typo must not pass for "no evaluator here"
            raise CheckpointError(f"--evaluator_dir {cfg.evaluator_dir}: no usable evaluator ({e}); fix the path, "
                                  f"or leave the flag out to use {default_evaluator} where there is one") from e
        skipped = (f"no usable evaluator for {eval_name!r} ({e}); FID, Diversity, R-precision and matching "
                   f"score are skipped. Train one with: {train_one}")
        logger.warning(skipped)
    stats_evaluator = stats_evaluator or evaluator  # kept when the protocol is skipped later
    return ProtocolEvaluator(evaluator, stats_evaluator, skipped, tag)


def reconstruction_data(spec: DatasetSpec, split: str, mean: np.ndarray, std: np.ndarray,
                        data_root: str | None) -> Text2MotionDataset:
    """The ``split`` of ``spec`` normalised with ``mean``, ``std`` (D,); a dataset without captions gives every clip
    of the split, with a warning."""
    try:
        return Text2MotionDataset(spec, split, mean, std, data_root=data_root)
    except DatasetError as e:
        if e.kind != "no_captions":
            raise
        # Reconstruction needs no text: a dataset without captions (BEAT-X) is measured on every clip instead.
        logger.warning("%s. The reconstruction metrics use every clip of the split, without captions", e)
        return Text2MotionDataset(spec, split, mean, std, data_root=data_root, captions_optional=True)


def reconstruction_pass(data: Text2MotionDataset, rebuild: Rebuild, tokenizer: Tokenizer, spec: DatasetSpec, *,
                        tokenizer_stats: tuple[np.ndarray, np.ndarray], data_stats: tuple[np.ndarray, np.ndarray],
                        body_part: dict[str, Any] | None, columns: list[int], labels: ConditionLabels | None,
                        batch_size: int, seed: int, num_workers: int, device: torch.device) -> dict[str, Any]:
    """Reconstruct every clip of ``data`` once (``rebuild``, on ``device``) and return ``ReconstructionStats``'s
    summary with the per-part feature errors (``part_mae``) and, for SMPL-X rotations, rotation errors in degrees
    (``part_rotation_error_deg``), both frame-weighted.

    ``data`` is normalised with ``data_stats`` (mean, std), each (D,); the tokenizer reads and writes motion
    normalised with ``tokenizer_stats``, a body-part tokenizer (``body_part``) only its ``columns`` of it. A
    conditional tokenizer gets each clip's ids from ``labels``.
    """
    tok_mean, tok_std = tokenizer_stats
    data_mean, data_std = data_stats
    stats = ReconstructionStats(spec, tok_mean, tok_std, tokenizer.codebook_size, tokenizer.unit_length,
                                columns=columns if body_part else None)
    # Per-part errors: the evaluated part, or every body part of the spec for a whole-body tokenizer.
    parts = ({body_part["name"]: list(range(len(columns)))} if body_part else
             {name: part_indices(spec, name) for name in spec.body_parts if name != "whole"})
    part_sums = {name: [0.0, 0.0] for name in parts}  # feature MAE, rotation degrees (frame-weighted sums)
    # Every clip draws its caption, length and crop from its own seed, so the metrics do not depend on
    # --num_workers; dataset order keeps batch b on rows b * batch_size onwards (the clip labels below).
    sampler = SequentialBatchSampler(len(data), batch_size, seed)
    loader = epoch_batches(data, sampler, collate_text_motion, num_workers, pin_memory=False)
    for b, batch in enumerate(tqdm(loader, desc="reconstruction", total=len(sampler), dynamic_ncols=True)):
        motion = batch.motion
        if body_part:
            motion = renormalize(motion[..., columns], data_mean[columns], data_std[columns], tok_mean, tok_std)
        cond = None
        if labels is not None:
            rows = data.samples.rows[b * batch_size:b * batch_size + motion.shape[0]]
            cond = {k: v.to(device) for k, v in batch_conditions(labels, [data.index.clip_id(r) for r in rows]).items()}
        recon, codes = rebuild(motion.to(device), batch.lengths, cond)
        stats.update(motion, recon, batch.lengths, None if tokenizer.kind == "ae" else codes)
        if parts:
            valid = torch.arange(motion.shape[1])[None] < batch.lengths[:, None]
            mean_t, std_t = torch.as_tensor(tok_mean), torch.as_tensor(tok_std)
            gt_raw = (motion[valid] * std_t + mean_t)[None]
            rec_raw = (recon.cpu()[valid] * std_t + mean_t)[None]
            rotations = (part_rotation_errors_deg(rec_raw, gt_raw, parts) if spec.representation == "smplx_rot6d"
                         else dict.fromkeys(parts, 0.0))
            for name, error in part_feature_errors(rec_raw, gt_raw, parts).items():
                part_sums[name][0] += error * int(valid.sum())
                part_sums[name][1] += rotations[name] * int(valid.sum())
    recon_metrics = stats.summary()
    frames = max(recon_metrics["frames"], 1)
    recon_metrics["part_mae"] = {name: s[0] / frames for name, s in part_sums.items()}
    if spec.representation == "smplx_rot6d":
        recon_metrics["part_rotation_error_deg"] = {name: s[1] / frames for name, s in part_sums.items()}
    return recon_metrics
