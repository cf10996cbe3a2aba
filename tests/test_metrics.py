"""Metrics: parity with the golden ``metrics`` fixture, FID/distance edge cases, draws, MPJPE, confidence interval."""

import json
from pathlib import Path

import numpy as np
import pytest

from utils import metrics as M

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "metrics"
RTOL = 1e-6  # tighter than the manifest's recommendation: these are the reference's own numpy operations


@pytest.fixture(scope="module")
def fx():
    manifest = json.loads((FIXTURE / "manifest.json").read_text())
    with np.load(FIXTURE / "io.npz", allow_pickle=False) as data:
        arrays = {k: data[k] for k in data.files}
    return manifest, arrays


def _close(got, expected, key, manifest):
    """Manifest rule: exact keys must match exactly, everything else within rtol 1e-6 (atol 1e-6 for O(1) values)."""
    got, expected = np.asarray(got), np.asarray(expected)
    assert got.shape == expected.shape, key
    if key in manifest["tolerance"]["recommended"]["exact"]:
        np.testing.assert_array_equal(got, expected, err_msg=key)
    else:
        np.testing.assert_allclose(got, expected, rtol=RTOL, atol=1e-6 if key != "fid" else 0.0, err_msg=key)


def _compute_all(d):
    out = {}
    out["gt_mu"], out["gt_cov"] = M.calculate_activation_statistics(d["gt_acts"])
    out["pred_mu"], out["pred_cov"] = M.calculate_activation_statistics(d["pred_acts"])
    out["fid"] = M.calculate_frechet_distance(out["gt_mu"], out["gt_cov"], out["pred_mu"], out["pred_cov"])
    times = int(d["diversity_times"])
    out["diversity_gt"] = M.calculate_diversity(d["gt_acts"], times, d["diversity_gt_idx1"], d["diversity_gt_idx2"])
    out["diversity_pred"] = M.calculate_diversity(d["pred_acts"], times, d["diversity_pred_idx1"],
                                                  d["diversity_pred_idx2"])
    num_batches, batch = d["rp_text"].shape[:2]
    top_k = d["top_k_count"].shape[0]
    dists, rankings, counts, match_sum, direct_sum = [], [], 0, 0.0, 0.0
    for b in range(num_batches):
        scores = M.score_batch(d["rp_text"][b], d["rp_motion"][b], top_k=top_k)
        dists.append(scores.dist)
        rankings.append(np.argsort(scores.dist, axis=1))
        counts = counts + scores.top_k_count
        match_sum += scores.matching_score_sum
        direct_sum += float(M.calculate_matching_score(d["rp_text"][b], d["rp_motion"][b], sum_all=True))
        np.testing.assert_array_equal(
            M.calculate_R_precision(d["rp_text"][b], d["rp_motion"][b], top_k, sum_all=True), scores.top_k_count)
    num_samples = num_batches * batch
    out["rp_dist"], out["rp_argsort"] = np.stack(dists), np.stack(rankings)
    out["top_k_count"] = counts
    out["R_precision"] = counts / num_samples
    out["matching_score"] = match_sum / num_samples
    out["matching_score_direct_norm"] = direct_sum / num_samples
    out["multimodality"] = M.calculate_multimodality(d["mm_acts"], int(d["mm_times"]), d["mm_idx1"], d["mm_idx2"])
    return out


def test_parity_with_fixture_every_output(fx):
    manifest, d = fx
    out = _compute_all(d)
    assert set(manifest["outputs"]) <= set(out), "an output of the manifest is not reproduced"
    for key in manifest["outputs"]:
        _close(out[key], d[key], key, manifest)
    assert out["gt_mu"].dtype == d["gt_mu"].dtype  # the reference keeps activation means in float32


def test_random_state_reproduces_reference_draws(fx):
    manifest, d = fx
    seeds = manifest["rng_seeds_used_by_reference"]
    for seed, acts, idx in [(seeds["diversity_gt"], d["gt_acts"], "diversity_gt"),
                            (seeds["diversity_pred"], d["pred_acts"], "diversity_pred")]:
        rng = np.random.RandomState(seed)
        got = M.calculate_diversity(acts, int(d["diversity_times"]), rng=rng)
        np.testing.assert_allclose(got, d[idx], rtol=RTOL)
    rng = np.random.RandomState(seeds["multimodality"])
    got = M.calculate_multimodality(d["mm_acts"], int(d["mm_times"]), rng=rng)
    np.testing.assert_allclose(got, d["multimodality"], rtol=RTOL)


