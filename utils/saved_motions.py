"""Generate once, score many: the generated motion of an evaluation, saved per replication and replayed later.

``evaluation_MARDM.py --save_motions`` keeps every motion the generator returns during the protocol in
``<run>/eval/motions_<tag>/``; ``--from_motions <folder>`` scores them again (under another evaluator, or the same one
after a change of the metrics code) without loading the generator. A generator's replication can take most of an
hour; re-scoring takes as long as the evaluator passes.

Layout of a motions folder:

- ``motions.json``: what the motions are (format version, dataset, split, base seed, batch size, multimodality
  batches and repeats, the output tag, the evaluation's ``meta``: checkpoint, SHA-256, generator, sampling settings)
  and ``eval_dataset``, the dataset whose GT they were made for (the generator's own, or ``--eval_dataset``'s: the
  motions stay in the generator's representation).
- ``statistics.npz``: the generator's ``mean`` and ``std`` (float32). Motions are stored as the generator returned
  them, normalised with its own statistics, so the re-scoring applies the same ``renormalize`` to the same numbers
  and, under the same evaluator, reproduces the original scores exactly.
- ``seed<s>.npz``: replication seed ``s``, one entry per generator call in call order: ``kinds`` (0 for a batch's
  motion, 1 for a multimodality repeat), ``rows`` and ``width`` (frames of the returned tensor) per
  call; per row ``captions``, ``m_lengths`` (the GT lengths the generator was asked for) and ``lengths`` (those it
  returned); ``frames``: every row's frames up to its length, concatenated (float32, about 4 x D bytes per frame).

Replay checks that each call is made for the same captions and GT lengths as when it was saved: an evaluator with
another unit length or maximum length, another split or other data draw other crops, and their saved motions do not
answer them. Files are written atomically, a replication's file before its JSONL row.

``MotionSource`` is what ``evaluation_MARDM.py`` scores, a generator or (``replay_source``) a motions folder.
"""

from __future__ import annotations

import json
import logging
import os
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from options.config import given_in_config, given_on_command_line, preset_file
from utils.atomic_io import atomic_write
from utils.datasets import EvalBatch
from utils.eval_protocol import location_free, replication_seeds
from utils.eval_report import json_default

logger = logging.getLogger(__name__)

FORMAT_VERSION = 1
HEADER = "motions.json"
STATISTICS = "statistics.npz"
KIND_BATCH, KIND_MM = 0, 1
# Header fields that decide which motions a folder holds; a folder whose header differs in one of them holds motions of
# another evaluation, which are removed before new ones are saved.
IDENTITY_FIELDS = ("version", "dataset", "split", "eval_batch_size", "multimodality", "tag", "meta")


class SavedMotionsError(ValueError):
    """A motions folder that is missing, unreadable or does not answer the evaluation asking it."""


def seed_file(folder: str, seed: int) -> str:
    return os.path.join(folder, f"seed{int(seed)}.npz")


def _write_json(path: str, data: dict[str, Any]) -> None:
    with atomic_write(path) as f:
        json.dump(data, f, indent=1, default=json_default)


def _write_npz(path: str, arrays: dict[str, np.ndarray]) -> None:
    with atomic_write(path, "wb") as f:
        np.savez(f, **arrays)


def make_header(*, dataset: str, split: str, seed: int, eval_batch_size: int, multimodality: tuple[int, int] | None,
                tag: str, which: str, meta: dict[str, Any]) -> dict[str, Any]:
    """The ``motions.json`` of an evaluation (``meta`` as it goes into the evaluation key, JSON round-tripped)."""
    return {"version": FORMAT_VERSION, "dataset": dataset, "split": split, "seed": int(seed),
            "eval_batch_size": int(eval_batch_size),
            "multimodality": list(multimodality) if multimodality is not None else None,
            "tag": tag, "which": which, "meta": json.loads(json.dumps(meta, default=json_default))}


def _identity(header: dict[str, Any]) -> dict[str, Any]:
    """The header's ``IDENTITY_FIELDS``, files in ``meta`` by content (a moved run keeps its motions)."""
    return {k: location_free(header.get(k)) if k == "meta" else header.get(k) for k in IDENTITY_FIELDS}


