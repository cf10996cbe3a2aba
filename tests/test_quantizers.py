"""Invariants of the quantizers (CPU, tiny tensors)."""

from __future__ import annotations

import os
import re
import tempfile

import pytest
import torch
import torch.nn.functional as F

from models.fsq import FSQ
from models.quantizers import (
    QuantizeEMA,
    QuantizeEMAReset,
    QuantizeOrig,
    QuantizeReset,
    code_counts,
    perplexity_from_counts,
    select_codes,
    squared_distances,
)
from models.residual_vq import ResidualVQ
from utils.checkpoint import load_checkpoint, save_checkpoint


def test_bincount_perplexity_matches_dense_reference() -> None:
    torch.manual_seed(4)
    k = 50
    indices = torch.randint(0, k, (7, 33)) % 17
    onehot = F.one_hot(indices.reshape(-1), k).float()
    prob = onehot.mean(0)
    dense = torch.exp(-(prob * torch.log(prob + 1e-7)).sum())
    counts = code_counts(indices, k)
    assert torch.allclose(perplexity_from_counts(counts), dense)
    fsq = FSQ([5, 5, 2])
    out = fsq(torch.randn(4, 9, 3))
    prob = F.one_hot(out.indices.reshape(-1), fsq.codebook_size).float().mean(0)
    assert torch.allclose(out.perplexity, torch.exp(-(prob * torch.log(prob + 1e-7)).sum()))
    # -1 ("no code") is not counted
    assert code_counts(torch.tensor([-1, 0, 0, 2]), 3).tolist() == [2, 0, 1]


def test_usage_statistics_accumulate_and_reset() -> None:
    fsq = FSQ([3, 3])
    fsq(torch.full((1, 4, 2), 10.0))
    fsq(torch.full((1, 2, 2), -10.0))
    usage = fsq.code_usage()
    assert usage.counts.sum() == 6 and usage.counts[fsq.codebook_size - 1] == 4 and usage.counts[0] == 2
    assert torch.isclose(usage.active, torch.tensor(2 / 9))
    fsq.reset_usage()
    assert fsq.code_usage().counts.sum() == 0


# ----------------------------------------------------------------------------------------------------------------------
# EMA codebooks


def _batch(seed: int, b: int = 4, n: int = 8, c: int = 6) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, n, c, generator=g)


def test_ema_init_from_leading_rows_and_ema_update() -> None:
    q = QuantizeEMAReset(codebook_size=10, code_dim=6, mu=0.9).train()
    x = _batch(0)
    out = q(x)
    rows = x.reshape(-1, 6)
    # first batch: the codebook is the leading rows, each of them its own nearest code; then one EMA step
    assert bool(q.initted)
    counts = torch.bincount(out.indices.reshape(-1), minlength=10).float()
    sums = torch.zeros(10, 6).index_add_(0, out.indices.reshape(-1), rows)
    exp_sum = 0.9 * rows[:10] + 0.1 * sums
    exp_count = 0.9 * torch.ones(10) + 0.1 * counts
    assert torch.allclose(q.code_sum, exp_sum) and torch.allclose(q.code_count, exp_count)
    alive = exp_count >= 1
    assert torch.allclose(q.codebook[alive], (exp_sum / exp_count[:, None])[alive])
    assert torch.allclose(q.codebook[~alive], rows[:10][~alive])
    assert torch.equal(out.indices.reshape(-1)[:10], torch.arange(10))


def test_dead_codes_are_reset_to_leading_rows() -> None:
    q = QuantizeEMAReset(codebook_size=8, code_dim=6, mu=0.5).train()
    q(_batch(1))
    target = q.codebook[0].clone()
    n_dead = 0
    for seed in range(2, 8):
        # batches that sit on top of code 0: the other codes' EMA counts decay below 1
        x = target + 1e-3 * _batch(seed)
        q(x)
        dead = q.code_count < 1.0
        n_dead += int(dead.sum())
        assert torch.equal(q.codebook[dead], x.reshape(-1, 6)[:8][dead])
        assert torch.allclose(q.codebook[~dead], (q.code_sum / q.code_count[:, None])[~dead])
    assert n_dead > 0


