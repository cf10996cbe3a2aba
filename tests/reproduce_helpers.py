"""A two-stage recipe run by a fake interpreter, for the tests of reproduce.py's planning and state
(tests/test_reproduce.py, tests/test_reproduce_state.py), and the fake interpreter of train_fsq_pipeline.sh's tests."""

from __future__ import annotations

import sys
from pathlib import Path

from utils.recipes import RECIPES, Recipe, Stage


def two_stage_recipe(tmp_path: Path, monkeypatch) -> tuple[Path, list[str]]:
    """A training stage and its evaluation run by a fake interpreter that logs each command and writes the stage's
    output: an empty ``latest.tar``, and a result JSON naming that file with its SHA-256 and an FID equal to its size
    in bytes. The training exits 1 after writing while ``tmp_path/fail`` exists. Returns the log file and the
    reproduce.py arguments (recipe ``two``, run ``r``, stages ``tokenizer`` and ``evaluate``)."""
    log = tmp_path / "argv.log"
    fake = tmp_path / "python"
    fake.write_text(f"""#!{sys.executable}
import hashlib, json, os, sys
args = sys.argv[1:]
with open({str(log)!r}, "a") as f:
    f.write(" ".join(args) + "\\n")
value = lambda flag: args[args.index(flag) + 1]
latest = os.path.join(value("--checkpoints_dir"), value("--dataset_name"), value("--name"), "model", "latest.tar")
if "--report_json" in args:
    weights = open(latest, "rb").read()
    result = {{"checkpoint": latest, "checkpoint_sha256": hashlib.sha256(weights).hexdigest(),
               "protocol": {{"metrics": {{"fid": {{"mean": float(len(weights)), "ci": 0.0}}}}}}}}
    json.dump(result, open(value("--report_json"), "w"))
else:
    os.makedirs(os.path.dirname(latest), exist_ok=True)
    open(latest, "w").close()
    sys.exit(1 if os.path.exists({str(tmp_path / "fail")!r}) else 0)
""")
    fake.chmod(0o755)
    two = Recipe("two", "a training and its evaluation", "none", ("synthetic",), (
        Stage("tokenizer", "train_vq.py", "r", (), ()),
        Stage("evaluate", "evaluation_AE.py", "r", (), (), evaluation=True)))
    monkeypatch.setitem(RECIPES, "two", two)
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "Mean.npy").write_bytes(b"")
    return log, ["two", "--quick", "--checkpoints_dir", str(tmp_path / "ck"), "--data_root", str(tmp_path / "data"),
                 "--evaluator_dir", str(tmp_path / "ev"), "--python", str(fake)]


def fake_pipeline_python(fake: Path, log: Path, extra: str = "") -> None:
    """A ``--python`` for train_fsq_pipeline.sh at ``fake`` that logs each stage's command to ``log`` and does nothing
    else (then runs the shell lines ``extra``); the script's own ``-c`` checks (its dataset name) run in this
    interpreter."""
    fake.write_text(f"#!/bin/sh\n[ \"$1\" = -c ] && exec '{sys.executable}' \"$@\"\necho \"$@\" >> '{log}'\n{extra}")
    fake.chmod(0o755)
