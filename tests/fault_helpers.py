"""Fault injection for the reliability tests (tests/test_fault_*.py): a launcher and shared helpers.

The launcher runs a training script unchanged, with faults switched on by the ``FSQ_MARDM_FAULTS`` environment
variable (a JSON object). It monkeypatches the child process before the script starts, so the package itself carries
no test hooks and nothing changes when the variable is absent::

    FSQ_MARDM_FAULTS='{"kill_during_save": 12}' python tests/fault_helpers.py train_vq.py --name x ...
    torchrun --nproc_per_node 2 tests/fault_helpers.py train_vq.py ...      # same, under torch.distributed

Fault points (steps are the engine's global optimizer steps, counted from 1):

``kill_at_step: N``       SIGKILL inside step N, after the forward pass and before the optimizer update.
``kill_during_save: N``   SIGKILL while ``latest.tar`` of step N is written: half of the temporary file is on disk.
``kill_during_best_save: N``  the same while the best checkpoint (``net_best_<metric>.tar``) of step N is written.
``term_during_save: N``   SIGTERM (what torchrun or a scheduler sends) at the point of ``kill_during_save``.
``term_inside_save: N``   SIGTERM while ``torch.save`` writes ``latest.tar`` of step N, its handler running inside the
                          zip writer (which then cannot finish the file and raises an error of its own).
``term_in_finalizer: N``  SIGTERM inside step N while a ``__del__`` method runs, where Python only prints the
                          exception its handler raises.
``term_in_loader_close: true``  SIGTERM as the engine's finally block starts closing the DataLoader workers (a stop
                          that lands as training ends).
``hup_group_at_step: N``  SIGHUP to the script's whole process group inside step N (a closed terminal): its
                          DataLoader workers die of it too. Run the script in a session of its own (``own_session``).
``free_bytes: X``         the file system reports X free bytes (a full disk).
``nan_at_step: N``        the loss of step N becomes NaN, on the process of rank ``nan_rank`` (default 0) only.
``emulate_ranks: P``      one process reproduces P-process DDP: the loss is the mean of the losses of the P slices of
                          the global batch, each computed with that rank's RNG stream (seed + rank).
``sync_report: PATH``     under torch.distributed: after every forward, compare the whole model state (weights,
                          codebook buffers) across processes; rank 0 writes the largest difference per tensor to PATH
                          (JSON) and every rank saves its final state to ``PATH.rank<r>.tar``.
"""

from __future__ import annotations

import io
import json
import os
import runpy
import signal
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
TESTS = Path(__file__).resolve().parent
FAULT_ENV = "FSQ_MARDM_FAULTS"
LAUNCHER = str(Path(__file__).resolve())

# Flags shared by the tokenizer runs of the fault tests: tiny, deterministic, a handful of steps.
TOKENIZER_FLAGS = ["--dataset_name", "synthetic", "--batch_size", "8", "--num_workers", "0", "--lr", "2e-3",
                   "--warm_up_iter", "2", "--milestones", "1000", "--log_every", "2", "--val_batches", "1"]
CHECKPOINT_KEYS = ("model", "optimizer", "ema", "step", "epoch", "rng", "data_state", "best", "metrics",
                   "loss_window")


# ---------------------------------------------------------------------------------------------------------------------
# Running scripts
# ---------------------------------------------------------------------------------------------------------------------

def child_env(faults: dict[str, Any] | None = None) -> dict[str, str]:
    """Environment of a script run: one thread per process, the faults (if any)."""
    env = {k: v for k, v in os.environ.items() if k != FAULT_ENV}
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    if faults:
        env[FAULT_ENV] = json.dumps(faults)
    return env


def run_script(script: str, args: Sequence[str], faults: dict[str, Any] | None = None, nproc: int = 1,
               timeout: float = 300, own_session: bool = False) -> subprocess.CompletedProcess:
    """Run ``script`` (a file in the repository root) with ``args`` in a fresh process (``nproc`` > 1: torchrun on
    CPU), through the launcher when ``faults`` are given; ``own_session``: in a session and process group of its own,
    as a terminal or a scheduler starts it. Returns the completed process (stdout, stderr as text)."""
    target = [LAUNCHER, script] if faults else [script]
    if nproc > 1:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(nproc),
               *target, *args]
    else:
        cmd = [sys.executable, *target, *args]
    with subprocess.Popen(cmd, cwd=REPO, env=child_env(faults), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True, start_new_session=own_session) as proc:
        try:
            stdout, stderr = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            # torchrun starts its workers in sessions of their own: end them one by one, then the launcher.
            for pid in [*_descendants(proc.pid), proc.pid]:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            stdout, stderr = proc.communicate()
            raise AssertionError(f"{' '.join(cmd)} did not finish in {timeout} s\n{stderr[-4000:]}") from None
    return subprocess.CompletedProcess(cmd, proc.returncode, stdout, stderr)