def test_small_batch_is_tiled_for_init() -> None:
    torch.manual_seed(5)
    q = QuantizeEMAReset(codebook_size=20, code_dim=4).train()
    x = torch.randn(1, 3, 4)
    q(x)
    assert bool(q.initted)
    # the codebook rows are copies of the 3 latents plus tiny noise
    nearest = torch.cdist(q.codebook, x[0]).min(-1).values
    assert (nearest < 0.1).all()


def test_eval_mode_is_nearest_code_without_update() -> None:
    q = QuantizeEMAReset(codebook_size=8, code_dim=6).train()
    q(_batch(3))
    q.eval()
    before = {k: v.clone() for k, v in q.state_dict().items()}
    x = _batch(4)
    out = q(x)
    after = q.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    expected = torch.cdist(x.reshape(-1, 6), q.codebook).argmin(-1).view(4, 8)
    assert torch.equal(out.indices, expected)
    assert torch.equal(q.quantize(x), expected)
    assert torch.allclose(out.z_q, q.codebook[expected], atol=1e-6)
    assert torch.isclose(out.aux_loss, F.mse_loss(x, q.codebook[expected]))


def test_ema_state_survives_state_dict_round_trip_and_no_reinit() -> None:
    q = QuantizeEMAReset(codebook_size=8, code_dim=6).train()
    for seed in range(3):
        q(_batch(seed))
    state = q.state_dict()
    assert {"codebook", "code_sum", "code_count", "initted"} <= set(state)
    fresh = QuantizeEMAReset(codebook_size=8, code_dim=6).train()
    fresh.load_state_dict(state)
    for key in state:
        assert torch.equal(fresh.state_dict()[key], state[key])
    x = _batch(10)
    q(x)
    fresh(x)
    assert torch.equal(fresh.codebook, q.codebook)  # continued the same EMA, no re-initialisation
    assert not torch.allclose(fresh.codebook, x.reshape(-1, 6)[:8])


def test_official_codebook_only_state_is_marked_initialised() -> None:
    torch.manual_seed(6)
    codebook = torch.randn(8, 6)
    q = QuantizeEMAReset(codebook_size=8, code_dim=6).train()
    q.load_state_dict({"codebook": codebook})  # strict: the hook fills the missing buffers
    assert bool(q.initted) and torch.equal(q.code_sum, codebook) and torch.equal(q.code_count, torch.ones(8))
    x = codebook.repeat(4, 1).view(4, 8, 6) + 1e-3 * _batch(7)
    q(x)
    # every code was used, so it moved a little towards its latents instead of being replaced by batch rows
    assert torch.allclose(q.codebook, codebook, atol=1e-3)
    assert not torch.allclose(q.codebook, x.reshape(-1, 6)[:8], atol=1e-5)


def test_gumbel_sampling_only_in_training_behind_flag() -> None:
    torch.manual_seed(8)
    deterministic = QuantizeEMAReset(codebook_size=16, code_dim=6, sample_codebook_temp=0.0).train()
    deterministic(_batch(0))
    state = {k: v.clone() for k, v in deterministic.state_dict().items()}
    x = _batch(9, b=64)
    nearest = deterministic.quantize(x)

    def sampled_with(temperature: float, train: bool = True) -> torch.Tensor:
        q = QuantizeEMAReset(codebook_size=16, code_dim=6, sample_codebook_temp=temperature)
        q.load_state_dict(state)
        return q.train(train)(x).indices

    assert torch.equal(sampled_with(1e-6), nearest)  # a cold sample is the nearest code
    hot = sampled_with(1e4)  # a hot one is close to uniform over the codebook
    assert (hot != nearest).float().mean() > 0.8
    assert perplexity_from_counts(code_counts(hot, 16)) > 14
    assert torch.equal(sampled_with(1e4, train=False), nearest)  # eval: always nearest
    deterministic.load_state_dict(state)
    assert torch.equal(deterministic(x).indices, nearest)


