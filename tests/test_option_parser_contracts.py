"""Command-line parsers of the training, evaluation and data-preparation stages: the defaults each stage takes from its
published recipe, the range and type of the flags that lacked a check of their own, flag forms (--no-, aliases, empty
lists), mutually exclusive and required flags, and the architecture overrides handed to the constructors."""

from __future__ import annotations

import argparse

import pytest
import torch

from options.base_options import get_base_parser
from options.config import parse_with_config
from options.eval_options import get_evaluation_ae_parser, get_train_evaluator_parser, torch_device
from options.generator_options import get_train_length_estimator_parser, get_train_mardm_parser
from options.prepare_data_options import get_prepare_data_parser
from options.tokenizer_options import get_train_ae_parser, get_train_vq_parser, model_overrides
from utils.eval_protocol import DEFAULT_REPLICATIONS, DEFAULT_SEED
from utils.paths import project_path


def refused(parser, argv: list[str], capsys) -> str:
    """The error argparse prints for ``argv`` (which must be refused)."""
    with pytest.raises(SystemExit):
        parse_with_config(parser, argv)
    return capsys.readouterr().err


# ----------------------------------------------------------------------------------------------------------------------
# Defaults of the published recipes
# ----------------------------------------------------------------------------------------------------------------------

def test_shared_flags_default_to_mardm_ae_run_settings():
    args = parse_with_config(get_base_parser(), ["--name", "r"])
    assert (args.batch_size, args.epoch, args.max_iters, args.num_workers) == (256, 50, None, 4)
    assert (args.grad_clip, args.weight_decay, args.log_every, args.eval_every, args.save_every) == (
        0.0, 0.0, 10, 0, 500)
    assert (args.mixed_precision, args.need_evaluation, args.detect_anomaly) == ("no", False, False)


def test_tokenizer_stages_default_to_their_papers_losses_and_windows():
    # MARDM's AE: joint-position weight 1.0; MoMask's RVQ-VAE: loss_vel 0.5; both commit 0.02 and smooth L1.
    ae = parse_with_config(get_train_ae_parser(), ["--name", "a"])
    vq = parse_with_config(get_train_vq_parser(), ["--name", "v"])
    assert (ae.model, ae.aux_loss_joints, vq.aux_loss_joints) == ("AE_Model", 1.0, 0.5)
    for args in (ae, vq):
        assert (args.commit, args.recons_loss, args.loss_joint_vel, args.feat_bias) == (0.02, "l1_smooth", 0.0, 1.0)
        assert (args.window_mode, args.window_stride, args.val_batches) == ("random", 1, 50)
        assert (args.lr, args.warm_up_iter, args.milestones, args.lr_decay, args.batch_size, args.epoch) == (
            2e-4, 2000, [150_000, 250_000], 0.1, 256, 50)
    assert (vq.model, vq.conditions, vq.cond_drop_prob) == (None, [], 0.1)


def test_generator_stages_default_to_mardm_and_momask_recipes():
    mardm = parse_with_config(get_train_mardm_parser(), ["--name", "g"])
    assert (mardm.batch_size, mardm.lr, mardm.weight_decay, mardm.warm_up_iter, mardm.milestones, mardm.lr_decay) == (
        64, 2e-4, 1e-5, 2000, [50_000], 0.1)
    assert (mardm.ema_decay, mardm.epoch, mardm.seed, mardm.time_steps) == (0.9999, 500, 3407, 18)
    # None: the registry entry's value (cfg 4.5, and 2.5 on kit; cond_drop_prob 0.1) is taken later.
    assert (mardm.cfg, mardm.cond_drop_prob, mardm.ae_which, mardm.text_encoder, mardm.val_batches) == (
        None, None, "best", "minilm", 0)
    length = parse_with_config(get_train_length_estimator_parser(), [])
    assert (length.name, length.batch_size, length.lr, length.milestones, length.lr_decay, length.epoch) == (
        "length_estimator", 64, 1e-4, [], 1.0, 50)
    assert (length.hidden_dim, length.dropout, length.text_encoder) == (512, 0.2, "minilm")


