"""Datasets, corpus index and normalisation on tiny datasets written into tmp_path."""

from __future__ import annotations

import logging
import os
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

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
    load_motion,
    read_split,
    read_texts,
    sentence_tokens,
)
from utils.normalization import Normalizer, eval_normalization, load_mean_std

torch.set_num_threads(1)

REAL_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "humanml3d-samples"
WHOLE = "a person walks forward.#a/DET person/NOUN walk/VERB forward/ADV#0.0#0.0"


def write_dataset(root: Path, lengths: dict[str, int], splits: dict[str, list[str]], dim: int = 263,
                  texts: dict[str, list[str]] | None = None, seed: int = 0, stats_dim: int | None = None,
                  dtype: type = np.float32) -> dict[str, np.ndarray]:
    """Write random (T, dim) features, captions (default: one whole-clip caption), split files and Mean/Std."""
    rng = np.random.default_rng(seed)
    (root / "new_joint_vecs").mkdir(parents=True, exist_ok=True)
    (root / "texts").mkdir(exist_ok=True)
    motions = {}
    for clip_id, length in lengths.items():
        motions[clip_id] = (rng.standard_normal((length, dim)) * 2 + 1).astype(dtype)
        np.save(root / "new_joint_vecs" / f"{clip_id}.npy", motions[clip_id])
        lines = (texts or {}).get(clip_id, [WHOLE])
        if lines is not None:
            (root / "texts" / f"{clip_id}.txt").write_text("\n".join(lines) + "\n")
    for split, ids in splits.items():
        (root / f"{split}.txt").write_text("".join(i + "\n" for i in ids))
    stats_dim = stats_dim or dim
    np.save(root / "Mean.npy", np.full(stats_dim, 1.0, dtype=np.float32))
    np.save(root / "Std.npy", np.linspace(0.5, 2.0, stats_dim).astype(np.float32))
    return motions


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


def stats(spec, root):
    return load_mean_std(spec, str(root))


def match_offset(clip: np.ndarray, window: np.ndarray) -> int:
    """The offset at which ``window`` (raw frames) occurs in ``clip``; fails when it occurs nowhere."""
    for offset in range(clip.shape[0] - window.shape[0] + 1):
        if np.allclose(clip[offset:offset + window.shape[0]], window, atol=1e-5):
            return offset
    raise AssertionError("window is not a slice of the clip")


# ---------------------------------------------------------------------------------------------------------------------
# Files
# ---------------------------------------------------------------------------------------------------------------------

def test_read_split_and_errors(tmp_path):
    (tmp_path / "train.txt").write_text("000001\n\n 000002 \n")
    assert read_split(str(tmp_path), "train") == ["000001", "000002"]
    (tmp_path / "val.txt").write_text("\n\n")
    with pytest.raises(DatasetError, match=r"val\.txt: split is empty") as e:
        read_split(str(tmp_path), "val")
    assert e.value.kind == "empty_split"
    with pytest.raises(DatasetError, match=r"test\.txt: split file missing"):
        read_split(str(tmp_path), "test")


def test_read_texts_parses_tags_and_tokens(tmp_path):
    path = tmp_path / "a.txt"
    path.write_text("a man #1 jumps.#a/DET man/NOUN jump/VERB#1.5#3.0\n\nhe waves#he/PRON wave/VERB#nan#nan\n"
                    "no tokens here##0.0#0.0\n")
    entries = read_texts(str(path))
    assert [e.caption for e in entries] == ["a man #1 jumps.", "he waves", "no tokens here"]
    assert entries[0].tokens == ("a/DET", "man/NOUN", "jump/VERB")
    assert (entries[0].f_tag, entries[0].to_tag) == (1.5, 3.0)
    assert (entries[1].f_tag, entries[1].to_tag) == (0.0, 0.0)  # NaN tags mean the whole clip
    assert entries[2].tokens == ()


@pytest.mark.parametrize("content, match", [
    (b"a caption#a/DET#0.0\n", r"bad\.txt: line 1: 3 '#'-separated fields; expected 4"),
    (WHOLE.encode() + b"\nwalk#walk/VERB#zero#1.0\n", r"bad\.txt: line 2: f_tag 'zero' is not a number"),
    (b"#walk/VERB#0.0#0.0\n", r"bad\.txt: line 1: empty caption"),
    (b"walk#walk/VERB#-1#2\n", r"bad\.txt: line 1: f_tag is '-1'; expected a finite time >= 0"),
    (b"caf\xe9 walk#walk/VERB#0#0\n", r"bad\.txt: line 1: byte 3 cannot be decoded"),
])
def test_read_texts_bad_input_names_file_and_line(tmp_path, content, match):
    path = tmp_path / "bad.txt"
    path.write_bytes(content)
    with pytest.raises(DatasetError, match=match):
        read_texts(str(path))


