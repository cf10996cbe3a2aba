"""Presets and saved configs (options/config.py), GloVe word vectors (utils/word_vectorizer.py) and the text encoders
(models/text_encoders.py): behaviour the other tests leave open."""

from __future__ import annotations

import argparse
import pickle

import numpy as np
import pytest
import torch
from test_text_encoders import CountingEncoder, fake_clip_state_dict, write_clip_files

from models.text_encoders import PROBE_CAPTION, CachedTextEncoder, CLIPTextEncoder, load_clip_text_state_dict
from options.config import ConfigError, load_preset, non_negative_int, positive_int, probability
from utils.word_vectorizer import (
    WordVectorizer,
    glove_file_names,
    vectorizer_digest,
    write_glove_folder,
)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser()
    parser.add_argument("--config", default=None)
    parser.add_argument("--name", default=None)
    return parser


def _write(tmp_path, text: str, name: str = "preset.yaml") -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


# ---------------------------------------------------------------------------------------------------------------------
# presets: casting
# ---------------------------------------------------------------------------------------------------------------------

def test_a_flag_that_stores_a_text_constant_is_no_boolean_in_a_preset(tmp_path):
    # Only a bool constant makes an on/off flag; `true` for a text setting would leak True into it.
    parser = _parser()
    parser.add_argument("--gumbel", dest="sampling", action="store_const", const="gumbel")
    with pytest.raises(ConfigError, match="sampling"):
        load_preset(parser, _write(tmp_path, "sampling: true\n"))



# ---------------------------------------------------------------------------------------------------------------------
# presets: the `config` record
# ---------------------------------------------------------------------------------------------------------------------

def test_only_a_file_named_opt_yaml_may_record_a_preset(tmp_path):
    # A preset whose name merely ends in opt.yaml is no run's opt.yaml: its `config` line would be ignored silently.
    path = _write(tmp_path, "config: base.yaml\n", name="my_opt.yaml")
    with pytest.raises(ConfigError, match="presets do not nest"):
        load_preset(_parser(), path)

# ---------------------------------------------------------------------------------------------------------------------
# flag types
# ---------------------------------------------------------------------------------------------------------------------

def test_positive_int_takes_one_and_refuses_zero():
    assert positive_int("1") == 1 and positive_int("2.0") == 2
    with pytest.raises(argparse.ArgumentTypeError, match="expected a whole number >= 1, got '0'"):
        positive_int("0")


def test_non_negative_int_takes_zero_and_refuses_a_fraction():
    assert non_negative_int("0") == 0 and non_negative_int("3") == 3
    with pytest.raises(argparse.ArgumentTypeError, match="expected a whole number >= 0, got '1.5'"):
        non_negative_int("1.5")


def test_probability_takes_both_ends_of_zero_to_one():
    assert probability("0") == 0.0 and probability("1") == 1.0
    with pytest.raises(argparse.ArgumentTypeError, match=r"expected a number in \[0, 1\], got '-0.1'"):
        probability("-0.1")

# ---------------------------------------------------------------------------------------------------------------------
# GloVe word vectors
# ---------------------------------------------------------------------------------------------------------------------

def test_the_digest_follows_what_each_word_reads_not_the_row_order_of_the_file(tmp_path):
    words = ["sos", "eos", "unk", "walk"]
    vectors = np.arange(12, dtype=np.float32).reshape(4, 3)
    write_glove_folder(str(tmp_path / "in_order"), words, vectors)
    shuffled = tmp_path / "shuffled"
    write_glove_folder(str(shuffled), words, vectors[::-1])
    idx_name = glove_file_names()[2]
    (shuffled / idx_name).write_bytes(pickle.dumps({w: len(words) - 1 - i for i, w in enumerate(words)}))
    in_order, reversed_rows = WordVectorizer(str(tmp_path / "in_order")), WordVectorizer(str(shuffled))
    np.testing.assert_array_equal(reversed_rows["walk/VERB"][0], vectors[3])
    assert vectorizer_digest(in_order) == vectorizer_digest(reversed_rows)


# ---------------------------------------------------------------------------------------------------------------------
# text encoders
# ---------------------------------------------------------------------------------------------------------------------

def test_a_clip_encoder_is_built_in_eval_mode_and_stays_there(tmp_path):
    encoder = CLIPTextEncoder(str(write_clip_files(tmp_path)))
    assert not any(m.training for m in encoder.modules())
    encoder.train()
    assert not any(m.training for m in encoder.modules())
    assert not any(p.requires_grad for p in encoder.parameters())


def test_a_module_prefix_is_stripped_only_when_every_key_has_it(tmp_path):
    # A checkpoint holding the tower under its own names and another module's "module.*" tensors keeps its names.
    plain = load_clip_text_state_dict(write_clip_files(tmp_path))
    torch.save({**fake_clip_state_dict(), "module.head.weight": torch.ones(2)}, tmp_path / "mixed.pt")
    loaded = load_clip_text_state_dict(tmp_path / "mixed.pt")
    assert set(loaded) == set(plain)
    assert all(torch.equal(loaded[k], plain[k]) for k in plain)


def test_weights_missing_one_tensor_of_a_block_are_refused_naming_the_file_and_key(tmp_path):
    weights, state = write_clip_files(tmp_path), fake_clip_state_dict()
    del state["transformer.resblocks.0.mlp.c_fc.bias"]
    torch.save(state, weights)
    with pytest.raises(ValueError, match=r"(?s)ViT-tiny\.pt: not the weights of a CLIP text tower.*mlp\.c_fc\.bias"):
        CLIPTextEncoder(str(weights))


def test_a_cache_of_the_current_version_keeps_captions_holding_special_token_strings(tmp_path):
    path = tmp_path / "cache.npz"
    captions = ["walks <|endoftext|> then runs", "caf\u00e9 dance"]
    first = CachedTextEncoder(CountingEncoder(), cache_path=path)
    first.encode(captions)
    first.save()
    inner = CountingEncoder()
    reloaded = CachedTextEncoder(inner, cache_path=path)
    assert len(reloaded) == 2
    assert torch.equal(reloaded.encode(captions), first.encode(captions))
    assert inner.calls == [[PROBE_CAPTION]]  # only the probe that checks the weights
