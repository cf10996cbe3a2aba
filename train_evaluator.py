"""Train a Guo et al. text/motion evaluator for any dataset and feature layout.

Two stages, as the released evaluator was made (Guo et al., CVPR 2022):

1. Movement-encoder pretraining (their "Decomp" stage): the evaluator's movement encoder and a small transposed-conv
   decoder reconstruct random windows of motion; L1 reconstruction + 0.001 * mean |latent| (sparsity) + 0.001 * L1
   between consecutive latents (smoothness). Run: ``<checkpoints_dir>/<ds>/<name>_decomp/``.
2. Co-embedding: text and motion encoders over the frozen movement encoder (kept in eval mode), contrastive loss with
   margin 10: positives d^2, negatives clamp(margin - d, 0)^2 against the batch shifted by a random amount. Guo's
   shift is drawn from [0, B-2], and a shift of 0 makes every "negative" the positive itself, so that step pushes
   matched pairs apart; we draw from [1, B-1] (``--neg_shift reference`` restores the original). Adam, lr 1e-4,
   gradient norm clipped to 0.5 (one optimizer over both encoders, one global clip, where the reference had one per
   encoder).

Word vectors: the released GloVe files with ``--glove_dir`` (when the folder exists; the checkpoint records the
folder and a digest of its vectors, and evaluation and ``--is_continue`` refuse other vectors), else a vocabulary
learned from the training captions (stored in the checkpoint). The evaluator normalisation is ``eval_normalization``
of the dataset statistics (std of root and foot-contact groups divided by the spec's feature bias) and is saved with
it.

Output: ``<checkpoints_dir>/<ds>/<name>/model/finest.tar`` (lowest validation loss, the released key layout plus our
metadata; ``load_evaluator`` finds it), ``model/latest.tar`` (exact resume), ``eval/evaluator_val.json``.

Examples::

    python train_evaluator.py --dataset_name t2m_67 --glove_dir ./glove             # MARDM's 67-dim evaluator
    python train_evaluator.py --dataset_name motionmillion --batch_size 32           # learned vocabulary
    python train_evaluator.py --dataset_name synthetic --data_root dataset/Synthetic --sizes small --max_iters 3000
    python train_evaluator.py --dataset_name synthetic --data_root dataset/Synthetic --is_continue
"""

from __future__ import annotations

import copy
import logging
import os

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from models.evaluator_training import CoEmbedding, MovementAutoencoder, contrastive_loss, draw_shift
from options.config import option_origin, parse_with_config, resolve_max_iters, save_config
from options.eval_options import get_train_evaluator_parser
from utils.checkpoint import CheckpointError, load_checkpoint
from utils.cli import RESUME_TRAINING, run_script
from utils.dataset_specs import get_dataset_spec
from utils.datasets import MotionWindowDataset, Text2MotionEvalDataset, collate_eval
from utils.engine import EngineConfig, check_run_start, train
from utils.eval_data import EVAL_BATCH_SIZE, EvalLoader, build_eval_loader
from utils.eval_protocol import TOP_K, retrieval_metrics
from utils.eval_report import write_report_json
from utils.evaluator import (
    EvaluatorWrapper,
    build_evaluator,
    check_no_placed_evaluator,
    check_resumed_word_vectors,
    load_evaluator,
    save_evaluator,
    save_evaluator_meta,
)
from utils.launch_env import is_first_process, world_size
from utils.logging_utils import setup_logging
from utils.metrics import score_batch
from utils.normalization import DatasetError, eval_normalization, load_mean_std
from utils.run_dir import RunDir
from utils.seed import set_seed
from utils.tokenizer_stage import check_training_settings, warn_objective_changes
from utils.word_vectorizer import LearnedVocab, WordVectorizer

logger = logging.getLogger("train_evaluator")

LEARNED_DIM_WORD = {"official": 300, "small": 128, "tiny": 16}
# What a resumed co-embedding stage keeps, with the value of a run saved before it was recorded: finest.tar is the
# lowest validation loss so far, which another split, contrastive margin or seed (it draws the validation crops and
# captions) would score differently. Every run records its seed; 3407 is the flag's default.
RESUMED_SETTINGS = {"val_split": "val", "margin": 10.0, "seed": 3407}
# Changed on resume with a warning: the negatives of the contrastive loss (not the validation, whose shift is fixed).
OBJECTIVE_SETTINGS = ("neg_shift",)


