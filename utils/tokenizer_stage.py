"""What ``train_AE.py`` and ``train_vq.py`` share: window data, the loss, validation and the checkpoint record.

The scripts decide *what* to build (which registry entry, which flags); this module and ``utils.engine`` decide *how*
to train it. Tokenizers are trained on z-normalised features with the dataset's own Mean/Std (``--feat_bias`` divides
the std of the root and foot-contact groups, as T2M-GPT and MoMask train), which every checkpoint records; evaluation
de-normalises with them and re-normalises with the evaluator's statistics.
"""

from __future__ import annotations

import argparse
import logging
import os
from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from models.lfq import LFQ
from models.quantizers import perplexity_from_counts
from models.tokenizers import ConvAutoencoder
from utils.checkpoint import CheckpointError, check_matches, file_sha256, load_checkpoint, resumed_model_args
from utils.conditions import UNKNOWN, ConditionedBatch, ConditionLabels, with_vocabularies
from utils.dataset_specs import DatasetSpec
from utils.datasets import MotionWindowDataset
from utils.losses import tokenizer_loss
from utils.motion_process import features_to_joints
from utils.normalization import feat_bias_normalization, load_mean_std

logger = logging.getLogger(__name__)

LossFn = Callable[[nn.Module, Tensor], tuple[Tensor, dict[str, Tensor]]]
TermsFn = Callable[[Tensor, Any], tuple[Tensor, dict[str, Tensor]]]


class WindowData(NamedTuple):
    """Training and validation windows plus the statistics they were normalised with (``(D,)`` arrays)."""

    train: MotionWindowDataset
    val: MotionWindowDataset
    mean: np.ndarray
    std: np.ndarray


def load_window_data(spec: DatasetSpec, window_size: int | None, data_root: str | None = None,
                     mode: str = "random", stride: int = 1, feat_bias: float = 1.0) -> WindowData:
    """Training windows of the train split; the first window of each val clip (deterministic validation).

    ``mode`` decides what an epoch is: ``"random"``, one random window per clip (T2M-GPT / MotionMillion); ``"all"``,
    every window whose start is a multiple of ``stride`` (MoMask / MARDM train on every window, stride 1; a stride
    other than 1 with ``"random"`` is a ValueError). ``feat_bias`` divides the std of the root and foot-contact groups
    (1: the dataset's Mean/Std as they are).
    """
    if mode not in ("random", "all"):
        raise ValueError(f"window mode must be 'random' or 'all', got {mode!r}")
    if stride < 1:
        raise ValueError(f"--window_stride must be >= 1, got {stride}")
    if mode == "random" and stride != 1:
        # One random window per clip has no stride; accepting it would train on something else than was asked.
        raise ValueError(f"--window_stride {stride} applies to --window_mode all only; --window_mode random takes one "
                         f"random window per clip")
    mean, std = feat_bias_normalization(*load_mean_std(spec, data_root), spec, feat_bias, "--feat_bias")
    train = MotionWindowDataset(spec, "train", mean, std, window_size, data_root, mode=mode,
                                stride=stride if mode == "all" else None)
    val = MotionWindowDataset(spec, "val", mean, std, window_size, data_root, mode="first")
    logger.info("%s: %d training %s, %d validation windows of %d frames", spec.name, len(train),
                "clips (one random window each)" if mode == "random" else f"windows (stride {stride})", len(val),
                train.window_size)
    return WindowData(train, val, mean, std)


