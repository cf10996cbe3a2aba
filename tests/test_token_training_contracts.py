"""The MoMask token transformers' training contracts: the checks before a generator run continues
(``utils/generator_resume.py``: tokenizer, text encoder, target and model refused naming both sides, validation
changes named), the engine's options (``utils/engine_config.py``: defaults, accepted boundaries, refusals, plain
records, the result summary) and ``train_res_transformer.py``'s embedding flags."""

from __future__ import annotations

import hashlib
import os
from argparse import Namespace

import pytest
import torch
from test_generation import save_tokenizer, write_fake_clip

import train_res_transformer
import train_t2m_transformer
from models.mask_transformer import MASK_TRANSFORMERS
from models.res_transformer import RES_TRANSFORMERS
from options.config import epochs_to_iters, parse_with_config
from options.token_generator_options import (
    get_train_res_transformer_parser,
    get_train_t2m_transformer_parser,
)
from train_res_transformer import embedding_overrides
from utils.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from utils.checkpoint_users import kept_copy_path
from utils.engine_config import EngineConfig, TrainResult
from utils.generator_resume import check_resume_matches, check_resumed_settings
from utils.run_dir import RunDirError
from utils.seed import set_seed

LATEST = "runs/m/model/latest.tar"
TEXT = {"name": "clip", "dim": 16}


def _records(**changes):
    """(meta now, saved records) of a masked-transformer run that resumes cleanly; ``changes`` update ``meta``."""
    tok = {"name": "rvq", "path": "ck/rvq/model/net_best_fid.tar", "sha256": "ab" * 32, "weights": "model"}
    args = {"codebook_size": 32, "text_dim": 16, "train_mask_count": "length"}
    saved = {"stage": "generator", "model_name": "MoMask-Mask-Tiny", "model_args": dict(args), "tokenizer": dict(tok),
             "text_encoder": dict(TEXT), "target": "tokens", "config": {}}
    meta = {"stage": "generator", "model_name": "MoMask-Mask-Tiny", "model_args": dict(args), "tokenizer": dict(tok),
            "text_encoder": {**TEXT, "path": "clip.pt"}, "target": "tokens", "config": {}}
    meta.update(changes)
    return meta, saved


# ---------------------------------------------------------------------------------------------------------------------
# utils/generator_resume.py
# ---------------------------------------------------------------------------------------------------------------------

def test_resume_on_other_tokenizer_weights_names_both_files_and_hashes():
    meta, saved = _records()
    meta["tokenizer"] = {**meta["tokenizer"], "path": "ck/rvq2/model/latest.tar", "sha256": "cd" * 32}
    with pytest.raises(CheckpointError) as info:
        check_resume_matches(LATEST, meta, saved)
    message = str(info.value)
    assert message.startswith(f"{LATEST}: the run being resumed was trained on tokenizer ck/rvq/model/net_best_fid.tar "
                              f"(sha256 {'ab' * 6}...), now ck/rvq2/model/latest.tar (sha256 {'cd' * 6}...)")
    assert "resume with the same tokenizer file" in message and message.endswith("or start a new --name")


def test_resume_on_other_tokenizer_weights_points_at_the_kept_copy_of_the_trained_version(tmp_path):
    """When the tokenizer file was trained further, the version the run was trained on was kept beside it."""
    tok_file = tmp_path / "rvq" / "model" / "net_best_fid.tar"
    tok_file.parent.mkdir(parents=True)
    tok_file.write_bytes(b"new weights")
    kept_bytes = b"old weights"
    sha = hashlib.sha256(kept_bytes).hexdigest()
    kept = kept_copy_path(str(tok_file), sha)
    with open(kept, "wb") as f:
        f.write(kept_bytes)
    meta, saved = _records()
    saved["tokenizer"] = {**saved["tokenizer"], "path": str(tok_file), "sha256": sha}
    now_sha = hashlib.sha256(tok_file.read_bytes()).hexdigest()
    meta["tokenizer"] = {**meta["tokenizer"], "path": str(tok_file), "sha256": now_sha}
    with pytest.raises(CheckpointError, match=rf"resume with that version, kept as {kept} \(--ae_ckpt / --vq_ckpt "
                                              rf"{kept}\), or start a new --name"):
        check_resume_matches(LATEST, meta, saved)


