"""ResidualVQ forward (MoMask's 6 x 512 codes of width 512): ours against the straightforward baseline.

- baseline: ``reference_impl.RefResidualVQ``, the MoMask computation: per layer, Gumbel-sampled codes and EMA
  statistics through a dense one-hot (512 x tokens) matrix multiplied with the latents.
- ours: ``models.residual_vq.ResidualVQ``: per-code sums by an accumulating ``index_put_``, ``bincount`` counts, Gumbel
  noise computed in place from one uniform draw.

Both in training mode (codebook updates, Gumbel sampling at temperature 0.5) and in eval mode (nearest codes, no
update). Quantize dropout is off here so that every call runs all 6 layers (it only skips work). Input: the latents of
a batch of 64-frame windows (16 tokens each), channel-last for ours, channel-first for the baseline.

    python bench/bench_rvq.py [--quick] [--batch_size 256]
"""

from __future__ import annotations

import random

import benchlib
import torch
from benchlib import Result, interleaved, median, peak_memory, speedup_row
from reference_impl import RefResidualVQ

from models.residual_vq import ResidualVQ

LAYERS, CODES, DIM = 6, 512, 512
TOKENS_PER_WINDOW = 16


def same_codes(ours: ResidualVQ, baseline: RefResidualVQ, z: torch.Tensor, z_first: torch.Tensor) -> None:
    """Give the baseline our codebooks, then check that both pick the same codes (eval mode). The Gumbel draws use
    the random stream differently on the two sides, so their codebooks part in training mode, and eval rows timed on
    other codebooks would not time the same work."""
    with torch.no_grad():
        for mine, theirs in zip(ours.layers, baseline.layers):
            theirs.codebook.copy_(mine.codebook)
        if not torch.equal(ours(z).indices, baseline(z_first)[3]):
            raise SystemExit("bench_rvq.py: with the same codebooks the baseline chose other codes than ours: the "
                             "two sides do not compute the same quantization")


def main() -> None:
    parser = benchlib.base_parser(__doc__.splitlines()[0])
    parser.add_argument("--batch_size", type=benchlib.positive_int, default=None,
                        help="default 256 (64 with --quick on CPU)")
    args = parser.parse_args()
    threads = benchlib.configure_threads()
    device = benchlib.resolve_device(args.device)
    batch = args.batch_size or (64 if args.quick and device.type == "cpu" else 256)
    reps = benchlib.reps_for(args)
    torch.manual_seed(0)
    random.seed(0)
    z = torch.randn(batch, TOKENS_PER_WINDOW, DIM, device=device)
    z_first = z.transpose(1, 2).contiguous()
    ours = ResidualVQ(LAYERS, CODES, DIM, quantize_dropout_prob=0.0, sample_codebook_temp=0.5).to(device)
    baseline = RefResidualVQ(LAYERS, CODES, DIM, dropout_prob=0.0, temperature=0.5).to(device)
    with torch.no_grad():  # codebooks initialised from a training batch, so that eval mode has codes to choose from
        ours.train()(z)
        baseline.train()(z_first)
    rows: list[Result] = []
    for mode in ("train", "eval"):
        ours.train(mode == "train")
        baseline.train(mode == "train")
        if mode == "eval":
            same_codes(ours, baseline, z, z_first)

        def run_ours() -> None:
            with torch.no_grad():
                ours(z)

        def run_baseline() -> None:
            with torch.no_grad():
                baseline(z_first)

        case = f"ResidualVQ {LAYERS}x{CODES} forward ({mode}), {batch * TOKENS_PER_WINDOW} tokens"
        fns = {"baseline": run_baseline, "ours": run_ours}
        times = interleaved(fns, reps, warmup=1, device=device)
        res = {k: Result("ResidualVQ", case, k, median(ts) * 1e3, "ms", [t * 1e3 for t in ts],
                         peak_memory(fns[k], device)) for k, ts in times.items()}
        rows.append(res["baseline"])
        rows.append(speedup_row("ResidualVQ", case, res["baseline"], res["ours"], None,
                                note="EMA sums by accumulating put vs one-hot matmul; Gumbel noise in place"
                                if mode == "train" else "bincount perplexity vs one-hot"))
    settings = {"batch": batch, "tokens": batch * TOKENS_PER_WINDOW, "layers": LAYERS, "codes": CODES, "dim": DIM,
                "rounds": reps, "threads": threads}
    benchlib.report(rows, args, device, "ResidualVQ forward", settings)


if __name__ == "__main__":
    main()
