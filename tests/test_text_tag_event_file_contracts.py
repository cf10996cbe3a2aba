"""Caption tagging, mirrored captions and event-file checks: lexicon forms of verbs in -oe, the context rules' edge
cases ("but", digits, "left" after a verb, adjectives after numbers), lemmas of words outside the lexicon, mirrored
captions (every direction word built on left / right, words that only begin with them, capitals), and event files (a
file cut after a whole record header, a TFRecord file of something other than Events)."""

from __future__ import annotations

import struct

from tensorboard.compat.proto.event_pb2 import Event
from tensorboard.compat.tensorflow_stub.pywrap_tensorflow import masked_crc32c
from test_plot_loss_files import _records

from utils.event_files import check_event_file
from utils.text_tags import lemmatize, mirror_caption, tag_caption

# ---------------------------------------------------------------------------------------------------------------------
# Inflected forms the lexicon generates
# ---------------------------------------------------------------------------------------------------------------------


def test_the_gerund_of_a_verb_in_oe_keeps_its_e():
    # "tiptoeing" is a lexicon form: capitalised mid-caption it is still the verb, not an unknown proper noun
    assert tag_caption("a man Tiptoeing") == ["a/DET", "man/NOUN", "tiptoe/VERB"]


# ---------------------------------------------------------------------------------------------------------------------
# Context rules
# ---------------------------------------------------------------------------------------------------------------------


def test_but_coordinates_two_verbs():
    # "but" is a conjunction, so the unknown "recovers" after it is the verb coordinated with "stumbles"
    assert tag_caption("someone stumbles but recovers") == ["someone/PRON", "stumble/VERB", "but/CCONJ",
                                                            "recover/VERB"]


def test_a_plural_made_from_a_verb_after_a_digit_is_a_noun():
    # the digit is context even though it is no output token: "3 jabs" is a noun phrase, as "three jabs"
    assert tag_caption("a boxer throws 3 jabs") == ["a/DET", "boxer/NOUN", "throw/VERB", "jab/NOUN"]


def test_a_noun_in_ss_after_and_stays_a_noun():
    # an unknown word after "and" and a verb is a coordinated verb only when it ends in a third-person -s
    assert tag_caption("a person practices boxing and fitness")[-2:] == ["and/CCONJ", "fitness/NOUN"]


def test_left_before_a_word_that_is_also_a_verb_is_the_direction():
    # "jogs left turns around": "turns" may be a noun, but "left" after a verb is the adverb, not an adjective
    assert tag_caption("a person jogs left turns around")[2:5] == ["jog/VERB", "left/ADV", "turn/VERB"]


def test_an_adjective_after_a_number_qualifies_the_noun():
    # "fast" is also an adverb, "steps" also a verb: after "two" the phrase is a noun phrase
    assert tag_caption("a person takes two fast steps")[-3:] == ["two/NUM", "fast/ADJ", "step/NOUN"]


# ---------------------------------------------------------------------------------------------------------------------
# Lemmas of words outside the lexicon
# ---------------------------------------------------------------------------------------------------------------------


def test_a_gerund_whose_stem_ends_in_i_keeps_the_i():
    # only a past "-ied" comes from a "-y" verb (copied -> copy); "taxiing" is "taxi" + "ing"
    assert lemmatize("taxiing", "VERB") == "taxi"
    assert lemmatize("copied", "VERB") == "copy"


# ---------------------------------------------------------------------------------------------------------------------
# Mirrored captions
# ---------------------------------------------------------------------------------------------------------------------


def test_leftmost_and_rightmost_are_mirrored():
    # the mirrored motion ends at the other extreme: "leftmost" kept would describe the wrong side
    assert mirror_caption("steps to the leftmost spot, then the Rightmost") == \
        "steps to the rightmost spot, then the Leftmost"


def test_left_handed_written_as_one_word_is_mirrored():
    # "left-handed" and "left handed" were swapped already; the one-word spelling must be too
    assert mirror_caption("a lefthanded throw with the righthand") == "a righthanded throw with the lefthand"
    assert mirror_caption("a LEFTHANDED throw") == "a RIGHTHANDED throw"


def test_words_that_only_begin_with_left_or_right_are_not_mirrored():
    assert mirror_caption("a person eats leftovers with the right hand") == \
        "a person eats leftovers with the left hand"
    assert mirror_caption("he rightly steps left") == "he rightly steps right"


def test_only_an_all_capital_word_is_mirrored_in_capitals():
    # a typo with the shift key held ("LEft") is a capitalised word, not an all-capital one
    assert mirror_caption("turns LEft, then RIGHT") == "turns Right, then LEFT"


# ---------------------------------------------------------------------------------------------------------------------
# Event files: where reading stops
# ---------------------------------------------------------------------------------------------------------------------


def _tfrecord(payload: bytes) -> bytes:
    """One TFRecord record of ``payload`` with good checksums."""
    header = struct.pack("<Q", len(payload))
    return header + struct.pack("<I", masked_crc32c(header)) + payload + struct.pack("<I", masked_crc32c(payload))


def test_a_file_cut_just_after_a_whole_record_header_is_cut_short(tmp_path):
    # the 12 header bytes are there and check out, the payload is not: an unfinished write, not a whole file
    data = b"".join(_tfrecord(Event(step=step, wall_time=1.0).SerializeToString()) for step in (0, 1))
    (start, _), = _records(data)[1:2]
    path = tmp_path / "events.out.tfevents.1.host"
    path.write_bytes(data[:start + 12])
    check = check_event_file(str(path))
    assert (check.records, check.end, check.size, check.last_step) == (1, start, start + 12, 0)
    assert check.problem == "cut short in a record (an unfinished write, or a copy cut off)"


def test_a_tfrecord_file_of_something_else_has_no_last_step(tmp_path):
    # good checksums around bytes that are no Event: the records count, the step is unknown, nothing raises
    path = tmp_path / "events.out.tfevents.1.host"
    path.write_bytes(_tfrecord(b"not an event") * 2)
    check = check_event_file(str(path))
    assert (check.records, check.end, check.last_step, check.problem) == (2, check.size, None, "")
    assert check.describe() == f"{check.size} bytes, 2 good record(s)"
