"""Motion representations: joints -> features and features -> joints.

Three layouts are supported (the per-dataset choice lives in ``utils.dataset_specs``):

- **HumanML3D** (263 dims for 22 joints, 251 for KIT's 21), built by ``extract_features`` exactly like the dataset's
  ``process_file``: retarget to a target skeleton, put on the floor, move frame 0's root to the xz origin, turn frame
  0 to face +Z, then per frame ``[root yaw velocity (1), root xz velocity (2), root height (1), ric (J-1)*3,
  cont6d (J-1)*6, local velocity J*3, foot contacts 4]`` for T-1 frames. ``recover_from_ric`` turns it back into joints.
- **essential** (MARDM, 67 / 64 dims): the first ``4 + (J-1)*3`` dims of the HumanML3D vector; ``recover_from_ric``
  reads only those, so both layouts give the same joints.
- **272** (MotionMillion, 22 joints, T frames): ``[root xz velocity (2), heading change as 6D (6), heading-free local
  positions (66), their velocities (66), local rotations as 6D (132)]``; ``recover_from_272`` integrates it back.

Feature extraction is numpy (float64 internally, float32 out); recovery accepts numpy arrays or torch tensors with any
leading batch dimensions and returns the input's type and dtype, so losses and renderers share it.
"""

from __future__ import annotations

from typing import NamedTuple, TypeVar

import numpy as np
import torch

from utils.dataset_specs import DatasetSpec
from utils.paramutil import (
    T2M_LEFT_HAND_CHAIN,
    T2M_RIGHT_HAND_CHAIN,
    T2M_TGT_OFFSETS,
    SkeletonSettings,
    get_skeleton_settings,
)
from utils.quaternion import (
    matrix_to_rot6d,
    qbetween,
    qinv,
    qmul,
    qrot,
    quaternion_to_cont6d,
    quaternion_to_matrix,
    rot6d_to_matrix,
)
from utils.skeleton import Skeleton

Array = TypeVar("Array", np.ndarray, torch.Tensor)

_UP = np.array([0.0, 1.0, 0.0])
_FORWARD = np.array([0.0, 0.0, 1.0])
_XZ = np.array([1.0, 0.0, 1.0])
VECTOR_272_JOINTS = 22


# ---------------------------------------------------------------------------------------------------------------------
# Layout sizes
# ---------------------------------------------------------------------------------------------------------------------

def essential_dim(joints_num: int) -> int:
    """Width of the essential layout: root (4) + ric ((J-1)*3); 67 for 22 joints, 64 for 21."""
    return 4 + (joints_num - 1) * 3


def humanml3d_dim(joints_num: int) -> int:
    """Width of the HumanML3D layout: 263 for 22 joints, 251 for 21."""
    return 4 + (joints_num - 1) * 9 + joints_num * 3 + 4


def vector272_dim(joints_num: int = VECTOR_272_JOINTS) -> int:
    """Width of the MotionMillion layout: 8 + 12 J (272 for 22 joints)."""
    return 8 + 12 * joints_num


def _check_joints_num(joints_num: int, what: str) -> int:
    if isinstance(joints_num, bool) or not isinstance(joints_num, (int, np.integer)) or joints_num < 2:
        raise ValueError(f"{what}: joints_num must be an integer >= 2, got {joints_num!r}")
    return int(joints_num)


def _check_features(features: Array, widths: tuple[int, ...], what: str) -> None:
    if features.ndim < 2 or features.shape[-1] not in widths:
        expected = " or ".join(f"(..., T, {w})" for w in widths)
        raise ValueError(f"{what}: expected features of shape {expected}, got {tuple(features.shape)}")


# ---------------------------------------------------------------------------------------------------------------------
# Joints -> HumanML3D features
# ---------------------------------------------------------------------------------------------------------------------

