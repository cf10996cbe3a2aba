"""MARDM: mask schedule, corruption, training loss, random-order generation, registry."""

import math

import pytest
import torch
from mardm_helpers import randomize, tiny

import models.mardm as mardm
from models.mardm import (
    MARDM_MODELS,
    corrupt_masked,
    cosine_schedule,
    lengths_to_mask,
    num_masked_tokens,
    sample_training_mask,
)


# ----- schedule ------------------------------------------------------------------------------------------------------
def test_cosine_schedule_and_counts():
    u = torch.tensor([0.0, 0.5, 1.0])
    assert torch.allclose(cosine_schedule(u), torch.tensor([1.0, math.cos(math.pi / 4), 0.0]), atol=1e-7)
    lengths = torch.tensor([10, 10, 3, 1, 49])
    ratio = torch.tensor([0.44, 1.0, 0.1, 0.0, 0.5])
    # round(4.4)=4, 10, round(0.3)=0 -> clamp 1, 0 -> 1, round(24.5)=24 (half to even, as torch.round)
    assert num_masked_tokens(lengths, ratio).tolist() == [4, 10, 1, 1, 24]


def test_training_mask_counts_only_valid_positions():
    lengths = torch.tensor([7, 3, 12, 1])
    ratio = torch.tensor([0.5, 0.9, 0.25, 0.8])
    g = torch.Generator().manual_seed(0)
    for _ in range(50):
        mask = sample_training_mask(lengths, 12, ratio=ratio, generator=g)
        assert mask.sum(1).tolist() == num_masked_tokens(lengths, ratio).tolist()
        assert not (mask & ~lengths_to_mask(lengths, 12)).any()


def test_training_mask_is_a_uniform_permutation_with_cosine_ratio():
    g = torch.Generator().manual_seed(1)
    lengths = torch.full((4000,), 20)
    lengths[::2] = 10
    mask = sample_training_mask(lengths, 20, generator=g)
    ratio = mask.sum(1).float() / lengths
    # E[cos(pi/2 u)] = 2/pi for u ~ U(0, 1) (plus the rounding/clamp, small at these lengths).
    assert ratio.mean().item() == pytest.approx(2 / math.pi, abs=0.02)
    # Every valid position is equally likely to be masked.
    per_pos = mask[1::2].float().mean(0)
    assert per_pos.max() - per_pos.min() < 0.06
    assert not mask[::2, 10:].any()


def test_corruption_proportions():
    g = torch.Generator().manual_seed(2)
    latents = torch.randn(200, 100, 3, generator=g)
    mask = torch.rand(200, 100, generator=g) < 0.6
    mask_latent = torch.full((1, 1, 3), 7.0)
    out = corrupt_masked(latents, mask, mask_latent, generator=g)
    assert torch.equal(out[~mask], latents[~mask])
    masked_out, masked_in = out[mask], latents[mask]
    is_mask_latent = (masked_out == 7.0).all(-1)
    unchanged = (masked_out == masked_in).all(-1)
    noised = ~is_mask_latent & ~unchanged
    n = mask.sum().item()
    assert noised.sum().item() / n == pytest.approx(0.10, abs=0.01)
    assert is_mask_latent.sum().item() / n == pytest.approx(0.90 * 0.88, abs=0.015)
    assert unchanged.sum().item() / n == pytest.approx(0.90 * 0.12, abs=0.01)


# ----- training -------------------------------------------------------------------------------------------------------
def test_loss_uses_masked_positions_only(monkeypatch):
    model = randomize(tiny(diffmlps_batch_mul=3))
    captured = {}
    draw = mardm.sample_training_mask

    def spy_mask(*args, **kw):
        captured["mask"] = draw(*args, **kw)
        return captured["mask"]

    head_forward = model.head.forward

    def spy_head(z, target, mask=None):
        captured["z"], captured["target"] = z, target
        return head_forward(z, target, mask)

    monkeypatch.setattr(mardm, "sample_training_mask", spy_mask)
    monkeypatch.setattr(model.head, "forward", spy_head)
    latents, targets = torch.randn(3, 9, 8), torch.randn(3, 9, 8)
    lengths = torch.tensor([9, 4, 6])
    loss, logs = model(latents, targets, lengths, torch.randn(3, 12))
    mask = captured["mask"]
    assert loss.ndim == 0 and torch.isfinite(loss) and set(logs) == {"loss", "mask_ratio"}
    assert captured["target"].shape[0] == 3 * mask.sum().item()
    assert torch.equal(captured["target"], targets[mask].repeat(3, 1))
    assert captured["z"].shape == (3 * mask.sum().item(), model.latent_dim)