class MotionRecorder:
    """Saves the motions of each replication (``begin(seed)``, ``record(...)`` per generator call, ``end(seed)``).

    A folder saved by another evaluation (its header differs in ``IDENTITY_FIELDS``: another checkpoint (by its
    SHA-256, not its path), other sampling settings or protocol) has its seed files removed first, so it never mixes two
    evaluations; seed files of the same evaluation stay (``--is_continue`` keeps them, a fresh run rewrites them).
    """

    def __init__(self, folder: str, header: dict[str, Any], mean: np.ndarray, std: np.ndarray) -> None:
        self.folder = folder
        self.header = header
        self._dim = len(np.asarray(mean).reshape(-1))  # the frames' width when a replication made no call
        os.makedirs(folder, exist_ok=True)
        old = _read_header(folder, required=False)
        if old is not None and _identity(old) != _identity(header):
            stale = [n for n in os.listdir(folder) if n.startswith("seed") and n.endswith(".npz")]
            for name in stale:
                os.remove(os.path.join(folder, name))
            logger.warning("%s held the motions of another evaluation (%s); removed its %d replication file(s)",
                           folder, _first_difference(_identity(old), _identity(header)), len(stale))
        _write_npz(os.path.join(folder, STATISTICS), {"mean": np.asarray(mean, dtype=np.float32),
                                                      "std": np.asarray(std, dtype=np.float32)})
        _write_json(os.path.join(folder, HEADER), header)
        self._calls: list[tuple[int, list[str], np.ndarray, np.ndarray, np.ndarray, int]] | None = None

    def begin(self, seed: int) -> None:
        self._calls = []

    def record(self, kind: int, batch: EvalBatch, motion: torch.Tensor, lengths: torch.Tensor) -> None:
        """One generator call: ``motion (B, T, D)`` in the generator's normalisation, ``lengths (B,)`` returned."""
        if self._calls is None:
            raise RuntimeError("MotionRecorder.record outside begin()/end()")
        motion = motion.detach().float().cpu().numpy()
        lengths = torch.as_tensor(lengths).reshape(-1).cpu().numpy().astype(np.int64)
        frames = np.concatenate([motion[i, :n] for i, n in enumerate(lengths)], axis=0)
        self._calls.append((kind, list(batch.captions), batch.m_lengths.cpu().numpy().astype(np.int64), lengths,
                            frames, motion.shape[1]))

    def end(self, seed: int) -> None:
        calls, self._calls = self._calls or [], None
        dim = calls[0][4].shape[1] if calls else self._dim
        _write_npz(seed_file(self.folder, seed), {
            "kinds": np.array([c[0] for c in calls], dtype=np.int8),
            "rows": np.array([len(c[1]) for c in calls], dtype=np.int64),
            "width": np.array([c[5] for c in calls], dtype=np.int64),
            "captions": np.array([t for c in calls for t in c[1]], dtype=np.str_),
            "m_lengths": np.concatenate([c[2] for c in calls]) if calls else np.zeros(0, np.int64),
            "lengths": np.concatenate([c[3] for c in calls]) if calls else np.zeros(0, np.int64),
            "frames": np.concatenate([c[4] for c in calls]) if calls else np.zeros((0, dim), np.float32),
        })

    def missing(self, seeds: Sequence[int]) -> list[int]:
        """Seeds without a saved file (replications reused by ``--is_continue`` from a run that did not save)."""
        return [s for s in seeds if not os.path.isfile(seed_file(self.folder, s))]


def _first_difference(old: dict[str, Any], new: dict[str, Any]) -> str:
    for key in IDENTITY_FIELDS:
        if old.get(key) != new.get(key):
            if key == "meta":
                for sub in sorted(set(old.get("meta") or {}) | set(new.get("meta") or {})):
                    if (old.get("meta") or {}).get(sub) != (new.get("meta") or {}).get(sub):
                        return f"{sub} differs"
            return f"{key} {old.get(key)!r} -> {new.get(key)!r}"
    return "no difference"


