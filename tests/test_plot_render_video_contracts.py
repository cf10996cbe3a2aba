"""Stick-figure videos (utils/plot_script.py) and the render.py CLI: what each setting does to the figure, the
panels and the GIF, what is refused and with which message, and what the CLI passes on to the renderers."""

import errno
import textwrap

import numpy as np
import pytest
from matplotlib.figure import Figure
from PIL import Image
from test_plot_contracts import CHAIN5, _walker
from test_render import SPEC, random_walk, run_cli

import render
from utils import plot_script
from utils.plot_script import _SkeletonPanel, auto_radius


@pytest.fixture
def no_ffmpeg(monkeypatch):
    monkeypatch.setattr(plot_script.shutil, "which", lambda *args, **kwargs: None)


@pytest.fixture
def encoded(monkeypatch):
    """Stand in for the encoder: record the figure, the frame update and the frame count, and write nothing."""
    calls = []

    def record(fig, update, num_frames, stem, fmt, fps, dpi, saved_note):
        calls.append({"fig": fig, "update": update, "num_frames": num_frames, "stem": stem, "fps": fps, "dpi": dpi})
        return f"{stem}.gif"

    monkeypatch.setattr(plot_script, "_encode", record)
    return calls


def _panel(joints, chain=CHAIN5, radius=2.0, title=""):
    return _SkeletonPanel(Figure().add_subplot(1, 1, 1, projection="3d"), joints, chain, radius, title)


def test_a_motion_without_frames_is_refused():
    """Joints of shape (0, J, 3) are refused with the shape, not drawn as an empty video."""
    with pytest.raises(ValueError, match=r"m: expected joint positions \(T, J, 3\) with T >= 1, got shape \(0, 5, 3\)"):
        plot_script.check_joints(np.zeros((0, 5, 3)), CHAIN5, name="m")


def test_non_finite_joints_name_the_first_bad_frame_and_count_frames_not_coordinates():
    """NaN in two coordinates of frame 1 and Inf in frame 3 are 2 bad frames, the first at frame 1, joint 2."""
    joints = _walker(5)
    joints[1, 2, 0] = joints[1, 2, 1] = joints[1, 4, 2] = np.nan
    joints[3, 0, 2] = np.inf
    with pytest.raises(ValueError, match=r"m: joint positions contain NaN or Inf \(2 of 5 frames; first at frame 1, "
                                         r"joint 2\)"):
        plot_script.check_joints(joints, CHAIN5, name="m")


def test_a_chain_using_the_joint_one_past_the_last_is_refused():
    """A chain naming joint 5 of a 5-joint motion (indices 0-4) is refused with both numbers."""
    with pytest.raises(ValueError, match=r"m: the kinematic chain uses joint 5 but the motion has 5 joints"):
        plot_script.check_joints(_walker(2), [[0, 1], [1, 5]], name="m")
    assert plot_script.check_joints(_walker(2), [[0, 4]], name="m").shape == (2, 5, 3)


@pytest.mark.parametrize("value", [None, "fast", [20]])
def test_a_setting_that_is_not_a_number_is_a_value_error_naming_it(value):
    """An fps of None, a word or a list is a ValueError naming the file and the setting, not a TypeError."""
    with pytest.raises(ValueError, match=r"v\.gif: fps must be a finite number > 0, got"):
        plot_script.check_video_settings("v.gif", value, 100, 4.0)


def test_the_view_cube_of_a_motion_above_the_floor_is_its_own_height():
    """A motion between y = 2 and 2.4 is 0.4 high (not 2.4), and a motion that never moves gets a unit cube."""
    joints = np.zeros((3, 2, 3))
    joints[:, :, 1] = 2.0
    joints[:, 1, 1] = 2.4
    assert auto_radius([joints]) == pytest.approx(1.1 * 0.4)
    assert auto_radius([np.zeros((3, 2, 3))]) == 1.0


def test_a_panel_shows_a_cube_of_side_radius_standing_on_the_floor():
    """x and z span radius around the root and y from the floor up to radius."""
    panel = _panel(_walker(), radius=3.0)
    assert panel.ax.get_xlim() == pytest.approx((-1.5, 1.5))
    assert panel.ax.get_ylim() == pytest.approx((0.0, 3.0))
    assert panel.ax.get_zlim() == pytest.approx((-1.5, 1.5))


