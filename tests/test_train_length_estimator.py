"""train_length_estimator.py on the synthetic data: the estimator learns caption -> token-length class, and its
checkpoint rebuilds it without flags."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch

import train_length_estimator
from models.length_estimator import LengthEstimator
from models.text_encoders import CachedTextEncoder, build_text_encoder
from options.config import parse_with_config
from options.generator_options import get_train_length_estimator_parser
from utils.checkpoint import CheckpointError, load_checkpoint
from utils.dataset_specs import get_dataset_spec
from utils.length_data import caption_lengths
from utils.run_dir import RunDirError


@pytest.fixture(scope="module")
def encoder():
    """MiniLM built once for the module; the cache keeps caption embeddings across runs."""
    return CachedTextEncoder(build_text_encoder("minilm"))


def _args(synthetic_root, ckpt, *extra):
    return parse_with_config(get_train_length_estimator_parser(), [
        "--dataset_name", "synthetic", "--data_root", synthetic_root, "--checkpoints_dir", ckpt, "--batch_size", "32",
        "--num_workers", "0", "--lr", "2e-3", "--log_every", "5", "--eval_every", "20", "--save_every", "100", *extra])


def test_caption_lengths_cover_every_caption(synthetic_root):
    spec = get_dataset_spec("synthetic", synthetic_root)
    pairs = caption_lengths(spec, "train", synthetic_root, progress=False)
    assert len(pairs.captions) == len(pairs.lengths) > 64  # 64 training clips with 3+ captions each
    assert pairs.lengths.min() >= spec.min_motion_length and pairs.lengths.max() <= spec.max_motion_length
    assert len(set(pairs.lengths.tolist())) > 5


def test_length_estimator_trains_and_its_checkpoint_reloads(tmp_path, synthetic_root, encoder):
    ckpt = str(tmp_path / "ckpt")
    steps = 60
    train_length_estimator.main(_args(synthetic_root, ckpt, "--max_iters", str(steps)), text_encoder=encoder)
    root = os.path.join(ckpt, "synthetic", "length_estimator")
    for rel in ("opt.yaml", "model/latest.tar", "model/net_best_loss.tar", "model/train_log.jsonl"):
        assert os.path.isfile(os.path.join(root, rel)), rel
    with open(os.path.join(root, "model", "train_log.jsonl")) as f:
        losses = [json.loads(line)["loss"] for line in f]
    assert len(losses) == steps
    assert np.mean(losses[-10:]) < 0.8 * np.mean(losses[:10])
    assert losses[0] == pytest.approx(np.log(50), rel=0.1)  # uniform over 50 classes at the start

    state = load_checkpoint(os.path.join(root, "model", "latest.tar"))
    assert state["stage"] == "length_estimator" and state["model_name"] == "LengthEstimator"
    assert state["unit_length"] == 4 and state["step"] == steps
    assert state["text_encoder"] == {"name": "minilm", "dim": encoder.dim, "path": None}
    assert state["model_args"]["text_dim"] == encoder.dim and state["model_args"]["num_classes"] == 50
    assert state["dataset"]["name"] == "synthetic"
    model = LengthEstimator(**state["model_args"])
    model.load_state_dict(state["model"])
    assert set(state["model"]) == set(model.state_dict())
    model.eval()
    logits = model(encoder.encode(["a person walks forward slowly."]))
    assert logits.shape == (1, 50) and torch.isfinite(logits).all()
    assert 0.0 <= state["metrics"]["accuracy"] <= 1.0 and np.isfinite(state["metrics"]["loss"])

    config_path = os.path.join(root, "opt.yaml")
    with open(config_path) as f:
        config = f.read()
    with pytest.raises(RunDirError, match="--is_continue"):
        train_length_estimator.main(_args(synthetic_root, ckpt, "--max_iters", str(steps)), text_encoder=encoder)
    with pytest.raises(CheckpointError, match="model_args"):  # refused before opt.yaml is rewritten
        train_length_estimator.main(_args(synthetic_root, ckpt, "--max_iters", str(steps + 5), "--hidden_dim", "64",
                                          "--is_continue"), text_encoder=encoder)
    with open(config_path) as f:
        assert f.read() == config


def test_unit_length_sets_the_classes(tmp_path, synthetic_root, encoder):
    ckpt = str(tmp_path / "ckpt")
    train_length_estimator.main(_args(synthetic_root, ckpt, "--max_iters", "2", "--unit_length", "8", "--name",
                                      "len8"), text_encoder=encoder)
    state = load_checkpoint(os.path.join(ckpt, "synthetic", "len8", "model", "latest.tar"))
    assert state["unit_length"] == 8 and state["model_args"]["num_classes"] == 196 // 8 + 1


@pytest.mark.parametrize("unit_length", ["0", "-4"])
def test_a_unit_length_below_one_is_refused(tmp_path, synthetic_root, unit_length):
    """--unit_length 0 is a typed value, not a blank: refused rather than replaced by the spec's."""
    with pytest.raises(ValueError, match=f"--unit_length must be >= 1, got {unit_length}"):
        train_length_estimator.main(_args(synthetic_root, str(tmp_path / "ckpt"), "--max_iters", "2",
                                          "--unit_length", unit_length))


