"""reproduce.py's state.json: a step skipped as done must still have the output recorded when it finished, so that the
report describes the files on disk (a run trained further by hand is evaluated again)."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shlex
import shutil
from pathlib import Path

import pytest
from reproduce_helpers import two_stage_recipe

import reproduce
from utils import recipe_runner
from utils.checkpoint import save_checkpoint
from utils.dataset_specs import get_dataset_spec
from utils.recipes import RECIPES, Stage


def _scripts(log: Path) -> list[str]:
    """The scripts the fake interpreter ran since ``log`` was emptied, in order."""
    return [Path(line.split()[0]).name for line in log.read_text().splitlines()]


def test_a_run_trained_further_by_hand_is_kept_and_evaluated_again(tmp_path, monkeypatch, capsys):
    """A training continued outside reproduce.py has another latest.tar: the same call keeps the training (it is
    not trained again), says which file changed, evaluates it again, and the report names the new SHA-256 and FID;
    the next call skips everything again."""
    log, argv = two_stage_recipe(tmp_path, monkeypatch)
    first = reproduce.main(argv)
    assert [s["status"] for s in first["stages"]][1:] == ["done", "done"]
    latest = tmp_path / "ck" / "synthetic" / "r" / "model" / "latest.tar"
    folder = tmp_path / "ck" / "synthetic" / "reproduce" / "two"
    state = json.loads((folder / "state.json").read_text())
    assert state["stages"]["tokenizer"]["sha256"] == hashlib.sha256(b"").hexdigest()
    assert state["stages"]["tokenizer"]["output"] == str(latest)

    latest.write_bytes(b"trained further")  # train_vq.py ... --is_continue, by hand
    new_sha = hashlib.sha256(b"trained further").hexdigest()
    log.write_text("")
    capsys.readouterr()
    again = reproduce.main(argv)
    assert [s["status"] for s in again["stages"]][1:] == ["skipped (done)", "done"]
    assert _scripts(log) == ["evaluation_AE.py"]
    printed = capsys.readouterr().out
    assert f"=== tokenizer: {latest} changed since the step finished (SHA-256 " in printed
    evaluation = again["evaluations"]["evaluate"]
    assert evaluation["evaluation"]["checkpoint_sha256"] == new_sha
    assert evaluation["rows"][0]["mean"] == len(b"trained further")
    markdown = (folder / "report.md").read_text()
    assert f"SHA-256 {new_sha[:16]}..." in markdown and "15.0000" in markdown
    assert json.loads((folder / "state.json").read_text())["stages"]["tokenizer"]["sha256"] == new_sha

    log.write_text("")
    third = reproduce.main(argv)
    assert [s["status"] for s in third["stages"]][1:] == ["skipped (done)", "skipped (done)"]
    assert _scripts(log) == []


def test_a_changed_output_is_shown_by_the_dry_run(tmp_path, monkeypatch, capsys):
    """--dry_run takes the same decision: the training stays a comment, the line says which file changed, and the
    evaluation after it is printed to run."""
    log, argv = two_stage_recipe(tmp_path, monkeypatch)
    reproduce.main(argv)
    latest = tmp_path / "ck" / "synthetic" / "r" / "model" / "latest.tar"
    latest.write_bytes(b"trained further")
    capsys.readouterr()
    reproduce.main([*argv, "--dry_run"])
    printed = capsys.readouterr().out.splitlines()[1:]
    assert printed[1].startswith("# done, skipped: ") and "train_vq.py" in printed[1]
    assert printed[2].startswith(f"# tokenizer: {latest} changed since the step finished")
    assert "evaluation_AE.py" in printed[3] and not printed[3].startswith("#")
    assert len(printed) == 4


def test_a_state_without_sha256_reruns_the_later_steps_once(tmp_path, monkeypatch, capsys):
    """A state.json written before the SHA-256 was recorded cannot tell whether the run changed: the training is kept,
    the steps after it run again once with a line saying why, and the SHA-256 is recorded for the next call."""
    log, argv = two_stage_recipe(tmp_path, monkeypatch)
    reproduce.main(argv)
    state_path = tmp_path / "ck" / "synthetic" / "reproduce" / "two" / "state.json"
    state = json.loads(state_path.read_text())
    # As an earlier version wrote it: the data found in place unrecorded, the stages that ran without a SHA-256.
    del state["stages"]["data"]
    for entry in state["stages"].values():
        del entry["sha256"], entry["output"]
    state_path.write_text(json.dumps(state))
    log.write_text("")
    capsys.readouterr()
    again = reproduce.main(argv)
    assert [s["status"] for s in again["stages"]][1:] == ["skipped (done)", "done"]
    assert _scripts(log) == ["evaluation_AE.py"]
    latest = tmp_path / "ck" / "synthetic" / "r" / "model" / "latest.tar"
    assert f"=== tokenizer: {latest}: no SHA-256 was recorded when the step finished" in capsys.readouterr().out
    log.write_text("")
    third = reproduce.main(argv)
    assert [s["status"] for s in third["stages"]][1:] == ["skipped (done)", "skipped (done)"]
    assert _scripts(log) == []


def test_a_state_entry_is_dropped_for_the_steps_after_a_changed_output(tmp_path, monkeypatch):
    """The new SHA-256 and the end of the later steps' records are written together: a call stopped before the
    evaluation ran again (here: it fails) does not leave it recorded as finished on the former weights."""
    log, argv = two_stage_recipe(tmp_path, monkeypatch)
    reproduce.main(argv)
    (tmp_path / "ck" / "synthetic" / "r" / "model" / "latest.tar").write_bytes(b"trained further")
    result = tmp_path / "ck" / "synthetic" / "reproduce" / "two" / "evaluate.json"
    monkeypatch.setattr(recipe_runner, "run_stage", lambda argv: 1)
    with pytest.raises(SystemExit, match="stage evaluate failed"):
        reproduce.main(argv)
    state = json.loads((result.parent / "state.json").read_text())
    assert "evaluate" not in state["stages"]
    assert state["stages"]["tokenizer"]["sha256"] == hashlib.sha256(b"trained further").hexdigest()


def _with_tokenizer_flags(monkeypatch, *flags: str) -> None:
    """The ``two`` recipe of ``two_stage_recipe`` with ``flags`` added to its training stage."""
    two = RECIPES["two"]
    tokenizer = dataclasses.replace(two.stages[0], quick_args=flags)
    monkeypatch.setitem(RECIPES, "two", dataclasses.replace(two, stages=(tokenizer, two.stages[1])))


def test_a_run_is_not_continued_with_other_settings(tmp_path, monkeypatch, capsys):
    """A recipe whose training flags changed since its run was trained (or started) is refused before anything runs,
    naming the run, each flag with both values and the way out: the run would only be continued (a finished one
    left as it is) and reported under the new command."""
    log, argv = two_stage_recipe(tmp_path, monkeypatch)
    reproduce.main(argv)
    run = tmp_path / "ck" / "synthetic" / "r"
    state = tmp_path / "ck" / "synthetic" / "reproduce" / "two" / "state.json"
    _with_tokenizer_flags(monkeypatch, "--lr", "5e-4", "--batch_size", "16")
    log.write_text("")
    refused = (rf"(?s)quick run cannot start:\n- {run}: stage tokenizer was trained with other settings than this "
               rf"call's \(--lr \(not given\) -> 5e-4; --batch_size \(not given\) -> 16; recorded in {state}\).*"
               rf"move or delete {run} to train it afresh.*another --checkpoints_dir")
    with pytest.raises(SystemExit, match=refused):
        reproduce.main(argv)
    assert _scripts(log) == []
    capsys.readouterr()
    reproduce.main([*argv, "--dry_run"])
    assert f"# WARNING: {run}: stage tokenizer was trained with other settings" in capsys.readouterr().out

    # A run started and stopped is refused too: its checkpoint holds steps trained with the former flags.
    _with_tokenizer_flags(monkeypatch)
    (tmp_path / "fail").write_text("")
    (run / "model" / "latest.tar").unlink()
    with pytest.raises(SystemExit, match="stage tokenizer failed"):
        reproduce.main(argv)
    _with_tokenizer_flags(monkeypatch, "--lr", "5e-4")
    with pytest.raises(SystemExit, match=r"stage tokenizer was started with other settings than this call's \(--lr"):
        reproduce.main(argv)


def test_a_preset_edited_since_is_another_setting(tmp_path, monkeypatch, capsys):
    """A recipe's --config preset edited after its run was trained changes what the stage runs with as a flag does:
    the stage is not skipped as done, and continuing it is refused, naming the key with both values and the file; a
    state.json of an earlier version, without the preset's values, is not refused for it."""
    log, argv = two_stage_recipe(tmp_path, monkeypatch)
    preset = tmp_path / "tiny_vq.yaml"
    preset.write_text("lr: 1.0e-3\nmilestones: [250]\n")
    _with_tokenizer_flags(monkeypatch, "--config", str(preset))
    reproduce.main(argv)
    state_path = tmp_path / "ck" / "synthetic" / "reproduce" / "two" / "state.json"
    preset.write_text("lr: 0.05\nmilestones: [250]\nseed: 3\n")
    log.write_text("")
    with pytest.raises(SystemExit, match=rf"stage tokenizer was trained with other settings than this call's \(lr "
                                         rf"0\.001 -> 0\.05 in {preset}; seed \(not set\) -> 3 in {preset}; "
                                         rf"recorded in {state_path}\)"):
        reproduce.main(argv)
    assert _scripts(log) == []
    capsys.readouterr()
    reproduce.main([*argv, "--dry_run"])
    printed = capsys.readouterr().out.splitlines()
    assert any(line.startswith("# WARNING: ") and "lr 0.001 -> 0.05" in line for line in printed)
    assert not any(line.startswith("# done, skipped: ") and "train_vq.py" in line for line in printed)

    state = json.loads(state_path.read_text())
    for entry in state["stages"].values():
        entry.pop("preset", None)
    state_path.write_text(json.dumps(state))
    assert [s["status"] for s in reproduce.main(argv)["stages"]][1:] == ["skipped (done)", "skipped (done)"]
    assert _scripts(log) == []


