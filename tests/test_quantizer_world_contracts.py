"""Quantizer behaviour pinned beyond the main quantizer tests (models.quantizers, models.residual_vq, models.lfq):
float32 distances under CPU autocast, per-row perplexities, the reset and EMA statistics under a simulated
two-process world, the global-batch entropy of LFQ and its gradient, argument and index-shape checks."""

from __future__ import annotations

import math
import re

import pytest
import torch
from test_quantizer_contracts import _batch

import models.lfq as lfq_module
import models.quantizers as quantizers
from models.lfq import LFQ, entropy
from models.quantizers import (
    QuantizeEMAReset,
    QuantizeOrig,
    QuantizeReset,
    code_counts,
    kmeans,
    perplexity_from_counts,
)
from models.residual_vq import ResidualVQ


def _fake_world(monkeypatch, all_reduce, broadcast=lambda t, src=0: t) -> None:
    """A simulated torch.distributed world of two processes, this one rank 0."""
    monkeypatch.setattr(quantizers, "_distributed", lambda: True)
    monkeypatch.setattr(lfq_module, "_distributed", lambda: True)
    monkeypatch.setattr(quantizers.dist, "all_reduce", all_reduce)
    monkeypatch.setattr(quantizers.dist, "broadcast", broadcast)
    monkeypatch.setattr(quantizers.dist, "get_world_size", lambda: 2)
    monkeypatch.setattr(quantizers.dist, "get_rank", lambda: 0)


@pytest.fixture
def twin_world(monkeypatch):
    """The other process holds identical data: an all-reduce sum doubles a tensor, a broadcast keeps it."""
    _fake_world(monkeypatch, lambda t, op=None: t.mul_(2))


@pytest.fixture
def other_world(monkeypatch):
    """The other process adds one to every entry of an all-reduced tensor; a broadcast keeps it."""
    _fake_world(monkeypatch, lambda t, op=None: t.add_(1))


# ---------------------------------------------------------------------------------------------------------------------
# Counting helpers and float32 maths
# ---------------------------------------------------------------------------------------------------------------------

def test_perplexity_of_a_stack_of_histograms_is_one_per_row() -> None:
    """(Q, K) counts (residual VQ usage) give one perplexity per layer, each from its own histogram."""
    counts = torch.tensor([[2, 2, 0], [5, 0, 0], [1, 1, 1]])
    expected = torch.stack([perplexity_from_counts(row) for row in counts])
    torch.testing.assert_close(perplexity_from_counts(counts), expected)
    torch.testing.assert_close(expected, torch.tensor([2.0, 1.0, 3.0]), rtol=1e-5, atol=1e-5)


def test_codebook_distances_stay_float32_under_cpu_autocast() -> None:
    """Two codes that a bf16 product cannot tell apart: under CPU bf16 autocast the nearer one is still chosen."""
    q = QuantizeEMAReset(2, 1)
    with torch.no_grad():
        q.codebook.copy_(torch.tensor([[1.0 + 2 ** -7 - 3e-3], [1.0 + 2 ** -7 + 1e-3]]))
    z = torch.tensor([[[1.0 + 2 ** -7]]])
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert q.quantize(z).item() == 1
        assert q.eval()(z).indices.item() == 1


def test_kmeans_cluster_left_empty_keeps_its_nonzero_position() -> None:
    """A cluster that starts on a duplicate row and ends the last round empty stays at that row (count 0), not at
    the origin."""
    a, b = torch.tensor([3.0, -2.0]), torch.tensor([8.0, 8.0])
    x = torch.stack([a, a, a, b])
    for seed in range(10):
        torch.manual_seed(seed)
        means, counts = kmeans(x, 3, 1)
        assert counts.sum() == 4 and (counts == 0).any()
        for mean in means[counts == 0]:
            assert torch.equal(mean, a), (seed, means, counts)


def test_kmeans_of_fewer_rows_than_clusters_restarts_at_most_every_row() -> None:
    """2 rows, 5 clusters: at most 2 empty clusters can restart at a row per round; the run completes with every
    row counted once."""
    x = torch.tensor([[0.0, 0.0, 0.0], [4.0, 4.0, 4.0]])
    for seed in range(5):
        torch.manual_seed(seed)
        means, counts = kmeans(x, 5, 3)
        assert means.shape == (5, 3) and counts.sum() == 2
        assert all((means == row).all(-1).any() for row in x)