@pytest.mark.parametrize("field, saved_value, now_value, shown", [
    ("text_encoder", {"name": "clip", "dim": 16}, {"name": "clip", "dim": 32, "path": "clip.pt"},
     r"text encoder is \('clip', 16\) in the run being resumed but \('clip', 32\) now"),
    ("text_encoder", {"name": "clip", "dim": 16}, {"name": "minilm", "dim": 16, "path": None},
     r"text encoder is \('clip', 16\) in the run being resumed but \('minilm', 16\) now"),
    ("target", "tokens", "latents", r"target is 'tokens' in the run being resumed but 'latents' now"),
])
def test_resume_with_another_text_encoder_or_target_is_refused_naming_both(field, saved_value, now_value, shown):
    meta, saved = _records(**{field: now_value})
    saved[field] = saved_value
    with pytest.raises(CheckpointError, match=rf"^{LATEST}: {shown}; resume with the same tokenizer"):
        check_resume_matches(LATEST, meta, saved)


def test_the_clip_file_may_move_between_runs():
    meta, saved = _records(text_encoder={**TEXT, "path": "elsewhere/ViT-B-32.pt"})
    saved["text_encoder"] = {**TEXT, "path": "deps/ViT-B-32.pt"}
    check_resume_matches(LATEST, meta, saved)


@pytest.mark.parametrize("key, value, shown", [
    ("stage", "tokenizer", "stage is 'generator' in the checkpoint but 'tokenizer' was requested"),
    ("model_name", "MoMask-Mask", "model_name is 'MoMask-Mask-Tiny' in the checkpoint but 'MoMask-Mask' was requested"),
    ("model_args", {"codebook_size": 64, "text_dim": 16, "train_mask_count": "length"},
     "model_args differ in 1 entry: 'codebook_size': 32 in the checkpoint but 64 requested"),
])
def test_resume_with_another_model_is_refused_naming_both(key, value, shown):
    meta, saved = _records(**{key: value})
    with pytest.raises(CheckpointError, match=f"^{LATEST}: {shown}$"):
        check_resume_matches(LATEST, meta, saved)


def test_a_new_run_is_not_checked():
    meta, _ = _records(model_args={"anything": 1})
    check_resume_matches(LATEST, meta, None)
    check_resumed_settings(LATEST, None, {"cache_tokens": True})
    assert meta["model_args"] == {"anything": 1}


def test_resume_switching_cached_codes_names_both_values():
    with pytest.raises(CheckpointError, match=f"^{LATEST}: the run being resumed was trained with --cache_tokens "
                                              "True but False now"):
        check_resumed_settings(LATEST, {"config": {"cache_tokens": True}}, {"cache_tokens": False})
    check_resumed_settings(LATEST, {"config": {"cache_tokens": True}}, {"cache_tokens": True})


def test_resume_names_changed_validation_guidance_and_steps(caplog):
    """A MoMask run validated at --cond_scale 4 and 18 steps, resumed at 2 and 10: the log names old and new values
    and the flags that keep validating as before; nothing is said when either side does not evaluate."""
    old = {"need_evaluation": True, "cond_scale": 4.0, "time_steps": 18}
    meta, saved = _records(config={**old, "cond_scale": 2.0, "time_steps": 10})
    saved["config"] = old
    with caplog.at_level("WARNING", logger="utils.generator_resume"):
        check_resume_matches(LATEST, meta, saved)
        for config in ({**old, "cond_scale": 2.0, "need_evaluation": False}, old):
            check_resume_matches(LATEST, {**meta, "config": config}, saved)
        check_resume_matches(LATEST, {**meta, "config": {**old, "cond_scale": 2.0}},
                             {**saved, "config": {**old, "need_evaluation": False}})
    assert [r.getMessage() for r in caplog.records] == [
        f"{LATEST}: the run validated with --cond_scale 4, --time_steps 18, now with --cond_scale 2, --time_steps 10: "
        f"its later validation FIDs are compared with a best FID (net_best_fid.tar) taken at the earlier settings; "
        f"add --cond_scale 4 --time_steps 18 to keep validating as before"]


