"""The Guo et al. text-to-motion evaluation protocol in one place (FID, Diversity, R-precision, MM-Dist, MM).

What every evaluation script shares, so the protocol is written once:

- **Data** (``utils.eval_data.build_eval_loader``): the test split through ``Text2MotionEvalDataset`` normalised
  with the *evaluator's* statistics, batches of 32 with the incomplete last batch dropped, shuffled, a random caption
  and a random crop length (multiple of 4, one unit shorter with probability 1/3) and offset per sample and
  replication.
- **Replications** (``evaluate``): 20 by default; each reports mean and ``1.96 * std / sqrt(R)`` with ``np.std``
  ddof 0 (``utils.metrics.mean_confidence_interval``). GT embeddings come from the same batches of the same pass
  (MoMask / T2M-GPT / MARDM style, not the separate GT pass of the original ``final_evaluations.py``).
- **Models** enter through ``motion_fn(batch) -> (motion (B, T, D), lengths (B,))``: generated or reconstructed
  motion *normalised with the evaluator statistics* (``renormalize`` converts from a model's own statistics) and the
  lengths in frames. Frames past a length are zeroed before embedding, exactly as the GT padding is, because the
  movement encoder's convolutions read 2-3 frames past the end. Text and motion rows keep their input order
  (``keep_input_order=True``); the reference sorts by length only because its GRU packing needed it, and the pairs
  (hence every metric) are the same either way.

Randomness. Replication r uses seed ``seed + r``. Its batches are a function of that seed alone: the permutation and
one seed per sample come from ``utils.engine.EpochBatchSampler`` and every sample seeds the host RNGs before the
dataset draws its caption and crop, so neither the worker count nor the randomness a model consumes in ``motion_fn``
changes the data. The model's own randomness is seeded with the same number at the start of the replication (so a
resumed evaluation reproduces an uninterrupted one; with ``deterministic=True`` to float32 round-off only, as the
resumed process has not seen the rows the skipped replications embedded and computes them in other batches).
Diversity and Multimodality draw their index pairs from separate ``np.random.default_rng([seed, k])`` generators;
Diversity uses the same pairs for the model and for GT.
The reference draws everything from global RNGs, so numbers match it in distribution, not bit for bit.

GT cache. The GT text and motion embeddings of a replication depend on the evaluator, the data and the replication's
crops and captions, which are a function of its seed. They are cached per seed in
``<cache_dir>/gt_<key>_seed<s>.npz`` with ``key`` the SHA-256 of the protocol version, the evaluator weights and
statistics, and a fingerprint of the evaluation data (split, motion-file index, every caption, normalisation, word
vectors, batch size). A cached entry also stores each batch's lengths and caption lengths, which are checked against
the batches as they are drawn; any mismatch drops the entry and recomputes. The data are still loaded (the model
needs the GT motion and the captions); only the evaluator passes over GT are skipped. With the cache, the model's
motion is embedded in evaluator calls of up to ``EMBED_ROWS`` rows (several batches of the same frame count at once;
the per-batch metrics are unchanged), which is what remains of the evaluator's cost.

FID is computed from QR factors of the centred embeddings and the singular values of their product
(``_frechet_distance``): the value of the reference's ``sqrtm`` formula to round-off, without its 512 x 512 matrix
square root.

Deterministic models. A tokenizer's reconstruction of a crop is the same in every replication, and the random crops
repeat: every sample is shorter than ``max_motion_length + unit_length`` frames, so it has at most ``unit_length`` (4)
crops of the full whole-unit length and 8 one unit shorter, and over 20 replications only about a third of the rows
are new (33% expected for lengths spread evenly mod 4; 35% measured on the synthetic test split).
``evaluate(..., deterministic=True)`` (``evaluation_AE.py``) remembers the model's embedding of each GT row by a
digest of its content and calls the model and the evaluator only for rows it has not seen; the first batch that
holds a known row is computed in full once and compared, and the memo switches itself off if ``motion_fn`` turns
out not to be deterministic. Each replication's row records how many rows it reused (``reused_rows``).

Streaming. Every finished replication is appended as one JSON line to ``results_path`` and flushed, so a crash loses
at most the replication in progress; with ``resume=True`` lines written under the same evaluation key are reused and
those replications are skipped. The key is a digest of the GT key, the model's ``meta`` and the multimodality
settings; files ``meta`` identifies by SHA-256 enter it by content, not by path (``location_free``), so a run
folder moved, renamed or reached through a link resumes where it stopped.

Progress. Besides the bar over replications, each replication shows a bar over its model calls (one per batch, and
``mm_repeats`` per multimodality batch) with an ETA: a generator's replication can take most of an hour, and the
replication bar alone says nothing until the first one ends.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from collections.abc import Callable, Collection, Sequence
from typing import Any, Protocol

import numpy as np
import torch
from tqdm import tqdm

from utils.atomic_io import atomic_write
from utils.checkpoint import file_sha256
from utils.datasets import EvalBatch
from utils.eval_data import EVAL_BATCH_SIZE, PROTOCOL_VERSION, EvalLoader, digest
from utils.eval_report import METRICS, EvalReport, MetricStat, json_default
from utils.evaluator import EvaluatorWrapper
from utils.file_lock import acquire_lock
from utils.gt_cache import GTCache, GTEmbeddings, default_gt_cache
from utils.metrics import (
    calculate_diversity,
    calculate_multimodality,
    default_diversity_times,
    mean_confidence_interval,
    score_batch,
)
from utils.model_embeddings import ModelMemo, checked_motion, embed_in_chunks, motion_embeddings, select_rows
from utils.seed import get_rng_state, set_rng_state, set_seed

logger = logging.getLogger(__name__)

DEFAULT_REPLICATIONS = 20
DEFAULT_SEED = 3407
MM_BATCHES = 3  # MoMask / MARDM: the first 3 batches (96 captions) ...
MM_REPEATS = 30  # ... generated 30 times each ...
MM_TIMES = 10  # ... and 10 pairs of repeats per caption
TOP_K = 3
EMBED_ROWS = 256  # rows per evaluator call for model motion when GT embeddings are cached (see _replication)

MotionFn = Callable[[EvalBatch], tuple[torch.Tensor, torch.Tensor]]


class ReplicationHooks(Protocol):
    """Called around each replication ``evaluate`` runs, with its seed."""

    def begin(self, seed: int) -> None: ...

    def end(self, seed: int) -> None: ...

Array = np.ndarray | torch.Tensor


# ---------------------------------------------------------------------------------------------------------------------
# Normalisation
# ---------------------------------------------------------------------------------------------------------------------

def _stat(value: Array, like: Array) -> Array:
    if isinstance(like, torch.Tensor):
        dtype = like.dtype if like.is_floating_point() else torch.float32
        return torch.as_tensor(np.asarray(value, dtype=np.float32), dtype=dtype, device=like.device)
    return np.asarray(value, dtype=np.float32)


def same_statistics(mean_a: Array, std_a: Array, mean_b: Array, std_b: Array) -> bool:
    """True when two (mean, std) pairs of shape (D,) are bit-identical (renormalising would be a no-op)."""
    arrays = [np.asarray(v.detach().cpu() if isinstance(v, torch.Tensor) else v, dtype=np.float32).reshape(-1)
              for v in (mean_a, std_a, mean_b, std_b)]
    return all(a.shape == b.shape and np.array_equal(a, b) for a, b in ((arrays[0], arrays[2]),
                                                                         (arrays[1], arrays[3])))


def renormalize(motion: Array, from_mean: Array, from_std: Array, to_mean: Array, to_std: Array) -> Array:
    """Motion (..., D) normalised with (from_mean, from_std) -> normalised with (to_mean, to_std); same type/device.

    De-normalise with the model's statistics, re-normalise with the evaluator's (MARDM's ``inv_transform`` then
    ``transform``). Returns the input object unchanged when both pairs are identical, so GT passes through bit-exact.
    """
    dim = motion.shape[-1]
    for name, value in (("from_mean", from_mean), ("from_std", from_std), ("to_mean", to_mean), ("to_std", to_std)):
        if tuple(np.shape(value)) != (dim,):
            raise ValueError(f"renormalize: {name} has shape {tuple(np.shape(value))}; expected ({dim},) to match the "
                             f"motion's last dim")
    if same_statistics(from_mean, from_std, to_mean, to_std):
        return motion
    raw = motion * _stat(from_std, motion) + _stat(from_mean, motion)
    return (raw - _stat(to_mean, motion)) / _stat(to_std, motion)


# ---------------------------------------------------------------------------------------------------------------------
# GT embedding cache
# ---------------------------------------------------------------------------------------------------------------------

def evaluator_fingerprint(evaluator: EvaluatorWrapper) -> str:
    """SHA-256 of the evaluator's weights, statistics, step length and word-vector source (not of its file, so a
    re-saved file with the same weights keeps its cache)."""
    state = evaluator.model.state_dict()
    h = digest(PROTOCOL_VERSION, evaluator.source, evaluator.unit_length, evaluator.mean, evaluator.std,
             {k: v for k, v in evaluator.model_args.items()})
    for key in sorted(state):
        h.update(key.encode())
        h.update(np.ascontiguousarray(state[key].detach().cpu().float().numpy()).tobytes())
    return h.hexdigest()


def location_free(meta: Any) -> Any:
    """``meta`` without the paths of the files it also identifies by content: ``<name>`` where ``<name>_sha256`` is
    set beside it, ``path`` where ``sha256`` is. A checkpoints folder moved, renamed or reached through a link
    changes those paths but not the evaluation, so the evaluation key (``--is_continue``) and a saved-motions
    folder's identity are taken from this."""
    if isinstance(meta, dict):
        return {k: location_free(v) for k, v in meta.items()
                if meta.get(f"{k}_sha256") is None and not (k == "path" and meta.get("sha256") is not None)}
    if isinstance(meta, (list, tuple)):
        return [location_free(v) for v in meta]
    return meta


