"""PFNN export (utils/pfnn.py) on the synthetic HumanML3D-layout dataset."""

from __future__ import annotations

import json
import math
import os

import numpy as np
import pytest

from utils.dataset_specs import get_dataset_spec
from utils.datasets import load_motion, motion_path
from utils.motion_process import recover_from_ric, recover_root_rot_pos
from utils.normalization import DatasetError
from utils.pfnn import FILES, contact_onsets, export_pfnn, foot_phase
from utils.quaternion import qinv, qrot

TWO_PI = 2 * math.pi


@pytest.fixture(scope="module")
def exported(synthetic_root, tmp_path_factory):
    spec = get_dataset_spec("synthetic", synthetic_root)
    out = str(tmp_path_factory.mktemp("pfnn"))
    summary = export_pfnn(synthetic_root, spec, out, split="test")
    arrays = {name[:-4]: np.load(os.path.join(out, name)) for name in FILES if name.endswith(".npy")}
    with open(os.path.join(out, "layout.json")) as f:
        layout = json.load(f)
    return spec, summary, arrays, layout


def _columns(layout: dict, side: str) -> dict[str, slice]:
    return {c["name"]: slice(c["start"], c["stop"]) for c in layout[side]["columns"]}


def test_shapes_match_the_layout(exported) -> None:
    spec, summary, arrays, layout = exported
    rows = summary.rows
    assert rows > 0 and summary.clips > 0 and not any(name.startswith(".tmp") for name in os.listdir(summary.out_dir))
    assert arrays["Input"].shape == (rows, layout["input"]["dim"]) == (rows, summary.input_dim)
    assert arrays["Output"].shape == (rows, layout["output"]["dim"]) == (rows, summary.output_dim)
    for name in ("Phase", "Sequences", "Frames"):
        assert arrays[name].shape == (rows,), name
    for side, mean, std in (("input", "InputMean", "InputStd"), ("output", "OutputMean", "OutputStd")):
        columns = layout[side]["columns"]
        # The named blocks tile the columns in order.
        assert columns[0]["start"] == 0 and columns[-1]["stop"] == layout[side]["dim"]
        assert all(a["stop"] == b["start"] for a, b in zip(columns, columns[1:]))
        assert arrays[mean].shape == arrays[std].shape == (layout[side]["dim"],)
        assert np.all(arrays[std] > 0)
        for c in columns:  # one std per block
            assert np.unique(arrays[std][c["start"]:c["stop"]]).size == 1, c["name"]
    j = spec.joints_num
    x, y = _columns(layout, "input"), _columns(layout, "output")
    assert layout["input"]["dim"] == 48 + 6 * j == 180
    assert layout["output"]["dim"] == 32 + 6 * j + 6 * (j - 1) == 290
    assert [x[n].stop - x[n].start for n in ("traj_pos_x", "traj_dir_z", "joint_pos_prev")] == [12, 12, 3 * j]
    assert [y[n].stop - y[n].start for n in ("contacts", "next_traj_pos_x", "joint_rot")] == [4, 6, 6 * (j - 1)]
    assert np.isfinite(arrays["Input"]).all() and np.isfinite(arrays["Output"]).all()
    assert layout["trajectory"]["offsets_frames"][0] == -spec.fps and layout["trajectory"]["offsets_frames"][6] == 0
    np.testing.assert_allclose(arrays["InputMean"], arrays["Input"].astype(np.float64).mean(0), atol=1e-5)


def test_trajectory_is_in_the_root_frame(exported) -> None:
    _, _, arrays, layout = exported
    x = _columns(layout, "input")
    inputs = arrays["Input"]
    # Sample 6 is the current frame: at the root, facing +Z.
    np.testing.assert_allclose(inputs[:, x["traj_pos_x"]][:, 6], 0.0, atol=1e-5)
    np.testing.assert_allclose(inputs[:, x["traj_pos_z"]][:, 6], 0.0, atol=1e-5)
    np.testing.assert_allclose(inputs[:, x["traj_dir_z"]][:, 6], 1.0, atol=1e-5)
    directions = np.stack([inputs[:, x["traj_dir_x"]], inputs[:, x["traj_dir_z"]]], -1)
    np.testing.assert_allclose(np.linalg.norm(directions, axis=-1), 1.0, atol=1e-5)


