"""Feature statistics: reading ``Mean.npy``/``Std.npy``, the evaluator convention, and z-normalisation.

Three normalisations must stay distinct (see ``dataset/README.md``):

1. the dataset statistics ``Mean.npy``/``Std.npy`` (HumanML3D's std is already averaged within each feature group);
2. the evaluator statistics (Guo et al.): the same mean, with the std of the root and foot-contact groups divided by
   a feature bias, so those few dims weigh more after normalisation (``eval_normalization``);
3. statistics of a sliced representation (MARDM's 67-dim "essential" features), which are a leading slice of (1).

Every model records the statistics it was trained with; evaluation de-normalises with those and re-normalises with
the evaluator's own, never assuming the two coincide.
"""

from __future__ import annotations

import logging
import os

import numpy as np
import torch

from utils.dataset_specs import DatasetSpec, full_width_names

logger = logging.getLogger(__name__)

MEAN_FILE = "Mean.npy"
STD_FILE = "Std.npy"


class DatasetError(ValueError):
    """Bad or missing data in a dataset root. The message names the file, the field and what was expected.

    ``kind`` is a short machine-readable label of the problem (``"nan"``, ``"wrong_dim"``, ``"missing_text"``, ...)
    that ``utils.data_validation`` uses to count problems per kind.
    """

    def __init__(self, message: str, kind: str = "invalid", path: str = "") -> None:
        super().__init__(message)
        self.kind = kind
        self.path = path


def data_root_problem(spec: DatasetSpec, data_root: str | None = None) -> DatasetError | None:
    """A ``DatasetError`` (kind ``missing_root``) when the dataset folder (``data_root``, else ``spec.root``) is not a
    folder, else None. Without it every loader would report its first file (``Mean.npy``, ``train.txt``) as missing,
    as though the folder held a half-made dataset. The message names where the folder came from (``--data_root`` or
    the dataset's default), what it should hold and, for the synthetic dataset, the command that makes it."""
    root = data_root or spec.root
    if os.path.isdir(root):
        return None
    state = "not a folder" if os.path.exists(root) else "dataset folder missing"
    where = (f"--data_root {root}: {state}" if data_root else
             f"{root}: {state} (the default folder of --dataset_name {spec.name}; --data_root reads another)")
    make = (f"; make the synthetic dataset with: python prepare_data.py synthetic --out {root}"
            if spec.name == "synthetic" else "; see dataset/README.md for where its files come from")
    return DatasetError(f"{where}; expected a dataset in the HumanML3D layout: new_joint_vecs/<id>.npy, "
                        f"texts/<id>.txt, the split files train.txt, val.txt and test.txt, and {MEAN_FILE}/{STD_FILE}"
                        f"{make}", kind="missing_root", path=root)


def stats_problems(values: np.ndarray, spec: DatasetSpec, path: str, is_std: bool) -> list[DatasetError]:
    """Every problem of one statistics array ``values`` read from ``path`` (empty list when it is usable).

    Accepted sizes are ``spec.dim_pose`` and ``spec.file_dim`` (a leading slice is then used). Entries of the
    returned errors have kinds ``stats_shape``, ``stats_nonfinite`` and ``std_zero``.
    """
    name = os.path.basename(path)
    sizes = sorted({spec.dim_pose, spec.file_dim})
    expected = " or ".join(f"({s},)" for s in sizes)
    if values.ndim != 1 or values.shape[0] not in sizes:
        return [DatasetError(f"{path}: {name} has shape {values.shape}; expected {expected} for dataset "
                             f"{spec.name!r}", kind="stats_shape", path=path)]
    if not (np.issubdtype(values.dtype, np.floating) or np.issubdtype(values.dtype, np.integer)):
        return [DatasetError(f"{path}: {name} has dtype {values.dtype}; expected floating-point values",
                             kind="stats_shape", path=path)]
    used = values[:spec.dim_pose].astype(np.float64)
    problems = []
    bad = np.flatnonzero(~np.isfinite(used))
    if bad.size:
        problems.append(DatasetError(f"{path}: {name} has {bad.size} non-finite entries (first at index "
                                     f"{_describe_index(spec, int(bad[0]))}); expected finite values",
                                     kind="stats_nonfinite", path=path))
    if is_std:
        zero = np.flatnonzero(np.isfinite(used) & (used <= 0))
        if zero.size:
            problems.append(DatasetError(f"{path}: {name} has {zero.size} zero or negative entries (first at index "
                                         f"{_describe_index(spec, int(zero[0]))}); expected a positive std for "
                                         f"every feature", kind="std_zero", path=path))
    return problems


