"""Train the length estimator: caption embedding -> distribution over motion lengths in tokens (MoMask / MARDM).

A class is a token count: class c means c * unit_length frames (50 classes of 4 frames cover HumanML3D's 196). The
target of a caption is the length of the motion (or sub-clip) it describes, capped at the dataset's maximum, floored
to whole tokens. Sampling scripts draw lengths from it when no ``--motion_length`` is given.

Examples:
    python train_length_estimator.py --dataset_name t2m_67 --text_encoder clip
    python train_length_estimator.py --dataset_name synthetic --max_iters 300 --lr 1e-3 --num_workers 0

The run is written to ``checkpoints/<dataset_name>/<name>/`` (default name ``length_estimator``): ``model/latest.tar``
(exact resume) and ``model/net_best_loss.tar`` (best validation cross-entropy), both holding ``model_name``
"LengthEstimator", ``model_args``, the ``text_encoder`` record and ``unit_length``; validation logs accuracy too.
"""

from __future__ import annotations

import argparse
import logging
import sys

import torch
import torch.nn.functional as F

from models.length_estimator import LengthEstimator, lengths_to_classes
from models.text_encoders import CachedTextEncoder, TextEncoder
from options.config import config_to_dict, parse_with_config, resolve_max_iters, save_config
from options.generator_options import get_train_length_estimator_parser
from utils.checkpoint import CheckpointError, load_checkpoint
from utils.cli import RESUME_TRAINING, run_script
from utils.dataset_specs import DatasetSpec, get_dataset_spec
from utils.engine import EngineConfig, TrainResult, check_run_start, train
from utils.generator_stage import (
    resolve_text_encoder,
    stage_device,
    text_encoder_record,
    warm_caption_cache,
)
from utils.launch_env import is_first_process
from utils.length_data import EmbeddingClassDataset, caption_lengths
from utils.logging_utils import setup_logging
from utils.run_dir import RunDir
from utils.seed import set_seed

logger = logging.getLogger("train_length_estimator")


def embed_split(encoder: CachedTextEncoder, spec: DatasetSpec, split: str, data_root: str | None, unit_length: int,
                num_classes: int) -> EmbeddingClassDataset:
    """(caption embedding, token-length class) of every caption of ``split``."""
    pairs = caption_lengths(spec, split, data_root)
    warm_caption_cache(encoder, pairs.captions)
    embeddings = encoder.encode(pairs.captions).cpu()
    try:
        classes = lengths_to_classes(torch.from_numpy(pairs.lengths), unit_length, num_classes)
    except ValueError as e:  # a class is a whole number of tokens: a caption shorter than one has none
        raise ValueError(f"--unit_length {unit_length}: the {split} split has captions of {int(pairs.lengths.min())} "
                         f"frames, shorter than one token; pick a unit length of at most that ({e})") from e
    return EmbeddingClassDataset(embeddings, classes)


def classification_loss(model: torch.nn.Module, batch: list[torch.Tensor]) -> tuple[torch.Tensor, dict]:
    """Cross-entropy of the length class; logs the batch accuracy."""
    text_emb, classes = batch
    logits = model(text_emb)
    loss = F.cross_entropy(logits, classes)
    return loss, {"accuracy": (logits.argmax(-1) == classes).float().mean().detach()}


def check_resumed_inputs(latest_path: str, unit_length: int, encoder_name: str) -> None:
    """Before ``--is_continue`` embeds anything: the run's class width and text encoder must be those given now. The
    model arguments alone miss both where the counts agree (``--unit_length`` 33 and 34 give 6 classes on 196
    frames; two encoders of one width), and the classes would then mean other lengths, the inputs another space."""
    saved = load_checkpoint(latest_path)
    recorded = (("--unit_length", saved.get("unit_length"), unit_length),
                ("--text_encoder", (saved.get("text_encoder") or {}).get("name"), encoder_name))
    for flag, was, now in recorded:
        if was is not None and was != now:
            raise CheckpointError(f"{latest_path}: {flag} is {was!r} in the run being resumed but {now!r} now; "
                                  f"resume with {flag} {was}, or start a new --name")


def main(args: argparse.Namespace, text_encoder: TextEncoder | None = None) -> TrainResult:
    """Train the estimator; ``text_encoder`` optionally supplies an already built encoder (tests, notebooks)."""
    # -----------------------------------------------------------------------------------------------------------------
    # setup
    # -----------------------------------------------------------------------------------------------------------------
    setup_logging(hold=True)  # the run's train.log receives what set-up logs once the folder exists
    spec = get_dataset_spec(args.dataset_name, args.data_root)
    run = RunDir(args.checkpoints_dir, args.dataset_name, args.name)
    check_run_start(run, args.is_continue)
    unit_length = spec.unit_length if args.unit_length is None else args.unit_length
    if unit_length < 1:
        raise ValueError(f"--unit_length must be >= 1, got {unit_length}")
    num_classes = spec.max_motion_length // unit_length + 1  # classes 0 .. max tokens
    device = stage_device()
    encoder = resolve_text_encoder(args.text_encoder, args.clip_path, args.text_cache, device, prebuilt=text_encoder)
    if args.is_continue:
        check_resumed_inputs(run.latest_path, unit_length, encoder.name)
    run.make_dirs()
    setup_logging(run.log_file)

    # -----------------------------------------------------------------------------------------------------------------
    # data: captions are embedded once; the estimator trains on the embeddings
    # -----------------------------------------------------------------------------------------------------------------
    train_set = embed_split(encoder, spec, "train", args.data_root, unit_length, num_classes)
    val_set = embed_split(encoder, spec, "val", args.data_root, unit_length, num_classes)
    if args.text_cache and is_first_process():
        encoder.save()
    logger.info("%s: %d training and %d validation captions, %d classes of %d frames", spec.name, len(train_set),
                len(val_set), num_classes, unit_length)

    # -----------------------------------------------------------------------------------------------------------------
    # model
    # -----------------------------------------------------------------------------------------------------------------
    set_seed(args.seed)
    model = LengthEstimator(encoder.dim, num_classes=num_classes, hidden_dim=args.hidden_dim, dropout=args.dropout)

    # -----------------------------------------------------------------------------------------------------------------
    # train
    # -----------------------------------------------------------------------------------------------------------------
    def val_fn(net: torch.nn.Module) -> dict[str, float]:
        device = next(net.parameters()).device
        logits = net(val_set.embeddings.to(device))
        classes = val_set.classes.to(device)
        return {"loss": float(F.cross_entropy(logits, classes)),
                "accuracy": float((logits.argmax(-1) == classes).float().mean())}

    meta = {"stage": "length_estimator", "model_name": "LengthEstimator", "model_args": dict(model.model_args),
            "text_encoder": text_encoder_record(encoder, args.clip_path), "unit_length": int(unit_length),
            "dataset": {"name": spec.name, "spec": spec.to_dict()}, "config": config_to_dict(args), "parent": None}
    check_run_start(run, args.is_continue, meta)
    save_config(args, run.config_path)  # only now, so that a refused resume leaves the run's opt.yaml as it was
    cfg = EngineConfig.from_namespace(args, max_iters=resolve_max_iters(args, len(train_set)), best_metric="loss",
                                      best_mode="min")
    result = train(model, train_set, classification_loss, cfg, run, checkpoint_meta=meta, val_fn=val_fn)
    logger.info("finished at %s", result.summary())
    return result


if __name__ == "__main__":
    run_script(lambda: main(parse_with_config(get_train_length_estimator_parser(), sys.argv[1:])),
               resume=RESUME_TRAINING)