def test_the_floor_covers_the_whole_walk_and_moves_under_the_root():
    """The floor spans the root's path plus half the view on every side, drawn relative to the frame's root at y 0."""
    joints = _walker(4)  # the root walks from (0, 0) to (1.5, 6) in (x, z)
    panel = _panel(joints, radius=2.0)
    drawn = []
    panel.floor.set_verts = drawn.append
    panel.update(2)
    (corners,) = drawn[-1]
    root = joints[2, 0, [0, 2]]
    expected = np.array([[-1.0, -1.0], [-1.0, 7.0], [2.5, 7.0], [2.5, -1.0]]) - root
    np.testing.assert_allclose(corners[:, [0, 2]], expected)
    np.testing.assert_allclose(corners[:, 1], 0.0)


def test_the_trajectory_line_holds_the_root_path_up_to_the_shown_frame():
    """At frame 2 the path has the root's first three floor positions, relative to the root at frame 2."""
    joints = _walker(4)
    panel = _panel(joints)
    panel.update(2)
    xs, ys, zs = (np.asarray(a, dtype=float) for a in panel.path_line.get_data_3d())
    np.testing.assert_allclose(xs, joints[:3, 0, 0] - joints[2, 0, 0])
    np.testing.assert_allclose(zs, joints[:3, 0, 2] - joints[2, 0, 2])
    np.testing.assert_allclose(ys, 0.0)


def test_the_five_main_chains_are_drawn_thick_and_further_ones_thin():
    """Chains 0-4 (legs, spine, arms) are 3 points wide; further chains (hands, head) 1.5."""
    panel = _panel(_walker(2), [[0, 1]] * 7, title="walk")
    assert [line.get_linewidth() for line in panel.bone_lines] == [3.0] * 5 + [1.5] * 2
    assert panel.ax.get_title() == "walk"


def test_when_every_format_fails_the_error_names_the_first_video_and_each_failure(monkeypatch, tmp_path):
    """Auto with a failing ffmpeg and a failing GIF writer names m.mp4, both causes, and where the joints are."""
    monkeypatch.setattr(plot_script.shutil, "which", lambda *args, **kwargs: "/usr/bin/ffmpeg")

    def fail(fig, update, num_frames, path, fmt, fps, dpi):
        raise RuntimeError(f"no {fmt}")

    monkeypatch.setattr(plot_script, "_write_animation", fail)
    with pytest.raises(plot_script.RenderError) as info:
        plot_script.plot_3d_motion(str(tmp_path / "m.mp4"), _walker(2), CHAIN5, dpi=20, figsize=1.0)
    message = str(info.value)
    assert f"could not render {tmp_path / 'm'}.mp4 (mp4: RuntimeError: no mp4; gif: RuntimeError: no gif)" in message
    assert message.endswith(f"; the joints are saved in {tmp_path / 'm.npy'}")


def test_a_narrow_figure_still_wraps_titles_at_20_characters():
    """A one-inch panel wraps its title at 20 characters, not fewer."""
    title = "a person walks then sits down"
    fig, _ = plot_script._figure(1, 1, 1.0, title)
    assert fig._suptitle.get_text() == textwrap.fill(title, width=20)


def test_a_grid_figure_is_cols_panels_wide_and_rows_panels_high():
    """Two rows of three 2-inch panels with a title: 6 x (4 + the title band) inches."""
    fig, top = plot_script._figure(2, 3, 2.0, "compare")
    assert fig.get_figwidth() == pytest.approx(6.0)
    assert fig.get_figheight() == pytest.approx(4.0 + plot_script.TITLE_BAND)
    assert top * fig.get_figheight() == pytest.approx(plot_script.PANELS_TOP * (4.0 + plot_script.TITLE_BAND))


def test_captions_that_do_not_start_at_frame_0_are_refused(tmp_path):
    """A first caption at frame 2 would leave frames 0-1 without one: refused with the starts, before any file."""
    with pytest.raises(ValueError, match=r"m\.gif: captions must start at frame 0 and be in order, got starts "
                                         r"\[2, 5\]"):
        plot_script.plot_3d_motion(str(tmp_path / "m.gif"), _walker(8), CHAIN5, captions=[(2, "walk"), (5, "jump")])
    assert list(tmp_path.iterdir()) == []


def test_the_first_caption_is_the_title_even_when_a_later_one_is_empty():
    """The text shown from frame 0 is the first caption's."""
    assert plot_script._check_captions("m.gif", [(0, "walk"), (3, "")]) == "walk"
    assert plot_script._check_captions("m.gif", None) == ""