def _read_header(folder: str, required: bool = True) -> dict[str, Any] | None:
    path = os.path.join(folder, HEADER)
    if not os.path.isfile(path):
        if required:
            raise SavedMotionsError(f"{folder}: no {HEADER}; expected a folder written by evaluation_MARDM.py "
                                    f"--save_motions (<run>/eval/motions_<tag>)")
        return None
    try:
        with open(path) as f:
            header = json.load(f)
    except (OSError, json.JSONDecodeError) as e:
        if not required:
            return {}
        raise SavedMotionsError(f"{path}: unreadable ({e})") from e
    if not isinstance(header, dict):
        if not required:
            return {}
        raise SavedMotionsError(f"{path}: expected a JSON object, got {type(header).__name__}")
    if required:
        if header.get("version") != FORMAT_VERSION:
            raise SavedMotionsError(f"{path}: field 'version' is {header.get('version')!r}; this version reads "
                                    f"{FORMAT_VERSION}")
        missing = [k for k in ("dataset", "split", "seed", "eval_batch_size", "multimodality", "tag", "which", "meta")
                   if k not in header]
        if missing:
            raise SavedMotionsError(f"{path}: missing field(s) {', '.join(missing)}")
    return header


class MotionReplay:
    """Motions saved by ``MotionRecorder``, handed back call by call: ``begin(seed)``, ``call(kind, batch)``,
    ``end(seed)``."""

    def __init__(self, folder: str) -> None:
        self.folder = folder
        self.header = _read_header(folder)
        stats = os.path.join(folder, STATISTICS)
        try:
            with np.load(stats) as z:
                self.mean, self.std = z["mean"], z["std"]
        except (OSError, KeyError, TypeError, ValueError, zipfile.BadZipFile) as e:  # TypeError: a .npy, not .npz
            raise SavedMotionsError(f"{stats}: expected the generator's 'mean' and 'std' ({e})") from e
        if self.mean.ndim != 1 or self.mean.shape != self.std.shape:
            raise SavedMotionsError(f"{stats}: expected 'mean' and 'std' of one shape (D,), got {self.mean.shape} and "
                                    f"{self.std.shape}")
        self._file = ""
        self._data: dict[str, np.ndarray] | None = None

    def available(self, seeds: Sequence[int]) -> list[int]:
        return [s for s in seeds if os.path.isfile(seed_file(self.folder, s))]

    def begin(self, seed: int) -> None:
        path = seed_file(self.folder, seed)
        names = ("kinds", "rows", "width", "captions", "m_lengths", "lengths", "frames")
        try:
            with np.load(path) as z:
                data = {name: z[name] for name in names}
        except FileNotFoundError as e:
            raise SavedMotionsError(f"{path}: no saved motions for replication seed {seed}") from e
        except (OSError, KeyError, TypeError, ValueError, zipfile.BadZipFile) as e:  # TypeError: a .npy, not .npz
            raise SavedMotionsError(f"{path}: unreadable; expected the arrays {', '.join(names)} ({e})") from e
        _check_seed_arrays(path, data)
        rows = int(data["rows"].sum())
        if not (len(data["captions"]) == len(data["m_lengths"]) == len(data["lengths"]) == rows
                and data["frames"].shape[0] == int(data["lengths"].sum())):
            raise SavedMotionsError(f"{path}: the arrays do not agree ({rows} rows in 'rows', "
                                    f"{len(data['captions'])} captions, {data['frames'].shape[0]} frames)")
        if data["frames"].ndim != 2 or data["frames"].shape[1] != self.mean.shape[0]:
            raise SavedMotionsError(f"{path}: 'frames' has shape {data['frames'].shape}, but "
                                    f"{os.path.join(self.folder, STATISTICS)} holds {self.mean.shape[0]}-dim "
                                    f"statistics; expected (F, {self.mean.shape[0]})")
        self._file, self._data = path, data
        self._call = self._row = self._frame = 0

    def call(self, kind: int, batch: EvalBatch) -> tuple[torch.Tensor, torch.Tensor]:
        """The saved ``(motion (B, width, D), lengths (B,))`` of the next call, after checking it answers ``batch``."""
        data = self._data
        if data is None:
            raise RuntimeError("MotionReplay.call outside begin()/end()")
        where = f"{self._file}: call {self._call}"
        if self._call >= len(data["kinds"]):
            raise SavedMotionsError(f"{where}: the file holds only {len(data['kinds'])} calls; this evaluation asks "
                                    f"for more (other multimodality settings or more batches than when it was saved)")
        n = int(data["rows"][self._call])
        rows = slice(self._row, self._row + n)
        saved = int(data["kinds"][self._call])
        if saved != kind:
            raise SavedMotionsError(f"{where}: saved as {_call_name(saved)}, asked for as {_call_name(kind)} (other "
                                    f"multimodality settings than when it was saved)")
        if (data["captions"][rows].tolist() != list(batch.captions)
                or not np.array_equal(data["m_lengths"][rows], batch.m_lengths.cpu().numpy())):
            raise SavedMotionsError(
                f"{where} ({_call_name(kind)}): saved for other captions or GT lengths than this evaluation draws; "
                f"the evaluator's unit or maximum length, the split or the data differ from the run that saved "
                f"them, so these motions cannot be scored here")
        lengths = data["lengths"][rows]
        width = int(data["width"][self._call])
        motion = np.zeros((n, width, data["frames"].shape[1]), dtype=np.float32)
        start = self._frame
        for i, length in enumerate(lengths.tolist()):
            motion[i, :length] = data["frames"][start:start + length]
            start += length
        self._call, self._row, self._frame = self._call + 1, self._row + n, start
        return torch.from_numpy(motion), torch.from_numpy(lengths.astype(np.int64))

    def end(self, seed: int) -> None:
        data, self._data = self._data, None
        if data is not None and self._call != len(data["kinds"]):
            raise SavedMotionsError(f"{self._file}: {len(data['kinds'])} calls saved, {self._call} asked for (other "
                                    f"multimodality settings or fewer batches than when it was saved)")


