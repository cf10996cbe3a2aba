"""Behaviour of the MoMask token generators that the other tests leave open: guidance below scale 1, sampling
temperature and top-k at generation, confidence scores, the condition dropout rate, training logs, residual-layer
tables and biases, and the constructors' checks."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import models.mask_transformer as mt
import models.res_transformer as rt
from models.mask_schedule import lengths_to_mask
from models.mask_transformer import MASK_TRANSFORMERS, MaskTransformer
from models.res_transformer import RES_TRANSFORMERS

K, Q, CODE_DIM, TEXT_DIM = 16, 4, 24, 12


def mask_tiny(**overrides) -> MaskTransformer:
    torch.manual_seed(0)
    return MASK_TRANSFORMERS["MoMask-Mask-Tiny"](K, CODE_DIM, TEXT_DIM, **overrides)


def res_tiny(**overrides):
    torch.manual_seed(0)
    return RES_TRANSFORMERS["MoMask-Res-Tiny"](K, Q, CODE_DIM, TEXT_DIM, **overrides)


def scaled(model):
    """Weights scaled up so that the logits are far from uniform and depend on the inputs."""
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(5.0)
    return model


# ---------------------------------------------------------------------------------------------------------------------
# MaskTransformer
# ---------------------------------------------------------------------------------------------------------------------

def test_mask_generate_restores_eval_mode():
    """generate switches to eval mode for decoding and puts back the caller's mode, also when that was eval."""
    model = mask_tiny().eval()
    model.generate(torch.tensor([4, 2]), torch.randn(2, TEXT_DIM), time_steps=2,
                   generator=torch.Generator().manual_seed(0))
    assert not model.training
    assert not any(m.training for m in model.modules())


def test_condition_dropout_rate_follows_cond_drop_prob():
    """In training each sample's text is zeroed with probability cond_drop_prob (checked at 0.2, not 0.5, where a
    drop rate and its complement coincide)."""
    model = mask_tiny(cond_drop_prob=0.2)
    torch.manual_seed(0)
    text = torch.randn(4000, TEXT_DIM) + 3.0
    dropped = torch.isclose(model.condition(text)[:, 0], model.cond_emb.bias.expand(4000, -1)).all(-1)
    assert 0.17 < dropped.float().mean().item() < 0.23


def test_mask_ratio_log_is_over_valid_tokens(monkeypatch):
    """logs["mask_ratio"] is masked tokens / valid tokens, padded positions not counted."""
    model = mask_tiny()
    lengths = torch.tensor([8, 2, 3])
    indices = torch.randint(0, K, (3, 8), generator=torch.Generator().manual_seed(0))
    torch.manual_seed(1)
    real = mt.sample_training_mask
    seen = {}

    def recording(*args, **kwargs):
        seen["mask"] = real(*args, **kwargs)
        return seen["mask"]

    monkeypatch.setattr(mt, "sample_training_mask", recording)
    _, logs = model(indices, lengths, torch.randn(3, TEXT_DIM))
    expected = seen["mask"].sum().float() / lengths.sum().float()
    torch.testing.assert_close(logs["mask_ratio"].float(), expected)


def _greedy_runs(generate):
    a = generate(torch.Generator().manual_seed(1))
    b = generate(torch.Generator().manual_seed(2))
    return a, b


def test_mask_generate_temperature_near_zero_is_greedy():
    """A temperature near 0 makes the (unfiltered) sampling an argmax, so two different seeds give one output."""
    model = scaled(mask_tiny())
    text = torch.randn(2, TEXT_DIM, generator=torch.Generator().manual_seed(3))
    lengths = torch.tensor([9, 6])
    a, b = _greedy_runs(lambda g: model.generate(lengths, text, time_steps=4, cond_scale=2.0, temperature=1e-4,
                                                 topk_filter_thres=0.0, generator=g))
    assert torch.equal(a, b)
    c, d = _greedy_runs(lambda g: model.generate(lengths, text, time_steps=4, cond_scale=2.0, temperature=1.0,
                                                 topk_filter_thres=0.0, generator=g))
    assert not torch.equal(c, d)          # at temperature 1 the seeds do matter


def _flat_logits_with_two_peaks(codebook_size):
    """Stub logits: codes 0 and 1 slightly above the rest, which are all equal."""
    def fake_logits(ids, text, valid):
        logits = torch.zeros(*ids.shape, codebook_size)
        logits[..., :2] = 0.1
        return logits
    return fake_logits


def test_mask_generate_top_k_threshold_is_honoured():
    """topk_filter_thres=0 samples from every code; the default 0.9 keeps ceil(0.1 * K) = 2 codes only."""
    model = mask_tiny()
    model.logits = _flat_logits_with_two_peaks(K)
    lengths = torch.full((8,), 10)
    text = torch.zeros(8, TEXT_DIM)
    g = torch.Generator().manual_seed(0)
    free = model.generate(lengths, text, time_steps=3, cond_scale=1.0, topk_filter_thres=0.0, generator=g)
    assert (free >= 2).any()
    kept = model.generate(lengths, text, time_steps=3, cond_scale=1.0, topk_filter_thres=0.9, generator=g)
    assert (kept < 2).all()


