"""Word vectors and POS one-hots for the Guo et al. evaluator's text encoder.

Captions in ``texts/*.txt`` are stored as ``word/POS`` tokens (spaCy tags; nouns and verbs lemmatised). The
evaluator reads each token as a word vector plus a 15-class POS one-hot in which a few motion-relevant words
(directions, body parts, objects, actions, manner) get their own "VIP" class instead of their spaCy tag.

Two sources of word vectors share one contract, ``wv["word/POS"] -> (word, pos_onehot (15,))``:

- ``WordVectorizer``: the released GloVe subset (``glove/our_vab_data.npy``, ``our_vab_words.pkl``,
  ``our_vab_idx.pkl``); ``word`` is a float32 vector (dim_word,). This is what the released evaluators use.
- ``LearnedVocab``: for datasets without GloVe coverage, a vocabulary built from the training captions; ``word``
  is an int64 id (0-d array) fed to the text encoder's learned ``nn.Embedding``. An evaluator trained this way
  stores the word list in its checkpoint, so loading it needs no extra files.

The ``.pkl`` files are read with an unpickler that only builds lists, dicts, strings and ints: a pickle naming any
other class is refused rather than executed.
"""

from __future__ import annotations

import json
import logging
import os
import pickle
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any, NamedTuple

import numpy as np

from utils.checkpoint import digest
from utils.motion_files import read_split, read_texts

logger = logging.getLogger(__name__)

POS_ENUMERATOR: dict[str, int] = {
    "VERB": 0, "NOUN": 1, "DET": 2, "ADP": 3, "NUM": 4, "AUX": 5, "PRON": 6, "ADJ": 7, "ADV": 8,
    "Loc_VIP": 9, "Body_VIP": 10, "Obj_VIP": 11, "Act_VIP": 12, "Desc_VIP": 13, "OTHER": 14,
}
DIM_POS_OHOT = len(POS_ENUMERATOR)

# The reference's VIP word lists; a word takes the first class that lists it, in this order.
VIP_WORDS: dict[str, tuple[str, ...]] = {
    "Loc_VIP": ("left", "right", "clockwise", "counterclockwise", "anticlockwise", "forward", "back", "backward",
                "up", "down", "straight", "curve"),
    "Body_VIP": ("arm", "chin", "foot", "feet", "face", "hand", "mouth", "leg", "waist", "eye", "knee", "shoulder",
                 "thigh"),
    "Obj_VIP": ("stair", "dumbbell", "chair", "window", "floor", "car", "ball", "handrail", "baseball",
                "basketball"),
    "Act_VIP": ("walk", "run", "swing", "pick", "bring", "kick", "put", "squat", "throw", "hop", "dance", "jump",
                "turn", "stumble", "stop", "sit", "lift", "lower", "raise", "wash", "stand", "kneel", "stroll",
                "rub", "bend", "balance", "flap", "jog", "shuffle", "lean", "rotate", "spin", "spread", "climb"),
    "Desc_VIP": ("slowly", "carefully", "fast", "careful", "slow", "quickly", "happy", "angry", "sad", "happily",
                 "angrily", "sadly"),
}
# word -> VIP class; iterating the classes in reverse lets the first class that lists a word win.
_VIP_CLASS: dict[str, str] = {w: cls for cls, words in reversed(VIP_WORDS.items()) for w in words}

SOS, EOS, UNK = "sos", "eos", "unk"
SPECIAL_WORDS = (SOS, EOS, UNK)  # rows 0, 1, 2 of the released vocabulary
MAX_TEXT_LEN = 20  # tokens kept per caption before sos/eos are added (reference max_text_len)
GLOVE_PREFIX = "our_vab"
# The word-vector sources an evaluator records. A released evaluator reads the official GloVe vectors and records
# nothing of them; one trained here with --glove_dir records "GloVe" with the folder and the digest of its vectors
# (vectorizer_digest), whatever folder it was: only those vectors reproduce its scores.
SOURCE_GLOVE = "official GloVe"
SOURCE_GLOVE_FOLDER = "GloVe"
SOURCE_LEARNED = "learned vocabulary"


def glove_file_names(prefix: str = GLOVE_PREFIX) -> tuple[str, str, str]:
    """The three file names of a GloVe folder: vectors (.npy), word list (.pkl), word -> row dict (.pkl)."""
    return f"{prefix}_data.npy", f"{prefix}_words.pkl", f"{prefix}_idx.pkl"


def split_token(token: str) -> tuple[str, str]:
    """``"word/POS"`` -> ``("word", "POS")``. The last ``/`` separates the tag, so a word may itself hold one."""
    word, sep, pos = token.rpartition("/")
    if not sep or not word:
        raise ValueError(f"caption token {token!r} is not of the form 'word/POS'")
    return word, pos


