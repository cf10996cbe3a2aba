"""Synthetic motion actions, captions and controls (``utils.synthetic_actions``, ``utils.synthetic_captions``,
``utils.synthetic_controls``) and the PFNN export (``utils.pfnn``): behaviour the other tests leave open."""

from __future__ import annotations

import numpy as np
import pytest
from test_pfnn_contracts import _pfnn_features
from test_synthetic_motion_contracts import _seg_rng

from utils.dataset_specs import humanml3d_spec
from utils.pfnn import (
    GAIT_CLASSES,
    _gait_one_hot,
    _joint_contacts,
    _replace_folder,
    clip_frames,
    contact_onsets,
    export_pfnn,
    foot_phase,
    pfnn_layout,
)
from utils.synthetic_actions import _bow, _jump, _kick, _raise_arms, _run, _turn, _walk, _wave
from utils.synthetic_controls import _align, _arm_pole, _rest_controls, _two_bone_ik

# ---------------------------------------------------------------------------------------------------------------------
# Synthetic actions
# ---------------------------------------------------------------------------------------------------------------------


def test_a_faster_walk_swings_the_arms_further():
    """The arm swing of a steady walk is the style's swing times 0.8 (slow), 1 (normal) or 1.2 (fast)."""
    for speed, factor in (("slow", 0.8), ("normal", 1.0), ("fast", 1.2)):
        rng, style = _seg_rng(7, 1)
        seg = _walk(rng, style, 60, start=False, stop=False, speed=speed, direction="forward", curve="none")
        np.testing.assert_allclose(seg.controls["swing"], style.swing * factor, rtol=1e-12)


def test_walking_backwards_leans_back_and_walking_fast_leans_forward():
    """The chest pitches 0.06 rad back from the style's lean when walking backwards, 0.05 forward when walking fast."""
    for direction, speed, pitch in (("backward", "slow", -0.06), ("forward", "fast", 0.05), ("forward", "normal", 0.0)):
        rng, style = _seg_rng(9, 2)
        seg = _walk(rng, style, 60, start=False, stop=False, speed=speed, direction=direction, curve="none")
        np.testing.assert_allclose(seg.controls["spine"][:, 0], style.lean + pitch, atol=1e-12)


def test_a_walk_that_starts_or_stops_is_not_captioned_with_a_step_count():
    """Only a steady straight walk says "takes about N steps"; the same walk starting or stopping does not."""
    for s in range(3):
        said = {}
        for start, stop in ((False, False), (True, False), (False, True)):
            rng, style = _seg_rng(10, s)
            seg = _walk(rng, style, 50, start=start, stop=stop, speed="normal", direction="forward", curve="none")
            said[start, stop] = [p for p in seg.phrases if p.startswith("takes about")]
        assert len(said[False, False]) == 1 and said[True, False] == said[False, True] == [], said


def test_runners_reach_less_far_and_sprinters_lean_further_forward():
    """A run's stance legs reach 0.95 of their length (a walk's 0.995); the chest leans 0.12 rad forward, 0.17 in a
    sprint."""
    kinds = set()
    for s in range(40):
        rng, style = _seg_rng(8, s)
        seg = _run(rng, style, 60, start=False, stop=False)
        kind = seg.label.split("_")[1]
        kinds.add(kind)
        np.testing.assert_allclose(seg.controls["reach"], 0.95)
        np.testing.assert_allclose(seg.controls["spine"][:, 0], style.lean + (0.17 if kind == "sprint" else 0.12),
                                   atol=1e-12)
    assert kinds == {"jog", "run", "sprint"}


def test_a_slow_or_fast_curving_walk_says_so_in_every_phrase():
    """Curving walks prefix each phrase with "slowly" (slow) or "quickly" (fast); a normal one with neither."""
    for speed, prefix in (("slow", "slowly "), ("fast", "quickly "), ("normal", None)):
        rng, style = _seg_rng(11, 0)
        seg = _walk(rng, style, 60, start=False, stop=False, speed=speed, direction="forward", curve="left")
        if prefix:
            assert all(p.startswith(prefix) for p in seg.phrases), seg.phrases
        else:
            assert not any(p.startswith(("slowly", "quickly")) for p in seg.phrases), seg.phrases


