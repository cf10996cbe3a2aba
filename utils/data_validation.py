"""Whole-dataset validation: one pass over a dataset root that collects every problem with its file.

The loaders in ``utils.datasets`` stop at the first corrupt file; ``validate_dataset`` instead reads every file of
the chosen splits once and lists all problems, so a broken dataset is fixed in one round
(``prepare_data.py validate``). Problems are errors (the loaders would raise) or warnings (the loaders skip and
count them, as the reference loaders skip silently); ``ValidationReport.ok`` means no errors.
"""

from __future__ import annotations

import logging
import os
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

from tqdm import tqdm

from utils.dataset_specs import SPEC_FILE, DatasetSpec
from utils.datasets import max_sample_length
from utils.motion_files import motion_path, read_split, scan_motion, scan_texts, text_path
from utils.normalization import MEAN_FILE, STD_FILE, DatasetError, data_root_problem, read_stats_file, stats_problems
from utils.word_vectorizer import split_token

logger = logging.getLogger(__name__)

# Problem kind -> severity. Warnings are what the loaders skip and count (or, for an id a split lists twice, read
# twice); errors make them raise.
KINDS: dict[str, str] = {
    "missing_root": "error",
    "missing_split": "error",
    "empty_split": "error",
    "missing_stats": "error",
    "stats_shape": "error",
    "stats_nonfinite": "error",
    "std_zero": "error",
    "unreadable_motion": "error",
    "empty_motion": "error",
    "non_numeric": "error",
    "wrong_dim": "error",
    "nan": "error",
    "inf": "error",
    "unreadable_text": "error",
    "undecodable_text": "error",
    "malformed_text": "error",
    "missing_motion": "warning",
    "duplicate_id": "warning",
    "too_short": "warning",
    "too_long": "warning",
    "missing_text": "warning",
    "empty_text": "warning",
    "no_tokens": "warning",
    "text_fps": "warning",
}


@dataclass(frozen=True)
class Problem:
    """One problem: its kind (a key of ``KINDS``), severity, the file concerned and a message naming it."""

    kind: str
    severity: str
    path: str
    message: str


@dataclass
class ValidationReport:
    """Everything ``validate_dataset`` found. ``checked`` counts what was read (splits, motions, frames, texts)."""

    dataset: str
    root: str
    problems: list[Problem] = field(default_factory=list)
    checked: dict[str, int] = field(default_factory=dict)

    def add(self, kind: str, path: str, message: str) -> None:
        self.problems.append(Problem(kind, KINDS.get(kind, "error"), path, message))

    def add_error(self, error: DatasetError) -> None:
        self.add(error.kind, error.path, str(error))

    @property
    def ok(self) -> bool:
        """True when no problem is an error (warnings are skipped by the loaders)."""
        return not any(p.severity == "error" for p in self.problems)

    @property
    def counts(self) -> dict[str, int]:
        """Number of problems per kind, in order of first appearance."""
        counts: dict[str, int] = {}
        for p in self.problems:
            counts[p.kind] = counts.get(p.kind, 0) + 1
        return counts

    def format(self, max_per_kind: int = 10) -> str:
        """A printable report: what was checked, then each kind with its count and first ``max_per_kind`` messages."""
        checked = ", ".join(f"{v} {k}" for k, v in self.checked.items())
        errors = sum(p.severity == "error" for p in self.problems)
        warnings = len(self.problems) - errors
        status = "OK" if self.ok else "FAILED"
        lines = [f"dataset {self.dataset!r} at {self.root}: {status} ({errors} errors, {warnings} warnings; "
                 f"checked {checked or 'nothing'})"]
        for kind, n in self.counts.items():
            lines.append(f"  {KINDS.get(kind, 'error')} {kind}: {n}")
            shown = [p for p in self.problems if p.kind == kind][:max_per_kind]
            lines.extend(f"    {p.message}" for p in shown)
            if n > len(shown):
                lines.append(f"    ... and {n - len(shown)} more")
        return "\n".join(lines)


def _check_stats(report: ValidationReport, spec: DatasetSpec, root: str) -> None:
    for name, is_std in ((MEAN_FILE, False), (STD_FILE, True)):
        path = os.path.join(root, name)
        if not os.path.isfile(path):
            report.add("missing_stats", path, f"{path}: missing; expected the dataset {'std' if is_std else 'mean'} "
                                              f"of shape ({spec.file_dim},) (python prepare_data.py stats computes "
                                              f"both)")
            continue
        try:
            values = read_stats_file(path, spec)
        except DatasetError as e:
            report.add_error(e)
            continue
        for problem in stats_problems(values, spec, path, is_std):
            report.add_error(problem)


