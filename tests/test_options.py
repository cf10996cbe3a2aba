"""Shared options: flags, YAML presets (precedence, casting, unknown keys), saved configs, epochs to steps."""

from __future__ import annotations

import argparse
import math
import os
import re
from pathlib import Path

import pytest
import yaml

from options.base_options import get_base_parser
from options.config import (
    ConfigError,
    _actions_by_dest,
    epochs_to_iters,
    load_config,
    load_preset,
    option_origin,
    parse_with_config,
    resolve_max_iters,
    save_config,
)
from utils.dataset_specs import dataset_names
from utils.engine import EngineConfig


def write(tmp_path, text: str, name: str = "preset.yaml") -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def parse(argv: list[str]) -> argparse.Namespace:
    return parse_with_config(get_base_parser(), argv)


def test_base_flags_have_help_and_field_defaults():
    parser = get_base_parser()
    for action in parser._actions:
        if action.dest != "help":
            assert action.help, f"{action.option_strings} has no help text"
    args = parse(["--name", "AE"])
    assert (args.lr, args.warm_up_iter, args.milestones, args.lr_decay, args.seed) == (2e-4, 2000, [150000, 250000],
                                                                                        0.1, 3407)
    assert args.dataset_name == "t2m" and args.is_continue is False and args.ema_decay is None
    # Imported datasets can live anywhere (--data_root), so the name is checked by get_dataset_spec, not argparse.
    assert all(name in parser._option_string_actions["--dataset_name"].help for name in dataset_names())


def test_precedence_defaults_yaml_command_line(tmp_path):
    preset = write(tmp_path, "name: from_yaml\nbatch_size: 64\nlr: 0.001\n")
    args = parse(["--config", preset, "--batch_size", "32"])
    assert args.name == "from_yaml"  # YAML over default
    assert args.batch_size == 32  # command line over YAML
    assert args.lr == 0.001 and args.seed == 3407  # YAML value; untouched default
    assert args.config == preset


def test_option_origin_names_the_preset_that_set_a_value(tmp_path):
    preset = write(tmp_path, "name: from_yaml\nbatch_size: 64\n")
    args = parse(["--config", preset, "--batch_size", "32"])
    assert option_origin(args, "name") == f"--name (name: from_yaml in {preset})"
    assert option_origin(args, "batch_size") == "--batch_size"  # the command line's value, not the preset's
    assert option_origin(args, "lr") == "--lr"  # a default
    assert option_origin(parse(["--name", "x"]), "name") == "--name"
    # PyYAML reads 1e-4 and a quoted number as strings: the value the preset set is still credited to it.
    preset = write(tmp_path, "name: x\nlr: 1e-4\nbatch_size: '64'\n")
    args = parse(["--config", preset])
    assert option_origin(args, "lr") == f"--lr (lr: 0.0001 in {preset})"
    assert option_origin(args, "batch_size") == f"--batch_size (batch_size: 64 in {preset})"
    # The same value typed again on the command line is the user's: the flag is named as typed.
    assert option_origin(parse(["--config", preset, "--batch_size", "64"]), "batch_size") == "--batch_size"


def test_yaml_values_are_cast_through_flag_types(tmp_path):
    assert yaml.safe_load("lr: 1e-4")["lr"] == "1e-4"  # the PyYAML behaviour the casting exists for
    preset = write(tmp_path, "name: x\nlr: 1e-4\nmilestones: ['1000', 2000.0]\nweight_decay: 0\n"
                             "is_continue: true\nema_decay: 0.999\nmax_iters: 1.0e+3\n")
    args = parse(["--config", preset])
    assert args.lr == 1e-4 and isinstance(args.lr, float)
    assert args.milestones == [1000, 2000] and all(type(m) is int for m in args.milestones)
    assert args.weight_decay == 0.0 and isinstance(args.weight_decay, float)
    assert args.is_continue is True and args.ema_decay == 0.999 and args.max_iters == 1000
    args = parse(["--config", write(tmp_path, "name: x\nmilestones: 5000\n", "scalar.yaml")])
    assert args.milestones == [5000]  # a single value for a list flag


