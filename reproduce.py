"""Reproduce a published row: run every stage of its recipe, then compare the measured numbers with the paper's.

Examples::

    python reproduce.py --list                               # the recipes, their datasets and published numbers
    python reproduce.py momask --dataset_name t2m --dry_run  # what it would run, one per line (a bash script)
    python reproduce.py momask --dataset_name kit            # train RVQ, both transformers, evaluate, report
    python reproduce.py mardm_sit_xl --quick                 # the same chain with tiny models on synthetic data
    python reproduce.py fsq_mardm --launch "accelerate launch --multi_gpu --num_processes 8"

A recipe (``utils/recipes.py``) is the paper's setting written down: the shipped ``options/configs`` presets, the
checkpoint its evaluation reads, its sampling steps, guidance and evaluation seed. Each stage is the script a user would
type, run as a separate process from the current directory. A training stage whose run already has ``model/latest.tar``
continues it with ``--is_continue`` (a finished run is left as it is), an evaluation reuses its finished replications,
and a stage recorded as finished with the same settings in ``state.json`` (the script, its flags and the values of its
``--config`` preset: not the interpreter or launcher, nor how a path is spelled) is skipped unless a stage before it ran
in the same call (a run deleted to train it afresh is evaluated afresh too) or left another output than the one whose
SHA-256 was recorded (a run trained further by hand is kept, and what follows it runs again: a training after it whose
run was trained on the former version is refused before anything runs, to be moved or deleted and trained afresh on the
new one), so after a failure or a kill the same command goes on where it stopped (``--rerun`` runs the recipe's stages
again even when recorded as finished: training continues its run and evaluation reuses its replications, so only what is
missing is computed; the data and the evaluator, once present, are kept). A run that would be continued with other flags
or preset values than it was started with (a recipe or its preset edited since) is refused before anything runs. Stages
shared by recipes (MARDM's AE under SiT and DDPM, MoMask's RVQ) are trained once. ``--launch`` prefixes the training
stages (``accelerate launch ...``, ``torchrun ...``); evaluations run in one process.

``--quick`` runs the recipe's tiny counterpart on the synthetic dataset (made under ``dataset/Synthetic`` if it is
missing, with a small evaluator trained for it): a few minutes on a CPU, to check the chain before a paper run. A paper
run checks first, and lists together, what it needs and lacks: the dataset's files, the official evaluator and the GloVe
vectors it reads, the CLIP weights and vocabulary (README, "Evaluator and text-encoder files"). An evaluator trained
with ``train_evaluator.py`` gives numbers that are not comparable with the papers', so it is used only when
``--evaluator_dir`` names it (one in the default folder, where ``train_evaluator.py`` writes, is refused).

Writes ``<checkpoints_dir>/<dataset>/reproduce/<recipe>/``: ``report.md`` and ``report.json`` (the commands, their
times, the environment and git commit, and per evaluation the evaluator that scored it and the measured mean ± 95% CI
beside each published number with its source, the difference and whether the published value lies inside the interval;
unverified published numbers are marked), ``<stage>.json`` (each evaluation's full result) and ``state.json``.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from typing import Any

from utils.cli import run_script
from utils.paths import project_path
from utils.recipe_plan import Step, changed_runs, command, output_folder, plan, preflight, read_state, stale_parents
from utils.recipe_runner import dry_run_lines, run_steps
from utils.recipes import QUICK_DATA_ROOT, QUICK_DATASET, RECIPES, Recipe, get_recipe, list_recipes
from utils.reproduce_report import build_report, format_markdown, read_result, write_report
from utils.stop_signals import Stopped


def get_parser() -> argparse.ArgumentParser:
    """The flags of ``reproduce.py``."""
    parser = argparse.ArgumentParser(
        description="Run a paper recipe's stages (train, evaluate) and compare the numbers with the published ones.",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("recipe", nargs="?", default=None, help=f"one of {', '.join(sorted(RECIPES))}")
    parser.add_argument("--list", action="store_true", help="list the recipes with their published numbers and exit")
    parser.add_argument("--dataset_name", type=str, default=None,
                        help="a dataset the recipe was published on (default: its first; --quick: synthetic)")
    parser.add_argument("--quick", action="store_true",
                        help="tiny models on the synthetic dataset: check the chain in minutes on a CPU")
    parser.add_argument("--dry_run", action="store_true",
                        help="print the commands this call would run (shell-quoted; a step it would skip as a "
                             "comment, a run it would continue with --is_continue) and exit")
    parser.add_argument("--rerun", action="store_true",
                        help="run the recipe's stages again even when recorded as finished (a training run "
                             "continues, an evaluation reuses its finished replications; the data and the "
                             "evaluator, once present, are kept); delete a run or its eval/ to start it afresh")
    parser.add_argument("--checkpoints_dir", type=str, default=project_path("checkpoints"), help="root folder of runs")
    parser.add_argument("--data_root", type=str, default=None,
                        help=f"folder of the dataset (default: the dataset's own; --quick: {QUICK_DATA_ROOT})")
    parser.add_argument("--evaluator_dir", type=str, default=None,
                        help="evaluator for every evaluation and for the FID validation of the training stages that "
                             "run one (default <checkpoints_dir>/<dataset>/text_mot_match; a paper run uses one "
                             "trained with train_evaluator.py only when this names it)")
    parser.add_argument("--python", type=str, default=sys.executable, help="interpreter that runs the stages")
    parser.add_argument("--launch", type=str, default=None,
                        help="command prefix of the training stages, e.g. \"accelerate launch --multi_gpu "
                             "--num_processes 8\" (the script path follows it)")
    return parser


def _dataset(args: argparse.Namespace, recipe: Recipe) -> str:
    """The dataset this call runs on, refused where the recipe was not published on it (``--quick``: the synthetic
    one, whose folder becomes ``args.data_root`` when none is given)."""
    if args.quick:
        dataset = args.dataset_name or QUICK_DATASET
        if dataset != QUICK_DATASET:
            raise SystemExit(f"--quick runs on the synthetic dataset, not --dataset_name {dataset}")
        args.data_root = args.data_root or project_path(QUICK_DATA_ROOT)
        return dataset
    dataset = args.dataset_name or recipe.datasets[0]
    if dataset not in recipe.datasets:
        raise SystemExit(f"recipe {recipe.name} was published on {', '.join(recipe.datasets)}, not "
                         f"--dataset_name {dataset} (--quick runs it on synthetic data)")
    return dataset


def _report(recipe: Recipe, dataset: str, quick: bool, steps: list[Step], records: list[dict[str, Any]],
            out: str) -> dict[str, Any]:
    """Writes and prints the report of this call's records."""
    # Only evaluations that ran (or were confirmed done) in this invocation: a result file left by an earlier
    # invocation of other settings must not be reported as this one's.
    finished = {r["name"] for r in records if r["status"] in ("done", "skipped (done)")}
    results = {s.name: read_result(s.done_file) for s in steps if s.evaluation and s.name in finished}
    report = build_report(recipe, dataset, quick, records, results)
    json_path, md_path = write_report(report, out)
    print(format_markdown(report))
    print(f"wrote {md_path} and {json_path}")
    return report


