"""Atomic writes: the content arrives under the asked name (through a symbolic link, in the file it points to) with
the permissions of the file it replaces, a failed write leaves the previous file and no temporary, and concurrent
writers of one file do not trip over each other's temporaries."""

import errno
import json
import os
import signal
import stat
import tempfile

import numpy as np
import pytest

from utils import atomic_io
from utils.atomic_io import atomic_write
from utils.stop_signals import Stopped, stopping_on_signals


def test_text_mode_writes_content_with_the_given_encoding(tmp_path):
    path = tmp_path / "caption.json"
    with atomic_write(path, "w", encoding="utf-8") as f:
        json.dump({"text": "a person walks \u2192 left"}, f, ensure_ascii=False)
    assert path.read_bytes() == '{"text": "a person walks \u2192 left"}'.encode()
    assert os.listdir(tmp_path) == ["caption.json"]


def test_binary_mode_writes_bytes(tmp_path):
    path = tmp_path / "blob.bin"
    with atomic_write(str(path), "wb") as f:
        f.write(b"\x00\x01\xff")
    assert path.read_bytes() == b"\x00\x01\xff"


def test_file_gets_the_permissions_open_would_give(tmp_path):
    plain, atomic = tmp_path / "plain.txt", tmp_path / "atomic.txt"
    plain.write_text("x")
    with atomic_write(atomic) as f:
        f.write("x")
    assert stat.S_IMODE(atomic.stat().st_mode) == stat.S_IMODE(plain.stat().st_mode)


@pytest.mark.parametrize("permissions", [0o640, 0o600, 0o755, 0o444], ids=oct)
def test_a_replaced_file_keeps_its_permissions(tmp_path, permissions):
    path = tmp_path / "latest.tar"
    path.write_bytes(b"old")
    path.chmod(permissions)
    with atomic_write(path, "wb") as f:
        f.write(b"new")
    assert path.read_bytes() == b"new"
    assert stat.S_IMODE(path.stat().st_mode) == permissions


@pytest.mark.parametrize("relative", [False, True])
def test_a_symlink_stays_and_the_file_it_points_to_is_replaced(tmp_path, relative):
    """A run folder whose opt.yaml links to a shared file: the link is kept, the shared file gets the content (and
    keeps its permissions), and the temporary lived beside it."""
    (tmp_path / "shared").mkdir()
    (tmp_path / "run").mkdir()
    target = tmp_path / "shared" / "opt.yaml"
    target.write_text("old: 1\n")
    target.chmod(0o640)
    link = tmp_path / "run" / "opt.yaml"
    link.symlink_to(os.path.join("..", "shared", "opt.yaml") if relative else target)
    with atomic_write(link) as f:
        f.write("new: 2\n")
        assert [name.startswith(".tmp-opt.yaml.") for name in sorted(os.listdir(tmp_path / "shared"))] == [True, False]
        assert os.listdir(tmp_path / "run") == ["opt.yaml"]
    assert link.is_symlink() and link.resolve() == target.resolve()
    assert target.read_text() == "new: 2\n"
    assert stat.S_IMODE(target.stat().st_mode) == 0o640
    assert os.listdir(tmp_path / "run") == ["opt.yaml"] and os.listdir(tmp_path / "shared") == ["opt.yaml"]


def test_a_dangling_symlink_creates_its_target(tmp_path):
    target, link = tmp_path / "store" / "net_best_fid.tar", tmp_path / "best.tar"
    target.parent.mkdir()
    link.symlink_to(target)
    with atomic_write(link, "wb") as f:
        f.write(b"weights")
    assert link.is_symlink() and target.read_bytes() == b"weights"
    plain = tmp_path / "plain"
    plain.write_bytes(b"")
    assert stat.S_IMODE(target.stat().st_mode) == stat.S_IMODE(plain.stat().st_mode)  # a new file's permissions


def test_failure_through_a_symlink_leaves_link_and_target_unchanged(tmp_path):
    target, link = tmp_path / "target.json", tmp_path / "link.json"
    target.write_text("{}")
    link.symlink_to("target.json")
    with pytest.raises(RuntimeError, match="interrupted"):
        with atomic_write(link) as f:
            f.write('{"half":')
            raise RuntimeError("interrupted")
    assert link.is_symlink() and os.readlink(link) == "target.json"
    assert target.read_text() == "{}"
    assert sorted(os.listdir(tmp_path)) == ["link.json", "target.json"]


@pytest.mark.parametrize("mode", ["w", "wb"])
def test_failure_inside_the_block_keeps_previous_file_and_leaves_no_temporary(tmp_path, mode):
    path = tmp_path / "opt.yaml"
    path.write_text("old: 1\n")
    with pytest.raises(RuntimeError, match="interrupted"):
        with atomic_write(path, mode) as f:
            f.write("new: 2\n" if mode == "w" else b"new: 2\n")
            raise RuntimeError("interrupted")
    assert path.read_text() == "old: 1\n"
    assert os.listdir(tmp_path) == ["opt.yaml"]


