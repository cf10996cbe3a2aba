"""The benchmarks under ``bench/`` time what they say: our side of a step does the work a training run does."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))

import benchlib  # noqa: E402


def test_engine_update_stops_on_non_finite_gradients_of_a_finite_loss():
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 1)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    before = [p.detach().clone() for p in model.parameters()]
    loss = torch.sqrt(model(torch.ones(1, 3)) * 0).sum()  # 0, with an infinite derivative: NaN gradients
    assert torch.isfinite(loss)
    with pytest.raises(FloatingPointError, match="gradient norm"):
        benchlib.engine_update(loss, model, optimizer)
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))


def test_engine_update_steps_and_frees_gradients():
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 1)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    before = model.weight.detach().clone()
    benchlib.engine_update(model(torch.ones(2, 3)).pow(2).mean(), model, optimizer)
    assert not torch.equal(before, model.weight)
    assert all(p.grad is None for p in model.parameters())


def test_our_tokenizer_step_checks_the_loss_as_the_engine_does():
    from tokenizer_steps import ours_step

    motion = torch.full((1, 64, 67), float("nan"))
    step, _ = ours_step("AE_Model", motion, torch.device("cpu"))
    with pytest.raises(FloatingPointError, match="non-finite loss"):
        step()


def test_the_evaluation_benchmark_reconstructs_as_evaluation_AE_does():
    from bench_eval import published_fsq_tokenizer

    from utils.tokenizer_eval import reconstruct

    tokenizer = published_fsq_tokenizer(67, torch.device("cpu"))
    with torch.no_grad():
        recon, codes = reconstruct(tokenizer, torch.randn(2, 50, 67))
    assert recon.shape == (2, 50, 67) and codes.shape == (2, 13)
    assert not tokenizer.model.training


def test_the_evaluation_benchmark_stops_when_the_two_sides_score_different_motions():
    """An unmasked reconstruction made the baseline's FID 464.77 against our 466.78, and nothing said so."""
    from bench_eval import check_same_fid

    check_same_fid("case", "ours", 0.12680, 0.12674)      # floating-point order only
    check_same_fid("case", "ours", 466.5573, 466.5572)
    with pytest.raises(SystemExit, match=r"case, ours: our FID 466\.78339 and the baseline's 464\.76568 differ"):
        check_same_fid("case", "ours", 466.78339, 464.76568)


def test_the_index_benchmark_reports_the_peak_of_the_open_not_what_stays(tmp_path):
    from bench_index import _open_in_fresh_process, write_corpus

    from utils.dataset_specs import get_dataset_spec
    from utils.datasets import MotionIndex

    write_corpus(tmp_path, 20)
    MotionIndex.build(get_dataset_spec("t2m", str(tmp_path)), "train", str(tmp_path), progress=False)
    opened = _open_in_fresh_process(tmp_path, "index")
    assert opened["clips"] == 20
    assert opened["peak_mb"] >= opened["rss_mb"]


# ---------------------------------------------------------------------------------------------------------------------
# benchlib on tiny inputs: what every table is made of
# ---------------------------------------------------------------------------------------------------------------------

def test_interleaved_times_every_variant_once_per_round_after_its_warm_up():
    calls = []
    times = benchlib.interleaved({"baseline": lambda: calls.append("b"), "ours": lambda: calls.append("o")},
                                 reps=3, warmup=1)
    assert calls == ["b", "o"] + ["b", "o"] * 3  # warm-ups first, then rounds alternating
    assert {k: len(v) for k, v in times.items()} == {"baseline": 3, "ours": 3}
    assert all(t >= 0 for ts in times.values() for t in ts)


