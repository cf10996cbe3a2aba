"""Conditional part-aware residual VQ-VAE.

Pipeline for motion ``(B, T, D)``:

1. Per-part embeddings: the D features are split into P parts (``part_indices``, a partition of ``range(D)``); part p
   goes through its own ``Linear(len(part_p), H)``, giving ``(B, T, P, H)`` plus a learned embedding per part.
2. Spatial transformer: a pre-norm transformer encoder over the P part tokens of every frame (``B*T`` sequences of
   length P), so each part sees the whole pose before any temporal mixing.
3. Temporal conv encoder (``models.encdec.Encoder``) on the flattened ``P*H`` channels -> latents ``(B, N, C)``.
4. ``ResidualVQ`` (MoMask) on the latents.
5. Conv decoder (``models.encdec.Decoder``) straight back to the D input features.

Conditions (optional) enter through FiLM (Perez et al. 2018, "FiLM: Visual Reasoning with a General Conditioning
Layer"): a condition vector ``(B, cond_dim)`` is the sum of one ``nn.Embedding`` per categorical condition (e.g.
species, gender; index 0 of every vocabulary means "unknown") and a linear projection of an optional text embedding
``(B, E)``; every FiLM layer maps it to a per-channel ``gamma, beta`` and applies ``h * (1 + gamma) + beta``. FiLM sits
after the stem and after every resolution stage of both the encoder and the decoder. Its projections start at zero,
so an untrained model ignores the conditions and training decides how much they matter.

``cond`` is a mapping: each categorical name -> ``(B,)`` long ids, and optionally ``"text_emb"`` -> ``(B, E)``. A
missing categorical condition counts as unknown (id 0) and a missing text embedding adds nothing, so the model also
runs without any condition (e.g. behind ``models.loader.Tokenizer``).

Parts of a HumanML3D-layout vector (``joint_part_indices``): the root group (root angular and linear velocity, root
height, the root joint's velocity and the foot contacts) and, for every other joint, its ric position (3), 6D rotation
(6) and velocity (3); 22 parts for the 263-dim HumanML3D vector, 30 for a 30-joint skeleton's 359 dims.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Mapping, Sequence
from functools import partial
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

from models.encdec import Decoder, Encoder, check_input_dtype, check_is_tensor, normalize_norm_name
from models.residual_vq import ResidualVQ
from utils.dataset_specs import DatasetSpec, humanml3d_layout

if TYPE_CHECKING:
    from models.tokenizers import TokenizerOutput

TEXT_KEY = "text_emb"
PartIndices = list[list[int]]


# ----------------------------------------------------------------------------------------------------------------------
# part partitions


def _joint_parts(joints_num: int, groups: Mapping[str, tuple[int, int]], root_groups: Sequence[str],
                 contact_group: str | None, source: str) -> PartIndices:
    """Root group + one part per non-root joint from the named slices of a HumanML3D-style layout."""
    if "ric" not in groups:
        raise ValueError(f"{source}: a part-aware partition needs a HumanML3D-style layout with a 'ric' group; "
                         f"groups are {sorted(groups)}")
    root = [i for name in root_groups if name in groups for i in range(*groups[name])]
    joints: PartIndices = [[] for _ in range(joints_num - 1)]
    per_joint = {"ric": 3, "rot": 6}
    for name, size in per_joint.items():
        if name not in groups:
            continue
        start, stop = groups[name]
        if stop - start != (joints_num - 1) * size:
            raise ValueError(f"{source}: group {name!r} has {stop - start} dims; expected {(joints_num - 1) * size} "
                             f"for {joints_num} joints")
        for j in range(joints_num - 1):
            joints[j] += list(range(start + size * j, start + size * (j + 1)))
    if "local_vel" in groups:
        start, stop = groups["local_vel"]
        if stop - start != joints_num * 3:
            raise ValueError(f"{source}: group 'local_vel' has {stop - start} dims; expected {joints_num * 3}")
        root += list(range(start, start + 3))  # the root joint's own velocity
        for j in range(joints_num - 1):
            joints[j] += list(range(start + 3 * (j + 1), start + 3 * (j + 2)))
    if contact_group and contact_group in groups:
        root += list(range(*groups[contact_group]))
    return [root, *joints]


def humanml3d_part_indices(joints_num: int) -> PartIndices:
    """The partition of a ``12 * joints_num - 1``-dim HumanML3D vector into ``joints_num`` parts (root group first,
    then joints 1 .. J-1); see the module docstring."""
    if joints_num < 2:
        raise ValueError(f"humanml3d_part_indices: joints_num must be >= 2, got {joints_num}")
    groups = {g.name: (g.start, g.stop) for g in humanml3d_layout(joints_num)}
    return _joint_parts(joints_num, groups, ("root_rot_vel", "root_lin_vel", "root_y"), "foot_contact",
                        f"HumanML3D layout of {joints_num} joints")


def joint_part_indices(spec: DatasetSpec) -> PartIndices:
    """The part partition of ``spec``'s features: its root groups (+ root velocity, contacts) and one part per joint.

    Works for the HumanML3D (263 / 251 / any ``12J - 1``) and essential (67 / 64) layouts; other representations are
    a ValueError.
    """
    groups = {g.name: (g.start, g.stop) for g in spec.layout}
    parts = _joint_parts(spec.joints_num, groups, spec.root_groups, spec.contact_group, f"dataset {spec.name!r}")
    check_partition(parts, spec.dim_pose)
    return parts


def check_partition(part_indices: Sequence[Sequence[int]], input_width: int) -> PartIndices:
    """Validate that ``part_indices`` is a partition of ``range(input_width)`` into non-empty parts; returns it as
    plain lists. Errors name the part and the offending feature."""
    named = check_named_partition(dict(enumerate(part_indices)), input_width, "part_indices")
    return list(named.values())


def check_named_partition(parts: Mapping[Any, Sequence[int]], width: int, what: str,
                          overlap_hint: str = "parts must not overlap") -> dict[Any, list[int]]:
    """``parts`` (name -> feature indices) must be non-empty, disjoint and together cover ``range(width)``; returns
    them as plain lists. Errors start with ``what`` and name the part and the offending feature."""
    clean: dict[Any, list[int]] = {}
    for name, indices in parts.items():
        try:  # int() would silently turn a feature 1.5 into feature 1
            clean[name] = [operator.index(i) for i in indices]
        except TypeError:
            raise ValueError(f"{what}: part {name!r} holds {list(indices)}; feature indices must be integers") from None
    owner: dict[int, Any] = {}
    for name, indices in clean.items():
        if not indices:
            raise ValueError(f"{what}: part {name!r} is empty; every part needs at least one feature")
        for i in indices:
            if not 0 <= i < width:
                raise ValueError(f"{what}: part {name!r} holds feature {i}, outside [0, {width})")
            if i in owner:
                raise ValueError(f"{what}: feature {i} is in part {owner[i]!r} and in part {name!r}; {overlap_hint}")
            owner[i] = name
    missing = sorted(set(range(width)) - set(owner))
    if missing:
        raise ValueError(f"{what}: features {missing[:8]}{' ...' if len(missing) > 8 else ''} "
                         f"({len(missing)} of {width}) are in no part; the parts must cover every feature")
    return clean


# ----------------------------------------------------------------------------------------------------------------------
# conditioning


class ConditionEmbedding(nn.Module):
    """Categorical ids ``{name: (B,)}`` and an optional text embedding ``(B, E)`` -> condition vector ``(B, cond_dim)``.

    ``conditions`` maps each categorical name to its vocabulary size (index 0 = unknown); ``text_dim`` 0 means no
    text condition.
    """

    def __init__(self, conditions: Mapping[str, int], text_dim: int, cond_dim: int) -> None:
        super().__init__()
        for name, size in conditions.items():
            if not name.isidentifier() or name == TEXT_KEY:
                raise ValueError(f"condition name {name!r} must be a Python identifier other than {TEXT_KEY!r}")
            # The embeddings live in an nn.ModuleDict, which cannot hold a module under one of its own attribute
            # names (torch raises a bare KeyError for "type", "keys", "training", ...).
            if hasattr(nn.ModuleDict(), name):
                raise ValueError(f"condition name {name!r} is the name of a torch.nn.ModuleDict attribute and cannot "
                                 f"name an embedding; rename that field of conditions.json (and in --conditions)")
            if int(size) < 1:
                raise ValueError(f"condition {name!r}: vocabulary size must be >= 1, got {size}")
        self.cond_dim = cond_dim
        self.embeddings = nn.ModuleDict({name: nn.Embedding(int(size), cond_dim) for name, size in conditions.items()})
        self.text_dim = text_dim
        self.text_proj = nn.Linear(text_dim, cond_dim) if text_dim > 0 else None
        self.out = nn.Sequential(nn.SiLU(), nn.Linear(cond_dim, cond_dim))

    @property
    def keys(self) -> list[str]:
        """The keys ``cond`` may hold."""
        return [*self.embeddings, *([TEXT_KEY] if self.text_proj is not None else [])]

    def forward(self, cond: Mapping[str, Tensor] | None, batch: int, device: torch.device) -> Tensor:
        """``cond`` (see the module docstring) -> ``(B, cond_dim)``."""
        cond = dict(cond or {})
        unknown = sorted(set(cond) - set(self.keys))
        if unknown:
            raise ValueError(f"cond has keys {unknown} the model was not built with; expected a subset of {self.keys}")
        total = torch.zeros(batch, self.cond_dim, device=device)
        for name, embedding in self.embeddings.items():
            ids = cond.get(name)
            if ids is None:
                ids = torch.zeros(batch, dtype=torch.long, device=device)
            check_is_tensor(ids, "PartAwareRVQVAE", f"cond[{name!r}]", f"({batch},) integer ids",
                            "torch.from_numpy(ids).long()")
            if ids.shape != (batch,) or ids.dtype == torch.bool or ids.dtype.is_floating_point or ids.dtype.is_complex:
                raise ValueError(f"cond[{name!r}]: expected ({batch},) integer ids, got {tuple(ids.shape)} {ids.dtype}")
            if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= embedding.num_embeddings):
                raise ValueError(f"cond[{name!r}]: ids must lie in [0, {embedding.num_embeddings}), got "
                                 f"[{int(ids.min())}, {int(ids.max())}]")
            total = total + embedding(ids.to(device))
        text = cond.get(TEXT_KEY)
        if text is not None and self.text_proj is not None:
            check_is_tensor(text, "PartAwareRVQVAE", f"cond[{TEXT_KEY!r}]", f"({batch}, {self.text_dim})",
                            "torch.from_numpy(text_emb).float()")
            if text.shape != (batch, self.text_dim):
                raise ValueError(f"cond[{TEXT_KEY!r}]: expected ({batch}, {self.text_dim}), got {tuple(text.shape)}")
            total = total + self.text_proj(text.to(device=device, dtype=total.dtype))
        return self.out(total)


class FiLM(nn.Module):
    """``h (B, H, T) * (1 + gamma) + beta`` with ``gamma, beta (B, H)`` from a condition vector ``(B, cond_dim)``.

    The projection starts at zero (an identity at initialisation)."""

    def __init__(self, cond_dim: int, channels: int) -> None:
        super().__init__()
        self.proj = nn.Linear(cond_dim, 2 * channels)
        nn.init.zeros_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)

    def forward(self, h: Tensor, cond_vec: Tensor) -> Tensor:
        """``h (B, H, T)``, ``cond_vec (B, cond_dim)`` -> ``(B, H, T)``."""
        gamma, beta = self.proj(cond_vec).to(h.dtype).chunk(2, dim=-1)
        return h * (1 + gamma[..., None]) + beta[..., None]


# ----------------------------------------------------------------------------------------------------------------------
# model


def _plain(value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    return value


class PartAwareRVQVAE(nn.Module):
    """Conditional part-aware RVQ-VAE (see the module docstring). Same interface as ``models.tokenizers.RVQVAE``
    plus an optional ``cond`` on every call.

    Args:
        input_width: D.
        num_parts: P; must equal ``len(part_indices)``. Without ``part_indices`` the HumanML3D partition of a P-joint
            skeleton is used, which needs ``input_width == 12 * P - 1``.
        per_part_dim: H, the width of each part token.
        part_indices: P lists of feature indices partitioning ``range(D)`` (``joint_part_indices(spec)``).
        spatial_layers, spatial_heads: depth and heads of the spatial transformer (``H % heads == 0``).
        conditions: categorical condition name -> vocabulary size (index 0 = unknown); None for none.
        text_dim: E of an optional text-embedding condition; 0 for none.
        cond_dim: width of the condition vector.
        The rest are ``RVQVAE``'s; ``output_emb_width`` must equal ``code_dim``.
    """

    kind = "rvq"

    def __init__(self, input_width: int = 359, num_parts: int = 30, per_part_dim: int = 128,
                 part_indices: Sequence[Sequence[int]] | None = None, spatial_layers: int = 2,
                 spatial_heads: int = 4, conditions: Mapping[str, int] | None = None, text_dim: int = 0,
                 cond_dim: int = 256, nb_code: int = 512, code_dim: int = 512, output_emb_width: int = 512,
                 num_quantizers: int = 6, shared_codebook: bool = False, quantize_dropout_prob: float = 0.2,
                 sample_codebook_temp: float = 0.5, mu: float = 0.99, down_t: int = 2, stride_t: int = 2,
                 width: int = 512, depth: int = 3, dilation_growth_rate: int = 3, activation: str = "relu",
                 norm: str | None = None, dropout: float = 0.2, kernel_size: int = 3, kmeans_init: bool = False,
                 kmeans_iters: int = 10, rotation_trick: bool = False) -> None:
        args = {k: v for k, v in locals().items() if k not in ("self", "__class__")}
        super().__init__()
        if width < 1 or code_dim < 1:  # torch builds a convolution of no channels and fails at the first forward
            raise ValueError(f"PartAwareRVQVAE: width ({width}) and code_dim ({code_dim}) must be >= 1")
        if output_emb_width != code_dim:
            raise ValueError(f"PartAwareRVQVAE: output_emb_width ({output_emb_width}) must equal code_dim "
                             f"({code_dim}): the encoder output is what the residual codebooks quantize")
        if part_indices is None:
            if input_width != 12 * num_parts - 1:
                raise ValueError(f"PartAwareRVQVAE: without part_indices the HumanML3D partition of a "
                                 f"{num_parts}-joint skeleton is used, which has {12 * num_parts - 1} features, but "
                                 f"input_width is {input_width}; pass part_indices (e.g. joint_part_indices(spec))")
            part_indices = humanml3d_part_indices(num_parts)
        parts = check_partition(part_indices, input_width)
        if len(parts) != num_parts:
            raise ValueError(f"PartAwareRVQVAE: num_parts is {num_parts} but part_indices has {len(parts)} parts")
        if spatial_layers < 1 or spatial_heads < 1 or per_part_dim < 1:
            raise ValueError(f"PartAwareRVQVAE: spatial_layers ({spatial_layers}), spatial_heads ({spatial_heads}) and "
                             f"per_part_dim ({per_part_dim}) must be >= 1: the spatial transformer mixes the part "
                             f"tokens of every frame before the temporal encoder")
        if per_part_dim % spatial_heads:
            raise ValueError(f"PartAwareRVQVAE: per_part_dim ({per_part_dim}) must be divisible by spatial_heads "
                             f"({spatial_heads})")
        norm = normalize_norm_name(norm)
        args.update(part_indices=parts, norm=norm, conditions=dict(conditions) if conditions else None)
        self.model_args: dict[str, Any] = _plain(args)

        self.input_width = input_width
        self.num_parts = num_parts
        self.per_part_dim = per_part_dim
        self.latent_dim = code_dim
        self.unit_length = stride_t ** down_t
        # Derived from part_indices (kept in model_args): not saved.
        self.register_buffer("_gather", torch.tensor([i for part in parts for i in part], dtype=torch.long),
                             persistent=False)
        self._part_sizes = [len(part) for part in parts]

        self.part_embed = nn.ModuleList(nn.Linear(size, per_part_dim) for size in self._part_sizes)
        self.part_pos = nn.Parameter(torch.randn(num_parts, per_part_dim) * 0.02)
        layer = nn.TransformerEncoderLayer(per_part_dim, spatial_heads, dim_feedforward=4 * per_part_dim,
                                           dropout=0.0, activation="gelu", batch_first=True, norm_first=True)
        self.spatial = nn.TransformerEncoder(layer, spatial_layers, norm=nn.LayerNorm(per_part_dim),
                                             enable_nested_tensor=False)

        conv = dict(down_t=down_t, stride_t=stride_t, width=width, depth=depth,
                    dilation_growth_rate=dilation_growth_rate, activation=activation, norm=norm, dropout=dropout,
                    kernel_size=kernel_size)
        self.encoder = Encoder(num_parts * per_part_dim, output_emb_width, **conv)
        self.decoder = Decoder(input_width, output_emb_width, **conv)
        self.quantizer = ResidualVQ(num_quantizers, nb_code, code_dim, mu=mu, shared_codebook=shared_codebook,
                                    quantize_dropout_prob=quantize_dropout_prob,
                                    sample_codebook_temp=sample_codebook_temp, kmeans_init=kmeans_init,
                                    kmeans_iters=kmeans_iters, rotation_trick=rotation_trick)

        self.conditioned = bool(conditions) or text_dim > 0
        self.condition = ConditionEmbedding(conditions or {}, text_dim, cond_dim) if self.conditioned else None
        # FiLM after the stem ReLU (module 1) and after every resolution stage (modules 2 .. 1 + down_t).
        self._film_after = list(range(1, 2 + down_t))
        films = len(self._film_after) if self.conditioned else 0
        self.encoder_film = nn.ModuleList(FiLM(cond_dim, width) for _ in range(films))
        self.decoder_film = nn.ModuleList(FiLM(cond_dim, width) for _ in range(films))

    # ------------------------------------------------------------------------------------------------------------------

    @property
    def codebook_size(self) -> int:
        """K per residual layer."""
        return self.quantizer.codebook_size

    @property
    def num_quantizers(self) -> int:
        """Q, the number of residual layers."""
        return self.quantizer.num_quantizers

    @property
    def condition_keys(self) -> list[str]:
        """Keys ``cond`` may hold (empty for an unconditional model)."""
        return self.condition.keys if self.condition is not None else []

    def _check_motion(self, motion: Tensor) -> None:
        check_is_tensor(motion, "PartAwareRVQVAE", "motion", f"(B, T, {self.input_width})",
                        "torch.from_numpy(motion).float()")
        if motion.ndim != 3 or motion.shape[-1] != self.input_width:
            raise ValueError(f"PartAwareRVQVAE: expected motion of shape (B, T, {self.input_width}), "
                             f"got {tuple(motion.shape)}")
        check_input_dtype(motion, self.part_embed[0].weight, "PartAwareRVQVAE", "motion")
        frames = motion.shape[1]
        if frames < self.unit_length or frames % self.unit_length:
            raise ValueError(f"PartAwareRVQVAE: T={frames} frames is not a positive multiple of the downsampling "
                             f"factor {self.unit_length}; crop or pad the motion first")

    def _cond_vec(self, cond: Mapping[str, Tensor] | None, batch: int, device: torch.device) -> Tensor | None:
        if self.condition is None:
            if cond:
                raise ValueError(f"PartAwareRVQVAE: the model has no conditions but cond has keys {sorted(cond)}")
            return None
        return self.condition(cond, batch, device)

    def _run_stack(self, stack: nn.Sequential, films: nn.ModuleList, h: Tensor, cond_vec: Tensor | None) -> Tensor:
        """Run a conv stack on ``(B, H, T)`` with FiLM after the modules in ``_film_after``."""
        for i, module in enumerate(stack):
            h = module(h)
            if cond_vec is not None and i in self._film_after:
                h = films[self._film_after.index(i)](h, cond_vec)
        return h

    def part_tokens(self, motion: Tensor) -> Tensor:
        """Per-part embeddings mixed by the spatial transformer: ``(B, T, D) -> (B, T, P * H)``."""
        chunks = motion[..., self._gather].split(self._part_sizes, dim=-1)
        tokens = torch.stack([embed(chunk) for embed, chunk in zip(self.part_embed, chunks)], dim=2) + self.part_pos
        batch, frames, parts, dim = tokens.shape
        tokens = self.spatial(tokens.reshape(batch * frames, parts, dim))
        return tokens.reshape(batch, frames, parts * dim)

    def encode_latent(self, motion: Tensor, cond: Mapping[str, Tensor] | None = None) -> Tensor:
        """Continuous encoder output ``(B, T, D) -> (B, N, C)``."""
        self._check_motion(motion)
        cond_vec = self._cond_vec(cond, motion.shape[0], motion.device)
        h = self.part_tokens(motion).transpose(1, 2)
        return self._run_stack(self.encoder.model, self.encoder_film, h, cond_vec).transpose(1, 2)

    def decode_latent(self, latents: Tensor, cond: Mapping[str, Tensor] | None = None) -> Tensor:
        """``(B, N, C) -> (B, N * unit_length, D)``."""
        check_is_tensor(latents, "PartAwareRVQVAE", "latents", f"(B, N, {self.latent_dim})",
                        "torch.from_numpy(latents).float()")
        if latents.ndim != 3 or latents.shape[-1] != self.latent_dim:
            raise ValueError(f"PartAwareRVQVAE: expected latents of shape (B, N, {self.latent_dim}), "
                             f"got {tuple(latents.shape)}")
        check_input_dtype(latents, self.decoder.model[0].weight, "PartAwareRVQVAE", "latents")
        cond_vec = self._cond_vec(cond, latents.shape[0], latents.device)
        h = self._run_stack(self.decoder.model, self.decoder_film, latents.transpose(1, 2), cond_vec)
        return h.transpose(1, 2)

    def forward(self, motion: Tensor, cond: Mapping[str, Tensor] | None = None) -> TokenizerOutput:
        """``(B, T, D)`` -> reconstruction, commitment loss, perplexity and indices ``(B, N, Q)``."""
        # Imported here so that models.tokenizers can import this module to register the family.
        from models.tokenizers import TokenizerOutput

        out = self.quantizer(self.encode_latent(motion, cond))
        return TokenizerOutput(self.decode_latent(out.z_q, cond), out.aux_loss, out.perplexity, out.indices)

    def encode(self, motion: Tensor, cond: Mapping[str, Tensor] | None = None) -> Tensor:
        """``(B, T, D)`` -> indices ``(B, N, Q)``; deterministic, no codebook update."""
        return self.quantizer.quantize(self.encode_latent(motion, cond))

    def decode(self, indices: Tensor, cond: Mapping[str, Tensor] | None = None) -> Tensor:
        """Indices ``(B, N, q<=Q)`` -> motion ``(B, T, D)``."""
        check_is_tensor(indices, "PartAwareRVQVAE", "indices", "(B, N, q<=Q)", "torch.from_numpy(indices).long()")
        return self.decode_latent(self.quantizer.indices_to_latents(indices), cond)


# ----------------------------------------------------------------------------------------------------------------------
# registry: a registered name is frozen once a checkpoint exists. ``*_Tiny`` is for tests.

PART_AWARE_MODELS: dict[str, Callable[..., PartAwareRVQVAE]] = {
    # 30 parts x 128 dims on a 30-joint skeleton's 359 HumanML3D-layout features, MoMask's RVQ (6 x 512 codes).
    "PartAwareRVQ": partial(PartAwareRVQVAE),
    "PartAwareRVQ_Tiny": partial(PartAwareRVQVAE, input_width=263, num_parts=22, per_part_dim=8, spatial_layers=1,
                                 spatial_heads=2, cond_dim=16, nb_code=32, code_dim=16, output_emb_width=16,
                                 num_quantizers=3, width=32, depth=2),
}
