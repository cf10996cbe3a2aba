"""prepare_data.py sub-commands: what they write, and that bad input fails naming the file and what was expected
without destroying work already on disk."""

from __future__ import annotations

import argparse
import os
import re

import numpy as np
import pytest

import prepare_data
from options.prepare_data_options import get_prepare_data_parser
from utils.dataset_io import save_mean_std
from utils.dataset_specs import get_dataset_spec
from utils.normalization import DatasetError, load_mean_std
from utils.synthetic import generate_synthetic_dataset


@pytest.fixture(scope="module")
def synthetic_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("prepare") / "Synthetic"
    generate_synthetic_dataset(str(root), 3, seed=0)
    return root


def test_stats_overwrite_replaces_a_linked_mean_std_not_the_file_it_links_to(synthetic_root, tmp_path):
    """Mean.npy / Std.npy linked to shared statistics (e.g. the official HumanML3D ones): --overwrite puts plain
    files in place of the links and leaves the linked files as they were."""
    root = tmp_path / "Linked"
    root.mkdir()
    (root / "new_joint_vecs").symlink_to(synthetic_root / "new_joint_vecs")
    official = tmp_path / "official"
    official.mkdir()
    shared = {}
    for name, value in (("Mean.npy", 7.0), ("Std.npy", 3.0)):
        np.save(official / name, np.full(263, value, np.float32))
        shared[name] = (official / name).read_bytes()
        (root / name).symlink_to(official / name)
    args = ["stats", "--dataset_name", "synthetic", "--data_root", str(root), "--overwrite"]
    assert prepare_data.main(prepare_data.parse_args(args)) == 0
    for name in ("Mean.npy", "Std.npy"):
        assert (official / name).read_bytes() == shared[name], f"{name}: the linked file was overwritten"
        assert not (root / name).is_symlink()
        np.testing.assert_allclose(np.load(root / name), np.load(synthetic_root / name), rtol=1e-6, atol=1e-7)
    assert sorted(os.listdir(root)) == ["Mean.npy", "Std.npy", "new_joint_vecs"]


def test_a_stop_between_the_statistics_moves_leaves_no_mismatched_pair(tmp_path, monkeypatch):
    """Mean.npy and Std.npy are moved into place one after the other. A stop between the two moves must not leave an
    old Mean.npy beside a new Std.npy (same shape, finite: it would load and mis-normalise without a word): Mean.npy
    is missing instead, which the loaders report and the quick pipelines take as "data not made yet"."""
    spec = get_dataset_spec("synthetic", str(tmp_path))
    save_mean_std(str(tmp_path), np.zeros(263, np.float32), np.ones(263, np.float32))
    replace = os.replace

    def stop_before_mean(src, dst):
        if os.path.basename(dst) == "Mean.npy":
            raise KeyboardInterrupt
        replace(src, dst)

    monkeypatch.setattr(os, "replace", stop_before_mean)
    with pytest.raises(KeyboardInterrupt):
        save_mean_std(str(tmp_path), np.full(263, 5.0, np.float32), np.full(263, 2.0, np.float32))
    monkeypatch.setattr(os, "replace", replace)
    assert sorted(os.listdir(tmp_path)) == ["Std.npy"]  # the new std, no temporary left
    np.testing.assert_array_equal(np.load(tmp_path / "Std.npy"), np.full(263, 2.0, np.float32))
    with pytest.raises(DatasetError) as info:
        load_mean_std(spec, str(tmp_path))
    assert info.value.kind == "missing_stats" and info.value.path == str(tmp_path / "Mean.npy")

    save_mean_std(str(tmp_path), np.full(263, 5.0, np.float32), np.full(263, 2.0, np.float32))
    mean, std = load_mean_std(spec, str(tmp_path))
    assert mean[0] == 5.0 and std[0] == 2.0


def test_missing_statistics_suggest_a_stats_command_that_runs(synthetic_root, tmp_path):
    """t2m_67 reads the first 67 columns of HumanML3D's files, whose statistics ``stats`` computes only as t2m: the
    error for a missing Mean.npy must suggest that command, not one naming t2m_67, which ``stats`` refuses."""
    root = tmp_path / "HumanML3D"
    root.mkdir()
    (root / "new_joint_vecs").symlink_to(synthetic_root / "new_joint_vecs")
    with pytest.raises(DatasetError) as info:
        load_mean_std(get_dataset_spec("t2m_67", str(root)), str(root))
    command = re.search(r"python prepare_data\.py (stats [^;)]*)", str(info.value))
    assert command, str(info.value)
    assert prepare_data.main(prepare_data.parse_args(command.group(1).split())) == 0
    mean, std = load_mean_std(get_dataset_spec("t2m_67", str(root)), str(root))
    assert mean.shape == std.shape == (67,)


@pytest.fixture
def joints_file(tmp_path):
    path = tmp_path / "walk.npy"
    np.save(path, np.random.default_rng(0).standard_normal((10, 22, 3)).astype(np.float32))
    return path