# ---------------------------------------------------------------------------------------------------------------------
# The protocol
# ---------------------------------------------------------------------------------------------------------------------

def protocol_tag(split: str, seed: int, eval_batch_size: int | None = None,
                 mm: tuple[int, int] | None = None) -> str:
    """The suffix of an evaluation's file names for protocol settings away from their defaults (``_val``, ``_seed7``,
    ``_eb16``, ``_mm2x10``), so that evaluations of one checkpoint under other settings do not share files.
    ``mm``: (batches, repeats) of multimodality when it is computed."""
    tag = "" if split == "test" else f"_{split}"
    tag += "" if seed == DEFAULT_SEED else f"_seed{seed}"
    tag += "" if eval_batch_size in (None, EVAL_BATCH_SIZE) else f"_eb{eval_batch_size}"
    tag += "" if mm in (None, (MM_BATCHES, MM_REPEATS)) else f"_mm{mm[0]}x{mm[1]}"
    return tag


def evaluator_tag(evaluator_dir: str | None, default_dir: str) -> str:
    """``""`` for the dataset's own evaluator (``default_dir``, ``<checkpoints>/<dataset>/text_mot_match``), else
    ``_ev<SHA-256 prefix>`` of the ``--evaluator_dir`` file: scores under the released evaluator and under one trained
    here must not share files."""
    from utils.evaluator import resolve_evaluator_path

    if not evaluator_dir:
        return ""
    path = os.path.realpath(resolve_evaluator_path(evaluator_dir))
    default = os.path.join(default_dir, "model", "finest.tar")
    if os.path.isfile(default) and os.path.samefile(path, default):  # also through a link or another spelling
        return ""
    return f"_ev{file_sha256(path)[:8]}"