class ProcessedMotion(NamedTuple):
    """Output of ``process_joints`` for T input frames and J joints.

    features: (T-1, D) float32 HumanML3D features (D = 263 for 22 joints, 251 for 21).
    uniform_positions: (T, J, 3) joints retargeted to the target skeleton.
    global_positions: (T, J, 3) after floor, xz-origin and initial +Z facing normalisation.
    ric_positions: (T, J, 3) root-relative in xz, rotated by each frame's root rotation (rows [:-1] of joints 1.. are
        the ric block of the features).
    """

    features: np.ndarray
    uniform_positions: np.ndarray
    global_positions: np.ndarray
    ric_positions: np.ndarray


def _check_input_joints(joints: np.ndarray, joints_num: int, what: str) -> np.ndarray:
    joints = np.asarray(joints)
    if joints.ndim != 3 or joints.shape[1:] != (joints_num, 3) or joints.shape[0] < 2:
        raise ValueError(f"{what}: expected joints of shape (T, {joints_num}, 3) with T >= 2, got {joints.shape}")
    if not np.issubdtype(joints.dtype, np.number) or not np.all(np.isfinite(joints)):
        raise ValueError(f"{what}: joints must be finite numbers")
    return joints.astype(np.float64)


def _resolve_target(tgt_offsets: np.ndarray | None, settings: SkeletonSettings, what: str) -> np.ndarray:
    if tgt_offsets is None:
        if settings.name != "t2m":
            raise ValueError(f"{what}: skeleton {settings.name!r} has no built-in target skeleton; pass tgt_offsets "
                             f"of shape ({settings.joints_num}, 3)")
        return T2M_TGT_OFFSETS.astype(np.float64)
    tgt_offsets = np.asarray(tgt_offsets, dtype=np.float64)
    if tgt_offsets.shape != (settings.joints_num, 3):
        raise ValueError(f"{what}: expected tgt_offsets of shape ({settings.joints_num}, 3) for skeleton "
                         f"{settings.name!r}, got {tgt_offsets.shape}")
    if not np.all(np.isfinite(tgt_offsets)):
        raise ValueError(f"{what}: tgt_offsets must be finite numbers")
    # A zero offset puts a joint on its parent, which the inverse kinematics of the feature pass cannot handle.
    zero = np.flatnonzero(~(np.linalg.norm(tgt_offsets[1:], axis=-1) > 0))
    if zero.size:
        raise ValueError(f"{what}: tgt_offsets row of joint {int(zero[0]) + 1} is zero; expected a bone of non-zero "
                         f"length for every joint but the root")
    return tgt_offsets


def uniform_skeleton(joints: np.ndarray, tgt_offsets: np.ndarray | None = None, skeleton: str = "t2m") -> np.ndarray:
    """Retarget joints (T, J, 3) to the bone lengths of tgt_offsets (J, 3) -> (T, J, 3).

    ``tgt_offsets`` defaults to the official HumanML3D target skeleton (t2m only).
    Inverse kinematics on the source skeleton (bone lengths measured on frame 0), forward kinematics with the target
    offsets; the root trajectory is scaled by the ratio of the two lower-leg lengths (``l_idx1``, ``l_idx2``).
    """
    settings = get_skeleton_settings(skeleton)
    joints = _check_input_joints(joints, settings.joints_num, "uniform_skeleton")
    tgt_offsets = _resolve_target(tgt_offsets, settings, "uniform_skeleton")
    return _uniform_skeleton(joints, tgt_offsets, settings)


def _uniform_skeleton(joints: np.ndarray, tgt_offsets: np.ndarray, settings: SkeletonSettings) -> np.ndarray:
    skel = Skeleton(settings.raw_offsets, settings.kinematic_chain)
    src_offsets = skel.get_offsets_joints(joints[0])
    legs = [settings.l_idx1, settings.l_idx2]
    # Raw offsets are axis-aligned unit vectors, so the largest component is the bone length.
    src_leg = np.abs(src_offsets[legs]).max(axis=-1).sum()
    tgt_leg = np.abs(tgt_offsets[legs]).max(axis=-1).sum()
    quat = skel.inverse_kinematics(joints, settings.face_joint_indx)
    return skel.forward_kinematics(quat, joints[:, 0] * (tgt_leg / src_leg), offsets=tgt_offsets)


