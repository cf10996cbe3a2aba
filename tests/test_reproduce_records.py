"""reproduce.py's records: verdicts against published values, the flags and presets compared, what a stage killed or
failed leaves in state.json, and which steps are kept."""

from __future__ import annotations

import json
import os
import shlex
import signal
import sys

import pytest

from utils import recipe_runner
from utils.recipe_plan import Step, _same_value, _script_flags, changed_flags
from utils.recipes import Published
from utils.reproduce_report import compare, measured
from utils.stop_signals import Stopped


def _verdicts(values):
    return {r.metric: r.verdict for r in compare((Published("fid", 0.5, "paper"), Published("top1", 0.5, "paper")),
                                                 values)}


def test_a_published_value_on_the_ci_boundary_is_within_it():
    """``abs(difference) <= ci`` -> ``<``: a published value exactly at the edge of the 95% interval read as
    'below (better)'."""
    assert _verdicts({"fid": (0.25, 0.25), "top1": (0.75, 0.25)}) == {"fid": "within the 95% CI",
                                                                     "top1": "within the 95% CI"}


def test_an_exact_match_without_an_interval_is_equal():
    """The ``equal`` case removed: a tokenizer MPJPE (no CI) equal to the paper's read 'below (better)'."""
    rows = compare((Published("mpjpe_mm", 29.5, "paper"),), {"mpjpe_mm": (29.5, None)})
    assert [(r.verdict, r.difference) for r in rows] == [("equal", 0.0)]


def test_a_non_finite_measurement_is_said_so():
    """The ``not finite`` case removed: an FID of NaN (a diverged model) read 'below (better)', an infinite one
    'above (worse)'."""
    assert _verdicts({"fid": (float("nan"), 0.1), "top1": (float("inf"), None)}) == {"fid": "not finite",
                                                                                    "top1": "not finite"}


def test_measured_skips_a_metric_the_evaluation_did_not_compute():
    """``stat is not None`` dropped: a result JSON with ``"multimodality": null`` (not computed) crashed the
    report with a TypeError."""
    result = {"protocol": {"metrics": {"fid": {"mean": 1.0, "ci": 0.1}, "multimodality": None}}}
    assert measured(result) == {"fid": (1.0, 0.1)}


def test_a_stage_killed_by_a_signal_is_a_failure(tmp_path):
    """``code != 0`` -> ``code > 0``: a stage killed by a signal (the OOM killer's SIGKILL: exit status -9) was
    recorded as done, with the steps after it run on its missing output."""
    step = Step("train", [sys.executable, "-c", "import os, signal; os.kill(os.getpid(), signal.SIGKILL)"],
                str(tmp_path / "latest.tar"), "-c")
    later = Step("evaluate", [sys.executable, "-c", "pass"], str(tmp_path / "result.json"), "-c")
    state = {"stages": {}}
    records, failure = recipe_runner.run_steps([step, later], state, str(tmp_path / "state.json"), rerun=False)
    assert failure == (step, -9)
    assert [r["status"] for r in records] == ["failed (exit -9)", "not run"]
    assert state["stages"] == {}


def test_a_repeated_flag_counts_with_its_last_value():
    """The values of a repeated flag accumulated instead of the last one winning (as argparse takes it): a
    command that repeats a flag with the recorded value read as changed."""
    flags = _script_flags(["python", "train_vq.py", "--lr", "1e-4", "--lr", "2e-4", "--milestones", "1", "2"],
                          "train_vq.py")
    assert flags["--lr"] == ("2e-4",) and flags["--milestones"] == ("1", "2")


def _step(*flags):
    return Step("tokenizer", ["python", "train_vq.py", "--name", "r", *flags], "/nonexistent/latest.tar", "train_vq.py",
                training=True)


def test_a_flag_that_lost_a_value_is_a_changed_setting():
    """The length comparison dropped: ``--milestones 1 2`` recorded and ``--milestones 1`` now compared equal
    (zip stops at the shorter), so the run was continued with other settings."""
    previous = {"command": shlex.join(_step("--milestones", "1", "2").argv), "cwd": os.getcwd(), "status": "done"}
    assert changed_flags(_step("--milestones", "1"), previous) == ["--milestones 1 2 -> 1"]
    assert changed_flags(_step("--milestones", "1", "2"), previous) == []


