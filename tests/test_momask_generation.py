"""MoMask generation through utils.generation: the masked transformer (+ optional residual transformer) on an RVQ / VQ
tokenizer, its sampling options and checks, and sample.py / evaluation_MARDM.py on a MoMask run.

The runs are untrained tiny models saved in the checkpoint format train_t2m_transformer.py / train_res_transformer.py
write (``utils.token_stage.token_checkpoint_meta``), with the tiny CLIP text tower of test_generation.py.
"""

from __future__ import annotations

import json
import logging
import os
import shutil

import numpy as np
import pytest
import torch
from test_generation import CLIP_EMBED, save_generator, save_tokenizer, write_fake_clip

import evaluation_MARDM
import sample
from models.mask_transformer import MASK_TRANSFORMERS
from models.res_transformer import RES_TRANSFORMERS
from models.tokenizers import build_tokenizer
from options.config import parse_with_config
from options.eval_generator_options import FAMILY_FLAGS, get_evaluation_generator_parser, get_sample_parser
from utils.checkpoint import CheckpointError, file_sha256, save_checkpoint
from utils.dataset_specs import get_dataset_spec
from utils.eval_data import build_eval_loader
from utils.evaluator import build_evaluator, save_evaluator
from utils.generation import MotionGenerator, load_generator
from utils.generation_backends import MARDMBackend
from utils.generation_momask import MoMaskBackend
from utils.generator_checkpoints import load_length_estimator, resolve_generator_checkpoint
from utils.generator_eval import multimodality_options
from utils.generator_stage import TokenizerRef
from utils.normalization import eval_normalization, load_mean_std
from utils.token_stage import load_token_tokenizer, make_token_generation_eval_fn, token_checkpoint_meta
from utils.tokenizer_stage import dataset_record
from utils.word_vectorizer import LearnedVocab


def save_code_tokenizer(ckdir: str, data_root: str, run: str, model_name: str, seed: int = 0, **overrides) -> str:
    """A tokenizer run in train_vq.py's format whose EMA codebooks were filled by one training forward."""
    spec = get_dataset_spec("synthetic", data_root)
    mean, std = load_mean_std(spec, data_root)
    torch.manual_seed(seed)
    model = build_tokenizer(model_name, input_width=spec.dim_pose, **overrides)
    model.train()
    model(torch.randn(4, 64, spec.dim_pose))
    path = os.path.join(ckdir, "synthetic", run, "model", "net_best_loss.tar")
    save_checkpoint(path, {"stage": "tokenizer", "model_name": model_name, "model_args": dict(model.model_args),
                           "model": model.eval().state_dict(), "dataset": dataset_record(spec, mean, std),
                           "config": {}, "parent": None, "step": 0})
    return path


def save_token_generator(ckdir: str, data_root: str, run: str, model_name: str, tokenizer_path: str, clip_path: str,
                         seed: int = 0) -> str:
    """An untrained MoMask transformer run (``MASK_TRANSFORMERS`` or ``RES_TRANSFORMERS`` name); returns latest.tar."""
    spec = get_dataset_spec("synthetic", data_root)
    tokenizer = load_token_tokenizer(tokenizer_path, spec)
    torch.manual_seed(seed)
    if model_name in MASK_TRANSFORMERS:
        model = MASK_TRANSFORMERS[model_name](tokenizer.codebook_size, tokenizer.latent_dim, CLIP_EMBED)
    else:
        model = RES_TRANSFORMERS[model_name](tokenizer.codebook_size, tokenizer.num_quantizers, tokenizer.latent_dim,
                                             CLIP_EMBED)
    # Untrained heads are nearly uniform; larger weights make the samples depend on text and settings.
    with torch.no_grad():
        for value in model.parameters():
            value.mul_(5.0)
    text_record = {"name": "clip", "dim": CLIP_EMBED, "path": os.path.abspath(clip_path)}
    ref = TokenizerRef(tokenizer_path, os.path.basename(os.path.dirname(os.path.dirname(tokenizer_path))))
    meta = token_checkpoint_meta(model_name, dict(model.model_args), spec, tokenizer, ref, text_record, {})
    path = os.path.join(ckdir, "synthetic", run, "model", "latest.tar")
    save_checkpoint(path, {**meta, "model": model.state_dict(), "step": 5, "engine": {"ema_decay": None}})
    return path


