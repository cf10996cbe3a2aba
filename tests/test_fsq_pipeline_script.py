"""train_fsq_pipeline.sh against reproduce.py's fsq_mardm recipe: the same tokenizer file per dataset, --quick on the
synthetic dataset only, and a paper run on the dataset's own data. The stages run under a fake interpreter that only
logs their commands."""

from __future__ import annotations

import os
import subprocess
from dataclasses import replace
from pathlib import Path

import pytest
from reproduce_helpers import fake_pipeline_python

import reproduce
from utils.dataset_specs import SPEC_FILE, get_dataset_spec
from utils.recipe_plan import REPO, plan
from utils.recipes import RECIPES

SCRIPT = Path(REPO) / "train_fsq_pipeline.sh"


def _run_pipeline(tmp_path: Path, *flags: str, home: Path | None = None,
                  ) -> tuple[subprocess.CompletedProcess, dict[str, list[str]]]:
    """The script run with ``flags`` and a fake ``--python`` under ``tmp_path/ck`` (``home``: as $FSQ_MARDM_HOME);
    its result and each script's command (the last of each name), as the fake interpreter received it. The script's
    own ``-c`` calls (the dataset check) run in this interpreter."""
    log = tmp_path / "argv.log"
    fake = tmp_path / "python"
    fake_pipeline_python(fake, log)
    env = {**os.environ, **({"FSQ_MARDM_HOME": str(home)} if home else {})}
    done = subprocess.run(["bash", str(SCRIPT), *flags, "--python", str(fake), "--checkpoints_dir",
                           str(tmp_path / "ck")], capture_output=True, text=True, timeout=120, env=env)
    calls = {line.split()[0]: line.split() for line in (log.read_text().splitlines() if log.exists() else [])}
    return done, calls


def _evaluator_in_place(tmp_path: Path, dataset: str) -> None:
    evaluator = tmp_path / "ck" / dataset / "text_mot_match" / "eval"
    evaluator.mkdir(parents=True)
    (evaluator / "evaluator_val.json").write_text("{}")


def _dataset_folder(home: Path, name: str) -> None:
    """``home/dataset/<name>/spec.json``, as prepare_data.py's imports write it."""
    (home / "dataset" / name).mkdir(parents=True)
    replace(get_dataset_spec("t2m"), name=name, root=f"dataset/{name}").save(str(home / "dataset" / name / SPEC_FILE))


def _value(argv: list[str], flag: str) -> str:
    return argv[argv.index(flag) + 1]


@pytest.mark.parametrize("dataset", ["t2m_67", "kit_64", "synthetic"])
def test_the_pipeline_evaluates_and_generates_from_the_recipes_tokenizer_file(tmp_path, dataset):
    """MARDM's AE file (latest.tar; on KIT-ML the best validation FID, which the AE then validates for), as
    ``reproduce.py fsq_mardm`` plans it on the same dataset (--quick for synthetic), in the evaluation of the AE and
    in the generator's training."""
    quick = dataset == "synthetic"
    args = reproduce.get_parser().parse_args(["fsq_mardm", "--checkpoints_dir", "ck", *(["--quick"] * quick)])
    args.data_root = str(tmp_path / "data") if quick else None
    steps = {step.name: step.argv for step in plan(args, RECIPES["fsq_mardm"], dataset)}
    if quick:
        (tmp_path / "data").mkdir()
        (tmp_path / "data" / "Mean.npy").write_bytes(b"")
    _evaluator_in_place(tmp_path, dataset)
    done, calls = _run_pipeline(tmp_path, *(["--quick", "--data_root", str(tmp_path / "data")] if quick
                                            else ["--dataset_name", dataset]))
    assert done.returncode == 0, done.stderr
    which = _value(steps["evaluate_tokenizer"], "--which_epoch")
    assert _value(calls["evaluation_AE.py"], "--which_epoch") == which
    ae_file = os.path.basename(_value(steps["generator"], "--ae_ckpt"))
    assert ae_file == f"{which}.tar"
    assert _value(calls["train_MARDM.py"], "--ae_ckpt") == str(tmp_path / "ck" / dataset / "FSQ_AE" / "model" / ae_file)
    assert ("--need_evaluation" in calls["train_AE.py"]) == ("--need_evaluation" in steps["tokenizer"])
    # The recipe's per-dataset training settings (KIT-ML: AE batch 512, decay 0.1; generator batch 16, milestone).
    for script, stage in (("train_AE.py", "tokenizer"), ("train_MARDM.py", "generator")):
        for flag in ("--batch_size", "--lr_decay", "--milestones"):
            if flag in steps[stage] and not quick:
                assert _value(calls[script], flag) == _value(steps[stage], flag), (script, flag)


def test_quick_on_another_dataset_is_refused_before_anything_is_made(tmp_path):
    """--quick runs on the synthetic data with settings made for it: with another --dataset_name the script stops in
    reproduce.py's terms before it makes the synthetic data, a run folder or anything else."""
    done, calls = _run_pipeline(tmp_path, "--quick", "--dataset_name", "BandaiM")
    assert done.returncode == 2
    assert done.stderr.strip() == "--quick runs on the synthetic dataset, not --dataset_name BandaiM"
    assert calls == {} and not (tmp_path / "ck").exists()
    done, calls = _run_pipeline(tmp_path, "--dataset_name", "synthetic", "--quick", "--data_root", str(tmp_path / "d"))
    assert done.returncode == 0 and "prepare_data.py" in calls  # the synthetic dataset named is the quick one


def test_a_paper_run_reads_the_datasets_own_folder(tmp_path):
    """Without --quick and --data_root every stage gets no --data_root, so it reads the dataset's own folder, and no
    synthetic data is made."""
    _evaluator_in_place(tmp_path, "BandaiM")
    _dataset_folder(tmp_path / "home", "BandaiM")
    done, calls = _run_pipeline(tmp_path, "--dataset_name", "BandaiM", home=tmp_path / "home")
    assert done.returncode == 0, done.stderr
    assert set(calls) == {"train_AE.py", "evaluation_AE.py", "train_length_estimator.py", "train_MARDM.py",
                          "evaluation_MARDM.py", "sample.py"}
    for argv in calls.values():
        assert _value(argv, "--dataset_name") == "BandaiM" and "--data_root" not in argv
    # The length estimator reads the text as the generator does (CLIP, as MoMask's and MARDM's estimators, from the
    # same default file: neither the preset nor the estimator's flags name another).
    from options.config import load_config
    preset = load_config(os.path.join(REPO, "options", "configs", "fsq_mardm_sit_xl.yaml"))
    estimator = calls["train_length_estimator.py"]
    assert _value(estimator, "--text_encoder") == preset["text_encoder"] == "clip"
    assert "--clip_path" not in estimator and "clip_path" not in preset


def test_an_unknown_dataset_is_refused_as_the_stages_refuse_it_before_anything_else(tmp_path):
    """A misspelt --dataset_name was reported as a missing evaluator in checkpoints/<name>/text_mot_match; it is the
    unknown-dataset error every script gives, before any stage, evaluator or run folder is looked for."""
    done, calls = _run_pipeline(tmp_path, "--dataset_name", "t2m67")
    assert done.returncode == 2
    assert done.stderr.startswith("train_fsq_pipeline.sh: error: --dataset_name: unknown dataset 't2m67': not one of "
                                  "['beatx', "), done.stderr
    assert "no finished evaluator" not in done.stderr
    assert calls == {} and not (tmp_path / "ck").exists()
