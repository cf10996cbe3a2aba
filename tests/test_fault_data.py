"""Bad data, one fault at a time, through the loaders the scripts use (train_vq.py's data step, train_MARDM.py's text
samples, the evaluation dataset): each is a clear error naming the file and its kind, or a counted skip naming the
clip; ``validate_dataset`` reports the same kind for the same file; ``prepare_data.py validate`` (run as a script on
one dataset holding every fault) lists every kind with its file in one pass."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from fault_helpers import run_script, tail, write_text_encoder, write_tokenizer

import train_MARDM
import train_vq
from options.config import parse_with_config
from options.generator_options import get_train_mardm_parser
from options.tokenizer_options import get_train_vq_parser
from utils.data_validation import KINDS, validate_dataset
from utils.dataset_specs import get_dataset_spec
from utils.datasets import DatasetError, Text2MotionEvalDataset
from utils.normalization import load_mean_std
from utils.word_vectorizer import LearnedVocab

CAPTION = "a person walks forward.#a/DET person/NOUN walk/VERB forward/ADV#0.0#0.0\n"
DIM = 263  # the synthetic spec's feature width (HumanML3D layout)
GOOD_IDS = [f"c{i:02d}" for i in range(10)]


def write_clean(root: Path, frames: int = 80) -> Path:
    """A small valid dataset in the HumanML3D layout: 10 clips of ``frames`` frames, one caption each, all in train."""
    rng = np.random.default_rng(0)
    (root / "new_joint_vecs").mkdir(parents=True)
    (root / "texts").mkdir()
    for clip_id in GOOD_IDS:
        np.save(root / "new_joint_vecs" / f"{clip_id}.npy", rng.standard_normal((frames, DIM)).astype(np.float32))
        (root / "texts" / f"{clip_id}.txt").write_text(CAPTION)
    (root / "train.txt").write_text("\n".join(GOOD_IDS) + "\n")
    (root / "val.txt").write_text("\n".join(GOOD_IDS[:4]) + "\n")
    (root / "test.txt").write_text("\n".join(GOOD_IDS[-2:]) + "\n")
    np.save(root / "Mean.npy", np.zeros(DIM, dtype=np.float32))
    np.save(root / "Std.npy", np.ones(DIM, dtype=np.float32))
    return root


def _add_clip(root: Path, clip_id: str, motion: np.ndarray | bytes | None, caption: str | bytes | None = CAPTION,
              ) -> None:
    """Add ``clip_id`` to the train split with this motion file and caption file (None: no file)."""
    if isinstance(motion, bytes):
        (root / "new_joint_vecs" / f"{clip_id}.npy").write_bytes(motion)
    elif motion is not None:
        np.save(root / "new_joint_vecs" / f"{clip_id}.npy", motion)
    if isinstance(caption, bytes):
        (root / "texts" / f"{clip_id}.txt").write_bytes(caption)
    elif caption is not None:
        (root / "texts" / f"{clip_id}.txt").write_text(caption)
    with open(root / "train.txt", "a") as f:
        f.write(clip_id + "\n")


def _motion(frames: int = 80, value: float | None = None, at: tuple[int, int] = (3, 7)) -> np.ndarray:
    values = np.random.default_rng(1).standard_normal((frames, DIM)).astype(np.float32)
    if value is not None:
        values[at] = value
    return values


# kind -> (how to break a clean dataset with clip ``clip_id``, the file that names the problem)
FAULTS: dict[str, tuple[Callable[[Path, str], None], str]] = {
    "nan": (lambda r, c: _add_clip(r, c, _motion(value=np.nan)), "new_joint_vecs/{id}.npy"),
    "inf": (lambda r, c: _add_clip(r, c, _motion(value=-np.inf)), "new_joint_vecs/{id}.npy"),
    "wrong_dim": (lambda r, c: _add_clip(r, c, np.zeros((80, 67), dtype=np.float32)), "new_joint_vecs/{id}.npy"),
    "too_short": (lambda r, c: _add_clip(r, c, _motion(frames=30)), "new_joint_vecs/{id}.npy"),
    "too_long": (lambda r, c: _add_clip(r, c, _motion(frames=200)), "new_joint_vecs/{id}.npy"),
    "empty_motion": (lambda r, c: _add_clip(r, c, b""), "new_joint_vecs/{id}.npy"),
    "non_numeric": (lambda r, c: _add_clip(r, c, np.full((80, DIM), "x")), "new_joint_vecs/{id}.npy"),
    "missing_text": (lambda r, c: _add_clip(r, c, _motion(), caption=None), "texts/{id}.txt"),
    "empty_text": (lambda r, c: _add_clip(r, c, _motion(), caption="\n"), "texts/{id}.txt"),
    "undecodable_text": (lambda r, c: _add_clip(r, c, _motion(), caption=b"a person \xff walks.#a/DET#0#0\n"),
                         "texts/{id}.txt"),
    "no_tokens": (lambda r, c: _add_clip(r, c, _motion(), caption="a person runs.##0.0#0.0\n"), "texts/{id}.txt"),
    "missing_motion": (lambda r, c: _add_clip(r, c, None), "new_joint_vecs/{id}.npy"),
    "stats_shape": (lambda r, c: np.save(r / "Mean.npy", np.zeros(DIM - 12, dtype=np.float32)), "Mean.npy"),
    "std_zero": (lambda r, c: np.save(r / "Std.npy", np.where(np.arange(DIM) == 70, 0.0, 1.0).astype(np.float32)),
                 "Std.npy"),
}

# kind -> where training meets it: an error, or the skip reason it is counted under (and the stage that counts it).
ERRORS = {"nan": "tokenizer", "inf": "tokenizer", "wrong_dim": "tokenizer", "empty_motion": "tokenizer",
          "non_numeric": "tokenizer", "stats_shape": "tokenizer", "std_zero": "tokenizer",
          "undecodable_text": "generator"}
SKIPS = {"too_short": ("tokenizer", "1 clips shorter than the 64-frame window (bad)"),
         "too_long": ("generator", "1 clips outside 40 <= frames < 200 (bad)"),
         "missing_motion": ("tokenizer", "1 ids without a motion file (bad)"),
         "missing_text": ("generator", "1 clips without a caption file (bad)"),
         "empty_text": ("generator", "1 clips with an empty caption file (bad)"),
         "no_tokens": ("evaluation", "1 captions without tokens (bad)")}


@pytest.fixture(scope="module")
def clip_path(tmp_path_factory) -> str:
    """Weights of a tiny CLIP text tower for train_MARDM.py's --clip_path."""
    return write_text_encoder(tmp_path_factory.mktemp("clip"))


