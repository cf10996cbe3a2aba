"""Lookup-free quantization (models/lfq.py): sign codes and their straight-through gradient, MSB-first indices, the
entropy penalty on hand-computable assignments, usage counts, projections; an LFQ tokenizer trained by train_AE.py
reloads exactly, and LFQ-MARDM and MoMask's masked transformer train and generate on it."""

from __future__ import annotations

import itertools
import json
import logging
import math
import os

import numpy as np
import pytest
import torch
from test_generation import write_fake_clip

import train_AE
import train_MARDM
import train_t2m_transformer
from models import load_tokenizer
from models.lfq import LFQ
from models.tokenizers import build_tokenizer
from options.config import parse_with_config
from options.generator_options import get_train_mardm_parser
from options.token_generator_options import get_train_t2m_transformer_parser
from options.tokenizer_options import get_train_ae_parser
from utils.checkpoint import load_checkpoint
from utils.dataset_specs import get_dataset_spec
from utils.generation import load_generator
from utils.generator_stage import snap_and_latent_fns, token_dims
from utils.tokenizer_stage import make_loss_fn

# ---------------------------------------------------------------------------------------------------------------------
# the quantizer


def test_codes_are_signs_at_the_codebook_scale_with_a_straight_through_gradient():
    lfq = LFQ(16, codebook_scale=0.5)
    h = torch.tensor([[[0.3, -2.0, 1e-4, 0.0]]], requires_grad=True)
    out = lfq(h)
    assert torch.equal(out.z_q.detach(), torch.tensor([[[0.5, -0.5, 0.5, -0.5]]]))  # 0 is not positive
    weights = torch.tensor([1.0, 2.0, 3.0, 4.0])
    (out.z_q * weights).sum().backward()
    assert torch.equal(h.grad, weights.view(1, 1, 4))  # identity gradient through the sign
    assert torch.equal(lfq.snap_to_grid(h.detach()), out.z_q.detach())


def test_indices_are_msb_first_and_round_trip():
    lfq = LFQ(8)
    codes = torch.tensor([[1.0, -1.0, -1.0], [-1.0, -1.0, 1.0], [1.0, 1.0, -1.0]])
    assert lfq.codes_to_indices(codes).tolist() == [4, 1, 6]
    assert torch.equal(lfq.indices_to_codes(torch.tensor([4, 1, 6])), codes)
    every = torch.arange(8)
    assert torch.equal(lfq.codes_to_indices(lfq.indices_to_codes(every)), every)
    z = torch.randn(3, 5, 3)
    out = lfq(z)
    assert torch.equal(out.indices, lfq.codes_to_indices(out.z_q)) and torch.equal(out.indices, lfq.quantize(z))
    assert torch.equal(lfq.indices_to_latents(out.indices), out.z_q.detach())
    with pytest.raises(ValueError, match=r"indices must lie in \[0, 8\)"):
        lfq.indices_to_codes(torch.tensor([8]))
    with pytest.raises(ValueError, match="power of 2"):
        LFQ(12)


def _dense_reference(h: torch.Tensor, lfq: LFQ) -> tuple[float, float]:
    """Per-sample and codebook entropy from the explicit softmax over every code (the reference's way)."""
    codes = torch.tensor(list(itertools.product([-1.0, 1.0], repeat=lfq.codebook_dim))) * lfq.codebook_scale
    probs = torch.softmax(2 * lfq.inv_temperature * h @ codes.t(), -1)
    per_sample = -(probs * probs.clamp_min(1e-30).log()).sum(-1).mean()
    mean = probs.mean(0)
    return float(per_sample), float(-(mean * mean.clamp_min(1e-30).log()).sum())


