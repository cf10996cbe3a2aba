"""The straightforward baselines the benchmarks measure our code against, written the way the reference code does it.

Nothing here is used outside ``bench/``. Each piece reproduces the computation pattern of the field's code (facts in
``reference/tokenizers.md`` and ``reference/generators-and-evaluation.md``), not its text:

- ``RefTokenizer``: the T2M-GPT / MoMask / MARDM conv encoder and decoder in channel-first layout, with
  ``RefQuantizeEMAReset`` (T2M-GPT: per-code sums and counts through a dense one-hot matrix K x tokens and a matmul),
  ``RefResidualVQ`` (MoMask: the same layers with Gumbel sampling, quantize dropout) or ``RefFSQ`` (MotionMillion:
  FSQ whose perplexity builds a dense one-hot K x tokens, with K = 64,000 for the released tokenizer).
- ``ListMotionDataset``: the field's loaders, one ``np.load`` per clip at start-up into a Python list, windows cut
  from the list.
- ``reference_evaluation``: the MoMask / MARDM evaluation loop, which recomputes the GT text and motion embeddings in
  every replication and encodes each caption twice per batch (once with GT motion, once with the model's).
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

# ---------------------------------------------------------------------------------------------------------------------
# Conv backbone (channel-first, as the references)
# ---------------------------------------------------------------------------------------------------------------------


class RefResBlock(nn.Module):
    """relu -> dilated conv 3 -> relu -> conv 1 -> [dropout] -> + input, on (B, W, T)."""

    def __init__(self, width: int, dilation: int, dropout: float) -> None:
        super().__init__()
        self.activation1 = nn.ReLU()
        self.conv1 = nn.Conv1d(width, width, 3, 1, dilation, dilation)
        self.activation2 = nn.ReLU()
        self.conv2 = nn.Conv1d(width, width, 1, 1, 0)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else None

    def forward(self, x: Tensor) -> Tensor:
        residual = x
        x = self.conv2(self.activation2(self.conv1(self.activation1(x))))
        if self.dropout is not None:
            x = self.dropout(x)
        return x + residual


def _resnet(width: int, depth: int, rate: int, dropout: float) -> nn.Sequential:
    # Largest dilation first in both encoder and decoder (the references' default reverse_dilation=True).
    return nn.Sequential(*[RefResBlock(width, rate ** d, dropout) for d in range(depth)][::-1])


class RefEncoder(nn.Module):
    """(B, D, T) -> (B, C, T / 2**down_t)."""

    def __init__(self, dim: int, code_dim: int, width: int = 512, down_t: int = 2, depth: int = 3,
                 dropout: float = 0.0) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Conv1d(dim, width, 3, 1, 1), nn.ReLU()]
        for _ in range(down_t):
            layers.append(nn.Sequential(nn.Conv1d(width, width, 4, 2, 1), _resnet(width, depth, 3, dropout)))
        layers.append(nn.Conv1d(width, code_dim, 3, 1, 1))
        self.model = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return self.model(x)


class RefDecoder(nn.Module):
    """(B, C, N) -> (B, D, N * 2**down_t)."""

    def __init__(self, dim: int, code_dim: int, width: int = 512, down_t: int = 2, depth: int = 3,
                 dropout: float = 0.0) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Conv1d(code_dim, width, 3, 1, 1), nn.ReLU()]
        for _ in range(down_t):
            layers.append(nn.Sequential(_resnet(width, depth, 3, dropout), nn.Upsample(scale_factor=2, mode="nearest"),
                                        nn.Conv1d(width, width, 3, 1, 1)))
        layers += [nn.Conv1d(width, width, 3, 1, 1), nn.ReLU(), nn.Conv1d(width, dim, 3, 1, 1)]
        self.model = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return self.model(x)


# ---------------------------------------------------------------------------------------------------------------------
# Quantizers (channel-first input (B, C, N); return (z_q, loss, perplexity, indices))
# ---------------------------------------------------------------------------------------------------------------------


def dense_perplexity(indices: Tensor, codebook_size: int) -> tuple[Tensor, Tensor]:
    """Code counts through a dense one-hot (K, tokens) matrix, as the references: (perplexity, counts)."""
    flat = indices.reshape(-1).long()
    onehot = torch.zeros(codebook_size, flat.shape[0], device=flat.device)
    onehot.scatter_(0, flat.view(1, -1), 1)
    counts = onehot.sum(-1)
    prob = counts / counts.sum()
    return torch.exp(-torch.sum(prob * torch.log(prob + 1e-7))), counts


class RefQuantizeEMAReset(nn.Module):
    """EMA codebook with dead-code reset; statistics through a dense one-hot and a (K, tokens) x (tokens, C) matmul.

    ``temperature > 0`` samples codes with Gumbel noise in training (MoMask); 0 takes the nearest (T2M-GPT).
    """

    def __init__(self, nb_code: int, code_dim: int, mu: float = 0.99, temperature: float = 0.0) -> None:
        super().__init__()
        self.nb_code, self.code_dim, self.mu, self.temperature = nb_code, code_dim, mu, temperature
        self.register_buffer("codebook", torch.zeros(nb_code, code_dim))
        self.register_buffer("code_sum", torch.zeros(nb_code, code_dim))
        self.register_buffer("code_count", torch.zeros(nb_code))
        self.initialised = False

    def _tile(self, x: Tensor) -> Tensor:
        rows = x.shape[0]
        if rows < self.nb_code:
            repeats = (self.nb_code + rows - 1) // rows
            x = x.repeat(repeats, 1) + torch.randn(rows * repeats, x.shape[1], device=x.device) * (
                0.01 / math.sqrt(x.shape[1]))
        return x

    def _init_codebook(self, x: Tensor) -> None:
        rows = self._tile(x)[:self.nb_code]
        self.codebook = rows.clone()
        self.code_sum = rows.clone()
        self.code_count = torch.ones(self.nb_code, device=x.device)
        self.initialised = True

    def _select(self, x: Tensor) -> Tensor:
        codebook_t = self.codebook.t()
        distance = (x ** 2).sum(-1, keepdim=True) - 2 * x @ codebook_t + (codebook_t ** 2).sum(0, keepdim=True)
        if self.training and self.temperature > 0:
            noise = torch.zeros_like(distance).uniform_(0, 1)
            # -log(-log U) with MoMask's clamped log on both logs (-log U is clamped, not log U: that is NaN noise)
            gumbel = -torch.log((-torch.log(noise.clamp(min=1e-20))).clamp(min=1e-20))
            return (-distance / self.temperature + gumbel).argmax(-1)
        return distance.argmin(-1)

    @torch.no_grad()
    def _update(self, x: Tensor, indices: Tensor) -> Tensor:
        onehot = torch.zeros(self.nb_code, x.shape[0], device=x.device)
        onehot.scatter_(0, indices.view(1, -1), 1)
        code_sum = onehot @ x
        code_count = onehot.sum(-1)
        random_rows = self._tile(x)[:self.nb_code]
        self.code_sum = self.mu * self.code_sum + (1.0 - self.mu) * code_sum
        self.code_count = self.mu * self.code_count + (1.0 - self.mu) * code_count
        usage = (self.code_count.view(-1, 1) >= 1.0).float()
        updated = self.code_sum / self.code_count.view(-1, 1)
        self.codebook = usage * updated + (1 - usage) * random_rows
        prob = code_count / code_count.sum()
        return torch.exp(-torch.sum(prob * torch.log(prob + 1e-7)))

    def forward(self, z: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        b, c, n = z.shape
        x = z.permute(0, 2, 1).reshape(-1, c)
        if self.training and not self.initialised:
            self._init_codebook(x)
        indices = self._select(x)
        x_d = F.embedding(indices, self.codebook)
        if self.training:
            perplexity = self._update(x, indices)
        else:
            perplexity, _ = dense_perplexity(indices, self.nb_code)
        commit_loss = F.mse_loss(x, x_d.detach())
        x_d = x + (x_d - x).detach()
        return x_d.view(b, n, c).permute(0, 2, 1).contiguous(), commit_loss, perplexity, indices.view(b, n)


class RefResidualVQ(nn.Module):
    """MoMask's residual VQ: Q EMA-reset layers with Gumbel sampling; with probability ``dropout_prob`` per batch,
    layers after a random index are skipped (index -1)."""

    def __init__(self, num_quantizers: int, nb_code: int, code_dim: int, dropout_prob: float = 0.2,
                 temperature: float = 0.5) -> None:
        super().__init__()
        self.layers = nn.ModuleList(RefQuantizeEMAReset(nb_code, code_dim, temperature=temperature)
                                    for _ in range(num_quantizers))
        self.dropout_prob = dropout_prob

    def forward(self, z: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        num = len(self.layers)
        drop = self.training and random.random() < self.dropout_prob
        last = random.randrange(0, num) if drop else num
        out, residual = 0.0, z
        losses, perplexities, indices = [], [], []
        for q, layer in enumerate(self.layers):
            if drop and q > last:
                indices.append(torch.full(z.shape[::2], -1, dtype=torch.long, device=z.device))
                continue
            quantized, loss, perplexity, idx = layer(residual)
            residual = residual - quantized.detach()
            out = out + quantized
            losses.append(loss)
            perplexities.append(perplexity)
            indices.append(idx)
        return out, sum(losses) / len(losses), sum(perplexities) / len(perplexities), torch.stack(indices, -1)


class RefFSQ(nn.Module):
    """MotionMillion's FSQ copy: channel-first, no ``round`` in ``codes_to_indices``, dense one-hot perplexity."""

    def __init__(self, levels: Sequence[int], dim: int) -> None:
        super().__init__()
        self.register_buffer("levels", torch.tensor(list(levels), dtype=torch.int32), persistent=False)
        self.register_buffer("basis", torch.cumprod(torch.tensor([1] + list(levels[:-1])), 0).to(torch.int32),
                             persistent=False)
        self.codebook_size = int(np.prod(levels))
        self.project_in = nn.Linear(dim, len(levels))
        self.project_out = nn.Linear(len(levels), dim)

    def bound(self, z: Tensor, eps: float = 1e-3) -> Tensor:
        half_l = (self.levels - 1) * (1 + eps) / 2
        offset = torch.where(self.levels % 2 == 0, 0.5, 0.0)
        shift = (offset / half_l).atanh()
        return (z + shift).tanh() * half_l - offset

    def quantize(self, z: Tensor) -> Tensor:
        bounded = self.bound(z)
        rounded = bounded + (bounded.round() - bounded).detach()
        return rounded / (self.levels // 2)

    def codes_to_indices(self, codes: Tensor) -> Tensor:
        half = self.levels // 2
        return ((codes * half + half) * self.basis).sum(-1).to(torch.int32)

    def forward(self, z: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        h = self.project_in(z.permute(0, 2, 1))
        codes = self.quantize(h)
        indices = self.codes_to_indices(codes)
        out = self.project_out(codes).permute(0, 2, 1)
        perplexity, _ = dense_perplexity(indices, self.codebook_size)
        return out, z.new_zeros(()), perplexity, indices


class RefTokenizer(nn.Module):
    """Channel-first encoder -> quantizer (or none) -> decoder; ``forward(x (B, T, D)) -> (recon (B, T, D), loss,
    perplexity)``."""

    def __init__(self, dim: int, quantizer: nn.Module | None, code_dim: int = 512, dropout: float = 0.0) -> None:
        super().__init__()
        self.encoder = RefEncoder(dim, code_dim, dropout=dropout)
        self.quantizer = quantizer
        self.decoder = RefDecoder(dim, code_dim, dropout=dropout)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        latent = self.encoder(x.permute(0, 2, 1).float())
        if self.quantizer is None:
            loss = perplexity = latent.new_zeros(())
        else:
            latent, loss, perplexity, _ = self.quantizer(latent)
        return self.decoder(latent).permute(0, 2, 1), loss, perplexity


def reference_tokenizer(name: str) -> RefTokenizer:
    """The baseline of a registry tokenizer at its published width: ``VQVAE``, ``RVQVAE``, ``FSQ_AE_High`` or
    ``AE_Model``."""
    if name == "VQVAE":
        return RefTokenizer(263, RefQuantizeEMAReset(512, 512))
    if name == "RVQVAE":
        return RefTokenizer(263, RefResidualVQ(6, 512, 512), dropout=0.2)
    if name == "FSQ_AE_High":
        return RefTokenizer(67, RefFSQ([8, 8, 8, 5, 5, 5], 512), dropout=0.2)
    if name == "AE_Model":
        return RefTokenizer(67, None, dropout=0.2)
    raise ValueError(f"no reference implementation for {name!r}")


def reference_tokenizer_loss(recon: Tensor, motion: Tensor, commit_loss: Tensor, position: slice) -> Tensor:
    """SmoothL1 reconstruction + 0.5 SmoothL1 on the joint-position slice + 0.02 commitment (the README recipes)."""
    return (F.smooth_l1_loss(recon, motion) + 0.5 * F.smooth_l1_loss(recon[..., position], motion[..., position])
            + 0.02 * commit_loss)


# ---------------------------------------------------------------------------------------------------------------------
# Data: Python-list dataset
# ---------------------------------------------------------------------------------------------------------------------


class ListMotionDataset(torch.utils.data.Dataset):
    """Every clip ``np.load``-ed into a list at start-up; item i is a random normalised window of clip i."""

    def __init__(self, paths: Sequence[str], mean: np.ndarray, std: np.ndarray, window: int) -> None:
        self.window = window
        self.mean, self.std = mean.astype(np.float32), std.astype(np.float32)
        self.data = []
        for path in paths:
            motion = np.load(path)
            if motion.shape[0] >= window:
                self.data.append(motion)

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, item: int) -> np.ndarray:
        motion = self.data[item]
        start = random.randint(0, len(motion) - self.window)
        return (motion[start:start + self.window] - self.mean) / self.std


# ---------------------------------------------------------------------------------------------------------------------
# Evaluation: per-replication recomputation
# ---------------------------------------------------------------------------------------------------------------------


def reference_evaluation(evaluator, eval_loader, motion_fn: Callable, replications: int, seed: int,
                         mm_batches: int = 0, mm_repeats: int = 30, mm_times: int = 10) -> list[dict]:
    """The MoMask / MARDM loop: every replication embeds GT text and motion, then text again with the model's motion.

    With ``mm_batches`` > 0 the first batches are generated ``mm_repeats`` times, each repeat embedded with its
    captions (``get_co_embeddings``) as MoMask does; the last repeat is the batch's sample for the other metrics.
    Uses our loader batches (same data per seed as ``utils.eval_protocol.evaluate``) and the same metric functions,
    so the difference in time is the recomputation alone.
    """
    from utils.metrics import (
        calculate_diversity,
        calculate_fid,
        calculate_multimodality,
        default_diversity_times,
        score_batch,
    )

    rows = []
    for r in range(replications):
        rep_seed = seed + r
        torch.manual_seed(rep_seed)
        gt_parts, gen_parts, mm_parts, n = [], [], [], 0
        hits = {"gt": np.zeros(3), "gen": np.zeros(3)}
        match = {"gt": 0.0, "gen": 0.0}
        for b, batch in enumerate(eval_loader.batches(rep_seed)):
            gt_text, gt_emb = evaluator.get_co_embeddings(batch.word_embs, batch.pos_ohot, batch.sent_lens,
                                                          batch.motion, batch.m_lengths)
            repeats = []
            for _ in range(mm_repeats if b < mm_batches else 1):
                motion, lengths = motion_fn(batch)
                text_emb, gen_emb = evaluator.get_co_embeddings(batch.word_embs, batch.pos_ohot, batch.sent_lens,
                                                                motion, lengths)
                repeats.append(gen_emb.cpu().numpy())
            if b < mm_batches:
                mm_parts.append(np.stack(repeats, axis=1))
            for part, text, emb in (("gt", gt_text, gt_emb.cpu().numpy()), ("gen", text_emb, repeats[-1])):
                scores = score_batch(text.cpu().numpy(), emb, 3)
                hits[part] += scores.top_k_count
                match[part] += scores.matching_score_sum
            n += batch.motion.shape[0]
            gt_parts.append(gt_emb.cpu().numpy())
            gen_parts.append(repeats[-1])
        gt_all, gen_all = np.concatenate(gt_parts), np.concatenate(gen_parts)
        times = min(default_diversity_times(gen_all.shape[0]), gen_all.shape[0] - 1)
        row = {"fid": calculate_fid(gt_all, gen_all),
               "diversity": calculate_diversity(gen_all, times, rng=np.random.default_rng([rep_seed, 1])),
               "diversity_real": calculate_diversity(gt_all, times, rng=np.random.default_rng([rep_seed, 1])),
               "top1": hits["gen"][0] / n, "top1_real": hits["gt"][0] / n,
               "matching_score": match["gen"] / n, "matching_score_real": match["gt"] / n}
        if mm_parts:
            row["multimodality"] = calculate_multimodality(np.concatenate(mm_parts), mm_times,
                                                           rng=np.random.default_rng([rep_seed, 3]))
        rows.append(row)
    return rows
