"""Schedules and sampling helpers of the masked token generators (MaskGIT / MoMask), as pure functions.

Every function here is independent of any network so it can be tested on its own:

- ``cosine_schedule``: mask ratio gamma(r) = cos(pi/2 * r) (MaskGIT, Chang et al. 2022, sec. 3.2).
- ``sample_training_mask``: round(gamma * length) masked positions per sample (generation's count), drawn among its
  valid positions, or (``count="padded"``) MoMask's own count over the padded length (``padded_training_mask``).
- ``corrupt_tokens``: BERT-style corruption of the masked inputs.
- ``q_schedule``: the residual layer trained at each step, biased towards the first residual layers.
- ``lowest_score_mask``, ``top_k_filter``, ``sample_from_logits``: the pieces of confidence-based generation.
- ``edit_positions``: the checked positions an editing run (temporal inpainting) generates.
"""

from __future__ import annotations

import math

import torch

SAMPLING_MODES = ("categorical", "gumbel")
# How a training step counts the positions it masks: from each sample's own length, or as the MoMask and MARDM code
# does, from the length every sample is padded to (``padded_training_mask``).
TRAINING_MASK_COUNTS = ("length", "padded")


def lengths_to_mask(lengths: torch.Tensor, max_len: int) -> torch.Tensor:
    """lengths (B,) -> (B, max_len) bool, True at valid (non-padded) positions."""
    return torch.arange(max_len, device=lengths.device)[None, :] < lengths[:, None]


def check_lengths(lengths: torch.Tensor, who: str) -> None:
    """TypeError naming ``who`` unless ``lengths`` is an integer tensor (tokens per sample). Float lengths would be
    truncated by ``.long()`` in one place and compared as fractions in another; bool ones would read as 0 and 1."""
    if not isinstance(lengths, torch.Tensor):
        raise TypeError(f"{who}: lengths must be a (B,) integer tensor of tokens per sample, got "
                        f"{type(lengths).__name__}; wrap it with torch.tensor(...)")
    if lengths.dtype == torch.bool or lengths.is_floating_point() or lengths.is_complex():
        raise TypeError(f"{who}: lengths must be an integer tensor of tokens per sample, got {lengths.dtype}")


def check_batch(batch: int, lengths: torch.Tensor, what: str, who: str, allow_empty: bool = False) -> None:
    """ValueError naming ``who`` unless ``what`` (holding ``batch`` samples) and ``lengths (B,)`` agree on B, and,
    unless ``allow_empty`` (generation), B is not 0: a training loss over no tokens is undefined."""
    if lengths.ndim == 1 and lengths.shape[0] != batch:
        raise ValueError(f"{who}: {what} holds B={batch} samples but lengths has {lengths.shape[0]}")
    if batch == 0 and not allow_empty:
        raise ValueError(f"{who}: the batch is empty (B=0); a loss over no tokens is undefined")


def cosine_schedule(r: torch.Tensor) -> torch.Tensor:
    """Mask ratio gamma(r) = cos(pi/2 * r) for r in [0, 1]: 1 at r = 0 (all masked), 0 at r = 1."""
    return torch.cos(r * math.pi / 2)


def num_masked_for_training(lengths: torch.Tensor, ratio: torch.Tensor) -> torch.Tensor:
    """round(ratio * length), clamped to [1, length]; lengths, ratio (B,) -> (B,) long.

    The count generation uses at the same ratio (``num_masked_for_generation``), so that training sees the masks
    generation makes. The clamp keeps at least one target per sample and never more than its length.
    """
    return torch.minimum(num_masked_for_generation(lengths, ratio), lengths.long())


def num_masked_for_generation(lengths: torch.Tensor, ratio: torch.Tensor) -> torch.Tensor:
    """round(ratio * length).clamp(min=1) per sample, as MoMask's ``generate``; lengths, ratio (B,) -> (B,) long.

    The clamp means the last step (ratio = cos(pi/2) ~ 0) still re-masks and re-samples one token.
    """
    return torch.round(lengths.to(ratio.dtype) * ratio).clamp(min=1).long()


