"""The training scripts' own flag handling and stage wiring: which tokenizer entry ``train_vq.py`` builds and with
which keywords, ``train_AE.py``'s architecture keywords, ``train_MARDM.py``'s head flags, the guidance and collate
function the token transformers validate with, and ``train_length_estimator.py``'s resume checks and loss; what each
generator script hands its engine and validation, and ``train_evaluator.py``'s two stages."""

from __future__ import annotations

import logging
import types

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from test_length_estimator_contracts import HashedTextEncoder
from test_token_training_contracts import _args, _ckpt, _stub_engine, tiny  # noqa: F401 (tiny is a fixture)
from test_train_evaluator import data_root  # noqa: F401 (a fixture)
from test_train_evaluator import parse as _evaluator_args
from test_train_mardm import _args as _mardm_run_args
from test_train_mardm import setup as mardm_setup  # noqa: F401 (a fixture)

import evaluation_MARDM
import train_AE
import train_evaluator
import train_length_estimator
import train_MARDM
import train_res_transformer
import train_t2m_transformer
import train_vq
from models.length_estimator import LengthEstimator
from options.config import parse_with_config
from options.eval_generator_options import get_evaluation_generator_parser
from options.generator_options import get_train_length_estimator_parser, get_train_mardm_parser
from options.tokenizer_options import get_train_ae_parser, get_train_vq_parser
from utils.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from utils.generation_momask import MoMaskBackend
from utils.run_dir import RunDir, RunDirError
from utils.token_stage import collate_text_tokens


def _capture_tokenizer_training(monkeypatch, script):
    """Replace the script's ``train_tokenizer`` by one that records (model name, overrides)."""
    seen = {}

    def fake(args, model_name, overrides):
        seen.update(model_name=model_name, overrides=dict(overrides))

    monkeypatch.setattr(script, "train_tokenizer", fake)
    return seen


def _vq(monkeypatch, *argv):
    seen = _capture_tokenizer_training(monkeypatch, train_vq)
    train_vq.main(parse_with_config(get_train_vq_parser(), ["--name", "x", *argv]))
    return seen


# ---------------------------------------------------------------------------------------------------------------------
# train_vq.py / train_AE.py
# ---------------------------------------------------------------------------------------------------------------------

def test_one_quantizer_without_a_model_trains_the_vq_vae_without_a_layer_count(monkeypatch):
    """``--num_quantizers 1`` alone picks T2M-GPT's VQVAE, which is not given a num_quantizers keyword."""
    seen = _vq(monkeypatch, "--num_quantizers", "1")
    assert seen["model_name"] == "VQVAE"
    assert "num_quantizers" not in seen["overrides"]


@pytest.mark.parametrize("argv, overrides", [([], {}), (["--num_quantizers", "3"], {"num_quantizers": 3})])
def test_other_layer_counts_train_the_residual_vq_vae(monkeypatch, argv, overrides):
    """Without ``--model`` any layer count but one (or none given) is MoMask's RVQVAE, with the count passed on."""
    seen = _vq(monkeypatch, *argv)
    assert seen == {"model_name": "RVQVAE", "overrides": overrides}


def test_the_vq_vae_takes_its_codebook_update_rule(monkeypatch):
    """``--quantizer`` reaches a one-codebook VQVAE entry as ``quantizer_type``; a layer count of one is dropped."""
    seen = _vq(monkeypatch, "--model", "VQVAE_Tiny", "--quantizer", "ema", "--num_quantizers", "1")
    assert seen == {"model_name": "VQVAE_Tiny", "overrides": {"quantizer_type": "ema"}}


@pytest.mark.parametrize("layers", ["2", "3"])
def test_the_vq_vae_refuses_any_layer_count_but_one(monkeypatch, layers):
    """A one-codebook entry given two or more layers fails pointing at the residual entry, before training."""
    seen = _capture_tokenizer_training(monkeypatch, train_vq)
    args = parse_with_config(get_train_vq_parser(), ["--name", "x", "--model", "VQVAE_Tiny",
                                                     "--num_quantizers", layers])
    with pytest.raises(SystemExit, match=r"^--model VQVAE_Tiny has one codebook; drop --num_quantizers or use --model "
                                         r"RVQVAE$"):
        train_vq.main(args)
    assert seen == {}