def _initial_facing(pose: np.ndarray, face_joint_indx: tuple[int, int, int, int]) -> np.ndarray:
    """Quaternion (4,) turning one pose (J, 3) to face +Z; across = (r_hip - l_hip) + (r_sdr - l_sdr)."""
    r_hip, l_hip, r_sdr, l_sdr = face_joint_indx
    across = (pose[r_hip] - pose[l_hip]) + (pose[r_sdr] - pose[l_sdr])
    forward = np.cross(_UP, across / np.linalg.norm(across))
    forward = forward / np.linalg.norm(forward)
    return qbetween(forward, _FORWARD)


def feet_threshold(skeleton: str = "t2m", fps: float | None = None) -> float:
    """The contact threshold (squared foot displacement per frame) of ``skeleton`` for motion at ``fps``.

    The skeleton's ``feet_thre`` is per frame of its dataset (20 fps for HumanML3D, 12.5 for KIT-ML), so it stands
    for a foot speed; at another frame rate a frame spans another time, and the same speed keeps the threshold
    ``feet_thre * (dataset fps / fps)^2``. None or the dataset's own rate gives ``feet_thre`` itself.
    """
    settings = get_skeleton_settings(skeleton)
    if fps is None or fps == settings.fps:
        return settings.feet_thre
    if not (np.isfinite(fps) and fps > 0):
        raise ValueError(f"feet_threshold: fps must be a positive frame rate, got {fps}")
    return settings.feet_thre * (settings.fps / fps) ** 2


def process_joints(joints: np.ndarray, tgt_offsets: np.ndarray | None = None, skeleton: str = "t2m",
                   feet_thre: float | None = None, fps: float | None = None) -> ProcessedMotion:
    """The HumanML3D ``process_file`` pipeline with its intermediates.

    joints: (T, J, 3), y up, metres for "t2m" (J = 22) or millimetres for "kit" (J = 21), at ``fps``.
    tgt_offsets: (J, 3) target skeleton; default the official HumanML3D one (t2m only).
    feet_thre: squared per-frame foot displacement below which a foot is in contact; default
        ``feet_threshold(skeleton, fps)``, the dataset's threshold for the same foot speed at ``fps`` (None: the
        dataset's own frame rate).
    """
    settings = get_skeleton_settings(skeleton)
    joints = _check_input_joints(joints, settings.joints_num, "process_joints")
    tgt_offsets = _resolve_target(tgt_offsets, settings, "process_joints")
    feet_thre = feet_threshold(skeleton, fps) if feet_thre is None else float(feet_thre)
    if not (np.isfinite(feet_thre) and feet_thre > 0):
        raise ValueError(f"process_joints: feet_thre must be a positive finite squared displacement per frame "
                         f"(default {settings.feet_thre} for skeleton {settings.name!r}), got {feet_thre}")

    uniform = _uniform_skeleton(joints, tgt_offsets, settings)
    positions = uniform.copy()
    positions[..., 1] -= positions[..., 1].min()
    positions = positions - positions[0, 0] * _XZ
    positions = qrot(_initial_facing(positions[0], settings.face_joint_indx), positions)
    global_positions = positions

    # Foot contacts: squared displacement between consecutive frames, (T-1, 2) per side.
    def contacts(fid: tuple[int, int]) -> np.ndarray:
        step = positions[1:, list(fid)] - positions[:-1, list(fid)]
        return ((step ** 2).sum(-1) < feet_thre).astype(np.float64)

    feet_l, feet_r = contacts(settings.fid_l), contacts(settings.fid_r)

    skel = Skeleton(settings.raw_offsets, settings.kinematic_chain)
    quat = skel.inverse_kinematics(positions, settings.face_joint_indx, smooth_forward=True)
    cont6d = quaternion_to_cont6d(quat)
    r_rot = quat[:, 0]
    root_velocity = qrot(r_rot[1:], positions[1:, 0] - positions[:-1, 0])
    r_velocity = qmul(r_rot[1:], qinv(r_rot[:-1]))

    ric = positions - positions[:, :1] * _XZ
    ric = qrot(r_rot[:, None], ric)

    n = len(positions) - 1
    # y component of a yaw quaternion is sin(half angle): the stored angular velocity is half the yaw change, which
    # recover_root_rot_pos undoes by building (cos a, 0, sin a, 0).
    root_data = np.concatenate([np.arcsin(np.clip(r_velocity[:, 2:3], -1.0, 1.0)), root_velocity[:, [0, 2]],
                                ric[:-1, 0, 1:2]], axis=-1)
    local_vel = qrot(r_rot[:-1, None], global_positions[1:] - global_positions[:-1])
    features = np.concatenate([
        root_data,
        ric[:-1, 1:].reshape(n, -1),
        cont6d[:-1, 1:].reshape(n, -1),
        local_vel.reshape(n, -1),
        feet_l,
        feet_r,
    ], axis=-1)
    return ProcessedMotion(features.astype(np.float32), uniform, global_positions, ric)


