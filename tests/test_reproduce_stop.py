"""reproduce.py stopped from the terminal: Ctrl-C ends the call as SIGTERM does, the running stage stopped with it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from utils.cli import TRACEBACK_ENV
from utils.recipe_plan import REPO

# A training stage that says it started, then waits; SIGTERM stops it as it stops the project's scripts (their
# clean-up, exit status 143), while SIGINT would end it with Python's KeyboardInterrupt traceback.
STAGE = """#!{python}
import os, signal, sys, time
def stop(signum, frame):
    open({stopped!r}, "w").write(signal.Signals(signum).name)
    sys.exit(128 + signum)
signal.signal(signal.SIGTERM, stop)
open({started!r}, "w").close()
time.sleep(60)
"""

# reproduce.py run as from the shell, on a one-stage recipe added to the recipe table, with SIGINT as a terminal gives
# it: the test process may have been started with SIGINT ignored (a shell without job control starts its background
# commands so, a CI job's say), which Python and every process it starts would keep.
DRIVER = """import runpy, signal, sys
signal.signal(signal.SIGINT, signal.default_int_handler)
signal.pthread_sigmask(signal.SIG_UNBLOCK, {{signal.SIGINT}})
sys.path.insert(0, {repo!r})
from utils.recipes import RECIPES, Recipe, Stage
RECIPES["one"] = Recipe("one", "one training stage", "none", ("synthetic",), (Stage("tokenizer", "train_vq.py", "r",
                                                                                    (), ()),))
sys.argv = [{script!r}, *{argv!r}]
runpy.run_path({script!r}, run_name="__main__")
"""


# A launcher as ``accelerate launch`` with one process is: it starts the worker that trains and waits for it, without
# passing a SIGTERM on (Python's default: it dies of it, leaving the worker to itself). The worker does not hold
# reproduce.py's output pipes, so that the test's wait for them ends with reproduce.py.
LAUNCHER = """#!{python}
import subprocess, sys
worker = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"], stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL)
open({started!r}, "w").write(str(worker.pid))
sys.exit(worker.wait())
"""


def _start(tmp_path: Path, stage: str) -> subprocess.Popen:
    """reproduce.py running the ``one`` recipe, whose stage's interpreter is the script ``stage``, in a session of its
    own (which stands for the terminal: its process group is the one Ctrl-C signals)."""
    fake = tmp_path / "python"
    fake.write_text(stage)
    fake.chmod(0o755)
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "Mean.npy").write_bytes(b"")
    argv = ["one", "--quick", "--checkpoints_dir", str(tmp_path / "ck"), "--data_root", str(tmp_path / "data"),
            "--evaluator_dir", str(tmp_path / "ev"), "--python", str(fake)]
    driver = tmp_path / "driver.py"
    driver.write_text(DRIVER.format(repo=REPO, script=str(Path(REPO) / "reproduce.py"), argv=argv))
    env = {k: v for k, v in os.environ.items() if k != TRACEBACK_ENV}
    return subprocess.Popen([sys.executable, str(driver)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env, start_new_session=True)


def _wait_for(started: Path, call: subprocess.Popen) -> None:
    """Waits until the stage has written ``started``."""
    deadline = time.monotonic() + 120
    while not started.exists() and call.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    assert started.exists(), call.communicate(timeout=60)


def _running(pid: int) -> bool:
    """Whether process ``pid`` still runs (a zombie no longer does: it waits only to be reaped)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            return not any(line.startswith("State:") and "Z" in line.split()[1] for line in f)
    except FileNotFoundError:
        return False


def test_ctrl_c_stops_the_stage_and_ends_in_one_line(tmp_path):
    """Ctrl-C in the terminal (SIGINT to the whole foreground process group) stops the running stage with SIGTERM,
    so that it saves and ends cleanly, and reproduce.py ends as a SIGTERM ends it: one line saying how to go on, no
    traceback from it or the stage, exit status 130."""
    started, stopped = tmp_path / "started", tmp_path / "stopped"
    call = _start(tmp_path, STAGE.format(python=sys.executable, started=str(started), stopped=str(stopped)))
    try:
        _wait_for(started, call)
        os.killpg(call.pid, signal.SIGINT)
        out, err = call.communicate(timeout=60)
    finally:
        if call.poll() is None:
            os.killpg(call.pid, signal.SIGKILL)
            call.wait()
    assert call.returncode == 130, err
    assert "Traceback" not in err and "KeyboardInterrupt" not in err, err
    assert err.strip().splitlines()[-1] == ("reproduce.py: stopped by SIGINT; rerun the same command to go on where "
                                            "it stopped")
    assert stopped.read_text() == "SIGTERM"


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_a_stop_reaches_the_workers_of_a_launcher(tmp_path, signum):
    """A stage run by a launcher that does not pass a SIGTERM on to its worker (``accelerate launch`` with one
    process): Ctrl-C or a SIGTERM to reproduce.py alone stops the worker too, rather than leaving it training,
    orphaned, after the call ended."""
    started = tmp_path / "started"
    call = _start(tmp_path, LAUNCHER.format(python=sys.executable, started=str(started)))
    worker = None
    try:
        _wait_for(started, call)
        worker = int(started.read_text())
        os.kill(call.pid, signum)
        call.communicate(timeout=60)
        deadline = time.monotonic() + 10
        while _running(worker) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not _running(worker)
    finally:
        if call.poll() is None:
            os.killpg(call.pid, signal.SIGKILL)
            call.wait()
        if worker is not None and _running(worker):
            os.kill(worker, signal.SIGKILL)
    assert call.returncode == 128 + signum
