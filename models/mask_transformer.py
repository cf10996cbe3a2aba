"""MoMask's token generators (Guo et al., CVPR 2024): a masked transformer for the base RVQ layer and a residual
transformer for layers 1..Q-1.

Both are post-LN ``nn.TransformerEncoder`` stacks over [condition token(s); tokens + sinusoidal positions] and take
the text as a precomputed, frozen embedding ``text_emb (B, E)`` turned into the first token by a Linear. Condition
dropout zeroes ``text_emb``, so "unconditional" at sampling time is the zero vector (the condition token is then the
Linear's bias) and classifier-free guidance is ``uncond + scale * (cond - uncond)``.

``MaskTransformer`` (base layer):
- vocabulary K + 2: codes 0..K-1, ``mask_id = K``, ``pad_id = K + 1``; the head has K outputs, so the mask and pad ids
  can never be predicted or sampled.
- training (``forward``): MaskGIT's cosine schedule gamma(r) = cos(pi/2 * r), r ~ U(0, 1); round(gamma * length) of
  each sample's valid tokens are masked, as generation counts (MoMask counts round(gamma * N) over the padded length
  instead, see ``models.mask_schedule.sample_training_mask``; ``train_mask_count="padded"`` trains that way),
  corrupted BERT-style (10% random code, 79.2% mask id, 10.8% unchanged) and predicted with a cross-entropy over the
  masked positions only.
- generation (``generate``): iterative confidence-based re-masking with the cosine schedule.

``ResidualTransformer`` (layers 1..Q-1) lives in ``models.res_transformer`` and runs on the same text-conditioned
stack (``TextConditionedEncoder``).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from models.mask_schedule import (
    SAMPLING_MODES,
    check_batch,
    check_lengths,
    check_training_mask_count,
    corrupt_tokens,
    cosine_schedule,
    edit_positions,
    lengths_to_mask,
    lowest_score_mask,
    num_masked_for_generation,
    sample_from_logits,
    sample_training_mask,
    top_k_filter,
)

logger = logging.getLogger(__name__)

CODE_EMBEDDINGS = ("learned", "codebook")


# ---------------------------------------------------------------------------------------------------------------------
# Shared pieces
# ---------------------------------------------------------------------------------------------------------------------
def sinusoidal_positions(num: int, dim: int, device: torch.device) -> torch.Tensor:
    """(num, dim) Transformer positional encoding: sin on even channels, cos on odd ones."""
    position = torch.arange(num, dtype=torch.float32, device=device)[:, None]
    div_term = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32, device=device) * (-math.log(10000.0) / dim))
    pe = torch.zeros(num, dim, device=device)
    pe[:, 0::2] = torch.sin(position * div_term)
    pe[:, 1::2] = torch.cos(position * div_term)[:, : dim // 2]
    return pe


def masked_token_loss(logits: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor,
                      label_smoothing: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Cross-entropy and top-1 accuracy over the positions where ``mask`` is True.

    Args:
        logits: (B, N, K); targets: (B, N) long; mask: (B, N) bool.
    Returns:
        loss (scalar, differentiable) and accuracy (scalar, detached).
    """
    selected = logits[mask].float()                                   # (M, K)
    labels = targets[mask]                                            # (M,)
    loss = F.cross_entropy(selected, labels, label_smoothing=label_smoothing)
    acc = (selected.argmax(-1) == labels).float().mean().detach()
    return loss, acc


def resolve_sampling(sampling: str | None, gsample: bool | None) -> str:
    """``sampling`` ("categorical" | "gumbel") or MoMask's boolean ``gsample``; categorical when neither is given."""
    from_flag = None if gsample is None else ("gumbel" if gsample else "categorical")
    if sampling is not None and from_flag is not None and sampling != from_flag:
        raise ValueError(f"sampling={sampling!r} contradicts gsample={gsample}")
    resolved = sampling or from_flag or "categorical"
    if resolved not in SAMPLING_MODES:
        raise ValueError(f"sampling must be one of {SAMPLING_MODES}, got {resolved!r}")
    return resolved


@contextmanager
def eval_mode(module: nn.Module) -> Iterator[None]:
    """Run the block with ``module`` in eval mode, then restore its training flag."""
    was_training = module.training
    module.eval()
    try:
        yield
    finally:
        module.train(was_training)


def init_weights(module: nn.Module) -> None:
    """MoMask's initialisation, for ``model.apply``: Linear and Embedding N(0, 0.02), zero biases, LayerNorm (1, 0)."""
    if isinstance(module, (nn.Linear, nn.Embedding)):
        nn.init.normal_(module.weight, std=0.02)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)


