"""Procedural text-motion pairs on the SMPL-22 skeleton: a small dataset that needs no download.

Every motion is forward kinematics of joint rotations on a skeleton with the HumanML3D target proportions (times a
random body scale, so retargeting inside ``extract_features`` is an exact rescaling). The rotations come from a few
per-frame controls (body velocity and turn rate, gait on/off, pelvis offset, spine and head angles, arm directions):

- Legs are solved by two-bone inverse kinematics towards footholds. A stance foot stays on the world position where
  it landed (placed under the hip at mid-stance), a swing foot travels on an arc to its next foothold, so feet do
  not slide whatever the speed or turn rate. The pelvis is lowered where a stance leg could not reach.
- Arms are solved by two-bone IK from a direction (flexion, abduction, horizontal adduction), an elbow angle and an
  elbow pole, all in the chest frame.
- Bone rotations are the frames that carry the rest bone onto the solved bone, so the returned local rotations drive
  ``utils.bvh.forward_kinematics`` to the returned joints.

Actions: walk (slow/normal/fast, forward/backward, curving), run (jog/run/sprint), sidestep, turn in place (90/180
degrees, spin 360), jump (1-3, in place or forward), wave (left/right/both), kick (left/right), sit down (and stand
up), bow, squat, clap, raise arms (forward/sideways/overhead), punch; plus sequences ("walks forward and then turns
around") and walking while waving or clapping. Captions come from several templates per action and state the sampled
parameters (speed, side, count, angle); sequences also get sub-clip captions with their time tags.

``generate_synthetic_dataset`` writes the HumanML3D layout; the dataset is registered as ``synthetic``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np
from scipy.ndimage import gaussian_filter1d

from utils.bvh import (
    axis_rotation,
    forward_kinematics,
    make_layout_dirs,
    parents_from_chain,
    split_groups,
    write_mean_std,
    write_motion,
    write_split_files,
)
from utils.dataset_specs import DATASETS, T2M_KINEMATIC_CHAIN
from utils.paramutil import T2M_TGT_BONE_LENGTHS
from utils.text_tags import format_text_line

logger = logging.getLogger(__name__)

FPS = 20.0
MIN_FRAMES = 40  # feature frames (T - 1), as the HumanML3D loaders require
MAX_FRAMES = 196
PARENTS = parents_from_chain(T2M_KINEMATIC_CHAIN, 22)
LEFT, RIGHT = 0, 1
_SIDE = np.array([1.0, -1.0])  # +x is the body's left
_UP = np.array([0.0, 1.0, 0.0])

# Rest bone directions (joint minus parent), left side; the right side mirrors x. Body faces +Z, +X is its left.
_REST_DIRS_LEFT = {
    1: (0.6, -0.8, -0.05), 3: (0.0, 1.0, -0.1), 4: (0.02, -1.0, 0.02), 6: (0.0, 1.0, 0.05), 7: (-0.02, -1.0, -0.06),
    9: (0.0, 1.0, 0.08), 10: (0.05, -0.45, 0.9), 12: (0.0, 1.0, -0.12), 13: (0.55, 0.83, -0.05), 15: (0.0, 0.85, 0.5),
    16: (0.96, -0.2, -0.15), 18: (0.1, -1.0, -0.02), 20: (0.02, -1.0, 0.08),
}
_MIRROR = {2: 1, 5: 4, 8: 7, 11: 10, 14: 13, 17: 16, 19: 18, 21: 20}
_HIP, _KNEE, _ANKLE, _TOE = (1, 2), (4, 5), (7, 8), (10, 11)
_SHOULDER, _ELBOW, _WRIST, _COLLAR = (16, 17), (18, 19), (20, 21), (13, 14)


def rest_offsets(scale: float = 1.0) -> np.ndarray:
    """Rest offsets (22, 3) in metres: realistic bone directions with the HumanML3D target bone lengths x scale."""
    dirs = np.zeros((22, 3))
    for j, d in _REST_DIRS_LEFT.items():
        dirs[j] = d
    for j, m in _MIRROR.items():
        dirs[j] = dirs[m] * np.array([-1.0, 1.0, 1.0])
    norms = np.linalg.norm(dirs, axis=-1, keepdims=True)
    dirs = np.divide(dirs, norms, out=np.zeros_like(dirs), where=norms > 0)
    return dirs * T2M_TGT_BONE_LENGTHS.astype(np.float64)[:, None] * scale


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


# ---------------------------------------------------------------------------------------------------------------------
# Captions
# ---------------------------------------------------------------------------------------------------------------------

_SUBJECTS = ("a person", "someone", "the person", "a man", "a woman", "a figure", "the figure", "a human",
             "the man", "the woman")
_POSSESSIVE = {"a man": "his", "the man": "his", "a woman": "her", "the woman": "her"}
_CARDINALS = {1: "one", 2: "two", 3: "three", 4: "four", 5: "five", 6: "six", 7: "seven", 8: "eight", 9: "nine",
              10: "ten", 11: "eleven", 12: "twelve"}


@dataclass
class _Segment:
    """One action: its controls, verb phrases (present tense, "{their}" for the possessive) and, for actions that
    can accompany walking, gerund phrases ("waving ...")."""

    label: str
    controls: dict[str, np.ndarray]
    phrases: list[str]
    gerunds: list[str] = field(default_factory=list)

    @property
    def frames(self) -> int:
        return len(self.controls["fwd"])


def _caption(subject: str, body: str) -> str:
    return f"{subject} {body}".replace("{their}", _POSSESSIVE.get(subject, "their"))


def _pick_captions(rng: np.random.Generator, bodies: list[str], count: int = 3) -> list[str]:
    """``count`` distinct captions from caption bodies, each with a random subject, preferring distinct bodies."""
    order = list(rng.permutation(len(bodies)))
    picked: list[str] = []
    for i in range(count * 4):
        body = bodies[order[i % len(order)]]
        caption = _caption(_SUBJECTS[rng.integers(len(_SUBJECTS))], body)
        if caption not in picked:
            picked.append(caption)
        if len(picked) == count:
            break
    return picked


def _sequence_bodies(rng: np.random.Generator, segments: list[_Segment], n: int = 6) -> list[str]:
    """Caption bodies for segments performed one after the other."""
    bodies = []
    for _ in range(n):
        # progressive phrases ("is walking") do not chain with present ones ("turns and then is walking")
        options = [[p for p in s.phrases if not p.startswith("is ")] or s.phrases for s in segments]
        parts = [o[rng.integers(len(o))] for o in options]
        if len(parts) == 2:
            template = rng.integers(3)
            body = (f"{parts[0]} and then {parts[1]}", f"{parts[0]}, then {parts[1]}",
                    f"first {parts[0]} and then {parts[1]}")[template]
        else:
            template = rng.integers(2)
            body = (f"{', '.join(parts[:-1])} and then {parts[-1]}",
                    f"first {parts[0]}, then {', then '.join(parts[1:-1])} and finally {parts[-1]}")[template]
        bodies.append(body)
    return bodies


# ---------------------------------------------------------------------------------------------------------------------
# Actions
# ---------------------------------------------------------------------------------------------------------------------

def _frames(seconds: float) -> int:
    return int(round(seconds * FPS))


def _gait(c: dict[str, np.ndarray], on: np.ndarray, cadence: float, duty: float, lift: float,
          reach: float = 0.995, swing: float = 0.0, weight: np.ndarray | None = None) -> None:
    """Step on the frames where ``on``; ``weight`` (n,) scales the natural arm swing (default: ``on``)."""
    on = np.asarray(on, dtype=bool)
    weight = on.astype(float) if weight is None else weight
    c["gait"][on] = 1.0
    c["cadence"][on] = cadence
    c["duty"][on] = duty
    c["lift"][on] = lift
    c["reach"][on] = reach
    c["swing"] += weight * swing


def _walk(rng: np.random.Generator, style: _Style, n: int, start: bool, stop: bool, speed: str | None = None,
          direction: str | None = None, curve: str | None = None) -> _Segment:
    speed = speed or rng.choice(["slow", "normal", "normal", "fast"])
    direction = direction or ("backward" if rng.random() < 0.2 else "forward")
    if direction == "backward":
        speed = "slow" if speed == "fast" else speed
        curve = "none"
    curve = curve or rng.choice(["none", "none", "none", "left", "right"])
    v, cadence = {"slow": (rng.uniform(0.55, 0.8), rng.uniform(0.72, 0.82)),
                  "normal": (rng.uniform(0.95, 1.25), rng.uniform(0.88, 0.98)),
                  "fast": (rng.uniform(1.55, 1.85), rng.uniform(1.05, 1.15))}[speed]
    if direction == "backward":
        v *= 0.75
    c = _rest_controls(n, style)
    w = np.ones(n)
    if start:
        w *= _ramp(n, 0, 12)
    if stop:
        w *= 1.0 - _ramp(n, n - 14, n - 2)
    c["fwd"] = w * v * (1.0 if direction == "forward" else -1.0)
    # A stopping walker keeps stepping until the body has come to rest.
    on = np.arange(n) < (n - 3 if stop else n)
    swing = style.swing * {"slow": 0.8, "normal": 1.0, "fast": 1.2}[speed]
    _gait(c, on, cadence, 0.6, rng.uniform(0.07, 0.11), swing=swing, weight=w)
    c["spine"][:, 0] += w * (0.05 if speed == "fast" else 0.0) - w * (0.06 if direction == "backward" else 0.0)
    turned = 0.0
    if curve != "none":
        rate = np.radians(rng.uniform(25.0, 55.0)) * (1.0 if curve == "left" else -1.0)
        c["yaw_rate"] = w * rate
        turned = abs(np.degrees(np.sum(c["yaw_rate"]) / FPS))
    steps = int(round(np.sum(c["gait"]) * cadence * 2.0 / FPS))
    adverb = {"slow": ["slowly", "at a slow pace", "leisurely"], "normal": ["", "at a normal pace", "steadily"],
              "fast": ["quickly", "fast", "briskly"]}[speed]
    phrases = []
    if direction == "backward":
        for a in adverb:
            phrases += [f"walks backwards {a}".strip(), f"walks backward {a}".strip(), f"steps backwards {a}".strip()]
        if speed == "slow":
            phrases.append("slowly walks backwards")
    elif curve != "none":
        side = curve
        if turned >= 300:
            sense = "counterclockwise" if side == "left" else "clockwise"
            phrases += [f"walks in a circle {sense}", f"walks around in a circle to the {side}",
                        f"walks in a full circle turning {side}"]
        elif turned >= 140:
            phrases += [f"walks in a half circle to the {side}", f"walks in a big curve to the {side}",
                        f"walks forward and curves around to the {side}"]
        else:
            phrases += [f"walks forward while curving to the {side}", f"walks in a curve to the {side}",
                        f"walks forward and veers to the {side}"]
        if speed != "normal":
            phrases = [f"{'slowly' if speed == 'slow' else 'quickly'} {p}" for p in phrases]
    else:
        for a in adverb:
            phrases += [f"walks forward {a}".strip(), f"walks straight ahead {a}".strip()]
        phrases += {"slow": ["slowly walks forward", "strolls forward slowly"],
                    "normal": ["walks forward", "is walking forward"],
                    "fast": ["quickly walks forward", "walks forward at a fast pace", "hurries forward"]}[speed]
        if 2 <= steps <= 12 and not start and not stop:
            phrases.append(f"takes about {_CARDINALS[steps]} steps forward")
    return _Segment(f"walk_{direction}_{speed}" + ("" if curve == "none" else f"_curve_{curve}"), c, phrases)


def _run(rng: np.random.Generator, style: _Style, n: int, start: bool, stop: bool) -> _Segment:
    kind = rng.choice(["jog", "run", "sprint"])
    v, cadence, duty = {"jog": (rng.uniform(1.9, 2.4), rng.uniform(1.25, 1.35), 0.45),
                        "run": (rng.uniform(2.6, 3.3), rng.uniform(1.35, 1.45), 0.38),
                        "sprint": (rng.uniform(3.8, 4.6), rng.uniform(1.5, 1.6), 0.32)}[kind]
    c = _rest_controls(n, style)
    w = np.ones(n)
    if start:
        w *= _ramp(n, 0, 14)
    if stop:
        w *= 1.0 - _ramp(n, n - 16, n - 2)
    c["fwd"] = w * v
    _gait(c, np.arange(n) < (n - 3 if stop else n), cadence, duty, rng.uniform(0.14, 0.22), reach=0.95, weight=w)
    c["spine"][:, 0] += w * (0.12 + 0.05 * (kind == "sprint"))
    # Runners carry their arms bent and swing them from the shoulder.
    _set_arm(c, LEFT, w, flex=0.1, abd=0.15, elbow=1.5, pole="back")
    _set_arm(c, RIGHT, w, flex=0.1, abd=0.15, elbow=1.5, pole="back")
    c["swing"] += w * (0.55 + 0.15 * (kind == "sprint"))
    phrases = {"jog": ["jogs forward", "jogs", "is jogging forward", "runs slowly forward", "jogs straight ahead"],
               "run": ["runs forward", "runs", "is running forward", "runs straight ahead"],
               "sprint": ["sprints forward", "runs forward very fast", "sprints", "dashes forward",
                          "runs quickly forward"]}[kind]
    return _Segment(f"run_{kind}", c, phrases)


def _sidestep(rng: np.random.Generator, style: _Style, n: int) -> _Segment:
    side = rng.choice(["left", "right"])
    c = _rest_controls(n, style)
    w = _bump(n, 0, 8, n - 10, n - 2)
    c["lat"] = w * rng.uniform(0.3, 0.5) * (1.0 if side == "left" else -1.0)
    _gait(c, np.arange(n) < n - 8, rng.uniform(0.8, 0.95), 0.7, 0.06)
    phrases = [f"sidesteps to the {side}", f"steps sideways to the {side}", f"shuffles sideways to the {side}",
               f"moves sideways to the {side}", f"side steps to the {side}"]
    return _Segment(f"sidestep_{side}", c, phrases)


def _turn(rng: np.random.Generator, style: _Style, angle: int | None = None, side: str | None = None) -> _Segment:
    angle = angle or int(rng.choice([90, 180, 180, 360]))
    side = side or rng.choice(["left", "right"])
    duration = {90: rng.uniform(1.0, 1.6), 180: rng.uniform(1.4, 2.2), 360: rng.uniform(1.2, 2.0)}[angle]
    lead, tail = _frames(rng.uniform(0.3, 0.6)), _frames(rng.uniform(0.4, 0.8))
    turn_frames = _frames(duration)
    n = lead + turn_frames + tail
    c = _rest_controls(n, style)
    profile = np.sin(np.pi * np.clip((np.arange(n) - lead) / turn_frames, 0, 1)) ** 2
    profile[: lead] = 0.0
    profile[lead + turn_frames:] = 0.0
    rate = profile / max(profile.sum() / FPS, 1e-6) * np.radians(angle)
    c["yaw_rate"] = rate * (1.0 if side == "left" else -1.0)
    stepping = (np.arange(n) >= lead) & (np.arange(n) < lead + turn_frames)
    _gait(c, stepping, 1.7 if angle == 360 else 1.3, 0.6, 0.05)
    c["head"][:, 1] += 0.3 * profile / max(profile.max(), 1e-6) * (1.0 if side == "left" else -1.0)
    if angle == 90:
        phrases = [f"turns {side}", f"turns to the {side}", f"turns 90 degrees to the {side}",
                   f"makes a quarter turn to the {side}", f"turns ninety degrees to the {side}"]
    elif angle == 180:
        phrases = ["turns around", f"turns around to the {side}", f"turns 180 degrees to the {side}",
                   f"does a half turn to the {side}", "turns around to face the other way"]
    else:
        sense = "counterclockwise" if side == "left" else "clockwise"
        phrases = [f"spins around to the {side}", "spins around once", f"turns a full circle {sense}",
                   f"does a full turn to the {side}", f"spins in place {sense}"]
    return _Segment(f"turn_{angle}_{side}", c, phrases)


def _jump(rng: np.random.Generator, style: _Style) -> _Segment:
    count = int(rng.choice([1, 1, 2, 3]))
    forward = rng.random() < 0.4
    high = rng.random() < 0.3
    height = rng.uniform(0.3, 0.4) if high else rng.uniform(0.12, 0.25)
    flight = max(2, _frames(2.0 * np.sqrt(2.0 * height / 9.81)))
    crouch, land, rest = _frames(0.4), _frames(0.3), _frames(rng.uniform(0.25, 0.5))
    lead = _frames(rng.uniform(0.3, 0.6))
    n = lead + count * (crouch + flight + land + rest) + _frames(0.3)
    c = _rest_controls(n, style)
    t0 = lead
    for _ in range(count):
        take_off, touch = t0 + crouch, t0 + crouch + flight
        dip = _bump(n, t0, t0 + crouch - 3, t0 + crouch - 3, take_off) * -0.18
        absorb = _bump(n, touch, touch + 3, touch + 3, touch + land + rest) * -0.14
        s = np.clip((np.arange(n) - take_off) / flight, 0.0, 1.0)
        in_air = (np.arange(n) >= take_off) & (np.arange(n) < touch)
        c["pelvis"][:, 1] += dip + absorb + np.where(in_air, 4.0 * height * s * (1.0 - s), 0.0)
        c["flight"][in_air] = 1.0
        c["lift"][in_air] = height
        if forward:
            c["fwd"][in_air] = rng.uniform(0.35, 0.7) / (flight / FPS)
        swing_back = _bump(n, t0, t0 + crouch - 2, t0 + crouch - 2, take_off)
        swing_up = _bump(n, take_off - 1, take_off + 2, touch - 1, touch + land)
        for side in (LEFT, RIGHT):
            _set_arm(c, side, swing_back, flex=-0.6, abd=0.2, elbow=0.3)
            _set_arm(c, side, swing_up, flex=1.4 if high else 0.8, abd=0.25, elbow=0.3, pole="down")
        c["spine"][:, 0] += 0.35 * swing_back + 0.2 * _bump(n, touch, touch + 2, touch + 3, touch + land)
        t0 = touch + land + rest
    if forward:
        phrases = {1: ["jumps forward", "leaps forward", "does a jump forward", "jumps forward once"],
                   2: ["jumps forward twice", "does two jumps forward", "jumps forward two times"],
                   3: ["jumps forward three times", "does three jumps forward", "leaps forward three times"]}[count]
    else:
        phrases = {1: ["jumps", "jumps up", "jumps once", "does a jump in place", "jumps up in place"],
                   2: ["jumps twice", "jumps two times", "jumps up and down twice", "does two jumps in place"],
                   3: ["jumps three times", "jumps up and down three times", "does three jumps in place"]}[count]
    if high and not forward:
        phrases = [p.replace("jumps", "jumps high", 1) if p.startswith("jumps") else p for p in phrases]
    return _Segment(f"jump{'_forward' if forward else ''}_{count}", c, phrases)


def _wave_controls(c: dict[str, np.ndarray], rng: np.random.Generator, sides: tuple[int, ...], w: np.ndarray,
                   freq: float) -> None:
    n = len(w)
    phase = 2.0 * np.pi * freq * np.arange(n) / FPS
    for side in sides:
        osc = np.sin(phase + (np.pi if side == RIGHT else 0.0))
        _set_arm(c, side, w, flex=0.35 + 0.1 * osc, abd=rng.uniform(2.1, 2.5) + 0.2 * osc, hadd=0.0,
                 elbow=1.2 + 0.35 * osc, pole="down")


def _hand_words(sides: tuple[int, ...]) -> tuple[str, str]:
    if len(sides) == 2:
        return "both hands", "both arms"
    name = "left" if sides[0] == LEFT else "right"
    return f"{{their}} {name} hand", f"{{their}} {name} arm"


def _wave(rng: np.random.Generator, style: _Style, n: int | None = None) -> _Segment:
    sides = [(LEFT,), (RIGHT,), (RIGHT,), (LEFT, RIGHT)][rng.integers(4)]
    quick = rng.random() < 0.3
    freq = rng.uniform(2.2, 2.8) if quick else rng.uniform(1.2, 1.8)
    n = n or _frames(rng.uniform(2.5, 5.0))
    c = _rest_controls(n, style)
    w = _bump(n, 2, 10, n - 10, n - 2)
    _wave_controls(c, rng, sides, w, freq)
    hand, arm = _hand_words(sides)
    adv = "quickly " if quick else ""
    phrases = [f"{adv}waves with {hand}", f"{adv}waves {hand}", f"raises {hand} and {adv}waves",
               f"{adv}waves hello with {hand}", f"{adv}waves goodbye with {hand}"]
    gerunds = [f"{'quickly ' if quick else ''}waving with {hand}", f"waving {hand}", f"waving {arm} in the air"]
    label = "wave_" + ("both" if len(sides) == 2 else ("left" if sides[0] == LEFT else "right"))
    return _Segment(label, c, phrases, gerunds)


def _kick(rng: np.random.Generator, style: _Style) -> _Segment:
    side = int(rng.integers(2))
    count = int(rng.choice([1, 1, 2]))
    high = rng.random() < 0.4
    lead, kick, rest = _frames(rng.uniform(0.4, 0.7)), _frames(rng.uniform(0.6, 0.9)), _frames(rng.uniform(0.3, 0.6))
    n = lead + count * (kick + rest) + _frames(0.4)
    c = _rest_controls(n, style)
    stance = 1 - side
    shift = _bump(n, lead - 8, lead, n - _frames(0.4) - 4, n - 2)
    c["pelvis"][:, 0] += shift * 0.07 * _SIDE[stance]
    t0 = lead
    for _ in range(count):
        t = np.arange(n, dtype=np.float64)
        s = np.clip((t - t0) / kick, 0.0, 1.0)
        active = (t >= t0) & (t < t0 + kick)
        c["free"][active, side] = 1.0
        # chamber (knee up), snap out, retract
        extend = np.sin(np.pi * s) ** 2
        up = (0.5 if high else 0.28) * extend + 0.12 * np.sin(np.pi * s)
        c["foot_off"][:, side, 1] += np.where(active, up, 0.0)
        c["foot_off"][:, side, 2] += np.where(active, (0.5 if high else 0.42) * extend, 0.0)
        c["spine"][:, 0] -= np.where(active, 0.25 * extend, 0.0)
        guard = _bump(n, t0 - 4, t0 + 2, t0 + kick, t0 + kick + 6)
        for arm in (LEFT, RIGHT):
            _set_arm(c, arm, guard, flex=0.6, abd=0.35, elbow=1.3, pole="back")
        t0 += kick + rest
    name = "left" if side == LEFT else "right"
    if count == 1:
        phrases = [f"kicks with {{their}} {name} leg", f"kicks forward with {{their}} {name} foot",
                   f"does a {'high ' if high else ''}kick with the {name} leg",
                   f"kicks {{their}} {name} leg forward"]
    else:
        phrases = [f"kicks twice with {{their}} {name} leg", f"does two kicks with the {name} leg",
                   f"kicks forward two times with the {name} foot"]
    if high:
        phrases.append(f"kicks high with the {name} leg")
    return _Segment(f"kick_{name}", c, phrases)


def _sit(rng: np.random.Generator, style: _Style, h0: float) -> _Segment:
    stand_up = rng.random() < 0.5
    down, hold, up = _frames(rng.uniform(1.0, 1.6)), _frames(rng.uniform(1.0, 2.5)), _frames(rng.uniform(1.0, 1.5))
    lead = _frames(rng.uniform(0.3, 0.6))
    n = lead + down + hold + (up + _frames(0.4) if stand_up else 0)
    c = _rest_controls(n, style)
    seat = rng.uniform(0.42, 0.5)
    end_down = lead + down
    sat = _ramp(n, lead, end_down)
    if stand_up:
        sat = sat * (1.0 - _ramp(n, end_down + hold, end_down + hold + up))
    lean = _bump(n, lead, lead + down * 0.5, lead + down * 0.6, end_down + 4)
    if stand_up:
        lean += _bump(n, end_down + hold - 2, end_down + hold + up * 0.4, end_down + hold + up * 0.5,
                      end_down + hold + up)
    c["pelvis"][:, 1] = -sat * (h0 - seat - 0.08)
    c["pelvis"][:, 2] = -sat * rng.uniform(0.22, 0.3)
    c["pelvis_rot"][:, 0] = 0.5 * lean + 0.1 * sat
    c["spine"][:, 0] += 0.35 * lean
    for side in (LEFT, RIGHT):
        _set_arm(c, side, sat, flex=0.75, abd=0.15, elbow=0.9, pole="back")
    if stand_up:
        phrases = ["sits down and stands back up", "sits down on a chair and gets up again",
                   "sits down for a moment and stands up", "takes a seat and stands up again"]
    else:
        phrases = ["sits down", "sits down on a chair", "takes a seat", "sits down slowly" if down > 28 else
                   "lowers {their} body onto a seat"]
    return _Segment("sit_stand" if stand_up else "sit", c, phrases)


def _bow(rng: np.random.Generator, style: _Style) -> _Segment:
    deep = rng.random() < 0.5
    count = int(rng.choice([1, 1, 2]))
    angle = rng.uniform(0.85, 1.1) if deep else rng.uniform(0.3, 0.5)
    down, hold, up = _frames(rng.uniform(0.6, 1.0)), _frames(rng.uniform(0.4, 1.2)), _frames(rng.uniform(0.6, 1.0))
    lead = _frames(rng.uniform(0.3, 0.7))
    n = lead + count * (down + hold + up + _frames(0.3)) + _frames(0.3)
    c = _rest_controls(n, style)
    t0 = lead
    bend = np.zeros(n)
    for _ in range(count):
        bend += _bump(n, t0, t0 + down, t0 + down + hold, t0 + down + hold + up)
        t0 += down + hold + up + _frames(0.3)
    c["pelvis_rot"][:, 0] = 0.55 * angle * bend
    c["spine"][:, 0] += 0.45 * angle * bend
    c["head"][:, 0] += 0.2 * bend
    c["pelvis"][:, 2] = -0.1 * angle * bend
    for side in (LEFT, RIGHT):
        c["arm"][:, side, 0] += 0.6 * angle * bend  # arms hang towards the floor
    if count == 2:
        phrases = ["bows twice", "bows two times", f"bows {'deeply ' if deep else ''}twice"]
    elif deep:
        phrases = ["bows deeply", "makes a deep bow", "bows down deeply", "bends forward in a deep bow"]
    else:
        phrases = ["gives a slight bow", "bows slightly", "nods with a small bow", "bows a little"]
    phrases.append("bows")
    return _Segment("bow", c, phrases)


def _squat(rng: np.random.Generator, style: _Style) -> _Segment:
    count = int(rng.choice([1, 2, 3]))
    period = _frames(rng.uniform(1.5, 2.2))
    lead = _frames(rng.uniform(0.3, 0.6))
    n = lead + count * period + _frames(0.4)
    c = _rest_controls(n, style)
    depth = rng.uniform(0.3, 0.42)
    t = np.arange(n, dtype=np.float64)
    s = np.clip((t - lead) / period, 0.0, count)
    down = np.where((t >= lead) & (t < lead + count * period), np.sin(np.pi * (s % 1.0)) ** 2, 0.0)
    c["pelvis"][:, 1] = -depth * down
    c["pelvis"][:, 2] = -0.15 * down
    c["pelvis_rot"][:, 0] = 0.35 * down
    c["spine"][:, 0] += 0.2 * down
    arms_up = _bump(n, lead - 4, lead + 4, lead + count * period - 4, lead + count * period + 4)
    for side in (LEFT, RIGHT):
        _set_arm(c, side, arms_up * (0.4 + 0.6 * down), flex=1.45, abd=0.1, elbow=0.2, pole="out")
    phrases = {1: ["squats down and stands back up", "does a squat", "squats once", "squats"],
               2: ["squats twice", "does two squats", "squats down two times"],
               3: ["squats three times", "does three squats", "squats down and up three times"]}[count]
    return _Segment(f"squat_{count}", c, phrases)


def _clap_controls(c: dict[str, np.ndarray], w: np.ndarray, claps: int, start: int, period: int) -> None:
    n = len(w)
    t = np.arange(n, dtype=np.float64)
    phase = np.clip((t - start) / period, 0.0, claps)
    together = np.where((t >= start) & (t < start + claps * period), np.sin(np.pi * (phase % 1.0)) ** 2, 0.0)
    for side in (LEFT, RIGHT):
        # hadd -0.25 holds the wrists about 35 cm apart, +0.17 brings them within a few cm in front of the chest
        _set_arm(c, side, w, flex=0.9, abd=0.0, hadd=-0.25 + 0.42 * together, elbow=0.9, pole="down")


def _clap(rng: np.random.Generator, style: _Style, n: int | None = None) -> _Segment:
    claps = int(rng.integers(3, 8))
    period = _frames(rng.uniform(0.35, 0.55))
    lead = _frames(rng.uniform(0.5, 0.8))
    n = n or lead + claps * period + _frames(rng.uniform(0.6, 1.0))
    claps = min(claps, max(1, (n - lead - 8) // period))
    c = _rest_controls(n, style)
    w = _bump(n, lead - 8, lead, lead + claps * period, lead + claps * period + 8)
    _clap_controls(c, w, claps, lead, period)
    count = _CARDINALS.get(claps, str(claps))
    phrases = [f"claps {{their}} hands {count} times", f"claps {count} times", "claps {their} hands",
               "claps in front of {their} chest", "applauds"]
    gerunds = ["clapping {their} hands", "clapping", "clapping in front of {their} chest"]
    return _Segment(f"clap_{claps}", c, phrases, gerunds)


def _raise_arms(rng: np.random.Generator, style: _Style) -> _Segment:
    sides = [(LEFT,), (RIGHT,), (LEFT, RIGHT), (LEFT, RIGHT)][rng.integers(4)]
    how = rng.choice(["forward", "side", "up"])
    rise, hold, fall = _frames(rng.uniform(0.6, 1.0)), _frames(rng.uniform(0.8, 2.0)), _frames(rng.uniform(0.6, 1.0))
    lead = _frames(rng.uniform(0.3, 0.6))
    n = lead + rise + hold + fall + _frames(0.4)
    c = _rest_controls(n, style)
    w = _bump(n, lead, lead + rise, lead + rise + hold, lead + rise + hold + fall)
    pose = {"forward": dict(flex=1.5, abd=0.05, elbow=0.1, pole="out"),
            "side": dict(flex=0.1, abd=1.5, elbow=0.1, pole="back"),
            "up": dict(flex=0.3, abd=2.85, elbow=0.15, pole="out")}[how]
    for side in sides:
        _set_arm(c, side, w, **pose)
    _, arm = _hand_words(sides)
    if how == "forward":
        phrases = [f"raises {arm} forward", f"lifts {arm} to the front", f"holds {arm} straight out in front",
                   f"raises {arm} in front of {{their}} body"]
    elif how == "side":
        phrases = [f"raises {arm} to the side" + ("s" if len(sides) == 2 else ""),
                   f"lifts {arm} out to the side" + ("s" if len(sides) == 2 else ""),
                   f"stretches {arm} out sideways"]
    else:
        phrases = [f"raises {arm} above {{their}} head", f"lifts {arm} up over {{their}} head",
                   f"raises {arm} straight up", f"reaches up with {arm}"]
    phrases = [p + " and lowers " + ("them" if len(sides) == 2 else "it") + " again" if i == 0 else p
               for i, p in enumerate(phrases)]
    gerunds = [f"holding {arm} up" if how == "up" else f"holding {arm} out"]
    label = "raise_" + ("both" if len(sides) == 2 else ("left" if sides[0] == LEFT else "right")) + f"_{how}"
    return _Segment(label, c, phrases, gerunds)


def _punch(rng: np.random.Generator, style: _Style) -> _Segment:
    count = int(rng.integers(2, 7))
    alternate = rng.random() < 0.6
    first = int(rng.integers(2))
    period = _frames(rng.uniform(0.4, 0.6))
    lead = _frames(rng.uniform(0.4, 0.7))
    n = lead + count * period + _frames(0.6)
    c = _rest_controls(n, style)
    guard = _bump(n, lead - 8, lead - 1, lead + count * period, lead + count * period + 8)
    c["pelvis"][:, 1] -= 0.05 * guard
    for side in (LEFT, RIGHT):
        _set_arm(c, side, guard, flex=1.0, abd=0.35, hadd=0.35, elbow=2.1, pole="down")
    t = np.arange(n, dtype=np.float64)
    for k in range(count):
        side = (first + k) % 2 if alternate else first
        s = np.clip((t - lead - k * period) / period, 0.0, 1.0)
        hit = np.where((s > 0) & (s < 1), np.sin(np.pi * s) ** 2, 0.0)
        _set_arm(c, side, hit, flex=1.5, abd=0.1, hadd=0.4, elbow=0.1, pole="down")
        c["spine"][:, 1] += 0.3 * hit * -_SIDE[side]
    name = "left" if first == LEFT else "right"
    count_word = _CARDINALS[count]
    if alternate:
        phrases = [f"throws {count_word} punches", f"punches {count_word} times alternating fists",
                   "punches forward with both fists", f"throws {count_word} punches with alternating hands",
                   "boxes with both fists"]
        label = "punch_alternate"
    else:
        phrases = [f"punches {count_word} times with {{their}} {name} fist", f"punches with the {name} fist",
                   f"throws {count_word} punches with the {name} hand", f"punches forward with the {name} hand"]
        label = f"punch_{name}"
    return _Segment(label, c, phrases)


def _stand(rng: np.random.Generator, style: _Style) -> _Segment:
    n = _frames(rng.uniform(0.8, 1.5))
    return _Segment("stand", _rest_controls(n, style), ["stops", "stands still", "comes to a stop"])


SINGLE_ACTIONS = ("walk", "run", "sidestep", "turn", "jump", "wave", "kick", "sit", "bow", "squat", "clap",
                  "raise_arms", "punch")
SEQUENCE_KINDS = ("walk_turn_walk", "walk_turn", "turn_walk", "walk_stop", "walk_wave", "walk_sit", "jump_turn",
                  "wave_walk")
OVERLAY_KINDS = ("walk_while_wave", "walk_while_clap")
SYNTHETIC_ACTIONS = SINGLE_ACTIONS + SEQUENCE_KINDS + OVERLAY_KINDS


def _single(rng: np.random.Generator, style: _Style, kind: str, h0: float) -> _Segment:
    if kind == "walk":
        return _walk(rng, style, _frames(rng.uniform(2.5, 9.0)), start=False, stop=False)
    if kind == "run":
        return _run(rng, style, _frames(rng.uniform(2.2, 6.0)), start=False, stop=False)
    if kind == "sidestep":
        return _sidestep(rng, style, _frames(rng.uniform(2.2, 5.0)))
    if kind == "turn":
        return _turn(rng, style)
    if kind == "jump":
        return _jump(rng, style)
    if kind == "wave":
        return _wave(rng, style)
    if kind == "kick":
        return _kick(rng, style)
    if kind == "sit":
        return _sit(rng, style, h0)
    if kind == "bow":
        return _bow(rng, style)
    if kind == "squat":
        return _squat(rng, style)
    if kind == "clap":
        return _clap(rng, style)
    if kind == "raise_arms":
        return _raise_arms(rng, style)
    if kind == "punch":
        return _punch(rng, style)
    raise ValueError(f"unknown synthetic action {kind!r}; expected one of {SYNTHETIC_ACTIONS}")


def _sequence(rng: np.random.Generator, style: _Style, kind: str, h0: float) -> list[_Segment]:
    def walk(start: bool, stop: bool, seconds: tuple[float, float] = (2.0, 3.5)) -> _Segment:
        return _walk(rng, style, _frames(rng.uniform(*seconds)), start=start, stop=stop, direction="forward",
                     curve="none")

    if kind == "walk_turn_walk":
        angle = int(rng.choice([90, 180]))
        return [walk(False, True), _turn(rng, style, angle=angle), walk(True, False)]
    if kind == "walk_turn":
        return [walk(False, True, (2.5, 4.5)), _turn(rng, style)]
    if kind == "turn_walk":
        return [_turn(rng, style, angle=int(rng.choice([90, 180]))), walk(True, False, (2.5, 4.5))]
    if kind == "walk_stop":
        return [walk(False, True, (2.5, 5.0)), _stand(rng, style)]
    if kind == "walk_wave":
        return [walk(False, True, (2.0, 4.0)), _wave(rng, style)]
    if kind == "walk_sit":
        return [walk(False, True, (2.0, 3.5)), _sit(rng, style, h0)]
    if kind == "jump_turn":
        return [_jump(rng, style), _turn(rng, style)]
    if kind == "wave_walk":
        return [_wave(rng, style), walk(True, False, (2.0, 4.0))]
    raise ValueError(f"unknown synthetic sequence {kind!r}; expected one of {SEQUENCE_KINDS}")


def _overlay(rng: np.random.Generator, style: _Style, kind: str) -> _Segment:
    n = _frames(rng.uniform(3.0, 8.0))
    walk = _walk(rng, style, n, start=False, stop=False, direction="forward",
                 speed=rng.choice(["slow", "normal"]), curve="none")
    upper = _wave(rng, style, n) if kind == "walk_while_wave" else _clap(rng, style, n)
    c = walk.controls
    c["arm"], c["pole"] = upper.controls["arm"], upper.controls["pole"]
    w = _bump(n, 2, 10, n - 10, n - 2)
    c["swing"] *= 1.0 - w
    bodies = [f"{p} while {g}" for p in walk.phrases for g in upper.gerunds]
    return _Segment(f"{walk.label}+{upper.label}", c, bodies)


# ---------------------------------------------------------------------------------------------------------------------
# Synthesis
# ---------------------------------------------------------------------------------------------------------------------

class SyntheticMotion(NamedTuple):
    """One generated motion at 20 fps.

    kind: the sampled entry of ``SYNTHETIC_ACTIONS``. joints: (T, 22, 3) metres, Y up. local_rotations:
    (T, 22, 3, 3), root_positions: (T, 3), offsets: (22, 3) rest offsets; ``forward_kinematics(local_rotations,
    offsets with row 0 replaced by root_positions, PARENTS)`` gives the joints. contacts: (T, 2) bool, left/right foot
    planted. captions: three whole-clip captions. subclips: ``(caption, start_s, end_s)`` for the parts of a
    sequence. label: the action(s) with their parameters; segments: ``(label, start, end)`` in frames.
    """

    kind: str
    joints: np.ndarray
    local_rotations: np.ndarray
    root_positions: np.ndarray
    offsets: np.ndarray
    contacts: np.ndarray
    captions: list[str]
    subclips: list[tuple[str, float, float]]
    label: str
    segments: list[tuple[str, int, int]]


def _contacts(c: dict[str, np.ndarray], rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Per-frame stance flags (n, 2) and gait phases (n, 2) from the gait controls.

    A leg's phase advances while the gait is on, or while it finishes a swing after the gait stopped; a stopped leg
    stays planted. When the gait restarts, one leg starts its swing at once and the other follows half a cycle later.
    """
    n = len(c["gait"])
    phase = np.array([0.0, 0.5]) + rng.uniform(0.0, 1.0)
    contact = np.ones((n, 2), dtype=bool)
    phases = np.zeros((n, 2))
    was_active = False
    for t in range(n):
        active = c["gait"][t] > 0.5
        if active and not was_active and t > 0:
            lead = int(rng.integers(2))
            phase[lead] = c["duty"][t]
            phase[1 - lead] = c["duty"][t] + 0.5
        for k in range(2):
            in_swing = (phase[k] % 1.0) >= c["duty"][t]
            phases[t, k] = phase[k]
            if not active and not in_swing:
                continue
            contact[t, k] = not in_swing
            phase[k] += c["cadence"][t] / FPS
        was_active = active
    contact &= c["flight"][:, None] < 0.5
    contact &= c["free"] < 0.5
    return contact, phases


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """[start, stop) of the runs of True."""
    edges = np.diff(np.concatenate([[0], mask.astype(np.int8), [0]]))
    return list(zip(np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)))


