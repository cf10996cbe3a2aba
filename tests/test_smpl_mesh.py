"""Mesh videos: the software renderer (utils/mesh_render.py) on boxes, and linear blend skinning (utils/smpl_mesh.py)
on the synthetic body model of test_amass.py with a box around every joint."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy.spatial.transform import Rotation
from test_amass import PARENTS, _body_model

from utils import plot_script
from utils.mesh_render import AMBIENT, BACKGROUND, BODY_COLOR, FLOOR_COLORS, MeshScene, lambert, plot_mesh_motion
from utils.smpl_body import load_body_model, smpl_joints
from utils.smpl_mesh import frames_at, load_body_mesh, pose_mesh

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


@pytest.mark.parametrize("radius", [0.0, -1.0, float("nan")])
def test_a_view_without_a_positive_radius_fails_clearly(radius):
    """A zero, negative or NaN radius drew every frame as the white background."""
    corners, faces = box([0, 0, 0], [1, 1, 1])
    with pytest.raises(ValueError, match=r"MeshScene: radius .*; expected a finite size > 0"):
        MeshScene(corners[None], faces, radius=radius)
    with pytest.raises(ValueError, match=r"MeshScene: size 0; expected at least 1 pixel"):
        MeshScene(corners[None], faces, size=0)


# ---------------------------------------------------------------------------------------------- linear blend skinning


def mesh_model(path: Path, joints_num: int = 24, seed: int = 0, **drop_or_replace) -> Path:
    """test_amass's body model (8 vertices around each joint) made whole: a box of 12 triangles around each joint,
    every vertex weighted to its joint alone, and small random pose blend shapes."""
    _, cube = box(-np.ones(3), np.ones(3))  # the same corner order as test_amass's CORNERS
    vertices = 8 * joints_num
    arrays = {"f": np.concatenate([cube + 8 * j for j in range(joints_num)]).astype(np.uint32),
              "weights": np.kron(np.eye(joints_num), np.ones((8, 1))),
              "posedirs": np.random.default_rng(seed + 100).normal(0, 0.002, (vertices, 3, (joints_num - 1) * 9))}
    return _body_model(path, joints_num=joints_num, seed=seed, **{**arrays, **drop_or_replace})


def _arrays(path: Path) -> dict[str, np.ndarray]:
    with np.load(path) as data:
        return {k: data[k] for k in data.files}


def _global_transforms(poses: np.ndarray, trans: np.ndarray, rest: np.ndarray, parents: list[int]):
    """Global rotations (T, J, 3, 3) and positions (T, J, 3) by scipy's rotation composition along the chain."""
    frames, joints = len(poses), len(parents)
    full = np.zeros((frames, 3 * joints))
    full[:, :poses.shape[1]] = poses
    rotations = np.zeros((frames, joints, 3, 3))
    positions = np.zeros((frames, joints, 3))
    for t in range(frames):
        for j in range(joints):
            local = Rotation.from_rotvec(full[t, 3 * j:3 * j + 3]).as_matrix()
            p = parents[j]
            if p < 0:
                rotations[t, j], positions[t, j] = local, rest[j] + trans[t]
            else:
                rotations[t, j] = rotations[t, p] @ local
                positions[t, j] = positions[t, p] + rotations[t, p] @ (rest[j] - rest[p])
    return rotations, positions


def _parents(joints_num: int) -> list[int]:
    return list(PARENTS) + [20 + (j % 2) for j in range(22, joints_num)]  # as test_amass's _body_model


def test_zero_pose_gives_the_template_plus_the_shape_blend(tmp_path):
    path = mesh_model(tmp_path / "model.npz")
    mesh, m = load_body_mesh(path), _arrays(path)
    rng = np.random.default_rng(0)
    betas, trans = rng.normal(0, 1, 16), rng.normal(0, 1, (3, 3))
    posed = pose_mesh(mesh, np.zeros((3, 72)), trans, betas)
    shaped = m["v_template"] + m["shapedirs"][:, :, :10] @ betas[:10]  # the first ten betas only
    assert posed.vertices.shape == (3, 192, 3) and posed.joints.shape == (3, 24, 3)
    np.testing.assert_allclose(posed.vertices, shaped[None] + trans[:, None], atol=1e-12)
    np.testing.assert_allclose(posed.joints, (m["J_regressor"] @ shaped)[None] + trans[:, None], atol=1e-12)


