"""BVH: parsing against hand-computed forward kinematics, export round trip, skeleton maps, folder import."""

import csv
import json
import logging
import os
import re
from pathlib import Path

import numpy as np
import pytest

from utils.bvh import (
    SMPL22_JOINT_NAMES,
    bvh_positions,
    bvh_to_smpl22,
    euler_to_matrix,
    load_skeleton_map,
    map_to_smpl22,
    matrix_to_euler_zyx,
    parse_bvh,
    parse_bvh_text,
)
from utils.bvh_captions import BANDAI_CONTENT_PHRASES, captions_from_name, read_labels
from utils.bvh_export import write_bvh
from utils.bvh_import import chunk_bounds, import_bvh_folder
from utils.data_validation import validate_dataset
from utils.dataset_specs import get_dataset_spec
from utils.datasets import read_split, read_texts
from utils.motion_process import extract_features, recover_from_ric
from utils.synthetic import synthesize_motion

BANDAI = Path(__file__).resolve().parents[2] / "shared" / "data" / "bandai-namco-1" / "bvh"

# Root with position channels and Y-X-Z rotation order, a joint with X-Z-Y order, a joint below the root with its
# own position channels (Z-Y-X rotations), End Sites.
SMALL_BVH = """HIERARCHY
ROOT Hips
{
  OFFSET 0 0 0
  CHANNELS 6 Xposition Yposition Zposition Yrotation Xrotation Zrotation
  JOINT Chest
  {
    OFFSET 0 10 0
    CHANNELS 3 Xrotation Zrotation Yrotation
    JOINT Head
    {
      OFFSET 0 5 0
      CHANNELS 6 Xposition Yposition Zposition Zrotation Yrotation Xrotation
      End Site
      {
        OFFSET 0 3 0
      }
    }
  }
  JOINT Leg
  {
    OFFSET 2 -1 0
    CHANNELS 3 Zrotation Xrotation Yrotation
    End Site
    {
      OFFSET 0 -8 0
    }
  }
}
MOTION
Frames: 3
Frame Time: 0.05
1 2 3 0 0 0   0 0 0   0 5 0 0 0 0   0 0 0
0 0 0 90 0 0  90 0 0  0 4 1 90 0 0  90 0 0
0 0 0 90 90 0 0 0 0   0 5 0 0 0 0   0 0 0
"""


def test_parse_small_bvh():
    bvh = parse_bvh_text(SMALL_BVH, "small.bvh")
    assert bvh.names == ["Hips", "Chest", "Head", "Head_End", "Leg", "Leg_End"]
    assert bvh.parents == [-1, 0, 1, 2, 0, 4]
    assert bvh.joint_names == ["Hips", "Chest", "Head", "Leg"]
    assert bvh.channels[1] == ["Xrotation", "Zrotation", "Yrotation"] and bvh.channels[3] == []
    np.testing.assert_array_equal(bvh.offsets[4], [2, -1, 0])
    assert bvh.frames == 3 and bvh.frame_time == 0.05 and bvh.motion.shape == (3, 18)


def test_forward_kinematics_against_hand_computed_positions():
    positions = bvh_positions(parse_bvh_text(SMALL_BVH), end_sites=True)
    # Nodes: Hips, Chest, Head, Head_End, Leg, Leg_End.
    # Frame 0: no rotation; Head's position channels equal its offset.
    np.testing.assert_allclose(positions[0], [[1, 2, 3], [1, 12, 3], [1, 17, 3], [1, 20, 3], [3, 1, 3],
                                              [3, -7, 3]], atol=1e-9)
    # Frame 1: root Ry(90) maps (x, y, z) -> (z, y, -x); Chest adds Rx(90): (x, y, z) -> (x, -z, y); Head's
    # translation is its channels (0, 4, 1) -> Rx: (0, -1, 4) -> Ry: (4, -1, 0); Head's Rz(90): (x, y, z) -> (-y, x, z)
    # turns the End Site (0, 3, 0) into (-3, 0, 0) -> Rx: (-3, 0, 0) -> Ry: (0, 0, 3). Leg: Ry (2, -1, 0) = (0, -1, -2),
    # its Rz(90) turns (0, -8, 0) into (8, 0, 0) -> Ry: (0, 0, -8).
    np.testing.assert_allclose(positions[1], [[0, 0, 0], [0, 10, 0], [4, 9, 0], [4, 9, 3], [0, -1, -2],
                                              [0, -1, -10]], atol=1e-9)
    # Frame 2: root channels "Yrotation Xrotation Zrotation" = 90, 90 give Ry(90) @ Rx(90): the Chest offset
    # (0, 10, 0) -> Rx: (0, 0, 10) -> Ry: (10, 0, 0). The other order would give (0, 0, 10).
    np.testing.assert_allclose(positions[2, 1], [10, 0, 0], atol=1e-9)


