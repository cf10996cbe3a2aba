"""FSQ (finite scalar quantization, MotionMillion / FSQ-MARDM): the level grid, indices, bound, snapping to the grid,
gradients and bad input (CPU, tiny tensors)."""

from __future__ import annotations

import math

import pytest
import torch

from models.fsq import FSQ
from models.tokenizers import AE_MODELS, VQ_MODELS

REGISTRY_LEVELS = sorted({tuple(f.keywords["levels"]) for f in {**AE_MODELS, **VQ_MODELS}.values()
                          if "levels" in f.keywords})
EXTRA_LEVELS = [(2,), (3,), (4,), (6,), (7, 3), (8, 6, 5), (2, 7, 4)]


def test_registry_level_sets_are_covered() -> None:
    assert (8, 6, 6, 5, 5, 5) in REGISTRY_LEVELS and (5,) * 8 in REGISTRY_LEVELS
    assert math.prod((8, 6, 6, 5, 5, 5)) == 36_000


@pytest.mark.parametrize("levels", REGISTRY_LEVELS + EXTRA_LEVELS, ids=str)
def test_fsq_indices_round_trip(levels: tuple[int, ...]) -> None:
    fsq = FSQ(levels)
    assert fsq.codebook_size == math.prod(levels)
    indices = torch.arange(fsq.codebook_size)
    codes = fsq.indices_to_codes(indices)
    assert torch.equal(fsq.codes_to_indices(codes), indices)
    # the round trip makes the map injective: every index has its own grid point, all inside [-1, 1]
    assert codes.min() == -1 and codes.max() <= 1