# ---------------------------------------------------------------------------------------------------------------------
# train_res_transformer.py: embedding flags
# ---------------------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("code_embedding, share_weight, expected", [
    (None, None, {}),  # the registry entry decides
    (None, False, {"share_weight": False}),
    (None, True, {"share_weight": True}),
    ("learned", None, {"code_embedding": "learned"}),
    ("learned", False, {"code_embedding": "learned", "share_weight": False}),
    ("codebook", None, {"code_embedding": "codebook", "share_weight": False}),
    ("codebook", False, {"code_embedding": "codebook", "share_weight": False}),
])
def test_embedding_flags_become_constructor_keywords(code_embedding, share_weight, expected):
    args = Namespace(code_embedding=code_embedding, share_weight=share_weight)
    assert embedding_overrides(args) == expected


def test_tied_weights_with_frozen_codebooks_are_refused_naming_both_flags():
    with pytest.raises(SystemExit, match=r"--share_weight .* --code_embedding codebook"):
        embedding_overrides(Namespace(code_embedding="codebook", share_weight=True))


# ---------------------------------------------------------------------------------------------------------------------
# utils/engine_config.py
# ---------------------------------------------------------------------------------------------------------------------

def test_engine_defaults_are_the_momask_recipe():
    cfg = EngineConfig(max_iters=1)
    assert cfg.betas == (0.9, 0.99) and cfg.min_free_bytes == 256 * 2**20
    assert (cfg.mixed_precision, cfg.best_metric, cfg.best_mode, cfg.ema_decay) == ("no", "fid", "min", None)


def test_engine_accepts_the_boundary_values_that_turn_a_feature_off():
    cfg = EngineConfig(max_iters=1, num_workers=0, warm_up_iter=0, lr_decay=0.0, grad_clip=0.0, ema_decay=0.0,
                       eval_every=0, save_every=0, seed=0, mixed_precision="fp16", best_mode="max")
    assert (cfg.warm_up_iter, cfg.lr_decay, cfg.seed, cfg.num_workers, cfg.mixed_precision) == (0, 0.0, 0, 0, "fp16")


@pytest.mark.parametrize("field, value, message", [
    ("ema_decay", 1.0, r"ema_decay must be in \[0, 1\) or None"),
    ("eval_every", -1, "eval_every and save_every must be >= 0"),
    ("save_every", -1, "eval_every and save_every must be >= 0"),
    ("best_mode", "", "best_mode must be 'min' or 'max'"),
    ("mixed_precision", "fp8", "mixed_precision must be 'no', 'bf16' or 'fp16'"),
])
def test_engine_refuses_values_out_of_range_naming_the_field(field, value, message):
    with pytest.raises(ValueError, match=f"^EngineConfig: {message}; got EngineConfig"):
        EngineConfig(max_iters=1, **{field: value})


def test_engine_options_from_yaml_strings_are_cast_and_recorded_as_plain_lists():
    cfg = EngineConfig(max_iters=1, milestones=["10", 20.0], betas=["0.8", 0.95])
    assert cfg.milestones == (10, 20) and cfg.betas == (0.8, 0.95)
    record = cfg.to_dict()
    assert record["milestones"] == [10, 20] and record["betas"] == [0.8, 0.95]
    assert EngineConfig(**record).to_dict() == record


def test_engine_options_from_a_namespace_take_the_overrides_last():
    ns = Namespace(max_iters=7, lr=1e-3, best_metric="fid", mixed_precision=None)
    cfg = EngineConfig.from_namespace(ns, max_iters=12, best_metric="acc", best_mode="max")
    assert (cfg.max_iters, cfg.lr, cfg.best_metric, cfg.best_mode, cfg.mixed_precision) == (12, 1e-3, "acc", "max",
                                                                                             "no")


