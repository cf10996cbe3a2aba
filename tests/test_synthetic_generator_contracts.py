"""The synthetic motion generator (``utils.synthetic``): the rest skeleton, the gait's stance/swing schedule and the
foot paths it gives, the clip's frames, segments and sub-clip tags, and the dataset it writes (summary, settings record,
the folder it may take over)."""

from __future__ import annotations

import collections
import json

import numpy as np
import pytest

import utils.synthetic as synthetic
from utils.datasets import read_split, read_texts
from utils.motion_files import CACHE_DIR
from utils.paramutil import T2M_TGT_BONE_LENGTHS
from utils.synthetic import (
    GENERATOR_VERSION,
    OVERLAY_KINDS,
    SEQUENCE_KINDS,
    SETTINGS_FILE,
    SINGLE_ACTIONS,
    SYNTHETIC_ACTIONS,
    _contacts,
    _foot_targets,
    _sample_program,
    _seconds,
    built_with,
    check_synthetic_folder,
    generate_synthetic_dataset,
    rest_offsets,
    settings_mismatch,
    synthesize_motion,
)
from utils.synthetic_controls import _rest_controls, _Style

# ---------------------------------------------------------------------------------------------------------------------
# Rest skeleton
# ---------------------------------------------------------------------------------------------------------------------


def test_rest_skeleton_mirrors_left_and_right_with_the_target_bone_lengths():
    # the body faces +Z with its left at +X: the right side is the left mirrored in x, nothing else changes
    offsets = rest_offsets()
    directions = offsets / np.maximum(np.linalg.norm(offsets, axis=-1, keepdims=True), 1e-12)
    for right, left in ((2, 1), (5, 4), (8, 7), (11, 10), (14, 13), (17, 16), (19, 18), (21, 20)):
        np.testing.assert_allclose(directions[right], directions[left] * np.array([-1.0, 1.0, 1.0]), atol=1e-12)
    assert offsets[1, 0] > 0 > offsets[2, 0] and offsets[16, 0] > 0 > offsets[17, 0]
    np.testing.assert_allclose(np.linalg.norm(offsets, axis=-1), T2M_TGT_BONE_LENGTHS, atol=1e-12)
    np.testing.assert_allclose(rest_offsets(1.1), 1.1 * offsets, atol=1e-12)


# ---------------------------------------------------------------------------------------------------------------------
# Gait schedule and foot paths
# ---------------------------------------------------------------------------------------------------------------------


def _gait_controls(gait):
    """Controls of a gait on where ``gait`` is True: one cycle a second, 60% stance (so a swing lasts 8 frames)."""
    c = _rest_controls(len(gait), _Style.sample(np.random.default_rng(0)))
    c["gait"][:] = np.asarray(gait, dtype=float)
    return c


def test_a_gait_that_starts_swings_one_leg_at_once_and_the_other_half_a_cycle_later():
    # the legs alternate from the first step: one swings, the other stands (not a two-footed hop)
    for seed in range(4):
        contact, _ = _contacts(_gait_controls(np.arange(50) >= 15), np.random.default_rng(seed))
        assert contact[10:15].all()  # standing (a swing under way at the start lands within 8 frames)
        lead = int(np.flatnonzero(~contact[15])[0])
        assert not contact[15:23, lead].any() and contact[23, lead]  # a swing of 0.4 cycle: 8 frames
        assert contact[15:25, 1 - lead].all() and not contact[25, 1 - lead]  # half a cycle later
        assert contact.any(axis=1).all()


def test_a_leg_in_the_air_when_the_gait_stops_finishes_its_swing_then_both_stand():
    # on for frames 12-24: the second leg swings on frames 22-29, and is in the air when the gait stops at 25
    for seed in range(4):
        contact, _ = _contacts(_gait_controls((np.arange(60) >= 12) & (np.arange(60) < 25)),
                               np.random.default_rng(seed))
        second = int(np.flatnonzero(contact[12])[0])
        assert not contact[22:30, second].any() and contact[30:, second].all()
        assert contact[20:, 1 - second].all()