def test_unknown_yaml_key_names_file_key_and_close_matches(tmp_path, capsys):
    preset = write(tmp_path, "name: x\nbatchsize: 64\n")
    with pytest.raises(SystemExit):
        parse(["--config", preset])
    err = capsys.readouterr().err
    assert preset in err and "'batchsize'" in err and "batch_size" in err
    with pytest.raises(ConfigError, match="unknown key 'zzz'"):
        load_preset(get_base_parser(), write(tmp_path, "zzz: 1\n", "z.yaml"))


def test_a_key_spelled_as_another_flag_of_the_setting_names_the_key_to_write(tmp_path):
    """A preset key is the flag's destination: a key spelled as its other flag (MoMask's --loss_vel, --cfg) says which
    key holds that setting, instead of suggesting a different setting of a close name (loss_joint_vel)."""
    from options.eval_generator_options import get_evaluation_generator_parser
    from options.tokenizer_options import get_train_vq_parser

    cases = ((get_train_vq_parser, "loss_vel: 0.5", "aux_loss_joints", "--loss_vel"),
             (get_evaluation_generator_parser, "cond_scale: 4", "cfg", "--cond_scale"),
             (get_evaluation_generator_parser, "topkr: 0.9", "topk_filter_thres", "--topkr"),
             # A flag that takes no value stands for one value of the key: the hint gives it, not the opposite.
             (get_evaluation_generator_parser, "no_mm: true", "cal_mm: false", "--no_mm"),
             (get_evaluation_generator_parser, "gumbel_sample: true", "sampling: gumbel", "--gumbel_sample"),
             (get_evaluation_generator_parser, "ema: true", "no_ema: false", "--ema"),
             (get_base_parser, "no-is_continue: true", "is_continue: false", "--no-is_continue"))
    for get_parser, text, key, flag in cases:
        path = write(tmp_path, text + "\n", "alias.yaml")
        with pytest.raises(ConfigError) as error:
            load_preset(get_parser(), path)
        message = str(error.value)
        assert message.startswith(f"{path}: unknown key {text.split(':')[0]!r}") and "did you mean" not in message
        assert f"{flag} is written {key}" in message, message


def test_a_key_with_a_shortcut_flag_is_read_as_its_own_flag(tmp_path):
    """A setting that also has a shortcut flag (MoMask's --gumbel_sample for --sampling gumbel, --no_mm for
    --no-cal_mm, --max_epoch for --epoch) is read from a preset through its own flag: its type and choices."""
    from options.eval_generator_options import get_evaluation_generator_parser, get_sample_parser
    from options.eval_options import get_train_evaluator_parser

    args = parse_with_config(get_sample_parser(), ["--config", write(tmp_path, "name: x\nsampling: categorical\n")])
    assert args.sampling == "categorical"
    with pytest.raises(ConfigError, match=r"sampling: 'greedy' is not one of \['categorical', 'gumbel'\]"):
        load_preset(get_sample_parser(), write(tmp_path, "sampling: greedy\n"))
    assert load_preset(get_evaluation_generator_parser(), write(tmp_path, "cal_mm: false\n")) == {"cal_mm": False}
    assert load_preset(get_train_evaluator_parser(), write(tmp_path, "epoch: 3.0\n")) == {"epoch": 3}


@pytest.mark.parametrize("text, message", [
    ("batch_size: 2.5\n", "expected an integer"),
    ("lr: fast\n", "cannot read 'fast' as positive_float"),
    ("is_continue: 'yes'\n", "expected true or false"),
    ("mixed_precision: fp8\n", "not one of"),
    ("milestones: [10, x]\n", r"milestones\[1\]"),
    ("lr: [1, 2]\n", "expected a single value"),
    ("- lr\n", "expected a mapping"),
])
def test_bad_yaml_values_fail_with_the_field(tmp_path, text, message):
    with pytest.raises(ConfigError, match=message):
        load_preset(get_base_parser(), write(tmp_path, text))


