"""Baselines of ``bench/`` that must compute what our side computes, so that a benchmark ratio compares like with
like: the reference evaluation loop scores as ``utils.eval_protocol.evaluate`` does, the reference tokenizers carry
the registry's training settings, the reference residual VQ passes the gradient as ours does, and the benchmarks'
own agreement checks accept and reject what they say."""

from __future__ import annotations

import json
import random
import sys
import types
from pathlib import Path

import pytest
import torch

# The benchmarks import each other as top-level modules (``python bench/<name>.py``).
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))

import bench_rvq  # noqa: E402
from bench_eval import FID_AGREEMENT, FULL, check_same_fid, extrapolated  # noqa: E402
from bench_fsq import _layers, fsq_calls  # noqa: E402
from bench_rvq import same_codes  # noqa: E402
from reference_impl import RefQuantizeEMAReset, RefResidualVQ, reference_evaluation, reference_tokenizer  # noqa: E402
from test_eval_protocol import setup  # noqa: E402, F401  (its evaluator and eval-loader fixture)

from models.quantizers import QuantizeEMAReset  # noqa: E402
from models.residual_vq import ResidualVQ  # noqa: E402
from models.tokenizers import build_tokenizer  # noqa: E402
from utils.eval_protocol import evaluate  # noqa: E402

# ---------------------------------------------------------------------------------------------------------------------
# The reference evaluation loop scores as our protocol does
# ---------------------------------------------------------------------------------------------------------------------

def _noisy_generator(batch):
    """GT plus noise from torch's global generator on the valid frames (our protocol zeroes the others)."""
    valid = torch.arange(batch.motion.shape[1])[None, :, None] < batch.m_lengths[:, None, None]
    return batch.motion + 0.5 * torch.randn_like(batch.motion) * valid, batch.m_lengths


def test_the_reference_evaluation_loop_gives_our_protocol_s_metrics_replication_by_replication(setup):  # noqa: F811
    """Same seeds, same draws of the generator, same diversity and multimodality pairs, same defaults: every
    metric of every replication equals ours (bench_eval.py compares their times). The evaluator keeps the batch's
    row order here, as ours asks it to; the reference's length order only permutes the rows its diversity pairs
    are drawn from."""
    _, _, evaluator, loader = setup
    in_order = types.SimpleNamespace(get_co_embeddings=lambda *args: evaluator.get_co_embeddings(
        *args, keep_input_order=True))
    torch.manual_seed(123)  # the global state before the call must not matter on either side
    baseline = reference_evaluation(in_order, loader, _noisy_generator, replications=2, seed=7, mm_batches=1,
                                    mm_repeats=12)
    torch.manual_seed(456)
    ours = evaluate(evaluator, loader, _noisy_generator, replications=2, seed=7, mm_fn=_noisy_generator,
                    mm_batches=1, mm_repeats=12, gt_cache=None, progress=False)
    assert len(baseline) == len(ours.rows) == 2
    for base, row in zip(baseline, ours.rows):
        metrics, real = row["metrics"], row["real"]
        expected = {"fid": metrics["fid"], "diversity": metrics["diversity"], "top1": metrics["top1"],
                    "matching_score": metrics["matching_score"], "multimodality": metrics["multimodality"],
                    "diversity_real": real["diversity"], "top1_real": real["top1"],
                    "matching_score_real": real["matching_score"]}
        assert set(base) == set(expected)
        for key, value in expected.items():
            assert base[key] == pytest.approx(value, rel=1e-4, abs=1e-5), key
    assert baseline[0]["fid"] != pytest.approx(baseline[1]["fid"], rel=1e-6)  # the replications drew other noise


# ---------------------------------------------------------------------------------------------------------------------
# The reference tokenizers train as ours: same dropout, quantize dropout and Gumbel temperature
# ---------------------------------------------------------------------------------------------------------------------


def _dropout_rates(model: torch.nn.Module) -> list[float]:
    return [m.p for m in model.modules() if isinstance(m, torch.nn.Dropout) and m.p > 0]


@pytest.mark.parametrize("name, dim", [("VQVAE", 263), ("RVQVAE", 263), ("FSQ_AE_High", 67), ("AE_Model", 67)])
def test_the_baseline_tokenizer_has_the_registry_s_dropout(name, dim):
    """Dropout changes what a training step computes: the baseline's blocks drop as ours do, in the same number."""
    ref, ours = reference_tokenizer(name), build_tokenizer(name, input_width=dim)
    assert sorted(_dropout_rates(ref)) == sorted(_dropout_rates(ours))


