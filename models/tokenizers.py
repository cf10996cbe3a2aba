"""Motion tokenizers: conv encoder -> (quantizer) -> conv decoder, and their registries.

Every model takes motion ``(B, T, D)`` (T a multiple of ``unit_length = stride_t ** down_t``) and offers
``forward(motion) -> TokenizerOutput``, ``encode(motion)`` (indices, or latents for the continuous AE), ``decode``,
and the continuous ``encode_latent`` / ``decode_latent`` around the quantizer. ``model_args`` holds the constructor
keywords as plain values; checkpoints store it with the registry name so loaders rebuild the model without flags.

Families:
- ``AE`` (MARDM's continuous autoencoder, registry ``AE_Model``).
- ``FSQAE``: encoder -> C -> Linear to L -> FSQ -> Linear to C -> decoder (``FSQ_AE_*``; MotionMillion's tokenizer).
- ``LFQAE``: the same with lookup-free quantization to d = log2(K) signs (``LFQ_AE*``; MAGVIT-v2's quantizer).
- ``VQVAE``: one codebook (T2M-GPT; ``VQ_AE_Model`` is the VQ ablation of the FSQ autoencoders).
- ``RVQVAE``: residual VQ (MoMask).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any, NamedTuple

from torch import Tensor, nn

from models.encdec import Decoder, Encoder, check_input_dtype, check_is_tensor, normalize_norm_name
from models.fsq import FSQ
from models.lfq import LFQ
from models.part_aware import PART_AWARE_MODELS
from models.quantizers import (
    GridQuantizer,
    QuantizeEMA,
    QuantizeEMAReset,
    QuantizeOrig,
    Quantizer,
    QuantizeReset,
)
from models.residual_vq import ResidualVQ


class TokenizerOutput(NamedTuple):
    """``recon (B, T, D)``, ``aux_loss ()`` (commitment; LFQ: its weighted entropy penalty; 0 for AE/FSQ),
    ``perplexity ()`` (0 for the AE) and ``indices_or_latents``: ``(B, N)`` / ``(B, N, Q)`` long indices, or
    ``(B, N, C)`` latents for the AE."""

    recon: Tensor
    aux_loss: Tensor
    perplexity: Tensor
    indices_or_latents: Tensor


class GridEncoding(NamedTuple):
    """``latent (B, N, C)``: the quantized latent the decoder consumes (``project_out(coords)``);
    ``coords (B, N, L)``: grid coordinates (FSQ: in [-1, 1]; LFQ: ``±codebook_scale``, L = d); ``indices (B, N)``."""

    latent: Tensor
    coords: Tensor
    indices: Tensor


FSQEncoding = GridEncoding  # the name FSQ-MARDM code has used


def _plain_args(local_vars: dict[str, Any]) -> dict[str, Any]:
    """Constructor keywords as plain values (tuples become lists) for ``model_args``."""
    args = {k: v for k, v in local_vars.items() if k not in ("self", "__class__")}
    return {k: list(v) if isinstance(v, tuple) else v for k, v in args.items()}


class ConvAutoencoder(nn.Module):
    """Encoder/decoder pair shared by every tokenizer; ``latent_dim`` C is the encoder output width."""

    kind = "ae"

    def __init__(self, input_width: int, latent_dim: int, down_t: int, stride_t: int, width: int, depth: int,
                 dilation_growth_rate: int, activation: str, norm: str | None, dropout: float,
                 kernel_size: int) -> None:
        super().__init__()
        for key, value in dict(width=width, latent_dim=latent_dim).items():
            # torch builds a convolution of no channels without a word and fails only at the first forward pass
            # (after a training run has written its step-0 checkpoint), or on a negative one naming no argument.
            if value < 1:
                raise ValueError(f"{type(self).__name__}: {key} must be >= 1, got {value}")
        norm = normalize_norm_name(norm)
        self.input_width = input_width
        self.latent_dim = latent_dim
        self.unit_length = stride_t ** down_t
        conv = dict(down_t=down_t, stride_t=stride_t, width=width, depth=depth,
                    dilation_growth_rate=dilation_growth_rate, activation=activation, norm=norm, dropout=dropout,
                    kernel_size=kernel_size)
        self.encoder = Encoder(input_width, latent_dim, **conv)
        self.decoder = Decoder(input_width, latent_dim, **conv)

    def _check_motion(self, motion: Tensor) -> None:
        name = type(self).__name__
        check_is_tensor(motion, name, "motion", f"(B, T, {self.input_width})", "torch.from_numpy(motion).float()")
        if motion.ndim != 3 or motion.shape[-1] != self.input_width:
            raise ValueError(f"{name}: expected motion of shape (B, T, {self.input_width}), got {tuple(motion.shape)}")
        check_input_dtype(motion, self.encoder.model[0].weight, name, "motion")
        frames = motion.shape[1]
        if frames < self.unit_length or frames % self.unit_length:
            raise ValueError(f"{name}: T={frames} frames is not a positive multiple of the downsampling factor "
                             f"{self.unit_length}; crop or pad the motion first")

    def encode_latent(self, motion: Tensor) -> Tensor:
        """Continuous encoder output: ``(B, T, D) -> (B, N, C)``."""
        self._check_motion(motion)
        return self.encoder(motion)

    def decode_latent(self, latents: Tensor) -> Tensor:
        """``(B, N, C) -> (B, N * unit_length, D)``."""
        check_is_tensor(latents, type(self).__name__, "latents", f"(B, N, {self.latent_dim})",
                        "torch.from_numpy(latents).float()")
        if latents.ndim != 3 or latents.shape[-1] != self.latent_dim:
            raise ValueError(f"{type(self).__name__}: expected latents of shape (B, N, {self.latent_dim}), "
                             f"got {tuple(latents.shape)}")
        if latents.shape[1] == 0:
            raise ValueError(f"{type(self).__name__}: latents of shape {tuple(latents.shape)} hold no tokens; the "
                             f"decoder needs at least one (N >= 1)")
        check_input_dtype(latents, self.decoder.model[0].weight, type(self).__name__, "latents")
        return self.decoder(latents)


class AE(ConvAutoencoder):
    """MARDM's continuous autoencoder (no quantizer, no KL, no latent scaling). Defaults: the released
    ``AE_Model`` (67-dim input, 512-wide, 512-dim latent, Dropout(0.2) in the residual blocks)."""

    def __init__(self, input_width: int = 67, output_emb_width: int = 512, down_t: int = 2, stride_t: int = 2,
                 width: int = 512, depth: int = 3, dilation_growth_rate: int = 3, activation: str = "relu",
                 norm: str | None = None, dropout: float = 0.2, kernel_size: int = 3) -> None:
        self_args = _plain_args(locals())
        super().__init__(input_width, output_emb_width, down_t, stride_t, width, depth, dilation_growth_rate,
                         activation, norm, dropout, kernel_size)
        self.model_args = self_args

    def forward(self, motion: Tensor) -> TokenizerOutput:
        """``(B, T, D)`` -> reconstruction and the latents ``(B, N, C)``; no auxiliary loss."""
        latents = self.encode_latent(motion)
        zero = latents.new_zeros(())
        return TokenizerOutput(self.decode_latent(latents), zero, zero, latents)

    def encode(self, motion: Tensor) -> Tensor:
        """``(B, T, D) -> (B, N, C)`` float latents."""
        return self.encode_latent(motion)

    def decode(self, latents: Tensor) -> Tensor:
        """``(B, N, C) -> (B, T, D)``."""
        return self.decode_latent(latents)


class QuantizedTokenizer(ConvAutoencoder):
    """Encoder -> ``self.quantizer`` -> decoder; subclasses only choose the quantizer."""

    quantizer: Quantizer
    index_ranks: tuple[int, ...] = (2,)  # the ranks of indices ``decode`` takes

    @property
    def codebook_size(self) -> int:
        """K (per layer for RVQ)."""
        return self.quantizer.codebook_size

    @property
    def index_shape(self) -> str:
        """The shape of the indices ``decode`` takes, for messages."""
        return "(B, N)"

    def forward(self, motion: Tensor) -> TokenizerOutput:
        """``(B, T, D)`` -> reconstruction, quantizer loss and perplexity, indices."""
        out = self.quantizer(self.encode_latent(motion))
        return TokenizerOutput(self.decode_latent(out.z_q), out.aux_loss, out.perplexity, out.indices)

    def encode(self, motion: Tensor) -> Tensor:
        """``(B, T, D)`` -> indices ``(B, N)`` (``(B, N, Q)`` for RVQ); deterministic, no codebook update."""
        return self.quantizer.quantize(self.encode_latent(motion))

    def decode(self, indices: Tensor) -> Tensor:
        """Indices ``(B, N)`` (``(B, N, Q)`` for RVQ) -> motion ``(B, T, D)``."""
        # Before the lookup: indices of another rank look up latents of another rank, and the error would name those.
        check_is_tensor(indices, type(self).__name__, "indices", self.index_shape, "torch.from_numpy(indices).long()")
        if indices.ndim not in self.index_ranks:
            raise ValueError(f"{type(self).__name__}: expected indices of shape {self.index_shape}, got "
                             f"{tuple(indices.shape)}")
        return self.decode_latent(self.quantizer.indices_to_latents(indices))


QUANTIZER_TYPES = ("ema_reset", "ema", "reset", "orig")


class VQVAE(QuantizedTokenizer):
    """Single-codebook VQ-VAE (T2M-GPT). Defaults: the T2M-GPT README setting (263-dim, 512 codes of dim 512,
    down_t 2, EMA-reset codebook with mu 0.99, no dropout). ``quantizer_type`` picks among the T2M-GPT quantizers;
    ``beta`` applies to ``orig`` only, ``kmeans_init`` / ``kmeans_iters`` (codebook initialisation by k-means on the
    first batch) to the EMA and reset codebooks. ``rotation_trick`` replaces the straight-through gradient."""

    kind = "vq"

    def __init__(self, input_width: int = 263, nb_code: int = 512, code_dim: int = 512, down_t: int = 2,
                 stride_t: int = 2, width: int = 512, depth: int = 3, dilation_growth_rate: int = 3,
                 activation: str = "relu", norm: str | None = None, dropout: float = 0.0, kernel_size: int = 3,
                 quantizer_type: str = "ema_reset", mu: float = 0.99, beta: float = 1.0, kmeans_init: bool = False,
                 kmeans_iters: int = 10, rotation_trick: bool = False) -> None:
        self_args = _plain_args(locals())
        super().__init__(input_width, code_dim, down_t, stride_t, width, depth, dilation_growth_rate, activation,
                         norm, dropout, kernel_size)
        self.model_args = self_args
        if quantizer_type == "orig":
            if kmeans_init:
                raise ValueError("kmeans_init initialises the EMA and reset codebooks; quantizer_type 'orig' learns "
                                 "its codebook by gradient from a uniform initialisation")
            self.quantizer = QuantizeOrig(nb_code, code_dim, beta, rotation_trick=rotation_trick)
        elif quantizer_type in QUANTIZER_TYPES:
            cls = {"ema_reset": QuantizeEMAReset, "ema": QuantizeEMA, "reset": QuantizeReset}[quantizer_type]
            self.quantizer = cls(nb_code, code_dim, mu, kmeans_init=kmeans_init, kmeans_iters=kmeans_iters,
                                 rotation_trick=rotation_trick)
        else:
            raise ValueError(f"quantizer_type must be one of {QUANTIZER_TYPES}, got {quantizer_type!r}")


class RVQVAE(QuantizedTokenizer):
    """Residual VQ-VAE (MoMask). Defaults: the released ``rvq_nq6_dc512_nc512_noshare_qdp0.2`` (6 layers of 512
    codes, quantize dropout 0.2, Gumbel sampling at temperature 0.5 in training, Dropout(0.2) in the blocks).
    ``kmeans_init`` / ``kmeans_iters`` and ``rotation_trick`` apply to every layer (``ResidualVQ``)."""

    kind = "rvq"

    def __init__(self, input_width: int = 263, nb_code: int = 512, code_dim: int = 512, num_quantizers: int = 6,
                 shared_codebook: bool = False, quantize_dropout_prob: float = 0.2,
                 sample_codebook_temp: float = 0.5, mu: float = 0.99, down_t: int = 2, stride_t: int = 2,
                 width: int = 512, depth: int = 3, dilation_growth_rate: int = 3, activation: str = "relu",
                 norm: str | None = None, dropout: float = 0.2, kernel_size: int = 3, kmeans_init: bool = False,
                 kmeans_iters: int = 10, rotation_trick: bool = False) -> None:
        self_args = _plain_args(locals())
        super().__init__(input_width, code_dim, down_t, stride_t, width, depth, dilation_growth_rate, activation,
                         norm, dropout, kernel_size)
        self.model_args = self_args
        self.quantizer = ResidualVQ(num_quantizers, nb_code, code_dim, mu=mu, shared_codebook=shared_codebook,
                                    quantize_dropout_prob=quantize_dropout_prob,
                                    sample_codebook_temp=sample_codebook_temp, kmeans_init=kmeans_init,
                                    kmeans_iters=kmeans_iters, rotation_trick=rotation_trick)

    index_ranks = (2, 3)

    @property
    def num_quantizers(self) -> int:
        """Q, the number of residual layers."""
        return self.quantizer.num_quantizers

    @property
    def index_shape(self) -> str:
        return f"(B, N, Q) with Q <= {self.num_quantizers} layers (or (B, N): the first layer)"


class GridTokenizer(QuantizedTokenizer):
    """A tokenizer whose quantizer snaps to a fixed grid (FSQ, LFQ): a generator may predict the L grid coordinates
    of each token instead of its index. ``encode_with_grid_output`` gives its targets, ``decode_from_grid`` turns
    (snapped) predictions back into motion."""

    quantizer: GridQuantizer

    @property
    def grid_dim(self) -> int:
        """L, the number of grid coordinates per token."""
        return self.quantizer.num_dims

    def encode_with_grid_output(self, motion: Tensor) -> GridEncoding:
        """``(B, T, D)`` -> ``GridEncoding(latent (B, N, C), coords (B, N, L), indices (B, N))``."""
        coords, indices = self.quantizer.encode_codes(self.encode_latent(motion))
        return GridEncoding(self.quantizer.codes_to_latents(coords), coords, indices)

    def grid_to_latent(self, coords: Tensor) -> Tensor:
        """Grid coordinates ``(B, N, L)`` -> decoder-input latents ``(B, N, C)``."""
        return self.quantizer.codes_to_latents(coords)

    def decode_from_grid(self, coords: Tensor, snap: bool = False) -> Tensor:
        """Coordinates ``(B, N, L)`` -> motion ``(B, T, D)``; ``snap`` first moves them to the nearest grid point
        (for a generator's continuous predictions)."""
        if snap:
            coords = self.quantizer.snap_to_grid(coords)
        return self.decode_latent(self.grid_to_latent(coords))


class FSQAE(GridTokenizer):
    """FSQ autoencoder: encoder -> ``code_dim`` -> Linear to L = len(levels) -> FSQ -> Linear to ``code_dim`` ->
    decoder. The projections are the quantizer's ``project_in`` / ``project_out`` (MotionMillion's key layout).

    A generator may predict the L-dim grid coordinates instead of indices (``GridTokenizer``; the ``fsq_*`` names
    are those FSQ-MARDM code uses).
    """

    kind = "fsq"

    def __init__(self, input_width: int = 67, levels: Sequence[int] = (8, 8, 8, 5, 5, 5), code_dim: int = 512,
                 down_t: int = 2, stride_t: int = 2, width: int = 512, depth: int = 3, dilation_growth_rate: int = 3,
                 activation: str = "relu", norm: str | None = None, dropout: float = 0.2,
                 kernel_size: int = 3) -> None:
        self_args = _plain_args(locals())
        self_args["levels"] = [int(level) for level in levels]
        super().__init__(input_width, code_dim, down_t, stride_t, width, depth, dilation_growth_rate, activation,
                         norm, dropout, kernel_size)
        self.model_args = self_args
        self.quantizer = FSQ(levels, dim=code_dim)

    fsq_dim = GridTokenizer.grid_dim
    encode_with_fsq_output = GridTokenizer.encode_with_grid_output
    fsq_coords_to_latent = GridTokenizer.grid_to_latent
    decode_from_fsq = GridTokenizer.decode_from_grid


class LFQAE(GridTokenizer):
    """LFQ autoencoder: encoder -> ``code_dim`` -> Linear to d = log2(``nb_code``) -> sign quantization to
    ``±codebook_scale`` -> Linear to ``code_dim`` -> decoder (``models.lfq.LFQ``; MAGVIT-v2, arXiv:2310.05737).

    The quantizer's ``aux_loss`` is its weighted entropy penalty (and commitment term): ``entropy_loss_weight``,
    ``diversity_gamma``, ``commitment_loss_weight``, ``inv_temperature`` and ``dense_entropy_max_dim`` are LFQ's own
    (defaults: vector-quantize-pytorch's LFQ), so the training objective adds it unscaled. A generator may predict
    the d signs as grid coordinates (LFQ-MARDM) or the indices (MoMask's transformers).
    """

    kind = "lfq"

    def __init__(self, input_width: int = 67, nb_code: int = 8192, code_dim: int = 512,
                 entropy_loss_weight: float = 0.1, commitment_loss_weight: float = 0.0, diversity_gamma: float = 1.0,
                 codebook_scale: float = 1.0, inv_temperature: float = 100.0, dense_entropy_max_dim: int = 14,
                 down_t: int = 2, stride_t: int = 2, width: int = 512, depth: int = 3, dilation_growth_rate: int = 3,
                 activation: str = "relu", norm: str | None = None, dropout: float = 0.2,
                 kernel_size: int = 3) -> None:
        self_args = _plain_args(locals())
        super().__init__(input_width, code_dim, down_t, stride_t, width, depth, dilation_growth_rate, activation,
                         norm, dropout, kernel_size)
        self.model_args = self_args
        self.quantizer = LFQ(nb_code, dim=code_dim, entropy_loss_weight=entropy_loss_weight,
                             commitment_loss_weight=commitment_loss_weight, diversity_gamma=diversity_gamma,
                             codebook_scale=codebook_scale, inv_temperature=inv_temperature,
                             dense_entropy_max_dim=dense_entropy_max_dim)


# ----------------------------------------------------------------------------------------------------------------------
# registries: a registered name is frozen once a checkpoint exists. ``*_Tiny`` variants are for tests.

_TINY_CONV = dict(width=32, depth=2)

AE_MODELS: dict[str, Callable[..., ConvAutoencoder]] = {
    "AE_Model": partial(AE),
    "AE_Tiny": partial(AE, output_emb_width=16, **_TINY_CONV),
    # The codebook size of FSQ is the product of the levels.
    "FSQ_AE_Small": partial(FSQAE, levels=[5, 5, 5, 5, 5]),  # 3,125 codes
    "FSQ_AE_Medium": partial(FSQAE, levels=[8, 5, 5, 5, 5]),  # 5,000 codes
    # 8*6*6*5*5*5 = 36,000 codes; the 21,600 sometimes quoted for this level set is not its product.
    "FSQ_AE_Large": partial(FSQAE, levels=[8, 6, 6, 5, 5, 5]),
    "FSQ_AE_XLarge": partial(FSQAE, levels=[8, 8, 8, 6, 5, 5]),  # 76,800 codes
    "FSQ_AE_High": partial(FSQAE, levels=[8, 8, 8, 5, 5, 5]),  # 64,000 codes (the FSQ paper's 2^16 setting)
    "FSQ_AE_Ultra": partial(FSQAE, levels=[8, 8, 8, 8, 5, 5]),  # 102,400 codes
    "FSQ_AE_Mega": partial(FSQAE, levels=[8, 8, 8, 8, 8, 5]),  # 163,840 codes
    "FSQ_AE_HighDim7": partial(FSQAE, levels=[7, 5, 5, 5, 5, 5, 5]),  # 109,375 codes
    "FSQ_AE_HighDim8": partial(FSQAE, levels=[5] * 8),  # 390,625 codes
    "FSQ_AE_Tiny": partial(FSQAE, levels=[8, 5, 5], code_dim=16, **_TINY_CONV),
    # LFQ (MAGVIT-v2) on the FSQ-MARDM backbone: 2^13 = 8,192 codes of 13 signs, the size of the smaller FSQ level
    # sets above, with the exact (tokens x K) codebook entropy still affordable at a 256-clip batch.
    "LFQ_AE": partial(LFQAE, nb_code=2 ** 13),
    "LFQ_AE_Tiny": partial(LFQAE, nb_code=2 ** 5, code_dim=16, **_TINY_CONV),
    # VQ ablation of the FSQ autoencoders: same backbone and input, one EMA-reset codebook.
    "VQ_AE_Model": partial(VQVAE, input_width=67, nb_code=512, code_dim=512, dropout=0.2),
    "VQ_AE_Tiny": partial(VQVAE, input_width=67, nb_code=32, code_dim=16, dropout=0.2, **_TINY_CONV),
}

VQ_MODELS: dict[str, Callable[..., ConvAutoencoder]] = {
    "VQVAE": partial(VQVAE),
    "VQVAE_Tiny": partial(VQVAE, nb_code=32, code_dim=16, **_TINY_CONV),
    "RVQVAE": partial(RVQVAE),
    "RVQVAE_Tiny": partial(RVQVAE, nb_code=32, code_dim=16, num_quantizers=3, **_TINY_CONV),
    # MotionMillion's released tokenizer: 272-dim, 2x downsampling, LayerNorm, 64,000 FSQ codes.
    "FSQ_MotionMillion": partial(FSQAE, input_width=272, levels=[8, 8, 8, 5, 5, 5], down_t=1, norm="LN",
                                 dropout=0.0),
    "FSQ_MotionMillion_Tiny": partial(FSQAE, input_width=272, levels=[8, 5, 5], code_dim=16, down_t=1, norm="LN",
                                      dropout=0.0, **_TINY_CONV),
}

# The conditional part-aware RVQ-VAE (models/part_aware.py) is trained by train_vq.py like the other VQ models.
TOKENIZERS: dict[str, Callable[..., nn.Module]] = {**AE_MODELS, **VQ_MODELS, **PART_AWARE_MODELS}


def build_tokenizer(name: str, **overrides: Any) -> ConvAutoencoder:
    """``TOKENIZERS[name](**overrides)`` with clear errors for an unknown name or keyword."""
    if name not in TOKENIZERS:
        raise ValueError(f"unknown tokenizer {name!r}; registered: {sorted(TOKENIZERS)}")
    factory = TOKENIZERS[name]
    target = getattr(factory, "func", factory)
    allowed = set(inspect.signature(target).parameters) - {"self"}
    unknown = sorted(set(overrides) - allowed)
    if unknown:
        raise ValueError(f"tokenizer {name!r} ({target.__name__}) has no arguments {unknown}; "
                         f"allowed: {sorted(allowed)}")
    return factory(**overrides)
