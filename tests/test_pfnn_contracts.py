"""PFNN export contracts no other test pinned, checked against independent calculations: root velocities and turn
rate in the root frame, the frames whose window fits, the std of a constant block, contact gaps and the phase
before the first onset, joint velocities in the root frame of t."""

from __future__ import annotations

import numpy as np
import pytest


def _pfnn_features(frames: int, omega: float, vx: float, vz: float) -> np.ndarray:
    """HumanML3D features (T, 263) of a root turning at ``omega`` per frame and moving (vx, vz) per frame in its own
    frame, 0.9 m high, with one joint 1 m in front of the root (root frame +Z) and the others beside it."""
    feats = np.zeros((frames, 263))
    feats[:, 0], feats[:, 1], feats[:, 2], feats[:, 3] = omega, vx, vz, 0.9
    ric = np.zeros((21, 3))
    ric[:, 0] = np.linspace(-0.5, 0.5, 21)
    ric[0] = [0.0, 0.0, 1.0]
    feats[:, 4:67] = ric.reshape(-1)
    return feats


def _pfnn_y(feats: np.ndarray):
    from utils.dataset_specs import humanml3d_spec
    from utils.pfnn import clip_frames, pfnn_layout
    spec = humanml3d_spec(name="pfnn_kill", root="/nonexistent")
    clip = clip_frames(feats, spec)
    _, y_blocks = pfnn_layout(22, 126, False)
    cols = {b.name: slice(b.start, b.stop) for b in y_blocks}
    return clip, cols


def test_pfnn_root_velocity_is_x_then_z_in_the_root_frame():
    """Root_vel_x / root_vel_z are the ground displacement t -> t+1 in the root frame of t: for a root
    that does not turn and moves (0.01, 0.05) per frame in its own frame, exactly those."""
    clip, cols = _pfnn_y(_pfnn_features(60, 0.0, 0.01, 0.05))
    np.testing.assert_allclose(clip.outputs[:, cols["root_vel_x"]], 0.01, atol=1e-6)
    np.testing.assert_allclose(clip.outputs[:, cols["root_vel_z"]], 0.05, atol=1e-6)


def test_pfnn_root_rvel_is_the_yaw_change_measured_on_the_joints():
    """Root_rvel is the change of the facing angle t -> t+1 (atan2(x, z), positive towards +X), here
    measured independently on the recovered joint placed in front of the root."""
    from utils.motion_process import recover_from_ric
    feats = _pfnn_features(60, 0.03, 0.0, 0.0)
    clip, cols = _pfnn_y(feats)
    joints = recover_from_ric(feats, 22)
    front = joints[:, 1] - joints[:, 0]
    facing = np.unwrap(np.arctan2(front[:, 0], front[:, 2]))
    expected = facing[clip.frames + 1] - facing[clip.frames]
    assert np.all(np.abs(expected) > 0.01)
    np.testing.assert_allclose(clip.outputs[:, cols["root_rvel"]][:, 0], expected, atol=1e-5)


@pytest.mark.parametrize("fps, frames", [(20.0, 60), (30.0, 90), (12.5, 50)])
def test_pfnn_exports_every_frame_whose_window_fits(fps, frames):
    """The exported frames are exactly those t with t - fps >= 0 (the past window) and
    t + 1 + 5 fps / 6 <= T - 1 (the future window from t+1), no fewer."""
    from utils.dataset_specs import humanml3d_spec
    from utils.pfnn import clip_frames
    spec = humanml3d_spec(name="pfnn_kill", root="/nonexistent", fps=fps)
    clip = clip_frames(_pfnn_features(frames, 0.0, 0.01, 0.05), spec)
    t = np.arange(frames)
    expected = t[(t - fps >= -1e-9) & (t + 1 + 5 * fps / 6 <= frames - 1 + 1e-9) & (t >= 1)]
    np.testing.assert_array_equal(clip.frames, expected)


