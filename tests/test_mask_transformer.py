"""MaskTransformer (MoMask base layer): schedules, corruption, loss, confidence-based decoding, guidance, learning."""

import math

import pytest
import torch
import torch.nn.functional as F

import models.mask_transformer as mt
from models.mask_schedule import (
    corrupt_tokens,
    cosine_schedule,
    lengths_to_mask,
    num_masked_for_generation,
    num_masked_for_training,
    sample_from_logits,
    sample_training_mask,
    top_k_filter,
)
from models.mask_transformer import MASK_TRANSFORMERS, MaskTransformer, masked_token_loss

K, CODE_DIM, TEXT_DIM = 16, 24, 12


def tiny(**overrides) -> MaskTransformer:
    torch.manual_seed(0)
    return MASK_TRANSFORMERS["MoMask-Mask-Tiny"](K, CODE_DIM, TEXT_DIM, **overrides)


# ----- schedules ---------------------------------------------------------------------------------------------------
def test_cosine_schedule_values():
    r = torch.tensor([0.0, 1 / 3, 0.5, 1.0])
    expected = torch.tensor([1.0, math.cos(math.pi / 6), math.cos(math.pi / 4), 0.0])
    torch.testing.assert_close(cosine_schedule(r), expected, atol=1e-6, rtol=0)


def test_training_mask_counts_only_valid_positions():
    lengths = torch.tensor([1, 3, 7, 10, 10])
    ratio = torch.tensor([0.5, 0.5, 0.3, 1.0, 0.0])
    # round(gamma * length) clamped to [1, length], generation's count: round(0.5) = 0 -> 1, round(1.5) = 2,
    # round(2.1) = 2, 10, clamp(0) = 1.
    torch.testing.assert_close(num_masked_for_training(lengths, ratio), torch.tensor([1, 2, 2, 10, 1]))
    torch.testing.assert_close(num_masked_for_training(lengths, ratio), num_masked_for_generation(lengths, ratio))
    g = torch.Generator().manual_seed(0)
    mask = sample_training_mask(lengths, 12, ratio, generator=g)
    assert mask.shape == (5, 12)
    torch.testing.assert_close(mask.sum(1), torch.tensor([1, 2, 2, 10, 1]))
    assert not (mask & ~lengths_to_mask(lengths, 12)).any()
    # Random ratios: per-sample counts follow round(cos(pi/2 r) * length), never 0, never on padding.
    lengths = torch.randint(1, 20, (500,), generator=g)
    mask = sample_training_mask(lengths, 20, generator=g)
    counts = mask.sum(1)
    assert (counts >= 1).all() and (counts <= lengths).all()
    assert not (mask & ~lengths_to_mask(lengths, 20)).any()
    ratios = (counts.float() / lengths.float())
    assert 0.5 < ratios.mean() < 0.8        # E[cos(pi/2 r)] = 2/pi ~ 0.64, a little more from the clamp to 1


def test_generation_counts_round_and_clamp():
    lengths = torch.tensor([10, 10, 7, 1])
    ratio = cosine_schedule(torch.tensor([0.0, 0.5, 1.0, 1.0]))
    # round(10)=10, round(7.07)=7, round(~0)=0 -> 1, round(~0)=0 -> 1.
    torch.testing.assert_close(num_masked_for_generation(lengths, ratio), torch.tensor([10, 7, 1, 1]))


