"""BVH motion capture files: parse, forward kinematics, map onto SMPL-22, import a folder.

``parse_bvh`` reads any BVH hierarchy: any rotation channel order per joint, position channels on any joint (a
joint's position channels replace its OFFSET, which is how exporters that key every bone's translation, such as the
Bandai Namco dataset, write them), End Sites and the frame time. ``bvh_positions`` runs forward kinematics vectorised
over frames (rotation ``R = R_c1 @ R_c2 @ R_c3`` for channels listed c1 c2 c3, so ``Zrotation Xrotation Yrotation``
is ``Rz @ Rx @ Ry``).

A skeleton mapping (``options/skeletons/<name>.yaml``) says which source joint gives each SMPL-22 joint, or that a
joint is interpolated between two source joints, plus the unit scale to metres, the up axis and optionally the frame
rate. ``import_bvh_folder`` turns a folder of clips into the HumanML3D layout (``new_joint_vecs``, ``new_joints``,
``texts``, splits, ``Mean.npy``/``Std.npy`` and a ``spec.json`` so the dataset is found by ``--dataset_name``).

Captions of imported clips come from ``utils.bvh_captions``; ``utils.bvh_export.write_bvh`` goes the other way, from
joint positions to a BVH file.
"""

from __future__ import annotations

import logging
import math
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml

from utils.dataset_specs import T2M_KINEMATIC_CHAIN
from utils.motion_process import joints_fps_resample

logger = logging.getLogger(__name__)

SMPL22_JOINT_NAMES = (
    "pelvis", "left_hip", "right_hip", "spine1", "left_knee", "right_knee", "spine2", "left_ankle", "right_ankle",
    "spine3", "left_foot", "right_foot", "neck", "left_collar", "right_collar", "head", "left_shoulder",
    "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist",
)
SKELETON_DIR = Path(__file__).resolve().parents[1] / "options" / "skeletons"

# ---------------------------------------------------------------------------------------------------------------------
# Rotations and forward kinematics
# ---------------------------------------------------------------------------------------------------------------------

def axis_rotation(axis: str, angle: np.ndarray) -> np.ndarray:
    """Rotation matrices (..., 3, 3) about ``axis`` ("x", "y" or "z") by ``angle`` (...,) radians."""
    angle = np.asarray(angle, dtype=np.float64)
    c, s = np.cos(angle), np.sin(angle)
    one, zero = np.ones_like(angle), np.zeros_like(angle)
    rows = {
        "x": ((one, zero, zero), (zero, c, -s), (zero, s, c)),
        "y": ((c, zero, s), (zero, one, zero), (-s, zero, c)),
        "z": ((c, -s, zero), (s, c, zero), (zero, zero, one)),
    }[axis.lower()]
    return np.stack([np.stack(r, axis=-1) for r in rows], axis=-2)


def euler_to_matrix(angles_deg: np.ndarray, order: str) -> np.ndarray:
    """Rotation matrices (..., 3, 3) from Euler angles (..., k) in degrees, composed in ``order``.

    ``order`` "ZXY" gives ``Rz @ Rx @ Ry`` (the BVH convention for channels listed Z, X, Y).
    """
    angles = np.radians(np.asarray(angles_deg, dtype=np.float64))
    if angles.shape[-1] != len(order):
        raise ValueError(f"euler_to_matrix: {angles.shape[-1]} angles for order {order!r}")
    out = np.broadcast_to(np.eye(3), angles.shape[:-1] + (3, 3)).copy()
    for i, axis in enumerate(order):
        out = out @ axis_rotation(axis, angles[..., i])
    return out


def matrix_to_euler_zyx(rot: np.ndarray) -> np.ndarray:
    """Euler angles (..., 3) in degrees (z, y, x) with ``rot = Rz @ Ry @ Rx`` for rotation matrices (..., 3, 3)."""
    rot = np.asarray(rot, dtype=np.float64)
    y = np.arcsin(np.clip(-rot[..., 2, 0], -1.0, 1.0))
    z = np.arctan2(rot[..., 1, 0], rot[..., 0, 0])
    x = np.arctan2(rot[..., 2, 1], rot[..., 2, 2])
    # At +-90 degrees of y only z - x (or z + x) is defined; put it all in z.
    lock = np.abs(rot[..., 2, 0]) > 1.0 - 1e-9
    if np.any(lock):
        z = np.where(lock, np.arctan2(-rot[..., 0, 1], rot[..., 1, 1]), z)
        x = np.where(lock, 0.0, x)
    return np.degrees(np.stack([z, y, x], axis=-1))


