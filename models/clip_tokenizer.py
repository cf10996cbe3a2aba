"""OpenAI CLIP's byte-level BPE tokenizer, read from its vocabulary file ``bpe_simple_vocab_16e6.txt.gz``, and the text
cleaning it applies to a caption (``models.text_encoders.CLIPTextEncoder`` feeds its ids to the text tower)."""

from __future__ import annotations

import gzip
import html
import os
import unicodedata
from functools import lru_cache

import torch

CLIP_VOCAB_NAME = "bpe_simple_vocab_16e6.txt.gz"
_CLIP_MAX_MERGES = 49152 - 256 - 2
# ftfy's uncurl_quotes, on by default in the fix_text that OpenAI's tokenizer runs: "person’s" -> "person's".
_STRAIGHT_QUOTES = str.maketrans({**dict.fromkeys("\u02bc\u2018\u2019\u201a\u201b", "'"),
                                  **dict.fromkeys("\u201c\u201d\u201e\u201f", '"')})
CLIP_SPECIAL_TOKENS = ("<|startoftext|>", "<|endoftext|>")


@lru_cache
def bytes_to_unicode() -> dict[int, str]:
    """OpenAI/GPT-2 byte -> printable unicode map: printable bytes map to themselves, the rest to 256 + n."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) \
        + list(range(ord("®"), ord("ÿ") + 1))
    codes = printable[:]
    n = 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            codes.append(256 + n)
            n += 1
    return dict(zip(printable, [chr(c) for c in codes]))


def clean_clip_text(text: str) -> str:
    """A caption as OpenAI's tokenizer reads it: HTML-unescaped, the two fixes of ``ftfy.fix_text`` that ordinary
    captions meet (curly quotes made straight, accents composed to NFC), whitespace collapsed, lower-cased.

    ftfy is not a dependency here: its repairs of mis-encoded (mojibake) text, Latin ligatures and full-width forms
    are not made.
    """
    text = html.unescape(html.unescape(text))
    text = unicodedata.normalize("NFC", text.translate(_STRAIGHT_QUOTES))
    return " ".join(text.split()).lower()


class CLIPTokenizer:
    """OpenAI CLIP's byte-level BPE tokenizer, read from ``bpe_simple_vocab_16e6.txt.gz``; text cleaned by
    ``clean_clip_text``.

    As in OpenAI's, "<|startoftext|>" and "<|endoftext|>" inside a caption are the special tokens, not text: a typed
    end token is where the text feature is pooled, so the words after it do not count.
    """

    def __init__(self, vocab_path: str | os.PathLike) -> None:
        import regex

        if not os.path.isfile(vocab_path):
            raise FileNotFoundError(f"CLIP BPE vocabulary not found: {vocab_path}; expected {CLIP_VOCAB_NAME} from "
                                    "the openai/CLIP repository, clip/")
        try:
            with gzip.open(vocab_path, "rt", encoding="utf-8") as f:
                lines = f.read().split("\n")
        except (OSError, EOFError, UnicodeDecodeError) as e:  # gzip's errors name no file
            raise ValueError(f"{vocab_path}: not a readable gzip-compressed BPE vocabulary ({e}); it should be "
                             f"{CLIP_VOCAB_NAME} as in the openai/CLIP repository, clip/") from e
        # Line 0 is a version header; the merges follow in priority order.
        merges = [tuple(line.split()) for line in lines[1:] if line.strip()][:_CLIP_MAX_MERGES]
        bad = [m for m in merges if len(m) != 2]
        if bad:
            raise ValueError(f"{vocab_path}: expected 'left right' merge pairs per line, got {bad[0]!r}")
        self.byte_encoder = bytes_to_unicode()
        vocab = list(self.byte_encoder.values())
        vocab += [v + "</w>" for v in vocab]
        vocab += ["".join(m) for m in merges]
        vocab += ["<|startoftext|>", "<|endoftext|>"]
        self.encoder = {token: i for i, token in enumerate(vocab)}
        self.bpe_ranks = {m: i for i, m in enumerate(merges)}
        self.sot_token = self.encoder["<|startoftext|>"]
        self.eot_token = self.encoder["<|endoftext|>"]
        self.vocab_size = len(vocab)
        # Seeded as OpenAI's: the special strings, which the pattern keeps whole, are their own single BPE piece.
        self._cache: dict[str, str] = {t: t for t in CLIP_SPECIAL_TOKENS}
        self._pattern = regex.compile(
            r"""<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+""",
            regex.IGNORECASE)

    def _bpe(self, token: str) -> list[str]:
        if token in self._cache:
            return self._cache[token].split(" ")
        word = tuple(token[:-1]) + (token[-1] + "</w>",)
        while len(word) > 1:
            pairs = set(zip(word[:-1], word[1:]))
            best = min(pairs, key=lambda pair: self.bpe_ranks.get(pair, float("inf")))
            if best not in self.bpe_ranks:
                break
            merged, i = [], 0
            while i < len(word):
                if i < len(word) - 1 and (word[i], word[i + 1]) == best:
                    merged.append(word[i] + word[i + 1])
                    i += 2
                else:
                    merged.append(word[i])
                    i += 1
            word = tuple(merged)
        self._cache[token] = " ".join(word)
        return list(word)

    def encode(self, text: str) -> list[int]:
        """One caption -> BPE ids (without start/end tokens)."""
        ids = []
        for token in self._pattern.findall(clean_clip_text(text)):
            token = "".join(self.byte_encoder[b] for b in token.encode("utf-8"))
            ids.extend(self.encoder[piece] for piece in self._bpe(token))
        return ids

    def __call__(self, texts: list[str], context_length: int) -> torch.Tensor:
        """Captions (B,) -> (B, context_length) long: [SOT, ids..., EOT, 0...], truncated so EOT always fits."""
        out = torch.zeros(len(texts), context_length, dtype=torch.long)
        for i, text in enumerate(texts):
            ids = [self.sot_token] + self.encode(text) + [self.eot_token]
            if len(ids) > context_length:
                ids = ids[:context_length]
                ids[-1] = self.eot_token
            out[i, : len(ids)] = torch.tensor(ids)
        return out
