"""MARDM-SiT-XL and MARDM-DDPM-XL: training step and sampling time per motion.

Network: the registry XL variants (1024-wide transformer layer, 16 x 1792 diffusion MLP, 291M parameters) on the
512-d latents of the MARDM AE (``AE_Model``, untrained: the cost does not depend on the weights), text from the
384-d MiniLM encoder shipped with the project.

Training step (motion of up to 196 frames -> 49 tokens, encoded by the frozen AE at every step in both variants):

- baseline: the reference's way: captions encoded by the text encoder at every step, ``torch.optim.AdamW`` with
  MARDM's settings (betas (0.9, 0.99), weight decay 1e-5, as ours), fp32.
- ours: ``utils.generator_stage.GeneratorLoss`` with a ``CachedTextEncoder`` warmed once (the engine's
  ``warm_caption_cache``), the engine's fused AdamW (``utils.engine.make_optimizer``) and its checks of the loss and
  of the gradient norm for non-finite values (``benchlib.engine_update``), bf16 autocast on CUDA; on a
  CPU with bf16 instructions (AVX512-BF16 or AMX) also a row under bf16 autocast (``--mixed_precision bf16``).

Both variants train the same model instance (one copy of the 291M parameters in memory), each with its own optimizer;
each frees its gradients at the end of its step, as the engine does, so that every step starts from none.

Sampling (``MARDM.generate``, cfg 4.5; the same network, so no baseline on CPU): the published setting (49 tokens,
18 steps) takes minutes per motion on a CPU, so on CPU a short motion with few steps is measured (stated in the
table; one run with ``--quick``), and the published setting is estimated from measured parts: a denoiser evaluation
at two row counts (its cost is a fixed part, streaming 1 GB of weights, plus a part per row), the number of
evaluations per sampled token (DDPM: 50; SiT: as many as the adaptive solver used in the measured run), the rows each
of the 18 steps samples, and one transformer pass per step. With ``--quick`` on CPU the training step uses 64-frame
motions (16 tokens) instead of 196.

    python bench/bench_mardm.py [--quick] [--batch_size 2]
"""

from __future__ import annotations

import math
from collections.abc import Callable

import benchlib
import torch
from benchlib import Result, interleaved, median, peak_memory, speedup_row

from models.loader import Tokenizer
from models.mardm import MARDM_MODELS, num_masked_tokens
from models.text_encoders import CachedTextEncoder, MiniLMTextEncoder
from models.tokenizers import build_tokenizer
from utils.datasets import TextMotionBatch
from utils.engine import EngineConfig, make_optimizer
from utils.generator_stage import GeneratorLoss, warm_caption_cache

MODELS = ("MARDM-SiT-XL", "MARDM-DDPM-XL")
FRAMES, UNIT = 196, 4
PUBLISHED_STEPS, CFG = 18, 4.5
TARGET = 1.25
PART_ROUNDS = 5  # rounds per timed part of the sampling estimate: its median then survives two slow rounds
CAPTIONS = ["a person walks forward and then turns around", "someone jumps up twice with both feet",
            "a man waves his right hand while standing", "the person sits down on a chair slowly"]


