"""Motion and text-motion datasets over the standard dataset layout.

A dataset root holds::

    new_joint_vecs/<id>.npy   (T, file_dim) float features
    texts/<id>.txt            lines ``caption#word/POS word/POS ...#f_tag#to_tag``
    train.txt val.txt test.txt  one id per line
    Mean.npy Std.npy          (file_dim,) or (dim_pose,)

All motions of a split are read once into a memory-mapped corpus (``MotionIndex``, cached under ``<root>/.cache/``),
so the datasets below hold only index arrays and per-sample records, never per-clip arrays in Python lists:

- ``MotionWindowDataset``: fixed windows for tokenizer training and validation losses;
- ``Text2MotionDataset``: (caption, padded motion, length) for generator training;
- ``Text2MotionEvalDataset``: the Guo et al. evaluation dataset (word vectors, POS one-hots, crops).

Randomness (windows, captions, crop lengths and offsets) is drawn from torch's default generator. A plain
``DataLoader`` seeds it per worker from the main process's generator, so its draws depend on ``num_workers``; the
project's loaders (training, the evaluation protocol, ``evaluation_AE.py``'s reconstruction pass) seed it per sample
instead (``utils.batching``), so theirs do not. The reference loaders draw from Python's ``random`` and numpy, with
the same distributions.
"""

from __future__ import annotations

import logging
import os
import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
import torch
from torch.utils.data import Dataset

from utils.dataset_specs import DatasetSpec
from utils.motion_files import (
    TEXT_DIR,
    SkipLog,
    TextEntry,
    load_motion,
    motion_path,
    read_split,
    read_texts,
    scan_motion,
    scan_texts,
    text_path,
)
from utils.motion_index import MotionIndex
from utils.normalization import DatasetError
from utils.word_vectorizer import split_token

logger = logging.getLogger(__name__)

__all__ = [
    "DatasetError", "TextEntry", "read_split", "read_texts", "scan_texts", "load_motion", "scan_motion",
    "motion_path", "text_path", "SkipLog", "MotionIndex", "MotionWindowDataset", "TextSamples",
    "collect_text_samples", "max_sample_length", "Text2MotionDataset", "Text2MotionEvalDataset", "sentence_tokens",
    "TextMotionItem", "TextMotionBatch", "EvalItem", "EvalBatch", "collate_text_motion", "collate_eval", "WINDOW_MODES",
]

# The reference names a sub-clip "<random letter>_<id>" with a letter drawn from these 23.
SUBCLIP_LETTERS = "ABCDEFGHIJKLMNOPQRSTUVW"
WINDOW_MODES = ("random", "first", "all")


# ---------------------------------------------------------------------------------------------------------------------
# Tokenizer windows
# ---------------------------------------------------------------------------------------------------------------------

def _check_stats(mean: np.ndarray, std: np.ndarray, spec: DatasetSpec, what: str) -> tuple[np.ndarray, np.ndarray]:
    mean = np.asarray(mean, dtype=np.float32)
    std = np.asarray(std, dtype=np.float32)
    if mean.shape != (spec.dim_pose,) or std.shape != (spec.dim_pose,):
        raise ValueError(f"{what}: mean {mean.shape} and std {std.shape}; expected ({spec.dim_pose},) for dataset "
                         f"{spec.name!r} (use utils.normalization.load_mean_std)")
    return mean, std


def _randint(high: int) -> int:
    """Uniform integer in [0, high) from torch's default generator."""
    return int(torch.randint(high, (1,)).item())


def _batch_buffer(shape: tuple[int, ...], shared: bool) -> torch.Tensor:
    """An uninitialised float32 tensor (whatever torch's default dtype), in shared memory if ``shared``."""
    if not shared:
        return torch.empty(shape, dtype=torch.float32)
    storage = torch.UntypedStorage._new_shared(int(np.prod(shape)) * torch.float32.itemsize)
    return torch.empty(0, dtype=torch.float32).set_(storage, 0, shape)


class StackedBatch(list):
    """The items of a batch that was read as one tensor: a list of its rows (views), plus ``stacked``, the
    ``(B, ...)`` tensor itself, so that collation can hand it on instead of copying the rows into a new one
    (``utils.engine`` does; any other consumer sees a plain list of tensors)."""

    def __init__(self, stacked: torch.Tensor) -> None:
        super().__init__(stacked.unbind(0))
        self.stacked = stacked


