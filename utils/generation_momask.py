"""The MoMask generator family: masked transformer (+ optional residual transformer) on a VQ / RVQ / FSQ tokenizer.

``MoMaskBackend`` is the ``GeneratorBackend`` of ``train_t2m_transformer.py`` runs (see ``utils.generation``): the
masked transformer samples the base-layer codes, the residual transformer (``train_res_transformer.py``, attached with
``res_run``) the codes of RVQ layers 1..Q-1, and the tokenizer decodes them. ``resolve_residual_run`` turns the
``--res_name`` / ``--res_ckpt`` options into the ``res_run`` that ``load_generator`` takes. Importing this module
registers the backend as ``"momask"`` in ``utils.generation.GENERATOR_BACKENDS``.
"""

from __future__ import annotations

import os
from typing import Any

import torch
from torch import Tensor, nn

from models.loader import Tokenizer
from models.mask_schedule import SAMPLING_MODES
from models.mask_transformer import MASK_TRANSFORMERS, MaskTransformer
from models.res_transformer import RES_TRANSFORMERS, ResidualTransformer
from utils.checkpoint import CheckpointError
from utils.dataset_specs import DatasetSpec
from utils.generation_backends import GENERATOR_BACKENDS, GeneratorBackend, SamplingSettings
from utils.generator_stage import trained_on_ema
from utils.token_stage import TOKEN_TARGET, check_token_model_fits, encode_tokens, load_token_tokenizer


def resolve_residual_run(checkpoints_dir: str, dataset_name: str | None, res_name: str | None = None,
                         res_ckpt: str | None = None) -> str | None:
    """``--res_ckpt`` (a file) or ``--res_name`` (the run folder ``<checkpoints_dir>/<dataset_name>/<res_name>``), or
    None when neither is given (MoMask's residual transformer is optional)."""
    if res_ckpt and res_name:
        raise ValueError("pass --res_name (a run) or --res_ckpt (a file), not both")
    if res_ckpt:
        if not os.path.isfile(res_ckpt):
            raise CheckpointError(f"--res_ckpt: checkpoint not found: {res_ckpt}")
        return res_ckpt
    if not res_name:
        return None
    if not dataset_name:
        raise ValueError("--res_name needs --dataset_name (the run lives in <checkpoints_dir>/<dataset_name>/"
                         "<res_name>); or pass --res_ckpt")
    root = os.path.join(checkpoints_dir, dataset_name, res_name)
    if not os.path.isdir(root):
        raise CheckpointError(f"--res_name {res_name!r}: no run folder {root}; train it with train_res_transformer.py "
                              f"--name {res_name} --dataset_name {dataset_name}")
    return root


# The guidance of the residual transformer's validation during training: MoMask's trainer calls
# evaluation_res_transformer with its default 2; its final evaluation and sampling use 5 (res_cond_scale).
RES_VALIDATION_COND_SCALE = 2.0