def test_a_motion_video_shows_its_title_radius_and_captions(encoded, tmp_path):
    """plot_3d_motion draws ``title`` above the panel, a view cube of side ``radius`` and, per frame, its caption."""
    plot_script.plot_3d_motion(str(tmp_path / "m.gif"), _walker(6), CHAIN5, title="a walk", radius=5.0,
                               save_joints=False, fps=12, dpi=20)
    (call,) = encoded
    assert call["fig"]._suptitle.get_text() == "a walk"
    assert call["fig"].axes[0].get_xlim() == pytest.approx((-2.5, 2.5))
    assert (call["num_frames"], call["fps"], call["dpi"], call["stem"]) == (6, 12, 20, str(tmp_path / "m"))
    plot_script.plot_3d_motion(str(tmp_path / "c.gif"), _walker(6), CHAIN5, captions=[(0, "walk"), (3, "jump")],
                               save_joints=False)
    fig, update = encoded[1]["fig"], encoded[1]["update"]
    shown = []
    for frame in range(6):
        update(frame)
        shown.append(fig._suptitle.get_text())
    assert shown == ["walk"] * 3 + ["jump"] * 3


def test_the_joints_file_keeps_float64_joints_as_they_are(encoded, tmp_path):
    """Joints in float64 are saved in float64, bit for bit, to ``<stem>.npy``."""
    joints = _walker(3) + 1e-9
    plot_script.plot_3d_motion(str(tmp_path / "m.gif"), joints, CHAIN5)
    saved = np.load(tmp_path / "m.npy")
    assert saved.dtype == np.float64
    np.testing.assert_array_equal(saved, joints)


def test_a_joints_file_that_cannot_be_written_is_a_render_error_naming_it(tmp_path):
    """A full disk while saving the joints is a RenderError with the path and the reason, and nothing is drawn."""
    target = tmp_path / "m.npy"

    def full_disk(f):
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(plot_script.RenderError, match=r"cannot save the joints to .*m\.npy \(No space left on device\)"
                                                      r"; nothing was drawn"):
        plot_script.save_beside_video(str(target), full_disk, "joints")
    assert not target.exists()


def test_a_grid_without_motions_or_with_too_many_titles_is_refused(tmp_path):
    """No motions, or three titles for two motions, are refused naming the file, before any file is written."""
    with pytest.raises(ValueError, match=r"grid\.gif: no motions to plot"):
        plot_script.plot_multiple(str(tmp_path / "grid.gif"), [], CHAIN5)
    with pytest.raises(ValueError, match=r"grid\.gif: 3 titles for 2 motions"):
        plot_script.plot_multiple(str(tmp_path / "grid.gif"), [_walker(2), _walker(3)], CHAIN5,
                                  titles=["a", "b", "c"])
    assert list(tmp_path.iterdir()) == []


def test_a_grid_wraps_into_rows_of_ncols_with_a_title_per_panel_and_one_scale(encoded, tmp_path):
    """Three motions in two columns: a 2 x 2 grid, each panel titled, all with the given radius; the motions are
    saved to ``<stem>.npz`` as motion_0, motion_1, motion_2 and the video lasts as long as the longest."""
    motions = [_walker(2), _walker(4), _walker(3)]
    plot_script.plot_multiple(str(tmp_path / "grid.gif"), motions, CHAIN5, titles=["a", "b", "c"], ncols=2,
                              radius=4.0, figsize=1.0)
    (call,) = encoded
    fig = call["fig"]
    assert fig.get_figwidth() == pytest.approx(2.0) and fig.get_figheight() == pytest.approx(2.0)
    assert [ax.get_title() for ax in fig.axes] == ["a", "b", "c"]
    assert [ax.get_subplotspec().get_geometry()[:3] for ax in fig.axes] == [(2, 2, 0), (2, 2, 1), (2, 2, 2)]
    for ax in fig.axes:
        assert ax.get_xlim() == pytest.approx((-2.0, 2.0))
    assert call["num_frames"] == 4
    with np.load(tmp_path / "grid.npz") as saved:
        assert sorted(saved.files) == ["motion_0", "motion_1", "motion_2"]
        np.testing.assert_array_equal(saved["motion_1"], motions[1])


