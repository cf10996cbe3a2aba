"""LFQ: lookup-free quantization (Yu et al. 2023, "Language Model Beats Diffusion: Tokenizer is Key to Visual
Generation" (MAGVIT-v2), arXiv:2310.05737, Sec. 3.1), behind the interface of ``models.quantizers.Quantizer``.

Each token is projected to d = log2(K) dims and every dim is quantized to its sign, ``±codebook_scale``: the code is
a corner of the d-cube and its index the bits read most significant first. There is no codebook to look up; an
entropy penalty keeps the assignments confident per token and spread over the codes across the batch.

Memory of the entropy penalty. The soft assignment of a token to the K codes is a softmax over
``2 tau <h, c>`` (tau = ``inv_temperature``), which factorises over the bits: bit i is +1 with probability
``sigmoid(4 tau s h_i)`` independently of the others (s = ``codebook_scale``). So

- the per-token entropy is exactly the sum of the d binary entropies: O(tokens x d), whatever K is;
- the entropy of the batch-mean assignment does not factorise (a mean of product distributions is a mixture). It is
  computed exactly from the (tokens x K) assignment while d <= ``dense_entropy_max_dim`` (default 14: 16,384 codes,
  256 MiB of fp32 per tensor at 4,096 tokens, and autograd keeps about three such tensors). Above that it is replaced
  by the sum over bits of the entropies of the batch-mean bit probabilities, O(tokens x d): an upper bound of the
  exact value (subadditivity of entropy), equal to it when the bits of the mean assignment are independent. It still
  rewards balanced bits, but not bits that are independent of each other.

The tokenizers are registered in ``models.tokenizers`` (``LFQ_AE*``); this module holds only the quantizer.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn

from models.quantizers import (
    GridQuantizer,
    QuantizerOutput,
    _all_reduce_sum_,
    _distributed,
    check_latents,
    fp32_region,
    weight_dtype,
)


class LFQEntropy(NamedTuple):
    """Entropy terms of the last training-mode forward (nats, detached): ``per_sample ()`` (mean over tokens of the
    entropy of each token's soft assignment) and ``codebook ()`` (entropy of the batch-mean assignment)."""

    per_sample: Tensor
    codebook: Tensor


def binary_entropy_from_logits(logits: Tensor) -> Tensor:
    """Entropy (nats) of Bernoulli(sigmoid(logits)), elementwise: ``softplus(a) - a sigmoid(a)``, stable for any a."""
    return F.softplus(logits) - logits * torch.sigmoid(logits)


def entropy(probs: Tensor, eps: float = 1e-12) -> Tensor:
    """Entropy (nats) of the distributions ``probs (..., K)`` over their last dim."""
    return -(probs * probs.clamp_min(eps).log()).sum(-1)


def _global_mean(rows: Tensor) -> Tensor:
    """The mean of ``rows (M, ...)`` over the global batch: this process's rows, with gradient, and every other
    process's, as constants (one all-reduce). A function of the global mean, such as the codebook entropy, then has
    its one-process value; its gradient reaches this process's parameters through this process's rows only, so it is
    scaled by the number of processes (its value unchanged), and the gradient average of DistributedDataParallel
    gives the one-process gradient."""
    if not _distributed():
        return rows.mean(0)
    local = rows.sum(0)
    totals = torch.cat([local.detach().reshape(-1), local.new_tensor([rows.shape[0]])])
    _all_reduce_sum_(totals)
    others = totals[:-1].reshape(local.shape) - local.detach()
    world = dist.get_world_size()
    scaled = world * local - (world - 1) * local.detach()  # the value of local, world times its gradient
    return (scaled + others) / totals[-1]


class LFQ(GridQuantizer):
    """Lookup-free quantization (MAGVIT-v2, arXiv:2310.05737, Sec. 3.1; defaults of vector-quantize-pytorch's LFQ).

    ``z (B, N, dim)`` is projected to d = log2(``codebook_size``) dims (``project_in``, a Linear only when
    ``dim != d``), each dim becomes ``+codebook_scale`` if positive else ``-codebook_scale`` with a straight-through
    gradient, and the codes are projected back (``project_out``). The index of a code is
    ``sum_i [code_i > 0] 2^(d-1-i)`` (first dim most significant).

    ``aux_loss`` (training mode only, as the reference; 0 in eval mode) is
    ``entropy_loss_weight * (per_sample_entropy - diversity_gamma * codebook_entropy)
    + commitment_loss_weight * mse(h, sg(code))``, already weighted: a training objective adds it as it is. The soft
    assignment is ``softmax(2 inv_temperature <h, c>)`` over the codes c; see the module docstring for how its
    entropies are computed and what ``dense_entropy_max_dim`` bounds. Under torch.distributed the codebook entropy
    is that of the global batch (one all-reduce of the summed assignments per training forward).
    """

    def __init__(self, codebook_size: int, dim: int | None = None, entropy_loss_weight: float = 0.1,
                 commitment_loss_weight: float = 0.0, diversity_gamma: float = 1.0, codebook_scale: float = 1.0,
                 inv_temperature: float = 100.0, dense_entropy_max_dim: int = 14) -> None:
        super().__init__()
        if codebook_size < 2 or codebook_size & (codebook_size - 1):
            raise ValueError(f"LFQ codebook_size must be a power of 2 (>= 2), got {codebook_size}")
        if codebook_scale <= 0 or inv_temperature <= 0:
            raise ValueError(f"LFQ codebook_scale and inv_temperature must be positive, got {codebook_scale}, "
                             f"{inv_temperature}")
        self.codebook_dim = int(math.log2(codebook_size))
        self.dim = dim if dim is not None else self.codebook_dim
        self.label = f"LFQ({codebook_size})"
        self.entropy_loss_weight = entropy_loss_weight
        self.commitment_loss_weight = commitment_loss_weight
        self.diversity_gamma = diversity_gamma
        self.codebook_scale = codebook_scale
        self.inv_temperature = inv_temperature
        self.dense_entropy_max_dim = dense_entropy_max_dim
        d = self.codebook_dim
        self.project_in = nn.Linear(self.dim, d) if self.dim != d else nn.Identity()
        self.project_out = nn.Linear(d, self.dim) if self.dim != d else nn.Identity()
        # Derived from codebook_size: not saved (checkpoints keep only real state).
        self.register_buffer("_bit_values", 2 ** torch.arange(d - 1, -1, -1, dtype=torch.long), persistent=False)
        self.last_entropy: LFQEntropy | None = None
        self._init_usage(codebook_size)

    @property
    def codebook_size(self) -> int:
        return 2 ** self.codebook_dim

    @property
    def num_dims(self) -> int:
        """d, the number of bits (code coordinates) per token."""
        return self.codebook_dim

    def _check_codes(self, codes: Tensor) -> None:
        if codes.shape[-1] != self.codebook_dim:
            raise ValueError(f"{self.label}: expected codes with last dim {self.codebook_dim}, got shape "
                             f"{tuple(codes.shape)}")

    def snap_to_grid(self, coords: Tensor) -> Tensor:
        """``±codebook_scale`` by the sign of each of ``coords (..., d)`` (0 goes to ``-scale``, as in quantization);
        for a generator's continuous output. Idempotent."""
        self._check_codes(coords)
        scale = torch.full((), self.codebook_scale, dtype=torch.float32, device=coords.device)
        return torch.where(coords.float() > 0, scale, -scale)

    def codes_to_indices(self, codes: Tensor) -> Tensor:
        """Codes ``(..., d)`` -> indices ``(...)`` long (bit i set where ``codes[..., i] > 0``, MSB first)."""
        self._check_codes(codes)
        return ((codes > 0).long() * self._bit_values).sum(-1)

    def indices_to_codes(self, indices: Tensor) -> Tensor:
        """Indices ``(...)`` -> codes ``(..., d)`` float32 in ``{-scale, +scale}``."""
        self._check_index_range(indices)
        return self._codes_of(indices)

    def _codes_of(self, indices: Tensor) -> Tensor:
        """``indices_to_codes`` without the range check."""
        bits = (indices[..., None] // self._bit_values) % 2
        return (bits.float() * 2 - 1) * self.codebook_scale

    def _quantize(self, h: Tensor) -> tuple[Tensor, Tensor]:
        """``h (..., d)`` float32 -> (codes with straight-through gradient, indices ``(...)`` long)."""
        positive = h > 0
        hard = torch.where(positive, self.codebook_scale, -self.codebook_scale).to(h.dtype)
        indices = (positive.long() * self._bit_values).sum(-1)
        return h + (hard - h).detach(), indices

    def entropy_terms(self, h: Tensor) -> LFQEntropy:
        """Per-sample and codebook entropy (nats, with gradient) of the soft assignments of ``h (M, d)``, the
        pre-quantization values (after ``project_in``). Under torch.distributed the codebook entropy is that of the
        global batch's mean assignment (``_global_mean``), as one process on the whole batch computes it."""
        bit_logits = (4.0 * self.inv_temperature * self.codebook_scale) * h  # log-odds of each bit being +scale
        per_sample = binary_entropy_from_logits(bit_logits).sum(-1).mean()
        if self.codebook_dim <= self.dense_entropy_max_dim:
            codes = self._codes_of(torch.arange(self.codebook_size, device=h.device))  # (K, d)
            mean_assignment = _global_mean(torch.softmax((2.0 * self.inv_temperature) * h @ codes.t(), dim=-1))
            codebook = entropy(mean_assignment)
        else:
            mean_bits = _global_mean(torch.sigmoid(bit_logits))  # (d,) mean probability of each bit being +scale
            codebook = entropy(torch.stack([mean_bits, 1 - mean_bits], -1)).sum()
        return LFQEntropy(per_sample, codebook)

    def forward(self, z: Tensor) -> QuantizerOutput:
        """``z (B, N, dim)`` -> ``QuantizerOutput`` (``aux_loss``: see the class docstring; perplexity from the counts
        of the codes present, never a dense one-hot of K x tokens)."""
        check_latents(z, self.dim, self.label)
        with fp32_region(z):
            h = self.project_in(z.to(weight_dtype(self.project_in))).float()
            codes, indices = self._quantize(h)
            z_q = self.project_out(codes.to(weight_dtype(self.project_out)))
            aux = h.new_zeros(())
            if self.training:
                flat = h.reshape(-1, self.codebook_dim)
                terms = self.entropy_terms(flat)
                aux = self.entropy_loss_weight * (terms.per_sample - self.diversity_gamma * terms.codebook)
                self.last_entropy = LFQEntropy(terms.per_sample.detach(), terms.codebook.detach())
                if self.commitment_loss_weight:
                    aux = aux + self.commitment_loss_weight * F.mse_loss(h, codes.detach())
        return QuantizerOutput(z_q.to(z.dtype), indices, aux, self._record_present_codes(indices))