def _swing_targets(heading, swings=((4, 6),)):
    """Ankle targets and foot yaw of leg 0 swinging on the frames ``swings`` and standing otherwise (leg 1 always
    stands), on a body walking forward from the origin with the given heading per frame."""
    n = len(heading)
    contact = np.ones((n, 2), dtype=bool)
    for a, b in swings:
        contact[a:b, 0] = False
    c = {"foot_off": np.zeros((n, 2, 3)), "lift": np.full(n, 0.1)}
    ref = np.zeros((n, 3))
    ref[:, 2] = 0.1 * np.arange(n)  # walking forward 10 cm a frame
    return _foot_targets(c, contact, ref, np.asarray(heading, dtype=float), np.array([0.1, -0.1]), 0.08)


def test_a_swing_foot_leaves_its_foothold_and_lands_on_the_next_on_a_symmetric_arc():
    targets, _ = _swing_targets(np.zeros(10))
    before, after = targets[0, 0], targets[9, 0]
    np.testing.assert_allclose(targets[:4, 0], np.broadcast_to(before, (4, 3)))  # planted where it stands
    np.testing.assert_allclose(targets[6:, 0], np.broadcast_to(after, (4, 3)))
    assert after[2] > before[2]
    swing = targets[4:6, 0]
    assert (swing[:, 1] > 0.08 + 0.05).all()  # both swing frames lift the foot off the floor
    np.testing.assert_allclose(swing[0, 1], swing[1, 1])  # and as high: the arc is symmetric
    # the swing goes from the foothold it left, a third and two thirds of the way to the next
    np.testing.assert_allclose(swing[:, 2], before[2] + (after[2] - before[2]) * np.array([0.259259, 0.740741]),
                               atol=1e-5)


def test_a_swing_foot_turns_the_short_way_round():
    # the heading crosses +-pi during the swing: the foot turns by 0.28 rad, not by a whole turn the other way
    heading = np.where(np.arange(10) < 5, 3.0, -3.0)
    _, yaw = _swing_targets(heading)
    turned = (yaw[:, 0] - 3.0 + np.pi) % (2 * np.pi) - np.pi
    assert (turned >= -1e-9).all() and (turned <= 2 * np.pi - 6.0 + 1e-9).all(), yaw[:, 0]


def test_each_swing_starts_from_the_foothold_the_foot_last_stood_on():
    # three footholds, two swings: the second swing leaves from the second foothold, not the first
    targets, _ = _swing_targets(np.zeros(12), swings=((3, 5), (7, 9)))
    feet = targets[:, 0]
    for a, b in ((3, 5), (7, 9)):
        lo, hi = feet[a - 1, 2], feet[b, 2]
        assert lo < feet[a, 2] < feet[b - 1, 2] < hi, (a, feet[:, 2])
    assert np.abs(np.diff(feet[:, 2])).max() < 0.4


def test_standing_feet_are_a_little_wider_apart_than_the_hips():
    for seed in range(3):
        motion = synthesize_motion(np.random.default_rng([9, seed]), "wave")
        joints = motion.joints
        feet = np.linalg.norm((joints[:, 7] - joints[:, 8])[:, [0, 2]], axis=-1)
        hips = np.linalg.norm((joints[:, 1] - joints[:, 2])[:, [0, 2]], axis=-1)
        assert (feet > 1.05 * hips).all(), (motion.label, (feet / hips).min())


# ---------------------------------------------------------------------------------------------------------------------
# One clip: frames, segments, sub-clip tags
# ---------------------------------------------------------------------------------------------------------------------


def test_a_time_tag_gives_its_frame_back_and_is_the_frame_s_time_where_that_already_does():
    for frame in range(0, 400):
        tag = _seconds(frame)
        assert int(tag * 20) == frame, (frame, tag)
        exact = round(frame / 20, 3)
        assert tag == exact or int(exact * 20) < frame, (frame, tag)
    assert _seconds(40) == 2.0 and _seconds(3) == 0.15


