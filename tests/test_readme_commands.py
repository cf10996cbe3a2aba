"""Every command the documentation shows parses with its script's own parser: each flag exists, each value is one
the flag accepts, each ``--config`` preset loads, each recipe is registered. README.md, dataset/README.md,
bench/README.md and the example commands in the scripts' docstrings are read; nothing is trained or loaded."""

from __future__ import annotations

import argparse
import ast
import importlib
import re
import shlex
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from options.config import parse_with_config
from options.eval_generator_options import get_evaluation_generator_parser, get_sample_parser
from options.eval_options import get_evaluation_ae_parser, get_train_evaluator_parser
from options.generator_options import get_train_length_estimator_parser, get_train_mardm_parser
from options.token_generator_options import get_train_res_transformer_parser, get_train_t2m_transformer_parser
from options.tokenizer_options import get_train_ae_parser, get_train_vq_parser

ROOT = Path(__file__).resolve().parents[1]
DOCS = ("README.md", "dataset/README.md", "bench/README.md")
SCRIPTS = sorted(p.relative_to(ROOT).as_posix() for p in [*ROOT.glob("*.py"), ROOT / "tools" / "import_checkpoint.py"])
LAUNCHERS = ("python", "python3", "torchrun", "accelerate")


def _with_config(make_parser: Callable[[], argparse.ArgumentParser]) -> Callable[[list[str]], object]:
    # A fresh parser per command: parse_with_config sets a preset's values as the parser's defaults.
    return lambda argv: parse_with_config(make_parser(), argv)


def _module_parse_args(module: str) -> Callable[[list[str]], object]:
    return lambda argv: importlib.import_module(module).parse_args(argv)


def _reproduce(argv: list[str]) -> object:
    reproduce = importlib.import_module("reproduce")
    args = reproduce.get_parser().parse_args(argv)
    if not args.list:
        assert args.recipe in reproduce.RECIPES, f"unknown recipe {args.recipe!r}: one of {sorted(reproduce.RECIPES)}"
        # As run_recipe refuses them: a paper run on the recipe's datasets, --quick on the synthetic one.
        datasets = (reproduce.QUICK_DATASET,) if args.quick else reproduce.RECIPES[args.recipe].datasets
        assert args.dataset_name in (None, *datasets), f"{args.recipe} runs on {datasets}"
    return args


PARSERS: dict[str, Callable[[list[str]], object]] = {
    "train_AE.py": _with_config(get_train_ae_parser),
    "train_vq.py": _with_config(get_train_vq_parser),
    "train_MARDM.py": _with_config(get_train_mardm_parser),
    "train_length_estimator.py": _with_config(get_train_length_estimator_parser),
    "train_t2m_transformer.py": _with_config(get_train_t2m_transformer_parser),
    "train_res_transformer.py": _with_config(get_train_res_transformer_parser),
    "train_evaluator.py": _with_config(get_train_evaluator_parser),
    "evaluation_AE.py": _with_config(get_evaluation_ae_parser),
    "evaluation_MARDM.py": _with_config(get_evaluation_generator_parser),
    "sample.py": _with_config(get_sample_parser),
    "prepare_data.py": _module_parse_args("prepare_data"),
    "render.py": _module_parse_args("render"),
    "plot_loss.py": _module_parse_args("plot_loss"),
    "reproduce.py": _reproduce,
    "tools/import_checkpoint.py": lambda argv: importlib.import_module("tools.import_checkpoint").get_parser()
    .parse_args(argv),
}


class _Parsed(BaseException):
    """Raised by a benchmark's ``parse_args`` once it has parsed, so that the benchmark itself never runs."""


def _parse_benchmark(script: str, argv: list[str], monkeypatch) -> None:
    # The benchmarks build their parser inside main(); stop main() right after its parse.
    monkeypatch.syspath_prepend(str(ROOT / "bench"))
    module = importlib.import_module(Path(script).stem)
    parse_args = argparse.ArgumentParser.parse_args

    def parse_then_stop(self, args=None, namespace=None):
        raise _Parsed(parse_args(self, args, namespace))

    monkeypatch.setattr(argparse.ArgumentParser, "parse_args", parse_then_stop)
    monkeypatch.setattr(sys, "argv", [script, *argv])
    with pytest.raises(_Parsed):
        module.main()


def _join_lines(text: str) -> str:
    """Shell line continuations (a backslash at the end of a line) joined into one line."""
    return re.sub(r"[ \t]*\\\n\s*", " ", text)


def _is_command(text: str) -> bool:
    words = text.split()
    while words and re.fullmatch(r"[A-Z_][A-Z0-9_]*=\S*", words[0]):  # OMP_NUM_THREADS=2 python ...
        words.pop(0)
    return bool(words) and words[0] in LAUNCHERS and any(w.endswith(".py") for w in words)


