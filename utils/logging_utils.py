"""Logger set-up and a TensorBoard writer that is silent outside the main process.

Library code logs through ``logging.getLogger(__name__)``; :func:`setup_logging` decides where those records go:
the console (through ``tqdm.write`` so progress bars are not torn) and a file in the run folder, on the main process
only. Other processes keep warnings and errors on the console, tagged with their rank.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Any

import torch
from tqdm import tqdm

from utils.stop_signals import stops_deferred

FORMAT = "[%(asctime)s] %(levelname)s %(name)s: %(message)s"
DATE_FORMAT = "%Y-%m-%d %H:%M:%S"


class _TqdmHandler(logging.StreamHandler):
    """Console handler that prints above an active tqdm bar instead of through it."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            tqdm.write(self.format(record), file=sys.stderr)
        except Exception:  # logging must never raise into the training loop
            self.handleError(record)


def _default_is_main() -> bool:
    return int(os.environ.get("RANK", os.environ.get("LOCAL_RANK", "0"))) == 0


class _HeldRecords(logging.Handler):
    """Keeps the records of a script's set-up (at most ``capacity``) until its log file is known."""

    def __init__(self, capacity: int = 10_000) -> None:
        super().__init__()
        self.capacity = capacity
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        if len(self.records) < self.capacity:
            self.records.append(record)


def setup_logging(log_file: str | None = None, is_main: bool | None = None, level: int = logging.INFO,
                  hold: bool = False) -> None:
    """Route the root logger to the console and ``log_file`` (appended) on the main process.

    Idempotent: handlers installed by an earlier call are replaced, others are left alone. ``is_main`` defaults to
    ``RANK == 0`` from the environment (as set by ``torchrun`` / ``accelerate launch``). ``hold`` (without
    ``log_file``): keep the records from now on until a later call names the log file, which then receives them
    first; scripts check their flags and load their inputs before they create the run folder, and what that logs
    (which tokenizer, which weights, warnings about it) belongs in the run's log too. A ``hold`` call starts afresh,
    so what a failed earlier ``main()`` in the same process held never reaches the next run's log: every script's
    ``main()`` that writes a log file starts with one.
    """
    if is_main is None:
        is_main = _default_is_main()
    root = logging.getLogger()
    held: list[logging.LogRecord] = []
    for handler in [h for h in root.handlers if getattr(h, "_installed_by_setup_logging", False)]:
        if isinstance(handler, _HeldRecords):
            held = handler.records
        root.removeHandler(handler)
        handler.close()
    rank = os.environ.get("RANK", "0")
    fmt = FORMAT if is_main else f"[rank {rank}] {FORMAT}"
    handlers: list[logging.Handler] = [_TqdmHandler()]
    if is_main and log_file:
        os.makedirs(os.path.dirname(os.path.abspath(log_file)), exist_ok=True)
        handlers.append(logging.FileHandler(log_file, mode="a"))
    elif is_main and hold:
        handlers.append(_HeldRecords())
    for handler in handlers:
        handler.setFormatter(logging.Formatter(fmt, DATE_FORMAT))
        handler._installed_by_setup_logging = True
        root.addHandler(handler)
    root.setLevel(level if is_main else logging.WARNING)
    if held and len(handlers) > 1 and not isinstance(handlers[1], _HeldRecords):
        for record in held:
            if record.levelno >= handlers[1].level:
                handlers[1].handle(record)


class TensorBoard:
    """``SummaryWriter`` on the main process, a no-op elsewhere (and when ``enabled`` is false).

    Args:
        log_dir: folder of the event files (the run's ``model/``).
        enabled: usually ``accelerator.is_main_process``.
        purge_step: on resume, the first step the resumed run logs (the resumed step + 1; the step itself where
            the run ended off the log cadence and trains on): events at or after it from the interrupted run are
            hidden, so the curves do not show the replayed steps twice.
    """

    def __init__(self, log_dir: str, enabled: bool = True, purge_step: int | None = None) -> None:
        self.writer = None
        if enabled:
            from torch.utils.tensorboard import SummaryWriter  # imported here: non-main processes never need it

            self.writer = SummaryWriter(log_dir=log_dir, purge_step=purge_step)

    def scalar(self, tag: str, value: float | torch.Tensor, step: int) -> None:
        """Log one scalar (a 0-d tensor is converted)."""
        if self.writer is not None:
            # The writer hands events to its thread through a queue: a stop signal raised between queuing an event and
            # counting it breaks the queue's count (the thread dies of it at close), and one raised before the thread
            # is woken leaves it asleep until its flush timer (120 s) while close() waits for it.
            with stops_deferred():
                self.writer.add_scalar(tag, float(value), step)

    def scalars(self, prefix: str, values: dict[str, Any], step: int) -> None:
        """Log ``{name: value}`` as ``<prefix>/<name>`` scalars."""
        for name, value in values.items():
            self.scalar(f"{prefix}/{name}", value, step)

    def flush(self) -> None:
        """Write pending events to disk."""
        if self.writer is not None:
            with stops_deferred():  # as in scalar()
                self.writer.flush()

    def close(self) -> None:
        """Flush and close the event file."""
        if self.writer is not None:
            with stops_deferred():  # as in scalar(): close() queues a last event for the thread
                self.writer.close()
            self.writer = None
