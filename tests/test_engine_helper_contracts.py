"""Engine helpers, losses, conditions, motion files, editing and MoMask generation: contracts no other test pinned
(the EMA's refusals, frozen copies and fp32 shadow; loss kinds, default weights and zero-weight terms; validation's
mode, EMA weights, autograd and precision; config refusals; condition vocabularies, dropout rate and loss weights;
clip lists and NaN reports; root anchoring, edit seconds and source columns; residual-run and temperature refusals,
pads in an edit without a residual model)."""

from __future__ import annotations

from argparse import Namespace
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from layout_helpers import FakeWindows
from torch import nn

from utils.conditions import UNKNOWN, ConditionLabels, build_condition_labels
from utils.dataset_specs import get_dataset_spec
from utils.editing import FrameSpan, anchor_root, read_edit_request
from utils.ema import EMA
from utils.engine_config import EngineConfig
from utils.engine_validation import run_val_fn
from utils.losses import position_loss, reconstruction_loss, tokenizer_loss
from utils.lr_schedule import lr_at_step
from utils.motion_files import dataset_clips, scan_motion, value_problems


def _linear(value_w: float = 1.0, value_b: float = 1.0) -> nn.Linear:
    m = nn.Linear(2, 2)
    with torch.no_grad():
        m.weight.fill_(value_w)
        m.bias.fill_(value_b)
    return m


def test_ema_refuses_a_decay_of_one():
    """A decay of 1 would never move the shadow; the class itself refuses it."""
    with pytest.raises(ValueError, match=r"EMA decay must be in \[0, 1\), got 1.0"):
        EMA(_linear(), 1.0)
    EMA(_linear(), 0.0)  # 0 is allowed (the shadow follows the weights)


def test_ema_update_refuses_a_model_with_fewer_weights():
    """Folding in a model that lacks some of the tracked weights is an error, not a partial update."""
    ema = EMA(_linear(), 0.5)
    other = nn.Linear(2, 2, bias=False)
    with pytest.raises(KeyError, match=r"model keys differ from the tracked ones: missing \['bias'\]"):
        ema.update(other)


def test_ema_copies_frozen_parameters_instead_of_averaging_them():
    model = _linear(1.0, 1.0)
    model.weight.requires_grad_(False)
    ema = EMA(model, decay=0.75)
    with torch.no_grad():
        model.weight.fill_(3.0)
        model.bias.fill_(3.0)
    ema.update(model)
    shadow = ema.state_dict()
    assert torch.equal(shadow["weight"], torch.full((2, 2), 3.0))  # frozen: copied
    assert torch.allclose(shadow["bias"], torch.full((2,), 1.5))  # trained: 0.75 * 1 + 0.25 * 3


def test_l2_reconstruction_loss_is_mean_squared_error():
    pred = torch.zeros(1, 2, 3)
    target = torch.full((1, 2, 3), 3.0)
    assert reconstruction_loss(pred, target, "l2").item() == pytest.approx(9.0)
    assert reconstruction_loss(pred, target, "mse").item() == pytest.approx(9.0)
    assert reconstruction_loss(pred, target, "l1").item() == pytest.approx(3.0)


def test_tokenizer_loss_default_weights_are_half_position_and_two_percent_commitment():
    torch.manual_seed(0)
    recon, target = torch.randn(2, 5, 8), torch.randn(2, 5, 8)
    out = SimpleNamespace(aux_loss=torch.tensor(3.0), perplexity=7.0)
    sl = slice(1, 4)
    loss, logs = tokenizer_loss(recon, target, out, sl)
    rec = reconstruction_loss(recon, target)
    pos = position_loss(recon, target, sl)
    assert loss.item() == pytest.approx((rec + 0.5 * pos + 0.02 * 3.0).item(), rel=1e-6)
    assert logs["vel"].item() == 0.0 and logs["perplexity"].item() == pytest.approx(7.0)


class _Probe(nn.Module):
    def __init__(self, w: float) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.tensor([w]))

    def forward(self, x):
        return x * self.w


def test_validation_puts_the_model_back_in_train_mode():
    net = _Probe(1.0).train()
    seen = {}

    def val_fn(model):
        seen["training"] = model.training
        return {"v": 1.0}

    assert run_val_fn(val_fn, net, None, None) == {"v": 1.0}
    assert seen["training"] is False
    assert net.training is True


def test_validation_scores_the_ema_weights_when_ema_is_on():
    net = _Probe(1.0)
    ema = EMA(net, decay=0.5)
    with torch.no_grad():
        net.w.fill_(3.0)
    ema.update(net)  # shadow 2.0, net 3.0
    copy = _Probe(0.0)
    metrics = run_val_fn(lambda m: {"w": m.w.item()}, net, ema, copy)
    assert metrics == {"w": 2.0}
    assert run_val_fn(lambda m: {"w": m.w.item()}, net, None, None) == {"w": 3.0}