def test_read_texts_missing_file(tmp_path):
    with pytest.raises(DatasetError, match=r"nope\.txt: caption file missing") as e:
        read_texts(str(tmp_path / "nope.txt"))
    assert e.value.kind == "missing_text"


def _bad_motion(path: Path, case: str) -> None:
    good = np.zeros((50, 263), dtype=np.float32)
    if case == "nan":
        good[7, 100] = np.nan
        np.save(path, good)
    elif case == "inf":
        good[3, 260] = np.inf
        np.save(path, good)
    elif case == "width":
        np.save(path, np.zeros((50, 251), dtype=np.float32))
    elif case == "ndim":
        np.save(path, np.zeros((50, 22, 3), dtype=np.float32))
    elif case == "frames":
        np.save(path, np.zeros((0, 263), dtype=np.float32))
    elif case == "zero_bytes":
        path.write_bytes(b"")
    elif case == "garbage":
        path.write_bytes(b"this is not a numpy file at all")
    elif case == "truncated":
        np.save(path, good)
        path.write_bytes(path.read_bytes()[:1000])
    elif case == "strings":
        np.save(path, np.full((50, 263), "x"))
    elif case == "objects":
        np.save(path, np.array([[None] * 263] * 5, dtype=object), allow_pickle=True)


@pytest.mark.parametrize("case, kind, match", [
    ("nan", "nan", r"1 NAN values \(first at frame 7, feature 100 \(group 'rot'\)\); expected finite"),
    ("inf", "inf", r"1 INF values \(first at frame 3, feature 260 \(group 'foot_contact'\)\)"),
    ("width", "wrong_dim", r"feature width 251; expected 263 features per frame"),
    ("ndim", "wrong_dim", r"has 3 dims; expected \(T, 263\)"),
    ("frames", "empty_motion", r"0 frames; expected at least one frame"),
    ("zero_bytes", "empty_motion", r"empty file \(0 bytes\)"),
    ("garbage", "unreadable_motion", r"not a \.npy file \(no NUMPY header\)"),
    ("truncated", "unreadable_motion", r"cannot read as a \.npy array"),
    ("strings", "non_numeric", r"dtype <U1 is not numeric"),
    ("objects", "non_numeric", r"holds Python objects"),
])
def test_load_motion_bad_input(tmp_path, case, kind, match):
    spec = get_dataset_spec("t2m", str(tmp_path))
    path = tmp_path / "000042.npy"
    _bad_motion(path, case)
    with pytest.raises(DatasetError, match=match) as e:
        load_motion(str(path), spec)
    assert e.value.kind == kind
    assert "000042.npy" in str(e.value)


def test_load_motion_missing_file(tmp_path):
    with pytest.raises(DatasetError, match=r"000001\.npy: motion file missing"):
        load_motion(str(tmp_path / "000001.npy"), get_dataset_spec("t2m"))


def test_load_motion_casts_and_slices_for_t2m_67(tmp_path):
    values = np.random.default_rng(0).standard_normal((30, 263))  # float64 on disk, as some HumanML3D files
    np.save(tmp_path / "a.npy", values)
    full = load_motion(str(tmp_path / "a.npy"), get_dataset_spec("t2m"))
    essential = load_motion(str(tmp_path / "a.npy"), get_dataset_spec("t2m_67"))
    assert full.dtype == np.float32 and full.shape == (30, 263)
    assert essential.shape == (30, 67) and essential.flags.c_contiguous
    np.testing.assert_array_equal(essential, values[:, :67].astype(np.float32))
    with pytest.raises(DatasetError, match="expected 251 features"):
        load_motion(str(tmp_path / "a.npy"), get_dataset_spec("kit"))


# ---------------------------------------------------------------------------------------------------------------------
# Normalisation
# ---------------------------------------------------------------------------------------------------------------------

def test_load_mean_std_slices_and_checks(tmp_path):
    write_dataset(tmp_path, {"a": 10}, {"train": ["a"]})
    mean, std = load_mean_std(get_dataset_spec("t2m_67"), str(tmp_path))
    assert mean.shape == std.shape == (67,) and std.dtype == np.float32
    np.testing.assert_allclose(std, np.linspace(0.5, 2.0, 263)[:67], rtol=1e-6)
    # MARDM writes 67-dim statistics in place of the 263-dim ones: accepted as they are.
    np.save(tmp_path / "Std.npy", np.ones(67, dtype=np.float32))
    assert load_mean_std(get_dataset_spec("t2m_67"), str(tmp_path))[1].shape == (67,)
    with pytest.raises(DatasetError, match=r"Std\.npy has shape \(67,\); expected \(263,\)"):
        load_mean_std(get_dataset_spec("t2m"), str(tmp_path))


