"""Geometry helpers and per-frame controls of the procedural motions of ``utils.synthetic``.

The controls are per-frame arrays (body velocity and turn rate, gait, pelvis offset, spine and head angles, arm
directions, elbow poles) that the actions of ``utils.synthetic_actions`` write and ``utils.synthetic`` turns into
joint rotations; ``_Style`` holds the per-motion body style. Vectors are (T, 3) or (3,), +x is the body's left.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from utils.bvh import axis_rotation

FPS = 20.0
LEFT, RIGHT = 0, 1
_SIDE = np.array([1.0, -1.0])  # +x is the body's left


# ---------------------------------------------------------------------------------------------------------------------
# Small geometry helpers (vectorised over frames)
# ---------------------------------------------------------------------------------------------------------------------

def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.maximum(np.linalg.norm(v, axis=-1, keepdims=True), 1e-12)


def _frame(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Orthonormal frames (..., 3, 3) with columns (a, b orthogonalised against a, a x b)."""
    a = _unit(a)
    b = b - np.sum(a * b, axis=-1, keepdims=True) * a
    fallback = np.cross(a, np.array([1.0, 0.0, 0.0]))
    b = np.where(np.linalg.norm(b, axis=-1, keepdims=True) < 1e-6, fallback, b)
    b = _unit(b)
    return np.stack([a, b, np.cross(a, b)], axis=-1)


def _align(a0: np.ndarray, b0: np.ndarray, a1: np.ndarray, b1: np.ndarray) -> np.ndarray:
    """Rotation taking direction a0 to a1 and the plane (a0, b0) to the plane (a1, b1)."""
    f0, f1 = np.broadcast_arrays(_frame(a0, b0), _frame(a1, b1))
    return f1 @ np.swapaxes(f0, -1, -2)


def _two_bone_ik(base: np.ndarray, target: np.ndarray, l1: float, l2: float,
                 pole: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Middle joint (T, 3), end joint (T, 3) and bend direction (T, 3) of a two-bone chain reaching for target."""
    d = target - base
    dist = np.linalg.norm(d, axis=-1, keepdims=True)
    u = d / np.maximum(dist, 1e-9)
    dist = np.clip(dist, abs(l1 - l2) + 1e-4, (l1 + l2) * (1.0 - 1e-6))
    cos_a = np.clip((l1 ** 2 + dist ** 2 - l2 ** 2) / (2.0 * l1 * dist), -1.0, 1.0)
    p = pole - np.sum(pole * u, axis=-1, keepdims=True) * u
    p = _unit(np.where(np.linalg.norm(p, axis=-1, keepdims=True) < 1e-6, np.cross(u, [1.0, 0.0, 0.0]), p))
    mid = base + l1 * (cos_a * u + np.sqrt(1.0 - cos_a ** 2) * p)
    return mid, base + dist * u, p


def _yaw(angle: np.ndarray) -> np.ndarray:
    return axis_rotation("y", angle)


def _smoothstep(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3.0 - 2.0 * x)


def _ramp(n: int, a: float, b: float) -> np.ndarray:
    """0 before frame a, 1 after frame b, smooth in between."""
    t = np.arange(n, dtype=np.float64)
    return _smoothstep((t - a) / max(b - a, 1e-6))


def _bump(n: int, a: float, b: float, c: float, d: float) -> np.ndarray:
    """Rises over [a, b], holds, falls over [c, d]."""
    return _ramp(n, a, b) * (1.0 - _ramp(n, c, d))


# ---------------------------------------------------------------------------------------------------------------------
# Controls
# ---------------------------------------------------------------------------------------------------------------------

_CONTROL_SHAPES = {
    "fwd": (), "lat": (), "yaw_rate": (), "gait": (), "cadence": (), "duty": (), "lift": (), "reach": (),
    "flight": (), "free": (2,), "foot_off": (2, 3), "pelvis": (3,), "pelvis_rot": (3,), "spine": (3,), "head": (2,),
    "arm": (2, 4), "pole": (2, 3), "swing": (),
}
_SMOOTHED = ("fwd", "lat", "yaw_rate", "pelvis", "pelvis_rot", "spine", "head", "arm", "pole", "foot_off", "swing")


@dataclass
class _Style:
    """Per-motion idiosyncrasies: body scale, posture, arm carriage."""

    scale: float
    step_width: float
    lean: float
    head_pitch: float
    arm_abd: float
    elbow: float
    swing: float

    @classmethod
    def sample(cls, rng: np.random.Generator) -> _Style:
        return cls(scale=rng.uniform(0.9, 1.1), step_width=rng.uniform(0.0, 0.03), lean=rng.uniform(-0.03, 0.08),
                   head_pitch=rng.uniform(-0.1, 0.15), arm_abd=rng.uniform(0.06, 0.2), elbow=rng.uniform(0.15, 0.4),
                   swing=rng.uniform(0.25, 0.45))


def _rest_controls(n: int, style: _Style) -> dict[str, np.ndarray]:
    """Standing still, arms hanging."""
    c = {k: np.zeros((n,) + s) for k, s in _CONTROL_SHAPES.items()}
    c["cadence"][:] = 1.0
    c["duty"][:] = 0.6
    c["reach"][:] = 0.995
    c["spine"][:, 0] = style.lean
    c["head"][:, 0] = style.head_pitch
    c["arm"][:, :, 1] = style.arm_abd
    c["arm"][:, :, 3] = style.elbow
    c["pole"][:] = _arm_pole(n, "back")
    return c


def _arm_pole(n: int, kind: str) -> np.ndarray:
    """Elbow pole vectors (n, 2, 3) in the chest frame: "back" (hanging arms), "out" (raised), "down" (forward)."""
    base = {"back": (0.3, 0.0, -1.0), "out": (1.0, -0.4, -0.3), "down": (0.6, -1.0, 0.0)}[kind]
    pole = np.array([[base[0], base[1], base[2]], [-base[0], base[1], base[2]]])
    return np.broadcast_to(_unit(pole), (n,) + pole.shape).copy()


def _set_arm(c: dict[str, np.ndarray], side: int, weight: np.ndarray, flex: np.ndarray | float = 0.0,
             abd: np.ndarray | float = 0.0, hadd: np.ndarray | float = 0.0, elbow: np.ndarray | float = 0.0,
             pole: str | None = None) -> None:
    """Blend arm ``side`` towards the given pose by ``weight`` (n,)."""
    w = weight[:, None]
    # broadcasting against weight turns scalar arguments into (n,) curves
    target = np.stack(np.broadcast_arrays(flex, abd, hadd, elbow, weight)[:4], axis=-1)
    c["arm"][:, side] = (1.0 - w) * c["arm"][:, side] + w * target
    if pole is not None:
        c["pole"][:, side] = (1.0 - w) * c["pole"][:, side] + w * _arm_pole(len(weight), pole)[:, side]