def test_a_sequence_s_segments_tile_the_clip_and_its_subclip_tags_are_their_bounds():
    checked = 0
    for seed in range(6):
        motion = synthesize_motion(np.random.default_rng([41, seed]), "walk_turn_walk")
        n = len(motion.joints)
        assert motion.local_rotations.shape[0] == motion.root_positions.shape[0] == motion.contacts.shape[0] == n
        np.testing.assert_allclose(motion.root_positions, motion.joints[:, 0], atol=1e-12)
        starts = [a for _, a, _ in motion.segments]
        stops = [b for _, _, b in motion.segments]
        assert len(motion.segments) == 3 and starts[0] == 0 and stops[-1] == n and starts[1:] == stops[:-1]
        assert motion.label == "+".join(label for label, _, _ in motion.segments)
        bounds = {(a, min(b, n - 1)) for _, a, b in motion.segments}
        for _, start, stop in motion.subclips:
            assert (int(start * 20), int(stop * 20)) in bounds, (start, stop, motion.segments)
            assert 40 <= int(stop * 20) - int(start * 20) < 200 and int(stop * 20) <= n - 1
            checked += 1
    assert checked


def test_a_sequence_s_whole_clip_captions_name_every_part_and_single_actions_have_no_subclips():
    for seed in range(4):
        motion = synthesize_motion(np.random.default_rng([43, seed]), "walk_sit")
        for caption in motion.captions:
            assert any(w in caption for w in ("walk", "stroll", "steps", "hurries")), caption
            assert any(w in caption for w in ("sit", "seat")), caption
        single = synthesize_motion(np.random.default_rng([43, seed]), "bow")
        assert single.subclips == [] and len(single.segments) == 1


def _facing(joints):
    """The body's forward direction (T, 3) from the hips and shoulders."""
    across = (joints[:, 2] - joints[:, 1]) + (joints[:, 17] - joints[:, 16])
    forward = np.cross([0.0, 1.0, 0.0], across)
    return forward / np.linalg.norm(forward, axis=-1, keepdims=True)


def test_walking_forward_swings_each_arm_against_the_leg_on_its_side():
    checked = 0
    for seed in range(4):
        motion = synthesize_motion(np.random.default_rng([12, seed]), "walk")
        if "forward" not in motion.label:
            continue
        joints, forward = motion.joints, _facing(motion.joints)
        for wrist, ankle in ((20, 7), (21, 8)):
            hand = np.sum((joints[:, wrist] - joints[:, 0]) * forward, axis=-1)
            foot = np.sum((joints[:, ankle] - joints[:, 0]) * forward, axis=-1)
            assert np.corrcoef(hand, foot)[0, 1] < -0.5, motion.label
        checked += 1
    assert checked


def test_bent_knees_point_forward():
    for seed in range(3):
        motion = synthesize_motion(np.random.default_rng([12, seed]), "squat")
        joints, forward = motion.joints, _facing(motion.joints)
        for hip, knee, ankle in ((1, 4, 7), (2, 5, 8)):
            ahead = np.sum((joints[:, knee] - (joints[:, hip] + joints[:, ankle]) / 2) * forward, axis=-1)
            assert ahead.min() > 0.0 and ahead.max() > 0.1, (motion.label, ahead.min())


def test_a_planted_foot_does_not_turn_under_the_body_while_the_other_steps():
    # the toes stay put as well as the ankles, through turns in place and walks that turn
    for seed in range(3):
        for action in ("turn", "walk_turn_walk"):
            motion = synthesize_motion(np.random.default_rng([12, seed]), action)
            for side, toe in ((0, 10), (1, 11)):
                planted = motion.contacts[1:, side] & motion.contacts[:-1, side]
                step = np.linalg.norm(np.diff(motion.joints[:, toe], axis=0), axis=-1)[planted]
                assert step.max() < 2e-3, (motion.label, side, step.max())


