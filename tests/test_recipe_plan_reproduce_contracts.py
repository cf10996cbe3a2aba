"""reproduce.py's planning and records: the quick steps it adds, how recorded commands are read back and compared, the
lines it reports, the dataset a call runs on and how a call ends on Ctrl-C."""

from __future__ import annotations

import hashlib
import json
import os
import shlex
import signal
from pathlib import Path

import pytest
from reproduce_helpers import two_stage_recipe
from test_recipe_contracts import _args, _by_name, _vq_step

import reproduce
from utils import recipe_plan
from utils.assets import AssetCheck
from utils.checkpoint import save_checkpoint
from utils.recipe_plan import (
    EVALUATOR_RUN,
    REPO,
    Step,
    _same_value,
    _script_flags,
    changed_flags,
    changed_runs,
    command,
    launched,
    output_check,
    output_folder,
    plan,
    stale_parents,
    started,
)
from utils.recipes import Published, Recipe, Stage, get_recipe, list_recipes
from utils.stop_signals import Stopped


def _record(step: Step) -> dict:
    return {"command": command(step), "status": "done", "cwd": os.getcwd()}


# ---------------------------------------------------------------------------------------------------------------------
# plan
# ---------------------------------------------------------------------------------------------------------------------
def test_a_quick_plan_makes_the_synthetic_data_then_trains_its_evaluator(tmp_path, monkeypatch):
    """--quick: the synthetic data (400 motions, seed 0, done once Mean.npy is there), then the evaluator under the
    launcher, continued from either of its two runs and taken as placed by its finest.tar."""
    monkeypatch.chdir(REPO)
    data = str(tmp_path / "Synthetic")
    args = _args(tmp_path, quick=True, data_root=data, launch="torchrun --nproc_per_node 2")
    steps = plan(args, get_recipe("momask_rvq"), "synthetic")
    assert [s.name for s in steps] == ["data", "evaluator", "tokenizer", "evaluate_tokenizer"]
    data_step, evaluator = steps[0], steps[1]
    assert data_step.argv == ["/usr/bin/python3", "prepare_data.py", "synthetic", "--out", data, "--num_motions",
                              "400", "--seed", "0"]
    assert data_step.done_file == os.path.join(data, "Mean.npy") and data_step.always_skip_when_done
    assert not data_step.training and data_step.script == "prepare_data.py"
    run = os.path.join(str(tmp_path / "ck"), "synthetic", EVALUATOR_RUN)
    assert evaluator.argv[:4] == ["torchrun", "--nproc_per_node", "2", "train_evaluator.py"]
    assert evaluator.training and evaluator.always_skip_when_done and evaluator.script == "train_evaluator.py"
    assert evaluator.done_file == os.path.join(run, "eval", "evaluator_val.json")
    assert evaluator.resume_files == (os.path.join(run, "model", "latest.tar"),
                                      os.path.join(f"{run}_decomp", "model", "latest.tar"))
    assert evaluator.placed_file == os.path.join(run, "model", "finest.tar")


def test_a_quick_plan_with_an_evaluator_named_trains_none(tmp_path):
    """--quick with --evaluator_dir uses that evaluator: no evaluator step, and every evaluation names it."""
    args = _args(tmp_path, quick=True, data_root=str(tmp_path / "Synthetic"), evaluator_dir="/ev")
    steps = _by_name(plan(args, get_recipe("momask_rvq"), "synthetic"))
    assert list(steps) == ["data", "tokenizer", "evaluate_tokenizer"]
    argv = steps["evaluate_tokenizer"].argv
    assert argv[argv.index("--evaluator_dir") + 1] == "/ev"


def test_the_quick_plan_runs_the_quick_flags_and_the_paper_plan_the_datasets_own(tmp_path):
    """--quick runs a stage's quick flags alone; a paper run adds the dataset's own (KIT-ML's batch size)."""
    recipe = get_recipe("momask")
    quick = _by_name(plan(_args(tmp_path, quick=True, data_root=str(tmp_path / "s")), recipe, "synthetic"))
    paper = _by_name(plan(_args(tmp_path), recipe, "kit"))
    for name in ("mask_transformer", "residual_transformer"):
        assert "tiny_momask" in " ".join(quick[name].argv) and "--batch_size" not in quick[name].argv
        argv = paper[name].argv
        assert argv[argv.index("--batch_size") + 1] == "16" and "tiny_momask" not in " ".join(argv)


