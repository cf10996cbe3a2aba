"""Where the project's default folders are: ``dataset/``, ``checkpoints/``, ``glove/``, ``generation/`` and ``deps/``.

They are relative to the working directory, as in the reference code, unless ``FSQ_MARDM_HOME`` names a folder: then
the defaults resolve under it, so the scripts run from any directory and share one set of data, runs, word vectors
and CLIP weights. Only defaults move; a path given on the command line is used as written. A dataset with a
``spec.json`` found in the default folder has that folder as its root (``get_dataset_spec``).
"""

from __future__ import annotations

import os
import shlex

HOME_ENV = "FSQ_MARDM_HOME"
# A writable folder for the motion indexes of datasets whose own folder is read-only (a shared corpus).
CACHE_ENV = "FSQ_MARDM_CACHE"
# A dataset's folders of one file per clip, which the loaders, validate and stats read: render.py never writes there
# unasked, but into the dataset's renders/ folder, which prepare_data.py synthetic leaves in place when it replaces a
# dataset. (Plain names here: utils.motion_files, which owns the layout, brings torch, and render.py does not need it.)
DATASET_CLIP_FOLDERS = ("new_joint_vecs", "new_joints")
RENDERS_DIR = "renders"
# OpenAI's CLIP ViT-B/32 file (the one clip.load("ViT-B/32") downloads), with its BPE vocabulary beside it: what the
# published generator recipes' text encoder reads, and what prepare_data.py assets checks.
DEFAULT_CLIP_PATH = "deps/ViT-B-32.pt"


def project_path(path: str) -> str:
    """``path`` under ``$FSQ_MARDM_HOME`` when it is set and ``path`` is relative, else ``path`` unchanged."""
    home = os.environ.get(HOME_ENV)
    if not home or os.path.isabs(path):
        return path
    return os.path.join(os.path.expanduser(home), path)


def folder_flags(checkpoints_dir: str | None = None, data_root: str | None = None) -> str:
    """`` --checkpoints_dir X`` / `` --data_root Y`` for a suggested command, each only where it is not the default, so
    that the command, run as printed, looks in the folders the failing one did (``""`` when both are defaults); a
    path a shell would split (a space, a quote) is quoted."""
    flags = ""
    if checkpoints_dir and os.path.abspath(checkpoints_dir) != os.path.abspath(project_path("checkpoints")):
        flags += f" --checkpoints_dir {shlex.quote(checkpoints_dir)}"
    if data_root:
        flags += f" --data_root {shlex.quote(data_root)}"
    return flags
