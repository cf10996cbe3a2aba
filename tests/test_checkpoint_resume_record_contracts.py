"""Checkpoint I/O and the training engine: plain-value conversion, unwrapping, where files are written, how damaged
or foreign files are described, the record checks loaders use, what the best checkpoint holds, and resume details."""

from __future__ import annotations

import io
import re
import tarfile

import numpy as np
import pytest
import torch
from test_engine import META, Toy, ToyData, loss_fn, make_cfg, run_toy
from torch import nn

from utils import checkpoint
from utils.checkpoint import (
    CheckpointError,
    check_plain,
    load_checkpoint,
    require_types,
    save_checkpoint,
    to_plain,
    unwrap_model,
)
from utils.engine import EngineConfig, train
from utils.run_dir import RunDir
from utils.seed import set_seed


def small_cfg(**kw) -> EngineConfig:
    """Six steps at a constant learning rate, logging, saving and validating every third."""
    return make_cfg(**{"max_iters": 6, "warm_up_iter": 0, "milestones": (), "log_every": 3, "save_every": 3,
                       "eval_every": 3, **kw})


# -- plain values and unwrapping --------------------------------------------------------------------------------------

def test_to_plain_turns_numpy_scalars_of_every_kind_into_storable_values(tmp_path):
    """A numpy date or bytes scalar's ``.item()`` is a datetime / bytes object, which a checkpoint cannot hold."""
    plain = to_plain({"day": np.datetime64("2020-01-02", "D"), "raw": np.bytes_(b"ab"), "x": np.float32(0.5)})
    check_plain(plain)
    assert plain["x"] == 0.5 and isinstance(plain["day"], str) and isinstance(plain["raw"], str)
    path = str(tmp_path / "dump.tar")
    save_checkpoint(path, {"batch": plain})
    assert load_checkpoint(path)["batch"]["x"] == 0.5


def test_unwrap_model_strips_data_parallel():
    net = nn.Linear(2, 2)
    assert unwrap_model(nn.DataParallel(net)) is net


# -- where a checkpoint is written ------------------------------------------------------------------------------------

def test_a_bare_file_name_is_written_to_the_working_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    save_checkpoint("plain.tar", {"step": 2})
    assert load_checkpoint(str(tmp_path / "plain.tar"))["step"] == 2


# -- damaged and foreign files ----------------------------------------------------------------------------------------

def test_text_whose_first_bytes_end_inside_a_character_is_still_called_text(tmp_path):
    path = tmp_path / "notes.tar"
    path.write_bytes("é".encode() * 300)  # the bytes read for the check end halfway through an "é"
    with pytest.raises(CheckpointError, match="notes.tar: not a PyTorch checkpoint: .*found text starting with 'ééé"):
        load_checkpoint(str(path))


def test_tensor_bytes_are_checked_in_a_file_exactly_at_the_crc_size_limit(tmp_path, monkeypatch):
    path = tmp_path / "flipped.tar"
    save_checkpoint(str(path), {"model": {"w": torch.randn(128, 128)}})
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle:middle + 64] = bytes(64)
    path.write_bytes(bytes(data))
    monkeypatch.setattr(checkpoint, "CRC_CHECK_MAX_BYTES", len(data))
    with pytest.raises(CheckpointError, match="fails its CRC-32 check"):
        load_checkpoint(str(path))


def test_a_saved_optimizer_state_without_its_groups_is_refused_naming_the_file(tmp_path):
    """torch raises a bare KeyError('param_groups'); the refusal names the checkpoint as for a state that does not
    fit."""
    run, _ = run_toy(tmp_path, "run", small_cfg(max_iters=3))
    ckpt = load_checkpoint(run.latest_path)
    del ckpt["optimizer"]["param_groups"]
    save_checkpoint(run.latest_path, ckpt)
    with pytest.raises(CheckpointError, match=re.escape(f"{run.latest_path}: the saved optimizer state does not fit "
                                                        "this run's optimizer")):
        train(Toy(), ToyData(), loss_fn, small_cfg(is_continue=True), run, checkpoint_meta=META)


def test_a_tar_archive_is_refused_naming_the_file_and_what_it_is(tmp_path):
    """A ``.tar`` that is a real tar archive (a packed run folder, or torch.save's format from before PyTorch 1.0,
    which torch refuses to load weights_only) gets a CheckpointError naming the file, not torch's advice to turn
    weights_only off."""
    path = tmp_path / "latest.tar"
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as archive:
        data = b"step 10"
        info = tarfile.TarInfo("model/notes.txt")
        info.size = len(data)
        archive.addfile(info, io.BytesIO(data))
    with pytest.raises(CheckpointError, match=re.escape(f"{path}: not a checkpoint this code loads: a tar archive")):
        load_checkpoint(str(path))


# -- record checks ----------------------------------------------------------------------------------------------------

