"""What the MoMask token-generator stages share (``train_t2m_transformer.py``, ``train_res_transformer.py``) and what
``utils.generation`` needs to load their runs.

Both generators read the integer codes of one frozen tokenizer run of ``train_vq.py`` (or ``train_AE.py``): the masked
transformer the base layer (``(B, N)``: the codes of a VQ / FSQ / LFQ tokenizer, layer 0 of an RVQ one), the residual
transformer every layer of an RVQ tokenizer (``(B, N, Q)``). Codes come from the tokenizer in one of two ways:

- on the fly (default, as MoMask): each training batch of ``Text2MotionDataset`` motion (random crop, normalised with
  the tokenizer's recorded statistics) is encoded inside the loss function;
- cached (``--cache_tokens``): every sample's whole motion is encoded once and kept in
  ``<run>/tokens/<split>_<tokenizer sha256[:16]>.npz``; a training item is then a random crop *in token space* with the
  same length rule as ``Text2MotionDataset`` (T2M-GPT's pre-computed codes). Crops start on token boundaries and the
  codes of a crop are those of the whole clip, so the two modes see slightly different data.

The tokenizer and the text encoder are frozen and bound into the loss function (:class:`TokenLoss`), never registered
in the trained model, so neither is saved with it. Generator checkpoints have the MARDM generators' records
(``utils.generator_stage.generator_checkpoint_meta``) with ``target`` ``"tokens"``.
"""

from __future__ import annotations

import hashlib
import logging
import os
import zipfile
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from models.loader import Tokenizer
from models.mask_schedule import lengths_to_mask
from models.text_encoders import TextEncoder
from utils.atomic_io import atomic_write
from utils.checkpoint import CheckpointError, file_sha256
from utils.dataset_specs import DatasetSpec
from utils.datasets import TextMotionBatch, collate_text_motion
from utils.generator_stage import (
    TokenizerRef,
    decode_each_length,
    load_stage_tokenizer,
    module_device,
    protocol_eval_fn,
    resolve_tokenizer_checkpoint,
    tokenizer_statistics,
)
from utils.run_dir import RunDir
from utils.seed import set_seed
from utils.tokenizer_stage import dataset_record

logger = logging.getLogger(__name__)

TOKEN_TARGET = "tokens"
TOKEN_KINDS = ("vq", "rvq", "fsq", "lfq")  # tokenizer kinds whose encode() gives integer codes
ROLES = ("mask", "res")  # base-layer masked transformer, residual-layer transformer
CACHE_DIR = "tokens"
CACHE_FORMAT = 1


# ---------------------------------------------------------------------------------------------------------------------
# Tokenizer: find, load, check
# ---------------------------------------------------------------------------------------------------------------------

def resolve_vq_checkpoint(checkpoints_dir: str, dataset_name: str, vq_name: str | None = None,
                          vq_ckpt: str | None = None, which: str = "best") -> TokenizerRef:
    """``--vq_ckpt`` as given, else the file ``which`` of run ``--vq_name`` (see ``resolve_tokenizer_checkpoint``;
    MoMask trains on its RVQ's ``net_best_fid.tar``)."""
    return resolve_tokenizer_checkpoint(checkpoints_dir, dataset_name, vq_name, vq_ckpt, flag="vq",
                                        trainer="train_vq.py", which=which)


def load_token_tokenizer(path: str, spec: DatasetSpec, vq_model: str | None = None, device: str | torch.device = "cpu",
                         role: str = "mask", run_name: str | None = None, use_ema: bool = True,
                         vq_model_source: str = "--vq_model") -> Tokenizer:
    """Load the frozen tokenizer of a token generator and check that it fits.

    Raises (naming both sides) when ``vq_model`` is given and differs from the checkpoint's registry name, when the
    checkpoint has no dataset record with mean/std, when it was trained on another dataset or feature width than
    ``spec``, when it gives no integer codes (a continuous AE), or, for ``role="res"``, when it has fewer than two
    residual layers.
    """
    if role not in ROLES:
        raise ValueError(f"role must be one of {ROLES}, got {role!r}")
    tokenizer = load_stage_tokenizer(path, spec, vq_model, vq_model_source, device, use_ema)
    run = f"tokenizer run {run_name!r} ({path})" if run_name else path
    if tokenizer.kind not in TOKEN_KINDS:
        raise ValueError(f"{run} holds {tokenizer.model_name!r} of kind {tokenizer.kind!r}, which gives no integer "
                         f"codes; MoMask's transformers need a VQ, RVQ, FSQ or LFQ tokenizer (train_vq.py, "
                         f"train_AE.py)")
    if role == "res" and tokenizer.num_quantizers < 2:
        raise ValueError(f"{run} holds {tokenizer.model_name!r} with {tokenizer.num_quantizers} quantizer layer "
                         f"(Q == 1): there are no residual layers to predict. Train an RVQ tokenizer (train_vq.py "
                         f"--num_quantizers 6) or use train_t2m_transformer.py alone")
    return tokenizer


