"""SMPL export: inverse kinematics against the synthetic body model of test_amass.py, AMASS layout, read back by the
AMASS import, prepare_data.py export_smpl and sample.py --smpl."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch
from test_amass import PARENTS, _body_model, _body_models
from test_generation import make_runs

import sample
from options.config import parse_with_config
from options.eval_generator_options import get_sample_parser
from utils.amass_import import BodyModels, read_amass_clip
from utils.smpl_body import Z_UP_TO_Y_UP, axis_angle_to_matrix, load_body_model, smpl_joints, z_up_to_y_up
from utils.smpl_export import joints_to_smpl, write_smpl, y_up_to_z_up

LEAVES = [j for j in range(22) if j not in PARENTS]  # feet, head, wrists
SINGLE_CHILD = [j for j in range(22) if list(PARENTS).count(j) == 1]
MULTI_CHILD = [j for j in range(22) if list(PARENTS).count(j) > 1]  # pelvis, spine3


def _global_rotations(poses: np.ndarray) -> np.ndarray:
    """(T, 22, 3, 3) global rotations of the body joints of poses (T, >= 66)."""
    rotations = axis_angle_to_matrix(poses[:, :66].reshape(len(poses), 22, 3))
    for j in range(1, 22):
        rotations[:, j] = rotations[:, PARENTS[j]] @ rotations[:, j]
    return rotations


def _rotvecs(rng: np.random.Generator, count: int, max_angle: float = 2.5) -> np.ndarray:
    """Random axis-angle vectors (count, 3) with angles below ``max_angle`` (< pi: one axis-angle per rotation)."""
    axes = rng.normal(size=(count, 3))
    return axes / np.linalg.norm(axes, axis=-1, keepdims=True) * rng.uniform(0.05, max_angle, (count, 1))


def _random_motion(rng: np.random.Generator, frames: int, width: int = 156) -> tuple[np.ndarray, np.ndarray]:
    poses = rng.normal(0, 0.5, (frames, width))
    poses[:, :66] = _rotvecs(rng, frames * 22).reshape(frames, 66)
    return poses, rng.normal(0, 1, (frames, 3))


@pytest.fixture(scope="module")
def body(tmp_path_factory):
    return load_body_model(_body_model(tmp_path_factory.mktemp("smpl") / "model.npz"))


def test_y_up_to_z_up_inverts_z_up_to_y_up():
    assert np.allclose(Z_UP_TO_Y_UP @ Z_UP_TO_Y_UP, np.eye(3)) and np.isclose(np.linalg.det(Z_UP_TO_Y_UP), 1.0)
    points = np.random.default_rng(0).normal(size=(4, 5, 3))
    assert np.allclose(z_up_to_y_up(y_up_to_z_up(points)), points)
    assert np.allclose(y_up_to_z_up(points), z_up_to_y_up(points))


def test_round_trip_gives_the_joints_and_the_rotations_they_fix(body):
    """Random poses -> joints -> parameters -> joints is exact; the root's rotation and translation come back, and
    the global rotations of the joints with several children (which their children's positions determine)."""
    rng = np.random.default_rng(1)
    poses, trans = _random_motion(rng, 40)
    betas = rng.normal(0, 1, 10)
    joints = z_up_to_y_up(smpl_joints(body, poses, trans, betas))
    fit = joints_to_smpl(joints, body, betas)
    assert fit.poses.shape == (40, 66) and fit.trans.shape == (40, 3)
    assert np.abs(z_up_to_y_up(smpl_joints(body, fit.poses, fit.trans, betas)) - joints).max() < 1e-6
    assert fit.report.max_error_mm < 1e-6 and fit.report.mean_error_mm <= fit.report.max_error_mm
    assert np.abs(fit.poses[:, :3] - poses[:, :3]).max() < 1e-8
    assert np.abs(fit.trans - trans).max() < 1e-10
    recovered, original = _global_rotations(fit.poses), _global_rotations(poses)
    assert np.abs(recovered[:, MULTI_CHILD] - original[:, MULTI_CHILD]).max() < 1e-8
    assert np.abs(fit.poses.reshape(40, 22, 3)[:, LEAVES]).max() == 0.0  # leaves: identity


def test_untwisted_poses_come_back_parameter_for_parameter(body):
    """Twist about a single child's bone moves no joint; without it every non-leaf rotation is recovered."""
    rng = np.random.default_rng(2)
    frames = 20
    poses, trans = _random_motion(rng, frames)
    rest = body.rest_joints(np.zeros(10))
    for j in SINGLE_CHILD:
        bone = rest[PARENTS.index(j)] - rest[j]
        axes = np.cross(bone, rng.normal(size=(frames, 3)))  # perpendicular to the bone: a pure swing
        axes /= np.linalg.norm(axes, axis=-1, keepdims=True)
        poses[:, 3 * j:3 * j + 3] = axes * rng.uniform(-2.5, 2.5, (frames, 1))
    fit = joints_to_smpl(z_up_to_y_up(smpl_joints(body, poses, trans, np.zeros(10))), body)
    non_leaf = [j for j in range(22) if j not in LEAVES]
    assert np.abs(fit.poses.reshape(frames, 22, 3)[:, non_leaf] - poses[:, :66].reshape(frames, 22, 3)[:, non_leaf]
                  ).max() < 1e-7


def test_other_bone_lengths_keep_the_bone_directions(body, tmp_path):
    """A motion with longer bones (scaled, or another body shape): the root stays where it is, every bone keeps its
    direction (single-child bones exactly), and the fit report measures the difference in length."""
    rng = np.random.default_rng(3)
    poses, trans = _random_motion(rng, 10)
    joints = z_up_to_y_up(smpl_joints(body, poses, trans, np.zeros(10)))

    def bones(j: np.ndarray) -> np.ndarray:
        b = j[:, 1:] - j[:, list(PARENTS[1:])]
        return b / np.linalg.norm(b, axis=-1, keepdims=True)

    for other, single_child_only in ((joints * 1.2, False),
                                     (z_up_to_y_up(smpl_joints(body, poses, trans, rng.normal(0, 1, 10))), True)):
        fit = joints_to_smpl(other, body)
        fitted = z_up_to_y_up(smpl_joints(body, fit.poses, fit.trans, np.zeros(10)))
        assert np.abs(fitted[:, 0] - other[:, 0]).max() < 1e-10
        cosine = np.sum(bones(fitted) * bones(other), axis=-1)
        children = [c - 1 for c in range(1, 22) if not single_child_only or PARENTS[c] in SINGLE_CHILD]
        assert cosine[:, children].min() > 1 - 1e-9
        assert cosine.min() > 0.95  # a best fit of several children shares out their differences
        assert fit.report.mean_error_mm > 5.0 and fit.report.max_error_mm >= fit.report.mean_error_mm
        error = 1000 * np.linalg.norm(fitted - other, axis=-1)
        assert np.isclose(fit.report.mean_error_mm, error.mean()) and np.isclose(fit.report.max_error_mm, error.max())


def test_coincident_joints_and_folded_bones_stay_finite(body):
    """All joints at one point, and knees and elbows turned half round (child offsets opposite to the rest ones)."""
    still = joints_to_smpl(np.zeros((2, 22, 3)), body)
    assert np.isfinite(still.poses).all() and np.isfinite(still.report.max_error_mm)
    poses = np.zeros((1, 156))
    for j in (4, 5, 18, 19):  # knees, elbows
        poses[0, 3 * j:3 * j + 3] = [np.pi, 0.0, 0.0]
    joints = z_up_to_y_up(smpl_joints(body, poses, np.zeros((1, 3)), np.zeros(10)))
    folded = joints_to_smpl(joints, body)
    assert np.isfinite(folded.poses).all() and folded.report.max_error_mm < 1e-6


@pytest.mark.parametrize("joints_num,surface", [(24, None), (52, None), (55, "smplx")])
def test_the_file_has_amass_keys_and_shapes(tmp_path, joints_num, surface):
    model = load_body_model(_body_model(tmp_path / "model.npz", joints_num=joints_num))
    rng = np.random.default_rng(4)
    poses, trans = _random_motion(rng, 6, width=3 * joints_num)
    joints = z_up_to_y_up(smpl_joints(model, poses, trans, np.zeros(10)))
    path = tmp_path / "motion_smpl.npz"
    report = write_smpl(path, joints, model, 30.0, gender="female")
    assert report.max_error_mm < 1e-6
    assert sorted(os.listdir(tmp_path)) == ["model.npz", "motion_smpl.npz"]  # no temporary file left
    with np.load(path, allow_pickle=False) as data:
        arrays = {k: data[k] for k in data.files}
    expected = {"poses", "trans", "betas", "gender", "mocap_framerate", "root_orient", "pose_body"}
    if surface:
        expected |= {"mocap_frame_rate", "surface_model_type"}
        assert str(arrays["surface_model_type"]) == surface and float(arrays["mocap_frame_rate"]) == 30.0
    assert set(arrays) == expected
    assert arrays["poses"].shape == (6, 3 * joints_num) and not arrays["poses"][:, 66:].any()
    assert arrays["trans"].shape == (6, 3) and arrays["betas"].shape == (16,) and not arrays["betas"].any()
    assert str(arrays["gender"]) == "female" and float(arrays["mocap_framerate"]) == 30.0
    assert np.array_equal(arrays["root_orient"], arrays["poses"][:, :3])
    assert np.array_equal(arrays["pose_body"], arrays["poses"][:, 3:66])


def test_the_amass_import_reads_the_export_back(tmp_path):
    """Written with a male SMPL-H and a neutral SMPL-X model, read back through --body_models, which picks the model
    by the file's gender and width: the same joints."""
    models = _body_models(tmp_path / "models")
    rng = np.random.default_rng(5)
    for model_type, gender, width in (("smplh", "male", 156), ("smplx", "neutral", 165)):
        model = load_body_model(models / model_type / gender / "model.npz")
        poses, trans = _random_motion(rng, 12, width=width)
        betas = rng.normal(0, 1, 10)
        joints = z_up_to_y_up(smpl_joints(model, poses, trans, betas))
        path = tmp_path / f"{model_type}.npz"
        write_smpl(path, joints, model, 20.0, betas=betas, gender=gender)
        clip = read_amass_clip(path, BodyModels(folder=str(models)), 20.0, model_type)
        assert clip.source_fps == 20.0 and clip.source_frames == 12
        assert np.abs(clip.joints - joints).max() < 1e-6, model_type


def test_bad_inputs_fail_clearly_and_write_nothing(body, tmp_path):
    out = tmp_path / "x.npz"
    good = np.zeros((3, 22, 3))
    cases = [(np.zeros((3, 21, 3)), {}, r"joints have shape \(3, 21, 3\).*expected SMPL-22 positions \(T, 22, 3\)"),
             (np.zeros((3, 66)), {}, r"joints have shape \(3, 66\)"),
             (np.zeros((0, 22, 3)), {}, r"joints have 0 frames; expected at least 1"),
             (good, {"gender": "other"}, r"gender 'other'; expected one of neutral, male, female"),
             (good, {"fps": 0.0}, r"fps 0\.0; expected a positive frame rate"),
             (good, {"betas": np.ones(12)}, r"betas has non-zero coefficients past the first 10"),
             (good, {"betas": np.array([np.nan])}, r"betas \[nan\]; expected finite shape coefficients")]
    nan = good.copy()
    nan[1, 7, 2] = np.inf
    cases.append((nan, {}, r"joints\[1, 7\] is \[0\.0, 0\.0, inf\]; expected finite positions"))
    for joints, kwargs, match in cases:
        with pytest.raises(ValueError, match=r"clip\.npy: " + match):
            write_smpl(out, joints, body, **{"fps": 20.0, **kwargs}, source="clip.npy")
    assert not list(tmp_path.iterdir())


def test_a_dataset_not_in_metres_is_refused():
    """Inverse kinematics against the body model reads the joints as metres: SMPL-22 joints in other units
    (a dataset whose spec.json gives metres_per_unit 0.01) would give parameters of a giant."""
    import dataclasses

    from utils.dataset_specs import get_dataset_spec
    from utils.smpl_export import check_smpl_skeleton

    spec = get_dataset_spec("t2m")
    check_smpl_skeleton(spec, "--smpl")
    with pytest.raises(ValueError, match=r"--smpl: dataset 't2m' has positions in units of 0\.01 m"):
        check_smpl_skeleton(dataclasses.replace(spec, metres_per_unit=0.01), "--smpl")


def test_prepare_data_export_smpl(body, tmp_path, synthetic_root, capsys):
    import prepare_data

    def export(*args: str) -> int:
        return prepare_data.main(prepare_data.parse_args(["export_smpl", *args, "--body_model", body.path]))

    rng = np.random.default_rng(6)
    poses, trans = _random_motion(rng, 8)
    joints_file = tmp_path / "walk.npy"
    np.save(joints_file, z_up_to_y_up(smpl_joints(body, poses, trans, np.zeros(10))))
    assert export(str(joints_file), "--gender", "male") == 0
    assert "export_smpl: 8 frames, poses (8, 156) -> " in capsys.readouterr().out
    with np.load(tmp_path / "walk_smpl.npz") as data:
        assert float(data["mocap_framerate"]) == 20.0 and str(data["gender"]) == "male"
        assert np.abs(z_up_to_y_up(smpl_joints(body, data["poses"], data["trans"], data["betas"]))
                      - np.load(joints_file)).max() < 1e-6
    # Features (T, 263) of the synthetic dataset go through its kinematics first; its bones are not the model's.
    features = os.path.join(synthetic_root, "new_joint_vecs", sorted(os.listdir(
        os.path.join(synthetic_root, "new_joint_vecs")))[0])
    out = tmp_path / "features_smpl.npz"
    assert export(features, "--dataset_name", "synthetic", "--data_root", synthetic_root, "--out", str(out)) == 0
    printed = capsys.readouterr().out
    assert f"-> {out}; joints of the parameters vs the input: mean" in printed and out.is_file()
    # The SMPL-22 datasets named are the registered ones with HumanML3D's chain, the synthetic one among them.
    with pytest.raises(ValueError, match=r"--dataset_name: dataset 'kit' has 21 joints .*order: t2m, t2m_67, "
                                         r"motionmillion, synthetic, BVH and AMASS imports\)$"):
        export(str(joints_file), "--dataset_name", "kit", "--overwrite")
    with pytest.raises(FileNotFoundError, match=r"none\.npz: no such body model file"):
        prepare_data.main(prepare_data.parse_args(["export_smpl", str(joints_file), "--overwrite", "--body_model",
                                                   str(tmp_path / "none.npz")]))


@pytest.fixture(scope="module")
def ckdir(tmp_path_factory, synthetic_root):
    folder = str(tmp_path_factory.mktemp("sample_smpl") / "checkpoints")
    make_runs(folder, synthetic_root)
    return folder


def test_sample_writes_smpl_files_and_their_fit(ckdir, body, tmp_path, monkeypatch):
    torch.set_num_threads(1)
    args = ["--name", "fsq_gen", "--dataset_name", "synthetic", "--checkpoints_dir", ckdir, "--time_steps", "2",
            "--text_prompt", "a person walks", "--motion_length", "8", "--repeat_times", "2", "--no_render",
            "--output_dir", str(tmp_path / "out")]
    manifest = sample.main(parse_with_config(get_sample_parser(), [*args, "--smpl", body.path]))
    for s in manifest["samples"]:
        files, fit = s["files"], s["smpl_fit"]
        assert files["smpl"] == files["joints"].replace(".npy", "_smpl.npz")
        joints = np.load(tmp_path / "out" / files["joints"])
        # The tiny generator's bones are not the body model's: the fit report says by how much.
        clip = read_amass_clip(tmp_path / "out" / files["smpl"], BodyModels(file=body.path), 20.0, "s")
        error = 1000 * np.linalg.norm(clip.joints - joints, axis=-1)
        assert np.isclose(fit["max_error_mm"], error.max()) and np.isclose(fit["mean_error_mm"], error.mean())
    on_disk = json.loads((tmp_path / "out" / "manifest.json").read_text(encoding="utf-8"))
    assert on_disk["samples"] == manifest["samples"]

    def no_model(*_args, **_kwargs):
        raise AssertionError("the generator was loaded before the body model was checked")

    monkeypatch.setattr(sample, "load_generator", no_model)
    with pytest.raises(FileNotFoundError, match=r"--smpl: .*missing\.npz: no such body model file"):
        sample.main(parse_with_config(get_sample_parser(), [*args, "--smpl", str(tmp_path / "missing.npz")]))
