"""Staging folders: a dataset import or an export is written next to its output folder and moved into place whole.

The folder is ``<out>.<tag>-<host>-<pid>`` (``tag`` ``importing`` for ``prepare_data.py bvh`` / ``amass``,
``exporting`` for ``prepare_data.py pfnn``). An error or a stop (SIGTERM, SIGHUP, Ctrl-C) removes it, but a
``kill -9`` or the OOM killer cannot, and nothing reads it again. ``remove_abandoned_staging`` therefore runs before the
next write into the same ``<out>``: it removes the staging folders whose process is gone (the pid is not running, on
the host named in the folder, which is this one) and reports the others in one line each, since a live process, or
another machine of a shared file system, may still be writing them. Folders of earlier versions,
``<out>.<tag>-<pid>``, do not name their host and are only reported.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import socket

logger = logging.getLogger(__name__)


def _host() -> str:
    """This machine's name as it goes into a folder name (characters other than letters, digits, ``.``, ``_`` and
    ``-`` replaced)."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", socket.gethostname()) or "host"


def staging_folder(out: str, tag: str) -> str:
    """``<out>.<tag>-<host>-<pid>``: this process's staging folder for ``out`` (a sibling, so that the final
    ``os.replace`` stays on one file system)."""
    return f"{os.path.normpath(out)}.{tag}-{_host()}-{os.getpid()}"


_PID_LIMIT = 1 << 22  # PID_MAX_LIMIT, the largest pid_max Linux allows: no process id reaches past it


def _pid_running(pid: int) -> bool:
    """Whether a process ``pid`` may run on this machine (signal 0 checks without sending anything; True where that
    cannot be checked: outside POSIX ``os.kill`` would end the process)."""
    if os.name != "posix" or pid <= 0:
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # PermissionError: another user's process
        return True
    return True


def remove_abandoned_staging(out: str, tag: str, what: str) -> list[str]:
    """Remove the staging folders of ``out`` (``<out>.<tag>-<host>-<pid>``) left by a process of this host that no
    longer runs, logging each one; report, and keep, those of a running process, of another host, of an earlier
    version (no host in the name) or with a number past any process id (a look-alike). ``what`` names the job in
    the log lines (``"an import"``). Returns the folders removed."""
    out = os.path.normpath(out)
    parent, base = os.path.split(out)
    pattern = re.compile(rf"{re.escape(base)}\.{re.escape(tag)}-(?:(?P<host>.+)-)?(?P<pid>\d+)")
    try:
        entries = sorted(os.listdir(parent or "."))
    except OSError:  # no parent folder yet: nothing was staged there
        return []
    host, removed = _host(), []
    for entry in entries:
        match = pattern.fullmatch(entry)
        path = os.path.join(parent, entry)
        if match is None or not os.path.isdir(path) or os.path.islink(path):
            continue
        pid = int(match["pid"])
        if match["host"] is None:
            logger.warning("%s: the staging folder of %s into %s by an earlier version (pid %d, host not recorded) "
                           "was left behind; remove it if no such job is running", path, what, out, pid)
        elif match["host"] != host:
            logger.warning("%s: the staging folder of %s into %s on host %s (pid %d); remove it if that job no "
                           "longer runs", path, what, out, match["host"], pid)
        elif pid > _PID_LIMIT:  # a look-alike (a timestamped copy, say): no process wrote it, so none of it is ours
            logger.warning("%s: named like the staging folder of %s into %s, but %d is no process id; left in place",
                           path, what, out, pid)
        elif pid != os.getpid() and _pid_running(pid):
            logger.warning("%s: the staging folder of %s into %s by process %d, which is running; left in place "
                           "(remove it if that process is not such a job)", path, what, out, pid)
        else:  # this process's own pid: an earlier process of that pid, killed, since this one has not staged yet
            shutil.rmtree(path, ignore_errors=True)
            if os.path.exists(path):
                logger.warning("%s: cannot remove the staging folder of %s killed before it finished (pid %d, no "
                               "longer running); remove it by hand", path, what, pid)
                continue
            logger.warning("removed %s, the staging folder of %s into %s killed before it finished (pid %d, no longer "
                           "running)", path, what, out, pid)
            removed.append(path)
    return removed
