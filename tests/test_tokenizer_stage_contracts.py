"""Contracts of the tokenizer stage (utils/tokenizer_stage.py) on tiny models and hand-made records: resume checks and
warnings, vocabularies, validation metrics, loss terms, window data, the records a run keeps, run set-up refusals."""

from __future__ import annotations

import hashlib
import logging
import os
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from layout_helpers import write_dataset

import utils.eval_protocol as ep
from models.tokenizers import TokenizerOutput, build_tokenizer
from options.config import parse_with_config
from options.tokenizer_options import get_train_vq_parser
from utils import tokenizer_stage as ts
from utils.checkpoint import CheckpointError, resumed_model_args
from utils.conditions import UNKNOWN, ConditionLabels
from utils.dataset_specs import get_dataset_spec
from utils.losses import tokenizer_loss
from utils.motion_process import features_to_joints

PATH = "/runs/x/model/latest.tar"


# ------------------------------------------------------------------------------------------------ resume settings

def test_resume_refuses_a_run_saved_before_window_mode_when_now_every_window():
    """A run that recorded no --window_mode trained on random windows: resuming with 'all' is refused, the message
    says the value was not recorded and gives the flag that resumes it as it was."""
    with pytest.raises(CheckpointError) as e:
        ts.check_training_settings(PATH, {}, {"window_mode": "all"})
    msg = str(e.value)
    assert "--window_mode random (not recorded: the run predates the option) but all now" in msg
    assert "add --window_mode random to the command" in msg and msg.startswith(PATH)


def test_resume_keeps_feat_bias_one_for_runs_saved_before_the_option():
    """feat_bias missing from the saved config means 1.0: resuming with 1.0 passes, with 2.0 is refused."""
    ts.check_training_settings(PATH, {}, {"feat_bias": 1.0})
    with pytest.raises(CheckpointError, match=r"--feat_bias 1\.0 \(not recorded.*but 2\.0 now"):
        ts.check_training_settings(PATH, {}, {"feat_bias": 2.0})


def test_recorded_setting_differences_are_not_called_unrecorded():
    """A recorded value that differs is reported without the 'not recorded' note."""
    with pytest.raises(CheckpointError) as e:
        ts.check_training_settings(PATH, {"window_size": 64}, {"window_size": 32})
    assert "--window_size 64 but 32 now" in str(e.value) and "not recorded" not in str(e.value)


def test_window_stride_matters_only_for_every_window_runs():
    """Two random-window runs with other strides resume; two every-window runs with other strides are refused."""
    ts.check_training_settings(PATH, {"window_mode": "random", "window_stride": 1},
                               {"window_mode": "random", "window_stride": 4})
    with pytest.raises(CheckpointError, match=r"--window_stride 1 but 4 now"):
        ts.check_training_settings(PATH, {"window_mode": "all", "window_stride": 1},
                                   {"window_mode": "all", "window_stride": 4})


def test_cond_drop_prob_is_checked_when_either_side_has_conditions():
    """cond_drop_prob differences matter once the saved or the current run has conditions, else not."""
    ts.check_training_settings(PATH, {"cond_drop_prob": 0.0}, {"cond_drop_prob": 0.5})
    with pytest.raises(CheckpointError, match=r"--cond_drop_prob 0\.0 but 0\.5 now"):
        ts.check_training_settings(PATH, {"cond_drop_prob": 0.0, "conditions": ["style"]}, {"cond_drop_prob": 0.5})


def test_on_off_settings_are_spelled_as_flags_in_the_fix():
    """A boolean setting's fix is '--key' when the run had it on and '--no-key' when off."""
    with pytest.raises(CheckpointError, match=r"add --ema to the command"):
        ts.check_training_settings(PATH, {"ema": True}, {"ema": False}, settings={"ema": False})
    with pytest.raises(CheckpointError, match=r"add --no-ema to the command"):
        ts.check_training_settings(PATH, {"ema": False}, {"ema": True}, settings={"ema": False})


# ------------------------------------------------------------------------------------------------ tokenizer resume

