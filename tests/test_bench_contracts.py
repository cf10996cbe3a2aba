"""What the benchmark tables are made of: the statistics ``benchlib`` prints (median, ratio, target, peak memory), the
table and JSON it writes, its argument helpers, and baselines in ``bench/reference_impl.py`` and
``bench/tokenizer_steps.py`` that compute what our side computes, so that a ratio compares the same work."""

from __future__ import annotations

import argparse
import json
import random
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch

# The benchmarks import each other as top-level modules (``python bench/<name>.py``).
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))

import benchlib  # noqa: E402
import tokenizer_steps  # noqa: E402
from benchlib import Result  # noqa: E402
from reference_impl import (  # noqa: E402
    ListMotionDataset,
    RefFSQ,
    RefQuantizeEMAReset,
    RefResidualVQ,
    reference_evaluation,
    reference_tokenizer,
)

from models.fsq import FSQ  # noqa: E402
from models.quantizers import QuantizeEMAReset  # noqa: E402
from models.residual_vq import ResidualVQ  # noqa: E402
from models.tokenizers import TokenizerOutput, build_tokenizer  # noqa: E402
from utils.dataset_specs import DATASETS  # noqa: E402

# ---------------------------------------------------------------------------------------------------------------------
# Statistics, threads, progress, peak memory, machine line
# ---------------------------------------------------------------------------------------------------------------------


def test_median_is_the_middle_value_not_the_mean():
    assert benchlib.median([1.0, 2.0, 10.0]) == 2.0
    assert benchlib.median([4.0, 1.0, 3.0, 2.0]) == 2.5


def test_a_ratio_at_its_target_meets_it_and_a_zero_time_is_an_infinite_ratio():
    at = benchlib.speedup_row("b", "c", Result("b", "c", "baseline", 2.5, "s"), Result("b", "c", "ours", 2.0, "s"),
                              1.25)
    assert at.ratio == 1.25 and at.met is True and at.target == ">= 1.25x"
    instant = benchlib.speedup_row("b", "c", Result("b", "c", "baseline", 1.0, "s"), Result("b", "c", "ours", 0.0, "s"),
                                   2.0)
    assert instant.ratio == float("inf") and instant.met is True


def test_memory_may_grow_by_5_percent_and_1_mb_and_counts_only_when_asked():
    base = Result("b", "c", "baseline", 2.0, "s", peak_mb=100.0)

    def ours(peak_mb: float, memory: bool = True) -> Result:
        return benchlib.speedup_row("b", "c", base, Result("b", "c", "ours", 1.0, "s", peak_mb=peak_mb), 1.25,
                                    memory_must_not_grow=memory)

    assert ours(106.0).met is True and ours(107.0).met is False
    unasked = ours(500.0, memory=False)
    assert unasked.met is True and unasked.target == ">= 1.25x"
    untargeted = benchlib.speedup_row("b", "c", base, Result("b", "c", "ours", 1.0, "s"), None)
    assert untargeted.ratio == 2.0 and untargeted.target is None and untargeted.met is None


def test_a_note_is_appended_to_the_row_s_own_note():
    base = Result("b", "c", "baseline", 2.0, "s")
    ours = benchlib.speedup_row("b", "c", base, Result("b", "c", "ours", 1.0, "s", note="bf16"), None, note="fused")
    assert ours.note == "bf16; fused"
    assert benchlib.speedup_row("b", "c", base, Result("b", "c", "ours", 1.0, "s"), None, note="fused").note == "fused"


def test_the_mmap_threshold_fixes_the_trim_threshold_at_twice_it(monkeypatch):
    calls = []
    monkeypatch.setattr(benchlib, "_LIBC", types.SimpleNamespace(mallopt=lambda *args: calls.append(args) or 1))
    assert benchlib.set_mmap_threshold(1 << 20) is True
    assert calls == [(-3, 1 << 20), (-1, 2 << 20)]  # M_MMAP_THRESHOLD, M_TRIM_THRESHOLD (malloc.h)
    monkeypatch.setattr(benchlib, "_LIBC", None)
    assert benchlib.set_mmap_threshold(1 << 20) is False


