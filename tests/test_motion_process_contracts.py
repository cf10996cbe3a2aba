"""Motion features, placement, recovery and resampling, and the quaternion helpers: behaviour the feature and
rotation tests leave open (validation, frame-rate scaling, conventions, dtypes)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from utils import paramutil
from utils.dataset_specs import DATASETS
from utils.motion_process import (
    _accumulate_rotations,
    extract_features,
    extract_features_272,
    features_to_joints,
    feet_threshold,
    initial_placement,
    joints_fps_resample,
    normalize_joints_272,
    place_canonical,
    process_joints,
    recover_from_272,
    recover_from_ric,
    recover_root_rot_pos,
    uniform_skeleton,
)
from utils.quaternion import (
    matrix_to_quaternion,
    qnormalize,
    qrot,
    quaternion_to_matrix,
    rot6d_to_matrix,
    yaw_quaternion,
)
from utils.skeleton import Skeleton
from utils.synthetic import synthesize_motion


@pytest.fixture(scope="module")
def joints() -> np.ndarray:
    """A short, deterministic t2m motion (T, 22, 3) in metres, y up."""
    return synthesize_motion(np.random.default_rng(0)).joints[:20].astype(np.float64)


# ---------------------------------------------------------------------------------------------------------------------
# motion_process: validation
# ---------------------------------------------------------------------------------------------------------------------

def test_recovery_refuses_a_single_joint_skeleton():
    """joints_num must be at least 2: a one-joint skeleton is refused, not recovered as a root trajectory."""
    with pytest.raises(ValueError, match="joints_num"):
        recover_from_ric(np.zeros((5, 4)), 1)
    with pytest.raises(ValueError, match="joints_num"):
        recover_from_272(np.zeros((5, 20)), 1)


def test_non_finite_joints_are_refused_by_the_272_normalisation(joints):
    bad = joints.copy()
    bad[3, 5, 1] = np.nan
    with pytest.raises(ValueError, match="finite"):
        normalize_joints_272(bad)
    bad[3, 5, 1] = np.inf
    with pytest.raises(ValueError, match="finite"):
        normalize_joints_272(bad)


def test_initial_placement_refuses_zero_own_frames(joints):
    """own_frames below 1 is refused with a message naming the argument."""
    with pytest.raises(ValueError, match="own_frames"):
        initial_placement(joints, own_frames=0)
    with pytest.raises(ValueError, match="own_frames"):
        initial_placement(joints, own_frames=len(joints) + 1)


def test_feet_threshold_scales_with_the_square_of_the_frame_rate_ratio():
    base = paramutil.get_skeleton_settings("t2m").feet_thre
    assert feet_threshold("t2m") == base
    assert feet_threshold("t2m", 20) == base
    assert feet_threshold("t2m", 40) == pytest.approx(base / 4)
    assert feet_threshold("t2m", 10) == pytest.approx(base * 4)


def test_feet_threshold_refuses_a_zero_frame_rate():
    with pytest.raises(ValueError, match="fps"):
        feet_threshold("t2m", 0)
    with pytest.raises(ValueError, match="fps"):
        feet_threshold("t2m", -20)


# ---------------------------------------------------------------------------------------------------------------------
# motion_process: HumanML3D features
# ---------------------------------------------------------------------------------------------------------------------

def test_source_bone_lengths_are_measured_on_frame_zero(joints):
    """The root-path scale comes from frame 0's legs: stretching the legs of the last frame only changes that frame."""
    changed = joints.copy()
    changed[-1, :, 1] = changed[-1, 0, 1] + 1.3 * (changed[-1, :, 1] - changed[-1, 0, 1])
    a, b = uniform_skeleton(joints), uniform_skeleton(changed)
    np.testing.assert_allclose(b[:-1], a[:-1], atol=1e-9)