def test_the_vq_vae_refuses_every_residual_layer_flag_by_name(monkeypatch):
    """Both residual-layer flags on a one-codebook entry are named in one refusal."""
    seen = _capture_tokenizer_training(monkeypatch, train_vq)
    args = parse_with_config(get_train_vq_parser(), ["--name", "x", "--model", "VQVAE_Tiny",
                                                     "--quantize_dropout_prob", "0.2", "--shared_codebook"])
    with pytest.raises(SystemExit, match=r"^--quantize_dropout_prob and --shared_codebook: residual-layer settings, "
                                         r"but --model VQVAE_Tiny has one codebook"):
        train_vq.main(args)
    assert seen == {}


def test_the_residual_vq_vae_takes_its_residual_layer_flags(monkeypatch):
    """An RVQ entry receives the layer count, dropout and sharing flags unchanged."""
    seen = _vq(monkeypatch, "--model", "RVQVAE_Tiny", "--num_quantizers", "4", "--quantize_dropout_prob", "0.2",
               "--shared_codebook")
    assert seen == {"model_name": "RVQVAE_Tiny",
                    "overrides": {"num_quantizers": 4, "quantize_dropout_prob": 0.2, "shared_codebook": True}}


def test_train_ae_passes_the_architecture_flags_it_was_given(monkeypatch):
    """``train_AE.py`` trains ``--model`` with the typed architecture flags as constructor keywords."""
    seen = _capture_tokenizer_training(monkeypatch, train_AE)
    train_AE.main(parse_with_config(get_train_ae_parser(), ["--name", "x", "--model", "FSQ_AE_Tiny", "--width", "24",
                                                            "--depth", "2"]))
    assert seen == {"model_name": "FSQ_AE_Tiny", "overrides": {"width": 24, "depth": 2}}


# ---------------------------------------------------------------------------------------------------------------------
# train_MARDM.py: head flags
# ---------------------------------------------------------------------------------------------------------------------

def _mardm_args(*argv):
    return parse_with_config(get_train_mardm_parser(), ["--name", "x", *argv])


def test_every_set_generator_flag_is_an_override_and_unset_ones_are_not():
    """Each of the five model flags that is given reaches the registry entry; the others keep the entry's values."""
    assert train_MARDM.model_overrides(_mardm_args("--model", "FSQ-MARDM-SiT-Tiny")) == {}
    args = _mardm_args("--model", "FSQ-MARDM-SiT-Tiny", "--diffmlps_batch_mul", "3", "--cond_drop_prob", "0.2",
                       "--flow_solver", "euler", "--flow_steps", "6", "--train_mask_count", "padded")
    assert train_MARDM.model_overrides(args) == {"diffmlps_batch_mul": 3, "cond_drop_prob": 0.2,
                                                 "flow_solver": "euler", "flow_steps": 6,
                                                 "train_mask_count": "padded"}


def test_a_typed_solver_flag_on_a_ddpm_head_is_refused_naming_flag_and_value():
    """``--flow_solver`` typed for a DDPM head fails naming the flag, its value and the head."""
    with pytest.raises(ValueError, match=r"^--flow_solver euler: FSQ-MARDM-DDPM-Tiny has a DDPM head"):
        train_MARDM.model_overrides(_mardm_args("--model", "FSQ-MARDM-DDPM-Tiny", "--flow_solver", "euler"))


def test_a_preset_solver_flag_on_a_ddpm_head_is_passed_on_and_logged(tmp_path, caplog):
    """A solver setting from the ``--config`` preset is kept as an override and only logged; typed again, refused."""
    preset = tmp_path / "p.yaml"
    preset.write_text("model: FSQ-MARDM-DDPM-Tiny\nflow_solver: heun\n")
    with caplog.at_level(logging.INFO, logger="train_MARDM"):
        overrides = train_MARDM.model_overrides(_mardm_args("--config", str(preset)))
    assert overrides == {"flow_solver": "heun"}
    assert "does not apply to FSQ-MARDM-DDPM-Tiny" in caplog.text
    with pytest.raises(ValueError, match=r"^--flow_solver heun: "):
        train_MARDM.model_overrides(_mardm_args("--config", str(preset), "--flow_solver", "heun"))


