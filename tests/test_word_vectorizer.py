"""WordVectorizer on a GloVe folder written here, VIP classes, unk, errors; the restricted unpickler; LearnedVocab."""

import pickle
import re

import numpy as np
import pytest

from utils.word_vectorizer import (
    POS_ENUMERATOR,
    LearnedVocab,
    WordVectorizer,
    encode_caption,
    glove_file_names,
    load_plain_pickle,
    write_glove_folder,
)

WORDS = ["sos", "eos", "unk", "a", "man", "walk", "left", "arm", "chair", "slowly", "and", "the", "turn"]


class Gadget:
    """Any class that is not a plain container: the unpickler must refuse it."""


def _pos_class(onehot):
    assert onehot.shape == (len(POS_ENUMERATOR),) and onehot.sum() == 1
    return list(POS_ENUMERATOR)[int(np.argmax(onehot))]


@pytest.fixture()
def glove(tmp_path):
    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((len(WORDS), 7)).astype(np.float32)
    folder = tmp_path / "glove"
    write_glove_folder(str(folder), WORDS, vectors)
    return folder, vectors


def test_reads_written_folder_vectors_and_pos(glove):
    folder, vectors = glove
    wv = WordVectorizer(str(folder))
    assert wv.dim_word == vectors.shape[1] and len(wv) == len(WORDS)
    vec, pos = wv["man/NOUN"]
    np.testing.assert_array_equal(vec, vectors[WORDS.index("man")])
    assert vec.dtype == np.float32 and _pos_class(pos) == "NOUN"
    assert _pos_class(wv["the/DET"][1]) == "DET"
    assert _pos_class(wv["and/CCONJ"][1]) == "OTHER"  # a known word with a tag outside the 15 classes


@pytest.mark.parametrize("token,cls", [("walk/VERB", "Act_VIP"), ("turn/VERB", "Act_VIP"), ("left/ADV", "Loc_VIP"),
                                       ("arm/NOUN", "Body_VIP"), ("chair/NOUN", "Obj_VIP"),
                                       ("slowly/ADV", "Desc_VIP")])
def test_vip_words_take_their_vip_class(glove, token, cls):
    wv = WordVectorizer(str(glove[0]))
    assert _pos_class(wv[token][1]) == cls


def test_unknown_word_gets_unk_vector_and_other(glove):
    folder, vectors = glove
    wv = WordVectorizer(str(folder))
    vec, pos = wv["zebra/NOUN"]
    np.testing.assert_array_equal(vec, vectors[WORDS.index("unk")])
    assert _pos_class(pos) == "OTHER"
    # A VIP word absent from the vocabulary is unknown too: no VIP class.
    assert _pos_class(wv["jump/VERB"][1]) == "OTHER"


def test_missing_file_error_names_file_and_place(glove):
    folder, _ = glove
    data_name = glove_file_names()[0]
    (folder / data_name).unlink()
    with pytest.raises(FileNotFoundError) as err:
        WordVectorizer(str(folder))
    assert "glove/our_vab_data.npy" in str(err.value) and str(folder / data_name) in str(err.value)
    with pytest.raises(FileNotFoundError, match="our_vab_idx.pkl"):
        WordVectorizer(str(folder / "nowhere"))


def test_restricted_unpickler_refuses_arbitrary_class(glove, tmp_path):
    folder, _ = glove
    idx_path = folder / glove_file_names()[2]
    idx_path.write_bytes(pickle.dumps({"sos": 0, "gadget": Gadget()}))
    with pytest.raises(pickle.UnpicklingError, match="refused") as err:
        WordVectorizer(str(folder))
    assert str(idx_path) in str(err.value)
    plain = tmp_path / "plain.pkl"
    plain.write_bytes(pickle.dumps({"a": [1, "b"]}, protocol=0))
    assert load_plain_pickle(str(plain)) == {"a": [1, "b"]}


def test_wrong_pickle_content_is_reported(glove):
    folder, _ = glove
    words_path = folder / glove_file_names()[1]
    words_path.write_bytes(pickle.dumps({"not": "a list"}))
    with pytest.raises(ValueError, match="list of words"):
        WordVectorizer(str(folder))


