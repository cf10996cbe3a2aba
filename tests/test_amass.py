"""AMASS import: SMPL joints against an independent forward kinematics, axes, shape, resampling, folder import."""

import csv
import logging
import re
import zipfile
from pathlib import Path

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from utils.amass_import import BodyModels, import_amass_folder, read_amass_clip, read_amass_motion
from utils.bvh import parents_from_chain
from utils.data_validation import validate_dataset
from utils.dataset_specs import T2M_KINEMATIC_CHAIN, get_dataset_spec
from utils.datasets import read_split
from utils.paramutil import T2M_TGT_OFFSETS
from utils.smpl_body import axis_angle_to_matrix, load_body_model, smpl_joints, z_up_to_y_up

PARENTS = parents_from_chain(T2M_KINEMATIC_CHAIN, 22)
# SMPL's rest pose is Y up, facing +Z, left at +x, as HumanML3D's offsets; pelvis at the origin.
REST = np.zeros((22, 3))
for _j in range(1, 22):
    REST[_j] = REST[PARENTS[_j]] + T2M_TGT_OFFSETS[_j]
# AMASS files stand the Y-up body model up in their Z-up world with the root rotation: +90 degrees about x.
UPRIGHT = np.array([np.pi / 2, 0.0, 0.0])
CORNERS = 0.02 * np.array([[x, y, z] for x in (-1, 1) for y in (-1, 1) for z in (-1, 1)], dtype=np.float64)


def _body_model(path: Path, joints_num: int = 52, shapes: int = 16, seed: int = 0, **drop_or_replace) -> Path:
    """An SMPL-H-like (52 joints) or SMPL-X-like (55) body model: 8 vertices around each joint, a J_regressor that
    averages them (so the rest joints are ``REST`` and the extra joints sit by the wrists), small random shapedirs."""
    rng = np.random.default_rng(seed)
    parents = list(PARENTS) + [20 + (j % 2) for j in range(22, joints_num)]
    rest = np.concatenate([REST, REST[parents[22:]] + 0.05])
    v_template = (rest[:, None, :] + CORNERS[None]).reshape(-1, 3)
    regressor = np.kron(np.eye(joints_num), np.full((1, 8), 1 / 8))
    kintree = np.stack([[4294967295] + parents[1:], range(joints_num)]).astype(np.uint32)
    arrays = {"v_template": v_template, "shapedirs": rng.normal(0, 0.01, (len(v_template), 3, shapes)),
              "J_regressor": regressor, "kintree_table": kintree, "f": np.zeros((1, 3), dtype=np.int32)}
    arrays.update(drop_or_replace)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, **{k: v for k, v in arrays.items() if v is not None})
    return path


def _motion(frames: int, fps: float, width: int = 156, heading: float = 0.0, seed: int = 0) -> dict:
    """AMASS-like parameters of a walk: upright root turned by ``heading`` about z, swinging hips and knees, the
    pelvis moving forward at 1 m/s."""
    rng = np.random.default_rng(seed)
    t = np.arange(frames) / fps
    poses = np.zeros((frames, width))
    root = Rotation.from_rotvec([0, 0, heading]) * Rotation.from_rotvec(UPRIGHT)
    poses[:, :3] = root.as_rotvec()
    swing = 0.5 * np.sin(2 * np.pi * t)
    poses[:, 3 * 1] = swing  # left hip about x
    poses[:, 3 * 2] = -swing
    poses[:, 3 * 4] = 0.3 + 0.3 * np.cos(2 * np.pi * t)  # left knee
    poses[:, 66:] = rng.normal(0, 0.1, (frames, width - 66))  # hands / face: ignored
    forward = root.apply([0.0, 0.0, 1.0])
    trans = np.zeros((frames, 3))
    trans[:, :2] = t[:, None] * forward[None, :2]
    trans[:, 2] = 0.95
    return {"poses": poses, "trans": trans, "betas": rng.normal(0, 1, 16), "gender": np.array("male")}


