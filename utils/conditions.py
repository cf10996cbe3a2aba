"""Per-clip condition labels (species, gender, ...) for conditional tokenizers, and the window dataset that serves them.

``<data_root>/conditions.json`` maps clip ids to their labels::

    {"000000": {"species": "human", "gender": "female"}, "000001": {"species": "dog", "gender": "male"}, ...}

Each condition name gets a vocabulary: ``"<unk>"`` at index 0, then the values found in the file, sorted, so the ids
do not depend on the order of the file; training keeps only the values of its training clips (``training_labels``).
Index 0 is what a clip without that label (or a model called without conditions) gets. Checkpoints store the
vocabularies (``ConditionLabels.to_dict``) so inference maps labels to the ids the model was trained with.

``ConditionedWindowDataset`` wraps a ``MotionWindowDataset``: item i is ``ConditionedWindow(motion (T, D), cond_ids
(C,))`` with the labels of the clip the window came from; ``CollateConditions`` batches items into
``ConditionedBatch(motion (B, T, D), cond {name: (B,)})``, the ``cond`` that ``models.part_aware`` takes.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.data import Dataset

from utils.atomic_io import atomic_write
from utils.dataset_specs import DatasetSpec
from utils.datasets import MotionWindowDataset
from utils.losses import tokenizer_loss
from utils.normalization import DatasetError

CONDITIONS_FILE = "conditions.json"
UNKNOWN = "<unk>"
_EXAMPLES = 5


@dataclass(frozen=True)
class ConditionLabels:
    """Condition names (in id order), their vocabularies (``UNKNOWN`` first) and the labels of every clip."""

    names: tuple[str, ...]
    vocabularies: dict[str, tuple[str, ...]]
    labels: dict[str, dict[str, str]] = field(default_factory=dict)
    source: str = "<memory>"

    def vocab_sizes(self) -> dict[str, int]:
        """Name -> vocabulary size (the ``conditions`` argument of ``PartAwareRVQVAE``)."""
        return {name: len(self.vocabularies[name]) for name in self.names}

    def encode(self, values: Mapping[str, str]) -> dict[str, int]:
        """Labels ``{name: value}`` -> ids ``{name: id}``; absent names give 0, an unknown value is a ValueError."""
        extra = sorted(set(values) - set(self.names))
        if extra:
            raise ValueError(f"{self.source}: unknown condition names {extra}; expected a subset of {list(self.names)}")
        ids = {}
        for name in self.names:
            value = values.get(name, UNKNOWN)
            vocab = self.vocabularies[name]
            if value not in vocab:
                raise ValueError(f"{self.source}: condition {name!r} has no value {value!r}; known values: "
                                 f"{list(vocab[1:])}")
            ids[name] = vocab.index(value)
        return ids

    def ids(self, clip_id: str) -> Tensor:
        """The ids ``(C,)`` long of ``clip_id``'s labels, in ``names`` order (0 where a label is missing)."""
        ids = self.encode(self.labels.get(clip_id, {}))
        return torch.tensor([ids[name] for name in self.names], dtype=torch.long)

    def missing(self, clip_id: str) -> list[str]:
        """Names ``clip_id`` has no label for."""
        found = self.labels.get(clip_id, {})
        return [name for name in self.names if name not in found]

    def to_dict(self) -> dict[str, Any]:
        """Plain form for checkpoints: names and vocabularies (not the per-clip labels)."""
        return {"names": list(self.names), "vocabularies": {k: list(v) for k, v in self.vocabularies.items()}}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], source: str = "<checkpoint>") -> ConditionLabels:
        """Inverse of ``to_dict``."""
        try:
            names = tuple(str(n) for n in d["names"])
            vocabularies = {str(k): tuple(str(v) for v in values) for k, values in d["vocabularies"].items()}
        except (KeyError, TypeError, AttributeError) as e:
            raise ValueError(f"{source}: condition record needs 'names' and 'vocabularies', got {d!r}") from e
        bad = [n for n in names if n not in vocabularies or vocabularies[n][:1] != (UNKNOWN,)]
        if bad:
            raise ValueError(f"{source}: conditions {bad} have no vocabulary starting with {UNKNOWN!r}")
        return cls(names, vocabularies, {}, source)


