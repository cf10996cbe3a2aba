"""Tokenizer loading (models/loader.py): conditions reach a loaded conditional tokenizer, official layouts are
recognised from their weight names, sizes are read from the weight shapes and requests that contradict them are
refused naming the file."""

from __future__ import annotations

import re

import pytest
import torch
from test_loader_contracts import _official, _our_file
from test_tokenizer_parity import Fixture, _weights_from_manifest

import models.tokenizers as tokenizers
from models.loader import import_official, load_tokenizer
from models.part_aware import PART_AWARE_MODELS
from utils.checkpoint import CheckpointError, load_checkpoint, save_checkpoint

# ---------------------------------------------------------------------------------------------------------------------
# A loaded conditional tokenizer
# ---------------------------------------------------------------------------------------------------------------------


def test_a_loaded_conditional_tokenizer_encodes_and_decodes_with_the_given_conditions(tmp_path, monkeypatch):
    """encode / decode / forward pass ``cond`` on to the model: another condition gives another reconstruction."""
    name = "PartAwareRVQ_Tiny"
    torch.manual_seed(0)
    model = PART_AWARE_MODELS[name](conditions={"species": 3}, dropout=0.0).eval()
    with torch.no_grad():  # untrained condition embeddings barely steer the model
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    path = str(tmp_path / "net_best_fid.tar")
    save_checkpoint(path, {"stage": "tokenizer", "model_name": name, "model_args": model.model_args,
                           "model": model.state_dict()})
    monkeypatch.setitem(tokenizers.TOKENIZERS, name, PART_AWARE_MODELS[name])
    tok = load_tokenizer(path)
    x = torch.randn(2, 8, model.input_width)
    one, two = {"species": torch.full((2,), 1)}, {"species": torch.full((2,), 2)}
    with torch.no_grad():
        indices = tok.encode(x, one)
        assert torch.equal(indices, model.encode(x, one))
        assert torch.equal(tok.decode(indices, two), model.decode(indices, two))
        assert not torch.allclose(tok.decode(indices, one), tok.decode(indices, two), atol=1e-4)
        assert torch.equal(tok(x, two), model(x, cond=two).recon)


# ---------------------------------------------------------------------------------------------------------------------
# Sizes read from official weight shapes
# ---------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("overrides", [dict(depth=1, kernel_size=5, stride_t=4), dict(depth=1, norm="BN"),
                                       dict(down_t=0, depth=3)])
def test_backbone_sizes_are_read_from_the_weight_shapes(overrides):
    """Kernel size, stride (half the strided conv's kernel) and batch norm (running statistics) come from the weights,
    with no argument passed."""
    sd, model = _official("VQVAE", "vqvae.", nb_code=16, code_dim=8, width=16, **overrides)
    args = import_official({"net": sd}, "v.pth").model_args
    assert {k: args[k] for k in model.model_args if k != "mu"} == {k: v for k, v in model.model_args.items()
                                                                   if k != "mu"}


def test_a_none_norm_spelling_is_accepted_for_weights_without_norm_layers():
    """Option dumps spell no normalisation 'none' / 'None'; that agrees with weights that have no norm layers."""
    sd, _ = _official("VQVAE", "vqvae.", nb_code=16, code_dim=8, width=16, depth=1)
    for spelling in ("none", "None"):
        assert import_official({"net": sd}, "v.pth", norm=spelling).model_name == "VQVAE"


def test_a_conv_weight_with_an_extra_dim_is_refused_naming_the_key():
    weights = _weights_from_manifest("t2m_gpt_vqvae")
    weights["encoder.model.0.weight"] = weights["encoder.model.0.weight"].unsqueeze(-1)
    with pytest.raises(CheckpointError, match=r"^damaged.pth: encoder.model.0.weight is a tensor of shape "
                                              r"\(\d+, \d+, \d+, 1\); expected a Conv1d weight"):
        import_official({"net": weights}, "damaged.pth")


def test_an_ema_quantizer_request_on_an_orig_codebook_is_refused_naming_the_file(tmp_path):
    """A codebook stored as ``quantizer.embedding.weight`` is the 'orig' quantizer's; asking for another quantizer
    type is not silently overridden."""
    sd, _ = _official("VQVAE", "vqvae.", nb_code=16, code_dim=8, width=16, depth=1, quantizer_type="orig")
    path = str(tmp_path / "orig.pth")
    save_checkpoint(path, {"net": sd})
    assert load_tokenizer(path).model_args["quantizer_type"] == "orig"
    with pytest.raises(CheckpointError, match=r"(?s)orig.pth: weights do not fit VQVAE: .*quantizer.embedding.weight"):
        load_tokenizer(path, quantizer_type="ema_reset")

