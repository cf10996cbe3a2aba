"""Behaviour of the quantizers (models.quantizers, models.residual_vq, models.lfq) that the other tests leave open:
boundaries of the argument checks, exact EMA / reset boundaries, dtype contracts, usage bookkeeping and the
distributed reductions (simulated with a fake two-process world whose other process holds identical data)."""

from __future__ import annotations

import math

import pytest
import torch

import models.quantizers as quantizers
from models.fsq import FSQ
from models.lfq import LFQ
from models.quantizers import (
    QuantizeEMA,
    QuantizeEMAReset,
    QuantizeOrig,
    QuantizeReset,
    code_counts,
    kmeans,
    perplexity_from_counts,
    round_ste,
)
from models.residual_vq import ResidualVQ


def _batch(seed: int, b: int = 4, n: int = 8, c: int = 6) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, n, c, generator=g)


@pytest.fixture
def twin_world(monkeypatch):
    """A fake torch.distributed world of two processes that hold identical data: an all-reduce sum doubles a tensor
    and a broadcast leaves it as it is."""
    monkeypatch.setattr(quantizers, "_distributed", lambda: True)
    monkeypatch.setattr(quantizers.dist, "all_reduce", lambda t, op=None: t.mul_(2))
    monkeypatch.setattr(quantizers.dist, "broadcast", lambda t, src=0: t)
    monkeypatch.setattr(quantizers.dist, "get_world_size", lambda: 2)
    monkeypatch.setattr(quantizers.dist, "get_rank", lambda: 0)


@pytest.fixture
def other_world(monkeypatch):
    """A fake torch.distributed world whose other process contributes one count (or one unit) to every entry of an
    all-reduced tensor; a broadcast leaves a tensor as it is."""
    monkeypatch.setattr(quantizers, "_distributed", lambda: True)
    monkeypatch.setattr(quantizers.dist, "all_reduce", lambda t, op=None: t.add_(1))
    monkeypatch.setattr(quantizers.dist, "broadcast", lambda t, src=0: t)
    monkeypatch.setattr(quantizers.dist, "get_world_size", lambda: 2)
    monkeypatch.setattr(quantizers.dist, "get_rank", lambda: 0)


# ---------------------------------------------------------------------------------------------------------------------
# Counting helpers
# ---------------------------------------------------------------------------------------------------------------------

def test_perplexity_of_an_empty_histogram_is_one() -> None:
    """No code counted at all (e.g. right after reset_usage) is a perplexity of exp(0) = 1, not NaN."""
    assert perplexity_from_counts(torch.zeros(5, dtype=torch.long)).item() == pytest.approx(1.0)
    q = QuantizeEMAReset(8, 6)
    assert q.code_usage().perplexity.item() == pytest.approx(1.0)


def test_round_ste_rounds_with_an_identity_gradient() -> None:
    x = torch.tensor([0.4, 1.6, -2.5, 3.0], requires_grad=True)
    y = round_ste(x)
    assert torch.equal(y.detach(), x.detach().round())
    (y * torch.tensor([1.0, 2.0, 3.0, 4.0])).sum().backward()
    assert torch.equal(x.grad, torch.tensor([1.0, 2.0, 3.0, 4.0]))
    # FSQ's codes carry the straight-through gradient of that rounding back to its latents
    fsq = FSQ([5, 5, 5])
    z = torch.tensor([[[0.3, -0.7, 0.1]]], requires_grad=True)
    fsq(z).z_q.sum().backward()
    assert (z.grad.abs() > 0).all()


def test_ema_decay_bounds_are_inclusive() -> None:
    """mu = 0 (codebook follows the batch) and mu = 1 (frozen statistics) are both valid EMA decays."""
    for mu in (0.0, 1.0):
        assert QuantizeEMAReset(8, 6, mu=mu).mu == mu
        assert ResidualVQ(2, 8, 6, mu=mu).layers[0].mu == mu


def test_codebook_size_and_cutoff_bounds_are_checked() -> None:
    with pytest.raises(ValueError, match="must be positive"):
        QuantizeEMAReset(0, 6)
    with pytest.raises(ValueError, match="num_quantizers must be >= 1, got 0"):
        ResidualVQ(0, 8, 6)
    with pytest.raises(ValueError, match="quantize_dropout_cutoff_index"):
        ResidualVQ(4, 8, 6, quantize_dropout_cutoff_index=4)
    assert ResidualVQ(4, 8, 6, quantize_dropout_cutoff_index=3).quantize_dropout_cutoff_index == 3


def test_latents_of_the_wrong_rank_are_refused_even_with_the_right_width() -> None:
    q = QuantizeEMAReset(8, 6)
    with pytest.raises(ValueError, match=r"expected latents of shape \(B, N, 6\), got \(32, 6\)"):
        q(torch.randn(32, 6))
    with pytest.raises(ValueError, match="expected latents"):
        q.quantize(torch.randn(32, 6))


