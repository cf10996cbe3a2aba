"""The caption templates of the synthetic generator (``utils.synthetic_captions``): three distinct captions per
motion, every subject drawn with its possessive, sequence templates naming each part once, and the clap counts spelt
out."""

from __future__ import annotations

import numpy as np

from utils.synthetic_actions import _clap
from utils.synthetic_captions import _SUBJECTS, _pick_captions, _Segment, _sequence_bodies
from utils.synthetic_controls import _Style


def _segment(phrases):
    return _Segment("x", {"fwd": np.zeros(3)}, phrases)


def test_three_distinct_captions_even_from_one_body():
    # the subject varies when the body cannot
    for s in range(30):
        picked = _pick_captions(np.random.default_rng(s), ["walks forward"])
        assert len(picked) == len(set(picked)) == 3, picked


def test_every_subject_is_drawn_and_gendered_ones_take_their_possessive():
    captions = {_pick_captions(np.random.default_rng(s), ["waves {their} hand"], count=1)[0] for s in range(200)}
    assert {c.split(" waves ")[0] for c in captions} == set(_SUBJECTS)
    assert {"a woman waves her hand", "the woman waves her hand", "a man waves his hand", "the man waves his hand",
            "someone waves their hand"} <= captions


def test_captions_start_from_a_random_body():
    bodies = ["walks forward", "runs forward", "hops forward"]
    first = {_pick_captions(np.random.default_rng(s), bodies)[0].split(" ")[-2] for s in range(20)}
    assert first == {"walks", "runs", "hops"}


def test_sequence_bodies_count_and_every_phrase_of_a_segment_is_used():
    segs = [_segment(["walks forward", "strolls forward"]), _segment(["turns around", "spins around"])]
    bodies = _sequence_bodies(np.random.default_rng(0), segs, n=20)
    assert len(bodies) == 20
    for phrase in ("walks forward", "strolls forward", "turns around", "spins around"):
        assert any(phrase in b for b in bodies), phrase


def test_two_part_sequences_use_every_template():
    segs = [_segment(["walks forward"]), _segment(["turns around"])]
    bodies = set(_sequence_bodies(np.random.default_rng(0), segs, n=30))
    assert bodies == {"walks forward and then turns around", "walks forward, then turns around",
                      "first walks forward and then turns around"}


def test_three_part_sequences_name_each_part_once():
    segs = [_segment(["walks forward"]), _segment(["turns around"]), _segment(["sits down"])]
    bodies = set(_sequence_bodies(np.random.default_rng(0), segs, n=20))
    assert bodies == {"walks forward, turns around and then sits down",
                      "first walks forward, then turns around and finally sits down"}


def test_a_segment_with_only_progressive_phrases_still_gets_captioned():
    segs = [_segment(["turns around"]), _segment(["is walking forward"])]
    bodies = _sequence_bodies(np.random.default_rng(0), segs, n=6)
    assert len(bodies) == 6 and all(b.endswith("is walking forward") for b in bodies)


def test_clap_captions_spell_the_number_of_claps():
    words = {3: "three", 4: "four", 5: "five", 6: "six", 7: "seven"}
    seen = set()
    for s in range(40):
        rng = np.random.default_rng(s)
        segment = _clap(rng, _Style.sample(rng))
        claps = int(segment.label.split("_")[1])
        assert f"claps {words[claps]} times" in segment.phrases, (segment.label, segment.phrases)
        seen.add(claps)
    assert seen == set(words)
