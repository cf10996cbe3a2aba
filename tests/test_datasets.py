"""Datasets, corpus index and normalisation on tiny datasets written into tmp_path."""

from __future__ import annotations

import logging
import os
import pickle
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from layout_helpers import WHOLE, stats, write_dataset

from utils.dataset_specs import get_dataset_spec
from utils.datasets import (
    SUBCLIP_LETTERS,
    DatasetError,
    MotionIndex,
    MotionWindowDataset,
    Text2MotionDataset,
    Text2MotionEvalDataset,
    collate_eval,
    collate_text_motion,
    collect_text_samples,
    sentence_tokens,
)
from utils.normalization import eval_normalization, load_mean_std

REAL_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "humanml3d-samples"


class FakeVectorizer:
    """word/POS -> (a vector encoding the word's length, a POS one-hot), like utils.word_vectorizer."""

    dim_word = 6
    pos = ("VERB", "NOUN", "DET", "ADP", "NUM", "AUX", "PRON", "ADJ", "ADV", "Loc_VIP", "Body_VIP", "Obj_VIP",
           "Act_VIP", "Desc_VIP", "OTHER")

    def __getitem__(self, token: str) -> tuple[np.ndarray, np.ndarray]:
        word, pos = token.split("/")
        onehot = np.zeros(len(self.pos), dtype=np.float32)
        onehot[self.pos.index(pos) if pos in self.pos else -1] = 1
        return np.full(self.dim_word, len(word), dtype=np.float32), onehot


def match_offset(clip: np.ndarray, window: np.ndarray) -> int:
    """The offset at which ``window`` (raw frames) occurs in ``clip``; fails when it occurs nowhere."""
    for offset in range(clip.shape[0] - window.shape[0] + 1):
        if np.allclose(clip[offset:offset + window.shape[0]], window, atol=1e-5):
            return offset
    raise AssertionError("window is not a slice of the clip")


# ---------------------------------------------------------------------------------------------------------------------
# Tokenizer windows
# ---------------------------------------------------------------------------------------------------------------------

