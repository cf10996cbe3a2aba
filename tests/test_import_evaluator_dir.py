"""``tools/import_checkpoint.py --evaluator_dir``: a named evaluator that cannot be loaded is an error before anything
is written (as in ``evaluation_AE.py``); it only warned and wrote a run without statistics, which the generator
stages then refused. Without the flag, a missing default evaluator still leaves the statistics to later."""

from __future__ import annotations

import logging

import pytest
from test_evaluation_AE import _momask_file, env  # noqa: F401  (env: the module's fixture)
from tool_helpers import load_tool

from models.loader import load_tokenizer
from utils.checkpoint import CheckpointError


def _argv(env, tmp_path, checkpoints) -> list[str]:  # noqa: F811
    root, _, _ = env
    return ["--src", _momask_file(tmp_path), "--dataset_name", "synthetic", "--data_root", str(root),
            "--checkpoints_dir", str(checkpoints)]


@pytest.mark.parametrize("bad", ["missing", "not an evaluator"])
def test_a_named_evaluator_dir_that_cannot_be_loaded_is_an_error(env, tmp_path, bad) -> None:  # noqa: F811
    _, ck, _ = env
    named = tmp_path / "typo"
    if bad == "not an evaluator":
        (named / "model").mkdir(parents=True)
        (named / "model" / "finest.tar").write_bytes(b"not a checkpoint")
    tool = load_tool("import_checkpoint")
    argv = [*_argv(env, tmp_path, ck), "--name", f"imp_{bad.replace(' ', '_')}", "--evaluator_dir", str(named)]
    with pytest.raises(CheckpointError, match=rf"^--evaluator_dir {named}: no usable evaluator \(.*\); fix the path, "
                                              rf"or leave the flag out to use {ck}/synthetic/text_mot_match"):
        tool.main(tool.get_parser().parse_args(argv))
    assert not (ck / "synthetic" / f"imp_{bad.replace(' ', '_')}").exists()


def test_a_named_evaluator_dir_that_loads_gives_the_statistics(env, tmp_path) -> None:  # noqa: F811
    _, ck, _ = env
    tool = load_tool("import_checkpoint")
    argv = [*_argv(env, tmp_path, tmp_path / "runs"), "--name", "imp", "--evaluator_dir",
            str(ck / "synthetic" / "text_mot_match")]
    tool.main(tool.get_parser().parse_args(argv))
    imported = load_tokenizer(str(tmp_path / "runs" / "synthetic" / "imp" / "model" / "latest.tar"))
    assert imported.dataset["mean"] is not None


def test_without_the_flag_a_missing_default_evaluator_only_warns(env, tmp_path, caplog) -> None:  # noqa: F811
    tool = load_tool("import_checkpoint")
    with caplog.at_level(logging.WARNING, logger="import_checkpoint"):
        tool.main(tool.get_parser().parse_args([*_argv(env, tmp_path, tmp_path / "runs"), "--name", "imp"]))
    assert any("no statistics recorded (evaluator checkpoint not found" in r.message for r in caplog.records)
    imported = load_tokenizer(str(tmp_path / "runs" / "synthetic" / "imp" / "model" / "latest.tar"))
    assert imported.dataset["mean"] is None
