"""Checkpoint I/O: atomic writes, weights_only loading, clear errors for unusable files."""

import collections
import enum
import os
from typing import NamedTuple

import numpy as np
import pytest
import torch

from utils import checkpoint
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
    mapped = load_checkpoint(path, mmap=True)  # the records, the weights mapped from the file
    assert mapped["step"] == 7 and torch.equal(mapped["model"]["w"], torch.arange(3.0))
    assert not [n for n in os.listdir(tmp_path / "model") if n.startswith(".tmp-")]


def test_non_plain_values_refused_before_writing(tmp_path):
    path = str(tmp_path / "x.tar")
    with pytest.raises(TypeError, match=r"checkpoint.config.opt is a Namespace"):
        import argparse
        save_checkpoint(path, {"config": {"opt": argparse.Namespace(a=1)}})
    assert not os.path.exists(path)


class _Pair(NamedTuple):
    a: int
    b: int


class _Split(enum.IntEnum):
    TRAIN = 1


@pytest.mark.parametrize("value", [np.float64(0.5), _Pair(1, 2), collections.defaultdict(int, a=1), _Split.TRAIN,
                                   {_Split.TRAIN: 1}], ids=["np.float64", "namedtuple", "defaultdict", "IntEnum",
                                                            "IntEnum key"])
def test_subclasses_of_plain_types_are_refused_before_writing(tmp_path, value):
    # A numpy float is a float and a NamedTuple a tuple, but torch.save pickles their own classes, which weights_only
    # loading refuses: the file would be written and then never load.
    path = str(tmp_path / "x.tar")
    with pytest.raises(TypeError, match="checkpoint.metrics"):
        save_checkpoint(path, {"metrics": value})
    assert not os.path.exists(path)


def test_plain_values_of_every_accepted_type_load_weights_only(tmp_path):
    path = str(tmp_path / "x.tar")
    state = {"none": None, "flag": True, "n": 3, "x": 0.5, "s": "a", "dtype": torch.float16,
             "device": torch.device("cpu"), "tensor": torch.ones(2), "param": torch.nn.Parameter(torch.ones(2)),
             "ordered": collections.OrderedDict(a=1), "shape": torch.Size([2, 3]), "nested": [(1, "b"), {2: [None]}],
             True: 1}
    save_checkpoint(path, state)
    assert load_checkpoint(path)["ordered"] == {"a": 1}


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


def test_files_that_are_not_checkpoints_are_named_and_described(tmp_path):
    cases = {"notes.txt": b"step 100: loss 0.42\n",
             "page.tar": b"<!DOCTYPE html>\n<html><body>404 Not Found</body></html>",
             "lfs.tar": b"version https://git-lfs.github.com/spec/v1\noid sha256:abc\nsize 1234\n",
             "noise.tar": bytes(range(200, 256)) * 40}
    expected = {"notes.txt": "text starting with 'step 100: loss 0.42'", "page.tar": "an HTML page",
                "lfs.tar": "a Git LFS pointer", "noise.tar": "binary data starting with c8 c9"}
    for name, data in cases.items():
        (tmp_path / name).write_bytes(data)
        with pytest.raises(CheckpointError, match=f"{name}: not a PyTorch checkpoint: .*found {expected[name]}"):
            load_checkpoint(str(tmp_path / name))
    import zipfile
    with zipfile.ZipFile(tmp_path / "other.zip", "w") as archive:
        archive.writestr("readme.txt", "hello")
    with pytest.raises(CheckpointError, match=r"other.zip: not a PyTorch checkpoint: a zip archive without data.pkl"):
        load_checkpoint(str(tmp_path / "other.zip"))


