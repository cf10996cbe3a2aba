"""The GloVe and learned word vectors (utils/word_vectorizer.py): behaviour the other tests leave open (tokens and
POS one-hots, the restricted unpickler, what a GloVe folder may hold, LearnedVocab, caption encoding, digests)."""

from __future__ import annotations

import logging
import pickle

import numpy as np
import pytest

from utils.word_vectorizer import (
    POS_ENUMERATOR,
    VIP_WORDS,
    LearnedVocab,
    VocabularyFileError,
    WordVectorizer,
    encode_caption,
    glove_file_names,
    load_plain_pickle,
    split_token,
    vectorizer_digest,
    write_glove_folder,
)

WORDS = ["sos", "eos", "unk", "a", "man", "walk", "left"]


def _glove(folder, words=WORDS, dim=5, seed=0):
    vectors = np.random.default_rng(seed).standard_normal((len(words), dim)).astype(np.float32)
    write_glove_folder(str(folder), words, vectors)
    return vectors


def _write_raw(folder, words, vectors, word2idx):
    """A GloVe folder written file by file, so that each file can hold what write_glove_folder would not write."""
    folder.mkdir(parents=True, exist_ok=True)
    data_name, words_name, idx_name = glove_file_names()
    np.save(folder / data_name, vectors)
    (folder / words_name).write_bytes(pickle.dumps(words))
    (folder / idx_name).write_bytes(pickle.dumps(word2idx))


# ---------------------------------------------------------------------------------------------------------------------
# Tokens and POS one-hots
# ---------------------------------------------------------------------------------------------------------------------

def test_split_token_takes_the_last_slash_and_needs_a_word():
    """The tag follows the last '/', so a word may itself hold one; a token with an empty word or no '/' is refused."""
    assert split_token("and/or/CCONJ") == ("and/or", "CCONJ")
    assert split_token("walk/VERB") == ("walk", "VERB")
    for bad in ("/NOUN", "walk"):
        with pytest.raises(ValueError, match="is not of the form 'word/POS'"):
            split_token(bad)


def test_pos_one_hot_layout_is_the_reference_one(tmp_path):
    """The 15 POS classes sit at the reference evaluator's positions (VERB 0 ... Loc_VIP 9, Body_VIP 10, ...,
    OTHER 14) and the one-hot is float32."""
    expected = ["VERB", "NOUN", "DET", "ADP", "NUM", "AUX", "PRON", "ADJ", "ADV", "Loc_VIP", "Body_VIP", "Obj_VIP",
                "Act_VIP", "Desc_VIP", "OTHER"]
    assert POS_ENUMERATOR == {name: i for i, name in enumerate(expected)}
    words = ["sos", "eos", "unk", "man", "left", "arm", "chair", "walk", "slowly", "and"]
    _glove(tmp_path, words)
    wv = WordVectorizer(str(tmp_path))
    for token, index in [("man/NOUN", 1), ("left/ADV", 9), ("arm/NOUN", 10), ("chair/NOUN", 11),
                         ("walk/VERB", 12), ("slowly/ADV", 13), ("and/CCONJ", 14), ("man/PROPN", 14)]:
        pos = wv[token][1]
        assert pos.dtype == np.float32 and pos.shape == (15,)
        assert pos.tolist() == [1.0 if i == index else 0.0 for i in range(15)], token


def test_every_reference_vip_word_takes_its_class(tmp_path):
    """Each word of the reference VIP lists (thigh, counterclockwise, basketball, climb, sadly, ...) is read with its
    VIP class whatever its spaCy tag, when the vocabulary knows it."""
    reference = {
        "Loc_VIP": ["left", "right", "clockwise", "counterclockwise", "anticlockwise", "forward", "back", "backward",
                    "up", "down", "straight", "curve"],
        "Body_VIP": ["arm", "chin", "foot", "feet", "face", "hand", "mouth", "leg", "waist", "eye", "knee",
                     "shoulder", "thigh"],
        "Obj_VIP": ["stair", "dumbbell", "chair", "window", "floor", "car", "ball", "handrail", "baseball",
                    "basketball"],
        "Act_VIP": ["walk", "run", "swing", "pick", "bring", "kick", "put", "squat", "throw", "hop", "dance", "jump",
                    "turn", "stumble", "stop", "sit", "lift", "lower", "raise", "wash", "stand", "kneel", "stroll",
                    "rub", "bend", "balance", "flap", "jog", "shuffle", "lean", "rotate", "spin", "spread", "climb"],
        "Desc_VIP": ["slowly", "carefully", "fast", "careful", "slow", "quickly", "happy", "angry", "sad", "happily",
                     "angrily", "sadly"],
    }
    vip = [w for words in reference.values() for w in words]
    _glove(tmp_path, ["sos", "eos", "unk", *vip])
    wv = WordVectorizer(str(tmp_path))
    for cls, words in reference.items():
        for word in words:
            assert int(np.argmax(wv[f"{word}/NOUN"][1])) == POS_ENUMERATOR[cls], word
    assert {k: list(v) for k, v in VIP_WORDS.items()} == reference