def _record(**over):
    spec = get_dataset_spec("synthetic")
    rec = {"stage": "tokenizer", "model_name": "AE_Tiny", "model_args": {"width": 8}, "conditions": None,
           "config": {"window_size": None},
           "dataset": ts.dataset_record(spec, np.zeros(spec.dim_pose), np.ones(spec.dim_pose))}
    rec.update(over)
    return rec


def test_tokenizer_resume_accepts_the_same_run_and_reads_window_size_from_the_spec():
    """Identical records resume; a config without window_size takes the recorded spec's window size, so a run that
    typed the spec's size resumes one that left it out."""
    ts.check_tokenizer_resume(_record(), PATH, _record())
    size = _record()["dataset"]["spec"]["window_size"]
    ts.check_tokenizer_resume(_record(), PATH, _record(config={"window_size": size}))
    with pytest.raises(CheckpointError, match=rf"--window_size {size} but {size + 8} now"):
        ts.check_tokenizer_resume(_record(), PATH, _record(config={"window_size": size + 8}))


def test_tokenizer_resume_refuses_another_stage():
    """A generator checkpoint in the run folder is not resumed as a tokenizer."""
    with pytest.raises(CheckpointError, match=r"stage is 'generator' in the checkpoint but 'tokenizer'"):
        ts.check_tokenizer_resume(_record(stage="generator"), PATH, _record())


def test_tokenizer_resume_refuses_other_conditions_without_the_config_hint(tmp_path):
    """Other condition vocabularies are refused as they are, even when opt.yaml exists (the flags cannot fix them)."""
    config = tmp_path / "opt.yaml"
    config.write_text("name: x\n")
    saved = _record(conditions={"names": ["style"], "vocabularies": {"style": [UNKNOWN, "a"]}})
    now = _record(conditions={"names": ["style"], "vocabularies": {"style": [UNKNOWN, "a", "b"]}})
    with pytest.raises(CheckpointError) as e:
        ts.check_tokenizer_resume(saved, PATH, now, str(config))
    assert "conditions differ" in str(e.value) and "--config" not in str(e.value)


def test_tokenizer_resume_refusing_model_args_names_the_run_config(tmp_path):
    """Other model arguments are refused with the hint to resume with the run's opt.yaml."""
    config = tmp_path / "opt.yaml"
    config.write_text("name: x\n")
    with pytest.raises(CheckpointError, match=rf"resume with --config {config} --is_continue"):
        ts.check_tokenizer_resume(_record(), PATH, _record(model_args={"width": 16}), str(config))


def test_tokenizer_resume_refuses_another_dataset_name():
    """A run of another dataset is refused, naming both names."""
    saved = _record()
    saved["dataset"] = dict(saved["dataset"], name="t2m")
    with pytest.raises(CheckpointError, match=r"dataset name is 't2m' in the checkpoint but 'synthetic'"):
        ts.check_tokenizer_resume(saved, PATH, _record())


@pytest.mark.parametrize("key", ["mean", "std"])
def test_tokenizer_resume_refuses_statistics_that_differ_in_the_last_digits(key):
    """Mean and std are compared exactly: a difference of 1e-5 in one feature is refused, naming the index and both
    values in order (checkpoint, now)."""
    saved, now = _record(), _record()
    changed = now["dataset"][key].clone()
    changed[5] += 1e-5 if key == "mean" else 0.5
    now["dataset"] = dict(now["dataset"], **{key: changed})
    with pytest.raises(CheckpointError) as e:
        ts.check_tokenizer_resume(saved, PATH, now)
    msg = str(e.value)
    assert f"dataset {key} differs from the run being resumed in 1 features (first at index 5" in msg
    if key == "std":
        assert "1 in the checkpoint, 1.5 now" in msg


@pytest.mark.parametrize("key,value,shown", [("std", None, "NoneType 'None'"), ("mean", "abc", "str 'abc'"),
                                              ("mean", ..., "absent")])