def test_the_quick_plan_trains_and_evaluates_briefly(tmp_path):
    """--quick trains a tokenizer 300 iterations and a generator 200, each validating and saving every 100; a tokenizer
    evaluation replicates 3 times, a generator's 2, its multimodality over 1 batch of 11 repeats."""
    args = _args(tmp_path, quick=True, data_root=str(tmp_path / "Synthetic"))
    steps = _by_name(plan(args, get_recipe("mardm_sit_xl"), "synthetic"))

    def tail(name: str, after: str) -> list[str]:
        argv = steps[name].argv
        return argv[argv.index(after):]

    assert tail("tokenizer", "--max_iters") == ["--max_iters", "300", "--eval_every", "100", "--save_every", "100"]
    assert tail("generator", "--max_iters") == ["--max_iters", "200", "--eval_every", "100", "--save_every", "100"]
    assert tail("evaluate_tokenizer", "--replications")[:2] == ["--replications", "3"]
    assert tail("evaluate", "--replications")[:6] == ["--replications", "2", "--mm_batches", "1", "--mm_repeats",
                                                      "11"]


def test_a_training_step_is_done_when_its_run_has_latest_tar(tmp_path):
    """A training step's output is its run's model/latest.tar under <checkpoints_dir>/<dataset>; an evaluation's is
    its result in the recipe's output folder, and it is not a training."""
    recipe = get_recipe("momask_rvq")
    steps = _by_name(plan(_args(tmp_path), recipe, "t2m"))
    run = os.path.join(str(tmp_path / "ck"), "t2m", "rvq_nq6_dc512_nc512_noshare_qdp0.2")
    assert steps["tokenizer"].done_file == os.path.join(run, "model", "latest.tar") and steps["tokenizer"].training
    evaluate = steps["evaluate_tokenizer"]
    assert evaluate.evaluation and not evaluate.training
    assert output_folder(_args(tmp_path), recipe, "t2m") == os.path.join(str(tmp_path / "ck"), "t2m", "reproduce",
                                                                          "momask_rvq")
    assert evaluate.done_file == os.path.join(output_folder(_args(tmp_path), recipe, "t2m"), "evaluate_tokenizer.json")


def test_a_training_without_fid_validation_is_not_given_the_evaluator(tmp_path):
    """--evaluator_dir reaches a training only when it validates by FID (--need_evaluation)."""
    steps = _by_name(plan(_args(tmp_path, evaluator_dir="/ev"), get_recipe("t2m_gpt_vq"), "t2m"))
    assert "--need_evaluation" not in steps["tokenizer"].argv and "--evaluator_dir" not in steps["tokenizer"].argv
    assert "--evaluator_dir" in steps["evaluate"].argv


def test_a_paper_plan_without_a_data_root_leaves_it_to_the_scripts(tmp_path):
    """Without --data_root no stage is given one (each script uses the dataset's own folder)."""
    assert all("--data_root" not in s.argv for s in plan(_args(tmp_path), get_recipe("momask"), "t2m"))


# ---------------------------------------------------------------------------------------------------------------------
# recorded commands
# ---------------------------------------------------------------------------------------------------------------------
def test_a_recorded_command_is_shell_quoted_and_reads_back_as_its_argv():
    """``command`` quotes an argument with a space, so the recorded command splits back into the same argv."""
    step = _vq_step("--data_root", "/data/my motions")
    assert command(step) == "python train_vq.py --name r --data_root '/data/my motions'"
    assert shlex.split(command(step)) == step.argv
    assert changed_flags(step, _record(step)) == []


def test_a_script_named_by_its_absolute_path_runs_the_same_flags():
    """A command recorded from another folder names the script by its absolute path: the same flags are the same
    settings."""
    step = _vq_step("--lr", "2e-4")
    record = {"command": shlex.join(["/usr/bin/python3", os.path.join(REPO, "train_vq.py"), "--name", "r", "--lr",
                                     "2e-4"]), "status": "done", "cwd": os.getcwd()}
    assert changed_flags(step, record) == []


def test_a_flag_written_with_equals_is_read_as_its_value():
    """``--lr=2e-4`` is the flag ``--lr`` with the value ``2e-4``, as argparse reads it."""
    flags = _script_flags(["python", "train_vq.py", "--lr=2e-4", "--milestones", "1", "2"], "train_vq.py")
    assert flags["--lr"] == ("2e-4",) and flags["--milestones"] == ("1", "2")
    assert changed_flags(_vq_step("--lr", "2e-4"), _record(_vq_step("--lr=2e-4"))) == []
    assert changed_flags(_vq_step("--lr", "3e-4"), _record(_vq_step("--lr=2e-4"))) == ["--lr 2e-4 -> 3e-4"]


