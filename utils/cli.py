"""The error boundary of every top-level script: what a user got wrong is one line, not a traceback.

Errors raised for bad input (a missing or damaged checkpoint, a dataset file that fails its checks, an unusable run
folder, a bad config value, a flag the chosen model cannot take) already name the file, the field and what was
expected; their traceback only buries that line. ``FSQ_MARDM_TRACEBACK=1`` shows it anyway, for debugging.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import Any

from options.config import ConfigError
from utils.checkpoint import CheckpointError
from utils.launch_env import is_first_process, world_size
from utils.run_dir import RunDirError, discarding_failed_starts
from utils.user_errors import PATH_ERRORS, TRACEBACK_ENV, exit_with_error

# DatasetError is a ValueError; ValueError also covers model and flag validation (``build_tokenizer``, ...).
USER_ERRORS = (CheckpointError, RunDirError, ConfigError, *PATH_ERRORS, ValueError)
__all__ = ["TRACEBACK_ENV", "USER_ERRORS", "run_script"]


def run_script(main: Callable[[], Any], prog: str | None = None, single_process: bool = False) -> Any:
    """``main()``; a ``USER_ERRORS`` exception, or ``SystemExit("<message>")``, exits with status 1 and
    ``<prog>: error: <message>`` on stderr.

    ``single_process`` scripts (evaluation, sampling) do not split their work over processes: started by ``torchrun``
    or ``accelerate launch`` with more than one, each process would do all of it and write the same files, so they
    stop with an error instead.
    """
    prog = prog or os.path.basename(sys.argv[0])
    processes = world_size()
    if single_process and processes > 1:
        sys.exit(f"{prog}: error: runs in one process, but was launched as {processes} (torchrun / accelerate "
                 f"launch); start it with `python {prog} ...` (--device picks the GPU)")
    if os.environ.get(TRACEBACK_ENV):
        return _discarding_failed_starts(main)
    try:
        return _discarding_failed_starts(main)
    except USER_ERRORS as e:
        exit_with_error(prog, e)
    except SystemExit as e:
        # A script's own refusal, raise SystemExit("<message>"), in the same form; a status (argparse's 2) as it is.
        if isinstance(e.code, str) and not e.code.startswith(f"{prog}: error: "):
            sys.exit(f"{prog}: error: {e.code}")
        raise



def _discarding_failed_starts(main: Callable[[], Any]) -> Any:
    """``main()``; when it fails, the first process removes the run folders it created and left without a checkpoint
    (``utils.run_dir.discarding_failed_starts``)."""
    with discarding_failed_starts(enabled=is_first_process()):
        return main()
