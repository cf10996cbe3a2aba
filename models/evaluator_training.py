"""The pieces that only training the Guo et al. evaluator needs (``train_evaluator.py``).

Stage 1 pretrains the movement encoder as the encoder half of ``MovementAutoencoder``; stage 2 trains the text and
motion encoders over the frozen movement encoder (``CoEmbedding``) with a contrastive hinge loss against shifted
negatives (``contrastive_loss``, ``draw_shift``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from models.evaluator import TextMotionEvaluator


class MovementConvDecoder(nn.Module):
    """Guo et al.'s movement decoder: two ConvTranspose1d(k4, s2, p1) + LeakyReLU(0.2), then a per-frame Linear.
    Movement latents (B, N, C) -> motion (B, 4N, D). Used only to pretrain the movement encoder."""

    def __init__(self, latent: int, hidden: int, dim_pose: int) -> None:
        super().__init__()
        self.main = nn.Sequential(nn.ConvTranspose1d(latent, hidden, 4, 2, 1), nn.LeakyReLU(0.2),
                                  nn.ConvTranspose1d(hidden, dim_pose, 4, 2, 1), nn.LeakyReLU(0.2))
        self.out_net = nn.Linear(dim_pose, dim_pose)

    def forward(self, latents: torch.Tensor) -> torch.Tensor:
        return self.out_net(self.main(latents.transpose(1, 2)).transpose(1, 2))


class MovementAutoencoder(nn.Module):
    """The evaluator's movement encoder (shared, trained in place) and a decoder: (B, T, D) -> (recon, latents)."""

    def __init__(self, evaluator: TextMotionEvaluator, hidden: int, latent: int) -> None:
        super().__init__()
        self.evaluator = evaluator
        # Only the movement encoder learns here. The text and motion encoders take no part in the loss; left
        # trainable, DDP would wait for their gradients and stop at the second step of a multi-process run.
        evaluator.requires_grad_(False)
        evaluator.movement_encoder.requires_grad_(True)
        self.decoder = MovementConvDecoder(latent, hidden, evaluator.dim_pose)

    def forward(self, motion: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        latents = self.evaluator.encode_movements(motion)
        return self.decoder(latents), latents


class CoEmbedding(nn.Module):
    """Text and motion encoders trained over the frozen movement encoder, which stays in eval mode (no dropout)."""

    def __init__(self, evaluator: TextMotionEvaluator) -> None:
        super().__init__()
        self.evaluator = evaluator
        evaluator.requires_grad_(True)  # the text and motion encoders, which the movement pre-training froze
        evaluator.movement_encoder.requires_grad_(False)

    def train(self, mode: bool = True) -> CoEmbedding:
        super().train(mode)
        self.evaluator.movement_encoder.eval()
        return self

    def forward(self, word_embs: torch.Tensor, pos_ohot: torch.Tensor, cap_lens: torch.Tensor, motion: torch.Tensor,
                m_lens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """-> (text_emb (B, E), motion_emb (B, E)), rows in input order."""
        if self.evaluator.text_encoder.word_emb is not None:
            word_embs = word_embs.long()  # the eval dataset stacks learned-vocabulary ids as floats
        with torch.no_grad():
            movements = self.evaluator.encode_movements(motion)
        steps = m_lens.reshape(-1).cpu().long() // self.evaluator.unit_length
        motion_emb = self.evaluator.motion_encoder(movements, steps)
        return self.evaluator.encode_text(word_embs, pos_ohot, cap_lens), motion_emb


def contrastive_loss(text_emb: torch.Tensor, motion_emb: torch.Tensor, shift: int,
                     margin: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(positive term, negative term): mean d^2 of the pairs, mean clamp(margin - d, 0)^2 against motion i + shift."""
    loss_pos = F.pairwise_distance(text_emb, motion_emb).pow(2).mean()
    mismatched = motion_emb.roll(-shift, dims=0)
    loss_neg = (margin - F.pairwise_distance(text_emb, mismatched)).clamp(min=0).pow(2).mean()
    return loss_pos, loss_neg


def draw_shift(batch_size: int, mode: str) -> int:
    """The negative pairing's shift, drawn from torch's generator: in [1, B) by default, in [0, B - 1) with
    ``mode="reference"`` (the reference's draw, where shift 0 pairs each caption with its own motion)."""
    low, high = (0, batch_size - 1) if mode == "reference" else (1, batch_size)
    return int(torch.randint(low, high, (1,)).item())
