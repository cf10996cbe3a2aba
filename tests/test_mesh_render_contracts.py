"""Contracts of linear blend skinning and mesh videos (utils/smpl_mesh.py) and the software renderer
(utils/mesh_render.py) on the synthetic body models of the project's tests: bad input refused naming the file or
argument, the camera and floor, rasterisation at the edges, even video sizes."""

from __future__ import annotations

import logging
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image
from test_body_model_contracts import _amass_file, _capture_render, _mesh_model
from test_smpl_body_contracts import _rest_motion
from test_smpl_mesh import box, mesh_model

import utils.smpl_mesh as sm
from utils import plot_script
from utils.mesh_render import FLOOR_COLORS, MeshScene, face_normals, plot_mesh_motion, rasterize
from utils.smpl_body import z_up_to_y_up
from utils.smpl_mesh import load_body_mesh, pose_mesh, render_amass_file, render_joints_mesh, render_smpl

# ------------------------------------------------------------------------------------------------- smpl_mesh


def _arrays(path):
    with np.load(path) as data:
        return {k: data[k] for k in data.files}


@pytest.mark.parametrize("faces,shown", [(np.zeros((0, 3), dtype=np.int32), r"0 faces of dtype int32"),
                                         (np.array([[0, 1, -1]], dtype=np.int32), r"1 faces of dtype int32"),
                                         (np.array([[0.0, 1.0, 2.0]]), r"1 faces of dtype float64")])
def test_faces_that_are_empty_negative_or_not_integers_are_refused_naming_the_file(tmp_path, faces, shown):
    """No triangles, a negative vertex index or float indices in f are refused naming the file, the number of
    faces and the valid index range."""
    path = mesh_model(tmp_path / "bad.npz", f=faces)
    with pytest.raises(ValueError, match=rf"bad\.npz: f holds {shown}; expected integer vertex indices from 0 to "
                                         r"191"):
        load_body_mesh(path)


def test_betas_past_the_tenth_do_not_change_the_mesh(tmp_path):
    """Skinning uses at most 10 betas even when the file has 16 shape components and 16 betas are given: the
    mesh's shapedirs keeps 10, and changing betas 10-15 moves no vertex."""
    mesh = load_body_mesh(mesh_model(tmp_path / "m.npz"))
    assert mesh.shapedirs.shape == (192, 3, 10)
    rng = np.random.default_rng(0)
    betas = rng.normal(0, 1, 16)
    poses, trans = rng.normal(0, 0.5, (2, 72)), rng.normal(0, 1, (2, 3))
    other = betas.copy()
    other[10:] = rng.normal(0, 3, 6)
    np.testing.assert_array_equal(pose_mesh(mesh, poses, trans, betas).vertices,
                                  pose_mesh(mesh, poses, trans, other).vertices)


def test_nan_betas_are_refused_naming_the_source(tmp_path):
    """NaN in the betas given to the skinning is refused naming the source and betas."""
    mesh = load_body_mesh(mesh_model(tmp_path / "m.npz"))
    betas = np.zeros(10)
    betas[2] = np.nan
    with pytest.raises(ValueError, match=r"clip\.npz: betas holds NaN or Inf"):
        pose_mesh(mesh, np.zeros((2, 72)), np.zeros((2, 3)), betas, source="clip.npz")


def test_a_66_column_file_is_drawn_without_a_warning_and_another_width_with_one(tmp_path, monkeypatch, caplog):
    """An AMASS file with only the 66 root and body columns is the body of any member of the family: no warning.
    A file of another member's width (156 columns for a 55-joint model) is cut to 66 columns with a warning."""


    seen = _capture_render(monkeypatch)
    mesh = SimpleNamespace(num_joints=55, path="smplx.npz")
    with caplog.at_level(logging.WARNING, logger="utils.smpl_mesh"):
        render_amass_file(_amass_file(tmp_path / "a.npz", width=66), mesh, str(tmp_path / "a.gif"))
    assert seen["poses"].shape == (4, 66) and not caplog.records
    with caplog.at_level(logging.WARNING, logger="utils.smpl_mesh"):
        render_amass_file(_amass_file(tmp_path / "b.npz", width=156), mesh, str(tmp_path / "b.gif"))
    assert seen["poses"].shape == (4, 66)
    assert len(caplog.records) == 1 and "poses has 156 columns but smplx.npz has 55 joints" in caplog.text


