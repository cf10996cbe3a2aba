"""Quantizers behind one interface.

Every quantizer takes channel-last latents ``z (B, N, C)`` and returns
``QuantizerOutput(z_q (B, N, C), indices, aux_loss (), perplexity ())``; ``indices`` is ``(B, N)`` long, or
``(B, N, Q)`` for the residual quantizer. ``quantize(z)`` gives the same indices deterministically without touching any
state, ``indices_to_latents(indices)`` maps indices back to ``(B, N, C)`` latents (checking their range; ``lookup``
skips the check for indices the quantizer produced itself), ``codebook_size`` is K (per layer),
and ``code_usage()`` / ``reset_usage()`` report how often each code was chosen since the last reset.

Quantization runs in float32 even under autocast (distances and rounding are not safe in bf16/fp16); ``z_q`` comes back
in the input dtype. A quantizer cast to another dtype (``.to(torch.bfloat16)``, ``.double()``) still measures distances
and rounds in float32, from its codebook or projected latents cast up; its projections and code lookups run in its
weights' dtype.

Classes:
- ``QuantizeEMAReset`` (T2M-GPT / MoMask): EMA codebook, codebook initialised from the first batch, dead-code reset.
  ``kmeans_init`` initialises it by k-means on the first batch instead (vector-quantize-pytorch's option).
  ``QuantizeEMA`` (EMA, no reset), ``QuantizeReset`` (reset only), ``QuantizeOrig`` (van den Oord VQ with a learned
  codebook): the other quantizers T2M-GPT offers.
- ``ResidualVQ`` (MoMask) lives in ``models.residual_vq``: Q of these EMA-reset layers on the running residual.
- ``FSQ`` (Mentzer et al. 2023) lives in ``models.fsq`` and ``LFQ`` (lookup-free quantization, MAGVIT-v2) in
  ``models.lfq``; both are ``GridQuantizer``s (a fixed grid between two projections) and share the helpers here.

The codebook quantizers pass the gradient of ``z_q`` to ``z`` straight through (T2M-GPT, MoMask), or with
``rotation_trick`` through the rotation and rescaling that map each latent onto its code (Fifty et al. 2024).
"""

from __future__ import annotations

import math
from contextlib import AbstractContextManager, nullcontext
from typing import NamedTuple

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn

from models.rotation_trick import quantized_with_gradient


class QuantizerOutput(NamedTuple):
    """``z_q (B, N, C)`` straight-through latents, ``indices (B, N)`` or ``(B, N, Q)``, ``aux_loss ()`` (commitment
    loss; 0 for FSQ), ``perplexity ()`` (exp entropy of this batch's code histogram; mean over layers for RVQ)."""

    z_q: Tensor
    indices: Tensor
    aux_loss: Tensor
    perplexity: Tensor


class CodeUsage(NamedTuple):
    """Accumulated since ``reset_usage()``: ``counts (K,)`` (``(Q, K)`` for RVQ), fraction of ``active`` codes and the
    ``perplexity`` of the accumulated histogram (``()`` or ``(Q,)``)."""

    counts: Tensor
    active: Tensor
    perplexity: Tensor


class KMeans(NamedTuple):
    """``means (K, C)`` and ``counts (K,)``, the number of rows whose nearest mean is each (float)."""

    means: Tensor
    counts: Tensor


# ----------------------------------------------------------------------------------------------------------------------
# helpers


def _distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def _all_reduce_sum_(t: Tensor) -> Tensor:
    if _distributed():
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


def _broadcast_(t: Tensor, src: int = 0) -> Tensor:
    if _distributed():
        dist.broadcast(t, src=src)
    return t


def _leading_rows_of_processes(x: Tensor, k: int) -> Tensor:
    """The rows ``(M', C)`` of the first processes' ``x (M, C)``, in rank order, until they hold ``k`` rows or every
    process has given its own: the start of the global batch (each process takes its slice of it in rank order).
    Every process must hold the same number of rows M, as the engine's equal shares of a fixed-window batch do."""
    rows = []
    for src in range(min(dist.get_world_size(), math.ceil(k / max(x.shape[0], 1)))):
        rows.append(_broadcast_(x.clone() if dist.get_rank() == src else torch.empty_like(x), src=src))
    return torch.cat(rows)


def fp32_region(z: Tensor) -> AbstractContextManager:
    """A context that disables autocast for the quantization maths on ``z``'s device."""
    if z.device.type in ("cpu", "cuda", "xpu", "mps"):
        return torch.autocast(device_type=z.device.type, enabled=False)
    return nullcontext()


