"""Residual VQ (MoMask): Q EMA-reset codebooks (``models.quantizers.QuantizeEMAReset``), each quantizing what the
layers before it left over, behind the quantizer interface of ``models.quantizers``."""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor, nn

from models.quantizers import (
    QuantizeEMAReset,
    Quantizer,
    QuantizerOutput,
    _broadcast_,
    check_integer_indices,
    check_latents,
    code_counts,
)


class RVQCodes(NamedTuple):
    """Deterministic residual quantization: ``indices (B, N, Q)`` and ``layer_latents (B, N, Q, C)``."""

    indices: Tensor
    layer_latents: Tensor


class ResidualVQ(Quantizer):
    """Residual VQ (MoMask): layer q quantizes what the layers before it left over; ``z_q`` is the sum of the codes.

    Training mode: with probability ``quantize_dropout_prob`` per batch, a layer index ``s`` is drawn uniformly from
    ``[quantize_dropout_cutoff_index, Q)`` and layers after ``s`` are skipped (indices -1), so the first layer always
    runs. ``sample_codebook_temp > 0`` samples codes by Gumbel-max on ``-distance / temp`` (MoMask trains with 0.5);
    0 keeps nearest codes. Eval mode: every layer, nearest codes. Under torch.distributed the dropout draw is taken on
    rank 0 and broadcast, so all processes run the same layers (their EMA updates are collective).

    ``aux_loss`` and ``perplexity`` are means over the layers that ran; ``layer_perplexity`` (Q,) keeps the last
    forward's per-layer values (NaN for skipped layers).

    ``kmeans_init``, ``kmeans_iters`` and ``rotation_trick`` apply to every layer (``QuantizeEMAReset``): each layer
    runs k-means on its own input, the residual, at its first training forward.
    """

    def __init__(self, num_quantizers: int, codebook_size: int, code_dim: int, mu: float = 0.99,
                 shared_codebook: bool = False, quantize_dropout_prob: float = 0.0,
                 quantize_dropout_cutoff_index: int = 0, sample_codebook_temp: float = 0.0,
                 kmeans_init: bool = False, kmeans_iters: int = 10, rotation_trick: bool = False) -> None:
        super().__init__()
        if num_quantizers < 1:
            raise ValueError(f"num_quantizers must be >= 1, got {num_quantizers}")
        if not 0.0 <= quantize_dropout_prob <= 1.0:
            raise ValueError(f"quantize_dropout_prob must lie in [0, 1], got {quantize_dropout_prob}")
        if not 0 <= quantize_dropout_cutoff_index < num_quantizers:
            raise ValueError(f"quantize_dropout_cutoff_index must be in [0, {num_quantizers}), "
                             f"got {quantize_dropout_cutoff_index}")
        self.num_quantizers = num_quantizers
        self.code_dim = code_dim
        self.quantize_dropout_prob = quantize_dropout_prob
        self.quantize_dropout_cutoff_index = quantize_dropout_cutoff_index
        layer_args = dict(codebook_size=codebook_size, code_dim=code_dim, mu=mu,
                          sample_codebook_temp=sample_codebook_temp, kmeans_init=kmeans_init,
                          kmeans_iters=kmeans_iters, rotation_trick=rotation_trick)
        if shared_codebook:
            # One module listed Q times (as MoMask): its EMA is updated once per active layer.
            self.layers = nn.ModuleList([QuantizeEMAReset(**layer_args)] * num_quantizers)
        else:
            self.layers = nn.ModuleList(QuantizeEMAReset(**layer_args) for _ in range(num_quantizers))
        self.layer_perplexity = torch.full((num_quantizers,), float("nan"))
        # Per-layer usage (Q, K), counted here rather than read from the layers: with a shared codebook the Q layers
        # are one module, whose own counts add up every layer's codes.
        self.usage_counts = torch.zeros(num_quantizers, codebook_size, dtype=torch.long)

    @property
    def codebook_size(self) -> int:
        return self.layers[0].codebook_size

    def _num_active_layers(self, device: torch.device) -> int:
        if not self.training or self.quantize_dropout_prob <= 0:
            return self.num_quantizers
        draw = torch.stack([torch.rand(()), torch.randint(self.quantize_dropout_cutoff_index, self.num_quantizers,
                                                          ()).float()]).to(device)
        draw = _broadcast_(draw)
        return int(draw[1].item()) + 1 if draw[0].item() < self.quantize_dropout_prob else self.num_quantizers

    def forward(self, z: Tensor) -> QuantizerOutput:
        """``z (B, N, C)`` -> ``QuantizerOutput`` with ``indices (B, N, Q)`` (-1 for skipped layers)."""
        check_latents(z, self.code_dim, "ResidualVQ")
        active = self._num_active_layers(z.device)
        residual = z.float()
        z_q = torch.zeros_like(residual)
        indices, losses, perplexities = [], [], []
        for layer in self.layers[:active]:
            out = layer(residual)
            residual = residual - out.z_q.detach()
            z_q = z_q + out.z_q
            indices.append(out.indices)
            losses.append(out.aux_loss)
            perplexities.append(out.perplexity)
        indices += [torch.full_like(indices[0], -1)] * (self.num_quantizers - active)
        indices = torch.stack(indices, -1)
        self._record_layer_usage(indices)
        layer_ppl = torch.stack(perplexities).detach()
        skipped = layer_ppl.new_full((self.num_quantizers - active,), float("nan"))
        self.layer_perplexity = torch.cat([layer_ppl, skipped])
        return QuantizerOutput(z_q.to(z.dtype), indices, torch.stack(losses).mean(), layer_ppl.mean())

    @torch.no_grad()
    def _record_layer_usage(self, indices: Tensor) -> None:
        """Add ``indices (B, N, Q)`` (-1 for skipped layers) to the per-layer counts, in one histogram of Q*K bins."""
        k = self.codebook_size
        offsets = torch.arange(self.num_quantizers, device=indices.device) * k
        binned = torch.where(indices >= 0, indices + offsets, -1)
        self._record_usage(code_counts(binned, self.num_quantizers * k).view(self.num_quantizers, k))

    @torch.no_grad()
    def quantize_layers(self, z: Tensor) -> RVQCodes:
        """Deterministic residual codes of ``z (B, N, C)``: all layers, nearest codes, no state change."""
        check_latents(z, self.code_dim, "ResidualVQ")
        residual = z.float()
        indices, latents = [], []
        for layer in self.layers:
            idx = layer.quantize(residual)
            code = layer.lookup(idx)
            residual = residual - code
            indices.append(idx)
            latents.append(code)
        return RVQCodes(torch.stack(indices, -1), torch.stack(latents, 2))

    def quantize(self, z: Tensor) -> Tensor:
        """Deterministic indices ``(B, N, Q)``."""
        return self.quantize_layers(z).indices

    def indices_to_latents(self, indices: Tensor) -> Tensor:
        """``(B, N, q)`` with ``q <= Q`` -> ``(B, N, C)``: the sum of the layers' codes; -1 and missing trailing
        layers contribute zero. A ``(B, N)`` tensor is read as the first layer only."""
        indices = self._layered(indices)
        check_integer_indices(indices, "ResidualVQ")
        if indices.numel():
            # One min/max pass for all layers; the per-layer values only name the culprit.
            low, high = torch.aminmax(indices.reshape(-1, indices.shape[-1]), dim=0)
            for q, (lo, hi) in enumerate(zip(low.tolist(), high.tolist())):
                if lo < -1 or hi >= self.codebook_size:
                    raise ValueError(f"ResidualVQ: layer {q} indices must lie in [0, {self.codebook_size}) (or -1 "
                                     f"for a skipped layer), got range [{lo}, {hi}]")
        return self.lookup(indices)

    def lookup(self, indices: Tensor) -> Tensor:
        """``indices_to_latents`` for indices known to lie in ``[-1, K)``."""
        indices = self._layered(indices)
        latents = [layer.lookup(indices[..., q]) for q, layer in enumerate(self.layers[:indices.shape[-1]])]
        return torch.stack(latents, 0).sum(0)

    def _layered(self, indices: Tensor) -> Tensor:
        """``(B, N)`` -> ``(B, N, 1)``; ``(B, N, q)`` checked against the number of layers."""
        if indices.ndim == 2:
            indices = indices[..., None]
        if indices.ndim != 3 or indices.shape[-1] > self.num_quantizers:
            raise ValueError(f"ResidualVQ: expected indices (B, N, q<={self.num_quantizers}), "
                             f"got {tuple(indices.shape)}")
        return indices

    def reset_usage(self) -> None:
        super().reset_usage()
        for layer in self.layers:
            layer.reset_usage()
