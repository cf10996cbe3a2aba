"""What ``evaluation_AE.py`` needs around the protocol: which checkpoint to evaluate, the statistics a tokenizer was
trained with, reconstruction in whole tokens, reconstruction errors and code usage (``ReconstructionStats``), bit
rate, and the printed summary."""

from __future__ import annotations

import argparse
import logging
import math
import os
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from models.loader import Tokenizer
from models.quantizers import code_counts
from utils.checkpoint import CheckpointError, check_matches
from utils.conditions import ConditionLabels, read_conditions, with_vocabularies
from utils.dataset_specs import DatasetSpec
from utils.evaluator import EvaluatorWrapper
from utils.metrics import calculate_mpjpe_per_sequence, mpjpe_per_frame
from utils.motion_process import features_to_joints
from utils.normalization import eval_normalization, load_mean_std, read_meta_statistics
from utils.run_dir import RunDir

logger = logging.getLogger(__name__)

BEST_FIRST = ("net_best_fid", "net_best_loss", "latest")
EVALUATOR_STYLE_FORMATS = ("t2m-gpt", "momask")  # trained with the evaluator's (feat_bias) statistics


def resolve_checkpoint(cfg: argparse.Namespace) -> tuple[str, str, str]:
    """(checkpoint path, run name, tag for the output files)."""
    if cfg.ckpt:
        path = cfg.ckpt
        if not os.path.isfile(path):
            raise CheckpointError(f"--ckpt: checkpoint not found: {path}")
        parts = os.path.abspath(path).split(os.sep)
        name = cfg.name or (parts[-3] if len(parts) >= 4 and parts[-2] == "model" else os.path.splitext(parts[-1])[0])
        return path, name, os.path.splitext(os.path.basename(path))[0]
    if not cfg.name:
        raise ValueError("pass --name (a run under --checkpoints_dir) or --ckpt (a checkpoint file)")
    run = RunDir(cfg.checkpoints_dir, cfg.dataset_name, cfg.name)
    model_dir = run.model_dir
    if not os.path.isdir(run.root):
        raise CheckpointError(f"no run {cfg.name} of dataset {cfg.dataset_name} under {cfg.checkpoints_dir} "
                              f"({run.root} does not exist); check --name, --dataset_name and --checkpoints_dir")
    candidates = [cfg.which_epoch.removesuffix(".tar")] if cfg.which_epoch else list(BEST_FIRST)  # as sample.py
    for stem in candidates:
        path = os.path.join(model_dir, f"{stem}.tar")
        if os.path.isfile(path):
            return path, cfg.name, stem
    found = sorted(f for f in os.listdir(model_dir) if f.endswith(".tar")) if os.path.isdir(model_dir) else []
    raise CheckpointError(f"no {' / '.join(c + '.tar' for c in candidates)} in {model_dir}; found {found or 'none'} "
                          "(pick one with --which_epoch)")


def official_run_meta(source: str) -> str | None:
    """The ``meta`` folder of the official run a checkpoint file sits in, or None: MoMask writes the statistics a
    tokenizer was trained with to ``<run>/meta/{mean,std}.npy`` beside ``<run>/model/<file>.tar``."""
    folder = os.path.dirname(os.path.abspath(source))
    meta = os.path.join(os.path.dirname(folder), "meta")
    if os.path.basename(folder) != "model" or not all(os.path.isfile(os.path.join(meta, f))
                                                       for f in ("mean.npy", "std.npy")):
        return None
    return meta