def test_positions_round_trip_to_the_recovered_joints(exported, synthetic_root) -> None:
    spec, _, arrays, layout = exported
    x, y = _columns(layout, "input"), _columns(layout, "output")
    j = spec.joints_num
    for clip in np.unique(arrays["Sequences"])[:6]:
        rows = np.flatnonzero(arrays["Sequences"] == clip)
        features = load_motion(motion_path(synthetic_root, layout["clips"][clip]), spec).astype(np.float64)
        joints = recover_from_ric(features, j)
        quat, root = recover_root_rot_pos(features)
        frames = arrays["Frames"][rows]
        assert np.all(np.diff(frames) == 1)
        local = arrays["Output"][rows][:, y["joint_pos"]].reshape(-1, j, 3).astype(np.float64)
        world = qrot(np.repeat(qinv(quat[frames])[:, None], j, axis=1), local) + (root[frames] * [1, 0, 1])[:, None]
        np.testing.assert_allclose(world, joints[frames], atol=1e-4)
        # The input's previous pose is the output pose of the frame before.
        previous = arrays["Input"][rows[1:]][:, x["joint_pos_prev"]]
        np.testing.assert_allclose(previous, arrays["Output"][rows[:-1]][:, y["joint_pos"]], atol=1e-6)
        np.testing.assert_allclose(arrays["Output"][rows][:, y["joint_rot"]], features[frames][:, 67:193], atol=1e-6)
        np.testing.assert_array_equal(arrays["Output"][rows][:, y["contacts"]], features[frames][:, 259:263])


def test_phase_follows_the_foot_contacts(exported) -> None:
    _, _, arrays, layout = exported
    y = _columns(layout, "output")
    phase = arrays["Phase"]
    assert phase.min() >= 0.0 and phase.max() < TWO_PI
    change = arrays["Output"][:, y["phase_change"]][:, 0]
    assert np.all(change > 0) and np.all(change < TWO_PI)
    for clip in np.unique(arrays["Sequences"]):
        rows = np.flatnonzero(arrays["Sequences"] == clip)
        # phase(t+1) = phase(t) + phase_change(t), modulo 2 pi.
        step = np.mod(phase[rows[1:]] - phase[rows[:-1]], TWO_PI)
        np.testing.assert_allclose(step, change[rows[:-1]], atol=1e-4)
    assert np.ptp(phase) > 5.0  # whole cycles occur in the walking clips


def test_foot_phase_on_a_constructed_gait() -> None:
    frames = 50
    left, right = np.zeros(frames, bool), np.zeros(frames, bool)
    for start in (5, 25):
        left[start:start + 6] = True
    for start in (15, 35):
        right[start:start + 6] = True
    left[45:47] = True
    left[48:] = True  # a one-frame gap at 47 is flicker, not a step
    track = foot_phase(left, right, fps=20.0)
    assert track.left.tolist() == [5, 25, 45] and track.right.tolist() == [15, 35]
    np.testing.assert_allclose(track.unwrapped[[5, 15, 25, 35, 45]], [0, np.pi, 2 * np.pi, 3 * np.pi, 4 * np.pi])
    np.testing.assert_allclose(track.unwrapped[10], np.pi / 2)
    assert np.all(np.diff(track.unwrapped) > 0)
    # Between contacts the wrapped phase increases; it wraps to 0 exactly at a left contact.
    for a, b in ((5, 15), (15, 25), (25, 35), (35, 45)):
        assert np.all(np.diff(track.phase[a:b]) > 0)
    assert track.phase[25] == pytest.approx(0.0, abs=1e-9) and track.phase[15] == pytest.approx(np.pi)
    # Outside the contacts it continues at the neighbouring rate.
    np.testing.assert_allclose(track.unwrapped[0], -5 * np.pi / 10)
    # The same foot twice is a whole cycle; no contact at all advances one cycle per default period.
    twice = foot_phase(left & (np.arange(frames) < 30), np.zeros(frames, bool), fps=20.0)
    np.testing.assert_allclose(twice.unwrapped[25] - twice.unwrapped[5], TWO_PI)
    idle = foot_phase(np.ones(frames, bool), np.ones(frames, bool), fps=20.0, default_period_s=2.0)
    np.testing.assert_allclose(np.diff(idle.unwrapped), TWO_PI / 40)
    assert contact_onsets(np.array([1, 0, 1, 1, 0, 0, 0, 1], bool), min_swing=2).tolist() == [7]


def test_gait_thresholds_are_metres_per_second_in_any_unit() -> None:
    """KIT-ML positions are millimetres: a 1 m/s walk moves 1000 units a second, and was labelled "run" against the
    thresholds (0.3, 2.0) read as data units; the speed is converted with the dataset's metres_per_unit."""
    from utils.pfnn import GAIT_CLASSES, _gait_one_hot

    fps, seconds = 20.0, np.arange(60) / 20.0
    metres = np.stack([np.zeros(60), np.zeros(60), 1.0 * seconds], axis=-1)  # 1 m/s along +Z
    at = np.arange(10, 50, dtype=np.float64)[:, None]
    walk = GAIT_CLASSES.index("walk")
    in_metres = _gait_one_hot(metres, at, fps, (0.3, 2.0))
    in_mm = _gait_one_hot(metres * 1000.0, at, fps, (0.3, 2.0), metres_per_unit=0.001)
    assert (in_metres.argmax(-1) == walk).all() and np.array_equal(in_mm, in_metres)