@pytest.mark.parametrize("value, threads", [("2", 2), ("0", None), ("two", None), ("", None)])
def test_configure_threads_uses_a_usable_omp_num_threads_and_the_timing_threshold(value, threads, monkeypatch):
    thresholds = []
    monkeypatch.setattr(benchlib, "set_mmap_threshold", thresholds.append)
    monkeypatch.setenv("OMP_NUM_THREADS", value)
    before = torch.get_num_threads()
    try:
        assert benchlib.configure_threads() == (threads or before)
    finally:
        torch.set_num_threads(before)
    assert thresholds == [benchlib.TIMING_MMAP_THRESHOLD]


def test_progress_goes_to_stderr_and_leaves_stdout_to_the_table(capsys):
    benchlib.interleaved({"baseline": lambda: None}, reps=2)
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "baseline: warm-up" in captured.err and "baseline: round 2/2" in captured.err


def _fake_proc(monkeypatch, rss_kb: int, hwm_kb: int, thresholds: list | None = None) -> None:
    """/proc as a fixed resident set before the call and a fixed high-water mark after it."""
    monkeypatch.setattr(benchlib, "reset_high_water_mark", lambda: True)
    monkeypatch.setattr(benchlib, "proc_status_kb", {"VmRSS": rss_kb, "VmHWM": hwm_kb}.get)
    if thresholds is not None:
        monkeypatch.setattr(benchlib, "set_mmap_threshold", thresholds.append)


def test_peak_memory_is_the_rise_of_the_high_water_mark_in_mb_and_never_negative(monkeypatch):
    thresholds = []
    _fake_proc(monkeypatch, 100 * 1024, 164 * 1024, thresholds)
    assert benchlib.peak_memory(lambda: None, calls=1) == 64.0
    # the call is measured at the low threshold, and the timed rounds after it find the timing one again
    assert thresholds == [benchlib.MEMORY_MMAP_THRESHOLD, benchlib.TIMING_MMAP_THRESHOLD]
    _fake_proc(monkeypatch, 100 * 1024, 90 * 1024)
    assert benchlib.peak_memory(lambda: None, calls=1) == 0.0


def test_peak_memory_raises_what_the_call_raised_and_is_none_without_proc(monkeypatch):
    _fake_proc(monkeypatch, 100 * 1024, 164 * 1024)

    def failing() -> None:
        raise ValueError("out of range")

    with pytest.raises(ValueError, match="out of range"):
        benchlib.peak_memory(failing, calls=1)
    monkeypatch.setattr(benchlib, "reset_high_water_mark", lambda: False)
    assert benchlib.peak_memory(lambda: None, calls=2) is None


def test_peak_memory_is_the_median_of_three_calls_each_after_its_reset(monkeypatch):
    order = []
    _fake_proc(monkeypatch, 100 * 1024, 101 * 1024)
    benchlib.peak_memory(lambda: order.append("call"), reset=lambda: order.append("reset"), calls=2)
    assert order == ["reset", "call", "reset", "call"]
    peaks = iter([5.0, 50.0, 7.0])
    monkeypatch.setattr(benchlib, "_peak_memory_once", lambda fn, device, reset: order.append(reset) or next(peaks))
    assert benchlib.peak_memory(lambda: None, reset="r") == 7.0 and order[4:] == ["r"] * 3


def test_rss_of_a_field_proc_lacks_is_nan(monkeypatch):
    monkeypatch.setattr(benchlib, "proc_status_kb", lambda name: None)
    assert all(np.isnan(v) for v in benchlib.rss_mb().values())
    monkeypatch.setattr(benchlib, "proc_status_kb", {"VmRSS": 2048, "RssAnon": 1024, "RssFile": 512}.get)
    assert benchlib.rss_mb() == {"total": 2.0, "anon": 1.0, "file": 0.5}


