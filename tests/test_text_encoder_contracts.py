"""Contracts of the CLIP tokenizer (models/clip_tokenizer.py) and the text encoders (models/text_encoders.py): the byte
alphabet, BPE details, dtype handling, the CLIP loader's refusals, the caption cache's file checks."""

from __future__ import annotations

import gzip
import re

import numpy as np
import pytest
import torch
from test_text_encoders import (
    CONTEXT,
    EOT,
    HELLO,
    VOCAB,
    WALK,
    WIDTH,
    ScaledEncoder,
    ascii_id,
    fake_clip_state_dict,
    reference_clip,
    write_clip_files,
)

from models.clip_tokenizer import CLIP_VOCAB_NAME, CLIPTokenizer, bytes_to_unicode, clean_clip_text
from models.text_encoders import (
    PROBE_CAPTION,
    CachedTextEncoder,
    CLIPTextEncoder,
    CLIPTextTransformer,
    load_clip_text_state_dict,
)


@pytest.fixture()
def clip_files(tmp_path):
    return write_clip_files(tmp_path)


def write_vocab(path, merges, header="#version: 0.2"):
    with gzip.open(path, "wt", encoding="utf-8") as f:
        f.write(header + "\n" + "\n".join(merges) + "\n")
    return path


# ----- tokenizer ------------------------------------------------------------------------------------------------------
def test_byte_alphabet_is_openais_gpt2_map():
    """Printable bytes map to themselves, the other 68 to chr(256 + n) in byte order: space is 'Ġ', the soft hyphen
    0xAD is 'Ń', 0x7F is 'ġ'; 256 distinct characters in all."""
    bu = bytes_to_unicode()
    assert len(bu) == 256 and len(set(bu.values())) == 256
    assert bu[ord("!")] == "!" and bu[ord("~")] == "~" and bu[0xA1] == "\u00a1" and bu[0xAE] == "\u00ae"
    assert bu[0xFF] == "\u00ff"
    assert bu[0] == chr(256) and bu[32] == "\u0120" and bu[0x7F] == "\u0121" and bu[0xAD] == "\u0143"


def test_clean_clip_text_collapses_every_kind_of_whitespace():
    """Tabs, newlines and runs of spaces become one space, and the ends are stripped (OpenAI's whitespace_clean)."""
    assert clean_clip_text(" A\tperson\n walks\r\n  fast ") == "a person walks fast"


def test_a_vocabulary_that_is_not_utf8_is_refused_naming_it(tmp_path):
    """A gzip file whose content is not UTF-8 text is a ValueError naming the file, not a bare UnicodeDecodeError."""
    path = tmp_path / "latin.txt.gz"
    with gzip.open(path, "wb") as f:
        f.write(b"#version: 0.2\nh e\n\xff\xfe x\n")
    with pytest.raises(ValueError, match=r"latin\.txt\.gz: not a readable gzip-compressed BPE vocabulary"):
        CLIPTokenizer(path)


@pytest.mark.parametrize("line", ["abc", "a b c"])
def test_a_merge_line_that_is_not_a_pair_is_refused_naming_the_line(tmp_path, line):
    """Every merge line holds exactly two pieces; the error names the file and the offending line."""
    path = write_vocab(tmp_path / CLIP_VOCAB_NAME, ["h e", line, "l l"])
    expected = repr(tuple(line.split())).replace("(", r"\(").replace(")", r"\)")
    with pytest.raises(ValueError, match=rf"{CLIP_VOCAB_NAME}: expected 'left right' merge pairs per line, "
                                         rf"got {expected}"):
        CLIPTokenizer(path)


