"""MotionMillion's FSQ tokenizer recipe end to end on 272-dim features of the synthetic motions.

The preset (window 96, down_t 1, LayerNorm, levels [8, 8, 8, 5, 5, 5]) trains through train_vq.py's ``main`` with the
tiny registry entry, and the reconstructions are scored with both MPJPE conventions: per frame (MoMask / MARDM: sum
over all poses / number of poses) and per sequence (MotionMillion: mean within each sequence, then over sequences).
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np
import pytest
import torch

import train_vq
from models import build_tokenizer, load_tokenizer
from models.tokenizers import VQ_MODELS
from options.config import load_config, parse_with_config
from options.tokenizer_options import get_train_vq_parser
from utils.checkpoint import load_checkpoint
from utils.metrics import calculate_mpjpe, calculate_mpjpe_per_sequence
from utils.motion_process import extract_features_272, joints_fps_resample, recover_from_272

PRESET = Path(__file__).resolve().parents[1] / "options" / "configs" / "motionmillion_fsq.yaml"
CLIPS = 36  # synthetic clips turned into 272-dim features (of the 80 in the session dataset)


def mpjpe_report(pred_joints: np.ndarray, gt_joints: np.ndarray, lengths: np.ndarray) -> dict[str, float]:
    """Root-aligned MPJPE in mm of joints ``(B, T, J, 3)`` (metres) over the first ``lengths (B,)`` frames: per frame
    (every valid pose weighs the same) and per sequence (every sequence weighs the same)."""
    return {"mpjpe_per_frame_mm": 1000.0 * calculate_mpjpe(pred_joints, gt_joints, lengths),
            "mpjpe_per_sequence_mm": 1000.0 * float(calculate_mpjpe_per_sequence(pred_joints, gt_joints,
                                                                                  lengths).mean())}


@pytest.fixture(scope="module")
def mm_root(synthetic_root, tmp_path_factory) -> str:
    """272-dim features of the synthetic joints resampled to 30 fps: long clips train, two validate, a mix of lengths
    tests."""
    root = tmp_path_factory.mktemp("mm")
    (root / "new_joint_vecs").mkdir()
    ids = sorted(f[:-4] for f in os.listdir(os.path.join(synthetic_root, "new_joints")))[:CLIPS]
    lengths = {}
    for clip in ids:
        joints = joints_fps_resample(np.load(os.path.join(synthetic_root, "new_joints", f"{clip}.npy")), 20.0, 30.0)
        features = extract_features_272(joints)
        np.save(root / "new_joint_vecs" / f"{clip}.npy", features)
        lengths[clip] = features.shape[0]
    long = [c for c in ids if lengths[c] >= 96]
    (root / "train.txt").write_text("\n".join(long[:-2]))
    (root / "val.txt").write_text("\n".join(long[-2:]))
    by_length = sorted(ids, key=lengths.get)
    (root / "test.txt").write_text("\n".join(by_length[::6]))
    stacked = np.concatenate([np.load(root / "new_joint_vecs" / f"{c}.npy") for c in long[:-2]])
    np.save(root / "Mean.npy", stacked.mean(0).astype(np.float32))
    np.save(root / "Std.npy", (stacked.std(0) + 1e-3).astype(np.float32))
    return str(root)


def test_preset_is_the_motionmillion_recipe() -> None:
    preset = load_config(str(PRESET))
    assert preset["dataset_name"] == "motionmillion" and preset["model"] == "FSQ_MotionMillion"
    assert preset["window_size"] == 96 and preset["aux_loss_joints"] == 0.5 and preset["recons_loss"] == "l1_smooth"
    recipe = VQ_MODELS["FSQ_MotionMillion"].keywords
    assert recipe["down_t"] == 1 and recipe["norm"] == "LN" and recipe["levels"] == [8, 8, 8, 5, 5, 5]
    tiny = VQ_MODELS["FSQ_MotionMillion_Tiny"].keywords
    assert tiny["down_t"] == 1 and tiny["norm"] == "LN" and tiny["input_width"] == 272
    with torch.device("meta"):
        model = build_tokenizer("FSQ_MotionMillion")
    assert model.unit_length == 2 and model.codebook_size == 64_000 and model.input_width == 272


def test_mpjpe_conventions_differ_on_unequal_lengths() -> None:
    # Two sequences padded to 40 frames: 10 frames off by 10 mm, 40 frames off by 30 mm (every non-root joint).
    gt = np.zeros((2, 40, 22, 3))
    pred = gt.copy()
    pred[0, :, 1:, 0] = 0.010
    pred[1, :, 1:, 0] = 0.030
    pred[0, 10:] = 1.0  # padding beyond the length must not count
    report = mpjpe_report(pred, gt, np.array([10, 40]))
    per_joint = 21 / 22  # the root joint has zero error after root alignment
    assert report["mpjpe_per_frame_mm"] == pytest.approx((10 * 10 + 40 * 30) / 50 * per_joint)
    assert report["mpjpe_per_sequence_mm"] == pytest.approx((10 + 30) / 2 * per_joint)
    equal = mpjpe_report(pred[:, :10], gt[:, :10], np.array([10, 10]))
    assert equal["mpjpe_per_frame_mm"] == pytest.approx(equal["mpjpe_per_sequence_mm"])


def test_tiny_motionmillion_tokenizer_trains_and_is_scored(mm_root, tmp_path) -> None:
    ckpt = str(tmp_path / "ckpt")
    args = parse_with_config(get_train_vq_parser(), [
        "--config", str(PRESET), "--model", "FSQ_MotionMillion_Tiny", "--name", "mm_tiny", "--data_root", mm_root,
        "--checkpoints_dir", ckpt, "--max_iters", "40", "--batch_size", "8", "--num_workers", "0", "--lr", "2e-3",
        "--warm_up_iter", "5", "--milestones", "1000", "--log_every", "5", "--save_every", "40", "--eval_every", "40",
        "--val_batches", "1"])
    assert args.window_size == 96 and args.dataset_name == "motionmillion"
    train_vq.main(args)
    run = Path(ckpt) / "motionmillion" / "mm_tiny"
    with open(run / "model" / "train_log.jsonl") as f:
        losses = [json.loads(line)["loss"] for line in f]
    assert len(losses) == 40 and np.mean(losses[-8:]) < np.mean(losses[:8])
    state = load_checkpoint(str(run / "model" / "latest.tar"))
    assert state["model_args"]["down_t"] == 1 and state["model_args"]["norm"] == "LN"
    assert state["config"]["window_size"] == 96 and math.isfinite(state["metrics"]["mpjpe_mm"])

    # Whole test sequences of different lengths, reconstructed one at a time (batch 1, as MotionMillion evaluates).
    tokenizer = load_tokenizer(str(run / "model" / "latest.tar"), model_name="FSQ_MotionMillion_Tiny")
    mean, std = state["dataset"]["mean"].numpy(), state["dataset"]["std"].numpy()
    ids = (Path(mm_root) / "test.txt").read_text().split()
    gt_joints, rec_joints, lengths = [], [], []
    for clip in ids:
        features = np.load(Path(mm_root) / "new_joint_vecs" / f"{clip}.npy")
        features = features[:len(features) // tokenizer.unit_length * tokenizer.unit_length]
        with torch.no_grad():
            recon = tokenizer(torch.from_numpy((features - mean) / std)[None])[0].numpy() * std + mean
        gt_joints.append(recover_from_272(features.astype(np.float64)))
        rec_joints.append(recover_from_272(recon.astype(np.float64)))
        lengths.append(len(features))
    assert len(set(lengths)) > 1
    frames = max(lengths)

    def padded(joints: list[np.ndarray]) -> np.ndarray:
        return np.stack([np.pad(j, [(0, frames - len(j)), (0, 0), (0, 0)]) for j in joints])

    report = mpjpe_report(padded(rec_joints), padded(gt_joints), np.array(lengths))
    assert all(math.isfinite(v) and v > 0 for v in report.values()), report
    per_sequence = [1000.0 * calculate_mpjpe(r, g) for r, g in zip(rec_joints, gt_joints)]
    assert report["mpjpe_per_sequence_mm"] == pytest.approx(np.mean(per_sequence), rel=1e-6)
    pooled = np.concatenate([1000.0 * np.linalg.norm((r - r[:, :1]) - (g - g[:, :1]), axis=-1).mean(-1)
                             for r, g in zip(rec_joints, gt_joints)])
    assert report["mpjpe_per_frame_mm"] == pytest.approx(pooled.mean(), rel=1e-6)