def test_missing_config_file_and_missing_name(tmp_path, capsys):
    with pytest.raises(SystemExit):
        parse(["--config", str(tmp_path / "nope.yaml")])
    assert "nope.yaml" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        parse([])
    assert "--name is required" in capsys.readouterr().err


def test_a_shipped_preset_is_found_from_another_working_directory(tmp_path, monkeypatch, capsys):
    from options.config import CODE_ROOT
    from options.tokenizer_options import get_train_vq_parser

    monkeypatch.chdir(tmp_path)
    args = parse_with_config(get_train_vq_parser(), ["--config", "options/configs/tiny_vq.yaml", "--name", "x"])
    assert args.batch_size == 32 and args.max_iters == 300 and args.dataset_name == "synthetic"
    assert args.config == os.path.join(CODE_ROOT, "options", "configs", "tiny_vq.yaml")
    # A file of that relative path in the working directory comes first: paths are used as written.
    (tmp_path / "options" / "configs").mkdir(parents=True)
    (tmp_path / "options" / "configs" / "tiny_vq.yaml").write_text("batch_size: 8\n")
    args = parse_with_config(get_train_vq_parser(), ["--config", "options/configs/tiny_vq.yaml", "--name", "x"])
    assert args.batch_size == 8 and args.config == "options/configs/tiny_vq.yaml"
    with pytest.raises(SystemExit):
        parse(["--config", "options/configs/no_such_preset.yaml", "--name", "x"])
    assert "cannot read config file options/configs/no_such_preset.yaml" in capsys.readouterr().err


def test_saved_config_round_trips_and_is_a_valid_preset(tmp_path):
    args = parse(["--name", "AE", "--milestones", "10", "20", "--lr", "3e-4", "--ema_decay", "0.99"])
    path = str(tmp_path / "run" / "opt.yaml")
    save_config(args, path)
    assert load_config(path) == vars(args)
    again = parse(["--config", path])
    assert vars(again) == vars(args)  # config: null, the record of a run started without a preset, is kept


def test_a_run_resumed_from_its_opt_yaml_keeps_the_preset_it_started_from(tmp_path):
    """``--config <run>/opt.yaml --is_continue`` rewrites the run's opt.yaml: its ``config`` still names the preset
    the run was started from, not the opt.yaml itself, while an error still names the file a value was read from."""
    preset = write(tmp_path, "name: x\nbatch_size: 64\n")
    path = str(tmp_path / "run" / "opt.yaml")
    save_config(parse(["--config", preset]), path)
    for _ in range(2):  # resumed twice: the record survives each rewrite
        resumed = parse(["--config", path, "--is_continue"])
        assert resumed.config == preset and resumed.is_continue and resumed.batch_size == 64
        save_config(resumed, path)
        assert load_config(path)["config"] == preset
    assert option_origin(resumed, "batch_size") == f"--batch_size (batch_size: 64 in {path})"
    # An opt.yaml written before the record existed names itself, as before.
    old = str(tmp_path / "old" / "opt.yaml")
    save_config({k: v for k, v in vars(resumed).items() if k != "config"}, old)
    assert parse(["--config", old]).config == old


def _config_parsers() -> list[argparse.ArgumentParser]:
    """Every script parser that reads --config presets."""
    from options.eval_generator_options import get_evaluation_generator_parser, get_sample_parser
    from options.eval_options import get_evaluation_ae_parser, get_train_evaluator_parser
    from options.generator_options import get_train_length_estimator_parser, get_train_mardm_parser
    from options.token_generator_options import get_train_res_transformer_parser, get_train_t2m_transformer_parser
    from options.tokenizer_options import get_train_ae_parser, get_train_vq_parser

    return [get_train_ae_parser(), get_train_vq_parser(), get_train_mardm_parser(), get_train_length_estimator_parser(),
            get_train_t2m_transformer_parser(), get_train_res_transformer_parser(), get_train_evaluator_parser(),
            get_evaluation_ae_parser(), get_evaluation_generator_parser(), get_sample_parser()]