def make_loss_terms(spec: DatasetSpec, args: argparse.Namespace, position: slice | None = None,
                    lfq: LFQ | None = None) -> TermsFn:
    """``terms(motion, out) -> (loss, logs)`` of the model's output ``out`` for ``motion (B, T, D)`` with the flags'
    loss weights; ``position`` overrides the spec's joint-position slice (a body part's own columns).

    ``lfq``: the quantizer of an LFQ tokenizer, whose auxiliary loss carries its own weights: it is added unscaled
    (``--commit`` does not apply) and logged as ``commit``, with the entropies of training steps as
    ``entropy_sample`` and ``entropy_codebook``."""
    target = position if position is not None else spec
    commit = 1.0 if lfq is not None else args.commit

    def terms(motion: Tensor, out: Any) -> tuple[Tensor, dict[str, Tensor]]:
        loss, logs = tokenizer_loss(out.recon, motion, out, target, recons_loss=args.recons_loss,
                                    w_pos=args.aux_loss_joints, w_vel=args.loss_joint_vel, commit=commit)
        if lfq is not None and lfq.training and lfq.last_entropy is not None:
            logs.update(entropy_sample=lfq.last_entropy.per_sample, entropy_codebook=lfq.last_entropy.codebook)
        return loss, logs

    return terms


def make_loss_fn(spec: DatasetSpec, args: argparse.Namespace, position: slice | None = None,
                 lfq: LFQ | None = None) -> LossFn:
    """``loss_fn(model, batch) -> (loss, logs)``: the model's forward on ``batch`` (motion ``(B, T, D)`` or a
    ``ConditionedBatch``), then ``make_loss_terms``' terms."""
    terms = make_loss_terms(spec, args, position, lfq)

    def loss_fn(model: nn.Module, batch: Tensor | ConditionedBatch) -> tuple[Tensor, dict[str, Tensor]]:
        return terms(*_forward(model, batch))

    return loss_fn


def _forward(model: nn.Module, batch: Tensor | ConditionedBatch) -> tuple[Tensor, Any]:
    """(motion, model output) of a plain or a conditioned batch."""
    if isinstance(batch, ConditionedBatch):
        return batch.motion, model(batch.motion, cond=batch.cond)
    return batch, model(batch)


def _joints(features: Tensor, mean: Tensor, std: Tensor, spec: DatasetSpec) -> Tensor | None:
    """De-normalised features -> joints ``(B, T, J, 3)``, or None where the representation has no joint recovery or
    the features are one body part's columns."""
    if spec.representation == "smplx_rot6d" or features.shape[-1] != spec.dim_pose:
        return None
    return features_to_joints(features * std + mean, spec)


@torch.no_grad()
def reconstruction_metrics(model: ConvAutoencoder, loader: torch.utils.data.DataLoader, spec: DatasetSpec,
                           mean: np.ndarray, std: np.ndarray, terms_fn: TermsFn,
                           max_batches: int | None = None) -> dict[str, float]:
    """Mean loss terms (over windows: a batch counts for its size), MPJPE (mm, root-aligned, per frame) and code usage
    over ``loader``'s windows: ``code_usage`` is the fraction of codes used and ``code_perplexity`` the perplexity of
    the code histogram of all the windows (means over layers; the ``perplexity`` term is the mean of the batches'),
    and a residual quantizer adds ``code_usage_q<q>`` and ``code_perplexity_q<q>`` per layer."""
    device = next(model.parameters()).device
    mean_t = torch.as_tensor(mean, device=device)
    std_t = torch.as_tensor(std, device=device)
    quantizer = getattr(model, "quantizer", None)
    sums: dict[str, float] = {}
    codes: list[Tensor] = []  # (B * N, Q) code indices per batch
    err_sum, frames, batches, windows = 0.0, 0, 0, 0
    for batch in loader:
        if isinstance(batch, ConditionedBatch):
            batch = ConditionedBatch(batch.motion.to(device), {k: v.to(device) for k, v in batch.cond.items()})
        else:
            batch = batch.to(device)
        motion, out = _forward(model, batch)  # one forward for the loss terms and the metrics
        _, logs = terms_fn(motion, out)
        # The terms are means over the batch; weighted by its size, a smaller last batch counts for what it holds.
        for k, v in logs.items():
            sums[k] = sums.get(k, 0.0) + float(v) * motion.shape[0]
        windows += motion.shape[0]
        recon = out.recon
        if not out.indices_or_latents.is_floating_point():
            indices = out.indices_or_latents
            codes.append(indices.reshape(-1, indices.shape[-1] if indices.ndim == 3 else 1))
        gt_joints, rec_joints = _joints(motion, mean_t, std_t, spec), _joints(recon, mean_t, std_t, spec)
        if gt_joints is not None:
            gt_joints = gt_joints - gt_joints[..., :1, :]
            rec_joints = rec_joints - rec_joints[..., :1, :]
            err_sum += float((gt_joints - rec_joints).norm(dim=-1).mean(dim=-1).sum())
            frames += gt_joints.shape[0] * gt_joints.shape[1]
        batches += 1
        if max_batches and batches >= max_batches:
            break
    metrics = {k: v / max(windows, 1) for k, v in sums.items()}
    if frames:
        metrics["mpjpe_mm"] = 1000.0 * spec.metres_per_unit * err_sum / frames
    if codes and quantizer is not None:
        # Counted from the indices rather than with quantizer.code_usage(), which all-reduces under
        # torch.distributed: validation runs on the main process only, so the other processes would never join.
        per_layer = torch.cat(codes).unbind(-1)
        counts = torch.stack([torch.bincount(c[c >= 0], minlength=quantizer.codebook_size) for c in per_layer])
        active = counts.gt(0).float().mean(-1)  # (Q,)
        perplexity = perplexity_from_counts(counts)  # (Q,): of all val windows' codes, not a batch's
        metrics["code_usage"] = float(active.mean())
        metrics["code_perplexity"] = float(perplexity.mean())
        if len(active) > 1:  # the mean over RVQ layers hides a collapsed layer, so each is logged as well
            metrics.update({f"code_usage_q{q}": float(a) for q, a in enumerate(active)})
            metrics.update({f"code_perplexity_q{q}": float(p) for q, p in enumerate(perplexity)})
    return metrics


