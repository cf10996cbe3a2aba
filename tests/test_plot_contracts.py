"""The stick-figure renderer (utils/plot_script.py): behaviour the other tests leave open (the view around the
root, bone colours and coordinates, title bands and caption wrapping, captions per frame, where the joints are
saved, GIF timing above 50 fps, the formats tried, and what is refused before any file is written)."""

import re

import numpy as np
import pytest
from matplotlib.colors import to_hex
from matplotlib.figure import Figure
from PIL import Image

from utils import plot_script
from utils.plot_script import CHAIN_COLORS, _SkeletonPanel, auto_radius

CHAIN5 = [[0, 1], [0, 2], [0, 3], [0, 4]]


def _walker(frames: int = 4) -> np.ndarray:
    """(T, 5, 3): a root 1 unit up walking along +x and +z at different speeds, four limbs around it."""
    joints = np.zeros((frames, 5, 3))
    joints[:, :, 1] = 1.0
    joints[:, 1] += [0.2, 0.5, 0.0]
    joints[:, 2] += [-0.2, 0.5, 0.0]
    joints[:, 3] += [0.0, -0.8, 0.3]
    joints[:, 4] += [0.0, 0.3, -0.1]
    t = np.arange(frames)[:, None]
    joints[..., 0] += 0.5 * t
    joints[..., 2] += 2.0 * t
    return joints


def _panel(joints, chain=CHAIN5, radius=2.0):
    ax = Figure().add_subplot(1, 1, 1, projection="3d")
    return _SkeletonPanel(ax, joints, chain, radius, "")



def test_the_view_cube_is_measured_around_the_root_of_each_frame_not_the_first():
    """A body that walks 10 units but never reaches more than 0.5 from its root fits a cube of 1.1 x its height or
    x its spread around the root, however far it walks."""
    joints = np.zeros((3, 3, 3))
    joints[:, 1, 0] = 0.5    # a hand half a unit right of the root
    joints[:, 2, 1] = 0.4    # a head 0.4 up
    joints[:, :, 0] += np.array([0.0, 5.0, 10.0])[:, None]  # the root walks along +x
    assert auto_radius([joints]) == pytest.approx(1.1)  # 2 x 0.5 around the root, with a 10 % margin


def test_a_panel_puts_the_feet_on_the_floor_and_centres_each_pose_on_its_root():
    """Bone lines hold (x, y, z) of the pose relative to that frame's root on the floor plane, with the lowest joint
    of the motion at y = 0."""
    joints = _walker()
    panel = _panel(joints)
    lowest = joints[..., 1].min()
    for frame in range(len(joints)):
        panel.update(frame)
        root = joints[frame, 0]
        for line, chain in zip(panel.bone_lines, CHAIN5):
            xs, ys, zs = (np.asarray(a, dtype=float) for a in line.get_data_3d())
            np.testing.assert_allclose(xs, joints[frame, chain, 0] - root[0], atol=1e-9)
            np.testing.assert_allclose(ys, joints[frame, chain, 1] - lowest, atol=1e-9)
            np.testing.assert_allclose(zs, joints[frame, chain, 2] - root[2], atol=1e-9)


def test_bone_colours_follow_the_chain_order_and_wrap_around():
    """Chain i is drawn in CHAIN_COLORS[i] (right leg red, left leg blue, ...); chains past the palette reuse it."""
    chain = [[0, 1]] * (len(CHAIN_COLORS) + 2)
    panel = _panel(_walker(2), chain)
    colours = [to_hex(line.get_color()) for line in panel.bone_lines]
    assert colours[0] == "#d62728" and colours[1] == "#1f77b4"
    assert colours == [to_hex(CHAIN_COLORS[i % len(CHAIN_COLORS)]) for i in range(len(chain))]


def test_the_panels_keep_their_height_however_many_lines_the_title_has():
    """A longer title grows the band above the panels, not into them: the panels span the same inches."""
    heights = []
    for title in ["one line", "one\ntwo\nthree\nfour\nfive"]:
        fig, top = plot_script._figure(1, 1, 4.0, title)
        heights.append(top * fig.get_figheight())
    assert heights[1] > 0 and heights[0] == pytest.approx(heights[1])
    fig_long, top_long = plot_script._figure(1, 1, 4.0, "one\ntwo\nthree\nfour\nfive")
    fig_short, _ = plot_script._figure(1, 1, 4.0, "one line")
    assert fig_long.get_figheight() > fig_short.get_figheight()