def test_export_refuses_an_npz_naming_the_file_and_what_it_takes(tmp_path):
    """An .npz (SMPL parameters, or joints saved with np.savez) is not a joint array: a clear error, not an
    AttributeError from deep inside."""
    archive = tmp_path / "walk_smpl.npz"
    np.savez(archive, poses=np.zeros((10, 156)), trans=np.zeros((10, 3)))
    for command in (["export_bvh", str(archive)], ["export_smpl", str(archive), "--body_model", str(archive)]):
        with pytest.raises(ValueError, match=r"walk_smpl\.npz: an \.npz archive \(poses, trans\); expected a \.npy "
                                             r"of joint positions \(T, 22, 3\) or features"):
            prepare_data.main(prepare_data.parse_args(command))
    assert sorted(os.listdir(tmp_path)) == ["walk_smpl.npz"]


@pytest.mark.parametrize("command", ["export_bvh", "export_smpl"])
def test_export_refuses_an_out_that_is_a_folder_before_any_work(tmp_path, joints_file, command):
    """--out naming a folder fails at once, naming the flag (export_smpl: before the body model is read and the
    fit is run), instead of an OSError about a temporary file after the work."""
    folder = tmp_path / "exports"
    folder.mkdir()
    args = [command, str(joints_file), "--out", str(folder)]
    if command == "export_smpl":
        args += ["--body_model", str(tmp_path / "none.npz")]  # not read: the --out check comes first
    with pytest.raises(IsADirectoryError, match=rf"--out is a folder; expected the path of the file to write.*"
                                                rf"{folder.name}"):
        prepare_data.main(prepare_data.parse_args(args))
    assert os.listdir(folder) == []


def test_export_refuses_a_text_file_naming_it(tmp_path):
    """A text file named .npy was said to hold "pickled (object) data"."""
    text = tmp_path / "walk.npy"
    text.write_text("hello")
    for command in (["export_bvh", str(text)], ["export_smpl", str(text), "--body_model", str(text)]):
        with pytest.raises(ValueError, match=r"walk\.npy: not a \.npy file \(no NUMPY header\); expected joint "
                                             r"positions \(T, 22, 3\) or features"):
            prepare_data.main(prepare_data.parse_args(command))


@pytest.mark.parametrize("command", ["export_bvh", "export_smpl"])
def test_export_keeps_an_existing_file_and_the_input(tmp_path, joints_file, command):
    """An existing --out, the input itself among them, was replaced without a word (the input then held the BVH
    text). Both are refused before any work; --overwrite replaces another file."""
    body = [] if command == "export_bvh" else ["--body_model", str(tmp_path / "none.npz")]  # not read before
    before = joints_file.read_bytes()
    for flags in ([], ["--overwrite"]):
        with pytest.raises(ValueError, match=rf"--out {re.escape(str(joints_file))} is the input file"):
            prepare_data.main(prepare_data.parse_args([command, str(joints_file), "--out", str(joints_file),
                                                       *body, *flags]))
    assert joints_file.read_bytes() == before
    taken = tmp_path / ("walk.bvh" if command == "export_bvh" else "walk_smpl.npz")
    taken.write_text("an earlier export")
    with pytest.raises(FileExistsError, match=r"--out exists; pass --overwrite to replace it.*walk"):
        prepare_data.main(prepare_data.parse_args([command, str(joints_file), *body]))
    assert taken.read_text() == "an earlier export"
    if command == "export_bvh":
        assert prepare_data.main(prepare_data.parse_args([command, str(joints_file), "--overwrite"])) == 0
        assert taken.read_text().startswith("HIERARCHY")


def test_export_bvh_makes_the_folder_of_out(tmp_path, joints_file):
    out = tmp_path / "exports" / "bvh" / "walk.bvh"
    assert prepare_data.main(prepare_data.parse_args(["export_bvh", str(joints_file), "--out", str(out)])) == 0
    assert out.read_text().startswith("HIERARCHY")
    taken = tmp_path / "taken"
    taken.write_text("a file")
    with pytest.raises(NotADirectoryError, match=r"--out .*taken.*walk\.bvh: cannot make the folder .*taken"):
        prepare_data.main(prepare_data.parse_args(["export_bvh", str(joints_file), "--out",
                                                   str(taken / "walk.bvh")]))
    assert taken.read_text() == "a file"


def test_every_subcommand_of_the_parser_runs_its_own_main():
    """options.prepare_data_options holds the flags, prepare_data.COMMANDS the mains: the two name the same
    subcommands, so none parses and then fails to find what runs it."""
    parser = get_prepare_data_parser()
    subcommands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    assert list(subcommands.choices) == list(prepare_data.COMMANDS)
    assert all(main.__name__ == f"main_{name}" for name, main in prepare_data.COMMANDS.items())
