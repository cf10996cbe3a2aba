"""Contracts of sample.py's jobs, manifest and output files (utils/sample_jobs.py, utils/sample_manifest.py,
utils/sample_outputs.py) on tiny stand-ins: combined stems, earlier manifests of odd shapes, the order of kept runs,
the names of moved-aside copies, replaced files, the folder's errors and the records' paths."""

from __future__ import annotations

import json
import logging
import os
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from test_output_contracts import _FakeOut, _walker, _writer

import sample
from utils.dataset_specs import get_dataset_spec
from utils.prompts import SLUG_LENGTH, Prompt
from utils.sample_jobs import Generated, SampleJob, given_lengths, plan_samples
from utils.sample_manifest import RUN_KEYS, SampleManifest
from utils.sample_outputs import SampleFiles, make_folder, run_record, sample_record


def _write_manifest(folder, data):
    (folder / "manifest.json").write_text(json.dumps(data), encoding="utf-8")


def _on_disk(folder):
    return json.loads((folder / "manifest.json").read_text(encoding="utf-8"))


# ----- utils/sample_jobs.py ------------------------------------------------------------------------------------------

def test_a_combined_motions_stem_takes_half_a_slug_of_its_first_prompt():
    """A sequence's stem holds the first prompt's slug cut to half the usual slug length, then the prompt count."""
    long_text = "a person walks forward slowly then turns around and walks all the way back to where they started"
    prompts = [Prompt(long_text, None, "x"), Prompt("jump", None, "x")]
    stem = plan_samples(prompts, 1, "sequence", False)[0].stem
    slug = stem[len("sequence_"):-len("_2p_r00")]
    assert len(slug) <= SLUG_LENGTH // 2 and long_text.replace(" ", "_").startswith(slug)
    assert stem == "sequence_a_person_walks_forward_slowly_2p_r00"
    assert plan_samples(prompts, 1, None, False)[0].stem.startswith("a_person_walks_forward_slowly_then_turns")


class _Lengths:
    device, max_frames, unit_length = "cpu", 196, 4

    def round_lengths(self, frames):
        return torch.tensor([f - f % self.unit_length for f in frames])


def test_a_length_of_exactly_max_frames_is_kept_without_a_clamp_warning(caplog):
    """A given length equal to max_frames is not reported as clamped; one frame more is, naming the prompt file."""
    prompts = [Prompt("a", 196, "--text_path"), Prompt("b", 197, "--text_path")]
    with caplog.at_level(logging.WARNING, logger="utils.sample_jobs"):
        given = given_lengths(_Lengths(), prompts, "p.txt")
    assert given[0].tolist() == [196] and given[1].tolist() == [196]
    clamped = [r.getMessage() for r in caplog.records if "clamped" in r.getMessage()]
    assert clamped == ["p.txt: prompt 'b': length 197 frames exceeds the 196 frames the model was trained on; clamped"]


# ----- utils/sample_manifest.py: reading an earlier manifest ---------------------------------------------------------

def test_a_manifest_from_before_runs_keeps_its_seed_and_every_run_key(tmp_path):
    """A manifest without 'runs' becomes one run holding its checkpoint, hash, generator, dataset, fps, sampling, seed
    and repeats."""
    old = {"checkpoint": "old.tar", "checkpoint_sha256": "ab", "generator": {"family": "mardm"}, "dataset": "t2m",
           "fps": 20, "sampling": {"cfg": 4.5}, "seed": 3, "repeat_times": 2, "other": 1,
           "samples": [{"prompt": "a", "files": {"features": "a_features.npy"}}]}
    _write_manifest(tmp_path, old)
    data = SampleManifest(str(tmp_path), {"checkpoint": "new.tar"}, []).to_dict()
    assert data["runs"][0] == {"checkpoint": "old.tar", "checkpoint_sha256": "ab", "generator": {"family": "mardm"},
                               "dataset": "t2m", "fps": 20, "sampling": {"cfg": 4.5}, "seed": 3, "repeat_times": 2}
    assert set(RUN_KEYS) == set(data["runs"][0])


