"""Data-pipeline contracts no other test pinned: the motion index's cache key and crops, split sizes and
statistics, what validation reports (and does not), statistics files and the normaliser, representation conversions,
a resumed batch sampler, the project home folder, the datasets' windows, samples, sub-clips and crops, and how
batches are drawn, fetched and collated."""

from __future__ import annotations

import dataclasses
import os
import random

import numpy as np
import pytest
import torch
from layout_helpers import WHOLE, write_dataset
from test_data_validation import write_clean

from utils.batching import EpochBatchSampler, SeededSamples, collate_batch, epoch_batches
from utils.data_validation import validate_dataset
from utils.dataset_io import humanml3d_mean_std, split_groups
from utils.dataset_specs import DATASETS, get_dataset_spec
from utils.datasets import (
    SUBCLIP_LETTERS,
    MotionWindowDataset,
    StackedBatch,
    Text2MotionDataset,
    Text2MotionEvalDataset,
    collect_text_samples,
)
from utils.motion_index import MotionIndex
from utils.normalization import (
    DatasetError,
    Normalizer,
    feat_bias_normalization,
    load_mean_std,
    read_meta_statistics,
    read_npy_array,
    statistics_match,
)
from utils.paths import HOME_ENV, project_path
from utils.representation import get_conversion, joints_to_features, tokenizer_conversions, with_extrapolated_frame


def _layout(root, lengths, split="train", seed=0):
    rng = np.random.default_rng(seed)
    (root / "new_joint_vecs").mkdir(parents=True, exist_ok=True)
    motions = {}
    for clip_id, n in lengths.items():
        motions[clip_id] = rng.standard_normal((n, 263)).astype(np.float32)
        np.save(root / "new_joint_vecs" / f"{clip_id}.npy", motions[clip_id])
    (root / f"{split}.txt").write_text("".join(f"{c}\n" for c in lengths))
    return motions


def test_motion_index_rebuilds_for_a_clip_rewritten_with_the_same_size(tmp_path):
    # a clip of another seed may have the same frame count; its new mtime must invalidate the index
    _layout(tmp_path, {"a": 30, "b": 40})
    spec = get_dataset_spec("t2m", str(tmp_path))
    first = MotionIndex.build(spec, "train", progress=False)
    new = np.full((40, 263), 7.0, dtype=np.float32)
    np.save(tmp_path / "new_joint_vecs" / "b.npy", new)
    os.utime(tmp_path / "new_joint_vecs" / "b.npy", ns=(1, 1))
    again = MotionIndex.build(spec, "train", progress=False)
    assert again.built and again.folder != first.folder
    np.testing.assert_array_equal(again.clip(again.position("b")), new)


def test_motion_index_clip_stops_at_the_clip_end(tmp_path):
    # a stop past the clip's end must not read the next clip's frames
    motions = _layout(tmp_path, {"a": 30, "b": 40})
    index = MotionIndex.build(get_dataset_spec("t2m", str(tmp_path)), "train", progress=False)
    np.testing.assert_array_equal(index.clip(0, 10, 1000), motions["a"][10:])
    assert index.clip(0, 0, 1000, dim=67).shape == (30, 67)


def test_split_sizes_round_to_nearest():
    # 30 clips at 80/5/15: val round(1.5) = 2, test round(4.5) = 4 (Python rounds half to even)
    groups = [[f"{i:03d}"] for i in range(30)]
    splits = split_groups(groups, list(range(30)))
    assert (len(splits["val"]), len(splits["test"]), len(splits["train"])) == (2, 4, 24)
    assert splits["val"] == ["000", "001"]
    assert sorted(splits["train"] + splits["val"] + splits["test"]) == splits["all"]


def test_statistics_of_a_single_frame_are_refused(tmp_path):
    np.save(tmp_path / "a.npy", np.ones((1, 263), np.float32))
    with pytest.raises(ValueError, match="from 1 frames"):
        humanml3d_mean_std([str(tmp_path / "a.npy")], DATASETS["synthetic"])


