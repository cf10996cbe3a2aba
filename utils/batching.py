"""Data order for training and evaluation: which samples form each batch, and the seed each sample is read with.

The order is a function of ``(seed, epoch)`` only (:class:`EpochBatchSampler`), and every sample seeds the host RNGs
(``random``, ``np.random``, torch CPU) from its own seed before the dataset reads it (:class:`SeededSamples`), so
random crops and caption choices do not depend on worker count, process count or interruptions. That is what lets
``utils.engine.train`` resume mid-epoch exactly and the evaluation protocol replay a replication from its seed. A
pass over a whole split in dataset order (:class:`SequentialBatchSampler`) seeds its samples the same way.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, default_collate

from utils.datasets import StackedBatch
from utils.seed import get_rng_state, seed_cpu_generators, set_rng_state


def _generator(*key: int) -> torch.Generator:
    """A torch generator seeded from ``key`` (a seed and an epoch, say) through numpy's ``SeedSequence``."""
    words = np.random.SeedSequence(list(key)).generate_state(2, np.uint32)
    return torch.Generator().manual_seed(int(words[0]) << 32 | int(words[1]))


class EpochBatchSampler:
    """Batches of ``(index, sample_seed)`` for one process and one epoch, starting at batch ``start``.

    The permutation and the per-sample seeds are functions of ``(seed, epoch)`` only. Global batch ``b`` is
    ``perm[b * batch_size:(b + 1) * batch_size]`` and process ``rank`` takes its ``rank``-th slice of
    ``batch_size // world_size``. The incomplete last global batch is dropped (as the field's loaders do).
    """

    def __init__(self, num_samples: int, batch_size: int, seed: int, epoch: int, start: int = 0, rank: int = 0,
                 world_size: int = 1) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size {batch_size} must be at least 1")
        if batch_size % world_size:
            raise ValueError(f"batch_size {batch_size} must be divisible by the number of processes {world_size}")
        self.num_batches = num_samples // batch_size
        if self.num_batches == 0:
            raise ValueError(f"the training set has {num_samples} samples, fewer than one batch of {batch_size}; "
                             f"lower --batch_size")
        generator = _generator(seed, epoch)
        self.perm = torch.randperm(num_samples, generator=generator)
        self.sample_seeds = torch.randint(0, 2**62, (num_samples,), generator=generator)
        self.batch_size, self.start = batch_size, start
        self.local = batch_size // world_size
        self.offset = rank * self.local

    def __len__(self) -> int:
        return max(self.num_batches - self.start, 0)

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        for b in range(self.start, self.num_batches):
            lo = b * self.batch_size + self.offset
            positions = range(lo, lo + self.local)
            yield [(int(self.perm[p]), int(self.sample_seeds[p])) for p in positions]


class SequentialBatchSampler:
    """Batches of ``(index, sample_seed)`` over every sample in dataset order, the last batch possibly short.

    For a pass that scores a whole split once (``evaluation_AE.py``'s reconstruction metrics): batch ``b`` holds
    samples ``b * batch_size`` onwards, and the per-sample seeds are a function of ``seed`` only.
    """

    def __init__(self, num_samples: int, batch_size: int, seed: int) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size {batch_size} must be at least 1")
        self.num_samples, self.batch_size = num_samples, batch_size
        self.sample_seeds = torch.randint(0, 2**62, (num_samples,), generator=_generator(seed))

    def __len__(self) -> int:
        return -(-self.num_samples // self.batch_size)

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        for lo in range(0, self.num_samples, self.batch_size):
            stop = min(lo + self.batch_size, self.num_samples)
            yield [(i, int(self.sample_seeds[i])) for i in range(lo, stop)]


BatchSampler = EpochBatchSampler | SequentialBatchSampler


class SeededSamples(Dataset):
    """Wraps a map-style dataset: ``[(index, seed)]`` seeds the host RNGs, then returns ``dataset[index]``."""

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: tuple[int, int]) -> Any:
        index, seed = key
        seed_cpu_generators(seed)
        return self.dataset[index]

    def __getitems__(self, keys: list[tuple[int, int]]) -> list[Any]:
        """A batch. A dataset with ``draw(index)`` (its random choices) and ``fetch(draws)`` (the batched read) is
        seeded per sample before each draw and then read once; any other is read item by item."""
        draw = getattr(self.dataset, "draw", None)
        if draw is None:
            return [self[key] for key in keys]
        draws = []
        for index, seed in keys:
            seed_cpu_generators(seed)
            draws.append(draw(index))
        return self.dataset.fetch(draws)