def _check_seed_arrays(path: str, data: dict[str, np.ndarray]) -> None:
    """``SavedMotionsError`` naming ``path`` and the field unless the per-call arrays (``kinds``, ``rows``, ``width``)
    and per-row arrays are 1-D integers with one entry per call, and every row's length fits its call's width (a file
    edited or written by other code would otherwise fail part way through a replication with an IndexError)."""
    for name in ("kinds", "rows", "width", "m_lengths", "lengths", "captions"):
        if data[name].ndim != 1:
            what = "call" if name in ("kinds", "rows", "width") else "row"
            raise SavedMotionsError(f"{path}: '{name}' has shape {data[name].shape}; expected one entry per {what}")
        if name != "captions" and not (np.issubdtype(data[name].dtype, np.integer) or data[name].size == 0):
            raise SavedMotionsError(f"{path}: '{name}' holds {data[name].dtype}; expected integers")
    if not (np.issubdtype(data["frames"].dtype, np.floating) or np.issubdtype(data["frames"].dtype, np.integer)):
        raise SavedMotionsError(f"{path}: 'frames' holds {data['frames'].dtype}; expected float features")
    calls = (len(data["kinds"]), len(data["rows"]), len(data["width"]))
    if len(set(calls)) != 1:
        raise SavedMotionsError(f"{path}: 'kinds', 'rows' and 'width' hold one entry per call; got {calls[0]}, "
                                f"{calls[1]} and {calls[2]} entries")
    if (data["rows"] < 0).any():
        raise SavedMotionsError(f"{path}: 'rows' holds {int(data['rows'].min())}; expected counts >= 0")
    if int(data["rows"].sum()) == len(data["lengths"]):
        # (as integers: an empty array of any dtype passed the check above)
        widths = np.repeat(data["width"].astype(np.int64), data["rows"].astype(np.int64))
        bad = np.flatnonzero((data["lengths"] < 0) | (data["lengths"] > widths))
        if len(bad):
            row = int(bad[0])
            raise SavedMotionsError(f"{path}: 'lengths' holds {int(data['lengths'][row])} for row {row}, but the "
                                    f"'width' of its call is {int(widths[row])}; expected 0 to the width")


def _call_name(kind: int) -> str:
    return "a multimodality repeat" if kind == KIND_MM else "a batch's motion"


# ---------------------------------------------------------------------------------------------------------------------
# Where an evaluation's motion comes from
# ---------------------------------------------------------------------------------------------------------------------

@dataclass
class MotionSource:
    """Where an evaluation's motion comes from: a loaded generator, or the motions a generator saved earlier.

    ``produce(kind, batch)`` returns ``(motion (B, T, D) normalised with (mean, std), lengths (B,))`` for a batch's
    motion (``KIND_BATCH``) or a multimodality repeat (``KIND_MM``). ``sampler``: what the sampling settings left to
    the model, resolved, for the report only (it is not part of ``meta``, which keys the evaluation)."""

    dataset_name: str
    eval_dir: str
    tag: str  # output tag without the evaluator's part
    which: str
    meta: dict[str, Any]
    mean: np.ndarray
    std: np.ndarray
    title: str
    produce: Callable[[int, Any], tuple[torch.Tensor, torch.Tensor]]
    hooks: Any = None
    sampler: dict[str, Any] | None = None


