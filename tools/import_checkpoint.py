"""Import an official tokenizer checkpoint (T2M-GPT, MoMask, MARDM, MotionMillion) as one of our runs.

Writes ``<checkpoints_dir>/<dataset_name>/<name>/model/{net_best_fid,latest}.tar`` in our format (registry name,
constructor args, weights including the quantizer state) and ``<name>/opt.yaml`` with the resolved arguments, so
``--ae_name <name>`` / ``load_tokenizer`` find it like any trained run.

Examples:
    python tools/import_checkpoint.py --src pretrained/VQVAE/net_last.pth --name t2mgpt_vq --dataset_name t2m
    python tools/import_checkpoint.py --src momask/checkpoints/t2m/rvq_nq6/model/net_best_fid.tar \\
        --name momask_rvq --dataset_name t2m --meta_dir momask/checkpoints/t2m/rvq_nq6/meta
    python tools/import_checkpoint.py --src MARDM/checkpoints/t2m/AE/model/latest.tar --name mardm_ae \\
        --dataset_name t2m_67
    python tools/import_checkpoint.py --src fsq_net_6000000.pth --name motionmillion_fsq --dataset_name motionmillion
"""

from __future__ import annotations

import argparse
import glob
import logging
import os
import sys
from pathlib import Path

# Run as ``python tools/import_checkpoint.py``: make the repository root importable.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from models.encdec import ACTIVATIONS  # noqa: E402
from models.loader import load_tokenizer  # noqa: E402
from models.tokenizers import QUANTIZER_TYPES, TOKENIZERS  # noqa: E402
from options.config import positive_int, save_config  # noqa: E402
from utils.checkpoint import CheckpointError, file_sha256, save_checkpoint  # noqa: E402
from utils.cli import run_script  # noqa: E402
from utils.dataset_specs import get_dataset_spec  # noqa: E402
from utils.evaluator import load_evaluator  # noqa: E402
from utils.logging_utils import setup_logging  # noqa: E402
from utils.normalization import DatasetError, read_meta_statistics  # noqa: E402
from utils.paths import project_path  # noqa: E402
from utils.run_dir import RunDir  # noqa: E402
from utils.tokenizer_eval import EVALUATOR_STYLE_FORMATS, convention_statistics, official_run_meta  # noqa: E402

logger = logging.getLogger("import_checkpoint")

MODEL_KWARGS = ("levels", "quantizer_type", "mu", "dilation_growth_rate", "activation", "norm", "patch_size")


def check_source_outside(src: str, run: RunDir) -> None:
    """SystemExit when ``src`` lies in the run folder the import writes, or is one of the files it writes under
    another path (a link): writing the run would replace the official file being imported."""
    root, real = os.path.realpath(run.root), os.path.realpath(src)
    inside = os.path.commonpath([real, root]) == root
    written = (run.best_path("fid"), run.latest_path, run.config_path)
    if inside or any(os.path.exists(p) and os.path.exists(src) and os.path.samefile(src, p) for p in written):
        raise SystemExit(f"--src {src} ({real}) is {'inside' if inside else 'a file of'} the run folder {run.root} "
                         f"that the import writes, so it would replace the official file it reads: import under "
                         f"another --name, e.g. --name {run.name}_imported")