def _result(step, metrics, metrics_step):
    return TrainResult(step=step, epoch=0, logs={}, metrics=metrics, best_value=None, best_step=None,
                       latest_path="latest.tar", best_path=None, train_log_path="train_log.jsonl",
                       metrics_step=metrics_step)


def test_the_summary_rounds_metrics_and_names_the_step_they_were_taken_at():
    assert _result(5, {"acc": 0.1234567}, 5).summary() == "step 5: {'acc': 0.12346}"
    assert _result(5, {"acc": 0.5}, 0).summary() == "step 5; last validation, at step 0: {'acc': 0.5}"
    assert _result(5, {"acc": 0.5}, None).summary() == "step 5; last validation, at an earlier step: {'acc': 0.5}"
    assert _result(5, {}, None).summary() == "step 5 (no validation ran)"


# ---------------------------------------------------------------------------------------------------------------------
# train_t2m_transformer.py / train_res_transformer.py: a few steps on an untrained tiny RVQ
# ---------------------------------------------------------------------------------------------------------------------

SCRIPTS = {"mask": (train_t2m_transformer, get_train_t2m_transformer_parser, "MoMask-Mask-Tiny"),
           "res": (train_res_transformer, get_train_res_transformer_parser, "MoMask-Res-Tiny")}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory, synthetic_root):
    """The session's synthetic dataset, an untrained tiny RVQ run ``rvq`` and a tiny CLIP."""
    base = tmp_path_factory.mktemp("momask_tiny")
    save_tokenizer(str(base / "ck"), synthetic_root, "rvq", "RVQVAE_Tiny")
    return {"root": synthetic_root, "ck": str(base / "ck"), "clip": write_fake_clip(str(base / "clip"))}


def _args(tiny, role, ckpt, *extra):
    _, parser, model = SCRIPTS[role]
    return parse_with_config(parser(), [
        "--dataset_name", "synthetic", "--data_root", tiny["root"], "--checkpoints_dir", str(ckpt), "--name", "run",
        "--model", model, "--vq_name", "rvq", "--text_encoder", "clip", "--clip_path", tiny["clip"],
        "--batch_size", "4", "--num_workers", "0", "--max_iters", "2", "--warm_up_iter", "1", "--milestones", "100",
        "--log_every", "1", "--eval_every", "2", "--save_every", "2", "--val_batches", "1", *extra])


def _train(tiny, role, ckpt, *extra):
    return SCRIPTS[role][0].main(_args(tiny, role, ckpt, *extra))


def _ckpt(tiny, tmp_path):
    """A checkpoints folder holding the ``rvq`` tokenizer run."""
    ckpt = tmp_path / "ck"
    os.makedirs(ckpt / "synthetic", exist_ok=True)
    os.symlink(os.path.join(tiny["ck"], "synthetic", "rvq"), ckpt / "synthetic" / "rvq")
    return ckpt


@pytest.mark.parametrize("role", ["mask", "res"])
def test_a_second_start_of_a_run_is_refused_and_leaves_its_options(tiny, tmp_path, role):
    ckpt = _ckpt(tiny, tmp_path)
    _train(tiny, role, ckpt)
    run = ckpt / "synthetic" / "run"
    options = (run / "opt.yaml").read_text()
    with pytest.raises(RunDirError, match=r"latest.tar exists: pass --is_continue to resume that run"):
        _train(tiny, role, ckpt, "--lr", "5e-3")
    assert (run / "opt.yaml").read_text() == options
    with pytest.raises(CheckpointError, match=r"--is_continue: no checkpoint to resume at .*misspelt"):
        SCRIPTS[role][0].main(_args(tiny, role, ckpt, "--is_continue", "--name", "misspelt"))
    assert not os.path.exists(ckpt / "synthetic" / "misspelt")


