"""train_MARDM.py on the synthetic data: every generator family trains on its tokenizer kind and writes the generator
checkpoint; resume is exact; contradicting tokenizer, dataset and family fail naming both sides; generation helpers."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch
from test_token_training_contracts import _stub_engine
from tool_helpers import load_tool

import train_MARDM
from models.mardm import MARDM_MODELS
from models.text_encoders import CachedTextEncoder, build_text_encoder
from models.tokenizers import build_tokenizer
from options.config import load_preset, parse_with_config
from options.generator_options import get_train_mardm_parser
from utils import generator_stage
from utils.checkpoint import CheckpointError, file_sha256, load_checkpoint, save_checkpoint
from utils.dataset_specs import get_dataset_spec
from utils.generation_backends import MARDMBackend
from utils.generator_resume import check_resume_matches
from utils.generator_stage import (
    decode_targets,
    load_generator_tokenizer,
    make_generation_eval_fn,
    resolve_tokenizer_checkpoint,
    resume_records,
    resumed_tokenizer_ema,
    snap_and_latent_fns,
    tokenize,
)
from utils.normalization import load_mean_std
from utils.tokenizer_stage import dataset_record

COMMON = ["--dataset_name", "synthetic", "--batch_size", "8", "--num_workers", "0", "--lr", "1e-3",
          "--warm_up_iter", "3", "--milestones", "1000", "--log_every", "5", "--save_every", "100"]
TOKENIZERS = {"ae": "AE_Tiny", "fsq": "FSQ_AE_Tiny", "vq": "VQ_AE_Tiny"}


@pytest.fixture(scope="module")
def encoder():
    """MiniLM built once for the module; the cache keeps caption embeddings across runs."""
    return CachedTextEncoder(build_text_encoder("minilm"))


def _save_tokenizer(path, model_name, spec, mean, std, dataset_name=None, input_width=None):
    """A tokenizer checkpoint in the layout utils/tokenizer_stage.py writes (random weights, data-initialised VQ)."""
    torch.manual_seed(0)
    model = build_tokenizer(model_name, input_width=input_width or spec.dim_pose)
    if model.kind == "vq":
        model.train()
        model(torch.randn(4, 64, model.input_width))  # the first training forward fills the EMA codebook
    record = dataset_record(spec, mean, std)
    if dataset_name is not None:
        record["name"] = dataset_name
    save_checkpoint(path, {"stage": "tokenizer", "model_name": model_name, "model_args": dict(model.model_args),
                           "model": model.state_dict(), "dataset": record, "config": {}, "parent": None, "step": 0})


@pytest.fixture(scope="module")
def setup(tmp_path_factory, synthetic_root):
    """Checkpoint root with tokenizer runs ae / fsq / vq (plus mismatching ones) and the statistics they record."""
    ckpt = str(tmp_path_factory.mktemp("gen_ckpt"))
    spec = get_dataset_spec("synthetic", synthetic_root)
    mean, std = load_mean_std(spec, synthetic_root)
    # Recorded statistics that differ from the dataset's Mean/Std: the generator must use these, not recompute.
    tok_mean, tok_std = mean + 0.25, std * 1.5
    for run, model in TOKENIZERS.items():
        _save_tokenizer(os.path.join(ckpt, "synthetic", run, "model", "latest.tar"), model, spec, tok_mean, tok_std)
    _save_tokenizer(os.path.join(ckpt, "synthetic", "fsq_t2m", "model", "latest.tar"), "FSQ_AE_Tiny", spec,
                    tok_mean, tok_std, dataset_name="t2m")
    return {"ckpt": ckpt, "root": synthetic_root, "spec": spec, "mean": tok_mean, "std": tok_std}


def _args(setup, name, *extra):
    return parse_with_config(get_train_mardm_parser(), [*COMMON, "--data_root", setup["root"], "--checkpoints_dir",
                                                        setup["ckpt"], "--name", name, *extra])


def _losses(run_root):
    with open(os.path.join(run_root, "model", "train_log.jsonl")) as f:
        return [json.loads(line)["loss"] for line in f]


@pytest.mark.parametrize("model,tokenizer,target,extra", [
    ("MARDM-SiT-Tiny", "ae", "latent", []),
    ("FSQ-MARDM-SiT-Tiny", "fsq", "fsq_coords", ["--diffmlps_batch_mul", "3", "--cond_drop_prob", "0.2"]),
    ("FSQ-MARDM-DDPM-Tiny", "fsq", "fsq_coords", []),
    ("VQ-MARDM-SiT-Tiny", "vq", "vq_codes", []),
    ("VQ-MARDM-DDPM-Tiny", "vq", "vq_codes", []),
])
def test_each_family_trains_and_writes_the_generator_checkpoint(setup, encoder, model, tokenizer, target, extra):
    name = f"gen_{model}"
    steps = 16
    train_MARDM.main(_args(setup, name, "--model", model, "--ae_name", tokenizer, "--max_iters", str(steps),
                           "--eval_every", str(steps), *extra), text_encoder=encoder)
    root = os.path.join(setup["ckpt"], "synthetic", name)
    for rel in ("opt.yaml", "train.log", "model/latest.tar", "model/net_best_loss.tar", "model/train_log.jsonl"):
        assert os.path.isfile(os.path.join(root, rel)), rel
    losses = _losses(root)
    assert len(losses) == steps
    assert np.mean(losses[-5:]) < 0.8 * np.mean(losses[:5])
    # Validation guidance: MARDM's for the dataset (4.5; 2.5 on KIT-ML), recorded as a number.
    config = load_checkpoint(os.path.join(root, "model", "latest.tar"))["config"]
    assert config["cfg"] == 4.5 and MARDMBackend.guidance("kit") == MARDMBackend.guidance("kit_64") == 2.5

    tok_path = os.path.join(setup["ckpt"], "synthetic", tokenizer, "model", "latest.tar")
    state = load_checkpoint(os.path.join(root, "model", "latest.tar"))
    assert state["stage"] == "generator" and state["model_name"] == model and state["step"] == steps
    assert state["target"] == target
    assert state["tokenizer"] == {"name": tokenizer, "path": tok_path, "sha256": file_sha256(tok_path),
                                  "model_name": TOKENIZERS[tokenizer], "kind": tokenizer, "weights": "model"}
    assert state["parent"] == {"path": tok_path, "sha256": file_sha256(tok_path)}
    assert state["text_encoder"] == {"name": "minilm", "dim": encoder.dim, "path": None}
    assert state["dataset"]["name"] == "synthetic" and state["dataset"]["spec"]["dim_pose"] == 263
    assert np.array_equal(state["dataset"]["mean"].numpy(), setup["mean"])
    assert np.array_equal(state["dataset"]["std"].numpy(), setup["std"])
    assert state["config"]["ae_name"] == tokenizer and state["config"]["model"] == model

    # The checkpoint rebuilds the model without flags, and holds only the generator's own weights.
    rebuilt = MARDM_MODELS[model](**state["model_args"])
    assert set(state["model"]) == set(rebuilt.state_dict()) == set(state["ema"])
    rebuilt.load_state_dict(state["model"])
    rebuilt.load_state_dict(state["ema"])
    assert not any(k.startswith(("text_encoder", "tokenizer", "encoder.", "model.")) for k in state["model"])
    tok = load_generator_tokenizer(tok_path, model, setup["spec"])
    fsq_dims = tok.model.fsq_dim if tokenizer == "fsq" else tok.latent_dim
    assert state["model_args"]["ae_dim"] == tok.latent_dim and state["model_args"]["target_dim"] == fsq_dims
    assert state["model_args"]["text_dim"] == encoder.dim
    if extra:
        assert state["model_args"]["diffmlps_batch_mul"] == 3 and state["model_args"]["cond_drop_prob"] == 0.2


def test_resume_is_bitwise_exact_including_ema(setup, encoder, tmp_path):
    base = ["--model", "FSQ-MARDM-SiT-Tiny", "--ae_ckpt",
            os.path.join(setup["ckpt"], "synthetic", "fsq", "model", "latest.tar"), "--ema_decay", "0.8",
            "--eval_every", "4", "--save_every", "4"]
    full = parse_with_config(get_train_mardm_parser(), [*COMMON, "--data_root", setup["root"], "--checkpoints_dir",
                                                        str(tmp_path / "full"), "--name", "r", "--max_iters", "8",
                                                        *base])
    train_MARDM.main(full, text_encoder=encoder)
    part = [*COMMON, "--data_root", setup["root"], "--checkpoints_dir", str(tmp_path / "part"), "--name", "r", *base]
    train_MARDM.main(parse_with_config(get_train_mardm_parser(), [*part, "--max_iters", "4"]), text_encoder=encoder)
    train_MARDM.main(parse_with_config(get_train_mardm_parser(), [*part, "--max_iters", "8", "--is_continue"]),
                     text_encoder=encoder)
    a = load_checkpoint(str(tmp_path / "full" / "synthetic" / "r" / "model" / "latest.tar"))
    b = load_checkpoint(str(tmp_path / "part" / "synthetic" / "r" / "model" / "latest.tar"))
    assert a["step"] == b["step"] == 8
    assert a["tokenizer"]["name"] == "fsq"  # the run name is read from .../<name>/model/<file>.tar
    for key in ("model", "ema"):
        for name in a[key]:
            assert torch.equal(a[key][name], b[key][name]), (key, name)
    assert not all(torch.equal(a["model"][k], a["ema"][k]) for k in a["model"])
    assert _losses(str(tmp_path / "full" / "synthetic" / "r")) == _losses(str(tmp_path / "part" / "synthetic" / "r"))

    # Resuming on other tokenizer weights is refused before anything is trained.
    other = str(tmp_path / "other_fsq.tar")
    _save_tokenizer(other, "FSQ_AE_Tiny", setup["spec"], setup["mean"] + 1.0, setup["std"])
    moved = [a if a != base[3] else other for a in part]
    with pytest.raises(CheckpointError, match=r"trained on tokenizer .*fsq.* \(sha256 [0-9a-f]{12}\.\.\.\), now "
                                              r".*other_fsq\.tar .*; resume with the same tokenizer file "
                                              r"\(--ae_which / --vq_which, or --ae_ckpt / --vq_ckpt, naming it\)"):
        train_MARDM.main(parse_with_config(get_train_mardm_parser(), [*moved, "--max_iters", "10", "--is_continue"]),
                         text_encoder=encoder)


def test_mismatches_fail_at_start_naming_both_sides(setup, encoder, tmp_path):
    def run(name, *extra):
        args = parse_with_config(get_train_mardm_parser(), [*COMMON, "--data_root", setup["root"], "--checkpoints_dir",
                                                            setup["ckpt"], "--name", name, "--max_iters", "2", *extra])
        train_MARDM.main(args, text_encoder=encoder)

    with pytest.raises(CheckpointError, match="'FSQ_AE_Tiny'.*--ae_model is 'AE_Tiny'"):
        run("bad_ae_model", "--model", "FSQ-MARDM-SiT-Tiny", "--ae_name", "fsq", "--ae_model", "AE_Tiny")
    # A preset's ae_model is named with its file, not as a flag the user typed.
    with pytest.raises(CheckpointError, match=r"'AE_Tiny' but --ae_model \(ae_model: FSQ_AE_Tiny in "
                                              r"options/configs/tiny_mardm\.yaml\) is 'FSQ_AE_Tiny'"):
        run("bad_ae_model", "--config", "options/configs/tiny_mardm.yaml", "--model", "MARDM-SiT-Tiny",
            "--ae_name", "ae")
    with pytest.raises(CheckpointError, match="trained on dataset 't2m' but --dataset_name is 'synthetic'"):
        run("bad_dataset", "--model", "FSQ-MARDM-SiT-Tiny", "--ae_name", "fsq_t2m")
    with pytest.raises(ValueError, match="MARDM-SiT-Tiny \\(MARDM\\) needs a tokenizer of kind 'ae'.*kind 'fsq'"):
        run("bad_family", "--model", "MARDM-SiT-Tiny", "--ae_name", "fsq")
    with pytest.raises(ValueError, match="VQ-MARDM-SiT-Tiny \\(VQ-MARDM\\) needs .*'vq'.*'AE_Tiny' of kind 'ae'"):
        run("bad_family_vq", "--model", "VQ-MARDM-SiT-Tiny", "--ae_name", "ae")
    # The suggested commands keep the folders given, so that they run as printed.
    with pytest.raises(CheckpointError, match="none of .*net_best_fid.tar.*--name missing_run --dataset_name "
                                              "synthetic --checkpoints_dir "):
        run("no_tokenizer", "--model", "MARDM-SiT-Tiny", "--ae_name", "missing_run")
    with pytest.raises(SystemExit, match="no usable evaluator for dataset 'synthetic'.*train_evaluator.py "
                                         "--dataset_name synthetic --checkpoints_dir .* --data_root "):
        run("no_evaluator", "--model", "FSQ-MARDM-SiT-Tiny", "--ae_name", "fsq", "--need_evaluation")
    with pytest.raises(ValueError, match="is 'minilm' but --text_encoder is 'clip'"):
        run("bad_encoder", "--model", "FSQ-MARDM-SiT-Tiny", "--ae_name", "fsq", "--text_encoder", "clip")
    for name in ("bad_ae_model", "bad_dataset", "bad_family", "bad_family_vq", "no_tokenizer", "no_evaluator",
                 "bad_encoder"):
        assert not os.path.exists(os.path.join(setup["ckpt"], "synthetic", name)), name

    wide = str(tmp_path / "wide.tar")
    _save_tokenizer(wide, "FSQ_AE_Tiny", get_dataset_spec("t2m_67"), setup["mean"][:67], setup["std"][:67],
                    dataset_name="synthetic")
    with pytest.raises(CheckpointError, match="takes 67 features .* dataset 'synthetic' has 263"):
        load_generator_tokenizer(wide, "FSQ-MARDM-SiT-Tiny", setup["spec"])


def test_tokens_snapping_and_decoding_per_kind(setup, synthetic_root):
    spec = setup["spec"]
    motion = torch.randn(2, 64, spec.dim_pose)
    lengths = torch.tensor([64, 41])
    path = {k: os.path.join(setup["ckpt"], "synthetic", k, "model", "latest.tar") for k in TOKENIZERS}

    fsq = load_generator_tokenizer(path["fsq"], "FSQ-MARDM-SiT-Tiny", spec)
    tokens = tokenize(fsq, motion, lengths)
    assert tokens.lengths.tolist() == [16, 10]
    assert tokens.targets.shape == (2, 16, fsq.model.fsq_dim) and tokens.latents.shape == (2, 16, fsq.latent_dim)
    assert torch.allclose(tokens.latents, fsq.model.fsq_coords_to_latent(tokens.targets))
    snap, to_latent = snap_and_latent_fns(fsq)
    assert torch.equal(snap(tokens.targets), tokens.targets)  # encoder targets already lie on the grid
    noisy = tokens.targets.reshape(-1, fsq.model.fsq_dim) + 0.05 * torch.randn(32, fsq.model.fsq_dim)
    assert torch.equal(snap(noisy), tokens.targets.reshape(-1, fsq.model.fsq_dim))
    assert to_latent(snap(noisy)).shape == (32, fsq.latent_dim)
    assert torch.allclose(decode_targets(fsq, tokens.targets), fsq.model.decode_from_fsq(tokens.targets), atol=1e-6)
    # With lengths, each sample is decoded at its own: the 10-token one as if alone, zero past its 40 frames (decoded
    # whole, the batch's padding reaches into its last frames).
    alone = decode_targets(fsq, tokens.targets[1:, :10])[0]
    per_length = decode_targets(fsq, tokens.targets, tokens.lengths)
    assert torch.allclose(per_length[1, :40], alone, atol=1e-6) and not per_length[1, 40:].any()
    assert torch.allclose(per_length[0], decode_targets(fsq, tokens.targets)[0], atol=1e-6)
    assert not torch.allclose(decode_targets(fsq, tokens.targets)[1, :40], alone, atol=1e-4)

    vq = load_generator_tokenizer(path["vq"], "VQ-MARDM-SiT-Tiny", spec)
    tokens = tokenize(vq, motion, lengths)
    codebook = vq.model.quantizer.codebook
    assert torch.equal(tokens.latents, tokens.targets)
    snap, to_latent = snap_and_latent_fns(vq)
    assert to_latent is None
    snapped = snap(tokens.targets.reshape(-1, codebook.shape[1]) + 1e-4)
    assert torch.equal(snapped, tokens.targets.reshape(-1, codebook.shape[1]))
    assert all((codebook == row).all(-1).any() for row in snap(torch.randn(5, codebook.shape[1])))

    ae = load_generator_tokenizer(path["ae"], "MARDM-SiT-Tiny", spec)
    tokens = tokenize(ae, motion, lengths)
    assert snap_and_latent_fns(ae) == (None, None)
    assert torch.equal(tokens.latents, ae.model.encode(motion)[:, :16])
    assert decode_targets(ae, tokens.latents).shape == (2, 64, spec.dim_pose)


def test_generation_eval_fn_scores_generated_motion(setup, encoder, monkeypatch):
    from utils.eval_data import build_eval_loader
    from utils.evaluator import build_evaluator
    from utils.word_vectorizer import LearnedVocab

    spec, root = setup["spec"], setup["root"]
    tok = load_generator_tokenizer(os.path.join(setup["ckpt"], "synthetic", "fsq", "model", "latest.tar"),
                                   "FSQ-MARDM-SiT-Tiny", spec)
    torch.manual_seed(0)
    evaluator = build_evaluator("synthetic", setup["mean"], setup["std"], sizes="tiny", data_root=root,
                                word_vectors=LearnedVocab.from_split(root, "train", dim_word=8))
    loader = build_eval_loader(evaluator, spec, "train", data_root=root, batch_size=16, progress=False)
    model = MARDM_MODELS["FSQ-MARDM-SiT-Tiny"](tok.latent_dim, tok.model.fsq_dim, encoder.dim, flow_solver="euler",
                                               flow_steps=2).eval()
    eval_fn = make_generation_eval_fn(tok, encoder, evaluator, loader, setup["mean"], setup["std"], time_steps=2,
                                      cfg_scale=2.0, seed=5)
    decoded, decode = [], generator_stage.decode_targets
    monkeypatch.setattr(generator_stage, "decode_targets", lambda *a: decoded.append(a[2:]) or decode(*a))
    with torch.no_grad():
        metrics = eval_fn(model)
    # Validation decodes each sample at its own length, as evaluation_MARDM.py does.
    assert decoded and all(len(extra) == 1 and extra[0].ndim == 1 for extra in decoded)
    assert {"fid", "diversity", "top1", "top2", "top3", "matching_score"} <= set(metrics)
    assert all(np.isfinite(v) for v in metrics.values()) and metrics["fid"] > 0


def test_presets_parse_and_the_tiny_one_targets_an_fsq_run():
    parser = get_train_mardm_parser()
    folder = os.path.join(os.path.dirname(__file__), "..", "options", "configs")
    for preset in ("mardm_sit_xl", "mardm_ddpm_xl", "fsq_mardm_sit_xl", "vq_mardm_sit_xl", "tiny_mardm"):
        values = load_preset(parser, os.path.join(folder, f"{preset}.yaml"))
        assert values["model"] in MARDM_MODELS, preset
    tiny = parse_with_config(parser, ["--config", os.path.join(folder, "tiny_mardm.yaml"), "--name", "t"])
    assert tiny.model == "FSQ-MARDM-SiT-Tiny" and tiny.ae_model == "FSQ_AE_Tiny" and tiny.dataset_name == "synthetic"
    assert tiny.max_iters <= 300
    xl = load_preset(parser, os.path.join(folder, "mardm_sit_xl.yaml"))
    assert xl["lr"] == 2e-4 and xl["milestones"] == [50000] and xl["batch_size"] == 64 and xl["ema_decay"] == 0.9999


@pytest.mark.parametrize("preset", ["mardm_sit_xl", "mardm_ddpm_xl", "fsq_mardm_sit_xl", "vq_mardm_sit_xl"])
def test_presets_leave_the_validation_guidance_to_the_dataset(preset):
    # A preset that pinned cfg 4.5 validated a KIT-ML run (--dataset_name kit) at HumanML3D's guidance.
    path = os.path.join(os.path.dirname(__file__), "..", "options", "configs", f"{preset}.yaml")
    for dataset, guidance in (("t2m_67", 4.5), ("kit", 2.5)):
        args = parse_with_config(get_train_mardm_parser(), ["--config", path, "--name", "x", "--dataset_name", dataset])
        assert args.cfg is None and MARDMBackend.guidance(dataset) == guidance  # train_MARDM.py resolves None so


def test_a_tokenizer_name_and_file_must_agree(tmp_path):
    path = tmp_path / "synthetic" / "tok" / "model" / "latest.tar"
    path.parent.mkdir(parents=True)
    path.write_bytes(b"")
    assert resolve_tokenizer_checkpoint(str(tmp_path), "synthetic", "tok", str(path)).name == "tok"
    assert resolve_tokenizer_checkpoint(str(tmp_path), "synthetic", None, str(path)).name == "tok"
    with pytest.raises(ValueError, match=r"--ae_name 'other' and --ae_ckpt .* \(run 'tok'\) name two tokenizers"):
        resolve_tokenizer_checkpoint(str(tmp_path), "synthetic", "other", str(path))
    download = tmp_path / "net_best_fid.tar"  # a file outside a run folder may be named freely
    download.write_bytes(b"")
    assert resolve_tokenizer_checkpoint(str(tmp_path), "synthetic", "momask_rvq", str(download)).name == "momask_rvq"


def test_resume_refuses_other_tokenizer_weights(tmp_path):
    """A run recorded before tokenizers loaded their EMA weights was trained on the raw ones."""
    latest = str(tmp_path / "latest.tar")
    text = {"name": "clip", "dim": 16}
    save_checkpoint(latest, {"tokenizer": {"path": "tok.tar", "sha256": "ab" * 32}, "text_encoder": text,
                             "target": "latent", "model": {"w": torch.zeros(3)}})
    saved = resume_records(latest, is_continue=True)
    # the records only, not the weights
    assert set(saved) == {"stage", "model_name", "model_args", "tokenizer", "text_encoder", "target", "config"}
    meta = {"tokenizer": {"path": "tok.tar", "sha256": "ab" * 32, "weights": "model"}, "text_encoder": text,
            "target": "latent"}
    check_resume_matches(latest, meta, saved)
    with pytest.raises(CheckpointError, match="trained on the model weights of its tokenizer, but the tokenizer "
                                              "file gives its ema weights"):
        check_resume_matches(latest, {**meta, "tokenizer": {**meta["tokenizer"], "weights": "ema"}}, saved)


def test_resume_warns_when_validation_guidance_changes(tmp_path, caplog):
    """A KIT run validated at --cfg 4.5 (the default before it followed the dataset) and resumed at 2.5 would compare
    its new validation FIDs with a best FID taken at 4.5: the log names both values and the flag that keeps them."""
    latest = str(tmp_path / "latest.tar")
    text = {"name": "clip", "dim": 16}
    tok = {"path": "tok.tar", "sha256": "ab" * 32, "weights": "model"}
    old = {"need_evaluation": True, "cfg": 4.5, "time_steps": 18}
    save_checkpoint(latest, {"tokenizer": tok, "text_encoder": text, "target": "latent", "config": old,
                             "model": {"w": torch.zeros(3)}})
    saved = resume_records(latest, is_continue=True)
    meta = {"tokenizer": tok, "text_encoder": text, "target": "latent"}
    with caplog.at_level("WARNING", logger="utils.generator_stage"):
        check_resume_matches(latest, {**meta, "config": {**old, "cfg": 2.5}}, saved)
        check_resume_matches(latest, {**meta, "config": old}, saved)
        check_resume_matches(latest, {**meta, "config": {**old, "cfg": 2.5, "need_evaluation": False}}, saved)
    assert [r.message for r in caplog.records] == [
        f"{latest}: the run validated with --cfg 4.5, now with --cfg 2.5: its later validation FIDs are compared "
        f"with a best FID (net_best_fid.tar) taken at the earlier settings; add --cfg 4.5 to keep validating as before"]
    # Resuming loads the tokenizer with the weights the run was trained on (raw for runs recorded without them).
    assert resumed_tokenizer_ema(saved) is False
    assert resume_records(latest, is_continue=False) is None and resumed_tokenizer_ema(None) is True
    assert resume_records(str(tmp_path / "none.tar"), is_continue=True) is None
    save_checkpoint(latest, {"tokenizer": {**meta["tokenizer"], "weights": "ema"}})
    assert resumed_tokenizer_ema(resume_records(latest, is_continue=True)) is True


def test_need_evaluation_validates_on_a_small_val_split(setup, encoder, tmp_path, caplog):
    """The synthetic val split holds fewer than 32 evaluation samples: --need_evaluation validates on batches of what
    it has, with a warning (as the tokenizer scripts do), instead of refusing to start."""
    import logging

    from utils.datasets import read_split
    from utils.evaluator import build_evaluator, save_evaluator
    from utils.word_vectorizer import LearnedVocab

    root = setup["root"]
    val = len(read_split(root, "val"))
    assert val < 32
    torch.manual_seed(0)
    evaluator = build_evaluator("synthetic", setup["mean"], setup["std"], sizes="tiny", data_root=root,
                                word_vectors=LearnedVocab.from_split(root, "train", dim_word=8))
    save_evaluator(str(tmp_path / "ev" / "model" / "finest.tar"), evaluator)
    with caplog.at_level(logging.WARNING, logger="utils.eval_protocol"):
        train_MARDM.main(_args(setup, "small_val", "--model", "FSQ-MARDM-SiT-Tiny", "--ae_name", "fsq", "--max_iters",
                               "4", "--eval_every", "4", "--need_evaluation", "--evaluator_dir", str(tmp_path / "ev"),
                               "--time_steps", "2", "--flow_solver", "euler", "--flow_steps", "2", "--val_batches",
                               "1"), text_encoder=encoder)
    assert any("the val split has only" in r.message for r in caplog.records)
    best = load_checkpoint(os.path.join(setup["ckpt"], "synthetic", "small_val", "model", "net_best_fid.tar"))
    assert best["best"]["metric"] == "fid" and np.isfinite(best["metrics"]["fid"])


def test_resume_with_other_model_flags_is_refused_before_opt_yaml_changes(setup, encoder, tmp_path):
    # --cond_drop_prob (and the diffusion head's flags) are model arguments: resumed with another value, the run is
    # refused naming it, and its opt.yaml, which resumes it with --config, still holds the flags it was trained with.
    base = [*COMMON, "--data_root", setup["root"], "--checkpoints_dir", str(tmp_path), "--name", "r", "--model",
            "FSQ-MARDM-SiT-Tiny", "--ae_name", "fsq", "--ae_ckpt",
            os.path.join(setup["ckpt"], "synthetic", "fsq", "model", "latest.tar"), "--eval_every", "100"]
    train_MARDM.main(parse_with_config(get_train_mardm_parser(), [*base, "--max_iters", "2"]), text_encoder=encoder)
    opt_yaml = tmp_path / "synthetic" / "r" / "opt.yaml"
    config = opt_yaml.read_text()
    with pytest.raises(CheckpointError, match="'cond_drop_prob': 0.1 in the checkpoint but 0.3 requested"):
        train_MARDM.main(parse_with_config(get_train_mardm_parser(), [*base, "--max_iters", "4", "--is_continue",
                                                                      "--cond_drop_prob", "0.3"]),
                         text_encoder=encoder)
    assert opt_yaml.read_text() == config
    train_MARDM.main(parse_with_config(get_train_mardm_parser(), ["--config", str(opt_yaml), "--max_iters", "4",
                                                                  "--is_continue"]), text_encoder=encoder)
    assert load_checkpoint(str(opt_yaml.parent / "model" / "latest.tar"))["step"] == 4


def test_head_flags_the_model_would_ignore_are_refused_before_the_run_folder(setup, encoder):
    # --flow_solver / --flow_steps set the SiT head's ODE solver: a DDPM head has none, and dopri5 picks its own steps,
    # so either flag typed for such a model would be recorded in model_args while changing nothing.
    def run(name, *extra):
        return train_MARDM.main(_args(setup, name, "--ae_name", "fsq", "--max_iters", "1", *extra),
                                text_encoder=encoder)

    refused = {
        "ddpm_solver": (("FSQ-MARDM-DDPM-Tiny", "--flow_solver", "heun"), "--flow_solver heun: .* has a DDPM head"),
        "ddpm_steps": (("FSQ-MARDM-DDPM-Tiny", "--flow_steps", "2"), "--flow_steps 2: .* has a DDPM head"),
        "dopri5_steps": (("FSQ-MARDM-SiT-Tiny", "--flow_steps", "2"),
                         "--flow_steps 2: dopri5 chooses its own steps.*--flow_solver euler"),
    }
    for name, ((model, *flags), message) in refused.items():
        with pytest.raises(ValueError, match=message):
            run(name, "--model", model, *flags)
        assert not os.path.exists(os.path.join(setup["ckpt"], "synthetic", name)), name
    # One preset serves both heads (reproduce.py's quick DDPM recipe trains on tiny_mardm.yaml): its solver settings
    # do not stop a DDPM model, and a fixed-step solver takes its steps.
    run("ddpm_preset", "--config", "options/configs/tiny_mardm.yaml", "--model", "FSQ-MARDM-DDPM-Tiny",
        "--ae_model", "FSQ_AE_Tiny")
    run("heun_steps", "--model", "FSQ-MARDM-SiT-Tiny", "--flow_solver", "heun", "--flow_steps", "2")


def test_an_imported_official_autoencoder_trains_a_generator_by_name(setup, encoder, tmp_path):
    """The stage chain from an official file: MARDM's ``{'ae': ...}`` file imports as a run (recording the dataset
    Mean/Std, MARDM's convention), and ``--ae_name`` finds it like any trained run."""
    torch.manual_seed(0)
    model = build_tokenizer("AE_Tiny", input_width=setup["spec"].dim_pose)
    src = str(tmp_path / "latest.tar")
    save_checkpoint(src, {"ae": model.state_dict(), "ep": 3, "total_it": 30})
    tool = load_tool("import_checkpoint")
    tool.main(tool.get_parser().parse_args(["--src", src, "--name", "mardm_ae", "--dataset_name", "synthetic",
                                            "--data_root", setup["root"], "--checkpoints_dir", setup["ckpt"]]))
    train_MARDM.main(_args(setup, "gen_on_import", "--model", "MARDM-SiT-Tiny", "--ae_name", "mardm_ae",
                           "--max_iters", "2", "--eval_every", "2"), text_encoder=encoder)
    state = load_checkpoint(os.path.join(setup["ckpt"], "synthetic", "gen_on_import", "model", "latest.tar"))
    assert state["tokenizer"]["name"] == "mardm_ae" and state["tokenizer"]["kind"] == "ae"
    assert state["tokenizer"]["model_name"] == "AE_Model"
    mean, std = load_mean_std(setup["spec"], setup["root"])
    assert np.array_equal(state["dataset"]["mean"].numpy(), mean)
    assert np.array_equal(state["dataset"]["std"].numpy(), std)


