"""SMPL-22 joint positions to SMPL-family parameters in AMASS's layout (``sample.py --smpl``,
``prepare_data.py export_smpl``): the reverse of ``utils.amass_import``.

Inverse kinematics against a body model (``utils.smpl_body``, the user's ``.npz``) turns joints (T, 22, 3), metres,
Y up, into axis-angle rotations of the root and the 21 body joints plus a root translation, in AMASS's Z-up axes and
file layout, so that the file reads back through the AMASS import (and, in that layout, in tools that read AMASS).
Hands and face stay at zero. Each joint's rotation only has to place its children, so forward kinematics of the result
with the same body model gives the input back exactly when the motion has the body model's skeleton: its bone lengths,
and the angles between the bones that leave the pelvis (hips, spine) and spine3 (neck, collars), which no rotation can
change. Otherwise the bones keep their directions (exactly below single-child joints, as a best fit below the pelvis
and spine3) and the fit report says how far the joints moved.
"""

from __future__ import annotations

import os
from typing import NamedTuple

import numpy as np
from scipy.spatial.transform import Rotation

from utils.atomic_io import atomic_write
from utils.bvh_export import best_fit_rotation, shortest_arc
from utils.dataset_specs import DATASETS, T2M_KINEMATIC_CHAIN, DatasetSpec
from utils.smpl_body import BODY_POSE_WIDTH, NUM_BODY_JOINTS, Z_UP_TO_Y_UP, SmplBody, smpl_joints, z_up_to_y_up

GENDERS = ("neutral", "male", "female")
AMASS_BETAS = 16  # AMASS files carry 16 shape coefficients
SMPLX_JOINTS = 55
_EPS = 1e-9


class FitReport(NamedTuple):
    """How far forward kinematics of exported parameters lands from the input joints, in millimetres: zero up to
    rounding when the motion has the body model's skeleton (bone lengths, and the angles between the bones that leave
    the pelvis and spine3)."""

    mean_error_mm: float
    max_error_mm: float


class SmplFit(NamedTuple):
    """Parameters of one motion in AMASS's Z-up axes: ``poses`` (T, 66) axis-angle of the root and the 21 body
    joints, ``trans`` (T, 3), the ``betas`` (n,) used, and the ``report`` of the fit."""

    poses: np.ndarray
    trans: np.ndarray
    betas: np.ndarray
    report: FitReport


def y_up_to_z_up(points: np.ndarray) -> np.ndarray:
    """Points (..., 3) from HumanML3D's Y up to AMASS's Z up, the inverse of ``utils.smpl_body.z_up_to_y_up``.

    That map, (x, y, z) -> (-x, z, y), is orthogonal, so its inverse is its transpose (which is the map itself).
    """
    return np.asarray(points) @ Z_UP_TO_Y_UP


def check_smpl_skeleton(spec: DatasetSpec, flag: str) -> None:
    """Raise ``ValueError`` naming ``flag`` unless the dataset's joints are SMPL-22 (HumanML3D's order) in metres."""
    if _is_smpl22(spec) and spec.metres_per_unit != 1.0:
        raise ValueError(f"{flag}: dataset {spec.name!r} has positions in units of {spec.metres_per_unit:g} m "
                         f"(metres_per_unit); SMPL parameters are fitted to SMPL-22 joints in metres (1.0)")
    if not _is_smpl22(spec):
        smpl22 = ", ".join(name for name, registered in DATASETS.items() if _is_smpl22(registered))
        raise ValueError(f"{flag}: dataset {spec.name!r} has {spec.joints_num} joints in its own chain; SMPL "
                         f"parameters are exported from SMPL-22 joints in metres (HumanML3D's order: {smpl22}, "
                         f"BVH and AMASS imports)")


def _is_smpl22(spec: DatasetSpec) -> bool:
    chain = tuple(tuple(c) for c in spec.kinematic_chain)
    return spec.joints_num == NUM_BODY_JOINTS and chain == tuple(tuple(c) for c in T2M_KINEMATIC_CHAIN)


