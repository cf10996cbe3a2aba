"""Conversions between motion representations, so a generator can be scored by the evaluator of another one.

A conversion maps raw (de-normalised) features ``(B, T, D)`` of one dataset spec, with their lengths ``(B,)``, to
features of another, and says whether it is exact. They are registered by representation pair and apply to two specs
of the same skeleton (``joints_num``), so ``t2m -> t2m_67`` and ``synthetic -> t2m_67`` (with ``--data_root``) use the
same one:

- ``humanml3d -> essential`` (exact): the leading ``4 + (J-1)*3`` dims, ``to_essential``; the essential spec must read
  that slice of the other's files (``source_dim``). A feature selection commutes with (de)normalisation, so
  ``SpecConversion.renormalize`` applies it first and the scores equal those of a generator whose output was sliced.
- ``essential -> humanml3d`` (lossy, the 22-joint HumanML3D skeleton): joint positions from root + ric
  (``recover_from_ric``), then HumanML3D's ``process_file`` again (``extract_features``): bones retargeted to the t2m
  skeleton's lengths, the motion put back on the floor, rotations from inverse kinematics on positions (whose facing
  direction is smoothed over time), velocities and foot contacts recomputed. A motion of T frames keeps T frames: T
  joint frames give T-1 feature rows, so one more frame is extrapolated at the last frame's velocity and supplies the
  last row's velocities and contacts; frames past a length stay zero. On the real HumanML3D samples the root and ric
  dims come back to float rounding (1e-6) more than 80 frames before the end, which the smoothing of the facing
  direction does not reach, and within 5e-3 near it; one sample, seemingly cut from a longer clip, within 2e-3 and
  9e-2 (``tests/test_representation.py``). It runs on the CPU, about 20 ms per 196-frame motion on one core.

``conversion_for_evaluation`` also refuses an evaluation dataset whose clips cannot be the generator's: the generator
is asked to match the evaluation dataset's GT by caption and length, so both must read the same data folder at the
same frame rates, and the GT lengths must be whole generator tokens.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from utils.dataset_specs import DatasetSpec, get_dataset_spec
from utils.eval_protocol import renormalize
from utils.motion_process import essential_dim, extract_features, humanml3d_dim, recover_from_ric, to_essential

# Skeletons whose HumanML3D target skeleton is built in (``extract_features`` retargets to it), by joint count.
TARGET_SKELETONS = {22: "t2m"}


@dataclass(frozen=True)
class Conversion:
    """A map between two representations. ``problem(source, target)`` is "" when it applies to these two specs, else
    why not; ``convert(features (B, T, D_src), lengths (B,), source, target)`` returns ``(B, T, D_tgt)`` features and
    the ``(B,)`` lengths; ``columns(source, target)``, for a feature selection, gives the selected columns."""

    exact: bool
    description: str
    problem: Callable[[DatasetSpec, DatasetSpec], str]
    convert: Callable[[torch.Tensor, torch.Tensor, DatasetSpec, DatasetSpec], tuple[torch.Tensor, torch.Tensor]]
    columns: Callable[[DatasetSpec, DatasetSpec], slice] | None = None


def _essential_subset_problem(source: DatasetSpec, target: DatasetSpec) -> str:
    j = source.joints_num
    if target.joints_num != j or source.dim_pose != humanml3d_dim(j) or target.dim_pose != essential_dim(j):
        return (f"{target.name!r} ({target.dim_pose} dims, {target.joints_num} joints) is not the essential subset of "
                f"{source.name!r} ({source.dim_pose} dims, {j} joints)")
    if target.file_dim != source.dim_pose:
        return (f"{target.name!r} reads {target.file_dim}-dim files, not the {source.dim_pose}-dim files of "
                f"{source.name!r} (its source_dim)")
    return ""


def _to_essential(features: torch.Tensor, lengths: torch.Tensor, source: DatasetSpec,
                  target: DatasetSpec) -> tuple[torch.Tensor, torch.Tensor]:
    return to_essential(features, source.joints_num), lengths


def _through_joints_problem(source: DatasetSpec, target: DatasetSpec) -> str:
    j = source.joints_num
    if target.joints_num != j or source.dim_pose != essential_dim(j) or target.dim_pose != humanml3d_dim(j):
        return (f"{source.name!r} ({source.dim_pose} dims, {j} joints) and {target.name!r} ({target.dim_pose} dims, "
                f"{target.joints_num} joints) are not the essential and HumanML3D layouts of one skeleton")
    if j not in TARGET_SKELETONS:
        return (f"re-extracting HumanML3D features retargets to a target skeleton, built in only for "
                f"{', '.join(f'{n} joints ({s})' for n, s in TARGET_SKELETONS.items())}; {source.name!r} has {j}")
    return ""


def with_extrapolated_frame(joints: np.ndarray) -> np.ndarray:
    """Joints (T, J, 3) and one more frame at the last frame's velocity (a single frame stands still) -> (T+1, J, 3):
    the frames ``joints_to_features`` extracts from, so that T joint frames give T feature rows."""
    joints = np.asarray(joints, dtype=np.float64)
    step = joints[-1] - joints[-2] if joints.shape[0] > 1 else np.zeros_like(joints[-1])
    return np.concatenate([joints, (joints[-1] + step)[None]])


def joints_to_features(joints: np.ndarray, spec: DatasetSpec) -> np.ndarray:
    """Joint positions (T, J, 3) -> the features (T, dim_pose) of a HumanML3D-family ``spec`` (``humanml3d`` or
    ``essential``), by HumanML3D's feature extraction (bones retargeted to the built-in target skeleton, rotations by
    IK on positions, foot contacts at the dataset's frame rate). T joint frames give T-1 feature rows; one more frame
    at the last frame's velocity keeps T rows. Raises ValueError for other representations or skeletons, and for
    joints the extraction cannot handle."""
    if spec.representation not in ("humanml3d", "essential") or spec.joints_num not in TARGET_SKELETONS:
        raise ValueError(f"dataset {spec.name!r} ({spec.representation}, {spec.joints_num} joints) has no feature "
                         f"extraction from joint positions here (only HumanML3D-layout datasets with "
                         f"{sorted(TARGET_SKELETONS)} joints)")
    joints = np.asarray(joints, dtype=np.float64)
    if joints.ndim != 3 or joints.shape[1:] != (spec.joints_num, 3) or joints.shape[0] < 1:
        raise ValueError(f"expected joint positions (T, {spec.joints_num}, 3), got shape {joints.shape}")
    features = extract_features(with_extrapolated_frame(joints), skeleton=TARGET_SKELETONS[spec.joints_num],
                                fps=spec.fps)
    if spec.representation == "essential":
        features = to_essential(features, spec.joints_num)
    return np.asarray(features, dtype=np.float32)


def _through_joints(features: torch.Tensor, lengths: torch.Tensor, source: DatasetSpec,
                    target: DatasetSpec) -> tuple[torch.Tensor, torch.Tensor]:
    positions = recover_from_ric(features.detach().double().cpu(), source.joints_num).numpy()  # (B, T, J, 3)
    out = torch.zeros(features.shape[:-1] + (target.dim_pose,), dtype=features.dtype)
    for i, n in enumerate(lengths.tolist()):
        if n:  # T rows in, T rows out: whole tokens stay whole
            out[i, :n] = torch.from_numpy(joints_to_features(positions[i, :n], target)).to(features.dtype)
    return out.to(features.device), lengths


# (source representation, target representation) -> conversion.
CONVERSIONS: dict[tuple[str, str], Conversion] = {
    ("humanml3d", "essential"): Conversion(
        exact=True, description="the essential subset: root and ric, the leading 4 + (J-1)*3 dims",
        problem=_essential_subset_problem, convert=_to_essential,
        columns=lambda source, target: slice(0, essential_dim(source.joints_num))),
    ("essential", "humanml3d"): Conversion(
        exact=False, description="joints from root + ric, HumanML3D features re-extracted (retargeted to the t2m "
                                 "skeleton, rotations by IK on positions, velocities and foot contacts recomputed, "
                                 "the last frame's velocities from a constant-velocity extra frame)",
        problem=_through_joints_problem, convert=_through_joints),
}


def available_conversions() -> str:
    """The registered conversions, one phrase each (for error messages)."""
    return "; ".join(f"{a} -> {b} ({'exact' if c.exact else 'lossy'}: {c.description})"
                     for (a, b), c in CONVERSIONS.items())


@dataclass(frozen=True)
class SpecConversion:
    """A registered conversion bound to its two dataset specs."""

    conversion: Conversion
    source: DatasetSpec
    target: DatasetSpec

    @property
    def exact(self) -> bool:
        return self.conversion.exact

    def __call__(self, features: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Raw features (B, T, D_src) and lengths (B,) -> raw features (B, T, D_tgt) and lengths (B,)."""
        if features.ndim != 3 or features.shape[-1] != self.source.dim_pose:
            raise ValueError(f"conversion {self.source.name} -> {self.target.name}: expected features (B, T, "
                             f"{self.source.dim_pose}), got {tuple(features.shape)}")
        return self.conversion.convert(features, torch.as_tensor(lengths).reshape(-1), self.source, self.target)

    def renormalize(self, motion: torch.Tensor, lengths: torch.Tensor, from_mean: Any, from_std: Any, to_mean: Any,
                    to_std: Any) -> tuple[torch.Tensor, torch.Tensor]:
        """Motion (B, T, D_src) normalised with the source statistics (D_src,) -> converted motion (B, T, D_tgt)
        normalised with the target statistics (D_tgt,), and lengths (B,)."""
        if self.conversion.columns is not None:
            cols = self.conversion.columns(self.source, self.target)
            return renormalize(motion[..., cols], np.asarray(from_mean)[cols], np.asarray(from_std)[cols], to_mean,
                               to_std), torch.as_tensor(lengths).reshape(-1)
        dim = self.source.dim_pose
        raw = renormalize(motion, from_mean, from_std, np.zeros(dim, np.float32), np.ones(dim, np.float32))
        converted, lengths = self(raw, lengths)
        dim = self.target.dim_pose
        return renormalize(converted, np.zeros(dim, np.float32), np.ones(dim, np.float32), to_mean, to_std), lengths

    def title_note(self, log: logging.Logger, what: str = "motion") -> str:
        """The printed table's note on this conversion (`` | scored as X through the exact|LOSSY conversion A -> X``);
        a lossy one is also a warning on ``log`` saying that the scores are not those of a model of X (``what``: the
        thing scored, "motion" or "reconstruction", the subject of "is scored")."""
        source, target = self.source.name, self.target.name
        if not self.exact:
            log.warning("%s %s is scored by the %s evaluator through a lossy conversion (%s): the scores are not those "
                        "of a model of %s", source, what, target, self.conversion.description, target)
        return f" | scored as {target} through the {'exact' if self.exact else 'LOSSY'} conversion {source} -> {target}"

    def to_dict(self) -> dict[str, Any]:
        """What the report records: datasets, representations, whether it is exact, and how."""
        return {"from": self.source.name, "to": self.target.name, "from_representation": self.source.representation,
                "to_representation": self.target.representation, "exact": self.exact,
                "description": self.conversion.description}


