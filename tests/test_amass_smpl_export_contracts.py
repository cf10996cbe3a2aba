"""AMASS import, SMPL body and SMPL export contracts not pinned elsewhere: how body models are chosen, the motion
file's fields as stored and as refused, shape coefficients, the exported file's name and gender, and complex numbers
where real ones are expected (export joints and betas, an AMASS frame rate) refused naming the input and the field."""

from __future__ import annotations

import logging

import numpy as np
import pytest
from scipy.spatial.transform import Rotation
from test_amass import _body_model, _motion, _save
from test_body_model_contracts import _body, _smpl22_rest

from utils.amass_import import BodyModels, read_amass_motion
from utils.smpl_body import axis_angle_to_matrix, load_body_model, smpl_joints, z_up_to_y_up
from utils.smpl_export import write_smpl

# ------------------------------------------------------------------------------------------------- body models


def test_body_models_take_exactly_one_of_a_folder_or_a_file(tmp_path):
    """A folder and a file together are one choice too many, as neither is; a file given as the folder is no
    folder."""
    model = _body_model(tmp_path / "model.npz")
    with pytest.raises(ValueError, match=r"give one of --body_models DIR .* or --body_model FILE"):
        BodyModels(folder=str(tmp_path), file=str(model))
    with pytest.raises(ValueError, match=r"give one of --body_models DIR"):
        BodyModels()
    with pytest.raises(ValueError, match=r"--body_models .*model\.npz: no such folder; expected DIR/smplh/"):
        BodyModels(folder=str(model))


def test_clips_without_a_gender_are_warned_once_per_model_type(tmp_path, caplog):
    """Clips without gender (or with one naming no folder) get the neutral model with one warning per model type
    and gender, naming the first such clip, not one per clip."""
    for model_type, joints_num in (("smplh", 52), ("smplx", 55)):
        _body_model(tmp_path / model_type / "neutral" / "model.npz", joints_num=joints_num)
    bodies = BodyModels(str(tmp_path))
    with caplog.at_level(logging.WARNING):
        for k in range(3):
            assert bodies.get("smplh", None, f"s{k}.npz") is bodies.get("smplh", "neutral", "n.npz")
            bodies.get("smplh", "b'male'", f"b{k}.npz")
        bodies.get("smplx", None, "x.npz")
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 3, messages
    assert "s0.npz has no gender" in messages[0] and "b0.npz has gender \"b'male'\"" in messages[1]
    assert "x.npz has no gender: using the neutral smplx body model" in messages[2]


# ------------------------------------------------------------------------------------------------- motion files


def test_motion_parameters_are_read_as_stored_in_double_precision(tmp_path):
    """poses, trans and betas come back as float64 with the stored values, not rounded on the way."""
    motion = _motion(7, 60.0)
    path = _save(tmp_path / "clip.npz", **motion)
    read = read_amass_motion(path)
    for key in ("poses", "trans", "betas"):
        assert getattr(read, key).dtype == np.float64, key
        np.testing.assert_array_equal(getattr(read, key), motion[key], err_msg=key)


@pytest.mark.parametrize("betas", [np.zeros((2, 16)), np.zeros((16, 1)), np.zeros((1, 1, 16))])
def test_betas_of_more_than_one_row_are_refused_naming_the_file(tmp_path, betas):
    """Only one row of betas, (1, n), reads as (n,); several rows or a column are no body shape."""
    path = _save(tmp_path / "clip.npz", **{**_motion(5, 60.0), "betas": betas})
    with pytest.raises(ValueError, match=rf"clip\.npz: betas has shape \({betas.shape[0]}, .*\); expected \(n,\) "
                                         r"shape coefficients"):
        read_amass_motion(path)


def test_nan_in_any_beta_is_refused_naming_the_file(tmp_path):
    """Every stored coefficient is checked, also those past the ten the joints use."""
    betas = np.zeros(16)
    betas[13] = np.nan
    path = _save(tmp_path / "clip.npz", **{**_motion(5, 60.0), "betas": betas})
    with pytest.raises(ValueError, match=r"clip\.npz: betas hold NaN or Inf; expected finite shape coefficients"):
        read_amass_motion(path)


# ------------------------------------------------------------------------------------------------- smpl_body