def test_gumbel_sampling_follows_softmax_of_negative_distances() -> None:
    torch.manual_seed(3)
    codebook = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [1.5, 0.0]])  # probabilities 0.39, 0.39, 0.12, 0.09
    x = torch.tensor([[0.5, 0.2]]).expand(40_000, 2)
    temperature = 0.5
    counts = code_counts(select_codes(x, codebook, temperature), 4).float()
    expected = torch.softmax(-squared_distances(x[:1], codebook)[0] / temperature, 0)
    # about 0.005 standard deviation per frequency at 40,000 draws; a sign slip in the noise moves them by > 0.1
    assert torch.allclose(counts / counts.sum(), expected, atol=0.02), (counts / counts.sum(), expected)


def test_codebook_quantizers_run_in_fp32_under_autocast() -> None:
    rvq = _trained_rvq(3)
    x = _batch(30).bfloat16()
    expected = rvq(x.float()).indices
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = rvq(x)
    assert torch.equal(out.indices, expected) and out.z_q.dtype == torch.bfloat16
    assert out.aux_loss.dtype == torch.float32


def test_other_t2m_gpt_quantizers() -> None:
    x = _batch(11)
    ema = QuantizeEMA(codebook_size=8, code_dim=6).train()
    ema(_batch(12))
    ema(x)
    assert (ema.code_count > 0).all()  # every code was initialised from a row, so no count has decayed to zero
    torch.testing.assert_close(ema.codebook, ema.code_sum / ema.code_count[:, None])  # no reset: every code is EMA
    # A code left unused for thousands of steps has a tiny but positive count; it is still code_sum / code_count
    # (its value), not pulled towards zero.
    far = torch.full((6,), 100.0)
    with torch.no_grad():
        ema.codebook[3], ema.code_sum[3], ema.code_count[3] = far, 1e-33 * far, 1e-33
    ema(x)
    assert 0 < ema.code_count[3] < 1e-30
    torch.testing.assert_close(ema.codebook[3], far)
    reset = QuantizeReset(codebook_size=8, code_dim=6).train()
    reset(_batch(12))
    out = reset(x)
    unused = torch.bincount(out.indices.reshape(-1), minlength=8) == 0
    assert torch.allclose(reset.codebook[unused], x.reshape(-1, 6)[:8][unused])
    orig = QuantizeOrig(codebook_size=8, code_dim=6, beta=0.25)
    z = x.clone().requires_grad_(True)
    out = orig(z)
    codes = orig.embedding.weight[out.indices]
    expected = F.mse_loss(codes, x) * 1.25
    assert torch.isclose(out.aux_loss, expected)
    (out.z_q.sum() + out.aux_loss).backward()
    # The codebook term moves only the codes and the beta-weighted commitment term only z (the loss value alone
    # cannot tell the two apart); z_q passes its gradient straight through to z.
    rows, diff = out.indices.reshape(-1), (codes - x).detach().reshape(-1, 6)
    torch.testing.assert_close(z.grad, 1 - 0.25 * 2 * (codes - x).detach() / x.numel())
    torch.testing.assert_close(orig.embedding.weight.grad,
                               torch.zeros(8, 6).index_add_(0, rows, 2 * diff / x.numel()))


# ----------------------------------------------------------------------------------------------------------------------
# residual VQ


def _trained_rvq(num_quantizers: int = 4, **kw) -> ResidualVQ:
    rvq = ResidualVQ(num_quantizers, codebook_size=16, code_dim=6, **kw).train()
    for seed in range(6):
        rvq(_batch(seed, b=8))
    return rvq.eval()


def test_rvq_residual_norm_non_increasing() -> None:
    rvq = _trained_rvq()
    x = _batch(20, b=8)
    codes = rvq.quantize_layers(x)
    residual = x.clone()
    mean_norms = [residual.norm(dim=-1).mean()]
    for q in range(4):
        residual = residual - codes.layer_latents[:, :, q]
        mean_norms.append(residual.norm(dim=-1).mean())
    assert all(b <= a + 1e-6 for a, b in zip(mean_norms, mean_norms[1:]))
    assert mean_norms[-1] < mean_norms[0]
    # with a zero code available in every layer, the nearest code can never increase any residual's norm
    for layer in rvq.layers:
        layer.codebook[0] = 0
    codes = rvq.quantize_layers(x)
    residual = x.clone()
    for q in range(4):
        new = residual - codes.layer_latents[:, :, q]
        assert (new.norm(dim=-1) <= residual.norm(dim=-1) + 1e-5).all()
        residual = new
    assert torch.allclose(rvq.indices_to_latents(codes.indices), codes.layer_latents.sum(2), atol=1e-6)


