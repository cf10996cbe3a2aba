"""Plot training curves from TensorBoard event files, without starting TensorBoard.

    python plot_loss.py --log_dir checkpoints/t2m/fsq_ae --list
    python plot_loss.py --log_dir checkpoints/t2m/fsq_ae --output loss.png --smooth 0.9
    python plot_loss.py --log_dir checkpoints/t2m/fsq_ae --metric Train/loss Val/loss --logy --output loss.png
    python plot_loss.py --log_dirs checkpoints/t2m/fsq_a checkpoints/t2m/fsq_b --names a b --output cmp.png
    python plot_loss.py --log_dir checkpoints/t2m/fsq_ae --all --output_dir plots

Event files are found anywhere under a log dir (a run keeps them in ``model/``). Where they lie in several folders
(the runs under a common parent, ``SummaryWriter.add_scalars``), each tag is named ``<sub-folder>/<tag>``; a step
logged twice (a resumed run) keeps its last value. Smoothing is TensorBoard's: an exponential moving average with its
start-up bias removed. Without ``--metric`` every tag with "loss" in its name is drawn, one panel per tag, every run on
the same axes; ``--all`` writes one PNG per tag (every tag, or those of ``--metric``).
"""

from __future__ import annotations

import argparse
import logging
import os
import re
from dataclasses import dataclass

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from utils.atomic_io import atomic_path
from utils.event_files import check_event_file
from utils.stop_signals import run_with_error_boundary
from utils.user_errors import PATH_ERRORS

logger = logging.getLogger("plot_loss")
EVENT_PREFIX = "events.out.tfevents"


@dataclass
class Series:
    steps: np.ndarray  # (S,) int, increasing
    values: np.ndarray  # (S,) float
    tag: str = ""  # the tag as logged (the key it is read under may name its folder in front)


def smooth_ema(values: np.ndarray, weight: float) -> np.ndarray:
    """TensorBoard's smoothing of ``values`` (S,): EMA divided by ``1 - weight**n`` so early points are not pulled
    towards 0. Non-finite points pass through unchanged and do not enter the average."""
    values = np.asarray(values, dtype=np.float64)
    if not 0.0 <= weight < 1.0:
        raise ValueError(f"--smooth must be in [0, 1), got {weight}")
    smoothed = values.copy()
    last, count = 0.0, 0
    for i, value in enumerate(values):
        if np.isfinite(value):
            last = last * weight + (1.0 - weight) * value
            count += 1
            smoothed[i] = last / (1.0 - weight**count)
    return smoothed