def edit_positions(edit_mask: torch.Tensor, valid: torch.Tensor, who: str) -> torch.Tensor:
    """The positions an editing run generates: ``edit_mask & valid``, both (B, N) bool -> (B, N) bool.

    Raises ValueError naming ``who`` for a mask of another shape or dtype, or one that leaves a sample nothing to
    generate (its edited positions all lie in the padding).
    """
    if tuple(edit_mask.shape) != tuple(valid.shape) or edit_mask.dtype != torch.bool:
        raise ValueError(f"{who}: edit_mask must be a bool (B, N) = {tuple(valid.shape)} tensor, got "
                         f"{edit_mask.dtype} {tuple(edit_mask.shape)}")
    edit = edit_mask.to(valid.device) & valid
    empty = (~edit.any(1)).nonzero().flatten().tolist()
    if empty:
        raise ValueError(f"{who}: edit_mask selects no valid position of samples {empty}; there is nothing to "
                         f"generate")
    return edit


def lowest_score_mask(scores: torch.Tensor, num: torch.Tensor) -> torch.Tensor:
    """Mark the ``num[b]`` lowest-score positions of each row; scores (B, N), num (B,) -> (B, N) bool."""
    ranks = scores.argsort(dim=1).argsort(dim=1)
    return ranks < num[:, None]


def check_training_mask_count(count: str, who: str) -> None:
    """ValueError naming ``who`` unless ``count`` is one of ``TRAINING_MASK_COUNTS``."""
    if count not in TRAINING_MASK_COUNTS:
        raise ValueError(f"{who}: train_mask_count must be one of {TRAINING_MASK_COUNTS}, got {count!r}")


def padded_training_mask(lengths: torch.Tensor, max_len: int, ratio: torch.Tensor,
                         generator: torch.Generator | None = None, padded_len: int | None = None) -> torch.Tensor:
    """The training mask of the MoMask and MARDM code: round(ratio * P).clamp(min=1) positions of a random
    permutation of all P positions, those in the padding then dropped. P is ``padded_len``, the length the references
    pad every sample to (196 frames, 49 tokens, on HumanML3D), when given and not shorter than ``max_len``, else
    ``max_len``: a batch cut to its longest sample has only ``max_len`` positions, the others being padding anyway.

    A sample's count among its own tokens is therefore random (about ratio * length on average) and can be 0 for a
    short sequence in a padded batch, which then adds nothing to the loss. Where no position of the whole batch is
    left (only possible for batches of short sequences), the first sample's lowest-score valid position is masked,
    so that the step has a loss: the reference's would be NaN (a mean over no tokens).

    Args:
        lengths: (B,) valid tokens per sample, 1 <= length <= max_len; ratio: (B,) mask ratios in [0, 1].
    Returns:
        (B, max_len) bool, True at masked positions (never at padding).
    """
    valid = lengths_to_mask(lengths, max_len)
    positions = max(max_len, padded_len or 0)
    num = torch.round(positions * ratio).clamp(min=1).long()
    scores = torch.rand(lengths.shape[0], positions, device=lengths.device, generator=generator)
    mask = lowest_score_mask(scores, num)[:, :max_len] & valid
    scores = scores[:, :max_len]
    # Without a host sync: row 0 gains its lowest-score valid position only when the whole mask is empty.
    first = torch.zeros_like(mask[0])
    first[scores[0].masked_fill(~valid[0], 2.0).argmin()] = True
    mask[0] |= first & ~mask.any()
    return mask


def sample_training_mask(lengths: torch.Tensor, max_len: int, ratio: torch.Tensor | None = None,
                         generator: torch.Generator | None = None, count: str = "length",
                         padded_len: int | None = None) -> torch.Tensor:
    """Positions to mask in one training step.

    A ratio gamma = cos(pi/2 * r), r ~ U(0, 1), is drawn per sample unless given, and ``num_masked_for_training``
    of that sample's valid positions are picked by a random permutation. MoMask and MARDM instead take
    round(gamma * N_pad) positions of the *padded* length and then drop the padded ones, so a short sequence in a
    long batch is often trained on zero tokens; counting from the real length keeps training consistent with
    generation. ``count`` picks the rule: "length" (this one) or "padded" (the references', ``padded_training_mask``
    with ``padded_len``).

    Args:
        lengths: (B,) valid tokens per sample, 1 <= length <= max_len.
        ratio: optional (B,) mask ratios in [0, 1].
        padded_len: the length in tokens the references pad every sample to ("padded" only; None: ``max_len``).
    Returns:
        (B, max_len) bool, True at masked positions (never at padding).
    """
    check_training_mask_count(count, "sample_training_mask")
    batch = lengths.shape[0]
    device = lengths.device
    if ratio is None:
        ratio = cosine_schedule(torch.rand(batch, device=device, generator=generator))
    if count == "padded":
        return padded_training_mask(lengths, max_len, ratio, generator, padded_len)
    num = num_masked_for_training(lengths, ratio)
    scores = torch.rand(batch, max_len, device=device, generator=generator)
    # Padded positions sort last, so the permutation only picks valid ones (num <= length).
    scores = scores.masked_fill(~lengths_to_mask(lengths, max_len), 2.0)
    return lowest_score_mask(scores, num)


