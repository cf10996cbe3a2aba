"""The dataset registry: layouts tile the feature vector, lookups by name, importer specs round-trip."""

import json
import logging

import pytest

from utils.dataset_specs import (
    DATASETS,
    DatasetSpec,
    FeatureGroup,
    dataset_names,
    get_dataset_spec,
    humanml3d_spec,
    spec_from_record,
)


@pytest.mark.parametrize("name", sorted(DATASETS))
def test_registry_layouts_tile_feature_vector(name):
    spec = DATASETS[name]
    assert spec.layout[0].start == 0 and spec.layout[-1].stop == spec.dim_pose
    assert spec.position_slice.stop <= spec.dim_pose


def test_known_widths():
    assert DATASETS["t2m"].dim_pose == 263 and DATASETS["kit"].dim_pose == 251
    assert DATASETS["t2m_67"].dim_pose == 67 and DATASETS["t2m_67"].file_dim == 263
    assert DATASETS["kit_64"].dim_pose == 64 and DATASETS["kit_64"].file_dim == 251
    assert DATASETS["kit_64"].layout == DATASETS["kit"].layout[:4]  # root and ric of the 21 KIT joints
    assert DATASETS["kit"].metres_per_unit == DATASETS["kit_64"].metres_per_unit == 0.001  # KIT-ML is in mm
    assert DATASETS["t2m"].metres_per_unit == 1.0
    assert DATASETS["motionmillion"].dim_pose == 272 and DATASETS["beatx"].dim_pose == 330
    assert DATASETS["t2m"].group("ric") == slice(4, 67)
    assert DATASETS["kit"].group("foot_contact") == slice(247, 251)
    beatx = DATASETS["beatx"]
    parts = [set(beatx.body_parts[p]) for p in ("upper", "lower", "hands", "face")]
    assert set().union(*parts) == set(range(330)) and sum(len(p) for p in parts) == 330


def test_bad_layout_rejected():
    with pytest.raises(ValueError, match="tile"):
        DatasetSpec(name="x", root="r", joints_num=2, dim_pose=4, fps=20, representation="humanml3d",
                    kinematic_chain=((0, 1),), layout=(FeatureGroup("a", 0, 2), FeatureGroup("ric", 3, 4)))


def test_imported_spec_found_by_name(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "dataset" / "MyBVH").mkdir(parents=True)
    spec = humanml3d_spec("MyBVH", "dataset/MyBVH", fps=30.0)
    spec.save(str(tmp_path / "dataset" / "MyBVH" / "spec.json"))
    assert "MyBVH" in dataset_names()
    loaded = get_dataset_spec("MyBVH")
    assert loaded == spec
    other = get_dataset_spec("MyBVH", data_root=str(tmp_path / "dataset" / "MyBVH"))
    assert other.root.endswith("MyBVH") and other.dim_pose == 263


def test_unknown_dataset_and_bad_spec_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValueError, match=r"unknown dataset 'nope'.*\(prepare_data.py bvh and amass write one; for "
                                         r"HumanML3D-layout features of your own, 263-dim, pass --dataset_name t2m "
                                         r"--data_root \S*nope\)"):
        get_dataset_spec("nope")
    with pytest.raises(ValueError, match=r"and --data_root \S*gone does not exist"):
        get_dataset_spec("nope", data_root=str(tmp_path / "gone"))
    folder = tmp_path / "dataset" / "Broken"
    folder.mkdir(parents=True)
    d = humanml3d_spec("Broken", "dataset/Broken").to_dict()
    d["colour"] = "red"
    (folder / "spec.json").write_text(json.dumps(d))
    with pytest.raises(ValueError, match=r"spec.json: unknown dataset spec fields \['colour'\]"):
        get_dataset_spec("Broken")


