"""BVH import and export contracts no other test pinned: forward kinematics and mapping refusals, rest offsets
(median length, first-frame directions), the import's size, length, split and name checks, the caption sources
(Bandai names, CSV and JSON labels) and the skeleton's forward kinematics without the root rotation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from test_body_model_contracts import _smpl22_rest

from utils.bvh import (
    SMPL22_JOINT_NAMES,
    bvh_positions,
    forward_kinematics,
    load_skeleton_map,
    parse_bvh,
    read_bvh_smpl22,
)
from utils.bvh_export import write_bvh


def _write_yaml(path: Path, joints: dict, **extra) -> str:
    lines = ["name: mine"] + [f"{k}: {v}" for k, v in extra.items()] + ["joints:"]
    lines += [f"  {k}: {v}" for k, v in joints.items()]
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def _chain_joints(frames: np.ndarray) -> np.ndarray:
    return np.asarray(frames, dtype=np.float64)


def test_forward_kinematics_refuses_a_joint_that_is_its_own_parent():
    """A joint listed as its own parent must be refused, not placed at the origin."""
    rot = np.broadcast_to(np.eye(3), (1, 2, 3, 3))
    with pytest.raises(ValueError, match="parent 1 of joint 1 must come before it"):
        forward_kinematics(rot, np.array([[0.0, 0.0, 0.0], [0.0, 1.0, 0.0]]), [-1, 1])


def test_a_two_frame_clip_with_a_collapsed_mapping_is_refused(tmp_path):
    """A 2-frame clip (the shortest a caller accepts) whose mapping puts a joint
    on its parent's point must be refused with the bone named, as longer clips are."""
    rng = np.random.default_rng(0)
    from utils.synthetic import synthesize_motion
    joints = synthesize_motion(rng, "walk").joints[:2]
    write_bvh(tmp_path / "two.bvh", joints, fps=20)
    mapping = {n: n for n in SMPL22_JOINT_NAMES}
    mapping["left_collar"] = "spine3"
    skel = load_skeleton_map(_write_yaml(tmp_path / "m.yaml", mapping))
    with pytest.raises(ValueError, match="left_collar and its parent spine3 are at the same point"):
        read_bvh_smpl22(tmp_path / "two.bvh", skel)


def _three_joint_chain(lengths_b: np.ndarray) -> np.ndarray:
    """A root at the origin, joint 1 one unit up, joint 2 at lengths_b along +x from joint 1 (one frame each)."""
    frames = len(lengths_b)
    j = np.zeros((frames, 3, 3))
    j[:, 1] = [0.0, 1.0, 0.0]
    j[:, 2] = j[:, 1] + np.stack([lengths_b, np.zeros(frames), np.zeros(frames)], -1)
    return j


def _offsets(path: Path) -> np.ndarray:
    bvh = parse_bvh(path)
    return bvh.offsets[[i for i, e in enumerate(bvh.is_end_site) if not e]]


def test_rest_offsets_use_the_median_bone_length(tmp_path):
    """A bone whose length jumps in one frame keeps its median length as the rest offset (a max
    or mean would be pulled by the outlier)."""
    joints = _three_joint_chain(np.array([1.0, 1.0, 1.0, 1.0, 5.0]))
    write_bvh(tmp_path / "m.bvh", joints, fps=20, kinematic_chain=[[0, 1, 2]])
    np.testing.assert_allclose(_offsets(tmp_path / "m.bvh")[2], [1.0, 0.0, 0.0], atol=1e-6)


def test_rest_offsets_are_the_first_frames_bone_directions(tmp_path):
    """The rest pose written to OFFSET is the first frame's bone directions (module docstring)."""
    frames = 4
    joints = np.zeros((frames, 3, 3))
    angles = np.linspace(0.0, np.pi / 2, frames)  # joint 2 swings from +x to +z about joint 1
    joints[:, 1] = [0.0, 1.0, 0.0]
    joints[:, 2] = joints[:, 1] + np.stack([np.cos(angles), np.zeros(frames), np.sin(angles)], -1)
    write_bvh(tmp_path / "m.bvh", joints, fps=20, kinematic_chain=[[0, 1, 2]])
    np.testing.assert_allclose(_offsets(tmp_path / "m.bvh")[1:], [[0.0, 1.0, 0.0], [1.0, 0.0, 0.0]], atol=1e-6)
    # and the motion still comes back frame by frame
    np.testing.assert_allclose(bvh_positions(parse_bvh(tmp_path / "m.bvh")), joints, atol=1e-5)


