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

import contextlib
import json
import logging
import os
import re
import shutil
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np
from scipy.ndimage import gaussian_filter1d

from utils.atomic_io import TMP_PREFIX, atomic_write
from utils.bvh import axis_rotation, forward_kinematics, parents_from_chain
from utils.dataset_io import (
    MIN_SPLIT_GROUPS,
    make_layout_dirs,
    split_groups,
    write_mean_std,
    write_motion,
    write_split_files,
)
from utils.dataset_specs import DATASETS, SPEC_FILE, SYNTHETIC_SETTINGS_FILE, T2M_KINEMATIC_CHAIN
from utils.motion_files import CACHE_DIR
from utils.paramutil import T2M_TGT_BONE_LENGTHS
from utils.paths import RENDERS_DIR, project_path
from utils.synthetic_actions import (
    OVERLAY_KINDS,
    SEQUENCE_KINDS,
    SINGLE_ACTIONS,
    SYNTHETIC_ACTIONS,
    _overlay,
    _sequence,
    _single,
)
from utils.synthetic_captions import _SUBJECTS, _caption, _pick_captions, _Segment, _sequence_bodies
from utils.synthetic_controls import (
    _CONTROL_SHAPES,
    _SIDE,
    _SMOOTHED,
    FPS,
    LEFT,
    _align,
    _smoothstep,
    _Style,
    _two_bone_ik,
    _unit,
    _yaw,
)
from utils.text_tags import format_text_line

logger = logging.getLogger(__name__)

MIN_FRAMES = 40  # feature frames (T - 1), as the HumanML3D loaders require
MAX_FRAMES = 196
PARENTS = parents_from_chain(T2M_KINEMATIC_CHAIN, 22)
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

    # Pelvis: the requested height, lowered where a stance leg could not reach its foothold. The hips are placed with
    # the pelvis's whole rotation: a deep bow pitches it forward, which lifts the hips and moves them back.
    pitch, twist, roll = c["pelvis_rot"].T
    root_rot = _yaw(heading + twist) @ axis_rotation("x", pitch) @ axis_rotation("z", -roll)
    pelvis = ref + np.einsum("tab,tb->ta", _yaw(heading), c["pelvis"] + np.array([0.0, standing, 0.0]))
    for _ in range(2):
        cap = np.full(n, np.inf)
        for k in range(2):
            hip = np.einsum("tab,b->ta", root_rot, hip_off[k])  # (n, 3), from the pelvis
            horiz = np.linalg.norm((targets[:, k] - pelvis - hip)[:, [0, 2]], axis=-1)
            reach = c["reach"] * (thigh[k] + shin[k])
            height = np.sqrt(np.maximum(reach ** 2 - horiz ** 2, 0.0)) + targets[:, k, 1] - hip[:, 1]
            cap = np.where(contact[:, k], np.minimum(cap, height), cap)
        pelvis[:, 1] = np.minimum(pelvis[:, 1], cap)
        pelvis[:, 1] = np.minimum(gaussian_filter1d(pelvis[:, 1], 1.0, mode="nearest"), cap)

    # Trunk.
    local = np.broadcast_to(np.eye(3), (n, 22, 3, 3)).copy()
    local[:, 0] = root_rot
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


# What generate_synthetic_dataset writes, besides the clips <id>.npy / <id>.txt (ids of six digits or more).
_CLIP_FOLDERS = {"new_joint_vecs": ".npy", "new_joints": ".npy", "texts": ".txt"}
_CLIP_ID = re.compile(r"[0-9]{6,}")
# The settings a dataset was built with ({"num_motions", "seed", "generator_version"}), written before its statistics.
SETTINGS_FILE = SYNTHETIC_SETTINGS_FILE
# Raised whenever the same settings give other clips, so that a dataset kept from an earlier version is named as such
# (2: walking while clapping claps for the whole walk).
GENERATOR_VERSION = 2
_OWN_FILES = {"Mean.npy", "Std.npy", SETTINGS_FILE,
              *(f"{split}.txt" for split in ("train", "val", "test", "train_val", "all"))}


def built_with(out_dir: str) -> dict[str, Any] | None:
    """The settings ``{"num_motions", "seed", "generator_version"}`` a finished synthetic dataset in ``out_dir`` was
    built with (``{}`` for one built before they were recorded), or None where there is no finished dataset (no
    ``Mean.npy``)."""
    if not os.path.isfile(os.path.join(out_dir, "Mean.npy")):
        return None
    try:
        with open(os.path.join(out_dir, SETTINGS_FILE), encoding="utf-8") as f:
            record = json.load(f)
    except (OSError, ValueError):
        return {}
    return record if isinstance(record, dict) else {}