def recorded_statistics(tokenizer: Tokenizer, spec: DatasetSpec, cfg: argparse.Namespace,
                        evaluator: EvaluatorWrapper | None) -> tuple[np.ndarray, np.ndarray, str]:
    """(mean, std, where they came from): the statistics the tokenizer was trained with, each (D,).

    Ours record them. Official files, and runs imported from them without their statistics, do not:
    ``--ae_meta_dir`` (mean.npy, std.npy) when given, else a MoMask file's own run's ``meta`` folder
    (``official_run_meta``), else the convention of the official format (``convention_statistics``).
    """
    record = tokenizer.dataset
    if record is not None:
        check_matches(tokenizer.source, "dataset name", record.get("name"), spec.name)
        if record.get("mean") is not None and record.get("std") is not None:
            return (torch.as_tensor(record["mean"]).float().numpy(), torch.as_tensor(record["std"]).float().numpy(),
                    "checkpoint")
    meta_dir, where = cfg.ae_meta_dir, "--ae_meta_dir"
    if not meta_dir and tokenizer.source_format == "momask":
        meta_dir, where = official_run_meta(tokenizer.source), "the run's meta folder"
    if meta_dir:
        mean, std = read_meta_statistics(meta_dir, where, spec.dim_pose)
        return mean, std, f"{where} {meta_dir}"
    if tokenizer.statistics_format == "ours":
        raise CheckpointError(f"{tokenizer.source}: the checkpoint records no mean/std and no official format whose "
                              "convention would give them; pass --ae_meta_dir (a folder with mean.npy and std.npy)")
    return convention_statistics(tokenizer.statistics_format, tokenizer.source, spec, cfg.data_root, evaluator)


def convention_statistics(source_format: str, source: str, spec: DatasetSpec, data_root: str | None,
                          evaluator: EvaluatorWrapper | None) -> tuple[np.ndarray, np.ndarray, str]:
    """(mean, std, where) an official tokenizer of ``source_format`` was trained with, each (D,).

    T2M-GPT / MoMask were trained with the evaluator's statistics (their VQ meta is the evaluator meta), MARDM /
    MotionMillion with the dataset's Mean/Std. ``source`` names the file in the warning given when the evaluator's
    statistics are needed and ``evaluator`` is None.
    """
    if source_format in EVALUATOR_STYLE_FORMATS:
        if evaluator is not None and evaluator.released:
            return evaluator.mean, evaluator.std, f"the evaluator's ({source_format} convention)"
        # An evaluator trained here normalises as eval_normalization does, not as the released meta the official
        # file was trained with.
        why = ("no evaluator statistics to read" if evaluator is None else
               f"the evaluator {evaluator.path} was trained here, not released with the official files")
        mean, std = eval_normalization(*load_mean_std(spec, data_root), spec)
        logger.warning("%s: %s; using the dataset Mean/Std with the feature bias (the released metas divide those "
                       "dims by about 25, not 5: pass --ae_meta_dir, or --meta_dir at import)", source, why)
        return mean, std, f"dataset Mean/Std with the evaluator feature bias ({source_format} convention)"
    mean, std = load_mean_std(spec, data_root)
    return mean, std, f"dataset Mean/Std ({source_format} convention)"


