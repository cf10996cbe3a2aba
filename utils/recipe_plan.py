"""What ``reproduce.py`` runs for a recipe, and what it has already run.

``plan`` turns a recipe (``utils/recipes.py``) into the commands a user would type, one ``Step`` each, in order;
``preflight`` lists what a paper run needs and lacks before anything trains. ``state.json`` in the recipe's output
folder records each stage finished with its command and the SHA-256 of its output, and each training started with its
command: ``kept`` says whether a step is skipped on that record (or on its output alone), ``output_check`` whether the
output of a skipped step is still the file recorded (a run trained further outside ``reproduce.py`` is not, and what the
steps after it made is then stale), ``changed_runs`` which runs would be continued with other settings than recorded,
``stale_parents`` which were trained on another version of their tokenizer than its file holds now, ``launched`` whether
a training continues its run with ``--is_continue``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shlex
from dataclasses import dataclass, replace
from typing import Any

from options.config import ConfigError, cast_value, config_to_dict, load_config, resolve_config_path
from options.eval_generator_options import get_evaluation_generator_parser, get_sample_parser
from options.eval_options import get_evaluation_ae_parser, get_train_evaluator_parser
from options.generator_options import get_train_length_estimator_parser, get_train_mardm_parser
from options.token_generator_options import get_train_res_transformer_parser, get_train_t2m_transformer_parser
from options.tokenizer_options import get_train_ae_parser, get_train_vq_parser
from utils.assets import MISSING, check_clip, check_dataset, check_evaluator
from utils.checkpoint import CheckpointError, file_sha256, load_checkpoint
from utils.checkpoint_users import find_kept_copy, kept_copy_path
from utils.dataset_specs import DATASETS, get_dataset_spec
from utils.evaluator import resolve_evaluator_path
from utils.paths import DEFAULT_CLIP_PATH, project_path
from utils.recipes import EVALUATOR_RUN, Recipe, Stage
from utils.synthetic import settings_mismatch

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
QUICK_MOTIONS = 400
QUICK_EVALUATOR = ("--sizes", "small", "--max_iters", "200", "--pretrain_iters", "60", "--batch_size", "32",
                   "--num_workers", "0", "--eval_every", "50")


@dataclass
class Step:
    """One command of a planned reproduction. ``done_file``: the file whose presence means the step's output
    exists (data statistics, the evaluator's final validation, a run's ``latest.tar``, an evaluation's result).
    ``resume_files``: for a training step, the ``latest.tar`` files of its runs, any of which means the step is
    continued with ``--is_continue`` (default: ``done_file``). ``placed_file``: an output that counts as done when no
    run of the step is in progress (no ``resume_files``), such as an evaluator whose files were put in place by
    hand. ``script``: the base name of the script ``argv`` runs."""

    name: str
    argv: list[str]
    done_file: str
    script: str = ""
    training: bool = False
    evaluation: bool = False
    always_skip_when_done: bool = False  # data and evaluator: never rerun once present
    resume_files: tuple[str, ...] = ()
    placed_file: str | None = None

    def output_present(self) -> bool:
        """Whether the step's output is there: ``done_file``, or ``placed_file`` with no run to continue."""
        if os.path.isfile(self.done_file):
            return True
        return bool(self.placed_file) and os.path.isfile(self.placed_file) and not self.resumes()

    def output_file(self) -> str | None:
        """The file ``state.json`` identifies the step's output by: ``placed_file`` where it is there (the evaluator's
        weights, which its final validation's result does not identify), else ``done_file`` (None when neither is)."""
        return next((p for p in (self.placed_file, self.done_file) if p and os.path.isfile(p)), None)

    def resumes(self) -> bool:
        """Whether a run of this step is there to continue."""
        return self.run_latest() is not None

    def run_latest(self) -> str | None:
        """The ``latest.tar`` of the run of this step there is to continue, if any."""
        return next((p for p in self.resume_files or (self.done_file,) if os.path.isfile(p)), None)


def _script(name: str) -> str:
    """The script's path as the user would type it: relative when the repository is the working directory."""
    path = os.path.join(REPO, name)
    relative = os.path.relpath(path)
    return relative if not relative.startswith("..") else path


def output_folder(args: argparse.Namespace, recipe: Recipe, dataset: str) -> str:
    """``<checkpoints_dir>/<dataset>/reproduce/<recipe>``: the report, each evaluation's result and ``state.json``."""
    return os.path.join(args.checkpoints_dir, dataset, "reproduce", recipe.name)


def plan(args: argparse.Namespace, recipe: Recipe, dataset: str) -> list[Step]:
    """The commands of the recipe on ``dataset``, in order; quick mode adds the synthetic data and its evaluator."""
    runs = os.path.join(args.checkpoints_dir, dataset)
    names = {s.name: s.run for s in recipe.stages}
    names["runs"] = runs
    names["clip_path"] = project_path(DEFAULT_CLIP_PATH)
    common = ["--dataset_name", dataset, "--checkpoints_dir", args.checkpoints_dir]
    if args.data_root:
        common += ["--data_root", args.data_root]
    launch = shlex.split(args.launch) if args.launch else [args.python]
    out = output_folder(args, recipe, dataset)
    steps = []
    if args.quick:
        # A finished dataset there is kept, whatever it was built with: say so when it is not the quick one.
        mismatch = settings_mismatch(args.data_root, QUICK_MOTIONS, 0)
        if mismatch:
            logging.getLogger("reproduce").warning("used as it is, so the results are not those of the quick "
                                                   "recipe's data: %s", mismatch)
        steps.append(Step("data", [args.python, _script("prepare_data.py"), "synthetic", "--out", args.data_root,
                                   "--num_motions", str(QUICK_MOTIONS), "--seed", "0"],
                          os.path.join(args.data_root, "Mean.npy"), "prepare_data.py", always_skip_when_done=True))
        if not args.evaluator_dir:
            # finest.tar is written at every better validation, so it is there long before the training ends: the
            # evaluator is done once train_evaluator.py has written its final validation. Its first stage (the
            # movement autoencoder) is a run of its own, which a run stopped before the second stage saved has alone.
            evaluator = os.path.join(runs, EVALUATOR_RUN)
            steps.append(Step("evaluator", [*launch, _script("train_evaluator.py"), *common, *QUICK_EVALUATOR],
                              os.path.join(evaluator, "eval", "evaluator_val.json"), "train_evaluator.py",
                              training=True, always_skip_when_done=True,
                              resume_files=tuple(os.path.join(run, "model", "latest.tar")
                                                 for run in (evaluator, f"{evaluator}_decomp")),
                              placed_file=os.path.join(evaluator, "model", "finest.tar")))
    for stage in recipe.stages:
        steps.append(_stage_step(stage, args, dataset, common, names, launch, out))
    return steps


def _stage_step(stage: Stage, args: argparse.Namespace, dataset: str, common: list[str], names: dict[str, str],
                launch: list[str], out: str) -> Step:
    """The command of one recipe stage: an evaluation writes its result into ``out``, a training runs under
    ``launch``; ``names`` fills the ``{stage}``, ``{runs}`` and ``{clip_path}`` placeholders of its flags."""
    raw = stage.quick_args if args.quick else (*stage.args, *stage.dataset_args.get(dataset, ()))
    try:
        flags = [a.format(**names) for a in raw]
    except KeyError as e:
        raise ValueError(f"recipe stage {stage.name!r}: {e} names no stage of the recipe") from None
    run_dir = os.path.join(names["runs"], stage.run)
    evaluator = ["--evaluator_dir", args.evaluator_dir] if args.evaluator_dir else []
    if stage.evaluation:
        result = os.path.join(out, f"{stage.name}.json")
        argv = [args.python, _script(stage.script), *common, "--name", stage.run, *flags, *evaluator,
                "--is_continue", "--report_json", result]
        return Step(stage.name, argv, result, stage.script, evaluation=True)
    # A training that validates by FID picks its best checkpoint under the evaluator the evaluations use.
    argv = [*launch, _script(stage.script), *common, "--name", stage.run, *flags,
            *(evaluator if "--need_evaluation" in flags else [])]
    return Step(stage.name, argv, os.path.join(run_dir, "model", "latest.tar"), stage.script, training=True)


def command(step: Step) -> str:
    """The step's command as recorded in ``state.json`` and the report: shell-quoted, without ``--is_continue``."""
    return shlex.join(step.argv)


def kept(step: Step, previous: dict[str, Any], rerun: bool, upstream_ran: bool) -> bool:
    """Whether ``step`` is skipped: its output is there and it is data or the evaluator, or it was recorded as
    finished with the same settings (``previous``, its entry in ``state.json``; see ``changed_flags``), no step before
    it ran in this call and ``--rerun`` was not given."""
    if not step.output_present():
        return False
    return step.always_skip_when_done or (not rerun and not upstream_ran and previous.get("status") == "done"
                                          and not changed_flags(step, previous))


def _script_flags(argv: list[str], script: str) -> dict[str, tuple[str, ...]] | None:
    """The flags after the script ``script`` (a base name) in ``argv``, each with its values (the last of a repeated
    flag, as argparse takes it; positional arguments under ``""``), without ``--is_continue``; None when ``argv``
    does not run ``script``."""
    at = next((i for i, token in enumerate(argv) if os.path.basename(token) == script), None)
    if at is None:
        return None
    flags: dict[str, tuple[str, ...]] = {}
    flag = ""
    for token in argv[at + 1:]:
        if token.startswith("--"):
            flag, _, value = token.partition("=")
            flags[flag] = (value,) if value else ()
        else:
            flags[flag] = (*flags.get(flag, ()), token)
    flags.pop("--is_continue", None)
    # A folder left to its default is the folder named explicitly: the scripts' defaults.
    checkpoints, dataset = flags.get("--checkpoints_dir", ("",))[-1], flags.get("--dataset_name", ("",))[-1]
    if dataset and "--evaluator_dir" not in flags and checkpoints:
        flags["--evaluator_dir"] = (os.path.join(checkpoints, dataset, EVALUATOR_RUN),)
    if dataset in DATASETS and "--data_root" not in flags:
        flags["--data_root"] = (get_dataset_spec(dataset).root,)
    return flags


def _same_value(was: str, was_cwd: str | None, now: str) -> bool:
    """Whether a flag's value recorded by a call run in ``was_cwd`` is ``now``'s: the same text, or the same path
    spelled otherwise (relative to another working directory, through a link). A record without its working directory
    (``was_cwd`` None: a ``state.json`` of an earlier version) read its relative paths from a folder not known: one
    that exists here is read from here (the call run again in the same folder), and one that does not is the same as
    any path that ends with it (``checkpoints`` as ``/work/checkpoints``, the call run from another folder). The same
    text is the same value, unless it is a relative path that exists both there and here, as two folders (``--data_root
    data`` in two working directories)."""
    if was == now:
        there = os.path.join(was_cwd or "", was)
        return was_cwd is None or os.path.isabs(was) or not (os.path.exists(there) and os.path.exists(now)) or \
            os.path.realpath(there) == os.path.realpath(now)
    if was_cwd is not None or os.path.isabs(was) or os.path.exists(was):
        return os.path.realpath(os.path.join(was_cwd or "", was)) == os.path.realpath(now)
    tail = os.path.normpath(was).split(os.sep)
    while tail and tail[0] in (os.curdir, os.pardir):
        tail.pop(0)
    return not tail or any(path.split(os.sep)[-len(tail):] == tail
                           for path in (os.path.abspath(now), os.path.realpath(now)))


def _same_flag(flag: str, was: str, was_cwd: str | None, now: str) -> bool:
    """``_same_value`` of ``flag``'s values, an ``--evaluator_dir`` compared by the file the scripts read (a folder and
    its ``model/finest.tar`` name the same evaluator)."""
    if flag == "--evaluator_dir":
        was, now = _evaluator_file(was, was_cwd), _evaluator_file(now, None)
    return _same_value(was, was_cwd, now)


def _evaluator_file(path: str, cwd: str | None) -> str:
    """The evaluator checkpoint ``--evaluator_dir path`` given in ``cwd`` (None: this one) names, as the scripts
    resolve it; ``path`` itself when no file is there."""
    try:
        return resolve_evaluator_path(os.path.join(cwd or "", path))
    except CheckpointError:
        return path


def changed_flags(step: Step, previous: dict[str, Any]) -> list[str]:
    """The flags of the command recorded in ``previous`` (the step's entry in ``state.json``) that differ from the
    planned command's, each as ``--flag old -> new``, then the keys of its ``--config`` preset edited since
    (``_changed_preset``): what the stage runs with. The interpreter and launcher before the script (``--python``,
    ``--launch``) do not count, nor the spelling of a path; a recorded command that does not run the step's script
    differs as a whole."""
    if not previous.get("command"):
        return []
    now = _script_flags(step.argv, step.script)
    was = _script_flags(shlex.split(previous["command"]), step.script)
    if was is None or now is None:
        return [f"{previous['command']} -> {command(step)}"]
    was_cwd = previous.get("cwd")

    def shown(flag: str, values: tuple[str, ...] | None, cwd: str | None) -> str:
        # The same text naming two folders is shown as the paths it names, from the two working directories.
        if values is not None and was.get(flag) == now.get(flag):
            values = tuple(os.path.join(cwd or "", value) for value in values)
        return "(not given)" if values is None else " ".join(values) or "(given)"

    return [f"{flag} {shown(flag, was.get(flag), was_cwd)} -> {shown(flag, now.get(flag), os.getcwd())}"
            for flag in {**was, **now}
            if was.get(flag) is None or now.get(flag) is None or len(was[flag]) != len(now[flag])
            or not all(_same_flag(flag, a, was_cwd, b) for a, b in zip(was[flag], now[flag]))] + _changed_preset(
        step, previous)


def _preset(step: Step) -> dict[str, Any] | None:
    """The ``--config`` preset of ``step``'s command as its script reads it (``{"file", "values"}``: the file found
    as ``resolve_config_path`` finds it, and its keys with their values); None without one, or for one that cannot be
    read (the stage names the error)."""
    config = (_script_flags(step.argv, step.script) or {}).get("--config")
    if not config:
        return None
    path = resolve_config_path(config[-1])
    try:
        return {"file": path, "values": config_to_dict(load_config(path))}
    except ConfigError:
        return None


def _changed_preset(step: Step, previous: dict[str, Any]) -> list[str]:
    """The keys of the step's preset whose values differ from those recorded in ``previous``, each as ``key old ->
    new in <file>``: a preset edited since changes what the stage runs with as a flag does. A record without the
    preset's values (a ``state.json`` of an earlier version) cannot tell, nor a command without a preset now (the
    ``--config`` flag's own change says so)."""
    was, now = previous.get("preset"), _preset(step)
    if not isinstance(was, dict) or not isinstance(was.get("values"), dict) or now is None:
        return []

    # A key the command sets by its own flag, then or now, is not read from the preset (the flag's change says so).
    typed = {flag[2:] for argv in (step.argv, shlex.split(previous.get("command") or ""))
             for flag in _script_flags(argv, step.script) or {} if flag.startswith("--")}
    old, new = was["values"], now["values"]
    actions = _script_actions(step.script)

    def read(values: dict[str, Any], key: str) -> Any:
        """The value as the script reads it (``1e-4``, which PyYAML leaves as text, is 0.0001); as written when the
        script would refuse it (the stage names the error)."""
        try:
            return cast_value(values[key], actions[key], key) if key in actions else values[key]
        except ConfigError:
            return values[key]

    def shown(values: dict[str, Any], key: str) -> str:
        return "(not set)" if key not in values else json.dumps(read(values, key))

    return [f"{key} {shown(old, key)} -> {shown(new, key)} in {now['file']}" for key in {**old, **new}
            if key not in typed and (key not in old or key not in new or read(old, key) != read(new, key))]


def _script_actions(script: str) -> dict[str, argparse.Action]:
    """The flags of a recipe's ``script`` (a base name) by destination, as its parser reads a preset's keys (empty
    for a script without presets)."""
    parsers = {"train_AE.py": get_train_ae_parser, "train_vq.py": get_train_vq_parser,
               "train_MARDM.py": get_train_mardm_parser, "train_length_estimator.py": get_train_length_estimator_parser,
               "train_t2m_transformer.py": get_train_t2m_transformer_parser,
               "train_res_transformer.py": get_train_res_transformer_parser,
               "train_evaluator.py": get_train_evaluator_parser, "evaluation_AE.py": get_evaluation_ae_parser,
               "evaluation_MARDM.py": get_evaluation_generator_parser, "sample.py": get_sample_parser}
    return {a.dest: a for a in parsers[script]()._actions} if script in parsers else {}


@dataclass(frozen=True)
class OutputCheck:
    """The output of a step skipped as done, against its record in ``state.json``: its file and SHA-256 now, and
    ``changed``, a line saying why the steps after it must run again (None when the record matches, or when no call
    recorded the step: data or an evaluator found in place)."""

    path: str | None
    sha256: str | None
    changed: str | None


def output_check(step: Step, previous: dict[str, Any]) -> OutputCheck:
    """Whether the output of ``step``, skipped as done, is the file recorded in ``previous`` (its entry in
    ``state.json``) when it finished. A training continued outside ``reproduce.py`` (``--is_continue`` by hand) has
    another ``latest.tar``, and the evaluations after it would report the former weights; a record without a SHA-256
    (written before they were recorded) cannot tell, so it counts as changed, once. A step recorded as started only
    (an evaluator finished by hand) has no output to compare."""
    path = step.output_file()
    sha256 = file_sha256(path) if path else None
    recorded = previous.get("sha256")
    if previous.get("status") != "done" or recorded == sha256:
        changed = None
    elif recorded is None:
        changed = (f"{path}: no SHA-256 was recorded when the step finished (a state.json of an earlier version), so "
                   f"it may have changed since: the steps after it run again")
    else:
        changed = (f"{path} changed since the step finished (SHA-256 {recorded[:12]}... now {str(sha256)[:12]}...): "
                   f"the steps after it run again")
    return OutputCheck(path, sha256, changed)


def finished(step: Step, seconds: float | None, begun: dict[str, Any] | None = None) -> dict[str, Any]:
    """The ``state.json`` entry of ``step`` once finished: its command (and the working directory its relative paths
    are read from) and preset values as ``begun`` (``started``'s entry, taken when it started: a preset edited while
    it ran was not read) has them, time, output file and the output's SHA-256."""
    path = step.output_file()
    return {**(begun or started(step)), "status": "done", "seconds": seconds, "output": path,
            "sha256": file_sha256(path) if path else None}


def started(step: Step) -> dict[str, Any]:
    """The ``state.json`` entry of a training ``step`` that starts: the settings its run is trained with from now on
    (its command, and the values of its ``--config`` preset), which a later call may not continue it with others
    (``changed_runs``)."""
    preset = _preset(step)
    return {"command": command(step), "status": "started", "cwd": os.getcwd(), **({"preset": preset} if preset else {})}


def changed_runs(steps: list[Step], done: dict[str, Any], state_path: str) -> list[str]:
    """The training runs this call would continue with other settings (``changed_flags``) than those recorded in
    ``state_path`` (``done``, its stages) when they started or finished, one line each: continuing would report the
    weights trained with the former settings under the new command, and the engine keeps a finished run as it is."""
    problems = []
    for step in steps:
        previous = done.get(step.name) or {}
        if not step.training or (step.always_skip_when_done and step.output_present()):
            continue
        latest = step.run_latest()
        changed = changed_flags(step, previous) if latest else []
        if changed:
            run = os.path.dirname(os.path.dirname(latest))
            was = "trained" if previous.get("status") == "done" else "started"
            problems.append(f"{run}: stage {step.name} was {was} with other settings than this call's "
                            f"({'; '.join(changed)}; recorded in {state_path}), and continuing it would keep the "
                            f"weights trained with the former ones under the new command: move or delete {run} to "
                            f"train it afresh with these settings, or pass another --checkpoints_dir")
    return problems


def launched(step: Step) -> list[str]:
    """The command ``step`` runs with: a training whose run is there continues it."""
    return [*step.argv, "--is_continue"] if step.training and step.resumes() else list(step.argv)


def stale_parents(steps: list[Step]) -> list[str]:
    """The training runs this call would continue that were trained on another version of their parent (the tokenizer
    file of a generator or transformer, recorded with its SHA-256 in the run's ``latest.tar``) than the file holds
    now, one line each: the tokenizer was trained further after them, and a run cannot go on on another version of its
    tokenizer (``utils.generator_resume``). The engine keeps the version such a run was trained on
    (``utils.checkpoint_users``), so the run still loads once moved aside."""
    problems = []
    hashes: dict[str, str] = {}
    for step in steps:
        latest = step.run_latest()
        if not step.training or latest is None or (step.always_skip_when_done and step.output_present()):
            continue
        try:
            parent = load_checkpoint(latest, mmap=True).get("parent")  # the weights are not read
        except (CheckpointError, OSError):
            continue  # the stage says what is wrong with its run when it starts
        if not (isinstance(parent, dict) and parent.get("path") and parent.get("sha256")):
            continue
        path, was = str(parent["path"]), str(parent["sha256"])
        if not os.path.isfile(path):
            continue  # the stage names the missing file
        if path not in hashes:
            hashes[path] = file_sha256(path)
        if hashes[path] == was:
            continue
        run = os.path.dirname(os.path.dirname(latest))
        kept = find_kept_copy(path, was)
        loads = (f"the version it was trained on is kept as {kept}, so the run still loads wherever it is moved"
                 if kept else f"no copy of the version it was trained on was kept ({kept_copy_path(path, was)}), so "
                              f"the run no longer loads with its tokenizer")
        problems.append(f"{run}: stage {step.name} was trained on {path} with SHA-256 {was[:12]}..., but that file "
                        f"is another version now (SHA-256 {hashes[path][:12]}...: trained further since), and the run "
                        f"cannot go on on another version of its tokenizer: move or delete {run} to train it afresh "
                        f"on the new version ({loads})")
    return problems


def read_state(path: str) -> dict[str, Any]:
    """``state.json`` as written (``{"stages": {name: {"command", "status", "cwd", "preset", "seconds", "output",
    "sha256"}}}``: ``preset`` the file and values of the command's ``--config``, ``status`` "done", or "started" for a
    training that started and did not finish), or ``{}`` when it is missing or cannot be read. A damaged part is
    dropped as the whole would be: a ``stages`` that is not an object, a stage's record that is not one."""
    if not os.path.isfile(path):
        return {}
    try:
        with open(path) as f:
            state = json.load(f)
    except (OSError, ValueError):
        return {}  # a damaged state only costs reruns: every stage checks its own outputs
    if not isinstance(state, dict):
        return {}
    stages = state.get("stages", {})
    if not isinstance(stages, dict):
        stages = {}
    state["stages"] = {name: record for name, record in stages.items() if isinstance(record, dict)}
    return state


def preflight(args: argparse.Namespace, recipe: Recipe, dataset: str, steps: list[Step]) -> list[str]:
    """What a paper run needs and does not have, all at once, before anything trains: the dataset's files, the
    official evaluator (and the GloVe vectors it reads), the CLIP weights and vocabulary the generator stages name
    (``utils.assets``; a dry run reads the evaluator's file, to tell one ``train_evaluator.py`` wrote, but does not
    load the evaluator)."""
    if args.quick:
        return []
    checks = check_dataset(dataset, args.data_root)
    evaluator = args.evaluator_dir or os.path.join(args.checkpoints_dir, dataset, EVALUATOR_RUN)
    # One train_evaluator.py wrote at the default place (where it trains one for --dataset_name) is not taken for the
    # official evaluator the published numbers were measured with: it is used only when --evaluator_dir names it.
    evaluator_checks = check_evaluator(evaluator, dataset, args.data_root, load=not args.dry_run,
                                       official=not args.evaluator_dir)
    if evaluator_checks[0].state == MISSING:
        evaluator_checks[0] = replace(evaluator_checks[0], detail=evaluator_checks[0].detail + "; the published "
                                      "numbers were measured with the official one: pass another with --evaluator_dir "
                                      "to use it anyway")
    checks += evaluator_checks
    for path in sorted({step.argv[step.argv.index("--clip_path") + 1] for step in steps
                        if "--clip_path" in step.argv}):
        checks += check_clip(path)
    return [c.problem for c in checks if c.problem]