def pos_onehot(pos: str) -> np.ndarray:
    """POS tag (or VIP class) -> float32 one-hot (15,); tags outside the 15 classes count as OTHER."""
    vec = np.zeros(DIM_POS_OHOT, dtype=np.float32)
    vec[POS_ENUMERATOR.get(pos, POS_ENUMERATOR["OTHER"])] = 1.0
    return vec


def token_pos_onehot(word: str, pos: str, known: bool) -> np.ndarray:
    """The POS one-hot the evaluator sees for a token: OTHER for unknown words, the VIP class for VIP words."""
    if not known:
        return pos_onehot("OTHER")
    return pos_onehot(_VIP_CLASS.get(word, pos))


class VocabularyFileError(pickle.UnpicklingError, ValueError):
    """A vocabulary pickle that cannot be read (an HTML page of a failed download, an empty or cut-short file, a
    refused class): an ``UnpicklingError`` that is also a ``ValueError``, so the scripts report it in one line."""


class _PlainUnpickler(pickle.Unpickler):
    """Calls no class but list, dict, str and int; any other class named in the stream is refused. (Tuples, floats,
    None and, from protocol 4, sets have opcodes of their own, which name no class: those are built too, and
    ``WordVectorizer`` checks the types it reads.)"""

    _ALLOWED = {("builtins", n) for n in ("list", "dict", "str", "int")} | \
               {("__builtin__", n) for n in ("list", "dict", "str", "int")}

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in self._ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refused to load {module}.{name}: only lists, dicts, strings and ints are "
                                     "accepted in vocabulary files")


def load_plain_pickle(path: str) -> Any:
    """Unpickle a file that may hold only lists, dicts, strings and ints (never arbitrary classes)."""
    with open(path, "rb") as f:
        try:
            return _PlainUnpickler(f).load()
        except (pickle.UnpicklingError, EOFError, ValueError) as e:  # EOFError: an empty file
            raise VocabularyFileError(f"{path}: not a readable vocabulary pickle ({e})") from e


class WordVectorizer:
    """The released GloVe vocabulary: ``wv["word/POS"] -> (word_vec (dim_word,) float32, pos_onehot (15,))``.

    Unknown words map to the ``unk`` vector with POS OTHER; words in ``VIP_WORDS`` get their VIP class.
    """

    source = SOURCE_GLOVE
    returns_ids = False

    def __init__(self, glove_dir: str, prefix: str = GLOVE_PREFIX) -> None:
        names = glove_file_names(prefix)
        paths = [os.path.join(glove_dir, n) for n in names]
        missing = [p for p in paths if not os.path.isfile(p)]
        if missing:
            raise FileNotFoundError(
                f"GloVe vocabulary file(s) not found: {', '.join(missing)}. The evaluator's word vectors are three "
                f"files in one folder: glove/{names[0]}, glove/{names[1]}, glove/{names[2]} (from the "
                "text-to-motion release, fetched by its prepare/download_glove.sh); put them in "
                f"{os.path.abspath(glove_dir)} or pass their folder as glove_dir.")
        data_path, words_path, idx_path = paths
        try:
            vectors = np.load(data_path, allow_pickle=False)
        except (OSError, ValueError, EOFError) as e:  # EOFError: an empty file
            raise ValueError(f"{data_path}: not a readable .npy array of word vectors: {e}") from e
        if not isinstance(vectors, np.ndarray):  # np.load opens any zip, whatever its name, as an .npz archive
            vectors.close()
            raise ValueError(f"{data_path}: not a readable .npy array of word vectors (an .npz archive; save the "
                             "(num_words, dim_word) array with np.save)")
        words = load_plain_pickle(words_path)
        word2idx = load_plain_pickle(idx_path)
        if vectors.ndim != 2:
            raise ValueError(f"{data_path}: expected word vectors of shape (num_words, dim_word), got {vectors.shape}")
        if not (np.issubdtype(vectors.dtype, np.floating) or np.issubdtype(vectors.dtype, np.integer)):
            raise ValueError(f"{data_path}: word vectors of dtype {vectors.dtype} are not numeric; expected floats")
        if not np.isfinite(vectors).all():
            bad = sorted({int(r) for r in np.argwhere(~np.isfinite(vectors))[:, 0]})
            raise ValueError(f"{data_path}: rows {bad[:5]} of the word vectors hold NaN or inf; expected finite "
                             "values")
        if not isinstance(words, list) or not all(isinstance(w, str) for w in words):
            raise ValueError(f"{words_path}: expected a list of words (str), got {type(words).__name__}")
        if not isinstance(word2idx, dict):
            raise ValueError(f"{idx_path}: expected a dict word (str) -> row (int), got {type(word2idx).__name__}")
        # bool is an int subclass: a True row would silently read row 1 (eos's vector).
        bad = next(((k, v) for k, v in word2idx.items() if not isinstance(k, str) or not isinstance(v, int)
                    or isinstance(v, bool)), None)
        if bad is not None:
            raise ValueError(f"{idx_path}: entry {bad[0]!r} -> {bad[1]!r}; expected a dict word (str) -> row (int)")
        absent = [w for w in words if w not in word2idx]
        if absent:
            raise ValueError(f"{idx_path}: words listed in {words_path} have no row: {absent[:5]}")
        rows = [word2idx[w] for w in words]
        if rows and (min(rows) < 0 or max(rows) >= vectors.shape[0]):
            raise ValueError(f"{idx_path}: rows must lie in [0, {vectors.shape[0]}) (the rows of {data_path}), "
                             f"got [{min(rows)}, {max(rows)}]")
        # Every sentence is sos + tokens + eos padded with unk (encode_caption); a vocabulary without one of them
        # would silently read it as unk.
        absent_special = [w for w in SPECIAL_WORDS if w not in word2idx]
        if absent_special:
            raise ValueError(f"{words_path}: the vocabulary has no {' / '.join(map(repr, absent_special))} entry "
                             f"(the released one has {', '.join(map(repr, SPECIAL_WORDS))}: sentence start, end, "
                             "unknown words and padding)")
        self.glove_dir = glove_dir
        self.words: list[str] = list(words)
        self.word2idx: dict[str, int] = {w: word2idx[w] for w in words}
        self._vectors = np.asarray(vectors, dtype=np.float32)

    @property
    def dim_word(self) -> int:
        return int(self._vectors.shape[1])

    def __len__(self) -> int:
        return len(self.words)

    def __contains__(self, word: str) -> bool:
        return word in self.word2idx

    def __getitem__(self, token: str) -> tuple[np.ndarray, np.ndarray]:
        word, pos = split_token(token)
        known = word in self.word2idx
        vec = self._vectors[self.word2idx[word if known else UNK]]
        return vec.copy(), token_pos_onehot(word, pos, known)