# ---------------------------------------------------------------------------------------------------------------------
# The restricted unpickler
# ---------------------------------------------------------------------------------------------------------------------

def test_an_empty_or_foreign_vocabulary_pickle_is_a_vocabulary_file_error(tmp_path):
    """An empty file and a pickle of a set (neither list, dict, str nor int) are refused as unreadable vocabulary
    files, not passed on as an EOFError or a set."""
    empty = tmp_path / "empty.pkl"
    empty.write_bytes(b"")
    with pytest.raises(VocabularyFileError, match="not a readable vocabulary pickle"):
        load_plain_pickle(str(empty))
    foreign = tmp_path / "set.pkl"
    foreign.write_bytes(pickle.dumps({"walk", "run"}, protocol=3))  # names builtins.set
    with pytest.raises(VocabularyFileError, match="refused"):
        load_plain_pickle(str(foreign))


class _Flag:
    """Unpickling this object records that pickled code ran."""

    ran = False

    def __setstate__(self, state):
        type(self).ran = True


def test_a_vectors_file_of_pickled_objects_is_not_unpickled(tmp_path):
    _glove(tmp_path)
    np.save(tmp_path / glove_file_names()[0], np.array([_Flag(), _Flag()], dtype=object), allow_pickle=True)
    _Flag.ran = False
    with pytest.raises(ValueError, match="not a readable .npy array"):
        WordVectorizer(str(tmp_path))
    assert not _Flag.ran


# ---------------------------------------------------------------------------------------------------------------------
# WordVectorizer: what a GloVe folder may hold
# ---------------------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("shape", [(7,), (7, 5, 2)])
def test_vectors_that_are_not_a_matrix_are_refused(tmp_path, shape):
    _glove(tmp_path)
    np.save(tmp_path / glove_file_names()[0], np.ones(shape, dtype=np.float32))
    with pytest.raises(ValueError, match=r"expected word vectors of shape \(num_words, dim_word\)"):
        WordVectorizer(str(tmp_path))


def test_integer_or_float64_vectors_are_read_as_float32(tmp_path):
    for dtype in (np.int64, np.float64):
        vectors = np.arange(len(WORDS) * 3).reshape(len(WORDS), 3).astype(dtype)
        _write_raw(tmp_path, WORDS, vectors, {w: i for i, w in enumerate(WORDS)})
        wv = WordVectorizer(str(tmp_path))
        vec = wv["man/NOUN"][0]
        assert vec.dtype == np.float32 and vec.tolist() == [12.0, 13.0, 14.0]


def test_infinite_vectors_are_refused(tmp_path):
    vectors = _glove(tmp_path)
    vectors[4, 1] = np.inf
    np.save(tmp_path / glove_file_names()[0], vectors)
    with pytest.raises(ValueError, match=r"rows \[4\] of the word vectors hold NaN or inf"):
        WordVectorizer(str(tmp_path))


def test_a_word_list_holding_a_non_string_is_refused(tmp_path):
    vectors = np.ones((4, 3), np.float32)
    _write_raw(tmp_path, ["sos", "eos", "unk", 7], vectors, {"sos": 0, "eos": 1, "unk": 2, 7: 3})
    with pytest.raises(ValueError, match="expected a list of words"):
        WordVectorizer(str(tmp_path))


