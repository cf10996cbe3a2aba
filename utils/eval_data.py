"""The evaluation data of the Guo et al. protocol: ``EvalLoader`` (a split read through an evaluator's statistics and
word vectors, with the protocol's seeded batches) and what builds one (``build_eval_loader``, and
``load_validation_evaluator`` for a training script's ``--need_evaluation``). ``utils.eval_protocol`` runs the
protocol over it.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator

import torch

from utils.batching import EpochBatchSampler, epoch_batches
from utils.checkpoint import digest
from utils.dataset_specs import DatasetSpec, get_dataset_spec
from utils.datasets import EvalBatch, Text2MotionEvalDataset, collate_eval
from utils.evaluator import EvaluatorWrapper
from utils.paths import folder_flags
from utils.word_vectorizer import vectorizer_digest

logger = logging.getLogger(__name__)

PROTOCOL_VERSION = 2  # 2: motion embeddings through the folded motion GRU (equal to 1 within float32 rounding)
EVAL_BATCH_SIZE = 32
REFERENCE_MIN_LENGTH = 20  # Text2MotionDatasetV2 calls reset_max_len(20): shorter samples are never served


# ---------------------------------------------------------------------------------------------------------------------
# Data
# ---------------------------------------------------------------------------------------------------------------------

class EvalSplitTooSmall(ValueError):
    """An evaluation split with fewer samples than one protocol batch: R-precision cannot rank among
    ``batch_size`` motions."""


class EvalLoader:
    """Replication batches of an evaluation dataset: ``batches(seed)`` yields ``EvalBatch`` es of ``batch_size``.

    The last incomplete batch is dropped (the reference's ``drop_last=True``); the order and every sample's caption
    and crop are a function of ``seed`` (see the module docstring). ``fingerprint`` identifies the data for the GT
    cache.
    """

    def __init__(self, dataset: Text2MotionEvalDataset, batch_size: int = EVAL_BATCH_SIZE,
                 num_workers: int = 0) -> None:
        if len(dataset) < batch_size:
            raise EvalSplitTooSmall(f"{dataset.spec.name} {dataset.split}: {len(dataset)} evaluation samples, fewer "
                                    f"than one batch of {batch_size}; the protocol needs full batches (R-precision "
                                    f"ranks each caption among {batch_size} motions)")
        self.dataset = dataset
        self.batch_size = int(batch_size)
        self.num_workers = int(num_workers)
        self._fingerprint: str | None = None

    @property
    def split(self) -> str:
        """The dataset split the batches come from."""
        return self.dataset.split

    @property
    def spec(self) -> DatasetSpec:
        """The dataset's specification."""
        return self.dataset.spec

    @property
    def num_batches(self) -> int:
        """Full batches per replication."""
        return len(self.dataset) // self.batch_size

    @property
    def num_samples(self) -> int:
        """Samples per replication (full batches only)."""
        return self.num_batches * self.batch_size

    def __len__(self) -> int:
        """Batches per replication."""
        return self.num_batches

    def batches(self, seed: int) -> Iterator[EvalBatch]:
        """The batches of the replication with ``seed``; the caller's global RNG states are left untouched."""
        sampler = EpochBatchSampler(len(self.dataset), self.batch_size, int(seed), 0)
        yield from epoch_batches(self.dataset, sampler, collate_eval, self.num_workers, pin_memory=False)

    @property
    def fingerprint(self) -> str:
        """SHA-256 of everything that decides the GT batches except the seed (computed once)."""
        if self._fingerprint is None:
            ds = self.dataset
            spec = ds.spec.to_dict()
            for name in ("root", "metres_per_unit"):  # moving the data folder, or naming its units, changes no batch
                spec.pop(name, None)
            samples = ds.samples
            h = digest(PROTOCOL_VERSION, spec, ds.split, ds.index.content_name, self.batch_size,
                     ds.max_text_len, ds.unit_length, ds.max_motion_length, ds.pointer, ds.mean, ds.std,
                     samples.rows, samples.starts, samples.stops, vectorizer_digest(ds.word_vectorizer))
            for captions in samples.captions:
                h.update(json.dumps([list(c) for c in captions]).encode())
            self._fingerprint = h.hexdigest()
        return self._fingerprint


def build_eval_loader(evaluator: EvaluatorWrapper, dataset: str | DatasetSpec, split: str = "test",
                      data_root: str | None = None, glove_dir: str | None = None,
                      batch_size: int = EVAL_BATCH_SIZE, num_workers: int = 0, cache_dir: str | None = None,
                      progress: bool = True) -> EvalLoader:
    """The protocol's loader for ``dataset`` (name or spec): ``split`` normalised with the evaluator statistics and
    read through the evaluator's word vectors (its learned vocabulary, or GloVe from ``glove_dir``)."""
    spec = get_dataset_spec(dataset, data_root) if isinstance(dataset, str) else dataset
    if spec.name != evaluator.dataset_name:
        raise ValueError(f"the evaluator belongs to dataset {evaluator.dataset_name!r} but the evaluation data is "
                         f"{spec.name!r}; load the evaluator trained for {spec.name!r}")
    if spec.dim_pose != evaluator.dim_pose:
        raise ValueError(f"dataset {spec.name!r} has {spec.dim_pose} features but the evaluator "
                         f"({evaluator.path or 'in memory'}) takes {evaluator.dim_pose}")
    wv = evaluator.word_vectorizer(glove_dir)
    ds = Text2MotionEvalDataset(spec, split, evaluator.mean, evaluator.std, wv, data_root=data_root,
                                cache_dir=cache_dir, progress=progress)
    if REFERENCE_MIN_LENGTH <= ds.max_motion_length:
        ds.reset_max_len(REFERENCE_MIN_LENGTH)
    return EvalLoader(ds, batch_size=batch_size, num_workers=num_workers)


def load_validation_evaluator(evaluator_dir: str | None, checkpoints_dir: str, dataset_name: str, spec: DatasetSpec,
                              data_root: str | None = None, glove_dir: str | None = None,
                              device: str | torch.device = "cpu"
                              ) -> tuple[EvaluatorWrapper, EvalLoader] | tuple[None, None]:
    """(evaluator, loader of the val split) for a training script's ``--need_evaluation``: the evaluator of
    ``evaluator_dir`` (default ``<checkpoints_dir>/<dataset_name>/text_mot_match``, ``dataset_name`` as given on the
    command line, as the evaluation scripts look for it), checked now rather than at the first validation (SystemExit
    with the commands to get one). A val split of fewer than 32 evaluation samples gives batches of what it has, with
    a warning: validation only ranks checkpoints, and a noisier FID still does. One sample is refused (SystemExit):
    it has no FID.

    ``(None, None)`` on every process of a multi-process launch but the first: only the first validates, and the
    others need neither the evaluator nor the word vectors and val data its loader holds (GloVe alone is about
    0.5 GB). A missing evaluator still stops the launch, from the first process."""
    from utils.checkpoint import CheckpointError
    from utils.evaluator import load_evaluator
    from utils.launch_env import is_first_process

    if not is_first_process():
        return None, None
    folder = evaluator_dir or os.path.join(checkpoints_dir, dataset_name, "text_mot_match")
    try:
        evaluator = load_evaluator(folder, dataset_name, device, data_root=data_root)
    except (CheckpointError, FileNotFoundError, ValueError) as e:
        raise SystemExit(f"--need_evaluation: no usable evaluator for dataset {dataset_name!r} ({e}). Train one with: "
                         f"python train_evaluator.py --dataset_name {dataset_name}"
                         f"{folder_flags(checkpoints_dir, data_root)}, point --evaluator_dir at one, or "
                         f"drop --need_evaluation") from e
    loader = build_eval_loader(evaluator, spec, "val", data_root=data_root, glove_dir=glove_dir, batch_size=1)
    batch = min(EVAL_BATCH_SIZE, len(loader.dataset))
    if batch < 2:  # refused now, not at the first validation after hours of training
        raise SystemExit(f"--need_evaluation: the {spec.name} val split has {batch} evaluation sample; the validation "
                         "FID compares covariances, which need at least 2. Add val clips or drop --need_evaluation")
    if batch < EVAL_BATCH_SIZE:
        logger.warning("the val split has only %d evaluation samples: validation batches of %d (R-precision chance "
                       "1/%d, not 1/%d)", batch, batch, batch, EVAL_BATCH_SIZE)
    return evaluator, EvalLoader(loader.dataset, batch_size=batch)
