"""The generator families behind ``utils.generation.MotionGenerator``: a ``GeneratorBackend`` turns text embeddings
and token counts into tokens and tokens into motion, and knows its family's checkpoints, default sampling settings
(``SamplingSettings``) and own sampling options. ``GENERATOR_BACKENDS`` maps a family name to its backend:
``MARDMBackend`` here, ``MoMaskBackend`` in ``utils.generation_momask`` (registered when this module is imported).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from models.loader import Tokenizer
from models.mardm import MARDM_MODELS
from models.mask_transformer import MASK_TRANSFORMERS
from models.res_transformer import RES_TRANSFORMERS
from utils.checkpoint import CheckpointError
from utils.dataset_specs import DatasetSpec
from utils.generator_stage import (
    GRID_KINDS,
    TARGET_NAMES,
    load_generator_tokenizer,
    snap_and_latent_fns,
    token_dims,
    tokenize,
    trained_on_ema,
)


@dataclass(frozen=True)
class SamplingSettings:
    """``time_steps`` generation steps, ``cfg`` guidance scale, ``temperature`` of the sampling noise, ``snap``:
    project generated tokens onto the tokenizer's grid / codebook (off only as an ablation); ``options``: the family's
    own settings (``GeneratorBackend.sampling_options``), every one of them present (None where the model's own
    choice applies, as for MARDM's head sampler)."""

    time_steps: int = 18
    cfg: float = 4.5
    temperature: float = 1.0
    snap: bool = True
    options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # The command line's flag types (positive_int, non_negative_float) check the same; a value given through
        # Python is not silently truncated (2.7 steps) or used as a negative or NaN scale.
        steps = self.time_steps
        if isinstance(steps, bool) or not (float(steps).is_integer() and steps >= 1):
            raise ValueError(f"time_steps must be a whole number >= 1, got {steps!r}")
        object.__setattr__(self, "time_steps", int(steps))  # frozen: set once, as an int for manifests and reports
        for name in ("cfg", "temperature"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")

    def to_dict(self) -> dict[str, Any]:
        """Plain values for manifests and reports: the four shared settings, then the family's options (those left
        None, meaning the model's own choice, are not listed, so records from before an option existed still
        match)."""
        return {"time_steps": self.time_steps, "cfg": self.cfg, "temperature": self.temperature, "snap": self.snap,
                **{name: value for name, value in self.options.items() if value is not None}}


class GeneratorBackend:
    """One generator family: rebuilds its model from a checkpoint, samples tokens, turns tokens into motion.

    ``handles(state)`` says whether a loaded checkpoint belongs to the family. Tokens are whatever the family
    generates, ``(B, N, ...)`` with N = max(token_lengths); ``decode_tokens`` receives tokens of one length.
    ``default_time_steps`` / ``default_cfg`` are the family's published sampling settings (``dataset_cfg``: the
    guidance published for other datasets, by dataset name) and ``sampling_options`` its own options with their
    defaults; ``mm_sampling``, where the family's published evaluation draws its multimodality repeats otherwise than
    its other batches, that draw (the value of the ``sampling`` option); ``takes_residual`` whether
    ``attach_residual`` accepts a second model.
    """

    family: ClassVar[str] = ""
    takes_residual: ClassVar[bool] = False
    default_time_steps: ClassVar[int] = 18
    default_cfg: ClassVar[float] = 4.5
    # MARDM's README: 4.5 on HumanML3D, 2.5 on KIT-ML (its 64-dim subset included)
    dataset_cfg: ClassVar[dict[str, float]] = {"kit": 2.5, "kit_64": 2.5}
    sampling_options: ClassVar[dict[str, Any]] = {}
    mm_sampling: ClassVar[str | None] = None
    model: nn.Module

    @classmethod
    def guidance(cls, dataset: str | None = None) -> float:
        """The family's published guidance scale for ``dataset`` (a dataset name; None: HumanML3D's)."""
        return float(cls.dataset_cfg.get(dataset or "", cls.default_cfg))

    def settings(self, time_steps: int | None = None, cfg: float | None = None, temperature: float = 1.0,
                 snap: bool = True, dataset: str | None = None, **options: Any) -> SamplingSettings:
        """The settings a sample is drawn with: None takes the family's default for ``dataset`` (a dataset name);
        unknown options fail naming the family's options."""
        unknown = sorted(set(options) - set(self.sampling_options))
        if unknown:
            known = sorted(self.sampling_options) or "none"
            raise ValueError(f"{self.family} generators have no sampling option {unknown}; theirs: {known}")
        if cfg is None:
            cfg = self.guidance(dataset)
        return SamplingSettings(self.default_time_steps if time_steps is None else time_steps, float(cfg),
                                float(temperature), bool(snap), {**self.sampling_options, **options})

    def sampler(self, settings: SamplingSettings) -> dict[str, Any]:
        """What ``settings`` leave to the model, resolved, for reports (MARDM: its diffusion head's sampler); {}
        where the settings say it all."""
        return {}

    @classmethod
    def check_residual_kind(cls, state: dict[str, Any], path: str) -> None:
        """Refuse checkpoint ``path`` as a second-stage model unless its model is one (checked before anything that
        compares it with the base run, so a run of another kind is named as such)."""
        raise CheckpointError(f"{path}: {cls.family} generators take no residual run (only MoMask's masked "
                              f"transformer does)")

    def attach_residual(self, state: dict[str, Any], weights: dict[str, Tensor], path: str,
                        device: torch.device) -> None:
        """Add a second-stage model (MoMask's residual transformer) read from checkpoint ``path``."""
        raise CheckpointError(f"{path}: {self.family} generators take no residual run (only MoMask's masked "
                              f"transformer does)")

    @classmethod
    def handles(cls, state: dict[str, Any]) -> bool:
        """Whether the loaded generator checkpoint ``state`` belongs to this family."""
        raise NotImplementedError

    @classmethod
    def load_tokenizer(cls, path: str, state: dict[str, Any], spec: DatasetSpec, device: torch.device) -> Tokenizer:
        """Load the tokenizer file ``path`` of generator checkpoint ``state`` (with the weights it was trained on,
        ``trained_on_ema``) and check that it fits the family."""
        raise NotImplementedError

    @classmethod
    def from_checkpoint(cls, state: dict[str, Any], weights: dict[str, Tensor], path: str, tokenizer: Tokenizer,
                        spec: DatasetSpec, device: torch.device) -> GeneratorBackend:
        """Rebuild the family's model from ``state`` with ``weights`` (the EMA or raw state dict) on ``device``."""
        raise NotImplementedError

    @property
    def text_dim(self) -> int:
        """E, the text-embedding size the model takes."""
        raise NotImplementedError

    def sample_tokens(self, text_emb: Tensor, token_lengths: Tensor, settings: SamplingSettings,
                      generator: torch.Generator | None, known: Tensor | None = None,
                      edit_mask: Tensor | None = None) -> Tensor:
        """text_emb (B, E), token_lengths (B,) -> tokens (B, N, ...). Editing: ``known`` tokens (B, N, ...) as
        ``encode_motion`` gives them are kept where the (B, N) bool ``edit_mask`` is False, only the rest is
        generated."""
        raise NotImplementedError

    def encode_motion(self, motion: Tensor, lengths: Tensor) -> Tensor:
        """Normalised motion (B, T, D) and lengths in frames (B,) -> the family's tokens (B, N, ...), as
        ``sample_tokens`` returns them."""
        raise NotImplementedError

    def decode_tokens(self, tokens: Tensor, snap: bool) -> Tensor:
        """Tokens (B, n, ...) all of length n -> normalised motion (B, n * unit_length, D)."""
        raise NotImplementedError


class MARDMBackend(GeneratorBackend):
    """MARDM, FSQ-MARDM, VQ-MARDM and LFQ-MARDM (``models.mardm.MARDM_MODELS``): continuous tokens (B, N, C_t)
    generated by random-order masked diffusion, snapped onto the FSQ grid / LFQ signs / VQ codebook when ``snap``.

    Sampling options: ``head_steps`` and ``head_solver`` replace the diffusion head's own sampler (None: the one it
    was trained with; ``models.diffusion.DiffusionHead.sample``): a DDPM head stepping back with ``head_solver``
    (ancestral, ddim) through ``head_steps`` of its training steps (respaced), a SiT head integrated with
    ``head_solver`` (dopri5, euler, heun) in ``head_steps`` steps.
    """

    sampling_options: ClassVar[dict[str, Any]] = {"head_steps": None, "head_solver": None}

    family = "mardm"

    def __init__(self, model: nn.Module, tokenizer: Tokenizer, target: str) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.target = target
        self.snap_fn, self.latent_fn = snap_and_latent_fns(tokenizer)

    @classmethod
    def handles(cls, state: dict[str, Any]) -> bool:
        return state.get("model_name") in MARDM_MODELS

    @classmethod
    def load_tokenizer(cls, path: str, state: dict[str, Any], spec: DatasetSpec, device: torch.device) -> Tokenizer:
        return load_generator_tokenizer(path, state["model_name"], spec, ae_model=state["tokenizer"].get("model_name"),
                                        device=device, use_ema=trained_on_ema(state),
                                        ae_model_source="the generator's recorded tokenizer model")

    @classmethod
    def from_checkpoint(cls, state: dict[str, Any], weights: dict[str, Tensor], path: str, tokenizer: Tokenizer,
                        spec: DatasetSpec, device: torch.device) -> MARDMBackend:
        name, args, target = state["model_name"], dict(state["model_args"]), state["target"]
        expected_target = TARGET_NAMES.get(tokenizer.kind)
        if target != expected_target:
            raise CheckpointError(f"{path}: target is {target!r} but a {tokenizer.kind!r} tokenizer gives "
                                  f"{expected_target!r} targets")
        dims = token_dims(tokenizer)
        found = (args.get("ae_dim"), args.get("target_dim"))
        if found != tuple(dims):
            raise CheckpointError(f"{path}: model_args (ae_dim, target_dim) = {found} but the tokenizer "
                                  f"{tokenizer.source} gives {tuple(dims)}")
        try:
            model = MARDM_MODELS[name](**args)
            model.load_state_dict(weights)
        except (TypeError, ValueError, RuntimeError) as e:
            raise CheckpointError(f"{path}: cannot rebuild {name} from model_args {args}: {e}") from e
        model.to(device).eval().requires_grad_(False)
        return cls(model, tokenizer, target)

    @property
    def text_dim(self) -> int:
        return int(self.model.text_dim)

    def sample_tokens(self, text_emb: Tensor, token_lengths: Tensor, settings: SamplingSettings,
                      generator: torch.Generator | None, known: Tensor | None = None,
                      edit_mask: Tensor | None = None) -> Tensor:
        return self.model.generate(token_lengths, text_emb, time_steps=settings.time_steps, cfg=settings.cfg,
                                   temperature=settings.temperature,
                                   snap_fn=self.snap_fn if settings.snap else None, generator=generator,
                                   latent_fn=self.latent_fn, known=known, edit_mask=edit_mask,
                                   head_steps=settings.options["head_steps"],
                                   head_solver=settings.options["head_solver"])

    def settings(self, *args: Any, **kwargs: Any) -> SamplingSettings:
        settings = super().settings(*args, **kwargs)
        steps, solver = settings.options["head_steps"], settings.options["head_solver"]
        try:
            self.model.head.check_sampler(steps, solver)
        except ValueError as e:
            given = ", ".join(f"--{name} {value}" for name, value in (("head_steps", steps), ("head_solver", solver))
                              if value is not None)
            raise ValueError(f"{given}: {e}") from e
        return settings

    def sampler(self, settings: SamplingSettings) -> dict[str, Any]:
        """The diffusion head's sampler under ``settings`` (``DiffusionHead.sampler``): head_solver / head_steps left
        None are the ones the model was trained with, which only its arguments record."""
        return {"head": self.model.head.sampler(settings.options["head_steps"], settings.options["head_solver"])}

    def encode_motion(self, motion: Tensor, lengths: Tensor) -> Tensor:
        # The head's targets: AE latents, FSQ / LFQ grid coordinates or VQ code vectors.
        return tokenize(self.tokenizer, motion, lengths).targets

    def decode_tokens(self, tokens: Tensor, snap: bool) -> Tensor:
        tokens = tokens.float()
        if self.tokenizer.kind in GRID_KINDS:
            return self.tokenizer.model.decode_from_grid(tokens, snap=snap)
        if snap and self.snap_fn is not None:
            tokens = self.snap_fn(tokens)
        latents = self.latent_fn(tokens) if self.latent_fn is not None else tokens
        return self.tokenizer.model.decode_latent(latents)


GENERATOR_BACKENDS: dict[str, type[GeneratorBackend]] = {
    "mardm": MARDMBackend,
}


def backend_for(state: dict[str, Any], path: str) -> type[GeneratorBackend]:
    """The registered backend whose family the checkpoint belongs to."""
    for backend in GENERATOR_BACKENDS.values():
        if backend.handles(state):
            return backend
    if state.get("model_name") in RES_TRANSFORMERS:
        raise CheckpointError(f"{path}: {state['model_name']!r} is a residual transformer; load the masked transformer "
                              f"run and pass this one as res_run= (--res_name / --res_ckpt)")
    raise CheckpointError(f"{path}: model_name {state.get('model_name')!r} belongs to no generator family "
                          f"({sorted(GENERATOR_BACKENDS)}); MARDM models are {sorted(MARDM_MODELS)}, MoMask models "
                          f"{sorted(MASK_TRANSFORMERS)}")


# The MoMask backend subclasses GeneratorBackend from this module, so it is imported once everything above exists;
# importing it registers "momask" in GENERATOR_BACKENDS.
import utils.generation_momask  # noqa: E402, F401
