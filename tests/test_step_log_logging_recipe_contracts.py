"""The engine's step log and loss window (utils/train_log.py), the logging set-up and TensorBoard writer
(utils/logging_utils.py), the run of a recipe's steps (utils/recipe_runner.py) and prepare_data.py's parser
(options/prepare_data_options.py): a log row that is not an object named with its line, bf16 losses averaged in fp32,
the main process told by its global rank, points after close dropped, a finished step run again after one that ran,
and prepare_data.py's required flags, ranges, switches and choices."""

from __future__ import annotations

import hashlib
import logging
import os
import sys

import pytest
import torch
from test_run_io_contracts import ROW, _window, root_logger  # noqa: F401  (root_logger: a fixture)

from options.prepare_data_options import get_prepare_data_parser
from utils import recipe_runner
from utils.logging_utils import TensorBoard, setup_logging
from utils.recipe_plan import Step, command
from utils.train_log import TrainLog

# ------------------------------------------------------------------------------------------ training log and window

def test_a_train_log_row_that_is_not_a_json_object_is_named_with_its_line(tmp_path):
    path = tmp_path / "train_log.jsonl"
    content = ROW % 1 + "[2, 0.5, 0.0001]\n" + ROW % 3
    path.write_text(content)
    with pytest.raises(ValueError, match=r"train_log.jsonl: line 2 is not a training log row \(not an object with an "
                                         r"integer 'step'\)"):
        TrainLog(str(path), resume_step=3, enabled=True)
    assert path.read_text() == content


def test_bf16_losses_are_averaged_in_fp32():
    # 256 + 1 is 256 in bf16 (8 bits of mantissa): summed in their own dtype the window's mean would be 128.
    window = _window()
    window.add(1, torch.tensor(256.0, dtype=torch.bfloat16), {}, 0.1, None)
    window.add(2, torch.tensor(1.0, dtype=torch.bfloat16), {}, 0.1, None)
    assert window.report(TrainLog("", 0, enabled=False)) == {"loss": 128.5, "lr": 0.1}


# ---------------------------------------------------------------------------------------------------- logging set-up

def test_a_process_of_another_node_is_not_the_main_one(root_logger, monkeypatch, capsys, tmp_path):  # noqa: F811
    """torchrun's LOCAL_RANK is 0 on every node: the global RANK decides, so the first process of a second node
    neither writes the log file nor prints info lines."""
    monkeypatch.setenv("RANK", "4")
    monkeypatch.setenv("LOCAL_RANK", "0")
    setup_logging(str(tmp_path / "train.log"))
    logging.getLogger("test_logging_node").info("an info line")
    assert capsys.readouterr().err == ""
    assert not (tmp_path / "train.log").exists()


def test_a_closed_tensorboard_drops_later_points_and_closes_once(tmp_path):
    """After close, a point is dropped (it opened a second event file beside the run's) and close again is no error."""
    board = TensorBoard(str(tmp_path))
    board.scalar("Train/loss", 1.0, 1)
    board.close()
    board.scalars("Train", {"loss": 2.0}, 2)
    board.flush()
    board.close()
    assert len([name for name in os.listdir(tmp_path) if name.startswith("events.out.tfevents")]) == 1


# -------------------------------------------------------------------------------------------- running a recipe's steps

def test_a_finished_step_after_one_that_ran_in_the_same_call_runs_again(tmp_path):
    """It reads what the earlier step has just made: skipped, it would report on the former output."""
    state_path, result, ran = tmp_path / "state.json", tmp_path / "evaluate.json", tmp_path / "ran"
    result.write_text("{}")
    train = Step("train", [sys.executable, "-c", "pass"], str(tmp_path / "latest.tar"), "-c")
    later = Step("evaluate", [sys.executable, "-c", f"open({str(ran)!r}, 'w').close()"], str(result), "-c",
                 evaluation=True)
    done = {"evaluate": {"command": command(later), "status": "done", "cwd": os.getcwd(), "output": str(result),
                         "sha256": hashlib.sha256(b"{}").hexdigest()}}
    records, failure = recipe_runner.run_steps([later], {"stages": dict(done)}, str(state_path), rerun=False)
    assert [r["status"] for r in records] == ["skipped (done)"] and not ran.exists()
    records, failure = recipe_runner.run_steps([train, later], {"stages": dict(done)}, str(state_path), rerun=False)
    assert failure is None and [r["status"] for r in records] == ["done", "done"] and ran.exists()


# ------------------------------------------------------------------------------------------- prepare_data.py's flags

@pytest.mark.parametrize("argv, flag", [
    (["bvh", "--src", "s", "--out", "o"], "--skeleton"),
    (["export_smpl", "j.npy"], "--body_model"),
    (["stats"], "--dataset_name"),
    (["pfnn", "--dataset_name", "t2m"], "--out"),
])
def test_prepare_data_names_a_missing_required_flag(argv, flag, capsys):
    with pytest.raises(SystemExit):
        get_prepare_data_parser().parse_args(argv)
    assert f"the following arguments are required: {flag}" in capsys.readouterr().err


@pytest.mark.parametrize("argv, flag", [
    (["export_bvh", "j.npy", "--fps", "0"], "--fps"),
    (["export_smpl", "j.npy", "--body_model", "m.npz", "--fps", "-20"], "--fps"),
    (["amass", "--src", "s", "--out", "o", "--body_model", "m.npz", "--fps", "0"], "--fps"),
    (["synthetic", "--seed", "-1"], "--seed"),
])
def test_prepare_data_refuses_a_rate_or_seed_out_of_range_naming_the_flag(argv, flag, capsys):
    with pytest.raises(SystemExit):
        get_prepare_data_parser().parse_args(argv)
    assert f"argument {flag}" in capsys.readouterr().err


def test_prepare_data_switches_are_off_unless_given_and_every_gender_is_a_choice():
    parser = get_prepare_data_parser()
    synthetic = parser.parse_args(["synthetic"])
    assert (synthetic.keep_existing, parser.parse_args(["synthetic", "--keep_existing"]).keep_existing) == (False, True)
    stats = parser.parse_args(["stats", "--dataset_name", "t2m"])
    assert (stats.overwrite, stats.split) == (False, None)
    assert parser.parse_args(["pfnn", "--dataset_name", "t2m", "--out", "o"]).gait is False
    for gender in ("neutral", "male", "female"):
        args = parser.parse_args(["export_smpl", "j.npy", "--body_model", "m.npz", "--gender", gender])
        assert (args.gender, args.dataset_name) == (gender, "t2m")