def test_corruption_proportions():
    codebook_size, mask_id = 1000, 1000
    g = torch.Generator().manual_seed(0)
    indices = torch.randint(0, codebook_size, (400, 500), generator=g)
    mask = torch.rand(400, 500, generator=g) < 0.5
    out = corrupt_tokens(indices, mask, codebook_size, mask_id, generator=g)
    assert torch.equal(out[~mask], indices[~mask])
    masked_in, masked_out = indices[mask], out[mask]
    is_mask = masked_out == mask_id
    changed = ~is_mask & (masked_out != masked_in)
    unchanged = masked_out == masked_in
    # 10% random code (1/K of those equal the true one), 0.9 * 0.88 = 79.2% mask id, 10.8% unchanged.
    assert abs(is_mask.float().mean().item() - 0.792) < 0.005
    assert abs(changed.float().mean().item() - 0.1 * (1 - 1 / codebook_size)) < 0.005
    assert abs(unchanged.float().mean().item() - (0.108 + 0.1 / codebook_size)) < 0.005
    assert masked_out[~is_mask].max() < codebook_size and masked_out.min() >= 0


# ----- loss ----------------------------------------------------------------------------------------------------------
def test_loss_only_on_masked_positions(monkeypatch):
    model = tiny()
    batch, max_len = 4, 9
    g = torch.Generator().manual_seed(1)
    indices = torch.randint(0, K, (batch, max_len), generator=g)
    lengths = torch.tensor([9, 5, 2, 7])
    indices[lengths_to_mask(lengths, max_len) == 0] = -1
    text_emb = torch.randn(batch, TEXT_DIM, generator=g)
    base = torch.randn(batch, max_len, K, generator=g)
    recorded = {}

    def recording_mask(*args, **kwargs):
        recorded["mask"] = sample_training_mask(*args, **kwargs)
        return recorded["mask"]

    monkeypatch.setattr(mt, "sample_training_mask", recording_mask)

    def run(perturb_where):
        def fake_logits(ids, text, valid):
            recorded["ids"] = ids
            return base + 100.0 * torch.randn(base.shape, generator=g) * perturb_where(recorded["mask"])[..., None]
        model.logits = fake_logits
        torch.manual_seed(5)
        return model(indices, lengths, text_emb)

    loss, logs = run(lambda mask: torch.zeros_like(mask))
    mask = recorded["mask"]
    assert not (mask & ~lengths_to_mask(lengths, max_len)).any() and (mask.sum(1) >= 1).all()
    expected = F.cross_entropy(base[mask], indices[mask])
    torch.testing.assert_close(loss, expected)
    assert (recorded["ids"][~lengths_to_mask(lengths, max_len)] == K + 1).all()     # pads fed as the pad id
    acc = (base[mask].argmax(-1) == indices[mask]).float().mean()
    torch.testing.assert_close(logs["acc"], acc)

    loss_unmasked_changed, _ = run(lambda m: ~m)                   # unmasked valid and padded positions
    torch.testing.assert_close(loss_unmasked_changed, loss)
    loss_masked_changed, _ = run(lambda m: m)
    assert not torch.allclose(loss_masked_changed, loss)


def test_masked_token_loss_label_smoothing():
    g = torch.Generator().manual_seed(0)
    logits, targets = torch.randn(2, 5, 7, generator=g), torch.randint(0, 7, (2, 5), generator=g)
    mask = torch.tensor([[1, 0, 1, 0, 0], [0, 1, 1, 1, 0]], dtype=torch.bool)
    loss, _ = masked_token_loss(logits, targets, mask, label_smoothing=0.1)
    torch.testing.assert_close(loss, F.cross_entropy(logits[mask], targets[mask], label_smoothing=0.1))


# ----- sampling helpers ----------------------------------------------------------------------------------------------
def test_top_k_filter_keeps_ceil_fraction():
    logits = torch.arange(20.0).flip(0)[None]
    out = top_k_filter(logits, 0.9)                                # k = ceil(0.1 * 20) = 2
    assert torch.isfinite(out).sum() == 2 and torch.equal(out[0, :2], logits[0, :2])


