"""Export a HumanML3D-layout dataset as training frames of a phase-functioned neural network (PFNN).

Holden, Komura and Saito 2017, "Phase-Functioned Neural Networks for Character Control" (SIGGRAPH), Sec. 5 and the
released ``generate_database.py``: every frame t becomes an input row X, an output row Y and a phase. Their layout is
kept, adapted to the dataset's J joints (22 for HumanML3D) and frame rate. Joints come from ``recover_from_ric`` and
the root frame from ``recover_root_rot_pos`` (root xz on the ground, heading = the dataset's root yaw): a vector is
"in the root frame of t" after removing frame t's ground position (for points) and rotating by its yaw quaternion, so
the character faces +Z and +X is its left. Positions are in data units (metres for HumanML3D), velocities per frame
of the dataset's frame rate, angles in radians.

Trajectory samples: PFNN samples 12 points every 10 frames at 60 fps, from -60 to +50 frames (-1 s .. +0.83 s).
Here sample k (k = 0..11) is at ``t + (k - 6) * fps / 6`` frames, linearly interpolated between frames when that is
not an integer. The output's future trajectory has 6 samples at ``t + 1 + k * fps / 6`` (k = 0..5) in the root frame
of t+1, as PFNN predicts the trajectory from the next frame on. Only frames whose whole window lies inside the clip
are exported (``ceil(fps) <= t <= T - 2 - 5 fps / 6``); clips without such a frame are skipped and counted.

Input X (width ``48 + 12 G + 6 J``; 180 for 22 joints without gait):

=================  =======  ============================================================================
columns            width    content
=================  =======  ============================================================================
traj_pos_x         12       x of the trajectory samples' ground positions, root frame of t
traj_pos_z         12       z of the same
traj_dir_x         12       x of the samples' facing directions (unit), root frame of t
traj_dir_z         12       z of the same
traj_gait_<g>      12 each  optional (``gait=True``): one-hot gait of each sample, g in stand, walk, run, from
                            the ground speed (``gait_speeds`` thresholds in metres per second)
joint_pos_prev     3 J      joints of frame t-1 in the root frame of t-1 (x, y, z per joint, root first)
joint_vel_prev     3 J      J(t) - J(t-1) in the root frame of t-1
=================  =======  ============================================================================

Output Y (width ``32 + 6 J + R``; R = the dataset's 6D rotation block, 126 for 22 joints; 290 in all):

=================  =======  ============================================================================
root_vel_x         1        ground displacement t -> t+1 in the root frame of t
root_vel_z         1
root_rvel          1        yaw change t -> t+1 (positive turns the facing towards +X)
phase_change       1        phase(t+1) - phase(t), in (0, 2 pi)
contacts           4        foot contacts of frame t: left ankle, left foot, right ankle, right foot
next_traj_pos_x    6        future trajectory from frame t+1 in the root frame of t+1
next_traj_pos_z    6
next_traj_dir_x    6
next_traj_dir_z    6
joint_pos          3 J      joints of frame t in the root frame of t
joint_vel          3 J      J(t+1) - J(t) in the root frame of t
joint_rot          R        the dataset's rotations of frame t (HumanML3D: joints 1..J-1, parent-relative 6D as
                            stored; PFNN stores root-relative exponential maps, which joints alone cannot give)
=================  =======  ============================================================================

Phase (``foot_phase``): 0 at each left-foot contact onset, pi at each right-foot onset, linearly interpolated in
between (a left onset after a left onset advances a full cycle); before the first and after the last onset it
continues at the rate of the neighbouring interval, and a clip without two onsets advances at one cycle per
``default_period_s``. Contact gaps shorter than ``min_swing_s`` are not steps. Contacts are the dataset's
foot-contact columns, or for layouts without them (essential) squared foot displacements below the skeleton's
threshold.

Files in ``out_dir``: ``Input.npy (N, X)``, ``Output.npy (N, Y)``, ``Phase.npy (N,)`` float32, ``Sequences.npy
(N,)`` (index into layout.json's ``clips``), ``Frames.npy (N,)`` (frame t of each row), ``InputMean.npy``,
``InputStd.npy``, ``OutputMean.npy``, ``OutputStd.npy`` (std averaged within each named block, as PFNN's training
script normalises; constant blocks get 1) and ``layout.json`` naming every column range.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np
from tqdm import tqdm

from utils.dataset_specs import DatasetSpec
from utils.datasets import MotionIndex
from utils.motion_process import feet_threshold, recover_from_ric, recover_root_rot_pos
from utils.normalization import DatasetError
from utils.paramutil import SKELETONS
from utils.quaternion import qinv, qrot
from utils.staging import remove_abandoned_staging, staging_folder

logger = logging.getLogger(__name__)

TRAJ_SAMPLES = 12  # -60 .. +50 frames at 60 fps, every 10
TRAJ_NEXT_SAMPLES = 6
PFNN_FPS = 60.0
PFNN_STEP = 10  # frames between samples at 60 fps
GAIT_CLASSES = ("stand", "walk", "run")
CONTACT_NAMES = ("left_ankle", "left_foot", "right_ankle", "right_foot")
FILES = ("Input.npy", "Output.npy", "Phase.npy", "Sequences.npy", "Frames.npy", "InputMean.npy", "InputStd.npy",
         "OutputMean.npy", "OutputStd.npy", "layout.json")
TWO_PI = 2.0 * math.pi


# ----------------------------------------------------------------------------------------------------------------------
# phase


class FootPhase(NamedTuple):
    """``phase (T,)`` in [0, 2 pi), ``unwrapped (T,)`` increasing, contact onsets ``left (L,)`` and ``right (R,)``."""

    phase: np.ndarray
    unwrapped: np.ndarray
    left: np.ndarray
    right: np.ndarray


def contact_onsets(contact: np.ndarray, min_swing: int = 1) -> np.ndarray:
    """Frames where a contact starts: ``contact (T,)`` bool -> onset frames ``(K,)``.

    Gaps shorter than ``min_swing`` frames between two contacts are filled first (flicker, not a step); a contact
    already present at frame 0 has no observed onset.
    """
    c = np.asarray(contact, dtype=bool).copy()
    if c.ndim != 1:
        raise ValueError(f"contact_onsets: expected a (T,) contact track, got shape {c.shape}")
    if min_swing > 1 and c.size:
        edges = np.flatnonzero(np.diff(c.astype(np.int8)))  # last frame of each run
        starts = np.concatenate([[0], edges + 1])
        stops = np.concatenate([edges + 1, [c.size]])
        for start, stop in zip(starts, stops):
            if not c[start] and start > 0 and stop < c.size and stop - start < min_swing:
                c[start:stop] = True
    return np.flatnonzero(c[1:] & ~c[:-1]) + 1


def foot_phase(left_contact: np.ndarray, right_contact: np.ndarray, fps: float, min_swing_s: float = 0.1,
               default_period_s: float = 1.0) -> FootPhase:
    """Locomotion phase of every frame from left/right foot contacts ``(T,)`` (see the module docstring)."""
    left_contact, right_contact = np.asarray(left_contact, bool), np.asarray(right_contact, bool)
    if left_contact.shape != right_contact.shape or left_contact.ndim != 1:
        raise ValueError(f"foot_phase: expected two (T,) contact tracks, got {left_contact.shape} and "
                         f"{right_contact.shape}")
    frames = left_contact.shape[0]
    min_swing = max(1, int(round(min_swing_s * fps)))
    left, right = contact_onsets(left_contact, min_swing), contact_onsets(right_contact, min_swing)
    # Sorted by frame; at a frame where both feet land (a two-footed landing) the left onset is kept.
    events = sorted([(int(t), 0.0) for t in left] + [(int(t), math.pi) for t in right])
    times, values = [], []
    for t, target in events:
        if times and t == times[-1]:
            continue
        if not values:
            values.append(target)
        else:
            step = (target - values[-1]) % TWO_PI
            values.append(values[-1] + (step if step > 1e-9 else TWO_PI))
        times.append(t)
    t_all = np.arange(frames, dtype=np.float64)
    default_rate = TWO_PI / (default_period_s * fps)
    if not times:
        unwrapped = default_rate * t_all
    else:
        times_a, values_a = np.asarray(times, dtype=np.float64), np.asarray(values)
        unwrapped = np.interp(t_all, times_a, values_a)
        first_rate = (values_a[1] - values_a[0]) / (times_a[1] - times_a[0]) if len(times) > 1 else default_rate
        last_rate = (values_a[-1] - values_a[-2]) / (times_a[-1] - times_a[-2]) if len(times) > 1 else default_rate
        before, after = t_all < times_a[0], t_all > times_a[-1]
        unwrapped[before] = values_a[0] - first_rate * (times_a[0] - t_all[before])
        unwrapped[after] = values_a[-1] + last_rate * (t_all[after] - times_a[-1])
    return FootPhase(np.mod(unwrapped, TWO_PI), unwrapped, left, right)


# ----------------------------------------------------------------------------------------------------------------------
# layout


@dataclass(frozen=True)
class Block:
    """Columns ``[start, stop)`` of one named block of X or Y."""

    name: str
    start: int
    stop: int
    description: str


def _blocks(sizes: Sequence[tuple[str, int, str]]) -> list[Block]:
    blocks, pos = [], 0
    for name, size, description in sizes:
        if size:
            blocks.append(Block(name, pos, pos + size, description))
            pos += size
    return blocks


def pfnn_layout(joints_num: int, rot_width: int, gait: bool) -> tuple[list[Block], list[Block]]:
    """The named column blocks of X and Y for ``joints_num`` joints, a rotation block of ``rot_width`` columns and
    optional gait columns (see the module docstring)."""
    n, m, j3 = TRAJ_SAMPLES, TRAJ_NEXT_SAMPLES, 3 * joints_num
    gait_blocks = [(f"traj_gait_{g}", n if gait else 0, f"one-hot gait '{g}' of each trajectory sample")
                   for g in GAIT_CLASSES]
    inputs = _blocks([
        ("traj_pos_x", n, "trajectory sample ground position x, root frame of t"),
        ("traj_pos_z", n, "trajectory sample ground position z, root frame of t"),
        ("traj_dir_x", n, "trajectory sample facing direction x, root frame of t"),
        ("traj_dir_z", n, "trajectory sample facing direction z, root frame of t"),
        *gait_blocks,
        ("joint_pos_prev", j3, "joints of frame t-1 (x, y, z per joint), root frame of t-1"),
        ("joint_vel_prev", j3, "J(t) - J(t-1), root frame of t-1"),
    ])
    outputs = _blocks([
        ("root_vel_x", 1, "ground displacement t -> t+1 x, root frame of t"),
        ("root_vel_z", 1, "ground displacement t -> t+1 z, root frame of t"),
        ("root_rvel", 1, "yaw change t -> t+1 in radians, positive towards +X"),
        ("phase_change", 1, "phase(t+1) - phase(t) in radians"),
        ("contacts", 4, "foot contacts of frame t: " + ", ".join(CONTACT_NAMES)),
        ("next_traj_pos_x", m, "future trajectory ground position x, root frame of t+1"),
        ("next_traj_pos_z", m, "future trajectory ground position z, root frame of t+1"),
        ("next_traj_dir_x", m, "future trajectory facing direction x, root frame of t+1"),
        ("next_traj_dir_z", m, "future trajectory facing direction z, root frame of t+1"),
        ("joint_pos", j3, "joints of frame t (x, y, z per joint), root frame of t"),
        ("joint_vel", j3, "J(t+1) - J(t), root frame of t"),
        ("joint_rot", rot_width, "the dataset's 6D rotations of frame t (joints 1..J-1, parent-relative)"),
    ])
    return inputs, outputs


def _width(blocks: list[Block]) -> int:
    return blocks[-1].stop


# ----------------------------------------------------------------------------------------------------------------------
# per-clip frames


def _sample_offsets(fps: float) -> tuple[np.ndarray, np.ndarray]:
    """Trajectory sample offsets in frames of the dataset: X (12,) from frame t and Y (6,) from frame t+1."""
    step = PFNN_STEP * fps / PFNN_FPS
    past = (np.arange(TRAJ_SAMPLES) - TRAJ_SAMPLES // 2) * step
    future = np.arange(TRAJ_NEXT_SAMPLES) * step
    return past, future


def _frame_range(frames: int, fps: float) -> tuple[int, int]:
    """First and last exported frame (inclusive; first > last when the clip is too short)."""
    past, future = _sample_offsets(fps)
    first = max(1, int(math.ceil(-past[0] - 1e-9)))
    last = int(math.floor(frames - 2 - future[-1] + 1e-9))  # the future samples start at t+1
    return first, last


def _interp(values: np.ndarray, at: np.ndarray) -> np.ndarray:
    """Linear interpolation of ``values (T, C)`` at fractional frames ``at (...)`` -> ``(..., C)``."""
    lo = np.floor(at).astype(np.int64)
    hi = np.minimum(lo + 1, values.shape[0] - 1)
    frac = (at - lo)[..., None]
    return values[lo] * (1.0 - frac) + values[hi] * frac


def _to_root(quat: np.ndarray, vectors: np.ndarray) -> np.ndarray:
    """Rotate ``vectors (n, k, 3)`` by per-row yaw quaternions ``quat (n, 4)``."""
    return qrot(np.broadcast_to(quat[:, None], vectors.shape[:-1] + (4,)).copy(), vectors)


def _trajectory(ground: np.ndarray, forward: np.ndarray, quat: np.ndarray, base: np.ndarray,
                offsets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Samples at ``base[:, None] + offsets`` in the root frame of ``base``: positions and directions ``(n, k, 3)``."""
    at = base[:, None] + offsets[None, :]
    positions = _to_root(quat[base], _interp(ground, at) - ground[base][:, None])
    directions = _interp(forward, at)
    directions = directions / np.maximum(np.linalg.norm(directions, axis=-1, keepdims=True), 1e-9)
    return positions, _to_root(quat[base], directions)


