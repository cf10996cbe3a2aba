"""The steps of ``train_evaluator.py`` that are not its story: word vectors, the validation split, the checks of a
start or a resume, the co-embedding stage's validation that keeps ``finest.tar``, and the final validation report.

The script decides *what* it trains (the two stages, their models, losses and engine settings); the functions here
check its flags against the data and the run being resumed, and score the co-embedding (contrastive loss and
retrieval on the validation split) the way the evaluation protocol will.
"""

from __future__ import annotations

import argparse
import copy
import logging
import os
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import nn

from models.evaluator_training import contrastive_loss
from options.config import option_origin
from utils.checkpoint import CheckpointError, check_matches, load_checkpoint
from utils.dataset_specs import DatasetSpec
from utils.datasets import MotionWindowDataset, Text2MotionEvalDataset
from utils.engine import check_run_start
from utils.eval_data import EVAL_BATCH_SIZE, EvalLoader, build_eval_loader
from utils.eval_protocol import TOP_K, retrieval_metrics
from utils.eval_report import write_report_json
from utils.evaluator import (
    EvaluatorWrapper,
    check_resumed_word_vectors,
    load_evaluator,
    save_evaluator,
)
from utils.launch_env import world_size
from utils.metrics import score_batch
from utils.normalization import DatasetError
from utils.run_dir import RunDir
from utils.tokenizer_stage import check_training_settings, warn_objective_changes
from utils.word_vectorizer import LearnedVocab, WordVectorizer

# Named after the script: what a user reads of its run says ``train_evaluator:``, whichever module logs it.
logger = logging.getLogger("train_evaluator")

LEARNED_DIM_WORD = {"official": 300, "small": 128, "tiny": 16}
# What a resumed co-embedding stage keeps, with the value of a run saved before it was recorded: finest.tar is the
# lowest validation loss so far, which another split, contrastive margin or seed (it draws the validation crops and
# captions) would score differently. Every run records its seed; 3407 is the flag's default.
RESUMED_SETTINGS = {"val_split": "val", "margin": 10.0, "seed": 3407}
# Changed on resume with a warning: the negatives of the contrastive loss (not the validation, whose shift is fixed).
OBJECTIVE_SETTINGS = ("neg_shift",)


def check_window_and_batch(pretrain_window: int, batch_size: int) -> None:
    """Refuse (ValueError) a ``--pretrain_window`` that is not a positive multiple of the movement encoder's stride
    (4), and a ``--batch_size`` that leaves a process fewer than 2 captions for the contrastive loss."""
    if pretrain_window < 4 or pretrain_window % 4:
        raise ValueError(f"--pretrain_window must be a positive multiple of 4 (the movement encoder's stride), got "
                         f"{pretrain_window}")
    processes = world_size()
    if batch_size // processes < 2:
        # The negatives are the other captions of a process's batch (draw_shift); stage 2 would otherwise fail only
        # at its first step, after the movement pre-training.
        raise ValueError(f"--batch_size {batch_size} over {processes} process(es) gives "
                         f"{batch_size // processes} caption(s) per process; the contrastive loss needs at least 2")


def load_word_vectors(cfg: argparse.Namespace, root: str) -> WordVectorizer | LearnedVocab:
    """The GloVe vectors of ``--glove_dir`` when that folder exists, else a vocabulary learned from the captions of
    the train split under ``root``, ``--dim_word`` wide (by default ``LEARNED_DIM_WORD`` of ``--sizes``). A
    ``--dim_word`` that contradicts the GloVe vectors' width is a ValueError; the source is logged."""
    if cfg.glove_dir and os.path.exists(cfg.glove_dir) and not os.path.isdir(cfg.glove_dir):
        raise ValueError(f"--glove_dir {cfg.glove_dir} is a file, not a folder; pass the folder holding the GloVe "
                         f"vectors (our_vab_data.npy, our_vab_words.pkl, our_vab_idx.pkl)")
    if cfg.glove_dir and os.path.isdir(cfg.glove_dir):
        word_vectors = WordVectorizer(cfg.glove_dir)
        if cfg.dim_word is not None and cfg.dim_word != word_vectors.dim_word:
            raise ValueError(f"{option_origin(cfg, 'dim_word')} is {cfg.dim_word}, but the GloVe vectors in "
                             f"{cfg.glove_dir} are {word_vectors.dim_word} wide (--dim_word sets the width of a "
                             "learned word embedding; leave it out with --glove_dir)")
    else:
        if cfg.glove_dir:
            logger.warning("--glove_dir %s does not exist; learning a vocabulary instead", cfg.glove_dir)
        dim_word = LEARNED_DIM_WORD[cfg.sizes] if cfg.dim_word is None else cfg.dim_word
        word_vectors = LearnedVocab.from_split(root, "train", dim_word=dim_word)
    logger.info("word vectors: %s (%d words, %d dims)", f"GloVe vectors of {cfg.glove_dir}" if isinstance(
        word_vectors, WordVectorizer) else word_vectors.source, len(word_vectors), word_vectors.dim_word)
    return word_vectors


