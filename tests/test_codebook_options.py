"""The codebook options against collapse: the rotation trick (Fifty et al. 2024) and k-means initialisation, on the
EMA VQ, the other T2M-GPT quantizers and the residual VQ (CPU, tiny tensors). Their multi-process behaviour is in
tests/test_quantizers.py with the other torch.distributed checks."""

from __future__ import annotations

import pytest
import torch

from models.part_aware import PART_AWARE_MODELS
from models.quantizers import (
    QuantizeEMA,
    QuantizeEMAReset,
    QuantizeOrig,
    kmeans,
    quantized_with_gradient,
    select_codes,
)
from models.residual_vq import ResidualVQ
from models.tokenizers import VQ_MODELS


def _batch(seed: int, b: int = 4, n: int = 8, c: int = 6) -> torch.Tensor:
    return torch.randn(b, n, c, generator=torch.Generator().manual_seed(seed))


# ----------------------------------------------------------------------------------------------------------------------
# rotation trick


def test_rotation_trick_value_is_the_code_and_gradient_the_hand_computed_rotation() -> None:
    # e = (1, 0) onto q = (0, 2): r = (1, 1)/sqrt 2 and R = I - 2 r r^T + 2 q^ e^^T = [[0, -1], [1, 0]] (a quarter
    # turn), s = |q|/|e| = 2, so the gradient g = (3, 5) of the output reaches e as s R^T g = 2 (5, -3) = (10, -6).
    e = torch.tensor([[1.0, 0.0]], requires_grad=True)
    q = torch.tensor([[0.0, 2.0]])
    out = quantized_with_gradient(e, q, rotation_trick=True)
    assert torch.allclose(out, q)
    out.backward(torch.tensor([[3.0, 5.0]]))
    assert torch.allclose(e.grad, torch.tensor([[10.0, -6.0]]))
    e_ste = e.detach().clone().requires_grad_(True)
    quantized_with_gradient(e_ste, q).backward(torch.tensor([[3.0, 5.0]]))
    assert torch.equal(e_ste.grad, torch.tensor([[3.0, 5.0]]))


def test_rotation_trick_gradient_is_the_scaled_transposed_rotation() -> None:
    g = torch.Generator().manual_seed(30)
    e = torch.randn(5, 4, generator=g)
    q = torch.randn(5, 4, generator=g)
    e[4] = -q[4] * 0.5  # opposite directions: r = 0
    grad_out = torch.randn(5, 4, generator=g)
    leaf = e.clone().requires_grad_(True)
    out = quantized_with_gradient(leaf, q, rotation_trick=True)
    assert torch.allclose(out, q, atol=1e-6)
    out.backward(grad_out)
    for i in range(5):
        e_hat, q_hat = e[i] / e[i].norm(), q[i] / q[i].norm()
        r = (e_hat + q_hat) / (e_hat + q_hat).norm() if i < 4 else torch.zeros(4)
        rotation = torch.eye(4) - 2 * torch.outer(r, r) + 2 * torch.outer(q_hat, e_hat)
        assert torch.allclose(rotation @ e_hat, q_hat, atol=1e-5)
        expected = q[i].norm() / e[i].norm() * rotation.t() @ grad_out[i]
        assert torch.allclose(leaf.grad[i], expected, atol=1e-5), i
    assert not torch.allclose(leaf.grad, grad_out)


def test_rotation_trick_passes_a_zero_latent_straight_through() -> None:
    e = torch.zeros(1, 3, requires_grad=True)
    q = torch.tensor([[1.0, 2.0, 2.0]])
    out = quantized_with_gradient(e, q, rotation_trick=True)
    out.backward(torch.ones(1, 3))
    assert torch.equal(out, q) and torch.equal(e.grad, torch.ones(1, 3))


