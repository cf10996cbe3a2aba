"""Damaged quantizer weights in an official file (a codebook or projection that is not a tensor of its rank) are a
CheckpointError naming the file and the key, as damaged conv weights are, not a traceback from reading a shape."""

from __future__ import annotations

import re

import pytest
import torch
from test_tokenizer_parity import Fixture, _weights_from_manifest

from models.loader import import_official, load_tokenizer
from utils.checkpoint import CheckpointError, load_checkpoint, save_checkpoint

DAMAGED = {"list": lambda v: v.tolist(), "0-d": lambda v: torch.tensor(3.0), "int": lambda v: 3,
           "1-d": lambda v: v.flatten()}


@pytest.mark.parametrize("name, key, damage", [
    ("t2m_gpt_vqvae", "vqvae.quantizer.codebook", "list"),
    ("t2m_gpt_vqvae", "vqvae.quantizer.codebook", "0-d"),
    ("momask_rvqvae", "quantizer.layers.0.codebook", "list"),
    ("momask_rvqvae", "quantizer.layers.1.codebook", "int"),
    ("momask_rvqvae", "quantizer.layers.2.codebook", "1-d"),
])
def test_a_damaged_codebook_names_the_file_and_the_key(tmp_path, name, key, damage) -> None:
    fx = Fixture(name)
    state = load_checkpoint(fx.checkpoint)
    top_key = "net" if name == "t2m_gpt_vqvae" else "vq_model"
    state[top_key][key] = DAMAGED[damage](state[top_key][key])
    path = str(tmp_path / "damaged.tar")
    save_checkpoint(path, state)
    short = re.escape(key.removeprefix("vqvae."))
    with pytest.raises(CheckpointError, match=rf"^{re.escape(path)}: {short} is .*; expected a codebook \(codes, "
                                              rf"code dim\): the file is damaged"):
        load_tokenizer(path)


@pytest.mark.parametrize("damage", ["list", "0-d", "1-d"])
def test_a_damaged_fsq_projection_names_the_file_and_the_key(damage) -> None:
    weights = _weights_from_manifest("t2m_gpt_vqvae")
    del weights["quantizer.codebook"]
    weights["quantizer.project_in.weight"] = DAMAGED[damage](torch.randn(6, 32))
    with pytest.raises(CheckpointError, match=r"^fsq.pth: quantizer.project_in.weight is .*; expected a Linear "
                                              r"weight \(FSQ dims, code dim\)"):
        import_official({"net": weights}, "fsq.pth")
