"""Edit spans, token coverage, edit sources and requests (``utils.editing``) and the record of the runs trained on a
checkpoint (``utils.checkpoint_users``): boundaries of spans in frames and seconds, which tokens an edit covers,
what a source file must hold and the errors naming the flag or file, and the versions kept for later stages.
"""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch
from test_amass import _body_model

from utils.checkpoint import file_sha256
from utils.checkpoint_users import USERS_FILE, read_users, register_user
from utils.dataset_specs import get_dataset_spec
from utils.editing import (
    FrameSpan,
    SourceFrame,
    anchor_root,
    check_disjoint_spans,
    check_edit_flags,
    load_edit_source,
    mask_runs,
    parse_span,
    read_edit_request,
    resolve_spans,
    token_edit_mask,
    unedited_change,
)

# ---------------------------------------------------------------------------------------------------------------------
# Spans
# ---------------------------------------------------------------------------------------------------------------------


def test_whole_frames_given_in_seconds_stay_exact_despite_float_error():
    # 4.1 * 30 is 122.99999999999999 and 8.3 * 30 is 249.00000000000003: both are whole frames, not one more.
    assert parse_span("4.1:8.3", "seconds", fps=30.0) == FrameSpan(123, 249)


def test_seconds_need_a_positive_fps_and_name_the_flag():
    for fps in (None, 0.0, -20.0):
        with pytest.raises(ValueError, match=r"--edit_seconds '1:2': converting seconds to frames needs the "
                                             r"dataset's fps"):
            parse_span("1:2", "seconds", fps=fps)


def test_a_seconds_span_that_rounds_to_no_frame_is_empty():
    # END after START, but both round to frame 20 at 20 fps: no frame lies in [20, 20).
    with pytest.raises(ValueError, match=r"--edit_seconds '1:1\.0000000001': the span is empty \(frames \[20, 20\)\)"):
        parse_span("1:1.0000000001", "seconds", fps=20.0)


@pytest.mark.parametrize("text", ["1:inf", "nan:2", "-inf:"])
def test_bounds_that_are_not_finite_fail_naming_the_span(text):
    with pytest.raises(ValueError, match=rf"--edit_seconds '{text}': bounds must be finite and >= 0"):
        parse_span(text, "seconds", fps=20.0)


def test_blank_bounds_are_open_ends():
    assert parse_span(" 40 : ") == FrameSpan(40, None)
    assert parse_span("  : 8") == FrameSpan(0, 8)
    assert parse_span("0:8") == FrameSpan(0, 8)                       # frame 0 is a bound, not an empty one


def test_resolved_spans_reach_the_last_frame_and_refuse_empty_or_negative_ones():
    # An open end closes at the source's last frame, even in the frames no token covers (48, 49 of 50).
    assert resolve_spans([FrameSpan(40, None)], 50, 4) == [FrameSpan(40, 50)]
    assert resolve_spans([FrameSpan(40, 50)], 50, 4) == [FrameSpan(40, 50)]
    assert resolve_spans([FrameSpan(0, 1)], 50, 4) == [FrameSpan(0, 1)]
    for span in ((8, 8), (-4, 8), (9, 8)):
        with pytest.raises(ValueError, match=rf"edit span \[{span[0]}, {span[1]}\) is empty or negative"):
            resolve_spans([span], 50, 4)


def test_spans_with_their_own_captions_are_ordered_left_to_right_and_must_not_share_a_token():
    spans = [FrameSpan(20, 24), FrameSpan(0, 8), FrameSpan(8, 12)]
    assert check_disjoint_spans(spans, 12, 4) == [1, 2, 0]
    # [4, 12) and [10, 20) share token 2 (frames 8-11) only, not all their tokens.
    with pytest.raises(ValueError, match=r"edit spans \[\[4, 12\], \[10, 20\]\] share a token \(4 frames\)"):
        check_disjoint_spans([FrameSpan(10, 20), FrameSpan(4, 12)], 12, 4)


def test_a_token_is_edited_only_when_one_of_its_frames_is_in_a_span():
    # [4, 8) is exactly token 1: tokens 0 and 2, which only touch its bounds, are kept.
    assert token_edit_mask([FrameSpan(4, 8)], 4, 4).tolist() == [False, True, False, False]
    assert token_edit_mask([FrameSpan(3, 4)], 3, 4).tolist() == [True, False, False]
    assert mask_runs(torch.tensor([True, False, True, True])) == [[0, 1], [2, 4]]


# ---------------------------------------------------------------------------------------------------------------------
# Sources and requests
# ---------------------------------------------------------------------------------------------------------------------


def _features(path, frames: int = 12, dim: int = 263) -> str:
    np.save(path, np.random.default_rng(0).normal(size=(frames, dim)).astype(np.float32))
    return str(path)


