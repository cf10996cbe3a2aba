"""Evaluate a motion tokenizer (AE, VQ-VAE, RVQ-VAE, FSQ): reconstruct test motion and score it.

Reported:
- through the evaluation protocol (``utils/eval_protocol.py``), when an evaluator exists for the dataset: FID,
  Diversity, R-precision top-1/2/3 and matching score of the reconstructions, mean ± 95% interval over
  ``--replications`` passes; skipped with a message when there is none in the default place, when the split has
  fewer samples than one protocol batch, or with ``--no_protocol`` (a named ``--evaluator_dir`` that cannot be
  loaded is an error);
- MPJPE in mm, root-aligned over valid frames, per frame (MoMask / MARDM) and per sequence (MotionMillion);
- mean absolute error per feature group of the dataset layout (feature units and normalised units);
- per residual layer: code perplexity, fraction of the codebook used, dead codes (none for a continuous AE); and the
  bit rate ``log2(K) * tokens per second * layers``.

The GT test motion is read with the evaluator statistics, de-normalised and re-normalised with the tokenizer's own
(recorded in our checkpoints; for official files: the evaluator-style statistics for T2M-GPT / MoMask, the dataset's
for MARDM / MotionMillion), reconstructed, and converted back.

Examples::

    python evaluation_AE.py --name FSQ_AE_High --dataset_name t2m_67              # model/net_best_fid.tar, else
                                                                                   # net_best_loss.tar, else latest.tar
    python evaluation_AE.py --name AE --dataset_name t2m_67 --which_epoch latest
    python evaluation_AE.py --ckpt checkpoints/t2m/rvq_nq6_dc512_nc512_noshare_qdp0.2/model/net_best_fid.tar \\
        --dataset_name t2m --glove_dir ./glove --name momask_rvq
    python evaluation_AE.py --name FSQ_Tiny --dataset_name synthetic --data_root dataset/Synthetic --replications 5
    python evaluation_AE.py --name FSQ_AE_High --dataset_name t2m_67 --eval_dataset t2m   # 263-dim evaluator

``--eval_dataset X`` runs the protocol on X's GT, captions and evaluator (``utils/representation.py``): X's GT must
convert exactly to the tokenizer's input (t2m -> t2m_67 is a slice; the other way is refused), the reconstruction is
converted back (t2m_67 -> t2m re-extracts the features from joints: lossy, flagged in the log, the table title and the
JSON's ``conversion``), and the files are tagged ``_as<X>``. The reconstruction metrics stay on ``--dataset_name``.

Writes ``<run>/eval/eval_<which>[_ema][_each][_<split>][_seed<seed>][_as<X>][_ev<hash>].json`` (EMA weights;
``--per_motion``, each motion reconstructed alone as T2M-GPT evaluates; split and seed when not the defaults;
``--eval_dataset``; the first 8 hex digits of the evaluator file's SHA-256 when ``--evaluator_dir`` names another one
than the dataset's own), ``eval_<...>_replications.jsonl`` (one line per replication as it finishes; ``--is_continue``
reuses them) and ``eval.log``; ``--report_json PATH`` writes the result JSON to PATH as well. ``<run>`` is
``checkpoints/<ds>/<name>`` for ``--name``; for ``--ckpt``, the run folder holding the file (``<run>/model/<file>``)
unless ``--name`` is given too.
"""

from __future__ import annotations

import logging
import os

import numpy as np
import torch

from models.loader import load_tokenizer
from options.config import config_to_dict, parse_with_config
from options.eval_options import get_evaluation_ae_parser
from utils.checkpoint import load_checkpoint
from utils.cli import RESUME_EVALUATION, run_script
from utils.dataset_specs import get_dataset_spec
from utils.eval_data import EvalSplitTooSmall, build_eval_loader, digest
from utils.eval_protocol import evaluate, protocol_tag, renormalize, replication_seeds
from utils.eval_report import checkpoint_info, format_report, run_folder_of, write_report_json
from utils.logging_utils import setup_logging
from utils.normalization import load_mean_std
from utils.representation import tokenizer_conversions
from utils.run_dir import RunDir
from utils.seed import set_seed
from utils.tokenizer_eval import (
    bits_per_second,
    evaluation_conditions,
    reconstruct,
    reconstruct_each,
    reconstruction_table,
    recorded_statistics,
    resolve_checkpoint,
)
from utils.tokenizer_eval_steps import body_part_columns, protocol_evaluator, reconstruction_data, reconstruction_pass

logger = logging.getLogger("evaluation_AE")


