"""1D-convolutional motion encoder and decoder (the T2M-GPT / MoMask / MARDM / MotionMillion backbone).

Module indices follow the reference implementations exactly, so their state_dict keys (``encoder.model.N...``,
``decoder.model.N...``) load without renaming:

Encoder: ``model.0`` conv k (D -> H), ``model.1`` ReLU, ``model.2 .. 1+down_t`` = [strided conv k=2s s=s, Resnet1D],
``model.2+down_t`` conv k (H -> C).
Decoder: ``model.0`` conv k (C -> H), ``model.1`` ReLU, ``model.2 .. 1+down_t`` = [Resnet1D, nearest upsample,
conv 3], then conv k, ReLU, conv k (H -> D).

Public tensors are ``(B, T, D)`` for motion and ``(B, N, C)`` for latents; the convolutions transpose inside.
"""

from __future__ import annotations

import numbers

import torch
from torch import Tensor, nn

NORMS = (None, "LN", "GN", "BN")
ACTIVATIONS = ("relu", "silu", "gelu")


def make_activation(name: str) -> nn.Module:
    """``relu`` | ``silu`` | ``gelu`` as a module; anything else is a ValueError (the references crash later)."""
    if name == "relu":
        return nn.ReLU()
    if name == "silu":
        return nn.SiLU()
    if name == "gelu":
        return nn.GELU()
    raise ValueError(f"activation must be one of {ACTIVATIONS}, got {name!r}")


def normalize_norm_name(norm: str | None) -> str | None:
    """Map the spellings found in option dumps (``None``, ``"None"``, ``"none"``) to None; validate the rest."""
    if norm is None or str(norm).lower() == "none":
        return None
    if norm not in NORMS:
        raise ValueError(f"norm must be one of {NORMS}, got {norm!r}")
    return norm


def check_is_tensor(x: object, who: str, what: str, shape: str, convert: str) -> None:
    """TypeError naming ``who`` and ``what`` unless ``x`` is a torch tensor: a numpy array has ``ndim`` and ``shape``
    but fails further on with an AttributeError (no ``is_floating_point``) that names neither. ``shape`` is the one
    expected, ``convert`` how to make the tensor from a numpy array."""
    if not isinstance(x, Tensor):
        raise TypeError(f"{who}: {what} must be a torch tensor of shape {shape}, got {type(x).__module__}."
                        f"{type(x).__qualname__}; convert a numpy array with {convert}")


def check_input_dtype(x: Tensor, weight: Tensor, who: str, what: str) -> None:
    """TypeError naming ``who`` and ``what`` unless ``x`` is floating point and of ``weight``'s dtype (the
    convolutions would fail with "Input type (long int) and bias type (float) should be the same"). Under autocast
    the convolutions cast float16, bfloat16 and float32 inputs, so only float64 (which autocast never casts) has to
    match."""
    if not x.is_floating_point():
        raise TypeError(f"{who}: {what} must be a floating-point tensor, got {x.dtype}; convert it with .float()")
    if x.dtype != weight.dtype and (x.dtype == torch.float64 or not torch.is_autocast_enabled(x.device.type)):
        raise TypeError(f"{who}: {what} is {x.dtype} but the model's weights are {weight.dtype}; convert it with "
                        f".to({weight.dtype}) (e.g. .float() for a float64 array from numpy)")


GROUP_NORM_GROUPS = 32  # the references' GroupNorm


class _ChannelLayerNorm(nn.LayerNorm):
    """LayerNorm over the channel axis of a ``(B, H, T)`` tensor (keys ``weight``/``bias`` as ``nn.LayerNorm``)."""

    def forward(self, x: Tensor) -> Tensor:
        return super().forward(x.transpose(1, 2)).transpose(1, 2)


def make_norm(norm: str | None, channels: int) -> nn.Module:
    """Normalisation over ``channels`` of a ``(B, H, T)`` tensor; eps values as the references use them."""
    norm = normalize_norm_name(norm)
    if norm == "LN":
        return _ChannelLayerNorm(channels)
    if norm == "GN":
        if channels % GROUP_NORM_GROUPS:
            raise ValueError(f"norm 'GN' normalises {GROUP_NORM_GROUPS} groups of channels, so the blocks' width "
                             f"(--width) must be a multiple of {GROUP_NORM_GROUPS}: got {channels}")
        return nn.GroupNorm(num_groups=GROUP_NORM_GROUPS, num_channels=channels, eps=1e-6, affine=True)
    if norm == "BN":
        return nn.BatchNorm1d(channels, eps=1e-6, affine=True)
    return nn.Identity()