def replication_seeds(seed: int, replications: int) -> list[int]:
    """Seed of each replication: ``seed + r``. A negative base seed (``--seed``) is refused: each replication's
    batches and index pairs come from numpy seed sequences of its seed, which take no negative number."""
    if int(seed) < 0:
        raise ValueError(f"--seed {seed}: the evaluation's base seed must be >= 0 (replication r draws its batches "
                         f"and index pairs from numpy seed sequences of seed + r)")
    if int(seed) + replications > 2**64:  # replication r also seeds torch with seed + r, which must be < 2^64
        raise ValueError(f"--seed {seed}: replication r uses seed + r, which torch takes below 2^64; for "
                         f"{replications} replication(s) give a seed up to {2**64 - replications}")
    return [int(seed) + r for r in range(replications)]


def _frechet_distance(gt: np.ndarray, gen: np.ndarray) -> float:
    """FID between two embedding sets ``(N, E)``: ``|mu1 - mu2|^2 + Tr(S1 + S2 - 2 (S1 S2)^(1/2))``, S the unbiased
    covariances.

    With ``X`` the centred embeddings, ``S = X^T X / (n - 1)``, the non-zero eigenvalues of ``S1 S2`` are those of
    ``(X1 X2^T)(X1 X2^T)^T / ((n1 - 1)(n2 - 1))``, so ``Tr (S1 S2)^(1/2)`` is the sum of the singular values of
    ``X1 X2^T``, which are those of ``R1 R2^T`` for the triangular factors of ``X = QR``. No E x E product and no
    matrix square root: the value is that of ``utils.metrics.calculate_fid`` (the reference's ``scipy.linalg.sqrtm``
    of ``S1 S2``) to round-off, without its complex intermediates, at a fraction of its cost (the factors are
    ``min(N, E)`` wide). The means are float32 as in the reference; the result is clamped at 0 as there.
    """
    if gt.ndim != 2 or gen.ndim != 2 or gt.shape[1] != gen.shape[1] or min(gt.shape[0], gen.shape[0]) < 2:
        raise ValueError(f"FID needs two embedding sets (N >= 2, E) of the same width, got {gt.shape} and {gen.shape}")
    for name, x in (("real", gt), ("generated", gen)):
        if not np.isfinite(x).all():  # checked first: the factorisations fail on them with a LinAlgError
            raise ValueError(f"FID: the {name} motions' embeddings hold non-finite values (NaN or inf in the motions?)")
    diff = np.mean(gt, axis=0) - np.mean(gen, axis=0)
    centred = [x.astype(np.float64) - x.astype(np.float64).mean(axis=0) for x in (gt, gen)]
    traces = [float((x * x).sum()) / (x.shape[0] - 1) for x in centred]
    r1, r2 = (np.linalg.qr(x, mode="r") for x in centred)
    scale = math.sqrt((gt.shape[0] - 1) * (gen.shape[0] - 1))
    trace_root = float(np.linalg.svd(r1 @ r2.T, compute_uv=False).sum()) / scale
    distance = float(diff.dot(diff)) + traces[0] + traces[1] - 2 * trace_root
    if not np.isfinite(distance):
        raise ValueError(f"FID is {distance}: the embeddings hold non-finite values")
    return max(distance, 0.0)