def read_scalars(log_dir: str) -> dict[str, Series]:
    """Every scalar tag logged under ``log_dir`` (searched recursively) -> its series. An event file damaged or cut
    short is read up to its first bad record, with a warning naming it and where reading stopped; no scalar in any of
    them is an error naming the files."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    if os.path.isfile(log_dir):
        raise NotADirectoryError(f"{log_dir} is a file, not a log directory: pass the folder that holds it, "
                                 f"{os.path.dirname(log_dir) or '.'}")
    if not os.path.isdir(log_dir):
        raise FileNotFoundError(f"{log_dir}: no such log directory")
    event_files = sorted(os.path.join(root, n) for root, _, names in os.walk(log_dir) for n in names
                         if n.startswith(EVENT_PREFIX))
    if not event_files:
        raise FileNotFoundError(f"{log_dir}: no TensorBoard event files ({EVENT_PREFIX}.*) in it or below it")
    # TensorBoard's reader stops at a file's first bad record without a word, and the run looks shorter than it was.
    checks = [check_event_file(path) for path in event_files]
    for check in checks:
        if check.problem:
            logger.warning("%s: %s; the rest of the file is not read", check.path, check.describe())
    event_dirs = sorted({os.path.dirname(path) for path in event_files})
    found: list[tuple[str, str, Series]] = []
    for folder in event_dirs:
        accumulator = EventAccumulator(folder, size_guidance={"scalars": 0})  # 0 keeps every point
        accumulator.Reload()
        for tag in accumulator.Tags()["scalars"]:
            events = accumulator.Scalars(tag)
            if not events:  # every point purged by a resumed run (it logs from its last save on, as TensorBoard
                continue    # drops what the interrupted one wrote after it) and none logged again yet
            steps = np.array([e.step for e in events], dtype=np.int64)
            order = np.lexsort((np.array([e.wall_time for e in events]), steps))
            steps, values = steps[order], np.array([e.value for e in events], dtype=np.float64)[order]
            last_of_step = np.append(steps[1:] != steps[:-1], True)
            found.append((os.path.relpath(folder, log_dir), tag,
                          Series(steps[last_of_step], values[last_of_step], tag)))
    if not found:
        raise ValueError(f"{log_dir}: the event file(s) hold no readable scalars: "
                         + "; ".join(f"{check.path} ({check.describe()})" for check in checks))
    # Several folders (runs under a common parent, add_scalars sub-folders): every tag is named by its folder, also
    # one that only one folder logs, which would otherwise pass for the tag of them all.
    several = len(event_dirs) > 1
    return {(f"{rel}/{tag}" if several and rel != "." else tag): series for rel, tag, series in found}


def run_name(log_dir: str) -> str:
    """A legend name for a run folder (``checkpoints/t2m/NAME/model`` -> ``NAME``)."""
    parts = os.path.normpath(os.path.abspath(log_dir)).split(os.sep)
    return parts[-2] if parts[-1] == "model" and len(parts) > 1 else parts[-1]


def safe_filename(tag: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", tag).strip("._") or "scalar"


def output_path(output: str, formats: dict[str, str]) -> str:
    """The file ``--output`` names: ``.png`` appended unless it ends in the extension of an image format matplotlib
    writes (one of ``formats``), so ``loss_0.9`` and ``run.v2`` become ``loss_0.9.png`` and ``run.v2.png`` rather than
    formats '9' and 'v2'; ``loss.png`` inside a folder (one that exists, or a name ending in a separator)."""
    if output.endswith(("/", os.sep)) or os.path.isdir(output):
        return os.path.join(output, "loss.png")
    extension = os.path.splitext(output)[1][1:].lower()
    return output if extension in formats else output + ".png"


def plot_metrics(runs: dict[str, dict[str, Series]], metrics: list[str], output: str, smooth: float, logy: bool,
                 dpi: int) -> str:
    """One panel per metric, one colour per run: raw values faint, smoothed values on top. Returns the path written
    (``output_path(output)``)."""
    fig = Figure(figsize=(7.0, 3.0 * len(metrics)), layout="constrained")
    canvas = FigureCanvasAgg(fig)
    axes = fig.subplots(len(metrics), 1, squeeze=False)[:, 0]
    for ax, metric in zip(axes, metrics):
        for i, (name, scalars) in enumerate(runs.items()):
            if metric not in scalars:
                continue
            series, color = scalars[metric], f"C{i % 10}"
            ax.plot(series.steps, series.values, color=color, alpha=0.25, linewidth=0.8)
            # A line through a single point draws nothing (a run validated once, a best checkpoint saved once).
            marker = "o" if len(series.steps) == 1 else None
            ax.plot(series.steps, smooth_ema(series.values, smooth), color=color, linewidth=1.5, label=name,
                    marker=marker, markersize=4)
            if logy and (series.values <= 0).any():
                logger.warning("%s of %s has values <= 0; the log scale leaves them out", metric, name)
        ax.set_title(metric)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        if logy:
            ax.set_yscale("log")
        if len(runs) > 1:
            ax.legend()
    output = output_path(output, canvas.get_supported_filetypes())
    os.makedirs(os.path.dirname(os.path.abspath(output)), exist_ok=True)
    # Through a temporary file with the same extension (matplotlib picks the format from it): a failed or stopped
    # write leaves the earlier plot whole rather than a truncated PNG under its name.
    with atomic_path(output) as tmp:
        fig.savefig(tmp, dpi=dpi)
    return output


def main(cfg: argparse.Namespace) -> list[str]:
    # ------------------------------------------------------------------ setup
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    # TensorBoard's event reader logs "No path found after <file>" at INFO for every folder it finishes.
    logging.getLogger("tensorboard").setLevel(logging.WARNING)
    log_dirs = cfg.log_dirs or [cfg.log_dir]
    names = cfg.names or [run_name(d) for d in log_dirs]
    if len(names) != len(log_dirs):
        raise ValueError(f"--names gives {len(names)} names for {len(log_dirs)} --log_dirs")
    if len(set(names)) != len(names):
        raise ValueError(f"run names must differ, got {names}; pass --names")
    smooth_ema(np.zeros(0), cfg.smooth)  # an invalid --smooth fails before reading anything

    # ------------------------------------------------------------------ data
    runs = dict(zip(names, (read_scalars(d) for d in log_dirs)))
    all_tags = sorted({tag for scalars in runs.values() for tag in scalars})
    if cfg.list:
        for name, log_dir in zip(names, log_dirs):
            print(f"{name} ({log_dir}):")
            for tag, series in sorted(runs[name].items()):
                print(f"  {tag:40s} {len(series.steps):7d} points, last step {series.steps[-1]}: "
                      f"{series.values[-1]:.6g}")
        return all_tags

    # ------------------------------------------------------------------ plot
    # "loss" in the tag itself, not in the folder a run's key names in front of it ("no_vel_loss/model/Train/lr").
    loss_tags = {key for scalars in runs.values() for key, series in scalars.items() if "loss" in series.tag.lower()}
    metrics = cfg.metric or (all_tags if cfg.all else [t for t in all_tags if t in loss_tags])
    if not metrics:
        raise ValueError(f"no tag with 'loss' in its name; pass --metric, available tags: {all_tags}")
    for metric in metrics:
        missing = [n for n in names if metric not in runs[n]]
        if len(missing) == len(names):
            raise ValueError(f"unknown metric {metric!r} in {', '.join(log_dirs)}; available tags: {all_tags}")
        if missing:
            logger.warning("metric %r is missing from run(s) %s", metric, missing)
    if cfg.all:
        written, used = [], set()
        for tag in metrics:
            stem = safe_filename(tag)
            while stem in used:  # distinct tags like "a/b" and "a_b" share a safe name
                stem += "_"
            used.add(stem)
            written.append(plot_metrics(runs, [tag], os.path.join(cfg.output_dir, f"{stem}.png"), cfg.smooth,
                                        cfg.logy, cfg.dpi))
    else:
        written = [plot_metrics(runs, metrics, cfg.output, cfg.smooth, cfg.logy, cfg.dpi)]
    for path in written:
        print(path)
    return written


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--log_dir", help="one run's folder holding TensorBoard event files")
    source.add_argument("--log_dirs", nargs="+", help="several runs, compared on the same axes")
    parser.add_argument("--names", nargs="+", default=None, help="legend names for --log_dirs (default: folder names)")
    parser.add_argument("--metric", nargs="+", default=None, help="scalar tag(s) to plot (default: tags with 'loss')")
    parser.add_argument("--output", default="loss.png",
                        help="image to write: PNG unless the name ends in another format's extension (.pdf, .svg, "
                             "...), with .png added to any other name; loss.png inside an existing folder or a name "
                             "ending in /")
    parser.add_argument("--smooth", type=float, default=0.6, help="TensorBoard smoothing weight in [0, 1)")
    parser.add_argument("--logy", action="store_true", help="log-scale y axis")
    parser.add_argument("--all", action="store_true", help="one PNG per scalar tag (or per --metric) into --output_dir")
    parser.add_argument("--output_dir", default="loss_plots", help="folder for --all")
    parser.add_argument("--list", action="store_true", help="print the available scalar tags and exit")
    parser.add_argument("--dpi", type=int, default=120)
    return parser.parse_args(argv)


if __name__ == "__main__":
    run_with_error_boundary(lambda: main(parse_args()), "plot_loss.py", (ValueError, *PATH_ERRORS),
                            "rerun the same command")
