"""What the generator stage hands on (the generator's inputs and targets per tokenizer kind, the statistics and
records a generator checkpoint keeps, what training-time evaluation passes to the evaluator) and the evaluator stage's
checks of its batch and its tracking of the best validation loss."""

from __future__ import annotations

import logging
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from test_evaluator_stage_contracts import (  # noqa: F401 (data_root is a fixture)
    _adam_after,
    _Matched,
    _stats,
    _tiny_evaluator,
    _val_loader,
    data_root,
)
from test_generator_stage_contracts import _Echo, _FakeEncoder, _save_tok, _tokenizer

import utils.eval_protocol as ep
from models.evaluator_training import CoEmbedding
from models.text_encoders import CachedTextEncoder
from utils import generator_stage as gs
from utils import tokenizer_stage as ts
from utils.checkpoint import CheckpointError, save_checkpoint
from utils.dataset_specs import get_dataset_spec
from utils.datasets import TextMotionBatch
from utils.evaluator_stage import CoEmbeddingValidation, check_window_and_batch, load_pretraining_windows


def _with_statistics(tok, spec, seed=1):
    """``tok`` recording a distinct, non-trivial mean and std."""
    g = torch.Generator().manual_seed(seed)
    mean = torch.randn(spec.dim_pose, generator=g).numpy()
    std = (torch.rand(spec.dim_pose, generator=g) + 0.5).numpy()
    tok.dataset = ts.dataset_record(spec, mean, std)
    return tok, mean, std


# ---------------------------------------------------------------------------------------------------------------------
# Targets per kind
# ---------------------------------------------------------------------------------------------------------------------

def test_grid_tokenizers_train_on_grid_coordinates_cut_to_the_longest_sample():
    """FSQ: targets are the grid coordinates (grid_dim wide), latents what the decoder sees of them; both cut to the
    longest sample's tokens."""
    tok, spec = _tokenizer("FSQ_AE_Tiny")
    unit = tok.unit_length
    motion = torch.randn(2, 4 * unit, spec.dim_pose, generator=torch.Generator().manual_seed(0))
    batch = gs.tokenize(tok, motion, torch.tensor([unit, 2 * unit]))
    encoding = tok.model.encode_with_grid_output(motion)
    assert batch.targets.shape == (2, 2, tok.model.grid_dim)
    torch.testing.assert_close(batch.targets, encoding.coords[:, :2])
    torch.testing.assert_close(batch.latents, encoding.latent[:, :2])
    torch.testing.assert_close(tok.model.quantizer.snap_to_grid(batch.targets), batch.targets)


def test_vq_tokenizers_train_on_codebook_vectors():
    """VQ: latents and targets are the same quantized vectors, each a row of the codebook."""
    tok, spec = _tokenizer("VQVAE_Tiny")
    unit = tok.unit_length
    motion = torch.randn(2, 3 * unit, spec.dim_pose, generator=torch.Generator().manual_seed(0))
    batch = gs.tokenize(tok, motion, torch.tensor([3 * unit, unit]))
    want = tok.model.quantizer.lookup(tok.model.encode(motion))  # encode gives the code indices (B, N)
    assert batch.targets.shape == (2, 3, tok.latent_dim) and batch.targets.is_floating_point()
    torch.testing.assert_close(batch.targets, want)
    torch.testing.assert_close(batch.latents, want)


def test_motion_shorter_than_one_token_still_gives_one_position():
    """Every sample under one token long: lengths 0 tokens, but latents keep one position (never an empty axis)."""
    tok, spec = _tokenizer()
    unit = tok.unit_length
    batch = gs.tokenize(tok, torch.zeros(2, 2 * unit, spec.dim_pose), torch.tensor([unit - 1, 1]))
    assert batch.lengths.tolist() == [0, 0]
    assert batch.latents.shape[:2] == (2, 1) and batch.targets.shape[:2] == (2, 1)