def test_the_flags_before_the_script_are_not_read():
    """Only the tokens after the script are its flags: the launcher's own flags are not settings."""
    flags = _script_flags(["accelerate", "launch", "--num_processes", "8", "train_vq.py", "--name", "r"],
                          "train_vq.py")
    assert flags == {"--name": ("r",)}
    assert _script_flags(["python", "train_AE.py", "--name", "r"], "train_vq.py") is None


def test_a_folder_left_to_its_default_is_the_folder_named():
    """A recorded command without --evaluator_dir or --data_root read them as the scripts' defaults: naming those
    folders now is the same setting, naming others is not."""
    base = ["--dataset_name", "t2m", "--checkpoints_dir", "ck"]
    flags = _script_flags(["python", "train_vq.py", *base], "train_vq.py")
    assert flags["--evaluator_dir"] == (os.path.join("ck", "t2m", EVALUATOR_RUN),)
    assert flags["--data_root"][0].endswith(os.path.join("dataset", "HumanML3D"))
    named = _script_flags(["python", "train_vq.py", *base, "--evaluator_dir", "/ev", "--data_root", "/d"],
                          "train_vq.py")
    assert named["--evaluator_dir"] == ("/ev",) and named["--data_root"] == ("/d",)
    assert changed_flags(_vq_step(*base, "--evaluator_dir", os.path.join("ck", "t2m", EVALUATOR_RUN)),
                         _record(_vq_step(*base))) == []
    assert changed_flags(_vq_step(*base, "--evaluator_dir", "/ev"), _record(_vq_step(*base))) == [
        f"--evaluator_dir {os.path.join('ck', 't2m', EVALUATOR_RUN)} -> /ev"]


def test_a_switch_added_since_is_shown_as_given():
    """A flag without a value added since the record is a change shown ``(not given) -> (given)``."""
    assert changed_flags(_vq_step("--need_evaluation"), _record(_vq_step())) == [
        "--need_evaluation (not given) -> (given)"]


def test_a_changed_output_names_both_sha256_prefixes(tmp_path):
    """An output changed since its record says so with the first 12 hex digits of the recorded and current SHA-256."""
    latest = tmp_path / "latest.tar"
    latest.write_bytes(b"trained further")
    step = Step("tokenizer", ["python", "train_vq.py"], str(latest), "train_vq.py", training=True)
    now = hashlib.sha256(b"trained further").hexdigest()
    check = output_check(step, {"status": "done", "sha256": "a" * 64})
    assert (check.path, check.sha256) == (str(latest), now)
    assert check.changed == (f"{latest} changed since the step finished (SHA-256 {'a' * 12}... now {now[:12]}...): "
                             f"the steps after it run again")
    assert output_check(step, {"status": "done", "sha256": now}).changed is None


# ---------------------------------------------------------------------------------------------------------------------
# reproduce.py
# ---------------------------------------------------------------------------------------------------------------------
def test_a_paper_run_defaults_to_the_recipes_first_dataset():
    """Without --dataset_name a paper run is on the recipe's first dataset; another it was published on is taken."""
    recipe = get_recipe("mardm_sit_xl")
    args = reproduce.get_parser().parse_args(["mardm_sit_xl"])
    assert reproduce._dataset(args, recipe) == "t2m_67"
    args = reproduce.get_parser().parse_args(["mardm_sit_xl", "--dataset_name", "kit_64"])
    assert reproduce._dataset(args, recipe) == "kit_64"


def test_a_quick_run_keeps_the_data_root_it_is_given(tmp_path):
    """--quick runs on synthetic data, in the folder --data_root names, else under dataset/Synthetic; not on another."""
    recipe = get_recipe("momask")
    args = reproduce.get_parser().parse_args(["momask", "--quick", "--data_root", str(tmp_path / "syn")])
    assert reproduce._dataset(args, recipe) == "synthetic" and args.data_root == str(tmp_path / "syn")
    args = reproduce.get_parser().parse_args(["momask", "--quick", "--dataset_name", "synthetic"])
    assert reproduce._dataset(args, recipe) == "synthetic"
    assert args.data_root.endswith(os.path.join("dataset", "Synthetic"))
    args = reproduce.get_parser().parse_args(["momask", "--quick", "--dataset_name", "t2m"])
    with pytest.raises(SystemExit, match="--quick runs on the synthetic dataset, not --dataset_name t2m"):
        reproduce._dataset(args, recipe)