def test_machine_info_reads_the_cpu_model_and_total_memory(monkeypatch):
    outputs = {
        "lscpu": "Architecture:  x86_64\nModel name:    Test CPU @ 2.0GHz\nThread(s) per core: 2\n",
        "free": "               total        used        free\nMem:            15Gi       3.0Gi        12Gi\n",
    }
    monkeypatch.setattr(benchlib, "_run", lambda cmd: outputs[cmd[0]])
    info = benchlib.machine_info()
    assert info["cpu"] == "Test CPU @ 2.0GHz" and info["mem_total"] == "15Gi" and info["device"] == "cpu"


# ---------------------------------------------------------------------------------------------------------------------
# Command lines, values, table, JSON
# ---------------------------------------------------------------------------------------------------------------------


def test_names_from_skips_empty_items_and_names_only_what_is_wrong(capsys):
    parser = argparse.ArgumentParser()
    assert benchlib.names_from("VQVAE,,RVQVAE,", "--models", ["VQVAE", "RVQVAE"], parser) == ["VQVAE", "RVQVAE"]
    for text, message in ((",", "--models: unknown empty list; choose from VQVAE, RVQVAE"),
                          ("VQVAE,Nope", "--models: unknown Nope; choose from VQVAE, RVQVAE")):
        with pytest.raises(SystemExit):
            benchlib.names_from(text, "--models", ["VQVAE", "RVQVAE"], parser)
        assert message in capsys.readouterr().err


def test_resolve_device_rejects_an_unknown_name_by_the_choices():
    assert benchlib.resolve_device("cpu") == torch.device("cpu")
    with pytest.raises(argparse.ArgumentTypeError, match="expected one of auto, cpu, cuda, got 'tpu'"):
        benchlib.resolve_device("tpu")


def test_reps_without_script_defaults_are_3_quick_and_5_full():
    assert benchlib.reps_for(argparse.Namespace(reps=None, quick=True)) == 3
    assert benchlib.reps_for(argparse.Namespace(reps=None, quick=False)) == 5
    assert benchlib.reps_for(argparse.Namespace(reps=7, quick=True)) == 7


@pytest.mark.parametrize("value, unit, text", [
    (float("nan"), "s", "-"), (9.9994, "s", "9.999 s"), (10.0, "s", "10.0 s"), (123.456, "s", "123.5 s"),
    (2.0, "ms", "2.000 ms"), (999.0, "clips/s", "999 clips/s"), (1000.0, "clips/s", "1,000 clips/s"),
    (12345.6, "samples/s", "12,346 samples/s"), (0.012345, "MB", "0.0123 MB"),
])
def test_format_value(value, unit, text):
    assert benchlib.format_value(value, unit) == text


def _table_rows() -> list[Result]:
    base = Result("tokenizer_step", "VQVAE, batch 8", "baseline", 1.5, "s", peak_mb=1234.5)
    ours = benchlib.speedup_row("tokenizer_step", "VQVAE, batch 8", base,
                                Result("tokenizer_step", "VQVAE, batch 8", "ours", 3.0, "s", peak_mb=99.0), 1.25,
                                note="a note longer than its header")
    return [base, ours]


def test_format_table_aligns_every_column_under_its_header():
    lines = benchlib.format_table(_table_rows()).splitlines()
    header, dashes, base, ours = lines
    starts = [i for i in range(len(dashes)) if dashes[i] == "-" and (i == 0 or dashes[i - 1] == " ")]
    assert len(starts) == 9
    # every cell starts where its column's dashes do, the header's names included
    for line in (header, base, ours):
        assert all(line[s] != " " and (s == 0 or line[s - 2:s] == "  ") for s in starts[:8]), line
    assert header.split() == ["benchmark", "case", "variant", "median", "peak", "MB", "vs", "baseline", "target",
                              "met", "note"]
    assert dashes.split()[-1] == "----"  # notes run on past the end of the line
    assert ours.endswith("a note longer than its header")
    assert not any(line.endswith(" ") for line in lines)


