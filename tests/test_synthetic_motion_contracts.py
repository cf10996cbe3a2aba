"""The synthetic motions' controls and actions (``utils.synthetic_controls``, ``utils.synthetic_actions``): the
geometry helpers (frames, IK, ramps), the rest pose and arm blending, each action's controls against its label and
captions (walking while clapping claps for the whole walk), sequences and overlays, and that a seed gives the same
motion every time."""

from __future__ import annotations

import numpy as np
import pytest

from utils.synthetic import SYNTHETIC_ACTIONS, synthesize_motion
from utils.synthetic_actions import (
    SINGLE_ACTIONS,
    _bow,
    _clap,
    _frames,
    _jump,
    _kick,
    _overlay,
    _punch,
    _sequence,
    _sidestep,
    _single,
    _sit,
    _squat,
    _turn,
    _walk,
    _wave,
)
from utils.synthetic_captions import _CARDINALS
from utils.synthetic_controls import FPS, _align, _arm_pole, _rest_controls, _set_arm, _Style


def _seg_rng(*key):
    rng = np.random.default_rng(list(key))
    return rng, _Style.sample(rng)


def _leg_extension(motion, side):
    """Hip-to-ankle distance (T,) over the leg's length."""
    hip, knee, ankle = (1, 4, 7) if side == 0 else (2, 5, 8)
    length = np.linalg.norm(motion.offsets[[knee, ankle]], axis=-1).sum()
    return np.linalg.norm(motion.joints[:, ankle] - motion.joints[:, hip], axis=-1) / length


def _unit(v):
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


# ---------------------------------------------------------------------------------------------------------------------
# Geometry helpers
# ---------------------------------------------------------------------------------------------------------------------


def test_align_carries_the_direction_and_its_plane_onto_the_new_ones():
    # the bone rotations keep the bend plane: the rest "back" direction ends in the plane of the bend
    rng = np.random.default_rng(0)
    a0, b0, a1, b1 = rng.normal(size=(4, 5, 3))
    rot = _align(a0, b0, a1, b1)
    np.testing.assert_allclose(rot @ np.swapaxes(rot, -1, -2), np.broadcast_to(np.eye(3), (5, 3, 3)), atol=1e-12)
    np.testing.assert_allclose(np.linalg.det(rot), 1.0)
    np.testing.assert_allclose(np.einsum("tab,tb->ta", rot, _unit(a0)), _unit(a1), atol=1e-12)
    b_rot = np.einsum("tab,tb->ta", rot, b0)
    normal = np.cross(a1, b1)
    np.testing.assert_allclose(np.sum(b_rot * normal, axis=-1), 0.0, atol=1e-12)
    # on the same side of a1 as b1
    assert np.all(np.sum(np.cross(a1, b_rot) * normal, axis=-1) > 0)


def test_durations_round_to_the_nearest_frame():
    assert FPS == 20.0
    assert [_frames(s) for s in (0.29, 0.3, 0.31, 0.024, 0.026)] == [6, 6, 6, 0, 1]


# ---------------------------------------------------------------------------------------------------------------------
# Rest pose and arm controls
# ---------------------------------------------------------------------------------------------------------------------


def test_standing_still_keeps_the_legs_almost_straight():
    # a person waving stands on nearly straight legs, not in a crouch
    for s in range(2):
        motion = synthesize_motion(np.random.default_rng([31, s]), "wave")
        for side in (0, 1):
            assert _leg_extension(motion, side).min() > 0.975, (motion.label, side)


def test_the_rest_pose_is_the_style_s_posture_with_hanging_arms():
    style = _Style.sample(np.random.default_rng(4))
    c = _rest_controls(5, style)
    np.testing.assert_array_equal(c["arm"][:, :, 0], 0.0)  # no flexion: the arms hang
    np.testing.assert_array_equal(c["arm"][:, :, 1], style.arm_abd)
    np.testing.assert_array_equal(c["arm"][:, :, 2], 0.0)
    np.testing.assert_array_equal(c["arm"][:, :, 3], style.elbow)
    np.testing.assert_array_equal(c["head"], np.broadcast_to([style.head_pitch, 0.0], (5, 2)))
    np.testing.assert_array_equal(c["spine"][:, 0], style.lean)
    np.testing.assert_array_equal(c["pole"], _arm_pole(5, "back"))
    assert not c["gait"].any() and not c["fwd"].any() and not c["flight"].any() and not c["free"].any()
    np.testing.assert_array_equal(c["reach"], 0.995)