def test_quantize_dropout_keeps_the_first_layers() -> None:
    torch.manual_seed(9)
    rvq = ResidualVQ(4, codebook_size=16, code_dim=6, quantize_dropout_prob=1.0).train()
    active_counts = set()
    for seed in range(30):
        out = rvq(_batch(seed))
        active = (out.indices[0, 0] >= 0).long()
        n_active = int(active.sum())
        assert n_active >= 1 and torch.equal(active, (torch.arange(4) < n_active).long())
        assert (out.indices[..., :n_active] >= 0).all() and (out.indices[..., n_active:] == -1).all()
        assert torch.isnan(rvq.layer_perplexity[n_active:]).all()
        active_counts.add(n_active)
    assert active_counts == {1, 2, 3, 4}
    cutoff = ResidualVQ(4, codebook_size=16, code_dim=6, quantize_dropout_prob=1.0,
                        quantize_dropout_cutoff_index=2).train()
    assert all(int((cutoff(_batch(s)).indices[0, 0] >= 0).sum()) >= 3 for s in range(10))
    assert (rvq.eval()(_batch(0)).indices >= 0).all()


def test_rvq_minus_one_and_missing_layers_decode_to_zero() -> None:
    rvq = _trained_rvq(3)
    x = _batch(21)
    indices = rvq.quantize(x)
    assert torch.equal(rvq.indices_to_latents(torch.full_like(indices, -1)), torch.zeros(4, 8, 6))
    masked = indices.clone()
    masked[..., 2] = -1
    assert torch.allclose(rvq.indices_to_latents(masked), rvq.indices_to_latents(indices[..., :2]))
    first = rvq.layers[0].codebook[indices[..., 0]]
    assert torch.allclose(rvq.indices_to_latents(indices[..., :1]), first)
    with pytest.raises(ValueError, match="q<=3"):
        rvq.indices_to_latents(torch.zeros(1, 2, 4, dtype=torch.long))


def test_out_of_range_codes_fail_with_the_value_and_the_valid_range() -> None:
    rvq = _trained_rvq(3)
    indices = rvq.quantize(_batch(21))
    bad = indices.clone()
    bad[1, 3, 2] = 16
    with pytest.raises(ValueError, match=r"ResidualVQ: layer 2 indices must lie in \[0, 16\) .*got range \[\d+, 16\]"):
        rvq.indices_to_latents(bad)
    bad = indices.clone()
    bad[0, 0, 1] = -5
    with pytest.raises(ValueError, match=r"layer 1 .*got range \[-5, \d+\]"):
        rvq.indices_to_latents(bad)
    for quantizer in (QuantizeEMAReset(16, 6), QuantizeEMA(16, 6), QuantizeReset(16, 6), QuantizeOrig(16, 6)):
        name = type(quantizer).__name__
        with pytest.raises(ValueError, match=rf"{name}: indices must lie in \[0, 16\) .*got range \[-1, 16\]"):
            quantizer.indices_to_latents(torch.tensor([[3, 16, -1]]))
        valid = torch.tensor([[0, 15, -1]])
        assert quantizer.indices_to_latents(valid).shape == (1, 3, 6)
        # The unchecked lookup of a quantizer's own indices gives the same latents.
        assert torch.equal(quantizer.lookup(valid), quantizer.indices_to_latents(valid))
    assert torch.equal(rvq.lookup(indices), rvq.indices_to_latents(indices))
    assert torch.equal(rvq.lookup(indices[..., 0]), rvq.indices_to_latents(indices[..., :1]))


def test_float_codes_fail_naming_the_quantizer() -> None:
    # As the grid quantizers do: a TypeError that names the quantizer, not F.embedding's message about argument #1.
    rvq = _trained_rvq(3)
    with pytest.raises(TypeError, match="ResidualVQ indices must be integers, got torch.float32"):
        rvq.indices_to_latents(rvq.quantize(_batch(21)).float())
    for quantizer in (QuantizeEMAReset(16, 6), QuantizeOrig(16, 6)):
        with pytest.raises(TypeError, match=f"{type(quantizer).__name__} indices must be integers"):
            quantizer.indices_to_latents(torch.tensor([[3.0, 1.0]]))