def test_tokenizer_resume_refuses_a_run_without_readable_statistics_naming_the_field(key, value, shown):
    """A run whose dataset record keeps no statistics (None, as an imported record may), other values or none at all
    cannot be checked against the current ones: the resume is refused naming the file, the field and what it holds,
    not with a bare TypeError from the tensor conversion."""
    saved = _record()
    saved["dataset"] = {k: v for k, v in saved["dataset"].items() if k != key}
    if value is not ...:
        saved["dataset"][key] = value
    with pytest.raises(CheckpointError, match=rf"latest\.tar: dataset {key} is {shown} in the run being resumed"):
        ts.check_tokenizer_resume(saved, PATH, _record())


def test_resume_on_a_body_part_refuses_a_whole_body_run_and_vice_versa():
    """Adding --body_part to a whole-body run is refused ('drop --body_part'); leaving out the run's part is refused
    naming the part to add."""
    part = {"name": "upper", "indices": [0, 1]}
    with pytest.raises(CheckpointError, match=r"--body_part none but upper now.*drop --body_part"):
        ts.check_tokenizer_resume(_record(), PATH, _record(body_part=part))
    with pytest.raises(CheckpointError, match=r"--body_part upper but none now.*add --body_part upper"):
        ts.check_tokenizer_resume(_record(body_part=part), PATH, _record())


# ------------------------------------------------------------------------------------------------ resume warnings

def _warnings(caplog, fn, *a, **kw):
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="utils.tokenizer_stage"):
        fn(*a, **kw)
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]


def test_objective_change_warning_names_each_setting_the_step_and_the_old_flags(caplog):
    """A changed --loss_joint_vel and --commit are both reported with old -> new, the step of the checkpoint and the
    flags that train as before."""
    saved = {"step": 120, "config": {"loss_joint_vel": 0.5, "commit": 0.02, "recons_loss": "l1_smooth"}}
    msgs = _warnings(caplog, ts.warn_objective_changes, PATH, saved,
                     {"loss_joint_vel": 0.0, "commit": 0.1, "recons_loss": "l1_smooth"})
    assert len(msgs) == 1
    assert "--loss_joint_vel 0.5 -> 0.0" in msgs[0] and "--commit 0.02 -> 0.1" in msgs[0]
    assert "apply from step 120" in msgs[0] and "(add --loss_joint_vel 0.5 --commit 0.02 to train as before)" in msgs[0]


def test_commit_change_is_silent_without_a_commitment_loss_but_other_terms_still_warn(caplog):
    """commitment=False ignores --commit only; a changed --aux_loss_joints is still reported."""
    saved = {"step": 1, "config": {"commit": 0.02, "aux_loss_joints": 0.5}}
    assert _warnings(caplog, ts.warn_objective_changes, PATH, saved, {"commit": 0.1, "aux_loss_joints": 0.5},
                     commitment=False) == []
    msgs = _warnings(caplog, ts.warn_objective_changes, PATH, saved, {"commit": 0.1, "aux_loss_joints": 1.0},
                     commitment=False)
    assert len(msgs) == 1 and "--aux_loss_joints 0.5 -> 1.0" in msgs[0] and "--commit" not in msgs[0]


def test_residual_tokenizers_have_a_commitment_loss():
    """The kinds whose objective --commit weighs are the VQ and residual VQ tokenizers (not AE, FSQ or LFQ)."""
    kinds = {build_tokenizer(n, input_width=263).kind for n in ("VQVAE_Tiny", "RVQVAE_Tiny")}
    assert kinds <= set(ts.COMMITMENT_KINDS)
    assert not {"ae", "fsq", "lfq"} & set(ts.COMMITMENT_KINDS)


