"""The gradient a codebook quantizer passes from its codes to the latents: straight through (T2M-GPT, MoMask), or by
the rotation trick (Fifty et al. 2024, "Restructuring vector quantization with the rotation trick")."""

from __future__ import annotations

import torch
from torch import Tensor


def quantized_with_gradient(x: Tensor, codes: Tensor, rotation_trick: bool = False, eps: float = 1e-6) -> Tensor:
    """The codes ``q (M, C)`` in value, with the gradient reaching the latents ``x (M, C)``; the codes get none.

    Straight through by default (the gradient of the output is the gradient of ``x``). With ``rotation_trick``
    (Fifty et al. 2024, "Restructuring vector quantization with the rotation trick") the output is ``s R x`` with the
    constants ``s = |q|/|x|`` and ``R = I - 2 r r^T + 2 q^ x^^T`` (``x^ = x/|x|``, ``q^ = q/|q|``,
    ``r = (x^ + q^)/|x^ + q^|``), the rotation taking ``x^`` to ``q^``: its value is ``q``, and the gradient ``g`` of
    the output reaches ``x`` as ``s R^T g``, which makes with ``x`` the angle that ``g`` makes with ``q``. A latent with
    ``|x| < eps`` has no direction to rotate and passes its gradient straight through."""
    codes = codes.detach()
    if not rotation_trick:
        return x + (codes - x).detach()
    with torch.no_grad():
        x_norm = x.norm(dim=-1, keepdim=True)
        x_hat = x / x_norm.clamp_min(eps)
        q_hat = codes / codes.norm(dim=-1, keepdim=True).clamp_min(eps)
        r = x_hat + q_hat
        # x^ = -q^ gives r = 0, and R = I + 2 q^ x^^T still takes x^ to q^.
        r = r / r.norm(dim=-1, keepdim=True).clamp_min(eps)
        scale = codes.norm(dim=-1, keepdim=True) / x_norm.clamp_min(eps)
    rotated = scale * (x - 2 * r * (r * x).sum(-1, keepdim=True) + 2 * q_hat * (x_hat * x).sum(-1, keepdim=True))
    rotated = torch.where(x_norm < eps, x, rotated)
    # s R x is q up to round-off; adding the detached difference gives the straight-through path's value, q, also for
    # the latents too short to rotate.
    return rotated + (codes - rotated).detach()