def test_arms_raised_forward_bring_the_hands_in_front_of_the_shoulders():
    checked = 0
    for seed in range(6):
        motion = synthesize_motion(np.random.default_rng([13, seed]), "raise_arms")
        if not motion.label.endswith("_forward"):
            continue
        joints, forward = motion.joints, _facing(motion.joints)
        for side, shoulder, wrist in (("left", 16, 20), ("right", 17, 21)):
            if side in motion.label or "both" in motion.label:
                ahead = np.sum((joints[:, wrist] - joints[:, shoulder]) * forward, axis=-1)
                assert ahead.max() > 0.3, (motion.label, side, ahead.max())
                checked += 1
    assert checked


# ---------------------------------------------------------------------------------------------------------------------
# The dataset: summary, settings record, the folder it may take over
# ---------------------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    out = tmp_path_factory.mktemp("syn") / "Synthetic"
    return out, generate_synthetic_dataset(str(out), 12, seed=5)


def test_the_summary_counts_what_was_written(dataset):
    out, summary = dataset
    ids = read_split(str(out), "all")
    assert summary.motions == len(ids) == 12 and sum(summary.actions.values()) == 12
    assert summary.frames == sum(np.load(out / "new_joint_vecs" / f"{i}.npy").shape[0] for i in ids)
    tagged = sum(1 for i in ids for e in read_texts(str(out / "texts" / f"{i}.txt")) if e.to_tag > 0)
    assert summary.subclip_captions == tagged > 0
    assert summary.splits == {"train": 9, "val": 1, "test": 2, "train_val": 10, "all": 12}
    assert json.loads((out / SETTINGS_FILE).read_text()) == {"num_motions": 12, "seed": 5,
                                                            "generator_version": GENERATOR_VERSION}


def test_subclip_captions_are_written_with_their_start_before_their_end(dataset):
    out, _ = dataset
    tagged = [e for i in read_split(str(out), "all") for e in read_texts(str(out / "texts" / f"{i}.txt"))
              if e.to_tag > 0]
    assert tagged and all(0 <= e.f_tag < e.to_tag for e in tagged)


def test_the_statistics_cover_every_clip(dataset):
    out, _ = dataset
    frames = np.concatenate([np.load(out / "new_joint_vecs" / f"{i}.npy") for i in read_split(str(out), "all")])
    np.testing.assert_allclose(np.load(out / "Mean.npy"), frames.astype(np.float64).mean(0), atol=1e-5)


def test_each_motion_has_its_own_random_stream_and_the_summary_counts_repeated_kinds(tmp_path):
    # motion i of seed s is built from (s, i): seed 0's second motion is not seed 1's first
    first = generate_synthetic_dataset(str(tmp_path / "s0"), 3, seed=0)
    generate_synthetic_dataset(str(tmp_path / "s1"), 3, seed=1)
    second_of_seed_0 = (tmp_path / "s0" / "texts" / "000001.txt").read_text()
    assert second_of_seed_0 != (tmp_path / "s1" / "texts" / "000000.txt").read_text()
    assert first.actions == {"walk_sit": 1, "walk": 2}  # seed 0 draws a walk twice in its first three motions


def test_random_motions_draw_every_kind_single_actions_most_often():
    rng = np.random.default_rng(0)
    counts = collections.Counter()
    for _ in range(400):
        style = _Style.sample(rng)
        counts[_sample_program(rng, style, None, 0.97 * style.scale)[0]] += 1
    assert set(counts) == set(SYNTHETIC_ACTIONS)
    share = {group: sum(counts[k] for k in kinds) / 400
             for group, kinds in (("single", SINGLE_ACTIONS), ("sequence", SEQUENCE_KINDS), ("overlay", OVERLAY_KINDS))}
    assert 0.55 < share["single"] < 0.75 and 0.15 < share["sequence"] < 0.31 and 0.06 < share["overlay"] < 0.18, share


