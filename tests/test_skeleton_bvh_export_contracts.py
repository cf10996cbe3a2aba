"""Joint-position skeleton (``utils.skeleton``) and BVH export (``utils.bvh_export``): kinematics invariants on small
hand-built skeletons, the export's rotations, file layout and joint names, and bad skeletons, offsets, poses and names
refused with a message naming what was expected (not an IndexError, a silently wrong tree or a BVH no reader opens)."""


import numpy as np
import pytest

from utils.bvh import SMPL22_JOINT_NAMES, bvh_positions, parse_bvh
from utils.bvh_export import best_fit_rotation, joints_to_bvh_motion, shortest_arc, write_bvh
from utils.dataset_specs import T2M_KINEMATIC_CHAIN
from utils.paramutil import t2m_raw_offsets
from utils.quaternion import qmul, qrot
from utils.skeleton import Skeleton
from utils.synthetic import synthesize_motion

# ---------------------------------------------------------------------------------------------------------------------
# Skeleton: construction, bone lengths, offsets

# A 3-joint chain: root, joint 1 straight up, joint 2 along +X from joint 1.
CHAIN3_RAW = np.array([[0.0, 0.0, 0.0], [0.0, 1.0, 0.0], [1.0, 0.0, 0.0]])


def _walk(seed: int = 5, kind: str = "walk") -> np.ndarray:
    return synthesize_motion(np.random.default_rng(seed), kind).joints


def _turned(joints: np.ndarray, angle: np.ndarray) -> np.ndarray:
    """joints (T, J, 3) turned about +Y by ``angle`` (T,) radians (+X towards -Z)."""
    cos, sin = np.cos(angle)[:, None], np.sin(angle)[:, None]
    return np.stack([cos * joints[..., 0] + sin * joints[..., 2], joints[..., 1],
                     -sin * joints[..., 0] + cos * joints[..., 2]], axis=-1)


def _t2m_skeleton() -> Skeleton:
    return Skeleton(t2m_raw_offsets, T2M_KINEMATIC_CHAIN)


def test_a_joint_outside_every_chain_is_named():
    with pytest.raises(ValueError, match=r"joints \[1\] are in no kinematic chain"):
        Skeleton(CHAIN3_RAW, [[0, 2]])


def test_bone_lengths_are_zero_at_the_root_and_measured_to_the_parent():
    skel = Skeleton(CHAIN3_RAW, [[0, 1, 2]])
    joints = np.array([[1.0, 0.0, 0.0], [1.0, 2.0, 0.0], [4.0, 2.0, 0.0]])
    np.testing.assert_allclose(skel.bone_lengths(joints), [0.0, 2.0, 3.0])


def test_joints_of_another_skeleton_are_refused_naming_the_expected_shape():
    skel = Skeleton(CHAIN3_RAW, [[0, 1, 2]])
    with pytest.raises(ValueError, match=r"Skeleton.bone_lengths: expected joints of shape \(\.\.\., 3, 3\), got "
                                         r"\(5, 4, 3\)"):
        skel.bone_lengths(np.zeros((5, 4, 3)))


def test_offsets_are_the_raw_directions_scaled_by_each_bone_length():
    skel = Skeleton(CHAIN3_RAW, [[0, 1, 2]])
    pose = np.array([[0.0, 0.0, 0.0], [0.0, 2.0, 0.0], [0.0, 2.0, 3.0]])  # bone 2 points along +Z here
    np.testing.assert_allclose(skel.get_offsets_joints(pose), [[0, 0, 0], [0, 2, 0], [3, 0, 0]])
    np.testing.assert_allclose(skel.offsets, [[0, 0, 0], [0, 2, 0], [3, 0, 0]])


def test_offsets_of_the_wrong_shape_are_refused():
    skel = Skeleton(CHAIN3_RAW, [[0, 1, 2]])
    with pytest.raises(ValueError, match=r"set_offsets: expected offsets of shape \(3, 3\), got \(2, 3\)"):
        skel.set_offsets(np.zeros((2, 3)))


def test_forward_kinematics_without_offsets_says_how_to_set_them():
    skel = Skeleton(CHAIN3_RAW, [[0, 1, 2]])
    quat = np.zeros((1, 3, 4))
    quat[..., 0] = 1.0
    with pytest.raises(ValueError, match="no offsets; call set_offsets or get_offsets_joints"):
        skel.forward_kinematics(quat, np.zeros((1, 3)))