class LearnedVocab:
    """A vocabulary for a learned word embedding: ``wv["word/POS"] -> (word_id () int64, pos_onehot (15,))``.

    Ids 0, 1, 2 are ``sos``, ``eos``, ``unk`` as in the released vocabulary; unknown words get ``unk`` and POS
    OTHER, VIP words their VIP class, exactly as ``WordVectorizer``. ``dim_word`` is the width of the embedding the
    text encoder learns.
    """

    source = SOURCE_LEARNED
    returns_ids = True

    def __init__(self, words: Sequence[str], dim_word: int = 300) -> None:
        words = list(words)
        if tuple(words[:3]) != SPECIAL_WORDS:
            raise ValueError(f"a learned vocabulary starts with {list(SPECIAL_WORDS)}, got {words[:3]}")
        if len(set(words)) != len(words):
            dup = sorted(w for w, c in Counter(words).items() if c > 1)
            raise ValueError(f"learned vocabulary has duplicate words: {dup[:5]}")
        if dim_word < 1:
            raise ValueError(f"dim_word must be >= 1, got {dim_word}")
        self.words: list[str] = words
        self.word2idx: dict[str, int] = {w: i for i, w in enumerate(words)}
        self.dim_word = int(dim_word)

    @classmethod
    def from_tokens(cls, tokens: Iterable[str], dim_word: int = 300, min_count: int = 1) -> LearnedVocab:
        """Vocabulary of the words seen at least ``min_count`` times in ``word/POS`` tokens, sorted by word."""
        counts = Counter(split_token(t)[0] for t in tokens)
        words = sorted(w for w, c in counts.items() if c >= min_count and w not in SPECIAL_WORDS)
        return cls(list(SPECIAL_WORDS) + words, dim_word=dim_word)

    @classmethod
    def from_split(cls, data_root: str, split: str = "train", dim_word: int = 300,
                   min_count: int = 1) -> LearnedVocab:
        """Vocabulary of the captions of ``<data_root>/texts/<id>.txt`` for the ids in ``<data_root>/<split>.txt``.

        The split file and the caption lines (``caption#word/POS word/POS ...#start#end``) are read by
        ``utils.motion_files.read_split`` / ``read_texts`` as the datasets read them (``DatasetError`` naming the file,
        and the line of a malformed caption). Only the training split should be used so that test-only words stay
        unknown, as they are for GloVe.
        """
        split_file = os.path.join(data_root, f"{split}.txt")
        ids = read_split(data_root, split)
        tokens: list[str] = []
        missing = 0
        for motion_id in ids:
            path = os.path.join(data_root, "texts", f"{motion_id}.txt")
            if not os.path.isfile(path):
                missing += 1
                continue
            # Read as the datasets read it (a caption may itself hold '#'), so both see the same tokens.
            for entry in read_texts(path):
                for token in entry.tokens:
                    try:
                        split_token(token)
                    except ValueError as e:
                        raise ValueError(f"{path}: {e}") from e
                tokens.extend(entry.tokens)
        if missing:
            logger.warning("%d of %d ids in %s have no caption file under %s", missing, len(ids), split_file,
                           os.path.join(data_root, "texts"))
        if not tokens:
            raise ValueError(f"no caption tokens found for the ids in {split_file} under "
                             f"{os.path.join(data_root, 'texts')}")
        return cls.from_tokens(tokens, dim_word=dim_word, min_count=min_count)

    def __len__(self) -> int:
        return len(self.words)

    def __contains__(self, word: str) -> bool:
        return word in self.word2idx

    def __getitem__(self, token: str) -> tuple[np.ndarray, np.ndarray]:
        word, pos = split_token(token)
        known = word in self.word2idx
        return np.array(self.word2idx[word if known else UNK], dtype=np.int64), token_pos_onehot(word, pos, known)