def test_render_smpl_has_the_camera_follow_the_pelvis(tmp_path, monkeypatch):
    """render_smpl passes the skinned pelvis (joint 0), turned to Y up, as the point the camera follows, and the
    vertices turned to Y up."""
    seen = {}

    def fake(save_path, vertices, faces, root=None, fps=20, **plot):
        seen.update(vertices=vertices, root=root, fps=fps)
        return save_path
    monkeypatch.setattr(sm, "plot_mesh_motion", fake)
    mesh = load_body_mesh(mesh_model(tmp_path / "m.npz"))
    rng = np.random.default_rng(1)
    poses, trans, betas = rng.normal(0, 0.5, (3, 72)), rng.normal(0, 1, (3, 3)), rng.normal(0, 1, 10)
    render_smpl(str(tmp_path / "v.gif"), mesh, poses, trans, betas, 25.0)
    posed = pose_mesh(mesh, poses, trans, betas)
    assert seen["root"] is not None and seen["fps"] == 25.0
    np.testing.assert_allclose(seen["root"], z_up_to_y_up(posed.joints[:, 0]), atol=1e-12)
    np.testing.assert_allclose(seen["vertices"], z_up_to_y_up(posed.vertices), atol=1e-12)


def test_a_saved_note_given_by_the_caller_is_kept(tmp_path, monkeypatch):
    """render_joints_mesh with joints_path and render_amass_file pass on a saved_note the caller gives rather than
    replacing it with their own."""
    notes = []

    def fake(save_path, mesh, poses, trans, betas, fps, source="", **plot):
        notes.append(plot.get("saved_note"))
        return save_path
    monkeypatch.setattr(sm, "render_smpl", fake)
    mesh = load_body_mesh(_mesh_model(tmp_path / "m.npz"))
    render_joints_mesh(str(tmp_path / "v.gif"), _rest_motion(), mesh, 20.0, joints_path=str(tmp_path / "j.npy"),
                       saved_note="; mine")
    render_amass_file(_amass_file(tmp_path / "a.npz", width=72), mesh, str(tmp_path / "a.gif"), saved_note="; mine")
    assert notes == ["; mine", "; mine"]
    assert np.array_equal(np.load(tmp_path / "j.npy"), _rest_motion())


def test_render_joints_mesh_names_the_source_for_bad_joints(tmp_path):
    """Joints of the wrong shape given to render_joints_mesh are refused naming the source given."""
    mesh = load_body_mesh(_mesh_model(tmp_path / "m.npz"))
    with pytest.raises(ValueError, match=r"gen\.npy: joints have shape \(3, 21, 3\)"):
        render_joints_mesh(str(tmp_path / "v.gif"), np.zeros((3, 21, 3)), mesh, 20.0, source="gen.npy")
    assert not (tmp_path / "v.gif").exists()


# ------------------------------------------------------------------------------------------------- mesh_render


def test_rasterize_skips_a_face_with_a_vertex_behind_the_camera():
    """A triangle one of whose vertices has an infinite depth key (behind the near plane) is not drawn."""
    tri = np.array([[1.0, 1.0], [1.0, 9.0], [9.0, 1.0]])
    raster = rasterize(tri, np.array([1.0, 1.0, np.inf]), np.array([[0, 1, 2]]), 12, 12)
    assert (raster.face == -1).all() and np.isinf(raster.depth).all()


def test_rasterize_keeps_pixel_centres_on_every_edge():
    """Pixel centres exactly on a triangle's edges belong to it: a right triangle from (0.5, 0.5) with legs of 8
    pixels covers exactly the pixels (i, j) with i + j <= 8."""
    tri = np.array([[0.5, 0.5], [0.5, 8.5], [8.5, 0.5]])
    raster = rasterize(tri, np.full(3, 2.0), np.array([[0, 1, 2]]), 12, 12)
    i, j = np.mgrid[0:12, 0:12]
    np.testing.assert_array_equal(raster.face == 0, i + j <= 8)


def test_a_scene_without_frames_or_with_a_wrong_root_is_refused():
    """Zero frames, a root of the wrong shape, negative face indices, fov 180 and an infinite radius are refused
    with messages naming what was expected."""
    corners, faces = box([0, 0, 0], [1, 1, 1])
    with pytest.raises(ValueError, match=r"MeshScene: vertices have shape \(0, 8, 3\); expected \(T, V, 3\) with "
                                         r"T >= 1"):
        MeshScene(np.zeros((0, 8, 3)), faces)
    with pytest.raises(ValueError, match=r"MeshScene: root has shape \(3, 3\); expected \(2, 3\)"):
        MeshScene(np.stack([corners, corners]), faces, root=np.zeros((3, 3)))
    bad = faces.copy()
    bad[0, 0] = -1
    with pytest.raises(ValueError, match=r"MeshScene: faces have shape \(12, 3\) \(int64\); expected \(F, 3\) "
                                         r"integer indices of the 8 vertices"):
        MeshScene(corners[None], bad)
    with pytest.raises(ValueError, match=r"MeshScene: fov 180; expected degrees in \[0, 180\)"):
        MeshScene(corners[None], faces, fov=180)
    with pytest.raises(ValueError, match=r"MeshScene: radius inf; expected a finite size > 0"):
        MeshScene(corners[None], faces, radius=float("inf"))


