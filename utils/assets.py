"""The files the published protocol reads and nothing here can download: a dataset's files, the Guo et al. evaluator
and the GloVe vectors it reads, and the CLIP ViT-B/32 weights and vocabulary the published generators condition on.

``check_assets`` looks at each where the scripts will look and says, per file, whether it is there and usable:

- the dataset folder: the motion and text folders, ``Mean.npy`` / ``Std.npy`` of the dataset's width, the split files
  (``prepare_data.py validate`` checks every motion and caption);
- the evaluator: that it loads (``utils.evaluator.load_evaluator``, which reads the released layout's statistics) and,
  when it reads GloVe rather than its own vocabulary, that the three GloVe files load;
- the CLIP files: size and SHA-256 against OpenAI's published files (the hash is the folder name in the URL
  ``clip.load("ViT-B/32")`` downloads from; the vocabulary is the one in OpenAI's CLIP package).

Nothing is fetched. Each problem says where the file is expected and where it comes from; ``prepare_data.py assets``
prints the table and ``reproduce.py`` refuses a paper run with the same messages.
"""

from __future__ import annotations

import os
import pickle
from dataclasses import dataclass, replace
from typing import NamedTuple

import numpy as np

from models.text_encoders import CLIP_VOCAB_NAME
from utils.checkpoint import CheckpointError, file_sha256
from utils.dataset_specs import get_dataset_spec
from utils.evaluator import load_evaluator, resolve_evaluator_path, trained_evaluator_source
from utils.motion_files import MOTION_DIR, TEXT_DIR
from utils.paths import project_path
from utils.word_vectorizer import WordVectorizer, glove_file_names

README_SECTION = "README, 'Evaluator and text-encoder files'"
# Datasets whose released evaluators (Guo et al.'s, MARDM's) read the GloVe vectors.
GLOVE_EVALUATOR_DATASETS = ("t2m", "kit", "t2m_67", "kit_64")
OK, MISSING, BAD = "ok", "missing", "bad"


class Published(NamedTuple):
    """A released file: its SHA-256 and size in bytes, and where it comes from."""

    sha256: str
    size: int
    origin: str


# OpenAI's CLIP release: the weights' hash is the folder name of their download URL, which clip.load checks.
PUBLISHED = {
    "ViT-B-32.pt": Published("40d365715913c9da98579312b702a82c18be219cc2a73407c4526f58eba950af", 353_976_522,
                             "OpenAI's CLIP ViT-B/32 weights, the file clip.load('ViT-B/32') downloads"),
    CLIP_VOCAB_NAME: Published("924691ac288e54409236115652ad4aa250f48203de50a9e4722a6ecd48d6804a", 1_356_917,
                               "OpenAI's BPE vocabulary, clip/bpe_simple_vocab_16e6.txt.gz in their CLIP package"),
}


@dataclass(frozen=True)
class AssetCheck:
    """One file or folder: what it is, where it was looked for, ``state`` (ok, missing or bad) and why."""

    asset: str
    path: str
    state: str
    detail: str = ""

    @property
    def problem(self) -> str:
        """The line a refusal shows ("" when the file is usable)."""
        return "" if self.state == OK else f"{self.asset}: {self.path} {self.detail}"


def check_dataset(dataset_name: str, data_root: str | None = None) -> list[AssetCheck]:
    """The dataset's folders, statistics and split files."""
    spec = get_dataset_spec(dataset_name, data_root)
    root = spec.root
    checks = []
    for name in (MOTION_DIR, TEXT_DIR):
        path = os.path.join(root, name)
        found = os.path.isdir(path) and _has_entries(path)
        checks.append(AssetCheck(f"dataset {spec.name} {name}", path, OK if found else MISSING,
                                 "" if found else "is missing or empty (dataset/README.md says what goes there; "
                                                  "--data_root names another folder)"))
    for name in ("Mean.npy", "Std.npy"):
        checks.append(_check_statistics(f"dataset {spec.name} {name}", os.path.join(root, name),
                                        sorted({spec.dim_pose, spec.file_dim})))
    for split in ("train", "val", "test"):
        path = os.path.join(root, f"{split}.txt")
        found = os.path.isfile(path)
        checks.append(AssetCheck(f"dataset {spec.name} split", path, OK if found else MISSING,
                                 "" if found else "is missing (one motion id per line)"))
    return checks


def _has_entries(folder: str) -> bool:
    with os.scandir(folder) as entries:
        return any(entries)


def _check_statistics(asset: str, path: str, widths: list[int]) -> AssetCheck:
    if not os.path.isfile(path):
        return AssetCheck(asset, path, MISSING, "is missing (copy the dataset's file, or compute it with "
                                                "prepare_data.py stats)")
    try:
        array = np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError, EOFError) as e:  # EOFError: an empty file
        return AssetCheck(asset, path, BAD, f"is not a readable .npy ({e})")
    if not isinstance(array, np.ndarray):  # np.load opens a zip archive as an NpzFile, whatever the name
        array.close()
        return AssetCheck(asset, path, BAD, "is a .npz archive, not a .npy array")
    shape = array.shape
    if len(shape) != 1 or shape[0] not in widths:
        return AssetCheck(asset, path, BAD, f"has shape {shape}; expected {' or '.join(f'({w},)' for w in widths)}, "
                                            f"one value per feature")
    return AssetCheck(asset, path, OK, f"{shape[0]} features")


