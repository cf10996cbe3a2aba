"""What the generator stages share (``train_MARDM.py``, ``train_length_estimator.py``, evaluation and sampling).

A generator is tied to one frozen tokenizer, which decides what the generator reads and writes:

============  ==============  ==========================================  ========================  ===========
family        tokenizer kind  transformer input ``latents`` (C_in)        head target (C_t)         ``target``
============  ==============  ==========================================  ========================  ===========
MARDM-*       ae              AE latents                                  the same latents          latent
FSQ-MARDM-*   fsq             ``project_out(coords)``, what the decoder   FSQ grid coordinates (L)  fsq_coords
                              sees (``FSQEncoding.latent``)
VQ-MARDM-*    vq              quantized code vectors                      the same vectors          vq_codes
LFQ-MARDM-*   lfq             ``project_out(signs)``, as FSQ-MARDM        LFQ signs ±scale (d)      lfq_codes
============  ==============  ==========================================  ========================  ===========

At generation the head's samples are snapped (FSQ grid, LFQ sign, nearest codebook vector) and mapped back to the
transformer input with :func:`snap_and_latent_fns`; :func:`decode_targets` turns generated targets into motion, each
sample at its own length (:func:`decode_each_length`, which every generator family's decoding shares). The checks a
resumed run passes live in ``utils.generator_resume``.

The tokenizer and the text encoder are frozen and bound into the loss function (:class:`GeneratorLoss`), never
registered in the trained model, so neither is ever saved with it. Motion is normalised with the statistics recorded
in the tokenizer's checkpoint (never recomputed), and those are what the generator checkpoint records.
"""

from __future__ import annotations

import argparse
import logging
import os
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from models.loader import Tokenizer, load_tokenizer
from models.text_encoders import CachedTextEncoder, TextEncoder, build_text_encoder
from options.config import given_in_config, given_on_command_line, option_origin
from options.generator_options import TOKENIZER_WHICH
from utils.checkpoint import CheckpointError, file_sha256, load_checkpoint
from utils.dataset_specs import DatasetSpec
from utils.datasets import TextMotionBatch, collate_text_motion
from utils.paths import folder_flags
from utils.run_dir import RunDir
from utils.seed import set_seed
from utils.tokenizer_stage import dataset_record

logger = logging.getLogger(__name__)

# Registry-name prefix -> tokenizer kind it needs, and tokenizer kind -> name of the generated target.
GENERATOR_FAMILIES = {"MARDM": "ae", "FSQ-MARDM": "fsq", "VQ-MARDM": "vq", "LFQ-MARDM": "lfq"}
TARGET_NAMES = {"ae": "latent", "fsq": "fsq_coords", "vq": "vq_codes", "lfq": "lfq_codes"}
# Kinds whose generators predict grid coordinates (``models.tokenizers.GridTokenizer``).
GRID_KINDS = ("fsq", "lfq")
# --ae_which / --vq_which: "best" takes the first of TOKENIZER_CHECKPOINTS that exists, any other that file alone.
TOKENIZER_CHECKPOINTS = TOKENIZER_WHICH[1:]

SnapFn = Callable[[Tensor], Tensor]


# ---------------------------------------------------------------------------------------------------------------------
# Tokenizer: find, load, check
# ---------------------------------------------------------------------------------------------------------------------

def generator_family(model_name: str) -> str:
    """Generator registry name -> its family ``"MARDM"``, ``"FSQ-MARDM"``, ``"VQ-MARDM"`` or ``"LFQ-MARDM"`` (from
    the prefix)."""
    # Longest prefixes first: every FSQ-/VQ-/LFQ- name also contains "MARDM-".
    for family in sorted(GENERATOR_FAMILIES, key=len, reverse=True):
        if model_name.startswith(family + "-"):
            return family
    raise ValueError(f"generator {model_name!r} belongs to no family; names start with "
                     f"{sorted(f + '-' for f in GENERATOR_FAMILIES)}")


class TokenizerRef(NamedTuple):
    """The tokenizer checkpoint a generator is trained on: ``path`` and the run ``name`` it belongs to."""

    path: str
    name: str


