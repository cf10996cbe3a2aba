"""Contracts of the generator stage (utils/generator_stage.py) on tiny models and hand-made records: tokenizer lookup,
tokenization and decoding, the generator loss and validation, the records a generator checkpoint holds, text
encoders."""

from __future__ import annotations

import os
from types import SimpleNamespace

import numpy as np
import pytest
import torch

import utils.eval_protocol as ep
from models.loader import Tokenizer
from models.text_encoders import CachedTextEncoder
from models.tokenizers import build_tokenizer
from options.config import parse_with_config
from options.generator_options import get_train_mardm_parser
from utils import generator_stage as gs
from utils import tokenizer_stage as ts
from utils.checkpoint import CheckpointError, file_sha256, save_checkpoint
from utils.dataset_specs import get_dataset_spec
from utils.datasets import TextMotionBatch

PATH = "/runs/x/model/latest.tar"
# ------------------------------------------------------------------------------------------------ tokenizer lookup

def _touch(path):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    open(path, "wb").close()
    return path


def test_best_takes_fid_then_loss_then_latest(tmp_path):
    """--ae_which best prefers net_best_fid.tar over net_best_loss.tar over latest.tar."""
    model_dir = tmp_path / "d" / "run" / "model"
    _touch(str(model_dir / "latest.tar"))
    assert gs.resolve_tokenizer_checkpoint(str(tmp_path), "d", "run").path.endswith("latest.tar")
    _touch(str(model_dir / "net_best_loss.tar"))
    assert gs.resolve_tokenizer_checkpoint(str(tmp_path), "d", "run").path.endswith("net_best_loss.tar")
    _touch(str(model_dir / "net_best_fid.tar"))
    ref = gs.resolve_tokenizer_checkpoint(str(tmp_path), "d", "run")
    assert ref == gs.TokenizerRef(str(model_dir / "net_best_fid.tar"), "run")


def test_a_checkpoint_file_outside_a_run_takes_the_given_name(tmp_path):
    """A downloaded file may be named freely; inside a run folder the run name comes from the folder."""
    path = _touch(str(tmp_path / "download.tar"))
    assert gs.resolve_tokenizer_checkpoint(str(tmp_path), "d", "mine", path) == gs.TokenizerRef(path, "mine")
    assert gs.resolve_tokenizer_checkpoint(str(tmp_path), "d", None, path).name == "download"
    in_run = _touch(str(tmp_path / "d" / "runA" / "model" / "latest.tar"))
    assert gs.resolve_tokenizer_checkpoint(str(tmp_path), "d", None, in_run).name == "runA"
    with pytest.raises(ValueError, match=r"--vq_name 'other' and --vq_ckpt .* \(run 'runA'\) name two tokenizers"):
        gs.resolve_tokenizer_checkpoint(str(tmp_path), "d", "other", in_run, flag="vq")


def test_a_missing_checkpoint_file_or_which_is_refused(tmp_path):
    """A missing --ae_ckpt and an unknown --ae_which are refused naming the flag."""
    with pytest.raises(CheckpointError, match=r"--ae_ckpt: tokenizer checkpoint not found: .*nope.tar"):
        gs.resolve_tokenizer_checkpoint(str(tmp_path), "d", None, str(tmp_path / "nope.tar"))
    with pytest.raises(ValueError, match=r"--ae_which must be one of .*got 'finest'"):
        gs.resolve_tokenizer_checkpoint(str(tmp_path), "d", "run", which="finest")


def test_missing_net_best_fid_in_an_empty_run_is_reported_as_missing_file(tmp_path):
    """--ae_which net_best_fid with no files at all reports the missing file (found nothing), not the FID hint."""
    with pytest.raises(CheckpointError) as e:
        gs.resolve_tokenizer_checkpoint(str(tmp_path), "d", "run", which="net_best_fid")
    assert "no net_best_fid.tar in" in str(e.value) and "found nothing" in str(e.value)
    assert "--need_evaluation" not in str(e.value)