def test_a_constant_feature_group_gets_std_one(tmp_path):
    # a group that never varies must not get std 0 (normalising would divide by zero)
    spec = DATASETS["synthetic"]
    x = np.random.default_rng(0).standard_normal((50, 263)).astype(np.float32)
    contact = spec.group(spec.contact_group)
    x[:, contact] = 1.0
    np.save(tmp_path / "a.npy", x)
    mean, std = humanml3d_mean_std([str(tmp_path / "a.npy")], spec)
    np.testing.assert_array_equal(std[contact], 1.0)
    assert (std > 0).all()


def test_a_duplicated_id_is_a_warning_not_an_error(tmp_path):
    # the loaders read such a clip twice; validation reports it but the dataset stays usable
    write_clean(tmp_path, ["a", "b"])
    (tmp_path / "train.txt").write_text("a\nb\na\n")
    report = validate_dataset(get_dataset_spec("t2m"), str(tmp_path), splits=("train",))
    assert report.counts == {"duplicate_id": 1}
    assert report.problems[0].severity == "warning" and report.ok
    assert "'a' 2 times" in report.problems[0].message


def test_a_clip_of_exactly_min_motion_length_is_not_too_short(tmp_path):
    # the loaders keep min_motion_length <= T
    spec = get_dataset_spec("t2m")
    write_clean(tmp_path, ["a", "b"])
    np.save(tmp_path / "new_joint_vecs" / "a.npy", np.zeros((spec.min_motion_length, 263), np.float32))
    np.save(tmp_path / "new_joint_vecs" / "b.npy", np.zeros((spec.min_motion_length - 1, 263), np.float32))
    report = validate_dataset(spec, str(tmp_path), splits=("train",))
    assert report.counts == {"too_short": 1}
    assert report.problems[0].path.endswith("b.npy")


def test_a_missing_caption_file_is_not_counted_as_checked(tmp_path):
    write_clean(tmp_path, ["a", "b", "c"])
    (tmp_path / "texts" / "b.txt").unlink()
    report = validate_dataset(get_dataset_spec("t2m"), str(tmp_path), splits=("train",))
    assert report.counts == {"missing_text": 1}
    assert report.checked["texts"] == 2 and report.checked["motions"] == 3


def test_a_caption_with_several_bad_tokens_is_one_problem(tmp_path):
    # one malformed_text per caption (the evaluation dataset stops at its first bad token)
    write_clean(tmp_path, ["a"])
    (tmp_path / "texts" / "a.txt").write_text("a person runs.#a person run#0.0#0.0\n")
    report = validate_dataset(get_dataset_spec("t2m"), str(tmp_path), splits=("train",))
    assert report.counts == {"malformed_text": 1}


def test_a_missing_motion_is_reported_against_the_first_split_naming_it(tmp_path):
    # ids are attributed to the first split that lists them
    write_clean(tmp_path, ["a", "b"])
    (tmp_path / "new_joint_vecs" / "a.npy").unlink()   # "a" is in train.txt and val.txt
    report = validate_dataset(get_dataset_spec("t2m"), str(tmp_path), splits=("train", "val"))
    assert report.counts == {"missing_motion": 1}
    assert report.problems[0].message.startswith(f"{tmp_path / 'train.txt'}: names 'a'")


def _stats_root(root, mean, std):
    root.mkdir(parents=True, exist_ok=True)
    np.save(root / "Mean.npy", mean)
    np.save(root / "Std.npy", std)
    return str(root)


def test_two_dimensional_statistics_are_refused(tmp_path):
    # a (263, 1) Std.npy would broadcast (x - mean) / std into (..., 263, 263)
    root = _stats_root(tmp_path / "d", np.zeros(263, np.float32), np.ones((263, 1), np.float32))
    with pytest.raises(DatasetError, match=r"Std\.npy has shape \(263, 1\)") as e:
        load_mean_std(get_dataset_spec("t2m"), root)
    assert e.value.kind == "stats_shape"


