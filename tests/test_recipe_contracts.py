"""The reproduce pipeline's planning and records: the commands a recipe plans (launcher, data root, evaluator,
placeholders), how recorded flags and presets are compared, which steps are kept or refused, and the recipe table."""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shlex
from pathlib import Path

import pytest
from reproduce_helpers import two_stage_recipe

import reproduce
from utils.checkpoint import save_checkpoint
from utils.paths import HOME_ENV
from utils.recipe_plan import (
    REPO,
    Step,
    _same_value,
    _script_flags,
    changed_flags,
    changed_runs,
    kept,
    output_check,
    plan,
    preflight,
    read_state,
    stale_parents,
    started,
)
from utils.recipes import RECIPES, Published, Recipe, Stage, get_recipe, list_recipes
from utils.reproduce_report import compare


def _args(tmp_path: Path, **over) -> argparse.Namespace:
    base = dict(quick=False, data_root=None, evaluator_dir=None, checkpoints_dir=str(tmp_path / "ck"), dry_run=True,
                launch=None, python="/usr/bin/python3")
    return argparse.Namespace(**{**base, **over})


def _by_name(steps: list[Step]) -> dict[str, Step]:
    return {s.name: s for s in steps}


def _vq_step(*flags: str, script: str = "train_vq.py") -> Step:
    return Step("tokenizer", ["python", script, "--name", "r", *flags], "/nonexistent/latest.tar", script,
                training=True)


# ---------------------------------------------------------------------------------------------------------------------
# recipes
# ---------------------------------------------------------------------------------------------------------------------
def test_higher_is_better_for_r_precision_and_lower_for_distances():
    """R-precision (top1/2/3) reads better when above the published value, FID / matching score / MPJPE when below;
    diversity and multimodality have no better side."""
    published = tuple(Published(m, 1.0, "paper") for m in ("top1", "top2", "top3", "fid", "matching_score",
                                                            "mpjpe_mm", "diversity"))
    values = {m: (2.0, 0.1) for m in ("top1", "top2", "top3", "fid", "matching_score", "mpjpe_mm", "diversity")}
    verdicts = {r.metric: r.verdict for r in compare(published, values)}
    assert verdicts == {"top1": "above (better)", "top2": "above (better)", "top3": "above (better)",
                        "fid": "above (worse)", "matching_score": "above (worse)", "mpjpe_mm": "above (worse)",
                        "diversity": "above"}


def test_an_unknown_stage_of_a_recipe_is_a_key_error_naming_both():
    """Recipe.stage finds a stage by name, and an unknown one is a KeyError naming the recipe and the stage."""
    recipe = get_recipe("momask")
    assert recipe.stage("residual_transformer").script == "train_res_transformer.py"
    with pytest.raises(KeyError, match="recipe 'momask' has no stage 'nope'"):
        recipe.stage("nope")


def test_a_published_number_is_verified_unless_said_otherwise():
    """Published.verified defaults to True: only numbers marked unverified carry the '*' of the recipe table."""
    assert Published("fid", 0.1, "paper").verified is True
    assert RECIPES["momask_rvq"].published("t2m")["evaluate_tokenizer"][0].verified is True


def test_the_recipe_table_lists_every_dataset_and_marks_unverified_numbers():
    """``--list``: each recipe with its datasets and stages, the published numbers of every dataset it was published
    on, as written (``%g``), an unverified one marked with '*' and a verified one not."""
    text = list_recipes()
    assert "    datasets: t2m, kit; stages: tokenizer, evaluate_tokenizer" in text
    assert "    published on t2m (evaluate_tokenizer): fid 0.019, mpjpe_mm 29.5*" in text
    assert "    published on kit (evaluate_tokenizer): fid 0.112*, mpjpe_mm 37.2*" in text
    assert "    published on kit (evaluate): fid 0.204, top3 0.781, multimodality 1.131" in text
    assert text.splitlines()[-1].startswith("* unverified")