def make_val_fn(data: WindowData, spec: DatasetSpec, terms_fn: TermsFn, batch_size: int,
                max_batches: int, collate_fn: Callable | None = None) -> Callable[[nn.Module], dict[str, float]]:
    """Validation on the val windows: reconstruction loss terms, MPJPE (mm) and code usage."""
    loader = torch.utils.data.DataLoader(data.val, batch_size=batch_size, shuffle=False, collate_fn=collate_fn)

    def val_fn(model: nn.Module) -> dict[str, float]:
        return reconstruction_metrics(model, loader, spec, data.mean, data.std, terms_fn, max_batches)

    return val_fn


def make_fid_val_fn(val_fn: Callable[[nn.Module], dict[str, float]], evaluator: Any, eval_loader: Any,
                    mean: np.ndarray, std: np.ndarray,
                    seed: int = 3407) -> Callable[[nn.Module], dict[str, float]]:
    """``val_fn`` plus one replication of the evaluation protocol on reconstructions of the val split: ``fid``,
    ``diversity``, ``top1..3``, ``matching_score``. Motions arrive normalised with the evaluator's statistics; they are
    re-normalised into the tokenizer's (``mean``, ``std``), reconstructed, and mapped back."""
    from utils.eval_protocol import evaluate, renormalize

    def fid_val_fn(model: nn.Module) -> dict[str, float]:
        metrics = val_fn(model)
        device = next(model.parameters()).device
        evaluator.to(device)

        def motion_fn(batch: Any) -> tuple[Tensor, Tensor]:
            motion = renormalize(batch.motion.to(device), evaluator.mean, evaluator.std, mean, std)
            # The batches hold max_motion_length frames (196), which tokens of 8 frames do not divide: padded to
            # whole tokens and cropped back, as evaluation_AE.py reconstructs.
            frames = motion.shape[1]
            recon = model(F.pad(motion, (0, 0, 0, (-frames) % model.unit_length))).recon[:, :frames]
            return renormalize(recon, mean, std, evaluator.mean, evaluator.std), batch.m_lengths

        report = evaluate(evaluator, eval_loader, motion_fn, replications=1, seed=seed, progress=False)
        metrics.update({name: stat.mean for name, stat in report.metrics.items()})
        return metrics

    return fid_val_fn


