"""Tokenizer data loading on a synthetic corpus: start-up time, throughput and RAM, list dataset against ours.

Corpus: ``--clips`` clips (100,000; 20,000 with ``--quick``) of 64 to 71 frames x 263 features (float32 .npy files,
HumanML3D width; about 7 GB at 100k), written under ``/tmp/fsq_mardm_bench/`` and deleted at the end.

- baseline: ``reference_impl.ListMotionDataset``: one ``np.load`` per clip into a Python list at start-up, random
  windows cut from the list, ``DataLoader(shuffle=True)``.
- ours: ``utils.datasets.MotionWindowDataset`` over the memory-mapped ``MotionIndex`` (built once, then opened from
  its cache), batches as the engine draws them: one ``EpochLoader`` whose workers persist across epochs, an
  ``EpochBatchSampler`` per epoch, per-sample seeding (``utils.engine.train``).

Measured: index build (first use of a corpus), start-up and the RAM the dataset holds afterwards (growth of the
process's anonymous memory), steady-state milliseconds per batch of 256 windows of 64 frames with 0 and 2 worker
processes and the memory the loader adds (proportional set size, PSS, of the process and its workers, so pages shared
between them count once), and the loader's time per window against our MARDM AE training step per window (the target:
at most 10%). Every timed row runs ``--reps`` rounds (default 9; a round reads 10 batches).

    python bench/bench_loader.py [--quick] [--clips 100000] [--keep]
"""

from __future__ import annotations

import itertools
import os
import shutil
import time
from pathlib import Path

import benchlib
import numpy as np
import psutil
import torch
from benchlib import Result, interleaved, median, speedup_row
from reference_impl import ListMotionDataset
from tokenizer_steps import ours_step
from torch.utils.data import DataLoader

from utils.batching import EpochBatchSampler, EpochLoader
from utils.dataset_specs import get_dataset_spec
from utils.datasets import MotionIndex, MotionWindowDataset

DIM = 263
WINDOW = 64
BATCH = 256
LENGTHS = (64, 72)  # frames, [low, high)


def write_corpus(root: Path, clips: int, seed: int = 0) -> None:
    """``clips`` random clips in the dataset layout (``new_joint_vecs/<id>.npy``, ``train.txt``)."""
    rng = np.random.default_rng(seed)
    folder = root / "new_joint_vecs"
    folder.mkdir(parents=True)
    # One random array per length: file contents do not matter to a loader, writing 7 GB of fresh noise would.
    pool = {n: rng.standard_normal((n, DIM)).astype(np.float32) for n in range(*LENGTHS)}
    lengths = rng.integers(*LENGTHS, size=clips)
    ids = [f"{i:07d}" for i in range(clips)]
    for clip_id, n in zip(ids, lengths):
        np.save(folder / f"{clip_id}.npy", pool[int(n)])
    (root / "train.txt").write_text("\n".join(ids) + "\n")


def pss_mb(pids: list[int]) -> dict[str, float]:
    """Proportional set size of the processes in MB: ``total``, ``anon`` and ``file`` (from ``smaps_rollup``)."""
    out = {"total": 0.0, "anon": 0.0, "file": 0.0}
    for pid in pids:
        try:
            with open(f"/proc/{pid}/smaps_rollup") as f:
                fields = {line.split(":")[0]: int(line.split()[1]) for line in f if line.endswith("kB\n")}
        except OSError:
            return {k: float("nan") for k in out}
        out["total"] += fields.get("Pss", 0) / 1024
        out["anon"] += fields.get("Pss_Anon", 0) / 1024
        out["file"] += fields.get("Pss_File", 0) / 1024
    return out


class Stream:
    """Batches from an endless sequence of epochs: ``next()`` returns one, starting a new epoch when needed;
    ``close()`` stops the workers a loader keeps across epochs."""

    def __init__(self, make_iter, close=None) -> None:
        self.make_iter = make_iter
        self.iterator = make_iter()
        self._close = close

    def close(self) -> None:
        if self._close is not None:
            self._close()

    def __next__(self):
        try:
            return next(self.iterator)
        except StopIteration:
            self.iterator = self.make_iter()
            return next(self.iterator)


def baseline_stream(dataset: ListMotionDataset, workers: int, pin: bool) -> Stream:
    """The field's loader: shuffled batches of the list dataset (in pinned memory with ``pin``, as ours)."""
    return Stream(lambda: iter(DataLoader(dataset, batch_size=BATCH, shuffle=True, drop_last=True,
                                          num_workers=workers, pin_memory=pin)))


def ours_stream(dataset: MotionWindowDataset, workers: int, pin: bool) -> Stream:
    """Batches the way ``utils.engine.train`` draws them, epoch after epoch: one loader whose workers serve every
    epoch (it pins them when it trains on CUDA)."""
    loader = EpochLoader(dataset, None, workers, pin)
    epochs = itertools.count()
    return Stream(lambda: loader.epoch(EpochBatchSampler(len(dataset), BATCH, 0, next(epochs))), loader.close)


