"""The whole SMPL-family body model (SMPL 24 joints, SMPL-H 52, SMPL-X 55) and its linear blend skinning, for mesh
videos (``utils.mesh_render``).

On top of the joint part that ``utils.smpl_body`` reads, the ``.npz`` gives ``weights`` (V, J) skinning weights,
``f`` (F, 3) the triangles (so the topology, SMPL's 6890 vertices or SMPL-X's 10475, comes from the file) and,
optionally, ``posedirs`` (V, 3, (J - 1) * 9) pose blend shapes. Skinning follows SMPL (Loper et al. 2015, eqs. 1-4):

1. shape: ``v_shaped = v_template + shapedirs[:, :, :n] @ betas[:n]`` (n at most 10, as ``utils.smpl_body``), rest
   joints ``J = J_regressor @ v_shaped``;
2. pose blend shapes: ``v_posed = v_shaped + posedirs @ (R_j - I)`` over the joints 1 .. J-1, flattened row-major;
3. forward kinematics of all J joints: global rotation ``G_j`` and position ``p_j`` (root at ``J_0 + trans``);
4. skinning: ``v = sum_j w_vj (G_j (v_posed - J_j) + p_j)``.

Axes and units are the body model's (AMASS: metres, Z up; ``utils.smpl_body.z_up_to_y_up`` turns them to Y up).
Everything is vectorised over frames and vertices; frames go through in chunks so that the (T, V, 12) blended
transforms stay small.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from utils.bvh import forward_kinematics_transforms
from utils.smpl_body import (
    BODY_MODEL_KEYS,
    BODY_POSE_WIDTH,
    MAX_BETAS,
    SmplBody,
    axis_angle_to_matrix,
    body_from_arrays,
    check_shapes,
    kintree_parents,
    read_body_model_arrays,
)

MESH_KEYS = {"weights": "(V, J): every vertex's skinning weights over the joints",
             "f": "(F, 3): the vertex indices of each triangle"}
POSEDIRS = "posedirs"
CHUNK_FRAMES = 32  # frames skinned at once: (32, V, 12) doubles is 32 MB for SMPL-X


@dataclass(frozen=True)
class SmplMesh:
    """A body model with what skinning needs: ``body`` the joint part (for inverse kinematics and
    ``smpl_joints``); ``v_template`` (V, 3); ``shapedirs`` (V, 3, S) with S at most ``MAX_BETAS``; ``posedirs``
    (V, 3, (J - 1) * 9) or None; ``joint_regressor`` (J, V); ``weights`` (V, J); ``faces`` (F, 3) int64, wound
    counter-clockwise seen from outside; ``parents`` of all J joints (-1 for the root)."""

    body: SmplBody
    v_template: np.ndarray
    shapedirs: np.ndarray
    posedirs: np.ndarray | None
    joint_regressor: np.ndarray
    weights: np.ndarray
    faces: np.ndarray
    parents: tuple[int, ...]

    @property
    def path(self) -> str:
        return self.body.path

    @property
    def num_joints(self) -> int:
        return len(self.parents)


class PosedMesh(NamedTuple):
    """Skinned vertices (T, V, 3) and the positions (T, J, 3) of all J joints, in the body model's axes."""

    vertices: np.ndarray
    joints: np.ndarray


def _signed_volume(vertices: np.ndarray, faces: np.ndarray) -> float:
    """Volume enclosed by the triangles (V, 3), (F, 3): positive when they are wound counter-clockwise seen from
    outside (divergence theorem over the tetrahedra from the origin)."""
    a, b, c = (vertices[faces[:, k]] for k in range(3))
    return float(np.einsum("fi,fi->", a, np.cross(b, c)) / 6.0)


def load_body_mesh(path: str | os.PathLike) -> SmplMesh:
    """Read the whole SMPL / SMPL-H / SMPL-X body model ``.npz`` at ``path`` (see the module docstring).

    Raises ``ValueError`` naming the file and the key for what ``utils.smpl_body.load_body_model`` refuses, missing
    ``weights`` or ``f``, shapes that do not fit V vertices and J joints, face indices outside 0 .. V-1, or a parent
    numbered after its child. Faces wound clockwise (a negative enclosed volume) are turned round, so that the
    renderer's back-face culling keeps the outside of the body.
    """
    path = str(path)
    arrays = read_body_model_arrays(path, {**BODY_MODEL_KEYS, **MESH_KEYS}, optional=(POSEDIRS,))
    body = body_from_arrays(path, arrays)
    v_template = np.asarray(arrays["v_template"], dtype=np.float64)
    vertices, joints = v_template.shape[0], body.num_joints
    weights = np.asarray(arrays["weights"], dtype=np.float64)
    faces = np.asarray(arrays["f"])
    expected = {"weights": (weights, (vertices, joints), "(V, J)"), "f": (faces, (None, 3), "(F, 3)")}
    posedirs = None
    if POSEDIRS in arrays:
        posedirs = np.asarray(arrays[POSEDIRS], dtype=np.float64)
        expected[POSEDIRS] = (posedirs, (vertices, 3, (joints - 1) * 9), "(V, 3, (J - 1) * 9)")
    check_shapes(path, expected, f"V = {vertices} vertices and J = {joints} joints (v_template, J_regressor)")
    if not np.issubdtype(faces.dtype, np.integer) or len(faces) == 0 or faces.min() < 0 or faces.max() >= vertices:
        raise ValueError(f"{path}: f holds {len(faces)} faces of dtype {faces.dtype}; expected integer vertex "
                         f"indices from 0 to {vertices - 1} (v_template has {vertices} vertices)")
    parents = kintree_parents(np.asarray(arrays["kintree_table"]))
    late = [j for j, p in enumerate(parents) if p >= j]
    if late:
        raise ValueError(f"{path}: kintree_table gives joint {late[0]} the parent {parents[late[0]]}; expected every "
                         f"parent numbered before its children, as in SMPL, SMPL-H and SMPL-X")
    faces = faces.astype(np.int64)
    if _signed_volume(v_template, faces) < 0:
        faces = faces[:, ::-1].copy()
    shapedirs = np.asarray(arrays["shapedirs"][:, :, :MAX_BETAS], dtype=np.float64)
    return SmplMesh(body=body, v_template=v_template, shapedirs=shapedirs, posedirs=posedirs,
                    joint_regressor=np.asarray(arrays["J_regressor"], dtype=np.float64), weights=weights,
                    faces=faces, parents=tuple(int(p) for p in parents))


