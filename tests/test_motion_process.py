"""Motion representations: parity of the HumanML3D pipeline with the golden fixture, recovery on real samples,
the essential and 272-dim layouts, mirroring, resampling and input validation."""

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from utils import paramutil
from utils.dataset_specs import DATASETS
from utils.motion_process import (
    essential_dim,
    extract_features,
    extract_features_272,
    features_to_joints,
    humanml3d_dim,
    joints_fps_resample,
    normalize_joints_272,
    process_joints,
    recover_from_272,
    recover_from_ric,
    recover_root_rot_pos,
    swap_left_right,
    to_essential,
    uniform_skeleton,
)
from utils.quaternion import (
    cont6d_to_matrix,
    matrix_to_quaternion,
    qbetween,
    qfix,
    qinv,
    qmul,
    qnormalize,
    qrot,
    quaternion_to_cont6d,
    quaternion_to_matrix,
    rot6d_to_matrix,
    yaw_quaternion,
)
from utils.skeleton import Skeleton

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "humanml3d_features"
DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
H3D_SAMPLES = DATA / "humanml3d-samples"

MANIFEST = json.loads((FIXTURE / "manifest.json").read_text())
QUANTITIES = ("uniform_positions", "global_positions", "ric_positions", "features", "recovered_joints")


@pytest.fixture(scope="module")
def io():
    with np.load(FIXTURE / "io.npz", allow_pickle=False) as data:
        return {k: data[k] for k in data.files}


def _cases() -> list[tuple[str, str, str]]:
    """(input key, skeleton, output suffix) for every joint sequence the manifest feeds to process_file."""
    cases = []
    for key in MANIFEST["inputs"]:
        match = re.fullmatch(r"([a-z0-9]+)_joints(_mirrored)?", key)
        if match:
            cases.append((key, match.group(1), match.group(2) or ""))
    return cases


CASES = _cases()


def _rotate_yaw(joints: np.ndarray, angle: float, shift: np.ndarray) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    rot = np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])
    return joints @ rot.T + shift


# ---------------------------------------------------------------------------------------------------------------------
# Tolerances from the manifest
# ---------------------------------------------------------------------------------------------------------------------

_RULE = re.compile(r"(?P<key>[A-Za-z0-9_]+)(?:\[:, *(?P<start>\d+):(?P<stop>\d+)\])?(?P<rest> \(all other columns\))?")


def _parse_targets(text: str) -> list[tuple[str, slice | None, bool]]:
    """'a[:, 3:5], b (all other columns), c' -> [(key, column slice or None, applies to the other columns)]."""
    parts = re.split(r",\s*(?![^\[]*\])", text)
    targets = []
    for part in parts:
        match = _RULE.fullmatch(part.strip())
        assert match, f"manifest tolerance entry not understood: {part!r} in {text!r}"
        cols = slice(int(match["start"]), int(match["stop"])) if match["start"] else None
        targets.append((match["key"], cols, bool(match["rest"])))
    return targets