def code_counts(indices: Tensor, codebook_size: int) -> Tensor:
    """Histogram ``(K,)`` of ``indices`` (any shape) via ``bincount``; entries of -1 ("no code") are ignored."""
    flat = indices.reshape(-1)
    return torch.bincount(flat[flat >= 0], minlength=codebook_size)


def present_code_counts(indices: Tensor) -> tuple[Tensor, Tensor]:
    """The distinct codes ``(U,)`` of ``indices`` (any shape, no -1 entries) and how often each occurs ``(U,)``.

    Costs a sort of the tokens instead of a histogram over all K codes, which is what matters when K is much larger
    than the number of tokens (FSQ: 64,000 codes, a few thousand tokens per batch)."""
    return torch.unique(indices, return_counts=True)


def perplexity_from_counts(counts: Tensor, eps: float = 1e-7) -> Tensor:
    """``exp(-sum p log(p + eps))`` over the last dim of ``counts``; the T2M-GPT definition (eps 1e-7)."""
    counts = counts.float()
    prob = counts / counts.sum(-1, keepdim=True).clamp_min(1.0)
    return torch.exp(-(prob * torch.log(prob + eps)).sum(-1))


def round_ste(x: Tensor) -> Tensor:
    """Round with a straight-through gradient."""
    return x + (x.round() - x).detach()


def squared_distances(x: Tensor, codebook: Tensor) -> Tensor:
    """``(M, C), (K, C) -> (M, K)`` as ``|x|^2 - 2 x.c + |c|^2`` (the references' formula, so argmin ties match)."""
    return x.pow(2).sum(-1, keepdim=True) - 2 * x @ codebook.t() + codebook.pow(2).sum(-1)[None]


def select_codes(x: Tensor, codebook: Tensor, temperature: float = 0.0) -> Tensor:
    """Nearest code ``(M,)`` for ``x (M, C)``; with ``temperature > 0`` a Gumbel-max sample of ``softmax(-d / t)``
    (MoMask's training-time sampling). A codebook of another dtype (a quantizer cast to bf16) is taken in ``x``'s."""
    distances = squared_distances(x, codebook.to(x.dtype))
    if temperature <= 0:
        return distances.argmin(-1)
    # Gumbel noise is g = -log(-log U) with U ~ U[0, 1), so argmax(-d/t + g) = argmin(d/t + log(-log U)): a uniform
    # draw and three passes in place over the (M, K) matrix, without the references' clamps. U = 0 gives +inf there, a
    # code that is not chosen (never NaN). Drawing -log U directly with exponential_ saves a pass but measured five
    # times slower on CPU (10.4 against 2.1 ms for 1,024 x 512).
    noise = torch.empty_like(distances).uniform_().log_().neg_().log_()
    return noise.add_(distances, alpha=1.0 / temperature).argmin(-1)


def kmeans(x: Tensor, k: int, iters: int) -> KMeans:
    """Lloyd's k-means of the rows of ``x (M, C)`` into ``k`` clusters, in ``iters`` assignment/update rounds.

    Starts from ``k`` distinct random rows (torch's global generator; drawn with replacement when ``M < k``). The
    returned ``means`` are the means of the rows of the last assignment and ``counts`` their number, so that
    ``means * counts`` is each cluster's sum. A cluster an iteration leaves empty restarts, for the next one, at the
    row farthest from its nearest mean (the worst-quantized row, one per empty cluster), rather than staying where no
    row goes; a cluster still empty after the last iteration keeps its position with count 0."""
    m = x.shape[0]
    start = torch.randperm(m, device=x.device)[:k] if m >= k else torch.randint(m, (k,), device=x.device)
    means = x[start].clone()
    counts = x.new_zeros(k)
    for i in range(iters):
        distances = squared_distances(x, means)
        assigned = distances.argmin(-1)
        counts = torch.bincount(assigned, minlength=k).to(x.dtype)
        sums = torch.zeros_like(means).index_put_((assigned,), x, accumulate=True)
        filled = (counts > 0)[:, None]
        means = torch.where(filled, sums / counts.clamp_min(1.0)[:, None], means)
        empty = torch.nonzero(~filled[:, 0]).flatten()
        if i + 1 < iters and empty.numel():
            worst = distances.gather(1, assigned[:, None])[:, 0].topk(min(empty.numel(), m)).indices
            means[empty[:worst.numel()]] = x[worst]
    return KMeans(means, counts)


