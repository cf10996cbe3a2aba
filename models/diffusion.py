"""Per-token diffusion heads (MAR's "diffusion loss", MARDM's "DiffMLPs").

The masked transformer emits one condition vector z per token; a small MLP denoiser turns Gaussian noise into the
token's continuous target conditioned on z. Two generative processes share the same MLP:

- ``GaussianDiffusion``: DDPM with the improved-DDPM cosine schedule (Nichol & Dhariwal 2021, eq. 17), epsilon
  prediction, MSE loss, fixed-small posterior variance, ancestral sampling over every training step (MARDM-DDPM), or
  over fewer (respaced as improved DDPM does), or deterministic DDIM.
- ``FlowMatching``: SiT's linear interpolant x_t = t*x1 + (1-t)*x0 with velocity target x1 - x0 (MARDM-SiT),
  integrated from noise (t=0) to data (t=1) with Euler, Heun or an adaptive Dormand-Prince 5(4) solver
  (``models/ode.py``).

Classifier-free guidance follows MARDM: the conditional and unconditional predictions are made in one batch
[cond; uncond] evaluated at the *same* noisy state (shared noise), and out = uncond + cfg * (cond - uncond).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from models.ode import odeint_dopri5, odeint_fixed

logger = logging.getLogger(__name__)

Denoiser = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


# ---------------------------------------------------------------------------------------------------------------------
# MLP denoiser (MAR / MARDM SimpleMLPAdaLN)
# ---------------------------------------------------------------------------------------------------------------------
def modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """adaLN modulation x * (1 + scale) + shift; all (M, H)."""
    return x * (1 + scale) + shift


def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoidal embedding of (possibly fractional) times.

    Args:
        t: (M,) times (DDPM step indices, or flow times in [0, 1] as in SiT).
    Returns:
        (M, dim) as [cos(t * f), sin(t * f)] over geometrically spaced frequencies f in (1/max_period, 1].
    """
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    args = t.float()[:, None] * freqs[None]
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    if dim % 2:
        emb = torch.cat([emb, torch.zeros_like(emb[:, :1])], dim=-1)
    return emb


class TimestepEmbedder(nn.Module):
    """Sinusoidal features -> Linear -> SiLU -> Linear."""

    def __init__(self, hidden_size: int, frequency_embedding_size: int = 256) -> None:
        super().__init__()
        self.frequency_embedding_size = frequency_embedding_size
        self.mlp = nn.Sequential(
            nn.Linear(frequency_embedding_size, hidden_size),
            nn.SiLU(),
            nn.Linear(hidden_size, hidden_size),
        )

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        """(M,) -> (M, H)."""
        freq = timestep_embedding(t, self.frequency_embedding_size)
        return self.mlp(freq.to(self.mlp[0].weight.dtype))