def test_a_full_spin_steps_faster_than_a_quarter_or_half_turn():
    """Turning steps at 1.3 steps a second per leg, a full 360 degree spin at 1.7."""
    for angle, cadence in ((90, 1.3), (180, 1.3), (360, 1.7)):
        rng, style = _seg_rng(12, angle)
        c = _turn(rng, style, angle=angle, side="left").controls
        stepping = c["gait"] > 0
        np.testing.assert_allclose(c["cadence"][stepping], cadence)
        np.testing.assert_allclose(c["cadence"][~stepping], 1.0)


def test_only_a_high_jump_in_place_is_captioned_high_and_high_jumps_swing_the_arms_higher():
    """The arms swing up to 1.4 rad in a high jump, 0.8 otherwise; "jumps high" only for jumps in place."""
    seen = set()
    for s in range(24):
        rng, style = _seg_rng(81, s)
        seg = _jump(rng, style)
        flex = seg.controls["arm"][:, :, 0].max()
        high = flex > 1.0
        assert flex == pytest.approx(1.4 if high else 0.8), seg.label
        forward = "_forward" in seg.label
        said_high = any("high" in p for p in seg.phrases)
        assert said_high == (high and not forward), (seg.label, high, seg.phrases)
        seen.add((forward, high))
    assert seen == {(False, False), (False, True), (True, False), (True, True)}


def test_waving_both_hands_moves_them_in_opposite_phase_and_ends_at_rest():
    """Both waving forearms swing about 1.2 rad of elbow bend half a cycle apart; the last frames are the rest pose."""
    both = 0
    for s in range(16):
        rng, style = _seg_rng(85, s)
        seg = _wave(rng, style)
        c, rest = seg.controls, _rest_controls(1, style)
        np.testing.assert_allclose(c["arm"][-2:], np.broadcast_to(rest["arm"][0], (2, 2, 4)), atol=1e-12)
        if seg.label == "wave_both":
            held = slice(12, seg.frames - 12)
            np.testing.assert_allclose(c["arm"][held, 0, 3] - 1.2, -(c["arm"][held, 1, 3] - 1.2), atol=1e-9)
            assert abs(c["arm"][held, 0, 3] - 1.2).max() > 0.3
            both += 1
    assert both


def test_a_kick_captioned_high_lifts_the_foot_higher():
    """A high kick lifts the foot above 0.5 m and says "kicks high"; a low one stays under 0.45 m."""
    seen = set()
    for s in range(16):
        rng, style = _seg_rng(82, s)
        seg = _kick(rng, style)
        side = 0 if seg.label == "kick_left" else 1
        up = seg.controls["foot_off"][:, side, 1].max()
        said_high = any(p.startswith("kicks high") for p in seg.phrases)
        assert (up > 0.5) == said_high and (up < 0.45) == (not said_high), (up, seg.phrases)
        seen.add(said_high)
    assert seen == {True, False}


def test_bowing_lets_the_arms_hang_forward_and_is_always_captioned_bows():
    """The arms swing forward (flexion 0.6 times the bow angle) and every bow's phrases include plain "bows"."""
    for s in range(6):
        rng, style = _seg_rng(83, s)
        seg = _bow(rng, style)
        flex = seg.controls["arm"][:, :, 0]
        assert (flex >= -1e-12).all() and (flex.max(axis=0) > 0.15).all(), seg.phrases
        assert "bows" in seg.phrases and seg.phrases.count("bows") == 1


def test_raising_the_arms_is_captioned_with_the_number_of_arms():
    """The first phrase says the arms are lowered again ("them" for both, "it" for one) and only it does; both arms
    go "to the sides", one arm "to the side"."""
    seen = set()
    for s in range(30):
        rng, style = _seg_rng(84, s)
        seg = _raise_arms(rng, style)
        both = "_both_" in seg.label
        assert seg.phrases[0].endswith(" and lowers them again" if both else " and lowers it again"), seg.phrases
        assert not any("lowers" in p for p in seg.phrases[1:]), seg.phrases
        if seg.label.endswith("_side"):
            assert seg.phrases[0].startswith("raises both arms to the sides" if both else "raises {their}")
            assert seg.phrases[1].endswith("to the sides" if both else "to the side"), seg.phrases
        seen.add((both, seg.label.split("_")[-1]))
    assert {(True, "side"), (False, "side")} <= seen