@pytest.mark.parametrize("data", [[{"prompt": "a"}], "samples", 3])
def test_a_manifest_that_is_not_a_json_object_is_moved_aside(tmp_path, data):
    """A manifest holding a list, a string or a number is moved aside intact and a new one is started."""
    _write_manifest(tmp_path, data)
    m = SampleManifest(str(tmp_path), {"checkpoint": "new"}, [])
    assert json.loads((tmp_path / "manifest.json.unreadable").read_text()) == data
    assert m.to_dict() == {"checkpoint": "new", "runs": [{"checkpoint": "new"}], "samples": []}


def test_entries_of_samples_that_are_not_objects_are_skipped_and_the_rest_kept(tmp_path):
    """Entries of 'samples' that are not objects (null, a string, a list) are dropped; the other samples stay."""
    _write_manifest(tmp_path, {"runs": [{"checkpoint": "old"}],
                               "samples": [None, "ab", ["x", "y"], {"prompt": "a", "run": 0,
                                                                    "files": {"features": "a_features.npy"}}]})
    m = SampleManifest(str(tmp_path), {"checkpoint": "new"}, [])
    assert not (tmp_path / "manifest.json.unreadable").exists()
    assert [s["prompt"] for s in m.to_dict()["samples"]] == ["a"] and m.earlier == 1


@pytest.mark.parametrize("runs", [{"0": {"checkpoint": "old"}}, "old", 0])
def test_runs_that_are_not_a_list_read_as_a_manifest_from_before_runs(tmp_path, runs):
    """A 'runs' that is no list reads as a manifest from before runs: one run of its top-level keys, its samples
    of run 0."""
    _write_manifest(tmp_path, {"checkpoint": "old", "runs": runs,
                               "samples": [{"prompt": "a", "run": 5, "files": {"features": "a_features.npy"}}]})
    data = SampleManifest(str(tmp_path), {"checkpoint": "new"}, []).to_dict()
    assert not (tmp_path / "manifest.json.unreadable").exists()
    assert data["runs"][0]["checkpoint"] == "old" and data["runs"][1] == {"checkpoint": "new"}
    assert [(s["prompt"], s["run"]) for s in data["samples"]] == [("a", 0)]


def test_a_sample_whose_files_are_null_or_hold_null_names_is_read(tmp_path):
    """A sample's files may be null, and a kind may name no file (null, as a sample without a video lists it)."""
    _write_manifest(tmp_path, {"runs": [{"checkpoint": "old"}], "samples": [
        {"prompt": "a", "run": 0, "files": {"features": "a_features.npy", "video": None, "bvh": None}},
        {"prompt": "b", "run": 0, "files": None}]})
    data = SampleManifest(str(tmp_path), {"checkpoint": "new"}, []).to_dict()
    assert not (tmp_path / "manifest.json.unreadable").exists()
    assert [s["files"] for s in data["samples"]] == [
        {"features": "a_features.npy", "video": None, "bvh": None}, None]


@pytest.mark.parametrize("files", [[], ["a_features.npy"], "a_features.npy", 0])
def test_a_sample_whose_files_are_not_an_object_is_moved_aside(tmp_path, files):
    """A sample whose files are a list, a string or a number (even an empty one) makes the manifest unreadable."""
    _write_manifest(tmp_path, {"runs": [{"checkpoint": "old"}], "samples": [{"prompt": "a", "run": 0, "files": files}]})
    m = SampleManifest(str(tmp_path), {"checkpoint": "new"}, [])
    assert (tmp_path / "manifest.json.unreadable").is_file() and m.to_dict()["samples"] == []


def test_the_first_unreadable_copy_beside_another_is_numbered_one(tmp_path):
    """With one unreadable copy already kept, the next goes to manifest.json.unreadable.1."""
    (tmp_path / "manifest.json.unreadable").write_text("first")
    (tmp_path / "manifest.json").write_text("{ second")
    SampleManifest(str(tmp_path), {"checkpoint": "new"}, [])
    assert (tmp_path / "manifest.json.unreadable").read_text() == "first"
    assert (tmp_path / "manifest.json.unreadable.1").read_text() == "{ second"
    assert sorted(os.listdir(tmp_path)) == ["manifest.json.unreadable", "manifest.json.unreadable.1"]


