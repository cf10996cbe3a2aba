"""Contracts of sample.py's job planning, manifest and output writing (utils/sample_jobs.py,
utils/sample_manifest.py, utils/sample_outputs.py) checked on tiny stand-ins, without a model."""

from __future__ import annotations

import json
import os
import re
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from test_output_contracts import _FakeGenerator, _FakeOut, _walker, _writer

import utils.sample_outputs as so
from utils.checkpoint import file_sha256
from utils.dataset_specs import get_dataset_spec
from utils.editing import FrameSpan
from utils.motion_process import features_to_joints
from utils.plot_script import RenderError
from utils.prompts import Prompt
from utils.sample_jobs import (
    Generated,
    SampleJob,
    generate_sample,
    given_lengths,
    left_to_right,
    plan_samples,
    sample_frames,
)
from utils.sample_manifest import RUN_KEYS, SampleManifest
from utils.sample_outputs import Exports, SampleFiles, SampleWriter, open_exports, run_record, sample_record
from utils.smpl_export import FitReport


def _old_manifest(folder, data):
    (folder / "manifest.json").write_text(json.dumps(data), encoding="utf-8")


def _sample(prompt, run, features):
    return {"prompt": prompt, "run": run, "files": {"features": features}}


# ----- utils/sample_manifest.py: reading an earlier manifest ---------------------------------------------------------

def test_a_manifest_whose_samples_is_not_a_list_is_moved_aside_not_emptied(tmp_path):
    """A manifest whose 'samples' is an object is unreadable: it is moved aside, not silently replaced."""
    _old_manifest(tmp_path, {"runs": [{"checkpoint": "old"}], "samples": {"a": _sample("a", 0, "a_features.npy")}})
    m = SampleManifest(str(tmp_path), {"checkpoint": "new"}, [])
    assert json.loads((tmp_path / "manifest.json.unreadable").read_text())["samples"]["a"]["prompt"] == "a"
    assert m.to_dict()["runs"] == [{"checkpoint": "new"}] and m.to_dict()["samples"] == []


def test_a_manifest_with_a_file_name_that_is_not_text_is_moved_aside(tmp_path):
    """A sample whose files map a kind to a number (not a name or null) makes the manifest unreadable."""
    _old_manifest(tmp_path, {"runs": [{"checkpoint": "old"}],
                             "samples": [{"prompt": "a", "run": 0, "files": {"features": "a_features.npy", "bvh": 3}}]})
    m = SampleManifest(str(tmp_path), {"checkpoint": "new"}, [])
    assert (tmp_path / "manifest.json.unreadable").is_file() and not (tmp_path / "manifest.json").exists()
    assert m.to_dict()["samples"] == []


def test_a_manifest_that_is_not_utf8_is_moved_aside(tmp_path):
    """A manifest that is not UTF-8 is moved aside with its bytes intact, and a new one is started."""
    (tmp_path / "manifest.json").write_bytes(b'{"samples": ["\xff\xfe"]}')
    m = SampleManifest(str(tmp_path), {"checkpoint": "new"}, [])
    assert (tmp_path / "manifest.json.unreadable").read_bytes() == b'{"samples": ["\xff\xfe"]}'
    assert m.to_dict() == {"checkpoint": "new", "runs": [{"checkpoint": "new"}], "samples": []}


def test_a_manifest_from_before_runs_is_read_as_one_run_of_its_top_level_keys(tmp_path):
    """A manifest without 'runs' is one run made of its top-level run keys; its samples are of that run and the new
    run comes after it."""
    old = {"checkpoint": "old.tar", "checkpoint_sha256": "ab", "seed": 3, "repeat_times": 2,
           "samples": [{"prompt": "a", "files": {"features": "a_features.npy"}}]}
    _old_manifest(tmp_path, old)
    m = SampleManifest(str(tmp_path), {"checkpoint": "new.tar"}, ["b_features.npy"])
    m.replace("b_features.npy")
    m.add({"prompt": "b", "files": {"features": "b_features.npy"}})
    data = json.loads((tmp_path / "manifest.json").read_text())
    assert data["runs"][0] == {key: old.get(key) for key in RUN_KEYS}
    assert data["runs"][1] == {"checkpoint": "new.tar"} and data["checkpoint"] == "new.tar"
    assert [(s["prompt"], s["run"]) for s in data["samples"]] == [("a", 0), ("b", 1)]
    assert not (tmp_path / "manifest.json.unreadable").exists()


