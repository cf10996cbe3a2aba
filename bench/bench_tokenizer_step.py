"""Training step of the four published tokenizers: the straightforward baseline against ours.

One step = forward, the README loss (SmoothL1 + 0.5 joint-position + 0.02 commitment), backward, AdamW update.

- baseline: ``reference_impl.reference_tokenizer`` (channel-first conv stack; T2M-GPT / MoMask EMA codebooks whose
  statistics go through a dense one-hot and a matmul; MotionMillion FSQ with a dense one-hot perplexity over its
  64,000 codes), ``torch.optim.AdamW`` with default settings, fp32.
- ours: the registry model (``models.tokenizers.build_tokenizer``), the engine's optimizer
  (``utils.engine.make_optimizer``: fused AdamW), ``utils.losses.tokenizer_loss``, the engine's checks of the loss and
  of the gradient norm for non-finite values (``benchlib.engine_update``); bf16 autocast on CUDA (the
  engine's ``--mixed_precision bf16``), fp32 on CPU, the baseline's precision.
- ours, bf16 autocast (CPU rows, only on a CPU with bf16 instructions, AVX512-BF16 or AMX): the same step under
  ``--mixed_precision bf16``, which the engine also offers on CPU. An AVX2 CPU has no bf16 arithmetic, and the row
  is left out there.
- ``--compile`` adds a row with ``torch.compile`` (``utils.engine.compile_model``).

Published width: 512 channels, batch 256, window 64. On CPU the batch is smaller (``--batch_size``, default 8 with
``--quick``, 32 otherwise) and stated in the table.

    python bench/bench_tokenizer_step.py [--quick] [--batch_size 32] [--models VQVAE,AE_Model] [--compile]
"""

from __future__ import annotations

import benchlib
import torch
from benchlib import Result, interleaved, median, peak_memory, speedup_row
from tokenizer_steps import MODELS, TARGET, WINDOW, baseline_step, ours_step

from utils.dataset_specs import DATASETS


def main() -> None:
    parser = benchlib.base_parser(__doc__.splitlines()[0])
    parser.add_argument("--batch_size", type=benchlib.positive_int, default=None,
                        help="default: 256 on CUDA, 8 (--quick) / 32 on CPU")
    parser.add_argument("--models", default=",".join(MODELS), help="comma-separated registry names")
    parser.add_argument("--compile", action="store_true", help="also time ours under torch.compile (slow to build)")
    args = parser.parse_args()
    models = benchlib.names_from(args.models, "--models", list(MODELS), parser)
    threads = benchlib.configure_threads()
    device = benchlib.resolve_device(args.device)
    batch = args.batch_size or (256 if device.type == "cuda" else (8 if args.quick else 32))
    reps = benchlib.reps_for(args)
    cpu_bf16 = device.type == "cpu" and benchlib.native_bf16(device)

    rows: list[Result] = []
    for name in models:
        label, dataset = MODELS[name]
        spec = DATASETS[dataset]
        motion = torch.randn(batch, WINDOW, spec.dim_pose, device=device)
        case = f"{label} B={batch} T={WINDOW}"
        variants = {"baseline": baseline_step(name, motion, device), "ours": ours_step(name, motion, device)}
        if cpu_bf16:
            variants["ours, bf16 autocast"] = ours_step(name, motion, device, bf16=True)
        if args.compile:
            variants["ours+compile"] = ours_step(name, motion, device, compiled=True)
        steps = {k: v[0] for k, v in variants.items()}
        times = interleaved(steps, reps, warmup=1, device=device)
        peaks = {k: peak_memory(steps[k], device, reset=lambda m=v[1]: m.zero_grad(set_to_none=True))
                 for k, v in variants.items()}
        results = {k: Result("tokenizer train step", case, k, median(ts), "s", ts, peaks[k]) for k, ts in
                   times.items()}
        params = sum(p.numel() for p in variants["ours"][1].parameters()) / 1e6
        rows.append(results["baseline"])
        rows.append(speedup_row("tokenizer train step", case, results["baseline"], results["ours"], TARGET,
                                memory_must_not_grow=True, note=f"{params:.1f}M params"))
        for extra in ("ours, bf16 autocast", "ours+compile"):
            if extra in results:
                rows.append(speedup_row("tokenizer train step", case, results["baseline"], results[extra],
                                        TARGET, memory_must_not_grow=True))
        del variants, steps
        benchlib.release_freed_memory()

    settings = {"batch": batch, "window": WINDOW, "width": 512, "rounds": reps, "threads": threads,
                "precision": "bf16 autocast (ours), fp32 (baseline)" if device.type == "cuda" else
                "fp32" + (" (+ a bf16 autocast row: this CPU has bf16 instructions)" if cpu_bf16 else
                          " (this CPU has no bf16 instructions)")}
    benchlib.report(rows, args, device, "Tokenizer training step (forward + loss + backward + AdamW)", settings)


if __name__ == "__main__":
    main()
