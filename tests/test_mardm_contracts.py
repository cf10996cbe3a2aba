"""The MARDM transformer and its per-token diffusion head: behaviour the other tests leave open (the building blocks'
formulas, initialisation, the training step's pairing and masking, the head's samplers and schedules, argument
checks)."""

from __future__ import annotations

import pytest
import torch
from mardm_helpers import randomize, tiny

import models.diffusion as diffusion
import models.mardm as mardm
from models.diffusion import DiffusionHead, FlowMatching, GaussianDiffusion
from models.mardm import MARDM_MODELS, lengths_to_mask


def rng(seed: int = 3) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# ---------------------------------------------------------------------------------------------------------------------
# Building blocks
# ---------------------------------------------------------------------------------------------------------------------

def test_adaln_modulate_is_scale_then_shift():
    """Both modules modulate as x * (1 + scale) + shift (DiT); a released checkpoint depends on the signs."""
    x = torch.tensor([[2.0, -1.0]])
    shift, scale = torch.tensor([[0.5, 0.25]]), torch.tensor([[1.0, -0.5]])
    assert torch.allclose(diffusion.modulate(x, shift, scale), torch.tensor([[4.5, -0.25]]))
    out = mardm.modulate(x[None], shift, scale)  # (B, N, H) with per-sample (B, H)
    assert torch.allclose(out, torch.tensor([[[4.5, -0.25]]]))


def test_odd_timestep_embedding_width_is_padded_with_a_zero_channel():
    emb = diffusion.timestep_embedding(torch.tensor([0.5, 3.0]), 5)
    assert emb.shape == (2, 5)
    assert torch.equal(emb[:, -1], torch.zeros(2))
    assert torch.allclose(emb[:, :4], diffusion.timestep_embedding(torch.tensor([0.5, 3.0]), 4))


def test_attention_refuses_a_width_not_divisible_by_the_heads():
    with pytest.raises(ValueError, match="not divisible by num_heads=3"):
        mardm.Attention(8, 3, 0.0)


# ---------------------------------------------------------------------------------------------------------------------
# Initialisation and construction
# ---------------------------------------------------------------------------------------------------------------------

def test_a_fresh_mardm_starts_from_the_documented_initialisation():
    """adaLN-Zero blocks (zero modulation weight and bias), N(0, 0.02) Linear weights with zero biases, a zero mask
    latent, and the head's time MLP at N(0, 0.02)."""
    model = tiny(latent_dim=64, ff_size=128)
    for block in model.blocks:
        assert torch.count_nonzero(block.adaLN_modulation[-1].weight) == 0
        assert torch.count_nonzero(block.adaLN_modulation[-1].bias) == 0
    assert torch.count_nonzero(model.mask_latent) == 0
    for linear in (model.input_process, model.cond_emb, model.blocks[0].attn.query, model.blocks[0].mlp.fc1):
        assert 0.015 < linear.weight.std().item() < 0.025
        assert torch.count_nonzero(linear.bias) == 0
    for linear in (model.head.net.time_embed.mlp[0], model.head.net.time_embed.mlp[2]):
        assert 0.015 < linear.weight.std().item() < 0.025
    # adaLN-Zero: every block is the identity map at initialisation.
    x, c = torch.randn(2, 5, 64), torch.randn(2, 64)
    valid = torch.ones(2, 5, dtype=torch.bool)
    assert torch.equal(model.blocks[0](x, c, valid), x)


@pytest.mark.parametrize("kw,message", [({"diffmlps_batch_mul": 0}, "diffmlps_batch_mul must be >= 1"),
                                        ({"cond_drop_prob": 1.0}, r"cond_drop_prob must be in \[0, 1\)")])
def test_constructor_refuses_out_of_range_settings(kw, message):
    with pytest.raises(ValueError, match=message):
        tiny(**kw)