def test_evaluator_training_defaults_to_guo_et_al_recipe():
    args = parse_with_config(get_train_evaluator_parser(), [])
    assert (args.name, args.batch_size, args.lr, args.epoch, args.warm_up_iter, args.milestones, args.lr_decay) == (
        "text_mot_match", 32, 1e-4, 300, 0, [], 1.0)
    assert (args.grad_clip, args.num_workers, args.seed) == (0.5, 2, DEFAULT_SEED)
    assert (args.margin, args.neg_shift, args.pretrain_window, args.sizes) == (10.0, "nonzero", 24, "official")
    assert parse_with_config(get_train_evaluator_parser(), ["--max_epoch", "7"]).epoch == 7


def test_tokenizer_evaluation_defaults_to_the_protocol():
    args = parse_with_config(get_evaluation_ae_parser(), ["--device", "cpu"])
    assert (args.split, args.replications, args.seed, args.batch_size, args.per_motion) == (
        "test", DEFAULT_REPLICATIONS, DEFAULT_SEED, 32, False)
    assert args.glove_dir == project_path("glove") and args.device == "cpu"


def test_prepare_data_defaults():
    parser = get_prepare_data_parser()
    assert parser.parse_args(["synthetic"]).num_motions == 400
    assert parser.parse_args(["bvh", "--src", "s", "--out", "o", "--skeleton", "lafan"]).fps == 20.0
    assert parser.parse_args(["validate", "--dataset_name", "t2m"]).splits == ["train", "val", "test"]
    assert parser.parse_args(["pfnn", "--dataset_name", "t2m", "--out", "o"]).split == "train"
    assert parser.parse_args(["export_bvh", "j.npy"]).scale == 1.0


# ----------------------------------------------------------------------------------------------------------------------
# Ranges and types, refused while the flags are read and naming the flag
# ----------------------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("parser, flag, value, expected", [
    (get_base_parser, "--lr", "0", "expected a finite number > 0, got '0'"),
    (get_base_parser, "--log_every", "0", "expected a whole number >= 1, got '0'"),
    (get_base_parser, "--seed", "-1", "--seed"),
    (get_train_ae_parser, "--commit", "-0.02", "expected a finite number >= 0, got '-0.02'"),
    (get_train_ae_parser, "--dropout", "1", "expected a number in [0, 1), got '1'"),
    (get_train_ae_parser, "--norm", "IN", "invalid choice: 'IN'"),
    (get_train_ae_parser, "--model", "NoSuchAE", "invalid choice: 'NoSuchAE'"),
    (get_train_vq_parser, "--quantizer", "kmeans", "invalid choice: 'kmeans'"),
    (get_train_length_estimator_parser, "--hidden_dim", "4", "got '4'"),
    (get_evaluation_ae_parser, "--ae_model", "NoSuchAE", "invalid choice: 'NoSuchAE'"),
])
def test_a_value_outside_the_flags_range_is_refused_naming_the_flag(parser, flag, value, expected, capsys):
    err = refused(parser(), ["--name", "r", flag, value], capsys)
    assert f"argument {flag}" in err and expected in err, err


def test_boundary_values_of_the_tokenizer_flags_are_accepted():
    # down_t 0: no temporal downsampling (one token per frame); levels 2 and 1000 the smallest and largest FSQ level.
    args = parse_with_config(get_train_vq_parser(), ["--name", "r", "--down_t", "0", "--levels", "2", "1000",
                                                     "--norm", "BN", "--quantizer", "reset", "--dropout", "0",
                                                     "--quantize_dropout_prob", "1"])
    assert (args.down_t, args.levels, args.norm, args.quantizer, args.dropout, args.quantize_dropout_prob) == (
        0, [2, 1000], "BN", "reset", 0.0, 1.0)
    assert parse_with_config(get_train_length_estimator_parser(), ["--hidden_dim", "8"]).hidden_dim == 8


def test_list_flags_take_their_values_and_an_empty_condition_list():
    err_parser = get_base_parser()
    with pytest.raises(SystemExit):
        err_parser.parse_args(["--name", "r", "--milestones"])  # a milestone list needs at least one step
    args = parse_with_config(get_train_vq_parser(), ["--name", "r", "--conditions"])
    assert args.conditions == []
    args = parse_with_config(get_train_vq_parser(), ["--name", "r", "--conditions", "species", "gender"])
    assert args.conditions == ["species", "gender"]


def test_switches_have_their_no_form():
    args = parse_with_config(get_base_parser(), ["--name", "r", "--need_evaluation", "--no-need_evaluation",
                                                 "--is_continue", "--no-is_continue"])
    assert (args.need_evaluation, args.is_continue) == (False, False)
    args = parse_with_config(get_evaluation_ae_parser(), ["--device", "cpu", "--per_motion"])
    assert args.per_motion is True


