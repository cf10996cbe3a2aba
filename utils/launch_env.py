"""What ``torchrun`` / ``accelerate launch`` tell a process about its launch, read before the engine's accelerator
exists: its rank and the number of processes (a plain ``python`` start is rank 0 of 1)."""

from __future__ import annotations

import os


def process_rank() -> int:
    """This process's global rank (``RANK``), 0 when not launched as one of several."""
    return int(os.environ.get("RANK", "0"))


def world_size() -> int:
    """Processes in the launch (``WORLD_SIZE``), 1 when not launched as one of several."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def is_first_process() -> bool:
    """True on the process that validates, logs and writes the run's files (rank 0)."""
    return process_rank() == 0
