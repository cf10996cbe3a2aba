"""Rotation and frame-rate edge cases: resampling at NTSC rates keeps the last frame, heading changes accumulate by
left multiplication whatever the rotation, qfix leaves a quaternion at dot product 0 alone, and ZYX Euler angles
round-trip at gimbal lock."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from utils.bvh import euler_to_matrix, matrix_to_euler_zyx
from utils.motion_process import _accumulate_rotations, joints_fps_resample
from utils.quaternion import qfix, rot6d_to_matrix


@pytest.mark.parametrize("frames,src,dst,expected", [(12, 29.97, 29.97, 12), (23, 59.94, 29.97, 12)])
def test_resampling_keeps_the_last_frame_at_ntsc_rates(frames, src, dst, expected):
    joints = np.random.default_rng(0).normal(size=(frames, 22, 3))
    out = joints_fps_resample(joints, src, dst)
    assert out.shape[0] == expected
    np.testing.assert_allclose(out[-1], joints[-1], atol=1e-9)  # (T-1) / src seconds is the last time stamp


def test_heading_accumulation_is_left_multiplied_for_any_rotations():
    """R_t = rel_t @ R_{t-1}; generated 272-dim features carry heading changes that need not be pure yaw."""
    rel = rot6d_to_matrix(torch.randn(7, 6, dtype=torch.float64))
    expected = [rel[0]]
    for t in range(1, 7):
        expected.append(rel[t] @ expected[-1])
    torch.testing.assert_close(_accumulate_rotations(rel), torch.stack(expected))


def test_qfix_leaves_a_frame_at_dot_zero_alone():
    q = np.array([[1.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0], [0.0, 0.6, 0.8, 0.0]])
    np.testing.assert_array_equal(qfix(q), q)


@pytest.mark.parametrize("angles", [(30.0, 90.0, 0.0), (-50.0, -90.0, 0.0), (120.0, 90.0, 20.0)])
def test_euler_zyx_round_trip_at_gimbal_lock(angles):
    rot = euler_to_matrix(np.array(angles), "ZYX")
    back = matrix_to_euler_zyx(rot)
    assert back[1] == pytest.approx(angles[1], abs=1e-6) and back[2] == 0.0
    np.testing.assert_allclose(euler_to_matrix(back, "ZYX"), rot, atol=1e-9)