def test_format_table_cells_say_what_was_measured_and_whether_it_met_its_target():
    _, _, base, ours = benchlib.format_table(_table_rows()).splitlines()
    assert [c.strip() for c in base.split("  ") if c.strip()] == [
        "tokenizer_step", "VQVAE, batch 8", "baseline", "1.500 s", "1,234.5", "-", "-", "-"]
    assert [c.strip() for c in ours.split("  ") if c.strip()] == [
        "tokenizer_step", "VQVAE, batch 8", "ours", "3.000 s", "99.0", "0.50x", ">= 1.25x", "NO",
        "a note longer than its header"]


def test_format_table_keeps_the_header_widths_for_narrow_values_and_no_rows():
    lines = benchlib.format_table([Result("b", "c", "v", 1.0, "s")]).splitlines()
    assert lines[1].split("  ")[:3] == ["-" * len("benchmark"), "-" * len("case"), "-" * len("variant")]
    assert lines[2].startswith("b" + " " * (len("benchmark") + 1) + "c")
    assert benchlib.format_table([]).splitlines()[1].startswith("---------  ----  -------  ------")


def test_report_writes_json_into_a_new_folder_with_the_machine_and_empty_settings(tmp_path, capsys):
    out = tmp_path / "results" / "today" / "rows.json"
    rows = _table_rows()
    benchlib.report(rows, argparse.Namespace(json=str(out)), torch.device("cpu"), "tiny")
    printed = capsys.readouterr().out
    assert "settings:" not in printed and "== tiny ==" in printed
    saved = json.loads(out.read_text())
    assert saved["title"] == "tiny" and saved["settings"] == {}
    assert saved["machine"]["device"] == "cpu" and "torch" in saved["machine"]
    assert [Result(**r) for r in saved["rows"]] == rows


def test_scratch_dir_is_fresh_and_empty_on_every_call(tmp_path, monkeypatch):
    monkeypatch.setattr(benchlib, "BENCH_TMP", str(tmp_path / "bench"))
    (benchlib.scratch_dir("corpus") / "stale.npy").write_bytes(b"x")
    second = benchlib.scratch_dir("corpus")
    assert second == tmp_path / "bench" / "corpus" and second.is_dir() and list(second.iterdir()) == []


# ---------------------------------------------------------------------------------------------------------------------
# Baselines compute what our side computes
# ---------------------------------------------------------------------------------------------------------------------


def _copy_weights(ref: torch.nn.Module, ours: torch.nn.Module) -> None:
    """Our weights into the baseline, part by part, in order (the layouts match, the module names do not)."""
    with torch.no_grad():
        for part in ("encoder", "quantizer", "decoder"):
            theirs = list(getattr(ref, part).parameters()) if getattr(ref, part) is not None else []
            mine = list(getattr(ours, part).parameters()) if getattr(ours, part, None) is not None else []
            assert [p.shape for p in theirs] == [p.shape for p in mine], part
            for p, q in zip(theirs, mine):
                p.copy_(q)


