"""MARDM: masked autoregressive transformer with a per-token diffusion head (Meng et al., CVPR 2025).

The transformer reads a token sequence of continuous latents in which some positions are replaced by a learned
``mask_latent``; for every masked position its output z conditions a small diffusion head (``DiffusionHead``) that
generates the token. Text enters only through adaLN-Zero modulation (DiT, Peebles & Xie 2023, sec. 3.2); there is no
condition token. ``forward`` returns its own loss; ``generate`` runs the random-order masked schedule.

FSQ-MARDM, VQ-MARDM and LFQ-MARDM reuse the same network: the transformer input is the tokenizer's latent (C_in)
while the head generates a target of its own size (C_t, e.g. the d FSQ grid coordinates or LFQ signs), which the
caller may snap onto the grid (``snap_fn``) and map back to the input space (``latent_fn``) during generation.

Two choices differ from the reference code, on purpose:
- Training mask counts use each sample's *real* length: num = round(len * cos(pi/2 * u)).clamp(min=1), drawn among
  its valid tokens. The reference uses the padded length and then drops padded positions, so a short sequence in a
  long batch often gets zero masked tokens (no loss) and its effective ratio differs from the one generation uses,
  which counts from the real length. Here training and generation follow the same schedule by default;
  ``train_mask_count="padded"`` trains with the reference's count (the published recipes' presets set it).
- Condition dropout for classifier-free guidance replaces the text embedding with zeros (as the reference does), so
  "unconditional" is cond_emb(0) = its bias; no extra null parameter is needed and zero-text checkpoints stay
  interchangeable.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from contextlib import contextmanager
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from models.diffusion import DiffusionHead
from models.mask_schedule import (  # noqa: F401  (sample_training_mask: the masks MARDM.forward draws)
    check_batch,
    check_lengths,
    check_training_mask_count,
    edit_positions,
    lowest_score_mask,
    num_masked_for_generation,
    sample_training_mask,
)

logger = logging.getLogger(__name__)


# ---------------------------------------------------------------------------------------------------------------------
# Mask schedule helpers (pure functions, tested on their own)
# ---------------------------------------------------------------------------------------------------------------------
def lengths_to_mask(lengths: torch.Tensor, max_len: int) -> torch.Tensor:
    """lengths (B,) -> (B, max_len) bool, True at valid (non-padded) positions."""
    return torch.arange(max_len, device=lengths.device)[None, :] < lengths[:, None]


def cosine_schedule(u: torch.Tensor) -> torch.Tensor:
    """Mask ratio r = cos(pi/2 * u) for u in [0, 1] (MaskGIT's cosine schedule)."""
    return torch.cos(u * math.pi / 2)


num_masked_tokens = num_masked_for_generation  # round(lengths * ratio).clamp(min=1): generation's count per sample


def corrupt_masked(latents: torch.Tensor, mask: torch.Tensor, mask_latent: torch.Tensor, noise_prob: float = 0.1,
                   mask_prob: float = 0.88, generator: torch.Generator | None = None) -> torch.Tensor:
    """BERT-style corruption of the masked positions (MARDM).

    Each masked position independently becomes Gaussian noise with probability ``noise_prob``; of the others,
    a fraction ``mask_prob`` becomes ``mask_latent`` and the rest keep their true latent (so about 10% noise,
    79.2% mask latent, 10.8% unchanged).

    Args:
        latents: (B, N, C); mask: (B, N) bool; mask_latent: (1, 1, C).
    Returns:
        (B, N, C) corrupted copy.
    """
    shape = mask.shape
    draw_noise = torch.rand(shape, device=mask.device, generator=generator) < noise_prob
    draw_mask = torch.rand(shape, device=mask.device, generator=generator) < mask_prob
    to_noise = mask & draw_noise
    to_mask = mask & ~draw_noise & draw_mask
    noise = torch.randn(latents.shape, device=latents.device, dtype=latents.dtype, generator=generator)
    out = torch.where(to_noise[..., None], noise, latents)
    return torch.where(to_mask[..., None], mask_latent.to(latents.dtype).expand_as(latents), out)


# ---------------------------------------------------------------------------------------------------------------------
# Transformer
# ---------------------------------------------------------------------------------------------------------------------
def sinusoidal_positions(num: int, dim: int, device: torch.device) -> torch.Tensor:
    """(num, dim) Transformer positional encoding: sin on even channels, cos on odd ones."""
    position = torch.arange(num, dtype=torch.float32, device=device)[:, None]
    div_term = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32, device=device) * (-math.log(10000.0) / dim))
    pe = torch.zeros(num, dim, device=device)
    pe[:, 0::2] = torch.sin(position * div_term)
    pe[:, 1::2] = torch.cos(position * div_term)[:, : dim // 2]
    return pe


def modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """x (B, N, H) modulated by per-sample shift, scale (B, H)."""
    return x * (1 + scale[:, None]) + shift[:, None]


class Attention(nn.Module):
    """Multi-head self-attention with a key-padding mask, attention and residual dropout."""

    def __init__(self, dim: int, num_heads: int, dropout: float) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"Attention: width {dim} is not divisible by num_heads={num_heads}")
        self.num_heads = num_heads
        self.query = nn.Linear(dim, dim)
        self.key = nn.Linear(dim, dim)
        self.value = nn.Linear(dim, dim)
        self.proj = nn.Linear(dim, dim)
        self.attn_dropout = dropout
        self.resid_drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """x: (B, N, H); valid: (B, N) bool, False at padded keys -> (B, N, H)."""
        b, n, h = x.shape

        def heads(t: torch.Tensor) -> torch.Tensor:
            return t.view(b, n, self.num_heads, h // self.num_heads).transpose(1, 2)

        q, k, v = heads(self.query(x)), heads(self.key(x)), heads(self.value(x))
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=valid[:, None, None, :],
                                           dropout_p=self.attn_dropout if self.training else 0.0)
        y = y.transpose(1, 2).reshape(b, n, h)
        return self.resid_drop(self.proj(y))


