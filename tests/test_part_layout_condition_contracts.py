"""Body-part slicing (models/body_parts.py) and the part-aware RVQ-VAE's partitions and conditioning
(models/part_aware.py): which features a part holds and in what order, the argument checks and their messages, FiLM
being an identity before training, and bad input refused naming the field (fractional feature indices, numpy arrays
as conditions)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from test_body_part_contracts import PARTS, _tiny

from models.body_parts import BodyPartTokenizers, part_indices, part_rotation_errors_deg, select_part
from models.part_aware import PART_AWARE_MODELS, check_partition, humanml3d_part_indices, joint_part_indices
from utils.dataset_specs import get_dataset_spec

TINY_PA = "PartAwareRVQ_Tiny"

# ---------------------------------------------------------------------------------------------------------------------
# Body-part slices
# ---------------------------------------------------------------------------------------------------------------------


def test_part_indices_keep_the_order_the_spec_lists():
    """A spec.json part lists its features in its own order; the part's columns come back in that order."""
    spec = dataclasses.replace(get_dataset_spec("beatx"), body_parts={"jaw": (5, 1, 3)})
    assert part_indices(spec, "jaw") == [5, 1, 3]
    features = np.arange(330, dtype=np.float32)[None]
    assert select_part(features, spec, "jaw").tolist() == [[5.0, 1.0, 3.0]]
    assert select_part(torch.from_numpy(features), spec, "jaw").tolist() == [[5.0, 1.0, 3.0]]


def test_select_part_refuses_features_wider_than_the_spec():
    spec = get_dataset_spec("beatx")
    with pytest.raises(ValueError, match=r"expected features with 330 dims for dataset 'beatx', got shape \(2, 331\)"):
        select_part(np.zeros((2, 331), dtype=np.float32), spec, "face")


# ---------------------------------------------------------------------------------------------------------------------
# BodyPartTokenizers' arguments
# ---------------------------------------------------------------------------------------------------------------------


def test_part_args_without_an_input_width_are_refused_naming_the_part():
    with pytest.raises(ValueError, match="part 'a' has 3 features but its tokenizer takes input_width=None"):
        BodyPartTokenizers(PARTS, 7, {"a": {}, "b": {"input_width": 4}})


def test_build_sizes_every_part_to_its_features_whatever_the_overrides_say():
    torch.manual_seed(0)
    model = BodyPartTokenizers.build(PARTS, 7, "BodyPartRVQ_Tiny", input_width=5)
    assert {name: tok.input_width for name, tok in model.tokenizers.items()} == {"a": 3, "b": 4}


def test_part_index_buffers_are_derived_not_saved():
    """The indices come from ``parts`` (kept in model_args): the state dict holds only the tokenizers' weights, so a
    combined model loads the part tokenizers' state dicts."""
    model = _tiny()
    assert torch.equal(model.index("b"), torch.tensor([1, 3, 5, 6]))
    assert all(key.startswith("tokenizers.") for key in model.state_dict())


# ---------------------------------------------------------------------------------------------------------------------
# Part-aware partitions
# ---------------------------------------------------------------------------------------------------------------------


def test_a_feature_named_twice_in_one_part_is_refused():
    with pytest.raises(ValueError, match="feature 0 is in part 0 and in part 0; parts must not overlap"):
        check_partition([[0, 0, 1], [2]], 3)


def test_a_single_joint_skeleton_has_no_partition():
    with pytest.raises(ValueError, match="joints_num must be >= 2, got 1"):
        humanml3d_part_indices(1)


def test_a_spec_whose_groups_do_not_match_its_joints_is_refused_naming_the_group():
    """KIT's 21 joints with a 22-joint layout: the ric group is 3 dims too wide for the skeleton."""
    spec = dataclasses.replace(get_dataset_spec("kit"), layout=get_dataset_spec("t2m").layout, dim_pose=263)
    with pytest.raises(ValueError, match="dataset 'kit': group 'ric' has 63 dims; expected 60 for 21 joints"):
        joint_part_indices(spec)


