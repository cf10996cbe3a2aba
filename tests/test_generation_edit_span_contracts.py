"""Contracts of ``utils.generation`` and ``utils.editing`` pinned on stand-in models: the length estimator (its own
text encoder and unit, the seed and temperature it samples with, loaded once), lengths and padding of a generated
batch, seeding, which tokens and frames an edit keeps and generates (one span, spans with their own captions, root
anchoring), and the spans, sources and records of an edit with the errors that name what was wrong."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from generation_stubs import StubEncoder, make_gen, source

import utils.generation as generation
from utils.editing import (
    EditRequest,
    FrameSpan,
    anchor_root,
    check_disjoint_spans,
    mask_runs,
    parse_span,
    resolve_spans,
    token_edit_mask,
    unedited_change,
)


class EstimatorEncoder(StubEncoder):
    """Embeds a caption as (its length, 7): the 7 shows that the length estimator's own encoder read it."""

    def encode(self, texts):
        self.calls.append(list(texts))
        return torch.tensor([[float(len(t)), 7.0] for t in texts])


# ---------------------------------------------------------------------------------------------------------------------
# Length estimator
# ---------------------------------------------------------------------------------------------------------------------

class EstimatorModel:
    """Logits that favour class ``favourite`` by ``margin`` (all classes equal with margin 0); records its inputs."""

    def __init__(self, favourite=3, margin=50.0, num_classes=20, text_dim=2):
        self.model_args = {"text_dim": text_dim}
        self.favourite, self.margin, self.num_classes, self.inputs = favourite, margin, num_classes, []

    def __call__(self, text_emb):
        self.inputs.append(text_emb.clone())
        logits = torch.zeros(text_emb.shape[0], self.num_classes)
        logits[:, self.favourite] = self.margin
        return logits


def with_estimator(monkeypatch, unit_length=4, **model):
    """A generator whose length estimator is ``EstimatorModel(**model)``, read through its own encoder (offset 7)."""
    loads, encoder_args = [], []
    estimator = SimpleNamespace(path="le.tar", dataset={"name": "d", "spec": {"fps": 20.0}},
                                text_encoder={"name": "stub"}, unit_length=unit_length, model=EstimatorModel(**model))

    def load(path, device):
        loads.append(path)
        return estimator

    def encoder(*args):
        encoder_args.append(args)
        return EstimatorEncoder()

    monkeypatch.setattr(generation, "load_length_estimator", load)
    monkeypatch.setattr(generation, "estimator_text_encoder", encoder)
    gen = make_gen()
    gen.info = {"text_encoder": {"path": "recorded_clip.pt"}}
    gen.length_estimator_path = "le"
    return gen, estimator, loads, encoder_args


def test_the_estimator_reads_captions_through_its_own_text_encoder(monkeypatch):
    gen, estimator, _, _ = with_estimator(monkeypatch)
    gen.estimate_lengths(["abc"], temperature=0)
    assert estimator.model.inputs[0].tolist() == [[3.0, 7.0]]
    assert gen.text_encoder.calls == []


def test_the_estimator_is_loaded_once_and_given_the_text_encoder_path(monkeypatch):
    gen, _, loads, encoder_args = with_estimator(monkeypatch)
    gen.text_encoder_path = "other_clip.pt"
    gen.estimate_lengths(["a"], temperature=0)
    gen.estimate_lengths(["b"], temperature=0)
    assert loads == ["le"]
    assert len(encoder_args) == 1
    assert "other_clip.pt" in encoder_args[0] and "recorded_clip.pt" in encoder_args[0]


def test_estimated_classes_count_tokens_of_the_estimators_unit(monkeypatch):
    # class 5 of a 2-frame-unit estimator is 10 frames, rounded down to 8 (two 4-frame tokens), not 5 * 4 = 20.
    gen, _, _, _ = with_estimator(monkeypatch, unit_length=2, favourite=5)
    assert gen.estimate_lengths(["a"], temperature=0).tolist() == [8]


def test_estimated_lengths_follow_the_seed_and_the_temperature(monkeypatch):
    gen, _, _, _ = with_estimator(monkeypatch, favourite=3, margin=2.0)
    texts = ["a"] * 64
    first = gen.estimate_lengths(texts, torch.Generator().manual_seed(5))
    again = gen.estimate_lengths(texts, torch.Generator().manual_seed(5))
    other = gen.estimate_lengths(texts, torch.Generator().manual_seed(6))
    assert first.tolist() == again.tolist() and first.tolist() != other.tolist()
    assert len(set(first.tolist())) > 1        # temperature 1 samples: a margin of 2 leaves other classes likely
    assert gen.estimate_lengths(texts, torch.Generator().manual_seed(5), temperature=0).tolist() == [12] * 64


