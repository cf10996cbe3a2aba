"""The report of ``reproduce.py``: measured against published, per evaluation stage, with what produced each number.

``measured`` reads the result JSON an evaluation script writes (``--report_json``): the protocol's metrics with
their 95% intervals, and for a tokenizer its MPJPE (one pass over the split, so no interval). ``compare`` puts the
published numbers beside them. A published value inside the measured 95% interval reads "within the 95% CI";
otherwise the verdict says which side it falls on and, for metrics with a better side, whether the reproduction is
better or worse. Unverified published numbers (see ``utils.recipes.Published``) are marked in every table.
"""

from __future__ import annotations

import json
import math
import os
import platform
import subprocess
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

import torch

from utils.atomic_io import atomic_write
from utils.eval_report import METRIC_LABELS, METRICS, write_report_json
from utils.recipes import BETTER, Published, Recipe

RECON_METRICS = ("mpjpe_mm", "mpjpe_seq_mm")
LABELS = {**METRIC_LABELS, "mpjpe_mm": "MPJPE per frame (mm)", "mpjpe_seq_mm": "MPJPE per sequence (mm)"}


@dataclass
class Row:
    """One metric of one evaluation stage. ``mean``/``ci`` are None when the stage did not measure it, ``ci`` also
    for a metric without replications (MPJPE)."""

    metric: str
    mean: float | None
    ci: float | None
    real: float | None = None
    published: float | None = None
    source: str | None = None
    verified: bool | None = None
    difference: float | None = None
    verdict: str = ""


def measured(result: dict[str, Any]) -> dict[str, tuple[float, float | None]]:
    """``{metric: (mean, ci)}`` from an evaluation script's result JSON (evaluation_AE.py or evaluation_MARDM.py)."""
    out: dict[str, tuple[float, float | None]] = {}
    protocol = result.get("protocol") or {}
    for name, stat in (protocol.get("metrics") or {}).items():
        if name in METRICS and stat is not None:
            out[name] = (float(stat["mean"]), float(stat["ci"]))
    recon = result.get("reconstruction") or {}
    for name in RECON_METRICS:
        if recon.get(name) is not None:
            out[name] = (float(recon[name]), None)
    return out


def real_values(result: dict[str, Any]) -> dict[str, float]:
    """The GT row of the protocol (real motion through the evaluator): the scale the model's numbers are read on."""
    real = (result.get("protocol") or {}).get("real") or {}
    return {name: float(stat["mean"]) for name, stat in real.items() if name in METRICS and stat is not None}


def _verdict(metric: str, mean: float, ci: float | None, value: float) -> str:
    difference = mean - value
    if not math.isfinite(mean):
        return "not finite"
    if ci is not None and abs(difference) <= ci:
        return "within the 95% CI"
    if difference == 0:
        return "equal"
    side = "above" if difference > 0 else "below"
    better = BETTER.get(metric)
    if better is None:
        return side
    good = (difference < 0) == (better == "lower")
    return f"{side} ({'better' if good else 'worse'})"


def compare(published: tuple[Published, ...], values: dict[str, tuple[float, float | None]],
            real: dict[str, float] | None = None) -> list[Row]:
    """Rows for every measured metric and every published one, in the protocol's order, then MPJPE; ``real``: the GT
    row of the same evaluation, shown beside the model's."""
    by_metric = {p.metric: p for p in published}
    order = [m for m in (*METRICS, *RECON_METRICS) if m in values or m in by_metric]
    rows = []
    for metric in order:
        mean, ci = values.get(metric, (None, None))
        row = Row(metric, mean, ci, (real or {}).get(metric))
        pub = by_metric.get(metric)
        if pub is not None:
            row.published, row.source, row.verified = pub.value, pub.source, pub.verified
            if mean is None:
                row.verdict = "not measured"
            else:
                row.difference = mean - pub.value
                row.verdict = _verdict(metric, mean, ci, pub.value)
        rows.append(row)
    return rows


def environment() -> dict[str, Any]:
    """What ran the recipe: time, Python, torch, device, and the project's git commit where it is a checkout."""
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    try:
        commit = subprocess.run(["git", "-C", repo, "rev-parse", "HEAD"], capture_output=True, text=True,
                                timeout=10).stdout.strip() or None
        dirty = bool(subprocess.run(["git", "-C", repo, "status", "--porcelain", "--untracked-files=no"],
                                    capture_output=True, text=True, timeout=10).stdout.strip()) if commit else None
    except (OSError, subprocess.SubprocessError):
        commit, dirty = None, None
    return {"date": datetime.now(UTC).isoformat(timespec="seconds"), "python": platform.python_version(),
            "platform": platform.platform(), "torch": torch.__version__,
            "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
            "git_commit": commit, "git_dirty": dirty}


def _evaluation_summary(result: dict[str, Any]) -> dict[str, Any]:
    """The settings that identify an evaluation: checkpoint(s) with SHA-256, sampling, protocol, evaluator."""
    keep = ("checkpoint", "checkpoint_sha256", "which", "weights", "model_name", "sampling", "dataset", "split",
            "seed")
    summary = {k: result[k] for k in keep if k in result}
    generator = result.get("generator") or {}
    for key in ("model_name", "step", "tokenizer", "residual", "text_encoder"):
        if generator.get(key) is not None:
            summary.setdefault("generator", {})[key] = generator[key]
    proto = ((result.get("protocol") or {}).get("meta") or {}).get("protocol") or {}
    summary["protocol"] = {k: proto[k] for k in ("replications", "num_samples", "batch_size", "multimodality",
                                                 "evaluator", "eval_key") if k in proto}
    return summary