# ----- utils/sample_manifest.py: runs, counts and replacement --------------------------------------------------------

def test_runs_without_samples_left_are_dropped_and_the_rest_renumbered_in_order(tmp_path):
    """Runs whose samples were all replaced leave 'runs'; the others keep their order, renumbered from 0, and this
    run's samples point at the last run."""
    runs = [{"checkpoint": "r0"}, {"checkpoint": "r1"}, {"checkpoint": "r2"}, {"checkpoint": "r3"}]
    samples = [_sample("a", 0, "a_features.npy"), _sample("b", 1, "b_features.npy"),
               _sample("c", 3, "c_features.npy")]
    _old_manifest(tmp_path, {"checkpoint": "r3", "runs": runs, "samples": samples})
    m = SampleManifest(str(tmp_path), {"checkpoint": "new"}, ["b_features.npy"])
    m.replace("b_features.npy")
    m.add({"prompt": "b2", "files": {"features": "b_features.npy"}})
    data = json.loads((tmp_path / "manifest.json").read_text())
    assert data["runs"] == [{"checkpoint": "r0"}, {"checkpoint": "r3"}, {"checkpoint": "new"}]
    assert [(s["prompt"], s["run"]) for s in data["samples"]] == [("a", 0), ("c", 1), ("b2", 2)]


def test_the_top_level_keys_describe_the_latest_run(tmp_path):
    """The manifest's top-level run keys are this run's, next to 'runs' and 'samples'."""
    _old_manifest(tmp_path, {"checkpoint": "old", "seed": 1, "runs": [{"checkpoint": "old", "seed": 1}],
                             "samples": [_sample("a", 0, "a_features.npy")]})
    run = {"checkpoint": "new", "seed": 9, "fps": 20}
    d = SampleManifest(str(tmp_path), run, []).to_dict()
    assert {k: d[k] for k in run} == run and d["runs"][-1] == run


def test_this_runs_samples_are_only_the_ones_it_wrote_and_earlier_counts_only_kept_ones(tmp_path):
    """Before this run lists a sample it has none (earlier runs' samples are not its), then exactly those it added,
    in order; 'earlier' counts the earlier samples it keeps, not those it replaces."""
    _old_manifest(tmp_path, {"runs": [{"checkpoint": "old"}],
                             "samples": [_sample("a", 0, "a_features.npy"), _sample("b", 0, "b_features.npy"),
                                         _sample("c", 0, "c_features.npy")]})
    m = SampleManifest(str(tmp_path), {"checkpoint": "new"}, ["b_features.npy", "d_features.npy"])
    assert m.this_runs_samples() == [] and m.earlier == 2
    for name in ("b", "d"):
        m.replace(f"{name}_features.npy")
        m.add({"prompt": name + "2", "files": {"features": f"{name}_features.npy"}})
    assert [s["prompt"] for s in m.this_runs_samples()] == ["b2", "d2"]
    assert all(s["run"] == 1 for s in m.this_runs_samples())


def test_the_earlier_sample_leaves_the_manifest_on_disk_before_its_files_are_removed(tmp_path, monkeypatch):
    """When an earlier sample's file is removed, the manifest on disk no longer lists that sample."""
    for name in ("a_features.npy", "a.npy"):
        (tmp_path / name).write_text("old")
    _old_manifest(tmp_path, {"runs": [{"checkpoint": "old"}],
                             "samples": [{"prompt": "a", "run": 0,
                                          "files": {"features": "a_features.npy", "joints": "a.npy"}},
                                         _sample("k", 0, "k_features.npy")]})
    listed_at_removal = []
    remove = os.remove

    def watching_remove(path, *args, **kwargs):
        data = json.loads((tmp_path / "manifest.json").read_text())
        listed_at_removal.append((os.path.basename(path), [s["prompt"] for s in data["samples"]]))
        return remove(path, *args, **kwargs)

    m = SampleManifest(str(tmp_path), {"checkpoint": "new"}, ["a_features.npy"])
    monkeypatch.setattr(os, "remove", watching_remove)
    m.replace("a_features.npy")
    assert sorted(listed_at_removal) == [("a.npy", ["k"]), ("a_features.npy", ["k"])]


