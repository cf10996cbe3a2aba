"""YAML presets for argparse parsers and the resolved config (options/config.py): casting rules, record keeping,
saved files and flag types that the other tests leave open."""

from __future__ import annotations

import argparse
import enum
import gc
import math
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from test_options import write

import options.config as config
from options.config import (
    ConfigError,
    DefaultsHelpFormatter,
    add_off_switch,
    cast_value,
    clip_norm,
    config_to_dict,
    decay_or_none,
    epochs_to_iters,
    given_in_config,
    given_on_command_line,
    load_config,
    load_preset,
    option_origin,
    parse_with_config,
    positive_float,
    resolve_max_iters,
    save_config,
    seed_int,
)


def _parser(**kwargs) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(**kwargs)
    parser.add_argument("--config", default=None)
    parser.add_argument("--name", default=None)
    return parser


# ---------------------------------------------------------------------------------------------------------------------
# --help
# ---------------------------------------------------------------------------------------------------------------------

def test_help_text_that_mentions_its_default_in_any_case_gets_no_suffix():
    parser = argparse.ArgumentParser(formatter_class=DefaultsHelpFormatter)
    parser.add_argument("--width", type=int, default=5, help="layer width; Default is five")
    text = " ".join(parser.format_help().split())
    assert "Default is five" in text and "(default: 5)" not in text


# ---------------------------------------------------------------------------------------------------------------------
# add_off_switch
# ---------------------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("flag", ["--no-ema", "--noise", "--nothing"])
def test_off_switch_requires_a_no_underscore_flag(flag):
    parser = argparse.ArgumentParser()
    with pytest.raises(ValueError, match="expected a --no_<x> flag"):
        add_off_switch(parser, flag, "help")


# ---------------------------------------------------------------------------------------------------------------------
# Casting of single values
# ---------------------------------------------------------------------------------------------------------------------

def test_a_text_flag_given_a_non_text_value_in_code_reads_it_as_text():
    action = _parser().add_argument("--label", default="a")
    assert cast_value(5, action, "where") == "5"
    assert cast_value(1.5, action, "where") == "1.5"


def test_an_integer_flag_reads_a_whole_float_as_an_int(tmp_path):
    parser = _parser()
    parser.add_argument("--n", type=int, default=1)
    values = load_preset(parser, write(tmp_path, "n: 64.0\n"))
    assert values == {"n": 64} and type(values["n"]) is int


def test_a_float_flag_refuses_a_boolean_as_not_a_number(tmp_path):
    parser = _parser()
    parser.add_argument("--x", type=float, default=1.0)
    with pytest.raises(ConfigError, match=r"x: expected a number, got True"):
        load_preset(parser, write(tmp_path, "x: true\n"))


def test_an_integer_flag_refuses_a_boolean(tmp_path):
    parser = _parser()
    parser.add_argument("--n", type=int, default=1)
    with pytest.raises(ConfigError, match=r"n: cannot read True as int"):
        load_preset(parser, write(tmp_path, "n: true\n"))
    with pytest.raises(ConfigError, match=r"n: cannot read False as int"):
        load_preset(parser, write(tmp_path, "n: false\n"))


def test_integer_choices_are_checked_against_the_cast_value(tmp_path):
    parser = _parser()
    parser.add_argument("--k", type=int, choices=[1, 2], default=1)
    assert load_preset(parser, write(tmp_path, "k: 2\n")) == {"k": 2}
    assert load_preset(parser, write(tmp_path, "k: '1'\n")) == {"k": 1}
    with pytest.raises(ConfigError, match="not one of"):
        load_preset(parser, write(tmp_path, "k: 3\n"))


def test_a_float_flag_refuses_nan_and_accepts_infinity(tmp_path):
    parser = _parser()
    parser.add_argument("--x", type=float, default=1.0)
    with pytest.raises(ConfigError, match="NaN is not a valid setting"):
        load_preset(parser, write(tmp_path, "x: .nan\n"))
    assert load_preset(parser, write(tmp_path, "x: .inf\n")) == {"x": math.inf}


def test_an_on_off_flag_refuses_a_number(tmp_path):
    parser = _parser()
    parser.add_argument("--is_on", action="store_true")
    with pytest.raises(ConfigError, match=r"is_on: expected true or false, got 1"):
        load_preset(parser, write(tmp_path, "is_on: 1\n"))
    with pytest.raises(ConfigError, match=r"is_on: expected true or false, got 0"):
        load_preset(parser, write(tmp_path, "is_on: 0\n"))


# ---------------------------------------------------------------------------------------------------------------------
# Lists of a fixed length
# ---------------------------------------------------------------------------------------------------------------------

