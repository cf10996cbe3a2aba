"""ResidualTransformer (MoMask layers 1..Q-1): layer schedule, embeddings (learned, shared, frozen codebooks), loss,
generation and learning."""

import math

import pytest
import torch
import torch.nn.functional as F

import models.res_transformer as rt
from models.mask_schedule import lengths_to_mask, q_schedule
from models.res_transformer import RES_TRANSFORMERS, ResidualTransformer
from models.residual_vq import ResidualVQ

K, Q, CODE_DIM, TEXT_DIM = 16, 4, 24, 12
VARIANTS = {
    "shared": dict(),
    "separate": dict(share_weight=False),
    "codebook": dict(share_weight=False, code_embedding="codebook"),
}


def tiny(**overrides) -> ResidualTransformer:
    torch.manual_seed(0)
    return RES_TRANSFORMERS["MoMask-Res-Tiny"](K, Q, CODE_DIM, TEXT_DIM, **overrides)


def codes(batch, max_len, lengths, g):
    indices = torch.randint(0, K, (batch, max_len, Q), generator=g)
    indices[~lengths_to_mask(lengths, max_len)] = -1
    return indices


# ----- layer schedule ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("num_quantizers", [2, 3, 6])
def test_q_schedule_distribution(num_quantizers):
    g = torch.Generator().manual_seed(0)
    layers = q_schedule(200_000, num_quantizers, generator=g)
    assert layers.min() >= 1 and layers.max() <= num_quantizers - 1
    freq = torch.bincount(layers, minlength=num_quantizers)[1:].float() / layers.numel()
    # q = round((1 - cos(pi/2 u))) + 1: q = k + 1 while 1 - cos(pi/2 u) < (k + 1/2) / (Q - 2).
    edges = [0.0]
    for k in range(num_quantizers - 1):
        s = (k + 0.5) / (num_quantizers - 2) if num_quantizers > 2 else 2.0
        edges.append(2 / math.pi * math.acos(1 - s) if s <= 1 else 1.0)
    expected = torch.tensor([b - a for a, b in zip(edges[:-1], edges[1:])])
    torch.testing.assert_close(freq, expected, atol=0.005, rtol=0)


# ----- embeddings ----------------------------------------------------------------------------------------------------
def test_share_weight_ties_output_projection_to_next_input_embedding():
    shared, separate = tiny(), tiny(share_weight=False)
    inputs, (outputs, bias) = shared.input_tables(), shared.output_tables()
    assert inputs.shape == outputs.shape == (Q - 1, K + 1, CODE_DIM) and bias is None
    for q in range(1, Q - 1):                    # W predicting layer q is the table that embeds layer q
        assert torch.equal(outputs[q - 1], inputs[q])
    assert not torch.equal(outputs[Q - 2], inputs[0])
    extra = sum(p.numel() for p in separate.parameters()) - sum(p.numel() for p in shared.parameters())
    assert extra == (Q - 2) * (K + 1) * CODE_DIM + (Q - 1) * (K + 1)
    # One tensor: a gradient through the output projection reaches the embedding of the next layer.
    shared.output_tables()[0][0].sum().backward()
    assert shared.embed_proj_shared.grad[0].abs().sum() > 0


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_history_is_sum_of_lower_layer_embeddings(variant):
    model = tiny(**VARIANTS[variant])
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(0, K + 1, (3, 5, Q - 1), generator=g)
    layer = torch.tensor([1, 2, 3])
    tables = model.input_tables()
    history = model.history(ids, layer)
    for b in range(3):
        expected = sum(tables[i][ids[b, :, i]] for i in range(int(layer[b])))
        torch.testing.assert_close(history[b], expected)