def test_validation_batch_warning_phrases_counts_and_the_old_flag(caplog):
    """Whole split (0) vs one batch is reported in words with the flag to validate as before; an unrecorded or
    unchanged value is silent."""
    msgs = _warnings(caplog, ts.warn_validation_batches, PATH, {"val_batches": 0}, {"val_batches": 1})
    assert len(msgs) == 1
    assert "validated on the whole val split, now on 1 val batch:" in msgs[0]
    assert "add --val_batches 0 to validate as before" in msgs[0]
    msgs = _warnings(caplog, ts.warn_validation_batches, PATH, {"val_batches": 3}, {"val_batches": 2})
    assert "on 3 val batches, now on 2 val batches" in msgs[0] and "--val_batches 3 to" in msgs[0]
    assert _warnings(caplog, ts.warn_validation_batches, PATH, {}, {"val_batches": 2}) == []
    assert _warnings(caplog, ts.warn_validation_batches, PATH, {"val_batches": 2}, {}) == []


# ------------------------------------------------------------------------------------------------ vocabularies

def _found():
    return ConditionLabels(("style",), {"style": (UNKNOWN, "a", "b", "c")},
                           {"c1": {"style": "a"}, "c2": {"style": "b"}, "v1": {"style": "c"}})


def _training():
    labels = ConditionLabels(("style",), {"style": (UNKNOWN, "a", "b")}, {"c1": {"style": "a"}, "c2": {"style": "b"}})
    return labels, {"style=c": ["v1"]}


def test_an_older_run_keeps_the_vocabulary_it_trained_with():
    """A run whose vocabulary also holds a value only val clips carry keeps it (no value becomes unknown)."""
    labels, unseen = _training()
    record = {"conditions": {"names": ["style"], "vocabularies": {"style": [UNKNOWN, "a", "b", "c"]}}}
    kept, kept_unseen = ts.resumed_vocabularies(record, PATH, _found(), labels, unseen)
    assert kept.vocabularies["style"] == (UNKNOWN, "a", "b", "c") and kept_unseen == {}


def test_a_vocabulary_with_values_no_clip_carries_or_other_names_is_left_to_the_check():
    """Vocabularies that are not the older form (a value no clip has, or other names) return the training labels
    unchanged."""
    labels, unseen = _training()
    other = {"conditions": {"names": ["style"], "vocabularies": {"style": [UNKNOWN, "a", "b", "z"]}}}
    assert ts.resumed_vocabularies(other, PATH, _found(), labels, unseen) == (labels, unseen)
    renamed = {"conditions": {"names": ["mood"], "vocabularies": {"mood": [UNKNOWN, "a", "b", "c"]}}}
    assert ts.resumed_vocabularies(renamed, PATH, _found(), labels, unseen) == (labels, unseen)
    fewer = {"conditions": {"names": ["style"], "vocabularies": {"style": [UNKNOWN, "a"]}}}
    assert ts.resumed_vocabularies(fewer, PATH, _found(), labels, unseen) == (labels, unseen)


# ------------------------------------------------------------------------------------------------ validation metrics

class _Recon(torch.nn.Module):
    """Reconstructs ``motion + offset`` and reports fixed code indices."""

    def __init__(self, offset=0.0, codes=None, quantizer=None):
        super().__init__()
        self.p = torch.nn.Parameter(torch.zeros(()))
        self.offset, self.codes, self.calls = offset, codes, 0
        if quantizer is not None:
            self.quantizer = quantizer

    def forward(self, motion):
        self.calls += 1
        codes = self.codes if self.codes is not None else torch.zeros(motion.shape[0], 1)
        return SimpleNamespace(recon=motion + self.offset, indices_or_latents=codes[: motion.shape[0]])


def _terms(motion, out):
    return out.recon.mean(), {"loss": out.recon.mean()}


