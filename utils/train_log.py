"""What the engine records of training while it runs: the per-step log file and the window of losses between logs.

``TrainLog`` writes ``model/train_log.jsonl`` (one line per step: step, loss, lr), cut back to the resumed step when a
run continues, so an interrupted and resumed run ends with the same file as an uninterrupted one. ``LossWindow``
keeps the per-step losses and logged terms on the device and reads them back only when they are logged (one
synchronisation per log), averaged over processes; ``latest.tar`` carries its sums, so the first log after a resume
averages the same steps as it would have without the interruption.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping
from typing import Any

import torch
from accelerate import Accelerator

from utils.atomic_io import atomic_write
from utils.collectives import all_reduce_mean

logger = logging.getLogger(__name__)


class TrainLog:
    """``model/train_log.jsonl``: one line per step, cut back to the resumed step so a resumed run continues it."""

    def __init__(self, path: str, resume_step: int, enabled: bool) -> None:
        self.file = None
        if not enabled:
            return
        kept = [line for row, line in _read_rows(path) if row["step"] <= resume_step] \
            if resume_step > 0 and os.path.exists(path) else []
        with atomic_write(path) as f:
            f.writelines(kept)
        self.file = open(path, "a")  # kept open for the whole run, flushed at every log

    def write(self, rows: list[dict[str, Any]]) -> None:
        """Append ``rows`` (``{"step", "loss", "lr"}``) and flush."""
        if self.file is not None:
            self.file.writelines(json.dumps(row) + "\n" for row in rows)
            self.file.flush()

    def close(self) -> None:
        """Close the file (later writes are dropped)."""
        if self.file is not None:
            self.file.close()
            self.file = None


def _read_rows(path: str) -> list[tuple[dict[str, Any], str]]:
    """The rows of a log file with their lines. A last line cut off mid-write (a kill, a full disk) is dropped with
    a warning; any other line that is not a JSON row with a step is a ValueError naming the file and the line."""
    with open(path, "rb") as f:  # decoded line by line: bytes damaged on disk are a bad line, named as such
        lines = f.readlines()
    rows = []
    for number, raw in enumerate(lines, start=1):
        if not raw.strip():
            continue
        try:
            line = raw.decode("utf-8")
            row = json.loads(line)
            if not isinstance(row, dict) or type(row.get("step")) is not int:  # true is no step (bool is an int)
                raise ValueError("not an object with an integer 'step'")
        except ValueError as e:
            if number == len(lines) and not raw.endswith(b"\n"):
                logger.warning("%s: line %d was cut off mid-write (%s); dropped", path, number, e)
                break
            raise ValueError(f"{path}: line {number} is not a training log row ({e}); expected "
                             f'{{"step": ..., "loss": ..., "lr": ...}}') from e
        rows.append((row, line if line.endswith("\n") else line + "\n"))  # a complete row that lost its newline
    return rows


class LossWindow:
    """Per-step losses and per-term sums kept on the device and read back only when logged (one sync per log)."""

    def __init__(self, accelerator: Accelerator) -> None:
        self.accelerator = accelerator
        self.steps: list[tuple[int, torch.Tensor, float]] = []  # pending (step, loss, lr) for the jsonl
        self.sums: dict[str, Any] = {}
        self.count = 0

    def add(self, step: int, loss: torch.Tensor, logs: Mapping[str, Any], lr: float,
            grad_norm: torch.Tensor | None) -> None:
        """Keep one step's loss, logged terms, lr and gradient norm (tensors stay on the device)."""
        loss = loss.detach().float()
        self.steps.append((step, loss, lr))
        terms = {**{k: v.detach().float() if torch.is_tensor(v) else float(v) for k, v in logs.items()}, "loss": loss}
        if grad_norm is not None:
            terms["grad_norm"] = grad_norm.detach().float()
        for name, value in terms.items():
            self.sums[name] = self.sums[name] + value if name in self.sums else value
        self.count += 1

    def flush(self, train_log: TrainLog) -> None:
        """Write the pending per-step losses (averaged over processes) to the jsonl log."""
        if not self.steps:
            return
        losses = self._mean_over_processes(torch.stack([loss for _, loss, _ in self.steps])).tolist()
        train_log.write([{"step": step, "loss": value, "lr": lr}
                         for (step, _, lr), value in zip(self.steps, losses)])
        self.steps = []

    def report(self, train_log: TrainLog, reset: bool = True) -> dict[str, float]:
        """Flush, and return the window means (over steps and processes) of loss and terms, with the lr of the
        window's last step (the rate in use when it is logged); then reset, unless ``reset`` is False (a log off the
        cadence, at the end of a run, whose window a longer resumed run goes on filling)."""
        lr = self.steps[-1][2] if self.steps else float("nan")
        self.flush(train_log)
        names = list(self.sums)
        device = self.accelerator.device
        stacked = torch.stack([torch.as_tensor(self.sums[n], dtype=torch.float32, device=device) for n in names])
        means = (self._mean_over_processes(stacked) / self.count).tolist()
        if reset:
            self.sums, self.count = {}, 0
        return {**dict(zip(names, means)), "lr": lr}

    def state_dict(self) -> dict[str, Any]:
        """This process's sums since the last log and their step count, as plain values (for ``latest.tar``; the
        per-step entries are written to the jsonl before every save)."""
        return {"count": self.count,
                "sums": {k: v.detach().cpu() if torch.is_tensor(v) else v for k, v in self.sums.items()}}

    def load_state_dict(self, states: list[dict[str, Any]]) -> None:
        """Restore the window of this process from ``states`` (one per saved process, in rank order). Saved by
        another number of processes, every process takes their mean: a log averages over processes, so it reports
        the same values."""
        rank, world = self.accelerator.process_index, self.accelerator.num_processes
        if len(states) == world:
            state = states[rank]
            sums = dict(state["sums"])
        else:
            state = states[0]
            sums = {k: sum(s["sums"][k] for s in states) / len(states) for k in state["sums"]}
        device = self.accelerator.device
        self.sums = {k: v.to(device) if torch.is_tensor(v) else float(v) for k, v in sums.items()}
        self.count = int(state["count"])
        self.steps = []

    def _mean_over_processes(self, values: torch.Tensor) -> torch.Tensor:
        if self.accelerator.num_processes == 1:
            return values
        return all_reduce_mean(values)