def _describe_index(spec: DatasetSpec, index: int) -> str:
    for group in spec.layout:
        if group.start <= index < group.stop:
            return f"{index}, group {group.name!r}"
    return str(index)


def read_npy_array(path: str, expected: str) -> np.ndarray:
    """The array of the .npy file ``path``; ValueError naming it and ``expected`` (what it should hold) when it is no
    readable .npy array of real numbers: an .npz archive or a pickle under the name, an HTML page of a failed
    download, an empty or cut-short file, an array of strings (or of complex numbers, dates, records)."""
    try:
        with open(path, "rb") as f:
            magic = f.read(6)
    except OSError as e:
        raise ValueError(f"{path}: cannot open ({e}); expected {expected}") from e
    if magic != b"\x93NUMPY":  # an .npz archive would load as an NpzFile, a text file as "pickled data"
        raise ValueError(f"{path}: not a .npy file (no NUMPY header); expected {expected}")
    try:
        values = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as e:
        raise ValueError(f"{path}: cannot read as a .npy array ({e}); expected {expected}") from e
    # Every caller reads statistics: strings would fail later, in a float conversion that names no file.
    if not (np.issubdtype(values.dtype, np.integer) or np.issubdtype(values.dtype, np.floating)):
        raise ValueError(f"{path}: cannot read as a .npy array of numbers (it holds dtype {values.dtype}); expected "
                         f"{expected}")
    return values


def read_meta_statistics(meta_dir: str, where: str, width: int) -> tuple[np.ndarray, np.ndarray]:
    """``mean.npy`` and ``std.npy`` of an official run's ``meta`` folder, each (width,) float32: the statistics a
    tokenizer was trained with (``--meta_dir`` at import, ``--ae_meta_dir`` at evaluation, a MoMask file's own run's
    folder). Wider files give their first ``width`` entries (a 263-dim meta for t2m_67's leading 67 features).
    ``where`` says where the folder came from, for the errors: a missing or unreadable file, another width, a value
    that is not finite or a std that is not positive (which would turn the tokenizer's input into inf or NaN)."""
    paths = {stat: os.path.join(meta_dir, f"{stat}.npy") for stat in ("mean", "std")}
    missing = [f"{stat}.npy" for stat, path in paths.items() if not os.path.isfile(path)]
    if missing:
        raise FileNotFoundError(f"{where} {meta_dir}: {' and '.join(missing)} not found; expected mean.npy and "
                                f"std.npy of shape ({width},)")
    read = {stat: read_npy_array(path, f"the {stat} of an official run's meta folder ({where}), a ({width},) "
                                       "numeric .npy array") for stat, path in paths.items()}
    if any(a.ndim != 1 or a.shape[0] < width for a in read.values()):
        raise ValueError(f"{where} {meta_dir}: mean {read['mean'].shape} and std {read['std'].shape}; expected "
                         f"({width},) (or wider files whose first {width} entries are the features)")
    mean, std = (read[stat][:width].astype(np.float32) for stat in ("mean", "std"))
    bad = [name for name, ok in (("mean.npy", np.isfinite(mean).all()),
                                 ("std.npy", np.isfinite(std).all() and (std > 0).all())) if not ok]
    if bad:
        raise ValueError(f"{where} {meta_dir}: {' and '.join(bad)}: mean and std must be finite with std > 0")
    return mean, std