def _descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (read from /proc; empty where there is none)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = entry.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(entry.parent.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def torchrun_available() -> bool:
    """torch.distributed with the gloo backend (what ``torchrun`` on CPU needs)."""
    try:
        import torch.distributed as dist
        import torch.distributed.run  # noqa: F401
    except ImportError:
        return False
    return dist.is_available() and dist.is_gloo_available()


def tail(done: subprocess.CompletedProcess, chars: int = 4000) -> str:
    """The end of a finished process's output, for assertion messages."""
    return f"exit {done.returncode}\n--- stdout\n{done.stdout[-chars:]}\n--- stderr\n{done.stderr[-chars:]}"


# ---------------------------------------------------------------------------------------------------------------------
# Reading runs
# ---------------------------------------------------------------------------------------------------------------------

def run_root(checkpoints_dir: str | os.PathLike, name: str, dataset: str = "synthetic") -> Path:
    """``<checkpoints_dir>/<dataset>/<name>``."""
    return Path(checkpoints_dir) / dataset / name


def read_log(root: str | os.PathLike) -> list[dict[str, Any]]:
    """The rows of ``model/train_log.jsonl`` (one per optimizer step)."""
    with open(Path(root) / "model" / "train_log.jsonl") as f:
        return [json.loads(line) for line in f if line.strip()]


def temporaries(folder: str | os.PathLike) -> list[str]:
    """Temporary files of interrupted checkpoint writes in ``folder``."""
    from utils.checkpoint import TMP_PREFIX

    return sorted(n for n in os.listdir(folder) if n.startswith(TMP_PREFIX))


def assert_same_tree(a: Any, b: Any, where: str = "") -> None:
    """Bitwise equality of nested dicts / lists of tensors and plain values."""
    import torch

    assert type(a) is type(b), f"{where}: {type(a).__name__} vs {type(b).__name__}"
    if isinstance(a, dict):
        assert a.keys() == b.keys(), f"{where}: keys {sorted(a)} vs {sorted(b)}"
        for k in a:
            assert_same_tree(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), f"{where}: {len(a)} vs {len(b)} items"
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same_tree(x, y, f"{where}[{i}]")
    elif isinstance(a, torch.Tensor):
        assert a.dtype == b.dtype and a.shape == b.shape and torch.equal(a, b), f"{where}: tensors differ"
    else:
        assert a == b, f"{where}: {a!r} vs {b!r}"


def assert_same_checkpoint(a_path: str | os.PathLike, b_path: str | os.PathLike,
                           keys: Sequence[str] = CHECKPOINT_KEYS) -> None:
    """Two checkpoints hold bitwise the same training state (``keys`` that either file has)."""
    from utils.checkpoint import load_checkpoint

    a, b = load_checkpoint(str(a_path)), load_checkpoint(str(b_path))
    for key in keys:
        assert (key in a) == (key in b), f"{key} in only one of {a_path}, {b_path}"
        if key in a:
            assert_same_tree(a[key], b[key], key)


def synthetic_copy(src: str, dst: str | os.PathLike) -> Path:
    """A copy of a synthetic dataset root without its index cache (so a modified copy is re-indexed)."""
    import shutil

    from utils.motion_files import CACHE_DIR

    dst = Path(dst)
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns(CACHE_DIR))
    return dst


def write_tokenizer(path: str | os.PathLike, model_name: str, data_root: str, seed: int = 0) -> str:
    """An untrained tokenizer checkpoint in the format train_AE.py writes, for the synthetic dataset at
    ``data_root`` (EMA codebooks initialised by one training forward); returns its path."""
    import torch

    from models.tokenizers import build_tokenizer
    from utils.checkpoint import save_checkpoint
    from utils.dataset_specs import get_dataset_spec
    from utils.normalization import load_mean_std
    from utils.tokenizer_stage import dataset_record

    spec = get_dataset_spec("synthetic", data_root)
    mean, std = load_mean_std(spec, data_root)
    torch.manual_seed(seed)
    model = build_tokenizer(model_name, input_width=spec.dim_pose)
    if model.kind in ("vq", "rvq"):
        model.train()
        model(torch.randn(4, 64, spec.dim_pose))
    save_checkpoint(str(path), {"stage": "tokenizer", "model_name": model_name, "model_args": dict(model.model_args),
                                "model": model.state_dict(), "dataset": dataset_record(spec, mean, std),
                                "config": {}, "parent": None, "step": 0})
    return str(path)