def _tokenizer_stage(root: Path, ckpt: Path, clip: str) -> None:
    """train_vq.py for one step on ``root``."""
    train_vq.main(parse_with_config(get_train_vq_parser(), [
        "--dataset_name", "synthetic", "--data_root", str(root), "--checkpoints_dir", str(ckpt), "--name", "vq",
        "--model", "VQVAE_Tiny", "--batch_size", "4", "--num_workers", "0", "--max_iters", "1", "--eval_every", "100",
        "--val_batches", "1"]))


def _generator_stage(root: Path, ckpt: Path, clip: str) -> None:
    """train_MARDM.py for one step on ``root``, on an untrained FSQ tokenizer of that dataset."""
    tokenizer = write_tokenizer(ckpt / "fsq.tar", "FSQ_AE_Tiny", str(root))
    train_MARDM.main(parse_with_config(get_train_mardm_parser(), [
        "--dataset_name", "synthetic", "--data_root", str(root), "--checkpoints_dir", str(ckpt), "--name", "gen",
        "--model", "FSQ-MARDM-SiT-Tiny", "--ae_ckpt", tokenizer, "--text_encoder", "clip", "--clip_path", clip,
        "--batch_size", "4", "--num_workers", "0", "--max_iters", "1", "--eval_every", "100", "--val_batches", "1"]))