def test_rvq_forward_eval_matches_deterministic_path_and_stats() -> None:
    rvq = _trained_rvq(3)
    x = _batch(22)
    out = rvq(x)
    codes = rvq.quantize_layers(x)
    assert torch.equal(out.indices, codes.indices)
    assert torch.allclose(out.z_q, codes.layer_latents.sum(2), atol=1e-5)
    before = torch.cat([torch.zeros_like(x[:, :, None]), codes.layer_latents.cumsum(2)[:, :, :-1]], 2)
    residuals = x[:, :, None] - before
    layer_loss = ((residuals - codes.layer_latents) ** 2).mean(dim=(0, 1, 3))
    assert torch.isclose(out.aux_loss, layer_loss.mean(), atol=1e-6)
    assert torch.isclose(out.perplexity, rvq.layer_perplexity.mean())
    usage = rvq.code_usage()
    assert usage.counts.shape == (3, 16) and usage.perplexity.shape == (3,)


def test_rvq_shared_codebook_is_one_module() -> None:
    rvq = ResidualVQ(3, codebook_size=16, code_dim=6, shared_codebook=True).train()
    assert rvq.layers[0] is rvq.layers[2]
    rvq(_batch(0))
    state = rvq.state_dict()
    assert torch.equal(state["layers.0.codebook"], state["layers.2.codebook"])


@pytest.mark.parametrize("shared_codebook", [False, True])
def test_rvq_code_usage_counts_each_layer_once(shared_codebook: bool) -> None:
    # With a shared codebook the Q layers are one module; its usage must still be reported per layer.
    rvq = _trained_rvq(3, shared_codebook=shared_codebook)
    rvq.reset_usage()
    indices = torch.cat([rvq(_batch(30)).indices, rvq(_batch(31)).indices])
    usage = rvq.code_usage()
    expected = torch.stack([code_counts(indices[..., q], 16) for q in range(3)])
    assert torch.equal(usage.counts, expected)
    assert torch.equal(usage.active, (expected > 0).float().mean(-1))
    assert torch.allclose(usage.perplexity, perplexity_from_counts(expected))
    rvq.reset_usage()
    assert rvq.code_usage().counts.sum() == 0


def test_rvq_gradient_is_straight_through() -> None:
    rvq = _trained_rvq(3).train()
    z = _batch(23).requires_grad_(True)
    rvq(z).z_q.sum().backward()
    # each active layer passes the gradient straight to its input: d(sum z_q)/dz = number of layers
    assert torch.allclose(z.grad, torch.full_like(z, 3.0))


# ----------------------------------------------------------------------------------------------------------------------
# torch.distributed: every process keeps the same codebook


def _ddp_worker(rank: int, world: int, init_file: str, result_file: str, codebook_size: int,
                kmeans_init: bool = False) -> None:
    import torch.distributed as dist

    torch.set_num_threads(1)
    torch.manual_seed(rank)  # each process draws its own noise, as the engine seeds them
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        q = QuantizeEMAReset(codebook_size=codebook_size, code_dim=6, mu=0.9, kmeans_init=kmeans_init).train()
        for step in range(3):
            q(_batch(100 * step + rank, b=2))  # each rank sees different data, 16 rows each
        gathered = [torch.zeros_like(q.codebook) for _ in range(world)]
        dist.all_gather(gathered, q.codebook)
        if rank == 0:
            save_checkpoint(result_file, {"codebooks": gathered, "code_count": q.code_count})
    finally:
        dist.destroy_process_group()