def test_entropy_terms_on_hand_computable_assignments():
    d = 3
    lfq = LFQ(2 ** d, inv_temperature=1.0)
    # Uniform soft assignment: every bit is a coin flip, both entropies are d log 2, the penalty is 0.
    terms = lfq.entropy_terms(torch.zeros(5, d))
    assert terms.per_sample.item() == pytest.approx(d * math.log(2)) and terms.codebook.item() == pytest.approx(
        d * math.log(2))
    # Confident tokens spread over all 2^d codes: per-sample 0, codebook d log 2, penalty -gamma d log 2 weighted.
    corners = 50.0 * torch.tensor(list(itertools.product([-1.0, 1.0], repeat=d)))
    terms = lfq.entropy_terms(corners)
    assert terms.per_sample.item() == pytest.approx(0.0, abs=1e-6)
    assert terms.codebook.item() == pytest.approx(d * math.log(2), rel=1e-5)
    lfq.train()
    assert lfq(corners[None]).aux_loss.item() == pytest.approx(-0.1 * d * math.log(2), rel=1e-5)
    # Collapsed: every token confidently on one code, both entropies 0, no penalty, nothing to reward.
    terms = lfq.entropy_terms(corners[:1].expand(8, d))
    assert terms.per_sample.item() == pytest.approx(0.0, abs=1e-6) and terms.codebook.item() == pytest.approx(
        0.0, abs=1e-6)
    # Any assignment: the factorised per-sample entropy equals the dense reference.
    h = torch.randn(7, d)
    per_sample, codebook = _dense_reference(h, lfq)
    terms = lfq.entropy_terms(h)
    assert terms.per_sample.item() == pytest.approx(per_sample, rel=1e-5)
    assert terms.codebook.item() == pytest.approx(codebook, rel=1e-5)


def test_factorised_codebook_entropy_is_the_sum_of_bit_entropies():
    """Half the tokens on (+,+), half on (-,-): the codes' entropy is log 2, the bits' entropies sum to 2 log 2."""
    h = 50.0 * torch.tensor([[1.0, 1.0], [-1.0, -1.0]]).repeat(4, 1)
    dense, factorised = LFQ(4, dense_entropy_max_dim=2), LFQ(4, dense_entropy_max_dim=1)
    assert dense.entropy_terms(h).codebook.item() == pytest.approx(math.log(2), rel=1e-5)
    assert factorised.entropy_terms(h).codebook.item() == pytest.approx(2 * math.log(2), rel=1e-5)
    spread = 50.0 * torch.tensor([[1.0, 1.0], [-1.0, -1.0], [1.0, -1.0], [-1.0, 1.0]])
    assert factorised.entropy_terms(spread).codebook.item() == pytest.approx(
        dense.entropy_terms(spread).codebook.item(), rel=1e-5)


def test_aux_loss_weights_and_eval_mode():
    torch.manual_seed(0)
    z = torch.randn(2, 6, 4, requires_grad=True)
    plain = LFQ(16, entropy_loss_weight=0.0, commitment_loss_weight=0.0).train()
    assert plain(z).aux_loss.item() == 0.0
    commit = LFQ(16, entropy_loss_weight=0.0, commitment_loss_weight=2.0).train()
    expected = 2.0 * float((z.detach() - z.detach().sign()).pow(2).mean())
    assert commit(z).aux_loss.item() == pytest.approx(expected, rel=1e-5)
    gamma = LFQ(16, diversity_gamma=0.5, entropy_loss_weight=0.3).train()
    terms = gamma.entropy_terms(z.reshape(-1, 4))
    aux = gamma(z).aux_loss
    assert aux.item() == pytest.approx(0.3 * float((terms.per_sample - 0.5 * terms.codebook).detach()), rel=1e-5)
    aux.backward()
    assert z.grad.abs().sum() > 0  # the penalty moves the pre-quantization values
    gamma.eval()
    assert gamma(z).aux_loss.item() == 0.0


def test_usage_counts_and_perplexity():
    lfq = LFQ(8)
    z = lfq.indices_to_codes(torch.tensor([[0, 0, 5, 7]]))
    out = lfq(z)
    assert out.indices.tolist() == [[0, 0, 5, 7]]
    # Histogram {0: 2, 5: 1, 7: 1}: perplexity exp(-(0.5 log 0.5 + 2 * 0.25 log 0.25)) = 2^1.5.
    assert out.perplexity.item() == pytest.approx(2 ** 1.5, rel=1e-4)
    lfq(lfq.indices_to_codes(torch.tensor([[5]])))
    usage = lfq.code_usage()
    assert usage.counts.tolist() == [2, 0, 0, 0, 0, 2, 0, 1]
    assert usage.active.item() == pytest.approx(3 / 8)
    lfq.reset_usage()
    assert lfq.code_usage().counts.sum() == 0