def test_window_dataset_shapes_normalisation_and_skips(tmp_path, caplog):
    motions = write_dataset(tmp_path, {"a": 70, "b": 64, "c": 63, "d": 10, "e": 150},
                            {"train": ["a", "b", "c", "d", "e"]})
    spec = get_dataset_spec("t2m", str(tmp_path))
    mean, std = stats(spec, tmp_path)
    with caplog.at_level(logging.WARNING):
        ds = MotionWindowDataset(spec, "train", mean, std, progress=False)
    assert len(ds) == 3  # c and d are shorter than the 64-frame window
    assert ds.skipped.counts == {"clips shorter than the 64-frame window": 2}
    assert "2 clips shorter than the 64-frame window (c, d)" in caplog.text
    torch.manual_seed(0)
    offsets = []
    for _ in range(10):
        window = ds[2]
        assert window.shape == (64, 263) and window.dtype == torch.float32
        offsets.append(match_offset(motions["e"], window.numpy() * std + mean))
    assert len(set(offsets)) > 1  # random offsets
    torch.manual_seed(0)
    assert [match_offset(motions["e"], ds[2].numpy() * std + mean) for _ in range(10)] == offsets  # reproducible
    np.testing.assert_allclose(ds[1].numpy(), (motions["b"] - mean) / std, rtol=1e-5, atol=1e-5)

    first = MotionWindowDataset(spec, "train", mean, std, mode="first", progress=False)
    np.testing.assert_allclose(first[0].numpy(), (motions["a"][:64] - mean) / std, rtol=1e-5, atol=1e-5)

    every = MotionWindowDataset(spec, "train", mean, std, window_size=32, mode="all", stride=16, progress=False)
    # windows per clip: (L - 32) // 16 + 1 for a 70, b 64, c 63, e 150 (d is too short)
    assert len(every) == 3 + 3 + 2 + 8
    np.testing.assert_allclose(every[4].numpy(), (motions["b"][16:48] - mean) / std, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(every[len(every) - 1].numpy(), (motions["e"][112:144] - mean) / std, rtol=1e-5,
                               atol=1e-5)
    with pytest.raises(IndexError):
        every[len(every)]


@pytest.mark.parametrize("name", ["t2m", "t2m_67"])  # all of the file's columns, or its first 67 of 263
def test_window_dataset_batch_is_numpy_normalisation_bit_for_bit(tmp_path, name):
    motions = write_dataset(tmp_path, {"a": 64, "b": 80}, {"train": ["a", "b"]}, stats_dim=263)
    spec = get_dataset_spec(name, str(tmp_path))
    mean, std = stats(spec, tmp_path)
    ds = MotionWindowDataset(spec, "train", mean, std, mode="first", progress=False)
    batch = ds.__getitems__([1, 0, 1]).stacked
    assert batch.shape == (3, 64, spec.dim_pose) and batch.is_contiguous()
    for got, clip in zip(batch, ["b", "a", "b"]):
        expected = (motions[clip][:64, :spec.dim_pose] - mean) / std
        assert np.array_equal(got.numpy(), expected)


@pytest.mark.parametrize("shared", [False, True])
def test_window_batch_is_float32_under_another_default_dtype(tmp_path, shared):
    motions = write_dataset(tmp_path, {"a": 64}, {"train": ["a"]})
    spec = get_dataset_spec("t2m", str(tmp_path))
    mean, std = stats(spec, tmp_path)
    ds = MotionWindowDataset(spec, "train", mean, std, mode="first", progress=False)
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        batch = ds.fetch([(0, 0)], shared=shared).stacked
    finally:
        torch.set_default_dtype(previous)
    assert batch.dtype == torch.float32 and batch.is_shared() == shared
    assert np.array_equal(batch[0].numpy(), (motions["a"] - mean) / std)


class _SharedProbe(torch.utils.data.Dataset):
    """Whether a batch read in a worker lies in shared memory, and its values (module level: workers unpickle it)."""

    def __init__(self, ds: MotionWindowDataset) -> None:
        self.ds = ds

    def __len__(self) -> int:
        return len(self.ds)

    def __getitem__(self, item: int) -> tuple[bool, bool, torch.Tensor]:
        batch = self.ds.fetch([(int(self.ds.clips[item]), 0)]).stacked
        return batch.is_shared(), self.ds[item].is_shared(), batch.clone()


def test_window_batches_are_read_into_shared_memory_in_workers_only(tmp_path):
    write_dataset(tmp_path, {"a": 64, "b": 80}, {"train": ["a", "b"]})
    spec = get_dataset_spec("t2m", str(tmp_path))
    ds = MotionWindowDataset(spec, "train", *stats(spec, tmp_path), mode="first", progress=False)
    probe = _SharedProbe(ds)
    assert probe[1][0] is False  # in-process: an ordinary tensor
    loader = torch.utils.data.DataLoader(probe, batch_size=None, num_workers=1)
    for item, (shared, single_shared, values) in enumerate(loader):
        assert bool(shared)  # the worker wrote it where the main process reads it without a copy
        assert not bool(single_shared)  # a single window is copied into its batch by the collate function anyway
        assert torch.equal(values, probe[item][2])
    with pytest.raises(IndexError, match="outside the 144 frames of the index in .*motion_index"):
        ds.fetch([(1, 17)])  # clip b (80 frames) begins at frame 64; this window would end at frame 144 of 0..143


def test_window_dataset_batched_read_matches_item_reads(tmp_path):
    from utils.batching import SeededSamples

    write_dataset(tmp_path, {"a": 70, "b": 64, "e": 150, "f": 97}, {"train": ["a", "b", "e", "f"]})
    spec = get_dataset_spec("t2m", str(tmp_path))
    ds = MotionWindowDataset(spec, "train", *stats(spec, tmp_path), progress=False)
    items = [3, 0, 2, 2, 1]
    torch.manual_seed(5)
    one_by_one = [ds[i] for i in items]
    torch.manual_seed(5)
    batched = ds.__getitems__(items)  # what the DataLoader calls for a batch
    assert len(batched) == len(items)
    for a, b in zip(one_by_one, batched):
        assert torch.equal(a, b)
    # the engine's per-sample seeding draws the same offsets whether the batch is read at once or item by item
    seeded = SeededSamples(ds)
    keys = [(i, 1000 + n) for n, i in enumerate(items)]
    for a, b in zip([seeded[k] for k in keys], seeded.__getitems__(keys)):
        assert torch.equal(a, b)
    loader = torch.utils.data.DataLoader(ds, batch_size=4)
    assert next(iter(loader)).shape == (4, 64, 263)
    # the engine hands the batch tensor on instead of stacking its rows again
    from utils.batching import EpochBatchSampler, epoch_batches

    sampler = EpochBatchSampler(len(ds), 4, 0, 0)
    for workers in (0, 1):
        batch = next(epoch_batches(ds, sampler, None, workers, False))
        assert batch.shape == (4, 64, 263) and batch.is_contiguous()
        rows = [seeded[key] for key in next(iter(sampler))]
        assert torch.equal(batch, torch.stack(rows))


def test_window_dataset_pickles_without_the_corpus(tmp_path):
    write_dataset(tmp_path, {"a": 3000, "b": 2000}, {"train": ["a", "b"]})
    spec = get_dataset_spec("t2m", str(tmp_path))
    ds = MotionWindowDataset(spec, "train", *stats(spec, tmp_path), mode="first", progress=False)
    blob = pickle.dumps(ds)  # what a spawned DataLoader worker receives
    assert len(blob) < 20_000 < ds.index.motion.nbytes
    clone = pickle.loads(blob)
    assert isinstance(clone.index.motion, np.memmap)
    torch.testing.assert_close(clone[1], ds[1])


def test_window_dataset_t2m_67_reads_263_files(tmp_path):
    motions = write_dataset(tmp_path, {"a": 80}, {"train": ["a"]})
    spec = get_dataset_spec("t2m_67", str(tmp_path))
    mean, std = stats(spec, tmp_path)
    ds = MotionWindowDataset(spec, "train", mean, std, mode="first", progress=False)
    assert ds[0].shape == (64, 67)
    np.testing.assert_allclose(ds[0].numpy(), (motions["a"][:64, :67] - mean) / std, rtol=1e-5, atol=1e-5)
    loader = torch.utils.data.DataLoader(ds, batch_size=1)
    assert next(iter(loader)).shape == (1, 64, 67)


def test_window_dataset_errors(tmp_path):
    write_dataset(tmp_path, {"a": 20}, {"train": ["a"]})
    spec = get_dataset_spec("t2m", str(tmp_path))
    mean, std = stats(spec, tmp_path)
    with pytest.raises(DatasetError, match="no clip has 64 frames or more"):
        MotionWindowDataset(spec, "train", mean, std, progress=False)
    with pytest.raises(ValueError, match=r"mean \(67,\) and std \(67,\); expected \(263,\)"):
        MotionWindowDataset(spec, "train", mean[:67], std[:67], window_size=8, progress=False)
    with pytest.raises(ValueError, match="mode 'every'"):
        MotionWindowDataset(spec, "train", mean, std, mode="every")
    # 0 is a bad value, not "use the default" (64 frames, or a stride of one window)
    with pytest.raises(ValueError, match="window_size 0 and stride 8 must be >= 1"):
        MotionWindowDataset(spec, "train", mean, std, window_size=0, stride=8, progress=False)
    with pytest.raises(ValueError, match="window_size 8 and stride 0 must be >= 1"):
        MotionWindowDataset(spec, "train", mean, std, window_size=8, mode="all", stride=0, progress=False)


# ---------------------------------------------------------------------------------------------------------------------
# Sub-clips
# ---------------------------------------------------------------------------------------------------------------------

SUBCLIP_TEXTS = {
    # whole clip + a 60-frame sub-clip (1.0 s .. 4.0 s at 20 per second) + a 30-frame one (too short for t2m)
    "a": [WHOLE, "he turns.#he/PRON turn/VERB#1.0#4.0", "he sits.#he/PRON sit/VERB#5.0#6.5"],
    # only sub-clip captions: the full clip is dropped
    "b": ["he jumps.#he/PRON jump/VERB#0.0#3.0", "he lands.#he/PRON land/VERB#2.0#5.0"],
    # too long as a whole (>= 200 frames): skipped with its sub-clips
    "c": [WHOLE, "he runs.#he/PRON run/VERB#0.0#3.0"],
    "d": None,  # no caption file
}


def test_subclip_rules(tmp_path):
    write_dataset(tmp_path, {"a": 150, "b": 120, "c": 200, "d": 100}, {"train": list("abcd")}, texts=SUBCLIP_TEXTS)
    spec = get_dataset_spec("t2m", str(tmp_path))
    index = MotionIndex.build(spec, "train", progress=False)
    samples = collect_text_samples(spec, index)
    by_name = {name: j for j, name in enumerate(samples.names)}
    assert len(samples) == 4
    assert "a" in by_name and "b" not in by_name and "c" not in by_name
    sub = [n for n in samples.names if n.endswith("_a")]
    assert len(sub) == 1 and sub[0][0] in SUBCLIP_LETTERS and len(sub[0]) == 3
    j = by_name[sub[0]]
    assert (samples.starts[j], samples.stops[j]) == (20, 80)
    assert [c.caption for c in samples.captions[j]] == ["he turns."]
    assert [c.caption for c in samples.captions[by_name["a"]]] == ["a person walks forward."]
    assert sorted((samples.starts[by_name[n]], samples.stops[by_name[n]]) for n in samples.names
                  if n.endswith("_b")) == [(0, 60), (40, 100)]
    assert list(samples.lengths) == sorted(samples.lengths)
    assert samples.skipped.counts == {"sub-clips outside 40 <= frames < 200": 1,
                                      "clips outside 40 <= frames < 200": 1, "clips without a caption file": 1}
    # the sub-clip letter is a function of the id: the same on every build
    assert collect_text_samples(spec, index).names == samples.names


def test_subclip_kit_uses_20_per_second_and_min_24(tmp_path):
    write_dataset(tmp_path, {"a": 150}, {"train": ["a"]}, dim=251, texts={"a": SUBCLIP_TEXTS["a"]})
    spec = get_dataset_spec("kit", str(tmp_path))
    samples = collect_text_samples(spec, MotionIndex.build(spec, "train", progress=False))
    bounds = sorted((int(a), int(b)) for a, b in zip(samples.starts, samples.stops))
    # KIT runs at 12.5 fps but tags are still multiplied by 20; the 30-frame sub-clip passes KIT's minimum of 24.
    assert bounds == [(0, 150), (20, 80), (100, 130)]


def test_text_file_errors_raise_naming_file(tmp_path):
    write_dataset(tmp_path, {"a": 50}, {"train": ["a"]}, texts={"a": ["walk#walk/VERB#0.0"]})
    spec = get_dataset_spec("t2m", str(tmp_path))
    mean, std = stats(spec, tmp_path)
    with pytest.raises(DatasetError, match=r"a\.txt: line 1: 3 '#'-separated fields"):
        Text2MotionDataset(spec, "train", mean, std, progress=False)


# ---------------------------------------------------------------------------------------------------------------------
# Text-motion datasets
# ---------------------------------------------------------------------------------------------------------------------

def test_text2motion_padding_and_length_rounding(tmp_path, caplog):
    motions = write_dataset(tmp_path, {"a": 43, "b": 199, "c": 30}, {"train": ["a", "b", "c"]},
                            texts={"a": [WHOLE, "a person runs.#a/DET person/NOUN run/VERB#0.0#0.0"]})
    spec = get_dataset_spec("t2m", str(tmp_path))
    mean, std = stats(spec, tmp_path)
    with caplog.at_level(logging.WARNING):
        ds = Text2MotionDataset(spec, "train", mean, std, progress=False)
    assert "1 clips outside 40 <= frames < 200 (c)" in caplog.text
    assert len(ds) == 2 and ds.samples.names == ["a", "b"]
    torch.manual_seed(0)
    seen_lengths, seen_captions = set(), set()
    for _ in range(40):
        caption, motion, length = ds[0]
        assert motion.shape == (196, 263) and motion.dtype == torch.float32
        assert length % 4 == 0
        seen_lengths.add(length)
        seen_captions.add(caption)
        assert torch.count_nonzero(motion[length:]) == 0
        match_offset(motions["a"], motion[:length].numpy() * std + mean)
    assert seen_lengths == {40, 36}  # 43 -> 40, or one unit less with probability 1/3
    assert seen_captions == {"a person walks forward.", "a person runs."}
    lengths = {ds[1].length for _ in range(30)}
    assert lengths <= {196, 192} and 196 in lengths  # 199 frames never exceed max_motion_length

    batch = collate_text_motion([ds[0], ds[1]])
    assert batch.motion.shape == (2, 196, 263) and batch.lengths.dtype == torch.long
    assert len(batch.captions) == 2


def test_text2motion_dataloader_t2m_67(tmp_path):
    write_dataset(tmp_path, {"a": 60, "b": 80}, {"val": ["a", "b"]})
    spec = get_dataset_spec("t2m_67", str(tmp_path))
    mean, std = stats(spec, tmp_path)
    ds = Text2MotionDataset(spec, "val", mean, std, progress=False)
    loader = torch.utils.data.DataLoader(ds, batch_size=2, collate_fn=collate_text_motion)
    captions, motion, lengths = next(iter(loader))
    assert motion.shape == (2, 196, 67) and captions == ["a person walks forward."] * 2
    assert set(lengths.tolist()) <= {56, 60, 76, 80}


def test_sentence_tokens_crop():
    tokens, n = sentence_tokens(["a/DET", "man/NOUN"])
    assert n == 4 and len(tokens) == 22
    assert tokens[:4] == ["sos/OTHER", "a/DET", "man/NOUN", "eos/OTHER"] and set(tokens[4:]) == {"unk/OTHER"}
    long = [f"w{i}/NOUN" for i in range(25)]
    tokens, n = sentence_tokens(long)
    assert n == 22 and tokens == ["sos/OTHER"] + long[:20] + ["eos/OTHER"]
    tokens, n = sentence_tokens(long[:20])  # exactly max_text_len: the crop branch
    assert n == 22 and tokens[-1] == "eos/OTHER"
    tokens, n = sentence_tokens(long[:19])
    assert n == 21 and tokens[-1] == "unk/OTHER"
    tokens, n = sentence_tokens(long, max_text_len=5)
    assert n == 7 and len(tokens) == 7


def test_eval_dataset_items_sorting_and_reset_max_len(tmp_path, caplog):
    lengths = {"a": 120, "b": 44, "c": 80, "d": 60}
    texts = {"d": ["x#" + " ".join(["go/VERB"] * 25) + "#0#0", "no tokens##0#0"]}
    motions = write_dataset(tmp_path, lengths, {"test": list(lengths)}, texts=texts)
    spec = get_dataset_spec("t2m", str(tmp_path))
    mean, std = eval_normalization(*stats(spec, tmp_path), spec)
    with caplog.at_level(logging.WARNING):
        ds = Text2MotionEvalDataset(spec, "test", mean, std, FakeVectorizer(), progress=False)
    assert ds.skipped.counts == {"captions without tokens": 1}
    assert "1 captions without tokens (d)" in caplog.text
    assert ds.samples.names == ["b", "d", "c", "a"] and len(ds) == 4
    torch.manual_seed(3)
    item = ds[0]
    assert item.word_embs.shape == (22, FakeVectorizer.dim_word) and item.pos_ohot.shape == (22, 15)
    assert item.sent_len == 6 and item.caption == "a person walks forward."
    assert item.tokens.split("_")[:2] == ["sos/OTHER", "a/DET"]
    np.testing.assert_array_equal(item.word_embs[:, 0].numpy(), [3, 1, 6, 4, 7, 3] + [3] * 16)
    assert item.pos_ohot[1, FakeVectorizer.pos.index("DET")] == 1 and item.pos_ohot[0, -1] == 1
    assert item.motion.shape == (196, 263) and item.m_length in (40, 44)
    match_offset(motions["b"], item.motion[:item.m_length].numpy() * std + mean)
    assert ds[1].sent_len == 22 and ds[1].caption == "x"  # 25 tokens cropped to 20 + sos/eos

    ds.reset_max_len(70)
    assert ds.pointer == 2 and len(ds) == 2
    assert ds[0].m_length in (76, 80)
    with pytest.raises(IndexError):
        ds[2]
    with pytest.raises(ValueError, match="exceeds max_motion_length 196"):
        ds.reset_max_len(197)

    ds.reset_max_len(0)
    batch = collate_eval([ds[0], ds[1], ds[3]])
    assert batch.sent_lens.tolist() == [22, 6, 6]
    assert batch.captions[0] == "x" and batch.word_embs.shape == (3, 22, FakeVectorizer.dim_word)
    assert batch.motion.shape == (3, 196, 263) and batch.m_lengths.dtype == torch.long
    assert len(batch.tokens) == 3


def test_eval_dataset_names_the_caption_file_of_a_token_without_pos(tmp_path):
    """A token the evaluator cannot read fails when the captions are read, naming the file, not mid-evaluation."""
    texts = {"b": ["a person walks.#a/DET person walks/VERB#0#0"]}
    write_dataset(tmp_path, {"a": 60, "b": 44}, {"test": ["a", "b"]}, texts=texts)
    spec = get_dataset_spec("t2m", str(tmp_path))
    mean, std = eval_normalization(*stats(spec, tmp_path), spec)
    with pytest.raises(DatasetError, match=r"texts/b\.txt: caption 'a person walks\.': caption token 'person' is "
                                           r"not of the form 'word/POS'"):
        Text2MotionEvalDataset(spec, "test", mean, std, FakeVectorizer(), progress=False)
    assert len(Text2MotionDataset(spec, "test", mean, std, progress=False)) == 2  # training reads only the caption


def test_text_datasets_fail_when_nothing_is_left(tmp_path):
    write_dataset(tmp_path, {"a": 50}, {"train": ["a"]}, texts={"a": None})
    spec = get_dataset_spec("t2m", str(tmp_path))
    mean, std = stats(spec, tmp_path)
    with pytest.raises(DatasetError, match=r"no text-motion sample left \(1 clips without a caption file \(a\)\)") as e:
        Text2MotionDataset(spec, "train", mean, std, progress=False)
    assert e.value.kind == "no_captions"
    # Without captions required, the clip is a sample with the caption "".
    data = Text2MotionDataset(spec, "train", mean, std, progress=False, captions_optional=True)
    assert len(data) == 1 and data[0].caption == "" and data[0].length in (44, 48)
    short = tmp_path / "short"
    write_dataset(short, {"b": 10}, {"train": ["b"]})
    with pytest.raises(DatasetError, match="no text-motion sample left") as e:
        Text2MotionDataset(spec, "train", mean, std, data_root=str(short), progress=False)
    assert e.value.kind == "empty_split"  # too short, not missing captions


# ---------------------------------------------------------------------------------------------------------------------
# Real HumanML3D files (read from the shared data folder, never copied into the repository)
# ---------------------------------------------------------------------------------------------------------------------

def test_real_humanml3d_files(tmp_path):
    if not REAL_DATA.is_dir():
        pytest.skip(f"real HumanML3D samples not found: {REAL_DATA}")
    ids = sorted(p.stem for p in (REAL_DATA / "new_joint_vecs").glob("*.npy"))
    shutil.copytree(REAL_DATA / "new_joint_vecs", tmp_path / "new_joint_vecs")
    for name in ("Mean.npy", "Std.npy"):
        shutil.copy(REAL_DATA / name, tmp_path / name)
    (tmp_path / "train.txt").write_text("\n".join(ids))
    spec = get_dataset_spec("t2m_67", str(tmp_path))
    mean, std = load_mean_std(spec, str(tmp_path))
    ds = MotionWindowDataset(spec, "train", mean, std, mode="first", progress=False)
    assert len(ids) == 6 and len(ds) == len(ids)  # every sample has at least the 64 frames of a window
    for i in range(len(ds)):
        raw = np.load(REAL_DATA / "new_joint_vecs" / f"{ds.index.clip_id(int(ds.clips[i]))}.npy")
        np.testing.assert_allclose(ds[i].numpy() * std + mean, raw[:64, :67], rtol=1e-5, atol=1e-5)
    # The shipped evaluator statistics are the dataset std with the root and contact groups divided by about 25,
    # i.e. eval_normalization's factor 5 applied twice (see utils.normalization.eval_normalization).
    full_mean, full_std = load_mean_std(get_dataset_spec("t2m"), str(tmp_path))
    t2m = get_dataset_spec("t2m")
    twice = eval_normalization(*eval_normalization(full_mean, full_std, t2m), t2m)[1]
    evaluator_std = np.load(REAL_DATA / "evaluator_meta" / "std.npy")
    np.testing.assert_allclose(twice, evaluator_std, rtol=0.02)


class _WhoReads(torch.utils.data.Dataset):
    """Item i is (i, a number from the torch RNG, the process that read it)."""

    def __len__(self) -> int:
        return 24

    def __getitem__(self, i: int) -> tuple[int, float, int]:
        return i, float(torch.rand(())), os.getpid()


def test_epoch_loader_keeps_its_workers_and_the_batches_of_fresh_loaders():
    from utils.batching import EpochBatchSampler, EpochLoader, epoch_batches

    loader = EpochLoader(_WhoReads(), num_workers=2)
    pids = set()
    try:
        for epoch, start in ((0, 0), (1, 2), (2, 0)):
            sampler = EpochBatchSampler(24, 4, seed=3, epoch=epoch, start=start)
            kept = list(loader.epoch(sampler))
            fresh = list(epoch_batches(_WhoReads(), sampler, None, 0, False))
            assert len(kept) == 6 - start
            for a, b in zip(kept, fresh):
                assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])  # same samples, same per-sample seeds
            pids |= {int(p) for batch in kept for p in batch[2]}
        partial = loader.epoch(EpochBatchSampler(24, 4, seed=3, epoch=3))
        next(partial)  # an epoch left unfinished does not disturb the next one
        again = list(loader.epoch(EpochBatchSampler(24, 4, seed=3, epoch=4)))
        assert len(again) == 6
        pids |= {int(p) for batch in again for p in batch[2]}
    finally:
        loader.close()
    assert len(pids) == 2 and os.getpid() not in pids  # two worker processes served every epoch