def _rewrite_rows(path: str, change: Callable[[dict[str, Any]], dict[str, Any] | None]) -> None:
    """Rewrite ``path`` (atomically) with each row replaced by ``change(row)``, or left out where that is None;
    unreadable lines are left out too."""
    if not os.path.isfile(path):
        return
    with open(path) as f:
        kept = []
        for line in f:
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue
            if not isinstance(row, dict):
                continue
            new = change(row)
            if new is row:
                kept.append(line if line.endswith("\n") else line + "\n")
            elif new is not None:
                kept.append(json.dumps(new, default=json_default) + "\n")
    with atomic_write(path) as f:
        f.writelines(kept)


def _drop_rows(path: str, *keys: str) -> int:
    """Rewrite ``path`` without the rows of the evaluation ``keys``: a fresh start of one evaluation keeps the
    replications other evaluations streamed to the same file. Unreadable lines go with them. Returns the rows
    dropped."""
    dropped = []
    _rewrite_rows(path, lambda row: dropped.append(row) if row.get("eval_key") in keys else row)
    return len(dropped)


def _end_torn_line(path: str) -> None:
    """End the last line of ``path`` when a crash left it without its newline, so that the rows a resume appends
    start lines of their own instead of being glued to the torn one (and lost to the next resume)."""
    if not os.path.isfile(path) or os.path.getsize(path) == 0:
        return
    with open(path, "rb") as f:
        f.seek(-1, os.SEEK_END)
        torn = f.read(1) != b"\n"
    if torn:
        with open(path, "a") as f:
            f.write("\n")


def _read_finished(path: str, keys: Collection[str], seeds: Sequence[int]) -> dict[int, dict[str, Any]]:
    """Replication rows already in ``path`` under one of ``keys`` for one of ``seeds`` (a torn last line is
    ignored). Rows of those seeds under other keys (the same file, other settings) are not reused, and said so."""
    done: dict[int, dict[str, Any]] = {}
    others: set[int] = set()
    if not os.path.isfile(path):
        return done
    with open(path) as f:
        for line in f:
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(row, dict) and row.get("seed") in seeds:
                if row.get("eval_key") in keys:
                    done[int(row["seed"])] = row
                else:
                    others.add(int(row["seed"]))
    if others - set(done):
        logger.warning("%s holds %d replication(s) of these seeds made with other settings or data (another "
                       "evaluation key: the checkpoint, sampling, evaluator, data or protocol differ, or a version "
                       "of this program that recorded them otherwise); they are not reused", path,
                       len(others - set(done)))
    return done