def test_the_paper_tokenizer_settings_are_the_papers():
    """T2M-GPT evaluates its VQ-VAE one motion at a time (--per_motion), in quick mode too; MoMask's RVQ trains with
    FID validation (--need_evaluation), since its evaluation reads net_best_fid.tar."""
    for quick in (False, True):
        args = _args(Path("/nonexistent"), quick=quick, data_root="dataset/Synthetic" if quick else None)
        dataset = "synthetic" if quick else "t2m"
        t2m_gpt = _by_name(plan(args, get_recipe("t2m_gpt_vq"), dataset))
        assert "--per_motion" in t2m_gpt["evaluate"].argv
        momask = _by_name(plan(args, get_recipe("momask_rvq"), dataset))
        assert "--need_evaluation" in momask["tokenizer"].argv
        assert momask["evaluate_tokenizer"].argv[momask["evaluate_tokenizer"].argv.index("--which_epoch") + 1] \
            == "net_best_fid"


@pytest.mark.parametrize("name,stages", [("momask", ("mask_transformer", "residual_transformer")),
                                         ("mardm_sit_xl", ("generator",)), ("fsq_mardm", ("generator",))])
def test_the_paper_generator_stages_name_the_clip_weights(tmp_path, name, stages):
    """Every paper generator stage reads the CLIP weights from deps/ViT-B-32.pt, which the preflight checks before
    anything trains."""
    recipe = get_recipe(name)
    steps = _by_name(plan(_args(tmp_path), recipe, recipe.datasets[0]))
    for stage in stages:
        argv = steps[stage].argv
        assert argv[argv.index("--clip_path") + 1] == "deps/ViT-B-32.pt", stage
    problems = preflight(_args(tmp_path), recipe, recipe.datasets[0], list(steps.values()))
    assert any(p.startswith("CLIP weights: deps/ViT-B-32.pt") for p in problems)


def test_with_a_home_folder_the_recipes_read_and_check_the_clip_weights_under_it(tmp_path, monkeypatch):
    """The CLIP file is a default folder's like the data and the runs: with FSQ_MARDM_HOME set, the stages read and
    the preflight checks ``$FSQ_MARDM_HOME/deps/ViT-B-32.pt`` (``prepare_data.py assets`` already looked there)."""
    monkeypatch.setenv(HOME_ENV, str(tmp_path / "home"))
    recipe = get_recipe("mardm_sit_xl")
    steps = _by_name(plan(_args(tmp_path), recipe, recipe.datasets[0]))
    argv = steps["generator"].argv
    clip = str(tmp_path / "home" / "deps" / "ViT-B-32.pt")
    assert argv[argv.index("--clip_path") + 1] == clip
    problems = preflight(_args(tmp_path), recipe, recipe.datasets[0], list(steps.values()))
    assert any(p.startswith(f"CLIP weights: {clip}") for p in problems)


# ---------------------------------------------------------------------------------------------------------------------
# plan
# ---------------------------------------------------------------------------------------------------------------------
def test_trainings_run_under_the_launcher_and_evaluations_under_the_interpreter(tmp_path):
    """--launch prefixes the training stages (split as a shell would), while evaluations run with --python."""
    args = _args(tmp_path, launch="accelerate launch --num_processes '2'")
    steps = _by_name(plan(args, get_recipe("momask_rvq"), "t2m"))
    assert steps["tokenizer"].argv[:4] == ["accelerate", "launch", "--num_processes", "2"]
    assert Path(steps["tokenizer"].argv[4]).name == "train_vq.py"
    assert steps["evaluate_tokenizer"].argv[0] == "/usr/bin/python3"
    assert Path(steps["evaluate_tokenizer"].argv[1]).name == "evaluation_AE.py"


def test_the_data_root_and_the_evaluator_reach_every_stage_that_reads_them(tmp_path):
    """--data_root is passed to every stage; --evaluator_dir to every evaluation and to a training that validates by
    FID, each evaluation writing its result into the recipe's output folder after --is_continue."""
    args = _args(tmp_path, data_root="/data/h3d", evaluator_dir="/ev/official")
    steps = plan(args, get_recipe("momask_rvq"), "t2m")
    for step in steps:
        assert step.argv[step.argv.index("--data_root") + 1] == "/data/h3d", step.name
        assert step.argv[step.argv.index("--evaluator_dir") + 1] == "/ev/official", step.name
    evaluate = _by_name(steps)["evaluate_tokenizer"]
    out = os.path.join(str(tmp_path / "ck"), "t2m", "reproduce", "momask_rvq", "evaluate_tokenizer.json")
    assert evaluate.argv[-3:] == ["--is_continue", "--report_json", out] and evaluate.done_file == out


