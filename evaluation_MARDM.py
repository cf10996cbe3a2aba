"""Evaluate a text-to-motion generator (MARDM, FSQ-MARDM, VQ-MARDM, MoMask) with the Guo et al. protocol.

For every test batch the generator receives the captions and the GT lengths (``m_length // unit_length`` tokens);
its motion is de-normalised with the generator's statistics and re-normalised with the evaluator's before it is
embedded, as MARDM does. Reported: FID, Diversity, R-precision top-1/2/3, matching score (MM-Dist) and, unless
``--no_mm``, Multimodality (the first ``--mm_batches`` batches generated ``--mm_repeats`` times), each as mean ±
1.96·std/√R over ``--replications`` passes (``utils/eval_protocol.py``), next to the GT ("Real") row.

By default the EMA weights of ``model/latest.tar`` are evaluated, as MARDM does (MoMask runs trained without EMA: their
weights). A MoMask masked-transformer run takes its residual transformer with ``--res_name`` / ``--res_ckpt``; sampling
defaults are the family's (MARDM 18 steps, guidance 4.5; MoMask 10 steps, guidance 4, residual guidance 5).

Examples::

    python evaluation_MARDM.py --name FSQ_MARDM_SiT_XL --dataset_name t2m_67
    python evaluation_MARDM.py --name FSQ_MARDM_SiT_XL --dataset_name t2m_67 --which_epoch best --cfg 3.0 --no_mm
    python evaluation_MARDM.py --name FSQ_MARDM_SiT_XL --dataset_name t2m_67 --no_snap     # snapping ablation
    python evaluation_MARDM.py --ckpt elsewhere/latest.tar --tokenizer_path elsewhere/fsq.tar --replications 5
    python evaluation_MARDM.py --name t2m_nlayer8_nhead6_ld384_ff1024 --res_name tres_nlayer8_ld384_ff1024 \
        --dataset_name t2m --which_epoch best                                                  # MoMask
    python evaluation_MARDM.py --name FSQ_MARDM_SiT_XL --dataset_name t2m_67 --save_motions   # generate once ...
    python evaluation_MARDM.py --from_motions checkpoints/t2m_67/FSQ_MARDM_SiT_XL/eval/motions_latest_ema_ts18_cfg4.5 \
        --evaluator_dir other/text_mot_match                                                   # ... score again
    python evaluation_MARDM.py --name FSQ_MARDM_SiT_XL --dataset_name t2m_67 --eval_dataset t2m  # 67 -> 263 (lossy)

Writes ``<run>/eval/eval_<tag>.json`` (settings, checkpoint and SHA-256, evaluator, seeds, every replication),
``eval_<tag>_replications.jsonl`` (one line per replication as it finishes; ``--is_continue`` reuses them) and
``eval.log`` (``--report_json PATH`` writes the result JSON to PATH as well, for scripts such as ``reproduce.py``).
``<run>`` is ``checkpoints/<ds>/<name>`` for ``--name``; for ``--ckpt``, the run folder holding the file
(``<run>/model/<file>``) unless ``--name`` is given too. ``<tag>`` names the checkpoint, weights, sampling settings,
a MoMask residual's run (and file, where it is not the generator's), a ``--tokenizer_path`` file (``_tok`` and its
SHA-256 prefix), the protocol settings away from their defaults (split, seed, batch size, multimodality) and an
``--evaluator_dir`` other than ``<checkpoints_dir>/<ds>/text_mot_match`` (``_ev`` and its file's SHA-256 prefix), so
sweeps do not overwrite each other.

Generate once, score many (``utils/saved_motions.py``). ``--save_motions`` also keeps every generated motion in
``<run>/eval/motions_<tag>/`` (one file per replication, written before its JSONL line). ``--from_motions <folder>``
scores them again without loading the generator, under another ``--evaluator_dir`` or after a change of the metrics:
the split, seed, batch size and multimodality settings are the saved run's (one of these flags typed or set in the
``--config`` preset with another value, even its default, is an error), the number of replications too unless
``--replications`` is given, and every batch is checked to draw the captions and lengths the motions were made for.
Under the same evaluator the scores are those of the saving run, to the bit; the results go to the same
``eval_<tag>[_ev...]`` files a direct evaluation would write, with ``motions_from`` recorded.

Another representation's evaluator (``utils/representation.py``). ``--eval_dataset X`` takes the GT, captions, crops,
evaluator statistics and default evaluator (``<checkpoints_dir>/X/text_mot_match``) from dataset X, whose clips must
be the generator's (same data folder and frame rates, lengths in whole tokens); the generator's de-normalised motion
is converted to X's representation before it is re-normalised. The report records the ``conversion`` (from, to,
exact, description); a lossy one is logged as a warning and flagged in the printed title. Files are tagged
``_as<X>`` (``motions_<tag>_as<X>/`` keeps the generator's native motion), and ``--from_motions ... --eval_dataset X``
converts the replayed motion.
"""

