"""Keep the version of a checkpoint that a later stage was trained on when its run replaces the file.

A generator records the SHA-256 of the tokenizer file it was trained on and refuses to decode with another one. A
tokenizer run trained further (``--is_continue``) rewrites its ``latest.tar`` and ``net_best_*.tar``, which would
leave every generator trained on the old version without its tokenizer. So a generator run, once it has saved its
first checkpoint, registers itself in ``used_by.json`` beside the tokenizer file (``{file name: {sha256: [run
folders]}}``), and before the engine replaces a checkpoint it keeps a registered version as
``<stem>.<first 12 hex digits of its sha256><ext>`` (a hard link where the file system allows one, else a copy).
``utils.generator_checkpoints.resolve_tokenizer_file`` finds that copy by the recorded hash.

Registration is best effort: a tokenizer folder that cannot be written (an official file in a read-only place) gets a
warning, and the generator trains on.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
from typing import Any

from utils.atomic_io import atomic_path, atomic_write
from utils.checkpoint import file_sha256, save_checkpoint

logger = logging.getLogger(__name__)

USERS_FILE = "used_by.json"
SHA_PREFIX = 12  # hex digits of the hash in a kept copy's name


def kept_copy_path(path: str, sha256: str) -> str:
    """Where the version ``sha256`` of checkpoint ``path`` is kept: ``<stem>.<sha256[:12]><ext>`` beside the file
    (the file a link points to: a generator may have been given a link)."""
    stem, ext = os.path.splitext(os.path.realpath(path))
    return f"{stem}.{sha256[:SHA_PREFIX]}{ext}"


def _users_path(path: str) -> str:
    return os.path.join(os.path.dirname(os.path.realpath(path)), USERS_FILE)


def read_users(path: str) -> dict[str, list[str]]:
    """``{sha256: [run folders]}`` registered for checkpoint ``path`` (empty when none or the record is unreadable:
    a damaged record is reported and treated as empty, so that training never stops on it)."""
    record_path = _users_path(path)
    if not os.path.isfile(record_path):
        return {}
    try:
        with open(record_path, encoding="utf-8") as f:
            record = json.load(f)
        entry = record.get(os.path.basename(os.path.realpath(path)), {}) if isinstance(record, dict) else {}
        if not isinstance(entry, dict):
            raise ValueError(f"field {os.path.basename(path)!r}: expected an object of sha256 -> run folders")
        return {str(sha): [str(u) for u in users] for sha, users in entry.items() if isinstance(users, list)}
    except (OSError, ValueError) as e:
        logger.warning("%s: unreadable record of the runs trained on %s (%s); no version of it is kept",
                       record_path, os.path.basename(path), e)
        return {}


def register_user(path: str, sha256: str, user: str) -> None:
    """Record that run folder ``user`` was trained on version ``sha256`` of checkpoint ``path``."""
    record_path = _users_path(path)
    name, user = os.path.basename(os.path.realpath(path)), os.path.abspath(user)
    try:
        record: dict[str, Any] = {}
        if os.path.isfile(record_path):
            with open(record_path, encoding="utf-8") as f:
                loaded = json.load(f)
            record = loaded if isinstance(loaded, dict) else {}
        # Parts of another shape (a record edited by hand) are replaced rather than trusted.
        entry = record[name] = record[name] if isinstance(record.get(name), dict) else {}
        users = entry[sha256] = [str(u) for u in entry[sha256]] if isinstance(entry.get(sha256), list) else []
        if user in users:
            return
        users.append(user)
        with atomic_write(record_path, "w", encoding="utf-8") as f:
            json.dump(record, f, indent=1, sort_keys=True)
    except (OSError, ValueError) as e:
        logger.warning("%s: could not record that %s was trained on %s (%s): training the tokenizer further will "
                       "replace the file without keeping this version", record_path, user, path, e)


def keep_used_version(path: str) -> str | None:
    """Before ``path`` is replaced: if a run was registered on its present version and no kept copy of that version
    exists, keep one (see the module); returns the kept copy's path, else None."""
    users = read_users(path)
    path = os.path.realpath(path)
    if not users or not os.path.isfile(path):
        return None
    pending = [sha for sha in users if not os.path.exists(kept_copy_path(path, sha))]
    if not pending:
        return None  # every registered version is kept already: no hashing at every save
    sha = file_sha256(path)
    if sha not in pending:
        return None
    kept = kept_copy_path(path, sha)
    try:
        os.link(path, kept)
    except OSError:
        with atomic_path(kept) as tmp:
            shutil.copyfile(path, tmp)
    logger.info("kept %s, the version of %s that %s %s trained on, before replacing it", kept,
                os.path.basename(path), ", ".join(users[sha]), "was" if len(users[sha]) == 1 else "were")
    return kept


def find_kept_copy(path: str, sha256: str) -> str | None:
    """The kept copy of version ``sha256`` of checkpoint ``path``, if one exists and still has that hash."""
    kept = kept_copy_path(path, sha256)
    with contextlib.suppress(OSError):
        if os.path.isfile(kept) and file_sha256(kept) == sha256:
            return kept
    return None


def replace_checkpoint(path: str, state: dict[str, Any]) -> None:
    """``save_checkpoint(path, state)``, first keeping the present version of ``path`` if a run was trained on it."""
    keep_used_version(path)
    save_checkpoint(path, state)


def register_parent(parent: Any, user: str) -> None:
    """``register_user`` for a checkpoint's ``parent`` record ``{path, sha256}`` (anything else registers nothing)."""
    if isinstance(parent, dict) and parent.get("path") and parent.get("sha256"):
        register_user(str(parent["path"]), str(parent["sha256"]), user)
