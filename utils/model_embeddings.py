"""The model's side of an evaluation replication (``utils.eval_protocol``).

- ``checked_motion``: validates what ``motion_fn`` returned and zeroes the frames past each length, as the GT padding
  is.
- ``embed_in_chunks``: embeds the model's motion of several batches of the same frame count in evaluator calls of up
  to a given number of rows (the motion GRU runs one step at a time, so small calls leave the machine idle).
- ``ModelMemo``: remembers a deterministic model's embeddings by the content of the GT row they came from, so that
  crops drawn again in a later replication are not computed again.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from utils.datasets import EvalBatch
from utils.evaluator import EvaluatorWrapper

logger = logging.getLogger(__name__)


def checked_motion(out: Any, batch: EvalBatch, evaluator: EvaluatorWrapper,
                   what: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Validate ``motion_fn`` output and zero the frames past each length: (B, T, D) float, (B,) int64 (CPU)."""
    if not isinstance(out, (tuple, list)) or len(out) != 2:
        raise ValueError(f"{what} must return (motion (B, T, D), lengths (B,)); got {type(out).__name__}")
    motion, lengths = out
    motion = torch.as_tensor(motion)
    lengths = torch.as_tensor(lengths).reshape(-1).cpu().long()
    b = batch.motion.shape[0]
    if motion.dim() != 3 or motion.shape[0] != b or motion.shape[-1] != evaluator.dim_pose:
        raise ValueError(f"{what}: motion has shape {tuple(motion.shape)}; expected ({b}, T, {evaluator.dim_pose}) "
                         f"normalised with the evaluator statistics")
    frames = motion.shape[1]
    if lengths.shape[0] != b or int(lengths.min()) < evaluator.unit_length or int(lengths.max()) > frames:
        raise ValueError(f"{what}: lengths must be {b} values in [{evaluator.unit_length}, {frames}] (frames of the "
                         f"returned motion), got {lengths.tolist()}")
    motion = motion.detach().float()
    if not torch.isfinite(motion).all():
        raise ValueError(f"{what}: the motion holds NaN or inf values")
    valid = torch.arange(frames, device=motion.device)[None] < lengths.to(motion.device)[:, None]
    return motion * valid[..., None], lengths


def motion_embeddings(evaluator: EvaluatorWrapper, motion: torch.Tensor, lengths: torch.Tensor) -> np.ndarray:
    """The evaluator's embeddings ``(B, E)`` of ``motion (B, T, D)``, rows in input order, as a NumPy array."""
    return evaluator.get_motion_embeddings(motion, lengths, keep_input_order=True).cpu().numpy()


def embed_in_chunks(evaluator: EvaluatorWrapper, items: Sequence[tuple[torch.Tensor, torch.Tensor]],
                    max_rows: int) -> list[np.ndarray]:
    """Motion embeddings of ``items`` (``(motion (B_i, T_i, D), lengths (B_i,))`` from ``checked_motion``), one
    array ``(B_i, E)`` per item in input order, computed in evaluator calls of up to ``max_rows`` rows.

    A call joins only items of the same T: padding an item to a longer T would change what the evaluator reads. Its
    convolutions read 2-3 frames past the last movement step; at a row whose length is T that is the convolutions'
    own zero padding, but behind frames of zeros the second convolution sees the first one's response to them
    instead (a generator returns each batch at T = its longest length, and the reference embeds it so). Fewer,
    larger calls matter because the motion GRU runs one step at a time: at 32 rows its matrix products are too small
    to use the machine.
    """
    by_frames: dict[int, list[int]] = {}
    for i, (motion, _) in enumerate(items):
        by_frames.setdefault(motion.shape[1], []).append(i)
    calls: list[list[int]] = []  # item indices per evaluator call
    for indices in by_frames.values():
        calls.append([])
        for i in indices:
            if calls[-1] and sum(items[j][0].shape[0] for j in calls[-1]) + items[i][0].shape[0] > max_rows:
                calls.append([])
            calls[-1].append(i)
    out: dict[int, np.ndarray] = {}
    for call in calls:
        emb = motion_embeddings(evaluator, torch.cat([items[i][0] for i in call]),
                                torch.cat([items[i][1] for i in call]))
        out.update(zip(call, np.split(emb, np.cumsum([items[i][0].shape[0] for i in call])[:-1])))
    return [out[i] for i in range(len(items))]


class ModelMemo:
    """Motion embeddings of a deterministic ``motion_fn``, keyed by the GT row each was computed from.

    A key is the BLAKE2b digest of the row's GT motion (every frame of the padded row) and its length, so a later
    replication that draws the same crop of the same clip, which the protocol's random crops do often (about a third
    of 20 replications' rows are new), reuses the embedding instead of calling the model and
    the evaluator again. The first time a batch holds a known row, the whole batch is computed anyway and compared with
    what is remembered; a difference beyond float32 round-off means ``motion_fn`` is not deterministic, and the memo
    is switched off (with a warning) before it changed any number.
    """

    def __init__(self) -> None:
        self.embeddings: dict[Any, np.ndarray] = {}
        self.enabled = True
        self.verified = False

    @classmethod
    def disabled(cls) -> ModelMemo:
        """A memo that remembers nothing: every row is computed (a ``motion_fn`` not declared deterministic)."""
        memo = cls()
        memo.enabled = False
        return memo

    def keys(self, batch: EvalBatch, b: int) -> list[Any]:
        """One key per row: the content digest while the memo is on, else a key no other row has."""
        if not self.enabled:
            return [("row", b, i) for i in range(batch.motion.shape[0])]
        motion = batch.motion.detach().cpu().contiguous().numpy()
        return [hashlib.blake2b(motion[i].tobytes() + int(length).to_bytes(8, "little"), digest_size=16).digest()
                for i, length in enumerate(batch.m_lengths.tolist())]

    def verify(self, keys: Sequence[Any], fresh: np.ndarray) -> None:
        """Compare ``fresh`` embeddings of a batch with the remembered ones of the same rows (see the class)."""
        known = [i for i, key in enumerate(keys) if key in self.embeddings]
        before = np.stack([self.embeddings[keys[i]] for i in known])
        error = float(np.abs(fresh[known] - before).max())
        tolerance = 1e-4 * max(1.0, float(np.abs(before).max()))
        if error > tolerance:
            logger.warning("motion_fn was declared deterministic, but the same GT row gave embeddings %.3g apart "
                           "(tolerance %.3g); every row is computed from now on", error, tolerance)
            self.enabled = False
            self.embeddings.clear()
        self.verified = True


def select_rows(batch: EvalBatch, rows: Sequence[int]) -> EvalBatch:
    """The rows ``rows`` of ``batch``, in that order."""
    index = torch.as_tensor(list(rows), dtype=torch.long)
    return EvalBatch(*[field[index.to(field.device)] if isinstance(field, torch.Tensor) else [field[i] for i in rows]
                       for field in batch])