@pytest.mark.parametrize("change, message", [
    (lambda d: d.pop("layout"), "dataset spec is missing field(s) ['layout']; required fields: ['name', 'root'"),
    (lambda d: d.update(joints_num="22"), "field 'joints_num' is '22'; expected a positive integer"),
    (lambda d: d.update(joints_num=True), "field 'joints_num' is True; expected a positive integer"),
    (lambda d: d.update(fps=None), "field 'fps' is None; expected a positive number"),
    (lambda d: d.update(representation="smpl"),
     "field 'representation' is 'smpl'; expected one of ['humanml3d', 'essential', 'vector_272', 'smplx_rot6d']"),
    (lambda d: d.update(layout=[["ric", 0]]), "field 'layout' is [['ric', 0]]; expected a non-empty list of feature"),
    (lambda d: d.update(kinematic_chain=[[0, "1"]]), "field 'kinematic_chain' is [[0, '1']]; expected a non-empty"),
    (lambda d: d.update(source_dim=0), "field 'source_dim' is 0; expected a positive integer or null"),
    (lambda d: d.update(body_parts={"upper": [1.5]}), "field 'body_parts' is {'upper': [1.5]}; expected an object"),
    # Fields of the right type that contradict each other fail here too, not in the loader or the renderer.
    (lambda d: d.update(source_dim=67), "source_dim 67 is narrower than dim_pose 263; expected the width of the files"),
    (lambda d: d.update(kinematic_chain=[[0, 2, 5], [0, 30]]),
     "kinematic_chain names joint 30; expected joint indices below joints_num 22"),
    (lambda d: d.update(body_parts={"upper": [4, 263]}),
     "body_parts 'upper' names feature 263; expected feature indices below dim_pose 263"),
    # A body part is the input of its own tokenizer: without features it has none, and a repeated one is trained twice.
    (lambda d: d.update(body_parts={"upper": [4, 5], "hands": []}),
     "body_parts 'hands' names no feature; expected at least one feature index"),
    (lambda d: d.update(body_parts={"upper": [4, 5, 4]}), "body_parts 'upper' names feature 4 twice"),
    # The root and contact groups are looked up by name in the evaluator normalisation, the part partition and the
    # PFNN export; a name that is not a layout group, or one named twice, divides the wrong std or none.
    (lambda d: d.update(root_groups=["root_rot_vel", "root_vel"]),
     "root_groups names group 'root_vel'; expected names of its layout groups ['root_rot_vel', 'root_lin_vel'"),
    (lambda d: d.update(contact_group="contacts"),
     "contact_group 'contacts' is not a layout group; expected one of ['root_rot_vel', 'root_lin_vel'"),
    (lambda d: d.update(root_groups=["root_y", "root_y"]), "root_groups names group 'root_y' twice"),
    (lambda d: d.update(root_groups=["root_y", "foot_contact"]),
     "contact_group 'foot_contact' is also one of the root_groups"),
    (lambda d: d["layout"].__setitem__(5, ["ric", 193, 259]), "layout names group 'ric' twice"),
])
def test_spec_file_fields_are_checked_naming_file_and_field(tmp_path, change, message):
    folder = tmp_path / "Broken"
    folder.mkdir()
    d = humanml3d_spec("Broken", str(folder)).to_dict()
    change(d)
    (folder / "spec.json").write_text(json.dumps(d))
    with pytest.raises(ValueError) as info:
        get_dataset_spec("Broken", data_root=str(folder))
    assert str(info.value).startswith(f"{folder / 'spec.json'}: ") and message in str(info.value)


def test_spec_dict_round_trips_for_every_registered_dataset():
    for name, spec in DATASETS.items():
        assert DatasetSpec.from_dict(json.loads(json.dumps(spec.to_dict())), name) == spec
    d = humanml3d_spec("x", "r").to_dict()
    d["fps"] = 20  # an integer frame rate in JSON is a float frame rate
    assert DatasetSpec.from_dict(d).fps == 20.0 and isinstance(DatasetSpec.from_dict(d).fps, float)


