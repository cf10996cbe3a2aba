"""Helpers that write small datasets in the standard layout for the data tests, and a stand-in window dataset."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch

from utils.normalization import load_mean_std

WHOLE = "a person walks forward.#a/DET person/NOUN walk/VERB forward/ADV#0.0#0.0"


def write_dataset(root: Path, lengths: dict[str, int], splits: dict[str, list[str]], dim: int = 263,
                  texts: dict[str, list[str]] | None = None, seed: int = 0, stats_dim: int | None = None,
                  dtype: type = np.float32) -> dict[str, np.ndarray]:
    """Write random (T, dim) features, captions (default: one whole-clip caption), split files and Mean/Std."""
    rng = np.random.default_rng(seed)
    (root / "new_joint_vecs").mkdir(parents=True, exist_ok=True)
    (root / "texts").mkdir(exist_ok=True)
    motions = {}
    for clip_id, length in lengths.items():
        motions[clip_id] = (rng.standard_normal((length, dim)) * 2 + 1).astype(dtype)
        np.save(root / "new_joint_vecs" / f"{clip_id}.npy", motions[clip_id])
        lines = (texts or {}).get(clip_id, [WHOLE])
        if lines is not None:
            (root / "texts" / f"{clip_id}.txt").write_text("\n".join(lines) + "\n")
    for split, ids in splits.items():
        (root / f"{split}.txt").write_text("".join(i + "\n" for i in ids))
    stats_dim = stats_dim or dim
    np.save(root / "Mean.npy", np.full(stats_dim, 1.0, dtype=np.float32))
    np.save(root / "Std.npy", np.linspace(0.5, 2.0, stats_dim).astype(np.float32))
    return motions


def stats(spec, root):
    return load_mean_std(spec, str(root))


class FakeWindows:
    """The parts of a MotionWindowDataset that ConditionedWindowDataset reads: one window per clip."""

    mode = "clip"

    def __init__(self, ids):
        self._ids = list(ids)
        self.clips = np.arange(len(ids))
        self.index = SimpleNamespace(clip_id=lambda r: self._ids[r], split="train")

    def __len__(self):
        return len(self._ids)

    def __getitem__(self, item):
        return torch.full((4, 3), float(item))
