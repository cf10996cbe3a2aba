"""utils/assets.py and ``prepare_data.py assets``: the files the published protocol reads, checked where the scripts
look for them, CLIP files against OpenAI's published size and SHA-256."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch

from utils import assets
from utils.assets import BAD, MISSING, OK, Published, check_clip, check_dataset, check_evaluator, check_published
from utils.dataset_specs import get_dataset_spec
from utils.evaluator import build_evaluator, save_evaluator
from utils.normalization import eval_normalization
from utils.word_vectorizer import LearnedVocab, write_glove_folder

ROOT = Path(__file__).resolve().parents[1]


def _dataset(root: Path) -> None:
    """Two captioned 263-dim clips in the HumanML3D layout."""
    (root / "new_joint_vecs").mkdir(parents=True)
    (root / "texts").mkdir()
    for i in range(2):
        np.save(root / "new_joint_vecs" / f"m{i}.npy", np.random.default_rng(i).standard_normal((40, 263)))
        (root / "texts" / f"m{i}.txt").write_text("a person walks.#a/DET person/NOUN walk/VERB#0.0#0.0\n")
    for split in ("train", "val", "test"):
        (root / f"{split}.txt").write_text("m0\nm1\n")
    np.save(root / "Mean.npy", np.zeros(263, np.float32))
    np.save(root / "Std.npy", np.ones(263, np.float32))


def _own_evaluator(folder: str, data: str) -> tuple[np.ndarray, np.ndarray]:
    """A tiny evaluator trained-style (its own vocabulary) saved in ``folder``; returns its statistics."""
    stats = eval_normalization(np.zeros(263, np.float32), np.ones(263, np.float32), get_dataset_spec("synthetic", data))
    torch.manual_seed(0)
    save_evaluator(os.path.join(folder, "model", "finest.tar"),
                   build_evaluator("synthetic", *stats, word_vectors=LearnedVocab.from_split(data, "train", 8),
                                   sizes="tiny", data_root=data))
    return stats


def _states(checks) -> dict[str, str]:
    return {f"{c.asset} {Path(c.path).name}": c.state for c in checks}


def test_dataset_files_are_found_or_named(tmp_path):
    _dataset(tmp_path)
    assert all(c.state == OK for c in check_dataset("synthetic", str(tmp_path)))
    # The 67-dim subset reads the same 263-dim statistics files.
    assert all(c.state == OK for c in check_dataset("t2m_67", str(tmp_path)))
    np.save(tmp_path / "Std.npy", np.ones(100, np.float32))
    (tmp_path / "val.txt").unlink()
    states = _states(check_dataset("synthetic", str(tmp_path)))
    assert states["dataset synthetic Std.npy Std.npy"] == BAD and states["dataset synthetic split val.txt"] == MISSING
    bad = [c for c in check_dataset("synthetic", str(tmp_path)) if c.state != OK]
    assert [c.problem for c in bad] == [
        f"dataset synthetic Std.npy: {tmp_path / 'Std.npy'} has shape (100,); expected (263,), one value per feature",
        f"dataset synthetic split: {tmp_path / 'val.txt'} is missing (one motion id per line)"]


def test_published_files_are_checked_by_size_and_sha256(tmp_path, monkeypatch):
    good = tmp_path / "deps" / "ViT-B-32.pt"
    good.parent.mkdir()
    good.write_bytes(b"weights")
    vocab = good.parent / "bpe_simple_vocab_16e6.txt.gz"
    vocab.write_bytes(b"vocab!!")  # the same size as the weights file here
    monkeypatch.setitem(assets.PUBLISHED, "ViT-B-32.pt",
                        Published(hashlib.sha256(b"weights").hexdigest(), 7, "the weights"))
    monkeypatch.setitem(assets.PUBLISHED, "bpe_simple_vocab_16e6.txt.gz",
                        Published(hashlib.sha256(b"vocab??").hexdigest(), 7, "the vocabulary"))
    weights, vocabulary = check_clip(str(good))
    assert weights.state == OK and vocabulary.state == BAD
    digest = hashlib.sha256(b"vocab!!").hexdigest()
    assert vocabulary.problem.startswith(f"CLIP vocabulary: {vocab} has SHA-256 {digest}; the vocabulary has ")
    good.write_bytes(b"<html>")
    assert "has 6 bytes; the weights has 7 (a partial download" in check_published("CLIP weights", str(good),
                                                                                  "ViT-B-32.pt").detail
    assert check_published("CLIP weights", str(tmp_path / "none.pt"), "ViT-B-32.pt").state == MISSING
    good.write_bytes(b"weights")

    def unreadable(path):  # a file without read permission (which root reads anyway, so simulated)
        raise PermissionError(13, "Permission denied", path)

    monkeypatch.setattr(assets, "file_sha256", unreadable)
    check = check_published("CLIP weights", str(good), "ViT-B-32.pt")
    assert check.state == BAD and check.detail == "cannot be read (Permission denied)"


def test_the_published_clip_hashes_are_openais():
    # The weights' hash is the folder name of the URL clip.load("ViT-B/32") downloads from.
    assert assets.PUBLISHED["ViT-B-32.pt"].sha256 == "40d365715913c9da98579312b702a82c18be219cc2a73407c4526f58eba950af"
    assert assets.PUBLISHED["bpe_simple_vocab_16e6.txt.gz"].size == 1_356_917


def test_an_evaluator_is_loaded_and_its_glove_checked(tmp_path):
    _dataset(tmp_path / "data")
    data = str(tmp_path / "data")
    missing = check_evaluator(str(tmp_path / "ev"), "synthetic", data)
    assert [c.state for c in missing] == [MISSING] and "train_evaluator.py" in missing[0].detail
    # Where the official evaluator is GloVe's, its vectors are listed at once with the missing evaluator.
    ev, glove = check_evaluator(str(tmp_path / "ev"), "t2m", glove_dir=str(tmp_path / "glove"))
    assert ev.state == glove.state == MISSING and glove.detail.endswith("; the official evaluator reads them")
    assert len(check_evaluator(str(tmp_path / "ev"), "t2m", glove_dir=str(tmp_path / "glove"), load=False)) == 1
    stats = _own_evaluator(str(tmp_path / "own"), data)
    own = check_evaluator(str(tmp_path / "own"), "synthetic", data, glove_dir=str(tmp_path / "glove"))
    assert [c.state for c in own] == [OK]  # its own vocabulary: no GloVe needed
    save_evaluator(str(tmp_path / "glove_ev" / "model" / "finest.tar"),
                   build_evaluator("synthetic", *stats, dim_word=8, sizes="tiny", data_root=data))
    ev, glove = check_evaluator(str(tmp_path / "glove_ev"), "synthetic", data, glove_dir=str(tmp_path / "glove"))
    assert ev.state == OK and glove.state == MISSING and "our_vab_data.npy" in glove.detail
    write_glove_folder(str(tmp_path / "glove"), ["sos", "eos", "unk", "walk", "person"], np.ones((5, 8)))
    ev, glove = check_evaluator(str(tmp_path / "glove_ev"), "synthetic", data, glove_dir=str(tmp_path / "glove"))
    assert glove.state == OK and glove.detail == "5 words"
    (tmp_path / "glove" / "our_vab_data.npy").write_bytes(b"not an array")
    assert check_evaluator(str(tmp_path / "glove_ev"), "synthetic", data, glove_dir=str(tmp_path / "glove"))[1].state \
        == BAD
    (tmp_path / "broken" / "model").mkdir(parents=True)
    (tmp_path / "broken" / "model" / "finest.tar").write_bytes(b"not a checkpoint")
    assert check_evaluator(str(tmp_path / "broken"), "synthetic", data)[0].state == BAD
    assert check_evaluator(str(tmp_path / "broken"), "synthetic", data, load=False)[0].state == OK


def test_prepare_data_assets_prints_every_file_and_fails_when_one_is_missing(tmp_path):
    _dataset(tmp_path / "data")
    argv = [sys.executable, str(ROOT / "prepare_data.py"), "assets", "--dataset_name", "synthetic", "--data_root",
            str(tmp_path / "data"), "--checkpoints_dir", str(tmp_path / "ck")]
    done = subprocess.run([*argv, "--clip_path", str(tmp_path / "deps" / "ViT-B-32.pt")], capture_output=True,
                          text=True, timeout=120)
    lines = done.stdout.splitlines()
    assert done.returncode == 1 and lines[-1] == "7 of 10 ok; 3 to fix"
    assert lines[7].startswith("MISSING  evaluator synthetic") and lines[8].startswith("MISSING  CLIP weights")
    assert lines[-2].startswith("note: only runs with --text_encoder clip") and "--clip_path ''" in lines[-2]
    done = subprocess.run([*argv, "--clip_path", ""], capture_output=True, text=True, timeout=120)
    assert done.stdout.splitlines()[-1] == "7 of 8 ok; 1 to fix" and "note:" not in done.stdout
    spec = get_dataset_spec("synthetic", str(tmp_path / "data"))
    save_evaluator(str(tmp_path / "ck" / "synthetic" / "text_mot_match" / "model" / "finest.tar"),
                   build_evaluator("synthetic", np.zeros(263, np.float32), np.ones(263, np.float32),
                                   word_vectors=LearnedVocab.from_split(str(tmp_path / "data"), "train", 8),
                                   sizes="tiny", data_root=spec.root))
    done = subprocess.run([*argv, "--clip_path", ""], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.splitlines()[-1] == "8 of 8 ok", done.stdout + done.stderr



def test_a_glove_word_list_that_is_no_pickle_is_named_bad(tmp_path):
    """A failed download saves an HTML page, an empty file or a truncated pickle: each is a BAD line naming the file,
    not a traceback out of the check."""
    glove = tmp_path / "glove"
    write_glove_folder(str(glove), ["sos", "eos", "unk", "walk", "person"], np.ones((5, 8)))
    words = glove / "our_vab_words.pkl"
    intact = words.read_bytes()
    for content in (b"<!DOCTYPE html><html>Google Drive - quota exceeded</html>", intact[:len(intact) // 2], b""):
        words.write_bytes(content)
        check = assets.check_glove(str(glove))
        assert check.state == BAD and str(words) in check.detail, check


def test_empty_npy_files_are_named_bad(tmp_path):
    """An empty .npy (a download that wrote nothing) makes np.load raise EOFError: a BAD line, not a traceback."""
    _dataset(tmp_path / "data")
    (tmp_path / "data" / "Mean.npy").write_bytes(b"")
    states = _states(check_dataset("synthetic", str(tmp_path / "data")))
    assert states["dataset synthetic Mean.npy Mean.npy"] == BAD
    glove = tmp_path / "glove"
    write_glove_folder(str(glove), ["sos", "eos", "unk", "walk", "person"], np.ones((5, 8)))
    (glove / "our_vab_data.npy").write_bytes(b"")
    check = assets.check_glove(str(glove))
    assert check.state == BAD and str(glove / "our_vab_data.npy") in check.detail, check


def test_released_evaluator_statistics_that_do_not_load_are_named(tmp_path):
    """The released layout's meta/mean.npy and std.npy: an empty file or an HTML page in their place is a BAD line
    naming the file, not a traceback or an error without it."""
    import json
    import shutil

    fixture = ROOT / "tests" / "fixtures" / "t2m_evaluator"
    manifest = json.loads((fixture / "manifest.json").read_text())
    dim_pose = manifest["constructor"]["kwargs"]["dim_pose"]
    dataset = next(n for n in ("t2m", "synthetic") if get_dataset_spec(n).dim_pose == dim_pose)
    (tmp_path / "ev" / "model").mkdir(parents=True)
    shutil.copy(fixture / manifest["checkpoint"]["file"], tmp_path / "ev" / "model" / "finest.tar")
    meta = tmp_path / "ev" / "meta"
    meta.mkdir()
    np.save(meta / "std.npy", np.ones(dim_pose, np.float32))
    for content in (b"", b"<!DOCTYPE html><html>Google Drive</html>"):
        (meta / "mean.npy").write_bytes(content)
        (check,) = check_evaluator(str(tmp_path / "ev"), dataset, glove_dir=str(tmp_path / "glove"))[:1]
        assert check.state == BAD and str(meta / "mean.npy") in check.detail, check


def test_glove_vectors_of_another_width_than_the_evaluator_reads_are_named_bad(tmp_path):
    """The evaluator's text encoder reads dim_word-wide vectors: GloVe files of another width load as a vocabulary
    but fail at the first evaluation, so the check must not call them usable."""
    _dataset(tmp_path / "data")
    data = str(tmp_path / "data")
    spec = get_dataset_spec("synthetic", data)
    stats = eval_normalization(np.zeros(263, np.float32), np.ones(263, np.float32), spec)
    save_evaluator(str(tmp_path / "ev" / "model" / "finest.tar"),
                   build_evaluator("synthetic", *stats, dim_word=8, sizes="tiny", data_root=data))
    glove = tmp_path / "glove"
    write_glove_folder(str(glove), ["sos", "eos", "unk", "walk"], np.ones((4, 6)))
    ev, check = check_evaluator(str(tmp_path / "ev"), "synthetic", data, glove_dir=str(glove))
    assert ev.state == OK and check.state == BAD, check
    assert str(glove / "our_vab_data.npy") in check.detail and "6" in check.detail and "8" in check.detail
    write_glove_folder(str(glove), ["sos", "eos", "unk", "walk"], np.ones((4, 8)))
    assert check_evaluator(str(tmp_path / "ev"), "synthetic", data, glove_dir=str(glove))[1].state == OK


def test_glove_vectors_other_than_those_the_evaluator_records_are_named_bad(tmp_path):
    """An evaluator trained here with a GloVe folder records the digest of its vectors: another folder of the same
    width would give other scores, so the check must not call it usable."""
    from utils.word_vectorizer import WordVectorizer

    _dataset(tmp_path / "data")
    data = str(tmp_path / "data")
    words = ["sos", "eos", "unk", "walk", "person"]
    for name, seed in (("glove", 0), ("other", 1)):
        write_glove_folder(str(tmp_path / name), words, np.random.default_rng(seed).standard_normal((5, 8)))
    stats = eval_normalization(np.zeros(263, np.float32), np.ones(263, np.float32), get_dataset_spec("synthetic", data))
    save_evaluator(str(tmp_path / "ev" / "model" / "finest.tar"),
                   build_evaluator("synthetic", *stats, word_vectors=WordVectorizer(str(tmp_path / "glove")),
                                   sizes="tiny", data_root=data))
    ev, check = check_evaluator(str(tmp_path / "ev"), "synthetic", data, glove_dir=str(tmp_path / "other"))
    assert ev.state == OK and check.state == BAD and "word_vectors.sha256" in check.detail, check
    assert check_evaluator(str(tmp_path / "ev"), "synthetic", data, glove_dir=str(tmp_path / "glove"))[1].state == OK


def test_an_empty_motion_or_text_folder_is_reported_missing(tmp_path):
    _dataset(tmp_path)
    assert all(c.state == OK for c in check_dataset("synthetic", str(tmp_path)))
    for f in (tmp_path / "new_joint_vecs").iterdir():
        f.unlink()
    states = {os.path.basename(c.path): c.state for c in check_dataset("synthetic", str(tmp_path))}
    assert states["new_joint_vecs"] == MISSING and states["texts"] == OK
    problem = [c.problem for c in check_dataset("synthetic", str(tmp_path)) if c.state != OK]
    assert len(problem) == 1 and "is missing or empty" in problem[0]


def test_statistics_of_another_shape_than_one_value_per_feature_are_bad(tmp_path):
    _dataset(tmp_path)
    np.save(tmp_path / "Mean.npy", np.zeros((263, 2), np.float32))
    np.save(tmp_path / "Std.npy", np.ones((263,), np.float32))
    states = {os.path.basename(c.path): c for c in check_dataset("synthetic", str(tmp_path))}
    assert states["Mean.npy"].state == BAD and "has shape (263, 2)" in states["Mean.npy"].detail
    assert states["Std.npy"].state == OK


def test_a_trained_evaluator_is_refused_for_an_official_run_loaded_or_not(tmp_path):
    _dataset(tmp_path / "data")
    data = str(tmp_path / "data")
    _own_evaluator(str(tmp_path / "own"), data)
    for load in (False, True):
        [check] = check_evaluator(str(tmp_path / "own"), "synthetic", data, load=load, official=True)
        assert check.state == BAD and "was trained with train_evaluator.py" in check.detail
        assert f"--evaluator_dir {tmp_path / 'own'}" in check.detail
        assert [c.state for c in check_evaluator(str(tmp_path / "own"), "synthetic", data, load=load)] == [OK]
