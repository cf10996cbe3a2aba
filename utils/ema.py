"""Exponential moving average of a model's weights.

The shadow is keyed like ``model.state_dict()`` so ``EMA.state_dict()`` loads straight into a fresh model
(``model.load_state_dict(ckpt["ema"])``, as DiT samples from its EMA weights). Trainable floating-point parameters are
averaged in an fp32 shadow; buffers (running statistics, EMA codebooks, usage counters) and frozen parameters are
copied, because averaging a running statistic of a running statistic has no meaning.
"""

from __future__ import annotations

import torch
from torch import nn


class EMA:
    """``shadow = decay * shadow + (1 - decay) * param`` after every optimizer step.

    Args:
        model: the (unwrapped) model to track; the shadow lives on its device.
        decay: in [0, 1); 0.9999 is DiT's value, a few thousand steps are needed before it departs from the init.
    """

    def __init__(self, model: nn.Module, decay: float) -> None:
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"EMA decay must be in [0, 1), got {decay}")
        self.decay = float(decay)
        self.shadow: dict[str, torch.Tensor] = {}
        for name, value in model.state_dict(keep_vars=True).items():
            # Asked of the parameter itself: a detached tensor is no nn.Parameter, and was copied in its own dtype.
            self.shadow[name] = value.detach().float().clone() if _averaged(value) else value.detach().clone()

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """Fold the current weights of ``model`` (same architecture as at construction) into the shadow."""
        current = model.state_dict(keep_vars=True)
        if current.keys() != self.shadow.keys():
            raise KeyError(f"EMA.update: model keys differ from the tracked ones: "
                           f"{_key_diff(self.shadow.keys(), current.keys())}")
        weight = 1.0 - self.decay
        for name, value in current.items():
            shadow = self.shadow[name]
            if _averaged(value):
                shadow.lerp_(value.detach().float(), weight)
            else:
                shadow.copy_(value.detach())

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The shadow weights, keyed like ``model.state_dict()`` (fp32 for averaged parameters)."""
        return dict(self.shadow)

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        """Restore a shadow saved by :meth:`state_dict`; keys must match the tracked model exactly."""
        if state.keys() != self.shadow.keys():
            raise KeyError(f"EMA.load_state_dict: keys differ from the model's: {_key_diff(self.shadow.keys(), state)}")
        # copy_ would broadcast a smaller tensor over the shadow, or fail naming no weight: check all, then copy.
        for name, value in state.items():
            if value.shape != self.shadow[name].shape:
                raise ValueError(f"EMA.load_state_dict: {name} has shape {tuple(value.shape)}, expected "
                                 f"{tuple(self.shadow[name].shape)}")
        for name, value in state.items():
            self.shadow[name].copy_(value)

    @torch.no_grad()
    def copy_to(self, model: nn.Module) -> None:
        """Write the shadow into ``model`` (cast to each tensor's dtype), e.g. a copy used for evaluation."""
        model.load_state_dict({name: value for name, value in self.shadow.items()})


def _averaged(value: torch.Tensor) -> bool:
    return isinstance(value, nn.Parameter) and value.requires_grad and value.is_floating_point()


def _key_diff(expected, found) -> str:
    expected, found = set(expected), set(found)
    return f"missing {sorted(expected - found)[:5]}, unexpected {sorted(found - expected)[:5]}"