@pytest.mark.parametrize("name", ["synthetic", "kit"])
def test_validation_mpjpe_is_root_aligned_on_denormalised_features_in_millimetres(name):
    """MPJPE is computed on de-normalised features, root-aligned, averaged over joints and frames, converted to mm
    with the spec's metres per unit."""
    spec = get_dataset_spec(name)
    g = torch.Generator().manual_seed(0)
    motion = torch.randn(3, 4, spec.dim_pose, generator=g) * 0.1
    offset = torch.randn(spec.dim_pose, generator=g) * 0.05
    mean = np.linspace(-0.5, 0.5, spec.dim_pose).astype(np.float32)
    std = np.linspace(0.5, 1.5, spec.dim_pose).astype(np.float32)
    loader = torch.utils.data.DataLoader(motion, batch_size=2)
    metrics = ts.reconstruction_metrics(_Recon(offset), loader, spec, mean, std, _terms)
    m, s = torch.as_tensor(mean), torch.as_tensor(std)
    gt, rec = features_to_joints(motion * s + m, spec), features_to_joints((motion + offset) * s + m, spec)
    gt, rec = gt - gt[..., :1, :], rec - rec[..., :1, :]
    expected = 1000.0 * spec.metres_per_unit * float((gt - rec).norm(dim=-1).mean())
    assert metrics["mpjpe_mm"] == pytest.approx(expected, rel=1e-4)


def test_validation_of_a_body_parts_columns_reports_no_mpjpe():
    """Features narrower than the spec (one body part) give loss terms but no MPJPE."""
    spec = get_dataset_spec("synthetic")
    loader = torch.utils.data.DataLoader(torch.randn(4, 4, 10), batch_size=2)
    metrics = ts.reconstruction_metrics(_Recon(0.1), loader, spec, np.zeros(10), np.ones(10), _terms)
    assert "mpjpe_mm" not in metrics and metrics["loss"] == pytest.approx(float(loader.dataset.mean()) + 0.1, rel=1e-5)


def test_validation_stops_after_max_batches():
    """max_batches 2 runs exactly two batches of a three-batch loader."""
    spec = SimpleNamespace(representation="smplx_rot6d", dim_pose=3)
    model = _Recon()
    loader = torch.utils.data.DataLoader(torch.arange(6.0).reshape(6, 1, 1).expand(6, 2, 3), batch_size=2)
    metrics = ts.reconstruction_metrics(model, loader, spec, np.zeros(3), np.ones(3), _terms, max_batches=2)
    assert model.calls == 2 and metrics["loss"] == pytest.approx(1.5)


def test_code_usage_counts_code_zero_and_codes_used_once():
    """Codes 0..3 each used at least once (code 0 and code 3 once) out of 8: usage 0.5, and a one-layer quantizer
    logs no per-layer keys."""
    spec = SimpleNamespace(representation="smplx_rot6d", dim_pose=3)
    codes = torch.tensor([[0, 1, 1], [2, 2, 3]])
    model = _Recon(codes=codes, quantizer=SimpleNamespace(codebook_size=8))
    loader = torch.utils.data.DataLoader(torch.zeros(2, 2, 3), batch_size=2)
    metrics = ts.reconstruction_metrics(model, loader, spec, np.zeros(3), np.ones(3), _terms)
    assert metrics["code_usage"] == pytest.approx(0.5)
    assert not any(k.startswith("code_usage_q") for k in metrics)


def test_residual_code_usage_is_logged_per_layer_from_q0():
    """Two residual layers log code_usage_q0 and code_usage_q1 (layer 0 first)."""
    spec = SimpleNamespace(representation="smplx_rot6d", dim_pose=3)
    codes = torch.stack([torch.tensor([[0, 1, 2, 3]]), torch.zeros(1, 4, dtype=torch.long)], -1)  # (1, 4, 2)
    model = _Recon(codes=codes, quantizer=SimpleNamespace(codebook_size=4))
    loader = torch.utils.data.DataLoader(torch.zeros(1, 2, 3), batch_size=1)
    metrics = ts.reconstruction_metrics(model, loader, spec, np.zeros(3), np.ones(3), _terms)
    assert metrics["code_usage_q0"] == 1.0 and metrics["code_usage_q1"] == 0.25
    assert "code_usage_q2" not in metrics and metrics["code_usage"] == pytest.approx(0.625)


# ------------------------------------------------------------------------------------------------ loss terms

def _loss_args(**over):
    base = dict(recons_loss="l1_smooth", aux_loss_joints=0.5, loss_joint_vel=0.0, commit=0.02)
    base.update(over)
    return SimpleNamespace(**base)