# ----- utils/sample_outputs.py ---------------------------------------------------------------------------------------

def test_a_motion_with_an_infinite_value_keeps_its_arrays_but_gets_no_bvh(tmp_path):
    """An Inf (not only a NaN) in the features marks the motion non-finite: arrays saved, no BVH."""
    features = np.zeros((8, 263), np.float32)
    features[2, 5] = np.inf
    written = _writer(tmp_path, ["s"]).write("s", "t", Generated(_FakeOut(features, 8, _walker()), None))
    assert written.finite is False and written.files["bvh"] is None
    assert sorted(os.listdir(tmp_path)) == ["s.npy", "s_features.npy"]


def test_a_bad_smpl_body_model_is_an_error_naming_the_flag(tmp_path):
    """A missing --smpl body model fails with an error that names --smpl and the file."""
    missing = str(tmp_path / "missing.npz")
    with pytest.raises(OSError, match=rf"^--smpl: .*{re.escape(missing)}"):
        open_exports("gif", False, missing, False)


def test_a_format_that_cannot_be_written_is_an_error_naming_the_flag(monkeypatch):
    """A RenderError of the video format becomes a ValueError naming --format and the format asked for."""

    def no_mp4(fmt):
        raise RenderError("ffmpeg is not installed")

    monkeypatch.setattr(so, "resolve_format", no_mp4)
    with pytest.raises(ValueError, match=r"^--format mp4: ffmpeg is not installed$"):
        so.open_exports("mp4", True, None, False)


def test_a_mesh_video_without_stick_figure_videos_still_gets_a_video_format(monkeypatch):
    """--mesh_video with --no_render resolves the video format (the mesh video needs one) and reads the body from
    the mesh's body model."""
    body = object()
    monkeypatch.setattr(so, "resolve_format", lambda fmt: "gif")
    monkeypatch.setattr(so, "load_body_mesh", lambda path: SimpleNamespace(body=body, path=path))
    exports = so.open_exports("gif", False, "body.npz", True)
    assert exports.video_format == "gif" and exports.body is body and exports.mesh.path == "body.npz"
    assert so.open_exports("gif", False, None, False).video_format is None


# ----- utils/sample_jobs.py ------------------------------------------------------------------------------------------

def test_a_one_prompt_sequence_is_still_a_sequence_with_its_segment():
    """--sequence with a single prompt is made by generate_sequence and keeps its one segment for the manifest."""
    gen = _FakeGenerator()
    prompts = [Prompt("walk", 40, "--motion_length")]
    job = SampleJob(0, 0, Prompt("walk", None, "segments"), "sequence_walk_1p_r00")
    out = generate_sample(gen, job, prompts, {0: torch.tensor([40])}, {"seed": 3}, sequence=True,
                          transition_frames=4)
    assert gen.calls == [("sequence", ["walk"], [40], 4)]
    assert out.segments == [{"prompt": "walk", "start_frame": 0, "end_frame": 40, "length_source": "--motion_length"}]


class _LengthGenerator:
    """A generator's length checks: ``max_frames`` and whole tokens of 4 frames, at least one token."""

    device = "cpu"
    max_frames = 196
    unit_length = 4

    def __init__(self):
        self.asked = []

    def round_lengths(self, frames):
        self.asked.append(list(frames))
        if min(frames) < self.unit_length:
            raise ValueError("motion lengths must be at least one token (4 frames)")
        return torch.tensor([f - f % self.unit_length for f in frames])


