"""sample.py end to end on tiny untrained runs: files, safe names, manifest, lengths, repeats, seeds, BVH, SMPL, mesh
videos."""

from __future__ import annotations

import json
import logging
import os
import re
import shutil

import numpy as np
import pytest
from test_amass import _body_model
from test_generation import make_runs, save_length_estimator

import sample
from options.config import parse_with_config
from options.eval_generator_options import get_sample_parser
from utils import sample_outputs
from utils.bvh import bvh_positions, parse_bvh
from utils.checkpoint import CheckpointError, file_sha256, load_checkpoint, save_checkpoint
from utils.plot_script import ffmpeg_available

SAFE_NAME = re.compile(r"^[a-z0-9_-]+\.(npy|gif|mp4|bvh)$")


@pytest.fixture(scope="module")
def ckdir(tmp_path_factory, synthetic_root):
    folder = str(tmp_path_factory.mktemp("sample") / "checkpoints")
    make_runs(folder, synthetic_root)
    return folder


def run_sample(ckdir: str, *argv: str) -> dict:
    args = parse_with_config(get_sample_parser(), ["--name", "fsq_gen", "--dataset_name", "synthetic",
                                                   "--checkpoints_dir", ckdir, "--time_steps", "2", *argv])
    return sample.main(args)


def test_prompt_file_with_lengths_repeats_and_gif(ckdir, tmp_path, capsys):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("# a comment line\nA person: walks / turns left#8\n\nCafé — naïve «jump»#NA\n"
                       "someone jumps 2x? <fast>#5\n", encoding="utf-8")
    out = tmp_path / "out"
    manifest = run_sample(ckdir, "--text_path", str(prompts), "--motion_length", "9", "--repeat_times", "2",
                          "--seed", "100", "--output_dir", str(out), "--format", "auto", "--bvh")
    samples = manifest["samples"]
    assert [(s["index"], s["repeat"]) for s in samples] == [(0, 0), (0, 1), (1, 0), (1, 1), (2, 0), (2, 1)]
    assert [s["length_frames"] for s in samples] == [8, 8, 8, 8, 4, 4]
    assert [s["length_source"] for s in samples] == ["--text_path"] * 2 + ["--motion_length"] * 2 + ["--text_path"] * 2
    assert [s["seed"] for s in samples] == list(range(100, 106))
    assert samples[0]["prompt"] == "A person: walks / turns left" and samples[2]["prompt"] == "Café — naïve «jump»"
    assert samples[0]["files"]["joints"] == "a_person_walks_turns_left_000_r00.npy"
    assert samples[3]["files"]["joints"] == "cafe_naive_jump_001_r01.npy"
    assert samples[5]["files"]["video"].startswith("someone_jumps_2x_fast_002_r01.")
    # The summary shows each sample's video and counts its other files (joints, features, BVH).
    table = [line for line in capsys.readouterr().out.splitlines() if "_r01." in line]
    assert len(table) == 3 and all(line.split()[4].endswith(("mp4", "gif")) and "(+3)" in line for line in table)

    video_ext = ".mp4" if ffmpeg_available() else ".gif"
    files = sorted(os.listdir(out))
    for s in samples:
        f = s["files"]
        joints = np.load(out / f["joints"])
        assert joints.shape == (s["length_frames"], 22, 3) and np.isfinite(joints).all()
        assert np.load(out / f["features"]).shape == (s["length_frames"], 263)
        assert f["video"].endswith(video_ext) and (out / f["video"]).stat().st_size > 0
        bvh = parse_bvh(out / f["bvh"])
        assert bvh.frames == s["length_frames"] and bvh.fps == pytest.approx(20.0)
        np.testing.assert_allclose(bvh_positions(bvh)[:, 0], joints[:, 0], atol=1e-4)
        for name in (f["joints"], f["features"], f["video"], f["bvh"]):
            assert SAFE_NAME.match(name) and name in files
    assert len(set(files)) == 4 * len(samples) + 1  # four files per sample, and the manifest
    on_disk = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    assert on_disk["samples"] == samples
    assert on_disk["checkpoint_sha256"] == manifest["generator"]["checkpoint_sha256"]
    assert on_disk["sampling"] == {"time_steps": 2, "cfg": 4.5, "temperature": 1.0, "snap": True}
    # The head's sampler the settings leave to the model, as it ran.
    assert on_disk["sampler"]["head"]["diffusion"] in ("sit", "ddpm") and "solver" in on_disk["sampler"]["head"]
    # Two repeats of a prompt differ; their seeds are recorded.
    assert not np.allclose(np.load(out / samples[0]["files"]["joints"]), np.load(out / samples[1]["files"]["joints"]))


