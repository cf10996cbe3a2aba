"""A dataset's clips rendered without ``--out`` go to ``<dataset>/renders/``, never into ``new_joint_vecs/`` where
``prepare_data.py stats`` would read the joints saved beside a video as a clip; and ``stats`` reads the clips the
split files list, naming other ``.npy`` files under ``new_joint_vecs/`` instead of failing on them."""

from __future__ import annotations

import logging
import os
import shutil

import numpy as np
import pytest
from test_render import assert_gif, random_walk

import prepare_data
import render
from utils.motion_files import read_split
from utils.synthetic import generate_synthetic_dataset


@pytest.fixture
def dataset(tmp_path):
    """A three-clip synthetic dataset (splits, statistics, new_joint_vecs/ and new_joints/)."""
    root = tmp_path / "dataset" / "Synthetic"
    generate_synthetic_dataset(str(root), 3, seed=0)
    return root


@pytest.fixture
def no_ffmpeg(monkeypatch):
    from utils import plot_script

    monkeypatch.setattr(plot_script.shutil, "which", lambda *args, **kwargs: None)


def _stats(root, *extra: str) -> int:
    args = ["stats", "--dataset_name", "synthetic", "--data_root", str(root), "--overwrite", *extra]
    return prepare_data.main(prepare_data.parse_args(args))


def test_a_dataset_clip_renders_into_the_dataset_s_renders_folder_and_stats_still_runs(no_ffmpeg, dataset, caplog,
                                                                                         capsys):
    clip = read_split(str(dataset), "train")[0]
    before = {sub: sorted(os.listdir(dataset / sub)) for sub in ("new_joint_vecs", "new_joints")}
    with caplog.at_level(logging.INFO, logger="render"):
        written = render.main(render.parse_args([str(dataset / "new_joint_vecs" / f"{clip}.npy"), "--dataset_name",
                                                 "synthetic", "--data_root", str(dataset), "--dpi", "20"]))
    renders = dataset / "renders" / "new_joint_vecs"
    assert written == [str(renders / f"{clip}.gif")]
    assert sorted(os.listdir(renders)) == [f"{clip}.gif", f"{clip}_joints.npy"]
    assert {sub: sorted(os.listdir(dataset / sub)) for sub in before} == before
    assert any(r.getMessage().startswith("clips of a dataset (in its new_joint_vecs/ or new_joints/) render into "
                                         f"{renders}, not beside them") for r in caplog.records)
    capsys.readouterr()
    assert _stats(dataset) == 0 and "from 3 clips" in capsys.readouterr().out


def test_a_clip_in_a_subfolder_keeps_it_and_other_inputs_render_beside_themselves(no_ffmpeg, tmp_path):
    root = tmp_path / "MyData"
    (root / "new_joints" / "CMU" / "01").mkdir(parents=True)
    np.save(root / "new_joints" / "CMU" / "01" / "walk.npy", random_walk())
    np.save(tmp_path / "sample.npy", random_walk(seed=1))
    written = render.main(render.parse_args([str(root / "new_joints" / "CMU" / "01" / "walk.npy"),
                                             str(tmp_path / "sample.npy"), "--dataset_name", "t2m", "--dpi", "20"]))
    assert written == [str(root / "renders" / "new_joints" / "CMU" / "01" / "walk.gif"), str(tmp_path / "sample.gif")]
    assert_gif(written[0], 12)
    assert sorted(os.listdir(root / "new_joints" / "CMU" / "01")) == ["walk.npy"]
    out = tmp_path / "chosen"  # --out is used as given
    written = render.main(render.parse_args([str(root / "new_joints" / "CMU" / "01" / "walk.npy"), "--dataset_name",
                                             "t2m", "--dpi", "20", "--out", str(out)]))
    assert written == [str(out / "walk.gif")]


def test_a_clip_s_features_and_joints_render_together_without_out(no_ffmpeg, dataset):
    """Both went to <dataset>/renders/<id>.gif, and render.py refused them as one video; the clip folder's name is
    kept under renders/."""
    clip = read_split(str(dataset), "train")[0]
    written = render.main(render.parse_args([str(dataset / sub / f"{clip}.npy") for sub in ("new_joint_vecs",
                                                                                         "new_joints")]
                                            + ["--dataset_name", "synthetic", "--data_root", str(dataset), "--dpi",
                                               "20"]))
    assert written == [str(dataset / "renders" / sub / f"{clip}.gif") for sub in ("new_joint_vecs", "new_joints")]