class CaptionEncoding(NamedTuple):
    """One caption as the evaluator reads it: word vectors (L+2, dim_word) or ids (L+2,), POS (L+2, 15), length."""

    word_embs: np.ndarray
    pos_ohot: np.ndarray
    sent_len: int


def encode_caption(wv: WordVectorizer | LearnedVocab, tokens: Sequence[str],
                   max_text_len: int = MAX_TEXT_LEN) -> CaptionEncoding:
    """``word/POS`` tokens -> the padded evaluator input (the reference dataset's rule).

    Up to ``max_text_len`` tokens are kept, ``sos/OTHER`` and ``eos/OTHER`` are added around them and
    ``unk/OTHER`` pads to ``max_text_len + 2``; ``sent_len`` counts sos and eos.
    """
    kept = [f"{SOS}/OTHER", *tokens[:max_text_len], f"{EOS}/OTHER"]
    sent_len = len(kept)
    kept += [f"{UNK}/OTHER"] * (max_text_len + 2 - sent_len)
    words, poses = zip(*(wv[t] for t in kept))
    return CaptionEncoding(np.stack(words), np.stack(poses), sent_len)


def vectorizer_digest(word_vectorizer: Any) -> str:
    """SHA-256 of what word vectors contribute to an evaluator's text input: the words and their vectors (or ids).

    It keys the GT embedding cache, and an evaluator trained with a GloVe folder records it to recognise the same
    vectors in another folder."""
    words = getattr(word_vectorizer, "words", None)
    h = digest(type(word_vectorizer).__name__, getattr(word_vectorizer, "source", None))
    if words is None:
        return h.hexdigest()
    h.update(json.dumps(list(words)).encode())
    if isinstance(word_vectorizer, WordVectorizer):  # the same rows as below, without 400k lookups of tokens
        rows = np.array([word_vectorizer.word2idx[w] for w in words], dtype=np.int64)
        h.update(np.ascontiguousarray(word_vectorizer._vectors[rows]).tobytes())
    elif not getattr(word_vectorizer, "returns_ids", False):
        vectors = np.stack([np.asarray(word_vectorizer[f"{w}/OTHER"][0], dtype=np.float32) for w in words])
        h.update(vectors.tobytes())
    return h.hexdigest()


def write_glove_folder(folder: str, words: Sequence[str], vectors: np.ndarray, prefix: str = GLOVE_PREFIX) -> None:
    """Write ``words`` (N,) and ``vectors`` (N, dim_word) in the released GloVe folder format."""
    words = list(words)
    vectors = np.asarray(vectors, dtype=np.float32)
    if vectors.ndim != 2 or vectors.shape[0] != len(words):
        raise ValueError(f"vectors must be ({len(words)}, dim_word) for {len(words)} words, got {vectors.shape}")
    os.makedirs(folder, exist_ok=True)
    data_name, words_name, idx_name = glove_file_names(prefix)
    np.save(os.path.join(folder, data_name), vectors)
    with open(os.path.join(folder, words_name), "wb") as f:
        pickle.dump(words, f)
    with open(os.path.join(folder, idx_name), "wb") as f:
        pickle.dump({w: i for i, w in enumerate(words)}, f)