def dataset_record(spec: DatasetSpec, mean: np.ndarray, std: np.ndarray) -> dict[str, Any]:
    """The ``dataset`` entry of a checkpoint: name, spec and the normalisation the model was trained with."""
    return {"name": spec.name, "spec": spec.to_dict(), "mean": torch.as_tensor(mean, dtype=torch.float32),
            "std": torch.as_tensor(std, dtype=torch.float32)}


def parent_record(path: str | None) -> dict[str, Any] | None:
    """A checkpoint's ``parent`` entry (the upstream checkpoint a stage was trained on)."""
    if path is None:
        return None
    return {"path": path, "sha256": file_sha256(path)}


def train_tokenizer(args: argparse.Namespace, model_name: str, overrides: dict[str, Any]) -> Any:
    """Build ``model_name`` for ``--dataset_name`` and train it with the engine; returns the engine's TrainResult.

    The run lives in ``<checkpoints_dir>/<dataset_name>/<name>/`` (``model/latest.tar``, ``model/net_best_*.tar``,
    TensorBoard events, ``opt.yaml``). Validation (loss terms, MPJPE, code usage) runs every ``--eval_every`` steps;
    the best checkpoint is chosen on validation ``loss`` (``net_best_loss.tar``), or with ``--need_evaluation`` on
    the validation FID of the reconstructions (``net_best_fid.tar``).
    """
    from models.body_parts import PartSliceDataset, part_indices
    from models.part_aware import PART_AWARE_MODELS, joint_part_indices
    from models.tokenizers import build_tokenizer
    from options.config import resolve_max_iters, save_config
    from options.tokenizer_options import DEFAULT_COMMIT
    from utils.conditions import ConditionedWindowDataset, read_conditions, training_labels
    from utils.dataset_specs import get_dataset_spec
    from utils.engine import EngineConfig, check_run_start, train
    from utils.logging_utils import setup_logging
    from utils.run_dir import RunDir
    from utils.seed import set_seed

    # ---------------------------------------------------------------- setup
    setup_logging(hold=True)  # the run's train.log receives what set-up logs, and nothing an earlier main() held
    spec = get_dataset_spec(args.dataset_name, args.data_root)
    body_part, conditions = getattr(args, "body_part", None), getattr(args, "conditions", None)
    if conditions and model_name not in PART_AWARE_MODELS:
        raise ValueError(f"--conditions {' '.join(conditions)}: only the part-aware models take conditions "
                         f"({', '.join(sorted(PART_AWARE_MODELS))}); {model_name} would ignore them")
    if body_part and model_name in PART_AWARE_MODELS:
        raise ValueError(f"--body_part {body_part}: {model_name} splits the whole feature vector into joint parts "
                         f"itself and cannot train on one body part's columns; drop --body_part, or train the part "
                         f"with --model RVQVAE")
    if overrides.get("kmeans_iters") is not None and not overrides.get("kmeans_init"):
        raise SystemExit(f"--kmeans_iters {overrides['kmeans_iters']}: the iterations of --kmeans_init; add "
                         f"--kmeans_init or drop it")
    if args.need_evaluation and (body_part or conditions):
        raise SystemExit("--need_evaluation scores whole-body, unconditioned reconstructions with the text-motion "
                         "evaluator; drop it for --body_part / --conditions runs")
    # What the spec and the data root alone decide fails here, before the run folder and the data index are written.
    part_columns = part_indices(spec, body_part) if body_part else None
    joint_parts = joint_part_indices(spec) if model_name in PART_AWARE_MODELS else None
    found = read_conditions(args.data_root or spec.root, conditions) if conditions else None
    run = RunDir(args.checkpoints_dir, args.dataset_name, args.name)
    check_run_start(run, args.is_continue)
    # The run being resumed, read once (without its weights) for the checks below; the engine restores the state.
    resumed = _resumed_records(run.latest_path) if args.is_continue else None
    run.make_dirs()
    setup_logging(run.log_file)
    set_seed(args.seed)

    # ---------------------------------------------------------------- data
    data = load_window_data(spec, args.window_size, args.data_root, getattr(args, "window_mode", "random"),
                            getattr(args, "window_stride", 1), getattr(args, "feat_bias", 1.0))
    extra_meta, collate_fn, position = {}, None, None
    if body_part:
        # One body part: its feature columns, statistics and (all-feature) reconstruction terms.
        data = WindowData(PartSliceDataset(data.train, part_columns), PartSliceDataset(data.val, part_columns),
                          data.mean[part_columns], data.std[part_columns])
        position = slice(0, len(part_columns))
        extra_meta["body_part"] = {"name": body_part, "indices": part_columns}
    width = len(part_columns) if body_part else spec.dim_pose
    if joint_parts is not None:
        overrides = {"part_indices": joint_parts, "num_parts": len(joint_parts), **overrides}
        if "code_dim" in overrides:
            overrides.setdefault("output_emb_width", overrides["code_dim"])
        if conditions:
            # Vocabularies come from the training clips: a value only val/test clips carry is unknown (id 0) there,
            # as evaluation_AE.py treats it, rather than an id whose embedding training never updates.
            train_ids = [data.train.index.clip_id(int(r)) for r in data.train.clips]
            labels, unseen = training_labels(found, train_ids)
            if resumed is not None:
                labels, unseen = resumed_vocabularies(resumed, run.latest_path, found, labels, unseen)
            if unseen:
                logger.warning("%s: values no training clip carries are encoded as unknown: %s", labels.source,
                               "; ".join(f"{v} ({len(ids)} clips, e.g. {ids[0]})" for v, ids in unseen.items()))
            data = data._replace(train=ConditionedWindowDataset(data.train, labels,
                                                                drop_prob=getattr(args, "cond_drop_prob", 0.0)),
                                 val=ConditionedWindowDataset(data.val, labels, require_labels=False))
            collate_fn = data.train.collate
            overrides["conditions"] = labels.vocab_sizes()
            extra_meta["conditions"] = labels.to_dict()

    # ---------------------------------------------------------------- model
    model = build_tokenizer(model_name, input_width=width, **overrides)
    window_size = data.train.windows.window_size if hasattr(data.train, "windows") else data.train.window_size
    if window_size % model.unit_length:
        raise ValueError(f"--window_size {window_size} must be a multiple of the tokenizer's "
                         f"{model.unit_length} frames per token")
    n_params = sum(p.numel() for p in model.parameters())
    logger.info("%s %s: %.2fM parameters, args %s", model_name, type(model).__name__, n_params / 1e6,
                model.model_args)

    # ---------------------------------------------------------------- train
    lfq = model.quantizer if isinstance(getattr(model, "quantizer", None), LFQ) else None
    if lfq is not None and args.commit != DEFAULT_COMMIT:
        logger.warning("--commit %g does not apply to %s: LFQ weighs its own auxiliary terms (--entropy_loss_weight, "
                       "--commitment_loss_weight)", args.commit, model_name)
    loss_fn = make_loss_fn(spec, args, position, lfq)
    val_fn = make_val_fn(data, spec, make_loss_terms(spec, args, position, lfq), min(args.batch_size, 256),
                         args.val_batches, collate_fn)
    if args.need_evaluation:
        from utils.eval_data import load_validation_evaluator

        evaluator, eval_loader = load_validation_evaluator(args.evaluator_dir, args.checkpoints_dir, args.dataset_name,
                                                           spec, args.data_root, args.glove_dir)
        if evaluator is not None:  # None on all processes but the first, which alone validates
            val_fn = make_fid_val_fn(val_fn, evaluator, eval_loader, data.mean, data.std, args.seed)
    # With an evaluator the best checkpoint is the lowest validation FID (net_best_fid.tar), else the lowest loss.
    cfg = EngineConfig.from_namespace(args, max_iters=resolve_max_iters(args, len(data.train)),
                                      best_metric="fid" if args.need_evaluation else "loss", best_mode="min")
    meta = {"stage": "tokenizer", "model_name": model_name, "model_args": dict(model.model_args),
            "dataset": dataset_record(spec, data.mean, data.std), "config": _plain_config(args), "parent": None,
            **extra_meta}
    if resumed is not None:
        meta["model_args"] = resumed_model_args(resumed.get("model_args") or {}, meta["model_args"], ADDED_MODEL_ARGS)
        check_tokenizer_resume(resumed, run.latest_path, meta, run.config_path)
        warn_objective_changes(run.latest_path, resumed, meta["config"], commitment=model.kind in COMMITMENT_KINDS)
        warn_validation_batches(run.latest_path, resumed.get("config") or {}, meta["config"])
    save_config(args, run.config_path)  # only now, so that a refused resume leaves the run's opt.yaml as it was
    result = train(model, data.train, loss_fn, cfg, run, checkpoint_meta=meta, val_fn=val_fn, collate_fn=collate_fn)
    logger.info("finished at %s", result.summary())
    return result


