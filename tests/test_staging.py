"""Staging folders a ``kill -9`` leaves next to an import's (or a PFNN export's) ``--out``: the next write into the same
``--out`` removes those whose process is gone on this host, naming them, and keeps and reports those of a running
process, of another host and of earlier versions (``utils.staging``)."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from utils.bvh_export import write_bvh
from utils.bvh_import import import_bvh_folder
from utils.dataset_specs import get_dataset_spec
from utils.pfnn import export_pfnn
from utils.staging import remove_abandoned_staging, staging_folder
from utils.synthetic import synthesize_motion

ROOT = Path(__file__).resolve().parents[1]


def _killed_staging(out: Path, tag: str) -> Path:
    """The staging folder (with a file in it) of a process that made it for ``out`` and was then killed with
    SIGKILL, as a ``kill -9`` during an import leaves it."""
    code = ("import os, sys\n"
            "from utils.staging import staging_folder\n"
            f"folder = staging_folder(sys.argv[1], {tag!r})\n"
            "os.makedirs(os.path.join(folder, 'new_joint_vecs'))\n"
            "open(os.path.join(folder, 'new_joint_vecs', 'clip.npy'), 'wb').close()\n"
            "print(folder, flush=True)\n"
            "os.kill(os.getpid(), 9)\n")
    done = subprocess.run([sys.executable, "-c", code, str(out)], cwd=ROOT, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == -signal.SIGKILL, done.stderr
    folder = Path(done.stdout.strip())
    assert folder.is_dir() and folder.parent == out.parent and folder.name.startswith(f"{out.name}.{tag}-")
    return folder


def _mocap(tmp_path: Path) -> Path:
    src = tmp_path / "mocap"
    src.mkdir()
    write_bvh(src / "jump.bvh", synthesize_motion(np.random.default_rng(8), "jump").joints, fps=20)
    return src


def _warnings(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]


def test_an_import_removes_the_staging_folder_a_killed_import_left(tmp_path, caplog):
    src, out = _mocap(tmp_path), tmp_path / "dataset" / "Mocap"
    out.parent.mkdir()
    left = _killed_staging(out, "importing")
    with caplog.at_level(logging.WARNING, logger="utils.staging"):
        summary = import_bvh_folder(str(src), str(out), "smpl22")
    assert summary.clips == 1 and (out / "spec.json").is_file()
    assert not left.exists() and sorted(os.listdir(out.parent)) == ["Mocap"]
    assert [m for m in _warnings(caplog) if str(left) in m] == [
        f"removed {left}, the staging folder of an import into {out} killed before it finished (pid "
        f"{left.name.rsplit('-', 1)[1]}, no longer running)"]


def test_staging_of_a_running_process_another_host_or_an_earlier_version_is_kept_and_reported(tmp_path, caplog):
    src, out = _mocap(tmp_path), tmp_path / "Mocap"
    dead = _killed_staging(tmp_path / "Other", "importing")  # a pid that no longer runs, for the names below
    pid = dead.name.rsplit("-", 1)[1]
    running = Path(staging_folder(str(out), "importing").rsplit("-", 1)[0] + f"-{os.getppid()}")
    elsewhere = tmp_path / f"Mocap.importing-some-other-node-{pid}"
    earlier = tmp_path / f"Mocap.importing-{pid}"
    unrelated = [tmp_path / f"Mocapx.importing-{pid}", tmp_path / "Mocap.importing-notes"]
    for folder in (running, elsewhere, earlier, *unrelated):
        folder.mkdir()
    with caplog.at_level(logging.WARNING, logger="utils.staging"):
        import_bvh_folder(str(src), str(out), "smpl22")
    assert all(folder.is_dir() for folder in (running, elsewhere, earlier, *unrelated))
    assert dead.is_dir()  # the staging folder of another --out is not this import's to remove
    reported = {folder: [m for m in _warnings(caplog) if m.startswith(f"{folder}: ")]
                for folder in (running, elsewhere, earlier, *unrelated)}
    assert len(reported[running]) == 1 and f"by process {os.getppid()}, which is running" in reported[running][0]
    assert len(reported[elsewhere]) == 1 and f"on host some-other-node (pid {pid})" in reported[elsewhere][0]
    assert len(reported[earlier]) == 1 and "host not recorded" in reported[earlier][0]
    assert all(reported[folder] == [] for folder in unrelated)


def test_a_leftover_of_an_earlier_process_with_this_pid_is_removed(tmp_path, caplog):
    """pids are reused: a folder named with this process's pid was left by a killed process, since this one has not
    staged anything yet."""
    own = Path(staging_folder(str(tmp_path / "Mocap"), "importing"))
    own.mkdir()
    with caplog.at_level(logging.WARNING, logger="utils.staging"):
        assert remove_abandoned_staging(str(tmp_path / "Mocap"), "importing", "an import") == [str(own)]
    assert not own.exists() and any(m.startswith(f"removed {own},") for m in _warnings(caplog))
    assert remove_abandoned_staging(str(tmp_path / "missing" / "Mocap"), "importing", "an import") == []


@pytest.mark.parametrize("number", ["5000000", "20240101120000"])
def test_a_look_alike_numbered_past_any_pid_is_kept_and_reported(tmp_path, caplog, number):
    """A folder named like this host's staging folder but with a number no process id reaches (a timestamped copy)
    was removed as abandoned, or stopped the import with an OverflowError naming no folder."""
    out = tmp_path / "Mocap"
    folder = Path(staging_folder(str(out), "importing").rsplit("-", 1)[0] + f"-{number}")
    folder.mkdir()
    (folder / "clip.npy").write_bytes(b"x")
    with caplog.at_level(logging.WARNING, logger="utils.staging"):
        assert remove_abandoned_staging(str(out), "importing", "an import") == []
    assert (folder / "clip.npy").is_file()
    assert [m for m in _warnings(caplog) if m.startswith(f"{folder}: ")] == [
        f"{folder}: named like the staging folder of an import into {out}, but {number} is no process id; left in "
        "place"]


def test_a_pfnn_export_removes_the_staging_folder_a_killed_export_left(synthetic_root, tmp_path, caplog):
    out = tmp_path / "pfnn"
    left = _killed_staging(out, "exporting")
    with caplog.at_level(logging.WARNING, logger="utils.staging"):
        export_pfnn(synthetic_root, get_dataset_spec("synthetic", synthetic_root), str(out), split="val")
    assert not left.exists() and sorted(os.listdir(tmp_path)) == ["pfnn"]
    assert any(m.startswith(f"removed {left}, the staging folder of a PFNN export") for m in _warnings(caplog))
