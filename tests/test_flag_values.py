"""Flag values: each flag's type and range, on the command line and in presets, refused while the flags are read and
naming the flag (sampling and protocol settings, counts, devices, the EMA decay)."""

from __future__ import annotations

import pytest
from test_options import write

from options.base_options import get_base_parser
from options.config import ConfigError, load_preset, parse_with_config


@pytest.mark.parametrize("argv, message", [
    (["--cfg", "-1"], "argument --cfg/--cond_scale: expected a finite number >= 0, got '-1'"),
    (["--cfg", "inf"], "argument --cfg/--cond_scale: expected a finite number >= 0, got 'inf'"),
    (["--time_steps", "0"], "argument --time_steps: expected a whole number >= 1, got '0'"),
    (["--temperature", "-0.5"], "argument --temperature: expected a finite number >= 0"),
    (["--topkr", "1"], "argument --topkr: expected a number in [0, 1), got '1'"),
    (["--replications", "0"], "argument --replications: expected a whole number >= 1"),
    (["--mm_repeats", "2.5"], "argument --mm_repeats: expected a whole number >= 1, got '2.5'"),
])
def test_sampling_and_protocol_flags_refuse_values_without_meaning(argv, message, capsys):
    from options.eval_generator_options import get_evaluation_generator_parser

    with pytest.raises(SystemExit):
        parse_with_config(get_evaluation_generator_parser(), ["--name", "g", *argv])
    assert message in capsys.readouterr().err


def test_sampling_flag_types_apply_to_presets_and_accept_boundaries(tmp_path):
    from options.eval_generator_options import get_evaluation_generator_parser
    from options.generator_options import get_train_mardm_parser

    bad = tmp_path / "bad.yaml"
    bad.write_text("cfg: -2\n")
    with pytest.raises(ConfigError, match=r"bad.yaml.*cfg.*expected a finite number >= 0, got '-2'"):
        load_preset(get_train_mardm_parser(), str(bad))
    good = tmp_path / "good.yaml"
    good.write_text("cfg: 0\ntime_steps: 18.0\ntopk_filter_thres: 0.9\ntemperature: 0\n")
    args = parse_with_config(get_evaluation_generator_parser(), ["--config", str(good)])
    assert (args.cfg, args.time_steps, args.topk_filter_thres, args.temperature) == (0.0, 18, 0.9, 0.0)
    assert isinstance(args.time_steps, int)


@pytest.mark.parametrize("module, parser", [
    ("options.tokenizer_options", "get_train_ae_parser"),
    ("options.tokenizer_options", "get_train_vq_parser"),
    ("options.generator_options", "get_train_mardm_parser"),
    ("options.token_generator_options", "get_train_t2m_transformer_parser"),
    ("options.token_generator_options", "get_train_res_transformer_parser"),
])
def test_val_batches_must_be_a_count(module, parser, capsys):
    # A negative count validated on no batch at all (a validation loss of 0, the best forever) or on one; 0 means the
    # whole val split.
    import importlib

    get_parser = getattr(importlib.import_module(module), parser)
    with pytest.raises(SystemExit):
        parse_with_config(get_parser(), ["--name", "v", "--val_batches", "-1"])
    assert "argument --val_batches: expected a whole number >= 0, got '-1'" in capsys.readouterr().err
    assert parse_with_config(get_parser(), ["--name", "v", "--val_batches", "0"]).val_batches == 0


_DEVICE_PARSERS = [
    ("options.eval_generator_options", "get_sample_parser"),
    ("options.eval_generator_options", "get_evaluation_generator_parser"),
    ("options.eval_options", "get_evaluation_ae_parser"),
]