@pytest.mark.parametrize("crc_limit", [None, 0])
def test_overwritten_tensor_bytes_are_caught_by_the_zip_crc(tmp_path, monkeypatch, crc_limit):
    path = tmp_path / "flipped.tar"
    weights = torch.randn(256, 256)
    save_checkpoint(str(path), {"model": {"w": weights}})
    data = bytearray(path.read_bytes())
    middle = len(data) // 2  # inside the 256 KB of tensor data
    data[middle:middle + 64] = bytes(64)
    path.write_bytes(bytes(data))
    if crc_limit is None:
        with pytest.raises(CheckpointError, match=r"flipped.tar: not a readable checkpoint \(truncated or corrupt\?\): "
                                                  r"member '[^']*data/0' fails its CRC-32 check"):
            load_checkpoint(str(path))
    else:
        # Above CRC_CHECK_MAX_BYTES only the metadata members are checked: the tensor bytes are trusted.
        monkeypatch.setattr(checkpoint, "CRC_CHECK_MAX_BYTES", crc_limit)
        assert not torch.equal(load_checkpoint(str(path))["model"]["w"], weights)


def test_pre_zip_torch_files_still_load(tmp_path):
    path = tmp_path / "legacy.pth"
    torch.save({"net": {"w": torch.arange(4.0)}}, str(path), _use_new_zipfile_serialization=False)
    assert torch.equal(load_checkpoint(str(path))["net"]["w"], torch.arange(4.0))
    assert torch.equal(load_checkpoint(str(path), mmap=True)["net"]["w"], torch.arange(4.0))  # read: no zip to map
    path.write_bytes(path.read_bytes()[:-40])
    with pytest.raises(CheckpointError, match="legacy.pth: not a readable checkpoint"):
        load_checkpoint(str(path))


def test_errors_not_about_the_file_go_through(tmp_path, monkeypatch):
    path = str(tmp_path / "ok.tar")
    save_checkpoint(path, {"step": 1})

    def no_cuda(*args, **kwargs):
        raise RuntimeError("Attempting to deserialize object on a CUDA device but torch.cuda.is_available() is False")

    monkeypatch.setattr(torch, "load", no_cuda)
    with pytest.raises(RuntimeError, match="deserialize object on a CUDA device") as info:
        load_checkpoint(path)
    assert not isinstance(info.value, CheckpointError)


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


def test_a_file_written_without_checksums_loads(tmp_path):
    """torch.serialization.set_crc32_options(False) writes 0 for every member's CRC-32: nothing to verify, no error."""
    path = str(tmp_path / "no_crc.tar")
    before = torch.serialization.get_crc32_options()
    torch.serialization.set_crc32_options(False)
    try:
        torch.save({"w": torch.arange(4.0)}, path)
    finally:
        torch.serialization.set_crc32_options(before)
    assert torch.equal(load_checkpoint(path)["w"], torch.arange(4.0))


# torch marks the jit API deprecated; OpenAI's CLIP ViT-B-32.pt is such an archive.
@pytest.mark.filterwarnings("ignore:`torch.jit:DeprecationWarning")
def test_a_torchscript_archive_is_named_and_described(tmp_path):
    path = str(tmp_path / "ViT-B-32.pt")
    torch.jit.trace(torch.nn.Linear(2, 2), torch.zeros(1, 2)).save(path)
    with pytest.raises(CheckpointError, match=r"ViT-B-32.pt: not a checkpoint: a TorchScript archive"):
        load_checkpoint(path)


def test_a_folder_given_for_a_checkpoint_names_the_checkpoints_in_it(tmp_path):
    """load_tokenizer(<run folder>) said "checkpoint not found" of a folder that exists."""
    run = tmp_path / "run"
    (run / "model").mkdir(parents=True)
    with pytest.raises(CheckpointError, match=r"run is a folder, not a checkpoint file, and neither it nor its model/"):
        load_checkpoint(str(run))
    for name in ("latest.tar", "net_best_fid.tar"):
        save_checkpoint(str(run / "model" / name), {"step": 1})
    (run / "model" / ".tmp-latest.tar.x1").write_bytes(b"")  # an interrupted save's temporary is no checkpoint
    (run / "model" / "train_log.jsonl").write_text("")
    expected = f"{run / 'model' / 'latest.tar'}, {run / 'model' / 'net_best_fid.tar'}"
    for folder in (run, run / "model"):
        with pytest.raises(CheckpointError, match="pass one of the checkpoints in it") as error:
            load_checkpoint(str(folder))
        assert str(error.value).endswith(expected) and "is a folder" in str(error.value)