def rvq_codebooks(tokenizer: Tokenizer) -> Tensor:
    """The RVQ codebooks ``(Q, K, C)`` of ``tokenizer`` (for ``ResidualTransformer(code_embedding="codebook")``)."""
    if tokenizer.kind != "rvq":
        raise ValueError(f"{tokenizer.source}: codebook embeddings need an RVQ tokenizer, got kind {tokenizer.kind!r}")
    return torch.stack([layer.codebook.detach().float() for layer in tokenizer.model.quantizer.layers])


# ---------------------------------------------------------------------------------------------------------------------
# Codes in, motion out
# ---------------------------------------------------------------------------------------------------------------------

class TokenCodes(NamedTuple):
    """``indices`` (B, N) or (B, N, Q) long, -1 past each sample's length; ``lengths`` (B,) tokens; N = max(lengths)."""

    indices: Tensor
    lengths: Tensor


@torch.no_grad()
def encode_tokens(tokenizer: Tokenizer, motion: Tensor, lengths: Tensor) -> TokenCodes:
    """Normalised motion ``(B, T, D)`` and lengths in frames ``(B,)`` -> the tokenizer's codes cut to whole tokens.

    The padded batch is encoded as a whole (T padded with zeros to whole tokens), as MoMask does, in fp32 even under
    autocast; codes past ``lengths // unit_length`` are set to -1.
    """
    unit = tokenizer.unit_length
    pad = (-motion.shape[1]) % unit
    if pad:
        motion = torch.nn.functional.pad(motion, (0, 0, 0, pad))
    with torch.autocast(device_type=motion.device.type, enabled=False):
        indices = tokenizer.encode(motion.float())
    tokens = torch.div(lengths.to(indices.device), unit, rounding_mode="floor").long()
    n = max(int(tokens.max()), 1) if tokens.numel() else 1
    indices = indices[:, :n]
    valid = lengths_to_mask(tokens, n)
    pad_mask = ~valid if indices.ndim == 2 else ~valid[..., None]
    return TokenCodes(indices.masked_fill(pad_mask, -1).contiguous(), tokens)


@torch.no_grad()
def decode_indices(tokenizer: Tokenizer, indices: Tensor, lengths: Tensor) -> Tensor:
    """Codes ``(B, N[, Q])`` and lengths ``(B,)`` in tokens -> normalised motion ``(B, N * unit_length, D)``.

    Samples of equal length are decoded together, each at its own length (the decoder's convolutions would otherwise
    read the padding of shorter samples); frames past a length are zero. Within a length, RVQ layers holding -1
    contribute nothing (MoMask's convention for layers not generated).
    """
    return decode_each_length(tokenizer.decode, indices.to(module_device(tokenizer)), lengths, tokenizer.unit_length,
                              tokenizer.model.input_width)


# ---------------------------------------------------------------------------------------------------------------------
# Cached codes
# ---------------------------------------------------------------------------------------------------------------------

class TokenItem(NamedTuple):
    """One cached training sample: caption, ``indices (N_max, Q)`` long (-1 past ``length``), ``length`` in tokens."""

    caption: str
    indices: Tensor
    length: int


class TextTokenBatch(NamedTuple):
    """captions: B strings; indices (B, N_max, Q) long, -1 past each length; lengths (B,) in tokens."""

    captions: list[str]
    indices: Tensor
    lengths: Tensor


