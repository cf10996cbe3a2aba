"""The per-step training log (utils/train_log.py): what a resume keeps of it, and bad files."""

from __future__ import annotations

import json
import logging
import types

import pytest
import torch

from utils.train_log import LossWindow, TrainLog


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


def _rows(*steps: int) -> str:
    return "".join(json.dumps({"step": k, "loss": 1.0 / k, "lr": 1e-4}) + "\n" for k in steps)


def test_train_log_rows_are_on_disk_after_each_write_without_close(tmp_path):
    """``flush()`` removed from TrainLog.write: the rows sat in Python's buffer, lost to a kill -9."""
    path = tmp_path / "train_log.jsonl"
    log = TrainLog(str(path), resume_step=0, enabled=True)
    try:
        log.write([{"step": 1, "loss": 0.5, "lr": 1e-4}])
        assert path.read_text() == _rows(1).replace("1.0", "0.5")
    finally:
        log.close()


def test_train_log_a_bad_complete_last_line_is_an_error_not_dropped(tmp_path):
    """``not line.endswith("\\n")`` dropped: a damaged last line that was written whole was silently dropped as
    if cut off mid-write, rather than reported."""
    path = tmp_path / "train_log.jsonl"
    content = _rows(1, 2) + '{"stop": 3}\n'
    path.write_text(content)
    with pytest.raises(ValueError, match="line 3 is not a training log row"):
        TrainLog(str(path), resume_step=3, enabled=True)
    assert path.read_text() == content


def test_train_log_blank_lines_are_skipped_on_resume(tmp_path):
    """The ``if not line.strip(): continue`` removed: a blank line made the resume fail."""
    path = tmp_path / "train_log.jsonl"
    path.write_text(_rows(1) + "\n" + _rows(2, 3))
    TrainLog(str(path), resume_step=2, enabled=True).close()
    assert path.read_text() == _rows(1, 2)


def _window(rank: int, world: int) -> LossWindow:
    return LossWindow(types.SimpleNamespace(process_index=rank, num_processes=world, device=torch.device("cpu")))


def test_loss_window_resumed_by_the_same_processes_takes_its_own_rank_state():
    """``len(states) == world`` -> ``!=``: every process took the mean of all instead of its own sums."""
    states = [{"count": 2, "sums": {"loss": torch.tensor(2.0)}}, {"count": 2, "sums": {"loss": torch.tensor(6.0)}}]
    window = _window(1, 2)
    window.load_state_dict(states)
    assert window.count == 2 and float(window.sums["loss"]) == 6.0
    window = _window(0, 1)  # saved by 2 processes, resumed by 1: their mean
    window.load_state_dict(states)
    assert float(window.sums["loss"]) == 4.0


def test_loss_window_report_gives_the_lr_of_the_last_step_and_the_window_mean():
    """``self.steps[-1][2]`` -> ``self.steps[0][2]``: the logged lr was the window's first step's (wrong during
    warm-up and after a milestone)."""
    window = _window(0, 1)
    window.add(1, torch.tensor(1.0), {}, 0.1, None)
    window.add(2, torch.tensor(3.0), {}, 0.2, None)
    report = window.report(TrainLog("", 0, enabled=False))
    assert report == {"loss": 2.0, "lr": 0.2}
    assert window.count == 0 and window.sums == {}


def test_train_log_writes_after_close_are_dropped(tmp_path):
    """``self.file = None`` removed from close: a write after close raised "I/O operation on closed file"
    instead of being dropped as documented."""
    path = tmp_path / "train_log.jsonl"
    log = TrainLog(str(path), resume_step=0, enabled=True)
    log.write([{"step": 1, "loss": 0.5, "lr": 1e-4}])
    log.close()
    log.write([{"step": 2, "loss": 0.25, "lr": 1e-4}])
    log.close()
    assert [json.loads(line)["step"] for line in path.read_text().splitlines()] == [1]


def test_train_log_resumed_at_step_1_keeps_step_1(tmp_path):
    """``resume_step > 0`` -> ``> 1``: a run resumed from its step-1 checkpoint lost the log of step 1."""
    path = tmp_path / "train_log.jsonl"
    path.write_text(_rows(1, 2))
    TrainLog(str(path), resume_step=1, enabled=True).close()
    assert path.read_text() == _rows(1)