@pytest.fixture(scope="module")
def runs(tmp_path_factory, synthetic_root):
    ckdir = str(tmp_path_factory.mktemp("momask") / "checkpoints")
    clip = write_fake_clip(os.path.join(ckdir, "clip"))
    rvq = save_code_tokenizer(ckdir, synthetic_root, "rvq", "RVQVAE_Tiny", quantize_dropout_prob=0.0)
    other_rvq = save_code_tokenizer(ckdir, synthetic_root, "rvq_other", "RVQVAE_Tiny", seed=3,
                                    quantize_dropout_prob=0.0)
    vq = save_code_tokenizer(ckdir, synthetic_root, "vq", "VQVAE_Tiny")
    paths = {"clip": clip, "rvq": rvq, "vq": vq,
             "mask": save_token_generator(ckdir, synthetic_root, "mask", "MoMask-Mask-Tiny", rvq, clip),
             "res": save_token_generator(ckdir, synthetic_root, "res", "MoMask-Res-Tiny", rvq, clip, seed=1),
             "vq_mask": save_token_generator(ckdir, synthetic_root, "vq_mask", "MoMask-Mask-Tiny", vq, clip),
             "other_res": save_token_generator(ckdir, synthetic_root, "other_res", "MoMask-Res-Tiny", other_rvq,
                                               clip)}
    return ckdir, paths


@pytest.fixture(scope="module")
def momask(runs):
    ckdir, _ = runs
    root = os.path.join(ckdir, "synthetic")
    return load_generator(os.path.join(root, "mask"), res_run=os.path.join(root, "res"))


# ---------------------------------------------------------------------------------------------------------------------
# Generation
# ---------------------------------------------------------------------------------------------------------------------

