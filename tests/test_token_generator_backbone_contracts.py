"""MoMask token generators and the conv backbone: behaviour the other tests leave open (the base layer's label
smoothing, argument checks of both generators, defaults of generation, editing with padded known codes, the registry
overrides, the corrupted input of training, the base-layer shape residual generation takes, and the conv
backbone's block dropout)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from test_token_transformer_contracts import CODE_DIM, TEXT_DIM, K, Q, mask_tiny, res_tiny, scaled

import models.mask_transformer as mt
from models.encdec import ResConv1DBlock
from models.mask_schedule import lengths_to_mask
from models.mask_transformer import MASK_TRANSFORMERS, MaskTransformer
from models.res_transformer import RES_TRANSFORMERS, ResidualTransformer

# ---------------------------------------------------------------------------------------------------------------------
# MaskTransformer training
# ---------------------------------------------------------------------------------------------------------------------

def test_base_layer_label_smoothing_reaches_the_loss(monkeypatch):
    """The masked-token cross-entropy of the base layer uses the model's label_smoothing."""
    model = mask_tiny(label_smoothing=0.2)
    g = torch.Generator().manual_seed(2)
    lengths = torch.tensor([6, 3])
    valid = lengths_to_mask(lengths, 6)
    indices = torch.randint(0, K, (2, 6), generator=g).masked_fill(~valid, -1)
    mask = torch.tensor([[1, 0, 1, 1, 0, 0], [0, 1, 1, 0, 0, 0]], dtype=torch.bool)
    monkeypatch.setattr(mt, "sample_training_mask", lambda *args, **kwargs: mask.clone())
    base = torch.randn(2, 6, K, generator=g)
    model.logits = lambda ids, text, valid_in: base
    loss, _ = model(indices, lengths, torch.randn(2, TEXT_DIM))
    torch.testing.assert_close(loss, F.cross_entropy(base[mask], indices[mask], label_smoothing=0.2))
    assert not torch.allclose(loss, F.cross_entropy(base[mask], indices[mask]))


def test_the_base_layer_reads_the_masked_tokens_corrupted(monkeypatch):
    """In training the transformer reads the corrupted tokens: most masked positions hold the mask id, unmasked valid
    positions their own code (MoMask's BERT-style corruption)."""
    model = mask_tiny()
    lengths = torch.full((64,), 10)
    indices = torch.randint(0, K, (64, 10), generator=torch.Generator().manual_seed(1))
    mask = torch.zeros(64, 10, dtype=torch.bool)
    mask[:, ::2] = True
    monkeypatch.setattr(mt, "sample_training_mask", lambda *args, **kwargs: mask.clone())
    seen = {}
    logits = model.logits

    def spy(ids, text, valid):
        seen["ids"] = ids.clone()
        return logits(ids, text, valid)

    monkeypatch.setattr(model, "logits", spy)
    torch.manual_seed(0)
    model(indices, lengths, torch.randn(64, TEXT_DIM))
    read = seen["ids"]
    assert torch.equal(read[~mask], indices[~mask])
    assert 0.7 < (read[mask] == model.mask_id).float().mean().item() < 0.9


# ---------------------------------------------------------------------------------------------------------------------
# Constructor checks and the registry
# ---------------------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("key", ["cond_drop_prob", "label_smoothing"])
def test_negative_probabilities_are_refused_by_name(key):
    """cond_drop_prob and label_smoothing below 0 are refused, naming the argument, by both generators."""
    with pytest.raises(ValueError, match=rf"MaskTransformer: {key} must be in \[0, 1\), got -0.1"):
        mask_tiny(**{key: -0.1})
    with pytest.raises(ValueError, match=rf"ResidualTransformer: {key} must be in \[0, 1\), got -0.1"):
        res_tiny(**{key: -0.1})


def test_a_codebook_of_one_code_is_refused():
    """A single code leaves nothing to predict: both generators refuse codebook_size 1 by name."""
    with pytest.raises(ValueError, match="MaskTransformer: codebook_size must be >= 2, got 1"):
        MaskTransformer(1, TEXT_DIM, code_dim=CODE_DIM, latent_dim=16, ff_size=16, num_layers=1, num_heads=2)
    with pytest.raises(ValueError, match="ResidualTransformer: codebook_size must be >= 2, got 1"):
        ResidualTransformer(1, Q, CODE_DIM, TEXT_DIM, latent_dim=16, ff_size=16, num_layers=1, num_heads=2)


