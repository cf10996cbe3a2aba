"""The generator families' backends: loading helpers (EMA weights, residual runs), sampling settings and their
checks, and how the MoMask and MARDM backends hand their settings, edits and tokens to their models."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from generation_stubs import StubBackend

from utils.checkpoint import CheckpointError
from utils.generation import _check_residual, _select_weights
from utils.generation_backends import MARDMBackend, SamplingSettings, backend_for
from utils.generation_momask import MoMaskBackend, resolve_residual_run

# ---------------------------------------------------------------------------------------------------------------------
# Loading helpers
# ---------------------------------------------------------------------------------------------------------------------

def test_select_weights_prefers_ema_unless_asked_not_to():
    ema, raw = {"w": torch.ones(1)}, {"w": torch.zeros(1)}
    assert _select_weights({"ema": ema, "model": raw}, True, "p") == (ema, "ema")
    assert _select_weights({"ema": ema, "model": raw}, False, "p") == (raw, "model")
    assert _select_weights({"ema": None, "model": raw}, True, "p") == (raw, "model")


def _run_state(**changes):
    state = {"dataset": {"name": "synthetic", "mean": np.zeros(3, np.float32), "std": np.ones(3, np.float32)},
             "tokenizer": {"sha256": "abc", "path": "tok.tar"},
             "text_encoder": {"name": "clip", "dim": 16}}
    for key, value in changes.items():
        section, field = key.split("__")
        state[section] = {**state[section], field: value}
    return state


@pytest.mark.parametrize("changes, field", [
    ({"dataset__name": "kit"}, "dataset"),
    ({"dataset__mean": np.full(3, 0.5, np.float32)}, "dataset mean/std"),
    ({"dataset__std": np.full(3, 2.0, np.float32)}, "dataset mean/std"),
    ({"dataset__std": np.ones(4, np.float32)}, "dataset mean/std"),  # another width: no broadcasting error
    ({"tokenizer__sha256": "def"}, "tokenizer sha256"),
    ({"tokenizer__weights": "ema"}, "tokenizer weights"),
    ({"text_encoder__name": "minilm"}, "text encoder"),
    ({"text_encoder__dim": 32}, "text encoder"),
])
def test_a_residual_run_must_share_its_base_runs_data_tokenizer_and_text_encoder(changes, field):
    _check_residual(_run_state(), "res.tar", _run_state(), "mask.tar")
    with pytest.raises(CheckpointError, match=field):
        _check_residual(_run_state(**changes), "res.tar", _run_state(), "mask.tar")


def test_a_residual_transformer_loaded_as_generator_is_named_as_such():
    with pytest.raises(CheckpointError, match="residual transformer"):
        backend_for({"model_name": "MoMask-Res-Tiny"}, "res.tar")
    with pytest.raises(CheckpointError, match="belongs to no generator family"):
        backend_for({"model_name": "nothing"}, "x.tar")


def test_resolve_residual_run(tmp_path):
    ck = tmp_path / "ck.tar"
    ck.write_bytes(b"x")
    run = tmp_path / "synthetic" / "res"
    run.mkdir(parents=True)
    assert resolve_residual_run(str(tmp_path), "synthetic") is None
    assert resolve_residual_run(str(tmp_path), "synthetic", res_ckpt=str(ck)) == str(ck)
    assert resolve_residual_run(str(tmp_path), "synthetic", res_name="res") == str(run)
    with pytest.raises(ValueError, match="not both"):
        resolve_residual_run(str(tmp_path), "synthetic", res_name="res", res_ckpt=str(ck))
    with pytest.raises(CheckpointError, match="not found"):
        resolve_residual_run(str(tmp_path), "synthetic", res_ckpt=str(tmp_path / "missing.tar"))
    with pytest.raises(ValueError, match="needs --dataset_name"):
        resolve_residual_run(str(tmp_path), None, res_name="res")
    with pytest.raises(CheckpointError, match="no run folder"):
        resolve_residual_run(str(tmp_path), "synthetic", res_name="other")


# ---------------------------------------------------------------------------------------------------------------------
# Sampling settings
# ---------------------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("kwargs", [
    {"time_steps": 0}, {"time_steps": 2.5}, {"time_steps": True}, {"cfg": float("inf")}, {"cfg": -0.1},
    {"temperature": -1.0}, {"temperature": float("nan")},
])
def test_bad_sampling_settings_are_refused(kwargs):
    with pytest.raises(ValueError):
        SamplingSettings(**kwargs)


def test_zero_guidance_and_temperature_and_one_step_are_valid():
    s = SamplingSettings(time_steps=1, cfg=0.0, temperature=0.0)
    assert (s.time_steps, s.cfg, s.temperature) == (1, 0.0, 0.0)
    assert SamplingSettings(time_steps=3.0).time_steps == 3


def test_settings_to_dict_leaves_out_options_left_to_the_model():
    s = SamplingSettings(options={"head_steps": None, "head_solver": "euler"})
    assert s.to_dict() == {"time_steps": 18, "cfg": 4.5, "temperature": 1.0, "snap": True, "head_solver": "euler"}


def test_backend_settings_defaults_options_and_overrides():
    backend = MoMaskBackend(None, None)
    s = backend.settings(dataset="t2m")
    assert (s.time_steps, s.cfg, s.snap) == (10, 4.0, True)
    assert s.options == {"topk_filter_thres": 0.9, "sampling": "categorical", "res_cond_scale": 5.0,
                         "res_temperature": 1.0}
    s = backend.settings(time_steps=3, cfg=1.5, dataset="kit", sampling="gumbel", res_cond_scale=2.0)
    assert (s.time_steps, s.cfg) == (3, 1.5)
    assert s.options["sampling"] == "gumbel" and s.options["res_cond_scale"] == 2.0
    assert backend.settings(dataset="kit").cfg == 2.0
    assert MoMaskBackend.guidance("kit_64") == 2.0 and MoMaskBackend.guidance(None) == 4.0
    assert MoMaskBackend.mm_sampling == "gumbel"
    with pytest.raises(ValueError, match="no sampling option"):
        backend.settings(head_steps=4)


def test_stub_backend_settings_keep_snap_false():
    assert StubBackend().settings(snap=False).snap is False


@pytest.mark.parametrize("kwargs, match", [
    ({"snap": False}, "snap"),
    ({"sampling": "greedy"}, "sampling"),
    ({"topk_filter_thres": 1.0}, "topk_filter_thres"),
    ({"topk_filter_thres": -0.1}, "topk_filter_thres"),
    ({"temperature": 0.0}, "temperature"),
    ({"res_temperature": 0.0}, "res_temperature"),
])
def test_momask_settings_refuse_what_it_cannot_sample(kwargs, match):
    with pytest.raises(ValueError, match=match):
        MoMaskBackend(None, None).settings(**kwargs)


def test_momask_settings_take_a_zero_top_k_threshold():
    assert MoMaskBackend(None, None).settings(topk_filter_thres=0.0).options["topk_filter_thres"] == 0.0


# ---------------------------------------------------------------------------------------------------------------------
# MoMask backend plumbing
# ---------------------------------------------------------------------------------------------------------------------

class Recorder:
    def __init__(self, result):
        self.result = result
        self.kwargs = None

    def generate(self, *args, **kwargs):
        self.args, self.kwargs = args, kwargs
        return self.result.clone()


def _momask(base, layers=3, residual=None):
    tokenizer = SimpleNamespace(kind="rvq", num_quantizers=layers, decode=lambda t: t)
    backend = MoMaskBackend(Recorder(base), tokenizer)
    backend.residual = residual
    return backend


def test_momask_without_residual_fills_the_other_layers_with_empty_codes():
    base = torch.tensor([[3, 4, -1]])
    backend = _momask(base)
    out = backend.sample_tokens(torch.zeros(1, 2), torch.tensor([2]), backend.settings(), None)
    assert out.tolist() == [[[3, -1, -1], [4, -1, -1], [-1, -1, -1]]]


def test_momask_edit_keeps_all_layers_of_unedited_tokens_only():
    base = torch.tensor([[7, 8, 9, -1]])
    known = torch.tensor([[[1, 11, 21], [2, 12, 22], [3, 13, 23], [-1, -1, -1]]])
    edit_mask = torch.tensor([[False, True, False, False]])
    backend = _momask(base)
    out = backend.sample_tokens(torch.zeros(1, 2), torch.tensor([3]), backend.settings(), None, known=known,
                                edit_mask=edit_mask)
    assert backend.model.kwargs["known"].tolist() == [[1, 2, 3, -1]]
    assert backend.model.kwargs["edit_mask"] is edit_mask
    assert out.tolist() == [[[7, 11, 21], [8, -1, -1], [9, 13, 23], [-1, -1, -1]]]


def test_momask_edit_keeps_no_layers_at_pads():
    base = torch.tensor([[7, -1]])
    known = torch.tensor([[[1, 11], [5, 15]]])
    backend = _momask(base, layers=2)
    out = backend.sample_tokens(torch.zeros(1, 2), torch.tensor([1]), backend.settings(), None, known=known,
                                edit_mask=torch.tensor([[False, False]]))
    assert out.tolist() == [[[7, 11], [-1, -1]]]


def test_momask_passes_its_settings_to_both_transformers():
    base = torch.tensor([[3, 4]])
    residual = Recorder(torch.zeros(1, 2, 3, dtype=torch.long))
    backend = _momask(base, residual=residual)
    settings = backend.settings(time_steps=3, cfg=1.5, temperature=0.7, topk_filter_thres=0.5, sampling="gumbel",
                                res_cond_scale=2.5, res_temperature=0.3)
    g = torch.Generator()
    known = torch.zeros(1, 2, 3, dtype=torch.long)
    edit_mask = torch.tensor([[True, False]])
    backend.sample_tokens(torch.zeros(1, 2), torch.tensor([2]), settings, g, known=known, edit_mask=edit_mask)
    kw = backend.model.kwargs
    assert (kw["time_steps"], kw["cond_scale"], kw["temperature"], kw["topk_filter_thres"], kw["sampling"]) == \
        (3, 1.5, 0.7, 0.5, "gumbel")
    assert kw["generator"] is g
    rk = residual.kwargs
    assert (rk["cond_scale"], rk["temperature"], rk["topk_filter_thres"], rk["sampling"]) == (2.5, 0.3, 0.5, "gumbel")
    assert rk["known"] is known and rk["edit_mask"] is edit_mask and rk["generator"] is g
    settings = backend.settings(sampling="categorical")
    backend.sample_tokens(torch.zeros(1, 2), torch.tensor([2]), settings, None)
    assert backend.model.kwargs["sampling"] == "categorical" and residual.kwargs["sampling"] == "gumbel"


def test_momask_decodes_codes_as_integers():
    seen = []
    tokenizer = SimpleNamespace(kind="vq", num_quantizers=1, decode=lambda t: seen.append(t.dtype) or t)
    MoMaskBackend(None, tokenizer).decode_tokens(torch.tensor([[1.0, 2.0]]), True)
    assert seen == [torch.long]


def test_momask_residual_needs_an_rvq_tokenizer():
    backend = MoMaskBackend(None, SimpleNamespace(kind="vq", source="tok.tar"))
    with pytest.raises(CheckpointError, match="RVQ"):
        backend.attach_residual({"model_name": "MoMask-Res-Tiny"}, {}, "res.tar", torch.device("cpu"))
    with pytest.raises(CheckpointError, match="not a residual transformer"):
        backend.attach_residual({"model_name": "MoMask-Mask-Tiny"}, {}, "res.tar", torch.device("cpu"))


def test_momask_transformers_must_generate_codes():
    with pytest.raises(CheckpointError, match="MoMask transformers generate"):
        MoMaskBackend.from_checkpoint({"model_name": "MoMask-Mask-Tiny", "model_args": {}, "target": "latent"},
                                      {}, "m.tar", None, None, torch.device("cpu"))


# ---------------------------------------------------------------------------------------------------------------------
# MARDM backend plumbing
# ---------------------------------------------------------------------------------------------------------------------

class StubHead:
    def check_sampler(self, steps, solver):
        if solver == "bad":
            raise ValueError("unknown solver")


def _mardm(kind="vq"):
    backend = MARDMBackend.__new__(MARDMBackend)
    backend.model = Recorder(torch.zeros(1, 2, 3))
    backend.model.head = StubHead()
    decoded = []

    class Model:
        def decode_from_grid(self, tokens, snap):
            decoded.append(("grid", snap))
            return tokens

        def decode_latent(self, latents):
            decoded.append(("latent", latents.clone()))
            return latents

    backend.tokenizer = SimpleNamespace(kind=kind, model=Model())
    backend.target = "vq_codes"
    backend.snap_fn = lambda t: t.round()
    backend.latent_fn = lambda t: t * 10
    return backend, decoded


def test_mardm_passes_its_settings_to_the_model():
    backend, _ = _mardm()
    settings = backend.settings(time_steps=3, cfg=1.5, temperature=0.7, head_steps=5, head_solver="euler")
    g = torch.Generator()
    known, edit_mask = torch.zeros(1, 2, 3), torch.tensor([[True, False]])
    backend.sample_tokens(torch.zeros(1, 2), torch.tensor([2]), settings, g, known=known, edit_mask=edit_mask)
    kw = backend.model.kwargs
    assert (kw["time_steps"], kw["cfg"], kw["temperature"], kw["head_steps"], kw["head_solver"]) == \
        (3, 1.5, 0.7, 5, "euler")
    assert kw["snap_fn"] is backend.snap_fn and kw["latent_fn"] is backend.latent_fn
    assert kw["known"] is known and kw["edit_mask"] is edit_mask and kw["generator"] is g
    backend.sample_tokens(torch.zeros(1, 2), torch.tensor([2]), backend.settings(snap=False), None)
    assert backend.model.kwargs["snap_fn"] is None


def test_mardm_refuses_a_sampler_its_head_refuses():
    backend, _ = _mardm()
    with pytest.raises(ValueError, match="--head_solver bad"):
        backend.settings(head_solver="bad")


def test_mardm_decodes_snapped_latents_unless_told_not_to_snap():
    backend, decoded = _mardm("vq")
    tokens = torch.tensor([[[0.4, 1.6]]])
    backend.decode_tokens(tokens, True)
    torch.testing.assert_close(decoded[-1][1], torch.tensor([[[0.0, 20.0]]]))
    backend.decode_tokens(tokens, False)
    torch.testing.assert_close(decoded[-1][1], torch.tensor([[[4.0, 16.0]]]))


@pytest.mark.parametrize("snap", [True, False])
def test_mardm_grid_tokenizers_decode_from_the_grid_with_the_snap_asked_for(snap):
    backend, decoded = _mardm("fsq")
    backend.decode_tokens(torch.zeros(1, 1, 2), snap)
    assert decoded == [("grid", snap)]