def markdown_commands(text: str) -> list[str]:
    """The commands of the fenced shell blocks (one per line) and of the inline code spans of a Markdown text."""
    commands = []
    for lang, block in re.findall(r"^```(\w*)\n(.*?)^```", text, flags=re.S | re.M):
        if lang in ("", "bash", "sh", "shell", "console"):
            commands += [line.strip() for line in _join_lines(block).splitlines() if _is_command(line.strip())]
    prose = re.sub(r"^```.*?^```", "", text, flags=re.S | re.M)
    commands += [" ".join(span.split()) for span in re.findall(r"`([^`]+)`", prose) if _is_command(span)]
    return commands


def docstring_commands(source: str) -> list[str]:
    """The example lines of a script's module docstring (those that start with a command)."""
    doc = _join_lines(ast.get_docstring(ast.parse(source)) or "")
    return [line.strip() for line in doc.splitlines() if _is_command(line.strip())]


def script_and_argv(command: str) -> tuple[str, list[str]]:
    """``python render.py a.npy --fps 20  # note`` -> ``("render.py", ["a.npy", "--fps", "20"])``."""
    words = shlex.split(command, comments=True)
    at = next(i for i, w in enumerate(words) if w.endswith(".py"))
    return words[at], words[at + 1:]


def check_command(command: str, monkeypatch, capsys) -> None:
    """Fail with argparse's message when ``command`` does not parse with its script's parser."""
    script, argv = script_and_argv(command)
    # Whole flag names only: an abbreviation argparse accepts today becomes ambiguous once a flag is added.
    monkeypatch.setattr(argparse.ArgumentParser, "_get_option_tuples", lambda self, option_string: [])
    try:
        if script.startswith("bench/"):
            _parse_benchmark(script, argv, monkeypatch)
        else:
            assert script in PARSERS, f"no parser known for {script}: add it to PARSERS"
            PARSERS[script](argv)
    except SystemExit as e:
        if e.code not in (0, None):
            error = capsys.readouterr().err.strip().splitlines()  # argparse: usage lines, then the error
            pytest.fail(f"{command}\n{error[-1] if error else e}")


def _all_commands() -> list[tuple[str, str]]:
    found = [(doc, c) for doc in DOCS for c in markdown_commands((ROOT / doc).read_text(encoding="utf-8"))]
    found += [(s, c) for s in SCRIPTS for c in docstring_commands((ROOT / s).read_text(encoding="utf-8"))]
    return found


COMMANDS = _all_commands()


def test_the_documents_show_commands_of_every_script():
    # An extraction that silently found nothing would pass every check below.
    shown = {script_and_argv(c)[0] for _, c in COMMANDS}
    assert set(PARSERS) <= shown, f"no documented command of {sorted(set(PARSERS) - shown)}"
    assert sum(doc == "README.md" for doc, _ in COMMANDS) >= 30


@pytest.mark.parametrize("where, command", COMMANDS, ids=[f"{w}:{c[:70]}" for w, c in COMMANDS])
def test_documented_command_parses(where, command, monkeypatch, capsys):
    check_command(command, monkeypatch, capsys)


@pytest.mark.parametrize("command", [
    "python train_vq.py --config options/configs/tiny_vq.yaml --name x --no_such_flag 1",   # unknown flag
    "python train_AE.py --config options/configs/tiny_ae.yaml --name x --window_mode every",  # not a choice
    "python train_AE.py --config options/configs/no_such_preset.yaml --name x",               # missing preset
    "python sample.py --name x --head_solver rk4",
    "python prepare_data.py validate --dataset",                                              # flag without value
    "python reproduce.py no_such_recipe",
    "python reproduce.py fsq_mardm --dataset_name t2m",                                       # not the recipe's
    "python tools/import_checkpoint.py --src a.pth --name x",                                 # required flag left out
    "python bench/run_all.py --device tpu",
    "python bench/run_all.py --devic cpu",                                                    # abbreviated flag
    "python sample.py --name x --motion_len 80",
    "python unknown_script.py --name x",
])
def test_a_broken_command_fails(command, monkeypatch, capsys):
    with pytest.raises((pytest.fail.Exception, AssertionError)):
        check_command(command, monkeypatch, capsys)


def test_extraction_reads_blocks_spans_continuations_and_docstrings():
    text = ("Run `python render.py a.npy --fps 20` or:\n\n```bash\nOMP_NUM_THREADS=2 python train_vq.py \\\n"
            "    --name x   # a comment\npip install -r requirements.txt\n```\n\n```python\nimport torch\n```\n")
    assert markdown_commands(text) == ["OMP_NUM_THREADS=2 python train_vq.py --name x   # a comment",
                                       "python render.py a.npy --fps 20"]
    assert script_and_argv(markdown_commands(text)[0]) == ("train_vq.py", ["--name", "x"])
    source = '"""Title.\n\nExamples::\n\n    python sample.py --name a \\\\\n        --seed 3   # note\n"""\n'
    assert docstring_commands(source) == ["python sample.py --name a --seed 3   # note"]