@pytest.mark.parametrize("text, message", [
    ("HIERARCHY\nROOT A\n{\n OFFSET 0 0 0\n CHANNELS 3 Xposition Yposition Zposition\n}\n", "no MOTION section"),
    (SMALL_BVH.replace("Frames: 3", "Frames: 4"), "expected Frames 4 x 18 channels"),
    (SMALL_BVH.replace("Xrotation Zrotation Yrotation", "Xrotation Zrotation Wrotation"), "X/Y/Z position"),
    (SMALL_BVH.replace("Frame Time: 0.05", "Frame Time: 0"), "Frame Time"),
    (SMALL_BVH.replace("  }\n  JOINT Leg", "  JOINT Leg", 1), "missing '}'"),
    (SMALL_BVH.replace("0 0 0 90 0 0  90", "0 0 0 90 nan 0  90"),
     "MOTION frame 2 of 3, joint 'Hips' channel Xrotation is nan"),
    (SMALL_BVH.replace("90 90 0 0 0 0   0 5 0 0 0 0   0 0 0", "90 90 0 0 0 0   0 5 0 0 0 0   0 0 -inf"),
     "MOTION frame 3 of 3, joint 'Leg' channel Yrotation is -inf"),
    (SMALL_BVH.replace("OFFSET 2 -1 0", "OFFSET 2 NaN 0"), "OFFSET of 'Leg' is ['2', 'NaN', '0']; expected 3 finite"),
])
def test_bad_bvh_fails_naming_the_file(text, message):
    with pytest.raises(ValueError, match="bad.bvh") as info:
        parse_bvh_text(text, "bad.bvh")
    assert message in str(info.value)


def test_euler_round_trip():
    rng = np.random.default_rng(0)
    angles = rng.uniform([-180, -85, -180], [180, 85, 180], size=(200, 3))
    rot = euler_to_matrix(angles, "ZYX")
    np.testing.assert_allclose(matrix_to_euler_zyx(rot), angles, atol=1e-8)
    np.testing.assert_allclose(rot @ np.swapaxes(rot, -1, -2), np.broadcast_to(np.eye(3), rot.shape), atol=1e-12)


def test_write_bvh_round_trip(tmp_path):
    motion = synthesize_motion(np.random.default_rng(5), "walk_while_wave")
    path = tmp_path / "motion.bvh"
    write_bvh(path, motion.joints, fps=20)
    bvh = parse_bvh(path)
    assert bvh.joint_names[0] == "pelvis" and sorted(bvh.joint_names) == sorted(SMPL22_JOINT_NAMES)
    assert bvh.frames == len(motion.joints) and abs(bvh.fps - 20) < 1e-6
    positions = bvh_positions(bvh)
    order = [bvh.joint_names.index(n) for n in SMPL22_JOINT_NAMES]
    np.testing.assert_allclose(positions[:, order], motion.joints, atol=1e-4)

    # Centimetres, and joints recovered from features (the form generated motions come in).
    joints = recover_from_ric(extract_features(motion.joints), 22)
    write_bvh(tmp_path / "cm.bvh", joints, fps=20, scale=100.0)
    back = bvh_positions(parse_bvh(tmp_path / "cm.bvh"))[:, order] / 100.0
    np.testing.assert_allclose(back, joints, atol=1e-4)


def test_write_bvh_rejects_bad_shapes(tmp_path):
    with pytest.raises(ValueError, match="expected joints of shape"):
        write_bvh(tmp_path / "x.bvh", np.zeros((10, 22)), fps=20)
    with pytest.raises(ValueError, match="kinematic chain does not reach"):
        write_bvh(tmp_path / "x.bvh", np.zeros((10, 23, 3)), fps=20)
    joints = synthesize_motion(np.random.default_rng(5), "walk").joints.copy()
    joints[3, 7, 1] = np.nan
    with pytest.raises(ValueError, match=r"gen\.npy: joints\[3, 7\] \(frame 3, joint 7\) is \[.*nan.*\]; expected "
                                         r"finite positions \(1 non-finite"):
        write_bvh(tmp_path / "x.bvh", joints, fps=20, source="gen.npy")
    assert not (tmp_path / "x.bvh").exists()


def _write_yaml(path, joints, **extra):
    import yaml

    path.write_text(yaml.safe_dump({"name": "mine", "joints": joints, **extra}))
    return str(path)