def test_an_evaluating_mardm_run_keeps_the_lowest_fid_generated_at_the_typed_guidance(mardm_setup, monkeypatch):  # noqa: F811
    """``--need_evaluation`` adds the loaded evaluator's generation scores, generated at ``--time_steps`` and ``--cfg``,
    to the val split's loss at ``--seed`` (which also seeds the model); both splits count whole tokens of the
    tokenizer, and the lowest FID is kept."""
    seen = _record_validation(monkeypatch, train_MARDM, "make_val_loss_fn", "make_generation_eval_fn")
    monkeypatch.setattr(train_MARDM, "set_seed", lambda seed: seen.update(seed=seed))
    train_MARDM.main(_mardm_run_args(mardm_setup, "evaluating", "--model", "FSQ-MARDM-SiT-Tiny", "--ae_name", "fsq",
                                     "--max_iters", "1", "--need_evaluation", "--cfg", "3.5", "--time_steps", "7",
                                     "--seed", "11"), text_encoder=HashedTextEncoder())
    args = seen["generation_args"]
    assert args[2] is seen["evaluator"] and args[3] is seen["eval_loader"]
    assert args[6:] == (7, 3.5) and seen["generation_kw"] == {"seed": 11} and seen["val_kw"] == {"seed": 11}
    assert seen["seed"] == 11
    assert (seen["train_set"].split, seen["val_set"].split) == ("train", "val")
    assert seen["train_set"].unit_length == seen["val_set"].unit_length == 4
    assert seen["loss_fn"].padded_tokens == 49 and type(seen["loss_fn"].padded_tokens) is int
    assert (seen["cfg"].best_metric, seen["cfg"].best_mode) == ("fid", "min")
    assert seen["val_fn"](None) == {"loss": 1.0, "fid": 2.0}


def test_a_typed_tokenizer_file_replaces_the_preset_s_tokenizer_run(mardm_setup, tmp_path, monkeypatch):  # noqa: F811
    """A typed ``--ae_ckpt`` clears the ``--config`` preset's ``ae_name`` (recorded as unset) and is trained on."""
    seen = _stub_engine(monkeypatch, train_MARDM)
    preset = tmp_path / "p.yaml"
    preset.write_text("ae_name: other\n")
    ckpt = f"{mardm_setup['ckpt']}/synthetic/fsq/model/latest.tar"
    args = _mardm_run_args(mardm_setup, "typed_file", "--config", str(preset), "--model", "FSQ-MARDM-SiT-Tiny",
                           "--ae_ckpt", ckpt, "--max_iters", "1")
    train_MARDM.main(args, text_encoder=HashedTextEncoder())
    assert args.ae_name is None and seen["checkpoint_meta"]["config"]["ae_name"] is None
    assert seen["checkpoint_meta"]["tokenizer"]["path"] == ckpt


def test_a_new_mardm_run_trains_on_the_tokenizer_s_ema_weights(mardm_setup, monkeypatch):  # noqa: F811
    """A new run on a tokenizer file holding EMA weights loads those, and records that it did."""
    seen = _stub_engine(monkeypatch, train_MARDM)
    state = load_checkpoint(f"{mardm_setup['ckpt']}/synthetic/fsq/model/latest.tar")
    save_checkpoint(f"{mardm_setup['ckpt']}/synthetic/fsq_ema/model/latest.tar",
                    {**state, "ema": {k: v + 0.01 if v.is_floating_point() else v for k, v in state["model"].items()}})
    train_MARDM.main(_mardm_run_args(mardm_setup, "on_ema", "--model", "FSQ-MARDM-SiT-Tiny", "--ae_name", "fsq_ema",
                                     "--max_iters", "1"), text_encoder=HashedTextEncoder())
    assert seen["checkpoint_meta"]["tokenizer"]["weights"] == "ema"