def check_ema_decay(mu: float) -> None:
    """ValueError unless the codebook's EMA decay ``mu`` lies in [0, 1]."""
    if not 0.0 <= mu <= 1.0:
        raise ValueError(f"mu must lie in [0, 1], got {mu} (the EMA decay; T2M-GPT and MoMask use 0.99)")


def check_integer_indices(indices: Tensor, who: str) -> None:
    """Raise a TypeError naming ``who`` for floating-point ``indices`` (F.embedding's own error names only its
    argument #1) and for bool ones (a mask passed by mistake, which would decode silently as codes 0 and 1)."""
    if indices.dtype.is_floating_point or indices.dtype == torch.bool:
        raise TypeError(f"{who} indices must be integers, got {indices.dtype}")


def check_indices(indices: Tensor, codebook_size: int, who: str) -> None:
    """Raise a ValueError naming ``who`` unless every index of ``indices (...)`` lies in ``[-1, codebook_size)``
    (-1 marks a position that decodes to zero), a TypeError for floating-point ones. One min/max pass, so F.embedding
    never sees an out-of-range index (it fails with a bare "index out of range in self", or a device-side assert on
    CUDA)."""
    check_integer_indices(indices, who)
    if indices.numel():
        low, high = torch.stack(torch.aminmax(indices)).tolist()
        if low < -1 or high >= codebook_size:
            raise ValueError(f"{who}: indices must lie in [0, {codebook_size}) (or -1 for an empty position), got "
                             f"range [{low}, {high}]")


def weight_dtype(projection: nn.Module) -> torch.dtype:
    """The dtype a grid quantizer's projection computes in: its weight's, float32 for ``nn.Identity``."""
    weight = getattr(projection, "weight", None)
    return weight.dtype if isinstance(weight, Tensor) else torch.float32


def check_latents(z: Tensor, dim: int, who: str) -> None:
    """Raise a ValueError naming ``who`` unless ``z`` is ``(B, N, dim)``."""
    if z.ndim != 3 or z.shape[-1] != dim:
        raise ValueError(f"{who}: expected latents of shape (B, N, {dim}), got {tuple(z.shape)}")


# ----------------------------------------------------------------------------------------------------------------------
# base class


class Quantizer(nn.Module):
    """Interface shared by all quantizers (see the module docstring)."""

    def _init_usage(self, codebook_size: int) -> None:
        # Usage counts are statistics, not model state: a plain attribute, so they are never saved and DDP does not
        # overwrite them with rank 0's copy (it broadcasts buffers before every forward).
        self.usage_counts = torch.zeros(codebook_size, dtype=torch.long)

    @property
    def codebook_size(self) -> int:
        """K, the number of codes (per layer for RVQ)."""
        raise NotImplementedError

    def quantize(self, z: Tensor) -> Tensor:
        """Deterministic indices for ``z (B, N, C)``; never updates any state."""
        raise NotImplementedError

    def indices_to_latents(self, indices: Tensor) -> Tensor:
        """Indices ``(B, N)`` (or ``(B, N, q)``) -> latents ``(B, N, C)``; an index out of range is a ValueError."""
        raise NotImplementedError

    def lookup(self, indices: Tensor) -> Tensor:
        """``indices_to_latents`` for indices this quantizer produced itself: no range check, so no device sync in a
        training or sampling loop."""
        return self.indices_to_latents(indices)

    @torch.no_grad()
    def _record_usage(self, counts: Tensor) -> None:
        if self.usage_counts.device != counts.device:
            self.usage_counts = self.usage_counts.to(counts.device)
        self.usage_counts += counts

    @torch.no_grad()
    def _record_present_codes(self, indices: Tensor) -> Tensor:
        """Add ``indices`` (any shape; -1, "no code", is ignored) to the usage counts and return this batch's
        perplexity ``()``, from the counts of the codes present (a sort of the tokens, not a histogram over all K
        codes: what matters when K is much larger than the number of tokens)."""
        present, counts = present_code_counts(indices)
        # -1 counts zero times (at code 0) rather than being dropped: a boolean mask would cost a device sync.
        counts = counts * (present >= 0)
        if self.usage_counts.device != counts.device:
            self.usage_counts = self.usage_counts.to(counts.device)
        self.usage_counts.index_add_(0, present.clamp_min(0), counts)
        if self.training and _distributed():
            # The global batch's perplexity, as the EMA quantizers log: this process's codes on a histogram over all
            # K codes, summed over the processes (one K-long all-reduce per step, in training only).
            histogram = torch.zeros_like(self.usage_counts).index_add_(0, present.clamp_min(0), counts)
            return perplexity_from_counts(_all_reduce_sum_(histogram))
        return perplexity_from_counts(counts)

    def _state_device(self) -> torch.device:
        return next(iter([*self.buffers(), *self.parameters()])).device

    @torch.no_grad()
    def code_usage(self) -> CodeUsage:
        """Usage since ``reset_usage()``, summed over processes when torch.distributed is initialised."""
        counts = _all_reduce_sum_(self.usage_counts.to(self._state_device(), copy=True))
        return CodeUsage(counts, (counts > 0).float().mean(-1), perplexity_from_counts(counts))

    def reset_usage(self) -> None:
        """Zero the usage statistics (e.g. before an evaluation pass)."""
        self.usage_counts.zero_()