def read_stats_file(path: str, spec: DatasetSpec) -> np.ndarray:
    """The array of an existing statistics file ``path``, or a ``DatasetError`` (kind ``stats_shape``) when it is not
    a readable .npy file; ``stats_problems`` checks what it holds."""
    try:
        return read_npy_array(path, f"shape ({spec.file_dim},)")
    except ValueError as e:
        raise DatasetError(str(e), kind="stats_shape", path=path) from e


def _load_stat(path: str, spec: DatasetSpec, is_std: bool) -> np.ndarray:
    if not os.path.isfile(path):
        # A spec reading a leading slice of its files (t2m_67) cannot compute statistics that cover every column.
        full = full_width_names(spec)
        compute = (f"python prepare_data.py stats --dataset_name {full[0]} --data_root {os.path.dirname(path)}"
                   if full else "prepare_data.py stats with a dataset that reads every column")
        # The synthetic generator writes the statistics last: without them its clips and splits may be half made,
        # and computing statistics over them would make the folder look finished.
        source = (f"make the dataset again with python prepare_data.py synthetic --out {os.path.dirname(path)} (a "
                  f"run stopped before its end writes none), or for clips made otherwise compute both with {compute}"
                  if spec.name == "synthetic" else
                  f"copy the dataset's official file, or compute both with {compute}")
        raise DatasetError(f"{path}: missing; expected the dataset {'std' if is_std else 'mean'} of shape "
                           f"({spec.file_dim},): {source}", kind="missing_stats", path=path)
    values = read_stats_file(path, spec)
    problems = stats_problems(values, spec, path, is_std)
    if problems:
        raise problems[0]
    return np.ascontiguousarray(values[:spec.dim_pose], dtype=np.float32)