def test_arm_poles_are_unit_vectors():
    for kind in ("back", "out", "down"):
        np.testing.assert_allclose(np.linalg.norm(_arm_pole(3, kind), axis=-1), 1.0)


def test_set_arm_blends_the_elbow_pole_of_that_arm_only():
    style = _Style.sample(np.random.default_rng(0))
    c = _rest_controls(3, style)
    _set_arm(c, 1, np.array([0.0, 0.5, 1.0]), flex=0.3, abd=0.6, hadd=0.1, elbow=0.9, pole="out")
    np.testing.assert_allclose(c["pole"][:, 0], _arm_pole(3, "back")[:, 0])
    np.testing.assert_allclose(c["pole"][2, 1], _arm_pole(1, "out")[0, 1])
    np.testing.assert_allclose(c["pole"][1, 1], 0.5 * (_arm_pole(1, "out")[0, 1] + _arm_pole(1, "back")[0, 1]))
    np.testing.assert_allclose(c["arm"][2, 1], [0.3, 0.6, 0.1, 0.9])  # flexion, abduction, adduction, elbow


# ---------------------------------------------------------------------------------------------------------------------
# Determinism
# ---------------------------------------------------------------------------------------------------------------------


def test_every_action_is_the_same_motion_from_the_same_seed():
    # only the generator passed in may drive the sampling: numpy's global generator would make a dataset unrepeatable
    np.random.seed(0)
    for i, action in enumerate(SYNTHETIC_ACTIONS):
        first = synthesize_motion(np.random.default_rng([77, i]), action)
        second = synthesize_motion(np.random.default_rng([77, i]), action)
        assert first.label == second.label and first.captions == second.captions, action
        assert first.subclips == second.subclips and first.segments == second.segments, action
        np.testing.assert_array_equal(first.joints, second.joints, err_msg=action)
        np.testing.assert_array_equal(first.local_rotations, second.local_rotations, err_msg=action)


# ---------------------------------------------------------------------------------------------------------------------
# Walking
# ---------------------------------------------------------------------------------------------------------------------


def test_walking_backwards_is_rarer_slower_and_straight():
    directions = []
    for s in range(200):
        rng, style = _seg_rng(41, s)
        seg = _walk(rng, style, 60, start=False, stop=False)
        fwd, backward = seg.controls["fwd"], seg.label.startswith("walk_backward")
        directions.append(backward)
        if backward:
            assert seg.label in ("walk_backward_slow", "walk_backward_normal"), seg.label
            assert (fwd < 0).all() and abs(fwd).max() < 1.0, seg.label  # m/s
            assert not seg.controls["yaw_rate"].any(), seg.label
            assert all("backward" in p for p in seg.phrases), seg.phrases
        else:
            assert (fwd > 0).all(), seg.label
    assert 0.1 < np.mean(directions) < 0.35


def test_a_walk_that_stops_steps_until_the_body_is_at_rest():
    for s in range(4):
        rng, style = _seg_rng(42, s)
        seg = _walk(rng, style, 60, start=False, stop=True, direction="forward", curve="none")
        c = seg.controls
        np.testing.assert_array_equal(c["gait"], np.arange(60) < 57)
        assert c["fwd"][57] < 0.03 * c["fwd"][0] and c["fwd"][-1] < 1e-9
        # the arms stop swinging with the body
        assert c["swing"][0] > 0.15 and c["swing"][-1] < 1e-9
        np.testing.assert_allclose(c["swing"] / c["swing"][0], c["fwd"] / c["fwd"][0], atol=1e-12)
        rng, style = _seg_rng(43, s)
        seg = _walk(rng, style, 60, start=True, stop=False, direction="forward", curve="none")
        assert seg.controls["gait"].all()
        assert seg.controls["swing"][0] < 1e-9 and seg.controls["swing"][-1] > 0.15


