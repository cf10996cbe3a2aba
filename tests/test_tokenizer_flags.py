"""The tokenizer stages' size flags (--width, --output_emb_width, --code_dim), loss weights and codebook EMA decay in a
preset and under the flags' other names, and the constructors' own size checks for callers from code. Each flag's
range on the command line: tests/test_flag_values.py."""

from __future__ import annotations

import pytest
from test_options import write

from models.tokenizers import build_tokenizer
from options.config import parse_with_config
from options.tokenizer_options import get_train_ae_parser, get_train_vq_parser


@pytest.mark.parametrize("parser", [get_train_ae_parser, get_train_vq_parser])
def test_a_preset_size_below_one_names_the_preset_and_one_is_a_size(parser, tmp_path, capsys):
    # code_dim: 0 built an encoder of no output channels; training failed at the first step, after latest.tar was
    # written, and that file then refused both a rerun and --is_continue.
    with pytest.raises(SystemExit):
        parse_with_config(parser(), ["--name", "t", "--config", write(tmp_path, "code_dim: 0\n", name="flat.yaml")])
    assert "flat.yaml: code_dim: cannot read '0'" in capsys.readouterr().err
    args = parse_with_config(parser(), ["--name", "t", "--width", "1", "--code_dim", "1", "--output_emb_width", "1"])
    assert (args.width, args.code_dim, args.output_emb_width) == (1, 1, 1)


def test_loss_weights_and_the_codebook_decay_refuse_values_without_meaning(tmp_path, capsys):
    # A negative joint-position weight trained to a negative loss, and mu: 1 a codebook that never moved.
    with pytest.raises(SystemExit):
        parse_with_config(get_train_vq_parser(), ["--name", "t", "--loss_vel", "-0.5"])
    assert "argument --aux_loss_joints/--loss_vel: expected a finite number >= 0, got '-0.5'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        parse_with_config(get_train_vq_parser(), ["--name", "t", "--config", write(tmp_path, "mu: 1.0\n", "ema.yaml")])
    assert "ema.yaml: mu: cannot read 1.0" in capsys.readouterr().err
    zero = ["--commit", "0", "--aux_loss_joints", "0", "--loss_joint_vel", "0", "--entropy_loss_weight", "0",
            "--diversity_gamma", "0", "--commitment_loss_weight", "0", "--mu", "0"]
    args = parse_with_config(get_train_ae_parser(), ["--name", "t", *zero])
    assert [args.commit, args.aux_loss_joints, args.loss_joint_vel, args.entropy_loss_weight, args.diversity_gamma,
            args.commitment_loss_weight, args.mu] == [0.0] * 7


@pytest.mark.parametrize("name, key, value, message", [
    ("AE_Tiny", "width", 0, "AE: width must be >= 1, got 0"),
    ("AE_Tiny", "output_emb_width", 0, "AE: latent_dim must be >= 1, got 0"),
    ("FSQ_AE_Tiny", "code_dim", 0, "FSQAE: latent_dim must be >= 1, got 0"),
    ("LFQ_AE_Tiny", "code_dim", -1, "LFQAE: latent_dim must be >= 1, got -1"),
    ("RVQVAE_Tiny", "width", -1, "RVQVAE: width must be >= 1, got -1"),
    ("PartAwareRVQ_Tiny", "width", 0, r"PartAwareRVQVAE: width \(0\) and code_dim \(16\) must be >= 1"),
])
def test_the_constructors_refuse_sizes_below_one(name, key, value, message):
    # torch builds a convolution of no channels without a word (it fails at the first forward pass) and fails on a
    # negative one naming no argument.
    with pytest.raises(ValueError, match=message):
        build_tokenizer(name, **{key: value})