def _foot_targets(c: dict[str, np.ndarray], contact: np.ndarray, ref: np.ndarray, heading: np.ndarray,
                  lateral: np.ndarray, ankle_height: float) -> tuple[np.ndarray, np.ndarray]:
    """Ankle targets (n, 2, 3) and foot yaw (n, 2): stance feet stay on their foothold, swing feet arc to the next."""
    n = len(heading)
    targets = np.zeros((n, 2, 3))
    yaw = np.zeros((n, 2))
    for k in range(2):
        def foothold(t: int, k: int = k) -> np.ndarray:
            return ref[t] + _yaw(heading[t]) @ np.array([lateral[k], 0.0, 0.0]) + np.array([0.0, ankle_height, 0.0])

        stances = _runs(contact[:, k])
        holds = []
        for a, b in stances:
            mid = (a + b - 1) // 2
            holds.append((a, b, foothold(mid), heading[mid]))
            targets[a:b, k] = holds[-1][2]
            yaw[a:b, k] = heading[mid]
        for a, b in _runs(~contact[:, k]):
            prev = next((h for h in reversed(holds) if h[1] <= a), None)
            nxt = next((h for h in holds if h[0] >= b), None)
            p0, y0 = (prev[2], prev[3]) if prev else (foothold(a), heading[a])
            p1, y1 = (nxt[2], nxt[3]) if nxt else (foothold(b - 1), heading[b - 1])
            t = np.arange(a, b)
            s = (t - a + 1.0) / (b - a + 1.0)
            e = _smoothstep(s)[:, None]
            offset = np.einsum("tab,tb->ta", _yaw(heading[t]), c["foot_off"][t, k])
            targets[t, k] = (1 - e) * p0 + e * p1 + np.outer(c["lift"][t] * np.sin(np.pi * s), _UP) + offset
            dyaw = (y1 - y0 + np.pi) % (2 * np.pi) - np.pi
            yaw[t, k] = y0 + e[:, 0] * dyaw
    return targets, yaw