def test_the_settings_of_a_dataset_with_an_unreadable_or_odd_record_are_unknown(tmp_path):
    assert built_with(str(tmp_path)) is None
    (tmp_path / "Std.npy").write_bytes(b"")
    assert built_with(str(tmp_path)) is None  # Mean.npy marks a finished dataset
    (tmp_path / "Mean.npy").write_bytes(b"")
    assert built_with(str(tmp_path)) == {}
    (tmp_path / SETTINGS_FILE).write_text("{not json")
    assert built_with(str(tmp_path)) == {}
    (tmp_path / SETTINGS_FILE).write_text("[3, 0]")
    assert built_with(str(tmp_path)) == {}
    assert "built before they were recorded" in settings_mismatch(str(tmp_path), 3, 0)


def test_the_loaders_cache_is_part_of_a_synthetic_folder(tmp_path):
    (tmp_path / CACHE_DIR).mkdir()
    (tmp_path / CACHE_DIR / "index.npz").write_bytes(b"cached")
    assert check_synthetic_folder(str(tmp_path), 3) == []


def test_a_folder_holding_only_an_import_spec_is_refused_by_name(tmp_path):
    (tmp_path / "spec.json").write_text("{}")
    with pytest.raises(ValueError, match=r"holds spec\.json, the spec of an imported dataset"):
        check_synthetic_folder(str(tmp_path), 3)


def test_clip_names_must_be_all_digits(tmp_path):
    (tmp_path / "texts").mkdir()
    (tmp_path / "texts" / "000001_copy.txt").write_text("a person walks#\n")
    with pytest.raises(ValueError, match=r"texts/000001_copy\.txt"):
        check_synthetic_folder(str(tmp_path), 3)


def test_foreign_files_are_counted_and_the_first_five_named(tmp_path):
    for name in ("a.txt", "b.txt", "c.txt", "d.txt", "e.txt", "f.txt"):
        (tmp_path / name).write_text("mine")
    (tmp_path / "Mean.npy").write_bytes(b"")
    with pytest.raises(ValueError, match=r"does not write: a\.txt, b\.txt, c\.txt, d\.txt, e\.txt \.\.\. \(6 in all\)"):
        check_synthetic_folder(str(tmp_path), 3)


def test_a_boolean_seed_is_refused_by_name(tmp_path):
    with pytest.raises(ValueError, match=r"--seed True: expected a whole number"):
        generate_synthetic_dataset(str(tmp_path / "Synthetic"), 3, seed=True)
    assert not (tmp_path / "Synthetic").exists()


def test_twenty_motions_split_70_10_20(tmp_path, monkeypatch):
    # the split sizes depend only on the count: every motion here is the same one, made once
    motion = synthesize_motion(np.random.default_rng([0, 0]))
    monkeypatch.setattr(synthetic, "synthesize_motion", lambda rng, action=None: motion)
    out = tmp_path / "Synthetic"
    summary = generate_synthetic_dataset(str(out), 20, seed=0)
    assert {k: summary.splits[k] for k in ("train", "val", "test")} == {"train": 14, "val": 2, "test": 4}
    assert [len(read_split(str(out), name)) for name in ("train", "val", "test")] == [14, 2, 4]


# ---------------------------------------------------------------------------------------------------------------------
# Bad arguments
# ---------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("num_motions", [3.0, "4"])
def test_a_motion_count_that_is_not_a_whole_number_is_refused_before_the_dataset_is_touched(tmp_path, num_motions):
    """Refused before the folder is prepared: failing later, at ``range``, would leave the finished dataset without its
    statistics and settings, looking unfinished, and with a TypeError that names no flag."""
    out = tmp_path / "Synthetic"
    generate_synthetic_dataset(str(out), 3)
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    with pytest.raises(ValueError, match=rf"--num_motions {num_motions!r}: expected a whole number"):
        generate_synthetic_dataset(str(out), num_motions)
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == before
    assert built_with(str(out))["num_motions"] == 3