class MotionWindowDataset(Dataset):
    """Fixed-length windows for tokenizer training: item i is a normalised float32 tensor (window_size, D).

    ``mode`` picks the windows:

    - ``"random"`` (training): one item per clip; item i is a uniformly random window of clip i, a fresh offset on
      every access (T2M-GPT / MotionMillion style: an epoch visits each clip once).
    - ``"first"``: the first window of every clip (deterministic validation).
    - ``"all"``: every window starting at multiples of ``stride`` (default ``window_size``; deterministic). With
      ``stride=1`` this is the MoMask/MARDM epoch of all windows; unlike theirs it includes the last start.

    Clips shorter than the window are skipped and reported once with their count and first ids.
    """

    def __init__(self, spec: DatasetSpec, split: str, mean: np.ndarray, std: np.ndarray,
                 window_size: int | None = None, data_root: str | None = None, *, mode: str = "random",
                 stride: int | None = None, cache_dir: str | None = None, index: MotionIndex | None = None,
                 progress: bool = True) -> None:
        if mode not in WINDOW_MODES:
            raise ValueError(f"MotionWindowDataset: mode {mode!r}; expected one of {WINDOW_MODES}")
        self.spec = spec
        # None means the default; 0 is a bad value, caught below (not silently replaced by the default)
        self.window_size = int(spec.window_size if window_size is None else window_size)
        self.mode = mode
        self.stride = int(self.window_size if stride is None else stride)
        if self.window_size < 1 or self.stride < 1:
            raise ValueError(f"MotionWindowDataset: window_size {self.window_size} and stride {self.stride} must be "
                             f">= 1")
        self.mean, self.std = _check_stats(mean, std, spec, "MotionWindowDataset")
        self._mean_t, self._std_t = torch.tensor(self.mean), torch.tensor(self.std)
        self.index = index or MotionIndex.build(spec, split, data_root, cache_dir=cache_dir, progress=progress)
        self.skipped = SkipLog()
        short = np.flatnonzero(self.index.lengths < self.window_size)
        for i in short:
            self.skipped.add(f"clips shorter than the {self.window_size}-frame window", self.index.clip_id(int(i)))
        self.clips = np.flatnonzero(self.index.lengths >= self.window_size)
        self.skipped.report(f"{spec.name} {split} windows")
        if self.clips.size == 0:
            raise DatasetError(f"{spec.name} {split}: no clip has {self.window_size} frames or more; expected some "
                               f"clips at least as long as the window", kind="too_short",
                               path=data_root or spec.root)
        # "all": window counts per clip and their cumulative starts, to map an item to (clip, offset) by bisection.
        counts = (self.index.lengths[self.clips] - self.window_size) // self.stride + 1
        self._first_item = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)

    def __len__(self) -> int:
        if self.mode == "all":
            return int(self._first_item[-1])
        return int(self.clips.size)

    def draw(self, item: int) -> tuple[int, int]:
        """The random part of item ``item``: ``(index row, first frame)`` of its window (``random`` mode draws the
        offset from torch's default generator; the other modes are deterministic)."""
        if not 0 <= item < len(self):
            raise IndexError(f"window {item} out of range for {len(self)} items")
        if self.mode == "all":
            k = int(np.searchsorted(self._first_item, item, side="right")) - 1
            offset = (item - int(self._first_item[k])) * self.stride
        else:
            k = item
            spare = int(self.index.lengths[self.clips[k]]) - self.window_size
            offset = _randint(spare + 1) if self.mode == "random" else 0
        return int(self.clips[k]), offset

    def fetch(self, windows: Sequence[tuple[int, int]], shared: bool | None = None) -> StackedBatch:
        """Normalised windows ``(window_size, D)`` for ``draw`` results, read from the memory map in one gather and
        normalised in place (per window, the work is Python overhead; per batch it is a copy).

        ``shared`` (default: inside a ``DataLoader`` worker) puts the batch in shared memory from the start, so that
        handing it to the main process copies nothing, as torch's ``default_collate`` does with its stacked batches."""
        rows = np.fromiter((row for row, _ in windows), dtype=np.int64, count=len(windows))
        starts = self.index.offsets[rows] + np.fromiter((o for _, o in windows), dtype=np.int64, count=len(windows))
        motion = self.index.motion
        if starts.size and (starts.min() < 0 or starts.max() + self.window_size > motion.shape[0]):
            raise IndexError(f"MotionWindowDataset.fetch: a window runs outside the {motion.shape[0]} frames of the "
                             f"index in {self.index.folder}")
        frames = (starts[:, None] + np.arange(self.window_size)).reshape(-1)
        dim = self.spec.dim_pose
        if shared is None:
            shared = torch.utils.data.get_worker_info() is not None
        batch = _batch_buffer((len(windows), self.window_size, dim), shared)
        # A row gather straight into the batch: faster than fancy indexing on the memory map, and no copy after it.
        # mode="clip" only spares numpy a buffer: the bounds were checked above.
        np.take(motion if motion.shape[1] == dim else motion[:, :dim], frames, axis=0,
                out=batch.numpy().reshape(-1, dim), mode="clip")
        # torch's vectorised in-place passes, bit for bit numpy's (x - mean) / std, in about half the time
        batch.sub_(self._mean_t).div_(self._std_t)
        return StackedBatch(batch)

    def __getitem__(self, item: int) -> torch.Tensor:
        # one window, which a collate function copies into its batch anyway: no shared memory for it
        return self.fetch([self.draw(item)], shared=False)[0]

    def __getitems__(self, items: Sequence[int]) -> list[torch.Tensor]:
        """A batch of items (the ``DataLoader`` calls this instead of ``__getitem__`` per item)."""
        return self.fetch([self.draw(item) for item in items])