def test_speedup_row_divides_the_baseline_by_ours_and_checks_memory():
    base = benchlib.Result("b", "c", "baseline", 2.0, "s", peak_mb=100.0)
    faster = benchlib.speedup_row("b", "c", base, benchlib.Result("b", "c", "ours", 0.5, "s", peak_mb=90.0), 1.25,
                                  memory_must_not_grow=True, note="n")
    assert faster.ratio == pytest.approx(4.0) and faster.met and faster.target == ">= 1.25x, mem <= baseline"
    assert faster.note == "n"
    hungry = benchlib.speedup_row("b", "c", base, benchlib.Result("b", "c", "ours", 0.5, "s", peak_mb=200.0), 1.25,
                                  memory_must_not_grow=True)
    assert hungry.ratio == pytest.approx(4.0) and hungry.met is False
    slower = benchlib.speedup_row("b", "c", base, benchlib.Result("b", "c", "ours", 4.0, "s"), 1.25)
    assert slower.ratio == pytest.approx(0.5) and slower.met is False


@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="needs Linux /proc")
def test_peak_memory_sees_a_call_that_touches_64_mb():
    def allocate() -> None:
        torch.ones(16 * 2 ** 20)  # 64 MB, written

    big = benchlib.peak_memory(allocate, calls=1)
    small = benchlib.peak_memory(lambda: None, calls=1)
    assert big is not None and small is not None
    assert big >= 60.0 and small < 30.0


def test_report_prints_the_table_and_writes_the_rows_as_json(tmp_path, capsys):
    import argparse
    import json

    base = benchlib.Result("b", "case", "baseline", 2.0, "ms", [2.0, 2.1], 1.5)
    rows = [base, benchlib.speedup_row("b", "case", base, benchlib.Result("b", "case", "ours", 1.0, "ms"), None)]
    out = tmp_path / "rows.json"
    benchlib.report(rows, argparse.Namespace(json=str(out)), torch.device("cpu"), "tiny", {"batch": 1})
    printed = capsys.readouterr().out
    assert "== tiny ==" in printed and "settings: batch=1" in printed and "2.00x" in printed
    saved = json.loads(out.read_text())
    assert [benchlib.Result(**r) for r in saved["rows"]] == rows


# ---------------------------------------------------------------------------------------------------------------------
# Command lines: bad arguments are clear errors, a missing comparison package is said
# ---------------------------------------------------------------------------------------------------------------------

def _parse_error(capsys, argv: list[str]) -> str:
    with pytest.raises(SystemExit) as exit_info:
        benchlib.base_parser("test").parse_args(argv)
    assert exit_info.value.code == 2
    return capsys.readouterr().err


def test_bad_device_and_reps_are_argument_errors(capsys):
    assert "--device" in _parse_error(capsys, ["--device", "tpu"])
    assert "--reps" in _parse_error(capsys, ["--reps", "0"])
    assert "--reps" in _parse_error(capsys, ["--reps", "-2"])


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_device_cuda_without_cuda_is_an_argument_error(capsys):
    err = _parse_error(capsys, ["--device", "cuda"])
    assert "--device" in err and "CUDA is not available" in err


def _run_main(module_name: str, argv: list[str], monkeypatch) -> None:
    import importlib

    module = importlib.import_module(module_name)
    monkeypatch.setattr(sys, "argv", [f"{module_name}.py", *argv])
    module.main()


@pytest.mark.parametrize("module_name, argv, flag", [
    ("bench_tokenizer_step", ["--models", "VQVAE,NoSuchModel"], "--models"),
    ("bench_tokenizer_step", ["--batch_size", "0"], "--batch_size"),
    ("bench_mardm", ["--train_models", "MARDM-SiT-XXL"], "--train_models"),
])
def test_bench_scripts_reject_bad_arguments_by_name(module_name, argv, flag, monkeypatch, capsys):
    import importlib

    def no_benchmark(*args, **kwargs):
        raise AssertionError("the benchmark started despite a bad argument")

    module = importlib.import_module(module_name)
    for builder in ("baseline_step", "Tokenizer"):  # the first thing each script builds once its arguments pass
        if hasattr(module, builder):
            monkeypatch.setattr(module, builder, no_benchmark)
    with pytest.raises(SystemExit) as exit_info:
        _run_main(module_name, argv, monkeypatch)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert flag in err and argv[1].split(",")[-1] in err


