"""Sampling through ``MotionGenerator`` on stand-in models: length rounding, denormalisation and padding, seeding,
editing (one span and span by span, with and without root anchoring) and the length estimator's checks."""

from __future__ import annotations

import logging
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from generation_stubs import UNIT, D, StubEncoder, make_gen, source

import utils.generation as generation
from utils.checkpoint import CheckpointError
from utils.generation import _caption_list
from utils.generation_momask import MoMaskBackend

# ---------------------------------------------------------------------------------------------------------------------
# Lengths
# ---------------------------------------------------------------------------------------------------------------------

def test_lengths_round_down_to_whole_tokens_and_clamp_to_the_whole_token_maximum():
    gen = make_gen(max_motion_length=50)
    assert gen.max_frames == 48
    assert gen.round_lengths([4, 7.9, 13, 48, 60]).tolist() == [4, 4, 12, 48, 48]


def test_one_token_is_the_shortest_length():
    gen = make_gen()
    assert gen.round_lengths([UNIT]).tolist() == [UNIT]
    with pytest.raises(ValueError, match="at least one token"):
        gen.round_lengths([UNIT - 1])


def test_a_length_at_the_maximum_is_not_reported_as_clamped(caplog):
    gen = make_gen(max_motion_length=48)
    with caplog.at_level(logging.WARNING, logger="utils.generation"):
        gen.round_lengths([48])
    assert not [r for r in caplog.records if "exceed" in r.getMessage()]
    with caplog.at_level(logging.WARNING, logger="utils.generation"):
        gen.round_lengths([52])
    assert [r for r in caplog.records if "exceed" in r.getMessage()]


# ---------------------------------------------------------------------------------------------------------------------
# Generation
# ---------------------------------------------------------------------------------------------------------------------

def test_generated_features_are_denormalised_and_zero_past_each_length():
    gen = make_gen()
    out = gen.generate(["a", "bb"], [8, 16], seed=0)
    assert out.lengths.tolist() == [8, 16]
    assert out.features.shape == (2, 16, D)
    assert gen.backend.sample_calls[0]["token_lengths"].tolist() == [2, 4]
    expected = out.features_normalised * torch.as_tensor(gen.std) + torch.as_tensor(gen.mean)
    torch.testing.assert_close(out.features[1], expected[1])
    torch.testing.assert_close(out.features[0, :8], expected[0, :8])
    assert bool((out.features[0, 8:] == 0).all())   # frame 8 is the first past the 8-frame sample
    assert bool((out.features_normalised[0, 8:] == 0).all())


def test_as_many_lengths_as_captions_are_required():
    gen = make_gen()
    with pytest.raises(ValueError, match="2 captions but 3 lengths"):
        gen.generate(["a", "b"], [8, 8, 8])


def test_a_seed_seeds_a_private_generator_and_excludes_a_generator():
    gen = make_gen()
    out = gen.generate(["a"], [8], seed=123)
    expected = torch.rand(1, 2, D, generator=torch.Generator().manual_seed(123)) + 10
    torch.testing.assert_close(out.tokens, expected)
    with pytest.raises(ValueError, match="not both"):
        gen.generate(["a"], [8], seed=1, generator=torch.Generator().manual_seed(1))


def test_captions_must_be_a_non_empty_list():
    with pytest.raises(TypeError):
        _caption_list("a person walks")
    with pytest.raises(ValueError, match="empty"):
        _caption_list([])
    assert _caption_list(("a", 3)) == ["a", "3"]


def test_sampling_settings_take_the_dataset_guidance():
    gen = make_gen()
    gen.spec.name = "kit"
    gen.backend = MoMaskBackend(None, None)
    assert gen.sampling_settings().cfg == 2.0
    gen.spec.name = "kit_64"
    assert gen.sampling_settings().cfg == 2.0
    gen.spec.name = "t2m"
    assert gen.sampling_settings().cfg == 4.0


# ---------------------------------------------------------------------------------------------------------------------
# Editing
# ---------------------------------------------------------------------------------------------------------------------

