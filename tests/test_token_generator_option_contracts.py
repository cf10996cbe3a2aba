"""The MoMask token transformers' flags (``options/token_generator_options.py``): the recipe's and tokenizer's
defaults, the ``--ae_*`` aliases, the GloVe folder under ``$FSQ_MARDM_HOME``, refused dropout and guidance values,
architecture overrides handed to the registry even when zero, and the head-split check naming where each size came
from."""

from __future__ import annotations

import pytest

from models.mask_transformer import MASK_TRANSFORMER_SIZES
from options.config import parse_with_config
from options.token_generator_options import (
    check_head_split,
    get_train_res_transformer_parser,
    get_train_t2m_transformer_parser,
    model_overrides,
)
from utils.paths import HOME_ENV

PARSERS = [get_train_t2m_transformer_parser, get_train_res_transformer_parser]


@pytest.mark.parametrize("parser", PARSERS)
def test_momask_recipe_and_tokenizer_defaults(parser):
    """Left out, the flags give MoMask's HumanML3D recipe and read the tokenizer run's best file on the fly."""
    args = parse_with_config(parser(), ["--name", "t"])
    assert (args.batch_size, args.lr, args.weight_decay, args.warm_up_iter, args.milestones, args.lr_decay,
            args.epoch, args.seed) == (64, 2e-4, 1e-5, 2000, [50_000], 0.1, 500, 3407)
    assert (args.vq_which, args.vq_name, args.vq_ckpt, args.cache_tokens) == ("best", None, None, False)
    assert args.val_batches == 0 and args.cond_scale is None
    assert model_overrides(args) == {}  # the registry entry decides every size


def test_each_stage_defaults_to_its_published_model_and_its_own_flags():
    mask = parse_with_config(get_train_t2m_transformer_parser(), ["--name", "t"])
    res = parse_with_config(get_train_res_transformer_parser(), ["--name", "t"])
    assert (mask.model, mask.time_steps) == ("MoMask-Mask", 18)
    assert res.model == "MoMask-Res" and not hasattr(res, "time_steps")  # the residual stage generates no steps
    assert (res.share_weight, res.code_embedding) == (None, None)  # decided from the embedding kind later
    with pytest.raises(SystemExit):
        parse_with_config(get_train_res_transformer_parser(), ["--name", "t", "--time_steps", "5"])


@pytest.mark.parametrize("parser", PARSERS)
def test_the_ae_spellings_of_the_tokenizer_flags_are_aliases(parser):
    args = parse_with_config(parser(), ["--name", "t", "--ae_name", "fsq", "--ae_which", "latest", "--ae_ckpt",
                                        "x.tar"])
    assert (args.vq_name, args.vq_which, args.vq_ckpt) == ("fsq", "latest", "x.tar")


@pytest.mark.parametrize("parser", PARSERS)
def test_the_glove_folder_defaults_under_the_home_folder(parser, monkeypatch, tmp_path):
    monkeypatch.setenv(HOME_ENV, str(tmp_path))
    assert parser().get_default("glove_dir") == str(tmp_path / "glove")


@pytest.mark.parametrize("parser", PARSERS)
@pytest.mark.parametrize("flag, value", [("--dropout", "1"), ("--dropout", "1.5"), ("--cfg", "-1")])
def test_dropout_of_one_or_more_and_negative_guidance_are_argument_errors(parser, flag, value, capsys):
    with pytest.raises(SystemExit):
        parse_with_config(parser(), ["--name", "t", flag, value])
    assert f"argument {flag.replace('--cfg', '--cond_scale/--cfg')}" in capsys.readouterr().err


@pytest.mark.parametrize("parser", PARSERS)
def test_every_architecture_flag_given_reaches_the_constructor_even_zero(parser):
    """Zero is a real choice (no dropout, no label smoothing), not "left out": it must override the registry's."""
    args = parse_with_config(parser(), ["--name", "t", "--latent_dim", "32", "--ff_size", "64", "--n_layers", "3",
                                        "--n_heads", "2", "--dropout", "0", "--cond_drop_prob", "0",
                                        "--label_smoothing", "0.1", *(["--train_mask_count", "padded"]
                                                                      if parser is PARSERS[0] else [])])
    expected = {"latent_dim": 32, "ff_size": 64, "num_layers": 3, "num_heads": 2, "dropout": 0.0,
                "cond_drop_prob": 0.0, "label_smoothing": 0.1}
    if parser is PARSERS[0]:
        expected["train_mask_count"] = "padded"
    assert model_overrides(args) == expected


def test_a_width_left_to_the_registry_is_named_with_the_entry_s_head_count():
    args = parse_with_config(get_train_t2m_transformer_parser(), ["--name", "t", "--latent_dim", "100"])
    with pytest.raises(ValueError, match=r"^MoMask-Mask's num_heads 6 \(no --n_heads\) does not divide "
                                         r"--latent_dim 100: each attention head"):
        check_head_split(args, MASK_TRANSFORMER_SIZES)
    check_head_split(parse_with_config(get_train_t2m_transformer_parser(), ["--name", "t", "--latent_dim", "96"]),
                     MASK_TRANSFORMER_SIZES)