@pytest.mark.parametrize("value, kind, match", [
    (0.0, "std_zero", r"Std\.npy has 1 zero or negative entries \(first at index 70, group 'rot'\)"),
    (np.nan, "stats_nonfinite", r"Std\.npy has 1 non-finite entries \(first at index 70, group 'rot'\)"),
])
def test_load_mean_std_bad_std(tmp_path, value, kind, match):
    write_dataset(tmp_path, {"a": 10}, {"train": ["a"]})
    std = np.ones(263, dtype=np.float32)
    std[70] = value
    np.save(tmp_path / "Std.npy", std)
    with pytest.raises(DatasetError, match=match) as e:
        load_mean_std(get_dataset_spec("t2m"), str(tmp_path))
    assert e.value.kind == kind
    # the 67-dim slice does not contain the bad entry
    assert load_mean_std(get_dataset_spec("t2m_67"), str(tmp_path))[1].shape == (67,)


def test_load_mean_std_missing(tmp_path):
    with pytest.raises(DatasetError, match=r"Mean\.npy: missing; expected the dataset mean of shape \(263,\)"):
        load_mean_std(get_dataset_spec("t2m"), str(tmp_path))


def test_eval_normalization_divides_root_and_contacts():
    spec = get_dataset_spec("t2m")
    mean, std = np.arange(263, dtype=np.float32), np.full(263, 2.0, dtype=np.float32)
    eval_mean, eval_std = eval_normalization(mean, std, spec)
    expected = np.full(263, 2.0, dtype=np.float32)
    expected[0:4] /= 5
    expected[259:263] /= 5
    np.testing.assert_allclose(eval_std, expected)
    np.testing.assert_array_equal(eval_mean, mean)
    assert std[0] == 2.0  # input untouched (the reference's in-place edit is what doubled the bias)
    kit_std = eval_normalization(np.zeros(251), np.ones(251), get_dataset_spec("kit"))[1]
    assert np.count_nonzero(kit_std != 1) == 8 and kit_std[247] == pytest.approx(0.2)
    _, same = eval_normalization(mean[:67], std[:67], get_dataset_spec("t2m_67"))
    np.testing.assert_array_equal(same, std[:67])


def test_normalizer_round_trip_numpy_and_torch():
    rng = np.random.default_rng(1)
    norm = Normalizer(rng.standard_normal(5), rng.uniform(0.5, 2, 5))
    x = rng.standard_normal((2, 3, 5)).astype(np.float32)
    z = norm.transform(x)
    np.testing.assert_allclose(z, (x - norm.mean) / norm.std, rtol=1e-6)
    np.testing.assert_allclose(norm.inverse(z), x, atol=1e-5)
    zt = norm.transform(torch.from_numpy(x))
    assert isinstance(zt, torch.Tensor) and zt.dtype == torch.float32
    np.testing.assert_allclose(zt.numpy(), z, rtol=1e-6)
    np.testing.assert_allclose(norm.inverse(zt).numpy(), x, atol=1e-5)
    with pytest.raises(ValueError, match="4 features in its last dim; expected 5"):
        norm.transform(np.zeros((2, 4)))


# ---------------------------------------------------------------------------------------------------------------------
# Corpus index
# ---------------------------------------------------------------------------------------------------------------------