def _joint_contacts(joints: np.ndarray, joints_num: int, fps: float) -> np.ndarray:
    """Contacts ``(T, 4)`` from squared foot displacements (HumanML3D's rule, its foot speed at ``fps``:
    ``feet_threshold``) for layouts without contact columns."""
    settings = next((s for s in SKELETONS.values() if s.joints_num == joints_num), None)
    if settings is None:
        raise ValueError(f"PFNN export: no foot-contact columns and no skeleton with {joints_num} joints to derive "
                         f"them from; known skeletons: {sorted(SKELETONS)}")
    feet = list(settings.fid_l) + list(settings.fid_r)
    step = ((joints[1:, feet] - joints[:-1, feet]) ** 2).sum(-1) < feet_threshold(settings.name, fps)
    return np.concatenate([step, step[-1:]], axis=0).astype(np.float64)


def _gait_one_hot(ground: np.ndarray, at: np.ndarray, fps: float, gait_speeds: tuple[float, float],
                  metres_per_unit: float = 1.0) -> np.ndarray:
    """``(n, k, 3)`` one-hot stand / walk / run of each sample from the ground speed in metres per second (positions
    in data units of ``metres_per_unit`` metres: KIT-ML's are millimetres)."""
    if len(gait_speeds) != 2 or not 0 <= gait_speeds[0] < gait_speeds[1]:
        raise ValueError(f"PFNN export: gait_speeds {tuple(gait_speeds)}; expected two increasing speeds in m/s "
                         f"(walk from the first, run from the second)")
    step = np.linalg.norm(np.diff(ground, axis=0), axis=-1) * fps * metres_per_unit
    speed = np.concatenate([step, step[-1:]])[:, None]
    sample_speed = _interp(speed, at)[..., 0]
    classes = np.digitize(sample_speed, gait_speeds)
    return np.eye(len(GAIT_CLASSES))[classes]