def settings_mismatch(out_dir: str, num_motions: int, seed: int) -> str | None:
    """Why the finished dataset in ``out_dir`` is not the synthetic one ``num_motions`` and ``seed`` build (None when
    it is, or when there is none): other settings, with the command that builds the one asked for, or no synthetic
    dataset at all (``check_synthetic_folder``)."""
    record = built_with(out_dir)
    if record is None:
        return None
    try:
        check_synthetic_folder(out_dir, num_motions)
    except ValueError as e:
        return f"{out_dir} holds a finished dataset that is not a synthetic one ({e})"
    build = (f"python prepare_data.py synthetic --out {out_dir} --num_motions {num_motions} --seed {seed}, and train "
             f"again the runs trained on the data there now")
    if {k: record.get(k) for k in ("num_motions", "seed")} == {"num_motions": num_motions, "seed": seed}:
        if record.get("generator_version") == GENERATOR_VERSION:
            return None
        return (f"{out_dir} holds a synthetic dataset of {num_motions} motions (seed {seed}) built by an earlier "
                f"version of the generator (version {record.get('generator_version', 1)}, now {GENERATOR_VERSION}), "
                f"whose clips differ; to build the current ones: {build}")
    held = (f"{record.get('num_motions')} motions (seed {record.get('seed')})" if record
            else "motions of unrecorded settings (built before they were recorded)")
    return (f"{out_dir} holds a synthetic dataset of {held}, not {num_motions} motions (seed {seed}); to build those: "
            f"{build}")


def _is_own_entry(name: str) -> bool:
    """A top-level entry the generator writes, the loaders' cache, or a statistics temporary a kill left behind."""
    return (name in _OWN_FILES or name == CACHE_DIR
            or any(name.startswith(f"{TMP_PREFIX}{stats}.") for stats in ("Mean.npy", "Std.npy")))


def prepare_synthetic_folder(out_dir: str, num_motions: int) -> None:
    """Check that ``out_dir`` may take a synthetic dataset (``check_synthetic_folder``), and remove the clips of an
    earlier one from ``num_motions`` on.

    An earlier synthetic dataset there is replaced (the quick pipeline and ``reproduce.py --quick`` rerun into their
    folder after an interrupted run): its statistics and the loaders' ``.cache/`` are removed first, clips below
    ``num_motions`` are overwritten, and those past it removed, or ``stats`` without ``--split`` would still count
    them.
    """
    stale = check_synthetic_folder(out_dir, num_motions)
    if not os.path.isdir(out_dir):
        return
    # Mean.npy marks a finished dataset (the quick pipelines skip the data stage when it is there), so the earlier
    # one's goes first: a run stopped while it rewrites the clips must not look finished, with the earlier
    # statistics and splits.
    for name in ("Mean.npy", "Std.npy", SETTINGS_FILE):
        with contextlib.suppress(FileNotFoundError):
            os.remove(os.path.join(out_dir, name))
    # The loaders' cache is keyed by each clip's size and mtime, which a rewritten clip of another --seed may share
    # (same frame count, within the filesystem's mtime granularity): the earlier motions would be served for the new.
    shutil.rmtree(os.path.join(out_dir, CACHE_DIR), ignore_errors=True)
    for path in stale:
        os.remove(path)
    if stale:
        logger.info("%s: removed %d files of an earlier synthetic dataset past the new %d motions", out_dir,
                    len(stale), num_motions)