def build_condition_labels(labels: Mapping[str, Mapping[str, str]], names: Sequence[str] | None = None,
                           source: str = "<dict>") -> ConditionLabels:
    """Vocabularies and labels from ``{clip_id: {name: value}}``; ``names`` restricts (and orders) the conditions,
    default: every name in the file, sorted. Errors name ``source``, the clip and the field."""
    if not isinstance(labels, Mapping):
        raise DatasetError(f"{source}: expected a JSON object mapping clip ids to label objects, got "
                           f"{type(labels).__name__}", kind="conditions", path=source)
    clean: dict[str, dict[str, str]] = {}
    for clip_id, entry in labels.items():
        if not isinstance(entry, Mapping):
            raise DatasetError(f"{source}: clip {clip_id!r}: expected an object of labels such as "
                               f'{{"species": "human"}}, got {type(entry).__name__}', kind="conditions", path=source)
        for name, value in entry.items():
            if not isinstance(value, str) or not value:
                raise DatasetError(f"{source}: clip {clip_id!r}, field {name!r}: expected a non-empty string label, "
                                   f"got {value!r}", kind="conditions", path=source)
        clean[str(clip_id)] = {str(k): v for k, v in entry.items()}
    found = sorted({name for entry in clean.values() for name in entry})
    names = tuple(names) if names is not None else tuple(found)
    # A name given twice would give each clip two ids for one condition, of which a batch's dict keeps one.
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise DatasetError(f"{source}: condition names {repeated} given more than once; expected each name once",
                           kind="conditions", path=source)
    absent = [n for n in names if n not in found]
    if absent:
        raise DatasetError(f"{source}: no clip has a label for {absent}; names found: {found}", kind="conditions",
                           path=source)
    vocabularies = {}
    for name in names:
        values = sorted({entry[name] for entry in clean.values() if name in entry} - {UNKNOWN})
        vocabularies[name] = (UNKNOWN, *values)
    kept = {clip_id: {n: v for n, v in entry.items() if n in names} for clip_id, entry in clean.items()}
    return ConditionLabels(names, vocabularies, kept, source)


def training_labels(labels: ConditionLabels, train_ids: Sequence[str]) -> tuple[ConditionLabels, dict[str, list[str]]]:
    """``labels`` with vocabularies built from the values of the clips ``train_ids`` only.

    A value that no training clip carries would otherwise get an id whose embedding training never updates; here it is
    dropped from the clips that carry it (val/test), so they encode it as unknown (id 0). Returns the labels and
    ``{"name=value": clip ids}`` of the dropped values.
    """
    train_ids = set(train_ids)
    seen = {name: {entry[name] for clip_id, entry in labels.labels.items() if clip_id in train_ids and name in entry}
            for name in labels.names}
    vocabularies = {name: (UNKNOWN, *sorted(seen[name] - {UNKNOWN})) for name in labels.names}
    trained = ConditionLabels(labels.names, vocabularies, {}, labels.source)
    return with_vocabularies(labels, trained)


def with_vocabularies(labels: ConditionLabels,
                      trained: ConditionLabels) -> tuple[ConditionLabels, dict[str, list[str]]]:
    """The per-clip ``labels`` under ``trained``'s names and vocabularies (those a model was trained with): a value
    outside them is dropped, so it encodes as unknown (id 0), as a missing label does. Returns the labels and
    ``{"name=value": clip ids}`` of the dropped values."""
    kept, unseen = {}, {}
    for clip_id, values in labels.labels.items():
        kept[clip_id] = {}
        for name, value in values.items():
            if name not in trained.vocabularies:
                continue
            if value in trained.vocabularies[name]:
                kept[clip_id][name] = value
            else:
                unseen.setdefault(f"{name}={value}", []).append(clip_id)
    return ConditionLabels(trained.names, trained.vocabularies, kept, labels.source), unseen


def _conditions_path(path_or_root: str) -> str:
    return os.path.join(path_or_root, CONDITIONS_FILE) if os.path.isdir(path_or_root) else path_or_root


def read_conditions(path_or_root: str, names: Sequence[str] | None = None) -> ConditionLabels:
    """Read ``conditions.json`` (a file, or a dataset root holding one); see ``build_condition_labels``."""
    path = _conditions_path(path_or_root)
    if not os.path.isfile(path):
        raise DatasetError(f"{path}: condition labels missing; expected a JSON object "
                           f'{{clip_id: {{"species": ..., "gender": ...}}}}', kind="conditions", path=path)
    try:
        with open(path, encoding="utf-8") as f:
            raw = json.load(f)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise DatasetError(f"{path}: cannot read condition labels ({e}); expected UTF-8 JSON", kind="conditions",
                           path=path) from e
    return build_condition_labels(raw, names, source=path)


def write_conditions(path_or_root: str, labels: Mapping[str, Mapping[str, str]]) -> str:
    """Write ``{clip_id: {name: value}}`` as ``conditions.json`` (atomically); returns the path."""
    path = _conditions_path(path_or_root)
    build_condition_labels(labels, source=path)  # refuse to write what could not be read back
    with atomic_write(path, encoding="utf-8") as f:
        json.dump({k: dict(v) for k, v in labels.items()}, f, indent=1, sort_keys=True)
    return path


# ----------------------------------------------------------------------------------------------------------------------
# dataset and collate


class ConditionedWindow(NamedTuple):
    """One training item: ``motion (T, D)`` normalised window, ``cond_ids (C,)`` long in ``ConditionLabels.names``
    order."""

    motion: Tensor
    cond_ids: Tensor