def convention_at_import(cfg: argparse.Namespace, spec, source_format: str) -> tuple[torch.Tensor | None,
                                                                                    torch.Tensor | None, str]:
    """(mean, std, where) by the convention of ``source_format`` when they can be read now: the evaluator's
    statistics for T2M-GPT / MoMask, the dataset's Mean/Std for MARDM / MotionMillion; else (None, None, why not).

    Without them ``evaluation_AE.py`` applies the same convention when it runs, but the generator stages need the
    statistics in the run, so a missing file is reported rather than approximated here. An evaluator named by
    ``--evaluator_dir`` that cannot be loaded is an error (as in ``evaluation_AE.py``): a typo must not pass for "no
    evaluator here".
    """
    default_dir = os.path.join(cfg.checkpoints_dir, cfg.dataset_name, "text_mot_match")
    evaluator = None
    if source_format in EVALUATOR_STYLE_FORMATS:
        try:
            evaluator = load_evaluator(cfg.evaluator_dir or default_dir, cfg.dataset_name, "cpu",
                                       data_root=cfg.data_root)
        except (CheckpointError, DatasetError, FileNotFoundError) as e:
            if cfg.evaluator_dir:
                raise CheckpointError(f"--evaluator_dir {cfg.evaluator_dir}: no usable evaluator ({e}); fix the path, "
                                      f"or leave the flag out to use {default_dir} where there is one") from e
            return None, None, str(e)
    try:
        mean, std, where = convention_statistics(source_format, cfg.src, spec, cfg.data_root, evaluator)
    except (CheckpointError, DatasetError, FileNotFoundError) as e:
        return None, None, str(e)
    return torch.from_numpy(np.asarray(mean, np.float32)), torch.from_numpy(np.asarray(std, np.float32)), where


def main(cfg: argparse.Namespace) -> str:
    setup_logging()
    # ---------------------------------------------------------------------------------------------------- setup
    # The inputs are read before the run folder is made: a bad one leaves nothing behind.
    spec = get_dataset_spec(cfg.dataset_name, cfg.data_root)
    run = RunDir(cfg.checkpoints_dir, cfg.dataset_name, cfg.name)
    check_source_outside(cfg.src, run)
    tokenizer = load_tokenizer(cfg.src, model_name=cfg.model,
                               **{k: getattr(cfg, k) for k in MODEL_KWARGS if getattr(cfg, k) is not None})
    if tokenizer.source_format == "ours":
        raise CheckpointError(f"{cfg.src}: already in our format (model_name {tokenizer.model_name!r}); copy the run "
                              "folder instead")
    input_width = tokenizer.model.input_width
    if input_width != spec.dim_pose:
        raise SystemExit(f"{cfg.src}: the model reads {input_width}-dim motion but dataset {cfg.dataset_name!r} has "
                         f"dim_pose {spec.dim_pose}; pick the matching --dataset_name")
    # A MoMask file in its run folder comes with the statistics it was trained with (<run>/meta beside <run>/model).
    meta_dir, where = cfg.meta_dir, "--meta_dir"
    if meta_dir is None and tokenizer.source_format == "momask":
        meta_dir, where = official_run_meta(cfg.src), "the run's meta folder"
    if meta_dir is not None:
        mean, std = (torch.from_numpy(stat) for stat in read_meta_statistics(meta_dir, where, input_width))
        stats_source = f"{where} {meta_dir}"
    else:
        mean, std, stats_source = convention_at_import(cfg, spec, tokenizer.source_format)
    # The run lock, taken as a training start takes it and held until the script ends: a run that is training (its
    # first checkpoint saved or not yet) is refused, naming the holder's pid, instead of written over.
    run.make_dirs(lock_advice="wait for that training to finish, or stop it, before importing into this run; or "
                              "import under another --name")
    # Any checkpoint of a run of that name (a trained run may hold net_best_fid.tar without latest.tar) is kept.
    existing = sorted(glob.glob(os.path.join(run.model_dir, "*.tar")))
    if existing and not cfg.overwrite:
        raise SystemExit(f"a run exists at {run.root} ({', '.join(os.path.basename(p) for p in existing)}); choose "
                         f"another --name or pass --overwrite")

    if mean is None:
        logger.warning("no statistics recorded (%s). evaluation_AE.py applies the %s convention when it runs; the "
                       "generator stages need them in the run: import again with --meta_dir (or once the dataset / "
                       "evaluator files are in place)", stats_source, tokenizer.source_format)
        stats_source = None

    # ---------------------------------------------------------------------------------------------------- write
    resolved = {**vars(cfg), "model": tokenizer.model_name, "model_args": tokenizer.model_args,
                "source_format": tokenizer.source_format, "src_sha256": file_sha256(cfg.src)}
    state = {
        "stage": "tokenizer",
        "model_name": tokenizer.model_name,
        "model_args": tokenizer.model_args,
        "model": {k: v.detach().clone() for k, v in tokenizer.model.state_dict().items()},
        "step": 0,
        "epoch": 0,
        "dataset": {"name": cfg.dataset_name, "spec": spec.to_dict(), "mean": mean, "std": std,
                    "statistics": stats_source},
        "metrics": {},
        "config": resolved,
        "parent": {"path": os.path.abspath(cfg.src), "sha256": resolved["src_sha256"],
                   "format": tokenizer.source_format},
    }
    for path in (run.best_path("fid"), run.latest_path):
        save_checkpoint(path, state)
    save_config(resolved, run.config_path)
    print(f"{tokenizer.source_format} checkpoint {cfg.src} -> {run.model_dir} "
          f"({tokenizer.model_name}, {tokenizer.kind}, args {tokenizer.model_args}; statistics: "
          f"{stats_source or 'none'})")
    return run.root


