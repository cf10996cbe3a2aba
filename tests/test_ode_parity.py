"""The SiT head's dopri5 against torchdiffeq 0.2.5's, the solver of MARDM's sampler: the same number of velocity
evaluations and the same final state on four problems (linear decay, a forced problem on [0.5, 2], a stiff one that
rejects steps, and a small tanh network of (t, y) as a stand-in for the velocity MLP), all in float64 so that the
comparison does not rest on float32 rounding, which differs between CPUs.

``fixtures/torchdiffeq_dopri5/io.npz`` holds each problem's initial state, its network weights and what
``torchdiffeq.odeint(f, y0, torch.linspace(t0, t1, 50), method="dopri5", atol, rtol)[-1]`` returned, with the
number of calls of ``f``; it was written by ``python tests/test_ode_parity.py --write`` with torchdiffeq 0.2.5
installed (the tests themselves need no torchdiffeq).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from models.ode import odeint_dopri5

GOLDEN = Path(__file__).resolve().parent / "fixtures" / "torchdiffeq_dopri5" / "io.npz"
# name: (t0, t1, atol, rtol); MARDM samples with atol 1e-6 and rtol 1e-3.
PROBLEMS = {"decay": (0.0, 1.0, 1e-6, 1e-3), "forced": (0.5, 2.0, 1e-9, 1e-7), "stiff": (0.0, 1.0, 1e-6, 1e-3),
            "network": (0.0, 1.0, 1e-6, 1e-3)}


def _field(name: str, arrays: dict[str, np.ndarray]):
    """dy/dt of problem ``name`` (float64), with the network weights from ``arrays``."""
    if name == "decay":
        return lambda t, y: -y
    if name == "forced":
        return lambda t, y: torch.cos(t) * torch.ones_like(y) - 0.3 * y
    if name == "stiff":
        return lambda t, y: -50 * (y - torch.cos(20 * t))
    w1, w2, target = (torch.from_numpy(arrays[f"network_{key}"]) for key in ("w1", "w2", "target"))

    def network(t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        time = t.to(y.dtype).expand(y.shape[0], 1)
        return torch.tanh(torch.cat([y, time], 1) @ w1) @ w2 + (target - y) * time
    return network


def _counting(f):
    calls = []

    def counted(t, y):
        calls.append(float(t))
        return f(t, y)
    return counted, calls


def _write() -> None:
    import torchdiffeq

    gen = torch.Generator().manual_seed(7)
    arrays = {"decay_y0": torch.randn(5, generator=gen, dtype=torch.float64),
              "forced_y0": torch.randn(3, generator=gen, dtype=torch.float64),
              "stiff_y0": torch.ones(4, dtype=torch.float64),
              "network_y0": torch.randn(16, 6, generator=gen, dtype=torch.float64),
              "network_w1": 0.8 * torch.randn(7, 32, generator=gen, dtype=torch.float64),
              "network_w2": 0.8 * torch.randn(32, 6, generator=gen, dtype=torch.float64),
              "network_target": torch.randn(16, 6, generator=gen, dtype=torch.float64)}
    arrays = {key: value.numpy() for key, value in arrays.items()}
    for name, (t0, t1, atol, rtol) in PROBLEMS.items():
        f, calls = _counting(_field(name, arrays))
        grid = torch.linspace(t0, t1, 50, dtype=torch.float64)
        y = torchdiffeq.odeint(f, torch.from_numpy(arrays[f"{name}_y0"]), grid, method="dopri5", atol=atol, rtol=rtol)
        arrays[f"{name}_y1"], arrays[f"{name}_evals"] = y[-1].numpy(), np.array(len(calls))
    GOLDEN.parent.mkdir(parents=True, exist_ok=True)
    np.savez(GOLDEN, torchdiffeq_version=np.array(torchdiffeq.__version__), **arrays)


@pytest.mark.parametrize("name", sorted(PROBLEMS))
def test_dopri5_steps_as_torchdiffeq(name):
    golden = dict(np.load(GOLDEN))
    assert str(golden["torchdiffeq_version"]) == "0.2.5"
    t0, t1, atol, rtol = PROBLEMS[name]
    f, calls = _counting(_field(name, golden))
    result = odeint_dopri5(f, torch.from_numpy(golden[f"{name}_y0"]), t0, t1, atol=atol, rtol=rtol)
    assert result.num_evals == len(calls) == int(golden[f"{name}_evals"])
    np.testing.assert_allclose(result.y.numpy(), golden[f"{name}_y1"], rtol=1e-10, atol=1e-12)


def test_dopri5_reads_the_end_state_off_the_step_that_passes_it():
    # Steps are not cut at t1: on dy/dt = y the last step overshoots 1 and the state at 1 is interpolated, within the
    # tolerance of e.
    seen, calls = _counting(lambda t, y: y)
    result = odeint_dopri5(seen, torch.ones(1, dtype=torch.float64), 0.0, 1.0, atol=1e-9, rtol=1e-7)
    assert max(calls) > 1.0
    assert abs(result.y.item() - np.e) < 1e-6


if __name__ == "__main__" and sys.argv[1:] == ["--write"]:
    _write()
