"""MoMask's ``opt.txt``: the settings of the run that wrote a MoMask file (``key: value`` lines, in the run folder
above ``model/`` or beside the file), checked against the weights and against the values a caller asks for.

It supplies what the weight shapes cannot tell (dilation growth rate, activation, LN / GN, EMA decay, a shared
codebook whose layers happen to be equal). The sizes it records (codebook size, code dim, number of quantizers, width,
down_t, stride_t, depth) are the weights' own, so one that differs means the file lost weights (a missing codebook
reads as fewer quantizers) or the opt.txt is another run's: both are refused, as is a caller's value that contradicts
it. Every message names the opt.txt and its field.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any, NamedTuple

from models.encdec import check_dilation_growth_rate, make_activation, normalize_norm_name
from models.quantizers import check_ema_decay
from utils.checkpoint import CheckpointError


def _read_bool(text: str) -> bool:
    if text not in ("True", "False"):
        raise ValueError(text)
    return text == "True"


# opt.txt field -> (our constructor argument, how the text reads, the constructor's check of the value)
_SETTINGS: dict[str, tuple[str, Callable[[str], Any], Callable[[Any], Any]]] = {
    "dilation_growth_rate": ("dilation_growth_rate", int, check_dilation_growth_rate),
    "vq_act": ("activation", str, make_activation),
    "mu": ("mu", float, check_ema_decay),
    "vq_norm": ("norm", str, normalize_norm_name),
}
# opt.txt field -> our constructor argument whose value the weight shapes give
# (not output_emb_width: MoMask's train_vq.py builds the RVQ-VAE with code_dim in its place, so the field keeps its
# default 512 whatever the code dim)
_SIZES = {"nb_code": "nb_code", "code_dim": "code_dim", "num_quantizers": "num_quantizers", "width": "width",
          "down_t": "down_t", "stride_t": "stride_t", "depth": "depth"}


class RunOptions(NamedTuple):
    """An opt.txt: its path and its ``key: value`` lines (values as text, stripped)."""

    path: str
    fields: dict[str, str]

    def read(self, field: str, kind: Callable[[str], Any]) -> Any:
        """The value of ``field`` read as ``kind``; None where it is missing or ``None``. Text that does not read is
        a CheckpointError naming the file and the field."""
        text = self.fields.get(field, "")
        if not text or text == "None":
            return None
        try:
            return kind(text)
        except ValueError:
            name = "True or False" if kind is _read_bool else kind.__name__
            raise CheckpointError(f"{self.path}: {field}: cannot read {text!r} as {name}") from None


def find_run_options(path: str) -> RunOptions | None:
    """The opt.txt beside the checkpoint ``path`` or in the run folder above its ``model/``, else None."""
    folder = os.path.dirname(os.path.abspath(path))
    found = next((p for p in (os.path.join(folder, "opt.txt"), os.path.join(os.path.dirname(folder), "opt.txt"))
                  if os.path.isfile(p)), None)
    if found is None:
        return None
    with open(found, encoding="utf-8", errors="replace") as f:
        lines = dict(line.split(":", 1) for line in f if ":" in line and not line.startswith("-"))
    return RunOptions(found, {key.strip(): value.strip() for key, value in lines.items()})


def momask_settings(options: RunOptions, path: str, weights: dict[str, Any], shared: bool,
                    requested: dict[str, Any]) -> dict[str, Any]:
    """The constructor arguments ``options`` set for the RVQ weights of ``path``.

    ``weights``: the arguments the shapes give (``nb_code``, ``code_dim``, ``num_quantizers``, ``width``,
    ``down_t``, ``stride_t``, ``depth``, ``norm``: None, ``BN``, or LN / GN for affine layers); ``shared``: the
    layers' codebooks are equal copies; ``requested``: the caller's arguments, which must agree with opt.txt.
    """
    for field, arg in _SIZES.items():
        value = options.read(field, int)
        if value is not None and value != weights[arg]:
            where = (f" (quantizer.layers.0 to {weights[arg] - 1}.codebook)" if field == "num_quantizers" else "")
            raise CheckpointError(f"{options.path}: {field}: {value}, but the weights of {path} have {arg} "
                                  f"{weights[arg]}{where}: the file lost weights or the opt.txt is another run's")
    settings = {}
    for field, (arg, kind, check) in _SETTINGS.items():
        value = options.read(field, kind)
        if value is None and not (field == "vq_norm" and options.fields.get(field) == "None"):
            continue
        try:
            check(value)
        except ValueError as e:
            raise CheckpointError(f"{options.path}: {field}: {options.fields[field]}: {e}") from None
        settings[arg] = value
    if "norm" in settings:
        norm, has = normalize_norm_name(settings["norm"]), weights["norm"]
        if (norm is None) != (has is None) or (norm == "BN") != (has == "BN"):
            layers = {None: "no normalisation layers", "BN": "BatchNorm layers"}.get(has, "affine LN / GN layers")
            raise CheckpointError(f"{options.path}: vq_norm: {options.fields['vq_norm']}, but the weights of {path} "
                                  f"have {layers}")
        settings["norm"] = norm
    shared_codebook = options.read("shared_codebook", _read_bool)
    if shared_codebook is not None:
        if shared_codebook and not shared and weights["num_quantizers"] > 1:
            raise CheckpointError(f"{options.path}: shared_codebook: True, but the {weights['num_quantizers']} "
                                  f"layers' codebooks of {path} differ (a shared codebook is saved as equal copies)")
        settings["shared_codebook"] = shared_codebook
    for arg, value in settings.items():
        if arg in requested and not _same(arg, requested[arg], value):
            field = next((f for f, (a, _, _) in _SETTINGS.items() if a == arg), arg)
            flag = f" (drop the flag --{arg})" if field in _SETTINGS else ""
            raise CheckpointError(f"{path}: {arg}={requested[arg]!r} was requested but {options.path} says {field}: "
                                  f"{options.fields[field]}; leave {arg} out{flag}, or correct opt.txt if it is "
                                  f"wrong")
    return settings


def _same(arg: str, a: Any, b: Any) -> bool:
    if arg == "norm":
        try:
            return normalize_norm_name(a) == normalize_norm_name(b)
        except ValueError:
            return False
    return a == b