def test_require_types_names_the_entry_its_type_and_what_was_expected():
    require_types({"model": {}, "unit_length": 4}, {"model": dict, "unit_length": int, "absent": int}, "g.tar")
    with pytest.raises(CheckpointError, match=r"g.tar: entry 'unit_length' is str '4'; expected int or None$"):
        require_types({"unit_length": "4"}, {"unit_length": (int, type(None)), "absent": int}, "g.tar")
    with pytest.raises(CheckpointError, match=r"g.tar: entry 'unit_length' is NoneType None; expected int$"):
        require_types({"unit_length": None}, {"unit_length": int}, "g.tar")


def test_require_types_quotes_a_value_of_sixty_characters_whole_and_shortens_a_longer_one():
    exact = "x" * 58  # repr adds the two quotes
    with pytest.raises(CheckpointError) as error:
        require_types({"name": exact}, {"name": int}, "g.tar")
    assert f"is str {exact!r};" in str(error.value)
    with pytest.raises(CheckpointError) as error:
        require_types({"name": exact + "y"}, {"name": int}, "g.tar")
    assert f"is str {repr(exact + 'y')[:57]}...;" in str(error.value)


# -- the best checkpoint and resume records ---------------------------------------------------------------------------

def decreasing_then_flat(model: nn.Module) -> dict[str, float]:
    """A validation score that improves at the first two validations and then stays put."""
    decreasing_then_flat.calls += 1
    return {"val_loss": float(max(3 - decreasing_then_flat.calls, 0))}


def test_the_best_checkpoint_holds_weights_and_records_but_no_resume_state(tmp_path):
    decreasing_then_flat.calls = 0
    run, result = run_toy(tmp_path, "run", small_cfg(), val_fn=decreasing_then_flat)
    best = load_checkpoint(result.best_path)
    assert best["step"] == 6 and best["best"]["step"] == 6 and best["best"]["value"] == 1.0
    assert best["best"]["evaluated_with"] == "model"
    assert not {"optimizer", "data_state", "rng", "loss_window", "log_off_cadence"} & set(best)
    latest = load_checkpoint(run.latest_path)
    assert {"optimizer", "data_state", "rng", "loss_window"} <= set(latest)


def test_a_resumed_run_keeps_the_step_of_its_best_score_and_of_its_last_validation(tmp_path):
    """The best step comes from the best record, the metrics' step from when they were taken, not the resumed step."""
    decreasing_then_flat.calls = 0
    cfg = dict(eval_every=3, save_every=2)
    run, first = run_toy(tmp_path, "run", small_cfg(max_iters=4, **cfg), val_fn=decreasing_then_flat)
    assert (first.best_step, first.metrics_step, first.step) == (3, 3, 4)
    resumed = train(Toy(), ToyData(), loss_fn, small_cfg(max_iters=5, is_continue=True, **cfg), run,
                    checkpoint_meta=META, val_fn=decreasing_then_flat)
    assert (resumed.best_step, resumed.metrics_step, resumed.step) == (3, 3, 5)
    assert load_checkpoint(run.latest_path)["best"]["step"] == 3


def test_rng_streams_reseeded_after_a_process_count_change_differ_from_the_runs_start(tmp_path):
    """Reseeding depends on the step, so a resumed run does not replay the random draws of its first steps."""
    draws = []

    def drawing_loss(model, batch):
        draws.append(torch.rand(1).item())
        return loss_fn(model, batch)

    set_seed(0)
    run = RunDir(str(tmp_path / "checkpoints"), "t2m", "run")
    train(Toy(), ToyData(), drawing_loss, small_cfg(max_iters=3), run, checkpoint_meta=META)
    ckpt = load_checkpoint(run.latest_path)
    ckpt["rng"] = ckpt["rng"] * 2  # as if saved by two processes
    ckpt["loss_window"] = ckpt["loss_window"] * 2
    save_checkpoint(run.latest_path, ckpt)
    first_draws = list(draws)
    draws.clear()
    train(Toy(), ToyData(), drawing_loss, small_cfg(max_iters=6, is_continue=True), run, checkpoint_meta=META)
    assert len(draws) == 3 and draws != first_draws


@pytest.mark.parametrize("edit", ["extra", "missing", "shape"])
def test_resumed_weights_that_do_not_fit_the_model_are_refused_naming_the_file(tmp_path, edit):
    """Same stage, model name and arguments, but weights of another layout (a hand-edited file, or model code that
    changed since the run was saved): the refusal names the checkpoint, as for the optimizer and EMA states."""
    run, _ = run_toy(tmp_path, "run", small_cfg(max_iters=4))
    ckpt = load_checkpoint(run.latest_path)
    weights = ckpt["model"]
    if edit == "extra":
        weights["net.9.weight"] = torch.zeros(1)
    elif edit == "missing":
        del weights["net.3.bias"]
    else:
        weights["net.3.bias"] = torch.zeros(3)
    save_checkpoint(run.latest_path, ckpt)
    with pytest.raises(CheckpointError, match=re.escape(f"{run.latest_path}: the saved model weights do not fit this "
                                                        "model (") + r"(?s:.*)net\.(9\.weight|3\.bias)"):
        train(Toy(), ToyData(), loss_fn, small_cfg(is_continue=True), run, checkpoint_meta=META)