def retrieval_metrics(evaluator: EvaluatorWrapper, eval_loader: EvalLoader, seed: int = DEFAULT_SEED
                      ) -> dict[str, float]:
    """GT text-motion retrieval of one pass (seed ``seed``): ``{"top1", "top2", "top3", "matching_score"}``.

    R-precision ranks each caption's motion among the batch's (chance for top-1 is 1 / batch size)."""
    hits, match, n = np.zeros(TOP_K), 0.0, 0
    for batch in eval_loader.batches(seed):
        text_emb, motion_emb = evaluator.get_co_embeddings(batch.word_embs, batch.pos_ohot, batch.sent_lens,
                                                           batch.motion, batch.m_lengths, keep_input_order=True)
        scores = score_batch(text_emb.cpu().numpy(), motion_emb.cpu().numpy(), TOP_K)
        hits += scores.top_k_count
        match += scores.matching_score_sum
        n += batch.motion.shape[0]
    return {**{f"top{k + 1}": float(hits[k] / n) for k in range(TOP_K)}, "matching_score": match / n}


_SMALL_DIVERSITY_WARNED: set[int] = set()


def _diversity(emb: np.ndarray, rng: np.random.Generator) -> tuple[float, int]:
    times = default_diversity_times(emb.shape[0])
    if emb.shape[0] <= times:
        # Fewer samples than the reference's 100 pairs (it refuses them): draw as many as possible (only tiny test
        # sets get here), and say so, as the number is not the protocol's.
        if emb.shape[0] not in _SMALL_DIVERSITY_WARNED:  # once per size, not in every replication
            _SMALL_DIVERSITY_WARNED.add(emb.shape[0])
            logger.warning("diversity over %d samples: %d pairs instead of the protocol's %d (a test set this small "
                           "is not comparable with published numbers)", emb.shape[0], emb.shape[0] - 1, times)
        times = emb.shape[0] - 1
    return calculate_diversity(emb, times, rng=rng), times


def _summaries(rows: list[dict[str, Any]], part: str) -> dict[str, MetricStat]:
    names = [m for m in METRICS if all(row[part].get(m) is not None for row in rows)]
    return {m: MetricStat(*mean_confidence_interval([row[part][m] for row in rows])) for m in names}


