"""Edges of the evaluator networks and the dataset registry that the other tests leave open: length checks on a
batch of one and length vectors of another count than the batch, an ignored slice that leaves no feature, and spec
fields refused by name (empty groups, zero counts, a minimum length above the maximum)."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from test_dataset_spec_contracts import _hml_dict, _spec
from test_evaluator_network_contracts import _caption_batch, _evaluator

from models.evaluator import TextMotionEvaluator
from utils.dataset_specs import DATASETS, DatasetSpec, FeatureGroup, full_width_names

# ---------------------------------------------------------------------------------------------------------------------
# Evaluator networks
# ---------------------------------------------------------------------------------------------------------------------


def test_a_single_caption_or_motion_is_length_checked_too():
    """A batch of one is checked like any other: a length past the padding, or a motion shorter than one unit, is
    refused by name rather than by torch's packing."""
    words, pos, _ = _caption_batch(b=1)
    with pytest.raises(ValueError, match=r"caption lengths \(cap_lens\) must lie in \[1, 7\] .*got \[8\]"):
        _evaluator().encode_text(words, pos, torch.tensor([8]))
    for grad in (False, True):
        with torch.set_grad_enabled(grad), pytest.raises(ValueError, match=r"motion steps .* must lie in \[1, 4\] "
                                                                           r"\(the padded length\), got \[0\]"):
            _evaluator().encode_motion(torch.zeros(1, 16, 12), torch.tensor([3]))


def test_motion_lengths_must_be_one_per_motion():
    ev = _evaluator()
    motion = torch.zeros(2, 16, 12)
    for grad in (False, True):  # the folded inference path and the training path
        with torch.set_grad_enabled(grad), pytest.raises(ValueError, match=r"motion steps .* one per row of the "
                                                                           r"batch \(2\), got 3"):
            ev.encode_motion(motion, torch.tensor([16, 8, 8]))


def test_caption_lengths_must_be_one_per_caption():
    words, pos, _ = _caption_batch()
    with pytest.raises(ValueError, match=r"caption lengths \(cap_lens\): expected one per row of the batch "
                                         r"\(3\), got 2"):
        _evaluator().encode_text(words, pos, torch.tensor([7, 5]))


def test_ignore_dims_must_leave_the_movement_encoder_a_feature():
    with pytest.raises(ValueError, match=r"ignore_dims \(0, 12\) leave none of the 12 motion features"):
        _evaluator(ignore_dims=(0, 12))
    assert TextMotionEvaluator(dim_pose=12, ignore_dims=(1, 12)).movement_encoder.main[0].in_channels == 1


# ---------------------------------------------------------------------------------------------------------------------
# Dataset specs
# ---------------------------------------------------------------------------------------------------------------------


def test_layout_with_an_empty_group_is_rejected():
    with pytest.raises(ValueError, match="feature groups must tile"):
        _spec(layout=(FeatureGroup("ric", 0, 2), FeatureGroup("empty", 2, 2), FeatureGroup("b", 2, 4)))


@pytest.mark.parametrize("field", ["joints_num", "max_motion_length", "min_motion_length", "unit_length",
                                   "window_size"])
def test_spec_dict_with_a_zero_count_is_rejected_by_field(field):
    # A unit length of 0 divides by zero and a clip length of 0 filters out every motion, far from the spec.
    with pytest.raises(ValueError, match=rf"src: dataset spec field '{field}' is 0; expected a positive integer"):
        DatasetSpec.from_dict(_hml_dict(**{field: 0}), source="src")


def test_full_width_names_needs_a_registered_dataset_of_exactly_the_file_width():
    # Statistics of 263 columns do not cover files of another width, even a wider registered one in the same folder.
    narrower = dataclasses.replace(DATASETS["t2m_67"], source_dim=100)
    assert narrower.file_dim == 100 and full_width_names(narrower) == []


def test_a_minimum_motion_length_above_the_maximum_is_rejected():
    # Every clip would be dropped as too short or too long, reported far from the spec.
    with pytest.raises(ValueError, match="src: invalid dataset spec: dataset spec 'x': min_motion_length 200 exceeds "
                                         "max_motion_length 196; expected min <= max"):
        DatasetSpec.from_dict(_hml_dict(min_motion_length=200), source="src")
    assert DatasetSpec.from_dict(_hml_dict(min_motion_length=196), source="src").min_motion_length == 196