def _save(path: Path, fps_key: str = "mocap_framerate", fps: float = 60.0, **arrays) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, **{fps_key: np.array(fps)}, **{k: v for k, v in arrays.items() if v is not None})
    return path


def _rest_with_shape(model_file: Path, betas: np.ndarray) -> np.ndarray:
    """Rest joints straight from the model's arrays: J_regressor @ (v_template + shapedirs[..., :n] @ betas[:n])."""
    m = np.load(model_file)
    n = min(10, len(betas), m["shapedirs"].shape[2])
    return (m["J_regressor"] @ (m["v_template"] + m["shapedirs"][:, :, :n] @ betas[:n]))[:22]


def test_joints_match_an_independent_forward_kinematics(tmp_path):
    """Rodrigues and FK agree with scipy's rotation composition along the chain, the root turning about its rest
    position and moved by trans; betas reach the joints through shapedirs (the first 10 only)."""
    model = _body_model(tmp_path / "model.npz")
    body = load_body_model(model)
    rng = np.random.default_rng(1)
    poses = rng.normal(0, 0.6, (5, 156))
    poses[0, :66] = 1e-9  # tiny angles take the series branch of Rodrigues
    trans = rng.normal(0, 1, (5, 3))
    betas = rng.normal(0, 1, 16)
    rest = _rest_with_shape(model, betas)
    expected = np.zeros((5, 22, 3))
    for t in range(5):
        rot = [Rotation.from_rotvec(poses[t, 3 * j:3 * j + 3]) for j in range(22)]
        glob = [rot[0]]
        expected[t, 0] = rest[0] + trans[t]
        for j in range(1, 22):
            p = PARENTS[j]
            glob.append(glob[p] * rot[j])
            expected[t, j] = expected[t, p] + glob[p].apply(rest[j] - rest[p])
    assert np.abs(smpl_joints(body, poses, trans, betas) - expected).max() < 1e-5
    vectors = np.array([[1e-9, 0, 0], [0, 2e-7, 1e-7], [0.3, -0.2, 0.1], [0, 0, np.pi - 1e-6]])
    assert np.allclose(axis_angle_to_matrix(vectors), Rotation.from_rotvec(vectors).as_matrix(), atol=1e-12)

    # Shape: the 11th beta onwards changes nothing; the first ten move the rest joints away from the template.
    more = betas.copy()
    more[10:] += 5.0
    assert np.allclose(body.rest_joints(more), rest)
    assert np.abs(body.rest_joints(betas) - body.rest_joints(np.zeros(16))).max() > 1e-3
    few = load_body_model(_body_model(tmp_path / "few.npz", shapes=4))
    assert np.allclose(few.rest_joints(betas), _rest_with_shape(tmp_path / "few.npz", betas))


def test_zero_pose_and_a_turn_about_the_up_axis_in_humanml3d_axes(tmp_path):
    """A zero pose gives the rest joints plus trans, mapped (x, y, z) -> (-x, z, y); turning the root by 90 degrees
    about AMASS's z turns every joint by 90 degrees about the output's Y."""
    body = load_body_model(_body_model(tmp_path / "model.npz"))
    betas = np.zeros(16)
    trans = np.array([[0.5, -1.0, 0.9]])
    still = z_up_to_y_up(smpl_joints(body, np.zeros((1, 156)), trans, betas))[0]
    rest = REST + trans[0]
    assert np.allclose(still, np.stack([-rest[:, 0], rest[:, 2], rest[:, 1]], axis=-1))

    poses = np.zeros((2, 156))
    poses[0, :3] = UPRIGHT
    poses[1, :3] = (Rotation.from_rotvec([0, 0, np.pi / 2]) * Rotation.from_rotvec(UPRIGHT)).as_rotvec()
    upright, turned = z_up_to_y_up(smpl_joints(body, poses, np.zeros((2, 3)), betas))
    assert upright[15, 1] - upright[0, 1] > 0.4  # the head is above the pelvis: the body stands, Y up
    about_y = np.array([[0.0, 0.0, 1.0], [0.0, 1.0, 0.0], [-1.0, 0.0, 0.0]])
    assert np.allclose(turned - turned[0], (upright - upright[0]) @ about_y.T, atol=1e-12)


