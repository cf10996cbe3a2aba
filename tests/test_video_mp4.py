"""MP4 output (utils/plot_script.py, utils/mesh_render.py, render.py) through a stand-in ffmpeg that reports what it
was given: H.264 in yuv420p needs an even width and height, and every frame must reach the encoder whole."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from test_render import SPEC, random_walk, run_cli
from test_smpl_mesh import box
from video_helpers import assert_h264_frames, install_fake_ffmpeg, read_frames

from utils import plot_script
from utils.mesh_render import MeshScene, plot_mesh_motion

FRAMES = 5
# (dpi, figsize): 333 and 49.5 pixels are odd; 58 pixels at dpi 100 are even, but matplotlib's own rounding to even
# computes them as 57.99... and would take two off.
SIZES = [(100, 4.0), (101, 3.3), (33, 1.5), (100, 0.58)]


@pytest.fixture
def fake_ffmpeg(tmp_path, monkeypatch):
    return install_fake_ffmpeg(tmp_path / "bin", monkeypatch)


def walking_box(frames: int = FRAMES) -> tuple[np.ndarray, np.ndarray]:
    corners, faces = box([-0.3, 0.0, -0.2], [0.3, 1.6, 0.2])
    return np.stack([corners + [0.05 * t, 0.0, 0.1 * t] for t in range(frames)]), faces


@pytest.mark.parametrize("title", ["", "a person walks"])
@pytest.mark.parametrize("dpi, figsize", SIZES)
def test_stick_figure_mp4_is_even_sized_and_gets_every_frame(fake_ffmpeg, tmp_path, dpi, figsize, title):
    out = plot_script.plot_3d_motion(str(tmp_path / "walk.gif"), random_walk(FRAMES), SPEC.kinematic_chain,
                                     title=title, fps=SPEC.fps, dpi=dpi, figsize=figsize, fmt="mp4")
    assert out == str(tmp_path / "walk.mp4")
    report = assert_h264_frames(out, FRAMES, SPEC.fps)
    height = figsize + (0.4 if title else 0.0)  # inches, with the title's band
    # The figure's whole pixels, an odd count rounded down to even and an even one kept.
    assert report["width"] == int(figsize * dpi + 1e-8) // 2 * 2
    assert report["height"] == int(height * dpi + 1e-8) // 2 * 2


def test_grid_of_motions_mp4_is_even_sized(fake_ffmpeg, tmp_path):
    motions = [random_walk(FRAMES), random_walk(FRAMES - 2, seed=1), random_walk(FRAMES, seed=2)]
    out = plot_script.plot_multiple(str(tmp_path / "grid.mp4"), motions, SPEC.kinematic_chain, title="three",
                                    fps=10, dpi=101, figsize=1.1, fmt="auto")
    report = assert_h264_frames(out, FRAMES, 10)
    assert (report["width"], report["height"]) == (332, 150)  # 3 x 1.1 x 101 = 333.3 and 1.5 x 101 = 151.5, down


@pytest.mark.parametrize("title", ["", "a box walks"])
@pytest.mark.parametrize("dpi, figsize", SIZES)
def test_mesh_mp4_frames_reach_the_encoder_pixel_for_pixel(fake_ffmpeg, tmp_path, dpi, figsize, title):
    """Every frame is the renderer's image, unscaled, under an even title band: no row or column dropped to make the
    size even."""
    walk, faces = walking_box()
    out = plot_mesh_motion(str(tmp_path / "box.gif"), walk, faces, title=title, fps=10, dpi=dpi, figsize=figsize,
                           fmt="mp4")
    assert out == str(tmp_path / "box.mp4")
    report = assert_h264_frames(out, FRAMES, 10)
    size = plot_script.even_pixels(figsize * dpi)
    band = plot_script.even_pixels(0.4 * dpi) if title else 0
    assert (report["width"], report["height"]) == (size, size + band)
    scene = MeshScene(walk, faces, size=size)
    received = read_frames(out)
    for t in range(FRAMES):
        np.testing.assert_array_equal(received[t, band:, :, :3], scene.frame(t), err_msg=f"frame {t}")


def fallback_ffmpeg(when: str) -> str:
    """The body of an ffmpeg that fails: at once, or after reading every frame and writing part of the file."""
    if when == "at once":
        return "import sys\nsys.exit(1)\n"
    return ("import sys\nsys.stdin.buffer.read()\nopen(sys.argv[-1], 'wb').write(b'half a video')\n"
            "sys.stderr.write('Error: codec failed')\nsys.exit(1)\n")


@pytest.mark.parametrize("when", ["at once", "at the end"])
def test_failing_ffmpeg_falls_back_to_the_gif_a_direct_render_writes(monkeypatch, tmp_path, when):
    """In auto mode a failing ffmpeg leaves no MP4 behind, and the GIF has the figure's own size (the MP4 attempt
    rounded it down to even pixels)."""
    direct = plot_script.plot_3d_motion(str(tmp_path / "direct.gif"), random_walk(FRAMES), SPEC.kinematic_chain,
                                        dpi=102, figsize=0.5, fmt="gif")
    install_fake_ffmpeg(tmp_path / "bin", monkeypatch, fallback_ffmpeg(when))
    out = plot_script.plot_3d_motion(str(tmp_path / "walk.mp4"), random_walk(FRAMES), SPEC.kinematic_chain,
                                     dpi=102, figsize=0.5)
    assert out == str(tmp_path / "walk.gif")
    assert not (tmp_path / "walk.mp4").exists()
    with Image.open(out) as gif, Image.open(direct) as expected:
        assert gif.n_frames == FRAMES and gif.size == expected.size == (51, 51)


def test_failing_ffmpeg_with_explicit_mp4_fails_and_leaves_only_the_joints(monkeypatch, tmp_path):
    install_fake_ffmpeg(tmp_path / "bin", monkeypatch, fallback_ffmpeg("at the end"))
    with pytest.raises(plot_script.RenderError, match=r"could not render .*walk\.mp4 .*walk\.npy"):
        plot_script.plot_3d_motion(str(tmp_path / "walk.mp4"), random_walk(FRAMES), SPEC.kinematic_chain, dpi=20,
                                   figsize=1.0, fmt="mp4")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bin", "walk.npy"]


def test_mesh_fallback_gif_is_the_renderer_image(monkeypatch, tmp_path):
    walk, faces = walking_box()
    install_fake_ffmpeg(tmp_path / "bin", monkeypatch, fallback_ffmpeg("at the end"))
    out = plot_mesh_motion(str(tmp_path / "box.mp4"), walk, faces, fps=10, dpi=102, figsize=0.5)
    assert out == str(tmp_path / "box.gif") and not (tmp_path / "box.mp4").exists()
    with Image.open(out) as gif:
        assert gif.n_frames == FRAMES and gif.size == (52, 52)  # 51 pixels, made even as for the MP4
        shown = np.asarray(gif.convert("RGB"))
    assert np.abs(shown.astype(int) - MeshScene(walk, faces, size=52).frame(0)).mean() < 3  # up to the palette


def test_cli_writes_mp4_for_joints_and_meshes(fake_ffmpeg, tmp_path):
    from test_amass import _motion, _save
    from test_smpl_mesh import mesh_model

    np.save(tmp_path / "walk.npy", random_walk(FRAMES))
    written = run_cli(str(tmp_path / "walk.npy"), "--dataset_name", "t2m", "--format", "mp4", "--dpi", "33")
    assert written == [str(tmp_path / "walk.mp4")]
    assert_h264_frames(written[0], FRAMES, SPEC.fps)

    model = str(mesh_model(tmp_path / "model.npz", joints_num=52))
    clip = _save(tmp_path / "clip_poses.npz", fps=30.0, **_motion(4, 30.0))
    written = run_cli(str(clip), "--body_model", model, "--dpi", "17", "--title", "a walk")
    assert written == [str(tmp_path / "clip_poses_mesh.mp4")]
    report = assert_h264_frames(written[0], 4, 30)
    assert (report["width"], report["height"]) == (68, 74)  # 4 x 17 pixels and a band of 0.4 x 17 = 6.8, made even
