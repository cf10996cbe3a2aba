"""Evaluation reports: the per-metric mean and 95% interval, the text table printed to stdout and logs, and the
JSON files written next to a run (atomically)."""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch

from utils.atomic_io import atomic_write
from utils.checkpoint import file_sha256

METRICS = ("fid", "diversity", "top1", "top2", "top3", "matching_score", "multimodality")
METRIC_LABELS = {
    "fid": "FID", "diversity": "Diversity", "top1": "R-precision top-1", "top2": "R-precision top-2",
    "top3": "R-precision top-3", "matching_score": "Matching score (MM-Dist)", "multimodality": "Multimodality",
}


@dataclass
class MetricStat:
    """Mean over replications and the half-width of its 95% interval (1.96 * std / sqrt(R), ddof 0)."""

    mean: float
    ci: float


@dataclass
class EvalReport:
    """``metrics``: the model row; ``real``: GT through the evaluator (no FID or multimodality); ``rows``: one dict
    per replication, as streamed to the JSONL file; ``meta``: protocol settings, seeds, evaluator and checkpoint."""

    metrics: dict[str, MetricStat]
    real: dict[str, MetricStat]
    rows: list[dict[str, Any]]
    meta: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Plain values for JSON: metrics, real, meta and the replication rows."""
        return {"metrics": {k: asdict(v) for k, v in self.metrics.items()},
                "real": {k: asdict(v) for k, v in self.real.items()}, "meta": self.meta, "replications": self.rows}


def run_folder_of(path: str) -> str | None:
    """The run folder of a checkpoint stored as ``<run>/model/<file>``, else None."""
    model_dir = os.path.dirname(os.path.abspath(path))
    return os.path.dirname(model_dir) if os.path.basename(model_dir) == "model" else None


def checkpoint_info(path: str) -> dict[str, Any]:
    """``{"checkpoint": absolute path, "checkpoint_sha256": ...}`` for ``meta``."""
    return {"checkpoint": os.path.abspath(path), "checkpoint_sha256": file_sha256(path)}


def _fmt(stat: MetricStat | None, interval: bool = True) -> str:
    if stat is None:
        return "-"
    if not math.isfinite(stat.mean):
        return str(stat.mean)
    return f"{stat.mean:.4f} ± {stat.ci:.4f}" if interval else f"{stat.mean:.4f}"


def format_report(report: EvalReport, title: str | None = None) -> str:
    """The report as a text table (Real and model columns), for stdout and logs."""
    names = [m for m in METRICS if m in report.metrics or m in report.real]
    width = max(len(METRIC_LABELS[m]) for m in names) + 2
    lines = [title] if title else []
    lines.append(f"{'Metric':<{width}}{'Real':<22}{'Model':<22}")
    lines.append("-" * (width + 44))
    r = len(report.rows)
    # One replication has no spread to estimate an interval from: its ± 0 would read as no uncertainty at all.
    interval = r > 1
    for m in names:
        lines.append(f"{METRIC_LABELS[m]:<{width}}{_fmt(report.real.get(m), interval):<22}"
                     f"{_fmt(report.metrics.get(m), interval):<22}")
    proto = report.meta.get("protocol", {})
    samples = (f"{proto.get('num_samples', '?')} {proto.get('split', '?')} samples "
               f"(batch {proto.get('batch_size', '?')})")
    lines.append(f"{r} replications of {samples}; mean ± 1.96·std/√{r}" if interval
                 else f"{r} replication of {samples}; no interval from one replication")
    return "\n".join(lines)


def write_report_json(report: EvalReport | dict[str, Any], path: str) -> None:
    """Write the report (or any JSON-able dict) atomically, indented."""
    data = report.to_dict() if isinstance(report, EvalReport) else report
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with atomic_write(path) as f:
        json.dump(data, f, indent=2, default=json_default)
        f.write("\n")


def json_default(value: Any) -> Any:
    """``json.dump``'s fallback: numpy and torch values as plain numbers and lists, anything else as its string."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().tolist()
    return str(value)
