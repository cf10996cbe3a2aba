"""Stick-figure rendering (utils/plot_script.py) and the render.py CLI, on tiny random-walk motions."""

import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import matplotlib
import numpy as np
import pytest
from PIL import Image

import render
from utils import plot_script
from utils.dataset_specs import get_dataset_spec

SPEC = get_dataset_spec("t2m")
FRAMES = 12
SMALL = {"dpi": 30, "figsize": 1.5}


def random_walk(frames: int = FRAMES, joints: int = SPEC.joints_num, seed: int = 0) -> np.ndarray:
    """(T, J, 3): a jittering body whose root wanders on the floor."""
    rng = np.random.default_rng(seed)
    body = rng.normal(scale=0.3, size=(1, joints, 3)) + np.array([0.0, 1.0, 0.0])
    root = np.cumsum(rng.normal(scale=0.05, size=(frames, 1, 3)), axis=0) * np.array([1.0, 0.0, 1.0])
    return (body + root + rng.normal(scale=0.02, size=(frames, joints, 3))).astype(np.float32)


def assert_gif(path: str, frames: int) -> None:
    with open(path, "rb") as f:
        assert f.read(6) in (b"GIF89a", b"GIF87a")
    with Image.open(path) as image:
        assert image.n_frames == frames


def gif_durations(path: str) -> list[int]:
    """The delay of every frame of a GIF, in milliseconds."""
    with Image.open(path) as image:
        durations = []
        for k in range(image.n_frames):
            image.seek(k)
            durations.append(image.info["duration"])
    return durations


def assert_mp4(path: str) -> None:
    with open(path, "rb") as f:
        assert f.read(8)[4:] == b"ftyp"


@pytest.fixture
def no_ffmpeg(monkeypatch):
    monkeypatch.setattr(plot_script.shutil, "which", lambda *args, **kwargs: None)


def test_gif_fallback_without_ffmpeg(no_ffmpeg, tmp_path):
    joints = random_walk()
    out = plot_script.plot_3d_motion(str(tmp_path / "walk.mp4"), joints, SPEC.kinematic_chain, title="a walk " * 20,
                                     fps=SPEC.fps, **SMALL)
    assert out == str(tmp_path / "walk.gif")
    assert_gif(out, FRAMES)
    assert not (tmp_path / "walk.mp4").exists()
    np.testing.assert_array_equal(np.load(tmp_path / "walk.npy"), joints)


@pytest.mark.parametrize("fps", [30.0, 24.0, 20.0, 12.5])
def test_gif_plays_in_real_time(no_ffmpeg, tmp_path, fps):
    # GIF frame delays are whole centiseconds: a constant int(1000 / fps) ms (30 ms at 30 fps) would play a 30 fps
    # motion 11 % fast; the delays must add up to the motion's duration.
    frames = 30
    out = plot_script.plot_3d_motion(str(tmp_path / "walk.mp4"), random_walk(frames), SPEC.kinematic_chain, fps=fps,
                                     save_joints=False, **SMALL)
    durations = gif_durations(out)
    assert len(durations) == frames
    assert abs(sum(durations) - 1000.0 * frames / fps) <= 10.0
    assert max(durations) - min(durations) <= 10


@pytest.mark.parametrize("fps", [60.0, 120.0, 250.0])
def test_gif_above_50_fps_drops_frames_and_keeps_the_duration(no_ffmpeg, tmp_path, fps):
    # Viewers play a delay below 2 cs (0 or 10 ms) at about 10 fps, so a 120 fps motion would crawl 12 times too
    # slowly: frames are dropped to 50 fps (2 cs each) and the delays still add up to the motion's duration.
    frames = 60
    out = plot_script.plot_3d_motion(str(tmp_path / "walk.mp4"), random_walk(frames), SPEC.kinematic_chain, fps=fps,
                                     save_joints=False, **SMALL)
    durations = gif_durations(out)
    assert min(durations) >= 20
    assert abs(sum(durations) - 1000.0 * frames / fps) <= 10.0


@pytest.mark.skipif(not plot_script.ffmpeg_available(), reason="ffmpeg executable not installed on this machine")
def test_mp4_with_ffmpeg(tmp_path):
    out = plot_script.plot_3d_motion(str(tmp_path / "walk.gif"), random_walk(), SPEC.kinematic_chain, fmt="mp4",
                                     **SMALL)
    assert out == str(tmp_path / "walk.mp4")
    assert_mp4(out)


def test_explicit_mp4_without_ffmpeg_fails_clearly_after_saving(no_ffmpeg, tmp_path):
    joints = random_walk()
    with pytest.raises(plot_script.RenderError, match="ffmpeg") as info:
        plot_script.plot_3d_motion(str(tmp_path / "walk.mp4"), joints, SPEC.kinematic_chain, fmt="mp4", **SMALL)
    assert str(tmp_path / "walk.npy") in str(info.value)
    np.testing.assert_array_equal(np.load(tmp_path / "walk.npy"), joints)