class MoMaskBackend(GeneratorBackend):
    """MoMask (``models.mask_transformer``): base-layer codes from the masked transformer, RVQ layers 1..Q-1 from the
    residual transformer when one is attached, decoded by the tokenizer. Tokens are what ``tokenizer.encode`` gives:
    (B, N) long for VQ / FSQ tokenizers, (B, N, Q) for RVQ (layers without a residual model hold -1); -1 at pads."""

    family = "momask"
    takes_residual = True
    default_time_steps = 10
    default_cfg = 4.0
    # MoMask's evaluation commands: cond_scale 4 on HumanML3D, 2 on KIT-ML (its 64-dim subset included)
    dataset_cfg = {"kit": 2.0, "kit_64": 2.0}
    # MoMask's evaluation draws the base layer of its multimodality repeats by Gumbel-max (generate's default there)
    # and of every other batch from the categorical distribution.
    mm_sampling = "gumbel"
    sampling_options = {"topk_filter_thres": 0.9, "sampling": "categorical", "res_cond_scale": 5.0,
                        "res_temperature": 1.0}

    def __init__(self, model: MaskTransformer, tokenizer: Tokenizer) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.residual: ResidualTransformer | None = None

    @classmethod
    def handles(cls, state: dict[str, Any]) -> bool:
        return state.get("model_name") in MASK_TRANSFORMERS

    @classmethod
    def load_tokenizer(cls, path: str, state: dict[str, Any], spec: DatasetSpec, device: torch.device) -> Tokenizer:
        return load_token_tokenizer(path, spec, vq_model=state["tokenizer"].get("model_name"), device=device,
                                    role="mask", use_ema=trained_on_ema(state),
                                    vq_model_source="the generator's recorded tokenizer model")

    @staticmethod
    def _build(registry: dict[str, Any], state: dict[str, Any], weights: dict[str, Tensor], path: str,
               tokenizer: Tokenizer, role: str, device: torch.device) -> nn.Module:
        name, args = state["model_name"], dict(state["model_args"])
        if state["target"] != TOKEN_TARGET:
            raise CheckpointError(f"{path}: target is {state['target']!r}; MoMask transformers generate "
                                  f"{TOKEN_TARGET!r}")
        check_token_model_fits(args, tokenizer, path, role)
        try:
            model = registry[name](**args)
            model.load_state_dict(weights)
        except (TypeError, ValueError, RuntimeError) as e:
            raise CheckpointError(f"{path}: cannot rebuild {name} from model_args {args}: {e}") from e
        return model.to(device).eval().requires_grad_(False)

    @classmethod
    def from_checkpoint(cls, state: dict[str, Any], weights: dict[str, Tensor], path: str, tokenizer: Tokenizer,
                        spec: DatasetSpec, device: torch.device) -> MoMaskBackend:
        return cls(cls._build(MASK_TRANSFORMERS, state, weights, path, tokenizer, "mask", device), tokenizer)

    @classmethod
    def check_residual_kind(cls, state: dict[str, Any], path: str) -> None:
        if state.get("model_name") not in RES_TRANSFORMERS:
            raise CheckpointError(f"{path}: model_name {state.get('model_name')!r} is not a residual transformer "
                                  f"({sorted(RES_TRANSFORMERS)}); res_run / --res_name takes a "
                                  f"train_res_transformer.py run")

    def attach_residual(self, state: dict[str, Any], weights: dict[str, Tensor], path: str,
                        device: torch.device) -> None:
        self.check_residual_kind(state, path)
        if self.tokenizer.kind != "rvq":
            raise CheckpointError(f"{path}: the tokenizer {self.tokenizer.source} is {self.tokenizer.kind!r} with one "
                                  f"layer of codes; a residual transformer needs an RVQ tokenizer")
        self.residual = self._build(RES_TRANSFORMERS, state, weights, path, self.tokenizer, "res", device)

    @property
    def text_dim(self) -> int:
        return int(self.model.text_dim)

    def settings(self, time_steps: int | None = None, cfg: float | None = None, temperature: float = 1.0,
                 snap: bool = True, dataset: str | None = None, **options: Any) -> SamplingSettings:
        settings = super().settings(time_steps, cfg, temperature, snap, dataset, **options)
        opts = settings.options
        if not snap:
            raise ValueError("MoMask generates codebook indices, which are always on the codebook; snap=False "
                             "(--no_snap) does not apply")
        if opts["sampling"] not in SAMPLING_MODES:
            raise ValueError(f"sampling must be one of {SAMPLING_MODES}, got {opts['sampling']!r}")
        if not 0.0 <= float(opts["topk_filter_thres"]) < 1.0:
            raise ValueError(f"topk_filter_thres must be in [0, 1), got {opts['topk_filter_thres']}")
        if settings.temperature <= 0 or float(opts["res_temperature"]) <= 0:
            raise ValueError(f"MoMask samples with temperature > 0; got temperature {settings.temperature}, "
                             f"res_temperature {opts['res_temperature']}")
        return settings

    def sample_tokens(self, text_emb: Tensor, token_lengths: Tensor, settings: SamplingSettings,
                      generator: torch.Generator | None, known: Tensor | None = None,
                      edit_mask: Tensor | None = None) -> Tensor:
        opts = settings.options
        layered = self.tokenizer.kind == "rvq"
        known_base = known[..., 0] if known is not None and layered else known
        base = self.model.generate(token_lengths, text_emb, time_steps=settings.time_steps, cond_scale=settings.cfg,
                                   temperature=settings.temperature,
                                   topk_filter_thres=float(opts["topk_filter_thres"]), sampling=opts["sampling"],
                                   generator=generator, known=known_base, edit_mask=edit_mask)  # (B, N), -1 at pads
        if not layered:
            return base
        if self.residual is None:
            rest = torch.full((*base.shape, self.tokenizer.num_quantizers - 1), -1, dtype=base.dtype,
                              device=base.device)
            if known is not None and edit_mask is not None:
                # Unedited tokens keep all their layers; edited ones get the base layer only, as in plain sampling.
                keep = ~edit_mask.to(base.device)[..., None] & (base[..., None] >= 0)
                rest = torch.where(keep, known[..., 1:].to(base.device), rest)
            return torch.cat([base[..., None], rest], dim=-1)
        # MoMask samples the residual layers with Gumbel-max whatever the base layer used.
        return self.residual.generate(base, token_lengths, text_emb, cond_scale=float(opts["res_cond_scale"]),
                                      temperature=float(opts["res_temperature"]),
                                      topk_filter_thres=float(opts["topk_filter_thres"]), generator=generator,
                                      sampling="gumbel", known=known, edit_mask=edit_mask)

    def encode_motion(self, motion: Tensor, lengths: Tensor) -> Tensor:
        return encode_tokens(self.tokenizer, motion, lengths).indices

    def decode_tokens(self, tokens: Tensor, snap: bool) -> Tensor:
        return self.tokenizer.decode(tokens.long())


GENERATOR_BACKENDS[MoMaskBackend.family] = MoMaskBackend
