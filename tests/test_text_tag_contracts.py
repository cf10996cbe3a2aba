"""Caption tagging (``utils.text_tags``) beyond tests/test_text_tags.py: inflected forms the lexicon generates (-es,
doubled consonants, -ed), lemmas of verbs and nouns outside the lexicon (a base form ending in a double consonant,
"add", "sniff", keeps both letters), context rules (intensifiers, main-verb "does", left/right as nouns, a noun ending
in -ed / -ing after a verb is its object), tokenising (contractions, decimals) and the text line."""

from __future__ import annotations

import pytest

from utils.text_tags import format_text_line, lemmatize, tag_caption

# ---------------------------------------------------------------------------------------------------------------------
# Inflected forms the lexicon generates
# ---------------------------------------------------------------------------------------------------------------------


def test_third_person_of_sh_verbs_is_a_verb_after_an_adverb():
    # "pushes" must be in the lexicon as a verb: guessed from its suffix after an adverb, it would be a noun
    assert tag_caption("a person slowly pushes the box") == [
        "a/DET", "person/NOUN", "slowly/ADV", "push/VERB", "the/DET", "box/NOUN"]


def test_plural_of_ch_nouns_is_a_noun_after_a_verb():
    # "punches" is both the verb's third person and the noun's plural; as the object of a verb it is the noun
    assert tag_caption("a boxer throws punches") == ["a/DET", "boxer/NOUN", "throw/VERB", "punch/NOUN"]


def test_capitalised_inflected_forms_mid_caption_keep_their_lexicon_tag():
    # "Stopped", "Hopped", "Running" are lexicon forms (doubled consonant), not unknown capitalised words
    assert tag_caption("The man Stopped and Hopped") == ["the/DET", "man/NOUN", "stop/VERB", "and/CCONJ", "hop/VERB"]
    assert tag_caption("A person Running") == ["a/DET", "person/NOUN", "run/VERB"]


def test_a_doubled_gerund_after_an_article_is_the_verb():
    assert tag_caption("a person does a running jump") == [
        "a/DET", "person/NOUN", "do/VERB", "a/DET", "run/VERB", "jump/NOUN"]


# ---------------------------------------------------------------------------------------------------------------------
# Context rules
# ---------------------------------------------------------------------------------------------------------------------


def test_does_before_a_noun_phrase_is_the_main_verb_do():
    assert tag_caption("someone does a jump") == ["someone/PRON", "do/VERB", "a/DET", "jump/NOUN"]


def test_an_adjective_after_an_intensifier_stays_an_adjective():
    # "slow" is also a verb; after "very" it is the adjective
    assert tag_caption("a person walks very slow") == ["a/DET", "person/NOUN", "walk/VERB", "very/ADV", "slow/ADJ"]


def test_left_as_a_noun_makes_the_adjective_before_it_an_adjective():
    assert tag_caption("a person makes a slow left turn") == [
        "a/DET", "person/NOUN", "make/VERB", "a/DET", "slow/ADJ", "left/ADJ", "turn/NOUN"]


def test_forward_before_a_noun_stays_an_adverb():
    assert "forward/ADV" in tag_caption("a person walks forward arms swinging")


def test_an_adjective_that_is_also_a_verb_before_a_noun_after_a_verb():
    # "keeps bent knees": "bent" qualifies the noun, it is not a second verb
    assert tag_caption("a person keeps bent knees") == ["a/DET", "person/NOUN", "keep/VERB", "bent/ADJ", "knee/NOUN"]


def test_a_particle_before_a_determiner_is_a_preposition():
    assert tag_caption("a person climbs up the ladder") == [
        "a/DET", "person/NOUN", "climb/VERB", "up/ADP", "the/DET", "ladder/NOUN"]


def test_a_gerund_that_is_also_a_noun_after_a_verb_stays_a_verb():
    # "boxing" is in the lexicon as a noun too; after "starts" it is the verb's gerund
    assert tag_caption("a person starts boxing") == ["a/DET", "person/NOUN", "start/VERB", "box/VERB"]


def test_a_plural_made_from_a_verb_after_a_determiner_is_a_noun():
    # "jabs" is only in the lexicon as a verb
    assert tag_caption("a boxer throws some jabs") == ["a/DET", "boxer/NOUN", "throw/VERB", "some/DET", "jab/NOUN"]


def test_a_compound_after_an_and_a_plural_number_is_a_noun():
    # "an eighty degrees turn": "an" began the noun phrase, so "turn" is its head, not a verb
    assert tag_caption("a person makes an eighty degrees turn")[-2:] == ["degree/NOUN", "turn/NOUN"]