def test_broken_ffmpeg_falls_back_to_gif(monkeypatch, tmp_path):
    # An ffmpeg that dies at once stands for a broken codec install (e.g. a wrong libopenh264).
    fake = tmp_path / "bin" / "ffmpeg"
    fake.parent.mkdir()
    fake.write_text("#!/bin/sh\nexit 1\n")
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setitem(matplotlib.rcParams, "animation.ffmpeg_path", str(fake))
    assert plot_script.ffmpeg_available()
    out = plot_script.plot_3d_motion(str(tmp_path / "walk.mp4"), random_walk(), SPEC.kinematic_chain, **SMALL)
    assert out.endswith(".gif")
    assert_gif(out, FRAMES)
    assert not (tmp_path / "walk.mp4").exists()


def test_joints_saved_when_writer_raises(monkeypatch, tmp_path):
    def explode(*args, **kwargs):
        raise RuntimeError("encoder exploded")

    monkeypatch.setattr(plot_script, "_write_animation", explode)
    joints = random_walk()
    with pytest.raises(plot_script.RenderError, match="encoder exploded") as info:
        plot_script.plot_3d_motion(str(tmp_path / "walk.mp4"), joints, SPEC.kinematic_chain, fmt="gif", **SMALL)
    assert "walk.npy" in str(info.value)
    np.testing.assert_array_equal(np.load(tmp_path / "walk.npy"), joints)
    assert not (tmp_path / "walk.gif").exists()


@pytest.mark.parametrize("failure", [RuntimeError("encoder exploded"), KeyboardInterrupt()])
def test_a_failed_or_stopped_encode_leaves_the_earlier_video_whole(monkeypatch, tmp_path, failure):
    """The encoder writes to a hidden temporary file with the video's extension next to it; a failure or an
    interruption part way leaves the earlier video under its name and no temporary behind."""
    earlier = tmp_path / "walk.gif"
    earlier.write_bytes(b"the earlier sample's video")
    written = []

    def stopped_half_way(fig, update, num_frames, path, fmt, fps, dpi):
        written.append(path)
        with open(path, "wb") as f:
            f.write(b"half a video")
        raise failure

    monkeypatch.setattr(plot_script, "_write_animation", stopped_half_way)
    with pytest.raises((plot_script.RenderError, KeyboardInterrupt)):
        plot_script.plot_3d_motion(str(earlier), random_walk(), SPEC.kinematic_chain, fmt="gif", save_joints=False,
                                   **SMALL)
    assert earlier.read_bytes() == b"the earlier sample's video"
    (path,) = written
    assert os.path.dirname(path) == str(tmp_path)
    assert os.path.basename(path).startswith(".tmp-walk.gif.") and path.endswith(".gif")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["walk.gif"]


def test_a_video_replaces_the_earlier_one_with_the_usual_permissions(no_ffmpeg, tmp_path):
    earlier = tmp_path / "walk.gif"
    earlier.write_bytes(b"the earlier sample's video")
    earlier.chmod(0o644)
    out = plot_script.plot_3d_motion(str(earlier), random_walk(), SPEC.kinematic_chain, save_joints=False, **SMALL)
    assert out == str(earlier)
    assert_gif(out, FRAMES)
    assert stat.S_IMODE(os.stat(out).st_mode) == 0o644
    assert sorted(p.name for p in tmp_path.iterdir()) == ["walk.gif"]


def test_plot_multiple_pads_shorter_motions(no_ffmpeg, tmp_path):
    gt, recon = random_walk(FRAMES), random_walk(FRAMES - 4, seed=1)
    out = plot_script.plot_multiple(str(tmp_path / "cmp.mp4"), [gt, recon], SPEC.kinematic_chain,
                                    titles=["ground truth", "reconstruction"], title="compare", dpi=30, figsize=1.2)
    assert_gif(out, FRAMES)
    saved = np.load(tmp_path / "cmp.npz")
    np.testing.assert_array_equal(saved["motion_1"], recon)
    with pytest.raises(ValueError, match="2 titles for 1 motions"):
        plot_script.plot_multiple(str(tmp_path / "x.gif"), [gt], SPEC.kinematic_chain, titles=["a", "b"])


