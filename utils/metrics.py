"""Text-to-motion metrics of the Guo et al. protocol (numpy/scipy) plus MPJPE and confidence intervals.

All embedding metrics take evaluator embeddings (``utils/evaluator.py``): FID on motion embeddings, R-precision and
matching score (MM-Dist) on paired text/motion embeddings of one batch, Diversity on all generated motion
embeddings, Multimodality on repeated generations per caption. They reproduce the reference numbers (the
``metrics`` golden fixture) with two deliberate deviations, both of which only replace a NaN by a number:

- ``euclidean_distance_matrix`` clamps the squared distance at 0 before the square root. The reference computes
  ``sqrt(-2ab + a^2 + b^2)`` unclamped, which is NaN when a text and a motion embedding (nearly) coincide and then
  poisons the matching score.
- ``calculate_frechet_distance`` returns ``max(d^2, 0)``: rounding can make the distance of a set with itself a tiny
  negative number; and when the matrix square root stays non-finite even after regularisation it raises instead of
  returning NaN.

Diversity and multimodality draw random index pairs. Give the pairs explicitly to reproduce a number exactly, or a
numpy ``Generator``; a ``np.random.RandomState(seed)`` reproduces the reference's ``np.random.seed(seed)`` draw.
"""

from __future__ import annotations

import logging
from typing import NamedTuple

import numpy as np
from scipy import linalg

logger = logging.getLogger(__name__)

FID_EPS = 1e-6  # added to both covariance diagonals when sqrtm(S1 S2) is not finite (reference value)
FID_MAX_IMAG = 1e-3  # largest imaginary part on the diagonal of sqrtm(S1 S2) accepted as rounding noise

Rng = np.random.Generator | np.random.RandomState


