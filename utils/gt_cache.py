"""The cache of GT embeddings per evaluation replication: the text and GT-motion embeddings of a replication depend
only on the evaluator, the test data and the replication seed, so they are computed once and reused by every later
evaluation (each checkpoint of a run, each model of a table). ``utils.eval_protocol`` builds the cache keys."""

from __future__ import annotations

import logging
import os
import zipfile
from typing import NamedTuple

import numpy as np

from utils.atomic_io import atomic_write
from utils.evaluator import EvaluatorWrapper

logger = logging.getLogger(__name__)


class GTEmbeddings(NamedTuple):
    """GT embeddings of one replication, rows in batch order: text_emb (N, E), motion_emb (N, E), and the batches'
    m_lengths (N,) and sent_lens (N,) that validate the entry against the data."""

    text_emb: np.ndarray
    motion_emb: np.ndarray
    m_lengths: np.ndarray
    sent_lens: np.ndarray


class GTCache:
    """GT embeddings per (cache key, replication seed) as ``<folder>/gt_<key[:16]>_seed<seed>.npz``."""

    def __init__(self, folder: str) -> None:
        self.folder = folder
        self._write_failed = False

    def path(self, key: str, seed: int) -> str:
        """File of the entry for ``key`` and replication ``seed``."""
        return os.path.join(self.folder, f"gt_{key[:16]}_seed{int(seed)}.npz")

    def load(self, key: str, seed: int) -> GTEmbeddings | None:
        """The cached entry, or None when absent or unreadable or written under another key."""
        path = self.path(key, seed)
        if not os.path.isfile(path):
            return None
        try:
            with np.load(path, allow_pickle=False) as data:
                if str(data["key"]) != key:
                    return None
                return GTEmbeddings(*(data[name] for name in GTEmbeddings._fields))
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as e:  # torn or bit-flipped
            logger.warning("GT cache %s is unreadable (%s); recomputing", path, e)
            return None

    def save(self, key: str, seed: int, emb: GTEmbeddings) -> None:
        """Write atomically; an unwritable folder (a read-only evaluator download) only disables caching."""
        if self._write_failed:
            return
        try:
            os.makedirs(self.folder, exist_ok=True)
            with atomic_write(self.path(key, seed), "wb") as f:
                np.savez(f, key=np.array(key), **emb._asdict())
        except OSError as e:
            self._write_failed = True
            logger.warning("cannot write the GT embedding cache in %s (%s); continuing without it", self.folder, e)


def default_gt_cache(evaluator: EvaluatorWrapper) -> GTCache | None:
    """``<evaluator run>/gt_cache`` next to the evaluator's ``model/`` folder; None for an unsaved evaluator."""
    if not evaluator.path:
        return None
    model_dir = os.path.dirname(os.path.abspath(evaluator.path))
    return GTCache(os.path.join(os.path.dirname(model_dir), "gt_cache"))