def test_bad_joints_fail_clearly(tmp_path):
    with pytest.raises(ValueError, match=r"bad\.gif.*\(T, J, 3\).*\(12, 22\)"):
        plot_script.plot_3d_motion(str(tmp_path / "bad.gif"), random_walk()[..., 0], SPEC.kinematic_chain)
    with pytest.raises(ValueError, match="uses joint 21 but the motion has 10 joints"):
        plot_script.plot_3d_motion(str(tmp_path / "bad.gif"), random_walk(joints=10), SPEC.kinematic_chain)
    nan_motion = random_walk()
    nan_motion[3, 4, 1] = np.nan
    with pytest.raises(ValueError, match=r"NaN or Inf \(1 of 12 frames; first at frame 3, joint 4\)"):
        plot_script.plot_3d_motion(str(tmp_path / "bad.gif"), nan_motion, SPEC.kinematic_chain)
    assert not list(tmp_path.iterdir())  # bad joints leave no joints file behind


@pytest.mark.parametrize("flag, value", [("--fps", "0"), ("--dpi", "0"), ("--radius", "0"), ("--fps", "-5"),
                                         ("--fps", "nan"), ("--fps", "inf"), ("--radius", "nan")])
def test_cli_refuses_non_positive_settings(flag, value, capsys):
    with pytest.raises(SystemExit):
        render.parse_args(["x.npy", "--dataset_name", "t2m", flag, value])
    assert f"{flag} must be a finite number > 0, got {float(value):g}" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------------- render.py CLI


def run_cli(*argv: str) -> list[str]:
    return render.main(render.parse_args(list(argv)))


def test_cli_renders_joints_and_batches(no_ffmpeg, tmp_path):
    np.save(tmp_path / "one.npy", random_walk())
    np.save(tmp_path / "batch.npy", np.stack([random_walk(), random_walk(seed=2)]))
    out = tmp_path / "videos"
    written = run_cli(str(tmp_path / "one.npy"), str(tmp_path / "batch.npy"), "--dataset_name", "t2m",
                      "--out", str(out), "--dpi", "20", "--title", "a person walks")
    assert written == [str(out / "one.gif"), str(out / "batch_0.gif"), str(out / "batch_1.gif")]
    for path in written:
        assert_gif(path, FRAMES)
    assert not list(out.glob("*.npy"))  # joint inputs are on disk already


