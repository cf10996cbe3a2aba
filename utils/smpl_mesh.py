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

Videos: ``render_smpl`` draws parameters (``utils.mesh_render``, Y up, the camera following the pelvis),
``render_amass_file`` an AMASS-layout ``.npz`` as ``utils.amass_import`` reads it (``render.py FILE.npz
--body_model``, ``sample.py --smpl --mesh_video``), ``render_joints_mesh`` SMPL-22 joints fitted by
``utils.smpl_export``'s inverse kinematics (``render.py motion.npy --mesh``).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from utils.amass_import import read_amass_motion
from utils.bvh import forward_kinematics_transforms
from utils.mesh_render import plot_mesh_motion
from utils.plot_script import save_beside_video
from utils.smpl_body import (
    BODY_MODEL_KEYS,
    BODY_POSE_WIDTH,
    MAX_BETAS,
    SmplBody,
    axis_angle_to_matrix,
    body_from_arrays,
    check_finite,
    check_shapes,
    kintree_parents,
    read_body_model_arrays,
    z_up_to_y_up,
)
from utils.smpl_export import joints_to_smpl

logger = logging.getLogger(__name__)

MESH_KEYS = {"weights": "(V, J): every vertex's skinning weights over the joints",
             "f": "(F, 3): the vertex indices of each triangle"}
