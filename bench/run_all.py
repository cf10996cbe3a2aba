"""Run every benchmark, each in a fresh process, and print one combined table.

    OMP_NUM_THREADS=2 python bench/run_all.py --quick                      # the suite in about 5 minutes on 2 cores
    python bench/run_all.py                                                 # full sizes (much longer on a CPU)
    python bench/run_all.py --quick --only fsq,rvq --markdown results.md   # a subset; also a Markdown table

Each benchmark's own output (its table and settings) is shown as it finishes; the combined table at the end repeats
every row. Temporary corpora live under ``/tmp/fsq_mardm_bench`` and are deleted by the benchmarks that write them;
``--cleanup`` also removes the cached synthetic evaluation dataset.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import benchlib  # also puts the repository on sys.path

from utils.atomic_io import atomic_write

BENCHMARKS = {  # name -> script; the order runs the short ones first
    "fsq": "bench_fsq.py",
    "rvq": "bench_rvq.py",
    "tokenizer": "bench_tokenizer_step.py",
    "mardm": "bench_mardm.py",
    "loader": "bench_loader.py",
    "index": "bench_index.py",
    "eval": "bench_eval.py",
}
HERE = Path(__file__).resolve().parent


def markdown_table(rows: list[benchlib.Result]) -> str:
    """The rows as a Markdown table (for ``bench/README.md``)."""
    header = "| benchmark | case | variant | median | peak MB | vs baseline | target | met | note |"
    lines = [header, "|" + "---|" * 9]
    for r in rows:
        cells = [r.bench, r.case, r.variant, benchlib.format_value(r.value, r.unit),
                 "-" if r.peak_mb is None else f"{r.peak_mb:,.1f}", "-" if r.ratio is None else f"{r.ratio:.2f}x",
                 r.target or "-", "-" if r.met is None else ("yes" if r.met else "**no**"), r.note]
        lines.append("| " + " | ".join(c.replace("|", "/") for c in cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="the short suite (smaller sizes, fewer rounds)")
    parser.add_argument("--only", default=None, help=f"comma-separated subset of {sorted(BENCHMARKS)}")
    parser.add_argument("--device", type=benchlib.device_name, default="auto",
                        help="cpu, cuda or auto (cuda when available)")
    parser.add_argument("--json", default=None, help="write every row and the machine description here")
    parser.add_argument("--markdown", default=None, help="write the combined table as Markdown here")
    parser.add_argument("--cleanup", action="store_true", help="remove /tmp/fsq_mardm_bench afterwards")
    args = parser.parse_args()
    # an empty --only is refused by names_from, not taken as "all"
    names = (benchlib.names_from(args.only, "--only", list(BENCHMARKS), parser) if args.only is not None
             else list(BENCHMARKS))

    rows: list[benchlib.Result] = []
    durations: dict[str, float] = {}
    failed: list[str] = []
    suite_start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            out = os.path.join(tmp, f"{name}.json")
            cmd = [sys.executable, str(HERE / BENCHMARKS[name]), "--device", args.device, "--json", out]
            if args.quick:
                cmd.append("--quick")
            print(f"\n### {name}: {' '.join(cmd[1:])}", flush=True)
            start = time.perf_counter()
            code = subprocess.run(cmd).returncode
            durations[name] = time.perf_counter() - start
            if code != 0 or not os.path.isfile(out):
                failed.append(name)  # a benchmark that crashed is reported, the others still run
                continue
            with open(out) as f:
                rows += [benchlib.Result(**row) for row in json.load(f)["rows"]]
    total = time.perf_counter() - suite_start

    info = benchlib.machine_info(benchlib.resolve_device(args.device))
    print(f"\n== All benchmarks{' (--quick)' if args.quick else ''}: {total / 60:.1f} min ==")
    print(f"{info['date']}  {info['cpu']} x{info['nproc']}  mem {info['mem_total']}  load {info['load_1_5_15']}  "
          f"torch {info['torch']}  OMP_NUM_THREADS={info['OMP_NUM_THREADS']}  device {info['device']}")
    print("minutes per benchmark: " + ", ".join(f"{k} {v / 60:.1f}" for k, v in durations.items()))
    print(benchlib.format_table(rows))
    if failed:
        print(f"\nFAILED (see their output above): {', '.join(failed)}")
    # The suite has run for minutes by now: a folder that does not exist yet must not cost its rows.
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        with atomic_write(args.json) as f:
            json.dump({"machine": info, "minutes": {k: v / 60 for k, v in durations.items()}, "failed": failed,
                       "rows": [vars(r) for r in rows]}, f, indent=1)
    if args.markdown:
        Path(args.markdown).parent.mkdir(parents=True, exist_ok=True)
        with atomic_write(args.markdown) as f:
            f.write(markdown_table(rows) + "\n")
    if args.cleanup:
        shutil.rmtree(benchlib.BENCH_TMP, ignore_errors=True)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
