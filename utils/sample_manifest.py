"""``manifest.json`` of a folder of generated samples (``sample.py``): what every sample file is and how it was made.

A folder is often sampled into more than once (other prompts, another seed or guidance, a retrained checkpoint).
Each run appends to ``runs`` (checkpoint, its SHA-256, sampling settings, seed) and its samples carry the index of
their run, so the files of an earlier run stay described. A sample whose files a later run writes again (same prompt
slug, index and repeat) is replaced by the new one, and the files of the earlier sample that the new one does not
write again (a video, BVH or SMPL file of the earlier motion) are removed, so that none passes for the new motion's.
The earlier sample stays listed until the new one's files are written and the file lists the new one instead; its
leftovers are removed only then, so a run stopped part way lists no removed file and keeps listed the earlier samples
it had not replaced yet.
The top-level ``checkpoint``, ``sampling``, ... keys describe the latest run, as they did before ``runs`` existed; a
manifest from then is read as one run.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from typing import Any

from utils.atomic_io import atomic_write

logger = logging.getLogger(__name__)

MANIFEST = "manifest.json"
# Keys of a manifest that describe the run that made its samples.
RUN_KEYS = ("checkpoint", "checkpoint_sha256", "generator", "dataset", "fps", "sampling", "seed", "repeat_times")


def write_json(path: str, data: dict) -> None:
    """Write ``data`` as UTF-8 JSON through a temporary file, so a reader never sees half a file."""
    with atomic_write(path, encoding="utf-8") as f:
        json.dump(data, f, indent=2, ensure_ascii=False)
        f.write("\n")


def _read_previous(path: str) -> tuple[list[dict], list[dict]]:
    """(runs, samples) of the manifest at ``path``; nothing when there is none. An unreadable one is moved aside to
    ``<path>.unreadable`` (``<path>.unreadable.1``, ``.2``, ... when that is taken, so no earlier copy is overwritten)
    with a warning, rather than overwritten."""
    if not os.path.isfile(path):
        return [], []
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
        if not isinstance(data, dict) or not isinstance(data.get("samples", []), list):
            raise ValueError("expected a JSON object with a 'samples' list")
        runs = data.get("runs")
        samples = [dict(s) for s in data.get("samples", []) if isinstance(s, dict)]
        if not isinstance(runs, list):  # a manifest from before runs were recorded: one run, its top-level keys
            runs = [{key: data.get(key) for key in RUN_KEYS}]
            for sample in samples:
                sample["run"] = 0
        for sample in samples:
            run = sample.get("run")
            if not isinstance(run, int) or isinstance(run, bool) or not 0 <= run < len(runs):
                raise ValueError(f"sample {sample.get('files')} has run {run!r}; expected an index into 'runs' "
                                 f"(0 to {len(runs) - 1})")
            files = sample.get("files")
            if files is not None and not (isinstance(files, dict)
                                          and all(name is None or isinstance(name, str) for name in files.values())):
                raise ValueError(f"sample {sample.get('prompt')!r} has files {files!r}; expected an object of file "
                                 f"names (or null)")
    except (OSError, UnicodeDecodeError, ValueError) as e:
        aside = _free_name(f"{path}.unreadable")
        os.replace(path, aside)
        logger.warning("%s: cannot read the earlier manifest (%s); moved to %s (earlier unreadable copies are kept), "
                       "a new one is started", path, e, aside)
        return [], []
    return runs, samples


def _free_name(path: str) -> str:
    """``path``, or the first of ``path.1``, ``path.2``, ... that does not exist."""
    name, number = path, 0
    while os.path.lexists(name):
        number += 1
        name = f"{path}.{number}"
    return name


class SampleManifest:
    """The manifest of ``out_dir`` for a new run described by ``run`` (``RUN_KEYS``) that will write the samples
    whose feature files are ``features_files``: earlier runs' samples are kept unless this run writes their files
    again. ``add`` records a sample and rewrites the file, so an interrupted run still describes what it wrote, and
    removes what is left of the earlier sample it replaces, except the files of ``keep`` (an edit's source)."""

    def __init__(self, out_dir: str, run: dict[str, Any], features_files: list[str],
                 keep: Sequence[str] = ()) -> None:
        self.out_dir = out_dir
        self.path = os.path.join(out_dir, MANIFEST)
        self.run = dict(run)
        self.keep = {os.path.realpath(path) for path in keep}
        self.earlier_runs, samples = _read_previous(self.path)
        rewritten = set(features_files)
        self.kept = [s for s in samples if (s.get("files") or {}).get("features") not in rewritten]
        # The earlier samples this run will write again stay listed until their replacement is, so that a run stopped
        # part way leaves none of their files unlisted.
        self.replaced = {s["files"]["features"]: s for s in samples
                         if (s.get("files") or {}).get("features") in rewritten}
        if len(self.kept) < len(samples):
            logger.warning("%s: %d sample(s) of an earlier run have the names of this run's samples; their files are "
                           "replaced", out_dir, len(samples) - len(self.kept))
        self.written: list[dict[str, Any]] = []
        self.earlier = len(self.kept)

    def add(self, sample: dict[str, Any]) -> None:
        """Record one sample of this run, rewrite the file, then remove the files of the earlier sample it replaces
        that it did not write again (in that order, so that the file never lists a removed file)."""
        earlier = self.replaced.pop(sample["files"]["features"], None)
        self.written.append(sample)
        write_json(self.path, self.to_dict())
        self._remove_leftovers(earlier, sample)

    def _remove_leftovers(self, earlier: dict[str, Any] | None, sample: dict[str, Any]) -> None:
        if earlier is None:
            return
        written = {name for name in sample["files"].values() if name}
        for name in (earlier.get("files") or {}).values():
            # Only plain names in this folder, as sample.py writes them (a hand-edited manifest may hold others).
            if not isinstance(name, str) or not name or name in written or os.path.basename(name) != name:
                continue
            path = os.path.join(self.out_dir, name)
            if os.path.isfile(path) and os.path.realpath(path) not in self.keep:
                os.remove(path)
                logger.info("%s: removed %s, a file of the earlier motion this sample replaces", self.out_dir, name)

    def this_runs_samples(self) -> list[dict[str, Any]]:
        """The samples this run wrote, in order."""
        return self.to_dict()["samples"][-len(self.written):] if self.written else []

    def to_dict(self) -> dict[str, Any]:
        """The manifest: the latest run's keys, ``runs`` and ``samples`` (the earlier runs' samples, those this run
        has not replaced yet, then this run's)."""
        earlier = self.kept + list(self.replaced.values())
        # Keep only the runs that still have samples, renumbered in order.
        used = sorted({s["run"] for s in earlier})
        number = {old: new for new, old in enumerate(used)}
        samples = [{**s, "run": number[s["run"]]} for s in earlier] + [{**s, "run": len(used)} for s in self.written]
        return {**self.run, "runs": [self.earlier_runs[old] for old in used] + [self.run], "samples": samples}