def test_loss_terms_weigh_positions_and_velocities_with_their_own_flags():
    """aux_loss_joints weighs the position term and loss_joint_vel the velocity term, as tokenizer_loss does."""
    spec = get_dataset_spec("synthetic")
    g = torch.Generator().manual_seed(0)
    motion = torch.randn(2, 8, spec.dim_pose, generator=g)
    out = TokenizerOutput(motion + torch.randn(2, 8, spec.dim_pose, generator=g), torch.tensor(0.3), torch.tensor(2.0),
                          torch.zeros(2, 1, dtype=torch.long))
    loss, logs = ts.make_loss_terms(spec, _loss_args(aux_loss_joints=0.5, loss_joint_vel=0.0))(motion, out)
    expected, _ = tokenizer_loss(out.recon, motion, out, spec, "l1_smooth", w_pos=0.5, w_vel=0.0, commit=0.02)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)
    assert logs["vel"].item() == 0.0 and logs["pos"].item() > 0


def test_loss_terms_on_a_body_part_use_its_own_position_columns():
    """position overrides the spec's joint-position slice (the part's columns)."""
    spec = get_dataset_spec("synthetic")
    g = torch.Generator().manual_seed(0)
    motion = torch.randn(2, 8, 12, generator=g)
    recon = motion.clone()
    recon[..., :3] += 1.0  # error only in the part's position columns
    out = TokenizerOutput(recon, torch.tensor(0.0), torch.tensor(0.0), torch.zeros(2, 1, dtype=torch.long))
    _, logs = ts.make_loss_terms(spec, _loss_args(), position=slice(0, 3))(motion, out)
    expected, exp_logs = tokenizer_loss(recon, motion, out, slice(0, 3), "l1_smooth", 0.5, 0.0, 0.02)
    assert logs["pos"].item() == pytest.approx(exp_logs["pos"].item()) and logs["pos"].item() > 0.4


# ------------------------------------------------------------------------------------------------ window data

@pytest.fixture
def tiny_root(tmp_path):

    write_dataset(tmp_path, {"a": 70, "b": 80, "v": 72}, {"train": ["a", "b"], "val": ["v"]})
    return str(tmp_path)


def test_window_mode_first_is_refused_for_training(tiny_root):
    """Only 'random' and 'all' are training window modes; 'first' is refused naming both."""
    spec = get_dataset_spec("t2m", tiny_root)
    with pytest.raises(ValueError, match=r"window mode must be 'random' or 'all', got 'first'"):
        ts.load_window_data(spec, 64, tiny_root, mode="first")


def test_window_stride_is_refused_with_random_windows(tiny_root):
    """--window_stride 2 with random windows is a ValueError naming --window_mode all."""
    spec = get_dataset_spec("t2m", tiny_root)
    with pytest.raises(ValueError, match=r"--window_stride 2 applies to --window_mode all only"):
        ts.load_window_data(spec, 64, tiny_root, mode="random", stride=2)


def test_validation_windows_are_the_first_window_of_each_clip_normalised(tiny_root):
    """val holds the first window_size frames of the val clip, z-normalised with the dataset statistics."""
    spec = get_dataset_spec("t2m", tiny_root)
    data = ts.load_window_data(spec, 64, tiny_root)
    clip = np.load(os.path.join(tiny_root, "new_joint_vecs", "v.npy"))
    expected = (clip[:64] - data.mean) / data.std
    for _ in range(3):
        np.testing.assert_allclose(np.asarray(data.val[0]), expected, rtol=1e-5, atol=1e-5)


def test_feat_bias_divides_the_root_std(tiny_root):
    """feat_bias 5 divides the std of the root group (columns 0..3) by 5 and leaves the others."""
    spec = get_dataset_spec("t2m", tiny_root)
    plain = ts.load_window_data(spec, 64, tiny_root)
    biased = ts.load_window_data(spec, 64, tiny_root, feat_bias=5.0)
    np.testing.assert_allclose(biased.std[:4], plain.std[:4] / 5.0, rtol=1e-6)
    np.testing.assert_allclose(biased.mean, plain.mean)