def test_a_mardm_run_writes_the_caption_cache_to_text_cache(mardm_setup, tmp_path, monkeypatch):  # noqa: F811
    """``--text_cache`` receives the embeddings of the captions of both splits."""
    _stub_engine(monkeypatch, train_MARDM)
    cache = tmp_path / "captions.npz"
    train_MARDM.main(_mardm_run_args(mardm_setup, "cached", "--model", "FSQ-MARDM-SiT-Tiny", "--ae_name", "fsq",
                                     "--max_iters", "1", "--text_cache", str(cache)), text_encoder=HashedTextEncoder())
    with np.load(cache, allow_pickle=False) as saved:
        assert saved["embeddings"].shape == (len(saved["captions"]), 16) and len(saved["captions"]) > 64


# ---------------------------------------------------------------------------------------------------------------------
# train_t2m_transformer.py / train_res_transformer.py: validation guidance, cached codes
# ---------------------------------------------------------------------------------------------------------------------

def test_the_masked_transformer_validates_at_the_dataset_s_published_guidance(tiny, tmp_path, monkeypatch):  # noqa: F811
    """Without ``--cond_scale`` the masked transformer takes MoMask's guidance of the dataset; a typed one is kept."""
    monkeypatch.setitem(MoMaskBackend.dataset_cfg, "synthetic", 3.25)
    _stub_engine(monkeypatch, train_t2m_transformer)
    args = _args(tiny, "mask", _ckpt(tiny, tmp_path))
    train_t2m_transformer.main(args)
    assert args.cond_scale == 3.25
    args = _args(tiny, "mask", _ckpt(tiny, tmp_path / "typed"), "--cond_scale", "1.5")
    train_t2m_transformer.main(args)
    assert args.cond_scale == 1.5


def test_the_residual_transformer_validates_at_momask_s_training_guidance(tiny, tmp_path, monkeypatch):  # noqa: F811
    """Without ``--cond_scale`` the residual transformer validates at guidance 2 (MoMask's trainer), not 5."""
    _stub_engine(monkeypatch, train_res_transformer)
    args = _args(tiny, "res", _ckpt(tiny, tmp_path))
    train_res_transformer.main(args)
    assert args.cond_scale == 2.0


@pytest.mark.parametrize("role, script", [("mask", train_t2m_transformer), ("res", train_res_transformer)])
def test_cached_codes_are_batched_with_the_token_collate(tiny, tmp_path, monkeypatch, role, script):  # noqa: F811
    """``--cache_tokens`` trains on the cached code datasets, batched by ``collate_text_tokens``."""
    seen = _stub_engine(monkeypatch, script)
    script.main(_args(tiny, role, _ckpt(tiny, tmp_path), "--cache_tokens"))
    assert seen["collate_fn"] is collate_text_tokens
    assert (tmp_path / "ck" / "synthetic" / "run" / "tokens").is_dir()


def test_frozen_codebook_embeddings_reach_the_residual_transformer(tiny, tmp_path, monkeypatch):  # noqa: F811
    """``--code_embedding codebook`` builds the residual transformer on the tokenizer's RVQ codebooks, untied."""
    seen = _stub_engine(monkeypatch, train_res_transformer)
    train_res_transformer.main(_args(tiny, "res", _ckpt(tiny, tmp_path), "--code_embedding", "codebook"))
    model_args = seen["model"].model_args
    assert model_args["code_embedding"] == "codebook" and model_args["share_weight"] is False


def _record_validation(monkeypatch, script, val_fn="make_token_val_fn", generation_fn="make_token_generation_eval_fn"):
    """Stub the script's engine and replace its validation builders by recorders returning fixed metrics."""
    seen = _stub_engine(monkeypatch, script)
    seen.update(evaluator=object(), eval_loader=object())

    def val_loss(loss_fn, val_set, batch_size, batches, **kw):
        seen.update(loss_fn=loss_fn, val_set=val_set, val_kw=kw)
        return lambda net: {"loss": 1.0}

    def generation(*a, **kw):
        seen.update(generation_args=a, generation_kw=kw)
        return lambda net: {"fid": 2.0}

    monkeypatch.setattr(script, val_fn, val_loss)
    monkeypatch.setattr(script, generation_fn, generation)
    monkeypatch.setattr(script, "load_validation_evaluator", lambda *a: (seen["evaluator"], seen["eval_loader"]))
    return seen