def _tolerance_arrays(key: str, shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-element atol, rtol and exact mask for output ``key`` from ``tolerance.recommended``."""
    rec = MANIFEST["tolerance"]["recommended"]
    atol = np.full(shape, rec["default"]["atol"], dtype=np.float64)
    rtol = np.full(shape, rec["default"]["rtol"], dtype=np.float64)
    exact = np.zeros(shape, dtype=bool)
    rules = [(target, tol) for text, tol in rec.get("per_output", {}).items() for target in _parse_targets(text)]
    rules += [(target, None) for text in rec.get("exact", []) for target in _parse_targets(text)]
    rules = [(cols, rest, tol) for (name, cols, rest), tol in rules if name == key]
    explicit = np.zeros(shape[-1], dtype=bool)
    for cols, _, _ in rules:
        if cols is not None:
            explicit[cols] = True
    # Whole-array rules first, then "all other columns", then explicit column ranges, so the narrowest rule wins.
    for stage in ("whole", "rest", "cols"):
        for cols, rest, tol in rules:
            kind = "rest" if rest else ("cols" if cols is not None else "whole")
            if kind != stage:
                continue
            mask = np.zeros(shape, dtype=bool)
            if kind == "whole":
                mask[...] = True
            elif kind == "rest":
                mask[..., ~explicit] = True
            else:
                mask[..., cols] = True
            if tol is None:
                exact |= mask
            else:
                atol[mask], rtol[mask] = tol["atol"], tol["rtol"]
    return atol, rtol, exact


def _assert_matches_manifest(key: str, got: np.ndarray, expected: np.ndarray) -> None:
    assert got.shape == expected.shape, f"{key}: shape {got.shape} != {expected.shape}"
    atol, rtol, exact = _tolerance_arrays(key, expected.shape)
    got64, exp64 = got.astype(np.float64), expected.astype(np.float64)
    assert np.array_equal(got64[exact], exp64[exact]), f"{key}: exact entries differ"
    err = np.abs(got64 - exp64)
    bad = (err > atol + rtol * np.abs(exp64)) & ~exact
    assert not bad.any(), (f"{key}: {int(bad.sum())} entries out of tolerance, worst {err[bad].max():.3g} "
                           f"at {np.argwhere(bad)[0].tolist()}")


def test_tolerance_parsing_covers_contacts_and_kit_columns():
    atol, _, exact = _tolerance_arrays("kit_features", (3, 251))
    assert exact[:, 247:251].all() and not exact[:, :247].any()
    assert np.allclose(atol[:, 64:184], 5e-5)
    assert np.allclose(atol[:, :64], 5e-3) and np.allclose(atol[:, 184:247], 5e-3)
    atol, _, exact = _tolerance_arrays("t2m_features", (3, 263))
    assert exact[:, 259:].all() and np.allclose(atol[:, 67:193], 5e-5) and np.allclose(atol[:, :67], 1e-5)


# ---------------------------------------------------------------------------------------------------------------------
# Settings and constants
# ---------------------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", sorted(MANIFEST["settings"]))
def test_skeleton_settings_match_manifest(name):
    expected = MANIFEST["settings"][name]
    settings = paramutil.get_skeleton_settings(name)
    assert settings.joints_num == expected["joints_num"]
    assert list(settings.face_joint_indx) == expected["face_joint_indx"]
    assert (settings.r_hip, settings.l_hip) == (expected["r_hip"], expected["l_hip"])
    assert list(settings.fid_l) == expected["fid_l"] and list(settings.fid_r) == expected["fid_r"]
    assert (settings.l_idx1, settings.l_idx2) == (expected["l_idx1"], expected["l_idx2"])
    assert settings.feet_thre == pytest.approx(expected["feet_thre"])
    assert [list(c) for c in settings.kinematic_chain] == expected["kinematic_chain"]
    raw = getattr(paramutil, expected["raw_offsets"].split(".")[-1])
    assert raw is settings.raw_offsets and raw.shape == (settings.joints_num, 3)
    assert np.allclose(np.linalg.norm(raw[1:], axis=-1), 1.0) and not raw[0].any()


def test_default_target_skeleton_is_official():
    skel = Skeleton(paramutil.t2m_raw_offsets, paramutil.t2m_kinematic_chain)
    assert np.allclose(np.linalg.norm(paramutil.T2M_TGT_OFFSETS, axis=-1), paramutil.T2M_TGT_BONE_LENGTHS)
    example = H3D_SAMPLES / "skeleton_example_h3d.npy"
    if not example.is_file():
        pytest.skip(f"HumanML3D target skeleton example not found: {example}")
    offsets = skel.get_offsets_joints(np.load(example)[:22])
    assert np.allclose(offsets, paramutil.T2M_TGT_OFFSETS, atol=1e-7)


def test_public_fixture_uses_default_target(io):
    if MANIFEST.get("set") != "public":
        pytest.skip("the built-in target skeleton is the official one; only the public fixture set uses it")
    assert np.array_equal(io["t2m_tgt_offsets"], paramutil.T2M_TGT_OFFSETS)
    _assert_matches_manifest("t2m_features", extract_features(io["t2m_joints"]), io["t2m_features"])


# ---------------------------------------------------------------------------------------------------------------------
# Parity with the reference pipeline
# ---------------------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("input_key,skeleton,suffix", CASES)
def test_process_joints_parity(io, input_key, skeleton, suffix):
    settings = MANIFEST["settings"][skeleton]
    result = process_joints(io[input_key], io[f"{skeleton}_tgt_offsets"], skeleton=skeleton,
                            feet_thre=settings["feet_thre"])
    computed = {
        "uniform_positions": result.uniform_positions,
        "global_positions": result.global_positions,
        "ric_positions": result.ric_positions,
        "features": result.features,
        "recovered_joints": recover_from_ric(result.features, settings["joints_num"]),
    }
    keys = [f"{skeleton}_{q}{suffix}" for q in QUANTITIES if f"{skeleton}_{q}{suffix}" in MANIFEST["outputs"]]
    assert f"{skeleton}_features{suffix}" in keys
    for q in QUANTITIES:
        key = f"{skeleton}_{q}{suffix}"
        if key in MANIFEST["outputs"]:
            _assert_matches_manifest(key, computed[q], io[key])
    assert result.features.dtype == np.float32
    assert result.features.shape == (len(io[input_key]) - 1, humanml3d_dim(settings["joints_num"]))


def test_every_manifest_output_is_checked():
    covered = {f"{sk}_{q}{suffix}" for _, sk, suffix in CASES for q in QUANTITIES}
    assert set(MANIFEST["outputs"]) <= covered, sorted(set(MANIFEST["outputs"]) - covered)


@pytest.mark.parametrize("input_key,skeleton,suffix", CASES)
def test_recover_from_ric_on_reference_features(io, input_key, skeleton, suffix):
    joints_num = MANIFEST["settings"][skeleton]["joints_num"]
    key = f"{skeleton}_recovered_joints{suffix}"
    features = io[f"{skeleton}_features{suffix}"].astype(np.float32)
    _assert_matches_manifest(key, recover_from_ric(features[None], joints_num)[0], io[key])


def test_mirrored_input_is_swap_left_right(io):
    if "t2m_joints_mirrored" not in io:
        pytest.skip("fixture has no mirrored case")
    assert np.array_equal(swap_left_right(io["t2m_joints"]), io["t2m_joints_mirrored"])


@pytest.mark.parametrize("skeleton", ["t2m", "kit"])
def test_features_invariant_to_yaw_and_translation(io, skeleton):
    joints = io[f"{skeleton}_joints"]
    offsets = io[f"{skeleton}_tgt_offsets"]
    scale = np.abs(joints).max()
    moved = _rotate_yaw(joints, 2.1, np.array([0.7, 0.3, -1.9]) * scale)
    a = extract_features(joints, offsets, skeleton)
    b = extract_features(moved, offsets, skeleton)
    assert np.array_equal(a[:, -4:], b[:, -4:])
    assert np.allclose(a, b, atol=1e-5 * max(scale, 1.0))


def test_uniform_skeleton_has_target_bone_lengths(io):
    skel = Skeleton(paramutil.t2m_raw_offsets, paramutil.t2m_kinematic_chain)
    offsets = io["t2m_tgt_offsets"].astype(np.float64)
    retargeted = uniform_skeleton(io["t2m_joints"], offsets)
    assert np.allclose(skel.bone_lengths(retargeted), np.linalg.norm(offsets, axis=-1), atol=1e-9)
    # Bone directions are those of the input.
    parents = [max(p, 0) for p in skel.parents]
    src = io["t2m_joints"] - io["t2m_joints"][:, parents]
    dst = retargeted - retargeted[:, parents]
    cos = (src * dst).sum(-1)[:, 1:] / (np.linalg.norm(src, axis=-1) * np.linalg.norm(dst, axis=-1))[:, 1:]
    assert np.allclose(cos, 1.0, atol=1e-9)


def test_skeleton_fk_inverts_ik(io):
    skel = Skeleton(paramutil.t2m_raw_offsets, paramutil.t2m_kinematic_chain)
    joints = io["t2m_joints"]
    # The synthetic input is FK on fixed bone lengths, so its frame-0 offsets hold for every frame.
    skel.get_offsets_joints(joints[0])
    for smooth in (False, True):
        quat = skel.inverse_kinematics(joints, paramutil.SKELETONS["t2m"].face_joint_indx, smooth_forward=smooth)
        assert np.allclose(quat[0, 0], [1, 0, 0, 0])
        assert np.allclose(skel.forward_kinematics(quat, joints[:, 0]), joints, atol=1e-9)



@pytest.mark.filterwarnings("error::RuntimeWarning")
def test_skeleton_ik_refuses_degenerate_poses_without_nan_warnings(io):
    skel = Skeleton(paramutil.t2m_raw_offsets, paramutil.t2m_kinematic_chain)
    face = paramutil.SKELETONS["t2m"].face_joint_indx
    collapsed = np.zeros_like(io["t2m_joints"][:5])
    with pytest.raises(ValueError, match="bone of joint 1 has zero"):
        skel.inverse_kinematics(collapsed, face)
    # Hips and shoulders whose across vectors cancel: the bones are fine, the facing is undefined in frame 2.
    joints = io["t2m_joints"][:5].copy()
    r_hip, l_hip, r_shoulder, l_shoulder = face
    joints[2, r_shoulder] = joints[2, l_shoulder] - (joints[2, l_hip] - joints[2, r_hip])
    with pytest.raises(ValueError, match=r"frame 2: hips and shoulders give no across direction"):
        skel.facing_rotation(joints, face)


# ---------------------------------------------------------------------------------------------------------------------
# Recovery: numpy / torch, batches, essential subset, real samples
# ---------------------------------------------------------------------------------------------------------------------

def test_recover_from_ric_numpy_torch_batched(io):
    features = io["t2m_features"]
    single = recover_from_ric(features, 22)
    assert isinstance(single, np.ndarray) and single.dtype == np.float32 and single.shape == (len(features), 22, 3)
    as64 = recover_from_ric(features.astype(np.float64), 22)
    assert as64.dtype == np.float64 and np.allclose(as64, single, atol=1e-5)
    tensor = recover_from_ric(torch.from_numpy(features), 22)
    assert isinstance(tensor, torch.Tensor) and tensor.dtype == torch.float32
    assert np.allclose(tensor.numpy(), single, atol=1e-6)

    windows = np.stack([features[:20], features[5:25], features[-20:]])
    batched = recover_from_ric(torch.from_numpy(windows).reshape(3, 1, 20, -1), 22)
    assert batched.shape == (3, 1, 20, 22, 3)
    for i, window in enumerate(windows):
        assert np.allclose(batched[i, 0].numpy(), recover_from_ric(window, 22), atol=1e-6)

    r_rot, r_pos = recover_root_rot_pos(torch.from_numpy(windows))
    assert r_rot.shape == (3, 20, 4) and r_pos.shape == (3, 20, 3)
    assert np.allclose(r_pos.numpy(), recover_from_ric(windows, 22)[..., 0, :], atol=1e-6)
    assert np.allclose(np.linalg.norm(r_rot.numpy(), axis=-1), 1.0, atol=1e-6)


def test_recover_from_ric_is_differentiable(io):
    features = torch.from_numpy(io["t2m_features"][None].astype(np.float64)).requires_grad_(True)
    recover_from_ric(features, 22).square().sum().backward()
    grad = features.grad[0]
    assert torch.isfinite(grad).all() and grad[:, :67].abs().sum() > 0 and grad[:, 67:].abs().sum() == 0


@pytest.mark.parametrize("skeleton", ["t2m", "kit"])
def test_essential_recovery_equals_full(io, skeleton):
    joints_num = MANIFEST["settings"][skeleton]["joints_num"]
    features = io[f"{skeleton}_features"]
    essential = to_essential(features, joints_num)
    assert essential.shape == (len(features), essential_dim(joints_num))
    assert np.array_equal(to_essential(essential, joints_num), essential)
    assert np.array_equal(recover_from_ric(essential, joints_num), recover_from_ric(features, joints_num))
    spec = DATASETS["t2m_67"] if joints_num == 22 else None
    if spec is not None:
        assert np.array_equal(features_to_joints(essential, spec), recover_from_ric(features, 22))


def _real_pairs() -> list[tuple[Path, Path]]:
    vecs = H3D_SAMPLES / "new_joint_vecs"
    if not vecs.is_dir():
        pytest.skip(f"HumanML3D samples not found: {vecs}")
    pairs = [(f, H3D_SAMPLES / "new_joints" / f.name) for f in sorted(vecs.glob("*.npy"))]
    pairs = [(f, j) for f, j in pairs if j.is_file()]
    if not pairs:
        pytest.skip(f"no feature file in {vecs} has a matching new_joints file")
    return pairs


def test_recover_from_ric_matches_real_new_joints():
    for features_path, joints_path in _real_pairs():
        features, joints = np.load(features_path), np.load(joints_path)
        recovered = recover_from_ric(features, 22)
        assert recovered.shape == joints.shape, features_path.name
        assert np.allclose(recovered, joints, atol=1e-5, rtol=0), features_path.name
        assert np.allclose(recover_from_ric(to_essential(features, 22), 22), joints, atol=1e-5, rtol=0)
        assert np.allclose(features_to_joints(features, DATASETS["t2m"]), joints, atol=1e-5, rtol=0)


def test_real_new_joints_have_default_target_bones():
    skel = Skeleton(paramutil.t2m_raw_offsets, paramutil.t2m_kinematic_chain)
    for _, joints_path in _real_pairs():
        lengths = skel.bone_lengths(np.load(joints_path).astype(np.float64))
        assert np.allclose(lengths, paramutil.T2M_TGT_BONE_LENGTHS, atol=1e-4), joints_path.name


# ---------------------------------------------------------------------------------------------------------------------
# 272-dim representation
# ---------------------------------------------------------------------------------------------------------------------

def _sequences_272(io) -> list[np.ndarray]:
    sequences = [io["t2m_joints"], io["t2m_uniform_positions"]]
    pairs = _real_pairs() if (H3D_SAMPLES / "new_joint_vecs").is_dir() else []
    sequences += [np.load(j).astype(np.float64) for _, j in pairs[:2]]
    return sequences


def test_272_round_trip(io):
    for joints in _sequences_272(io):
        features = extract_features_272(joints)
        frames = len(joints)
        assert features.shape == (frames, 272) and features.dtype == np.float32
        assert np.allclose(features[0, :2], 0) and np.allclose(features[0, 2:8], [1, 0, 0, 0, 1, 0])
        assert np.allclose(features[0, 74:140], 0)
        target = normalize_joints_272(joints)
        assert np.allclose(recover_from_272(features.astype(np.float64)), target, atol=1e-5, rtol=0)
        assert np.allclose(recover_from_272(features), target, atol=1e-4, rtol=0)
        assert np.allclose(features_to_joints(features, DATASETS["motionmillion"]), target, atol=1e-4, rtol=0)


def test_normalize_joints_272_is_rigid_and_canonical(io):
    joints = io["t2m_joints"]
    normalised = normalize_joints_272(joints)
    assert normalised[..., 1].min() == pytest.approx(0.0, abs=1e-12)
    assert np.allclose(normalised[0, 0, [0, 2]], 0.0, atol=1e-12)
    face = paramutil.SKELETONS["t2m"].face_joint_indx
    across = normalised[0, face[0]] - normalised[0, face[1]] + normalised[0, face[2]] - normalised[0, face[3]]
    forward = np.cross([0.0, 1.0, 0.0], across)
    assert forward[2] > 0 and abs(forward[0]) < 1e-9 * np.linalg.norm(forward)
    flat_in, flat_out = joints.reshape(-1, 3), normalised.reshape(-1, 3)
    assert np.allclose(np.linalg.norm(flat_in - flat_in[:1], axis=-1), np.linalg.norm(flat_out - flat_out[:1], axis=-1))
    assert np.allclose(flat_out[:, 1] - flat_in[:, 1], flat_out[0, 1] - flat_in[0, 1])


def test_272_blocks_are_consistent(io):
    joints = io["t2m_joints"]
    features = extract_features_272(joints).astype(np.float64)
    frames = len(joints)
    local = features[:, 8:74].reshape(frames, 22, 3)
    # Heading-free positions: root at the xz origin, velocities are their differences.
    assert np.allclose(local[:, 0, [0, 2]], 0, atol=1e-6)
    assert np.allclose(features[1:, 74:140], (local[1:] - local[:-1]).reshape(frames - 1, -1), atol=1e-6)
    # The rotation block drives FK on the clip's own bones back to the heading-free positions.
    rotations = rot6d_to_matrix(features[:, 140:].reshape(frames, 22, 6))
    assert np.allclose(rotations[:, 0], np.eye(3), atol=1e-6)
    skel = Skeleton(paramutil.t2m_raw_offsets, paramutil.t2m_kinematic_chain)
    offsets = skel.get_offsets_joints(joints[0])
    fk = skel.forward_kinematics(matrix_to_quaternion(rotations), local[:, 0], offsets=offsets)
    assert np.allclose(fk, local, atol=1e-5)


def test_272_invariant_to_yaw_and_translation(io):
    joints = io["t2m_joints"]
    moved = _rotate_yaw(joints, -2.5, np.array([3.0, 0.4, -1.0]))
    assert np.allclose(extract_features_272(joints), extract_features_272(moved), atol=1e-5)


def test_272_batched_numpy_torch(io):
    features = extract_features_272(io["t2m_joints"])
    windows = np.stack([features[:30], features[10:40]])
    batched = recover_from_272(torch.from_numpy(windows))
    assert isinstance(batched, torch.Tensor) and batched.dtype == torch.float32 and batched.shape == (2, 30, 22, 3)
    for i, window in enumerate(windows):
        single = recover_from_272(window.astype(np.float64))
        assert single.dtype == np.float64
        assert np.allclose(batched[i].numpy(), single, atol=1e-5)


# ---------------------------------------------------------------------------------------------------------------------
# Dispatch, mirroring, resampling
# ---------------------------------------------------------------------------------------------------------------------

def test_features_to_joints_dispatch(io):
    t2m = io["t2m_features"]
    assert np.array_equal(features_to_joints(t2m, DATASETS["t2m"]), recover_from_ric(t2m, 22))
    kit = io["kit_features"]
    assert np.array_equal(features_to_joints(kit, DATASETS["kit"]), recover_from_ric(kit, 21))
    with pytest.raises(ValueError, match="SMPL-X"):
        features_to_joints(np.zeros((4, 330), np.float32), DATASETS["beatx"])
    with pytest.raises(ValueError, match=r"\(\.\.\., T, 263\)"):
        features_to_joints(np.zeros((4, 251), np.float32), DATASETS["t2m"])
    with pytest.raises(ValueError, match=r"\(\.\.\., T, 272\)"):
        features_to_joints(np.zeros((4, 263), np.float32), DATASETS["motionmillion"])


@pytest.mark.parametrize("joints_num", [22, 21, 52])
def test_swap_left_right(joints_num):
    joints = np.random.default_rng(joints_num).normal(size=(5, joints_num, 3))
    mirrored = swap_left_right(joints)
    assert np.array_equal(swap_left_right(mirrored), joints)
    if joints_num == 21:
        pairs = [(5, 8), (11, 16), (15, 20)]
    else:
        pairs = [(1, 2), (16, 17), (20, 21)] + ([(22, 43), (30, 51)] if joints_num == 52 else [])
    for a, b in pairs:
        assert np.array_equal(mirrored[:, a], joints[:, b] * [-1, 1, 1])
    assert np.array_equal(mirrored[:, 0], joints[:, 0] * [-1, 1, 1])


def test_joints_fps_resample():
    times = np.arange(31) / 30.0
    joints = np.stack([times, 2 * times + 1, -times], axis=-1)[:, None, :].repeat(4, axis=1)
    resampled = joints_fps_resample(joints, 30, 20)
    assert resampled.shape == (21, 4, 3)
    new_times = np.arange(21) / 20.0
    assert np.allclose(resampled[:, 2], np.stack([new_times, 2 * new_times + 1, -new_times], -1))
    up = joints_fps_resample(joints[:3], 30, 120)
    assert up.shape == (9, 4, 3) and np.allclose(up[4], joints[1])
    assert np.allclose(up[1], 0.75 * joints[0] + 0.25 * joints[1])
    assert np.array_equal(joints_fps_resample(joints, 30, 30), joints)
    assert joints_fps_resample(joints.astype(np.float32), 30, 20).dtype == np.float32
    with pytest.raises(ValueError, match="positive"):
        joints_fps_resample(joints, 0, 20)


# ---------------------------------------------------------------------------------------------------------------------
# Quaternion helpers
# ---------------------------------------------------------------------------------------------------------------------

def test_quaternion_identities():
    rng = np.random.default_rng(0)
    q, r = qnormalize(rng.normal(size=(50, 4))), qnormalize(rng.normal(size=(50, 4)))
    v = rng.normal(size=(50, 3))
    mq = quaternion_to_matrix(q)
    assert np.allclose(qrot(q, v), (mq @ v[..., None])[..., 0])
    assert np.allclose(quaternion_to_matrix(qmul(q, r)), mq @ quaternion_to_matrix(r))
    assert np.allclose(qrot(qinv(q), qrot(q, v)), v)
    canonical = np.where(q[:, :1] < 0, -q, q)
    assert np.allclose(matrix_to_quaternion(mq), canonical)
    assert np.allclose(cont6d_to_matrix(quaternion_to_cont6d(q)), mq)
    assert np.allclose(quaternion_to_cont6d(q)[:, :3], mq[:, :, 0])
    assert np.allclose(yaw_quaternion(np.array([np.pi / 2])), [[np.sqrt(0.5), 0, np.sqrt(0.5), 0]])
    torch_q = quaternion_to_matrix(torch.from_numpy(q))
    assert isinstance(torch_q, torch.Tensor) and np.allclose(torch_q.numpy(), mq)


def test_quaternion_helpers_take_keyword_arguments():
    rng = np.random.default_rng(3)
    q, v = qnormalize(rng.normal(size=(4, 4))), rng.normal(size=(4, 3))
    expected = qrot(q, v)
    assert np.array_equal(qrot(q=q, v=v), expected)
    assert np.array_equal(qrot(q, v=v), expected)
    assert torch.equal(qrot(torch.from_numpy(q), v=torch.from_numpy(v)), torch.from_numpy(expected))
    assert np.array_equal(qbetween(v0=v, v1=v[::-1]), qbetween(v, v[::-1]))


def test_qbetween_including_opposite_directions():
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(50, 3)), rng.normal(size=(50, 3))
    rotated = qrot(qbetween(a, b), a)
    assert np.allclose(rotated / np.linalg.norm(rotated, axis=-1, keepdims=True),
                       b / np.linalg.norm(b, axis=-1, keepdims=True))
    opposite = qbetween(np.array([[0.0, 1.0, 0.0], [1.0, 2.0, 3.0]]), np.array([[0.0, -2.0, 0.0], [-1.0, -2.0, -3.0]]))
    assert np.all(np.isfinite(opposite))
    assert np.allclose(qrot(opposite, np.array([[0.0, 1.0, 0.0], [1.0, 2.0, 3.0]])), [[0, -1, 0], [-1, -2, -3]])


def test_qfix_removes_sign_flips():
    q = qnormalize(np.random.default_rng(2).normal(size=(1, 3, 4))).repeat(6, axis=0)
    flipped = q * np.array([1, -1, -1, 1, -1, 1])[:, None, None]
    assert np.allclose(qfix(flipped), q * flipped[:1, :, :1] / q[:1, :, :1])


# ---------------------------------------------------------------------------------------------------------------------
# Bad input
# ---------------------------------------------------------------------------------------------------------------------

def test_bad_input_is_rejected(io):
    joints = io["t2m_joints"]
    with pytest.raises(ValueError, match=r"\(T, 22, 3\)"):
        extract_features(joints[:, :21])
    with pytest.raises(ValueError, match=r"\(T, 21, 3\)"):
        extract_features(joints, skeleton="kit", tgt_offsets=io["kit_tgt_offsets"])
    with pytest.raises(ValueError, match=r"\(T, 22, 3\)"):
        extract_features(joints[:1])
    with pytest.raises(ValueError, match=r"tgt_offsets of shape \(22, 3\)"):
        extract_features(joints, tgt_offsets=np.zeros((21, 3)))
    with pytest.raises(ValueError, match="tgt_offsets"):
        extract_features(io["kit_joints"], skeleton="kit")
    with pytest.raises(ValueError, match="unknown skeleton"):
        extract_features(joints, skeleton="smpl")
    with pytest.raises(ValueError, match="finite"):
        extract_features(np.where(np.arange(22)[None, :, None] == 3, np.nan, joints))
    with pytest.raises(ValueError, match=r"\(\.\.\., T, 263\) or \(\.\.\., T, 67\)"):
        recover_from_ric(io["t2m_features"][:, :262], 22)
    with pytest.raises(ValueError, match=r"\(\.\.\., T, 251\) or \(\.\.\., T, 64\)"):
        recover_from_ric(io["t2m_features"], 21)
    with pytest.raises(ValueError, match=r"\(\.\.\., T, 263\)"):
        recover_from_ric(io["t2m_features"][0], 22)
    with pytest.raises(ValueError, match=r"\(\.\.\., T, 272\)"):
        recover_from_272(np.zeros((3, 271)))
    with pytest.raises(ValueError, match=r"\(T, 22, 3\)"):
        extract_features_272(io["kit_joints"])
    with pytest.raises(ValueError, match=r"\(\.\.\., T, 263\)"):
        to_essential(io["t2m_features"][:, :100], 22)
    with pytest.raises(ValueError, match=r"J in \(22, 52, 21\)"):
        swap_left_right(joints[:, :20])
    collapsed = joints.copy()
    collapsed[:, 4] = collapsed[:, 1]
    with pytest.raises(ValueError, match="joint 4"):
        extract_features(collapsed)


def test_bad_target_skeleton_is_named(io):
    joints = io["t2m_joints"]
    offsets = paramutil.T2M_TGT_OFFSETS.astype(np.float64)
    with_nan = offsets.copy()
    with_nan[4, 1] = np.nan
    zero_bone = offsets.copy()
    zero_bone[5] = 0.0
    for fn in (extract_features, uniform_skeleton, process_joints):
        with pytest.raises(ValueError, match=r"tgt_offsets.*finite"):
            fn(joints, with_nan)
        with pytest.raises(ValueError, match=r"tgt_offsets.*joint 5"):
            fn(joints, zero_bone)


def test_feet_threshold_must_be_positive(io):
    joints = io["t2m_joints"]
    for bad in (float("nan"), 0.0, -0.002, float("inf")):
        with pytest.raises(ValueError, match=r"feet_thre"):
            process_joints(joints, feet_thre=bad)
    # A larger threshold marks more contacts (the rule is squared displacement < feet_thre).
    few, many = extract_features(joints, feet_thre=1e-4), extract_features(joints, feet_thre=1.0)
    assert many[:, -4:].all() and few[:, -4:].sum() <= extract_features(joints)[:, -4:].sum()
