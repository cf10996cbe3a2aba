"""The dataset file readers (utils.motion_files): behaviour the other tests leave open (splits and clips, caption
parsing, motion and joint files, the skip accounting)."""

from __future__ import annotations

import numpy as np
import pytest

from utils.dataset_specs import (
    DATASETS,
)
from utils.motion_files import (
    DatasetError,
    SkipLog,
    dataset_clips,
    load_motion,
    read_joints,
    read_texts,
    scan_texts,
)

# ---------------------------------------------------------------------------------------------------------------------
# Splits and clips
# ---------------------------------------------------------------------------------------------------------------------

def _npy(root, clip_id, dim=263):
    path = root / "new_joint_vecs" / f"{clip_id}.npy"
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, np.zeros((5, dim), dtype=np.float32))


def test_dataset_clips_lists_each_clip_once_and_reports_unlisted_files(tmp_path):
    for clip_id in ("a", "b", "c", "extra"):
        _npy(tmp_path, clip_id)
    (tmp_path / "new_joint_vecs" / "notes.txt").write_text("x")
    (tmp_path / "train.txt").write_text("a\nb\n")
    (tmp_path / "test.txt").write_text("b\nc\n")
    clips = dataset_clips(str(tmp_path))
    assert clips.ids == ["a", "b", "c"] and clips.listed is True
    assert clips.unlisted == ["extra.npy"]


def test_dataset_clips_without_split_files_takes_every_npy(tmp_path):
    _npy(tmp_path, "sub/b")
    _npy(tmp_path, "a")
    (tmp_path / "new_joint_vecs" / "readme.md").write_text("x")
    clips = dataset_clips(str(tmp_path))
    assert clips == (["a", "sub/b"], False, [])


def test_dataset_clips_without_npy_files_raises(tmp_path):
    (tmp_path / "new_joint_vecs").mkdir()
    (tmp_path / "new_joint_vecs" / "readme.md").write_text("x")
    with pytest.raises(DatasetError, match="no .npy files") as e:
        dataset_clips(str(tmp_path))
    assert e.value.kind == "missing_motion"


# ---------------------------------------------------------------------------------------------------------------------
# Captions
# ---------------------------------------------------------------------------------------------------------------------

def test_caption_tags_nan_is_whole_clip_and_inf_is_rejected(tmp_path):
    path = tmp_path / "a.txt"
    path.write_text("walk#walk/VERB#nan#2.0\n")
    (entry,) = read_texts(str(path))
    assert entry.f_tag == 0.0 and entry.to_tag == 2.0
    path.write_text("walk#walk/VERB#0.0#inf\n")
    with pytest.raises(DatasetError, match=r"line 1: to_tag is 'inf'; expected a finite time") as e:
        read_texts(str(path))
    assert e.value.kind == "malformed_text"


def test_whitespace_caption_is_empty_and_empty_tokens_give_no_tokens(tmp_path):
    path = tmp_path / "a.txt"
    path.write_text("   #walk/VERB#0#0\n")
    with pytest.raises(DatasetError, match="line 1: empty caption"):
        read_texts(str(path))
    path.write_text("walk#   #0#0\nrun##0#0\n")
    assert [e.tokens for e in read_texts(str(path))] == [(), ()]


def test_blank_and_whitespace_lines_are_ignored(tmp_path):
    path = tmp_path / "a.txt"
    path.write_text("\n   \nwalk#walk/VERB#0#0\n\n")
    entries, problems = scan_texts(str(path))
    assert problems == [] and [e.caption for e in entries] == ["walk"]


def test_read_texts_raises_the_first_problem(tmp_path):
    path = tmp_path / "a.txt"
    path.write_text("walk#walk/VERB#0#0\nbad line\n#x/X#0#0\n")
    entries, problems = scan_texts(str(path))
    assert len(problems) == 2 and len(entries) == 1
    with pytest.raises(DatasetError, match="line 2: 1 '#'-separated fields"):
        read_texts(str(path))


def test_undecodable_byte_after_a_bom_is_placed_on_its_line(tmp_path):
    path = tmp_path / "a.txt"
    path.write_bytes("\ufeffwalk#walk/VERB#0#0\nrun#".encode("utf-8") + b"\xff#0#0\n")
    _, problems = scan_texts(str(path))
    assert len(problems) == 1 and problems[0].kind == "undecodable_text"
    assert "line 2: byte 26 cannot be decoded" in str(problems[0])


# ---------------------------------------------------------------------------------------------------------------------
# Motion files
# ---------------------------------------------------------------------------------------------------------------------

