"""Contracts of the SMPL-family body model reader (utils/smpl_body.py) and the SMPL export (utils/smpl_export.py) on
the synthetic body models of the project's tests: what is refused and how, the shape components kept, the fit of a
degenerate skeleton."""

from __future__ import annotations

import dataclasses
import tempfile
from pathlib import Path

import numpy as np
import pytest
from test_amass import _body_model
from test_body_model_contracts import _body, _smpl22_rest

from utils.smpl_body import SMPL22_PARENTS, kintree_parents, load_body_model, smpl_joints, z_up_to_y_up
from utils.smpl_export import joints_to_smpl, write_smpl

# ------------------------------------------------------------------------------------------------- smpl_body


def test_kintree_parents_leaves_a_joint_no_column_names_as_a_root():
    """A joint that no column of the kintree_table names as a child gets parent -1 (no parent), not joint 0;
    out-of-range children are ignored and an out-of-range parent reads as -1."""
    kintree = np.array([[4294967295, 0, 0], [0, 1, 7]], dtype=np.uint32)
    np.testing.assert_array_equal(kintree_parents(kintree), [-1, 0, -1])


def test_a_single_npy_array_given_as_body_model_names_the_file_and_says_it_is_no_npz(tmp_path):
    """An .npy file (one array) saved under the body model's name is refused as "a single array, not an .npz"."""
    path = tmp_path / "model.npz"
    with open(path, "wb") as f:
        np.save(f, np.zeros((3, 3)))
    with pytest.raises(ValueError, match=r"model\.npz: a single array, not an \.npz body model"):
        load_body_model(path)


def test_an_upper_case_pkl_body_model_is_refused_as_needing_chumpy(tmp_path):
    """A .PKL body model (any case) is refused pointing to the .npz release, not read as a broken archive."""
    path = tmp_path / "SMPL_NEUTRAL.PKL"
    path.write_bytes(b"\x80\x02}q\x00.")
    with pytest.raises(ValueError, match=r"SMPL_NEUTRAL\.PKL: \.pkl body models need chumpy"):
        load_body_model(path)


def test_shapedirs_of_the_wrong_number_of_dimensions_names_the_file_and_key(tmp_path):
    """shapedirs stored (V, 3) (one shape component squeezed away) or J_regressor stored (J, V, 1) are refused
    naming the file, the key and the expected layout."""
    v = 8 * 52
    bad = _body_model(tmp_path / "flat.npz", shapedirs=np.zeros((v, 3)))
    with pytest.raises(ValueError, match=r"flat\.npz: shapedirs has shape \(416, 3\); expected \(V, 3, S\)"):
        load_body_model(bad)
    reg = np.kron(np.eye(52), np.full((1, 8), 1 / 8))[..., None]
    bad = _body_model(tmp_path / "reg.npz", J_regressor=reg)
    with pytest.raises(ValueError, match=r"reg\.npz: J_regressor has shape \(52, 416, 1\); expected \(J, V\)"):
        load_body_model(bad)


def test_a_body_model_of_exactly_22_joints_loads():
    """A body model of exactly the 22 body joints (the documented minimum) loads with num_joints 22."""
    with tempfile.TemporaryDirectory() as d:
        body = load_body_model(_body_model(Path(d) / "m22.npz", joints_num=22))
    assert body.num_joints == 22 and body.joint_template.shape == (22, 3)


def test_a_kintree_table_with_fewer_joints_than_the_regressor_is_refused(tmp_path):
    """J_regressor with 52 joints but a kintree_table of 24 columns is refused naming the file and both counts."""
    kintree = np.stack([[4294967295] + list(_smpl22_parents()[1:]) + [20, 21], range(24)]).astype(np.uint32)
    bad = _body_model(tmp_path / "mixed.npz", kintree_table=kintree)
    with pytest.raises(ValueError, match=r"mixed\.npz: J_regressor has 52 joints and kintree_table 24; expected the "
                                         r"same number, at least 22"):
        load_body_model(bad)


def _smpl22_parents():
    return SMPL22_PARENTS


def test_nan_in_shape_components_past_max_betas_is_not_refused(tmp_path):
    """Only the shape components the joints use (the first max_betas) must be finite: NaN in component 12 of 16
    loads, while NaN in component 3 is refused naming the file and shapedirs."""
    shapedirs = np.random.default_rng(0).normal(0, 0.01, (8 * 52, 3, 16))
    shapedirs[5, 1, 12] = np.nan
    body = load_body_model(_body_model(tmp_path / "late.npz", shapedirs=shapedirs))
    assert body.joint_shapedirs.shape == (22, 3, 10) and np.isfinite(body.joint_shapedirs).all()
    shapedirs[5, 1, 3] = np.nan
    with pytest.raises(ValueError, match=r"early\.npz: shapedirs holds NaN or Inf"):
        load_body_model(_body_model(tmp_path / "early.npz", shapedirs=shapedirs))


