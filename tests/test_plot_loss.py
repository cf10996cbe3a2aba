"""plot_loss.py: reading TensorBoard scalars, TensorBoard smoothing, and the PNGs of each CLI mode."""

import numpy as np
import pytest
from PIL import Image

import plot_loss

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
DPI = 40


def write_run(log_dir, scalars: dict[str, list[float]], start: int = 0) -> None:
    from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter(str(log_dir))
    for tag, values in scalars.items():
        for step, value in enumerate(values, start=start):
            writer.add_scalar(tag, value, step)
    writer.close()


def curve(n: int = 30, scale: float = 1.0) -> list[float]:
    rng = np.random.default_rng(0)
    return list(scale * np.exp(-np.arange(n) / 10.0) + 0.05 * rng.random(n))


def assert_png(path, min_height: int = 50) -> np.ndarray:
    with open(path, "rb") as f:
        assert f.read(8) == PNG_MAGIC
    with Image.open(path) as image:
        pixels = np.asarray(image.convert("L"))
    assert pixels.shape[0] >= min_height and pixels.std() > 5  # something was drawn, not a blank canvas
    return pixels


def run_cli(*argv: str) -> list[str]:
    return plot_loss.main(plot_loss.parse_args([*argv, "--dpi", str(DPI)]))


def test_smooth_ema_matches_tensorboard():
    np.testing.assert_allclose(plot_loss.smooth_ema(np.array([1.0, 2.0, 3.0]), 0.5), [1.0, 1.25 / 0.75, 2.125 / 0.875])
    np.testing.assert_allclose(plot_loss.smooth_ema(np.array([4.0, 1.0, 7.0]), 0.0), [4.0, 1.0, 7.0])
    # A constant curve stays constant: the debias removes the pull towards the initial 0.
    np.testing.assert_allclose(plot_loss.smooth_ema(np.full(50, 3.0), 0.99), np.full(50, 3.0))
    out = plot_loss.smooth_ema(np.array([1.0, np.nan, 3.0]), 0.5)
    assert np.isnan(out[1])
    np.testing.assert_allclose(out[[0, 2]], [1.0, (0.25 + 1.5) / 0.75])
    with pytest.raises(ValueError, match=r"--smooth must be in \[0, 1\)"):
        plot_loss.smooth_ema(np.ones(3), 1.0)


def test_read_scalars_keeps_last_value_of_resumed_steps(tmp_path):
    write_run(tmp_path / "model", {"Train/loss": [5.0] * 10})
    write_run(tmp_path / "model", {"Train/loss": [1.0] * 5}, start=5)  # a resumed run logs steps 5..9 again
    series = plot_loss.read_scalars(str(tmp_path))["Train/loss"]
    np.testing.assert_array_equal(series.steps, np.arange(10))
    np.testing.assert_array_equal(series.values, [5.0] * 5 + [1.0] * 5)


def test_add_scalars_subfolders_get_distinct_names(tmp_path):
    from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter(str(tmp_path))
    for step in range(3):
        writer.add_scalars("Loss", {"train": 1.0 / (step + 1), "val": 2.0}, step)
    writer.close()
    assert set(plot_loss.read_scalars(str(tmp_path))) == {"Loss_train/Loss", "Loss_val/Loss"}


def test_single_run_png(tmp_path):
    write_run(tmp_path / "run" / "model",
              {"Train/loss": curve(), "Val/loss": curve(scale=2.0), "Train/lr": [1e-4] * 30})
    out = tmp_path / "loss.png"
    assert run_cli("--log_dir", str(tmp_path / "run"), "--output", str(out), "--smooth", "0.9",
                   "--metric", "Train/loss", "--logy") == [str(out)]
    one_panel = assert_png(out)
    # Without --metric every "loss" tag gets its own panel, so the figure is twice as tall.
    run_cli("--log_dir", str(tmp_path / "run"), "--output", str(out))
    assert assert_png(out).shape[0] == 2 * one_panel.shape[0]