def test_a_length_past_max_frames_is_clamped_to_max_frames_for_its_prompt_only():
    """Given lengths over max_frames become max_frames; other prompts keep theirs; prompts without one are left
    out."""
    gen = _LengthGenerator()
    prompts = [Prompt("a", None, "length estimator"), Prompt("b", 10**30, "--text_path"),
               Prompt("c", 41, "--text_path")]
    given = given_lengths(gen, prompts, "p.txt")
    assert sorted(given) == [1, 2]
    assert given[1].tolist() == [196] and given[2].tolist() == [40]
    assert gen.asked == [[196], [41]]


def test_a_refused_length_names_the_prompt_file_and_prompt_or_the_flag():
    """A length the generator refuses is a ValueError naming the prompt file and prompt (or --motion_length), the
    length asked and the generator's reason."""
    with pytest.raises(ValueError, match=r"^p\.txt: prompt 'b': length 2 frames; motion lengths must be at least"):
        given_lengths(_LengthGenerator(), [Prompt("a", 40, "--text_path"), Prompt("b", 2, "--text_path")], "p.txt")
    with pytest.raises(ValueError, match=r"^--motion_length: length 3 frames; motion lengths"):
        given_lengths(_LengthGenerator(), [Prompt("a", 3, "--motion_length")], None)


def test_a_samples_length_is_its_given_one_else_drawn_with_its_seed():
    """A given length is used as is (no draw); without one the estimator draws from a generator seeded with the
    sample's seed."""
    gen = _FakeGenerator()
    given = torch.tensor([48])
    assert sample_frames(gen, "walk", given, 11) is given and gen.calls == []
    assert sample_frames(gen, "walk", None, 11).tolist() == [40]
    assert gen.seeds == [11]


def test_file_names_count_prompts_and_repeats_from_zero_in_prompt_order():
    """Stems are <slug>[_edit]_<index>_r<repeat>, prompts in order and repeats inside; a combined motion is
    <kind>_<slug of the first prompt>_<n>p_r<repeat> of all prompts joined by ' / '."""
    prompts = [Prompt("walk", None, "x"), Prompt("jump", None, "x")]
    assert [j.stem for j in plan_samples(prompts, 2, None, False)] == [
        "walk_000_r00", "walk_000_r01", "jump_001_r00", "jump_001_r01"]
    assert [(j.index, j.repeat) for j in plan_samples(prompts, 2, None, True)] == [(0, 0), (0, 1), (1, 0), (1, 1)]
    assert plan_samples(prompts, 1, None, True)[1].stem == "jump_edit_001_r00"
    seq = plan_samples(prompts, 2, "sequence", False)
    assert [j.stem for j in seq] == ["sequence_walk_2p_r00", "sequence_walk_2p_r01"]
    assert seq[0].prompt == Prompt("walk / jump", None, "segments") and seq[1].index == 0


def _stub_generator(spec):
    return SimpleNamespace(spec=spec, info={"checkpoint": "/c.tar", "checkpoint_sha256": "ab" * 32},
                           backend=SimpleNamespace(sampler=lambda s: "euler"), unit_length=4)


def test_the_run_record_of_a_sequence_keeps_its_transitions_repeats_and_estimator(tmp_path):
    """A sequence run records its prompts, the transition seconds and the frames asked at every seam, its repeats,
    and the length estimator's absolute path and SHA-256 (left out when no length was estimated)."""
    spec = get_dataset_spec("t2m")
    estimator = tmp_path / "length_est.tar"
    estimator.write_bytes(b"estimator weights")
    settings = SimpleNamespace(to_dict=lambda: {"cfg": 2.0})
    record = run_record(_stub_generator(spec), settings, 7, 3, None, ["walk", "jump"], 0.5, 8,
                        length_estimator=str(estimator))
    assert record["sequence"] == {"transition_seconds": 0.5, "transition_frames_asked": 8, "prompts": ["walk", "jump"]}
    assert record["repeat_times"] == 3 and record["seed"] == 7 and record["sampler"] == "euler"
    assert record["length_estimator"] == {"checkpoint": str(estimator),
                                          "checkpoint_sha256": file_sha256(str(estimator))}
    assert record["length_estimator"]["checkpoint_sha256"] != record["checkpoint_sha256"]
    plain = run_record(_stub_generator(spec), settings, 7, 1)
    assert "length_estimator" not in plain and "sequence" not in plain and "edit" not in plain


