"""BVH folder import (``prepare_data.py bvh``, ``utils.bvh_import``): chunking, captions from names and labels, the
real Bandai Namco clips, provenance, refusals naming the file, frame and bone, mirrored copies, and re-importing the
project's own exports."""

import csv
import json
import logging
import os
import re

import numpy as np
import pytest
from test_bvh import BANDAI, SMALL_BVH, _write_yaml

from utils.bvh import (
    SMPL22_JOINT_NAMES,
    bvh_positions,
    bvh_to_smpl22,
    load_skeleton_map,
    parse_bvh,
)
from utils.bvh_captions import BANDAI_CONTENT_PHRASES, captions_from_name, read_labels
from utils.bvh_export import write_bvh
from utils.bvh_import import chunk_bounds, import_bvh_folder
from utils.data_validation import validate_dataset
from utils.dataset_specs import get_dataset_spec
from utils.datasets import read_split, read_texts
from utils.motion_process import extract_features, recover_from_ric
from utils.representation import joints_to_features
from utils.synthetic import synthesize_motion


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


def test_labels_saved_with_a_byte_order_mark_keep_their_first_id(tmp_path):
    """Excel's "CSV UTF-8" and some editors start the file with a byte order mark; it is not part of the first id."""
    csv_path = tmp_path / "labels.csv"
    csv_path.write_text("clip_a,a person jumps\n", encoding="utf-8-sig")
    assert read_labels(csv_path) == {"clip_a": ["a person jumps"]}
    csv_path.write_text("id,caption\nclip_a,a person jumps\n", encoding="utf-8-sig")
    assert read_labels(csv_path) == {"clip_a": ["a person jumps"]}
    json_path = tmp_path / "labels.json"
    json_path.write_text(json.dumps({"clip_a": "a person jumps"}), encoding="utf-8-sig")
    assert read_labels(json_path) == {"clip_a": ["a person jumps"]}


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
        prepare_data.main(prepare_data.parse_args(["export_bvh", str(joints_file), "--overwrite"]))
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
        prepare_data.main(prepare_data.parse_args(["export_bvh", str(joints_file), "--overwrite"]))
    assert (tmp_path / "generated.bvh").read_text() == before


def test_an_export_past_a_file_size_limit_is_one_line_naming_the_file(tmp_path):
    """prepare_data.py export_bvh on a full disk (here a file-size limit): one line that names the BVH file, no
    traceback, and no partial file; it used to be a traceback ending in "[Errno 27] File too large"."""
    import resource
    import subprocess
    import sys

    import prepare_data

    joints_file = tmp_path / "jump.npy"
    np.save(joints_file, synthesize_motion(np.random.default_rng(8), "jump").joints)
    done = subprocess.run([sys.executable, "prepare_data.py", "export_bvh", str(joints_file)],
                          cwd=os.path.dirname(os.path.abspath(prepare_data.__file__)), capture_output=True, text=True,
                          timeout=120, preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096)))
    assert done.returncode == 1, done.stderr[-2000:]
    assert done.stderr.splitlines()[0] == (f"prepare_data.py: error: [Errno 27] File too large: "
                                           f"'{tmp_path / 'jump.bvh'}'"), done.stderr[-2000:]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["jump.npy"]


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


def test_prepare_data_bvh_help_names_every_skeleton_preset(capsys):
    import prepare_data
    from utils.bvh import SKELETON_DIR

    with pytest.raises(SystemExit):
        prepare_data.parse_args(["bvh", "--help"])
    listed = " ".join(capsys.readouterr().out.split())
    presets = sorted(p.stem for p in SKELETON_DIR.glob("*.yaml"))
    assert "smpl22" in presets and all(name in listed for name in presets), (presets, listed)


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
    assert any("splits val and test hold no motion" in r.getMessage() for r in caplog.records)
    with pytest.raises(ValueError, match=r"Out: exists and is not empty; import into a new --out folder"):
        import_bvh_folder(str(src), str(out), skeleton)
    # A file in --out's place is refused before any clip is converted, not when the dataset is moved into place.
    taken = tmp_path / "Taken"
    taken.write_text("notes\n")
    with pytest.raises(ValueError, match=r"--out .*Taken: a file; import into a new --out folder"):
        import_bvh_folder(str(src), str(taken), skeleton)
    assert taken.read_text() == "notes\n" and not list(tmp_path.glob("Taken.importing-*"))


@pytest.mark.parametrize("fps", [0.0, -20.0, float("nan")])
def test_import_refuses_a_target_frame_rate_naming_the_flag_not_a_clip(tmp_path, fps):
    src = tmp_path / "mocap"
    src.mkdir()
    write_bvh(src / "jump.bvh", synthesize_motion(np.random.default_rng(8), "jump").joints, fps=20)
    with pytest.raises(ValueError, match=rf"^--fps {fps}: expected a positive target frame rate"):
        import_bvh_folder(str(src), str(tmp_path / "Out"), "smpl22", target_fps=fps)
    assert not list(tmp_path.glob("Out*"))


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