# ---------------------------------------------------------------------------------------------------------------------
# A dataset folder that does not exist
# ---------------------------------------------------------------------------------------------------------------------

def _missing_root_readers(spec, data_root):
    return {"statistics": lambda: load_mean_std(spec, data_root),
            "index": lambda: MotionIndex.build(spec, "train", data_root, progress=False)}


@pytest.mark.parametrize("reader", ["statistics", "index"])
def test_missing_data_root_names_the_flag_the_layout_and_the_synthetic_command(tmp_path, reader):
    root = str(tmp_path / "nowhere")
    with pytest.raises(DatasetError) as info:
        _missing_root_readers(get_dataset_spec("synthetic", root), root)[reader]()
    message = str(info.value)
    assert info.value.kind == "missing_root" and info.value.path == root
    assert message.startswith(f"--data_root {root}: dataset folder missing; expected a dataset in the HumanML3D layout")
    assert "Mean.npy: missing" not in message and "train.txt: split file missing" not in message
    for part in ("new_joint_vecs/", "texts/", "train.txt", "Mean.npy/Std.npy"):
        assert part in message
    assert message.endswith(f"python prepare_data.py synthetic --out {root}")


@pytest.mark.parametrize("reader", ["statistics", "index"])
def test_missing_default_folder_is_named_as_the_dataset_default(tmp_path, monkeypatch, reader):
    monkeypatch.setenv("FSQ_MARDM_HOME", str(tmp_path))
    spec = get_dataset_spec("t2m")
    with pytest.raises(DatasetError) as info:
        _missing_root_readers(spec, None)[reader]()
    message = str(info.value)
    assert message.startswith(f"{tmp_path / 'dataset' / 'HumanML3D'}: dataset folder missing (the default folder of "
                              f"--dataset_name t2m; --data_root reads another)")
    assert "prepare_data.py synthetic" not in message and "dataset/README.md" in message


