"""Finding and opening what a generator was trained with: its checkpoint, its tokenizer file, its text encoder, and
the text-to-length estimator that samples lengths when none are given.

A run is found by folder (``<checkpoints_dir>/<dataset>/<name>``) or by file; a tokenizer is the file recorded in the
generator's checkpoint, checked against its SHA-256 and also looked for under the generator's own checkpoints folder
when the runs were moved; a text encoder must be the one the model was trained with. ``utils.generation`` builds
samplers from these.
"""

from __future__ import annotations

import glob
import logging
import os
from pathlib import Path
from typing import Any, NamedTuple

import torch

from models.length_estimator import LengthEstimator
from models.text_encoders import CachedTextEncoder, build_text_encoder
from utils.checkpoint import CheckpointError, file_sha256, load_checkpoint, official_kind, require_keys, require_types
from utils.checkpoint_users import find_kept_copy
from utils.run_dir import RunDir

logger = logging.getLogger(__name__)

LENGTH_ESTIMATOR_STAGE = "length_estimator"
# --which_epoch names: MARDM samples and evaluates with latest.tar (its EMA weights); "best" is the best validation
# checkpoint, by FID when the run was trained with --need_evaluation, else by validation loss.
# MoMask's masked transformer keeps its best validation accuracy (net_best_acc.tar) when trained without evaluation.
CHECKPOINT_FILES = {"latest": ("latest.tar",), "best": ("net_best_fid.tar", "net_best_loss.tar", "net_best_acc.tar")}
LENGTH_ESTIMATOR_FILES = ("net_best_*.tar", "finest.tar", "latest.tar")


def require_stage(state: dict[str, Any], path: str, stage: str, written_by: str) -> None:
    """Raise naming ``path`` unless ``state["stage"]`` is ``stage``; checked before the keys, so another stage's file,
    or an official generator file, is named as such rather than as missing keys."""
    if state.get("stage") == stage:
        return
    official = official_kind(state)
    if "stage" not in state and official is not None:
        raise CheckpointError(f"{path}: an official {official} checkpoint (top-level keys {sorted(state)}); only "
                              f"{stage} checkpoints written by this framework's {written_by} load here (official "
                              f"tokenizers import with tools/import_checkpoint.py, official generators do not)")
    raise CheckpointError(f"{path}: stage is {state.get('stage')!r}, expected {stage!r} (a {stage} checkpoint "
                          f"written by {written_by})")


# ---------------------------------------------------------------------------------------------------------------------
# Finding checkpoints
# ---------------------------------------------------------------------------------------------------------------------

class GeneratorRun(NamedTuple):
    """A generator's checkpoint file, its run name, and the dataset of the run folder (``""`` when unknown)."""
    path: str
    name: str
    dataset_name: str


def resolve_run(ckpt: str | None, name: str | None, dataset_name: str | None, checkpoints_dir: str,
                which: str = "latest") -> GeneratorRun:
    """The generator named by ``--ckpt`` (a file) or by ``--name`` + ``--dataset_name`` (a run under
    ``checkpoints_dir``, its ``which`` file).

    Without the flags, a ``--ckpt`` stored as ``<checkpoints>/<dataset>/<run>/model/<file>`` takes its run name and
    dataset from those folders (a ``--res_name`` run is then looked for under ``checkpoints_dir/<dataset>/``); a file
    elsewhere is named by its stem and has no dataset. The folder's name is only where to look: it may be a copy of
    the run put elsewhere (``backup/<run>/model/``), so callers check the generator's dataset against a *given*
    ``--dataset_name`` only.
    """
    if ckpt:
        if not os.path.isfile(ckpt):
            raise CheckpointError(f"--ckpt: checkpoint not found: {ckpt}")
        parts = os.path.abspath(ckpt).split(os.sep)
        inside_run = len(parts) >= 4 and parts[-2] == "model"
        run_name = name or (parts[-3] if inside_run else os.path.splitext(parts[-1])[0])
        return GeneratorRun(ckpt, run_name, dataset_name or (parts[-4] if inside_run else ""))
    if not name or not dataset_name:
        raise ValueError("pass --name and --dataset_name (a run under --checkpoints_dir), or --ckpt (a file)")
    run = RunDir(checkpoints_dir, dataset_name, name)
    return GeneratorRun(resolve_generator_checkpoint(run.root, which), name, dataset_name)