def test_frame_rates_are_resampled_by_time_stamps(tmp_path):
    """59.94 fps is not 60 fps: 3001 frames last 50.05 s, so 1002 frames at 20 fps (an integer stride of 2 would give
    1501); every output frame k is the motion at k / 20 s. 250 fps keeps its duration too."""
    bodies = BodyModels(file=str(_body_model(tmp_path / "model.npz")))
    for fps, frames, expected in ((60.0, 3001, 1001), (59.94, 3001, 1002), (250.0, 501, 41)):
        data = _motion(frames, fps)
        path = _save(tmp_path / f"clip_{fps}.npz", fps=fps, **data)
        clip = read_amass_clip(path, bodies, 20.0, "clip")
        assert clip.joints.shape == (expected, 22, 3) and clip.source_frames == frames and clip.source_fps == fps
        # The pelvis moves 1 m/s along the heading (AMASS -y for an upright body), which becomes the output -Z.
        seconds = np.arange(expected) / 20.0
        assert np.allclose(clip.joints[:, 0, 2] - clip.joints[0, 0, 2], -seconds, atol=1e-9), fps
    data = _motion(61, 60.0, width=165)
    clip = read_amass_clip(_save(tmp_path / "x_stageii.npz", fps_key="mocap_frame_rate", fps=60.0, **data), bodies,
                           20.0, "x")
    assert clip.joints.shape == (21, 22, 3) and clip.caption_name == "x"


def _body_models(root: Path) -> Path:
    for gender, seed in (("male", 1), ("female", 2), ("neutral", 3)):
        _body_model(root / "smplh" / gender / "model.npz", seed=seed)
    _body_model(root / "smplx" / "neutral" / "model.npz", joints_num=55, seed=4)
    return root


def test_import_writes_a_dataset_the_loaders_accept(tmp_path, caplog):
    """Genders, SMPL-H and SMPL-X, a shape.npz, repeated file names in two subjects, a name with spaces and a long
    clip: ids are paths under --src, the long clip is chunked, and the dataset validates."""
    src = tmp_path / "amass"
    _save(src / "SubjA" / "walk_01_poses.npz", fps=120.0, **_motion(361, 120.0))
    np.savez(src / "SubjA" / "shape.npz", betas=np.zeros(16), gender=np.array("male"))
    _save(src / "SubjB" / "walk_01_poses.npz", fps=59.94, **{**_motion(193, 59.94, heading=1.0, seed=1),
                                                            "gender": np.array("female")})
    _save(src / "SubjB" / "turn left_poses.npz", fps=250.0, **{**_motion(626, 250.0, heading=-2.0, seed=2),
                                                              "gender": np.array(b"male")})
    _save(src / "SubjC" / "long_stageii.npz", fps_key="mocap_frame_rate", fps=30.0,
          **{**_motion(361, 30.0, width=165, seed=3), "gender": np.array("female"),
             "surface_model_type": np.array("smplx")})
    labels = tmp_path / "labels.csv"
    labels.write_text("id,caption\nSubjA/walk_01_poses.npz,a person walks forward\n")
    out = tmp_path / "AmassSmall"
    with caplog.at_level(logging.WARNING):
        summary = import_amass_folder(str(src), str(out), body_models=str(_body_models(tmp_path / "models")),
                                      labels=str(labels))
    warnings = " ".join(r.getMessage() for r in caplog.records)
    assert "no smplx body model for gender 'female'" in warnings and "using the neutral one" in warnings
    assert (summary.clips, summary.motions) == (4, 5)
    assert summary.skipped == ["SubjA/shape.npz"] and summary.chunked_clips == ["SubjC/long_stageii"]
    assert (summary.captions_from_labels, summary.captions_from_names) == (1, 3)

    spec = get_dataset_spec("AmassSmall", str(out))
    assert spec.fps == 20 and spec.dim_pose == 263
    report = validate_dataset(spec, str(out))
    assert report.ok, report.format()
    ids = read_split(str(out), "all")
    assert ids == sorted(["SubjA/walk_01_poses", "SubjB/walk_01_poses", "SubjB/turn left_poses",
                          "SubjC/long_stageii_c0", "SubjC/long_stageii_c1"])
    assert all(read_split(str(out), s) for s in ("train", "val", "test"))
    chunk_splits = [s for s in ("train", "val", "test") if "SubjC/long_stageii_c0" in read_split(str(out), s)]
    assert "SubjC/long_stageii_c1" in read_split(str(out), chunk_splits[0])
    assert np.load(out / "Mean.npy").shape == (263,) and np.load(out / "Std.npy").shape == (263,)
    assert (out / "new_joint_vecs" / "SubjB" / "turn left_poses.npy").is_file()
    assert (out / "texts" / "SubjB" / "turn left_poses.txt").read_text().startswith("a person: turn left#")
    assert (out / "texts" / "SubjA" / "walk_01_poses.txt").read_text().startswith("a person walks forward#")
    assert not list(tmp_path.glob("AmassSmall.importing-*"))

    with open(out / "clips.csv", newline="") as f:
        rows = {r["id"]: r for r in csv.DictReader(f)}
    assert rows["SubjB/walk_01_poses"]["source"] == "SubjB/walk_01_poses.npz"
    assert (rows["SubjB/walk_01_poses"]["source_fps"], rows["SubjB/walk_01_poses"]["source_frames"],
            rows["SubjB/walk_01_poses"]["frames"]) == ("59.94", "193", "64")
    c0, c1 = rows["SubjC/long_stageii_c0"], rows["SubjC/long_stageii_c1"]
    assert (c0["source"], c0["start_s"], c0["end_s"], c1["start_s"], c1["end_s"]) == (
        "SubjC/long_stageii.npz", "0.0", "6.0", "6.0", "12.0")
    assert int(c0["frames"]) + int(c1["frames"]) == 240 and c0["fps"] == "20.0"


