"""Synthetic motions: deterministic files in the HumanML3D layout, kinematics that match the captions."""

import filecmp
import os

import numpy as np
import pytest

from utils.bvh import forward_kinematics
from utils.dataset_io import write_split_files
from utils.dataset_specs import DATASETS
from utils.datasets import read_split, read_texts
from utils.motion_process import extract_features, recover_from_ric
from utils.paramutil import T2M_TGT_BONE_LENGTHS
from utils.synthetic import PARENTS, SINGLE_ACTIONS, SYNTHETIC_ACTIONS, generate_synthetic_dataset, synthesize_motion

SPEC = DATASETS["synthetic"]
LAYOUT_FILES = ("Mean.npy", "Std.npy", "train.txt", "val.txt", "test.txt", "train_val.txt", "all.txt")
# Words one of which every caption of the action must contain.
ACTION_WORDS = {
    "walk": ("walk", "stroll", "hurries", "steps"), "run": ("run", "jog", "sprint", "dash"),
    "sidestep": ("side",), "turn": ("turn", "spin"), "jump": ("jump", "leap"), "wave": ("wave",),
    "kick": ("kick",), "sit": ("sit", "seat"), "bow": ("bow",), "squat": ("squat",), "clap": ("clap", "applaud"),
    "raise_arms": ("raise", "lift", "hold", "stretch", "reach"), "punch": ("punch", "box"),
}


def _motion(action, seed):
    return synthesize_motion(np.random.default_rng([1234, seed]), action)


def _facing(pose):
    across = (pose[2] - pose[1]) + (pose[17] - pose[16])
    forward = np.cross([0.0, 1.0, 0.0], across)
    return forward / np.linalg.norm(forward)


def _canonical(joints):
    """Joints on the floor with frame 0's root at the origin, facing +Z (so the body's left is +X), as
    ``extract_features`` places them."""
    joints = joints.copy()
    joints[..., 1] -= joints[..., 1].min()
    joints -= joints[0, 0] * np.array([1.0, 0.0, 1.0])
    f = _facing(joints[0])
    c, s = f[2], f[0]
    return joints @ np.array([[c, 0.0, -s], [0.0, 1.0, 0.0], [s, 0.0, c]]).T


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    out = tmp_path_factory.mktemp("synthetic") / "Synthetic"
    summary = generate_synthetic_dataset(str(out), 6, seed=3)
    return out, summary


def test_dataset_layout_and_files(dataset):
    out, summary = dataset
    for name in LAYOUT_FILES:
        assert (out / name).is_file(), name
    ids = read_split(str(out), "all")
    assert len(ids) == 6 == summary.motions
    splits = {s: set(read_split(str(out), s)) for s in ("train", "val", "test")}
    assert set().union(*splits.values()) == set(ids) and sum(len(v) for v in splits.values()) == len(ids)
    assert set(read_split(str(out), "train_val")) == splits["train"] | splits["val"]
    frames = 0
    for clip_id in ids:
        features = np.load(out / "new_joint_vecs" / f"{clip_id}.npy")
        joints = np.load(out / "new_joints" / f"{clip_id}.npy")
        assert features.dtype == np.float32 and features.shape[1] == SPEC.dim_pose == 263
        assert SPEC.min_motion_length <= features.shape[0] <= SPEC.max_motion_length
        assert np.all(np.isfinite(features))
        assert joints.shape == (features.shape[0], 22, 3)
        np.testing.assert_allclose(joints, recover_from_ric(features, 22), atol=1e-6)
        entries = read_texts(str(out / "texts" / f"{clip_id}.txt"))
        whole = [e for e in entries if e.f_tag == 0.0 and e.to_tag == 0.0]
        assert len(whole) == 3 and len({e.caption for e in whole}) == 3 and all(e.tokens for e in entries)
        for e in entries:
            if e.to_tag > 0:  # sub-clip captions cover 40..199 feature frames inside the clip
                assert 40 <= int(e.to_tag * 20) - int(e.f_tag * 20) < 200 and e.to_tag * 20 <= features.shape[0]
        frames += features.shape[0]
    assert frames == summary.frames


def test_mean_std_the_humanml3d_way(dataset):
    out, _ = dataset
    ids = read_split(str(out), "all")
    all_frames = np.concatenate([np.load(out / "new_joint_vecs" / f"{i}.npy") for i in ids]).astype(np.float64)
    mean, std = np.load(out / "Mean.npy"), np.load(out / "Std.npy")
    assert mean.shape == std.shape == (263,)
    np.testing.assert_allclose(mean, all_frames.mean(0), atol=1e-5)
    raw_std = all_frames.std(0)
    for group in SPEC.layout:
        block = std[group.start:group.stop]
        assert np.all(block == block[0]) and block[0] > 0, group.name
        np.testing.assert_allclose(block[0], raw_std[group.start:group.stop].mean(), rtol=1e-4)