@pytest.mark.parametrize("module, parser", _DEVICE_PARSERS)
def test_a_device_this_machine_lacks_is_an_argument_error(module, parser, monkeypatch, capsys):
    # torch only failed once the checkpoint was loaded onto the device, with a traceback about deserialising; a
    # misspelt device type failed the same way.
    import importlib

    import torch

    get_parser = getattr(importlib.import_module(module), parser)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    for device, message in [("cuda", "CUDA is not available"), ("cuda:1", "CUDA is not available"),
                            ("gpu", "expected a torch device such as cpu, cuda or cuda:1, got 'gpu'")]:
        with pytest.raises(SystemExit):
            parse_with_config(get_parser(), ["--name", "g", "--device", device])
        err = capsys.readouterr().err
        assert "argument --device:" in err and message in err, (device, err)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    with pytest.raises(SystemExit):
        parse_with_config(get_parser(), ["--name", "g", "--device", "cuda:2"])
    assert "argument --device: cuda:2: this machine has 2 CUDA devices (cuda:0 to cuda:1)" in capsys.readouterr().err
    for device in ("cpu", "cuda", "cuda:1"):
        assert parse_with_config(get_parser(), ["--name", "g", "--device", device]).device == device


@pytest.mark.parametrize("module, parser", [
    ("options.base_options", "get_base_parser"),
    ("options.eval_options", "get_train_evaluator_parser"),
    ("options.eval_options", "get_evaluation_ae_parser"),
    ("options.eval_generator_options", "get_evaluation_generator_parser"),
])
def test_num_workers_must_be_a_count(module, parser, tmp_path, capsys):
    # A negative count failed only once the data and models were loaded, in the engine's config or in torch's
    # DataLoader, neither naming the flag.
    import importlib

    get_parser = getattr(importlib.import_module(module), parser)
    with pytest.raises(SystemExit):
        parse_with_config(get_parser(), ["--name", "w", "--num_workers", "-1"])
    assert "argument --num_workers: expected a whole number >= 0, got '-1'" in capsys.readouterr().err
    preset = write(tmp_path, "num_workers: -2\n")
    with pytest.raises(SystemExit):
        parse_with_config(get_parser(), ["--name", "w", "--config", preset])
    assert "num_workers" in capsys.readouterr().err
    assert parse_with_config(get_parser(), ["--name", "w", "--num_workers", "0"]).num_workers == 0


def test_ema_decay_none_turns_the_ema_off_from_the_command_line_and_a_decay_outside_0_1_is_refused(tmp_path,
                                                                                                       capsys):
    """train_MARDM.py keeps an EMA by default; ``--ema_decay none`` turns it off as a preset's null does, and a decay
    the EMA cannot use fails while the flags are read, naming the flag, not when the engine starts."""
    from options.generator_options import get_train_mardm_parser

    for text in ("none", "off", "None"):
        assert parse_with_config(get_train_mardm_parser(), ["--name", "x", "--ema_decay", text]).ema_decay is None
    assert parse_with_config(get_train_mardm_parser(), ["--name", "x", "--ema_decay", "0.99"]).ema_decay == 0.99
    assert load_preset(get_train_mardm_parser(), write(tmp_path, "ema_decay: none\n")) == {"ema_decay": None}
    for bad in ("1", "1.5", "-0.1", "nan", "fast"):
        with pytest.raises(SystemExit):
            parse_with_config(get_train_mardm_parser(), ["--name", "x", "--ema_decay", bad])
        assert f"--ema_decay: expected a number in [0, 1), or none, got '{bad}'" in capsys.readouterr().err
    with pytest.raises(ConfigError, match=r"one\.yaml: ema_decay: cannot read 1\.5"):
        load_preset(get_base_parser(), write(tmp_path, "ema_decay: 1.5\n", name="one.yaml"))