@pytest.mark.parametrize("role, script, argv, guidance", [
    ("mask", train_t2m_transformer, ["--time_steps", "7"], (3.5, 7)),
    ("res", train_res_transformer, [], (3.5,)),
])
def test_an_evaluating_run_keeps_the_lowest_fid_generated_at_the_typed_guidance(tiny, tmp_path, monkeypatch,  # noqa: F811
                                                                                role, script, argv, guidance):
    """``--need_evaluation`` adds the generation scores of the loaded evaluator, generated at the typed
    ``--cond_scale`` (and the masked transformer's ``--time_steps``), to the validation; the lowest FID is kept."""
    seen = _record_validation(monkeypatch, script)
    script.main(_args(tiny, role, _ckpt(tiny, tmp_path), "--need_evaluation", "--cond_scale", "3.5", "--seed", "11",
                      *argv))
    args = seen["generation_args"]
    assert args[2] is seen["evaluator"] and args[3] is seen["eval_loader"]
    assert args[6] == role and args[7:] == guidance and seen["generation_kw"] == {"seed": 11}
    assert (seen["cfg"].best_metric, seen["cfg"].best_mode) == ("fid", "min")
    assert seen["val_fn"](None) == {"loss": 1.0, "fid": 2.0}


@pytest.mark.parametrize("role, script, padded", [("mask", train_t2m_transformer, 49), ("res", train_res_transformer,
                                                                                         None)])
def test_cached_codes_are_validated_with_the_token_collate_and_the_padded_length(tiny, tmp_path, monkeypatch,  # noqa: F811
                                                                                 role, script, padded):
    """The validation loss batches cached codes with ``collate_text_tokens``; the masked transformer's loss pads
    to the dataset's length in whole tokens (196 // 4), the residual one's does not; ``--n_layers`` sizes the model."""
    seen = _record_validation(monkeypatch, script)
    script.main(_args(tiny, role, _ckpt(tiny, tmp_path), "--cache_tokens", "--n_layers", "1"))
    assert seen["model"].model_args["num_layers"] == 1
    assert seen["val_kw"]["collate_fn"] is collate_text_tokens
    assert seen["loss_fn"].padded_tokens == padded and type(seen["loss_fn"].padded_tokens) is type(padded)


@pytest.mark.parametrize("role, script", [("mask", train_t2m_transformer), ("res", train_res_transformer)])
@pytest.mark.parametrize("record, message", [
    ({"config": {"cache_tokens": True}}, r"trained with --cache_tokens True but False now"),
    ({"config": {}, "tokenizer": {"path": "old.tar", "sha256": "0" * 64}}, r"trained on tokenizer old.tar"),
])
def test_a_resume_on_other_codes_or_tokenizer_weights_is_refused_before_training(tiny, tmp_path,  # noqa: F811
                                                                                 monkeypatch, role, script, record,
                                                                                 message):
    """A run trained on cached codes resumed without ``--cache_tokens``, or on another tokenizer file, fails naming
    what it was trained with, before the engine runs."""
    seen = _stub_engine(monkeypatch, script)
    ckpt = _ckpt(tiny, tmp_path)
    save_checkpoint(str(ckpt / "synthetic" / "run" / "model" / "latest.tar"), record)
    with pytest.raises(CheckpointError, match=message):
        script.main(_args(tiny, role, ckpt, "--is_continue"))
    assert seen == {}


# ---------------------------------------------------------------------------------------------------------------------
# train_length_estimator.py
# ---------------------------------------------------------------------------------------------------------------------

def _length_run(tmp_path, **record):
    path = str(tmp_path / "latest.tar")
    save_checkpoint(path, {"stage": "length_estimator", **record})
    return path