class GridQuantizer(Quantizer):
    """A quantizer onto a fixed grid of L coordinates per token, with no codebook to look up (FSQ, LFQ):
    ``project_in`` (dim -> L), the grid (``_quantize``: straight-through coordinates and their indices),
    ``project_out`` (L -> dim). Subclasses set ``dim``, the projections and ``label`` (for errors) and define
    ``_quantize``, ``_check_codes``, ``indices_to_codes``, ``snap_to_grid`` and ``num_dims``."""

    dim: int
    label: str
    project_in: nn.Module
    project_out: nn.Module

    @property
    def num_dims(self) -> int:
        """L, the number of grid coordinates per token."""
        raise NotImplementedError

    def _quantize(self, h: Tensor) -> tuple[Tensor, Tensor]:
        raise NotImplementedError

    def _check_codes(self, codes: Tensor) -> None:
        raise NotImplementedError

    def indices_to_codes(self, indices: Tensor) -> Tensor:
        """Indices ``(...)`` -> grid coordinates ``(..., L)`` float32."""
        raise NotImplementedError

    def snap_to_grid(self, coords: Tensor) -> Tensor:
        """Nearest grid point ``(..., L)`` of arbitrary coordinates (e.g. a generator's continuous output)."""
        raise NotImplementedError

    def _check_index_range(self, indices: Tensor) -> None:
        """TypeError for float ``indices``; ValueError naming ``label`` for any outside ``[0, K)`` (a grid has no
        empty code, so -1 is refused too)."""
        check_integer_indices(indices, self.label)
        if indices.numel() and (indices.min() < 0 or indices.max() >= self.codebook_size):
            raise ValueError(f"{self.label}: indices must lie in [0, {self.codebook_size}), got range "
                             f"[{int(indices.min())}, {int(indices.max())}]")

    def codes_to_latents(self, codes: Tensor) -> Tensor:
        """Coordinates ``(B, N, L)`` -> latents ``(B, N, dim)`` (``project_out``, in its weights' dtype)."""
        self._check_codes(codes)
        with fp32_region(codes):
            return self.project_out(codes.to(weight_dtype(self.project_out)))

    def indices_to_latents(self, indices: Tensor) -> Tensor:
        """``(B, N)`` -> ``(B, N, dim)``."""
        return self.codes_to_latents(self.indices_to_codes(indices))

    def encode_codes(self, z: Tensor) -> tuple[Tensor, Tensor]:
        """``z (B, N, dim)`` -> (coordinates ``(B, N, L)`` with straight-through gradient, indices ``(B, N)``)."""
        check_latents(z, self.dim, self.label)
        with fp32_region(z):
            return self._quantize(self.project_in(z.to(weight_dtype(self.project_in))).float())

    def quantize(self, z: Tensor) -> Tensor:
        """Indices ``(B, N)`` (a grid quantizer is deterministic in every mode)."""
        with torch.no_grad():
            return self.encode_codes(z)[1]


# ----------------------------------------------------------------------------------------------------------------------
# T2M-GPT / MoMask codebooks