def test_a_curving_walk_turns_to_its_side_and_is_captioned_by_how_far():
    seen = set()
    for s in range(40):
        for curve in ("left", "right"):
            rng, style = _seg_rng(44, s)
            n = 40 + 5 * s
            seg = _walk(rng, style, n, start=False, stop=False, direction="forward", curve=curve)
            rate = seg.controls["yaw_rate"]
            assert (rate > 0).all() if curve == "left" else (rate < 0).all()  # + turns towards the body's left
            turned = abs(np.degrees(rate.sum() / FPS))
            text = " | ".join(seg.phrases)
            if turned >= 300:
                kind = "circle"
                sense = "counterclockwise" if curve == "left" else "clockwise"
                assert f"in a circle {sense}" in text and f"to the {curve}" in text, (turned, text)
            elif turned >= 140:
                kind = "half"
                assert "half circle" in text and "in a circle" not in text, (turned, text)
            else:
                kind = "curve"
                assert "half circle" not in text and "in a circle" not in text, (turned, text)
            seen.add((kind, turned < 240 if kind == "half" else None))
    assert {("curve", None), ("half", True), ("half", False), ("circle", None)} <= seen


def test_a_short_straight_walk_is_captioned_with_its_number_of_steps():
    # each leg steps ``cadence`` times a second; "takes about N steps" for 2-12 steps, not beyond the number words
    counted = set()
    for s in range(30):
        rng, style = _seg_rng(45, s)
        n = 40 + 4 * s
        seg = _walk(rng, style, n, start=False, stop=False, speed="normal", direction="forward", curve="none")
        steps = int(round(n * seg.controls["cadence"][0] * 2.0 / FPS))
        said = [p for p in seg.phrases if p.startswith("takes about")]
        if steps <= 12:
            assert said == [f"takes about {_CARDINALS[steps]} steps forward"], (steps, said)
            counted.add(steps)
        else:
            assert not said, (steps, said)
    assert {5, 12} <= counted and max(counted) == 12


# ---------------------------------------------------------------------------------------------------------------------
# Running, sidestepping, turning, jumping
# ---------------------------------------------------------------------------------------------------------------------


def test_a_runner_keeps_the_knees_bent_and_both_arms_bent_alike():
    for s in range(4):
        rng, style = _seg_rng(51, s)
        seg = _single(rng, style, "run", 1.0)
        c = seg.controls
        assert c["gait"].all() and (c["fwd"] > 1.8).all(), seg.label
        np.testing.assert_array_equal(c["reach"], 0.95)
        np.testing.assert_array_equal(c["arm"][:, 0], c["arm"][:, 1])
        np.testing.assert_allclose(c["arm"][:, :, 3], 1.5)  # elbows bent


def test_a_sidestep_steps_while_it_moves_and_ends_standing():
    for s in range(4):
        rng, style = _seg_rng(52, s)
        seg = _sidestep(rng, style, 60)
        c = seg.controls
        np.testing.assert_array_equal(c["gait"], np.arange(60) < 52)
        assert (c["lat"][10:50] > 0.25).all() if seg.label.endswith("left") else (c["lat"][10:50] < -0.25).all()
        assert c["lat"][-1] == 0.0


def test_a_turn_steps_and_looks_into_the_turn_only_while_turning():
    for angle in (90, 180, 360):
        for side in ("left", "right"):
            rng, style = _seg_rng(53, angle)
            c = _turn(rng, style, angle=angle, side=side).controls
            sign = 1.0 if side == "left" else -1.0
            np.testing.assert_allclose(np.degrees(c["yaw_rate"].sum() / FPS), sign * angle)
            turning = np.flatnonzero(abs(c["yaw_rate"]) > 1e-9)
            stepping = np.flatnonzero(c["gait"])
            assert stepping[0] <= turning[0] and stepping[-1] >= turning[-1]
            assert len(stepping) == stepping[-1] - stepping[0] + 1 and len(stepping) <= len(turning) + 2
            assert stepping[0] > 0 and stepping[-1] < len(c["gait"]) - 1  # stands before and after
            head_yaw = c["head"][:, 1]
            assert (sign * head_yaw >= 0).all() and sign * head_yaw.max(initial=0) + sign * head_yaw.min() > 0.25


