"""The PFNN export's folder (``prepare_data.py pfnn --out``): replaced whole, so a failure while it is put in place
never leaves files of two exports side by side, and never emptied of files it did not write."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from utils import pfnn
from utils.dataset_specs import get_dataset_spec
from utils.pfnn import FILES, export_pfnn


def _snapshot(out) -> dict[str, bytes]:
    return {name: (out / name).read_bytes() for name in sorted(os.listdir(out))}


def _consistent(out) -> None:
    """Every file of ``out`` belongs to the export its layout.json describes."""
    assert sorted(os.listdir(out)) == sorted(FILES)
    layout = json.loads((out / "layout.json").read_text())
    rows, x_dim, y_dim = layout["rows"], layout["input"]["dim"], layout["output"]["dim"]
    arrays = {name: np.load(out / name, mmap_mode="r") for name in FILES if name.endswith(".npy")}
    assert arrays["Input.npy"].shape == (rows, x_dim) and arrays["Output.npy"].shape == (rows, y_dim)
    assert all(arrays[name].shape == (rows,) for name in ("Phase.npy", "Sequences.npy", "Frames.npy"))
    assert arrays["InputMean.npy"].shape == arrays["InputStd.npy"].shape == (x_dim,)
    assert arrays["OutputMean.npy"].shape == arrays["OutputStd.npy"].shape == (y_dim,)


class _Failure(Exception):
    pass


def _failing_replace(fail_at: int):
    """``os.replace`` whose ``fail_at``-th call fails."""
    replace, moves = os.replace, []

    def failing(src, dst, *args, **kwargs):
        moves.append(dst)
        if len(moves) == fail_at:
            raise _Failure(f"move {fail_at} fails")
        return replace(src, dst, *args, **kwargs)

    return failing


def test_a_failure_while_moving_into_place_leaves_one_whole_export(synthetic_root, tmp_path, monkeypatch):
    """Re-exporting with another layout (--gait widens Input) into the same --out, the n-th file move fails, for every
    n the export makes: --out then holds the whole earlier export, never new files beside old ones; with no failure
    it holds the whole new one. No staging folder is left behind."""
    spec = get_dataset_spec("synthetic", synthetic_root)
    out = tmp_path / "pfnn"
    export_pfnn(synthetic_root, spec, str(out), split="val")
    before = _snapshot(out)
    replace = os.replace
    for fail_at in range(1, len(FILES) + 2):
        monkeypatch.setattr(pfnn.os, "replace", _failing_replace(fail_at))
        try:
            export_pfnn(synthetic_root, spec, str(out), split="val", gait=True)
        except _Failure:
            monkeypatch.setattr(pfnn.os, "replace", replace)
            _consistent(out)
            assert _snapshot(out) == before, f"a failure at move {fail_at} changed the earlier export"
            continue
        monkeypatch.setattr(pfnn.os, "replace", replace)
        break
    _consistent(out)
    assert json.loads((out / "layout.json").read_text())["gait"]["classes"] == ["stand", "walk", "run"]
    assert sorted(os.listdir(tmp_path)) == ["pfnn"]


def test_refuses_an_out_folder_holding_other_files(synthetic_root, tmp_path):
    """Replacing the folder would drop files the export did not write: refused before any work, naming them."""
    spec = get_dataset_spec("synthetic", synthetic_root)
    out = tmp_path / "runs"
    out.mkdir()
    (out / "weights.pt").write_bytes(b"mine")
    with pytest.raises(ValueError, match=r"--out .*runs: holds files the PFNN export does not write: weights\.pt"):
        export_pfnn(synthetic_root, spec, str(out), split="val")
    assert _snapshot(out) == {"weights.pt": b"mine"} and sorted(os.listdir(tmp_path)) == ["runs"]
    (tmp_path / "taken").write_text("a file")
    with pytest.raises(ValueError, match=r"--out .*taken: a file"):
        export_pfnn(synthetic_root, spec, str(tmp_path / "taken"), split="val")
