"""Dataset files and saved generator motions read back exactly as written: caption text without the padding around
it, a NaN named by the feature group at the groups' edges, no features handed back for a clip with problems, and
the settings, version and row counts a motions folder is checked for or hands back; and files handed over in the
wrong form (a joints .npy of text, statistics or a replication file saved as a plain .npy, frames that are not
numbers), refused naming the file and what was expected."""

from __future__ import annotations

import json
import os
import re

import numpy as np
import pytest
from test_saved_motion_contracts import _DEFAULTS, _batch, _cfg, _rewrite_seed, _save, _saved_run

from utils.dataset_specs import DATASETS
from utils.motion_files import DatasetError, load_motion, read_joints, read_texts, scan_motion
from utils.saved_motions import KIND_BATCH, STATISTICS, MotionReplay, SavedMotionsError, replay_source, seed_file

# ---------------------------------------------------------------------------------------------------------------------
# Captions
# ---------------------------------------------------------------------------------------------------------------------


def test_a_caption_is_read_without_the_spaces_before_its_tokens(tmp_path):
    path = tmp_path / "c.txt"
    path.write_text("a man walks forward  #a/DET man/NOUN#0.0#0.0\n")
    (entry,) = read_texts(str(path))
    assert entry.caption == "a man walks forward"
    assert entry.tokens == ("a/DET", "man/NOUN")


# ---------------------------------------------------------------------------------------------------------------------
# Motion files
# ---------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dataset, feature, group", [
    ("t2m", 0, "group 'root_rot_vel'"),
    ("t2m", 67, "group 'rot'"),
    ("t2m_67", 67, "beyond dim_pose, in the file's extra columns"),
])
def test_a_nan_is_named_by_the_feature_group_holding_it_at_the_group_edges(tmp_path, dataset, feature, group):
    values = np.zeros((6, 263), dtype=np.float32)
    values[2, feature] = np.nan
    path = tmp_path / "clip.npy"
    np.save(path, values)
    with pytest.raises(DatasetError, match=rf"first at frame 2, feature {feature} \({group}\)"):
        load_motion(str(path), DATASETS[dataset])


def test_scan_motion_hands_back_no_features_for_a_clip_with_nan(tmp_path):
    values = np.zeros((6, 263), dtype=np.float32)
    values[1, 5] = np.nan
    path = tmp_path / "clip.npy"
    np.save(path, values)
    features, problems = scan_motion(str(path), DATASETS["t2m"])
    assert features is None and [p.kind for p in problems] == ["nan"]


# ---------------------------------------------------------------------------------------------------------------------
# Saved motions
# ---------------------------------------------------------------------------------------------------------------------


def test_replay_source_reports_the_saved_runs_sampler_and_title(tmp_path):
    sampler = {"head_steps": 50, "head_solver": "euler"}
    folder = _saved_run(tmp_path, title="fsq_gen latest", sampler=sampler)
    source = replay_source(_cfg(folder), _DEFAULTS.get)
    assert source.sampler == sampler
    assert source.title == "fsq_gen latest [saved motions]"


def test_a_negative_row_count_is_refused_even_when_the_counts_add_up(tmp_path):
    folder = str(tmp_path / "m")
    _save(folder, ((KIND_BATCH, ("a", "b"), (8, 4), (8, 4)), (KIND_BATCH, ("c",), (8,), (8,))))
    _rewrite_seed(folder, rows=np.array([4, -1]))
    with pytest.raises(SavedMotionsError, match=r"seed1\.npz: 'rows' holds -1; expected counts >= 0"):
        MotionReplay(folder).begin(1)


def test_replay_refuses_a_header_without_a_format_version(tmp_path):
    folder = tmp_path / "m"
    _save(str(folder))
    header = json.loads((folder / "motions.json").read_text())
    del header["version"]
    (folder / "motions.json").write_text(json.dumps(header))
    with pytest.raises(SavedMotionsError, match=r"motions\.json: field 'version' is None; this version reads 1"):
        MotionReplay(str(folder))


# ---------------------------------------------------------------------------------------------------------------------
# Files in the wrong form
# ---------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(4, 22, 3), (4, 263)], ids=["joints", "features"])
def test_read_joints_refuses_a_non_numeric_array_naming_the_file(tmp_path, shape):
    path = tmp_path / "j.npy"
    np.save(path, np.full(shape, "x"))
    with pytest.raises(ValueError, match=rf"{path}: dtype <U1 is not numeric; expected joint positions "
                                         rf"\(T, 22, 3\)"):
        read_joints(str(path), DATASETS["t2m"])


def _replace_with_npy(path):
    np.save(path + ".npy", np.zeros(3, dtype=np.float32))
    os.replace(path + ".npy", path)


def test_statistics_saved_as_a_plain_npy_are_refused_naming_the_file(tmp_path):
    folder = str(tmp_path / "motions")
    _save(folder)
    stats = os.path.join(folder, STATISTICS)
    _replace_with_npy(stats)
    with pytest.raises(SavedMotionsError, match=rf"{stats}: expected the generator's 'mean' and 'std'"):
        MotionReplay(folder)


@pytest.mark.parametrize(("damage", "message"), [("plain_npy", "unreadable; expected the arrays kinds"),
                                               ("text_frames", "'frames' holds <U1; expected float features")])
def test_a_replication_file_in_the_wrong_form_is_refused_at_begin_naming_it(tmp_path, damage, message):
    """A plain .npy saved under the .npz name, or frames that are not numbers."""
    folder = str(tmp_path / "motions")
    _save(folder)
    if damage == "plain_npy":
        _replace_with_npy(seed_file(folder, 1))
    else:
        _rewrite_seed(folder, frames=np.full((12, 3), "x"))
    with pytest.raises(SavedMotionsError, match=re.escape(f"{seed_file(folder, 1)}: {message}")):
        MotionReplay(folder).begin(1)


def test_integer_frames_are_still_replayed_as_float(tmp_path):
    folder = str(tmp_path / "motions")
    _save(folder)
    _rewrite_seed(folder, frames=np.ones((12, 3), dtype=np.int64))
    replay = MotionReplay(folder)
    replay.begin(1)
    motion, lengths = replay.call(KIND_BATCH, _batch())
    assert str(motion.dtype) == "torch.float32"
    assert motion[0].sum().item() == 8 * 3 and motion[1, 4:].abs().sum().item() == 0
