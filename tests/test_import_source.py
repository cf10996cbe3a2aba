"""``tools/import_checkpoint.py`` never writes over the file it imports: an official MoMask file placed as the README
shows (``checkpoints/t2m/rvq_nq6/model/net_best_fid.tar``) and imported under the same ``--name`` was refused with
the advice to pass ``--overwrite``, which then replaced the official weights with the converted ones."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from test_tokenizer_parity import Fixture
from tool_helpers import load_tool

from utils.checkpoint import file_sha256


def _placed(root: Path) -> Path:
    """The MoMask fixture placed as an official run: ``<root>/t2m/rvq_nq6/model/net_best_fid.tar`` + opt.txt."""
    fx = Fixture("momask_rvqvae")
    model = root / "t2m" / "rvq_nq6" / "model"
    model.mkdir(parents=True)
    shutil.copy(fx.checkpoint, model / "net_best_fid.tar")
    shutil.copy(fx.dir / "opt.txt", model.parent / "opt.txt")
    return model / "net_best_fid.tar"


def _main(*argv: str) -> None:
    tool = load_tool("import_checkpoint")
    tool.main(tool.get_parser().parse_args(["--name", "rvq_nq6", "--dataset_name", "t2m", *argv]))


@pytest.mark.parametrize("how", ["absolute", "relative", "symlinked file", "symlinked checkpoints_dir"])
@pytest.mark.parametrize("overwrite", [False, True])
def test_importing_a_file_into_its_own_run_folder_is_refused(tmp_path, monkeypatch, how, overwrite) -> None:
    src = _placed(tmp_path / "checkpoints")
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    sha = file_sha256(str(src))
    checkpoints = str(tmp_path / "checkpoints")
    given = str(src)
    if how == "relative":
        monkeypatch.chdir(tmp_path)
        given, checkpoints = os.path.relpath(src, tmp_path), "checkpoints"
    elif how == "symlinked file":
        given = str(tmp_path / "official.tar")
        os.symlink(src, given)
    elif how == "symlinked checkpoints_dir":
        checkpoints = str(tmp_path / "linked")
        os.symlink(tmp_path / "checkpoints", checkpoints)
    with pytest.raises(SystemExit, match=r"--src .* is inside the run folder .*rvq_nq6 that the import writes, so it "
                                         r"would replace the official file it reads: import under another --name") \
            as info:
        _main("--src", given, "--checkpoints_dir", checkpoints, *["--overwrite"] * overwrite)
    assert "--overwrite" not in str(info.value)
    assert file_sha256(str(src)) == sha
    after = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*") if p.name not in ("official.tar", "linked"))
    assert after == before  # nothing written: no lock, no opt.yaml, no latest.tar


def test_a_hard_link_to_a_file_of_the_run_is_refused(tmp_path) -> None:
    src = _placed(tmp_path / "checkpoints")
    os.link(src, tmp_path / "official.tar")
    with pytest.raises(SystemExit, match=r"is a file of the run folder"):
        _main("--src", str(tmp_path / "official.tar"), "--checkpoints_dir", str(tmp_path / "checkpoints"),
              "--overwrite")


def test_the_same_file_imports_under_another_name(tmp_path) -> None:
    src = _placed(tmp_path / "checkpoints")
    sha = file_sha256(str(src))
    tool = load_tool("import_checkpoint")
    tool.main(tool.get_parser().parse_args(["--src", str(src), "--name", "rvq_nq6_imported", "--dataset_name", "t2m",
                                            "--checkpoints_dir", str(tmp_path / "checkpoints")]))
    assert file_sha256(str(src)) == sha
    assert (tmp_path / "checkpoints" / "t2m" / "rvq_nq6_imported" / "model" / "latest.tar").is_file()