# ---------------------------------------------------------------------------------------------------------------------
# Geometry helpers
# ---------------------------------------------------------------------------------------------------------------------


def test_align_with_a_plane_direction_along_the_axis_is_still_a_rotation():
    """When b is parallel to a there is no plane: a fallback plane keeps the result a rotation taking a0 to a1."""
    z, y = np.array([[0.0, 0.0, 1.0]]), np.array([[0.0, 1.0, 0.0]])
    rot = _align(z, z, y, y)
    np.testing.assert_allclose(rot[0] @ rot[0].T, np.eye(3), atol=1e-12)
    np.testing.assert_allclose(rot[0] @ z[0], y[0], atol=1e-12)


def test_two_bone_ik_with_a_pole_along_the_reach_still_bends_the_chain():
    """A pole parallel to the reach gives no bend plane: a fallback unit bend direction keeps both bone lengths."""
    base, target = np.zeros((1, 3)), np.array([[0.0, -0.5, 0.0]])
    mid, end, bend = _two_bone_ik(base, target, 0.4, 0.4, np.array([[0.0, 1.0, 0.0]]))
    np.testing.assert_allclose(np.linalg.norm(bend, axis=-1), 1.0)
    np.testing.assert_allclose(bend @ np.array([0.0, -1.0, 0.0]), 0.0, atol=1e-12)
    np.testing.assert_allclose(np.linalg.norm(mid - base, axis=-1), 0.4)
    np.testing.assert_allclose(np.linalg.norm(end - mid, axis=-1), 0.4)
    np.testing.assert_allclose(end, target, atol=1e-12)


@pytest.mark.parametrize("kind, left", [("back", (0.3, 0.0, -1.0)), ("out", (1.0, -0.4, -0.3)),
                                        ("down", (0.6, -1.0, 0.0))])
def test_each_elbow_pole_points_its_way_in_the_chest_frame(kind, left):
    """The left elbow's pole of each kind is its chest-frame direction normalised ("back": behind the body, "down":
    below it), the right one's mirrored in x."""
    left = np.array(left) / np.linalg.norm(left)
    np.testing.assert_allclose(_arm_pole(3, kind), np.broadcast_to([left, left * [-1.0, 1.0, 1.0]], (3, 2, 3)),
                               atol=1e-12)


# ---------------------------------------------------------------------------------------------------------------------
# PFNN rows, phase, gait and output folder
# ---------------------------------------------------------------------------------------------------------------------

SPEC = humanml3d_spec(name="pfnn_rows", root="/nonexistent")
X_COLS = {b.name: slice(b.start, b.stop) for b in pfnn_layout(22, 126, False)[0]}
Y_COLS = {b.name: slice(b.start, b.stop) for b in pfnn_layout(22, 126, False)[1]}


def test_the_future_trajectory_is_interpolated_up_to_the_clip_s_last_frame():
    """On a straight walk of (0.01, 0.05) per frame the future samples lie at k * 10 / 3 frames of that walk in every
    row, the last row's last sample 2/3 of a frame before the clip's last frame included."""
    clip = clip_frames(_pfnn_features(60, 0.0, 0.01, 0.05), SPEC)
    offsets = np.arange(6) * 20.0 / 6
    rows = len(clip.frames)
    assert clip.frames[-1] + 1 + offsets[-1] == pytest.approx(60 - 1 - 1 / 3)
    np.testing.assert_allclose(clip.outputs[:, Y_COLS["next_traj_pos_x"]], np.tile(0.01 * offsets, (rows, 1)),
                               atol=1e-6)
    np.testing.assert_allclose(clip.outputs[:, Y_COLS["next_traj_pos_z"]], np.tile(0.05 * offsets, (rows, 1)),
                               atol=1e-6)


