"""Shared test fixtures: one small synthetic dataset per test session, one CPU thread."""

from __future__ import annotations

import glob
import os
import signal
from pathlib import Path

import numpy as np
import pytest
import torch

from utils.paths import CACHE_ENV, HOME_ENV
from utils.stop_signals import STOP_SIGNALS

# One CPU thread for every test, whichever files are selected: a BLAS call's last bits depend on its thread count, and
# tests compare runs bit for bit (resume, memo, fixtures). Tests that need another count set it and put it back.
torch.set_num_threads(1)

# FSQ_MARDM_HOME moves the default dataset/, checkpoints/ and generation/ folders: tests of those defaults would fail,
# and a test would write into the user's folders, when the shell that runs pytest has it set. Tests of it set it.
os.environ.pop(HOME_ENV, None)
# FSQ_MARDM_CACHE moves the motion indexes out of the dataset folders, where tests look for them.
os.environ.pop(CACHE_ENV, None)

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
# A script's stop run inside the test process leaves SIGTERM and SIGHUP ignored (it is exiting: utils.stop_signals.
# exit_stopped) and torch's DataLoader SIGCHLD handler replaced; each test starts from the process's own handlers.
_RESTORED_SIGNALS = (*STOP_SIGNALS, *((signal.SIGCHLD,) if hasattr(signal, "SIGCHLD") else ()))


@pytest.fixture(autouse=True)
def _one_thread():
    """Every test starts and ends on one thread, whatever a test before it set and left (see above). A module-scoped
    fixture runs before its first test's function fixtures: it gets the count the previous test's teardown put back."""
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _signal_handlers_restored():
    before = {signum: signal.getsignal(signum) for signum in _RESTORED_SIGNALS}
    yield
    for signum, handler in before.items():
        if signal.getsignal(signum) is not handler:
            signal.signal(signum, handler)


@pytest.fixture(scope="session")
def synthetic_root(tmp_path_factory) -> str:
    """A synthetic HumanML3D-layout dataset (80 motions, seed 0) written once for the whole session."""
    from utils.synthetic import generate_synthetic_dataset

    root = tmp_path_factory.mktemp("synthetic") / "Synthetic"
    generate_synthetic_dataset(str(root), num_motions=80, seed=0)
    return str(root)


@pytest.fixture(scope="module")
def source(synthetic_root) -> np.ndarray:
    """A synthetic motion's features, 50 frames (12 whole tokens and 2 frames no token covers): the source of the
    editing tests."""
    files = sorted(glob.glob(os.path.join(synthetic_root, "new_joint_vecs", "*.npy")))
    motion = next(m for m in (np.load(f) for f in files) if m.shape[0] >= 50)
    return motion[:50].astype(np.float32)