def test_generate_draws_the_lengths_with_the_seed(monkeypatch):
    gen, _, _, _ = with_estimator(monkeypatch, favourite=3, margin=1.0)
    texts = ["a"] * 32
    first = gen.generate(texts, seed=3).lengths.tolist()
    assert gen.generate(texts, seed=3).lengths.tolist() == first
    assert gen.generate(texts, seed=4).lengths.tolist() != first


# ---------------------------------------------------------------------------------------------------------------------
# Generation: lengths, settings, seeding
# ---------------------------------------------------------------------------------------------------------------------

def test_fewer_lengths_than_captions_are_refused():
    with pytest.raises(ValueError, match="2 captions but 1 lengths"):
        make_gen().generate(["a", "b"], [8])


def test_the_sampling_temperature_and_snapping_reach_the_model_and_the_decoder():
    gen = make_gen()
    assert gen.sampling_settings(temperature=0.5).temperature == 0.5
    gen.generate(["a"], [8], temperature=0.25, snap=False, seed=0)
    assert gen.backend.sample_calls[0]["settings"].temperature == 0.25
    assert gen.backend.decode_snaps == [False]


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_a_length_that_is_not_finite_is_refused_naming_it(bad):
    with pytest.raises(ValueError, match=rf"motion lengths must be finite numbers of frames, got \[8.0, {bad}\]"):
        make_gen().round_lengths([8.0, bad])


def test_a_given_generator_samples_as_the_same_seed_does():
    by_seed = make_gen().generate(["a", "bb"], [8, 12], seed=7)
    by_generator = make_gen().generate(["a", "bb"], [8, 12], generator=torch.Generator().manual_seed(7))
    torch.testing.assert_close(by_generator.tokens, by_seed.tokens)
    torch.testing.assert_close(by_generator.features, by_seed.features)


def test_joints_are_computed_at_each_samples_own_length():
    from utils.dataset_specs import get_dataset_spec
    from utils.generation import GeneratedBatch

    spec = get_dataset_spec("t2m")
    features = torch.zeros(2, 16, spec.dim_pose)
    features[:, :, 3] = 1.0   # root height
    batch = GeneratedBatch(texts=["a", "b"], features=features, features_normalised=features,
                           lengths=torch.tensor([8, 16]), tokens=torch.zeros(2, 4, 1), spec=spec)
    assert [j.shape for j in batch.joints] == [(8, spec.joints_num, 3), (16, spec.joints_num, 3)]
    assert all(j.dtype == np.float32 for j in batch.joints)


# ---------------------------------------------------------------------------------------------------------------------
# Editing through MotionGenerator
# ---------------------------------------------------------------------------------------------------------------------

def test_the_source_is_encoded_at_its_length_in_frames():
    gen = make_gen()
    seen = []
    encode = gen.backend.encode_motion
    gen.backend.encode_motion = lambda motion, lengths: (seen.append(lengths.tolist()), encode(motion, lengths))[1]
    gen.edit(["a"], source(50), [(8, 16)], seed=0)
    assert seen == [[48]]


def test_a_nan_source_names_its_first_bad_frame():
    bad = source(48)
    bad[5, 1] = np.nan
    bad[30, 0] = np.inf
    with pytest.raises(ValueError, match=r"frame 5 of 48"):
        make_gen().edit(["a"], bad, [(0, 4)])


def test_span_captions_are_anchored_when_asked():
    gen = make_gen(dim=5)
    src = source(48, 5) * 0.1
    out = gen.edit_spans(["b", "a"], src, [(24, 32), (4, 8)], seed=0, anchor_root=True)
    assert [r["frames"] for r in out.root_anchors[0]] == [[4, 8], [24, 32]]
    keep = ~out.edited_frames
    torch.testing.assert_close(out.features[0][keep], out.reconstruction[keep])


def test_the_anchor_records_give_the_shift_in_metres():
    src = source(48, 5) * 0.1
    in_units = make_gen(dim=5).edit(["a"], src, [(8, 16)], seed=0, anchor_root=True).root_anchors[0][0]
    in_halves_gen = make_gen(dim=5)
    in_halves_gen.spec.metres_per_unit = 0.5
    in_halves = in_halves_gen.edit(["a"], src, [(8, 16)], seed=0, anchor_root=True).root_anchors[0][0]
    assert in_units["xz_m"] > 0
    assert in_halves["xz_m"] == pytest.approx(in_units["xz_m"] * 0.5)