def _resumed_records(latest_path: str) -> dict[str, Any] | None:
    """The records of the run at ``latest_path`` (everything but the weights and optimizer state), None if missing
    (``check_run_start`` refuses such a resume before this is read)."""
    if not os.path.isfile(latest_path):
        return None
    saved = load_checkpoint(latest_path)
    return {k: v for k, v in saved.items() if k not in ("model", "ema", "optimizer", "scaler", "rng")}


def resumed_vocabularies(saved: dict[str, Any], latest_path: str, found: ConditionLabels, labels: ConditionLabels,
                         unseen: dict[str, list[str]]) -> tuple[ConditionLabels, dict[str, list[str]]]:
    """The condition labels of a resumed run. Runs started before vocabularies were built from the training clips
    alone also gave an id to values only val/test clips carry; such a run keeps the vocabularies it trained with
    (``found`` mapped onto them). Any other difference (relabelled values) is left to ``check_tokenizer_resume``,
    which refuses it. ``saved``: the resumed run's records (``latest_path``); ``labels, unseen``: the training clips'
    vocabularies (``training_labels``)."""
    record = saved.get("conditions")
    if not record:
        return labels, unseen
    vocab = ConditionLabels.from_dict(record, source=f"{latest_path} (conditions)")
    if vocab.to_dict() == labels.to_dict() or tuple(vocab.names) != tuple(labels.names):
        return labels, unseen
    every_value = {name: {v.get(name) for v in found.labels.values()} for name in found.names}
    older = all(set(labels.vocabularies[name]) <= set(vocab.vocabularies[name])
                and set(vocab.vocabularies[name]) - {UNKNOWN} <= every_value[name] for name in vocab.names)
    if not older:
        return labels, unseen
    logger.warning("%s: the run gives ids to condition values no training clip carries (%s), as runs started before "
                   "vocabularies came from the training clips did; it keeps its vocabularies", latest_path,
                   "; ".join(f"{n}: {sorted(set(vocab.vocabularies[n]) - set(labels.vocabularies[n]))}"
                             for n in vocab.names if set(vocab.vocabularies[n]) != set(labels.vocabularies[n])))
    return with_vocabularies(found, vocab)