def test_stats_reads_the_clips_the_splits_list_and_names_other_files(dataset, caplog, capsys):
    """A video's joints saved into new_joint_vecs/ by an earlier render.py (or any other .npy no split lists) is not
    a clip: the statistics are those of the clips, and the file is named."""
    expected = [np.load(dataset / name) for name in ("Mean.npy", "Std.npy")]
    clip = read_split(str(dataset), "train")[0]
    stray = dataset / "new_joint_vecs" / f"{clip}_joints.npy"
    shutil.copy(dataset / "new_joints" / f"{clip}.npy", stray)  # (T, 22, 3)
    with caplog.at_level(logging.WARNING, logger="prepare_data"):
        assert _stats(dataset) == 0
    assert "from 3 clips (every clip of the splits;" in capsys.readouterr().out
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warned == [f"1 .npy files under {dataset / 'new_joint_vecs'} that no split file (train/val/test.txt) "
                      f"lists are not clips, and are left out: {clip}_joints.npy"]
    for name, values in zip(("Mean.npy", "Std.npy"), expected):
        np.testing.assert_allclose(np.load(dataset / name), values, rtol=1e-6, atol=1e-7)
    from utils.motion_files import dataset_clips

    assert dataset_clips(str(dataset)).unlisted == [f"{clip}_joints.npy"]


def test_stats_skips_split_ids_without_a_motion_file_as_the_loaders_do(dataset, caplog, capsys):
    """validate and the loaders skip a listed id whose motion file is missing (HumanML3D's official splits next to a
    part of its clips); stats stopped on it, so the statistics validate asks for could not be made."""
    expected = [np.load(dataset / name) for name in ("Mean.npy", "Std.npy")]
    with open(dataset / "train.txt", "a") as f:
        f.write("009707\n")
    with caplog.at_level(logging.WARNING, logger="prepare_data"):
        assert _stats(dataset) == 0
    assert "from 3 clips (every clip of the splits;" in capsys.readouterr().out
    assert [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING] == [
        f"1 ids of the split files have no motion file under {dataset / 'new_joint_vecs'} and are left out, as the "
        "loaders leave them out: 009707"]
    for name, values in zip(("Mean.npy", "Std.npy"), expected):
        np.testing.assert_allclose(np.load(dataset / name), values, rtol=1e-6, atol=1e-7)


def test_stats_without_split_files_reads_every_file_and_says_why_a_stray_one_fails(dataset, capsys):
    for split in ("train", "val", "test", "train_val", "all"):
        os.remove(dataset / f"{split}.txt")
    assert _stats(dataset) == 0 and "from 3 clips (every clip of new_joint_vecs;" in capsys.readouterr().out
    stray = dataset / "new_joint_vecs" / "notes_joints.npy"
    np.save(stray, random_walk())
    with pytest.raises(ValueError, match=r"notes_joints\.npy: array of shape \(12, 22, 3\) has 3 dims; expected "
                                         r"\(T, 263\).*\(without train/val/test\.txt every \.npy under "
                                         r"new_joint_vecs/ is a clip: move other files out"):
        _stats(dataset)


def test_synthetic_rerun_keeps_the_renders_of_the_earlier_dataset(no_ffmpeg, dataset, capsys):
    """The quick pipeline reruns prepare_data.py synthetic into its folder: a renders/ folder there is the user's
    videos, not a sign that the folder holds another dataset."""
    clip = read_split(str(dataset), "train")[0]
    render.main(render.parse_args([str(dataset / "new_joints" / f"{clip}.npy"), "--dataset_name", "synthetic",
                                   "--data_root", str(dataset), "--dpi", "20"]))
    args = ["synthetic", "--out", str(dataset), "--num_motions", "3", "--seed", "1"]
    assert prepare_data.main(prepare_data.parse_args(args)) == 0
    assert sorted(os.listdir(dataset / "renders" / "new_joints")) == [f"{clip}.gif"]