def test_a_relative_path_that_exists_here_is_read_from_here(tmp_path, monkeypatch):
    """The ``os.path.exists(was)`` case dropped: a relative path of a record without its working directory that
    names a folder here was matched by its tail against another folder of the same name."""
    (tmp_path / "a" / "data").mkdir(parents=True)
    (tmp_path / "b" / "data").mkdir(parents=True)
    monkeypatch.chdir(tmp_path / "a")
    assert _same_value("data", None, str(tmp_path / "a" / "data"))
    assert not _same_value("data", None, str(tmp_path / "b" / "data"))


def test_a_quick_run_needs_no_paper_assets(tmp_path):
    """The ``--quick`` early return dropped: a quick run (which makes its own synthetic data and evaluator) was
    refused for lacking the dataset files and the official evaluator."""
    import argparse

    from utils.recipe_plan import plan, preflight
    from utils.recipes import get_recipe

    args = argparse.Namespace(quick=True, data_root=str(tmp_path / "synthetic"), evaluator_dir=None,
                              checkpoints_dir=str(tmp_path / "ck"), dry_run=True, launch=None, python=sys.executable)
    recipe = get_recipe("momask")
    assert preflight(args, recipe, "synthetic", plan(args, recipe, "synthetic")) == []


def test_a_started_record_keeps_its_working_directory(tmp_path, monkeypatch):
    """``cwd`` left out of the record: the relative paths of a run started from another folder were matched by
    their tail only, so a run was continued with another --data_root of the same name."""
    from utils.recipe_plan import started

    monkeypatch.chdir(tmp_path)
    step = _step("--data_root", "data")
    record = started(step)
    assert record == {"command": shlex.join(step.argv), "status": "started", "cwd": str(tmp_path)}
    (tmp_path / "data").mkdir()
    (tmp_path / "other" / "data").mkdir(parents=True)
    monkeypatch.chdir(tmp_path / "other")
    assert changed_flags(_step("--data_root", "../data"), record) == []  # the same folder, spelled otherwise
    moved = str(tmp_path / "other" / "data")  # another folder of the same name
    assert changed_flags(_step("--data_root", moved), record) == [f"--data_root data -> {moved}"]


def test_a_training_is_recorded_as_started_before_it_runs(tmp_path):
    """The write of the 'started' record removed: while (and if killed during) a training that had finished
    before, state.json still said 'done', so the next call skipped the run it had left half-trained."""
    state_path = tmp_path / "state.json"
    seen = tmp_path / "seen.json"
    step = Step("train", [sys.executable, "-c", f"import shutil; shutil.copy({str(state_path)!r}, {str(seen)!r})"],
                str(tmp_path / "latest.tar"), "-c", training=True)
    state = {"stages": {"train": {"command": "old", "status": "done", "seconds": 1.0}}}
    state_path.write_text(json.dumps(state))
    records, failure = recipe_runner.run_steps([step], state, str(state_path), rerun=True)
    assert failure is None
    assert json.loads(seen.read_text())["stages"]["train"]["status"] == "started"


def test_a_failed_evaluation_loses_its_earlier_done_record(tmp_path):
    """The earlier 'done' record of an evaluation that runs again was not dropped: when the new run failed,
    state.json still said done, and the next call skipped it and reported the former result."""
    state_path = tmp_path / "state.json"
    result = tmp_path / "evaluate.json"
    result.write_text("{}")
    step = Step("evaluate", [sys.executable, "-c", "raise SystemExit(3)"], str(result), "-c", evaluation=True)
    state = {"stages": {"evaluate": {"command": "old", "status": "done", "seconds": 1.0}}}
    state_path.write_text(json.dumps(state))
    records, failure = recipe_runner.run_steps([step], state, str(state_path), rerun=True)
    assert failure == (step, 3)
    assert json.loads(state_path.read_text())["stages"] == {}


def test_a_changed_output_of_a_skipped_step_has_its_new_sha256_recorded(tmp_path):
    """The new SHA-256 written only for a first record: an output changed since its record was reported as
    changed at every later call, and every step after it ran again each time."""
    import hashlib

    state_path = tmp_path / "state.json"
    data = tmp_path / "Mean.npy"
    data.write_bytes(b"new statistics")
    step = Step("data", [sys.executable, "-c", "raise SystemExit(9)"], str(data), "-c", always_skip_when_done=True)
    state = {"stages": {"data": {"command": "c", "status": "done", "seconds": 2.0, "output": str(data),
                                 "sha256": "0" * 64}}}
    records, failure = recipe_runner.run_steps([step], state, str(state_path), rerun=False)
    assert failure is None and records[0]["status"] == "skipped (done)"
    written = json.loads(state_path.read_text())["stages"]["data"]
    assert written["sha256"] == hashlib.sha256(b"new statistics").hexdigest() and written["seconds"] == 2.0