def test_same_seed_same_files_other_seed_other_files(dataset, tmp_path):
    out, _ = dataset
    again = tmp_path / "again"
    generate_synthetic_dataset(str(again), 6, seed=3)
    for folder in ("new_joint_vecs", "new_joints", "texts"):
        names = sorted(os.listdir(out / folder))
        assert names == sorted(os.listdir(again / folder))
        match, mismatch, errors = filecmp.cmpfiles(out / folder, again / folder, names, shallow=False)
        assert not mismatch and not errors
    for name in LAYOUT_FILES:
        assert filecmp.cmp(out / name, again / name, shallow=False)
    other = tmp_path / "other"
    generate_synthetic_dataset(str(other), 3, seed=4)
    assert not filecmp.cmp(out / "texts" / "000000.txt", other / "texts" / "000000.txt", shallow=False)


class _Unprintable:
    def __format__(self, spec):
        raise RuntimeError("stopped mid-write")


def test_split_file_is_written_whole_or_not_at_all(tmp_path):
    """A write stopped midway keeps the previous split file: a truncated one would load as a smaller split."""
    write_split_files(str(tmp_path), {"train": ["000000", "000001"]})
    assert (tmp_path / "train.txt").read_bytes() == b"000000\n000001\n"
    with pytest.raises(RuntimeError, match="stopped mid-write"):
        write_split_files(str(tmp_path), {"train": ["000002", _Unprintable()]})
    assert (tmp_path / "train.txt").read_bytes() == b"000000\n000001\n"
    assert os.listdir(tmp_path) == ["train.txt"]


@pytest.mark.parametrize("action", SINGLE_ACTIONS)
def test_captions_name_the_action(action):
    motion = _motion(action, 0)
    assert len(motion.captions) == 3
    for caption in motion.captions:
        assert any(w in caption for w in ACTION_WORDS[action]), (action, caption)
    side = next((s for s in ("left", "right", "both") if f"_{s}" in motion.label), None)
    if side and action in ("wave", "kick", "sidestep", "turn"):
        assert all(side in c or (action == "turn" and "around" in c) or "circle" in c or "spins" in c
                   for c in motion.captions), (motion.label, motion.captions)


def test_features_recover_the_generated_joints_after_normalisation():
    for action in ("walk", "jump", "walk_turn_walk"):
        motion = _motion(action, 1)
        # extract_features retargets to the target bone lengths: for this skeleton that is a uniform scaling
        leg = np.linalg.norm(motion.offsets[[5, 8]], axis=-1).sum()
        joints = _canonical(motion.joints * (T2M_TGT_BONE_LENGTHS[[5, 8]].sum() / leg))
        recovered = recover_from_ric(extract_features(motion.joints), 22)
        np.testing.assert_allclose(recovered, joints[:-1], atol=1e-4)


def test_rotations_drive_forward_kinematics_to_the_joints():
    motion = _motion("walk_while_wave", 2)
    trans = np.broadcast_to(motion.offsets, motion.joints.shape).copy()
    trans[:, 0] = motion.root_positions
    np.testing.assert_allclose(forward_kinematics(motion.local_rotations, trans, PARENTS), motion.joints, atol=1e-9)
    bones = np.linalg.norm(motion.joints[:, 1:] - motion.joints[:, PARENTS[1:]], axis=-1)
    assert np.ptp(bones, axis=0).max() < 1e-9  # a rigid skeleton


@pytest.mark.parametrize("action", ["walk", "run", "sidestep", "turn", "walk_turn_walk", "kick", "bow"])
def test_planted_feet_do_not_slide(action):
    # A deep bow pitches the pelvis forward, lifting the hips: the legs reached past their length, and the stance feet
    # rose 2 cm off the floor and slid 3 mm a frame, until the pelvis height cap placed the hips with that pitch.
    for seed in range(2 if action != "bow" else 12):
        motion = _motion(action, seed)
        for side, ankle in ((0, 7), (1, 8)):
            planted = motion.contacts[1:, side] & motion.contacts[:-1, side]
            step = np.linalg.norm(np.diff(motion.joints[:, ankle], axis=0), axis=-1)[planted]
            assert step.size and step.max() < 2e-3, (motion.label, side, step.max())
            if motion.contacts[:, side].all():
                assert np.ptp(motion.joints[:, ankle, 1]) < 1e-3, (motion.label, side)
        assert motion.joints[..., 1].min() > -0.01  # nothing sinks into the floor