@pytest.mark.parametrize("joints_num", [24, 52, 55])
def test_the_body_joints_of_the_skinning_are_smpl_joints(tmp_path, joints_num):
    """The 22 body joints of the skinning transforms are utils.smpl_body's; the hands and face follow the chain; 66
    columns are the full width with zero hands and face."""
    path = mesh_model(tmp_path / "model.npz", joints_num=joints_num)
    mesh = load_body_mesh(path)
    rng = np.random.default_rng(1)
    poses, trans, betas = rng.normal(0, 0.7, (4, 3 * joints_num)), rng.normal(0, 1, (4, 3)), rng.normal(0, 1, 10)
    posed = pose_mesh(mesh, poses, trans, betas)
    np.testing.assert_allclose(posed.joints[:, :22], smpl_joints(load_body_model(path), poses, trans, betas),
                               atol=1e-10)
    m = _arrays(path)
    rest = m["J_regressor"] @ (m["v_template"] + m["shapedirs"][:, :, :10] @ betas)
    _, positions = _global_transforms(poses, trans, rest, _parents(joints_num))
    np.testing.assert_allclose(posed.joints, positions, atol=1e-10)
    body_only = poses.copy()
    body_only[:, 66:] = 0.0
    np.testing.assert_array_equal(pose_mesh(mesh, poses[:, :66], trans, betas).vertices,
                                  pose_mesh(mesh, body_only, trans, betas).vertices)


def test_a_vertex_weighted_to_one_joint_moves_rigidly_with_it(tmp_path):
    """Without pose blend shapes, a vertex weighted to joint j alone keeps its distance to j, and its offset from j
    turns with j's global rotation."""
    path = mesh_model(tmp_path / "model.npz", posedirs=None)
    mesh = load_body_mesh(path)
    assert mesh.posedirs is None
    rng = np.random.default_rng(2)
    poses, trans, betas = rng.normal(0, 0.8, (5, 72)), rng.normal(0, 1, (5, 3)), rng.normal(0, 1, 10)
    posed = pose_mesh(mesh, poses, trans, betas)
    m = _arrays(path)
    shaped = m["v_template"] + m["shapedirs"][:, :, :10] @ betas
    rest = m["J_regressor"] @ shaped
    joint_of = np.repeat(np.arange(24), 8)
    before = np.linalg.norm(shaped - rest[joint_of], axis=-1)
    after = np.linalg.norm(posed.vertices - posed.joints[:, joint_of], axis=-1)
    np.testing.assert_allclose(after, np.broadcast_to(before, after.shape), atol=1e-12)
    rotations, _ = _global_transforms(poses, trans, rest, _parents(24))
    turned = np.einsum("tvab,vb->tva", rotations[:, joint_of], shaped - rest[joint_of])
    np.testing.assert_allclose(posed.vertices - posed.joints[:, joint_of], turned, atol=1e-12)


def test_pose_blend_shapes_add_posedirs_times_rotation_minus_identity(tmp_path):
    """With posedirs, each vertex first moves by posedirs[v] @ (R_j - I) over the joints 1 .. J-1 (row-major), in the
    rest pose, and is then skinned: the difference to the same model without posedirs is that offset turned by the
    vertex's joint."""
    path = mesh_model(tmp_path / "model.npz")
    mesh, without = load_body_mesh(path), load_body_mesh(mesh_model(tmp_path / "plain.npz", posedirs=None))
    rng = np.random.default_rng(3)
    poses, trans, betas = rng.normal(0, 0.8, (4, 72)), rng.normal(0, 1, (4, 3)), np.zeros(10)
    shift = pose_mesh(mesh, poses, trans, betas).vertices - pose_mesh(without, poses, trans, betas).vertices
    features = np.stack([(Rotation.from_rotvec(poses[t].reshape(24, 3)[1:]).as_matrix() - np.eye(3)).reshape(-1)
                         for t in range(4)])
    offsets = np.einsum("vcp,tp->tvc", _arrays(path)["posedirs"], features)
    m = _arrays(path)
    rotations, _ = _global_transforms(poses, trans, m["J_regressor"] @ m["v_template"], _parents(24))
    joint_of = np.repeat(np.arange(24), 8)
    np.testing.assert_allclose(shift, np.einsum("tvab,tvb->tva", rotations[:, joint_of], offsets), atol=1e-12)
    assert np.abs(shift).max() > 1e-4


def test_blended_weights_match_a_vertex_by_vertex_skinning(tmp_path):
    rng = np.random.default_rng(4)
    weights = rng.uniform(0, 1, (192, 24)) ** 4
    path = mesh_model(tmp_path / "model.npz", weights=weights / weights.sum(1, keepdims=True))
    mesh, m = load_body_mesh(path), _arrays(path)
    poses, trans, betas = rng.normal(0, 0.8, (2, 72)), rng.normal(0, 1, (2, 3)), rng.normal(0, 1, 10)
    shaped = m["v_template"] + m["shapedirs"][:, :, :10] @ betas
    rest = m["J_regressor"] @ shaped
    rotations, positions = _global_transforms(poses, trans, rest, _parents(24))
    expected = np.zeros((2, 192, 3))
    for t in range(2):
        features = (Rotation.from_rotvec(poses[t].reshape(24, 3)[1:]).as_matrix() - np.eye(3)).reshape(-1)
        for v in range(192):
            rest_v = shaped[v] + m["posedirs"][v] @ features
            expected[t, v] = sum(m["weights"][v, j] * (rotations[t, j] @ (rest_v - rest[j]) + positions[t, j])
                                 for j in range(24))
    np.testing.assert_allclose(pose_mesh(mesh, poses, trans, betas).vertices, expected, atol=1e-12)