def test_data_root_that_is_a_file_is_not_called_missing(tmp_path):
    root = tmp_path / "file"
    root.write_text("")
    with pytest.raises(DatasetError, match=rf"--data_root {re.escape(str(root))}: not a folder;"):
        load_mean_std(get_dataset_spec("synthetic", str(root)), str(root))


def test_random_windows_reach_the_last_start(tmp_path):
    motions = write_dataset(tmp_path, {"a": 66}, {"train": ["a"]})
    spec = get_dataset_spec("t2m", str(tmp_path))
    mean, std = stats(spec, tmp_path)
    ds = MotionWindowDataset(spec, "train", mean, std, progress=False)
    torch.manual_seed(0)
    offsets = {match_offset(motions["a"], ds[0].numpy() * std + mean) for _ in range(60)}
    assert offsets == {0, 1, 2}  # 66 - 64 + 1 starts, the last one included


def test_text_motion_crops_reach_every_offset_and_shorten_one_time_in_three(tmp_path):
    motions = write_dataset(tmp_path, {"a": 43}, {"train": ["a"]})
    spec = get_dataset_spec("t2m", str(tmp_path))
    mean, std = stats(spec, tmp_path)
    ds = Text2MotionDataset(spec, "train", mean, std, progress=False)
    torch.manual_seed(0)
    offsets: dict[int, set[int]] = {40: set(), 36: set()}
    counts = {40: 0, 36: 0}
    for _ in range(600):
        _, motion, length = ds[0]
        counts[length] += 1
        if len(offsets[length]) < 43 - length + 1:
            offsets[length].add(match_offset(motions["a"], motion[:length].numpy() * std + mean))
    assert offsets == {40: set(range(4)), 36: set(range(8))}
    assert 0.25 < counts[36] / 600 < 0.42  # one unit less with probability 1/3


