"""BVH parsing, skeleton maps and clip captions: odd-but-valid hierarchies that parse, damaged ones refused naming
the file and what was expected, mapping fields read as written, and the captions a user reads back."""

from __future__ import annotations

import numpy as np
import pytest
import yaml

from utils import bvh_captions
from utils.bvh import (
    SMPL22_JOINT_NAMES,
    SkeletonMap,
    bvh_positions,
    check_bones,
    load_skeleton_map,
    map_to_smpl22,
    parse_bvh_text,
)
from utils.bvh_captions import captions_from_name, is_bandai_name, read_labels

# A root with position channels, a chest with rotations and an End Site; frame 2 turns the chest.
CHAIN_BVH = """HIERARCHY
ROOT Hips
{
  OFFSET 0 0 0
  CHANNELS 3 Xposition Yposition Zposition
  JOINT Chest
  {
    OFFSET 0 10 0
    CHANNELS 3 Zrotation Xrotation Yrotation
    End Site
    {
      OFFSET 0 5 0
    }
  }
}
MOTION
Frames: 2
Frame Time: 0.05
1 2 3 0 0 0
0 0 0 90 0 0
"""


def _refused(text: str) -> str:
    """The message of the ValueError that parsing ``text`` as bad.bvh raises; it must name the file."""
    with pytest.raises(ValueError, match="bad.bvh") as info:
        parse_bvh_text(text, "bad.bvh")
    return str(info.value)


# ---------------------------------------------------------------------------------------------------------------------
# Hierarchy structure
# ---------------------------------------------------------------------------------------------------------------------

def test_a_file_without_the_hierarchy_keyword_is_refused():
    assert "expected 'HIERARCHY'" in _refused(CHAIN_BVH.replace("HIERARCHY\n", "", 1))


def test_a_second_root_is_refused_even_after_a_root_without_children():
    text = CHAIN_BVH.replace("MOTION", "ROOT Other\n{\n  OFFSET 0 0 0\n}\nMOTION")
    text = text.replace("  JOINT Chest\n  {\n    OFFSET 0 10 0\n    CHANNELS 3 Zrotation Xrotation Yrotation\n"
                        "    End Site\n    {\n      OFFSET 0 5 0\n    }\n  }\n", "")
    assert "more than one ROOT" in _refused(text)


@pytest.mark.parametrize("text, message", [
    (CHAIN_BVH.replace("ROOT Hips\n{", "End Site\n{", 1), "End Site outside a joint"),
    (CHAIN_BVH.replace("ROOT Hips\n{", "ROOT Hips\n{\n{", 1), "unexpected '{'"),
    (CHAIN_BVH.replace("HIERARCHY\n", "HIERARCHY\n}\n", 1), "unbalanced '}'"),
    (CHAIN_BVH.replace("CHANNELS 3 Xposition Yposition Zposition", "CHANNELS 3 Xposition Yposition Zposition\n{"),
     "unexpected '{'"),
])
def test_unbalanced_braces_are_refused_naming_what_is_wrong(text, message):
    assert message in _refused(text)


def test_a_truncated_offset_or_channel_list_is_refused_with_the_count_expected():
    head = "HIERARCHY\nROOT Hips\n{\n  OFFSET 0 0"
    assert "OFFSET of 'Hips' expects 3 numbers" in _refused(head + "\nMOTION\nFrames: 0\nFrame Time: 0.05\n")
    head = "HIERARCHY\nROOT Hips\n{\n  OFFSET 0 0 0\n  CHANNELS 3 Xposition"
    assert "expected 3 of X/Y/Z" in _refused(head + "\nMOTION\nFrames: 0\nFrame Time: 0.05\n")


def test_an_end_site_after_a_child_joint_is_named_after_its_own_joint():
    """A joint may hold a child joint and then an End Site; the End Site hangs from (and is named after) the joint
    whose braces hold it, not the node listed just before it."""
    text = CHAIN_BVH.replace("    End Site\n", "    JOINT Head\n    {\n      OFFSET 0 3 0\n    }\n    End Site\n")
    bvh = parse_bvh_text(text, "ok.bvh")
    assert bvh.names == ["Hips", "Chest", "Head", "Chest_End"] and bvh.parents == [-1, 0, 1, 1]


