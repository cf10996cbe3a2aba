"""What every benchmark shares: timing, peak memory, the machine description, result rows and the printed table.

Timing. Variants of one measurement (the straightforward baseline and ours) run interleaved, one call of each per
round after a warm-up call of each, so a change of machine load between rounds hits both alike; each reports the
median of its rounds and the ratio of the medians. The ratio is the number to compare across machines, not the time.

Memory. On CPU, ``peak_memory`` frees what the C allocator holds (``malloc_trim``), resets the kernel's high-water
mark of the resident set (``/proc/self/clear_refs``) and reads how far ``VmHWM`` rose above the resident set before
the call: the extra memory one call needs (activations, gradients, temporaries), not the model or data already
resident. For that one call glibc maps every allocation of 256 KiB or more on its own and unmaps it when freed, so
that the resident set follows the live tensors instead of the heap's history, and the call runs on a thread of its
own: glibc then serves it from another arena than the main thread's, whose heap the timed rounds left full of free
stretches that a tensor is carved from whatever the threshold (measured on the main thread after timed rounds, the
same tokenizer step read 6 or 105 MB depending on whether those stretches were resident; 79 to 81 MB on a thread of
its own, as with the threshold at 256 KiB from the start). On CUDA it is
``torch.cuda.max_memory_allocated`` above the allocation before the call.

Allocator. Timing and memory need glibc set differently. Mapping every large tensor afresh costs a page fault per
4 KiB at each allocation: it doubled the time of a tokenizer training step at batch 8 on CPU, and it charged the side
that allocates more for it, which distorted the ratios. A training run does not pay that: glibc raises its mmap
threshold past the sizes a program frees, and tensors come from the heap again. ``configure_threads`` therefore fixes
the threshold where glibc's own adjustment stops (32 MiB, the trim threshold at twice that), and every round is timed
in that state; ``peak_memory`` lowers it to 256 KiB for its call only. glibc cannot go back to adjusting by itself
once a value is set, hence the fixed values on both sides.
"""

from __future__ import annotations

import argparse
import ctypes
import datetime
import gc
import json
import math
import os
import platform
import shutil
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # the benchmarks run as ``python bench/<name>.py`` from any folder
    sys.path.insert(0, str(REPO))

import torch  # noqa: E402

from utils.atomic_io import atomic_write  # noqa: E402

MB = 2.0 ** 20
BENCH_TMP = os.environ.get("BENCH_TMP", "/tmp/fsq_mardm_bench")  # temporary corpora and caches live here


# ---------------------------------------------------------------------------------------------------------------------
# Results
# ---------------------------------------------------------------------------------------------------------------------

@dataclass
class Result:
    """One row of a benchmark table.

    ``value`` is the median of ``samples`` in ``unit``; ``ratio`` compares this row with its baseline row of the same
    ``case`` (``>1`` means ours is better: faster, or more throughput); ``target`` states the goal and ``met`` whether
    it was reached (None where no target applies).
    """

    bench: str
    case: str
    variant: str
    value: float
    unit: str
    samples: list[float] = field(default_factory=list)
    peak_mb: float | None = None
    ratio: float | None = None
    target: str | None = None
    met: bool | None = None
    note: str = ""


def median(values: Sequence[float]) -> float:
    """Median of a non-empty sequence."""
    return float(statistics.median(values))


def speedup_row(bench: str, case: str, baseline: Result, ours: Result, target_ratio: float | None,
                memory_must_not_grow: bool = False, note: str = "") -> Result:
    """Fill ``ours.ratio`` (baseline time / our time) and its target; returns ``ours``.

    With ``memory_must_not_grow`` the target also needs our peak memory to be at most the baseline's (5% slack for
    allocator granularity).
    """
    ours.ratio = baseline.value / ours.value if ours.value > 0 else float("inf")
    if target_ratio is not None:
        met = ours.ratio >= target_ratio
        target = f">= {target_ratio:g}x"
        if memory_must_not_grow and ours.peak_mb is not None and baseline.peak_mb is not None:
            met = met and ours.peak_mb <= 1.05 * baseline.peak_mb + 1.0
            target += ", mem <= baseline"
        ours.target, ours.met = target, met
    if note:
        ours.note = (ours.note + "; " + note).strip("; ")
    return ours


# ---------------------------------------------------------------------------------------------------------------------
# Threads, timing, memory
# ---------------------------------------------------------------------------------------------------------------------