def test_fsq_bench_says_when_vector_quantize_pytorch_is_missing(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "vector_quantize_pytorch", None)  # import fails as if not installed
    _run_main("bench_fsq", ["--batch_size", "1", "--reps", "1"], monkeypatch)
    captured = capsys.readouterr()
    assert "vector-quantize-pytorch is not installed" in captured.out
    assert "pip install -r bench/requirements.txt" in captured.out
    assert "vector-quantize-pytorch is not installed" in captured.err
    assert "perplexity, K=64000" in captured.out  # the rows that need no comparison package still run


# ---------------------------------------------------------------------------------------------------------------------
# The FSQ comparison: both sides of each row do the same work and get the same result
# ---------------------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("dim", [None, 16])
def test_both_sides_of_each_fsq_row_quantize_alike(dim):
    vqp = pytest.importorskip("vector_quantize_pytorch")
    from bench_fsq import LAYER_CASE, LEVELS, _layers, fsq_calls

    torch.manual_seed(0)
    ours, theirs = _layers(dim, torch.device("cpu"), vqp.FSQ)
    z = 3 * torch.randn(2, 8, dim or len(LEVELS))
    z_grad = z.clone().requires_grad_(True)
    calls = fsq_calls(ours, theirs, z, z_grad)
    assert set(calls) == {"quantize+indices fwd+bwd", "indices only (no grad)", LAYER_CASE}

    def run(fn, layer):
        """What one call returns, the gradients it leaves, and which of the layer's projections it ran."""
        z_grad.grad = None
        layer.zero_grad(set_to_none=True)
        ran = []
        hooks = [getattr(layer, name).register_forward_hook(lambda *_, name=name: ran.append(name))
                 for name in ("project_in", "project_out")]
        values, indices = fn()
        for hook in hooks:
            hook.remove()
        grads = [z_grad.grad] + [p.grad for p in layer.parameters()]
        return values, indices, grads, ran

    for case, (mine, other) in calls.items():
        ours_values, ours_indices, ours_grads, ours_ran = run(mine, ours)
        their_values, their_indices, their_grads, their_ran = run(other, theirs)
        assert ours_indices.shape == (2, 8) and ours_indices.unique().numel() > 4, case  # not all one code
        assert torch.equal(ours_indices.long(), their_indices.long()), case
        assert (ours_values is None) == (their_values is None), case
        if ours_values is not None:
            assert ours_values.shape == (2, 8, dim or len(LEVELS))
            torch.testing.assert_close(ours_values, their_values, msg=case)
        assert [g is None for g in ours_grads] == [g is None for g in their_grads], case
        for ours_grad, their_grad in zip(ours_grads, their_grads):
            if ours_grad is not None:
                torch.testing.assert_close(ours_grad, their_grad, msg=case)
        if dim is not None:  # the 512 <-> 6 matrix products are most of the time: both sides run the same ones
            assert ours_ran == their_ran, case
            assert ours_ran == (["project_in"] if case == "indices only (no grad)" else ["project_in", "project_out"])


def test_both_sides_of_the_fsq_perplexity_row_agree():
    from bench_fsq import perplexity_calls

    indices = torch.tensor([[0, 5, 5, 63999], [5, 7, 0, 0]])
    ours, dense = perplexity_calls(indices, 64000)
    counts = torch.tensor([3.0, 3.0, 1.0, 1.0])
    expected = torch.exp(-(counts / 8 * torch.log(counts / 8 + 1e-7)).sum())
    torch.testing.assert_close(ours(), expected)
    torch.testing.assert_close(dense(), expected)


