"""MARDM: behaviour the other MARDM tests leave open: the unconditional end of the guidance scale and the guidance,
temperature and top-k values refused, force_uncond, dropout on the positional encoding, the condition dropout rate,
BERT-style corruption of the transformer input, the batch multiplier of one, the checks on target shapes, and the
head arguments a registry entry ignores."""

from __future__ import annotations

import pytest
import torch
from mardm_helpers import randomize, tiny

from models.mardm import ignored_head_args
from models.mask_schedule import top_k_filter


def tiny_mardm(name: str = "MARDM-SiT-Tiny", ae_dim: int = 8, target_dim: int = 8, seed: int | None = 0, **kw):
    """``tiny`` with a 3-step SiT head; with ``seed``, its zero-initialised layers filled so every input matters."""
    model = tiny(name, ae_dim, target_dim, flow_steps=3, **kw)
    return model if seed is None else randomize(model, seed=seed)


# ----- guidance -------------------------------------------------------------------------------------------------------
def test_guidance_scale_zero_generates_the_unconditional_sample():
    """cfg = 0 keeps only the unconditional branch: the result is that of cfg = 1 with a zero text embedding."""
    model = tiny_mardm()
    lengths, text = torch.tensor([6, 4]), torch.randn(2, 12)

    def run(cfg, text_emb):
        return model.generate(lengths, text_emb, time_steps=3, cfg=cfg, generator=torch.Generator().manual_seed(3))

    unconditional = run(0.0, text)
    assert torch.allclose(unconditional, run(1.0, torch.zeros_like(text)), atol=1e-4)
    assert not torch.allclose(unconditional, run(1.0, text), atol=1e-2)


@pytest.mark.parametrize(("name", "value"), [("cfg", float("nan")), ("cfg", float("inf")), ("cfg", -1.0),
                                             ("temperature", float("nan")), ("temperature", -0.5)])
def test_a_guidance_scale_or_temperature_that_is_not_a_finite_number_of_at_least_zero_is_refused(name, value):
    """The command line refuses these values by their flags; from Python they came back as NaN motions."""
    with pytest.raises(ValueError, match=rf"MARDM.generate: {name} must be a finite number >= 0, got {value}"):
        tiny_mardm().generate(torch.tensor([4]), torch.randn(1, 12), time_steps=2, **{name: value})


@pytest.mark.parametrize("thres", [-0.5, 1.0, 1.5, float("nan")])
def test_a_top_k_threshold_outside_zero_to_one_is_refused_naming_it(thres):
    """A negative threshold asked for more logits than there are (torch's 'selected index k out of range'), and one
    of 1 or more kept the single largest silently."""
    with pytest.raises(ValueError, match=rf"topk_filter_thres must be in \[0, 1\), got {thres}"):
        top_k_filter(torch.randn(2, 8), thres)
    assert torch.isfinite(top_k_filter(torch.randn(2, 8), 0.0)).all()


# ----- transformer ----------------------------------------------------------------------------------------------------
def test_training_drops_out_the_positional_encoding():
    """In training the sum of input and positional encoding goes through dropout (scaled by 1 / (1 - p) where kept);
    in eval it passes unchanged. A fresh model's blocks are the identity (adaLN-Zero) and its input layer has zero
    bias, so a zero input shows the positional encoding itself."""
    torch.manual_seed(0)
    model = tiny_mardm(seed=None, dropout=0.5)
    x_in, text, valid = torch.zeros(2, 16, 8), torch.randn(2, 12), torch.ones(2, 16, dtype=torch.bool)
    model.eval()
    pe = model.encode(x_in, text, valid)
    assert pe.abs().sum() > 0
    model.train()
    dropped = model.encode(x_in, text, valid)
    kept = dropped != 0
    assert 0.3 < (kept.float().mean().item()) < 0.7
    assert torch.allclose(dropped[kept], 2 * pe[kept])


def test_force_uncond_encodes_like_a_zero_text_embedding():
    """encode(..., force_uncond=True) conditions every sample on a zero text embedding, whatever the text."""
    model = tiny_mardm().eval()
    x_in, text = torch.randn(2, 5, 8), torch.randn(2, 12)
    valid = torch.ones(2, 5, dtype=torch.bool)
    uncond = model.encode(x_in, text, valid, force_uncond=True)
    assert torch.allclose(uncond, model.encode(x_in, torch.zeros_like(text), valid), atol=1e-6)
    assert not torch.allclose(uncond, model.encode(x_in, text, valid), atol=1e-3)


