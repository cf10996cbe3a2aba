"""``manifest.json`` of a folder of generated samples (``sample.py``): what every sample file is and how it was made.

A folder is often sampled into more than once (other prompts, another seed or guidance, a retrained checkpoint). Each
run appends to ``runs`` (checkpoint, its SHA-256, sampling settings, seed, and the length estimator's file and SHA-256
when it estimated lengths) and its samples carry the index of their run, so the files of an earlier run stay described.
A sample whose files a later run writes again (same prompt slug, index and repeat) is replaced by the new one, in steps
that each leave the file true to the folder when a run stops: the earlier sample is dropped from the file, then its
files are removed (all of them, so that none, a video, BVH or SMPL file the new sample does not write again, passes for
the new motion's), then the new sample's files are written, and only then is it listed. A reader finds the earlier
sample with its files, no sample of that name, or the new sample with its files, never one sample's entry with another
one's arrays; a run stopped part way keeps listed the earlier samples it had not started to replace. Files written
before a run stopped but not listed yet stay unlisted; a later run of the same names writes over them.
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
    with a warning, rather than overwritten. Something else at ``path`` (a folder) is an ``IsADirectoryError`` now,
    before any sample is made, rather than when the first one is listed."""
    if os.path.isdir(path):
        raise IsADirectoryError(f"{path} is a folder; the samples' manifest is written there: move it away or pick "
                                f"another --output_dir")
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
    again. Per sample, ``replace`` before its first file is written, ``add`` once its files are written, so an
    interrupted run still describes what it wrote; the files of ``keep`` (an edit's source) are never removed."""

    def __init__(self, out_dir: str, run: dict[str, Any], features_files: list[str],
                 keep: Sequence[str] = ()) -> None:
        self.out_dir = out_dir
        self.path = os.path.join(out_dir, MANIFEST)
        self.run = dict(run)
        self.keep = {os.path.realpath(path) for path in keep}
        self.earlier_runs, samples = _read_previous(self.path)
        rewritten = set(features_files)
        self.kept = [s for s in samples if (s.get("files") or {}).get("features") not in rewritten]
        # The earlier samples this run will write again stay listed until it starts on their replacement, so that a
        # run stopped part way keeps those it had not reached.
        self.replaced = {s["files"]["features"]: s for s in samples
                         if (s.get("files") or {}).get("features") in rewritten}
        if len(self.kept) < len(samples):
            logger.warning("%s: %d sample(s) of an earlier run have the names of this run's samples; their files are "
                           "replaced", out_dir, len(samples) - len(self.kept))
        self.written: list[dict[str, Any]] = []
        self.earlier = len(self.kept)

    def replace(self, features_file: str) -> None:
        """Before the sample whose features go to ``features_file`` writes a file: drop the earlier sample of that
        name from the file, then remove its files (in that order, so that the file never lists a removed file, nor
        the earlier sample once one of its arrays may be the new one's)."""
        earlier = self.replaced.pop(features_file, None)
        if earlier is None:
            return
        write_json(self.path, self.to_dict())
        for name in (earlier.get("files") or {}).values():
            # Only plain names in this folder, as sample.py writes them (a hand-edited manifest may hold others).
            if not isinstance(name, str) or not name or os.path.basename(name) != name:
                continue
            path = os.path.join(self.out_dir, name)
            if os.path.isfile(path) and os.path.realpath(path) not in self.keep:
                os.remove(path)
                logger.info("%s: removed %s, a file of the earlier motion this sample replaces", self.out_dir, name)

    def add(self, sample: dict[str, Any]) -> None:
        """Record one sample of this run, whose files are written, and rewrite the file."""
        if sample["files"]["features"] in self.replaced:  # removing the earlier files now would remove the new ones
            raise RuntimeError(f"{self.path}: replace({sample['files']['features']!r}) must come before the sample's "
                               f"files are written")
        self.written.append(sample)
        write_json(self.path, self.to_dict())

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