def test_padding_does_not_leak_into_the_loss():
    model = randomize(tiny())
    latents, targets = torch.randn(2, 10, 8), torch.randn(2, 10, 8)
    lengths = torch.tensor([10, 5])
    text = torch.randn(2, 12)
    torch.manual_seed(0)
    reference, _ = model(latents, targets, lengths, text)
    latents[1, 5:] = 1e3
    targets[1, 5:] = float("nan")
    torch.manual_seed(0)
    loss, _ = model(latents, targets, lengths, text)
    assert torch.isfinite(loss)
    assert loss.item() == pytest.approx(reference.item(), rel=1e-5)


def test_condition_dropout_zeroes_text():
    model = tiny(cond_drop_prob=0.5)
    torch.manual_seed(0)  # the drop draws come from the global generator: seeded, the rate does not depend on order
    text = torch.randn(2000, 12)
    model.train()
    dropped = (model.condition(text) - model.cond_emb.bias).abs().sum(-1) < 1e-6
    assert dropped.float().mean().item() == pytest.approx(0.5, abs=0.05)
    model.eval()
    assert torch.allclose(model.condition(text[:3], force_uncond=True), model.cond_emb.bias.expand(3, -1))
    assert not ((model.condition(text) - model.cond_emb.bias).abs().sum(-1) < 1e-6).any()


def test_text_embedding_of_another_dtype_is_cast():
    """A float64 text embedding (e.g. read back from a NumPy cache) conditions like its float32 copy, in training and
    in generation, as the token transformers' condition does."""
    model = randomize(tiny())
    text = torch.randn(2, 12, dtype=torch.float64)
    latents, lengths = torch.randn(2, 5, 8), torch.tensor([5, 3])
    torch.manual_seed(0)
    loss64, _ = model(latents, latents, lengths, text)
    torch.manual_seed(0)
    loss32, _ = model(latents, latents, lengths, text.float())
    assert torch.equal(loss64, loss32)
    out = [model.generate(lengths, t, time_steps=2, cfg=2.0, generator=torch.Generator().manual_seed(0))
           for t in (text, text.float())]
    assert torch.equal(out[0], out[1])

def test_tiny_model_learns_a_toy_task():
    torch.manual_seed(0)
    model = tiny(ae_dim=4, target_dim=4, text_dim=6, dropout=0.0, cond_drop_prob=0.1)
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-3)
    g = torch.Generator().manual_seed(0)
    basis = torch.randn(6, 4, generator=g)
    pos = torch.linspace(-1, 1, 12)[None, :, None]
    losses = []
    for _ in range(120):
        text = torch.randn(16, 6, generator=g)
        # Each token is the caption's direction scaled by its position: learnable from text and context.
        latents = (text @ basis)[:, None, :] * pos + 0.05 * torch.randn(16, 12, 4, generator=g)
        lengths = torch.randint(6, 13, (16,), generator=g)
        loss, _ = model(latents, latents, lengths, text)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    first, last = sum(losses[:20]) / 20, sum(losses[-20:]) / 20
    assert last < 0.6 * first, (first, last)