def test_mask_confidence_uses_unfiltered_probabilities():
    """The confidence of a sampled token is its probability under the unfiltered logits: of two sampled tokens, the
    one with the lower full-softmax probability is re-masked even when its top-k-renormalised probability is higher."""
    model = mask_tiny()
    p0 = torch.tensor([0.6, 0.39] + [0.01 / (K - 2)] * (K - 2))       # top-2 share 0.99: renormalised 0.606
    p1 = torch.tensor([0.5, 0.01] + [0.49 / (K - 2)] * (K - 2))       # top-2 share 0.51: renormalised 0.98
    table = torch.stack([p0.log(), p1.log()])                          # (2, K)
    calls = []

    def fake_logits(ids, text, valid):
        calls.append(ids.clone())
        return table[None].expand(ids.shape[0], -1, -1).clone()

    model.logits = fake_logits
    model.generate(torch.tensor([2]), torch.zeros(1, TEXT_DIM), time_steps=2, cond_scale=1.0, temperature=1e-4,
                   topk_filter_thres=0.9, generator=torch.Generator().manual_seed(0))
    assert len(calls) == 2
    # Step 2 re-masks one token: position 1 (full-softmax probability 0.5 < 0.6), not position 0.
    assert calls[1].tolist() == [[0, K]]


# ---------------------------------------------------------------------------------------------------------------------
# ResidualTransformer
# ---------------------------------------------------------------------------------------------------------------------

def test_res_output_bias_of_the_predicted_layer_is_added():
    """Without shared weights, logits of layer q carry the bias row b_q[:K] of that layer once."""
    model = res_tiny(share_weight=False).eval()
    g = torch.Generator().manual_seed(0)
    history = torch.randn(3, 4, CODE_DIM, generator=g)
    layer = torch.tensor([1, 2, 3])
    valid = torch.ones(3, 4, dtype=torch.bool)
    text = torch.randn(3, TEXT_DIM, generator=g)
    with torch.no_grad():
        before = model.logits(history, layer, text, valid)
        model.proj_bias.copy_(torch.randn(model.proj_bias.shape, generator=g))
        after = model.logits(history, layer, text, valid)
    expected = model.proj_bias.detach()[layer - 1, :K][:, None].expand(-1, 4, -1)
    torch.testing.assert_close(after - before, expected, atol=1e-5, rtol=1e-5)


def test_res_layer_token_is_the_one_hot_of_the_predicted_layer(monkeypatch):
    """The layer token that predicts layer q is quant_emb(one_hot(q, Q)), as MoMask's checkpoints expect."""
    model = res_tiny().eval()
    seen = {}
    real_encode = model.encode

    def recording_encode(x, prefix, valid):
        seen["prefix"] = prefix
        return real_encode(x, prefix, valid)

    monkeypatch.setattr(model, "encode", recording_encode)
    layer = torch.tensor([1, 2, 3])
    with torch.no_grad():
        model.logits(torch.zeros(3, 2, CODE_DIM), layer, torch.zeros(3, TEXT_DIM), torch.ones(3, 2, dtype=torch.bool))
        expected = model.quant_emb.weight.t()[layer] + model.quant_emb.bias
    torch.testing.assert_close(seen["prefix"][:, 1], expected)


def test_res_label_smoothing_reaches_the_loss(monkeypatch):
    model = res_tiny(label_smoothing=0.2)
    g = torch.Generator().manual_seed(2)
    lengths = torch.tensor([5, 3])
    valid = lengths_to_mask(lengths, 5)
    indices = torch.randint(0, K, (2, 5, Q), generator=g).masked_fill(~valid[..., None], -1)
    layer = torch.tensor([1, 3])
    monkeypatch.setattr(rt, "q_schedule", lambda *args, **kwargs: layer.clone())
    base = torch.randn(2, 5, K, generator=g)
    model.logits = lambda history, layer_in, text_in, valid_in: base
    loss, _ = model(indices, lengths, torch.randn(2, TEXT_DIM))
    targets = indices[torch.arange(2), :, layer]
    torch.testing.assert_close(loss, F.cross_entropy(base[valid], targets[valid], label_smoothing=0.2))


def test_res_set_codebooks_accepts_q_minus_one_layers_and_zeroes_the_pad_row():
    """set_codebooks takes (Q-1, K, code_dim) as well as (Q, ...), and the pad row ends up zero whatever the buffer
    held before."""
    model = res_tiny(share_weight=False, code_embedding="codebook")
    with torch.no_grad():
        model.codebook_embed.fill_(1.0)
    books = torch.randn(Q - 1, K, CODE_DIM, generator=torch.Generator().manual_seed(0))
    model.set_codebooks(books)
    torch.testing.assert_close(model.input_tables()[:, :K], books)
    assert (model.input_tables()[:, K] == 0).all()