def test_prepare_data_amass_and_its_clear_errors(tmp_path, capsys):
    import prepare_data

    models = _body_models(tmp_path / "models")
    src = tmp_path / "amass"
    for k in range(3):
        _save(src / f"S{k}" / "01_poses.npz", fps=60.0, **_motion(181, 60.0, heading=k, seed=k))

    def run(*args: str, out: str = "Out") -> int:
        return prepare_data.main(prepare_data.parse_args(["amass", "--src", str(src), "--out", str(tmp_path / out),
                                                          *args]))

    assert run("--body_models", str(models)) == 0
    printed = capsys.readouterr().out
    assert "amass: 3 motions, 180 frames" in printed and "captioned only by the words of their names" in printed
    with pytest.raises(ValueError, match=r"Out: exists and is not empty"):
        run("--body_models", str(models))
    # --mirror adds each motion's mirror image, in the folder of its id.
    assert run("--body_models", str(models), "--mirror", out="Mirrored") == 0
    assert "amass: 6 motions, 360 frames" in capsys.readouterr().out
    assert (tmp_path / "Mirrored" / "new_joint_vecs" / "S1" / "M01_poses.npy").is_file()
    with pytest.raises(ValueError, match=r"the folder name 'kit' is a registered dataset name"):
        run("--body_models", str(models), out="kit")
    with pytest.raises(SystemExit):  # --body_models and --body_model are one choice
        run("--body_models", str(models), "--body_model", str(models / "smplh" / "male" / "model.npz"), out="B")
    with pytest.raises(ValueError, match=r"--src .*nowhere: no such folder"):
        import_amass_folder(str(tmp_path / "nowhere"), str(tmp_path / "B"), body_models=str(models))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match=r"empty: no \.npz files found"):
        import_amass_folder(str(tmp_path / "empty"), str(tmp_path / "B"), body_models=str(models))

    # Body model files: a .pkl, missing keys, a sparse (object) J_regressor, a missing gender without a neutral.
    with pytest.raises(ValueError, match=r"model\.pkl: \.pkl body models need chumpy.*use the \.npz release"):
        load_body_model(tmp_path / "model.pkl")
    lacking = _body_model(tmp_path / "lacking.npz", J_regressor=None, kintree_table=None)
    with pytest.raises(ValueError, match=r"lacking\.npz: body model lacks J_regressor, kintree_table"):
        load_body_model(lacking)
    sparse = tmp_path / "sparse.npz"
    np.savez(sparse, **{k: v for k, v in np.load(lacking).items()}, kintree_table=np.zeros((2, 52)),
             J_regressor=np.array({"sparse": True}, dtype=object))
    with pytest.raises(ValueError, match=r"sparse\.npz: J_regressor is stored as a Python object.*toarray"):
        load_body_model(sparse)
    wrong_tree = _body_model(tmp_path / "tree.npz", kintree_table=np.stack([[-1] + [0] * 51, range(52)]))
    with pytest.raises(ValueError, match=r"tree\.npz: kintree_table gives joints 0-21 the parents"):
        load_body_model(wrong_tree)
    only_male = tmp_path / "only_male"
    _body_model(only_male / "smplh" / "male" / "model.npz")
    female = _save(tmp_path / "f" / "a_poses.npz", **{**_motion(61, 60.0), "gender": np.array("female")})
    with pytest.raises(FileNotFoundError, match=re.escape(str(only_male / "smplh" / "female" / "model.npz"))
                       + r" \(nor the neutral fallback .*neutral/model\.npz\)"):
        import_amass_folder(str(female.parent), str(tmp_path / "B"), body_models=str(only_male))

    # Motion files: pose widths, NaN, a width that names no model type (fine with --body_model).
    single = str(models / "smplh" / "male" / "model.npz")
    bad = tmp_path / "bad"
    narrow = _save(bad / "narrow.npz", **{**_motion(10, 60.0), "poses": np.zeros((10, 40))})
    with pytest.raises(ValueError, match=r"narrow\.npz: poses has shape \(10, 40\); expected \(T, 156\) SMPL-H "
                                         r"or \(T, 165\) SMPL-X"):
        import_amass_folder(str(bad), str(tmp_path / "B"), body_model=single)
    narrow.unlink()
    nan = _motion(30, 60.0)
    nan["poses"][2, 7] = np.nan
    _save(bad / "nan.npz", **nan)
    with pytest.raises(ValueError, match=r"nan\.npz: poses hold NaN or Inf in frame 3 of 30"):
        import_amass_folder(str(bad), str(tmp_path / "B"), body_model=single)
    _save(bad / "nan.npz", **_motion(61, 60.0, width=72))
    with pytest.raises(ValueError, match=r"nan\.npz: poses has 72 columns.*pass --body_model FILE"):
        import_amass_folder(str(bad), str(tmp_path / "B"), body_models=str(models))
    assert import_amass_folder(str(bad), str(tmp_path / "B"), body_model=single).motions == 1
    _save(bad / "nofps.npz", fps_key="fps", **_motion(61, 60.0))
    with pytest.raises(ValueError, match=r"nofps\.npz: lacks mocap_framerate or mocap_frame_rate"):
        import_amass_folder(str(bad), str(tmp_path / "C"), body_model=single)
    assert not list(tmp_path.glob("C*")) and not list(tmp_path.glob("B.importing-*"))
    still = _save(tmp_path / "still.npz", fps=0.0, **_motion(61, 60.0))
    with pytest.raises(ValueError, match=r"still\.npz: mocap_framerate is 0\.0; expected a positive frame rate"):
        read_amass_clip(still, BodyModels(file=single), 20.0, "still")


