"""Checkpoint files: plain-value conversion, writes after close, temporaries, what a damaged or foreign file is
called, digests, and the checks a resumed run's records go through."""

from __future__ import annotations

import enum
import os
import pickle
import zipfile

import numpy as np
import pytest
import torch

from utils.atomic_io import TMP_PREFIX
from utils.checkpoint import (
    CheckpointError,
    _ClosedDropsWrites,
    check_matches,
    check_plain,
    digest,
    load_checkpoint,
    official_kind,
    remove_stale_temporaries,
    require_keys,
    resumed_model_args,
    save_checkpoint,
    to_plain,
)


class _Sub(torch.Tensor):
    pass


def test_to_plain_gives_values_that_save_and_load(tmp_path):
    """to_plain turns arbitrary contents into tensors and plain values that a checkpoint stores and loads."""

    class Kind(enum.IntEnum):
        A = 1

    value = {
        1: np.float32(1.5),
        "names": np.array(["a", "bc"]),
        "pair": (1, 2),
        "kind": Kind.A,
        "sub": torch.ones(2).as_subclass(_Sub),
        "arr": np.arange(3),
        "when": np.array(["2020-01-01"], dtype="datetime64[D]"),
    }
    plain = to_plain(value)
    check_plain(plain)
    assert set(plain) == {"1", "names", "pair", "kind", "sub", "arr", "when"}
    assert type(plain["1"]) is float and plain["1"] == 1.5
    assert plain["names"] == ["a", "bc"]
    assert plain["pair"] == [1, 2]
    assert plain["kind"] == repr(Kind.A)
    assert type(plain["sub"]) is torch.Tensor and torch.equal(plain["sub"], torch.ones(2))
    assert torch.equal(plain["arr"], torch.arange(3))
    assert isinstance(plain["when"], str)
    path = str(tmp_path / "dump.tar")
    save_checkpoint(path, {"batch": plain})
    assert load_checkpoint(path)["batch"]["names"] == ["a", "bc"]


def test_writes_after_the_file_is_closed_are_dropped(tmp_path):
    f = open(tmp_path / "x.bin", "wb")
    wrapped = _ClosedDropsWrites(f)
    assert wrapped.write(b"abc") == 3
    f.close()
    assert wrapped.write(b"defg") == 4
    wrapped.flush()
    assert (tmp_path / "x.bin").read_bytes() == b"abc"


def test_values_inside_lists_are_checked_before_writing(tmp_path):
    path = str(tmp_path / "x.tar")
    with pytest.raises(TypeError, match=r"checkpoint\.metrics\[1\]"):
        save_checkpoint(path, {"metrics": [1.0, np.float64(0.5)]})
    with pytest.raises(TypeError, match=r"checkpoint\.metrics\[0\]\[0\]"):
        save_checkpoint(path, {"metrics": ([np.int64(3)],)})
    assert not os.path.exists(path)


def test_only_save_temporaries_are_removed(tmp_path):
    (tmp_path / f"{TMP_PREFIX}latest.tar.1").write_bytes(b"partial")
    (tmp_path / f"run{TMP_PREFIX}notes.txt").write_bytes(b"keep")
    assert remove_stale_temporaries(str(tmp_path)) == [f"{TMP_PREFIX}latest.tar.1"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"run{TMP_PREFIX}notes.txt"]
    assert remove_stale_temporaries(str(tmp_path / "absent")) == []


def test_a_plain_pickle_is_not_taken_for_a_legacy_torch_file(tmp_path):
    path = tmp_path / "data.pkl"
    path.write_bytes(pickle.dumps({"a": 1}, protocol=2))
    with pytest.raises(CheckpointError, match="data.pkl: not a PyTorch checkpoint: expected the zip archive"):
        load_checkpoint(str(path))


def test_a_checkpoint_that_is_not_a_dict_is_refused(tmp_path):
    path = tmp_path / "list.tar"
    torch.save([torch.zeros(2)], str(path))
    with pytest.raises(CheckpointError, match="list.tar: expected a dict at the top level, got list"):
        load_checkpoint(str(path))