def test_res_generate_temperature_near_zero_is_greedy():
    model = scaled(res_tiny())
    g0 = torch.Generator().manual_seed(4)
    lengths = torch.tensor([9, 6])
    base = torch.randint(0, K, (2, 9), generator=g0)
    text = torch.randn(2, TEXT_DIM, generator=g0)
    a, b = _greedy_runs(lambda g: model.generate(base, lengths, text, cond_scale=3.0, temperature=1e-4,
                                                 topk_filter_thres=0.0, generator=g))
    assert torch.equal(a, b)
    c, d = _greedy_runs(lambda g: model.generate(base, lengths, text, cond_scale=3.0, temperature=1.0,
                                                 topk_filter_thres=0.0, generator=g))
    assert not torch.equal(c, d)


def test_res_generate_top_k_threshold_is_honoured():
    model = res_tiny()
    model.logits = lambda history, layer, text, valid: _flat_logits_with_two_peaks(K)(history[..., 0], text, valid)
    lengths = torch.full((8,), 10)
    base = torch.zeros(8, 10, dtype=torch.long)
    text = torch.zeros(8, TEXT_DIM)
    g = torch.Generator().manual_seed(0)
    kept = model.generate(base, lengths, text, cond_scale=1.0, topk_filter_thres=0.9, generator=g)
    assert (kept[..., 1:] < 2).all()
    free = model.generate(base, lengths, text, cond_scale=1.0, topk_filter_thres=0.0, generator=g)
    assert (free[..., 1:] >= 2).any()


def test_res_tiny_registry_condition_dropout():
    """The residual registry entries train with MoMask's residual condition dropout, 0.2."""
    assert res_tiny().model_args["cond_drop_prob"] == 0.2


def test_output_head_layernorm_eps_is_bert_style():
    """MoMask's BERT-style output head normalises with eps 1e-12 (both generators)."""
    assert mask_tiny().output_process.norm.eps == 1e-12
    assert res_tiny().output_process.norm.eps == 1e-12


# ---------------------------------------------------------------------------------------------------------------------
# Constructor checks shared by both generators
# ---------------------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("key", ["ff_size", "num_layers"])
def test_zero_sizes_are_refused_by_name(key):
    with pytest.raises(ValueError, match=f"{key} must be >= 1, got 0"):
        mask_tiny(**{key: 0})
    with pytest.raises(ValueError, match=f"{key} must be >= 1, got 0"):
        res_tiny(**{key: 0})


def test_latent_dim_not_divisible_by_heads_is_a_value_error():
    with pytest.raises(ValueError, match="latent_dim=66 is not divisible by num_heads=4"):
        mask_tiny(latent_dim=66)


@pytest.mark.parametrize("key", ["cond_drop_prob", "label_smoothing"])
def test_probabilities_of_one_are_refused(key):
    """cond_drop_prob and label_smoothing must lie in [0, 1): 1 would drop every text / flatten every target."""
    with pytest.raises(ValueError, match=f"{key} must be in \\[0, 1\\), got 1.0"):
        mask_tiny(**{key: 1.0})
    with pytest.raises(ValueError, match=f"{key} must be in \\[0, 1\\), got 1.0"):
        res_tiny(**{key: 1.0})


def test_the_mask_id_at_a_valid_position_is_refused():
    """Codes must lie in [0, K): the mask id K itself is not a code."""
    model = mask_tiny()
    indices = torch.randint(0, K, (2, 5), generator=torch.Generator().manual_seed(0))
    indices[0, 2] = K
    with pytest.raises(ValueError, match=r"valid positions must lie in \[0, 16\), got min \d+, max 16"):
        model(indices, torch.tensor([5, 3]), torch.randn(2, TEXT_DIM))


def test_generate_refuses_text_of_another_batch_size():
    model = mask_tiny()
    with pytest.raises(ValueError, match=r"expected lengths \(B,\) and text_emb \(B, 12\), got \(2,\) and \(3, 12\)"):
        model.generate(torch.tensor([4, 3]), torch.randn(3, TEXT_DIM), time_steps=1)


def test_generation_does_not_rely_on_the_sort_breaking_ties_by_position(monkeypatch):
    """Pads start with score 1e5, so the first step masks exactly the valid positions even when the sort breaks the
    all-zero ties among positions in another order (GPU sorts are not stable): every valid token gets sampled."""

    def reverse_tie_lowest(scores, num):
        index = torch.arange(scores.shape[1], dtype=scores.dtype)
        key = scores * (scores.shape[1] + 1) - index / (scores.shape[1] + 1)     # ties: later positions first
        ranks = key.argsort(dim=1).argsort(dim=1)
        return ranks < num[:, None]

    monkeypatch.setattr(mt, "lowest_score_mask", reverse_tie_lowest)
    model = mask_tiny()
    lengths = torch.tensor([7, 3])
    out = model.generate(lengths, torch.randn(2, TEXT_DIM), time_steps=3, generator=torch.Generator().manual_seed(0))
    valid = lengths_to_mask(lengths, 7)
    assert (out[valid] >= 0).all() and (out[valid] < K).all()
    assert (out[~valid] == -1).all()