def test_integer_features_are_loaded_as_float32(tmp_path):
    path = tmp_path / "a.npy"
    np.save(path, np.ones((3, 263), dtype=np.int64))
    values = load_motion(str(path), DATASETS["t2m"])
    assert values.dtype == np.float32 and values.shape == (3, 263) and (values == 1).all()


def test_nan_problem_names_first_frame_count_and_group_at_a_group_boundary(tmp_path):
    values = np.zeros((10, 263), dtype=np.float32)
    values[8, 4] = np.nan  # first dim of 'ric' (root_y ends at 4)
    values[2, 4] = np.nan
    values[9, 200] = np.nan
    path = tmp_path / "a.npy"
    np.save(path, values)
    with pytest.raises(DatasetError, match=r"3 NAN values \(first at frame 2, feature 4 \(group 'ric'\)\)"):
        load_motion(str(path), DATASETS["t2m"])


def test_wider_file_than_the_spec_is_rejected(tmp_path):
    path = tmp_path / "a.npy"
    np.save(path, np.zeros((3, 264), dtype=np.float32))
    with pytest.raises(DatasetError, match="feature width 264; expected 263") as e:
        load_motion(str(path), DATASETS["t2m"])
    assert e.value.kind == "wrong_dim"


def test_read_joints_accepts_joints_and_features_of_either_width(tmp_path):
    spec = DATASETS["t2m_67"]
    path = tmp_path / "j.npy"
    np.save(path, np.zeros((4, 22, 3), dtype=np.float32))
    assert read_joints(str(path), spec).shape == (4, 22, 3)
    np.save(path, np.zeros((4, 263), dtype=np.float32))
    full = read_joints(str(path), spec)
    np.save(path, np.zeros((4, 67), dtype=np.float32))
    sliced = read_joints(str(path), spec)
    assert full.shape == sliced.shape == (4, 22, 3)
    np.testing.assert_allclose(full, sliced)


def test_read_joints_rejects_wrong_joint_count_nan_features_and_npz(tmp_path):
    spec = DATASETS["t2m"]
    path = tmp_path / "j.npy"
    np.save(path, np.zeros((4, 21, 3), dtype=np.float32))
    with pytest.raises(ValueError, match=r"expected joint positions of shape \(T, 22, 3\)"):
        read_joints(str(path), spec)
    features = np.zeros((4, 263), dtype=np.float32)
    features[1, 10] = np.nan
    np.save(path, features)
    with pytest.raises(ValueError, match="NaN or Inf"):
        read_joints(str(path), spec)
    npz = tmp_path / "j2.npy"
    with open(npz, "wb") as f:
        np.savez(f, joints=np.zeros((4, 22, 3)))
    with pytest.raises(ValueError, match=r"an \.npz archive \(joints\)"):
        read_joints(str(npz), spec)


# ---------------------------------------------------------------------------------------------------------------------
# Skip accounting
# ---------------------------------------------------------------------------------------------------------------------

def test_skip_log_counts_keeps_five_examples_and_merges():
    log = SkipLog()
    for i in range(7):
        log.add("short", f"c{i}")
    log.add("nan", "n0")
    assert log.counts == {"short": 7, "nan": 1} and log.total == 8
    assert log.examples["short"] == ["c0", "c1", "c2", "c3", "c4"]
    assert log.summary() == "7 short (c0, c1, c2, c3, c4, ...); 1 nan (n0)"

    other = SkipLog()
    for i in range(3):
        other.add("nan", f"m{i}")
    other.add("short", "z")
    log.merge(other)
    assert log.counts == {"short": 8, "nan": 4} and log.total == 12
    assert log.examples["short"] == ["c0", "c1", "c2", "c3", "c4"]
    assert log.examples["nan"] == ["n0", "m0", "m1", "m2"]
    assert SkipLog.from_dict(log.to_dict()).summary() == log.summary()


def test_skip_log_merge_into_a_log_holding_more_examples_than_shown_adds_none():
    log = SkipLog.from_dict({"counts": {"short": 7}, "examples": {"short": [f"c{i}" for i in range(7)]}})
    other = SkipLog()
    other.add("short", "z")
    log.merge(other)
    assert "z" not in log.examples["short"] and log.counts["short"] == 8


def test_skip_log_summary_without_ellipsis_when_every_id_is_shown():
    log = SkipLog()
    log.add("nan", "a")
    log.add("nan", "b")
    assert log.summary() == "2 nan (a, b)"