def _synthesize(c: dict[str, np.ndarray], style: _Style, rng: np.random.Generator) -> tuple[np.ndarray, ...]:
    """Joints (n, 22, 3), local rotations (n, 22, 3, 3), root positions (n, 3), offsets (22, 3), contacts (n, 2)."""
    n = len(c["fwd"])
    offsets = rest_offsets(style.scale)
    for key in _SMOOTHED:
        c[key] = gaussian_filter1d(c[key], sigma=1.5, axis=0, mode="nearest")
    heading = rng.uniform(-np.pi, np.pi) + np.concatenate([[0.0], np.cumsum(c["yaw_rate"][:-1])]) / FPS
    vel = np.einsum("tab,tb->ta", _yaw(heading), np.stack([c["lat"], np.zeros(n), c["fwd"]], axis=-1))
    ref = rng.uniform(-1.0, 1.0, 3) * np.array([1.0, 0.0, 1.0]) + np.concatenate([np.zeros((1, 3)),
                                                                                   np.cumsum(vel[:-1], 0) / FPS])
    contact, phases = _contacts(c, rng)

    thigh = np.linalg.norm(offsets[list(_KNEE)], axis=-1)
    shin = np.linalg.norm(offsets[list(_ANKLE)], axis=-1)
    foot = offsets[list(_TOE)]
    ankle_height = float(-foot[:, 1].mean())
    hip_off = offsets[list(_HIP)]
    standing = float(-hip_off[:, 1].mean() + ((thigh + shin) * 0.99).mean() + ankle_height)
    lateral = hip_off[:, 0] + _SIDE * (0.01 + style.step_width)
    targets, foot_yaw = _foot_targets(c, contact, ref, heading, lateral, ankle_height)

    # Pelvis: the requested height, lowered where a stance leg could not reach its foothold.
    pelvis = ref + np.einsum("tab,tb->ta", _yaw(heading), c["pelvis"] + np.array([0.0, standing, 0.0]))
    for _ in range(2):
        cap = np.full(n, np.inf)
        for k in range(2):
            hip_xz = pelvis + np.einsum("tab,b->ta", _yaw(heading), hip_off[k] * np.array([1.0, 0.0, 1.0]))
            horiz = np.linalg.norm((targets[:, k] - hip_xz)[:, [0, 2]], axis=-1)
            reach = c["reach"] * (thigh[k] + shin[k])
            height = np.sqrt(np.maximum(reach ** 2 - horiz ** 2, 0.0)) + targets[:, k, 1] - hip_off[k, 1]
            cap = np.where(contact[:, k], np.minimum(cap, height), cap)
        pelvis[:, 1] = np.minimum(pelvis[:, 1], cap)
        pelvis[:, 1] = np.minimum(gaussian_filter1d(pelvis[:, 1], 1.0, mode="nearest"), cap)

    # Trunk.
    local = np.broadcast_to(np.eye(3), (n, 22, 3, 3)).copy()
    pitch, twist, roll = c["pelvis_rot"].T
    local[:, 0] = _yaw(heading + twist) @ axis_rotation("x", pitch) @ axis_rotation("z", -roll)
    sp, sy, sr = c["spine"].T
    # Walking twists the shoulders against the hips.
    sy = sy + c["swing"] * 0.3 * np.sin(2 * np.pi * phases[:, LEFT])
    for j in (3, 6, 9):
        local[:, j] = _yaw(sy / 3) @ axis_rotation("x", sp / 3) @ axis_rotation("z", -sr / 3)
    local[:, 12] = axis_rotation("x", 0.4 * c["head"][:, 0]) @ _yaw(0.4 * c["head"][:, 1])
    local[:, 15] = axis_rotation("x", 0.6 * c["head"][:, 0]) @ _yaw(0.6 * c["head"][:, 1])
    arm = c["arm"].copy()
    swing = c["swing"][:, None] * -np.cos(2 * np.pi * phases)
    arm[:, :, 0] += swing
    for k, j in enumerate(_COLLAR):
        shrug = 0.25 * np.clip(np.maximum(arm[:, k, 0], arm[:, k, 1]) - np.pi / 2, 0.0, np.pi / 2)
        local[:, j] = axis_rotation("z", _SIDE[k] * shrug)
    trans = np.broadcast_to(offsets, (n, 22, 3)).copy()
    trans[:, 0] = pelvis
    pos, glob = _fk_globals(local, trans)

    # Legs.
    for k in range(2):
        hip, knee, ankle = _HIP[k], _KNEE[k], _ANKLE[k]
        pole = np.einsum("tab,b->ta", _yaw(foot_yaw[:, k]), np.array([_SIDE[k] * 0.1, 0.0, 1.0]))
        mid, end, bend = _two_bone_ik(pos[:, hip], targets[:, k], thigh[k], shin[k], pole)
        glob[:, hip] = _align(offsets[knee], np.array([0.0, 0.0, 1.0]), mid - pos[:, hip], bend)
        glob[:, knee] = _align(offsets[ankle], np.array([0.0, 0.0, 1.0]), end - mid, bend)
        glob[:, ankle] = _yaw(foot_yaw[:, k])
        glob[:, _TOE[k]] = glob[:, ankle]

    # Arms, in the chest frame: the upper arm points along (flexion, abduction, horizontal adduction), the elbow
    # sticks out towards the pole and the forearm bends away from it by the elbow angle.
    chest = glob[:, 9]
    back = np.array([0.0, 0.0, -1.0])
    for k in range(2):
        shoulder, elbow, wrist = _SHOULDER[k], _ELBOW[k], _WRIST[k]
        flex, abd, hadd, bend_angle = arm[:, k].T
        upper = (_yaw(-_SIDE[k] * hadd) @ axis_rotation("z", _SIDE[k] * abd) @ axis_rotation("x", -flex)
                 @ np.array([0.0, -1.0, 0.0]))
        upper = np.einsum("tab,tb->ta", chest, upper)
        pole = np.einsum("tab,tb->ta", chest, c["pole"][:, k])
        out = pole - np.sum(pole * upper, axis=-1, keepdims=True) * upper
        out = _unit(np.where(np.linalg.norm(out, axis=-1, keepdims=True) < 1e-6, np.cross(upper, _UP), out))
        fore = np.cos(bend_angle)[:, None] * upper - np.sin(bend_angle)[:, None] * out
        glob[:, shoulder] = _align(offsets[elbow], back, upper, out)
        glob[:, elbow] = _align(offsets[wrist], back, fore, out)
        glob[:, wrist] = glob[:, elbow]

    for j, p in enumerate(PARENTS):
        if p >= 0:
            local[:, j] = np.swapaxes(glob[:, p], -1, -2) @ glob[:, j]
    joints = forward_kinematics(local, trans, PARENTS)
    return joints, local, pelvis, offsets, contact