def load_mean_std(spec: DatasetSpec, data_root: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Read ``<root>/Mean.npy`` and ``<root>/Std.npy`` as float32 arrays of shape (D,), D = ``spec.dim_pose``.

    Files of width ``spec.file_dim`` are sliced to their first D entries (t2m_67 reads the 263-dim HumanML3D
    statistics); files already of width D are used as they are. Raises ``DatasetError`` naming the file for a missing
    file, a wrong size, or a non-finite / zero std entry (with its index and feature group), and (kind
    ``missing_root``) for a dataset folder that does not exist.
    """
    problem = data_root_problem(spec, data_root)
    if problem:
        raise problem
    root = data_root or spec.root
    mean = _load_stat(os.path.join(root, MEAN_FILE), spec, is_std=False)
    std = _load_stat(os.path.join(root, STD_FILE), spec, is_std=True)
    return mean, std


def statistics_match(mean_a: np.ndarray, std_a: np.ndarray, mean_b: np.ndarray, std_b: np.ndarray) -> bool:
    """Whether two (D,) mean/std pairs are the same statistics as saved: equal shapes and values within
    ``np.allclose`` (``utils.eval_protocol.same_statistics`` is the bit-exact test). Statistics of another feature
    width simply do not match (``np.allclose`` alone raises on them)."""
    pairs = [(np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64))
             for a, b in ((mean_a, mean_b), (std_a, std_b))]
    return all(a.shape == b.shape and np.allclose(a, b) for a, b in pairs)


def eval_normalization(mean: np.ndarray, std: np.ndarray, spec: DatasetSpec) -> tuple[np.ndarray, np.ndarray]:
    """The Guo et al. evaluator convention: (mean, std) with the std of ``spec.root_groups`` and
    ``spec.contact_group`` divided by ``spec.eval_feat_bias``. Shapes (D,) in, (D,) out; inputs are not modified.

    The training code of Guo et al. (and T2M-GPT, MoMask) divides those groups by ``feat_bias = 5``. The evaluator
    statistics actually shipped with the evaluators are Std.npy divided by about **25** on the same dims (MoMask
    applies the division twice through an in-place edit of a shared array), so they cannot be derived from this
    function: the evaluator's own ``mean.npy``/``std.npy`` must be loaded from its folder for evaluation. Datasets
    whose spec has ``eval_feat_bias == 1`` (t2m_67, MotionMillion, BEAT-X) get their statistics back unchanged.
    """
    return feat_bias_normalization(mean, std, spec, spec.eval_feat_bias, "eval_normalization")


def feat_bias_normalization(mean: np.ndarray, std: np.ndarray, spec: DatasetSpec, feat_bias: float,
                            who: str = "feat_bias_normalization") -> tuple[np.ndarray, np.ndarray]:
    """(mean, std) with the std of ``spec.root_groups`` and ``spec.contact_group`` divided by ``feat_bias`` (the Guo
    et al. feature bias; 1 returns copies of the inputs; another value for a dataset without those groups is a
    ValueError). Shapes (D,) in, (D,) out; inputs are not modified."""
    std = np.array(std, dtype=np.float32, copy=True)
    mean = np.array(mean, dtype=np.float32, copy=True)
    if std.shape != (spec.dim_pose,) or mean.shape != (spec.dim_pose,):
        raise ValueError(f"{who}: mean {mean.shape} and std {std.shape}; expected ({spec.dim_pose},) "
                         f"for dataset {spec.name!r}")
    if not (np.isfinite(feat_bias) and feat_bias > 0):
        raise ValueError(f"{who}: the feature bias must be > 0 and finite, got {feat_bias}")
    if feat_bias != 1.0:
        groups = list(spec.root_groups) + ([spec.contact_group] if spec.contact_group else [])
        if not groups:  # BEAT-X's rotations: the bias would change nothing, which the caller did not ask for
            raise ValueError(f"{who}: dataset {spec.name!r} has no root or foot-contact feature groups, so a feature "
                             f"bias of {feat_bias:g} would leave its statistics unchanged; use 1")
        for name in groups:
            std[spec.group(name)] /= feat_bias
    return mean, std


class Normalizer:
    """Z-normalisation with fixed statistics, for numpy arrays or torch tensors of shape (..., D)."""

    def __init__(self, mean: np.ndarray, std: np.ndarray) -> None:
        self.mean = np.asarray(mean, dtype=np.float32).reshape(-1)
        self.std = np.asarray(std, dtype=np.float32).reshape(-1)
        if self.mean.shape != self.std.shape:
            raise ValueError(f"Normalizer: mean {self.mean.shape} and std {self.std.shape} differ")
        if not np.all(np.isfinite(self.std)) or np.any(self.std <= 0):
            raise ValueError("Normalizer: std must be finite and positive in every feature")

    @property
    def dim(self) -> int:
        return self.mean.shape[0]

    def _stats(self, x: np.ndarray | torch.Tensor) -> tuple[np.ndarray | torch.Tensor, np.ndarray | torch.Tensor]:
        if x.shape[-1] != self.dim:
            raise ValueError(f"Normalizer: input has {x.shape[-1]} features in its last dim; expected {self.dim}")
        if isinstance(x, torch.Tensor):
            dtype = x.dtype if x.is_floating_point() else torch.float32
            return (torch.as_tensor(self.mean, dtype=dtype, device=x.device),
                    torch.as_tensor(self.std, dtype=dtype, device=x.device))
        return self.mean, self.std

    def transform(self, x: np.ndarray | torch.Tensor) -> np.ndarray | torch.Tensor:
        """(x - mean) / std for x of shape (..., D); same type (and device) as x."""
        mean, std = self._stats(x)
        return (x - mean) / std

    def inverse(self, x: np.ndarray | torch.Tensor) -> np.ndarray | torch.Tensor:
        """x * std + mean for x of shape (..., D); same type (and device) as x."""
        mean, std = self._stats(x)
        return x * std + mean