def build_report(recipe: Recipe, dataset: str, quick: bool, stages: list[dict[str, Any]],
                 results: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The whole report as plain values: recipe, environment, every stage's command and outcome, and per evaluation
    stage the comparison rows and the evaluation's identifying settings."""
    published = recipe.published(dataset)
    evaluations = {}
    for name, result in results.items():
        rows = compare(published.get(name, ()), measured(result), real_values(result))
        evaluations[name] = {"rows": [asdict(r) for r in rows], "evaluation": _evaluation_summary(result)}
    return {"recipe": recipe.name, "title": recipe.title, "paper": recipe.paper, "notes": recipe.notes,
            "dataset": dataset, "quick": quick, "published_datasets": list(recipe.datasets),
            "environment": environment(), "stages": stages, "evaluations": evaluations}


def _num(value: float | None, digits: int = 4) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _evaluator_kind(record: dict[str, Any]) -> str:
    """Which evaluator an evaluation's ``protocol.evaluator`` record names: the official one, or one trained with
    ``train_evaluator.py`` (a result written before the record said so gives its word vectors only)."""
    if record.get("released") is None:
        return f"word vectors: {record.get('source')}"
    if record["released"]:
        return "the official evaluator (released weights, official GloVe vectors)"
    return (f"trained with train_evaluator.py (word vectors: {record.get('source')}), not the papers' evaluator: its "
            f"numbers are not comparable with the published ones")


def format_markdown(report: dict[str, Any]) -> str:
    """The report as Markdown: what was run, then a table per evaluation stage."""
    env = report["environment"]
    lines = [f"# Reproduction: {report['title']}", "",
             f"- recipe `{report['recipe']}` ({report['paper']}), dataset `{report['dataset']}`"
             + (" (--quick: tiny models on the synthetic data; the published numbers are for "
                f"{', '.join(report['published_datasets'])} and are not compared)" if report["quick"] else ""),
             f"- {env['date']}, torch {env['torch']}, {env['cuda'] or 'CPU'}, commit "
             f"{env['git_commit'] or 'unknown'}{' (uncommitted changes)' if env['git_dirty'] else ''}"]
    if report["notes"]:
        lines.append(f"- {report['notes']}")
    lines += ["", "| stage | status | seconds | command |", "|---|---|---|---|"]
    for s in report["stages"]:
        seconds = "-" if s.get("seconds") is None else f"{s['seconds']:.0f}"
        if s["status"].startswith("skipped") and s.get("seconds") is not None:
            seconds += " (an earlier call)"
        lines.append(f"| {s['name']} | {s['status']} | {seconds} | `{s['command']}` |")
    unverified = False
    for name, block in report["evaluations"].items():
        ev = block["evaluation"]
        lines += ["", f"## {name}", ""]
        if ev.get("checkpoint"):
            lines.append(f"`{ev['checkpoint']}` (SHA-256 {str(ev.get('checkpoint_sha256', '?'))[:16]}...)")
            lines.append("")
        residual = (ev.get("generator") or {}).get("residual")
        if residual:
            lines.append(f"residual transformer `{residual['checkpoint']}` (SHA-256 "
                         f"{str(residual.get('checkpoint_sha256', '?'))[:16]}...)")
            lines.append("")
        evaluator = (ev.get("protocol") or {}).get("evaluator") or {}
        if evaluator.get("path"):
            lines.append(f"scored by the evaluator `{evaluator['path']}` (SHA-256 "
                         f"{str(evaluator.get('sha256'))[:16]}...): {_evaluator_kind(evaluator)}")
            lines.append("")
        lines += ["| metric | real motion | measured | published | difference | verdict | source |",
                  "|---|---|---|---|---|---|---|"]
        for row in block["rows"]:
            measured_text = "-" if row["mean"] is None else (
                _num(row["mean"]) + ("" if row["ci"] is None else f" ± {_num(row['ci'])}"))
            mark = ""
            if row["published"] is not None and not row["verified"]:
                mark, unverified = " *", True
            lines.append(f"| {LABELS.get(row['metric'], row['metric'])} | {_num(row['real'])} | {measured_text} | "
                         f"{_num(row['published'], 3)}{mark} | {_num(row['difference'])} | {row['verdict'] or '-'} | "
                         f"{row['source'] or '-'} |")
    if unverified:
        lines += ["", "\\* unverified: quoted from an aggregator or from memory, not read in the paper; check the "
                      "paper before relying on the comparison."]
    return "\n".join(lines) + "\n"


def write_report(report: dict[str, Any], folder: str) -> tuple[str, str]:
    """``report.json`` and ``report.md`` in ``folder``, each written atomically; their paths."""
    json_path, md_path = os.path.join(folder, "report.json"), os.path.join(folder, "report.md")
    write_report_json(report, json_path)
    with atomic_write(md_path) as f:
        f.write(format_markdown(report))
    return json_path, md_path


def read_result(path: str) -> dict[str, Any]:
    """An evaluation's result JSON, with an error naming the file when it cannot be read."""
    try:
        with open(path) as f:
            result = json.load(f)
    except (OSError, ValueError) as e:
        raise ValueError(f"{path}: cannot read the evaluation result ({e}); rerun the evaluation stage") from None
    if not isinstance(result, dict):  # valid JSON, but not what an evaluation script writes
        raise ValueError(f"{path}: cannot read the evaluation result (a JSON {type(result).__name__}; expected a JSON "
                         f"object); rerun the evaluation stage")
    return result