def test_a_folder_or_dangling_link_named_like_an_unreadable_copy_is_passed_over(tmp_path):
    """An unreadable manifest is moved past a folder and a dangling link that hold the copies' names."""
    (tmp_path / "manifest.json.unreadable").mkdir()
    os.symlink(tmp_path / "gone", tmp_path / "manifest.json.unreadable.1")
    (tmp_path / "manifest.json").write_text("not json")
    SampleManifest(str(tmp_path), {"checkpoint": "new"}, [])
    assert (tmp_path / "manifest.json.unreadable").is_dir()
    assert os.readlink(tmp_path / "manifest.json.unreadable.1") == str(tmp_path / "gone")
    assert (tmp_path / "manifest.json.unreadable.2").read_text() == "not json"


def test_a_folder_where_the_manifest_goes_is_an_error_naming_the_flag(tmp_path):
    """A folder named manifest.json is refused when the manifest is opened, naming it and --output_dir."""
    (tmp_path / "manifest.json").mkdir()
    with pytest.raises(IsADirectoryError, match=r"manifest\.json is a folder; .* another --output_dir"):
        SampleManifest(str(tmp_path), {"checkpoint": "new"}, [])
    assert os.listdir(tmp_path) == ["manifest.json"]


# ----- utils/sample_manifest.py: runs, replacement and removal -------------------------------------------------------

def test_the_run_record_is_copied_when_the_manifest_opens(tmp_path):
    """Changing the caller's run dict after the manifest opened does not change the run it writes."""
    run = {"checkpoint": "new", "seed": 1}
    m = SampleManifest(str(tmp_path), run, ["a_features.npy"])
    run["seed"] = 99
    m.replace("a_features.npy")
    m.add({"prompt": "a", "files": {"features": "a_features.npy"}})
    data = _on_disk(tmp_path)
    assert data["seed"] == 1 and data["runs"] == [{"checkpoint": "new", "seed": 1}]


def test_a_replaced_sample_stays_listed_until_its_replacement_starts(tmp_path):
    """Samples this run will write again stay in the manifest, after the kept ones, until replace() reaches
    each; the others are then still listed."""
    _write_manifest(tmp_path, {"runs": [{"checkpoint": "old"}], "samples": [
        {"prompt": p, "run": 0, "files": {"features": f"{p}_features.npy"}} for p in ("a", "b", "c")]})
    m = SampleManifest(str(tmp_path), {"checkpoint": "new"}, ["a_features.npy", "c_features.npy"])
    assert [s["prompt"] for s in m.to_dict()["samples"]] == ["b", "a", "c"]
    m.replace("a_features.npy")
    assert [s["prompt"] for s in _on_disk(tmp_path)["samples"]] == ["b", "c"]
    assert _on_disk(tmp_path)["runs"] == [{"checkpoint": "old"}, {"checkpoint": "new"}]


def test_kept_runs_stay_in_their_order_past_ten_runs(tmp_path):
    """The runs kept are in their earlier order (8 after 1), whatever order their samples are listed in."""
    runs = [{"checkpoint": f"r{i}"} for i in range(10)]
    _write_manifest(tmp_path, {"runs": runs, "samples": [
        {"prompt": "late", "run": 8, "files": {"features": "late_features.npy"}},
        {"prompt": "early", "run": 1, "files": {"features": "early_features.npy"}}]})
    data = SampleManifest(str(tmp_path), {"checkpoint": "new"}, []).to_dict()
    assert data["runs"] == [{"checkpoint": "r1"}, {"checkpoint": "r8"}, {"checkpoint": "new"}]
    assert [(s["prompt"], s["run"]) for s in data["samples"]] == [("late", 1), ("early", 0)]