@pytest.mark.parametrize("key", ["v_template", "shapedirs", "J_regressor"])
def test_a_body_model_with_nan_fails_naming_the_file_and_the_key(tmp_path, key):
    arrays = dict(np.load(_body_model(tmp_path / "ok.npz")))
    arrays[key] = arrays[key].copy()
    arrays[key][(3,) + (0,) * (arrays[key].ndim - 1)] = np.nan
    bad = _body_model(tmp_path / "nan.npz", **{key: arrays[key]})
    with pytest.raises(ValueError, match=rf"nan\.npz: {key} holds NaN or Inf"):
        load_body_model(bad)


@pytest.mark.parametrize("key", ["v_template", "kintree_table"])
@pytest.mark.parametrize("kind", ["text", "complex"])
def test_a_body_model_array_of_text_or_complex_numbers_names_the_file_and_the_key(tmp_path, key, kind):
    arrays = dict(np.load(_body_model(tmp_path / "ok.npz")))
    arrays[key] = arrays[key].astype(str if kind == "text" else np.complex128)
    bad = _body_model(tmp_path / "odd.npz", **{key: arrays[key]})
    with pytest.raises(ValueError, match=rf"odd\.npz: {key} holds (<U\d+|complex128) values; expected real numbers"):
        load_body_model(bad)