def test_a_clip_far_too_small_is_reported_as_odd_size(tmp_path):
    """Metres read as centimetres (unit_scale 0.01) make a 2 cm body,
    which the import must report (and warn about), as it does for one too large."""
    from utils.bvh_import import import_bvh_folder
    from utils.synthetic import synthesize_motion
    src = tmp_path / "mocap"
    src.mkdir()
    write_bvh(src / "walk.bvh", synthesize_motion(np.random.default_rng(3), "walk").joints, fps=20)
    skeleton = _write_yaml(tmp_path / "cm.yaml", {n: n for n in SMPL22_JOINT_NAMES}, unit_scale=0.01)
    summary = import_bvh_folder(str(src), str(tmp_path / "Tiny"), skeleton)
    assert len(summary.odd_size) == 1 and summary.odd_size[0].startswith("walk ("), summary.odd_size


def _import_one(tmp_path, joints, name="walk", out="Out"):
    from utils.bvh_import import import_bvh_folder
    src = tmp_path / f"src_{out}"
    src.mkdir()
    write_bvh(src / f"{name}.bvh", joints, fps=20)
    return import_bvh_folder(str(src), str(tmp_path / out), "smpl22", target_fps=20.0)


def _walk(frames: int) -> np.ndarray:
    from utils.synthetic import synthesize_motion
    joints = synthesize_motion(np.random.default_rng(5), "walk").joints
    assert len(joints) >= frames
    return joints[:frames]


def test_a_motion_of_exactly_the_minimum_length_is_not_too_short(tmp_path):
    """The loaders keep a motion of exactly 40 feature frames
    (datasets.py: min_motion_length <= T), so the import must not report it as too short."""
    summary = _import_one(tmp_path, _walk(41))  # 41 joint frames -> 40 feature frames
    assert summary.frames == 40
    assert summary.too_short == []


def test_a_split_holding_only_too_short_motions_is_reported(tmp_path):
    """A split whose motions are all shorter than the minimum holds nothing the
    loaders keep, also when those are all the too-short motions of the import."""
    summary = _import_one(tmp_path, _walk(21))  # 20 feature frames < 40
    assert summary.too_short == ["walk"]
    held = [s for s, n in summary.splits.items() if s in ("train", "val", "test") and n]
    assert held, summary.splits
    for split in held:
        assert "shorter than 40 frames" in summary.empty_splits[split], summary.empty_splits
    assert "shorter than 40 frames" in summary.empty_splits_message()


def test_clips_with_one_name_in_two_folders_are_refused_before_any_conversion(tmp_path, monkeypatch):
    """Two clips with the same stem would get one motion id; the import must refuse them up front
    naming the repeated name, before converting any clip."""
    import utils.bvh_import as bi
    src = tmp_path / "mocap"
    (src / "a").mkdir(parents=True)
    (src / "b").mkdir()
    write_bvh(src / "a" / "walk.bvh", _walk(30), fps=20)
    write_bvh(src / "b" / "walk.bvh", _walk(30), fps=20)
    calls = []
    real = bi.read_bvh_smpl22
    monkeypatch.setattr(bi, "read_bvh_smpl22", lambda *a, **k: calls.append(a) or real(*a, **k))
    with pytest.raises(ValueError, match=r"clip names must be unique .*\['walk'\]"):
        bi.import_bvh_folder(str(src), str(tmp_path / "Out"), "smpl22")
    assert calls == []


def test_a_bandai_style_name_of_unknown_content_is_captioned_by_its_words():
    """A name in the Bandai pattern whose content has no phrases is not a Bandai name; it is
    captioned by its words instead of failing with a KeyError."""
    from utils.bvh_captions import captions_from_name, is_bandai_name
    assert not is_bandai_name("dataset-1_swim_happy_001")
    assert captions_from_name("dataset-1_swim_happy_001", np.random.default_rng(0)) == [
        "a person: dataset swim happy"]


@pytest.mark.parametrize("seed", range(6))
def test_bandai_captions_prefer_a_new_verb_phrase_each(seed):
    """The three captions of a Bandai clip use three different verb phrases."""
    from utils.bvh_captions import _SUBJECTS, BANDAI_CONTENT_PHRASES, BANDAI_STYLE_PHRASES, captions_from_name
    captions = captions_from_name("dataset-1_walk-back_happy_001", np.random.default_rng(seed))
    assert len(captions) == 3
    actions = []
    for c in captions:
        subject = next(s for s in sorted(_SUBJECTS, key=len, reverse=True) if c.startswith(s + " "))
        manner = next(m for m in BANDAI_STYLE_PHRASES["happy"] if c.endswith(" " + m))
        action = c[len(subject) + 1:len(c) - len(manner) - 1]
        assert action in BANDAI_CONTENT_PHRASES["walk-back"], c
        actions.append(action)
    assert len(set(actions)) == 3, captions