@pytest.mark.parametrize("name", ["VQVAE", "RVQVAE", "FSQ_AE_High", "AE_Model"])
def test_the_baseline_tokenizer_reconstructs_as_ours_with_our_weights(name):
    torch.manual_seed(0)
    dim = DATASETS[tokenizer_steps.MODELS[name][1]].dim_pose
    ref, ours = reference_tokenizer(name).eval(), build_tokenizer(name, input_width=dim).eval()
    _copy_weights(ref, ours)
    if name == "RVQVAE":
        assert len(ref.quantizer.layers) == ours.quantizer.num_quantizers
        assert ref.quantizer.layers[0].nb_code == ours.quantizer.codebook_size
    elif name != "AE_Model":
        size = getattr(ref.quantizer, "nb_code", getattr(ref.quantizer, "codebook_size", None))
        assert size == ours.quantizer.codebook_size
    motion = torch.randn(2, 16, dim)
    if name in ("VQVAE", "RVQVAE"):  # codebooks drawn from the latents, so that several codes are in use
        layers = [ours.quantizer] if name == "VQVAE" else list(ours.quantizer.layers)
        theirs = [ref.quantizer] if name == "VQVAE" else list(ref.quantizer.layers)
        with torch.no_grad():
            latents = ours.encoder(motion).reshape(-1, layers[0].codebook.shape[1])  # (B, N, C) rows
        for mine, other in zip(layers, theirs):
            mine.codebook.copy_(latents[torch.randint(0, latents.shape[0], (mine.codebook.shape[0],))])
            other.codebook = mine.codebook.clone()
    with torch.no_grad():
        recon, loss, perplexity = ref(motion)
        out = ours(motion)
    assert recon.shape == motion.shape
    torch.testing.assert_close(recon, out.recon)
    torch.testing.assert_close(loss, out.aux_loss.reshape(()))
    torch.testing.assert_close(perplexity, torch.as_tensor(out.perplexity, dtype=torch.float32).reshape(()))


def test_an_unknown_baseline_tokenizer_is_an_error_naming_it():
    with pytest.raises(ValueError, match="no reference implementation for 'VQVAE_Tiny'"):
        reference_tokenizer("VQVAE_Tiny")


@pytest.mark.parametrize("batch, tokens", [(2, 8), (1, 8), (1, 3)])  # more, as many and fewer rows than codes
def test_the_baseline_ema_codebook_trains_as_ours(batch, tokens):
    """Same codes, codebook, perplexity, commitment loss and input gradient, step after step (dead codes reset)."""
    torch.manual_seed(0)
    ours, ref = QuantizeEMAReset(8, 4).train(), RefQuantizeEMAReset(8, 4).train()
    for step in range(4):
        z = torch.randn(batch, tokens, 4)
        z_ours, z_ref = z.clone().requires_grad_(True), z.transpose(1, 2).clone().requires_grad_(True)
        torch.manual_seed(10 + step)  # the same draws for the reset rows' noise
        out = ours(z_ours)
        torch.manual_seed(10 + step)
        z_q, loss, perplexity, indices = ref(z_ref)
        (out.z_q.square().sum() + out.aux_loss).backward()
        (z_q.square().sum() + loss).backward()
        assert torch.equal(indices, out.indices), step
        torch.testing.assert_close(ref.codebook, ours.codebook)
        torch.testing.assert_close(z_q.transpose(1, 2), out.z_q)
        torch.testing.assert_close(perplexity, out.perplexity.reshape(()))
        torch.testing.assert_close(loss, out.aux_loss)
        torch.testing.assert_close(z_ref.grad.transpose(1, 2), z_ours.grad)


def test_the_baseline_residual_vq_trains_as_ours_without_dropout():
    torch.manual_seed(0)
    ours = ResidualVQ(3, 8, 4, quantize_dropout_prob=0.0).train()
    ref = RefResidualVQ(3, 8, 4, dropout_prob=0.0, temperature=0.0).train()
    for _ in range(3):
        z = torch.randn(2, 8, 4)
        out = ours(z)
        z_q, loss, perplexity, indices = ref(z.transpose(1, 2).contiguous())
        assert indices.shape == (2, 8, 3) and torch.equal(indices, out.indices)
        torch.testing.assert_close(z_q.transpose(1, 2), out.z_q)
        torch.testing.assert_close(loss, out.aux_loss)
        torch.testing.assert_close(perplexity, out.perplexity.reshape(()))