@pytest.mark.parametrize("key", ["poses", "trans", "betas"])
def test_motion_parameters_that_are_no_real_numbers_name_the_file_and_the_field(tmp_path, key):
    """Text in ``poses`` was reported as a wrong shape that was the right one; in ``trans`` or ``betas`` it failed
    in numpy without the file's name."""
    motion = _motion(61, 60.0)
    motion[key] = np.full(motion[key].shape, "x") if key != "poses" else motion[key].astype(np.complex64)
    odd = _save(tmp_path / "odd.npz", **motion)
    with pytest.raises(ValueError, match=rf"odd\.npz: {key} holds (<U1|complex64) values; expected real numbers"):
        read_amass_motion(odd)


@pytest.mark.parametrize("stored", [np.array("120"), np.array(b"120"), np.array([b" 120.0 "]), np.array(120),
                                    np.array([120.0])])
def test_a_frame_rate_stored_as_text_or_a_one_element_array_is_read(tmp_path, stored):
    """Converters that write fields as text (str or bytes, 0-d or one element) keep the frame rate readable; gender
    and surface_model_type already are."""
    path = tmp_path / "clip.npz"
    np.savez(path, mocap_framerate=stored, surface_model_type=np.array(b"SMPLH"),
             **{**_motion(10, 120.0), "gender": np.array([b"Female"])})
    motion = read_amass_motion(path)
    assert (motion.fps, motion.gender, motion.model_type) == (120.0, "female", "smplh")


@pytest.mark.parametrize("stored, shown", [(np.array("fast"), "'fast'"), (np.array(b"nan"), "b'nan'"),
                                           (np.array([60.0, 120.0]), r"\[60\.0, 120\.0\]")])
def test_a_frame_rate_that_is_no_positive_number_names_the_file_and_field(tmp_path, stored, shown):
    path = tmp_path / "clip.npz"
    np.savez(path, mocap_frame_rate=stored, **_motion(10, 120.0))
    with pytest.raises(ValueError, match=rf"clip\.npz: mocap_frame_rate is {shown}; expected a positive frame rate"):
        read_amass_motion(path)