def test_an_index_with_a_non_string_key_is_refused(tmp_path):
    vectors = np.ones((4, 3), np.float32)
    _write_raw(tmp_path, ["sos", "eos", "unk", "walk"], vectors, {"sos": 0, "eos": 1, "unk": 2, "walk": 3, 5: 3})
    with pytest.raises(ValueError, match=r"entry 5 -> 3; expected a dict word \(str\) -> row \(int\)"):
        WordVectorizer(str(tmp_path))


def test_a_negative_row_is_refused(tmp_path):
    vectors = np.ones((4, 3), np.float32)
    _write_raw(tmp_path, ["sos", "eos", "unk", "walk"], vectors, {"sos": 0, "eos": 1, "unk": 2, "walk": -1})
    with pytest.raises(ValueError, match=r"rows must lie in \[0, 4\)"):
        WordVectorizer(str(tmp_path))


def test_the_last_row_is_a_valid_row(tmp_path):
    vectors = np.arange(12, dtype=np.float32).reshape(4, 3)
    _write_raw(tmp_path, ["sos", "eos", "unk", "walk"], vectors, {"sos": 0, "eos": 1, "unk": 2, "walk": 3})
    assert WordVectorizer(str(tmp_path))["walk/VERB"][0].tolist() == [9.0, 10.0, 11.0]


def test_a_listed_word_without_a_row_is_a_value_error(tmp_path):
    vectors = np.ones((4, 3), np.float32)
    _write_raw(tmp_path, ["sos", "eos", "unk", "walk"], vectors, {"sos": 0, "eos": 1, "unk": 2})
    with pytest.raises(ValueError, match=r"have no row: \['walk'\]"):
        WordVectorizer(str(tmp_path))


def test_the_vocabulary_is_the_word_list_not_every_index_entry(tmp_path):
    """A word that only the index dict names is not in the vocabulary: it reads as unk with POS OTHER."""
    vectors = np.arange(15, dtype=np.float32).reshape(5, 3)
    _write_raw(tmp_path, ["sos", "eos", "unk", "walk"], vectors,
               {"sos": 0, "eos": 1, "unk": 2, "walk": 3, "run": 4})
    wv = WordVectorizer(str(tmp_path))
    assert "run" not in wv and len(wv) == 4
    vec, pos = wv["run/VERB"]
    assert vec.tolist() == [6.0, 7.0, 8.0] and int(np.argmax(pos)) == POS_ENUMERATOR["OTHER"]


def test_dim_word_is_the_vector_width_and_lookups_are_copies(tmp_path):
    vectors = _glove(tmp_path, dim=4)
    wv = WordVectorizer(str(tmp_path))
    assert wv.dim_word == 4
    vec = wv["man/NOUN"][0]
    vec[:] = 0.0
    np.testing.assert_array_equal(wv["man/NOUN"][0], vectors[WORDS.index("man")])


def test_unknown_words_read_the_unk_row_with_other(tmp_path):
    vectors = _glove(tmp_path)
    wv = WordVectorizer(str(tmp_path))
    vec, pos = wv["zebra/VERB"]
    np.testing.assert_array_equal(vec, vectors[2])
    assert int(np.argmax(pos)) == POS_ENUMERATOR["OTHER"]


# ---------------------------------------------------------------------------------------------------------------------
# LearnedVocab
# ---------------------------------------------------------------------------------------------------------------------

def test_learned_vocab_needs_all_three_special_words_and_a_positive_width():
    with pytest.raises(ValueError, match="starts with"):
        LearnedVocab(["sos", "eos", "walk"])
    with pytest.raises(ValueError, match="dim_word must be >= 1"):
        LearnedVocab(["sos", "eos", "unk"], dim_word=0)
    with pytest.raises(ValueError, match="duplicate"):
        LearnedVocab(["sos", "eos", "unk", "walk", "run", "walk"])


def test_from_tokens_counts_words_and_keeps_special_words_once():
    tokens = ["walk/VERB", "walk/VERB", "run/VERB", "sos/OTHER", "a/DET", "a/DET", "a/DET"]
    vocab = LearnedVocab.from_tokens(tokens, dim_word=4, min_count=2)
    assert vocab.words == ["sos", "eos", "unk", "a", "walk"]
    assert LearnedVocab.from_tokens(tokens, dim_word=4).words == ["sos", "eos", "unk", "a", "run", "walk"]
    assert int(vocab["run/VERB"][0]) == 2