def test_read_npy_array_refuses_an_array_of_strings(tmp_path):
    # evaluator statistics of strings must be refused naming the file, not fail later in a float cast
    np.save(tmp_path / "mean.npy", np.full(263, "a"))
    with pytest.raises(ValueError, match=r"mean\.npy: cannot read as a \.npy array of numbers"):
        read_npy_array(str(tmp_path / "mean.npy"), "evaluator statistics")


def _meta(folder, mean, std):
    folder.mkdir(exist_ok=True)
    for name, values in (("mean", mean), ("std", std)):
        if values is not None:
            np.save(folder / f"{name}.npy", np.asarray(values, np.float32))
    return str(folder)


def test_meta_statistics_are_read_at_the_features_width_and_wider_files_give_their_leading_entries(tmp_path):
    """An official run's meta folder as --meta_dir / --ae_meta_dir read it: (width,) float32, a wider file cut to its
    first entries (t2m_67 on a 263-dim meta), anything else refused naming the flag, the folder and the file."""
    meta = _meta(tmp_path / "m", np.arange(10.0), np.arange(1.0, 11.0))
    mean, std = read_meta_statistics(meta, "--meta_dir", 4)
    assert mean.dtype == std.dtype == np.float32
    assert mean.tolist() == [0, 1, 2, 3] and std.tolist() == [1, 2, 3, 4]
    with pytest.raises(ValueError, match=r"--ae_meta_dir .*/m: mean \(10,\) and std \(10,\); expected \(12,\)"):
        read_meta_statistics(meta, "--ae_meta_dir", 12)
    two_d = _meta(tmp_path / "two_d", np.zeros((2, 4)), np.ones((2, 4)))
    with pytest.raises(ValueError, match=r"mean \(2, 4\) and std \(2, 4\); expected \(4,\)"):
        read_meta_statistics(two_d, "--meta_dir", 4)
    no_std = _meta(tmp_path / "no_std", np.zeros(4), None)
    with pytest.raises(FileNotFoundError, match=r"the run's meta folder .*/no_std: std.npy not found; expected "
                                                r"mean.npy and std.npy of shape \(4,\)"):
        read_meta_statistics(no_std, "the run's meta folder", 4)


@pytest.mark.parametrize("mean, std, named", [
    ([0.0, np.nan, 0.0], [1.0, 1.0, 1.0], "mean.npy"),
    ([0.0, 0.0, 0.0], [1.0, 0.0, 1.0], "std.npy"),
    ([0.0, 0.0, np.inf], [1.0, -1.0, 1.0], "mean.npy and std.npy"),
])
def test_meta_statistics_that_would_give_inf_or_nan_name_the_file(tmp_path, mean, std, named):
    meta = _meta(tmp_path / "m", mean, std)
    with pytest.raises(ValueError, match=rf"--meta_dir .*/m: {named}: mean and std must be finite with std > 0"):
        read_meta_statistics(meta, "--meta_dir", 3)


def test_normalizer_refuses_a_zero_std():
    with pytest.raises(ValueError, match="finite and positive"):
        Normalizer(np.zeros(3), np.array([1.0, 0.0, 1.0]))


def test_normalizer_keeps_a_half_precision_tensor_in_its_dtype():
    # the statistics follow the input's floating dtype (bf16 / fp16 under mixed precision)

    norm = Normalizer(np.array([1.0, 2.0]), np.array([2.0, 4.0]))
    for dtype in (torch.bfloat16, torch.float16):
        x = torch.tensor([[3.0, 6.0]], dtype=dtype)
        y = norm.transform(x)
        assert y.dtype == dtype and norm.inverse(y).dtype == dtype
        assert y.float().tolist() == [[1.0, 1.0]]
    assert norm.transform(torch.tensor([[3, 6]])).dtype == torch.float32