def extract_features(joints: np.ndarray, tgt_offsets: np.ndarray | None = None, skeleton: str = "t2m",
                     feet_thre: float | None = None, fps: float | None = None) -> np.ndarray:
    """HumanML3D features (T-1, D) float32 of joints (T, J, 3) at ``fps``; D = 263 for "t2m", 251 for "kit".

    See ``process_joints`` for the arguments.
    """
    return process_joints(joints, tgt_offsets, skeleton, feet_thre, fps).features


def initial_placement(joints: np.ndarray, tgt_offsets: np.ndarray | None = None, skeleton: str = "t2m",
                      own_frames: int | None = None) -> tuple[float, np.ndarray]:
    """Where ``process_joints`` takes a motion from: ``(yaw, offset)`` that put a motion in its canonical frame
    (frame 0's root at the xz origin facing +Z, the floor at y = 0) back where ``joints`` (T, J, 3) stands.

    ``yaw`` (radians, about +Y; 0 faces +Z, pi / 2 faces +X) is frame 0's facing as ``process_joints`` measures it,
    on the retargeted pose; ``offset`` (3,) is ``joints``' own frame-0 root xz and the height of the canonical floor,
    set so that the lowest joint of the first ``own_frames`` frames (default all; later ones are extrapolated, as
    ``utils.representation.joints_to_features`` adds one) lands on theirs: ``process_joints`` floors the lowest
    retargeted joint of every frame it reads, which for a motion that ends going down is on an extrapolated frame.
    ``place_canonical(canonical, yaw, offset)`` turns and moves canonical joints there. The retargeting scales the root
    path by the ratio of the leg lengths, so later frames of a source whose skeleton is not the target's drift from
    it by that ratio; frame 0's root xz and the floor are matched exactly.
    """
    settings = get_skeleton_settings(skeleton)
    joints = _check_input_joints(joints, settings.joints_num, "initial_placement")
    tgt_offsets = _resolve_target(tgt_offsets, settings, "initial_placement")
    own = len(joints) if own_frames is None else int(own_frames)
    if not 1 <= own <= len(joints):
        raise ValueError(f"initial_placement: own_frames must be between 1 and the {len(joints)} frames, got "
                         f"{own_frames}")
    uniform = _uniform_skeleton(joints, tgt_offsets, settings)
    facing = qrot(qinv(_initial_facing(uniform[0], settings.face_joint_indx)), _FORWARD)
    floor = joints[:own, :, 1].min() - (uniform[:own, :, 1].min() - uniform[..., 1].min())
    offset = np.array([joints[0, 0, 0], floor, joints[0, 0, 2]])
    return float(np.arctan2(facing[0], facing[2])), offset