def test_a_half_turn_is_captioned_as_turning_around_not_a_spin():
    for side in ("left", "right"):
        rng, style = _seg_rng(54, 0)
        phrases = _turn(rng, style, angle=180, side=side).phrases
        assert "turns around" in phrases and f"turns 180 degrees to the {side}" in phrases
        assert not any("spin" in p or "full" in p or "90" in p for p in phrases), phrases


def _flights(flag):
    """[start, stop) of the runs of frames in the air."""
    edges = np.diff(np.concatenate([[0], (flag > 0.5).astype(int), [0]]))
    return list(zip(np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)))


def test_a_jump_is_airborne_for_the_time_of_flight_of_its_height():
    kinds = set()
    for s in range(16):
        rng, style = _seg_rng(55, s)
        seg = _jump(rng, style)
        c = seg.controls
        flights = _flights(c["flight"])
        count = int(seg.label.split("_")[-1])
        assert len(flights) == count, (seg.label, flights)
        height = c["lift"][flights[0][0]]
        airborne = max(2, int(round(2.0 * np.sqrt(2.0 * height / 9.81) * FPS)))  # t = 2 sqrt(2h/g)
        assert all(b - a == airborne for a, b in flights), (seg.label, flights, airborne)
        in_air = c["flight"] > 0.5
        if "_forward" in seg.label:
            assert (c["fwd"][in_air] > 0.3).all() and not c["fwd"][~in_air].any(), seg.label
        else:
            assert not c["fwd"].any(), seg.label
        if count > 1:
            # the jumps follow each other at a steady rhythm: crouch (8 frames), flight, landing (6), pause
            starts = [a for a, _ in flights]
            gap = np.diff(starts)
            assert (gap == gap[0]).all(), starts
            pause = gap[0] - 8 - airborne - 6
            assert pause >= 5 and len(c["fwd"]) - flights[-1][1] == 6 + pause + 6, (seg.label, starts)
        kinds.add(("_forward" in seg.label, count > 1))
    assert len(kinds) == 4


def test_a_jumping_body_leaves_the_ground():
    for s in range(3):
        motion = synthesize_motion(np.random.default_rng([56, s]), "jump")
        assert (~motion.contacts.any(axis=1)).sum() >= 2, motion.label


# ---------------------------------------------------------------------------------------------------------------------
# Arm and in-place actions
# ---------------------------------------------------------------------------------------------------------------------


def test_a_wave_raises_the_arms_its_caption_names():
    labels = set()
    for s in range(24):
        rng, style = _seg_rng(61, s)
        seg = _wave(rng, style)
        side = seg.label.split("_")[1]
        raised = seg.controls["arm"][:, :, 1].max(axis=0) > 2.0  # abducted overhead
        assert list(raised) == [side in ("left", "both"), side in ("right", "both")], (seg.label, raised)
        hand = "both hands" if side == "both" else f"{{their}} {side} hand"
        assert all(hand in p for p in seg.phrases[:2]), (seg.label, seg.phrases)
        labels.add(side)
    assert labels == {"left", "right", "both"}


def _active_runs(flag):
    edges = np.diff(np.concatenate([[0], (np.asarray(flag) > 0.5).astype(int), [0]]))
    return list(zip(np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)))


def test_kicks_free_the_kicking_leg_one_kick_after_the_other_and_reach_forward():
    counts = set()
    for s in range(10):
        rng, style = _seg_rng(62, s)
        seg = _kick(rng, style)
        side = 0 if seg.label == "kick_left" else 1
        c = seg.controls
        assert not c["free"][:, 1 - side].any(), seg.label
        kicks = _active_runs(c["free"][:, side])
        count = 2 if any("two" in p or "twice" in p for p in seg.phrases) else 1
        assert len(kicks) == count, (seg.phrases, kicks)
        forward, up = c["foot_off"][:, side, 2], c["foot_off"][:, side, 1]
        assert forward.max() > 0.4 and up.max() < forward.max() + 0.15, seg.label
        counts.add(count)
    assert counts == {1, 2}


