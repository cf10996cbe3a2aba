"""Joint-position skeleton: bone offsets, inverse kinematics to per-joint quaternions, forward kinematics.

Conventions (HumanML3D ``common/skeleton.py``): a skeleton is a list of raw offset directions (J, 3) plus kinematic
chains. The quaternion stored at joint ``j`` rotates the bone from its parent to ``j``, relative to the rotation
accumulated along ``j``'s chain; every chain, including the arm chains that start at the spine, starts from the root
quaternion. The root quaternion is the rotation that turns the body's facing direction onto +Z. Forward kinematics
from these quaternions and any bone lengths reproduces the bone directions exactly.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.ndimage import gaussian_filter1d

from utils.quaternion import qbetween, qinv, qmul, qrot

# Smoothing of the facing direction in the feature pass (HumanML3D ``smooth_forward``): sigma in frames.
FORWARD_SMOOTH_SIGMA = 20.0
_UP = np.array([0.0, 1.0, 0.0])
_FORWARD = np.array([0.0, 0.0, 1.0])
_MIN_NORM = 1e-9  # a facing vector shorter than this is rounding noise, not a direction


def _checked_norm(vectors: np.ndarray, problem: str, face_joint_idx: Sequence[int]) -> np.ndarray:
    """Norms (T, 1) of ``vectors`` (T, 3); ``ValueError`` naming the first frame where one is zero (below rounding,
    ``_MIN_NORM``) or non-finite."""
    norm = np.linalg.norm(vectors, axis=-1, keepdims=True)
    bad = ~(norm[:, 0] > _MIN_NORM) | ~np.isfinite(norm[:, 0])
    if bad.any():
        raise ValueError(f"Skeleton.facing_rotation: frame {int(np.argmax(bad))}: {problem} (face joints "
                         f"{tuple(face_joint_idx)}); expected a body whose hips and shoulders span a direction")
    return norm


class Skeleton:
    """Kinematic tree over raw offset directions.

    raw_offsets: (J, 3) unit bone directions in the rest pose (row 0, the root, is zero).
    kinematic_chain: chains of joint indices, each starting at an already placed joint.
    """

    def __init__(self, raw_offsets: np.ndarray, kinematic_chain: Sequence[Sequence[int]]) -> None:
        self.raw_offsets = np.asarray(raw_offsets, dtype=np.float64)
        if self.raw_offsets.ndim != 2 or self.raw_offsets.shape[1] != 3:
            raise ValueError(f"Skeleton: raw_offsets must have shape (J, 3), got {self.raw_offsets.shape}")
        self.kinematic_chain = tuple(tuple(int(j) for j in chain) for chain in kinematic_chain)
        # A negative index would wrap round to the last joints; one past the end fails deep in the IK.
        beyond = sorted({j for chain in self.kinematic_chain for j in chain if not 0 <= j < len(self.raw_offsets)})
        if beyond:
            raise ValueError(f"Skeleton: kinematic chain names joints {beyond}, beyond the {len(self.raw_offsets)} "
                             "joints")
        parents = [-1] * len(self.raw_offsets)
        for chain in self.kinematic_chain:
            for parent, child in zip(chain[:-1], chain[1:]):
                if parents[child] not in (-1, parent):
                    # The later chain would silently replace the bone (or close a loop).
                    raise ValueError(f"Skeleton: joint {child} has two parents in the kinematic chain "
                                     f"({parents[child]} and {parent})")
                parents[child] = parent
        missing = [j for j in range(1, len(parents)) if parents[j] < 0]
        if missing:
            raise ValueError(f"Skeleton: joints {missing} are in no kinematic chain")
        self.parents = tuple(parents)
        self.offsets: np.ndarray | None = None

    @property
    def njoints(self) -> int:
        return len(self.raw_offsets)

    def _check_joints(self, joints: np.ndarray, what: str) -> np.ndarray:
        joints = np.asarray(joints, dtype=np.float64)
        if joints.ndim < 2 or joints.shape[-2:] != (self.njoints, 3):
            raise ValueError(f"{what}: expected joints of shape (..., {self.njoints}, 3), got {joints.shape}")
        return joints

    def bone_lengths(self, joints: np.ndarray) -> np.ndarray:
        """Length of each joint's bone to its parent (root 0). joints: (..., J, 3) -> (..., J)."""
        joints = self._check_joints(joints, "Skeleton.bone_lengths")
        parent_idx = np.array([max(p, 0) for p in self.parents])
        return np.linalg.norm(joints - joints[..., parent_idx, :], axis=-1)

    def get_offsets_joints(self, joints: np.ndarray) -> np.ndarray:
        """Offsets (J, 3) = raw direction x bone length measured on one pose joints (J, 3); also kept as ``offsets``."""
        joints = self._check_joints(joints, "Skeleton.get_offsets_joints")
        if joints.ndim != 2:
            raise ValueError(f"Skeleton.get_offsets_joints: expected one pose ({self.njoints}, 3), got {joints.shape}")
        self.offsets = self.raw_offsets * self.bone_lengths(joints)[:, None]
        return self.offsets

    def set_offsets(self, offsets: np.ndarray) -> None:
        """Use offsets (J, 3) for forward kinematics."""
        offsets = np.asarray(offsets, dtype=np.float64)
        if offsets.shape != (self.njoints, 3):
            raise ValueError(f"Skeleton.set_offsets: expected offsets of shape ({self.njoints}, 3), "
                             f"got {offsets.shape}")
        self.offsets = offsets

    def _check_bones(self, joints: np.ndarray) -> None:
        """Raise ``ValueError`` naming the first joint that lies on its parent (its bone has no direction)."""
        lengths = self.bone_lengths(joints)[..., 1:]
        if not np.all(lengths > 0):
            joint = 1 + int(np.argwhere(~(lengths > 0))[0, -1])
            raise ValueError(f"Skeleton.inverse_kinematics: bone of joint {joint} has zero (or non-finite) length; "
                             "every joint must differ from its parent")

    def facing_rotation(self, joints: np.ndarray, face_joint_idx: Sequence[int],
                        smooth_forward: bool = False) -> np.ndarray:
        """Root quaternions (T, 4) turning each frame's facing direction onto +Z, as the HumanML3D IK computes them.

        joints: (T, J, 3). ``face_joint_idx`` is passed as (r_hip, l_hip, r_shoulder, l_shoulder) but, as in the
        reference, unpacked in a different order, so the "across" vector is
        ``(j[idx1] - j[idx0]) + (j[idx2] - j[idx3])``: hips left-minus-right plus shoulders right-minus-left, about
        shoulder width minus hip width. Kept so the 263-dim features match the released dataset. With
        ``smooth_forward`` the forward vectors are Gaussian-smoothed over time (sigma 20 frames, edges repeated)
        before normalisation. Frame 0 is forced to the identity.
        """
        joints = self._check_joints(joints, "Skeleton.facing_rotation")
        if joints.ndim != 3:
            raise ValueError(f"Skeleton.facing_rotation: expected joints (T, {self.njoints}, 3), got {joints.shape}")
        i0, i1, i2, i3 = face_joint_idx
        across = (joints[:, i1] - joints[:, i0]) + (joints[:, i2] - joints[:, i3])
        across = across / _checked_norm(across, "hips and shoulders give no across direction", face_joint_idx)
        forward = np.cross(_UP, across)
        if smooth_forward:
            forward = gaussian_filter1d(forward, FORWARD_SMOOTH_SIGMA, axis=0, mode="nearest")
        forward = forward / _checked_norm(forward, "the body's across direction is vertical, so it faces no way",
                                          face_joint_idx)
        root_quat = qbetween(forward, np.broadcast_to(_FORWARD, forward.shape))
        root_quat[0] = (1.0, 0.0, 0.0, 0.0)
        return root_quat

    def inverse_kinematics_from_root(self, joints: np.ndarray, root_quat: np.ndarray) -> np.ndarray:
        """Per-joint quaternions (T, J, 4) for joints (T, J, 3) given the root quaternions (T, 4).

        Each bone's accumulated rotation is the shortest arc from its raw direction to its observed direction; the
        stored quaternion is that rotation relative to the accumulated rotation of its chain so far.
        """
        joints = self._check_joints(joints, "Skeleton.inverse_kinematics")
        root_quat = np.asarray(root_quat, dtype=np.float64)
        if joints.ndim != 3 or root_quat.shape != (joints.shape[0], 4):
            raise ValueError(f"Skeleton.inverse_kinematics: expected joints (T, {self.njoints}, 3) and root "
                             f"quaternions (T, 4), got {joints.shape} and {root_quat.shape}")
        self._check_bones(joints)
        quat = np.zeros(joints.shape[:-1] + (4,))
        quat[:, 0] = root_quat
        for chain in self.kinematic_chain:
            accumulated = root_quat
            for parent, child in zip(chain[:-1], chain[1:]):
                bone = joints[:, child] - joints[:, parent]
                bone = bone / np.linalg.norm(bone, axis=-1, keepdims=True)
                arc = qbetween(np.broadcast_to(self.raw_offsets[child], bone.shape), bone)
                local = qmul(qinv(accumulated), arc)
                quat[:, child] = local
                accumulated = qmul(accumulated, local)
        return quat

    def inverse_kinematics(self, joints: np.ndarray, face_joint_idx: Sequence[int],
                           smooth_forward: bool = False) -> np.ndarray:
        """HumanML3D inverse kinematics: joints (T, J, 3) -> quaternions (T, J, 4), root from ``facing_rotation``."""
        joints = self._check_joints(joints, "Skeleton.inverse_kinematics")
        self._check_bones(joints)
        return self.inverse_kinematics_from_root(joints, self.facing_rotation(joints, face_joint_idx, smooth_forward))

    def forward_kinematics(self, quat: np.ndarray, root_pos: np.ndarray, offsets: np.ndarray | None = None,
                           do_root_r: bool = True) -> np.ndarray:
        """Joint positions (T, J, 3) from quaternions (T, J, 4) and root positions (T, 3).

        ``offsets`` (J, 3) defaults to the skeleton's ``offsets``; without ``do_root_r`` the root quaternion is
        ignored (chains start from the identity).
        """
        quat = np.asarray(quat, dtype=np.float64)
        if quat.ndim != 3 or quat.shape[1:] != (self.njoints, 4):
            raise ValueError(f"Skeleton.forward_kinematics: expected quaternions (T, {self.njoints}, 4), "
                             f"got {quat.shape}")
        if offsets is None:
            if self.offsets is None:
                raise ValueError("Skeleton.forward_kinematics: no offsets; call set_offsets or get_offsets_joints")
            offsets = self.offsets
        offsets = np.asarray(offsets, dtype=np.float64)
        if offsets.shape != (self.njoints, 3):
            raise ValueError(f"Skeleton.forward_kinematics: expected offsets of shape ({self.njoints}, 3), "
                             f"got {offsets.shape}")
        root_pos = np.asarray(root_pos, dtype=np.float64)
        if root_pos.shape != (quat.shape[0], 3):
            raise ValueError(f"Skeleton.forward_kinematics: expected root positions ({quat.shape[0]}, 3), "
                             f"got {root_pos.shape}")
        joints = np.zeros(quat.shape[:-1] + (3,))
        joints[:, 0] = root_pos
        identity = np.broadcast_to(np.array([1.0, 0.0, 0.0, 0.0]), quat[:, 0].shape)
        for chain in self.kinematic_chain:
            accumulated = quat[:, 0] if do_root_r else identity
            for parent, child in zip(chain[:-1], chain[1:]):
                accumulated = qmul(accumulated, quat[:, child])
                joints[:, child] = qrot(accumulated, np.broadcast_to(offsets[child], joints[:, child].shape)) \
                    + joints[:, parent]
        return joints