@pytest.mark.parametrize("joint", [1, 2])
def test_a_joint_on_its_parent_is_named_by_inverse_kinematics(joint):
    skel = Skeleton(CHAIN3_RAW, [[0, 1, 2]])
    joints = np.array([[[0.0, 0.0, 0.0], [0.0, 1.0, 0.0], [1.0, 1.0, 0.0]]]).repeat(2, axis=0)
    joints[1, joint] = joints[1, joint - 1]
    with pytest.raises(ValueError, match=rf"bone of joint {joint} has zero \(or non-finite\) length"):
        skel.inverse_kinematics_from_root(joints, np.tile([1.0, 0.0, 0.0, 0.0], (2, 1)))


# ---------------------------------------------------------------------------------------------------------------------
# Skeleton: inverse and forward kinematics


def test_inverse_then_forward_kinematics_reproduces_a_walk():
    """IK quaternions with the pose's own offsets and root path give back every joint (HumanML3D convention)."""
    joints = _walk()
    skel = _t2m_skeleton()
    offsets = skel.get_offsets_joints(joints[0])
    quat = skel.inverse_kinematics(joints, (2, 1, 17, 16))
    np.testing.assert_allclose(np.linalg.norm(quat, axis=-1), 1.0, atol=1e-9)
    np.testing.assert_allclose(skel.forward_kinematics(quat, joints[:, 0], offsets), joints, atol=1e-6)


def test_root_quaternion_turns_the_facing_direction_onto_plus_z():
    """Each frame's root quaternion rotates the body's forward (up x across) onto +Z; frame 0 is the identity."""
    joints = _walk()
    turned = _turned(joints, np.linspace(0.0, np.pi / 2, len(joints)))
    skel = _t2m_skeleton()
    root = skel.facing_rotation(turned, (2, 1, 17, 16))
    np.testing.assert_allclose(root[0], [1.0, 0.0, 0.0, 0.0])
    across = (turned[:, 1] - turned[:, 2]) + (turned[:, 17] - turned[:, 16])
    forward = np.cross([0.0, 1.0, 0.0], across)
    forward /= np.linalg.norm(forward, axis=-1, keepdims=True)
    np.testing.assert_allclose(qrot(root[1:], forward[1:]), np.broadcast_to([0.0, 0.0, 1.0], forward[1:].shape),
                               atol=1e-9)


def test_smoothing_the_facing_direction_steadies_a_jittering_heading():
    """``smooth_forward`` Gaussian-smooths the forward vectors over time: a heading that jitters frame to frame is
    steadied (smaller change between frames), and the result differs from the unsmoothed IK."""
    joints = _walk()
    jitter = _turned(joints, np.random.default_rng(0).normal(0.0, 0.2, len(joints)))
    skel = _t2m_skeleton()
    raw = skel.inverse_kinematics(jitter, (2, 1, 17, 16))
    smooth = skel.inverse_kinematics(jitter, (2, 1, 17, 16), smooth_forward=True)

    def steadiness(quat):  # |cos| of half the turn between consecutive root quaternions (frame 0 is the identity)
        return np.mean(np.abs(np.sum(quat[2:, 0] * quat[1:-1, 0], axis=-1)))

    assert steadiness(smooth) > steadiness(raw)
    assert np.abs(smooth[1:, 0] - raw[1:, 0]).max() > 1e-3


def test_forward_kinematics_places_the_root_at_the_given_path():
    skel = Skeleton(CHAIN3_RAW, [[0, 1, 2]])
    quat = np.zeros((2, 3, 4))
    quat[..., 0] = 1.0
    root = np.array([[1.0, 0.0, 2.0], [0.0, 3.0, 0.0]])
    joints = skel.forward_kinematics(quat, root, np.array([[0.0, 0, 0], [0, 2, 0], [3, 0, 0]]))
    np.testing.assert_allclose(joints[:, 0], root)
    np.testing.assert_allclose(joints[:, 2] - joints[:, 0], [[3, 2, 0], [3, 2, 0]])