def test_projections_only_when_the_latent_width_differs():
    assert isinstance(LFQ(16).project_in, torch.nn.Identity)
    lfq = LFQ(16, dim=10)
    assert lfq.project_in.weight.shape == (4, 10) and lfq.project_out.weight.shape == (10, 4)
    z = torch.randn(2, 3, 10, requires_grad=True)
    out = lfq(z)
    assert out.z_q.shape == (2, 3, 10)
    assert torch.allclose(out.z_q, lfq.project_out(lfq.indices_to_codes(out.indices)))
    out.z_q.sum().backward()
    assert z.grad.abs().sum() > 0 and lfq.project_in.weight.grad.abs().sum() > 0
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = lfq(z.bfloat16())
    assert out.z_q.dtype == torch.bfloat16 and torch.equal(out.indices, lfq.quantize(z))
    # The projections are the only state; the derived bit values are not saved.
    assert set(lfq.state_dict()) == {"project_in.weight", "project_in.bias", "project_out.weight", "project_out.bias"}


# ---------------------------------------------------------------------------------------------------------------------
# the tokenizer through the scripts

STEPS = 60


@pytest.fixture(scope="module")
def lfq_run(tmp_path_factory, synthetic_root):
    """A tiny LFQ tokenizer trained by train_AE.py (its loss weights and temperature set by flag), and a tiny CLIP."""
    ckpt = str(tmp_path_factory.mktemp("lfq_ckpt"))
    args = parse_with_config(get_train_ae_parser(), [
        "--dataset_name", "synthetic", "--data_root", synthetic_root, "--checkpoints_dir", ckpt, "--name", "lfq",
        "--model", "LFQ_AE_Tiny", "--entropy_loss_weight", "0.05", "--diversity_gamma", "1.5",
        "--commitment_loss_weight", "0.25", "--inv_temperature", "20", "--max_iters",
        str(STEPS), "--eval_every", "30", "--batch_size", "16", "--num_workers", "0", "--lr", "1e-3",
        "--warm_up_iter", "5", "--milestones", "1000", "--log_every", "5", "--save_every", "30", "--val_batches", "2"])
    train_AE.main(args)
    return {"ckpt": ckpt, "root": synthetic_root, "clip": write_fake_clip(os.path.join(ckpt, "clip")),
            "run": os.path.join(ckpt, "synthetic", "lfq")}


def _log(run_root: str) -> list[dict]:
    with open(os.path.join(run_root, "model", "train_log.jsonl")) as f:
        return [json.loads(line) for line in f]


def test_a_commit_weight_given_to_an_lfq_tokenizer_is_reported_as_unused(synthetic_root, tmp_path, caplog):
    """LFQ weighs its own auxiliary terms: train_AE.py warns about a --commit given to it, and only then."""
    base = ["--dataset_name", "synthetic", "--data_root", synthetic_root, "--checkpoints_dir", str(tmp_path),
            "--model", "LFQ_AE_Tiny", "--max_iters", "1", "--batch_size", "8", "--num_workers", "0", "--warm_up_iter",
            "1", "--log_every", "1", "--save_every", "1", "--eval_every", "1", "--val_batches", "1"]
    for name, extra in (("default", []), ("given", ["--commit", "0.5"])):
        caplog.clear()
        with caplog.at_level(logging.WARNING):
            train_AE.main(parse_with_config(get_train_ae_parser(), [*base, "--name", name, *extra]))
        warned = [r.getMessage() for r in caplog.records if "does not apply to LFQ_AE_Tiny" in r.getMessage()]
        assert warned == (["--commit 0.5 does not apply to LFQ_AE_Tiny: LFQ weighs its own auxiliary terms "
                           "(--entropy_loss_weight, --commitment_loss_weight)"] if name == "given" else []), name