POSEDIRS = "posedirs"
CHUNK_FRAMES = 32  # frames skinned at once: (32, V, 12) doubles is 32 MB for SMPL-X
MAX_VIDEO_FPS = 30.0  # parameter files at 60-250 fps are drawn at this rate unless asked otherwise


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
    ``weights`` or ``f``, shapes that do not fit V vertices and J joints, NaN or Inf in ``weights``, ``posedirs`` or
    any row of ``J_regressor``, face indices outside 0 .. V-1, or a parent numbered after its child. Faces wound
    clockwise (a negative enclosed volume) are turned round, so that the renderer's back-face culling keeps the
    outside of the body.
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
    # body_from_arrays checked only what the 22 joints use; skinning reads these whole (the hand and face rows of
    # J_regressor too), and a NaN there would reach the renderer as vertices blamed on the motion.
    regressor = np.asarray(arrays["J_regressor"], dtype=np.float64)
    check_finite(path, {"J_regressor": regressor, "weights": weights,
                        **({POSEDIRS: posedirs} if posedirs is not None else {})})
    faces = faces.astype(np.int64)
    if _signed_volume(v_template, faces) < 0:
        faces = faces[:, ::-1].copy()
    shapedirs = np.asarray(arrays["shapedirs"][:, :, :MAX_BETAS], dtype=np.float64)
    return SmplMesh(body=body, v_template=v_template, shapedirs=shapedirs, posedirs=posedirs,
                    joint_regressor=regressor, weights=weights,
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
    check_finite(source, {"poses": poses, "trans": trans, "betas": betas})
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

def frames_at(frames: int, fps: float, video_fps: float) -> np.ndarray:
    """Indices of the frames (of ``frames`` at ``fps``) nearest to the times k / ``video_fps`` within the motion, so
    that a video at ``video_fps`` plays in real time."""
    count = int(np.floor((frames - 1) / fps * video_fps + 1e-9)) + 1
    return np.minimum(np.round(np.arange(count) * fps / video_fps).astype(np.int64), frames - 1)


def render_smpl(save_path: str, mesh: SmplMesh, poses: np.ndarray, trans: np.ndarray, betas: np.ndarray,
                fps: float, source: str = "render_smpl", **plot) -> str:
    """Skin ``poses`` (T, P), ``trans`` (T, 3), ``betas`` (n,) in AMASS's Z-up axes (``pose_mesh``) and write the
    mesh video at ``fps`` (``utils.mesh_render.plot_mesh_motion``, whose ``title``, ``fmt``, ``captions``,
    ``saved_note``, ``dpi``, ... ``plot`` passes on) with Y up. Returns the path written."""
    posed = pose_mesh(mesh, poses, trans, betas, source)
    return plot_mesh_motion(save_path, z_up_to_y_up(posed.vertices), mesh.faces, root=z_up_to_y_up(posed.joints[:, 0]),
                            fps=fps, **plot)


def render_amass_file(path: str | os.PathLike, mesh: SmplMesh, save_path: str, fps: float | None = None,
                      captions: Sequence[tuple[int, str]] | None = None, **plot) -> str:
    """The mesh video of an AMASS-layout parameter file (``utils.amass_import.read_amass_motion``) at ``fps``
    (default: the file's rate, at most ``MAX_VIDEO_FPS``), frames taken at the nearest time stamps so that it plays
    in real time; ``captions`` start at frames of the file.

    Poses whose width is neither the body model's (3 J) nor the 66 root and body columns belong to another member
    of the family (an SMPL-H file with an SMPL-X model): only the 66 body columns, which every member shares, are
    used, with a warning. Raises ``ValueError`` naming the file for a file without ``poses`` or bad fields.
    """
    motion = read_amass_motion(path)
    if motion is None:
        raise ValueError(f"{path}: no poses; expected an AMASS-layout motion (poses, trans, betas and the frame rate), "
                         f"not a shape.npz")
    poses = motion.poses
    if poses.shape[1] not in (BODY_POSE_WIDTH, 3 * mesh.num_joints):
        logger.warning("%s: poses has %d columns but %s has %d joints (%d columns): another member of the SMPL "
                       "family; only the root and body (the first %d columns) are used, hands and face stay at rest",
                       path, poses.shape[1], mesh.path, mesh.num_joints, 3 * mesh.num_joints, BODY_POSE_WIDTH)
        poses = poses[:, :BODY_POSE_WIDTH]
    if fps is not None and not (np.isfinite(fps) and fps > 0):  # else no frame is picked, or int(nan) fails
        raise ValueError(f"{path}: fps {fps!r}; expected a positive frame rate (None: the file's, at most "
                         f"{MAX_VIDEO_FPS})")
    video_fps = fps or min(motion.fps, MAX_VIDEO_FPS)
    picked = frames_at(len(poses), motion.fps, video_fps)
    if captions:
        captions = [(int(np.searchsorted(picked, start)), text) for start, text in captions]
    return render_smpl(save_path, mesh, poses[picked], motion.trans[picked], motion.betas, video_fps,
                       source=str(path), captions=captions,
                       **{"saved_note": f"; the parameters are in {path}", **plot})


def render_joints_mesh(save_path: str, joints: np.ndarray, mesh: SmplMesh, fps: float, joints_path: str | None = None,
                       source: str = "render_joints_mesh", **plot) -> str:
    """The mesh video of SMPL-22 joints (T, 22, 3), metres, Y up: parameters fitted by inverse kinematics
    (``utils.smpl_export.joints_to_smpl``, betas zero) and skinned. Where the motion's skeleton is not the body
    model's, the mesh's joints differ from the input; the fit's mean and max distance are logged.

    With ``joints_path`` the joints are saved there once they are checked and before drawing starts, so a failed
    video never loses them. Raises ``ValueError`` naming ``source`` for bad joints, ``RenderError`` when the video
    could not be written.
    """
    fit = joints_to_smpl(joints, mesh.body, source=source)
    logger.info("%s: the mesh's joints are %.1f mm from the input on average, %.1f mm at most", source,
                fit.report.mean_error_mm, fit.report.max_error_mm)
    if joints_path is not None:
        save_beside_video(joints_path, lambda f: np.save(f, np.asarray(joints)), "joints")
        plot.setdefault("saved_note", f"; the joints are saved in {joints_path}")
    return render_smpl(save_path, mesh, fit.poses, fit.trans, fit.betas, fps, source=source, **plot)
