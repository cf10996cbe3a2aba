"""BVH: parsing against hand-computed forward kinematics, export round trip, skeleton maps. The folder import is in
test_bvh_import.py."""

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
    source_fps,
)
from utils.bvh_export import write_bvh
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
    ("HIERARCHY\nROOT MOTIONLESS\n{\n OFFSET 0 0 0\n CHANNELS 3 Xposition Yposition Zposition\n}\n",
     "no MOTION section"),  # the word inside a name is no section
    (SMALL_BVH.replace("Xrotation Zrotation Yrotation", "Xrotation Zrotation Wrotation"), "X/Y/Z position"),
    (SMALL_BVH.replace("Frame Time: 0.05", "Frame Time: 0"), "Frame Time"),
    (SMALL_BVH.replace("Frame Time: 0.05", "Frame Time: 0.05s"), "Frame Time is '0.05s'; expected seconds per frame"),
    (SMALL_BVH.replace("Frame Time: 0.05", "Frame Time: inf"), "Frame Time is 'inf'; expected seconds per frame"),
    (SMALL_BVH.replace("  }\n  JOINT Leg", "  JOINT Leg", 1), "missing '}'"),
    (SMALL_BVH.replace("0 0 0 90 0 0  90", "0 0 0 90 nan 0  90"),
     "MOTION frame 2 of 3, joint 'Hips' channel Xrotation is nan"),
    (SMALL_BVH.replace("90 90 0 0 0 0   0 5 0 0 0 0   0 0 0", "90 90 0 0 0 0   0 5 0 0 0 0   0 0 -inf"),
     "MOTION frame 3 of 3, joint 'Leg' channel Yrotation is -inf"),
    (SMALL_BVH.replace("OFFSET 2 -1 0", "OFFSET 2 NaN 0"), "OFFSET of 'Leg' is ['2', 'NaN', '0']; expected 3 finite"),
    # Without "Site" the End Site's brace was skipped and its OFFSET overwrote the joint's.
    (SMALL_BVH.replace("    End Site\n    {", "    End\n    {"), "expected 'Site' in the HIERARCHY section, got '{'"),
])
def test_bad_bvh_fails_naming_the_file(text, message):
    with pytest.raises(ValueError, match="bad.bvh") as info:
        parse_bvh_text(text, "bad.bvh")
    assert message in str(info.value)


def _move_last_value_to_next_line(text: str, line: int) -> str:
    """``text`` with the last value of MOTION frame line ``line`` (0-based) moved to the start of the next one."""
    lines = text.split("\n")
    first = lines.index("Frame Time: 0.05") + 1
    a, b = lines[first + line].split(), lines[first + line + 1].split()
    lines[first + line], lines[first + line + 1] = " ".join(a[:-1]), " ".join([a[-1]] + b)
    return "\n".join(lines)


@pytest.mark.parametrize("text, message", [
    # The total still equals Frames x channels: only the line count catches the shifted values.
    (_move_last_value_to_next_line(SMALL_BVH, 0), "bad.bvh:33: MOTION frame 1 of 3 has 17 values; expected one "
                                                  "per channel, 18"),
    (SMALL_BVH.replace("90 90 0 0 0 0   0 5 0 0 0 0   0 0 0\n", "90 90 0 0 0 0   0 5 0 0 0 0   0 0 0 7\n"),
     "bad.bvh:35: MOTION frame 3 of 3 has 19 values; expected one per channel, 18"),
    (SMALL_BVH + SMALL_BVH.split("Frame Time: 0.05\n")[1].split("\n")[0] + "\n",
     "bad.bvh:36: MOTION has more frame lines than Frames 3"),
    (_move_last_value_to_next_line(SMALL_BVH, 1).replace("\n", "\r\n"), "bad.bvh:34: MOTION frame 2 of 3 has 17"),
    (SMALL_BVH.replace("Frames: 3", "Frames: 4"), "bad.bvh: MOTION has 3 frame lines; expected Frames 4"),
    (SMALL_BVH.replace("0 0 0 90 0 0  90", "0 0 0 90 abc 0  90"), "bad.bvh:34: MOTION frame 2 of 3 holds 'abc'; "
                                                                  "expected numbers"),
])
def test_motion_lines_are_checked_one_by_one(text, message):
    with pytest.raises(ValueError) as info:
        parse_bvh_text(text, "bad.bvh")
    assert message in str(info.value)


def test_motion_section_tolerates_crlf_tabs_and_blank_lines():
    expected = parse_bvh_text(SMALL_BVH).motion
    for text in (SMALL_BVH.replace("\n", "\r\n"), SMALL_BVH.replace("\n", "\r"), SMALL_BVH.replace(" ", "\t"),
                 SMALL_BVH + "\n  \n\n",
                 SMALL_BVH.replace("Frame Time: 0.05\n", "Frame Time: 0.05\n\n"),
                 SMALL_BVH.replace("Frames: 3", "Frames:\t 3  ")):
        np.testing.assert_array_equal(parse_bvh_text(text).motion, expected)


def test_a_bvh_file_saved_with_a_byte_order_mark_parses(tmp_path):
    path = tmp_path / "bom.bvh"
    path.write_text(SMALL_BVH, encoding="utf-8-sig")
    np.testing.assert_array_equal(parse_bvh(path).motion, parse_bvh_text(SMALL_BVH).motion)


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


