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


def setup_logging(log_file: str | None = None, is_main: bool | None = None, level: int = logging.INFO) -> None:
    """Route the root logger to the console and ``log_file`` (appended) on the main process.

    Idempotent: handlers installed by an earlier call are replaced, others are left alone. ``is_main`` defaults to
    ``RANK == 0`` from the environment (as set by ``torchrun`` / ``accelerate launch``).
    """
    if is_main is None:
        is_main = _default_is_main()
    root = logging.getLogger()
    for handler in [h for h in root.handlers if getattr(h, "_installed_by_setup_logging", False)]:
        root.removeHandler(handler)
        handler.close()
    rank = os.environ.get("RANK", "0")
    fmt = FORMAT if is_main else f"[rank {rank}] {FORMAT}"
    handlers: list[logging.Handler] = [_TqdmHandler()]
    if is_main and log_file:
        os.makedirs(os.path.dirname(os.path.abspath(log_file)), exist_ok=True)
        handlers.append(logging.FileHandler(log_file, mode="a"))
    for handler in handlers:
        handler.setFormatter(logging.Formatter(fmt, DATE_FORMAT))
        handler._installed_by_setup_logging = True
        root.addHandler(handler)
    root.setLevel(level if is_main else logging.WARNING)


class TensorBoard:
    """``SummaryWriter`` on the main process, a no-op elsewhere (and when ``enabled`` is false).

    Args:
        log_dir: folder of the event files (the run's ``model/``).
        enabled: usually ``accelerator.is_main_process``.
        purge_step: on resume, the resumed step: events at or after it from the interrupted run are hidden, so the
            curves do not show the replayed steps twice.
    """

    def __init__(self, log_dir: str, enabled: bool = True, purge_step: int | None = None) -> None:
        self.writer = None
        if enabled:
            from torch.utils.tensorboard import SummaryWriter  # imported here: non-main processes never need it

            self.writer = SummaryWriter(log_dir=log_dir, purge_step=purge_step)

    def scalar(self, tag: str, value: float | torch.Tensor, step: int) -> None:
        """Log one scalar (a 0-d tensor is converted)."""
        if self.writer is not None:
            self.writer.add_scalar(tag, float(value), step)

    def scalars(self, prefix: str, values: dict[str, Any], step: int) -> None:
        """Log ``{name: value}`` as ``<prefix>/<name>`` scalars."""
        for name, value in values.items():
            self.scalar(f"{prefix}/{name}", value, step)

    def flush(self) -> None:
        """Write pending events to disk."""
        if self.writer is not None:
            self.writer.flush()

    def close(self) -> None:
        """Flush and close the event file."""
        if self.writer is not None:
            self.writer.close()
            self.writer = None