def test_quantizers_with_rotation_trick_output_their_codes() -> None:
    x = _batch(31).requires_grad_(True)
    for quantizer in (QuantizeEMAReset(8, 6, rotation_trick=True), QuantizeOrig(8, 6, rotation_trick=True),
                      ResidualVQ(3, 8, 6, rotation_trick=True)):
        quantizer.train()(x)  # initialise (the EMA update then moves the codes)
        out = quantizer.eval()(x)
        assert torch.allclose(out.z_q, quantizer.indices_to_latents(out.indices), atol=1e-5)
        x.grad = None
        out.z_q.pow(2).sum().backward()
        # straight through, the gradient would be 2 z_q (times the number of RVQ layers)
        assert x.grad is not None and not torch.allclose(x.grad, 2 * out.z_q.detach(), atol=1e-3)


# ----------------------------------------------------------------------------------------------------------------------
# k-means initialisation


def _clustered(seed: int, clusters: int = 8, per_cluster: int = 8, c: int = 6, noise: float = 0.05) -> torch.Tensor:
    """``(1, clusters * per_cluster, c)`` rows around well separated centres, grouped by cluster, so that the leading
    rows of the batch all come from the first one or two clusters."""
    g = torch.Generator().manual_seed(seed)
    centres = 3.0 * torch.randn(clusters, c, generator=g)
    rows = centres.repeat_interleave(per_cluster, 0) + noise * torch.randn(clusters * per_cluster, c, generator=g)
    return rows[None]


def test_kmeans_init_quantizes_clustered_data_better_than_leading_rows() -> None:
    x = _clustered(40)
    rows_error = QuantizeEMAReset(8, 6).train()(x).aux_loss  # the first forward's codes are the initial codebook
    torch.manual_seed(0)
    kmeans_error = QuantizeEMAReset(8, 6, kmeans_init=True).train()(x).aux_loss
    assert kmeans_error < 0.1 * rows_error


@pytest.mark.parametrize("mu", [0.5, 0.99])
def test_kmeans_statistics_are_a_fixed_point_of_the_ema_update(mu: float) -> None:
    x = _clustered(41)
    torch.manual_seed(1)
    expected = kmeans(x[0], 8, 10)
    torch.manual_seed(1)
    q = QuantizeEMAReset(8, 6, mu=mu, kmeans_init=True).train()
    q(x)  # initialisation, then one EMA update on the same batch
    # The statistics are the batch's own (counts are cluster sizes, not 1), so the update leaves them where k-means
    # put them; counts of 1 would have become mu + (1 - mu) * size.
    assert torch.equal(q.code_count, expected.counts) and int(q.code_count.sum()) == 64
    assert torch.allclose(q.codebook, expected.means, atol=1e-5)
    assert torch.allclose(q.code_sum, expected.means * expected.counts[:, None], atol=1e-4)
    before = {k: v.clone() for k, v in q.state_dict().items()}
    q(x)
    for key, value in q.state_dict().items():
        assert torch.allclose(value.float(), before[key].float(), atol=1e-4), key


def test_kmeans_restarts_empty_clusters_at_the_worst_quantized_rows() -> None:
    # Ten copies of one point and three others: a random start of four copies leaves three clusters empty; each
    # restarts at one of the far points, whatever the start.
    points = torch.tensor([[0.0, 0.0], [5.0, 0.0], [0.0, 5.0], [5.0, 5.0]])
    x = torch.cat([points[:1].repeat(10, 1), points[1:]])
    for seed in range(5):
        torch.manual_seed(seed)
        means, counts = kmeans(x, 4, 5)
        order = torch.argsort(counts, descending=True, stable=True)
        assert torch.equal(counts[order], torch.tensor([10.0, 1.0, 1.0, 1.0]))
        assert {tuple(m) for m in means.tolist()} == {tuple(p) for p in points.tolist()}
    # Fewer rows than clusters: every row is a mean, the clusters left over are empty.
    torch.manual_seed(0)
    means, counts = kmeans(points[:3], 5, 5)
    assert counts.sum() == 3 and int((counts > 0).sum()) == 3
    assert {tuple(m) for m in means[counts > 0].tolist()} == {tuple(p) for p in points[:3].tolist()}