# ----- generation -----------------------------------------------------------------------------------------------------
def spy_generation(model, monkeypatch):
    """Record each transformer input and every call of the head's sampler."""
    calls = {"x_in": [], "sample": []}
    encode, sample = model.encode, model.head.sample

    def spy_encode(x_in, text_emb, valid, force_uncond=False):
        calls["x_in"].append(x_in.clone())
        return encode(x_in, text_emb, valid, force_uncond)

    def spy_sample(z, cfg_scale=1.0, temperature=1.0, z_uncond=None, generator=None, **sampler):
        calls["sample"].append((z.shape[0], z_uncond is not None))
        return sample(z, cfg_scale, temperature, z_uncond, generator, **sampler)

    monkeypatch.setattr(model, "encode", spy_encode)
    monkeypatch.setattr(model.head, "sample", spy_sample)
    return calls


def test_generation_takes_another_head_sampler(monkeypatch):
    """head_steps respaces a DDPM head (all its steps: the default, draw for draw); head_solver / head_steps choose a
    SiT head's solver; a sampler the head cannot take fails before anything is generated."""
    model = randomize(tiny("MARDM-DDPM-Tiny", diffusion_steps=20))
    lengths, text = torch.tensor([5, 3]), torch.randn(2, 12)

    def run(**sampler):
        return model.generate(lengths, text, time_steps=3, cfg=2.0, generator=torch.Generator().manual_seed(0),
                              **sampler)

    default = run()
    assert torch.equal(run(head_steps=20), default)
    told = []
    forward = model.head.net.forward
    monkeypatch.setattr(model.head.net, "forward", lambda x, t, c: told.append(t[0].item()) or forward(x, t, c))
    fast = run(head_steps=4)
    assert told == [19, 13, 6, 0] * 3 and not torch.equal(fast, default)  # 3 generation steps of 4 head steps
    told.clear()
    assert not torch.equal(run(head_solver="ddim", head_steps=4), fast) and told == [19, 13, 6, 0] * 3
    for bad, message in (({"head_solver": "euler"}, "samples with"), ({"head_steps": 21}, "between 1 and the 20")):
        told.clear()
        with pytest.raises(ValueError, match=message):
            run(**bad)
        assert told == []
    sit = randomize(tiny("MARDM-SiT-Tiny"))  # euler in 4 steps
    evals = []
    sit_forward = sit.head.net.forward
    monkeypatch.setattr(sit.head.net, "forward", lambda x, t, c: evals.append(1) or sit_forward(x, t, c))
    sit.generate(lengths, text, time_steps=2, cfg=1.0, head_solver="heun", head_steps=3)
    assert len(evals) == 2 * 3 * 2  # 2 generation steps, 3 heun steps of 2 evaluations


def test_generation_schedule_commits_every_position(monkeypatch):
    model = randomize(tiny())
    with torch.no_grad():
        model.mask_latent.fill_(123.0)
    calls = spy_generation(model, monkeypatch)
    lengths = torch.tensor([9, 4, 1])
    steps = 6
    out = model.generate(lengths, torch.randn(3, 12), time_steps=steps, cfg=1.0,
                         generator=torch.Generator().manual_seed(0))
    assert out.shape == (3, 9, 8)
    valid = lengths_to_mask(lengths, 9)
    assert (out[valid].abs().sum(-1) > 0).all() and (out[~valid] == 0).all()

    # Masked count per step follows round(cos(pi tau / 2) * len).clamp(min=1) and only shrinks inside the
    # previous step's masked set (committed tokens are never re-masked).
    masks = [(x == 123.0).all(-1) for x in calls["x_in"]]
    previous = valid
    for k, tau in enumerate(torch.linspace(0, 1, steps).tolist()):
        expected = num_masked_tokens(lengths, torch.full((3,), math.cos(math.pi * tau / 2)))
        assert masks[k].sum(1).tolist() == expected.tolist()
        assert not (masks[k] & ~previous).any()
        previous = masks[k]
        assert calls["sample"][k] == (expected.sum().item(), False)
    # Tokens committed before the last step enter the final pass with their sampled values.
    final_input = calls["x_in"][-1]
    assert torch.equal(final_input[valid & ~masks[-1]], out[valid & ~masks[-1]])