def test_validation_runs_without_autograd():
    net = _Probe(1.0)
    seen = {}

    def val_fn(model):
        seen["grad"] = torch.is_grad_enabled()
        return {"v": float(model(torch.ones(1)).item())}

    run_val_fn(val_fn, net, None, None)
    assert seen["grad"] is False
    assert torch.is_grad_enabled()


def test_validation_uses_the_unpatched_forward_and_restores_the_patch():
    """A model whose forward was replaced on the instance (mixed-precision wrapping keeps the original as
    ``_original_forward``) is validated through the original forward; the replacement is back afterwards."""
    net = _Probe(2.0)
    original = net.forward

    def patched(x):
        return torch.full_like(x, -100.0)

    net.__dict__["_original_forward"] = original
    net.forward = patched
    metrics = run_val_fn(lambda m: {"y": m(torch.ones(1)).item()}, net, None, None)
    assert metrics == {"y": 2.0}
    assert net.forward is patched


def test_engine_config_refuses_zero_steps():
    with pytest.raises(ValueError, match="max_iters must be >= 1"):
        EngineConfig(max_iters=0)
    assert EngineConfig(max_iters=1).max_iters == 1


def test_engine_config_from_namespace_skips_unset_options():
    ns = Namespace(max_iters=7, batch_size=None, lr=None, ema_decay=None, unrelated=3, seed=11)
    cfg = EngineConfig.from_namespace(ns, log_every=2)
    assert (cfg.max_iters, cfg.batch_size, cfg.lr, cfg.ema_decay, cfg.seed, cfg.log_every) == (7, 256, 2e-4, None,
                                                                                               11, 2)


def test_condition_encode_refuses_unknown_condition_names():
    labels = build_condition_labels({"a": {"species": "dog"}, "b": {"species": "cat"}})
    with pytest.raises(ValueError, match=r"unknown condition names \['colour'\]; expected a subset of \['species'\]"):
        labels.encode({"species": "dog", "colour": "red"})
    assert labels.encode({"species": "dog"}) == {"species": 2}


def test_condition_dropout_rate_follows_the_probability():
    """With drop probability p an item loses all its ids with probability p (plus the chance that each id drops on
    its own), not 1 - p."""
    from utils.conditions import ConditionedWindowDataset

    labels = build_condition_labels({"a": {"species": "dog", "gender": "male"},
                                     "b": {"species": "cat", "gender": "female"}})
    data = ConditionedWindowDataset(FakeWindows(["a", "b"]), labels, drop_prob=0.2)
    torch.manual_seed(0)
    ids = torch.stack([data[i % 2].cond_ids for i in range(2000)])
    all_unknown = (ids == 0).all(dim=1).float().mean().item()
    assert abs(all_unknown - (0.2 + 0.8 * 0.2 ** 2)) < 0.04
    none_dropped = (ids > 0).all(dim=1).float().mean().item()
    assert abs(none_dropped - 0.8 * 0.8 ** 2) < 0.04


def test_conditioned_loss_uses_the_position_weight_for_the_position_term():
    from utils.conditions import make_conditioned_loss_fn

    torch.manual_seed(0)
    motion = torch.randn(2, 5, 8)
    recon = torch.randn(2, 5, 8)
    out = SimpleNamespace(recon=recon, aux_loss=torch.tensor(0.0), perplexity=1.0)
    seen = {}

    def model(x, cond):
        seen["cond"] = cond
        return out

    batch = SimpleNamespace(motion=motion, cond={"species": torch.tensor([1, 2])})
    sl = slice(0, 3)
    loss, logs = make_conditioned_loss_fn(sl, w_pos=0.5, w_vel=0.0, commit=0.02)(model, batch)
    expected, _ = tokenizer_loss(recon, motion, out, sl, w_pos=0.5, w_vel=0.0, commit=0.02)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)
    assert logs["vel"].item() == 0.0 and logs["pos"].item() > 0
    assert seen["cond"] is batch.cond


def test_dataset_clips_lists_a_clip_in_two_splits_once(tmp_path):
    (tmp_path / "train.txt").write_text("a\nb\n")
    (tmp_path / "val.txt").write_text("b\nc\n")
    (tmp_path / "test.txt").write_text("a\n")
    clips = dataset_clips(str(tmp_path))
    assert clips.ids == ["a", "b", "c"] and clips.listed