def test_a_shared_codebook_request_on_two_distinct_codebooks_is_refused():
    """Two layers already make a shared codebook request checkable: distinct codebooks are not one shared module."""
    sd, _ = _official("RVQVAE", nb_code=16, code_dim=8, width=16, num_quantizers=2)
    assert not torch.equal(sd["quantizer.layers.0.codebook"], sd["quantizer.layers.1.codebook"])
    with pytest.raises(CheckpointError, match=r"^r.tar: shared_codebook=True was requested but the 2 layers' "
                                              r"codebooks differ"):
        import_official({"vq_model": sd}, "r.tar", shared_codebook=True)

# ---------------------------------------------------------------------------------------------------------------------
# MotionMillion's FSQ
# ---------------------------------------------------------------------------------------------------------------------


def test_a_six_dim_fsq_loads_with_motionmillions_levels_and_no_dropout():
    """Without ``levels`` a 6-dim projection is MotionMillion's [8, 8, 8, 5, 5, 5]; the reference trains without
    dropout."""
    sd, model = _official("FSQ_MotionMillion", "module.vqvae.", code_dim=16, width=16, depth=1)
    imported = import_official({"net": sd}, "net_1.pth")
    assert imported.model_name == "FSQ_MotionMillion"
    assert imported.model_args["levels"] == [8, 8, 8, 5, 5, 5] and imported.model_args["dropout"] == 0.0
    assert imported.model_args == model.model_args


@pytest.mark.parametrize("levels", [[8, 8, 8, 5, 5], [8, 8, 8, 5, 5, 5, 5]])
def test_levels_of_another_length_than_the_projection_are_refused_naming_both(levels):
    sd, _ = _official("FSQ_MotionMillion", "module.vqvae.", code_dim=16, width=16, depth=1)
    with pytest.raises(CheckpointError, match=rf"^net_1.pth: quantizer.project_in maps to 6 dims but "
                                              rf"levels={re.escape(str(levels))}$"):
        import_official({"net": sd}, "net_1.pth", levels=levels)


# ---------------------------------------------------------------------------------------------------------------------
# Our own files
# ---------------------------------------------------------------------------------------------------------------------


def test_our_file_without_its_weights_entry_is_refused_naming_the_file_and_the_entry(tmp_path):
    """A run file with ``model_name`` but no ``model`` weights is refused naming what a file of ours holds, not a
    bare KeyError."""
    path, _ = _our_file(tmp_path)
    state = torch.load(path, weights_only=True)
    del state["model"]
    save_checkpoint(path, state)
    with pytest.raises(CheckpointError, match=r"VQVAE_Tiny.tar: unknown checkpoint layout; top-level keys are "
                                              r"\[.*'model_name'.*\] \(expected ours 'model'\+'model_name'"):
        load_tokenizer(path)


# ---------------------------------------------------------------------------------------------------------------------
# Official files holding more than the tokenizer
# ---------------------------------------------------------------------------------------------------------------------


def test_a_tokenizer_file_that_also_holds_another_programs_entry_loads_its_tokenizer(tmp_path):
    """Entries beside the tokenizer's weights are ignored, even one an official transformer file would hold."""
    fx = Fixture("t2m_gpt_vqvae")
    state = load_checkpoint(fx.checkpoint)
    path = str(tmp_path / "net_last.pth")
    save_checkpoint(path, {**state, "trans": {"tok_emb.weight": torch.zeros(2, 2)}})
    tok, reference = load_tokenizer(path), load_tokenizer(fx.checkpoint)
    assert (tok.model_name, tok.source_format) == ("VQVAE", "t2m-gpt")
    x = fx.tensor("x")
    with torch.no_grad():
        assert torch.equal(tok.encode(x), reference.encode(x))


def test_levels_none_on_a_file_without_projections_asks_for_the_levels():
    """An FSQ without projections gives no level count: ``levels=None`` is not read as MotionMillion's levels."""
    sd, _ = _official("VQVAE", "vqvae.", nb_code=16, code_dim=8, width=16, depth=1)
    weights = {k: v for k, v in sd.items() if ".quantizer." not in k}
    with pytest.raises(CheckpointError, match=r"^f.pth: .*pass levels=\[\.\.\.\]"):
        import_official({"net": weights}, "f.pth", levels=None)