def test_the_floor_is_the_lowest_vertex_over_all_frames():
    """The floor is lowered to the lowest vertex of the whole motion, not of the first frame."""
    corners, faces = box([0, 0.5, 0], [1, 1.5, 1])
    scene = MeshScene(np.stack([corners, corners - [0.0, 0.3, 0.0]]), faces, size=16)
    assert scene.vertices[..., 1].min() == 0.0
    np.testing.assert_allclose(scene.vertices[0, :, 1].min(), 0.3)


def test_a_mesh_collapsed_to_a_point_gets_a_unit_view():
    """A motion whose vertices all sit at one point on the floor gets the fallback view size 1 and a finite
    image of floor and background."""
    corners, faces = box([0, 0, 0], [1, 1, 1])
    scene = MeshScene(np.zeros((1, 8, 3)), faces, size=32)
    assert scene.radius == 1.0 and np.isfinite(scene.focal) and np.isfinite(scene.distance)
    image = scene.frame(0)
    assert any(np.all(image == np.round(255 * c).astype(np.uint8), -1).sum() > 10 for c in FLOOR_COLORS)


def test_a_still_body_stands_on_a_floor_around_it():
    """A single still frame from the default view: the floor extends half the view around the body, so both
    checker squares show below it."""
    corners, faces = box([-0.3, 0.0, -0.2], [0.3, 1.6, 0.2])
    scene = MeshScene(corners[None], faces, size=96)
    np.testing.assert_allclose(scene.floor_hi - scene.floor_lo, [scene.radius, scene.radius])
    image = scene.frame(0)
    for square in FLOOR_COLORS:
        assert np.all(image[70:] == np.round(255 * square).astype(np.uint8), axis=-1).sum() > 20


def test_the_default_camera_is_perspective_and_the_light_above_left():
    """By default the camera is a 35 degree perspective one (the same image as fov=35, not the orthographic
    fov=0) and the light comes from above and to the left of the camera."""
    corners, faces = box([-0.3, 0.0, -0.2], [0.3, 1.6, 0.2])
    default = MeshScene(corners[None], faces, size=48)
    np.testing.assert_array_equal(default.frame(0), MeshScene(corners[None], faces, size=48, fov=35.0).frame(0))
    assert not np.array_equal(default.frame(0), MeshScene(corners[None], faces, size=48, fov=0.0).frame(0))
    assert default.light @ default.right < 0 and default.light @ default.up > 0


def test_a_degenerate_face_has_a_zero_normal():
    """face_normals gives unit normals, and a zero vector (not NaN) for a triangle with no area."""
    vertices = np.array([[0.0, 0, 0], [1, 0, 0], [0, 1, 0], [2, 0, 0]])
    normals = face_normals(vertices, np.array([[0, 1, 2], [0, 1, 3]]))
    np.testing.assert_array_equal(normals, [[0.0, 0.0, 1.0], [0.0, 0.0, 0.0]])


def test_video_size_is_rounded_to_even_pixels(tmp_path, monkeypatch):
    """figsize * dpi of 61.5 pixels gives a 62 x 62 GIF (even, as H.264 needs) whose frames are the scene drawn at
    62 pixels."""

    monkeypatch.setattr(plot_script.shutil, "which", lambda *args, **kwargs: None)
    corners, faces = box([-0.3, 0.0, -0.2], [0.3, 1.6, 0.2])
    frames = np.stack([corners, corners + [0.0, 0.2, 0.0]])
    out = plot_mesh_motion(str(tmp_path / "b.gif"), frames, faces, fps=10, dpi=15, figsize=4.1, fmt="gif")
    with Image.open(out) as gif:
        assert gif.size == (62, 62) and gif.n_frames == 2
        shown = np.asarray(gif.convert("RGB")).astype(int)
    # The frames are drawn at 62 pixels, not drawn at 61 and resampled: the first one is the scene's frame exactly
    # (up to the GIF's palette).
    assert np.abs(shown - MeshScene(frames, faces, size=62).frame(0)).mean() < 0.5


@pytest.mark.parametrize("fps", [-10.0, float("nan")])
def test_render_amass_file_refuses_a_frame_rate_that_is_not_positive_naming_fps(tmp_path, fps):
    """A frame rate that is not positive (negative, NaN) is refused naming the file and the fps, as write_smpl
    refuses one, rather than failing later on an empty frame list or int(nan)."""
    mesh = load_body_mesh(_mesh_model(tmp_path / "m.npz"))
    with pytest.raises(ValueError, match=r"a\.npz: .*fps .*expected a positive frame rate"):
        render_amass_file(_amass_file(tmp_path / "a.npz", width=72), mesh, str(tmp_path / "a.gif"), fps=fps)


def test_a_light_without_a_direction_is_refused():
    """A light of zero length is refused naming light, like the other view arguments; it would turn the shading to
    NaN and draw the body black."""
    corners, faces = box([0, 0, 0], [1, 1, 1])
    with pytest.raises(ValueError, match=r"MeshScene: light"):
        MeshScene(corners[None], faces, size=16, light=[0.0, 0.0, 0.0]).frame(0)
