"""The validation pass of the training loop (``utils.engine``): the model scored as an evaluation would score it."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import nn

from utils.ema import EMA
from utils.seed import get_rng_state, set_rng_state


def run_val_fn(val_fn: Callable[[nn.Module], Mapping[str, Any]], net: nn.Module, ema: EMA | None,
               eval_copy: nn.Module | None) -> dict[str, float]:
    """``val_fn`` of ``net`` in eval mode under ``torch.no_grad`` (of its EMA weights, copied into ``eval_copy``,
    when ``ema`` is on), in fp32; ``net`` is back in train mode and the RNG states as they were afterwards.
    Returns ``{metric: value}``."""
    rng = get_rng_state()
    model = net
    if ema is not None and eval_copy is not None:
        ema.copy_to(eval_copy)
        model = eval_copy
    # Validation runs in fp32 as evaluation does, so that the best file is picked on the numbers an evaluation of it
    # gives: the EMA copy was taken before prepare(); the trained model itself has prepare()'s autocast forward
    # (mixed precision) on the instance, put aside for the call.
    patched = model.__dict__.get("forward") if "_original_forward" in model.__dict__ else None
    if patched is not None:
        model.forward = model.__dict__["_original_forward"]
    model.eval()
    try:
        with torch.no_grad():
            raw = val_fn(model)
    finally:
        if patched is not None:
            model.forward = patched
        net.train()
        set_rng_state(rng)
    return {k: _metric_value(k, v) for k, v in raw.items()}


def _metric_value(name: str, value: Any) -> float:
    """One metric of ``val_fn`` as a float: a number or a one-element tensor / array; anything else (a per-class
    tensor, a string) is a ValueError naming the metric, which TensorBoard and the best-file choice could not use."""
    try:
        return float(value)
    except (TypeError, ValueError, RuntimeError) as e:
        shape = tuple(getattr(value, "shape", ()))
        raise ValueError(f"val_fn returned {name!r} = {type(value).__name__}{list(shape) if shape else ''}; every "
                         f"metric must be one number ({e})") from e
