"""Edit sources (``utils.editing``): features and joints ``.npy`` files, BVH files through a skeleton mapping and
AMASS files through a body model become the dataset's features; a joints source's place in its world
(``source_frame``) puts the canonical joints of an edit back where it stands; bad sources fail naming the file and
what was expected. The edits themselves are in test_edit_generation.py.
"""

from __future__ import annotations

import numpy as np
import pytest

from utils.bvh_export import write_bvh
from utils.checkpoint import file_sha256
from utils.dataset_specs import get_dataset_spec
from utils.editing import (
    FrameSpan,
    check_edit_flags,
    load_edit_source,
    read_edit_request,
    read_edit_source,
    source_frame,
)
from utils.motion_process import place_canonical, recover_from_ric
from utils.representation import joints_to_features


def test_a_joints_file_is_turned_into_the_datasets_features(tmp_path, source):
    """Joint positions (T, J, 3), as sample.py writes them, are a source too: HumanML3D's extraction gives features
    of the same motion (the synthetic motions are on the t2m skeleton already, so no bone changes), T frames for T."""
    joints = tmp_path / "walk.npy"
    positions = recover_from_ric(source, 22).astype(np.float32)
    np.save(joints, positions)
    features = load_edit_source(str(joints), get_dataset_spec("synthetic"))
    assert features.shape == (50, 263) and features.dtype == np.float32
    np.testing.assert_allclose(recover_from_ric(features, 22)[:-1], positions[:-1], atol=1e-5)
    assert load_edit_source(str(joints), get_dataset_spec("t2m_67")).shape == (50, 67)
    np.save(joints, np.zeros((40, 21, 3), dtype=np.float32))
    with pytest.raises(ValueError, match=r"looks like joint positions .* \(21 joints, the dataset's skeleton has 22\)"):
        load_edit_source(str(joints), get_dataset_spec("synthetic"))
    np.save(joints, np.ones((40, 22, 3), dtype=np.float32) * np.nan)
    with pytest.raises(ValueError, match="joint positions hold NaN or Inf"):
        load_edit_source(str(joints), get_dataset_spec("synthetic"))
    np.save(joints, np.ones((40, 22, 3), dtype=np.float32))
    with pytest.raises(ValueError, match="no feature extraction from joint positions here"):
        load_edit_source(str(joints), get_dataset_spec("motionmillion"))


def placed_joints(source: np.ndarray, yaw_deg: float, offset: tuple[float, float, float],
                  scale: float = 1.0) -> np.ndarray:
    """The source's joints, recovered in the canonical frame (frame 0's root at the origin facing +Z, floor at 0),
    scaled about that origin, turned by ``yaw_deg`` about +Y and moved by ``offset``: a motion in some world."""
    canonical = recover_from_ric(source, 22).astype(np.float64) * scale
    canonical[..., 1] -= canonical[..., 1].min()
    return place_canonical(canonical, np.radians(yaw_deg), np.asarray(offset))


@pytest.mark.parametrize("yaw_deg", [0.0, 37.0, -100.0, 170.0])
def test_a_joints_sources_frame_puts_canonical_joints_back_where_it_stands(source, yaw_deg):
    """Features keep no world placement; ``source_frame`` measures the turn and move that take the joints recovered
    from a joints source's features back onto it: the same motion in its own world, to float precision on the t2m
    skeleton."""
    spec = get_dataset_spec("synthetic")
    world = placed_joints(source, yaw_deg, (3.0, 0.25, -7.0))
    frame = source_frame(world, spec)
    facing = np.degrees(frame.yaw) - yaw_deg
    assert abs((facing + 180.0) % 360.0 - 180.0) < 1e-3
    np.testing.assert_allclose(frame.offset, [world[0, 0, 0], 0.25, world[0, 0, 2]], atol=1e-9)
    canonical = recover_from_ric(joints_to_features(world, spec), 22)
    np.testing.assert_allclose(frame.place(canonical), world, atol=1e-5)
    assert np.abs(canonical - world).max() > 1.0  # without it, metres away
    record = frame.record(spec.metres_per_unit)
    assert record["yaw_deg"] == pytest.approx(np.degrees(frame.yaw)) and record["offset_m"] == record["offset"]