def test_sitting_lowers_the_hips_to_a_seat_and_standing_up_raises_them_again():
    seen = set()
    for s in range(12):
        rng, style = _seg_rng(63, s)
        seg = _sit(rng, style, 1.0)
        drop = seg.controls["pelvis"][:, 1]
        assert drop[0] == 0.0, seg.label  # starts standing
        assert 0.40 <= -drop.min() <= 0.52, seg.label  # a seat 42-50 cm high, hips just above it
        if seg.label == "sit_stand":
            assert drop[-1] == 0.0 and (drop[-8:] == 0.0).all(), seg.label  # stands, and stays up a moment
        else:
            assert drop[-1] == drop.min(), seg.label
        lowering = int(np.sum((drop < 0) & (drop > drop.min()) & (np.arange(len(drop)) < np.argmin(drop)))) + 1
        assert ("sits down slowly" in seg.phrases) == (seg.label == "sit" and lowering > 28), (lowering, seg.phrases)
        seen.add((seg.label, "sits down slowly" in seg.phrases))
    assert {("sit", True), ("sit", False), ("sit_stand", False)} <= seen


def test_a_seated_body_rests_its_hips_at_chair_height():
    for s in range(2):
        motion = synthesize_motion(np.random.default_rng([64, s]), "sit")
        assert 0.48 < motion.joints[:, 0, 1].min() < 0.62, motion.label


def _dips(curve, level):
    return len(_active_runs(np.asarray(curve) > level))


def test_bows_and_squats_repeat_as_often_as_captioned():
    bow_counts, squat_counts = set(), set()
    for s in range(12):
        rng, style = _seg_rng(65, s)
        seg = _bow(rng, style)
        pitch = seg.controls["pelvis_rot"][:, 0]
        count = 2 if "bows twice" in seg.phrases else 1
        assert _dips(pitch / pitch.max(), 0.5) == count, seg.phrases
        bow_counts.add(count)
        rng, style = _seg_rng(66, s)
        seg = _squat(rng, style)
        drop = -seg.controls["pelvis"][:, 1]
        assert drop.max() > 0.25 and drop.min() > -1e-9, seg.label  # squats go down
        count = int(seg.label.split("_")[1])
        assert _dips(drop / drop.max(), 0.5) == count, seg.label
        squat_counts.add(count)
    assert bow_counts == {1, 2} and squat_counts == {1, 2, 3}


def test_claps_bring_the_hands_together_as_often_as_captioned():
    for s in range(6):
        rng, style = _seg_rng(67, s)
        seg = _clap(rng, style)
        claps = int(seg.label.split("_")[1])
        hadd = seg.controls["arm"][:, :, 2]
        np.testing.assert_allclose(hadd[:, 0], hadd[:, 1])
        assert hadd.max() > 0.1, seg.label  # hands meet in front of the chest
        assert _dips(hadd[:, 0], 0.0) == claps, seg.label
        assert f"claps {_CARDINALS[claps]} times" in seg.phrases, (seg.label, seg.phrases)


def test_raising_the_arms_up_lifts_the_hands_above_the_head():
    seen = 0
    for s in range(8):
        motion = synthesize_motion(np.random.default_rng([62, s]), "raise_arms")
        if motion.label.endswith("_up"):
            raised = [0, 1] if "_both_" in motion.label else [0] if "_left_" in motion.label else [1]
            assert (motion.joints[:, [20, 21], 1].max(axis=0)[raised] > motion.joints[:, 15, 1].max()).all()
            seen += 1
    assert seen


def test_a_punch_twists_the_chest_away_from_the_punching_fist():
    checked = 0
    for s in range(12):
        rng, style = _seg_rng(68, s)
        seg = _punch(rng, style)
        if seg.label == "punch_alternate":
            continue
        yaw = seg.controls["spine"][:, 1]  # + turns towards the body's left
        if seg.label == "punch_left":
            assert yaw.min() < -0.2 and yaw.max() <= 1e-9
        else:
            assert yaw.max() > 0.2 and yaw.min() >= -1e-9
        checked += 1
    assert checked