def test_a_flag_a_preset_turns_on_is_turned_off_on_the_command_line(tmp_path):
    """The command line overrides the preset for on/off flags too: --no-<flag> turns off what the preset (or a run's
    opt.yaml, which records is_continue) turns on; --<flag> still turns it on, and both count as typed."""
    from options.config import given_on_command_line

    preset = write(tmp_path, "name: x\nis_continue: true\nneed_evaluation: true\ndetect_anomaly: true\n")
    args = parse(["--config", preset, "--no-is_continue", "--no-need_evaluation", "--no-detect_anomaly"])
    assert (args.is_continue, args.need_evaluation, args.detect_anomaly) == (False, False, False)
    assert {"is_continue", "need_evaluation", "detect_anomaly"} <= given_on_command_line(args)
    args = parse(["--name", "x", "--is_continue", "--need_evaluation"])
    assert (args.is_continue, args.need_evaluation, args.detect_anomaly) == (True, True, False)
    path = str(tmp_path / "opt.yaml")
    save_config(args, path)
    assert parse(["--config", path, "--no-is_continue"]).is_continue is False
    # Every on/off flag named for what it turns on can be turned off again (a no_* flag is itself the way off).
    for parser in _config_parsers():
        for action in parser._actions:
            if action.nargs == 0 and action.const is True and not action.option_strings[0].startswith("--no_"):
                assert isinstance(action, argparse.BooleanOptionalAction), (parser.description, action.dest)


def test_a_no_flag_a_preset_turns_on_is_undone_by_its_positive_twin(tmp_path):
    """A --no_<x> switch (--no_ema, --no_snap, --no_render, --no_gt_cache) that a preset sets to true is undone by
    --<x> on the command line: same key, counted as typed, named once in --help; the preset still spells it no_<x>."""
    from options.config import given_in_config, given_on_command_line

    switches = 0
    for parser in _config_parsers():
        for action in list(parser._actions):
            flag = action.option_strings[0] if action.option_strings else ""
            if not (flag.startswith("--no_") and action.nargs == 0 and action.const is True):
                continue
            switches += 1
            dest, twin = action.dest, "--" + flag[len("--no_"):]
            preset = write(tmp_path, f"name: x\n{dest}: true\n")
            on = parse_with_config(parser, ["--config", preset])
            assert getattr(on, dest) is True and dest in given_in_config(on)
            off = parse_with_config(parser, ["--config", preset, twin])
            assert getattr(off, dest) is False, (parser.description, twin)
            assert dest in given_on_command_line(off) and option_origin(off, dest) == flag
            assert load_preset(parser, write(tmp_path, f"{dest}: false\n")) == {dest: False}
            usage = parser.format_usage().split()
            assert usage.count(f"[{flag}]") == 1 and usage.count(f"[{twin}]") == 1, (parser.description, usage)
    assert switches == 9  # evaluation_AE.py 3, evaluation_MARDM.py 3, sample.py 3


def test_a_tokenizer_flag_turned_off_overrides_the_registry_entry(tmp_path):
    """--kmeans_init / --rotation_trick / --shared_codebook keep the registry value when left out (None) and pass
    False when turned off, also against a preset that turns them on."""
    from options.tokenizer_options import get_train_vq_parser, model_overrides

    preset = write(tmp_path, "name: x\nkmeans_init: true\nrotation_trick: true\nshared_codebook: true\n")
    args = parse_with_config(get_train_vq_parser(), ["--config", preset, "--no-kmeans_init", "--no-rotation_trick",
                                                     "--no-shared_codebook"])
    assert {k: model_overrides(args)[k] for k in ("kmeans_init", "rotation_trick", "shared_codebook")} == {
        "kmeans_init": False, "rotation_trick": False, "shared_codebook": False}
    left_out = model_overrides(parse_with_config(get_train_vq_parser(), ["--name", "x"]))
    assert not {"kmeans_init", "rotation_trick", "shared_codebook"} & set(left_out)


