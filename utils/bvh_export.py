"""Joint positions to BVH: ``write_bvh`` writes a (T, J, 3) sequence as a BVH file that opens in Blender.

Rest offsets come from the first frame's bone directions and the median bone lengths; per-joint rotations are found by
the shortest arc from the rest direction (a best-fit rotation for joints with several children) and written as ZYX
Euler angles. Parsing the file back (``utils.bvh.parse_bvh``) and running forward kinematics reproduces the joints
when the bone lengths are constant (to about 1e-6 of the scene size).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

from utils.atomic_io import atomic_write
from utils.bvh import SMPL22_JOINT_NAMES, matrix_to_euler_zyx, parents_from_chain
from utils.dataset_specs import T2M_KINEMATIC_CHAIN


def _normalize(v: np.ndarray, fallback: np.ndarray) -> np.ndarray:
    n = np.linalg.norm(v, axis=-1, keepdims=True)
    return np.where(n > 1e-9, v / np.maximum(n, 1e-12), fallback)


def shortest_arc(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Rotation matrices (..., 3, 3) turning unit vectors a (..., 3) onto b (..., 3) by the shortest arc."""
    a, b = np.broadcast_arrays(np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64))
    axis = np.cross(a, b)
    s = np.linalg.norm(axis, axis=-1)
    c = np.sum(a * b, axis=-1)
    # Opposite vectors: any axis perpendicular to a gives a half turn.
    perp = np.cross(a, np.array([1.0, 0.0, 0.0]))
    perp = np.where(np.linalg.norm(perp, axis=-1, keepdims=True) < 1e-6, np.cross(a, np.array([0.0, 1.0, 0.0])), perp)
    axis = np.where((s < 1e-9)[..., None], perp, axis)
    axis = axis / np.linalg.norm(axis, axis=-1, keepdims=True)
    angle = np.arctan2(s, c)
    k = np.zeros(a.shape[:-1] + (3, 3))
    k[..., 0, 1], k[..., 0, 2] = -axis[..., 2], axis[..., 1]
    k[..., 1, 0], k[..., 1, 2] = axis[..., 2], -axis[..., 0]
    k[..., 2, 0], k[..., 2, 1] = -axis[..., 1], axis[..., 0]
    sin, cos = np.sin(angle)[..., None, None], np.cos(angle)[..., None, None]
    return np.eye(3) + sin * k + (1.0 - cos) * (k @ k)


def best_fit_rotation(rest: np.ndarray, current: np.ndarray) -> np.ndarray:
    """Rotations (T, 3, 3) best mapping rest vectors (K, 3) onto current vectors (T, K, 3) (Kabsch, no reflection)."""
    h = np.einsum("ka,tkb->tab", rest, current)
    u, _, vt = np.linalg.svd(h)
    d = np.sign(np.linalg.det(np.swapaxes(vt, -1, -2) @ np.swapaxes(u, -1, -2)))
    fix = np.broadcast_to(np.eye(3), h.shape).copy()
    fix[:, 2, 2] = d
    return np.swapaxes(vt, -1, -2) @ fix @ np.swapaxes(u, -1, -2)


class BVHPose(NamedTuple):
    """A skeleton animation: rest offsets (J, 3), local rotations (T, J, 3, 3), root positions (T, 3)."""

    offsets: np.ndarray
    local_rotations: np.ndarray
    root_positions: np.ndarray


def joints_to_bvh_motion(joints: np.ndarray, parents: Sequence[int]) -> BVHPose:
    """Rest offsets, local rotations and root positions that reproduce joints (T, J, 3) by forward kinematics.

    Offsets: the first frame's bone directions with the median bone lengths. Rotations: shortest arc from the rest
    direction for joints with one child, best-fit rotation for several children; leaves turn with their parent (a
    local identity), so the End Site written past a leaf continues the bone into it in every frame.
    """
    joints = np.asarray(joints, dtype=np.float64)
    frames, num = joints.shape[:2]
    children: list[list[int]] = [[] for _ in range(num)]
    for j, p in enumerate(parents):
        if p >= 0:
            children[p].append(j)
    up = np.array([0.0, 1.0, 0.0])
    offsets = np.zeros((num, 3))
    for j, p in enumerate(parents):
        if p < 0:
            continue
        bone = joints[:, j] - joints[:, p]
        length = float(np.median(np.linalg.norm(bone, axis=-1)))
        offsets[j] = _normalize(bone[0], up) * length
    global_rot = np.broadcast_to(np.eye(3), (frames, num, 3, 3)).copy()
    for j in range(num):
        kids = children[j]
        if len(kids) == 1:
            c = kids[0]
            rest = _normalize(offsets[c], up)
            cur = _normalize(joints[:, c] - joints[:, j], rest)
            global_rot[:, j] = shortest_arc(np.broadcast_to(rest, cur.shape), cur)
        elif len(kids) > 1:
            global_rot[:, j] = best_fit_rotation(offsets[kids], joints[:, kids] - joints[:, j:j + 1])
    for j, p in enumerate(parents):
        if p >= 0 and not children[j]:  # a leaf's parent has a child, so its rotation is set above
            global_rot[:, j] = global_rot[:, p]
    local = global_rot.copy()
    for j, p in enumerate(parents):
        if p >= 0:
            local[:, j] = np.swapaxes(global_rot[:, p], -1, -2) @ global_rot[:, j]
    return BVHPose(offsets, local, joints[:, 0].copy())


