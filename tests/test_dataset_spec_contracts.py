"""The dataset registry (utils.dataset_specs): behaviour the other tests leave open (spec validation edges, the
registered values, lookups by name and folder)."""

from __future__ import annotations

import dataclasses
import json
import logging
import math

import pytest

from utils.dataset_specs import (
    DATASETS,
    DatasetSpec,
    FeatureGroup,
    dataset_names,
    full_width_names,
    get_dataset_spec,
    humanml3d_spec,
)


def _spec(**kw):
    base = dict(name="x", root="r", joints_num=3, dim_pose=4, fps=20.0, representation="humanml3d",
                kinematic_chain=((0, 1, 2),), layout=(FeatureGroup("ric", 0, 2), FeatureGroup("b", 2, 4)),
                root_groups=(), contact_group=None)
    base.update(kw)
    return DatasetSpec(**base)


def _hml_dict(**changes):
    d = humanml3d_spec("x", "r").to_dict()
    d.update(changes)
    return d


# ---------------------------------------------------------------------------------------------------------------------
# DatasetSpec validation
# ---------------------------------------------------------------------------------------------------------------------

def test_layout_with_two_adjacent_groups_of_the_same_name_is_rejected():
    with pytest.raises(ValueError, match="names group 'ric' twice"):
        _spec(layout=(FeatureGroup("ric", 0, 2), FeatureGroup("ric", 2, 4)))


def test_kinematic_chain_joint_equal_to_joints_num_is_rejected():
    with pytest.raises(ValueError, match="kinematic_chain names joint 3"):
        _spec(kinematic_chain=((0, 1, 3),))
    assert _spec(kinematic_chain=((0, 1, 2),)).joints_num == 3  # the last joint index is fine


def test_negative_kinematic_chain_joint_is_rejected():
    with pytest.raises(ValueError, match="kinematic_chain names joint -1"):
        _spec(kinematic_chain=((0, -1),))


def test_positions_group_must_be_a_layout_group():
    with pytest.raises(ValueError, match="positions group 'joints' not in"):
        _spec(positions="joints")


def test_root_groups_must_be_layout_groups_when_built_directly():
    with pytest.raises(ValueError, match="root_groups names group 'nope'"):
        _spec(root_groups=("nope",))


def test_contact_group_that_is_also_a_root_group_is_rejected_when_built_directly():
    with pytest.raises(ValueError, match="contact_group 'b' is also one of the root_groups"):
        _spec(root_groups=("b",), contact_group="b")


@pytest.mark.parametrize("changes", [
    {"name": ""},
    {"root": ""},
    {"fps": 0},
    {"fps": math.inf},
    {"text_fps": 0.0},
    {"metres_per_unit": 0},
    {"kinematic_chain": []},
    {"kinematic_chain": [[0, 2, 5], []]},
    {"layout": [[5, 0, 263]]},
])
def test_spec_dict_with_an_invalid_field_is_rejected(changes):
    field = next(iter(changes))
    with pytest.raises(ValueError, match=rf"src: dataset spec field '{field}' is .*; expected"):
        DatasetSpec.from_dict(_hml_dict(**changes), source="src")


def test_to_dict_is_plain_json_types():
    """to_dict's form equals its own JSON round trip: lists, not tuples, for every sequence field."""
    for spec in DATASETS.values():
        d = spec.to_dict()
        assert json.loads(json.dumps(d)) == d
        assert isinstance(d["root_groups"], list)


def test_from_dict_makes_every_rate_a_float():
    d = _hml_dict(fps=20, text_fps=20, eval_feat_bias=5, metres_per_unit=1)
    spec = DatasetSpec.from_dict(d)
    for name in ("fps", "text_fps", "eval_feat_bias", "metres_per_unit"):
        assert type(getattr(spec, name)) is float, name


# ---------------------------------------------------------------------------------------------------------------------
# The registry
# ---------------------------------------------------------------------------------------------------------------------

def test_position_slices_of_the_registered_datasets():
    assert DATASETS["t2m"].position_slice == slice(4, 67)
    assert DATASETS["kit"].position_slice == slice(4, 64)
    assert DATASETS["motionmillion"].position_slice == slice(8, 74)  # local_pos, root included
    assert DATASETS["beatx"].position_slice == slice(0, 330)