def _evaluation_stage(root: Path, ckpt: Path, clip: str) -> None:
    """The evaluation dataset (captions with their word/POS tokens) of the train split."""
    spec = get_dataset_spec("synthetic", str(root))
    vocab = LearnedVocab.from_split(str(root), "train", dim_word=8)
    Text2MotionEvalDataset(spec, "train", *load_mean_std(spec, str(root)), vocab, str(root), progress=False)


STAGES = {"tokenizer": _tokenizer_stage, "generator": _generator_stage, "evaluation": _evaluation_stage}


def test_every_kind_of_problem_has_a_case():
    assert set(ERRORS) | set(SKIPS) == set(FAULTS)
    assert set(FAULTS) <= set(KINDS)
    assert all(KINDS[kind] == "error" for kind in ERRORS) and all(KINDS[kind] == "warning" for kind in SKIPS)


@pytest.mark.parametrize("kind", sorted(FAULTS))
def test_bad_data_is_a_clear_error_or_a_counted_skip(tmp_path, clip_path, caplog, kind):
    root = write_clean(tmp_path / "data")
    break_it, relative = FAULTS[kind]
    break_it(root, "bad")
    bad_file = str(root / relative.format(id="bad"))
    ckpt = tmp_path / "ck"
    ckpt.mkdir()

    if kind in ERRORS:
        with pytest.raises(DatasetError) as info:
            STAGES[ERRORS[kind]](root, ckpt, clip_path)
        assert info.value.kind == kind and info.value.path == bad_file
        assert str(info.value).startswith(f"{bad_file}: ") and "expected" in str(info.value)
        assert not list(ckpt.rglob("latest.tar"))  # failed while reading the data, before any training
    else:
        stage, reason = SKIPS[kind]
        with caplog.at_level(logging.WARNING, logger="utils.datasets"):
            STAGES[stage](root, ckpt, clip_path)
        assert re.search(rf"skipped .*{re.escape(reason)}", caplog.text), caplog.text
        assert (stage == "evaluation") != bool(list(ckpt.rglob("latest.tar")))  # the stage trained past the skip

    report = validate_dataset(get_dataset_spec("synthetic", str(root)), str(root))
    assert [p.path for p in report.problems if p.kind == kind] == [bad_file], report.format()
    assert report.ok == (kind in SKIPS)


def test_prepare_data_validate_lists_every_problem_in_one_pass(tmp_path):
    root = write_clean(tmp_path / "data")
    files = {}
    for kind, (break_it, relative) in FAULTS.items():
        break_it(root, f"{kind}_clip")  # one clip of its own per kind
        files[kind] = str(root / relative.format(id=f"{kind}_clip"))
    done = run_script("prepare_data.py", ["validate", "--dataset_name", "synthetic", "--data_root", str(root)])
    assert done.returncode == 1, tail(done)
    assert done.stdout.startswith(f"dataset 'synthetic' at {root}: FAILED"), tail(done)
    sections = _sections(done.stdout)
    assert set(sections) == set(FAULTS), sorted(sections)
    for kind, path in files.items():
        header, lines = sections[kind]
        assert header == f"{KINDS[kind]} {kind}: 1", header
        assert len(lines) == 1 and path in lines[0], (kind, lines)


def _sections(report: str) -> dict[str, tuple[str, list[str]]]:
    """``validate``'s output -> {kind: (header "severity kind: count", [its message lines])}."""
    sections: dict[str, tuple[str, list[str]]] = {}
    kind = None
    for line in report.splitlines()[1:]:
        if line.startswith("    ") and kind is not None:
            sections[kind][1].append(line.strip())
        elif line.startswith("  "):
            header = line.strip()
            kind = header.split()[1].rstrip(":")
            sections[kind] = (header, [])
    return sections