def test_pfnn_block_std_of_a_constant_block_is_one():
    """A block whose columns never change gets std 1 (not 0, which would divide by zero when the
    training script normalises), the others their mean std."""
    from utils.pfnn import Block, _block_std
    std = _block_std(np.array([0.0, 0.0, 1.0, 9.0]), [Block("a", 0, 2, ""), Block("b", 2, 4, "")])
    np.testing.assert_allclose(std, [1.0, 1.0, 2.0, 2.0])


def test_a_contact_gap_of_exactly_min_swing_frames_is_a_step():
    """Gaps shorter than min_swing are flicker and filled; a gap of exactly
    min_swing frames is a swing, so the contact after it is an onset."""
    from utils.pfnn import contact_onsets
    contact = np.array([1, 1, 0, 0, 1, 1, 0, 1, 1], dtype=bool)
    np.testing.assert_array_equal(contact_onsets(contact, min_swing=2), [4])  # the 1-frame gap is filled
    np.testing.assert_array_equal(contact_onsets(contact, min_swing=1), [4, 7])


def test_phase_before_the_first_onset_continues_at_the_first_intervals_rate():
    """Before the first onset the phase continues at the rate of the first interval, after the last at
    the rate of the last (here pi / 10 and pi / 20 per frame)."""
    from utils.pfnn import foot_phase
    frames = 50
    left = np.zeros(frames, bool)
    right = np.zeros(frames, bool)
    left[10:13] = True  # onset 10 -> 0
    right[20:23] = True  # onset 20 -> pi
    left[40:43] = True  # onset 40 -> 2 pi
    phase = foot_phase(left, right, fps=20.0, min_swing_s=0.0)
    t = np.arange(frames)
    expected = np.where(t < 10, -np.pi / 10 * (10 - t),
                        np.where(t <= 20, np.pi / 10 * (t - 10),
                                 np.where(t <= 40, np.pi + np.pi / 20 * (t - 20), 2 * np.pi + np.pi / 20 * (t - 40))))
    np.testing.assert_allclose(phase.unwrapped, expected, atol=1e-12)


def _yaw(angle: np.ndarray) -> np.ndarray:
    """Rotations (T, 3, 3) about +Y taking +Z to (sin a, 0, cos a)."""
    c, s = np.cos(angle), np.sin(angle)
    r = np.zeros(angle.shape + (3, 3))
    r[..., 0, 0], r[..., 0, 2], r[..., 1, 1], r[..., 2, 0], r[..., 2, 2] = c, s, 1.0, -s, c
    return r


def test_pfnn_joint_velocity_is_in_the_root_frame_of_t():
    """Joint_vel of row t is J(t+1) - J(t) in the root frame of t (facing +Z), and joint_pos J(t) minus
    the ground root in the same frame; the frame is measured independently on the joint placed in front of the
    root of a turning, moving body."""
    from utils.motion_process import recover_from_ric
    feats = _pfnn_features(60, 0.05, 0.01, 0.03)
    clip, cols = _pfnn_y(feats)
    joints = recover_from_ric(feats, 22)
    front = joints[:, 1] - joints[:, 0]
    to_root = np.swapaxes(_yaw(np.arctan2(front[:, 0], front[:, 2])), -1, -2)  # world -> root frame
    t = clip.frames
    ground = joints[:, 0] * np.array([1.0, 0.0, 1.0])
    pos = np.einsum("tab,tjb->tja", to_root[t], joints[t] - ground[t, None])
    vel = np.einsum("tab,tjb->tja", to_root[t], joints[t + 1] - joints[t])
    np.testing.assert_allclose(clip.outputs[:, cols["joint_pos"]], pos.reshape(len(t), -1), atol=1e-5)
    np.testing.assert_allclose(clip.outputs[:, cols["joint_vel"]], vel.reshape(len(t), -1), atol=1e-5)