def test_each_rvq_layer_runs_kmeans_on_its_own_residual() -> None:
    x = _clustered(42, clusters=16, per_cluster=4)
    torch.manual_seed(2)
    rvq = ResidualVQ(3, codebook_size=8, code_dim=6, mu=1.0, kmeans_init=True).train()  # mu 1: no EMA change
    rvq(x)
    torch.manual_seed(2)
    residual = x[0]
    for layer in rvq.layers:
        expected = kmeans(residual, 8, 10)
        assert bool(layer.initted)
        assert torch.equal(layer.code_count, expected.counts)
        assert torch.allclose(layer.code_sum, expected.means * expected.counts[:, None], atol=1e-5)
        residual = residual - expected.means[select_codes(residual, expected.means)]
    assert not torch.allclose(rvq.layers[0].codebook, rvq.layers[1].codebook)


def test_kmeans_and_rotation_settings_are_checked() -> None:
    with pytest.raises(ValueError, match="kmeans_iters must be >= 1"):
        QuantizeEMAReset(8, 6, kmeans_init=True, kmeans_iters=0)
    # An EMA decay outside [0, 1] (e.g. 99 for 0.99) drives code_count negative; a dropout probability above 1
    # drops layers on every batch. Both used to train silently.
    for mu in (-0.1, 1.5, 99.0):
        with pytest.raises(ValueError, match=rf"mu must lie in \[0, 1\], got {mu}"):
            QuantizeEMAReset(8, 6, mu=mu)
        with pytest.raises(ValueError, match="mu must lie in"):
            VQ_MODELS["RVQVAE_Tiny"](mu=mu)
    with pytest.raises(ValueError, match="sample_codebook_temp must be >= 0, got -0.5"):
        QuantizeEMAReset(8, 6, sample_codebook_temp=-0.5)
    for prob in (-0.2, 20.0):
        with pytest.raises(ValueError, match=rf"quantize_dropout_prob must lie in \[0, 1\], got {prob}"):
            VQ_MODELS["RVQVAE_Tiny"](quantize_dropout_prob=prob)
    with pytest.raises(ValueError, match="quantizer_type 'orig' learns"):
        VQ_MODELS["VQVAE_Tiny"](quantizer_type="orig", kmeans_init=True)
    vq = VQ_MODELS["VQVAE_Tiny"](quantizer_type="ema", kmeans_init=True, kmeans_iters=3, rotation_trick=True)
    assert isinstance(vq.quantizer, QuantizeEMA)
    assert (vq.quantizer.kmeans_init, vq.quantizer.kmeans_iters, vq.quantizer.rotation_trick) == (True, 3, True)
    rvq = VQ_MODELS["RVQVAE_Tiny"](kmeans_init=True, rotation_trick=True)
    assert all(layer.kmeans_init and layer.rotation_trick for layer in rvq.quantizer.layers)
    assert not VQ_MODELS["RVQVAE_Tiny"]().quantizer.layers[0].kmeans_init  # off by default: the references' setting
    part_aware = PART_AWARE_MODELS["PartAwareRVQ_Tiny"](kmeans_init=True, kmeans_iters=4, rotation_trick=True)
    assert all(layer.kmeans_iters == 4 and layer.rotation_trick for layer in part_aware.quantizer.layers)
    assert part_aware.model_args["kmeans_init"] is True


@pytest.mark.parametrize("rotation_trick", [False, True])
def test_the_codes_receive_no_gradient(rotation_trick):
    x = torch.tensor([[1.0, 0.5, -0.5]], requires_grad=True)
    codes = torch.tensor([[0.0, 2.0, 1.0]], requires_grad=True)
    out = quantized_with_gradient(x, codes, rotation_trick=rotation_trick)
    out.backward(torch.ones(1, 3))
    assert torch.equal(out.detach(), codes.detach())
    assert codes.grad is None and x.grad is not None


def test_a_short_latent_above_eps_is_still_rotated():
    # |x| = 1e-3 is far above the default eps (1e-6): the gradient is s R^T g with s = |q| / |x| = 2000, not g.
    x = torch.tensor([[1e-3, 0.0]], requires_grad=True)
    q = torch.tensor([[0.0, 2.0]])
    quantized_with_gradient(x, q, rotation_trick=True).backward(torch.tensor([[3.0, 5.0]]))
    assert torch.allclose(x.grad, torch.tensor([[10000.0, -6000.0]]))