class ClipFrames(NamedTuple):
    """PFNN rows of one clip: ``inputs (n, X)``, ``outputs (n, Y)``, ``phase (n,)``, ``frames (n,)``."""

    inputs: np.ndarray
    outputs: np.ndarray
    phase: np.ndarray
    frames: np.ndarray


def clip_frames(features: np.ndarray, spec: DatasetSpec, gait: bool = False,
                gait_speeds: tuple[float, float] = (0.3, 2.0), min_swing_s: float = 0.1,
                default_period_s: float = 1.0) -> ClipFrames:
    """PFNN rows of one clip of de-normalised features ``(T, D)`` in ``spec``'s HumanML3D / essential layout."""
    joints_num, fps = spec.joints_num, float(spec.fps)
    feats = np.asarray(features, dtype=np.float64)
    quat, root = recover_root_rot_pos(feats)
    joints = recover_from_ric(feats, joints_num)
    frames_n = feats.shape[0]
    ground = root * np.array([1.0, 0.0, 1.0])
    forward = qrot(qinv(quat), np.broadcast_to(np.array([0.0, 0.0, 1.0]), (frames_n, 3)).copy())
    local_pos = _to_root(quat, joints - ground[:, None])
    local_vel = _to_root(quat[:-1], joints[1:] - joints[:-1])

    if spec.contact_group and spec.contact_group in {g.name for g in spec.layout}:
        contacts = feats[:, spec.group(spec.contact_group)]
    else:
        contacts = _joint_contacts(joints, joints_num, fps)
    if contacts.shape[1] != 4:
        raise ValueError(f"PFNN export: dataset {spec.name!r} has {contacts.shape[1]} contact columns; expected 4 "
                         f"({', '.join(CONTACT_NAMES)})")
    phase = foot_phase(contacts[:, :2].max(1) > 0.5, contacts[:, 2:].max(1) > 0.5, fps, min_swing_s,
                       default_period_s)

    first, last = _frame_range(frames_n, fps)
    t = np.arange(first, last + 1)
    past, future = _sample_offsets(fps)
    pos, dirs = _trajectory(ground, forward, quat, t, past)
    next_pos, next_dirs = _trajectory(ground, forward, quat, t + 1, future)
    x_blocks = [pos[..., 0], pos[..., 2], dirs[..., 0], dirs[..., 2]]
    if gait:
        one_hot = _gait_one_hot(ground, t[:, None] + past[None, :], fps, gait_speeds, float(spec.metres_per_unit))
        x_blocks += [one_hot[..., g] for g in range(len(GAIT_CLASSES))]
    x_blocks += [local_pos[t - 1].reshape(len(t), -1), local_vel[t - 1].reshape(len(t), -1)]

    root_vel = _to_root(quat[t], (ground[t + 1] - ground[t])[:, None])[:, 0]
    turned = _to_root(quat[t], forward[t + 1][:, None])[:, 0]
    rot = feats[t][:, spec.group("rot")] if "rot" in {g.name for g in spec.layout} else np.zeros((len(t), 0))
    y_blocks = [root_vel[:, :1], root_vel[:, 2:3], np.arctan2(turned[:, 0], turned[:, 2])[:, None],
                (phase.unwrapped[t + 1] - phase.unwrapped[t])[:, None], contacts[t],
                next_pos[..., 0], next_pos[..., 2], next_dirs[..., 0], next_dirs[..., 2],
                local_pos[t].reshape(len(t), -1), local_vel[t].reshape(len(t), -1), rot]
    phase32 = phase.phase[t].astype(np.float32)
    phase32[phase32 >= np.float32(TWO_PI)] = 0.0  # a value just below 2 pi can round up to it in float32
    return ClipFrames(np.concatenate(x_blocks, axis=1).astype(np.float32),
                      np.concatenate(y_blocks, axis=1).astype(np.float32), phase32, t)


