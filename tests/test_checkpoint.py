"""Checkpoint I/O: atomic writes, weights_only loading, clear errors for unusable files."""

import os

import pytest
import torch

from utils.checkpoint import (
    CheckpointError,
    check_matches,
    load_checkpoint,
    remove_stale_temporaries,
    save_checkpoint,
    unwrap_model,
)


def test_round_trip_and_version(tmp_path):
    path = str(tmp_path / "model" / "latest.tar")
    save_checkpoint(path, {"model": {"w": torch.arange(3.0)}, "step": 7, "model_args": {"width": 4, "levels": [8, 5]}})
    state = load_checkpoint(path)
    assert state["format_version"] == 1 and state["step"] == 7
    assert torch.equal(state["model"]["w"], torch.arange(3.0))
    assert state["model_args"]["levels"] == [8, 5]
    assert not [n for n in os.listdir(tmp_path / "model") if n.startswith(".tmp-")]


def test_non_plain_values_refused_before_writing(tmp_path):
    path = str(tmp_path / "x.tar")
    with pytest.raises(TypeError, match=r"checkpoint.config.opt is a Namespace"):
        import argparse
        save_checkpoint(path, {"config": {"opt": argparse.Namespace(a=1)}})
    assert not os.path.exists(path)


def test_failed_write_keeps_previous_file(tmp_path, monkeypatch):
    path = str(tmp_path / "latest.tar")
    save_checkpoint(path, {"step": 1})

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", boom)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(path, {"step": 2})
    monkeypatch.undo()
    assert load_checkpoint(path)["step"] == 1
    assert os.listdir(tmp_path) == ["latest.tar"]


def test_truncated_empty_missing_and_unsafe_files(tmp_path):
    good = str(tmp_path / "good.tar")
    save_checkpoint(good, {"model": {"w": torch.randn(64, 64)}})
    data = open(good, "rb").read()
    trunc = tmp_path / "trunc.tar"
    trunc.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="trunc.tar: not a readable checkpoint"):
        load_checkpoint(str(trunc))
    (tmp_path / "empty.tar").write_bytes(b"")
    with pytest.raises(CheckpointError, match="empty file"):
        load_checkpoint(str(tmp_path / "empty.tar"))
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(str(tmp_path / "missing.tar"))
    evil = tmp_path / "evil.tar"
    torch.save({"obj": _Payload()}, str(evil))
    with pytest.raises(CheckpointError, match="evil.tar: refused to load"):
        load_checkpoint(str(evil))


class _Payload:
    def __reduce__(self):
        return (os.system, ("echo should-not-run",))


def test_stale_temporaries_removed(tmp_path):
    (tmp_path / ".tmp-latest.tar.abc").write_bytes(b"partial")
    (tmp_path / "latest.tar").write_bytes(b"x")
    assert remove_stale_temporaries(str(tmp_path)) == [".tmp-latest.tar.abc"]
    assert os.listdir(tmp_path) == ["latest.tar"]


# torch.compile imports torch._dynamo, whose own modules still call torch.jit.script_method.
@pytest.mark.filterwarnings("ignore:`torch.jit.script_method` is deprecated:DeprecationWarning")
def test_unwrap_and_mismatch_message():
    net = torch.nn.Linear(2, 2)
    assert unwrap_model(torch.compile(net)) is net
    with pytest.raises(CheckpointError, match=r"a.tar: model_name is 'AE_Model' in the checkpoint but 'FSQ_AE_High'"):
        check_matches("a.tar", "model_name", "AE_Model", "FSQ_AE_High")