def test_edit_generates_only_the_span_tokens_at_the_source_length():
    gen = make_gen()
    src = source(50)
    out = gen.edit(["a", "b"], src, [(8, 15)], seed=0)
    call = gen.backend.sample_calls[0]
    expected_mask = torch.tensor([False, False, True, True] + [False] * 8)
    assert call["edit_mask"].shape == (2, 12)
    assert call["edit_mask"].tolist() == [expected_mask.tolist()] * 2
    assert out.edit_mask.tolist() == expected_mask.tolist()
    assert out.lengths.tolist() == [48, 48]
    assert out.features.shape == (2, 48, D)
    assert out.edited_frames.tolist() == expected_mask.repeat_interleave(UNIT).tolist()
    # the kept tokens are the source's: its frames outside the edited tokens come back as their token means
    recon = out.reconstruction.numpy()
    means = src[:48].reshape(12, UNIT, D).mean(1).repeat(UNIT, 0)
    np.testing.assert_allclose(recon, means, rtol=1e-5, atol=1e-5)
    keep = ~out.edited_frames.numpy()
    np.testing.assert_allclose(out.features[0].numpy()[keep], means[keep], rtol=1e-5, atol=1e-5)
    change = out.unedited_change(0)
    assert change["frames"] == 40 and change["max_abs_diff"] < 1e-4


def test_the_source_is_encoded_in_the_generators_normalisation():
    gen = make_gen()
    src = source(48)
    gen.edit(["a"], src, [(0, 4)], seed=0)
    expected = (src - gen.mean) / gen.std
    np.testing.assert_allclose(gen.backend.encoded[0][0].numpy(), expected, rtol=1e-5, atol=1e-5)


def test_an_open_span_closes_at_the_sources_length_even_past_the_last_whole_token():
    gen = make_gen()
    out = gen.edit(["a"], source(50), [(40, None)], seed=0)
    assert [tuple(s) for s in out.spans] == [(40, 50)]
    out = gen.edit(["a"], source(50), [(44, 50)], seed=0)
    assert [tuple(s) for s in out.spans] == [(44, 50)]
    assert out.edit_mask.tolist() == [False] * 11 + [True]


def test_the_source_is_reconstructed_with_the_edits_snapping():
    gen = make_gen()
    gen.edit(["a"], source(48), [(0, 4)], seed=0, snap=False)
    assert gen.backend.decode_snaps and not any(gen.backend.decode_snaps)


def test_edit_refuses_bad_sources():
    gen = make_gen()
    with pytest.raises(ValueError, match="source must be features"):
        gen.edit(["a"], np.zeros((48, D + 1), np.float32), [(0, 4)])
    bad = source(48)
    bad[5, 1] = np.nan
    with pytest.raises(ValueError, match="NaN or Inf"):
        gen.edit(["a"], bad, [(0, 4)])
    with pytest.raises(ValueError, match="fewer than one"):
        gen.edit(["a"], source(3), [(0, 2)])


def test_anchoring_is_refused_for_features_without_root_velocities():
    gen = make_gen(representation="joints", dim=5)
    with pytest.raises(ValueError, match="does not store the root"):
        gen.edit(["a"], source(48, 5), [(0, 4)], anchor_root=True)
    with pytest.raises(ValueError, match="does not store the root"):
        gen.edit_spans(["a"], source(48, 5), [(0, 4)], anchor_root=True)
    assert gen.edit(["a"], source(48, 5), [(0, 4)]).root_anchors is None   # without anchoring it edits


def test_an_anchored_edit_bends_only_its_span_and_renormalises_the_features():
    dim = 5

    def fresh():
        return make_gen(dim=dim, mean=np.arange(dim, dtype=np.float32) / 10,
                        std=np.linspace(0.5, 2.0, dim, dtype=np.float32))

    gen = fresh()
    src = source(48, dim) * 0.1
    out = gen.edit(["a"], src, [(8, 16)], seed=0, anchor_root=True)
    assert out.root_anchors is not None and len(out.root_anchors) == 1
    assert [r["frames"] for r in out.root_anchors[0]] == [[8, 16]]
    expected = (out.features - torch.as_tensor(gen.mean)) / torch.as_tensor(gen.std)
    torch.testing.assert_close(out.features_normalised, expected)
    keep = ~out.edited_frames
    torch.testing.assert_close(out.features[0][keep], out.reconstruction[keep])
    plain = fresh().edit(["a"], src, [(8, 16)], seed=0)
    assert plain.root_anchors is None
    torch.testing.assert_close(out.features[0][:, 3:], plain.features[0][:, 3:])