def test_the_script_is_named_relative_to_the_repository_when_run_from_it(tmp_path, monkeypatch):
    """A stage's script is written as the user would type it: ``train_vq.py`` from the repository, an absolute path
    from anywhere else."""
    recipe = get_recipe("momask_rvq")
    monkeypatch.chdir(REPO)
    assert plan(_args(tmp_path), recipe, "t2m")[0].argv[1] == "train_vq.py"
    monkeypatch.chdir(tmp_path)
    assert plan(_args(tmp_path), recipe, "t2m")[0].argv[1] == os.path.join(REPO, "train_vq.py")


def test_a_placeholder_naming_no_stage_is_refused_with_the_stage_named(tmp_path):
    """A recipe flag ``{name}`` that names no stage of the recipe is a ValueError naming the stage and the
    placeholder, not a bare KeyError."""
    bad = Recipe("bad", "b", "none", ("t2m",), (Stage("tokenizer", "train_vq.py", "r", ("--x", "{nope}/a"), ()),))
    with pytest.raises(ValueError, match=r"recipe stage 'tokenizer': 'nope' names no stage of the recipe"):
        plan(_args(tmp_path), bad, "t2m")


# ---------------------------------------------------------------------------------------------------------------------
# flags and presets compared
# ---------------------------------------------------------------------------------------------------------------------
def test_is_continue_and_negative_values_are_read_as_the_scripts_read_them():
    """``--is_continue`` is not a setting (a recorded command with it is the same), and a negative number is the
    value of the flag before it, not a flag of its own."""
    flags = _script_flags(["python", "train_vq.py", "--lr_decay", "-0.5", "--is_continue", "--seed", "-1"],
                          "train_vq.py")
    assert flags["--lr_decay"] == ("-0.5",) and flags["--seed"] == ("-1",) and "--is_continue" not in flags
    step = _vq_step("--seed", "-2")
    record = {"command": shlex.join([*_vq_step("--seed", "-1").argv, "--is_continue"]), "status": "done"}
    assert changed_flags(step, record) == ["--seed -1 -> -2"]
    record = {"command": shlex.join([*step.argv, "--is_continue"]), "status": "done"}
    assert changed_flags(step, record) == []


def test_a_recorded_command_of_another_script_differs_as_a_whole():
    """A record whose command runs another script than the step's is one change: the whole command, old -> new."""
    step = _vq_step("--lr", "1e-4")
    old = shlex.join(["python", "train_AE.py", "--name", "r"])
    assert changed_flags(step, {"command": old, "status": "done"}) == [f"{old} -> {shlex.join(step.argv)}"]


def test_a_record_without_a_command_has_no_changed_flags():
    """A state.json entry without a command (nothing to compare) reports no change."""
    assert changed_flags(_vq_step("--lr", "1e-4"), {"status": "done", "seconds": 1.0}) == []


def test_a_record_from_an_unknown_folder_matches_a_path_that_climbed_out_of_it(tmp_path, monkeypatch):
    """A record without its working directory: ``../data/h3d`` is the same folder as any path ending in data/h3d,
    the leading ``..`` being relative to a folder not known."""
    monkeypatch.chdir(tmp_path)
    assert _same_value("../data/h3d", None, "/somewhere/data/h3d")
    assert not _same_value("../data/h3d", None, "/somewhere/data/kit")


def _preset_step(path: Path, *flags: str) -> Step:
    return Step("tokenizer", ["python", "train_vq.py", "--config", str(path), *flags], "x", "train_vq.py",
                training=True)


def test_a_preset_key_added_or_removed_is_a_changed_setting(tmp_path):
    """A key added to or removed from the preset since the stage started is shown as ``(not set)`` on its missing
    side, naming the preset file."""
    preset = tmp_path / "p.yaml"
    preset.write_text("lr: 1.0e-3\n")
    step = _preset_step(preset)
    record = started(step)
    preset.write_text("lr: 1.0e-3\nbatch_size: 16\n")
    assert changed_flags(step, record) == [f"batch_size (not set) -> 16 in {preset}"]
    preset.write_text("{}\n")
    assert changed_flags(step, record) == [f"lr 0.001 -> (not set) in {preset}"]


