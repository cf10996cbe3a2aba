"""Contracts of long-motion sequencing (utils/motion_sequence.py) on the stub generator of tests/generation_stubs.py
(4 frames a token, max_frames 48 (12 tokens), 20 fps; its backend records every sample_tokens call and writes fresh
tokens only where edit_mask is set): transitions, seam windows, warnings, decoding."""

from __future__ import annotations

import logging

import pytest
import torch
from generation_stubs import make_gen

A, BB, C = "walk", "jump forward", "wave with the right hand"   # distinct lengths: the stub embeds len(text)


def _window_calls(gen):
    return [c for c in gen.backend.sample_calls if c["known"] is not None]


def test_the_default_transition_is_two_seconds_at_the_datasets_fps():
    """transition_frames None: 2 s at 20 fps = 40 frames = 10 tokens, 5 each side of the seam."""
    gen = make_gen()
    out = gen.generate_sequence([A, BB], [48, 48], seed=0)
    assert out.transitions == [(48 - 20, 48 + 20)]


def test_the_seam_window_is_centred_and_moved_back_inside_the_segments():
    """Each window holds at most max_frames // unit = 12 tokens, centred on the seam, shifted to stay inside its two
    segments; the tokens regenerated are exactly `before` tokens before the seam and `after` after it, from the
    later segment's prompt, the rest passed as known."""
    gen = make_gen()
    out = gen.generate_sequence([A, BB, C], [48, 48, 8], transition_frames=8, seed=0)
    windows = _window_calls(gen)
    assert [int(c["token_lengths"][0]) for c in windows] == [12, 12]
    # Seam 1 at token 12: window [6, 18), tokens 11 and 12 regenerated.
    assert windows[0]["edit_mask"][0].nonzero().flatten().tolist() == [5, 6]
    # Seam 2 at token 24, last segment 2 tokens: window [14, 26) moved back from [18, 26); tokens 23, 24.
    assert windows[1]["edit_mask"][0].nonzero().flatten().tolist() == [9, 10]
    mask2 = windows[1]["edit_mask"][0]
    assert torch.equal(windows[1]["known"][:, ~mask2], out.tokens[:, 14:26][:, ~mask2])
    assert torch.equal(windows[0]["known"][:, ~windows[0]["edit_mask"][0]],
                       out.tokens[:, 6:18][:, ~windows[0]["edit_mask"][0]])
    # The prompts: segment i's window uses prompt i.
    assert windows[0]["text_emb"][0, 0].item() == len(BB) and windows[1]["text_emb"][0, 0].item() == len(C)
    assert out.transitions == [(44, 52), (92, 100)]


def test_each_segment_gives_at_most_its_share_to_a_seam():
    """An end segment gives at most half its tokens to its one seam, a middle one a quarter to each of its two:
    segments of 2, 12 and 2 tokens with 4 tokens asked per seam get 1 + 2 and 2 + 1."""
    gen = make_gen()
    out = gen.generate_sequence([A, BB, C], [8, 48, 8], transition_frames=16, seed=0)
    assert out.transitions == [(4, 16), (48, 60)]
    gen = make_gen()
    out = gen.generate_sequence([A, BB], [48, 8], transition_frames=16, seed=0)
    assert out.transitions == [(40, 52)]
    gen = make_gen()
    out = gen.generate_sequence([A, BB], [8, 48], transition_frames=16, seed=0)
    assert out.transitions == [(4, 16)]


@pytest.mark.parametrize("frames", [12, 14, 15])
def test_an_odd_token_transition_gives_the_later_segment_the_extra_token(frames):
    """12 to 15 frames are 3 whole tokens (rounded down, 4 frames a token): one before the seam, two after."""
    gen = make_gen()
    out = gen.generate_sequence([A, BB], [48, 48], transition_frames=frames, seed=0)
    assert out.transitions == [(44, 56)]
    assert _window_calls(gen)[0]["edit_mask"][0].nonzero().flatten().tolist() == [5, 6, 7]


def test_a_capped_transition_warns_in_whole_token_frames(caplog):
    """18 frames asked with 4-frame tokens is 4 tokens (16 frames); two 2-token segments give one token each, said
    once: "transitions of 16 frames asked, shortened ...: 8 frames at the seam at frame 8"."""
    gen = make_gen()
    with caplog.at_level(logging.WARNING, logger="utils.motion_sequence"):
        out = gen.generate_sequence([A, BB], [8, 8], transition_frames=18, seed=0)
    assert out.transitions == [(4, 12)]
    said = [r.getMessage() for r in caplog.records if r.name == "utils.motion_sequence"]
    assert said == ["transitions of 16 frames asked, shortened so that every segment keeps at least half of its own "
                    "tokens: 8 frames at the seam at frame 8"]


@pytest.mark.parametrize("snap", [True, False])
def test_the_sequence_is_decoded_with_the_snap_asked_and_denormalised(snap):
    """snap reaches the decoder; features are the normalised motion times std plus mean; lengths are in frames."""
    gen = make_gen()
    out = gen.generate_sequence([A, BB], [20, 16], transition_frames=8, seed=0, snap=snap)
    assert gen.backend.decode_snaps[-1] is snap
    assert out.lengths.tolist() == [36] and out.features.shape == (1, 36, 3)
    mean = torch.tensor([1.0, -2.0, 0.5])
    std = torch.tensor([2.0, 0.5, 3.0])
    torch.testing.assert_close(out.features, out.features_normalised * std + mean)
    assert out.texts == [f"{A} / {BB}"] and out.prompts == [A, BB] and out.segments == [(0, 20), (20, 36)]