def test_trajectory_directions_of_a_turning_walk_are_unit_vectors():
    """Facing directions interpolated between frames of a turning root are normalised again."""
    clip = clip_frames(_pfnn_features(60, 0.3, 0.01, 0.05), SPEC)
    for cols, rows in (((X_COLS["traj_dir_x"], X_COLS["traj_dir_z"]), clip.inputs),
                       ((Y_COLS["next_traj_dir_x"], Y_COLS["next_traj_dir_z"]), clip.outputs)):
        norm = np.hypot(rows[:, cols[0]], rows[:, cols[1]])
        np.testing.assert_allclose(norm, 1.0, atol=1e-5)


def test_derived_contacts_need_a_skeleton_with_that_many_joints():
    """Joints without a known skeleton give no feet to derive contacts from: refused, naming the joint count."""
    with pytest.raises(ValueError, match=r"no skeleton with 7 joints"):
        _joint_contacts(np.zeros((10, 7, 3)), 7, 20.0)


def test_gait_speed_is_in_metres_per_second_whatever_the_data_unit():
    """75 mm a frame at 20 fps is 1.5 m/s, a walk, in millimetre data; the same numbers in metres are a run."""
    ground = np.zeros((30, 3))
    ground[:, 0] = 75.0 * np.arange(30)
    at = np.arange(30, dtype=np.float64)[:, None]
    walk, run = GAIT_CLASSES.index("walk"), GAIT_CLASSES.index("run")
    assert (_gait_one_hot(ground, at, 20.0, (0.3, 2.0), metres_per_unit=0.001).argmax(-1) == walk).all()
    assert (_gait_one_hot(ground, at, 20.0, (0.3, 2.0)).argmax(-1) == run).all()


def test_a_root_bobbing_up_and_down_in_place_stands():
    """The gait is the speed over the ground: a root moving only up and down is standing in every sample."""
    feats = _pfnn_features(60, 0.0, 0.0, 0.0)
    feats[:, 3] = 0.9 + 0.2 * np.sin(np.arange(60) / 2.0)
    x_blocks, _ = pfnn_layout(22, 126, True)
    cols = {b.name: slice(b.start, b.stop) for b in x_blocks}
    clip = clip_frames(feats, SPEC, gait=True)
    assert (clip.inputs[:, cols["traj_gait_stand"]] == 1.0).all()
    assert not clip.inputs[:, cols["traj_gait_walk"]].any() and not clip.inputs[:, cols["traj_gait_run"]].any()


def test_an_out_folder_with_many_foreign_files_names_five_and_says_there_are_more(tmp_path):
    """Six files the export does not write: the first five are named, followed by "...", before any work."""
    out = tmp_path / "pfnn"
    out.mkdir()
    for name in "abcdef":
        (out / f"{name}.txt").write_text("x")
    with pytest.raises(ValueError, match=r"does not write: a.txt, b.txt, c.txt, d.txt, e.txt \.\.\.; the export"):
        export_pfnn(str(tmp_path / "no_dataset"), SPEC, str(out))
    assert sorted(p.name for p in out.iterdir()) == [f"{name}.txt" for name in "abcdef"]


def test_replacing_an_export_leaves_only_the_new_folder(tmp_path):
    """The earlier export is moved aside and removed once the new one is in place: nothing else is left beside it."""
    target, staging = tmp_path / "pfnn", tmp_path / "staging"
    target.mkdir()
    (target / "Input.npy").write_text("old")
    staging.mkdir()
    (staging / "Input.npy").write_text("new")
    _replace_folder(str(staging), str(target))
    assert (target / "Input.npy").read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pfnn"]


def test_contact_onsets_refuse_a_single_value():
    """A 0-d contact value is not a (T,) track: refused with its shape."""
    with pytest.raises(ValueError, match=r"expected a \(T,\) contact track, got shape \(\)"):
        contact_onsets(np.bool_(True))


def test_min_swing_rounds_to_the_nearest_frame():
    """0.14 s at 20 fps is 2.8 frames, rounded to 3: a two-frame gap between contacts is flicker, not a step."""
    left = np.zeros(30, bool)
    left[5:10] = True
    left[12:15] = True  # a two-frame gap at 10, 11
    assert foot_phase(left, np.zeros(30, bool), fps=20.0, min_swing_s=0.14).left.tolist() == [5]
    assert foot_phase(left, np.zeros(30, bool), fps=20.0, min_swing_s=0.09).left.tolist() == [5, 12]
