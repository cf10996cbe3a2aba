"""Training steps of the published tokenizers, shared by ``bench_tokenizer_step.py`` and ``bench_loader.py``.

``baseline_step`` and ``ours_step`` build a model and return ``(step, model)``, ``step()`` running one training step
(forward, loss, backward, AdamW update) on a fixed batch; see ``bench_tokenizer_step.py`` for what each side is.
"""

from __future__ import annotations

import random

import benchlib
import torch
from reference_impl import reference_tokenizer, reference_tokenizer_loss

from models.tokenizers import build_tokenizer
from utils.dataset_specs import DATASETS
from utils.engine import EngineConfig, compile_model, make_optimizer
from utils.losses import tokenizer_loss

MODELS = {  # registry name -> (label, dataset whose width and joint-position slice it trains on)
    "VQVAE": ("T2M-GPT VQ-VAE", "t2m"),
    "RVQVAE": ("MoMask RVQ-VAE", "t2m"),
    "FSQ_AE_High": ("FSQ_AE_High", "t2m_67"),
    "AE_Model": ("MARDM AE", "t2m_67"),
}
WINDOW = 64
TARGET = 1.25


def _seed(seed: int) -> None:
    torch.manual_seed(seed)
    random.seed(seed)


def baseline_step(name: str, motion: torch.Tensor, device: torch.device):
    """A closure running one baseline training step."""
    _seed(0)
    model = reference_tokenizer(name).to(device).train()
    # The references' AdamW (weight decay 0, as the engine's; torch's default is 0.01).
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-4, betas=(0.9, 0.99), weight_decay=0.0)
    position = DATASETS[MODELS[name][1]].position_slice

    def step() -> None:
        recon, commit, _ = model(motion)
        loss = reference_tokenizer_loss(recon, motion, commit, position)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    return step, model


def ours_step(name: str, motion: torch.Tensor, device: torch.device, compiled: bool = False,
              bf16: bool | None = None):
    """A closure running one training step the way ``utils.engine.train`` runs it; ``bf16`` (default: on CUDA)
    autocasts the model as ``--mixed_precision bf16`` does (the quantizer stays in fp32)."""
    _seed(0)
    spec = DATASETS[MODELS[name][1]]
    model = build_tokenizer(name, input_width=spec.dim_pose).to(device).train()
    optimizer = make_optimizer(model, EngineConfig(max_iters=1, lr=2e-4))
    forward = compile_model(model) if compiled else model
    bf16 = device.type == "cuda" if bf16 is None else bf16

    def step() -> None:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            out = forward(motion)
            loss, _ = tokenizer_loss(out.recon.float(), motion, out, spec)
        benchlib.engine_update(loss, model, optimizer)

    return step, model