def test_written_end_sites_follow_the_bones_of_a_turning_motion(tmp_path):
    """The End Site of a leaf (feet, head, wrists) continues the bone into the leaf in every frame: a body that turns
    round keeps its toes and hands pointing along its feet and forearms, not where they pointed in frame 0."""
    joints = synthesize_motion(np.random.default_rng(5), "walk").joints
    angle = np.linspace(0.0, np.pi, len(joints))  # half a turn about +Y over the clip
    cos, sin = np.cos(angle)[:, None], np.sin(angle)[:, None]
    turned = np.stack([cos * joints[..., 0] + sin * joints[..., 2], joints[..., 1],
                       -sin * joints[..., 0] + cos * joints[..., 2]], axis=-1)
    write_bvh(tmp_path / "turn.bvh", turned, fps=20)
    bvh = parse_bvh(tmp_path / "turn.bvh")
    positions = bvh_positions(bvh, end_sites=True)
    parents = {"left_foot": "left_ankle", "right_foot": "right_ankle", "head": "neck", "left_wrist": "left_elbow",
               "right_wrist": "right_elbow"}
    for leaf, parent in parents.items():
        assert leaf in SMPL22_JOINT_NAMES and parent in SMPL22_JOINT_NAMES
        tip, end, base = (positions[:, bvh.names.index(n)] for n in (f"{leaf}_End", leaf, parent))
        bone, tail = end - base, tip - end
        cosine = np.sum(bone * tail, -1) / (np.linalg.norm(bone, axis=-1) * np.linalg.norm(tail, axis=-1))
        np.testing.assert_allclose(cosine, 1.0, atol=1e-6, err_msg=leaf)


def test_write_bvh_rejects_bad_shapes(tmp_path):
    with pytest.raises(ValueError, match="expected joints of shape"):
        write_bvh(tmp_path / "x.bvh", np.zeros((10, 22)), fps=20)
    with pytest.raises(ValueError, match=r"gen\.npy: joints of shape \(10, 23, 3\): kinematic chain does not reach"):
        write_bvh(tmp_path / "x.bvh", np.zeros((10, 23, 3)), fps=20, source="gen.npy")
    with pytest.raises(ValueError, match=r"gen\.npy: joints of shape \(10, 21, 3\): kinematic chain names joints "
                                         r"\[21\], beyond the 21 joints; nothing written"):
        write_bvh(tmp_path / "x.bvh", np.zeros((10, 21, 3)), fps=20, source="gen.npy")
    joints = synthesize_motion(np.random.default_rng(5), "walk").joints.copy()
    joints[3, 7, 1] = np.nan
    with pytest.raises(ValueError, match=r"gen\.npy: joints\[3, 7\] \(frame 3, joint 7\) is \[.*nan.*\]; expected "
                                         r"finite positions \(1 non-finite"):
        write_bvh(tmp_path / "x.bvh", joints, fps=20, source="gen.npy")
    assert not (tmp_path / "x.bvh").exists()


@pytest.mark.parametrize("fps,scale,message", [
    (0, 1.0, r"fps 0; expected a positive frame rate"), (-20, 1.0, r"fps -20; expected a positive frame rate"),
    (float("nan"), 1.0, r"fps nan; expected a positive frame rate"),
    (20, 0.0, r"scale 0\.0; expected a positive length factor"),
    (20, float("inf"), r"scale inf; expected a positive length factor"),
])
def test_write_bvh_rejects_a_bad_frame_rate_or_scale(tmp_path, fps, scale, message):
    """A frame rate or scale no BVH can carry (a negative or NaN frame time, bones of no length) fails naming the
    input, rather than writing such a file."""
    joints = synthesize_motion(np.random.default_rng(5), "walk").joints
    with pytest.raises(ValueError, match=rf"gen\.npy: {message}; nothing written to .*x\.bvh"):
        write_bvh(tmp_path / "x.bvh", joints, fps=fps, scale=scale, source="gen.npy")
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


@pytest.mark.parametrize("frame_time, fps", [("0.008333", 120.0), ("0.016667", 60.0), ("0.0333333", 30.0),
                                             ("0.0333667", 1 / 0.0333667)])
def test_rounded_frame_times_keep_the_last_frame_at_the_integer_rate(tmp_path, frame_time, fps):
    # Frame times written to 6 decimals are the integer rate up to a relative 1e-4 (120 fps: 0.008333 s, 120.005
    # fps); the NTSC rate 29.97 is not an integer rate and stays as written.
    frames = 121
    text = ("HIERARCHY\nROOT Hips\n{\n OFFSET 0 0 0\n CHANNELS 3 Xposition Yposition Zposition\n End Site\n {\n"
            "  OFFSET 0 1 0\n }\n}\nMOTION\n" + f"Frames: {frames}\nFrame Time: {frame_time}\n"
            + "".join(f"{0.01 * i} 1 0\n" for i in range(frames)))
    bvh = parse_bvh_text(text, "clip.bvh")
    skel = load_skeleton_map(_write_yaml(tmp_path / "all_hips.yaml", {n: "Hips" for n in SMPL22_JOINT_NAMES}))
    assert source_fps(bvh, skel) == pytest.approx(fps, rel=1e-12)
    joints = bvh_to_smpl22(bvh, skel, target_fps=20.0)
    span = (frames - 1) / fps  # seconds from the first to the last frame
    assert len(joints) == int(np.floor(span * 20.0 + 1e-9)) + 1
    np.testing.assert_allclose(joints[:, 0, 0], 0.01 * np.arange(len(joints)) * fps / 20.0, atol=1e-9)