def test_a_preset_key_the_command_sets_itself_is_not_compared(tmp_path):
    """A preset key that the stage's own flags set (then or now) is not read from the preset: editing it there changes
    nothing the stage runs with, and refused the reruns of every recipe that passes the flag."""
    from utils.recipe_plan import Step, changed_flags, started

    preset = tmp_path / "tiny.yaml"
    preset.write_text("lr: 1.0e-3\nmax_iters: 300\n")
    argv = ["python", "train_vq.py", "--config", str(preset), "--max_iters", "300"]
    step = Step("tokenizer", argv, "x", "train_vq.py", training=True)
    record = started(step)
    preset.write_text("lr: 1.0e-3\nmax_iters: 400\n")
    assert changed_flags(step, record) == []
    preset.write_text("lr: 2.0e-3\nmax_iters: 400\n")
    assert changed_flags(step, record) == [f"lr 0.001 -> 0.002 in {preset}"]


def test_a_preset_value_rewritten_in_another_spelling_is_the_same_setting(tmp_path):
    """A preset is compared as its script reads it: ``1e-4`` (text to PyYAML) is the learning rate 0.0001, and
    ``[150]`` the ``milestones`` that ``150`` is."""
    from utils.recipe_plan import Step, changed_flags, started

    preset = tmp_path / "tiny.yaml"
    preset.write_text("lr: 1e-4\nmilestones: 150\n")
    step = Step("tokenizer", ["python", "train_vq.py", "--config", str(preset)], "x", "train_vq.py", training=True)
    record = started(step)
    preset.write_text("lr: 0.0001\nmilestones: [150]\n")
    assert changed_flags(step, record) == []
    preset.write_text("lr: 1e-3\nmilestones: [150]\n")
    assert changed_flags(step, record) == [f"lr 0.0001 -> 0.001 in {preset}"]