def test_fewer_betas_than_shape_components_act_as_zero_padded(tmp_path):
    """Three betas on a model with ten shape components give the joints of those three followed by zeros."""
    body = load_body_model(_body_model(tmp_path / "model.npz"))
    rng = np.random.default_rng(0)
    poses, trans = rng.normal(0, 0.4, (3, 156)), rng.normal(0, 1, (3, 3))
    short = np.array([0.5, -1.0, 2.0])
    padded = np.concatenate([short, np.zeros(7)])
    np.testing.assert_allclose(smpl_joints(body, poses, trans, short), smpl_joints(body, poses, trans, padded),
                               atol=1e-12)
    assert np.abs(body.rest_joints(short) - body.rest_joints(np.zeros(10))).max() > 1e-3


# ------------------------------------------------------------------------------------------------- smpl_export


def _rest_joints(frames: int = 3) -> np.ndarray:
    return z_up_to_y_up(np.broadcast_to(_smpl22_rest(), (frames, 22, 3)) + np.array([0.0, 0.0, 0.5]))


def test_write_smpl_writes_exactly_the_name_given(tmp_path):
    """A name without .npz is kept as given (np.savez would add the extension), and no temporary file stays."""
    path = tmp_path / "walk.smpl"
    write_smpl(path, _rest_joints(), _body(), 20.0)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["walk.smpl"]
    with np.load(path) as data:
        assert data["poses"].shape == (3, 156)


@pytest.mark.parametrize("gender", ["Male", "FEMALE", " neutral"])
def test_write_smpl_refuses_a_gender_not_spelled_as_the_body_model_folders(tmp_path, gender):
    """The recorded gender picks the body model folder on import, which is lower case: other spellings are refused
    naming the input, and nothing is written."""
    with pytest.raises(ValueError, match=r"gen\.npy: gender .*; expected one of neutral, male, female"):
        write_smpl(tmp_path / "m.npz", _rest_joints(), _body(), 20.0, gender=gender, source="gen.npy")
    assert not list(tmp_path.iterdir())


def test_axis_angle_to_matrix_matches_scipy_to_rounding_at_every_angle():
    """Rodrigues' formula and its small-angle series agree with scipy to 1e-15 from 1e-9 rad to almost a half
    turn, across the switch between the two."""
    rng = np.random.default_rng(0)
    axes = rng.normal(size=(500, 3))
    axes /= np.linalg.norm(axes, axis=-1, keepdims=True)
    vectors = axes * np.geomspace(1e-9, 3.1, 500)[:, None]
    assert np.abs(axis_angle_to_matrix(vectors) - Rotation.from_rotvec(vectors).as_matrix()).max() < 5e-15


# ------------------------------------------------------------------------------------------------- complex numbers


def test_complex_joints_are_refused_naming_the_source_and_nothing_is_written(tmp_path):
    """Joints with imaginary parts of a metre fitted with a 0 mm error: the imaginary parts were dropped."""
    joints = _rest_joints() + 1j
    with pytest.raises(ValueError, match=r"gen\.npy: joints have shape \(3, 22, 3\) \(complex128\); expected "
                                         r"SMPL-22 positions"):
        write_smpl(tmp_path / "m.npz", joints, _body(), 20.0, source="gen.npy")
    assert not list(tmp_path.iterdir())


def test_complex_betas_are_refused_naming_the_source(tmp_path):
    with pytest.raises(ValueError, match=r"gen\.npy: betas .*; expected finite shape coefficients"):
        write_smpl(tmp_path / "m.npz", _rest_joints(), _body(), 20.0, betas=np.full(10, 0.5j), source="gen.npy")
    assert not list(tmp_path.iterdir())


def test_a_complex_frame_rate_names_the_file_and_field(tmp_path):
    """poses, trans and betas of complex numbers are refused; a complex frame rate was read as its real part."""
    path = tmp_path / "clip.npz"
    np.savez(path, mocap_framerate=np.array(60 + 5j), **_motion(10, 60.0))
    with pytest.raises(ValueError, match=r"clip\.npz: mocap_framerate is \(60\+5j\); expected a positive frame "
                                         r"rate"):
        read_amass_motion(path)