@pytest.mark.parametrize("name, content, expected", [
    # 3-D but not xyz: not joint positions
    ("wide.npy", np.zeros((40, 22, 4), dtype=np.float32),
     r"wide\.npy: got a float32 array of shape \(40, 22, 4\); expected features \(T, 263\) of dataset 'synthetic'"),
    ("notes.npy", "not an array", r"notes\.npy: not a readable \.npy array .*; expected features \(T, 263\)"),
    ("whole.npy", np.zeros((40, 263), dtype=np.int64), r"whole\.npy: got a int64 array of shape \(40, 263\)"),
], ids=["not-xyz", "text", "integers"])
def test_source_files_that_are_no_features_fail_naming_the_file_and_what_was_expected(tmp_path, name, content,
                                                                                       expected):
    path = tmp_path / name
    if isinstance(content, str):
        path.write_text(content)
    else:
        np.save(path, content)
    with pytest.raises(ValueError, match=expected):
        load_edit_source(str(path), get_dataset_spec("synthetic"))


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_sources_holding_nan_or_inf_fail_naming_the_file(tmp_path, bad):
    spec = get_dataset_spec("synthetic")
    features = np.zeros((12, 263), dtype=np.float32)
    features[3, 7] = bad
    np.save(tmp_path / "feats.npy", features)
    with pytest.raises(ValueError, match=r"feats\.npy: the features hold NaN or Inf values"):
        load_edit_source(str(tmp_path / "feats.npy"), spec)
    joints = np.ones((12, 22, 3), dtype=np.float32)
    joints[2, 5, 1] = bad
    np.save(tmp_path / "joints.npy", joints)
    with pytest.raises(ValueError, match=r"joints\.npy: the joint positions hold NaN or Inf values"):
        load_edit_source(str(tmp_path / "joints.npy"), spec)


def test_features_source_is_read_as_float32_of_the_datasets_width(tmp_path):
    spec = get_dataset_spec("synthetic")
    np.save(tmp_path / "half.npy", np.arange(12 * 263, dtype=np.float16).reshape(12, 263) / 1000)
    features = load_edit_source(str(tmp_path / "half.npy"), spec)
    assert features.dtype == np.float32 and features.shape == (12, 263)


def test_a_source_of_exactly_one_token_is_an_edit_of_that_token(tmp_path):
    src = _features(tmp_path / "one.npy", frames=4)
    request = read_edit_request(src, [":"], None, get_dataset_spec("synthetic"), unit_length=4)
    assert request.spans == [FrameSpan(0, 4)] and request.record(4)["spans_tokens"] == [[0, 1]]


def test_seconds_spans_convert_at_the_datasets_own_fps(tmp_path):
    src = _features(tmp_path / "kit.npy", frames=40, dim=251)
    request = read_edit_request(src, None, ["1:2"], get_dataset_spec("kit"), unit_length=4)   # KIT: 12.5 fps
    assert request.spans == [FrameSpan(12, 25)]


def test_the_record_of_a_features_source_names_its_frames_tokens_and_canonical_joints(tmp_path):
    src = _features(tmp_path / "walk.npy", frames=50)
    request = read_edit_request(src, ["5:9"], ["2.2:"], get_dataset_spec("synthetic"), unit_length=4)
    record = request.record(4)
    assert record["source_sha256"] == file_sha256(src) and record["source_frames"] == 50
    assert record["edited_motion_frames"] == 48 and record["spans_frames"] == [[5, 9], [44, 50]]
    assert record["spans_tokens"] == [[1, 3], [11, 12]] and record["edited_frames"] == [[4, 12], [44, 48]]
    assert record["joints_frame"] == "canonical" and "reader" not in record
    placed = request._replace(frame=SourceFrame(0.5, np.zeros(3))).record(4)
    assert placed["joints_frame"] == "source"


def test_an_edit_never_writes_over_its_source_even_through_a_link(tmp_path):
    src = _features(tmp_path / "walk.npy")
    request = read_edit_request(src, ["0:4"], None, get_dataset_spec("synthetic"), unit_length=4)
    (tmp_path / "out").mkdir()
    link = tmp_path / "out" / "walk_features.npy"
    link.symlink_to(src)
    request.check_outputs([str(tmp_path / "out" / "walk.mp4")])
    with pytest.raises(ValueError, match=r"walk\.npy: this run would write its output walk_features\.npy over the "
                                         r"source"):
        request.check_outputs([str(tmp_path / "out" / "walk.mp4"), str(link)])


