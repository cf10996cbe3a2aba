"""plot_loss.py and the event-file check: tag names, file names, --list, --logy, and damaged event files reported
where they are cut or corrupted."""

from __future__ import annotations

import logging
import os

import pytest

import plot_loss
from utils.event_files import check_event_file


def _write_run(log_dir, scalars, start=0):
    from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter(str(log_dir))
    for tag, values in scalars.items():
        for step, value in enumerate(values, start=start):
            writer.add_scalar(tag, value, step)
    writer.close()
    (event,) = [os.path.join(log_dir, n) for n in os.listdir(log_dir) if n.startswith(plot_loss.EVENT_PREFIX)]
    return event


def _cli(*argv):
    return plot_loss.main(plot_loss.parse_args([*argv, "--dpi", "30"]))


def test_an_upper_case_image_extension_is_kept():
    """``.lower()`` dropped: ``--output LOSS.PNG`` wrote ``LOSS.PNG.png``."""
    assert plot_loss.output_path("LOSS.PNG", {"png": "Portable Network Graphics"}) == "LOSS.PNG"
    assert plot_loss.output_path("run.v2", {"png": "Portable Network Graphics"}) == "run.v2.png"


def test_all_gives_three_tags_with_one_safe_name_three_files(tmp_path):
    """``while`` -> ``if``: the third tag whose safe name clashes overwrote the second one's PNG."""
    _write_run(tmp_path / "run", {"a/b": [1.0, 2.0], "a_b": [2.0, 1.0], "a:b": [3.0, 1.0]})
    written = _cli("--log_dir", str(tmp_path / "run"), "--all", "--output_dir", str(tmp_path / "plots"))
    assert len(written) == 3 and len(set(written)) == 3
    assert sorted(os.listdir(tmp_path / "plots")) == ["a_b.png", "a_b_.png", "a_b__.png"]


def test_list_prints_the_last_step_and_value(tmp_path, capsys):
    """``series.steps[-1]`` -> ``series.steps[0]``: --list said 'last step 0'."""
    _write_run(tmp_path / "run", {"Train/loss": [3.0, 2.0, 1.5]}, start=10)
    _cli("--log_dir", str(tmp_path / "run"), "--list")
    line = [x for x in capsys.readouterr().out.splitlines() if "Train/loss" in x][0]
    assert line.split()[1:] == ["3", "points,", "last", "step", "12:", "1.5"]


def test_logy_warns_about_a_zero_value(tmp_path, caplog):
    """``<= 0`` -> ``< 0``: a loss that reached exactly 0 vanished from the log-scale plot without the
    warning."""
    _write_run(tmp_path / "run", {"Train/loss": [1.0, 0.0, 0.5]})
    with caplog.at_level(logging.WARNING, logger="plot_loss"):
        _cli("--log_dir", str(tmp_path / "run"), "--logy", "--output", str(tmp_path / "loss.png"))
    assert any("has values <= 0" in r.getMessage() for r in caplog.records)


def test_describe_names_the_step_of_a_single_good_record(tmp_path):
    """The 'the last at step' clause shown only from two records on: a file cut after its first record did not
    say where its data ends. ``records + 1`` -> ``records``: the count of good records stayed 0."""
    event = _write_run(tmp_path / "run", {"Train/loss": [1.0, 2.0]})
    data = open(event, "rb").read()
    first = 16 + int.from_bytes(data[:8], "little")  # the file-version record
    open(event, "wb").write(data[:first + 5])
    check = check_event_file(event)
    assert (check.records, check.end, check.last_step) == (1, first, 0)
    assert check.describe() == (f"reading stops at byte {first} of {first + 5}: cut short in a record's header (an "
                                f"unfinished write, or a copy cut off); 1 good record(s), the last at step 0 before it")


@pytest.mark.parametrize("extra", [1, 8, 11])
def test_a_file_cut_inside_a_record_header_is_reported_not_a_crash(tmp_path, extra):
    """``len(header) < 12`` -> ``< 8``: a file cut 8 to 11 bytes into a record's header raised struct.error
    from plot_loss.py instead of the 'cut short' warning."""
    event = _write_run(tmp_path / "run", {"Train/loss": [1.0, 2.0]})
    data = open(event, "rb").read()
    first = 16 + int.from_bytes(data[:8], "little")
    open(event, "wb").write(data[:first + extra])
    check = check_event_file(event)
    assert (check.records, check.end, check.size) == (1, first, first + extra)
    assert check.problem.startswith("cut short in a record's header")


def _records(data):
    """(start, payload length) of each record of a whole event file."""
    out, offset = [], 0
    while offset < len(data):
        length = int.from_bytes(data[offset:offset + 8], "little")
        out.append((offset, length))
        offset += 16 + length
    return out


def test_a_damaged_payload_is_reported_as_a_failed_record_checksum(tmp_path):
    """The payload CRC check skipped: a record whose Event bytes were damaged passed for good."""
    event = _write_run(tmp_path / "run", {"Train/loss": [1.0, 2.0, 3.0]})
    data = bytearray(open(event, "rb").read())
    (start, length) = _records(bytes(data))[2]
    data[start + 12 + length // 2] ^= 0xFF
    open(event, "wb").write(bytes(data))
    check = check_event_file(event)
    assert (check.records, check.end, check.problem) == (2, start, "a record fails its checksum (damaged)")


@pytest.mark.parametrize("footer_bytes", [0, 2])
def test_a_file_cut_in_a_record_footer_is_reported_not_a_crash(tmp_path, footer_bytes):
    """``len(footer) < 4`` dropped: a file cut inside a record's CRC footer raised struct.error."""
    event = _write_run(tmp_path / "run", {"Train/loss": [1.0, 2.0]})
    data = open(event, "rb").read()
    (start, length) = _records(data)[1]
    open(event, "wb").write(data[:start + 12 + length + footer_bytes])
    check = check_event_file(event)
    assert (check.records, check.end) == (1, start)
    assert check.problem == "cut short in a record (an unfinished write, or a copy cut off)"


def test_tags_of_the_log_dir_itself_are_not_named_dot_when_a_subfolder_logs_too(tmp_path):
    """``rel != "."`` dropped: the run's own tags became ``./Train/loss`` once a sub-folder (add_scalars) held
    event files too."""
    _write_run(tmp_path / "run", {"Train/loss": [1.0, 0.5]})
    _write_run(tmp_path / "run" / "Val_loss", {"Val": [2.0, 1.0]})
    assert sorted(plot_loss.read_scalars(str(tmp_path / "run"))) == ["Train/loss", "Val_loss/Val"]


def test_a_model_folder_is_named_by_its_run():
    """Run_name returned the last folder: every ``--log_dirs .../NAME/model`` was named 'model', and two runs
    were refused as duplicate names."""
    assert plot_loss.run_name("checkpoints/t2m/fsq_ae/model") == "fsq_ae"
    assert plot_loss.run_name("checkpoints/t2m/fsq_ae/") == "fsq_ae"