def test_the_padded_mask_count_is_recorded_and_a_run_saved_without_it_resumes(setup, encoder, tmp_path,
                                                                              monkeypatch):
    """--train_mask_count padded (the published presets') is a model argument, counted over the padded length of
    every sample (196 frames / 4 = 49 tokens), not the batch's longest; a run saved before the flag existed (its
    checkpoint records none) resumes with the length count it trained with and keeps its record."""
    import models.mardm as mardm

    draws, draw = [], mardm.sample_training_mask
    monkeypatch.setattr(mardm, "sample_training_mask",
                        lambda *a, **k: draws.append((a[1], k["count"], k["padded_len"])) or draw(*a, **k))
    base = [*COMMON, "--data_root", setup["root"], "--checkpoints_dir", str(tmp_path), "--model",
            "FSQ-MARDM-SiT-Tiny", "--ae_name", "fsq", "--ae_ckpt",
            os.path.join(setup["ckpt"], "synthetic", "fsq", "model", "latest.tar"), "--eval_every", "100"]
    train_MARDM.main(parse_with_config(get_train_mardm_parser(), [*base, "--name", "p", "--max_iters", "2",
                                                                  "--train_mask_count", "padded"]),
                     text_encoder=encoder)
    assert len(draws) >= 2 and {d[1:] for d in draws} == {("padded", 196 // 4)}
    assert all(n <= 49 for n, _, _ in draws)
    latest = tmp_path / "synthetic" / "p" / "model" / "latest.tar"
    assert load_checkpoint(str(latest))["model_args"]["train_mask_count"] == "padded"
    with pytest.raises(CheckpointError, match="'train_mask_count': 'padded' in the checkpoint but 'length' requested"):
        train_MARDM.main(parse_with_config(get_train_mardm_parser(), [*base, "--name", "p", "--max_iters", "4",
                                                                      "--is_continue", "--train_mask_count", "length"]),
                         text_encoder=encoder)

    train_MARDM.main(parse_with_config(get_train_mardm_parser(), [*base, "--name", "old", "--max_iters", "2"]),
                     text_encoder=encoder)
    latest = tmp_path / "synthetic" / "old" / "model" / "latest.tar"
    state = load_checkpoint(str(latest))
    assert state["model_args"].pop("train_mask_count") == "length"
    save_checkpoint(str(latest), state)
    train_MARDM.main(parse_with_config(get_train_mardm_parser(), [*base, "--name", "old", "--max_iters", "4",
                                                                  "--is_continue"]), text_encoder=encoder)
    resumed = load_checkpoint(str(latest))
    assert resumed["step"] == 4 and "train_mask_count" not in resumed["model_args"]


def test_resume_warns_when_the_validation_batches_change(tmp_path, caplog):
    """Another --val_batches makes the later validation losses incomparable with the best so far (net_best_*)."""
    latest = str(tmp_path / "latest.tar")
    text = {"name": "clip", "dim": 16}
    tok = {"path": "tok.tar", "sha256": "ab" * 32, "weights": "model"}
    save_checkpoint(latest, {"tokenizer": tok, "text_encoder": text, "target": "latent",
                             "config": {"val_batches": 0}, "model": {"w": torch.zeros(3)}})
    saved = resume_records(latest, is_continue=True)
    meta = {"tokenizer": tok, "text_encoder": text, "target": "latent"}
    with caplog.at_level("WARNING"):
        check_resume_matches(latest, {**meta, "config": {"val_batches": 0}}, saved)
        check_resume_matches(latest, {**meta, "config": {"val_batches": 1}}, saved)
    assert [r.getMessage() for r in caplog.records] == [
        f"{latest}: the run validated on the whole val split, now on 1 val batch: its later validation scores are "
        f"compared with a best checkpoint (net_best_*.tar) scored on the others; add --val_batches 0 to validate as "
        f"before"]


def test_mardm_validates_at_the_dataset_s_guidance_and_keeps_the_lowest_loss(setup, encoder, monkeypatch):
    """Without ``--cfg`` the run takes MARDM's guidance of the dataset (recorded in its config); without
    ``--need_evaluation`` the engine keeps the lowest validation loss; the loss pads every sample to whole tokens."""
    monkeypatch.setitem(MARDMBackend.dataset_cfg, "synthetic", 3.0)
    seen = _stub_engine(monkeypatch, train_MARDM)
    stubbed = train_MARDM.train
    monkeypatch.setattr(train_MARDM, "train", lambda model, train_set, loss_fn, *a, **kw: (
        seen.update(loss_fn=loss_fn), stubbed(model, train_set, loss_fn, *a, **kw))[1])
    args = _args(setup, "guidance", "--model", "FSQ-MARDM-SiT-Tiny", "--ae_name", "fsq", "--max_iters", "1")
    train_MARDM.main(args, text_encoder=encoder)
    assert args.cfg == 3.0 and seen["checkpoint_meta"]["config"]["cfg"] == 3.0
    assert (seen["cfg"].best_metric, seen["cfg"].best_mode) == ("loss", "min")
    assert seen["cfg"].max_iters == 1
    assert seen["loss_fn"].padded_tokens == setup["spec"].max_motion_length // 4
    typed = _args(setup, "typed", "--model", "FSQ-MARDM-SiT-Tiny", "--ae_name", "fsq", "--max_iters", "1",
                  "--cfg", "1.5")
    train_MARDM.main(typed, text_encoder=encoder)
    assert typed.cfg == 1.5