def _run_name_of(path: str) -> str:
    """``.../<name>/model/<file>.tar`` -> ``<name>``; any other file -> its stem."""
    parts = os.path.abspath(path).split(os.sep)
    if len(parts) >= 3 and parts[-2] == "model":
        return parts[-3]
    return os.path.splitext(parts[-1])[0]


def tokenizer_from_command_line(args: argparse.Namespace, flag: str = "ae") -> None:
    """Let the tokenizer typed on the command line replace the one the ``--config`` preset gives the other way: a
    typed ``--<flag>_ckpt`` clears the preset's ``<flag>_name`` (the shipped presets name their tokenizer run, such
    as ``vq_name: rvq_nq6``), and a typed ``--<flag>_name`` the preset's ``<flag>_ckpt`` (a run's ``opt.yaml``).
    Both typed, or both from the preset, are left for ``resolve_tokenizer_checkpoint`` to check. ``args`` changes in
    place, so that the run's ``opt.yaml`` records the tokenizer it was trained on."""
    typed = given_on_command_line(args)
    preset_only = given_in_config(args) - typed
    name, ckpt = f"{flag}_name", f"{flag}_ckpt"
    for kept, dropped in ((ckpt, name), (name, ckpt)):
        if kept in typed and dropped in preset_only and getattr(args, kept):
            logger.info("--%s %s replaces %s", kept, getattr(args, kept), option_origin(args, dropped))
            setattr(args, dropped, None)


def resolve_tokenizer_checkpoint(checkpoints_dir: str, dataset_name: str, ae_name: str | None = None,
                                 ae_ckpt: str | None = None, flag: str = "ae",
                                 trainer: str = "train_AE.py / train_vq.py", which: str = "best") -> TokenizerRef:
    """``--ae_ckpt`` as given, else the file ``which`` (``--ae_which``) of run ``--ae_name`` in
    ``<checkpoints_dir>/<dataset_name>/<ae_name>/model/``: for ``best`` ``net_best_fid.tar``, else
    ``net_best_loss.tar``, else ``latest.tar``; for a file name that file (MARDM trains on its AE's ``latest.tar``).

    ``flag`` names the pair of flags in errors (``ae``: --ae_name/--ae_ckpt, ``vq``: --vq_name/--vq_ckpt) and
    ``trainer`` the script that trains such a run."""
    if ae_ckpt:
        if not os.path.isfile(ae_ckpt):
            raise CheckpointError(f"--{flag}_ckpt: tokenizer checkpoint not found: {ae_ckpt}")
        in_run = os.path.basename(os.path.dirname(os.path.abspath(ae_ckpt))) == "model"
        run_name = _run_name_of(ae_ckpt)
        if ae_name and in_run and ae_name != run_name:
            # The checkpoint records the tokenizer by name; the name of another run would mislead. A file outside a
            # run folder (a download) may be given any name.
            raise ValueError(f"--{flag}_name {ae_name!r} and --{flag}_ckpt {ae_ckpt} (run {run_name!r}) name two "
                             f"tokenizers; pass one of them")
        return TokenizerRef(ae_ckpt, ae_name or run_name)
    if not ae_name:
        raise ValueError(f"no tokenizer given: pass --{flag}_name (a {trainer} run under --checkpoints_dir/"
                         f"--dataset_name) or --{flag}_ckpt (a checkpoint file)")
    if which not in TOKENIZER_WHICH:
        raise ValueError(f"--{flag}_which must be one of {list(TOKENIZER_WHICH)}, got {which!r}")
    model_dir = RunDir(checkpoints_dir, dataset_name, ae_name).model_dir
    stems = TOKENIZER_CHECKPOINTS if which == "best" else (which,)
    for stem in stems:
        path = os.path.join(model_dir, f"{stem}.tar")
        if os.path.isfile(path):
            return TokenizerRef(path, ae_name)
    found = sorted(f for f in os.listdir(model_dir) if f.endswith(".tar")) if os.path.isdir(model_dir) else []
    if which == "net_best_fid" and found:
        # Written only by a run validated on FID, which needs the evaluator while the tokenizer trains.
        raise CheckpointError(f"--{flag}_name {ae_name!r} --{flag}_which net_best_fid: no net_best_fid.tar in "
                              f"{model_dir} (found {found}); the tokenizer run writes it only when trained with "
                              f"--need_evaluation; pass --{flag}_which best to take its best file of another kind")
    raise CheckpointError(f"--{flag}_name {ae_name!r}: {'none of ' if len(stems) > 1 else 'no '}"
                          f"{[s + '.tar' for s in stems] if len(stems) > 1 else stems[0] + '.tar'} in "
                          f"{model_dir} (found {found or 'nothing'}); train it with {trainer} --name {ae_name} "
                          f"--dataset_name {dataset_name}{folder_flags(checkpoints_dir)}, or pass --{flag}_ckpt")