def test_the_objective_adds_the_lfq_penalty_unscaled_and_logs_its_entropies():
    spec = get_dataset_spec("synthetic")
    args = parse_with_config(get_train_ae_parser(), ["--name", "x", "--commit", "0.5"])
    torch.manual_seed(0)
    model = build_tokenizer("LFQ_AE_Tiny", input_width=263, entropy_loss_weight=0.05, diversity_gamma=1.5).train()
    motion = torch.randn(4, 64, 263)
    torch.manual_seed(1)  # the same dropout in both calls
    loss, logs = make_loss_fn(spec, args, lfq=model.quantizer)(model, motion)
    penalty = 0.05 * (logs["entropy_sample"] - 1.5 * logs["entropy_codebook"])
    assert logs["commit"].item() == pytest.approx(penalty.item(), rel=1e-5)
    reconstruction = logs["rec"] + args.aux_loss_joints * logs["pos"]
    assert loss.item() == pytest.approx((reconstruction + penalty).item(), rel=1e-5)  # not times --commit 0.5
    torch.manual_seed(1)
    scaled, scaled_logs = make_loss_fn(spec, args)(model, motion)  # how a VQ tokenizer's aux loss enters
    assert scaled.item() == pytest.approx((reconstruction + 0.5 * penalty).item(), rel=1e-5)
    assert "entropy_sample" not in scaled_logs


def test_train_ae_trains_an_lfq_tokenizer_that_reloads_exactly(lfq_run):
    losses = [row["loss"] for row in _log(lfq_run["run"])]
    assert len(losses) == STEPS
    assert np.mean(losses[-10:]) < 0.9 * np.mean(losses[:10])
    with open(os.path.join(lfq_run["run"], "train.log")) as f:
        assert "entropy_codebook" in f.read()
    path = os.path.join(lfq_run["run"], "model", "latest.tar")
    state = load_checkpoint(path)
    assert state["model_name"] == "LFQ_AE_Tiny" and state["model_args"]["nb_code"] == 32
    assert state["model_args"]["entropy_loss_weight"] == 0.05 and state["model_args"]["diversity_gamma"] == 1.5
    assert state["model_args"]["commitment_loss_weight"] == 0.25 and state["model_args"]["inv_temperature"] == 20
    tok = load_tokenizer(path, use_ema=False)
    assert tok.model.quantizer.inv_temperature == 20 and tok.model.quantizer.commitment_loss_weight == 0.25
    assert tok.kind == "lfq" and tok.codebook_size == 32 and tok.model.grid_dim == 5
    model = build_tokenizer("LFQ_AE_Tiny", **state["model_args"])
    model.load_state_dict(state["model"])
    model.eval()
    motion = torch.randn(2, 64, 263)
    with torch.no_grad():
        indices = model.encode(motion)
        assert torch.equal(tok.encode(motion), indices)
        assert torch.equal(tok(motion), model(motion).recon)
        assert torch.equal(tok.decode(indices), model.decode(indices))
    assert indices.shape == (2, 16) and int(indices.max()) < 32


def _train_generator(lfq_run, script, parser, name, *flags):
    """A few steps of a generator script on the LFQ run (tiny CLIP)."""
    script.main(parse_with_config(parser(), [
        "--dataset_name", "synthetic", "--data_root", lfq_run["root"], "--checkpoints_dir", lfq_run["ckpt"],
        "--name", name, "--text_encoder", "clip", "--clip_path", lfq_run["clip"], "--max_iters", "6", "--eval_every",
        "6", "--batch_size", "8", "--num_workers", "0", "--lr", "1e-3", "--warm_up_iter", "2", "--milestones", "1000",
        "--log_every", "3", "--save_every", "100", *flags]))
    root = os.path.join(lfq_run["ckpt"], "synthetic", name)
    return root, load_checkpoint(os.path.join(root, "model", "latest.tar"))


@pytest.mark.parametrize("model,flags", [("LFQ-MARDM-SiT-Tiny", ("--flow_solver", "euler", "--flow_steps", "4")),
                                         ("LFQ-MARDM-DDPM-Tiny", ())])