def get_conversion(source: DatasetSpec, target: DatasetSpec) -> SpecConversion:
    """The conversion of ``source``'s raw features to ``target``'s; ValueError naming the registered ones if none."""
    pair = (source.representation, target.representation)
    conversion = CONVERSIONS.get(pair)
    problem = conversion.problem(source, target) if conversion else "no conversion is registered"
    if problem:
        raise ValueError(f"no conversion from {source.name!r} ({source.representation}, {source.dim_pose} dims) to "
                         f"{target.name!r} ({target.representation}, {target.dim_pose} dims): {problem}. "
                         f"Conversions: {available_conversions()}")
    return SpecConversion(conversion, source, target)


def check_same_clips(source: DatasetSpec, target: DatasetSpec, unit_length: int, role: str = "generator") -> None:
    """ValueError unless ``target``'s splits, clips and captions can be ``source``'s (same data folder and frame
    rates) and its GT lengths (multiples of ``target.unit_length``) are whole tokens of ``unit_length`` frames.
    ``role`` names the model in the messages (``generator``, ``tokenizer``)."""
    differ = []
    if os.path.realpath(source.root) != os.path.realpath(target.root):
        differ.append(f"data folder {source.root} vs {target.root}")
    for name in ("fps", "text_fps"):
        if getattr(source, name) != getattr(target, name):
            differ.append(f"{name} {getattr(source, name):g} vs {getattr(target, name):g}")
    if differ:
        raise ValueError(f"--eval_dataset {target.name}: its clips cannot be those of the {role}'s dataset "
                         f"{source.name!r} ({'; '.join(differ)}); the {role}'s motion is matched to the evaluation "
                         f"dataset's GT by caption and length, so both must read the same clips (--data_root "
                         f"points both at one folder)")
    if target.unit_length != unit_length:
        raise ValueError(f"--eval_dataset {target.name}: GT lengths are multiples of {target.unit_length} frames, but "
                         f"the {role} makes tokens of {unit_length} frames; the lengths would not be whole tokens")