def _check_joints(joints: np.ndarray, source: str) -> np.ndarray:
    joints = np.asarray(joints)
    # Integers and floats only: astype would drop the imaginary part of complex numbers without a word.
    if joints.ndim != 3 or joints.shape[1:] != (NUM_BODY_JOINTS, 3) or joints.dtype.kind not in "iuf":
        raise ValueError(f"{source}: joints have shape {joints.shape} ({joints.dtype}); expected SMPL-22 positions "
                         f"(T, {NUM_BODY_JOINTS}, 3) in metres, Y up")
    if joints.shape[0] < 1:
        raise ValueError(f"{source}: joints have 0 frames; expected at least 1")
    joints = joints.astype(np.float64)
    bad = np.argwhere(~np.isfinite(joints))
    if bad.size:
        frame, joint, _ = (int(v) for v in bad[0])
        raise ValueError(f"{source}: joints[{frame}, {joint}] is {joints[frame, joint].tolist()}; expected finite "
                         f"positions ({len(bad)} non-finite value(s) in all)")
    return joints


def _check_betas(betas: np.ndarray | None, body: SmplBody, source: str) -> np.ndarray:
    if betas is None:
        return np.zeros(body.joint_shapedirs.shape[2])
    betas = np.asarray(betas)
    if betas.dtype.kind not in "biuf" or betas.ndim != 1 or not np.isfinite(betas).all():
        raise ValueError(f"{source}: betas {betas.tolist()}; expected finite shape coefficients of shape (n,)")
    used = body.joint_shapedirs.shape[2]
    if np.any(betas[used:] != 0):
        raise ValueError(f"{source}: betas has non-zero coefficients past the first {used}, which the joints of "
                         f"{body.path} do not use (at most 10, as HumanML3D); give at most {used}")
    return betas.astype(np.float64)


