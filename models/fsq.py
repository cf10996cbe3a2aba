"""FSQ: Finite Scalar Quantization (Mentzer et al. 2023, "Finite Scalar Quantization: VQ-VAE Made Simple",
arXiv:2309.15505), behind the interface of ``models.quantizers.Quantizer``.

The level sets in use (MotionMillion's ``[8, 8, 8, 5, 5, 5]``, FSQ-MARDM's) are registered with the tokenizers in
``models.tokenizers``; this module holds only the quantizer.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from models.quantizers import GridQuantizer, QuantizerOutput, fp32_region, round_ste

# ``bound`` widens the grid by (L - 1) * eps / 2 (eps = 1e-3): past 1000 levels that is half a step or more, and
# saturated values round to a level beyond the grid (an index outside [0, K)).
MAX_LEVEL = 1000


class FSQ(GridQuantizer):
    """Finite Scalar Quantization (Mentzer et al. 2023, arXiv:2309.15505, Sec. 3 and App. A.1).

    ``z (B, N, dim)`` is projected to L = ``len(levels)`` dims (``project_in``, a Linear only when ``dim != L``), each
    dim is bounded and rounded to ``levels[i]`` values, and projected back (``project_out``). Codes ("coordinates")
    lie on the grid ``(k - levels[i] // 2) / (levels[i] // 2)``, k = 0 .. levels[i]-1, inside [-1, 1]: odd levels give
    a symmetric grid, even levels one that stops a step short of +1 (e.g. 8 -> {-1, ..., 0.75}). The index of a code is
    ``sum_i k_i * prod(levels[:i])`` (first dim least significant), so ``codebook_size = prod(levels)``.

    There is no codebook to learn and no auxiliary loss; ``aux_loss`` is 0. A token with a NaN coordinate has index
    -1 ("no code"; see ``_quantize``).
    """

    def __init__(self, levels: Sequence[int], dim: int | None = None) -> None:
        super().__init__()
        levels = [int(level) for level in levels]
        if not levels or min(levels) < 2:
            raise ValueError(f"FSQ levels must be a non-empty list of integers >= 2, got {levels}")
        if max(levels) > MAX_LEVEL:
            raise ValueError(f"FSQ levels must be at most {MAX_LEVEL} (the bound's 1 + 1e-3 margin would round "
                             f"saturated values past the grid), got {levels}")
        self.levels = levels
        self.dim = dim if dim is not None else len(levels)
        self.label = f"FSQ{self.levels}"
        num_dims = len(levels)
        self.project_in = nn.Linear(self.dim, num_dims) if self.dim != num_dims else nn.Identity()
        self.project_out = nn.Linear(num_dims, self.dim) if self.dim != num_dims else nn.Identity()
        level_tensor = torch.tensor(levels, dtype=torch.long)
        basis = torch.cumprod(torch.tensor([1] + levels[:-1], dtype=torch.long), 0)
        # Derived from ``levels``: not saved (checkpoints keep only real state).
        self.register_buffer("_levels", level_tensor, persistent=False)
        self.register_buffer("_basis", basis, persistent=False)
        self.register_buffer("_half_width", level_tensor // 2, persistent=False)
        # Indices as one float matrix-vector product: exact while every partial sum is an integer below 2**24.
        self._float_indices = math.prod(levels) <= 2 ** 24
        self._register_float_constants()
        self._init_usage(math.prod(levels))

    def _register_float_constants(self) -> None:
        """The float32 constants of ``bound`` and the indices, computed on the CPU from ``levels`` and put on the
        device of ``_levels``. They are computed once instead of in every forward (a dozen tiny kernels that cost more
        than the quantization itself at a few thousand tokens)."""
        level_tensor = torch.tensor(self.levels, dtype=torch.long)
        basis = torch.cumprod(torch.tensor([1] + self.levels[:-1], dtype=torch.long), 0)
        eps = 1e-3
        levels_f = level_tensor.float()
        half_l = (levels_f - 1) * (1 + eps) / 2
        offset = torch.where(level_tensor % 2 == 0, 0.5, 0.0).float()
        half_width_f = (level_tensor // 2).float()
        constants = {"_bound_half_l": half_l, "_bound_offset": offset, "_bound_shift": torch.atanh(offset / half_l),
                     "_half_width_f": half_width_f, "_basis_f": basis.float(),
                     "_index_offset": (half_width_f * basis.float()).sum()}
        for name, value in constants.items():
            self.register_buffer(name, value.to(self._levels.device), persistent=False)

    def _apply(self, fn, recurse=True):
        # A cast of the module (``.to(torch.bfloat16)``, ``.half()``) casts float buffers too, and bfloat16 rounds
        # these constants (a basis of 4375, a bound of 3.5035): the grid and the indices would change with them.
        # The projections take the new dtype; the constants are made again in float32 on the new device.
        super()._apply(fn, recurse)
        if self._bound_half_l.dtype != torch.float32:
            self._register_float_constants()
        return self

    @property
    def codebook_size(self) -> int:
        return math.prod(self.levels)

    @property
    def num_dims(self) -> int:
        """L, the number of FSQ coordinates per token."""
        return len(self.levels)

    def _check_codes(self, codes: Tensor) -> None:
        if codes.shape[-1] != self.num_dims:
            raise ValueError(f"FSQ{self.levels}: expected coordinates with last dim {self.num_dims}, "
                             f"got shape {tuple(codes.shape)}")

    def bound(self, h: Tensor) -> Tensor:
        """Squash ``h (..., L)`` into ``(-half_l - offset, half_l - offset)`` (about ``(-levels/2, levels/2)``; for
        L = 8, (-4.0035, 3.0035)) so that rounding yields exactly ``levels`` values.

        ``tanh(h + shift) * half_l - offset`` with ``half_l = (L-1)(1+eps)/2``, ``offset = 0.5`` for even L (so the
        integer grid ``{-L/2 .. L/2-1}`` is reachable) and ``shift = atanh(offset / half_l)`` (so h = 0 maps to 0).
        The paper's appendix code has tan and (1-eps); atanh is the correct inverse and (1+eps) keeps L = 2 finite
        (eps = 1e-3; the constants are buffers computed in ``__init__``).
        """
        half_l, offset, shift = self._bound_half_l, self._bound_offset, self._bound_shift
        if h.dtype != half_l.dtype:
            half_l, offset, shift = half_l.to(h.dtype), offset.to(h.dtype), shift.to(h.dtype)
        return torch.tanh(h + shift) * half_l - offset

    def _quantize(self, h: Tensor) -> tuple[Tensor, Tensor]:
        """``h (..., L)`` float32 -> (coordinates with straight-through gradient, indices ``(...)`` long).

        The indices come from the rounded integers themselves, so no second rounding of ``codes * half_width`` is
        needed (it gives the same integers). A token with a NaN coordinate (a diverged encoder) has no grid point: its
        index is -1 and its codes NaN, so the NaN reaches the loss (where training stops with a report) instead of an
        arbitrary integer reaching the usage statistics (an IndexError there)."""
        bounded = self.bound(h)
        rounded = bounded.detach().round()
        codes = (bounded + (rounded - bounded).detach()) / self._half_width_f
        if self._float_indices:
            rows = rounded.reshape(-1, self.num_dims)
            # The offset expanded to the rows: addmv returns the bare 0-dim input for an empty matrix, which the view
            # below cannot shape to an empty batch.
            flat = torch.addmv(self._index_offset.expand(rows.shape[0]), rows, self._basis_f)
            # A NaN coordinate makes the whole sum NaN: -1 comes in the same pass as the cast.
            return codes, flat.nan_to_num(nan=-1.0).long().view(rounded.shape[:-1])
        indices = ((rounded + self._half_width_f).long() * self._basis).sum(-1)
        return codes, indices.masked_fill(rounded.isnan().any(-1), -1)

    def quantize_latent(self, h: Tensor) -> Tensor:
        """FSQ coordinates ``(..., L)`` on the grid in [-1, 1] for pre-quantization values ``h (..., L)``
        (after ``project_in``); straight-through gradient."""
        self._check_codes(h)
        with fp32_region(h):
            return round_ste(self.bound(h.float())) / self._half_width_f

    def codes_to_indices(self, codes: Tensor) -> Tensor:
        """Grid coordinates ``(..., L)`` -> indices ``(...)`` long. Each level index is rounded before combining (the
        MotionMillion copy omits the rounding, which can be off by one for levels whose half width is 3 or 7)."""
        self._check_codes(codes)
        level_idx = (codes.float() * self._half_width_f + self._half_width_f).round().long()
        return (level_idx * self._basis).sum(-1)

    def indices_to_codes(self, indices: Tensor) -> Tensor:
        """Indices ``(...)`` -> grid coordinates ``(..., L)`` float32."""
        self._check_index_range(indices)
        level_idx = (indices[..., None] // self._basis) % self._levels
        return (level_idx - self._half_width).float() / self._half_width.float()

    def grid_values(self) -> list[Tensor]:
        """For each of the L dims, the ``levels[i]`` allowed coordinate values (ascending)."""
        return [(torch.arange(level) - level // 2).float() / (level // 2) for level in self.levels]

    def snap_to_grid(self, coords: Tensor) -> Tensor:
        """Nearest grid point per dim for arbitrary coordinates ``(..., L)`` (e.g. a generator's continuous output);
        values outside the grid clamp to its ends. Idempotent."""
        self._check_codes(coords)
        level_idx = (coords.float() * self._half_width + self._half_width).round()
        level_idx = torch.minimum(level_idx.clamp_min(0), (self._levels - 1).float())
        return (level_idx - self._half_width) / self._half_width.float()

    def forward(self, z: Tensor) -> QuantizerOutput:
        """``z (B, N, dim)`` -> ``QuantizerOutput`` (``aux_loss`` 0; perplexity from the counts of the codes present,
        never a dense one-hot of K x tokens; absent codes add nothing to it)."""
        codes, indices = self.encode_codes(z)
        z_q = self.codes_to_latents(codes)
        return QuantizerOutput(z_q.to(z.dtype), indices, z.new_zeros((), dtype=torch.float32),
                               self._record_present_codes(indices))