def test_a_row_that_is_not_an_integer_names_the_file_and_word(glove):
    """True/False pass an isinstance(int) check (True would read row 1, eos's vector): refused like any non-int."""
    folder, _ = glove
    idx_path = folder / glove_file_names()[2]
    for row in (True, "3"):
        idx_path.write_bytes(pickle.dumps({**{w: i for i, w in enumerate(WORDS)}, "man": row}))
        with pytest.raises(ValueError, match=rf"'man' -> {row!r}; expected a dict word \(str\) -> row \(int\)") as err:
            WordVectorizer(str(folder))
        assert str(idx_path) in str(err.value)


def test_encode_caption_pads_and_crops(glove):
    wv = WordVectorizer(str(glove[0]))
    short = encode_caption(wv, ["a/DET", "man/NOUN", "walk/VERB"], max_text_len=6)
    assert short.sent_len == 5 and short.word_embs.shape == (8, wv.dim_word) and short.pos_ohot.shape == (8, 15)
    np.testing.assert_array_equal(short.word_embs[0], wv["sos/OTHER"][0])
    np.testing.assert_array_equal(short.word_embs[4], wv["eos/OTHER"][0])
    np.testing.assert_array_equal(short.word_embs[5:], np.stack([wv["unk/OTHER"][0]] * 3))
    long = encode_caption(wv, ["man/NOUN"] * 9, max_text_len=6)
    assert long.sent_len == 8 and long.word_embs.shape[0] == 8


def test_learned_vocab_from_train_split(tmp_path):
    texts = tmp_path / "texts"
    texts.mkdir()
    (texts / "000001.txt").write_text("a man walks left.#a/DET man/NOUN walk/VERB left/ADV#0.0#0.0\n")
    (texts / "000002.txt").write_text("someone waves.#someone/PRON wave/VERB#0.0#0.0\n")
    (texts / "000003.txt").write_text("a zebra jumps.#a/DET zebra/NOUN jump/VERB#0.0#0.0\n")
    (tmp_path / "train.txt").write_text("000001\n000002\n")
    (tmp_path / "test.txt").write_text("000003\n")
    vocab = LearnedVocab.from_split(str(tmp_path), "train", dim_word=16)
    assert vocab.words[:3] == ["sos", "eos", "unk"]
    assert set(vocab.words[3:]) == {"a", "man", "walk", "left", "someone", "wave"}
    word_id, pos = vocab["walk/VERB"]
    assert word_id.dtype == np.int64 and word_id.shape == () and vocab.words[int(word_id)] == "walk"
    assert _pos_class(pos) == "Act_VIP"
    zebra_id, zebra_pos = vocab["zebra/NOUN"]  # test-split only word
    assert int(zebra_id) == 2 and _pos_class(zebra_pos) == "OTHER"
    caption = encode_caption(vocab, ["a/DET", "man/NOUN"])
    assert caption.word_embs.dtype == np.int64 and caption.word_embs.shape == (22,)
    assert caption.word_embs[0] == 0 and caption.word_embs[3] == 1 and caption.sent_len == 4


def test_learned_vocab_reads_the_split_as_the_datasets_do(tmp_path):
    """The split file is read by the datasets' reader: a byte-order mark does not hide the first clip's words (the
    dataset reads that clip), and a missing split file is a DatasetError naming it."""
    from utils.normalization import DatasetError

    texts = tmp_path / "texts"
    texts.mkdir()
    (texts / "000001.txt").write_text("a man walks.#a/DET man/NOUN walk/VERB#0.0#0.0\n")
    (texts / "000002.txt").write_text("someone waves.#someone/PRON wave/VERB#0.0#0.0\n")
    (tmp_path / "train.txt").write_bytes(b"\xef\xbb\xbf000001\r\n000002\r\n")
    vocab = LearnedVocab.from_split(str(tmp_path), "train", dim_word=8)
    assert vocab.words[3:] == ["a", "man", "someone", "walk", "wave"]
    with pytest.raises(DatasetError, match="split file missing") as err:
        LearnedVocab.from_split(str(tmp_path), "val", dim_word=8)
    assert str(tmp_path / "val.txt") in str(err.value)


def test_learned_vocab_rejects_bad_word_lists():
    with pytest.raises(ValueError, match="starts with"):
        LearnedVocab(["a", "b"])
    with pytest.raises(ValueError, match="duplicate"):
        LearnedVocab(["sos", "eos", "unk", "a", "a"])


