"""One writer at a time: an exclusive, non-blocking ``fcntl.flock`` on a lock file.

Two starts of the same run (or two evaluations into the same results file) would otherwise both write into the same
files and overwrite each other's checkpoints and logs. The holder writes its pid (and host) into the lock file, so the
refusal can name it. The kernel releases a flock when the last descriptor of the file closes, a killed process's
included, so a lock file left behind never blocks a later start: the file stays, and the next start takes it.

Locks belong to an open file description, so two acquisitions of the same file conflict even within one process.
Where the file system has no flock (some NFS / SMB mounts answer ENOLCK or EOPNOTSUPP) a warning is logged once and the
work goes on unlocked.
"""

from __future__ import annotations

import errno
import logging
import os
import socket

try:
    import fcntl
except ImportError:  # not POSIX: no flock, as on a file system without it
    fcntl = None

logger = logging.getLogger(__name__)

# What flock answers on a file system that does not support it (ENOTSUP equals EOPNOTSUPP on Linux, not everywhere).
UNSUPPORTED = frozenset({errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOTSUP})
_warned_unsupported = False


class FileLockedError(RuntimeError):
    """Another process (or another open of the file in this one) holds the lock."""


class FileLock:
    """A held lock on ``path`` (``fd`` None: the file system has no flock and nothing is locked)."""

    def __init__(self, path: str, fd: int | None) -> None:
        self.path = path
        self._fd = fd

    @property
    def locked(self) -> bool:
        """Whether this object holds a real lock (False after ``release`` or where flock is unsupported)."""
        return self._fd is not None

    def release(self) -> None:
        """Give the lock back (closing the file releases it); the lock file stays. Safe to call twice."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def acquire_lock(path: str, what: str, advice: str) -> FileLock:
    """Take the exclusive lock on ``path`` (created if missing) without waiting, and write this process's pid in it.

    Args:
        path: the lock file; its folder must exist.
        what: what the lock guards, for the refusal (``"the run folder checkpoints/t2m/x"``).
        advice: how to proceed, appended to the refusal.

    Raises:
        FileLockedError: another holder has it: ``<what> is in use by another process (pid P on H, holding
            <path>); <advice>``.
        OSError: the lock file cannot be opened (permissions, missing folder).
    """
    global _warned_unsupported
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            if fcntl is None:
                raise OSError(errno.ENOLCK, "fcntl.flock is not available on this platform")
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_holder(fd)
            os.close(fd)
            raise FileLockedError(f"{what} is in use by another process ({holder}, holding {path}); {advice}") from None
        except OSError as e:
            os.close(fd)
            if e.errno not in UNSUPPORTED:
                raise
            if not _warned_unsupported:
                _warned_unsupported = True
                logger.warning("%s: the file system does not support flock (%s); going on without the lock that "
                               "keeps a second start from writing into the same files", path, e.strerror or e)
            return FileLock(path, None)
        # The holder before us may have removed the lock file with the folder it created (a failed start) between
        # our open and our lock: the lock would then guard nothing. Lock the file now at that path instead.
        try:
            same = os.path.samestat(os.fstat(fd), os.stat(path))
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()} {socket.gethostname()}\n".encode(), 0)
    return FileLock(path, fd)


def _read_holder(fd: int) -> str:
    """``pid P on H`` from the lock file's content; ``pid unknown`` while the holder has not written it yet."""
    fields = os.pread(fd, 512, 0).decode(errors="replace").split()
    if not fields or not fields[0].isdigit():
        return "pid unknown"
    return f"pid {fields[0]}" + (f" on {fields[1]}" if len(fields) > 1 else "")