def test_generation_snaps_and_maps_targets_back(monkeypatch):
    model = randomize(tiny("FSQ-MARDM-SiT-Tiny", ae_dim=8, target_dim=3))
    calls = spy_generation(model, monkeypatch)
    project_out = torch.nn.Linear(3, 8)
    levels = 2.0

    def snap(coords):
        return torch.round(coords.clamp(-1, 1) * levels) / levels

    lengths = torch.tensor([7, 5])
    out = model.generate(lengths, torch.randn(2, 12), time_steps=4, cfg=1.0, snap_fn=snap,
                         latent_fn=lambda c: project_out(c), generator=torch.Generator().manual_seed(0))
    valid = lengths_to_mask(lengths, 7)
    assert out.shape == (2, 7, 3)
    assert torch.equal(out[valid], snap(out[valid]))  # every written value lies on the grid
    committed = valid & ~(calls["x_in"][-1] == model.mask_latent).all(-1)
    with torch.no_grad():
        assert torch.allclose(calls["x_in"][-1][committed], project_out(out[committed]))
    with pytest.raises(ValueError, match="latent_fn"):
        model.generate(lengths, torch.randn(2, 12), time_steps=2)


def test_cfg_paths_and_temperature(monkeypatch):
    model = randomize(tiny())
    calls = spy_generation(model, monkeypatch)
    lengths, text = torch.tensor([6, 3]), torch.randn(2, 12)

    def run(**kw):
        return model.generate(lengths, text, time_steps=3, generator=torch.Generator().manual_seed(5), **kw)

    plain = run(cfg=1.0)
    assert all(x.shape[0] == 2 for x in calls["x_in"]) and not any(u for _, u in calls["sample"])
    calls["x_in"].clear()
    calls["sample"].clear()
    guided = run(cfg=3.0)
    assert all(x.shape[0] == 4 for x in calls["x_in"]) and all(u for _, u in calls["sample"])
    assert not torch.allclose(plain, guided)
    assert torch.equal(run(cfg=3.0), guided)  # reproducible from the generator
    cold = run(cfg=3.0, temperature=0.3)
    assert not torch.allclose(cold, guided)
    assert model.training  # generate restores the mode it found


def test_generation_with_ddpm_and_dopri5_heads():
    for name, kw in (("MARDM-DDPM-Tiny", {}), ("MARDM-SiT-Tiny", {"flow_solver": "dopri5"})):
        model = randomize(tiny(name, **kw), std=0.05)
        out = model.generate(torch.tensor([5, 2]), torch.randn(2, 12), time_steps=3, cfg=2.0,
                             generator=torch.Generator().manual_seed(0))
        assert out.shape == (2, 5, 8) and torch.isfinite(out).all()


def test_bad_inputs_fail_clearly():
    model = tiny()
    with pytest.raises(ValueError, match="text_dim=12"):
        model(torch.randn(2, 5, 8), torch.randn(2, 5, 8), torch.tensor([5, 5]), torch.randn(2, 7))
    with pytest.raises(ValueError, match=r"lengths .* must lie in \[1, 5\]"):
        model(torch.randn(2, 5, 8), torch.randn(2, 5, 8), torch.tensor([6, 5]), torch.randn(2, 12))
    with pytest.raises(ValueError, match="targets must be"):
        model(torch.randn(2, 5, 8), torch.randn(2, 5, 3), torch.tensor([5, 5]), torch.randn(2, 12))
    with pytest.raises(ValueError, match="target_dim .* must equal"):
        MARDM_MODELS["MARDM-SiT-Tiny"](8, 4, 12)
    with pytest.raises(ValueError, match="contradicts"):
        MARDM_MODELS["MARDM-SiT-Tiny"](8, 8, 12, diffusion="ddpm")


