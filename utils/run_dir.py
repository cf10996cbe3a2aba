"""Where a run keeps its files.

::

    checkpoints/<dataset_name>/<name>/
        .lock               held by the process training the run (``RunDir.lock``)
        opt.yaml            resolved config (written by the script)
        train.log           text log of the main process
        model/latest.tar    exact-resume state, rewritten every --save_every steps and at the end
        model/net_best_fid.tar   best validation checkpoint (net_best_<metric>.tar for another metric)
        model/train_log.jsonl    one line per optimizer step: {"step", "loss", "lr"}
        model/events.out.tfevents.*   TensorBoard
        eval/               evaluation logs
    generation/<name>_<dataset_name>/   generated samples

These are the names the field's scripts (MoMask, MARDM) use, so existing habits and tools keep working.

One process at a time trains a run: the one that starts it holds an exclusive lock on ``.lock`` until its script ends,
and a second start of the same run (fresh or ``--is_continue``) is refused before it writes into the run, naming the
holder's pid, instead of both writing ``latest.tar`` and the logs. ``tools/import_checkpoint.py``, which writes the
run's checkpoints, takes it too; evaluations, which write only into ``eval/``, do not.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from utils.file_lock import FileLock, FileLockedError, acquire_lock
from utils.launch_env import is_first_process
from utils.paths import project_path

PROBE_NAME = ".write-probe"
LOCK_NAME = ".lock"
CONFIG_NAME = "opt.yaml"  # the resolved config; options.config reads its ``config`` entry as the run's record
# What a refused training start can do instead (``RunDir.lock``); a command that does not train passes its own.
START_ADVICE = "wait for it to finish (--is_continue then resumes the run), or pick another --name"
MiB = 2**20
# What a start writes before it has trained anything: a folder holding only these is no run yet.
SETUP_FILES = ("train.log", CONFIG_NAME, LOCK_NAME, os.path.join("meta", "mean.npy"), os.path.join("meta", "std.npy"))
_SETUP_PREFIXES = ("events.out.tfevents.",)
# Created by the engine before its first save, and empty until a step is logged.
_EMPTY_WHEN_SETUP = (os.path.join("model", "train_log.jsonl"),)
# Folders created by ``make_dirs`` in this process, with the first one created above them: ``discarding_failed_starts``
# removes those a failed start left without a checkpoint.
_created: list[tuple[RunDir, str]] = []
# The runs whose lock this process holds (the real path of the run folder -> its lock): ``RunDir.lock`` is called by
# each step of a start (``check_run_start``, ``make_dirs``, the engine) and takes the lock once.
_locks: dict[str, FileLock] = {}
# Every run this process locked, in order, also those released since (the engine releases its run when it returns):
# ``discarding_failed_starts`` names the checkpoints a failed start left in them.
_locked: list[RunDir] = []


class RunDirError(RuntimeError):
    """The run folder cannot be used (unwritable, disk full, bad name)."""


def _check_component(value: str, field: str) -> None:
    if not value or value in (".", "..") or "/" in value or os.sep in value:
        raise RunDirError(f"{field} must be a plain folder name (no path separators), got {value!r}")


class RunDir:
    """The folders and file names of one run: ``<checkpoints_dir>/<dataset_name>/<name>/``.

    Args:
        checkpoints_dir: ``--checkpoints_dir`` (default ``./checkpoints``).
        dataset_name: ``--dataset_name``.
        name: ``--name``.
        generation_root: parent of the samples folder ``<name>_<dataset_name>`` (default ``generation``, under
            ``$FSQ_MARDM_HOME`` when set).
    """

    def __init__(self, checkpoints_dir: str, dataset_name: str, name: str,
                 generation_root: str | None = None) -> None:
        _check_component(dataset_name, "--dataset_name")
        _check_component(name, "--name")
        self.checkpoints_dir = checkpoints_dir
        self.dataset_name = dataset_name
        self.name = name
        self.generation_root = generation_root or project_path("generation")

    def __repr__(self) -> str:
        return f"RunDir({self.root!r})"

    @property
    def root(self) -> str:
        """``<checkpoints_dir>/<dataset_name>/<name>``."""
        return os.path.join(self.checkpoints_dir, self.dataset_name, self.name)

    @property
    def model_dir(self) -> str:
        """Checkpoints, TensorBoard events and the per-step loss log."""
        return os.path.join(self.root, "model")

    @property
    def eval_dir(self) -> str:
        """Evaluation logs."""
        return os.path.join(self.root, "eval")

    @property
    def config_path(self) -> str:
        """The resolved config, ``opt.yaml``."""
        return os.path.join(self.root, CONFIG_NAME)

    @property
    def log_file(self) -> str:
        """Text log of the main process."""
        return os.path.join(self.root, "train.log")

    @property
    def latest_path(self) -> str:
        """``model/latest.tar``, the exact-resume checkpoint."""
        return os.path.join(self.model_dir, "latest.tar")

    @property
    def train_log_path(self) -> str:
        """``model/train_log.jsonl``, one line per optimizer step."""
        return os.path.join(self.model_dir, "train_log.jsonl")

    @property
    def generation_dir(self) -> str:
        """``<generation_root>/<name>_<dataset_name>`` for generated samples."""
        return os.path.join(self.generation_root, f"{self.name}_{self.dataset_name}")

    @property
    def lock_path(self) -> str:
        """``.lock``, locked by the process that trains the run; it holds that process's pid."""
        return os.path.join(self.root, LOCK_NAME)

    def best_path(self, metric: str = "fid") -> str:
        """``model/net_best_<metric>.tar`` (``net_best_fid.tar`` for the default)."""
        return os.path.join(self.model_dir, f"net_best_{metric.replace('/', '_')}.tar")

    def make_dirs(self, lock_advice: str = START_ADVICE) -> None:
        """Create ``model/`` and ``eval/`` (and their parents) and take the run's lock (``lock``, whose refusal ends
        with ``lock_advice``); RunDirError naming the folder when that fails.

        Only the first process of a ``torchrun`` / ``accelerate launch`` creates them (the others write nothing into
        the run before training, whose first collective waits for the first process's folder check). So the first
        process knows whether this launch created the folder, and a failed start that it removes does not come back
        from another process still on its way (``discarding_failed_starts``).
        """
        if not is_first_process():
            return
        top = _first_missing(self.root)
        try:
            for folder in (self.model_dir, self.eval_dir):
                os.makedirs(folder, exist_ok=True)
        except OSError as e:
            raise RunDirError(f"cannot create the run folder {self.root} ({e.strerror or e}); fix the permissions or "
                              f"pick another --checkpoints_dir") from e
        # Locked before it is counted as this start's: a start refused here removes nothing of the holder's.
        self.lock(lock_advice)
        if top is not None:
            _created.append((self, top))

    def lock(self, advice: str = START_ADVICE) -> None:
        """Hold the run's lock (``.lock``, in the existing run folder) for this process until ``releasing_run_locks``
        gives it back, or the process ends: another start of the same run, here or in another process, is refused
        with ``RunDirError`` naming the folder and the holder's pid, then ``advice`` (what the refused command can do).
        Only the first process of a launch locks; a process that holds the lock already keeps it.
        """
        if not is_first_process():
            return
        key = os.path.realpath(self.root)
        if key in _locks:
            return
        try:
            _locks[key] = acquire_lock(self.lock_path, f"the run folder {self.root}", advice)
        except FileLockedError as e:
            raise RunDirError(str(e)) from None
        except OSError as e:
            raise RunDirError(f"cannot create the lock file {self.lock_path} ({e.strerror or e}); fix the permissions "
                              f"or pick another --checkpoints_dir") from e
        _locked.append(self)

    def holds_only_setup(self) -> bool:
        """Whether the folder holds nothing a training wrote: only ``train.log``, ``opt.yaml``, ``.lock``, an
        evaluator's ``meta/`` statistics, TensorBoard event files, an empty ``model/train_log.jsonl`` and empty
        folders (what a start leaves when it fails or is stopped before its first checkpoint)."""
        for folder, _, files in os.walk(self.root):
            for name in files:
                path = os.path.join(folder, name)
                relative = os.path.relpath(path, self.root)
                if relative in SETUP_FILES or (relative in _EMPTY_WHEN_SETUP and os.path.getsize(path) == 0):
                    continue
                if not name.startswith(_SETUP_PREFIXES):
                    return False
        return True

    def ensure_writable(self, min_free_bytes: int = 256 * MiB, probe_bytes: int = 4 * MiB) -> None:
        """Fail now, with a clear message, if checkpoints could not be written later.

        Creates the folders, writes and fsyncs a ``probe_bytes`` file in ``model/`` (catches read-only mounts,
        permissions and quota), removes it, and checks that ``min_free_bytes`` are free on that file system.
        """
        self.make_dirs()
        probe = os.path.join(self.model_dir, PROBE_NAME)
        try:
            _write_probe(probe, probe_bytes)
        except OSError as e:
            raise RunDirError(f"cannot write to {self.model_dir} ({e.strerror or e}); checkpoints would fail at "
                              f"the first save. Fix the permissions or pick another --checkpoints_dir.") from e
        finally:
            if os.path.exists(probe):
                os.remove(probe)
        free = shutil.disk_usage(self.model_dir).free
        if free < min_free_bytes:
            # Free space rounded down and the need rounded up, so the refusal never reads "256 MiB free, 256 needed".
            raise RunDirError(f"only {free // MiB} MiB free on the file system of {self.model_dir}; at least "
                              f"{-(-min_free_bytes // MiB)} MiB are needed for the checkpoints of this run. "
                              f"Free some space or pick another --checkpoints_dir.")