@pytest.mark.parametrize("absent", ["sos", "eos", "unk"])
def test_a_vocabulary_without_a_special_word_is_refused(tmp_path, absent):
    """Every caption starts with sos/OTHER and ends with eos/OTHER: a vocabulary lacking them would silently give
    both the unk vector, and the evaluator would read other sentences than it was trained on."""
    words = [w for w in WORDS if w != absent]
    write_glove_folder(str(tmp_path / "glove"), words, np.ones((len(words), 7)))
    with pytest.raises(ValueError, match=f"'{absent}'") as err:
        WordVectorizer(str(tmp_path / "glove"))
    assert str(tmp_path / "glove" / glove_file_names()[1]) in str(err.value)


def test_learned_vocab_reads_caption_lines_as_the_datasets_do(tmp_path):
    """A caption may itself hold '#' (lines split from the right, as the datasets read them): its tokens are the
    second field from the end-tags, not the text after the caption's own '#'."""
    texts = tmp_path / "texts"
    texts.mkdir()
    (texts / "000001.txt").write_text("a person does move #1 slowly.#a/DET person/NOUN do/VERB move/NOUN "
                                      "slowly/ADV#0.0#0.0\n")
    (tmp_path / "train.txt").write_text("000001\n")
    vocab = LearnedVocab.from_split(str(tmp_path), "train", dim_word=8)
    assert vocab.words[3:] == ["a", "do", "move", "person", "slowly"]


def test_learned_vocab_names_the_caption_file_of_a_malformed_token(tmp_path):
    texts = tmp_path / "texts"
    texts.mkdir()
    (texts / "000001.txt").write_text("a person walks.#a/DET person walk/VERB#0.0#0.0\n")
    (tmp_path / "train.txt").write_text("000001\n")
    with pytest.raises(ValueError, match="'person' is not of the form 'word/POS'") as err:
        LearnedVocab.from_split(str(tmp_path), "train", dim_word=8)
    assert str(texts / "000001.txt") in str(err.value)


@pytest.mark.parametrize("content,expected", [
    ("npz", "not a readable .npy array"),
    ("strings", "not numeric"),
    ("nan", "NaN or inf"),
])
def test_a_vectors_file_that_is_no_numeric_array_names_the_file(glove, content, expected):
    folder, vectors = glove
    data_path = folder / glove_file_names()[0]
    if content == "npz":  # an .npz archive saved under the .npy name
        with open(data_path, "wb") as f:
            np.savez(f, vectors=vectors)
    elif content == "strings":
        np.save(data_path, vectors.astype(str))
    else:
        vectors[3, 2] = np.nan
        np.save(data_path, vectors)
    with pytest.raises(ValueError, match=expected) as err:
        WordVectorizer(str(folder))
    assert str(data_path) in str(err.value)


def test_a_word_list_that_is_a_web_page_is_a_one_line_error_of_the_scripts(glove, tmp_path):
    """A failed download saves an HTML page under the name: evaluation_MARDM.py and train_evaluator.py printed a
    traceback for it (an UnpicklingError is not a ValueError); it is now one of the errors they report in one line."""
    from utils.cli import USER_ERRORS

    folder, _ = glove
    words_path = folder / glove_file_names()[1]
    words_path.write_bytes(b"<!DOCTYPE html><html>")
    with pytest.raises(USER_ERRORS, match=rf"{re.escape(str(words_path))}: not a readable vocabulary pickle") as err:
        WordVectorizer(str(folder))
    assert isinstance(err.value, pickle.UnpicklingError)


def test_a_glove_row_past_the_vectors_is_refused_at_load(tmp_path):
    from utils.word_vectorizer import WordVectorizer, glove_file_names, write_glove_folder

    words = ["sos", "eos", "unk", "walk"]
    write_glove_folder(str(tmp_path), words, np.ones((4, 3), dtype=np.float32))
    with open(tmp_path / glove_file_names()[2], "wb") as f:
        pickle.dump({"sos": 0, "eos": 1, "unk": 2, "walk": 4}, f)  # 4 rows: 4 is one past the last
    with pytest.raises(ValueError, match="rows must lie in"):
        WordVectorizer(str(tmp_path))