def test_the_rvq_benchmark_times_eval_mode_on_the_same_codebooks():
    """Training-mode Gumbel draws leave the two sides with different codebooks; the eval rows timed those."""
    from bench_rvq import same_codes
    from reference_impl import RefResidualVQ

    from models.residual_vq import ResidualVQ

    torch.manual_seed(0)
    z = torch.randn(4, 16, 8)
    ours = ResidualVQ(3, 16, 8, quantize_dropout_prob=0.0, sample_codebook_temp=0.5)
    baseline = RefResidualVQ(3, 16, 8, dropout_prob=0.0, temperature=0.5)
    with torch.no_grad():
        for _ in range(3):
            ours.train()(z)
            baseline.train()(z.transpose(1, 2).contiguous())
    assert not torch.equal(ours.layers[0].codebook, baseline.layers[0].codebook)
    ours.eval()
    baseline.eval()
    same_codes(ours, baseline, z, z.transpose(1, 2).contiguous())
    for mine, theirs in zip(ours.layers, baseline.layers):
        assert torch.equal(mine.codebook, theirs.codebook)


# ---------------------------------------------------------------------------------------------------------------------
# Training steps: every variant starts from the state the engine leaves, gradients freed
# ---------------------------------------------------------------------------------------------------------------------

def _fixed_text_encoder():
    """A text encoder without weights: the same 8-d embedding for every caption."""
    from models.text_encoders import TextEncoder

    class FixedTextEncoder(TextEncoder):
        name, dim = "fixed", 8

        def encode(self, texts: list[str]) -> torch.Tensor:
            return torch.ones(len(texts), self.dim)

    return FixedTextEncoder()


def test_every_mardm_training_variant_starts_from_freed_gradients():
    """The variants train one model: the baseline left its gradients on it, and our backward added to them."""
    from bench_mardm import train_steps

    from models.loader import Tokenizer
    from models.mardm import MARDM_MODELS
    from models.text_encoders import CachedTextEncoder
    from models.tokenizers import build_tokenizer
    from utils.datasets import TextMotionBatch
    from utils.generator_stage import GeneratorLoss, warm_caption_cache

    torch.manual_seed(0)
    tokenizer = Tokenizer(build_tokenizer("AE_Tiny"), "AE_Tiny", source="test")
    encoder = _fixed_text_encoder()
    cached = CachedTextEncoder(encoder)
    captions = ["a person walks", "a person jumps"]
    warm_caption_cache(cached, captions, progress=False)
    data = TextMotionBatch(captions, torch.randn(2, 32, 67), torch.tensor([32, 24]))
    model = MARDM_MODELS["MARDM-SiT-Tiny"](tokenizer.latent_dim, tokenizer.latent_dim, encoder.dim).train()
    fns = train_steps(model, GeneratorLoss(tokenizer, cached), encoder, tokenizer, data, torch.device("cpu"),
                      cpu_bf16=True)
    assert set(fns) == {"baseline", "ours", "ours, bf16 autocast"}
    held = []

    def checked(name, fn):
        def run() -> None:
            held.append((name, sum(p.grad is not None for p in model.parameters())))
            fn()
        return run

    benchlib.interleaved({k: checked(k, fn) for k, fn in fns.items()}, reps=2, warmup=1)
    assert len(held) == 9
    assert held == [(name, 0) for name, _ in held]
    assert all(p.grad is None for p in model.parameters())


def test_each_fsq_backward_call_starts_from_freed_gradients():
    """Both sides share the input leaf: each backward added to the gradient the other side had left on it."""
    vqp = pytest.importorskip("vector_quantize_pytorch")
    from bench_fsq import LAYER_CASE, _layers, fsq_calls

    torch.manual_seed(0)
    ours, theirs = _layers(16, torch.device("cpu"), vqp.FSQ)
    z = 3 * torch.randn(2, 8, 16)
    z_grad = z.clone().requires_grad_(True)
    calls = fsq_calls(ours, theirs, z, z_grad)
    mine, other = calls["quantize+indices fwd+bwd"]
    mine()
    once = z_grad.grad.clone(), ours.project_in.weight.grad.clone()
    other()
    calls[LAYER_CASE][0]()
    mine()
    torch.testing.assert_close(z_grad.grad, once[0])
    torch.testing.assert_close(ours.project_in.weight.grad, once[1])


# ---------------------------------------------------------------------------------------------------------------------
# Rounds: a given --reps is what runs, and the settings line says what ran
# ---------------------------------------------------------------------------------------------------------------------