class ResBlock(nn.Module):
    """LN -> adaLN modulate -> Linear -> SiLU -> Linear, added back through an adaLN gate."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.in_ln = nn.LayerNorm(channels, eps=1e-6)
        self.mlp = nn.Sequential(nn.Linear(channels, channels), nn.SiLU(), nn.Linear(channels, channels))
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(channels, 3 * channels))

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """x, y: (M, H) -> (M, H)."""
        shift, scale, gate = self.adaLN_modulation(y).chunk(3, dim=-1)
        h = self.mlp(modulate(self.in_ln(x), shift, scale))
        return x + gate * h


class FinalLayer(nn.Module):
    """LN (no affine) -> adaLN modulate -> Linear to the output channels."""

    def __init__(self, model_channels: int, out_channels: int) -> None:
        super().__init__()
        self.norm_final = nn.LayerNorm(model_channels, elementwise_affine=False, eps=1e-6)
        self.linear = nn.Linear(model_channels, out_channels)
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(model_channels, 2 * model_channels))

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """x, y: (M, H) -> (M, out_channels)."""
        shift, scale = self.adaLN_modulation(y).chunk(2, dim=-1)
        return self.linear(modulate(self.norm_final(x), shift, scale))


class SimpleMLPAdaLN(nn.Module):
    """MLP denoiser conditioned on a time and a per-token condition vector through adaLN.

    Args:
        in_channels: size of the noisy input (the target dim Dt).
        model_channels: width of the residual MLP (XL: 1792).
        out_channels: prediction size (Dt: epsilon or velocity).
        z_channels: size of the condition vector (the transformer width).
        num_res_blocks: depth (XL: 16).
    """

    def __init__(self, in_channels: int, model_channels: int, out_channels: int, z_channels: int,
                 num_res_blocks: int) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.time_embed = TimestepEmbedder(model_channels)
        self.cond_embed = nn.Linear(z_channels, model_channels)
        self.input_proj = nn.Linear(in_channels, model_channels)
        self.res_blocks = nn.ModuleList([ResBlock(model_channels) for _ in range(num_res_blocks)])
        self.final_layer = FinalLayer(model_channels, out_channels)
        self.initialize_weights()

    def initialize_weights(self) -> None:
        """Xavier Linear layers; time MLP N(0, 0.02); adaLN and output zeroed so every block starts as identity."""
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
        nn.init.normal_(self.time_embed.mlp[0].weight, std=0.02)
        nn.init.normal_(self.time_embed.mlp[2].weight, std=0.02)
        for block in self.res_blocks:
            nn.init.zeros_(block.adaLN_modulation[-1].weight)
            nn.init.zeros_(block.adaLN_modulation[-1].bias)
        nn.init.zeros_(self.final_layer.adaLN_modulation[-1].weight)
        nn.init.zeros_(self.final_layer.adaLN_modulation[-1].bias)
        nn.init.zeros_(self.final_layer.linear.weight)
        nn.init.zeros_(self.final_layer.linear.bias)

    def forward(self, x: torch.Tensor, t: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        """x: (M, Dt) noisy input, t: (M,) time, c: (M, Hc) condition -> (M, Dt) prediction."""
        dtype = self.input_proj.weight.dtype
        h = self.input_proj(x.to(dtype))
        y = self.time_embed(t) + self.cond_embed(c.to(dtype))
        for block in self.res_blocks:
            h = block(h, y)
        return self.final_layer(h, y)


# ---------------------------------------------------------------------------------------------------------------------
# Guidance
# ---------------------------------------------------------------------------------------------------------------------
def guided(net: Denoiser, cond: torch.Tensor, cfg_scale: float = 1.0,
           uncond: torch.Tensor | None = None) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """Wrap ``net`` into f(x, t) with classifier-free guidance.

    With cfg_scale == 1 only the conditional branch runs. Otherwise the batch [x; x] is evaluated with conditions
    [cond; uncond], i.e. both branches see the same noisy state (MARDM's shared noise).

    Args:
        cond, uncond: (M, Hc) condition vectors.
    Returns:
        f: x (M, Dt), t (M,) -> (M, Dt) guided prediction in the dtype of x.
    """
    if cfg_scale != 1.0 and uncond is None:
        raise ValueError(f"classifier-free guidance with cfg_scale={cfg_scale} needs the unconditional vectors "
                         "(uncond=None was given)")
    if uncond is not None and uncond.shape != cond.shape:
        raise ValueError(f"uncond has shape {tuple(uncond.shape)}, expected the shape of cond {tuple(cond.shape)}")

    def fn(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        if cfg_scale == 1.0:
            return net(x, t, cond).to(x.dtype)
        out = net(torch.cat([x, x]), torch.cat([t, t]), torch.cat([cond, uncond])).to(x.dtype)
        out_cond, out_uncond = out.chunk(2)
        return out_uncond + cfg_scale * (out_cond - out_uncond)

    return fn


def _randn(shape: tuple[int, ...], like: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    return torch.randn(shape, generator=generator, device=like.device, dtype=torch.float32)


# ---------------------------------------------------------------------------------------------------------------------
# DDPM
# ---------------------------------------------------------------------------------------------------------------------
def cosine_betas(num_steps: int, max_beta: float = 0.999, offset: float = 0.008) -> torch.Tensor:
    """Improved-DDPM cosine schedule: alpha_bar(t) = cos^2((t/T + s)/(1 + s) * pi/2), beta clipped at max_beta.

    Returns:
        (num_steps,) float64 betas.
    """
    def alpha_bar(u: float) -> float:
        return math.cos((u + offset) / (1 + offset) * math.pi / 2) ** 2

    betas = [min(1 - alpha_bar((i + 1) / num_steps) / alpha_bar(i / num_steps), max_beta) for i in range(num_steps)]
    return torch.tensor(betas, dtype=torch.float64, device="cpu")


# How a DDPM head steps back: ancestral sampling (DDPM, MARDM's) or deterministic DDIM (eta = 0).
DDPM_SAMPLERS = ("ancestral", "ddim")


def respaced_timesteps(num_steps: int, count: int) -> list[int]:
    """The ``count`` of ``num_steps`` training steps a respaced sampler visits (improved DDPM's ``space_timesteps``
    with one section): evenly spaced from 0 to num_steps - 1, both included, rounded to the nearest step. One step is
    the last training step, where sampling starts from noise (the one-section rule would visit step 0, which treats
    the noise as almost clean data and returns it unchanged)."""
    if not 1 <= count <= num_steps:
        raise ValueError(f"respaced_timesteps: count must be between 1 and the {num_steps} training steps, got {count}")
    if count == 1:
        return [num_steps - 1]
    stride = (num_steps - 1) / (count - 1)
    # Accumulated as improved DDPM does: a position that lands on a half rounds as its float sum does (50 steps in 25
    # visit step 25, where round(12 * stride) would give 24).
    steps, position = [], 0.0
    for _ in range(count):
        steps.append(round(position))
        position += stride
    return steps


class GaussianDiffusion:
    """DDPM with epsilon prediction, MSE loss and the fixed-small (posterior) variance.

    MARDM trains and samples with 50 steps in total (no respacing), so ``num_steps`` is both. ``sample`` can also
    visit fewer steps (``respaced``). The schedule is a derived float64 table kept on the CPU (never saved); values
    are gathered per step and cast to the state's dtype.

    Args:
        num_steps: steps of the cosine schedule.
        betas, timesteps: a respaced schedule instead (``respaced`` builds them): its betas, and the training step
            the denoiser is told at each of its steps.
    """

    def __init__(self, num_steps: int = 50, betas: torch.Tensor | None = None,
                 timesteps: torch.Tensor | None = None) -> None:
        if num_steps < 1:
            raise ValueError(f"GaussianDiffusion: num_steps must be >= 1, got {num_steps}")
        self.num_steps = num_steps
        betas = cosine_betas(num_steps) if betas is None else betas
        self.timesteps = torch.arange(num_steps) if timesteps is None else timesteps
        self._respaced: dict[int, GaussianDiffusion] = {}
        alphas = 1.0 - betas
        acp = torch.cumprod(alphas, dim=0)
        acp_prev = torch.cat([torch.ones(1, dtype=torch.float64, device="cpu"), acp[:-1]])
        self.betas = betas
        self.alphas_cumprod = acp
        self.alphas_cumprod_prev = acp_prev
        self.sqrt_alphas_cumprod = acp.sqrt()
        self.sqrt_one_minus_alphas_cumprod = (1.0 - acp).sqrt()
        self.sqrt_recip_alphas_cumprod = (1.0 / acp).sqrt()
        self.sqrt_recipm1_alphas_cumprod = (1.0 / acp - 1.0).sqrt()
        posterior_variance = betas * (1.0 - acp_prev) / (1.0 - acp)
        # The variance at t=0 is 0; like ADM, its log uses the t=1 value (the t=0 step adds no noise anyway).
        clipped = torch.cat([posterior_variance[1:2], posterior_variance[1:]]) if num_steps > 1 else betas
        self.posterior_log_variance_clipped = clipped.log()
        self.posterior_mean_coef1 = betas * acp_prev.sqrt() / (1.0 - acp)
        self.posterior_mean_coef2 = (1.0 - acp_prev) * alphas.sqrt() / (1.0 - acp)

    def respaced(self, num_steps: int) -> GaussianDiffusion:
        """The sampler that visits ``num_steps`` of the training steps (``respaced_timesteps``), as improved DDPM
        respaces one: the betas between consecutive visited steps, 1 - alpha_bar(t_i) / alpha_bar(t_{i-1}), keep each
        visited step's alpha_bar, and the denoiser is told the training step. ``num_steps`` equal to this schedule's
        own is this schedule."""
        if num_steps == self.num_steps:
            return self
        if num_steps not in self._respaced:
            try:
                kept = respaced_timesteps(self.num_steps, num_steps)
            except ValueError as e:
                raise ValueError(f"DDPM sampling steps must be between 1 and the {self.num_steps} training steps, got "
                                 f"{num_steps}") from e
            acp = self.alphas_cumprod[kept]
            previous = torch.cat([torch.ones(1, dtype=acp.dtype), acp[:-1]])
            self._respaced[num_steps] = GaussianDiffusion(num_steps, betas=1.0 - acp / previous,
                                                          timesteps=self.timesteps[kept])
        return self._respaced[num_steps]

    @staticmethod
    def _gather(table: torch.Tensor, t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """table (T,), t (M,) long -> (M, 1) in x's dtype and device."""
        return table.to(t.device)[t].to(x.dtype)[:, None]

    def q_sample(self, x_start: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """Diffuse clean (M, D) data to step t (M,)."""
        return (self._gather(self.sqrt_alphas_cumprod, t, x_start) * x_start
                + self._gather(self.sqrt_one_minus_alphas_cumprod, t, x_start) * noise)

    def training_loss(self, net: Denoiser, x_start: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """Epsilon-prediction MSE at a uniformly drawn step.

        Args:
            x_start: (M, D) clean targets; cond: (M, Hc).
        Returns:
            (M,) per-sample loss (mean over D).
        """
        t = torch.randint(0, self.num_steps, (x_start.shape[0],), device=x_start.device)
        noise = torch.randn_like(x_start)
        x_t = self.q_sample(x_start, t, noise)
        eps = net(x_t, t, cond).to(x_start.dtype)
        return F.mse_loss(eps, noise, reduction="none").mean(dim=-1)

    @torch.no_grad()
    def sample(self, net: Denoiser, shape: tuple[int, int], cond: torch.Tensor, cfg_scale: float = 1.0,
               temperature: float = 1.0, generator: torch.Generator | None = None,
               uncond: torch.Tensor | None = None, num_steps: int | None = None,
               method: str = "ancestral") -> torch.Tensor:
        """Sample over all ``num_steps`` steps, or over the respaced schedule of ``num_steps`` of them
        (``respaced``), with clip_denoised=False.

        ``method`` "ancestral" (DDPM's): each step draws from the posterior with the fixed-small variance, and
        ``temperature`` scales every Gaussian draw (the initial state and the per-step noise). "ddim" (Song et al.
        2021 with eta = 0): each step moves deterministically to the predicted clean sample re-noised with the
        predicted noise, x_prev = sqrt(abar_prev) x0 + sqrt(1 - abar_prev) eps, so ``temperature`` scales the initial
        state, the only draw.

        Args:
            shape: (M, D); cond, uncond: (M, Hc).
        Returns:
            (M, D) float32 samples.
        """
        if method not in DDPM_SAMPLERS:
            raise ValueError(f"GaussianDiffusion.sample: method must be one of {DDPM_SAMPLERS}, got {method!r}")
        process = self if num_steps is None else self.respaced(int(num_steps))
        fn = guided(net, cond, cfg_scale, uncond)
        x = _randn(shape, cond, generator) * temperature
        for i in reversed(range(process.num_steps)):
            t = torch.full((shape[0],), i, device=x.device, dtype=torch.long)
            eps = fn(x, process.timesteps[i].to(x.device).expand(shape[0]))
            x_start = process._gather(process.sqrt_recip_alphas_cumprod, t, x) * x \
                - process._gather(process.sqrt_recipm1_alphas_cumprod, t, x) * eps
            if method == "ddim":
                previous = process.alphas_cumprod_prev[i].item()
                x = math.sqrt(previous) * x_start + math.sqrt(1.0 - previous) * eps
                continue
            mean = process._gather(process.posterior_mean_coef1, t, x) * x_start \
                + process._gather(process.posterior_mean_coef2, t, x) * x
            if i > 0:
                std = (0.5 * process._gather(process.posterior_log_variance_clipped, t, x)).exp()
                x = mean + std * _randn(shape, x, generator) * temperature
            else:
                x = mean
        return x


# ---------------------------------------------------------------------------------------------------------------------
# Flow matching (SiT); its ODE solvers are in models/ode.py
# ---------------------------------------------------------------------------------------------------------------------
FLOW_SOLVERS = ("dopri5", "euler", "heun")


class FlowMatching:
    """SiT linear-path flow matching: x_t = t*x1 + (1-t)*x0, x0 ~ N(0, I), velocity target x1 - x0, t ~ U(0, 1).

    Args:
        solver: "dopri5" (adaptive, stepping as torchdiffeq's; MARDM's choice), "euler" or "heun" (fixed ``num_steps``).
        num_steps: steps of the fixed-step solvers (dopri5 chooses its own).
        atol, rtol: dopri5 tolerances (MARDM: 1e-6, 1e-3).
        max_steps: dopri5 guard against a step size that collapses.
    """

    def __init__(self, solver: str = "dopri5", num_steps: int = 50, atol: float = 1e-6, rtol: float = 1e-3,
                 max_steps: int = 10000) -> None:
        if solver not in FLOW_SOLVERS:
            raise ValueError(f"FlowMatching: solver must be one of {FLOW_SOLVERS}, got {solver!r}")
        if num_steps < 1:
            raise ValueError(f"FlowMatching: num_steps must be >= 1, got {num_steps}")
        self.solver = solver
        self.num_steps = num_steps
        self.atol = atol
        self.rtol = rtol
        self.max_steps = max_steps
        self.last_num_evals = 0

    def training_loss(self, net: Denoiser, x_start: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """Velocity MSE. x_start: (M, D) data (x1); cond: (M, Hc). Returns (M,) loss (mean over D)."""
        x0 = torch.randn_like(x_start)
        t = torch.rand(x_start.shape[0], device=x_start.device, dtype=x_start.dtype)
        x_t = t[:, None] * x_start + (1 - t[:, None]) * x0
        v = net(x_t, t, cond).to(x_start.dtype)
        return F.mse_loss(v, x_start - x0, reduction="none").mean(dim=-1)

    @torch.no_grad()
    def sample(self, net: Denoiser, shape: tuple[int, int], cond: torch.Tensor, cfg_scale: float = 1.0,
               temperature: float = 1.0, generator: torch.Generator | None = None,
               uncond: torch.Tensor | None = None, solver: str | None = None,
               num_steps: int | None = None) -> torch.Tensor:
        """Integrate the guided velocity field from noise at t=0 to data at t=1.

        ``temperature`` scales the initial noise x0, the only random draw of the ODE sampler.

        Args:
            shape: (M, D); cond, uncond: (M, Hc); solver / num_steps override the constructor's choice.
        Returns:
            (M, D) float32 samples.
        """
        solver = solver or self.solver
        if solver not in FLOW_SOLVERS:
            raise ValueError(f"FlowMatching.sample: solver must be one of {FLOW_SOLVERS}, got {solver!r}")
        fn = guided(net, cond, cfg_scale, uncond)

        def velocity(t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
            return fn(x, t.expand(x.shape[0]))

        x0 = _randn(shape, cond, generator) * temperature
        if solver == "dopri5":
            result = odeint_dopri5(velocity, x0, 0.0, 1.0, atol=self.atol, rtol=self.rtol, max_steps=self.max_steps)
        else:
            result = odeint_fixed(velocity, x0, num_steps or self.num_steps, method=solver)
        self.last_num_evals = result.num_evals
        return result.y


# ---------------------------------------------------------------------------------------------------------------------
# The head used by MARDM
# ---------------------------------------------------------------------------------------------------------------------
DIFFUSION_KINDS = ("ddpm", "sit")


class DiffusionHead(nn.Module):
    """MARDM's DiffMLPs: a SimpleMLPAdaLN denoiser plus its generative process.

    Args:
        target_dim: Dt, the size of what is generated per token (AE latent, or FSQ grid coordinates).
        cond_dim: Hc, the size of the transformer output z.
        depth, width: MLP residual blocks and width (XL: 16, 1792).
        diffusion: "ddpm" (GaussianDiffusion) or "sit" (FlowMatching).
        diffusion_steps: DDPM train/sample steps (MARDM: 50).
        flow_solver, flow_steps: SiT sampler and the fixed-step count for euler/heun.
        atol, rtol: dopri5 tolerances.
    """

    def __init__(self, target_dim: int, cond_dim: int, depth: int = 16, width: int = 1792, diffusion: str = "sit",
                 diffusion_steps: int = 50, flow_solver: str = "dopri5", flow_steps: int = 50, atol: float = 1e-6,
                 rtol: float = 1e-3) -> None:
        super().__init__()
        if diffusion not in DIFFUSION_KINDS:
            raise ValueError(f"DiffusionHead: diffusion must be one of {DIFFUSION_KINDS}, got {diffusion!r}")
        self.target_dim = target_dim
        self.cond_dim = cond_dim
        self.diffusion = diffusion
        self.net = SimpleMLPAdaLN(in_channels=target_dim, model_channels=width, out_channels=target_dim,
                                  z_channels=cond_dim, num_res_blocks=depth)
        if diffusion == "ddpm":
            self.process: GaussianDiffusion | FlowMatching = GaussianDiffusion(num_steps=diffusion_steps)
        else:
            self.process = FlowMatching(solver=flow_solver, num_steps=flow_steps, atol=atol, rtol=rtol)

    def forward(self, z: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Diffusion loss.

        Args:
            z: (M, Hc) conditions; target: (M, Dt) clean targets; mask: optional (M,) weights (1 = counted).
        Returns:
            scalar loss: mean over tokens (weighted mean when ``mask`` is given).
        """
        if z.ndim != 2 or target.ndim != 2 or z.shape[0] != target.shape[0] or z.shape[1] != self.cond_dim:
            raise ValueError(f"DiffusionHead.forward: expected z (M, {self.cond_dim}) and target (M, "
                             f"{self.target_dim}), got {tuple(z.shape)} and {tuple(target.shape)}")
        if target.shape[1] != self.target_dim:
            raise ValueError(f"DiffusionHead.forward: target has {target.shape[1]} channels, "
                             f"expected {self.target_dim}")
        if mask is not None and tuple(mask.shape) != (z.shape[0],):
            # A (M, 1) mask would broadcast against the (M,) per-token loss to an (M, M) product.
            raise ValueError(f"DiffusionHead.forward: expected mask of shape (M,) = ({z.shape[0]},), "
                             f"got {tuple(mask.shape)}")
        loss = self.process.training_loss(self.net, target.float(), z)
        if mask is None:
            return loss.mean()
        mask = mask.to(loss.dtype)
        return (loss * mask).sum() / mask.sum().clamp(min=1.0)

    def check_sampler(self, steps: int | None = None, solver: str | None = None) -> None:
        """ValueError for sampler settings this head cannot take: a DDPM head's sampler other than ``DDPM_SAMPLERS``
        or steps outside 1 to its training steps; a SiT head's solver other than ``FLOW_SOLVERS``, or steps for
        dopri5 (which chooses its own)."""
        if steps is not None and steps < 1:
            raise ValueError(f"head sampling steps must be >= 1, got {steps}")
        if self.diffusion == "ddpm":
            if solver is not None and solver not in DDPM_SAMPLERS:
                raise ValueError(f"a DDPM head samples with {DDPM_SAMPLERS}, got {solver!r}; solvers {FLOW_SOLVERS} "
                                 f"are for SiT heads")
            if steps is not None and steps > self.process.num_steps:
                raise ValueError(f"DDPM sampling steps must be between 1 and the {self.process.num_steps} training "
                                 f"steps, got {steps}")
            return
        solver = solver or self.process.solver
        if solver not in FLOW_SOLVERS:
            raise ValueError(f"a SiT head integrates with {FLOW_SOLVERS}, got {solver!r}; {DDPM_SAMPLERS} are for "
                             f"DDPM heads")
        if steps is not None and solver == "dopri5":
            raise ValueError(f"dopri5 chooses its own steps; sampling steps ({steps}) are for the fixed-step solvers "
                             f"euler and heun")

    def sampler(self, steps: int | None = None, solver: str | None = None) -> dict[str, Any]:
        """The sampler ``sample(steps=, solver=)`` runs, with the head's own choices filled in, for reports:
        ``{"diffusion", "solver", "steps"}`` (steps None for dopri5, which chooses its own, with its tolerances)."""
        self.check_sampler(steps, solver)
        if self.diffusion == "ddpm":
            return {"diffusion": "ddpm", "solver": solver or "ancestral", "steps": steps or self.process.num_steps,
                    "training_steps": self.process.num_steps}
        solver = solver or self.process.solver
        if solver == "dopri5":
            return {"diffusion": "sit", "solver": solver, "steps": None, "atol": self.process.atol,
                    "rtol": self.process.rtol}
        return {"diffusion": "sit", "solver": solver, "steps": steps or self.process.num_steps}

    @torch.no_grad()
    def sample(self, z: torch.Tensor, cfg_scale: float = 1.0, temperature: float = 1.0,
               z_uncond: torch.Tensor | None = None, generator: torch.Generator | None = None,
               steps: int | None = None, solver: str | None = None) -> torch.Tensor:
        """Sample one target per condition vector.

        Args:
            z: (M, Hc) conditional transformer outputs.
            cfg_scale: guidance scale; != 1 requires ``z_uncond``.
            temperature: scales the sampler's Gaussian draws (1 = the trained distribution).
            z_uncond: (M, Hc) outputs of the same tokens with the condition dropped.
            steps, solver: another sampler than the head's own (``check_sampler``): DDPM steps back with ``solver``
                ("ancestral" or "ddim") through ``steps`` of its training steps (respaced); SiT integrates with
                ``solver``, in ``steps`` steps for euler / heun.
        Returns:
            (M, Dt) float32.
        """
        self.check_sampler(steps, solver)
        if z.ndim != 2 or z.shape[1] != self.cond_dim:
            raise ValueError(f"DiffusionHead.sample: expected z of shape (M, {self.cond_dim}), got {tuple(z.shape)}")
        shape = (z.shape[0], self.target_dim)
        if z.shape[0] == 0:
            return torch.zeros(shape, device=z.device)
        extra: dict[str, Any] = {"num_steps": steps}
        if self.diffusion == "sit":
            extra["solver"] = solver
        else:
            extra["method"] = solver or "ancestral"
        return self.process.sample(self.net, shape, z, cfg_scale=cfg_scale, temperature=temperature,
                                   generator=generator, uncond=z_uncond, **extra)