def reconstruct(tokenizer: Tokenizer, motion: torch.Tensor,
                cond: dict[str, torch.Tensor] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Normalised motion (B, T, D) -> (reconstruction (B, T, D), codes): padded to whole tokens, cropped back.
    ``cond``: a conditional tokenizer's condition ids ``{name: (B,) long}``."""
    frames = motion.shape[1]
    pad = (-frames) % tokenizer.unit_length
    codes = tokenizer.encode(F.pad(motion, (0, 0, 0, pad)), cond)
    return tokenizer.decode(codes, cond)[:, :frames], codes


def reconstruct_each(tokenizer: Tokenizer, motion: torch.Tensor, lengths: torch.Tensor,
                     cond: dict[str, torch.Tensor] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """``reconstruct`` one motion at a time, each cut to its length (B,) first, as T2M-GPT's evaluation does; the
    padded batch at once (``reconstruct``, MoMask's and MARDM's way) lets the convolutions near each motion's end read
    the padding. Returns the reconstruction (B, T, D), zero past each length, and the codes (B, N, ...), zero past
    each motion's tokens."""
    tokens = -(-motion.shape[1] // tokenizer.unit_length)
    recon, codes = torch.zeros_like(motion), None
    for i, length in enumerate(lengths.tolist()):
        one = None if cond is None else {name: ids[i:i + 1] for name, ids in cond.items()}
        rec, code = reconstruct(tokenizer, motion[i:i + 1, :length], one)
        recon[i, :length] = rec[0]
        if codes is None:
            codes = code.new_zeros((motion.shape[0], tokens, *code.shape[2:]))
        codes[i, :code.shape[1]] = code[0]
    return recon, codes


def evaluation_conditions(record: dict[str, Any], path: str, root: str) -> ConditionLabels:
    """The labels of every clip (``<root>/conditions.json``) under the vocabularies a conditional tokenizer was
    trained with (its checkpoint's ``conditions`` record), so each clip is encoded with the ids training gave it.
    A value training never saw is dropped, i.e. encoded as unknown (id 0), and listed in a warning (counted over the
    whole file, not only the evaluated split)."""
    trained = ConditionLabels.from_dict(record, source=f"{path} (conditions)")
    labels, unseen = with_vocabularies(read_conditions(root, trained.names), trained)
    if unseen:
        logger.warning("%s: labels the tokenizer was not trained with are encoded as unknown: %s", labels.source,
                       "; ".join(f"{label} ({len(ids)} clips, e.g. {ids[0]})" for label, ids in unseen.items()))
    return labels


def batch_conditions(labels: ConditionLabels, clip_ids: list[str]) -> dict[str, torch.Tensor]:
    """``{name: (B,) long}`` ids of ``clip_ids`` (0, unknown, where a clip has no label)."""
    ids = torch.stack([labels.ids(clip_id) for clip_id in clip_ids])
    return {name: ids[:, c] for c, name in enumerate(labels.names)}


def bits_per_second(codebook_size: int | None, fps: float, unit_length: int, layers: int = 1) -> float | None:
    """``log2(K) * tokens per second * layers``; None for a continuous autoencoder (``codebook_size`` None)."""
    if not codebook_size:
        return None
    return math.log2(codebook_size) * fps / unit_length * layers


class ReconstructionStats:
    """Accumulates reconstruction errors of a tokenizer over batches (all on valid frames only).

    - MPJPE on joints recovered from de-normalised features, root-aligned (joint 0 subtracted per frame), reported
      in millimetres (through ``spec.metres_per_unit``: KIT-ML's positions already are millimetres): ``mpjpe_mm``
      averages over all valid frames (MoMask / MARDM), ``mpjpe_seq_mm`` per sequence then over sequences
      (MotionMillion).
    - Mean absolute error per feature group of ``spec.layout``, in feature units and in normalised units.
    - Code usage per residual layer from the indices of the valid tokens (``length // unit_length`` per sample):
      perplexity, fraction of the codebook used, dead codes. Nothing for a continuous autoencoder.

    ``columns`` (a body-part tokenizer): the spec's feature indices the arrays hold. Each group's error is then taken
    over its columns within the part (groups outside it are left out), and there is no MPJPE: joints cannot be
    recovered from part of the features.
    """

    def __init__(self, spec: DatasetSpec, mean: np.ndarray, std: np.ndarray, codebook_size: int | None,
                 unit_length: int, columns: list[int] | None = None) -> None:
        self.spec = spec
        self.recover_joints = columns is None and spec.representation != "smplx_rot6d"
        positions = {c: i for i, c in enumerate(columns if columns is not None else range(spec.dim_pose))}
        self.group_columns = {g.name: [positions[c] for c in range(g.start, g.stop) if c in positions]
                              for g in spec.layout}
        self.group_columns = {name: cols for name, cols in self.group_columns.items() if cols}
        self.mean = np.asarray(mean, dtype=np.float64)
        self.std = np.asarray(std, dtype=np.float64)
        self.codebook_size = codebook_size
        self.unit_length = unit_length
        self.frame_errors: list[np.ndarray] = []
        self.seq_errors: list[np.ndarray] = []
        self.group_abs = dict.fromkeys(self.group_columns, 0.0)
        self.group_abs_norm = dict.fromkeys(self.group_columns, 0.0)
        self.frames = 0
        self.counts: np.ndarray | None = None
        self.tokens = 0

    def update(self, gt: torch.Tensor, recon: torch.Tensor, lengths: torch.Tensor,
               codes: torch.Tensor | None = None) -> None:
        """gt, recon (B, T, D) normalised with (mean, std); lengths (B,); codes (B, N) or (B, N, Q) long indices."""
        gt_n, rec_n = gt.detach().double().cpu().numpy(), recon.detach().double().cpu().numpy()
        lens = lengths.reshape(-1).cpu().numpy()
        valid = np.arange(gt_n.shape[1])[None] < lens[:, None]
        gt_raw, rec_raw = gt_n * self.std + self.mean, rec_n * self.std + self.mean
        for name, cols in self.group_columns.items():
            self.group_abs[name] += float(np.abs(gt_raw[..., cols] - rec_raw[..., cols])[valid].mean(-1).sum())
            self.group_abs_norm[name] += float(np.abs(gt_n[..., cols] - rec_n[..., cols])[valid].mean(-1).sum())
        self.frames += int(valid.sum())
        if self.recover_joints:
            gt_joints = features_to_joints(gt_raw, self.spec)
            rec_joints = features_to_joints(rec_raw, self.spec)
            self.frame_errors.append(mpjpe_per_frame(rec_joints, gt_joints, lens))
            self.seq_errors.append(calculate_mpjpe_per_sequence(rec_joints, gt_joints, lens))
        if codes is not None and self.codebook_size:
            codes = codes.detach().cpu()
            layers = codes[..., None] if codes.dim() == 2 else codes
            token_valid = torch.arange(layers.shape[1])[None] < torch.as_tensor(lens // self.unit_length)[:, None]
            counts = np.stack([code_counts(layers[..., q][token_valid], self.codebook_size).numpy()
                               for q in range(layers.shape[-1])])
            self.counts = counts if self.counts is None else self.counts + counts
            self.tokens += int(token_valid.sum())

    def summary(self) -> dict[str, Any]:
        """Plain values: mpjpe_mm, mpjpe_seq_mm (None without joint recovery), per-group errors, codebook usage."""
        out: dict[str, Any] = {"frames": self.frames, "mpjpe_mm": None, "mpjpe_seq_mm": None}
        if self.frame_errors:
            to_mm = 1000.0 * self.spec.metres_per_unit
            out["mpjpe_mm"] = to_mm * float(np.concatenate(self.frame_errors).mean())
            out["mpjpe_seq_mm"] = to_mm * float(np.concatenate(self.seq_errors).mean())
        n = max(self.frames, 1)
        out["group_mae"] = {k: v / n for k, v in self.group_abs.items()}
        out["group_mae_normalized"] = {k: v / n for k, v in self.group_abs_norm.items()}
        out["codebook"] = None
        if self.counts is not None:
            prob = self.counts / np.maximum(self.counts.sum(-1, keepdims=True), 1)
            perplexity = np.exp(-(prob * np.log(prob + 1e-7)).sum(-1))  # T2M-GPT's definition (eps 1e-7)
            used = (self.counts > 0).sum(-1)
            out["codebook"] = {"codebook_size": int(self.codebook_size), "tokens": self.tokens,
                               "layers": [{"layer": q, "perplexity": float(perplexity[q]),
                                           "usage": float(used[q] / self.codebook_size),
                                           "used_codes": int(used[q]), "dead_codes": int(self.codebook_size - used[q])}
                                          for q in range(self.counts.shape[0])]}
        return out


def reconstruction_table(result: dict) -> str:
    """The text summary ``evaluation_AE.py`` prints of its result: MPJPE, per-group and per-part errors, code usage."""
    rec = result["reconstruction"]
    mpjpe = rec["mpjpe_mm"]
    lines = [f"{result['model_name']} ({result['kind']}) on {result['dataset']} {result['split']}, "
             f"{rec['frames']} frames",
             f"  MPJPE per frame     {mpjpe:.2f} mm" if mpjpe is not None else "  MPJPE               n/a",
             f"  MPJPE per sequence  {rec['mpjpe_seq_mm']:.2f} mm" if mpjpe is not None else ""]
    lines += [f"  MAE {group:<16}{value:.5f} ({rec['group_mae_normalized'][group]:.4f} normalised)"
              for group, value in rec["group_mae"].items()]
    rotation = rec.get("part_rotation_error_deg", {})
    lines += [f"  part {name:<15}MAE {value:.5f}" + (f", rotation {rotation[name]:.2f} deg" if rotation else "")
              for name, value in rec.get("part_mae", {}).items()]
    if rec["codebook"]:
        for layer in rec["codebook"]["layers"]:
            lines.append(f"  layer {layer['layer']}: perplexity {layer['perplexity']:.1f}, usage {layer['usage']:.3f} "
                         f"({layer['used_codes']}/{rec['codebook']['codebook_size']}), dead {layer['dead_codes']}")
    bps = result["bits_per_second"]
    lines.append(f"  bits per second     {bps:.1f}" if bps is not None else "  bits per second     n/a (continuous)")
    return "\n".join(line for line in lines if line)
