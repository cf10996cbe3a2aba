"""Body-part tokenizers (BEAT-X / EMAGE style): one RVQ-VAE per body part, reassembled into the whole body.

A dataset spec names its parts in ``spec.body_parts`` (part -> feature indices). For ``beatx`` (55 SMPL-X joints x 6D
rotation = 330 dims) the parts are ``upper`` (13 joints), ``lower`` (9), ``hands`` (30), ``face`` (jaw and eyes, 3)
and ``whole`` (all 330); the first four tile the body. Each part is trained as an ordinary ``RVQVAE`` on its feature
slice (``input_width = len(part_indices(spec, part))``); ``BodyPartTokenizers`` holds one per part and
``combined_decode`` writes every part's reconstruction back at its indices of the full vector.

Helpers for training and evaluation on one part: ``part_indices``, ``select_part``, ``PartSliceDataset`` (a window
dataset cut to a part), ``part_feature_errors`` (mean absolute feature error per part) and
``part_rotation_errors_deg`` (mean geodesic angle per part, for 6D-rotation features).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from functools import partial
from typing import Any, NamedTuple, TypeVar

import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.data import Dataset

from models.part_aware import check_named_partition
from models.tokenizers import RVQVAE
from utils.dataset_specs import DatasetSpec
from utils.quaternion import rot6d_to_matrix

Array = TypeVar("Array", np.ndarray, Tensor)

# The parts that tile BEAT-X's body (``whole`` overlaps them all).
TILING_PARTS = ("upper", "lower", "hands", "face")


def part_indices(spec: DatasetSpec, part: str) -> list[int]:
    """Feature indices of ``part`` in ``spec.body_parts``; a ValueError lists the parts the spec has."""
    if part not in spec.body_parts:
        raise ValueError(f"dataset {spec.name!r} has no body part {part!r}; its parts are {sorted(spec.body_parts)}"
                         if spec.body_parts else f"dataset {spec.name!r} defines no body parts (spec.body_parts is "
                                                 f"empty); body-part training needs a spec such as 'beatx'")
    return [int(i) for i in spec.body_parts[part]]


def select_part(features: Array, spec: DatasetSpec, part: str) -> Array:
    """The feature columns of ``part``: ``(..., D) -> (..., len(part))`` (numpy or torch, same type back)."""
    if features.shape[-1] != spec.dim_pose:
        raise ValueError(f"select_part: expected features with {spec.dim_pose} dims for dataset {spec.name!r}, got "
                         f"shape {tuple(features.shape)}")
    indices = part_indices(spec, part)
    if isinstance(features, Tensor):
        return features[..., torch.as_tensor(indices, device=features.device)]
    return features[..., indices]


class PartSliceDataset(Dataset):
    """``(T, D)`` windows (e.g. a ``MotionWindowDataset``) cut to ``indices``: items ``(T, len(indices))``."""

    def __init__(self, windows: Dataset, indices: Sequence[int]) -> None:
        if len(indices) == 0:
            raise ValueError("PartSliceDataset: indices is empty; expected the feature indices of one body part")
        self.windows = windows
        self.indices = torch.as_tensor(list(indices), dtype=torch.long)

    def __len__(self) -> int:
        return len(self.windows)

    def __getitem__(self, item: int) -> Tensor:
        window = self.windows[item]
        if window.shape[-1] <= int(self.indices.max()):
            raise ValueError(f"PartSliceDataset: window of shape {tuple(window.shape)} has no feature "
                             f"{int(self.indices.max())}")
        return window[..., self.indices]


def _check_pair(recon: Tensor, target: Tensor) -> None:
    if recon.shape != target.shape or recon.ndim < 2:
        raise ValueError(f"expected reconstruction and target of one shape (..., T, D), got {tuple(recon.shape)} and "
                         f"{tuple(target.shape)}")


def part_feature_errors(recon: Tensor, target: Tensor, parts: Mapping[str, Sequence[int]]) -> dict[str, float]:
    """Mean absolute feature error of each part: ``recon, target (B, T, D)`` -> ``{part: error}`` (feature units)."""
    _check_pair(recon, target)
    error = (recon.detach().float() - target.detach().float()).abs()
    return {name: float(error[..., list(indices)].mean()) for name, indices in parts.items()}


def part_rotation_errors_deg(recon: Tensor, target: Tensor,
                             parts: Mapping[str, Sequence[int]]) -> dict[str, float]:
    """Mean geodesic angle (degrees) between reconstructed and target joint rotations of each part.

    Features are 6D rotations (first two matrix rows, as BEAT-X / pytorch3d store them), each joint's six dims
    consecutive and starting at a multiple of 6: ``(B, T, D)`` de-normalised, ``D % 6 == 0``.
    """
    _check_pair(recon, target)
    if recon.shape[-1] % 6:
        raise ValueError(f"part_rotation_errors_deg: {recon.shape[-1]} features are not whole 6D rotations")
    rot_pred = rot6d_to_matrix(recon.detach().double().reshape(*recon.shape[:-1], -1, 6))
    rot_gt = rot6d_to_matrix(target.detach().double().reshape(*target.shape[:-1], -1, 6))
    cos = ((rot_pred * rot_gt).sum((-1, -2)) - 1) / 2  # trace(R_pred^T R_gt) = sum of the elementwise product
    angle = torch.rad2deg(torch.arccos(cos.clamp(-1.0, 1.0)))
    errors = {}
    for name, indices in parts.items():
        joints = sorted({int(i) // 6 for i in indices})
        if sorted(int(i) for i in indices) != [6 * j + k for j in joints for k in range(6)]:  # each dim once
            raise ValueError(f"part_rotation_errors_deg: part {name!r} does not hold whole joints (6 dims each)")
        errors[name] = float(angle[..., joints].mean())
    return errors


# ----------------------------------------------------------------------------------------------------------------------
# combined tokenizers


class BodyPartOutput(NamedTuple):
    """``recon (B, T, D)`` reassembled from the parts, ``aux_loss ()`` and ``perplexity ()`` (means over parts),
    ``indices {part: (B, N, Q)}``."""

    recon: Tensor
    aux_loss: Tensor
    perplexity: Tensor
    indices: dict[str, Tensor]


def _check_parts(parts: Mapping[str, Sequence[int]], total_width: int) -> dict[str, list[int]]:
    """Parts must be non-empty, disjoint and together cover ``range(total_width)``, and their names must be able to
    name a module of an ``nn.ModuleDict`` (torch raises a bare KeyError for "a.b", "type", "keys", ...)."""
    for name in parts:
        if not str(name).isidentifier() or hasattr(nn.ModuleDict(), str(name)):
            raise ValueError(f"BodyPartTokenizers: part name {str(name)!r} cannot name a part's tokenizer; the names "
                             f"of a dataset spec's body_parts must be Python identifiers other than "
                             f"torch.nn.ModuleDict attributes such as 'type' or 'keys'")
    return check_named_partition({str(name): indices for name, indices in parts.items()}, total_width,
                                 "BodyPartTokenizers",
                                 "parts must be disjoint (leave 'whole' out of a combination)")


class BodyPartTokenizers(nn.Module):
    """One ``RVQVAE`` per body part; ``combined_decode`` reassembles the ``(B, T, total_width)`` body.

    Args:
        parts: part name -> feature indices; disjoint, covering ``range(total_width)``.
        total_width: D of the whole-body vector (330 for BEAT-X).
        part_args: part name -> ``RVQVAE`` constructor keywords (``input_width`` must equal the part's size).

    Build fresh ones with ``BodyPartTokenizers.build(parts, total_width, "BodyPartRVQ")``, or combine separately
    trained part tokenizers with ``BodyPartTokenizers.from_models``.
    """

    kind = "rvq"

    def __init__(self, parts: Mapping[str, Sequence[int]], total_width: int,
                 part_args: Mapping[str, Mapping[str, Any]]) -> None:
        super().__init__()
        self.parts = _check_parts(parts, total_width)
        if set(part_args) != set(self.parts):
            raise ValueError(f"BodyPartTokenizers: part_args has parts {sorted(part_args)}, parts has "
                             f"{sorted(self.parts)}")
        self.total_width = total_width
        self.tokenizers = nn.ModuleDict()
        for name, indices in self.parts.items():
            args = dict(part_args[name])
            if args.get("input_width") != len(indices):
                raise ValueError(f"BodyPartTokenizers: part {name!r} has {len(indices)} features but its tokenizer "
                                 f"takes input_width={args.get('input_width')}")
            self.tokenizers[name] = RVQVAE(**args)
        units = {m.unit_length for m in self.tokenizers.values()}
        if len(units) != 1:
            raise ValueError(f"BodyPartTokenizers: every part must downsample alike; unit lengths are {sorted(units)}")
        self.unit_length = units.pop()
        self.model_args = {"parts": {k: list(v) for k, v in self.parts.items()}, "total_width": total_width,
                           "part_args": {k: dict(m.model_args) for k, m in self.tokenizers.items()}}
        for name, indices in self.parts.items():
            # Derived from ``parts``: not saved.
            self.register_buffer(f"_index_{name}", torch.tensor(indices, dtype=torch.long), persistent=False)

    @classmethod
    def build(cls, parts: Mapping[str, Sequence[int]], total_width: int, model: str = "BodyPartRVQ",
              **overrides: Any) -> BodyPartTokenizers:
        """Fresh tokenizers of the registry entry ``model`` (``BODY_PART_MODELS``) for every part."""
        if model not in BODY_PART_MODELS:
            raise ValueError(f"unknown body-part model {model!r}; registered: {sorted(BODY_PART_MODELS)}")
        factory = BODY_PART_MODELS[model]
        defaults = dict(getattr(factory, "keywords", {}))
        part_args = {name: {**defaults, **overrides, "input_width": len(indices)} for name, indices in parts.items()}
        return cls(parts, total_width, part_args)

    @classmethod
    def from_spec(cls, spec: DatasetSpec, part_names: Sequence[str] = TILING_PARTS, model: str = "BodyPartRVQ",
                  **overrides: Any) -> BodyPartTokenizers:
        """``build`` on ``spec.body_parts`` restricted to ``part_names`` (default: the four that tile BEAT-X)."""
        parts = {name: part_indices(spec, name) for name in part_names}
        return cls.build(parts, spec.dim_pose, model, **overrides)

    @classmethod
    def from_models(cls, models: Mapping[str, nn.Module], parts: Mapping[str, Sequence[int]],
                    total_width: int) -> BodyPartTokenizers:
        """Combine separately trained part tokenizers (``RVQVAE`` or loaded ``models.loader.Tokenizer``), copying
        their weights."""
        inner = {name: m.model if isinstance(getattr(m, "model", None), nn.Module) else m for name, m in models.items()}
        wrong = [name for name, m in inner.items() if not isinstance(m, RVQVAE)]
        if wrong:
            raise ValueError(f"BodyPartTokenizers.from_models: parts {wrong} are not RVQVAE tokenizers")
        combined = cls(parts, total_width, {name: m.model_args for name, m in inner.items()})
        for name, m in inner.items():
            combined.tokenizers[name].load_state_dict(m.state_dict())
        return combined

    def index(self, part: str) -> Tensor:
        """Feature indices ``(len(part),)`` of ``part``."""
        return getattr(self, f"_index_{part}")

    def _check_motion(self, motion: Tensor) -> None:
        if motion.ndim != 3 or motion.shape[-1] != self.total_width:
            raise ValueError(f"BodyPartTokenizers: expected motion of shape (B, T, {self.total_width}), got "
                             f"{tuple(motion.shape)}")

    def forward(self, motion: Tensor) -> BodyPartOutput:
        """``(B, T, D)``: every part through its tokenizer, the reconstructions written back at their indices."""
        self._check_motion(motion)
        outs = {name: tokenizer(motion[..., self.index(name)]) for name, tokenizer in self.tokenizers.items()}
        # The body takes the parts' dtype (bf16 under autocast), as in combined_decode.
        recon = next(iter(outs.values())).recon.new_zeros(motion.shape)
        aux, ppl, indices = [], [], {}
        for name, out in outs.items():
            recon[..., self.index(name)] = out.recon
            aux.append(out.aux_loss)
            ppl.append(out.perplexity)
            indices[name] = out.indices_or_latents
        return BodyPartOutput(recon, torch.stack(aux).mean(), torch.stack(ppl).mean(), indices)

    def encode(self, motion: Tensor) -> dict[str, Tensor]:
        """``(B, T, D)`` -> ``{part: indices (B, N, Q)}``; deterministic."""
        self._check_motion(motion)
        return {name: tokenizer.encode(motion[..., self.index(name)]) for name, tokenizer in self.tokenizers.items()}

    def decode_part(self, part: str, codes: Tensor) -> Tensor:
        """One part's indices ``(B, N, q)`` -> its features ``(B, T, len(part))``."""
        if part not in self.tokenizers:
            raise ValueError(f"BodyPartTokenizers: no part {part!r}; parts are {sorted(self.tokenizers)}")
        return self.tokenizers[part].decode(codes)

    def combined_decode(self, codes_per_part: Mapping[str, Tensor]) -> Tensor:
        """``{part: indices (B, N, q)}`` for every part -> the whole body ``(B, N * unit_length, D)``."""
        missing = sorted(set(self.tokenizers) - set(codes_per_part))
        extra = sorted(set(codes_per_part) - set(self.tokenizers))
        if missing or extra:
            raise ValueError(f"combined_decode: codes for every part {sorted(self.tokenizers)} are needed; missing "
                             f"{missing}, unknown {extra}")
        decoded = {name: self.decode_part(name, codes) for name, codes in codes_per_part.items()}
        shapes = {name: tuple(d.shape[:2]) for name, d in decoded.items()}
        if len(set(shapes.values())) != 1:
            raise ValueError(f"combined_decode: parts decode to different (B, T): {shapes}")
        first = next(iter(decoded.values()))
        body = first.new_zeros(*first.shape[:2], self.total_width)
        for name, features in decoded.items():
            body[..., self.index(name)] = features
        return body

    @torch.no_grad()
    def part_errors(self, motion: Tensor) -> dict[str, float]:
        """Mean absolute feature error of every part's reconstruction of ``motion (B, T, D)``."""
        return part_feature_errors(self(motion).recon, motion, self.parts)


# ----------------------------------------------------------------------------------------------------------------------
# registry: per-part RVQ-VAE factories (``input_width`` is the part's size). ``*_Tiny`` is for tests.

BODY_PART_MODELS: dict[str, Callable[..., RVQVAE]] = {
    # 6 residual layers of 1024 codes of dim 128 per part.
    "BodyPartRVQ": partial(RVQVAE, nb_code=1024, code_dim=128, num_quantizers=6),
    "BodyPartRVQ_Tiny": partial(RVQVAE, nb_code=32, code_dim=16, num_quantizers=3, width=32, depth=2),
}