def test_a_finished_record_keeps_the_preset_read_when_the_stage_started(tmp_path, monkeypatch):
    """A preset edited while its stage ran was not read by it: the record keeps the values of the start, so the next
    call refuses the edited preset rather than skipping the stage as done with it."""
    log, argv = two_stage_recipe(tmp_path, monkeypatch)
    preset = tmp_path / "tiny_vq.yaml"
    preset.write_text("lr: 1.0e-3\n")
    _with_tokenizer_flags(monkeypatch, "--config", str(preset))
    run_stage = recipe_runner.run_stage

    def edited_while_running(stage_argv):
        code = run_stage(stage_argv)
        preset.write_text("lr: 2.0e-3\n")
        return code

    monkeypatch.setattr(recipe_runner, "run_stage", edited_while_running)
    reproduce.main(argv)
    state = json.loads((tmp_path / "ck" / "synthetic" / "reproduce" / "two" / "state.json").read_text())
    assert state["stages"]["tokenizer"]["preset"]["values"] == {"lr": 0.001}
    monkeypatch.setattr(recipe_runner, "run_stage", run_stage)
    with pytest.raises(SystemExit, match="lr 0.001 -> 0.002"):
        reproduce.main(argv)


def test_another_interpreter_or_path_spelling_is_not_another_setting(tmp_path, monkeypatch):
    """The interpreter (--python), the launcher (--launch) and a folder named by another path run the same stages:
    a finished recipe stays finished."""
    log, argv = two_stage_recipe(tmp_path, monkeypatch)
    reproduce.main(argv)
    other = tmp_path / "bin" / "python3"
    other.parent.mkdir()
    shutil.copy(argv[-1], other)
    monkeypatch.chdir(tmp_path)
    argv[argv.index("--data_root") + 1] = "data"
    log.write_text("")
    for call in ([*argv[:-1], str(other)], [*argv, "--launch", f"{other} -u"]):
        assert [s["status"] for s in reproduce.main(call)["stages"]][1:] == ["skipped (done)", "skipped (done)"]
    assert _scripts(log) == []