def test_skeleton_maps(tmp_path):
    for name in ("bandai", "lafan"):
        skel = load_skeleton_map(name)
        assert len(skel.sources) == 22 and skel.unit_scale == 0.01 and skel.up_axis == "y"
    assert load_skeleton_map("bandai").sources[6] == ("Spine", "Chest", 0.5)
    own = load_skeleton_map("smpl22")  # this project's BVH exports, metres
    assert own.unit_scale == 1.0 and [a for a, _, _ in own.sources] == list(SMPL22_JOINT_NAMES)

    # A user mapping of the small file: Z up, an interpolated joint.
    joints = {n: "Hips" for n in SMPL22_JOINT_NAMES}
    joints["head"] = "Head_End"
    joints["neck"] = {"between": ["Chest", "Head"], "weight": 0.25}
    skel = load_skeleton_map(_write_yaml(tmp_path / "mine.yaml", joints, unit_scale=0.5, up_axis="z"))
    bvh = parse_bvh_text(SMALL_BVH)
    mapped = map_to_smpl22(bvh_positions(bvh, end_sites=True), bvh.names, skel)
    neck = 0.75 * np.array([1, 12, 3]) + 0.25 * np.array([1, 17, 3])
    # Z up to Y up: (x, y, z) -> (x, z, -y), after scaling.
    np.testing.assert_allclose(mapped[0, 12], 0.5 * np.array([neck[0], neck[2], -neck[1]]))
    np.testing.assert_allclose(mapped[0, 15], 0.5 * np.array([1, 3, -20]))
    skel_fps = load_skeleton_map(_write_yaml(tmp_path / "fps.yaml", joints, fps=10))
    assert len(bvh_to_smpl22(bvh, skel_fps, target_fps=5)) == 2  # 3 frames at 10 fps span 0.2 s


@pytest.mark.parametrize("change, message", [
    (lambda j: j.pop("left_wrist"), "missing ['left_wrist']"),
    (lambda j: j.update(tail="Hips"), "unknown ['tail']"),
    (lambda j: j.update(spine2={"between": ["Hips", "Chest"], "weight": 2}), "joints.spine2.weight"),
    (lambda j: j.update(spine2=["Hips"]), "joints.spine2"),
])
def test_bad_skeleton_map_names_file_and_field(tmp_path, change, message):
    joints = {n: "Hips" for n in SMPL22_JOINT_NAMES}
    change(joints)
    path = _write_yaml(tmp_path / "bad.yaml", joints)
    with pytest.raises(ValueError, match="bad.yaml") as info:
        load_skeleton_map(path)
    assert message in str(info.value)
    with pytest.raises(ValueError, match="unknown skeleton 'cmu2'.*bandai"):
        load_skeleton_map("cmu2")
    skel = load_skeleton_map(_write_yaml(tmp_path / "ok.yaml", {n: "Pelvis" for n in SMPL22_JOINT_NAMES}))
    bvh = parse_bvh_text(SMALL_BVH, "small.bvh")
    with pytest.raises(ValueError, match="small.bvh.*needs joints \\['Pelvis'\\]"):
        map_to_smpl22(bvh_positions(bvh, end_sites=True), bvh.names, skel, bvh.source)


@pytest.mark.parametrize("extra, message", [
    ({"unit_scale": "cm"}, "field unit_scale is 'cm'; expected a number (a positive factor to metres"),
    ({"unit_scale": None}, "field unit_scale is None; expected a number"),
    ({"unit_scale": float("nan")}, "field unit_scale is nan; expected a number"),
    ({"unit_scale": -1}, "field unit_scale is -1.0; expected a positive factor"),
    ({"fps": [30]}, "field fps is [30]; expected a number (a positive frame rate"),
    ({"fps": True}, "field fps is True; expected a number"),
    ({"weight": "half"}, "field joints.neck.weight is 'half'; expected a number (a value in [0, 1])"),
])
def test_numeric_skeleton_fields_name_file_and_field(tmp_path, extra, message):
    joints = {n: "Hips" for n in SMPL22_JOINT_NAMES}
    if "weight" in extra:
        joints["neck"] = {"between": ["Chest", "Head"], "weight": extra.pop("weight")}
    path = _write_yaml(tmp_path / "bad.yaml", joints, **extra)
    with pytest.raises(ValueError) as info:
        load_skeleton_map(path)
    assert str(info.value).startswith(f"{path}: ") and message in str(info.value)


def test_numeric_skeleton_fields_accept_exponent_strings(tmp_path):
    # PyYAML reads 1e-2 (no dot) as a string.
    path = tmp_path / "exp.yaml"
    path.write_text("joints: {" + ", ".join(f"{n}: Hips" for n in SMPL22_JOINT_NAMES) + "}\nunit_scale: 1e-2\n")
    assert load_skeleton_map(str(path)).unit_scale == 0.01


def test_chunk_bounds():
    assert chunk_bounds(100, 196) == [(0, 99)]
    bounds = chunk_bounds(1267, 196)
    assert len(bounds) == 7 and bounds[0][0] == 0 and bounds[-1][1] == 1266
    assert all(b0[1] == b1[0] for b0, b1 in zip(bounds[:-1], bounds[1:]))  # chunks share their boundary frame
    sizes = [b - a for a, b in bounds]
    assert max(sizes) <= 196 and max(sizes) - min(sizes) <= 1