def test_draws_with_generator_are_reproducible_and_rng_is_required(fx):
    _, d = fx
    a = M.calculate_diversity(d["gt_acts"], 100, rng=np.random.default_rng(3))
    b = M.calculate_diversity(d["gt_acts"], 100, rng=np.random.default_rng(3))
    c = M.calculate_diversity(d["gt_acts"], 100, rng=np.random.default_rng(4))
    assert a == b and a != c
    with pytest.raises(ValueError, match="rng"):
        M.calculate_diversity(d["gt_acts"], 100)
    with pytest.raises(ValueError, match="more than"):
        M.calculate_diversity(d["gt_acts"][:50], 100, rng=np.random.default_rng(0))
    with pytest.raises(ValueError, match="100 entries"):
        M.calculate_diversity(d["gt_acts"], 100, np.arange(5), np.arange(5))
    assert M.default_diversity_times(301) == 300 and M.default_diversity_times(300) == 100


def test_fid_of_a_set_with_itself_is_zero_and_of_shifted_sets_large():
    rng = np.random.default_rng(0)
    acts = rng.standard_normal((200, 16)).astype(np.float32)
    self_fid = M.calculate_fid(acts, acts)
    assert np.isfinite(self_fid) and 0.0 <= self_fid < 1e-6
    shift = 3.0
    shifted = M.calculate_fid(acts, acts + shift)
    np.testing.assert_allclose(shifted, shift ** 2 * acts.shape[1], rtol=1e-4)


def test_fid_of_rank_deficient_covariances_matches_an_eigendecomposition():
    # Fewer samples than dims: singular covariances, whose product has a complex sqrtm (real part kept).
    rng = np.random.default_rng(1)
    a = rng.standard_normal((10, 32))
    b = rng.standard_normal((10, 32))
    assert 0.0 <= M.calculate_fid(a, a) < 1e-6

    # The same distance through symmetric eigendecompositions, which need no sqrtm of a singular product:
    # Tr sqrtm(S1 S2) = Tr sqrtm(S1^1/2 S2 S1^1/2).
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    w, v = np.linalg.eigh(s1)
    root = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
    cross = np.sqrt(np.clip(np.linalg.eigvalsh(root @ s2 @ root), 0, None)).sum()
    expected = np.sum((a.mean(0) - b.mean(0)) ** 2) + np.trace(s1) + np.trace(s2) - 2 * cross
    np.testing.assert_allclose(M.calculate_fid(a, b), expected, rtol=1e-6)


def test_distance_matrix_clamp_removes_nan_on_identical_rows():
    rng = np.random.default_rng(2)
    rows = (rng.standard_normal((64, 32)) * 30).astype(np.float32)
    raw = -2 * rows @ rows.T + np.sum(rows ** 2, 1, keepdims=True) + np.sum(rows ** 2, 1)
    assert (np.diag(raw) < 0).any(), "precondition: the unclamped formula goes negative on this input"
    dist = M.euclidean_distance_matrix(rows, rows)
    assert not np.isnan(dist).any()
    assert np.all(np.diag(dist) < 1e-1 * np.abs(rows).max())
    score = M.score_batch(rows, rows)
    assert np.isfinite(score.matching_score_sum)
    np.testing.assert_array_equal(score.top_k_count, [64, 64, 64])


def test_distance_matrix_matches_direct_norm():
    rng = np.random.default_rng(3)
    a, b = rng.standard_normal((5, 7)), rng.standard_normal((4, 7))
    direct = np.linalg.norm(a[:, None] - b[None], axis=-1)
    np.testing.assert_allclose(M.euclidean_distance_matrix(a, b), direct, rtol=1e-10, atol=1e-12)


def test_top_k_is_cumulative():
    ranking = np.array([[1, 0, 2], [1, 2, 0], [0, 1, 2]])
    hits = M.calculate_top_k(ranking, 3)
    np.testing.assert_array_equal(hits, [[False, True, True], [True, True, True], [False, False, True]])