class ResConv1DBlock(nn.Module):
    """Pre-activation residual block: ``x + dropout(conv1x1(act(norm(conv_k_dilated(act(norm(x)))))))``.

    Shapes: ``(B, H, T) -> (B, H, T)``. ``padding = dilation * (kernel_size - 1) // 2`` keeps T.
    """

    def __init__(self, n_in: int, n_state: int, dilation: int = 1, activation: str = "relu",
                 norm: str | None = None, dropout: float = 0.0, kernel_size: int = 3) -> None:
        super().__init__()
        self.norm1 = make_norm(norm, n_in)
        self.norm2 = make_norm(norm, n_state)
        self.activation1 = make_activation(activation)
        self.activation2 = make_activation(activation)
        self.conv1 = nn.Conv1d(n_in, n_state, kernel_size, 1, dilation * (kernel_size - 1) // 2, dilation)
        self.conv2 = nn.Conv1d(n_state, n_in, 1, 1, 0)
        # MoMask and MARDM put Dropout(0.2) after conv2 (train mode only); T2M-GPT has none.
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        h = self.conv1(self.activation1(self.norm1(x)))
        h = self.conv2(self.activation2(self.norm2(h)))
        return x + self.dropout(h)


class Resnet1D(nn.Module):
    """``depth`` residual blocks with dilations ``rate**d``.

    ``reverse_dilation`` defaults to True and the references never override it, so the encoder as well as the decoder
    runs the largest dilation first (e.g. 9, 3, 1); checkpoints depend on this order.
    """

    def __init__(self, n_in: int, n_depth: int, dilation_growth_rate: int = 1, reverse_dilation: bool = True,
                 activation: str = "relu", norm: str | None = None, dropout: float = 0.0,
                 kernel_size: int = 3) -> None:
        super().__init__()
        blocks = [ResConv1DBlock(n_in, n_in, dilation=dilation_growth_rate ** d, activation=activation, norm=norm,
                                 dropout=dropout, kernel_size=kernel_size) for d in range(n_depth)]
        if reverse_dilation:
            blocks = blocks[::-1]
        self.model = nn.Sequential(*blocks)

    def forward(self, x: Tensor) -> Tensor:
        return self.model(x)


def check_dilation_growth_rate(rate: int) -> None:
    """ValueError unless ``rate`` >= 1: the residual blocks' dilations are its powers (``rate**d``), and a dilation
    of 0 or below makes the convolution fail only at the first forward pass."""
    if isinstance(rate, bool) or not isinstance(rate, numbers.Integral) or rate < 1:
        raise ValueError(f"dilation_growth_rate must be a whole number >= 1 (the residual dilations are its powers, "
                         f"rate**d), got {rate!r}")


def _check_conv_args(down_t: int, stride_t: int, depth: int, kernel_size: int, dilation_growth_rate: int) -> None:
    check_dilation_growth_rate(dilation_growth_rate)
    if down_t < 0 or stride_t < 1 or depth < 1:
        raise ValueError(f"need down_t >= 0, stride_t >= 1, depth >= 1; got down_t={down_t}, stride_t={stride_t}, "
                         f"depth={depth}")
    if kernel_size < 1 or kernel_size % 2 == 0:
        raise ValueError(f"kernel_size must be odd (same-length convolutions), got {kernel_size}")
    # The strided conv has kernel 2s and padding s // 2 (the references'), which gives T / s frames only for even s.
    if down_t > 0 and stride_t % 2:
        raise ValueError(f"stride_t must be even when down_t > 0 (the strided conv keeps T / stride_t frames only "
                         f"for even strides), got stride_t={stride_t}")


class Encoder(nn.Module):
    """Motion ``(B, T, D)`` -> latents ``(B, T // stride_t**down_t, C)``.

    The stem activation is always ReLU, as in every reference; ``activation`` applies inside the residual blocks.
    """

    def __init__(self, input_emb_width: int = 263, output_emb_width: int = 512, down_t: int = 2, stride_t: int = 2,
                 width: int = 512, depth: int = 3, dilation_growth_rate: int = 3, activation: str = "relu",
                 norm: str | None = None, dropout: float = 0.0, kernel_size: int = 3) -> None:
        super().__init__()
        _check_conv_args(down_t, stride_t, depth, kernel_size, dilation_growth_rate)
        pad = (kernel_size - 1) // 2
        blocks: list[nn.Module] = [nn.Conv1d(input_emb_width, width, kernel_size, 1, pad), nn.ReLU()]
        for _ in range(down_t):
            blocks.append(nn.Sequential(
                nn.Conv1d(width, width, 2 * stride_t, stride_t, stride_t // 2),
                Resnet1D(width, depth, dilation_growth_rate, activation=activation, norm=norm, dropout=dropout,
                         kernel_size=kernel_size),
            ))
        blocks.append(nn.Conv1d(width, output_emb_width, kernel_size, 1, pad))
        self.model = nn.Sequential(*blocks)

    def forward(self, motion: Tensor) -> Tensor:
        """``(B, T, D) -> (B, N, C)``."""
        return self.model(motion.transpose(1, 2)).transpose(1, 2)


class Decoder(nn.Module):
    """Latents ``(B, N, C)`` -> motion ``(B, N * stride_t**down_t, D)``.

    The conv after each upsampling has kernel 3 whatever ``kernel_size`` is (as MotionMillion builds it). Upsampling
    uses ``stride_t`` (the references hard-code 2, which only matches their stride 2).
    """

    def __init__(self, input_emb_width: int = 263, output_emb_width: int = 512, down_t: int = 2, stride_t: int = 2,
                 width: int = 512, depth: int = 3, dilation_growth_rate: int = 3, activation: str = "relu",
                 norm: str | None = None, dropout: float = 0.0, kernel_size: int = 3) -> None:
        super().__init__()
        _check_conv_args(down_t, stride_t, depth, kernel_size, dilation_growth_rate)
        pad = (kernel_size - 1) // 2
        blocks: list[nn.Module] = [nn.Conv1d(output_emb_width, width, kernel_size, 1, pad), nn.ReLU()]
        for _ in range(down_t):
            blocks.append(nn.Sequential(
                Resnet1D(width, depth, dilation_growth_rate, reverse_dilation=True, activation=activation, norm=norm,
                         dropout=dropout, kernel_size=kernel_size),
                nn.Upsample(scale_factor=stride_t, mode="nearest"),
                nn.Conv1d(width, width, 3, 1, 1),
            ))
        blocks += [nn.Conv1d(width, width, kernel_size, 1, pad), nn.ReLU(),
                   nn.Conv1d(width, input_emb_width, kernel_size, 1, pad)]
        self.model = nn.Sequential(*blocks)

    def forward(self, latents: Tensor) -> Tensor:
        """``(B, N, C) -> (B, T, D)``."""
        return self.model(latents.transpose(1, 2)).transpose(1, 2)