def trained_on_ema(state: dict[str, Any]) -> bool:
    """Whether generator checkpoint ``state`` was trained on its tokenizer's EMA weights (recorded since tokenizers
    load those by default; older checkpoints were trained on the raw weights)."""
    return (state.get("tokenizer") or {}).get("weights") == "ema"


# What ``utils.generator_resume.check_resume_matches`` compares: a generator checkpoint's records, without its weights.
RESUME_RECORDS = ("stage", "model_name", "model_args", "tokenizer", "text_encoder", "target", "config")


def resume_records(latest_path: str, is_continue: bool) -> dict[str, Any] | None:
    """The ``RESUME_RECORDS`` of the run being resumed (``latest_path``), or None for a new run or a missing file.
    Read once, before the tokenizer is loaded; the weights are not kept."""
    if not (is_continue and os.path.isfile(latest_path)):
        return None
    saved = load_checkpoint(latest_path)
    return {key: saved.get(key) for key in RESUME_RECORDS}


def resumed_tokenizer_ema(saved: dict[str, Any] | None) -> bool:
    """``use_ema`` for the tokenizer of a generator stage: a resumed run (``resume_records``) keeps the weights it was
    trained on; a new run takes the EMA weights where the tokenizer file has them."""
    return True if saved is None else trained_on_ema(saved)


def load_stage_tokenizer(path: str, spec: DatasetSpec, model_name: str | None, flag: str,
                         device: str | torch.device = "cpu", use_ema: bool = True) -> Tokenizer:
    """Load the frozen tokenizer of a generator stage and check it against the data, naming both sides: the
    registry name (when ``model_name``, given as ``flag``, is set), a dataset record holding the mean/std it was
    trained with, the dataset's name and its feature width. ``use_ema``: see ``load_tokenizer`` (a generator
    checkpoint records which weights it was trained on)."""
    tokenizer = load_tokenizer(path, map_location=device, use_ema=use_ema)
    if model_name is not None and tokenizer.model_name != model_name:
        raise CheckpointError(f"{path}: the tokenizer checkpoint holds {tokenizer.model_name!r} but {flag} is "
                              f"{model_name!r}")
    record = tokenizer.dataset
    if not isinstance(record, dict) or record.get("mean") is None or record.get("std") is None:
        how = ("import it again with --meta_dir" if tokenizer.parent_format else "import it first with "
               f"tools/import_checkpoint.py --dataset_name {spec.name}")
        raise CheckpointError(f"{path}: no dataset record with the mean/std the tokenizer was trained with "
                              f"({tokenizer.parent_format or tokenizer.source_format} file); {how}")
    if record.get("name") != spec.name:
        raise CheckpointError(f"{path}: the tokenizer was trained on dataset {record.get('name')!r} but "
                              f"--dataset_name is {spec.name!r}")
    width = tokenizer.model.input_width
    stats_shape = tuple(torch.as_tensor(record["mean"]).shape), tuple(torch.as_tensor(record["std"]).shape)
    if width != spec.dim_pose or stats_shape != ((spec.dim_pose,), (spec.dim_pose,)):
        raise CheckpointError(f"{path}: the tokenizer takes {width} features (mean/std {stats_shape}) but dataset "
                              f"{spec.name!r} has {spec.dim_pose}")
    keys = getattr(tokenizer.model, "condition_keys", None)
    if keys and tokenizer.cond_drop_prob > 0:
        # Generator stages encode and decode without clip labels: every clip gets the <unk> ids (and no text), the
        # unconditional model that training dropped to.
        logger.info("%s: the tokenizer is conditioned on %s; generator stages pass no conditions, so every motion is "
                    "encoded and decoded as <unk> (trained with --cond_drop_prob %g)", path, keys,
                    tokenizer.cond_drop_prob)
    elif keys:
        logger.warning("%s: the tokenizer is conditioned on %s (train_vq.py --conditions), but generator stages pass "
                       "no conditions, so every motion is encoded and decoded as <unk>, which its training never "
                       "saw (--cond_drop_prob 0); train the tokenizer with --cond_drop_prob above 0, or without "
                       "--conditions, for a generator", path, keys)
    return tokenizer


