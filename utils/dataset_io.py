"""Writing a dataset in the HumanML3D layout: per-clip features, joints and captions, split files and statistics.

``write_motion`` turns one clip of SMPL-22 joints into ``new_joint_vecs/<id>.npy`` (263-dim features),
``new_joints/<id>.npy`` and ``texts/<id>.txt``; ``split_groups``/``write_split_files`` assign ids to
train/val/test, keeping groups (the chunks of one clip) together; ``write_mean_std`` writes ``Mean.npy``/``Std.npy``
the HumanML3D way. Used by the BVH importer (``utils.bvh``) and the synthetic dataset (``utils.synthetic``).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
from collections.abc import Iterable, Sequence

import numpy as np

from utils.atomic_io import atomic_write
from utils.dataset_specs import DatasetSpec
from utils.motion_process import extract_features, recover_from_ric

logger = logging.getLogger(__name__)

SPLIT_FRACTIONS = (0.80, 0.05, 0.15)  # train / val / test, as HumanML3D
# From this many groups on, split_groups gives val and test one group each at least; fewer leave them empty.
MIN_SPLIT_GROUPS = 3


def _keyed_digest(seed: int, key: str, size: int) -> bytes:
    """BLAKE2b of (``seed``, ``key``): ``size`` bytes that depend on the two alone."""
    return hashlib.blake2b(f"{seed}\0{key}".encode(), digest_size=size).digest()


def keyed_order(keys: Sequence[str], seed: int) -> np.ndarray:
    """Indices that rank ``keys`` by a hash of (``seed``, key): a random order in which each key's place depends on
    the keys and the seed alone, not on the order they come in or on any other random draw."""
    digests = [_keyed_digest(seed, key, 8) for key in keys]
    return np.array(sorted(range(len(keys)), key=lambda i: (digests[i], keys[i])), dtype=np.int64)


def keyed_rng(seed: int, key: str) -> np.random.Generator:
    """A generator of its own for ``key`` under ``seed``: what one clip draws does not depend on the clips before
    it."""
    return np.random.default_rng(np.frombuffer(_keyed_digest(seed, key, 16), dtype=np.uint32))


def split_groups(groups: Sequence[Sequence[str]], order: Sequence[int],
                 fractions: tuple[float, float, float] = SPLIT_FRACTIONS) -> dict[str, list[str]]:
    """Assign groups of ids (the chunks of one clip stay together) to train/val/test by ``fractions``.

    ``order`` ranks the groups (``keyed_order``, or a random permutation): the first go to val, the next to test, the
    rest to train. Val and test get at least one group each when there are ``MIN_SPLIT_GROUPS`` (three) or more
    groups. Returns the three splits plus ``train_val`` and ``all`` (lists of ids).
    """
    n = len(groups)
    order = np.asarray(order, dtype=np.int64)
    if sorted(order.tolist()) != list(range(n)):
        raise ValueError(f"split_groups: order must hold each of the {n} group indices once, got {order.tolist()}")
    n_val = int(round(fractions[1] * n))
    n_test = int(round(fractions[2] * n))
    if n >= MIN_SPLIT_GROUPS:
        n_val, n_test = max(n_val, 1), max(n_test, 1)
    splits = {"val": order[:n_val], "test": order[n_val:n_val + n_test], "train": order[n_val + n_test:]}
    out = {k: sorted(i for g in v for i in groups[g]) for k, v in splits.items()}
    out["train_val"] = sorted(out["train"] + out["val"])
    out["all"] = sorted(i for g in groups for i in g)
    return out


def write_split_files(out_dir: str, splits: dict[str, list[str]]) -> None:
    """Write ``<split>.txt`` (one id per line) for every split, each whole or not at all: a split file cut short by a
    kill would load as a smaller split without any error."""
    for name, ids in splits.items():
        with atomic_write(os.path.join(out_dir, f"{name}.txt"), "w", encoding="utf-8") as f:
            f.write("".join(f"{i}\n" for i in ids))


def humanml3d_mean_std(feature_files: Iterable[str], spec: DatasetSpec) -> tuple[np.ndarray, np.ndarray]:
    """Dataset mean and std (D,) the HumanML3D way: per-dimension mean over all frames of all files, and the std
    replaced by its mean within each feature group of ``spec.layout``."""
    total = np.zeros(spec.file_dim)
    total_sq = np.zeros(spec.file_dim)
    count = 0
    for path in feature_files:
        x = np.load(path).astype(np.float64)
        total += x.sum(0)
        total_sq += (x ** 2).sum(0)
        count += x.shape[0]
    if count < 2:
        raise ValueError(f"cannot compute dataset statistics from {count} frames")
    mean = total / count
    std = np.sqrt(np.maximum(total_sq / count - mean ** 2, 0.0))
    for group in spec.layout:
        std[group.start:group.stop] = std[group.start:group.stop].mean()
    if np.any(std <= 1e-8):
        zero = [g.name for g in spec.layout if std[g.start] <= 1e-8]
        logger.warning("feature groups %s do not vary across the dataset; their std is set to 1", zero)
        std[std <= 1e-8] = 1.0
    return mean.astype(np.float32), std.astype(np.float32)


def save_mean_std(out_dir: str, mean: np.ndarray, std: np.ndarray) -> None:
    """Write ``mean`` and ``std`` (D,) as ``Mean.npy``/``Std.npy`` in ``out_dir``: both are written before either is
    moved into place, Std.npy first and Mean.npy last, so a present Mean.npy marks a complete pair (the quick
    pipelines take it as "the data is made"). A symbolic link in their place (to the official statistics, say) is
    replaced by the new file; the file it links to is left as it is."""
    mean_path = os.path.join(out_dir, "Mean.npy")
    with (atomic_write(mean_path, "wb", follow_symlinks=False) as mean_file,
          atomic_write(os.path.join(out_dir, "Std.npy"), "wb", follow_symlinks=False) as std_file):
        np.save(mean_file, mean)
        np.save(std_file, std)
        # The pair cannot be moved in one step, and an old Mean.npy beside the new Std.npy would have the right shape
        # and finite values: it would normalise with mismatched statistics without any error. Without it, a stop
        # between the moves leaves Mean.npy missing, which the loaders report.
        with contextlib.suppress(FileNotFoundError):
            os.remove(mean_path)
    # The blocks end innermost first: Std.npy is moved into place, then Mean.npy.


def write_mean_std(out_dir: str, ids: Sequence[str], spec: DatasetSpec) -> None:
    """Compute ``Mean.npy``/``Std.npy`` over ``new_joint_vecs/<id>.npy`` of ``ids`` and write them to ``out_dir``."""
    mean, std = humanml3d_mean_std((os.path.join(out_dir, "new_joint_vecs", f"{i}.npy") for i in ids), spec)
    save_mean_std(out_dir, mean, std)


def make_layout_dirs(out_dir: str) -> None:
    """Create ``new_joint_vecs/``, ``new_joints/`` and ``texts/`` under ``out_dir``."""
    for sub in ("new_joint_vecs", "new_joints", "texts"):
        os.makedirs(os.path.join(out_dir, sub), exist_ok=True)


def write_motion(out_dir: str, clip_id: str, joints: np.ndarray, caption_lines: Sequence[str],
                 fps: float = 20.0) -> np.ndarray:
    """Write one clip: features of joints (T, 22, 3) at ``fps`` -> ``new_joint_vecs`` (T-1, 263) (foot contacts at
    HumanML3D's foot speed, ``feet_threshold``), their ``recover_from_ric`` joints -> ``new_joints`` (T-1, 22, 3), and
    ``texts/<id>.txt``. An id with ``/`` gets its sub-folders. Returns the features.

    The files are written in place: a clip cut short by a stop fails to load with a ``DatasetError`` naming its file
    (``utils.motion_files.open_npy``), and the dataset's ``Mean.npy``, written after every clip, is missing, so the
    run does not look finished. Temporaries would cost an fsync per file and leave files behind after a kill."""
    features = extract_features(joints, fps=fps)
    if not np.all(np.isfinite(features)):
        raise ValueError(f"clip {clip_id!r}: feature extraction produced non-finite values")
    for sub in ("new_joint_vecs", "new_joints", "texts"):
        os.makedirs(os.path.dirname(os.path.join(out_dir, sub, clip_id)), exist_ok=True)
    np.save(os.path.join(out_dir, "new_joint_vecs", f"{clip_id}.npy"), features)
    np.save(os.path.join(out_dir, "new_joints", f"{clip_id}.npy"), recover_from_ric(features, 22).astype(np.float32))
    with open(os.path.join(out_dir, "texts", f"{clip_id}.txt"), "w", encoding="utf-8") as f:
        f.write("".join(line + "\n" for line in caption_lines))
    return features
