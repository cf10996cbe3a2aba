"""Fixed-step (Euler, Heun) and adaptive (Dormand-Prince 5(4)) ODE solvers for the SiT head's probability flow.

``odeint_fixed`` and ``odeint_dopri5`` integrate dy/dt = f(t, y) from t0 to t1 and return the final state with the
number of f evaluations and steps (``ODEResult``), which the sampler reports.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

import torch


class ODEResult(NamedTuple):
    """Final state of an ODE solve with its cost."""

    y: torch.Tensor
    num_evals: int
    num_steps: int


# Dormand & Prince (1980) RK5(4)7M: nodes, stage matrix, 5th-order weights and the 5th-minus-4th error weights.
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
_DP_B5 = (35 / 384, 0.0, 500 / 1113, 125 / 192, -2187 / 6784, 11 / 84, 0.0)
_DP_B4 = (5179 / 57600, 0.0, 7571 / 16695, 393 / 640, -92097 / 339200, 187 / 2100, 1 / 40)
_DP_E = tuple(b5 - b4 for b5, b4 in zip(_DP_B5, _DP_B4))


def _rms(x: torch.Tensor) -> float:
    return x.pow(2).mean().sqrt().item()


def _state(y0: torch.Tensor) -> torch.Tensor:
    """The state the solvers integrate: float64 stays float64 (tolerances finer than float32 can resolve stay
    reachable), any lower precision is raised to float32."""
    return y0 if y0.dtype == torch.float64 else y0.float()


def odeint_dopri5(f: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], y0: torch.Tensor, t0: float = 0.0,
                  t1: float = 1.0, atol: float = 1e-6, rtol: float = 1e-3, max_steps: int = 10000,
                  safety: float = 0.9, min_factor: float = 0.2, max_factor: float = 10.0) -> ODEResult:
    """Adaptive Dormand-Prince 5(4) integration of dy/dt = f(t, y) from t0 to t1 (t1 > t0).

    Local extrapolation (the 5th-order solution is kept), first-same-as-last reuse of the last stage, the
    Hairer-Norsett-Wanner starting step, and an RMS error norm over the *whole* state scaled by
    atol + rtol * max(|y|, |y_new|). One step size is shared by every element, as when the token batch is
    integrated as one state; the tolerances are those MARDM passes to its solver.

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
        return ODEResult(y0.clone(), 0, 0)
    y = _state(y0)

    def call(t: float, state: torch.Tensor) -> torch.Tensor:
        return f(torch.tensor(t, device=state.device, dtype=state.dtype), state).to(state.dtype)

    k1 = call(t0, y)
    num_evals = 1

    # Starting step: Hairer, Norsett & Wanner, "Solving ODEs I", II.4.
    scale = atol + rtol * y.abs()
    d0, d1 = _rms(y / scale), _rms(k1 / scale)
    h0 = 1e-6 if d0 < 1e-5 or d1 < 1e-5 else 0.01 * d0 / d1
    k_probe = call(t0 + h0, y + h0 * k1)
    num_evals += 1
    d2 = _rms((k_probe - k1) / scale) / h0
    h1 = max(1e-6, h0 * 1e-3) if max(d1, d2) <= 1e-15 else (0.01 / max(d1, d2)) ** (1.0 / 5.0)
    h = min(100 * h0, h1, t1 - t0)

    t = t0
    accepted = 0
    attempts = 0
    while t < t1:
        if attempts >= max_steps:
            raise RuntimeError(f"odeint_dopri5: no convergence within max_steps={max_steps} steps (reached t={t:.6g}"
                               f" of [{t0}, {t1}], step {h:.3g}); loosen atol={atol}/rtol={rtol} or raise max_steps")
        attempts += 1
        h = min(h, t1 - t)
        ks = [k1]
        for i in range(1, 7):
            y_stage = y + h * sum(a * k for a, k in zip(_DP_A[i], ks) if a != 0.0)
            ks.append(call(t + _DP_C[i] * h, y_stage))
        num_evals += 6
        # Row 7 of the stage matrix equals the 5th-order weights, so the 7th stage state is the new solution.
        y_new = y_stage
        error = h * sum(e * k for e, k in zip(_DP_E, ks) if e != 0.0)
        tol = atol + rtol * torch.maximum(y.abs(), y_new.abs())
        ratio = _rms(error / tol)
        if not math.isfinite(ratio):
            h *= min_factor
            continue
        if ratio <= 1.0:
            t = t1 if t + h >= t1 - 1e-12 * max(1.0, abs(t1)) else t + h
            y = y_new
            k1 = ks[6]
            accepted += 1
        # Grow at most max_factor on acceptance, shrink at most min_factor on rejection (never shrink on success).
        lower = 1.0 if ratio <= 1.0 else min_factor
        factor = max_factor if ratio == 0.0 else min(max_factor, max(lower, safety * ratio ** (-1.0 / 5.0)))
        h *= factor
    return ODEResult(y, num_evals, accepted)


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