def test_motion_index_cached_reused_and_rebuilt(tmp_path, caplog):
    motions = write_dataset(tmp_path, {"a": 30, "b": 45, "c": 12}, {"train": ["a", "missing", "b", "c"]})
    spec = get_dataset_spec("t2m", str(tmp_path))
    with caplog.at_level(logging.WARNING):
        index = MotionIndex.build(spec, "train", progress=False)
    assert index.built and len(index) == 3
    assert [index.clip_id(i) for i in range(3)] == ["a", "b", "c"]
    np.testing.assert_array_equal(index.lengths, [30, 45, 12])
    assert isinstance(index.motion, np.memmap) and index.motion.shape == (87, 263)
    for i, clip_id in enumerate("abc"):
        np.testing.assert_array_equal(index.clip(i), motions[clip_id])
    assert index.skipped.counts == {"ids without a motion file": 1}
    assert "1 ids without a motion file (missing)" in caplog.text
    folder = index.folder
    assert folder.startswith(str(tmp_path / ".cache"))

    again = MotionIndex.build(spec, "train", progress=False)
    assert not again.built and again.folder == folder
    # t2m_67 reads the same 263-dim files, so it shares the index
    assert MotionIndex.build(get_dataset_spec("t2m_67", str(tmp_path)), "train", progress=False).folder == folder

    changed = np.ones((20, 263), dtype=np.float32)
    np.save(tmp_path / "new_joint_vecs" / "b.npy", changed)
    os.utime(tmp_path / "new_joint_vecs" / "b.npy", ns=(1, 1))  # a different mtime even on coarse clocks
    rebuilt = MotionIndex.build(spec, "train", progress=False)
    assert rebuilt.built and rebuilt.folder != folder
    assert not os.path.exists(folder)  # the stale index is removed
    np.testing.assert_array_equal(rebuilt.lengths, [30, 20, 12])
    np.testing.assert_array_equal(rebuilt.clip(1), changed)
    assert rebuilt.position("c") == 2


def test_motion_index_nested_ids_and_shared_cache_dir(tmp_path):
    (tmp_path / "one" / "new_joint_vecs" / "sub").mkdir(parents=True)
    (tmp_path / "one" / "texts" / "sub").mkdir(parents=True)
    one = write_dataset(tmp_path / "one", {"sub/x": 50, "y": 41}, {"train": ["sub/x", "y"]})
    two = write_dataset(tmp_path / "two", {"z": 45}, {"train": ["z"]}, seed=1)
    cache = str(tmp_path / "cache")
    first = MotionIndex.build(get_dataset_spec("t2m", str(tmp_path / "one")), "train", cache_dir=cache, progress=False)
    second = MotionIndex.build(get_dataset_spec("t2m", str(tmp_path / "two")), "train", cache_dir=cache,
                               progress=False)
    assert first.folder != second.folder and os.path.isdir(first.folder)  # neither build removed the other
    np.testing.assert_array_equal(first.clip(first.position("sub/x")), one["sub/x"])
    np.testing.assert_array_equal(second.clip(0), two["z"])
    spec = get_dataset_spec("t2m", str(tmp_path / "one"))
    ds = Text2MotionDataset(spec, "train", *stats(spec, tmp_path / "one"), cache_dir=cache, progress=False)
    assert ds.samples.names == ["y", "sub/x"]


def test_motion_index_corrupt_file_raises_naming_it(tmp_path):
    write_dataset(tmp_path, {"a": 30, "b": 30}, {"train": ["a", "b"]})
    values = np.zeros((30, 263), dtype=np.float32)
    values[4, 2] = np.nan
    np.save(tmp_path / "new_joint_vecs" / "b.npy", values)
    spec = get_dataset_spec("t2m", str(tmp_path))
    with pytest.raises(DatasetError, match=r"b\.npy: 1 NAN values \(first at frame 4, feature 2 \(group 'root_lin"):
        MotionIndex.build(spec, "train", progress=False)
    np.save(tmp_path / "new_joint_vecs" / "b.npy", np.zeros((30, 200), dtype=np.float32))
    with pytest.raises(DatasetError, match=r"b\.npy: feature width 200; expected 263"):
        MotionIndex.build(spec, "train", progress=False)
    assert list((tmp_path / ".cache" / "motion_index").iterdir()) == []  # no partial index left behind


def test_motion_index_all_missing(tmp_path):
    write_dataset(tmp_path, {}, {"train": ["x", "y"]})
    with pytest.raises(DatasetError, match=r"train\.txt: none of its 2 ids has a motion file"):
        MotionIndex.build(get_dataset_spec("t2m", str(tmp_path)), "train", progress=False)


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


def test_window_dataset_batched_read_matches_item_reads(tmp_path):
    from utils.engine import SeededSamples

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
    from utils.engine import EpochBatchSampler, _batches

    sampler = EpochBatchSampler(len(ds), 4, 0, 0)
    for workers in (0, 1):
        batch = next(_batches(ds, sampler, None, workers, False))
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


def test_text_datasets_fail_when_nothing_is_left(tmp_path):
    write_dataset(tmp_path, {"a": 50}, {"train": ["a"]}, texts={"a": None})
    spec = get_dataset_spec("t2m", str(tmp_path))
    mean, std = stats(spec, tmp_path)
    with pytest.raises(DatasetError, match=r"no text-motion sample left \(1 clips without a caption file \(a\)\)"):
        Text2MotionDataset(spec, "train", mean, std, progress=False)


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
