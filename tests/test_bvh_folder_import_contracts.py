"""The BVH folder import (``utils.bvh_import``): a long clip's chunks, the clips.csv provenance, generic captions, the
statistics over every motion, clean staging, mirrored ids, label warnings, skipped and refused files with messages
naming the clip, and the body-extent checks."""

import csv
import logging

import numpy as np
import pytest

from utils import bvh_import
from utils.bvh_export import write_bvh
from utils.bvh_import import _NECK, _PELVIS, SourceClip, body_extent, import_bvh_folder, import_clip_folder, mirrored_id
from utils.datasets import read_split
from utils.synthetic import synthesize_motion


def _walk(seed: int = 5, kind: str = "walk") -> np.ndarray:
    return synthesize_motion(np.random.default_rng(seed), kind).joints


def _long_walk(frames: int) -> np.ndarray:
    """A walk of ``frames`` frames: the synthetic walk followed by its own time reversal, as often as needed."""
    walk = _walk()
    loop = np.concatenate([walk, walk[-2:0:-1]])
    return np.concatenate([loop] * (frames // len(loop) + 1))[:frames]


@pytest.fixture(scope="module")
def imported(tmp_path_factory):
    """Three clips written at 30 fps and imported at 20 fps: ``long`` (chunked), ``jump`` and ``wave``."""
    root = tmp_path_factory.mktemp("import")
    src = root / "mocap"
    src.mkdir()
    write_bvh(src / "long.bvh", _long_walk(451), fps=30)  # 15 s -> 301 joint frames at 20 fps -> 2 chunks
    write_bvh(src / "jump.bvh", _walk(8, "jump"), fps=30)
    write_bvh(src / "wave.bvh", _walk(9, "walk_while_wave"), fps=30)
    summary = import_bvh_folder(str(src), str(root / "Mocap"), "smpl22", target_fps=20.0)
    with open(root / "Mocap" / "clips.csv") as f:
        rows = {row["id"]: row for row in csv.DictReader(f)}
    return summary, root / "Mocap", rows


def test_a_long_clip_becomes_chunks_that_count_as_motions_of_one_clip(imported):
    summary, out, rows = imported
    assert summary.clips == 3 and summary.clip_ids == ["jump", "long", "wave"]
    assert summary.chunked_clips == ["long"] and summary.motions == 4
    assert sorted(rows) == ["jump", "long_c0", "long_c1", "wave"]


def test_clips_csv_records_the_source_rate_frames_and_seconds(imported):
    summary, out, rows = imported
    c0, c1 = rows["long_c0"], rows["long_c1"]
    assert c0["source"] == c1["source"] == "long.bvh"
    assert float(c0["source_fps"]) == 30.0 and int(c0["source_frames"]) == 451
    assert float(c0["fps"]) == 20.0
    assert (float(c0["start_s"]), float(c0["end_s"]), float(c1["start_s"]), float(c1["end_s"])) == (0.0, 7.5, 7.5,
                                                                                                    15.0)
    for motion_id, row in rows.items():
        features = np.load(out / "new_joint_vecs" / f"{motion_id}.npy")
        assert int(row["frames"]) == len(features)
        assert float(row["end_s"]) - float(row["start_s"]) == pytest.approx(len(features) / 20.0)
    assert summary.frames == sum(int(row["frames"]) for row in rows.values())


def test_clips_captioned_only_by_the_words_of_a_plain_name_are_listed_as_generic(imported):
    summary, out, rows = imported
    assert summary.captions_from_names == 3 and summary.captions_from_labels == 0
    assert summary.generic_captions == ["jump", "long", "wave"]


def test_mean_and_std_cover_every_motion_not_only_train(imported):
    summary, out, rows = imported
    ids = read_split(str(out), "all")
    assert sorted(ids) == sorted(rows)
    frames = np.concatenate([np.load(out / "new_joint_vecs" / f"{i}.npy") for i in ids]).astype(np.float64)
    np.testing.assert_allclose(np.load(out / "Mean.npy"), frames.mean(0), rtol=1e-5, atol=1e-6)


def test_a_successful_import_leaves_no_staging_folder(imported):
    summary, out, rows = imported
    assert [p.name for p in out.parent.iterdir() if p.name.startswith("Mocap")] == ["Mocap"]


def test_mirrored_ids_keep_their_folder():
    assert mirrored_id("walk") == "Mwalk"
    assert mirrored_id("CMU/01/walk_01") == "CMU/01/Mwalk_01"


def test_label_ids_that_match_no_clip_are_named_in_a_warning(tmp_path, caplog):


    src = tmp_path / "mocap"
    src.mkdir()
    write_bvh(src / "jump.bvh", _walk(8, "jump"), fps=20)
    labels = tmp_path / "labels.csv"
    labels.write_text("id,caption\njump,a person jumps\nghost,a person floats\n")
    with caplog.at_level(logging.WARNING, logger="utils.bvh_import"):
        summary = import_bvh_folder(str(src), str(tmp_path / "Out"), "smpl22", labels=str(labels))
    assert summary.captions_from_labels == 1 and summary.captions_from_names == 0
    warned = [r.getMessage() for r in caplog.records if "label ids match no clip" in r.getMessage()]
    assert len(warned) == 1 and "1 label ids" in warned[0] and "ghost" in warned[0] and "jump'" not in warned[0]


def _import_with_reader(tmp_path, reader, names=("a.dat", "b.dat")):
    src = tmp_path / "src"
    src.mkdir()
    for name in names:
        (src / name).write_text("x")
    files = sorted(src.iterdir())
    return import_clip_folder(files, str(src), str(tmp_path / "Out"), reader, target_fps=20.0, labels=None, seed=0,
                              progress=None, lying_hint="check the up axis", size_hint="check the unit")


def test_a_file_without_motion_is_skipped_and_listed(tmp_path):
    def reader(path):
        return None if path.name == "a.dat" else SourceClip(path.stem, path.stem, _walk()[:50], 20.0, 50)

    summary = _import_with_reader(tmp_path, reader)
    assert summary.skipped == ["a.dat"] and summary.clip_ids == ["b"] and summary.clips == 1
    assert not (tmp_path / "Out" / "new_joint_vecs" / "a.npy").exists()


def test_a_one_frame_clip_is_skipped_as_too_brief(tmp_path):
    def reader(path):
        frames = 1 if path.name == "a.dat" else 50
        return SourceClip(path.stem, path.stem, _walk()[:frames], 20.0, frames)

    summary = _import_with_reader(tmp_path, reader)
    assert summary.too_brief == ["a.dat (1 frame)"] and summary.clip_ids == ["b"]


def test_a_folder_without_any_motion_is_refused_naming_the_files(tmp_path):
    with pytest.raises(ValueError, match=r"src: none of the 2 files holds a motion \(skipped: \['a\.dat', 'b\.dat'\]"):
        _import_with_reader(tmp_path, lambda path: None)
    assert not (tmp_path / "Out").exists()


def test_an_error_of_the_feature_pass_names_the_clip_file(tmp_path, monkeypatch):
    def failing(*args, **kwargs):
        raise ValueError("feature extraction produced non-finite values")

    monkeypatch.setattr(bvh_import, "write_motion", failing)

    def reader(path):
        return SourceClip(path.stem, path.stem, _walk()[:50], 20.0, 50)

    with pytest.raises(ValueError, match=r"^/.*src/a\.dat: feature extraction produced non-finite values$"):
        _import_with_reader(tmp_path, reader)


def test_a_clip_named_like_another_clips_chunk_is_refused(tmp_path):
    """``long`` is split into ``long_c0`` and ``long_c1``; a clip file named ``long_c0`` would overwrite the first
    chunk, so the import stops naming the id twice written."""
    src = tmp_path / "mocap"
    src.mkdir()
    write_bvh(src / "long.bvh", _long_walk(301), fps=20)
    write_bvh(src / "long_c0.bvh", _walk()[:50], fps=20)
    with pytest.raises(ValueError, match=r"long_c0\.bvh: motion id 'long_c0' would be written twice"):
        import_bvh_folder(str(src), str(tmp_path / "Out"), "smpl22")
    assert not list(tmp_path.glob("Out*"))


def test_body_extent_of_a_line_and_of_a_point_trunk():
    """Joints on one vertical line have no width, so they do not lie (ratio infinite); a trunk of no length has a
    rise of 0."""
    joints = np.zeros((3, 22, 3))
    joints[:, :, 1] = np.linspace(0.0, 1.7, 22)
    extent = body_extent(joints)
    assert extent.height == pytest.approx(1.7) and extent.span == 0.0
    assert extent.height_ratio == np.inf and not extent.lies_down
    joints[:, _NECK] = joints[:, _PELVIS]
    assert body_extent(joints).trunk_rise == 0.0


def test_body_extent_measures_height_on_y_and_span_on_x_or_z():
    joints = np.zeros((4, 22, 3))
    joints[:, :, 1] = np.linspace(0.0, 1.5, 22)
    joints[:, 5, 2] = 0.5  # the widest extent is along Z
    joints[:, 6, 0] = 0.3
    joints[:, _PELVIS] = [0.0, 0.9, 0.0]
    joints[:, _NECK] = [0.0, 1.4, 0.0]
    joints[:, 10, 1] = 0.0  # a foot on the floor
    extent = body_extent(joints)
    assert (extent.height, extent.span, extent.height_ratio) == pytest.approx((1.5, 0.5, 3.0))
    assert extent.trunk_rise == pytest.approx(1.0)