# ---------------------------------------------------------------------------------------------------------------------
# Codebook quantizers: resets, EMA statistics and perplexities across processes
# ---------------------------------------------------------------------------------------------------------------------

def test_initial_codebook_takes_the_next_process_rows_when_this_share_is_short(monkeypatch) -> None:
    """K = 12 codes, 8 rows per process: the codebook is this process's 8 rows then the first 4 of the next one's
    (the start of the global batch), not this process's rows tiled with noise."""
    own = torch.arange(16, dtype=torch.float32).view(1, 8, 2)
    other = 100.0 + own

    def broadcast(t, src=0):
        if src == 1:
            t.copy_(other.reshape(t.shape))
        return t

    _fake_world(monkeypatch, lambda t, op=None: t.mul_(2), broadcast)
    q = QuantizeEMAReset(12, 2, mu=1.0).train()
    q(own)
    expected = torch.cat([own.reshape(8, 2), other.reshape(8, 2)[:4]])
    assert torch.equal(q.codebook, expected)


def test_ema_code_sums_add_up_every_process_rows(twin_world) -> None:
    """Both processes hold the same batch: the EMA step adds twice this process's per-code sums."""
    q = QuantizeEMAReset(8, 6, mu=0.5).train()
    x = _batch(0)
    out = q(x)
    rows = x.reshape(-1, 6)
    sums = torch.zeros(8, 6).index_add_(0, out.indices.reshape(-1), rows)
    torch.testing.assert_close(q.code_sum, 0.5 * rows[:8] + 0.5 * 2 * sums)


def test_reported_usage_does_not_change_the_recorded_counts(other_world) -> None:
    """code_usage() sums over the processes on a copy: asking twice gives the same counts."""
    q = QuantizeEMAReset(8, 6).train()
    counts = code_counts(q(_batch(0)).indices, 8)
    first = q.code_usage().counts.clone()
    second = q.code_usage().counts
    assert torch.equal(first, counts + 1) and torch.equal(second, counts + 1)


def test_orig_perplexity_is_the_global_batchs_in_training_only(other_world) -> None:
    orig = QuantizeOrig(8, 6)
    x = _batch(0)
    out = orig.eval()(x)
    local = code_counts(out.indices, 8)
    assert out.perplexity.item() == pytest.approx(perplexity_from_counts(local).item(), rel=1e-5)
    out = orig.train()(x)
    assert out.perplexity.item() == pytest.approx(perplexity_from_counts(local + 1).item(), rel=1e-5)


def test_reset_quantizer_perplexity_is_the_global_batchs(other_world) -> None:
    q = QuantizeReset(8, 6).train()
    q(_batch(0))
    out = q(_batch(1))
    local = code_counts(out.indices, 8)
    assert out.perplexity.item() == pytest.approx(perplexity_from_counts(local + 1).item(), rel=1e-5)


def test_reset_quantizer_keeps_a_code_used_exactly_once() -> None:
    """Code 0 used twice, codes 1-6 once, code 7 never: only code 7 is replaced by a batch row."""
    q = QuantizeReset(8, 6).train()
    q(_batch(0, b=1, n=8))
    before = q.codebook.clone()
    x = (before[[0, 0, 1, 2, 3, 4, 5, 6]] + 1e-4 * _batch(1, b=1, n=8)[0])[None]
    out = q(x)
    assert code_counts(out.indices, 8).tolist() == [2, 1, 1, 1, 1, 1, 1, 0]
    assert torch.equal(q.codebook[:7], before[:7])
    assert torch.equal(q.codebook[7], x[0, 7])


def test_a_zero_code_dim_is_refused() -> None:
    with pytest.raises(ValueError, match="codebook_size and code_dim must be positive, got 8, 0"):
        QuantizeEMAReset(8, 0)


# ---------------------------------------------------------------------------------------------------------------------
# LFQ: the codebook entropy of the global batch
# ---------------------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("dense_entropy_max_dim", [14, 2], ids=["dense", "per-bit"])
def test_lfq_codebook_entropy_of_identical_processes_is_the_one_process_one(monkeypatch, dense_entropy_max_dim):
    """Two processes with the same tokens: the global batch's mean assignment is this process's, so the codebook
    entropy has its one-process value, and its gradient is the one-process gradient (world times this process's
    share, which DistributedDataParallel's average then divides back)."""
    lfq = LFQ(8, inv_temperature=1.0, dense_entropy_max_dim=dense_entropy_max_dim)
    h = torch.randn(6, 3, generator=torch.Generator().manual_seed(0), requires_grad=True)
    single = lfq.entropy_terms(h).codebook
    (single_grad,) = torch.autograd.grad(single, h)
    _fake_world(monkeypatch, lambda t, op=None: t.mul_(2))
    twin = lfq.entropy_terms(h).codebook
    (twin_grad,) = torch.autograd.grad(twin, h)
    assert twin.item() == pytest.approx(single.item(), rel=1e-5)
    torch.testing.assert_close(twin_grad, single_grad)