def test_kept_needs_a_done_record_no_upstream_run_and_no_rerun(tmp_path):
    """(the ``status == "done"`` condition dropped: a training recorded as only 'started', killed midway, was
    skipped as finished), (``not upstream_ran`` dropped: an evaluation of a run trained again in this call was
    skipped and reported the former weights)."""
    from utils.recipe_plan import command, kept

    latest = tmp_path / "latest.tar"
    latest.write_bytes(b"w")
    step = Step("tokenizer", ["python", "train_vq.py", "--name", "r"], str(latest), "train_vq.py", training=True)
    done = {"command": command(step), "status": "done", "cwd": os.getcwd()}
    assert kept(step, done, rerun=False, upstream_ran=False)
    assert not kept(step, {**done, "status": "started"}, rerun=False, upstream_ran=False)
    assert not kept(step, done, rerun=False, upstream_ran=True)
    assert not kept(step, done, rerun=True, upstream_ran=False)


def test_a_placed_evaluator_with_a_run_in_progress_is_not_done(tmp_path):
    """``not self.resumes()`` dropped: an evaluator training interrupted after its first finest.tar was taken
    as an evaluator put in place by hand, and never finished."""
    placed, latest = tmp_path / "finest.tar", tmp_path / "latest.tar"
    placed.write_bytes(b"f")
    step = Step("evaluator", ["python", "train_evaluator.py"], str(tmp_path / "evaluator_val.json"),
                "train_evaluator.py", training=True, always_skip_when_done=True, resume_files=(str(latest),),
                placed_file=str(placed))
    assert step.output_present()
    latest.write_bytes(b"l")
    assert not step.output_present()


def test_a_finished_evaluator_made_with_other_flags_is_no_obstacle(tmp_path):
    """The skip of data/evaluator steps whose output is there dropped from changed_runs: a finished evaluator
    (kept whatever it was built with, never continued) recorded with other flags refused the whole call."""
    from utils.recipe_plan import changed_runs

    run = tmp_path / "text_mot_match"
    (run / "eval").mkdir(parents=True)
    (run / "model").mkdir()
    (run / "eval" / "evaluator_val.json").write_text("{}")
    (run / "model" / "latest.tar").write_bytes(b"l")
    argv = ["python", "train_evaluator.py", "--max_iters", "200"]
    step = Step("evaluator", argv, str(run / "eval" / "evaluator_val.json"), "train_evaluator.py", training=True,
                always_skip_when_done=True, resume_files=(str(run / "model" / "latest.tar"),))
    previous = {"command": shlex.join([*argv[:-1], "100"]), "status": "done", "cwd": os.getcwd()}
    assert changed_runs([step], {"evaluator": previous}, "state.json") == []
    (run / "eval" / "evaluator_val.json").unlink()  # not finished: continuing it with other flags is refused
    (problem,) = changed_runs([step], {"evaluator": previous}, "state.json")
    assert "--max_iters 100 -> 200" in problem


def test_the_steps_after_a_changed_output_run_next_time_even_if_this_call_stops_first(tmp_path, monkeypatch):
    """The records of the steps after a changed output were not dropped in the write of its new SHA-256: a call
    stopped right after that write left them 'done', and the next call skipped them and reported results made from
    the former output."""
    from utils.recipe_plan import command

    state_path = tmp_path / "state.json"
    data, result = tmp_path / "Mean.npy", tmp_path / "evaluate.json"
    data.write_bytes(b"new statistics")
    result.write_text("{}")
    first = Step("data", [sys.executable, "-c", "raise SystemExit(9)"], str(data), "-c", always_skip_when_done=True)
    later = Step("evaluate", [sys.executable, "-c", "pass"], str(result), "-c", evaluation=True)
    state = {"stages": {"data": {"command": "c", "status": "done", "seconds": 2.0, "output": str(data),
                                 "sha256": "0" * 64},
                        "evaluate": {"command": command(later), "status": "done", "seconds": 1.0}}}

    def stopped(step):
        raise Stopped(signal.SIGTERM)  # the call is stopped before the step after the changed output starts

    monkeypatch.setattr(recipe_runner, "started", stopped)
    with pytest.raises(Stopped):
        recipe_runner.run_steps([first, later], state, str(state_path), rerun=False)
    monkeypatch.undo()
    records, failure = recipe_runner.run_steps([first, later], json.loads(state_path.read_text()), str(state_path),
                                               rerun=False)
    assert failure is None and [r["status"] for r in records] == ["skipped (done)", "done"]