def corrupt_tokens(indices: torch.Tensor, mask: torch.Tensor, codebook_size: int, mask_id: int,
                   random_prob: float = 0.1, mask_prob: float = 0.88,
                   generator: torch.Generator | None = None) -> torch.Tensor:
    """BERT-style corruption of the masked positions, with MoMask's proportions.

    Each masked position independently becomes a uniformly random code in [0, K) with probability ``random_prob``;
    of the others, a fraction ``mask_prob`` becomes ``mask_id`` and the rest keep their true token. With the defaults
    that is 10% random, 0.9 * 0.88 = 79.2% mask id and 10.8% unchanged (what MoMask's code does; its comment words
    the proportions loosely). A random code may equal the true one.

    Args:
        indices: (B, N) long; mask: (B, N) bool.
    Returns:
        (B, N) long corrupted copy; positions outside ``mask`` are untouched.
    """
    draw_random = torch.rand(mask.shape, device=mask.device, generator=generator) < random_prob
    draw_mask = torch.rand(mask.shape, device=mask.device, generator=generator) < mask_prob
    random_codes = torch.randint(0, codebook_size, mask.shape, device=mask.device, generator=generator)
    to_random = mask & draw_random
    to_mask = mask & ~draw_random & draw_mask
    out = torch.where(to_random, random_codes, indices)
    return out.masked_fill(to_mask, mask_id)


def q_schedule(batch: int, num_quantizers: int, device: torch.device | str = "cpu",
               generator: torch.Generator | None = None) -> torch.Tensor:
    """Residual layer to train per sample: q = round((1 - cos(pi/2 * u)) * (Q - 2)) + 1, u ~ U(0, 1).

    (MoMask ``q_schedule``.) Values lie in [1, Q-1]; since 1 - cos(pi/2 * u) is small for most u, low layers are
    drawn more often (for Q = 6: P(q) = 0.32, 0.25, 0.19, 0.16, 0.08 for q = 1..5).

    Returns:
        (B,) long.
    """
    u = torch.rand(batch, device=device, generator=generator)
    return torch.round((1 - cosine_schedule(u)) * (num_quantizers - 2)).long() + 1


def top_k_filter(logits: torch.Tensor, thres: float = 0.9) -> torch.Tensor:
    """Keep the k = ceil((1 - thres) * K) largest logits on the last dim, -inf elsewhere; (..., K) -> (..., K).

    ``thres`` lies in [0, 1): 0 keeps every logit. ValueError otherwise (a negative one would ask for more than K).
    """
    if not 0.0 <= thres < 1.0:  # also NaN
        raise ValueError(f"top_k_filter: topk_filter_thres must be in [0, 1), got {thres}")
    k = max(1, math.ceil((1 - thres) * logits.shape[-1]))
    values, idx = logits.topk(k, dim=-1)
    return torch.full_like(logits, float("-inf")).scatter(-1, idx, values)


def sample_from_logits(logits: torch.Tensor, temperature: float = 1.0, sampling: str = "categorical",
                       generator: torch.Generator | None = None) -> torch.Tensor:
    """Draw one index per row of ``logits (..., K)`` -> (...) long.

    ``"gumbel"``: argmax(logits / temperature + Gumbel noise); ``"categorical"``: a draw from
    softmax(logits / temperature). Both sample the same distribution; they consume the RNG differently, so seeded
    runs differ between the two. Entries at -inf are never drawn.
    """
    if sampling not in SAMPLING_MODES:
        raise ValueError(f"sampling must be one of {SAMPLING_MODES}, got {sampling!r}")
    if not (math.isfinite(temperature) and temperature > 0):  # inf or NaN makes -inf entries NaN: one gets drawn
        raise ValueError(f"temperature must be a finite number > 0, got {temperature}")
    scaled = logits.float() / temperature
    if sampling == "gumbel":
        u = torch.rand(scaled.shape, device=scaled.device, generator=generator).clamp(min=1e-20)
        gumbel = -torch.log((-torch.log(u)).clamp(min=1e-20))
        return (scaled + gumbel).argmax(dim=-1)
    probs = torch.softmax(scaled, dim=-1).reshape(-1, scaled.shape[-1])
    return torch.multinomial(probs, 1, generator=generator).reshape(scaled.shape[:-1])