def test_an_action_without_a_builder_is_refused_by_name():
    rng, style = _seg_rng(69, 0)
    with pytest.raises(ValueError, match="unknown synthetic action 'moonwalk'"):
        _single(rng, style, "moonwalk", 1.0)
    for kind in SINGLE_ACTIONS:
        assert _single(rng, style, kind, 1.0).label.split("_")[0] == kind.split("_")[0]


# ---------------------------------------------------------------------------------------------------------------------
# Sequences and walking while waving or clapping
# ---------------------------------------------------------------------------------------------------------------------


def test_a_walk_comes_to_rest_before_an_action_in_place_and_starts_from_rest_after_one():
    angles = set()
    for s in range(6):
        for kind in ("walk_turn", "walk_stop", "walk_wave", "walk_sit", "walk_turn_walk", "turn_walk", "wave_walk"):
            rng, style = _seg_rng(71, s)
            segments = _sequence(rng, style, kind, 1.0)
            parts = [seg.label.split("_")[0] for seg in segments]
            assert parts == kind.replace("stop", "stand").split("_"), (kind, parts)
            for i, seg in enumerate(segments):
                if not seg.label.startswith("walk"):
                    continue
                fwd = seg.controls["fwd"]
                if i + 1 < len(segments):
                    assert abs(fwd[-1]) < 1e-6, (kind, i)
                if i > 0:
                    assert abs(fwd[0]) < 1e-6 and fwd[-1] > 0.3, (kind, i)
            if kind == "walk_turn_walk":
                angles.add(int(segments[1].label.split("_")[1]))
    assert angles == {90, 180}


def test_walking_while_waving_or_clapping_moves_the_arms_and_stills_their_swing():
    for s in range(6):
        for kind, gerund in (("walk_while_wave", "waving"), ("walk_while_clap", "clapping")):
            rng, style = _seg_rng(72, s)
            seg = _overlay(rng, style, kind)
            walk, upper = seg.label.split("+")
            assert walk in ("walk_forward_slow", "walk_forward_normal"), seg.label
            assert upper.startswith(kind.split("_")[-1] + "_"), seg.label
            assert all(" while " in p and gerund in p.split(" while ")[1] for p in seg.phrases), seg.phrases
            c, n = seg.controls, seg.frames
            assert c["gait"].all() and (c["fwd"] > 0.3).all()
            # the busy arms neither swing nor keep the walking arms' hanging elbow pole
            assert c["swing"][0] > 0.15 and abs(c["swing"][12:n - 12]).max() < 1e-9, seg.label
            # and it eases back in over the clip's last half second
            assert 0.0 < c["swing"][n - 6] < c["swing"][0] and c["swing"][n - 2] == pytest.approx(c["swing"][0])
            busy = [0] if upper == "wave_left" else [1] if upper == "wave_right" else [0, 1]
            for side in (0, 1):
                expected = _arm_pole(1, "down" if side in busy else "back")[0, side]
                np.testing.assert_allclose(c["pole"][20, side], expected, atol=1e-9)


def test_walking_while_clapping_claps_through_the_whole_walk():
    # the walk's arm swing is stilled for the whole clip, so claps that stopped early left the arms hanging
    # motionless for most of a clip captioned "walks forward while clapping"
    for s in range(12):
        rng = np.random.default_rng([73, s])
        seg = _overlay(rng, _Style.sample(rng), "walk_while_clap")
        c, n = seg.controls, seg.frames
        assert all(" while clapping" in p for p in seg.phrases)
        raised = np.flatnonzero(c["arm"][:, 0, 0] > 0.5)  # forearms up in front of the chest
        assert raised[0] < 20 and raised[-1] >= n - 20, (seg.label, n, raised[[0, -1]])
        meet = np.flatnonzero(c["arm"][:, 0, 2] > 0.1)  # hands together
        assert meet[-1] >= n - 20 - 11, (seg.label, n, meet[-1])