# ---------------------------------------------------------------------------------------------------------------------
# Text-motion samples
# ---------------------------------------------------------------------------------------------------------------------

@dataclass
class TextSamples:
    """Text-motion samples sorted by length: sample j is frames ``[starts[j], stops[j])`` of index row ``rows[j]``,
    named ``names[j]`` (the clip id, or ``<letter>_<id>`` for a sub-clip) with its ``captions[j]``."""

    rows: np.ndarray
    starts: np.ndarray
    stops: np.ndarray
    names: list[str]
    captions: list[list[TextEntry]]
    skipped: SkipLog

    @property
    def lengths(self) -> np.ndarray:
        return self.stops - self.starts

    def __len__(self) -> int:
        return len(self.names)


def _subclip_name(rng: random.Random, used: set[str], clip_id: str) -> str:
    # The reference redraws a letter until the name is new; once all 23 letters are taken it would loop forever,
    # so further sub-clips get a numbered letter instead.
    if len(used) < len(SUBCLIP_LETTERS):
        while True:
            name = f"{rng.choice(SUBCLIP_LETTERS)}_{clip_id}"
            if name not in used:
                return name
    n = len(used)
    return f"{SUBCLIP_LETTERS[n % len(SUBCLIP_LETTERS)]}{n // len(SUBCLIP_LETTERS)}_{clip_id}"


def max_sample_length(spec: DatasetSpec) -> int:
    """Exclusive upper bound on a sample's frames: ``max_motion_length + unit_length`` (the reference's 200 for
    HumanML3D/KIT), so that a length rounded down to ``unit_length`` never exceeds ``max_motion_length``."""
    return spec.max_motion_length + spec.unit_length


# Skip reasons of clips that are left out for lack of captions only.
CAPTION_SKIPS = ("clips with an empty caption file", "clips without a caption file")