def test_flags_are_compared_as_the_scripts_read_them():
    """What counts as another setting: a flag's value, a flag added or dropped (a switch shows as given); not the
    interpreter, the script's path, the order of the flags, nor a folder left to its default and then named."""
    from utils.recipe_plan import REPO, Step, changed_flags

    default_data = get_dataset_spec("t2m").root
    now = ["python3", "train_vq.py", "--dataset_name", "t2m", "--checkpoints_dir", "ck", "--lr", "2e-4",
           "--need_evaluation", "--evaluator_dir", "ck/t2m/text_mot_match"]
    step = Step("tokenizer", now, "ck/t2m/r/model/latest.tar", "train_vq.py", training=True)
    same = ["accelerate", "launch", f"{REPO}/train_vq.py", "--checkpoints_dir", "ck", "--dataset_name", "t2m",
            "--need_evaluation", "--lr", "2e-4", "--data_root", default_data]
    assert changed_flags(step, {"command": shlex.join(same), "status": "done"}) == []
    other = ["python", "train_vq.py", "--dataset_name", "t2m", "--checkpoints_dir", "ck", "--lr", "1e-4",
             "--batch_size", "16"]
    assert changed_flags(step, {"command": shlex.join(other), "status": "done"}) == [
        "--lr 1e-4 -> 2e-4", "--batch_size 16 -> (not given)", "--need_evaluation (not given) -> (given)"]


