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

import logging
import os

import torch
import torch.nn.functional as F
from torch import nn

from models.evaluator_training import CoEmbedding, MovementAutoencoder, contrastive_loss, draw_shift
from options.config import parse_with_config, resolve_max_iters, save_config
from options.eval_options import get_train_evaluator_parser
from utils.cli import RESUME_TRAINING, run_script
from utils.dataset_specs import get_dataset_spec
from utils.datasets import Text2MotionEvalDataset, collate_eval
from utils.engine import EngineConfig, check_run_start, train
from utils.evaluator import build_evaluator, check_no_placed_evaluator, save_evaluator_meta
from utils.evaluator_stage import (
    CoEmbeddingValidation,
    check_resume,
    check_window_and_batch,
    load_pretraining_windows,
    load_val_loader,
    load_word_vectors,
    pretrain_steps,
    validate_final_state,
    write_validation_report,
)
from utils.launch_env import is_first_process
from utils.logging_utils import setup_logging
from utils.normalization import eval_normalization, load_mean_std
from utils.run_dir import RunDir
from utils.seed import set_seed

logger = logging.getLogger("train_evaluator")


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
    check_window_and_batch(cfg.pretrain_window, cfg.batch_size)
    finest_path = os.path.join(run.model_dir, "finest.tar")

    # ---------------------------------------------------------------------------------------------------------------
    # data
    # ---------------------------------------------------------------------------------------------------------------
    mean, std = eval_normalization(*load_mean_std(spec, cfg.data_root), spec)
    word_vectors = load_word_vectors(cfg, cfg.data_root or spec.root)
    train_set = Text2MotionEvalDataset(spec, "train", mean, std, word_vectors, data_root=cfg.data_root)
    # Stage 1's windows, unless it is skipped from the start (a resume may need their count for an old run's length).
    windows = (None if cfg.pretrain_iters == 0 and not cfg.is_continue else
               load_pretraining_windows(spec, mean, std, cfg.pretrain_window, cfg.batch_size, cfg.data_root))
    val_loader = load_val_loader(spec, cfg.val_split, mean, std, word_vectors, cfg.data_root)

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
    resumed = check_resume(run, continue_stage2, meta, cfg.glove_dir)
    pretrain_iters = pretrain_steps(cfg, len(windows) if windows is not None else 0, resumed, run.latest_path,
                                    stage1_latest=decomp_run.latest_path if cfg.is_continue and not continue_stage2
                                    else None)
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

    validate = CoEmbeddingValidation(val_loader, ev, finest_path, config, optimizers, seed=cfg.seed, margin=cfg.margin,
                                     steps_per_epoch=max(len(train_set) // cfg.batch_size, 1), resume=continue_stage2)

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
    validate_final_state(model, validate, finest_path, result.latest_path, engine_cfg.ema_decay)

    # ---------------------------------------------------------------------------------------------------------------
    # final: reload the written evaluator, validation retrieval
    # ---------------------------------------------------------------------------------------------------------------
    result = write_validation_report(cfg, spec, finest_path, val_loader.batch_size, validate.best_val_loss,
                                     os.path.join(run.eval_dir, "evaluator_val.json"))
    print(f"evaluator {finest_path} ({result['word_vectors']}), {cfg.val_split} split, {result['samples']} samples, "
          f"batch {result['batch_size']}: R-precision top-1 {result['top1']:.3f} (chance "
          f"{1 / result['batch_size']:.3f}), top-2 {result['top2']:.3f}, top-3 {result['top3']:.3f}, matching score "
          f"{result['matching_score']:.3f}")
    return result


if __name__ == "__main__":
    run_script(lambda: main(parse_with_config(get_train_evaluator_parser())), resume=RESUME_TRAINING)
