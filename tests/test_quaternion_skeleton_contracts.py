"""Quaternion and skeleton contracts: quaternion helpers refuse arrays of the wrong shape by name,
non-unit quaternions give the rotation of their unit quaternion, qfix leaves its input alone, inverse kinematics from
given root quaternions checks their number, and forward kinematics takes one root position per frame (refused by name
otherwise, not broadcast from one position to every frame)."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch
from test_skeleton_bvh_export_contracts import CHAIN3_RAW, _t2m_skeleton, _walk

from utils.quaternion import matrix_to_quaternion, qfix, qinv, qmul, qnormalize, quaternion_to_matrix
from utils.skeleton import Skeleton

# ---------------------------------------------------------------------------------------------------------------------
# Quaternion helpers


@pytest.mark.parametrize("call,name", [(lambda: qinv(np.zeros((2, 5))), "qinv"),
                                       (lambda: qinv(torch.zeros(2, 3)), "qinv"),
                                       (lambda: qmul(np.ones((2, 4)), np.ones((2, 3))), "qmul r"),
                                       (lambda: qmul(np.ones((2, 5)), np.ones((2, 4))), "qmul q")])
def test_quaternions_of_another_width_are_refused_by_name(call, name):
    with pytest.raises(ValueError, match=rf"{name}: expected shape \(\.\.\., 4\)"):
        call()


def test_a_scaled_quaternion_gives_the_rotation_of_its_unit_quaternion():
    q = qnormalize(np.random.default_rng(0).normal(size=(6, 4)))
    np.testing.assert_allclose(quaternion_to_matrix(3.0 * q), quaternion_to_matrix(q), atol=1e-12)


def test_matrices_that_are_not_3x3_are_refused_by_name():
    with pytest.raises(ValueError, match=r"matrix_to_quaternion: expected shape \(\.\.\., 3, 3\), got \(2, 4, 3\)"):
        matrix_to_quaternion(np.zeros((2, 4, 3)))


def test_qfix_returns_a_copy_and_leaves_its_input_unchanged():
    q = np.array([[1.0, 0.0, 0.0, 0.0], [-1.0, 0.0, 0.0, 0.0]])
    fixed = qfix(q)
    np.testing.assert_array_equal(fixed, [[1, 0, 0, 0], [1, 0, 0, 0]])
    np.testing.assert_array_equal(q, [[1, 0, 0, 0], [-1, 0, 0, 0]])


def test_qfix_refuses_a_single_quaternion_without_a_time_axis():
    with pytest.raises(ValueError, match=r"qfix: expected shape \(T, \.\.\., 4\), got \(4,\)"):
        qfix(np.array([1.0, 0.0, 0.0, 0.0]))


# ---------------------------------------------------------------------------------------------------------------------
# Skeleton: inverse kinematics from given root quaternions


def test_ik_from_root_refuses_root_quaternions_of_another_length():
    joints = _walk()[:5]
    root = np.tile([1.0, 0.0, 0.0, 0.0], (4, 1))
    with pytest.raises(ValueError, match=r"Skeleton.inverse_kinematics: expected joints \(T, 22, 3\) and root "
                                         r"quaternions \(T, 4\), got \(5, 22, 3\) and \(4, 4\)"):
        _t2m_skeleton().inverse_kinematics_from_root(joints, root)


# ---------------------------------------------------------------------------------------------------------------------
# Skeleton: forward kinematics from root positions


def _identity_quat(frames: int) -> np.ndarray:
    quat = np.zeros((frames, 3, 4))
    quat[..., 0] = 1.0
    return quat


@pytest.mark.parametrize("root_pos", [np.zeros((1, 3)), np.zeros((2, 2)), np.zeros((2, 1)), np.zeros(3)])
def test_forward_kinematics_refuses_root_positions_not_one_per_frame(root_pos):
    skel = Skeleton(CHAIN3_RAW, [[0, 1, 2]])
    with pytest.raises(ValueError, match=rf"Skeleton.forward_kinematics: expected root positions \(2, 3\), got "
                                         rf"{re.escape(str(root_pos.shape))}"):
        skel.forward_kinematics(_identity_quat(2), root_pos, CHAIN3_RAW)


def test_forward_kinematics_places_the_root_at_each_frames_position():
    skel = Skeleton(CHAIN3_RAW, [[0, 1, 2]])
    root = np.array([[0.0, 0.0, 0.0], [1.0, 2.0, 3.0]])
    joints = skel.forward_kinematics(_identity_quat(2), root, CHAIN3_RAW)
    np.testing.assert_allclose(joints, root[:, None] + [[0, 0, 0], [0, 1, 0], [1, 1, 0]])