def collate_text_tokens(batch: Sequence[TokenItem]) -> TextTokenBatch:
    """Stack ``CachedTokenDataset`` items into a ``TextTokenBatch`` (order kept)."""
    return TextTokenBatch([b[0] for b in batch], torch.stack([b[1] for b in batch]),
                          torch.tensor([b[2] for b in batch], dtype=torch.long))


def _samples_digest(dataset: Any) -> str:
    """Fingerprint of what a text-motion dataset's codes are encoded from: its samples (names and frame bounds), its
    statistics, and its motion index, whose folder name changes with any motion file's size or mtime (so a dataset
    processed again with the same clip lengths is encoded again, as the evaluation's GT cache is recomputed)."""
    h = hashlib.sha256()
    samples = dataset.samples
    h.update("\n".join(samples.names).encode())
    for array in (samples.rows, samples.starts, samples.stops):
        h.update(np.ascontiguousarray(array, dtype=np.int64).tobytes())
    for stats in (dataset.mean, dataset.std):
        h.update(np.ascontiguousarray(stats, dtype=np.float32).tobytes())
    h.update(os.path.basename(dataset.index.folder).encode())
    return h.hexdigest()


def token_cache_path(run: RunDir, split: str, tokenizer_sha256: str) -> str:
    """``<run>/tokens/<split>_<sha256[:16]>.npz``: the cached codes of ``split`` under one tokenizer file."""
    return os.path.join(run.root, CACHE_DIR, f"{split}_{tokenizer_sha256[:16]}.npz")


@torch.no_grad()
def _encode_samples(tokenizer: Tokenizer, dataset: Any, batch_size: int, progress: bool) -> list[np.ndarray]:
    """Codes (n_j, Q) int32 of every sample's whole motion (``n_j = frames // unit_length``), in sample order."""
    unit = tokenizer.unit_length
    device = module_device(tokenizer)
    samples = dataset.samples
    dim = dataset.spec.dim_pose
    tokens = (samples.stops - samples.starts) // unit
    out: list[np.ndarray | None] = [None] * len(samples)
    groups = [np.nonzero(tokens == n)[0] for n in np.unique(tokens)]
    chunks = [g[i:i + batch_size] for g in groups for i in range(0, len(g), batch_size)]
    for chunk in tqdm(chunks, desc=f"encoding {dataset.split} codes", disable=not progress, dynamic_ncols=True):
        n = int(tokens[chunk[0]])
        frames = np.stack([dataset.index.clip(int(samples.rows[j]), int(samples.starts[j]),
                                              int(samples.starts[j]) + n * unit, dim) for j in chunk])
        motion = torch.from_numpy((frames - dataset.mean) / dataset.std).float().to(device)
        codes = tokenizer.encode(motion)
        codes = codes[..., None] if codes.ndim == 2 else codes
        for j, row in zip(chunk.tolist(), codes.cpu().numpy().astype(np.int32)):
            out[j] = row
    return out  # type: ignore[return-value]