def test_recorded_seed_regenerates_a_sample(ckdir, tmp_path):
    first = run_sample(ckdir, "--text_prompt", "a person walks", "--motion_length", "20", "--repeat_times", "3",
                       "--seed", "7", "--no_render", "--output_dir", str(tmp_path / "a"))
    chosen = first["samples"][2]
    again = run_sample(ckdir, "--text_prompt", "a person walks", "--motion_length", "20", "--seed",
                       str(chosen["seed"]), "--no_render", "--output_dir", str(tmp_path / "b"))
    a = np.load(tmp_path / "a" / chosen["files"]["joints"])
    b = np.load(tmp_path / "b" / again["samples"][0]["files"]["joints"])
    np.testing.assert_array_equal(a, b)
    assert chosen["files"]["video"] is None
    assert not any(n.endswith((".gif", ".mp4")) for n in os.listdir(tmp_path / "a"))


def test_default_output_dir_and_estimated_lengths(ckdir, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a person jumps#40\na person waves\n")
    with pytest.raises(CheckpointError, match="no length estimator found"):  # before the first sample, not after
        run_sample(ckdir, "--text_path", str(prompts), "--no_render")
    assert not (tmp_path / "generation" / "fsq_gen_synthetic" / "manifest.json").exists()
    clip = os.path.join(ckdir, "clip", "ViT-tiny.pt")
    save_length_estimator(ckdir, clip)
    manifest = run_sample(ckdir, "--text_prompt", "a person walks", "--no_render", "--repeat_times", "2")
    out = tmp_path / "generation" / "fsq_gen_synthetic"
    assert (out / "manifest.json").is_file()
    for s in manifest["samples"]:
        assert s["length_source"] == "length estimator"
        assert s["length_frames"] % 4 == 0 and 4 <= s["length_frames"] <= 196
        assert np.load(out / s["files"]["joints"]).shape[0] == s["length_frames"]


def test_the_run_record_names_the_length_estimator_that_estimated_lengths(ckdir, tmp_path):
    # Training the estimator further changed the sampled lengths while the manifest's run record stayed the same.
    path = save_length_estimator(str(tmp_path / "estimators"), os.path.join(ckdir, "clip", "ViT-tiny.pt"))
    argv = ["--text_prompt", "a person walks", "--no_render", "--length_estimator", path]
    first = run_sample(ckdir, *argv, "--output_dir", str(tmp_path / "a"))
    recorded = {"checkpoint": os.path.abspath(path), "checkpoint_sha256": file_sha256(path)}
    assert first["length_estimator"] == first["runs"][-1]["length_estimator"] == recorded
    state = load_checkpoint(path)
    state["model"] = {key: value + 0.01 for key, value in state["model"].items()}  # trained further
    save_checkpoint(path, state)
    again = run_sample(ckdir, *argv, "--output_dir", str(tmp_path / "b"))
    assert again["length_estimator"]["checkpoint_sha256"] == file_sha256(path) != recorded["checkpoint_sha256"]
    given = run_sample(ckdir, "--text_prompt", "a person walks", "--motion_length", "40", "--no_render",
                       "--length_estimator", path, "--output_dir", str(tmp_path / "c"))
    assert "length_estimator" not in given  # no length was estimated


def test_bad_requests_fail_clearly(ckdir, tmp_path):
    with pytest.raises(ValueError, match="nothing to generate"):
        run_sample(ckdir)
    with pytest.raises(ValueError, match="at least one token"):
        run_sample(ckdir, "--text_prompt", "a person walks", "--motion_length", "2", "--no_render",
                   "--output_dir", str(tmp_path))
    with pytest.raises(CheckpointError, match="trained with text encoder 'clip', asked for 'minilm'"):
        run_sample(ckdir, "--text_prompt", "a person walks", "--text_encoder", "minilm")


def test_a_length_shorter_than_a_token_names_where_it_came_from(ckdir, tmp_path):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a person walks#40\na person jumps#2\n", encoding="utf-8")
    with pytest.raises(ValueError, match=rf"{re.escape(str(prompts))}: prompt 'a person jumps': length 2 frames; "
                                         rf"motion lengths must be at least one token"):
        run_sample(ckdir, "--text_path", str(prompts), "--no_render", "--output_dir", str(tmp_path / "out"))
    with pytest.raises(ValueError, match=r"--motion_length: length 3 frames; motion lengths must be at least one"):
        run_sample(ckdir, "--text_prompt", "a person walks", "--motion_length", "3", "--no_render",
                   "--output_dir", str(tmp_path / "out"))
    assert not (tmp_path / "out").exists()  # refused before the samples' folder is made


@pytest.mark.parametrize("length", ["100000", "99999999999999999999"])
def test_a_clamped_length_is_reported_once(ckdir, tmp_path, caplog, length):
    """Any length, one past the 64-bit range too (it failed with torch's 'Overflow when unpacking long long')."""
    with caplog.at_level(logging.WARNING):
        manifest = run_sample(ckdir, "--text_prompt", "a person walks", "--motion_length", length, "--no_render",
                              "--repeat_times", "2", "--output_dir", str(tmp_path))
    assert [s["length_frames"] for s in manifest["samples"]] == [196, 196]
    assert [r.getMessage() for r in caplog.records if "clamped" in r.getMessage()] == [
        f"--motion_length: length {length} frames exceeds the 196 frames the model was trained on; clamped"]


@pytest.mark.parametrize("seed, repeats", [(2**64 - 2, 3), (-2**63 - 1, 1)])
def test_a_seed_out_of_range_for_any_sample_is_refused_before_work(ckdir, tmp_path, seed, repeats):
    """Sample k is seeded with --seed + k: a seed whose last sample fell outside torch's range wrote the first
    samples, then failed with 'Overflow when unpacking long long'."""
    with pytest.raises(ValueError, match=rf"--seed {seed}: sample k uses seed --seed \+ k, .* for {repeats} "
                                         rf"sample\(s\) give a seed from -9223372036854775808 to {2**64 - repeats}"):
        run_sample(ckdir, "--text_prompt", "a person walks", "--motion_length", "8", "--no_render", "--seed",
                   str(seed), "--repeat_times", str(repeats), "--output_dir", str(tmp_path / "out"))
    assert not (tmp_path / "out").exists()
    manifest = run_sample(ckdir, "--text_prompt", "a person walks", "--motion_length", "8", "--no_render", "--seed",
                          str(2**64 - 2), "--repeat_times", "2", "--output_dir", str(tmp_path / "out"))
    assert [s["seed"] for s in manifest["samples"]] == [2**64 - 2, 2**64 - 1]


def test_a_generator_file_outside_a_run_uses_the_estimator_under_checkpoints_dir(synthetic_root, tmp_path):
    own = str(tmp_path / "checkpoints")  # not the module's folder: its estimator would change the other tests
    make_runs(own, synthetic_root)
    loose = tmp_path / "gen.tar"
    loose.write_bytes(open(os.path.join(own, "synthetic", "fsq_gen", "model", "latest.tar"), "rb").read())
    save_length_estimator(own, os.path.join(own, "clip", "ViT-tiny.pt"))
    args = parse_with_config(get_sample_parser(), ["--ckpt", str(loose), "--checkpoints_dir", own, "--time_steps",
                                                   "2", "--no_render", "--text_prompt", "a person walks",
                                                   "--output_dir", str(tmp_path / "out")])
    manifest = sample.main(args)
    assert manifest["samples"][0]["length_source"] == "length estimator"


def test_a_link_to_a_moved_runs_generator_finds_its_tokenizer_and_estimator_beside_the_target(synthetic_root,
                                                                                                 tmp_path):
    """The runs folder was moved after training (the recorded tokenizer path is stale) and the generator is reached
    through a symbolic link elsewhere: the tokenizer and the length estimator are looked up beside the link's target,
    as they are for the file itself."""
    trained = tmp_path / "checkpoints"
    make_runs(str(trained), synthetic_root)
    save_length_estimator(str(trained), str(trained / "clip" / "ViT-tiny.pt"))
    moved = tmp_path / "archive" / "checkpoints"
    moved.parent.mkdir()
    trained.rename(moved)
    (tmp_path / "links").mkdir()
    link = tmp_path / "links" / "gen.tar"
    link.symlink_to(moved / "synthetic" / "fsq_gen" / "model" / "latest.tar")
    args = parse_with_config(get_sample_parser(), ["--ckpt", str(link), "--checkpoints_dir", str(tmp_path / "none"),
                                                   "--time_steps", "2", "--no_render", "--text_prompt",
                                                   "a person walks", "--output_dir", str(tmp_path / "out"),
                                                   "--text_encoder_path", str(moved / "clip" / "ViT-tiny.pt")])
    manifest = sample.main(args)
    assert manifest["samples"][0]["length_source"] == "length estimator"
    assert manifest["generator"]["tokenizer"]["path"].startswith(str(moved))


def test_mp4_without_ffmpeg_is_a_one_line_error(ckdir, monkeypatch):
    monkeypatch.setattr("utils.plot_script.ffmpeg_available", lambda: False)
    with pytest.raises(ValueError, match="--format mp4: MP4 output needs the ffmpeg executable"):
        run_sample(ckdir, "--text_prompt", "a person walks", "--format", "mp4")


def test_an_output_dir_that_is_a_file_is_a_one_line_error_naming_the_flag(ckdir, tmp_path):
    from utils.cli import USER_ERRORS

    taken = tmp_path / "notes.txt"
    taken.write_text("not a folder\n")
    for output_dir in (taken, taken / "samples"):
        with pytest.raises(USER_ERRORS, match=rf"--output_dir: cannot make the folder {re.escape(str(output_dir))}: "
                                              rf"{re.escape(str(taken))} is a file"):
            run_sample(ckdir, "--text_prompt", "a person walks", "--motion_length", "8", "--no_render",
                       "--output_dir", str(output_dir))
    assert taken.read_text() == "not a folder\n"


def test_a_folder_where_the_manifest_goes_is_refused_before_any_sample(ckdir, tmp_path):
    """It was found when the first sample was listed: that sample's files stayed, listed nowhere, and the error
    named a temporary file."""
    out = tmp_path / "out"
    (out / "manifest.json").mkdir(parents=True)
    with pytest.raises(IsADirectoryError, match=rf"{re.escape(str(out / 'manifest.json'))} is a folder; the "
                                                rf"samples' manifest is written there"):
        run_sample(ckdir, "--text_prompt", "a person walks", "--motion_length", "8", "--no_render",
                   "--output_dir", str(out))
    assert [p.name for p in out.iterdir()] == ["manifest.json"]


def test_mp4_stick_figure_and_mesh_videos(ckdir, tmp_path, monkeypatch):
    """--format mp4 writes both videos as H.264 (through a stand-in ffmpeg) and lists them under their .mp4 names."""
    from test_smpl_mesh import mesh_model
    from video_helpers import assert_h264_frames, install_fake_ffmpeg

    install_fake_ffmpeg(tmp_path / "bin", monkeypatch)
    out = tmp_path / "out"
    (record,) = run_sample(ckdir, "--text_prompt", "a person walks", "--motion_length", "8", "--format", "mp4",
                           "--smpl", str(mesh_model(tmp_path / "model.npz")), "--mesh_video",
                           "--output_dir", str(out))["samples"]
    files = record["files"]
    assert files["video"] == files["joints"].replace(".npy", ".mp4")
    assert files["mesh_video"] == files["joints"].replace(".npy", "_mesh.mp4")
    assert_h264_frames(str(out / files["video"]), record["length_frames"], 20.0)
    assert_h264_frames(str(out / files["mesh_video"]), record["length_frames"], 20.0)


def test_a_non_finite_motion_keeps_its_arrays_and_the_run_goes_on(ckdir, tmp_path, monkeypatch, caplog):
    from utils.generation import MotionGenerator

    generate = MotionGenerator.generate
    calls = []

    def first_diverges(self, *args, **kwargs):
        out = generate(self, *args, **kwargs)
        calls.append(1)
        if len(calls) == 1:
            out.features[0, 2] = float("nan")
        return out

    monkeypatch.setattr(MotionGenerator, "generate", first_diverges)
    out = tmp_path / "out"
    with caplog.at_level(logging.WARNING, logger="sample"):
        manifest = run_sample(ckdir, "--text_prompt", "a person walks", "--motion_length", "8", "--repeat_times", "2",
                              "--format", "gif", "--bvh", "--smpl", str(_body_model(tmp_path / "model.npz")),
                              "--output_dir", str(out))
    first, second = manifest["samples"]
    assert not first["finite"] and second["finite"]
    assert first["files"]["video"] is None and first["files"]["bvh"] is None and first["files"]["smpl"] is None
    assert "smpl_fit" not in first and (out / second["files"]["smpl"]).is_file()
    assert np.isnan(np.load(out / first["files"]["features"])).any()
    assert np.load(out / first["files"]["joints"]).shape == (8, 22, 3)
    assert second["files"]["video"] and second["files"]["bvh"]
    assert json.loads((out / "manifest.json").read_text(encoding="utf-8"))["samples"] == manifest["samples"]
    assert any("NaN or Inf" in r.message for r in caplog.records)


def test_sampling_again_into_a_folder_keeps_the_earlier_samples_listed(ckdir, tmp_path, caplog):
    out = tmp_path / "out"
    common = ("--motion_length", "8", "--no_render", "--output_dir", str(out))
    walk = run_sample(ckdir, "--text_prompt", "a person walks", "--seed", "1", *common)
    jump = run_sample(ckdir, "--text_prompt", "a person jumps", "--seed", "2", "--cfg", "2", *common)
    on_disk = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    assert on_disk == jump
    assert [(s["prompt"], s["run"], s["seed"]) for s in on_disk["samples"]] == [("a person walks", 0, 1),
                                                                                ("a person jumps", 1, 2)]
    assert [run["sampling"]["cfg"] for run in on_disk["runs"]] == [walk["sampling"]["cfg"], 2.0]
    assert on_disk["sampling"]["cfg"] == 2.0 and on_disk["seed"] == 2  # the top level is the latest run
    assert all((out / s["files"]["features"]).is_file() for s in on_disk["samples"])

    # The same prompt again writes the same file names: its earlier entry (and the run left without samples) goes.
    with caplog.at_level(logging.WARNING, logger="utils.sample_manifest"):
        again = run_sample(ckdir, "--text_prompt", "a person walks", "--seed", "3", *common)
    assert any("1 sample(s) of an earlier run" in r.message for r in caplog.records)
    assert [(s["prompt"], s["run"], s["seed"]) for s in again["samples"]] == [("a person jumps", 0, 2),
                                                                              ("a person walks", 1, 3)]
    assert [run["seed"] for run in again["runs"]] == [2, 3]

    # A manifest written before runs were recorded reads as one run; an unreadable one is moved aside, not lost.
    old = {key: again["runs"][0][key] for key in again["runs"][0]}
    old["samples"] = [{k: v for k, v in again["samples"][0].items() if k != "run"}]
    (out / "manifest.json").write_text(json.dumps(old), encoding="utf-8")
    merged = run_sample(ckdir, "--text_prompt", "a person walks", "--seed", "4", *common)
    assert [(s["prompt"], s["run"]) for s in merged["samples"]] == [("a person jumps", 0), ("a person walks", 1)]
    assert merged["runs"][0]["seed"] == 2
    # Each unreadable manifest gets its own copy: a later one does not overwrite an earlier one's.
    asides = ("manifest.json.unreadable",) + tuple(f"manifest.json.unreadable.{n}" for n in range(1, 5))
    broken_manifests = ('{"samples": [', json.dumps({**merged, "samples": [{**merged["samples"][0], "run": "first"}]}),
                        json.dumps({**merged, "samples": [{**merged["samples"][0], "run": 7}]}),
                        json.dumps({**merged, "samples": [{**merged["samples"][0], "files": ["a.npy"]}]}),
                        json.dumps({**merged, "samples": [{**merged["samples"][0], "files": {"features": ["a"]}}]}))
    for aside, broken in zip(asides, broken_manifests):
        (out / "manifest.json").write_text(broken, encoding="utf-8")
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="utils.sample_manifest"):
            fresh = run_sample(ckdir, "--text_prompt", "a person walks", "--seed", "5", *common)
        assert [s["seed"] for s in fresh["samples"]] == [5] and len(fresh["runs"]) == 1
        assert any(f"moved to {out / aside}" in r.message for r in caplog.records)
    for aside, broken in zip(asides, broken_manifests):
        assert (out / aside).read_text(encoding="utf-8") == broken