def test_cli_renders_joints_without_importing_torch(tmp_path):
    """Joints need only numpy and matplotlib: torch (seconds to import) comes in with features, BVH or mesh inputs."""
    np.save(tmp_path / "one.npy", random_walk())
    script = ("import sys, render; render.main(render.parse_args(sys.argv[1:])); "
              "assert 'torch' not in sys.modules, 'render.py imported torch for a joints input'")
    result = subprocess.run([sys.executable, "-c", script, str(tmp_path / "one.npy"), "--dataset_name", "t2m",
                             "--format", "gif", "--dpi", "20"], cwd=Path(render.__file__).parent,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert_gif(str(tmp_path / "one.gif"), FRAMES)


def test_cli_never_saves_joints_over_an_input(no_ffmpeg, tmp_path):
    """Features render with their joints saved as <name>_joints.npy: an input of that name in the same folder would
    be replaced, so the render is refused before anything is written."""
    from utils.motion_process import extract_features

    features = extract_features(random_walk(frames=FRAMES + 1))
    np.save(tmp_path / "walk.npy", features)
    np.save(tmp_path / "walk_joints.npy", random_walk(seed=3))
    before = (tmp_path / "walk_joints.npy").read_bytes()
    with pytest.raises(ValueError, match=r"walk\.npy would save its joints as .*walk_joints\.npy, over the input "):
        run_cli(str(tmp_path / "walk_joints.npy"), str(tmp_path / "walk.npy"), "--dataset_name", "t2m")
    assert (tmp_path / "walk_joints.npy").read_bytes() == before and not list(tmp_path.glob("*.gif"))
    written = run_cli(str(tmp_path / "walk_joints.npy"), str(tmp_path / "walk.npy"), "--dataset_name", "t2m",
                      "--dpi", "20", "--out", str(tmp_path / "videos"))
    assert len(written) == 2 and (tmp_path / "walk_joints.npy").read_bytes() == before


def test_cli_bad_shapes_name_the_file(no_ffmpeg, tmp_path):
    np.save(tmp_path / "good.npy", random_walk())
    np.save(tmp_path / "odd.npy", np.zeros((FRAMES, 17), dtype=np.float32))
    with pytest.raises(ValueError, match=r"odd\.npy: shape \(12, 17\) is neither joints \(T, 22, 3\) nor features "
                                         r"\(T, 263\)"):
        run_cli(str(tmp_path / "good.npy"), str(tmp_path / "odd.npy"), "--dataset_name", "t2m")
    assert not (tmp_path / "good.gif").exists()  # every input is checked before the first render
    np.save(tmp_path / "kit.npy", random_walk(joints=21))
    with pytest.raises(ValueError, match=r"kit\.npy: .* 21 joints, but dataset 't2m' has 22"):
        run_cli(str(tmp_path / "kit.npy"), "--dataset_name", "t2m")
    with pytest.raises(FileNotFoundError, match="missing.npy"):
        run_cli(str(tmp_path / "missing.npy"), "--dataset_name", "t2m")


@pytest.mark.parametrize("shape", [(0, FRAMES, SPEC.dim_pose), (0, SPEC.dim_pose), (2, 0, SPEC.joints_num, 3)])
def test_cli_inputs_without_frames_or_motions_fail_before_work(no_ffmpeg, tmp_path, shape):
    # A batch of no motions used to render nothing and exit successfully.
    np.save(tmp_path / "good.npy", random_walk())
    np.save(tmp_path / "empty.npy", np.zeros(shape, dtype=np.float32))
    with pytest.raises(ValueError, match=r"empty\.npy: .*shape \(" + ", ".join(map(str, shape)) + r"\) holds no"):
        run_cli(str(tmp_path / "good.npy"), str(tmp_path / "empty.npy"), "--dataset_name", "t2m")
    assert not (tmp_path / "good.gif").exists()


def test_cli_empty_text_cut_short_and_object_files_each_get_their_own_reason(no_ffmpeg, tmp_path):
    """An empty file raised a bare EOFError, and a text file or a half-copied .npy were said to hold Python objects."""
    np.save(tmp_path / "whole.npy", random_walk())
    data = (tmp_path / "whole.npy").read_bytes()
    (tmp_path / "cut.npy").write_bytes(data[:len(data) // 2])
    (tmp_path / "empty.npy").write_bytes(b"")
    (tmp_path / "text.npy").write_text("0 0 0\n")
    np.save(tmp_path / "objects.npy", np.array([{"joints": 1}], dtype=object), allow_pickle=True)
    cases = {"empty": r"empty\.npy: not a \.npy file \(no NUMPY header: the file is empty\)",
             "text": r"text\.npy: not a \.npy file \(no NUMPY header\); expected joints or features",
             "cut": r"cut\.npy: cannot read as a \.npy array, the file is cut short or damaged",
             "objects": r"objects\.npy: not a plain numeric \.npy \(it holds Python objects"}
    for name, message in cases.items():
        with pytest.raises(ValueError, match=message):
            run_cli(str(tmp_path / "whole.npy"), str(tmp_path / f"{name}.npy"), "--dataset_name", "t2m")
    assert not (tmp_path / "whole.gif").exists()


def test_cli_explicit_mp4_without_ffmpeg_fails_before_work(no_ffmpeg, tmp_path):
    np.save(tmp_path / "one.npy", random_walk())
    with pytest.raises(plot_script.RenderError, match="ffmpeg"):
        run_cli(str(tmp_path / "one.npy"), "--dataset_name", "t2m", "--format", "mp4")


def test_cli_renders_features_with_denorm(no_ffmpeg, tmp_path):
    import torch

    from utils.motion_process import features_to_joints

    rng = np.random.default_rng(0)
    mean = rng.normal(scale=0.05, size=SPEC.dim_pose).astype(np.float32)
    std = rng.uniform(0.05, 0.2, size=SPEC.dim_pose).astype(np.float32)
    mean[3] = 1.0  # root height: a standing body
    data_root = tmp_path / "data"
    data_root.mkdir()
    np.save(data_root / "Mean.npy", mean)
    np.save(data_root / "Std.npy", std)
    features = rng.normal(size=(FRAMES, SPEC.dim_pose)).astype(np.float32)
    np.save(tmp_path / "feats.npy", features)

    written = run_cli(str(tmp_path / "feats.npy"), "--dataset_name", "t2m", "--denorm", "--data_root",
                      str(data_root), "--dpi", "20")
    assert written == [str(tmp_path / "feats.gif")]
    assert_gif(written[0], FRAMES)
    expected = features_to_joints(torch.from_numpy(features * std + mean)[None], SPEC)[0]
    np.testing.assert_allclose(np.load(tmp_path / "feats_joints.npy"), np.asarray(expected), atol=1e-5)
    np.testing.assert_array_equal(np.load(tmp_path / "feats.npy"), features)  # the input is never overwritten

    os.remove(data_root / "Std.npy")
    with pytest.raises(FileNotFoundError, match="Std.npy"):
        run_cli(str(tmp_path / "feats.npy"), "--dataset_name", "t2m", "--denorm", "--data_root", str(data_root))


def test_cli_real_features_match_dataset_joints(no_ffmpeg, tmp_path):
    samples = Path(__file__).resolve().parents[2] / "shared" / "data" / "humanml3d-samples"
    clip = "007005"
    if not (samples / "new_joints" / f"{clip}.npy").is_file():
        pytest.skip(f"HumanML3D samples not found: {samples}")
    np.save(tmp_path / "clip.npy", np.load(samples / "new_joint_vecs" / f"{clip}.npy")[:FRAMES])
    expected = np.load(samples / "new_joints" / f"{clip}.npy")[:FRAMES]
    # The 263-wide file also serves the 67-dim essential dataset, which reads its leading slice.
    for dataset_name in ("t2m", "t2m_67"):
        out = tmp_path / dataset_name
        written = run_cli(str(tmp_path / "clip.npy"), "--dataset_name", dataset_name, "--out", str(out), "--dpi", "20")
        assert_gif(written[0], FRAMES)
        np.testing.assert_allclose(np.load(out / "clip_joints.npy"), expected, atol=1e-4)


def test_cli_a_non_finite_motion_does_not_stop_the_others(no_ffmpeg, tmp_path):
    bad = random_walk()
    bad[3, 5, 1] = np.nan
    np.save(tmp_path / "bad.npy", bad)
    np.save(tmp_path / "good.npy", random_walk(seed=1))
    with pytest.raises(plot_script.RenderError, match=r"1 of 2 videos failed:\n.*bad.*NaN or Inf"):
        run_cli(str(tmp_path / "bad.npy"), str(tmp_path / "good.npy"), "--dataset_name", "t2m", "--dpi", "20")
    assert_gif(str(tmp_path / "good.gif"), FRAMES)
    assert not (tmp_path / "bad.gif").exists()


def test_cli_a_non_finite_motion_names_its_input(no_ffmpeg, tmp_path):
    """With --out the NaN error named the video it would have written (out/bad.mp4, even for a GIF), not the input;
    a batch's motion is named by its file and index."""
    bad = np.stack([random_walk(), random_walk(seed=1)])
    bad[1, 3, 5, 1] = np.nan
    np.save(tmp_path / "bad.npy", bad)
    with pytest.raises(plot_script.RenderError, match=r"failed:\n[^\n]*bad\.npy motion 1: joint positions contain NaN"):
        run_cli(str(tmp_path / "bad.npy"), "--dataset_name", "t2m", "--dpi", "20", "--out", str(tmp_path / "out"))
    assert_gif(str(tmp_path / "out" / "bad_0.gif"), FRAMES)


def test_cli_inputs_that_would_write_the_same_video_fail_before_work(no_ffmpeg, tmp_path):
    for run in ("a", "b"):
        (tmp_path / run).mkdir()
        np.save(tmp_path / run / "walk.npy", random_walk())
    np.save(tmp_path / "a" / "pair.npy", np.stack([random_walk(), random_walk(seed=2)]))
    np.save(tmp_path / "a" / "pair_1.npy", random_walk())
    out = tmp_path / "videos"
    with pytest.raises(ValueError, match=r"a/walk\.npy and .*b/walk\.npy would both write .*walk\.<mp4\|gif>"):
        run_cli(str(tmp_path / "a" / "walk.npy"), str(tmp_path / "b" / "walk.npy"), "--dataset_name", "t2m",
                "--out", str(out))
    with pytest.raises(ValueError, match=r"pair\.npy and .*pair_1\.npy would both write"):
        run_cli(str(tmp_path / "a" / "pair.npy"), str(tmp_path / "a" / "pair_1.npy"), "--dataset_name", "t2m")
    assert not out.exists() and not list((tmp_path / "a").glob("*.gif"))
    # Next to their inputs (no --out) the same names do not collide.
    written = run_cli(str(tmp_path / "a" / "walk.npy"), str(tmp_path / "b" / "walk.npy"), "--dataset_name", "t2m",
                      "--dpi", "20")
    assert written == [str(tmp_path / "a" / "walk.gif"), str(tmp_path / "b" / "walk.gif")]


# --------------------------------------------------------------------------------------------------- SMPL mesh videos


def test_cli_renders_amass_parameters_as_a_mesh_in_real_time(no_ffmpeg, tmp_path, caplog):
    """An AMASS-layout file with --body_model: a mesh video <stem>_mesh.gif at the file's rate capped to 30 fps (or
    --fps), frames at the nearest time stamps; an SMPL-X file drawn with an SMPL-H model uses its body only."""
    from test_amass import _motion, _save
    from test_smpl_mesh import mesh_model

    model = str(mesh_model(tmp_path / "model.npz", joints_num=52))
    clip = _save(tmp_path / "walk_poses.npz", fps=60.0, **_motion(61, 60.0))
    written = run_cli(str(clip), "--body_model", model, "--format", "gif", "--dpi", "16")
    assert written == [str(tmp_path / "walk_poses_mesh.gif")]
    with Image.open(written[0]) as gif:
        assert gif.n_frames == 31 and gif.size == (64, 70)  # 1 s at 30 fps; a title band of 0.4 x 16 pixels
    out = tmp_path / "at20"
    assert run_cli(str(clip), "--mesh", model, "--fps", "20", "--out", str(out), "--dpi", "16",
                   "--title", "a walk") == [str(out / "walk_poses_mesh.gif")]
    assert_gif(str(out / "walk_poses_mesh.gif"), 21)
    wide = _save(tmp_path / "x_stageii.npz", fps_key="mocap_frame_rate", fps=30.0, **_motion(4, 30.0, width=165))
    assert_gif(run_cli(str(wide), "--body_model", model, "--dpi", "16")[0], 4)
    assert "poses has 165 columns but" in caplog.text and "only the root and body" in caplog.text


def test_cli_denorm_without_features_says_what_the_inputs_hold(no_ffmpeg, tmp_path, caplog):
    from test_amass import _motion, _save
    from test_smpl_mesh import mesh_model

    model = str(mesh_model(tmp_path / "model.npz", joints_num=52))
    clip = _save(tmp_path / "walk_poses.npz", fps=30.0, **_motion(4, 30.0))
    run_cli(str(clip), "--body_model", model, "--denorm", "--dpi", "16")
    assert "--denorm ignored: it applies to motion features, and the inputs hold SMPL parameters" in caplog.text
    caplog.clear()
    np.save(tmp_path / "walk.npy", random_walk(4))
    run_cli(str(tmp_path / "walk.npy"), "--dataset_name", "t2m", "--denorm", "--dpi", "16")
    assert "--denorm ignored: it applies to motion features, and the inputs hold joint positions" in caplog.text


def test_cli_renders_joints_and_features_as_a_fitted_mesh(no_ffmpeg, tmp_path, synthetic_root):
    """Joints of an SMPL-22 dataset are fitted by inverse kinematics and skinned; features are turned into joints,
    which are saved before drawing."""
    from test_smpl_mesh import mesh_model

    from utils.smpl_body import load_body_model, smpl_joints, z_up_to_y_up

    model = mesh_model(tmp_path / "model.npz")
    rng = np.random.default_rng(0)
    poses, trans = rng.normal(0, 0.3, (6, 72)), rng.normal(0, 0.2, (6, 3))
    np.save(tmp_path / "walk.npy", z_up_to_y_up(smpl_joints(load_body_model(model), poses, trans, np.zeros(10))))
    written = run_cli(str(tmp_path / "walk.npy"), "--mesh", str(model), "--dataset_name", "t2m", "--dpi", "16")
    assert written == [str(tmp_path / "walk_mesh.gif")]
    assert_gif(written[0], 6)
    assert not (tmp_path / "walk.gif").exists() and not (tmp_path / "walk_joints.npy").exists()

    features = tmp_path / "clip.npy"
    np.save(features, np.load(sorted((Path(synthetic_root) / "new_joint_vecs").glob("*.npy"))[0])[:FRAMES])
    out = tmp_path / "features"
    written = run_cli(str(features), "--mesh", str(model), "--dataset_name", "synthetic", "--data_root",
                      synthetic_root, "--out", str(out), "--dpi", "24")
    assert written == [str(out / "clip_mesh.gif")]
    assert_gif(written[0], FRAMES)
    assert np.load(out / "clip_joints.npy").shape == (FRAMES, 22, 3)


def test_cli_mesh_inputs_fail_clearly_and_keep_the_motion(no_ffmpeg, tmp_path, monkeypatch):
    from test_amass import _body_model, _motion, _save
    from test_smpl_mesh import mesh_model

    model = str(mesh_model(tmp_path / "model.npz", joints_num=52))
    clip = str(_save(tmp_path / "walk.npz", fps=30.0, **_motion(5, 30.0)))
    np.save(tmp_path / "joints.npy", random_walk())
    with pytest.raises(ValueError, match=r"walk\.npz: SMPL parameters render as a mesh; pass --body_model"):
        run_cli(clip)
    with pytest.raises(ValueError, match=r"joints\.npy: joints or features need --dataset_name"):
        run_cli(str(tmp_path / "joints.npy"), "--mesh", model)
    np.save(tmp_path / "kit_joints.npy", random_walk(joints=21))
    with pytest.raises(ValueError, match=r"--mesh: dataset 'kit' has 21 joints"):
        run_cli(str(tmp_path / "kit_joints.npy"), "--mesh", model, "--dataset_name", "kit")
    (tmp_path / "other").mkdir()
    shutil.copy(clip, tmp_path / "other" / "walk.npz")
    with pytest.raises(ValueError, match=r"would both write .*walk_mesh\.<mp4\|gif>"):
        run_cli(clip, str(tmp_path / "other" / "walk.npz"), "--body_model", model, "--out", str(tmp_path / "same"))
    # Parameter files need no dataset: one named anyway (another input's) does not stand in their way.
    assert run_cli(clip, "--body_model", model, "--dataset_name", "kit", "--dpi", "16", "--out",
                   str(tmp_path / "kit_named")) == [str(tmp_path / "kit_named" / "walk_mesh.gif")]
    joints_only = str(_body_model(tmp_path / "joints_only.npz"))
    with pytest.raises(ValueError, match=r"--body_model: .*joints_only\.npz: body model lacks weights; expected "
                                         r"weights \(V, J\)"):
        run_cli(clip, "--body_model", joints_only)
    no_trans = _save(tmp_path / "no_trans.npz", **{**_motion(5, 30.0), "trans": None})
    with pytest.raises(plot_script.RenderError, match=r"1 of 2 videos failed:\n.*no_trans\.npz: lacks trans"):
        run_cli(str(no_trans), clip, "--body_model", model, "--dpi", "16")
    assert_gif(str(tmp_path / "walk_mesh.gif"), 5)

    def explode(*args, **kwargs):
        raise RuntimeError("encoder exploded")

    monkeypatch.setattr(plot_script, "_write_animation", explode)
    with pytest.raises(plot_script.RenderError, match=r"encoder exploded\).*the parameters are in .*walk\.npz"):
        run_cli(clip, "--body_model", model, "--dpi", "16", "--out", str(tmp_path / "broken"))
    features = tmp_path / "features.npy"
    np.save(features, np.zeros((4, SPEC.dim_pose), dtype=np.float32))
    with pytest.raises(plot_script.RenderError, match=r"exploded\).*the joints are saved in .*features_joints\.npy"):
        run_cli(str(features), "--mesh", model, "--dataset_name", "t2m", "--dpi", "16")
    assert np.load(tmp_path / "features_joints.npy").shape == (4, 22, 3)
    assert not list((tmp_path / "broken").glob("*.gif")) and not (tmp_path / "features_mesh.gif").exists()


# ------------------------------------------------------------------------------------------------- BVH inputs


def test_cli_renders_a_bvh_file_through_its_mapping(no_ffmpeg, tmp_path):
    """A .bvh renders as prepare_data.py bvh would import it, without --dataset_name: mapped onto SMPL-22 (the
    project's own export through smpl22), at the file's rate up to 30 fps, its joints saved beside the video."""
    from utils.bvh_export import write_bvh
    from utils.synthetic import synthesize_motion

    joints = synthesize_motion(np.random.default_rng(5), "walk").joints[:16]
    write_bvh(tmp_path / "walk.bvh", joints, fps=20)
    write_bvh(tmp_path / "fast.bvh", joints, fps=60)
    written = run_cli(str(tmp_path / "walk.bvh"), str(tmp_path / "fast.bvh"), "--skeleton", "smpl22", "--dpi", "20",
                      "--out", str(tmp_path / "out"))
    assert written == [str(tmp_path / "out" / "walk.gif"), str(tmp_path / "out" / "fast.gif")]
    assert_gif(written[0], 16)
    assert_gif(written[1], 8)  # 15 / 60 s at 30 fps
    np.testing.assert_allclose(np.load(tmp_path / "out" / "walk_joints.npy"), joints, atol=1e-4)
    assert_gif(run_cli(str(tmp_path / "fast.bvh"), "--skeleton", "smpl22", "--dpi", "20", "--fps", "12")[0], 4)
    # One frame renders as a one-frame .npy does (export_bvh writes such a file; it was refused as "needs at least 2").
    write_bvh(tmp_path / "pose.bvh", joints[:1], fps=20)
    assert_gif(run_cli(str(tmp_path / "pose.bvh"), "--skeleton", "smpl22", "--dpi", "20")[0], 1)


def test_cli_bvh_inputs_and_the_skeleton_flag_go_together(no_ffmpeg, tmp_path):
    from utils.bvh_export import write_bvh

    write_bvh(tmp_path / "walk.bvh", random_walk(), fps=20)
    np.save(tmp_path / "walk.npy", random_walk())
    with pytest.raises(ValueError, match=r"walk\.bvh: a BVH file renders through the mapping of its joints onto "
                                         r"SMPL-22; pass --skeleton NAME"):
        run_cli(str(tmp_path / "walk.bvh"))
    with pytest.raises(ValueError, match="--skeleton maps the joints of .bvh inputs onto SMPL-22, and no input is"):
        run_cli(str(tmp_path / "walk.npy"), "--dataset_name", "t2m", "--skeleton", "bandai")
    with pytest.raises(ValueError, match="unknown skeleton 'nope'"):
        run_cli(str(tmp_path / "walk.bvh"), "--skeleton", "nope")
    (tmp_path / "broken.bvh").write_text("HIERARCHY\n")
    with pytest.raises(render.RenderError, match=r"1 of 2 videos failed:\n.*broken\.bvh: no MOTION section"):
        run_cli(str(tmp_path / "broken.bvh"), str(tmp_path / "walk.bvh"), "--skeleton", "smpl22", "--dpi", "20")
    assert (tmp_path / "walk.gif").exists()  # the other input still renders


def test_cli_renders_a_real_bandai_clip(no_ffmpeg, tmp_path):
    bandai = Path(__file__).resolve().parents[2] / "shared" / "data" / "bandai-namco-1" / "bvh"
    clip = bandai / "dataset-1_walk_happy_001.bvh"
    if not clip.is_file():
        pytest.skip(f"Bandai Namco BVH clips not found: {bandai}")
    (video,) = run_cli(str(clip), "--skeleton", "bandai", "--fps", "4", "--dpi", "20", "--out", str(tmp_path))
    joints = np.load(tmp_path / "dataset-1_walk_happy_001_joints.npy")
    assert_gif(video, len(joints))
    height = np.median(joints[:, 15, 1] - np.minimum(joints[:, 10, 1], joints[:, 11, 1]))
    assert 1.0 < height < 2.0  # metres, Y up: the head above the feet


BAD_SETTINGS = [("fps", 0), ("fps", -20), ("fps", float("nan")), ("fps", None), ("dpi", 0), ("figsize", -1.0)]
BAD_RADII = [("radius", -2.0), ("radius", 0.0), ("radius", float("inf"))]


@pytest.mark.parametrize("plot, setting, value",
                         [(plot, *bad) for plot in ("plot_3d_motion", "plot_multiple")
                          for bad in BAD_SETTINGS + BAD_RADII] + [("plot_frames", *bad) for bad in BAD_SETTINGS])
def test_bad_video_settings_fail_before_any_file(no_ffmpeg, tmp_path, plot, setting, value):
    """fps 0 divided by zero in the encoder and a negative radius drew an empty floor, after the joints were saved;
    every plot function names the file and the setting before it writes anything."""
    path = str(tmp_path / "bad.gif")
    settings = {"fps": 20, "dpi": 30, "figsize": 1.5, setting: value}
    with pytest.raises(ValueError, match=rf"bad\.gif: {setting} must be a finite number > 0"):
        if plot == "plot_3d_motion":
            plot_script.plot_3d_motion(path, random_walk(), SPEC.kinematic_chain, **settings)
        elif plot == "plot_multiple":
            plot_script.plot_multiple(path, [random_walk()], SPEC.kinematic_chain, **settings)
        else:
            plot_script.plot_frames(path, lambda t: np.zeros((44, 44, 3), np.uint8), 3, **settings)
    assert not list(tmp_path.iterdir())


def test_plot_frames_without_frames_fails_clearly(no_ffmpeg, tmp_path):
    with pytest.raises(ValueError, match=r"none\.gif: a video needs at least one frame, got num_frames 0"):
        plot_script.plot_frames(str(tmp_path / "none.gif"), lambda t: np.zeros((44, 44, 3), np.uint8), 0, **SMALL)


@pytest.mark.parametrize("chain", [[], [[0, -1, 2]]])
def test_a_bad_kinematic_chain_fails_clearly(tmp_path, chain):
    """An empty chain raised max()'s own error; a negative index drew a bone to the last joint."""
    with pytest.raises(ValueError, match=r"chain\.gif: a kinematic chain lists joint indices >= 0"):
        plot_script.plot_3d_motion(str(tmp_path / "chain.gif"), random_walk(), chain)


def test_a_title_keeps_its_line_breaks_and_a_long_one_gets_room(no_ffmpeg, tmp_path):
    """A title's own line breaks were joined into one line, and the band above the skeleton stayed 0.4 in whatever
    the number of lines, so that a long title ran over the figure."""
    def height(title: str, **kwargs) -> int:
        path = plot_script.plot_3d_motion(str(tmp_path / "t.gif"), random_walk(), SPEC.kinematic_chain, title=title,
                                          save_joints=False, **SMALL, **kwargs)
        with Image.open(path) as image:
            return image.height

    one_line = height("a b c d")
    assert one_line == height("a person walks forward")  # two lines at this size: the band as before
    assert height("a\nb\nc\nd") > one_line  # four lines
    assert height("x " * 200) > height("a\nb\nc\nd")
    # the band fits the longest caption, not only the first one on screen
    assert height("", captions=[(0, "a"), (5, "a\nb\nc\nd")]) == height("a\nb\nc\nd")