class Mlp(nn.Module):
    """Linear -> tanh-GELU -> Linear."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU(approximate="tanh")
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, N, H) -> (B, N, H)."""
        return self.fc2(self.act(self.fc1(x)))


class MARTransBlock(nn.Module):
    """DiT adaLN-Zero block: the condition sets shift/scale of both LayerNorms and gates both residual branches."""

    def __init__(self, dim: int, num_heads: int, ff_size: int, dropout: float) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.attn = Attention(dim, num_heads, dropout)
        self.norm2 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.mlp = Mlp(dim, ff_size)
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(dim, 6 * dim))

    def forward(self, x: torch.Tensor, c: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """x: (B, N, H), c: (B, H), valid: (B, N) -> (B, N, H)."""
        shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp = self.adaLN_modulation(c).chunk(6, dim=-1)
        x = x + gate_msa[:, None] * self.attn(modulate(self.norm1(x), shift_msa, scale_msa), valid)
        return x + gate_mlp[:, None] * self.mlp(modulate(self.norm2(x), shift_mlp, scale_mlp))


@contextmanager
def _eval_mode(module: nn.Module):
    was_training = module.training
    module.eval()
    try:
        yield
    finally:
        module.train(was_training)


# MARDM integrates its SiT head with torchdiffeq's adaptive dopri5; no registry entry chooses another solver.
DEFAULT_FLOW_SOLVER = "dopri5"


class MARDM(nn.Module):
    """Masked autoregressive transformer over continuous tokens with a diffusion head.

    Args:
        ae_dim: C_in, channels of the tokenizer latents fed to the transformer.
        target_dim: C_t, channels the head generates (= ae_dim for MARDM; FSQ dims for FSQ-MARDM).
        text_dim: E, size of the text embedding.
        latent_dim: H, transformer width.
        ff_size, num_layers, num_heads, dropout: transformer sizes (dropout also on the positional encoding).
        cond_drop_prob: probability of training a sample without its text (classifier-free guidance).
        diffmlps_batch_mul: each masked token's loss is drawn this many times (independent t and noise) per step.
        diffmlps_depth, diffmlps_width, diffusion, diffusion_steps, flow_solver, flow_steps: the ``DiffusionHead``.
        train_mask_count: how a training step counts the tokens it masks: "length", from each sample's own length
            (the default, see the module docstring), or "padded", from the padded length as MARDM's code does.
    """

    def __init__(self, ae_dim: int, target_dim: int, text_dim: int, latent_dim: int = 1024, ff_size: int = 4096,
                 num_layers: int = 1, num_heads: int = 16, dropout: float = 0.2, cond_drop_prob: float = 0.1,
                 diffmlps_batch_mul: int = 4, diffmlps_depth: int = 16, diffmlps_width: int = 1792,
                 diffusion: str = "sit", diffusion_steps: int = 50, flow_solver: str = DEFAULT_FLOW_SOLVER,
                 flow_steps: int = 50, train_mask_count: str = "length") -> None:
        super().__init__()
        check_training_mask_count(train_mask_count, "MARDM")
        if diffmlps_batch_mul < 1:
            raise ValueError(f"MARDM: diffmlps_batch_mul must be >= 1, got {diffmlps_batch_mul}")
        if not 0.0 <= cond_drop_prob < 1.0:
            raise ValueError(f"MARDM: cond_drop_prob must be in [0, 1), got {cond_drop_prob}")
        self.model_args: dict[str, Any] = dict(
            ae_dim=ae_dim, target_dim=target_dim, text_dim=text_dim, latent_dim=latent_dim, ff_size=ff_size,
            num_layers=num_layers, num_heads=num_heads, dropout=dropout, cond_drop_prob=cond_drop_prob,
            diffmlps_batch_mul=diffmlps_batch_mul, diffmlps_depth=diffmlps_depth, diffmlps_width=diffmlps_width,
            diffusion=diffusion, diffusion_steps=diffusion_steps, flow_solver=flow_solver, flow_steps=flow_steps,
            train_mask_count=train_mask_count)
        self.train_mask_count = train_mask_count
        self.ae_dim = ae_dim
        self.target_dim = target_dim
        self.text_dim = text_dim
        self.latent_dim = latent_dim
        self.cond_drop_prob = cond_drop_prob
        self.diffmlps_batch_mul = diffmlps_batch_mul

        # ----- transformer ---------------------------------------------------------------------------------------
        self.input_process = nn.Linear(ae_dim, latent_dim)
        self.pos_dropout = nn.Dropout(dropout)
        self.cond_emb = nn.Linear(text_dim, latent_dim)
        self.blocks = nn.ModuleList([MARTransBlock(latent_dim, num_heads, ff_size, dropout)
                                     for _ in range(num_layers)])
        self.mask_latent = nn.Parameter(torch.zeros(1, 1, ae_dim))
        self.apply(self._init_weights)
        # adaLN-Zero: every block starts as the identity map.
        for block in self.blocks:
            nn.init.zeros_(block.adaLN_modulation[-1].weight)
            nn.init.zeros_(block.adaLN_modulation[-1].bias)

        # ----- diffusion head (keeps its own initialisation) -----------------------------------------------------
        self.head = DiffusionHead(target_dim=target_dim, cond_dim=latent_dim, depth=diffmlps_depth,
                                  width=diffmlps_width, diffusion=diffusion, diffusion_steps=diffusion_steps,
                                  flow_solver=flow_solver, flow_steps=flow_steps)

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)

    # ----- pieces ---------------------------------------------------------------------------------------------------
    def condition(self, text_emb: torch.Tensor, force_uncond: bool = False) -> torch.Tensor:
        """Text embedding (B, E) -> adaLN condition (B, H); zeroed text when unconditional or dropped in training."""
        text_emb = text_emb.to(self.cond_emb.weight.dtype)
        if force_uncond:
            text_emb = torch.zeros_like(text_emb)
        elif self.training and self.cond_drop_prob > 0:
            keep = torch.rand(text_emb.shape[0], 1, device=text_emb.device) >= self.cond_drop_prob
            text_emb = text_emb * keep.to(text_emb.dtype)
        return self.cond_emb(text_emb)

    def encode(self, x_in: torch.Tensor, text_emb: torch.Tensor, valid: torch.Tensor,
               force_uncond: bool = False) -> torch.Tensor:
        """Run the transformer.

        Args:
            x_in: (B, N, C_in) latents with masked positions already replaced; text_emb: (B, E);
            valid: (B, N) bool, False at padding.
        Returns:
            z: (B, N, H), the per-token conditions of the diffusion head.
        """
        x = self.input_process(x_in)
        x = self.pos_dropout(x + sinusoidal_positions(x.shape[1], x.shape[2], x.device).to(x.dtype))
        c = self.condition(text_emb, force_uncond)
        for block in self.blocks:
            x = block(x, c, valid)
        return x

    def _check_inputs(self, lengths: torch.Tensor, text_emb: torch.Tensor, max_len: int) -> None:
        if lengths.ndim != 1 or text_emb.ndim != 2 or text_emb.shape[0] != lengths.shape[0]:
            raise ValueError(f"MARDM: expected lengths (B,) and text_emb (B, {self.text_dim}), got "
                             f"{tuple(lengths.shape)} and {tuple(text_emb.shape)}")
        if text_emb.shape[1] != self.text_dim:
            raise ValueError(f"MARDM: text_emb has {text_emb.shape[1]} channels, the model expects "
                             f"text_dim={self.text_dim}")
        if lengths.numel() and (int(lengths.min()) < 1 or int(lengths.max()) > max_len):
            raise ValueError(f"MARDM: lengths (in tokens) must lie in [1, {max_len}], got "
                             f"min {int(lengths.min())}, max {int(lengths.max())}")

    # ----- training -------------------------------------------------------------------------------------------------
    def forward(self, latents: torch.Tensor, targets: torch.Tensor, lengths: torch.Tensor,
                text_emb: torch.Tensor, padded_len: int | None = None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Masked-modelling diffusion loss.

        Args:
            latents: (B, N, C_in) tokenizer latents (transformer input).
            targets: (B, N, C_t) what the head learns to generate (the latents themselves for MARDM).
            lengths: (B,) valid tokens per sample.
            text_emb: (B, E).
            padded_len: the length in tokens the references pad every sample to (49 on HumanML3D), over which
                ``train_mask_count="padded"`` counts; None: the batch's N.
        Returns:
            loss (scalar) over masked positions only, and logs {"loss", "mask_ratio"} as detached scalars.
        """
        if latents.ndim != 3 or latents.shape[2] != self.ae_dim:
            raise ValueError(f"MARDM.forward: latents must be (B, N, {self.ae_dim}), got {tuple(latents.shape)}")
        if not latents.is_floating_point():
            raise TypeError(f"MARDM.forward: latents must be a floating-point tensor, got {latents.dtype}")
        if targets.shape[:2] != latents.shape[:2] or targets.shape[2] != self.target_dim:
            raise ValueError(f"MARDM.forward: targets must be (B, N, {self.target_dim}) matching latents "
                             f"{tuple(latents.shape[:2])}, got {tuple(targets.shape)}")
        batch, max_len, _ = latents.shape
        check_lengths(lengths, "MARDM.forward")
        check_batch(batch, lengths, "latents", "MARDM.forward")
        lengths = lengths.to(latents.device)
        self._check_inputs(lengths, text_emb, max_len)
        valid = lengths_to_mask(lengths, max_len)
        latents = latents.masked_fill(~valid[..., None], 0.0)

        mask = sample_training_mask(lengths, max_len, count=self.train_mask_count, padded_len=padded_len)
        x_in = corrupt_masked(latents, mask, self.mask_latent)
        z = self.encode(x_in, text_emb, valid)                                   # (B, N, H)

        z_masked = z[mask].repeat(self.diffmlps_batch_mul, 1)                   # (M * mul, H)
        target_masked = targets[mask].repeat(self.diffmlps_batch_mul, 1)        # (M * mul, C_t)
        loss = self.head(z_masked, target_masked)
        logs = {"loss": loss.detach(), "mask_ratio": (mask.sum() / valid.sum()).detach()}
        return loss, logs

    # ----- generation -----------------------------------------------------------------------------------------------
    @torch.no_grad()
    def generate(self, lengths: torch.Tensor, text_emb: torch.Tensor, time_steps: int = 18, cfg: float = 4.5,
                 temperature: float = 1.0, snap_fn: Callable[[torch.Tensor], torch.Tensor] | None = None,
                 generator: torch.Generator | None = None,
                 latent_fn: Callable[[torch.Tensor], torch.Tensor] | None = None,
                 known: torch.Tensor | None = None, edit_mask: torch.Tensor | None = None,
                 head_steps: int | None = None, head_solver: str | None = None) -> torch.Tensor:
        """Random-order masked generation, as in MARDM (after MAR, Li et al. 2024).

        Every valid position starts masked with a uniform random score. At step k (tau_k on linspace(0, 1,
        time_steps)) the round(cos(pi/2 * tau_k) * length).clamp(min=1) lowest-score positions are masked, all
        of them are sampled by the head with constant guidance ``cfg``, and positions not masked at this step are
        frozen. Each step so commits num_k - num_{k+1} tokens; the last step samples the final one.

        Editing (temporal inpainting): with ``known`` and ``edit_mask``, valid positions outside the edit mask hold
        ``known`` from the start, are never masked or resampled and condition every step; only edit positions start
        masked, and the schedule counts over them (num_k = round(cos(pi/2 * tau_k) * edits).clamp(1, edits), as
        MoMask's editing does). Without them the result is exactly that of plain generation.

        Args:
            lengths: (B,) tokens to generate per sample; N = max(lengths).
            text_emb: (B, E).
            cfg: guidance scale; 1 runs the conditional branch only.
            temperature: scales the head's sampling noise.
            snap_fn: optional map (M, C_t) -> (M, C_t) applied to every sample (e.g. FSQ grid snap).
            generator: RNG on the model's device for scores and noise.
            latent_fn: map (M, C_t) -> (M, C_in) from a (snapped) target to the transformer input; None when
                the targets are the latents (requires C_t == C_in).
            known: (B, N, C_t) targets kept outside ``edit_mask`` (e.g. a source motion's), given with it.
            edit_mask: (B, N) bool, True at the positions to generate; every sample needs at least one valid one.
            head_steps, head_solver: the diffusion head's sampler instead of its own (``DiffusionHead.sample``):
                DDPM with ``head_solver`` (ancestral, ddim) respaced to ``head_steps`` of its training steps; SiT
                with ``head_solver`` (dopri5, euler, heun) in ``head_steps``.
        Returns:
            (B, N, C_t) generated targets, ``known`` where not edited, zeros at padded positions.
        """
        if time_steps < 1:
            raise ValueError(f"MARDM.generate: time_steps must be >= 1, got {time_steps}")
        for name, value in (("cfg", cfg), ("temperature", temperature)):
            if not (math.isfinite(value) and value >= 0):  # NaN or Inf would come back as NaN motions
                raise ValueError(f"MARDM.generate: {name} must be a finite number >= 0, got {value}")
        self.head.check_sampler(head_steps, head_solver)
        if latent_fn is None and self.target_dim != self.ae_dim:
            raise ValueError(f"MARDM.generate: targets have {self.target_dim} channels but the transformer reads "
                             f"{self.ae_dim}; pass latent_fn to map targets back to latents")
        device = self.mask_latent.device
        check_lengths(lengths, "MARDM.generate")
        lengths = lengths.to(device).long()
        text_emb = text_emb.to(device)
        batch = lengths.shape[0]
        max_len = int(lengths.max()) if batch else 0
        self._check_inputs(lengths, text_emb, max_len)
        valid = lengths_to_mask(lengths, max_len)

        latents = torch.zeros(batch, max_len, self.ae_dim, device=device)
        targets = torch.zeros(batch, max_len, self.target_dim, device=device)
        scores = torch.rand(batch, max_len, device=device, generator=generator).masked_fill(~valid, 1e5)
        mask_latent = self.mask_latent.float()
        # Plain generation edits every valid position.
        num_edits = lengths
        if known is not None or edit_mask is not None:
            edit = self._edit_positions(known, edit_mask, valid)
            fixed = valid & ~edit
            targets[fixed] = known.to(device)[fixed].to(targets.dtype)
            kept = targets[fixed]
            latents[fixed] = (latent_fn(kept) if latent_fn is not None else kept).to(latents.dtype)
            # Fixed positions sort last, so no step ever masks them.
            scores = scores.masked_fill(fixed, 1e5)
            num_edits = edit.sum(1)

        with _eval_mode(self):
            for tau in torch.linspace(0, 1, time_steps).tolist():
                ratio = torch.full((batch,), math.cos(math.pi * tau / 2), device=device)
                num = torch.minimum(num_masked_tokens(num_edits, ratio), num_edits)
                masked = lowest_score_mask(scores, num) & valid
                x_in = torch.where(masked[..., None], mask_latent.expand_as(latents), latents)
                if cfg == 1.0:
                    z_cond, z_uncond = self.encode(x_in, text_emb, valid)[masked], None     # (M, H)
                else:
                    # One pass over [cond; uncond]; a zero text embedding is exactly the unconditional input.
                    z = self.encode(torch.cat([x_in, x_in]), torch.cat([text_emb, torch.zeros_like(text_emb)]),
                                    torch.cat([valid, valid]))
                    z_cond, z_uncond = z[:batch][masked], z[batch:][masked]             # (M, H) each
                sampled = self.head.sample(z_cond, cfg_scale=cfg, temperature=temperature, z_uncond=z_uncond,
                                           generator=generator, steps=head_steps, solver=head_solver)  # (M, C_t)
                if snap_fn is not None:
                    sampled = snap_fn(sampled)
                targets[masked] = sampled.to(targets.dtype)
                latents[masked] = (latent_fn(sampled) if latent_fn is not None else sampled).to(latents.dtype)
                # Positions left unmasked this step are final: give them scores no later step re-masks.
                scores = scores.masked_fill(~masked, 1e5)
        return targets

    def _edit_positions(self, known: torch.Tensor | None, edit_mask: torch.Tensor | None,
                        valid: torch.Tensor) -> torch.Tensor:
        """Check ``known`` (B, N, C_t) and ``edit_mask`` (B, N) against ``valid`` (B, N) -> edit & valid."""
        if known is None or edit_mask is None:
            raise ValueError("MARDM.generate: editing needs both known (B, N, C_t) and edit_mask (B, N)")
        expected = (*valid.shape, self.target_dim)
        if tuple(known.shape) != expected:
            raise ValueError(f"MARDM.generate: known must be (B, N, C_t) = {expected}, got {tuple(known.shape)}")
        return edit_positions(edit_mask, valid, "MARDM.generate")


# ---------------------------------------------------------------------------------------------------------------------
# Registry
# ---------------------------------------------------------------------------------------------------------------------
_XL = dict(latent_dim=1024, ff_size=4096, num_layers=1, num_heads=16, dropout=0.2, cond_drop_prob=0.1,
           diffmlps_batch_mul=4, diffmlps_depth=16, diffmlps_width=1792)
_TINY = dict(latent_dim=64, ff_size=128, num_layers=2, num_heads=4, dropout=0.1, cond_drop_prob=0.1,
             diffmlps_batch_mul=2, diffmlps_depth=2, diffmlps_width=64)


def _build(name: str, preset: dict[str, Any], diffusion: str, same_dim: bool, ae_dim: int, target_dim: int,
           text_dim: int, overrides: dict[str, Any]) -> MARDM:
    if overrides.get("diffusion", diffusion) != diffusion:
        raise ValueError(f"{name}: diffusion={overrides['diffusion']!r} contradicts the variant ({diffusion!r})")
    if same_dim and target_dim != ae_dim:
        raise ValueError(f"{name}: generates the AE latents themselves, so target_dim ({target_dim}) must equal "
                         f"ae_dim ({ae_dim}); use an FSQ-/VQ-/LFQ- variant for a different target")
    kwargs = {**preset, "diffusion": diffusion, **overrides}
    return MARDM(ae_dim=ae_dim, target_dim=target_dim, text_dim=text_dim, **kwargs)


def ignored_head_args(name: str, overrides: dict[str, Any]) -> dict[str, str]:
    """The head arguments among ``overrides`` that registry entry ``name`` would record but never use, each with why:
    ``flow_solver`` and ``flow_steps`` on a DDPM head (it has no ODE solver), ``flow_steps`` with the adaptive dopri5
    solver (it chooses its own steps)."""
    if "-DDPM-" in name:
        return {key: f"{name} has a DDPM head, which integrates no ODE ({key} is for SiT heads)"
                for key in ("flow_solver", "flow_steps") if key in overrides}
    if "flow_steps" in overrides and overrides.get("flow_solver", DEFAULT_FLOW_SOLVER) == "dopri5":
        return {"flow_steps": "dopri5 chooses its own steps; the steps are for --flow_solver euler or heun"}
    return {}


def MARDM_DDPM_XL(ae_dim: int, target_dim: int, text_dim: int, **overrides: Any) -> MARDM:
    """Published MARDM-DDPM-XL on continuous AE latents."""
    return _build("MARDM-DDPM-XL", _XL, "ddpm", True, ae_dim, target_dim, text_dim, overrides)


def MARDM_SiT_XL(ae_dim: int, target_dim: int, text_dim: int, **overrides: Any) -> MARDM:
    """Published MARDM-SiT-XL on continuous AE latents."""
    return _build("MARDM-SiT-XL", _XL, "sit", True, ae_dim, target_dim, text_dim, overrides)


def FSQ_MARDM_SiT_XL(ae_dim: int, target_dim: int, text_dim: int, **overrides: Any) -> MARDM:
    """XL sizes; the head generates FSQ grid coordinates (target_dim = FSQ dims)."""
    return _build("FSQ-MARDM-SiT-XL", _XL, "sit", False, ae_dim, target_dim, text_dim, overrides)


def FSQ_MARDM_DDPM_XL(ae_dim: int, target_dim: int, text_dim: int, **overrides: Any) -> MARDM:
    """XL sizes, DDPM head generating FSQ grid coordinates."""
    return _build("FSQ-MARDM-DDPM-XL", _XL, "ddpm", False, ae_dim, target_dim, text_dim, overrides)


def VQ_MARDM_SiT_XL(ae_dim: int, target_dim: int, text_dim: int, **overrides: Any) -> MARDM:
    """XL sizes; the head generates VQ code vectors (snapped to the codebook by the caller)."""
    return _build("VQ-MARDM-SiT-XL", _XL, "sit", False, ae_dim, target_dim, text_dim, overrides)


def LFQ_MARDM_SiT_XL(ae_dim: int, target_dim: int, text_dim: int, **overrides: Any) -> MARDM:
    """XL sizes; the head generates the d LFQ signs (target_dim = log2 K), snapped by sign by the caller."""
    return _build("LFQ-MARDM-SiT-XL", _XL, "sit", False, ae_dim, target_dim, text_dim, overrides)


def VQ_MARDM_DDPM_XL(ae_dim: int, target_dim: int, text_dim: int, **overrides: Any) -> MARDM:
    """XL sizes, DDPM head generating VQ code vectors (snapped to the codebook by the caller)."""
    return _build("VQ-MARDM-DDPM-XL", _XL, "ddpm", False, ae_dim, target_dim, text_dim, overrides)


def LFQ_MARDM_DDPM_XL(ae_dim: int, target_dim: int, text_dim: int, **overrides: Any) -> MARDM:
    """XL sizes, DDPM head generating the d LFQ signs (snapped by sign by the caller)."""
    return _build("LFQ-MARDM-DDPM-XL", _XL, "ddpm", False, ae_dim, target_dim, text_dim, overrides)


def MARDM_SiT_Tiny(ae_dim: int, target_dim: int, text_dim: int, **overrides: Any) -> MARDM:
    """Test-sized MARDM-SiT."""
    return _build("MARDM-SiT-Tiny", _TINY, "sit", True, ae_dim, target_dim, text_dim, overrides)


def MARDM_DDPM_Tiny(ae_dim: int, target_dim: int, text_dim: int, **overrides: Any) -> MARDM:
    """Test-sized MARDM-DDPM."""
    return _build("MARDM-DDPM-Tiny", _TINY, "ddpm", True, ae_dim, target_dim, text_dim, overrides)


def FSQ_MARDM_SiT_Tiny(ae_dim: int, target_dim: int, text_dim: int, **overrides: Any) -> MARDM:
    """Test-sized FSQ-MARDM-SiT."""
    return _build("FSQ-MARDM-SiT-Tiny", _TINY, "sit", False, ae_dim, target_dim, text_dim, overrides)


def FSQ_MARDM_DDPM_Tiny(ae_dim: int, target_dim: int, text_dim: int, **overrides: Any) -> MARDM:
    """Test-sized FSQ-MARDM-DDPM."""
    return _build("FSQ-MARDM-DDPM-Tiny", _TINY, "ddpm", False, ae_dim, target_dim, text_dim, overrides)


def VQ_MARDM_SiT_Tiny(ae_dim: int, target_dim: int, text_dim: int, **overrides: Any) -> MARDM:
    """Test-sized VQ-MARDM-SiT."""
    return _build("VQ-MARDM-SiT-Tiny", _TINY, "sit", False, ae_dim, target_dim, text_dim, overrides)


def LFQ_MARDM_SiT_Tiny(ae_dim: int, target_dim: int, text_dim: int, **overrides: Any) -> MARDM:
    """Test-sized LFQ-MARDM-SiT."""
    return _build("LFQ-MARDM-SiT-Tiny", _TINY, "sit", False, ae_dim, target_dim, text_dim, overrides)


def VQ_MARDM_DDPM_Tiny(ae_dim: int, target_dim: int, text_dim: int, **overrides: Any) -> MARDM:
    """Test-sized VQ-MARDM-DDPM."""
    return _build("VQ-MARDM-DDPM-Tiny", _TINY, "ddpm", False, ae_dim, target_dim, text_dim, overrides)


def LFQ_MARDM_DDPM_Tiny(ae_dim: int, target_dim: int, text_dim: int, **overrides: Any) -> MARDM:
    """Test-sized LFQ-MARDM-DDPM."""
    return _build("LFQ-MARDM-DDPM-Tiny", _TINY, "ddpm", False, ae_dim, target_dim, text_dim, overrides)


MARDM_MODELS: dict[str, Callable[..., MARDM]] = {
    "MARDM-DDPM-XL": MARDM_DDPM_XL,
    "MARDM-SiT-XL": MARDM_SiT_XL,
    "FSQ-MARDM-SiT-XL": FSQ_MARDM_SiT_XL,
    "FSQ-MARDM-DDPM-XL": FSQ_MARDM_DDPM_XL,
    "VQ-MARDM-SiT-XL": VQ_MARDM_SiT_XL,
    "LFQ-MARDM-SiT-XL": LFQ_MARDM_SiT_XL,
    "VQ-MARDM-DDPM-XL": VQ_MARDM_DDPM_XL,
    "LFQ-MARDM-DDPM-XL": LFQ_MARDM_DDPM_XL,
    "MARDM-SiT-Tiny": MARDM_SiT_Tiny,
    "MARDM-DDPM-Tiny": MARDM_DDPM_Tiny,
    "FSQ-MARDM-SiT-Tiny": FSQ_MARDM_SiT_Tiny,
    "FSQ-MARDM-DDPM-Tiny": FSQ_MARDM_DDPM_Tiny,
    "VQ-MARDM-SiT-Tiny": VQ_MARDM_SiT_Tiny,
    "LFQ-MARDM-SiT-Tiny": LFQ_MARDM_SiT_Tiny,
    "VQ-MARDM-DDPM-Tiny": VQ_MARDM_DDPM_Tiny,
    "LFQ-MARDM-DDPM-Tiny": LFQ_MARDM_DDPM_Tiny,
}