def write_text_encoder(folder: str | os.PathLike) -> str:
    """A tiny CLIP text tower with random weights (tests/test_generation.py); returns the ``--clip_path``."""
    if str(TESTS) not in sys.path:
        sys.path.insert(0, str(TESTS))
    from test_generation import write_fake_clip

    return write_fake_clip(str(folder))


# ---------------------------------------------------------------------------------------------------------------------
# The launcher (runs in the child process)
# ---------------------------------------------------------------------------------------------------------------------

class _Step:
    """The engine's current global step, read from its call to ``lr_factor(state.step, ...)`` before each loss."""

    current = 0


def _kill_now(signum: int = signal.SIGKILL) -> None:
    sys.stdout.flush()
    sys.stderr.flush()
    # raise_signal signals this thread, so a Python handler runs before the next line of the caller.
    signal.raise_signal(signum)


class _SignalledOnDelete:
    """An object that raises ``signum`` in this thread when it is deleted."""

    def __init__(self, signum: int) -> None:
        self.signum = signum

    def __del__(self) -> None:
        _kill_now(self.signum)


class _SignalledWriter(io.RawIOBase):
    """A file that raises ``signum`` in this thread at its third ``write``: a signal that arrives while
    ``torch.save``'s zip writer is open."""

    def __init__(self, file: Any, signum: int) -> None:
        super().__init__()
        self.file, self.signum, self.writes = file, signum, 0

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        self.writes += 1
        if self.writes == 3:
            _kill_now(self.signum)
        return self.file.write(data)

    def flush(self) -> None:
        self.file.flush()


def _slice_batch(batch: Any, lo: int, hi: int) -> Any:
    """Samples ``lo:hi`` of a collated batch (a tensor, or a NamedTuple of tensors and per-sample lists)."""
    import torch

    if isinstance(batch, torch.Tensor):
        return batch[lo:hi]
    if isinstance(batch, tuple) and hasattr(batch, "_fields"):
        return type(batch)(*(_slice_batch(v, lo, hi) for v in batch))
    if isinstance(batch, (list, tuple)):
        return batch[lo:hi]
    raise TypeError(f"cannot slice a batch of type {type(batch).__name__}")


def _emulated_ranks(loss_fn: Callable, world: int, seed: int) -> Callable:
    """``loss_fn`` as ``world`` DDP processes would see it, in one process (see the module docstring)."""
    import torch

    from utils.seed import get_rng_state, set_rng_state, set_seed

    streams: list[dict[str, Any]] = []

    def wrapped(model: Any, batch: Any) -> tuple[Any, dict[str, Any]]:
        if not streams:
            # The engine has just seeded this process as rank 0; the other ranks start from seed + rank.
            streams.append(get_rng_state())
            for rank in range(1, world):
                set_seed(seed + rank)
                streams.append(get_rng_state())
        size = (batch.shape[0] if isinstance(batch, torch.Tensor) else len(batch[0])) // world
        losses, logs = [], []
        for rank in range(world):
            set_rng_state(streams[rank])
            loss, terms = loss_fn(model, _slice_batch(batch, rank * size, (rank + 1) * size))
            streams[rank] = get_rng_state()
            losses.append(loss)
            logs.append(terms)
        set_rng_state(streams[0])
        mean_logs = {k: sum(torch.as_tensor(t[k]).float() for t in logs) / world for k in logs[0]}
        return sum(losses) / world, mean_logs

    return wrapped


def _sync_checker(loss_fn: Callable, report_path: str) -> tuple[Callable, Callable[[Any], None]]:
    """``loss_fn`` that, after each forward, compares the model state across processes; and a finaliser."""
    import torch
    import torch.distributed as dist

    from utils.checkpoint import save_checkpoint, unwrap_model

    worst: dict[str, float] = {}
    steps = [0]

    def wrapped(model: Any, batch: Any) -> tuple[Any, dict[str, Any]]:
        loss, logs = loss_fn(model, batch)
        state = unwrap_model(model).state_dict()
        flat = torch.cat([t.detach().float().flatten().cpu() for t in state.values()])
        gathered = [torch.empty_like(flat) for _ in range(dist.get_world_size())]
        dist.all_gather(gathered, flat)
        offset = 0
        for name, tensor in state.items():
            n = tensor.numel()
            if n:
                diff = max(float((g[offset:offset + n] - gathered[0][offset:offset + n]).abs().max())
                           for g in gathered)
                worst[name] = max(worst.get(name, 0.0), diff)
            offset += n
        steps[0] += 1
        return loss, logs

    def finish(model: Any) -> None:
        rank = dist.get_rank()
        save_checkpoint(f"{report_path}.rank{rank}.tar", {"model": unwrap_model(model).state_dict()})
        if rank == 0:
            with open(report_path, "w") as f:
                json.dump({"steps": steps[0], "max_diff": worst}, f)

    return wrapped, finish