def test_foot_contact_needs_a_displacement_strictly_below_the_threshold(joints):
    """A foot whose squared step equals feet_thre is not in contact (the rule is displacement < feet_thre)."""
    settings = paramutil.get_skeleton_settings("t2m")
    ankle = settings.fid_l[0]
    glob = process_joints(joints).global_positions
    step = float(((glob[1, ankle] - glob[0, ankle]) ** 2).sum())
    at = process_joints(joints, feet_thre=step).features
    above = process_joints(joints, feet_thre=np.nextafter(step, np.inf)).features
    assert at[0, -4] == 0.0
    assert above[0, -4] == 1.0


# ---------------------------------------------------------------------------------------------------------------------
# motion_process: initial placement
# ---------------------------------------------------------------------------------------------------------------------

def _turn(joints: np.ndarray, angle: float, shift) -> np.ndarray:
    """Rotate about +Y by ``angle`` (+Z towards +X) and translate."""
    c, s = np.cos(angle), np.sin(angle)
    rot = np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])
    return joints @ rot.T + np.asarray(shift, dtype=np.float64)


def _wrap(angle: float) -> float:
    return float((angle + np.pi) % (2 * np.pi) - np.pi)


def test_initial_placement_yaw_follows_a_turn_of_the_input(joints):
    """Turning the input by a about +Y (towards +X) adds a to the measured yaw; offset xz is the new root xz."""
    yaw0, _ = initial_placement(joints)
    for angle in (0.7, -1.9):
        turned = _turn(joints, angle, [0.3, 0.0, -1.2])
        yaw, offset = initial_placement(turned)
        assert _wrap(yaw - yaw0 - angle) == pytest.approx(0.0, abs=1e-6)
        np.testing.assert_allclose(offset[[0, 2]], turned[0, 0, [0, 2]], atol=1e-12)


def test_initial_placement_facing_convention():
    """yaw 0 faces +Z and pi/2 faces +X: a pose built facing +X gives yaw pi/2."""
    settings = paramutil.get_skeleton_settings("t2m")
    skel = Skeleton(settings.raw_offsets, settings.kinematic_chain)
    quat = np.zeros((3, 22, 4))
    quat[..., 0] = 1.0
    rest = skel.forward_kinematics(quat, np.array([[0.0, 0.95, 0.0]] * 3), offsets=paramutil.T2M_TGT_OFFSETS)
    yaw_rest, _ = initial_placement(rest)
    yaw, _ = initial_placement(_turn(rest, np.pi / 2, [0.0, 0.0, 0.0]))
    assert _wrap(yaw - yaw_rest - np.pi / 2) == pytest.approx(0.0, abs=1e-6)
    # place_canonical with that yaw turns canonical +Z into the input's facing
    facing = place_canonical(np.array([[0.0, 0.0, 1.0]]), np.pi / 2, np.zeros(3))
    np.testing.assert_allclose(facing, [[1.0, 0.0, 0.0]], atol=1e-12)


def test_initial_placement_floor_matches_the_own_frames(joints):
    """With own_frames, the lowest joint of those frames lands on the input's own lowest joint of those frames,
    even when later (extrapolated) frames go lower."""
    lowered = joints.copy()
    lowered[12:, :, 1] -= 0.2  # later frames go down: the canonical floor is set by them
    own = 10
    canonical = process_joints(lowered).global_positions
    yaw, offset = initial_placement(lowered, own_frames=own)
    placed = place_canonical(canonical, yaw, offset)
    assert placed[:own, :, 1].min() == pytest.approx(lowered[:own, :, 1].min(), abs=1e-9)
    np.testing.assert_allclose(placed[0, 0, [0, 2]], lowered[0, 0, [0, 2]], atol=1e-9)