def test_the_baseline_residual_vq_samples_and_drops_layers_as_the_released_rvqvae():
    ref, ours = reference_tokenizer("RVQVAE").quantizer, build_tokenizer("RVQVAE", input_width=263).quantizer
    assert ref.dropout_prob == ours.quantize_dropout_prob == 0.2
    assert [layer.temperature for layer in ref.layers] == [layer.sample_codebook_temp for layer in ours.layers]
    assert [layer.mu for layer in ref.layers] == [layer.mu for layer in ours.layers]


def test_the_baseline_residual_vq_runs_every_layer_in_eval_mode_whatever_its_dropout():
    """Quantize dropout is a training-time regularizer: evaluation and tokenization use all Q layers."""
    torch.manual_seed(0)
    rvq = RefResidualVQ(3, 8, 4, dropout_prob=1.0, temperature=0.0).train()
    rvq.dropout_prob = 0.0
    z = torch.randn(2, 4, 5)
    rvq(z)  # codebooks initialised from the batch
    rvq.dropout_prob = 1.0
    rvq.eval()
    random.seed(0)
    for _ in range(5):
        assert (rvq(z)[3] >= 0).all()


def test_the_baseline_residual_vq_passes_the_gradient_to_its_input_as_ours():
    """Each layer quantizes the residual with the earlier layers' codes detached (MoMask): the input's gradient
    through z_q and the commitment losses is ours."""
    torch.manual_seed(0)
    ours = ResidualVQ(3, 8, 4, quantize_dropout_prob=0.0).train()
    ref = RefResidualVQ(3, 8, 4, dropout_prob=0.0, temperature=0.0).train()
    for _ in range(2):
        z = torch.randn(2, 8, 4)
        z_ours, z_ref = z.clone().requires_grad_(True), z.transpose(1, 2).clone().requires_grad_(True)
        out = ours(z_ours)
        z_q, loss, _, _ = ref(z_ref)
        (out.z_q.square().sum() + out.aux_loss).backward()
        (z_q.square().sum() + loss).backward()
        torch.testing.assert_close(z_ref.grad.transpose(1, 2), z_ours.grad)


# ---------------------------------------------------------------------------------------------------------------------
# The benchmarks' own checks: same settings on both sides, agreement within the stated tolerance
# ---------------------------------------------------------------------------------------------------------------------


def test_the_rvq_benchmark_builds_both_sides_alike_and_checks_eval_mode_in_eval_mode(tmp_path, monkeypatch):
    """No quantize dropout on either side (every call runs all layers), Gumbel sampling at 0.5 on both, and the
    eval rows' same-codes check sees both quantizers in eval mode."""
    built, checked = {}, []

    class Ours(ResidualVQ):
        def __init__(self, *args, **kwargs):
            built["ours"] = (args, kwargs)
            super().__init__(*args, **kwargs)

    class Baseline(RefResidualVQ):
        def __init__(self, *args, **kwargs):
            built["baseline"] = (args, kwargs)
            super().__init__(*args, **kwargs)

    same_codes = bench_rvq.same_codes

    def recording_same_codes(ours, baseline, z, z_first):
        checked.append((ours.training, baseline.training))
        same_codes(ours, baseline, z, z_first)

    monkeypatch.setattr(bench_rvq, "ResidualVQ", Ours)
    monkeypatch.setattr(bench_rvq, "RefResidualVQ", Baseline)
    monkeypatch.setattr(bench_rvq, "same_codes", recording_same_codes)
    monkeypatch.setattr(sys, "argv", ["bench_rvq.py", "--batch_size", "1", "--reps", "1", "--json",
                                      str(tmp_path / "rvq.json")])
    bench_rvq.main()
    assert built["ours"] == ((6, 512, 512), {"quantize_dropout_prob": 0.0, "sample_codebook_temp": 0.5})
    assert built["baseline"] == ((6, 512, 512), {"dropout_prob": 0.0, "temperature": 0.5})
    assert checked == [(False, False)]
    rows = json.loads((tmp_path / "rvq.json").read_text())["rows"]
    assert [(row["variant"], "(train)" in row["case"]) for row in rows] == [
        ("baseline", True), ("ours", True), ("baseline", False), ("ours", False)]