def test_channels_listed_after_a_child_block_belong_to_the_enclosing_joint():
    text = CHAIN_BVH.replace("    CHANNELS 3 Zrotation Xrotation Yrotation\n", "").replace(
        "      OFFSET 0 5 0\n    }\n", "      OFFSET 0 5 0\n    }\n    CHANNELS 3 Zrotation Xrotation Yrotation\n")
    bvh = parse_bvh_text(text, "ok.bvh")
    assert bvh.channels == [["Xposition", "Yposition", "Zposition"], ["Zrotation", "Xrotation", "Yrotation"], []]


# ---------------------------------------------------------------------------------------------------------------------
# Skeleton maps
# ---------------------------------------------------------------------------------------------------------------------

def _write_map(path, joints: dict, **extra) -> str:
    path.write_text(yaml.safe_dump({"name": "mine", "joints": joints, **extra}))
    return str(path)


def _all_on(joint: str) -> dict:
    return {n: joint for n in SMPL22_JOINT_NAMES}


@pytest.mark.parametrize("entry", [
    {"between": ["Hips", "Chest"], "weight": 0.5, "wieght": 0.2},
    {"between": ["Hips", "Chest", "Chest_End"]},
    {"between": ["Hips", 3]},
])
def test_a_malformed_between_entry_is_refused_naming_the_joint(tmp_path, entry):
    joints = _all_on("Hips")
    joints["spine1"] = entry
    path = _write_map(tmp_path / "bad.yaml", joints)
    with pytest.raises(ValueError, match="bad.yaml: joints.spine1 is .*expected a joint name or"):
        load_skeleton_map(path)


@pytest.mark.parametrize("extra, message", [
    ({"unit_scale": 0}, "field unit_scale is 0.0; expected a positive factor"),
    ({"fps": 0}, "field fps is 0.0; expected a positive frame rate"),
    ({"fps": -30}, "field fps is -30.0; expected a positive frame rate"),
    ({"fps": float("inf")}, "field fps is inf; expected a number"),
    ({"up_axis": "x"}, "up_axis is 'x'; expected 'y' or 'z'"),
])
def test_a_zero_or_unusable_scale_rate_or_axis_is_refused(tmp_path, extra, message):
    path = _write_map(tmp_path / "bad.yaml", _all_on("Hips"), **extra)
    with pytest.raises(ValueError, match="bad.yaml") as info:
        load_skeleton_map(path)
    assert message in str(info.value)


def test_up_axis_and_weights_read_as_written(tmp_path):
    joints = _all_on("Hips")
    joints["neck"] = {"between": ["Hips", "Chest_End"]}  # weight defaults to the midpoint
    skel = load_skeleton_map(_write_map(tmp_path / "m.yaml", joints, up_axis="Z", fps=25))
    assert skel.up_axis == "z" and skel.fps == 25.0 and skel.name == "mine"
    assert skel.sources[12] == ("Hips", "Chest_End", 0.5) and skel.sources[0] == ("Hips", "Hips", 0.0)


def test_a_missing_second_between_joint_is_named_before_mapping(tmp_path):
    joints = _all_on("Hips")
    joints["neck"] = {"between": ["Chest", "Shoulder"], "weight": 0.5}
    skel = load_skeleton_map(_write_map(tmp_path / "m.yaml", joints))
    bvh = parse_bvh_text(CHAIN_BVH, "chain.bvh")
    with pytest.raises(ValueError, match=r"chain.bvh: skeleton 'mine' needs joints \['Shoulder'\]"):
        map_to_smpl22(bvh_positions(bvh, end_sites=True), bvh.names, skel, bvh.source)


def _spread_joints(frames: int = 3) -> np.ndarray:
    """SMPL-22 joints (frames, 22, 3), each joint at its own point."""
    base = np.arange(22 * 3, dtype=np.float64).reshape(22, 3) ** 1.5
    return np.repeat(base[None], frames, axis=0)


@pytest.mark.parametrize("source, described", [
    (("Spine", "Chest", 0.0), "Spine"),
    (("Spine", "Chest", 1.0), "Chest"),
    (("Spine", "Chest", 0.25), "between Spine and Chest (weight 0.25)"),
])
def test_a_collapsed_bone_is_reported_with_its_frame_bone_and_mapping(source, described):
    """The right collar sits on its parent (spine3) in frame 2 only; the message names the bone, the 1-based frame
    and what the mapping gives the child."""
    sources = [(n, n, 0.0) for n in SMPL22_JOINT_NAMES]
    sources[14] = source
    skel = SkeletonMap(name="mine", sources=tuple(sources))
    joints = _spread_joints()
    joints[1, 14] = joints[1, 9]
    with pytest.raises(ValueError) as info:
        check_bones(joints, skel, "clip.bvh")
    message = str(info.value)
    assert message.startswith("clip.bvh: SMPL-22 joint right_collar and its parent spine3 are at the same point in "
                              "frame 2 of 3")
    assert f"they map to {described} and spine3" in message