# ----- training -------------------------------------------------------------------------------------------------------
def test_condition_dropout_drops_the_configured_fraction_of_texts():
    """cond_drop_prob = 0.1 trains about 10% of the samples on a zero text embedding, not 90%."""
    model = tiny_mardm(seed=None, cond_drop_prob=0.1).train()
    torch.manual_seed(0)
    dropped = (model.condition(torch.randn(4000, 12)) - model.cond_emb.bias).abs().sum(-1) < 1e-6
    assert 0.07 < dropped.float().mean().item() < 0.13


def test_the_transformer_reads_the_masked_tokens_corrupted(monkeypatch):
    """In training, masked positions mostly read the mask latent (BERT-style corruption), unmasked valid positions
    read their own latent."""
    model = tiny_mardm()
    with torch.no_grad():
        model.mask_latent.fill_(50.0)
    seen = {}
    encode = model.encode

    def spy(x_in, text_emb, valid, force_uncond=False):
        seen["x_in"] = x_in.clone()
        return encode(x_in, text_emb, valid, force_uncond)

    monkeypatch.setattr(model, "encode", spy)
    latents, lengths = torch.randn(64, 20, 8), torch.full((64,), 20)
    torch.manual_seed(0)
    model(latents, latents, lengths, torch.randn(64, 12))
    x_in = seen["x_in"]
    is_mask_latent = (x_in == 50.0).all(-1)
    unchanged = (x_in == latents).all(-1)
    assert unchanged.any()
    # Of the replaced positions, 0.792 / 0.892 hold the mask latent and the rest Gaussian noise.
    changed = ~unchanged
    assert 0.8 < is_mask_latent.sum().item() / changed.sum().item() < 0.97


def test_a_batch_multiplier_of_one_trains_each_masked_token_once(monkeypatch):
    """diffmlps_batch_mul = 1 is accepted: the head sees each masked token once."""
    model = tiny_mardm(diffmlps_batch_mul=1)
    seen = {}
    head_forward = model.head.forward

    def spy(z, target, mask=None):
        seen["target"] = target
        return head_forward(z, target, mask)

    monkeypatch.setattr(model.head, "forward", spy)
    targets = torch.randn(2, 6, 8)
    torch.manual_seed(0)
    loss, logs = model(targets, targets, torch.tensor([6, 6]), torch.randn(2, 12))
    assert torch.isfinite(loss)
    assert seen["target"].shape[0] == round(logs["mask_ratio"].item() * 12)


# ----- bad input ------------------------------------------------------------------------------------------------------
def test_targets_of_another_length_than_the_latents_are_refused():
    """targets (B, N, C_t) must match latents on B and N, not only on C_t."""
    model = tiny_mardm()
    text = torch.randn(2, 12)
    for targets in (torch.randn(2, 4, 8), torch.randn(3, 5, 8)):
        with pytest.raises(ValueError, match=r"targets must be \(B, N, 8\) matching latents \(2, 5\)"):
            model(torch.randn(2, 5, 8), targets, torch.tensor([5, 5]), text)


def test_generation_of_wider_targets_than_latents_needs_latent_fn():
    """A head generating more channels than the transformer reads cannot feed its samples back unmapped."""
    model = tiny_mardm("FSQ-MARDM-SiT-Tiny", ae_dim=4, target_dim=6)
    with pytest.raises(ValueError, match="targets have 6 channels but the transformer reads 4; pass latent_fn"):
        model.generate(torch.tensor([3]), torch.randn(1, 12), time_steps=1)


# ----- registry -------------------------------------------------------------------------------------------------------
def test_flow_steps_are_reported_unused_under_the_default_dopri5_solver():
    """With no --flow_solver the SiT head integrates with dopri5, which chooses its own steps; a DDPM head uses
    neither; euler takes the steps."""
    assert set(ignored_head_args("FSQ-MARDM-SiT-Tiny", {"flow_steps": 2})) == {"flow_steps"}
    assert set(ignored_head_args("MARDM-DDPM-Tiny", {"flow_steps": 2, "flow_solver": "euler"})) == {
        "flow_steps", "flow_solver"}
    assert ignored_head_args("FSQ-MARDM-SiT-Tiny", {"flow_steps": 2, "flow_solver": "euler"}) == {}

