"""Mesh videos: the software renderer (utils/mesh_render.py) on boxes, and linear blend skinning (utils/smpl_mesh.py)
on the synthetic body model of test_amass.py with a box around every joint."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from utils import plot_script
from utils.mesh_render import AMBIENT, BACKGROUND, BODY_COLOR, FLOOR_COLORS, MeshScene, lambert, plot_mesh_motion

# The quads of a box whose corner 4 * ix + 2 * iy + iz sits at the low (0) or high (1) end of each axis.
BOX_QUADS = ((0, 1, 3, 2), (4, 5, 7, 6), (0, 4, 5, 1), (2, 6, 7, 3), (0, 2, 6, 4), (1, 5, 7, 3))


def box(lo, hi) -> tuple[np.ndarray, np.ndarray]:
    """The 8 corners (8, 3) of the box from ``lo`` to ``hi`` and its 12 triangles (12, 3), counter-clockwise seen
    from outside."""
    lo, hi = np.asarray(lo, dtype=np.float64), np.asarray(hi, dtype=np.float64)
    corners = np.array([[(hi if (i >> (2 - k)) & 1 else lo)[k] for k in range(3)] for i in range(8)])
    faces = []
    for a, b, c, d in BOX_QUADS:
        for tri in ((a, b, c), (a, c, d)):
            p = corners[list(tri)]
            outward = np.cross(p[1] - p[0], p[2] - p[0]) @ (p.mean(0) - corners.mean(0)) > 0
            faces.append(tri if outward else tri[::-1])
    return corners, np.array(faces)


def colour(rgb: np.ndarray) -> np.ndarray:
    return np.round(255 * np.asarray(rgb)).astype(np.uint8)


def is_body(image: np.ndarray) -> np.ndarray:
    """Pixels (H, W) of the bluish body, told from the grey floor and white background."""
    return image[..., 0] != image[..., 2]


# ---------------------------------------------------------------------------------------------------------- renderer


def test_body_pixels_exactly_where_the_mesh_projects():
    """A box seen straight from the front by an orthographic camera: every pixel whose centre lies inside its
    projected front face is body, every other pixel background (a level camera sees no floor)."""
    corners, faces = box([-0.3, 0.0, -0.2], [0.3, 1.6, 0.2])
    frames = np.stack([corners, corners + [0.1, 0.0, 0.0]])  # the camera follows the box: the same picture
    scene = MeshScene(frames, faces, size=64, elevation=0.0, azimuth=0.0, fov=0.0)
    image = scene.frame(0)
    assert image.shape == (64, 64, 3) and image.dtype == np.uint8
    screen, _ = scene.project(corners, 0)
    (x0, y0), (x1, y1) = screen.min(0), screen.max(0)
    centres = np.arange(64) + 0.5
    inside = ((centres[None, :] > x0) & (centres[None, :] < x1)) & ((centres[:, None] > y0) & (centres[:, None] < y1))
    assert 200 < inside.sum() < 64 * 64 / 2  # the box is well inside the picture
    background = np.all(image == colour(BACKGROUND), axis=-1)
    assert np.array_equal(~background, inside)
    # The front face looks at the camera; the default light is above and left of it: one flat, lit colour.
    front = np.unique(image[inside], axis=0)
    assert len(front) == 1 and front[0].astype(int).sum() > colour(BODY_COLOR * AMBIENT).astype(int).sum()
    np.testing.assert_array_equal(scene.frame(1), image)


def test_floor_body_and_background_from_the_default_view():
    """The stick figure's view (15 degrees up, front-right, perspective): the box stands in the middle, both squares
    of the checkered floor show below it, the sky above; rendering is deterministic."""
    corners, faces = box([-0.3, 0.0, -0.2], [0.3, 1.6, 0.2])
    walk = np.stack([corners + [0.0, 0.0, 0.1 * t] for t in range(3)])
    scene = MeshScene(walk, faces, size=96)
    image = scene.frame(2)
    body = is_body(image)
    rows, cols = np.nonzero(body)
    assert abs(cols.mean() - 48) < 8 and abs(rows.mean() - 48) < 16  # the camera follows the box
    for square in FLOOR_COLORS:
        assert np.all(image[80:] == colour(square), axis=-1).sum() > 20
    assert np.all(image[:5] == colour(BACKGROUND))
    np.testing.assert_array_equal(MeshScene(walk, faces, size=96).frame(2), image)


def test_faces_toward_the_light_are_brighter_than_faces_away():
    assert np.allclose(lambert(np.array([[1.0, 0, 0], [-1.0, 0, 0], [0, 1.0, 0]]), [2.0, 0, 0]),
                       [1.0, AMBIENT, AMBIENT])
    # Seen from the front-right (azimuth 45), the +z side is on the left of the picture and the +x side on the right;
    # a light along +x lights the one fully and leaves the other to the ambient term.
    corners, faces = box([-0.3, 0.0, -0.3], [0.3, 1.6, 0.3])
    image = MeshScene(corners[None], faces, size=64, elevation=0.0, azimuth=45.0, fov=0.0,
                      light=[1.0, 0.0, 0.0]).frame(0)
    row = image[32]
    body = np.flatnonzero(np.any(row != colour(BACKGROUND), axis=-1))
    left, right = row[body[1]], row[body[-2]]
    np.testing.assert_array_equal(left, colour(BODY_COLOR * AMBIENT))
    np.testing.assert_array_equal(right, colour(BODY_COLOR))


def test_a_nearer_face_hides_a_farther_one_whatever_their_order():
    """A small box in front of a tall one, faces listed in both orders: each pixel shows the nearer box."""
    near_box, near_faces = box([-0.2, 0.0, 0.3], [0.2, 0.8, 0.5])
    far_box, far_faces = box([-0.4, 0.0, -0.5], [0.4, 1.6, -0.3])
    camera = dict(root=np.zeros((1, 3)), radius=2.0, size=64, elevation=20.0, azimuth=10.0)
    both = np.concatenate([near_box, far_box])[None]
    images = [MeshScene(both, faces, **camera).frame(0)
              for faces in (np.concatenate([near_faces, far_faces + 8]), np.concatenate([far_faces + 8, near_faces]))]
    np.testing.assert_array_equal(images[0], images[1])
    near = MeshScene(near_box[None], near_faces, **camera).frame(0)
    far = MeshScene(far_box[None], far_faces, **camera).frame(0)
    assert (is_body(near) & is_body(far)).sum() > 50  # the near box covers part of the far one
    np.testing.assert_array_equal(images[0][is_body(near)], near[is_body(near)])
    np.testing.assert_array_equal(images[0][~is_body(near)], far[~is_body(near)])


def test_video_has_every_frame_at_the_asked_size(tmp_path, monkeypatch):
    monkeypatch.setattr(plot_script.shutil, "which", lambda *args, **kwargs: None)
    corners, faces = box([-0.3, 0.0, -0.2], [0.3, 1.6, 0.2])
    walk = np.stack([corners + [0.05 * t, 0.0, 0.1 * t] for t in range(5)])
    out = plot_mesh_motion(str(tmp_path / "box.mp4"), walk, faces, fps=10, dpi=16)
    assert out == str(tmp_path / "box.gif")
    first = MeshScene(walk, faces, size=64).frame(0)
    with Image.open(out) as gif:
        assert gif.n_frames == 5 and gif.size == (64, 64)
        shown = np.asarray(gif.convert("RGB"))
    assert np.abs(shown.astype(int) - first).mean() < 3  # pixel for pixel, up to the GIF's palette
    titled = plot_mesh_motion(str(tmp_path / "titled.gif"), walk, faces, title="a box walks", fps=10, dpi=20,
                              fmt="gif")
    with Image.open(titled) as gif:
        assert gif.n_frames == 5 and gif.size == (80, 88)  # 4 x 20 pixels and a band of 0.4 x 20 for the title
    with pytest.raises(plot_script.RenderError, match=r"box: MP4 output needs the ffmpeg executable"):
        plot_mesh_motion(str(tmp_path / "box.mp4"), walk, faces, fmt="mp4", dpi=16)


def test_bad_meshes_fail_clearly():
    corners, faces = box([0, 0, 0], [1, 1, 1])
    with pytest.raises(ValueError, match=r"vertices have shape \(8, 3\); expected \(T, V, 3\)"):
        MeshScene(corners, faces)
    with pytest.raises(ValueError, match=r"faces have shape \(12, 3\) \(int64\); expected \(F, 3\) integer indices "
                                         r"of the 4 vertices"):
        MeshScene(corners[None, :4], faces)
    bad = corners[None].copy()
    bad[0, 3, 1] = np.nan
    with pytest.raises(ValueError, match="NaN or Inf"):
        MeshScene(bad, faces)