def test_reps_defaults_per_script_and_a_given_reps_is_honoured():
    parser = benchlib.base_parser("test", quick_reps=9, full_reps=12)
    assert benchlib.reps_for(parser.parse_args(["--quick"])) == 9
    assert benchlib.reps_for(parser.parse_args([])) == 12
    assert benchlib.reps_for(parser.parse_args(["--quick", "--reps", "2"])) == 2
    assert "default: 9 quick, 12 full" in parser.format_help()
    plain = benchlib.base_parser("test")
    assert benchlib.reps_for(plain.parse_args(["--quick"])) == 3 and benchlib.reps_for(plain.parse_args([])) == 5


def test_fsq_bench_runs_the_rounds_it_is_given_and_says_so(tmp_path, monkeypatch):
    import json

    monkeypatch.setitem(sys.modules, "vector_quantize_pytorch", None)  # the perplexity rows only
    out = tmp_path / "fsq.json"
    _run_main("bench_fsq", ["--batch_size", "1", "--reps", "2", "--json", str(out)], monkeypatch)
    saved = json.loads(out.read_text())
    timed = [row for row in saved["rows"] if row["samples"]]
    assert saved["settings"]["rounds"] == 2 and len(timed) == 2
    assert all(len(row["samples"]) == 2 for row in timed)


def test_loader_bench_runs_the_rounds_it_is_given_and_says_so(tmp_path, monkeypatch):
    """The per-batch rows ran max(--reps, 9) rounds while the settings line printed --reps."""
    import json

    import bench_loader

    monkeypatch.setattr(benchlib, "BENCH_TMP", str(tmp_path / "scratch"))
    monkeypatch.setattr(bench_loader, "BATCH", 8)
    monkeypatch.setattr(bench_loader, "ours_step", lambda *args, **kwargs: (lambda: None, None))
    out = tmp_path / "loader.json"
    _run_main("bench_loader", ["--quick", "--clips", "40", "--reps", "2", "--json", str(out)], monkeypatch)
    saved = json.loads(out.read_text())
    per_batch = [row for row in saved["rows"] if row["case"].startswith("ms per batch")]
    assert saved["settings"]["rounds"] == 2 and len(per_batch) == 4
    assert all(len(row["samples"]) == 2 for row in per_batch)


class _WorkerPids(torch.utils.data.Dataset):
    """Each sample is the id of the process that read it."""

    def __len__(self) -> int:
        return 4

    def __getitem__(self, index: int) -> int:
        import os

        return os.getpid()


def test_the_loader_bench_draws_our_batches_from_workers_kept_across_epochs(monkeypatch):
    """As the engine's EpochLoader does; the benchmark started new workers every epoch."""
    import os

    import bench_loader

    monkeypatch.setattr(bench_loader, "BATCH", 2)
    stream = bench_loader.ours_stream(_WorkerPids(), 1, False)
    try:
        pids = {int(pid) for _ in range(6) for pid in next(stream)}  # three epochs of two batches
    finally:
        stream.close()
    assert len(pids) == 1 and pids != {os.getpid()}


@pytest.mark.parametrize("module_name", ["bench_eval", "bench_index"])
def test_benches_without_rounds_refuse_reps(module_name, monkeypatch, capsys):
    with pytest.raises(SystemExit) as exit_info:
        _run_main(module_name, ["--reps", "2"], monkeypatch)
    assert exit_info.value.code == 2 and "--reps" in capsys.readouterr().err