def test_codebook_embeddings_are_the_frozen_rvq_partial_sums():
    torch.manual_seed(0)
    rvq = ResidualVQ(Q, K, CODE_DIM)
    for layer in rvq.layers:
        layer.codebook.copy_(torch.randn(K, CODE_DIM))
    codebooks = torch.stack([layer.codebook for layer in rvq.layers])       # (Q, K, code_dim)
    model = tiny(share_weight=False, codebooks=codebooks)
    assert model.model_args["code_embedding"] == "codebook" and "codebooks" not in model.model_args
    assert "codebook_embed" in model.state_dict()
    assert all(p is not model.codebook_embed for p in model.parameters())
    torch.testing.assert_close(model.input_tables()[:, :K], codebooks[: Q - 1])
    assert (model.input_tables()[:, K] == 0).all()                           # pad row contributes nothing

    g = torch.Generator().manual_seed(1)
    ids = torch.randint(0, K, (2, 6, Q), generator=g)
    for q in range(1, Q):
        history = model.history(ids[..., : Q - 1], torch.full((2,), q))
        torch.testing.assert_close(history, rvq.indices_to_latents(ids[..., :q]))

    rebuilt = ResidualTransformer(**model.model_args)                       # codebooks come from the state dict
    rebuilt.load_state_dict(model.state_dict())
    torch.testing.assert_close(rebuilt.input_tables(), model.input_tables())


def test_codebook_option_errors():
    with pytest.raises(ValueError, match="share_weight=False"):
        tiny(codebooks=torch.randn(Q, K, CODE_DIM))
    with pytest.raises(ValueError, match="code_embedding='codebook'"):
        tiny(share_weight=False, code_embedding="learned", codebooks=torch.randn(Q, K, CODE_DIM))
    with pytest.raises(ValueError, match=r"codebooks must be \(4 or 3, 16, 24\)"):
        tiny(share_weight=False, codebooks=torch.randn(Q, K, CODE_DIM + 1))
    with pytest.raises(ValueError, match="learned"):
        tiny().set_codebooks(torch.randn(Q, K, CODE_DIM))


# ----- loss ----------------------------------------------------------------------------------------------------------
def test_loss_over_valid_tokens_of_the_drawn_layer(monkeypatch):
    model = tiny()
    batch, max_len = 3, 7
    g = torch.Generator().manual_seed(2)
    lengths = torch.tensor([7, 4, 1])
    valid = lengths_to_mask(lengths, max_len)
    indices = codes(batch, max_len, lengths, g)
    text = torch.randn(batch, TEXT_DIM, generator=g)
    layer = torch.tensor([1, 3, 2])
    monkeypatch.setattr(rt, "q_schedule", lambda *args, **kwargs: layer.clone())
    base = torch.randn(batch, max_len, K, generator=g)
    seen = {}

    def run(perturb):
        def fake_logits(history, layer_in, text_in, valid_in):
            seen.update(history=history, layer=layer_in)
            return base + 100.0 * torch.randn(base.shape, generator=g) * perturb[..., None]
        model.logits = fake_logits
        return model(indices, lengths, text)

    loss, logs = run(torch.zeros_like(valid))
    targets = indices[torch.arange(batch), :, layer]                         # (B, N)
    torch.testing.assert_close(loss, F.cross_entropy(base[valid], targets[valid]))
    assert torch.equal(seen["layer"], layer) and logs["layer"] == 2.0
    padded = indices.masked_fill(~valid[..., None], K)
    torch.testing.assert_close(seen["history"], model.history(padded[..., :-1], layer))
    torch.testing.assert_close(run(~valid)[0], loss)                         # pads never count
    assert not torch.allclose(run(valid)[0], loss)


# ----- generation ----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_generate_keeps_base_layer_and_pads(variant):
    model = tiny(**VARIANTS[variant])
    g = torch.Generator().manual_seed(0)
    lengths = torch.tensor([6, 2, 4])
    valid = lengths_to_mask(lengths, 6)
    base = torch.randint(0, K, (3, 6), generator=g).masked_fill(~valid, -1)
    out = model.generate(base, lengths, torch.randn(3, TEXT_DIM), generator=g)
    assert out.shape == (3, 6, Q) and out.dtype == torch.long
    assert torch.equal(out[..., 0], base)
    assert (out[~valid] == -1).all()
    assert (out[valid] >= 0).all() and (out[valid] < K).all()
    assert model.training