def test_ctrl_c_ends_the_call_as_a_sigint_stop(monkeypatch):
    """A KeyboardInterrupt while the recipe runs ends the call as a stop by SIGINT (exit status 130)."""
    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(reproduce, "run_recipe", interrupted)
    with pytest.raises(Stopped) as stop:
        reproduce.main(["momask"])
    assert stop.value.signum == signal.SIGINT and stop.value.exit_status == 130


def test_the_list_prints_the_recipe_table(capsys):
    """``--list`` prints the recipe table and returns None without running anything."""
    assert reproduce.main(["--list"]) is None
    assert capsys.readouterr().out.strip() == list_recipes()


def test_the_recipe_table_lists_the_published_numbers_of_every_dataset():
    """The table shows each dataset's numbers, the second dataset's too, and the last line explains the '*'."""
    text = list_recipes()
    lines = text.splitlines()
    at = lines.index("t2m_gpt_vq: T2M-GPT VQ-VAE (512 codes, EMA reset), reconstruction "
                     "[Zhang et al., T2M-GPT, CVPR 2023]")
    assert lines[at + 1:at + 4] == ["    datasets: t2m, kit; stages: tokenizer, evaluate",
                                    "    published on t2m (evaluate): fid 0.07*, top1 0.501*, matching_score 3.072*, "
                                    "diversity 9.593*",
                                    "    published on kit (evaluate): fid 0.472*"]
    assert lines[-1] == "* unverified (quoted from an aggregator or from memory; the report says where from)"


# ---------------------------------------------------------------------------------------------------------------------
# paths compared, presets, refused runs
# ---------------------------------------------------------------------------------------------------------------------
def test_a_path_given_through_a_link_matches_a_record_from_an_unknown_folder(tmp_path, monkeypatch):
    """A record without its working directory: a path now given through a link whose name ends like the recorded path
    is that path, though the link leads elsewhere."""
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "h3d").symlink_to(tmp_path / "elsewhere")
    (tmp_path / "here").mkdir()
    monkeypatch.chdir(tmp_path / "here")
    assert _same_value("data/h3d", None, str(tmp_path / "data" / "h3d"))
    assert not _same_value("data/kit", None, str(tmp_path / "data" / "h3d"))


def test_a_relative_evaluator_is_read_from_the_folder_it_was_recorded_in(tmp_path, monkeypatch):
    """``--evaluator_dir ev`` recorded in folder A names A's evaluator file: the same file named from elsewhere is the
    same evaluator, another one is not."""
    (tmp_path / "a" / "ev" / "model").mkdir(parents=True)
    (tmp_path / "a" / "ev" / "model" / "finest.tar").write_bytes(b"e")
    (tmp_path / "b").mkdir()
    record = {"command": shlex.join(_vq_step("--evaluator_dir", "ev").argv), "status": "done",
              "cwd": str(tmp_path / "a")}
    monkeypatch.chdir(tmp_path / "b")
    assert changed_flags(_vq_step("--evaluator_dir", str(tmp_path / "a" / "ev")), record) == []
    assert changed_flags(_vq_step("--evaluator_dir", str(tmp_path / "b")), record) != []


def test_the_last_config_flag_names_the_preset(tmp_path):
    """With --config given twice the preset recorded is the last one's, as argparse reads it."""
    first, last = tmp_path / "first.yaml", tmp_path / "last.yaml"
    first.write_text("lr: 1.0e-3\n")
    last.write_text("lr: 2.0e-3\n")
    step = Step("tokenizer", ["python", "train_vq.py", "--config", str(first), "--config", str(last)], "x",
                "train_vq.py", training=True)
    assert started(step)["preset"] == {"file": str(last), "values": {"lr": 2.0e-3}}