def resolve_generator_checkpoint(path_or_run: str, which: str = "latest") -> str:
    """A checkpoint file, or a run folder (``<run>`` or ``<run>/model``) and ``which`` -> the checkpoint file.

    ``which``: ``"latest"`` (``model/latest.tar``), ``"best"`` (``model/net_best_fid.tar``, else
    ``net_best_loss.tar``, else ``net_best_acc.tar``) or any file name in ``model/`` with or without ``.tar``; ignored
    when ``path_or_run`` is a file.
    """
    if os.path.isfile(path_or_run):
        return path_or_run
    if not os.path.isdir(path_or_run):
        raise CheckpointError(f"generator checkpoint not found: {path_or_run} is neither a file nor a run folder")
    model_dir = os.path.join(path_or_run, "model")
    if not os.path.isdir(model_dir):
        model_dir = path_or_run
    names = CHECKPOINT_FILES.get(which, (which if which.endswith(".tar") else f"{which}.tar",))
    for name in names:
        path = os.path.join(model_dir, name)
        if os.path.isfile(path):
            return path
    found = sorted(f for f in os.listdir(model_dir) if f.endswith(".tar"))
    raise CheckpointError(f"no {' / '.join(names)} in {model_dir}; found {found or 'no checkpoint'} (pick one with "
                          f"which= / --which_epoch: latest, best or a file name)")


def checkpoints_roots(path: str) -> list[str]:
    """``<checkpoints_dir>`` of a file laid out as ``<checkpoints_dir>/<dataset>/<name>/model/<file>``: that of the
    path as given and, for a symbolic link (or a path through one), that of the file it points to, so a link to a run's
    checkpoint finds the runs beside its target; empty when neither is laid out so."""
    roots: list[str] = []
    for p in (Path(os.path.abspath(path)), Path(os.path.realpath(path))):
        if p.parent.name == "model" and len(p.parents) >= 5 and str(p.parents[3]) not in roots:
            roots.append(str(p.parents[3]))
    return roots


def resolve_length_estimator_checkpoint(path_or_run: str) -> str:
    """A length-estimator file, or its run folder -> the file (``model/net_best_*.tar``, else ``finest.tar``, else
    ``latest.tar``)."""
    if os.path.isfile(path_or_run):
        return path_or_run
    model_dir = os.path.join(path_or_run, "model") if os.path.isdir(os.path.join(path_or_run, "model")) \
        else path_or_run
    for pattern in LENGTH_ESTIMATOR_FILES:
        found = sorted(glob.glob(os.path.join(glob.escape(model_dir), pattern)))
        if found:
            return found[0]
    raise CheckpointError(f"no length estimator found: none of {list(LENGTH_ESTIMATOR_FILES)} in {model_dir}. Give "
                          "the motion lengths (--motion_length, or '#<frames>' after a prompt), or train the estimator "
                          "with train_length_estimator.py --dataset_name <dataset>")