def test_compare_runs(tmp_path):
    write_run(tmp_path / "a", {"Train/loss": curve()})
    write_run(tmp_path / "b", {"Train/loss": curve(scale=0.5)})
    out = tmp_path / "cmp.png"
    run_cli("--log_dirs", str(tmp_path / "a"), str(tmp_path / "b"), "--names", "fsq", "vq", "--output", str(out))
    assert_png(out)
    with pytest.raises(ValueError, match="1 names for 2 --log_dirs"):
        run_cli("--log_dirs", str(tmp_path / "a"), str(tmp_path / "b"), "--names", "fsq")


def test_all_tags_to_safe_file_names(tmp_path):
    write_run(tmp_path / "run", {"Train/loss": curve(), "Val/fid score": curve(), "lr": [1e-4] * 30})
    written = run_cli("--log_dir", str(tmp_path / "run"), "--all", "--output_dir", str(tmp_path / "plots"))
    assert sorted(p.name for p in (tmp_path / "plots").iterdir()) == ["Train_loss.png", "Val_fid_score.png", "lr.png"]
    for path in written:
        assert_png(path)


def test_list_returns_tags(tmp_path, capsys):
    write_run(tmp_path / "run", {"Train/loss": curve(), "lr": [1e-4] * 30})
    assert run_cli("--log_dir", str(tmp_path / "run"), "--list") == ["Train/loss", "lr"]
    assert "Train/loss" in capsys.readouterr().out


def test_unknown_metric_lists_tags(tmp_path):
    write_run(tmp_path / "run", {"Train/loss": curve(), "lr": [1e-4] * 30})
    with pytest.raises(ValueError, match=r"unknown metric 'Val/loss'.*available tags: \['Train/loss', 'lr'\]"):
        run_cli("--log_dir", str(tmp_path / "run"), "--metric", "Val/loss", "--output", str(tmp_path / "x.png"))
    assert not (tmp_path / "x.png").exists()


def test_missing_event_files(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="empty: no TensorBoard event files"):
        run_cli("--log_dir", str(tmp_path / "empty"))
    with pytest.raises(FileNotFoundError, match="no such log directory"):
        run_cli("--log_dir", str(tmp_path / "nowhere"))


def test_all_takes_the_metrics_given(tmp_path):
    write_run(tmp_path / "run", {"Train/loss": curve(), "Val/fid_score": curve(), "lr": [1e-4] * 30})
    run_cli("--log_dir", str(tmp_path / "run"), "--all", "--metric", "Train/loss", "lr",
            "--output_dir", str(tmp_path / "plots"))
    assert sorted(p.name for p in (tmp_path / "plots").iterdir()) == ["Train_loss.png", "lr.png"]
    with pytest.raises(ValueError, match="unknown metric 'Val/loss'"):
        run_cli("--log_dir", str(tmp_path / "run"), "--all", "--metric", "Val/loss", "--output_dir",
                str(tmp_path / "none"))
    assert not (tmp_path / "none").exists()


def test_output_without_extension_returns_the_png_written(tmp_path):
    # matplotlib appends ".png" to a name without extension; the path printed and returned must be that file.
    write_run(tmp_path / "run", {"Train/loss": curve()})
    written = run_cli("--log_dir", str(tmp_path / "run"), "--output", str(tmp_path / "plots" / "loss"))
    assert written == [str(tmp_path / "plots" / "loss.png")]
    assert_png(written[0])


@pytest.mark.parametrize("given, written", [("loss_0.9", "loss_0.9.png"), ("run.v2", "run.v2.png"),
                                             ("loss.PNG", "loss.PNG"), ("folder/", "folder/loss.png")])
def test_an_output_name_with_a_dot_or_a_folder_gets_a_png(tmp_path, given, written):
    """A dot in the name is no format (matplotlib refused '9' and 'v2'), and a folder gets loss.png inside it."""
    write_run(tmp_path / "run", {"Train/loss": curve()})
    assert run_cli("--log_dir", str(tmp_path / "run"), "--output", f"{tmp_path}/{given}") == [f"{tmp_path}/{written}"]
    assert_png(tmp_path / written)
    (tmp_path / "existing").mkdir()
    assert run_cli("--log_dir", str(tmp_path / "run"), "--output", str(tmp_path / "existing")) == [
        str(tmp_path / "existing" / "loss.png")]