def published_head_rows(tokens: int = FRAMES // UNIT, steps: int = PUBLISHED_STEPS) -> list[int]:
    """Rows the head samples at each step of a generation: the masked tokens, twice (guidance)."""
    rows = []
    for k in range(steps):
        tau = k / (steps - 1) if steps > 1 else 0.0
        ratio = torch.tensor([math.cos(math.pi * tau / 2)])
        rows.append(int(num_masked_tokens(torch.tensor([tokens]), ratio)) * 2)
    return rows


def sampling_rows(model, name: str, text_emb: torch.Tensor, tokens: int, steps: int, runs: int,
                  device: torch.device) -> list[Result]:
    """Time ``model.generate`` for one motion (``runs`` times; 0 skips it); on CPU add the estimate for the published
    setting."""
    cuda = device.type == "cuda"
    model.eval()
    lengths = torch.tensor([tokens], device=device)

    def sample() -> None:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cuda):
            model.generate(lengths, text_emb, time_steps=steps, cfg=CFG)

    rows = []
    process = model.head.process
    nfe = process.num_steps  # DDPM: every step; SiT: replaced by the adaptive solver's count once it has run
    if runs:
        times = interleaved({"ours": sample}, runs, warmup=1 if cuda else 0, device=device)["ours"]
        nfe = getattr(process, "last_num_evals", 0) or nfe
        rows.append(Result("MARDM", f"{name} sampling, 1 motion of {tokens} tokens, {steps} steps, cfg {CFG}", "ours",
                           median(times), "s", times, note=f"{runs} run(s); head evaluations per sampled token: {nfe}"))
    if cuda:
        return rows
    # A denoiser evaluation costs a + b * rows (streaming 1 GB of weights, then per-row work): fitted from two sizes,
    # summed over the tokens each of the published steps samples (x2 for guidance), plus one transformer pass per step.
    cost = {}
    for n in (8, 2 * FRAMES // UNIT):
        z = torch.randn(n, model.latent_dim, device=device)
        x = torch.randn(n, model.target_dim, device=device)
        t = torch.rand(n, device=device)

        def head(x=x, t=t, z=z) -> None:
            with torch.no_grad():
                model.head.net(x, t, z)

        cost[n] = median(interleaved({"head": head}, PART_ROUNDS, warmup=1)["head"])
    (n1, c1), (n2, c2) = cost.items()
    per_row = max((c2 - c1) / (n2 - n1), 0.0)
    fixed = max(c1 - per_row * n1, 0.0)
    latents = torch.zeros(2, FRAMES // UNIT, model.ae_dim, device=device)
    text = text_emb.expand(2, -1)
    valid = torch.ones(2, FRAMES // UNIT, dtype=torch.bool, device=device)

    def transformer() -> None:
        with torch.no_grad():
            model.encode(latents, text, valid)

    per_pass = median(interleaved({"transformer": transformer}, PART_ROUNDS, warmup=1)["transformer"])
    rows_per_step = published_head_rows()
    estimate = sum(nfe * (fixed + per_row * r) for r in rows_per_step) + PUBLISHED_STEPS * per_pass
    solver = "" if runs or model.head.diffusion == "ddpm" else " (SiT: fixed-step count; adaptive dopri5 varies)"
    rows.append(Result("MARDM", f"{name} sampling, 1 motion of {FRAMES // UNIT} tokens, {PUBLISHED_STEPS} steps, "
                                f"cfg {CFG}", "ours (estimate)", estimate, "s", [],
                       note=f"estimate from measured parts: {nfe} head evaluations{solver} x (fixed "
                            f"{fixed * 1e3:.0f} ms + {per_row * 1e3:.1f} ms per row) over {sum(rows_per_step)} rows "
                            f"in {PUBLISHED_STEPS} steps, + {PUBLISHED_STEPS} transformer passes of "
                            f"{per_pass * 1e3:.0f} ms"))
    return rows


def train_steps(model, loss_fn: GeneratorLoss, encoder, tokenizer, data: TextMotionBatch, device: torch.device,
                cpu_bf16: bool) -> dict[str, Callable[[], None]]:
    """One training step of ``model`` on ``data`` per variant: ``baseline``, ``ours`` and, with ``cpu_bf16``, ``ours,
    bf16 autocast``. They share ``model`` (each has its own optimizer), and each leaves its gradients freed, as the
    engine does after every step, so that the next variant's backward starts from none."""
    cuda = device.type == "cuda"
    # MARDM's weight decay on both sides (the generator stage's default); torch's default of 0.01 on the baseline
    # alone made the two sides take different steps.
    plain = torch.optim.AdamW(model.parameters(), lr=1e-4, betas=(0.9, 0.99), weight_decay=1e-5)
    fused = make_optimizer(model, EngineConfig(max_iters=1, lr=1e-4, weight_decay=1e-5))

    def baseline_step() -> None:
        with torch.no_grad():
            text_emb = encoder.encode(data.captions)
            latents = tokenizer.model.encode(data.motion)
        tokens = data.lengths // UNIT
        n = int(tokens.max())
        loss, _ = model(latents[:, :n], latents[:, :n], tokens, text_emb)
        plain.zero_grad()
        loss.backward()
        plain.step()
        # The reference frees its gradients at the start of its next step; here the next step is another variant's,
        # whose backward would add to them. Freed now, still inside the baseline's time.
        model.zero_grad(set_to_none=True)

    def ours_step(bf16: bool = cuda) -> None:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            loss, _ = loss_fn(model, data)
        benchlib.engine_update(loss, model, fused)

    fns = {"baseline": baseline_step, "ours": ours_step}
    if cpu_bf16:
        fns["ours, bf16 autocast"] = lambda: ours_step(bf16=True)
    return fns


def train_rows(model, name: str, loss_fn: GeneratorLoss, encoder, tokenizer, data: TextMotionBatch, reps: int,
               device: torch.device, cpu_bf16: bool) -> list[Result]:
    """Baseline and our training step of ``model`` on ``data``, interleaved, with their peak memory; ``cpu_bf16`` adds
    our step under bf16 autocast on a CPU with bf16 instructions."""
    params = sum(p.numel() for p in model.parameters()) / 1e6
    case = f"{name} train step, B={data.motion.shape[0]}, {data.motion.shape[1]} frames"
    fns = train_steps(model, loss_fn, encoder, tokenizer, data, device, cpu_bf16)
    times = interleaved(fns, reps, warmup=1, device=device)
    peaks = {k: peak_memory(fn, device, reset=lambda: model.zero_grad(set_to_none=True)) for k, fn in fns.items()}
    res = {k: Result("MARDM", case, k, median(ts), "s", ts, peaks[k]) for k, ts in times.items()}
    ours = speedup_row("MARDM", case, res["baseline"], res["ours"], TARGET, memory_must_not_grow=True,
                       note=f"{params:.0f}M params")
    extra = [speedup_row("MARDM", case, res["baseline"], res[k], TARGET, memory_must_not_grow=True)
             for k in res if k not in ("baseline", "ours")]
    return [res["baseline"], ours, *extra]


def main() -> None:
    parser = benchlib.base_parser(__doc__.splitlines()[0])
    parser.add_argument("--batch_size", type=benchlib.positive_int, default=None,
                        help="default 64 on CUDA, 1 (--quick) / 2 on CPU")
    parser.add_argument("--train_models", default=None, help="models whose training step is timed (default: both; "
                                                                "MARDM-SiT-XL with --quick on CPU)")
    args = parser.parse_args()
    threads = benchlib.configure_threads()
    device = benchlib.resolve_device(args.device)
    cuda = device.type == "cuda"
    cpu_bf16 = not cuda and benchlib.native_bf16(device)
    batch = args.batch_size or (64 if cuda else (1 if args.quick else 2))
    frames = 64 if args.quick and not cuda else FRAMES  # --quick on CPU: 16 tokens, to keep the suite short
    reps = benchlib.reps_for(args)
    sample_tokens, sample_steps = (FRAMES // UNIT, PUBLISHED_STEPS) if cuda else ((4, 1) if args.quick else (8, 2))
    # --quick on CPU: the training step of one XL model (both share the network and its size) and the sampling
    # estimates only, so that the suite stays short; the full run measures everything.
    train_models = [MODELS[0]] if args.quick and not cuda else list(MODELS)
    if args.train_models:
        train_models = benchlib.names_from(args.train_models, "--train_models", MODELS, parser)
    sample_runs = reps if cuda or not args.quick else 0

    torch.manual_seed(0)
    tokenizer = Tokenizer(build_tokenizer("AE_Model"), "AE_Model", source="bench").to(device)
    encoder = MiniLMTextEncoder(device=device)
    cached = CachedTextEncoder(encoder)
    captions = [CAPTIONS[i % len(CAPTIONS)] for i in range(batch)]
    warm_caption_cache(cached, captions, progress=False)
    motion = torch.randn(batch, frames, 67, device=device)
    lengths = torch.tensor([frames - 4 * (i % 4) * 4 for i in range(batch)], device=device)
    data = TextMotionBatch(captions, motion, lengths)
    loss_fn = GeneratorLoss(tokenizer, cached)

    rows: list[Result] = []
    for name in MODELS:
        model = MARDM_MODELS[name](tokenizer.latent_dim, tokenizer.latent_dim, encoder.dim).to(device).train()
        if name in train_models:
            rows += train_rows(model, name, loss_fn, encoder, tokenizer, data, reps, device, cpu_bf16)
        rows += sampling_rows(model, name, cached.encode(captions[:1]), sample_tokens, sample_steps, sample_runs,
                              device)
        del model
        benchlib.release_freed_memory()

    settings = {"batch": batch, "frames": frames, "text_encoder": f"MiniLM ({encoder.dim}-d)", "rounds": reps,
                "threads": threads, "precision": "bf16 autocast (ours)" if cuda else
                "fp32" + (" (+ bf16 autocast training rows)" if cpu_bf16 else "")}
    benchlib.report(rows, args, device, "MARDM-XL training step and sampling", settings)


if __name__ == "__main__":
    main()