def test_actions_move_the_body_as_captioned():
    wanted = {"walk", "walk_back", "turn", "sidestep", "wave", "kick", "jump", "sit"}
    seen, turns = set(), 0
    for seed in range(40):
        for action in ("walk", "turn", "sidestep", "wave", "kick", "jump", "sit"):
            motion = _motion(action, seed)
            label = motion.label
            key = label.split("_")[0] + ("_back" if "backward" in label else "")
            turns += label.startswith("turn_")
            if key in seen and not (label.startswith("turn_") and turns <= 6):
                continue
            joints = _canonical(motion.joints)
            seconds = len(joints) / 20.0
            if label.startswith("walk_forward") and "curve" not in label:
                assert joints[-1, 0, 2] / seconds > 0.35, label
            elif label.startswith("walk_backward"):
                assert joints[-1, 0, 2] / seconds < -0.25, label
            elif label.startswith("turn_"):
                angle, side = int(label.split("_")[1]), label.split("_")[2]
                f = _facing(joints[-1])
                turned = np.degrees(np.arctan2(f[0], f[2]))  # + is towards the body's left (+X)
                expected = (angle if side == "left" else -angle + 360) % 360
                assert abs(((turned - expected) + 180) % 360 - 180) < 25, (label, turned)
            elif label.startswith("sidestep"):
                shift = joints[-1, 0, 0] - joints[0, 0, 0]
                assert (shift > 0.3) if label.endswith("left") else (shift < -0.3), (label, shift)
            elif label.startswith("wave_"):
                for side, wrist, shoulder in (("left", 20, 16), ("right", 21, 17)):
                    raised = joints[:, wrist, 1].max() > joints[:, shoulder, 1].max() + 0.05
                    assert raised == (label.endswith(side) or label.endswith("both")), (label, side)
            elif label.startswith("kick_"):
                kicking, standing = (7, 8) if label.endswith("left") else (8, 7)
                assert joints[:, kicking, 1].max() > 0.3 and joints[:, standing, 1].max() < 0.15, label
            elif label.startswith("jump"):
                assert joints[:, [7, 8, 10, 11], 1].min(axis=1).max() > 0.08, label  # both feet off the ground
            elif label.startswith("sit"):
                assert joints[:, 0, 1].min() < 0.65 * joints[0, 0, 1], label
            seen.add(key)
        if wanted <= seen and turns > 6:
            break
    assert wanted <= seen


def test_different_actions_have_different_feature_statistics():
    def stats(action):
        feats = np.concatenate([extract_features(_motion(action, s).joints) for s in range(2)])
        return feats[:, 2].mean() * 20, np.ptp(feats[:, 3]), feats[:, 193:259].std()

    walk, bow, jump, run = stats("walk_stop"), stats("bow"), stats("jump"), stats("run")
    assert walk[0] > 0.3 and abs(bow[0]) < 0.05 and run[0] > 1.5  # forward root speed, m/s
    assert jump[1] > 2 * bow[1] and jump[1] > 0.15  # root height range
    assert run[2] > 2 * bow[2]  # joint velocities


def test_every_action_builds_and_unknown_action_fails():
    for i, action in enumerate(SYNTHETIC_ACTIONS):
        motion = _motion(action, 100 + i)
        assert motion.kind == action and 41 <= len(motion.joints) <= 197
        assert np.all(np.isfinite(motion.joints))
    with pytest.raises(ValueError, match="unknown synthetic action 'moonwalk'"):
        synthesize_motion(np.random.default_rng(0), "moonwalk")


@pytest.mark.parametrize("count", [1, 2])
def test_too_few_motions_for_every_split_is_refused_before_any_work(tmp_path, count):
    """One or two motions leave val and test empty, which only fails later in training or evaluation: the generator
    refuses them up front, naming the flag and the minimum, and writes nothing."""
    import prepare_data

    out = tmp_path / "Synthetic"
    with pytest.raises(ValueError, match=rf"--num_motions {count}: expected at least 3 .*train, val and test"):
        prepare_data.main(prepare_data.parse_args(["synthetic", "--out", str(out), "--num_motions", str(count)]))
    assert not out.exists()


def test_a_negative_seed_is_refused_by_name_before_a_finished_dataset_is_touched(tmp_path, capsys):
    """--seed -1 was accepted by the parser; the old statistics were deleted before numpy refused the seed at the
    first motion, leaving a finished dataset looking unfinished."""
    import prepare_data
    from utils.synthetic import generate_synthetic_dataset

    out = tmp_path / "Synthetic"
    generate_synthetic_dataset(str(out), 3)
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    with pytest.raises(SystemExit):
        prepare_data.parse_args(["synthetic", "--out", str(out), "--seed", "-1"])
    assert "argument --seed: expected a whole number in [0, 2^64), got '-1'" in capsys.readouterr().err
    with pytest.raises(ValueError, match=r"--seed -1: expected a whole number in \[0, 2\^64\)"):
        generate_synthetic_dataset(str(out), 3, seed=-1)
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == before


def test_prepare_data_synthetic_and_validate(tmp_path, capsys):
    import prepare_data

    out = tmp_path / "Synthetic"
    assert prepare_data.main(prepare_data.parse_args(["synthetic", "--out", str(out), "--num_motions", "3",
                                                      "--seed", "0"])) == 0
    assert "synthetic: 3 motions" in capsys.readouterr().out
    args = ["validate", "--dataset_name", "synthetic", "--data_root", str(out)]
    assert prepare_data.main(prepare_data.parse_args(args)) == 0
    assert "OK" in capsys.readouterr().out
    bad = out / "new_joint_vecs" / f"{read_split(str(out), 'test')[0]}.npy"
    np.save(bad, np.full((50, 263), np.nan, dtype=np.float32))
    assert prepare_data.main(prepare_data.parse_args(args)) == 1
    assert "FAILED" in capsys.readouterr().out
