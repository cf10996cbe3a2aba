"""SIGTERM and SIGHUP stop a script the way an error does, so its clean-up runs.

Python's default for both signals ends the process at once: no ``finally`` block, context manager or ``atexit``
handler runs, so a checkpoint's temporary file (``utils.atomic_io``), the folder of a run that had not saved anything
yet (``utils.run_dir.discarding_failed_starts``) and open logs are left as the kill found them. ``torchrun``, cluster
schedulers (SLURM, Kubernetes) and ``kill`` all stop a process with SIGTERM; a closed terminal sends SIGHUP.

``stopping_on_signals`` turns them into a ``Stopped`` exception in the main thread while a script's ``main()`` runs;
``exit_stopped`` (called by ``utils.cli.run_script``) reports it in one line and exits with status 128 + the signal's
number (143 for SIGTERM), as a shell does for a process the signal killed. Scripts that do not go through
``run_script`` (``prepare_data.py``, and ``render.py`` and ``plot_loss.py``, which do not import torch) get the same
through ``run_with_error_boundary``. Nothing is installed at import time, and the previous handlers are put back when
the block ends, so library use and tests see Python's defaults; two changes outlive a stop on purpose, as the process
is on its way out: torch's DataLoader SIGCHLD handler is replaced (``_forget_dataloader_workers``) and
``exit_stopped`` ignores repeats of the signal.

Signals land at any line, so the module also covers the places where an exception cannot get out cleanly: an error
raised by the clean-up the stop interrupted (torch.save's zip writer) ends the block as the stop; a stop swallowed by
a finalizer is raised again by ``raise_if_stopped``; ``stops_deferred`` holds a stop for the few lines between
creating something and holding it (a temporary file, a TensorBoard event queued but not yet counted).

A process launched as one of several (``torchrun``, ``accelerate launch``) can be inside native code that waits for
another process when the stop comes: a collective, or the start-up's rendezvous when the first process refused the
start before joining it (its run folder locked by another run, say). Python runs a signal's handler only between two
bytecodes, so that process would sit there until ``torchrun`` kills it 30 seconds later. There, a watch thread sees
the signal arrive (``signal.set_wakeup_fd``) and, if the main thread has not taken it within ``STUCK_AFTER_S``
seconds, says so in one line and exits with 128 + the signal's number without the clean-up it could not reach.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
import traceback
from collections.abc import Callable, Iterator
from types import FrameType
from typing import NoReturn, TypeVar

from utils.launch_env import world_size
from utils.user_errors import TRACEBACK_ENV, exit_with_error

T = TypeVar("T")

# SIGHUP does not exist on Windows.
STOP_SIGNALS = tuple(getattr(signal, name) for name in ("SIGTERM", "SIGHUP") if hasattr(signal, name))
# The signals each active ``stopping_on_signals`` block has had, the innermost block last (main thread only).
_ACTIVE: list[list[int]] = []
# The signals held back by each active ``stops_deferred`` block, the innermost last (main thread only).
_DEFERRED: list[list[int]] = []
# How long, after a stop signal, a process launched as one of several waits for its main thread to take the signal
# before it takes the main thread for stuck in native code and exits (``torchrun`` kills its workers 30 s after its
# SIGTERM). A main thread that runs Python takes a signal within microseconds; only a single native call that long
# (a collective waiting for a peer, a rendezvous) goes past it.
STUCK_AFTER_S = 10.0
# The write end of the active watch's wakeup pipe (``_StuckWatch``), None when no watch is on; and whether the fork
# handler that drops it in a child is registered (once per process).
_watch_fd: int | None = None
_fork_handler_registered = False


class Stopped(BaseException):
    """A stop signal arrived. A ``BaseException``, like ``KeyboardInterrupt``: ``except Exception`` does not swallow
    it, while ``finally`` blocks and context managers run as it goes up."""

    def __init__(self, signum: int) -> None:
        self.signum = signum
        self.signal_name = signal.Signals(signum).name
        super().__init__(f"stopped by {self.signal_name}")

    @property
    def exit_status(self) -> int:
        """128 + the signal's number: what a shell reports for a process the signal killed."""
        return 128 + self.signum


