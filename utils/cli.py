"""The error boundary of every top-level script: what a user got wrong is one line, not a traceback.

Errors raised for bad input (a missing or damaged checkpoint, a dataset file that fails its checks, an unusable run
folder, a bad config value, a flag the chosen model cannot take) already name the file, the field and what was
expected; their traceback only buries that line. ``FSQ_MARDM_TRACEBACK=1`` shows it anyway, for debugging.

SIGTERM (``torchrun``, a scheduler, ``kill``) and SIGHUP stop ``main()`` as an exception would, so temporary files
are removed and a run folder with nothing saved yet is taken back; the script then says which signal stopped it and
how to go on, and exits with status 128 + the signal's number (``utils.stop_signals``).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import Any, NoReturn

from options.config import ConfigError
from utils.checkpoint import CheckpointError
from utils.collectives import MainProcessFailed
from utils.file_lock import FileLockedError
from utils.launch_env import is_first_process, process_rank, world_size
from utils.run_dir import FailedStart, RunDirError, discarding_failed_starts
from utils.stop_signals import Stopped, exit_stopped, stopping_on_signals
from utils.user_errors import PATH_ERRORS, TRACEBACK_ENV, exit_with_error

# DatasetError is a ValueError; ValueError also covers model and flag validation (``build_tokenizer``, ...).
USER_ERRORS = (CheckpointError, RunDirError, FileLockedError, ConfigError, *PATH_ERRORS, ValueError)
# How a stopped script goes on (``run_script``'s ``resume``).
RESUME_TRAINING = "rerun with --is_continue to resume from the last checkpoint (model/latest.tar)"
RESUME_EVALUATION = "rerun with --is_continue to reuse the replications it finished"
__all__ = ["RESUME_EVALUATION", "RESUME_TRAINING", "TRACEBACK_ENV", "USER_ERRORS", "run_script"]


def run_script(main: Callable[[], Any], prog: str | None = None, single_process: bool = False,
               resume: str | None = None) -> Any:
    """``main()``; a ``USER_ERRORS`` exception, or ``SystemExit("<message>")``, exits with status 1 and
    ``<prog>: error: <message>`` on stderr.

    SIGTERM or SIGHUP during ``main()`` exits with status 128 + the signal's number after the clean-up and
    ``<prog>: stopped by <SIGNAL>; <resume>`` on stderr (``resume``: how to go on, e.g. ``RESUME_TRAINING``).

    ``single_process`` scripts (evaluation, sampling) do not split their work over processes: started by ``torchrun``
    or ``accelerate launch`` with more than one, each process would do all of it and write the same files, so they
    stop with an error instead.
    """
    prog = prog or os.path.basename(sys.argv[0])
    processes = world_size()
    if single_process and processes > 1:
        sys.exit(f"{prog}: error: runs in one process, but was launched as {processes} (torchrun / accelerate "
                 f"launch); start it with `python {prog} ...` (--device picks the GPU)")
    failed = FailedStart()
    try:
        # On the first process, a failed or stopped start removes the run folders it created and left without a
        # checkpoint (``utils.run_dir.discarding_failed_starts``); ``failed`` names them and the checkpoints left.
        with stopping_on_signals(), discarding_failed_starts(enabled=is_first_process()) as failed:
            return _reporting_errors(main, prog)
    except Stopped as stop:
        _exit_stopped(prog, stop, resume, failed)


def _reporting_errors(main: Callable[[], Any], prog: str) -> Any:
    """``main()``, its user errors reported as ``run_script`` says."""
    if os.environ.get(TRACEBACK_ENV):
        return main()
    try:
        return main()
    except USER_ERRORS as e:
        exit_with_error(prog, e)
    except MainProcessFailed as e:
        # The main process failed in work only it does (a validation, a checkpoint save): it says why itself.
        exit_with_error(prog, RuntimeError(f"{str(e).splitlines()[0][:300]} (see that process's error)"))
    except RuntimeError as e:
        if world_size() > 1 and _peer_gone(e):
            # Another process of the launch failed and left: its own error line says why; this one's traceback would
            # only bury it under a communication backend's.
            exit_with_error(prog, RuntimeError(f"another process of this launch ended, so this one stops too (see "
                                               f"that process's error; here: {str(e).splitlines()[0][:200]})"))
        raise
    except SystemExit as e:
        # A script's own refusal, raise SystemExit("<message>"), in the same form; a status (argparse's 2) as it is.
        if isinstance(e.code, str) and not e.code.startswith(f"{prog}: error: "):
            sys.exit(f"{prog}: error: {e.code}")
        raise


# What gloo's and NCCL's collectives say when a peer process has gone away.
PEER_GONE = ("Connection closed by peer", "Connection reset by peer", "Broken pipe", "NCCL communicator was aborted")


def _peer_gone(error: RuntimeError) -> bool:
    """Whether ``error`` is a collective's failure because another process of the launch ended."""
    return any(words in str(error) for words in PEER_GONE)


def _exit_stopped(prog: str, stop: Stopped, resume: str | None, failed: FailedStart) -> NoReturn:
    """Say which signal stopped the script and how to go on; exit with ``stop.exit_status``."""
    if not is_first_process():
        # Only the first process knows whether the run folder stays (it removes a new one without a checkpoint, and
        # --is_continue would then find nothing): its line says how to go on.
        exit_stopped(prog, stop, f"process {process_rank()} of {world_size()}; the first process says how to go on")
    removed = ", ".join(failed.removed)
    if removed and failed.resumable:
        # Another run of the script has a checkpoint (train_evaluator.py stopped in its first stage): a new start
        # would be refused, --is_continue resumes it.
        exit_stopped(prog, stop, f"nothing was saved in the new run folder {removed}, so it was removed, but "
                                 f"{', '.join(failed.resumable)} was: rerun with --is_continue to resume from it")
    if removed:
        exit_stopped(prog, stop, f"nothing was saved, so the new run folder {removed} was removed: rerun to start "
                                 f"again")
    exit_stopped(prog, stop, resume)
