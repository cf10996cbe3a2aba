"""Behaviour pinned at its edges: which staging folders the next import removes (only those named exactly as this
host's, of a process gone, in name order, an --out without a folder included), the learning-rate schedule when a
milestone falls inside the warm-up, the co-embedding's outputs, and prepare_data's statistics (HumanML3D's mean and
group-averaged std of the listed clips), their warnings and the import summary's hint."""

from __future__ import annotations

import logging
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from test_script_steps_contracts import _import_summary

from models.evaluator import TextMotionEvaluator
from models.evaluator_training import CoEmbedding
from utils.dataset_prep import import_summary_lines, write_dataset_stats
from utils.dataset_specs import get_dataset_spec
from utils.lr_schedule import lr_at_step, lr_factor
from utils.motion_files import MOTION_DIR, dataset_clips
from utils.normalization import DatasetError
from utils.paths import HOME_ENV
from utils.staging import remove_abandoned_staging, staging_folder
from utils.synthetic import generate_synthetic_dataset

# ---------------------------------------------------------------------------------------------------------------------
# Staging folders left behind


def _dead_pids(count: int) -> list[int]:
    """pids of processes of this host that have ended."""
    pids = []
    for _ in range(count):
        proc = subprocess.Popen(["true"])
        proc.wait()
        pids.append(proc.pid)
    return pids


def _staged(out: Path, pid: int, suffix: str = "") -> Path:
    """A folder named as a staging folder of ``out`` on this host by ``pid``, holding one file."""
    folder = Path(staging_folder(str(out), "importing").rsplit("-", 1)[0] + f"-{pid}{suffix}")
    folder.mkdir()
    (folder / "clip.npy").write_bytes(b"x")
    return folder


def test_only_folders_named_exactly_as_staging_folders_are_removed(tmp_path):
    (pid,) = _dead_pids(1)
    backup = _staged(tmp_path / "Mocap", pid, suffix=".bak")
    lookalike = _staged(tmp_path / "Mo.cap", pid)
    lookalike = lookalike.rename(tmp_path / lookalike.name.replace("Mo.cap", "Moxcap", 1))
    abandoned = _staged(tmp_path / "Mo.cap", pid)
    assert remove_abandoned_staging(str(tmp_path / "Mocap"), "importing", "an import") == []
    assert remove_abandoned_staging(str(tmp_path / "Mo.cap"), "importing", "an import") == [str(abandoned)]
    assert (backup / "clip.npy").is_file() and (lookalike / "clip.npy").is_file() and not abandoned.exists()


def test_abandoned_staging_folders_are_removed_and_returned_in_name_order(tmp_path):
    folders = [_staged(tmp_path / "Mocap", pid) for pid in _dead_pids(6)]
    removed = remove_abandoned_staging(str(tmp_path / "Mocap"), "importing", "an import")
    assert removed == sorted(str(f) for f in folders) and not any(f.exists() for f in folders)


def test_an_out_given_without_a_folder_is_looked_for_in_the_working_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    own = Path(staging_folder("Mocap", "importing"))
    own.mkdir()
    assert remove_abandoned_staging("Mocap", "importing", "an import") == [str(own)]
    assert not (tmp_path / own).exists()


# ---------------------------------------------------------------------------------------------------------------------
# Learning-rate schedule


def test_a_milestone_inside_the_warm_up_decays_the_ramp():
    kw = dict(warm_up_iter=4, milestones=[2], lr_decay=0.5)
    assert [lr_factor(s, **kw) for s in range(6)] == pytest.approx([0.25, 0.5, 0.375, 0.5, 0.5, 0.5])
    assert lr_at_step(2, 1e-3, **kw) == pytest.approx(1e-3 * 0.5 * 3 / 4)


# ---------------------------------------------------------------------------------------------------------------------
# The evaluator's co-embedding stage


def _evaluator() -> TextMotionEvaluator:
    torch.manual_seed(0)
    return TextMotionEvaluator(dim_pose=12, dim_word=6, dim_pos_ohot=15, dim_movement_enc_hidden=8,
                               dim_movement_latent=8, dim_text_hidden=8, dim_motion_hidden=8, dim_coemb_hidden=8)


