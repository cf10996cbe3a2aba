"""Behaviour of sample.py's outputs, render.py's input checks and reproduce.py's report that the other tests leave
open: what a sample without joints reports, which file each export writes and lists, the names and refusals of
render inputs, and which measured number each report row sets against which published one."""

from __future__ import annotations

import os
import re
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from test_output_contracts import _FakeOut, _walker, _writer

import utils.render_inputs as ri
import utils.sample_outputs as so
from utils.dataset_specs import get_dataset_spec
from utils.prompts import Prompt
from utils.recipes import Published
from utils.render_inputs import MotionFile, bvh_mapping, classify, load_statistics, output_stems
from utils.reproduce_report import compare, measured, read_result, real_values
from utils.sample_jobs import Generated, SampleJob
from utils.sample_manifest import SampleManifest
from utils.sample_outputs import SampleFiles, open_exports, sample_record


class _NoJoints:
    """The joints of a representation that has none (SMPL-X rotations): indexing them is a ValueError."""
    def __getitem__(self, index):
        raise ValueError("this representation has no joint positions")


# ----- utils/sample_outputs.py: what each sample's files and record say ----------------------------------------------

def test_a_non_finite_motion_without_joints_is_reported_not_finite(tmp_path):
    features = np.zeros((8, 263), np.float32)
    features[2, 5] = np.inf
    out = _FakeOut(features, 8, None)
    out.joints = _NoJoints()
    written = _writer(tmp_path, ["s"]).write("s", "t", Generated(out, None))
    assert written.finite is False and written.files["joints"] is None
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s_features.npy"]


def test_the_mesh_video_is_written_beside_the_stick_figure_never_over_it(tmp_path, monkeypatch):
    drawn = []

    def fake_plot(path, joints, chain, **kwargs):
        drawn.append(("stick", path))
        return path

    def fake_mesh(params, mesh, path, **kwargs):
        drawn.append(("mesh", params, path))
        return path

    monkeypatch.setattr(so, "plot_3d_motion", fake_plot)
    monkeypatch.setattr(so, "write_smpl", lambda path, *a, **k: None)
    monkeypatch.setattr(so, "render_amass_file", fake_mesh)
    manifest = SampleManifest(str(tmp_path), {"checkpoint": "x"}, ["s_features.npy"])
    writer = so.SampleWriter(str(tmp_path), get_dataset_spec("t2m"), manifest, so.Exports("gif", object(), object()),
                             "gif", render=True, bvh=False)
    written = writer.write("s", "t", Generated(_FakeOut(np.zeros((8, 263)), 8, _walker()), None))
    assert drawn == [("stick", str(tmp_path / "s.gif")),
                     ("mesh", str(tmp_path / "s_smpl.npz"), str(tmp_path / "s_mesh.gif"))]
    assert written.files["video"] == "s.gif" and written.files["mesh_video"] == "s_mesh.gif"
    assert written.files["smpl"] == "s_smpl.npz"


def test_a_sample_record_gives_its_length_in_seconds_and_whether_it_is_finite():
    out = SimpleNamespace(lengths=torch.tensor([30]))
    job = SampleJob(2, 0, Prompt("a person walks", 30, "--motion_length"), "s")
    written = SampleFiles({"features": "s_features.npy"}, False, None, {})
    record = sample_record(job, 11, Generated(out, None), written, get_dataset_spec("t2m"))
    assert record["length_frames"] == 30 and record["length_seconds"] == 1.5
    assert record["finite"] is False and record["index"] == 2 and record["seed"] == 11
    assert "export_errors" not in record and "smpl_fit" not in record


def test_a_mesh_video_alone_checks_the_format_before_reading_the_body_model(tmp_path, monkeypatch):
    """--mesh_video --no_render still draws a video: MP4 without ffmpeg is refused naming --format."""
    monkeypatch.setattr("utils.plot_script.ffmpeg_available", lambda: False)
    with pytest.raises(ValueError, match="--format mp4: MP4 output needs the ffmpeg executable"):
        open_exports("mp4", False, str(tmp_path / "missing_model.npz"), True)


# ----- utils/render_inputs.py: what render.py takes an input for, and where its videos go ----------------------------

def test_inputs_are_told_apart_by_shape_and_a_wider_file_of_a_sliced_dataset_is_features(tmp_path):
    spec = get_dataset_spec("t2m_67")
    np.save(tmp_path / "batch.npy", np.zeros((2, 5, 22, 3), np.float32))
    np.save(tmp_path / "wide.npy", np.zeros((5, 263), np.float32))
    np.save(tmp_path / "cut.npy", np.zeros((2, 5, 67), np.float32))
    assert classify(str(tmp_path / "batch.npy"), spec).kind == "joints"
    assert classify(str(tmp_path / "wide.npy"), spec).shape == (5, 263)
    assert classify(str(tmp_path / "cut.npy"), spec).kind == "features"