def test_resuming_a_length_estimator_on_its_own_unit_and_encoder_is_accepted(tmp_path):
    """The recorded unit length and encoder name, given again, pass; a run without the records is not checked."""
    path = _length_run(tmp_path, unit_length=4, text_encoder={"name": "minilm", "dim": 384})
    train_length_estimator.check_resumed_inputs(path, 4, "minilm")
    train_length_estimator.check_resumed_inputs(_length_run(tmp_path / "old"), 5, "clip")


@pytest.mark.parametrize("unit_length, encoder_name, message", [
    (5, "minilm", r"--unit_length is 4 in the run being resumed but 5 now; resume with --unit_length 4"),
    (4, "clip", r"--text_encoder is 'minilm' in the run being resumed but 'clip' now; resume with --text_encoder "
                r"minilm"),
])
def test_resuming_a_length_estimator_on_another_unit_or_encoder_is_refused(tmp_path, unit_length, encoder_name,
                                                                           message):
    """A resume with another class width or text encoder fails naming the flag and both values."""
    path = _length_run(tmp_path, unit_length=4, text_encoder={"name": "minilm", "dim": 384})
    with pytest.raises(CheckpointError, match=message):
        train_length_estimator.check_resumed_inputs(path, unit_length, encoder_name)


def test_the_length_loss_is_the_cross_entropy_and_logs_the_batch_accuracy():
    """The training loss is the plain cross-entropy of the classes; the accuracy is the argmax hit rate."""
    model = torch.nn.Identity()
    logits = torch.tensor([[2.0, 0.0, 0.0], [0.0, 1.0, 3.0], [0.5, 0.2, 0.1], [0.0, 4.0, 0.0]])
    classes = torch.tensor([0, 1, 0, 1])
    loss, logs = train_length_estimator.classification_loss(model, [logits, classes])
    assert torch.allclose(loss, F.cross_entropy(logits, classes))
    assert float(logs["accuracy"]) == pytest.approx(0.75)
    assert not logs["accuracy"].requires_grad


def test_the_estimator_is_built_from_its_flags_at_the_seed_and_keeps_the_lowest_loss(tmp_path, synthetic_root,
                                                                                     monkeypatch):
    """``--hidden_dim``, ``--dropout`` and ``--unit_length 1`` (197 classes) shape the estimator, drawn at ``--seed``;
    the checkpoint names the model and unit; validation scores the val split's loss and accuracy, keeping the lowest
    loss."""
    seen = _stub_engine(monkeypatch, train_length_estimator)
    splits = {}
    embed = train_length_estimator.embed_split
    monkeypatch.setattr(train_length_estimator, "embed_split",
                        lambda encoder, spec, split, *a: splits.setdefault(split, embed(encoder, spec, split, *a)))
    args = parse_with_config(get_train_length_estimator_parser(), [
        "--dataset_name", "synthetic", "--data_root", synthetic_root, "--checkpoints_dir", str(tmp_path / "ck"),
        "--hidden_dim", "24", "--dropout", "0.3", "--unit_length", "1", "--seed", "5", "--max_iters", "2"])
    train_length_estimator.main(args, text_encoder=HashedTextEncoder())
    model = seen["model"]
    assert model.model_args == {"text_dim": 16, "num_classes": 197, "hidden_dim": 24, "dropout": 0.3}
    torch.manual_seed(5)
    expected = LengthEstimator(16, num_classes=197, hidden_dim=24, dropout=0.3).state_dict()
    assert all(torch.equal(value, expected[key]) for key, value in model.state_dict().items())
    meta = seen["checkpoint_meta"]
    assert meta["model_name"] == "LengthEstimator" and meta["unit_length"] == 1
    assert (seen["cfg"].best_metric, seen["cfg"].best_mode) == ("loss", "min")
    model.eval()
    with torch.no_grad():
        logits, classes = model(splits["val"].embeddings), splits["val"].classes
        metrics = seen["val_fn"](model)
    assert metrics["loss"] == pytest.approx(float(F.cross_entropy(logits, classes)))
    assert metrics["accuracy"] == pytest.approx(float((logits.argmax(-1) == classes).float().mean()))