def test_entropy_of_a_batch_of_distributions_is_one_value_each() -> None:
    probs = torch.tensor([[0.5, 0.5], [1.0, 0.0], [0.25, 0.75]])
    expected = torch.tensor([math.log(2), 0.0, -(0.25 * math.log(0.25) + 0.75 * math.log(0.75))])
    torch.testing.assert_close(entropy(probs), expected)

# ---------------------------------------------------------------------------------------------------------------------
# Residual VQ: index shapes
# ---------------------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("shape", [(1, 2, 3, 1), (6,)])
def test_rvq_indices_of_another_rank_are_refused(shape) -> None:
    rvq = ResidualVQ(3, 8, 6)
    with pytest.raises(ValueError, match=r"ResidualVQ: expected indices \(B, N, q<=3\), got " + re.escape(str(shape))):
        rvq.indices_to_latents(torch.zeros(shape, dtype=torch.long))


def test_rvq_dropout_arguments_below_zero_are_refused() -> None:
    with pytest.raises(ValueError, match=r"quantize_dropout_prob must lie in \[0, 1\], got -0.1"):
        ResidualVQ(4, 8, 6, quantize_dropout_prob=-0.1)
    with pytest.raises(ValueError, match=r"quantize_dropout_cutoff_index must be in \[0, 4\), got -1"):
        ResidualVQ(4, 8, 6, quantize_dropout_prob=1.0, quantize_dropout_cutoff_index=-1)


def test_rvq_layers_sample_codes_at_the_given_temperature_in_training() -> None:
    """A hot temperature makes the training-mode codes of every layer nearly uniform, unlike the nearest ones."""
    torch.manual_seed(0)
    rvq = ResidualVQ(2, codebook_size=16, code_dim=6, sample_codebook_temp=1e4).train()
    rvq(_batch(0, b=8))
    x = _batch(1, b=8)
    nearest = rvq.quantize(x)
    sampled = rvq(x).indices
    assert (sampled[..., 0] != nearest[..., 0]).float().mean() > 0.5


def test_rvq_perplexity_averages_only_the_layers_that_ran() -> None:
    torch.manual_seed(2)
    rvq = ResidualVQ(3, codebook_size=8, code_dim=6, quantize_dropout_prob=1.0).train()
    dropped = 0
    for seed in range(10):
        out = rvq(_batch(seed))
        active = int((out.indices[0, 0] >= 0).sum())
        dropped += active < 3
        assert torch.isfinite(out.perplexity)
        torch.testing.assert_close(out.perplexity, rvq.layer_perplexity[:active].mean())
    assert dropped > 0


# ---------------------------------------------------------------------------------------------------------------------
# LFQ: index range
# ---------------------------------------------------------------------------------------------------------------------

def test_lfq_refuses_minus_one_and_names_the_range_it_got() -> None:
    """A grid has no empty code: -1 is out of range, and the error gives the smallest and largest index."""
    lfq = LFQ(8)
    with pytest.raises(ValueError, match=r"LFQ\(8\): indices must lie in \[0, 8\), got range \[-1, 2\]"):
        lfq.indices_to_codes(torch.tensor([2, -1]))
    with pytest.raises(ValueError, match=r"got range \[0, 9\]"):
        lfq.indices_to_latents(torch.tensor([[0, 9]]))


def test_grid_quantizer_cast_to_bf16_gives_float32_grid_coordinates() -> None:
    """The projection runs in the weights' bf16, the grid coordinates come back in float32 (as indices_to_codes
    gives them), from the projected latents cast up."""
    lfq = LFQ(16, dim=10).to(torch.bfloat16)
    z = torch.randn(2, 3, 10, generator=torch.Generator().manual_seed(0)).bfloat16()
    codes, indices = lfq.encode_codes(z)
    assert codes.dtype == torch.float32
    assert torch.equal(codes, lfq.indices_to_codes(indices))
