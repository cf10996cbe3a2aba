"""The body-part tokenizers (models/body_parts.py): behaviour the other tests leave open (the part slices and error
helpers, BodyPartTokenizers' arguments, layout, loading and decoding)."""

from __future__ import annotations

import math

import pytest
import torch

from models.body_parts import (
    BodyPartTokenizers,
    PartSliceDataset,
    part_feature_errors,
    part_rotation_errors_deg,
)
from models.loader import Tokenizer
from models.tokenizers import RVQVAE
from utils.quaternion import matrix_to_rot6d, rot6d_to_matrix

# ---------------------------------------------------------------------------------------------------------------------
# Part slices and errors
# ---------------------------------------------------------------------------------------------------------------------

def test_part_slice_dataset_refuses_empty_indices():
    with pytest.raises(ValueError, match="indices is empty"):
        PartSliceDataset([torch.zeros(2, 3)], [])


def test_errors_need_one_shape_of_at_least_two_dims():
    parts = {"a": [0, 1]}
    with pytest.raises(ValueError, match="of one shape"):
        part_feature_errors(torch.zeros(4), torch.zeros(4), parts)
    with pytest.raises(ValueError, match="of one shape"):
        part_feature_errors(torch.zeros(1, 3, 2), torch.zeros(1, 3, 3), parts)
    with pytest.raises(ValueError, match="of one shape"):
        part_rotation_errors_deg(torch.zeros(1, 3, 12), torch.zeros(1, 4, 12), {"a": list(range(6))})


def test_rotation_errors_need_whole_6d_features():
    with pytest.raises(ValueError, match="not whole 6D rotations"):
        part_rotation_errors_deg(torch.zeros(1, 2, 7), torch.zeros(1, 2, 7), {"a": list(range(6))})


def test_rotation_error_of_a_part_is_the_mean_over_its_joints():
    """Two joints, one turned 30 degrees and one not: the part's error is 15 degrees (the mean, not the largest)."""
    angle = math.radians(30.0)
    rot = torch.tensor([[math.cos(angle), -math.sin(angle), 0.0], [math.sin(angle), math.cos(angle), 0.0],
                        [0.0, 0.0, 1.0]])
    target = matrix_to_rot6d(torch.eye(3)).repeat(2).reshape(1, 1, 12)
    recon = torch.cat([matrix_to_rot6d(rot), matrix_to_rot6d(torch.eye(3))]).reshape(1, 1, 12)
    errors = part_rotation_errors_deg(recon, target, {"both": list(range(12))})
    assert errors["both"] == pytest.approx(15.0, abs=1e-6)


def test_identical_rotations_have_zero_error_not_nan():
    """Rounding can put trace(R^T R) a hair above 3; the error of a rotation against itself is still 0."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(1, 4, 96, generator=g, dtype=torch.float64)
    assert bool((((rot6d_to_matrix(x.reshape(1, 4, 16, 6)) ** 2).sum((-1, -2)) - 1) / 2 > 1).any())  # the premise
    errors = part_rotation_errors_deg(x, x.clone(), {"all": list(range(96))})
    assert errors["all"] == pytest.approx(0.0, abs=1e-5)


# ---------------------------------------------------------------------------------------------------------------------
# BodyPartTokenizers
# ---------------------------------------------------------------------------------------------------------------------

PARTS = {"a": [0, 2, 4], "b": [1, 3, 5, 6]}


def _tiny(seed=0):
    torch.manual_seed(seed)
    return BodyPartTokenizers.build(PARTS, 7, "BodyPartRVQ_Tiny")


def test_part_args_for_a_part_not_in_parts_are_refused():
    args = {"a": {"input_width": 3}, "b": {"input_width": 4}, "c": {"input_width": 2}}
    with pytest.raises(ValueError, match=r"part_args has parts \['a', 'b', 'c'\], parts has \['a', 'b'\]"):
        BodyPartTokenizers(PARTS, 7, args)


def test_build_overrides_win_over_the_registry_recipe():
    torch.manual_seed(0)
    model = BodyPartTokenizers.build(PARTS, 7, "BodyPartRVQ_Tiny", nb_code=8, num_quantizers=2)
    for name in PARTS:
        tok = model.tokenizers[name]
        assert (tok.codebook_size, tok.num_quantizers) == (8, 2)
        assert tok.input_width == len(PARTS[name])


def test_model_args_rebuild_the_same_layout():
    model = _tiny()
    assert model.model_args["total_width"] == 7 and model.model_args["parts"] == PARTS
    rebuilt = BodyPartTokenizers(**model.model_args)
    assert rebuilt.total_width == 7 and rebuilt.model_args == model.model_args


def test_from_models_unwraps_loaded_tokenizers():
    """A loaded tokenizer (an nn.Module whose ``model`` is the RVQVAE) is combined by its inner model's weights."""
    torch.manual_seed(0)
    inner = {name: RVQVAE(input_width=len(idx), nb_code=8, code_dim=4, num_quantizers=2, width=8, depth=1)
             for name, idx in PARTS.items()}
    wrapped = {name: Tokenizer(m, "RVQVAE", "test") for name, m in inner.items()}
    combined = BodyPartTokenizers.from_models(wrapped, PARTS, 7)
    for name, m in inner.items():
        for key, value in m.state_dict().items():
            assert torch.equal(combined.tokenizers[name].state_dict()[key], value), (name, key)


def test_motion_must_be_batched_and_full_width():
    model = _tiny().eval()
    with pytest.raises(ValueError, match=r"expected motion of shape \(B, T, 7\)"):
        model(torch.zeros(8, 7))
    with pytest.raises(ValueError, match=r"expected motion of shape \(B, T, 7\)"):
        model.encode(torch.zeros(8, 7))


def test_perplexity_is_the_mean_over_parts():
    model = _tiny()
    motion = torch.randn(4, 16, 7, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        model.train()(motion)  # initialises the codebooks from this batch
        model.eval()
        out = model(motion)
        per_part = [float(model.tokenizers[n](motion[..., idx]).perplexity) for n, idx in PARTS.items()]
    assert per_part[0] != per_part[1]
    assert float(out.perplexity) == pytest.approx(sum(per_part) / 2, rel=1e-5)


def test_decode_of_an_unknown_part_or_extra_codes_is_a_value_error():
    model = _tiny().eval()
    codes = {"a": torch.zeros(1, 2, 3, dtype=torch.long), "b": torch.zeros(1, 2, 3, dtype=torch.long)}
    with torch.no_grad():
        assert model.combined_decode(codes).shape == (1, 8, 7)
        with pytest.raises(ValueError, match=r"no part 'c'; parts are \['a', 'b'\]"):
            model.decode_part("c", codes["a"])
        with pytest.raises(ValueError, match=r"missing \[\], unknown \['c'\]"):
            model.combined_decode({**codes, "c": codes["a"]})


def test_a_part_naming_a_feature_twice_is_refused():
    """A part must hold each of its joints' six dims once: [0, 1, 2, 3, 4, 4] has six indices but misses dim 5."""
    rot = matrix_to_rot6d(torch.eye(3).expand(1, 2, 2, 3, 3)).reshape(1, 2, 12)
    assert part_rotation_errors_deg(rot, rot, {"ok": list(range(12))}) == {"ok": 0.0}
    with pytest.raises(ValueError, match="part 'twice' does not hold whole joints"):
        part_rotation_errors_deg(rot, rot, {"twice": [0, 1, 2, 3, 4, 4]})
