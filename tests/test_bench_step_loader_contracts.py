"""What each side of the loader, index, MARDM and tokenizer-step benchmarks is given: the same inputs, modes, batch
settings and optimizer settings on both sides, rows that divide the baseline by ours, and the MARDM sampling estimate
built from the parts it names."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pytest
import torch

# The benchmarks import each other as top-level modules (``python bench/<name>.py``).
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))

import bench_index  # noqa: E402
import bench_loader  # noqa: E402
import bench_mardm  # noqa: E402
import bench_tokenizer_step  # noqa: E402
import benchlib  # noqa: E402
import tokenizer_steps  # noqa: E402
from test_bench import _fixed_text_encoder  # noqa: E402

from models.loader import Tokenizer  # noqa: E402
from models.mardm import MARDM_MODELS  # noqa: E402
from models.text_encoders import CachedTextEncoder  # noqa: E402
from models.tokenizers import TokenizerOutput, build_tokenizer  # noqa: E402
from utils.dataset_specs import get_dataset_spec  # noqa: E402
from utils.datasets import MotionIndex, TextMotionBatch  # noqa: E402
from utils.generator_stage import GeneratorLoss, warm_caption_cache  # noqa: E402


def _run_main(module, argv: list[str], monkeypatch) -> None:
    monkeypatch.setattr(sys, "argv", [f"{module.__name__}.py", *argv])
    module.main()


# ---------------------------------------------------------------------------------------------------------------------
# Tokenizer training step: both sides train, on the same motion
# ---------------------------------------------------------------------------------------------------------------------

class _ModeTokenizer(torch.nn.Module):
    """A linear tokenizer that records whether its forward ran in training mode."""

    def __init__(self, dim: int, ours: bool) -> None:
        super().__init__()
        self.linear, self.ours, self.modes = torch.nn.Linear(dim, dim), ours, []

    def forward(self, x: torch.Tensor):
        self.modes.append(self.training)
        recon, zero = self.linear(x), x.new_zeros(())
        return TokenizerOutput(recon, zero, zero, recon) if self.ours else (recon, zero, zero)


def test_both_tokenizer_steps_run_their_model_in_training_mode(monkeypatch):
    monkeypatch.setattr(tokenizer_steps, "reference_tokenizer", lambda n: _ModeTokenizer(67, ours=False).eval())
    monkeypatch.setattr(tokenizer_steps, "build_tokenizer", lambda n, input_width: _ModeTokenizer(input_width,
                                                                                                  True).eval())
    motion = torch.randn(2, 8, 67, generator=torch.Generator().manual_seed(0))
    for build in (tokenizer_steps.baseline_step, tokenizer_steps.ours_step):
        step, model = build("AE_Model", motion, torch.device("cpu"))
        step()
        assert model.modes == [True]


def test_both_tokenizer_steps_take_the_joint_positions_of_the_model_s_dataset(monkeypatch):
    """A tokenizer of a dataset whose joint positions sit elsewhere (MotionMillion: features 8 to 74)."""
    monkeypatch.setitem(tokenizer_steps.MODELS, "AE_Model", ("MotionMillion AE", "motionmillion"))
    monkeypatch.setattr(tokenizer_steps, "reference_tokenizer", lambda n: _ModeTokenizer(272, ours=False))
    monkeypatch.setattr(tokenizer_steps, "build_tokenizer", lambda n, input_width: _ModeTokenizer(input_width, True))
    motion = torch.randn(2, 8, 272, generator=torch.Generator().manual_seed(1))
    base_step, base = tokenizer_steps.baseline_step("AE_Model", motion, torch.device("cpu"))
    our_step, ours = tokenizer_steps.ours_step("AE_Model", motion, torch.device("cpu"))
    for _ in range(2):
        base_step()
        our_step()
    torch.testing.assert_close(base.linear.weight, ours.linear.weight)


def _fake_tokenizer_bench(monkeypatch, native_bf16: bool) -> tuple[list, list]:
    """Run ``bench_tokenizer_step.main`` on recorded fake steps: (builder calls, report rows)."""
    calls, reported = [], []

    def builder(side):
        def build(name, motion, device, **kwargs):
            model = torch.nn.Linear(1, 1)
            model.weight.grad = torch.ones_like(model.weight)
            calls.append((side, name, motion, kwargs, model))
            return (lambda: None), model
        return build

    def peak_memory(fn, device, reset):
        reset()
        return float(len(calls))

    seconds = {"baseline": 2.0, "ours": 0.5, "ours, bf16 autocast": 0.25, "ours+compile": 1.0}
    monkeypatch.setattr(bench_tokenizer_step, "baseline_step", builder("baseline"))
    monkeypatch.setattr(bench_tokenizer_step, "ours_step", builder("ours"))
    monkeypatch.setattr(bench_tokenizer_step, "interleaved",
                        lambda fns, reps, **kw: {k: [seconds[k]] * reps for k in fns})
    monkeypatch.setattr(bench_tokenizer_step, "peak_memory", peak_memory)
    monkeypatch.setattr(benchlib, "native_bf16", lambda device: native_bf16)
    monkeypatch.setattr(benchlib, "report", lambda rows, *args: reported.extend(rows))
    _run_main(bench_tokenizer_step, ["--models", "VQVAE,AE_Model", "--batch_size", "3", "--reps", "1", "--compile"],
              monkeypatch)
    return calls, reported


@pytest.mark.parametrize("native_bf16", [True, False])
def test_tokenizer_bench_gives_every_variant_the_same_motion_and_its_own_setting(native_bf16, monkeypatch):
    calls, rows = _fake_tokenizer_bench(monkeypatch, native_bf16)
    for name, width in (("VQVAE", 263), ("AE_Model", 67)):
        mine = [c for c in calls if c[1] == name]
        assert [(side, kwargs) for side, _, _, kwargs, _ in mine] == [
            ("baseline", {}), ("ours", {}), *([("ours", {"bf16": True})] if native_bf16 else []),
            ("ours", {"compiled": True})]
        assert all(c[2] is mine[0][2] for c in mine) and mine[0][2].shape == (3, tokenizer_steps.WINDOW, width)
    assert all(model.weight.grad is None for *_, model in calls)  # each peak starts from freed gradients
    ratios = {(row.case.split()[0], row.variant): row.ratio for row in rows if row.variant != "baseline"}
    expected = {"ours": 4.0, "ours+compile": 2.0, **({"ours, bf16 autocast": 8.0} if native_bf16 else {})}
    assert ratios == {(case, k): pytest.approx(v) for case in ("T2M-GPT", "MARDM") for k, v in expected.items()}


# ---------------------------------------------------------------------------------------------------------------------
# MARDM training step: the baseline feeds the model what our loss feeds it, with the same optimizer settings
# ---------------------------------------------------------------------------------------------------------------------

def _tiny_mardm_steps(monkeypatch, cpu_bf16: bool = False):
    torch.manual_seed(0)
    tokenizer = Tokenizer(build_tokenizer("AE_Tiny"), "AE_Tiny", source="test")
    encoder = _fixed_text_encoder()
    encoder.encode = lambda texts: torch.arange(len(texts) * encoder.dim, dtype=torch.float32).view(len(texts), -1)
    cached = CachedTextEncoder(encoder)
    captions = ["a person walks", "a person jumps"]
    warm_caption_cache(cached, captions, progress=False)
    data = TextMotionBatch(captions, torch.randn(2, 32, 67), torch.tensor([32, 24]))
    model = MARDM_MODELS["MARDM-SiT-Tiny"](tokenizer.latent_dim, tokenizer.latent_dim, encoder.dim).train()
    optimizers = []
    real_adamw = torch.optim.AdamW

    def adamw(params, **kwargs):
        optimizers.append({k: v for k, v in kwargs.items() if k != "fused"})
        return real_adamw(params, **kwargs)

    monkeypatch.setattr(torch.optim, "AdamW", adamw)
    fns = bench_mardm.train_steps(model, GeneratorLoss(tokenizer, cached), encoder, tokenizer, data,
                                  torch.device("cpu"), cpu_bf16=cpu_bf16)
    return model, fns, optimizers


def test_the_mardm_baseline_step_gives_the_model_what_our_loss_gives_it(monkeypatch):
    model, fns, optimizers = _tiny_mardm_steps(monkeypatch)
    seen = {}

    def record(name):
        def hook(module, args, kwargs):
            seen[name] = (args, torch.is_autocast_enabled("cpu"), module.training)
        return hook

    for name in ("baseline", "ours"):
        handle = model.register_forward_pre_hook(record(name), with_kwargs=True)
        fns[name]()
        handle.remove()
    (base, base_autocast, base_training), (ours, ours_autocast, ours_training) = seen["baseline"], seen["ours"]
    assert len(base) == len(ours) == 4  # latents, targets, lengths in tokens, text embedding
    for mine, theirs in zip(ours, base):
        torch.testing.assert_close(theirs, mine)
    assert ours[2].tolist() == [8, 6] and ours[3].shape == (2, 8)
    assert not base_autocast and not ours_autocast  # fp32 on CPU, both sides
    assert base_training and ours_training
    assert [(o["lr"], o["betas"]) for o in optimizers] == [(1e-4, (0.9, 0.99))] * 2


def test_the_mardm_bf16_variant_autocasts_only_where_it_says_so(monkeypatch):
    model, fns, _ = _tiny_mardm_steps(monkeypatch, cpu_bf16=True)
    seen = []
    model.register_forward_pre_hook(lambda module, args: seen.append(torch.is_autocast_enabled("cpu")))
    fns["ours"]()
    fns["ours, bf16 autocast"]()
    assert seen == [False, True]


def test_the_mardm_training_row_divides_the_baseline_by_ours(monkeypatch):
    model, fns, _ = _tiny_mardm_steps(monkeypatch)
    seconds = {"baseline": 3.0, "ours": 1.5}
    monkeypatch.setattr(bench_mardm, "train_steps", lambda *args: fns)
    monkeypatch.setattr(bench_mardm, "interleaved", lambda fns, reps, **kw: {k: [seconds[k]] * reps for k in fns})
    monkeypatch.setattr(bench_mardm, "peak_memory", lambda fn, device, reset: 1.0)
    rows = bench_mardm.train_rows(model, "tiny", None, None, None, TextMotionBatch([], torch.zeros(2, 32, 67), None),
                                  2, torch.device("cpu"), False)
    assert [row.variant for row in rows] == ["baseline", "ours"] and rows[1].ratio == pytest.approx(2.0)


def test_the_mardm_bench_trains_each_model_in_training_mode_on_one_batch(monkeypatch):
    trained, sampled = [], []

    def train_rows(model, name, loss_fn, encoder, tokenizer, data, reps, device, cpu_bf16):
        trained.append((name, model.training, data, cpu_bf16))
        return []

    def sampling_rows(model, name, text_emb, tokens, steps, runs, device):
        sampled.append((name, tuple(text_emb.shape), tokens, steps, runs))
        return []

    tiny = {"MARDM-SiT-XL": MARDM_MODELS["MARDM-SiT-Tiny"], "MARDM-DDPM-XL": MARDM_MODELS["MARDM-DDPM-Tiny"]}
    monkeypatch.setattr(bench_mardm, "build_tokenizer", lambda name: build_tokenizer("AE_Tiny"))
    monkeypatch.setattr(bench_mardm, "MiniLMTextEncoder", lambda device: _fixed_text_encoder())
    monkeypatch.setattr(bench_mardm, "MARDM_MODELS", tiny)
    monkeypatch.setattr(bench_mardm, "train_rows", train_rows)
    monkeypatch.setattr(bench_mardm, "sampling_rows", sampling_rows)
    monkeypatch.setattr(benchlib, "native_bf16", lambda device: False)
    monkeypatch.setattr(benchlib, "report", lambda *args: None)
    _run_main(bench_mardm, ["--batch_size", "3", "--reps", "1"], monkeypatch)
    assert [(name, training, cpu_bf16) for name, training, _, cpu_bf16 in trained] == [
        ("MARDM-SiT-XL", True, False), ("MARDM-DDPM-XL", True, False)]
    data = trained[0][2]
    assert data is trained[1][2] and data.motion.shape == (3, 196, 67) and data.lengths.tolist() == [196, 180, 164]
    assert sampled == [("MARDM-SiT-XL", (1, 8), 8, 2, 1), ("MARDM-DDPM-XL", (1, 8), 8, 2, 1)]


# ---------------------------------------------------------------------------------------------------------------------
# MARDM sampling estimate
# ---------------------------------------------------------------------------------------------------------------------

def test_published_head_rows_are_the_masked_tokens_of_each_step_twice():
    rows = bench_mardm.published_head_rows(49, 18)
    taus = torch.linspace(0, 1, 18).tolist()
    assert rows == [2 * max(round(math.cos(math.pi * tau / 2) * 49), 1) for tau in taus]
    assert rows[0] == 98 and rows[-1] == 2


def test_the_sampling_estimate_sums_the_fitted_head_cost_over_the_published_steps(monkeypatch):
    torch.manual_seed(0)
    model = MARDM_MODELS["MARDM-DDPM-Tiny"](16, 16, 8).train()
    fixed, per_row, per_pass = 0.5, 0.01, 0.25

    def fake_interleaved(fns, reps, **kwargs):
        ((name, fn),) = fns.items()
        cost = per_pass if name == "transformer" else fixed + per_row * fn.__defaults__[0].shape[0]
        return {name: [cost] * reps}

    monkeypatch.setattr(bench_mardm, "interleaved", fake_interleaved)
    (row,) = bench_mardm.sampling_rows(model, "tiny", torch.zeros(1, 8), 4, 1, 0, torch.device("cpu"))
    nfe = model.head.process.num_steps
    expected = sum(nfe * (fixed + per_row * r) for r in bench_mardm.published_head_rows()) + 18 * per_pass
    assert row.value == pytest.approx(expected) and not model.training


# ---------------------------------------------------------------------------------------------------------------------
# Data loader: both streams get the same workers and pinning, and the baseline shuffles and drops the short batch
# ---------------------------------------------------------------------------------------------------------------------

def test_both_loader_streams_get_the_workers_and_pinning_asked_for(monkeypatch):
    made = []
    monkeypatch.setattr(bench_loader, "DataLoader", lambda dataset, **kw: made.append(("baseline", kw)) or [])

    class Loader:
        def __init__(self, dataset, collate, workers, pin):
            made.append(("ours", {"num_workers": workers, "pin_memory": pin}))

        def epoch(self, sampler):
            made.append(("epoch", sampler.perm.tolist()))
            return iter([sampler])

        def close(self) -> None:
            pass

    monkeypatch.setattr(bench_loader, "EpochLoader", Loader)
    monkeypatch.setattr(bench_loader, "BATCH", 2)
    bench_loader.baseline_stream(list(range(5)), 2, True)
    stream = bench_loader.ours_stream(list(range(5)), 2, True)
    for _ in range(3):
        next(stream)
    assert made[0] == ("baseline", {"batch_size": 2, "shuffle": True, "drop_last": True, "num_workers": 2,
                                    "pin_memory": True})
    assert made[1] == ("ours", {"num_workers": 2, "pin_memory": True})
    perms = [perm for kind, perm in made if kind == "epoch"]
    assert perms == [bench_loader.EpochBatchSampler(5, 2, 0, epoch).perm.tolist() for epoch in (0, 1, 2)]


def test_the_loader_bench_gives_both_sides_the_same_clips_windows_and_workers(tmp_path, monkeypatch):
    streams, seconds = [], {"baseline": 0.02, "ours": 0.01, "step": 1.0}

    def fake_stream(side):
        def make(dataset, workers, pin):
            streams.append((side, dataset, workers, pin))
            return bench_loader.Stream(lambda: iter([None]))
        return make

    def fake_interleaved(fns, reps, **kw):
        scale = 2.0 if streams[-1][2] == 0 else 1.0  # the in-process rows twice as slow
        return {k: [seconds[k] * (scale if k != "step" else 1.0)] * reps for k in fns}

    rows = []
    monkeypatch.setattr(benchlib, "BENCH_TMP", str(tmp_path / "scratch"))
    monkeypatch.setattr(bench_loader, "BATCH", 8)
    monkeypatch.setattr(bench_loader, "baseline_stream", fake_stream("baseline"))
    monkeypatch.setattr(bench_loader, "ours_stream", fake_stream("ours"))
    monkeypatch.setattr(bench_loader, "interleaved", fake_interleaved)
    monkeypatch.setattr(bench_loader, "ours_step", lambda *args, **kwargs: (lambda: None, None))
    monkeypatch.setattr(benchlib, "report", lambda r, *args: rows.extend(r))
    _run_main(bench_loader, ["--quick", "--clips", "12", "--reps", "1"], monkeypatch)
    listed = next(d for side, d, *_ in streams if side == "baseline")
    ours = next(d for side, d, *_ in streams if side == "ours")
    assert listed.window == ours.window_size == bench_loader.WINDOW and ours.mode == "random"
    assert len(listed) == len(ours) == 12
    assert sorted({(side, w, pin) for side, _, w, pin in streams}) == [
        ("baseline", 0, False), ("baseline", 2, False), ("ours", 0, False), ("ours", 2, False)]
    per_batch = [row for row in rows if row.case.startswith("ms per batch") and row.variant == "ours"]
    assert [row.ratio for row in per_batch] == pytest.approx([2.0, 2.0])
    fraction = next(row for row in rows if row.unit == "%")
    loader_ms_per_window = 0.01 / 10 * 1e3 / 8  # ours with 2 workers: 10 batches of 8 in 0.01 s
    step_ms_per_window = 1.0 * 1e3 / 8  # a 1 s step on the --quick CPU batch of 8
    assert fraction.value == pytest.approx(100 * loader_ms_per_window / step_ms_per_window)


# ---------------------------------------------------------------------------------------------------------------------
# Index: the baseline loads the list, ours opens the index, both over every clip
# ---------------------------------------------------------------------------------------------------------------------

def test_both_index_bench_children_open_every_clip_of_the_split(tmp_path, capsys):
    bench_index.write_corpus(tmp_path, 5)
    MotionIndex.build(get_dataset_spec("t2m", str(tmp_path)), "train", str(tmp_path), progress=False)
    opened = {}
    for what in ("index", "list"):
        bench_index.child(what, str(tmp_path))
        opened[what] = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["clips"]
    assert opened == {"index": 5, "list": 5}


def test_the_index_bench_times_the_list_for_the_baseline_and_checks_the_clip_count(tmp_path, monkeypatch):
    opened, rows = [], []

    def fake_open(root, what, clips=5):
        opened.append(what)
        return {"seconds": 1e-5 if what == "index" else 4e-5, "peak_mb": 1e-3, "rss_mb": 0.0, "clips": clips}

    monkeypatch.setattr(benchlib, "BENCH_TMP", str(tmp_path / "scratch"))
    monkeypatch.setattr(bench_index, "_open_in_fresh_process", fake_open)
    monkeypatch.setattr(benchlib, "report", lambda r, *args: rows.extend(r))
    _run_main(bench_index, ["--clips", "5", "--with_baseline"], monkeypatch)
    assert opened == ["index", "list"]
    assert rows[0].value == pytest.approx(4e-5 * 200_000) and rows[1].value == pytest.approx(2.0)
    assert rows[1].ratio == pytest.approx(4.0) and rows[1].met and rows[1].peak_mb == pytest.approx(200.0)
    monkeypatch.setattr(bench_index, "_open_in_fresh_process", lambda root, what: fake_open(root, what, clips=4))
    with pytest.raises(RuntimeError, match="holds 4 clips, expected 5"):
        _run_main(bench_index, ["--clips", "5"], monkeypatch)


# ---------------------------------------------------------------------------------------------------------------------
# The MARDM step's two optimizers
# ---------------------------------------------------------------------------------------------------------------------

_SETTINGS = ("lr", "betas", "eps", "weight_decay", "amsgrad", "maximize")


def test_the_mardm_baseline_and_our_optimizer_take_the_same_step_settings(monkeypatch):
    """torch's AdamW default weight decay of 0.01 made the baseline decay its weights while ours did not, so the two
    sides of the ratio took different steps."""
    torch.manual_seed(0)
    tokenizer = Tokenizer(build_tokenizer("AE_Tiny"), "AE_Tiny", source="test")
    encoder = _fixed_text_encoder()
    data = TextMotionBatch(["a person walks"], torch.randn(1, 16, 67), torch.tensor([16]))
    model = MARDM_MODELS["MARDM-SiT-Tiny"](tokenizer.latent_dim, tokenizer.latent_dim, encoder.dim).train()
    made = []
    real_adamw = torch.optim.AdamW
    monkeypatch.setattr(torch.optim, "AdamW", lambda params, **kwargs: made.append(real_adamw(params, **kwargs))
                        or made[-1])
    bench_mardm.train_steps(model, GeneratorLoss(tokenizer, CachedTextEncoder(encoder)), encoder, tokenizer, data,
                            torch.device("cpu"), cpu_bf16=False)
    baseline, ours = ({k: group[k] for k in _SETTINGS} for optimizer in made for group in optimizer.param_groups)
    assert len(made) == 2 and baseline == ours
    assert ours["weight_decay"] == 1e-5  # what the generator stage trains with (options/generator_options.py)