def test_saved_config_without_milestones_is_a_valid_preset(tmp_path):
    """The length estimator and the evaluator train without milestones: their opt.yaml holds ``milestones: []``, and
    ``--config <run>/opt.yaml --is_continue`` must read it back."""
    from options.eval_options import get_train_evaluator_parser
    from options.generator_options import get_train_length_estimator_parser

    for get_parser in (get_train_length_estimator_parser, get_train_evaluator_parser):
        args = parse_with_config(get_parser(), [])
        path = str(tmp_path / get_parser.__name__ / "opt.yaml")
        save_config(args, path)
        again = parse_with_config(get_parser(), ["--config", path])
        assert again.milestones == [] and vars(again) == vars(args)
    # Where the flag's own default has milestones, an empty list stays an error naming the file and the field.
    with pytest.raises(ConfigError, match="preset.yaml: milestones: expected at least one value"):
        load_preset(get_base_parser(), write(tmp_path, "milestones: []\n"))


def test_epochs_to_iters_and_resolve_max_iters():
    assert epochs_to_iters(50, 1000, 256) == 150
    assert epochs_to_iters(2, 1000, 256, drop_last=False) == 8
    with pytest.raises(ValueError, match="no full batch"):
        epochs_to_iters(1, 100, 256)
    assert resolve_max_iters(parse(["--name", "a", "--epoch", "3", "--batch_size", "10"]), 95) == 27
    assert resolve_max_iters(parse(["--name", "a", "--max_iters", "7"]), 95) == 7


def test_training_length_on_the_command_line_replaces_the_presets(tmp_path, capsys):
    preset = write(tmp_path, "max_iters: 300\nepoch: 50\n")
    assert resolve_max_iters(parse(["--config", preset, "--name", "a"]), 95) == 300
    by_epoch = parse(["--config", preset, "--name", "a", "--epoch", "1", "--batch_size", "10"])
    assert by_epoch.max_iters is None and resolve_max_iters(by_epoch, 95) == 9
    assert parse(["--config", preset, "--name", "a", "--epoch=2", "--max_iters", "5"]).max_iters == 5
    assert parse(["--config", preset, "--name", "a", "--epo", "2"]).max_iters is None  # an abbreviation counts too
    for flag in ("--max_iters", "--epoch"):
        with pytest.raises(SystemExit):
            parse(["--name", "a", flag, "0"])
        assert f"{flag} must be at least 1, got 0" in capsys.readouterr().err
    # A preset's 0 is refused naming the file it came from, not only a flag the user did not type.
    for key, text in (("max_iters", "0"), ("epoch", "0"), ("batch_size", "0"), ("batch_size", "'0'")):
        bad = write(tmp_path, f"{key}: {text}\n", name=f"{key}.yaml")
        with pytest.raises(SystemExit):
            parse(["--config", bad, "--name", "a"])
        assert f"--{key} ({key}: 0 in {bad}) must be at least 1, got 0" in capsys.readouterr().err
    # 0 steps is never "not given": a namespace built in code with max_iters 0 does not fall back to --epoch.
    with pytest.raises(ValueError, match="max_iters must be at least 1, got 0"):
        resolve_max_iters(argparse.Namespace(max_iters=0, epoch=3, batch_size=10), 95)


def test_engine_config_from_parsed_options():
    args = parse(["--name", "a", "--max_iters", "100", "--milestones", "10", "--grad_clip", "1", "--mixed_precision",
                  "bf16", "--num_workers", "0"])
    cfg = EngineConfig.from_namespace(args, eval_every=5)
    assert cfg.max_iters == 100 and cfg.milestones == (10,) and cfg.grad_clip == 1.0
    assert cfg.mixed_precision == "bf16" and cfg.eval_every == 5 and cfg.ema_decay is None
    assert cfg.batch_size == 256 and cfg.seed == 3407 and cfg.betas == (0.9, 0.99)