# Constructor arguments added after tokenizer runs were saved, with the value those runs trained with.
ADDED_MODEL_ARGS = {"kmeans_init": False, "kmeans_iters": 10, "rotation_trick": False}


def check_tokenizer_resume(saved: dict[str, Any], latest_path: str, meta: dict[str, Any],
                           config_path: str | None = None) -> None:
    """Before ``--is_continue``: the run must be of the same model, arguments and dataset, normalised with the same
    Mean/Std (resuming on other statistics would silently train the model on other inputs). A refused model or
    model argument names ``config_path``, the run's ``opt.yaml``, whose flags resume it. ``saved``: the records of
    the run's checkpoint ``latest_path``."""
    check_matches(latest_path, "stage", saved.get("stage"), meta.get("stage"))
    # Before the model: another part's columns change the model's input width and the statistics too, and a refusal
    # of either would not name the flag that changed.
    _check_body_part(latest_path, saved, meta)
    for key in ("model_name", "model_args", "conditions"):
        try:
            check_matches(latest_path, key, saved.get(key), meta.get(key))
        except CheckpointError as e:
            if key == "conditions" or not config_path or not os.path.isfile(config_path):
                raise
            # A flag left out on resume (--kmeans_init, --width, ...) takes its default, not the run's value.
            raise CheckpointError(f"{e}. The model comes from --model and its flags, which a resume repeats: "
                                  f"add the run's, or resume with --config {config_path} --is_continue") from None
    check_training_settings(latest_path, _resolved_config(saved), _resolved_config(meta))
    saved_data, data = saved.get("dataset") or {}, meta["dataset"]
    check_matches(latest_path, "dataset name", saved_data.get("name"), data["name"])
    for key in ("mean", "std"):
        try:  # an imported record may keep None (no statistics); a damaged one anything
            found = torch.as_tensor(saved_data[key], dtype=torch.float32)
        except (KeyError, TypeError, ValueError, RuntimeError):
            raise CheckpointError(f"{latest_path}: dataset {key} is {_shown_record(saved_data, key)} in the run being "
                                  f"resumed, not the statistics it was normalised with; start a new --name") from None
        expected = torch.as_tensor(data[key], dtype=torch.float32)
        if found.shape != expected.shape:
            raise CheckpointError(f"{latest_path}: dataset {key} has shape {tuple(found.shape)} in the run being "
                                  f"resumed but {tuple(expected.shape)} now; resume on the same data or start a new "
                                  f"--name")
        differ = torch.nonzero(found != expected).flatten()
        if differ.numel():
            i = int(differ[0])
            raise CheckpointError(f"{latest_path}: dataset {key} differs from the run being resumed in "
                                  f"{differ.numel()} features (first at index {i}: {float(found[i]):g} in the "
                                  f"checkpoint, {float(expected[i]):g} now); resume on the data the run was trained "
                                  f"on, or start a new --name")


