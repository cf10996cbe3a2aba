"""FSQ, tokenizer registry and length-estimator behaviour: clear errors for bad arguments, exact indices past the
float32 range, the exact bound constants, plain ``model_args``, and the length helpers' handling of their inputs
(CPU, tiny tensors)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from models.fsq import FSQ
from models.length_estimator import LengthEstimator, lengths_to_classes, sample_lengths
from models.quantizers import QuantizeEMA, QuantizeEMAReset, QuantizeOrig, QuantizeReset
from models.tokenizers import build_tokenizer

# ----------------------------------------------------------------------------------------------------------------------
# FSQ


def test_fsq_empty_level_list_is_refused_naming_the_levels() -> None:
    with pytest.raises(ValueError, match=r"FSQ levels must be a non-empty list of integers >= 2, got \[\]"):
        FSQ([])


# K = 1000 * 1000 * 17 > 2**24: float32 cannot hold every index, so the indices are summed as integers.
WIDE_LEVELS = [1000, 1000, 17]


def test_fsq_indices_past_float32_precision_are_exact() -> None:
    fsq = FSQ(WIDE_LEVELS)
    top = fsq.codebook_size - 1  # 16,999,999: odd and above 2**24, not a float32
    z = torch.tensor([[[50.0, 50.0, 50.0], [-50.0, -50.0, -50.0], [50.0, -50.0, -50.0], [-50.0, -50.0, 50.0]]])
    assert fsq.quantize(z).tolist() == [[top, 0, 999, 16 * 1000 * 1000]]
    every_kind = torch.tensor([top, top - 2, 16 * 1000 * 1000 + 1, 12_345_677])
    assert torch.equal(fsq.codes_to_indices(fsq.indices_to_codes(every_kind)), every_kind)


def test_fsq_nan_coordinate_has_no_code_with_integer_indices() -> None:
    fsq = FSQ(WIDE_LEVELS)
    nan = float("nan")
    z = torch.tensor([[[50.0, 50.0, 50.0], [nan, 50.0, 50.0]], [[-50.0, -50.0, -50.0], [50.0, 50.0, nan]]])
    codes, indices = fsq.encode_codes(z)
    assert indices.shape == (2, 2) and indices.tolist() == [[fsq.codebook_size - 1, -1], [0, -1]]
    assert torch.isnan(codes[0, 1]).any() and torch.isfinite(codes[0, 0]).all()


@pytest.mark.parametrize("levels", [[2], [2, 3], [4, 8, 6], [8, 8, 8, 5, 5, 5]], ids=str)
def test_fsq_bound_maps_zero_to_zero_for_every_level(levels: list[int]) -> None:
    # shift = atanh(offset / half_l); for L = 2 offset / half_l is 0.999, where any other inverse is far off.
    fsq = FSQ(levels)
    assert torch.allclose(fsq.bound(torch.zeros(3, len(levels))), torch.zeros(3, len(levels)), atol=1e-5)


def test_fsq_without_projections_saves_no_state() -> None:
    # Everything an FSQ holds is derived from ``levels``: a checkpoint keeps none of it.
    assert FSQ([8, 5, 5]).state_dict() == {}
    assert set(FSQ([8, 5, 5], dim=4).state_dict()) == {"project_in.weight", "project_in.bias",
                                                      "project_out.weight", "project_out.bias"}


def test_fsq_bound_keeps_the_input_dtype() -> None:
    fsq = FSQ([8, 5, 5])
    h = torch.linspace(-3, 3, 12).view(4, 3)
    bounded = fsq.bound(h.bfloat16())
    assert bounded.dtype == torch.bfloat16
    assert torch.allclose(bounded.float(), fsq.bound(h), atol=0.05)


@pytest.mark.parametrize("levels", [[1002], [8, 2048], [1001, 5]], ids=str)
def test_fsq_refuses_levels_its_bound_overshoots(levels: list[int]) -> None:
    # bound() widens the grid by (1 + 1e-3): past 1000 levels that margin exceeds half a step, so saturated inputs
    # rounded to integers beyond the grid and gave indices outside [0, K) (negative ones among them).
    with pytest.raises(ValueError, match=r"FSQ levels must be at most 1000 .* got \[" + str(levels[0])):
        FSQ(levels)


def test_fsq_largest_level_keeps_saturated_inputs_on_the_grid() -> None:
    fsq = FSQ([1000, 999])
    z = torch.tensor([[[50.0, 50.0], [-50.0, -50.0], [50.0, -50.0]]])
    indices = fsq.quantize(z)
    assert indices.tolist() == [[fsq.codebook_size - 1, 0, 999]]
    assert torch.equal(fsq.codes_to_indices(fsq.quantize_latent(z[0])), indices[0])


# ----------------------------------------------------------------------------------------------------------------------
# tokenizers: the constructor arguments reach the quantizer, and the registered presets


@pytest.mark.parametrize("quantizer_type, cls", [("ema_reset", QuantizeEMAReset), ("ema", QuantizeEMA),
                                                 ("reset", QuantizeReset)])
def test_vqvae_codebook_settings_reach_the_quantizer(quantizer_type: str, cls: type) -> None:
    model = build_tokenizer("VQVAE_Tiny", quantizer_type=quantizer_type, mu=0.9, rotation_trick=True)
    assert type(model.quantizer) is cls
    assert model.quantizer.mu == 0.9 and model.quantizer.rotation_trick is True


def test_vqvae_orig_codebook_takes_beta_and_refuses_kmeans() -> None:
    model = build_tokenizer("VQVAE_Tiny", quantizer_type="orig", beta=0.25, rotation_trick=True)
    assert type(model.quantizer) is QuantizeOrig
    assert model.quantizer.beta == 0.25 and model.quantizer.rotation_trick is True
    with pytest.raises(ValueError, match="kmeans_init initialises the EMA and reset codebooks"):
        build_tokenizer("VQVAE_Tiny", quantizer_type="orig", kmeans_init=True)


def test_rvqvae_settings_reach_the_residual_quantizer() -> None:
    shared = build_tokenizer("RVQVAE_Tiny", shared_codebook=True, quantize_dropout_prob=0.5, mu=0.9)
    assert len({id(layer) for layer in shared.quantizer.layers}) == 1
    assert shared.quantizer.quantize_dropout_prob == 0.5
    assert all(layer.mu == 0.9 for layer in shared.quantizer.layers)
    separate = build_tokenizer("RVQVAE_Tiny")
    assert len({id(layer) for layer in separate.quantizer.layers}) == separate.num_quantizers == 3


def test_lfq_autoencoder_weights_reach_the_quantizer() -> None:
    default = build_tokenizer("LFQ_AE_Tiny")
    assert default.quantizer.entropy_loss_weight == 0.1 and default.quantizer.commitment_loss_weight == 0.0
    tuned = build_tokenizer("LFQ_AE_Tiny", entropy_loss_weight=0.3, commitment_loss_weight=0.05)
    assert tuned.quantizer.entropy_loss_weight == 0.3 and tuned.quantizer.commitment_loss_weight == 0.05


def test_fsq_autoencoder_records_levels_as_plain_ints() -> None:
    # Levels read from a config or an array are kept as a list of Python ints, as a weights_only checkpoint needs.
    model = build_tokenizer("FSQ_AE_Tiny", levels=np.array([7, 5, 3]))
    assert model.model_args["levels"] == [7, 5, 3]
    assert all(type(level) is int for level in model.model_args["levels"])
    assert model.codebook_size == 105 and model.grid_dim == 3


@pytest.mark.parametrize("name, input_width, codebook_size, unit_length", [
    ("LFQ_AE", 67, 8192, 4), ("VQ_AE_Model", 67, 512, 4), ("FSQ_MotionMillion", 272, 64_000, 2),
    ("FSQ_AE_High", 67, 64_000, 4), ("AE_Model", 67, None, 4),
])
def test_registered_presets_keep_their_input_codebook_and_unit_length(name: str, input_width: int,
                                                                     codebook_size: int | None,
                                                                     unit_length: int) -> None:
    with torch.device("meta"):
        model = build_tokenizer(name)
    assert model.input_width == input_width and model.unit_length == unit_length
    if codebook_size is not None:
        assert model.codebook_size == codebook_size


@pytest.mark.parametrize("name, overrides, field", [("AE_Tiny", {"width": 0}, "width"),
                                                    ("AE_Tiny", {"output_emb_width": 0}, "latent_dim"),
                                                    ("VQVAE_Tiny", {"code_dim": 0}, "latent_dim")])
def test_a_zero_width_backbone_is_refused_when_built(name: str, overrides: dict, field: str) -> None:
    # A convolution of no channels builds without a word and fails only at the first forward pass.
    with pytest.raises(ValueError, match=f"{field} must be >= 1, got 0"):
        build_tokenizer(name, **overrides)


@pytest.mark.parametrize("shape, message", [
    ((2, 0, 67), r"FSQAE: T=0 frames is not a positive multiple of the downsampling factor 4"),
    ((8, 67), r"FSQAE: expected motion of shape \(B, T, 67\), got \(8, 67\)"),
    ((1, 2, 8, 67), r"FSQAE: expected motion of shape \(B, T, 67\), got \(1, 2, 8, 67\)"),
], ids=["no frames", "no batch axis", "extra axis"])
def test_motion_without_frames_or_batch_axis_is_refused(shape: tuple[int, ...], message: str) -> None:
    model = build_tokenizer("FSQ_AE_Tiny").eval()
    with pytest.raises(ValueError, match=message):
        model.encode(torch.zeros(shape))


def test_rvqvae_decodes_first_layer_indices_without_a_layer_axis() -> None:
    torch.manual_seed(0)
    model = build_tokenizer("RVQVAE_Tiny").eval()
    indices = model.encode(torch.randn(2, 16, model.input_width))
    with torch.no_grad():
        first_only = model.decode(indices[..., 0])
        assert torch.equal(first_only, model.decode(indices[..., :1]))
    assert first_only.shape == (2, 16, model.input_width)


# ----------------------------------------------------------------------------------------------------------------------
# length estimator


def test_lengths_of_an_empty_batch_give_no_classes() -> None:
    classes = lengths_to_classes(torch.zeros(0, dtype=torch.long), unit_length=4)
    assert classes.shape == (0,) and classes.dtype == torch.long


def test_sampling_leaves_the_callers_logits_untouched() -> None:
    logits = torch.randn(3, 10)
    before = logits.clone()
    sample_lengths(logits, generator=torch.Generator().manual_seed(0))
    sample_lengths(logits, temperature=0)
    assert torch.equal(logits, before)


@pytest.mark.parametrize("temperature", [-0.5, -1.0, -3.0])
def test_negative_temperature_is_refused(temperature: float) -> None:
    with pytest.raises(ValueError, match=f"temperature must be >= 0, got {temperature}"):
        sample_lengths(torch.randn(2, 10), temperature=temperature)


def test_model_args_rebuild_the_estimator_with_its_dropout() -> None:
    model = LengthEstimator(text_dim=8, num_classes=12, hidden_dim=16, dropout=0.05)
    rebuilt = LengthEstimator(**model.model_args)
    assert [m.p for m in rebuilt.output if isinstance(m, torch.nn.Dropout)] == [0.05, 0.05]
    assert rebuilt(torch.randn(2, 8)).shape == (2, 12)