def test_lfq_mardm_trains_and_generates_on_the_signs(lfq_run, model, flags):
    root, state = _train_generator(lfq_run, train_MARDM, get_train_mardm_parser, f"lfq_{model}", "--model", model,
                                   "--ae_name", "lfq", *flags)
    assert state["target"] == "lfq_codes" and state["tokenizer"]["kind"] == "lfq"
    assert state["model_args"]["diffusion"] == ("ddpm" if "DDPM" in model else "sit")
    assert state["model_args"]["target_dim"] == 5 and state["model_args"]["ae_dim"] == 16
    gen = load_generator(root)
    out = gen.generate(["a person walks forward", "a person jumps"], [32, 16], time_steps=2, seed=0)
    assert out.features.shape == (2, 32, 263) and out.tokens.shape == (2, 8, 5)
    assert set(out.tokens[0].unique().tolist()) <= {-1.0, 1.0}  # snapped onto the signs
    assert token_dims(gen.tokenizer) == (16, 5)
    snap, _ = snap_and_latent_fns(gen.tokenizer)
    assert torch.equal(snap(torch.tensor([[0.2, -0.1, 0.0, 3.0, -3.0]])), torch.tensor([[1.0, -1.0, -1.0, 1.0, -1.0]]))


def test_momask_masked_transformer_trains_and_generates_on_lfq_indices(lfq_run):
    root, state = _train_generator(lfq_run, train_t2m_transformer, get_train_t2m_transformer_parser, "lfq_mask",
                                   "--model", "MoMask-Mask-Tiny", "--vq_name", "lfq")
    assert state["tokenizer"]["kind"] == "lfq" and state["model_args"]["codebook_size"] == 32
    gen = load_generator(root)
    out = gen.generate(["a person walks forward"], [32], time_steps=2, seed=0)
    assert out.features.shape == (1, 32, 263) and out.tokens.shape[:2] == (1, 8)
    assert (out.tokens >= 0).all() and (out.tokens < 32).all()


# ----------------------------------------------------------------------------------------------------------------------
# torch.distributed: the codebook entropy is the global batch's


def _lfq_batch(codebook_dim_max: int) -> tuple[LFQ, torch.Tensor]:
    torch.manual_seed(0)
    lfq = LFQ(16, dim=6, inv_temperature=2.0, dense_entropy_max_dim=codebook_dim_max).train()
    return lfq, torch.randn(4, 8, 6)


def _lfq_ddp_worker(rank: int, world: int, init_file: str, result_file: str, codebook_dim_max: int) -> None:
    import torch.distributed as dist

    from utils.checkpoint import save_checkpoint

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        lfq, z = _lfq_batch(codebook_dim_max)
        share = z.shape[0] // world
        out = lfq(z[rank * share:(rank + 1) * share])
        (out.aux_loss + out.z_q.square().mean()).backward()  # a per-row term too, so project_out has a gradient
        grads = {}
        for name, param in lfq.named_parameters():  # the gradient average DistributedDataParallel applies
            dist.all_reduce(param.grad)
            grads[name] = param.grad / world
        if rank == 0:
            save_checkpoint(result_file, {"grads": grads, "codebook": lfq.last_entropy.codebook})
    finally:
        dist.destroy_process_group()


@pytest.mark.skipif(not torch.distributed.is_available(), reason="torch.distributed not available")
@pytest.mark.parametrize("codebook_dim_max", [14, 2], ids=["dense", "per-bit"])
def test_two_processes_train_the_codebook_entropy_of_the_global_batch(codebook_dim_max, tmp_path):
    import torch.multiprocessing as mp

    init_file, result_file = str(tmp_path / "init"), str(tmp_path / "result.pt")
    mp.spawn(_lfq_ddp_worker, args=(2, init_file, result_file, codebook_dim_max), nprocs=2, join=True)
    result = load_checkpoint(result_file)
    lfq, z = _lfq_batch(codebook_dim_max)
    out = lfq(z)  # one process on the whole batch
    (out.aux_loss + out.z_q.square().mean()).backward()
    assert result["codebook"].item() == pytest.approx(lfq.last_entropy.codebook.item(), rel=1e-5)
    for name, param in lfq.named_parameters():
        torch.testing.assert_close(result["grads"][name], param.grad, rtol=1e-4, atol=1e-6)