@pytest.mark.parametrize("sampling", ["categorical", "gumbel"])
def test_sampling_matches_tempered_softmax(sampling):
    logits = torch.log(torch.tensor([0.1, 0.2, 0.7, 0.0]))           # -inf entry must never be drawn
    g = torch.Generator().manual_seed(0)
    for temperature in (1.0, 0.5):
        draws = sample_from_logits(logits.expand(100_000, 4), temperature, sampling, g)
        freq = torch.bincount(draws, minlength=4).float() / draws.numel()
        expected = torch.softmax(logits / temperature, dim=0)
        torch.testing.assert_close(freq, expected, atol=0.01, rtol=0)
        assert freq[3] == 0


# ----- generation ----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kwargs", [dict(sampling="categorical"), dict(sampling="gumbel"), dict(gsample=True)])
def test_generate_codes_in_range_and_pads(kwargs):
    model = tiny()
    lengths = torch.tensor([7, 3, 1])
    g = torch.Generator().manual_seed(0)
    out = model.generate(lengths, torch.randn(3, TEXT_DIM), time_steps=4, cond_scale=2.5, generator=g, **kwargs)
    valid = lengths_to_mask(lengths, 7)
    assert out.shape == (3, 7) and out.dtype == torch.long
    assert (out[~valid] == -1).all()
    assert (out[valid] >= 0).all() and (out[valid] < K).all()
    assert model.training                                          # generate restores the mode


def test_generate_sampling_arguments():
    model = tiny()
    with pytest.raises(ValueError, match="contradicts"):
        model.generate(torch.tensor([3]), torch.randn(1, TEXT_DIM), sampling="categorical", gsample=True)
    with pytest.raises(ValueError, match="sampling must be one of"):
        model.generate(torch.tensor([3]), torch.randn(1, TEXT_DIM), sampling="greedy")
    text = torch.randn(2, TEXT_DIM)
    a = model.generate(torch.tensor([6, 4]), text, time_steps=3, generator=torch.Generator().manual_seed(3))
    b = model.generate(torch.tensor([6, 4]), text, time_steps=3, generator=torch.Generator().manual_seed(3))
    assert torch.equal(a, b)


def test_remasking_commits_most_confident_tokens():
    """Stub logits give each position a fresh random confidence per step; the least confident tokens of the ones just
    sampled are re-masked, committed ones never are, and the output holds each position's last sample."""
    codebook_size = 6                                   # top-k keeps ceil(0.1 * 6) = 1 logit: sampling is argmax
    torch.manual_seed(0)
    model = MASK_TRANSFORMERS["MoMask-Mask-Tiny"](codebook_size, CODE_DIM, TEXT_DIM)
    lengths = torch.tensor([10, 7])
    valid = lengths_to_mask(lengths, 10)
    g = torch.Generator().manual_seed(0)
    calls = []

    def fake_logits(ids, text, valid_in):
        peak = torch.rand(ids.shape, generator=g) * 5
        token = torch.randint(0, codebook_size, ids.shape, generator=g)
        logits = torch.zeros(*ids.shape, codebook_size).scatter(-1, token[..., None], peak[..., None])
        conf = torch.softmax(logits, -1).gather(-1, token[..., None]).squeeze(-1)
        calls.append(dict(masked=ids == codebook_size, token=token, conf=conf, pad=ids == codebook_size + 1))
        return logits

    model.logits = fake_logits
    time_steps = 6
    out = model.generate(lengths, torch.randn(2, TEXT_DIM), time_steps=time_steps, cond_scale=1.0, generator=g)
    assert len(calls) == time_steps                      # cond_scale 1: one (conditional) pass per step
    assert torch.equal(calls[0]["masked"], valid) and torch.equal(calls[0]["pad"], ~valid)
    for k in range(1, time_steps):
        prev, cur = calls[k - 1], calls[k]
        ratio = torch.full((2,), math.cos(math.pi / 2 * k / (time_steps - 1)))
        assert torch.equal(cur["masked"].sum(1), num_masked_for_generation(lengths, ratio))
        assert not (cur["masked"] & ~prev["masked"]).any()            # committed tokens are never re-masked
        for b in range(2):
            remasked = prev["conf"][b][cur["masked"][b]]
            committed = prev["conf"][b][prev["masked"][b] & ~cur["masked"][b]]
            if remasked.numel() and committed.numel():
                assert remasked.max() <= committed.min()
    # Each position keeps the token sampled at the last step it was masked.
    expected = torch.full((2, 10), -1)
    for call in calls:
        expected = torch.where(call["masked"], call["token"], expected)
    assert torch.equal(out, expected)