def test_nan_report_names_the_first_bad_frame_and_its_group():
    spec = get_dataset_spec("t2m")
    values = np.zeros((6, spec.file_dim), dtype=np.float32)
    values[1, 4] = np.nan  # first NaN: frame 1, feature 4 (first of 'ric')
    values[4, 100] = np.nan
    (problem,) = value_problems("x.npy", values, spec)
    assert "2 NAN values (first at frame 1, feature 4 (group 'ric'))" in str(problem)


def test_nan_report_names_the_group_a_boundary_feature_starts():
    spec = get_dataset_spec("t2m")
    values = np.zeros((3, spec.file_dim), dtype=np.float32)
    values[0, 67] = np.inf  # first feature of 'rot' (the 'ric' group stops at 67)
    (problem,) = value_problems("x.npy", values, spec)
    assert "feature 67 (group 'rot')" in str(problem)


def test_scan_motion_gives_no_values_for_a_file_with_nan(tmp_path):
    spec = get_dataset_spec("t2m")
    values = np.zeros((3, spec.file_dim), dtype=np.float32)
    values[2, 0] = np.nan
    path = tmp_path / "m.npy"
    np.save(path, values)
    array, problems = scan_motion(str(path), spec)
    assert array is None and [p.kind for p in problems] == ["nan"]
    np.save(path, np.zeros((3, spec.file_dim), dtype=np.float64))
    array, problems = scan_motion(str(path), spec)
    assert problems == [] and array.dtype == np.float32 and array.shape == (3, spec.file_dim)


def test_anchor_root_changes_only_the_root_yaw_and_xz_velocity_dims():
    rng = np.random.default_rng(0)
    target = rng.normal(0, 0.05, (24, 10))
    features = target + rng.normal(0, 0.05, (24, 10))  # every dim differs, the root height (dim 3) too
    edited = np.zeros(24, dtype=bool)
    edited[8:16] = True
    out, records = anchor_root(features, target, edited)
    assert [r["frames"] for r in records] == [[8, 16]]
    np.testing.assert_array_equal(out[:, 3:], features[:, 3:])  # height and everything after it as generated
    np.testing.assert_allclose(out[~edited, :3], target[~edited, :3])


def test_edit_seconds_use_the_datasets_frame_rate(tmp_path):
    spec = get_dataset_spec("kit")  # 12.5 fps
    src = tmp_path / "src_features.npy"
    np.save(src, np.random.default_rng(0).normal(size=(60, spec.dim_pose)).astype(np.float32))
    request = read_edit_request(str(src), None, ["1:2"], spec, unit_length=4)
    assert request.spans == [FrameSpan(12, 25)]  # floor(12.5), ceil(25.0)


def test_edit_source_of_full_width_files_keeps_the_leading_dims(tmp_path):
    from utils.editing import load_edit_source

    spec = get_dataset_spec("kit_64")  # the first 64 dims of 251-dim files
    full = np.random.default_rng(1).normal(size=(16, spec.file_dim)).astype(np.float32)
    src = tmp_path / "clip.npy"
    np.save(src, full)
    features = load_edit_source(str(src), spec)
    assert features.shape == (16, spec.dim_pose)
    np.testing.assert_array_equal(features, full[:, :spec.dim_pose])


def test_residual_run_refuses_both_a_run_name_and_a_file(tmp_path):
    from utils.generation_momask import resolve_residual_run

    ckpt = tmp_path / "res.tar"
    ckpt.write_bytes(b"x")
    (tmp_path / "t2m" / "res_run").mkdir(parents=True)
    with pytest.raises(ValueError, match="pass --res_name \\(a run\\) or --res_ckpt \\(a file\\), not both"):
        resolve_residual_run(str(tmp_path), "t2m", res_name="res_run", res_ckpt=str(ckpt))
    assert resolve_residual_run(str(tmp_path), "t2m", res_ckpt=str(ckpt)) == str(ckpt)
    assert resolve_residual_run(str(tmp_path), "t2m", res_name="res_run") == str(tmp_path / "t2m" / "res_run")


def test_momask_settings_refuse_a_residual_temperature_of_zero():
    from utils.generation_momask import MoMaskBackend

    backend = MoMaskBackend(None, None)
    with pytest.raises(ValueError, match="MoMask samples with temperature > 0; got temperature 1.0, "
                                         "res_temperature 0.0"):
        backend.settings(res_temperature=0.0)
    settings = backend.settings(res_temperature=0.5)
    assert settings.options["res_temperature"] == 0.5 and settings.cfg == 4.0