def load_val_loader(spec: DatasetSpec, split: str, mean: np.ndarray, std: np.ndarray,
                    word_vectors: WordVectorizer | LearnedVocab, data_root: str | None) -> EvalLoader:
    """Validation batches of ``split`` normalised with the evaluator's ``mean``/``std`` (``(D,)``): the protocol's
    batch size, or the whole split (with a warning) when it is smaller. A split of fewer than ``TOP_K`` samples is
    a DatasetError."""
    val_set = Text2MotionEvalDataset(spec, split, mean, std, word_vectors, data_root=data_root)
    root = data_root or spec.root
    if len(val_set) < TOP_K:
        # R-precision ranks each caption among the batch's motions: top-3 needs at least 3 candidates per batch.
        raise DatasetError(f"{root}: the {split} split has {len(val_set)} text-motion sample(s); expected at "
                           f"least {TOP_K} for validation R-precision top-{TOP_K} (add clips to "
                           f"{os.path.join(root, split + '.txt')} or choose another --val_split)",
                           kind="small_split", path=root)
    val_batch = min(EVAL_BATCH_SIZE, len(val_set))
    if val_batch < EVAL_BATCH_SIZE:
        logger.warning("the %s split has only %d samples: validation batches of %d (R-precision chance 1/%d, not "
                       "1/%d)", split, len(val_set), val_batch, val_batch, EVAL_BATCH_SIZE)
    return EvalLoader(val_set, batch_size=val_batch)


def check_resume(run: RunDir, resume: bool, meta: dict[str, Any], glove_dir: str | None) -> dict[str, Any] | None:
    """``check_run_start`` of the co-embedding run with its record ``meta``. A resume (``resume``) first checks the
    word vectors against those of ``run.latest_path``, then refuses other ``RESUMED_SETTINGS`` and warns of other
    ``OBJECTIVE_SETTINGS`` than that run was saved with. Returns its saved config (None for a new start)."""
    if resume:  # before the model arguments, which other word vectors change too, are compared
        saved = load_checkpoint(run.latest_path)
        # Another script's run under this --name is named as such, not as a run of other word vectors.
        for key in ("stage", "model_name"):
            check_matches(run.latest_path, key, saved.get(key), meta[key])
        check_resumed_word_vectors(run.latest_path, saved, meta["word_vectors"], glove_dir)
    check_run_start(run, resume, meta)
    if not resume:
        return None
    check_training_settings(run.latest_path, saved.get("config") or {}, meta["config"], RESUMED_SETTINGS)
    warn_objective_changes(run.latest_path, saved, meta["config"], settings=OBJECTIVE_SETTINGS)
    return saved.get("config") or {}