@contextlib.contextmanager
def stopping_on_signals() -> Iterator[None]:
    """Inside the block, SIGTERM and SIGHUP raise ``Stopped`` in the main thread.

    Only signals left at the default action are taken over: one ignored (``nohup`` ignores SIGHUP) or handled by
    someone else stays so. Off the main thread, where Python cannot set handlers, the block changes nothing. A repeat
    of the signal while the first one's clean-up runs is ignored: ``torchrun`` passes a scheduler's SIGTERM on to its
    workers, which may have had it already from the scheduler. An error raised by a clean-up the stop interrupted,
    or by the block after a stop arrived, ends the block as ``Stopped`` too, that error as its cause. A process forked
    inside the block (a ``DataLoader`` worker) keeps the default action, and dies of a stop sent to the whole process
    group (a closed terminal, ``scancel``, Kubernetes); from then on torch no longer reports its workers' deaths.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    owner = os.getpid()
    stopping: list[int] = []

    taken = threading.Event()

    def stop(signum: int, frame: FrameType | None) -> None:
        if os.getpid() != owner:
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
            return
        taken.set()
        if stopping:
            return
        stopping.append(signum)
        _forget_dataloader_workers()
        if _DEFERRED:
            _DEFERRED[-1].append(signum)
            return
        raise Stopped(signum)

    previous = {}
    for signum in STOP_SIGNALS:
        if signal.getsignal(signum) is signal.SIG_DFL:
            previous[signum] = signal.signal(signum, stop)
    _ACTIVE.append(stopping)
    watch = _StuckWatch(frozenset(previous), taken) if previous and world_size() > 1 else None
    try:
        yield
    except Stopped:
        raise
    except BaseException as error:
        stop = _stop_behind(error)
        signum = stop.signum if stop is not None else stopping[0] if stopping else None
        if signum is None:
            raise
        # A clean-up the signal cut short failed in turn (torch.save's zip writer cannot finish a file interrupted
        # between two records, and says so with a RuntimeError), or the block failed while ``stops_deferred`` held
        # the stop back: the stop is what happened, and what the exit status and the message must say. The failure
        # stays in the traceback as the cause.
        raise Stopped(signum) from error
    finally:
        if watch is not None:
            watch.close()
        _pop(_ACTIVE, stopping)
        for signum, handler in previous.items():
            signal.signal(signum, handler)


class _StuckWatch:
    """A daemon thread that reads the signals Python's C-level handler reports on a wakeup pipe (it writes there at
    once, even while the main thread is in native code) and, for one of ``signums``, waits ``STUCK_AFTER_S`` for
    ``taken`` (set by the main thread's handler) before it reports the stop and exits the process.

    Only the main thread may set the wakeup fd, which ``stopping_on_signals`` has checked. A process forked while the
    watch is on drops the inherited fd (``_drop_wakeup_fd``): its signals are not the parent's.
    """

    def __init__(self, signums: frozenset[int], taken: threading.Event) -> None:
        global _fork_handler_registered, _watch_fd
        self._read, self._write = os.pipe()
        os.set_blocking(self._write, False)
        self._previous = signal.set_wakeup_fd(self._write, warn_on_full_buffer=False)
        _watch_fd = self._write
        if not _fork_handler_registered:
            os.register_at_fork(after_in_child=_drop_wakeup_fd)
            _fork_handler_registered = True
        threading.Thread(target=self._run, args=(signums, taken), name="stop-signal-watch", daemon=True).start()

    def _run(self, signums: frozenset[int], taken: threading.Event) -> None:
        try:
            while data := os.read(self._read, 64):
                arrived = [signum for signum in data if signum in signums]
                if arrived and not taken.wait(STUCK_AFTER_S):
                    _exit_stuck(arrived[0])
        except OSError:
            pass
        finally:
            os.close(self._read)

    def close(self) -> None:
        """Put the previous wakeup fd back, then close the pipe's write end: the thread reads its end and ends."""
        global _watch_fd
        signal.set_wakeup_fd(self._previous)
        _watch_fd = None
        os.close(self._write)


def _drop_wakeup_fd() -> None:
    """In a child forked while a watch is on: no wakeup fd, so the parent's watch never reads the child's signals."""
    if _watch_fd is not None:
        with contextlib.suppress(ValueError):  # forked from a thread other than the main one: not ours to change
            signal.set_wakeup_fd(-1)


def _exit_stuck(signum: int) -> NoReturn:
    """The main thread did not take the stop in time: one line on stderr, then exit at once with 128 + ``signum``."""
    prog = os.path.basename(sys.argv[0]) or "python"
    with contextlib.suppress(OSError):
        os.write(2, (f"{prog}: stopped by {signal.Signals(signum).name}, which came while this process waited for "
                     f"another one of the launch (a collective, or the start-up that the first process left); it "
                     f"exits without its clean-up\n").encode())
    os._exit(128 + signum)


@contextlib.contextmanager
def stops_deferred() -> Iterator[None]:
    """A stop signal that arrives inside the block raises ``Stopped`` only when the block ends.

    For the few lines between creating something and holding it where a clean-up finds it: a temporary file that
    ``tempfile.mkstemp`` has created but not yet returned would be left behind by a ``Stopped`` raised in between.
    Put the block inside the ``try`` whose clean-up removes what it creates. Off the main thread it changes nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    held: list[int] = []
    _DEFERRED.append(held)
    try:
        yield
    finally:
        _pop(_DEFERRED, held)
    if held:
        raise Stopped(held[0])


def _forget_dataloader_workers() -> None:
    """Take torch's ``DataLoader`` SIGCHLD handler off, for the rest of the process.

    That handler raises a ``RuntimeError`` ("DataLoader worker ... is killed by signal") in the main thread, at
    whatever line it is on, when a worker dies. A stop sent to the process group kills the workers on purpose, so the
    error would only land somewhere in the stop's clean-up and skip the rest of it (a temporary file not removed, the
    engine's loggers not closed). The process is on its way out, and the clean-up shuts the workers down itself; a
    later SIGCHLD must not raise either, so the handler is not put back. It becomes a handler that does nothing rather
    than the default: a SIGCHLD already pending when the stop arrives would otherwise make Python print "Signal 17
    ignored due to race condition".
    """
    sigchld = getattr(signal, "SIGCHLD", None)  # none on Windows
    if sigchld is not None and getattr(signal.getsignal(sigchld), "__module__", "").startswith("torch.utils.data"):
        signal.signal(sigchld, _child_exited)


def _child_exited(signum: int, frame: FrameType | None) -> None:
    """SIGCHLD after a stop: a worker the stop killed has exited; nothing to do."""


def _pop(stack: list[list[int]], entry: list[int]) -> None:
    """Take ``entry`` itself off ``stack`` (``list.remove`` compares by value: two empty lists are equal, and the
    outer block's list would go instead of the inner's)."""
    for i in range(len(stack) - 1, -1, -1):
        if stack[i] is entry:
            del stack[i]
            return


def raise_if_stopped() -> None:
    """Raise ``Stopped`` again if a stop signal arrived in the active block and its exception never got out.

    Python only prints an exception raised in a ``__del__`` method or a garbage-collector callback, so a signal whose
    handler ran there would be lost, and its repeats ignored: the script would go on until killed. Long loops (the
    training engine's steps) call this once per iteration; it costs a list lookup.
    """
    if _ACTIVE and _ACTIVE[-1]:
        raise Stopped(_ACTIVE[-1][0])


def _stop_behind(error: BaseException) -> Stopped | None:
    """The ``Stopped`` that ``error`` was raised while handling (its ``__context__``/``__cause__`` chain), or None."""
    seen: set[int] = set()
    pending: list[BaseException | None] = [error.__context__, error.__cause__]
    while pending:
        current = pending.pop()
        if current is None or id(current) in seen:
            continue
        if isinstance(current, Stopped):
            return current
        seen.add(id(current))
        pending += [current.__context__, current.__cause__]
    return None


def exit_stopped(prog: str, stop: Stopped, hint: str | None = None) -> NoReturn:
    """Exit with ``stop.exit_status`` and ``<prog>: stopped by <SIGNAL>; <hint>`` on stderr (the traceback too, where
    it stopped, when ``FSQ_MARDM_TRACEBACK`` is set). Call it from the ``except`` block that caught ``stop``.

    From here on SIGTERM and SIGHUP are ignored (those left at the default action): the clean-up is done, but the
    interpreter still has to exit, which with torch loaded takes a second or more, and a repeat of the signal then
    (``torchrun`` passing on a scheduler's SIGTERM) would kill the process, so that it reports a kill by the signal
    instead of this exit status and loses buffered output."""
    for signum in STOP_SIGNALS:
        if signal.getsignal(signum) is signal.SIG_DFL:
            signal.signal(signum, signal.SIG_IGN)
    # After SIGHUP the terminal may be gone: the exit status still tells.
    with contextlib.suppress(OSError):
        if os.environ.get(TRACEBACK_ENV):
            traceback.print_exception(stop)
        print(f"{prog}: {stop}" + (f"; {hint}" if hint else ""), file=sys.stderr, flush=True)
    sys.exit(stop.exit_status)


def run_with_error_boundary(main: Callable[[], T], prog: str, errors: tuple[type[BaseException], ...],
                            hint: str) -> T:
    """``main()`` for a script that does not go through ``utils.cli.run_script``: an ``errors`` exception exits with
    status 1 and ``<prog>: error: <error>`` (``utils.user_errors.exit_with_error``); SIGTERM or SIGHUP stops it as
    ``stopping_on_signals`` says, so temporary files and staging folders are removed, and exits with status 128 + the
    signal's number and ``<prog>: stopped by <SIGNAL>; <hint>``."""
    try:
        with stopping_on_signals():
            return main()
    except errors as e:
        exit_with_error(prog, e)
    except Stopped as stop:
        exit_stopped(prog, stop, hint)