def _libc() -> ctypes.CDLL | None:
    try:
        return ctypes.CDLL("libc.so.6")
    except OSError:
        return None


_LIBC = _libc()


_M_TRIM_THRESHOLD = -1  # mallopt parameter numbers (malloc.h)
_M_MMAP_THRESHOLD = -3
TIMING_MMAP_THRESHOLD = 32 * 2 ** 20  # glibc's DEFAULT_MMAP_THRESHOLD_MAX on 64-bit: where its own raising stops
MEMORY_MMAP_THRESHOLD = 256 * 1024


def set_mmap_threshold(threshold: int) -> bool:
    """Fix glibc's mmap threshold (and the trim threshold at twice it); False where there is no glibc ``mallopt``."""
    if _LIBC is None or not hasattr(_LIBC, "mallopt"):
        return False
    return bool(_LIBC.mallopt(_M_MMAP_THRESHOLD, threshold)) and bool(_LIBC.mallopt(_M_TRIM_THRESHOLD, 2 * threshold))


def configure_threads() -> int:
    """Use ``OMP_NUM_THREADS`` torch threads when set (the measurement runs set 2) and put glibc in the state every
    round is timed in (see the module docstring); returns the thread count in use."""
    set_mmap_threshold(TIMING_MMAP_THRESHOLD)
    value = os.environ.get("OMP_NUM_THREADS")
    if value and value.isdigit() and int(value) > 0:
        torch.set_num_threads(int(value))
    return torch.get_num_threads()


def synchronize(device: torch.device) -> None:
    """Wait for queued kernels on ``device`` (timings of asynchronous devices are meaningless otherwise)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def interleaved(fns: dict[str, Callable[[], Any]], reps: int, warmup: int = 1,
                device: torch.device | None = None) -> dict[str, list[float]]:
    """Seconds per call of every function: ``warmup`` untimed calls each, then ``reps`` rounds calling each once."""
    device = device or torch.device("cpu")
    for name, fn in fns.items():
        for _ in range(warmup):
            start = time.perf_counter()
            fn()
            progress(f"{name}: warm-up {time.perf_counter() - start:.3f} s")
    synchronize(device)
    times: dict[str, list[float]] = {name: [] for name in fns}
    for r in range(reps):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            synchronize(device)
            times[name].append(time.perf_counter() - start)
            progress(f"{name}: round {r + 1}/{reps} {times[name][-1]:.3f} s")
    return times


def engine_update(loss: torch.Tensor, model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> None:
    """Backward and optimizer update of ``loss`` as ``utils.engine.train`` applies them: the loss checked for a
    non-finite value before backward, the gradient norm after it (each one host sync), ``optimizer.step()`` and
    ``zero_grad(set_to_none=True)``. Our side of a training-step benchmark pays what a training run pays."""
    from utils.engine import _gradient_norm

    if not bool(torch.isfinite(loss.detach())):
        raise FloatingPointError(f"non-finite loss {float(loss.detach()):g}")
    loss.backward()
    norm = _gradient_norm(model)
    if not bool(torch.isfinite(norm)):
        raise FloatingPointError(f"non-finite gradient norm {float(norm):g}")
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)


def progress(message: str) -> None:
    """A timestamped line on stderr (long benchmarks show they are alive; the table goes to stdout)."""
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def release_freed_memory() -> None:
    """Collect garbage and hand memory the C allocator keeps after ``free`` back to the system (glibc only)."""
    gc.collect()
    if _LIBC is not None and hasattr(_LIBC, "malloc_trim"):
        _LIBC.malloc_trim(0)


def proc_status_kb(field_name: str) -> int | None:
    """A ``kB`` field of ``/proc/self/status`` (``VmRSS``, ``VmHWM``, ``RssAnon``, ``RssFile``), None off Linux."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field_name + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def reset_high_water_mark() -> bool:
    """Reset the kernel's resident-set high-water mark (``VmHWM``) to the current resident set; False off Linux."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _call_in_new_thread(fn: Callable[[], Any]) -> None:
    """Run ``fn`` on a thread of its own, so that glibc serves it from an arena other than the main thread's."""
    error: list[BaseException] = []

    def run() -> None:
        try:
            fn()
        except BaseException as exc:  # noqa: BLE001 (re-raised in the caller's thread)
            error.append(exc)

    thread = threading.Thread(target=run, name="peak_memory")
    thread.start()
    thread.join()
    if error:
        raise error[0]