def test_pad_id_is_never_sampled():
    model = tiny(share_weight=False)
    with torch.no_grad():
        model.proj_bias[:, K] = 1e4                      # a pad logit, if it existed, would win everywhere
    lengths = torch.tensor([5, 3])
    base = torch.randint(0, K, (2, 5))
    for cond_scale in (1.0, 5.0):
        out = model.generate(base, lengths, torch.randn(2, TEXT_DIM), cond_scale=cond_scale,
                             generator=torch.Generator().manual_seed(0))
        valid = lengths_to_mask(lengths, 5)
        assert (out[valid] >= 0).all() and (out[valid] < K).all()


def test_cfg_scale_one_is_conditional_path():
    model = tiny().eval()
    g = torch.Generator().manual_seed(0)
    history = torch.randn(2, 5, CODE_DIM, generator=g)
    layer = torch.tensor([1, 3])
    valid = lengths_to_mask(torch.tensor([5, 3]), 5)
    text = torch.randn(2, TEXT_DIM, generator=g)
    with torch.no_grad():
        cond = model.logits(history, layer, text, valid)
        uncond = model.logits(history, layer, torch.zeros_like(text), valid)
        assert torch.equal(model.guided_logits(history, layer, text, valid, 1.0), cond)
        for scale in (5.0, 0.5, 0.0):  # also below 1: 0 gives the unconditional logits
            guided = model.guided_logits(history, layer, text, valid, scale)
            torch.testing.assert_close(guided[valid], (uncond + scale * (cond - uncond))[valid], atol=1e-4,
                                       rtol=1e-4)
    assert not torch.allclose(cond[valid], uncond[valid])


# ----- learning ------------------------------------------------------------------------------------------------------
def test_tiny_model_learns_text_dependent_residuals():
    """Layer q = (base + q * (c + 1)) mod K for text class c: each layer needs both the history and the text
    (chance is 1/K = 1/4; ignoring the text, at most half of the tokens could match)."""
    codebook_size, num_quantizers, max_len, classes = 4, 3, 8, 2
    g = torch.Generator().manual_seed(0)
    texts = torch.randn(classes, TEXT_DIM, generator=g)

    def batch(size):
        c = torch.randint(0, classes, (size,), generator=g)
        base = torch.randint(0, codebook_size, (size, max_len), generator=g)
        layers = [base] + [(base + q * (c[:, None] + 1)) % codebook_size for q in range(1, num_quantizers)]
        return torch.stack(layers, -1), torch.randint(4, max_len + 1, (size,), generator=g), texts[c]

    torch.manual_seed(0)
    model = RES_TRANSFORMERS["MoMask-Res-Tiny"](codebook_size, num_quantizers, 32, TEXT_DIM, dropout=0.0,
                                                cond_drop_prob=0.1)
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-3)
    losses = []
    for _ in range(150):
        loss, _ = model(*batch(32))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert sum(losses[-10:]) / 10 < 0.3 * sum(losses[:10]) / 10

    target, lengths, text = batch(64)
    # Guidance 1: at this training length the unconditional branch (10% of the batches) is still too weak to
    # extrapolate from; the conditional path is what is being checked here.
    out = model.generate(target[..., 0], lengths, text, cond_scale=1.0, topk_filter_thres=0.0,
                         generator=torch.Generator().manual_seed(1))
    valid = lengths_to_mask(lengths, max_len)
    assert torch.equal(out[..., 0][valid], target[..., 0][valid])
    for q in range(1, num_quantizers):
        accuracy = (out[..., q] == target[..., q])[valid].float().mean().item()
        assert accuracy > 0.9, f"layer {q}: {accuracy:.3f}"


# ----- registry and input checks ------------------------------------------------------------------------------------
def test_registry_builds_and_rebuilds_from_model_args():
    published = RES_TRANSFORMERS["MoMask-Res"](512, 6, 512, 384)
    args = published.model_args
    assert (args["latent_dim"], args["ff_size"], args["num_layers"], args["num_heads"]) == (384, 1024, 8, 6)
    assert (args["dropout"], args["cond_drop_prob"], args["share_weight"]) == (0.2, 0.2, True)
    assert published.input_tables().shape == (5, 513, 512)
    assert all(isinstance(v, (int, float, str, bool)) for v in args.values())
    for name, factory in RES_TRANSFORMERS.items():
        for variant in VARIANTS.values():
            model = factory(K, Q, CODE_DIM, TEXT_DIM, **variant)
            rebuilt = ResidualTransformer(**model.model_args)
            rebuilt.load_state_dict(model.state_dict())
            g = torch.Generator().manual_seed(0)
            loss, logs = model(codes(2, 5, torch.tensor([5, 3]), g), torch.tensor([5, 3]), torch.randn(2, TEXT_DIM))
            assert torch.isfinite(loss) and set(logs) == {"loss", "acc", "layer"}, name