def test_a_source_that_ends_going_down_stands_on_its_floor(source):
    """The extraction reads one frame more than the source, at the last frame's velocity, and floors the motion on
    the lowest joint of all of them: a motion that ends going down (here sinking 1 cm a frame) is floored on that
    extra frame, and its place is measured on the same frames, so it comes back exactly, not a frame's drop higher."""
    spec = get_dataset_spec("synthetic")
    world = placed_joints(source, 37.0, (3.0, 0.25, -7.0))
    world[..., 1] -= 0.01 * np.arange(len(world))[:, None]
    placed = source_frame(world, spec).place(recover_from_ric(joints_to_features(world, spec), 22))
    np.testing.assert_allclose(placed, world, atol=1e-5)


def test_a_one_frame_joints_source_has_a_frame(tmp_path, source):
    """Where a source stands needs frame 0 and the floor only: a one-frame joints file (a whole token for a
    tokenizer that does not downsample) stands where its frame does, as it would in a longer motion."""
    spec = get_dataset_spec("synthetic")
    world = placed_joints(source, 37.0, (3.0, 0.25, -7.0))
    np.save(tmp_path / "pose.npy", world[:1])
    request = read_edit_request(str(tmp_path / "pose.npy"), ["0:1"], None, spec, 1)
    assert request.frame.yaw == pytest.approx(source_frame(world, spec).yaw, abs=1e-9)
    np.testing.assert_allclose(request.frame.offset, [world[0, 0, 0], world[0, :, 1].min(), world[0, 0, 2]])


def test_a_source_on_another_skeleton_keeps_its_start_and_floor(source):
    """A skeleton 10% larger than the target is retargeted, which scales the root path; frame 0's root xz and the
    floor still land exactly on the source's."""
    spec = get_dataset_spec("synthetic")
    world = placed_joints(source, 60.0, (-2.0, 1.5, 4.0), scale=1.1)
    frame = source_frame(world, spec)
    placed = frame.place(recover_from_ric(joints_to_features(world, spec), 22))
    np.testing.assert_allclose(placed[0, 0, [0, 2]], world[0, 0, [0, 2]], atol=1e-9)
    assert placed[..., 1].min() == pytest.approx(1.5, abs=1e-5) and world[..., 1].min() == pytest.approx(1.5)


def test_a_bvh_file_is_a_source_through_its_skeleton_mapping(tmp_path, source):
    """A BVH file is read as prepare_data.py bvh imports it (mapped onto SMPL-22, metres, Y up, the dataset's fps):
    the project's own export, mapped with smpl22, gives back the joints' features and their place."""
    spec = get_dataset_spec("synthetic")
    world = placed_joints(source, 37.0, (3.0, 0.25, -7.0))
    write_bvh(tmp_path / "walk.bvh", world, fps=20)
    features, joints = read_edit_source(str(tmp_path / "walk.bvh"), spec, skeleton="smpl22")
    np.testing.assert_allclose(joints, world, atol=1e-4)
    np.testing.assert_allclose(features, joints_to_features(world, spec), atol=1e-3)
    request = read_edit_request(str(tmp_path / "walk.bvh"), ["8:24"], None, spec, 4, skeleton="smpl22")
    assert request.frame.yaw == pytest.approx(np.radians(37.0), abs=1e-5)
    np.testing.assert_allclose(request.frame.offset, [3.0, 0.25, -7.0], atol=1e-4)
    # At 40 fps (Frame Time 0.025) the clip is resampled to the dataset's 20 fps by time stamps.
    write_bvh(tmp_path / "fast.bvh", world, fps=40)
    assert load_edit_source(str(tmp_path / "fast.bvh"), spec, skeleton="smpl22").shape == (25, 263)