def test_body_models_without_a_mesh_or_with_bad_arrays_fail_clearly(tmp_path):
    lacking = mesh_model(tmp_path / "joints_only.npz", weights=None, f=None)
    load_body_model(lacking)  # the joints alone need neither
    with pytest.raises(ValueError, match=r"joints_only\.npz: body model lacks weights, f; expected weights \(V, J\): "
                                         r"every vertex's skinning weights over the joints; f \(F, 3\): the vertex "
                                         r"indices of each triangle"):
        load_body_mesh(lacking)
    cases = [({"weights": np.ones((192, 23))}, r"weights has shape \(192, 23\); expected \(V, J\) with V = 192 "
                                               r"vertices and J = 24 joints"),
             ({"posedirs": np.zeros((192, 3, 9))}, r"posedirs has shape \(192, 3, 9\); expected \(V, 3, \(J - 1\) "
                                                   r"\* 9\)"),
             ({"f": np.array([[0, 1, 192]])}, r"f holds 1 faces of dtype int64; expected integer vertex indices "
                                              r"from 0 to 191"),
             ({"f": np.zeros((2, 3))}, r"f holds 2 faces of dtype float64; expected integer vertex indices")]
    for k, (replace, match) in enumerate(cases):
        with pytest.raises(ValueError, match=rf"bad{k}\.npz: " + match):
            load_body_mesh(mesh_model(tmp_path / f"bad{k}.npz", **replace))
    # Faces wound clockwise (an inside-out file) are turned round, so that culling keeps the outside.
    model = load_body_mesh(mesh_model(tmp_path / "model.npz"))
    inside_out = _arrays(tmp_path / "model.npz")["f"][:, ::-1]
    np.testing.assert_array_equal(load_body_mesh(mesh_model(tmp_path / "flipped.npz", f=inside_out)).faces,
                                  model.faces)

    rng = np.random.default_rng(5)
    for poses, trans, match in [(np.zeros((2, 75)), np.zeros((2, 3)), r"poses has shape \(2, 75\); expected \(T, P\) "
                                 r"axis-angle with P a multiple of 3 from 66 \(root and body\) to 72"),
                                (np.zeros((2, 70)), np.zeros((2, 3)), r"poses has shape \(2, 70\)"),
                                (np.zeros((2, 72)), np.zeros((3, 3)), r"trans has shape \(3, 3\); expected \(2, 3\)"),
                                (np.full((2, 72), np.nan), np.zeros((2, 3)), r"poses holds NaN or Inf")]:
        with pytest.raises(ValueError, match=r"clip\.npz: " + match):
            pose_mesh(model, poses, trans, rng.normal(0, 1, 10), source="clip.npz")


@pytest.mark.parametrize("key, index", [("weights", (5, 0)), ("posedirs", (7, 1, 2)),
                                        ("J_regressor", (30, 8 * 30))])  # row 30: a hand joint of SMPL-H
def test_a_mesh_with_nan_or_inf_fails_on_load_naming_the_file_and_the_key(tmp_path, key, index):
    """The skinning reads all of weights, posedirs and J_regressor (the hand rows too): a non-finite value there
    would give NaN vertices that the renderer blames on the motion."""
    arrays = _arrays(mesh_model(tmp_path / "ok.npz", joints_num=52))
    arrays[key] = arrays[key].copy()
    arrays[key][index] = np.inf
    load_body_model(mesh_model(tmp_path / "joints.npz", joints_num=52, **{key: arrays[key]}))  # joints 0-21: fine
    with pytest.raises(ValueError, match=rf"joints\.npz: {key} holds NaN or Inf; expected finite values"):
        load_body_mesh(tmp_path / "joints.npz")


def test_frames_at_keeps_real_time():
    np.testing.assert_array_equal(frames_at(9, 120.0, 30.0), [0, 4, 8])
    np.testing.assert_array_equal(frames_at(5, 20.0, 20.0), np.arange(5))
    picked = frames_at(3001, 59.94, 30.0)  # 50.05 s
    assert len(picked) == 1502 and picked[-1] == 2999 and np.all(np.diff(picked) >= 1)