def resolve_tokenizer_file(record: dict[str, Any], generator_path: str, override: str | None) -> tuple[str, str]:
    """(path, sha256) of the tokenizer file to load: ``override``, else the recorded path (also looked up under this
    generator's checkpoints folder when the runs were moved); its SHA-256 must match the record unless ``override``
    is given."""
    recorded, sha = record.get("path"), record.get("sha256")
    if override is not None:
        if not os.path.isfile(override):
            raise CheckpointError(f"tokenizer_path: tokenizer checkpoint not found: {override}")
        found = file_sha256(override)
        if sha and found != sha:
            logger.warning("%s: using tokenizer %s (sha256 %s) instead of the one the generator was trained on, %s "
                           "(sha256 %s)", generator_path, override, found, recorded, sha)
        return override, found
    candidates = [recorded] if recorded else []
    parts = Path(recorded).parts if recorded else ()
    if len(parts) >= 4 and parts[-2] == "model":
        # <checkpoints_dir>/<dataset>/<run>/model/<file>: the same run under this generator's checkpoints folder.
        candidates += [os.path.join(root, *parts[-4:]) for root in checkpoints_roots(generator_path)]
    changed, seen = [], set()
    for candidate in candidates:
        # One file reached by two spellings (the recorded relative path, its absolute twin) is looked at once.
        if os.path.realpath(candidate) in seen:
            continue
        seen.add(os.path.realpath(candidate))
        if os.path.isfile(candidate):
            found = file_sha256(candidate)
            if not sha or found == sha:
                return candidate, found
            kept = find_kept_copy(candidate, sha)
            if kept is not None:
                # The tokenizer run was trained further and kept the version this generator was trained on.
                logger.info("%s: %s has changed since the generator was trained; using the kept version %s",
                            generator_path, candidate, kept)
                return kept, sha
            changed.append(f"{candidate} (sha256 {found})")
    if changed:
        raise CheckpointError(f"{generator_path}: the tokenizer has changed since the generator was trained: "
                              f"{', '.join(changed)}, recorded sha256 {sha} (a tokenizer run trained further with "
                              f"--is_continue rewrites its latest and best files); restore that file, or pass "
                              f"tokenizer_path= / --tokenizer_path to decode with another one anyway")
    raise CheckpointError(f"{generator_path}: the tokenizer the generator was trained on is missing: {recorded} "
                          f"(sha256 {sha}); put that file back or pass tokenizer_path= / --tokenizer_path with its "
                          f"new location")


def check_text_encoder_request(record: dict[str, Any], path: str, requested: str | None) -> None:
    """Fail when ``requested`` (e.g. ``--text_encoder``) is not the encoder of the ``text_encoder`` record: a model
    only understands the embedding space it was trained on."""
    name = record.get("name")
    if requested is not None and requested != name:
        raise CheckpointError(f"{path}: trained with text encoder {name!r}, asked for {requested!r}; the model "
                              f"only understands {name!r} embeddings")


def _recorded_dim(record: dict[str, Any], path: str) -> int:
    try:
        return int(record["dim"])
    except (TypeError, ValueError):
        raise CheckpointError(f"{path}: text_encoder record {record}: dim must be a whole number, "
                              f"got {record['dim']!r}") from None


def build_recorded_text_encoder(record: dict[str, Any], path: str, device: str | torch.device = "cpu",
                                requested: str | None = None, weights_path: str | None = None) -> CachedTextEncoder:
    """The text encoder of a checkpoint's ``text_encoder`` record ``{"name", "dim", "path"}``, memoising captions.

    ``requested`` (e.g. ``--text_encoder``) must name the recorded encoder: embeddings of another encoder live in
    another space. ``weights_path`` replaces the recorded CLIP weights path.
    """
    name = record.get("name")
    check_text_encoder_request(record, path, requested)
    kwargs: dict[str, Any] = {"device": device}
    if name == "clip":
        weights = weights_path or record.get("path")
        if not weights or not os.path.isfile(weights):
            where = ("given as text_encoder_path= / --text_encoder_path); pass the path of" if weights_path else
                     "the file the model was trained with); pass text_encoder_path= / --text_encoder_path with")
            raise CheckpointError(f"{path}: CLIP weights not found: {weights} ({where} OpenAI's ViT-B-32.pt, with "
                                  f"bpe_simple_vocab_16e6.txt.gz next to it")
        kwargs["weights_path"] = weights
    elif weights_path is not None:
        logger.warning("%s: text encoder %r takes no weights file; ignoring %s", path, name, weights_path)
    try:
        encoder = build_text_encoder(name, **kwargs)
    except ValueError as e:
        raise CheckpointError(f"{path}: text_encoder record {record}: {e}") from e
    if record.get("dim") is not None and encoder.dim != _recorded_dim(record, path):
        raise CheckpointError(f"{path}: text encoder {name!r} gives {encoder.dim}-dim embeddings, the model was "
                              f"trained on {record['dim']}-dim ones (another weights file?)")
    return CachedTextEncoder(encoder)


