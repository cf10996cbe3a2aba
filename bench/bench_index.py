"""Opening the memory-mapped motion index of a million clips: time and RAM (target: under 10 s and 2 GB).

Corpus: ``--clips`` clips (1,000,000; 100,000 with ``--quick``, then extrapolated linearly to 1M and marked so) at
the real HumanML3D width, 263 float32 features, but only 3 frames each, so that a million files fit in about 4 GB
of disk (what the index does per clip, a ``stat`` and a few array entries, does not depend on the frame count).
Written under ``/tmp/fsq_mardm_bench/`` and deleted at the end.

- ours: ``MotionIndex.build`` of the ``train`` split once (the first use of a corpus: one pass over every file), then
  opened from its cache in a fresh process (what every later training run does: read the split, ``stat`` every file
  for the fingerprint, memory-map the arrays). RAM = how far the fresh process's resident set rose above what it
  was before the call at its highest (``VmHWM``; the table notes what stays resident afterwards).
- baseline (``--with_baseline``): the field's start-up, ``np.load`` of every clip into a Python list (minutes at
  1M clips; ``bench_loader.py`` measures it on its corpus in every run).

    python bench/bench_index.py [--quick] [--clips 1000000] [--with_baseline]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import benchlib
import numpy as np
from benchlib import Result, speedup_row

DIM = 263
FRAMES = 3
TARGET_SECONDS = 10.0
TARGET_MB = 2048.0
FULL = 1_000_000


def write_corpus(root: Path, clips: int) -> None:
    """``clips`` files of (3, 263) float32 in the dataset layout, and ``train.txt``; written as raw .npy bytes."""
    folder = root / "new_joint_vecs"
    folder.mkdir(parents=True)
    values = np.random.default_rng(0).standard_normal((FRAMES, DIM)).astype("<f4")
    header = root / "header.npy"
    np.save(header, values)
    blob = header.read_bytes()  # the same .npy bytes for every clip: building a million headers is not the point
    header.unlink()
    ids = [f"{i:07d}" for i in range(clips)]
    for clip_id in ids:
        with open(folder / f"{clip_id}.npy", "wb") as f:
            f.write(blob)
    (root / "train.txt").write_text("\n".join(ids) + "\n")


def _open_in_fresh_process(root: Path, what: str) -> dict[str, float]:
    """Run ``--child <what> <root>`` in a new interpreter and return its JSON (seconds, RSS growth in MB)."""
    cmd = [sys.executable, __file__, "--child", what, str(root)]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def child(what: str, root: str) -> None:
    """Open the corpus ``what`` way (``index`` or ``list``) and print ``{"seconds", "peak_mb", "rss_mb", "clips"}``:
    the peak and the lasting growth of the resident set."""
    from utils.dataset_specs import get_dataset_spec
    from utils.datasets import MotionIndex

    spec = get_dataset_spec("t2m", root)
    benchlib.release_freed_memory()
    benchlib.reset_high_water_mark()
    before = benchlib.rss_mb()["total"]
    start = time.perf_counter()
    if what == "index":
        index = MotionIndex.build(spec, "train", root, progress=False)
        clips = len(index)
    else:
        ids = Path(root, "train.txt").read_text().split()
        data = [np.load(f"{root}/new_joint_vecs/{clip_id}.npy") for clip_id in ids]
        clips = len(data)
    seconds = time.perf_counter() - start
    peak = (benchlib.proc_status_kb("VmHWM") or 0) / 1024 - before
    print(json.dumps({"seconds": seconds, "peak_mb": peak, "rss_mb": benchlib.rss_mb()["total"] - before,
                      "clips": clips}))


def main() -> None:
    parser = benchlib.base_parser(__doc__.splitlines()[0])
    parser.add_argument("--clips", type=benchlib.positive_int, default=None,
                        help=f"default {FULL:,} (100,000 with --quick)")
    parser.add_argument("--with_baseline", action="store_true", help="also time np.load into a list (slow at 1M)")
    parser.add_argument("--child", nargs=2, default=None, help=argparse.SUPPRESS)  # internal: the fresh process
    args = parser.parse_args()
    if args.reps:
        parser.error("--reps: the index is opened once, in a fresh process; there are no rounds to repeat")
    if args.child:
        child(*args.child)
        return
    threads = benchlib.configure_threads()
    clips = args.clips or (100_000 if args.quick else FULL)
    scale = FULL / clips
    note = "" if scale == 1 else f"measured at {clips:,} clips, x{scale:g} to 1M (linear extrapolation)"
    root = benchlib.scratch_dir("index_corpus")
    rows: list[Result] = []
    try:
        start = time.perf_counter()
        write_corpus(root, clips)
        write_seconds = time.perf_counter() - start

        from utils.dataset_specs import get_dataset_spec
        from utils.datasets import MotionIndex

        start = time.perf_counter()
        MotionIndex.build(get_dataset_spec("t2m", str(root)), "train", str(root), progress=False)
        build_seconds = time.perf_counter() - start
        opened = _open_in_fresh_process(root, "index")
        if opened["clips"] != clips:
            raise RuntimeError(f"the index holds {opened['clips']} clips, expected {clips}")
        case = "open 1M-clip index (263 wide, 3 frames)"
        seconds, ram = opened["seconds"] * scale, opened["peak_mb"] * scale
        ours = Result("motion index", case, "ours", seconds, "s", [seconds], ram,
                      target=f"< {TARGET_SECONDS:g} s and < {TARGET_MB / 1024:g} GB",
                      met=seconds < TARGET_SECONDS and ram < TARGET_MB,
                      note="; ".join(filter(None, [note, "one open",
                                                   f"{opened['rss_mb'] * scale:.0f} MB held afterwards",
                                                   f"first build {build_seconds * scale:.0f} s"])))
        if args.with_baseline:
            listed = _open_in_fresh_process(root, "list")
            base = Result("motion index", case, "baseline", listed["seconds"] * scale, "s",
                          [listed["seconds"] * scale], listed["peak_mb"] * scale,
                          note="np.load of every clip; one open")
            rows.append(base)
            ours = speedup_row("motion index", case, base, ours, None)  # keeps the absolute target set above
        rows.append(ours)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    settings = {"clips_measured": clips, "frames_per_clip": FRAMES, "width": DIM, "threads": threads,
                "corpus_write_s": round(write_seconds, 1)}
    benchlib.report(rows, args, benchlib.resolve_device("cpu"), "Motion index open (1M clips)", settings)


if __name__ == "__main__":
    main()
