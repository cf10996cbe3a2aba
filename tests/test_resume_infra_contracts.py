"""Resume and checkpoint-safety helpers: atomic writes keep the process umask and a message-only error as it was and
give new files the umask's permissions; the EMA's shadow is its own copy (of buffers, of a loaded state, of its
state dict) and its key refusals name both sides; seeding reduces any seed to NumPy's range the way NumPy would and
RNG state round-trips mid-stream (Gaussian caches included); the GT cache keeps one entry per seed, treats an entry
missing a field as unreadable and gives up writing after the first failure; the tokenizer loss applies the chosen
kind to every term, gates the velocity term on its own weight and logs detached values. A resumed checkpoint whose EMA
weights do not fit is refused naming the file."""

from __future__ import annotations

import logging
import os
import random
import re
import stat
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from test_engine import META, Toy, ToyData, loss_fn, make_cfg, run_toy
from torch import nn

from utils.atomic_io import atomic_path, atomic_write
from utils.checkpoint import CheckpointError
from utils.ema import EMA
from utils.engine import train
from utils.gt_cache import GTCache, GTEmbeddings
from utils.losses import position_loss, reconstruction_loss, tokenizer_loss, velocity_loss
from utils.seed import get_rng_state, seed_cpu_generators, set_rng_state, set_seed

# ---------------------------------------------------------------------------------------------------------- atomic io

@pytest.fixture
def umask_002():
    """The process umask set to 002 (a group-shared cluster folder) for the test, and put back after it."""
    previous = os.umask(0o002)
    yield
    os.umask(previous)


@pytest.mark.parametrize("writer", ["atomic_write", "atomic_path"])
def test_a_new_file_gets_the_permissions_of_the_process_umask(tmp_path, umask_002, writer):
    path = tmp_path / "opt.yaml"
    if writer == "atomic_write":
        with atomic_write(path) as f:
            f.write("x")
    else:
        with atomic_path(path) as tmp:
            with open(tmp, "w") as f:
                f.write("x")
    assert stat.S_IMODE(path.stat().st_mode) == 0o664


def test_writing_leaves_the_process_umask_as_it_was(tmp_path, umask_002):
    with atomic_write(tmp_path / "new.txt") as f:
        f.write("x")
    current = os.umask(0o002)
    assert current == 0o002


def test_an_error_without_errno_raised_in_the_block_goes_on_unchanged(tmp_path):
    """Only an OSError that has an errno but names no file is re-raised naming the file; a plain OSError("...")
    keeps its own message."""
    error = OSError("evaluator went away")
    with pytest.raises(OSError) as raised:
        with atomic_write(tmp_path / "out.txt") as f:
            f.write("x")
            raise error
    assert raised.value is error
    assert os.listdir(tmp_path) == []


# ---------------------------------------------------------------------------------------------------------------- EMA

class _WithBuffer(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(3))
        self.register_buffer("count", torch.zeros(3))


def test_loading_an_ema_state_leaves_the_tracked_models_buffers_alone():
    model = _WithBuffer()
    ema = EMA(model, 0.5)
    ema.load_state_dict({"weight": torch.full((3,), 4.0), "count": torch.full((3,), 7.0)})
    assert model.count.tolist() == [0.0, 0.0, 0.0]
    assert ema.state_dict()["count"].tolist() == [7.0, 7.0, 7.0]


def test_the_buffer_shadow_is_the_value_at_the_last_update_not_a_live_view():
    model = _WithBuffer()
    ema = EMA(model, 0.5)
    model.count.fill_(5.0)
    assert ema.state_dict()["count"].tolist() == [0.0, 0.0, 0.0]
    ema.update(model)
    assert ema.state_dict()["count"].tolist() == [5.0, 5.0, 5.0]


def test_a_loaded_ema_state_is_copied_in_fp32_and_later_updates_leave_the_callers_dict_alone():
    model = _WithBuffer()
    ema = EMA(model, 0.5)
    saved = {"weight": torch.full((3,), 3.0, dtype=torch.float16), "count": torch.zeros(3)}
    ema.load_state_dict(saved)
    assert ema.state_dict()["weight"].dtype == torch.float32
    ema.update(model)  # 0.5 * 3 + 0.5 * 1
    assert ema.state_dict()["weight"].tolist() == [2.0, 2.0, 2.0]
    assert saved["weight"].tolist() == [3.0, 3.0, 3.0]


def test_changing_the_returned_state_dict_does_not_change_the_ema():
    model = _WithBuffer()
    ema = EMA(model, 0.5)
    state = ema.state_dict()
    state.pop("count")
    assert set(ema.state_dict()) == {"weight", "count"}
    ema.update(model)  # still tracks every key