def load_generator_tokenizer(path: str, model_name: str, spec: DatasetSpec, ae_model: str | None = None,
                             device: str | torch.device = "cpu", use_ema: bool = True,
                             ae_model_source: str = "--ae_model") -> Tokenizer:
    """Load the frozen tokenizer of generator ``model_name`` and check that the three agree.

    Raises (naming both sides) when ``ae_model`` (from ``ae_model_source``, named in the error) is given and differs
    from the checkpoint's registry name, when the checkpoint has no dataset record with mean/std, when it was trained
    on another dataset or feature width than ``spec``, or when its kind does not fit the generator family (MARDM-*
    needs ``ae``, FSQ-MARDM-* ``fsq``, VQ-MARDM-* ``vq``, LFQ-MARDM-* ``lfq``).
    """
    tokenizer = load_stage_tokenizer(path, spec, ae_model, ae_model_source, device, use_ema)
    family = generator_family(model_name)
    needed = GENERATOR_FAMILIES[family]
    if tokenizer.kind != needed:
        fitting = [f for f, kind in GENERATOR_FAMILIES.items() if kind == tokenizer.kind]
        hint = f"; a {tokenizer.kind!r} tokenizer fits {fitting[0]}-* models" if fitting else ""
        raise ValueError(f"--model {model_name} ({family}) needs a tokenizer of kind {needed!r}, but {path} holds "
                         f"{tokenizer.model_name!r} of kind {tokenizer.kind!r}{hint}")
    return tokenizer


def tokenizer_statistics(tokenizer: Tokenizer) -> tuple[np.ndarray, np.ndarray]:
    """(mean (D,), std (D,)) float32 recorded in the tokenizer checkpoint: the normalisation of generator training."""
    record = tokenizer.dataset or {}
    if record.get("mean") is None or record.get("std") is None:
        raise CheckpointError(f"{tokenizer.source}: the tokenizer checkpoint records no mean/std")
    return (torch.as_tensor(record["mean"]).float().cpu().numpy(),
            torch.as_tensor(record["std"]).float().cpu().numpy())


class TokenDims(NamedTuple):
    """``ae_dim`` C_in (transformer input) and ``target_dim`` C_t (what the head generates)."""

    ae_dim: int
    target_dim: int


def token_dims(tokenizer: Tokenizer) -> TokenDims:
    """Channel sizes a generator on ``tokenizer`` needs (FSQ / LFQ: C and L; AE and VQ: C twice)."""
    if tokenizer.kind in GRID_KINDS:
        return TokenDims(tokenizer.latent_dim, tokenizer.model.grid_dim)
    if tokenizer.kind in ("ae", "vq"):
        return TokenDims(tokenizer.latent_dim, tokenizer.latent_dim)
    raise ValueError(f"{tokenizer.source}: no generator family is trained on a {tokenizer.kind!r} tokenizer")


def module_device(module: nn.Module | Tokenizer) -> torch.device:
    """The device of a module's (or a tokenizer's) first parameter."""
    return next(module.parameters()).device