def collect_text_samples(spec: DatasetSpec, index: MotionIndex, data_root: str | None = None,
                         require_tokens: bool = False, captions_optional: bool = False) -> TextSamples:
    """The text-motion samples of ``index``'s clips, following the reference rules (section 4.5 of the notes).

    - A clip is used only if ``spec.min_motion_length <= T < max_sample_length(spec)``; otherwise it is skipped with
      its sub-clips (the reference filters the clip before reading its captions).
    - A caption with ``f_tag == to_tag == 0`` describes the whole clip; the whole clip is a sample only if it has at
      least one such caption, so a clip with only sub-clip captions is dropped as a whole.
    - Any other caption is its own sample: frames ``[int(f_tag * text_fps), int(to_tag * text_fps))`` (text_fps is 20
      even for KIT, as in every reference loader), kept only if its length passes the same bounds, named
      ``<letter>_<id>`` with the letter drawn from a generator seeded by the id (the reference draws it from the
      global RNG, which only changes names).
    - Clips without a caption file or with no caption are skipped (with ``captions_optional`` they are whole-clip
      samples without captions); with ``require_tokens`` captions without tokens are skipped too. All skips are
      counted in ``skipped`` (not logged here).

    Samples come sorted by length, stable, with each clip's sub-clips before the clip itself, as in the reference.
    """
    root = data_root or spec.root
    lo, hi = spec.min_motion_length, max_sample_length(spec)
    skipped = SkipLog()
    samples: list[tuple[int, int, int, str, list[TextEntry]]] = []
    for row in range(len(index)):
        clip_id = index.clip_id(row)
        length = int(index.lengths[row])
        if not lo <= length < hi:
            skipped.add(f"clips outside {lo} <= frames < {hi}", clip_id)
            continue
        path = text_path(root, clip_id)
        entries = read_texts(path) if os.path.isfile(path) else []
        if not entries:
            if captions_optional:
                samples.append((row, 0, length, clip_id, []))
            else:
                skipped.add(CAPTION_SKIPS[0] if os.path.isfile(path) else CAPTION_SKIPS[1], clip_id)
            continue
        whole: list[TextEntry] = []
        used: set[str] = set()
        rng = random.Random(clip_id)
        for entry in entries:
            if require_tokens and not entry.tokens:
                skipped.add("captions without tokens", clip_id)
                continue
            if require_tokens:  # the evaluator reads every token; a bad one would fail mid-evaluation, unnamed
                for token in entry.tokens:
                    try:
                        split_token(token)
                    except ValueError as e:
                        raise DatasetError(f"{path}: caption {entry.caption!r}: {e}", kind="malformed_text",
                                           path=path) from e
            if entry.f_tag == 0.0 and entry.to_tag == 0.0:
                whole.append(entry)
                continue
            start = int(entry.f_tag * spec.text_fps)
            stop = min(int(entry.to_tag * spec.text_fps), length)
            if not lo <= stop - start < hi:
                skipped.add(f"sub-clips outside {lo} <= frames < {hi}", clip_id)
                continue
            name = _subclip_name(rng, used, clip_id)
            used.add(name)
            samples.append((row, start, stop, name, [entry]))
        if whole:
            samples.append((row, 0, length, clip_id, whole))
    samples.sort(key=lambda s: s[2] - s[1])  # stable: ties keep the reference's insertion order
    bounds = np.asarray([s[:3] for s in samples], dtype=np.int64).reshape(-1, 3)
    return TextSamples(rows=bounds[:, 0].copy(), starts=bounds[:, 1].copy(), stops=bounds[:, 2].copy(),
                       names=[s[3] for s in samples], captions=[s[4] for s in samples], skipped=skipped)


