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