def evaluate(evaluator: EvaluatorWrapper, eval_loader: EvalLoader, motion_fn: MotionFn,
             replications: int = DEFAULT_REPLICATIONS, seed: int = DEFAULT_SEED, mm_fn: MotionFn | None = None,
             mm_batches: int = MM_BATCHES, mm_repeats: int = MM_REPEATS, results_path: str | None = None, *,
             mm_times: int = MM_TIMES, meta: dict[str, Any] | None = None, gt_cache: GTCache | str | None = "auto",
             resume: bool = False, deterministic: bool = False, progress: bool = True,
             hooks: ReplicationHooks | None = None) -> EvalReport:
    """Run the protocol: ``replications`` passes over ``eval_loader``, each scoring ``motion_fn`` against GT.

    Args:
        evaluator: the loaded evaluator (its statistics normalise the data and ``motion_fn``'s output).
        eval_loader: from ``build_eval_loader``.
        motion_fn: ``motion_fn(batch) -> (motion (B, T, D), lengths (B,))``, the model's motion for the batch's
            captions (and GT lengths / GT motion), normalised with the evaluator statistics.
        replications, seed: replication r uses seed ``seed + r``.
        mm_fn: when given, multimodality is computed: for the first ``mm_batches`` batches ``mm_fn`` is called
            ``mm_repeats`` times, ``mm_times`` pairs of repeats are compared per caption, and (as MoMask / MARDM) the
            last repeat is that batch's sample for the other metrics.
        results_path: JSONL file; one line per finished replication (unless ``resume``, this evaluation's earlier
            lines are dropped first; other evaluations' lines in the file stay).
        meta: provenance merged into the report (``checkpoint_info(path)``, ``steps``, ``guidance_scale``, ...).
        gt_cache: ``"auto"`` (``default_gt_cache``), a folder, a ``GTCache`` or None (off).
        resume: reuse replications already in ``results_path`` under the same evaluation key.
        deterministic: ``motion_fn``'s row i is a deterministic function of ``batch.motion[i]`` and
            ``batch.m_lengths[i]`` alone (a tokenizer reconstructing GT in eval mode). Its embeddings are then
            remembered by the GT row's content and reused when a later replication draws the same crop, and
            ``motion_fn`` may be called with a subset of a batch's rows (see ``ModelMemo``; the numbers are those of
            computing every row, to float32 round-off). Leave it off for a generator.
        hooks: ``hooks.begin(seed)`` before each replication that runs (not those reused by ``resume``) and
            ``hooks.end(seed)`` after it, before its JSONL line is written (``utils.saved_motions`` saves or replays
            a generator's motions per replication through them).

    Returns:
        ``EvalReport``. The caller's global RNG states are restored on return.
    """
    if replications < 1:
        raise ValueError(f"replications must be >= 1, got {replications}")
    if not same_statistics(eval_loader.dataset.mean, eval_loader.dataset.std, evaluator.mean, evaluator.std):
        raise ValueError("the evaluation data are normalised with other statistics than the evaluator's; build the "
                         "loader with build_eval_loader(evaluator, ...)")
    for name, value in (("mm_batches", mm_batches), ("mm_times", mm_times)):
        if mm_fn is not None and value < 1:
            raise ValueError(f"multimodality (mm_fn given): {name} must be >= 1, got {value}")
    if mm_fn is not None and mm_repeats <= mm_times:
        raise ValueError(f"multimodality compares {mm_times} pairs of repeats, so mm_repeats must exceed it; "
                         f"got {mm_repeats}")
    if deterministic and mm_fn is not None:
        raise ValueError("deterministic=True declares motion_fn a deterministic function of the GT motion, whose "
                         "multimodality is zero; mm_fn is for generators, so pass one or the other")
    mm_batches = min(mm_batches, eval_loader.num_batches) if mm_fn is not None else 0
    cache = default_gt_cache(evaluator) if gt_cache == "auto" else (
        GTCache(gt_cache) if isinstance(gt_cache, str) else gt_cache)
    weights_key = evaluator_fingerprint(evaluator)
    gt_key = digest(PROTOCOL_VERSION, weights_key, eval_loader.fingerprint).hexdigest()
    meta = dict(meta or {})
    mm_key = (mm_batches, mm_repeats, mm_times, mm_fn is not None)
    eval_key = digest(gt_key, location_free(meta), *mm_key).hexdigest()
    # Rows streamed before the key left out file paths carry the key of the whole meta: still this evaluation's
    # where the paths are unchanged, so they are read (and re-keyed on resume, to survive a later move).
    path_key = digest(gt_key, meta, *mm_key).hexdigest()
    seeds = replication_seeds(seed, replications)

    caller_rng = get_rng_state()
    rows: list[dict[str, Any]] = []
    memo = ModelMemo() if deterministic else None
    done, results_lock = {}, None
    try:
        if results_path:
            os.makedirs(os.path.dirname(os.path.abspath(results_path)) or ".", exist_ok=True)
            # A second evaluation streaming to the same file would drop or repeat the first one's rows.
            results_lock = acquire_lock(results_path + ".lock", results_path,
                                        "wait for that evaluation to finish (--is_continue then reuses its "
                                        "replications)")
            done = _read_finished(results_path, (eval_key, path_key), seeds) if resume else {}
            if not resume and (dropped := _drop_rows(results_path, eval_key, path_key)):
                logger.warning("started afresh (no --is_continue): %d finished replications of an earlier run of this "
                               "evaluation were dropped from %s (--is_continue keeps them)", dropped, results_path)
            elif resume:
                _end_torn_line(results_path)
                if any(row["eval_key"] == path_key != eval_key for row in done.values()):
                    _rewrite_rows(results_path, lambda row: {**row, "eval_key": eval_key}
                                  if row.get("eval_key") == path_key else row)
                    done = {s: {**row, "eval_key": eval_key} for s, row in done.items()}
            if done:
                logger.info("resuming: %d of %d replications already in %s", len(done), replications, results_path)
        bar = tqdm(seeds, desc="replications", disable=not progress, dynamic_ncols=True)
        for r, rep_seed in enumerate(bar):
            if rep_seed in done:
                rows.append(done[rep_seed])
                continue
            calls = tqdm(total=mm_batches * mm_repeats + eval_loader.num_batches - mm_batches, unit="batch",
                         desc=f"replication {r + 1}/{replications}", leave=False, disable=not progress,
                         dynamic_ncols=True)
            try:
                if hooks is not None:
                    hooks.begin(rep_seed)
                row = _replication(evaluator, eval_loader, motion_fn, mm_fn, r, rep_seed, mm_batches, mm_repeats,
                                   mm_times, cache, gt_key, memo, calls.update)
                if hooks is not None:
                    hooks.end(rep_seed)
            finally:
                calls.close()
            row["eval_key"] = eval_key
            rows.append(row)
            if results_path:
                with open(results_path, "a") as f:
                    f.write(json.dumps(row, default=json_default) + "\n")
                    f.flush()
                    os.fsync(f.fileno())
            bar.set_postfix(fid=f"{row['metrics']['fid']:.4f}", top1=f"{row['metrics']['top1']:.3f}")
            logger.info("replication %d/%d (seed %d): %s", r + 1, replications, rep_seed,
                        " ".join(f"{k} {v:.4f}" for k, v in row["metrics"].items() if v is not None))
    finally:
        set_rng_state(caller_rng)
        if results_lock is not None:
            results_lock.release()

    proto = {
        "version": PROTOCOL_VERSION, "dataset": eval_loader.spec.name, "split": eval_loader.split,
        "batch_size": eval_loader.batch_size, "num_batches": eval_loader.num_batches,
        "num_samples": eval_loader.num_samples, "replications": replications, "seed": int(seed), "seeds": seeds,
        "ci": "1.96 * std / sqrt(replications), np.std ddof 0", "gt_statistics": "same pass, same batches",
        "padding": "frames past each length zeroed before embedding (GT and model alike)",
        "multimodality": ({"batches": mm_batches, "repeats": mm_repeats, "pairs": mm_times} if mm_fn else None),
        "data_fingerprint": eval_loader.fingerprint, "gt_cache": cache.folder if cache else None,
        "evaluator": {"path": os.path.abspath(evaluator.path) if evaluator.path else None,
                      "sha256": file_sha256(evaluator.path) if evaluator.path and os.path.isfile(evaluator.path)
                      else None,
                      "source": evaluator.source, "released": evaluator.released, "epoch": evaluator.epoch,
                      "dataset": evaluator.dataset_name, "weights_fingerprint": weights_key},
        "eval_key": eval_key, "torch": torch.__version__, "numpy": np.__version__,
    }
    return EvalReport(metrics=_summaries(rows, "metrics"), real=_summaries(rows, "real"), rows=rows,
                      meta={"protocol": proto, **meta})