def test_digest_separates_parts_and_dtypes():
    assert digest(b"ab", b"c").hexdigest() != digest(b"a", b"bc").hexdigest()
    zeros32, zeros_i32 = np.zeros(4, np.float32), np.zeros(4, np.int32)
    assert zeros32.tobytes() == zeros_i32.tobytes()
    assert digest(zeros32).hexdigest() != digest(zeros_i32).hexdigest()
    assert digest({"a": 1, "b": 2}).hexdigest() == digest({"b": 2, "a": 1}).hexdigest()
    assert digest(np.arange(6).reshape(2, 3)).hexdigest() != digest(np.arange(6).reshape(3, 2)).hexdigest()


def test_require_keys_names_every_missing_key():
    require_keys({"a": 1, "b": 2}, ["a", "b"], "f.tar")
    with pytest.raises(CheckpointError, match=r"f.tar: missing keys \['c'\]"):
        require_keys({"a": 1, "b": 2}, ["a", "c"], "f.tar")
    with pytest.raises(CheckpointError, match=r"missing keys \['x', 'y'\]"):
        require_keys({"a": 1}, ["x", "a", "y"], "f.tar")


def test_resumed_model_args_drop_only_added_arguments_at_their_old_value():
    saved = {"width": 4, "depth": 2}
    added = {"dropout": 0.0, "depth": 3}
    model_args = {"width": 4, "depth": 3, "dropout": 0.0, "heads": 8}
    assert resumed_model_args(saved, model_args, added) == {"width": 4, "depth": 3, "heads": 8}
    assert resumed_model_args(saved, {**model_args, "dropout": 0.1}, added) == {
        "width": 4, "depth": 3, "dropout": 0.1, "heads": 8}


def test_check_matches_lists_entries_absent_on_either_side():
    check_matches("f.tar", "model_args", {"a": 1}, {"a": 1})
    with pytest.raises(CheckpointError, match=r"differ in 2 entries: 'a': 1 in the checkpoint but 2 requested; "
                                              r"'b': absent in the checkpoint but 3 requested"):
        check_matches("f.tar", "model_args", {"a": 1}, {"a": 2, "b": 3})
    with pytest.raises(CheckpointError, match=r"differ in 1 entry: 'c': 5 in the checkpoint but absent requested"):
        check_matches("f.tar", "model_args", {"a": 1, "c": 5}, {"a": 1})
    with pytest.raises(CheckpointError, match=r"differ in 1 entry: 'c': None in the checkpoint but absent "):
        check_matches("f.tar", "model_args", {"a": 1, "c": None}, {"a": 1})


def test_official_kind_only_for_files_without_a_stage():
    assert official_kind({"trans": {}, "opt": 1}) == "T2M-GPT / MoMask transformer"
    assert official_kind({"estimator": {}}) == "length estimator"
    assert official_kind({"stage": "generator", "trans": {}}) is None
    assert official_kind({"vq_model": {}}) is None


def test_a_folder_listing_leaves_out_hidden_checkpoint_names(tmp_path):
    """A save's temporary (a dot name, possibly ending in .tar) is not offered as a checkpoint of the folder."""
    run = tmp_path / "run"
    run.mkdir()
    (run / f"{TMP_PREFIX}latest.tar.k2x.tar").write_bytes(b"")
    with pytest.raises(CheckpointError, match="neither it nor its model/ folder holds a checkpoint"):
        load_checkpoint(str(run))
    save_checkpoint(str(run / "latest.tar"), {"step": 1})
    with pytest.raises(CheckpointError) as error:
        load_checkpoint(str(run))
    assert str(error.value).endswith(f"pass one of the checkpoints in it: {run / 'latest.tar'}")


def test_a_garbled_pickle_inside_the_archive_is_called_damaged(tmp_path):
    """A zip archive whose data.pkl holds an opcode no pickle has (its CRC rewritten to match, so the archive check
    passes) is a damaged file, not a file refused for holding code."""
    good, bad = tmp_path / "good.tar", tmp_path / "bad.tar"
    save_checkpoint(str(good), {"weights": torch.zeros(2), "step": 1})
    with zipfile.ZipFile(good) as src, zipfile.ZipFile(bad, "w", zipfile.ZIP_STORED) as out:
        for info in src.infolist():
            data = src.read(info)
            if info.filename.endswith("data.pkl"):
                data = data[:2] + b"\xff" + data[3:]  # after the protocol header
            out.writestr(info, data)
    with pytest.raises(CheckpointError, match=r"bad.tar: not a readable checkpoint \(truncated or corrupt\?\): "
                                              r"(?s:.*)Unsupported operand 255") as error:
        load_checkpoint(str(bad))
    assert "refused to load" not in str(error.value)