def test_batches_smaller_than_k_count_every_k_and_unpaired_batches_are_refused():
    """A batch of 2 (a tiny val split) still gives one count per k: with fewer candidates than k, a caption's own
    motion is always among its k nearest. Texts and motions of different counts are no pairs."""
    text = np.eye(2, 4, dtype=np.float32)
    scores = M.score_batch(text, text[::-1].copy(), top_k=3)
    assert scores.top_k_count.tolist() == [0, 2, 2]
    assert M.calculate_R_precision(text, text, 3, sum_all=True).tolist() == [2, 2, 2]
    with pytest.raises(ValueError, match="pairs"):
        M.score_batch(np.zeros((3, 4)), np.zeros((2, 4)))
    with pytest.raises(ValueError, match="pairs"):
        M.calculate_R_precision(np.zeros((3, 4)), np.zeros((2, 4)), 3)


def test_mpjpe_per_frame_and_per_sequence():
    gt = np.zeros((2, 4, 3, 3))
    pred = gt.copy()
    pred[:, :, 1:, 0] = 1.0  # non-root joints off by 1 along x
    pred[1, :, 1:, 0] = 3.0
    pred[:, :, :, 2] += 5.0  # global translation: removed by root alignment
    lengths = np.array([4, 1])
    # Per frame: sequence 0 -> 2/3, sequence 1 -> 2 (root error 0, two joints at 3).
    np.testing.assert_allclose(M.mpjpe_per_frame(pred, gt, lengths), [2 / 3] * 4 + [2.0])
    np.testing.assert_allclose(M.calculate_mpjpe(pred, gt, lengths), (4 * 2 / 3 + 2.0) / 5)
    np.testing.assert_allclose(M.calculate_mpjpe_per_sequence(pred, gt, lengths), [2 / 3, 2.0])
    unaligned = M.calculate_mpjpe(pred[0], gt[0], align_root=False)
    np.testing.assert_allclose(unaligned, (5.0 + 2 * np.sqrt(26.0)) / 3)
    with pytest.raises(ValueError, match="lengths"):
        M.calculate_mpjpe(pred, gt, np.array([5, 1]))
    with pytest.raises(ValueError, match="joints"):
        M.calculate_mpjpe(pred, gt[..., :2])


def test_mean_confidence_interval_uses_ddof_zero():
    mean, ci = M.mean_confidence_interval([1.0, 2.0, 3.0, 4.0])
    assert mean == 2.5
    np.testing.assert_allclose(ci, 1.96 * np.sqrt(1.25) / 2)


def test_non_finite_embeddings_are_named_before_the_matrix_algebra():
    """A NaN in the embeddings (a model emitting NaN) failed in the factorisations with a LinAlgError, and the
    reference path's sqrtm ran for minutes first (past 5 minutes at 512 dims), never reaching the ValueError."""
    from utils.eval_protocol import _frechet_distance

    rng = np.random.default_rng(0)
    gt, gen = rng.standard_normal((200, 64)), rng.standard_normal((200, 64))
    gen[7, 5] = np.nan
    with pytest.raises(ValueError, match="the generated motions' embeddings hold non-finite values"):
        _frechet_distance(gt, gen)
    with pytest.raises(ValueError, match="the means or covariances hold non-finite values"):
        M.calculate_fid(gt, gen)


def test_diversity_of_a_small_set_says_it_is_not_the_protocols(caplog):
    """Under 100 pairs' worth of samples the reference refuses; ours draws N - 1 pairs, now with a warning, once."""
    import logging

    from utils.eval_protocol import _diversity

    emb = np.random.default_rng(0).standard_normal((77, 8))
    with caplog.at_level(logging.WARNING, logger="utils.eval_protocol"):
        assert _diversity(emb, np.random.default_rng(0))[1] == 76
        assert _diversity(emb, np.random.default_rng(1))[1] == 76
    assert [r.getMessage() for r in caplog.records] == [
        "diversity over 77 samples: 76 pairs instead of the protocol's 100 (a test set this small is not comparable "
        "with published numbers)"]