def test_bpe_applies_the_earlier_merge_first(tmp_path):
    """Merges are ranked by their line: "abc" with merges ["a b", "b c</w>"] is "ab" + "c</w>", and with the lines
    swapped it is "a" + "bc</w>"."""
    tok = CLIPTokenizer(write_vocab(tmp_path / "ab.txt.gz", ["a b", "b c</w>"]))
    assert tok.encode("abc") == [tok.encoder["ab"], ascii_id("c", True)] == [512, ascii_id("c", True)]
    tok = CLIPTokenizer(write_vocab(tmp_path / "bc.txt.gz", ["b c</w>", "a b"]))
    assert tok.encode("abc") == [ascii_id("a"), tok.encoder["bc</w>"]] == [ascii_id("a"), 512]


def test_digits_are_single_tokens_and_contractions_stay_whole(clip_files):
    """OpenAI's pattern splits numbers into single digits and keeps "'s" as one pre-token ("'" then "s</w>"), not
    "'" and "s" as two words."""
    tok = CLIPTokenizer(clip_files.parent / CLIP_VOCAB_NAME)
    assert tok.encode("12") == [ascii_id("1", True), ascii_id("2", True)]
    assert tok.encode("walk's") == [WALK, ascii_id("'"), ascii_id("s", True)]
    assert tok.encode("walk'") == [WALK, ascii_id("'", True)]


def test_non_ascii_text_is_tokenized_from_its_utf8_bytes(clip_files):
    """'é' is the two UTF-8 bytes C3 A9 through the byte alphabet, the last one marked end of word."""
    tok = CLIPTokenizer(clip_files.parent / CLIP_VOCAB_NAME)
    bu = bytes_to_unicode()
    assert tok.encode("\u00e9") == [tok.encoder[bu[0xC3]], tok.encoder[bu[0xA9] + "</w>"]]


def test_tokens_are_long(clip_files):
    """The tokenizer returns (B, context_length) int64 ids, as nn.Embedding and clip.tokenize use."""
    tok = CLIPTokenizer(clip_files.parent / CLIP_VOCAB_NAME)
    tokens = tok(["hello", "walk"], CONTEXT)
    assert tokens.dtype == torch.long and tokens.shape == (2, CONTEXT)


# ----- CLIP text tower ------------------------------------------------------------------------------------------------
def test_clip_in_bfloat16_runs_in_that_precision_and_returns_float32(clip_files):
    """dtype= sets the tower's precision (LayerNorm computed in float32 and cast back); the embeddings come back in
    float32 and close to the float32 tower's."""
    full = CLIPTextEncoder(clip_files)
    half = CLIPTextEncoder(clip_files, dtype=torch.bfloat16)
    assert all(p.dtype == torch.bfloat16 for p in half.model.parameters())
    texts = ["hello walk", "walk"]
    emb = half.encode(texts)
    assert emb.dtype == torch.float32 and emb.shape == (2, full.dim)
    ref = full.encode(texts)
    assert (emb - ref).abs().max() < 0.05 * ref.abs().max()