def _shown_record(record: dict[str, Any], key: str) -> str:
    return "absent" if key not in record else f"{type(record[key]).__name__} {str(record[key])[:40]!r}"


def _check_body_part(latest_path: str, saved: dict[str, Any], meta: dict[str, Any]) -> None:
    """Refuse to resume the run of ``latest_path`` (its records ``saved``) on another ``--body_part`` than the one in
    ``meta`` (the records now), naming both values."""
    was, now = ((record.get("body_part") or {}).get("name") for record in (saved, meta))
    if was != now:
        fix = f"add --body_part {was} to the command" if was else "drop --body_part"
        raise CheckpointError(f"{latest_path}: the run being resumed was trained with --body_part {was or 'none'} but "
                              f"{now or 'none'} now. A resumed run keeps the data it trained on: {fix}, or start a "
                              f"new --name")


# The terms and weights of the training objective. Unlike the data, they follow the command line on resume (a run may
# go on with another weighting, as with another learning rate), and a value other than the run's is reported with
# both, whether it was typed or came from a preset or default that changed since the run started. LFQ's weights are
# constructor arguments (``model_args``), which a resume keeps.
OBJECTIVE_SETTINGS = ("recons_loss", "aux_loss_joints", "loss_joint_vel", "commit")
# Tokenizer kinds with a commitment loss, the one term ``--commit`` weighs (AE and FSQ have none; LFQ weighs its own).
COMMITMENT_KINDS = ("vq", "rvq")


def warn_objective_changes(latest_path: str, saved: dict[str, Any], config: dict[str, Any],
                           commitment: bool = True, settings: tuple[str, ...] = OBJECTIVE_SETTINGS) -> None:
    """Warn when ``config`` (the options now) sets another value of one of ``settings`` (the tokenizers'
    ``OBJECTIVE_SETTINGS`` by default) than the run of ``latest_path`` (its records ``saved``) was saved with, naming
    both values and the step they apply from; ``commitment`` False: the model has no commitment loss, and
    ``--commit`` changes nothing."""
    was = saved.get("config") or {}
    changed = [(key, was[key], config.get(key)) for key in settings
               if (commitment or key != "commit") and was.get(key) is not None and was[key] != config.get(key)]
    if changed:
        logger.warning("%s: resumed with another training objective than the run was saved with: %s; the new values "
                       "apply from step %s (add %s to train as before)", latest_path,
                       ", ".join(f"--{key} {old} -> {new}" for key, old, new in changed), saved.get("step"),
                       " ".join(_flag(key, old) for key, old, _ in changed))