def test_cfg_scale_one_is_conditional_path():
    """Scale 1 is the conditional pass alone; any other scale, also below 1 (0 gives the unconditional logits), is
    uncond + scale * (cond - uncond)."""
    model = tiny().eval()
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(0, K + 1, (3, 6), generator=g)
    valid = lengths_to_mask(torch.tensor([6, 4, 2]), 6)
    ids[~valid] = K + 1
    text = torch.randn(3, TEXT_DIM, generator=g)
    with torch.no_grad():
        cond = model.logits(ids, text, valid)
        uncond = model.logits(ids, torch.zeros_like(text), valid)
        assert torch.equal(model.guided_logits(ids, text, valid, 1.0), cond)
        for scale in (3.0, 0.5, 0.0):
            guided = model.guided_logits(ids, text, valid, scale)
            torch.testing.assert_close(guided[valid], (uncond + scale * (cond - uncond))[valid], atol=1e-4,
                                       rtol=1e-4)
    assert not torch.allclose(cond[valid], uncond[valid])


def test_condition_dropout_zeroes_text_in_training_only():
    model = tiny(cond_drop_prob=0.5)
    torch.manual_seed(0)  # the drop draws come from the global generator: seeded, the rate does not depend on order
    text = torch.randn(4000, TEXT_DIM) + 3.0
    dropped = torch.isclose(model.condition(text)[:, 0], model.cond_emb.bias.expand(4000, -1)).all(-1)
    assert 0.45 < dropped.float().mean() < 0.55
    model.eval()
    assert not torch.isclose(model.condition(text)[:, 0], model.cond_emb.bias.expand(4000, -1)).all(-1).any()


# ----- learning ------------------------------------------------------------------------------------------------------
def test_tiny_model_learns_text_dependent_sequences():
    """Three texts, each with its own fixed random token sequence: the trained model must regenerate the sequence of
    the given text (ignoring the text, at most about 1/3 + 1/K of the tokens could match)."""
    codebook_size, max_len, classes = 8, 8, 3
    g = torch.Generator().manual_seed(0)
    texts = torch.randn(classes, TEXT_DIM, generator=g)
    sequences = torch.randint(0, codebook_size, (classes, max_len), generator=g)

    def batch(size):
        c = torch.randint(0, classes, (size,), generator=g)
        return sequences[c], torch.randint(4, max_len + 1, (size,), generator=g), texts[c]

    torch.manual_seed(0)
    model = MASK_TRANSFORMERS["MoMask-Mask-Tiny"](codebook_size, 32, TEXT_DIM, dropout=0.0)
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-3)
    losses = []
    for _ in range(80):
        loss, _ = model(*batch(32))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert sum(losses[-10:]) / 10 < 0.5 * sum(losses[:10]) / 10

    target, lengths, text = batch(64)
    for sampling in ("categorical", "gumbel"):
        # No top-k filtering: with K = 8 the default keeps a single logit and sampling would be an argmax.
        out = model.generate(lengths, text, time_steps=6, cond_scale=2.0, topk_filter_thres=0.0, sampling=sampling,
                             generator=torch.Generator().manual_seed(1))
        valid = lengths_to_mask(lengths, out.shape[1])
        accuracy = (out == target[:, : out.shape[1]])[valid].float().mean().item()
        assert accuracy > 0.75, f"{sampling}: {accuracy:.3f}"