# ----------------------------------------------------------------------------------------------------------------------
# export


@dataclass
class PFNNExport:
    """What ``export_pfnn`` wrote: ``rows`` frames from ``clips`` clips (``skipped`` were too short), the X / Y
    widths and the files in ``out_dir``."""

    out_dir: str
    split: str
    rows: int
    clips: int
    skipped: list[str] = field(default_factory=list)
    input_dim: int = 0
    output_dim: int = 0
    files: list[str] = field(default_factory=list)


def _check_spec(spec: DatasetSpec) -> None:
    if spec.representation not in ("humanml3d", "essential"):
        raise ValueError(f"PFNN export: dataset {spec.name!r} is in the {spec.representation!r} representation; "
                         "expected a HumanML3D-layout dataset (root velocities, height and ric joint positions)")


def _block_std(variance: np.ndarray, blocks: list[Block]) -> np.ndarray:
    std = np.sqrt(np.maximum(variance, 0.0))
    for block in blocks:
        value = std[block.start:block.stop].mean()
        std[block.start:block.stop] = value if value > 1e-8 else 1.0
    return std.astype(np.float32)


def _output_folder(out_dir: str) -> str:
    """The folder an export replaces: ``out_dir``, or the folder it links to. Checked before any work: not a file, and
    holding nothing but an earlier export's files (the whole folder is replaced, so other files would be lost)."""
    target = os.path.realpath(out_dir)
    if os.path.exists(target) and not os.path.isdir(target):
        raise ValueError(f"--out {out_dir}: a file; expected the folder of the PFNN files")
    if os.path.isdir(target):
        # .tmp-pfnn-<pid>: the staging folder earlier versions made inside --out, dropped with the export it held.
        foreign = sorted(e for e in os.listdir(target) if e not in FILES and not e.startswith(".tmp-pfnn-"))
        if foreign:
            raise ValueError(f"--out {out_dir}: holds files the PFNN export does not write: {', '.join(foreign[:5])}"
                             f"{' ...' if len(foreign) > 5 else ''}; the export replaces the whole folder, so choose "
                             f"another --out folder (or move them out)")
    return target


