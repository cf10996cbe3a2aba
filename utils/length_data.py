"""The length estimator's data: every (caption, motion length) pair of a split, and the in-memory dataset of caption
embeddings and length classes that ``train_length_estimator.py`` trains on."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from torch import Tensor
from torch.utils.data import Dataset

from utils.dataset_specs import DatasetSpec
from utils.datasets import MotionIndex, collect_text_samples


class CaptionLengths(NamedTuple):
    """One row per caption: ``captions`` (M strings) and the length in frames of the motion it describes (M,)."""

    captions: list[str]
    lengths: np.ndarray


def caption_lengths(spec: DatasetSpec, split: str, data_root: str | None = None,
                    progress: bool = True) -> CaptionLengths:
    """Every (caption, motion length) pair of ``split`` under the text-motion sample rules (sub-clips included,
    lengths capped at ``spec.max_motion_length``), as ``Text2MotionDataset`` would serve them uncropped."""
    index = MotionIndex.build(spec, split, data_root, progress=progress)
    samples = collect_text_samples(spec, index, data_root)
    captions: list[str] = []
    lengths: list[int] = []
    for entries, length in zip(samples.captions, samples.lengths.tolist()):
        for entry in entries:
            captions.append(entry.caption)
            lengths.append(min(int(length), spec.max_motion_length))
    if not captions:
        raise ValueError(f"{spec.name} {split}: no caption with a usable motion in {data_root or spec.root}")
    return CaptionLengths(captions, np.asarray(lengths, dtype=np.int64))


class EmbeddingClassDataset(Dataset):
    """``(text_emb (E,), class ())`` pairs held in memory: ``embeddings (M, E)`` float32, ``classes (M,)`` long."""

    def __init__(self, embeddings: Tensor, classes: Tensor) -> None:
        if embeddings.ndim != 2 or classes.shape != (embeddings.shape[0],):
            raise ValueError(f"EmbeddingClassDataset: expected embeddings (M, E) and classes (M,), got "
                             f"{tuple(embeddings.shape)} and {tuple(classes.shape)}")
        self.embeddings = embeddings.float().cpu()
        self.classes = classes.long().cpu()

    def __len__(self) -> int:
        return self.classes.shape[0]

    def __getitem__(self, item: int) -> tuple[Tensor, Tensor]:
        return self.embeddings[item], self.classes[item]