def test_a_bone_of_undefined_length_is_refused():
    skel = SkeletonMap(name="mine", sources=tuple((n, n, 0.0) for n in SMPL22_JOINT_NAMES))
    joints = _spread_joints()
    check_bones(joints, skel)  # every bone has a length
    joints[2, 5] = np.nan
    with pytest.raises(ValueError, match="right_knee and its parent right_hip .* frame 3 of 3"):
        check_bones(joints, skel)


# ---------------------------------------------------------------------------------------------------------------------
# Captions from clip names and label files
# ---------------------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("stem", ["dataset-1_walk_happy_001_mirror", "dataset-1_walk_happy_001.bvh"])
def test_a_bandai_name_with_anything_after_the_take_is_captioned_by_its_words(stem):
    assert not is_bandai_name(stem)
    assert len(captions_from_name(stem, np.random.default_rng(0))) == 1


def test_a_name_without_letters_is_captioned_by_the_name_itself():
    assert captions_from_name("0042", np.random.default_rng(0)) == ["a person: 0042"]


def test_an_unknown_bandai_style_becomes_a_manner_in_plain_words():
    captions = captions_from_name("dataset-2_run_very-slow_003", np.random.default_rng(0))
    assert len(captions) == 3 and all(c.endswith(" in a very slow way") for c in captions)
    assert all(" run" in c for c in captions)


@pytest.mark.parametrize("seed", range(4))
def test_captions_of_the_neutral_style_are_distinct_and_clean(seed):
    """The neutral style has an empty manner: the captions carry no doubled or trailing spaces, and are distinct."""
    captions = captions_from_name("dataset-1_bow_normal_002", np.random.default_rng(seed), count=5)
    assert len(captions) == len(set(captions)) == 5
    assert all(c == " ".join(c.split()) for c in captions), captions


def test_a_single_verb_content_still_gives_distinct_captions():
    """Fewer verb phrases than captions asked for: the verb repeats, the captions stay distinct."""
    phrases = dict(bvh_captions.BANDAI_CONTENT_PHRASES)
    try:
        bvh_captions.BANDAI_CONTENT_PHRASES["hop"] = ("hops",)
        captions = captions_from_name("dataset-1_hop_happy_001", np.random.default_rng(1), count=4)
    finally:
        bvh_captions.BANDAI_CONTENT_PHRASES.clear()
        bvh_captions.BANDAI_CONTENT_PHRASES.update(phrases)
    assert len(captions) == len(set(captions)) == 4 and all(" hops " in c for c in captions)


def test_label_ids_keep_extensions_that_are_not_the_sources(tmp_path):
    path = tmp_path / "labels.csv"
    path.write_text("take.v2,a person waves\nclip.npz,a person sits\n")
    assert read_labels(path) == {"take.v2": ["a person waves"], "clip.npz": ["a person sits"]}
    assert read_labels(path, suffixes=(".npz",)) == {"take.v2": ["a person waves"], "clip": ["a person sits"]}


def test_label_rows_are_stripped_and_empty_ones_skipped(tmp_path):
    """Blank or whitespace-only rows, rows without an id or caption are skipped; a header is only the first row."""
    path = tmp_path / "labels.csv"
    path.write_text("id,caption\n  walk ,  a person walks  \n , \n   \n,a person without a clip\nrun,\n\n"
                    "name,a clip called name\n")
    assert read_labels(path) == {"walk": ["a person walks"], "name": ["a clip called name"]}


def test_a_label_row_without_a_caption_column_is_refused_with_its_line(tmp_path):
    path = tmp_path / "labels.csv"
    path.write_text("walk,a person walks\nrun\n")
    with pytest.raises(ValueError, match=r"labels.csv:2: expected 'id,caption', got \['run'\]"):
        read_labels(path)


def test_an_upper_case_json_label_file_is_read_as_json(tmp_path):
    path = tmp_path / "LABELS.JSON"
    path.write_text('{"walk.bvh": ["a person walks", "someone walks"]}', encoding="utf-8-sig")
    assert read_labels(path) == {"walk": ["a person walks", "someone walks"]}