def test_generator_runs_record_which_tokenizer_weights_they_trained_on(tmp_path):
    """Only a record saying 'ema' counts as trained on EMA weights; a resumed run keeps its weights; a new one takes
    EMA; a missing latest file gives no records."""
    assert gs.trained_on_ema({"tokenizer": {"weights": "ema"}})
    assert not gs.trained_on_ema({}) and not gs.trained_on_ema({"tokenizer": {"weights": "model"}})
    assert not gs.resumed_tokenizer_ema({"tokenizer": {"weights": "model"}})
    assert not gs.resumed_tokenizer_ema({"tokenizer": None})
    assert gs.resumed_tokenizer_ema(None)
    assert gs.resume_records(str(tmp_path / "latest.tar"), True) is None


# ------------------------------------------------------------------------------------------------ tokens

def _tokenizer(name="AE_Tiny"):
    spec = get_dataset_spec("synthetic")
    torch.manual_seed(0)
    model = build_tokenizer(name, input_width=spec.dim_pose)
    if model.kind == "vq":
        model.train()
        model(torch.randn(4, 64, spec.dim_pose))
    rec = ts.dataset_record(spec, np.zeros(spec.dim_pose), np.ones(spec.dim_pose))
    return Tokenizer(model, name, "mem.tar", dataset=rec, weights="ema"), spec


def test_grid_tokenizers_give_latent_then_grid_dims():
    """FSQ: the transformer input is the latent width, the target the grid width."""
    tok, _ = _tokenizer("FSQ_AE_Tiny")
    dims = gs.token_dims(tok)
    assert dims == (tok.latent_dim, tok.model.grid_dim) and dims.ae_dim != dims.target_dim


def test_tokenize_pads_to_whole_tokens_and_cuts_to_the_longest_floor_length():
    """A T not divisible by the unit is padded (the encoding equals that of the zero-padded motion); lengths are
    floored to tokens and latents cut to the longest."""
    tok, spec = _tokenizer()
    unit = tok.unit_length
    g = torch.Generator().manual_seed(0)
    motion = torch.randn(2, 4 * unit + 1, spec.dim_pose, generator=g)
    lengths = torch.tensor([2 * unit + unit - 1, 3 * unit])
    batch = gs.tokenize(tok, motion, lengths)
    assert batch.lengths.tolist() == [2, 3] and batch.latents.shape[1] == 3
    padded = torch.nn.functional.pad(motion, (0, 0, 0, unit - 1))
    full = tok.model.encode(padded)
    torch.testing.assert_close(batch.latents, full[:, :3])


def test_decoding_each_length_does_not_depend_on_the_batch():
    """A short sample decodes the same alone and next to a longer one; frames past its length are zero."""
    unit, width = 2, 3

    def decode(tokens):  # each frame depends on every later token, as padding-reading convolutions do
        summed = tokens.flip(1).cumsum(1).flip(1)
        return summed.repeat_interleave(unit, dim=1)[..., :width]

    tokens = torch.arange(1.0, 13.0).reshape(2, 2, 3)
    out = gs.decode_each_length(decode, tokens, torch.tensor([1, 2]), unit, width)
    alone = decode(tokens[:1, :1])
    torch.testing.assert_close(out[0, :unit], alone[0])
    assert out[0, unit:].abs().sum() == 0
    torch.testing.assert_close(out[1], decode(tokens[1:])[0])


