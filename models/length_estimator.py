"""Motion-length estimator (MoMask / MARDM): text embedding -> distribution over token lengths.

Class c means c tokens, i.e. c * unit_length frames (50 classes x 4 frames covers HumanML3D's 196-frame maximum).
The layer layout and the ``output.*`` parameter names follow MoMask's ``LengthEstimator`` so its ``estimator``
weights load unchanged when the text embedding has the same size.
"""

from __future__ import annotations

import torch
import torch.nn as nn

# The narrowest layer is hidden_dim // 4 wide: below 8 it has one feature, which a LayerNorm maps to its bias whatever
# the text (or none at all), so the estimator would predict the same lengths for every caption.
MIN_HIDDEN_DIM = 8


class LengthEstimator(nn.Module):
    """MLP text_dim -> 512 -> 256 -> 128 -> num_classes with LayerNorm + LeakyReLU(0.2) and dropout between stages.

    Args:
        text_dim: E, size of the text embedding (512 for CLIP, 384 for MiniLM).
        num_classes: number of token-length classes (50).
        hidden_dim: width of the first layer; later layers halve it (at least ``MIN_HIDDEN_DIM``, 8).
        dropout: dropout before the second and third linear layers.
    """

    def __init__(self, text_dim: int, num_classes: int = 50, hidden_dim: int = 512, dropout: float = 0.2) -> None:
        super().__init__()
        if hidden_dim < MIN_HIDDEN_DIM:
            raise ValueError(f"LengthEstimator: hidden_dim must be >= {MIN_HIDDEN_DIM} (the layers are hidden_dim, "
                             f"hidden_dim // 2 and hidden_dim // 4 wide, and one feature or none ignores the text), "
                             f"got {hidden_dim}")
        self.model_args = dict(text_dim=text_dim, num_classes=num_classes, hidden_dim=hidden_dim, dropout=dropout)
        self.num_classes = num_classes
        h = hidden_dim
        self.output = nn.Sequential(
            nn.Linear(text_dim, h), nn.LayerNorm(h), nn.LeakyReLU(0.2, inplace=True),
            nn.Dropout(dropout), nn.Linear(h, h // 2), nn.LayerNorm(h // 2), nn.LeakyReLU(0.2, inplace=True),
            nn.Dropout(dropout), nn.Linear(h // 2, h // 4), nn.LayerNorm(h // 4), nn.LeakyReLU(0.2, inplace=True),
            nn.Linear(h // 4, num_classes),
        )
        self.apply(self._init_weights)

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, std=0.02)
            nn.init.zeros_(module.bias)
        elif isinstance(module, nn.LayerNorm):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)

    def forward(self, text_emb: torch.Tensor) -> torch.Tensor:
        """text_emb (B, E) -> logits (B, num_classes)."""
        text_dim = self.model_args["text_dim"]
        if text_emb.ndim != 2 or text_emb.shape[1] != text_dim:
            # A 1-D embedding would pass the Linear layers and give (num_classes,) logits for a batch of one.
            raise ValueError(f"LengthEstimator: expected text_emb of shape (B, {text_dim}), "
                             f"got {tuple(text_emb.shape)}")
        if not text_emb.is_floating_point():
            raise TypeError(f"LengthEstimator: text_emb must be a floating-point tensor, got {text_emb.dtype}")
        return self.output(text_emb)


def lengths_to_classes(frames: torch.Tensor, unit_length: int, num_classes: int = 50) -> torch.Tensor:
    """Motion lengths in frames (B,) -> token-length classes frames // unit_length (B,) long.

    Raises ValueError for lengths outside [unit_length, num_classes * unit_length - 1] (classes 1..num_classes-1).
    """
    classes = torch.div(frames, unit_length, rounding_mode="floor").long()
    if classes.numel() and (int(classes.min()) < 1 or int(classes.max()) >= num_classes):
        raise ValueError(f"lengths_to_classes: frame lengths must give 1..{num_classes - 1} tokens of {unit_length} "
                         f"frames, got frames in [{int(frames.min())}, {int(frames.max())}]")
    return classes


def classes_to_lengths(classes: torch.Tensor, unit_length: int) -> torch.Tensor:
    """Token-length classes (B,) -> motion lengths in frames classes * unit_length (B,) long."""
    return classes.long() * unit_length


def sample_lengths(logits: torch.Tensor, temperature: float = 1.0,
                   generator: torch.Generator | None = None) -> torch.Tensor:
    """Draw token lengths (B,) from logits (B, num_classes); temperature 0 takes the arg-max.

    Class 0 (an empty motion) is never returned: its probability is set to zero before sampling. MoMask samples it
    like any other class, which yields zero-length motions.
    """
    if logits.ndim != 2:
        raise ValueError(f"sample_lengths: expected logits of shape (B, num_classes), got {tuple(logits.shape)}")
    logits = logits.float().clone()
    logits[:, 0] = float("-inf")
    if temperature == 0:
        return logits.argmax(dim=-1)
    if temperature < 0:
        raise ValueError(f"sample_lengths: temperature must be >= 0, got {temperature}")
    probs = torch.softmax(logits / temperature, dim=-1)
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)