def test_help_gives_each_default_once_and_only_real_ones():
    """--help adds "(default: X)" only where the help text does not already say its default and X is a value."""
    from options.eval_generator_options import get_sample_parser
    from options.eval_options import get_evaluation_ae_parser
    from options.tokenizer_options import get_train_ae_parser

    for parser in (get_sample_parser(), get_evaluation_ae_parser(), get_train_ae_parser()):
        text = " ".join(parser.format_help().split())
        for unset in ("(default: None)", "(default: False)", "(default: )"):
            assert unset not in text
        for action in parser._actions:
            if action.help:
                shown = " ".join(parser._get_formatter()._get_help_string(action).split())
                assert shown.lower().count("(default:") <= 1, action.dest
    assert "(default: 0)" in " ".join(get_evaluation_ae_parser().format_help().split())   # 0 is a value
    assert "(default: 3407)" in " ".join(get_sample_parser().format_help().split())
    # Python 3.10's BooleanOptionalAction appends " (default: %(default)s)" to its help itself: not shown for off.
    from options.config import DefaultsHelpFormatter

    parser = argparse.ArgumentParser(formatter_class=DefaultsHelpFormatter)
    parser.add_argument("--bvh", action=argparse.BooleanOptionalAction, default=False,
                        help="also export BVH (default: %(default)s)")
    parser.add_argument("--cal_mm", action=argparse.BooleanOptionalAction, default=True,
                        help="compute multimodality (default: %(default)s)")
    text = " ".join(parser.format_help().split())
    assert "also export BVH --cal_mm" in text and "compute multimodality (default: True)" in text


def test_a_key_given_twice_is_an_error_naming_the_line(tmp_path):
    """PyYAML keeps the last of two equal keys silently: a preset that sets a flag twice is refused instead."""
    path = write(tmp_path, "name: x\nlr: 1.0e-3\nbatch_size: 8\nlr: 2.0e-4\n")
    with pytest.raises(ConfigError, match=r"(?s)preset.yaml: not valid YAML: .*duplicate key 'lr'.*line 4"):
        load_config(path)
    # A merge key (<<) that a key of the mapping overrides is not a duplicate.
    assert load_config(write(tmp_path, "base: &b {lr: 1}\nrun:\n  <<: *b\n  lr: 2\n"))["run"] == {"lr": 2}


def test_a_preset_that_is_not_utf8_names_the_file(tmp_path, capsys):
    path = tmp_path / "latin1.yaml"
    path.write_bytes("name: café\n".encode("latin-1"))
    with pytest.raises(ConfigError, match=r"latin1.yaml: not UTF-8 text"):
        load_config(str(path))
    with pytest.raises(SystemExit):
        parse(["--config", str(path)])
    assert "latin1.yaml: not UTF-8 text" in capsys.readouterr().err
    path.write_bytes("name: café\n".encode())
    assert load_config(str(path)) == {"name": "café"}


def test_a_text_flag_reads_a_plain_yaml_value_as_written(tmp_path):
    """YAML 1.1 reads ``no`` as False, ``1.10`` as 1.1 and ``010`` as 8: a text flag gets the text the preset wrote,
    as if typed on the command line, so ``mixed_precision: no`` is the default setting rather than 'False'."""
    path = write(tmp_path, "mixed_precision: no\nname: 1.10\ndataset_name: off\ndata_root: 010\n")
    assert load_preset(get_base_parser(), path) == {"mixed_precision": "no", "name": "1.10", "dataset_name": "off",
                                                    "data_root": "010"}
    assert load_preset(get_base_parser(), write(tmp_path, "data_root: ~\n")) == {"data_root": None}  # null stays
    # Quoted values stay as read; so do the floats of number flags.
    path = write(tmp_path, "name: 'yes'\nlr: 1.10\n")
    assert load_preset(get_base_parser(), path) == {"name": "yes", "lr": 1.1}
    from options.tokenizer_options import get_train_vq_parser

    assert load_preset(get_train_vq_parser(), write(tmp_path, "conditions: [on, 1.50]\n")) == {
        "conditions": ["on", "1.50"]}