def test_baseline_quantize_dropout_keeps_the_first_layer_and_averages_over_the_layers_run():
    z = torch.randn(2, 4, 5)  # (B, C, N): 10 rows, more than the 8 codes
    kept = set()
    for seed in range(12):
        random.seed(seed)
        torch.manual_seed(0)
        dropped = RefResidualVQ(3, 8, 4, dropout_prob=1.0, temperature=0.0).train()
        z_q, loss, perplexity, indices = dropped(z)
        assert indices.shape == (2, 5, 3)
        active = int((indices[0, 0] >= 0).sum())
        assert (indices[..., :active] >= 0).all() and (indices[..., active:] == -1).all()
        kept.add(active)
        if active == 1:  # one layer ran: the result is that of a one-layer quantizer
            torch.manual_seed(0)
            single = RefResidualVQ(1, 8, 4, dropout_prob=0.0, temperature=0.0).train()
            torch.testing.assert_close((z_q, loss, perplexity), single(z)[:3])
    assert kept == {1, 2, 3}


def test_baseline_fsq_indices_are_ours_up_to_the_missing_rounding():
    """The MotionMillion copy omits a rounding (off by one at a few grid points); the rest are our indices."""
    torch.manual_seed(0)
    ours, ref = FSQ([8, 8, 8, 5, 5, 5], 16), RefFSQ([8, 8, 8, 5, 5, 5], 16)
    ref.load_state_dict(ours.state_dict(), strict=False)
    z = 3 * torch.randn(4, 32, 16)
    out = ours(z)
    z_q, _, _, indices = ref(z.transpose(1, 2))
    torch.testing.assert_close(z_q.transpose(1, 2), out.z_q)
    assert indices.min() >= 0 and indices.max() < 64000
    assert (indices.long() == out.indices).float().mean() > 0.9


def test_the_list_dataset_keeps_clips_of_one_window_normalises_in_float32_and_draws_every_start(tmp_path):
    motion = np.arange(4 * 3, dtype=np.float32).reshape(4, 3)
    np.save(tmp_path / "exact.npy", motion)
    np.save(tmp_path / "short.npy", motion[:3])
    mean, std = np.array([1.0, 2.0, 3.0]), np.array([2.0, 4.0, 8.0])  # float64, as np.load of mean.npy gives
    dataset = ListMotionDataset([str(tmp_path / "exact.npy"), str(tmp_path / "short.npy")], mean, std, window=4)
    assert len(dataset) == 1 and dataset[0].dtype == np.float32
    np.testing.assert_allclose(dataset[0], (motion - mean) / std)
    np.save(tmp_path / "clip.npy", np.arange(6, dtype=np.float32).reshape(6, 1))
    dataset = ListMotionDataset([str(tmp_path / "clip.npy")], np.zeros(1), np.ones(1), window=4)
    random.seed(0)
    assert {float(dataset[0][0, 0]) for _ in range(60)} == {0.0, 1.0, 2.0}


# ---------------------------------------------------------------------------------------------------------------------
# Training steps: both sides take the same step from the same weights
# ---------------------------------------------------------------------------------------------------------------------


class _TinyTokenizer(torch.nn.Module):
    """A linear map with a commitment term, standing in for a tokenizer on either side of a training step."""

    def __init__(self, dim: int, ours: bool) -> None:
        super().__init__()
        self.linear, self.ours = torch.nn.Linear(dim, dim), ours

    def forward(self, x: torch.Tensor):
        recon, commit = self.linear(x), self.linear.weight.square().mean()
        if self.ours:
            return TokenizerOutput(recon, commit, commit.detach(), recon)
        return recon, commit, commit.detach()


