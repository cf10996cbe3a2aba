"""Sampling, rendering and evaluation outputs: contracts no other test pinned (an edit's output files and record,
joints saved where the source stands, a failed SMPL fit, sequence captions, drawn lengths and seeds, the sample
manifest's checks and removals, the plot's refusals, view and trajectory, the GT cache's place and one warning, the
report's table and JSON, the GT fingerprint and kept checkpoint versions)."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from test_assets import _dataset
from test_eval_protocol import WORDS, write_dataset

CHAIN = [[0, 1, 2], [0, 3, 4]]


def test_edit_output_paths_lists_the_bvh_and_smpl_files_only_when_the_run_writes_them(tmp_path):
    from utils.sample_outputs import edit_output_paths
    out = str(tmp_path)
    both = edit_output_paths(out, ["a", "b"], bvh=True, smpl=True)
    assert sorted(os.path.basename(p) for p in both) == sorted(
        ["a.npy", "a_features.npy", "a.bvh", "a_smpl.npz", "b.npy", "b_features.npy", "b.bvh", "b_smpl.npz"])
    assert all(os.path.dirname(p) == out for p in both)
    plain = edit_output_paths(out, ["a"], bvh=False, smpl=False)
    assert sorted(os.path.basename(p) for p in plain) == ["a.npy", "a_features.npy"]
    assert sorted(os.path.basename(p) for p in edit_output_paths(out, ["a"], bvh=True, smpl=False)) == [
        "a.bvh", "a.npy", "a_features.npy"]
    assert sorted(os.path.basename(p) for p in edit_output_paths(out, ["a"], bvh=False, smpl=True)) == [
        "a.npy", "a_features.npy", "a_smpl.npz"]


def test_a_motion_of_no_frames_is_refused_before_any_file_is_written(tmp_path):
    from utils.plot_script import check_joints, plot_3d_motion
    with pytest.raises(ValueError, match=r"T >= 1"):
        check_joints(np.zeros((0, 5, 3)), CHAIN)
    with pytest.raises(ValueError, match=r"T >= 1"):
        plot_3d_motion(str(tmp_path / "m.gif"), np.zeros((0, 5, 3)), CHAIN, fmt="gif")
    assert os.listdir(tmp_path) == []


def test_the_run_folder_of_a_checkpoint_is_the_parent_of_its_model_folder(tmp_path):
    from utils.eval_report import run_folder_of
    run = tmp_path / "run"
    assert run_folder_of(str(run / "model" / "latest.tar")) == str(run)
    assert run_folder_of(str(run / "weights" / "latest.tar")) is None
    assert run_folder_of(str(tmp_path / "loose.tar")) is None


def _loader(root, mean_shift=0.0, batch_size=32):
    import torch

    from utils.dataset_specs import get_dataset_spec
    from utils.eval_data import build_eval_loader
    from utils.evaluator import build_evaluator
    from utils.normalization import eval_normalization, load_mean_std
    from utils.word_vectorizer import LearnedVocab
    spec = get_dataset_spec("synthetic", str(root))
    mean, std = eval_normalization(*load_mean_std(spec, str(root)), spec)
    vocab = LearnedVocab.from_split(str(root), "train", dim_word=8)
    torch.manual_seed(0)
    ev = build_evaluator("synthetic", mean + mean_shift, std, word_vectors=vocab, sizes="tiny", data_root=str(root))
    return build_eval_loader(ev, spec, "test", data_root=str(root), progress=False, batch_size=batch_size)


def test_the_gt_data_fingerprint_changes_with_statistics_batch_size_and_captions(tmp_path):
    """The GT cache is keyed by the loader's fingerprint: anything that changes the GT batches must change it, or
    a stale cache entry is reused."""
    from utils.eval_data import EvalLoader
    write_dataset(tmp_path, n_test=40, n_train=6)
    base = _loader(tmp_path)
    same = _loader(tmp_path)
    assert base.fingerprint == same.fingerprint
    # other evaluator statistics: other normalised motions
    assert _loader(tmp_path, mean_shift=0.5).fingerprint != base.fingerprint
    # another batch size: other batches and R-precision pools
    assert EvalLoader(base.dataset, batch_size=16).fingerprint != base.fingerprint
    # a caption edited in the data: other text embeddings
    clip = tmp_path / "texts" / "t000.txt"
    text = clip.read_text()
    for w in WORDS:
        text = text.replace(f" {w}", " zzz")
    clip.write_text(text)
    assert _loader(tmp_path).fingerprint != base.fingerprint


def _old_manifest(folder, runs, samples):
    (folder / "manifest.json").write_text(json.dumps({"checkpoint": "old", "runs": runs, "samples": samples}))


@pytest.mark.parametrize("bad_run", [True, 2, -1, "0"])
def test_an_earlier_manifest_whose_sample_names_no_run_is_moved_aside(tmp_path, bad_run):
    from utils.sample_manifest import SampleManifest
    runs = [{"checkpoint": "old0"}, {"checkpoint": "old1"}]
    sample = {"prompt": "a", "run": bad_run, "files": {"features": "a_features.npy"}}
    _old_manifest(tmp_path, runs, [sample])
    m = SampleManifest(str(tmp_path), {"checkpoint": "new"}, ["b_features.npy"])
    assert (tmp_path / "manifest.json.unreadable").is_file()
    assert not (tmp_path / "manifest.json").exists()
    assert m.to_dict()["samples"] == [] and m.to_dict()["runs"] == [{"checkpoint": "new"}]


def test_a_chain_naming_a_joint_past_the_motion_is_refused_before_any_file_is_written(tmp_path):
    from utils.plot_script import check_joints, plot_3d_motion
    with pytest.raises(ValueError, match=r"uses joint 5 but the motion has 5 joints"):
        check_joints(np.zeros((3, 5, 3)), [[0, 1], [0, 5]])
    with pytest.raises(ValueError, match=r"uses joint 5"):
        plot_3d_motion(str(tmp_path / "m.gif"), np.zeros((3, 5, 3)), [[0, 1], [0, 5]], fmt="gif")
    assert os.listdir(tmp_path) == []


def test_keeping_a_used_version_of_a_missing_checkpoint_is_a_no_op(tmp_path):
    from utils.checkpoint_users import keep_used_version, register_user
    ckpt = tmp_path / "model" / "latest.tar"
    ckpt.parent.mkdir()
    ckpt.write_text("v1")
    import hashlib
    register_user(str(ckpt), hashlib.sha256(b"v1").hexdigest(), str(tmp_path / "gen"))
    ckpt.unlink()  # a first save, or a file moved away: nothing to keep, and no error
    assert keep_used_version(str(ckpt)) is None
    assert sorted(os.listdir(ckpt.parent)) == ["used_by.json"]


def test_a_kept_version_is_not_hashed_again_at_every_save(tmp_path, monkeypatch):
    import utils.checkpoint_users as cu
    ckpt = tmp_path / "model" / "latest.tar"
    ckpt.parent.mkdir()
    ckpt.write_text("v1")
    import hashlib
    sha = hashlib.sha256(b"v1").hexdigest()
    cu.register_user(str(ckpt), sha, str(tmp_path / "gen"))
    kept = cu.keep_used_version(str(ckpt))
    assert kept is not None and open(kept).read() == "v1"
    calls = []
    real = cu.file_sha256
    monkeypatch.setattr(cu, "file_sha256", lambda p: calls.append(p) or real(p))
    assert cu.keep_used_version(str(ckpt)) is None
    assert calls == []


def _emb(n=4):
    from utils.gt_cache import GTEmbeddings
    return GTEmbeddings(np.zeros((n, 8), np.float32), np.ones((n, 8), np.float32), np.arange(n), np.arange(n))


def test_the_default_gt_cache_sits_beside_the_evaluators_model_folder(tmp_path):
    from types import SimpleNamespace

    from utils.gt_cache import default_gt_cache
    ev = SimpleNamespace(path=str(tmp_path / "text_mot_match" / "model" / "finest.tar"))
    assert default_gt_cache(ev).folder == str(tmp_path / "text_mot_match" / "gt_cache")
    assert default_gt_cache(SimpleNamespace(path=None)) is None


def test_an_unwritable_gt_cache_warns_once_and_stops_trying(tmp_path, caplog):
    import logging

    from utils.gt_cache import GTCache
    blocker = tmp_path / "cache"
    blocker.write_text("a file where the folder goes")
    cache = GTCache(str(blocker))
    with caplog.at_level(logging.WARNING):
        cache.save("k" * 64, 0, _emb())
        cache.save("k" * 64, 1, _emb())
        cache.save("k" * 64, 2, _emb())
    assert caplog.text.count("cannot write the GT embedding cache") == 1
    assert cache.load("k" * 64, 0) is None


def test_a_gt_cache_entry_is_found_only_under_its_own_key_and_seed(tmp_path):
    from utils.gt_cache import GTCache
    cache = GTCache(str(tmp_path))
    cache.save("a" * 64, 3, _emb(4))
    assert cache.load("a" * 64, 3).text_emb.shape == (4, 8)
    assert cache.load("a" * 64, 4) is None
    assert cache.load("a" * 16 + "b" * 48, 3) is None  # same file name, another key: not reused


def _report(rows=3):
    from utils.eval_report import EvalReport, MetricStat
    return EvalReport(metrics={"fid": MetricStat(float("nan"), float("nan")), "top1": MetricStat(0.5, 0.01)},
                      real={"top1": MetricStat(0.6, 0.02), "diversity": MetricStat(9.5, 0.1)},
                      rows=[{"replication": i} for i in range(rows)],
                      meta={"protocol": {"num_samples": 64, "split": "test", "batch_size": 32}})


def test_the_report_table_lists_real_only_metrics_and_a_non_finite_mean_as_is():
    from utils.eval_report import format_report
    lines = format_report(_report()).splitlines()
    by_label = {line.split("  ")[0]: line for line in lines}
    assert "Diversity" in by_label and "9.5000 ± 0.1000" in by_label["Diversity"]
    assert by_label["Diversity"].split() == ["Diversity", "9.5000", "±", "0.1000", "-"]  # no model value
    fid = by_label["FID"].split()
    assert fid == ["FID", "-", "nan"]
    assert "0.6000 ± 0.0200" in by_label["R-precision top-1"] and "0.5000 ± 0.0100" in by_label["R-precision top-1"]
    assert lines[-1] == "3 replications of 64 test samples (batch 32); mean ± 1.96·std/√3"


def test_the_report_json_holds_numpy_values_as_numbers_and_every_replication(tmp_path):
    import torch

    from utils.eval_report import write_report_json
    report = _report()
    report.meta.update(steps=np.int64(7), scale=np.float32(0.5), arr=np.arange(3), t=torch.tensor([1.0, 2.0]))
    path = tmp_path / "sub" / "report.json"
    write_report_json(report, str(path))
    data = json.loads(path.read_text())
    assert data["meta"]["steps"] == 7 and isinstance(data["meta"]["steps"], int)
    assert data["meta"]["scale"] == 0.5 and data["meta"]["arr"] == [0, 1, 2] and data["meta"]["t"] == [1.0, 2.0]
    assert data["replications"] == [{"replication": i} for i in range(3)]
    assert data["real"]["diversity"] == {"mean": 9.5, "ci": 0.1}


class _FakeOut:
    """A batch of one generated motion: features (1, T_padded, D), lengths (1,), joints [(T, J, 3)]."""

    def __init__(self, features, length, joints):
        import torch
        self.features = torch.as_tensor(features, dtype=torch.float32)[None]
        self.lengths = torch.tensor([length])
        self.joints = [joints]


def _walker(frames=8, joints_num=22):
    rng = np.random.default_rng(1)
    base = rng.standard_normal((joints_num, 3)).astype(np.float32) * 0.3
    base[:, 1] += 1.0
    return np.stack([base + np.float32(0.05 * t) * np.array([1, 0, 0], np.float32) for t in range(frames)])


def _writer(tmp_path, stems, bvh=True, frame=None):
    from utils.dataset_specs import get_dataset_spec
    from utils.sample_manifest import SampleManifest
    from utils.sample_outputs import Exports, SampleWriter
    manifest = SampleManifest(str(tmp_path), {"checkpoint": "x"}, [f"{s}_features.npy" for s in stems])
    return SampleWriter(str(tmp_path), get_dataset_spec("t2m"), manifest, Exports(None, None, None), "gif",
                        render=False, bvh=bvh, frame=frame)


def test_a_motion_with_a_single_nan_keeps_its_arrays_but_gets_no_bvh(tmp_path):
    from utils.sample_jobs import Generated
    features = np.zeros((8, 263), np.float32)
    features[3, 7] = np.nan
    written = _writer(tmp_path, ["s"]).write("s", "a title", Generated(_FakeOut(features, 8, _walker()), None))
    assert written.finite is False and written.files["bvh"] is None and written.export_errors == {}
    assert sorted(os.listdir(tmp_path)) == ["s.npy", "s_features.npy"]
    # a finite motion of the same run does get its BVH
    ok = _writer(tmp_path, ["t"]).write("t", "t", Generated(_FakeOut(np.zeros((8, 263)), 8, _walker()), None))
    assert ok.finite is True and ok.files["bvh"] == "t.bvh" and (tmp_path / "t.bvh").is_file()


def test_the_saved_features_stop_at_the_samples_length(tmp_path):
    from utils.sample_jobs import Generated
    padded = np.ones((12, 263), np.float32)
    padded[8:] = 0.0
    written = _writer(tmp_path, ["s"], bvh=False).write("s", "t", Generated(_FakeOut(padded, 8, _walker()), None))
    saved = np.load(tmp_path / written.files["features"])
    assert saved.shape == (8, 263) and (saved == 1).all()


def test_the_joints_of_an_edit_of_a_joints_source_are_saved_where_the_source_stands(tmp_path):
    from utils.editing import SourceFrame
    from utils.sample_jobs import Generated
    frame = SourceFrame(np.pi / 2, np.array([2.0, 0.1, -3.0]))
    joints = _walker()
    w = _writer(tmp_path, ["s"], bvh=False, frame=frame)
    w.write("s", "t", Generated(_FakeOut(np.zeros((8, 263)), 8, joints), None))
    saved = np.load(tmp_path / "s.npy")
    np.testing.assert_allclose(saved, frame.place(joints), atol=1e-5)
    assert not np.allclose(saved, joints, atol=1e-3)


def test_an_unreadable_manifest_never_overwrites_an_earlier_unreadable_copy(tmp_path):
    from utils.sample_manifest import SampleManifest
    (tmp_path / "manifest.json.unreadable").write_text("first")
    (tmp_path / "manifest.json.unreadable.1").write_text("second")
    (tmp_path / "manifest.json").write_text("{ third")
    SampleManifest(str(tmp_path), {"checkpoint": "new"}, [])
    assert (tmp_path / "manifest.json.unreadable").read_text() == "first"
    assert (tmp_path / "manifest.json.unreadable.1").read_text() == "second"
    assert (tmp_path / "manifest.json.unreadable.2").read_text() == "{ third"


def _manifest_with(tmp_path, files):
    runs = [{"checkpoint": "old"}]
    _old_manifest(tmp_path, runs, [{"prompt": "a", "run": 0, "files": files}])


def test_replacing_a_sample_removes_only_plain_files_of_its_folder_and_never_a_kept_source(tmp_path):
    from utils.sample_manifest import SampleManifest
    out = tmp_path / "out"
    (out / "sub").mkdir(parents=True)
    outside = tmp_path / "outside.npy"
    outside.write_text("not ours")
    (out / "sub" / "nested.npy").write_text("not ours")
    for name in ("a_features.npy", "a.npy", "a.bvh"):
        (out / name).write_text("old")
    _manifest_with(out, {"features": "a_features.npy", "joints": "a.npy", "bvh": "a.bvh",
                         "video": "../outside.npy", "smpl": "sub/nested.npy"})
    m = SampleManifest(str(out), {"checkpoint": "new"}, ["a_features.npy"], keep=[str(out / "a.bvh")])
    m.replace("a_features.npy")
    assert outside.read_text() == "not ours" and (out / "sub" / "nested.npy").read_text() == "not ours"
    assert (out / "a.bvh").read_text() == "old"  # the edit's source stays
    assert not (out / "a_features.npy").exists() and not (out / "a.npy").exists()
    assert json.loads((out / "manifest.json").read_text())["samples"] == []


def test_listing_a_sample_before_replacing_the_earlier_one_of_its_name_is_refused(tmp_path):
    from utils.sample_manifest import SampleManifest
    (tmp_path / "a_features.npy").write_text("old")
    _manifest_with(tmp_path, {"features": "a_features.npy"})
    m = SampleManifest(str(tmp_path), {"checkpoint": "new"}, ["a_features.npy"])
    with pytest.raises(RuntimeError, match=r"replace\('a_features.npy'\) must come before"):
        m.add({"prompt": "a", "files": {"features": "a_features.npy"}})
    assert (tmp_path / "a_features.npy").read_text() == "old"
    assert [s["prompt"] for s in json.loads((tmp_path / "manifest.json").read_text())["samples"]] == ["a"]


def test_the_view_cube_holds_a_motion_spread_around_its_root():
    from utils.plot_script import auto_radius
    joints = np.zeros((2, 3, 3))
    joints[:, 1, 0] = 1.0   # a hand 1 unit right of the root
    joints[:, 2, 1] = 0.5   # a head 0.5 unit up
    assert auto_radius([joints]) == pytest.approx(2.2)  # both sides of the root, with a 10 % margin
    tall = np.zeros((1, 2, 3))
    tall[0, 1, 1] = 3.0
    assert auto_radius([joints, tall]) == pytest.approx(3.3)
    assert auto_radius([np.zeros((4, 3, 3))]) == 1.0


def test_captions_that_do_not_start_at_frame_zero_are_refused_before_any_file(tmp_path):
    from utils.plot_script import plot_3d_motion
    joints = np.zeros((4, 5, 3))
    joints[:, 1:, 1] = 1.0
    with pytest.raises(ValueError, match=r"captions must start at frame 0 and be in order, got starts \[2, 3\]"):
        plot_3d_motion(str(tmp_path / "m.gif"), joints, CHAIN, fmt="gif", captions=[(2, "a"), (3, "b")])
    assert os.listdir(tmp_path) == []


def test_the_trajectory_drawn_at_a_frame_reaches_the_root_of_that_frame():
    from matplotlib.figure import Figure

    from utils.plot_script import _SkeletonPanel
    joints = np.zeros((5, 5, 3))
    joints[:, 1:, 1] = 1.0
    joints[:, :, 0] += np.arange(5)[:, None] * 0.1  # walks along +x
    ax = Figure().add_subplot(1, 1, 1, projection="3d")
    panel = _SkeletonPanel(ax, joints, CHAIN, 2.0, "")
    for frame in range(5):
        panel.update(frame)
        xs, _, zs = panel.path_line.get_data_3d()
        assert len(xs) == frame + 1
        # the line ends under the skeleton: the view is centred on this frame's root
        assert xs[-1] == pytest.approx(0.0) and zs[-1] == pytest.approx(0.0)
        np.testing.assert_allclose(xs, -0.1 * np.arange(frame, -1, -1), atol=1e-9)


class _FakeGenerator:
    """Records what ``generate_sample`` asks of a generator; estimated lengths are 10 frames per letter of a
    prompt."""

    device = "cpu"

    def __init__(self):
        self.seeds, self.calls = [], []

    def estimate_lengths(self, texts, generator):
        import torch
        self.seeds.append(generator.initial_seed())
        self.calls.append(("estimate", list(texts)))
        return torch.tensor([10 * len(t) for t in texts])

    def generate_sequence(self, texts, lengths, transition_frames, **sampling):
        from types import SimpleNamespace
        self.calls.append(("sequence", list(texts), list(lengths), transition_frames))
        starts = np.cumsum([0] + list(lengths))
        return SimpleNamespace(segments=[(int(a), int(b)) for a, b in zip(starts[:-1], starts[1:])])


def test_a_sequence_draws_only_the_missing_lengths_from_the_samples_seed():
    import torch

    from utils.prompts import Prompt
    from utils.sample_jobs import SampleJob, generate_sample
    prompts = [Prompt("a", 40, "--text_path"), Prompt("bb", None, "estimated"), Prompt("ccc", None, "estimated")]
    gen = _FakeGenerator()
    job = SampleJob(0, 0, Prompt("a / bb / ccc", None, "segments"), "sequence_a_3p_r00")
    out = generate_sample(gen, job, prompts, {0: torch.tensor([40])}, {"seed": 1234}, sequence=True,
                          transition_frames=8)
    assert gen.calls[0] == ("estimate", ["bb", "ccc"])
    assert gen.seeds == [1234]
    assert gen.calls[1] == ("sequence", ["a", "bb", "ccc"], [40, 20, 30], 8)
    assert [(s["prompt"], s["start_frame"], s["end_frame"], s["length_source"]) for s in out.segments] == [
        ("a", 0, 40, "--text_path"), ("bb", 40, 60, "estimated"), ("ccc", 60, 90, "estimated")]


def test_the_run_record_of_an_edit_of_a_joints_source_says_where_the_source_stands():
    from types import SimpleNamespace

    from utils.dataset_specs import get_dataset_spec
    from utils.editing import SourceFrame
    from utils.sample_outputs import run_record
    spec = get_dataset_spec("t2m")
    generator = SimpleNamespace(spec=spec, info={"checkpoint": "/c.tar", "checkpoint_sha256": "ab" * 32},
                                backend=SimpleNamespace(sampler=lambda s: "sampler"), unit_length=4)
    settings = SimpleNamespace(to_dict=lambda: {"cfg": 2.0})
    frame = SourceFrame(np.pi / 2, np.array([2.0, 0.1, -3.0]))
    edit = SimpleNamespace(record=lambda unit: {"source": "src.npy", "unit": unit}, frame=frame)
    record = run_record(generator, settings, 7, 1, edit=edit)
    assert record["edit"]["source"] == "src.npy" and record["edit"]["unit"] == 4
    assert record["edit"]["source_frame"] == frame.record(spec.metres_per_unit)
    assert record["edit"]["source_frame"]["yaw_deg"] == pytest.approx(90.0)
    plain = run_record(generator, settings, 7, 1, edit=SimpleNamespace(record=lambda unit: {"source": "f.npy"},
                                                                       frame=None))
    assert plain["edit"] == {"source": "f.npy"}


def test_the_record_of_an_edit_sample_pairs_span_prompts_left_to_right_and_names_its_length_source():
    from types import SimpleNamespace

    import torch

    from utils.dataset_specs import get_dataset_spec
    from utils.editing import FrameSpan
    from utils.prompts import Prompt
    from utils.sample_jobs import Generated, SampleJob
    from utils.sample_outputs import SampleFiles, sample_record
    spec = get_dataset_spec("t2m")
    out = SimpleNamespace(lengths=torch.tensor([40]), unedited_change=lambda i: 0.0, root_anchors=None)
    job = SampleJob(0, 1, Prompt("first / second", 80, "--motion_length"), "edit_spans_first_2p_r01")
    written = SampleFiles({"features": "x_features.npy"}, True, None, {})
    edit = SimpleNamespace(spans=[FrameSpan(24, 40), FrameSpan(0, 8)])  # given right to left
    prompts = [Prompt("first", None, "x"), Prompt("second", None, "x")]
    record = sample_record(job, 5, Generated(out, None), written, spec, edit=edit, span_prompts=prompts)
    assert record["span_prompts"] == [{"prompt": "first", "frames": [0, 8]}, {"prompt": "second", "frames": [24, 40]}]
    assert record["length_source"] == "--edit_source"
    assert record["length_frames"] == 40 and record["length_seconds"] == pytest.approx(2.0)
    assert record["repeat"] == 1 and record["seed"] == 5
    plain = sample_record(job, 5, Generated(out, None), written, spec)
    assert plain["length_source"] == "--motion_length" and "span_prompts" not in plain


def test_a_failed_smpl_export_gets_no_mesh_video_and_the_sample_is_still_written(tmp_path, monkeypatch):
    import utils.sample_outputs as so
    from utils.dataset_specs import get_dataset_spec
    from utils.sample_jobs import Generated
    from utils.sample_manifest import SampleManifest
    rendered = []

    def failing_smpl(*args, **kwargs):
        raise ValueError("the fit diverged")

    monkeypatch.setattr(so, "write_smpl", failing_smpl)
    monkeypatch.setattr(so, "render_amass_file", lambda *a, **k: rendered.append(a) or a[2])
    manifest = SampleManifest(str(tmp_path), {"checkpoint": "x"}, ["s_features.npy"])
    writer = so.SampleWriter(str(tmp_path), get_dataset_spec("t2m"), manifest, so.Exports("gif", object(), object()),
                             "gif", render=False, bvh=False)
    written = writer.write("s", "t", Generated(_FakeOut(np.zeros((8, 263)), 8, _walker()), None))
    assert rendered == []
    assert written.files["smpl"] is None and written.files["mesh_video"] is None
    assert written.export_errors == {"smpl": "ValueError: the fit diverged"}


def test_an_evaluator_of_another_feature_width_is_refused_naming_both(tmp_path):
    from types import SimpleNamespace

    from utils.dataset_specs import get_dataset_spec
    from utils.eval_data import build_eval_loader
    _dataset(tmp_path)
    spec = get_dataset_spec("synthetic", str(tmp_path))
    ev = SimpleNamespace(dataset_name="synthetic", dim_pose=spec.dim_pose - 4, path=None,
                         word_vectorizer=lambda glove_dir: pytest.fail("reads word vectors before the check"))
    with pytest.raises(ValueError, match=rf"has {spec.dim_pose} features but the evaluator \(in memory\) takes "
                                         rf"{spec.dim_pose - 4}"):
        build_eval_loader(ev, spec, "test", data_root=str(tmp_path), progress=False)


def test_an_unregistered_present_version_is_not_kept(tmp_path):
    import hashlib

    from utils.checkpoint_users import keep_used_version, register_user
    ckpt = tmp_path / "model" / "latest.tar"
    ckpt.parent.mkdir()
    ckpt.write_text("v2")  # a generator trained on v1, which is gone without a kept copy
    register_user(str(ckpt), hashlib.sha256(b"v1").hexdigest(), str(tmp_path / "gen"))
    assert keep_used_version(str(ckpt)) is None
    assert sorted(os.listdir(ckpt.parent)) == ["latest.tar", "used_by.json"]


def test_a_sequence_video_is_captioned_from_each_segments_first_frame(tmp_path, monkeypatch):
    import utils.sample_outputs as so
    from utils.dataset_specs import get_dataset_spec
    from utils.sample_jobs import Generated
    from utils.sample_manifest import SampleManifest
    drawn = {}

    def fake_plot(path, joints, chain, **kwargs):
        drawn.update(kwargs, path=path)
        return path

    monkeypatch.setattr(so, "plot_3d_motion", fake_plot)
    manifest = SampleManifest(str(tmp_path), {"checkpoint": "x"}, ["s_features.npy"])
    writer = so.SampleWriter(str(tmp_path), get_dataset_spec("t2m"), manifest, so.Exports("gif", None, None), "gif",
                             render=True, bvh=False)
    segments = [{"prompt": "walk", "start_frame": 0, "end_frame": 5, "length_source": "x"},
                {"prompt": "jump", "start_frame": 5, "end_frame": 8, "length_source": "x"}]
    written = writer.write("s", "walk / jump", Generated(_FakeOut(np.zeros((8, 263)), 8, _walker()), segments))
    assert drawn["captions"] == [(0, "walk"), (5, "jump")]
    assert drawn["path"] == str(tmp_path / "s.gif") and written.files["video"] == "s.gif"


def test_frames_drawn_by_another_renderer_are_each_drawn_once(tmp_path):
    from utils.plot_script import even_pixels, plot_frames
    size = even_pixels(1.0 * 40)
    asked = []

    def draw(frame):
        asked.append(frame)
        return np.full((size, size, 3), 40 * frame, np.uint8)

    path = plot_frames(str(tmp_path / "mesh.gif"), draw, 4, fps=10, dpi=40, fmt="gif", figsize=1.0)
    assert path == str(tmp_path / "mesh.gif") and os.path.isfile(path)
    assert asked == [0, 1, 2, 3]


def test_a_parent_record_without_a_hash_registers_nothing(tmp_path):
    from utils.checkpoint_users import read_users, register_parent
    ckpt = tmp_path / "model" / "latest.tar"
    ckpt.parent.mkdir()
    ckpt.write_text("v1")
    for parent in ({"path": str(ckpt)}, {"path": str(ckpt), "sha256": ""}, {"path": str(ckpt), "sha256": None}):
        register_parent(parent, str(tmp_path / "gen"))
    assert read_users(str(ckpt)) == {} and not (ckpt.parent / "used_by.json").exists()
    register_parent({"path": str(ckpt), "sha256": "ab" * 32}, str(tmp_path / "gen"))
    assert read_users(str(ckpt)) == {"ab" * 32: [str(tmp_path / "gen")]}