def test_place_canonical_rotation_and_dtype():
    """place_canonical turns +X to -Z at yaw pi/2 (a proper rotation) and keeps float32 input float32."""
    pts = np.array([[1.0, 0.0, 0.0], [0.0, 2.0, 1.0]], dtype=np.float32)
    out = place_canonical(pts, np.pi / 2, np.array([0.5, 0.0, 0.0]))
    np.testing.assert_allclose(out, [[0.5, 0.0, -1.0], [1.5, 2.0, 0.0]], atol=1e-6)
    assert out.dtype == np.float32


# ---------------------------------------------------------------------------------------------------------------------
# motion_process: recovery
# ---------------------------------------------------------------------------------------------------------------------

def test_integer_features_are_recovered_as_float64():
    """Integer numpy features are read as float64 (same joints as the float64 array)."""
    rng = np.random.default_rng(5)
    ints = rng.integers(-3, 4, size=(6, 67))
    got = recover_from_ric(ints, 22)
    expected = recover_from_ric(ints.astype(np.float64), 22)
    assert isinstance(got, np.ndarray) and got.dtype == np.float64
    np.testing.assert_array_equal(got, expected)


def test_root_recovery_refuses_fewer_than_four_columns():
    with pytest.raises(ValueError, match="D >= 4"):
        recover_root_rot_pos(np.zeros((5, 3)))


def test_features_to_joints_reads_essential_datasets_in_both_widths(joints):
    """An essential dataset (t2m_67) accepts its own 67-dim features and the 263-dim file features alike."""
    feats = extract_features(joints)
    spec = DATASETS["t2m_67"]
    full = features_to_joints(feats, spec)
    ess = features_to_joints(feats[:, :67], spec)
    assert full.shape == ess.shape == (len(feats), 22, 3)
    np.testing.assert_allclose(full, ess, atol=1e-6)
    np.testing.assert_allclose(full, recover_from_ric(feats, 22), atol=1e-6)


def test_272_recovery_starts_from_the_first_rows_root_velocity():
    """Row 0's root xz velocity is the root's starting offset: it is added to every frame."""
    rng = np.random.default_rng(7)
    feats = rng.normal(size=(6, 272))
    moved = feats.copy()
    moved[0, 0:2] += [0.4, -0.25]
    a, b = recover_from_272(feats), recover_from_272(moved)
    np.testing.assert_allclose(b - a, np.broadcast_to([0.4, 0.0, -0.25], a.shape), atol=1e-9)


@pytest.mark.parametrize("frames", [2, 3, 5, 9])
def test_heading_changes_accumulate_over_clips_of_any_length(frames):
    """The accumulated heading of frame t is rel_t @ ... @ rel_0 for every clip length, including 2^k + 1 frames."""
    rel = rot6d_to_matrix(torch.from_numpy(np.random.default_rng(frames).normal(size=(frames, 6))))
    expected = [rel[0]]
    for t in range(1, frames):
        expected.append(rel[t] @ expected[-1])
    torch.testing.assert_close(_accumulate_rotations(rel), torch.stack(expected))


def test_272_extraction_retargets_only_when_given_a_target(joints):
    """Without tgt_offsets the 272 features keep the input's own bone lengths; with a target they change."""
    plain = extract_features_272(joints)
    local = plain[:, 8:8 + 66].reshape(len(joints), 22, 3)
    # local positions keep the input's bone lengths (hip to knee of frame 0)
    assert np.linalg.norm(local[0, 4] - local[0, 1]) == pytest.approx(np.linalg.norm(joints[0, 4] - joints[0, 1]),
                                                                     rel=1e-5)
    retargeted = extract_features_272(joints, tgt_offsets=paramutil.T2M_TGT_OFFSETS * 1.5)
    assert not np.allclose(retargeted, plain, atol=1e-3)


# ---------------------------------------------------------------------------------------------------------------------
# motion_process: resampling
# ---------------------------------------------------------------------------------------------------------------------

def test_resampling_integer_joints_gives_floats():
    joints = np.arange(3 * 2 * 3).reshape(3, 2, 3)
    out = joints_fps_resample(joints, 20, 40)
    assert out.dtype == np.float64
    np.testing.assert_allclose(out[1], (joints[0] + joints[1]) / 2)