class QuantizeEMAReset(Quantizer):
    """EMA codebook with dead-code reset (T2M-GPT ``QuantizeEMAReset``; MoMask's with ``sample_codebook_temp``).

    Training mode: the first call copies the leading K latent rows of the batch (batch-major; tiled with noise of std
    ``0.01/sqrt(C)`` when the batch has fewer rows) into the codebook, or with ``kmeans_init`` sets it to the
    ``kmeans`` means of all the batch's rows with ``code_sum = means * counts`` and ``code_count = counts`` (the
    clusters' sizes; vector-quantize-pytorch's ``embed_avg`` and ``cluster_size``), so that the statistics are those
    of the batch and the EMA update does not pull the means back towards single rows; a cluster left empty has count
    0 and is a dead code at the first update. Each call then updates
    ``code_sum <- mu code_sum + (1-mu) sum_of_assigned_latents`` and ``code_count`` likewise; codes with
    ``code_count >= 1`` become ``code_sum / code_count``, the others (dead codes) are replaced by the batch's leading
    rows. Eval mode: nearest code, no update. The loss is the commitment term ``mse(z, sg(code))``.

    Unlike the references, ``initted``, ``code_sum`` and ``code_count`` are buffers, so resuming continues the EMA.
    Loading a state dict that holds only ``codebook`` (official checkpoints) marks it initialised with
    ``code_sum = codebook`` and ``code_count = 1``, exactly the state right after the reference initialisation.

    Under torch.distributed the per-code sums and counts are all-reduced and the initialisation / reset rows are the
    leading rows of the global batch, broadcast from the first processes, so every process keeps the same codebook,
    the one a single process would. k-means runs on every process's rows gathered the same way (the global batch),
    and the first process's result, whose random start comes from its generator, is broadcast to the others.

    ``rotation_trick`` passes the gradient to ``z`` by the rotation trick instead of straight through
    (``quantized_with_gradient``).
    """

    def __init__(self, codebook_size: int, code_dim: int, mu: float = 0.99, sample_codebook_temp: float = 0.0,
                 kmeans_init: bool = False, kmeans_iters: int = 10, rotation_trick: bool = False) -> None:
        super().__init__()
        if codebook_size < 1 or code_dim < 1:
            raise ValueError(f"codebook_size and code_dim must be positive, got {codebook_size}, {code_dim}")
        if kmeans_iters < 1:
            raise ValueError(f"kmeans_iters must be >= 1, got {kmeans_iters}")
        check_ema_decay(mu)
        if sample_codebook_temp < 0:
            raise ValueError(f"sample_codebook_temp must be >= 0, got {sample_codebook_temp} (0 picks nearest codes)")
        self.code_dim = code_dim
        self.mu = mu
        self.sample_codebook_temp = sample_codebook_temp
        self.kmeans_init = kmeans_init
        self.kmeans_iters = kmeans_iters
        self.rotation_trick = rotation_trick
        self.register_buffer("codebook", torch.zeros(codebook_size, code_dim))
        self.register_buffer("code_sum", torch.zeros(codebook_size, code_dim))
        self.register_buffer("code_count", torch.zeros(codebook_size))
        self.register_buffer("initted", torch.tensor(False))
        self._init_usage(codebook_size)

    @property
    def codebook_size(self) -> int:
        return self.codebook.shape[0]

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                              error_msgs):
        codebook = state_dict.get(prefix + "codebook")
        if codebook is not None and prefix + "initted" not in state_dict:
            # An official checkpoint: only the codebook was saved. Without this the first training-mode forward
            # would re-initialise (wipe) the loaded codebook, as the references do on resume.
            state_dict[prefix + "code_sum"] = codebook.clone()
            state_dict[prefix + "code_count"] = torch.ones(codebook.shape[0], dtype=codebook.dtype)
            state_dict[prefix + "initted"] = torch.tensor(True)
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                                      error_msgs)

    def _leading_rows(self, x: Tensor) -> Tensor:
        """The first K rows of the batch ``x (M, C)``, tiled with small noise when it has fewer; identical on every
        process. Under torch.distributed the batch is the global one: when this process's share has fewer than K rows,
        the following processes' shares complete it, so the rows are those one process would take."""
        k = self.codebook_size
        if _distributed() and x.shape[0] < k:
            x = _leading_rows_of_processes(x, k)
        if x.shape[0] < k:
            repeats = (k + x.shape[0] - 1) // x.shape[0]
            x = x.repeat(repeats, 1)
            x = x + torch.randn_like(x) * (0.01 / math.sqrt(self.code_dim))
        # A copy: broadcasting into a view would overwrite this process's own latents.
        return _broadcast_(x[:k].clone())

    @torch.no_grad()
    def _init_codebook(self, x: Tensor) -> None:
        if self.kmeans_init:
            rows = _leading_rows_of_processes(x, dist.get_world_size() * x.shape[0]) if _distributed() else x
            means, counts = kmeans(rows, self.codebook_size, self.kmeans_iters)
            # One broadcast of both, from the process whose random start every process keeps.
            packed = _broadcast_(torch.cat([means, counts[:, None]], 1))
            means, counts = packed[:, :-1], packed[:, -1]
            self.codebook.copy_(means)
            self.code_sum.copy_(means * counts[:, None])
            self.code_count.copy_(counts)
        else:
            rows = self._leading_rows(x)
            self.codebook.copy_(rows)
            self.code_sum.copy_(rows)
            self.code_count.fill_(1.0)
        self.initted.fill_(True)

    @torch.no_grad()
    def _ema_statistics(self, x: Tensor, indices: Tensor, counts: Tensor) -> Tensor:
        """Update the EMA sums with this step's batch; returns the batch's code counts ``(K,)`` over all processes."""
        # Accumulating put rather than index_add_: the same sums without the (M, C) index tensor that index_add_
        # expands to on CPU, several times faster there, and deterministic on CUDA.
        code_sum = torch.zeros_like(self.code_sum).index_put_((indices,), x, accumulate=True)
        code_count = _all_reduce_sum_(counts.to(self.code_count.dtype))
        _all_reduce_sum_(code_sum)
        self.code_sum.mul_(self.mu).add_(code_sum, alpha=1.0 - self.mu)
        self.code_count.mul_(self.mu).add_(code_count, alpha=1.0 - self.mu)
        return code_count

    @torch.no_grad()
    def _update_codebook(self, x: Tensor, indices: Tensor, counts: Tensor) -> Tensor:
        """One training step's codebook update; returns the batch's code counts over all processes."""
        global_counts = self._ema_statistics(x, indices, counts)
        reset_rows = self._leading_rows(x)
        alive = (self.code_count >= 1.0)[:, None]
        updated = self.code_sum / self.code_count[:, None]
        self.codebook.copy_(torch.where(alive, updated, reset_rows))
        return global_counts

    def quantize(self, z: Tensor) -> Tensor:
        """Nearest-code indices ``(B, N)`` for ``z (B, N, C)``."""
        check_latents(z, self.code_dim, type(self).__name__)
        with fp32_region(z), torch.no_grad():
            return select_codes(z.float().reshape(-1, self.code_dim), self.codebook).view(z.shape[:2])

    def indices_to_latents(self, indices: Tensor) -> Tensor:
        """``(B, N)`` long -> ``(B, N, C)``; index -1 gives a zero vector."""
        check_indices(indices, self.codebook_size, type(self).__name__)
        return self.lookup(indices)

    def lookup(self, indices: Tensor) -> Tensor:
        """``indices_to_latents`` for indices known to lie in ``[-1, K)``."""
        valid = (indices >= 0)[..., None]
        return F.embedding(indices.clamp_min(0), self.codebook) * valid

    def forward(self, z: Tensor) -> QuantizerOutput:
        """``z (B, N, C)`` -> ``QuantizerOutput``; see the class docstring for training-mode behaviour."""
        check_latents(z, self.code_dim, type(self).__name__)
        b, n, c = z.shape
        with fp32_region(z):
            x = z.float().reshape(b * n, c)
            if self.training and not bool(self.initted):
                self._init_codebook(x.detach())
            temperature = self.sample_codebook_temp if self.training else 0.0
            with torch.no_grad():
                indices = select_codes(x.detach(), self.codebook, temperature)
            x_d = F.embedding(indices, self.codebook.to(x.dtype))
            counts = code_counts(indices, self.codebook_size)
            # The logged perplexity is the global batch's (the counts over all processes, which the update sums
            # anyway), not a mean of the processes' own, which would change with their number.
            batch_counts = self._update_codebook(x.detach(), indices, counts) if self.training else counts
            commit_loss = F.mse_loss(x, x_d.detach())
            z_q = quantized_with_gradient(x, x_d, self.rotation_trick)
        self._record_usage(counts)
        return QuantizerOutput(z_q.view(b, n, c).to(z.dtype), indices.view(b, n), commit_loss,
                               perplexity_from_counts(batch_counts))