def test_optional_spec_fields_left_out_take_their_defaults():
    """A spec.json written by hand may leave out the optional fields: each takes the DatasetSpec default (the
    HumanML3D root groups with its foot contacts), not an empty value."""
    full = humanml3d_spec("x", "r")
    d = {k: v for k, v in full.to_dict().items() if k not in ("root_groups", "contact_group", "body_parts")}
    assert DatasetSpec.from_dict(d) == full
    assert full.root_groups == ("root_rot_vel", "root_lin_vel", "root_y") and full.contact_group == "foot_contact"


def test_registered_name_warns_when_the_folder_spec_disagrees(tmp_path, caplog):
    folder = tmp_path / "kit"
    folder.mkdir()
    humanml3d_spec("kit", str(folder)).save(str(folder / "spec.json"))  # an import of 22-joint BVH named "kit"
    with caplog.at_level(logging.WARNING, logger="utils.dataset_specs"):
        spec = get_dataset_spec("kit", data_root=str(folder))
    assert spec.dim_pose == 251 and spec.root == str(folder)  # the registered spec wins ...
    warning = caplog.text
    assert f"{folder / 'spec.json'} disagrees with the registered dataset 'kit'" in warning  # ... but not silently
    assert "dim_pose 263 there, 251 registered" in warning and "spec.json is ignored" in warning

    # The registered spec saved in its folder, or no spec.json at all: nothing to say.
    caplog.clear()
    DATASETS["kit"].save(str(folder / "spec.json"))
    with caplog.at_level(logging.WARNING, logger="utils.dataset_specs"):
        get_dataset_spec("kit", data_root=str(folder))
        get_dataset_spec("t2m", data_root=str(tmp_path))
    assert caplog.text == ""


def test_a_spec_file_older_than_a_field_does_not_disagree_about_it(tmp_path, caplog):
    """A KIT spec.json written before metres_per_unit existed holds every other field as registered: no warning. The
    field written with another value is a disagreement, named."""
    folder = tmp_path / "kit"
    folder.mkdir()
    old = DATASETS["kit"].to_dict()
    del old["metres_per_unit"]
    old["fps"] = 12.5
    (folder / "spec.json").write_text(json.dumps(old))
    with caplog.at_level(logging.WARNING, logger="utils.dataset_specs"):
        assert get_dataset_spec("kit", data_root=str(folder)).metres_per_unit == 0.001
    assert caplog.text == ""

    (folder / "spec.json").write_text(json.dumps({**old, "metres_per_unit": 1.0}))
    with caplog.at_level(logging.WARNING, logger="utils.dataset_specs"):
        get_dataset_spec("kit", data_root=str(folder))
    assert "disagrees with the registered dataset 'kit' (metres_per_unit 1.0 there, 0.001 registered)" in caplog.text


def test_a_checkpoints_spec_record_older_than_a_field_takes_the_registered_value():
    """A KIT checkpoint written before metres_per_unit existed records every other field: the field comes from the
    registered spec of that name (0.001, millimetres), not the default 1.0; an unregistered name gets the default."""
    old = DATASETS["kit"].to_dict()
    del old["metres_per_unit"]
    assert DatasetSpec.from_dict(old).metres_per_unit == 1.0  # what a plain rebuild would give
    assert spec_from_record(old, "run/latest.tar").metres_per_unit == 0.001
    custom = {**humanml3d_spec("mocap", "dataset/mocap").to_dict(), "fps": 30.0}
    del custom["metres_per_unit"]
    assert spec_from_record(custom, "run/latest.tar").metres_per_unit == 1.0
    # What the record holds wins over the registry, and a bad record still fails naming it.
    assert spec_from_record({**old, "fps": 25.0}, "run/latest.tar").fps == 25.0
    with pytest.raises(ValueError, match=r"run/latest\.tar: unknown dataset spec fields \['nope'\]"):
        spec_from_record({**old, "nope": 1}, "run/latest.tar")