def collate_batch(items: list[Any]) -> Any:
    """``default_collate``, except that a batch read as one tensor (``StackedBatch``) is returned as it is rather than
    copied row by row into a new tensor (a full copy of the batch saved per step)."""
    if isinstance(items, StackedBatch):
        return items.stacked
    return default_collate(items)


class _CurrentSampler:
    """The batch sampler a persistent ``DataLoader`` holds: it iterates whichever epoch's sampler was set last."""

    def __init__(self) -> None:
        self.current: BatchSampler | None = None

    def __len__(self) -> int:
        return len(self.current) if self.current is not None else 0

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        return iter(self.current if self.current is not None else ())


class EpochLoader:
    """One ``DataLoader`` for every epoch of a run: ``epoch(sampler)`` yields the batches of ``sampler``'s epoch.

    With ``num_workers > 0`` and ``persistent`` the worker processes start once and serve all epochs instead of being
    started again for each. The ``DataLoader`` iterates its batch sampler in this process, so switching the sampler
    between epochs is enough, and workers only ever receive ``(index, seed)`` keys: the batches are exactly those of
    a fresh loader per epoch, and a run resumed mid-epoch reads the same ones. In-process loading
    (``num_workers == 0``) leaves the global RNG states as it found them.
    """

    def __init__(self, dataset: Dataset, collate_fn: Callable | None = None, num_workers: int = 0,
                 pin_memory: bool = False, persistent: bool = True) -> None:
        self.num_workers = int(num_workers)
        self._sampler = _CurrentSampler()
        # A private generator: without one, creating the iterator draws the workers' base seed from the global torch
        # RNG, so a loader built mid-epoch on resume would shift the model's random stream. Workers need no base seed
        # of their own because every sample is seeded.
        self._loader = DataLoader(SeededSamples(dataset), batch_sampler=self._sampler,
                                  collate_fn=collate_fn or collate_batch, num_workers=self.num_workers,
                                  pin_memory=pin_memory, persistent_workers=persistent and self.num_workers > 0,
                                  generator=torch.Generator().manual_seed(0))

    def epoch(self, sampler: BatchSampler) -> Iterator[Any]:
        """Yield the batches of ``sampler`` (one epoch of one process, from its ``start`` batch)."""
        self._sampler.current = sampler
        iterator = iter(self._loader)
        while True:
            # Per-sample seeding runs in this process when num_workers == 0; restore the states so the model's own
            # randomness (dropout, masking, diffusion timesteps) does not depend on how the data was loaded.
            saved = get_rng_state(include_cuda=False) if self.num_workers == 0 else None
            try:
                batch = next(iterator)
            except StopIteration:
                return
            if saved is not None:
                set_rng_state(saved)
            yield batch

    def close(self) -> None:
        """Stop the workers now rather than when the loader is garbage-collected (an exception's traceback can keep
        it alive for long)."""
        iterator = getattr(self._loader, "_iterator", None)  # the persistent iterator, once an epoch has started
        if iterator is not None and hasattr(iterator, "_shutdown_workers"):
            iterator._shutdown_workers()
        self._loader._iterator = None


def epoch_batches(dataset: Dataset, sampler: BatchSampler, collate_fn: Callable | None, num_workers: int,
                  pin_memory: bool) -> Iterator[Any]:
    """The batches of one epoch from a loader of its own (no workers kept afterwards); see ``EpochLoader``."""
    return EpochLoader(dataset, collate_fn, num_workers, pin_memory, persistent=False).epoch(sampler)
