"""The metrics and the evaluation protocol's helpers: behaviour the other tests leave open (argument checks, the
clamps at zero, the sqrtm retry, boundary values, the resumable results file)."""

from __future__ import annotations

import hashlib
import json
import warnings
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from utils import eval_protocol as EP
from utils import metrics as M

# ---------------------------------------------------------------------------------------------------------------------
# utils.metrics
# ---------------------------------------------------------------------------------------------------------------------

def test_activation_statistics_need_two_rows():
    """One sample has no unbiased covariance: refused by name rather than a NaN covariance."""
    with pytest.raises(ValueError, match="N >= 2"):
        M.calculate_activation_statistics(np.ones((1, 4)))
    mu, cov = M.calculate_activation_statistics(np.array([[0.0, 1.0], [2.0, 3.0]]))
    np.testing.assert_allclose(mu, [1.0, 2.0])
    np.testing.assert_allclose(cov, [[2.0, 2.0], [2.0, 2.0]])


def test_frechet_distance_refuses_means_of_other_shapes_even_when_they_broadcast():
    sigma = np.eye(3)
    with pytest.raises(ValueError, match="mean vectors differ"):
        M.calculate_frechet_distance(np.zeros(3), sigma, np.zeros(1), sigma)


def test_frechet_distance_refuses_covariances_of_other_shapes():
    with pytest.raises(ValueError, match="covariances must both be"):
        M.calculate_frechet_distance(np.zeros(3), np.eye(3), np.zeros(3), np.eye(2))