def test_each_frame_shows_the_caption_of_its_segment_from_its_first_frame():
    """With captions [(0, walk), (3, jump)] frames 0-2 show 'walk' and frames 3-5 'jump'."""
    fig = Figure()
    seen = []
    update = plot_script._with_captions(fig, seen.append, [(0, "walk"), (3, "jump")], 6, 4.0)
    shown = []
    for frame in range(6):
        update(frame)
        shown.append(fig._suptitle.get_text())
    assert seen == list(range(6))
    assert shown == ["walk"] * 3 + ["jump"] * 3


def test_the_joints_go_to_joints_path_as_given(tmp_path):
    """``joints_path`` names the joints file, which holds the joints unchanged (values and dtype)."""
    joints = _walker(2).astype(np.float32)
    target = tmp_path / "kept" / "motion_joints.npy"
    path = plot_script.plot_3d_motion(str(tmp_path / "video.gif"), joints, CHAIN5, fmt="gif", dpi=20, figsize=1.0,
                                      joints_path=str(target))
    assert path == str(tmp_path / "video.gif")
    assert target.is_file() and not (tmp_path / "video.npy").exists()
    saved = np.load(target)
    assert saved.dtype == np.float32
    np.testing.assert_array_equal(saved, joints)





@pytest.mark.parametrize("frames, kept_frames", [(12, [0, 1, 2, 4, 5, 6, 7, 8, 10, 11]), (7, [0, 1, 2, 4, 5, 6])])
def test_a_gif_above_50_fps_keeps_the_frames_nearest_a_50_fps_clock(tmp_path, monkeypatch, frames, kept_frames):
    """At 60 fps a GIF keeps frames round(k * 60 / 50), each 2 cs, looping for ever: 12 frames give 10 and 7 frames
    (0.117 s) give 6 (the duration rounded, 5.83, not floored)."""
    monkeypatch.setattr(plot_script.shutil, "which", lambda *args, **kwargs: None)
    size = plot_script.even_pixels(0.4 * 50)

    def draw(frame):
        return np.full((size, size, 3), 20 * frame, np.uint8)

    path = plot_script.plot_frames(str(tmp_path / "fast.gif"), draw, frames, fps=60, dpi=50, fmt="gif", figsize=0.4)
    kept, durations = [], []
    with Image.open(path) as image:
        assert image.info["loop"] == 0
        for k in range(image.n_frames):
            image.seek(k)
            durations.append(image.info["duration"])
            grey = np.asarray(image.convert("RGB"))[size // 2, size // 2, 0]
            kept.append(int(round(grey / 20)))
    assert kept == kept_frames
    assert durations == [20] * len(kept_frames)


@pytest.mark.parametrize("fmt", ["webm", "MP4", "", None])
def test_an_unknown_video_format_is_a_value_error(fmt):
    with pytest.raises(ValueError, match=r"video format must be one of \('auto', 'mp4', 'gif'\)"):
        plot_script.resolve_format(fmt)
    with pytest.raises(ValueError, match=r"video format must be one of"):
        plot_script.video_formats(fmt)


def test_auto_without_ffmpeg_writes_only_gif(monkeypatch):
    monkeypatch.setattr(plot_script.shutil, "which", lambda *args, **kwargs: None)
    assert plot_script.resolve_format("auto") == "gif" and plot_script.video_formats("auto") == ["gif"]
    assert plot_script.video_formats("gif") == ["gif"]
    monkeypatch.setattr(plot_script.shutil, "which", lambda *args, **kwargs: "/usr/bin/ffmpeg")
    assert plot_script.video_formats("auto") == ["mp4", "gif"] and plot_script.video_formats("mp4") == ["mp4"]


def test_a_title_wraps_to_the_width_of_the_whole_grid():
    """The title of a grid of three panels takes three panels' width of text before it wraps; one panel's is less."""
    title = " ".join(["walks"] * 15)  # 89 characters
    wide, _ = plot_script._figure(1, 3, 3.0, title)
    assert wide._suptitle.get_text() == title
    narrow, _ = plot_script._figure(1, 1, 3.0, title)
    assert narrow._suptitle.get_text().count("\n") >= 2


def test_a_long_caption_grows_the_band_above_the_panel():
    """The band is sized for the longest caption, not only for the first (which is the title drawn at frame 0)."""
    long_caption = "\n".join(["then the person turns around"] * 5)
    plain, top_plain = plot_script._figure(1, 1, 4.0, "walk", [(0, "walk"), (4, "jump")])
    grown, top_grown = plot_script._figure(1, 1, 4.0, "walk", [(0, "walk"), (4, long_caption)])
    assert grown.get_figheight() > plain.get_figheight()
    assert top_grown * grown.get_figheight() == pytest.approx(top_plain * plain.get_figheight())


def test_captions_out_of_order_are_refused_before_any_file(tmp_path):
    with pytest.raises(ValueError, match=r"captions must start at frame 0 and be in order, got starts \[0, 5, 3\]"):
        plot_script.plot_3d_motion(str(tmp_path / "m.gif"), _walker(8), CHAIN5, fmt="gif",
                                   captions=[(0, "walk"), (5, "jump"), (3, "wave")])
    assert list(tmp_path.iterdir()) == []


def test_a_grid_with_a_title_count_unlike_its_motions_is_refused_before_any_file(tmp_path):
    with pytest.raises(ValueError, match=r"grid\.gif: 1 titles for 2 motions"):
        plot_script.plot_multiple(str(tmp_path / "grid.gif"), [_walker(2), _walker(3)], CHAIN5, titles=["one"],
                                  fmt="gif")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("ncols", [0, -1, 3])
def test_a_grid_with_a_column_count_outside_its_motions_is_refused_before_any_file(tmp_path, ncols):
    """``ncols`` must be from 1 to the number of motions; the motions' ``.npz`` is not written first."""
    with pytest.raises(ValueError, match=rf"grid\.gif: ncols must be from 1 to the number of motions \(2\), "
                                         rf"got {ncols}"):
        plot_script.plot_multiple(str(tmp_path / "grid.gif"), [_walker(2), _walker(3)], CHAIN5, ncols=ncols, fmt="gif")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("shape", [(3, 5, 2), (3, 5, 4), (3, 15)])
def test_joints_that_are_not_3d_points_are_refused(shape):
    with pytest.raises(ValueError, match=r"m: expected joint positions \(T, J, 3\) with T >= 1"):
        plot_script.check_joints(np.zeros(shape), CHAIN5, name="m")


def test_one_non_finite_coordinate_is_refused_naming_its_frame_and_joint():
    joints = _walker(4)
    joints[2, 3, 1] = np.nan
    with pytest.raises(ValueError, match=r"m: joint positions contain NaN or Inf \(1 of 4 frames; first at frame 2, "
                                         r"joint 3\)"):
        plot_script.check_joints(joints, CHAIN5, name="m")
    checked = plot_script.check_joints(_walker(4).astype(np.float32), CHAIN5)
    assert checked.dtype == np.float64 and checked.shape == (4, 5, 3)


@pytest.mark.parametrize("title, extra_lines", [("one", 0), ("one\ntwo", 0), ("one\ntwo\nthree", 1),
                                               ("1\n2\n3\n4\n5", 3)])
def test_the_title_band_holds_two_lines_and_grows_by_one_line_height_per_further_line(title, extra_lines):
    fig, _ = plot_script._figure(1, 1, 4.0, title)
    expected = 4.0 + plot_script.TITLE_BAND + plot_script.TITLE_LINE * extra_lines
    assert fig.get_figheight() == pytest.approx(expected)
    assert fig.get_figwidth() == pytest.approx(4.0)


def test_an_unknown_format_is_refused_before_the_joints_are_written(tmp_path):
    """A format that is not one of auto / mp4 / gif is a ValueError naming the file, and no joints file is left."""
    for call in (lambda: plot_script.plot_3d_motion(str(tmp_path / "m.gif"), _walker(), CHAIN5, fmt="webm"),
                 lambda: plot_script.plot_multiple(str(tmp_path / "m.gif"), [_walker()], CHAIN5, fmt="webm")):
        with pytest.raises(ValueError, match=r"m\.gif: video format must be one of \('auto', 'mp4', 'gif'\)"):
            call()
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("shape", [(20, 20, 3), (40, 40, 3), (30, 30)])
def test_a_frame_drawn_at_another_size_is_refused_not_rescaled(tmp_path, monkeypatch, shape):
    """plot_frames shows images pixel for pixel: one of another shape than (S, S, 3) is an error naming both."""
    monkeypatch.setattr(plot_script.shutil, "which", lambda *args, **kwargs: None)
    size = plot_script.even_pixels(0.6 * 50)
    assert size == 30

    def draw(frame):
        return np.zeros((size, size, 3) if frame == 0 else shape, np.uint8)

    with pytest.raises(plot_script.RenderError, match=rf"v\.gif: frame 1 was drawn as an image of shape "
                                                      rf"{re.escape(str(shape))}, expected \({size}, {size}, 3\)"):
        plot_script.plot_frames(str(tmp_path / "v.gif"), draw, 3, fps=10, dpi=50, fmt="gif", figsize=0.6)