def test_forward_kinematics_composes_parent_then_child_rotation():
    """A child's quaternion is applied in its parent's frame: root turned 90 degrees about +Y and joint 1 turned
    90 degrees about +X (local) sends the last bone (+X) to -Z, not elsewhere (hand-computed)."""
    skel = Skeleton(CHAIN3_RAW, [[0, 1, 2]])
    quat = np.zeros((1, 3, 4))
    quat[..., 0] = 1.0
    half = np.sqrt(0.5)
    quat[0, 0] = [half, 0.0, half, 0.0]  # +X -> -Z
    quat[0, 2] = [half, 0.0, 0.0, half]  # about +Z: +X -> +Y, in the root's frame
    joints = skel.forward_kinematics(quat, np.zeros((1, 3)), np.array([[0.0, 0, 0], [0, 2, 0], [3, 0, 0]]))
    np.testing.assert_allclose(joints[0], [[0, 0, 0], [0, 2, 0], [0, 5, 0]], atol=1e-12)
    quat[0, 1] = [half, half, 0.0, 0.0]  # joint 1 about +X: its bone +Y -> +Z, which the root turns to +X
    joints = skel.forward_kinematics(quat, np.zeros((1, 3)), np.array([[0.0, 0, 0], [0, 2, 0], [3, 0, 0]]))

    acc = qmul(quat[:, 0], quat[:, 1])
    expected_1 = qrot(acc, np.array([[0.0, 2.0, 0.0]]))[0]
    expected_2 = expected_1 + qrot(qmul(acc, quat[:, 2]), np.array([[3.0, 0.0, 0.0]]))[0]
    np.testing.assert_allclose(joints[0, 1], expected_1, atol=1e-12)
    np.testing.assert_allclose(joints[0, 2], expected_2, atol=1e-12)
    np.testing.assert_allclose(expected_1, [2.0, 0.0, 0.0], atol=1e-12)  # +Y -> +Z (about X) -> +X (about Y)


def test_facing_rotation_names_the_first_frame_without_an_across_direction():
    joints = _walk()[:6].copy()
    joints[4, [1, 2, 16, 17]] = joints[4, 0]  # hips and shoulders on one point
    with pytest.raises(ValueError, match=r"facing_rotation: frame 4: hips and shoulders give no across direction"):
        _t2m_skeleton().facing_rotation(joints, (2, 1, 17, 16))


def test_facing_rotation_refuses_non_finite_joints():
    joints = _walk()[:6].copy()
    joints[2, 16, 0] = np.inf
    with pytest.raises(ValueError, match=r"facing_rotation: frame 2: hips and shoulders give no across direction"):
        _t2m_skeleton().facing_rotation(joints, (2, 1, 17, 16))


# ---------------------------------------------------------------------------------------------------------------------
# BVH export: rotations


def test_shortest_arc_turns_a_onto_b_with_a_proper_rotation():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(50, 3))
    b = rng.normal(size=(50, 3))
    a /= np.linalg.norm(a, axis=-1, keepdims=True)
    b /= np.linalg.norm(b, axis=-1, keepdims=True)
    rot = shortest_arc(a, b)
    np.testing.assert_allclose(np.einsum("tij,tj->ti", rot, a), b, atol=1e-12)
    np.testing.assert_allclose(np.linalg.det(rot), 1.0, atol=1e-12)
    # Shortest: the rotation angle equals the angle between a and b.
    angle = np.arccos(np.clip((np.trace(rot, axis1=-2, axis2=-1) - 1) / 2, -1, 1))
    np.testing.assert_allclose(angle, np.arccos(np.clip(np.sum(a * b, -1), -1, 1)), atol=1e-7)


@pytest.mark.parametrize("a", [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.6, 0.8]])
def test_shortest_arc_between_opposite_vectors_is_a_half_turn(a):
    a = np.array(a)
    rot = shortest_arc(a, -a)
    np.testing.assert_allclose(rot @ a, -a, atol=1e-12)
    np.testing.assert_allclose(rot @ rot.T, np.eye(3), atol=1e-12)
    np.testing.assert_allclose(np.linalg.det(rot), 1.0, atol=1e-12)


def test_best_fit_rotation_recovers_a_rotation_and_never_reflects():
    rest = np.array([[1.0, 0.0, 0.0], [0.0, 2.0, 0.0], [0.0, 0.0, 3.0]])
    rot = shortest_arc(np.array([1.0, 0.0, 0.0]), np.array([0.0, 0.6, 0.8])) @ \
        shortest_arc(np.array([0.0, 1.0, 0.0]), np.array([0.6, 0.0, 0.8]))
    current = (rest @ rot.T)[None]
    np.testing.assert_allclose(best_fit_rotation(rest, current)[0], rot, atol=1e-12)
    mirrored = current * np.array([-1.0, 1.0, 1.0])  # a reflection is not a rotation: the fit must stay proper
    fit = best_fit_rotation(rest, mirrored)[0]
    np.testing.assert_allclose(np.linalg.det(fit), 1.0, atol=1e-12)


