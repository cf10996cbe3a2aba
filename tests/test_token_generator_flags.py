"""The MoMask transformers' architecture flags (--latent_dim, --ff_size, --n_layers, --n_heads): refused while the
flags are read, or before any data is read and the run folder written, naming the flags and a preset that set one."""

from __future__ import annotations

import os

import pytest
import torch
from test_options import write

import train_res_transformer
import train_t2m_transformer
from models.mask_transformer import MASK_TRANSFORMER_SIZES, MASK_TRANSFORMERS, MaskTransformer
from models.res_transformer import RES_TRANSFORMER_SIZES, RES_TRANSFORMERS
from options.config import parse_with_config
from options.token_generator_options import get_train_res_transformer_parser, get_train_t2m_transformer_parser

PARSERS = [get_train_t2m_transformer_parser, get_train_res_transformer_parser]
SCRIPTS = {get_train_t2m_transformer_parser: train_t2m_transformer,
           get_train_res_transformer_parser: train_res_transformer}
TINY_PRESET = os.path.join(os.path.dirname(__file__), "..", "options", "configs", "tiny_momask.yaml")


@pytest.mark.parametrize("parser", PARSERS)
@pytest.mark.parametrize("flag, value", [("--n_heads", "0"), ("--n_layers", "0"), ("--n_layers", "-1"),
                                         ("--latent_dim", "-4"), ("--ff_size", "0"), ("--n_heads", "2.5")])
def test_sizes_below_one_are_argument_errors(parser, flag, value, capsys):
    # --n_heads 0 failed with a ZeroDivisionError, --n_layers 0 with an IndexError at the first step (after writing a
    # latest.tar that then refused both a rerun and --is_continue), --latent_dim -4 with a raw RuntimeError, and
    # --ff_size 0 trained a transformer without a feed-forward.
    with pytest.raises(SystemExit):
        parse_with_config(parser(), ["--name", "t", flag, value])
    assert f"argument {flag}: expected a whole number >= 1, got '{value}'" in capsys.readouterr().err


@pytest.mark.parametrize("parser", PARSERS)
def test_a_preset_size_below_one_names_the_preset(parser, tmp_path, capsys):
    preset = write(tmp_path, "n_layers: 0\n", name="flat.yaml")
    with pytest.raises(SystemExit):
        parse_with_config(parser(), ["--name", "t", "--config", preset])
    assert "flat.yaml: n_layers: cannot read '0'" in capsys.readouterr().err


@pytest.mark.parametrize("parser", PARSERS)
@pytest.mark.parametrize("argv, message", [
    (["--n_heads", "5"], r"^--n_heads 5 does not divide MoMask-\w+'s latent_dim 384 \(no --latent_dim\)"),
    (["--latent_dim", "30", "--n_heads", "4"], r"^--n_heads 4 does not divide --latent_dim 30: each attention head"),
    (["--config", TINY_PRESET, "--n_heads", "5"],
     r"^--n_heads 5 does not divide --latent_dim \(latent_dim: 64 in .*tiny_momask.yaml\)"),
    (["--config", TINY_PRESET, "--latent_dim", "66"],
     r"^--n_heads \(n_heads: 4 in .*tiny_momask.yaml\) does not divide --latent_dim 66"),
])
def test_a_width_the_heads_do_not_divide_is_refused_before_data_or_run_folder(parser, argv, message, tmp_path):
    # The model's own check came after the tokenizer, text encoder and data had loaded, naming no flag.
    ckpt = tmp_path / "checkpoints"
    args = parse_with_config(parser(), ["--name", "t", "--dataset_name", "synthetic", "--data_root",
                                        str(tmp_path / "no_data"), "--checkpoints_dir", str(ckpt), *argv])
    with pytest.raises(ValueError, match=message):
        SCRIPTS[parser].main(args)
    assert not ckpt.exists()


@pytest.mark.parametrize("registry, sizes", [(MASK_TRANSFORMERS, MASK_TRANSFORMER_SIZES),
                                             (RES_TRANSFORMERS, RES_TRANSFORMER_SIZES)])
def test_each_entry_builds_the_sizes_the_flags_are_checked_against(registry, sizes):
    assert set(sizes) == set(registry)
    for name, entry in registry.items():
        with torch.device("meta"):
            model = (entry(16, 8, 4) if registry is MASK_TRANSFORMERS else entry(16, 3, 8, 4))
        assert {key: model.model_args[key] for key in sizes[name]} == sizes[name], name


@pytest.mark.parametrize("key, value", [("num_layers", 0), ("num_heads", 0), ("latent_dim", -4), ("ff_size", 0)])
def test_the_constructor_refuses_sizes_below_one(key, value):
    sizes = {**dict(latent_dim=8, ff_size=16, num_layers=1, num_heads=2), key: value}
    with pytest.raises(ValueError, match=f"MaskTransformer: {key} must be >= 1, got {value}"):
        MaskTransformer(codebook_size=16, text_dim=4, code_dim=8, **sizes)