class QuantizeEMA(QuantizeEMAReset):
    """EMA codebook without dead-code reset (T2M-GPT ``QuantizeEMA``): every code becomes ``code_sum / code_count``.

    A code whose count has decayed to exactly zero keeps its value (the reference would divide 0 by 0).
    """

    @torch.no_grad()
    def _update_codebook(self, x: Tensor, indices: Tensor, counts: Tensor) -> Tensor:
        global_counts = self._ema_statistics(x, indices, counts)
        count = self.code_count[:, None]
        used = count > 0
        # Divide by the count itself however small (a floor would shrink a long-unused code towards zero); a count of
        # zero is replaced only in the branch that torch.where discards.
        self.codebook.copy_(torch.where(used, self.code_sum / torch.where(used, count, 1.0), self.codebook))
        return global_counts


class QuantizeReset(QuantizeEMAReset):
    """Codebook moved only by resets (T2M-GPT ``QuantizeReset``): codes unused in the current batch are replaced by
    the batch's leading rows. No gradient reaches the codebook in the reference either (commitment loss and the
    straight-through estimator both detach it), so it is a buffer here. ``code_count`` holds the last batch's counts."""

    @torch.no_grad()
    def _update_codebook(self, x: Tensor, indices: Tensor, counts: Tensor) -> Tensor:
        self.code_count.copy_(_all_reduce_sum_(counts.to(self.code_count.dtype)))
        reset_rows = self._leading_rows(x)
        self.codebook.copy_(torch.where((self.code_count >= 1.0)[:, None], self.codebook, reset_rows))
        return self.code_count.clone()