def _split(root, captions, train_ids):
    texts = root / "texts"
    texts.mkdir(parents=True, exist_ok=True)
    for motion_id, line in captions.items():
        (texts / f"{motion_id}.txt").write_text(line)
    (root / "train.txt").write_text("\n".join(train_ids) + "\n")


def test_from_split_applies_min_count_and_reports_missing_caption_files(tmp_path, caplog):
    _split(tmp_path, {"000001": "a man walks.#a/DET man/NOUN walk/VERB#0.0#0.0\n",
                      "000002": "a man runs.#a/DET man/NOUN run/VERB#0.0#0.0\n"},
           ["000001", "000002", "000003"])
    with caplog.at_level(logging.WARNING, logger="utils.word_vectorizer"):
        vocab = LearnedVocab.from_split(str(tmp_path), "train", dim_word=4, min_count=2)
    assert vocab.words == ["sos", "eos", "unk", "a", "man"]
    assert any("1 of 3 ids" in r.getMessage() for r in caplog.records)


def test_from_split_without_any_caption_is_refused(tmp_path):
    _split(tmp_path, {}, ["000001"])
    with pytest.raises(ValueError, match="no caption tokens found"):
        LearnedVocab.from_split(str(tmp_path), "train", dim_word=4)


# ---------------------------------------------------------------------------------------------------------------------
# encode_caption
# ---------------------------------------------------------------------------------------------------------------------

def test_encode_caption_of_exactly_max_text_len_tokens(tmp_path):
    """A caption of max_text_len tokens keeps them all: sent_len is max_text_len + 2 and no padding follows."""
    vocab = LearnedVocab(["sos", "eos", "unk", "walk", "run"], dim_word=4)
    enc = encode_caption(vocab, ["walk/VERB"] * 20)
    assert enc.sent_len == 22 and enc.word_embs.tolist() == [0] + [3] * 20 + [1]
    enc = encode_caption(vocab, ["run/VERB"] * 3, max_text_len=5)
    assert enc.sent_len == 5 and enc.word_embs.tolist() == [0, 4, 4, 4, 1, 2, 2]
    assert enc.pos_ohot.shape == (7, 15) and enc.pos_ohot[:, POS_ENUMERATOR["OTHER"]].tolist() == [1, 0, 0, 0, 1, 1, 1]


# ---------------------------------------------------------------------------------------------------------------------
# vectorizer_digest and writing
# ---------------------------------------------------------------------------------------------------------------------

def test_digest_follows_words_and_vectors_of_every_source(tmp_path):
    a = LearnedVocab(["sos", "eos", "unk", "walk"], dim_word=4)
    b = LearnedVocab(["sos", "eos", "unk", "run"], dim_word=4)
    assert vectorizer_digest(a) == vectorizer_digest(LearnedVocab(list(a.words), dim_word=4))
    assert vectorizer_digest(a) != vectorizer_digest(b)

    class Table:
        """A duck-typed vectorizer: words and their vectors, no ids."""

        returns_ids = False

        def __init__(self, scale):
            self.words = ["sos", "eos", "unk"]
            self.scale = scale

        def __getitem__(self, token):
            word = token.rsplit("/", 1)[0]
            return np.full(3, self.scale * (self.words.index(word) + 1), np.float32), np.zeros(15, np.float32)

    assert vectorizer_digest(Table(1.0)) == vectorizer_digest(Table(1.0))
    assert vectorizer_digest(Table(1.0)) != vectorizer_digest(Table(2.0))

    words = ["sos", "eos", "unk", "walk"]
    write_glove_folder(str(tmp_path / "g1"), words, np.ones((4, 3)))
    write_glove_folder(str(tmp_path / "g2"), words, np.ones((4, 3)) * 2)
    assert vectorizer_digest(WordVectorizer(str(tmp_path / "g1"))) != vectorizer_digest(
        WordVectorizer(str(tmp_path / "g2")))


def test_write_glove_folder_refuses_vectors_of_another_count(tmp_path):
    with pytest.raises(ValueError, match=r"vectors must be \(3, dim_word\)"):
        write_glove_folder(str(tmp_path), ["sos", "eos", "unk"], np.ones((4, 3)))
    assert not list(tmp_path.iterdir())