def conversion_for_evaluation(source_name: str, eval_name: str, unit_length: int,
                              data_root: str | None = None) -> SpecConversion:
    """The conversion that scores a generator of dataset ``source_name`` (tokens of ``unit_length`` frames) with the
    GT and evaluator of ``eval_name``, once both datasets are found to hold the same clips (``data_root``: both)."""
    source, target = get_dataset_spec(source_name, data_root), get_dataset_spec(eval_name, data_root)
    # Other clips are the reason first: a conversion between their representations would not make them the same.
    check_same_clips(source, target, unit_length)
    return get_conversion(source, target)


def tokenizer_conversions(source_name: str, eval_name: str, unit_length: int,
                          data_root: str | None = None) -> tuple[SpecConversion, SpecConversion]:
    """The conversions that score a tokenizer of dataset ``source_name`` (tokens of ``unit_length`` frames) with the
    GT and evaluator of ``eval_name``: the evaluation dataset's GT to the tokenizer's input, which must be exact (a
    tokenizer measured on a lossy copy of its input would be charged for the conversion twice), and the
    reconstruction back, exact or lossy. Checks first that both datasets hold the same clips."""
    source, target = get_dataset_spec(source_name, data_root), get_dataset_spec(eval_name, data_root)
    check_same_clips(source, target, unit_length, role="tokenizer")
    to_source = get_conversion(target, source)
    if not to_source.exact:
        raise ValueError(f"--eval_dataset {eval_name}: the tokenizer's {source_name} input would come from "
                         f"{eval_name}'s GT through a lossy conversion ({to_source.conversion.description}); a "
                         f"tokenizer is scored under another evaluator only when its input follows exactly from that "
                         f"dataset's GT (e.g. a t2m_67 tokenizer under the t2m evaluator)")
    return to_source, get_conversion(source, target)