def build_token_cache(tokenizer: Tokenizer, dataset: Any, path: str, batch_size: int = 64, progress: bool = True,
                      write: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Codes of every sample of a ``Text2MotionDataset``, read from ``path`` when it holds the codes of this dataset's
    samples, statistics and motion files under this tokenizer, else encoded (and written to ``path`` when ``write``).

    Returns:
        ``codes`` (M, Q) int32, all samples' codes one after the other, and ``offsets`` (S + 1,) int64: sample j owns
        rows ``offsets[j]:offsets[j + 1]``.
    """
    digest = _samples_digest(dataset)
    sha = file_sha256(tokenizer.source)
    stored = None
    if os.path.isfile(path):
        try:
            with np.load(path, allow_pickle=False) as f:
                stored = {k: f[k] for k in f.files}
        except (OSError, ValueError, EOFError, zipfile.BadZipFile, TypeError) as e:
            # Cut short or damaged (a copy stopped midway, a full disk): the codes are encoded again and rewritten.
            # TypeError: np.load gives a plain array, no archive to open, for a lone .npy under the name.
            logger.warning("%s: unreadable token cache (%s); encoding again", path, e)
    if stored is not None:
        same = (int(stored.get("format", -1)) == CACHE_FORMAT and str(stored.get("samples_sha256")) == digest
                and str(stored.get("tokenizer_sha256")) == sha and int(stored.get("unit_length", -1)) ==
                tokenizer.unit_length and str(stored.get("tokenizer_weights", "model")) == tokenizer.weights)
        if same:
            logger.info("%s: %d cached samples", path, len(stored["offsets"]) - 1)
            return stored["codes"], stored["offsets"]
        logger.warning("%s was written for other samples or another tokenizer; encoding again", path)
    per_sample = _encode_samples(tokenizer, dataset, batch_size, progress)
    offsets = np.concatenate([[0], np.cumsum([len(c) for c in per_sample])]).astype(np.int64)
    codes = np.concatenate(per_sample).astype(np.int32)
    if write:
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        with atomic_write(path, "wb") as f:
            np.savez(f, codes=codes, offsets=offsets, format=CACHE_FORMAT, samples_sha256=digest,
                     tokenizer_sha256=sha, tokenizer_weights=tokenizer.weights, unit_length=tokenizer.unit_length)
        logger.info("%s: cached the codes of %d samples (%d tokens)", path, len(per_sample), len(codes))
    return codes, offsets


def _randint(high: int) -> int:
    """Uniform integer in [0, high) from torch's default generator (seeded per sample by the engine)."""
    return int(torch.randint(high, (1,)).item())


class CachedTokenDataset(Dataset):
    """Training samples of a ``Text2MotionDataset`` served from cached codes: ``TokenItem(caption, indices, length)``.

    Per access: a random caption; of the sample's n tokens, a crop length chosen as ``Text2MotionDataset`` chooses
    frames (one token less with probability 1/3 when ``unit_length < 10``, at most ``max_motion_length //
    unit_length``); a random token offset; padding with -1 to ``max_motion_length // unit_length`` tokens.

    Args:
        dataset: the ``Text2MotionDataset`` whose samples (captions, bounds) the codes belong to.
        codes, offsets: from :func:`build_token_cache`.
        unit_length: frames per token.
    """

    def __init__(self, dataset: Any, codes: np.ndarray, offsets: np.ndarray, unit_length: int) -> None:
        if len(offsets) != len(dataset.samples) + 1:
            raise ValueError(f"CachedTokenDataset: {len(offsets) - 1} cached samples for a dataset of "
                             f"{len(dataset.samples)}")
        self.captions = dataset.samples.captions
        self.split = dataset.split
        self.codes = torch.from_numpy(np.ascontiguousarray(codes)).long()
        self.offsets = offsets
        self.unit_length = int(unit_length)
        self.max_tokens = dataset.spec.max_motion_length // self.unit_length

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def __getitem__(self, item: int) -> TokenItem:
        captions = self.captions[item]
        caption = captions[_randint(len(captions))].caption
        start, stop = int(self.offsets[item]), int(self.offsets[item + 1])
        units = stop - start
        if self.unit_length < 10 and units > 1 and _randint(3) == 2:
            units -= 1
        units = min(units, self.max_tokens)
        offset = start + _randint(stop - start - units + 1)
        indices = torch.full((self.max_tokens, self.codes.shape[1]), -1, dtype=torch.long)
        indices[:units] = self.codes[offset:offset + units]
        return TokenItem(caption, indices, units)


def cached_token_datasets(tokenizer: Tokenizer, run: RunDir, *datasets: Any, write: bool = True,
                          progress: bool = True) -> list[CachedTokenDataset]:
    """``CachedTokenDataset`` of each ``Text2MotionDataset``, its codes cached in ``<run>/tokens/`` (see
    :func:`build_token_cache`); ``write`` False only reads or computes (non-main processes)."""
    sha = file_sha256(tokenizer.source)
    out = []
    for dataset in datasets:
        codes, offsets = build_token_cache(tokenizer, dataset, token_cache_path(run, dataset.split, sha),
                                           progress=progress, write=write)
        out.append(CachedTokenDataset(dataset, codes, offsets, tokenizer.unit_length))
    return out


# ---------------------------------------------------------------------------------------------------------------------
# Loss and validation
# ---------------------------------------------------------------------------------------------------------------------

class TokenInputs(NamedTuple):
    """What a token generator's ``forward`` takes: ``indices`` (B, N) base layer or (B, N, Q) all layers, ``lengths``
    (B,) tokens, ``text_emb`` (B, E)."""

    indices: Tensor
    lengths: Tensor
    text_emb: Tensor


class TokenLoss:
    """The engine's ``loss_fn(model, batch) -> (loss, logs)`` for a MoMask transformer on a frozen tokenizer and text
    encoder.

    ``batch`` is a ``TextMotionBatch`` (motion normalised with the tokenizer's statistics, encoded here) or a
    ``TextTokenBatch`` of cached codes. ``role="mask"`` feeds the base layer ``(B, N)``, ``role="res"`` every layer
    ``(B, N, Q)``. The frozen modules live here, not in the model; the tokenizer follows the batch to its device.
    ``padded_tokens`` (role "mask"): the length in tokens every sample is padded to, over which a transformer trained
    with ``train_mask_count="padded"`` counts its masks, as MoMask does; None: the batch's longest sample.
    """

    def __init__(self, tokenizer: Tokenizer, text_encoder: TextEncoder, role: str = "mask",
                 padded_tokens: int | None = None) -> None:
        if role not in ROLES:
            raise ValueError(f"role must be one of {ROLES}, got {role!r}")
        self.tokenizer = tokenizer
        self.text_encoder = text_encoder
        self.role = role
        self.padded_tokens = padded_tokens

    def inputs(self, batch: TextMotionBatch | TextTokenBatch) -> TokenInputs:
        """The model's inputs for ``batch`` (computed without gradients), codes cut to the longest sample."""
        if isinstance(batch, TextTokenBatch):
            lengths = batch.lengths.to(batch.indices.device).long()
            n = max(int(lengths.max()), 1)
            indices = batch.indices[:, :n]
            device = batch.indices.device
        else:
            device = batch.motion.device
            if module_device(self.tokenizer) != device:
                self.tokenizer.to(device)
            indices, lengths = encode_tokens(self.tokenizer, batch.motion, batch.lengths)
            if indices.ndim == 2:
                indices = indices[..., None]
        indices = indices[..., 0] if self.role == "mask" else indices
        text_emb = self.text_encoder.encode(list(batch.captions)).to(device)
        return TokenInputs(indices, lengths, text_emb)

    def __call__(self, model: nn.Module, batch: TextMotionBatch | TextTokenBatch) -> tuple[Tensor, dict[str, Tensor]]:
        """``model(indices, lengths, text_emb)`` -> (loss, logs); the masked transformer also gets
        ``padded_len=padded_tokens``."""
        if self.role == "mask":
            return model(*self.inputs(batch), padded_len=self.padded_tokens)
        return model(*self.inputs(batch))


def make_token_val_fn(loss_fn: TokenLoss, dataset: Dataset, batch_size: int, max_batches: int = 0, seed: int = 0,
                      collate_fn: Callable | None = None) -> Callable[[nn.Module], dict[str, float]]:
    """``val_fn(model) -> {"loss", "acc"}``: sample-weighted means over ``dataset`` (a ``Text2MotionDataset`` or a
    ``CachedTokenDataset``) of the model's loss and top-1 accuracy (over the masked tokens for the masked transformer,
    over all tokens of the drawn layer for the residual one).

    Crops, captions, masks and drawn layers are reseeded with ``seed`` at every call, so successive validations differ
    only by the weights. ``max_batches`` 0 means the whole dataset.
    """
    collate = collate_fn or collate_text_motion

    def val_fn(model: nn.Module) -> dict[str, float]:
        device = module_device(model)
        set_seed(seed)
        loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, collate_fn=collate)
        totals = {"loss": 0.0, "acc": 0.0}
        count = 0
        for i, batch in enumerate(loader):
            if max_batches and i >= max_batches:
                break
            batch = type(batch)(batch[0], *(t.to(device) for t in batch[1:]))
            loss, logs = loss_fn(model, batch)
            size = len(batch[0])
            totals["loss"] += float(loss) * size
            totals["acc"] += float(logs["acc"]) * size
            count += size
        return {k: v / max(count, 1) for k, v in totals.items()}

    return val_fn