def peak_memory(fn: Callable[[], Any], device: torch.device | None = None,
                reset: Callable[[], Any] | None = None, calls: int = 3) -> float | None:
    """Peak extra memory (MB) of a call of ``fn`` above what was resident (allocated on CUDA) before it: the median
    over ``calls`` calls, each measured on its own (on CPU the resident set of the same call varies by a few MB).

    ``reset`` runs before the measured call, to start every variant from the same state (e.g. gradients freed: a
    loop that frees them at the start of its step instead of the end would otherwise count them as resident). On CPU
    the call runs on a new thread (see the module docstring). None where the platform offers no way to measure it (no
    ``/proc/self/clear_refs``).
    """
    peaks = [_peak_memory_once(fn, device or torch.device("cpu"), reset) for _ in range(calls)]
    return None if None in peaks else statistics.median(peaks)


def _peak_memory_once(fn: Callable[[], Any], device: torch.device,
                      reset: Callable[[], Any] | None) -> float | None:
    if reset is not None:
        reset()
    if device.type == "cuda":
        synchronize(device)
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        fn()
        synchronize(device)
        return (torch.cuda.max_memory_allocated(device) - before) / MB
    # A fixed low threshold also keeps glibc from moving freed tensors into the heap, where they would stay resident
    # and hide (or fake) differences in peak memory.
    set_mmap_threshold(MEMORY_MMAP_THRESHOLD)
    try:
        release_freed_memory()
        if not reset_high_water_mark():
            fn()
            return None
        before = proc_status_kb("VmRSS")
        _call_in_new_thread(fn)
        peak = proc_status_kb("VmHWM")
    finally:
        set_mmap_threshold(TIMING_MMAP_THRESHOLD)
    if before is None or peak is None:
        return None
    return max(peak - before, 0) / 1024.0


def rss_mb() -> dict[str, float]:
    """Resident set of this process in MB: ``total``, ``anon`` (private heap) and ``file`` (mapped files)."""
    out = {}
    for key, name in (("total", "VmRSS"), ("anon", "RssAnon"), ("file", "RssFile")):
        value = proc_status_kb(name)
        out[key] = value / 1024.0 if value is not None else float("nan")
    return out


# ---------------------------------------------------------------------------------------------------------------------
# Machine description
# ---------------------------------------------------------------------------------------------------------------------

def _run(cmd: list[str]) -> str:
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return ""


def machine_info(device: torch.device | None = None) -> dict[str, Any]:
    """CPU model and count, memory, load, torch version and threads, device and date (for the README table)."""
    cpu = platform.processor() or platform.machine()
    for line in _run(["lscpu"]).splitlines():
        if line.startswith("Model name:"):
            cpu = line.split(":", 1)[1].strip()
    mem_total = ""
    for line in _run(["free", "-h"]).splitlines():
        if line.startswith("Mem:"):
            mem_total = line.split()[1]
    try:
        load = " ".join(f"{v:.2f}" for v in os.getloadavg())
    except OSError:
        load = "n/a"
    info = {
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "cpu": cpu, "nproc": os.cpu_count(), "mem_total": mem_total, "load_1_5_15": load,
        "python": platform.python_version(), "torch": torch.__version__, "torch_threads": torch.get_num_threads(),
        "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "unset"),
        "device": str(device or "cpu"),
    }
    if device is not None and device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


# ---------------------------------------------------------------------------------------------------------------------
# Command line, output
# ---------------------------------------------------------------------------------------------------------------------

DEVICES = ("auto", "cpu", "cuda")


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1 (a size or count of 0 would otherwise fall back to the default unnoticed)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {value}")
    return value


def device_name(text: str) -> str:
    """argparse type for ``--device``: one of ``DEVICES``; ``cuda`` only where torch can use a GPU."""
    if text not in DEVICES:
        raise argparse.ArgumentTypeError(f"expected one of {', '.join(DEVICES)}, got {text!r}")
    if text == "cuda" and not torch.cuda.is_available():
        raise argparse.ArgumentTypeError(f"CUDA is not available to this torch ({torch.__version__}); "
                                         "use --device cpu or auto")
    return text


def names_from(text: str, flag: str, choices: Sequence[str], parser: argparse.ArgumentParser) -> list[str]:
    """A comma-separated ``flag`` value as a list, each name once and one of ``choices`` (else a parser error naming
    it)."""
    names = list(dict.fromkeys(name for name in text.split(",") if name))  # each once, in the order first given
    unknown = [name for name in names if name not in choices]
    if unknown or not names:
        parser.error(f"{flag}: unknown {', '.join(unknown) or 'empty list'}; choose from {', '.join(choices)}")
    return names