def pretrain_steps(cfg, num_windows: int, resumed: dict | None, latest_path: str) -> int:
    """Stage 1's optimizer steps: ``--pretrain_iters``, or five epochs of ``num_windows`` windows when it is left
    out. A resumed stage 2 (``resumed``: the config saved in ``latest_path``) keeps its run's, whose movement encoder
    it froze: another ``--pretrain_iters`` is refused (CheckpointError), and leaving it out takes the run's."""
    def five_epochs(batch_size: int) -> int:
        return 5 * max(num_windows // batch_size, 1)

    if resumed is None:
        return five_epochs(cfg.batch_size) if cfg.pretrain_iters is None else cfg.pretrain_iters
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


def main(cfg) -> dict:
    # ---------------------------------------------------------------------------------------------------------------
    # setup
    # ---------------------------------------------------------------------------------------------------------------
    setup_logging(hold=True)  # the run's train.log receives what set-up logs, and nothing an earlier main() held
    spec = get_dataset_spec(cfg.dataset_name, cfg.data_root)
    run = RunDir(cfg.checkpoints_dir, cfg.dataset_name, cfg.name)
    decomp_run = RunDir(cfg.checkpoints_dir, cfg.dataset_name, f"{cfg.name}_decomp")
    # A run stopped in stage 1, or in stage 2 before its first save, has only the movement autoencoder's latest.tar:
    # --is_continue resumes that one and starts stage 2 afresh.
    continue_stage2 = cfg.is_continue and (os.path.isfile(run.latest_path)
                                           or not os.path.isfile(decomp_run.latest_path))
    check_run_start(run, continue_stage2)
    if not cfg.is_continue:
        # A new run refuses, before it writes anything, a first stage that has a checkpoint (rather than when that
        # stage starts, after meta/ was written) and an evaluator placed by hand in its folder.
        check_run_start(decomp_run, False)
        check_no_placed_evaluator(run)
    run.make_dirs()
    setup_logging(run.log_file)
    set_seed(cfg.seed)
    if cfg.pretrain_window < 4 or cfg.pretrain_window % 4:
        raise ValueError(f"--pretrain_window must be a positive multiple of 4 (the movement encoder's stride), got "
                         f"{cfg.pretrain_window}")
    processes = world_size()
    if cfg.batch_size // processes < 2:
        # The negatives are the other captions of a process's batch (draw_shift); stage 2 would otherwise fail only
        # at its first step, after the movement pre-training.
        raise ValueError(f"--batch_size {cfg.batch_size} over {processes} process(es) gives "
                         f"{cfg.batch_size // processes} caption(s) per process; the contrastive loss needs at least 2")
    finest_path = os.path.join(run.model_dir, "finest.tar")

    # ---------------------------------------------------------------------------------------------------------------
    # data
    # ---------------------------------------------------------------------------------------------------------------
    mean, std = eval_normalization(*load_mean_std(spec, cfg.data_root), spec)
    root = cfg.data_root or spec.root
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
    train_set = Text2MotionEvalDataset(spec, "train", mean, std, word_vectors, data_root=cfg.data_root)
    windows = MotionWindowDataset(spec, "train", mean, std, window_size=cfg.pretrain_window, data_root=cfg.data_root)
    val_set = Text2MotionEvalDataset(spec, cfg.val_split, mean, std, word_vectors, data_root=cfg.data_root)
    if len(val_set) < TOP_K:
        # R-precision ranks each caption among the batch's motions: top-3 needs at least 3 candidates per batch.
        raise DatasetError(f"{root}: the {cfg.val_split} split has {len(val_set)} text-motion sample(s); expected at "
                           f"least {TOP_K} for validation R-precision top-{TOP_K} (add clips to "
                           f"{os.path.join(root, cfg.val_split + '.txt')} or choose another --val_split)",
                           kind="small_split", path=root)
    val_batch = min(EVAL_BATCH_SIZE, len(val_set))
    if val_batch < EVAL_BATCH_SIZE:
        logger.warning("the %s split has only %d samples: validation batches of %d (R-precision chance 1/%d, not "
                       "1/%d)", cfg.val_split, len(val_set), val_batch, val_batch, EVAL_BATCH_SIZE)
    val_loader = EvalLoader(val_set, batch_size=val_batch)

    # ---------------------------------------------------------------------------------------------------------------
    # model
    # ---------------------------------------------------------------------------------------------------------------
    ev = build_evaluator(cfg.dataset_name, mean, std, word_vectors=word_vectors, sizes=cfg.sizes,
                         data_root=cfg.data_root)
    sizes = ev.model_args
    dataset_info = {"name": spec.name, "spec": spec.to_dict(), "mean": torch.from_numpy(mean),
                    "std": torch.from_numpy(std)}
    config = {k: v for k, v in vars(cfg).items() if v is None or isinstance(v, (bool, int, float, str, list))}
    model_args = {**sizes, "ignore_dims": list(sizes["ignore_dims"]) if sizes["ignore_dims"] else None}
    meta = {"stage": "evaluator_training", "model_name": "TextMotionEvaluator", "model_args": model_args,
            "dataset": dataset_info, "config": config, "word_vectors": ev.word_vectors_record()}
    if continue_stage2:  # before the model arguments, which other word vectors change too, are compared
        saved = load_checkpoint(run.latest_path)
        check_resumed_word_vectors(run.latest_path, saved, meta["word_vectors"], cfg.glove_dir)
    check_run_start(run, continue_stage2, meta)
    if continue_stage2:
        check_training_settings(run.latest_path, saved.get("config") or {}, config, RESUMED_SETTINGS)
        warn_objective_changes(run.latest_path, saved, config, settings=OBJECTIVE_SETTINGS)
    pretrain_iters = pretrain_steps(cfg, len(windows), (saved.get("config") or {}) if continue_stage2 else None,
                                    run.latest_path)
    config["pretrain_iters"] = pretrain_iters  # resolved, as a resume compares it
    save_config(cfg, run.config_path)  # only now, so that a refused resume leaves the run's opt.yaml as it was
    if is_first_process():  # the others write nothing into the run before training (RunDir.make_dirs)
        save_evaluator_meta(run.root, mean, std)  # the released layout's meta/, next to model/finest.tar

    def adam(params) -> torch.optim.Optimizer:
        # Guo et al.'s Adam; --weight_decay (0 by default, as theirs) makes it AdamW, as the flag says.
        params = list(params)
        if cfg.weight_decay:
            return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
        return torch.optim.Adam(params, lr=cfg.lr)

    # ---------------------------------------------------------------------------------------------------------------
    # stage 1: movement encoder + decoder
    # ---------------------------------------------------------------------------------------------------------------
    if continue_stage2:
        # Stage 2 froze the movement encoder when it started, and its checkpoint holds it: stage 1 is over, and its
        # run (the parent of stage 2's checkpoints) stays as stage 2 found it.
        logger.info("stage 1 done (%d steps): resuming stage 2", pretrain_iters)
    elif pretrain_iters > 0:
        decomp = MovementAutoencoder(ev.model, sizes["dim_movement_enc_hidden"], sizes["dim_movement_latent"])

        def decomp_loss(model: nn.Module, motion: torch.Tensor) -> tuple[torch.Tensor, dict]:
            recon, latents = model(motion)
            rec = F.l1_loss(recon, motion)
            sparsity = latents.abs().mean()
            smooth = F.l1_loss(latents[:, 1:], latents[:, :-1])
            loss = rec + cfg.lambda_sparsity * sparsity + cfg.lambda_smooth * smooth
            return loss, {"rec": rec.detach(), "sparsity": sparsity.detach(), "smooth": smooth.detach()}

        decomp_cfg = EngineConfig.from_namespace(
            cfg, max_iters=pretrain_iters, grad_clip=0.0, ema_decay=None, eval_every=0, save_every=0,
            is_continue=cfg.is_continue and os.path.isfile(decomp_run.latest_path))
        train(decomp, windows, decomp_loss, decomp_cfg, decomp_run,
              checkpoint_meta={"stage": "evaluator_decomp", "model_name": "MovementAutoencoder",
                               "model_args": model_args, "dataset": dataset_info, "config": config, "parent": None},
              optimizer_factory=lambda m: adam(m.parameters()))
    else:
        logger.warning("--pretrain_iters 0: the movement encoder stays at its random initialisation")

    # ---------------------------------------------------------------------------------------------------------------
    # stage 2: co-embedding
    # ---------------------------------------------------------------------------------------------------------------
    setup_logging(run.log_file)
    model = CoEmbedding(ev.model)
    optimizers: list[torch.optim.Optimizer] = []

    def make_optimizer(m: nn.Module) -> torch.optim.Optimizer:
        optimizers.append(adam([p for p in m.parameters() if p.requires_grad]))
        return optimizers[-1]

    def loss_fn(m: nn.Module, batch) -> tuple[torch.Tensor, dict]:
        text_emb, motion_emb = m(batch.word_embs, batch.pos_ohot, batch.sent_lens, batch.motion, batch.m_lengths)
        loss_pos, loss_neg = contrastive_loss(text_emb, motion_emb, draw_shift(text_emb.shape[0], cfg.neg_shift),
                                              cfg.margin)
        return loss_pos + loss_neg, {"loss_pos": loss_pos.detach(), "loss_neg": loss_neg.detach()}

    best = {"val_loss": float("inf")}
    if continue_stage2 and os.path.isfile(finest_path):
        best["val_loss"] = float(load_checkpoint(finest_path).get("metrics", {}).get("val_loss", float("inf")))

    def validate(m: nn.Module) -> dict[str, float]:
        device = next(m.parameters()).device
        total, hits, match, n = 0.0, np.zeros(TOP_K), 0.0, 0
        for b, batch in enumerate(val_loader.batches(cfg.seed)):
            text_emb, motion_emb = m(batch.word_embs.to(device), batch.pos_ohot.to(device), batch.sent_lens,
                                     batch.motion.to(device), batch.m_lengths)
            shift = 1 + b % (text_emb.shape[0] - 1)  # fixed and nonzero, so validations compare
            total += float(sum(contrastive_loss(text_emb, motion_emb, shift, cfg.margin)))
            scores = score_batch(text_emb.cpu().numpy(), motion_emb.cpu().numpy())
            hits += scores.top_k_count
            match += scores.matching_score_sum
            n += text_emb.shape[0]
        metrics = {"val_loss": total / val_loader.num_batches, "top1": float(hits[0] / n),
                   "top2": float(hits[1] / n), "top3": float(hits[2] / n), "matching_score": match / n}
        if metrics["val_loss"] < best["val_loss"] or not os.path.isfile(finest_path):
            best["val_loss"] = min(best["val_loss"], metrics["val_loss"])
            state = optimizers[0].state
            step = int(next(iter(state.values()))["step"]) if state else 0  # Adam counts its updates
            trained = EvaluatorWrapper(m.evaluator, ev.model_args, dataset_name=ev.dataset_name, mean=ev.mean,
                                       std=ev.std, source=ev.source, vocab=ev.vocab, device=device,
                                       glove_dir=ev.glove_dir, glove_sha256=ev.glove_sha256)
            save_evaluator(finest_path, trained, epoch=step // max(len(train_set) // cfg.batch_size, 1),
                           iteration=step, metrics=metrics, config=config)
            logger.info("val_loss %.4f at step %d: saved %s", metrics["val_loss"], step, finest_path)
        return metrics

    engine_cfg = EngineConfig.from_namespace(cfg, max_iters=resolve_max_iters(cfg, len(train_set)),
                                             best_metric="val_loss", best_mode="min", is_continue=continue_stage2)
    result = train(model, train_set, loss_fn, engine_cfg, run, collate_fn=collate_eval, val_fn=validate,
                   optimizer_factory=make_optimizer,
                   checkpoint_meta={**meta, "parent": decomp_run.latest_path if pretrain_iters > 0 else None})
    if not is_first_process():
        # What follows writes finest.tar and the report: the first process's work. The others never ran the
        # validations (the engine runs them on the first process), so their final state would always look best and
        # replace finest.tar.
        return {}
    if not os.path.isfile(finest_path):
        # A run shorter than one validation: its final state becomes finest.tar, scored with the weights validations
        # score (the EMA's when the run keeps one). Only then: a final state off the validation schedule competing
        # would make a run stopped at its --max_iters and continued further keep another finest.tar than one run
        # straight through.
        ema = load_checkpoint(result.latest_path).get("ema") if engine_cfg.ema_decay else None
        final_model = model
        if ema:
            final_model = copy.deepcopy(model)
            final_model.load_state_dict(ema)
        final_model.eval()
        with torch.no_grad():
            validate(final_model)

    # ---------------------------------------------------------------------------------------------------------------
    # final: reload the written evaluator, validation retrieval
    # ---------------------------------------------------------------------------------------------------------------
    final = load_evaluator(finest_path, cfg.dataset_name, data_root=cfg.data_root)
    loader = build_eval_loader(final, spec, cfg.val_split, data_root=cfg.data_root, glove_dir=cfg.glove_dir,
                               batch_size=val_batch)
    scores = retrieval_metrics(final, loader, cfg.seed)
    result = {"evaluator": os.path.abspath(finest_path), "word_vectors": final.source, "epoch": final.epoch,
              "split": cfg.val_split, "batch_size": loader.batch_size, "samples": loader.num_samples,
              "chance_top1": 1.0 / loader.batch_size, "best_val_loss": best["val_loss"], **scores}
    write_report_json(result, os.path.join(run.eval_dir, "evaluator_val.json"))
    print(f"evaluator {finest_path} ({final.source}), {cfg.val_split} split, {loader.num_samples} samples, batch "
          f"{loader.batch_size}: R-precision top-1 {scores['top1']:.3f} (chance {1 / loader.batch_size:.3f}), "
          f"top-2 {scores['top2']:.3f}, top-3 {scores['top3']:.3f}, matching score {scores['matching_score']:.3f}")
    return result


if __name__ == "__main__":
    run_script(lambda: main(parse_with_config(get_train_evaluator_parser())), resume=RESUME_TRAINING)