def test_captions_from_names_and_labels(tmp_path):
    rng = np.random.default_rng(0)
    walk = captions_from_name("dataset-1_walk_happy_001", rng)
    assert len(walk) == len(set(walk)) == 3
    assert all("walk" in c and ("happ" in c or "cheerful" in c) for c in walk)
    assert all("bow" in c and ("angr" in c or "furious" in c) for c in captions_from_name("dataset-1_bow_angry_002",
                                                                                           rng))
    assert all("backward" in c for c in captions_from_name("dataset-1_walk-back_normal_001", rng))
    assert all("right hand" in c for c in captions_from_name("dataset-1_bye_sad_001", rng))
    assert captions_from_name("my_clip-Jump_03", rng) == ["a person: my clip jump"]

    csv_path = tmp_path / "labels.csv"
    csv_path.write_text("id,caption\nclip_a.bvh,a person jumps\nclip_a,\"a person hops, twice\"\nclip_b,x\n")
    assert read_labels(csv_path) == {"clip_a": ["a person jumps", "a person hops, twice"], "clip_b": ["x"]}
    json_path = tmp_path / "labels.json"
    json_path.write_text(json.dumps({"clip_a": "a person jumps", "clip_b": ["one", "two"]}))
    assert read_labels(json_path) == {"clip_a": ["a person jumps"], "clip_b": ["one", "two"]}
    json_path.write_text(json.dumps({"clip_a": 3}))
    with pytest.raises(ValueError, match="labels.json.*'clip_a'"):
        read_labels(json_path)


def _bandai_files():
    if not BANDAI.is_dir():
        pytest.skip(f"Bandai Namco BVH clips not found: {BANDAI}")
    files = sorted(BANDAI.glob("*.bvh"))
    assert len(files) == 174
    return files


def test_all_bandai_clips_map_onto_smpl22():
    skel = load_skeleton_map("bandai")
    forward_speeds = []
    for path in _bandai_files():
        bvh = parse_bvh(path)
        joints = bvh_to_smpl22(bvh, skel, target_fps=20)
        assert joints.shape == (int(np.floor((bvh.frames - 1) * 20 / 30 + 1e-6)) + 1, 22, 3), path.name
        assert np.all(np.isfinite(joints)), path.name
        level = np.median(joints[..., 1], axis=0)  # median height of each joint over the clip
        height = level[15] - min(level[10], level[11])
        assert 1.0 < height < 2.0 and level[15] > level[12] > level[0] > level[4] > level[7], path.name
        pose = joints[0]
        if "_walk_" in path.name and len(joints) > 40:
            # The body's left must be +X when it faces +Z (a mirrored mapping would walk backwards).
            across = (pose[2] - pose[1]) + (pose[17] - pose[16])
            forward = np.cross([0.0, 1.0, 0.0], across)
            forward /= np.linalg.norm(forward)
            forward_speeds.append(np.dot(joints[-1, 0] - joints[0, 0], forward) / (len(joints) / 20))
    assert len(forward_speeds) >= 25 and min(forward_speeds) > 0.3


def test_bandai_import_subset(tmp_path):
    _bandai_files()
    # One clip per kind of caption, a clip longer than 9.8 s (kick) and one shorter than 2 s (walk-back_normal_001).
    names = ["walk_happy_001", "walk-back_normal_001", "walk-left_normal_001", "run_angry_001", "dash_old_001",
             "bow_active_001", "bye_proud_001", "byebye_giant_001", "guide_normal_001", "respond_normal_001",
             "call_normal_001", "punch_normal_001", "kick_normal_001"]
    chosen = [BANDAI / f"dataset-1_{n}.bvh" for n in names]
    src = tmp_path / "src"
    src.mkdir()
    for path in chosen:
        os.symlink(path, src / path.name)  # the data stays where it is
    labels = tmp_path / "labels.json"
    labels.write_text(json.dumps({"dataset-1_bow_active_001": "a person bows with energy"}))
    out = tmp_path / "dataset" / "BandaiSubset"
    summary = import_bvh_folder(str(src), str(out), "bandai", target_fps=20, labels=str(labels))

    assert summary.clips == len(chosen) == 13 and summary.captions_from_labels == 1
    assert summary.chunked_clips == ["dataset-1_kick_normal_001"]
    assert summary.too_short == ["dataset-1_walk-back_normal_001"]
    spec = get_dataset_spec("BandaiSubset", data_root=str(out))
    assert (spec.name, spec.joints_num, spec.dim_pose, spec.fps, spec.root) == ("BandaiSubset", 22, 263, 20.0,
                                                                                 str(out))
    ids = read_split(str(out), "all")
    assert len(ids) == summary.motions == 13 - 1 + 2  # kick: 239 frames at 20 fps -> 2 chunks
    assert {i for i in ids if "kick" in i} == {"dataset-1_kick_normal_001_c0", "dataset-1_kick_normal_001_c1"}
    split_of = {i: s for s in ("train", "val", "test") for i in read_split(str(out), s)}
    assert split_of["dataset-1_kick_normal_001_c0"] == split_of["dataset-1_kick_normal_001_c1"]
    for clip_id in ids:
        features = np.load(out / "new_joint_vecs" / f"{clip_id}.npy")
        assert features.shape[1] == 263 and np.all(np.isfinite(features))
        captions = [e.caption for e in read_texts(str(out / "texts" / f"{clip_id}.txt"))]
        content = clip_id.split("_")[1]
        if clip_id == "dataset-1_bow_active_001":
            assert captions == ["a person bows with energy"]
        else:
            assert len(captions) == 3
            assert all(any(p in c for p in BANDAI_CONTENT_PHRASES[content]) for c in captions), captions
    with open(out / "clips.csv") as f:
        provenance = {row["id"]: row for row in csv.DictReader(f)}
    assert sorted(provenance) == sorted(ids)
    first, second = provenance["dataset-1_kick_normal_001_c0"], provenance["dataset-1_kick_normal_001_c1"]
    assert first["source"] == second["source"] == "dataset-1_kick_normal_001.bvh"
    assert float(first["start_s"]) == 0.0 and first["end_s"] == second["start_s"]  # chunks share a boundary frame
    assert all(float(row["source_fps"]) > 20 for row in provenance.values())  # the Bandai clips are above 20 fps
    report = validate_dataset(spec, str(out))
    assert report.ok and report.counts == {"too_short": 1}, report.format()