def test_text_embeddings_follow_the_caption_order():
    """GeneratorLoss encodes the batch's captions in order, row i for caption i."""

    class Text:
        name, dim = "fake", 1

        def encode(self, captions):
            return torch.tensor([[float(len(c))] for c in captions])

    tok, spec = _tokenizer()
    batch = TextMotionBatch(["a", "bbb"], torch.zeros(2, 8, spec.dim_pose), torch.tensor([8, 8]))
    inputs = gs.GeneratorLoss(tok, Text()).inputs(batch)
    assert inputs.text_emb[:, 0].tolist() == [1.0, 3.0]


# ---------------------------------------------------------------------------------------------------------------------
# Records
# ---------------------------------------------------------------------------------------------------------------------

def test_statistics_are_the_tokenizers_recorded_mean_and_std():
    """tokenizer_statistics returns (mean, std) as float32 arrays, each the recorded one."""
    tok, spec = _tokenizer()
    tok, mean, std = _with_statistics(tok, spec)
    got_mean, got_std = gs.tokenizer_statistics(tok)
    assert got_mean.dtype == got_std.dtype == np.float32
    np.testing.assert_allclose(got_mean, mean)
    np.testing.assert_allclose(got_std, std)


def test_generator_checkpoint_records_the_tokenizers_statistics(tmp_path):
    """The generator checkpoint's dataset entry holds the tokenizer's mean and std (not recomputed, not swapped)."""
    tok, spec = _tokenizer()
    tok, mean, std = _with_statistics(tok, spec)
    path = str(tmp_path / "tok.tar")
    save_checkpoint(path, {"x": 1})
    meta = gs.generator_checkpoint_meta("MARDM-SiT-Tiny", {}, spec, tok, gs.TokenizerRef(path, "run"),
                                        {"name": "fake"}, {"lr": 1.0})
    assert meta["dataset"]["name"] == spec.name
    np.testing.assert_allclose(meta["dataset"]["mean"].numpy(), mean)
    np.testing.assert_allclose(meta["dataset"]["std"].numpy(), std)
    assert meta["config"] == {"lr": 1.0}


def test_resume_records_are_every_record_but_the_weights(tmp_path):
    """resume_records reads the run's stage, model, tokenizer, text encoder, target and config, not its weights."""
    latest = str(tmp_path / "latest.tar")
    state = {key: f"saved {key}" for key in gs.RESUME_RECORDS}
    save_checkpoint(latest, {**state, "model": {"w": torch.zeros(2)}})
    assert gs.resume_records(latest, is_continue=True) == state
    assert gs.resume_records(latest, is_continue=False) is None