def test_a_run_deleted_since_its_record_is_not_refused(tmp_path):
    """A training recorded with other flags whose run is gone (deleted to train it afresh) is trained anew, not
    refused."""
    step = Step("tokenizer", ["python", "train_vq.py", "--lr", "2"], str(tmp_path / "latest.tar"), "train_vq.py",
                training=True)
    previous = {"command": "python train_vq.py --lr 1", "status": "done", "cwd": os.getcwd()}
    assert changed_runs([step], {"tokenizer": previous}, "state.json") == []
    (tmp_path / "latest.tar").write_bytes(b"w")
    (problem,) = changed_runs([step], {"tokenizer": previous}, "state.json")
    assert problem.startswith(f"{os.path.dirname(str(tmp_path))}: stage tokenizer was trained with other settings")


def test_an_evaluation_is_launched_as_planned_and_a_training_continues_its_run(tmp_path):
    """An evaluation whose result is there runs its planned command (it already continues); a training continues
    its run only when the run is there."""
    result = tmp_path / "evaluate.json"
    result.write_text("{}")
    evaluation = Step("evaluate", ["python", "evaluation_AE.py", "--is_continue"], str(result), "evaluation_AE.py",
                      evaluation=True)
    assert launched(evaluation) == ["python", "evaluation_AE.py", "--is_continue"]
    training = Step("tokenizer", ["python", "train_vq.py"], str(tmp_path / "latest.tar"), "train_vq.py",
                    training=True)
    assert launched(training) == ["python", "train_vq.py"]
    (tmp_path / "latest.tar").write_bytes(b"w")
    assert launched(training) == ["python", "train_vq.py", "--is_continue"]


def _generator_on(tmp_path: Path, parent: dict) -> Step:
    latest = tmp_path / "gen" / "model" / "latest.tar"
    save_checkpoint(str(latest), {"parent": parent})
    return Step("generator", ["python", "train_MARDM.py"], str(latest), "train_MARDM.py", training=True)


def test_a_parent_recorded_without_its_sha256_is_not_a_stale_parent(tmp_path):
    """A run whose parent record lacks the SHA-256 cannot tell its tokenizer's version: it is not refused."""
    tokenizer = tmp_path / "ae.tar"
    tokenizer.write_bytes(b"ae")
    assert stale_parents([_generator_on(tmp_path, {"path": str(tokenizer)})]) == []


def test_a_parent_that_is_still_the_version_recorded_is_not_a_stale_parent(tmp_path):
    """A run whose parent record names the tokenizer file's current SHA-256 goes on: it is not refused."""
    tokenizer = tmp_path / "ae.tar"
    tokenizer.write_bytes(b"ae")
    now = hashlib.sha256(b"ae").hexdigest()
    assert stale_parents([_generator_on(tmp_path, {"path": str(tokenizer), "sha256": now})]) == []


def test_a_stale_parent_without_a_kept_copy_says_the_run_no_longer_loads(tmp_path):
    """A tokenizer trained further with no copy of the former version kept: the refusal names where the copy would
    be and that the run no longer loads."""
    tokenizer = tmp_path / "ae.tar"
    tokenizer.write_bytes(b"trained further")
    was = hashlib.sha256(b"before").hexdigest()
    (problem,) = stale_parents([_generator_on(tmp_path, {"path": str(tokenizer), "sha256": was})])
    assert problem.startswith(f"{tmp_path / 'gen'}: stage generator was trained on {tokenizer} with SHA-256 "
                              f"{was[:12]}...")
    assert problem.endswith(f"(no copy of the version it was trained on was kept ({tmp_path / f'ae.{was[:12]}.tar'}), "
                            f"so the run no longer loads with its tokenizer)")


def test_the_preflight_checks_the_evaluator_named_or_the_official_one(tmp_path, monkeypatch):
    """A paper run checks the evaluator --evaluator_dir names (any one), else the default folder's as the official
    one; a dry run does not load it."""
    calls = []

    def check_evaluator(path, dataset, data_root, load, official):
        calls.append((path, dataset, data_root, load, official))
        return [AssetCheck("evaluator", path, "ok", "")]

    monkeypatch.setattr(recipe_plan, "check_evaluator", check_evaluator)
    monkeypatch.setattr(recipe_plan, "check_dataset", lambda dataset, root: [])
    recipe = get_recipe("momask_rvq")
    for dry_run, evaluator_dir in ((True, None), (False, "/ev")):
        args = _args(tmp_path, dry_run=dry_run, evaluator_dir=evaluator_dir, data_root="/d")
        assert recipe_plan.preflight(args, recipe, "t2m", plan(args, recipe, "t2m")) == []
    assert calls == [(os.path.join(str(tmp_path / "ck"), "t2m", EVALUATOR_RUN), "t2m", "/d", False, True),
                     ("/ev", "t2m", "/d", True, False)]