def test_a_unit_length_longer_than_the_shortest_caption_names_the_flag(tmp_path, synthetic_root, encoder):
    # A caption shorter than one token has no class; the error said only "lengths_to_classes: frame lengths ...".
    with pytest.raises(ValueError, match=r"--unit_length 150: the train split has captions of \d+ frames, shorter "
                                         r"than one token"):
        train_length_estimator.main(_args(synthetic_root, str(tmp_path / "ckpt"), "--max_iters", "2",
                                          "--unit_length", "150"), text_encoder=encoder)


def test_resume_with_another_unit_length_of_as_many_classes_is_refused(tmp_path, synthetic_root, encoder):
    """--unit_length 33 and 34 both give 6 classes on 196 frames, so the model arguments agree; the classes mean
    other lengths, and the resume is refused naming the flag, before opt.yaml is rewritten."""
    ckpt = str(tmp_path / "ckpt")
    train_length_estimator.main(_args(synthetic_root, ckpt, "--max_iters", "2", "--unit_length", "33"),
                                text_encoder=encoder)
    config_path = os.path.join(ckpt, "synthetic", "length_estimator", "opt.yaml")
    with open(config_path) as f:
        config = f.read()
    with pytest.raises(CheckpointError, match="--unit_length is 33 in the run being resumed but 34 now"):
        train_length_estimator.main(_args(synthetic_root, ckpt, "--max_iters", "4", "--unit_length", "34",
                                          "--is_continue"), text_encoder=encoder)
    with open(config_path) as f:
        assert f.read() == config


def test_resume_is_bitwise_exact(tmp_path, synthetic_root, encoder):
    # 12 steps in one go and 7 + 5 resumed (a stop between two saves, mid-epoch, with dropout) give the same weights,
    # optimizer state and log.
    def run(ckpt, *steps):
        for i, n in enumerate(steps):
            extra = ("--is_continue",) if i else ()
            train_length_estimator.main(_args(synthetic_root, ckpt, "--max_iters", str(n), "--save_every", "1",
                                              *extra), text_encoder=encoder)
        model_dir = os.path.join(ckpt, "synthetic", "length_estimator", "model")
        with open(os.path.join(model_dir, "train_log.jsonl")) as f:
            losses = [json.loads(line)["loss"] for line in f]
        return load_checkpoint(os.path.join(model_dir, "latest.tar")), losses

    whole, whole_log = run(str(tmp_path / "whole"), 12)
    resumed, resumed_log = run(str(tmp_path / "resumed"), 7, 12)
    assert whole["step"] == resumed["step"] == 12 and whole_log == resumed_log
    for key, value in whole["model"].items():
        assert torch.equal(value, resumed["model"][key]), key
    assert whole["optimizer"]["state"] and len(whole["optimizer"]["state"]) == len(resumed["optimizer"]["state"])
    for a, b in zip(whole["optimizer"]["state"].values(), resumed["optimizer"]["state"].values()):
        assert all(torch.equal(a[k], b[k]) for k in a), "optimizer state"


@pytest.mark.parametrize("hidden_dim", ["2", "7", "0", "-8", "12.5"])
def test_a_hidden_dim_below_eight_is_an_argument_error(tmp_path, synthetic_root, capsys, hidden_dim):
    # 2 trained an estimator that ignores the text (one feature in its last LayerNorm); -8 failed with a raw
    # RuntimeError after every caption was embedded.
    with pytest.raises(SystemExit):
        _args(synthetic_root, str(tmp_path / "ckpt"), "--hidden_dim", hidden_dim)
    assert f"argument --hidden_dim: expected a whole number >= 8, got '{hidden_dim}'" in capsys.readouterr().err
    assert _args(synthetic_root, str(tmp_path / "ckpt"), "--hidden_dim", "8").hidden_dim == 8


def test_a_preset_hidden_dim_below_eight_names_the_preset(tmp_path, synthetic_root, capsys):
    preset = tmp_path / "narrow.yaml"
    preset.write_text("hidden_dim: 4\n")
    with pytest.raises(SystemExit):
        _args(synthetic_root, str(tmp_path / "ckpt"), "--config", str(preset))
    assert "narrow.yaml: hidden_dim: cannot read '4' as whole number >= 8: expected a whole number >= 8, got '4'" \
        in capsys.readouterr().err


def test_caption_lengths_are_capped_at_max_motion_length(tmp_path):
    from layout_helpers import write_dataset

    write_dataset(tmp_path, {"a": 199, "b": 50}, {"train": ["a", "b"]})
    spec = get_dataset_spec("t2m", str(tmp_path))
    pairs = caption_lengths(spec, "train", str(tmp_path), progress=False)
    assert sorted(pairs.lengths.tolist()) == [50, spec.max_motion_length]