def test_codebook_embeddings_with_shared_weights_are_refused_without_codebooks():
    """code_embedding='codebook' with share_weight=True is refused even before any codebooks are given."""
    with pytest.raises(ValueError, match="pass share_weight=False"):
        ResidualTransformer(K, Q, CODE_DIM, TEXT_DIM, latent_dim=16, ff_size=16, num_layers=1, num_heads=2,
                            share_weight=True, code_embedding="codebook")


def test_published_factories_take_size_overrides():
    """The published entries build MoMask's sizes unless told otherwise: overrides reach the model and its
    model_args."""
    small = dict(latent_dim=32, ff_size=48, num_layers=1, num_heads=2, dropout=0.0)
    mask = MASK_TRANSFORMERS["MoMask-Mask"](K, CODE_DIM, TEXT_DIM, cond_drop_prob=0.3, **small)
    res = RES_TRANSFORMERS["MoMask-Res"](K, Q, CODE_DIM, TEXT_DIM, cond_drop_prob=0.3, **small)
    for model in (mask, res):
        assert {k: model.model_args[k] for k in small} == small
        assert model.model_args["cond_drop_prob"] == 0.3
        assert len(model.encoder.layers) == 1 and model.cond_emb.out_features == 32


def test_a_sample_of_zero_tokens_is_refused():
    """A length of 0 leaves a sample with no token to predict or generate: refused naming the range of lengths."""
    model = mask_tiny()
    indices = torch.randint(0, K, (2, 5), generator=torch.Generator().manual_seed(0))
    with pytest.raises(ValueError, match=r"forward: lengths \(in tokens\) must lie in \[1, 5\], got min 0"):
        model(indices, torch.tensor([5, 0]), torch.randn(2, TEXT_DIM))
    with pytest.raises(ValueError, match=r"generate: lengths \(in tokens\) must lie in \[1, 3\], got min 0"):
        model.generate(torch.tensor([3, 0]), torch.randn(2, TEXT_DIM), time_steps=1)


# ---------------------------------------------------------------------------------------------------------------------
# Generation: defaults and editing
# ---------------------------------------------------------------------------------------------------------------------

def test_base_layer_generation_defaults_are_momask_s():
    """Without arguments the base layer decodes as MoMask: 10 steps, guidance 4, temperature 1, top-k 0.9,
    categorical sampling."""
    model = scaled(mask_tiny())
    lengths = torch.tensor([9, 6, 4, 8])
    text = torch.randn(4, TEXT_DIM, generator=torch.Generator().manual_seed(3))
    default = model.generate(lengths, text, generator=torch.Generator().manual_seed(1))
    explicit = model.generate(lengths, text, time_steps=10, cond_scale=4.0, temperature=1.0, topk_filter_thres=0.9,
                              sampling="categorical", generator=torch.Generator().manual_seed(1))
    assert torch.equal(default, explicit)


def test_residual_generation_defaults_are_momask_s():
    """Without arguments the residual layers decode as MoMask: guidance 5, temperature 1, top-k 0.9, Gumbel-max."""
    model = scaled(res_tiny())
    g = torch.Generator().manual_seed(4)
    lengths = torch.tensor([9, 6, 4, 8])
    base = torch.randint(0, K, (4, 9), generator=g)
    text = torch.randn(4, TEXT_DIM, generator=g)
    default = model.generate(base, lengths, text, generator=torch.Generator().manual_seed(1))
    explicit = model.generate(base, lengths, text, cond_scale=5.0, temperature=1.0, topk_filter_thres=0.9,
                              sampling="gumbel", generator=torch.Generator().manual_seed(1))
    assert torch.equal(default, explicit)