def _first_missing(path: str) -> str | None:
    """The outermost folder of ``path`` (itself included) that does not exist yet; None when ``path`` exists."""
    path = os.path.abspath(path)
    if os.path.exists(path):
        return None
    while not os.path.exists(os.path.dirname(path)):
        path = os.path.dirname(path)
    return path


@dataclass
class FailedStart:
    """What ``discarding_failed_starts`` found when its block failed."""

    removed: list[str] = field(default_factory=list)  # the new run folders taken back
    # ``latest.tar`` of the runs the block locked to write into: what ``--is_continue`` resumes. A script of two runs
    # (train_evaluator.py's ``<name>_decomp``, then ``<name>``) may have saved one and not the other.
    resumable: list[str] = field(default_factory=list)


@contextmanager
def discarding_failed_starts(enabled: bool = True) -> Iterator[FailedStart]:
    """Around a script's ``main()``: when the block fails, remove the run folders ``make_dirs`` created inside it
    that hold only what set-up wrote (``RunDir.holds_only_setup``), with the parents created for them. The
    ``FailedStart`` it yields receives the removed folders and the checkpoints left to resume.

    The scripts' error boundary (``utils.cli.run_script``) wraps ``main()`` in it on the first process, so a start
    refused after its folder was made (a dataset file missing, a bad flag found late) leaves the checkpoints folder
    as it was. Folders that existed before, or that hold a checkpoint, are kept. The run locks taken inside the
    block are released at its end, after any removal.
    """
    mark, locked_mark, failed = len(_created), len(_locked), FailedStart()
    with releasing_run_locks():
        try:
            yield failed
        except BaseException:
            if enabled:
                for run, top in reversed(_created[mark:]):
                    if os.path.isdir(run.root) and run.holds_only_setup():
                        _remove_run(run.root, top)
                        failed.removed.append(run.root)
                for run in _locked[locked_mark:]:
                    if os.path.isfile(run.latest_path) and run.latest_path not in failed.resumable:
                        failed.resumable.append(run.latest_path)
            raise
        finally:
            del _created[mark:], _locked[locked_mark:]


