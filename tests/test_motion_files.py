"""Reading and checking the layout's files, normalisation statistics, and the memory-mapped corpus index."""

from __future__ import annotations

import io
import logging
import os
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from layout_helpers import WHOLE, stats, write_dataset

from utils.dataset_specs import get_dataset_spec
from utils.datasets import Text2MotionDataset
from utils.motion_files import DatasetError, load_motion, read_split, read_texts
from utils.motion_index import MotionIndex
from utils.normalization import Normalizer, eval_normalization, load_mean_std

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
    # Ids that would read motions from outside the dataset (the motion index read them, and its fingerprint missed
    # an absolute one's changes).
    for bad in ("../../elsewhere/clip", "/tmp/clip", "sub/../../clip", "..\\clip"):
        (tmp_path / "odd.txt").write_text(f"000001\n{bad}\n")
        with pytest.raises(DatasetError, match=r"odd\.txt: ids \[.*\] point outside the dataset") as e:
            read_split(str(tmp_path), "odd")
        assert e.value.kind == "bad_split"
    (tmp_path / "nested.txt").write_text("CMU/01/01_01_poses\nclip..v2\n")  # subfolders and dots in a name are fine
    assert read_split(str(tmp_path), "nested") == ["CMU/01/01_01_poses", "clip..v2"]


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


def test_caption_lines_end_only_at_newlines(tmp_path):
    """A line ends at \\n, \\r\\n or \\r; a form feed, NEL or U+2028 inside a caption is part of the caption (the
    reference loaders read the file line by line in text mode), so the line is not reported malformed."""
    path = tmp_path / "a.txt"
    path.write_bytes("a man\u2028walks#a/DET#0#0\r\nhe\x85waves#he/PRON#0#0\rshe\x0cruns#she/PRON#0#0\n".encode())
    assert [e.caption for e in read_texts(str(path))] == ["a man\u2028walks", "he\x85waves", "she\x0cruns"]


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


def test_a_byte_order_mark_is_not_part_of_the_first_id_or_caption(tmp_path):
    """Windows editors start UTF-8 files with a byte-order mark: it must not become part of the first clip id (whose
    files would then be missing) or of the first caption."""
    (tmp_path / "train.txt").write_bytes("000001\r\n000002\r\n".encode("utf-8-sig"))
    assert read_split(str(tmp_path), "train") == ["000001", "000002"]
    path = tmp_path / "a.txt"
    path.write_bytes("a man walks#a/DET man/NOUN walk/VERB#0.0#0.0\n".encode("utf-8-sig"))
    assert [e.caption for e in read_texts(str(path))] == ["a man walks"]
    path.write_bytes("walk#walk/VERB#0#0\ncaf".encode("utf-8-sig") + b"\xe9#x/X#0#0\n")
    with pytest.raises(DatasetError, match=r"a\.txt: line 2: byte 25 cannot be decoded"):
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


def _zipped(array: np.ndarray, torn: bool) -> bytes:
    """The bytes of an .npz archive holding ``array`` (its first half when ``torn``)."""
    buffer = io.BytesIO()
    np.savez(buffer, mean=array)
    raw = buffer.getvalue()
    return raw[:len(raw) // 2] if torn else raw


@pytest.mark.parametrize("content", ["npz", "torn_npz", "text"])
def test_load_mean_std_file_that_is_not_npy(tmp_path, content):
    write_dataset(tmp_path, {"a": 10}, {"train": ["a"]})
    raw = b"0.0 0.1 0.2\n" if content == "text" else _zipped(np.zeros(263), torn=content == "torn_npz")
    (tmp_path / "Mean.npy").write_bytes(raw)
    with pytest.raises(DatasetError, match=r"Mean\.npy: not a \.npy file \(no NUMPY header\); expected shape "
                                           r"\(263,\)") as e:
        load_mean_std(get_dataset_spec("t2m"), str(tmp_path))
    assert e.value.kind == "stats_shape"


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

    # A file of the index left empty (a crash before it reached the disk) is rebuilt, not an EOFError forever.
    for name in ("offsets.npy", "motion.npy"):
        open(os.path.join(rebuilt.folder, name), "wb").close()
        with caplog.at_level(logging.WARNING):
            again = MotionIndex.build(spec, "train", progress=False)
        assert again.built and "unreadable motion index" in caplog.text
        np.testing.assert_array_equal(again.clip(1), changed)
        rebuilt = again


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


def test_motion_index_of_a_read_only_dataset_goes_where_the_environment_says(tmp_path, monkeypatch):
    """No script takes a cache folder, so a shared read-only corpus could not be used at all."""
    from utils.paths import CACHE_ENV

    write_dataset(tmp_path / "data", {"a": 30}, {"train": ["a"]})
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "cache"))
    index = MotionIndex.build(get_dataset_spec("t2m", str(tmp_path / "data")), "train", progress=False)
    assert index.folder.startswith(str(tmp_path / "cache" / "motion_index"))
    assert not (tmp_path / "data" / ".cache").exists()


def test_an_abandoned_build_folder_is_removed_and_a_live_one_kept(tmp_path, caplog):
    """A build killed with SIGKILL leaves its temporary folder, a partial copy of the split."""
    from utils import motion_index

    write_dataset(tmp_path, {"a": 30}, {"train": ["a"]})
    base = tmp_path / ".cache" / "motion_index"
    old, live = base / ".tmp-train_d263_1-0000abcd", base / ".tmp-train_d263_2-0000beef"
    for folder in (old, live):
        folder.mkdir(parents=True)
        (folder / "motion.npy").write_bytes(b"partial")
    stale = time.time() - motion_index.ABANDONED_BUILD_SECONDS - 60
    for path in (old, old / "motion.npy"):
        os.utime(path, (stale, stale))
    with caplog.at_level(logging.WARNING):
        MotionIndex.build(get_dataset_spec("t2m", str(tmp_path)), "train", progress=False)
    assert not old.exists() and live.exists()
    assert "temporary folder of an index build abandoned" in caplog.text
