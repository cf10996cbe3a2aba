"""What every top-level script counts as the user's error, without importing torch (``render.py`` and
``plot_loss.py`` draw joint files and logs without it): the path errors, the traceback switch and the one-line exit.
``utils.cli.run_script`` adds the checkpoint, run-folder and config errors on top."""

from __future__ import annotations

import os
import sys
from typing import NoReturn

TRACEBACK_ENV = "FSQ_MARDM_TRACEBACK"
# A missing file, or a path of the wrong kind (a file where a folder goes, or no permission).
PATH_ERRORS = (FileNotFoundError, FileExistsError, NotADirectoryError, IsADirectoryError, PermissionError)


def exit_with_error(prog: str, error: BaseException) -> NoReturn:
    """Exit with status 1 and ``<prog>: error: <error>`` on stderr; re-raise ``error`` (its traceback shown) when
    ``FSQ_MARDM_TRACEBACK`` is set. Call it from the ``except`` block that caught ``error``."""
    if os.environ.get(TRACEBACK_ENV):
        raise error
    sys.exit(f"{prog}: error: {error}\n(set {TRACEBACK_ENV}=1 to see where it was raised)")
