"""The length estimator's data (``utils.length_data``) and what ``train_length_estimator.py`` does with it: the
refused splits and unit lengths, validation on the val split with the best-loss file, epochs counted in training
captions, the caption cache, and a CLIP run's recorded weights and resume check. A hashed stand-in encoder replaces
the sentence encoder (no model to load)."""

from __future__ import annotations

import os
import re
import shutil
import zlib

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

import train_length_estimator
from models.length_estimator import LengthEstimator, lengths_to_classes
from models.text_encoders import TextEncoder
from options.config import parse_with_config
from options.generator_options import get_train_length_estimator_parser
from utils.checkpoint import CheckpointError, load_checkpoint
from utils.dataset_specs import get_dataset_spec
from utils.length_data import EmbeddingClassDataset, caption_lengths


class HashedTextEncoder(TextEncoder):
    """A stand-in text encoder: a fixed pseudo-random 16-d vector per caption (no model to load)."""

    dim = 16

    def __init__(self, name: str = "minilm") -> None:
        super().__init__()
        self.name = name

    def encode(self, texts: list[str]) -> torch.Tensor:
        if not texts:
            return torch.zeros(0, 16)
        return torch.stack([torch.randn(16, generator=torch.Generator().manual_seed(zlib.crc32(t.encode())))
                            for t in texts])


def _train(root: str, ckpt, *extra: str, encoder=None, steps: str | None = "2"):
    argv = ["--dataset_name", "synthetic", "--data_root", root, "--checkpoints_dir", str(ckpt), "--batch_size", "16",
            "--num_workers", "0", "--lr", "2e-3", "--log_every", "5", "--eval_every", "5", "--save_every", "100",
            *(("--max_iters", steps) if steps else ()), *extra]
    args = parse_with_config(get_train_length_estimator_parser(), argv)
    return train_length_estimator.main(args, text_encoder=encoder or HashedTextEncoder())


def test_embedding_class_dataset_holds_float_embeddings_and_long_classes():
    data = EmbeddingClassDataset(torch.arange(12, dtype=torch.float64).reshape(3, 4), torch.tensor([5, 6, 7]))
    assert len(data) == 3 and data.embeddings.dtype == torch.float32 and data.classes.dtype == torch.long
    emb, cls = data[2]
    assert emb.tolist() == [8.0, 9.0, 10.0, 11.0] and int(cls) == 7
    with pytest.raises(ValueError, match=r"expected embeddings \(M, E\) and classes \(M,\), got \(3, 4\) and \(2,\)"):
        EmbeddingClassDataset(torch.zeros(3, 4), torch.zeros(2))


def test_a_split_without_captions_is_refused(tmp_path, synthetic_root):
    root = tmp_path / "Synthetic"
    shutil.copytree(synthetic_root, root)
    for name in (root / "val.txt").read_text().split():
        (root / "texts" / f"{name}.txt").write_text("")
    with pytest.raises(ValueError, match=r"synthetic val: no caption with a usable motion in "):
        caption_lengths(get_dataset_spec("synthetic", str(root)), "val", str(root), progress=False)


def test_a_too_long_unit_length_names_the_shortest_caption(tmp_path, synthetic_root):
    shortest = int(caption_lengths(get_dataset_spec("synthetic", synthetic_root), "train", synthetic_root,
                                   progress=False).lengths.min())
    with pytest.raises(ValueError, match=rf"--unit_length 150: the train split has captions of {shortest} frames, "
                                         r"shorter than one token; .* \(lengths_to_classes: frame lengths"):
        _train(synthetic_root, tmp_path / "ckpt", "--unit_length", "150")


def test_validation_scores_the_val_split_and_the_best_file_holds_the_lowest_loss(tmp_path, synthetic_root):
    encoder = HashedTextEncoder()
    result = _train(synthetic_root, tmp_path / "ckpt", "--dropout", "0.5", encoder=encoder, steps="20")
    run = tmp_path / "ckpt" / "synthetic" / "length_estimator"
    log = (run / "train.log").read_text()
    val = caption_lengths(get_dataset_spec("synthetic", synthetic_root), "val", synthetic_root, progress=False)
    assert re.search(rf"\d+ training and {len(val.captions)} validation captions", log)
    losses = [float(v) for v in re.findall(r"validation at step \d+: loss ([0-9.]+)", log)]
    assert len(losses) == 4
    best = load_checkpoint(str(run / "model" / "net_best_loss.tar"))
    assert best["metrics"]["loss"] == pytest.approx(min(losses), abs=1e-4) == result.best_value
    assert best["model_args"]["dropout"] == 0.5
    model = LengthEstimator(**best["model_args"])
    model.load_state_dict(best["model"])
    with torch.no_grad():
        logits = model.eval()(encoder.encode(val.captions))
    classes = lengths_to_classes(torch.from_numpy(val.lengths), 4, 50)
    assert best["metrics"]["loss"] == pytest.approx(float(F.cross_entropy(logits, classes)), rel=1e-5)
    assert best["metrics"]["accuracy"] == pytest.approx(float((logits.argmax(-1) == classes).float().mean()))


def test_epochs_count_the_training_captions(tmp_path, synthetic_root):
    train = caption_lengths(get_dataset_spec("synthetic", synthetic_root), "train", synthetic_root, progress=False)
    assert _train(synthetic_root, tmp_path / "ckpt", "--epoch", "1", steps=None).step == len(train.captions) // 16


def test_the_caption_cache_is_written_to_text_cache(tmp_path, synthetic_root):
    cache = tmp_path / "captions.npz"
    _train(synthetic_root, tmp_path / "ckpt", "--text_cache", str(cache))
    with np.load(cache, allow_pickle=False) as saved:
        assert saved["embeddings"].shape == (len(saved["captions"]), 16) and len(saved["captions"]) > 64


def test_a_clip_run_records_its_weights_and_resuming_with_another_encoder_is_refused(tmp_path, synthetic_root):
    weights = tmp_path / "ViT-B-32.pt"
    _train(synthetic_root, tmp_path / "ckpt", "--text_encoder", "clip", "--clip_path", str(weights),
           encoder=HashedTextEncoder("clip"))
    latest = tmp_path / "ckpt" / "synthetic" / "length_estimator" / "model" / "latest.tar"
    assert load_checkpoint(str(latest))["text_encoder"] == {"name": "clip", "dim": 16,
                                                            "path": os.path.abspath(weights)}
    with pytest.raises(CheckpointError, match=r"latest.tar: --text_encoder is 'clip' in the run being resumed but "
                                              r"'minilm' now"):
        _train(synthetic_root, tmp_path / "ckpt", "--is_continue", steps="4")


def test_training_logs_the_batch_accuracy(tmp_path, synthetic_root):
    """TensorBoard's Train/accuracy is the share of the batch whose length class was predicted: a fresh estimator
    over 50 classes gets few right."""
    _train(synthetic_root, tmp_path / "ckpt", "--log_every", "1")
    events = EventAccumulator(str(tmp_path / "ckpt" / "synthetic" / "length_estimator" / "model"))
    events.Reload()
    accuracy = [e.value for e in events.Scalars("Train/accuracy")]
    assert len(accuracy) == 2 and all(0.0 <= a < 0.5 for a in accuracy), accuracy