def test_a_record_without_its_working_directory_accepts_its_paths_spelled_otherwise(tmp_path, monkeypatch):
    """A state.json written before the working directory was recorded, read from another folder: its relative paths
    name folders below one that is not known, so the same folders named absolutely are no change; another value of
    a flag that is not a path still is."""
    from utils.recipe_plan import Step, changed_flags

    was = ["python", "train_vq.py", "--dataset_name", "synthetic", "--checkpoints_dir", "checkpoints",
           "--data_root", "dataset/Synthetic", "--lr", "1e-4"]
    record = {"command": shlex.join(was), "status": "done"}
    monkeypatch.chdir(tmp_path)
    repo = tmp_path / "elsewhere" / "repo"
    now = ["python", "train_vq.py", "--dataset_name", "synthetic", "--checkpoints_dir", str(repo / "checkpoints"),
           "--data_root", str(repo / "dataset" / "Synthetic")]
    step = Step("tokenizer", [*now, "--lr", "1e-4"], "x", "train_vq.py", training=True)
    assert changed_flags(step, record) == []
    step = Step("tokenizer", [*now, "--lr", "2e-4"], "x", "train_vq.py", training=True)
    assert changed_flags(step, record) == ["--lr 1e-4 -> 2e-4"]
    # Run again where the record's relative folder exists: read from here, so another folder is another value.
    (tmp_path / "dataset" / "Synthetic").mkdir(parents=True)
    step = Step("tokenizer", [*now, "--lr", "1e-4"], "x", "train_vq.py", training=True)
    assert changed_flags(step, record) == [f"--data_root dataset/Synthetic -> {repo / 'dataset' / 'Synthetic'}"]
    step = Step("tokenizer", [*now, "--lr", "2e-4"], "x", "train_vq.py", training=True)
    # With its working directory recorded, the record's paths are read from there.
    assert changed_flags(step, {**record, "cwd": str(tmp_path)}) == [
        f"--checkpoints_dir checkpoints -> {repo / 'checkpoints'}",
        f"--data_root dataset/Synthetic -> {repo / 'dataset' / 'Synthetic'}", "--lr 1e-4 -> 2e-4",
        f"--evaluator_dir checkpoints/synthetic/text_mot_match -> {repo / 'checkpoints/synthetic/text_mot_match'}"]


def test_a_relative_path_given_again_in_another_folder_names_another_folder(tmp_path, monkeypatch):
    """The same text is not the same folder from another working directory: --data_root data recorded in a/ and given
    again in b/, both holding a data/ folder, trains on other data. A name or a number is the same from anywhere."""
    from utils.recipe_plan import Step, changed_flags, started

    for folder in ("a/data", "b/data"):
        (tmp_path / folder).mkdir(parents=True)
    step = Step("tokenizer", ["python", "train_vq.py", "--name", "r", "--data_root", "data", "--lr", "1e-4"],
                "x", "train_vq.py", training=True)
    monkeypatch.chdir(tmp_path / "a")
    record = started(step)
    assert changed_flags(step, record) == []
    monkeypatch.chdir(tmp_path / "b")
    assert changed_flags(step, record) == [f"--data_root {tmp_path / 'a' / 'data'} -> {tmp_path / 'b' / 'data'}"]
    (tmp_path / "a" / "data").rmdir()  # nothing there to tell them apart: taken as the same
    assert changed_flags(step, record) == []


