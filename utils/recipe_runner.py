"""How ``reproduce.py`` runs the steps of a recipe's plan (``utils/recipe_plan.py``), and what it would run.

``run_steps`` runs the steps in order, each the script a user would type, as a separate process, and keeps
``state.json`` up to date as they start and finish: a step recorded as finished is skipped unless a step before it ran
in the same call or its output is not the one recorded. ``dry_run_lines`` gives the same decisions as a script.
``run_stage`` runs one command in a process group of its own, so that Ctrl-C, SIGTERM and SIGHUP stop the stage and
every process it started (a launcher and its workers) by their own clean-up.
"""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import time
from typing import Any

from utils.eval_report import write_report_json
from utils.recipe_plan import Step, command, finished, kept, launched, output_check, started
from utils.recipes import Recipe
from utils.stop_signals import Stopped


def dry_run_lines(recipe: Recipe, dataset: str, steps: list[Step], problems: list[str], done: dict[str, Any],
                  rerun: bool) -> list[str]:
    """What this call would run, as the lines of a script: a step it would skip is a comment, a run it would continue
    has --is_continue (steps after the first that runs all run, as in ``run_steps``)."""
    lines = [f"# reproduce.py {recipe.name}: {recipe.title}, dataset {dataset}"]
    lines += [f"# WARNING: {problem}" for problem in problems]
    upstream_ran = False
    for step in steps:
        previous = done.get(step.name, {})
        if kept(step, previous, rerun, upstream_ran):
            lines.append(f"# done, skipped: {command(step)}")
            changed = output_check(step, previous).changed
            if changed:
                upstream_ran = True
                lines.append(f"# {step.name}: {changed}")
        else:
            upstream_ran = True
            lines.append(shlex.join(launched(step)))
    return lines


def run_stage(argv: list[str]) -> int:
    """Runs one stage's command as a separate process; its exit status.

    The stage runs in a process group of its own, so that Ctrl-C in the terminal (SIGINT to the foreground group)
    reaches this process alone: the stage is then stopped with SIGTERM, which the scripts take as a stop (their
    clean-up runs, a training keeps its last checkpoint), rather than dying of a KeyboardInterrupt traceback. A stop
    goes to the stage's whole group, not only to the process started here: under a launcher (``accelerate launch``
    with one process waits for its worker without passing a SIGTERM on) the worker would otherwise go on training,
    orphaned, after this call ended.
    """
    with subprocess.Popen(argv, env={**os.environ, "PYTHONUNBUFFERED": "1"}, process_group=0) as stage:
        try:
            return stage.wait()
        except KeyboardInterrupt:
            # Further Ctrl-Cs while the stage stops would only interrupt the wait for it: the call is ending.
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            _signal_group(stage, signal.SIGTERM)
            stage.wait()
            raise
        except Stopped as stop:
            # The stage stops the same way (its clean-up runs); one that had the signal already (a scheduler that
            # signals every process of the job) ignores the repeat.
            _signal_group(stage, stop.signum)
            stage.wait()
            raise


def _signal_group(stage: subprocess.Popen, signum: int) -> None:
    """Sends ``signum`` to every process of the stage's group (the stage leads it): a launcher and its workers."""
    try:
        os.killpg(stage.pid, signum)
    except ProcessLookupError:
        pass  # the stage and all it started have ended already


def run_steps(steps: list[Step], state: dict[str, Any], state_path: str,
              rerun: bool) -> tuple[list[dict[str, Any]], tuple[Step, int] | None]:
    """Runs the steps in order until one fails, recording each finished one in ``state.json`` with its output's
    SHA-256; a record per step (name, command, seconds, status) and the failed step with its exit status, if one
    failed."""
    done = state["stages"]
    records: list[dict[str, Any]] = []
    failure = None
    # Each stage reads what the ones before it made: once one has run in this call, a later one recorded as finished
    # is run again (a training continues, an evaluation reuses its replications of the same weights) rather than
    # reporting what it made from an earlier stage's former output.
    upstream_ran = False
    for at, step in enumerate(steps):
        record = {"name": step.name, "command": command(step), "seconds": None}
        records.append(record)
        previous = done.get(step.name, {})
        if kept(step, previous, rerun, upstream_ran):
            record["status"], record["seconds"] = "skipped (done)", previous.get("seconds")
            print(f"=== {step.name}: done, skipped ({step.done_file})", flush=True)
            # The report describes the files on disk: an output that is not the one recorded (a run trained further
            # by hand) makes what the steps after it made stale. Their records go in the same write as the new SHA-256,
            # so a call stopped before they run again still runs them next time.
            check = output_check(step, previous)
            if check.changed:
                upstream_ran = True
                print(f"=== {step.name}: {check.changed}", flush=True)
                for later in steps[at + 1:]:
                    done.pop(later.name, None)
            if previous.get("status") != "done" or check.sha256 != previous.get("sha256"):
                # A first record for data or an evaluator found in place, so that a later change to it is noticed.
                entry = previous if previous.get("status") == "done" else {
                    "command": record["command"], "status": "done", "seconds": None}
                done[step.name] = {**entry, "output": check.path, "sha256": check.sha256}
                write_report_json(state, state_path)
            continue
        upstream_ran = True
        # A stage that starts is no longer finished, however this run of it ends (a failure, a kill): the next call
        # must continue it rather than skip it on an earlier call's record. A training's record keeps the command it
        # starts with, which its run is trained with from now on.
        begun = started(step)
        if step.training:
            done[step.name] = begun
            write_report_json(state, state_path)
        elif done.pop(step.name, None) is not None:
            write_report_json(state, state_path)
        argv = launched(step)
        print(f"=== {step.name}: {shlex.join(argv)}", flush=True)
        start = time.perf_counter()
        code = run_stage(argv)
        record["seconds"] = time.perf_counter() - start
        if code != 0:
            record["status"] = f"failed (exit {code})"
            failure = (step, code)
            break
        record["status"] = "done"
        done[step.name] = finished(step, record["seconds"], begun)
        write_report_json(state, state_path)
    for step in steps[len(records):]:
        records.append({"name": step.name, "command": command(step), "seconds": None, "status": "not run"})
    return records, failure