def base_parser(description: str, quick_reps: int = 3, full_reps: int = 5) -> argparse.ArgumentParser:
    """Flags every benchmark takes: ``--quick``, ``--reps``, ``--device``, ``--json``. ``quick_reps`` and
    ``full_reps`` are the script's timed rounds when ``--reps`` is not given (``reps_for``); a given ``--reps`` is
    what runs."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--quick", action="store_true", help="smaller sizes and fewer rounds (the run_all suite)")
    parser.add_argument("--reps", type=positive_int, default=None,
                        help=f"timed rounds per variant (default: {quick_reps} quick, {full_reps} full)")
    parser.set_defaults(default_reps=(quick_reps, full_reps))
    parser.add_argument("--device", type=device_name, default="auto",
                        help="cpu, cuda or auto (cuda when available)")
    parser.add_argument("--json", default=None, help="also write the rows and the machine description here")
    return parser


def resolve_device(name: str) -> torch.device:
    """``auto`` -> cuda when available, else cpu."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device_name(name))


def native_bf16(device: torch.device) -> bool:
    """Whether ``device`` computes matrix products and convolutions in bf16 natively: a CUDA GPU that supports it, or
    a CPU whose oneDNN kernels have bf16 instructions (AVX512-BF16 or AMX); on AVX2 CPUs bf16 autocast only adds
    conversions."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def reps_for(args: argparse.Namespace) -> int:
    """Timed rounds: ``--reps`` when given, else the script's default for ``--quick`` or a full run (``base_parser``:
    3 and 5 unless the script sets others)."""
    if args.reps:
        return args.reps
    quick_reps, full_reps = getattr(args, "default_reps", (3, 5))
    return quick_reps if args.quick else full_reps


def format_value(value: float, unit: str) -> str:
    """``value`` with its unit, to 3-4 significant digits; ``-`` for NaN (a row with nothing measured)."""
    if math.isnan(value):
        return "-"
    if unit in ("s", "ms"):
        return f"{value:.3f} {unit}" if value < 10 else f"{value:.1f} {unit}"
    if value >= 1000:
        return f"{value:,.0f} {unit}"
    return f"{value:.3g} {unit}"


def format_table(rows: Sequence[Result]) -> str:
    """Rows as a fixed-width text table."""
    header = ["benchmark", "case", "variant", "median", "peak MB", "vs baseline", "target", "met", "note"]
    lines = []
    for r in rows:
        lines.append([
            r.bench, r.case, r.variant, format_value(r.value, r.unit),
            "-" if r.peak_mb is None else f"{r.peak_mb:,.1f}",
            "-" if r.ratio is None else f"{r.ratio:.2f}x",
            r.target or "-", "-" if r.met is None else ("yes" if r.met else "NO"), r.note,
        ])
    widths = [max(len(h), *(len(line[i]) for line in lines)) if lines else len(h) for i, h in enumerate(header)]
    widths[-1] = len(header[-1])  # notes run on at the end of the line
    out = ["  ".join(h.ljust(w) for h, w in zip(header, widths)).rstrip()]
    out.append("  ".join("-" * w for w in widths))
    out += ["  ".join(c.ljust(w) for c, w in zip(line, widths)).rstrip() for line in lines]
    return "\n".join(out)


def report(rows: Sequence[Result], args: argparse.Namespace, device: torch.device, title: str,
           settings: dict[str, Any] | None = None) -> None:
    """Print the machine line, the settings and the table; write them as JSON when ``--json`` is given."""
    info = machine_info(device)
    print(f"\n== {title} ==")
    print(f"{info['date']}  {info['cpu']} x{info['nproc']}  mem {info['mem_total']}  load {info['load_1_5_15']}  "
          f"torch {info['torch']} threads {info['torch_threads']}  device {info['device']}")
    if settings:
        print("settings: " + ", ".join(f"{k}={v}" for k, v in settings.items()))
    print(format_table(rows))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        with atomic_write(args.json) as f:  # a failed or interrupted write leaves the previous file as it was
            json.dump({"title": title, "machine": info, "settings": settings or {},
                       "rows": [asdict(r) for r in rows]}, f, indent=1)


def scratch_dir(name: str) -> Path:
    """A fresh, empty folder ``BENCH_TMP/<name>`` (``/tmp/fsq_mardm_bench`` unless ``$BENCH_TMP`` is set)."""
    root = Path(BENCH_TMP) / name
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    return root
