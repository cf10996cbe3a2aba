"""FSQ quantize + indices: ours against vector-quantize-pytorch's FSQ, and the dense one-hot perplexity baseline.

Input: the latents of a training batch of ``FSQ_AE_High`` (batch 256 windows of 64 frames -> 16 tokens each),
levels [8, 8, 8, 5, 5, 5] (64,000 codes), either already projected to the L = 6 FSQ dims (the quantizer alone) or
512-channel with the 512 <-> 6 projections of both layers (same weights). Timed calls:

- ``quantize+indices fwd+bwd``: bound, round, indices (and the projections), ``sum()`` backward: our
  ``encode_codes`` (+ ``codes_to_latents``) against their ``forward``, the same work.
- ``indices only`` (no gradient): the tokenization call of a generator's data pipeline: our ``quantize`` against
  their ``project_in``, ``quantize`` and ``codes_to_indices`` (their ``forward`` without its ``project_out``, which
  an indices-only call does not need).
- ``layer fwd+bwd with usage stats``: our ``forward``, which also counts code usage and the perplexity (its
  interface), against their ``forward``; shown without a target, since ours does more.
- ``perplexity``: ours (counts of the codes present) against MotionMillion's dense one-hot of 64,000 x tokens floats
  (``reference_impl.dense_perplexity``), whose memory grows with the batch (about 1 GB at batch 256).

Each timed call returns what it computed (``fsq_calls``, ``perplexity_calls``), and the check column compares the
two sides' indices from those same calls.

Needs ``pip install -r bench/requirements.txt`` (vector-quantize-pytorch); without it those rows are skipped, and
the table and the log say so.

    python bench/bench_fsq.py [--quick] [--batch_size 256]
"""

from __future__ import annotations

from collections.abc import Callable
from importlib import metadata

import benchlib
import torch
from benchlib import Result, interleaved, median, peak_memory, speedup_row
from reference_impl import dense_perplexity
from torch import Tensor

from models.fsq import FSQ
from models.quantizers import perplexity_from_counts, present_code_counts

LEVELS = [8, 8, 8, 5, 5, 5]
DIM = 512
TOKENS_PER_WINDOW = 16  # 64 frames, 4x downsampling
LAYER_CASE = "layer fwd+bwd with usage stats"  # ours does more than theirs here: shown without a target
MISSING = "vector-quantize-pytorch is not installed: its comparison rows are skipped " \
          "(pip install -r bench/requirements.txt)"


def _their_fsq_class() -> type | None:
    """vector-quantize-pytorch's ``FSQ``, or None where the package is not installed."""
    try:
        from vector_quantize_pytorch import FSQ as LucidrainsFSQ
    except ImportError:
        return None
    return LucidrainsFSQ


def _their_version() -> str:
    try:
        return metadata.version("vector-quantize-pytorch")
    except metadata.PackageNotFoundError:  # importable without package metadata (e.g. a source checkout)
        return "version unknown"


def _layers(dim: int | None, device: torch.device, their_class: type):
    ours = FSQ(LEVELS, dim=dim).to(device).train()
    theirs = their_class(levels=LEVELS, dim=dim).to(device).train()
    if dim is not None:  # same projection weights, so both produce the same indices
        theirs.project_in.load_state_dict(ours.project_in.state_dict())
        theirs.project_out.load_state_dict(ours.project_out.state_dict())
    return ours, theirs


Call = Callable[[], tuple[Tensor | None, Tensor]]


def fsq_calls(ours: FSQ, theirs: torch.nn.Module, z: Tensor, z_grad: Tensor) -> dict[str, tuple[Call, Call]]:
    """The timed (ours, theirs) calls of each FSQ row, keyed by the row's case without its input suffix.

    ``z (B, N, dim)`` feeds the no-gradient calls, ``z_grad`` (the same values, a leaf that requires grad) the
    backward ones, each of which starts from freed gradients. Every call returns ``(quantized values or None,
    indices (B, N))``: the values are the coordinates ``(B, N, L)`` without projections and ``project_out``'s latents
    ``(B, N, dim)`` with them.
    """
    project = ours.dim != ours.num_dims

    def free_gradients(layer: torch.nn.Module) -> None:
        # Every backward call starts from no gradients, as a training step does after the engine freed them: both
        # sides share z_grad, and without this each backward would add to the gradient the other side left.
        z_grad.grad = None
        layer.zero_grad(set_to_none=True)

    def ours_train() -> tuple[Tensor, Tensor]:
        free_gradients(ours)
        codes, indices = ours.encode_codes(z_grad)
        out = ours.codes_to_latents(codes) if project else codes
        out.sum().backward()
        return out, indices

    def theirs_train() -> tuple[Tensor, Tensor]:
        free_gradients(theirs)
        out, indices = theirs(z_grad)
        out.sum().backward()
        return out, indices

    def ours_layer() -> tuple[Tensor, Tensor]:
        free_gradients(ours)
        out = ours(z_grad)
        out.z_q.sum().backward()
        return out.z_q, out.indices

    def ours_indices() -> tuple[None, Tensor]:
        return None, ours.quantize(z)

    def theirs_indices() -> tuple[None, Tensor]:
        # Their forward() minus project_out and the (B, N, dim) output it builds, which an indices-only call skips.
        with torch.no_grad():
            return None, theirs.codes_to_indices(theirs.quantize(theirs.project_in(z)))

    return {"quantize+indices fwd+bwd": (ours_train, theirs_train),
            "indices only (no grad)": (ours_indices, theirs_indices),
            LAYER_CASE: (ours_layer, theirs_train)}