def test_statistics_match_compares_widths_before_values():
    mean, std = np.linspace(-1, 1, 5), np.linspace(0.5, 2, 5)
    assert statistics_match(mean, std, mean.astype(np.float32), std.astype(np.float32))
    assert not statistics_match(mean, std, mean + 0.1, std)
    assert not statistics_match(mean, std, mean, std * 2)
    assert not statistics_match(mean, std, mean[:4], std[:4])
    assert not statistics_match(mean, std, np.zeros(1), np.ones(1))  # would broadcast against any width


def test_feature_bias_must_be_finite():
    # an infinite bias would make the std of the root and contact groups zero
    spec = get_dataset_spec("t2m")
    with pytest.raises(ValueError, match="must be > 0 and finite"):
        feat_bias_normalization(np.zeros(263), np.ones(263), spec, float("inf"))


def test_the_extrapolated_frame_continues_the_last_velocity():
    j = np.zeros((3, 22, 3))
    j[:, :, 0] = np.array([0.0, 1.0, 3.0])[:, None]
    out = with_extrapolated_frame(j)
    assert out.shape == (4, 22, 3)
    np.testing.assert_allclose(out[-1, :, 0], 5.0)
    np.testing.assert_allclose(with_extrapolated_frame(j[:1])[-1], j[0])


def test_a_sample_of_length_zero_converts_to_zeros():
    # rows past a length stay zero; a length-0 sample is no error

    conv = get_conversion(get_dataset_spec("t2m_67"), get_dataset_spec("t2m"))
    out, lengths = conv(torch.zeros(1, 8, 67), torch.tensor([0]))
    assert out.shape == (1, 8, 263) and not out.any() and lengths.tolist() == [0]


def test_a_tokenizer_is_not_scored_through_a_lossy_input_conversion():
    # a t2m tokenizer under the t2m_67 evaluator would get its input through the lossy essential -> t2m path
    unit = get_dataset_spec("t2m_67").unit_length
    with pytest.raises(ValueError, match="through a lossy conversion"):
        tokenizer_conversions("t2m", "t2m_67", unit)
    to_source, back = tokenizer_conversions("t2m_67", "t2m", unit)
    assert to_source.exact and not back.exact


def test_joints_to_features_refuses_zero_frames():
    # a clear ValueError, not an IndexError from inside the extrapolation
    with pytest.raises(ValueError, match=r"expected joint positions \(T, 22, 3\)"):
        joints_to_features(np.zeros((0, 22, 3)), get_dataset_spec("t2m"))


def test_a_sampler_resumed_past_its_last_batch_is_empty():
    # a resume whose start batch is past the epoch's end has no batches left (len 0, not negative)
    sampler = EpochBatchSampler(10, 2, seed=0, epoch=0, start=7)
    assert len(sampler) == 0 and list(sampler) == []
    assert len(EpochBatchSampler(10, 2, seed=0, epoch=0, start=3)) == 2


@pytest.mark.parametrize("batch_size", [0, -4])
def test_an_epoch_sampler_needs_a_batch_of_at_least_one_sample(batch_size):
    """A batch size below 1 is refused by name, not a ZeroDivisionError (0) or an epoch of no batches (negative)."""
    with pytest.raises(ValueError, match=rf"batch_size {batch_size} must be at least 1"):
        EpochBatchSampler(10, batch_size, seed=0, epoch=0)


def test_a_home_folder_given_with_a_tilde_is_expanded(monkeypatch, tmp_path):
    # FSQ_MARDM_HOME=~/fsq must not make a literal "~" folder in the working directory
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv(HOME_ENV, "~/fsq")
    assert project_path("dataset") == os.path.join(str(tmp_path), "fsq", "dataset")


def _stats() -> tuple[np.ndarray, np.ndarray]:
    """The Mean.npy / Std.npy that layout_helpers.write_dataset writes."""
    return np.full(263, 1.0, dtype=np.float32), np.linspace(0.5, 2.0, 263).astype(np.float32)