def install_faults(faults: dict[str, Any]) -> None:
    """Monkeypatch this process according to ``faults`` (see the module docstring)."""
    import shutil

    import torch

    import utils.engine as engine

    real_lr_factor = engine.lr_factor

    def lr_factor(step: int, *args: Any, **kwargs: Any) -> float:
        _Step.current = step + 1
        return real_lr_factor(step, *args, **kwargs)

    engine.lr_factor = lr_factor

    if {"kill_during_save", "kill_during_best_save", "term_during_save", "term_inside_save"} & faults.keys():
        # latest.tar is the only checkpoint with an optimizer state; the best checkpoint has none.
        points = (("kill_during_save", True, signal.SIGKILL), ("kill_during_best_save", False, signal.SIGKILL),
                  ("term_during_save", True, signal.SIGTERM))
        signals = {(faults[key], latest): signum for key, latest, signum in points if key in faults}
        real_save = torch.save

        def save(obj: Any, f: Any, *args: Any, **kwargs: Any) -> None:
            target = (obj.get("step"), "optimizer" in obj) if isinstance(obj, dict) and "model" in obj else None
            if target == (faults.get("term_inside_save"), True):
                f = _SignalledWriter(f, signal.SIGTERM)
            if target in signals:
                buffer = io.BytesIO()
                real_save(obj, buffer, *args, **kwargs)
                data = buffer.getvalue()
                out = open(f, "wb") if isinstance(f, (str, os.PathLike)) else f
                out.write(data[: len(data) // 2])
                out.flush()
                os.fsync(out.fileno())
                _kill_now(signals[target])
            real_save(obj, f, *args, **kwargs)

        torch.save = save

    if "free_bytes" in faults:
        free = int(faults["free_bytes"])
        real_usage = shutil.disk_usage
        shutil.disk_usage = lambda path: real_usage(path)._replace(free=free)

    if faults.get("term_in_loader_close"):
        from utils.batching import EpochLoader

        real_close = EpochLoader.close

        def close(self: Any) -> None:
            _kill_now(signal.SIGTERM)
            real_close(self)

        EpochLoader.close = close

    real_train = engine.train

    def train(model: Any, train_dataset: Any, loss_fn: Callable, cfg: Any, run: Any, **kwargs: Any) -> Any:
        finish = None
        if "emulate_ranks" in faults:
            loss_fn = _emulated_ranks(loss_fn, int(faults["emulate_ranks"]), cfg.seed)
        if "sync_report" in faults:
            loss_fn, finish = _sync_checker(loss_fn, faults["sync_report"])
        inner = loss_fn

        def faulty_loss(model_: Any, batch: Any) -> tuple[Any, dict[str, Any]]:
            loss, logs = inner(model_, batch)
            if _Step.current == faults.get("kill_at_step"):
                _kill_now()
            if _Step.current == faults.get("hup_group_at_step"):
                sys.stdout.flush()
                sys.stderr.flush()
                os.killpg(os.getpgrp(), signal.SIGHUP)
            if _Step.current == faults.get("term_in_finalizer"):
                _SignalledOnDelete(signal.SIGTERM)  # dropped at once: its __del__ runs here
            if (_Step.current == faults.get("nan_at_step")
                    and int(os.environ.get("RANK", 0)) == int(faults.get("nan_rank", 0))):
                loss = loss * float("nan")
            return loss, logs

        result = real_train(model, train_dataset, faulty_loss, cfg, run, **kwargs)
        if finish is not None:
            finish(model)
        return result

    engine.train = train


def main(argv: list[str]) -> None:
    """``fault_helpers.py SCRIPT [ARGS...]``: install the faults of ``FSQ_MARDM_FAULTS`` and run SCRIPT as __main__."""
    if not argv:
        raise SystemExit("usage: fault_helpers.py SCRIPT [ARGS...]")
    sys.path.insert(0, str(REPO))
    install_faults(json.loads(os.environ.get(FAULT_ENV) or "{}"))
    script = str(REPO / argv[0])
    sys.argv = [script, *argv[1:]]
    runpy.run_path(script, run_name="__main__")


if __name__ == "__main__":
    main(sys.argv[1:])
