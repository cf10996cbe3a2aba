"""Tokenizer evaluation helpers: per-group errors in both units, code usage and perplexity, reconstruction of each
motion at its own length and condition, where a tokenizer's statistics come from, and which checkpoint a run names."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from utils import tokenizer_eval as TE
from utils.checkpoint import CheckpointError
from utils.conditions import ConditionLabels
from utils.dataset_specs import get_dataset_spec

# ---------------------------------------------------------------------------------------------------------------------
# utils.tokenizer_eval
# ---------------------------------------------------------------------------------------------------------------------

SPEC = get_dataset_spec("synthetic")


def _stats(mean=None, std=None, codebook_size=None, unit_length=4, columns=None):
    d = SPEC.dim_pose if columns is None else len(columns)
    mean = np.zeros(d, np.float32) if mean is None else mean
    std = np.ones(d, np.float32) if std is None else std
    return TE.ReconstructionStats(SPEC, mean, std, codebook_size=codebook_size, unit_length=unit_length,
                                  columns=columns)


def test_group_errors_are_in_feature_units_and_normalised_units():
    d = SPEC.dim_pose
    mean = np.linspace(-3, 3, d).astype(np.float32)
    std = np.full(d, 2.0, np.float32)
    gt = torch.zeros(1, 4, d)
    recon = gt.clone()
    recon[..., SPEC.group("rot")] += 0.25
    stats = _stats(mean, std)
    stats.update(gt, recon, torch.tensor([4]))
    out = stats.summary()
    assert out["group_mae"]["rot"] == pytest.approx(0.5, rel=1e-9)
    assert out["group_mae_normalized"]["rot"] == pytest.approx(0.25, rel=1e-9)
    assert out["group_mae"]["ric"] == pytest.approx(0.0, abs=1e-12)
    assert out["group_mae"]["root_y"] == pytest.approx(0.0, abs=1e-12)


def test_code_usage_counts_whole_tokens_only_and_accumulates_over_batches():
    stats = _stats(codebook_size=8, unit_length=4)
    big = torch.zeros(1, 8, SPEC.dim_pose)
    # 6 valid frames: one whole token of 4 frames (code 1); the second, partial token (code 7) does not count.
    stats.update(big, big, torch.tensor([6]), torch.tensor([[1, 7]]))
    stats.update(big, big, torch.tensor([8]), torch.tensor([[2, 2]]))
    out = stats.summary()["codebook"]
    assert out["tokens"] == 3
    layer = out["layers"][0]
    assert layer["used_codes"] == 2 and layer["dead_codes"] == 6 and layer["usage"] == pytest.approx(2 / 8)
    p = np.array([1 / 3, 2 / 3])
    assert layer["perplexity"] == pytest.approx(math.exp(-(p * np.log(p + 1e-7)).sum()), rel=1e-12)


def test_code_usage_per_residual_layer():
    stats = _stats(codebook_size=4, unit_length=4)
    big = torch.zeros(1, 8, SPEC.dim_pose)
    codes = torch.tensor([[[0, 3], [1, 3]]])  # (B, N, Q): layer 0 uses 0 and 1, layer 1 uses 3 only
    stats.update(big, big, torch.tensor([8]), codes)
    layers = stats.summary()["codebook"]["layers"]
    assert [layer["used_codes"] for layer in layers] == [2, 1]
    assert layers[1]["perplexity"] == pytest.approx(math.exp(-np.log(1 + 1e-7)), rel=1e-12)


def test_perplexity_of_no_whole_token_is_one_not_nan():
    stats = _stats(codebook_size=4, unit_length=4)
    big = torch.zeros(1, 4, SPEC.dim_pose)
    stats.update(big, big, torch.tensor([3]), torch.tensor([[2]]))
    layer = stats.summary()["codebook"]["layers"][0]
    assert layer["perplexity"] == 1.0 and layer["used_codes"] == 0 and layer["dead_codes"] == 4


def test_codes_of_a_continuous_autoencoder_are_ignored():
    stats = _stats(codebook_size=None)
    big = torch.zeros(1, 4, SPEC.dim_pose)
    stats.update(big, big, torch.tensor([4]), torch.tensor([[2]]))
    assert stats.summary()["codebook"] is None


def test_summary_before_any_batch_has_zero_errors():
    out = _stats().summary()
    assert out["frames"] == 0 and out["mpjpe_mm"] is None
    assert all(v == 0.0 for v in out["group_mae"].values())


def test_mpjpe_per_sequence_differs_from_per_frame_on_unequal_lengths():
    d = SPEC.dim_pose
    gt = torch.zeros(2, 8, d)
    recon = gt.clone()
    recon[1, :, SPEC.group("root_y")] += 0.2  # joints other than the root move 0.2 m relative to it
    stats = _stats()
    stats.update(gt, recon, torch.tensor([8, 2]))
    out = stats.summary()
    per_joint = 1000 * 0.2 * (SPEC.joints_num - 1) / SPEC.joints_num
    assert out["mpjpe_mm"] == pytest.approx(per_joint * 2 / 10, rel=1e-5)
    assert out["mpjpe_seq_mm"] == pytest.approx(per_joint / 2, rel=1e-5)


def test_bits_per_second_multiplies_by_layers():
    assert TE.bits_per_second(512, 20.0, 4, 3) == pytest.approx(9 * 5 * 3)
    assert TE.bits_per_second(512, 20.0, 4) == pytest.approx(9 * 5)


class _ShiftTokenizer:
    """A duck-typed tokenizer: one code per ``unit_length`` frames (the block mean plus the condition id), decoded
    by repeating it; it records the lengths it was given."""

    unit_length = 4

    def __init__(self):
        self.seen = []

    def encode(self, motion, cond=None):
        self.seen.append(motion.shape[1])
        b, t, d = motion.shape
        codes = motion.reshape(b, t // self.unit_length, self.unit_length, d).mean(2).sum(-1)
        if cond is not None:
            codes = codes + cond["c"][:, None].float()
        return codes

    def decode(self, codes, cond=None):
        return codes.repeat_interleave(self.unit_length, dim=1)[..., None]


def test_reconstruct_each_cuts_every_motion_to_its_length_and_pads_to_whole_tokens():
    tok = _ShiftTokenizer()
    motion = torch.ones(2, 8, 1)
    motion[1, 5:] = 100.0  # past its length: must not reach the tokenizer
    recon, codes = TE.reconstruct_each(tok, motion, torch.tensor([8, 5]))
    assert tok.seen == [8, 8]  # 5 frames padded with zeros to 2 whole tokens
    assert codes.shape == (2, 2)
    torch.testing.assert_close(codes, torch.tensor([[1.0, 1.0], [1.0, 0.25]]))
    assert recon.shape == (2, 8, 1)
    assert torch.all(recon[1, 5:] == 0)


def test_reconstruct_each_keeps_the_codes_of_every_motion():
    tok = _ShiftTokenizer()
    motion = torch.cat([torch.full((1, 8, 1), 2.0), torch.full((1, 8, 1), 3.0)])
    _, codes = TE.reconstruct_each(tok, motion, torch.tensor([8, 4]))
    torch.testing.assert_close(codes, torch.tensor([[2.0, 2.0], [3.0, 0.0]]))


def test_reconstruct_each_gives_each_motion_its_own_condition():
    tok = _ShiftTokenizer()
    motion = torch.zeros(2, 4, 1)
    _, codes = TE.reconstruct_each(tok, motion, torch.tensor([4, 4]), {"c": torch.tensor([5, 9])})
    torch.testing.assert_close(codes, torch.tensor([[5.0], [9.0]]))


def test_reconstruct_crops_back_to_the_input_length():
    tok = _ShiftTokenizer()
    recon, codes = TE.reconstruct(tok, torch.ones(1, 5, 1))
    assert tok.seen == [8] and recon.shape == (1, 5, 1) and codes.shape == (1, 2)


def test_batch_conditions_gives_each_name_its_own_column():

    labels = ConditionLabels(names=("style", "speed"), vocabularies={"style": ("<unk>", "a", "b"),
                                                                       "speed": ("<unk>", "slow", "fast")},
                             labels={"c1": {"style": "b", "speed": "slow"}, "c2": {"speed": "fast"}})
    out = TE.batch_conditions(labels, ["c1", "c2"])
    assert out["style"].tolist() == [2, 0] and out["speed"].tolist() == [1, 2]


def test_convention_statistics_of_t2m_gpt_files_are_a_released_evaluators():
    d = SPEC.dim_pose
    ev = SimpleNamespace(released=True, mean=np.full(d, 0.5, np.float32), std=np.full(d, 2.0, np.float32),
                         path="ev.tar")
    mean, std, where = TE.convention_statistics("t2m-gpt", "net.tar", SPEC, None, ev)
    assert mean is ev.mean and std is ev.std and "t2m-gpt" in where


def test_official_run_meta_needs_both_files_in_a_model_folder(tmp_path):
    run = tmp_path / "run"
    (run / "model").mkdir(parents=True)
    (run / "meta").mkdir()
    src = run / "model" / "net.tar"
    src.write_bytes(b"")
    np.save(run / "meta" / "mean.npy", np.zeros(3))
    assert TE.official_run_meta(str(src)) is None  # std.npy missing
    np.save(run / "meta" / "std.npy", np.ones(3))
    assert TE.official_run_meta(str(src)) == str(run / "meta")
    other = tmp_path / "run" / "elsewhere"
    other.mkdir()
    (other / "net.tar").write_bytes(b"")
    assert TE.official_run_meta(str(other / "net.tar")) is None


def test_reconstruct_each_of_a_motion_shorter_than_whole_tokens():
    tok = _ShiftTokenizer()
    motion = torch.ones(2, 6, 1)
    recon, codes = TE.reconstruct_each(tok, motion, torch.tensor([6, 3]))
    assert codes.shape == (2, 2) and recon.shape == (2, 6, 1)
    torch.testing.assert_close(codes, torch.tensor([[1.0, 0.5], [0.75, 0.0]]))


def _meta_folder(folder, d, value):
    folder.mkdir(parents=True)
    np.save(folder / "mean.npy", np.full(d, value, np.float32))
    np.save(folder / "std.npy", np.full(d, 1.0 + value, np.float32))


def test_ae_meta_dir_wins_over_a_momask_files_own_run_meta(tmp_path):
    d = SPEC.dim_pose
    run = tmp_path / "run"
    (run / "model").mkdir(parents=True)
    _meta_folder(run / "meta", d, 1.0)
    _meta_folder(tmp_path / "given", d, 2.0)
    tok = SimpleNamespace(dataset=None, source_format="momask", statistics_format="momask",
                          source=str(run / "model" / "net.tar"))
    cfg = SimpleNamespace(ae_meta_dir=str(tmp_path / "given"), data_root=None)
    mean, std, where = TE.recorded_statistics(tok, SPEC, cfg, None)
    assert np.all(mean == 2.0) and np.all(std == 3.0) and where.startswith("--ae_meta_dir")
    cfg.ae_meta_dir = None
    mean, std, where = TE.recorded_statistics(tok, SPEC, cfg, None)
    assert np.all(mean == 1.0) and where.startswith("the run's meta folder")


def test_a_checkpoint_of_ours_without_statistics_is_refused_by_name(tmp_path):
    tok = SimpleNamespace(dataset=None, source_format="ours", statistics_format="ours",
                          source=str(tmp_path / "net.tar"))
    cfg = SimpleNamespace(ae_meta_dir=None, data_root=str(tmp_path))
    with pytest.raises(CheckpointError, match="records no mean/std"):
        TE.recorded_statistics(tok, SPEC, cfg, None)


def test_ae_meta_dir_with_a_zero_std_is_refused(tmp_path):
    d = SPEC.dim_pose
    folder = tmp_path / "given"
    folder.mkdir()
    np.save(folder / "mean.npy", np.zeros(d, np.float32))
    std = np.ones(d, np.float32)
    std[3] = 0.0
    np.save(folder / "std.npy", std)
    tok = SimpleNamespace(dataset=None, source_format="ours", statistics_format="ours", source="net.tar")
    cfg = SimpleNamespace(ae_meta_dir=str(folder), data_root=None)
    with pytest.raises(ValueError, match="std > 0"):
        TE.recorded_statistics(tok, SPEC, cfg, None)


def _eval_cfg(**flags):
    return SimpleNamespace(**{"ckpt": None, "name": None, "dataset_name": "synthetic", "checkpoints_dir": "ck",
                              "which_epoch": None, **flags})


def test_resolve_checkpoint_names_the_run_by_flag_else_by_its_folder_else_by_the_files_stem(tmp_path, monkeypatch):
    """--ckpt ``<run>/model/<file>`` is run ``<run>``, a loose file its stem, --name wins over both; the tag is the
    file's stem. A ``model`` folder just below the root names no run (``/model/latest.tar`` is ``latest``)."""
    model_dir = tmp_path / "ae" / "model"
    model_dir.mkdir(parents=True)
    (model_dir / "net_best_fid.tar").write_bytes(b"x")
    in_run = str(model_dir / "net_best_fid.tar")
    assert TE.resolve_checkpoint(_eval_cfg(ckpt=in_run)) == (in_run, "ae", "net_best_fid")
    assert TE.resolve_checkpoint(_eval_cfg(ckpt=in_run, name="other")) == (in_run, "other", "net_best_fid")
    (tmp_path / "weights.tar").write_bytes(b"x")
    loose = str(tmp_path / "weights.tar")
    assert TE.resolve_checkpoint(_eval_cfg(ckpt=loose)) == (loose, "weights", "weights")
    with pytest.raises(CheckpointError, match=r"--ckpt: checkpoint not found: .*/missing.tar$"):
        TE.resolve_checkpoint(_eval_cfg(ckpt=str(tmp_path / "missing.tar")))
    monkeypatch.setattr(TE.os.path, "isfile", lambda p: p == "/model/latest.tar")
    assert TE.resolve_checkpoint(_eval_cfg(ckpt="/model/latest.tar")) == ("/model/latest.tar", "latest", "latest")


