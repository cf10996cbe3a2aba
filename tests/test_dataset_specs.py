"""The dataset registry: layouts tile the feature vector, lookups by name, importer specs round-trip."""

import json

import pytest

from utils.dataset_specs import DATASETS, DatasetSpec, FeatureGroup, dataset_names, get_dataset_spec, humanml3d_spec


@pytest.mark.parametrize("name", sorted(DATASETS))
def test_registry_layouts_tile_feature_vector(name):
    spec = DATASETS[name]
    assert spec.layout[0].start == 0 and spec.layout[-1].stop == spec.dim_pose
    assert spec.position_slice.stop <= spec.dim_pose


def test_known_widths():
    assert DATASETS["t2m"].dim_pose == 263 and DATASETS["kit"].dim_pose == 251
    assert DATASETS["t2m_67"].dim_pose == 67 and DATASETS["t2m_67"].file_dim == 263
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
    with pytest.raises(ValueError, match="unknown dataset 'nope'"):
        get_dataset_spec("nope")
    folder = tmp_path / "dataset" / "Broken"
    folder.mkdir(parents=True)
    d = humanml3d_spec("Broken", "dataset/Broken").to_dict()
    d["colour"] = "red"
    (folder / "spec.json").write_text(json.dumps(d))
    with pytest.raises(ValueError, match=r"spec.json: unknown dataset spec fields \['colour'\]"):
        get_dataset_spec("Broken")