def test_a_preset_key_the_recorded_command_set_by_flag_is_not_compared(tmp_path):
    """A key the recorded command set by its own flag was not read from the preset then: only the flag's own change is
    reported, not the preset key."""
    preset = tmp_path / "p.yaml"
    preset.write_text("max_iters: 300\n")
    record = started(_preset_step(preset, "--max_iters", "100"))
    preset.write_text("max_iters: 400\n")
    assert changed_flags(_preset_step(preset), record) == ["--max_iters 100 -> (not given)"]


def test_a_preset_change_names_the_preset_the_stage_runs_with_now(tmp_path):
    """When the stage now names another preset file, its changed keys are reported in the new file."""
    old, new = tmp_path / "old.yaml", tmp_path / "new.yaml"
    old.write_text("lr: 1.0e-3\n")
    new.write_text("lr: 2.0e-3\n")
    changes = changed_flags(_preset_step(new), started(_preset_step(old)))
    assert changes == [f"--config {old} -> {new}", f"lr 0.001 -> 0.002 in {new}"]


def test_a_record_with_a_damaged_preset_or_no_preset_now_compares_the_flags_only(tmp_path):
    """A recorded preset without readable values, or a command that has no preset now, compares the flags only
    (the ``--config`` flag's own change says so), without failing."""
    preset = tmp_path / "p.yaml"
    preset.write_text("lr: 1.0e-3\n")
    step = _preset_step(preset)
    record = started(step)
    assert changed_flags(step, {**record, "preset": {"file": str(preset), "values": None}}) == []
    assert changed_flags(_vq_step(), {**record, "command": shlex.join(_vq_step("--config", str(preset)).argv)}) == [
        f"--config {preset} -> (not given)"]


# ---------------------------------------------------------------------------------------------------------------------
# kept, output check, refused runs
# ---------------------------------------------------------------------------------------------------------------------
def _evaluation_with_another_seed(tmp_path: Path) -> tuple[Step, dict]:
    """An evaluation step (seed 2) whose result is there, and its record of a finished run with seed 1."""
    result = tmp_path / "evaluate.json"
    result.write_text("{}")
    step = Step("evaluate", ["python", "evaluation_AE.py", "--seed", "2"], str(result), "evaluation_AE.py",
                evaluation=True)
    return step, {"command": "python evaluation_AE.py --seed 1", "status": "done", "cwd": os.getcwd()}


def test_a_step_recorded_with_other_flags_is_not_kept(tmp_path):
    """A step whose output is there and recorded as done is run again when its flags changed since."""
    step, record = _evaluation_with_another_seed(tmp_path)
    assert not kept(step, record, rerun=False, upstream_ran=False)
    assert kept(step, {**record, "command": "python evaluation_AE.py --seed 2"}, rerun=False, upstream_ran=False)


def test_an_output_found_without_a_finished_record_is_not_a_change(tmp_path):
    """Data found in place (no record) or a step recorded as started only has nothing to compare its output with:
    output_check reports its file and SHA-256 and no change."""
    data = tmp_path / "Mean.npy"
    data.write_bytes(b"stats")
    step = Step("data", ["python", "prepare_data.py"], str(data), "prepare_data.py", always_skip_when_done=True)
    for previous in ({}, {"command": "c", "status": "started"}):
        check = output_check(step, previous)
        assert (check.path, check.sha256, check.changed) == (str(data), hashlib.sha256(b"stats").hexdigest(), None)
    check = output_check(step, {"command": "c", "status": "done"})
    assert check.changed.startswith(f"{data}: no SHA-256 was recorded")


def test_an_evaluation_with_other_flags_is_not_a_refused_run(tmp_path):
    """Only trainings are refused for continuing with other settings: an evaluation whose flags changed runs again."""
    step, previous = _evaluation_with_another_seed(tmp_path)
    assert changed_runs([step], {"evaluate": previous}, "state.json") == []


def test_a_run_whose_parent_file_is_gone_is_left_to_its_stage(tmp_path):
    """stale_parents skips a run whose recorded tokenizer file no longer exists (the stage names it when it starts)
    and reports one whose tokenizer file changed."""
    latest = tmp_path / "gen" / "model" / "latest.tar"
    parent = tmp_path / "tok.tar"
    save_checkpoint(str(latest), {"parent": {"path": str(parent), "sha256": "0" * 64}})
    step = Step("generator", ["python", "train_MARDM.py"], str(latest), "train_MARDM.py", training=True)
    assert stale_parents([step]) == []
    parent.write_bytes(b"now")
    (problem,) = stale_parents([step])
    assert problem.startswith(f"{tmp_path / 'gen'}: stage generator was trained on {parent} with SHA-256 000000000000")