class OutputHead(nn.Module):
    """(B, N, H) -> (B, N, out_dim): Linear -> GELU -> LayerNorm(eps 1e-12) -> Linear (MoMask's BERT-style head)."""

    def __init__(self, latent_dim: int, out_dim: int) -> None:
        super().__init__()
        self.dense = nn.Linear(latent_dim, latent_dim)
        self.norm = nn.LayerNorm(latent_dim, eps=1e-12)
        self.proj = nn.Linear(latent_dim, out_dim)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.proj(self.norm(F.gelu(self.dense(h))))


class TextConditionedEncoder(nn.Module):
    """Backbone shared by both generators: input Linear, positions, condition token, post-LN encoder."""

    def __init__(self, in_dim: int, text_dim: int, latent_dim: int, ff_size: int, num_layers: int, num_heads: int,
                 dropout: float, cond_drop_prob: float, label_smoothing: float) -> None:
        super().__init__()
        name = type(self).__name__
        sizes = dict(latent_dim=latent_dim, ff_size=ff_size, num_layers=num_layers, num_heads=num_heads)
        for key, value in sizes.items():
            # torch builds an encoder of no layers or a feed-forward of no width without a word, and fails on a
            # zero head count or a negative size with an error that names no argument.
            if value < 1:
                raise ValueError(f"{name}: {key} must be >= 1, got {value}")
        if latent_dim % num_heads:
            raise ValueError(f"{name}: latent_dim={latent_dim} is not divisible by num_heads={num_heads}")
        if not 0.0 <= cond_drop_prob < 1.0:
            raise ValueError(f"{name}: cond_drop_prob must be in [0, 1), got {cond_drop_prob}")
        if not 0.0 <= label_smoothing < 1.0:
            raise ValueError(f"{name}: label_smoothing must be in [0, 1), got {label_smoothing}")
        self.text_dim = text_dim
        self.latent_dim = latent_dim
        self.cond_drop_prob = cond_drop_prob
        self.label_smoothing = label_smoothing
        self.input_process = nn.Linear(in_dim, latent_dim)
        self.pos_dropout = nn.Dropout(dropout)
        self.cond_emb = nn.Linear(text_dim, latent_dim)
        # Post-LN with GELU, as MoMask; nested tensors off so padded positions compute the same in train and eval.
        layer = nn.TransformerEncoderLayer(latent_dim, num_heads, ff_size, dropout, activation="gelu",
                                           batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, num_layers, enable_nested_tensor=False)

    def condition(self, text_emb: torch.Tensor) -> torch.Tensor:
        """text_emb (B, E) -> condition token (B, 1, H); in training each sample's text is zeroed with
        probability ``cond_drop_prob`` (classifier-free guidance)."""
        text_emb = text_emb.to(self.cond_emb.weight.dtype)
        if self.training and self.cond_drop_prob > 0:
            keep = torch.rand(text_emb.shape[0], 1, device=text_emb.device) >= self.cond_drop_prob
            text_emb = text_emb * keep.to(text_emb.dtype)
        return self.cond_emb(text_emb)[:, None]

    def encode(self, x: torch.Tensor, prefix: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """x (B, N, in_dim), prefix (B, P, H) tokens never padded, valid (B, N) bool -> (B, N, H) at the x positions."""
        h = self.input_process(x)
        h = self.pos_dropout(h + sinusoidal_positions(h.shape[1], h.shape[2], h.device).to(h.dtype))
        seq = torch.cat([prefix.to(h.dtype), h], dim=1)
        pad = torch.cat([torch.zeros_like(valid[:, :1]).expand(-1, prefix.shape[1]), ~valid], dim=1)
        return self.encoder(seq, src_key_padding_mask=pad)[:, prefix.shape[1]:]

    def _check_lengths_text(self, lengths: torch.Tensor, text_emb: torch.Tensor, max_len: int, who: str) -> None:
        if lengths.ndim != 1 or text_emb.ndim != 2 or text_emb.shape[0] != lengths.shape[0]:
            raise ValueError(f"{who}: expected lengths (B,) and text_emb (B, {self.text_dim}), got "
                             f"{tuple(lengths.shape)} and {tuple(text_emb.shape)}")
        if text_emb.shape[1] != self.text_dim:
            raise ValueError(f"{who}: text_emb has {text_emb.shape[1]} channels, the model expects "
                             f"text_dim={self.text_dim}")
        if lengths.numel() and (int(lengths.min()) < 1 or int(lengths.max()) > max_len):
            raise ValueError(f"{who}: lengths (in tokens) must lie in [1, {max_len}], got "
                             f"min {int(lengths.min())}, max {int(lengths.max())}")

    @staticmethod
    def _check_codes(indices: torch.Tensor, valid: torch.Tensor, codebook_size: int, who: str) -> None:
        if indices.dtype == torch.bool or indices.is_floating_point() or indices.is_complex():
            # .long() would truncate float ids silently (3.7 -> 3).
            raise TypeError(f"{who}: indices must be integer codes, got {indices.dtype}")
        codes = indices[valid] if indices.ndim == valid.ndim else indices[valid].reshape(-1)
        if codes.numel() and (int(codes.min()) < 0 or int(codes.max()) >= codebook_size):
            raise ValueError(f"{who}: indices at valid positions must lie in [0, {codebook_size}), got "
                             f"min {int(codes.min())}, max {int(codes.max())}")


# ---------------------------------------------------------------------------------------------------------------------
# Base layer: masked transformer
# ---------------------------------------------------------------------------------------------------------------------
class MaskTransformer(TextConditionedEncoder):
    """Masked token transformer over the base RVQ layer (MoMask sec. 3.2).

    Args:
        codebook_size: K codes; ids K and K + 1 are the mask and pad ids.
        text_dim: E, size of the precomputed text embedding.
        code_dim: width of the learned token embedding before the input Linear (MoMask: the tokenizer's 512).
        latent_dim, ff_size, num_layers, num_heads, dropout: transformer sizes (dropout also on the positions).
        cond_drop_prob: probability of training a sample without its text.
        label_smoothing: of the masked-token cross-entropy (MoMask: 0).
        train_mask_count: "length" (round(gamma * length) of each sample's tokens) or "padded" (MoMask's count,
            ``models.mask_schedule.padded_training_mask``).
    """

    def __init__(self, codebook_size: int, text_dim: int, code_dim: int = 512, latent_dim: int = 384,
                 ff_size: int = 1024, num_layers: int = 8, num_heads: int = 6, dropout: float = 0.2,
                 cond_drop_prob: float = 0.1, label_smoothing: float = 0.0, train_mask_count: str = "length") -> None:
        if codebook_size < 2:
            raise ValueError(f"MaskTransformer: codebook_size must be >= 2, got {codebook_size}")
        check_training_mask_count(train_mask_count, "MaskTransformer")
        super().__init__(code_dim, text_dim, latent_dim, ff_size, num_layers, num_heads, dropout, cond_drop_prob,
                         label_smoothing)
        self.model_args: dict[str, Any] = dict(
            codebook_size=codebook_size, text_dim=text_dim, code_dim=code_dim, latent_dim=latent_dim,
            ff_size=ff_size, num_layers=num_layers, num_heads=num_heads, dropout=dropout,
            cond_drop_prob=cond_drop_prob, label_smoothing=label_smoothing, train_mask_count=train_mask_count)
        self.train_mask_count = train_mask_count
        self.codebook_size = codebook_size
        self.mask_id = codebook_size
        self.pad_id = codebook_size + 1
        self.token_emb = nn.Embedding(codebook_size + 2, code_dim)
        self.output_process = OutputHead(latent_dim, codebook_size)
        self.apply(init_weights)

    def logits(self, ids: torch.Tensor, text_emb: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """ids (B, N) in [0, K + 2), text_emb (B, E), valid (B, N) bool -> logits (B, N, K) over the real codes."""
        return self.output_process(self.encode(self.token_emb(ids), self.condition(text_emb), valid))

    def guided_logits(self, ids: torch.Tensor, text_emb: torch.Tensor, valid: torch.Tensor,
                      cond_scale: float) -> torch.Tensor:
        """Classifier-free guidance uncond + cond_scale * (cond - uncond), unconditional = zero text; (B, N, K).

        ``cond_scale == 1`` runs the conditional pass only; otherwise both run as one batch of 2B.
        """
        if cond_scale == 1.0:
            return self.logits(ids, text_emb, valid)
        batch = ids.shape[0]
        both = self.logits(torch.cat([ids, ids]), torch.cat([text_emb, torch.zeros_like(text_emb)]),
                           torch.cat([valid, valid]))
        cond, uncond = both[:batch], both[batch:]
        return uncond + cond_scale * (cond - uncond)

    # ----- training -------------------------------------------------------------------------------------------------
    def forward(self, indices: torch.Tensor, lengths: torch.Tensor, text_emb: torch.Tensor,
                padded_len: int | None = None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Masked-token loss of one batch.

        Args:
            indices: (B, N) long base-layer codes; padded positions may hold anything (e.g. -1).
            lengths: (B,) valid tokens per sample.
            text_emb: (B, E).
            padded_len: the length in tokens the references pad every sample to (49 on HumanML3D), over which
                ``train_mask_count="padded"`` counts; None: the batch's N.
        Returns:
            loss (scalar) and logs {"loss", "acc", "mask_ratio"} (detached scalars; acc is top-1 over masked tokens).
        """
        if indices.ndim != 2:
            raise ValueError(f"MaskTransformer.forward: indices must be (B, N) base-layer codes, "
                             f"got {tuple(indices.shape)}")
        batch, max_len = indices.shape
        check_lengths(lengths, "MaskTransformer.forward")
        check_batch(batch, lengths, "indices", "MaskTransformer.forward")
        lengths = lengths.to(indices.device).long()
        self._check_lengths_text(lengths, text_emb, max_len, "MaskTransformer.forward")
        valid = lengths_to_mask(lengths, max_len)
        self._check_codes(indices, valid, self.codebook_size, "MaskTransformer.forward")
        ids = indices.long().masked_fill(~valid, self.pad_id)

        mask = sample_training_mask(lengths, max_len, count=self.train_mask_count, padded_len=padded_len)
        x_ids = corrupt_tokens(ids, mask, self.codebook_size, self.mask_id)
        logits = self.logits(x_ids, text_emb, valid)                             # (B, N, K)
        loss, acc = masked_token_loss(logits, ids, mask, self.label_smoothing)
        logs = {"loss": loss.detach(), "acc": acc, "mask_ratio": (mask.sum() / valid.sum()).detach()}
        return loss, logs

    # ----- generation -----------------------------------------------------------------------------------------------
    @torch.no_grad()
    def generate(self, lengths: torch.Tensor, text_emb: torch.Tensor, time_steps: int = 10, cond_scale: float = 4.0,
                 temperature: float = 1.0, topk_filter_thres: float = 0.9, sampling: str | None = None,
                 gsample: bool | None = None, generator: torch.Generator | None = None,
                 known: torch.Tensor | None = None, edit_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Confidence-based iterative decoding (MaskGIT / MoMask).

        All valid positions start masked with score 0 (pads 1e5). At step k, tau_k on linspace(0, 1, time_steps),
        the round(cos(pi/2 * tau_k) * length).clamp(min=1) lowest-score positions are set to the mask id, the guided
        logits are top-k filtered (k = ceil((1 - topk_filter_thres) * K)) and sampled with ``temperature`` at the
        masked positions only. A sampled token's new score is its probability under the unfiltered,
        temperature-free guided logits; positions not masked at this step get 1e5, so a committed token is never
        re-masked and each step re-masks the least confident of the tokens it just sampled.

        Gumbel-max and categorical sampling draw from the same distribution but use the RNG differently. The
        reference mixes them silently (its evaluation samples the multimodality batches with Gumbel and every other
        batch categorically); here the choice is explicit: ``sampling`` ("categorical" | "gumbel"), or MoMask's
        ``gsample`` flag (True = "gumbel"); categorical when neither is given.

        Editing (temporal inpainting, MoMask's ``edit``): with ``known`` and ``edit_mask``, valid positions outside the
        edit mask hold ``known`` from the start, are never masked or resampled and condition every step; only edit
        positions start masked, and the schedule counts over them (round(cos(pi/2 * tau_k) * edits).clamp(1, edits)).
        Without them the result is exactly that of plain generation.

        Args:
            lengths: (B,) tokens to generate per sample; N = max(lengths).
            text_emb: (B, E).
            cond_scale: guidance scale; 1 runs the conditional pass only.
            generator: RNG on the model's device for the sampling noise.
            known: (B, N) long codes kept outside ``edit_mask`` (e.g. a source motion's base layer), given with it.
            edit_mask: (B, N) bool, True at the positions to generate; every sample needs at least one valid one.
        Returns:
            (B, N) long: codes in [0, K) at valid positions (``known`` where not edited), -1 at pads.
        """
        if time_steps < 1:
            raise ValueError(f"MaskTransformer.generate: time_steps must be >= 1, got {time_steps}")
        sampling = resolve_sampling(sampling, gsample)
        device = self.token_emb.weight.device
        check_lengths(lengths, "MaskTransformer.generate")
        lengths = lengths.to(device).long()
        text_emb = text_emb.to(device)
        batch = lengths.shape[0]
        max_len = int(lengths.max()) if batch else 0
        self._check_lengths_text(lengths, text_emb, max_len, "MaskTransformer.generate")
        valid = lengths_to_mask(lengths, max_len)

        ids = torch.full((batch, max_len), self.pad_id, dtype=torch.long, device=device).masked_fill(valid,
                                                                                                      self.mask_id)
        scores = torch.zeros(batch, max_len, device=device).masked_fill(~valid, 1e5)
        # Plain generation edits every valid position.
        num_edits = lengths
        if known is not None or edit_mask is not None:
            if known is None or edit_mask is None:
                raise ValueError("MaskTransformer.generate: editing needs both known (B, N) and edit_mask (B, N)")
            if tuple(known.shape) != (batch, max_len):
                raise ValueError(f"MaskTransformer.generate: known must be (B, N) = {(batch, max_len)} base-layer "
                                 f"codes, got {tuple(known.shape)}")
            edit = edit_positions(edit_mask, valid, "MaskTransformer.generate")
            fixed = valid & ~edit
            self._check_codes(known.to(device), fixed, self.codebook_size, "MaskTransformer.generate (known)")
            ids = torch.where(fixed, known.to(device).long(), ids)
            # Fixed positions sort last, so no step ever masks them.
            scores = scores.masked_fill(fixed, 1e5)
            num_edits = edit.sum(1)
        if batch == 0:
            return ids
        with eval_mode(self):
            for tau in torch.linspace(0, 1, time_steps).tolist():
                ratio = cosine_schedule(torch.full((batch,), tau, device=device))
                num = torch.minimum(num_masked_for_generation(num_edits, ratio), num_edits)
                masked = lowest_score_mask(scores, num) & valid
                ids = ids.masked_fill(masked, self.mask_id)
                logits = self.guided_logits(ids, text_emb, valid, cond_scale).float()      # (B, N, K)
                sampled = sample_from_logits(top_k_filter(logits, topk_filter_thres), temperature, sampling,
                                             generator)
                ids = torch.where(masked, sampled, ids)
                scores = logits.softmax(-1).gather(-1, sampled[..., None]).squeeze(-1).masked_fill(~masked, 1e5)
        return ids.masked_fill(~valid, -1)


# ---------------------------------------------------------------------------------------------------------------------
# Registry: a registered name is frozen once a checkpoint exists; *-Tiny variants are for tests.
# ---------------------------------------------------------------------------------------------------------------------
# Released MoMask models: t2m_nlayer8_nhead6_ld384_ff1024_cdp0.1_rvq6ns and tres_nlayer8_ld384_ff1024_rvq6ns_cdp0.2_sw
# (the residual one is registered in models.res_transformer with the same sizes).
MOMASK_SIZES = dict(latent_dim=384, ff_size=1024, num_layers=8, num_heads=6, dropout=0.2)
TINY_SIZES = dict(latent_dim=64, ff_size=128, num_layers=2, num_heads=4, dropout=0.1)


def MoMask_Mask(codebook_size: int, code_dim: int, text_dim: int, **overrides: Any) -> MaskTransformer:
    """Published MoMask base-layer transformer (8 layers, width 384, 6 heads, ff 1024, dropout 0.2, cdp 0.1)."""
    kwargs = {**MOMASK_SIZES, "cond_drop_prob": 0.1, **overrides}
    return MaskTransformer(codebook_size=codebook_size, code_dim=code_dim, text_dim=text_dim, **kwargs)


def MoMask_Mask_Tiny(codebook_size: int, code_dim: int, text_dim: int, **overrides: Any) -> MaskTransformer:
    """Test-sized MaskTransformer."""
    kwargs = {**TINY_SIZES, "cond_drop_prob": 0.1, **overrides}
    return MaskTransformer(codebook_size=codebook_size, code_dim=code_dim, text_dim=text_dim, **kwargs)


MASK_TRANSFORMERS: dict[str, Callable[..., MaskTransformer]] = {
    "MoMask-Mask": MoMask_Mask,
    "MoMask-Mask-Tiny": MoMask_Mask_Tiny,
}
# The transformer sizes each entry builds when no override is given (the flags are checked against them before any
# data is read; tests check that each entry builds these).
MASK_TRANSFORMER_SIZES: dict[str, dict[str, Any]] = {"MoMask-Mask": MOMASK_SIZES, "MoMask-Mask-Tiny": TINY_SIZES}