# ---------------------------------------------------------------------------------------------------------------------
# Spans
# ---------------------------------------------------------------------------------------------------------------------

def test_seconds_round_outward_on_both_sides():
    # 0.51 s and 1.01 s at 20 fps are frames 10.2 and 20.2: the span widens to [10, 21).
    assert parse_span("0.51:1.01", "seconds", fps=20.0) == FrameSpan(10, 21)
    assert parse_span("0:1", "frames") == FrameSpan(0, 1)
    assert parse_span(":1", "frames") == FrameSpan(0, 1)


def test_a_span_with_two_colons_is_refused_naming_it():
    with pytest.raises(ValueError, match=r"--edit_frames '4:8:12': expected START:END"):
        parse_span("4:8:12", "frames")


def test_a_span_must_start_before_the_source_ends_and_end_within_it():
    assert resolve_spans([(47, None), (0, 50)], 50, 4) == [FrameSpan(47, 50), FrameSpan(0, 50)]
    with pytest.raises(ValueError, match=r"edit span \[50, end\) starts past the end of the source, which has 50"):
        resolve_spans([(50, None)], 50, 4)
    with pytest.raises(ValueError, match=r"edit span \[0, 51\) reaches past the source"):
        resolve_spans([(0, 51)], 50, 4)


def test_a_span_inside_the_frames_no_token_covers_is_refused():
    assert resolve_spans([(47, 50)], 50, 4) == [FrameSpan(47, 50)]
    with pytest.raises(ValueError, match=r"edit span \[48, 50\) lies in the last 2 frames"):
        resolve_spans([(48, 50)], 50, 4)


def test_a_fractional_frame_bound_is_refused_not_cut():
    with pytest.raises(ValueError, match=r"bound 8.5 is not a whole number of frames"):
        resolve_spans([(8.5, 16)], 48, 4)
    assert resolve_spans([(np.int64(8), 16.0)], 48, 4) == [FrameSpan(8, 16)]


def test_spans_with_their_own_captions_may_not_share_a_token_anywhere_in_the_list():
    assert check_disjoint_spans([FrameSpan(20, 24), FrameSpan(0, 4)], 12, 4) == [1, 0]
    with pytest.raises(ValueError, match="share a token"):
        check_disjoint_spans([FrameSpan(0, 4), FrameSpan(8, 13), FrameSpan(12, 20)], 12, 4)


def test_mask_runs_find_a_run_at_the_start_when_the_mask_ends_true():
    assert mask_runs(torch.tensor([True, False, True])) == [[0, 1], [2, 3]]
    assert mask_runs(torch.tensor([True, True, False, True, True])) == [[0, 2], [3, 5]]


def test_anchoring_leaves_the_root_height_and_the_other_dims_as_generated():
    rng = np.random.default_rng(0)
    target = rng.normal(0, 0.05, (24, 6))
    features = target + rng.normal(0, 0.05, (24, 6))
    edited = np.zeros(24, bool)
    edited[8:16] = True
    out, _ = anchor_root(features, target, edited)
    np.testing.assert_array_equal(out[:, 3:], features[:, 3:])
    np.testing.assert_array_equal(out[~edited, :3], target[~edited, :3])


def test_the_record_of_an_edit_counts_whole_tokens_and_their_frames(tmp_path):
    request = EditRequest(str(tmp_path / "src.npy"), "0" * 64, np.zeros((50, 3), np.float32), [FrameSpan(5, 9)])
    record = request.record(4)
    assert record["source_frames"] == 50 and record["edited_motion_frames"] == 48
    assert record["spans_tokens"] == [[1, 3]]
    assert record["edited_frames"] == [[4, 12]]


def test_token_edit_mask_and_unedited_change_agree_on_the_kept_frames():
    mask = token_edit_mask([FrameSpan(4, 5), FrameSpan(11, 12)], 4, 4)
    assert mask.tolist() == [False, True, True, False]
    change = unedited_change(np.ones((16, 2)), np.zeros((16, 2)), mask.repeat_interleave(4).numpy())
    assert change == {"frames": 8, "max_abs_diff": 1.0, "mean_abs_diff": 1.0}