# ---------------------------------------------------------------------------------------------------------------------
# Tokens in, tokens out
# ---------------------------------------------------------------------------------------------------------------------

class TokenBatch(NamedTuple):
    """``latents (B, N, C_in)``, ``targets (B, N, C_t)``, ``lengths (B,)`` in tokens; N = max(lengths)."""

    latents: Tensor
    targets: Tensor
    lengths: Tensor


@torch.no_grad()
def tokenize(tokenizer: Tokenizer, motion: Tensor, lengths: Tensor) -> TokenBatch:
    """Normalised motion ``(B, T, D)`` and lengths in frames ``(B,)`` -> the generator's inputs and targets.

    The whole padded motion is encoded, as MARDM does (T is padded with zeros to whole tokens), in fp32 even under
    autocast so targets are exact; latents are then cut to the longest sample's ``lengths // unit_length`` tokens
    (positions past a sample's length are masked out by the generator).
    """
    unit = tokenizer.unit_length
    pad = (-motion.shape[1]) % unit
    if pad:
        motion = F.pad(motion, (0, 0, 0, pad))
    model = tokenizer.model
    with torch.autocast(device_type=motion.device.type, enabled=False):
        motion = motion.float()
        if tokenizer.kind == "ae":
            latents = targets = model.encode(motion)
        elif tokenizer.kind in GRID_KINDS:
            encoding = model.encode_with_grid_output(motion)
            latents, targets = encoding.latent, encoding.coords
        elif tokenizer.kind == "vq":
            latents = targets = model.quantizer.lookup(model.encode(motion))
        else:
            raise ValueError(f"{tokenizer.source}: cannot tokenize for a generator with a {tokenizer.kind!r} tokenizer")
    tokens = torch.div(lengths.to(latents.device), unit, rounding_mode="floor").long()
    n = max(int(tokens.max()), 1) if tokens.numel() else 1
    return TokenBatch(latents[:, :n].contiguous(), targets[:, :n].contiguous(), tokens)


def snap_and_latent_fns(tokenizer: Tokenizer) -> tuple[SnapFn | None, SnapFn | None]:
    """``(snap_fn, latent_fn)`` for ``MARDM.generate`` on this tokenizer.

    - FSQ / LFQ: ``snap_fn`` = nearest grid point (LFQ: the sign) ``(M, L) -> (M, L)``; ``latent_fn`` =
      ``project_out`` ``(M, L) -> (M, C)``.
    - VQ: ``snap_fn`` = nearest codebook vector ``(M, C) -> (M, C)``; ``latent_fn`` None (targets are latents).
    - AE: ``(None, None)``.
    """
    model = tokenizer.model
    if tokenizer.kind == "ae":
        return None, None
    if tokenizer.kind in GRID_KINDS:
        return model.quantizer.snap_to_grid, model.grid_to_latent
    if tokenizer.kind == "vq":
        quantizer = model.quantizer

        def snap_to_codebook(vectors: Tensor) -> Tensor:
            """(..., C) -> the nearest codebook vector of each row, (..., C)."""
            flat = vectors.reshape(1, -1, vectors.shape[-1])
            return quantizer.lookup(quantizer.quantize(flat)).reshape(vectors.shape).to(vectors.dtype)

        return snap_to_codebook, None
    raise ValueError(f"{tokenizer.source}: no generator family is trained on a {tokenizer.kind!r} tokenizer")


def decode_each_length(decode: Callable[[Tensor], Tensor], tokens: Tensor, lengths: Tensor, unit_length: int,
                       width: int) -> Tensor:
    """``decode`` (tokens of one length ``(b, n, ...)`` -> motion ``(b, n * unit_length, width)``) over a batch
    ``(B, N, ...)`` of ``lengths`` (B,) tokens: samples of equal length together, each at its own length, frames past
    it zero. Decoded whole, the decoder's convolutions would read the padding of the shorter samples, so a motion
    would depend on what it was batched with."""
    lengths = lengths.to(tokens.device).long()
    motion = torch.zeros(tokens.shape[0], tokens.shape[1] * unit_length, width, device=tokens.device)
    for n in lengths.unique().tolist():
        rows = (lengths == n).nonzero().squeeze(1)
        motion[rows, : n * unit_length] = decode(tokens[rows, :n]).float()
    return motion