def test_empty_index_tensors_decode_to_empty_latents() -> None:
    q = QuantizeEMAReset(8, 6)
    assert q.indices_to_latents(torch.zeros(2, 0, dtype=torch.long)).shape == (2, 0, 6)
    rvq = ResidualVQ(3, 8, 6)
    assert rvq.indices_to_latents(torch.zeros(2, 0, 3, dtype=torch.long)).shape == (2, 0, 6)


def test_kmeans_starts_from_distinct_rows_when_there_are_exactly_k() -> None:
    """k distinct rows and k clusters: the start takes every row once (without replacement), so one round leaves each
    row alone in its cluster."""
    x = torch.arange(8, dtype=torch.float32)[:, None].repeat(1, 3) * 10
    for seed in range(5):
        torch.manual_seed(seed)
        means, counts = kmeans(x, 8, 1)
        assert torch.equal(counts, torch.ones(8))
        assert torch.equal(means[means[:, 0].argsort()], x)


# ---------------------------------------------------------------------------------------------------------------------
# EMA codebooks
# ---------------------------------------------------------------------------------------------------------------------

def test_a_batch_of_exactly_k_rows_initialises_without_noise() -> None:
    """With exactly K rows the codebook is those rows, untouched (noise is only for tiling a smaller batch)."""
    q = QuantizeEMAReset(8, 6, mu=1.0).train()
    x = _batch(0, b=1, n=8)
    q(x)
    assert torch.equal(q.codebook, x.reshape(8, 6))


def test_tiling_noise_has_std_point_zero_one_over_sqrt_dim() -> None:
    torch.manual_seed(0)
    c = 16
    q = QuantizeEMAReset(2000, c, mu=1.0).train()
    x = torch.randn(1, 1, c)
    q(x)
    noise = q.code_sum - x.reshape(1, c)
    assert noise.std().item() == pytest.approx(0.01 / math.sqrt(c), rel=0.05)


def test_a_code_count_of_exactly_one_is_alive() -> None:
    """mu = 1 keeps every code's count at exactly 1 after initialisation: no code is dead (count >= 1), so nothing is
    replaced by the next batch's rows."""
    q = QuantizeEMAReset(8, 6, mu=1.0).train()
    x0 = _batch(0, b=1, n=8)
    q(x0)
    q(_batch(1, b=1, n=8) + 100.0)
    assert torch.equal(q.code_count, torch.ones(8))
    torch.testing.assert_close(q.codebook, x0.reshape(8, 6))


def test_eval_mode_never_initialises_the_codebook() -> None:
    q = QuantizeEMAReset(8, 6).eval()
    out = q(_batch(0))
    assert not bool(q.initted)
    assert torch.equal(q.codebook, torch.zeros(8, 6)) and torch.equal(q.code_count, torch.zeros(8))
    assert torch.equal(out.indices, torch.zeros(4, 8, dtype=torch.long))


def test_lookup_of_code_zero_is_code_zero_and_minus_one_is_zero() -> None:
    q = QuantizeEMAReset(4, 3)
    with torch.no_grad():
        q.codebook.copy_(torch.arange(12, dtype=torch.float32).view(4, 3) + 1)
    idx = torch.tensor([[0, -1, 3]])
    expected = torch.stack([q.codebook[0], torch.zeros(3), q.codebook[3]])[None]
    assert torch.equal(q.lookup(idx), expected)
    assert torch.equal(q.indices_to_latents(idx), expected)
    orig = QuantizeOrig(4, 3)
    out = orig.indices_to_latents(idx)
    assert torch.equal(out[0, 0], orig.embedding.weight[0].detach()) and torch.equal(out[0, 1], torch.zeros(3))
    assert torch.equal(orig.lookup(idx), out)


def test_ema_quantizer_usage_counts_accumulate() -> None:
    q = QuantizeEMAReset(8, 6).train()
    a = q(_batch(0)).indices
    b = q(_batch(1)).indices
    assert torch.equal(q.code_usage().counts, code_counts(torch.cat([a, b]), 8))
    orig = QuantizeOrig(8, 6)
    i = orig(_batch(2)).indices
    assert torch.equal(orig.code_usage().counts, code_counts(i, 8))


def test_ema_without_reset_moves_a_rarely_used_code_to_its_mean() -> None:
    """QuantizeEMA has no dead-code threshold: a code whose count decayed below 1 still becomes its code_sum /
    code_count."""
    ema = QuantizeEMA(8, 6, mu=0.9).train()
    ema(_batch(0))
    target = torch.full((6,), 50.0)
    with torch.no_grad():
        ema.codebook[3] = -100.0  # far from every latent: unused in the next batch
        ema.code_sum[3], ema.code_count[3] = 0.5 * target, 0.5
    ema(_batch(1))
    assert 0 < ema.code_count[3] < 1
    torch.testing.assert_close(ema.codebook[3], target)