def check_synthetic_folder(out_dir: str, num_motions: int) -> list[str]:
    """Raise ``ValueError`` naming ``out_dir`` unless it is new, empty or an earlier synthetic dataset; return the
    files of an earlier one that a dataset of ``num_motions`` would not write again (clips from ``num_motions`` on,
    temporaries a kill left).

    Refused: a file; the folder of another registered dataset (``dataset/HumanML3D`` holds the official statistics,
    splits and clips ``000000``...); a folder with a ``spec.json`` (an import); any file the generator does not write,
    except ``renders/`` (``render.py``'s videos of the clips), which is left as it is.
    """
    if os.path.exists(out_dir) and not os.path.isdir(out_dir):
        raise ValueError(f"--out {out_dir}: a file; expected a dataset folder")
    here = os.path.realpath(out_dir)
    own_root = os.path.realpath(project_path(DATASETS["synthetic"].root))
    registered = sorted(name for name, spec in DATASETS.items()
                        if here in {os.path.realpath(spec.root), os.path.realpath(project_path(spec.root))}
                        and here != own_root)
    if registered:
        raise ValueError(f"--out {out_dir}: the folder of the registered dataset {' and '.join(registered)}; its "
                         f"statistics, splits and clips would be overwritten. Choose another --out folder (the "
                         f"synthetic dataset's own is {DATASETS['synthetic'].root})")
    if not os.path.isdir(out_dir):
        return []
    entries = sorted(os.listdir(out_dir))
    if SPEC_FILE in entries:
        raise ValueError(f"--out {out_dir}: holds {SPEC_FILE}, the spec of an imported dataset; choose another "
                         f"--out folder")
    foreign, stale = [], []
    for entry in entries:
        path = os.path.join(out_dir, entry)
        if entry in _CLIP_FOLDERS and os.path.isdir(path):
            for name in sorted(os.listdir(path)):
                stem, ext = os.path.splitext(name)
                if ext != _CLIP_FOLDERS[entry] or not _CLIP_ID.fullmatch(stem) or not os.path.isfile(
                        os.path.join(path, name)):
                    foreign.append(f"{entry}/{name}")
                elif int(stem) >= num_motions:
                    stale.append(os.path.join(path, name))
        elif _is_own_entry(entry):
            if entry.startswith(TMP_PREFIX):
                stale.append(path)
        elif entry == RENDERS_DIR and os.path.isdir(path):
            continue  # render.py's videos of the clips: the user's, left as they are
        else:
            foreign.append(entry)
    if foreign:
        raise ValueError(f"--out {out_dir}: holds files that prepare_data.py synthetic does not write: "
                         f"{', '.join(foreign[:5])}{' ...' if len(foreign) > 5 else ''} ({len(foreign)} in all); "
                         f"it is not a synthetic dataset. Choose another --out folder")
    return stale


def generate_synthetic_dataset(out_dir: str, num_motions: int, seed: int = 0,
                               progress: Callable[..., Iterable] | None = None) -> SyntheticSummary:
    """Write ``num_motions`` synthetic motions in the HumanML3D layout under ``out_dir``.

    ``new_joint_vecs/<id>.npy`` (T-1, 263) from ``extract_features``, ``new_joints/<id>.npy`` (T-1, 22, 3) from
    ``recover_from_ric``, ``texts/<id>.txt`` (three captions, plus sub-clip captions for sequences),
    ``train/val/test/train_val/all.txt`` (70/10/20) and ``Mean.npy``/``Std.npy`` (std averaged per feature group).
    Motion ``i`` depends only on ``(seed, i)``, so the same seed gives the same files. ``out_dir`` is new, empty or
    an earlier synthetic dataset (``prepare_synthetic_folder``).
    """
    if isinstance(num_motions, bool) or not isinstance(num_motions, (int, np.integer)):
        # Before the folder is touched: range() refuses it only after the finished dataset's statistics are gone.
        raise ValueError(f"--num_motions {num_motions!r}: expected a whole number")
    if num_motions < MIN_SPLIT_GROUPS:
        # Checked before any work: fewer motions leave val and test empty, which fails only later, in training.
        raise ValueError(f"--num_motions {num_motions}: expected at least {MIN_SPLIT_GROUPS} so that train, val and "
                         f"test each get a motion")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= seed < 2**64:
        # Before the folder is touched: numpy refuses it only at the first motion, after the old files are gone.
        raise ValueError(f"--seed {seed!r}: expected a whole number in [0, 2^64)")
    prepare_synthetic_folder(out_dir, num_motions)
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
    splits = split_groups([[i] for i in ids], np.random.default_rng([seed, num_motions, 7]).permutation(len(ids)),
                          fractions=(0.7, 0.1, 0.2))
    write_split_files(out_dir, splits)
    with atomic_write(os.path.join(out_dir, SETTINGS_FILE), "w") as f:  # before Mean.npy, which marks it finished
        json.dump({"num_motions": num_motions, "seed": int(seed), "generator_version": GENERATOR_VERSION}, f)
    write_mean_std(out_dir, ids, spec)
    summary.splits = {k: len(v) for k, v in splits.items()}
    summary.seconds = time.perf_counter() - start
    logger.info("wrote %d synthetic motions (%d frames) to %s in %.1f s", summary.motions, summary.frames, out_dir,
                summary.seconds)
    return summary

