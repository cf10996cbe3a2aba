"""The synthetic motion generator's parts: clip lengths and sub-clips the loaders keep, the folder it owns, the
70/10/20 split, each action's motion against its caption (gait, punches, kicks, turns, claps), the caption grammar, and
the control helpers (ease, two-bone IK, arm blending and poles)."""

from __future__ import annotations

import os

import numpy as np
import pytest

import utils.synthetic as synthetic
from utils.atomic_io import TMP_PREFIX
from utils.synthetic import (
    check_synthetic_folder,
    generate_synthetic_dataset,
    prepare_synthetic_folder,
    settings_mismatch,
    synthesize_motion,
)
from utils.synthetic_actions import _clap, _kick, _punch, _sequence, _turn, _walk
from utils.synthetic_captions import _caption, _pick_captions, _Segment, _sequence_bodies
from utils.synthetic_controls import FPS, _arm_pole, _ramp, _rest_controls, _set_arm, _smoothstep, _Style, _two_bone_ik


def _program_of(frames_per_segment):
    """A _sample_program stand-in: standing segments of the given joint-frame counts."""

    def program(rng, style, action, h0):
        segs = [_Segment("stand", _rest_controls(n, style), [f"stands still {k}"]) for k, n in
                enumerate(frames_per_segment)]
        return "walk_stop", segs
    return program


def test_a_motion_of_40_joint_frames_is_not_made(monkeypatch):
    # 40 joint frames give 39 feature frames, fewer than the loaders' minimum of 40
    monkeypatch.setattr(synthetic, "_sample_program", _program_of([41]))
    assert synthetic.synthesize_motion(np.random.default_rng(0)).joints.shape[0] == 41
    monkeypatch.setattr(synthetic, "_sample_program", _program_of([40]))
    with pytest.raises(RuntimeError, match="could not fit"):
        synthetic.synthesize_motion(np.random.default_rng(0))


def test_subclips_of_exactly_40_feature_frames_are_kept(monkeypatch):
    # the loaders keep sub-clips of 40-199 frames, so a 40-frame part of a sequence gets its caption
    monkeypatch.setattr(synthetic, "_sample_program", _program_of([40, 41]))
    motion = synthetic.synthesize_motion(np.random.default_rng(0))
    assert [(round(a * 20), int(b * 20)) for _, a, b in motion.subclips] == [(0, 40), (40, 80)]


def test_a_file_of_the_wrong_type_in_a_clip_folder_is_foreign(tmp_path):
    # new_joint_vecs/000007.txt is not a clip the generator writes: refuse the folder, do not delete it
    (tmp_path / "new_joint_vecs").mkdir()
    (tmp_path / "new_joint_vecs" / "000007.txt").write_text("mine")
    with pytest.raises(ValueError, match=r"new_joint_vecs/000007\.txt"):
        check_synthetic_folder(str(tmp_path), 3)


def test_statistics_temporaries_left_by_a_kill_are_removed(tmp_path):
    tmp = tmp_path / f"{TMP_PREFIX}Mean.npy.abc123"
    tmp.write_bytes(b"partial")
    assert check_synthetic_folder(str(tmp_path), 3) == [str(tmp)]
    prepare_synthetic_folder(str(tmp_path), 3)
    assert not tmp.exists()


@pytest.fixture(scope="module")
def synthetic10(tmp_path_factory):
    out = tmp_path_factory.mktemp("syn") / "Synthetic"
    return str(out), generate_synthetic_dataset(str(out), 10, seed=3)


def test_synthetic_splits_are_70_10_20(synthetic10):
    out, summary = synthetic10
    assert {k: summary.splits[k] for k in ("train", "val", "test")} == {"train": 7, "val": 1, "test": 2}
    for name, n in (("train", 7), ("val", 1), ("test", 2)):
        with open(os.path.join(out, f"{name}.txt")) as f:
            assert len(f.read().split()) == n


def test_a_dataset_of_another_seed_is_a_mismatch(synthetic10):
    out, _ = synthetic10
    assert settings_mismatch(out, 10, 3) is None
    message = settings_mismatch(out, 10, 4)
    assert message is not None and "10 motions (seed 3)" in message and "--seed 4" in message