@pytest.mark.parametrize("shape, reason", [((5, 21, 3), r"have 21 joints, but dataset 't2m' has 22"),
                                           ((0, 5, 22, 3), r"holds no motion"),
                                           ((2, 2, 5, 263), r"is neither joints")])
def test_an_input_of_the_wrong_shape_is_refused_naming_the_file(tmp_path, shape, reason):
    path = tmp_path / "bad.npy"
    np.save(path, np.zeros(shape, np.float32))
    with pytest.raises(ValueError, match=rf"^{re.escape(str(path))}: .*{reason}"):
        classify(str(path), get_dataset_spec("t2m"))


def test_a_text_file_named_npy_is_refused_naming_the_file(tmp_path):
    path = tmp_path / "notes.npy"
    path.write_text("0 0 0\n")
    with pytest.raises(ValueError, match=rf"^{re.escape(str(path))}: not a \.npy file \(no NUMPY header\); expected"):
        classify(str(path), get_dataset_spec("t2m"))


def test_videos_go_into_out_with_one_name_per_motion_of_a_batch(tmp_path):
    out = str(tmp_path / "videos")
    assert output_stems(MotionFile("a/x.npy", "features", (3, 40, 263)), out) == [
        os.path.join(out, f"x_{i}") for i in range(3)]
    assert output_stems(MotionFile("a/x.npy", "joints", (3, 22, 3)), out) == [os.path.join(out, "x")]
    assert output_stems(MotionFile("a/y.bvh", "bvh", ()), out) == [os.path.join(out, "y")]


def test_features_are_cut_to_the_dataset_and_de_normalised_before_the_kinematics(tmp_path, monkeypatch):
    spec = get_dataset_spec("t2m_67")
    seen = []
    monkeypatch.setattr(ri, "features_to_joints_np", lambda features, spec: seen.append(features) or features)
    np.save(tmp_path / "f.npy", np.full((4, 263), 2.0, np.float32))
    item = ri.MotionFile(str(tmp_path / "f.npy"), "features", (4, 263))
    mean, std = np.full(67, 1.0, np.float32), np.full(67, 3.0, np.float32)
    ri.load_motions(item, spec, mean, std)
    assert seen[0].shape == (1, 4, 67) and (seen[0] == 7.0).all()  # 2 * std + mean
    np.save(tmp_path / "j.npy", np.zeros((2, 4, 22, 3), np.float32))
    joints = ri.load_motions(ri.MotionFile(str(tmp_path / "j.npy"), "joints", (2, 4, 22, 3)), spec, None, None)
    assert joints.shape == (2, 4, 22, 3)


def test_statistics_come_back_as_mean_then_std(tmp_path):
    np.save(tmp_path / "Mean.npy", np.zeros(263, np.float32))
    np.save(tmp_path / "Std.npy", np.ones(263, np.float32))
    mean, std = load_statistics(get_dataset_spec("t2m", str(tmp_path)))
    assert (mean == 0).all() and (std == 1).all()


def test_a_skeleton_without_a_bvh_input_is_refused():
    with pytest.raises(ValueError, match=r"--skeleton maps the joints of \.bvh inputs .* no input is a \.bvh file"):
        bvh_mapping([MotionFile("walk.npy", "joints", (4, 22, 3))], "lafan")


# ----- utils/reproduce_report.py: which measured number meets which published one ------------------------------------

def test_measured_keeps_only_the_protocols_metrics_with_their_intervals():
    result = {"protocol": {"metrics": {"fid": {"mean": 0.2, "ci": 0.01}, "loss": {"mean": 3.0, "ci": 0.1}},
                           "real": {"top1": {"mean": 0.51, "ci": 0.002}}},
              "reconstruction": {"mpjpe_seq_mm": 12.0}}
    assert measured(result) == {"fid": (0.2, 0.01), "mpjpe_seq_mm": (12.0, None)}
    assert real_values(result) == {"top1": 0.51}


def test_a_higher_is_better_metric_below_the_paper_is_worse():
    rows = compare((Published("top1", 0.52, "paper"),), {"top1": (0.50, 0.005)}, {"top1": 0.511})
    assert [(r.verdict, r.real, r.published) for r in rows] == [("below (worse)", 0.511, 0.52)]
    assert rows[0].difference == pytest.approx(-0.02)


def test_a_result_json_that_is_not_an_object_is_an_error_naming_the_file(tmp_path):
    path = tmp_path / "evaluate.json"
    path.write_text("[1, 2]")
    with pytest.raises(ValueError, match=rf"^{re.escape(str(path))}: cannot read the evaluation result \(a JSON list; "
                                         r"expected a JSON object\)"):
        read_result(str(path))
