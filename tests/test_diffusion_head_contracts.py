"""The diffusion head's argument checks and schedule tables: what each sampler refuses (with a message naming the
setting and what was expected; a flow process's fixed-step count is checked when it is built, as the DDPM step count
and the solver are), which of the documented sampler settings it accepts at their boundaries, the tolerances and step
counts a head forwards to its process, and the float64 schedule reaching float64 states."""

from __future__ import annotations

import pytest
import torch
from mardm_helpers import randomize
from test_diffusion import ddpm_oracle

from models.diffusion import DiffusionHead, FlowMatching, GaussianDiffusion, guided


def rng(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# ----- guidance -------------------------------------------------------------------------------------------------------
def test_guidance_below_one_also_needs_the_unconditional_vectors():
    # Any scale but 1 mixes in the unconditional branch; 0.5 without it must not fail later inside torch.cat.
    with pytest.raises(ValueError, match=r"cfg_scale=0.5 needs the unconditional vectors"):
        guided(lambda x, t, c: x, torch.zeros(4, 2), cfg_scale=0.5)


def test_guidance_refuses_unconditional_vectors_of_another_width():
    with pytest.raises(ValueError, match=r"uncond has shape \(4, 3\), expected the shape of cond \(4, 2\)"):
        guided(lambda x, t, c: x, torch.zeros(4, 2), 2.0, torch.zeros(4, 3))


# ----- process constructors and samplers ------------------------------------------------------------------------------
def test_a_ddpm_process_needs_at_least_one_step():
    with pytest.raises(ValueError, match="GaussianDiffusion: num_steps must be >= 1, got 0"):
        GaussianDiffusion(num_steps=0)


@pytest.mark.parametrize("steps", [0, -3])
def test_a_flow_process_needs_at_least_one_fixed_step(steps):
    with pytest.raises(ValueError, match=rf"FlowMatching: num_steps must be >= 1, got {steps}"):
        FlowMatching(solver="euler", num_steps=steps)


def test_a_sit_head_refuses_zero_flow_steps_when_built():
    with pytest.raises(ValueError, match="num_steps must be >= 1, got 0"):
        DiffusionHead(target_dim=2, cond_dim=3, depth=1, width=8, diffusion="sit", flow_solver="heun", flow_steps=0)


def test_a_ddpm_process_refuses_a_flow_solver_as_its_method():
    diffusion = GaussianDiffusion(num_steps=5)
    with pytest.raises(ValueError, match=r"method must be one of \('ancestral', 'ddim'\), got 'euler'"):
        diffusion.sample(ddpm_oracle(diffusion), (2, 1), torch.zeros(2, 1), method="euler")


def test_a_flow_process_refuses_an_unknown_solver_when_built():
    with pytest.raises(ValueError, match=r"FlowMatching: solver must be one of \('dopri5', 'euler', 'heun'\), "
                                         r"got 'rk4'"):
        FlowMatching(solver="rk4")


def test_flow_sampling_takes_the_solver_and_steps_given_per_call():
    flow = FlowMatching(solver="dopri5", num_steps=50)
    zero = lambda x, t, c: torch.zeros_like(x)  # noqa: E731
    flow.sample(zero, (3, 2), torch.zeros(3, 1), generator=rng(), solver="heun", num_steps=3)
    assert flow.last_num_evals == 6
    flow.sample(zero, (3, 2), torch.zeros(3, 1), generator=rng(), solver="euler")
    assert flow.last_num_evals == 50


def test_the_full_step_count_of_a_ddpm_schedule_is_the_schedule_itself():
    diffusion = GaussianDiffusion(num_steps=10)
    assert diffusion.respaced(10) is diffusion
    assert diffusion.respaced(4) is diffusion.respaced(4)  # built once


def test_q_sample_of_a_float64_state_uses_the_float64_schedule():
    g = GaussianDiffusion(num_steps=10)
    x, noise = torch.randn(3, 2, dtype=torch.float64), torch.randn(3, 2, dtype=torch.float64)
    t = torch.tensor([0, 4, 9])
    acp = g.alphas_cumprod[t][:, None]
    out = g.q_sample(x, t, noise)
    assert out.dtype == torch.float64
    assert torch.allclose(out, acp.sqrt() * x + (1 - acp).sqrt() * noise, rtol=1e-13, atol=1e-15)


# ----- the head -------------------------------------------------------------------------------------------------------
def test_a_sit_head_forwards_its_dopri5_tolerances():
    head = DiffusionHead(target_dim=2, cond_dim=3, depth=1, width=8, diffusion="sit", atol=1e-4, rtol=1e-2)
    assert (head.process.atol, head.process.rtol) == (1e-4, 1e-2)
    assert head.sampler() == {"diffusion": "sit", "solver": "dopri5", "steps": None, "atol": 1e-4, "rtol": 1e-2}


def test_a_ddpm_head_trains_and_samples_with_its_configured_steps():
    head = DiffusionHead(target_dim=2, cond_dim=3, depth=1, width=8, diffusion="ddpm", diffusion_steps=20)
    assert head.process.num_steps == 20
    assert head.sampler() == {"diffusion": "ddpm", "solver": "ancestral", "steps": 20, "training_steps": 20}


def test_a_ddpm_head_samples_with_up_to_all_its_training_steps():
    head = DiffusionHead(target_dim=2, cond_dim=3, depth=1, width=8, diffusion="ddpm", diffusion_steps=10)
    head.check_sampler(10)
    assert head.sample(torch.zeros(2, 3), steps=10).shape == (2, 2)
    with pytest.raises(ValueError, match="between 1 and the 10 training steps, got 11"):
        head.check_sampler(11)


def test_dopri5_refuses_any_step_count():
    head = DiffusionHead(target_dim=2, cond_dim=3, depth=1, width=8, diffusion="sit")
    with pytest.raises(ValueError, match=r"dopri5 chooses its own steps; sampling steps \(1\)"):
        head.check_sampler(1)


def test_a_ddpm_head_samples_with_ddim_when_asked():
    head = randomize(DiffusionHead(target_dim=2, cond_dim=3, depth=1, width=8, diffusion="ddpm", diffusion_steps=10))
    z = torch.randn(4, 3, generator=rng(1))
    ddim = head.sample(z, generator=rng(2), solver="ddim")
    expected = head.process.sample(head.net, (4, 2), z, generator=rng(2), method="ddim")
    assert torch.equal(ddim, expected)
    assert not torch.equal(ddim, head.sample(z, generator=rng(2)))


def test_the_head_refuses_targets_that_are_not_token_rows():
    # (M, Dt, k) targets would broadcast through the MLP against (M, H) conditions into a silent loss.
    head = DiffusionHead(target_dim=3, cond_dim=5, depth=1, width=16, diffusion="ddpm")
    with pytest.raises(ValueError, match=r"expected z \(M, 5\) and target \(M, 3\), got \(3, 5\) and \(3, 3, 3\)"):
        head(torch.randn(3, 5), torch.randn(3, 3, 3))


def test_the_head_refuses_targets_with_more_channels():
    head = DiffusionHead(target_dim=3, cond_dim=5, depth=1, width=16, diffusion="sit")
    with pytest.raises(ValueError, match="target has 4 channels, expected 3"):
        head(torch.randn(6, 5), torch.randn(6, 4))
    with pytest.raises(ValueError, match="target has 2 channels, expected 3"):
        head(torch.randn(6, 5), torch.randn(6, 2))


def test_the_head_loss_is_float32_for_low_precision_targets():
    head = DiffusionHead(target_dim=3, cond_dim=5, depth=1, width=16, diffusion="ddpm")
    torch.manual_seed(0)
    loss = head(torch.randn(6, 5), torch.randn(6, 3).to(torch.bfloat16))
    assert loss.dtype == torch.float32


def test_the_head_refuses_conditions_and_targets_of_different_token_counts():
    head = DiffusionHead(target_dim=3, cond_dim=5, depth=1, width=16, diffusion="sit")
    with pytest.raises(ValueError, match=r"expected z \(M, 5\) and target \(M, 3\), got \(6, 5\) and \(5, 3\)"):
        head(torch.randn(6, 5), torch.randn(5, 3))


# ----- training targets -----------------------------------------------------------------------------------------------
def test_ddpm_training_noises_the_data_and_regresses_the_noise():
    """A denoiser that recovers the noise exactly from x_t = sqrt(abar) x + sqrt(1 - abar) eps has zero loss."""
    g = GaussianDiffusion(num_steps=10)
    data = torch.full((2000, 3), 2.0)

    def exact(x, t, c):
        acp = g.alphas_cumprod[t].float()[:, None]
        return (x - acp.sqrt() * 2.0) / (1 - acp).sqrt()

    torch.manual_seed(0)
    assert g.training_loss(exact, data, torch.zeros(2000, 1)).max().item() < 1e-8


def test_flow_training_interpolates_from_noise_to_data_and_regresses_the_velocity():
    """On x_t = t x1 + (1 - t) x0 the exact velocity x1 - x0 has zero loss."""
    data = torch.full((2000, 3), 2.0)

    def exact(x, t, c):
        t = t[:, None]
        return 2.0 - (x - t * 2.0) / (1 - t)

    torch.manual_seed(0)
    assert FlowMatching().training_loss(exact, data, torch.zeros(2000, 1)).max().item() < 1e-6