@pytest.mark.parametrize("module, parser, flag, value, expected", [
    ("options.generator_options", "get_train_mardm_parser", "--cond_drop_prob", "1", "a number in [0, 1)"),
    ("options.generator_options", "get_train_mardm_parser", "--diffmlps_batch_mul", "0", "a whole number >= 1"),
    ("options.token_generator_options", "get_train_t2m_transformer_parser", "--cond_drop_prob", "1.5",
     "a number in [0, 1)"),
    ("options.token_generator_options", "get_train_res_transformer_parser", "--label_smoothing", "1",
     "a number in [0, 1)"),
    ("options.token_generator_options", "get_train_t2m_transformer_parser", "--dropout", "-0.1", "a number in [0, 1)"),
    ("options.tokenizer_options", "get_train_vq_parser", "--dropout", "1", "a number in [0, 1)"),
    ("options.tokenizer_options", "get_train_vq_parser", "--cond_drop_prob", "nan", "a number in [0, 1)"),
    ("options.generator_options", "get_train_length_estimator_parser", "--dropout", "2", "a number in [0, 1)"),
    # A tokenizer width or code width of 0 failed with a raw RuntimeError at the first step, after latest.tar was
    # written (which then refused a rerun); a negative one with "negative dimension" after the data loaded.
    ("options.tokenizer_options", "get_train_ae_parser", "--width", "0", "a whole number >= 1"),
    ("options.tokenizer_options", "get_train_vq_parser", "--width", "-1", "a whole number >= 1"),
    ("options.tokenizer_options", "get_train_ae_parser", "--output_emb_width", "0", "a whole number >= 1"),
    ("options.tokenizer_options", "get_train_ae_parser", "--code_dim", "-8", "a whole number >= 1"),
    ("options.tokenizer_options", "get_train_vq_parser", "--code_dim", "0", "a whole number >= 1"),
    ("options.tokenizer_options", "get_train_vq_parser", "--code_dim", "2.5", "a whole number >= 1"),
    # Negative loss weights trained without a word: a loss that falls by moving away from the target (the joint
    # positions, the codes; LFQ's entropy terms then collapse the codebook). A codebook EMA decay of 1 never moved
    # the codes.
    ("options.tokenizer_options", "get_train_vq_parser", "--commit", "-0.02", "a finite number >= 0"),
    ("options.tokenizer_options", "get_train_ae_parser", "--loss_joint_vel", "-1", "a finite number >= 0"),
    ("options.tokenizer_options", "get_train_ae_parser", "--entropy_loss_weight", "-0.1", "a finite number >= 0"),
    ("options.tokenizer_options", "get_train_ae_parser", "--diversity_gamma", "-1", "a finite number >= 0"),
    ("options.tokenizer_options", "get_train_ae_parser", "--commitment_loss_weight", "inf", "a finite number >= 0"),
    ("options.tokenizer_options", "get_train_vq_parser", "--mu", "1", "a number in [0, 1)"),
    ("options.tokenizer_options", "get_train_vq_parser", "--mu", "-0.1", "a number in [0, 1)"),
    # Every stage's learning rate: 0 trained nothing without a word, a negative one failed in AdamW ("Invalid
    # learning rate") naming no flag, after the data had loaded.
    ("options.tokenizer_options", "get_train_ae_parser", "--lr", "0", "a finite number > 0"),
    ("options.generator_options", "get_train_mardm_parser", "--lr", "-0.0001", "a finite number > 0"),
    # Tokenizer sizes and windows: refused after the data had loaded, naming the constructor's argument
    # (``codebook_size`` for --nb_code, ``stride 0`` for a --window_size 0 given with the default stride).
    ("options.tokenizer_options", "get_train_vq_parser", "--nb_code", "0", "a whole number >= 1"),
    ("options.tokenizer_options", "get_train_vq_parser", "--num_quantizers", "0", "a whole number >= 1"),
    ("options.tokenizer_options", "get_train_vq_parser", "--quantize_dropout_prob", "1.5", "a number in [0, 1]"),
    ("options.tokenizer_options", "get_train_vq_parser", "--depth", "0", "a whole number >= 1"),
    ("options.tokenizer_options", "get_train_ae_parser", "--down_t", "-1", "a whole number >= 0"),
    ("options.tokenizer_options", "get_train_ae_parser", "--dilation_growth_rate", "0", "a whole number >= 1"),
    ("options.tokenizer_options", "get_train_ae_parser", "--levels", "1", "a whole number from 2 to 1000"),
    # Past 1000 levels FSQ's bound rounds saturated values beyond the grid (indices outside the codebook).
    ("options.tokenizer_options", "get_train_ae_parser", "--levels", "1001", "a whole number from 2 to 1000"),
    ("options.tokenizer_options", "get_train_ae_parser", "--inv_temperature", "-100", "a finite number > 0"),
    ("options.tokenizer_options", "get_train_ae_parser", "--window_size", "0", "a whole number >= 1"),
    ("options.tokenizer_options", "get_train_ae_parser", "--window_stride", "0", "a whole number >= 1"),
    ("options.tokenizer_options", "get_train_vq_parser", "--feat_bias", "0", "a finite number > 0"),
    ("options.tokenizer_options", "get_train_vq_parser", "--per_part_dim", "0", "a whole number >= 1"),
    ("options.tokenizer_options", "get_train_vq_parser", "--spatial_layers", "0", "a whole number >= 1"),
    # Every stage's schedule and cadence: a negative milestone decayed the learning rate from the first step without a
    # word; the others failed after the data loaded, in the engine's or AdamW's words.
    ("options.tokenizer_options", "get_train_vq_parser", "--milestones", "-5", "a whole number >= 0"),
    ("options.generator_options", "get_train_mardm_parser", "--warm_up_iter", "-1", "a whole number >= 0"),
    ("options.token_generator_options", "get_train_t2m_transformer_parser", "--lr_decay", "-0.1",
     "a finite number >= 0"),
    ("options.tokenizer_options", "get_train_ae_parser", "--weight_decay", "-1", "a finite number >= 0"),
    ("options.tokenizer_options", "get_train_ae_parser", "--grad_clip", "-1", "a number >= 0 (0: off)"),
    ("options.generator_options", "get_train_mardm_parser", "--log_every", "0", "a whole number >= 1"),
    ("options.tokenizer_options", "get_train_vq_parser", "--eval_every", "-1", "a whole number >= 0"),
    ("options.token_generator_options", "get_train_res_transformer_parser", "--save_every", "-1",
     "a whole number >= 0"),
    # The evaluator's: a negative margin made every negative pair's loss 0 (no contrast at all), negative weights
    # rewarded latents that jump; a 0-wide word embedding failed after the captions were read.
    ("options.eval_options", "get_train_evaluator_parser", "--margin", "-10", "a finite number >= 0"),
    ("options.eval_options", "get_train_evaluator_parser", "--lambda_smooth", "-0.001", "a finite number >= 0"),
    ("options.eval_options", "get_train_evaluator_parser", "--lambda_sparsity", "-1", "a finite number >= 0"),
    ("options.eval_options", "get_train_evaluator_parser", "--pretrain_iters", "-2", "a whole number >= 0"),
    ("options.eval_options", "get_train_evaluator_parser", "--dim_word", "0", "a whole number >= 1"),
])
def test_values_out_of_range_are_refused_while_the_flags_are_read(module, parser, flag, value, expected, capsys):
    """They failed when the model was built, after the tokenizer, text encoder and data had loaded, or trained
    without a word (the comments say which)."""
    import importlib

    get_parser = getattr(importlib.import_module(module), parser)
    with pytest.raises(SystemExit):
        parse_with_config(get_parser(), ["--name", "p", flag, value])
    assert f"argument {flag}: expected {expected}, got '{value}'" in capsys.readouterr().err


def test_tokenizer_size_flags_in_a_preset_and_their_boundaries(tmp_path):
    # MoMask's quantizer dropout may drop every trailing layer (probability 1); FSQ levels start at 2; down_t 0 keeps
    # the frame rate.
    from options.tokenizer_options import get_train_ae_parser, get_train_vq_parser

    bad = tmp_path / "bad.yaml"
    bad.write_text("nb_code: 0\n")
    with pytest.raises(ConfigError, match=r"bad.yaml.*nb_code.*expected a whole number >= 1, got '0'"):
        load_preset(get_train_vq_parser(), str(bad))
    args = parse_with_config(get_train_vq_parser(), ["--name", "p", "--quantize_dropout_prob", "1", "--down_t", "0"])
    assert (args.quantize_dropout_prob, args.down_t) == (1.0, 0)
    args = parse_with_config(get_train_ae_parser(), ["--name", "p", "--levels", "8", "5", "2", "--feat_bias", "25"])
    assert (args.levels, args.feat_bias) == ([8, 5, 2], 25.0)