@torch.no_grad()
def decode_targets(tokenizer: Tokenizer, targets: Tensor, lengths: Tensor | None = None) -> Tensor:
    """Generated targets ``(B, N, C_t)`` -> normalised motion ``(B, N * unit_length, D)`` (tokenizer statistics).

    FSQ / LFQ coordinates and VQ vectors are snapped first (a no-op on already snapped values). With ``lengths``
    (B,) in tokens, each sample is decoded at its own length (``decode_each_length``); without, the batch is decoded
    whole and frames past a sample's length are whatever the decoder makes of the padding.
    """
    snap_fn, latent_fn = snap_and_latent_fns(tokenizer)
    x = targets.float().to(module_device(tokenizer))
    if snap_fn is not None:
        x = snap_fn(x)
    if latent_fn is not None:
        x = latent_fn(x)
    if lengths is None:
        return tokenizer.model.decode_latent(x)
    return decode_each_length(tokenizer.model.decode_latent, x, lengths, tokenizer.unit_length,
                              tokenizer.model.input_width)


# ---------------------------------------------------------------------------------------------------------------------
# Text encoder
# ---------------------------------------------------------------------------------------------------------------------

def stage_device() -> torch.device:
    """The device of this process: ``cuda:<LOCAL_RANK>`` when CUDA is available, else the CPU."""
    if torch.cuda.is_available():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
    return torch.device("cpu")


def resolve_text_encoder(name: str, clip_path: str | None = None, cache_path: str | None = None,
                         device: str | torch.device = "cpu", prebuilt: TextEncoder | None = None) -> CachedTextEncoder:
    """The frozen, caching text encoder ``--text_encoder`` names (or ``prebuilt``, which must be of that kind).

    CLIP needs ``clip_path`` (OpenAI's ``ViT-B-32.pt``, the BPE vocabulary next to it).
    """
    if prebuilt is not None:
        if prebuilt.name != name:
            raise ValueError(f"the text encoder passed in is {prebuilt.name!r} but --text_encoder is {name!r}")
        encoder = prebuilt
    elif name == "clip":
        if not clip_path:
            raise ValueError("--text_encoder clip needs --clip_path: OpenAI's ViT-B-32.pt (the file "
                             "clip.load('ViT-B/32') downloads) with bpe_simple_vocab_16e6.txt.gz next to it")
        encoder = build_text_encoder("clip", weights_path=os.path.expanduser(clip_path), device=device)
    else:
        encoder = build_text_encoder(name, device=device)
    if isinstance(encoder, CachedTextEncoder):
        if cache_path is not None and encoder.cache_path != cache_path:
            raise ValueError(f"the cached text encoder passed in keeps its cache at {encoder.cache_path!r}, not "
                             f"--text_cache {cache_path!r}")
        return encoder
    return CachedTextEncoder(encoder, cache_path)


def text_encoder_record(encoder: TextEncoder, clip_path: str | None = None) -> dict[str, Any]:
    """The ``text_encoder`` entry of a checkpoint: ``{"name", "dim", "path"}`` (path: CLIP weights, else None)."""
    path = os.path.abspath(os.path.expanduser(clip_path)) if encoder.name == "clip" and clip_path else None
    return {"name": encoder.name, "dim": int(encoder.dim), "path": path}


def dataset_captions(dataset: Any) -> list[str]:
    """Every caption of a text-motion dataset (``Text2MotionDataset`` and friends), in sample order."""
    return [entry.caption for entries in dataset.samples.captions for entry in entries]


