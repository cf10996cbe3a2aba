"""train_t2m_transformer.py / train_res_transformer.py on the synthetic data, on a tiny RVQ run trained by train_vq.py:
both train with falling loss and write generator runs, resume exactly, cache codes under the run folder, generate
through load_generator, and refuse contradicting tokenizers and flags naming both sides."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch
from layout_helpers import write_dataset
from test_generation import CLIP_EMBED, save_tokenizer, write_fake_clip

import train_res_transformer
import train_t2m_transformer
import train_vq
from models.mask_transformer import MASK_TRANSFORMERS
from models.res_transformer import RES_TRANSFORMERS
from options.config import load_preset, parse_with_config
from options.token_generator_options import get_train_res_transformer_parser, get_train_t2m_transformer_parser
from options.tokenizer_options import get_train_vq_parser
from utils import token_stage
from utils.checkpoint import CheckpointError, file_sha256, load_checkpoint
from utils.dataset_specs import get_dataset_spec
from utils.datasets import Text2MotionDataset
from utils.generation import load_generator
from utils.generation_momask import MoMaskBackend
from utils.normalization import load_mean_std
from utils.run_dir import RunDir
from utils.token_stage import build_token_cache, load_token_tokenizer, token_cache_path

COMMON = ["--dataset_name", "synthetic", "--batch_size", "8", "--num_workers", "0", "--lr", "1e-3",
          "--warm_up_iter", "3", "--milestones", "1000", "--log_every", "5", "--save_every", "100",
          "--text_encoder", "clip"]
SCRIPTS = {"mask": (train_t2m_transformer, get_train_t2m_transformer_parser, "MoMask-Mask-Tiny"),
           "res": (train_res_transformer, get_train_res_transformer_parser, "MoMask-Res-Tiny")}


@pytest.fixture(scope="module")
def setup(tmp_path_factory, synthetic_root):
    """A checkpoint root with a tiny RVQ run trained by train_vq.py, an untrained VQ and AE run, and a tiny CLIP."""
    ckpt = str(tmp_path_factory.mktemp("momask_ckpt"))
    args = parse_with_config(get_train_vq_parser(), [
        "--dataset_name", "synthetic", "--data_root", synthetic_root, "--checkpoints_dir", ckpt, "--name", "rvq",
        "--model", "RVQVAE_Tiny", "--max_iters", "20", "--batch_size", "16", "--num_workers", "0", "--lr", "2e-3",
        "--warm_up_iter", "5", "--milestones", "1000", "--eval_every", "20", "--save_every", "20",
        "--val_batches", "1"])
    train_vq.main(args)
    save_tokenizer(ckpt, synthetic_root, "vq", "VQVAE_Tiny")
    save_tokenizer(ckpt, synthetic_root, "ae", "AE_Tiny")
    clip = write_fake_clip(os.path.join(ckpt, "clip"))
    return {"ckpt": ckpt, "root": synthetic_root, "clip": clip,
            "rvq": os.path.join(ckpt, "synthetic", "rvq", "model", "net_best_loss.tar")}


def _train(setup, role, name, *extra, checkpoints_dir=None):
    script, parser, model = SCRIPTS[role]
    args = parse_with_config(parser(), [*COMMON, "--clip_path", setup["clip"], "--data_root", setup["root"],
                                        "--checkpoints_dir", checkpoints_dir or setup["ckpt"], "--name", name,
                                        "--model", model, *extra])
    return script.main(args)


def _losses(run_root):
    with open(os.path.join(run_root, "model", "train_log.jsonl")) as f:
        return [json.loads(line)["loss"] for line in f]


STEPS = 40


@pytest.fixture(scope="module")
def trained(setup):
    """Run folders of a masked transformer (codes on the fly) and a residual one (cached codes, frozen codebook
    embeddings), STEPS steps each."""
    _train(setup, "mask", "mask", "--vq_name", "rvq", "--max_iters", str(STEPS), "--eval_every", "10")
    _train(setup, "res", "res", "--vq_name", "rvq", "--max_iters", str(STEPS), "--eval_every", "10", "--cache_tokens",
           "--code_embedding", "codebook")
    return {role: os.path.join(setup["ckpt"], "synthetic", role) for role in ("mask", "res")}


def _check_run(setup, root, role, best):
    """The files, falling loss and checkpoint records every run must have; returns its latest.tar state."""
    for rel in ("opt.yaml", "train.log", "model/latest.tar", f"model/{best}", "model/train_log.jsonl"):
        assert os.path.isfile(os.path.join(root, rel)), rel
    losses = _losses(root)
    assert len(losses) == STEPS
    # Residual codes of a barely trained RVQ are close to uniform: less can be learned from them than from the base.
    assert np.mean(losses[-10:]) < (0.85 if role == "mask" else 0.95) * np.mean(losses[:10])

    state = load_checkpoint(os.path.join(root, "model", "latest.tar"))
    tok_path, registry = setup["rvq"], MASK_TRANSFORMERS if role == "mask" else RES_TRANSFORMERS
    assert state["stage"] == "generator" and state["target"] == "tokens" and state["step"] == STEPS
    assert state["tokenizer"] == {"name": "rvq", "path": tok_path, "sha256": file_sha256(tok_path),
                                  "model_name": "RVQVAE_Tiny", "kind": "rvq",
                                  "weights": "model"}
    assert state["parent"] == {"path": tok_path, "sha256": file_sha256(tok_path)}
    assert state["text_encoder"] == {"name": "clip", "dim": CLIP_EMBED, "path": os.path.abspath(setup["clip"])}
    tok_state = load_checkpoint(tok_path)
    assert torch.equal(state["dataset"]["mean"], tok_state["dataset"]["mean"])
    assert state["config"]["vq_name"] == "rvq" and {"loss", "acc"} <= set(state["metrics"])
    rebuilt = registry[state["model_name"]](**state["model_args"])
    rebuilt.load_state_dict(state["model"])  # strict: only the generator's own weights and buffers
    assert state["model_args"]["codebook_size"] == 32 and state["model_args"]["text_dim"] == CLIP_EMBED
    return state


def test_mask_transformer_trains_and_writes_its_run(setup, trained):
    state = _check_run(setup, trained["mask"], "mask", "net_best_acc.tar")
    assert state["model_name"] == "MoMask-Mask-Tiny" and state["best"]["metric"] == "acc"
    # Validation guidance: MoMask's for the dataset (4; 2 on KIT-ML), recorded as a number.
    assert state["config"]["cond_scale"] == 4.0 and MoMaskBackend.guidance("kit") == 2.0
    assert not os.path.exists(os.path.join(trained["mask"], "tokens"))  # codes on the fly unless asked


def test_residual_transformer_trains_and_writes_its_run(setup, trained):
    state = _check_run(setup, trained["res"], "res", "net_best_loss.tar")
    args = state["model_args"]
    assert (args["num_quantizers"], args["code_embedding"], args["share_weight"]) == (3, "codebook", False)
    assert state["config"]["cond_scale"] == 2.0  # MoMask's trainer validates the residual transformer at 2
    # The input tables are the frozen RVQ codebooks, untouched by training.
    tok = load_token_tokenizer(setup["rvq"], get_dataset_spec("synthetic", setup["root"]), role="res")
    torch.testing.assert_close(state["model"]["codebook_embed"][:, :32],
                               torch.stack([layer.codebook for layer in tok.model.quantizer.layers[:2]]))


def test_trained_runs_generate_through_load_generator(trained):
    gen = load_generator(trained["mask"], which="best", res_run=trained["res"])
    out = gen.generate(["a person walks forward", "a person jumps"], [61, 24], time_steps=4, seed=0)
    assert out.lengths.tolist() == [60, 24] and out.features.shape == (2, 60, 263)
    assert out.tokens.shape == (2, 15, 3)
    assert (out.tokens[0] >= 0).all() and (out.tokens[1, :6] >= 0).all() and (out.tokens[1, 6:] == -1).all()
    assert (out.tokens < 32).all() and out.features[1, 24:].abs().sum() == 0
    assert gen.info["checkpoint"].endswith("net_best_acc.tar")
    assert gen.info["residual"]["checkpoint"].endswith(os.path.join("res", "model", "net_best_loss.tar"))


def test_cached_codes_live_in_the_run_and_match_the_tokenizer(setup, trained, monkeypatch):
    spec = get_dataset_spec("synthetic", setup["root"])
    tok = load_token_tokenizer(setup["rvq"], spec, role="res")
    record = tok.dataset
    dataset = Text2MotionDataset(spec, "val", record["mean"].numpy(), record["std"].numpy(), setup["root"],
                                 unit_length=4, progress=False)
    path = token_cache_path(RunDir(setup["ckpt"], "synthetic", "res"), "val", file_sha256(setup["rvq"]))
    assert os.path.isfile(path) and path.startswith(os.path.join(trained["res"], "tokens"))
    assert not any(f.endswith(".npz") for _, _, files in os.walk(setup["root"]) for f in files)
    codes, offsets = build_token_cache(tok, dataset, path, progress=False, write=False)
    samples = dataset.samples
    assert len(offsets) == len(samples) + 1
    for j in (0, len(samples) - 1):
        n = (samples.stops[j] - samples.starts[j]) // 4
        frames = dataset.index.clip(int(samples.rows[j]), int(samples.starts[j]), int(samples.starts[j]) + 4 * n,
                                    spec.dim_pose)
        motion = torch.from_numpy((frames - dataset.mean) / dataset.std).float()[None]
        assert np.array_equal(codes[offsets[j]:offsets[j + 1]], tok.encode(motion)[0].numpy())
    # The cache is valid for these weights only: under the tokenizer's other weights it is encoded again.
    with np.load(path) as f:
        assert str(f["tokenizer_weights"]) == tok.weights == "model"
    tok.weights = "ema"  # as if the file held EMA weights and they were loaded
    encoded = []
    original = token_stage._encode_samples
    monkeypatch.setattr(token_stage, "_encode_samples", lambda *a: encoded.append(1) or original(*a))
    build_token_cache(tok, dataset, path, progress=False, write=False)
    assert encoded == [1]


class _SignTokenizer(torch.nn.Module):
    """A stand-in tokenizer for the code cache: code of a token = 1 where its first feature's frames sum above 0."""

    unit_length = 4
    weights = "model"

    def __init__(self, source: str) -> None:
        super().__init__()
        self.source = source
        self.anchor = torch.nn.Parameter(torch.zeros(1))

    def encode(self, motion: torch.Tensor) -> torch.Tensor:
        b, t, _ = motion.shape
        return (motion[..., 0].reshape(b, t // 4, 4).sum(-1) > 0).long()


def _two_clips_and_a_sign_tokenizer(tmp_path):
    """(spec, mean, std, tokenizer) of a two-clip t2m-layout dataset under ``tmp_path / "data"``."""
    root = tmp_path / "data"
    write_dataset(root, {"a": 60, "b": 80}, {"train": ["a", "b"]})
    spec = get_dataset_spec("t2m", str(root))
    mean, std = load_mean_std(spec, str(root))
    (tmp_path / "tok.tar").write_bytes(b"weights")
    return spec, mean, std, _SignTokenizer(str(tmp_path / "tok.tar"))


def test_cached_codes_are_encoded_again_when_a_motion_file_changes(tmp_path):
    spec, mean, std, tok = _two_clips_and_a_sign_tokenizer(tmp_path)
    root = tmp_path / "data"
    path = str(tmp_path / "tokens" / "train.npz")
    codes, _ = build_token_cache(tok, Text2MotionDataset(spec, "train", mean, std, progress=False), path,
                                 progress=False)
    # Same clips, same lengths and captions, other frames (a dataset processed again): the codes must follow.
    motion_file = root / "new_joint_vecs" / "a.npy"
    np.save(motion_file, -np.load(motion_file))
    dataset = Text2MotionDataset(spec, "train", mean, std, progress=False)
    again, offsets = build_token_cache(tok, dataset, path, progress=False)
    j = dataset.samples.names.index("a")
    frames = dataset.index.clip(int(dataset.samples.rows[j]), 0, 60, spec.dim_pose)
    expected = tok.encode(torch.from_numpy((frames - mean) / std)[None])[0].numpy()
    assert np.array_equal(again[offsets[j]:offsets[j + 1], 0], expected)
    assert not np.array_equal(again, codes)


@pytest.mark.parametrize("damage", ["half", "empty", "npy"])
def test_a_cut_short_or_foreign_cache_file_is_encoded_again(tmp_path, caplog, damage):
    """A copy stopped midway or a full disk left a cache the run crashed on (BadZipFile, EOFError, naming no file)."""
    spec, mean, std, tok = _two_clips_and_a_sign_tokenizer(tmp_path)
    path = tmp_path / "tokens" / "train.npz"
    dataset = Text2MotionDataset(spec, "train", mean, std, progress=False)
    codes, _ = build_token_cache(tok, dataset, str(path), progress=False)
    data = path.read_bytes()
    if damage == "npy":
        np.save(tmp_path / "lone.npy", np.zeros(3))
        path.write_bytes((tmp_path / "lone.npy").read_bytes())
    else:
        path.write_bytes(data[:len(data) // 2] if damage == "half" else b"")
    with caplog.at_level("WARNING"):
        again, _ = build_token_cache(tok, dataset, str(path), progress=False)
    assert np.array_equal(again, codes)
    assert any(f"{path}: unreadable token cache" in r.getMessage() for r in caplog.records)
    with np.load(path) as f:  # rewritten whole
        assert np.array_equal(f["codes"], codes)


@pytest.mark.parametrize("role,extra", [("mask", []), ("res", ["--cache_tokens"])])
def test_resume_is_bitwise_exact(setup, tmp_path, role, extra):
    base = ["--vq_ckpt", setup["rvq"], "--eval_every", "3", "--save_every", "3", *extra]
    _train(setup, role, "r", *base, "--max_iters", "6", checkpoints_dir=str(tmp_path / "full"))
    _train(setup, role, "r", *base, "--max_iters", "3", checkpoints_dir=str(tmp_path / "part"))
    _train(setup, role, "r", *base, "--max_iters", "6", "--is_continue", checkpoints_dir=str(tmp_path / "part"))
    runs = [str(tmp_path / folder / "synthetic" / "r") for folder in ("full", "part")]
    a, b = (load_checkpoint(os.path.join(r, "model", "latest.tar")) for r in runs)
    assert a["step"] == b["step"] == 6 and a["tokenizer"]["name"] == "rvq"
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key
    assert _losses(runs[0]) == _losses(runs[1])

    # Cached codes are cropped in token space, on-the-fly ones from the motion: switching mid-run changes the data,
    # so it is refused, naming both values, before a cache is built or anything is trained.
    cached = "--cache_tokens" in extra
    flipped = [*base, "--no-cache_tokens" if cached else "--cache_tokens"]
    with pytest.raises(CheckpointError, match=rf"--cache_tokens {cached} but {not cached} now.*"
                                              rf"add {'--cache_tokens' if cached else '--no-cache_tokens'} to"):
        _train(setup, role, "r", *flipped, "--max_iters", "9", "--is_continue", checkpoints_dir=str(tmp_path / "part"))
    assert load_checkpoint(os.path.join(runs[1], "model", "latest.tar"))["step"] == 6
    assert os.path.isdir(os.path.join(runs[1], "tokens")) == cached

    # Resuming on other tokenizer weights is refused before anything is trained or rewritten.
    other = save_tokenizer(str(tmp_path / "other"), setup["root"], "rvq2", "RVQVAE_Tiny")
    moved = [other if a == setup["rvq"] else a for a in base]
    with pytest.raises(CheckpointError, match=r"trained on tokenizer .*, now .*rvq2"):
        _train(setup, role, "r", *moved, "--max_iters", "9", "--is_continue", checkpoints_dir=str(tmp_path / "part"))
    assert load_checkpoint(os.path.join(runs[1], "model", "latest.tar"))["step"] == 6


@pytest.mark.parametrize("cached", [False, True])
def test_the_padded_mask_count_is_taken_over_every_sample_s_padded_length(setup, tmp_path, monkeypatch, cached):
    """--train_mask_count padded counts over 196 / 4 = 49 tokens as MoMask does, whether the batch of codes (encoded
    on the fly or cached) is cut to its longest sample or not; the residual transformer masks nothing."""
    import models.mask_transformer as mt

    draws, draw = [], mt.sample_training_mask
    monkeypatch.setattr(mt, "sample_training_mask",
                        lambda *a, **k: draws.append((a[1], k["count"], k["padded_len"])) or draw(*a, **k))
    _train(setup, "mask", "p", "--vq_ckpt", setup["rvq"], "--max_iters", "2", "--eval_every", "100",
           "--train_mask_count", "padded", *(["--cache_tokens"] if cached else []),
           checkpoints_dir=str(tmp_path))
    assert len(draws) >= 2 and {d[1:] for d in draws} == {("padded", 196 // 4)}
    assert all(n <= 49 for n, _, _ in draws)


def test_contradicting_tokenizers_and_flags_fail_naming_both(setup):
    def run(role, name, *extra):
        _train(setup, role, name, "--max_iters", "2", *extra)

    with pytest.raises(ValueError, match=r"tokenizer run 'vq' .* 'VQVAE_Tiny' with 1 quantizer layer \(Q == 1\)"):
        run("res", "bad_q1", "--vq_name", "vq")
    with pytest.raises(ValueError, match="tokenizer run 'ae' .* kind 'ae', which gives no integer codes"):
        run("mask", "bad_ae", "--vq_name", "ae")
    with pytest.raises(CheckpointError, match="holds 'RVQVAE_Tiny' but --vq_model is 'VQVAE_Tiny'"):
        run("mask", "bad_model", "--vq_name", "rvq", "--vq_model", "VQVAE_Tiny")
    with pytest.raises(CheckpointError, match="--vq_name 'missing': none of"):
        run("mask", "no_tokenizer", "--vq_name", "missing")
    with pytest.raises(SystemExit, match="--share_weight .* --code_embedding codebook"):
        run("res", "bad_embedding", "--vq_name", "rvq", "--code_embedding", "codebook", "--share_weight")
    with pytest.raises(SystemExit, match="no usable evaluator for dataset 'synthetic'"):
        run("mask", "no_evaluator", "--vq_name", "rvq", "--need_evaluation")
    for name in ("bad_q1", "bad_ae", "bad_model", "no_tokenizer", "bad_embedding", "no_evaluator"):
        assert not os.path.exists(os.path.join(setup["ckpt"], "synthetic", name)), name


def test_presets_parse_for_their_scripts():
    folder = os.path.join(os.path.dirname(__file__), "..", "options", "configs")
    mask = load_preset(get_train_t2m_transformer_parser(), os.path.join(folder, "momask_mask.yaml"))
    assert mask["model"] == "MoMask-Mask" and mask["lr"] == 2e-4 and mask["milestones"] == [50000]
    assert mask["batch_size"] == 64 and mask["warm_up_iter"] == 2000 and mask["cond_drop_prob"] == 0.1
    # Validation guidance follows the dataset (4; 2 on KIT-ML), as MoMask's per-epoch evaluation; not pinned to 4.
    for dataset in ("t2m", "kit"):
        argv = ["--config", os.path.join(folder, "momask_mask.yaml"), "--name", "m", "--dataset_name", dataset]
        args = parse_with_config(get_train_t2m_transformer_parser(), argv)
        assert args.cond_scale is None
    res = load_preset(get_train_res_transformer_parser(), os.path.join(folder, "momask_res.yaml"))
    assert res["model"] == "MoMask-Res" and res["share_weight"] is True and res["cond_drop_prob"] == 0.2
    for parser in (get_train_t2m_transformer_parser, get_train_res_transformer_parser):
        tiny = parse_with_config(parser(), ["--config", os.path.join(folder, "tiny_momask.yaml"), "--name", "t"])
        assert tiny.dataset_name == "synthetic" and tiny.vq_model == "RVQVAE_Tiny" and tiny.max_iters <= 500
        assert (tiny.latent_dim, tiny.n_layers) == (64, 2)


@pytest.mark.parametrize("preset, parser", [("momask_mask", get_train_t2m_transformer_parser),
                                            ("momask_res", get_train_res_transformer_parser)])
def test_clip_presets_name_the_clip_weights(preset, parser):
    # As the MARDM presets: the README's stage command runs with the preset alone, not only under reproduce.py,
    # which adds the same --clip_path.
    path = os.path.join(os.path.dirname(__file__), "..", "options", "configs", f"{preset}.yaml")
    args = parse_with_config(parser(), ["--config", path, "--name", "m"])
    assert args.text_encoder == "clip" and args.clip_path == "deps/ViT-B-32.pt"