def _unit(v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Unit vectors of v (..., 3) and where v has a length at all (...,): zero-length vectors stay zero."""
    length = np.linalg.norm(v, axis=-1, keepdims=True)
    valid = length[..., 0] > _EPS
    return np.where(length > _EPS, v / np.maximum(length, _EPS), 0.0), valid


def matrix_to_axis_angle(rotations: np.ndarray) -> np.ndarray:
    """Axis-angle vectors (..., 3), angles in [0, pi], of rotation matrices (..., 3, 3)."""
    shape = rotations.shape[:-2]
    return Rotation.from_matrix(rotations.reshape(-1, 3, 3)).as_rotvec().reshape(shape + (3,))


def joints_to_smpl(joints: np.ndarray, body: SmplBody, betas: np.ndarray | None = None,
                   source: str = "joints_to_smpl") -> SmplFit:
    """Inverse kinematics: SMPL parameters (AMASS's Z-up axes) of joints (T, 22, 3), metres, Y up.

    The joints are turned to Z up first, so ``z_up_to_y_up(smpl_joints(body, poses, trans, betas))`` is the input.
    From the root down, each joint's local rotation takes the rest offsets of its children (``body.rest_joints(
    betas)``, default betas zero) onto their posed offsets expressed in its parent's frame (the parent's global
    rotation undone): for the root and the joints with several children (pelvis: hips and spine; spine3: neck and
    collars) the best-fit proper rotation (Kabsch), for a joint with one child the smallest rotation (swing), for the
    leaves (head, wrists, feet) the identity. A rotation about a single child's bone (twist) moves no joint, so it
    cannot be recovered from positions: single-child joints come back untwisted and the twist shows up, if anywhere,
    in the children's rotations. Coincident joints and anti-parallel bones give finite rotations (identity, a half
    turn). ``trans`` is the posed root minus the rest root, as ``smpl_joints`` puts the root at ``rest[0] + trans``.
    Raises ``ValueError`` naming ``source`` for a wrong shape, no frames or NaN/Inf.
    """
    joints = _check_joints(joints, source)
    betas = _check_betas(betas, body, source)
    posed = y_up_to_z_up(joints)
    rest = body.rest_joints(betas)
    parents = body.parents
    frames = posed.shape[0]
    children = [[c for c in range(NUM_BODY_JOINTS) if parents[c] == j] for j in range(NUM_BODY_JOINTS)]
    rest_offsets = rest - rest[[max(p, 0) for p in parents]]
    eye = np.broadcast_to(np.eye(3), (frames, 3, 3))
    global_rot = np.zeros((frames, NUM_BODY_JOINTS, 3, 3))
    local_rot = np.zeros((frames, NUM_BODY_JOINTS, 3, 3))
    for j in range(NUM_BODY_JOINTS):  # SMPL numbers every parent before its children
        parent_rot = global_rot[:, parents[j]] if parents[j] >= 0 else eye
        kids = children[j]
        # The children's posed offsets in the parent's frame: what this joint's local rotation has to produce.
        posed_offsets = np.einsum("tba,tkb->tka", parent_rot, posed[:, kids] - posed[:, j:j + 1])
        if len(kids) > 1:
            local = best_fit_rotation(rest_offsets[kids], posed_offsets)
        elif len(kids) == 1:
            rest_dir, rest_valid = _unit(rest_offsets[kids[0]])
            posed_dir, posed_valid = _unit(posed_offsets[:, 0])
            # A zero-length bone (rest or posed) has no direction to follow: no rotation.
            target = np.where(posed_valid[:, None], posed_dir, rest_dir)
            local = shortest_arc(rest_dir, target) if rest_valid else eye.copy()
        else:
            local = eye
        local_rot[:, j] = local
        global_rot[:, j] = parent_rot @ local
    poses = matrix_to_axis_angle(local_rot).reshape(frames, BODY_POSE_WIDTH)
    trans = posed[:, 0] - rest[0]
    fitted = z_up_to_y_up(smpl_joints(body, poses, trans, betas))
    error_mm = 1000.0 * np.linalg.norm(fitted - joints, axis=-1)
    return SmplFit(poses, trans, betas, FitReport(float(error_mm.mean()), float(error_mm.max())))


def amass_parameters(fit: SmplFit, body: SmplBody, fps: float, gender: str) -> dict[str, np.ndarray]:
    """The arrays of an AMASS motion file: ``poses`` (T, 3 * body.num_joints) with the fit's 66 body columns and
    zero hands / face, ``trans`` (T, 3), ``betas`` padded to 16, ``gender``, ``mocap_framerate`` (SMPL-X files also
    ``mocap_frame_rate`` and ``surface_model_type``), and ``root_orient`` (T, 3), ``pose_body`` (T, 63)."""
    frames = fit.poses.shape[0]
    poses = np.zeros((frames, 3 * body.num_joints))
    poses[:, :BODY_POSE_WIDTH] = fit.poses
    betas = np.zeros(max(AMASS_BETAS, fit.betas.shape[0]))
    betas[:fit.betas.shape[0]] = fit.betas
    arrays = {"poses": poses, "trans": fit.trans, "betas": betas, "gender": np.array(gender),
              "mocap_framerate": np.array(float(fps)), "root_orient": fit.poses[:, :3].copy(),
              "pose_body": fit.poses[:, 3:].copy()}
    if body.num_joints == SMPLX_JOINTS:
        arrays["mocap_frame_rate"] = np.array(float(fps))
        arrays["surface_model_type"] = np.array("smplx")
    return arrays


def write_smpl(path: str | os.PathLike, joints: np.ndarray, body: SmplBody, fps: float,
               betas: np.ndarray | None = None, gender: str = "neutral", source: str = "write_smpl") -> FitReport:
    """Export joints (T, 22, 3), metres, Y up, as an AMASS-layout ``.npz`` (``amass_parameters``) for ``body``.

    ``gender`` is recorded for the tools that pick a body model by it (neutral, male, female); it should match the
    gender of ``body``. The file is written through a temporary file, so it is never half written. Returns the fit
    report (``joints_to_smpl``); raises ``ValueError`` naming ``source`` (the input) for bad joints, fps or gender.
    """
    if gender not in GENDERS:
        raise ValueError(f"{source}: gender {gender!r}; expected one of {', '.join(GENDERS)}")
    if not (np.isfinite(fps) and fps > 0):
        raise ValueError(f"{source}: fps {fps!r}; expected a positive frame rate")
    fit = joints_to_smpl(joints, body, betas, source)
    with atomic_write(path, "wb") as f:  # a file object: np.savez would add .npz to a name
        np.savez(f, **amass_parameters(fit, body, fps, gender))
    return fit.report