# ---------------------------------------------------------------------------------------------------------------------
# train_evaluator.py: the two stages' losses, optimizers and engine settings
# ---------------------------------------------------------------------------------------------------------------------

def _record_evaluator_training(monkeypatch):
    """Replace ``train_evaluator``'s engine, validation and report by recorders; returns what they were given."""
    seen = {"stages": [], "shifts": [], "margins": []}

    def train(model, data, loss_fn, cfg, run, **kw):
        seen["stages"].append(dict(model=model, loss_fn=loss_fn, cfg=cfg, run=run, **kw))
        return types.SimpleNamespace(latest_path=run.latest_path)

    class Validation:
        best_val_loss = 0.5

        def __init__(self, *a, **kw):
            seen["validation_kw"] = kw

    def report(cfg, spec, finest_path, batch_size, best_val_loss, report_path):
        seen["report_path"] = report_path
        return {"word_vectors": "learned", "samples": 32, "batch_size": 32, "top1": 0.1, "top2": 0.2, "top3": 0.3,
                "matching_score": 4.0}

    def shift(batch_size, mode):
        seen["shifts"].append(mode)
        return 1

    def contrastive(text_emb, motion_emb, shift, margin):
        seen["margins"].append(margin)
        return torch.tensor(2.0), torch.tensor(3.0)

    monkeypatch.setattr(train_evaluator, "train", train)
    monkeypatch.setattr(train_evaluator, "CoEmbeddingValidation", Validation)
    monkeypatch.setattr(train_evaluator, "validate_final_state", lambda *a: seen.update(final_state=a))
    monkeypatch.setattr(train_evaluator, "write_validation_report", report)
    monkeypatch.setattr(train_evaluator, "draw_shift", shift)
    monkeypatch.setattr(train_evaluator, "contrastive_loss", contrastive)
    return seen


def test_the_evaluator_stages_train_with_their_losses_optimizer_and_settings(data_root, tmp_path,  # noqa: F811
                                                                            monkeypatch):
    """Stage 1 (unclipped) minimises reconstruction plus weighted sparsity and smoothness; stage 2 the positive plus
    negative contrastive terms at ``--margin`` and ``--neg_shift``, its Adam at ``--lr`` over the trainable
    parameters; the final state is validated, the report written and returned; the records keep the resolved stage-1
    length, the unset options and the ignored dimensions as a list."""
    seen = _record_evaluator_training(monkeypatch)
    ck = tmp_path / "ck"
    result = train_evaluator.main(_evaluator_args(data_root, ck, "--max_iters", "3", "--lr", "3e-3", "--margin", "4",
                                                  "--lambda_sparsity", "0.5", "--lambda_smooth", "0.25",
                                                  "--batch_size", "64", "--pretrain_window", "24"))
    assert result["top1"] == 0.1
    stage1, stage2 = seen["stages"]
    assert stage1["cfg"].grad_clip == 0.0 and stage1["cfg"].max_iters > 1
    motion = torch.zeros(2, 5, 3)
    recon, latents = torch.ones(2, 5, 3), torch.tensor([[[1.0], [-3.0], [2.0], [2.0]], [[0.0], [0.0], [4.0], [1.0]]])
    loss, _ = stage1["loss_fn"](lambda m: (recon, latents), motion)
    assert float(loss) == pytest.approx(1.0 + 0.5 * 13 / 8 + 0.25 * 16 / 6)
    optimizer = stage1["optimizer_factory"](torch.nn.Linear(2, 2))
    assert type(optimizer) is torch.optim.Adam and optimizer.param_groups[0]["lr"] == 3e-3

    batch = types.SimpleNamespace(word_embs=None, pos_ohot=None, sent_lens=None, motion=None, m_lengths=None)
    loss, _ = stage2["loss_fn"](lambda *a: (torch.zeros(4, 2), torch.zeros(4, 2)), batch)
    assert float(loss) == 5.0 and seen["shifts"] == ["nonzero"] and seen["margins"] == [4.0]
    frozen = torch.nn.Linear(2, 2)
    frozen.weight.requires_grad_(False)
    params = stage2["optimizer_factory"](frozen).param_groups[0]["params"]
    assert len(params) == 1 and params[0] is frozen.bias
    assert seen["validation_kw"]["resume"] is False and seen["validation_kw"]["steps_per_epoch"] == 1
    assert stage2["cfg"].is_continue is False and stage2["cfg"].max_iters == 3
    run = RunDir(str(ck), "synthetic", "text_mot_match")
    assert stage2["checkpoint_meta"]["parent"] == stage1["run"].latest_path
    assert stage2["checkpoint_meta"]["config"]["pretrain_iters"] == stage1["cfg"].max_iters
    assert stage2["checkpoint_meta"]["config"]["glove_dir"] is None
    assert stage2["checkpoint_meta"]["model_args"]["ignore_dims"] == [259, 263]
    assert seen["final_state"][2] == f"{run.model_dir}/finest.tar"
    assert seen["report_path"] == f"{run.eval_dir}/evaluator_val.json"
    assert (tmp_path / "ck" / "synthetic" / "text_mot_match" / "meta" / "mean.npy").is_file()