def test_quantize_measures_distances_in_float32_for_bf16_latents() -> None:
    """Two codes that bf16 cannot tell apart: the float32 distances pick the nearer one."""
    q = QuantizeEMAReset(2, 1)
    z = torch.tensor([[[1.0 + 2 ** -7]]], dtype=torch.bfloat16)
    with torch.no_grad():
        q.codebook.copy_(torch.tensor([[1.0 + 2 ** -7 - 3e-3], [1.0 + 2 ** -7 + 1e-3]]))
    assert q.quantize(z).item() == 1
    assert q.eval()(z).indices.item() == 1


def test_a_bf16_codebook_quantizer_still_selects_codes() -> None:
    q = QuantizeEMAReset(8, 6).train()
    q(_batch(0))
    x = _batch(1)
    expected = q.eval().quantize(x)
    q16 = q.to(torch.bfloat16)
    assert torch.equal(q16.quantize(x), torch.cdist(x.reshape(-1, 6), q16.codebook.float()).argmin(-1).view(4, 8))
    assert q16(x).indices.shape == expected.shape


def test_reset_quantizer_replaces_only_the_unused_codes() -> None:
    q = QuantizeReset(8, 6).train()
    q(_batch(0))
    before = q.codebook.clone()
    x = before[0] + 1e-3 * _batch(1)  # every latent sits on code 0
    q(x)
    assert torch.equal(q.codebook[0], before[0])
    assert torch.equal(q.codebook[1:], x.reshape(-1, 6)[1:8])


def test_orig_codebook_is_initialised_uniformly_within_one_over_k() -> None:
    torch.manual_seed(0)
    k = 64
    w = QuantizeOrig(k, 32).embedding.weight
    assert w.abs().max() <= 1.0 / k
    assert w.abs().max() > 0.9 / k


# ---------------------------------------------------------------------------------------------------------------------
# Distributed reductions (fake world of two identical processes)
# ---------------------------------------------------------------------------------------------------------------------

def test_reset_quantizer_keeps_the_global_batch_counts(twin_world) -> None:
    q = QuantizeReset(8, 6).train()
    q(_batch(0))
    out = q(_batch(1))
    assert torch.equal(q.code_count, 2 * code_counts(out.indices, 8).float())


def test_ema_reset_quantizer_sums_the_statistics_of_both_processes(twin_world) -> None:
    q = QuantizeEMAReset(8, 6, mu=0.5).train()
    x = _batch(0)
    out = q(x)
    counts = code_counts(out.indices, 8).float()
    torch.testing.assert_close(q.code_count, 0.5 + 0.5 * 2 * counts)


def test_grid_perplexity_is_the_global_batchs_in_training_only(other_world) -> None:
    """Training: the perplexity of the histogram summed over the processes; eval: this process's own batch."""
    lfq = LFQ(8)
    z = lfq.indices_to_codes(torch.tensor([[0, 0, 5, 7]]))
    local = torch.tensor([2, 0, 0, 0, 0, 1, 0, 1])
    assert lfq.eval()(z).perplexity.item() == pytest.approx(perplexity_from_counts(local).item(), rel=1e-5)
    out = lfq.train()(z)
    assert out.perplexity.item() == pytest.approx(perplexity_from_counts(local + 1).item(), rel=1e-5)


def test_ema_perplexity_is_the_global_batchs_in_training(other_world) -> None:
    q = QuantizeEMAReset(8, 6).train()
    out = q(_batch(0))
    counts = code_counts(out.indices, 8)
    assert out.perplexity.item() == pytest.approx(perplexity_from_counts(counts + 1).item(), rel=1e-5)
    assert torch.equal(q.code_usage().counts, counts + 1)  # usage: this process's counts, summed when reported


# ---------------------------------------------------------------------------------------------------------------------
# Residual VQ
# ---------------------------------------------------------------------------------------------------------------------

def test_rvq_usage_ignores_layers_skipped_by_dropout() -> None:
    """Layers after the drawn one are skipped (-1) and counted nowhere, not as the previous layer's last code."""
    torch.manual_seed(1)
    rvq = ResidualVQ(3, codebook_size=8, code_dim=6, quantize_dropout_prob=1.0).train()
    all_indices = []
    for seed in range(8):
        all_indices.append(rvq(_batch(seed)).indices)
    indices = torch.cat(all_indices)
    assert (indices == -1).any()
    expected = torch.stack([code_counts(indices[..., q], 8) for q in range(3)])
    assert torch.equal(rvq.code_usage().counts, expected)