def test_the_record_of_a_sequence_sample_keeps_segments_transitions_fit_and_export_errors():
    """A sequence sample lists its segments and, per seam, the frames its transition used (as lists); a sample's SMPL
    fit report and export errors are listed with it, and left out when there are none."""
    spec = get_dataset_spec("t2m")
    out = SimpleNamespace(lengths=torch.tensor([60]), transitions=[(36, 44)])
    segments = [{"prompt": "walk", "start_frame": 0, "end_frame": 40, "length_source": "x"},
                {"prompt": "jump", "start_frame": 40, "end_frame": 60, "length_source": "x"}]
    job = SampleJob(0, 2, Prompt("walk / jump", None, "segments"), "sequence_walk_2p_r02")
    written = SampleFiles({"features": "f.npy"}, True, FitReport(1.5, 3.0), {"bvh": "ValueError: no"})
    record = sample_record(job, 9, Generated(out, segments), written, spec)
    assert record["segments"] == segments and record["transitions"] == [[36, 44]]
    assert record["smpl_fit"] == {"mean_error_mm": 1.5, "max_error_mm": 3.0}
    assert record["export_errors"] == {"bvh": "ValueError: no"}
    assert (record["index"], record["repeat"], record["seed"], record["length_source"]) == (0, 2, 9, "segments")
    plain = sample_record(job, 9, Generated(out, None), SampleFiles({"features": "f.npy"}, True, None, {}), spec)
    assert not {"segments", "transitions", "smpl_fit", "export_errors"} & set(plain)


def test_a_failed_bvh_export_is_listed_as_an_error_and_the_sample_keeps_its_other_files(tmp_path, monkeypatch):
    """A ValueError of the BVH writer leaves the sample without a BVH, with the error text by kind, arrays saved."""

    def failing_bvh(*args, **kwargs):
        raise ValueError("bad skeleton")

    monkeypatch.setattr(so, "write_bvh", failing_bvh)
    written = _writer(tmp_path, ["s"]).write("s", "t", Generated(_FakeOut(np.zeros((8, 263)), 8, _walker()), None))
    assert written.files["bvh"] is None and written.export_errors == {"bvh": "ValueError: bad skeleton"}
    assert written.files["joints"] == "s.npy" and sorted(os.listdir(tmp_path)) == ["s.npy", "s_features.npy"]


class _EditGenerator:
    """Records the edit calls ``generate_sample`` makes."""

    device = "cpu"

    def __init__(self):
        self.calls = []

    def edit(self, texts, features, spans, anchor_root=False, **sampling):
        self.calls.append(("edit", list(texts), list(spans), anchor_root, sampling["seed"]))
        return "edited"

    def edit_spans(self, texts, features, spans, anchor_root=False, **sampling):
        self.calls.append(("edit_spans", list(texts), list(spans), anchor_root, sampling["seed"]))
        return "edited spans"