def warn_validation_batches(latest_path: str, saved_config: dict[str, Any], config: dict[str, Any]) -> None:
    """Warn when a resumed run validates on another ``--val_batches`` than it was saved with: its later validation
    scores are then compared with a best checkpoint (``net_best_*.tar``) scored on other batches."""
    was, now = saved_config.get("val_batches"), config.get("val_batches")
    if was is None or now is None or was == now:
        return

    def batches(n: int) -> str:
        return "the whole val split" if n == 0 else f"{n} val batch{'es' if n > 1 else ''}"

    logger.warning("%s: the run validated on %s, now on %s: its later validation scores are compared with a best "
                   "checkpoint (net_best_*.tar) scored on the others; add --val_batches %d to validate as before",
                   latest_path, batches(was), batches(now), was)


# Settings that decide what the tokenizer trains on (the windows, their normalisation, condition dropout), with the
# value a run saved before the option existed trained with. A resumed run keeps them: a preset or default that changed
# since would otherwise switch the run's data mid-training (``--window_mode all`` also makes an ``--epoch`` about 80x
# more steps on HumanML3D) with no more than a note that the dataset size changed. ``window_size`` None is the dataset
# spec's, which ``_resolved_config`` reads from the spec each side recorded.
RESUMED_SETTINGS = {"window_size": None, "window_mode": "random", "window_stride": 1, "feat_bias": 1.0,
                    "cond_drop_prob": 0.0}


def _resolved_config(record: dict[str, Any]) -> dict[str, Any]:
    """The ``config`` of checkpoint record ``record`` with ``window_size`` None (the flag left out) replaced by the
    window size of the dataset spec the record holds, the size the run trains on."""
    config = dict(record.get("config") or {})
    if config.get("window_size") is None:
        config["window_size"] = ((record.get("dataset") or {}).get("spec") or {}).get("window_size")
    return config


def _flag(key: str, value: Any) -> str:
    """The command-line spelling of setting ``key`` at ``value`` (an on/off flag as ``--key`` / ``--no-key``)."""
    if isinstance(value, bool):
        return f"--{key}" if value else f"--no-{key}"
    return f"--{key} {value}"


def check_training_settings(latest_path: str, saved: dict[str, Any], current: dict[str, Any],
                            settings: dict[str, Any] = RESUMED_SETTINGS) -> None:
    """Refuse to resume the run of ``latest_path`` (its saved config ``saved``) with other ``settings`` (name: value
    of a run saved before the option existed) in ``current`` (the config now), naming each setting, both values and
    the flags that resume it as it was."""
    def value(config: dict[str, Any], key: str) -> Any:
        found = config.get(key)
        return settings[key] if found is None else found

    differ = []
    for key in settings:
        if key == "window_stride" and value(saved, "window_mode") == value(current, "window_mode") == "random":
            continue  # the stride only spaces the windows of --window_mode all
        if key == "cond_drop_prob" and not (saved.get("conditions") or current.get("conditions")):
            continue  # dropout of conditions the run does not have
        was, now = value(saved, key), value(current, key)
        if was != now:
            note = " (not recorded: the run predates the option)" if saved.get(key) is None else ""
            differ.append((key, was, now, note))
    if differ:
        raise CheckpointError(
            f"{latest_path}: the run being resumed was trained with "
            + "; ".join(f"--{key} {was}{note} but {now} now" for key, was, now, note in differ)
            + ". A resumed run keeps the data it trained on: add "
            + " ".join(_flag(key, was) for key, was, _, _ in differ)
            + " to the command (a --config preset may have set the other value), or start a new --name")


def _plain_config(args: argparse.Namespace) -> dict[str, Any]:
    from options.config import config_to_dict

    return config_to_dict(args)