# ----- registry -------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(n for n in MARDM_MODELS if n.endswith("Tiny")))
def test_tiny_registry_entries_build_train_and_generate(name):
    target_dim = 8 if name.startswith("MARDM") else 3
    model = tiny(name, target_dim=target_dim)
    loss, _ = model(torch.randn(2, 6, 8), torch.randn(2, 6, target_dim), torch.tensor([6, 4]), torch.randn(2, 12))
    loss.backward()
    latent_fn = None if target_dim == 8 else torch.nn.Linear(target_dim, 8)
    out = model.generate(torch.tensor([6, 4]), torch.randn(2, 12), time_steps=2, cfg=2.0, latent_fn=latent_fn)
    assert out.shape == (2, 6, target_dim)
    # The recorded arguments are plain values and rebuild the same model.
    assert all(isinstance(v, (int, float, str)) for v in model.model_args.values())
    rebuilt = MARDM_MODELS[name](**model.model_args)
    assert {k: v.shape for k, v in rebuilt.state_dict().items()} == {k: v.shape for k, v in model.state_dict().items()}


def expected_xl_parameters(ae_dim: int, target_dim: int, text_dim: int) -> int:
    h, ff, w, depth = 1024, 4096, 1792, 16

    def linear(i, o):
        return i * o + o

    transformer = linear(ae_dim, h) + linear(text_dim, h) + ae_dim \
        + 4 * linear(h, h) + linear(h, ff) + linear(ff, h) + linear(h, 6 * h)
    head = linear(256, w) + linear(w, w) + linear(h, w) + linear(target_dim, w) \
        + depth * (2 * w + 2 * linear(w, w) + linear(w, 3 * w)) + linear(w, target_dim) + linear(w, 2 * w)
    return transformer + head


@pytest.mark.parametrize("name", sorted(n for n in MARDM_MODELS if n.endswith("XL")))
def test_xl_registry_entries_have_the_published_sizes(name):
    target_dim = 512 if name.startswith("MARDM") else 6
    with torch.device("meta"):  # shapes only: no memory, no initialisation cost
        model = MARDM_MODELS[name](512, target_dim, 512)
    args = model.model_args
    assert (args["latent_dim"], args["ff_size"], args["num_layers"], args["num_heads"]) == (1024, 4096, 1, 16)
    assert (args["dropout"], args["cond_drop_prob"], args["diffmlps_batch_mul"]) == (0.2, 0.1, 4)
    assert (args["diffmlps_depth"], args["diffmlps_width"]) == (16, 1792)
    assert args["diffusion"] == ("ddpm" if "DDPM" in name else "sit")
    assert len(model.head.net.res_blocks) == 16 and len(model.blocks) == 1
    assert sum(p.numel() for p in model.parameters()) == expected_xl_parameters(512, target_dim, 512)


def test_lengths_of_the_wrong_type_fail_clearly():
    # Float lengths were used as fractions by the padding mask and the mask counts alike; bool ones read as 0 and 1.
    model = tiny()
    latents, text = torch.randn(2, 5, 8), torch.randn(2, 12)
    for lengths in (torch.tensor([4.5, 3.0]), torch.tensor([True, True])):
        with pytest.raises(TypeError, match=f"MARDM.forward: lengths must be an integer tensor.*{lengths.dtype}"):
            model(latents, latents, lengths, text)
        with pytest.raises(TypeError, match="MARDM.generate: lengths must be an integer tensor"):
            model.generate(lengths, text, time_steps=1)
    with pytest.raises(TypeError, match="lengths must be a \\(B,\\) integer tensor .* got list"):
        model.generate([5, 3], text, time_steps=1)
    with pytest.raises(TypeError, match="latents must be a floating-point tensor, got torch.int64"):
        model(latents.long(), latents, torch.tensor([5, 3]), text)


def test_mismatched_or_empty_batch_fails_clearly():
    model = tiny()
    latents = torch.randn(2, 5, 8)
    with pytest.raises(ValueError, match="latents holds B=2 samples but lengths has 1"):
        model(latents, latents, torch.tensor([5]), torch.randn(1, 12))
    # An empty batch gave a NaN loss.
    with pytest.raises(ValueError, match=r"the batch is empty \(B=0\)"):
        model(latents[:0], latents[:0], torch.zeros(0, dtype=torch.long), torch.randn(0, 12))
    assert model.generate(torch.zeros(0, dtype=torch.long), torch.randn(0, 12), time_steps=1).shape == (0, 0, 8)
