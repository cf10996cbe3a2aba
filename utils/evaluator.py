"""Load, build and save the Guo et al. text/motion evaluator, and embed batches the way the protocol does.

Two checkpoint kinds load through ``load_evaluator``:

- the released files, ``<dir>/text_mot_match/model/finest.tar`` with keys ``text_encoder``, ``motion_encoder``,
  ``movement_encoder`` (plus ``epoch``, optimizer states, ... which are ignored). They carry no normalisation, so
  the evaluator statistics come from ``meta/mean.npy`` and ``meta/std.npy`` in the released layout or from the
  ``mean``/``std`` arguments;
- our own evaluators (``save_evaluator``): the same three keys plus ``epoch``/``iter`` (so the released loaders
  read them too) and the metadata that makes them self-contained: constructor arguments, word-vector source (for
  GloVe, the folder and the digest of the vectors, so that evaluation refuses other ones; for a learned vocabulary,
  its word list), dataset name and evaluator mean/std.

Layer widths are read from the weight shapes (the released evaluator is 512/1024 wide; others load the same way).

The embedding calls follow the reference wrapper: motions arrive normalised with the evaluator statistics
(``ev.normalize``) and zero-padded; the movement encoder ignores the foot contacts when the dataset has them; the
motion GRU reads ``m_len // unit_length`` steps; and the outputs come back sorted by motion length, longest first,
with the text rows permuted the same way (``keep_input_order=True`` gives T2M-GPT's input order instead).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch

from models.evaluator import EVALUATOR_SIZES, TextMotionEvaluator
from utils.atomic_io import atomic_write
from utils.checkpoint import CheckpointError, check_matches, load_checkpoint, save_checkpoint, unwrap_model
from utils.dataset_specs import DatasetSpec, get_dataset_spec
from utils.normalization import read_npy_array, statistics_match
from utils.run_dir import RunDir, RunDirError
from utils.word_vectorizer import (
    DIM_POS_OHOT,
    SOURCE_GLOVE,
    SOURCE_GLOVE_FOLDER,
    SOURCE_LEARNED,
    LearnedVocab,
    WordVectorizer,
    vectorizer_digest,
)

logger = logging.getLogger(__name__)

STAGE = "evaluator"
MODEL_NAME = "TextMotionEvaluator"
NETWORK_KEYS = ("text_encoder", "motion_encoder", "movement_encoder")
OFFICIAL_RELPATH = os.path.join("text_mot_match", "model", "finest.tar")
# Released folders (next to text_mot_match) whose meta/ holds the evaluator normalisation, all for the same weights.
OFFICIAL_META_FOLDERS = ("text_mot_match", "Comp_v6_KLD005", "Comp_v6_KLD01")
# The statistics files of released evaluators: Guo et al.'s meta/ folder, and MARDM's (utils/eval_mean_std/<ds>/).
OFFICIAL_STAT_FILES = (("mean.npy", "std.npy"), ("eval_mean.npy", "eval_std.npy"))

TensorLike = torch.Tensor | np.ndarray


def length_order(m_lens: TensorLike) -> np.ndarray:
    """Lengths (B,) -> the reference's row order (B,): an ascending ``np.argsort`` reversed, longest first.

    Kept bit-identical to the reference (including its unstable order among equal lengths)."""
    lengths = m_lens.detach().cpu().numpy() if isinstance(m_lens, torch.Tensor) else np.asarray(m_lens)
    return np.argsort(lengths.reshape(-1))[::-1].copy()


class EvaluatorWrapper:
    """A loaded or freshly built evaluator with its normalisation and word-vector source.

    Attributes: ``model`` (``TextMotionEvaluator``), ``mean``/``std`` (dim_pose,) float32 evaluator statistics,
    ``source`` (``SOURCE_GLOVE``: the official GloVe vectors, unrecorded; ``SOURCE_GLOVE_FOLDER``: the GloVe vectors
    of ``glove_dir`` whose ``vectorizer_digest`` is ``glove_sha256``; ``SOURCE_LEARNED``), ``vocab`` (the
    ``LearnedVocab`` or None), ``dataset_name``, ``model_args`` (constructor keywords), ``device``, ``path`` and
    ``epoch`` when loaded, and ``released``: a file of the released layout (Guo et al.'s, MARDM's), not one
    ``train_evaluator.py`` wrote.
    """

    def __init__(self, model: TextMotionEvaluator, model_args: dict[str, Any], *, dataset_name: str,
                 mean: np.ndarray, std: np.ndarray, source: str, vocab: LearnedVocab | None = None,
                 device: str | torch.device = "cpu", path: str | None = None, epoch: int | None = None,
                 released: bool = False, glove_dir: str | None = None, glove_sha256: str | None = None) -> None:
        sources = (SOURCE_GLOVE, SOURCE_GLOVE_FOLDER, SOURCE_LEARNED)
        if source not in sources:
            raise ValueError(f"word-vector source must be one of {sources}, got {source!r}")
        if (source == SOURCE_LEARNED) != (vocab is not None):
            raise ValueError("a learned-vocabulary evaluator needs its LearnedVocab, a GloVe one takes none")
        if (source == SOURCE_GLOVE_FOLDER) != (glove_sha256 is not None):
            raise ValueError(f"the digest of the GloVe vectors goes with source {SOURCE_GLOVE_FOLDER!r} only")
        self.model = model
        self.model_args = dict(model_args)
        self.dataset_name = dataset_name
        self.mean, self.std = _check_stats(mean, std, model.dim_pose, path or "evaluator statistics")
        self.source = source
        self.vocab = vocab
        self.glove_dir = glove_dir
        self.glove_sha256 = glove_sha256
        self.path = path
        self.epoch = epoch
        self.released = released
        self.device = torch.device(device)
        self.model.to(self.device).eval()

    @property
    def unit_length(self) -> int:
        return self.model.unit_length

    @property
    def dim_pose(self) -> int:
        return self.model.dim_pose

    @property
    def dim_word(self) -> int:
        return int(self.model_args["dim_word"])

    def to(self, device: str | torch.device) -> EvaluatorWrapper:
        self.device = torch.device(device)
        self.model.to(self.device)
        return self

    def normalize(self, motion: TensorLike) -> TensorLike:
        """Raw features (..., dim_pose) -> normalised with the evaluator statistics (same type as the input).

        Zero-pad after normalising: the movement encoder sees padded frames, which must be exact zeros."""
        if isinstance(motion, torch.Tensor):
            mean = torch.as_tensor(self.mean, device=motion.device, dtype=motion.dtype)
            std = torch.as_tensor(self.std, device=motion.device, dtype=motion.dtype)
            return (motion - mean) / std
        return (np.asarray(motion) - self.mean) / self.std

    def word_vectors_record(self) -> dict[str, Any]:
        """What a checkpoint records of the word vectors (plain values; the learned word list apart)."""
        return {"source": self.source, "dim_word": self.dim_word, "glove_dir": self.glove_dir,
                "sha256": self.glove_sha256}

    def word_vectorizer(self, glove_dir: str | None = None) -> WordVectorizer | LearnedVocab:
        """The vocabulary that turns ``word/POS`` tokens into this evaluator's text input.

        An evaluator that records the digest of its GloVe vectors refuses a folder of other vectors: its scores
        would be another evaluator's. The released ones record none, and neither do ours saved before the digest;
        their folder is taken as it is."""
        if self.vocab is not None:
            return self.vocab
        which = (f"the GloVe vectors of {self.glove_dir}" if self.source == SOURCE_GLOVE_FOLDER
                 else "the official GloVe vectors")
        if glove_dir is None:
            raise ValueError(f"this evaluator uses {which}: pass glove_dir, the folder holding our_vab_data.npy, "
                             "our_vab_words.pkl and our_vab_idx.pkl")
        wv = WordVectorizer(glove_dir)
        if wv.dim_word != self.dim_word:
            raise ValueError(f"{glove_dir}: GloVe vectors are {wv.dim_word}-dim but the evaluator's text encoder "
                             f"expects {self.dim_word}")
        if self.glove_sha256 is not None:
            found = vectorizer_digest(wv)
            if found != self.glove_sha256:
                raise ValueError(f"{self.path or 'evaluator'}: word_vectors.sha256 is {self.glove_sha256}, the "
                                 f"digest of {which} it was trained with, but the vectors of {glove_dir} have "
                                 f"{found}; pass the GloVe folder it was trained with (with other vectors its "
                                 "scores are not its own)")
        elif self.path is not None and not self.released:
            logger.warning("%s records no digest of the GloVe vectors it was trained with (saved before evaluators "
                           "recorded it): %s is used unchecked", self.path, glove_dir)
        return wv

    @contextmanager
    def _evaluating(self) -> Iterator[None]:
        # Embeddings are always taken in eval mode without gradients, even in the middle of training.
        was_training = self.model.training
        self.model.eval()
        try:
            with torch.no_grad():
                yield
        finally:
            self.model.train(was_training)

    def _motion_tensor(self, motions: TensorLike) -> torch.Tensor:
        return torch.as_tensor(motions).to(self.device, torch.float32)

    def _word_tensor(self, word_embs: TensorLike) -> torch.Tensor:
        dtype = torch.int64 if self.vocab is not None else torch.float32
        return torch.as_tensor(word_embs).to(self.device, dtype)

    def movement_latents(self, motions: TensorLike) -> torch.Tensor:
        """Normalised motions (B, T, dim_pose) -> movement latents (B, T // 4, latent), rows in input order."""
        with self._evaluating():
            return self.model.encode_movements(self._motion_tensor(motions))

    def get_motion_embeddings(self, motions: TensorLike, m_lens: TensorLike,
                              keep_input_order: bool = False) -> torch.Tensor:
        """Normalised, zero-padded motions (B, T, dim_pose), lengths in frames (B,) -> motion embeddings (B, E).

        Rows are in ``length_order(m_lens)`` unless ``keep_input_order``."""
        lengths = torch.as_tensor(m_lens).reshape(-1).cpu().long()
        motions = self._motion_tensor(motions)
        if motions.shape[0] != lengths.shape[0]:
            raise ValueError(f"got {motions.shape[0]} motions but {lengths.shape[0]} lengths")
        if not keep_input_order:
            order = torch.from_numpy(length_order(lengths))
            motions, lengths = motions[order.to(self.device)], lengths[order]
        with self._evaluating():
            return self.model.encode_motion(motions, lengths)

    def get_co_embeddings(self, word_embs: TensorLike, pos_ohot: TensorLike, cap_lens: TensorLike,
                          motions: TensorLike, m_lens: TensorLike,
                          keep_input_order: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """Paired text and motion embeddings, each (B, E).

        word_embs (B, L, dim_word) float (GloVe) or (B, L) int ids (learned vocabulary), pos_ohot (B, L, 15),
        cap_lens (B,) with sos/eos, motions (B, T, dim_pose) normalised and zero-padded, m_lens (B,) frames. Rows
        are in ``length_order(m_lens)`` (text rows permuted alike: row i is still a pair) unless ``keep_input_order``.
        """
        motion_emb = self.get_motion_embeddings(motions, m_lens, keep_input_order=keep_input_order)
        with self._evaluating():
            text_emb = self.model.encode_text(self._word_tensor(word_embs),
                                              torch.as_tensor(pos_ohot).to(self.device, torch.float32),
                                              torch.as_tensor(cap_lens).reshape(-1).cpu().long())
        if text_emb.shape[0] != motion_emb.shape[0]:
            raise ValueError(f"got {text_emb.shape[0]} captions but {motion_emb.shape[0]} motions")
        if not keep_input_order:
            text_emb = text_emb[torch.from_numpy(length_order(m_lens)).to(self.device)]
        return text_emb, motion_emb


def _as_array(value: np.ndarray | str | None, what: str) -> np.ndarray | None:
    if value is None:
        return None
    if isinstance(value, (str, os.PathLike)):
        if not os.path.isfile(value):
            raise FileNotFoundError(f"evaluator {what} file not found: {value}")
        return read_npy_array(os.fspath(value), f"evaluator {what}, a numeric .npy array")
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().numpy()
    return np.asarray(value)


def _check_stats(mean: Any, std: Any, dim_pose: int, where: str) -> tuple[np.ndarray, np.ndarray]:
    try:
        mean = np.asarray(mean, dtype=np.float32).reshape(-1)
        std = np.asarray(std, dtype=np.float32).reshape(-1)
    except (TypeError, ValueError) as e:  # strings: numpy's message names no file
        raise ValueError(f"{where}: evaluator mean/std must be numbers ({e})") from e
    if mean.shape != (dim_pose,) or std.shape != (dim_pose,):
        raise ValueError(f"{where}: evaluator mean/std must be ({dim_pose},) for this evaluator, got {mean.shape} "
                         f"and {std.shape}")
    if not (np.isfinite(mean).all() and np.isfinite(std).all() and (std > 0).all()):
        raise ValueError(f"{where}: evaluator mean/std must be finite with std > 0")
    return mean, std


def resolve_evaluator_path(path_or_dir: str) -> str:
    """A checkpoint file, or a folder holding ``text_mot_match/model/finest.tar`` (or ``model/finest.tar`` or
    ``finest.tar``) -> the file."""
    if os.path.isfile(path_or_dir):
        return path_or_dir
    tried = [os.path.join(path_or_dir, OFFICIAL_RELPATH), os.path.join(path_or_dir, "model", "finest.tar"),
             os.path.join(path_or_dir, "finest.tar")]
    for candidate in tried:
        if os.path.isfile(candidate):
            return candidate
    raise CheckpointError(f"evaluator checkpoint not found: {path_or_dir} is not a file and none of {tried} exists "
                          "(the released evaluator lives at checkpoints/<dataset>/text_mot_match/model/finest.tar)")


def _official_stat_dirs(path: str) -> list[str]:
    model_dir = os.path.dirname(os.path.abspath(path))
    run_dir = os.path.dirname(model_dir)
    dataset_dir = os.path.dirname(run_dir)
    dirs = [os.path.join(model_dir, "meta"), os.path.join(run_dir, "meta")]
    dirs += [os.path.join(dataset_dir, folder, "meta") for folder in OFFICIAL_META_FOLDERS]
    return list(dict.fromkeys(dirs))


def _shape(state: dict[str, Any], group: str, key: str, ndim: int, path: str) -> tuple[int, ...]:
    sd = state.get(group)
    if not isinstance(sd, dict) or key not in sd or not isinstance(sd[key], torch.Tensor):
        raise CheckpointError(f"{path}: {group!r} has no tensor {key!r} (not a text_mot_match evaluator?)")
    shape = tuple(sd[key].shape)
    if len(shape) != ndim:
        raise CheckpointError(f"{path}: {group}.{key} should have {ndim} dims, got shape {shape}")
    return shape


def infer_sizes(state: dict[str, Any], path: str) -> dict[str, Any]:
    """Evaluator widths from the weight shapes of a checkpoint's three state_dicts."""
    hid_mov, dim_movement_input, _ = _shape(state, "movement_encoder", "main.0.weight", 3, path)
    latent, hid_mov2, _ = _shape(state, "movement_encoder", "main.3.weight", 3, path)
    dim_word, dim_pos = _shape(state, "text_encoder", "pos_emb.weight", 2, path)
    if dim_pos != DIM_POS_OHOT:
        # Both vocabularies emit this many POS classes: another width loads, then fails at the first caption.
        raise CheckpointError(f"{path}: text_encoder.pos_emb.weight has shape {(dim_word, dim_pos)}, taking "
                              f"{dim_pos} POS classes; expected width {DIM_POS_OHOT}, the one-hot the captions are "
                              "encoded with (utils/word_vectorizer.POS_ENUMERATOR)")
    hid_text, dim_word2 = _shape(state, "text_encoder", "input_emb.weight", 2, path)
    coemb_text, hid_text2 = _shape(state, "text_encoder", "output_net.3.weight", 2, path)
    hid_motion, latent2 = _shape(state, "motion_encoder", "input_emb.weight", 2, path)
    coemb_motion, hid_motion2 = _shape(state, "motion_encoder", "output_net.3.weight", 2, path)
    pairs = [("movement_encoder.main.3.weight[1] vs main.0.weight[0]", hid_mov2, hid_mov),
             ("text_encoder.input_emb.weight[1] vs pos_emb.weight[0]", dim_word2, dim_word),
             ("text_encoder.output_net.3.weight[1] vs input_emb.weight[0]", hid_text2, hid_text),
             ("motion_encoder.input_emb.weight[1] vs movement_encoder.main.3.weight[0]", latent2, latent),
             ("motion_encoder.output_net.3.weight[1] vs input_emb.weight[0]", hid_motion2, hid_motion),
             ("motion_encoder vs text_encoder embedding width", coemb_motion, coemb_text)]
    for what, got, expected in pairs:
        if got != expected:
            raise CheckpointError(f"{path}: inconsistent evaluator weights: {what}: {got} != {expected}")
    vocab_size = None
    if "word_emb.weight" in state["text_encoder"]:
        vocab_size, dim_word3 = _shape(state, "text_encoder", "word_emb.weight", 2, path)
        if dim_word3 != dim_word:
            raise CheckpointError(f"{path}: text_encoder.word_emb.weight is {dim_word3}-dim, pos_emb {dim_word}")
    return dict(dim_movement_input=dim_movement_input, dim_word=dim_word, dim_pos_ohot=dim_pos,
                dim_movement_enc_hidden=hid_mov, dim_movement_latent=latent, dim_text_hidden=hid_text,
                dim_motion_hidden=hid_motion, dim_coemb_hidden=coemb_text, vocab_size=vocab_size)


def _contact_slice(spec: DatasetSpec) -> tuple[int, int] | None:
    s = None if spec.contact_group is None else spec.group(spec.contact_group)
    return None if s is None else (s.start, s.stop)


def _model_from_state(state: dict[str, Any], model_args: dict[str, Any], path: str) -> TextMotionEvaluator:
    model = TextMotionEvaluator(**model_args)
    for key in NETWORK_KEYS:
        try:
            getattr(model, key).load_state_dict(state[key])
        except RuntimeError as e:
            raise CheckpointError(f"{path}: {key} weights do not fit the evaluator built from them: {e}") from e
    return model


def load_evaluator(path_or_dir: str, dataset_name: str, device: str | torch.device = "cpu", *,
                   mean: np.ndarray | str | None = None, std: np.ndarray | str | None = None,
                   unit_length: int | None = None, data_root: str | None = None) -> EvaluatorWrapper:
    """Load a released or our own evaluator checkpoint (file, or folder holding text_mot_match/model/finest.tar).

    ``dataset_name`` selects the feature layout (which dims are foot contacts) for released files and must match
    the name recorded in ours. ``mean``/``std`` (arrays or .npy paths) give the evaluator statistics for released
    files, which otherwise come from ``meta/{mean,std}.npy`` of the released layout; ours carry theirs (an explicit
    value must then agree). ``unit_length`` (frames per movement step, 4 for the released evaluators) is read from
    our checkpoints.
    """
    path = resolve_evaluator_path(path_or_dir)
    state = load_checkpoint(path, map_location="cpu")
    missing = [k for k in NETWORK_KEYS if k not in state]
    if missing:
        raise CheckpointError(f"{path}: missing evaluator keys {missing}; top-level keys are {sorted(state)}")
    sizes = infer_sizes(state, path)
    explicit_mean, explicit_std = _as_array(mean, "mean"), _as_array(std, "std")
    if (explicit_mean is None) != (explicit_std is None):
        raise ValueError("pass both mean and std for the evaluator, or neither")
    if _written_here(state):
        wrapper = _load_own(state, sizes, path, dataset_name, explicit_mean, explicit_std, unit_length, device,
                            data_root)
    else:  # statistics given as files are named by them if they cannot normalise this evaluator
        stats_files = " / ".join(os.fspath(v) for v in (mean, std) if isinstance(v, (str, os.PathLike)))
        wrapper = _load_official(state, sizes, path, dataset_name, explicit_mean, explicit_std, unit_length,
                                 data_root, device, stats_files)
    logger.info("loaded evaluator %s (%s, epoch %s, %s)", path, wrapper.source, wrapper.epoch,
                {k: v for k, v in wrapper.model_args.items() if k.startswith("dim_")})
    return wrapper


def _written_here(state: dict[str, Any]) -> bool:
    """Whether an evaluator checkpoint is one ``save_evaluator`` wrote (``train_evaluator.py``), not a released one."""
    return state.get("stage") == STAGE and "model_args" in state


def trained_evaluator_source(path: str) -> str | None:
    """The word-vector source of the evaluator ``path`` if ``train_evaluator.py`` wrote it, else None (released)."""
    state = load_checkpoint(path, map_location="cpu")
    return str((state.get("word_vectors") or {}).get("source")) if _written_here(state) else None


def _load_official(state: dict[str, Any], sizes: dict[str, Any], path: str, dataset_name: str,
                   mean: np.ndarray | None, std: np.ndarray | None, unit_length: int | None,
                   data_root: str | None, device: str | torch.device, stats_files: str = "") -> EvaluatorWrapper:
    if sizes["vocab_size"] is not None:
        raise CheckpointError(f"{path}: the text encoder has a learned word embedding but the file lacks the "
                              "evaluator metadata (stage, model_args, word_vectors) that records its vocabulary")
    spec = get_dataset_spec(dataset_name, data_root)
    ignore = _contact_slice(spec)
    expected_input = spec.dim_pose - (ignore[1] - ignore[0] if ignore else 0)
    if sizes["dim_movement_input"] != expected_input:
        contacts = f"minus its {ignore[1] - ignore[0]} foot-contact dims " if ignore else ""
        raise CheckpointError(
            f"{path}: movement_encoder.main.0.weight takes {sizes['dim_movement_input']} features, but dataset "
            f"{dataset_name!r} gives {spec.dim_pose} {contacts}= {expected_input}; wrong --dataset_name? "
            "(MARDM's 67- and 64-dim evaluators go with 't2m_67' and 'kit_64')")
    if mean is None:
        found = [(os.path.join(folder, m), os.path.join(folder, s)) for folder in _official_stat_dirs(path)
                 for m, s in OFFICIAL_STAT_FILES]
        found = next(((m, s) for m, s in found if os.path.isfile(m) and os.path.isfile(s)), None)
        if found is None:
            raise FileNotFoundError(
                f"{path}: released evaluators carry no normalisation, and no mean.npy + std.npy (or MARDM's "
                f"eval_mean.npy + eval_std.npy) is in any of {_official_stat_dirs(path)}; put the statistics the "
                "evaluator was trained with in one of them (Guo et al.'s meta/ folder; for MARDM's 67-/64-dim "
                "evaluators the eval_mean.npy and eval_std.npy of MARDM's utils/eval_mean_std/<dataset>/)")
        mean, std = (read_npy_array(p, "evaluator statistics, a numeric .npy array") for p in found)
        # Checked here, where the files are known: the evaluator's own check could only name the checkpoint.
        _check_stats(mean, std, spec.dim_pose, f"{found[0]} / {os.path.basename(found[1])}")
        logger.info("evaluator statistics from %s", " and ".join(found))
    elif stats_files:
        _check_stats(mean, std, spec.dim_pose, stats_files)
    # The released evaluators divide lengths by 4, their movement encoder's downsampling.
    model_args = dict(dim_pose=spec.dim_pose, ignore_dims=ignore,
                      unit_length=4 if unit_length is None else unit_length,
                      **{k: v for k, v in sizes.items() if k != "dim_movement_input"})
    model = _model_from_state(state, model_args, path)
    epoch = state.get("epoch")
    return EvaluatorWrapper(model, model_args, dataset_name=dataset_name, mean=mean, std=std, source=SOURCE_GLOVE,
                            device=device, path=path, epoch=int(epoch) if isinstance(epoch, int) else None,
                            released=True)


def _cross_dataset_advice(evaluated: str, evaluator_dataset: str, data_root: str | None) -> str:
    """What to do when an evaluator of ``evaluator_dataset`` is given for ``evaluated``: score through
    ``--eval_dataset`` where a conversion between the two representations is registered, else use the dataset's
    own evaluator."""
    from utils.representation import get_conversion  # it imports the protocol, which imports this module

    own = f"pass an evaluator of {evaluated!r} (train one with train_evaluator.py --dataset_name {evaluated})"
    try:
        get_conversion(get_dataset_spec(evaluated, data_root), get_dataset_spec(evaluator_dataset, data_root))
    except (ValueError, FileNotFoundError) as e:
        return f"{own}; it cannot score {evaluated!r} through --eval_dataset ({e})"
    return (f"to score a model of {evaluated!r} with it, evaluation_MARDM.py and evaluation_AE.py take "
            f"--eval_dataset {evaluator_dataset} (a registered conversion between the two representations), else "
            f"{own}")


def _load_own(state: dict[str, Any], sizes: dict[str, Any], path: str, dataset_name: str,
              mean: np.ndarray | None, std: np.ndarray | None, unit_length: int | None,
              device: str | torch.device, data_root: str | None = None) -> EvaluatorWrapper:
    for key in ("word_vectors", "dataset", "model_args"):
        if not isinstance(state.get(key), dict):
            found = type(state[key]).__name__ if key in state else "absent"
            raise CheckpointError(f"{path}: the evaluator checkpoint's {key!r} record is {found}; expected a dict")
    dataset = state["dataset"]
    if dataset.get("name") != dataset_name:
        raise CheckpointError(f"{path}: an evaluator of dataset {dataset.get('name')!r}, but {dataset_name!r} is "
                              f"evaluated; {_cross_dataset_advice(dataset_name, str(dataset.get('name')), data_root)}")
    model_args = dict(state["model_args"])
    if model_args.get("ignore_dims") is not None:
        model_args["ignore_dims"] = tuple(int(v) for v in model_args["ignore_dims"])
    for key, value in sizes.items():
        if key != "dim_movement_input" and model_args.get(key) != value:
            raise CheckpointError(f"{path}: model_args[{key!r}] = {model_args.get(key)!r} contradicts the weights "
                                  f"({value!r})")
    if unit_length is not None:
        check_matches(path, "unit_length", model_args.get("unit_length"), unit_length)
    ck_mean, ck_std = _as_array(dataset.get("mean"), "mean"), _as_array(dataset.get("std"), "std")
    if ck_mean is None or ck_std is None:
        raise CheckpointError(f"{path}: dataset record has no evaluator mean/std")
    if mean is not None and not statistics_match(mean, std, ck_mean, ck_std):
        raise CheckpointError(f"{path}: the mean/std passed in differ from the statistics this evaluator was "
                              "trained with (stored in the checkpoint); leave them out")
    words = state["word_vectors"]
    source = words.get("source")
    vocab = None
    if source == SOURCE_LEARNED:
        if not words.get("words"):
            raise CheckpointError(f"{path}: learned-vocabulary evaluator without its word list")
        vocab = LearnedVocab(words["words"], dim_word=model_args["dim_word"])
        check_matches(path, "vocabulary size", len(vocab), model_args.get("vocab_size"))
    elif source == SOURCE_GLOVE_FOLDER:
        if not isinstance(words.get("sha256"), str):
            raise CheckpointError(f"{path}: word_vectors.source is {source!r} but word_vectors.sha256, the digest "
                                  f"of those vectors, is {words.get('sha256')!r}")
    elif source != SOURCE_GLOVE:  # an evaluator saved before the digest: official GloVe was all it could say
        raise CheckpointError(f"{path}: word_vectors.source is {source!r}; expected one of "
                              f"{(SOURCE_GLOVE_FOLDER, SOURCE_LEARNED, SOURCE_GLOVE)}")
    model = _model_from_state(state, model_args, path)
    epoch = state.get("epoch")
    glove_record = {"glove_dir": words.get("glove_dir"), "glove_sha256": words.get("sha256")} \
        if source == SOURCE_GLOVE_FOLDER else {}
    return EvaluatorWrapper(model, model_args, dataset_name=dataset_name, mean=ck_mean, std=ck_std, source=source,
                            vocab=vocab, device=device, path=path,
                            epoch=int(epoch) if isinstance(epoch, int) else None, **glove_record)


def build_evaluator(dataset_name: str, mean: np.ndarray, std: np.ndarray, *,
                    word_vectors: WordVectorizer | LearnedVocab | None = None, dim_word: int = 300,
                    dim_pos_ohot: int = DIM_POS_OHOT, sizes: str | dict[str, int] = "official", unit_length: int = 4,
                    data_root: str | None = None, device: str | torch.device = "cpu") -> EvaluatorWrapper:
    """A freshly initialised evaluator for ``dataset_name`` (to be trained).

    ``sizes`` is a name in ``EVALUATOR_SIZES`` or a dict of the five widths. ``word_vectors`` fixes the text input:
    a ``LearnedVocab`` adds a learned embedding of its size and width; a ``WordVectorizer`` means its GloVe vectors,
    recorded by folder and digest; None (with ``dim_word``) means the official GloVe vectors, unrecorded.
    ``mean``/``std`` (dim_pose,) are the evaluator statistics it is trained with; they are saved with it. The model
    comes back in eval mode: call ``ev.model.train()`` before training.
    """
    spec = get_dataset_spec(dataset_name, data_root)
    if isinstance(sizes, str):
        if sizes not in EVALUATOR_SIZES:
            raise ValueError(f"unknown evaluator sizes {sizes!r}; choose from {sorted(EVALUATOR_SIZES)} or pass a dict")
        sizes = EVALUATOR_SIZES[sizes]
    unknown = sorted(set(sizes) - set(EVALUATOR_SIZES["official"]))
    if unknown:
        raise ValueError(f"unknown evaluator size keys {unknown}; expected {sorted(EVALUATOR_SIZES['official'])}")
    vocab = word_vectors if isinstance(word_vectors, LearnedVocab) else None
    if word_vectors is not None:
        dim_word = word_vectors.dim_word
    model_args = dict(dim_pose=spec.dim_pose, ignore_dims=_contact_slice(spec), dim_word=dim_word,
                      dim_pos_ohot=dim_pos_ohot, **{**EVALUATOR_SIZES["official"], **sizes},
                      unit_length=unit_length, vocab_size=len(vocab) if vocab is not None else None)
    model = TextMotionEvaluator(**model_args)
    source, glove_record = (SOURCE_LEARNED if vocab else SOURCE_GLOVE), {}
    if isinstance(word_vectors, WordVectorizer):
        source = SOURCE_GLOVE_FOLDER
        glove_record = {"glove_dir": os.path.abspath(word_vectors.glove_dir),
                        "glove_sha256": vectorizer_digest(word_vectors)}
    return EvaluatorWrapper(model, model_args, dataset_name=dataset_name, mean=_as_array(mean, "mean"),
                            std=_as_array(std, "std"), source=source, vocab=vocab, device=device, **glove_record)


def save_evaluator(path: str, wrapper: EvaluatorWrapper, *, epoch: int = 0, iteration: int = 0,
                   metrics: dict[str, Any] | None = None, config: dict[str, Any] | None = None,
                   extra: dict[str, Any] | None = None) -> None:
    """Write ``wrapper`` in the released key layout (text/motion/movement encoders, epoch, iter) plus our metadata.

    ``extra`` adds plain values (e.g. ``opt_text_encoder``/``opt_motion_encoder`` optimizer states for resume).
    """
    model = unwrap_model(wrapper.model)
    state: dict[str, Any] = {key: {k: v.detach().cpu() for k, v in getattr(model, key).state_dict().items()}
                             for key in NETWORK_KEYS}
    model_args = dict(wrapper.model_args)
    if model_args.get("ignore_dims") is not None:
        model_args["ignore_dims"] = list(model_args["ignore_dims"])
    state.update(
        epoch=int(epoch), iter=int(iteration), stage=STAGE, model_name=MODEL_NAME, model_args=model_args,
        word_vectors={**wrapper.word_vectors_record(),
                      "words": list(wrapper.vocab.words) if wrapper.vocab is not None else None},
        dataset={"name": wrapper.dataset_name, "mean": torch.from_numpy(wrapper.mean.copy()),
                 "std": torch.from_numpy(wrapper.std.copy())},
        metrics=dict(metrics or {}), config=dict(config or {}))
    clash = sorted(set(extra or {}) & set(state))
    if clash:
        raise ValueError(f"extra checkpoint entries {clash} would overwrite evaluator fields")
    state.update(extra or {})
    save_checkpoint(path, state)


def check_resumed_word_vectors(latest_path: str, saved: dict[str, Any], record: dict[str, Any],
                               glove_dir: str | None) -> None:
    """Refuse to resume the co-embedding run of ``latest_path`` (its checkpoint ``saved``) with other word vectors
    than it trained with (``record``: ``EvaluatorWrapper.word_vectors_record`` now, ``glove_dir`` the flag): GloVe
    vectors of another digest, a learned vocabulary where it read GloVe (no ``--glove_dir``), or the reverse."""
    was = saved.get("word_vectors")
    if not isinstance(was, dict):  # a run saved before the record: GloVe unless it learned a vocabulary
        learned = (saved.get("model_args") or {}).get("vocab_size") is not None
        was = {"source": SOURCE_LEARNED if learned else SOURCE_GLOVE,
               "glove_dir": (saved.get("config") or {}).get("glove_dir"), "sha256": None}
    keep = f"add --glove_dir {was.get('glove_dir')} to the command, or start a new --name"
    if was.get("source") != SOURCE_LEARNED and record["source"] == SOURCE_LEARNED:
        given = f"--glove_dir {glove_dir} does not exist" if glove_dir else "no --glove_dir is given"
        raise CheckpointError(f"{latest_path}: the run being resumed was trained with the GloVe vectors of "
                              f"{was.get('glove_dir')}, but {given}, which would learn a vocabulary instead; {keep}")
    if was.get("source") == SOURCE_LEARNED and record["source"] != SOURCE_LEARNED:
        raise CheckpointError(f"{latest_path}: the run being resumed learned its vocabulary from the training "
                              f"captions, but --glove_dir {glove_dir} gives GloVe vectors; leave --glove_dir out, "
                              "or start a new --name")
    if record["source"] == SOURCE_LEARNED:
        return
    if not was.get("sha256"):
        logger.warning("%s records no digest of the GloVe vectors it was trained with (saved before runs recorded "
                       "it): the vectors of %s are used unchecked", latest_path, glove_dir)
    elif was["sha256"] != record["sha256"]:
        raise CheckpointError(f"{latest_path}: the run being resumed was trained with the GloVe vectors of "
                              f"{was.get('glove_dir')} (word_vectors.sha256 {was['sha256']}), but those of "
                              f"--glove_dir {glove_dir} differ ({record['sha256']}); {keep}")


def save_evaluator_meta(run_dir: str, mean: np.ndarray, std: np.ndarray) -> str:
    """Write ``<run_dir>/meta/{mean,std}.npy`` (float32, (D,)), the released layout's evaluator statistics, so tools
    that expect that layout can use an evaluator trained here; each file is replaced atomically. Returns the folder."""
    meta_dir = os.path.join(run_dir, "meta")
    os.makedirs(meta_dir, exist_ok=True)
    for name, values in (("mean", mean), ("std", std)):
        with atomic_write(os.path.join(meta_dir, f"{name}.npy"), "wb") as f:
            np.save(f, np.asarray(values, dtype=np.float32))
    return meta_dir


def check_no_placed_evaluator(run: RunDir) -> None:
    """Refuse (``RunDirError``, naming the file) a new run whose folder holds, without ``model/latest.tar``, an
    evaluator placed by hand: ``model/finest.tar``, or ``meta/`` statistics without the ``opt.yaml`` that a start of
    ``train_evaluator.py`` writes before them (one killed before its first checkpoint leaves both: not refused)."""
    own_start = os.path.exists(run.config_path)
    for path in [] if os.path.exists(run.latest_path) else [os.path.join(run.model_dir, "finest.tar"), *(
            [] if own_start else [os.path.join(run.root, "meta", name) for name in OFFICIAL_STAT_FILES[0]])]:
        if os.path.exists(path):
            raise RunDirError(f"{path} exists without {run.latest_path}: an evaluator placed there (as the released "
                              f"one is), which a new run would overwrite; choose another --name for the new run (or "
                              f"move {run.root} away)")