def warm_caption_cache(encoder: CachedTextEncoder, captions: Sequence[str], batch_size: int = 512,
                       progress: bool = True) -> None:
    """Encode every distinct caption once, so training steps only read the cache."""
    unique = list(dict.fromkeys(captions))
    before = len(encoder)
    for start in tqdm(range(0, len(unique), batch_size), desc=f"{encoder.name} captions", disable=not progress,
                      dynamic_ncols=True):
        encoder.encode(unique[start:start + batch_size])
    logger.info("%s: %d distinct captions, %d newly encoded", encoder.name, len(unique), len(encoder) - before)


# ---------------------------------------------------------------------------------------------------------------------
# Loss and validation
# ---------------------------------------------------------------------------------------------------------------------

class GeneratorInputs(NamedTuple):
    """``latents (B, N, C_in)``, ``targets (B, N, C_t)``, ``lengths (B,)`` tokens, ``text_emb (B, E)``."""

    latents: Tensor
    targets: Tensor
    lengths: Tensor
    text_emb: Tensor


class GeneratorLoss:
    """The engine's ``loss_fn(model, batch) -> (loss, logs)`` for a generator on a frozen tokenizer and text encoder.

    ``batch`` is a ``TextMotionBatch`` (captions, motion (B, T, D) normalised with the tokenizer's statistics, lengths
    in frames). The frozen modules live here, not in the model; the tokenizer follows the batch to its device.
    ``padded_tokens``: the length in tokens every sample is padded to (``max_motion_length // unit_length``), over
    which a model trained with ``train_mask_count="padded"`` counts its masks, as the references do; None: the
    batch's longest sample.
    """

    def __init__(self, tokenizer: Tokenizer, text_encoder: TextEncoder, padded_tokens: int | None = None) -> None:
        self.tokenizer = tokenizer
        self.text_encoder = text_encoder
        self.padded_tokens = padded_tokens

    def inputs(self, batch: TextMotionBatch) -> GeneratorInputs:
        """What ``model(...)`` takes for ``batch`` (computed without gradients)."""
        motion = batch.motion
        if module_device(self.tokenizer) != motion.device:
            self.tokenizer.to(motion.device)
        tokens = tokenize(self.tokenizer, motion, batch.lengths)
        text_emb = self.text_encoder.encode(list(batch.captions)).to(motion.device)
        return GeneratorInputs(tokens.latents, tokens.targets, tokens.lengths, text_emb)

    def __call__(self, model: nn.Module, batch: TextMotionBatch) -> tuple[Tensor, dict[str, Tensor]]:
        """``model(latents, targets, lengths, text_emb, padded_len=padded_tokens)`` -> (loss, logs)."""
        return model(*self.inputs(batch), padded_len=self.padded_tokens)


def make_val_loss_fn(loss_fn: Callable[[nn.Module, Any], tuple[Tensor, Any]], dataset: Dataset, batch_size: int,
                     max_batches: int = 0, seed: int = 0) -> Callable[[nn.Module], dict[str, float]]:
    """``val_fn(model) -> {"loss"}``: the sample-weighted mean loss over ``dataset`` (a ``Text2MotionDataset``).

    Crops, captions, masks and noise are reseeded with ``seed`` at every call, so successive validations differ only
    by the weights. ``max_batches`` 0 means the whole dataset.
    """

    def val_fn(model: nn.Module) -> dict[str, float]:
        device = module_device(model)
        set_seed(seed)
        loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, collate_fn=collate_text_motion)
        total, count = 0.0, 0
        for i, batch in enumerate(loader):
            if max_batches and i >= max_batches:
                break
            batch = TextMotionBatch(batch.captions, batch.motion.to(device), batch.lengths.to(device))
            loss, _ = loss_fn(model, batch)
            total += float(loss) * len(batch.captions)
            count += len(batch.captions)
        return {"loss": total / max(count, 1)}

    return val_fn


