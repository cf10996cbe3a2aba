"""Dataset and motion-processing behaviour the other data tests leave open: the frames of caption-less and
sub-clip samples and their order, the unit length and the index bounds of the text-motion datasets, and feature
recovery from integer tensors and from arrays that are views."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from layout_helpers import WHOLE, stats, write_dataset

from utils.dataset_specs import get_dataset_spec
from utils.datasets import MotionIndex, Text2MotionDataset, Text2MotionEvalDataset, collect_text_samples
from utils.motion_process import recover_from_ric


class _Vectors:
    """word/POS -> (a vector of the word's length, a 2-wide POS vector)."""

    def __getitem__(self, token):
        word, _ = token.split("/")
        return np.full(3, len(word), dtype=np.float32), np.zeros(2, dtype=np.float32)


def _samples(tmp_path, lengths, texts):
    write_dataset(tmp_path, lengths, {"train": list(lengths)}, texts=texts)
    spec = get_dataset_spec("t2m", str(tmp_path))
    return collect_text_samples(spec, MotionIndex.build(spec, "train", progress=False))


# ---------------------------------------------------------------------------------------------------------------------
# Text-motion samples
# ---------------------------------------------------------------------------------------------------------------------

def test_a_clip_without_captions_is_a_sample_of_all_its_frames_when_captions_are_optional(tmp_path):
    write_dataset(tmp_path, {"a": 50, "b": 61}, {"train": ["a", "b"]}, texts={"a": None, "b": None})
    spec = get_dataset_spec("t2m", str(tmp_path))
    ds = Text2MotionDataset(spec, "train", *stats(spec, tmp_path), progress=False, captions_optional=True)
    assert ds.samples.names == ["a", "b"]
    assert ds.samples.starts.tolist() == [0, 0] and ds.samples.stops.tolist() == [50, 61]
    torch.manual_seed(0)
    assert {ds[1].length for _ in range(30)} == {60, 56}  # 61 frames: 15 units, or 14


def test_training_keeps_captions_without_tokens(tmp_path):
    # only the evaluator reads tokens; a caption without them is still a training caption
    write_dataset(tmp_path, {"a": 60}, {"train": ["a"]}, texts={"a": ["a person waves.##0.0#0.0"]})
    spec = get_dataset_spec("t2m", str(tmp_path))
    ds = Text2MotionDataset(spec, "train", *stats(spec, tmp_path), progress=False)
    assert len(ds) == 1 and ds.skipped.counts == {}
    assert ds[0].caption == "a person waves."


def test_subclip_bounds_truncate_the_tag_times_at_20_per_second(tmp_path):
    # 1.03 s and 4.04 s are frames 20.6 and 80.8: both truncated, as int() in the reference
    samples = _samples(tmp_path, {"a": 150}, {"a": ["he turns.#he/PRON turn/VERB#1.03#4.04"]})
    assert (samples.starts.tolist(), samples.stops.tolist()) == ([20], [80])


def test_a_subclip_as_long_as_its_clip_comes_before_it(tmp_path):
    # "b" is read first; its whole-clip sample and "a"'s sub-clip and whole clip all have 60 frames
    texts = {"b": [WHOLE], "a": [WHOLE, "he turns.#he/PRON turn/VERB#0.0#3.0"]}
    write_dataset(tmp_path, {"b": 60, "a": 60}, {"train": ["b", "a"]}, texts=texts)
    spec = get_dataset_spec("t2m", str(tmp_path))
    samples = collect_text_samples(spec, MotionIndex.build(spec, "train", progress=False))
    assert samples.lengths.tolist() == [60, 60, 60]
    assert samples.names[0] == "b" and samples.names[1].endswith("_a") and samples.names[2] == "a"


@pytest.mark.parametrize("unit_length", [0, -4, 197])
def test_text2motion_refuses_a_unit_length_outside_one_to_max_motion_length(tmp_path, unit_length):
    # 0 used to become the spec's 4, -4 skipped the rounding and 197 cropped every sample to 0 frames
    write_dataset(tmp_path, {"a": 60, "b": 80}, {"train": ["a", "b"]})
    spec = get_dataset_spec("t2m", str(tmp_path))
    mean, std = stats(spec, tmp_path)
    with pytest.raises(ValueError, match=rf"Text2MotionDataset: unit_length {unit_length}; expected 1 to 196"):
        Text2MotionDataset(spec, "train", mean, std, unit_length=unit_length, progress=False)


def test_text2motion_accepts_a_unit_length_of_max_motion_length(tmp_path):
    write_dataset(tmp_path, {"b": 199}, {"train": ["b"]})
    spec = get_dataset_spec("t2m", str(tmp_path))
    ds = Text2MotionDataset(spec, "train", *stats(spec, tmp_path), unit_length=196, progress=False)
    assert ds.unit_length == 196 and ds[0].length == 196


# ---------------------------------------------------------------------------------------------------------------------
# Evaluation dataset
# ---------------------------------------------------------------------------------------------------------------------

def test_eval_dataset_refuses_negative_items_instead_of_serving_hidden_samples(tmp_path):
    write_dataset(tmp_path, {"a": 60, "b": 120}, {"test": ["a", "b"]})
    spec = get_dataset_spec("t2m", str(tmp_path))
    ds = Text2MotionEvalDataset(spec, "test", *stats(spec, tmp_path), _Vectors(), progress=False)
    ds.reset_max_len(100)
    assert len(ds) == 1
    with pytest.raises(IndexError, match="sample -1 out of range for 1 samples"):
        ds[-1]


# ---------------------------------------------------------------------------------------------------------------------
# Feature recovery
# ---------------------------------------------------------------------------------------------------------------------

def test_recover_from_ric_reads_numpy_views_with_negative_strides():
    rng = np.random.default_rng(0)
    features = rng.standard_normal((6, 263))
    reversed_view = features[::-1]
    joints = recover_from_ric(reversed_view, 22)
    np.testing.assert_array_equal(joints, recover_from_ric(np.ascontiguousarray(reversed_view), 22))


def test_recover_from_ric_reads_an_integer_tensor_as_float64():
    # numpy integers are read as float64; a torch integer tensor used to fail inside torch.stack
    features = np.zeros((5, 263), dtype=np.int64)
    features[:, 3] = 1  # root height
    features[:, 4:67] = 2
    joints = recover_from_ric(torch.from_numpy(features), 22)
    assert joints.dtype == torch.float64 and joints.shape == (5, 22, 3)
    np.testing.assert_array_equal(joints.numpy(), recover_from_ric(features, 22))