@pytest.mark.parametrize("writer", ["atomic_write", "atomic_path"])
def test_a_full_disk_is_reported_with_the_file_it_was_writing(tmp_path, monkeypatch, writer):
    """A write's OSError (a full disk, a file-size limit) names no file: a script's one-line report said only
    "[Errno 28] No space left on device". It now names the file being written; the previous one stays."""
    path = tmp_path / "clip.bvh"
    path.write_text("previous")

    def full(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(atomic_io.os, "fsync", full)
    with pytest.raises(OSError, match=r"No space left on device") as info:
        if writer == "atomic_write":
            with atomic_write(path) as f:
                f.write("new")
        else:
            with atomic_io.atomic_path(path) as tmp:
                with open(tmp, "w") as f:
                    f.write("new")
    assert info.value.errno == errno.ENOSPC and info.value.filename == str(path)
    assert path.read_text() == "previous" and os.listdir(tmp_path) == ["clip.bvh"]


def test_failure_without_a_previous_file_creates_nothing(tmp_path):
    with pytest.raises(KeyboardInterrupt):
        with atomic_write(tmp_path / "report.json") as f:
            f.write("{")
            raise KeyboardInterrupt
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("name", ["mean.npy", "mean", "cache.bin"])
def test_np_save_writes_exactly_the_asked_path(tmp_path, name):
    """np.save(path) would append .npy to a name without it; through the open file the name is kept."""
    values = np.arange(4, dtype=np.float32)
    with atomic_write(tmp_path / name, "wb") as f:
        np.save(f, values)
    assert os.listdir(tmp_path) == [name]
    assert np.array_equal(np.load(tmp_path / name), values)


@pytest.mark.parametrize("name", ["codes.npz", "codes.cache"])
def test_np_savez_writes_exactly_the_asked_path(tmp_path, name):
    with atomic_write(tmp_path / name, "wb") as f:
        np.savez(f, codes=np.arange(3), offsets=np.array([0, 3]))
    assert os.listdir(tmp_path) == [name]
    with np.load(tmp_path / name) as data:
        assert data["codes"].tolist() == [0, 1, 2] and data["offsets"].tolist() == [0, 3]


def test_concurrent_writers_of_one_file_use_separate_temporaries(tmp_path):
    """Two writers of one file at once (two starts of one run): each writer's temporary is its own, so the last one
    to finish wins and neither fails."""
    path = tmp_path / "opt.yaml"
    with atomic_write(path) as outer:
        outer.write("rank: 0\n")
        with atomic_write(path) as inner:
            inner.write("rank: 1\n")
        assert path.read_text() == "rank: 1\n"
    assert path.read_text() == "rank: 0\n"
    assert os.listdir(tmp_path) == ["opt.yaml"]


def test_missing_folder_and_bad_mode_are_errors(tmp_path):
    with pytest.raises(FileNotFoundError):
        with atomic_write(tmp_path / "absent" / "x.json") as f:
            f.write("{}")
    with pytest.raises(ValueError, match="mode must be 'w' or 'wb'"):
        with atomic_write(tmp_path / "x.json", "a"):
            pass
    assert os.listdir(tmp_path) == []


def test_not_following_a_symlink_replaces_the_link_and_leaves_its_file(tmp_path):
    """Statistics recomputed for a dataset whose Mean.npy links to a shared file: the link becomes a plain file with
    the new content, the shared file keeps its own."""
    target, link = tmp_path / "shared.npy", tmp_path / "Mean.npy"
    target.write_bytes(b"official")
    link.symlink_to(target)
    with atomic_write(link, "wb", follow_symlinks=False) as f:
        f.write(b"recomputed")
    assert not link.is_symlink() and link.read_bytes() == b"recomputed"
    assert target.read_bytes() == b"official"
    assert sorted(os.listdir(tmp_path)) == ["Mean.npy", "shared.npy"]


@pytest.mark.parametrize("writer", ["atomic_write", "atomic_path"])
def test_a_stop_signal_while_the_temporary_is_created_leaves_none(tmp_path, monkeypatch, writer):
    """SIGTERM whose handler runs after mkstemp has created the temporary but before its name is returned (a
    scheduler's stop at a random moment): the writer still stops with the signal, and removes the file."""
    real_mkstemp = tempfile.mkstemp

    def mkstemp_then_terminate(*args, **kwargs):
        created = real_mkstemp(*args, **kwargs)
        signal.raise_signal(signal.SIGTERM)  # its handler runs before the next line: before the return
        return created

    monkeypatch.setattr(atomic_io.tempfile, "mkstemp", mkstemp_then_terminate)
    written = []
    with pytest.raises(Stopped), stopping_on_signals():
        with getattr(atomic_io, writer)(tmp_path / "latest.tar"):
            written.append(True)
    assert written == [] and os.listdir(tmp_path) == []
