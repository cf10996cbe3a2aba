"""FSQ_MARDM_HOME: the default folders (dataset/, checkpoints/, glove/, generation/) resolve under it when it is set;
paths given explicitly, and everything when it is unset, stay as written."""

from __future__ import annotations

import argparse
import os

import pytest
from tool_helpers import load_tool

from options.base_options import get_base_parser
from options.config import parse_with_config
from options.eval_options import add_protocol_args
from options.generator_options import get_train_mardm_parser
from options.prepare_data_options import get_prepare_data_parser
from utils.dataset_specs import dataset_names, get_dataset_spec
from utils.paths import HOME_ENV, project_path
from utils.run_dir import RunDir


def test_without_the_variable_the_defaults_stay_relative(monkeypatch):
    monkeypatch.delenv(HOME_ENV, raising=False)
    assert project_path("checkpoints") == "checkpoints"
    assert get_dataset_spec("t2m").root == "dataset/HumanML3D"
    assert get_base_parser("x").get_default("checkpoints_dir") == "checkpoints"
    assert RunDir("checkpoints", "t2m", "run").generation_dir == os.path.join("generation", "run_t2m")


def test_the_defaults_resolve_under_the_home_folder(monkeypatch, tmp_path):
    monkeypatch.setenv(HOME_ENV, str(tmp_path))
    assert project_path("glove") == str(tmp_path / "glove")
    assert project_path("/abs/where") == "/abs/where"
    assert get_dataset_spec("t2m").root == str(tmp_path / "dataset" / "HumanML3D")
    assert get_dataset_spec("t2m", data_root="elsewhere/H").root == "elsewhere/H"  # given paths stay as written
    assert get_base_parser("x").get_default("checkpoints_dir") == str(tmp_path / "checkpoints")
    protocol = argparse.ArgumentParser()
    add_protocol_args(protocol)
    assert protocol.get_default("glove_dir") == str(tmp_path / "glove")
    assert RunDir("c", "t2m", "run").generation_dir == str(tmp_path / "generation" / "run_t2m")
    # The CLIP weights the published generator presets read are where prepare_data.py assets checks them.
    clip = str(tmp_path / "deps" / "ViT-B-32.pt")
    assert get_train_mardm_parser().get_default("clip_path") == clip
    preset = parse_with_config(get_train_mardm_parser(),
                               ["--config", "options/configs/mardm_sit_xl.yaml", "--name", "g"])
    assert (preset.text_encoder, preset.clip_path) == ("clip", clip)
    assert get_prepare_data_parser().parse_args(["assets", "--dataset_name", "t2m"]).clip_path == clip
    # An imported official tokenizer is written where the training and evaluation scripts look for runs.
    assert load_tool("import_checkpoint").get_parser().get_default("checkpoints_dir") == str(tmp_path / "checkpoints")


def test_a_dataset_made_from_another_directory_is_found_through_the_home_folder(monkeypatch, tmp_path):
    import prepare_data

    home, elsewhere = tmp_path / "home", tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.setenv(HOME_ENV, str(home))
    monkeypatch.chdir(elsewhere)
    args = prepare_data.parse_args(["synthetic", "--num_motions", "12"])
    assert args.out == str(home / "dataset" / "Synthetic")
    assert prepare_data.main(args) == 0
    assert not os.listdir(elsewhere)  # nothing written into the working directory
    spec = get_dataset_spec("synthetic")
    assert spec.root == str(home / "dataset" / "Synthetic") and os.path.isfile(os.path.join(spec.root, "Mean.npy"))
    assert "synthetic" in dataset_names()


def test_an_imported_dataset_without_registration_is_found_under_home(monkeypatch, tmp_path):
    monkeypatch.setenv(HOME_ENV, str(tmp_path))
    with pytest.raises(ValueError, match=f"no {tmp_path}/dataset/Mocap/spec.json"):
        get_dataset_spec("Mocap")


def test_a_moved_imported_dataset_is_read_where_its_spec_is_found(monkeypatch, tmp_path):
    import json
    import shutil

    from utils.dataset_specs import humanml3d_spec

    monkeypatch.delenv(HOME_ENV, raising=False)
    monkeypatch.chdir(tmp_path)
    os.makedirs("dataset/Mocap")
    humanml3d_spec("Mocap", "somewhere/else/Mocap").save("dataset/Mocap/spec.json")
    assert json.load(open("dataset/Mocap/spec.json"))["root"] == "somewhere/else/Mocap"
    assert get_dataset_spec("Mocap").root == os.path.join("dataset", "Mocap")
    monkeypatch.setenv(HOME_ENV, str(tmp_path / "home"))
    shutil.copytree("dataset", tmp_path / "home" / "dataset")
    assert get_dataset_spec("Mocap").root == str(tmp_path / "home" / "dataset" / "Mocap")
    assert get_dataset_spec("Mocap", data_root="dataset/Mocap").root == "dataset/Mocap"


def test_a_copied_or_renamed_imported_dataset_takes_the_name_it_is_asked_for_by(monkeypatch, tmp_path):
    """Its runs are filed under ``checkpoints/<dataset_name>/`` and the name is recorded in their checkpoints, which
    sample.py and evaluation_MARDM.py compare with their --dataset_name: the spec.json's name, that of the folder it
    was imported to, would contradict the flag."""
    import shutil

    from utils.dataset_specs import humanml3d_spec

    monkeypatch.delenv(HOME_ENV, raising=False)
    monkeypatch.chdir(tmp_path)
    os.makedirs("dataset/Mocap")
    humanml3d_spec("Mocap", "dataset/Mocap").save("dataset/Mocap/spec.json")
    shutil.copytree("dataset/Mocap", "dataset/MocapV2")
    assert get_dataset_spec("Mocap").name == "Mocap"
    spec = get_dataset_spec("MocapV2")
    assert (spec.name, spec.root) == ("MocapV2", os.path.join("dataset", "MocapV2"))
    assert get_dataset_spec("Takes", data_root="dataset/Mocap").name == "Takes"


def test_folder_flags_name_only_the_folders_that_are_not_defaults(monkeypatch, tmp_path):
    from utils.paths import folder_flags

    monkeypatch.delenv(HOME_ENV, raising=False)
    assert folder_flags("checkpoints") == "" and folder_flags(os.path.abspath("checkpoints"), None) == ""
    assert folder_flags(str(tmp_path / "ck"), "data/x") == f" --checkpoints_dir {tmp_path / 'ck'} --data_root data/x"
    monkeypatch.setenv(HOME_ENV, str(tmp_path))  # the default moves with FSQ_MARDM_HOME
    assert folder_flags(str(tmp_path / "checkpoints")) == ""
    assert folder_flags("checkpoints") == " --checkpoints_dir checkpoints"