# ---------------------------------------------------------------------------------------------------------------------
# Misplaced braces and mismatched positions
# ---------------------------------------------------------------------------------------------------------------------


def test_a_joint_after_the_root_is_closed_is_refused():
    """An extra '}' closes the root early; the joints after it would hang from nothing, at the origin."""
    text = CHAIN_BVH.replace("  }\n}\nMOTION", "  }\n}\n  JOINT Arm\n  {\n    OFFSET 1 0 0\n  }\nMOTION")
    with pytest.raises(ValueError, match="bad.bvh") as info:
        parse_bvh_text(text, "bad.bvh")
    assert "'Arm'" in str(info.value) and "outside" in str(info.value)


@pytest.mark.parametrize("text", [
    # OFFSET before the joint's '{' would overwrite its parent's offset.
    CHAIN_BVH.replace("JOINT Chest\n  {\n    OFFSET 0 10 0", "JOINT Chest\n    OFFSET 0 10 0\n  {"),
    # A joint without a body of its own.
    CHAIN_BVH.replace("  JOINT Chest\n", "  JOINT Neck\n  JOINT Chest\n"),
])
def test_a_joint_must_open_its_brace_right_after_its_name(text):
    with pytest.raises(ValueError, match="bad.bvh") as info:
        parse_bvh_text(text, "bad.bvh")
    assert "expected '{'" in str(info.value)


def test_the_well_formed_chain_still_parses():
    bvh = parse_bvh_text(CHAIN_BVH, "good.bvh")
    assert bvh.names == ["Hips", "Chest", "Chest_End"] and bvh.parents == [-1, 0, 1]


TWO_ARMS_BVH = """HIERARCHY
ROOT Hips
{
  OFFSET 0 0 0
  CHANNELS 3 Xposition Yposition Zposition
  JOINT LeftArm
  {
    OFFSET 1 0 0
    End Site
    {
      OFFSET 1 0 0
    }
  }
  JOINT RightArm
  {
    OFFSET -1 0 0
    End Site
    {
      OFFSET -1 0 0
    }
  }
}
MOTION
Frames: 1
Frame Time: 0.05
0 0 0
"""


def test_mapping_positions_that_do_not_match_the_node_names_is_refused():
    """Joint positions (without End Sites) with the names of every node would give LeftArm_End the position of
    RightArm; the mismatch is refused naming the file and the counts."""
    bvh = parse_bvh_text(TWO_ARMS_BVH, "arms.bvh")
    skel = SkeletonMap(name="mine", sources=tuple(("LeftArm_End", "LeftArm_End", 0.0) for _ in SMPL22_JOINT_NAMES))
    np.testing.assert_allclose(map_to_smpl22(bvh_positions(bvh, end_sites=True), bvh.names, skel)[0, 0], [2, 0, 0])
    with pytest.raises(ValueError, match="arms.bvh: positions hold 3 nodes but 5 names"):
        map_to_smpl22(bvh_positions(bvh), bvh.names, skel, bvh.source)


def test_mapping_a_joint_the_file_names_twice_is_refused():
    """Two joints named RightArm (a copy-paste slip in an exporter's rig): mapping by name would take the last one,
    here the left arm's child, whichever body part it is."""
    text = TWO_ARMS_BVH.replace("JOINT LeftArm\n  {\n    OFFSET 1 0 0\n    End Site\n    {\n      OFFSET 1 0 0\n    }",
                                "JOINT LeftArm\n  {\n    OFFSET 1 0 0\n    JOINT RightArm\n    {\n      OFFSET 1 0 0\n"
                                "    }")
    bvh = parse_bvh_text(text, "twice.bvh")
    assert bvh.names.count("RightArm") == 2
    skel = SkeletonMap(name="mine", sources=tuple(("RightArm", "RightArm", 0.0) for _ in SMPL22_JOINT_NAMES))
    with pytest.raises(ValueError, match=r"twice\.bvh: skeleton 'mine' maps joints \['RightArm'\] that the file names "
                                         r"more than once"):
        map_to_smpl22(bvh_positions(bvh, end_sites=True), bvh.names, skel, bvh.source)
    # A name used twice that the map does not use is no obstacle.
    other = SkeletonMap(name="other", sources=tuple(("LeftArm", "LeftArm", 0.0) for _ in SMPL22_JOINT_NAMES))
    np.testing.assert_allclose(map_to_smpl22(bvh_positions(bvh, end_sites=True), bvh.names, other)[0, 0], [1, 0, 0])