def test_a_fixed_count_flag_takes_exactly_that_many_values(tmp_path):
    parser = _parser()
    parser.add_argument("--pair", type=int, nargs=2, default=[0, 0])
    assert load_preset(parser, write(tmp_path, "pair: [1, 2]\n")) == {"pair": [1, 2]}
    with pytest.raises(ConfigError, match=r"pair: expected 2 values, got 3"):
        load_preset(parser, write(tmp_path, "pair: [1, 2, 3]\n"))
    with pytest.raises(ConfigError, match=r"pair: expected 2 values, got 1"):
        load_preset(parser, write(tmp_path, "pair: [1]\n"))


def test_null_for_a_repeatable_flag_with_a_list_default_says_a_list_is_expected(tmp_path):
    parser = _parser()
    parser.add_argument("--span", action="append", default=[])
    with pytest.raises(ConfigError, match=r"span: expected a list \(a text value each\), got null"):
        load_preset(parser, write(tmp_path, "span: null\n"))


# ---------------------------------------------------------------------------------------------------------------------
# Keys and records
# ---------------------------------------------------------------------------------------------------------------------

def test_a_run_opt_yaml_record_that_yaml_reads_as_a_number_is_kept_as_text(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    path = write(run, "config: 123\nname: x\n", name="opt.yaml")
    args = parse_with_config(_parser(), ["--config", path])
    assert args.config == "123"


def test_an_unknown_key_close_to_a_known_one_suggests_it(tmp_path):
    parser = _parser()
    parser.add_argument("--batch_size", type=int, default=1)
    with pytest.raises(ConfigError, match=r"unknown key 'batchsize'; did you mean batch_size\?"):
        load_preset(parser, write(tmp_path, "batchsize: 4\n"))


def test_a_str_typed_flag_reads_a_plain_value_as_written(tmp_path):
    parser = _parser()
    parser.add_argument("--tag", type=str, default="a")
    assert load_preset(parser, write(tmp_path, "tag: no\n")) == {"tag": "no"}
    assert load_preset(parser, write(tmp_path, "tag: 1.10\n")) == {"tag": "1.10"}


def test_a_required_flag_set_by_the_preset_is_no_longer_required(tmp_path):
    parser = _parser()
    parser.add_argument("--data", required=True)
    args = parse_with_config(parser, ["--config", write(tmp_path, "data: here\nname: x\n")])
    assert args.data == "here"


def test_without_argv_the_typed_flags_are_read_from_sys_argv(monkeypatch):
    parser = _parser()
    parser.add_argument("--seed", type=int, default=1)
    monkeypatch.setattr(sys, "argv", ["prog", "--name", "x", "--seed", "5"])
    args = parse_with_config(parser)
    assert args.seed == 5 and given_on_command_line(args) == {"name", "seed"}


def test_a_preset_null_is_not_counted_as_set_by_the_preset(tmp_path):
    parser = _parser()
    parser.add_argument("--opt", default=None)
    path = write(tmp_path, "name: x\nopt: null\n")
    args = parse_with_config(parser, ["--config", path])
    assert given_in_config(args) == {"name"}
    assert option_origin(args, "opt") == "--opt"
    assert option_origin(args, "name") == f"--name (name: x in {path})"


def test_the_record_of_a_namespace_goes_when_the_namespace_does():
    args = parse_with_config(_parser(), ["--name", "x"])
    key = id(args)
    assert key in config._GIVEN
    del args
    gc.collect()
    assert key not in config._GIVEN


def test_without_abbreviations_a_value_with_a_flag_prefix_is_not_counted_as_typed():
    parser = _parser(allow_abbrev=False)
    parser.add_argument("--text_prompt", default=None)
    parser.add_argument("--seed", type=int, default=1)
    args = parse_with_config(parser, ["--name", "x", "--text_prompt", "--se=3 walks"])
    assert args.text_prompt == "--se=3 walks"
    assert given_on_command_line(args) == {"name", "text_prompt"}


# ---------------------------------------------------------------------------------------------------------------------
# Plain config values
# ---------------------------------------------------------------------------------------------------------------------

def test_config_to_dict_turns_tuples_into_lists():
    assert config_to_dict({"betas": (0.9, 0.99), "nested": [(1, 2)]}) == {"betas": [0.9, 0.99], "nested": [[1, 2]]}


def test_config_to_dict_makes_nested_mappings_plain():
    assert config_to_dict({"d": {1: Path("a/b"), "t": (3,)}}) == {"d": {"1": "a/b", "t": [3]}}


def test_config_to_dict_writes_other_objects_as_text():
    out = config_to_dict(argparse.Namespace(path=Path("x/y"), n=3, f=None))
    assert out == {"path": "x/y", "n": 3, "f": None} and type(out["path"]) is str


class _Mode(enum.IntEnum):
    FAST = 1


def test_config_to_dict_writes_numpy_scalars_and_number_subclasses_as_plain_values(tmp_path):
    """A numpy scalar becomes its Python value and an int / float subclass its plain number (an enum its text), so
    that safe_dump writes them: np.float64 is a float subclass it cannot represent, np.int64 no int at all."""
    out = config_to_dict({"lr": np.float64(0.25), "steps": np.int64(3), "on": np.bool_(True), "mode": _Mode.FAST,
                          "pair": (np.float32(0.5), 2)})
    assert out == {"lr": 0.25, "steps": 3, "on": True, "mode": "1", "pair": [0.5, 2]}
    assert [type(out[k]) for k in ("lr", "steps", "on")] == [float, int, bool]
    path = tmp_path / "opt.yaml"
    save_config({"lr": np.float64(0.25)}, str(path))
    assert load_config(str(path)) == {"lr": 0.25}


# ---------------------------------------------------------------------------------------------------------------------
# save_config
# ---------------------------------------------------------------------------------------------------------------------

def test_save_config_writes_nothing_on_a_process_other_than_the_first(tmp_path, monkeypatch):
    monkeypatch.setattr(config, "is_first_process", lambda: False)
    path = tmp_path / "run" / "opt.yaml"
    save_config({"a": 1}, str(path))
    assert not path.exists() and not (tmp_path / "run").exists()


def test_save_config_writes_keys_sorted(tmp_path):
    path = tmp_path / "opt.yaml"
    save_config({"zeta": 1, "alpha": (1, 2), "mid": Path("p")}, str(path))
    text = path.read_text()
    assert [line.split(":")[0] for line in text.splitlines()] == ["alpha", "mid", "zeta"]
    assert yaml.safe_load(text) == {"alpha": [1, 2], "mid": "p", "zeta": 1}


def test_save_config_creates_missing_folders(tmp_path):
    path = tmp_path / "a" / "b" / "opt.yaml"
    save_config({"k": 1}, str(path))
    assert load_config(str(path)) == {"k": 1}


# ---------------------------------------------------------------------------------------------------------------------
# The file's shape
# ---------------------------------------------------------------------------------------------------------------------

def test_an_empty_preset_sets_nothing(tmp_path):
    path = write(tmp_path, "")
    assert load_config(path) == {}
    assert load_preset(_parser(), path) == {}
    assert load_preset(_parser(), write(tmp_path, "# only a comment\n", "c.yaml")) == {}


def test_a_preset_that_is_a_scalar_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="expected a mapping of flag names to values, got str"):
        load_config(write(tmp_path, "hello\n"))
    with pytest.raises(ConfigError, match="expected a mapping of flag names to values, got int"):
        load_config(write(tmp_path, "5\n", "n.yaml"))