def test_the_clip_record_holds_the_absolute_weights_path(tmp_path, monkeypatch):
    """A CLIP text encoder records the absolute, user-expanded path of its weights."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    clip = SimpleNamespace(name="clip", dim=512)
    assert gs.text_encoder_record(clip, "w/ViT-B-32.pt")["path"] == str(tmp_path / "w" / "ViT-B-32.pt")
    assert gs.text_encoder_record(clip, "~/ViT-B-32.pt")["path"] == str(tmp_path / "home" / "ViT-B-32.pt")


def test_a_tokenizer_record_without_a_dataset_name_is_refused(tmp_path):
    """A dataset record naming no dataset does not pass as the dataset given with --dataset_name."""
    spec = get_dataset_spec("synthetic")
    path = _save_tok(str(tmp_path / "tok.tar"), spec)
    state = torch.load(path, weights_only=True)
    del state["dataset"]["name"]
    save_checkpoint(path, state)
    with pytest.raises(CheckpointError, match=r"trained on dataset None but --dataset_name is 'synthetic'"):
        gs.load_stage_tokenizer(path, spec, None, "--ae_model")


def test_warming_the_caption_cache_logs_the_distinct_captions(caplog):
    """The log counts each caption once, however often the dataset repeats it."""
    inner = _FakeEncoder()
    with caplog.at_level(logging.INFO, logger="utils.generator_stage"):
        gs.warm_caption_cache(CachedTextEncoder(inner, None), ["a", "b", "a", "a"], batch_size=2, progress=False)
    assert "fake: 2 distinct captions, 2 newly encoded" in caplog.text


# ---------------------------------------------------------------------------------------------------------------------
# Training-time evaluation
# ---------------------------------------------------------------------------------------------------------------------

def test_generated_motion_is_renormalised_from_the_tokenizer_to_the_evaluator_statistics(monkeypatch):
    """The evaluator receives decoded motion de-normalised with the generator's statistics and re-normalised with
    its own."""
    tok, spec = _tokenizer()
    unit = tok.unit_length
    g = torch.Generator().manual_seed(3)
    mean, std = torch.randn(spec.dim_pose, generator=g).numpy(), (torch.rand(spec.dim_pose, generator=g) + 0.5).numpy()
    ev_mean, ev_std = torch.randn(spec.dim_pose, generator=g).numpy(), (torch.rand(spec.dim_pose) + 0.5).numpy()
    targets = torch.randn(1, 2, tok.latent_dim, generator=g)

    class Gen(_Echo):
        def generate(self, tokens, text_emb, **kw):
            return targets

    got = {}

    def fake_evaluate(evaluator, loader, motion_fn, replications, seed, progress):
        got["motion"], _ = motion_fn(next(iter(loader)))
        return SimpleNamespace(metrics={})

    monkeypatch.setattr(ep, "evaluate", fake_evaluate)
    evaluator = SimpleNamespace(mean=ev_mean, std=ev_std, to=lambda d: None)
    batch = SimpleNamespace(captions=["a"], m_lengths=torch.tensor([2 * unit]))

    class Text:
        def encode(self, captions):
            return torch.zeros(len(captions), 4)

    gs.make_generation_eval_fn(tok, Text(), evaluator, [batch], mean, std, time_steps=1, cfg_scale=1.0)(Gen())
    decoded = gs.decode_targets(tok, targets, torch.tensor([2]))
    want = (decoded * torch.as_tensor(std) + torch.as_tensor(mean) - torch.as_tensor(ev_mean)) / torch.as_tensor(ev_std)
    torch.testing.assert_close(torch.as_tensor(got["motion"]).float(), want.float(), rtol=1e-4, atol=1e-4)


# ---------------------------------------------------------------------------------------------------------------------
# Evaluator stage
# ---------------------------------------------------------------------------------------------------------------------

def test_fewer_than_two_captions_per_process_are_refused_naming_the_batch(monkeypatch):
    """--batch_size 1 on one process, or 7 over 4 processes (1 each), is refused before any training."""
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    with pytest.raises(ValueError, match=r"--batch_size 1 over 1 process\(es\) gives 1 caption\(s\) per process"):
        check_window_and_batch(24, 1)
    monkeypatch.setenv("WORLD_SIZE", "4")
    with pytest.raises(ValueError, match=r"--batch_size 7 over 4 process\(es\) gives 1 caption"):
        check_window_and_batch(24, 7)


def test_a_finest_removed_during_a_run_is_written_again_without_raising_the_best_loss(data_root, tmp_path):  # noqa: F811
    """A validation that finds no finest.tar writes one even at a higher loss, but the best loss stays the lowest
    seen, so a later validation between the two does not count as an improvement."""
    ev = _tiny_evaluator(data_root)
    model = CoEmbedding(ev.model).eval()
    finest = tmp_path / "finest.tar"
    validate = CoEmbeddingValidation(_val_loader(data_root, ev), ev, str(finest), {}, [_adam_after(model, 1)], seed=7,
                                     margin=3.0, steps_per_epoch=1, resume=False)
    with torch.no_grad():
        low = validate(_Matched(model))["val_loss"]
        finest.unlink()
        high = validate(model)["val_loss"]
    assert high > low and finest.is_file()
    assert validate.best_val_loss == low


def test_a_split_smaller_than_a_batch_is_not_blamed_on_the_pretrain_window(data_root):  # noqa: F811
    """When every clip fits the window, a train split of fewer clips than --batch_size gets its windows (the engine
    refuses the batch size, naming it), not an error about --pretrain_window."""
    spec = get_dataset_spec("synthetic", str(data_root))
    mean, std = _stats(data_root)
    windows = load_pretraining_windows(spec, mean, std, window=8, batch_size=64, data_root=str(data_root))
    assert len(windows) == 40 and windows[0].shape == (8, spec.dim_pose)