def _crop_length(length: int, unit_length: int, max_length: int) -> int:
    """The reference's training/evaluation crop: round down to a multiple of unit_length, and with probability 1/3
    (only when unit_length < 10) one unit less."""
    units = length // unit_length
    if unit_length < 10 and units > 1 and _randint(3) == 2:
        units -= 1
    return min(units * unit_length, (max_length // unit_length) * unit_length)


class TextMotionItem(NamedTuple):
    """One generator training sample: caption, motion (max_motion_length, D) normalised and zero-padded, length."""

    caption: str
    motion: torch.Tensor
    length: int


class _TextMotionBase(Dataset):
    def __init__(self, spec: DatasetSpec, split: str, mean: np.ndarray, std: np.ndarray, data_root: str | None,
                 unit_length: int | None, cache_dir: str | None, index: MotionIndex | None, require_tokens: bool,
                 progress: bool, captions_optional: bool = False) -> None:
        self.spec = spec
        self.split = split
        # None means the spec's; 0 is a bad value, caught below (not silently replaced by the default)
        self.unit_length = int(spec.unit_length if unit_length is None else unit_length)
        self.max_motion_length = spec.max_motion_length
        if not 1 <= self.unit_length <= self.max_motion_length:
            raise ValueError(f"{type(self).__name__}: unit_length {self.unit_length}; expected 1 to "
                             f"{self.max_motion_length} (max_motion_length), or None for the spec's "
                             f"{spec.unit_length}")
        self.mean, self.std = _check_stats(mean, std, spec, type(self).__name__)
        self.index = index or MotionIndex.build(spec, split, data_root, cache_dir=cache_dir, progress=progress)
        self.samples = collect_text_samples(spec, self.index, data_root, require_tokens=require_tokens,
                                            captions_optional=captions_optional)
        self.skipped = self.samples.skipped
        self.skipped.report(f"{spec.name} {split} {type(self).__name__}")
        if len(self.samples) == 0:
            raise DatasetError(f"{spec.name} {split}: no text-motion sample left ({self.skipped.summary() or 'none'}); "
                               f"expected clips of {spec.min_motion_length} to {max_sample_length(spec) - 1} frames "
                               f"with captions in {os.path.join(data_root or spec.root, TEXT_DIR)}",
                               kind="no_captions" if set(self.skipped.counts) & set(CAPTION_SKIPS) else "empty_split",
                               path=data_root or spec.root)

    def _motion(self, j: int) -> tuple[torch.Tensor, int]:
        """Randomly cropped, normalised and zero-padded motion (max_motion_length, D) of sample j, and its length."""
        start, stop = int(self.samples.starts[j]), int(self.samples.stops[j])
        m_length = _crop_length(stop - start, self.unit_length, self.max_motion_length)
        offset = start + _randint(stop - start - m_length + 1)
        frames = self.index.clip(int(self.samples.rows[j]), offset, offset + m_length, self.spec.dim_pose)
        motion = np.zeros((self.max_motion_length, self.spec.dim_pose), dtype=np.float32)
        motion[:m_length] = (frames - self.mean) / self.std  # padding stays zero in normalised space
        return torch.from_numpy(motion), m_length


class Text2MotionDataset(_TextMotionBase):
    """Generator training samples: ``TextMotionItem(caption, motion (max_motion_length, D), length)``.

    Per access: a random caption of the sample, a length rounded down to ``unit_length`` (one unit less with
    probability 1/3, as the reference), a random offset, z-normalised with (mean, std), zero-padded. With
    ``captions_optional`` clips without captions are samples too, with the caption "" (for a tokenizer's
    reconstruction, which needs no text).
    """

    def __init__(self, spec: DatasetSpec, split: str, mean: np.ndarray, std: np.ndarray, data_root: str | None = None,
                 unit_length: int | None = None, *, cache_dir: str | None = None, index: MotionIndex | None = None,
                 progress: bool = True, captions_optional: bool = False) -> None:
        super().__init__(spec, split, mean, std, data_root, unit_length, cache_dir, index, require_tokens=False,
                         progress=progress, captions_optional=captions_optional)

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, item: int) -> TextMotionItem:
        captions = self.samples.captions[item]
        caption = captions[_randint(len(captions))].caption if captions else ""
        motion, m_length = self._motion(item)
        return TextMotionItem(caption, motion, m_length)


def sentence_tokens(tokens: Sequence[str], max_text_len: int = 20) -> tuple[list[str], int]:
    """The evaluator's sentence: (max_text_len + 2 tokens, sent_len).

    Shorter sentences become ``sos + tokens + eos`` padded with ``unk/OTHER``; longer ones are cropped to
    ``max_text_len`` tokens before adding sos/eos (sent_len = max_text_len + 2).
    """
    tokens = list(tokens)
    if len(tokens) < max_text_len:
        tokens = ["sos/OTHER"] + tokens + ["eos/OTHER"]
        sent_len = len(tokens)
        tokens += ["unk/OTHER"] * (max_text_len + 2 - sent_len)
    else:
        tokens = ["sos/OTHER"] + tokens[:max_text_len] + ["eos/OTHER"]
        sent_len = len(tokens)
    return tokens, sent_len


class EvalItem(NamedTuple):
    """One evaluation sample; shapes for max_text_len 20: word_embs (22, E), pos_ohot (22, P), motion (T, D)."""

    word_embs: torch.Tensor
    pos_ohot: torch.Tensor
    caption: str
    sent_len: int
    motion: torch.Tensor
    m_length: int
    tokens: str


class Text2MotionEvalDataset(_TextMotionBase):
    """The Guo et al. evaluation dataset (Text2MotionDatasetV2): ``EvalItem`` per access.

    Samples are sorted by length; ``reset_max_len(n)`` hides those shorter than n frames. Each access draws a
    caption, builds its sentence (``sentence_tokens``) through ``word_vectorizer[token] -> (word_vec (E,),
    pos_onehot (P,))``, crops the motion as the training dataset does, normalises with the evaluator (mean, std) and
    zero-pads it to ``max_motion_length``. ``tokens`` is the sentence joined with ``_``. Captions without tokens are
    skipped and counted. Batch with ``collate_eval``.
    """

    def __init__(self, spec: DatasetSpec, split: str, mean: np.ndarray, std: np.ndarray, word_vectorizer: Any,
                 data_root: str | None = None, max_text_len: int = 20, unit_length: int | None = None, *,
                 cache_dir: str | None = None, index: MotionIndex | None = None, progress: bool = True) -> None:
        super().__init__(spec, split, mean, std, data_root, unit_length, cache_dir, index, require_tokens=True,
                         progress=progress)
        self.word_vectorizer = word_vectorizer
        self.max_text_len = int(max_text_len)
        self.pointer = 0
        self.max_length = 0

    def reset_max_len(self, length: int) -> None:
        """Serve only samples of at least ``length`` frames (the reference's pointer into the sorted samples)."""
        if length > self.max_motion_length:
            raise ValueError(f"reset_max_len: {length} exceeds max_motion_length {self.max_motion_length}")
        self.pointer = int(np.searchsorted(self.samples.lengths, length, side="left"))
        self.max_length = length
        logger.info("%s %s evaluation samples from %d (length >= %d): %d left", self.spec.name, self.split,
                    self.pointer, length, len(self))

    def __len__(self) -> int:
        return len(self.samples) - self.pointer

    def __getitem__(self, item: int) -> EvalItem:
        if not 0 <= item < len(self):
            raise IndexError(f"sample {item} out of range for {len(self)} samples")
        j = self.pointer + item
        captions = self.samples.captions[j]
        entry = captions[_randint(len(captions))]
        tokens, sent_len = sentence_tokens(entry.tokens, self.max_text_len)
        vectors = [self.word_vectorizer[token] for token in tokens]
        word_embs = torch.from_numpy(np.stack([np.asarray(v[0], dtype=np.float32) for v in vectors]))
        pos_ohot = torch.from_numpy(np.stack([np.asarray(v[1], dtype=np.float32) for v in vectors]))
        motion, m_length = self._motion(j)
        return EvalItem(word_embs, pos_ohot, entry.caption, sent_len, motion, m_length, "_".join(tokens))


# ---------------------------------------------------------------------------------------------------------------------
# Collate
# ---------------------------------------------------------------------------------------------------------------------

class TextMotionBatch(NamedTuple):
    """captions: B strings; motion (B, T, D) float32; lengths (B,) int64."""

    captions: list[str]
    motion: torch.Tensor
    lengths: torch.Tensor


def collate_text_motion(batch: Sequence[TextMotionItem]) -> TextMotionBatch:
    """Stack ``Text2MotionDataset`` items into a ``TextMotionBatch`` (order kept)."""
    return TextMotionBatch([b[0] for b in batch], torch.stack([b[1] for b in batch]),
                           torch.tensor([b[2] for b in batch], dtype=torch.long))


class EvalBatch(NamedTuple):
    """word_embs (B, S, E), pos_ohot (B, S, P), captions, sent_lens (B,), motion (B, T, D), m_lengths (B,), tokens."""

    word_embs: torch.Tensor
    pos_ohot: torch.Tensor
    captions: list[str]
    sent_lens: torch.Tensor
    motion: torch.Tensor
    m_lengths: torch.Tensor
    tokens: list[str]


def collate_eval(batch: Sequence[EvalItem]) -> EvalBatch:
    """Stack ``Text2MotionEvalDataset`` items sorted by sent_len descending (stable), as the evaluator's text
    encoder packs sequences in that order."""
    batch = sorted(batch, key=lambda b: b[3], reverse=True)
    return EvalBatch(torch.stack([b[0] for b in batch]), torch.stack([b[1] for b in batch]), [b[2] for b in batch],
                     torch.tensor([b[3] for b in batch], dtype=torch.long), torch.stack([b[4] for b in batch]),
                     torch.tensor([b[5] for b in batch], dtype=torch.long), [b[6] for b in batch])
