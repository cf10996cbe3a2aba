"""Body-model contracts no other test pinned: AMASS betas, NaN checks and model type, SMPL export frame rates, the
mesh's face winding, kintree refusal and translation per chunk, video frame rate and caption times, the floor and
the rasteriser."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest


def _amass_file(path: Path, frames: int = 4, width: int = 156, **override) -> Path:
    arrays = {"poses": np.zeros((frames, width)), "trans": np.zeros((frames, 3)), "betas": np.zeros(16),
              "gender": np.array("female"), "mocap_framerate": np.array(30.0)}
    arrays.update(override)
    np.savez(path, **{k: v for k, v in arrays.items() if v is not None})
    return path


def test_betas_stored_as_one_row_are_read(tmp_path):
    """Betas of shape (1, n), as some converters write them, are read as (n,)."""
    from utils.amass_import import read_amass_motion
    betas = np.arange(16, dtype=np.float64)[None] / 10
    motion = read_amass_motion(_amass_file(tmp_path / "m.npz", betas=betas))
    assert motion.betas.shape == (16,)
    np.testing.assert_array_equal(motion.betas, betas[0])


def test_nan_in_trans_is_refused_naming_file_field_and_frame(tmp_path):
    """NaN in trans fails naming the file, the field and the frame."""
    from utils.amass_import import read_amass_motion
    trans = np.zeros((4, 3))
    trans[2, 1] = np.nan
    with pytest.raises(ValueError, match=r"m\.npz: trans hold NaN or Inf in frame 3 of 4"):
        read_amass_motion(_amass_file(tmp_path / "m.npz", trans=trans))


def test_surface_model_type_names_the_model_of_any_pose_width(tmp_path):
    """A file's surface_model_type names the model even when the pose width says nothing
    (66 body columns only) or something else."""
    from utils.amass_import import read_amass_motion
    m66 = read_amass_motion(_amass_file(tmp_path / "a.npz", width=66, surface_model_type=np.array("smplx")))
    assert m66.model_type == "smplx"
    m156 = read_amass_motion(_amass_file(tmp_path / "b.npz", width=156, surface_model_type=np.array("SMPLX")))
    assert m156.model_type == "smplx"
    plain = read_amass_motion(_amass_file(tmp_path / "c.npz", width=66))
    assert plain.model_type is None and plain.gender == "female" and plain.fps == 30.0


def test_nan_in_hand_columns_is_not_refused(tmp_path):
    """Only the root and body columns (the first 66) move the 22 joints and are checked; NaN in
    the hand columns of an SMPL-H file must not refuse the file."""
    from utils.amass_import import read_amass_motion
    poses = np.zeros((4, 156))
    poses[1, 100] = np.nan
    motion = read_amass_motion(_amass_file(tmp_path / "m.npz", poses=poses))
    assert motion.poses.shape == (4, 156) and np.isfinite(motion.poses[:, :66]).all()


def _smpl22_rest() -> np.ndarray:
    from utils.paramutil import T2M_TGT_OFFSETS
    from utils.smpl_body import SMPL22_PARENTS
    rest = np.zeros((22, 3))
    for j in range(1, 22):
        rest[j] = rest[SMPL22_PARENTS[j]] + T2M_TGT_OFFSETS[j]
    return rest


def _body(num_joints: int = 52):
    from utils.smpl_body import SMPL22_PARENTS, SmplBody
    return SmplBody(path="body.npz", joint_template=_smpl22_rest(), joint_shapedirs=np.zeros((22, 3, 10)),
                    parents=SMPL22_PARENTS, num_joints=num_joints)


@pytest.mark.parametrize("fps", [0.0, -20.0, float("nan"), float("inf")])
def test_write_smpl_refuses_a_frame_rate_that_is_not_positive(tmp_path, fps):
    """A non-positive or non-finite fps is refused naming the input, and nothing is written."""
    from utils.smpl_body import z_up_to_y_up
    from utils.smpl_export import write_smpl
    joints = z_up_to_y_up(np.broadcast_to(_smpl22_rest(), (3, 22, 3)))
    with pytest.raises(ValueError, match=r"gen\.npy: fps .*expected a positive frame rate"):
        write_smpl(tmp_path / "m.npz", joints, _body(), fps, source="gen.npy")
    assert not (tmp_path / "m.npz").exists()


@pytest.mark.parametrize("num_joints", [52, 55])
def test_write_smpl_records_a_fractional_frame_rate_as_given(tmp_path, num_joints):
    """Mocap_framerate (and SMPL-X's mocap_frame_rate) hold the rate as given (29.97 stays 29.97),
    and the rest pose fits exactly with zero rotations and the pelvis translation."""
    from utils.smpl_body import z_up_to_y_up
    from utils.smpl_export import write_smpl
    rest = _smpl22_rest()
    joints = z_up_to_y_up(np.broadcast_to(rest, (3, 22, 3)) + np.array([0.0, 0.0, 0.5]))
    report = write_smpl(tmp_path / "m.npz", joints, _body(num_joints), 29.97)
    with np.load(tmp_path / "m.npz") as data:
        assert float(data["mocap_framerate"]) == pytest.approx(29.97, abs=1e-12)
        if num_joints == 55:
            assert float(data["mocap_frame_rate"]) == pytest.approx(29.97, abs=1e-12)
        np.testing.assert_allclose(data["poses"], 0.0, atol=1e-9)
        np.testing.assert_allclose(data["trans"], np.broadcast_to([0.0, 0.0, 0.5], (3, 3)), atol=1e-12)
    assert report.max_error_mm < 1e-6


def _tetra_faces(pts: np.ndarray) -> np.ndarray:
    """The 4 triangles of a tetrahedron (4, 3) wound counter-clockwise seen from outside, independent of the code."""
    faces = []
    centre = pts.mean(0)
    for tri in ((0, 1, 2), (0, 1, 3), (0, 2, 3), (1, 2, 3)):
        p = pts[list(tri)]
        outward = np.cross(p[1] - p[0], p[2] - p[0]) @ (p.mean(0) - centre) > 0
        faces.append(tri if outward else tri[::-1])
    return np.array(faces)


def _mesh_model(path: Path, reverse_faces: bool = False, parents_extra=(20, 21)) -> Path:
    """An SMPL-like model (24 joints): a small tetrahedron around each joint, every vertex weighted to its joint,
    J_regressor averaging each tetrahedron, no shape or pose blend shapes."""
    from utils.smpl_body import SMPL22_PARENTS
    parents = list(SMPL22_PARENTS) + list(parents_extra)
    joints_num = len(parents)
    rest = np.concatenate([_smpl22_rest(), _smpl22_rest()[[20, 21]] + [0.0, -0.05, 0.0]])
    tet = 0.02 * np.array([[1.0, 1, 1], [1, -1, -1], [-1, 1, -1], [-1, -1, 1]])
    v_template = (rest[:, None] + tet[None]).reshape(-1, 3)
    faces = np.concatenate([_tetra_faces(tet) + 4 * j for j in range(joints_num)])
    if reverse_faces:
        faces = faces[:, ::-1]
    kintree = np.stack([[4294967295] + parents[1:], range(joints_num)]).astype(np.uint32)
    np.savez(path, v_template=v_template, shapedirs=np.zeros((len(v_template), 3, 10)),
             J_regressor=np.kron(np.eye(joints_num), np.full((1, 4), 0.25)), kintree_table=kintree,
             weights=np.kron(np.eye(joints_num), np.ones((4, 1))), f=faces.astype(np.int32))
    return path


def _signed_volume(v, f):
    a, b, c = v[f[:, 0]], v[f[:, 1]], v[f[:, 2]]
    return float(np.einsum("fi,fi->", a, np.cross(b, c)) / 6.0)


@pytest.mark.parametrize("reverse", [False, True])
def test_loaded_faces_are_counter_clockwise_seen_from_outside(tmp_path, reverse):
    """Faces stored clockwise are turned round, faces stored counter-clockwise kept as they are,
    so that back-face culling keeps the outside of the body."""
    from utils.smpl_mesh import load_body_mesh
    path = _mesh_model(tmp_path / "m.npz", reverse_faces=reverse)
    mesh = load_body_mesh(path)
    with np.load(path) as data:
        stored = data["f"].astype(np.int64)
    assert _signed_volume(mesh.v_template, mesh.faces) > 0
    np.testing.assert_array_equal(mesh.faces, stored[:, ::-1] if reverse else stored)


def test_a_hand_joint_that_is_its_own_parent_is_refused_on_load(tmp_path):
    """A kintree_table giving a hand joint itself as parent is refused on load naming
    the file and the joint."""
    from utils.smpl_mesh import load_body_mesh
    path = _mesh_model(tmp_path / "m.npz", parents_extra=(20, 23))
    with pytest.raises(ValueError, match=r"m\.npz: kintree_table gives joint 23 the parent 23"):
        load_body_mesh(path)


def test_root_translation_of_every_frame_past_the_first_chunk(tmp_path):
    """Frames past the first chunk of 32 get their own translation (the zero pose puts the pelvis
    at rest[0] + trans[t] and each vertex at its template position + trans[t])."""
    from utils.smpl_mesh import load_body_mesh, pose_mesh
    mesh = load_body_mesh(_mesh_model(tmp_path / "m.npz"))
    frames = 70
    trans = np.stack([np.linspace(0, 7, frames), np.zeros(frames), np.full(frames, 0.9)], -1)
    posed = pose_mesh(mesh, np.zeros((frames, 66)), trans, np.zeros(10))
    np.testing.assert_allclose(posed.joints[:, 0], _smpl22_rest()[0] + trans, atol=1e-12)
    np.testing.assert_allclose(posed.vertices, mesh.v_template[None] + trans[:, None], atol=1e-12)


def _capture_render(monkeypatch):
    import utils.smpl_mesh as sm
    seen = {}

    def fake(save_path, mesh, poses, trans, betas, fps, source="", **plot):
        seen.update(poses=poses, trans=trans, fps=fps, captions=plot.get("captions"))
        return save_path
    monkeypatch.setattr(sm, "render_smpl", fake)
    return seen


def test_a_60_fps_file_is_drawn_at_30_fps_in_real_time_with_captions_at_their_times(tmp_path, monkeypatch):
    """A 60 fps parameter file is drawn at MAX_VIDEO_FPS (30) by default, every second frame,
    and a caption starting at file frame 30 (0.5 s) starts at video frame 15 (0.5 s)."""
    from types import SimpleNamespace

    from utils.smpl_mesh import render_amass_file
    frames = 61
    trans = np.stack([np.arange(frames, dtype=np.float64), np.zeros(frames), np.zeros(frames)], -1)
    path = _amass_file(tmp_path / "m.npz", frames=frames, trans=trans, mocap_framerate=np.array(60.0))
    seen = _capture_render(monkeypatch)
    render_amass_file(path, SimpleNamespace(num_joints=52, path="model.npz"), str(tmp_path / "v.mp4"),
                      captions=[(0, "a"), (30, "b")])
    assert seen["fps"] == 30.0
    np.testing.assert_array_equal(seen["trans"][:, 0], np.arange(0, 61, 2))
    assert seen["captions"] == [(0, "a"), (15, "b")]


def test_the_floor_is_lowered_to_the_lowest_vertex():
    """The floor sits at the lowest vertex of the motion, so a body raised 1 m in the data is
    drawn exactly as the same body standing on y = 0."""
    from utils.mesh_render import MeshScene
    tet = np.array([[0.0, 0.0, 0.0], [0.4, 0.0, 0.0], [0.0, 1.6, 0.0], [0.0, 0.0, 0.4]])
    faces = _tetra_faces(tet)
    low = MeshScene(tet[None], faces, size=64)
    high = MeshScene((tet + [0.0, 1.0, 0.0])[None], faces, size=64)
    assert high.vertices[..., 1].min() == 0.0
    np.testing.assert_array_equal(low.frame(0), high.frame(0))


def test_rasterize_fills_exactly_the_pixel_centres_inside_a_triangle():
    """A pixel belongs to a triangle when its centre is inside it: checked against an
    independent test of the three edge functions, for a triangle none of whose edges is axis-aligned (so the bounding
    box clips none of them) and no pixel centre on an edge."""
    from utils.mesh_render import rasterize
    tri = np.array([[1.13, 1.07], [4.31, 9.61], [9.57, 3.29]])  # counter-clockwise as seen with y down
    raster = rasterize(tri, np.ones(3), np.array([[0, 1, 2]]), 12, 12)
    i, j = np.mgrid[0:12, 0:12]
    px, py = j + 0.5, i + 0.5

    def edge(a, b):
        return (b[0] - a[0]) * (py - a[1]) - (b[1] - a[1]) * (px - a[0])
    e = [edge(tri[0], tri[1]), edge(tri[1], tri[2]), edge(tri[2], tri[0])]
    expected = (e[0] < 0) & (e[1] < 0) & (e[2] < 0)
    assert 10 < expected.sum() < 100
    np.testing.assert_array_equal(raster.face == 0, expected)
    assert np.all(raster.depth[expected] == 1.0)