def _check_parameters(mesh: SmplMesh, poses: np.ndarray, trans: np.ndarray, betas: np.ndarray,
                      source: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    poses = np.asarray(poses, dtype=np.float64)
    trans = np.asarray(trans, dtype=np.float64)
    betas = np.asarray(betas, dtype=np.float64).reshape(-1)
    width = 3 * mesh.num_joints
    if poses.ndim != 2 or not BODY_POSE_WIDTH <= poses.shape[1] <= width or poses.shape[1] % 3:
        raise ValueError(f"{source}: poses has shape {poses.shape}; expected (T, P) axis-angle with P a multiple of 3 "
                         f"from {BODY_POSE_WIDTH} (root and body) to {width} (all {mesh.num_joints} joints of "
                         f"{mesh.path})")
    if trans.shape != (poses.shape[0], 3):
        raise ValueError(f"{source}: trans has shape {trans.shape}; expected ({poses.shape[0]}, 3) like poses")
    for name, array in (("poses", poses), ("trans", trans), ("betas", betas)):
        if not np.isfinite(array).all():
            raise ValueError(f"{source}: {name} hold NaN or Inf; expected finite values")
    return poses, trans, betas


def pose_mesh(mesh: SmplMesh, poses: np.ndarray, trans: np.ndarray, betas: np.ndarray,
              source: str = "pose_mesh") -> PosedMesh:
    """Linear blend skinning (see the module docstring) of ``poses`` (T, P) axis-angle, ``trans`` (T, 3) and
    ``betas`` (n,), in the body model's axes.

    ``poses`` gives the root and the joints in the body model's order; columns past P (hands and face when only the
    66 body columns are given) are zero. Only the first ``min(n, S)`` betas are used. Raises ``ValueError`` naming
    ``source`` for a wrong shape or NaN/Inf.
    """
    poses, trans, betas = _check_parameters(mesh, poses, trans, betas, source)
    frames, joints = poses.shape[0], mesh.num_joints
    n = min(len(betas), mesh.shapedirs.shape[2])
    v_shaped = mesh.v_template + mesh.shapedirs[:, :, :n] @ betas[:n]
    rest = mesh.joint_regressor @ v_shaped
    offsets = rest - rest[[max(p, 0) for p in mesh.parents]]
    vertices = np.empty((frames, len(v_shaped), 3))
    positions = np.empty((frames, joints, 3))
    for start in range(0, frames, CHUNK_FRAMES):
        chunk = slice(start, min(start + CHUNK_FRAMES, frames))
        count = chunk.stop - chunk.start
        axis_angle = np.zeros((count, joints, 3))
        axis_angle.reshape(count, -1)[:, :poses.shape[1]] = poses[chunk]
        local = axis_angle_to_matrix(axis_angle)
        local_offsets = np.broadcast_to(offsets, (count, joints, 3)).copy()
        local_offsets[:, 0] = rest[0] + trans[chunk]  # the root turns about its rest position, then moves
        joint_pos, joint_rot = forward_kinematics_transforms(local, local_offsets, mesh.parents)
        v_posed = np.broadcast_to(v_shaped, (count, *v_shaped.shape))
        if mesh.posedirs is not None:
            features = (local[:, 1:] - np.eye(3)).reshape(count, -1)  # (T, (J - 1) * 9)
            v_posed = v_posed + (features @ mesh.posedirs.reshape(-1, features.shape[1]).T).reshape(v_posed.shape)
        # Each joint's transform maps rest positions to posed ones: x -> G_j (x - J_j) + p_j.
        transforms = np.concatenate([joint_rot, (joint_pos - np.einsum("tjab,jb->tja", joint_rot, rest))[..., None]],
                                    axis=-1)  # (T, J, 3, 4)
        blended = (mesh.weights @ transforms.reshape(count, joints, 12)).reshape(count, -1, 3, 4)
        vertices[chunk] = np.einsum("tvab,tvb->tva", blended[..., :3], v_posed) + blended[..., 3]
        positions[chunk] = joint_pos
    return PosedMesh(vertices, positions)