def run_recipe(args: argparse.Namespace) -> dict[str, Any] | None:
    """Plans the recipe, then prints the plan (``--dry_run``) or runs it and writes the report; the report, or None
    for a dry run. A failed stage stops the chain after the report is written."""
    # ---------------------------------------------------------------------------------------------------------------
    # plan
    # ---------------------------------------------------------------------------------------------------------------
    recipe = get_recipe(args.recipe)
    dataset = _dataset(args, recipe)
    steps = plan(args, recipe, dataset)
    problems = preflight(args, recipe, dataset, steps)
    out = output_folder(args, recipe, dataset)
    state_path = os.path.join(out, "state.json")
    state = read_state(state_path)
    done = state.setdefault("stages", {})
    problems += changed_runs(steps, done, state_path) + stale_parents(steps)
    # ---------------------------------------------------------------------------------------------------------------
    # dry run
    # ---------------------------------------------------------------------------------------------------------------
    if args.dry_run:
        print("\n".join(dry_run_lines(recipe, dataset, steps, problems, done, args.rerun)))
        return None
    if problems:
        raise SystemExit(f"the {'quick' if args.quick else 'paper'} run cannot start:\n"
                         + "\n".join(f"- {p}" for p in problems))
    # ---------------------------------------------------------------------------------------------------------------
    # run each stage
    # ---------------------------------------------------------------------------------------------------------------
    records, failure = run_steps(steps, state, state_path, args.rerun)
    # ---------------------------------------------------------------------------------------------------------------
    # report
    # ---------------------------------------------------------------------------------------------------------------
    report = _report(recipe, dataset, args.quick, steps, records, out)
    if failure is not None:
        step, code = failure
        raise SystemExit(f"stage {step.name} failed (exit status {code}): {command(step)}\nFix the cause and run the "
                         f"same reproduce.py command again: finished stages are skipped and runs continue")
    return report


def main(argv: list[str] | None = None) -> dict[str, Any] | None:
    """``--list`` prints the recipes; otherwise runs the named one (``run_recipe``)."""
    args = get_parser().parse_args(argv)
    if args.list:
        print(list_recipes())
        return None
    if not args.recipe:
        raise SystemExit(f"name a recipe ({', '.join(sorted(RECIPES))}) or pass --list")
    try:
        return run_recipe(args)
    except KeyboardInterrupt:
        # Ctrl-C ends the call as SIGTERM does: one line saying how to go on, exit status 130 (the running stage was
        # stopped by ``utils.recipe_runner.run_stage``).
        raise Stopped(signal.SIGINT) from None


if __name__ == "__main__":
    run_script(main, resume="rerun the same command to go on where it stopped")