def main() -> None:
    # A batch takes milliseconds and its time swings with the page cache and the workers' scheduling on a small
    # machine: more and longer rounds cost seconds and steady the medians.
    parser = benchlib.base_parser(__doc__.splitlines()[0], quick_reps=9, full_reps=9)
    parser.add_argument("--clips", type=benchlib.positive_int, default=None,
                        help="default 100,000 (20,000 with --quick)")
    parser.add_argument("--keep", action="store_true", help="keep the corpus under /tmp for another run")
    args = parser.parse_args()
    threads = benchlib.configure_threads()
    device = benchlib.resolve_device(args.device)
    pin = device.type == "cuda"
    clips = args.clips or (20_000 if args.quick else 100_000)
    reps = benchlib.reps_for(args)
    batches_per_round = 10

    root = benchlib.scratch_dir("loader_corpus")
    rows: list[Result] = []
    try:
        start = time.perf_counter()
        write_corpus(root, clips)
        write_seconds = time.perf_counter() - start
        spec = get_dataset_spec("t2m", str(root))
        mean, std = np.zeros(DIM, np.float32), np.ones(DIM, np.float32)
        paths = [str(root / "new_joint_vecs" / f"{i:07d}.npy") for i in range(clips)]
        case = f"{clips:,} clips x 263"

        # -- start-up and RAM --------------------------------------------------------------------------------------
        benchlib.release_freed_memory()
        before = pss_mb([os.getpid()])
        start = time.perf_counter()
        listed = ListMotionDataset(paths, mean, std, WINDOW)
        list_start = time.perf_counter() - start
        list_ram = pss_mb([os.getpid()])["anon"] - before["anon"]

        start = time.perf_counter()
        MotionIndex.build(spec, "train", str(root), progress=False)
        build_seconds = time.perf_counter() - start
        benchlib.release_freed_memory()
        before = pss_mb([os.getpid()])
        start = time.perf_counter()
        ours = MotionWindowDataset(spec, "train", mean, std, WINDOW, str(root), mode="random", progress=False)
        ours_start = time.perf_counter() - start
        ours_ram = pss_mb([os.getpid()])["anon"] - before["anon"]
        assert len(ours) == len(listed) == clips

        base = Result("data loader", f"start-up, {case}", "baseline", list_start, "s", [list_start], list_ram,
                      note="np.load of every clip into a list (one run; peak MB = RAM held)")
        rows.append(base)
        rows.append(speedup_row("data loader", f"start-up, {case}", base,
                                Result("data loader", f"start-up, {case}", "ours", ours_start, "s", [ours_start],
                                       ours_ram), None,
                                note=f"memory-mapped index opened from cache (one run; peak MB = RAM held); first "
                                     f"build {build_seconds:.1f} s"))

        # -- throughput -------------------------------------------------------------------------------------------
        per_window = {}
        for workers in (0, 2):
            factories = {"baseline": lambda w=workers: baseline_stream(listed, w, pin),
                         "ours": lambda w=workers: ours_stream(ours, w, pin)}
            streams, first = {}, {}
            for name, factory in factories.items():
                start = time.perf_counter()
                streams[name] = factory()
                next(streams[name])
                first[name] = time.perf_counter() - start

            def run(stream):
                return lambda: [next(stream) for _ in range(batches_per_round)]

            times = interleaved({k: run(v) for k, v in streams.items()}, reps, warmup=0)
            for stream in streams.values():
                stream.close()
            streams.clear()
            ram = {}
            for name, factory in factories.items():  # one loader at a time, so its workers are the only children
                benchlib.release_freed_memory()
                before = pss_mb([os.getpid()])["total"]
                stream = factory()
                next(stream)
                next(stream)
                children = [p.pid for p in psutil.Process().children(recursive=True)]
                ram[name] = pss_mb([os.getpid(), *children])["total"] - before
                stream.close()
                del stream
            c = f"ms per batch of {BATCH}x{WINDOW}, {workers} workers, {case}"
            res = {k: Result("data loader", c, k, median(ts) / batches_per_round * 1e3, "ms",
                             [t / batches_per_round * 1e3 for t in ts], ram[k],
                             note=f"first batch {first[k] * 1e3:.0f} ms; peak MB = RAM the loader and its workers "
                                  f"hold after two batches") for k, ts in times.items()}
            rows.append(res["baseline"])
            rows.append(speedup_row("data loader", c, res["baseline"], res["ours"], None))
            per_window[workers] = res["ours"].value / BATCH

        # -- against a training step ------------------------------------------------------------------------------
        # On the device the benchmark runs on, at the batch of bench_tokenizer_step.py (the published 256 on CUDA).
        step_batch = BATCH if device.type == "cuda" else (8 if args.quick else 32)
        motion = torch.randn(step_batch, WINDOW, 67, device=device)
        step, _ = ours_step("AE_Model", motion, device)
        step_times = interleaved({"step": step}, reps, warmup=1, device=device)["step"]
        step_ms_per_window = median(step_times) * 1e3 / step_batch
        loader_ms = min(per_window.values())
        fraction = loader_ms / step_ms_per_window
        rows.append(Result("data loader", f"loader / training step, per window (MARDM AE, B={step_batch})", "ours",
                           fraction * 100, "%", [], target="<= 10%", met=fraction <= 0.10,
                           note=f"loader {loader_ms * 1e3:.0f} us/window vs step {step_ms_per_window:.0f} ms/window;"
                                f" within 10% for any step >= {10 * loader_ms * BATCH:.0f} ms per batch of {BATCH}"))
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)

    settings = {"clips": clips, "frames": f"{LENGTHS[0]}-{LENGTHS[1] - 1}", "batch": BATCH, "window": WINDOW,
                "rounds": reps, "batches_per_round": batches_per_round, "threads": threads,
                "corpus_write_s": round(write_seconds, 1)}
    benchlib.report(rows, args, device, "Data loader (tokenizer windows)", settings)


if __name__ == "__main__":
    main()