def test_unknown_words_by_suffix():
    assert tag_caption("a person walks oddly")[-1] == "oddly/ADV"
    assert tag_caption("a person twirled and hopped") == ["a/DET", "person/NOUN", "twirl/VERB", "and/CCONJ", "hop/VERB"]
    assert tag_caption("a person does a mournful walk")[-2:] == ["mournful/ADJ", "walk/NOUN"]


# ---------------------------------------------------------------------------------------------------------------------
# Tokenising
# ---------------------------------------------------------------------------------------------------------------------


def test_a_capitalised_contraction_expands_like_a_lower_case_one():
    assert tag_caption("Don't move") == ["do/AUX", "move/VERB"]


def test_a_decimal_number_is_a_number_for_the_noun_after_it():
    assert tag_caption("walks 2.5 steps") == ["walk/VERB", "step/NOUN"]


# ---------------------------------------------------------------------------------------------------------------------
# Lemmas of words outside the lexicon
# ---------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("word, lemma", [
    ("copies", "copy"), ("copied", "copy"), ("smashes", "smash"), ("drilled", "drill"), ("spelling", "spell"),
    ("tickled", "tickle"), ("stayed", "stay"), ("prayed", "pray"), ("bobbing", "bob"), ("wagged", "wag"),
])
def test_more_verb_lemmas_outside_the_lexicon(word, lemma):
    assert lemmatize(word, "VERB") == lemma


@pytest.mark.parametrize("word, lemma", [
    # a stem ending consonant + e + consonant, or a vowel pair + consonant, takes no e back
    ("happened", "happen"), ("entered", "enter"), ("shouted", "shout"), ("boarded", "board"),
])
def test_verb_stems_that_take_no_e_back(word, lemma):
    assert lemmatize(word, "VERB") == lemma


@pytest.mark.parametrize("word, lemma", [("ties", "tie"), ("pies", "pie"), ("bodies", "body")])
def test_short_ies_nouns_keep_their_ie(word, lemma):
    assert lemmatize(word, "NOUN") == lemma


@pytest.mark.parametrize("word, lemma", [("benches", "bench"), ("couches", "couch"), ("pelvis", "pelvis"),
                                         ("axis", "axis")])
def test_noun_lemmas_outside_the_lexicon(word, lemma):
    assert lemmatize(word, "NOUN") == lemma


# ---------------------------------------------------------------------------------------------------------------------
# Text lines
# ---------------------------------------------------------------------------------------------------------------------


def test_a_hash_inside_a_caption_becomes_a_space():
    # "#" separates the fields of a text line; the words on either side of one stay two words
    assert format_text_line("a person#waves") == "a person waves#a/DET person/NOUN wave/VERB#0.0#0.0"


def test_the_text_line_tags_the_caption_as_written():
    # a capital inside the caption marks a proper noun, in the line as in tag_caption
    line = format_text_line("A person greets Bob")
    assert line == "A person greets Bob#a/DET person/NOUN greet/VERB bob/PROPN#0.0#0.0"


# ---------------------------------------------------------------------------------------------------------------------
# Double consonants
# ---------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("word, lemma", [
    ("added", "add"), ("adding", "add"), ("erred", "err"),
    ("sniffed", "sniff"), ("puffing", "puff"), ("stuffed", "stuff"), ("scoffed", "scoff"),
])
def test_base_forms_ending_in_a_double_consonant_keep_it(word, lemma):
    assert lemmatize(word, "VERB") == lemma


@pytest.mark.parametrize("word, lemma", [("bobbing", "bob"), ("wagged", "wag"), ("plodding", "plod")])
def test_doubled_consonants_of_short_verbs_are_still_undone(word, lemma):
    assert lemmatize(word, "VERB") == lemma


def test_a_caption_with_a_double_consonant_verb_gets_its_lemma():
    assert tag_caption("a person sniffed the air") == ["a/DET", "person/NOUN", "sniff/VERB", "the/DET", "air/NOUN"]


# ---------------------------------------------------------------------------------------------------------------------
# Nouns ending in -ed / -ing after a verb
# ---------------------------------------------------------------------------------------------------------------------


def test_speed_and_swing_after_a_verb_are_its_object():
    assert tag_caption("a person changes speed") == ["a/DET", "person/NOUN", "change/VERB", "speed/NOUN"]
    assert tag_caption("a golfer practices swing") == ["a/DET", "golfer/NOUN", "practice/VERB", "swing/NOUN"]
