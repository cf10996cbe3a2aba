"""The per-step training log (utils/train_log.py): what a resume keeps of it, and bad files."""

from __future__ import annotations

import logging

import pytest

from utils.train_log import TrainLog


def test_train_log_drops_a_last_line_cut_off_mid_write_and_names_a_bad_one(tmp_path, caplog):
    path = tmp_path / "train_log.jsonl"
    rows = "".join(f'{{"step": {k}, "loss": {1.0 / k}, "lr": 0.0001}}\n' for k in range(1, 5))
    path.write_text(rows + '{"step": 5, "lo')  # killed while writing step 5
    with caplog.at_level(logging.WARNING, logger="utils.train_log"):
        TrainLog(str(path), resume_step=3, enabled=True).close()
    assert path.read_text() == "".join(rows.splitlines(keepends=True)[:3])
    assert "train_log.jsonl: line 5 was cut off mid-write" in caplog.text
    path.write_text(rows.replace('{"step": 2', '{"stop": 2'))
    with pytest.raises(ValueError, match=r"train_log.jsonl: line 2 is not a training log row"):
        TrainLog(str(path), resume_step=3, enabled=True)
    assert path.read_text() == rows.replace('{"step": 2', '{"stop": 2')  # nothing lost


def test_a_last_row_that_lost_only_its_newline_is_kept_on_a_line_of_its_own(tmp_path):
    """A file cut one byte short ends in a complete row without its newline: kept, and the rows written after the
    resume start on a line of their own (they were glued to it, and the next resume refused the file)."""
    path = tmp_path / "train_log.jsonl"
    rows = "".join(f'{{"step": {k}, "loss": 0.5, "lr": 0.1}}\n' for k in range(1, 5))
    path.write_text(rows[:-1].rsplit("\n", 1)[0])  # steps 1-3, the third without its newline
    log = TrainLog(str(path), resume_step=3, enabled=True)
    log.write([{"step": 4, "loss": 0.5, "lr": 0.1}])
    log.close()
    assert path.read_text() == rows
    TrainLog(str(path), resume_step=4, enabled=True).close()
    assert path.read_text() == rows
