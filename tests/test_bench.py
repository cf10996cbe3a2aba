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


def test_the_index_benchmark_reports_the_peak_of_the_open_not_what_stays(tmp_path):
    from bench_index import _open_in_fresh_process, write_corpus

    from utils.dataset_specs import get_dataset_spec
    from utils.datasets import MotionIndex

    write_corpus(tmp_path, 20)
    MotionIndex.build(get_dataset_spec("t2m", str(tmp_path)), "train", str(tmp_path), progress=False)
    opened = _open_in_fresh_process(tmp_path, "index")
    assert opened["clips"] == 20
    assert opened["peak_mb"] >= opened["rss_mb"]