def test_local_rotations_compose_down_the_tree_to_the_observed_bones():
    """For a rigidly turning body, the root rotation turns the first bone's rest offset onto the observed bone and
    the composed rotation of a joint with two children turns both children's offsets onto their bones (best fit,
    exact here); leaves keep the local identity."""
    rest = np.array([[0.0, 1.0, 0.0], [0.0, 1.5, 0.0], [0.0, 1.8, 0.2], [0.3, 1.6, 0.0]])
    angle = np.linspace(0.0, 1.2, 6)
    chain = _turned(np.broadcast_to(rest, (6, 4, 3)), angle) + angle[:, None, None] * np.array([0.5, 0.0, 0.0])
    pose = joints_to_bvh_motion(chain, [-1, 0, 1, 1])
    np.testing.assert_allclose(pose.root_positions, chain[:, 0])
    np.testing.assert_allclose(pose.offsets, [[0, 0, 0], [0, 0.5, 0], [0, 0.3, 0.2], [0.3, 0.1, 0]], atol=1e-12)
    identity = np.broadcast_to(np.eye(3), (6, 3, 3))
    np.testing.assert_allclose(pose.local_rotations[:, 2], identity, atol=1e-12)
    np.testing.assert_allclose(pose.local_rotations[:, 3], identity, atol=1e-12)
    root_rot = pose.local_rotations[:, 0]
    np.testing.assert_allclose(np.einsum("tij,j->ti", root_rot, pose.offsets[1]), chain[:, 1] - chain[:, 0],
                               atol=1e-9)
    global_1 = root_rot @ pose.local_rotations[:, 1]
    np.testing.assert_allclose(np.einsum("tij,kj->tki", global_1, pose.offsets[[2, 3]]),
                               chain[:, [2, 3]] - chain[:, 1:2], atol=1e-9)


# ---------------------------------------------------------------------------------------------------------------------
# BVH export: the file


def test_written_file_lists_every_frame_at_the_frame_time_of_the_rate(tmp_path):
    joints = _walk()[:7]
    write_bvh(tmp_path / "m.bvh", joints, fps=30)
    text = (tmp_path / "m.bvh").read_text()
    assert "\nFrames: 7\nFrame Time: 0.03333333\n" in text
    assert len(text.split("MOTION\n")[1].strip().splitlines()) == 2 + 7


def test_the_hierarchy_lists_children_in_joint_order_depth_first(tmp_path):
    """Joints are written parents first, each joint's children in their index order (SMPL-22: left hip before right
    hip before the spine), so the file's joint order is stable for tools that read joints by position."""
    write_bvh(tmp_path / "m.bvh", _walk()[:3], fps=20)
    names = [line.split()[1] for line in (tmp_path / "m.bvh").read_text().splitlines()
             if line.strip().startswith(("ROOT", "JOINT"))]
    assert names[:5] == ["pelvis", "left_hip", "left_knee", "left_ankle", "left_foot"]
    assert names.index("left_hip") < names.index("right_hip") < names.index("spine1")
    assert sorted(names) == sorted(SMPL22_JOINT_NAMES)


def test_a_root_is_written_with_a_zero_offset_and_positions_in_the_motion(tmp_path):
    joints = _walk()[:4] + np.array([5.0, 0.0, -2.0])
    write_bvh(tmp_path / "m.bvh", joints, fps=20)
    lines = (tmp_path / "m.bvh").read_text().splitlines()
    assert lines[1:4] == ["ROOT pelvis", "{", "  OFFSET 0.000000 0.000000 0.000000"]
    first = [float(v) for v in lines[lines.index("MOTION") + 3].split()[:3]]
    np.testing.assert_allclose(first, joints[0, 0], atol=1e-6)


@pytest.mark.parametrize("fps", [float("inf"), -float("inf")])
def test_write_bvh_refuses_an_infinite_frame_rate(tmp_path, fps):
    with pytest.raises(ValueError, match=rf"gen\.npy: fps {fps}; expected a positive frame rate"):
        write_bvh(tmp_path / "x.bvh", _walk()[:3], fps=fps, source="gen.npy")
    assert not (tmp_path / "x.bvh").exists()


def test_write_bvh_refuses_a_clip_without_frames(tmp_path):
    with pytest.raises(ValueError, match=r"gen\.npy: expected joints of shape \(T, J, 3\), got \(0, 22, 3\)"):
        write_bvh(tmp_path / "x.bvh", np.zeros((0, 22, 3)), fps=20, source="gen.npy")
    assert not (tmp_path / "x.bvh").exists()