def test_registered_clip_lengths_windows_and_text_rates():
    kit, mm, beatx = DATASETS["kit"], DATASETS["motionmillion"], DATASETS["beatx"]
    assert kit.min_motion_length == 24 and DATASETS["kit_64"].min_motion_length == 24
    assert DATASETS["t2m"].min_motion_length == 40 and DATASETS["t2m"].max_motion_length == 196
    assert (mm.fps, mm.text_fps, mm.window_size, mm.unit_length) == (30.0, 30.0, 96, 2)
    assert (beatx.fps, beatx.text_fps, beatx.min_motion_length, beatx.max_motion_length) == (30.0, 30.0, 32, 300)
    assert [DATASETS[n].eval_feat_bias for n in ("t2m", "kit", "t2m_67", "kit_64", "motionmillion", "beatx")] == \
        [5.0, 5.0, 1.0, 1.0, 1.0, 1.0]


def test_beatx_face_part_is_jaw_and_eyes():
    assert DATASETS["beatx"].body_parts["face"] == tuple(range(22 * 6, 25 * 6))


def test_humanml3d_spec_chain_follows_the_joint_count():
    assert humanml3d_spec("a", "r").kinematic_chain == DATASETS["t2m"].kinematic_chain
    assert humanml3d_spec("a", "r", joints_num=21).kinematic_chain == DATASETS["kit"].kinematic_chain
    chain = ((0, 1, 2), (0, 3))
    assert humanml3d_spec("a", "r", joints_num=4, kinematic_chain=chain).kinematic_chain == chain


def test_full_width_names():
    assert full_width_names(DATASETS["t2m"]) == ["t2m"]
    assert full_width_names(DATASETS["t2m_67"]) == ["t2m"]
    assert full_width_names(DATASETS["kit_64"]) == ["kit"]
    unregistered = dataclasses.replace(DATASETS["t2m_67"], name="mine")
    assert full_width_names(unregistered) == []


# ---------------------------------------------------------------------------------------------------------------------
# Lookups by name
# ---------------------------------------------------------------------------------------------------------------------

def test_spec_json_found_under_another_name_takes_that_name_and_folder(tmp_path):
    folder = tmp_path / "copy_of_mocap"
    folder.mkdir()
    humanml3d_spec("mocap", "dataset/mocap", fps=30.0).save(str(folder / "spec.json"))
    spec = get_dataset_spec("copy_of_mocap", data_root=str(folder))
    assert spec.name == "copy_of_mocap" and spec.root == str(folder) and spec.fps == 30.0


def test_unknown_name_without_data_root_does_not_blame_data_root(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("FSQ_MARDM_HOME", raising=False)
    with pytest.raises(ValueError) as info:
        get_dataset_spec("nope")
    assert "--data_root" not in str(info.value).split("(")[0]
    assert "spec.json" in str(info.value).split("(")[0]


@pytest.mark.parametrize("file, content, match", [
    ("synthetic.json", "{}", "--dataset_name synthetic --data_root {folder}"),  # a synthetic folder: a hint
    ("spec.json", "{not json", r"spec\.json: cannot read dataset spec"),          # the file is named
])
def test_an_unregistered_folder_without_a_readable_spec_is_refused_clearly(tmp_path, file, content, match):
    folder = tmp_path / "folder"
    folder.mkdir()
    (folder / file).write_text(content)
    with pytest.raises(ValueError, match=match.format(folder=folder)):
        get_dataset_spec("folder", data_root=str(folder))


def test_registered_name_with_a_moved_folder_does_not_warn(tmp_path, caplog):
    """The folder's spec.json records where it was imported; its root is not a disagreement."""
    folder = tmp_path / "kit"
    folder.mkdir()
    dataclasses.replace(DATASETS["kit"], root="/somewhere/else").save(str(folder / "spec.json"))
    with caplog.at_level(logging.WARNING, logger="utils.dataset_specs"):
        spec = get_dataset_spec("kit", data_root=str(folder))
    assert spec.root == str(folder) and caplog.text == ""


def test_registered_name_with_a_broken_folder_spec_warns_and_uses_the_registry(tmp_path, caplog):
    folder = tmp_path / "t2m"
    folder.mkdir()
    (folder / "spec.json").write_text("{broken")
    with caplog.at_level(logging.WARNING, logger="utils.dataset_specs"):
        spec = get_dataset_spec("t2m", data_root=str(folder))
    assert spec.dim_pose == 263 and "is ignored" in caplog.text


def test_dataset_names_lists_only_folders_with_a_spec(tmp_path):
    (tmp_path / "with_spec").mkdir()
    humanml3d_spec("with_spec", "r").save(str(tmp_path / "with_spec" / "spec.json"))
    (tmp_path / "plain").mkdir()
    names = dataset_names(str(tmp_path))
    assert "with_spec" in names and "plain" not in names and "t2m" in names