@pytest.mark.parametrize("fps", ["0", "-20", "nan", "inf"])
@pytest.mark.parametrize("command", [["export_bvh", "x.npy"], ["export_smpl", "x.npy", "--body_model", "m.npz"],
                                     ["bvh", "--src", "s", "--out", "o", "--skeleton", "bandai"],
                                     ["amass", "--src", "s", "--out", "o", "--body_model", "m.npz"]])
def test_a_typed_fps_must_be_a_positive_rate(command, fps, capsys):
    """--fps 0 is not "the dataset's rate" (leaving the flag out is): it is refused, naming the flag."""
    import prepare_data

    with pytest.raises(SystemExit):
        prepare_data.parse_args([*command, "--fps", fps])
    assert f"argument --fps: expected a finite number > 0, got '{fps}'" in capsys.readouterr().err
    assert prepare_data.parse_args(command).fps == (None if command[0].startswith("export") else 20.0)


def test_mirror_adds_each_motions_mirror_image_in_its_split(tmp_path):
    """--mirror writes M<name> as HumanML3D does: x negated and left/right swapped (the recovered joints are the
    mirror image of the original's, up to the retargeting to the t2m skeleton, whose two sides differ by a few mm),
    captions with left and right swapped, in the original's split, in clips.csv."""
    from utils.motion_process import swap_left_right

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


def test_foot_contacts_mean_the_same_foot_speed_at_any_import_frame_rate(tmp_path):
    """HumanML3D's contact threshold is a squared displacement per frame at 20 fps (a foot slower than about 0.9 m/s).
    A body gliding at 1.2 m/s has no contact and one at 0.6 m/s has contact, whatever ``--fps`` the import uses: the
    threshold per frame follows the frame rate, or at 30 fps the faster glide would count as standing."""
    pose = synthesize_motion(np.random.default_rng(3), "walk").joints[0]
    src = tmp_path / "mocap"
    src.mkdir()
    times = np.arange(121) / 60.0
    for name, speed in (("fast", 1.2), ("slow", 0.6)):
        glide = pose[None] + speed * times[:, None, None] * np.array([0.0, 0.0, 1.0])
        write_bvh(src / f"{name}.bvh", glide, fps=60)
    for fps in (20, 30, 60):
        out = tmp_path / f"Glide{fps}"
        import_bvh_folder(str(src), str(out), "smpl22", target_fps=fps)
        fast = np.load(out / "new_joint_vecs" / "fast.npy")[:, -4:]
        slow = np.load(out / "new_joint_vecs" / "slow.npy")[:, -4:]
        assert not fast.any(), f"{fps} fps: a foot gliding at 1.2 m/s is in contact in {fast.mean():.0%} of frames"
        assert slow.all(), f"{fps} fps: a foot gliding at 0.6 m/s is in contact in only {slow.mean():.0%} of frames"
        # Features made from joints for that dataset (editing, conversions) use its frame rate too.
        spec = get_dataset_spec(out.name, str(out))
        fast_joints = pose[None] + 1.2 * (np.arange(41) / fps)[:, None, None] * np.array([0.0, 0.0, 1.0])
        assert spec.fps == fps and not joints_to_features(fast_joints, spec)[:, -4:].any()


def test_upper_case_extensions_are_imported_and_other_files_are_not(tmp_path):
    """Exporters write ``.BVH`` as often as ``.bvh``: both are clips (found in sub-folders too); a folder named like
    a clip and files of other types are not."""
    src = tmp_path / "mocap"
    (src / "session2").mkdir(parents=True)
    rng = np.random.default_rng(10)
    write_bvh(src / "walk.bvh", synthesize_motion(rng, "walk").joints, fps=20)
    write_bvh(src / "session2" / "JUMP.BVH", synthesize_motion(rng, "jump").joints, fps=20)
    write_bvh(src / "Run.Bvh", synthesize_motion(rng, "run").joints, fps=20)
    (src / "notes.txt").write_text("not a clip\n")
    (src / "folder.bvh").mkdir()
    summary = import_bvh_folder(str(src), str(tmp_path / "Out"), "smpl22", target_fps=20)
    assert summary.clips == 3
    assert sorted(p.stem for p in (tmp_path / "Out" / "new_joint_vecs").glob("*.npy")) == ["JUMP", "Run", "walk"]
    only_other = tmp_path / "other"
    only_other.mkdir()
    (only_other / "clip.fbx").write_text("")
    with pytest.raises(ValueError, match=r"other: no \.bvh files found \(searched recursively, any case"):
        import_bvh_folder(str(only_other), str(tmp_path / "Out2"), "smpl22")