def int_list(text: str) -> list[int]:
    """``"8,8,8,5,5,5"`` -> ``[8, 8, 8, 5, 5, 5]`` (spaces around the commas allowed; "8 8" is an error, not 88)."""
    try:
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from e


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--src", required=True, help="official checkpoint file (net_*.pth, latest.tar, net_best_fid.tar)")
    p.add_argument("--name", required=True, help="run name to create under <checkpoints_dir>/<dataset_name>/")
    p.add_argument("--dataset_name", required=True, help="dataset the tokenizer was trained on (t2m, kit, t2m_67, ...)")
    p.add_argument("--checkpoints_dir", default=project_path("checkpoints"), help="root of the run folders")
    p.add_argument("--data_root", default=None, help="dataset folder, for datasets known by their spec.json only")
    p.add_argument("--meta_dir", default=None,
                   help="folder with the run's mean.npy/std.npy to record (default: a MoMask file's <run>/meta beside "
                        "its model/ folder, else the evaluator's statistics for T2M-GPT / MoMask, the dataset's "
                        "Mean/Std for MARDM / MotionMillion, where present)")
    p.add_argument("--evaluator_dir", default=None,
                   help="evaluator whose statistics a T2M-GPT / MoMask file was trained with; an error if it cannot "
                        "be loaded (default <checkpoints_dir>/<dataset_name>/text_mot_match, where there is one)")
    p.add_argument("--model", default=None, choices=sorted(TOKENIZERS),
                   help="expected registry name; an error if the checkpoint is another model")
    p.add_argument("--overwrite", action="store_true", help="replace an existing run of the same name")
    g = p.add_argument_group("model arguments the weight shapes cannot tell (defaults: a MoMask run's opt.txt, "
                             "which a flag must agree with, else the references')")
    g.add_argument("--levels", type=int_list, default=None, help="FSQ levels, e.g. 8,8,8,5,5,5")
    g.add_argument("--quantizer_type", default=None, choices=QUANTIZER_TYPES, help="T2M-GPT quantizer (ema_reset)")
    g.add_argument("--mu", type=float, default=None, help="EMA decay of the codebook (0.99)")
    g.add_argument("--dilation_growth_rate", type=positive_int, default=None, help="residual dilation growth (3)")
    g.add_argument("--activation", default=None, choices=ACTIVATIONS, help="residual block activation (relu)")
    g.add_argument("--norm", default=None, choices=("LN", "GN"), help="LN or GN when the blocks have norm weights")
    g.add_argument("--patch_size", type=int, default=None, help="MotionMillion patcher size (only 1 is supported)")
    return p


if __name__ == "__main__":
    run_script(lambda: main(get_parser().parse_args()),
               resume="rerun the same command with --overwrite (a stop between its files may have replaced one)")