def pretrain_steps(cfg: argparse.Namespace, num_windows: int, resumed: dict[str, Any] | None,
                   latest_path: str, stage1_latest: str | None = None) -> int:
    """Stage 1's optimizer steps: ``--pretrain_iters``, or five epochs of ``num_windows`` windows when it is left
    out. A resumed stage 2 (``resumed``: the config saved in ``latest_path``) keeps its run's, whose movement encoder
    it froze: another ``--pretrain_iters`` is refused (CheckpointError), and leaving it out takes the run's. A resumed
    stage 1 (``stage1_latest``: its own ``latest.tar``) keeps its run's when the flag is left out; a given one
    lengthens or shortens it (the engine warns of the change)."""
    def five_epochs(batch_size: int) -> int:
        return 5 * max(num_windows // batch_size, 1)

    if resumed is None:
        if cfg.pretrain_iters is not None:
            return cfg.pretrain_iters
        stage1 = (load_checkpoint(stage1_latest).get("config") or {}) if stage1_latest else {}
        if stage1.get("pretrain_iters") is not None:
            return int(stage1["pretrain_iters"])
        return five_epochs(cfg.batch_size)
    was = resumed.get("pretrain_iters")
    if was is None:  # saved before the resolved value was recorded: the default at the run's batch size
        was = five_epochs(int(resumed.get("batch_size") or cfg.batch_size))
    if cfg.pretrain_iters is not None and cfg.pretrain_iters != was:
        raise CheckpointError(f"{latest_path}: the run being resumed pretrained its movement encoder for "
                              f"--pretrain_iters {was} steps, but {option_origin(cfg, 'pretrain_iters')} is "
                              f"{cfg.pretrain_iters} now; the co-embedding stage froze that encoder when it started "
                              f"and its checkpoint holds it, so leave --pretrain_iters out (or give {was}) to resume, "
                              f"or start a new --name")
    return was


def load_pretraining_windows(spec: DatasetSpec, mean: np.ndarray, std: np.ndarray, window: int, batch_size: int,
                             data_root: str | None) -> MotionWindowDataset:
    """Stage 1's random ``window``-frame crops (each ``(window, D)``) of the train split, normalised with ``mean`` /
    ``std`` (D,). No clip of that length, or fewer than ``batch_size`` of a split that has that many clips, is a
    DatasetError naming ``--pretrain_window``, the flag that asks for them (a split smaller than a batch is the
    engine's to refuse, naming the batch size)."""
    advice = "lower --pretrain_window (or --batch_size), or pass --pretrain_iters 0 to skip the pretraining"
    try:
        windows = MotionWindowDataset(spec, "train", mean, std, window_size=window, data_root=data_root)
    except DatasetError as e:
        if e.kind != "too_short":
            raise
        raise DatasetError(f"--pretrain_window {window}: {e}; {advice}", kind=e.kind, path=e.path) from e
    if len(windows) < batch_size <= len(windows.index):  # the window, not the batch, leaves too few clips
        raise DatasetError(f"--pretrain_window {window}: only {len(windows)} clip(s) of {spec.name} train have "
                           f"{window} frames or more, fewer than --batch_size {batch_size}; {advice}",
                           kind="too_short", path=data_root or spec.root)
    return windows


class CoEmbeddingValidation:
    """The co-embedding stage's ``val_fn``: contrastive loss and retrieval over ``val_loader``; a lower loss than
    ``best_val_loss`` (or no ``finest_path`` yet) saves the evaluator there, with ``config``.

    ``optimizers`` is the list the stage's optimizer factory fills: the step saved is Adam's count of updates, and the
    epoch that step over ``steps_per_epoch``. ``best_val_loss`` starts from the finest.tar of a resumed run
    (``resume``), else from infinity."""

    def __init__(self, val_loader: EvalLoader, ev: EvaluatorWrapper, finest_path: str, config: dict[str, Any],
                 optimizers: list[torch.optim.Optimizer], *, seed: int, margin: float, steps_per_epoch: int,
                 resume: bool) -> None:
        self.val_loader = val_loader
        self.ev = ev
        self.finest_path = finest_path
        self.config = config
        self.optimizers = optimizers
        self.seed = seed
        self.margin = margin
        self.steps_per_epoch = steps_per_epoch
        self.best_val_loss = float("inf")
        if resume and os.path.isfile(finest_path):
            self.best_val_loss = float(load_checkpoint(finest_path).get("metrics", {}).get("val_loss", float("inf")))

    def __call__(self, m: nn.Module) -> dict[str, float]:
        """``val_loss``, ``top1``..``top3`` and ``matching_score`` of the co-embedding ``m`` (text and motion
        embeddings ``(B, H)`` of each batch)."""
        device = next(m.parameters()).device
        total, hits, match, n = 0.0, np.zeros(TOP_K), 0.0, 0
        for b, batch in enumerate(self.val_loader.batches(self.seed)):
            text_emb, motion_emb = m(batch.word_embs.to(device), batch.pos_ohot.to(device), batch.sent_lens,
                                     batch.motion.to(device), batch.m_lengths)
            shift = 1 + b % (text_emb.shape[0] - 1)  # fixed and nonzero, so validations compare
            total += float(sum(contrastive_loss(text_emb, motion_emb, shift, self.margin)))
            scores = score_batch(text_emb.cpu().numpy(), motion_emb.cpu().numpy())
            hits += scores.top_k_count
            match += scores.matching_score_sum
            n += text_emb.shape[0]
        metrics = {"val_loss": total / self.val_loader.num_batches, "top1": float(hits[0] / n),
                   "top2": float(hits[1] / n), "top3": float(hits[2] / n), "matching_score": match / n}
        if metrics["val_loss"] < self.best_val_loss or not os.path.isfile(self.finest_path):
            self.best_val_loss = min(self.best_val_loss, metrics["val_loss"])
            state = self.optimizers[0].state
            step = int(next(iter(state.values()))["step"]) if state else 0  # Adam counts its updates
            ev = self.ev
            trained = EvaluatorWrapper(m.evaluator, ev.model_args, dataset_name=ev.dataset_name, mean=ev.mean,
                                       std=ev.std, source=ev.source, vocab=ev.vocab, device=device,
                                       glove_dir=ev.glove_dir, glove_sha256=ev.glove_sha256)
            save_evaluator(self.finest_path, trained, epoch=step // self.steps_per_epoch,
                           iteration=step, metrics=metrics, config=self.config)
            logger.info("val_loss %.4f at step %d: saved %s", metrics["val_loss"], step, self.finest_path)
        return metrics


def validate_final_state(model: nn.Module, validate: Callable[[nn.Module], dict[str, float]], finest_path: str,
                         latest_path: str, ema_decay: float | None) -> None:
    """Run ``validate`` on the final state of ``model`` (the EMA weights of ``latest_path`` when ``ema_decay`` is
    set) when no validation has written ``finest_path``, so that it is written."""
    if os.path.isfile(finest_path):
        return
    # A run shorter than one validation: its final state becomes finest.tar, scored with the weights validations
    # score (the EMA's when the run keeps one). Only then: a final state off the validation schedule competing
    # would make a run stopped at its --max_iters and continued further keep another finest.tar than one run
    # straight through.
    ema = load_checkpoint(latest_path).get("ema") if ema_decay else None
    final_model = model
    if ema:
        final_model = copy.deepcopy(model)
        final_model.load_state_dict(ema)
    final_model.eval()
    with torch.no_grad():
        validate(final_model)


def write_validation_report(cfg: argparse.Namespace, spec: DatasetSpec, finest_path: str, batch_size: int,
                            best_val_loss: float, report_path: str) -> dict[str, Any]:
    """Reload the evaluator written at ``finest_path`` and score GT retrieval on ``--val_split`` in batches of
    ``batch_size`` (seed ``--seed``); the result (path, word vectors, epoch, split, batch, samples, chance,
    ``best_val_loss`` and the retrieval scores) is written to ``report_path`` and returned."""
    final = load_evaluator(finest_path, cfg.dataset_name, data_root=cfg.data_root)
    loader = build_eval_loader(final, spec, cfg.val_split, data_root=cfg.data_root, glove_dir=cfg.glove_dir,
                               batch_size=batch_size)
    scores = retrieval_metrics(final, loader, cfg.seed)
    result = {"evaluator": os.path.abspath(finest_path), "word_vectors": final.source, "epoch": final.epoch,
              "split": cfg.val_split, "batch_size": loader.batch_size, "samples": loader.num_samples,
              "chance_top1": 1.0 / loader.batch_size, "best_val_loss": best_val_loss, **scores}
    write_report_json(result, report_path)
    return result