@pytest.mark.parametrize("name", ["RVQVAE", "FSQ_AE_High"])
def test_baseline_and_our_training_steps_update_the_weights_alike(name, monkeypatch):
    """Same seed, loss (reconstruction, joint positions of the model's dataset, commitment), AdamW settings, fp32 on
    CPU and gradients freed between steps: two steps of each side leave the same weights."""
    dim = DATASETS[tokenizer_steps.MODELS[name][1]].dim_pose
    monkeypatch.setattr(tokenizer_steps, "reference_tokenizer", lambda n: _TinyTokenizer(dim, ours=False))
    monkeypatch.setattr(tokenizer_steps, "build_tokenizer", lambda n, input_width: _TinyTokenizer(input_width, True))
    motion = torch.randn(2, 8, dim, generator=torch.Generator().manual_seed(1))
    base_step, base = tokenizer_steps.baseline_step(name, motion, torch.device("cpu"))
    our_step, ours = tokenizer_steps.ours_step(name, motion, torch.device("cpu"))
    assert torch.equal(base.linear.weight, ours.linear.weight)
    for _ in range(3):
        base_step()
        our_step()
    torch.testing.assert_close(base.linear.weight, ours.linear.weight)
    torch.testing.assert_close(base.linear.bias, ours.linear.bias)


def test_the_baseline_builder_starts_python_random_from_seed_0_and_ours_compiles_only_when_asked(monkeypatch):
    """MoMask's quantize dropout draws from ``random``: every build of the baseline draws the same layers."""
    monkeypatch.setattr(tokenizer_steps, "reference_tokenizer", lambda n: _TinyTokenizer(67, ours=False))
    random.seed(0)
    expected = random.random()
    random.seed(123)
    tokenizer_steps.baseline_step("AE_Model", torch.zeros(1, 8, 67), torch.device("cpu"))
    assert random.random() == expected
    compiled = []
    monkeypatch.setattr(tokenizer_steps, "build_tokenizer", lambda n, input_width: _TinyTokenizer(input_width, True))
    monkeypatch.setattr(tokenizer_steps, "compile_model", lambda model: compiled.append(model) or model)
    tokenizer_steps.ours_step("AE_Model", torch.zeros(1, 8, 67), torch.device("cpu"))
    assert compiled == []
    _, model = tokenizer_steps.ours_step("AE_Model", torch.zeros(1, 8, 67), torch.device("cpu"), compiled=True)
    assert compiled == [model]


# ---------------------------------------------------------------------------------------------------------------------
# The reference evaluation loop
# ---------------------------------------------------------------------------------------------------------------------


# Text embedding: the batch's word vectors; motion embedding: the motion's first frame.
_ECHO = types.SimpleNamespace(get_co_embeddings=lambda words, pos, sent_lens, motion, lengths: (words, motion[:, 0]))


class _Loader:
    """Two batches of 8 captions whose GT motion embeds exactly onto its caption; records the seeds asked for."""

    def __init__(self) -> None:
        self.seeds = []

    def batches(self, seed: int):
        self.seeds.append(seed)
        for b in range(2):
            text = torch.randn(8, 4, generator=torch.Generator().manual_seed(b))
            yield types.SimpleNamespace(word_embs=text, pos_ohot=None, sent_lens=None,
                                        motion=text[:, None].repeat(1, 3, 1), m_lengths=torch.full((8,), 3))


def test_reference_evaluation_seeds_replication_r_with_seed_plus_r_and_scores_gt():
    loader = _Loader()
    noisy = torch.Generator().manual_seed(0)
    rows = reference_evaluation(_ECHO, loader, lambda batch: (
        torch.randn(batch.motion.shape, generator=noisy), batch.m_lengths), replications=2, seed=10)
    assert loader.seeds == [10, 11] and len(rows) == 2
    for row in rows:  # 16 samples: diversity draws fewer pairs than samples
        assert row["top1_real"] == 1.0 and row["matching_score_real"] == pytest.approx(0.0, abs=1e-5)
        assert row["top1"] < 1.0 and row["matching_score"] > 1.0
        assert row["diversity"] > 0 and row["diversity_real"] > 0 and "multimodality" not in row
    alike = reference_evaluation(_ECHO, _Loader(), lambda batch: (batch.motion, batch.m_lengths),
                                 replications=1, seed=0, mm_batches=1, mm_repeats=3, mm_times=2)
    assert alike[0]["multimodality"] == pytest.approx(0.0, abs=1e-6)  # every repeat alike, captions differ


