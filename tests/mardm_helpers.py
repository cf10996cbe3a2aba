"""Tiny MARDM models for tests: ``tiny`` builds one with a fixed-step SiT head, ``randomize`` fills its
zero-initialised layers so that every input matters."""

from __future__ import annotations

import torch

from models.mardm import MARDM_MODELS


def randomize(model: torch.nn.Module, std: float = 0.1, seed: int = 0) -> torch.nn.Module:
    """Replace the zero initialisations (adaLN-Zero, zero head output) so every input matters."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * std)
    return model


def tiny(name: str = "MARDM-SiT-Tiny", ae_dim: int = 8, target_dim: int = 8, text_dim: int = 12, **kw):
    kw.setdefault("flow_solver", "euler")
    kw.setdefault("flow_steps", 4)
    return MARDM_MODELS[name](ae_dim, target_dim, text_dim, **kw)