def test_another_image_format_is_kept(tmp_path):
    write_run(tmp_path / "run", {"Train/loss": curve()})
    assert run_cli("--log_dir", str(tmp_path / "run"), "--output", str(tmp_path / "loss.svg")) == [
        str(tmp_path / "loss.svg")]
    assert (tmp_path / "loss.svg").read_text().lstrip().startswith("<?xml")


def test_a_write_stopped_midway_keeps_the_earlier_png(tmp_path, monkeypatch):
    """A PNG is written whole or not at all: a failure (or a kill) part way through leaves the earlier plot."""
    write_run(tmp_path / "run", {"Train/loss": curve()})
    out = tmp_path / "loss.png"
    run_cli("--log_dir", str(tmp_path / "run"), "--output", str(out))
    earlier = out.read_bytes()

    def fails_midway(fig, path, **kwargs):
        with open(path, "wb") as f:
            f.write(PNG_MAGIC)
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(plot_loss.Figure, "savefig", fails_midway)
    with pytest.raises(OSError, match="No space left"):
        run_cli("--log_dir", str(tmp_path / "run"), "--output", str(out), "--logy")
    assert out.read_bytes() == earlier
    assert sorted(p.name for p in tmp_path.iterdir()) == ["loss.png", "run"]


def test_a_tag_with_one_point_is_drawn(tmp_path):
    # A run validated once (or a best checkpoint saved once) has one point per Val/ or Best/ tag: a line through one
    # point draws nothing, so the panel came out empty.
    write_run(tmp_path / "run", {"Val/fid": [2.0]}, start=10)
    out = tmp_path / "fid.png"
    plot_loss.main(plot_loss.parse_args(["--log_dir", str(tmp_path / "run"), "--metric", "Val/fid", "--output",
                                          str(out), "--dpi", "100"]))
    with Image.open(out) as image:
        rgb = np.asarray(image.convert("RGB")).astype(int)
    first_colour = np.array([0x1F, 0x77, 0xB4])  # matplotlib's C0, the colour of the first run
    assert (np.abs(rgb - first_colour).sum(-1) < 40).sum() > 5


def test_runs_under_one_parent_name_every_tag_by_its_run(tmp_path):
    # A tag only one of the runs logs (a Best/ tag, the tokenizer's code statistics) must still say whose it is.
    write_run(tmp_path / "fsq" / "model", {"Train/loss": curve(), "Best/fid": [3.0, 2.0]})
    write_run(tmp_path / "vq" / "model", {"Train/loss": curve(scale=0.5)})
    assert set(plot_loss.read_scalars(str(tmp_path))) == {"fsq/model/Train/loss", "fsq/model/Best/fid",
                                                          "vq/model/Train/loss"}
    assert set(plot_loss.read_scalars(str(tmp_path / "fsq"))) == {"Train/loss", "Best/fid"}


def test_a_tag_a_resumed_run_purged_entirely_is_left_out(tmp_path, capsys):
    """A run stopped after a validation and before its next save resumes from that save: TensorBoard drops what the
    interrupted run logged after it, every Val/ point included. The tag stays listed with no point, and --list and
    plotting failed with an IndexError."""
    from torch.utils.tensorboard import SummaryWriter

    model = tmp_path / "run" / "model"
    writer = SummaryWriter(str(model))
    for step in range(1, 81):
        writer.add_scalar("Train/loss", 1.0 / step, step)
    writer.add_scalar("Val/loss", 0.5, 75)
    writer.close()
    writer = SummaryWriter(str(model), purge_step=51)  # as the engine reopens its writer on resume
    for step in range(51, 61):
        writer.add_scalar("Train/loss", 2.0 / step, step)
    writer.close()
    scalars = plot_loss.read_scalars(str(model))
    assert set(scalars) == {"Train/loss"}
    np.testing.assert_array_equal(scalars["Train/loss"].steps, np.arange(1, 61))
    assert run_cli("--log_dir", str(model), "--list") == ["Train/loss"]
    assert "Train/loss" in capsys.readouterr().out
    assert_png(run_cli("--log_dir", str(model), "--output", str(tmp_path / "loss.png"))[0])