@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="needs Linux /proc")
def test_every_evaluation_row_carries_the_peak_memory_of_its_own_variant(synthetic_root, tmp_path, monkeypatch):
    """Its rows printed 'peak MB -' throughout. Here the baseline's replication holds 128 MB and ours 32 MB, so a
    peak taken over both, or over the whole run, would show in our rows."""
    import json
    import types

    import bench_eval

    def holding(mb: int) -> None:
        torch.ones(mb * 2 ** 18).sum()  # mb MB, written

    def reference_evaluation(evaluator, loader, fn, replications, seed, **kwargs):
        holding(128)
        return [{"fid": 1.0}] * replications

    def evaluate(evaluator, loader, fn, replications, **kwargs):
        holding(32)
        row = {"seconds": 0.01, "gt_cache": "hit", "reused_rows": 0, "metrics": {"fid": 1.0}}
        return types.SimpleNamespace(rows=[row] * replications)

    monkeypatch.setattr(benchlib, "BENCH_TMP", str(tmp_path / "scratch"))
    monkeypatch.setattr(bench_eval, "synthetic_dataset", lambda motions: (Path(synthetic_root), 0.0))
    monkeypatch.setattr(bench_eval, "build_eval_loader", lambda *args, **kwargs: types.SimpleNamespace(
        num_batches=2, num_samples=64, batch_size=32))
    monkeypatch.setattr(bench_eval, "published_fsq_tokenizer", lambda dim_pose, device: None)
    monkeypatch.setattr(bench_eval, "reference_evaluation", reference_evaluation)
    monkeypatch.setattr(bench_eval, "evaluate", evaluate)
    out = tmp_path / "eval.json"
    _run_main("bench_eval", ["--quick", "--json", str(out)], monkeypatch)
    rows = json.loads(out.read_text())["rows"]
    assert {row["variant"] for row in rows} == {"baseline", "ours", "ours, cold cache", "ours, GT cache only"}
    assert len(rows) == 8 and all(row["peak_mb"] is not None for row in rows)
    for row in rows:
        assert (120 <= row["peak_mb"] < 150) if row["variant"] == "baseline" else (28 <= row["peak_mb"] < 60), row


class _Linear(torch.nn.Module):
    """A linear map standing in for a tokenizer on either side of a training step (no commitment term)."""

    def __init__(self, dim: int, ours: bool) -> None:
        super().__init__()
        self.linear, self.ours = torch.nn.Linear(dim, dim), ours

    def forward(self, x: torch.Tensor):
        from models.tokenizers import TokenizerOutput

        recon, zero = self.linear(x), x.new_zeros(())
        return TokenizerOutput(recon, zero, zero, recon) if self.ours else (recon, zero, zero)


def test_the_baseline_tokenizer_step_uses_our_optimizer_settings(monkeypatch):
    """The references (T2M-GPT, MoMask) train with AdamW and weight decay 0, as the engine does; torch's AdamW
    default of 0.01 made the baseline decay its weights, so the two sides of the ratio took different steps."""
    import tokenizer_steps

    monkeypatch.setattr(tokenizer_steps, "reference_tokenizer", lambda n: _Linear(67, ours=False))
    monkeypatch.setattr(tokenizer_steps, "build_tokenizer", lambda n, input_width: _Linear(input_width, True))
    motion = torch.randn(2, 8, 67, generator=torch.Generator().manual_seed(1))
    base_step, base = tokenizer_steps.baseline_step("AE_Model", motion, torch.device("cpu"))
    our_step, ours = tokenizer_steps.ours_step("AE_Model", motion, torch.device("cpu"))
    for _ in range(3):
        base_step()
        our_step()
    torch.testing.assert_close(base.linear.weight, ours.linear.weight, rtol=1e-6, atol=1e-8)
    torch.testing.assert_close(base.linear.bias, ours.linear.bias, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("flag", ["--seeds", "--time_steps"])
def test_sequence_seams_rejects_a_count_of_zero_by_name(flag, monkeypatch, capsys):
    """``--seeds 0`` printed a table of NaN (the mean of no seams) instead of saying what was wrong."""
    import sequence_seams

    def no_generator(run):
        raise AssertionError("the generator was loaded despite a bad argument")

    monkeypatch.setattr(sequence_seams, "load_generator", no_generator)
    monkeypatch.setattr(sys, "argv", ["sequence_seams.py", "--run", "x", flag, "0"])
    with pytest.raises(SystemExit) as exit_info:
        sequence_seams.main()
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert flag in err and "expected an integer >= 1, got 0" in err