from __future__ import annotations

import logging
import os

import torch

from options.config import config_to_dict, parse_with_config
from options.eval_generator_options import get_evaluation_generator_parser
from utils.cli import RESUME_EVALUATION, run_script
from utils.dataset_specs import get_dataset_spec
from utils.eval_data import build_eval_loader
from utils.eval_protocol import MM_TIMES, evaluate, evaluator_tag, renormalize, replication_seeds
from utils.eval_report import format_report, write_report_json
from utils.evaluator import load_evaluator
from utils.generator_eval import generator_source
from utils.logging_utils import setup_logging
from utils.representation import conversion_for_evaluation
from utils.saved_motions import GENERATION_FLAGS, KIND_BATCH, KIND_MM, MotionRecorder, make_header, replay_source

logger = logging.getLogger("evaluation_MARDM")


@torch.no_grad()
def main(cfg) -> dict:
    # ---------------------------------------------------------------------------------------------------------------
    # setup and model (or saved motions)
    # ---------------------------------------------------------------------------------------------------------------
    setup_logging(hold=True)  # console now; the run's eval.log, from the start, once the run folder is known
    if cfg.cal_mm and cfg.mm_repeats <= MM_TIMES:
        raise ValueError(f"--mm_repeats {cfg.mm_repeats}: multimodality compares {MM_TIMES} pairs of repeats per "
                         f"caption, so it needs more than {MM_TIMES} (or --no_mm)")
    replication_seeds(cfg.seed, cfg.replications)  # a --seed the protocol cannot use fails before any work
    source = (replay_source(cfg, get_evaluation_generator_parser().get_default) if cfg.from_motions
              else generator_source(cfg))
    dataset_name = cfg.eval_dataset or source.dataset_name
    conversion = None
    if dataset_name != source.dataset_name:
        conversion = conversion_for_evaluation(source.dataset_name, dataset_name,
                                               source.meta["sampling"]["unit_length"], cfg.data_root)
    default_evaluator = os.path.join(cfg.checkpoints_dir, dataset_name, "text_mot_match")

    # ---------------------------------------------------------------------------------------------------------------
    # data: GT test motion normalised with the evaluator statistics
    # ---------------------------------------------------------------------------------------------------------------
    device = torch.device(cfg.device)
    spec = get_dataset_spec(dataset_name, cfg.data_root)
    evaluator = load_evaluator(cfg.evaluator_dir or default_evaluator, dataset_name, device, data_root=cfg.data_root)
    eval_loader = build_eval_loader(evaluator, spec, cfg.split, data_root=cfg.data_root, glove_dir=cfg.glove_dir,
                                    batch_size=cfg.eval_batch_size, num_workers=cfg.num_workers)
    # Every check of the input has passed: only now is the eval/ folder made (a refused --ckpt X --name Y leaves no
    # run Y behind) and its eval.log opened, holding what set-up logged.
    os.makedirs(source.eval_dir, exist_ok=True)
    setup_logging(os.path.join(source.eval_dir, "eval.log"))
    own_tag = source.tag + (f"_as{dataset_name}" if conversion else "")
    tag = own_tag + evaluator_tag(cfg.evaluator_dir, default_evaluator)
    meta, title = source.meta, source.title
    if conversion is not None:
        meta = {**meta, "conversion": conversion.to_dict()}
        title += conversion.title_note(logger)
    mm_setting = (cfg.mm_batches, cfg.mm_repeats) if cfg.cal_mm else None
    recorder = None
    if cfg.save_motions:
        header = make_header(dataset=source.dataset_name, split=cfg.split, seed=cfg.seed,
                             eval_batch_size=cfg.eval_batch_size, multimodality=mm_setting, tag=source.tag,
                             which=source.which, meta=source.meta)
        header.update(title=source.title, replications=cfg.replications, eval_dataset=dataset_name,
                      sampler=source.sampler)
        recorder = MotionRecorder(os.path.join(source.eval_dir, f"motions_{own_tag}"), header, source.mean,
                                  source.std)
        source.hooks = recorder

    # ---------------------------------------------------------------------------------------------------------------
    # evaluation
    # ---------------------------------------------------------------------------------------------------------------
    def motion_fn(kind: int):
        def fn(batch):
            motion, lengths = source.produce(kind, batch)
            if recorder is not None:
                recorder.record(kind, batch, motion, lengths)
            if conversion is not None:  # the generator's raw features in the evaluation dataset's representation
                return conversion.renormalize(motion, lengths, source.mean, source.std, evaluator.mean, evaluator.std)
            # De-normalised with the generator's statistics, re-normalised with the evaluator's (as MARDM).
            return renormalize(motion, source.mean, source.std, evaluator.mean, evaluator.std), lengths

        return fn

    report = evaluate(evaluator, eval_loader, motion_fn(KIND_BATCH), replications=cfg.replications, seed=cfg.seed,
                      mm_fn=motion_fn(KIND_MM) if cfg.cal_mm else None, mm_batches=cfg.mm_batches,
                      mm_repeats=cfg.mm_repeats, results_path=os.path.join(source.eval_dir,
                                                                           f"eval_{tag}_replications.jsonl"),
                      meta=meta, gt_cache=None if cfg.no_gt_cache else "auto", resume=cfg.is_continue,
                      hooks=source.hooks)

    # ---------------------------------------------------------------------------------------------------------------
    # results
    # ---------------------------------------------------------------------------------------------------------------
    result = {"which": source.which, **meta, "sampler": source.sampler, "dataset": dataset_name, "split": cfg.split,
              "seed": cfg.seed, "protocol": report.to_dict(), "config": config_to_dict(cfg)}
    if cfg.from_motions:  # the generation flags did not apply: the saved run's settings are in "sampling" above
        result["config"] = {k: v for k, v in result["config"].items() if k not in GENERATION_FLAGS}
        result["motions_from"] = os.path.abspath(cfg.from_motions)
    if recorder is not None:
        result["motions_saved"] = recorder.folder
        unsaved = recorder.missing(report.meta["protocol"]["seeds"])
        if unsaved:
            logger.warning("replication seed(s) %s were reused from the JSONL file (--is_continue) and have no saved "
                           "motions in %s; run without --is_continue to save every replication", unsaved,
                           recorder.folder)
    out_path = os.path.join(source.eval_dir, f"eval_{tag}.json")
    write_report_json(result, out_path)
    if cfg.report_json:
        write_report_json(result, cfg.report_json)
    print(format_report(report, title=title))
    logger.info("wrote %s", out_path)
    return result


if __name__ == "__main__":
    run_script(lambda: main(parse_with_config(get_evaluation_generator_parser())),
               single_process=True, resume=RESUME_EVALUATION)