def make_token_generation_eval_fn(tokenizer: Tokenizer, text_encoder: TextEncoder, evaluator: Any, eval_loader: Any,
                                  mean: np.ndarray, std: np.ndarray, role: str, cond_scale: float,
                                  time_steps: int = 18, seed: int = 3407) -> Callable[[nn.Module], dict[str, float]]:
    """``eval_fn(model) -> {"fid", "diversity", "top1", "top2", "top3", "matching_score"}``: one replication of the
    evaluation protocol on ``eval_loader`` (MoMask's training-time evaluation).

    ``role="mask"``: the base layer is generated from each batch's captions and GT lengths (``time_steps`` steps,
    guidance ``cond_scale``) and decoded alone (the residual layers contribute nothing). ``role="res"``: the GT motion
    is encoded, its base layer kept and layers 1..Q-1 generated (guidance ``cond_scale``, Gumbel sampling). Motion is
    decoded per length, de-normalised with the tokenizer statistics and re-normalised with the evaluator's.
    """
    from utils.eval_protocol import renormalize

    if role not in ROLES:
        raise ValueError(f"role must be one of {ROLES}, got {role!r}")
    unit = tokenizer.unit_length

    def motion_fn_for(model: nn.Module, device: torch.device) -> Callable[[Any], tuple[Tensor, Tensor]]:
        def motion_fn(batch: Any) -> tuple[Tensor, Tensor]:
            tokens = torch.div(batch.m_lengths, unit, rounding_mode="floor").clamp_min(1).to(device)
            text_emb = text_encoder.encode(list(batch.captions)).to(device)
            if role == "mask":
                indices = model.generate(tokens, text_emb, time_steps=time_steps, cond_scale=cond_scale,
                                         sampling="categorical")
            else:
                gt = renormalize(batch.motion.to(device), evaluator.mean, evaluator.std, mean, std)
                codes = encode_tokens(tokenizer, gt, tokens * unit).indices
                indices = model.generate(codes[..., 0], tokens, text_emb, cond_scale=cond_scale)
            motion = renormalize(decode_indices(tokenizer, indices, tokens), mean, std, evaluator.mean, evaluator.std)
            return motion, tokens.cpu() * unit

        return motion_fn

    return protocol_eval_fn(tokenizer, evaluator, eval_loader, motion_fn_for, seed)


