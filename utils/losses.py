"""Tokenizer training losses: reconstruction, joint-position and velocity terms, commitment.

The references call their second term a "velocity" loss (``--loss_vel``) or an auxiliary joint loss
(``--aux_loss_joints``), but it is a reconstruction term on the joint-position slice of the features (``[4:67]`` of
HumanML3D's 263 dims, ``[8:74]`` of the 272-dim layout). Here it is named for what it computes, ``position``; the
slice comes from the dataset spec (``spec.position_slice``). ``velocity`` is a real velocity term: the same loss on
first differences over time of that slice.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import Tensor

from utils.dataset_specs import DatasetSpec

if TYPE_CHECKING:
    from models.tokenizers import TokenizerOutput

RECONSTRUCTION_LOSSES: dict[str, Callable[[Tensor, Tensor], Tensor]] = {
    "l1_smooth": F.smooth_l1_loss,  # beta 1, mean (the references' nn.SmoothL1Loss())
    "l1": F.l1_loss,
    "mse": F.mse_loss,
    "l2": F.mse_loss,  # T2M-GPT's spelling of mse
}


def _loss_fn(kind: str) -> Callable[[Tensor, Tensor], Tensor]:
    if kind not in RECONSTRUCTION_LOSSES:
        raise ValueError(f"recons_loss must be one of {sorted(RECONSTRUCTION_LOSSES)}, got {kind!r}")
    return RECONSTRUCTION_LOSSES[kind]


def _position_slice(spec: DatasetSpec | slice) -> slice:
    return spec if isinstance(spec, slice) else spec.position_slice


def _check_pair(pred: Tensor, target: Tensor) -> None:
    if pred.shape != target.shape or pred.ndim != 3:
        raise ValueError(f"expected prediction and target of the same shape (B, T, D), got {tuple(pred.shape)} and "
                         f"{tuple(target.shape)}")


def reconstruction_loss(pred: Tensor, target: Tensor, kind: str = "l1_smooth") -> Tensor:
    """Mean ``kind`` loss over all of ``(B, T, D)``."""
    _check_pair(pred, target)
    return _loss_fn(kind)(pred, target)


def position_loss(pred: Tensor, target: Tensor, spec: DatasetSpec | slice, kind: str = "l1_smooth") -> Tensor:
    """``kind`` loss on the joint-position features ``[..., spec.position_slice]`` of ``(B, T, D)``."""
    _check_pair(pred, target)
    sl = _position_slice(spec)
    return _loss_fn(kind)(pred[..., sl], target[..., sl])


def velocity_loss(pred: Tensor, target: Tensor, spec: DatasetSpec | slice, kind: str = "l1_smooth") -> Tensor:
    """``kind`` loss on first differences over T of the joint-position features (needs T >= 2)."""
    _check_pair(pred, target)
    if pred.shape[1] < 2:
        raise ValueError(f"velocity_loss needs at least 2 frames, got T={pred.shape[1]}")
    sl = _position_slice(spec)
    return _loss_fn(kind)(pred[..., sl].diff(dim=1), target[..., sl].diff(dim=1))


def tokenizer_loss(recon: Tensor, target: Tensor, out: TokenizerOutput, spec: DatasetSpec | slice,
                   recons_loss: str = "l1_smooth", w_pos: float = 0.5, w_vel: float = 0.0,
                   commit: float = 0.02) -> tuple[Tensor, dict[str, Tensor]]:
    """``L_rec + w_pos L_pos + w_vel L_vel + commit * aux_loss`` for ``recon, target (B, T, D)``.

    ``out`` is the model's ``TokenizerOutput`` (its ``aux_loss`` and ``perplexity`` are used). Defaults are the MoMask
    / T2M-GPT README setting (SmoothL1, position weight 0.5, commitment 0.02). Returns the loss and detached scalars
    for logging (``loss``, ``rec``, ``pos``, ``vel``, ``commit``, ``perplexity``); terms with weight 0 are skipped.
    """
    loss_rec = reconstruction_loss(recon, target, recons_loss)
    zero = loss_rec.new_zeros(())
    loss_pos = position_loss(recon, target, spec, recons_loss) if w_pos else zero
    loss_vel = velocity_loss(recon, target, spec, recons_loss) if w_vel else zero
    aux = out.aux_loss.to(loss_rec.dtype)
    loss = loss_rec + w_pos * loss_pos + w_vel * loss_vel + commit * aux
    logs = {"loss": loss, "rec": loss_rec, "pos": loss_pos, "vel": loss_vel, "commit": aux,
            "perplexity": torch.as_tensor(out.perplexity, dtype=torch.float32)}
    return loss, {k: v.detach() for k, v in logs.items()}