def test_prompts_that_are_not_strings_are_kept_as_their_text():
    """Non-string prompts (e.g. numbers) are turned into text; transition_frames 0 joins the segments as generated,
    with one sampling call per segment and none at the seam."""
    gen = make_gen()
    out = gen.generate_sequence([A, 12345], [8, 8], transition_frames=0, seed=0)
    assert out.prompts == [A, "12345"] and out.texts == [f"{A} / 12345"]
    assert len(gen.backend.sample_calls) == 2 and out.transitions == [(8, 8)]


# ---------------------------------------------------------------------------------------------------------------------
# Prompts, seeds, sampling settings and seam windows
# ---------------------------------------------------------------------------------------------------------------------

A, BB, C = "walk", "jump forward", "wave with the right hand"   # distinct lengths: the stub embeds len(text)


def _window_calls(gen):
    return [c for c in gen.backend.sample_calls if c["known"] is not None]


@pytest.mark.parametrize("texts, lengths, error, message", [
    ("walk", [8], TypeError, "a list of prompts, got a single string"),
    ([], [], ValueError, "at least one prompt and no empty ones"),
    ([A, "   "], [8, 8], ValueError, "at least one prompt and no empty ones"),
    ([A], [8, 8], ValueError, "1 prompts but 2 lengths"),
    ([A, BB], [8], ValueError, "2 prompts but 1 lengths"),
    ([A, BB], [8, 8], ValueError, "transition_frames must be >= 0, got -1"),
])
def test_bad_sequences_fail_before_any_sampling(texts, lengths, error, message):
    gen = make_gen()
    extra = {"transition_frames": -1} if "transition" in message else {}
    with pytest.raises(error, match=message):
        gen.generate_sequence(texts, lengths, seed=0, **extra)
    assert gen.backend.sample_calls == []


def test_a_seed_gives_the_same_sequence_whatever_the_global_random_state():
    torch.manual_seed(1)
    first = make_gen().generate_sequence([A, BB, C], [24, 16, 20], transition_frames=8, seed=7)
    torch.manual_seed(2)
    again = make_gen().generate_sequence([A, BB, C], [24, 16, 20], transition_frames=8, seed=7)
    assert torch.equal(first.tokens, again.tokens)


def test_sampled_lengths_come_from_the_seeded_stream(monkeypatch):
    """Without lengths the estimator draws them from the call's own random stream, before the segments."""
    given = []

    def estimate(texts, generator=None, temperature=1.0):
        given.append(generator)
        return torch.randint(2, 13, (len(texts),), generator=generator) * 4

    outs = []
    for global_seed in (1, 2):
        gen = make_gen()
        monkeypatch.setattr(gen, "estimate_lengths", estimate)
        torch.manual_seed(global_seed)
        outs.append(gen.generate_sequence([A, BB, C], transition_frames=8, seed=3))
    first, again = outs
    assert all(isinstance(g, torch.Generator) for g in given)
    assert first.segments == again.segments and torch.equal(first.tokens, again.tokens)


def test_every_sampling_call_gets_the_settings_asked():
    gen = make_gen()
    gen.generate_sequence([A, BB], [24, 24], transition_frames=8, seed=0, temperature=0.5, time_steps=3, cfg=2.0)
    settings = [c["settings"] for c in gen.backend.sample_calls]
    assert len(settings) == 3
    assert all((s.temperature, s.time_steps, s.cfg) == (0.5, 3, 2.0) for s in settings)


def test_a_seam_window_stays_inside_the_two_segments_it_joins():
    """Segments of 12, 4 and 12 tokens: the first seam's window ends where the short middle segment ends and is
    moved back to hold 12 tokens ([4, 16)); the second starts where the middle segment starts ([12, 24))."""
    gen = make_gen()
    out = gen.generate_sequence([A, BB, C], [48, 16, 48], transition_frames=8, seed=0)
    windows = _window_calls(gen)
    assert [int(c["token_lengths"][0]) for c in windows] == [12, 12]
    assert windows[0]["edit_mask"][0].nonzero().flatten().tolist() == [7, 8]         # tokens 11 and 12
    assert windows[1]["edit_mask"][0].nonzero().flatten().tolist() == [3, 4]         # tokens 15 and 16
    assert torch.equal(windows[1]["known"][:, :3], out.tokens[:, 12:15])             # the middle segment's start
    assert out.transitions == [(44, 52), (60, 68)]
    assert out.segments == [(0, 48), (48, 64), (64, 112)] and out.lengths.tolist() == [112]



def test_a_transition_that_fits_every_segment_s_share_is_not_said_to_be_shortened(caplog):
    """Three 12-token segments, 4 tokens asked per seam: the ends give 2 of their 6, the middle 2 of its 3 at each
    seam, so nothing is capped and nothing is said."""
    gen = make_gen()
    with caplog.at_level(logging.WARNING, logger="utils.motion_sequence"):
        out = gen.generate_sequence([A, BB, C], [48, 48, 48], transition_frames=16, seed=0)
    assert out.transitions == [(40, 56), (88, 104)]
    assert [r for r in caplog.records if r.name == "utils.motion_sequence"] == []