def estimator_text_encoder(record: dict[str, Any], estimator_path: str, generator_encoder: CachedTextEncoder,
                           generator_weights: str | None, weights_path: str | None,
                           device: str | torch.device) -> CachedTextEncoder:
    """The text encoder of a length estimator's ``record``: the generator's own (``generator_encoder``, its CLIP
    file ``generator_weights``) when it is the same encoder and width and, for CLIP, the same weights file (two CLIP
    files of one width give embeddings in different spaces), else its own. ``weights_path`` (``--text_encoder_path``)
    replaces the recorded CLIP file of both."""
    if _same_text_encoder(record, generator_encoder, generator_weights, weights_path):
        return generator_encoder
    weights = weights_path if record.get("name") == "clip" else None
    if weights_path is not None and weights is None and generator_encoder.name != "clip":
        logger.warning("--text_encoder_path %s: neither the generator's text encoder %r nor the length estimator's "
                       "%r takes a weights file; ignored", weights_path, generator_encoder.name, record.get("name"))
    return build_recorded_text_encoder(record, estimator_path, device, weights_path=weights)


def _same_text_encoder(record: dict[str, Any], encoder: CachedTextEncoder, encoder_weights: str | None,
                       weights_path: str | None) -> bool:
    if record.get("name") != encoder.name or record.get("dim") != encoder.dim:
        return False
    if record.get("name") != "clip" or weights_path is not None:
        return True
    theirs = record.get("path")
    if not encoder_weights or not theirs:
        return encoder_weights == theirs
    if os.path.isfile(encoder_weights) and os.path.isfile(theirs):
        return os.path.samefile(encoder_weights, theirs)
    return os.path.realpath(encoder_weights) == os.path.realpath(theirs)


# ---------------------------------------------------------------------------------------------------------------------
# Length estimator
# ---------------------------------------------------------------------------------------------------------------------

class LoadedLengthEstimator(NamedTuple):
    """A length estimator ready to use: ``model`` (eval mode), its ``text_encoder`` record, ``unit_length`` (frames per
    class step), the checkpoint ``path`` and its ``dataset`` record ``{"name", "spec"}`` (None in files without one)."""

    model: LengthEstimator
    text_encoder: dict[str, Any]
    unit_length: int
    path: str
    dataset: dict[str, Any] | None = None


def load_length_estimator(path_or_run: str, device: str | torch.device = "cpu") -> LoadedLengthEstimator:
    """Load a ``stage: "length_estimator"`` checkpoint (file, or run folder: see
    ``resolve_length_estimator_checkpoint``); logits (B, num_classes) over token counts."""
    path = resolve_length_estimator_checkpoint(path_or_run)
    state = load_checkpoint(path, map_location="cpu")
    require_stage(state, path, LENGTH_ESTIMATOR_STAGE, "train_length_estimator.py")
    require_keys(state, ["model_args", "model", "text_encoder", "unit_length"], path)
    require_types(state, {"model_args": dict, "model": dict, "ema": (dict, type(None)), "text_encoder": dict,
                          "unit_length": int, "dataset": (dict, type(None))}, path)
    try:
        model = LengthEstimator(**state["model_args"])
        model.load_state_dict(state.get("ema") or state["model"])
    except (TypeError, ValueError, RuntimeError) as e:  # ValueError: sizes the constructor refuses (hidden_dim < 8)
        raise CheckpointError(f"{path}: cannot rebuild LengthEstimator from model_args {state['model_args']}: {e}") \
            from e
    model.to(device).eval().requires_grad_(False)
    dataset = state.get("dataset")
    return LoadedLengthEstimator(model, dict(state["text_encoder"]), int(state["unit_length"]), path,
                                 dict(dataset) if dataset is not None else None)