@contextmanager
def releasing_run_locks() -> Iterator[None]:
    """Release, at the end of the block, the run locks (``RunDir.lock``) this process took inside it."""
    held = set(_locks)
    try:
        yield
    finally:
        for key in [key for key in _locks if key not in held]:
            _locks.pop(key).release()


def _remove_run(root: str, top: str) -> None:
    """Remove ``root`` and its parents up to ``top`` (the first folder created for it) while they are empty."""
    shutil.rmtree(root, ignore_errors=True)
    parent = os.path.dirname(os.path.abspath(root))
    while len(parent) >= len(top) and os.path.isdir(parent) and not os.listdir(parent):
        try:
            os.rmdir(parent)
        except OSError:  # filled meanwhile (another start): it stays, and the failed start's own error is raised
            break
        parent = os.path.dirname(parent)


def _write_probe(path: str, nbytes: int) -> None:
    """Write ``nbytes`` to ``path`` and fsync, so a full disk or a read-only mount shows up as an ``OSError``."""
    chunk = b"\0" * min(nbytes, MiB)
    with open(path, "wb") as f:
        written = 0
        while written < nbytes:
            f.write(chunk[: nbytes - written])
            written += len(chunk[: nbytes - written])
        f.flush()
        os.fsync(f.fileno())
