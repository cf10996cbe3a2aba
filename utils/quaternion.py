"""Quaternion and rotation helpers for numpy arrays and torch tensors.

Quaternions are ``(w, x, y, z)`` in the last dimension and act on column vectors (``qrot(q, v) = q v q^-1``).
Every function accepts numpy arrays or torch tensors, broadcasts over leading dimensions and returns the type of its
input: numpy inputs are computed in torch at their own precision (float64 stays float64) and converted back, so one
implementation serves the dataset preprocessing (numpy) and the losses and renderers (torch).

Two 6D rotation layouts exist in the field:
- ``cont6d`` (HumanML3D): the first two **columns** of the rotation matrix, ``[m00, m10, m20, m01, m11, m21]``;
- ``rot6d`` (the 272-dim MotionMillion representation, pytorch3d): the first two **rows**, ``m[:2, :].reshape(6)``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TypeVar

import numpy as np
import torch

Array = TypeVar("Array", np.ndarray, torch.Tensor)

_EPS = 1e-12


def _numpy_compatible(fn: Callable[..., torch.Tensor]) -> Callable:
    """Let a torch implementation take numpy arrays (all arguments numpy -> result numpy).

    Numpy arguments, positional or keyword, become tensors of a common floating dtype (integers become float64) and
    the result is converted back, so numpy callers keep numpy and float64 stays float64.
    """

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        if not any(isinstance(a, np.ndarray) for a in (*args, *kwargs.values())):
            return fn(*args, **kwargs)
        args = [np.asarray(a) if isinstance(a, (np.ndarray, list, tuple)) else a for a in args]
        kwargs = {k: np.asarray(a) if isinstance(a, (np.ndarray, list, tuple)) else a for k, a in kwargs.items()}
        dtype = np.result_type(*[a.dtype for a in (*args, *kwargs.values()) if isinstance(a, np.ndarray)])
        if not np.issubdtype(dtype, np.floating):
            dtype = np.float64

        def to_tensor(a):
            return torch.from_numpy(np.array(a, dtype=dtype)) if isinstance(a, np.ndarray) else a

        return fn(*map(to_tensor, args), **{k: to_tensor(a) for k, a in kwargs.items()}).numpy()

    return wrapper


def _check_last(x: torch.Tensor, size: int, name: str) -> None:
    if x.shape[-1] != size:
        raise ValueError(f"{name}: expected shape (..., {size}), got {tuple(x.shape)}")


def _cross(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    a, b = torch.broadcast_tensors(a, b)
    return torch.linalg.cross(a, b, dim=-1)


def _normalize(x: torch.Tensor) -> torch.Tensor:
    return x / torch.linalg.vector_norm(x, dim=-1, keepdim=True)


@_numpy_compatible
def qinv(q: Array) -> Array:
    """Inverse of a unit quaternion (its conjugate). q: (..., 4) -> (..., 4)."""
    _check_last(q, 4, "qinv")
    return torch.cat([q[..., :1], -q[..., 1:]], dim=-1)


@_numpy_compatible
def qnormalize(q: Array) -> Array:
    """Scale quaternions to unit norm. q: (..., 4) -> (..., 4)."""
    _check_last(q, 4, "qnormalize")
    return _normalize(q)


@_numpy_compatible
def qmul(q: Array, r: Array) -> Array:
    """Hamilton product ``q * r`` (apply r first, then q). q, r: (..., 4), broadcast -> (..., 4)."""
    _check_last(q, 4, "qmul q")
    _check_last(r, 4, "qmul r")
    q, r = torch.broadcast_tensors(q, r)
    w1, x1, y1, z1 = q.unbind(-1)
    w2, x2, y2, z2 = r.unbind(-1)
    return torch.stack([
        w1 * w2 - x1 * x2 - y1 * y2 - z1 * z2,
        w1 * x2 + x1 * w2 + y1 * z2 - z1 * y2,
        w1 * y2 - x1 * z2 + y1 * w2 + z1 * x2,
        w1 * z2 + x1 * y2 - y1 * x2 + z1 * w2,
    ], dim=-1)


@_numpy_compatible
def qrot(q: Array, v: Array) -> Array:
    """Rotate vectors v by unit quaternions q. q: (..., 4), v: (..., 3), broadcast -> (..., 3)."""
    _check_last(q, 4, "qrot q")
    _check_last(v, 3, "qrot v")
    qvec = q[..., 1:]
    uv = _cross(qvec, v)
    uuv = _cross(qvec, uv)
    return v + 2 * (q[..., :1] * uv + uuv)


@_numpy_compatible
def qbetween(v0: Array, v1: Array) -> Array:
    """Shortest-arc unit quaternion rotating direction v0 onto direction v1. v0, v1: (..., 3) -> (..., 4).

    ``w = |v0||v1| + v0.v1``, ``xyz = v0 x v1``, normalised. For exactly opposite directions that formula is 0/0;
    those entries get the 180-degree rotation about an axis perpendicular to v0 instead.
    """
    _check_last(v0, 3, "qbetween v0")
    _check_last(v1, 3, "qbetween v1")
    v0, v1 = torch.broadcast_tensors(v0, v1)
    scale = torch.sqrt((v0 * v0).sum(-1, keepdim=True) * (v1 * v1).sum(-1, keepdim=True))
    w = scale + (v0 * v1).sum(-1, keepdim=True)
    q = torch.cat([w, _cross(v0, v1)], dim=-1)
    norm = torch.linalg.vector_norm(q, dim=-1, keepdim=True)
    # Rounding leaves nearly opposite vectors a tiny cross product that is still perpendicular to v0 (a valid
    # 180-degree axis); only an exactly vanishing one needs a substitute axis.
    degenerate = (norm <= _EPS * scale) & (scale > 0)
    if bool(degenerate.any()):
        # Any axis perpendicular to v0: cross with the coordinate axis it is least aligned with.
        basis = torch.eye(3, dtype=v0.dtype, device=v0.device)[v0.abs().argmin(dim=-1)]
        axis = _normalize(_cross(v0, basis))
        flip = torch.cat([torch.zeros_like(w), axis], dim=-1)
        q = torch.where(degenerate, flip, q)
        norm = torch.where(degenerate, torch.ones_like(norm), norm)
    return q / norm


@_numpy_compatible
def yaw_quaternion(angle: Array) -> Array:
    """Rotation by ``angle`` radians about +Y. angle: (...,) -> (..., 4)."""
    half = angle / 2
    zeros = torch.zeros_like(half)
    return torch.stack([torch.cos(half), zeros, torch.sin(half), zeros], dim=-1)


@_numpy_compatible
def quaternion_to_matrix(q: Array) -> Array:
    """Rotation matrices of quaternions (need not be unit). q: (..., 4) -> (..., 3, 3)."""
    _check_last(q, 4, "quaternion_to_matrix")
    w, x, y, z = q.unbind(-1)
    two_s = 2.0 / (q * q).sum(-1)
    m = torch.stack([
        1 - two_s * (y * y + z * z), two_s * (x * y - z * w), two_s * (x * z + y * w),
        two_s * (x * y + z * w), 1 - two_s * (x * x + z * z), two_s * (y * z - x * w),
        two_s * (x * z - y * w), two_s * (y * z + x * w), 1 - two_s * (x * x + y * y),
    ], dim=-1)
    return m.reshape(q.shape[:-1] + (3, 3))


@_numpy_compatible
def matrix_to_quaternion(m: Array) -> Array:
    """Unit quaternions (w >= 0) of rotation matrices. m: (..., 3, 3) -> (..., 4).

    Each of the four candidate formulas divides by one of 4w, 4x, 4y, 4z; the one with the largest divisor is used,
    so the result is well conditioned for every rotation.
    """
    if m.shape[-2:] != (3, 3):
        raise ValueError(f"matrix_to_quaternion: expected shape (..., 3, 3), got {tuple(m.shape)}")
    m00, m01, m02 = m[..., 0, 0], m[..., 0, 1], m[..., 0, 2]
    m10, m11, m12 = m[..., 1, 0], m[..., 1, 1], m[..., 1, 2]
    m20, m21, m22 = m[..., 2, 0], m[..., 2, 1], m[..., 2, 2]
    # 4 * |component|^2 for w, x, y, z
    sq = torch.stack([1 + m00 + m11 + m22, 1 + m00 - m11 - m22, 1 - m00 + m11 - m22, 1 - m00 - m11 + m22], dim=-1)
    root = torch.sqrt(torch.clamp(sq, min=0.0))
    candidates = torch.stack([
        torch.stack([root[..., 0] ** 2, m21 - m12, m02 - m20, m10 - m01], dim=-1),
        torch.stack([m21 - m12, root[..., 1] ** 2, m10 + m01, m02 + m20], dim=-1),
        torch.stack([m02 - m20, m10 + m01, root[..., 2] ** 2, m12 + m21], dim=-1),
        torch.stack([m10 - m01, m20 + m02, m21 + m12, root[..., 3] ** 2], dim=-1),
    ], dim=-2) / (2 * torch.clamp(root, min=_EPS))[..., None]  # row k holds (w, x, y, z) computed via component k
    best = sq.argmax(dim=-1)
    q = torch.gather(candidates, -2, best[..., None, None].expand(best.shape + (1, 4))).squeeze(-2)
    q = _normalize(q)
    return torch.where(q[..., :1] < 0, -q, q)


@_numpy_compatible
def quaternion_to_cont6d(q: Array) -> Array:
    """HumanML3D continuous 6D: the first two matrix columns. q: (..., 4) -> (..., 6)."""
    m = quaternion_to_matrix(q)
    return torch.cat([m[..., :, 0], m[..., :, 1]], dim=-1)


@_numpy_compatible
def cont6d_to_matrix(cont6d: Array) -> Array:
    """Rotation matrices from HumanML3D 6D (two columns, Gram-Schmidt). cont6d: (..., 6) -> (..., 3, 3)."""
    _check_last(cont6d, 6, "cont6d_to_matrix")
    x = _normalize(cont6d[..., 0:3])
    z = _normalize(_cross(x, cont6d[..., 3:6]))
    y = _cross(z, x)
    return torch.stack([x, y, z], dim=-1)


@_numpy_compatible
def cont6d_to_quaternion(cont6d: Array) -> Array:
    """Unit quaternions from HumanML3D 6D. cont6d: (..., 6) -> (..., 4)."""
    return matrix_to_quaternion(cont6d_to_matrix(cont6d))


@_numpy_compatible
def matrix_to_rot6d(m: Array) -> Array:
    """272-representation 6D: the first two matrix rows. m: (..., 3, 3) -> (..., 6)."""
    if m.shape[-2:] != (3, 3):
        raise ValueError(f"matrix_to_rot6d: expected shape (..., 3, 3), got {tuple(m.shape)}")
    return m[..., :2, :].reshape(m.shape[:-2] + (6,))


@_numpy_compatible
def rot6d_to_matrix(rot6d: Array) -> Array:
    """Rotation matrices from row-6D (Gram-Schmidt on the rows). rot6d: (..., 6) -> (..., 3, 3)."""
    _check_last(rot6d, 6, "rot6d_to_matrix")
    b1 = _normalize(rot6d[..., 0:3])
    a2 = rot6d[..., 3:6]
    b2 = _normalize(a2 - (b1 * a2).sum(-1, keepdim=True) * b1)
    b3 = _cross(b1, b2)
    return torch.stack([b1, b2, b3], dim=-2)


def qfix(q: np.ndarray) -> np.ndarray:
    """Flip quaternion signs so consecutive frames stay on the same hemisphere. q: (T, ..., 4) -> same shape.

    q and -q are the same rotation; frame t is negated when its dot product with frame t-1 (after earlier flips) is
    negative, which removes jumps before interpolation or differencing.
    """
    q = np.asarray(q)
    if q.ndim < 2 or q.shape[-1] != 4:
        raise ValueError(f"qfix: expected shape (T, ..., 4), got {q.shape}")
    flips = (q[1:] * q[:-1]).sum(-1) < 0
    parity = (np.cumsum(flips, axis=0) % 2).astype(bool)
    result = q.copy()
    result[1:][parity] *= -1
    return result