def _fk_globals(local: np.ndarray, trans: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    n = local.shape[0]
    pos = np.zeros((n, 22, 3))
    glob = np.zeros((n, 22, 3, 3))
    for j, p in enumerate(PARENTS):
        if p < 0:
            pos[:, j], glob[:, j] = trans[:, j], local[:, j]
        else:
            pos[:, j] = pos[:, p] + np.einsum("tab,tb->ta", glob[:, p], trans[:, j])
            glob[:, j] = glob[:, p] @ local[:, j]
    return pos, glob


def _sample_program(rng: np.random.Generator, style: _Style, action: str | None,
                    h0: float) -> tuple[str, list[_Segment]]:
    kind = action
    if kind is None:
        r = rng.random()
        pool = SINGLE_ACTIONS if r < 0.65 else SEQUENCE_KINDS if r < 0.88 else OVERLAY_KINDS
        kind = str(pool[rng.integers(len(pool))])
    if kind in SEQUENCE_KINDS:
        return kind, _sequence(rng, style, kind, h0)
    if kind in OVERLAY_KINDS:
        return kind, [_overlay(rng, style, kind)]
    return kind, [_single(rng, style, kind, h0)]


def _seconds(frame: int) -> float:
    """Time tag of a frame, written so that the loaders' ``int(tag * 20)`` gives the frame back."""
    tag = round(frame / FPS, 3)
    return tag if int(tag * FPS) >= frame else round(tag + 0.001, 3)


def synthesize_motion(rng: np.random.Generator, action: str | None = None) -> SyntheticMotion:
    """Sample one motion (``action`` from ``SYNTHETIC_ACTIONS``, or a random one) with its captions.

    The motion has 41-197 joint frames (2-9.8 s of features at 20 fps).
    """
    if action is not None and action not in SYNTHETIC_ACTIONS:
        raise ValueError(f"unknown synthetic action {action!r}; expected one of {SYNTHETIC_ACTIONS}")
    for _ in range(50):
        style = _Style.sample(rng)
        h0 = float(0.97 * style.scale)
        kind, segments = _sample_program(rng, style, action, h0)
        total = sum(s.frames for s in segments)
        if MIN_FRAMES + 1 <= total <= MAX_FRAMES + 1:
            break
    else:
        raise RuntimeError(f"could not fit action {action!r} into {MIN_FRAMES}-{MAX_FRAMES} frames")
    controls = {k: np.concatenate([s.controls[k] for s in segments]) for k in _CONTROL_SHAPES}
    pad = 10  # frames simulated before and after the clip, so gait and smoothing start in a steady state
    controls = {k: np.concatenate([np.repeat(v[:1], pad, 0), v, np.repeat(v[-1:], pad, 0)])
                for k, v in controls.items()}
    joints, local, root, offsets, contacts = _synthesize(controls, style, rng)
    keep = slice(pad, pad + total)
    bounds, start = [], 0
    for s in segments:
        bounds.append((s.label, start, start + s.frames))
        start += s.frames
    if len(segments) == 1:
        bodies = segments[0].phrases
    else:
        bodies = _sequence_bodies(rng, segments)
    captions = _pick_captions(rng, bodies)
    subclips = []
    for seg, (_, a, b) in zip(segments, bounds):
        # Feature frames a..b-1 exist for b <= total - 1; loaders keep sub-clips of 40-199 frames.
        b = min(b, total - 1)
        if len(segments) > 1 and MIN_FRAMES <= b - a < 200:
            subclips.append((_caption(_SUBJECTS[rng.integers(len(_SUBJECTS))],
                                      seg.phrases[rng.integers(len(seg.phrases))]), _seconds(a), _seconds(b)))
    return SyntheticMotion(kind, joints[keep], local[keep], root[keep], offsets, contacts[keep], captions, subclips,
                           "+".join(s.label for s in segments), bounds)


# ---------------------------------------------------------------------------------------------------------------------
# Dataset
# ---------------------------------------------------------------------------------------------------------------------

@dataclass
class SyntheticSummary:
    """What ``generate_synthetic_dataset`` wrote: motions, feature frames, split sizes, motions per action kind,
    sub-clip captions and the time taken."""

    out_dir: str
    motions: int = 0
    frames: int = 0
    splits: dict[str, int] = field(default_factory=dict)
    actions: dict[str, int] = field(default_factory=dict)
    subclip_captions: int = 0
    seconds: float = 0.0


def generate_synthetic_dataset(out_dir: str, num_motions: int, seed: int = 0,
                               progress: Callable[..., Iterable] | None = None) -> SyntheticSummary:
    """Write ``num_motions`` synthetic motions in the HumanML3D layout under ``out_dir``.

    ``new_joint_vecs/<id>.npy`` (T-1, 263) from ``extract_features``, ``new_joints/<id>.npy`` (T-1, 22, 3) from
    ``recover_from_ric``, ``texts/<id>.txt`` (three captions, plus sub-clip captions for sequences),
    ``train/val/test/train_val/all.txt`` (80/5/15) and ``Mean.npy``/``Std.npy`` (std averaged per feature group).
    Motion ``i`` depends only on ``(seed, i)``, so the same seed gives the same files.
    """
    if num_motions < 1:
        raise ValueError(f"num_motions is {num_motions}; expected at least 1")
    start = time.perf_counter()
    iterate = progress or (lambda items, **_: items)
    spec = DATASETS["synthetic"]
    make_layout_dirs(out_dir)
    summary = SyntheticSummary(out_dir=out_dir)
    ids = []
    for i in iterate(range(num_motions), desc="synthetic", unit="motion"):
        rng = np.random.default_rng([seed, i])
        motion = synthesize_motion(rng)
        clip_id = f"{i:06d}"
        lines = [format_text_line(c) for c in motion.captions]
        lines += [format_text_line(c, f, t) for c, f, t in motion.subclips]
        features = write_motion(out_dir, clip_id, motion.joints, lines)
        ids.append(clip_id)
        summary.motions += 1
        summary.frames += features.shape[0]
        summary.subclip_captions += len(motion.subclips)
        summary.actions[motion.kind] = summary.actions.get(motion.kind, 0) + 1
    # 70/10/20 rather than HumanML3D's 80/5/15: a few hundred motions must still give val and test splits with
    # several evaluation batches of 32.
    splits = split_groups([[i] for i in ids], np.random.default_rng([seed, num_motions, 7]), fractions=(0.7, 0.1, 0.2))
    write_split_files(out_dir, splits)
    write_mean_std(out_dir, ids, spec)
    summary.splits = {k: len(v) for k, v in splits.items()}
    summary.seconds = time.perf_counter() - start
    logger.info("wrote %d synthetic motions (%d frames) to %s in %.1f s", summary.motions, summary.frames, out_dir,
                summary.seconds)
    return summary