def test_editing_takes_known_codes_padded_with_minus_one():
    """known codes as the generators return them (-1 at pads) are accepted: only the kept valid positions are
    checked, they come back unchanged, and pads stay -1."""
    lengths = torch.tensor([6, 4])
    valid = lengths_to_mask(lengths, 6)
    edit_mask = torch.zeros(2, 6, dtype=torch.bool)
    edit_mask[:, 1:3] = True
    g = torch.Generator().manual_seed(0)
    known = torch.randint(0, K, (2, 6, Q), generator=g).masked_fill(~valid[..., None], -1)
    text = torch.randn(2, TEXT_DIM, generator=g)
    kept = valid & ~edit_mask

    base = mask_tiny().generate(lengths, text, time_steps=3, known=known[..., 0], edit_mask=edit_mask,
                                generator=torch.Generator().manual_seed(1))
    assert torch.equal(base[kept], known[..., 0][kept]) and (base[~valid] == -1).all()
    out = res_tiny().generate(base, lengths, text, known=known, edit_mask=edit_mask,
                              generator=torch.Generator().manual_seed(1))
    assert torch.equal(out[..., 1:][kept], known[..., 1:][kept]) and (out[~valid] == -1).all()


def test_residual_editing_refuses_known_codes_of_another_layer_count():
    """known holds every layer of every position, (B, N, Q): one layer more or less is refused, naming the shape."""
    lengths = torch.tensor([5, 3])
    base = torch.randint(0, K, (2, 5), generator=torch.Generator().manual_seed(0))
    edit_mask = torch.ones(2, 5, dtype=torch.bool)
    model = res_tiny()
    for layers in (Q - 1, Q + 1):
        known = torch.zeros(2, 5, layers, dtype=torch.long)
        with pytest.raises(ValueError, match=rf"known must be \(B, N, Q\) = \(2, 5, 4\), got \(2, 5, {layers}\)"):
            model.generate(base, lengths, torch.randn(2, TEXT_DIM), known=known, edit_mask=edit_mask)


def test_residual_generation_refuses_base_indices_that_are_not_one_layer():
    """base_indices is the base layer alone, (B, N): all layers (B, N, Q) are refused naming the shape."""
    codes = torch.randint(0, K, (2, 5, Q), generator=torch.Generator().manual_seed(0))
    with pytest.raises(ValueError, match=r"base_indices must be \(B, N\), got \(2, 5, 4\)"):
        res_tiny().generate(codes, torch.tensor([5, 3]), torch.randn(2, TEXT_DIM))


def test_residual_generation_of_an_empty_batch_is_empty():
    """An empty batch (e.g. the last, empty chunk of a prompt file) generates a (0, N, Q) result."""
    out = res_tiny().generate(torch.zeros(0, 5, dtype=torch.long), torch.zeros(0, dtype=torch.long),
                              torch.zeros(0, TEXT_DIM))
    assert out.shape == (0, 5, Q) and out.dtype == torch.long


@pytest.mark.parametrize("layer", [1, Q - 1])
def test_residual_codes_out_of_range_in_any_layer_are_refused(layer):
    """Every layer's codes at valid positions are checked, not only the base layer's: a code K + 3 in layer q is
    refused naming the range, in training and in the known codes of editing."""
    model = res_tiny()
    lengths = torch.tensor([5, 3])
    indices = torch.randint(0, K, (2, 5, Q), generator=torch.Generator().manual_seed(0))
    indices[0, 1, layer] = K + 3
    with pytest.raises(ValueError, match=r"forward: indices at valid positions must lie in \[0, 16\), got min 0, "
                                         r"max 19"):
        model(indices, lengths, torch.randn(2, TEXT_DIM))
    edit_mask = torch.zeros(2, 5, dtype=torch.bool)
    edit_mask[:, 2] = True
    with pytest.raises(ValueError, match=r"generate \(known\): indices at valid positions must lie in \[0, 16\)"):
        model.generate(indices[..., 0].clamp(max=K - 1), lengths, torch.randn(2, TEXT_DIM), known=indices,
                       edit_mask=edit_mask)


# ---------------------------------------------------------------------------------------------------------------------
# Conv encoder / decoder (models/encdec.py)
# ---------------------------------------------------------------------------------------------------------------------


def test_block_dropout_drops_the_residual_branch_only():
    """In training, dropout applies to the residual branch, never to the skip path: with a zero branch the block
    returns its input exactly whatever dropout draws."""
    block = ResConv1DBlock(8, 8, dropout=0.5).train()
    with torch.no_grad():
        block.conv2.weight.zero_()
        block.conv2.bias.zero_()
    x = torch.randn(2, 8, 16)
    torch.manual_seed(0)
    assert torch.equal(block(x), x)