def test_ema_decay_null_in_a_preset_turns_the_generators_ema_off(tmp_path):
    preset = tmp_path / "no_ema.yaml"
    preset.write_text("ema_decay: null\n")
    assert parse_with_config(get_train_mardm_parser(), ["--name", "g", "--config", str(preset)]).ema_decay is None


# ----------------------------------------------------------------------------------------------------------------------
# Devices
# ----------------------------------------------------------------------------------------------------------------------

def test_a_device_is_returned_as_written_and_an_unknown_one_names_what_is_expected(monkeypatch):
    assert torch_device("cpu") == "cpu" and isinstance(torch_device("cpu"), str)
    with pytest.raises(argparse.ArgumentTypeError,
                       match="expected a torch device such as cpu, cuda or cuda:1, got 'tpu"):
        torch_device("tpu:0")
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    with pytest.raises(argparse.ArgumentTypeError, match="mps: MPS is not available"):
        torch_device("mps")
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    assert torch_device("mps") == "mps"


# ----------------------------------------------------------------------------------------------------------------------
# prepare_data.py: subcommands and the body-model choice
# ----------------------------------------------------------------------------------------------------------------------

def test_prepare_data_needs_a_subcommand_and_exactly_one_body_model_source(capsys):
    parser = get_prepare_data_parser()
    with pytest.raises(SystemExit):
        parser.parse_args([])
    assert "command" in capsys.readouterr().err
    base = ["amass", "--src", "s", "--out", "o"]
    with pytest.raises(SystemExit):
        parser.parse_args(base)
    assert "one of the arguments --body_models --body_model is required" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        parser.parse_args([*base, "--body_models", "d", "--body_model", "m.npz"])
    assert "not allowed with argument" in capsys.readouterr().err
    assert parser.parse_args([*base, "--body_model", "m.npz"]).body_model == "m.npz"


@pytest.mark.parametrize("argv, flag", [
    (["bvh", "--src", "s", "--out", "o", "--skeleton", "lafan", "--fps", "0"], "--fps"),
    (["export_smpl", "j.npy", "--body_model", "m.npz", "--gender", "other"], "--gender"),
])
def test_prepare_data_refuses_values_naming_the_flag(argv, flag, capsys):
    with pytest.raises(SystemExit):
        get_prepare_data_parser().parse_args(argv)
    assert f"argument {flag}" in capsys.readouterr().err


# ----------------------------------------------------------------------------------------------------------------------
# Architecture overrides handed to the tokenizer constructors
# ----------------------------------------------------------------------------------------------------------------------

def test_model_overrides_keep_falsy_settings_and_rename_the_quantizer():
    args = parse_with_config(get_train_vq_parser(), [
        "--name", "r", "--down_t", "0", "--no-kmeans_init", "--no-rotation_trick", "--quantizer", "ema",
        "--spatial_layers", "2", "--dropout", "0"])
    assert model_overrides(args) == {"down_t": 0, "kmeans_init": False, "rotation_trick": False,
                                     "quantizer_type": "ema", "spatial_layers": 2, "dropout": 0.0}
    assert model_overrides(parse_with_config(get_train_ae_parser(), ["--name", "r"])) == {}


@pytest.mark.parametrize("device", ["xpu", "xpu:0", "meta"])
def test_a_device_type_this_torch_cannot_use_is_an_argument_error(device, monkeypatch, capsys):
    # Loading a checkpoint onto an xpu on a machine without one fails with a traceback about deserialising.
    monkeypatch.setattr(torch.xpu, "is_available", lambda: False)
    with pytest.raises(SystemExit):
        parse_with_config(get_evaluation_ae_parser(), ["--device", device])
    err = capsys.readouterr().err
    assert f"argument --device: {device}: " in err and "not available" in err and "use --device cpu" in err, err


def test_an_available_accelerator_of_another_type_is_accepted(monkeypatch):
    monkeypatch.setattr(torch.xpu, "is_available", lambda: True)
    assert parse_with_config(get_evaluation_ae_parser(), ["--device", "xpu"]).device == "xpu"
    assert parse_with_config(get_evaluation_ae_parser(), ["--device", "cpu"]).device == "cpu"