# ---------------------------------------------------------------------------------------------------------------------
# reproduce.py calls
# ---------------------------------------------------------------------------------------------------------------------
def test_a_skipped_evaluation_is_reported_and_one_not_run_is_not(tmp_path, monkeypatch):
    """An evaluation skipped as done is in the report; after its training fails, the result an earlier call left is
    not reported as this call's."""
    log, argv = two_stage_recipe(tmp_path, monkeypatch)
    reproduce.main(argv)
    again = reproduce.main(argv)
    assert [s["status"] for s in again["stages"]][1:] == ["skipped (done)", "skipped (done)"]
    assert list(again["evaluations"]) == ["evaluate"]
    (tmp_path / "ck" / "synthetic" / "r" / "model" / "latest.tar").unlink()
    (tmp_path / "fail").write_text("")
    with pytest.raises(SystemExit, match="stage tokenizer failed"):
        reproduce.main(argv)
    report = json.loads((tmp_path / "ck" / "synthetic" / "reproduce" / "two" / "report.json").read_text())
    assert report["evaluations"] == {}


def test_rerun_runs_the_finished_stages_again_and_keeps_the_data(tmp_path, monkeypatch):
    """--rerun runs a training recorded as finished again, continuing its run, and its evaluation; the data is kept."""
    log, argv = two_stage_recipe(tmp_path, monkeypatch)
    reproduce.main(argv)
    log.write_text("")
    report = reproduce.main([*argv, "--rerun"])
    assert [s["status"] for s in report["stages"]] == ["skipped (done)", "done", "done"]
    calls = [line.split() for line in log.read_text().splitlines()]
    assert [os.path.basename(c[0]) for c in calls] == ["train_vq.py", "evaluation_AE.py"]
    assert calls[0][-1] == "--is_continue"

def test_a_dry_run_with_rerun_prints_the_finished_stages_as_commands(tmp_path, monkeypatch, capsys):
    """--dry_run --rerun prints the recipe's finished stages as the commands the call would run again."""
    log, argv = two_stage_recipe(tmp_path, monkeypatch)
    reproduce.main(argv)
    capsys.readouterr()
    reproduce.main([*argv, "--dry_run", "--rerun"])
    printed = capsys.readouterr().out.splitlines()[1:]
    assert printed[0].startswith("# done, skipped: ") and "prepare_data.py" in printed[0]
    assert shlex.split(printed[1])[-1] == "--is_continue" and "--report_json" in shlex.split(printed[2])


# ---------------------------------------------------------------------------------------------------------------------
# recipes
# ---------------------------------------------------------------------------------------------------------------------
def test_an_unknown_recipe_names_the_recipes_and_the_list_flag():
    """An unknown recipe is a ValueError naming every recipe and ``reproduce.py --list``."""
    with pytest.raises(ValueError, match=r"unknown recipe 'nope'; expected one of \['fsq_mardm', .*'vq_mardm'\] "
                                         r"\(reproduce\.py --list\)"):
        get_recipe("nope")


def test_only_evaluation_stages_carry_published_numbers():
    """``Recipe.published`` holds the numbers of the evaluation stages on that dataset, not those a training stage
    carries, and leaves out a stage without any."""
    number = (Published("fid", 0.1, "paper"),)
    recipe = Recipe("r", "t", "p", ("t2m",), (
        Stage("tokenizer", "train_vq.py", "r", (), (), published={"t2m": number}),
        Stage("evaluate", "evaluation_AE.py", "r", (), (), evaluation=True, published={"t2m": number}),
        Stage("evaluate_again", "evaluation_AE.py", "r", (), (), evaluation=True)))
    assert recipe.published("t2m") == {"evaluate": number}
    assert recipe.published("kit") == {}


def test_mardm_sit_xl_carries_its_published_numbers():
    """MARDM-SiT-XL's generator evaluation on HumanML3D carries the paper's FID, R-precision and matching score, all
    marked unverified; its DDPM sibling carries none."""
    numbers = get_recipe("mardm_sit_xl").published("t2m_67")["evaluate"]
    assert [(p.metric, p.value, p.verified) for p in numbers] == [("fid", 0.114, False), ("top1", 0.5, False),
                                                                 ("top3", 0.795, False),
                                                                 ("matching_score", 3.27, False)]
    assert get_recipe("mardm_ddpm_xl").published("t2m_67") == {}