def test_gait_and_essential_variants(synthetic_root, tmp_path) -> None:
    spec = get_dataset_spec("synthetic", synthetic_root)
    summary = export_pfnn(synthetic_root, spec, str(tmp_path / "gait"), split="val", gait=True)
    layout = json.loads((tmp_path / "gait" / "layout.json").read_text())
    inputs = np.load(tmp_path / "gait" / "Input.npy")
    x = _columns(layout, "input")
    assert summary.input_dim == 180 + 36 and layout["gait"]["classes"] == ["stand", "walk", "run"]
    one_hot = inputs[:, x["traj_gait_stand"]] + inputs[:, x["traj_gait_walk"]] + inputs[:, x["traj_gait_run"]]
    np.testing.assert_array_equal(one_hot, 1.0)

    # The essential layout (first 67 dims) has no rotations and no contacts: contacts come from the joints.
    essential = get_dataset_spec("t2m_67", synthetic_root)
    plain = export_pfnn(synthetic_root, spec, str(tmp_path / "full"), split="val")
    reduced = export_pfnn(synthetic_root, essential, str(tmp_path / "essential"), split="val")
    assert reduced.output_dim == plain.output_dim - 6 * 21 and reduced.rows == plain.rows
    contacts = slice(4, 8)
    full_out = np.load(tmp_path / "full" / "Output.npy")
    reduced_out = np.load(tmp_path / "essential" / "Output.npy")
    assert np.mean(full_out[:, contacts] == reduced_out[:, contacts]) > 0.95
    np.testing.assert_allclose(full_out[:, 32:32 + 132], reduced_out[:, 32:32 + 132], atol=1e-5)


def test_bad_inputs_fail_clearly(synthetic_root, tmp_path) -> None:
    with pytest.raises(ValueError, match="expected a HumanML3D-layout dataset"):
        export_pfnn(synthetic_root, get_dataset_spec("motionmillion"), str(tmp_path))
    short = tmp_path / "short"
    (short / "new_joint_vecs").mkdir(parents=True)
    np.save(short / "new_joint_vecs" / "a.npy", np.zeros((30, 263), np.float32))
    (short / "train.txt").write_text("a\n")
    with pytest.raises(DatasetError, match="no train clip is long enough for the PFNN trajectory window"):
        export_pfnn(str(short), get_dataset_spec("synthetic", str(short)), str(tmp_path / "out"))
    with pytest.raises(ValueError, match=r"expected two \(T,\) contact tracks"):
        foot_phase(np.zeros(4, bool), np.zeros(5, bool), fps=20.0)


@pytest.mark.parametrize("fps", [20.0, 30.0, 60.0])
def test_future_trajectory_starts_at_the_next_frame(synthetic_root, fps) -> None:
    # The output's future trajectory is sampled at t + 1 + k * fps / 6 in the root frame of t + 1: its first sample
    # is frame t + 1's own root (at the origin, facing +Z), and the last one stays inside the clip at any frame rate.
    import dataclasses

    from utils.pfnn import clip_frames, pfnn_layout

    spec = dataclasses.replace(get_dataset_spec("synthetic", synthetic_root), fps=fps)
    with open(os.path.join(synthetic_root, "test.txt")) as f:
        name = f.readline().strip()
    features = load_motion(motion_path(synthetic_root, name), spec).astype(np.float64)
    clip = clip_frames(features, spec)
    assert clip.frames[-1] + 1 + 5 * fps / 6 <= len(features) - 1
    _, y_blocks = pfnn_layout(spec.joints_num, 6 * (spec.joints_num - 1), False)
    y = {b.name: slice(b.start, b.stop) for b in y_blocks}
    np.testing.assert_allclose(clip.outputs[:, y["next_traj_pos_x"]][:, 0], 0.0, atol=1e-5)
    np.testing.assert_allclose(clip.outputs[:, y["next_traj_pos_z"]][:, 0], 0.0, atol=1e-5)
    np.testing.assert_allclose(clip.outputs[:, y["next_traj_dir_z"]][:, 0], 1.0, atol=1e-5)
    # Sample k of the next frame's trajectory is sample 6 + k of the trajectory around t + 1 (same root frame).
    x_blocks, _ = pfnn_layout(spec.joints_num, 0, False)
    x = {b.name: slice(b.start, b.stop) for b in x_blocks}
    np.testing.assert_allclose(clip.outputs[:-1, y["next_traj_pos_z"]], clip.inputs[1:, x["traj_pos_z"]][:, 6:],
                               atol=1e-5)


def test_derived_contacts_mean_the_same_foot_speed_at_any_frame_rate() -> None:
    # Layouts without contact columns (the essential subset) derive them from joint displacements: HumanML3D's
    # threshold is per frame at 20 fps, so at 60 fps a foot gliding at 1.2 m/s must still count as moving.
    from utils.pfnn import _joint_contacts

    for fps in (20.0, 30.0, 60.0):
        frames = np.arange(40)[:, None, None] / fps
        for speed, planted in ((1.2, False), (0.6, True)):
            joints = np.zeros((40, 22, 3))
            joints[..., 2] = speed * frames[..., 0]
            contacts = _joint_contacts(joints, 22, fps)
            assert contacts.shape == (40, 4)
            assert np.all(contacts == float(planted)), (fps, speed)
