"""The training scripts' own flag handling and stage wiring: which tokenizer entry ``train_vq.py`` builds and with
which keywords, ``train_AE.py``'s architecture keywords, ``train_MARDM.py``'s head flags, the guidance and collate
function the token transformers validate with, and ``train_length_estimator.py``'s resume checks and loss."""

from __future__ import annotations

import logging

import pytest
import torch
import torch.nn.functional as F
from test_token_training_contracts import _args, _ckpt, _stub_engine, tiny  # noqa: F401 (tiny is a fixture)

import evaluation_MARDM
import train_AE
import train_length_estimator
import train_MARDM
import train_res_transformer
import train_t2m_transformer
import train_vq
from options.config import parse_with_config
from options.eval_generator_options import get_evaluation_generator_parser
from options.generator_options import get_train_mardm_parser
from options.tokenizer_options import get_train_ae_parser, get_train_vq_parser
from utils.checkpoint import CheckpointError, save_checkpoint
from utils.generation_momask import MoMaskBackend
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