def test_every_registry_entry_builds_the_head_and_target_its_name_says():
    small = dict(latent_dim=16, ff_size=16, num_layers=1, num_heads=2, diffmlps_depth=1, diffmlps_width=8)
    for name, build in MARDM_MODELS.items():
        same_dim = name.startswith("MARDM-")
        model = build(16, 16 if same_dim else 3, 12, **small)
        kind = "ddpm" if "-DDPM-" in name else "sit"
        assert model.model_args["diffusion"] == kind and model.head.diffusion == kind, name
        assert isinstance(model.head.process, GaussianDiffusion if kind == "ddpm" else FlowMatching), name
        if same_dim:
            with pytest.raises(ValueError, match="must equal"):
                build(16, 3, 12, **small)


# ---------------------------------------------------------------------------------------------------------------------
# Training step
# ---------------------------------------------------------------------------------------------------------------------

def test_non_finite_latents_at_padded_positions_do_not_reach_the_loss():
    """Padding is zeroed before the transformer: NaN/inf there (e.g. an unfilled buffer) leaves the loss finite and
    equal to the loss with clean padding."""
    model = randomize(tiny(cond_drop_prob=0.0, dropout=0.0))
    latents = torch.randn(2, 7, 8, generator=rng(0))
    lengths, text = torch.tensor([7, 4]), torch.randn(2, 12, generator=rng(1))
    torch.manual_seed(0)
    reference, _ = model(latents, latents.clone(), lengths, text)
    dirty = latents.clone()
    dirty[1, 4:] = float("nan")
    torch.manual_seed(0)
    loss, _ = model(dirty, latents.clone(), lengths, text)
    assert torch.isfinite(loss)
    assert loss.item() == pytest.approx(reference.item(), rel=1e-5)


def test_logged_mask_ratio_is_masked_over_valid_tokens(monkeypatch):
    model = tiny()
    captured = {}
    draw = mardm.sample_training_mask

    def spy(*args, **kw):
        captured["mask"] = draw(*args, **kw)
        return captured["mask"]

    monkeypatch.setattr(mardm, "sample_training_mask", spy)
    lengths = torch.tensor([8, 3])
    latents = torch.randn(2, 8, 8)
    _, logs = model(latents, latents, lengths, torch.randn(2, 12))
    expected = captured["mask"].sum().item() / 11
    assert logs["mask_ratio"].item() == pytest.approx(expected)
    assert not logs["mask_ratio"].requires_grad and not logs["loss"].requires_grad


def test_training_loss_is_conditioned_on_the_text():
    """Without condition dropout the text reaches every training step: another caption gives another loss for the
    same masks and noise."""
    model = randomize(tiny(cond_drop_prob=0.0, dropout=0.0))
    latents = torch.randn(2, 6, 8, generator=rng(0))
    lengths = torch.tensor([6, 5])
    losses = []
    for seed in (1, 2):
        torch.manual_seed(0)
        loss, _ = model(latents, latents, lengths, torch.randn(2, 12, generator=rng(seed)))
        losses.append(loss.item())
    assert abs(losses[0] - losses[1]) > 1e-4


def test_the_loss_pairs_each_condition_with_its_own_token(monkeypatch):
    """Every masked token's transformer output is paired with that token's target, each repeated
    diffmlps_batch_mul times in the same (tiled) order."""
    model = randomize(tiny(diffmlps_batch_mul=2, cond_drop_prob=0.0, dropout=0.0))
    captured = {}
    encode = model.encode

    def spy_encode(*args, **kw):
        captured["z_full"] = encode(*args, **kw)
        return captured["z_full"]

    def spy_head(z, target, mask=None):
        captured["z"], captured["target"] = z, target
        return z.sum() * 0

    draw = mardm.sample_training_mask
    monkeypatch.setattr(mardm, "sample_training_mask", lambda *a, **k: captured.setdefault("mask", draw(*a, **k)))
    monkeypatch.setattr(model, "encode", spy_encode)
    monkeypatch.setattr(model.head, "forward", spy_head)
    latents = torch.randn(2, 6, 8)
    model(latents, latents * 2, torch.tensor([6, 4]), torch.randn(2, 12))
    mask = captured["mask"]
    assert torch.equal(captured["z"], captured["z_full"][mask].repeat(2, 1))
    assert torch.equal(captured["target"], (latents * 2)[mask].repeat(2, 1))


# ---------------------------------------------------------------------------------------------------------------------
# Generation
# ---------------------------------------------------------------------------------------------------------------------