def test_a_subclip_running_past_the_clip_end_stops_at_it(tmp_path):
    write_dataset(tmp_path, {"a": 100}, {"train": ["a"]}, texts={"a": [WHOLE, "he turns.#he/PRON turn/VERB#1.0#6.0"]})
    spec = get_dataset_spec("t2m", str(tmp_path))
    samples = collect_text_samples(spec, MotionIndex.build(spec, "train", progress=False))
    assert sorted(zip(samples.starts.tolist(), samples.stops.tolist())) == [(0, 100), (20, 100)]
    mean, std = stats(spec, tmp_path)
    ds = Text2MotionDataset(spec, "train", mean, std, progress=False)
    assert all(ds[j].length <= 80 for j in range(len(ds)) if ds.samples.starts[j] == 20)


def test_reset_max_len_keeps_samples_of_exactly_that_length(tmp_path):
    write_dataset(tmp_path, {"a": 70, "b": 44, "c": 80}, {"test": ["a", "b", "c"]})
    spec = get_dataset_spec("t2m", str(tmp_path))
    mean, std = stats(spec, tmp_path)
    ds = Text2MotionEvalDataset(spec, "test", mean, std, FakeVectorizer(), progress=False)
    ds.reset_max_len(70)
    assert len(ds) == 2 and sorted(ds.samples.lengths[ds.pointer:].tolist()) == [70, 80]