def test_decode_targets_snaps_grid_coordinates_and_decodes_each_length():
    """Off-grid FSQ coordinates decode as their snapped point; with lengths the frames past a sample are zero."""
    tok, _ = _tokenizer("FSQ_AE_Tiny")
    g = torch.Generator().manual_seed(0)
    coords = tok.model.quantizer.snap_to_grid(torch.rand(2, 3, tok.model.grid_dim, generator=g) * 2 - 1)
    near = coords + 0.02
    torch.testing.assert_close(gs.decode_targets(tok, near), gs.decode_targets(tok, coords))
    out = gs.decode_targets(tok, coords, torch.tensor([1, 3]))
    unit = tok.unit_length
    assert out[0, unit:].abs().sum() == 0
    torch.testing.assert_close(out[0, :unit], gs.decode_targets(tok, coords[:1, :1])[0], rtol=1e-4, atol=1e-5)


# ------------------------------------------------------------------------------------------------ loss and records

class _Echo(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.p = torch.nn.Parameter(torch.zeros(()))
        self.padded = []

    def forward(self, latents, targets, lengths, text_emb, padded_len=None):
        self.padded.append(padded_len)
        loss = latents.new_tensor(float(lengths.sum()))
        return loss, {"loss": loss}


class _Text:
    name, dim = "fake", 4

    def encode(self, captions):
        return torch.zeros(len(captions), 4)


def test_generator_loss_passes_the_padded_token_count():
    """GeneratorLoss gives the model padded_len = padded_tokens."""

    tok, spec = _tokenizer()
    model = _Echo()
    batch = TextMotionBatch(["a", "b"], torch.zeros(2, 16, spec.dim_pose), torch.tensor([16, 8]))
    loss, _ = gs.GeneratorLoss(tok, _Text(), padded_tokens=49)(model, batch)
    assert model.padded == [49] and float(loss) == 16 / tok.unit_length + 8 / tok.unit_length


def test_validation_loss_is_weighted_by_batch_size_and_reseeded():
    """The val loss is the per-sample mean over the whole set (a smaller last batch counts for its size), and the
    seed is reset before every validation."""

    def loss_fn(model, batch):
        return batch.motion[:, 0, 0].mean() + torch.rand(()) * 0, {}

    class Data(torch.utils.data.Dataset):
        def __len__(self):
            return 3

        def __getitem__(self, i):
            return "c", torch.full((2, 1), float(i)), 2

    seen = []

    def recording(model, batch):
        seen.append(torch.rand(()).item())
        return loss_fn(model, batch)

    val = gs.make_val_loss_fn(recording, Data(), batch_size=2, seed=7)
    first = val(_Echo())
    assert first["loss"] == pytest.approx(1.0)
    val(_Echo())
    assert seen[:2] == seen[2:]
    assert gs.make_val_loss_fn(loss_fn, Data(), batch_size=2, max_batches=1)(_Echo())["loss"] == pytest.approx(0.5)


def test_generator_checkpoint_meta_records_the_tokenizer_run_weights_and_parent(tmp_path):
    """The tokenizer entry names the run (ref.name), its file hash and the weights loaded; parent is the file."""

    tok, spec = _tokenizer()
    path = str(tmp_path / "tok.tar")
    save_checkpoint(path, {"x": 1})
    tok.weights = "model"
    meta = gs.generator_checkpoint_meta("MARDM-SiT-Tiny", {}, spec, tok, gs.TokenizerRef(path, "runA"),
                                        {"name": "minilm"}, {})
    assert meta["tokenizer"]["name"] == "runA" and meta["tokenizer"]["weights"] == "model"
    assert meta["parent"] == {"path": path, "sha256": file_sha256(path)} == {"path": path,
                                                                              "sha256": meta["tokenizer"]["sha256"]}
    assert meta["target"] == "latent" and meta["stage"] == "generator"


def test_generation_eval_scores_whole_tokens_of_at_least_one(monkeypatch):
    """Training-time generation asks for m_lengths // unit tokens (at least 1), decodes each at its own length and
    reports tokens * unit frames."""

    tok, spec = _tokenizer()
    unit = tok.unit_length
    asked, decoded = {}, {}

    class Gen(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.p = torch.nn.Parameter(torch.zeros(()))

        def generate(self, tokens, text_emb, **kw):
            asked["tokens"] = tokens.tolist()
            return torch.zeros(len(tokens), int(tokens.max()), tok.latent_dim)

    real_decode = gs.decode_targets

    def spy_decode(tokenizer, targets, lengths=None):
        decoded["lengths"] = None if lengths is None else lengths.tolist()
        return real_decode(tokenizer, targets, lengths)

    monkeypatch.setattr(gs, "decode_targets", spy_decode)

    def fake_evaluate(evaluator, loader, motion_fn, replications, seed, progress):
        motion, lengths = motion_fn(next(iter(loader)))
        decoded["out_lengths"] = lengths.tolist()
        return SimpleNamespace(metrics={"fid": SimpleNamespace(mean=0.0)})

    monkeypatch.setattr(ep, "evaluate", fake_evaluate)
    evaluator = SimpleNamespace(mean=np.zeros(spec.dim_pose), std=np.ones(spec.dim_pose), to=lambda d: None)
    batch = SimpleNamespace(captions=["a", "b"], m_lengths=torch.tensor([unit - 1, 2 * unit + 1]))
    fn = gs.make_generation_eval_fn(tok, _Text(), evaluator, [batch], np.zeros(spec.dim_pose),
                                    np.ones(spec.dim_pose), time_steps=2, cfg_scale=1.0)
    assert fn(Gen()) == {"fid": 0.0}
    assert asked["tokens"] == [1, 2] and decoded["lengths"] == [1, 2]
    assert decoded["out_lengths"] == [unit, 2 * unit]


def _save_tok(path, spec, name="AE_Tiny", dataset_name=None, width=None, stats_dim=None):
    torch.manual_seed(0)
    model = build_tokenizer(name, input_width=width or spec.dim_pose)
    if model.kind == "vq":
        model.train()
        model(torch.randn(2, 16, model.input_width))
    d = stats_dim or spec.dim_pose
    rec = ts.dataset_record(spec, np.zeros(d), np.ones(d))
    if dataset_name:
        rec["name"] = dataset_name
    save_checkpoint(path, {"stage": "tokenizer", "model_name": name, "model_args": dict(model.model_args),
                           "model": model.state_dict(), "dataset": rec, "config": {}, "parent": None, "step": 0})
    return path


def test_stage_tokenizer_checks_name_dataset_width_and_kind(tmp_path):
    """The frozen tokenizer is refused, naming both sides, for another registry name, another dataset, another
    feature width (model or statistics), and a kind that does not fit the generator family."""
    spec = get_dataset_spec("synthetic")
    ok = _save_tok(str(tmp_path / "ok.tar"), spec)
    assert gs.load_generator_tokenizer(ok, "MARDM-SiT-Tiny", spec, "AE_Tiny").model_name == "AE_Tiny"
    with pytest.raises(CheckpointError, match=r"holds 'AE_Tiny' but --ae_model is 'FSQ_AE_Tiny'"):
        gs.load_generator_tokenizer(ok, "MARDM-SiT-Tiny", spec, "FSQ_AE_Tiny")
    other = _save_tok(str(tmp_path / "t2m.tar"), spec, dataset_name="t2m")
    with pytest.raises(CheckpointError, match=r"trained on dataset 't2m' but --dataset_name is 'synthetic'"):
        gs.load_stage_tokenizer(other, spec, None, "--ae_model")
    stats = _save_tok(str(tmp_path / "stats.tar"), spec, stats_dim=10)
    with pytest.raises(CheckpointError, match=r"takes 263 features \(mean/std \(\(10,\), \(10,\)\)\) but dataset"):
        gs.load_stage_tokenizer(stats, spec, None, "--ae_model")
    with pytest.raises(ValueError, match=r"needs a tokenizer of kind 'fsq', but .* of kind 'ae'; a 'ae' tokenizer "
                                         r"fits MARDM-\* models"):
        gs.load_generator_tokenizer(ok, "FSQ-MARDM-SiT-Tiny", spec)


def test_residual_tokenizers_train_no_generator():
    """token_dims refuses an RVQ tokenizer (no generator family trains on it)."""
    tok, _ = _tokenizer("RVQVAE_Tiny")
    with pytest.raises(ValueError, match=r"no generator family is trained on a 'rvq' tokenizer"):
        gs.token_dims(tok)


class _FakeEncoder(torch.nn.Module):
    name, dim = "fake", 2

    def __init__(self):
        super().__init__()
        self.seen = []

    @property
    def device(self):
        return torch.device("cpu")

    def encode(self, texts):
        self.seen.extend(texts)
        return torch.zeros(len(texts), 2)


def test_text_encoder_helpers(tmp_path):
    """A prebuilt encoder of another kind is refused; a cached one keeping its cache elsewhere is refused; the
    record has a path for CLIP only; warm_caption_cache encodes each distinct caption once; dataset_captions lists
    every caption in sample order."""

    with pytest.raises(ValueError, match=r"passed in is 'fake' but --text_encoder is 'minilm'"):
        gs.resolve_text_encoder("minilm", prebuilt=_FakeEncoder())
    cached = CachedTextEncoder(_FakeEncoder(), None)
    with pytest.raises(ValueError, match=r"keeps its cache at None, not --text_cache"):
        gs.resolve_text_encoder("fake", cache_path=str(tmp_path / "c.pt"), prebuilt=cached)
    assert gs.resolve_text_encoder("fake", prebuilt=cached) is cached
    assert gs.text_encoder_record(_FakeEncoder(), clip_path="~/ViT-B-32.pt") == {"name": "fake", "dim": 2,
                                                                                 "path": None}
    inner = _FakeEncoder()
    gs.warm_caption_cache(CachedTextEncoder(inner, None), ["a", "b", "a", "c"], batch_size=2, progress=False)
    assert sorted(inner.seen) == ["a", "b", "c"]
    entry = lambda c: SimpleNamespace(caption=c)  # noqa: E731
    data = SimpleNamespace(samples=SimpleNamespace(captions=[[entry("x"), entry("y")], [entry("z")]]))
    assert gs.dataset_captions(data) == ["x", "y", "z"]


def test_typed_tokenizer_replaces_only_the_presets_other_flag():
    """A typed --ae_ckpt clears the preset's ae_name; with both typed, both are kept for the resolver to check."""

    args = parse_with_config(get_train_mardm_parser(), ["--config", "options/configs/tiny_mardm.yaml",
                                                        "--ae_ckpt", "x.tar", "--name", "n"])
    gs.tokenizer_from_command_line(args)
    assert args.ae_ckpt == "x.tar" and args.ae_name is None
    args = parse_with_config(get_train_mardm_parser(), ["--config", "options/configs/tiny_mardm.yaml",
                                                        "--ae_ckpt", "x.tar", "--ae_name", "run", "--name", "n"])
    gs.tokenizer_from_command_line(args)
    assert args.ae_ckpt == "x.tar" and args.ae_name == "run"


def test_generation_eval_uses_the_given_seed(monkeypatch):
    """protocol_eval_fn runs the protocol with the seed it was given."""

    got = {}

    def fake_evaluate(evaluator, loader, motion_fn, replications, seed, progress):
        got["seed"], got["replications"] = seed, replications
        return SimpleNamespace(metrics={"fid": SimpleNamespace(mean=2.0)})

    monkeypatch.setattr(ep, "evaluate", fake_evaluate)
    tok, _ = _tokenizer()
    fn = gs.protocol_eval_fn(tok, SimpleNamespace(to=lambda d: None), [], lambda m, d: None, seed=1234)
    assert fn(_Echo()) == {"fid": 2.0} and got == {"seed": 1234, "replications": 1}