@pytest.mark.parametrize("role", ["mask", "res"])
def test_a_run_recorded_before_tokenizer_ema_resumes_on_the_raw_weights(tiny, tmp_path, role):
    """A new run takes the tokenizer file's EMA weights; a run whose checkpoint predates that record was trained on
    the raw ones and keeps them when it resumes (it is not refused as trained on other weights)."""
    ckpt = tmp_path / "ck"
    tok_path = save_tokenizer(str(ckpt), tiny["root"], "rvq", "RVQVAE_Tiny")
    state = load_checkpoint(tok_path)
    save_checkpoint(tok_path, {**state, "ema": {k: v + 0.01 if v.is_floating_point() else v
                                                for k, v in state["model"].items()}})
    _train(tiny, role, ckpt)
    latest = ckpt / "synthetic" / "run" / "model" / "latest.tar"
    run_state = load_checkpoint(str(latest))
    assert run_state["tokenizer"]["weights"] == "ema"
    del run_state["tokenizer"]["weights"]
    save_checkpoint(str(latest), run_state)
    _train(tiny, role, ckpt, "--is_continue", "--max_iters", "3")
    resumed = load_checkpoint(str(latest))
    assert resumed["step"] == 3 and resumed["tokenizer"]["weights"] == "model"


def _stub_engine(monkeypatch, script):
    """Replace the script's engine by one that records what it is given (the model as built, before any step)."""
    seen = {}

    def train(model, train_set, loss_fn, cfg, run, **kw):
        seen.update(model=model, train_set=train_set, cfg=cfg, **kw)
        return _result(0, {}, None)

    monkeypatch.setattr(script, "train", train)
    return seen


@pytest.mark.parametrize("role, best", [("mask", ("acc", "max")), ("res", ("loss", "min"))])
def test_the_engine_gets_the_recipe_s_best_criterion_and_epochs_over_the_train_split(tiny, tmp_path, monkeypatch,
                                                                                      role, best):
    """MoMask keeps the best validation token accuracy (masked) or loss (residual); ``--epoch`` counts steps over
    the training split at ``--batch_size``."""
    script = SCRIPTS[role][0]
    seen = _stub_engine(monkeypatch, script)
    args = _args(tiny, role, _ckpt(tiny, tmp_path), "--epoch", "3")
    args.max_iters = None
    script.main(args)
    cfg = seen["cfg"]
    assert (cfg.best_metric, cfg.best_mode) == best
    assert cfg.max_iters == epochs_to_iters(3, len(seen["train_set"]), 4) >= epochs_to_iters(3, 8, 4)


@pytest.mark.parametrize("role", ["mask", "res"])
def test_the_generator_s_initial_weights_are_drawn_from_the_seed(tiny, tmp_path, monkeypatch, role):
    script, _, model_name = SCRIPTS[role]
    seen = _stub_engine(monkeypatch, script)
    script.main(_args(tiny, role, _ckpt(tiny, tmp_path), "--seed", "7"))
    model = seen["model"]
    registry = MASK_TRANSFORMERS if role == "mask" else RES_TRANSFORMERS
    set_seed(7)
    again = registry[model_name](**model.model_args)
    for key, value in again.state_dict().items():
        assert torch.equal(value, model.state_dict()[key]), key


def test_the_masked_transformer_trains_on_a_single_layer_vq_that_the_residual_one_refuses(tiny, tmp_path,
                                                                                        monkeypatch):
    ckpt = tmp_path / "ck"
    save_tokenizer(str(ckpt), tiny["root"], "vq", "VQVAE_Tiny")
    seen = _stub_engine(monkeypatch, train_t2m_transformer)
    train_t2m_transformer.main(_args(tiny, "mask", ckpt, "--vq_name", "vq"))
    assert seen["model"].model_args["codebook_size"] == 32
    assert seen["checkpoint_meta"]["tokenizer"]["model_name"] == "VQVAE_Tiny"
    with pytest.raises(ValueError, match=r"tokenizer run 'vq' .* with 1 quantizer layer \(Q == 1\)"):
        train_res_transformer.main(_args(tiny, "res", ckpt, "--vq_name", "vq", "--name", "res"))