def test_walking_always_has_a_foot_on_the_ground():
    # the legs step half a cycle apart; in phase, the "walk" would be a two-footed hop
    for s in range(3):
        motion = synthesize_motion(np.random.default_rng([7, s]), "walk")
        assert motion.contacts.any(axis=1).all(), motion.label
        assert (motion.contacts[:, 0] != motion.contacts[:, 1]).mean() > 0.5


def test_a_file_named_renders_is_foreign(tmp_path):
    # only a renders/ folder (render.py's videos) is left alone
    (tmp_path / "renders").write_text("not a folder")
    with pytest.raises(ValueError, match="renders"):
        check_synthetic_folder(str(tmp_path), 3)
    (tmp_path / "renders").unlink()
    (tmp_path / "renders").mkdir()
    assert check_synthetic_folder(str(tmp_path), 3) == []


def test_a_curving_walk_is_captioned_a_circle_only_when_it_turns_300_degrees():
    # 200-300 degrees is a half circle / big curve, not "walks in a circle"
    seen = set()
    for s in range(20):
        rng = np.random.default_rng([11, s])
        seg = _walk(rng, _Style.sample(rng), 140, start=False, stop=False, direction="forward", curve="left")
        turned = abs(np.degrees(np.sum(seg.controls["yaw_rate"]) / FPS))
        full = any("full circle" in p or "in a circle" in p for p in seg.phrases)
        assert full == (turned >= 300), (turned, seg.phrases)
        seen.add("full" if turned >= 300 else "mid" if turned >= 200 else "low")
    assert "mid" in seen


def _seg_rng(*key):
    rng = np.random.default_rng(list(key))
    return rng, _Style.sample(rng)


def test_claps_fit_in_a_clip_of_fixed_length_and_the_arms_come_down():
    # walk_while_clap gives _clap a fixed length; the claps are cut to what fits and the arms lower after them
    for s in range(8):
        rng, style = _seg_rng(9, s)
        seg = _clap(rng, style, 60)
        assert abs(seg.controls["arm"][-1, :, 0]).max() < 0.1, seg.label   # flexion back to rest
        assert abs(seg.controls["arm"][-1, :, 3] - style.elbow).max() < 0.05, seg.label


def test_alternating_punches_use_both_fists():
    # "throws N punches with alternating hands" must punch with both arms (flexion 1.5 > the guard's 1.0)
    checked = 0
    for s in range(12):
        rng, style = _seg_rng(5, s)
        seg = _punch(rng, style)
        peak = seg.controls["arm"][:, :, 0].max(axis=0)
        if seg.label == "punch_alternate":
            assert (peak > 1.3).all(), peak
            checked += 1
        else:
            punching = 0 if seg.label == "punch_left" else 1
            assert peak[punching] > 1.3 and peak[1 - punching] < 1.1, (seg.label, peak)
    assert checked


def test_a_kick_shifts_the_pelvis_over_the_standing_leg():
    # kicking with the left leg puts the weight on the right (-x, the body's left is +x)
    for s in range(6):
        rng, style = _seg_rng(5, s)
        seg = _kick(rng, style)
        x = seg.controls["pelvis"][:, 0]
        if seg.label == "kick_left":
            assert x.min() < -0.05 and x.max() <= 1e-9
        else:
            assert x.max() > 0.05 and x.min() >= -1e-9


def test_the_walk_after_a_turn_starts_from_standing():
    # walk_turn_walk: walk (stops), turn in place, walk (starts from rest)
    for s in range(3):
        rng, style = _seg_rng(1, s)
        first, turn, last = _sequence(rng, style, "walk_turn_walk", 1.0)
        assert abs(first.controls["fwd"][-1]) < 1e-6 and abs(last.controls["fwd"][0]) < 1e-6
        assert last.controls["fwd"][-1] > 0.3


def test_a_full_turn_to_the_left_is_counterclockwise():
    # seen from above (Y up), a left turn is counterclockwise
    rng, style = _seg_rng(3, 0)
    left = _turn(rng, style, angle=360, side="left")
    assert left.controls["yaw_rate"].sum() > 0
    assert any("counterclockwise" in p for p in left.phrases)
    right = _turn(rng, style, angle=360, side="right")
    assert any(p.endswith(" clockwise") for p in right.phrases)
    assert not any("counterclockwise" in p for p in right.phrases)