def test_prepare_data_bvh_and_export(tmp_path, capsys):
    import prepare_data

    motion = synthesize_motion(np.random.default_rng(8), "jump")
    src = tmp_path / "mocap"
    src.mkdir()
    write_bvh(src / "jump_take1.bvh", motion.joints, fps=30, scale=100.0)  # centimetres at 30 fps
    skeleton = tmp_path / "smpl_names.yaml"
    _write_yaml(skeleton, {n: n for n in SMPL22_JOINT_NAMES}, unit_scale=0.01)
    labels = tmp_path / "labels.csv"
    labels.write_text("jump_take1,a person jumps\n")
    out = tmp_path / "MyMocap"
    args = ["bvh", "--src", str(src), "--out", str(out), "--skeleton", str(skeleton), "--labels", str(labels)]
    assert prepare_data.main(prepare_data.parse_args(args)) == 0
    assert "bvh: 1 motions" in capsys.readouterr().out
    features = np.load(out / "new_joint_vecs" / "jump_take1.npy")
    # 30 fps in, 20 fps out: the clip keeps its duration.
    assert features.shape == (int((len(motion.joints) - 1) * 20 / 30), 263)
    assert [e.caption for e in read_texts(str(out / "texts" / "jump_take1.txt"))] == ["a person jumps"]
    # clips.csv traces the motion back to its file, its own rate and its span in seconds.
    with open(out / "clips.csv") as f:
        rows = list(csv.DictReader(f))
    assert rows == [{"id": "jump_take1", "source": "jump_take1.bvh", "source_fps": "30.0",
                     "source_frames": str(len(motion.joints)), "start_s": "0.0",
                     "end_s": str(round(features.shape[0] / 20, 6)), "fps": "20.0",
                     "frames": str(features.shape[0])}]

    joints_file = tmp_path / "generated.npy"
    np.save(joints_file, np.load(out / "new_joints" / "jump_take1.npy"))
    assert prepare_data.main(prepare_data.parse_args(["export_bvh", str(joints_file)])) == 0
    exported = bvh_positions(parse_bvh(tmp_path / "generated.bvh"))
    assert exported.shape == (features.shape[0], 22, 3)
    # Features (T, 263) go through the dataset's kinematics to the same joints, hence the same BVH.
    features_file = tmp_path / "generated_features.npy"
    np.save(features_file, features)
    assert prepare_data.main(prepare_data.parse_args(["export_bvh", str(features_file), "--data_root", str(out),
                                                      "--out", str(tmp_path / "from_features.bvh")])) == 0
    from_features = bvh_positions(parse_bvh(tmp_path / "from_features.bvh"))
    assert np.abs(from_features - exported).max() < 1e-3
    with pytest.raises(ValueError, match="expected joint positions of shape"):
        np.save(joints_file, np.zeros((5, 21, 3)))
        prepare_data.main(prepare_data.parse_args(["export_bvh", str(joints_file)]))
    objects = tmp_path / "objects.npy"
    np.save(objects, np.array([{"joints": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(ValueError, match=r"objects\.npy: not a plain numeric \.npy"):
        prepare_data.main(prepare_data.parse_args(["export_bvh", str(objects)]))
    with pytest.raises(FileNotFoundError, match=r"--labels .*none\.csv: no such file"):
        prepare_data.main(prepare_data.parse_args(["bvh", "--src", str(src), "--out", str(tmp_path / "Other"),
                                                   "--skeleton", str(skeleton),
                                                   "--labels", str(tmp_path / "none.csv")]))
    # Non-finite joints are refused, naming the input, and the earlier export is left as it was.
    before = (tmp_path / "generated.bvh").read_text()
    bad_joints = np.load(out / "new_joints" / "jump_take1.npy")
    bad_joints[2, 0] = np.inf
    np.save(joints_file, bad_joints)
    with pytest.raises(ValueError, match=f"{re.escape(str(joints_file))}: joints\\[2, 0\\].*expected finite"):
        prepare_data.main(prepare_data.parse_args(["export_bvh", str(joints_file)]))
    assert (tmp_path / "generated.bvh").read_text() == before


def test_prepare_data_bvh_names_the_flags_that_find_the_import_under_a_home_folder(tmp_path, monkeypatch, capsys):
    """With FSQ_MARDM_HOME set, --dataset_name alone looks under $FSQ_MARDM_HOME/dataset: an import written to the
    working directory's dataset/ needs --data_root, one written to the home folder's does not."""
    import prepare_data
    from utils.paths import HOME_ENV

    motion = synthesize_motion(np.random.default_rng(8), "jump")
    src = tmp_path / "mocap"
    src.mkdir()
    write_bvh(src / "jump_take1.bvh", motion.joints, fps=30, scale=100.0)
    skeleton = tmp_path / "smpl_names.yaml"
    _write_yaml(skeleton, {n: n for n in SMPL22_JOINT_NAMES}, unit_scale=0.01)
    home, work = tmp_path / "home", tmp_path / "work"
    work.mkdir()
    monkeypatch.setenv(HOME_ENV, str(home))
    monkeypatch.chdir(work)
    for out, advice in ((os.path.join("dataset", "Mocap"), "use it with --dataset_name Mocap --data_root "),
                        (str(home / "dataset" / "Homed"), "use it with --dataset_name Homed\n")):
        args = ["bvh", "--src", str(src), "--out", out, "--skeleton", str(skeleton)]
        assert prepare_data.main(prepare_data.parse_args(args)) == 0
        assert advice in capsys.readouterr().out
    assert get_dataset_spec("Homed").root == str(home / "dataset" / "Homed")


def test_prepare_data_bvh_refuses_a_registered_dataset_name(tmp_path):
    import prepare_data

    src = tmp_path / "mocap"
    src.mkdir()
    (src / "clip.bvh").write_text(SMALL_BVH)
    out = tmp_path / "x" / "kit"
    args = ["bvh", "--src", str(src), "--out", str(out), "--skeleton", "bandai"]
    with pytest.raises(ValueError, match=f"{re.escape(str(out))}: the folder name 'kit' is a registered dataset "
                                         "name.*Choose another --out folder name"):
        prepare_data.main(prepare_data.parse_args(args))
    assert not out.exists()


def test_import_names_the_bvh_file_and_frame_of_a_nan(tmp_path):
    src = tmp_path / "mocap"
    src.mkdir()
    (src / "clip.bvh").write_text(SMALL_BVH.replace("0 0 0 90 90 0", "0 nan 0 90 90 0"))
    skeleton = _write_yaml(tmp_path / "small.yaml", {n: "Hips" for n in SMPL22_JOINT_NAMES})
    with pytest.raises(ValueError, match=r"clip\.bvh: MOTION frame 3 of 3, joint 'Hips' channel Yposition is nan"):
        import_bvh_folder(str(src), str(tmp_path / "Out"), skeleton)
    assert not list(tmp_path.glob("Out*"))  # no half-written dataset, no staging folder


def test_import_refuses_a_non_empty_out_and_a_file_as_src(tmp_path, caplog):
    src = tmp_path / "mocap"
    src.mkdir()
    write_bvh(src / "clip.bvh", synthesize_motion(np.random.default_rng(8), "jump").joints, fps=20)
    skeleton = _write_yaml(tmp_path / "smpl_names.yaml", {n: n for n in SMPL22_JOINT_NAMES})
    with pytest.raises(ValueError, match=r"--src .*clip\.bvh: a file; give the folder"):
        import_bvh_folder(str(src / "clip.bvh"), str(tmp_path / "Out"), skeleton)
    with pytest.raises(ValueError, match="no such folder"):
        import_bvh_folder(str(tmp_path / "missing"), str(tmp_path / "Out"), skeleton)
    out = tmp_path / "Out"
    with caplog.at_level(logging.WARNING, logger="utils.bvh_import"):
        summary = import_bvh_folder(str(src), str(out), skeleton)
    assert summary.out_dir == str(out) and (out / "spec.json").is_file() and summary.clips == 1
    assert any("val and test splits" in r.message for r in caplog.records)
    with pytest.raises(ValueError, match=r"Out: exists and is not empty; import into a new --out folder"):
        import_bvh_folder(str(src), str(out), skeleton)


def test_import_warns_about_a_wrong_up_axis_or_unit(tmp_path, caplog):
    src = tmp_path / "mocap"
    src.mkdir()
    write_bvh(src / "jump.bvh", synthesize_motion(np.random.default_rng(8), "jump").joints, fps=20)
    names = {n: n for n in SMPL22_JOINT_NAMES}
    for out, extra, message in (("Right", {}, None), ("Z", {"up_axis": "z"}, "up_axis is wrong"),
                                ("Cm", {"unit_scale": 100.0}, "check the skeleton's unit_scale")):
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="utils.bvh_import"):
            import_bvh_folder(str(src), str(tmp_path / out), _write_yaml(tmp_path / f"{out}.yaml", names, **extra))
        warned = [r.message for r in caplog.records if "up_axis" in r.message or "unit_scale" in r.message]
        assert (warned == []) if message is None else (len(warned) == 1 and message in warned[0]), warned


def test_import_names_the_clip_and_bone_of_a_collapsed_mapping(tmp_path, monkeypatch):
    """A mapping that puts a joint on its parent's point (a skeleton without collars mapped onto the spine) fails
    naming the clip, the bone, the frame and what the YAML maps both ends to, not an anonymous joint index."""
    src = tmp_path / "mocap"
    src.mkdir()
    write_bvh(src / "jump.bvh", synthesize_motion(np.random.default_rng(8), "jump").joints, fps=20)
    joints = {n: n for n in SMPL22_JOINT_NAMES}
    joints["left_collar"] = "spine3"
    skeleton = _write_yaml(tmp_path / "no_collars.yaml", joints)
    with pytest.raises(ValueError, match=r"jump\.bvh: SMPL-22 joint left_collar and its parent spine3 are at the "
                                         r"same point in frame 1 of \d+ \(skeleton 'mine': they both map to spine3\)"):
        import_bvh_folder(str(src), str(tmp_path / "Out"), skeleton)

    # Errors of the later passes name the clip too; a clip without frames says so.
    skeleton = _write_yaml(tmp_path / "smpl_names.yaml", {n: n for n in SMPL22_JOINT_NAMES})
    monkeypatch.setattr("utils.bvh_import.write_motion", lambda *a: (_ for _ in ()).throw(ValueError("boom")))
    with pytest.raises(ValueError, match=r"jump\.bvh: boom"):
        import_bvh_folder(str(src), str(tmp_path / "Out"), skeleton)
    text = (src / "jump.bvh").read_text()
    head, _ = text.split("MOTION")
    (src / "jump.bvh").write_text(head + "MOTION\nFrames: 0\nFrame Time: 0.05\n")
    with pytest.raises(ValueError, match=r"jump\.bvh: the MOTION section has 0 frames"):
        import_bvh_folder(str(src), str(tmp_path / "Out"), skeleton)
    assert not list(tmp_path.glob("Out*"))


def test_imported_caption_times_are_seconds_at_the_import_frame_rate(tmp_path):
    """Caption tags are seconds: a clip imported at 30 fps puts a 1.0 s .. 2.5 s caption on frames 30 .. 75, not on
    the frames a 20 fps clip would use (which describe other moments of the motion)."""
    from utils.datasets import collect_text_samples
    from utils.motion_index import MotionIndex

    src = tmp_path / "mocap"
    src.mkdir()
    write_bvh(src / "jump.bvh", synthesize_motion(np.random.default_rng(8), "jump").joints, fps=20)
    skeleton = _write_yaml(tmp_path / "smpl_names.yaml", {n: n for n in SMPL22_JOINT_NAMES})
    out = tmp_path / "Mocap30"
    import_bvh_folder(str(src), str(out), skeleton, target_fps=30)
    spec = get_dataset_spec("Mocap30", str(out))
    assert spec.fps == 30 and spec.text_fps == 30
    with open(out / "texts" / "jump.txt", "a") as f:
        f.write("a person crouches before the jump#a/DET person/NOUN crouch/VERB#1.0#2.5\n")
    (out / "one.txt").write_text("jump\n")
    samples = collect_text_samples(spec, MotionIndex.build(spec, "one", str(out), progress=False), str(out))
    bounds = {(int(a), int(b)) for a, b in zip(samples.starts, samples.stops)}
    assert (30, 75) in bounds, bounds

    # An import made before text_fps followed --fps recorded 20: validate points at the spec.json setting to fix.
    from utils.data_validation import validate_dataset

    assert "text_fps" not in validate_dataset(spec, str(out), splits=("one",)).counts
    spec_file = out / "spec.json"
    spec_file.write_text(spec_file.read_text().replace('"text_fps": 30.0', '"text_fps": 20.0'))
    old = get_dataset_spec("Mocap30", str(out))
    assert old.text_fps == 20
    report = validate_dataset(old, str(out), splits=("one",))
    assert report.ok and report.counts.get("text_fps") == 1
    message = [p.message for p in report.problems if p.kind == "text_fps"][0]
    assert "text_fps 20 but fps 30" in message and 'set "text_fps": 30 in spec.json' in message


def test_export_bvh_help_and_refusal_name_the_feature_widths_it_takes(tmp_path, capsys):
    """export_bvh takes features as well as joints: its --help entry says so, and a file of neither shape is refused
    naming every width it takes (t2m_67: its 67 dims, or the 263 of the files it slices)."""
    import prepare_data

    with pytest.raises(SystemExit):
        prepare_data.parse_args(["--help"])
    listed = " ".join(capsys.readouterr().out.split())
    assert "write joint positions (T, J, 3) or features (T, D) as a BVH file" in listed
    wrong = tmp_path / "wrong.npy"
    np.save(wrong, np.zeros((5, 100), dtype=np.float32))
    with pytest.raises(ValueError, match=r"or features of shape \(T, 67 or 263\) for dataset 't2m_67'"):
        prepare_data.main(prepare_data.parse_args(["export_bvh", str(wrong), "--dataset_name", "t2m_67"]))


def test_mirror_adds_each_motions_mirror_image_in_its_split(tmp_path):
    """--mirror writes M<name> as HumanML3D does: x negated and left/right swapped (the recovered joints are the
    mirror image of the original's, up to the retargeting to the t2m skeleton, whose two sides differ by a few mm),
    captions with left and right swapped, in the original's split, in clips.csv."""
    from utils.motion_process import recover_from_ric, swap_left_right

    src = tmp_path / "mocap"
    src.mkdir()
    for k, kind in enumerate(("jump", "walk", "wave", "kick")):
        write_bvh(src / f"{kind}.bvh", synthesize_motion(np.random.default_rng(k), kind).joints, fps=20)
    labels = tmp_path / "labels.json"
    labels.write_text(json.dumps({"wave": "a person waves with the left hand, then turns clockwise"}))
    skeleton = _write_yaml(tmp_path / "smpl_names.yaml", {n: n for n in SMPL22_JOINT_NAMES})
    out = tmp_path / "Mirrored"
    summary = import_bvh_folder(str(src), str(out), skeleton, labels=str(labels), mirror=True)
    assert summary.clips == 4 and summary.motions == 8
    split_of = {i: s for s in ("train", "val", "test") for i in read_split(str(out), s)}
    assert sorted(split_of) == sorted(["jump", "walk", "wave", "kick", "Mjump", "Mwalk", "Mwave", "Mkick"])
    assert all(split_of[f"M{k}"] == split_of[k] for k in ("jump", "walk", "wave", "kick"))
    for kind in ("jump", "wave", "kick"):   # (a walk's root drifts further over its steps: legs of unequal length)
        original = recover_from_ric(np.load(out / "new_joint_vecs" / f"{kind}.npy"), 22)
        mirrored = recover_from_ric(np.load(out / "new_joint_vecs" / f"M{kind}.npy"), 22)
        assert np.abs(mirrored - swap_left_right(original)).max() < 0.02, kind
    assert np.abs(mirrored - original).max() > 0.4               # a kick: its mirror image kicks with the other leg
    assert [e.caption for e in read_texts(str(out / "texts" / "Mwave.txt"))] == \
        ["a person waves with the right hand, then turns counterclockwise"]
    with open(out / "clips.csv") as f:
        rows = {r["id"]: r for r in csv.DictReader(f)}
    assert rows["Mwave"]["source"] == rows["wave"]["source"] == "wave.bvh"
    assert rows["Mwave"]["frames"] == rows["wave"]["frames"]
    # A clip already named like another's mirror image would be overwritten: refused.
    write_bvh(src / "Mjump.bvh", synthesize_motion(np.random.default_rng(9), "jump").joints, fps=20)
    with pytest.raises(ValueError, match=r"motion id 'Mjump' would be written twice"):
        import_bvh_folder(str(src), str(tmp_path / "Clash"), skeleton, mirror=True)


def test_the_smpl22_mapping_imports_this_projects_own_bvh_exports(tmp_path):
    """sample.py --bvh and export_bvh write SMPL-22 joints under their own names in metres: the shipped smpl22
    mapping imports them back to the features of the motion they were written from."""
    motion = synthesize_motion(np.random.default_rng(9), "walk_while_wave")
    src = tmp_path / "exports"
    src.mkdir()
    write_bvh(src / "walk.bvh", motion.joints, fps=20)
    import_bvh_folder(str(src), str(tmp_path / "Reimported"), "smpl22", target_fps=20)
    features = np.load(tmp_path / "Reimported" / "new_joint_vecs" / "walk.npy")
    np.testing.assert_allclose(features, extract_features(motion.joints), atol=1e-3)