def test_a_number_flag_reads_a_plain_yaml_integer_as_typed(tmp_path):
    """YAML 1.1 reads ``0042`` as octal 34, ``1:00`` as 60 and ``0x10`` as 16: a preset's zero-padded seed or step
    count changed silently (``0049`` stayed 49). A number flag reads the text, as the command line does."""
    path = write(tmp_path, "seed: 0042\nmax_iters: 0100\nbatch_size: 032\nmilestones: [0100, 0200]\n"
                           "warm_up_iter: 1_000\ngrad_clip: .inf\nlr: 2\n")
    assert load_preset(get_base_parser(), path) == {"seed": 42, "max_iters": 100, "batch_size": 32,
                                                    "milestones": [100, 200], "warm_up_iter": 1000,
                                                    "grad_clip": math.inf, "lr": 2.0}
    for text, message in [("warm_up_iter: 1:00\n", r"warm_up_iter: cannot read '1:00' as non_negative_int"),
                          ("lr: 0x10\n", r"lr: cannot read '0x10' as positive_float"),
                          ("lr: 1:30.5\n", r"lr: cannot read '1:30.5' as positive_float")]:
        with pytest.raises(ConfigError, match=message):
            load_preset(get_base_parser(), write(tmp_path, text))


def test_a_repeatable_flag_takes_a_list_or_one_value_and_the_command_line_replaces_it(tmp_path):
    """``--edit_frames`` (action append) from a preset is a list of spans, never the characters of one string, and
    spans typed on the command line replace the preset's rather than adding to them."""
    from options.eval_generator_options import get_sample_parser

    many = write(tmp_path, "edit_frames: ['0:40', '100:']\n")
    assert parse_with_config(get_sample_parser(), ["--config", many]).edit_frames == ["0:40", "100:"]
    one = write(tmp_path, "edit_seconds: '1:2'\n", "one.yaml")
    assert parse_with_config(get_sample_parser(), ["--config", one]).edit_seconds == ["1:2"]
    args = parse_with_config(get_sample_parser(), ["--config", many, "--edit_frames", "8:16"])
    assert args.edit_frames == ["8:16"]
    assert parse_with_config(get_sample_parser(), ["--edit_frames", "8:16"]).edit_frames == ["8:16"]
    assert parse_with_config(get_sample_parser(), []).edit_frames is None


def test_null_is_not_a_value_of_an_on_off_flag(tmp_path):
    """``cal_mm: null`` would be read as off (None) although the flag is on by default: an on/off flag with a default
    takes true or false; one whose default is None (the registry decides) may be left null."""
    from options.eval_generator_options import get_evaluation_generator_parser
    from options.tokenizer_options import get_train_vq_parser

    with pytest.raises(ConfigError, match="cal_mm: expected true or false, got null"):
        load_preset(get_evaluation_generator_parser(), write(tmp_path, "cal_mm: null\n"))
    with pytest.raises(ConfigError, match="is_continue: expected true or false, got null"):
        load_preset(get_base_parser(), write(tmp_path, "is_continue:\n"))
    assert load_preset(get_train_vq_parser(), write(tmp_path, "kmeans_init: null\n")) == {"kmeans_init": None}