def test_captions_without_a_gendered_subject_say_their():
    assert _caption("a person", "waves {their} hand") == "a person waves their hand"
    assert _caption("a woman", "waves {their} hand") == "a woman waves her hand"


def test_pick_captions_returns_distinct_captions():
    # a clip's three captions are distinct even when there is one caption body
    for s in range(20):
        picked = _pick_captions(np.random.default_rng(s), ["walks forward"])
        assert len(picked) == len(set(picked)) >= 1


def _segment(phrases):
    return _Segment("x", {"fwd": np.zeros(3)}, phrases)


def test_sequence_captions_do_not_chain_progressive_phrases():
    # "turns around and then is walking forward" is not English
    segs = [_segment(["turns around"]), _segment(["is walking forward", "walks forward"])]
    bodies = _sequence_bodies(np.random.default_rng(0), segs, n=12)
    assert bodies and not any(" is walking" in b for b in bodies)


def test_three_part_sequence_captions_name_every_part():
    segs = [_segment(["walks forward"]), _segment(["turns around"]), _segment(["sits down"])]
    bodies = _sequence_bodies(np.random.default_rng(0), segs, n=12)
    assert {b.startswith("first ") for b in bodies} == {True, False}
    for b in bodies:
        assert b.index("walks forward") < b.index("turns around") < b.index("sits down"), b


def test_smoothstep_is_the_cubic_ease():
    # ramps start and end with zero slope
    np.testing.assert_allclose(_smoothstep(np.array([-1.0, 0.0, 0.25, 0.5, 0.75, 1.0, 2.0])),
                               [0.0, 0.0, 0.15625, 0.5, 0.84375, 1.0, 1.0])
    r = _ramp(21, 0, 20)
    assert r[1] - r[0] < 0.01 and r[20] - r[19] < 0.01


def test_standing_actions_keep_both_feet_planted():
    # with the gait off, no foot is still finishing a swing when the clip starts
    for action in ("bow", "wave", "clap", "raise_arms"):
        for s in range(3):
            motion = synthesize_motion(np.random.default_rng([21, s]), action)
            assert motion.contacts.all(), (action, s)


def test_elbow_poles_mirror_left_and_right():
    # the right arm's pole is the left one's mirrored in x
    for kind in ("back", "out", "down"):
        pole = _arm_pole(2, kind)
        np.testing.assert_allclose(pole[:, 1], pole[:, 0] * np.array([-1.0, 1.0, 1.0]))
        assert pole[0, 0, 0] != 0


def test_set_arm_blends_to_the_pose_by_its_weight():
    # weight 1 gives exactly the requested pose, weight 0 keeps the arm, 0.5 is halfway
    style = _Style.sample(np.random.default_rng(0))
    c = _rest_controls(3, style)
    rest = c["arm"][0, 0].copy()
    _set_arm(c, 0, np.array([0.0, 0.5, 1.0]), flex=1.0, abd=0.0, hadd=0.2, elbow=0.0)
    np.testing.assert_allclose(c["arm"][0, 0], rest)
    np.testing.assert_allclose(c["arm"][1, 0], 0.5 * rest + 0.5 * np.array([1.0, 0.0, 0.2, 0.0]))
    np.testing.assert_allclose(c["arm"][2, 0], [1.0, 0.0, 0.2, 0.0])


def test_two_bone_ik_keeps_the_bone_lengths_out_of_reach():
    # a target beyond reach stretches the chain straight, never the bones
    base, target = np.zeros((1, 3)), np.array([[0.0, 0.0, 2.0]])
    mid, end, _ = _two_bone_ik(base, target, 0.5, 0.4, np.array([[0.0, 1.0, 0.0]]))
    assert np.linalg.norm(mid - base) == pytest.approx(0.5, abs=1e-6)
    assert np.linalg.norm(end - mid) == pytest.approx(0.4, abs=1e-3)
    assert np.linalg.norm(end - base) <= 0.9 + 1e-9