@torch.no_grad()
def main(cfg) -> dict:
    # ---------------------------------------------------------------------------------------------------------------
    # setup
    # ---------------------------------------------------------------------------------------------------------------
    setup_logging(hold=True)  # eval.log receives what set-up logs, and nothing an earlier main() held
    replication_seeds(cfg.seed, cfg.replications)  # a --seed the protocol cannot use fails before any work
    spec = get_dataset_spec(cfg.dataset_name, cfg.data_root)
    path, name, which = resolve_checkpoint(cfg)
    # Results go to the run named by --name, else next to the --ckpt file's own run; their names give the file, its
    # weights and any protocol setting away from its default.
    run_root = ((not cfg.name and run_folder_of(path)) or RunDir(cfg.checkpoints_dir, cfg.dataset_name, name).root)
    eval_dir = os.path.join(run_root, "eval")
    set_seed(cfg.seed)
    device = torch.device(cfg.device)

    # ---------------------------------------------------------------------------------------------------------------
    # model
    # ---------------------------------------------------------------------------------------------------------------
    tokenizer = load_tokenizer(path, model_name=cfg.ae_model, map_location=device, use_ema=not cfg.no_ema)
    # The weights are part of the evaluation key (so --is_continue never mixes them) and EMA ones of the file names.
    tag = (which + ("_ema" if tokenizer.weights == "ema" else "") + ("_each" if cfg.per_motion else "")
           + protocol_tag(cfg.split, cfg.seed))

    def rebuild(motion: torch.Tensor, lengths: torch.Tensor, cond: dict[str, torch.Tensor] | None = None):
        """(reconstruction, codes): each motion alone with --per_motion (T2M-GPT), else the padded batch."""
        if cfg.per_motion:
            return reconstruct_each(tokenizer, motion, lengths, cond)
        return reconstruct(tokenizer, motion, cond)

    # A body-part tokenizer (train_vq.py --body_part) sees only its part's feature columns.
    saved = load_checkpoint(path) if tokenizer.source_format == "ours" else {}
    body_part, columns = body_part_columns(saved, spec, tokenizer.model.input_width, path)
    # The protocol's GT, captions and evaluator: the tokenizer's dataset, or --eval_dataset's through conversions.
    eval_name = cfg.eval_dataset or spec.name
    to_tokenizer = from_tokenizer = None
    if eval_name != spec.name:
        to_tokenizer, from_tokenizer = tokenizer_conversions(spec.name, eval_name, tokenizer.unit_length,
                                                             cfg.data_root)
        tag += f"_as{eval_name}"
    protocol = protocol_evaluator(cfg, eval_name, tokenizer.statistics_format, converted=to_tokenizer is not None,
                                  device=device)
    evaluator, stats_evaluator, skipped = protocol.evaluator, protocol.stats_evaluator, protocol.skipped
    tag += protocol.tag
    # A conditional tokenizer reconstructs each clip under the labels it has in <data_root>/conditions.json.
    labels = (evaluation_conditions(saved["conditions"], path, cfg.data_root or spec.root)
              if saved.get("conditions") else None)
    unscorable = []  # why the text-motion protocol cannot score this tokenizer
    if body_part:
        unscorable.append(f"the tokenizer covers only body part {body_part['name']!r}; the text-motion protocol "
                          "needs whole-body motion")
    if labels is not None:
        unscorable.append(f"the tokenizer is conditioned on {list(labels.names)}; the text-motion protocol does not "
                          "carry clip labels")
    if unscorable and to_tokenizer is not None:  # the protocol is all that --eval_dataset asks for
        raise ValueError(f"--eval_dataset {eval_name}: {unscorable[0]}, so there is nothing to evaluate on "
                         f"{eval_name}; leave --eval_dataset out for the reconstruction metrics")
    if unscorable and evaluator is not None:
        evaluator, skipped = None, f"{unscorable[0]} and is skipped"
        logger.warning(skipped)
    eval_loader = None
    if evaluator is not None:  # built before the reconstruction pass, whose metrics a too small split still gets
        try:
            eval_loader = build_eval_loader(evaluator, get_dataset_spec(eval_name, cfg.data_root), cfg.split,
                                            data_root=cfg.data_root, glove_dir=cfg.glove_dir,
                                            num_workers=cfg.num_workers)
        except EvalSplitTooSmall as e:
            if to_tokenizer is not None:  # the protocol is all that --eval_dataset asks for
                raise
            evaluator, skipped = None, f"{e}; the protocol is skipped, the reconstruction metrics are reported"
            logger.warning(skipped)
    # Official T2M-GPT / MoMask tokenizers use their own dataset's evaluator statistics, not another dataset's.
    tok_mean, tok_std, stats_source = recorded_statistics(tokenizer, spec, cfg,
                                                          stats_evaluator if to_tokenizer is None else None)
    logger.info("%s: %s (%s, %s, %s weights), statistics from %s", path, tokenizer.model_name, tokenizer.kind,
                tokenizer.source_format, tokenizer.weights, stats_source)
    layers = tokenizer.num_quantizers if tokenizer.kind == "rvq" else 1
    info = checkpoint_info(path)

    # ---------------------------------------------------------------------------------------------------------------
    # reconstruction metrics: one pass over the split, seeded crops
    # ---------------------------------------------------------------------------------------------------------------
    data_mean, data_std = load_mean_std(spec, cfg.data_root) if body_part else (tok_mean, tok_std)
    data = reconstruction_data(spec, cfg.split, data_mean, data_std, cfg.data_root)
    # Every check of the input has passed: only now is the eval/ folder made (a refused --ckpt X --name Y leaves no
    # run Y behind) and its eval.log opened, holding what set-up logged.
    os.makedirs(eval_dir, exist_ok=True)
    setup_logging(os.path.join(eval_dir, "eval.log"))
    recon_metrics = reconstruction_pass(data, rebuild, tokenizer, spec, tokenizer_stats=(tok_mean, tok_std),
                                        data_stats=(data_mean, data_std), body_part=body_part, columns=columns,
                                        labels=labels, batch_size=cfg.batch_size, seed=cfg.seed,
                                        num_workers=cfg.num_workers, device=device)

    # ---------------------------------------------------------------------------------------------------------------
    # evaluation protocol
    # ---------------------------------------------------------------------------------------------------------------
    report, title = None, f"{tokenizer.model_name} reconstruction, {spec.name} {cfg.split}"
    if evaluator is not None:
        def motion_fn(batch):
            if to_tokenizer is None:
                motion = renormalize(batch.motion.to(device), evaluator.mean, evaluator.std, tok_mean, tok_std)
                recon, _ = rebuild(motion, batch.m_lengths)
                return renormalize(recon, tok_mean, tok_std, evaluator.mean, evaluator.std), batch.m_lengths
            motion, lengths = to_tokenizer.renormalize(batch.motion, batch.m_lengths, evaluator.mean, evaluator.std,
                                                       tok_mean, tok_std)
            recon, _ = rebuild(motion.to(device), lengths)
            return from_tokenizer.renormalize(recon.cpu(), lengths, tok_mean, tok_std, evaluator.mean, evaluator.std)

        # The statistics are part of the evaluation key: an official file reconstructs differently under
        # --ae_meta_dir than under its format's convention, so --is_continue must not mix the two.
        meta = {**info, "model_name": tokenizer.model_name, "kind": tokenizer.kind,
                "source_format": tokenizer.source_format, "weights": tokenizer.weights,
                "tokenizer_statistics": stats_source,
                "tokenizer_statistics_sha256": digest(np.asarray(tok_mean, dtype=np.float32),
                                                      np.asarray(tok_std, dtype=np.float32)).hexdigest()}
        if from_tokenizer is not None:
            meta["conversion"] = {"input": to_tokenizer.to_dict(), "output": from_tokenizer.to_dict()}
            title += from_tokenizer.title_note(logger, "reconstruction")
        report = evaluate(evaluator, eval_loader, motion_fn, replications=cfg.replications, seed=cfg.seed,
                          results_path=os.path.join(eval_dir, f"eval_{tag}_replications.jsonl"), meta=meta,
                          gt_cache=None if cfg.no_gt_cache else "auto", resume=cfg.is_continue,
                          deterministic=True)

    # ---------------------------------------------------------------------------------------------------------------
    # results
    # ---------------------------------------------------------------------------------------------------------------
    result = {
        **info, "which": which,
        "model_name": tokenizer.model_name, "kind": tokenizer.kind, "source_format": tokenizer.source_format,
        "model_args": tokenizer.model_args, "weights": tokenizer.weights, "dataset": spec.name, "split": cfg.split,
        "tokenizer_statistics": stats_source, "seed": cfg.seed,
        "conditions": list(labels.names) if labels is not None else None,
        "tokens_per_second": spec.fps / tokenizer.unit_length, "layers": layers,
        "bits_per_second": bits_per_second(tokenizer.codebook_size, spec.fps, tokenizer.unit_length, layers),
        "reconstruction": recon_metrics,
        "eval_dataset": eval_name, "conversion": meta.get("conversion") if report is not None else None,
        "protocol": report.to_dict() if report is not None else None, "protocol_skipped": skipped,
        "config": config_to_dict(cfg),
    }
    out_path = os.path.join(eval_dir, f"eval_{tag}.json")
    write_report_json(result, out_path)
    if cfg.report_json:
        write_report_json(result, cfg.report_json)
    print(reconstruction_table(result))
    if report is not None:
        print(format_report(report, title=title))
    logger.info("wrote %s", out_path)
    return result


if __name__ == "__main__":
    run_script(lambda: main(parse_with_config(get_evaluation_ae_parser())),
               single_process=True, resume=RESUME_EVALUATION)