def test_a_small_skeleton_round_trips_through_its_own_chain(tmp_path):
    """A chain whose joint indices are not in depth-first order (joint 1 hangs below joint 2) is written parents
    first and read back to the same positions."""
    rest = np.array([[0.0, 1.0, 0.0], [0.0, 1.6, 0.3], [0.0, 1.5, 0.0], [0.3, 1.0, 0.0]])
    angle = np.linspace(0.0, 1.0, 5)  # a rigid turn about +Y and a drift: bone lengths stay constant
    joints = _turned(np.broadcast_to(rest, (5, 4, 3)), angle) + angle[:, None, None] * np.array([1.0, 0.0, 0.5])
    write_bvh(tmp_path / "s.bvh", joints, fps=20, kinematic_chain=[[0, 2, 1], [0, 3]])
    bvh = parse_bvh(tmp_path / "s.bvh")
    assert bvh.joint_names == ["joint0", "joint2", "joint1", "joint3"]
    order = [bvh.joint_names.index(f"joint{j}") for j in range(4)]
    np.testing.assert_allclose(bvh_positions(bvh)[:, order], joints, atol=1e-5)


# ---------------------------------------------------------------------------------------------------------------------
# Skeleton


@pytest.mark.parametrize("chain,bad", [([[0, 1, 3]], r"\[3\]"), ([[0, 1, -1], [1, 2]], r"\[-1\]")])
def test_a_chain_naming_a_joint_beyond_the_skeleton_is_refused(chain, bad):
    """A chain index outside 0..J-1 is named (a negative one would otherwise wrap round to the last joint)."""
    with pytest.raises(ValueError, match=rf"Skeleton: kinematic chain names joints {bad}, beyond the 3 joints"):
        Skeleton(CHAIN3_RAW, chain)


def test_a_joint_with_two_parents_is_refused():
    """A joint reached from two different parents has no single bone; the later chain would silently win."""
    with pytest.raises(ValueError, match=r"Skeleton: joint 1 has two parents in the kinematic chain \(0 and 2\)"):
        Skeleton(CHAIN3_RAW, [[0, 1, 2], [2, 1]])


def test_a_chain_listing_a_bone_twice_is_accepted():
    """The same parent -> child bone in two chains is the same tree."""
    assert Skeleton(CHAIN3_RAW, [[0, 1, 2], [0, 1]]).parents == (-1, 0, 1)


def test_forward_kinematics_refuses_offsets_of_the_wrong_shape():
    skel = Skeleton(CHAIN3_RAW, [[0, 1, 2]])
    quat = np.zeros((1, 3, 4))
    quat[..., 0] = 1.0
    with pytest.raises(ValueError, match=r"forward_kinematics: expected offsets of shape \(3, 3\), got \(2, 3\)"):
        skel.forward_kinematics(quat, np.zeros((1, 3)), np.zeros((2, 3)))


def test_inverse_kinematics_from_root_refuses_a_single_pose():
    skel = Skeleton(CHAIN3_RAW, [[0, 1, 2]])
    pose = np.array([[0.0, 0.0, 0.0], [0.0, 1.0, 0.0], [1.0, 1.0, 0.0]])
    with pytest.raises(ValueError, match=r"inverse_kinematics: expected joints \(T, 3, 3\) and root quaternions "
                                         r"\(T, 4\), got \(3, 3\) and \(4,\)"):
        skel.inverse_kinematics_from_root(pose, np.array([1.0, 0.0, 0.0, 0.0]))


# ---------------------------------------------------------------------------------------------------------------------
# BVH export: joint names


def _names_with(index: int, name: str) -> list[str]:
    names = [f"j{i}" for i in range(22)]
    names[index] = name
    return names


@pytest.mark.parametrize("names, message", [
    (["j"] * 21, r"21 joint names for 22 joints"),
    # BVH names are single tokens: a name with whitespace (or none) gives a file that no reader opens.
    (_names_with(3, "left hip"), r"joint name 'left hip' \(joint 3\): expected one word without spaces"),
    (_names_with(3, ""), r"joint name '' \(joint 3\): expected one word without spaces"),
    (_names_with(3, "tab\tname"), r"joint name 'tab\\tname' \(joint 3\): expected one word without spaces"),
    # Two joints of one name cannot be told apart when the file is read back (a mapping picks joints by name).
    (_names_with(7, "j2"), r"joint names must be unique, repeated: \['j2'\]"),
])
def test_joint_names_a_bvh_reader_could_not_use_are_refused_naming_the_source(tmp_path, names, message):
    with pytest.raises(ValueError, match=rf"^gen\.npy: {message}; nothing written to .*x\.bvh$"):
        write_bvh(tmp_path / "x.bvh", _walk()[:4], fps=20, joint_names=names, source="gen.npy")
    assert not (tmp_path / "x.bvh").exists()


def test_custom_single_word_names_are_written_and_read_back(tmp_path):
    names = [f"Bone_{i:02d}" for i in range(22)]
    write_bvh(tmp_path / "x.bvh", _walk()[:4], fps=20, joint_names=names)
    assert sorted(parse_bvh(tmp_path / "x.bvh").joint_names) == names