@pytest.mark.parametrize("pretrain, lengths", [("1", [1, 3]), ("0", [3])])
def test_any_pretraining_step_trains_the_first_stage_and_parents_the_second(data_root, tmp_path,  # noqa: F811
                                                                           monkeypatch, pretrain, lengths):
    """``--pretrain_iters 1`` still trains stage 1, whose checkpoint is stage 2's parent; 0 skips it, with no
    parent."""
    seen = _record_evaluator_training(monkeypatch)
    train_evaluator.main(_evaluator_args(data_root, tmp_path / "ck", "--max_iters", "3", "--pretrain_iters", pretrain))
    assert [stage["cfg"].max_iters for stage in seen["stages"]] == lengths
    parent = seen["stages"][-1]["checkpoint_meta"]["parent"]
    assert parent == (seen["stages"][0]["run"].latest_path if len(lengths) == 2 else None)


def test_a_new_evaluator_run_over_a_first_stage_checkpoint_is_refused_before_writing(data_root, tmp_path,  # noqa: F811
                                                                                       monkeypatch):
    """A new run whose ``_decomp`` stage holds a ``latest.tar`` fails naming it, before the run folder exists."""
    seen = _record_evaluator_training(monkeypatch)
    ck = tmp_path / "ck"
    decomp = RunDir(str(ck), "synthetic", "text_mot_match_decomp")
    save_checkpoint(decomp.latest_path, {"stage": "evaluator_decomp"})
    with pytest.raises(RunDirError, match=r"text_mot_match_decomp.*latest.tar exists: pass --is_continue"):
        train_evaluator.main(_evaluator_args(data_root, ck, "--max_iters", "3"))
    assert not (ck / "synthetic" / "text_mot_match").exists() and seen["stages"] == []


# ---------------------------------------------------------------------------------------------------------------------
# evaluation_MARDM.py: the multimodality setting
# ---------------------------------------------------------------------------------------------------------------------

def _evaluate_missing_run(tmp_path, *argv):
    args = parse_with_config(get_evaluation_generator_parser(), [
        "--name", "gen", "--dataset_name", "synthetic", "--checkpoints_dir", str(tmp_path / "ck"), "--device", "cpu",
        *argv])
    return evaluation_MARDM.main(args)


def test_multimodality_needs_more_repeats_than_its_pairs(tmp_path):
    """Exactly as many repeats as the compared pairs (10) is refused, before the generator is looked for."""
    with pytest.raises(ValueError, match=r"^--mm_repeats 10: multimodality compares 10 pairs of repeats per caption"):
        _evaluate_missing_run(tmp_path, "--mm_repeats", "10")


def test_few_repeats_are_not_checked_without_multimodality(tmp_path):
    """With ``--no_mm`` the repeat count is not checked: the next check to fail is the missing generator run."""
    with pytest.raises(CheckpointError, match=r"generator checkpoint not found: .*synthetic.gen"):
        _evaluate_missing_run(tmp_path, "--no_mm", "--mm_repeats", "5")
    assert not (tmp_path / "ck").exists()