def test_a_grid_without_ncols_puts_every_motion_in_one_row(encoded, tmp_path):
    """Without ``ncols`` three motions sit side by side, three panels wide and one high."""
    plot_script.plot_multiple(str(tmp_path / "row.gif"), [_walker(2)] * 3, CHAIN5, figsize=1.0, save_joints=False)
    fig = encoded[0]["fig"]
    assert fig.get_figwidth() == pytest.approx(3.0) and fig.get_figheight() == pytest.approx(1.0)
    assert not (tmp_path / "row.npz").exists()


def test_a_second_attempt_after_a_failed_mp4_draws_every_frame_again(monkeypatch, tmp_path):
    """When ffmpeg fails after two frames, the GIF fallback draws frames 0, 1, 2 again and shows each one."""
    monkeypatch.setattr(plot_script.shutil, "which", lambda *args, **kwargs: "/usr/bin/ffmpeg")
    original = plot_script._write_animation

    def ffmpeg_dies(fig, update, num_frames, path, fmt, fps, dpi):
        if fmt == "mp4":
            update(0)
            update(1)
            raise BrokenPipeError("ffmpeg died")
        original(fig, update, num_frames, path, fmt, fps, dpi)

    monkeypatch.setattr(plot_script, "_write_animation", ffmpeg_dies)
    size = plot_script.even_pixels(0.4 * 50)
    drawn = []

    def draw(frame):
        drawn.append(frame)
        return np.full((size, size, 3), 60 * frame, np.uint8)

    path = plot_script.plot_frames(str(tmp_path / "v.mp4"), draw, 3, fps=10, dpi=50, figsize=0.4)
    assert path == str(tmp_path / "v.gif")
    assert drawn == [0, 1, 0, 1, 2]
    with Image.open(path) as image:
        greys = []
        for k in range(image.n_frames):
            image.seek(k)
            greys.append(int(np.asarray(image.convert("RGB"))[size // 2, size // 2, 0]))
    assert greys == [0, 60, 120]


def test_plot_frames_draws_each_frame_once_from_frame_0(no_ffmpeg, tmp_path):
    """The first frame is drawn too (matplotlib's initial draw does not count as it)."""
    size = plot_script.even_pixels(0.4 * 50)
    drawn = []

    def draw(frame):
        drawn.append(frame)
        return np.full((size, size, 3), 255, np.uint8)

    path = plot_script.plot_frames(str(tmp_path / "v.gif"), draw, 3, fps=10, dpi=50, figsize=0.4)
    assert drawn == [0, 1, 2]
    with Image.open(path) as image:
        assert int(np.asarray(image.convert("RGB"))[size // 2, size // 2, 0]) == 255


@pytest.fixture
def plotted(monkeypatch):
    """Stand in for render.py's stick-figure renderer: record each call's arguments."""
    calls = []

    def record(save_path, joints, chain, **kwargs):
        calls.append({"save_path": save_path, "joints": joints, "chain": chain, **kwargs})
        return save_path

    monkeypatch.setattr(render, "plot_3d_motion", record)
    return calls


def test_cli_passes_its_view_settings_to_the_renderer(no_ffmpeg, plotted, tmp_path):
    """--title, --fps, --radius, --dpi and --format reach the stick-figure renderer; joint inputs are not re-saved."""
    np.save(tmp_path / "walk.npy", random_walk())
    run_cli(str(tmp_path / "walk.npy"), "--dataset_name", "t2m", "--title", "a person walks", "--fps", "7",
            "--radius", "2.5", "--dpi", "20", "--format", "gif")
    (call,) = plotted
    assert call["save_path"] == str(tmp_path / "walk.mp4")
    assert (call["title"], call["fps"], call["radius"], call["dpi"], call["fmt"]) == ("a person walks", 7.0, 2.5, 20,
                                                                                      "gif")
    assert call["save_joints"] is False and call["chain"] == SPEC.kinematic_chain


def test_cli_defaults_are_the_file_name_the_dataset_rate_and_dpi_100(no_ffmpeg, plotted, tmp_path):
    """Without flags the title is the file's name, fps the dataset's, dpi 100, the radius fitted (None)."""
    np.save(tmp_path / "walk.npy", random_walk())
    run_cli(str(tmp_path / "walk.npy"), "--dataset_name", "t2m")
    (call,) = plotted
    assert (call["title"], call["fps"], call["radius"], call["dpi"], call["fmt"]) == ("walk", SPEC.fps, None, 100,
                                                                                      "auto")


def test_cli_saves_the_joints_of_features_beside_the_video(no_ffmpeg, plotted, tmp_path):
    """Features render with their joints saved as ``<name>_joints.npy``."""
    np.save(tmp_path / "feats.npy", np.zeros((FRAMES_FEATS, SPEC.dim_pose), np.float32))
    run_cli(str(tmp_path / "feats.npy"), "--dataset_name", "t2m")
    (call,) = plotted
    assert call["save_joints"] is True and call["joints_path"] == str(tmp_path / "feats_joints.npy")


FRAMES_FEATS = 6


def test_cli_failures_count_every_video_tried(no_ffmpeg, plotted, tmp_path):
    """One NaN motion of a batch of two fails with '1 of 2 videos failed' naming 'motion 1'; the other renders."""
    batch = np.stack([random_walk(), random_walk(seed=1)])
    batch[1, 2, 3, 0] = np.nan
    np.save(tmp_path / "batch.npy", batch)
    with pytest.raises(plot_script.RenderError, match=r"1 of 2 videos failed:\n.*batch\.npy motion 1: joint "
                                                      r"positions contain NaN"):
        run_cli(str(tmp_path / "batch.npy"), "--dataset_name", "t2m")
    assert [call["save_path"] for call in plotted] == [str(tmp_path / "batch_0.mp4")]


def test_cli_a_single_non_finite_motion_names_only_its_file(no_ffmpeg, plotted, tmp_path):
    """A NaN in a one-motion file is reported under the input's path, without a motion number."""
    joints = random_walk()
    joints[0, 0, 0] = np.nan
    np.save(tmp_path / "walk.npy", joints)
    with pytest.raises(plot_script.RenderError) as info:
        run_cli(str(tmp_path / "walk.npy"), "--dataset_name", "t2m")
    assert f"\n{tmp_path / 'walk.npy'}: joint positions contain NaN" in str(info.value)
    assert plotted == []


def test_cli_without_ffmpeg_warns_that_it_writes_gif(monkeypatch, plotted, tmp_path, caplog):
    """--format auto without ffmpeg logs that GIF is written instead; with ffmpeg it does not."""
    np.save(tmp_path / "walk.npy", random_walk())
    monkeypatch.setattr(plot_script.shutil, "which", lambda *args, **kwargs: None)
    run_cli(str(tmp_path / "walk.npy"), "--dataset_name", "t2m", "--overwrite")
    assert "ffmpeg not found on the PATH: writing GIF instead of MP4" in caplog.text
    caplog.clear()
    monkeypatch.setattr(plot_script.shutil, "which", lambda *args, **kwargs: "/usr/bin/ffmpeg")
    run_cli(str(tmp_path / "walk.npy"), "--dataset_name", "t2m", "--overwrite")
    assert "ffmpeg not found" not in caplog.text


def test_cli_mesh_videos_get_the_view_settings_and_need_an_smpl_skeleton(no_ffmpeg, monkeypatch, tmp_path):
    """With --mesh a joints file renders through the mesh renderer with --dpi, --radius, --format and --fps; a
    dataset whose joints are not SMPL-22 is refused naming --mesh."""
    from utils import smpl_mesh

    calls = []

    def record(save_path, joints, mesh, fps, **kwargs):
        calls.append({"save_path": save_path, "fps": fps, **kwargs})
        return save_path

    monkeypatch.setattr(smpl_mesh, "load_body_mesh", lambda path: object())
    monkeypatch.setattr(smpl_mesh, "render_joints_mesh", record)
    np.save(tmp_path / "walk.npy", random_walk())
    run_cli(str(tmp_path / "walk.npy"), "--dataset_name", "t2m", "--mesh", "model.npz", "--dpi", "24",
            "--radius", "3", "--fps", "15", "--format", "gif")
    (call,) = calls
    assert call["save_path"] == str(tmp_path / "walk_mesh.mp4")
    assert (call["fps"], call["dpi"], call["radius"], call["fmt"], call["title"]) == (15.0, 24, 3.0, "gif", "walk")
    np.save(tmp_path / "kit.npy", random_walk(joints=21))
    with pytest.raises(ValueError, match=r"--mesh: dataset 'kit' has 21 joints"):
        run_cli(str(tmp_path / "kit.npy"), "--dataset_name", "kit", "--mesh", "model.npz")


def test_cli_a_body_model_that_cannot_be_read_names_the_flag(no_ffmpeg, tmp_path):
    """A missing body model file is reported under --body_model."""
    np.save(tmp_path / "walk.npy", random_walk())
    with pytest.raises(OSError, match=r"^--body_model: .*missing\.npz"):
        run_cli(str(tmp_path / "walk.npy"), "--dataset_name", "t2m", "--body_model", str(tmp_path / "missing.npz"))


def test_cli_parameters_without_a_body_model_are_refused_naming_the_flag(no_ffmpeg, tmp_path):
    """An AMASS-layout .npz without --body_model is refused, telling to pass --body_model."""
    from test_amass import _motion, _save

    clip = str(_save(tmp_path / "walk.npz", **_motion(4, 60.0)))
    with pytest.raises(ValueError, match=r"walk\.npz: SMPL parameters render as a mesh; pass --body_model "
                                         r"BODY_MODEL\.npz"):
        run_cli(clip)


def test_a_later_caption_gets_a_band_even_when_the_first_caption_is_empty(encoded, tmp_path):
    """Captions [(0, ''), (3, text)]: the band above the panel is there from the start, so the later caption is drawn
    above the skeleton, not over it."""
    plot_script.plot_3d_motion(str(tmp_path / "m.gif"), _walker(6), CHAIN5,
                               captions=[(0, ""), (3, "then the person jumps")], save_joints=False)
    fig = encoded[0]["fig"]
    assert fig.get_figheight() == pytest.approx(4.0 + plot_script.TITLE_BAND)
    top = fig.axes[0].get_position(original=True).y1 * fig.get_figheight()
    assert top == pytest.approx(plot_script.PANELS_TOP * (4.0 + plot_script.TITLE_BAND))


def test_cli_a_missing_input_is_named_before_any_input_is_read(no_ffmpeg, tmp_path):
    """Every input's existence is checked before any is read: a missing one after a badly shaped one is the error."""
    np.save(tmp_path / "odd.npy", np.zeros((4, 17), dtype=np.float32))
    with pytest.raises(FileNotFoundError, match=r"missing\.npy: no such file$"):
        run_cli(str(tmp_path / "odd.npy"), str(tmp_path / "missing.npy"), "--dataset_name", "t2m")


def test_cli_a_mesh_render_is_refused_by_an_existing_mesh_video_not_a_stick_figure_one(no_ffmpeg, monkeypatch,
                                                                                         tmp_path):
    """With --mesh an existing <name>_mesh video refuses the run naming it; an existing <name> stick-figure video
    does not."""
    from utils import smpl_mesh

    calls = []
    monkeypatch.setattr(smpl_mesh, "load_body_mesh", lambda path: object())
    monkeypatch.setattr(smpl_mesh, "render_joints_mesh", lambda save_path, *args, **kwargs: calls.append(save_path)
                        or save_path)
    np.save(tmp_path / "walk.npy", random_walk())
    (tmp_path / "walk.gif").write_bytes(b"stick figure")
    run_cli(str(tmp_path / "walk.npy"), "--dataset_name", "t2m", "--mesh", "model.npz", "--format", "gif")
    assert calls == [str(tmp_path / "walk_mesh.mp4")]
    (tmp_path / "walk_mesh.gif").write_bytes(b"mesh")
    with pytest.raises(FileExistsError, match=r"1 file\(s\) exist already .*walk_mesh\.gif; pass --overwrite"):
        run_cli(str(tmp_path / "walk.npy"), "--dataset_name", "t2m", "--mesh", "model.npz", "--format", "gif")
    assert len(calls) == 1


def test_cli_a_parameters_file_renders_its_mesh_under_the_title_given_else_its_name(no_ffmpeg, monkeypatch, tmp_path):
    """An AMASS-layout .npz renders through the mesh renderer titled --title when given, else with the file's name."""
    from test_amass import _motion, _save

    from utils import smpl_mesh

    calls = []

    def record(path, mesh, save_path, **kwargs):
        calls.append((save_path, kwargs["title"], kwargs["fps"]))
        return save_path

    monkeypatch.setattr(smpl_mesh, "load_body_mesh", lambda path: object())
    monkeypatch.setattr(smpl_mesh, "render_amass_file", record)
    clip = str(_save(tmp_path / "walk.npz", **_motion(4, 60.0)))
    run_cli(clip, "--body_model", "model.npz", "--title", "a person walks", "--fps", "12")
    run_cli(clip, "--body_model", "model.npz", "--overwrite")
    assert calls == [(str(tmp_path / "walk_mesh.mp4"), "a person walks", 12.0),
                     (str(tmp_path / "walk_mesh.mp4"), "walk", None)]