def test_null_is_refused_where_the_flag_has_a_value_by_default(tmp_path):
    """``batch_size: null`` (or ``seed``, ``lr``, ``milestones``...) would reach the script as None and fail much later,
    or mean something nobody asked for: null is a value only of a flag whose default is None (left to a registry entry
    or a dataset spec) or one marked nullable, such as ``ema_decay``, whose null turns the EMA off even where
    train_MARDM.py keeps one by default."""
    from options.generator_options import get_train_mardm_parser

    for key, expected in (("batch_size", "an integer"), ("seed", "a whole number in [0, 2^64)"),
                          ("lr", "a finite number > 0"),
                          ("num_workers", "a whole number >= 0"), ("checkpoints_dir", "a text value"),
                          ("milestones", "a list (a whole number >= 0 each)"),
                          ("mixed_precision", "one of ['bf16', 'fp16', 'no']")):
        path = write(tmp_path, f"{key}: null\n", name=f"{key}.yaml")
        with pytest.raises(ConfigError, match=re.escape(f"{key}.yaml: {key}: expected {expected}, got null")):
            load_preset(get_base_parser(), path)
    assert load_preset(get_train_mardm_parser(), write(tmp_path, "ema_decay: null\n")) == {"ema_decay": None}
    args = parse_with_config(get_train_mardm_parser(), ["--config", write(tmp_path, "name: x\nema_decay: ~\n")])
    assert args.ema_decay is None and get_train_mardm_parser().parse_args([]).ema_decay == 0.9999
    # The rule, over every script's flags: null reads as None exactly where None is the default or is marked nullable.
    for parser in _config_parsers():
        for dest, action in _actions_by_dest(parser).items():
            if dest == "config":  # the record of a run's opt.yaml, not a setting
                continue
            path = write(tmp_path, f"{dest}: null\n", name="one.yaml")
            if action.default is None or dest == "ema_decay":
                assert load_preset(parser, path) == {dest: None}, (parser.description, dest)
            else:
                with pytest.raises(ConfigError, match=rf"one\.yaml: {dest}: expected .+, got null"):
                    load_preset(parser, path)


def test_a_preset_that_names_another_preset_is_refused(tmp_path, capsys):
    """Presets do not nest: ``config: base.yaml`` in a preset would be silently ignored and the run would train
    without base.yaml's settings, so it is refused, naming the file; only a run's opt.yaml records a preset there."""
    base = write(tmp_path, "lr: 0.001\n", name="base.yaml")
    mine = write(tmp_path, f"config: {base}\nname: x\n", name="mine.yaml")
    with pytest.raises(ConfigError, match=re.escape(f"{mine}: config: {base} is not read: presets do not nest")):
        load_preset(get_base_parser(), mine)
    with pytest.raises(SystemExit):
        parse(["--config", mine])
    assert "presets do not nest" in capsys.readouterr().err
    assert load_preset(get_base_parser(), write(tmp_path, "config: null\nname: x\n")) == {"name": "x"}
    run = str(tmp_path / "run" / "opt.yaml")
    save_config(parse(["--config", base, "--name", "x"]), run)
    assert parse(["--config", run]).lr == 0.001
    # A copy of that opt.yaml under another name is a preset: its record is refused, the message saying to drop it.
    copy = write(tmp_path, Path(run).read_text(), name="copied.yaml")
    with pytest.raises(ConfigError, match=r"a copy of a run's opt\.yaml holds them already: delete the line"):
        load_preset(get_base_parser(), copy)
    without = write(tmp_path, "".join(line for line in Path(run).read_text().splitlines(keepends=True)
                                      if not line.startswith("config:")), name="copied_without.yaml")
    assert parse(["--config", without]).lr == 0.001


def test_a_value_that_looks_like_a_flag_is_not_counted_as_typed():
    """A prompt argparse reads as a value (it starts with -- but names no flag: it has a space, or comes after =) is
    not counted as that flag typed, which would make its preset value lose to the default (``--epoch``) or blame it."""
    from options.config import given_on_command_line
    from options.eval_generator_options import get_sample_parser

    for argv in (["--text_prompt", "--seed 3 walks"], ["--text_prompt=--seed=3 walks"], ["--text_prompt", "--see x"],
                 ["--text_prompt", "a person --seed=3 walks"]):
        args = parse_with_config(get_sample_parser(), argv)
        assert args.text_prompt == argv[-1].removeprefix("--text_prompt=") and args.seed == 3407
        assert given_on_command_line(args) == {"text_prompt"}, argv