def test_co_embedding_returns_the_text_then_the_motion_embedding_of_whole_movement_steps():
    """Lengths that are not multiples of unit_length read their whole movement steps only, as the evaluator does."""
    evaluator = _evaluator()
    model = CoEmbedding(evaluator).eval()
    words, pos, cap_lens = torch.randn(2, 5, 6), torch.randn(2, 5, 15), torch.tensor([5, 3])
    motion, m_lens = torch.randn(2, 16, 12), torch.tensor([15, 11])
    text_emb, motion_emb = model(words, pos, cap_lens, motion, m_lens)
    with torch.no_grad():
        assert torch.allclose(text_emb, evaluator.encode_text(words, pos, cap_lens), atol=1e-6)
        steps = torch.tensor([3, 2])
        assert torch.allclose(motion_emb, evaluator.motion_encoder(evaluator.encode_movements(motion), steps),
                              atol=1e-6)


# ---------------------------------------------------------------------------------------------------------------------
# prepare_data.py stats


def test_stats_are_humanml3d_mean_and_group_averaged_std_of_the_listed_clips_only(tmp_path, caplog):
    """Mean over every frame of every clip the split files list, std averaged within each feature group; a .npy no
    split lists is named in a warning and kept out of the sums."""
    root = tmp_path / "Synthetic"
    generate_synthetic_dataset(str(root), 3, seed=0)
    for name in ("Mean.npy", "Std.npy"):
        (root / name).unlink()
    spec = get_dataset_spec("synthetic", str(root))
    ids = dataset_clips(str(root)).ids
    np.save(root / MOTION_DIR / "notes.npy", np.full((30, spec.file_dim), 1e3, np.float32))
    with caplog.at_level(logging.WARNING, logger="prepare_data"):
        stats = write_dataset_stats(spec, str(root), None, overwrite=False)
    assert stats == (len(ids), "every clip of the splits")
    assert "notes.npy" in caplog.text and "are not clips" in caplog.text
    frames = np.concatenate([np.load(root / MOTION_DIR / f"{clip}.npy") for clip in ids]).astype(np.float64)
    expected_std = frames.std(0)
    for group in spec.layout:
        expected_std[group.start:group.stop] = expected_std[group.start:group.stop].mean()
    expected_std[expected_std <= 1e-8] = 1.0
    np.testing.assert_allclose(np.load(root / "Mean.npy"), frames.mean(0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.load(root / "Std.npy"), expected_std, rtol=1e-4, atol=1e-6)
    assert np.load(root / "Mean.npy").shape == (spec.file_dim,)


def test_an_import_into_the_default_dataset_folder_needs_no_data_root(tmp_path, monkeypatch):
    monkeypatch.setenv(HOME_ENV, str(tmp_path))
    out = str(tmp_path / "dataset" / "Mocap")
    lines = import_summary_lines("bvh", _import_summary(out), out, 30.0)
    assert lines[-1] == "  use it with --dataset_name Mocap"


def test_stats_without_split_files_explain_an_unreadable_stray_file(tmp_path):
    root = tmp_path / "Synthetic"
    generate_synthetic_dataset(str(root), 3, seed=2)
    for name in ("Mean.npy", "Std.npy", *(f"{s}.txt" for s in ("train", "val", "test", "train_val", "all"))):
        if (root / name).exists():
            (root / name).unlink()
    (root / MOTION_DIR / "notes.npy").write_bytes(b"not a numpy file")
    with pytest.raises(DatasetError, match=r"notes\.npy.*\(without train/val/test\.txt every \.npy under "
                                           r"new_joint_vecs/ is a clip: move other files out") as refused:
        write_dataset_stats(get_dataset_spec("synthetic", str(root)), str(root), None, overwrite=False)
    assert refused.value.kind == "unreadable_motion" and not (root / "Mean.npy").exists()