def test_an_edit_goes_from_the_jobs_prompt_and_span_prompts_go_to_the_spans_left_to_right():
    """An edit is made from the job's own prompt with --anchor_root passed on; with span prompts all prompts go to
    the spans sorted by start frame, whatever order the spans were given in."""
    spans = [FrameSpan(24, 40), FrameSpan(0, 8), FrameSpan(12, 16)]
    assert left_to_right(spans) == [FrameSpan(0, 8), FrameSpan(12, 16), FrameSpan(24, 40)]
    edit = SimpleNamespace(features=np.zeros((40, 263)), spans=spans)
    prompts = [Prompt("walk", None, "x"), Prompt("jump", None, "x"), Prompt("wave", None, "x")]
    gen = _EditGenerator()
    out = generate_sample(gen, SampleJob(1, 0, prompts[1], "jump_edit_001_r00"), prompts, {}, {"seed": 4}, edit,
                          anchor_root=True)
    assert out.out == "edited" and out.segments is None
    assert gen.calls[-1] == ("edit", ["jump"], spans, True, 4)
    joined = Prompt("walk / jump / wave", None, "segments")
    out = generate_sample(gen, SampleJob(0, 0, joined, "edit_spans_walk_3p_r00"), prompts, {}, {"seed": 5}, edit,
                          span_prompts=True, anchor_root=True)
    assert out.out == "edited spans"
    assert gen.calls[-1] == ("edit_spans", ["walk", "jump", "wave"], left_to_right(spans), True, 5)


def test_a_kept_source_named_through_a_linked_folder_is_not_removed(tmp_path):
    """The edit source is kept when it is named through another path to the same file (a linked folder), not only
    by the exact string the manifest's folder gives."""
    out = tmp_path / "out"
    out.mkdir()
    os.symlink(out, tmp_path / "link")
    for name in ("a_features.npy", "a.npy"):
        (out / name).write_text("old")
    (out / "manifest.json").write_text(json.dumps({"runs": [{"checkpoint": "old"}], "samples": [
        {"prompt": "a", "run": 0, "files": {"features": "a_features.npy", "joints": "a.npy"}}]}))
    m = SampleManifest(str(out), {"checkpoint": "new"}, ["a_features.npy"], keep=[str(tmp_path / "link" / "a.npy")])
    m.replace("a_features.npy")
    assert (out / "a.npy").read_text() == "old" and not (out / "a_features.npy").exists()


class _LengthRecorder(_FakeGenerator):
    def generate(self, texts, lengths, **sampling):
        self.calls.append(("generate", list(texts), lengths.tolist(), sampling["seed"]))
        return "motion"


def test_each_prompt_is_generated_at_its_own_given_length():
    """A plain sample takes the given length of its own prompt (by the job's index); a prompt without one has its
    length drawn with the sample's seed."""
    prompts = [Prompt("a", 40, "--text_path"), Prompt("bb", None, "x"), Prompt("c", 64, "--text_path")]
    given = {0: torch.tensor([40]), 2: torch.tensor([64])}
    gen = _LengthRecorder()
    for job in (SampleJob(2, 0, prompts[2], "c_002_r00"), SampleJob(1, 0, prompts[1], "bb_001_r00")):
        assert generate_sample(gen, job, prompts, given, {"seed": 8}).out == "motion"
    assert gen.calls == [("generate", ["c"], [64], 8), ("estimate", ["bb"]), ("generate", ["bb"], [20], 8)]
    assert gen.seeds == [8]


def test_finite_features_whose_joints_overflow_get_no_video_and_do_not_stop_the_run(tmp_path):
    """Finite float32 features whose joint positions overflow (a huge root velocity) are a non-finite motion: their
    arrays are saved, the video and BVH skipped and the writer returns, rather than the plotter stopping the whole
    sample.py run with this sample's files written but unlisted."""
    spec = get_dataset_spec("t2m")
    features = np.zeros((8, 263), np.float32)
    features[:, 1:3] = 3e38  # root linear velocity: finite, but its running sum overflows float32
    assert np.isfinite(features).all()
    joints = np.asarray(features_to_joints(features, spec), dtype=np.float32)
    assert not np.isfinite(joints).all()
    manifest = SampleManifest(str(tmp_path), {"checkpoint": "x"}, ["s_features.npy"])
    writer = SampleWriter(str(tmp_path), spec, manifest, Exports("gif", None, None), "gif", render=True, bvh=True)
    written = writer.write("s", "t", Generated(_FakeOut(features, 8, joints), None))
    assert written.finite is False
    assert written.files["video"] is None and written.files["bvh"] is None
    assert sorted(os.listdir(tmp_path)) == ["s.npy", "s_features.npy"]