def test_generation_restores_eval_mode():
    model = randomize(tiny())
    model.eval()
    model.generate(torch.tensor([3]), torch.randn(1, 12), time_steps=2, cfg=1.0, generator=rng())
    assert not model.training and not any(m.training for m in model.modules())


def test_generation_refuses_zero_steps():
    with pytest.raises(ValueError, match="time_steps must be >= 1"):
        tiny().generate(torch.tensor([3]), torch.randn(1, 12), time_steps=0)


def test_editing_leaves_padded_positions_zero_whatever_known_holds_there():
    model = randomize(tiny())
    lengths = torch.tensor([6, 4])
    known = torch.randn(2, 6, 8, generator=rng(7))  # non-zero at sample 1's padding too
    edit = torch.zeros(2, 6, dtype=torch.bool)
    edit[:, 1:3] = True
    out = model.generate(lengths, torch.randn(2, 12, generator=rng(2)), time_steps=3, cfg=2.0, generator=rng(),
                         known=known, edit_mask=edit)
    valid = lengths_to_mask(lengths, 6)
    assert (out[~valid] == 0).all()
    assert torch.equal(out[valid & ~edit], known[valid & ~edit])


# ---------------------------------------------------------------------------------------------------------------------
# Diffusion head
# ---------------------------------------------------------------------------------------------------------------------

def test_guidance_refuses_unconditional_vectors_of_another_shape():
    with pytest.raises(ValueError, match=r"uncond has shape \(3, 2\), expected the shape of cond \(4, 2\)"):
        diffusion.guided(lambda x, t, c: x, torch.zeros(4, 2), 2.0, torch.zeros(3, 2))


def test_dopri5_head_integrates_with_the_configured_tolerances(monkeypatch):
    seen = {}
    real = diffusion.odeint_dopri5

    def spy(fn, y0, t0, t1, **kw):
        seen.update(kw, t0=t0, t1=t1)
        return real(fn, y0, t0, t1, **kw)

    monkeypatch.setattr(diffusion, "odeint_dopri5", spy)
    flow = FlowMatching(solver="dopri5", atol=1e-6, rtol=1e-3)
    flow.sample(lambda x, t, c: torch.zeros_like(x), (3, 2), torch.zeros(3, 1), generator=rng())
    assert (seen["atol"], seen["rtol"], seen["t0"], seen["t1"]) == (1e-6, 1e-3, 0.0, 1.0)
    assert flow.last_num_evals > 0


@pytest.mark.parametrize("solver,steps,evals", [("euler", 3, 3), ("heun", 3, 6), ("euler", None, 5)])
def test_fixed_step_head_runs_its_configured_number_of_evaluations(solver, steps, evals):
    head = randomize(DiffusionHead(target_dim=2, cond_dim=3, depth=1, width=8, diffusion="sit", flow_solver=solver,
                                    flow_steps=5))
    calls = []
    forward = head.net.forward
    head.net.forward = lambda x, t, c: calls.append(1) or forward(x, t, c)
    head.sample(torch.randn(4, 3), generator=rng(), steps=steps)
    assert len(calls) == evals
    assert head.process.last_num_evals == evals


def test_a_head_loss_with_no_counted_token_is_zero():
    head = DiffusionHead(target_dim=2, cond_dim=3, depth=1, width=8, diffusion="ddpm")
    loss = head(torch.randn(4, 3), torch.randn(4, 2), torch.zeros(4))
    assert torch.isfinite(loss) and loss.item() == 0.0


@pytest.mark.parametrize("diffusion_kind", ["ddpm", "sit"])
def test_a_head_refuses_zero_sampling_steps(diffusion_kind):
    head = DiffusionHead(target_dim=2, cond_dim=3, depth=1, width=8, diffusion=diffusion_kind, flow_solver="euler")
    with pytest.raises(ValueError, match="sampling steps must be >= 1, got 0"):
        head.check_sampler(0)


@pytest.mark.parametrize("kind,method", [("ddpm", "ancestral"), ("ddpm", "ddim"), ("sit", "euler"), ("sit", "heun"),
                                         ("sit", "dopri5")])