def test_a_replaced_sample_leaves_no_file_of_the_earlier_motion(ckdir, tmp_path):
    """Sampling a prompt again into its folder with fewer outputs (no video, no BVH) must not leave the earlier
    motion's video and BVH under the new sample's names, where they would pass for the new motion's."""
    out = tmp_path / "out"
    common = ("--text_prompt", "a person walks", "--motion_length", "8", "--output_dir", str(out))
    (first,) = run_sample(ckdir, *common, "--seed", "1", "--format", "gif", "--bvh")["samples"]
    assert (out / first["files"]["video"]).is_file() and (out / first["files"]["bvh"]).is_file()
    (second,) = run_sample(ckdir, *common, "--seed", "2", "--no_render")["samples"]
    assert second["files"]["joints"] == first["files"]["joints"] and second["files"]["bvh"] is None
    assert sorted(os.listdir(out)) == sorted(["manifest.json", first["files"]["joints"], first["files"]["features"]])


def _assert_manifest_matches_folder(out) -> dict:
    """Every file the manifest lists is there, and every file there is listed."""
    manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    listed = {name for s in manifest["samples"] for name in s["files"].values() if name}
    assert all((out / name).is_file() for name in listed), sorted(listed - set(os.listdir(out)))
    assert set(os.listdir(out)) - {"manifest.json"} == listed
    return manifest