def place_canonical(joints: np.ndarray, yaw: float, offset: np.ndarray) -> np.ndarray:
    """Joints (..., J, 3) in a canonical frame turned by ``yaw`` (radians about +Y, +Z towards +X) and moved by
    ``offset`` (3,): the inverse of ``process_joints``' normalisation with ``initial_placement``'s values. Keeps the
    input's dtype."""
    joints = np.asarray(joints)
    c, s = np.cos(yaw), np.sin(yaw)
    x, z = joints[..., 0], joints[..., 2]
    out = np.stack([c * x + s * z, joints[..., 1], -s * x + c * z], axis=-1) + np.asarray(offset)
    return out.astype(joints.dtype, copy=False)


# ---------------------------------------------------------------------------------------------------------------------
# HumanML3D / essential features -> joints
# ---------------------------------------------------------------------------------------------------------------------

def _as_tensor(x: Array, what: str) -> tuple[torch.Tensor, bool]:
    """(tensor, was_numpy); arrays and tensors keep their float dtype (integers become float64)."""
    if isinstance(x, torch.Tensor):
        return (x if x.is_floating_point() else x.to(torch.float64)), False
    if isinstance(x, np.ndarray):
        if not np.issubdtype(x.dtype, np.floating):
            x = x.astype(np.float64)
        return torch.from_numpy(np.array(x)), True
    raise ValueError(f"{what}: expected a numpy array or torch tensor, got {type(x).__name__}")


def _back(x: torch.Tensor, was_numpy: bool) -> Array:
    return x.numpy() if was_numpy else x


