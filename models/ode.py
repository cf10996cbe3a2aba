"""Fixed-step (Euler, Heun) and adaptive (Dormand-Prince 5(4)) ODE solvers for the SiT head's probability flow.

``odeint_fixed`` and ``odeint_dopri5`` integrate dy/dt = f(t, y) from t0 to t1 and return the final state with the
number of f evaluations and steps (``ODEResult``), which the sampler reports.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import torch


class ODEResult(NamedTuple):
    """Final state of an ODE solve with its cost."""

    y: torch.Tensor
    num_evals: int
    num_steps: int


# Dormand & Prince (1980) RK5(4)7M as torchdiffeq's dopri5 (MARDM's SiT sampler) takes it: nodes, stage matrix (its
# last row is the 5th-order solution), Shampine's error weights (5th order minus his 4th-order solution) and the
# weights of the state at the middle of the step, which with both ends fixes the quartic dense output.
_DP_C = (0.0, 1 / 5, 3 / 10, 4 / 5, 8 / 9, 1.0, 1.0)
_DP_A = (
    (),
    (1 / 5,),
    (3 / 40, 9 / 40),
    (44 / 45, -56 / 15, 32 / 9),
    (19372 / 6561, -25360 / 2187, 64448 / 6561, -212 / 729),
    (9017 / 3168, -355 / 33, 46732 / 5247, 49 / 176, -5103 / 18656),
    (35 / 384, 0.0, 500 / 1113, 125 / 192, -2187 / 6784, 11 / 84),
)
_DP_E = (35 / 384 - 1951 / 21600, 0.0, 500 / 1113 - 22642 / 50085, 125 / 192 - 451 / 720,
         -2187 / 6784 + 12231 / 42400, 11 / 84 - 649 / 6300, -1 / 60)
_DP_MID = (6025192743 / 30085553152 / 2, 0.0, 51252292925 / 65400821598 / 2, -2691868925 / 45128329728 / 2,
           187940372067 / 1594534317056 / 2, -1776094331 / 19743644256 / 2, 11237099 / 235043384 / 2)


def _state(y0: torch.Tensor) -> torch.Tensor:
    """The state the solvers integrate: float64 stays float64 (tolerances finer than float32 can resolve stay
    reachable), any lower precision is raised to float32."""
    return y0 if y0.dtype == torch.float64 else y0.float()


def _quartic_at(y0: torch.Tensor, y1: torch.Tensor, y_mid: torch.Tensor, f0: torch.Tensor, f1: torch.Tensor,
                h: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """The quartic through y0 (x = 0), y_mid (x = 1/2) and y1 (x = 1) with slopes f0 and f1 (times the step h) at
    the ends, at x, summed in powers of x from the constant up."""
    a = 2 * h * (f1 - f0) - 8 * (y1 + y0) + 16 * y_mid
    b = h * (5 * f0 - 3 * f1) + 18 * y0 + 14 * y1 - 32 * y_mid
    c = h * (f1 - 4 * f0) - 11 * y0 - 5 * y1 + 16 * y_mid
    total, power = y0 + x * (h * f0), x
    for coefficient in (c, b, a):
        power = power * x
        total = total + power * coefficient
    return total


def odeint_dopri5(f: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], y0: torch.Tensor, t0: float = 0.0,
                  t1: float = 1.0, atol: float = 1e-6, rtol: float = 1e-3, max_steps: int = 10000,
                  safety: float = 0.9, min_factor: float = 0.2, max_factor: float = 10.0) -> ODEResult:
    """Adaptive Dormand-Prince 5(4) integration of dy/dt = f(t, y) from t0 to t1 (t1 > t0), stepping as torchdiffeq
    0.2's ``odeint(method="dopri5")`` does, the solver of MARDM's SiT sampler: the same steps and evaluations, and
    the same arithmetic in the same precisions.

    Local extrapolation (the 5th-order solution is kept) with Shampine's error estimate, first-same-as-last reuse of
    the last stage, the Hairer-Norsett-Wanner starting step, and an RMS error norm over the *whole* state scaled by
    atol + rtol * max(|y|, |y_new|). Steps are not cut at t1: the state at t1 is read off the quartic dense output
    of the step that reaches or passes it. Step sizes and times are float64; ``f`` gets its time in the state's
    precision, and the stages at the end of a step the float just below it. One step size is shared by every
    element, as when the token batch is integrated as one state. A step whose error is not finite is retried at
    ``min_factor`` times the size (torchdiffeq stops there).

    Args:
        f: (t scalar tensor, y (...)) -> dy/dt (...).
        y0: initial state (...), any shape; integrated in float64 if it is float64, else in float32.
        max_steps: attempted steps (accepted + rejected) before giving up.
    Returns:
        ODEResult(y at t1, number of f evaluations, number of accepted steps).
    """
    if not t1 > t0:
        raise ValueError(f"odeint_dopri5 integrates forward only: need t1 > t0, got t0={t0}, t1={t1}")
    if y0.numel() == 0:
        return ODEResult(_state(y0).clone(), 0, 0)
    y = _state(y0)
    dtype, device = y.dtype, y.device
    wide = torch.promote_types(dtype, torch.float64)
    atol_t, rtol_t = torch.tensor(atol, dtype=wide, device=device), torch.tensor(rtol, dtype=wide, device=device)

    def table(values: tuple[float, ...]) -> torch.Tensor:
        return torch.tensor(values, dtype=torch.float64, device=device).to(dtype)

    nodes, errors, middle = table(_DP_C), table(_DP_E), table(_DP_MID)
    rows = [table(row) for row in _DP_A]

    def call(t: torch.Tensor, state: torch.Tensor, just_before: bool = False) -> torch.Tensor:
        t = t.to(dtype)
        return f(torch.nextafter(t, t - 1) if just_before else t, state).to(dtype)

    def rms(x: torch.Tensor) -> torch.Tensor:
        return x.abs().pow(2).mean().sqrt()

    t = torch.tensor(t0, dtype=torch.float64, device=device)
    k1 = call(t, y)
    num_evals = 1
    # A non-finite start is never fixed by a smaller step: it would be retried until max_steps ran out.
    for name, value in (("initial state y0", y), ("velocity f(t0, y0)", k1)):
        if not torch.isfinite(value).all():
            raise ValueError(f"odeint_dopri5: non-finite values in the {name}; expected finite values")

    # Starting step: Hairer, Norsett & Wanner, "Solving ODEs I", II.4, in the state's precision.
    scale = atol_t + torch.abs(y) * rtol_t
    d0, d1 = rms(y / scale).abs(), rms(k1 / scale).abs()
    h0 = torch.tensor(1e-6, dtype=dtype, device=device) if d0 < 1e-5 or d1 < 1e-5 else (0.01 * d0 / d1).abs()
    k_probe = call(t + h0, y + h0 * k1)
    num_evals += 1
    d2 = torch.abs(rms((k_probe - k1) / scale) / h0)
    if d1 <= 1e-15 and d2 <= 1e-15:
        h1 = torch.max(torch.tensor(1e-6, dtype=dtype, device=device), h0 * 1e-3)
    else:
        h1 = (0.01 / max(d1, d2)) ** (1.0 / 5.0)
    h = torch.min(100 * h0, h1.abs()).to(torch.float64)

    end = torch.tensor(t1, dtype=torch.float64, device=device)
    accepted = 0
    for _ in range(max_steps):
        t_next = t + h
        t_s, h_s, t_next_s = t.to(dtype), h.to(dtype), t_next.to(dtype)
        k = torch.empty(*y.shape, 7, dtype=dtype, device=device)
        k[..., 0] = k1
        for i in range(1, 7):
            y_stage = y + torch.sum(k[..., :i] * (rows[i] * h_s), dim=-1)
            k[..., i] = call(t_next_s, y_stage, just_before=True) if _DP_C[i] == 1.0 else \
                call(t_s + nodes[i] * h_s, y_stage)
        num_evals += 6
        y_new = y_stage  # row 7 of the stage matrix equals the 5th-order weights
        error = torch.sum(k * (h_s * errors), dim=-1)
        ratio = rms(error / (atol_t + rtol_t * torch.max(y.abs(), y_new.abs()))).abs()
        if not torch.isfinite(ratio):
            h = h * min_factor
            continue
        if ratio <= 1:
            accepted += 1
            if t_next >= end:
                y_mid = y + torch.sum(k * (h_s * middle), dim=-1)
                x = ((end - t) / (t_next - t)).to(dtype)
                return ODEResult(_quartic_at(y, y_new, y_mid, k1, k[..., 6], h_s, x), num_evals, accepted)
            t, y, k1 = t_next, y_new, k[..., 6]
        # Grow at most max_factor; shrink at most min_factor, and only after an error ratio of 1 or more.
        if ratio == 0:
            h = h * max_factor
        else:
            lower = 1.0 if ratio < 1 else min_factor
            h = h * min(max_factor, max(safety / ratio.to(torch.float64).item() ** (1.0 / 5.0), lower))
    raise RuntimeError(f"odeint_dopri5: no convergence within max_steps={max_steps} steps (reached t={t.item():.6g} "
                       f"of [{t0}, {t1}], step {h.item():.3g}); loosen atol={atol}/rtol={rtol} or raise max_steps")


def odeint_fixed(f: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], y0: torch.Tensor, num_steps: int,
                 method: str = "euler", t0: float = 0.0, t1: float = 1.0) -> ODEResult:
    """Fixed-step Euler or Heun (explicit trapezoid) integration of dy/dt = f(t, y) over [t0, t1], in float64 for a
    float64 ``y0``, else in float32.

    Returns:
        ODEResult(y at t1, number of f evaluations, num_steps).
    """
    if method not in ("euler", "heun"):
        raise ValueError(f"odeint_fixed: method must be 'euler' or 'heun', got {method!r}")
    if num_steps < 1:
        raise ValueError(f"odeint_fixed: num_steps must be >= 1, got {num_steps}")
    y = _state(y0)
    grid = torch.linspace(t0, t1, num_steps + 1, dtype=torch.float64).tolist()
    num_evals = 0
    for t_a, t_b in zip(grid[:-1], grid[1:]):
        h = t_b - t_a
        ta = torch.tensor(t_a, device=y.device, dtype=y.dtype)
        v = f(ta, y).to(y.dtype)
        num_evals += 1
        if method == "euler":
            y = y + h * v
        else:
            y_pred = y + h * v
            v_end = f(torch.tensor(t_b, device=y.device, dtype=y.dtype), y_pred).to(y.dtype)
            num_evals += 1
            y = y + 0.5 * h * (v + v_end)
    return ODEResult(y, num_evals, num_steps)