def check_evaluator(evaluator_dir: str, dataset_name: str, data_root: str | None = None,
                    glove_dir: str | None = None, load: bool = True, official: bool = False) -> list[AssetCheck]:
    """The evaluator (loaded, with its statistics) and, when it reads GloVe, the three GloVe files; without ``load``
    only that the evaluator file is there. With ``official``, an evaluator ``train_evaluator.py`` wrote is refused:
    where the published numbers were measured with the released one, its numbers are not comparable with them."""
    asset = f"evaluator {dataset_name}"
    try:
        path = resolve_evaluator_path(evaluator_dir)
    except CheckpointError:
        missing = [AssetCheck(asset, os.path.join(evaluator_dir, "model", "finest.tar"), MISSING,
                              f"is missing: place the official evaluator files there ({README_SECTION}), or train one "
                              f"with train_evaluator.py (its numbers are not comparable with the papers')")]
        if load and dataset_name in GLOVE_EVALUATOR_DATASETS:  # what the official one will read, listed at once
            glove = check_glove(glove_dir or project_path("glove"))
            missing.append(glove if glove.state == OK else
                           replace(glove, detail=f"{glove.detail}; the official evaluator reads them"))
        return missing
    if not load:
        try:
            source = trained_evaluator_source(path) if official else None
        except CheckpointError:
            source = None  # what is wrong with the file is said where it is loaded
        if source is not None:
            return [AssetCheck(asset, path, BAD, _not_official(source, evaluator_dir))]
        return [AssetCheck(asset, path, OK, "present (not loaded)")]
    try:
        evaluator = load_evaluator(path, dataset_name, data_root=data_root)
    except (OSError, ValueError, KeyError, RuntimeError, CheckpointError) as e:
        return [AssetCheck(asset, path, BAD, f"does not load: {e}")]
    if official and not evaluator.released:
        return [AssetCheck(asset, path, BAD, _not_official(evaluator.source, evaluator_dir))]
    checks = [AssetCheck(asset, path, OK, f"{evaluator.source}, epoch {evaluator.epoch}")]
    if evaluator.vocab is None:  # the released evaluators read GloVe; ours may carry their own vocabulary
        glove = check_glove(glove_dir or project_path("glove"), dim_word=evaluator.dim_word)
        if glove.state == OK and evaluator.glove_sha256 is not None:  # ours record which vectors they read
            try:
                evaluator.word_vectorizer(glove.path)
            except ValueError as e:
                glove = replace(glove, state=BAD, detail=str(e))
        checks.append(glove)
    return checks


def _not_official(source: str, evaluator_dir: str) -> str:
    return (f"was trained with train_evaluator.py (word vectors: {source}), not released with the papers: the "
            f"published numbers were measured with the official evaluator, and this one's are not comparable with "
            f"them, so it is used only when named: pass --evaluator_dir {evaluator_dir} to use it anyway, or put the "
            f"official evaluator there ({README_SECTION})")


def check_glove(glove_dir: str, dim_word: int | None = None) -> AssetCheck:
    """The three GloVe files the released evaluators read (loaded and cross-checked by ``WordVectorizer``); with
    ``dim_word``, their vectors must have the width the evaluator's text encoder reads."""
    names = glove_file_names()
    try:
        vectors = WordVectorizer(glove_dir)
    except FileNotFoundError:
        absent = [n for n in names if not os.path.isfile(os.path.join(glove_dir, n))]
        return AssetCheck("GloVe vectors", glove_dir, MISSING, f"lacks {', '.join(absent)} ({README_SECTION})")
    except (OSError, ValueError, pickle.UnpicklingError) as e:  # a word list that is an HTML page, empty, cut short
        return AssetCheck("GloVe vectors", glove_dir, BAD, f"do not load: {e}")
    if dim_word is not None and vectors.dim_word != dim_word:
        data_path = os.path.join(glove_dir, names[0])
        return AssetCheck("GloVe vectors", glove_dir, BAD, f"hold {vectors.dim_word}-dim vectors ({data_path}) but the "
                                                           f"evaluator's text encoder reads {dim_word}-dim ones")
    return AssetCheck("GloVe vectors", glove_dir, OK, f"{len(vectors.word2idx)} words")


def check_published(asset: str, path: str, name: str) -> AssetCheck:
    """A file of ``PUBLISHED[name]``: present, of the published size and SHA-256."""
    published = PUBLISHED[name]
    if not os.path.isfile(path):
        return AssetCheck(asset, path, MISSING, f"is missing: {published.origin} ({README_SECTION})")
    size = os.path.getsize(path)
    if size != published.size:
        return AssetCheck(asset, path, BAD, f"has {size} bytes; {published.origin} has {published.size} (a partial "
                                            f"download, an HTML error page or another file)")
    try:
        digest = file_sha256(path)
    except OSError as e:
        return AssetCheck(asset, path, BAD, f"cannot be read ({e.strerror or e})")
    if digest != published.sha256:
        return AssetCheck(asset, path, BAD, f"has SHA-256 {digest}; {published.origin} has {published.sha256}")
    return AssetCheck(asset, path, OK, f"SHA-256 {digest[:12]}... as published")


def check_clip(weights_path: str) -> list[AssetCheck]:
    """CLIP ViT-B/32 weights and the vocabulary beside them, against OpenAI's published files."""
    vocab = os.path.join(os.path.dirname(weights_path), CLIP_VOCAB_NAME)
    return [check_published("CLIP weights", weights_path, "ViT-B-32.pt"),
            check_published("CLIP vocabulary", vocab, CLIP_VOCAB_NAME)]


def format_checks(checks: list[AssetCheck]) -> str:
    """One line per check: state, asset, then path and detail."""
    width = max((len(c.asset) for c in checks), default=0)
    return "\n".join(f"{c.state.upper():8s} {c.asset:{width}s}  {c.path}{': ' + c.detail if c.detail else ''}"
                     for c in checks)