@pytest.mark.skipif(not torch.distributed.is_available(), reason="torch.distributed not available")
@pytest.mark.parametrize("codebook_size", [8, 24, 40], ids=["share>=K", "share<K<=batch", "batch<K"])
def test_distributed_codebooks_stay_identical_and_match_one_process(codebook_size: int) -> None:
    import torch.multiprocessing as mp

    with tempfile.TemporaryDirectory() as tmp:
        init_file, result_file = os.path.join(tmp, "init"), os.path.join(tmp, "result.pt")
        mp.spawn(_ddp_worker, args=(2, init_file, result_file, codebook_size), nprocs=2, join=True)
        result = load_checkpoint(result_file)
    codebooks = result["codebooks"]
    assert torch.equal(codebooks[0], codebooks[1])
    if codebook_size > 32:
        return  # fewer rows than codes in the whole batch: the rows are tiled with noise, drawn on the first process
    # One process on the concatenated batch (rank 0's rows first) computes the same EMA state, also when a process's
    # share has fewer rows than codes: the initialisation and the dead-code resets take the global batch's rows.
    single = QuantizeEMAReset(codebook_size=codebook_size, code_dim=6, mu=0.9).train()
    for step in range(3):
        single(torch.cat([_batch(100 * step + r, b=2) for r in range(2)]))
    assert torch.allclose(single.codebook, codebooks[0], atol=1e-6)
    assert torch.allclose(single.code_count, result["code_count"], atol=1e-6)


@pytest.mark.skipif(not torch.distributed.is_available(), reason="torch.distributed not available")
@pytest.mark.parametrize("codebook_size", [8, 24], ids=["share>=K", "share<K<=batch"])
def test_distributed_kmeans_init_is_the_one_process_one(codebook_size: int) -> None:
    import torch.multiprocessing as mp

    with tempfile.TemporaryDirectory() as tmp:
        init_file, result_file = os.path.join(tmp, "init"), os.path.join(tmp, "result.pt")
        mp.spawn(_ddp_worker, args=(2, init_file, result_file, codebook_size, True), nprocs=2, join=True)
        result = load_checkpoint(result_file)
    codebooks = result["codebooks"]
    assert torch.equal(codebooks[0], codebooks[1])
    # k-means ran on both processes' rows from the first process's random start (its seed is 0), as one process
    # seeded 0 does on the concatenated batch.
    torch.manual_seed(0)
    single = QuantizeEMAReset(codebook_size=codebook_size, code_dim=6, mu=0.9, kmeans_init=True).train()
    for step in range(3):
        single(torch.cat([_batch(100 * step + r, b=2) for r in range(2)]))
    assert torch.allclose(single.codebook, codebooks[0], atol=1e-5)
    assert torch.allclose(single.code_count, result["code_count"], atol=1e-5)


def test_bool_codes_fail_naming_the_quantizer() -> None:
    # A bool mask passed as indices decoded silently as codes 0 and 1.
    codes = torch.tensor([[True, False]])
    for quantizer in (QuantizeEMAReset(16, 6), QuantizeOrig(16, 6), FSQ([5, 5]), ResidualVQ(2, 16, 6)):
        label = getattr(quantizer, "label", type(quantizer).__name__)
        with pytest.raises(TypeError, match=f"{re.escape(label)} indices must be integers, got torch.bool"):
            quantizer.indices_to_latents(codes)


def test_commitment_loss_pulls_the_latents_to_their_codes() -> None:
    """The commitment term ||z - sg(code)||^2 is what trains the encoder towards the EMA codebook: its gradient
    reaches z (and only z: the codebook moves by EMA)."""
    torch.manual_seed(0)
    q = QuantizeEMAReset(codebook_size=8, code_dim=6).train()
    q(torch.randn(2, 16, 6))  # initialises the codebook
    q.eval()
    z = torch.randn(2, 16, 6, requires_grad=True)
    out = q(z)
    out.aux_loss.backward()
    code = q.codebook[out.indices]
    assert torch.allclose(z.grad, 2 * (z - code).detach() / z.numel(), atol=1e-7)


def test_kmeans_cluster_empty_after_the_last_round_keeps_its_position() -> None:
    from models.quantizers import kmeans

    a, b = torch.zeros(2), torch.tensor([5.0, 5.0])
    x = torch.stack([a, a, a, b])  # 3 clusters, 2 distinct rows: one starts on a duplicate and stays empty
    for seed in range(10):
        torch.manual_seed(seed)
        means, counts = kmeans(x, 3, 1)
        assert counts.sum() == 4
        for mean in means[counts == 0]:
            assert torch.equal(mean, a), (seed, means, counts)
