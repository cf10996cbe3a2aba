"""train_fsq_pipeline.sh against reproduce.py: --quick on the synthetic dataset only, and a paper run on the dataset's
own data. The stages run under a fake interpreter that only logs their commands."""

from __future__ import annotations

import subprocess
from pathlib import Path

from utils.recipe_plan import REPO

SCRIPT = Path(REPO) / "train_fsq_pipeline.sh"


def _run_pipeline(tmp_path: Path, *flags: str) -> tuple[subprocess.CompletedProcess, dict[str, list[str]]]:
    """The script run with ``flags`` and a fake ``--python`` under ``tmp_path/ck``; its result and each script's
    command (the last of each name), as the fake interpreter received it."""
    log = tmp_path / "argv.log"
    fake = tmp_path / "python"
    fake.write_text(f"#!/bin/sh\necho \"$@\" >> '{log}'\n")
    fake.chmod(0o755)
    done = subprocess.run(["bash", str(SCRIPT), *flags, "--python", str(fake), "--checkpoints_dir",
                           str(tmp_path / "ck")], capture_output=True, text=True, timeout=120)
    calls = {line.split()[0]: line.split() for line in (log.read_text().splitlines() if log.exists() else [])}
    return done, calls


def _evaluator_in_place(tmp_path: Path, dataset: str) -> None:
    evaluator = tmp_path / "ck" / dataset / "text_mot_match" / "eval"
    evaluator.mkdir(parents=True)
    (evaluator / "evaluator_val.json").write_text("{}")


def _value(argv: list[str], flag: str) -> str:
    return argv[argv.index(flag) + 1]


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
    done, calls = _run_pipeline(tmp_path, "--dataset_name", "BandaiM")
    assert done.returncode == 0, done.stderr
    assert set(calls) == {"train_AE.py", "evaluation_AE.py", "train_length_estimator.py", "train_MARDM.py",
                          "evaluation_MARDM.py", "sample.py"}
    for argv in calls.values():
        assert _value(argv, "--dataset_name") == "BandaiM" and "--data_root" not in argv