def test_reference_evaluation_repeats_the_first_batches_and_scores_their_last_repeat():
    calls = []

    def last_repeat_is_gt(batch):
        # repeats 1 and 2 of the repeated batch are zeros, its third (last) repeat and the other batch are GT
        calls.append(1)
        n = len(calls)
        zero = n in (1, 2) or n in (5, 6)
        return (torch.zeros_like(batch.motion) if zero else batch.motion), batch.m_lengths

    rows = reference_evaluation(_ECHO, _Loader(), last_repeat_is_gt, replications=2, seed=0,
                                mm_batches=1, mm_repeats=3, mm_times=2)
    assert len(calls) == 2 * (3 + 1)
    for row in rows:
        assert row["top1"] == row["top1_real"] == 1.0 and row["matching_score"] == pytest.approx(0.0, abs=1e-5)
        assert row["fid"] == pytest.approx(0.0, abs=1e-3) and row["multimodality"] > 0


# ---------------------------------------------------------------------------------------------------------------------
# Seams of sample.py --sequence
# ---------------------------------------------------------------------------------------------------------------------


def _walk_with_jumps(frames: int, jumps: dict[int, float]) -> np.ndarray:
    """(T, 3 joints, 3): the root walks 1 per frame (no pose change); joint 2 moves by ``jumps[t]`` into frame t."""
    joints = np.zeros((frames, 3, 3))
    joints[:, :, 0] = np.arange(frames)[:, None]  # every joint travels with the root
    joints[:, 1, 1] = 1.0
    joints[:, 2, 2] = np.cumsum([jumps.get(t, 0.0) for t in range(frames)])
    return joints


def test_seam_stats_measures_the_pose_change_into_each_seam_frame_relative_to_the_root():
    from sequence_seams import seam_stats

    joints = _walk_with_jumps(40, {5: 3.0, 20: 6.0, 30: 1.5})
    at, rest, near = seam_stats(joints, [20, 5], near=12)
    assert at == pytest.approx([1.0, 2.0])  # seams in frame order; 3 joints, one moved by 3 or 6
    assert len(rest) == 39 - 2 and max(rest) == pytest.approx(0.5) and sorted(rest)[-2] == 0.0
    assert near == pytest.approx([2.0, 1.0])  # per seam as given: changes 8..31 around 20, 0..16 around 5


def test_sequence_seams_prints_seam_against_elsewhere_per_transition(monkeypatch, capsys):
    import sequence_seams

    calls = []

    class Generator:
        def generate_sequence(self, texts, lengths, transition_frames, time_steps, cfg, seed):
            calls.append((len(texts), transition_frames, seed))
            # segments start at 0, 60 and 120; the pose jumps into both seams and once elsewhere
            joints = _walk_with_jumps(180, {60: 6.0, 120: 6.0, 90: 1.5})
            return types.SimpleNamespace(joints=joints[None], segments=[(0, 60), (60, 120), (120, 180)])

    monkeypatch.setattr(sequence_seams, "load_generator", lambda run: Generator())
    monkeypatch.setattr(sys, "argv", ["sequence_seams.py", "--run", "x", "--transition_frames", "0", "20",
                                      "--seeds", "2"])
    monkeypatch.setattr(torch, "set_num_threads", lambda threads: None)
    sequence_seams.main()
    assert len(calls) == 2 * 3 * 2 and {c[1] for c in calls} == {0, 20}
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["transition", "seam", "elsewhere", "ratio", "max", "near", "seam"]
    rest = 0.5 / 177  # one change of 0.5 among the 177 frames that are not seams
    for frames, line in zip((0, 20), lines[1:]):
        assert line.split() == [str(frames), "2.0000", f"{rest:.4f}", f"{2.0 / rest:.2f}", "2.0000"]
