"""ODE solver and PFNN export contracts the other tests leave open: the dopri5 interval, empty-state and default
tolerance rules, the times and precisions ``f`` is called with, the fixed-step solvers' method and counts; PFNN
trajectory interpolation, the frames of the previous-velocity and root-velocity blocks, foot and phase handling,
derived contacts and gait, the export's statistics and layout.json, and bad input failing with a clear message."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from test_pfnn_contracts import _pfnn_features

from models.ode import odeint_dopri5, odeint_fixed
from utils.dataset_specs import get_dataset_spec, humanml3d_spec
from utils.pfnn import (
    GAIT_CLASSES,
    Block,
    _block_std,
    _gait_one_hot,
    _joint_contacts,
    clip_frames,
    contact_onsets,
    export_pfnn,
    foot_phase,
    pfnn_layout,
)

TWO_PI = 2 * math.pi


# ----- dopri5 ---------------------------------------------------------------------------------------------------------
def test_dopri5_refuses_an_empty_interval():
    """t1 == t0 is not a forward integration: refused like t1 < t0, not answered with an interpolated y0."""
    with pytest.raises(ValueError, match=r"need t1 > t0, got t0=0.5, t1=0.5"):
        odeint_dopri5(lambda t, y: -y, torch.ones(2), 0.5, 0.5)


def test_dopri5_of_an_empty_state_calls_nothing():
    calls = []
    result = odeint_dopri5(lambda t, y: calls.append(t) or -y, torch.ones(0, 3, dtype=torch.float64))
    assert calls == [] and (result.num_evals, result.num_steps) == (0, 0) and result.y.shape == (0, 3)


def test_dopri5_calls_f_with_time_in_the_state_precision_and_end_stages_just_before_the_step_end():
    """For dy/dt = 0 in float64 the first step is [0, 1e-6]: its six stages sit at t + c_i h for c = 1/5, 3/10, 4/5,
    8/9, and the two stages at c = 1 at the float just below 1e-6. A float32 state gets float32 times."""
    calls = []

    def f(t, y):
        calls.append(t)
        return torch.zeros_like(y)

    odeint_dopri5(f, torch.ones(2, dtype=torch.float64), 0.0, 1e-6)
    assert all(t.dtype == torch.float64 for t in calls)
    stages = [t.item() for t in calls[2:8]]
    np.testing.assert_allclose(stages[:4], [1e-6 / 5, 3e-6 / 10, 4e-6 / 5, 8e-6 / 9], rtol=1e-12)
    assert stages[4] == stages[5] == np.nextafter(1e-6, 0.0)

    calls.clear()
    odeint_dopri5(f, torch.ones(2), 0.0, 1.0)
    assert calls and all(t.dtype == torch.float32 for t in calls)


def _stiff(t, y):
    return -50 * (y - torch.cos(20 * t))


def test_dopri5_defaults_are_mardms_tolerances():
    """Without arguments the solver runs at MARDM's atol 1e-6 / rtol 1e-3 with torchdiffeq's step control (safety 0.9,
    growth at most 10, shrink at least 0.2): the same evaluations and state as with them spelled out."""
    y0 = torch.ones(4, dtype=torch.float64)
    default = odeint_dopri5(_stiff, y0)
    explicit = odeint_dopri5(_stiff, y0, 0.0, 1.0, atol=1e-6, rtol=1e-3, max_steps=10000, safety=0.9,
                             min_factor=0.2, max_factor=10.0)
    assert (default.num_evals, default.num_steps) == (explicit.num_evals, explicit.num_steps)
    assert torch.equal(default.y, explicit.y)


def test_dopri5_default_step_budget_covers_a_long_solve():
    """A solve of a few hundred steps finishes under the default ``max_steps``."""
    result = odeint_dopri5(lambda t, y: torch.cos(40 * t) * torch.ones_like(y), torch.zeros(1, dtype=torch.float64),
                           0.0, 40.0)
    assert result.num_steps > 100
    assert result.y.item() == pytest.approx(math.sin(1600.0) / 40, abs=1e-3)


def test_dopri5_no_convergence_message_names_the_step_budget():
    """Every attempted step counts against ``max_steps``; the message names the budget, not the steps accepted (here
    none: every stage after the start is NaN)."""
    calls = []

    def f(t, y):
        calls.append(t)
        return -y if len(calls) <= 2 else torch.full_like(y, float("nan"))

    with pytest.raises(RuntimeError, match=r"no convergence within max_steps=3 steps .*raise max_steps"):
        odeint_dopri5(f, torch.ones(3), 0.0, 1.0, max_steps=3)
    assert len(calls) == 2 + 3 * 6


def test_dopri5_returns_evaluations_then_accepted_steps():
    calls = []
    result = odeint_dopri5(lambda t, y: calls.append(t) or -y, torch.ones(3, dtype=torch.float64), 0.0, 1.0)
    assert result.num_evals == len(calls) == 2 + 6 * result.num_steps  # no rejected step on a smooth decay
    assert result.num_steps < result.num_evals


# ----- fixed-step solvers ---------------------------------------------------------------------------------------------
def test_fixed_step_solver_refuses_an_unknown_method():
    with pytest.raises(ValueError, match=r"method must be 'euler' or 'heun', got 'rk4'"):
        odeint_fixed(lambda t, y: -y, torch.ones(3), 4, "rk4")


def test_fixed_step_solver_defaults_to_euler_and_reports_its_steps():
    """The default method is Euler: one evaluation per step, y1 = (1 - h)^n for dy/dt = -y. Heun takes two
    evaluations per step and still reports the requested number of steps."""
    euler = odeint_fixed(lambda t, y: -y, torch.ones(1, dtype=torch.float64), 4)
    assert (euler.num_evals, euler.num_steps) == (4, 4)
    assert euler.y.item() == pytest.approx(0.75 ** 4, abs=1e-15)
    heun = odeint_fixed(lambda t, y: -y, torch.ones(1, dtype=torch.float64), 4, "heun")
    assert (heun.num_evals, heun.num_steps) == (8, 4)


@pytest.mark.parametrize("method", ["euler", "heun"])
def test_fixed_step_solver_calls_f_with_time_in_the_state_precision(method):
    seen = []
    for dtype in (torch.float64, torch.float32):
        seen.clear()
        odeint_fixed(lambda t, y: seen.append(t.dtype) or -y, torch.ones(2, dtype=dtype), 3, method)
        assert set(seen) == {dtype}


# ----- PFNN rows of one clip ------------------------------------------------------------------------------------------
def _features(frames: int, omega: float = 0.0, vx: float = 0.0, vz: float = 0.0) -> np.ndarray:
    """A root turning ``omega`` and moving (vx, vz) per frame in its own frame, no foot contact."""
    return _pfnn_features(frames, omega, vx, vz)


SPEC = humanml3d_spec(name="pfnn_rows", root="/nonexistent")
X_COLS = {b.name: slice(b.start, b.stop) for b in pfnn_layout(22, 126, False)[0]}
Y_COLS = {b.name: slice(b.start, b.stop) for b in pfnn_layout(22, 126, False)[1]}


def _yaw_to_root(feats: np.ndarray) -> np.ndarray:
    """World -> root frame rotations (T, 3, 3), measured on the joint placed in front of the root."""
    from utils.motion_process import recover_from_ric

    joints = recover_from_ric(feats, 22)
    front = joints[:, 1] - joints[:, 0]
    angle = np.arctan2(front[:, 0], front[:, 2])
    c, s = np.cos(angle), np.sin(angle)
    r = np.zeros(angle.shape + (3, 3))
    r[..., 0, 0], r[..., 0, 2], r[..., 1, 1], r[..., 2, 0], r[..., 2, 2] = c, -s, 1.0, s, c
    return r


def test_trajectory_samples_between_frames_are_interpolated_linearly():
    """At 20 fps the samples sit every 10/3 frames: on a straight walk of (0.01, 0.05) per frame, sample k of frame t
    lies at (k - 6) * 10 / 3 frames of that walk, in between frames as well as on them."""
    clip = clip_frames(_features(60, vx=0.01, vz=0.05), SPEC)
    offsets = (np.arange(12) - 6) * 20.0 / 6
    rows = len(clip.frames)
    np.testing.assert_allclose(clip.inputs[:, X_COLS["traj_pos_x"]], np.tile(0.01 * offsets, (rows, 1)), atol=1e-6)
    np.testing.assert_allclose(clip.inputs[:, X_COLS["traj_pos_z"]], np.tile(0.05 * offsets, (rows, 1)), atol=1e-6)


def test_previous_joint_velocity_is_j_t_minus_j_t_minus_1_in_the_root_frame_of_t_minus_1():
    from utils.motion_process import recover_from_ric

    feats = _features(60, omega=0.05, vx=0.01, vz=0.03)
    feats[:, 7:67] += 0.05 * np.sin(np.arange(60) / 3.0)[:, None]  # a moving pose: no two frames alike
    clip = clip_frames(feats, SPEC)
    joints = recover_from_ric(feats, 22)
    to_root, t = _yaw_to_root(feats), clip.frames
    vel = np.einsum("tab,tjb->tja", to_root[t - 1], joints[t] - joints[t - 1])
    np.testing.assert_allclose(clip.inputs[:, X_COLS["joint_vel_prev"]], vel.reshape(len(t), -1), atol=1e-5)
    # Row t's previous velocity is row t-1's velocity.
    np.testing.assert_allclose(clip.inputs[1:, X_COLS["joint_vel_prev"]], clip.outputs[:-1, Y_COLS["joint_vel"]],
                               atol=1e-6)


def test_root_velocity_of_a_turning_walk_is_in_the_root_frame_of_t():
    from utils.motion_process import recover_root_rot_pos

    feats = _features(60, omega=0.05, vx=0.01, vz=0.03)
    clip = clip_frames(feats, SPEC)
    _, root = recover_root_rot_pos(feats)
    to_root, t = _yaw_to_root(feats), clip.frames
    step = np.einsum("tab,tb->ta", to_root[t], (root[t + 1] - root[t]) * [1.0, 0.0, 1.0])
    np.testing.assert_allclose(clip.outputs[:, Y_COLS["root_vel_x"]][:, 0], step[:, 0], atol=1e-6)
    np.testing.assert_allclose(clip.outputs[:, Y_COLS["root_vel_z"]][:, 0], step[:, 2], atol=1e-6)


def test_a_contact_group_that_is_not_four_columns_is_refused():
    spec = humanml3d_spec(name="pfnn_rows", root="/nonexistent", contact_group="rot")
    with pytest.raises(ValueError, match=r"dataset 'pfnn_rows' has 126 contact columns; expected 4 \(left_ankle"):
        clip_frames(_features(60), spec)


@pytest.mark.parametrize("left_column, left_starts, right_column, right_start", [(259, (25, 45), 262, 35),
                                                                                   (260, (25, 41), 261, 33)])
def test_phase_is_zero_at_left_and_pi_at_right_foot_onsets(left_column, left_starts, right_column, right_start):
    """Contact columns are left ankle, left foot, right ankle, right foot, and either column of a foot counts: the
    left foot lands at ``left_starts``, the right one at ``right_start``, and the phase runs evenly between them."""
    feats = _features(80)
    for start in left_starts:
        feats[start:start + 4, left_column] = 1.0
    feats[right_start:right_start + 4, right_column] = 1.0
    clip = clip_frames(feats, SPEC)
    rows = {int(t): i for i, t in enumerate(clip.frames)}
    first, second = left_starts
    assert clip.phase[rows[first]] == pytest.approx(0.0, abs=1e-6)
    assert clip.phase[rows[right_start]] == pytest.approx(math.pi, abs=1e-6)
    assert clip.phase[rows[(first + right_start) // 2]] == pytest.approx(math.pi / 2, abs=1e-6)
    assert clip.phase[rows[(right_start + second) // 2]] == pytest.approx(1.5 * math.pi, abs=1e-6)


def test_a_clip_without_steps_advances_one_cycle_per_default_period():
    feats = _features(60)
    for period in (1.0, 2.0):
        clip = clip_frames(feats, SPEC, default_period_s=period)
        np.testing.assert_allclose(clip.outputs[:, Y_COLS["phase_change"]][:, 0], TWO_PI / (20.0 * period), rtol=1e-6)


def test_phase_just_below_a_full_cycle_is_stored_below_two_pi():
    """Phase lies in [0, 2 pi) also where float32 rounds a value just below 2 pi up to it: with one cycle per
    1.5 / (1 - 1e-8) s at 20 fps, frame 30 sits 6e-8 below a full cycle; it is stored as 0."""
    clip = clip_frames(_features(60), SPEC, default_period_s=1.5 / (1 - 1e-8))
    assert clip.phase.dtype == np.float32 and clip.phase.max() < TWO_PI
    assert clip.phase[list(clip.frames).index(30)] == 0.0


def test_derived_contacts_follow_the_frame_the_foot_stops_at():
    """Contact of frame t compares the foot at t and t+1: feet sliding until frame 20 and still from then on are in
    contact from frame 20 on; the last frame repeats the one before."""
    joints = np.zeros((40, 22, 3))
    joints[:, :, 2] = 0.1 * np.minimum(np.arange(40), 20)[:, None]
    contacts = _joint_contacts(joints, 22, 20.0)
    np.testing.assert_array_equal(contacts, np.repeat((np.arange(40) >= 20)[:, None], 4, axis=1).astype(float))


def test_gait_of_a_sample_is_the_speed_from_its_frame_to_the_next():
    """Running (3 m/s) until frame 20, then standing: frame 19 runs, frame 20 stands; a speed equal to a
    threshold counts as the faster gait (2 m/s at 16 fps, 0.125 m a frame, is a run)."""
    ground = np.zeros((40, 3))
    ground[:, 2] = 0.15 * np.minimum(np.arange(40), 20)
    at = np.arange(40, dtype=np.float64)[:, None]
    gait = _gait_one_hot(ground, at, 20.0, (0.3, 2.0)).argmax(-1)[:, 0]
    assert [GAIT_CLASSES[g] for g in gait[[0, 19, 20, 39]]] == ["run", "run", "stand", "stand"]
    exact = np.zeros((10, 3))
    exact[:, 2] = 0.125 * np.arange(10)
    assert (_gait_one_hot(exact, at[:10], 16.0, (0.3, 2.0)).argmax(-1) == GAIT_CLASSES.index("run")).all()


# ----- foot phase and contact onsets ----------------------------------------------------------------------------------
def test_without_min_swing_a_one_frame_gap_is_a_step():
    left = np.zeros(30, bool)
    left[5:10] = True
    left[11:15] = True  # a one-frame gap at 10
    track = foot_phase(left, np.zeros(30, bool), fps=20.0, min_swing_s=0.0)
    assert track.left.tolist() == [5, 11]
    assert foot_phase(left, np.zeros(30, bool), fps=20.0, min_swing_s=0.1).left.tolist() == [5]


def test_a_two_footed_landing_counts_as_the_left_onset():
    left, right = np.zeros(40, bool), np.zeros(40, bool)
    left[10:13], right[10:13], right[20:23] = True, True, True
    track = foot_phase(left, right, fps=20.0)
    assert track.phase[10] == pytest.approx(0.0) and track.phase[20] == pytest.approx(math.pi)
    assert np.all(np.diff(track.unwrapped) > 0)


def test_with_two_onsets_the_phase_outside_them_continues_at_their_rate():
    left, right = np.zeros(40, bool), np.zeros(40, bool)
    left[10:13], right[20:23] = True, True
    track = foot_phase(left, right, fps=20.0, default_period_s=5.0)
    np.testing.assert_allclose(track.unwrapped, math.pi / 10 * (np.arange(40) - 10), atol=1e-12)


def test_contact_onsets_keep_a_leading_gap_and_leave_the_input_alone():
    """A gap before the first contact is not flicker (it may be a swing): the first contact is an onset. The caller's
    track is not modified by filling the gaps."""
    contact = np.array([0, 1, 1, 0, 0, 1, 1, 0, 1], bool)
    before = contact.copy()
    assert contact_onsets(contact, min_swing=3).tolist() == [1]
    np.testing.assert_array_equal(contact, before)


def test_contact_onsets_refuse_a_track_that_is_not_one_dimensional():
    with pytest.raises(ValueError, match=r"expected a \(T,\) contact track, got shape \(5, 2\)"):
        contact_onsets(np.zeros((5, 2), bool))


def test_layout_without_gait_has_no_empty_gait_blocks():
    x_blocks, _ = pfnn_layout(22, 126, False)
    assert not any(b.name.startswith("traj_gait_") for b in x_blocks)
    assert all(b.stop > b.start for b in x_blocks)


def test_block_std_treats_a_rounding_negative_variance_as_zero():
    """E[x^2] - E[x]^2 can come out a hair below zero for a constant column: it counts as std 0 in its block's mean
    (here (0 + 4) / 2), and a block of such columns is constant (std 1)."""
    std = _block_std(np.array([-1e-12, 16.0, -1e-12, 0.0]), [Block("a", 0, 2, ""), Block("b", 2, 4, "")])
    np.testing.assert_allclose(std, [2.0, 2.0, 1.0, 1.0])


# ----- export ---------------------------------------------------------------------------------------------------------
def _dataset(root, clips: dict[str, np.ndarray], split: str = "train") -> str:
    (root / "new_joint_vecs").mkdir(parents=True)
    for name, feats in clips.items():
        np.save(root / "new_joint_vecs" / f"{name}.npy", feats.astype(np.float32))
    (root / f"{split}.txt").write_text("".join(f"{name}\n" for name in clips))
    return str(root)


def _walk(frames: int, omega: float, left_onsets, right_onsets) -> np.ndarray:
    feats = _features(frames, omega=omega, vx=0.01, vz=0.04)
    feats[:, 4:67] += 0.05 * np.sin(np.arange(frames) / 3.0)[:, None]  # a moving pose
    for start in left_onsets:
        feats[start:start + 4, 259:261] = 1.0
    for start in right_onsets:
        feats[start:start + 4, 261:263] = 1.0
    return feats


@pytest.fixture(scope="module")
def walks(tmp_path_factory):
    root = _dataset(tmp_path_factory.mktemp("pfnn_walks") / "Walks",
                    {"a": _walk(70, 0.02, (22, 42), (32, 52)), "short": _walk(30, 0.0, (), ()),
                     "b": _walk(60, -0.03, (21, 41), (31,))})
    out = tmp_path_factory.mktemp("pfnn_out") / "pfnn"
    summary = export_pfnn(root, get_dataset_spec("synthetic", root), str(out))
    return summary, out


def test_export_statistics_are_the_mean_and_block_averaged_std_of_the_rows(walks):
    summary, out = walks
    layout = json.loads((out / "layout.json").read_text())
    for side, data, mean, std in (("input", "Input", "InputMean", "InputStd"),
                                  ("output", "Output", "OutputMean", "OutputStd")):
        rows = np.load(out / f"{data}.npy").astype(np.float64)
        np.testing.assert_allclose(np.load(out / f"{mean}.npy"), rows.mean(0), atol=1e-5)
        column_std = rows.std(0)
        expected = np.empty_like(column_std)
        for c in layout[side]["columns"]:
            value = column_std[c["start"]:c["stop"]].mean()
            expected[c["start"]:c["stop"]] = value if value > 1e-8 else 1.0
        np.testing.assert_allclose(np.load(out / f"{std}.npy"), expected, rtol=1e-3, atol=1e-6)


def test_export_summary_and_layout_name_the_exported_and_skipped_clips(walks):
    summary, out = walks
    layout = json.loads((out / "layout.json").read_text())
    # a: frames 20..51 (32 rows), b: 20..41 (22 rows); "short" (30 frames) has no frame whose window fits.
    assert (summary.rows, summary.clips, summary.skipped) == (54, 2, ["short"])
    assert layout["rows"] == 54 and layout["clips"] == ["a", "short", "b"] and layout["skipped_clips"] == ["short"]
    sequences, frames = np.load(out / "Sequences.npy"), np.load(out / "Frames.npy")
    assert sequences.tolist() == [0] * 32 + [2] * 22
    assert frames.tolist() == list(range(20, 52)) + list(range(20, 42))
    assert layout["gait"]["classes"] == []
    offsets = np.array(layout["trajectory"]["offsets_frames"])
    np.testing.assert_allclose(layout["trajectory"]["offsets_s"], offsets / 20.0)
    assert layout["trajectory"]["offsets_s"][0] == pytest.approx(-1.0)


def test_export_replaces_a_staging_folder_left_inside_out_by_earlier_versions(tmp_path):
    data = _dataset(tmp_path / "data", {"a": _walk(60, 0.0, (21,), (31,))})
    target = tmp_path / "pfnn"
    (target / ".tmp-pfnn-1234").mkdir(parents=True)
    (target / ".tmp-pfnn-1234" / "Input.npy").write_bytes(b"partial")
    export_pfnn(data, get_dataset_spec("synthetic", data), str(target))
    assert not (target / ".tmp-pfnn-1234").exists() and (target / "layout.json").exists()


def test_too_short_message_names_the_shortest_clip_that_exports(tmp_path):
    """At 20 fps the message asks for 39 frames: a 38-frame clip exports nothing, a 39-frame clip one row."""
    from utils.normalization import DatasetError

    short = _dataset(tmp_path / "short", {"a": _walk(38, 0.0, (), ())})
    with pytest.raises(DatasetError, match=r"expected clips of at least about 39 frames at 20 fps"):
        export_pfnn(short, get_dataset_spec("synthetic", short), str(tmp_path / "out_short"))
    enough = _dataset(tmp_path / "enough", {"a": _walk(39, 0.0, (), ())})
    summary = export_pfnn(enough, get_dataset_spec("synthetic", enough), str(tmp_path / "out"))
    assert (summary.rows, summary.clips, summary.skipped) == (1, 1, [])


# ----- bad starts and gait thresholds ---------------------------------------------------------------------------------
def test_dopri5_refuses_a_non_finite_initial_state():
    """No smaller step fixes a non-finite start: refused at once, not retried until max_steps runs out with advice to
    loosen the tolerances."""
    with pytest.raises(ValueError, match=r"non-finite values in the initial state y0"):
        odeint_dopri5(lambda t, y: -y, torch.tensor([1.0, float("nan")]), max_steps=50)


def test_dopri5_refuses_a_non_finite_initial_velocity():
    with pytest.raises(ValueError, match=r"non-finite values in the velocity f\(t0, y0\)"):
        odeint_dopri5(lambda t, y: y * float("inf"), torch.ones(3), max_steps=50)


def test_dopri5_of_an_empty_low_precision_state_is_float32_like_any_other():
    result = odeint_dopri5(lambda t, y: -y, torch.ones(0, 2, dtype=torch.bfloat16))
    assert result.y.dtype == torch.float32 and result.y.shape == (0, 2)
    assert odeint_dopri5(lambda t, y: -y, torch.ones(2, dtype=torch.bfloat16)).y.dtype == torch.float32


@pytest.mark.parametrize("speeds", [(2.0, 0.3), (1.0, 1.0), (-0.1, 2.0)])
def test_gait_thresholds_must_be_two_increasing_speeds(speeds):
    """Before: np.digitize took decreasing thresholds as a reversed scale and labelled a standing sample "run"."""
    ground = np.zeros((20, 3))
    with pytest.raises(ValueError, match=r"gait_speeds \(.*\); expected two increasing speeds in m/s"):
        _gait_one_hot(ground, np.arange(20, dtype=np.float64)[:, None], 20.0, speeds)