class ConditionedBatch(NamedTuple):
    """``motion (B, T, D)`` and ``cond {name: (B,) long}``."""

    motion: Tensor
    cond: dict[str, Tensor]


def window_clip_row(windows: MotionWindowDataset, item: int) -> int:
    """Row in ``windows.index`` of the clip that window ``item`` is cut from (the mapping of
    ``MotionWindowDataset.__getitem__``)."""
    if windows.mode == "all":
        k = int(np.searchsorted(windows._first_item, item, side="right")) - 1
    else:
        k = item
    return int(windows.clips[k])


class ConditionedWindowDataset(Dataset):
    """``MotionWindowDataset`` windows with their clip's condition ids: item i is ``ConditionedWindow``.

    With ``require_labels`` (default) every clip the windows come from must have every label, otherwise a
    ``DatasetError`` lists the first clips without; without it, missing labels are id 0 (unknown).

    ``drop_prob`` trains the unknown id, which a clip without a label and a model called without conditions (a
    generator stage encoding motions) use: with that probability an item's ids all become 0 (the unconditional model,
    as classifier-free guidance drops its condition), and otherwise each id on its own becomes 0 with the same
    probability (a missing label). Draws come from torch's default generator, as the windows' offsets do.
    """

    def __init__(self, windows: MotionWindowDataset, labels: ConditionLabels, require_labels: bool = True,
                 drop_prob: float = 0.0) -> None:
        if not 0.0 <= drop_prob < 1.0:
            raise ValueError(f"condition drop probability must be in [0, 1), got {drop_prob}")
        self.windows = windows
        self.labels = labels
        self.drop_prob = float(drop_prob)
        rows = [int(r) for r in windows.clips]
        clip_ids = [windows.index.clip_id(r) for r in rows]
        if require_labels:
            unlabelled = [(c, labels.missing(c)) for c in clip_ids if labels.missing(c)]
            if unlabelled:
                shown = ", ".join(f"{c} (no {', '.join(m)})" for c, m in unlabelled[:_EXAMPLES])
                raise DatasetError(f"{labels.source}: {len(unlabelled)} of {len(clip_ids)} {windows.index.split} clips "
                                   f"lack labels: {shown}{', ...' if len(unlabelled) > _EXAMPLES else ''}; expected "
                                   f"every clip to have {list(labels.names)}", kind="conditions", path=labels.source)
        # Ids per index row, computed once; windows then only look them up.
        self._ids = {r: labels.ids(c) for r, c in zip(rows, clip_ids)}

    def __len__(self) -> int:
        return len(self.windows)

    def __getitem__(self, item: int) -> ConditionedWindow:
        motion = self.windows[item]
        ids = self._ids[window_clip_row(self.windows, item)]
        if self.drop_prob > 0.0:
            if float(torch.rand(())) < self.drop_prob:
                ids = torch.zeros_like(ids)
            else:
                ids = ids.masked_fill(torch.rand(ids.shape) < self.drop_prob, 0)
        return ConditionedWindow(motion, ids)

    @property
    def collate(self) -> CollateConditions:
        """The collate function for this dataset's items."""
        return CollateConditions(self.labels.names)


class CollateConditions:
    """Stack ``ConditionedWindow`` items into a ``ConditionedBatch`` (a class, so DataLoader workers can pickle it)."""

    def __init__(self, names: Sequence[str]) -> None:
        self.names = tuple(names)

    def __call__(self, batch: Sequence[ConditionedWindow]) -> ConditionedBatch:
        motion = torch.stack([b.motion for b in batch])
        ids = torch.stack([b.cond_ids for b in batch])
        if ids.shape[1] != len(self.names):
            raise ValueError(f"CollateConditions: items carry {ids.shape[1]} condition ids, expected "
                             f"{len(self.names)} ({list(self.names)})")
        return ConditionedBatch(motion, {name: ids[:, c] for c, name in enumerate(self.names)})


def make_conditioned_loss_fn(spec: DatasetSpec, recons_loss: str = "l1_smooth", w_pos: float = 0.5,
                             w_vel: float = 0.0,
                             commit: float = 0.02) -> Callable[[nn.Module, ConditionedBatch], tuple[Tensor, dict]]:
    """``loss_fn(model, batch) -> (loss, logs)`` for a conditional tokenizer: ``utils.losses.tokenizer_loss`` on
    ``model(batch.motion, cond=batch.cond)``."""

    def loss_fn(model: nn.Module, batch: ConditionedBatch) -> tuple[Tensor, dict]:
        out = model(batch.motion, cond=batch.cond)
        return tokenizer_loss(out.recon, batch.motion, out, spec, recons_loss=recons_loss, w_pos=w_pos, w_vel=w_vel,
                              commit=commit)

    return loss_fn