# ---------------------------------------------------------------------------------------------------------------------
# Tokenizer windows
# ---------------------------------------------------------------------------------------------------------------------

def test_statistics_of_the_wrong_width_are_refused_whichever_is_wrong(tmp_path):
    write_dataset(tmp_path, {"a": 70}, {"train": ["a"]})
    spec = get_dataset_spec("t2m", str(tmp_path))
    mean, std = _stats()
    with pytest.raises(ValueError, match=r"expected \(263,\)"):
        MotionWindowDataset(spec, "train", mean, std[:10], progress=False)
    with pytest.raises(ValueError, match=r"expected \(263,\)"):
        MotionWindowDataset(spec, "train", mean[:10], std, progress=False)


def test_a_window_of_one_frame_is_allowed(tmp_path):
    motions = write_dataset(tmp_path, {"a": 3}, {"train": ["a"]})
    spec = get_dataset_spec("t2m", str(tmp_path))
    mean, std = _stats()
    ds = MotionWindowDataset(spec, "train", mean, std, window_size=1, mode="all", progress=False)
    assert len(ds) == 3
    np.testing.assert_allclose(ds[2].numpy() * std + mean, motions["a"][2:3], rtol=1e-5, atol=1e-5)


def test_all_windows_default_to_non_overlapping_windows(tmp_path):
    motions = write_dataset(tmp_path, {"a": 150}, {"train": ["a"]})
    spec = get_dataset_spec("t2m", str(tmp_path))
    mean, std = _stats()
    ds = MotionWindowDataset(spec, "train", mean, std, mode="all", progress=False)
    assert len(ds) == 2  # starts 0 and 64; 128 + 64 runs past the 150 frames
    np.testing.assert_allclose(ds[1].numpy() * std + mean, motions["a"][64:128], rtol=1e-5, atol=1e-5)


def test_every_item_of_all_windows_is_its_clip_slice(tmp_path):
    motions = write_dataset(tmp_path, {"a": 70, "b": 100}, {"train": ["a", "b"]})
    spec = get_dataset_spec("t2m", str(tmp_path))
    mean, std = _stats()
    ds = MotionWindowDataset(spec, "train", mean, std, window_size=64, stride=16, mode="all", progress=False)
    expected = [(c, o) for c, n in (("a", 70), ("b", 100)) for o in range(0, n - 64 + 1, 16)]
    assert len(ds) == len(expected) == 1 + 3
    for item, (clip, offset) in enumerate(expected):
        np.testing.assert_allclose(ds[item].numpy() * std + mean, motions[clip][offset:offset + 64],
                                   rtol=1e-5, atol=1e-5)
    with pytest.raises(IndexError, match=r"window 4 out of range for 4 items"):
        ds[len(expected)]
    first = MotionWindowDataset(spec, "train", mean, std, mode="first", progress=False)
    with pytest.raises(IndexError, match=r"window 2 out of range for 2 items"):
        first[2]


# ---------------------------------------------------------------------------------------------------------------------
# Text-motion samples
# ---------------------------------------------------------------------------------------------------------------------

def _samples(tmp_path, lengths, texts, name="t2m"):
    write_dataset(tmp_path, lengths, {"train": list(lengths)}, texts=texts)
    spec = get_dataset_spec(name, str(tmp_path))
    return collect_text_samples(spec, MotionIndex.build(spec, "train", progress=False))


def test_subclip_names_use_every_letter_once_then_numbered_letters(tmp_path):
    texts = {"a": [f"move {i}.#move/VERB#1.0#4.0" for i in range(25)]}  # 25 sub-clips of frames [20, 80)
    samples = _samples(tmp_path, {"a": 150}, texts)
    assert len(samples) == 25 and len(set(samples.names)) == 25
    first = samples.names[:23]  # same length: insertion order is kept
    assert all(len(n) == 3 and n.endswith("_a") for n in first)
    assert sorted(n[0] for n in first) == sorted(SUBCLIP_LETTERS)
    assert samples.names[23:] == ["A1_a", "B1_a"]