def write_bvh(path: str | os.PathLike, joints: np.ndarray, fps: float,
              kinematic_chain: Sequence[Sequence[int]] = T2M_KINEMATIC_CHAIN, joint_names: Sequence[str] | None = None,
              scale: float = 1.0, source: str = "write_bvh") -> None:
    """Export joint positions (T, J, 3) to a BVH file (ZYX Euler rotations, root positions).

    ``kinematic_chain`` gives the parents (default SMPL-22); ``joint_names`` default to ``SMPL22_JOINT_NAMES`` for 22
    joints; ``scale`` multiplies lengths (100 writes centimetres, as many tools expect); ``source`` names where the
    joints came from (the input file) in error messages.
    """
    # A frame time of 0, below 0 or NaN, or bones of no length, make a file no BVH reader plays.
    if not (np.isfinite(fps) and fps > 0):
        raise ValueError(f"{source}: fps {fps!r}; expected a positive frame rate; nothing written to {path}")
    if not (np.isfinite(scale) and scale > 0):
        raise ValueError(f"{source}: scale {scale!r}; expected a positive length factor; nothing written to {path}")
    joints = np.asarray(joints, dtype=np.float64) * scale
    if joints.ndim != 3 or joints.shape[-1] != 3 or joints.shape[0] < 1:
        raise ValueError(f"{source}: expected joints of shape (T, J, 3), got {joints.shape}")
    bad = np.argwhere(~np.isfinite(joints))
    if bad.size:
        # NaN offsets and angles would be written as "nan", which no BVH reader accepts.
        frame, joint, _ = (int(v) for v in bad[0])
        raise ValueError(f"{source}: joints[{frame}, {joint}] (frame {frame}, joint {joint}) is "
                         f"{joints[frame, joint].tolist()}; expected finite positions ({len(bad)} non-finite "
                         f"value(s) in all); nothing written to {path}")
    num = joints.shape[1]
    try:
        parents = parents_from_chain(kinematic_chain, num)
    except ValueError as e:
        raise ValueError(f"{source}: joints of shape {joints.shape}: {e}; nothing written to {path}") from e
    if joint_names is None:
        joint_names = SMPL22_JOINT_NAMES if num == 22 else tuple(f"joint{j}" for j in range(num))
    if len(joint_names) != num:
        raise ValueError(f"{source}: {len(joint_names)} joint names for {num} joints; nothing written to {path}")
    for j, joint_name in enumerate(joint_names):
        # BVH names are single tokens: "JOINT left hip" is a file that no reader parses.
        if str(joint_name).split() != [str(joint_name)]:
            raise ValueError(f"{source}: joint name {joint_name!r} (joint {j}): expected one word without spaces; "
                             f"nothing written to {path}")
    repeated = sorted({n for n in joint_names if list(joint_names).count(n) > 1})
    if repeated:
        # A skeleton mapping picks joints by name, so two of one name cannot be told apart when read back.
        raise ValueError(f"{source}: joint names must be unique, repeated: {repeated}; nothing written to {path}")
    # The hierarchy must list parents before children; reorder the joints depth-first from the root.
    order, children = [], [[] for _ in range(num)]
    for j, p in enumerate(parents):
        if p >= 0:
            children[p].append(j)
    stack = [parents.index(-1)]
    while stack:
        j = stack.pop()
        order.append(j)
        stack.extend(reversed(children[j]))
    remap = {j: k for k, j in enumerate(order)}
    parents_dfs = [remap[parents[j]] if parents[j] >= 0 else -1 for j in order]
    offsets, local, root = joints_to_bvh_motion(joints[:, order], parents_dfs)
    euler = matrix_to_euler_zyx(local)

    lines = ["HIERARCHY"]
    kids_dfs: list[list[int]] = [[] for _ in range(num)]
    for k, p in enumerate(parents_dfs):
        if p >= 0:
            kids_dfs[p].append(k)

    def emit(k: int, depth: int) -> None:
        pad = "  " * depth
        name = joint_names[order[k]]
        lines.append(f"{pad}{'ROOT' if depth == 0 else 'JOINT'} {name}")
        lines.append(f"{pad}{{")
        off = offsets[k] if depth else np.zeros(3)
        lines.append(f"{pad}  OFFSET {off[0]:.6f} {off[1]:.6f} {off[2]:.6f}")
        if depth == 0:
            lines.append(f"{pad}  CHANNELS 6 Xposition Yposition Zposition Zrotation Yrotation Xrotation")
        else:
            lines.append(f"{pad}  CHANNELS 3 Zrotation Yrotation Xrotation")
        for c in kids_dfs[k]:
            emit(c, depth + 1)
        if not kids_dfs[k]:
            # A short tail along the bone so the leaf shows as a bone in Blender.
            tail = _normalize(offsets[k], np.array([0.0, 1.0, 0.0])) * max(0.25 * np.linalg.norm(offsets[k]), 1e-3)
            lines.append(f"{pad}  End Site")
            lines.append(f"{pad}  {{")
            lines.append(f"{pad}    OFFSET {tail[0]:.6f} {tail[1]:.6f} {tail[2]:.6f}")
            lines.append(f"{pad}  }}")
        lines.append(f"{pad}}}")

    emit(0, 0)
    lines.append("MOTION")
    lines.append(f"Frames: {joints.shape[0]}")
    lines.append(f"Frame Time: {1.0 / fps:.8f}")
    values = np.concatenate([root, euler.reshape(euler.shape[0], -1)], axis=-1)
    lines.extend(" ".join(f"{v:.6f}" for v in row) for row in values)
    with atomic_write(path, encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