# ---------------------------------------------------------------------------------------------------------------------
# Checkpoint record
# ---------------------------------------------------------------------------------------------------------------------

def token_checkpoint_meta(model_name: str, model_args: dict[str, Any], spec: DatasetSpec, tokenizer: Tokenizer,
                          ref: TokenizerRef, text_record: dict[str, Any], config: dict[str, Any]) -> dict[str, Any]:
    """``checkpoint_meta`` of a MoMask transformer run, with the MARDM generators' keys (see
    ``utils.generator_stage.generator_checkpoint_meta``) and ``target`` ``"tokens"``.

    ``MASK_TRANSFORMERS[model_name](**model_args)`` / ``RES_TRANSFORMERS[model_name](**model_args)`` rebuild the model
    (codebook embeddings are buffers restored by the state dict).
    """
    mean, std = tokenizer_statistics(tokenizer)
    sha = file_sha256(ref.path)
    return {
        "stage": "generator", "model_name": model_name, "model_args": dict(model_args),
        "dataset": dataset_record(spec, mean, std),
        "tokenizer": {"name": ref.name, "path": ref.path, "sha256": sha, "model_name": tokenizer.model_name,
                      "kind": tokenizer.kind, "weights": tokenizer.weights},
        "text_encoder": dict(text_record), "target": TOKEN_TARGET, "config": dict(config),
        "parent": {"path": ref.path, "sha256": sha},
    }


def check_token_model_fits(model_args: dict[str, Any], tokenizer: Tokenizer, path: str, role: str) -> None:
    """A saved transformer's ``codebook_size`` (and ``num_quantizers`` for ``role="res"``) must be the tokenizer's."""
    checks = [("codebook_size", model_args.get("codebook_size"), tokenizer.codebook_size)]
    if role == "res":
        checks.append(("num_quantizers", model_args.get("num_quantizers"), tokenizer.num_quantizers))
    for key, found, expected in checks:
        if found != expected:
            raise CheckpointError(f"{path}: model_args[{key!r}] is {found} but the tokenizer {tokenizer.source} has "
                                  f"{expected}")