def test_a_csv_caption_with_commas_is_kept_whole(tmp_path):
    """An unquoted caption containing commas keeps all its parts."""
    from utils.bvh_captions import read_labels
    path = tmp_path / "labels.csv"
    path.write_text("id,caption\nwalk,a person walks, then turns, then stops\n")
    assert read_labels(path) == {"walk": ["a person walks, then turns, then stops"]}


def test_label_ids_with_an_upper_case_extension_lose_it(tmp_path):
    """Ids written with the source extension in any case (``Walk.BVH``) match the clip."""
    from utils.bvh_captions import read_labels
    path = tmp_path / "labels.csv"
    path.write_text("Walk.BVH,a person walks\nrun.bvh,a person runs\n")
    assert read_labels(path) == {"Walk": ["a person walks"], "run": ["a person runs"]}


@pytest.mark.parametrize("text, name", [("id,caption\n", "labels.csv"), ("{}", "labels.json"),
                                        ('{"walk": ""}', "labels.json")])
def test_a_label_file_without_captions_is_refused(tmp_path, text, name):
    """A labels file that holds no caption is refused rather than silently ignored."""
    from utils.bvh_captions import read_labels
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(ValueError, match="no captions found"):
        read_labels(path)


def test_a_json_caption_list_with_a_non_string_is_refused_naming_the_entry(tmp_path):
    """A JSON caption list holding a number is refused naming the entry (not an
    AttributeError)."""
    from utils.bvh_captions import read_labels
    path = tmp_path / "labels.json"
    path.write_text('{"walk": ["a person walks", 3]}')
    with pytest.raises(ValueError, match="entry 'walk' must be a caption string or a list of strings"):
        read_labels(path)


def test_skeleton_forward_kinematics_without_the_root_rotation():
    """With do_root_r=False the root quaternion is ignored: a 90 degree root turn gives the same
    joints as the identity, while with it the chain turns (hand-computed on a 3-joint chain)."""
    from utils.skeleton import Skeleton
    skel = Skeleton(np.array([[0.0, 0, 0], [0, 1, 0], [1, 0, 0]]), [[0, 1, 2]])
    quat = np.zeros((1, 3, 4))
    quat[..., 0] = 1.0
    quat[0, 0] = [np.cos(np.pi / 4), 0.0, np.sin(np.pi / 4), 0.0]  # 90 degrees about +Y: +X -> -Z
    offsets = np.array([[0.0, 0, 0], [0, 2, 0], [3, 0, 0]])
    root = np.array([[1.0, 0.0, 0.0]])
    turned = skel.forward_kinematics(quat, root, offsets)
    plain = skel.forward_kinematics(quat, root, offsets, do_root_r=False)
    np.testing.assert_allclose(plain[0], [[1, 0, 0], [1, 2, 0], [4, 2, 0]], atol=1e-12)
    np.testing.assert_allclose(turned[0], [[1, 0, 0], [1, 2, 0], [1, 2, -3]], atol=1e-12)


def test_write_bvh_refuses_more_joint_names_than_joints(tmp_path):
    """23 names for 22 joints is refused, nothing written."""
    joints = np.broadcast_to(_smpl22_rest(), (2, 22, 3))
    with pytest.raises(ValueError, match="23 joint names for 22 joints"):
        write_bvh(tmp_path / "x.bvh", joints, fps=20, joint_names=list(SMPL22_JOINT_NAMES) + ["extra"])
    assert not (tmp_path / "x.bvh").exists()


def test_a_low_wide_body_with_the_trunk_pointing_down_lies():
    """Trunk_rise is signed (< 0 head down); a body lower than wide whose trunk points down
    (neck below the pelvis) is more than 45 degrees from vertical, so it lies, as a crawl does."""
    from utils.bvh_import import _NECK, _PELVIS, body_extent
    joints = np.zeros((3, 22, 3))
    joints[:, :, 0] = np.linspace(0.0, 1.5, 22)  # 1.5 m wide
    joints[:, :, 1] = 0.15
    joints[:, _PELVIS] = [0.0, 0.3, 0.0]
    joints[:, _NECK] = [0.1, 0.0, 0.0]
    extent = body_extent(joints)
    assert extent.trunk_rise == pytest.approx(-0.3 / np.hypot(0.1, 0.3))
    assert extent.lies_down