def test_subclip_letter_is_drawn_from_a_generator_seeded_by_the_id(tmp_path):
    from utils.datasets import SUBCLIP_LETTERS

    texts = {c: ["he turns.#he/PRON turn/VERB#1.0#4.0"] for c in ("clip_one", "clip_two", "clip_three")}
    samples = _samples(tmp_path, {c: 100 for c in texts}, texts)
    expected = {f"{random.Random(c).choice(SUBCLIP_LETTERS)}_{c}" for c in texts}
    assert set(samples.names) == expected


def test_a_clip_of_exactly_the_minimum_length_is_a_sample(tmp_path):
    samples = _samples(tmp_path, {"a": 40, "b": 39}, None)
    assert samples.names == ["a"]
    assert samples.skipped.counts == {"clips outside 40 <= frames < 200": 1}


def test_samples_are_sorted_by_their_length_not_their_end(tmp_path):
    texts = {"a": ["late.#late/ADV#5.0#8.0"], "b": [WHOLE]}  # a sub-clip [100, 160) of 60 frames, a 120-frame clip
    samples = _samples(tmp_path, {"a": 170, "b": 120}, texts)
    assert samples.lengths.tolist() == [60, 120]
    assert samples.names[1] == "b" and samples.names[0].endswith("_a")


def test_text2motion_items_of_a_subclip_come_from_the_subclip_frames(tmp_path):
    texts = {"a": ["late.#late/ADV#5.0#7.0"]}  # frames [100, 140)
    motions = write_dataset(tmp_path, {"a": 170}, {"train": ["a"]}, texts=texts)
    spec = get_dataset_spec("t2m", str(tmp_path))
    mean, std = _stats()
    ds = Text2MotionDataset(spec, "train", mean, std, progress=False)
    torch.manual_seed(0)
    sub = motions["a"][100:140]
    for _ in range(10):
        item = ds[0]
        raw = item.motion[:item.length].numpy() * std + mean
        assert any(np.allclose(sub[o:o + item.length], raw, atol=1e-5) for o in range(40 - item.length + 1))


def test_text2motion_unit_length_override_rounds_to_that_unit(tmp_path):
    write_dataset(tmp_path, {"a": 58}, {"train": ["a"]})
    spec = get_dataset_spec("t2m", str(tmp_path))
    mean, std = _stats()
    ds = Text2MotionDataset(spec, "train", mean, std, unit_length=5, progress=False)
    torch.manual_seed(0)
    assert {ds[0].length for _ in range(40)} == {55, 50}


@pytest.mark.parametrize("frames,bound,expected", [
    (201, {"max_motion_length": 198}, {196}),  # 200 and 196 rounded to units of 4 are capped at 49 units
    (6, {"min_motion_length": 4}, {4}),  # a single-unit clip is never shortened to nothing
])
def test_crop_lengths_stay_within_bounds_that_are_not_multiples_of_the_unit(tmp_path, frames, bound, expected):
    """The training crop's length never exceeds a max_motion_length that is not a multiple of the unit, and a clip of
    a single unit is never shortened to zero frames."""
    write_dataset(tmp_path, {"a": frames}, {"train": ["a"]})
    spec = dataclasses.replace(get_dataset_spec("t2m", str(tmp_path)), **bound)
    mean, std = _stats()
    ds = Text2MotionDataset(spec, "train", mean, std, progress=False)
    torch.manual_seed(0)
    assert {ds[0].length for _ in range(30)} == expected


# ---------------------------------------------------------------------------------------------------------------------
# Evaluation dataset
# ---------------------------------------------------------------------------------------------------------------------

class _Vectors:
    def __getitem__(self, token):
        word, _ = token.split("/")
        return np.full(3, len(word), dtype=np.float32), np.zeros(2, dtype=np.float32)