def test_frechet_distance_that_overflows_is_an_error_not_inf():
    """Finite but huge means overflow the squared distance: an error that says so, not an infinite FID, and no
    numpy overflow warning on the way."""
    one = np.eye(1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(ValueError, match="FID is inf: .* too large for float64"):
            M.calculate_frechet_distance(np.array([1e200]), one, np.array([-1e200]), one)


def test_frechet_distance_refuses_a_large_imaginary_root():
    """A non-PSD covariance has a matrix square root with imaginary diagonal entries far above rounding noise."""
    with pytest.raises(ValueError, match="imaginary component"):
        M.calculate_frechet_distance(np.zeros(2), np.diag([1.0, 1.0]), np.zeros(2), np.diag([-1.0, 1.0]))


def test_frechet_distance_retries_with_eps_on_both_diagonals(monkeypatch):
    """When sqrtm of the product is not finite, it is retried on (S1 + eps I)(S2 + eps I)."""
    calls = []
    real_sqrtm = M.linalg.sqrtm

    def fake_sqrtm(a):
        calls.append(np.array(a))
        if len(calls) == 1:
            return np.full_like(a, np.nan)
        return real_sqrtm(a)

    monkeypatch.setattr(M.linalg, "sqrtm", fake_sqrtm)
    s1, s2 = np.diag([1.0, 2.0]), np.diag([3.0, 4.0])
    got = M.calculate_frechet_distance(np.zeros(2), s1, np.zeros(2), s2, eps=0.5)
    assert len(calls) == 2
    np.testing.assert_allclose(calls[1], (s1 + 0.5 * np.eye(2)) @ (s2 + 0.5 * np.eye(2)))
    expected = 3 + 7 - 2 * (np.sqrt(1.5 * 3.5) + np.sqrt(2.5 * 4.5))
    assert got == pytest.approx(max(expected, 0.0), abs=1e-12)


def test_fid_of_a_set_with_itself_is_never_negative():
    """Rounding can push the self-distance a hair below zero; the result is clamped at 0 (both FID paths)."""
    for seed in range(10):
        x = np.random.default_rng(seed).standard_normal((40, 6)).astype(np.float32)
        assert M.calculate_fid(x, x) >= 0.0
        assert EP._frechet_distance(x, x) >= 0.0


def test_distance_matrix_is_exactly_zero_where_rounding_goes_negative():
    """The squared distance is clamped at 0 (not made absolute): identical rows whose rounded square is negative
    have distance exactly 0."""
    rows = (np.random.default_rng(2).standard_normal((64, 32)) * 30).astype(np.float32)
    raw = -2 * np.dot(rows, rows.T)
    raw = raw + np.sum(np.square(rows), axis=1, keepdims=True)
    raw = raw + np.sum(np.square(rows), axis=1)
    negative = np.diag(raw) < 0
    assert negative.any()
    dist = M.euclidean_distance_matrix(rows, rows)
    assert np.all(np.diag(dist)[negative] == 0.0)


def test_distance_matrix_refuses_embeddings_of_other_widths_by_name():
    with pytest.raises(ValueError, match=r"expected \(N1, D\) and \(N2, D\)"):
        M.euclidean_distance_matrix(np.zeros((2, 3)), np.zeros((2, 1)))


def test_matching_score_refuses_unpaired_embeddings_that_would_broadcast():
    with pytest.raises(ValueError, match="one shape"):
        M.calculate_matching_score(np.zeros((3, 4)), np.zeros((1, 4)))


def test_explicit_pairs_are_validated():
    acts = np.random.default_rng(0).standard_normal((10, 3))
    idx = np.arange(4)
    with pytest.raises(ValueError, match="give both"):
        M.calculate_diversity(acts, 4, first_indices=idx)
    with pytest.raises(ValueError, match="4 entries"):
        M.calculate_diversity(acts, 4, idx, np.array([1]))
    with pytest.raises(ValueError, match=r"indices must lie in \[0, 10\)"):
        M.calculate_diversity(acts, 4, idx, np.array([0, 1, 2, -1]))
    with pytest.raises(ValueError, match=r"indices must lie in \[0, 10\)"):
        M.calculate_diversity(acts, 4, idx, np.array([0, 1, 2, 10]))
    # Index 0 and n - 1 are valid.
    got = M.calculate_diversity(acts, 2, np.array([0, 9]), np.array([9, 0]))
    assert got == pytest.approx(np.linalg.norm(acts[0] - acts[9]))


def test_random_draw_needs_more_samples_than_pairs():
    acts = np.random.default_rng(0).standard_normal((5, 3))
    with pytest.raises(ValueError, match="need more than 5 samples"):
        M.calculate_diversity(acts, 5, rng=np.random.default_rng(0))
    assert np.isfinite(M.calculate_diversity(acts, 4, rng=np.random.default_rng(0)))


def test_diversity_refuses_activations_that_are_not_2d():
    with pytest.raises(ValueError, match=r"\(N, D\)"):
        M.calculate_diversity(np.zeros((4, 2, 3)), 2, np.array([0, 1]), np.array([1, 2]))


def test_joints_must_have_three_coordinates():
    with pytest.raises(ValueError, match="joints"):
        M.calculate_mpjpe(np.zeros((4, 3, 2)), np.zeros((4, 3, 2)))


def test_mpjpe_lengths_must_be_one_per_sequence_and_at_least_one():
    pred, gt = np.zeros((2, 4, 3, 3)), np.ones((2, 4, 3, 3))
    with pytest.raises(ValueError, match="lengths"):
        M.calculate_mpjpe_per_sequence(pred, gt, np.array([4, 0]))
    with pytest.raises(ValueError, match="lengths"):
        M.mpjpe_per_frame(pred, gt, np.array([3]))


def test_confidence_interval_of_one_replication_is_zero():
    assert M.mean_confidence_interval([0.25]) == (0.25, 0.0)


def test_root_alignment_removes_the_translation_of_both_sequences():
    gt = np.random.default_rng(4).standard_normal((2, 5, 4, 3)) + np.array([10.0, -3.0, 7.0])
    pred = gt + np.array([1.0, 2.0, -0.5])  # the same poses, translated
    np.testing.assert_allclose(M.mpjpe_per_frame(pred, gt), np.zeros(10), atol=1e-12)
    np.testing.assert_allclose(M.calculate_mpjpe_per_sequence(pred, gt, np.array([5, 2])), [0.0, 0.0], atol=1e-12)


# ---------------------------------------------------------------------------------------------------------------------
# utils.eval_protocol
# ---------------------------------------------------------------------------------------------------------------------

def test_renormalize_keeps_a_half_precision_tensor_half():
    d = 4
    motion = torch.arange(8, dtype=torch.float16).reshape(2, d)
    out = EP.renormalize(motion, np.zeros(d), np.full(d, 2.0), np.ones(d), np.ones(d))
    assert out.dtype == torch.float16
    torch.testing.assert_close(out, (motion * 2 - 1))


def test_renormalize_refuses_statistics_of_another_width():
    d = 3
    motion = np.zeros((2, d), np.float32)
    with pytest.raises(ValueError, match="from_mean"):
        EP.renormalize(motion, np.zeros(1), np.ones(d), np.zeros(d), np.ones(d))


def test_renormalize_with_identical_statistics_returns_the_input_object():
    d = 3
    motion = torch.randn(2, 5, d, generator=torch.Generator().manual_seed(0))
    mean, std = np.linspace(-1, 1, d).astype(np.float32), np.linspace(0.5, 2, d).astype(np.float32)
    assert EP.renormalize(motion, mean, std, mean.copy(), std.copy()) is motion


def test_renormalize_with_other_std_only_changes_the_motion():
    d = 3
    motion = np.ones((1, d), np.float32)
    out = EP.renormalize(motion, np.zeros(d), np.full(d, 2.0), np.zeros(d), np.ones(d))
    np.testing.assert_allclose(out, 2 * motion)


def test_location_free_drops_a_path_only_when_its_sha256_is_set():
    meta = {"path": "/a/b.tar", "sha256": None, "x": 1}
    assert EP.location_free(meta) == meta
    assert EP.location_free({"path": "/a/b.tar", "sha256": "ab", "x": 1}) == {"sha256": "ab", "x": 1}


def test_location_free_recurses_into_lists():
    meta = {"parts": [{"path": "/a", "sha256": "1"}, {"tok": "/b", "tok_sha256": "2"}]}
    assert EP.location_free(meta) == {"parts": [{"sha256": "1"}, {"tok_sha256": "2"}]}


def test_protocol_tag_names_only_settings_away_from_their_defaults():
    assert EP.protocol_tag("test", EP.DEFAULT_SEED) == ""
    assert EP.protocol_tag("test", EP.DEFAULT_SEED, None, (EP.MM_BATCHES, EP.MM_REPEATS)) == ""
    assert EP.protocol_tag("val", 7, 16, (2, 10)) == "_val_seed7_eb16_mm2x10"


def test_evaluator_tag_is_the_files_sha256_prefix(tmp_path):
    ev = tmp_path / "other.tar"
    ev.write_bytes(b"weights")
    expected = hashlib.sha256(b"weights").hexdigest()[:8]
    assert EP.evaluator_tag(str(ev), str(tmp_path / "default")) == f"_ev{expected}"
    assert EP.evaluator_tag(None, str(tmp_path / "default")) == ""


def test_replication_seeds_accept_zero_and_the_largest_base():
    assert EP.replication_seeds(0, 3) == [0, 1, 2]
    assert EP.replication_seeds(2**64 - 2, 2) == [2**64 - 2, 2**64 - 1]
    with pytest.raises(ValueError):
        EP.replication_seeds(2**64 - 1, 2)
    with pytest.raises(ValueError):
        EP.replication_seeds(-1, 2)


def test_fast_frechet_distance_equals_the_sqrtm_formula_for_sets_of_other_sizes():
    rng = np.random.default_rng(5)
    a = rng.standard_normal((50, 6)).astype(np.float32)
    b = (rng.standard_normal((73, 6)) * 1.5 + 0.7).astype(np.float32)
    np.testing.assert_allclose(EP._frechet_distance(a, b), M.calculate_fid(a, b), rtol=1e-6)
    np.testing.assert_allclose(EP._frechet_distance(b, a), M.calculate_fid(b, a), rtol=1e-6)


def test_fast_frechet_distance_needs_two_rows():
    with pytest.raises(ValueError, match="N >= 2"):
        EP._frechet_distance(np.zeros((1, 3)), np.ones((5, 3)))


def _lines(path):
    return path.read_text().splitlines(keepends=True)


def test_dropping_rows_removes_their_lines_and_ends_a_torn_kept_line(tmp_path):
    path = tmp_path / "r.jsonl"
    path.write_text('{"eval_key": "a", "seed": 1}\n[1, 2]\n{"eval_key": "b", "seed": 1}')
    assert EP._drop_rows(str(path), "a") == 1
    assert path.read_text() == '{"eval_key": "b", "seed": 1}\n'


def test_ending_a_torn_line_leaves_an_empty_file_alone(tmp_path):
    path = tmp_path / "r.jsonl"
    path.write_text("")
    EP._end_torn_line(str(path))
    assert path.read_text() == ""
    path.write_text('{"a": 1}')
    EP._end_torn_line(str(path))
    assert path.read_text() == '{"a": 1}\n'


def test_finished_rows_are_those_of_the_requested_seeds(tmp_path):
    path = tmp_path / "r.jsonl"
    rows = [{"eval_key": "k", "seed": s, "v": s} for s in (1, 2, 9)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    done = EP._read_finished(str(path), ("k",), [1, 2, 3])
    assert sorted(done) == [1, 2]


def test_diversity_of_exactly_one_hundred_samples_draws_ninety_nine_pairs():
    emb = np.random.default_rng(0).standard_normal((100, 4))
    value, times = EP._diversity(emb, np.random.default_rng(0))
    assert times == 99 and np.isfinite(value)


def _fake(d=3, num_batches=2):
    mean, std = np.zeros(d, np.float32), np.ones(d, np.float32)
    evaluator = SimpleNamespace(mean=mean, std=std)
    loader = SimpleNamespace(dataset=SimpleNamespace(mean=mean, std=std), num_batches=num_batches)
    return evaluator, loader


def test_evaluate_refuses_zero_replications_by_name():
    evaluator, loader = _fake()
    with pytest.raises(ValueError, match="replications must be >= 1"):
        EP.evaluate(evaluator, loader, lambda b: None, replications=0, gt_cache=None, progress=False)


def test_evaluate_refuses_as_many_repeats_as_pairs_before_running():
    evaluator, loader = _fake()
    with pytest.raises(ValueError, match="mm_repeats must exceed"):
        EP.evaluate(evaluator, loader, lambda b: None, replications=1, mm_fn=lambda b: None, mm_repeats=10,
                    mm_times=10, gt_cache=None, progress=False)