def test_a_spec_whose_root_groups_leave_features_out_is_refused():
    """Root features that belong to no root group would reach no part token: a clear error, not a silent gap."""
    spec = dataclasses.replace(get_dataset_spec("t2m"), root_groups=("root_y",))
    with pytest.raises(ValueError, match=r"features \[0, 1, 2\] \(3 of 263\) are in no part"):
        joint_part_indices(spec)


def test_num_parts_smaller_than_the_partition_is_refused():
    with pytest.raises(ValueError, match="num_parts is 1 but part_indices has 2 parts"):
        PART_AWARE_MODELS[TINY_PA](input_width=4, num_parts=1, part_indices=[[0, 1], [2, 3]])


def test_model_args_record_the_normalised_norm_name():
    assert PART_AWARE_MODELS[TINY_PA](norm="none").model_args["norm"] is None


# ---------------------------------------------------------------------------------------------------------------------
# Conditioning
# ---------------------------------------------------------------------------------------------------------------------


def test_an_empty_vocabulary_is_refused_naming_the_condition():
    with pytest.raises(ValueError, match=r"condition 'species': vocabulary size must be >= 1, got 0"):
        PART_AWARE_MODELS[TINY_PA](conditions={"species": 0})


def test_an_untrained_conditional_model_ignores_its_conditions():
    """FiLM starts as the identity, so before training every condition gives the unconditioned result."""
    torch.manual_seed(0)
    model = PART_AWARE_MODELS[TINY_PA](conditions={"species": 3}, text_dim=4).eval()
    motion = torch.randn(2, 8, 263)
    cond = {"species": torch.tensor([1, 2]), "text_emb": torch.randn(2, 4)}
    with torch.no_grad():
        latents = model.encode_latent(motion)
        assert torch.equal(model.encode_latent(motion, cond), latents)
        assert torch.equal(model.decode_latent(latents, cond), model.decode_latent(latents))


def test_a_fractional_feature_index_is_refused_naming_the_part():
    """Feature 1.5 is no feature: it must not be read as feature 1 (which would then complete the partition)."""
    with pytest.raises(ValueError, match=r"part_indices: part 0 holds \[0, 1.5\]; feature indices must be integers"):
        check_partition([[0, 1.5], [2, 3]], 4)
    with pytest.raises(ValueError, match="feature indices must be integers"):
        PART_AWARE_MODELS[TINY_PA](input_width=4, num_parts=2, part_indices=[[0, 1.5], [2, 3]])


def test_integer_indices_of_numpy_and_torch_still_partition():
    assert check_partition([[0, np.int64(1)], torch.tensor([2, 3])], 4) == [[0, 1], [2, 3]]


@pytest.mark.parametrize("cond,match", [
    ({"species": np.array([1, 2])},
     r"PartAwareRVQVAE: cond\['species'\] must be a torch tensor of shape \(2,\) integer ids, got numpy.ndarray; "
     r"convert a numpy array with torch.from_numpy\(ids\).long\(\)"),
    ({"text_emb": np.zeros((2, 4), dtype=np.float32)},
     r"PartAwareRVQVAE: cond\['text_emb'\] must be a torch tensor of shape \(2, 4\), got numpy.ndarray"),
], ids=["ids", "text_emb"])
def test_numpy_conditions_are_refused_naming_the_key(cond, match):
    model = PART_AWARE_MODELS[TINY_PA](conditions={"species": 3}, text_dim=4)
    with pytest.raises(TypeError, match=match):
        model(torch.zeros(2, 8, 263), cond=cond)


def test_a_text_embedding_of_another_batch_is_refused():
    model = PART_AWARE_MODELS[TINY_PA](conditions={"species": 3}, text_dim=4)
    with pytest.raises(ValueError, match=r"cond\['text_emb'\]: expected \(2, 4\), got \(3, 4\)"):
        model(torch.zeros(2, 8, 263), cond={"text_emb": torch.zeros(3, 4)})


def test_rotation_errors_need_whole_6d_rotations():
    features = torch.zeros(1, 2, 9)
    with pytest.raises(ValueError, match="9 features are not whole 6D rotations"):
        part_rotation_errors_deg(features, features, {"a": [0]})