def test_an_interrupted_replacing_run_lists_every_file_it_leaves(ckdir, tmp_path, monkeypatch):
    """A run that replaces samples of the same names and stops part way keeps the manifest true to the folder: the
    earlier samples it has not replaced yet stay listed, and none is listed whose files were removed."""
    from utils import sample_manifest
    from utils.generation import MotionGenerator

    out = tmp_path / "out"
    common = ("--text_prompt", "a person walks", "--motion_length", "8", "--repeat_times", "2", "--no_render",
              "--output_dir", str(out))
    run_sample(ckdir, *common, "--seed", "1", "--bvh")

    # Stopped while making the second sample: the first is replaced, the earlier second is still listed.
    generate, calls = MotionGenerator.generate, []

    def second_fails(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return generate(self, *args, **kwargs)

    monkeypatch.setattr(MotionGenerator, "generate", second_fails)
    with pytest.raises(KeyboardInterrupt):
        run_sample(ckdir, *common, "--seed", "10", "--bvh")
    monkeypatch.setattr(MotionGenerator, "generate", generate)
    manifest = _assert_manifest_matches_folder(out)
    assert sorted((s["repeat"], s["seed"]) for s in manifest["samples"]) == [(0, 10), (1, 2)]

    # Stopped while writing the manifest, by a run without --bvh: the earlier sample it was about to replace is still
    # listed, with its arrays and BVH untouched.
    def write_fails(path, data):
        raise KeyboardInterrupt

    monkeypatch.setattr(sample_manifest, "write_json", write_fails)
    with pytest.raises(KeyboardInterrupt):
        run_sample(ckdir, *common, "--seed", "20")
    manifest = _assert_manifest_matches_folder(out)
    assert sorted((s["repeat"], s["seed"]) for s in manifest["samples"]) == [(0, 10), (1, 2)]


def test_a_run_stopped_while_writing_an_array_leaves_no_cut_short_file(ckdir, tmp_path, monkeypatch):
    """The joints and features arrays go through a temporary file: a run stopped while writing one leaves no file cut
    short under its name, nor a temporary, and the manifest no longer lists the earlier sample it was replacing."""
    out = tmp_path / "out"
    common = ("--text_prompt", "a person walks", "--motion_length", "8", "--no_render", "--output_dir", str(out))
    run_sample(ckdir, *common, "--seed", "1")

    def stopped_half_way(file, array, *args, **kwargs):
        if isinstance(file, (str, os.PathLike)):
            with open(file, "wb") as f:
                f.write(b"\x93NUMPY")
        else:
            file.write(b"\x93NUMPY")
        raise KeyboardInterrupt

    monkeypatch.setattr(np, "save", stopped_half_way)
    with pytest.raises(KeyboardInterrupt):
        run_sample(ckdir, *common, "--seed", "2")
    monkeypatch.undo()
    assert os.listdir(out) == ["manifest.json"]
    assert _assert_manifest_matches_folder(out)["samples"] == []


def _listed_files(out) -> dict[str, dict[str, bytes]]:
    """{(prompt, seed): {file name: bytes}} of every sample the manifest of ``out`` lists; a listed file that is
    missing fails."""
    manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    listed = {}
    for s in manifest["samples"]:
        names = [name for name in s["files"].values() if name]
        missing = [name for name in names if not (out / name).is_file()]
        assert not missing, f"{s['prompt']!r} (seed {s['seed']}) lists missing {missing}"
        listed[(s["prompt"], s["seed"])] = {name: (out / name).read_bytes() for name in names}
    return listed


@pytest.mark.parametrize("stop", ["before", "after"])
def test_a_run_stopped_around_an_array_write_never_lists_a_sample_with_another_ones_array(ckdir, tmp_path,
                                                                                         monkeypatch, stop):
    """A run into a folder whose samples it replaces (same prompt, index and repeat), stopped just before or just
    after writing any of its arrays, leaves each listed sample with its own files: the earlier sample with the
    earlier arrays, or the new one with the new arrays, never the earlier prompt and seed with a new array."""
    common = ("--text_prompt", "a person walks", "--motion_length", "8", "--repeat_times", "2", "--no_render")
    earlier, new = tmp_path / "earlier", tmp_path / "new"
    run_sample(ckdir, *common, "--seed", "1", "--output_dir", str(earlier))
    run_sample(ckdir, *common, "--seed", "11", "--output_dir", str(new))
    made = {**_listed_files(earlier), **_listed_files(new)}  # what each sample's files hold when it is made whole
    assert len(made) == 4

    save_array = sample_outputs.save_array
    for stop_at in range(4):  # features, joints of repeat 0, then of repeat 1
        out = tmp_path / f"stopped_{stop_at}"
        shutil.copytree(earlier, out)
        calls: list[str] = []

        def stopped(path, array, stop_at=stop_at, calls=calls):
            calls.append(path)
            if len(calls) - 1 == stop_at and stop == "before":
                raise KeyboardInterrupt
            save_array(path, array)
            if len(calls) - 1 == stop_at:
                raise KeyboardInterrupt

        monkeypatch.setattr(sample_outputs, "save_array", stopped)
        with pytest.raises(KeyboardInterrupt):
            run_sample(ckdir, *common, "--seed", "11", "--output_dir", str(out))
        monkeypatch.undo()
        listed = _listed_files(out)
        for key, files in listed.items():
            assert files == made[key], f"stopped {stop} array write {stop_at}: {key} is listed with other files"
        # Listed: the new first sample once both its arrays are written, the earlier second one until the run
        # starts writing over it; the earlier first one is dropped before its arrays are.
        assert set(listed) == ({("a person walks", 11)} if stop_at >= 2 else {("a person walks", 2)}), stop_at
        assert not [name for name in os.listdir(out) if name.startswith(".tmp-")]


@pytest.mark.parametrize("export", ["write_bvh", "write_smpl"])
def test_a_failed_export_keeps_the_sample_listed_and_the_run_going(ckdir, tmp_path, monkeypatch, caplog, export):
    """A BVH or SMPL export that fails for one sample leaves that sample listed with the files it has and the error,
    names the sample and the export, and the other samples are made as usual."""
    writer, calls = getattr(sample_outputs, export), []

    def first_fails(*args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            raise ValueError("the export broke")
        return writer(*args, **kwargs)

    monkeypatch.setattr(sample_outputs, export, first_fails)
    out = tmp_path / "out"
    with caplog.at_level(logging.WARNING, logger="sample"):
        first, second = run_sample(ckdir, "--text_prompt", "a person walks", "--motion_length", "8", "--repeat_times",
                                   "2", "--no_render", "--bvh", "--smpl", str(_body_model(tmp_path / "model.npz")),
                                   "--output_dir", str(out))["samples"]
    key, flag = {"write_bvh": ("bvh", "--bvh"), "write_smpl": ("smpl", "--smpl")}[export]
    assert first["files"][key] is None and "the export broke" in first["export_errors"][key]
    assert all(first["files"][other] for other in ("joints", "features", "bvh", "smpl") if other != key)
    assert second["files"][key] and "export_errors" not in second
    stem = first["files"]["joints"][:-len(".npy")]
    assert any(r.message.startswith(f"{stem}: the {flag} export failed") and "the export broke" in r.message
               for r in caplog.records)
    _assert_manifest_matches_folder(out)


def _gif_seconds(path) -> float:
    """How long a GIF plays (Pillow merges equal consecutive frames into one of their summed duration)."""
    from PIL import Image, ImageSequence

    with Image.open(path) as gif:
        return sum(frame.info["duration"] for frame in ImageSequence.Iterator(gif)) / 1000.0


def test_mesh_video_of_the_smpl_parameters(ckdir, tmp_path, monkeypatch, caplog):
    """--smpl --mesh_video draws the exported parameters' mesh next to the stick figure and lists it; without --smpl,
    or with a body model that has no mesh, it fails before the generator loads; a failed encoder keeps every file."""
    from test_smpl_mesh import mesh_model

    import utils.plot_script as plot_script

    model = str(mesh_model(tmp_path / "model.npz"))
    out = tmp_path / "out"
    manifest = run_sample(ckdir, "--text_prompt", "a person walks", "--motion_length", "8", "--format", "gif",
                          "--smpl", model, "--mesh_video", "--output_dir", str(out))
    (record,) = manifest["samples"]
    files = record["files"]
    assert files["mesh_video"] == files["joints"].replace(".npy", "_mesh.gif") and files["video"].endswith(".gif")
    assert _gif_seconds(out / files["mesh_video"]) == pytest.approx(record["length_seconds"])
    assert json.loads((out / "manifest.json").read_text(encoding="utf-8"))["samples"] == manifest["samples"]
    # --no_render drops the stick figure only.
    only_mesh = run_sample(ckdir, "--text_prompt", "a person walks", "--motion_length", "8", "--format", "gif",
                           "--smpl", model, "--mesh_video", "--no_render", "--output_dir", str(tmp_path / "mesh"))
    assert only_mesh["samples"][0]["files"]["video"] is None and only_mesh["samples"][0]["files"]["mesh_video"]

    def explode(*args, **kwargs):
        raise RuntimeError("encoder exploded")

    monkeypatch.setattr(plot_script, "_write_animation", explode)
    broken = tmp_path / "broken"
    with caplog.at_level(logging.WARNING, logger="sample"):
        files = run_sample(ckdir, "--text_prompt", "a person walks", "--motion_length", "8", "--format", "gif",
                           "--smpl", model, "--mesh_video", "--output_dir", str(broken))["samples"][0]["files"]
    assert files["mesh_video"] is None and files["video"] is None and (broken / files["smpl"]).is_file()
    assert (broken / files["joints"]).is_file() and not list(broken.glob("*.gif"))
    assert any("no mesh video" in r.message and "the parameters are in" in r.message for r in caplog.records)

    def no_model(*_args, **_kwargs):
        raise AssertionError("the generator was loaded before the flags were checked")

    monkeypatch.setattr(sample, "load_generator", no_model)
    with pytest.raises(ValueError, match=r"--mesh_video draws the mesh of the SMPL parameters that --smpl exports"):
        run_sample(ckdir, "--text_prompt", "a person walks", "--mesh_video")
    with pytest.raises(ValueError, match=r"--smpl: .*joints_only\.npz: body model lacks weights; expected weights"):
        run_sample(ckdir, "--text_prompt", "a person walks", "--mesh_video", "--smpl",
                   str(_body_model(tmp_path / "joints_only.npz")))


def test_a_run_without_sequence_does_not_speak_of_transitions(ckdir, tmp_path, caplog):
    """--transition_seconds off the token grid is said only for a --sequence: a run of single prompts is silent."""
    with caplog.at_level("WARNING", logger="sample"):
        manifest = run_sample(ckdir, "--text_prompt", "a person walks", "--motion_length", "16", "--no_render",
                              "--transition_seconds", "0.3", "--output_dir", str(tmp_path / "out"))
    assert "sequence" not in manifest["runs"][-1] and len(manifest["samples"]) == 1
    assert [r.getMessage() for r in caplog.records if "transition" in r.getMessage()] == []


def test_an_edit_keeps_its_source_file_when_the_sample_it_replaces_lists_it(ckdir, source, tmp_path):
    """An earlier sample of the edit's name whose files include the edit's source is replaced, but the source file
    stays on disk with its content."""
    out = tmp_path / "out"
    out.mkdir()
    src = out / "walk_features.npy"
    np.save(src, source)
    stem = "a_person_jumps_edit_000_r00"
    (out / f"{stem}.npy").write_bytes(b"old joints")
    (out / "manifest.json").write_text(json.dumps({"runs": [{"checkpoint": "old"}], "samples": [
        {"run": 0, "prompt": "old", "files": {"features": f"{stem}_features.npy", "joints": f"{stem}.npy",
                                               "bvh": "walk_features.npy"}}]}), encoding="utf-8")
    manifest = run_sample(ckdir, "--text_prompt", "a person jumps", "--edit_source", str(src),
                          "--edit_frames", "8:24", "--no_render", "--output_dir", str(out))
    assert [s["prompt"] for s in manifest["samples"]] == ["a person jumps"]
    np.testing.assert_array_equal(np.load(src), source)
    assert np.load(out / f"{stem}.npy").shape == (48, 22, 3)
