"""One long motion from a sequence of prompts: segments generated on their own, then joined by in-betweening.

The generators are trained on clips of at most ``max_frames`` (196 frames on HumanML3D), and concatenating
motions generated for each prompt jumps at every seam. Here each segment is first generated from its own prompt, then
every seam is in-betweened: the tokens on either side of it (``transition_frames`` in all, half before and half
after) are generated again from the next segment's prompt with the tokens around them known and kept, as in editing,
in a window of at most the tokens the model was trained on, centred on the seam. The model sees where the motion comes
from and where it goes, and bridges them. Every segment keeps at least half of its own tokens. The whole token
sequence is decoded at once at the end: the decoder is convolutional and the features are root velocities, so the
root trajectory runs on continuously and the motion may be longer than ``max_frames``.

Continuing each segment from the end of the last (a known prefix only) was tried first and made the seams worse on
the quick pipeline's FSQ-MARDM (README, "Long motions"); ``transition_frames`` 0 joins the segments as generated.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from utils.generation import GeneratedBatch

if TYPE_CHECKING:
    from utils.generation import MotionGenerator

DEFAULT_TRANSITION_SECONDS = 2.0

logger = logging.getLogger(__name__)


@dataclass
class SequenceBatch(GeneratedBatch):
    """One motion made of segments: a ``GeneratedBatch`` of one sample (``texts`` holds the segment prompts joined
    with " / "), plus ``prompts``, ``segments`` [(start, end) frames] per prompt in the motion and ``transitions``
    [(start, end) frames] per seam, the frames generated again to join the segments (empty spans where none was)."""

    prompts: list[str]
    segments: list[tuple[int, int]]
    transitions: list[tuple[int, int]]


@torch.no_grad()
def generate_sequence(model: MotionGenerator, texts: list[str], lengths_frames: list[int] | Tensor | None = None,
                      transition_frames: int | None = None, time_steps: int | None = None, cfg: float | None = None,
                      temperature: float = 1.0, seed: int | None = None, generator: torch.Generator | None = None,
                      snap: bool = True, **options: Any) -> SequenceBatch:
    """Generate one motion whose consecutive segments follow ``texts``.

    Args:
        model: a loaded ``MotionGenerator``.
        texts: the segment prompts, in order (at least one).
        lengths_frames: each segment's length in frames (rounded down to whole tokens, clamped to ``max_frames``);
            None samples every length with the length estimator.
        transition_frames: frames around each seam generated again to join the segments, half before it and half
            after (whole tokens, the later half rounded up; None: ``DEFAULT_TRANSITION_SECONDS`` at the dataset's fps;
            0: the segments are joined as generated).
        time_steps, cfg, temperature, seed, generator, snap, options: as ``MotionGenerator.generate``. The segments
            and then the transitions draw from one random stream, in order (after the lengths when they are
            sampled); with ``lengths_frames`` given, the first segment is the first prompt's plain generation.

    A transition capped so that its segments keep half of their tokens is said in one warning per call, with the
    frames asked and those used at each such seam (``SequenceBatch.transitions`` holds every seam's).
    """
    if isinstance(texts, str):
        raise TypeError("texts must be a list of prompts, got a single string")
    texts = [str(t) for t in texts]
    if not texts or not all(t.strip() for t in texts):
        raise ValueError(f"a sequence needs at least one prompt and no empty ones, got {texts}")
    settings = model.sampling_settings(time_steps, cfg, temperature, snap, **options)
    generator = model._seeded(seed, generator)
    unit = model.unit_length
    frames = model.estimate_lengths(texts, generator) if lengths_frames is None \
        else model.round_lengths(lengths_frames)
    if frames.shape[0] != len(texts):
        raise ValueError(f"{len(texts)} prompts but {frames.shape[0]} lengths")
    if transition_frames is None:
        transition_frames = round(DEFAULT_TRANSITION_SECONDS * model.spec.fps)
    if transition_frames < 0:
        raise ValueError(f"transition_frames must be >= 0, got {transition_frames}")
    transition_tokens = int(transition_frames) // unit
    max_tokens = model.max_frames // unit
    device = model.device

    # One prompt per call, as generate() encodes it.
    embeddings = [model.text_encoder.encode([t]).to(device) for t in texts]
    counts = (frames // unit).tolist()
    pieces = [model.backend.sample_tokens(emb, torch.tensor([n], device=device), settings, generator)
              for emb, n in zip(embeddings, counts)]
    tokens = torch.cat(pieces, dim=1)
    starts = [0, *torch.cumsum(torch.tensor(counts), 0).tolist()]
    transitions = []
    shortened = []

    def share(j: int) -> int:
        # The tokens segment j may give to one seam: half at either end of the sequence, a quarter in the middle
        # (two seams), so that every segment keeps at least half of its own tokens.
        return counts[j] // (2 if j in (0, len(counts) - 1) else 4)

    for i in range(1, len(counts)):
        seam = starts[i]
        before = min(transition_tokens // 2, share(i - 1))
        after = min(transition_tokens - transition_tokens // 2, share(i))
        if before + after < transition_tokens:
            shortened.append(f"{(before + after) * unit} frames at the seam at frame {seam * unit}")
        if before + after == 0:
            transitions.append((seam * unit, seam * unit))
            continue
        # The window: centred on the seam, inside the two segments, at most max_tokens.
        lo = max(starts[i - 1], seam - max_tokens // 2)
        hi = min(starts[i + 1], lo + max_tokens)
        lo = max(starts[i - 1], min(lo, hi - max_tokens))
        edit_mask = torch.zeros(1, hi - lo, dtype=torch.bool, device=device)
        edit_mask[:, seam - before - lo:seam + after - lo] = True
        window = model.backend.sample_tokens(embeddings[i], torch.tensor([hi - lo], device=device), settings,
                                             generator, known=tokens[:, lo:hi], edit_mask=edit_mask)
        tokens = tokens.clone()
        tokens[:, lo:hi] = window
        transitions.append(((seam - before) * unit, (seam + after) * unit))

    if shortened:
        logger.warning("transitions of %d frames asked, shortened so that every segment keeps at least half of its "
                       "own tokens: %s", transition_tokens * unit, ", ".join(shortened))
    motion = model.decode(tokens, torch.tensor([starts[-1]]), settings.snap)
    segments = [(a * unit, b * unit) for a, b in zip(starts[:-1], starts[1:])]
    return SequenceBatch(texts=[" / ".join(texts)], features=model.denormalize(motion), features_normalised=motion,
                         lengths=torch.tensor([starts[-1] * unit]), tokens=tokens, spec=model.spec, prompts=texts,
                         segments=segments, transitions=transitions)