def test_replacing_a_sample_skips_a_folder_its_files_name(tmp_path):
    """A file name of an earlier sample that is a folder in the output folder is left alone; its plain files go."""
    (tmp_path / "a.npy").mkdir()
    (tmp_path / "a_features.npy").write_text("old")
    _write_manifest(tmp_path, {"runs": [{"checkpoint": "old"}], "samples": [
        {"prompt": "a", "run": 0, "files": {"features": "a_features.npy", "joints": "a.npy", "video": ""}}]})
    m = SampleManifest(str(tmp_path), {"checkpoint": "new"}, ["a_features.npy"])
    m.replace("a_features.npy")
    assert (tmp_path / "a.npy").is_dir() and not (tmp_path / "a_features.npy").exists()
    assert _on_disk(tmp_path)["samples"] == []


def test_a_run_that_replaces_nothing_does_not_warn_of_replaced_samples(tmp_path, caplog):
    """Opening a folder whose samples this run does not write again says nothing of replaced files; writing one
    again says how many."""
    _write_manifest(tmp_path, {"runs": [{"checkpoint": "old"}], "samples": [
        {"prompt": "a", "run": 0, "files": {"features": "a_features.npy"}}]})
    with caplog.at_level(logging.WARNING, logger="utils.sample_manifest"):
        SampleManifest(str(tmp_path), {"checkpoint": "new"}, ["b_features.npy"])
        assert [r for r in caplog.records if "replaced" in r.getMessage()] == []
        SampleManifest(str(tmp_path), {"checkpoint": "new"}, ["a_features.npy"])
    assert [r.getMessage() for r in caplog.records if "replaced" in r.getMessage()] == [
        f"{tmp_path}: 1 sample(s) of an earlier run have the names of this run's samples; their files are replaced"]


# ----- utils/sample_outputs.py ---------------------------------------------------------------------------------------

def test_writing_a_sample_removes_the_earlier_samples_files_of_its_name_first(tmp_path):
    """The writer replaces the earlier sample of its name: its BVH and video, which this sample does not write, go,
    and the new sample can then be listed."""
    for name in ("s_features.npy", "s.npy", "s.bvh", "s.gif"):
        (tmp_path / name).write_text("old")
    _write_manifest(tmp_path, {"runs": [{"checkpoint": "old"}], "samples": [
        {"prompt": "old", "run": 0, "files": {"features": "s_features.npy", "joints": "s.npy", "bvh": "s.bvh",
                                              "video": "s.gif"}}]})
    writer = _writer(tmp_path, ["s"], bvh=False)
    written = writer.write("s", "t", Generated(_FakeOut(np.zeros((8, 263)), 8, _walker()), None))
    assert sorted(os.listdir(tmp_path)) == ["manifest.json", "s.npy", "s_features.npy"]
    assert np.load(tmp_path / "s_features.npy").shape == (8, 263)
    writer.manifest.add({"prompt": "new", "files": written.files})
    assert [s["prompt"] for s in _on_disk(tmp_path)["samples"]] == ["new"]


def test_a_run_without_bvh_writes_no_bvh(tmp_path):
    """Without --bvh a finite sample gets its arrays but no BVH file, and its files say so."""
    written = _writer(tmp_path, ["s"], bvh=False).write("s", "t", Generated(_FakeOut(np.zeros((8, 263)), 8, _walker()),
                                                                            None))
    assert written.finite is True and written.files["bvh"] is None and written.export_errors == {}
    assert written.files["joints"] == "s.npy" and sorted(os.listdir(tmp_path)) == ["s.npy", "s_features.npy"]


def test_a_file_in_the_way_of_the_output_folder_is_named(tmp_path):
    """A file standing where a folder of the output path should be makes an error naming the flag and that file."""
    blocker = tmp_path / "blocker"
    blocker.write_text("x")
    with pytest.raises(FileExistsError, match=rf"^--output_dir: cannot make the folder .*: {blocker} is a file$"):
        make_folder(str(blocker), "--output_dir")
    with pytest.raises(OSError, match=rf"^--output_dir: cannot make the folder .*: {blocker} is a file$"):
        make_folder(str(blocker / "deeper" / "out"), "--output_dir")
    make_folder(str(tmp_path / "new" / "out"), "--output_dir")
    assert (tmp_path / "new" / "out").is_dir()