def make_generation_eval_fn(tokenizer: Tokenizer, text_encoder: TextEncoder, evaluator: Any, eval_loader: Any,
                            mean: np.ndarray, std: np.ndarray, time_steps: int, cfg_scale: float,
                            seed: int = 3407) -> Callable[[nn.Module], dict[str, float]]:
    """``eval_fn(model) -> {"fid", "diversity", "top1", "top2", "top3", "matching_score"}``: one replication of the
    evaluation protocol (``utils.eval_protocol``) on ``eval_loader`` with motion generated by ``model``.

    The generator gets each batch's captions and GT lengths (``m_lengths // unit_length`` tokens); its output is
    decoded, de-normalised with the tokenizer statistics (``mean``, ``std``) and re-normalised with the evaluator's.
    """
    from utils.eval_protocol import renormalize

    snap_fn, latent_fn = snap_and_latent_fns(tokenizer)
    unit = tokenizer.unit_length

    def motion_fn_for(model: nn.Module, device: torch.device) -> Callable[[Any], tuple[Tensor, Tensor]]:
        def motion_fn(batch: Any) -> tuple[Tensor, Tensor]:
            tokens = torch.div(batch.m_lengths, unit, rounding_mode="floor").clamp_min(1)
            text_emb = text_encoder.encode(list(batch.captions)).to(device)
            targets = model.generate(tokens.to(device), text_emb, time_steps=time_steps, cfg=cfg_scale,
                                     snap_fn=snap_fn, latent_fn=latent_fn)
            # Each sample decoded at its own length, as evaluation_MARDM.py's generation decodes it.
            motion = renormalize(decode_targets(tokenizer, targets, tokens), mean, std, evaluator.mean, evaluator.std)
            return motion, tokens * unit

        return motion_fn

    return protocol_eval_fn(tokenizer, evaluator, eval_loader, motion_fn_for, seed)


def protocol_eval_fn(tokenizer: Tokenizer, evaluator: Any, eval_loader: Any,
                     motion_fn_for: Callable[[nn.Module, torch.device], Callable[[Any], tuple[Tensor, Tensor]]],
                     seed: int) -> Callable[[nn.Module], dict[str, float]]:
    """``eval_fn(model)``: the tokenizer and evaluator moved to the model's device, then one replication of the
    evaluation protocol with ``motion_fn_for(model, device)`` as the motion source; returns the metric means."""
    from utils.eval_protocol import evaluate

    def eval_fn(model: nn.Module) -> dict[str, float]:
        device = module_device(model)
        if module_device(tokenizer) != device:
            tokenizer.to(device)
        evaluator.to(device)
        report = evaluate(evaluator, eval_loader, motion_fn_for(model, device), replications=1, seed=seed,
                          progress=False)
        return {name: stat.mean for name, stat in report.metrics.items()}

    return eval_fn


# ---------------------------------------------------------------------------------------------------------------------
# Checkpoint records
# ---------------------------------------------------------------------------------------------------------------------

def generator_checkpoint_meta(model_name: str, model_args: dict[str, Any], spec: DatasetSpec, tokenizer: Tokenizer,
                              ref: TokenizerRef, text_record: dict[str, Any],
                              config: dict[str, Any]) -> dict[str, Any]:
    """``checkpoint_meta`` of a generator run (the engine adds weights, EMA, optimizer, step, ...).

    Keys: ``stage`` "generator", ``model_name``, ``model_args`` (``MARDM_MODELS[model_name](**model_args)`` rebuilds
    the model), ``dataset`` {name, spec, mean, std} (the tokenizer's statistics), ``tokenizer`` {name, path, sha256,
    model_name, kind, weights (ema | model)}, ``text_encoder`` {name, dim, path}, ``target`` (latent | fsq_coords |
    vq_codes | lfq_codes), ``config``, ``parent`` {path, sha256} of the tokenizer.
    """
    mean, std = tokenizer_statistics(tokenizer)
    sha = file_sha256(ref.path)
    return {
        "stage": "generator", "model_name": model_name, "model_args": dict(model_args),
        "dataset": dataset_record(spec, mean, std),
        "tokenizer": {"name": ref.name, "path": ref.path, "sha256": sha, "model_name": tokenizer.model_name,
                      "kind": tokenizer.kind, "weights": tokenizer.weights},
        "text_encoder": dict(text_record), "target": TARGET_NAMES[tokenizer.kind], "config": dict(config),
        "parent": {"path": ref.path, "sha256": sha},
    }