def test_a_truncated_or_damaged_archive_names_the_file(tmp_path):
    """An interrupted download or extraction: the whole import stops, and the message says which file to fetch
    again (zipfile's own error names none)."""
    single = _body_model(tmp_path / "model.npz")
    data = _save(tmp_path / "clip.npz", **_motion(61, 60.0)).read_bytes()
    truncated = tmp_path / "truncated.npz"
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match=r"truncated\.npz: not a readable \.npz archive of poses, trans, betas"):
        read_amass_motion(truncated)
    truncated.write_bytes(single.read_bytes()[:-100])
    with pytest.raises(ValueError, match=r"truncated\.npz: not a readable \.npz body model"):
        load_body_model(truncated)
    damaged = tmp_path / "damaged.npz"  # one flipped byte inside poses: the member's CRC no longer matches
    with np.load(tmp_path / "clip.npz") as archive:
        at = data.index(archive["poses"].tobytes()[:64]) + 32
    damaged.write_bytes(data[:at] + bytes([data[at] ^ 0xFF]) + data[at + 1:])
    with pytest.raises(ValueError, match=r"damaged\.npz: poses cannot be read, the file is damaged \(Bad CRC-32"):
        read_amass_motion(damaged)
    # An empty file (np.load raises EOFError) and a member cut short whose CRC still holds (numpy cannot read its
    # header): a traceback naming nothing, and "stored as a Python object".
    empty = tmp_path / "empty.npz"
    empty.write_bytes(b"")
    with pytest.raises(ValueError, match=r"empty\.npz: not a readable \.npz archive of poses, trans, betas"):
        read_amass_motion(empty)
    with pytest.raises(ValueError, match=r"empty\.npz: not a readable \.npz body model"):
        load_body_model(empty)
    # A text file (an HTML page saved under the name) was said to hold "pickled (object) data".
    page = tmp_path / "page.npz"
    page.write_text("<html>not found</html>")
    for read, what in ((read_amass_motion, "archive of poses"), (load_body_model, "body model")):
        with pytest.raises(ValueError, match=rf"page\.npz: not a readable \.npz {what}.*\(no zip header, as in a "):
            read(page)
    cut = tmp_path / "cut.npz"
    with zipfile.ZipFile(tmp_path / "clip.npz") as src, zipfile.ZipFile(cut, "w") as dst:
        for name in src.namelist():
            member = src.read(name)
            dst.writestr(name, member[:50] if name == "poses.npy" else member)
    with pytest.raises(ValueError, match=r"cut\.npz: poses cannot be read, the file is damaged \(.*header"):
        read_amass_motion(cut)


def test_an_upper_case_extension_is_an_amass_file_too(tmp_path):
    src = tmp_path / "amass"
    _save(src / "S1" / "walk_poses.npz", fps=60.0, **_motion(121, 60.0))
    (src / "S1" / "walk_poses.npz").rename(src / "S1" / "WALK_poses.NPZ")
    summary = import_amass_folder(str(src), str(tmp_path / "Upper"), body_models=str(_body_models(tmp_path / "m")))
    assert summary.clips == 1 and read_split(str(tmp_path / "Upper"), "all") == ["S1/WALK_poses"]
    with open(tmp_path / "Upper" / "clips.csv", newline="") as f:
        assert [r["source"] for r in csv.DictReader(f)] == ["S1/WALK_poses.NPZ"]


def test_a_file_of_one_frame_is_skipped_and_counted_by_an_import_and_rendered(tmp_path, monkeypatch):
    """export_smpl writes a one-frame file for a one-frame motion, but the readers wanted 2 frames: the whole import
    stopped on it (as on a clip under 1/20 s), and render.py refused it. An import now skips such files and counts
    them; render.py draws the pose."""
    from test_render import assert_gif
    from test_smpl_mesh import mesh_model

    import render
    from utils import plot_script

    src = tmp_path / "amass"
    _save(src / "S1" / "walk_poses.npz", fps=60.0, **_motion(121, 60.0))
    pose = {k: v[:1] if k in ("poses", "trans") else v for k, v in _motion(121, 60.0, seed=1).items()}
    _save(src / "S1" / "pose_poses.npz", fps=60.0, **pose)
    _save(src / "S2" / "blink_poses.npz", fps=120.0, **_motion(3, 120.0, seed=2))  # 2.5 / 120 s: 1 frame at 20
    summary = import_amass_folder(str(src), str(tmp_path / "Out"), body_models=str(_body_models(tmp_path / "m")))
    assert summary.clips == 1 and read_split(str(tmp_path / "Out"), "all") == ["S1/walk_poses"]
    assert summary.too_brief == ["S1/pose_poses.npz (1 frame)", "S2/blink_poses.npz (1 frame)"]

    monkeypatch.setattr(plot_script.shutil, "which", lambda *args, **kwargs: None)
    model = mesh_model(tmp_path / "mesh" / "model.npz", joints_num=52)
    written = render.main(render.parse_args([str(src / "S1" / "pose_poses.npz"), "--body_model", str(model),
                                             "--out", str(tmp_path / "videos"), "--dpi", "20"]))
    assert_gif(written[0], 1)