def _eval_dataset(tmp_path, lengths, texts=None):
    write_dataset(tmp_path, lengths, {"test": list(lengths)}, texts=texts)
    spec = get_dataset_spec("t2m", str(tmp_path))
    mean, std = _stats()
    return Text2MotionEvalDataset(spec, "test", mean, std, _Vectors(), progress=False)


def test_reset_max_len_accepts_max_motion_length_itself(tmp_path):
    ds = _eval_dataset(tmp_path, {"a": 60, "b": 199})
    ds.reset_max_len(196)
    assert ds.pointer == 1 and len(ds) == 1
    assert ds[0].m_length == 196


def test_eval_items_draw_among_all_captions_of_a_sample(tmp_path):
    texts = {"a": [WHOLE, "a person runs.#a/DET person/NOUN run/VERB#0.0#0.0"]}
    ds = _eval_dataset(tmp_path, {"a": 60}, texts)
    torch.manual_seed(0)
    assert {ds[0].caption for _ in range(30)} == {"a person walks forward.", "a person runs."}


# ---------------------------------------------------------------------------------------------------------------------
# Batch order and loading
# ---------------------------------------------------------------------------------------------------------------------

class _Noisy(torch.utils.data.Dataset):
    """Item i is (i, a draw from each host RNG)."""

    def __len__(self) -> int:
        return 12

    def __getitem__(self, i: int):
        return torch.tensor([float(i), float(torch.rand(())), random.random(), float(np.random.rand())])


def test_in_process_loading_leaves_every_host_rng_as_it_found_it():
    from utils.batching import EpochBatchSampler, epoch_batches

    def draws():
        return float(torch.rand(())), random.random(), float(np.random.rand())

    torch.manual_seed(7), random.seed(7), np.random.seed(7)
    expected = draws()
    torch.manual_seed(7), random.seed(7), np.random.seed(7)
    batches = list(epoch_batches(_Noisy(), EpochBatchSampler(12, 4, seed=0, epoch=0), None, 0, False))
    assert len(batches) == 3 and batches[0].shape == (4, 4)
    assert draws() == expected


def test_the_loader_uses_the_collate_function_it_is_given():
    def first_column(items):
        return [int(x[0]) for x in items]

    sampler = EpochBatchSampler(12, 4, seed=1, epoch=0)
    batches = list(epoch_batches(_Noisy(), sampler, first_column, 0, False))
    assert batches == [[i for i, _ in keys] for keys in sampler]


def test_a_stacked_batch_is_collated_without_a_copy():

    stacked = torch.arange(12.0).reshape(3, 4)
    assert collate_batch(StackedBatch(stacked)) is stacked
    rows = [torch.ones(2), torch.zeros(2)]
    assert torch.equal(collate_batch(rows), torch.stack(rows))


class _DrawFetch(torch.utils.data.Dataset):
    """A dataset read in one batched fetch of its draws; reading it item by item is an error."""

    def __init__(self) -> None:
        self.fetches = []

    def __len__(self) -> int:
        return 8

    def draw(self, i: int):
        return i, float(torch.rand(()))

    def fetch(self, draws):
        self.fetches.append(list(draws))
        return [torch.tensor([float(i), r]) for i, r in draws]

    def __getitem__(self, i: int):
        raise AssertionError("read item by item")


def test_seeded_samples_draw_each_sample_from_its_seed_then_fetch_the_batch_once():
    ds = _DrawFetch()
    items = SeededSamples(ds).__getitems__([(3, 11), (5, 12), (3, 11)])
    assert len(ds.fetches) == 1 and [i for i, _ in ds.fetches[0]] == [3, 5, 3]
    assert torch.equal(items[0], items[2]) and not torch.equal(items[0], items[1])
    torch.manual_seed(11)
    assert items[0][1].item() == pytest.approx(float(torch.rand(())))
