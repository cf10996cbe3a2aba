"""Atomic file writes: a reader, or a run killed mid-write, never sees half a file under its final name.

``atomic_write`` hands out a temporary file in the destination folder (so ``os.replace`` stays on one filesystem
and is atomic), flushes and fsyncs it, and moves it over the destination only when the ``with`` block succeeds. On
any failure the temporary is removed, the exception goes on and the previous file is left as it was.

A file that is replaced keeps its permission bits (a checkpoint made private with ``chmod 600`` stays private); a new
file gets those ``open`` would give it (``0o666`` less the umask). A destination that is a symbolic link, to a file
or to nothing yet, stays a link: the file it resolves to is the one replaced (or created), and the temporary goes
in that file's folder; ``follow_symlinks=False`` replaces the link itself instead, for files that must not reach
what they link to (statistics recomputed for a dataset whose Mean.npy links to the official one). A replaced file's
owner and group are not carried over.

Libraries that take a path and append a suffix to it (``np.save`` adds ``.npy``, ``np.savez`` ``.npz``) are given
the open file instead, so the name written is always the one asked for. Writers that need a path of their own and go
by its extension (matplotlib's video writers, ffmpeg) get one from ``atomic_path``: the temporary's name ends with the
destination's extension, and it is moved into place the same way.
"""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from collections.abc import Iterator
from typing import IO, Any

from utils.stop_signals import stops_deferred

# Temporaries are named ``.tmp-<final name>.<random>``: hidden, unique per writer (two processes may write the same
# file at the same moment), and recognisable to ``utils.checkpoint.remove_stale_temporaries`` after a kill.
TMP_PREFIX = ".tmp-"


def _umask() -> int:
    """The process umask (reading it means setting it, so it is set back at once)."""
    umask = os.umask(0)
    os.umask(umask)
    return umask


def _replaced_mode(path: str) -> int:
    """The permission bits of the regular file at ``path``, or those ``open`` gives a new file."""
    with contextlib.suppress(FileNotFoundError):
        st = os.stat(path)
        if stat.S_ISREG(st.st_mode):
            return stat.S_IMODE(st.st_mode)
    return 0o666 & ~_umask()


def _target(path: str | os.PathLike, follow_symlinks: bool = True) -> str:
    """The file a write to ``path`` replaces: the one it links to, when it is a symbolic link and ``follow_symlinks``
    (``os.replace`` over a link puts a plain file in its place)."""
    path = os.fspath(path)
    return os.path.realpath(path) if follow_symlinks and os.path.islink(path) else path


def _temporary(target: str, suffix: str = "") -> tuple[int, str]:
    """(descriptor, path) of a new temporary file in the folder of ``target``, its name ending in ``suffix``."""
    return tempfile.mkstemp(prefix=TMP_PREFIX + os.path.basename(target) + ".", suffix=suffix,
                            dir=os.path.dirname(os.path.abspath(target)))


def _move_into_place(tmp: str, target: str) -> None:
    # mkstemp creates 0600 files: give the file the permissions of the one it replaces, or those open() would give a
    # new one.
    os.chmod(tmp, _replaced_mode(target))
    os.replace(tmp, target)


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "w", encoding: str | None = None,
                 follow_symlinks: bool = True) -> Iterator[IO[Any]]:
    """Open a temporary file for writing (``mode`` "w" or "wb", ``encoding`` as for ``open``) and move it to
    ``path`` (the file it links to, when it is a symbolic link and ``follow_symlinks``) when the block ends without an
    exception. The file replaced keeps its permission bits. The folder of ``path`` must exist."""
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_write: mode must be 'w' or 'wb', got {mode!r}")
    target = _target(path, follow_symlinks)
    tmp = None
    try:
        # A stop signal (utils.stop_signals) arriving after mkstemp has created the file but before its name is held
        # here would leave it behind: it is raised once the name is held and the file open.
        with stops_deferred():
            fd, tmp = _temporary(target)
            f = os.fdopen(fd, mode, encoding=encoding)
        with f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        _move_into_place(tmp, target)
    except BaseException as e:
        if tmp is not None:
            with contextlib.suppress(FileNotFoundError):
                os.remove(tmp)
        _raise_naming(e, target)
        raise


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[str]:
    """The path of a temporary file for a writer that opens files itself, moved to ``path`` (as ``atomic_write``
    does) when the block ends without an exception. The temporary, ``.tmp-<name>.<random><ext>``, exists (empty) and
    ends with the extension ``<ext>`` of ``path`` (not of a file it links to); the writer must overwrite it. The
    folder of ``path`` must exist."""
    target = _target(path)
    tmp = None
    try:
        with stops_deferred():  # as in atomic_write
            fd, tmp = _temporary(target, suffix=os.path.splitext(os.fspath(path))[1])
            os.close(fd)
        yield tmp
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        _move_into_place(tmp, target)
    except BaseException as e:
        if tmp is not None:
            with contextlib.suppress(FileNotFoundError):
                os.remove(tmp)
        _raise_naming(e, target)
        raise


def _raise_naming(error: BaseException, target: str) -> None:
    """Raise ``error`` again naming ``target`` when it is an ``OSError`` of a write that names no file (a full disk,
    a file-size limit: ``[Errno 28] No space left on device``), so that the one-line report says which file."""
    if isinstance(error, OSError) and error.errno is not None and error.filename is None:
        raise OSError(error.errno, error.strerror, target) from error