def test_the_default_loss_tags_are_read_from_the_tags_not_the_run_folders(tmp_path, monkeypatch):
    """Without --metric every tag with 'loss' in its name is drawn: a run folder named no_vel_loss made all of its
    tags count (Train/lr, Train/perplexity)."""
    write_run(tmp_path / "base" / "model", {"Train/loss": curve(), "Train/lr": [1e-3] * 30})
    write_run(tmp_path / "no_vel_loss" / "model", {"Train/loss": curve(scale=0.5), "Train/lr": [1e-3] * 30,
                                                   "Train/perplexity": curve(scale=9.0)})
    drawn = []
    monkeypatch.setattr(plot_loss, "plot_metrics", lambda runs, metrics, *args: drawn.append(metrics) or "x.png")
    run_cli("--log_dir", str(tmp_path), "--output", str(tmp_path / "loss.png"))
    assert drawn == [["base/model/Train/loss", "no_vel_loss/model/Train/loss"]]


def _event_file(folder):
    (path,) = [p for p in folder.iterdir() if p.name.startswith(plot_loss.EVENT_PREFIX)]
    return path


def test_a_damaged_event_file_is_read_up_to_its_bad_record_with_a_warning(tmp_path, caplog, capsys):
    """TensorBoard's reader stops at a file's first bad record without a word: a damaged file passed for a shorter
    run, its later points silently gone."""
    write_run(tmp_path / "run" / "model", {"Train/loss": curve(24)})
    path = _event_file(tmp_path / "run" / "model")
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle:middle + 4] = b"XXXX"
    path.write_bytes(bytes(data))
    with caplog.at_level("WARNING", logger="plot_loss"):
        points = plot_loss.read_scalars(str(tmp_path / "run"))["Train/loss"]
    assert 0 < len(points.steps) < 24
    (warning,) = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert str(path) in warning and f"of {len(data)}" in warning and "checksum" in warning
    assert f"the last at step {points.steps[-1]}" in warning

    path.write_bytes(bytes(data[:middle]))  # a copy cut in half
    caplog.clear()
    with caplog.at_level("WARNING", logger="plot_loss"):
        plot_loss.read_scalars(str(tmp_path / "run"))
    (warning,) = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert str(path) in warning and f"of {middle}" in warning and "cut short" in warning


def test_whole_event_files_raise_no_warning(tmp_path, caplog):
    write_run(tmp_path / "run" / "model", {"Train/loss": curve()})
    write_run(tmp_path / "run" / "model", {"Train/loss": curve()}, start=30)
    with caplog.at_level("WARNING", logger="plot_loss"):
        assert len(plot_loss.read_scalars(str(tmp_path / "run"))["Train/loss"].steps) == 60
    assert not [r for r in caplog.records if r.levelname == "WARNING"]


@pytest.mark.parametrize("content", ["empty", "prefix", "text"])
def test_event_files_without_a_readable_scalar_are_an_error_naming_them(tmp_path, content):
    """An empty, cut or text file named like an event file read as a run with no tags: --list printed a header and
    exited 0, plotting asked for --metric with 'available tags: []'."""
    write_run(tmp_path / "good", {"Train/loss": curve()})
    data = {"empty": b"", "prefix": _event_file(tmp_path / "good").read_bytes()[:100],
            "text": b"not an event file\n"}[content]
    path = tmp_path / "run" / "model" / f"{plot_loss.EVENT_PREFIX}.1.host"
    path.parent.mkdir(parents=True)
    path.write_bytes(data)
    for argv in (["--list"], ["--output", str(tmp_path / "loss.png")]):
        with pytest.raises(ValueError, match="hold no readable scalars") as error:
            run_cli("--log_dir", str(tmp_path / "run"), *argv)
        assert str(path) in str(error.value)
    assert not (tmp_path / "loss.png").exists()


def test_an_event_file_given_as_log_dir_says_to_pass_its_folder(tmp_path):
    write_run(tmp_path / "run" / "model", {"Train/loss": curve()})
    path = _event_file(tmp_path / "run" / "model")
    with pytest.raises(NotADirectoryError, match=rf"is a file, not a log directory: .*{tmp_path / 'run' / 'model'}$"):
        run_cli("--log_dir", str(path), "--list")
