"""Checks before a generator run continues (``--is_continue``): the data settings, tokenizer weights, text encoder and
model it trained with must be the ones given now, and changed validation settings are named."""

from __future__ import annotations

import logging
from typing import Any

from utils.checkpoint import CheckpointError, check_matches, resumed_model_args
from utils.checkpoint_users import find_kept_copy
from utils.tokenizer_stage import check_training_settings, warn_validation_batches

logger = logging.getLogger(__name__)


# Settings that decide what a generator trains on, with the value a run saved before the option existed trained with:
# cached codes are cropped in token space, on-the-fly ones from the motion (``utils.token_stage``).
RESUMED_GENERATOR_SETTINGS = {"cache_tokens": False}


def check_resumed_settings(latest_path: str, saved: dict[str, Any] | None, config: dict[str, Any]) -> None:
    """Before ``--is_continue`` builds its data: refuse other ``RESUMED_GENERATOR_SETTINGS`` in ``config`` (the
    options now) than the run's (``saved``, its ``resume_records``), naming each with both values."""
    if saved is not None:
        check_training_settings(latest_path, saved.get("config") or {}, config, RESUMED_GENERATOR_SETTINGS)


# Generator constructor arguments added after runs were saved, with the value those runs trained with.
ADDED_GENERATOR_ARGS = {"train_mask_count": "length"}


def check_resume_matches(latest_path: str, meta: dict[str, Any], saved: dict[str, Any] | None) -> None:
    """Before ``--is_continue``: the run's tokenizer weights, text encoder and model (``saved``, its
    ``resume_records``) must be the ones given now (``meta``). A run saved before an argument of
    ``ADDED_GENERATOR_ARGS`` existed, resumed with that argument's old value, keeps its record: ``meta["model_args"]``
    (what the engine checks and saves next) is updated in place to leave it out."""
    if saved is None:
        return  # a new run (a resumed one without latest.tar was refused by check_run_start)
    if meta.get("model_args") is not None:
        meta["model_args"] = resumed_model_args(saved.get("model_args") or {}, meta["model_args"],
                                                ADDED_GENERATOR_ARGS)
    saved_text = saved.get("text_encoder") or {}
    saved_tok = saved.get("tokenizer") or {}
    if saved_tok.get("sha256") != meta["tokenizer"]["sha256"]:
        kept = None
        if saved_tok.get("path") and saved_tok.get("sha256"):
            kept = find_kept_copy(str(saved_tok["path"]), str(saved_tok["sha256"]))
        advice = (f"resume with that version, kept as {kept} (--ae_ckpt / --vq_ckpt {kept})" if kept else
                  "resume with the same tokenizer file (--ae_which / --vq_which, or --ae_ckpt / --vq_ckpt, naming "
                  "it)")
        raise CheckpointError(f"{latest_path}: the run being resumed was trained on tokenizer {saved_tok.get('path')} "
                              f"(sha256 {str(saved_tok.get('sha256'))[:12]}...), now {meta['tokenizer']['path']} "
                              f"(sha256 {meta['tokenizer']['sha256'][:12]}...); {advice}, or start a new --name")
    # Runs recorded before tokenizers loaded their EMA weights by default were trained on the raw ones.
    trained, now = saved_tok.get("weights", "model"), meta["tokenizer"]["weights"]
    if trained != now:
        raise CheckpointError(f"{latest_path}: the run being resumed was trained on the {trained} weights of its "
                              f"tokenizer, but the tokenizer file gives its {now} weights; resuming would change the "
                              f"generator's inputs, so resume with the tokenizer it was trained on or start a new "
                              f"--name")
    # The weights file of CLIP may have moved; the encoder's kind and width must not change.
    checks = [("text encoder", (saved_text.get("name"), saved_text.get("dim")),
               (meta["text_encoder"]["name"], meta["text_encoder"]["dim"])),
              ("target", saved.get("target"), meta["target"])]
    for field, found, expected in checks:
        if found != expected:
            raise CheckpointError(f"{latest_path}: {field} is {found!r} in the run being resumed but {expected!r} "
                                  f"now; resume with the same tokenizer and text encoder, or start a new --name")
    # The engine checks the model again when it resumes, but only after the script has written the run's opt.yaml:
    # a model flag changed on resume (--cond_drop_prob, the diffusion head's) is refused here, while that file still
    # holds the flags that resume the run (--config <run>/opt.yaml --is_continue).
    for key in ("stage", "model_name", "model_args"):
        check_matches(latest_path, key, saved.get(key), meta.get(key))
    _warn_validation_changes(latest_path, saved.get("config") or {}, meta.get("config") or {})
    warn_validation_batches(latest_path, saved.get("config") or {}, meta.get("config") or {})


# The --need_evaluation generation settings: net_best_fid.tar is the lowest validation FID, so FIDs taken at other
# settings than the run's earlier ones are not comparable with its best so far.
VALIDATION_GENERATION_KEYS = ("cfg", "cond_scale", "time_steps")


def _warn_validation_changes(latest_path: str, saved: dict[str, Any], current: dict[str, Any]) -> None:
    if not (saved.get("need_evaluation") and current.get("need_evaluation")):
        return
    changed = [(key, saved[key], current[key]) for key in VALIDATION_GENERATION_KEYS
               if saved.get(key) is not None and current.get(key) is not None and saved[key] != current[key]]
    if changed:
        logger.warning("%s: the run validated with %s, now with %s: its later validation FIDs are compared with a "
                       "best FID (net_best_fid.tar) taken at the earlier settings; add %s to keep validating as "
                       "before", latest_path, ", ".join(f"--{k} {was:g}" for k, was, _ in changed),
                       ", ".join(f"--{k} {now:g}" for k, _, now in changed),
                       " ".join(f"--{k} {was:g}" for k, was, _ in changed))
