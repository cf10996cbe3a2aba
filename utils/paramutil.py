"""Skeleton constants of the HumanML3D (SMPL-22) and KIT-ML (21-joint) skeletons.

Raw offsets are unit directions of each bone (joint minus parent) in the rest pose, Y up and the body facing +Z: for
SMPL-22 the left side is +X; KIT-ML's offsets, as released, point the right hip and right shoulder to +X. Bone
lengths come from a target skeleton; ``Skeleton.get_offsets_joints`` turns a pose into ``raw offset x bone length``.
Kinematic chains are the ones of ``utils.dataset_specs``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from utils.dataset_specs import KIT_KINEMATIC_CHAIN, T2M_KINEMATIC_CHAIN

t2m_kinematic_chain = T2M_KINEMATIC_CHAIN
kit_kinematic_chain = KIT_KINEMATIC_CHAIN

# HumanML3D paramUtil: joint order 0 pelvis, 1 L_hip, 2 R_hip, 3 spine1, 4 L_knee, 5 R_knee, 6 spine2, 7 L_ankle,
# 8 R_ankle, 9 spine3, 10 L_foot, 11 R_foot, 12 neck, 13 L_collar, 14 R_collar, 15 head, 16 L_shoulder,
# 17 R_shoulder, 18 L_elbow, 19 R_elbow, 20 L_wrist, 21 R_wrist.
t2m_raw_offsets = np.array([
    [0, 0, 0], [1, 0, 0], [-1, 0, 0], [0, 1, 0], [0, -1, 0],
    [0, -1, 0], [0, 1, 0], [0, -1, 0], [0, -1, 0], [0, 1, 0],
    [0, 0, 1], [0, 0, 1], [0, 1, 0], [1, 0, 0], [-1, 0, 0],
    [0, 0, 1], [0, -1, 0], [0, -1, 0], [0, -1, 0], [0, -1, 0],
    [0, -1, 0], [0, -1, 0],
], dtype=np.float64)

# KIT-ML paramUtil (21 joints; 0-4 spine to head, 5-7 and 8-10 arms, 11-15 and 16-20 legs).
kit_raw_offsets = np.array([
    [0, 0, 0], [0, 1, 0], [0, 1, 0], [0, 1, 0], [0, 1, 0],
    [1, 0, 0], [0, -1, 0], [0, -1, 0], [-1, 0, 0], [0, -1, 0],
    [0, -1, 0], [1, 0, 0], [0, -1, 0], [0, -1, 0], [0, 0, 1],
    [0, 0, 1], [-1, 0, 0], [0, -1, 0], [0, -1, 0], [0, 0, 1],
    [0, 0, 1],
], dtype=np.float64)

# Bone lengths (metres) of the official HumanML3D target skeleton, sample 000021, the skeleton every HumanML3D clip
# is retargeted to. Values are the float32 bone lengths of skeleton_example_h3d.npy[:22] (a public copy of that
# skeleton, whose bone lengths match HumanML3D new_joints/012314.npy to 1e-7).
T2M_TGT_BONE_LENGTHS = np.array([
    0.0, 0.10307397, 0.10988337, 0.13156824, 0.3936232, 0.39018822, 0.14319022, 0.43243307, 0.42564335,
    0.057364736, 0.14338182, 0.14941907, 0.21936005, 0.13748677, 0.14338283, 0.10303922, 0.13161404,
    0.12298438, 0.25684, 0.26309174, 0.26601171, 0.2698764,
], dtype=np.float32)

# Target offsets (22, 3) = raw direction x bone length; what uniform_skeleton retargets to by default.
T2M_TGT_OFFSETS = (t2m_raw_offsets.astype(np.float32) * T2M_TGT_BONE_LENGTHS[:, None]).astype(np.float32)
for _const in (t2m_raw_offsets, kit_raw_offsets, T2M_TGT_BONE_LENGTHS, T2M_TGT_OFFSETS):
    _const.setflags(write=False)

# Left/right joint pairs swapped by the mirror augmentation (HumanML3D builds its M<id> files this way).
T2M_RIGHT_CHAIN = (2, 5, 8, 11, 14, 17, 19, 21)
T2M_LEFT_CHAIN = (1, 4, 7, 10, 13, 16, 18, 20)
# 52-joint SMPL-H order (body + hands) used by the raw HumanML3D pose files.
T2M_LEFT_HAND_CHAIN = (22, 23, 24, 34, 35, 36, 25, 26, 27, 31, 32, 33, 28, 29, 30)
T2M_RIGHT_HAND_CHAIN = (43, 44, 45, 46, 47, 48, 40, 41, 42, 37, 38, 39, 49, 50, 51)
# KIT: face_joint_indx (11, 16, 5, 8) names the right hip, left hip, right shoulder, left shoulder.
KIT_RIGHT_CHAIN = (5, 6, 7, 11, 12, 13, 14, 15)
KIT_LEFT_CHAIN = (8, 9, 10, 16, 17, 18, 19, 20)


@dataclass(frozen=True)
class SkeletonSettings:
    """Everything the HumanML3D feature pipeline needs to know about one skeleton.

    ``face_joint_indx`` is (right hip, left hip, right shoulder, left shoulder); ``fid_l``/``fid_r`` are the foot
    joints whose contacts are stored; ``l_idx1``/``l_idx2`` are the two lower-leg bones whose lengths scale the root
    trajectory when retargeting; ``feet_thre`` is in squared units of the data per frame (m^2 for t2m, mm^2 for KIT)
    at the dataset's frame rate ``fps`` (20 for t2m, 12.5 for KIT), so it stands for a foot speed.
    """

    name: str
    joints_num: int
    raw_offsets: np.ndarray
    kinematic_chain: tuple[tuple[int, ...], ...]
    face_joint_indx: tuple[int, int, int, int]
    fid_l: tuple[int, int]
    fid_r: tuple[int, int]
    l_idx1: int
    l_idx2: int
    feet_thre: float
    fps: float
    right_chain: tuple[int, ...]
    left_chain: tuple[int, ...]

    @property
    def r_hip(self) -> int:
        return self.face_joint_indx[0]

    @property
    def l_hip(self) -> int:
        return self.face_joint_indx[1]


SKELETONS: dict[str, SkeletonSettings] = {
    "t2m": SkeletonSettings(
        name="t2m", joints_num=22, raw_offsets=t2m_raw_offsets, kinematic_chain=t2m_kinematic_chain,
        face_joint_indx=(2, 1, 17, 16), fid_l=(7, 10), fid_r=(8, 11), l_idx1=5, l_idx2=8, feet_thre=0.002, fps=20.0,
        right_chain=T2M_RIGHT_CHAIN, left_chain=T2M_LEFT_CHAIN),
    "kit": SkeletonSettings(
        name="kit", joints_num=21, raw_offsets=kit_raw_offsets, kinematic_chain=kit_kinematic_chain,
        face_joint_indx=(11, 16, 5, 8), fid_l=(19, 20), fid_r=(14, 15), l_idx1=17, l_idx2=18, feet_thre=0.05, fps=12.5,
        right_chain=KIT_RIGHT_CHAIN, left_chain=KIT_LEFT_CHAIN),
}


def get_skeleton_settings(skeleton: str) -> SkeletonSettings:
    """The settings record of ``skeleton`` ("t2m" or "kit")."""
    if skeleton not in SKELETONS:
        raise ValueError(f"unknown skeleton {skeleton!r}; expected one of {sorted(SKELETONS)}")
    return SKELETONS[skeleton]