def test_edit_flags_are_checked_before_a_model_loads(tmp_path):
    src = _features(tmp_path / "walk.npy")
    assert check_edit_flags(None, None, None) is False
    assert check_edit_flags(src, None, ["0.5:1"]) is True                # seconds alone are spans
    assert check_edit_flags(src, [], ["0.5:1"]) is True
    with pytest.raises(ValueError, match="--edit_skeleton / --edit_body_model read a .bvh or AMASS .npz"):
        check_edit_flags(None, None, None, body_models=str(tmp_path))
    with pytest.raises(ValueError, match=r"--edit_frames '8:8': the span is empty \(8:8 frames\)"):
        check_edit_flags(src, ["8:8"], None)
    with pytest.raises(ValueError, match=r"--edit_seconds '1:x': 'x' is not a number of seconds"):
        check_edit_flags(src, ["0:4"], ["1:x"])
    amass = tmp_path / "walk.npz"
    amass.write_bytes(b"")
    (tmp_path / "body_models").mkdir()                                  # a folder in AMASS's layout is a body model
    assert check_edit_flags(str(amass), ["0:4"], None, body_models=str(tmp_path / "body_models")) is True
    with pytest.raises(FileNotFoundError, match=r"--edit_body_model: no such file or folder: .*nowhere"):
        check_edit_flags(str(amass), ["0:4"], None, body_models=str(tmp_path / "nowhere"))


# ---------------------------------------------------------------------------------------------------------------------
# What an edit changed
# ---------------------------------------------------------------------------------------------------------------------


def test_unedited_change_measures_only_the_kept_frames():
    features = np.zeros((4, 2))
    reconstruction = np.array([[0.0, 0.0], [1.0, -3.0], [9.0, 9.0], [0.0, 1.0]])
    change = unedited_change(features, reconstruction, np.array([False, False, True, False]))
    assert change == {"frames": 3, "max_abs_diff": 3.0, "mean_abs_diff": pytest.approx(5.0 / 6.0)}
    assert unedited_change(features, reconstruction, np.ones(4, dtype=bool)) is None


def test_anchor_root_records_each_anchored_span_in_metres_and_leaves_a_final_span():
    rng = np.random.default_rng(1)
    target = rng.normal(scale=0.1, size=(16, 8))
    features = target.copy()
    features[4:8, :3] += rng.normal(scale=0.3, size=(4, 3))           # a span that turns and travels differently
    features[12:, :3] += 0.2                                            # a span at the end: nothing after it to anchor
    edited = np.zeros(16, dtype=bool)
    edited[4:8] = edited[12:] = True
    _, records = anchor_root(features, target, edited)
    _, in_mm = anchor_root(features, target, edited, metres_per_unit=0.001)
    assert [r["frames"] for r in records] == [[4, 8]] and records[0]["xz_m"] > 0
    assert in_mm[0]["xz_m"] == pytest.approx(records[0]["xz_m"] * 0.001)


# ---------------------------------------------------------------------------------------------------------------------
# Runs trained on a checkpoint
# ---------------------------------------------------------------------------------------------------------------------


def test_read_users_skips_entries_that_are_no_list_of_runs(tmp_path):
    ckpt = tmp_path / "latest.tar"
    ckpt.write_text("version 1")
    (tmp_path / USERS_FILE).write_text(json.dumps({"latest.tar": {"abc": "run", "def": ["gen", 3]},
                                                   "other.tar": {"xyz": ["x"]}}))
    assert read_users(str(ckpt)) == {"def": ["gen", "3"]}


def test_registering_a_run_keeps_the_other_checkpoints_and_runs_of_the_record(tmp_path):
    ckpt, other = tmp_path / "latest.tar", tmp_path / "net_best_fid.tar"
    ckpt.write_text("version 1")
    other.write_text("best 1")
    register_user(str(other), "bbb", str(tmp_path / "gen0"))
    register_user(str(ckpt), "aaa", str(tmp_path / "gen1"))
    register_user(str(ckpt), "aaa", "gen2")                             # a relative run folder is made absolute
    assert read_users(str(ckpt)) == {"aaa": [str(tmp_path / "gen1"), os.path.abspath("gen2")]}
    assert read_users(str(other)) == {"bbb": [str(tmp_path / "gen0")]}
    assert sorted(os.listdir(tmp_path)) == ["latest.tar", "net_best_fid.tar", USERS_FILE]


def test_an_amass_archive_without_poses_fails_naming_the_file(tmp_path):
    model = _body_model(tmp_path / "model.npz")
    np.savez(tmp_path / "shape.npz", betas=np.zeros(16), gender="male")  # a per-subject shape file, no motion
    with pytest.raises(ValueError, match=r"--edit_source .*shape\.npz: the archive has no poses"):
        load_edit_source(str(tmp_path / "shape.npz"), get_dataset_spec("synthetic"), body_models=str(model))