def test_loading_an_ema_state_with_a_missing_or_extra_key_is_refused_naming_both():
    ema = EMA(_WithBuffer(), 0.5)
    with pytest.raises(KeyError, match=r"keys differ from the model's: missing \['count'\], unexpected \[\]"):
        ema.load_state_dict({"weight": torch.ones(3)})
    with pytest.raises(KeyError, match=r"missing \[\], unexpected \['extra'\]"):
        ema.load_state_dict({"weight": torch.ones(3), "count": torch.zeros(3), "extra": torch.zeros(1)})


def test_updating_with_a_model_with_an_extra_weight_names_it_as_unexpected():
    ema = EMA(nn.Linear(2, 2, bias=False), 0.5)
    with pytest.raises(KeyError, match=r"missing \[\], unexpected \['bias'\]"):
        ema.update(nn.Linear(2, 2))


# -------------------------------------------------------------------------------------------------------- seeding

def _draws() -> tuple:
    return random.random(), random.gauss(0.0, 1.0), float(np.random.standard_normal()), float(np.random.rand()), \
        torch.rand(1).item()


def test_rng_state_captured_mid_gaussian_pair_round_trips():
    """Python's gauss and NumPy's legacy normal draw values in pairs and cache the second: a state captured between
    the two must restore the cache, and NumPy's position in its key block, too."""
    set_seed(11)
    random.gauss(0.0, 1.0)
    np.random.standard_normal()
    np.random.rand(3)
    state = get_rng_state(include_cuda=False)
    assert state["python"]["gauss_next"] is not None and state["numpy"]["has_gauss"] == 1
    expected = _draws()
    set_seed(12)
    _draws()
    set_rng_state(state)
    assert _draws() == expected


@pytest.mark.parametrize("seed", [2**32 + 5, 2**40 + 5])
def test_a_seed_past_numpys_range_seeds_numpy_with_its_value_modulo_2_to_the_32(seed):
    np.random.seed(seed % 2**32)
    expected = np.random.rand(4)
    set_seed(seed)
    np.testing.assert_array_equal(np.random.rand(4), expected)
    seed_cpu_generators(seed)
    np.testing.assert_array_equal(np.random.rand(4), expected)


def test_per_sample_seeding_sets_every_host_generator_as_set_seed_does():
    for seed in (3, 2**31 + 3):
        set_seed(seed)
        expected = (random.random(), np.random.rand(2).tolist(), torch.rand(2).tolist())
        set_seed(seed + 1)
        seed_cpu_generators(seed)
        assert (random.random(), np.random.rand(2).tolist(), torch.rand(2).tolist()) == expected


def test_set_seed_seeds_pythons_random_too():
    set_seed(4)
    first = random.random()
    random.seed(99)
    set_seed(4)
    assert random.random() == first


def test_rng_state_leaves_out_cuda_when_not_asked_or_not_initialised(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_rng_state_all", lambda: [torch.zeros(8, dtype=torch.uint8)])
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: True)
    assert "cuda" not in get_rng_state(include_cuda=False)
    assert len(get_rng_state()["cuda"]) == 1
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: False)
    assert "cuda" not in get_rng_state()


# ------------------------------------------------------------------------------------------------------- GT cache

def _entry(value: float) -> GTEmbeddings:
    return GTEmbeddings(np.full((2, 4), value, np.float32), np.full((2, 4), -value, np.float32),
                        np.array([40, 32]), np.array([7, 5]))


def test_each_replication_seed_keeps_its_own_entry(tmp_path):
    cache = GTCache(str(tmp_path / "gt_cache"))
    key = "a" * 64
    cache.save(key, 0, _entry(1.0))
    cache.save(key, 1, _entry(2.0))
    assert cache.load(key, 0).text_emb[0, 0] == 1.0
    assert cache.load(key, 1).text_emb[0, 0] == 2.0
    assert cache.load(key, 2) is None


def test_an_absent_entry_is_a_quiet_miss(tmp_path, caplog):
    cache = GTCache(str(tmp_path))
    with caplog.at_level(logging.WARNING):
        assert cache.load("b" * 64, 0) is None
    assert caplog.text == ""


def test_an_entry_missing_a_field_is_recomputed(tmp_path, caplog):
    """An entry from a version that stored fewer arrays (no sent_lens) is unreadable, not a crash."""
    cache = GTCache(str(tmp_path))
    key = "c" * 64
    entry = _entry(1.0)
    np.savez(cache.path(key, 3), key=np.array(key), text_emb=entry.text_emb, motion_emb=entry.motion_emb,
             m_lengths=entry.m_lengths)
    with caplog.at_level(logging.WARNING):
        assert cache.load(key, 3) is None
    assert "is unreadable" in caplog.text and "sent_lens" in caplog.text