def perplexity_calls(indices: Tensor, codebook_size: int) -> tuple[Callable[[], Tensor], Callable[[], Tensor]]:
    """(ours, the dense baseline): each returns the perplexity ``()`` of ``indices`` over ``codebook_size`` codes."""

    def ours() -> Tensor:
        return perplexity_from_counts(present_code_counts(indices)[1])

    def dense() -> Tensor:
        return dense_perplexity(indices, codebook_size)[0]

    return ours, dense


def main() -> None:
    # Calls take milliseconds: more rounds than the other benchmarks' 3 with --quick cost little.
    parser = benchlib.base_parser(__doc__.splitlines()[0], quick_reps=5, full_reps=5)
    parser.add_argument("--batch_size", type=benchlib.positive_int, default=256)
    args = parser.parse_args()
    threads = benchlib.configure_threads()
    device = benchlib.resolve_device(args.device)
    reps = benchlib.reps_for(args)
    inner = 20  # calls per timed round, so that one round is well above the timer's resolution
    tokens = args.batch_size * TOKENS_PER_WINDOW
    rows: list[Result] = []

    def repeat(fn):
        def run() -> None:
            for _ in range(inner):
                fn()
        return run

    def compare(case: str, mine, other, note: str) -> None:
        fns = {"vector-quantize-pytorch": repeat(other), "ours": repeat(mine)}
        times = interleaved(fns, reps, warmup=1, device=device)
        res = {k: Result("FSQ", case, k, median(ts) / inner * 1e3, "ms", [t / inner * 1e3 for t in ts],
                         peak_memory(fns[k], device)) for k, ts in times.items()}
        rows.append(res["vector-quantize-pytorch"])
        rows.append(speedup_row("FSQ", case, res["vector-quantize-pytorch"], res["ours"], 1.0, note=note))

    their_class = _their_fsq_class()
    if their_class is None:
        benchlib.progress(MISSING)
        rows.append(Result("FSQ", "quantize+indices against vector-quantize-pytorch", "vector-quantize-pytorch",
                           float("nan"), "ms", note=MISSING))
    torch.manual_seed(0)
    for dim, what in ((None, f"L={len(LEVELS)} inputs"), (DIM, f"with {DIM}<->{len(LEVELS)} projections")):
        if their_class is None:
            break
        ours, theirs = _layers(dim, device, their_class)
        z = torch.randn(args.batch_size, TOKENS_PER_WINDOW, dim or len(LEVELS), device=device)
        z_grad = z.clone().requires_grad_(True)
        calls = fsq_calls(ours, theirs, z, z_grad)
        for case, (mine, other) in calls.items():
            if case == LAYER_CASE:
                compare(f"{case}, {what}", mine, other,
                        "ours: forward() also counts code usage and perplexity, theirs computes neither")
                rows[-1].target, rows[-1].met = None, None  # extra work on our side: shown, not a target
                continue
            agree = float((mine()[1] == other()[1]).float().mean())  # the indices of the timed calls themselves
            compare(f"{case}, {what}", mine, other, f"same indices on {agree:.1%} of tokens")

    ours = FSQ(LEVELS, dim=DIM).to(device)
    with torch.no_grad():
        indices = ours.quantize(torch.randn(args.batch_size, TOKENS_PER_WINDOW, DIM, device=device))

    ours_perplexity, dense = perplexity_calls(indices, ours.codebook_size)

    case = f"perplexity, K={ours.codebook_size}"
    fns = {"baseline": dense, "ours": ours_perplexity}
    times = interleaved(fns, reps, warmup=1, device=device)
    res = {k: Result("FSQ", case, k, median(ts) * 1e3, "ms", [t * 1e3 for t in ts], peak_memory(fns[k], device))
           for k, ts in times.items()}
    rows.append(res["baseline"])
    rows.append(speedup_row("FSQ", case, res["baseline"], res["ours"], None,
                            note="counts of the codes present vs dense one-hot"))
    settings = {"batch": args.batch_size, "tokens": tokens, "levels": LEVELS, "rounds": reps,
                "calls_per_round": inner, "threads": threads,
                "vector-quantize-pytorch": _their_version() if their_class else MISSING}
    benchlib.report(rows, args, device, "FSQ quantize + indices", settings)


if __name__ == "__main__":
    main()