def test_generation_gives_features_of_the_requested_lengths_and_never_predicts_pads(momask, runs):
    _, paths = runs
    texts = ["a person walks forward", "someone jumps", "a man waves: twice"]
    out = momask.generate(texts, [17, 8, 500], seed=0)
    assert out.lengths.tolist() == [16, 8, 196]
    assert out.features.shape == (3, 196, 263) and out.features_normalised.shape == (3, 196, 263)
    tokenizer = momask.tokenizer
    assert out.tokens.shape == (3, 49, tokenizer.num_quantizers) and out.tokens.dtype == torch.long
    for i, n in enumerate((out.lengths // 4).tolist()):
        valid = out.tokens[i, :n]
        assert ((valid >= 0) & (valid < tokenizer.codebook_size)).all()  # no mask / pad id, every layer generated
        assert (out.tokens[i, n:] == -1).all()
        frames = 4 * n
        assert out.features[i, frames:].abs().sum() == 0 and out.features[i, :frames].abs().sum() > 0
        torch.testing.assert_close(out.features_normalised[i, :frames],
                                   tokenizer.decode(out.tokens[i:i + 1, :n])[0])
        assert out.joints[i].shape == (frames, 22, 3) and np.isfinite(out.joints[i]).all()
    assert momask.info["family"] == "momask" and momask.info["target"] == "tokens"
    assert momask.info["residual"]["checkpoint_sha256"] == file_sha256(paths["res"])
    assert momask.info["weights"] == "model" and momask.info["residual"]["weights"] == "model"


def test_without_a_residual_run_only_the_base_layer_is_generated(momask, runs):
    ckdir, _ = runs
    base_only = load_generator(os.path.join(ckdir, "synthetic", "mask"))
    texts, lengths = ["a person walks", "someone jumps high"], [24, 12]
    a = base_only.generate(texts, lengths, seed=3)
    b = momask.generate(texts, lengths, seed=3)
    assert a.tokens.shape == b.tokens.shape
    assert (a.tokens[..., 1:] == -1).all()
    assert torch.equal(a.tokens[..., 0], b.tokens[..., 0])  # residual sampling comes after the base layer
    assert (b.tokens[0, :6, 1:] >= 0).all()
    assert not torch.allclose(a.features, b.features)


def test_vq_tokenizer_gives_base_layer_codes(runs):
    _, paths = runs
    gen = load_generator(paths["vq_mask"])
    out = gen.generate(["a person walks", "a person runs"], [20, 8], seed=0)
    assert out.tokens.shape == (2, 5) and (out.tokens[1, 2:] == -1).all() and (out.tokens[0] >= 0).all()
    torch.testing.assert_close(out.features_normalised[0], gen.tokenizer.decode(out.tokens[:1])[0])


def test_defaults_seeds_and_options(momask):
    assert momask.sampling_settings().to_dict() == {
        "time_steps": 10, "cfg": 4.0, "temperature": 1.0, "snap": True, "topk_filter_thres": 0.9,
        "sampling": "categorical", "res_cond_scale": 5.0, "res_temperature": 1.0}
    # MoMask evaluates KIT-ML with guidance 2 (--cfg's help promises the per-dataset default).
    assert momask.backend.settings(dataset="kit").cfg == 2.0
    assert momask.backend.settings(dataset="kit", cfg=3.0).cfg == 3.0
    assert momask.backend.settings(dataset="t2m").cfg == 4.0

    def tokens(text="a person walks", **kw):
        return momask.generate([text], [32], time_steps=4, seed=1, **kw).tokens

    base = tokens()
    assert torch.equal(base, tokens())
    assert not torch.equal(base, momask.generate(["a person walks"], [32], time_steps=4, seed=2).tokens)
    for other in (tokens("someone jumps high"), tokens(cfg=1.0), tokens(sampling="gumbel"),
                  tokens(topk_filter_thres=0.5), tokens(temperature=0.5)):
        assert not torch.equal(base, other)
    changed = tokens(res_cond_scale=1.0)
    assert torch.equal(base[..., 0], changed[..., 0]) and not torch.equal(base, changed)
    with pytest.raises(ValueError, match=r"momask generators have no sampling option \['top_k'\]"):
        tokens(top_k=3)
    with pytest.raises(ValueError, match="snap=False"):
        tokens(snap=False)
    with pytest.raises(ValueError, match="sampling must be one of"):
        tokens(sampling="greedy")


def test_kit_ml_guidance_covers_its_64_dim_subset():
    """Both KIT-ML datasets (251-dim and MARDM's 64-dim subset) take MoMask's KIT-ML guidance, as they take MARDM's."""
    assert MoMaskBackend.guidance("kit") == MoMaskBackend.guidance("kit_64") == 2.0
    assert MoMaskBackend.guidance("t2m") == MoMaskBackend.guidance("t2m_67") == 4.0

def test_mardm_runs_refuse_momask_options(runs, synthetic_root, tmp_path):
    _, paths = runs
    tok = save_tokenizer(str(tmp_path), synthetic_root, "ae", "AE_Tiny")
    gen = load_generator(save_generator(str(tmp_path), synthetic_root, "gen", "MARDM-SiT-Tiny", tok, paths["clip"]))
    assert gen.sampling_settings().to_dict() == {"time_steps": 18, "cfg": 4.5, "temperature": 1.0, "snap": True}
    assert gen.backend.settings(dataset="kit").cfg == 2.5 and gen.backend.settings(dataset="t2m_67").cfg == 4.5
    gen.spec = get_dataset_spec("kit")  # the generator's own dataset picks the default
    assert gen.sampling_settings().cfg == 2.5 and gen.sampling_settings(cfg=4.5).cfg == 4.5
    with pytest.raises(ValueError, match=r"mardm generators have no sampling option \['res_cond_scale'\]"):
        gen.generate(["a person walks"], [8], time_steps=2, res_cond_scale=2.0)
    with pytest.raises(CheckpointError, match="mardm generators take no residual run"):
        load_generator(gen.path, res_run=paths["res"])


def test_a_family_option_of_another_family_is_refused_naming_the_flags(runs, synthetic_root, tmp_path):
    """The error named the options in code ('topk_filter_thres'; theirs: 'head_solver', 'head_steps'), not the flags
    the user typed."""
    ckdir, paths = runs
    tok = save_tokenizer(str(tmp_path), synthetic_root, "ae", "AE_Tiny")
    mardm = save_generator(str(tmp_path), synthetic_root, "gen", "MARDM-SiT-Tiny", tok, paths["clip"])
    prompt = ["--text_prompt", "a person walks", "--motion_length", "16", "--output_dir", str(tmp_path / "out")]
    with pytest.raises(ValueError) as refused:
        sample.main(parse_with_config(get_sample_parser(), ["--ckpt", mardm, "--topkr", "0.5", *prompt]))
    assert str(refused.value) == "mardm generators take no --topkr; their sampling flags: --head_steps, --head_solver"
    with pytest.raises(ValueError) as refused:
        evaluation_MARDM.main(parse_with_config(get_evaluation_generator_parser(), [
            "--name", "mask", "--res_name", "res", "--dataset_name", "synthetic", "--checkpoints_dir", ckdir,
            "--device", "cpu", "--no_mm", "--head_steps", "4", "--head_solver", "euler"]))
    assert str(refused.value) == ("momask generators take no --head_steps, --head_solver; their sampling flags: "
                                  "--topkr, --sampling/--gumbel_sample, --res_cond_scale")
    assert not os.path.exists(tmp_path / "out")
    # Every flag named is the one of its option.
    parser = get_sample_parser()
    for name, flags in FAMILY_FLAGS.items():
        dests = {action.dest for action in parser._actions for flag in flags.split("/")
                 if flag in action.option_strings}
        assert dests == {name}, flags


def test_mismatched_runs_fail_naming_both(runs):
    ckdir, paths = runs
    with pytest.raises(CheckpointError, match="tokenizer sha256 .* residual run .* masked transformer"):
        load_generator(paths["mask"], res_run=paths["other_res"])
    with pytest.raises(CheckpointError, match="is a residual transformer; load the masked transformer run"):
        load_generator(paths["res"])
    with pytest.raises(CheckpointError, match="is not a residual transformer"):
        load_generator(paths["mask"], res_run=paths["mask"])
    with pytest.raises(CheckpointError, match="tokenizer sha256"):
        load_generator(paths["vq_mask"], res_run=paths["res"])
    with pytest.raises(CheckpointError, match=r"rvq/model/net_best_loss.tar: stage is 'tokenizer', expected "
                                              r"'generator'"):
        load_generator(paths["mask"], res_run=paths["rvq"])


def test_a_generator_of_another_kind_as_residual_is_named_as_such(runs, synthetic_root, tmp_path):
    """A MARDM run (on its own tokenizer) given as the residual was refused as a tokenizer mismatch, sending the user
    to retrain; it is a run of the wrong kind, whatever it was trained on."""
    ckdir, paths = runs
    mardm = save_generator(str(tmp_path), synthetic_root, "gen", "MARDM-SiT-Tiny",
                           save_tokenizer(str(tmp_path), synthetic_root, "ae", "AE_Tiny"), paths["clip"])
    wrong_kind = rf"{mardm}: model_name 'MARDM-SiT-Tiny' is not a residual transformer .* train_res_transformer.py run"
    with pytest.raises(CheckpointError, match=wrong_kind):
        load_generator(paths["mask"], res_run=mardm)
    prompt = ["--text_prompt", "a person walks", "--motion_length", "16", "--output_dir", str(tmp_path / "out")]
    with pytest.raises(CheckpointError, match=wrong_kind):
        sample.main(parse_with_config(get_sample_parser(), [
            "--name", "mask", "--dataset_name", "synthetic", "--checkpoints_dir", ckdir, "--res_ckpt", mardm,
            "--no_render", *prompt]))
    with pytest.raises(CheckpointError, match=wrong_kind):
        evaluation_MARDM.main(parse_with_config(get_evaluation_generator_parser(), [
            "--name", "mask", "--res_ckpt", mardm, "--dataset_name", "synthetic", "--checkpoints_dir", ckdir,
            "--device", "cpu", "--no_mm"]))


def test_official_generator_files_are_named_as_such(runs, tmp_path):
    """The references' own generator files (no stage, their weight keys) are refused as what they are."""
    _, paths = runs
    official = {"MARDM": {"mardm": {}, "ema_mardm": {}, "ep": 1, "total_it": 2},
                "MoMask masked transformer": {"t2m_transformer": {}, "ep": 1},
                "MoMask residual transformer": {"res_transformer": {}, "ep": 1},
                "length estimator": {"estimator": {}, "epoch": 1}}
    for who, state in official.items():
        path = str(tmp_path / f"{who.replace(' ', '_')}.tar")
        save_checkpoint(path, state)
        match = rf"{who.replace(' ', '_')}.tar: an official {who} checkpoint"
        with pytest.raises(CheckpointError, match=match):
            load_generator(path)
        with pytest.raises(CheckpointError, match=match):
            load_generator(paths["mask"], res_run=path)
        with pytest.raises(CheckpointError, match=match):
            load_length_estimator(path)


def test_best_resolves_momask_checkpoint_names(runs, tmp_path):
    _, paths = runs
    model_dir = tmp_path / "run" / "model"
    model_dir.mkdir(parents=True)
    (model_dir / "net_best_acc.tar").write_bytes(open(paths["mask"], "rb").read())
    assert resolve_generator_checkpoint(str(tmp_path / "run"), "best").endswith("net_best_acc.tar")


# ---------------------------------------------------------------------------------------------------------------------
# Scripts
# ---------------------------------------------------------------------------------------------------------------------

def test_sample_py_writes_npy_gif_and_manifest(runs, tmp_path):
    ckdir, paths = runs
    out = tmp_path / "out"
    args = parse_with_config(get_sample_parser(), [
        "--name", "mask", "--res_name", "res", "--dataset_name", "synthetic", "--checkpoints_dir", ckdir,
        "--text_prompt", "a person walks", "--motion_length", "30", "--repeat_times", "2", "--time_steps", "3",
        "--format", "gif", "--output_dir", str(out), "--res_cond_scale", "3"])
    manifest = sample.main(args)
    assert [s["length_frames"] for s in manifest["samples"]] == [28, 28]
    for s in manifest["samples"]:
        assert np.load(out / s["files"]["joints"]).shape == (28, 22, 3)
        assert np.load(out / s["files"]["features"]).shape == (28, 263)
        assert s["files"]["video"].endswith(".gif") and (out / s["files"]["video"]).stat().st_size > 0
    on_disk = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    assert on_disk["sampling"] == {"time_steps": 3, "cfg": 4.0, "temperature": 1.0, "snap": True,
                                   "topk_filter_thres": 0.9, "sampling": "categorical", "res_cond_scale": 3.0,
                                   "res_temperature": 1.0}
    assert on_disk["generator"]["residual"]["checkpoint_sha256"] == file_sha256(paths["res"])
    assert on_disk["checkpoint_sha256"] == file_sha256(paths["mask"])


def test_sample_py_takes_which_epoch_for_both_runs_and_warns_without_residual(runs, tmp_path, caplog):
    """--which_epoch selects the residual run's file too, as in evaluation; without a residual run on a multi-layer
    tokenizer a warning says only the base layer is generated."""
    ckdir, paths = runs
    best = os.path.join(ckdir, "synthetic", "res", "model", "net_best_loss.tar")
    base_best = os.path.join(ckdir, "synthetic", "mask", "model", "net_best_loss.tar")
    shutil.copyfile(paths["res"], best)
    shutil.copyfile(paths["mask"], base_best)
    base = ["--name", "mask", "--dataset_name", "synthetic", "--checkpoints_dir", ckdir, "--text_prompt", "a person",
            "--motion_length", "16", "--time_steps", "2", "--no_render"]
    try:
        manifest = sample.main(parse_with_config(get_sample_parser(), [
            *base, "--res_name", "res", "--which_epoch", "best", "--output_dir", str(tmp_path / "a")]))
    finally:
        os.remove(best)
        os.remove(base_best)
    assert manifest["generator"]["residual"]["checkpoint"] == os.path.abspath(best)
    with caplog.at_level(logging.WARNING, logger="utils.generation"):
        manifest = sample.main(parse_with_config(get_sample_parser(), [*base, "--output_dir", str(tmp_path / "b")]))
    assert "residual" not in manifest["generator"]
    assert any("only the base layer of the 3-layer tokenizer" in r.message for r in caplog.records)


def test_sample_py_finds_a_residual_run_beside_a_ckpts_run_and_checks_only_a_given_dataset(runs, tmp_path):
    """``--ckpt <checkpoints>/<dataset>/<run>/model/latest.tar --res_name res`` finds the residual run under
    ``<checkpoints>/<dataset>/`` as evaluation_MARDM.py does (it asked for --dataset_name); a run copied to another
    folder samples without the flag, and a given --dataset_name is checked against the generator's."""
    ckdir, paths = runs
    base = ["--text_prompt", "a person", "--motion_length", "16", "--time_steps", "2", "--no_render"]
    manifest = sample.main(parse_with_config(get_sample_parser(), [
        "--ckpt", paths["mask"], "--res_name", "res", "--checkpoints_dir", ckdir, *base,
        "--output_dir", str(tmp_path / "a")]))
    assert manifest["generator"]["residual"]["checkpoint"] == os.path.abspath(paths["res"])
    copied = tmp_path / "backup" / "mask" / "model" / "latest.tar"
    copied.parent.mkdir(parents=True)
    shutil.copyfile(paths["mask"], copied)
    manifest = sample.main(parse_with_config(get_sample_parser(), [
        "--ckpt", str(copied), *base, "--output_dir", str(tmp_path / "b")]))
    assert manifest["checkpoint_sha256"] == file_sha256(paths["mask"])
    with pytest.raises(CheckpointError, match=r"trained on dataset 'synthetic' but --dataset_name is 'kit'"):
        sample.main(parse_with_config(get_sample_parser(), [
            "--ckpt", str(copied), "--dataset_name", "kit", *base, "--output_dir", str(tmp_path / "c")]))


@pytest.fixture(scope="module")
def evaluator(runs, synthetic_root):
    """A tiny untrained evaluator, saved where evaluation_MARDM.py looks for it."""
    ckdir, _ = runs
    spec = get_dataset_spec("synthetic", synthetic_root)
    mean, std = eval_normalization(*load_mean_std(spec, synthetic_root), spec)
    torch.manual_seed(0)
    wrapper = build_evaluator("synthetic", mean, std, sizes="tiny", data_root=synthetic_root,
                              word_vectors=LearnedVocab.from_split(synthetic_root, "train", dim_word=8))
    save_evaluator(os.path.join(ckdir, "synthetic", "text_mot_match", "model", "finest.tar"), wrapper)
    return wrapper


@pytest.mark.parametrize("role", ["mask", "res"])
def test_training_time_generation_eval_fn(momask, evaluator, synthetic_root, role):
    spec = get_dataset_spec("synthetic", synthetic_root)
    loader = build_eval_loader(evaluator, spec, "val", data_root=synthetic_root, batch_size=8, progress=False)
    model = momask.model if role == "mask" else momask.backend.residual
    eval_fn = make_token_generation_eval_fn(momask.tokenizer, momask.text_encoder, evaluator, loader, momask.mean,
                                            momask.std, role, cond_scale=2.0, time_steps=2, seed=5)
    metrics = eval_fn(model)
    assert {"fid", "diversity", "top1", "top2", "top3", "matching_score"} <= set(metrics)
    assert all(np.isfinite(v) for v in metrics.values()) and metrics["fid"] > 0
    assert metrics == eval_fn(model)  # reseeded at every call


def test_evaluation_py_scores_a_momask_run(runs, evaluator, synthetic_root):
    ckdir, _ = runs
    args = parse_with_config(get_evaluation_generator_parser(), [
        "--name", "mask", "--res_name", "res", "--dataset_name", "synthetic", "--checkpoints_dir", ckdir,
        "--data_root", synthetic_root, "--device", "cpu", "--replications", "1", "--eval_batch_size", "8",
        "--time_steps", "2", "--no_mm", "--gumbel_sample"])
    result = evaluation_MARDM.main(args)
    tag = "latest_ts2_cfg4_res-res_gumbel_nomm_eb8"
    path = os.path.join(ckdir, "synthetic", "mask", "eval", f"eval_{tag}.json")
    with open(path) as f:
        report = json.load(f)
    assert report["sampling"]["sampling"] == "gumbel" and report["sampling"]["time_steps"] == 2
    assert report["sampling"]["cfg"] == 4.0 and report["generator"]["residual"]["model_name"] == "MoMask-Res-Tiny"
    metrics = result["protocol"]["metrics"]
    assert all(np.isfinite(metrics[k]["mean"]) for k in ("fid", "diversity", "top1", "matching_score"))


@pytest.mark.parametrize("flags, main, repeats", [([], "categorical", "gumbel"),
                                                  (["--mm_sampling", "categorical"], "categorical", "categorical")])
def test_multimodality_repeats_draw_as_momask_s_evaluation(runs, evaluator, synthetic_root, monkeypatch, flags, main,
                                                           repeats):
    """MoMask's evaluation draws the base layer of its multimodality repeats by Gumbel-max and of every other batch
    from the categorical distribution; the repeats had been drawn like the other batches."""
    ckdir, _ = runs
    drawn = []
    generate = MotionGenerator.generate

    def recording(self, texts, *args, **kwargs):
        drawn.append((len(texts), kwargs.get("sampling", "categorical")))  # categorical: MoMaskBackend's default
        return generate(self, texts, *args, **kwargs)

    monkeypatch.setattr(MotionGenerator, "generate", recording)
    args = parse_with_config(get_evaluation_generator_parser(), [
        "--name", "mask", "--res_name", "res", "--dataset_name", "synthetic", "--checkpoints_dir", ckdir,
        "--data_root", synthetic_root, "--device", "cpu", "--replications", "1", "--eval_batch_size", "8",
        "--time_steps", "2", "--mm_batches", "1", "--mm_repeats", "11", *flags])
    result = evaluation_MARDM.main(args)
    # The first batch's captions 11 times (the last repeat is also its batch's motion, as in MoMask), then the others.
    assert len(drawn) > 11 and [s for _, s in drawn] == [repeats] * 11 + [main] * (len(drawn) - 11)
    assert result["protocol"]["meta"]["sampling"]["mm_sampling"] == repeats
    assert np.isfinite(result["protocol"]["metrics"]["multimodality"]["mean"])


def test_mm_sampling_is_refused_for_mardm_generators():
    args = get_evaluation_generator_parser().parse_args(["--name", "x", "--mm_sampling", "gumbel"])
    with pytest.raises(ValueError, match="--mm_sampling is for MoMask generators; mardm generators"):
        multimodality_options(args, MARDMBackend, {})