def test_a_bvh_source_needs_two_frames_as_an_amass_source_does(tmp_path, source):
    """A motion-capture source of one frame is refused naming the file, before its joints become features (the
    bone check of its mapping needs two frames)."""
    write_bvh(tmp_path / "pose.bvh", recover_from_ric(source, 22)[:1], fps=20)
    with pytest.raises(ValueError, match=r"--edit_source .*pose\.bvh: the MOTION section has 1 frame\(s\); need at "
                                         r"least 2"):
        read_edit_source(str(tmp_path / "pose.bvh"), get_dataset_spec("synthetic"), skeleton="smpl22")
    header = (tmp_path / "pose.bvh").read_text().split("Frames:")[0]
    (tmp_path / "empty.bvh").write_text(header + "Frames: 0\nFrame Time: 0.05\n")
    with pytest.raises(ValueError, match=r"--edit_source .*empty\.bvh: the MOTION section has 0 frames; need at "
                                         r"least 2"):
        read_edit_source(str(tmp_path / "empty.bvh"), get_dataset_spec("synthetic"), skeleton="smpl22")


def test_an_amass_file_is_a_source_through_its_body_model(tmp_path):
    """An AMASS .npz is read as prepare_data.py amass imports it (SMPL joints, Y up, resampled to the dataset's
    fps), with the body model it names."""
    from test_amass import _body_model, _motion, _save

    spec = get_dataset_spec("synthetic")
    model = _body_model(tmp_path / "model.npz")
    path = _save(tmp_path / "walk_poses.npz", fps=60.0, **_motion(120, 60.0, heading=0.7))
    features, joints = read_edit_source(str(path), spec, body_models=str(model))
    assert joints.shape == (40, 22, 3) and features.shape == (40, 263)
    request = read_edit_request(str(path), None, ["0.5:1"], spec, 4, body_models=str(model))
    assert request.record(4)["reader"] == {"edit_body_model": str(model), "path": str(model),
                                           "sha256": file_sha256(str(model))}
    np.testing.assert_allclose(request.frame.offset[[0, 2]], joints[0, 0, [0, 2]], atol=1e-9)
    assert request.frame.offset[1] == pytest.approx(joints[..., 1].min())
    # The body model's bones are not the dataset's: the same motion in the same place, on the dataset's bones.
    canonical = recover_from_ric(features, 22)
    np.testing.assert_allclose(request.frame.place(canonical), joints, atol=0.05)
    assert np.abs(canonical - joints).max() > 1.0
    (tmp_path / "models" / "smplh" / "male").mkdir(parents=True)
    _body_model(tmp_path / "models" / "smplh" / "male" / "model.npz")
    assert load_edit_source(str(path), spec, body_models=str(tmp_path / "models")).shape == (40, 263)
    # A body model that is not there is named with the flag that gave it.
    with pytest.raises(FileNotFoundError, match=r"walk_poses\.npz \(read with --edit_body_model .*nope\.npz\): "
                                                r".*no such body model"):
        load_edit_source(str(path), spec, body_models=str(tmp_path / "nope.npz"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match=r"--edit_body_model .*empty\): .*no smplh body model for gender"):
        load_edit_source(str(path), spec, body_models=str(tmp_path / "empty"))


@pytest.mark.parametrize("name, kwargs, message", [
    ("walk.bvh", {}, r"a \.bvh source needs --edit_skeleton, the mapping of its joints onto SMPL-22"),
    ("walk.npz", {}, r"an AMASS \.npz source needs --edit_body_model"),
    ("walk.npy", {"skeleton": "smpl22"}, r"--edit_skeleton is for a \.bvh source, not a \.npy file"),
    ("walk.bvh", {"body_models": "m.npz"}, r"--edit_body_model is for a \.npz source, not a \.bvh file"),
    ("walk.fbx", {}, r"walk\.fbx: expected a \.npy file of features .* or a \.bvh or an AMASS \.npz motion"),
    ("walk.bvh", {"skeleton": "nope"}, r"walk\.bvh: unknown skeleton 'nope': expected one of \[.*'smpl22'"),
])
def test_motion_capture_sources_name_what_they_need(tmp_path, source, name, kwargs, message):
    write_bvh(tmp_path / "walk.bvh", recover_from_ric(source, 22), fps=20)
    for other in ("walk.npz", "walk.npy", "walk.fbx"):
        (tmp_path / other).write_bytes(b"")
    with pytest.raises(ValueError, match=message):
        load_edit_source(str(tmp_path / name), get_dataset_spec("synthetic"), **kwargs)


def test_motion_capture_sources_need_an_smpl22_dataset_and_a_source(tmp_path, source):
    write_bvh(tmp_path / "walk.bvh", recover_from_ric(source, 22), fps=20)
    with pytest.raises(ValueError, match=r"walk\.bvh: a \.bvh file becomes SMPL-22 joints in metres and then "
                                         r"HumanML3D features, which dataset 'kit' \(21 joints, 0\.001 m per unit"):
        load_edit_source(str(tmp_path / "walk.bvh"), get_dataset_spec("kit"), skeleton="smpl22")
    with pytest.raises(ValueError, match=r"which dataset 'motionmillion' \(22 joints, 1 m per unit, vector_272 "
                                         r"features\) does not use"):
        load_edit_source(str(tmp_path / "walk.bvh"), get_dataset_spec("motionmillion"), skeleton="smpl22")
    with pytest.raises(ValueError, match="--edit_skeleton / --edit_body_model read a .bvh or AMASS .npz "
                                         "--edit_source; add --edit_source"):
        check_edit_flags(None, None, None, skeleton="bandai")


def test_joints_read_from_a_capture_file_that_fail_extraction_name_the_reader(tmp_path, source, monkeypatch):
    import utils.editing

    write_bvh(tmp_path / "walk.bvh", recover_from_ric(source, 22), fps=20)

    def refuse(joints, spec):
        raise ValueError("frame 3: the hips and shoulders span no direction")

    monkeypatch.setattr(utils.editing, "joints_to_features", refuse)
    with pytest.raises(ValueError, match=r"walk\.bvh: the SMPL-22 joints read from this \.bvh file cannot be turned "
                                         r"into .*\(frame 3: the hips .*\); check the mapping that read it"):
        load_edit_source(str(tmp_path / "walk.bvh"), get_dataset_spec("synthetic"), skeleton="smpl22")


def test_bad_source_files_fail_naming_file_and_shape(tmp_path, source):
    spec = get_dataset_spec("synthetic")
    joints = tmp_path / "walk.npy"
    np.save(joints, np.zeros((40, 22, 3), dtype=np.float32))
    with pytest.raises(ValueError, match=r"walk\.npy: shape \(40, 22, 3\) looks like joint positions .* "
                                         r"features \(T, 263\).*every joint must differ from its parent"):
        load_edit_source(str(joints), spec)
    narrow = tmp_path / "narrow.npy"
    np.save(narrow, np.zeros((40, 67), dtype=np.float32))
    with pytest.raises(ValueError, match=r"narrow\.npy: got a float32 array of shape \(40, 67\); expected features "
                                         r"\(T, 263\)"):
        load_edit_source(str(narrow), spec)
    bvh = tmp_path / "walk.bvh"
    bvh.write_text("HIERARCHY\n")
    with pytest.raises(ValueError, match=r"walk\.bvh: a \.bvh source needs --edit_skeleton"):
        load_edit_source(str(bvh), spec)
    with pytest.raises(ValueError, match=r"--edit_source .*walk\.bvh: no MOTION section"):
        load_edit_source(str(bvh), spec, skeleton="smpl22")
    with pytest.raises(FileNotFoundError, match="missing.npy"):
        load_edit_source(str(tmp_path / "missing.npy"), spec)
    good = tmp_path / "good.npy"
    np.save(good, source)
    with pytest.raises(ValueError, match="need --edit_source"):
        read_edit_request(None, ["0:8"], None, spec, 4)
    with pytest.raises(ValueError, match="needs the spans"):
        read_edit_request(str(good), None, None, spec, 4)
    with pytest.raises(ValueError, match=r"good\.npy: edit span \[40, 60\) reaches past"):
        read_edit_request(str(good), ["40:60"], None, spec, 4)
    request = read_edit_request(str(good), [":8"], ["2:"], spec, 4)        # synthetic: 20 fps
    assert request.spans == [FrameSpan(0, 8), FrameSpan(40, 50)]
    assert request.record(4)["spans_tokens"] == [[0, 2], [10, 12]]