def test_rvq_reset_usage_also_resets_its_layers() -> None:
    rvq = ResidualVQ(2, codebook_size=8, code_dim=6).train()
    rvq(_batch(0))
    assert rvq.layers[0].code_usage().counts.sum() > 0
    rvq.reset_usage()
    assert all(layer.code_usage().counts.sum() == 0 for layer in rvq.layers)


# ---------------------------------------------------------------------------------------------------------------------
# LFQ
# ---------------------------------------------------------------------------------------------------------------------

def test_lfq_argument_checks() -> None:
    for size in (1, 12):
        with pytest.raises(ValueError, match="power of 2"):
            LFQ(size)
    for kwargs in ({"codebook_scale": 0.0}, {"inv_temperature": 0.0}, {"codebook_scale": -1.0}):
        with pytest.raises(ValueError, match="must be positive"):
            LFQ(16, **kwargs)


def test_lfq_without_projections_decodes_to_float32() -> None:
    """No projection (latent width = number of bits): indices and codes decode to float32 latents, as the quantizer
    outputs them."""
    lfq = LFQ(16)
    idx = torch.tensor([[3, 12]])
    assert lfq.indices_to_latents(idx).dtype == torch.float32
    assert lfq.codes_to_latents(lfq.indices_to_codes(idx)).dtype == torch.float32
    z = torch.randn(1, 2, 4, dtype=torch.float64)
    assert lfq(z).z_q.dtype == torch.float64


def test_lfq_codes_of_the_wrong_width_are_refused() -> None:
    lfq = LFQ(8)
    with pytest.raises(ValueError, match=r"LFQ\(8\): expected codes with last dim 3, got shape \(1, 2, 5\)"):
        lfq.codes_to_latents(torch.ones(1, 2, 5))
    assert lfq.codes_to_latents(torch.ones(1, 2, 3)).shape == (1, 2, 3)


def test_lfq_zero_is_not_a_set_bit() -> None:
    lfq = LFQ(16)
    assert lfq.codes_to_indices(torch.zeros(2, 4)).tolist() == [0, 0]
    assert lfq.codes_to_indices(torch.tensor([[0.0, 1e-6, 0.0, -1e-6]])).tolist() == [4]


def test_lfq_indices_to_codes_are_at_the_codebook_scale() -> None:
    lfq = LFQ(8, codebook_scale=0.5)
    assert lfq.indices_to_codes(torch.tensor([5])).tolist() == [[0.5, -0.5, 0.5]]
    z = torch.tensor([[[0.3, -2.0, 1.0]]])
    assert torch.equal(lfq.indices_to_latents(lfq(z).indices), lfq(z).z_q)
    # the dense codebook entropy uses the codes at the scale: confident tokens on two codes give log 2
    h = torch.tensor([[1.0, 1.0, 1.0], [-1.0, -1.0, -1.0]])
    assert lfq.entropy_terms(h).codebook.item() == pytest.approx(math.log(2), rel=1e-4)
    wide = LFQ(8, codebook_scale=0.5, inv_temperature=0.5)
    h = torch.tensor([[1.0, 0.0, -1.0]])
    probs = torch.softmax(2 * 0.5 * h @ wide.indices_to_codes(torch.arange(8)).t(), -1)
    assert wide.entropy_terms(h).codebook.item() == pytest.approx(float(-(probs * probs.log()).sum()), rel=1e-5)


def test_lfq_commitment_gradient_pulls_towards_the_codes() -> None:
    lfq = LFQ(16, entropy_loss_weight=0.0, commitment_loss_weight=2.0).train()
    z = torch.tensor([[[0.5, -0.25, 2.0, -1.5]]], requires_grad=True)
    lfq(z).aux_loss.backward()
    expected = 2.0 * 2 * (z.detach() - z.detach().sign()) / z.numel()
    torch.testing.assert_close(z.grad, expected)


def test_lfq_cast_to_bf16_computes_its_loss_in_float32() -> None:
    lfq = LFQ(16, dim=10).train().to(torch.bfloat16)
    z = torch.randn(2, 3, 10, generator=torch.Generator().manual_seed(0)).bfloat16()
    out = lfq(z)
    assert out.aux_loss.dtype == torch.float32 and out.z_q.dtype == torch.bfloat16
    assert lfq.last_entropy.per_sample.dtype == torch.float32


def test_lfq_last_entropy_holds_per_sample_then_codebook() -> None:
    """Confident tokens spread over all codes: per-sample entropy 0, codebook entropy d log 2."""
    d = 3
    lfq = LFQ(2 ** d, inv_temperature=1.0).train()
    corners = 50.0 * torch.tensor([[a, b, c] for a in (-1.0, 1.0) for b in (-1.0, 1.0) for c in (-1.0, 1.0)])
    lfq(corners[None])
    assert lfq.last_entropy.per_sample.item() == pytest.approx(0.0, abs=1e-6)
    assert lfq.last_entropy.codebook.item() == pytest.approx(d * math.log(2), rel=1e-5)