def forward_kinematics(local_rotations: np.ndarray, local_translations: np.ndarray,
                       parents: Sequence[int]) -> np.ndarray:
    """Global joint positions (T, J, 3) from local rotations (T, J, 3, 3) and translations (T, J, 3) or (J, 3).

    Joint j sits at ``p[parent] + G[parent] @ t[j]`` with ``G[j] = G[parent] @ R[j]``; the root (parent -1) sits at
    ``t[0]`` with ``G = R[0]``. Parents must come before their children.
    """
    positions, _ = forward_kinematics_transforms(local_rotations, local_translations, parents)
    return positions


def forward_kinematics_transforms(local_rotations: np.ndarray, local_translations: np.ndarray,
                                  parents: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """Global joint positions (T, J, 3) and global rotations (T, J, 3, 3), as ``forward_kinematics`` computes them
    (vertex skinning needs both)."""
    local_rotations = np.asarray(local_rotations, dtype=np.float64)
    frames, joints = local_rotations.shape[:2]
    trans = np.broadcast_to(np.asarray(local_translations, dtype=np.float64), (frames, joints, 3))
    positions = np.zeros((frames, joints, 3))
    rotations = np.zeros((frames, joints, 3, 3))
    for j, p in enumerate(parents):
        if p < 0:
            positions[:, j] = trans[:, j]
            rotations[:, j] = local_rotations[:, j]
        else:
            if p >= j:
                raise ValueError(f"forward_kinematics: parent {p} of joint {j} must come before it")
            positions[:, j] = positions[:, p] + np.einsum("tab,tb->ta", rotations[:, p], trans[:, j])
            rotations[:, j] = rotations[:, p] @ local_rotations[:, j]
    return positions, rotations


def parents_from_chain(kinematic_chain: Sequence[Sequence[int]], joints_num: int) -> list[int]:
    """Parent index of every joint (-1 for the root) from a kinematic chain such as ``T2M_KINEMATIC_CHAIN``."""
    beyond = sorted({j for chain in kinematic_chain for j in chain if not 0 <= j < joints_num})
    if beyond:
        raise ValueError(f"kinematic chain names joints {beyond}, beyond the {joints_num} joints")
    parents = [-2] * joints_num
    parents[kinematic_chain[0][0]] = -1
    for chain in kinematic_chain:
        for a, b in zip(chain[:-1], chain[1:]):
            parents[b] = a
    missing = [j for j, p in enumerate(parents) if p == -2]
    if missing:
        raise ValueError(f"kinematic chain does not reach joints {missing} of {joints_num}")
    return parents


# ---------------------------------------------------------------------------------------------------------------------
# Parsing
# ---------------------------------------------------------------------------------------------------------------------

_CHANNEL_NAMES = {"xposition": ("pos", 0), "yposition": ("pos", 1), "zposition": ("pos", 2),
                  "xrotation": ("rot", "x"), "yrotation": ("rot", "y"), "zrotation": ("rot", "z")}


@dataclass
class BVH:
    """A parsed BVH file. Nodes are joints and End Sites in file order (parents first).

    names, parents, offsets (N, 3): per node; End Sites are named ``<parent>_End`` and have no channels.
    channels: per node, the channel names in file order; ``motion`` (F, C) holds them all, node after node.
    frame_time: seconds per frame.
    """

    names: list[str]
    parents: list[int]
    offsets: np.ndarray
    channels: list[list[str]]
    is_end_site: list[bool]
    frame_time: float
    motion: np.ndarray
    source: str = "<bvh>"

    @property
    def frames(self) -> int:
        return self.motion.shape[0]

    @property
    def fps(self) -> float:
        return 1.0 / self.frame_time

    @property
    def joint_names(self) -> list[str]:
        return [n for n, end in zip(self.names, self.is_end_site) if not end]

    def index(self, name: str) -> int:
        """Node index of ``name``; the error lists the available names."""
        try:
            return self.names.index(name)
        except ValueError:
            raise KeyError(f"{self.source}: no joint {name!r}; joints: {self.names}") from None


def _expect(tokens: list[str], i: int, word: str, source: str) -> int:
    if i >= len(tokens) or tokens[i].upper() != word.upper():
        got = tokens[i] if i < len(tokens) else "end of file"
        raise ValueError(f"{source}: expected {word!r} in the HIERARCHY section, got {got!r}")
    return i + 1


def _floats(tokens: list[str], i: int, n: int, what: str, source: str) -> np.ndarray:
    try:
        values = np.array([float(t) for t in tokens[i:i + n]], dtype=np.float64).reshape(n)
    except ValueError as e:
        raise ValueError(f"{source}: {what} expects {n} numbers, got {tokens[i:i + n]}") from e
    if not np.all(np.isfinite(values)):
        raise ValueError(f"{source}: {what} is {tokens[i:i + n]}; expected {n} finite numbers")
    return values


def parse_bvh_text(text: str, source: str = "<bvh>") -> BVH:
    """Parse the contents of a BVH file (``source`` names it in error messages, with the line for MOTION data)."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")  # line numbers count any line ending once
    parts = re.split(r"\b(MOTION)\b", text, maxsplit=1)  # the word, not MOTIONLESS
    head, sep, motion_text = parts if len(parts) == 3 else (text, "", "")
    if not sep:
        raise ValueError(f"{source}: no MOTION section; expected HIERARCHY ... MOTION Frames: N Frame Time: dt")
    tokens = head.split()
    i = _expect(tokens, 0, "HIERARCHY", source)
    names: list[str] = []
    parents: list[int] = []
    offsets: list[np.ndarray] = []
    channels: list[list[str]] = []
    is_end: list[bool] = []
    stack: list[int] = []
    pending: int | None = None  # node whose "{" is expected next
    while i < len(tokens):
        tok = tokens[i]
        upper = tok.upper()
        # Anything else before a node's '{' would land on its parent (an OFFSET) or leave the node without a body.
        if pending is not None and tok != "{":
            raise ValueError(f"{source}: expected '{{' after {names[pending]!r} in the HIERARCHY section, got {tok!r}")
        if upper in ("ROOT", "JOINT"):
            if upper == "ROOT" and names:
                raise ValueError(f"{source}: more than one ROOT; only single-rooted hierarchies are supported")
            if i + 1 >= len(tokens):
                raise ValueError(f"{source}: {tok} without a name")
            if not stack and names:  # an extra '}' closed the root: the joint would be a second root at the origin
                raise ValueError(f"{source}: JOINT {tokens[i + 1]!r} outside the ROOT joint's braces (an extra '}}' "
                                 f"before it?); only single-rooted hierarchies are supported")
            names.append(tokens[i + 1])
            parents.append(stack[-1] if stack else -1)
            offsets.append(np.zeros(3))
            channels.append([])
            is_end.append(False)
            pending = len(names) - 1
            i += 2
        elif upper == "END":
            if not stack:
                raise ValueError(f"{source}: End Site outside a joint")
            parent = stack[-1]
            names.append(f"{names[parent]}_End")
            parents.append(parent)
            offsets.append(np.zeros(3))
            channels.append([])
            is_end.append(True)
            pending = len(names) - 1
            i = _expect(tokens, i + 1, "Site", source)
        elif tok == "{":
            if pending is None:
                raise ValueError(f"{source}: unexpected '{{' in the HIERARCHY section")
            stack.append(pending)
            pending = None
            i += 1
        elif tok == "}":
            if not stack:
                raise ValueError(f"{source}: unbalanced '}}' in the HIERARCHY section")
            stack.pop()
            i += 1
        elif upper == "OFFSET":
            if not stack:
                raise ValueError(f"{source}: OFFSET outside a joint")
            offsets[stack[-1]] = _floats(tokens, i + 1, 3, f"OFFSET of {names[stack[-1]]!r}", source)
            i += 4
        elif upper == "CHANNELS":
            if not stack:
                raise ValueError(f"{source}: CHANNELS outside a joint")
            try:
                n = int(tokens[i + 1])
            except (IndexError, ValueError):
                raise ValueError(f"{source}: CHANNELS of {names[stack[-1]]!r} needs a count") from None
            chans = tokens[i + 2:i + 2 + n]
            bad = [c for c in chans if c.lower() not in _CHANNEL_NAMES]
            if bad or len(chans) != n:
                raise ValueError(f"{source}: joint {names[stack[-1]]!r} has channels {chans}; expected {n} of "
                                 f"X/Y/Z position/rotation")
            channels[stack[-1]] = chans
            i += 2 + n
        else:
            raise ValueError(f"{source}: unexpected token {tok!r} in the HIERARCHY section")
    if stack:
        raise ValueError(f"{source}: HIERARCHY section ends inside joint {names[stack[-1]]!r} (missing '}}')")
    if not names:
        raise ValueError(f"{source}: no ROOT joint in the HIERARCHY section")

    m = re.match(r"\s*Frames:\s*(\d+)\s*Frame\s+Time:\s*(\S+)", motion_text)
    if not m:
        raise ValueError(f"{source}: MOTION section must start with 'Frames: N' and 'Frame Time: dt'")
    frames = int(m.group(1))
    try:
        frame_time = float(m.group(2))
    except ValueError:
        frame_time = float("nan")
    # An infinite frame time would pass as a frame rate of 0 and fail later, away from the file.
    if not (math.isfinite(frame_time) and frame_time > 0):
        raise ValueError(f"{source}: Frame Time is {m.group(2)!r}; expected seconds per frame > 0")
    num_channels = sum(len(c) for c in channels)
    # One line per frame, checked line by line: a line one value short next to one a value over would add up to
    # Frames x channels and shift every later channel of the frame silently.
    first_line = text.count("\n", 0, len(head) + len(sep) + m.end()) + 1
    rows: list[tuple[int, list[str]]] = []
    for k, line in enumerate(motion_text[m.end():].split("\n")):
        values = line.split()
        if not values:
            continue
        if len(rows) == frames:
            raise ValueError(f"{source}:{first_line + k}: MOTION has more frame lines than Frames {frames}")
        if len(values) != num_channels:
            raise ValueError(f"{source}:{first_line + k}: MOTION frame {len(rows) + 1} of {frames} has {len(values)} "
                             f"values; expected one per channel, {num_channels}")
        rows.append((first_line + k, values))
    if len(rows) != frames and num_channels:
        raise ValueError(f"{source}: MOTION has {len(rows)} frame lines; expected Frames {frames}, one line each")
    try:
        motion = np.array([values for _, values in rows], dtype=np.float64).reshape(frames, num_channels)
    except ValueError:
        for frame, (lineno, values) in enumerate(rows):
            for value in values:
                try:
                    float(value)
                except ValueError:
                    raise ValueError(f"{source}:{lineno}: MOTION frame {frame + 1} of {frames} holds {value!r}; "
                                     f"expected numbers") from None
        raise
    bad = np.argwhere(~np.isfinite(motion))
    if bad.size:
        # Name the first bad value: a NaN would otherwise surface only after forward kinematics, without the file.
        frame, col = (int(v) for v in bad[0])
        columns = [(name, chan) for name, chans in zip(names, channels) for chan in chans]
        joint, chan = columns[col]
        raise ValueError(f"{source}: MOTION frame {frame + 1} of {frames}, joint {joint!r} channel {chan} is "
                         f"{motion[frame, col]}; expected finite numbers ({len(bad)} non-finite value(s) in all)")
    return BVH(names=names, parents=parents, offsets=np.stack(offsets), channels=channels, is_end_site=is_end,
               frame_time=frame_time, motion=motion, source=source)


def parse_bvh(path: str | os.PathLike) -> BVH:
    """Parse a BVH file."""
    # utf-8-sig: a byte order mark (Windows editors write one) would otherwise be read as part of "HIERARCHY".
    with open(path, encoding="utf-8-sig", errors="replace") as f:
        return parse_bvh_text(f.read(), source=str(path))


def bvh_local_transforms(bvh: BVH) -> tuple[np.ndarray, np.ndarray]:
    """Local rotations (F, N, 3, 3) and translations (F, N, 3) of every node, from the channels and offsets."""
    frames, nodes = bvh.frames, len(bvh.names)
    rotations = np.broadcast_to(np.eye(3), (frames, nodes, 3, 3)).copy()
    translations = np.broadcast_to(bvh.offsets, (frames, nodes, 3)).copy()
    col = 0
    for j, chans in enumerate(bvh.channels):
        for c in chans:
            kind, axis = _CHANNEL_NAMES[c.lower()]
            values = bvh.motion[:, col]
            if kind == "pos":
                translations[:, j, axis] = values
            else:
                rotations[:, j] = rotations[:, j] @ axis_rotation(axis, np.radians(values))
            col += 1
    return rotations, translations


def bvh_positions(bvh: BVH, end_sites: bool = False) -> np.ndarray:
    """Global positions (F, J, 3) of the joints (and End Sites with ``end_sites``) in the file's units."""
    rotations, translations = bvh_local_transforms(bvh)
    positions = forward_kinematics(rotations, translations, bvh.parents)
    if end_sites:
        return positions
    keep = [j for j, end in enumerate(bvh.is_end_site) if not end]
    return positions[:, keep]


# ---------------------------------------------------------------------------------------------------------------------
# Skeleton mapping onto SMPL-22
# ---------------------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class SkeletonMap:
    """How a BVH skeleton maps onto SMPL-22 (HumanML3D order).

    sources: per SMPL-22 joint, ``(joint_a, joint_b, weight)``: the position ``(1 - weight) * a + weight * b``
    (``b == a`` and weight 0 for a direct mapping). unit_scale: multiplies source units to metres. up_axis: "y" or
    "z" (Z-up data is turned to Y-up by the rotation (x, y, z) -> (x, z, -y)). fps: overrides the file's frame time
    when set.
    """

    name: str
    sources: tuple[tuple[str, str, float], ...]
    unit_scale: float = 1.0
    up_axis: str = "y"
    fps: float | None = None
    description: str = ""


_MAP_KEYS = {"name", "joints", "unit_scale", "up_axis", "fps", "description"}


def _is_between(entry: object) -> bool:
    """``{between: [A, B], weight: w}`` with two joint names."""
    if not isinstance(entry, dict) or not set(entry) <= {"between", "weight"}:
        return False
    pair = entry.get("between")
    return isinstance(pair, list) and len(pair) == 2 and all(isinstance(e, str) for e in pair)


def _number(value: object, path: Path, name: str, expected: str) -> float:
    """``value`` of field ``name`` in the mapping file ``path`` as a finite float; the error names file and field.

    Numeric strings are accepted because PyYAML reads exponent forms such as ``1e-2`` as strings.
    """
    number = None
    if isinstance(value, (int, float, str)) and not isinstance(value, bool):
        try:
            number = float(value)
        except ValueError:
            pass
    if number is None or not np.isfinite(number):
        raise ValueError(f"{path}: field {name} is {value!r}; expected a number ({expected})")
    return number


def skeleton_map_path(name_or_path: str) -> Path:
    """The YAML file of a mapping: ``name_or_path`` itself when it ends in .yaml / .yml, else
    ``options/skeletons/<name>.yaml``; ValueError naming the known mappings when there is no such name."""
    path = Path(name_or_path)
    if path.suffix.lower() not in (".yaml", ".yml"):
        path = SKELETON_DIR / f"{name_or_path}.yaml"
        if not path.is_file():
            known = sorted(p.stem for p in SKELETON_DIR.glob("*.yaml"))
            raise ValueError(f"unknown skeleton {name_or_path!r}: expected one of {known} or a path to a .yaml file")
    return path


def load_skeleton_map(name_or_path: str) -> SkeletonMap:
    """Read ``options/skeletons/<name>.yaml`` or a YAML file path into a ``SkeletonMap``.

    The YAML has ``joints`` (every SMPL-22 name -> a source joint name, or ``{between: [A, B], weight: w}``),
    ``unit_scale``, ``up_axis`` and optionally ``fps``, ``name`` and ``description``.
    """
    path = skeleton_map_path(name_or_path)
    if not path.is_file():
        raise ValueError(f"{path}: skeleton mapping file not found")
    with open(path, encoding="utf-8") as f:
        try:
            raw = yaml.safe_load(f)
        except yaml.YAMLError as e:
            raise ValueError(f"{path}: not valid YAML ({e})") from e
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: expected a mapping with keys {sorted(_MAP_KEYS)}")
    unknown = sorted(set(raw) - _MAP_KEYS)
    if unknown:
        raise ValueError(f"{path}: unknown keys {unknown}; expected a subset of {sorted(_MAP_KEYS)}")
    joints = raw.get("joints")
    if not isinstance(joints, dict):
        raise ValueError(f"{path}: field 'joints' must map each SMPL-22 joint name to a source joint")
    missing = [n for n in SMPL22_JOINT_NAMES if n not in joints]
    extra = sorted(set(joints) - set(SMPL22_JOINT_NAMES))
    if missing or extra:
        raise ValueError(f"{path}: field 'joints' must name exactly the SMPL-22 joints {list(SMPL22_JOINT_NAMES)}; "
                         f"missing {missing}, unknown {extra}")
    sources = []
    for n in SMPL22_JOINT_NAMES:
        entry = joints[n]
        if isinstance(entry, str):
            sources.append((entry, entry, 0.0))
        elif _is_between(entry):
            weight = _number(entry.get("weight", 0.5), path, f"joints.{n}.weight", "a value in [0, 1]")
            if not 0.0 <= weight <= 1.0:
                raise ValueError(f"{path}: joints.{n}.weight is {weight}; expected a value in [0, 1]")
            sources.append((entry["between"][0], entry["between"][1], weight))
        else:
            raise ValueError(f"{path}: joints.{n} is {entry!r}; expected a joint name or "
                             f"{{between: [JointA, JointB], weight: 0.5}}")
    up_axis = str(raw.get("up_axis", "y")).lower()
    if up_axis not in ("y", "z"):
        raise ValueError(f"{path}: up_axis is {up_axis!r}; expected 'y' or 'z'")
    unit_scale = _number(raw.get("unit_scale", 1.0), path, "unit_scale", "a positive factor to metres, e.g. 0.01 "
                         "for centimetres")
    if not unit_scale > 0:
        raise ValueError(f"{path}: field unit_scale is {unit_scale}; expected a positive factor to metres")
    fps = raw.get("fps")
    if fps is not None:
        fps = _number(fps, path, "fps", "a positive frame rate, or null to use the file's Frame Time")
        if not fps > 0:
            raise ValueError(f"{path}: field fps is {fps}; expected a positive frame rate or null")
    return SkeletonMap(name=str(raw.get("name", path.stem)), sources=tuple(sources), unit_scale=unit_scale,
                       up_axis=up_axis, fps=fps,
                       description=str(raw.get("description", "")))


def map_to_smpl22(positions: np.ndarray, names: Sequence[str], skeleton: SkeletonMap,
                  source: str = "<bvh>") -> np.ndarray:
    """SMPL-22 joints (F, 22, 3) in metres, Y up, from source positions (F, N, 3) of the nodes ``names``."""
    # Positions of the joints only (bvh_positions' default) against all node names would pick wrong rows silently.
    if positions.shape[1] != len(names):
        raise ValueError(f"{source}: positions hold {positions.shape[1]} nodes but {len(names)} names are given; "
                         f"expected one name per node: bvh_positions(bvh, end_sites=True) with bvh.names, or "
                         f"bvh_positions(bvh) with bvh.joint_names")
    index = {n: i for i, n in enumerate(names)}
    used = {n for a, b, _ in skeleton.sources for n in (a, b)}
    wanted = sorted(used - set(index))
    if wanted:
        raise ValueError(f"{source}: skeleton {skeleton.name!r} needs joints {wanted} that the file does not have; "
                         f"joints in the file: {list(names)}")
    twice = sorted(n for n in used if list(names).count(n) > 1)
    if twice:  # mapping by name would take the last of them, whichever body part it is
        raise ValueError(f"{source}: skeleton {skeleton.name!r} maps joints {twice} that the file names more than "
                         "once; expected unique names for the joints a skeleton map uses")
    a = positions[:, [index[s[0]] for s in skeleton.sources]]
    b = positions[:, [index[s[1]] for s in skeleton.sources]]
    w = np.array([s[2] for s in skeleton.sources])[None, :, None]
    joints = (1.0 - w) * a + w * b
    joints = joints * skeleton.unit_scale
    if skeleton.up_axis == "z":
        joints = np.stack([joints[..., 0], joints[..., 2], -joints[..., 1]], axis=-1)
    return joints


def _describe(source: tuple[str, str, float]) -> str:
    a, b, weight = source
    if a == b or weight == 0.0:
        return a
    return b if weight == 1.0 else f"between {a} and {b} (weight {weight:g})"


def check_bones(joints: np.ndarray, skeleton: SkeletonMap, source: str = "<bvh>") -> None:
    """SMPL-22 joints ``(T, 22, 3)`` must lie apart from their parents in every frame: a zero-length bone has no
    direction, so the features' inverse kinematics cannot be computed. The error names the bone, the frame and what
    ``skeleton`` maps both ends to (a skeleton without collar joints, say, needs them interpolated between two of
    its joints rather than mapped onto the spine joint)."""
    parents = parents_from_chain(T2M_KINEMATIC_CHAIN, len(SMPL22_JOINT_NAMES))
    children = np.arange(1, len(parents))
    lengths = np.linalg.norm(joints[:, children] - joints[:, [parents[j] for j in children]], axis=-1)
    bad = np.argwhere(~(lengths > 0))  # also NaN
    if len(bad) == 0:
        return
    frame, j = int(bad[0, 0]), int(children[bad[0, 1]])
    p = parents[j]
    child, parent = SMPL22_JOINT_NAMES[j], SMPL22_JOINT_NAMES[p]
    ends = (_describe(skeleton.sources[j]), _describe(skeleton.sources[p]))
    mapped = f"both map to {ends[0]}" if ends[0] == ends[1] else f"map to {ends[0]} and {ends[1]}"
    raise ValueError(f"{source}: SMPL-22 joint {child} and its parent {parent} are at the same point in frame "
                     f"{frame + 1} of {len(joints)} (skeleton {skeleton.name!r}: they {mapped}); every bone needs a "
                     f"length: map {child} to another joint, or between two: {{between: [JointA, JointB], "
                     f"weight: 0.5}}")


def _clean_fps(fps: float) -> float:
    # Frame times are written rounded ("0.0333333"); snap to the integer rate so resampling keeps the last frame.
    # The bound is relative: six decimals put 120 fps at 120.005 ("0.008333"), while NTSC rates such as 29.97 are
    # 1e-3 away from an integer and stay as written.
    return float(round(fps)) if abs(fps - round(fps)) < 1e-4 * fps else fps


def source_fps(bvh: BVH, skeleton: SkeletonMap) -> float:
    """The frame rate of ``bvh``'s motion: the mapping's ``fps`` if it sets one, else the file's Frame Time."""
    return skeleton.fps or _clean_fps(bvh.fps)


def bvh_to_smpl22(bvh: BVH, skeleton: SkeletonMap, target_fps: float) -> np.ndarray:
    """SMPL-22 joints (T, 22, 3) in metres, Y up, resampled by time stamps to ``target_fps``."""
    joints = map_to_smpl22(bvh_positions(bvh, end_sites=True), bvh.names, skeleton, bvh.source)
    return joints_fps_resample(joints, source_fps(bvh, skeleton), target_fps)


def read_bvh_smpl22(path: str | os.PathLike, skeleton: SkeletonMap,
                    target_fps: float | None = None) -> tuple[np.ndarray, BVH]:
    """The BVH file ``path`` as SMPL-22 joints (T, 22, 3) in metres, Y up, at ``target_fps`` (None: the motion's own
    rate, ``source_fps``), with the parsed file. Raises ValueError naming the file for a motion without frames and
    for a mapping that gives a bone no length (``check_bones``)."""
    parsed = parse_bvh(path)
    if parsed.frames == 0:
        raise ValueError(f"{path}: the MOTION section has 0 frames; need at least 2")
    joints = bvh_to_smpl22(parsed, skeleton, source_fps(parsed, skeleton) if target_fps is None else target_fps)
    if joints.shape[0] >= 2:  # fewer frames: the callers say what they need
        check_bones(joints, skeleton, str(path))
    return joints, parsed