def test_zero_temperature_makes_the_head_deterministic(kind, method):
    """Temperature scales every Gaussian draw of every sampler, so at zero the sample no longer depends on the
    generator."""
    head = randomize(DiffusionHead(target_dim=2, cond_dim=3, depth=1, width=8, diffusion=kind,
                                    diffusion_steps=10, flow_steps=4), std=0.3)
    z = torch.randn(5, 3, generator=rng(0))
    out = [head.sample(z, temperature=0.0, generator=rng(seed), solver=method) for seed in (1, 2)]
    assert torch.equal(out[0], out[1])
    warm = [head.sample(z, temperature=1.0, generator=rng(seed), solver=method) for seed in (1, 2)]
    assert not torch.equal(warm[0], warm[1])


def test_flow_training_draws_times_over_the_whole_unit_interval():
    seen = []

    def net(x, t, c):
        seen.append(t.clone())
        return torch.zeros_like(x)

    torch.manual_seed(0)
    FlowMatching().training_loss(net, torch.zeros(4000, 2), torch.zeros(4000, 3))
    t = seen[-1]
    assert 0.0 <= t.min().item() < 0.01 and 0.99 < t.max().item() < 1.0
    assert t.mean().item() == pytest.approx(0.5, abs=0.02)


@pytest.mark.parametrize("num_steps", [2, 5])
def test_posterior_log_variance_reuses_step_one_at_step_zero(num_steps):
    """ADM's clipped log variance: the t=0 entry repeats t=1's, and every other entry is the posterior variance."""
    g = GaussianDiffusion(num_steps=num_steps)
    betas, acp = g.betas, g.alphas_cumprod
    acp_prev = torch.cat([torch.ones(1, dtype=torch.float64), acp[:-1]])
    posterior = betas * (1 - acp_prev) / (1 - acp)
    expected = torch.cat([posterior[1:2], posterior[1:]]).log()
    assert torch.allclose(g.posterior_log_variance_clipped, expected, rtol=1e-12)


def test_q_sample_mixes_data_and_noise_with_the_cumulative_schedule():
    g = GaussianDiffusion(num_steps=10)
    x, noise = torch.randn(3, 2, generator=rng(0)), torch.randn(3, 2, generator=rng(1))
    t = torch.tensor([0, 4, 9])
    acp = g.alphas_cumprod[t].float()[:, None]
    assert torch.allclose(g.q_sample(x, t, noise), acp.sqrt() * x + (1 - acp).sqrt() * noise, atol=1e-6)


@pytest.mark.parametrize("process", [GaussianDiffusion(num_steps=10), FlowMatching()])
def test_training_loss_is_a_per_token_mean_over_channels(process):
    """With a zero prediction and zero data, each token's loss is the mean of its 4 squared unit-Gaussian draws
    (about 1), not their sum (about 4)."""
    torch.manual_seed(0)
    loss = process.training_loss(lambda x, t, c: torch.zeros_like(x), torch.zeros(5000, 4), torch.zeros(5000, 3))
    assert loss.shape == (5000,)
    assert loss.mean().item() == pytest.approx(1.0, abs=0.05)


def test_inputs_of_the_wrong_batch_or_width_fail_with_a_clear_error():
    model = tiny()
    latents, text = torch.randn(2, 5, 8), torch.randn(2, 12)
    with pytest.raises(ValueError, match=r"expected lengths \(B,\) and text_emb"):
        model(latents, latents, torch.tensor([5, 4]), torch.randn(3, 12))
    with pytest.raises(ValueError, match=r"expected lengths \(B,\) and text_emb"):
        model.generate(torch.tensor([5, 4]), torch.randn(3, 12), time_steps=1)
    with pytest.raises(ValueError, match=r"latents must be \(B, N, 8\)"):
        model(torch.randn(2, 5, 6), latents, torch.tensor([5, 4]), text)
    with pytest.raises(ValueError, match=r"lengths \(in tokens\) must lie in \[1, 5\]"):
        model(latents, latents, torch.tensor([5, 0]), text)
    with pytest.raises(ValueError, match=r"must lie in \[1, 5\]"):
        model.generate(torch.tensor([5, 0]), text, time_steps=1)