@pytest.mark.parametrize("levels", REGISTRY_LEVELS + EXTRA_LEVELS, ids=str)
def test_fsq_codes_on_grid_and_consistent(levels: tuple[int, ...]) -> None:
    torch.manual_seed(0)
    fsq = FSQ(levels, dim=12)
    z = torch.randn(3, 40, 12) * 3
    out = fsq(z)
    codes, indices = fsq.encode_codes(z)
    assert torch.equal(out.indices, indices) and indices.dtype == torch.long
    assert indices.min() >= 0 and indices.max() < fsq.codebook_size
    half = torch.tensor([lv // 2 for lv in levels], dtype=torch.float32)
    scaled = codes * half
    assert torch.equal(scaled, scaled.round())
    assert (scaled >= -half).all() and (scaled <= torch.tensor(levels) - 1 - half).all()
    assert torch.equal(fsq.indices_to_codes(indices), codes.detach())
    assert torch.allclose(out.z_q, fsq.indices_to_latents(indices), atol=1e-6)
    assert float(out.aux_loss) == 0.0


def test_fsq_even_levels_are_asymmetric_and_zero_maps_to_zero() -> None:
    fsq = FSQ([8, 5, 2])
    grid = fsq.grid_values()
    assert torch.allclose(grid[0], torch.tensor([-1, -0.75, -0.5, -0.25, 0, 0.25, 0.5, 0.75]))
    assert torch.allclose(grid[1], torch.tensor([-1, -0.5, 0, 0.5, 1]))
    assert torch.allclose(grid[2], torch.tensor([-1.0, 0.0]))
    assert torch.equal(fsq.quantize_latent(torch.zeros(1, 3)), torch.zeros(1, 3))
    # large inputs reach both ends of the grid
    assert torch.allclose(fsq.quantize_latent(torch.full((1, 3), 50.0)), torch.tensor([[0.75, 1.0, 0.0]]))
    assert torch.allclose(fsq.quantize_latent(torch.full((1, 3), -50.0)), torch.tensor([[-1.0, -1.0, -1.0]]))


@pytest.mark.parametrize("levels", [(8, 5, 5, 5), (7, 6, 3), (5,) * 8], ids=str)
def test_snap_to_grid_nearest_and_idempotent(levels: tuple[int, ...]) -> None:
    torch.manual_seed(1)
    fsq = FSQ(levels)
    coords = torch.rand(64, len(levels)) * 2.6 - 1.3
    snapped = fsq.snap_to_grid(coords)
    assert torch.equal(fsq.snap_to_grid(snapped), snapped)
    for d, grid in enumerate(fsq.grid_values()):
        nearest = grid[(coords[:, d, None] - grid[None]).abs().argmin(-1)]
        assert torch.allclose(snapped[:, d], nearest)
    codes = fsq.indices_to_codes(torch.arange(fsq.codebook_size)[:500])
    assert torch.equal(fsq.snap_to_grid(codes), codes)


def test_fsq_projection_and_gradient() -> None:
    torch.manual_seed(2)
    assert isinstance(FSQ([8, 5, 5], dim=3).project_in, torch.nn.Identity)
    fsq = FSQ([8, 5, 5], dim=16)
    assert isinstance(fsq.project_in, torch.nn.Linear) and fsq.project_in.out_features == 3
    assert "_levels" not in fsq.state_dict() and "usage_counts" not in fsq.state_dict()
    z = torch.randn(2, 10, 16, requires_grad=True)
    fsq(z).z_q.sum().backward()
    assert z.grad is not None and z.grad.abs().sum() > 0


def test_fsq_runs_in_fp32_under_autocast() -> None:
    torch.manual_seed(3)
    fsq = FSQ([8, 8, 8, 5, 5, 5], dim=32)
    z = torch.randn(2, 12, 32).bfloat16()
    expected = fsq(z.float()).indices
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = fsq(z)
    assert torch.equal(out.indices, expected)
    assert out.z_q.dtype == torch.bfloat16


def test_fsq_bad_input() -> None:
    fsq = FSQ([5, 5])
    with pytest.raises(ValueError, match="last dim 2"):
        fsq.codes_to_indices(torch.zeros(3, 4))
    with pytest.raises(ValueError, match=r"\[0, 25\)"):
        fsq.indices_to_codes(torch.tensor([25]))
    with pytest.raises(ValueError, match="levels"):
        FSQ([5, 1])


@pytest.mark.parametrize("levels", [(8, 5, 5), (8, 8, 8, 8, 8, 8, 8, 8, 8)])
def test_fsq_empty_batch_gives_empty_indices(levels: tuple[int, ...]) -> None:
    # Both index paths: the float product (K <= 2**24) and the integer sum.
    fsq = FSQ(list(levels), dim=6)
    z = torch.zeros(0, 4, 6)
    assert fsq.quantize(z).shape == (0, 4)
    out = fsq(z)
    assert out.z_q.shape == (0, 4, 6) and out.indices.shape == (0, 4) and out.indices.dtype == torch.long


@pytest.mark.parametrize("levels", [(8, 5, 5), (8, 8, 8, 8, 8, 8, 8, 8, 8)])
def test_fsq_nan_latent_has_no_code_and_reaches_the_loss(levels: tuple[int, ...]) -> None:
    # A diverged encoder's NaN must come out of the quantizer as NaN, for the engine's non-finite-loss stop, not as an
    # IndexError of the usage statistics; its index is -1 ("no code"), which decoding refuses.
    torch.manual_seed(5)
    fsq = FSQ(list(levels), dim=6).train()
    z = torch.randn(2, 3, 6)
    expected = fsq.quantize(z)
    z[1, 2, 0] = float("nan")
    finite = torch.ones(2, 3, dtype=torch.bool)
    finite[1, 2] = False
    out = fsq(z)
    assert int(out.indices[1, 2]) == -1 and torch.equal(out.indices[finite], expected[finite])
    assert torch.isnan(out.z_q[1, 2]).all() and torch.isfinite(out.z_q[finite]).all()
    assert int(fsq.code_usage().counts.sum()) == 5 and torch.isfinite(out.perplexity)
    assert torch.equal(fsq.eval().quantize(z), out.indices)
    with pytest.raises(ValueError, match=r"indices must lie in \[0, "):
        fsq.indices_to_latents(out.indices)


@pytest.mark.parametrize("levels", [(7, 5, 5, 5, 5), (15, 7)])
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_fsq_indices_of_half_precision_codes(levels: tuple[int, ...], dtype: torch.dtype) -> None:
    """Grid codes that went through bf16 / fp16 (autocast, a half-precision sampler) still give their own index:
    without rounding the scaled codes, 1,250 of the 4,375 codes of [7, 5, 5, 5, 5] came back one index off."""
    fsq = FSQ(list(levels))
    every = torch.arange(fsq.codebook_size)
    assert torch.equal(fsq.codes_to_indices(fsq.indices_to_codes(every).to(dtype)), every)


def test_fsq_bound_saturates_at_the_reference_half_widths() -> None:
    # MotionMillion's bound: tanh(z + shift) * (L - 1) * (1 + 1e-3) / 2 - offset (0.5 for even L); the eps sets where
    # a trained tokenizer's rounding boundaries fall.
    big = FSQ([8, 5, 5, 5]).bound(torch.full((1, 4), 50.0))[0]
    assert big.tolist() == pytest.approx([7 * 1.001 / 2 - 0.5, 4 * 1.001 / 2, 4 * 1.001 / 2, 4 * 1.001 / 2], abs=1e-6)
    small = FSQ([8, 5, 5, 5]).bound(torch.full((1, 4), -50.0))[0]
    assert small.tolist() == pytest.approx([-7 * 1.001 / 2 - 0.5, -4 * 1.001 / 2, -4 * 1.001 / 2, -4 * 1.001 / 2],
                                           abs=1e-6)
