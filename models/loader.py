"""Load any tokenizer checkpoint: ours, or the official T2M-GPT / MoMask / MARDM / MotionMillion files.

Recognised layouts (top-level key holding the weights; other keys, e.g. optimizer states, are ignored):

- ours (``model/net_best_fid.tar``, ``model/latest.tar``): ``model``, with ``model_name`` and ``model_args``.
- T2M-GPT (``net_*.pth``): ``net``; keys ``vqvae.encoder...``, ``vqvae.quantizer.codebook``.
- MoMask (``latest.tar``, ``net_best_fid.tar``): ``vq_model`` (or legacy ``net``); ``quantizer.layers.Q.codebook``.
- MARDM (``latest.tar``, ``net_best_fid.tar``): ``ae``; ``encoder...``, ``decoder...``.
- MotionMillion (``net_*.pth``): ``net``; ``[module.]vqvae...``, ``quantizer.project_in...``, Haar patcher buffers.

The top-level key and the weight names must agree (``OFFICIAL_TOP_KEYS``): the key names the program that wrote the
file, and so the statistics convention its tokenizer was trained with.

For official files the sizes (input dim, width, code dim, codebook size, number of quantizers, down_t, stride_t,
depth, kernel size, normalisation) are read from the weight shapes; what shapes cannot tell (dilation growth rate,
activation, mu, FSQ levels other than MotionMillion's, LN vs GN) comes from ``**model_kwargs``, else from MoMask's
``opt.txt`` next to a MoMask file, else the references' defaults; ``**model_kwargs`` must agree with the opt.txt, and
the sizes it records with the weights (``models.momask_opt``). File access goes through ``utils.checkpoint``.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from typing import Any, NamedTuple

import torch
from torch import Tensor, nn

from models.encdec import normalize_norm_name
from models.momask_opt import RunOptions, find_run_options, momask_settings
from models.tokenizers import TOKENIZERS, ConvAutoencoder, build_tokenizer
from utils.checkpoint import CheckpointError, check_matches, load_checkpoint, official_kind, require_types

logger = logging.getLogger(__name__)

_WRAPPER_PREFIXES = ("module.", "_orig_mod.")
# The entries of our own checkpoints that loaders read, with their types (a damaged file fails naming the entry).
_OWN_WEIGHTS_TYPES = {"model_args": (dict, type(None)), "model": dict, "ema": (dict, type(None))}
# What each official top-level key holds: the program that writes it, the layouts it holds (in words and as our
# registry names). The key, not only the weight names, decides the format, and with it the statistics convention
# (``utils.tokenizer_eval.convention_statistics``), so weights of another layout under it are refused.
OFFICIAL_TOP_KEYS = {
    "vq_model": ("MoMask", "a residual VQ-VAE (quantizer.layers.<q>.codebook)", ("RVQVAE",)),
    "ae": ("MARDM", "a continuous autoencoder (no quantizer weights)", ("AE_Model",)),
    "net": ("T2M-GPT / MotionMillion; MoMask's legacy key", "a VQ-VAE (quantizer.codebook), an FSQ "
            "(quantizer.project_in) or a residual VQ-VAE", ("VQVAE", "FSQ_MotionMillion", "RVQVAE")),
}
LAYOUT_NAMES = {"VQVAE": "a VQ-VAE", "RVQVAE": "a residual VQ-VAE", "FSQ_MotionMillion": "an FSQ tokenizer",
                "AE_Model": "a continuous autoencoder (no quantizer weights)"}
_CODEBOOK = "a codebook (codes, code dim)"
SOURCE_FORMATS = {"VQVAE": "t2m-gpt", "RVQVAE": "momask", "FSQ_MotionMillion": "motionmillion", "AE_Model": "mardm"}


class ImportedWeights(NamedTuple):
    """An official checkpoint translated to our layout: registry name, full constructor args, our state dict and
    the source format (``t2m-gpt``, ``momask``, ``mardm``, ``motionmillion``)."""

    model_name: str
    model_args: dict[str, Any]
    state_dict: dict[str, Tensor]
    source_format: str


class Tokenizer(nn.Module):
    """A loaded, frozen tokenizer for inference (always in eval mode, parameters without gradients).

    ``encode(motion (B, T, D))`` -> ``(B, N)`` long indices (VQ, FSQ), ``(B, N, Q)`` (RVQ) or ``(B, N, C)`` float
    latents (continuous AE); ``decode(codes)`` -> ``(B, T, D)``; calling it returns the reconstruction ``(B, T, D)``.
    ``model`` is the underlying registry model, ``kind`` one of ``ae``, ``vq``, ``rvq``, ``fsq``; ``source_format``
    is ``ours`` or the official format the file is in; ``dataset`` the checkpoint's dataset record (ours only);
    ``parent_format`` the official format an imported run came from (``tools/import_checkpoint.py``), else None;
    ``weights`` which weights were loaded (``ema`` or ``model``); ``cond_drop_prob`` the probability with which a
    conditional tokenizer's training dropped its conditions to unknown (0 for every other one, and for files from
    before the option).
    """

    def __init__(self, model: ConvAutoencoder, model_name: str, source: str, source_format: str = "ours",
                 dataset: dict | None = None, parent_format: str | None = None, weights: str = "model",
                 cond_drop_prob: float = 0.0) -> None:
        super().__init__()
        self.model = model
        self.kind: str = model.kind
        self.model_name = model_name
        self.model_args: dict[str, Any] = dict(model.model_args)
        self.source = source
        self.source_format = source_format
        self.dataset = dataset
        self.parent_format = parent_format
        self.weights = weights
        self.cond_drop_prob = float(cond_drop_prob)
        self.model.requires_grad_(False)
        self.train(False)

    def train(self, mode: bool = True) -> Tokenizer:
        """Stays in eval mode whatever ``mode`` says: train mode would update EMA codebooks and enable dropout."""
        return super().train(False)

    @property
    def statistics_format(self) -> str:
        """Whose normalisation convention applies where the file records no mean/std: the official format of the
        file, or of the file an imported run came from; ``ours`` otherwise."""
        return self.parent_format or self.source_format

    @property
    def unit_length(self) -> int:
        """Frames per token (the temporal downsampling factor)."""
        return self.model.unit_length

    @property
    def latent_dim(self) -> int:
        """C, the width of the encoder output / decoder input."""
        return self.model.latent_dim

    @property
    def codebook_size(self) -> int | None:
        """K (per layer for RVQ); None for the continuous AE."""
        return getattr(self.model, "codebook_size", None)

    @property
    def num_quantizers(self) -> int:
        """Q for RVQ, else 1."""
        return getattr(self.model, "num_quantizers", 1)

    def encode(self, motion: Tensor, cond: Mapping[str, Tensor] | None = None) -> Tensor:
        """``(B, T, D)`` -> indices ``(B, N)`` / ``(B, N, Q)`` long, or latents ``(B, N, C)`` for the AE. ``cond``: the
        conditions of a conditional model (``models.part_aware``)."""
        return self.model.encode(motion) if cond is None else self.model.encode(motion, cond)

    def decode(self, codes: Tensor, cond: Mapping[str, Tensor] | None = None) -> Tensor:
        """Indices or latents (as ``encode`` returns them) -> motion ``(B, T, D)``."""
        return self.model.decode(codes) if cond is None else self.model.decode(codes, cond)

    def forward(self, motion: Tensor, cond: Mapping[str, Tensor] | None = None) -> Tensor:
        """Reconstruction ``(B, T, D)``."""
        return (self.model(motion) if cond is None else self.model(motion, cond=cond)).recon


# ----------------------------------------------------------------------------------------------------------------------
# official layouts


def _strip_prefixes(state_dict: dict[str, Tensor], path: str,
                    prefixes: tuple[str, ...] = (*_WRAPPER_PREFIXES, "vqvae.")) -> dict[str, Tensor]:
    """Drop ``prefixes`` (DDP / torch.compile wrappers and T2M-GPT's ``vqvae.`` holder) from every key; two keys
    that name the same weight are an error, not one silently replacing the other."""
    out, original = {}, {}
    for key, value in state_dict.items():
        if not isinstance(key, str):
            raise CheckpointError(f"{path}: the state dict has a key {key!r} of type {type(key).__name__}; weights "
                                  f"are named by text keys")
        name, changed = key, True
        while changed:
            changed = False
            for prefix in prefixes:
                if name.startswith(prefix):
                    name, changed = name[len(prefix):], True
        if name in out:
            raise CheckpointError(f"{path}: {original[name]!r} and {key!r} are the same weight {name!r} once the "
                                  f"prefixes {list(prefixes)} are removed")
        out[name], original[name] = value, key
    return out


def _drop_patchers(state_dict: dict[str, Tensor], patch_size: int, path: str) -> dict[str, Tensor]:
    """MotionMillion's Haar patcher (encoder ``model.0``, decoder last module) is an identity for patch_size 1;
    remove its buffers and shift the encoder's module indices down by one. Only patch_size 1 is supported; a file
    without a patcher has no other."""
    if patch_size != 1 and "encoder.model.0.wavelets" not in state_dict:
        raise CheckpointError(f"{path}: patch_size={patch_size} was requested but the checkpoint has no wavelet "
                              f"patcher (encoder.model.0.wavelets): its motion goes in unpatched, patch_size 1")
    if "encoder.model.0.wavelets" not in state_dict:
        return state_dict
    if patch_size != 1:
        raise CheckpointError(f"{path}: the checkpoint uses a wavelet patcher; only patch_size=1 (an identity) is "
                              f"supported, got patch_size={patch_size}")
    out = {}
    for key, value in state_dict.items():
        if key.endswith((".wavelets", "._arange")):
            continue
        match = re.match(r"encoder\.model\.(\d+)\.(.*)", key)
        if match:
            key = f"encoder.model.{int(match.group(1)) - 1}.{match.group(2)}"
        out[key] = value
    return out


def _check_weight(sd: dict[str, Tensor], key: str, ndim: int, expected: str, path: str) -> Tensor:
    """``sd[key]`` when it is a tensor of ``ndim`` dims; else a CheckpointError naming the file, the key and what
    was ``expected``, rather than an AttributeError, IndexError or TypeError from reading its shape."""
    value = sd[key]
    if not isinstance(value, torch.Tensor) or value.ndim != ndim:
        what = f"a tensor of shape {tuple(value.shape)}" if isinstance(value, torch.Tensor) else type(value).__name__
        raise CheckpointError(f"{path}: {key} is {what}; expected {expected}: the file is damaged or of another "
                              f"model")
    return value


def _infer_conv_args(sd: dict[str, Tensor], norm_kwarg: str | None, path: str) -> dict[str, Any]:
    """Backbone sizes from the weight shapes."""
    if "encoder.model.0.weight" not in sd:
        raise CheckpointError(f"{path}: no encoder.model.0.weight in the state dict; keys start with "
                              f"{sorted({k.split('.')[0] for k in sd})}")
    stem = sd["encoder.model.0.weight"]
    down_t = 0
    while f"encoder.model.{2 + down_t}.0.weight" in sd:
        down_t += 1
    depth = 0
    if down_t:
        while f"encoder.model.2.1.model.{depth}.conv1.weight" in sd:
            depth += 1
    else:
        depth = 3
    block = "encoder.model.2.1.model.0."
    if f"{block}norm1.running_mean" in sd:
        norm = "BN"
    elif f"{block}norm1.weight" in sd:
        norm = norm_kwarg if norm_kwarg in ("LN", "GN") else "LN"
    else:
        norm = None
    out_conv = f"encoder.model.{2 + down_t}.weight"
    if out_conv not in sd:  # a layer missing in the middle reads as fewer down blocks and no output conv
        layers = sorted({int(k.split(".")[2]) for k in sd
                         if k.startswith("encoder.model.") and k.split(".")[2].isdigit()})
        raise CheckpointError(f"{path}: no {out_conv} in the state dict: the encoder's layers {layers} are not the "
                              f"1D-conv backbone's (encoder.model.0 the input conv, 2 to {1 + down_t} the "
                              f"{down_t} down-sampling blocks found, then the output conv); the file is incomplete or "
                              f"of another model")
    for key in ("encoder.model.0.weight", *(["encoder.model.2.0.weight"] if down_t else []), out_conv):
        _check_weight(sd, key, 3, "a Conv1d weight (out channels, in channels, kernel)", path)
    return dict(
        input_width=int(stem.shape[1]),
        width=int(stem.shape[0]),
        kernel_size=int(stem.shape[2]),
        down_t=down_t,
        stride_t=int(sd["encoder.model.2.0.weight"].shape[2]) // 2 if down_t else 2,
        depth=depth,
        latent=int(sd[out_conv].shape[0]),
        norm=norm,
    )


def _detect_layout(sd: dict[str, Tensor], top_key: str, levels_given: bool, path: str) -> str:
    """The registry name of an official state dict (prefixes stripped), from its quantizer keys. A ``net`` file
    without quantizer weights is an FSQ with identity projections when ``levels`` are given."""
    has_quantizer = any(k.startswith("quantizer.") for k in sd)
    if "quantizer.project_in.weight" in sd or (top_key == "net" and levels_given and not has_quantizer):
        return "FSQ_MotionMillion"
    if "quantizer.layers.0.codebook" in sd:
        return "RVQVAE"
    if "quantizer.codebook" in sd or "quantizer.embedding.weight" in sd:
        return "VQVAE"
    if not has_quantizer:
        return "AE_Model"
    raise CheckpointError(f"{path}: unrecognised quantizer keys "
                          f"{sorted(k for k in sd if k.startswith('quantizer.'))[:6]}")


def import_official(state: dict[str, Any], path: str, run_options: RunOptions | None = None,
                    **model_kwargs: Any) -> ImportedWeights:
    """Translate a loaded official checkpoint dict (see the module table) into our registry name, args and keys.

    ``model_kwargs`` supply what the shapes cannot tell; one that contradicts a shape is a CheckpointError.
    ``run_options``: the MoMask run's opt.txt, applied to RVQ weights (``models.momask_opt.momask_settings``).
    """
    top_key = next((key for key in OFFICIAL_TOP_KEYS if key in state), None)
    if top_key is None:
        raise CheckpointError(f"{path}: unknown checkpoint layout; top-level keys are {sorted(state)} (expected ours "
                              f"'model'+'model_name', T2M-GPT/MotionMillion 'net', MoMask 'vq_model', MARDM 'ae')")
    raw = state[top_key]
    if not isinstance(raw, dict) or not raw:
        raise CheckpointError(f"{path}: the weights entry is not a non-empty state dict")
    kwargs = dict(model_kwargs)
    sd = _drop_patchers(_strip_prefixes(raw, path), int(kwargs.pop("patch_size", 1)), path)
    inferred = _infer_conv_args(sd, kwargs.get("norm"), path)
    latent = inferred.pop("latent")

    name = _detect_layout(sd, top_key, "levels" in kwargs, path)
    writer, holds, names = OFFICIAL_TOP_KEYS[top_key]
    if name not in names:
        hint = "; an FSQ without projections loads with levels=[...]" if top_key == "net" else ""
        raise CheckpointError(f"{path}: the {top_key!r} entry ({writer}) holds {holds}, but these weights are "
                              f"{LAYOUT_NAMES[name]}{hint}; top-level keys are {sorted(state)}")
    if name == "FSQ_MotionMillion":
        fsq_dims = (int(_check_weight(sd, "quantizer.project_in.weight", 2, "a Linear weight (FSQ dims, code dim)",
                                      path).shape[0]) if "quantizer.project_in.weight" in sd else None)
        levels = kwargs.pop("levels", None)
        if levels is None:
            if fsq_dims != 6:
                raise CheckpointError(f"{path}: FSQ with {fsq_dims} dims; pass levels=[...] (only MotionMillion's "
                                      f"6-dim [8, 8, 8, 5, 5, 5] is assumed)")
            levels = [8, 8, 8, 5, 5, 5]
        if fsq_dims is not None and len(levels) != fsq_dims:
            raise CheckpointError(f"{path}: quantizer.project_in maps to {fsq_dims} dims but levels={levels}")
        inferred.update(levels=[int(v) for v in levels], code_dim=latent, dropout=0.0)
    elif name == "RVQVAE":
        codebooks = []
        while f"quantizer.layers.{len(codebooks)}.codebook" in sd:
            codebooks.append(_check_weight(sd, f"quantizer.layers.{len(codebooks)}.codebook", 2, _CODEBOOK, path))
        # MoMask's shared codebook is one module listed Q times, saved as Q equal copies. Trained separate EMA
        # codebooks are never bit-equal, so equality means shared; shared_codebook=False overrides it. A shared
        # module holds one codebook, so asking for one where they differ would silently keep only the last.
        shared = len(codebooks) > 1 and all(torch.equal(codebooks[0], cb) for cb in codebooks[1:])
        if kwargs.get("shared_codebook") and not shared and len(codebooks) > 1:
            raise CheckpointError(f"{path}: shared_codebook=True was requested but the {len(codebooks)} layers' "
                                  f"codebooks differ (a shared codebook is saved as equal copies)")
        if run_options is not None:  # MoMask writes the settings the shapes cannot tell into its run's opt.txt
            shapes = dict(inferred, nb_code=int(codebooks[0].shape[0]), code_dim=latent, num_quantizers=len(codebooks))
            settings = momask_settings(run_options, path, shapes, shared, kwargs)
            logger.info("%s: %s from %s", path, ", ".join(f"{k}={v!r}" for k, v in settings.items()),
                        run_options.path)
            kwargs = {**settings, **kwargs}
        inferred.update(nb_code=int(codebooks[0].shape[0]), code_dim=latent, num_quantizers=len(codebooks),
                        shared_codebook=kwargs.pop("shared_codebook", shared), dropout=0.2)
    elif name == "VQVAE":
        orig = "quantizer.embedding.weight" in sd
        codebook = _check_weight(sd, "quantizer.embedding.weight" if orig else "quantizer.codebook", 2, _CODEBOOK, path)
        if orig:
            kwargs.setdefault("quantizer_type", "orig")
        elif kwargs.get("quantizer_type") == "orig":
            raise CheckpointError(f"{path}: quantizer_type='orig' needs quantizer.embedding.weight, found a "
                                  f"quantizer.codebook buffer")
        inferred.update(nb_code=int(codebook.shape[0]), code_dim=latent, dropout=0.0)
    else:
        inferred.update(output_emb_width=latent, dropout=0.2)

    if "norm" in kwargs and (inferred["norm"] is None) != (normalize_norm_name(kwargs["norm"]) is None):
        raise CheckpointError(f"{path}: norm={kwargs['norm']!r} was requested but the weights have "
                              f"{'no' if inferred['norm'] is None else 'affine'} normalisation layers")
    for key, value in kwargs.items():
        if key in inferred and key not in ("norm", "dropout") and inferred[key] != value:
            raise CheckpointError(f"{path}: {key}={value!r} was requested but the weights say {inferred[key]!r}")
    model_args = {**inferred, **kwargs}
    try:
        model = build_tokenizer(name, **model_args)
    except ValueError as e:
        raise CheckpointError(f"{path}: cannot build {name} from the checkpoint: {e}") from e
    return ImportedWeights(name, dict(model.model_args), sd, SOURCE_FORMATS[name])


# ----------------------------------------------------------------------------------------------------------------------
# entry point


def _load_weights(model: nn.Module, state_dict: dict[str, Tensor], path: str) -> None:
    try:
        model.load_state_dict(state_dict, strict=True)
    except RuntimeError as e:
        raise CheckpointError(f"{path}: weights do not fit {type(model).__name__}: {e}") from e


def load_tokenizer(path: str, model_name: str | None = None, map_location: str | torch.device = "cpu",
                   use_ema: bool = True, **model_kwargs: Any) -> Tokenizer:
    """Load a tokenizer checkpoint (ours or official, see the module docstring) as a frozen ``Tokenizer``.

    ``model_name`` (e.g. from ``--ae_model``), when given, must match the checkpoint's. For our checkpoints
    ``model_kwargs`` must agree with the stored ``model_args``; for official files they fill in what the weight
    shapes cannot tell. A run trained with ``--ema_decay`` was validated (and its best file chosen) with its EMA
    weights, so those are loaded unless ``use_ema`` is False.
    """
    state = load_checkpoint(path, map_location=map_location)
    if state.get("stage", "tokenizer") != "tokenizer":
        what = (f"model_name {state['model_name']!r} is not a registered tokenizer" if "model_name" in state
                else "not a tokenizer")
        raise CheckpointError(f"{path}: {what}; its stage is {state['stage']!r}")
    kind = official_kind(state)
    if kind is not None and not any(key in state for key in OFFICIAL_TOP_KEYS):
        raise CheckpointError(f"{path}: an official {kind} checkpoint (top-level keys {sorted(state)}), not a "
                              "tokenizer (official tokenizers are T2M-GPT / MotionMillion 'net', MoMask 'vq_model' "
                              "and MARDM 'ae' files)")
    dataset, source_format, parent_format, weights, cond_drop_prob = None, "ours", None, "model", 0.0
    if "model_name" in state and "model" in state:
        name = state["model_name"]
        if name not in TOKENIZERS:
            raise CheckpointError(f"{path}: model_name {name!r} is not a registered tokenizer "
                                  f"({sorted(TOKENIZERS)})")
        require_types(state, _OWN_WEIGHTS_TYPES, path)
        args = dict(state.get("model_args") or {})
        for key, value in model_kwargs.items():
            check_matches(path, f"model_args[{key!r}]", args.get(key), value)
        try:
            model = build_tokenizer(name, **args)
        except ValueError as e:
            raise CheckpointError(f"{path}: cannot rebuild {name} from model_args {args}: {e}") from e
        state_dict = state["model"]
        if use_ema and state.get("ema"):
            state_dict, weights = state["ema"], "ema"
        state_dict = _strip_prefixes(state_dict, path, _WRAPPER_PREFIXES)
        dataset = state.get("dataset")
        parent = state.get("parent")
        parent_format = parent.get("format") if isinstance(parent, dict) else None
        if state.get("conditions"):
            cond_drop_prob = float((state.get("config") or {}).get("cond_drop_prob") or 0.0)
    else:
        # Applied to RVQ weights only: under 'vq_model' or MoMask's legacy 'net' (also T2M-GPT's key).
        run_options = find_run_options(path)
        imported = import_official(state, path, run_options, **model_kwargs)
        name = imported.model_name
        model = build_tokenizer(name, **imported.model_args)
        state_dict, source_format = imported.state_dict, imported.source_format
        logger.info("%s: %s checkpoint imported as %s(%s)", path, imported.source_format, name, imported.model_args)
    if model_name is not None:
        check_matches(path, "model_name", name, model_name)
    _load_weights(model, state_dict, path)
    return Tokenizer(model.to(map_location), name, path, source_format, dataset, parent_format, weights,
                     cond_drop_prob)
