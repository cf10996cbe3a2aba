"""One registry of dataset specifications.

Every script picks a dataset with ``--dataset_name``; everything that depends on the dataset (feature width, joints,
frame rate, which feature slices are positions, how the evaluator normalises) is read from its ``DatasetSpec`` here,
never re-typed as an if/else in a script. Datasets made by ``prepare_data.py bvh`` carry a ``spec.json`` next to their
data and are found by name too.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
from dataclasses import dataclass, field

from utils.atomic_io import atomic_write
from utils.paths import project_path

logger = logging.getLogger(__name__)

SPEC_FILE = "spec.json"  # written by the imports (prepare_data.py bvh / amass)
# Written by prepare_data.py synthetic instead: the settings it was built with (utils.synthetic). Such a folder is
# read as the registered ``synthetic`` dataset, whatever its name.
SYNTHETIC_SETTINGS_FILE = "synthetic.json"
# The feature representations ``utils.motion_process.features_to_joints`` and the evaluators know.
REPRESENTATIONS = ("humanml3d", "essential", "vector_272", "smplx_rot6d")

# SMPL-22 joint order used by HumanML3D (see dataset/README.md).
T2M_KINEMATIC_CHAIN = (
    (0, 2, 5, 8, 11), (0, 1, 4, 7, 10), (0, 3, 6, 9, 12, 15), (9, 14, 17, 19, 21), (9, 13, 16, 18, 20),
)
KIT_KINEMATIC_CHAIN = ((0, 11, 12, 13, 14, 15), (0, 16, 17, 18, 19, 20), (0, 1, 2, 3, 4), (3, 5, 6, 7), (3, 8, 9, 10))
# SMPL-X 55 joints: body 0-21 as SMPL-22, 22 jaw, 23/24 eyes, 25-39 left hand, 40-54 right hand.
SMPLX_KINEMATIC_CHAIN = T2M_KINEMATIC_CHAIN + ((15, 22), (15, 23), (15, 24))


@dataclass(frozen=True)
class FeatureGroup:
    """A named slice ``[start, stop)`` of the feature vector."""

    name: str
    start: int
    stop: int

    @property
    def size(self) -> int:
        return self.stop - self.start


@dataclass(frozen=True)
class DatasetSpec:
    """Static description of one dataset and its feature layout.

    ``layout`` lists the feature groups in order and must tile ``[0, dim_pose)``. ``positions`` names the group that
    holds joint positions (the target of the joint-position loss). ``eval_feat_bias`` is the factor by which the
    evaluator normalisation divides the std of the root and contact groups (the Guo et al. convention, see
    ``utils.normalization.eval_normalization``); 1 means the dataset statistics are used as they are.
    ``metres_per_unit`` is the length of one position unit: 1 for metres (HumanML3D, MotionMillion, the importers),
    0.001 for KIT-ML's millimetres; metrics reported in millimetres (MPJPE) use it.
    """

    name: str
    root: str
    joints_num: int
    dim_pose: int
    fps: float
    representation: str  # "humanml3d" (263/251), "essential" (67/64), "vector_272", "smplx_rot6d"
    kinematic_chain: tuple[tuple[int, ...], ...]
    layout: tuple[FeatureGroup, ...]
    positions: str = "ric"
    max_motion_length: int = 196
    min_motion_length: int = 40
    unit_length: int = 4
    window_size: int = 64
    source_dim: int | None = None  # width of the files on disk when the spec uses a leading slice of them
    eval_feat_bias: float = 5.0
    root_groups: tuple[str, ...] = ("root_rot_vel", "root_lin_vel", "root_y")
    contact_group: str | None = "foot_contact"
    text_fps: float = 20.0  # sub-clip tags are seconds times 20 in every reference loader, even for KIT
    body_parts: dict[str, tuple[int, ...]] = field(default_factory=dict)  # part -> feature indices
    metres_per_unit: float = 1.0

    def __post_init__(self) -> None:
        pos = 0
        for group in self.layout:
            if group.start != pos or group.stop <= group.start:
                raise ValueError(f"dataset spec {self.name!r}: feature groups must tile [0, {self.dim_pose}) "
                                 f"in order, got {group} after position {pos}")
            pos = group.stop
        if pos != self.dim_pose:
            raise ValueError(f"dataset spec {self.name!r}: layout covers {pos} dims, dim_pose is {self.dim_pose}")
        names = [g.name for g in self.layout]
        for i, group_name in enumerate(names):
            if group_name in names[:i]:  # lookups by name would see only the first of them
                raise ValueError(f"dataset spec {self.name!r}: layout names group {group_name!r} twice; expected "
                                 f"each feature group to have its own name")
        if self.positions not in names:
            raise ValueError(f"dataset spec {self.name!r}: positions group {self.positions!r} not in {names}")
        # Fields that contradict each other would otherwise fail far from the spec: a slice wider than the files in
        # the loader's gather, a joint or feature index out of range in rendering or the part-aware models.
        if self.min_motion_length > self.max_motion_length:  # every clip would be refused as too short or too long
            raise ValueError(f"dataset spec {self.name!r}: min_motion_length {self.min_motion_length} exceeds "
                             f"max_motion_length {self.max_motion_length}; expected min <= max")
        if self.source_dim is not None and self.source_dim < self.dim_pose:
            raise ValueError(f"dataset spec {self.name!r}: source_dim {self.source_dim} is narrower than dim_pose "
                             f"{self.dim_pose}; expected the width of the files, at least dim_pose (or null)")
        for chain in self.kinematic_chain:
            for joint in chain:
                if not 0 <= joint < self.joints_num:
                    raise ValueError(f"dataset spec {self.name!r}: kinematic_chain names joint {joint}; expected joint "
                                     f"indices below joints_num {self.joints_num}")
        for part, features in self.body_parts.items():
            # Each part is the input of its own tokenizer (train_vq.py --body_part).
            if not features:
                raise ValueError(f"dataset spec {self.name!r}: body_parts {part!r} names no feature; expected at "
                                 f"least one feature index")
            seen: set[int] = set()
            for feature in features:
                if not 0 <= feature < self.dim_pose:
                    raise ValueError(f"dataset spec {self.name!r}: body_parts {part!r} names feature {feature}; "
                                     f"expected feature indices below dim_pose {self.dim_pose}")
                if feature in seen:
                    raise ValueError(f"dataset spec {self.name!r}: body_parts {part!r} names feature {feature} "
                                     f"twice; expected each feature once")
                seen.add(feature)
        # The evaluator normalisation divides the std of each root and contact group once (a group named twice would
        # be divided twice), the part partition puts each in the root part, and both look them up by name.
        for i, group_name in enumerate(self.root_groups):
            if group_name not in names:
                raise ValueError(f"dataset spec {self.name!r}: root_groups names group {group_name!r}; expected names "
                                 f"of its layout groups {names} (or [] for none)")
            if group_name in self.root_groups[:i]:
                raise ValueError(f"dataset spec {self.name!r}: root_groups names group {group_name!r} twice; "
                                 f"expected each group once")
        if self.contact_group is not None:
            if self.contact_group not in names:
                raise ValueError(f"dataset spec {self.name!r}: contact_group {self.contact_group!r} is not a layout "
                                 f"group; expected one of {names} (or null for none)")
            if self.contact_group in self.root_groups:
                raise ValueError(f"dataset spec {self.name!r}: contact_group {self.contact_group!r} is also one of "
                                 f"the root_groups {list(self.root_groups)}; expected a group that is not a root group")

    @property
    def file_dim(self) -> int:
        """Feature width of the ``new_joint_vecs`` files (the spec may use only their first ``dim_pose`` dims)."""
        return self.source_dim or self.dim_pose

    def group(self, name: str) -> slice:
        """The feature slice of group ``name``."""
        for g in self.layout:
            if g.name == name:
                return slice(g.start, g.stop)
        raise KeyError(f"dataset {self.name!r} has no feature group {name!r}; groups: {[g.name for g in self.layout]}")

    @property
    def position_slice(self) -> slice:
        return self.group(self.positions)

    def to_dict(self) -> dict:
        """Plain-python form (for checkpoints and ``spec.json``)."""
        d = dataclasses.asdict(self)
        d["layout"] = [[g["name"], g["start"], g["stop"]] for g in d["layout"]]
        d["kinematic_chain"] = [list(c) for c in self.kinematic_chain]
        d["body_parts"] = {k: list(v) for k, v in self.body_parts.items()}
        d["root_groups"] = list(self.root_groups)
        return d

    @classmethod
    def from_dict(cls, d: dict, source: str = "<dict>") -> DatasetSpec:
        """The spec of plain-python ``d`` (``to_dict``'s form, e.g. a ``spec.json``); ``source`` names it in errors.

        Every field is checked for presence and type before the spec is built, so a bad file fails here, naming the
        file, the field and what was expected, rather than deep inside a loader.
        """
        if not isinstance(d, dict):
            raise ValueError(f"{source}: expected a JSON object of dataset spec fields, got {type(d).__name__}")
        fields = dataclasses.fields(cls)
        known = {f.name for f in fields}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"{source}: unknown dataset spec fields {unknown}; expected a subset of {sorted(known)}")
        required = [f.name for f in fields
                    if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
        missing = [n for n in required if n not in d]
        if missing:
            raise ValueError(f"{source}: dataset spec is missing field(s) {missing}; required fields: {required}")
        for name, value in d.items():
            expected = _check_spec_field(name, value)
            if expected:
                raise ValueError(f"{source}: dataset spec field {name!r} is {_short(value, 80)}; expected {expected}")
        try:
            d = dict(d)
            for name in ("fps", "text_fps", "eval_feat_bias", "metres_per_unit"):
                if name in d:
                    d[name] = float(d[name])  # JSON writes 20.0 as 20 in some tools
            d["layout"] = tuple(FeatureGroup(str(n), int(a), int(b)) for n, a, b in d["layout"])
            d["kinematic_chain"] = tuple(tuple(int(j) for j in c) for c in d["kinematic_chain"])
            d["body_parts"] = {k: tuple(int(i) for i in v) for k, v in d.get("body_parts", {}).items()}
            if "root_groups" in d:  # left out, it takes the field's default like every optional field
                d["root_groups"] = tuple(d["root_groups"])
            return cls(**d)
        except (KeyError, TypeError, ValueError) as e:
            raise ValueError(f"{source}: invalid dataset spec: {e}") from e

    def save(self, path: str) -> None:
        """Write the spec as JSON (used by importers so the dataset is found by name)."""
        with atomic_write(path) as f:
            json.dump(self.to_dict(), f, indent=2)


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _is_int_list(value: object) -> bool:
    return isinstance(value, (list, tuple)) and all(_is_int(v) and v >= 0 for v in value)


def _check_spec_field(name: str, value: object) -> str:
    """What field ``name`` of a plain-python spec should hold, or "" when ``value`` is of that form."""
    if name in ("name", "root", "positions"):
        ok, expected = isinstance(value, str) and value != "", "a non-empty string"
    elif name == "representation":
        ok, expected = value in REPRESENTATIONS, f"one of {list(REPRESENTATIONS)}"
    elif name in ("joints_num", "dim_pose", "max_motion_length", "min_motion_length", "unit_length", "window_size"):
        ok, expected = _is_int(value) and value > 0, "a positive integer"
    elif name == "source_dim":
        ok, expected = value is None or (_is_int(value) and value > 0), "a positive integer or null"
    elif name in ("fps", "text_fps", "eval_feat_bias", "metres_per_unit"):
        ok, expected = _is_number(value) and value > 0, "a positive number"
    elif name == "contact_group":
        ok, expected = value is None or isinstance(value, str), "a feature group name or null"
    elif name == "root_groups":
        ok = isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value)
        expected = "a list of feature group names"
    elif name == "kinematic_chain":
        ok = isinstance(value, (list, tuple)) and len(value) > 0 and all(_is_int_list(c) and c for c in value)
        expected = "a non-empty list of joint index chains such as [[0, 2, 5], [0, 1, 4]]"
    elif name == "layout":
        ok = isinstance(value, (list, tuple)) and len(value) > 0 and all(
            isinstance(g, (list, tuple)) and len(g) == 3 and isinstance(g[0], str) and _is_int(g[1])
            and _is_int(g[2]) for g in value)
        expected = 'a non-empty list of feature groups [name, start, stop] such as [["ric", 4, 67], ...]'
    elif name == "body_parts":
        ok = isinstance(value, dict) and all(isinstance(k, str) and _is_int_list(v) for k, v in value.items())
        expected = "an object mapping part names to lists of feature indices"
    else:
        return ""
    return "" if ok else expected


def humanml3d_layout(joints_num: int) -> tuple[FeatureGroup, ...]:
    """The HumanML3D feature groups for ``joints_num`` joints (263 for 22, 251 for 21)."""
    j = joints_num
    sizes = [("root_rot_vel", 1), ("root_lin_vel", 2), ("root_y", 1), ("ric", (j - 1) * 3),
             ("rot", (j - 1) * 6), ("local_vel", j * 3), ("foot_contact", 4)]
    return _tile(sizes)


def essential_layout(joints_num: int) -> tuple[FeatureGroup, ...]:
    """MARDM's essential subset: the first 4 + (J-1)*3 dims of the HumanML3D vector."""
    return humanml3d_layout(joints_num)[:4]


def vector272_layout() -> tuple[FeatureGroup, ...]:
    """The 272-dim MotionMillion layout (30 fps, 22 joints, root included in the local positions)."""
    return _tile([("root_vel_xz", 2), ("heading_rot6d", 6), ("local_pos", 66), ("local_vel", 66), ("rot", 132)])


def _tile(sizes: list[tuple[str, int]]) -> tuple[FeatureGroup, ...]:
    groups, pos = [], 0
    for name, size in sizes:
        groups.append(FeatureGroup(name, pos, pos + size))
        pos += size
    return tuple(groups)


def humanml3d_spec(name: str, root: str, joints_num: int = 22, fps: float = 20.0, **kw) -> DatasetSpec:
    """A spec in the HumanML3D representation (what the synthetic and BVH importers write)."""
    layout = humanml3d_layout(joints_num)
    chain = T2M_KINEMATIC_CHAIN if joints_num == 22 else KIT_KINEMATIC_CHAIN
    return DatasetSpec(name=name, root=root, joints_num=joints_num, dim_pose=layout[-1].stop, fps=fps,
                       representation="humanml3d", kinematic_chain=kw.pop("kinematic_chain", chain), layout=layout,
                       **kw)


def _beatx_spec() -> DatasetSpec:
    # BEAT-X body as 55 SMPL-X joints x 6D rotation = 330 dims; parts as EMAGE splits them.
    parts_joints = {
        "upper": (3, 6, 9, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21),
        "lower": (0, 1, 2, 4, 5, 7, 8, 10, 11),
        "hands": tuple(range(25, 55)),
        "face": (22, 23, 24),
    }
    parts = {k: tuple(d for j in v for d in range(6 * j, 6 * j + 6)) for k, v in parts_joints.items()}
    parts["whole"] = tuple(range(330))
    return DatasetSpec(name="beatx", root="dataset/BEAT2", joints_num=55, dim_pose=330, fps=30.0,
                       representation="smplx_rot6d", kinematic_chain=SMPLX_KINEMATIC_CHAIN,
                       layout=(FeatureGroup("rot", 0, 330),), positions="rot", max_motion_length=300,
                       min_motion_length=32, eval_feat_bias=1.0, root_groups=(), contact_group=None, text_fps=30.0,
                       body_parts=parts)


DATASETS: dict[str, DatasetSpec] = {
    "t2m": humanml3d_spec("t2m", "dataset/HumanML3D"),
    "kit": humanml3d_spec("kit", "dataset/KIT-ML", joints_num=21, fps=12.5, min_motion_length=24,
                          metres_per_unit=0.001),
    "t2m_67": DatasetSpec(name="t2m_67", root="dataset/HumanML3D", joints_num=22, dim_pose=67, fps=20.0,
                          representation="essential", kinematic_chain=T2M_KINEMATIC_CHAIN,
                          layout=essential_layout(22), source_dim=263, eval_feat_bias=1.0, contact_group=None),
    # MARDM's KIT-ML subset: root and ric of the 21 joints, 4 + 20 * 3 = 64 dims of the 251-dim files.
    "kit_64": DatasetSpec(name="kit_64", root="dataset/KIT-ML", joints_num=21, dim_pose=64, fps=12.5,
                          representation="essential", kinematic_chain=KIT_KINEMATIC_CHAIN,
                          layout=essential_layout(21), source_dim=251, eval_feat_bias=1.0, contact_group=None,
                          min_motion_length=24, metres_per_unit=0.001),
    "motionmillion": DatasetSpec(name="motionmillion", root="dataset/MotionMillion", joints_num=22, dim_pose=272,
                                 fps=30.0, representation="vector_272", kinematic_chain=T2M_KINEMATIC_CHAIN,
                                 layout=vector272_layout(), positions="local_pos", max_motion_length=600,
                                 min_motion_length=40, window_size=96, unit_length=2, eval_feat_bias=1.0, text_fps=30.0,
                                 root_groups=("root_vel_xz", "heading_rot6d"), contact_group=None),
    "beatx": _beatx_spec(),
    "synthetic": humanml3d_spec("synthetic", "dataset/Synthetic"),
}


def full_width_names(spec: DatasetSpec) -> list[str]:
    """The datasets whose statistics cover every column of ``spec``'s files, the only ones ``prepare_data.py stats``
    computes them with: ``[spec.name]`` when ``spec`` reads whole files, else the registered datasets of its folder
    that do (``["t2m"]`` for ``t2m_67``; empty for an unregistered slice)."""
    if spec.file_dim == spec.dim_pose:
        return [spec.name]
    registered = DATASETS[spec.name].root if spec.name in DATASETS else None
    return sorted(name for name, other in DATASETS.items() if other.root == registered
                  and other.dim_pose == spec.file_dim)


def spec_from_record(record: dict, source: str) -> DatasetSpec:
    """The spec a checkpoint records (``DatasetSpec.to_dict``'s form); ``source`` names it in errors. A field the
    record lacks because it is older than the field takes the registered dataset's value when the record names a
    registered dataset (KIT's ``metres_per_unit`` of 0.001, not the default 1.0), else the field's default."""
    if isinstance(record, dict) and record.get("name") in DATASETS:
        record = {**DATASETS[record["name"]].to_dict(), **record}
    return DatasetSpec.from_dict(record, source=source)


def _warn_if_folder_spec_differs(spec: DatasetSpec, data_root: str) -> None:
    """Log a warning when ``data_root`` carries a ``spec.json`` that the registered ``spec`` contradicts.

    A registered name always wins over a folder's spec.json, so a folder imported under a registered name (say
    ``.../kit``) would otherwise be read with the registry's layout without a word. Only the fields the file holds
    are compared: one written before a field existed (``metres_per_unit``) does not disagree about it.
    """
    path = os.path.join(data_root, SPEC_FILE)
    if not os.path.isfile(path):
        return
    try:
        with open(path) as f:
            raw = json.load(f)
        folder_spec = DatasetSpec.from_dict(raw, source=path)
    except (OSError, ValueError) as e:  # json.JSONDecodeError is a ValueError
        logger.warning("%s is ignored: --dataset_name %s is a registered dataset, whose spec is used (%s)", path,
                       spec.name, e)
        return
    # Both sides in to_dict's form (floats, lists), so 20 and 20.0 or a list and a tuple are not a disagreement.
    ours, theirs = spec.to_dict(), folder_spec.to_dict()
    differ = [k for k in ours if k not in ("name", "root") and k in raw and ours[k] != theirs[k]]
    if differ:
        shown = "; ".join(f"{k} {_short(theirs[k])} there, {_short(ours[k])} registered" for k in differ)
        logger.warning("%s disagrees with the registered dataset %r (%s): the registered spec is used and this "
                       "spec.json is ignored. To use the folder's spec, rename the folder to a name that is not "
                       "registered (%s) and pass that as --dataset_name", path, spec.name, shown, sorted(DATASETS))


def _short(value: object, limit: int = 40) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."


def get_dataset_spec(name: str, data_root: str | None = None) -> DatasetSpec:
    """Look up ``name`` in the registry, else read ``<data_root or dataset/name>/spec.json``.

    ``data_root`` overrides the spec's folder (``--data_root``). A registered name always uses the registered spec;
    a ``spec.json`` in ``data_root`` that disagrees with it is reported as a warning. An unregistered dataset's root
    is the folder its ``spec.json`` was found in and its name is ``name``, the one it was asked for by (not the
    ``root`` and ``name`` recorded there, which say where and as what it was imported: the folder may have been moved
    or copied under another name since, and runs, samples and checks on it are then filed under the new name).
    """
    if name in DATASETS:
        spec = DATASETS[name]
        if data_root:
            _warn_if_folder_spec_differs(spec, data_root)
    else:
        folder = data_root or project_path(os.path.join("dataset", name))
        path = os.path.join(folder, SPEC_FILE)
        if not os.path.isfile(path):
            where = (f"--data_root {folder} does not exist" if data_root and not os.path.isdir(folder)
                     else f"no {path}")
            if os.path.isfile(os.path.join(folder, SYNTHETIC_SETTINGS_FILE)):
                hint = (f"{folder} holds a dataset made by prepare_data.py synthetic: pass --dataset_name synthetic "
                        f"--data_root {folder}")
            else:
                hint = (f"prepare_data.py bvh and amass write one; for HumanML3D-layout features of your own, 263-dim, "
                        f"pass --dataset_name t2m --data_root {folder}")
            raise ValueError(f"unknown dataset {name!r}: not one of {sorted(DATASETS)} and {where} ({hint})")
        try:
            with open(path) as f:
                raw = json.load(f)
        except (OSError, json.JSONDecodeError) as e:
            raise ValueError(f"{path}: cannot read dataset spec: {e}") from e
        # The folder the spec.json was found in is the dataset's root and the name it was found by is its name,
        # wherever and as whatever it was imported.
        return dataclasses.replace(DatasetSpec.from_dict(raw, source=path), root=folder, name=name)
    # Without --data_root, a registered relative root resolves under $FSQ_MARDM_HOME when that is set (utils.paths).
    return dataclasses.replace(spec, root=data_root or project_path(spec.root))


def dataset_names(data_dir: str | None = None) -> list[str]:
    """Registered names plus every folder under ``data_dir`` (default ``dataset/``, under ``$FSQ_MARDM_HOME`` when
    set) that carries a ``spec.json`` (for argparse choices)."""
    data_dir = data_dir or project_path("dataset")
    names = set(DATASETS)
    if os.path.isdir(data_dir):
        for entry in os.listdir(data_dir):
            if os.path.isfile(os.path.join(data_dir, entry, SPEC_FILE)):
                names.add(entry)
    return sorted(names)