def test_resampling_refuses_an_empty_sequence():
    with pytest.raises(ValueError, match="T >= 1"):
        joints_fps_resample(np.zeros((0, 22, 3)), 30, 20)


# ---------------------------------------------------------------------------------------------------------------------
# quaternion
# ---------------------------------------------------------------------------------------------------------------------

def test_numpy_integer_inputs_are_computed_in_float64():
    q = np.array([[1, 0, 0, 0], [0, 0, 1, 0]])
    v = np.array([[1, 2, 3], [1, 2, 3]])
    out = qrot(q, v)
    assert out.dtype == np.float64
    np.testing.assert_allclose(out, [[1, 2, 3], [-1, 2, -3]])
    assert yaw_quaternion(np.array([0])).dtype == np.float64


def test_numpy_mixed_precision_promotes_to_float64():
    q = np.array([[np.cos(0.3), 0.0, np.sin(0.3), 0.0]], dtype=np.float32)
    v = np.array([[0.1, 0.2, 1.0 + 1e-9]], dtype=np.float64)
    out = qrot(q, v)
    assert out.dtype == np.float64
    out_kw = qrot(v=v, q=q)
    assert out_kw.dtype == np.float64


def test_rot6d_to_matrix_orthogonalises_the_second_row():
    """Row-6D input whose rows are not orthogonal gives a proper rotation with row 0 along the first vector."""
    six = np.array([[2.0, 0.0, 0.0, 1.0, 3.0, 0.0], [0.0, 1.0, 1.0, 1.0, 1.0, 0.0]])
    m = rot6d_to_matrix(six)
    np.testing.assert_allclose(m @ np.swapaxes(m, -1, -2), np.broadcast_to(np.eye(3), m.shape), atol=1e-12)
    np.testing.assert_allclose(np.linalg.det(m), [1.0, 1.0], atol=1e-12)
    np.testing.assert_allclose(m[0], [[1, 0, 0], [0, 1, 0], [0, 0, 1]], atol=1e-12)


def test_qnormalize_gives_unit_quaternions():
    q = np.array([[2.0, 0.0, 0.0, 0.0], [1.0, 1.0, 1.0, 1.0]])
    np.testing.assert_allclose(qnormalize(q), [[1, 0, 0, 0], [0.5, 0.5, 0.5, 0.5]], atol=0, rtol=1e-15)


def test_qrot_refuses_vectors_of_the_wrong_width():
    with pytest.raises(ValueError, match=r"qrot v: expected shape \(\.\.\., 3\)"):
        qrot(np.array([1.0, 0, 0, 0]), np.zeros(4))


def test_matrix_to_quaternion_half_turns_have_non_negative_w():
    """180-degree rotations (w = 0) and others come back with w >= 0 and rebuild the same matrix."""
    q = np.array([[0.0, 1.0, 0.0, 0.0], [0.0, 0.0, 0.6, 0.8], [-0.5, 0.5, 0.5, 0.5], [-0.1, 0.9, 0.3, 0.3]])
    q = q / np.linalg.norm(q, axis=-1, keepdims=True)
    m = quaternion_to_matrix(q)
    back = matrix_to_quaternion(m)
    assert np.all(back[:, 0] >= 0)
    np.testing.assert_allclose(quaternion_to_matrix(back), m, atol=1e-12)
    np.testing.assert_allclose(back[2:], -q[2:], atol=1e-12)


def test_quaternion_to_matrix_accepts_non_unit_quaternions():
    q = np.array([[0.5, 0.5, 0.5, 0.5], [np.cos(0.4), 0.0, np.sin(0.4), 0.0]])
    np.testing.assert_allclose(quaternion_to_matrix(3.0 * q), quaternion_to_matrix(q), atol=1e-12)