def test_an_unwritable_cache_folder_warns_once_and_evaluation_goes_on(tmp_path, caplog):
    (tmp_path / "evaluator").write_text("a file where the folder should be")
    cache = GTCache(str(tmp_path / "evaluator" / "gt_cache"))
    with caplog.at_level(logging.WARNING):
        cache.save("d" * 64, 0, _entry(1.0))
        cache.save("d" * 64, 1, _entry(1.0))
    assert caplog.text.count("cannot write the GT embedding cache") == 1
    assert cache.load("d" * 64, 0) is None


# --------------------------------------------------------------------------------------------------------- losses

def test_every_tokenizer_loss_term_uses_the_chosen_kind_and_logs_it():
    torch.manual_seed(0)
    recon, target = torch.randn(2, 6, 8) * 3, torch.randn(2, 6, 8)
    out = SimpleNamespace(aux_loss=torch.tensor(0.0), perplexity=1.0)
    sl = slice(1, 5)
    loss, logs = tokenizer_loss(recon, target, out, sl, "mse", w_pos=1.0, w_vel=1.0)
    assert logs["rec"] == reconstruction_loss(recon, target, "mse")
    assert logs["pos"] == position_loss(recon, target, sl, "mse")
    assert logs["vel"] == velocity_loss(recon, target, sl, "mse")
    assert loss.item() == pytest.approx((logs["rec"] + logs["pos"] + logs["vel"]).item(), rel=1e-6)


def test_the_velocity_term_is_computed_when_only_its_weight_is_set():
    torch.manual_seed(1)
    recon, target = torch.randn(2, 6, 8), torch.randn(2, 6, 8)
    out = SimpleNamespace(aux_loss=torch.tensor(0.0), perplexity=1.0)
    loss, logs = tokenizer_loss(recon, target, out, slice(0, 4), w_pos=0.0, w_vel=2.0)
    vel = velocity_loss(recon, target, slice(0, 4))
    assert logs["pos"].item() == 0.0 and logs["vel"] == vel
    assert loss.item() == pytest.approx((reconstruction_loss(recon, target) + 2.0 * vel).item(), rel=1e-6)


def test_velocity_loss_of_two_frames_is_the_loss_of_their_difference():
    pred = torch.tensor([[[0.0, 1.0], [2.0, 5.0]]])
    target = torch.zeros(1, 2, 2)
    # differences over T: [2, 4] against [0, 0]; features outside the slice are ignored
    assert velocity_loss(pred, target, slice(0, 2), "l1").item() == pytest.approx(3.0)
    assert velocity_loss(pred, target, slice(1, 2), "mse").item() == pytest.approx(16.0)


@pytest.mark.parametrize("shape", [(1,), (3, 3)], ids=str)
def test_loading_an_ema_state_of_another_shape_is_refused_naming_the_weight(shape):
    """A (1,) tensor would broadcast over the (2, 3) weight; a (3, 3) one failed inside copy_ without a name."""
    ema = EMA(nn.Linear(3, 2), 0.5)
    before = {name: value.clone() for name, value in ema.state_dict().items()}
    with pytest.raises(ValueError, match=rf"EMA.load_state_dict: weight has shape {re.escape(str(shape))}, "
                                         r"expected \(2, 3\)"):
        ema.load_state_dict({"bias": torch.ones(2), "weight": torch.ones(shape)})
    # nothing was loaded: the bias, which fitted, was not copied either
    for name, value in ema.state_dict().items():
        assert torch.equal(value, before[name])


def test_a_resumed_checkpoint_whose_ema_weights_do_not_fit_is_refused_naming_it(tmp_path):
    run, _ = run_toy(tmp_path, "ema", make_cfg(max_iters=2, ema_decay=0.9))
    ckpt = torch.load(run.latest_path, weights_only=True)
    name = next(iter(ckpt["ema"]))
    ckpt["ema"][name] = torch.ones(1)
    torch.save(ckpt, run.latest_path)
    with pytest.raises(CheckpointError, match=rf"^{re.escape(run.latest_path)}: the saved EMA weights do not fit this "
                                              rf"model \(EMA.load_state_dict: {name} has shape \(1,\)"):
        train(Toy(), ToyData(), loss_fn, make_cfg(is_continue=True, ema_decay=0.9), run, checkpoint_meta=META)