def test_an_evaluator_named_by_its_folder_or_its_file_is_the_same(tmp_path, monkeypatch):
    """--evaluator_dir names a folder or the checkpoint in it: the scripts read the same file, so it is no change,
    whichever way the record or the recipe names it, or when left to its default folder; another evaluator is."""
    from utils.recipe_plan import Step, changed_flags

    folder = tmp_path / "ck" / "synthetic" / "text_mot_match"
    (folder / "model").mkdir(parents=True)
    (folder / "model" / "finest.tar").write_bytes(b"")
    (tmp_path / "other.tar").write_bytes(b"")
    monkeypatch.chdir(tmp_path)
    base = ["python", "train_vq.py", "--dataset_name", "synthetic", "--checkpoints_dir", "ck"]

    def record(*flags: str) -> dict:
        return {"command": shlex.join([*base, *flags]), "status": "done", "cwd": str(tmp_path)}

    file = str(folder / "model" / "finest.tar")
    for was, now in (([], ["--evaluator_dir", file]), (["--evaluator_dir", "ck/synthetic/text_mot_match"],
                                                         ["--evaluator_dir", file]),
                     (["--evaluator_dir", file], ["--evaluator_dir", str(folder)])):
        step = Step("tokenizer", [*base, *now], "x", "train_vq.py", training=True)
        assert changed_flags(step, record(*was)) == [], (was, now)
    step = Step("tokenizer", [*base, "--evaluator_dir", "other.tar"], "x", "train_vq.py", training=True)
    assert changed_flags(step, record("--evaluator_dir", file)) == [f"--evaluator_dir {file} -> other.tar"]


@pytest.mark.parametrize("trainings", [("train_MARDM.py",), ("train_t2m_transformer.py", "train_res_transformer.py")],
                         ids=["mardm", "momask"])
def test_a_training_on_a_tokenizer_trained_further_is_refused_first(tmp_path, monkeypatch, trainings):
    """A tokenizer trained further by hand after a generator (MoMask: both transformers) was trained on it: the
    generator run cannot continue on the new version, so the call stops before running anything, naming the run, the
    tokenizer file, both SHA-256 and the kept copy of the former version; with the run moved aside, it is trained
    afresh on the new version."""
    log, argv = two_stage_recipe(tmp_path, monkeypatch)
    runs = [f"gen{i}" for i in range(len(trainings))]
    stages = (RECIPES["two"].stages[0], *(Stage(run, script, run, (), ()) for run, script in zip(runs, trainings)),
              Stage("evaluate", "evaluation_MARDM.py", runs[0], (), (), evaluation=True))
    monkeypatch.setitem(RECIPES, "two", dataclasses.replace(RECIPES["two"], stages=stages))
    folder = tmp_path / "ck" / "synthetic"
    tokenizer = folder / "r" / "model" / "latest.tar"
    tokenizer.parent.mkdir(parents=True)
    tokenizer.write_bytes(b"trained further")
    was, now = hashlib.sha256(b"").hexdigest(), hashlib.sha256(b"trained further").hexdigest()
    kept = tokenizer.with_name(f"latest.{was[:12]}.tar")
    kept.write_bytes(b"")  # what the engine keeps of the version a generator was trained on
    for run in runs:
        save_checkpoint(str(folder / run / "model" / "latest.tar"), {"parent": {"path": str(tokenizer), "sha256": was}})
    refused = "".join(
        rf"\n- {folder / run}: stage {run} was trained on {tokenizer} with SHA-256 {was[:12]}\.\.\., but that file is "
        rf"another version now \(SHA-256 {now[:12]}\.\.\.: trained further since\).*move or delete {folder / run} to "
        rf"train it afresh on the new version \(the version it was trained on is kept as {kept}, so the run still "
        rf"loads wherever it is moved\)" for run in runs)
    with pytest.raises(SystemExit, match=f"(?s)cannot start:{refused}$"):
        reproduce.main(argv)
    assert not log.exists()  # nothing ran
    for run in runs:
        (folder / run).rename(tmp_path / run)
    reproduce.main(argv)
    calls = log.read_text().splitlines()
    assert [Path(c.split()[0]).name for c in calls] == ["train_vq.py", *trainings, "evaluation_MARDM.py"]
    assert calls[0].endswith("--is_continue") and not any(c.endswith("--is_continue") for c in calls[1:-1])