def test_load_body_model_keeps_only_max_betas_shape_components(tmp_path):
    """load_body_model(path, max_betas=4) keeps 4 shape components, so betas past the fourth do not move the
    rest joints."""
    path = _body_model(tmp_path / "m.npz")
    body = load_body_model(path, max_betas=4)
    assert body.joint_shapedirs.shape == (22, 3, 4)
    betas = np.zeros(10)
    betas[6] = 3.0
    np.testing.assert_array_equal(body.rest_joints(betas), body.joint_template)


@pytest.mark.parametrize("poses_shape,trans_shape", [((3, 63), (3, 3)), ((3, 66), (3,)), ((3, 66), (2, 3))])
def test_smpl_joints_refuses_too_narrow_poses_or_misshapen_trans(poses_shape, trans_shape):
    """smpl_joints needs poses (T, >= 66) and trans (T, 3): anything else is refused with both shapes named."""
    with pytest.raises(ValueError, match=r"smpl_joints: expected poses \(T, >=66\) and trans \(T, 3\), got "):
        smpl_joints(_body(), np.zeros(poses_shape), np.zeros(trans_shape), np.zeros(10))


# ------------------------------------------------------------------------------------------------- smpl_export


def _rest_motion(frames: int = 3) -> np.ndarray:
    return z_up_to_y_up(np.broadcast_to(_smpl22_rest(), (frames, 22, 3)) + np.array([0.0, 0.0, 0.5]))


def test_joints_that_are_not_numbers_are_refused_naming_the_source(tmp_path):
    """Boolean or text joints are refused naming the input and its dtype, and no file is written."""
    for joints in (np.ones((2, 22, 3), dtype=bool), np.full((2, 22, 3), "0.1")):
        with pytest.raises(ValueError, match=r"gen\.npy: joints have shape \(2, 22, 3\) \((bool|<U3)\); expected "
                                             r"SMPL-22 positions"):
            write_smpl(tmp_path / "m.npz", joints, _body(), 20.0, source="gen.npy")
    assert not list(tmp_path.iterdir())


def test_the_first_non_finite_joint_is_named_with_the_count():
    """With several non-finite values the message names the first (frame, joint) and counts them all."""
    joints = _rest_motion(4)
    joints[1, 3, 0] = np.nan
    joints[3, 20, 2] = np.inf
    with pytest.raises(ValueError, match=r"clip: joints\[1, 3\] is \[nan, .*\]; expected finite positions \(2 "
                                         r"non-finite value\(s\) in all\)"):
        joints_to_smpl(joints, _body(), source="clip")


def test_betas_that_are_not_one_dimensional_are_refused():
    """Betas of shape (1, 10) are refused naming the source and the expected shape (n,)."""
    with pytest.raises(ValueError, match=r"clip: betas .*; expected finite shape coefficients of shape \(n,\)"):
        joints_to_smpl(_rest_motion(), _body(), np.zeros((1, 10)), source="clip")


def test_a_non_zero_eleventh_beta_is_refused_and_zeros_past_ten_are_kept():
    """The joints use 10 betas: a non-zero 11th coefficient is refused; 20 betas that are zero past the tenth are
    accepted and written padded to their own length."""

    betas = np.zeros(11)
    betas[10] = 0.5
    with pytest.raises(ValueError, match=r"clip: betas has non-zero coefficients past the first 10"):
        joints_to_smpl(_rest_motion(), _body(), betas, source="clip")
    long = np.zeros(20)
    long[:3] = [0.1, -0.2, 0.3]
    with tempfile.TemporaryDirectory() as d:
        write_smpl(Path(d) / "m.npz", _rest_motion(), _body(), 20.0, betas=long)
        with np.load(Path(d) / "m.npz") as data:
            np.testing.assert_array_equal(data["betas"], long)


def test_a_rest_bone_of_zero_length_gives_the_identity_and_a_finite_fit(tmp_path):
    """A body model whose left knee sits exactly on the left hip at rest (a zero-length bone) still fits: the hip's
    rotation is the identity and every parameter is finite."""
    body = _body()
    template = body.joint_template.copy()
    template[4] = template[1]  # left knee on the left hip
    body = dataclasses.replace(body, joint_template=template)
    poses = np.zeros((2, 66))
    poses[:, 0:3] = [0.0, 0.0, 0.4]
    joints = z_up_to_y_up(smpl_joints(body, poses, np.zeros((2, 3)), np.zeros(10)))
    fit = joints_to_smpl(joints, body)
    assert np.isfinite(fit.poses).all() and np.isfinite(fit.trans).all()
    np.testing.assert_array_equal(fit.poses[:, 3:6], 0.0)
    assert fit.report.max_error_mm < 1e-6