def test_a_truncated_state_json_reads_as_empty(tmp_path):
    """A state.json cut short (a write interrupted) reads as no record, ``{}``, rather than failing the call."""
    path = tmp_path / "state.json"
    path.write_text('{"stages": {"tokenizer": {"command": "python tr')
    assert read_state(str(path)) == {}
    path.write_text(json.dumps({"stages": {}}))
    assert read_state(str(path)) == {"stages": {}}


def test_an_evaluator_is_identified_by_its_weights_not_its_validation_result(tmp_path):
    """The evaluator step's output is its weights (finest.tar) when they are there, even once its final validation
    result exists: weights swapped since the record are a changed output, the steps after it run again."""

    run = tmp_path / "text_mot_match"
    (run / "eval").mkdir(parents=True)
    (run / "model").mkdir()
    (run / "eval" / "evaluator_val.json").write_text("{}")
    weights = run / "model" / "finest.tar"
    weights.write_bytes(b"first")
    step = Step("evaluator", ["python", "train_evaluator.py"], str(run / "eval" / "evaluator_val.json"),
                "train_evaluator.py", training=True, always_skip_when_done=True,
                resume_files=(str(run / "model" / "latest.tar"),), placed_file=str(weights))
    assert step.output_file() == str(weights)
    record = {"command": "c", "status": "done", "sha256": hashlib.sha256(b"first").hexdigest()}
    assert output_check(step, record).changed is None
    weights.write_bytes(b"swapped")
    assert output_check(step, record).changed.startswith(f"{weights} changed since the step finished")


def test_the_script_path_and_the_interpreter_are_not_flags():
    """Only what follows the script is read as its flags: the interpreter, the launcher and the script's own path
    (another checkout, another spelling) are not a setting."""
    assert _script_flags(["accelerate", "launch", "/other/checkout/train_vq.py", "--lr", "1e-4"], "train_vq.py") == {
        "--lr": ("1e-4",)}
    step = _vq_step("--lr", "1e-4")
    record = {"command": shlex.join(["python3", "/other/checkout/train_vq.py", "--name", "r", "--lr", "1e-4"]),
              "status": "done", "cwd": "/somewhere/else"}
    assert changed_flags(step, record) == []


@pytest.mark.parametrize("content", ["[]", "null", "3", '"text"'])
def test_a_state_json_that_is_not_an_object_reads_as_empty(tmp_path, content):
    """read_state promises ``{}`` for a state.json that cannot be read as a state ("a damaged state only costs
    reruns"): a file holding valid JSON that is not an object (a list, null, a number) must read as ``{}`` too, or
    reproduce.py crashes on ``state.setdefault('stages', {})`` with an AttributeError instead of rerunning."""
    path = tmp_path / "state.json"
    path.write_text(content)
    assert read_state(str(path)) == {}


def test_a_state_json_with_a_damaged_stages_entry_does_not_crash_the_call(tmp_path, monkeypatch):
    """A state.json whose ``stages`` is not an object (``{"stages": []}``) is damaged like an unreadable one: the call
    must plan and run (every stage checks its own outputs) rather than stop with an AttributeError from ``list.get``."""
    log, argv = two_stage_recipe(tmp_path, monkeypatch)
    state = tmp_path / "ck" / "synthetic" / "reproduce" / "two" / "state.json"
    state.parent.mkdir(parents=True)
    state.write_text(json.dumps({"stages": []}))
    report = reproduce.main(argv)
    assert [s["status"] for s in report["stages"]][1:] == ["done", "done"]


def test_a_stage_record_that_is_not_an_object_is_dropped_and_the_others_kept(tmp_path):
    """Within a readable state.json, a stage whose record is not an object is dropped (that stage reruns) and the
    other stages' records are kept as written."""
    path = tmp_path / "state.json"
    path.write_text(json.dumps({"stages": {"tokenizer": [1], "eval": {"status": "done", "seconds": 3}}, "x": 1}))
    assert read_state(str(path)) == {"stages": {"eval": {"status": "done", "seconds": 3}}, "x": 1}