# ------------------------------------------------------------------------------------------------ records

def test_dataset_record_keeps_mean_and_std_as_float32():
    """The dataset record holds the name, the spec, and mean/std as float32 tensors of the given values."""
    spec = get_dataset_spec("synthetic")
    rec = ts.dataset_record(spec, np.full(spec.dim_pose, 2.0), np.full(spec.dim_pose, 3.0))
    assert rec["name"] == "synthetic" and rec["mean"].dtype == rec["std"].dtype == torch.float32
    assert float(rec["mean"][0]) == 2.0 and float(rec["std"][0]) == 3.0


def test_parent_record_holds_the_file_hash(tmp_path):
    """parent_record gives the path and its sha256; None for no parent."""

    path = tmp_path / "p.tar"
    path.write_bytes(b"abc")
    assert ts.parent_record(str(path)) == {"path": str(path), "sha256": hashlib.sha256(b"abc").hexdigest()}
    assert ts.parent_record(None) is None


# ------------------------------------------------------------------------------------------------ more stage helpers

def test_window_stride_zero_is_refused(tiny_root):
    """--window_stride 0 with every window is refused naming the flag and its bound."""
    spec = get_dataset_spec("t2m", tiny_root)
    with pytest.raises(ValueError, match=r"--window_stride must be >= 1, got 0"):
        ts.load_window_data(spec, 64, tiny_root, mode="all", stride=0)


def test_lfq_entropies_are_logged_in_training_steps_only():
    """An LFQ tokenizer's training terms log entropy_sample and entropy_codebook as the quantizer computed them;
    validation (eval mode) logs neither."""
    spec = get_dataset_spec("synthetic")
    torch.manual_seed(0)
    model = build_tokenizer("LFQ_AE_Tiny", input_width=spec.dim_pose, entropy_loss_weight=0.05).train()
    terms = ts.make_loss_terms(spec, _loss_args(), lfq=model.quantizer)
    motion = torch.randn(2, 16, spec.dim_pose)
    _, logs = terms(motion, model(motion))
    ent = model.quantizer.last_entropy
    assert float(ent.per_sample) != float(ent.codebook)
    assert logs["entropy_sample"] == ent.per_sample and logs["entropy_codebook"] == ent.codebook
    model.eval()
    _, logs = terms(motion, model(motion))
    assert "entropy_sample" not in logs and "entropy_codebook" not in logs


def test_validation_with_max_batches_reads_the_first_windows_in_order():
    """make_val_fn validates on the val windows in order: max_batches 1 scores the first batch only."""
    spec = SimpleNamespace(representation="smplx_rot6d", dim_pose=3)
    windows = torch.arange(8.0).reshape(8, 1, 1).expand(8, 2, 3).contiguous()
    data = ts.WindowData(None, windows, np.zeros(3), np.ones(3))
    val_fn = ts.make_val_fn(data, spec, _terms, batch_size=2, max_batches=1)
    for _ in range(3):
        assert val_fn(_Recon())["loss"] == pytest.approx(0.5)


def test_a_vq_run_saved_before_the_kmeans_options_resumes_with_the_defaults():
    """A run whose model_args lack kmeans_init / kmeans_iters / rotation_trick resumes against the default model."""

    now = dict(build_tokenizer("VQVAE_Tiny", input_width=263).model_args)
    saved = {k: v for k, v in now.items() if k not in ("kmeans_init", "kmeans_iters", "rotation_trick")}
    assert resumed_model_args(saved, now, ts.ADDED_MODEL_ARGS) == saved