# ----- registry and input checks ------------------------------------------------------------------------------------
def test_registry_builds_and_rebuilds_from_model_args():
    published = MASK_TRANSFORMERS["MoMask-Mask"](512, 512, 384)
    args = published.model_args
    assert (args["latent_dim"], args["ff_size"], args["num_layers"], args["num_heads"]) == (384, 1024, 8, 6)
    assert (args["dropout"], args["cond_drop_prob"], args["codebook_size"]) == (0.2, 0.1, 512)
    assert published.token_emb.num_embeddings == 514 and published.output_process.proj.out_features == 512
    assert all(isinstance(v, (int, float, str, bool)) for v in args.values())
    for name, factory in MASK_TRANSFORMERS.items():
        model = factory(K, CODE_DIM, TEXT_DIM)
        rebuilt = MaskTransformer(**model.model_args)
        rebuilt.load_state_dict(model.state_dict())
        loss, logs = model(torch.randint(0, K, (2, 5)), torch.tensor([5, 3]), torch.randn(2, TEXT_DIM))
        assert torch.isfinite(loss) and set(logs) == {"loss", "acc", "mask_ratio"}, name


def test_bad_inputs_fail_clearly():
    model = tiny()
    text = torch.randn(2, TEXT_DIM)
    indices = torch.randint(0, K, (2, 5))
    indices[1, 3:] = -1                                                # padding may hold -1
    model(indices, torch.tensor([5, 3]), text)
    with pytest.raises(ValueError, match=r"valid positions must lie in \[0, 16\)"):
        model(indices, torch.tensor([5, 4]), text)
    with pytest.raises(ValueError, match="text_dim=12"):
        model(indices, torch.tensor([5, 3]), torch.randn(2, 7))
    with pytest.raises(ValueError, match=r"lengths \(in tokens\) must lie in \[1, 5\]"):
        model(indices, torch.tensor([6, 3]), text)
    with pytest.raises(ValueError, match=r"indices must be \(B, N\)"):
        model(indices[..., None], torch.tensor([5, 3]), text)
    with pytest.raises(ValueError, match="time_steps"):
        model.generate(torch.tensor([3]), text[:1], time_steps=0)


def test_token_ids_and_lengths_of_the_wrong_type_fail_clearly():
    # Float ids were truncated by .long() (3.7 -> 3), float lengths likewise, bool ones read as 0 and 1.
    model = tiny()
    text = torch.randn(2, TEXT_DIM)
    indices = torch.randint(0, K, (2, 5))
    lengths = torch.tensor([5, 3])
    for bad in (indices.float() + 0.5, indices > 5):
        with pytest.raises(TypeError, match=f"forward: indices must be integer codes, got {bad.dtype}"):
            model(bad, lengths, text)
    with pytest.raises(TypeError, match=r"generate \(known\): indices must be integer codes, got torch.float32"):
        model.generate(lengths, text, time_steps=1, known=indices.float(), edit_mask=torch.ones(2, 5, dtype=torch.bool))
    for bad in (lengths.float(), lengths > 0):
        with pytest.raises(TypeError, match="forward: lengths must be an integer tensor"):
            model(indices, bad, text)
        with pytest.raises(TypeError, match="generate: lengths must be an integer tensor"):
            model.generate(bad, text, time_steps=1)


def test_mismatched_or_empty_batch_fails_clearly():
    model = tiny()
    indices = torch.randint(0, K, (2, 5))
    with pytest.raises(ValueError, match="indices holds B=2 samples but lengths has 1"):
        model(indices, torch.tensor([5]), torch.randn(1, TEXT_DIM))
    with pytest.raises(ValueError, match=r"the batch is empty \(B=0\)"):
        model(indices[:0], torch.zeros(0, dtype=torch.long), torch.randn(0, TEXT_DIM))
    out = model.generate(torch.zeros(0, dtype=torch.long), torch.randn(0, TEXT_DIM), time_steps=2)
    assert out.shape == (0, 0) and out.dtype == torch.long