def _replication(evaluator: EvaluatorWrapper, loader: EvalLoader, motion_fn: MotionFn, mm_fn: MotionFn | None,
                 r: int, rep_seed: int, mm_batches: int, mm_repeats: int, mm_times: int, cache: GTCache | None,
                 gt_key: str, memo: ModelMemo | None = None,
                 advance: Callable[[int], Any] | None = None) -> dict[str, Any]:
    """One pass over the data: returns the JSONL row of replication ``r``; ``advance(n)`` is called after every batch
    (``n`` 1) and every multimodality repeat (progress)."""
    advance = advance or (lambda n: None)
    start = time.time()
    set_seed(rep_seed)
    cached = cache.load(gt_key, rep_seed) if cache is not None else None
    cache_state = "off" if cache is None else ("hit" if cached is not None else "miss")
    bs = loader.batch_size
    # Model motion is embedded in calls of up to EMBED_ROWS rows (several batches, or several multimodality repeats,
    # at once) when GT embeddings come from the cache. Without a cache each batch's GT and model motion go through
    # identical evaluator calls, so that a model returning GT reproduces the Real row bit for bit.
    chunk_rows = EMBED_ROWS if cache is not None else bs
    text_parts, gt_parts, gen_parts, mm_parts, m_lens, s_lens = [], [], [], [], [], []
    memo = memo if memo is not None else ModelMemo.disabled()
    fresh: dict[Any, np.ndarray] = {}  # model embeddings computed in this replication, by row key
    pending: list[tuple[tuple[torch.Tensor, torch.Tensor], list[Any]]] = []  # model motion not yet embedded, keys
    queued: set[Any] = set()
    batch_keys: list[list[Any]] = []  # per batch (after the multimodality batches), the key of each row
    reused = 0

    def embed_pending() -> None:
        for (_, keys), emb in zip(pending, embed_in_chunks(evaluator, [item for item, _ in pending], chunk_rows)):
            fresh.update(zip(keys, emb))
        pending.clear()

    for b, batch in enumerate(loader.batches(rep_seed)):
        rows = slice(b * bs, (b + 1) * bs)
        if cached is not None and not (np.array_equal(cached.m_lengths[rows], batch.m_lengths.numpy())
                                       and np.array_equal(cached.sent_lens[rows], batch.sent_lens.numpy())):
            logger.warning("GT cache entry of seed %d does not match batch %d; recomputing it", rep_seed, b)
            cached, cache_state = None, "stale"
        if cached is not None:
            text_emb, gt_emb = cached.text_emb[rows], cached.motion_emb[rows]
        else:
            text_t, gt_t = evaluator.get_co_embeddings(batch.word_embs, batch.pos_ohot, batch.sent_lens, batch.motion,
                                                       batch.m_lengths, keep_input_order=True)
            text_emb, gt_emb = text_t.cpu().numpy(), gt_t.cpu().numpy()
        if b < mm_batches:
            motions = []
            for _ in range(mm_repeats):
                motions.append(checked_motion(mm_fn(batch), batch, evaluator, "mm_fn"))
                advance(1)
            repeats = embed_in_chunks(evaluator, motions, chunk_rows)
            mm_parts.append(np.stack(repeats, axis=1))
            gen_parts.append(repeats[-1])
        else:
            keys = memo.keys(batch, b)
            batch_keys.append(keys)
            if memo.enabled and not memo.verified and any(key in memo.embeddings for key in keys):
                emb = motion_embeddings(evaluator, *checked_motion(motion_fn(batch), batch, evaluator, "motion_fn"))
                memo.verify(keys, emb)
                fresh.update(zip(keys, emb))
            else:
                todo = [i for i, key in enumerate(keys) if key not in memo.embeddings and key not in queued]
                reused += len(keys) - len(todo)
                if todo:
                    part = batch if len(todo) == len(keys) else select_rows(batch, todo)
                    pending.append((checked_motion(motion_fn(part), part, evaluator, "motion_fn"),
                                    [keys[i] for i in todo]))
                    queued.update(keys[i] for i in todo)
                if sum(item[0].shape[0] for item, _ in pending) >= chunk_rows:
                    embed_pending()
        text_parts.append(text_emb)
        gt_parts.append(gt_emb)
        m_lens.append(batch.m_lengths.numpy())
        s_lens.append(batch.sent_lens.numpy())
        if b >= mm_batches:
            advance(1)
    embed_pending()
    gen_parts += [np.stack([fresh[key] if key in fresh else memo.embeddings[key] for key in keys])
                  for keys in batch_keys]
    if memo.enabled:
        memo.embeddings.update(fresh)
    hits = {"gen": np.zeros(TOP_K), "gt": np.zeros(TOP_K)}
    match = {"gen": 0.0, "gt": 0.0}
    for text_emb, gt_emb, gen_emb in zip(text_parts, gt_parts, gen_parts):
        for part, emb in (("gen", gen_emb), ("gt", gt_emb)):
            scores = score_batch(text_emb, emb, TOP_K)
            hits[part] += scores.top_k_count
            match[part] += scores.matching_score_sum
    n = len(gen_parts) * bs
    gt_all, gen_all = np.concatenate(gt_parts), np.concatenate(gen_parts)
    if cache is not None and cache_state != "hit":
        cache.save(gt_key, rep_seed, GTEmbeddings(np.concatenate(text_parts), gt_all, np.concatenate(m_lens),
                                                  np.concatenate(s_lens)))
    # The same index pairs for model and GT (a paired comparison; GT against itself gives equal numbers).
    diversity, times = _diversity(gen_all, np.random.default_rng([rep_seed, 1]))
    diversity_real, _ = _diversity(gt_all, np.random.default_rng([rep_seed, 1]))
    multimodality = None
    if mm_parts:
        multimodality = calculate_multimodality(np.concatenate(mm_parts), mm_times,
                                                rng=np.random.default_rng([rep_seed, 3]))
    metrics = {"fid": _frechet_distance(gt_all, gen_all), "diversity": diversity,
               **{f"top{k + 1}": float(hits["gen"][k] / n) for k in range(TOP_K)},
               "matching_score": match["gen"] / n, "multimodality": multimodality}
    real = {"diversity": diversity_real, **{f"top{k + 1}": float(hits["gt"][k] / n) for k in range(TOP_K)},
            "matching_score": match["gt"] / n}
    return {"replication": r, "seed": rep_seed, "metrics": metrics, "real": real, "num_samples": n,
            "diversity_pairs": times, "gt_cache": cache_state, "reused_rows": reused,
            "seconds": round(time.time() - start, 3)}