def _replace_folder(staging: str, target: str) -> None:
    """Put the folder ``staging`` in ``target``'s place. An earlier ``target`` is moved aside and removed only once
    ``staging`` is in place, and put back when that move fails, so ``target`` never holds files of two exports. (A
    kill between the two moves leaves no ``target``: the earlier export is then ``<target>.replaced-<pid>``, the new
    one ``<target>.exporting-<host>-<pid>``.)"""
    if not os.path.isdir(target):
        os.replace(staging, target)
        return
    old = f"{target}.replaced-{os.getpid()}"
    os.replace(target, old)
    try:
        os.replace(staging, target)
    except BaseException:
        os.replace(old, target)
        raise
    shutil.rmtree(old, ignore_errors=True)


def export_pfnn(dataset_root: str, spec: DatasetSpec, out_dir: str, split: str = "train", gait: bool = False,
                gait_speeds: tuple[float, float] = (0.3, 2.0), progress: bool = False) -> PFNNExport:
    """Write the PFNN frames of ``split`` (files and layout in the module docstring); returns a ``PFNNExport``.

    Files are written to a folder next to ``out_dir`` that replaces it whole at the end (``_replace_folder``), so an
    interrupted export leaves no partial arrays and never mixes files of two exports. ``out_dir`` must hold nothing
    but an earlier export's files.
    """
    _check_spec(spec)
    target = _output_folder(out_dir)
    index = MotionIndex.build(spec, split, dataset_root, progress=progress)
    fps = float(spec.fps)
    rot_width = spec.group("rot").stop - spec.group("rot").start if "rot" in {g.name for g in spec.layout} else 0
    x_blocks, y_blocks = pfnn_layout(spec.joints_num, rot_width, gait)
    x_dim, y_dim = _width(x_blocks), _width(y_blocks)
    spans = [_frame_range(int(length), fps) for length in index.lengths]
    counts = np.array([max(0, last - first + 1) for first, last in spans], dtype=np.int64)
    rows = int(counts.sum())
    clip_ids = [index.clip_id(i) for i in range(len(index))]
    skipped = [clip_ids[i] for i in np.flatnonzero(counts == 0)]
    if rows == 0:
        need = int(math.ceil(fps)) + int(math.ceil(1 + 5 * fps / 6)) + 1
        raise DatasetError(f"{dataset_root}: no {split} clip is long enough for the PFNN trajectory window "
                           f"(-1 s .. +0.83 s); expected clips of at least about {need} frames at {fps:g} fps",
                           kind="too_short", path=dataset_root)

    os.makedirs(os.path.dirname(target), exist_ok=True)
    remove_abandoned_staging(target, "exporting", "a PFNN export")  # left by a kill -9, never read again
    tmp = staging_folder(target, "exporting")
    os.makedirs(tmp)
    try:
        inputs = np.lib.format.open_memmap(os.path.join(tmp, "Input.npy"), "w+", np.float32, (rows, x_dim))
        outputs = np.lib.format.open_memmap(os.path.join(tmp, "Output.npy"), "w+", np.float32, (rows, y_dim))
        phase = np.zeros(rows, dtype=np.float32)
        sequences = np.zeros(rows, dtype=np.int64)
        frames = np.zeros(rows, dtype=np.int64)
        sums = {"x": np.zeros(x_dim), "x2": np.zeros(x_dim), "y": np.zeros(y_dim), "y2": np.zeros(y_dim)}
        row = 0
        for i in tqdm(np.flatnonzero(counts), desc=f"pfnn {split}", unit="clip", disable=not progress):
            clip = clip_frames(index.clip(int(i), dim=spec.dim_pose), spec, gait, gait_speeds)
            n = clip.inputs.shape[0]
            inputs[row:row + n] = clip.inputs
            outputs[row:row + n] = clip.outputs
            phase[row:row + n] = clip.phase
            sequences[row:row + n] = i
            frames[row:row + n] = clip.frames
            for key, values in (("x", clip.inputs), ("y", clip.outputs)):
                values = values.astype(np.float64)
                sums[key] += values.sum(0)
                sums[key + "2"] += (values ** 2).sum(0)
            row += n
        inputs.flush()
        outputs.flush()
        del inputs, outputs
        x_mean, y_mean = sums["x"] / rows, sums["y"] / rows
        stats = {
            "InputMean.npy": x_mean.astype(np.float32),
            "InputStd.npy": _block_std(sums["x2"] / rows - x_mean ** 2, x_blocks),
            "OutputMean.npy": y_mean.astype(np.float32),
            "OutputStd.npy": _block_std(sums["y2"] / rows - y_mean ** 2, y_blocks),
            "Phase.npy": phase, "Sequences.npy": sequences, "Frames.npy": frames,
        }
        for name, values in stats.items():
            np.save(os.path.join(tmp, name), values)
        past, future = _sample_offsets(fps)
        layout = {
            "format": "pfnn",
            "reference": "Holden, Komura, Saito 2017, Phase-Functioned Neural Networks for Character Control",
            "dataset": spec.name, "split": split, "fps": fps, "joints_num": spec.joints_num, "rows": rows,
            "units": {"position": "data units (metres for HumanML3D)", "velocity": "per frame", "angle": "radians"},
            "trajectory": {"offsets_frames": past.tolist(), "offsets_s": (past / fps).tolist(),
                           "next_offsets_frames": future.tolist(), "next_relative_to": "frame t+1"},
            "gait": {"classes": list(GAIT_CLASSES) if gait else [], "speed_thresholds": list(gait_speeds),
                     "speed_unit": "m/s"},
            "contacts": list(CONTACT_NAMES),
            "phase": {"file": "Phase.npy", "range": [0.0, TWO_PI],
                      "definition": "0 at left-foot contact onsets, pi at right-foot onsets, linear in between"},
            "input": {"file": "Input.npy", "dim": x_dim,
                      "columns": [vars(b) for b in x_blocks]},
            "output": {"file": "Output.npy", "dim": y_dim,
                       "columns": [vars(b) for b in y_blocks]},
            "normalisation": {"mean": ["InputMean.npy", "OutputMean.npy"], "std": ["InputStd.npy", "OutputStd.npy"],
                              "std_rule": "per-column std averaged within each named block; constant blocks get 1"},
            "rows_index": {"Sequences.npy": "index into clips", "Frames.npy": "frame t of the clip"},
            "clips": clip_ids, "skipped_clips": skipped,
        }
        with open(os.path.join(tmp, "layout.json"), "w") as f:
            json.dump(layout, f, indent=1)
        _replace_folder(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if skipped:
        logger.warning("PFNN export %s %s: skipped %d clips too short for the trajectory window (%s%s)", spec.name,
                       split, len(skipped), ", ".join(skipped[:5]), ", ..." if len(skipped) > 5 else "")
    logger.info("PFNN export %s %s: %d rows from %d clips -> %s", spec.name, split, rows, int((counts > 0).sum()),
                out_dir)
    return PFNNExport(out_dir, split, rows, int((counts > 0).sum()), skipped, x_dim, y_dim,
                      [os.path.join(out_dir, name) for name in FILES])