def calculate_activation_statistics(activations: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Activations (N, D) -> mean (D,) and unbiased covariance (D, D).

    The mean keeps the input dtype (float32 stays float32, as in the reference); ``np.cov`` is float64.
    """
    activations = np.asarray(activations)
    if activations.ndim != 2 or activations.shape[0] < 2:
        raise ValueError(f"activations must be (N, D) with N >= 2, got shape {activations.shape}")
    return np.mean(activations, axis=0), np.cov(activations, rowvar=False)


def calculate_frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray,
                               eps: float = FID_EPS) -> float:
    """Frechet distance between N(mu1, sigma1) and N(mu2, sigma2): |mu1-mu2|^2 + Tr(S1 + S2 - 2 sqrtm(S1 S2)).

    mu (D,), sigma (D, D). If ``sqrtm`` of the product is not finite, ``eps`` is added to both diagonals and it is
    retried; a complex root is accepted (real part kept) when its diagonal's imaginary part is below 1e-3, otherwise
    ``ValueError``. The result is clamped at 0 (see the module docstring).
    """
    mu1, mu2 = np.atleast_1d(mu1), np.atleast_1d(mu2)
    sigma1, sigma2 = np.atleast_2d(sigma1), np.atleast_2d(sigma2)
    if mu1.shape != mu2.shape:
        raise ValueError(f"mean vectors differ in shape: {mu1.shape} vs {mu2.shape}")
    if sigma1.shape != sigma2.shape or sigma1.shape != (mu1.shape[0], mu1.shape[0]):
        raise ValueError(f"covariances must both be ({mu1.shape[0]}, {mu1.shape[0]}), "
                         f"got {sigma1.shape} and {sigma2.shape}")
    if not all(np.isfinite(a).all() for a in (mu1, mu2, sigma1, sigma2)):
        # Checked first: sqrtm of a non-finite product runs for minutes before it fails.
        raise ValueError("FID: the means or covariances hold non-finite values (NaN or inf in the motions?)")
    diff = mu1 - mu2
    covmean = linalg.sqrtm(sigma1.dot(sigma2))
    if not np.isfinite(covmean).all():
        logger.warning("FID: sqrtm of the covariance product is not finite; adding %g to both diagonals", eps)
        offset = np.eye(sigma1.shape[0]) * eps
        covmean = linalg.sqrtm((sigma1 + offset).dot(sigma2 + offset))
        if not np.isfinite(covmean).all():
            raise ValueError("FID: the matrix square root of the covariance product is not finite even after "
                             f"adding {eps} to the diagonals (degenerate or non-finite activations?)")
    if np.iscomplexobj(covmean):
        if not np.allclose(np.diagonal(covmean).imag, 0, atol=FID_MAX_IMAG):
            raise ValueError(f"FID: imaginary component {np.max(np.abs(np.diagonal(covmean).imag))} in sqrtm(S1 S2) "
                             f"exceeds {FID_MAX_IMAG} on the diagonal")
        covmean = covmean.real
    with np.errstate(over="ignore", invalid="ignore"):  # an overflow is reported below, as an error
        distance = float(diff.dot(diff) + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(covmean))
    if not np.isfinite(distance):
        raise ValueError(f"FID is {distance}: the means or covariances hold non-finite values or values too large "
                         "for float64")
    return max(distance, 0.0)


def calculate_fid(activations1: np.ndarray, activations2: np.ndarray) -> float:
    """FID between two activation sets (N1, D) and (N2, D)."""
    mu1, sigma1 = calculate_activation_statistics(activations1)
    mu2, sigma2 = calculate_activation_statistics(activations2)
    return calculate_frechet_distance(mu1, sigma1, mu2, sigma2)


def euclidean_distance_matrix(matrix1: np.ndarray, matrix2: np.ndarray) -> np.ndarray:
    """Pairwise distances (N1, D) x (N2, D) -> (N1, N2), as sqrt(-2 a.b + |a|^2 + |b|^2) in the input dtype.

    The squared distance is clamped at 0 before the square root (a documented deviation: the reference gives NaN
    when rounding makes it slightly negative); otherwise the values equal the reference's.
    """
    matrix1, matrix2 = np.asarray(matrix1), np.asarray(matrix2)
    if matrix1.ndim != 2 or matrix2.ndim != 2 or matrix1.shape[1] != matrix2.shape[1]:
        raise ValueError(f"expected (N1, D) and (N2, D) embeddings, got {matrix1.shape} and {matrix2.shape}")
    squared = -2 * np.dot(matrix1, matrix2.T)
    squared = squared + np.sum(np.square(matrix1), axis=1, keepdims=True)
    squared = squared + np.sum(np.square(matrix2), axis=1)
    return np.sqrt(np.maximum(squared, 0))


def calculate_top_k(ranking: np.ndarray, top_k: int) -> np.ndarray:
    """Row-wise ranking (N, N) (``argsort`` of a distance matrix) -> hits (N, top_k), bool.

    ``hits[i, k]`` is True when row i's own column i is among its k+1 nearest. With fewer candidates than
    ``top_k`` (N < top_k, a tiny validation batch) the columns past N repeat the last one, which is all True: the
    reference's loop would index past the ranking, and a narrower result could not be summed with other batches'.
    """
    ranking = np.asarray(ranking)
    if ranking.ndim != 2 or ranking.shape[0] != ranking.shape[1]:
        raise ValueError(f"ranking must be (N, N), one row per text over the N motions it pairs with, got shape "
                         f"{ranking.shape}: as many texts as motions are needed, they come in pairs")
    own = np.arange(ranking.shape[0])[:, None]
    hits = np.logical_or.accumulate(ranking[:, :top_k] == own, axis=1)
    if hits.shape[1] < top_k:
        hits = np.concatenate([hits, np.repeat(hits[:, -1:], top_k - hits.shape[1], axis=1)], axis=1)
    return hits


def calculate_R_precision(embedding1: np.ndarray, embedding2: np.ndarray, top_k: int,
                          sum_all: bool = False) -> np.ndarray:
    """Paired embeddings (N, D) x (N, D) -> top-k hits (N, top_k) bool, or their column sums (top_k,) with sum_all."""
    ranking = np.argsort(euclidean_distance_matrix(embedding1, embedding2), axis=1)
    hits = calculate_top_k(ranking, top_k)
    return hits.sum(axis=0) if sum_all else hits


def calculate_matching_score(embedding1: np.ndarray, embedding2: np.ndarray, sum_all: bool = False) -> np.ndarray:
    """Paired embeddings (N, D) x (N, D) -> distance of each pair (N,), or their sum (a 0-d array) with sum_all."""
    embedding1, embedding2 = np.asarray(embedding1), np.asarray(embedding2)
    if embedding1.ndim != 2 or embedding1.shape != embedding2.shape:
        raise ValueError(f"expected two (N, D) embeddings of one shape, got {embedding1.shape} and "
                         f"{embedding2.shape}")
    dist = linalg.norm(embedding1 - embedding2, axis=1)
    return dist.sum(axis=0) if sum_all else dist


class BatchScores(NamedTuple):
    """What one evaluation batch adds to the running sums: top-k hit counts (top_k,), sum of pair distances."""

    top_k_count: np.ndarray
    matching_score_sum: float
    dist: np.ndarray


def score_batch(text_emb: np.ndarray, motion_emb: np.ndarray, top_k: int = 3) -> BatchScores:
    """One batch of paired embeddings (B, E) as the evaluation loops score it.

    The (B, B) distance matrix gives the R-precision hits (divide the summed counts by the number of samples) and
    its trace the matching-score sum (MM-Dist = summed traces / number of samples).
    """
    dist = euclidean_distance_matrix(text_emb, motion_emb)
    hits = calculate_top_k(np.argsort(dist, axis=1), top_k)
    return BatchScores(hits.sum(axis=0), float(dist.trace()), dist)


def default_diversity_times(num_samples: int) -> int:
    """Pairs drawn for diversity: 300 when more than 300 samples exist, otherwise 100 (the eval loops' rule)."""
    return 300 if num_samples > 300 else 100


def _draw_pairs(n: int, times: int, first: np.ndarray | None, second: np.ndarray | None, rng: Rng | None,
                what: str) -> tuple[np.ndarray, np.ndarray]:
    if times < 1:  # no pairs would average to NaN
        raise ValueError(f"{what}: times must be >= 1, got {times}")
    if (first is None) != (second is None):
        raise ValueError(f"{what}: give both first_indices and second_indices, or neither")
    if first is not None:
        first, second = np.asarray(first, dtype=np.int64), np.asarray(second, dtype=np.int64)
        if first.shape != (times,) or second.shape != (times,):
            raise ValueError(f"{what}: index sets must both have {times} entries, got {first.shape} and "
                             f"{second.shape}")
        if min(first.min(), second.min()) < 0 or max(first.max(), second.max()) >= n:
            raise ValueError(f"{what}: indices must lie in [0, {n})")
        return first, second
    if rng is None:
        raise ValueError(f"{what}: pass rng (np.random.default_rng(seed)) or explicit first/second indices; the "
                         "value depends on the draw, so it is never taken from a hidden global state")
    if n <= times:
        raise ValueError(f"{what}: need more than {times} samples to draw {times} distinct indices, got {n}")
    # Two independent draws without replacement, as the reference: an index may pair with itself.
    return rng.choice(n, times, replace=False), rng.choice(n, times, replace=False)


def calculate_diversity(activations: np.ndarray, times: int, first_indices: np.ndarray | None = None,
                        second_indices: np.ndarray | None = None, rng: Rng | None = None) -> float:
    """Mean distance between ``times`` random pairs of rows of ``activations`` (N, D)."""
    activations = np.asarray(activations)
    if activations.ndim != 2:
        raise ValueError(f"diversity: activations must be (N, D), got shape {activations.shape}")
    first, second = _draw_pairs(activations.shape[0], times, first_indices, second_indices, rng, "diversity")
    return float(linalg.norm(activations[first] - activations[second], axis=1).mean())


def calculate_multimodality(activations: np.ndarray, times: int, first_indices: np.ndarray | None = None,
                            second_indices: np.ndarray | None = None, rng: Rng | None = None) -> float:
    """Mean distance between ``times`` pairs of repeated generations, over captions: activations (N, R, D).

    The same repeat-index pairs serve every caption (reference behaviour).
    """
    activations = np.asarray(activations)
    if activations.ndim != 3:
        raise ValueError(f"multimodality: activations must be (num_texts, repeats, D), got {activations.shape}")
    first, second = _draw_pairs(activations.shape[1], times, first_indices, second_indices, rng, "multimodality")
    return float(linalg.norm(activations[:, first] - activations[:, second], axis=2).mean())


def _joint_errors(pred_joints: np.ndarray, gt_joints: np.ndarray, lengths: np.ndarray | None,
                  align_root: bool) -> tuple[np.ndarray, np.ndarray]:
    """Per-frame mean joint error (B, T) in float64 and the valid-frame mask (B, T)."""
    pred, gt = np.asarray(pred_joints, dtype=np.float64), np.asarray(gt_joints, dtype=np.float64)
    if pred.shape != gt.shape or pred.ndim not in (3, 4) or pred.shape[-1] != 3:
        raise ValueError(f"joints must be (B, T, J, 3) or (T, J, 3) of one shape, got {pred.shape} and {gt.shape}")
    if pred.ndim == 3:
        pred, gt = pred[None], gt[None]
    if align_root:
        # Joint 0 is the pelvis; subtracting it per frame removes global translation drift.
        pred = pred - pred[:, :, :1]
        gt = gt - gt[:, :, :1]
    per_frame = np.linalg.norm(pred - gt, axis=-1).mean(axis=-1)
    batch, frames = per_frame.shape
    if lengths is None:
        return per_frame, np.ones_like(per_frame, dtype=bool)
    lengths = np.asarray(lengths).reshape(-1)
    if lengths.shape[0] != batch or lengths.min() < 1 or lengths.max() > frames:
        raise ValueError(f"lengths must be {batch} values in [1, {frames}], got {lengths.tolist()}")
    return per_frame, np.arange(frames)[None] < lengths[:, None]


def mpjpe_per_frame(pred_joints: np.ndarray, gt_joints: np.ndarray, lengths: np.ndarray | None = None,
                    align_root: bool = True) -> np.ndarray:
    """Mean per-joint position error of every valid frame, concatenated over the batch: (sum of lengths,).

    Joints (B, T, J, 3) or (T, J, 3), in data units; ``lengths`` (B,) marks the valid frames. Accumulate these over
    batches and average to get the per-pose MPJPE of MoMask/MARDM.
    """
    per_frame, valid = _joint_errors(pred_joints, gt_joints, lengths, align_root)
    return per_frame[valid]


def calculate_mpjpe(pred_joints: np.ndarray, gt_joints: np.ndarray, lengths: np.ndarray | None = None,
                    align_root: bool = True) -> float:
    """MPJPE averaged over all valid frames (sum over poses / number of poses; MoMask/MARDM convention)."""
    return float(mpjpe_per_frame(pred_joints, gt_joints, lengths, align_root).mean())


def calculate_mpjpe_per_sequence(pred_joints: np.ndarray, gt_joints: np.ndarray, lengths: np.ndarray | None = None,
                                 align_root: bool = True) -> np.ndarray:
    """MPJPE of each sequence over its valid frames: (B,). Their mean is MotionMillion's number (per sequence,
    then over sequences), which weights short clips more than ``calculate_mpjpe``."""
    per_frame, valid = _joint_errors(pred_joints, gt_joints, lengths, align_root)
    return (per_frame * valid).sum(axis=1) / valid.sum(axis=1)


def mean_confidence_interval(values: np.ndarray) -> tuple[float, float]:
    """Replication values (R,) -> (mean, 1.96 * std / sqrt(R)) with ``np.std`` ddof 0 (reference convention)."""
    values = np.asarray(values, dtype=np.float64).reshape(-1)
    if values.size == 0:
        raise ValueError("mean_confidence_interval needs at least one value")
    return float(values.mean()), float(1.96 * values.std() / np.sqrt(values.size))