def _root_rot_pos(data: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    rot_vel = data[..., 0]
    # Frame t's yaw is the sum of the velocities of frames < t.
    angle = torch.cat([torch.zeros_like(rot_vel[..., :1]), torch.cumsum(rot_vel[..., :-1], dim=-1)], dim=-1)
    zeros = torch.zeros_like(angle)
    r_rot_quat = torch.stack([torch.cos(angle), zeros, torch.sin(angle), zeros], dim=-1)
    # Frame t's displacement is stored in row t-1 (the velocity of the pair (t-1, t)).
    step = torch.cat([torch.zeros_like(data[..., :1, 1:3]), data[..., :-1, 1:3]], dim=-2)
    step = torch.stack([step[..., 0], torch.zeros_like(step[..., 0]), step[..., 1]], dim=-1)
    r_pos = torch.cumsum(qrot(qinv(r_rot_quat), step), dim=-2)
    r_pos = torch.stack([r_pos[..., 0], data[..., 3], r_pos[..., 2]], dim=-1)
    return r_rot_quat, r_pos


def recover_root_rot_pos(features: Array) -> tuple[Array, Array]:
    """Root yaw quaternions (..., T, 4) and root positions (..., T, 3) from HumanML3D-style features (..., T, D>=4)."""
    data, was_numpy = _as_tensor(features, "recover_root_rot_pos")
    if data.ndim < 2 or data.shape[-1] < 4:
        raise ValueError(f"recover_root_rot_pos: expected features of shape (..., T, D) with D >= 4, "
                         f"got {tuple(data.shape)}")
    r_rot_quat, r_pos = _root_rot_pos(data)
    return _back(r_rot_quat, was_numpy), _back(r_pos, was_numpy)


def recover_from_ric(features: Array, joints_num: int) -> Array:
    """Joint positions (..., T, J, 3) from HumanML3D (..., T, 12J-1) or essential (..., T, 4+3(J-1)) features.

    Integrates the root yaw and xz velocity, then un-rotates the root-relative ric block and adds the root xz.
    """
    joints_num = _check_joints_num(joints_num, "recover_from_ric")
    data, was_numpy = _as_tensor(features, "recover_from_ric")
    _check_features(data, (humanml3d_dim(joints_num), essential_dim(joints_num)),
                    f"recover_from_ric (joints_num={joints_num})")
    r_rot_quat, r_pos = _root_rot_pos(data)
    ric = data[..., 4:essential_dim(joints_num)].reshape(data.shape[:-1] + (joints_num - 1, 3))
    positions = qrot(qinv(r_rot_quat)[..., None, :], ric)
    root_xz = torch.stack([r_pos[..., 0], torch.zeros_like(r_pos[..., 0]), r_pos[..., 2]], dim=-1)
    positions = torch.cat([r_pos[..., None, :], positions + root_xz[..., None, :]], dim=-2)
    return _back(positions, was_numpy)


def to_essential(features: Array, joints_num: int) -> Array:
    """The essential subset (..., T, 4+3(J-1)) of HumanML3D features (..., T, 12J-1); essential input is returned."""
    joints_num = _check_joints_num(joints_num, "to_essential")
    _check_features(features, (humanml3d_dim(joints_num), essential_dim(joints_num)),
                    f"to_essential (joints_num={joints_num})")
    return features[..., :essential_dim(joints_num)]


# ---------------------------------------------------------------------------------------------------------------------
# Mirroring and resampling
# ---------------------------------------------------------------------------------------------------------------------

def swap_left_right(joints: np.ndarray) -> np.ndarray:
    """Mirror joints (..., J, 3) as HumanML3D builds its ``M`` files: negate x and swap left/right joints.

    J = 22 (t2m), 52 (t2m body + hands) or 21 (KIT). Apply before ``extract_features``.
    """
    joints = np.asarray(joints)
    settings = {22: "t2m", 52: "t2m", 21: "kit"}
    if joints.ndim < 2 or joints.shape[-1] != 3 or joints.shape[-2] not in settings:
        raise ValueError(f"swap_left_right: expected joints of shape (..., J, 3) with J in (22, 52, 21), "
                         f"got {joints.shape}")
    skel = get_skeleton_settings(settings[joints.shape[-2]])
    right, left = list(skel.right_chain), list(skel.left_chain)
    if joints.shape[-2] == 52:
        right += list(T2M_RIGHT_HAND_CHAIN)
        left += list(T2M_LEFT_HAND_CHAIN)
    mirrored = joints * np.array([-1, 1, 1], dtype=joints.dtype)
    mirrored[..., right + left, :] = mirrored[..., left + right, :]
    return mirrored


def joints_fps_resample(joints: np.ndarray, src_fps: float, dst_fps: float) -> np.ndarray:
    """Resample joints (T, ...) from src_fps to dst_fps by linear interpolation between time stamps -> (T', ...).

    Frame i sits at i / fps; the output covers [0, (T-1)/src_fps], so T' = floor((T-1) * dst_fps / src_fps) + 1.
    """
    joints = np.asarray(joints)
    if joints.ndim < 1 or joints.shape[0] < 1:
        raise ValueError(f"joints_fps_resample: expected joints of shape (T, ...) with T >= 1, got {joints.shape}")
    if not (np.isfinite(src_fps) and np.isfinite(dst_fps) and src_fps > 0 and dst_fps > 0):
        raise ValueError(f"joints_fps_resample: frame rates must be positive, got src_fps={src_fps}, "
                         f"dst_fps={dst_fps}")
    dtype = joints.dtype if np.issubdtype(joints.dtype, np.floating) else np.float64
    frames = joints.shape[0]
    # The small slack keeps the last frame when (T-1) * dst / src is an integer up to rounding.
    count = int(np.floor((frames - 1) * dst_fps / src_fps + 1e-9)) + 1
    src_pos = np.minimum(np.arange(count) * (src_fps / dst_fps), frames - 1)
    lo = np.floor(src_pos).astype(np.int64)
    hi = np.minimum(lo + 1, frames - 1)
    frac = (src_pos - lo).reshape((count,) + (1,) * (joints.ndim - 1))
    return (joints[lo] * (1.0 - frac) + joints[hi] * frac).astype(dtype)


# ---------------------------------------------------------------------------------------------------------------------
# 272-dim MotionMillion representation
# ---------------------------------------------------------------------------------------------------------------------

def _rot_yaw(angle: np.ndarray) -> np.ndarray:
    """Rotation matrices (..., 3, 3) about +Y: [[c, 0, s], [0, 1, 0], [-s, 0, c]]."""
    c, s = np.cos(angle), np.sin(angle)
    zeros, ones = np.zeros_like(angle), np.ones_like(angle)
    return np.stack([c, zeros, s, zeros, ones, zeros, -s, zeros, c], axis=-1).reshape(angle.shape + (3, 3))


def _facing_angle(positions: np.ndarray, settings: SkeletonSettings) -> np.ndarray:
    """Yaw of each frame's facing direction cross(up, (r_hip - l_hip) + (r_sdr - l_sdr)): (T, J, 3) -> (T,)."""
    r_hip, l_hip, r_sdr, l_sdr = settings.face_joint_indx
    across = (positions[:, r_hip] - positions[:, l_hip]) + (positions[:, r_sdr] - positions[:, l_sdr])
    forward = np.cross(_UP, across)
    return np.arctan2(forward[:, 0], forward[:, 2])


def normalize_joints_272(joints: np.ndarray) -> np.ndarray:
    """Joints (T, 22, 3) on the floor, frame 0's root at the xz origin and frame 0 facing +Z -> (T, 22, 3).

    The reference 272 pipeline starts from motions already turned to face +Z; ``extract_features_272`` applies this
    first and ``recover_from_272`` gives these positions back.
    """
    settings = get_skeleton_settings("t2m")
    joints = _check_input_joints(joints, settings.joints_num, "normalize_joints_272")
    origin = joints[0, 0].copy()
    origin[1] = joints[..., 1].min()
    positions = joints - origin
    return positions @ _rot_yaw(-_facing_angle(positions[:1], settings)[0]).T


def extract_features_272(joints: np.ndarray, tgt_offsets: np.ndarray | None = None) -> np.ndarray:
    """MotionMillion 272-dim features (T, 272) float32 of joints (T, 22, 3) in metres, y up, any frame rate.

    The motion is first normalised by ``normalize_joints_272`` (floor, frame-0 root at the xz origin, frame 0 facing
    +Z). The reference takes the heading and the local rotations from SMPL parameters; here they come from the joint
    positions: the heading is the yaw of the facing direction cross(up, (r_hip - l_hip) + (r_shoulder - l_shoulder))
    and the rotations are the inverse-kinematics quaternions of ``utils.skeleton`` (HumanML3D convention, not SMPL's)
    computed on the heading-free positions with an identity root, so the root rotation block is the identity. With
    ``tgt_offsets`` (22, 3) the joints are first retargeted by ``uniform_skeleton``. Frame 0 has zero velocities and
    an identity heading change.
    """
    settings = get_skeleton_settings("t2m")
    joints = _check_input_joints(joints, settings.joints_num, "extract_features_272")
    if tgt_offsets is not None:
        joints = _uniform_skeleton(joints, _resolve_target(tgt_offsets, settings, "extract_features_272"), settings)
    positions = normalize_joints_272(joints)
    frames, njoint = positions.shape[:2]
    root_step = positions[1:, 0] - positions[:-1, 0]

    # The reference's heading -atan2(R[0, 2], R[2, 2]) of a root rotation facing yaw a is -a; rot_yaw(heading)
    # removes it.
    heading = -_facing_angle(positions, settings)
    heading_rot = _rot_yaw(heading)
    local = positions - positions[:, :1] * _XZ
    local = np.einsum("tij,tkj->tki", heading_rot, local)
    skel = Skeleton(settings.raw_offsets, settings.kinematic_chain)
    identity = np.broadcast_to(np.array([1.0, 0.0, 0.0, 0.0]), (frames, 4))
    rotations = quaternion_to_matrix(skel.inverse_kinematics_from_root(local, identity))

    features = np.zeros((frames, vector272_dim(njoint)))
    features[1:, 0:2] = np.einsum("tij,tj->ti", heading_rot[:-1], root_step)[:, [0, 2]]
    features[0, 2:8] = (1, 0, 0, 0, 1, 0)
    features[1:, 2:8] = matrix_to_rot6d(_rot_yaw(heading[1:] - heading[:-1]))
    features[:, 8:8 + 3 * njoint] = local.reshape(frames, -1)
    features[1:, 8 + 3 * njoint:8 + 6 * njoint] = (local[1:] - local[:-1]).reshape(frames - 1, -1)
    features[:, 8 + 6 * njoint:] = matrix_to_rot6d(rotations).reshape(frames, -1)
    return features.astype(np.float32)


def _accumulate_rotations(relative: torch.Tensor) -> torch.Tensor:
    """Prefix products R_t = rel_t @ R_{t-1} (R_0 = rel_0) over dim -3 of (..., T, 3, 3).

    A log-depth scan: after the step with offset s, entry t holds the product over frames (t - 2s, t].
    """
    total = relative
    frames = relative.shape[-3]
    step = 1
    while step < frames:
        total = torch.cat([total[..., :step, :, :], total[..., step:, :, :] @ total[..., :-step, :, :]], dim=-3)
        step *= 2
    return total


def recover_from_272(features: Array, joints_num: int = VECTOR_272_JOINTS) -> Array:
    """Joint positions (..., T, J, 3) from 272-dim features (..., T, 8 + 12J) (``recover_from_local_position``).

    Accumulates the heading changes, un-rotates the local positions, integrates the root xz velocity (row t rotated
    by frame t-1's heading) and adds it to every joint.
    """
    joints_num = _check_joints_num(joints_num, "recover_from_272")
    data, was_numpy = _as_tensor(features, "recover_from_272")
    _check_features(data, (vector272_dim(joints_num),), f"recover_from_272 (joints_num={joints_num})")
    heading = _accumulate_rotations(rot6d_to_matrix(data[..., 2:8]))
    inv_heading = heading.transpose(-1, -2)
    local = data[..., 8:8 + 3 * joints_num].reshape(data.shape[:-1] + (joints_num, 3))
    positions = (inv_heading[..., None, :, :] @ local[..., None]).squeeze(-1)

    zeros = torch.zeros_like(data[..., 0])
    velocity = torch.stack([data[..., 0], zeros, data[..., 1]], dim=-1)
    rotated = (inv_heading[..., :-1, :, :] @ velocity[..., 1:, :, None]).squeeze(-1)
    translation = torch.cumsum(torch.cat([velocity[..., :1, :], rotated], dim=-2), dim=-2)
    root_xz = torch.stack([translation[..., 0], zeros, translation[..., 2]], dim=-1)
    return _back(positions + root_xz[..., None, :], was_numpy)


# ---------------------------------------------------------------------------------------------------------------------
# Dispatch on the dataset's representation
# ---------------------------------------------------------------------------------------------------------------------

def features_to_joints(features: Array, spec: DatasetSpec) -> Array:
    """Joint positions (..., T, J, 3) of de-normalised features (..., T, D) in ``spec``'s representation."""
    widths = tuple(dict.fromkeys((spec.dim_pose, spec.file_dim)))
    rep = spec.representation
    if rep in ("humanml3d", "essential"):
        _check_features(features, widths, f"features_to_joints (dataset {spec.name!r}, {rep})")
        return recover_from_ric(features, spec.joints_num)
    if rep == "vector_272":
        _check_features(features, widths, f"features_to_joints (dataset {spec.name!r}, {rep})")
        return recover_from_272(features, spec.joints_num)
    if rep == "smplx_rot6d":
        raise ValueError(f"features_to_joints: dataset {spec.name!r} stores SMPL-X joint rotations "
                         f"({spec.dim_pose} dims); turning them into joint positions needs SMPL-X forward kinematics "
                         "with the body model, which is not available in this project")
    raise ValueError(f"features_to_joints: dataset {spec.name!r} has unknown representation {rep!r}; expected one of "
                     "'humanml3d', 'essential', 'vector_272', 'smplx_rot6d'")