# ---------------------------------------------------------------------------------------------------------------------
# Flag types
# ---------------------------------------------------------------------------------------------------------------------

def test_positive_float_refuses_infinity():
    with pytest.raises(argparse.ArgumentTypeError, match="a finite number > 0"):
        positive_float("inf")
    assert positive_float("1e-4") == 1e-4


def test_clip_norm_accepts_zero_and_infinity():
    assert clip_norm("0") == 0.0
    assert clip_norm("inf") == math.inf
    with pytest.raises(argparse.ArgumentTypeError):
        clip_norm("-0.5")


def test_seed_int_upper_bound_is_exclusive():
    assert seed_int(str(2**64 - 1)) == 2**64 - 1
    with pytest.raises(argparse.ArgumentTypeError, match=r"\[0, 2\^64\)"):
        seed_int(str(2**64))


def test_decay_or_none_reads_null_as_no_ema():
    assert decay_or_none("null") is None
    assert decay_or_none(" NULL ") is None
    assert decay_or_none("0.5") == 0.5


# ---------------------------------------------------------------------------------------------------------------------
# Training length
# ---------------------------------------------------------------------------------------------------------------------

def test_epochs_to_iters_refuses_a_batch_size_below_one():
    with pytest.raises(ValueError, match="epochs and batch_size must be >= 1"):
        epochs_to_iters(1, 10, 0)
    with pytest.raises(ValueError, match="epochs and batch_size must be >= 1"):
        epochs_to_iters(1, 10, -4)


def test_resolve_max_iters_accepts_one_step():
    assert resolve_max_iters(argparse.Namespace(max_iters=1, epoch=None, batch_size=1), 10) == 1


def test_resolve_max_iters_without_length_asks_for_one():
    for epoch in (None, 0):
        with pytest.raises(ValueError, match="set --max_iters or --epoch"):
            resolve_max_iters(argparse.Namespace(max_iters=None, epoch=epoch, batch_size=1), 10)
    with pytest.raises(ValueError, match="set --max_iters or --epoch"):
        resolve_max_iters(argparse.Namespace(), 10)