def test_the_run_record_gives_the_length_estimators_absolute_path(tmp_path, monkeypatch):
    """A length estimator named by a relative path is recorded by its absolute path."""
    (tmp_path / "length_est.tar").write_bytes(b"weights")
    monkeypatch.chdir(tmp_path)
    generator = SimpleNamespace(spec=get_dataset_spec("t2m"), info={"checkpoint": "/c.tar", "checkpoint_sha256": "ab"},
                                backend=SimpleNamespace(sampler=lambda s: "euler"), unit_length=4)
    record = run_record(generator, SimpleNamespace(to_dict=lambda: {}), 1, 1, length_estimator="length_est.tar")
    assert record["length_estimator"]["checkpoint"] == str(tmp_path / "length_est.tar")


def test_an_edit_samples_record_gives_how_far_its_unedited_frames_moved():
    """An edit sample's record holds unedited_change of its motion, and the root anchor when there is one."""
    spec = get_dataset_spec("t2m")
    out = SimpleNamespace(lengths=torch.tensor([40]), unedited_change=lambda i: {"max_mm": 1.25 + i},
                          root_anchors=[{"spread": [0.5, 0.0]}])
    job = SampleJob(1, 0, Prompt("jump", None, "x"), "jump_edit_001_r00")
    record = sample_record(job, 3, Generated(out, None), SampleFiles({"features": "f.npy"}, True, None, {}), spec,
                           edit=SimpleNamespace(spans=[]))
    assert record["unedited_change"] == {"max_mm": 1.25} and record["root_anchor"] == {"spread": [0.5, 0.0]}
    assert record["index"] == 1 and record["length_source"] == "--edit_source"


# ----- sample.py ----------------------------------------------------------------------------------------------------

def _flags(**changes):
    cfg = dict(sequence=False, anchor_root=False, span_prompts=False, edit_frames=None, edit_seconds=None,
               repeat_times=1, seed=0, mesh_video=False, smpl=None)
    return SimpleNamespace(**{**cfg, **changes})


def _prompts(*frames):
    return [Prompt(f"p{i}", f, "--text_path" if f else "length estimator") for i, f in enumerate(frames)]


def test_flags_that_do_not_go_together_are_refused_naming_them():
    """An edit with any given length, --anchor_root or --span_prompts without an edit, --mesh_video without --smpl
    and fewer than one repeat are refused before the model loads."""
    with pytest.raises(ValueError, match=r"drop --motion_length and #<frames> lengths"):
        sample.check_flags(_flags(edit_frames=["0:8"]), _prompts(None, 40), editing=True)
    with pytest.raises(ValueError, match=r"^--anchor_root keeps an edit's unedited frames"):
        sample.check_flags(_flags(anchor_root=True), _prompts(None), editing=False)
    with pytest.raises(ValueError, match=r"^--span_prompts pairs the prompts with the spans of an edit"):
        sample.check_flags(_flags(span_prompts=True, edit_frames=["0:8"]), _prompts(None), editing=False)
    with pytest.raises(ValueError, match=r"^--mesh_video draws the mesh .* add --smpl"):
        sample.check_flags(_flags(mesh_video=True), _prompts(None), editing=False)
    with pytest.raises(ValueError, match=r"^--repeat_times must be >= 1, got 0"):
        sample.check_flags(_flags(repeat_times=0), _prompts(None), editing=False)
    sample.check_flags(_flags(anchor_root=True, edit_frames=["0:8"]), _prompts(None, None), editing=True)
    sample.check_flags(_flags(mesh_video=True, smpl="body.npz"), _prompts(40), editing=False)


def test_span_prompts_need_exactly_one_prompt_per_span():
    """--span_prompts with more prompts than spans, or fewer, is refused giving both counts."""
    with pytest.raises(ValueError, match=r"^--span_prompts: 3 prompt\(s\) for 2 span\(s\)"):
        sample.check_flags(_flags(span_prompts=True, edit_frames=["0:8"], edit_seconds=["1:2"]),
                           _prompts(None, None, None), editing=True)
    with pytest.raises(ValueError, match=r"^--span_prompts: 1 prompt\(s\) for 2 span\(s\)"):
        sample.check_flags(_flags(span_prompts=True, edit_frames=["0:8", "12:16"]), _prompts(None), editing=True)
    sample.check_flags(_flags(span_prompts=True, edit_frames=["0:8"], edit_seconds=["1:2"]), _prompts(None, None),
                       editing=True)