def test_fid_validation_pads_to_whole_tokens_and_maps_statistics_both_ways(monkeypatch):
    """make_fid_val_fn reconstructs evaluator-normalised motion padded to whole tokens (cropped back), in the
    tokenizer's statistics, and returns it in the evaluator's."""

    seen = {}

    class Model(torch.nn.Module):
        unit_length = 4

        def __init__(self):
            super().__init__()
            self.p = torch.nn.Parameter(torch.zeros(()))

        def forward(self, motion):
            seen["frames"] = motion.shape[1]
            seen["input"] = motion
            return SimpleNamespace(recon=motion * 2)

    def fake_evaluate(evaluator, loader, motion_fn, replications, seed, progress):
        seen["seed"] = seed
        seen["out"], _ = motion_fn(next(iter(loader)))
        return SimpleNamespace(metrics={"fid": SimpleNamespace(mean=1.5)})

    monkeypatch.setattr(ep, "evaluate", fake_evaluate)
    ev = SimpleNamespace(mean=np.full(3, 1.0), std=np.full(3, 2.0), to=lambda d: None)
    batch = SimpleNamespace(motion=torch.ones(1, 5, 3), m_lengths=torch.tensor([5]))
    fn = ts.make_fid_val_fn(lambda m: {"loss": 0.0}, ev, [batch], np.zeros(3), np.ones(3), seed=5)
    assert fn(Model()) == {"loss": 0.0, "fid": 1.5} and seen["seed"] == 5
    assert seen["frames"] == 8  # 5 frames padded to two tokens of 4
    torch.testing.assert_close(seen["input"][0, :5], torch.full((5, 3), 3.0))  # 1 * 2 + 1 in tokenizer units
    assert seen["out"].shape == (1, 5, 3)
    torch.testing.assert_close(seen["out"], torch.full((1, 5, 3), 2.5))  # (6 - 1) / 2 in evaluator units


# ------------------------------------------------------------------------------------------------ run set-up refusals

def _vq_args(tmp_path, *extra):

    return parse_with_config(get_train_vq_parser(), ["--name", "x", "--checkpoints_dir", str(tmp_path / "ckpt"),
                                                     "--num_workers", "0", "--batch_size", "4", "--max_iters", "2",
                                                     *extra])


def test_part_aware_models_refuse_a_body_part_before_the_run_folder(tmp_path):
    """--body_part with a part-aware model is a ValueError naming the part and the model; no run folder is made."""
    args = _vq_args(tmp_path, "--dataset_name", "beatx", "--body_part", "upper")
    with pytest.raises(ValueError, match=r"--body_part upper: PartAwareRVQ_Tiny splits the whole feature vector"):
        ts.train_tokenizer(args, "PartAwareRVQ_Tiny", {})
    assert not (tmp_path / "ckpt").exists()


def test_kmeans_iters_without_kmeans_init_is_refused(tmp_path):
    """--kmeans_iters alone exits naming --kmeans_init, before the run folder exists."""
    args = _vq_args(tmp_path, "--dataset_name", "synthetic")
    with pytest.raises(SystemExit, match=r"--kmeans_iters 5: the iterations of --kmeans_init"):
        ts.train_tokenizer(args, "VQVAE_Tiny", {"kmeans_iters": 5})
    assert not (tmp_path / "ckpt").exists()


def test_need_evaluation_is_refused_for_a_body_part_run(tmp_path):
    """--need_evaluation with --body_part exits: the evaluator scores whole-body motion."""
    args = _vq_args(tmp_path, "--dataset_name", "beatx", "--body_part", "upper", "--need_evaluation")
    with pytest.raises(SystemExit, match=r"--need_evaluation scores whole-body"):
        ts.train_tokenizer(args, "RVQVAE_Tiny", {})


def test_a_window_size_that_is_not_whole_tokens_is_refused(tmp_path, tiny_root):
    """--window_size 66 with 4 frames per token is a ValueError naming both numbers (before training)."""
    args = _vq_args(tmp_path, "--dataset_name", "t2m", "--data_root", tiny_root, "--window_size", "66")
    with pytest.raises(ValueError, match=r"--window_size 66 must be a multiple of the tokenizer's 4 frames per token"):
        ts.train_tokenizer(args, "VQVAE_Tiny", {})