def test_bad_inputs_fail_clearly():
    model = tiny()
    text = torch.randn(2, TEXT_DIM)
    g = torch.Generator().manual_seed(0)
    indices = codes(2, 5, torch.tensor([5, 3]), g)
    with pytest.raises(ValueError, match=r"indices must be \(B, N, 4\)"):
        model(indices[..., :3], torch.tensor([5, 3]), text)
    with pytest.raises(ValueError, match=r"valid positions must lie in \[0, 16\)"):
        model(indices, torch.tensor([5, 4]), text)
    with pytest.raises(ValueError, match="text_dim=12"):
        model.generate(indices[..., 0], torch.tensor([5, 3]), torch.randn(2, 3))
    with pytest.raises(ValueError, match="num_quantizers must be >= 2"):
        ResidualTransformer(K, 1, CODE_DIM, TEXT_DIM)


def test_token_ids_and_lengths_of_the_wrong_type_fail_clearly():
    # Float ids were truncated by .long() (3.7 -> 3) in training, generation and editing alike.
    model = tiny()
    text = torch.randn(2, TEXT_DIM)
    lengths = torch.tensor([5, 3])
    indices = codes(2, 5, lengths, torch.Generator().manual_seed(0))
    with pytest.raises(TypeError, match="forward: indices must be integer codes, got torch.float32"):
        model(indices.float(), lengths, text)
    with pytest.raises(TypeError, match="generate: indices must be integer codes, got torch.float32"):
        model.generate(indices[..., 0].float(), lengths, text)
    with pytest.raises(TypeError, match=r"generate \(known\): indices must be integer codes, got torch.float32"):
        model.generate(indices[..., 0], lengths, text, known=indices.float(),
                       edit_mask=torch.ones(2, 5, dtype=torch.bool))
    with pytest.raises(TypeError, match="forward: lengths must be an integer tensor .*torch.float32"):
        model(indices, lengths.float(), text)
    with pytest.raises(TypeError, match="generate: lengths must be an integer tensor"):
        model.generate(indices[..., 0], lengths > 0, text)


def test_mismatched_or_empty_batch_fails_clearly():
    model = tiny()
    lengths = torch.tensor([5, 3])
    indices = codes(2, 5, lengths, torch.Generator().manual_seed(0))
    with pytest.raises(ValueError, match="forward: indices holds B=2 samples but lengths has 1"):
        model(indices, lengths[:1], torch.randn(1, TEXT_DIM))
    with pytest.raises(ValueError, match="generate: indices holds B=2 samples but lengths has 1"):
        model.generate(indices[..., 0], lengths[:1], torch.randn(1, TEXT_DIM))
    with pytest.raises(ValueError, match=r"the batch is empty \(B=0\)"):
        model(indices[:0], lengths[:0], torch.randn(0, TEXT_DIM))


@pytest.mark.parametrize("variant", [{}, {"share_weight": False}])
def test_gradients_are_the_same_on_every_run_with_two_threads(variant):
    """The per-sample gathers of the embedding and output tables summed their gradients in a thread-dependent order on
    CPU, so train_res_transformer.py runs (and a resumed run against an uninterrupted one) drifted apart in the last
    bits with more than one thread; the transformer's other parts were already reproducible."""
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        grads = []
        for _ in range(3):
            model = tiny(**variant)
            g = torch.Generator().manual_seed(1)
            lengths = torch.randint(5, 50, (32,), generator=g)
            text = torch.randn(32, model.text_dim, generator=g)
            torch.manual_seed(5)
            loss, _ = model(codes(32, 49, lengths, g), lengths, text)
            loss.backward()
            grads.append({n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None})
    finally:
        torch.set_num_threads(threads)
    for other in grads[1:]:
        assert [n for n in grads[0] if not torch.equal(grads[0][n], other[n])] == []