def test_clip_heads_argument_is_used(clip_files):
    """heads= overrides width // 64: one head gives another embedding than the default two."""
    one = CLIPTextEncoder(clip_files, heads=1)
    assert all(block.attn.num_heads == 1 for block in one.model.transformer.resblocks)
    default = CLIPTextEncoder(clip_files)
    assert all(block.attn.num_heads == WIDTH // 64 for block in default.model.transformer.resblocks)
    assert not torch.allclose(one.encode(["hello walk"]), default.encode(["hello walk"]), atol=1e-4)


@pytest.mark.parametrize("key, expected", [("ln_final.weight", r"no tensor 'ln_final\.weight'; expected one of shape "
                                                                r"\(width,\)"),
                                           ("text_projection", rf"no tensor 'text_projection'; expected one of shape "
                                                               rf"\({WIDTH}, embed_dim\)")])
def test_from_state_dict_without_a_size_tensor_is_a_value_error_naming_it(key, expected):
    """A state dict lacking a tensor the sizes are read from: ValueError naming the key and the shape expected."""
    sd = {k: v.float() for k, v in fake_clip_state_dict().items() if not k.startswith(("visual", "logit"))}
    del sd[key]
    with pytest.raises(ValueError, match=expected):
        CLIPTextTransformer.from_state_dict(sd)


def test_loaded_text_tower_tensors_are_float32_and_text_only(clip_files):
    """OpenAI ships fp16 weights: the loader returns the text tower's tensors only, all float32."""
    sd = load_clip_text_state_dict(clip_files)
    assert sd and all(v.dtype == torch.float32 for v in sd.values())
    assert "logit_scale" not in sd and not any(k.startswith("visual") for k in sd)
    assert "ln_final.bias" in sd and "transformer.resblocks.0.attn.in_proj_weight" in sd


def test_weights_with_fewer_token_rows_than_the_vocabulary_are_refused(clip_files, tmp_path):
    """A token embedding smaller than the BPE vocabulary is as mismatched as a larger one: both files are named."""
    torch.save(fake_clip_state_dict(vocab=VOCAB - 5), tmp_path / "small.pt")
    with pytest.raises(ValueError, match=rf"has {VOCAB} tokens but .*small\.pt embeds {VOCAB - 5}; the two files do "
                                         r"not belong together"):
        CLIPTextEncoder(tmp_path / "small.pt", vocab_path=clip_files.parent / CLIP_VOCAB_NAME)


def test_long_captions_are_truncated_to_the_weights_context_length(clip_files):
    """A caption longer than the context is cut to the positional embedding's length (EOT kept at the last slot) and
    pooled there, as the reference tower does with context-length tokens."""
    encoder = CLIPTextEncoder(clip_files)
    texts = ["hello " * 40, "walk " * 14]
    tokens = encoder.tokenizer(texts, CONTEXT)
    assert tokens[:, -1].eq(EOT).all()
    assert torch.allclose(encoder.encode(texts), reference_clip(fake_clip_state_dict(), tokens), atol=1e-4)


# ----- caption cache --------------------------------------------------------------------------------------------------
def _saved_cache(tmp_path, encoder=None, captions=("a cat", "a dog")):
    encoder = encoder or ScaledEncoder(1.0)
    cached = CachedTextEncoder(encoder)
    cached.encode(list(captions))
    path = cached.save(tmp_path / "cache.npz")
    with np.load(path) as data:
        return path, {k: data[k] for k in data.files}


def test_a_cache_without_the_encoder_array_is_refused_naming_it(tmp_path):
    """The encoder's name is required: a file lacking it is a ValueError naming the file and the array."""
    _, data = _saved_cache(tmp_path)
    del data["encoder"]
    np.savez(tmp_path / "noname.npz", **data)
    with pytest.raises(ValueError, match=r"noname\.npz: caption cache lacks the array 'encoder'"):
        CachedTextEncoder(ScaledEncoder(1.0), cache_path=tmp_path / "noname.npz")


def test_a_cache_of_the_same_encoder_name_but_another_width_is_refused(tmp_path):
    """Same name, other embedding width: the error names both widths."""
    path, _ = _saved_cache(tmp_path)

    class Wider(ScaledEncoder):
        dim = 4

        def encode(self, texts):
            return torch.ones(len(texts), 4)

    with pytest.raises(ValueError, match=r"cache\.npz: caption cache was written by encoder 'counting' with dim "
                                         r"\(3,\), expected 'counting' with dim 4"):
        CachedTextEncoder(Wider(1.0), cache_path=path)


def test_a_cache_with_more_embeddings_than_captions_is_refused(tmp_path):
    """Captions and embeddings pair one to one; extra embeddings are an error naming both counts."""
    _, data = _saved_cache(tmp_path)
    data["captions"] = data["captions"][:1]
    np.savez(tmp_path / "extra.npz", **data)
    with pytest.raises(ValueError, match=r"extra\.npz: caption cache holds 1 captions but 2 embeddings"):
        CachedTextEncoder(ScaledEncoder(1.0), cache_path=tmp_path / "extra.npz")


def test_float64_cached_embeddings_come_back_as_float32(tmp_path):
    """A file holding float64 embeddings is read as float32, and mixes with newly encoded captions."""
    _, data = _saved_cache(tmp_path)
    data["embeddings"] = data["embeddings"].astype(np.float64)
    np.savez(tmp_path / "f64.npz", **data)
    cached = CachedTextEncoder(ScaledEncoder(1.0), cache_path=tmp_path / "f64.npz")
    out = cached.encode(["a cat", "a bird"])
    assert out.dtype == torch.float32
    assert torch.equal(out, ScaledEncoder(1.0).encode(["a cat", "a bird"]))


def test_a_probe_of_another_shape_is_refused_naming_it(tmp_path):
    """The stored probe embedding must have the encoder's width."""
    _, data = _saved_cache(tmp_path)
    data["probe"] = np.ones(4, np.float32)
    np.savez(tmp_path / "probe4.npz", **data)
    with pytest.raises(ValueError, match=r"probe4\.npz: caption cache's probe embedding has shape \(4,\), expected "
                                         r"\(3,\)"):
        CachedTextEncoder(ScaledEncoder(1.0), cache_path=tmp_path / "probe4.npz")


def test_a_zero_probe_is_refused_by_a_nonzero_encoder_and_accepted_by_a_zero_one(tmp_path):
    """A stored all-zero probe matches only an encoder whose probe is zero too."""
    _, data = _saved_cache(tmp_path)
    data["probe"] = np.zeros(3, np.float32)
    np.savez(tmp_path / "zero.npz", **data)
    with pytest.raises(ValueError, match="written with other weights"):
        CachedTextEncoder(ScaledEncoder(1.0), cache_path=tmp_path / "zero.npz")
    path, _ = _saved_cache(tmp_path, encoder=ScaledEncoder(0.0))
    assert len(CachedTextEncoder(ScaledEncoder(0.0), cache_path=path)) == 2


class TiltedEncoder(ScaledEncoder):
    """ScaledEncoder with a small extra component: probe cosine about 0.995, norm within 1%."""

    def encode(self, texts):
        out = super().encode(texts)
        out[:, 2] += 0.1 * torch.tensor([float(len(t)) for t in texts])
        return out


def test_probe_thresholds_refuse_slightly_other_weights(tmp_path):
    """The probe check refuses cosine below 0.999 (here about 0.995) and a norm change above 1% (here 5%)."""
    path, _ = _saved_cache(tmp_path)
    with pytest.raises(ValueError, match=r"written with other weights .*cosine 0\.99"):
        CachedTextEncoder(TiltedEncoder(1.0), cache_path=path)
    with pytest.raises(ValueError, match=r"written with other weights .*cosine 1\.0000"):
        CachedTextEncoder(ScaledEncoder(1.05), cache_path=path)
    assert len(CachedTextEncoder(ScaledEncoder(1.005), cache_path=path)) == 2


class Float64Encoder(ScaledEncoder):
    def encode(self, texts):
        return super().encode(texts).double()


def test_cached_embeddings_are_float32_whatever_the_wrapped_encoder_returns():
    """The interface promises float32: a wrapped encoder's float64 output is cast."""
    cached = CachedTextEncoder(Float64Encoder(1.0))
    first = cached.encode(["a cat"])
    assert first.dtype == torch.float32
    assert cached.encode(["a cat", "a dog"]).dtype == torch.float32


def test_save_without_any_path_is_a_clear_value_error():
    """No path argument and no cache_path: a ValueError saying so."""
    with pytest.raises(ValueError, match="CachedTextEncoder.save: no path given and no cache_path set"):
        CachedTextEncoder(ScaledEncoder(1.0)).save()


def test_an_empty_cache_saves_and_reloads(tmp_path):
    """An empty cache writes a (0, dim) embeddings array that reads back as an empty cache."""
    path = CachedTextEncoder(ScaledEncoder(1.0)).save(tmp_path / "empty.npz")
    with np.load(path) as data:
        assert data["embeddings"].shape == (0, 3) and data["captions"].shape == (0,)
    reloaded = CachedTextEncoder(ScaledEncoder(1.0), cache_path=path)
    assert len(reloaded) == 0 and reloaded.encode([]).shape == (0, 3)


def test_the_saved_probe_is_the_embedding_of_the_probe_caption(tmp_path):
    """The file's probe is the encoder's embedding of PROBE_CAPTION, so files of other versions compare alike."""
    _, data = _saved_cache(tmp_path)
    assert np.array_equal(data["probe"], ScaledEncoder(1.0).encode([PROBE_CAPTION])[0].numpy())
    assert data["probe"].dtype == np.float32


def test_a_shorter_token_sequence_uses_the_first_positions(clip_files):
    """token_features of the first 8 tokens equal the first 8 rows of the full-context features: positions start at
    0 whatever the length, and position i sees only tokens <= i."""
    model = CLIPTextEncoder(clip_files).model
    tokens = torch.tensor([[EOT - 1, HELLO, WALK, 7, 9, 11, 13, EOT] + [0] * (CONTEXT - 8)])
    full = model.token_features(tokens)
    short = model.token_features(tokens[:, :8])
    assert short.shape == (1, 8, WIDTH)
    assert torch.allclose(short, full[:, :8], atol=1e-5)
    assert torch.allclose(model(tokens[:, :8]), model(tokens), atol=1e-5)


def test_weights_without_any_transformer_block_are_refused_naming_the_file(clip_files, tmp_path):
    """A file holding the embeddings, ln_final and projection but none of the transformer.resblocks.* tensors is not a
    CLIP text tower: it is refused naming the file and the missing blocks, not loaded as a tower of no layers."""
    sd = {k: v for k, v in fake_clip_state_dict().items() if not k.startswith("transformer.")}
    torch.save(sd, tmp_path / "blockless.pt")
    with pytest.raises(ValueError, match=r"blockless\.pt: .*transformer\.resblocks"):
        CLIPTextEncoder(tmp_path / "blockless.pt", vocab_path=clip_files.parent / CLIP_VOCAB_NAME)


def test_a_cache_whose_probe_is_nan_is_refused(tmp_path):
    """A probe embedding holding NaN cannot show that the file was written with these weights: it is refused (NaN
    compares false against both thresholds, so a check written as 'refuse when below' would pass it)."""
    cached = CachedTextEncoder(ScaledEncoder(1.0))
    cached.encode(["a cat"])
    path = cached.save(tmp_path / "cache.npz")
    with np.load(path) as z:
        data = {k: z[k] for k in z.files}
    data["probe"] = np.full(3, np.nan, np.float32)
    np.savez(tmp_path / "nan.npz", **data)
    with pytest.raises(ValueError, match=r"nan\.npz: caption cache"):
        CachedTextEncoder(ScaledEncoder(1.0), cache_path=tmp_path / "nan.npz")


def test_heads_that_do_not_divide_the_width_are_a_value_error_naming_both(clip_files):
    """heads=3 for a width-128 tower: a ValueError naming the heads and the width, not torch's bare AssertionError
    'embed_dim must be divisible by num_heads'."""
    with pytest.raises(ValueError, match=r"ViT-tiny\.pt: .*heads 3 does not divide the width 128"):
        CLIPTextEncoder(clip_files, heads=3)


def test_a_cache_path_that_is_a_folder_is_refused_when_the_cache_is_built(tmp_path):
    """A folder at cache_path (--text_cache) is refused when the cache is built, naming the path, rather than failing
    at save(), after every caption was encoded, with an error about a temporary file."""
    folder = tmp_path / "caches"
    folder.mkdir()
    with pytest.raises(ValueError, match=re.escape(f"{folder}: a folder; expected the path of the caption cache")):
        CachedTextEncoder(ScaledEncoder(1.0), cache_path=folder)
