"""The flags every training stage shares, spelled as the field spells them (MoMask / MARDM).

Stage parsers extend :func:`get_base_parser` with their own flags (one function per stage) and parse with
``options.config.parse_with_config`` so ``--config`` presets work. Units: ``--max_iters``, ``--warm_up_iter``,
``--milestones``, ``--log_every``, ``--eval_every`` and ``--save_every`` count optimizer steps; ``--epoch`` counts
passes over the training set and is turned into steps with ``options.config.resolve_max_iters``.
"""

from __future__ import annotations

import argparse

from options.config import (
    DefaultsHelpFormatter,
    allow_null,
    clip_norm,
    decay_or_none,
    non_negative_float,
    non_negative_int,
    positive_float,
    positive_int,
    seed_int,
)
from utils.dataset_specs import dataset_names
from utils.paths import project_path


def get_base_parser(description: str | None = None) -> argparse.ArgumentParser:
    """A parser with the shared run, data, optimisation, cadence and runtime flags (defaults from MARDM's AE stage)."""
    parser = argparse.ArgumentParser(description=description,
                                     formatter_class=DefaultsHelpFormatter)

    run = parser.add_argument_group("run")
    run.add_argument("--name", type=str, default=None,
                     help="run name; the run lives in <checkpoints_dir>/<dataset_name>/<name>/")
    run.add_argument("--checkpoints_dir", type=str, default=project_path("checkpoints"),
                     help="root folder of all runs")
    run.add_argument("--config", type=str, default=None,
                     help="YAML preset (flag: value); the command line overrides it, it overrides the defaults")
    run.add_argument("--is_continue", action=argparse.BooleanOptionalAction, default=False,
                     help="resume exactly from <run>/model/latest.tar (weights, optimizer, EMA, step, RNG, data order)")
    run.add_argument("--seed", type=seed_int, default=3407,
                     help="seed of the model init, data order and sample crops, in [0, 2^64)")

    data = parser.add_argument_group("data")
    data.add_argument("--dataset_name", type=str, default="t2m",
                      help=f"registered dataset ({', '.join(dataset_names())}) or one with a spec.json in "
                           "--data_root or dataset/<name>/ (made by prepare_data.py bvh)")
    data.add_argument("--data_root", type=str, default=None,
                      help="folder of the dataset; defaults to the dataset spec's root")
    data.add_argument("--batch_size", type=int, default=256,
                      help="global batch size (split evenly over processes under torchrun / accelerate launch)")
    data.add_argument("--num_workers", type=non_negative_int, default=4,
                      help="DataLoader worker processes per training process")

    optim = parser.add_argument_group("optimisation")
    optim.add_argument("--max_iters", type=int, default=None,
                       help="optimizer steps to train for (at least 1: 0 is refused, not read as unset); overrides "
                            "--epoch when given")
    optim.add_argument("--epoch", type=int, default=50,
                       help="passes over the training set (used when --max_iters is not given; typed on the command "
                            "line, it replaces a --config preset's max_iters)")
    optim.add_argument("--lr", type=positive_float, default=2e-4, help="base learning rate (AdamW)")
    optim.add_argument("--warm_up_iter", type=non_negative_int, default=2000,
                       help="steps of linear learning-rate warm-up from 0 to --lr")
    optim.add_argument("--milestones", type=non_negative_int, nargs="+", default=[150_000, 250_000],
                       help="global steps at which the learning rate is multiplied by --lr_decay")
    optim.add_argument("--lr_decay", type=non_negative_float, default=0.1,
                       help="learning-rate factor applied at each milestone")
    optim.add_argument("--weight_decay", type=non_negative_float, default=0.0, help="AdamW weight decay")
    optim.add_argument("--grad_clip", type=clip_norm, default=0.0,
                       help="clip the global gradient norm to this value (0 turns clipping off)")
    ema_decay = optim.add_argument("--ema_decay", type=decay_or_none, default=None,
                                   help="keep an EMA of the weights with this decay in [0, 1) (e.g. 0.9999), used for "
                                        "validation and saved as 'ema'; off when not given, and 'none' (or a --config "
                                        "preset's null) turns off train_MARDM.py's 0.9999")
    allow_null(ema_decay)  # the one flag whose null is a setting where its default is a value

    cadence = parser.add_argument_group("logging and evaluation")
    cadence.add_argument("--log_every", type=positive_int, default=10,
                         help="steps between log lines and TensorBoard points")
    cadence.add_argument("--eval_every", type=non_negative_int, default=0,
                         help="steps between validations (0: once per epoch)")
    cadence.add_argument("--save_every", type=non_negative_int, default=500,
                         help="steps between writes of model/latest.tar (0: once per epoch); always at the end")
    cadence.add_argument("--need_evaluation", action=argparse.BooleanOptionalAction, default=False,
                         help="run the evaluator-based validation (FID etc.) during training")

    runtime = parser.add_argument_group("runtime")
    runtime.add_argument("--mixed_precision", type=str, default="no", choices=["no", "bf16", "fp16"],
                         help="autocast precision of the trained model (quantizers stay in fp32)")
    runtime.add_argument("--detect_anomaly", action=argparse.BooleanOptionalAction, default=False,
                         help="autograd anomaly detection to locate a NaN (several times slower; debugging only)")
    return parser