def test_the_rvq_benchmark_gives_the_baseline_every_layer_s_codebook():
    """After the check the baseline's Q codebooks are ours, layer by layer (ours unchanged)."""
    torch.manual_seed(0)
    z = torch.randn(4, 16, 8)
    ours = ResidualVQ(3, 16, 8, quantize_dropout_prob=0.0).eval()
    baseline = RefResidualVQ(3, 16, 8, dropout_prob=0.0, temperature=0.0).eval()
    for q, layer in enumerate(ours.layers):
        layer.codebook.copy_(torch.randn(16, 8) / (q + 1))
    before = [layer.codebook.clone() for layer in ours.layers]
    same_codes(ours, baseline, z, z.transpose(1, 2).contiguous())
    for mine, theirs, kept in zip(ours.layers, baseline.layers, before):
        assert torch.equal(theirs.codebook, kept) and torch.equal(mine.codebook, kept)


def test_the_evaluation_benchmark_accepts_fids_that_differ_by_exactly_the_tolerance():
    """'More than' 1e-3 of the FID (absolute below 1) stops the run; a difference of exactly that passes."""
    assert FID_AGREEMENT == 1e-3
    check_same_fid("case", "ours", 0.0, 0.001)
    check_same_fid("case", "ours", 0.5, 0.5005)
    with pytest.raises(SystemExit, match=r"case, ours: our FID 0\.00000 and the baseline's 0\.00110 differ"):
        check_same_fid("case", "ours", 0.0, 0.0011)


def test_the_evaluation_benchmark_marks_only_totals_not_run_in_full_as_extrapolated():
    assert extrapolated(FULL) == ""
    assert extrapolated(3) == "; 3 replication(s) run, median x 20"


def test_their_fsq_backward_call_starts_from_freed_gradients_too():
    """Their side, timed after ours on the same input leaf, leaves the gradient of one call of its own."""
    vqp = pytest.importorskip("vector_quantize_pytorch")
    torch.manual_seed(0)
    ours, theirs = _layers(16, torch.device("cpu"), vqp.FSQ)
    z = 3 * torch.randn(2, 8, 16)
    z_grad = z.clone().requires_grad_(True)
    mine, other = fsq_calls(ours, theirs, z, z_grad)["quantize+indices fwd+bwd"]
    other()
    once = z_grad.grad.clone(), theirs.project_in.weight.grad.clone()
    mine()
    other()
    other()
    torch.testing.assert_close(z_grad.grad, once[0])
    torch.testing.assert_close(theirs.project_in.weight.grad, once[1])


# ---------------------------------------------------------------------------------------------------------------------
# Training-mode sampling of the baseline quantizers (Gumbel noise as MoMask draws it)
# ---------------------------------------------------------------------------------------------------------------------


def test_the_baseline_ema_codebook_samples_the_nearest_code_at_a_vanishing_temperature():
    """Gumbel-max sampling of softmax(-d / t): as t -> 0 every sample is the nearest code, on both sides, and the
    codebooks stay alike step after step."""
    torch.manual_seed(0)
    ours = QuantizeEMAReset(8, 4, sample_codebook_temp=1e-6).train()
    ref = RefQuantizeEMAReset(8, 4, temperature=1e-6).train()
    for step in range(3):
        z = torch.randn(2, 6, 4)
        torch.manual_seed(step)
        out = ours(z)
        torch.manual_seed(step)
        _, _, _, indices = ref(z.transpose(1, 2))
        assert torch.equal(indices, out.indices), step
        torch.testing.assert_close(ref.codebook, ours.codebook)


def test_the_baseline_residual_vq_samples_many_codes_at_the_released_temperature():
    """At MoMask's temperature 0.5 the first layer's samples follow the distances: on latents it was initialised
    from, most rows draw a code near their own, and many codes are drawn (not the first code for every row)."""
    torch.manual_seed(0)
    rvq = RefResidualVQ(2, 16, 8, dropout_prob=0.0, temperature=0.5).train()
    z = 4 * torch.randn(2, 8, 16)  # (B, C, N): 32 well separated rows, the first 16 become the codes
    _, _, perplexity, indices = rvq(z)
    first = indices[..., 0].reshape(-1)
    assert first.unique().numel() >= 8 and perplexity > 4
    assert (first[:16] == torch.arange(16)).float().mean() >= 0.75