def test_the_last_samples_seed_must_fit_a_torch_generator():
    """Sample k takes seed --seed + k, so the largest seed allowed shrinks with prompts times repeats."""
    prompts = _prompts(None, None)
    sample.check_flags(_flags(seed=2**64 - 6, repeat_times=3), prompts, editing=False)
    with pytest.raises(ValueError, match=r"for 6 sample\(s\) give a seed from -9223372036854775808 to "
                                         r"18446744073709551610$"):
        sample.check_flags(_flags(seed=2**64 - 5, repeat_times=3), prompts, editing=False)


def test_the_summary_shows_each_samples_main_file_and_counts_its_others(tmp_path, capsys):
    """The summary lists this run's samples with their video (else joints, else features) and +N other files, and
    counts the earlier runs' samples the manifest still lists."""
    _write_manifest(tmp_path, {"runs": [{"checkpoint": "old"}], "samples": [
        {"prompt": "old", "run": 0, "files": {"features": "old_features.npy"}}]})
    m = SampleManifest(str(tmp_path), {"checkpoint": "new"}, ["a_features.npy", "b_features.npy"])
    for stem, files in (("a", {"joints": "a.npy", "video": "a.gif", "bvh": "a.bvh"}), ("b", {})):
        m.replace(f"{stem}_features.npy")
        m.add({"index": 0, "repeat": 0, "prompt": stem, "length_frames": 40, "length_seconds": 2.0,
               "files": {"joints": None, "video": None, "bvh": None, **files, "features": f"{stem}_features.npy"}})
    sample.print_summary(m, str(tmp_path))
    lines = capsys.readouterr().out.splitlines()
    assert lines[1].split()[4:7] == ["a.gif", "(+3)", "a"] and lines[2].split()[4:6] == ["b_features.npy", "b"]
    assert lines[3] == (f"wrote 2 samples to {tmp_path} (manifest.json lists every file, +N the others of a sample; "
                        f"it also lists 1 of earlier runs)")


class _NoJoints:
    """A batch of one motion in a representation without joint positions."""

    def __init__(self, features):
        self.features = torch.as_tensor(features, dtype=torch.float32)[None]
        self.lengths = torch.tensor([features.shape[0]])

    @property
    def joints(self):
        raise ValueError("SMPL-X rotations hold no joint positions")


def test_a_dataset_without_joints_is_said_once_and_its_features_still_saved(tmp_path, caplog):
    """Samples of a representation without joints keep their features, get no joints file, and the run says so
    once, not per sample."""
    writer = _writer(tmp_path, ["a", "b"])
    with caplog.at_level(logging.WARNING, logger="sample"):
        written = [writer.write(stem, "t", Generated(_NoJoints(np.zeros((8, 263))), None)) for stem in ("a", "b")]
    assert [w.files["joints"] for w in written] == [None, None] and all(w.finite for w in written)
    assert sorted(os.listdir(tmp_path)) == ["a_features.npy", "b_features.npy"]
    said = [r.getMessage() for r in caplog.records if "no joints" in r.getMessage()]
    assert said == ["no joints, videos or BVH for dataset 't2m': SMPL-X rotations hold no joint positions"]


def test_a_combined_run_bounds_the_seed_by_its_motions_not_its_prompts():
    """--sequence and --span_prompts make one motion per repeat, so the seed range counts repeats, not prompts."""
    prompts = _prompts(None, None, None)
    sample.check_flags(_flags(sequence=True, seed=2**64 - 2, repeat_times=2), prompts, editing=False)
    with pytest.raises(ValueError, match=r"for 2 sample\(s\) give a seed from -9223372036854775808 to "
                                         r"18446744073709551614$"):
        sample.check_flags(_flags(sequence=True, seed=2**64 - 1, repeat_times=2), prompts, editing=False)
    spans = _flags(span_prompts=True, edit_frames=["0:8", "12:16", "20:24"], seed=2**64 - 1)
    sample.check_flags(spans, prompts, editing=True)