def test_resolve_checkpoint_of_a_run_takes_the_best_file_first_or_the_one_named(tmp_path):
    """Without --which_epoch: net_best_fid, else net_best_loss, else latest; a named file that is missing, or a run
    folder with none of them, lists the files found; a missing run names the three flags that locate it."""
    ckdir = tmp_path / "ck"
    model_dir = ckdir / "synthetic" / "ae" / "model"
    model_dir.mkdir(parents=True)
    for stem in ("latest", "net_best_loss"):
        (model_dir / f"{stem}.tar").write_bytes(b"x")
    cfg = _eval_cfg(name="ae", checkpoints_dir=str(ckdir))
    assert TE.resolve_checkpoint(cfg) == (str(model_dir / "net_best_loss.tar"), "ae", "net_best_loss")
    cfg.which_epoch = "latest"
    assert TE.resolve_checkpoint(cfg) == (str(model_dir / "latest.tar"), "ae", "latest")
    cfg.which_epoch = "net_best_fid"
    with pytest.raises(CheckpointError, match=r"no net_best_fid.tar in .*/ae/model; found \['latest.tar', "
                                              r"'net_best_loss.tar'\] \(pick one with --which_epoch\)"):
        TE.resolve_checkpoint(cfg)
    with pytest.raises(CheckpointError, match=r"no run gone of dataset synthetic under .*; check --name, "
                                              r"--dataset_name and --checkpoints_dir"):
        TE.resolve_checkpoint(_eval_cfg(name="gone", checkpoints_dir=str(ckdir)))
    with pytest.raises(ValueError, match=r"pass --name \(a run under --checkpoints_dir\) or --ckpt"):
        TE.resolve_checkpoint(_eval_cfg())