def test_momask_edit_without_residual_model_leaves_pads_empty_in_every_layer():
    """Sampling an edit with an RVQ tokenizer and no residual transformer: unedited tokens keep the source's upper
    layers, edited tokens get the base layer only, and padded positions stay -1 in every layer even where the known
    tokens hold codes."""
    from utils.generation_momask import MoMaskBackend

    base = torch.tensor([[5, 6, 7, -1]])  # the masked transformer's base layer, a pad at the end

    class _Mask:
        def generate(self, token_lengths, text_emb, **kwargs):
            return base.clone()

    backend = MoMaskBackend(_Mask(), SimpleNamespace(kind="rvq", num_quantizers=3))
    known = torch.tensor([[[5, 1, 2], [9, 3, 4], [7, 5, 6], [8, 8, 8]]])
    edit_mask = torch.tensor([[False, True, False, False]])
    out = backend.sample_tokens(torch.zeros(1, 4), torch.tensor([3]), backend.settings(), None, known=known,
                                edit_mask=edit_mask)
    assert out.tolist() == [[[5, 1, 2], [6, -1, -1], [7, 5, 6], [-1, -1, -1]]]


def test_losses_refuse_inputs_without_a_batch_axis():
    with pytest.raises(ValueError, match=r"expected prediction and target of the same shape \(B, T, D\), got \(5, 8\)"):
        reconstruction_loss(torch.zeros(5, 8), torch.zeros(5, 8))


def test_tokenizer_loss_skips_and_logs_zero_for_a_term_of_weight_zero():
    torch.manual_seed(0)
    recon, target = torch.randn(2, 5, 8), torch.randn(2, 5, 8)
    out = SimpleNamespace(aux_loss=torch.tensor(0.0), perplexity=1.0)
    loss, logs = tokenizer_loss(recon, target, out, slice(0, 4), w_pos=0.0, w_vel=0.0)
    assert logs["pos"].item() == 0.0 and logs["vel"].item() == 0.0
    assert loss.item() == pytest.approx(reconstruction_loss(recon, target).item(), rel=1e-6)


def test_condition_record_needs_unknown_first_in_every_vocabulary():
    with pytest.raises(ValueError, match=r"ckpt: conditions \['species'\] have no vocabulary starting with '<unk>'"):
        ConditionLabels.from_dict({"names": ["species"], "vocabularies": {"species": ["dog", "cat"]}}, source="ckpt")
    ok = ConditionLabels.from_dict({"names": ["species"], "vocabularies": {"species": [UNKNOWN, "dog"]}})
    assert ok.vocab_sizes() == {"species": 2}


def test_a_label_spelled_like_the_unknown_token_is_the_unknown_id():
    labels = build_condition_labels({"a": {"species": UNKNOWN}, "b": {"species": "dog"}})
    assert labels.vocabularies["species"] == (UNKNOWN, "dog")
    assert labels.ids("a").tolist() == [0] and labels.ids("b").tolist() == [1]


def test_skip_log_quotes_at_most_five_ids_per_reason():
    from utils.motion_files import SkipLog

    log = SkipLog()
    for i in range(7):
        log.add("missing_text", f"c{i}")
    assert log.examples["missing_text"] == ["c0", "c1", "c2", "c3", "c4"]
    assert log.summary() == "7 missing_text (c0, c1, c2, c3, c4, ...)"


def test_an_edit_source_shorter_than_one_token_is_refused_as_such(tmp_path):
    spec = get_dataset_spec("t2m")
    src = tmp_path / "short_features.npy"
    np.save(src, np.zeros((3, spec.dim_pose), dtype=np.float32))
    with pytest.raises(ValueError, match=r"short_features.npy: 3 frames, fewer than one 4-frame token"):
        read_edit_request(str(src), ["0:2"], None, spec, unit_length=4)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float64])
def test_ema_of_a_model_in_another_precision_keeps_an_fp32_shadow_and_updates(dtype):
    """The shadow was made in the parameter's own dtype (a detached tensor is no nn.Parameter), and the first update
    then failed in lerp_ with an fp32 argument."""
    model = _linear(1.0, 1.0).to(dtype)
    ema = EMA(model, 0.5)
    assert ema.state_dict()["weight"].dtype == torch.float32
    with torch.no_grad():
        model.weight.fill_(3.0)
    ema.update(model)
    assert ema.state_dict()["weight"].tolist() == [[2.0, 2.0], [2.0, 2.0]]


def test_lr_at_step_applies_the_warm_up_and_the_given_decay():
    kw = dict(warm_up_iter=4, milestones=[10, 20], lr_decay=0.5)
    assert lr_at_step(1, 1e-3, **kw) == pytest.approx(1e-3 * 2 / 4)
    assert lr_at_step(9, 1e-3, **kw) == pytest.approx(1e-3)
    assert lr_at_step(10, 1e-3, **kw) == pytest.approx(5e-4)
    assert lr_at_step(25, 1e-3, **kw) == pytest.approx(2.5e-4)