def validate_dataset(spec: DatasetSpec, data_root: str | None = None,
                     splits: Sequence[str] = ("train", "val", "test"), texts: bool = True,
                     progress: bool = False) -> ValidationReport:
    """Check a dataset root in one pass and return every problem found.

    Checks ``Mean.npy``/``Std.npy`` (present, size ``dim_pose`` or ``file_dim``, finite, std > 0), each split file
    (present, not empty, each id once), and for every id of those splits its motion file (present, readable, numeric,
    shape (T, file_dim), T >= 1, finite, at least ``spec.min_motion_length`` frames and, when captions are checked,
    fewer than ``max_sample_length(spec)``) and caption file (present, UTF-8, well-formed lines, captions with tokens,
    each of the form ``word/POS``). Each motion file is read once even if several splits list it.
    ``texts=False`` skips the caption checks (motion-only datasets such as BEAT-X).
    """
    root = data_root or spec.root
    report = ValidationReport(dataset=spec.name, root=root)
    problem = data_root_problem(spec, data_root)
    if problem:
        report.add_error(problem)
        return report
    _check_stats(report, spec, root)

    ids: dict[str, str] = {}  # id -> first split naming it
    for split in splits:
        try:
            split_ids = read_split(root, split)
        except DatasetError as e:
            report.add_error(e)
            continue
        for clip_id in split_ids:
            ids.setdefault(clip_id, split)
        repeated = {clip_id: n for clip_id, n in Counter(split_ids).items() if n > 1}
        if repeated:
            path = os.path.join(root, f"{split}.txt")
            shown = ", ".join(f"{clip_id!r} {n} times" for clip_id, n in list(repeated.items())[:5])
            report.add("duplicate_id", path, f"{path}: {len(repeated)} id{'s' if len(repeated) > 1 else ''} listed "
                                             f"more than once ({shown}{', ...' if len(repeated) > 5 else ''}); "
                                             f"expected each id once (the loaders read such a clip once per line)")
    report.checked["splits"] = len(splits)

    motions = text_files = frames = 0
    tagged: list[str] = []  # caption files with time tags, for the text_fps check of imported datasets
    for clip_id, split in tqdm(ids.items(), desc=f"validate {spec.name}", unit="clip", disable=not progress):
        path = motion_path(root, clip_id)
        if not os.path.isfile(path):
            report.add("missing_motion", path, f"{os.path.join(root, split + '.txt')}: names {clip_id!r} but {path} "
                                               f"does not exist; expected its (T, {spec.file_dim}) features")
        else:
            values, problems = scan_motion(path, spec)
            motions += 1
            for problem in problems:
                report.add_error(problem)
            if values is not None:
                frames += values.shape[0]
                if values.shape[0] < spec.min_motion_length:
                    report.add("too_short", path, f"{path}: {values.shape[0]} frames; expected at least "
                                                  f"min_motion_length {spec.min_motion_length} (the text-motion "
                                                  f"loaders skip it; the tokenizer loader skips clips shorter than "
                                                  f"window_size {spec.window_size})")
                elif texts and values.shape[0] >= max_sample_length(spec):
                    report.add("too_long", path, f"{path}: {values.shape[0]} frames; expected fewer than "
                                                 f"{max_sample_length(spec)} (max_motion_length "
                                                 f"{spec.max_motion_length} + unit_length {spec.unit_length}): the "
                                                 f"text-motion loaders skip it and its sub-clips")
        if not texts:
            continue
        tpath = text_path(root, clip_id)
        entries, problems = scan_texts(tpath)
        for problem in problems:
            report.add_error(problem)
        if problems and problems[0].kind == "missing_text":
            continue
        text_files += 1
        if not entries and not problems:
            report.add("empty_text", tpath, f"{tpath}: no caption line; expected lines caption#tokens#f_tag#to_tag")
        if any(entry.f_tag or entry.to_tag for entry in entries):
            tagged.append(tpath)
        for entry in entries:
            if not entry.tokens:
                report.add("no_tokens", tpath, f"{tpath}: caption {entry.caption[:40]!r} has no word/POS tokens; "
                                               f"expected tokens between the first and second '#' (the evaluation "
                                               f"dataset skips it)")
            for token in entry.tokens:
                try:
                    split_token(token)
                except ValueError as e:
                    report.add("malformed_text", tpath, f"{tpath}: caption {entry.caption!r}: {e} (the evaluation "
                                                        f"dataset stops on it)")
                    break
    spec_file = os.path.join(root, SPEC_FILE)
    if tagged and os.path.isfile(spec_file) and spec.text_fps != spec.fps:
        # BVH imports made before text_fps followed --fps recorded 20 whatever the frame rate.
        report.add("text_fps", spec_file, f"{spec_file}: text_fps {spec.text_fps:g} but fps {spec.fps:g}, so the time "
                                          f"tags of {len(tagged)} caption files (e.g. {tagged[0]}) are cut at "
                                          f"{spec.text_fps:g} frames per second; if the tags are seconds of these "
                                          f"clips, set \"text_fps\": {spec.fps:g} in {SPEC_FILE}")
    report.checked.update(ids=len(ids), motions=motions, frames=frames, texts=text_files)
    logger.info("validated %s: %d problems", spec.name, len(report.problems))
    return report