# Flags that choose how motion is generated: they have no meaning when saved motions are scored.
GENERATION_FLAGS = {"name": "--name", "ckpt": "--ckpt", "which_epoch": "--which_epoch", "no_ema": "--no_ema/--ema",
                    "res_name": "--res_name", "res_ckpt": "--res_ckpt", "tokenizer_path": "--tokenizer_path",
                    "text_encoder": "--text_encoder", "text_encoder_path": "--text_encoder_path",
                    "time_steps": "--time_steps", "cfg": "--cfg", "temperature": "--temperature",
                    "no_snap": "--no_snap/--snap", "topk_filter_thres": "--topkr", "sampling": "--sampling",
                    "res_cond_scale": "--res_cond_scale", "head_steps": "--head_steps", "head_solver": "--head_solver",
                    "mm_sampling": "--mm_sampling", "save_motions": "--save_motions"}


def replay_source(cfg: Any, default: Callable[[str], Any]) -> MotionSource:
    """The motions saved in ``cfg.from_motions`` (``evaluation_MARDM.py``'s parsed flags; ``default(dest)`` gives a
    flag's default). The protocol settings are the saved run's: ``cfg`` is updated, and a flag given (typed on the
    command line or set in the ``--config`` preset, even at its default value, or set away from its default) with
    another value than the saved one is an error, as are the flags that choose how motion is generated."""
    typed = given_on_command_line(cfg)
    from_config = given_in_config(cfg) - typed

    def explicit(dest: str) -> bool:
        return dest in typed or dest in from_config or getattr(cfg, dest) != default(dest)

    def named(dest: str, flag: str) -> str:
        return f"{flag} ({dest}: {getattr(cfg, dest)} in {preset_file(cfg)})" if dest in from_config else flag

    given = [named(dest, flag) for dest, flag in GENERATION_FLAGS.items() if explicit(dest)]
    if given:
        raise ValueError(f"--from_motions scores motions generated earlier; {', '.join(given)} choose how motion is "
                         f"generated and do not apply (the saved run's settings are in its motions.json)")
    folder = os.path.abspath(cfg.from_motions)
    replay = MotionReplay(folder)
    header = replay.header
    if cfg.dataset_name and cfg.dataset_name != header["dataset"]:
        raise ValueError(f"--dataset_name {cfg.dataset_name!r}, but {folder} holds motions of {header['dataset']!r}")
    mm = header["multimodality"]
    saved = {"split": header["split"], "seed": header["seed"], "eval_batch_size": header["eval_batch_size"],
             "cal_mm": mm is not None, **({"mm_batches": mm[0], "mm_repeats": mm[1]} if mm is not None else {})}
    for dest, value in saved.items():
        mine = getattr(cfg, dest)
        if mine != value and explicit(dest):
            flag = named(dest, {"cal_mm": "--cal_mm / --no_mm"}.get(dest, f"--{dest}"))
            raise ValueError(f"{flag} is {mine}, but the motions in {folder} were generated with {value}; these "
                             f"settings are the saved run's (leave the flag out)")
        setattr(cfg, dest, value)
    if not explicit("replications"):
        cfg.replications = int(header.get("replications", cfg.replications))
    seeds = replication_seeds(cfg.seed, cfg.replications)
    missing = sorted(set(seeds) - set(replay.available(seeds)))
    if missing:
        raise SavedMotionsError(f"{folder}: no saved motions for replication seed(s) {missing} of {cfg.replications} "
                                f"(seed{missing[0]}.npz ...); pass --replications with the number saved, or complete "
                                f"the saved run (--save_motions --is_continue)")
    logger.info("scoring the motions saved in %s (%s): split %s, seed %d, batch size %d, multimodality %s, "
                "%d replications", folder, header["meta"].get("checkpoint"), cfg.split, cfg.seed,
                cfg.eval_batch_size, mm, cfg.replications)
    return MotionSource(header["dataset"], os.path.dirname(folder), header["tag"], header["which"], header["meta"],
                        replay.mean, replay.std, f"{header.get('title', header['tag'])} [saved motions]",
                        lambda kind, batch: replay.call(kind, batch), replay, header.get("sampler"))