def test_edit_spans_generates_left_to_right_each_knowing_the_previous():
    gen = make_gen()
    src = source(48)
    out = gen.edit_spans(["late", "early"], src, [(32, 40), (4, 8)], seed=0)
    calls = gen.backend.sample_calls
    assert len(calls) == 2
    # the left span first, with its own caption
    assert calls[0]["text_emb"][0, 0].item() == len("early")
    assert calls[1]["text_emb"][0, 0].item() == len("late")
    assert calls[0]["edit_mask"][0].nonzero().flatten().tolist() == [1]
    assert calls[1]["edit_mask"][0].nonzero().flatten().tolist() == [8, 9]
    # the second span's known tokens hold the first span's generated token
    torch.testing.assert_close(calls[1]["known"][0, 1], out.tokens[0, 1])
    assert not torch.allclose(calls[1]["known"][0, 1], out.source_tokens[1])
    assert out.texts == ["early / late"]
    assert [tuple(s) for s in out.spans] == [(4, 8), (32, 40)]
    assert out.lengths.tolist() == [48]


def test_edit_spans_needs_one_caption_per_span():
    gen = make_gen()
    with pytest.raises(ValueError, match="one caption per span"):
        gen.edit_spans(["a", "b", "c"], source(48), [(0, 4), (8, 12)])
    with pytest.raises(ValueError, match="one caption per span"):
        gen.edit_spans(["a"], source(48), [(0, 4), (8, 12)])


# ---------------------------------------------------------------------------------------------------------------------
# Length estimator
# ---------------------------------------------------------------------------------------------------------------------

class StubEstimatorModel:
    def __init__(self, text_dim, favourite, num_classes=20):
        self.model_args = {"text_dim": text_dim}
        self.favourite, self.num_classes = favourite, num_classes

    def __call__(self, text_emb):
        logits = torch.zeros(text_emb.shape[0], self.num_classes)
        logits[:, self.favourite] = 50.0
        return logits


def _with_estimator(monkeypatch, fps=20.0, text_dim=2, unit_length=4, favourite=3):
    estimator = SimpleNamespace(path="le.tar", dataset={"name": "d", "spec": {"fps": fps}},
                                text_encoder={"name": "stub"}, unit_length=unit_length,
                                model=StubEstimatorModel(text_dim, favourite))
    monkeypatch.setattr(generation, "load_length_estimator", lambda path, device: estimator)
    monkeypatch.setattr(generation, "estimator_text_encoder", lambda *args: StubEncoder())
    gen = make_gen()
    gen.length_estimator_path = "le"
    return gen


def test_an_estimator_at_the_generators_frame_rate_is_used(monkeypatch):
    gen = _with_estimator(monkeypatch, fps=20.0, favourite=3)
    assert gen.estimate_lengths(["a", "b"], temperature=0).tolist() == [12, 12]


def test_an_estimator_at_another_frame_rate_is_refused(monkeypatch):
    gen = _with_estimator(monkeypatch, fps=12.5)
    with pytest.raises(CheckpointError, match="fps"):
        gen.estimate_lengths(["a"], temperature=0)


def test_an_estimator_whose_text_encoder_gives_other_embeddings_is_refused(monkeypatch):
    gen = _with_estimator(monkeypatch, text_dim=3)
    with pytest.raises(CheckpointError, match="3-dim text embeddings"):
        gen.estimate_lengths(["a"], temperature=0)


def test_an_estimated_length_shorter_than_a_token_becomes_one_token(monkeypatch):
    gen = _with_estimator(monkeypatch, unit_length=2, favourite=1)   # one estimator class = 2 frames, half a token
    assert gen.estimate_lengths(["a"], temperature=0).tolist() == [4]