class QuantizeOrig(Quantizer):
    """Original VQ-VAE quantizer (T2M-GPT ``Quantizer``, ``--quantizer orig``): learned ``nn.Embedding`` codebook,
    ``loss = mean((c - sg z)^2) + beta mean((sg c - z)^2)``. T2M-GPT hard-codes ``beta = 1.0``; it is an argument here
    with that default. The codebook is a parameter (it learns by gradient), stored as ``embedding.weight``; it learns
    from this loss only, also with ``rotation_trick``."""

    def __init__(self, codebook_size: int, code_dim: int, beta: float = 1.0, rotation_trick: bool = False) -> None:
        super().__init__()
        self.code_dim = code_dim
        self.beta = beta
        self.rotation_trick = rotation_trick
        self.embedding = nn.Embedding(codebook_size, code_dim)
        nn.init.uniform_(self.embedding.weight, -1.0 / codebook_size, 1.0 / codebook_size)
        self._init_usage(codebook_size)

    @property
    def codebook_size(self) -> int:
        return self.embedding.num_embeddings

    def quantize(self, z: Tensor) -> Tensor:
        """Nearest-code indices ``(B, N)``."""
        check_latents(z, self.code_dim, "QuantizeOrig")
        with fp32_region(z), torch.no_grad():
            return select_codes(z.float().reshape(-1, self.code_dim), self.embedding.weight).view(z.shape[:2])

    def indices_to_latents(self, indices: Tensor) -> Tensor:
        """``(B, N)`` -> ``(B, N, C)``; -1 gives a zero vector."""
        check_indices(indices, self.codebook_size, "QuantizeOrig")
        return self.lookup(indices)

    def lookup(self, indices: Tensor) -> Tensor:
        """``indices_to_latents`` for indices known to lie in ``[-1, K)``."""
        return self.embedding(indices.clamp_min(0)) * (indices >= 0)[..., None]

    def forward(self, z: Tensor) -> QuantizerOutput:
        """``z (B, N, C)`` -> ``QuantizerOutput`` with the codebook + commitment loss."""
        check_latents(z, self.code_dim, "QuantizeOrig")
        b, n, c = z.shape
        with fp32_region(z):
            x = z.float().reshape(b * n, c)
            with torch.no_grad():
                indices = select_codes(x, self.embedding.weight.float())
            codes = self.embedding(indices).float()
            loss = (codes - x.detach()).pow(2).mean() + self.beta * (codes.detach() - x).pow(2).mean()
            z_q = quantized_with_gradient(x, codes, self.rotation_trick)
        counts = code_counts(indices, self.codebook_size)
        self._record_usage(counts)
        # Training under several processes: the global batch's perplexity, as the EMA quantizers log.
        batch_counts = _all_reduce_sum_(counts.clone()) if self.training else counts
        return QuantizerOutput(z_q.view(b, n, c).to(z.dtype), indices.view(b, n), loss,
                               perplexity_from_counts(batch_counts))
