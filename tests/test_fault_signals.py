"""Stop signals: SIGTERM (torchrun, a scheduler, ``kill``) or SIGHUP stops a script the way an error does. Its
clean-up runs (a checkpoint's temporary file is removed, a new run folder with nothing saved is taken back), it says
which signal stopped it and how to go on, exits with status 128 + the signal's number, and the run resumes."""

from __future__ import annotations

import multiprocessing
import os
import runpy
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
import torch
from fault_helpers import REPO, TOKENIZER_FLAGS, child_env, read_log, run_root, run_script, tail
from test_plot_loss import curve, write_run

import utils.bvh_import
import utils.plot_script
from utils.bvh_export import write_bvh
from utils.stop_signals import Stopped, raise_if_stopped, stopping_on_signals, stops_deferred
from utils.synthetic import synthesize_motion
from utils.user_errors import TRACEBACK_ENV

TERMINATED = 128 + signal.SIGTERM


@pytest.fixture(autouse=True)
def _stop_signals_at_their_default():
    """Each test starts with SIGTERM and SIGHUP at their default action, in this process and in the scripts and
    workers it starts, which inherit it: under ``nohup`` (SIGHUP ignored, which the scripts respect) the SIGHUP tests
    would otherwise test nothing. conftest puts the handlers back afterwards."""
    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, signal.SIG_DFL)


def _args(synthetic_root: str, checkpoints_dir, max_iters: int) -> list[str]:
    return [*TOKENIZER_FLAGS, "--data_root", synthetic_root, "--model", "RVQVAE_Tiny", "--max_iters", str(max_iters),
            "--save_every", "2", "--eval_every", "1000", "--seed", "3", "--name", "r",
            "--checkpoints_dir", str(checkpoints_dir)]


def _files_under(folder) -> list[str]:
    return sorted(os.path.relpath(os.path.join(d, n), folder) for d, _, names in os.walk(folder) for n in names)


def _wait_for_steps(proc: subprocess.Popen, root, stderr_path, steps: int, timeout: float = 120) -> None:
    """Poll until the run has logged ``steps`` optimizer steps and saved latest.tar (or fail with its stderr)."""
    log, latest = root / "model" / "train_log.jsonl", root / "model" / "latest.tar"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            break
        if latest.exists() and log.exists() and len(log.read_text().splitlines()) >= steps:
            return
        time.sleep(0.05)
    proc.kill()
    proc.wait()
    raise AssertionError(f"the run did not reach step {steps}: exit {proc.returncode}\n"
                         f"{stderr_path.read_text()[-4000:]}")


@pytest.mark.slow
def test_sigterm_stops_training_cleanly_and_it_resumes(tmp_path, synthetic_root):
    """SIGTERM from outside, while training runs: status 143, the message, no temporary file, and --is_continue
    finishes the run from latest.tar."""
    ckpt = tmp_path / "ckpt"
    root = run_root(ckpt, "r")
    cmd = [sys.executable, "train_vq.py", *_args(synthetic_root, ckpt, 100_000)]
    # Output to files, not pipes: a pipe nobody reads while the test polls could fill and block the run.
    out, err = tmp_path / "stdout", tmp_path / "stderr"
    with open(out, "w") as stdout, open(err, "w") as stderr, \
            subprocess.Popen(cmd, cwd=REPO, env=child_env(), stdout=stdout, stderr=stderr) as proc:
        _wait_for_steps(proc, root, err, steps=3)
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=120)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            pytest.fail(f"still running 120 s after SIGTERM\n--- stderr\n{err.read_text()[-4000:]}")
    stderr = err.read_text()
    done = subprocess.CompletedProcess(cmd, proc.returncode, out.read_text(), stderr)
    assert done.returncode == TERMINATED, tail(done)
    last = stderr.strip().splitlines()[-1]
    assert last == ("train_vq.py: stopped by SIGTERM; rerun with --is_continue to resume from the last checkpoint "
                    "(model/latest.tar)"), tail(done)
    assert [f for f in _files_under(root) if ".tmp-" in f] == []

    stopped_at = torch.load(root / "model" / "latest.tar", weights_only=True)["step"]
    done = run_script("train_vq.py", [*_args(synthetic_root, ckpt, stopped_at + 2), "--is_continue"])
    assert done.returncode == 0, tail(done)
    assert torch.load(root / "model" / "latest.tar", weights_only=True)["step"] == stopped_at + 2
    assert [row["step"] for row in read_log(root)] == list(range(1, stopped_at + 3))


@pytest.mark.slow
def test_sigterm_in_the_first_save_removes_the_temporary_and_the_new_run(tmp_path, synthetic_root):
    """SIGTERM while the step-0 latest.tar is half written: the temporary file is removed and, nothing being saved,
    so is the run folder the start created (with its dataset folder); the message says so."""
    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    done = run_script("train_vq.py", _args(synthetic_root, ckpt, 6), faults={"term_during_save": 0})
    assert done.returncode == TERMINATED, tail(done)
    assert os.listdir(ckpt) == [], _files_under(ckpt)
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("train_vq.py: stopped by SIGTERM; nothing was saved, so the new run folder "), tail(done)
    assert str(run_root(ckpt, "r")) in last and last.endswith("was removed: rerun to start again")


@pytest.mark.slow
def test_sigterm_inside_torch_save_still_stops_with_the_signal(tmp_path, synthetic_root):
    """SIGTERM whose handler runs inside torch.save's zip writer: the writer cannot finish the file and raises a
    RuntimeError of its own on the way out. The run still stops as SIGTERM says (status 143, the resume hint), the
    temporary is removed and the run resumes from the checkpoint before."""
    ckpt = tmp_path / "ckpt"
    root = run_root(ckpt, "r")
    done = run_script("train_vq.py", _args(synthetic_root, ckpt, 6), faults={"term_inside_save": 4})
    assert done.returncode == TERMINATED, tail(done)
    last = done.stderr.strip().splitlines()[-1]
    assert last == ("train_vq.py: stopped by SIGTERM; rerun with --is_continue to resume from the last checkpoint "
                    "(model/latest.tar)"), tail(done)
    assert [f for f in _files_under(root) if ".tmp-" in f] == []
    assert torch.load(root / "model" / "latest.tar", weights_only=True)["step"] == 2
    done = run_script("train_vq.py", [*_args(synthetic_root, ckpt, 6), "--is_continue"])
    assert done.returncode == 0, tail(done)
    assert [row["step"] for row in read_log(root)] == list(range(1, 7))


@pytest.mark.slow
def test_sighup_to_the_process_group_stops_training_with_dataloader_workers(tmp_path, synthetic_root, monkeypatch):
    """SIGHUP to the whole process group (a closed terminal) while training reads through two DataLoader workers,
    which die of it too: status 129, the message last, no dead-worker error behind the stop (the traceback is on to
    show one), no temporary file, and --is_continue finishes the run."""
    monkeypatch.setenv(TRACEBACK_ENV, "1")
    ckpt = tmp_path / "ckpt"
    root = run_root(ckpt, "r")
    workers = ["--num_workers", "2"]
    done = run_script("train_vq.py", [*_args(synthetic_root, ckpt, 8), *workers], faults={"hup_group_at_step": 5},
                      own_session=True)
    assert done.returncode == 128 + signal.SIGHUP, tail(done)
    assert done.stderr.strip().splitlines()[-1] == ("train_vq.py: stopped by SIGHUP; rerun with --is_continue to "
                                                    "resume from the last checkpoint (model/latest.tar)"), tail(done)
    assert "DataLoader worker" not in done.stderr, tail(done)
    assert [f for f in _files_under(root) if ".tmp-" in f] == []
    assert torch.load(root / "model" / "latest.tar", weights_only=True)["step"] == 4
    done = run_script("train_vq.py", [*_args(synthetic_root, ckpt, 8), *workers, "--is_continue"])
    assert done.returncode == 0, tail(done)
    assert [row["step"] for row in read_log(root)] == list(range(1, 9))


def test_a_stop_before_torch_save_enters_its_zip_writer_does_not_abort_the_exit(tmp_path):
    """A stop between torch.save creating its zip writer and entering the writer's with block: the writer finishes
    the file from its C++ destructor once the traceback goes, after the temporary was closed and removed. The write
    to the closed file used to raise inside the destructor and abort the process (SIGABRT) after the message."""
    code = ("import signal, sys, torch, torch.serialization\n"
            "from utils.checkpoint import save_checkpoint\n"
            "from utils.stop_signals import Stopped, exit_stopped, stopping_on_signals\n"
            "real = torch.serialization._open_zipfile_writer\n"
            "def interrupted(f):\n"
            "    writer = real(f)\n"
            "    signal.raise_signal(signal.SIGTERM)\n"
            "    return writer\n"
            "torch.serialization._open_zipfile_writer = interrupted\n"
            "try:\n"
            "    with stopping_on_signals():\n"
            "        save_checkpoint(sys.argv[1], {'weight': torch.zeros(3)})\n"
            "except Stopped as stop:\n"
            "    exit_stopped('train_vq.py', stop, 'rerun')\n")
    done = subprocess.run([sys.executable, "-c", code, str(tmp_path / "latest.tar")], cwd=REPO, env=child_env(),
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == TERMINATED, tail(done)
    assert done.stderr.strip() == "train_vq.py: stopped by SIGTERM; rerun", tail(done)
    assert os.listdir(tmp_path) == []


@pytest.mark.slow
def test_sigterm_while_the_engine_closes_its_loader_still_closes_the_rest(tmp_path, synthetic_root):
    """SIGTERM as training ends, while the engine's finally block closes the DataLoader workers: the progress bar,
    TensorBoard and the train log are closed all the same, before the message (the bar used to be redrawn after
    it, when the bar was let go at exit), which stays the last line."""
    ckpt = tmp_path / "ckpt"
    done = run_script("train_vq.py", _args(synthetic_root, ckpt, 4), faults={"term_in_loader_close": True})
    assert done.returncode == TERMINATED, tail(done)
    assert done.stderr.strip().splitlines()[-1].startswith("train_vq.py: stopped by SIGTERM; "), tail(done)
    assert [row["step"] for row in read_log(run_root(ckpt, "r"))] == [1, 2, 3, 4]


def test_an_error_in_the_clean_up_of_a_stop_is_reported_as_the_stop():
    """A clean-up the signal cut short may fail in turn (a zip writer that cannot finish its file): the block still
    ends with Stopped, the failure as its cause, so the exit status and message say what happened."""
    with pytest.raises(Stopped) as stopped, stopping_on_signals():
        try:
            signal.raise_signal(signal.SIGTERM)
        finally:
            raise RuntimeError("unexpected pos 46 vs 0")
    assert stopped.value.signum == signal.SIGTERM
    assert isinstance(stopped.value.__cause__, RuntimeError)
    assert isinstance(stopped.value.__cause__.__context__, Stopped)
    with pytest.raises(RuntimeError, match="no stop"), stopping_on_signals():
        raise RuntimeError("no stop")


@pytest.mark.slow
def test_sigterm_lost_in_a_finalizer_still_stops_training(tmp_path, synthetic_root):
    """SIGTERM whose handler runs inside a __del__ method: Python only prints the Stopped it raises, and repeats of
    the signal are ignored. The engine raises it again at the next step: status 143, and the run resumes."""
    ckpt = tmp_path / "ckpt"
    root = run_root(ckpt, "r")
    done = run_script("train_vq.py", _args(synthetic_root, ckpt, 20), faults={"term_in_finalizer": 3})
    assert done.returncode == TERMINATED, tail(done)
    assert "Exception ignored" in done.stderr
    assert done.stderr.strip().splitlines()[-1].startswith("train_vq.py: stopped by SIGTERM; rerun with --is_continue")
    assert torch.load(root / "model" / "latest.tar", weights_only=True)["step"] == 2
    done = run_script("train_vq.py", [*_args(synthetic_root, ckpt, 4), "--is_continue"])
    assert done.returncode == 0, tail(done)
    assert [row["step"] for row in read_log(root)] == list(range(1, 5))


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")  # the swallowed Stopped itself
def test_a_stop_swallowed_by_a_finalizer_is_raised_again():
    """Python only prints an exception raised in __del__: raise_if_stopped raises the lost stop again, inside the
    block only."""

    class Finalized:
        def __del__(self) -> None:
            signal.raise_signal(signal.SIGTERM)

    went_on = []
    with pytest.raises(Stopped) as stopped, stopping_on_signals():
        raise_if_stopped()
        Finalized()
        went_on.append(True)
        raise_if_stopped()
    assert went_on == [True] and stopped.value.signum == signal.SIGTERM
    raise_if_stopped()


def test_nested_deferrals_hold_a_stop_for_the_block_it_arrived_in():
    """Two nested stops_deferred blocks: a signal after the inner one ended is held by the outer one and raised when
    it ends (the inner block must take its own record off, not the outer's)."""
    order = []
    with pytest.raises(Stopped), stopping_on_signals():
        with stops_deferred():
            with stops_deferred():
                order.append("inner")
            signal.raise_signal(signal.SIGTERM)
            order.append("held")
        order.append("not reached")
    assert order == ["inner", "held"]


def test_an_error_after_a_held_stop_ends_the_block_as_the_stop():
    """A stop held back by stops_deferred, then an error of the block's own: the block ends as Stopped, the error
    as its cause."""
    with pytest.raises(Stopped) as stopped, stopping_on_signals(), stops_deferred():
        signal.raise_signal(signal.SIGTERM)
        raise OSError("disk full")
    assert isinstance(stopped.value.__cause__, OSError)


def test_stop_signals_raise_inside_the_block_only():
    """SIGTERM and SIGHUP raise Stopped (exit status 128 + number) inside the block; the handlers that were there
    before come back after it, also when it ends by the signal."""
    before = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGHUP)}
    for signum in (signal.SIGTERM, signal.SIGHUP):
        with pytest.raises(Stopped) as stopped, stopping_on_signals():
            assert signal.getsignal(signum) is not before[signum]
            signal.raise_signal(signum)
            pytest.fail("the signal did not stop the block")
        assert stopped.value.signum == signum and stopped.value.exit_status == 128 + signum
        assert str(stopped.value) == f"stopped by {signal.Signals(signum).name}"
        assert {s: signal.getsignal(s) for s in before} == before


def test_a_repeated_signal_does_not_interrupt_the_clean_up():
    """The second SIGTERM (torchrun passing on a scheduler's) arrives during the clean-up of the first: ignored."""
    cleaned = []
    with pytest.raises(Stopped), stopping_on_signals():
        try:
            signal.raise_signal(signal.SIGTERM)
        finally:
            signal.raise_signal(signal.SIGTERM)
            cleaned.append(True)
    assert cleaned == [True]


def test_a_repeat_while_the_process_exits_does_not_change_its_exit_status():
    """After the stop's message the interpreter still has to exit, which with torch loaded takes a second or more. A
    repeat of the signal then (torchrun passing on a scheduler's SIGTERM) used to kill it: the
    status became a kill by the signal instead of 128 + its number, and buffered output was lost."""
    code = ("import os, signal\n"
            "from utils.stop_signals import Stopped, exit_stopped\n"
            "try:\n"
            "    exit_stopped('train_vq.py', Stopped(signal.SIGTERM), 'rerun')\n"
            "finally:\n"
            "    os.kill(os.getpid(), signal.SIGTERM)\n"
            "    os.kill(os.getpid(), signal.SIGHUP)\n")
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=child_env(), capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == TERMINATED, tail(done)
    assert done.stderr.strip() == "train_vq.py: stopped by SIGTERM; rerun", tail(done)


def test_ignored_or_handled_signals_are_left_alone():
    """A SIGHUP ignored by nohup stays ignored; a handler set by someone else stays in place."""
    own = []
    previous = signal.signal(signal.SIGHUP, signal.SIG_IGN), signal.signal(signal.SIGTERM, lambda *a: own.append(1))
    try:
        with stopping_on_signals():
            assert signal.getsignal(signal.SIGHUP) is signal.SIG_IGN
            signal.raise_signal(signal.SIGHUP)
            signal.raise_signal(signal.SIGTERM)
        assert own == [1]
    finally:
        signal.signal(signal.SIGHUP, previous[0])
        signal.signal(signal.SIGTERM, previous[1])


def test_off_the_main_thread_nothing_is_installed():
    """Python sets signal handlers from the main thread only: elsewhere the block is a no-op, not a ValueError."""
    seen = []

    def body() -> None:
        with stopping_on_signals():
            seen.append(signal.getsignal(signal.SIGTERM))

    thread = threading.Thread(target=body)
    thread.start()
    thread.join()
    assert seen == [signal.SIG_DFL]


def _hang_up_self() -> None:
    signal.raise_signal(signal.SIGHUP)


def test_a_forked_child_keeps_the_default_action():
    """A process forked inside the block (a DataLoader worker) dies of the signal instead of raising in its copy of
    the script."""
    with stopping_on_signals():
        child = multiprocessing.get_context("fork").Process(target=_hang_up_self)
        child.start()
        child.join(timeout=60)
    assert child.exitcode == -signal.SIGHUP


# A process of a two-process launch, its stop watch quick, that runs SETUP, prints "ready" and runs BODY inside the
# scripts' stop block; it prints "cleaned" from the block's clean-up and "alive" when the block is done.
_LAUNCHED = """
import datetime, os, signal, sys, time
import utils.stop_signals as stops
stops.STUCK_AFTER_S = {grace}
{setup}
try:
    with stops.stopping_on_signals():
        try:
            print("ready", flush=True)
{body}
        finally:
            print("cleaned", flush=True)
except stops.Stopped as stop:
    stops.exit_stopped("train_x.py", stop, "rerun")
print("alive", flush=True)
"""


def _launched(body: str, grace: float, setup: str = "") -> subprocess.Popen:
    code = _LAUNCHED.format(grace=grace, setup=setup,
                            body="".join(f"            {line}\n" for line in body.splitlines()))
    env = {**child_env(), "RANK": "1", "WORLD_SIZE": "2"}
    return subprocess.Popen([sys.executable, "-c", code], cwd=REPO, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _when_ready(proc: subprocess.Popen) -> None:
    assert proc.stdout.readline() == "ready\n", proc.communicate(timeout=60)


def test_a_launched_process_stuck_in_native_code_exits_soon_after_a_stop():
    """Under torchrun, a process waiting in native code for another process (here a store read, as in the start-up's
    rendezvous when the first process refused the start) cannot run Python's handler: it used to sit there until
    torchrun killed it 30 s later. It now says why it stops and exits with 128 + the signal's number."""
    setup = ("import torch.distributed as dist\n"
             "store = dist.TCPStore('127.0.0.1', 0, 1, True, timeout=datetime.timedelta(seconds=120))\n")
    proc = _launched("store.get('never')", grace=1.0, setup=setup)
    _when_ready(proc)
    time.sleep(0.5)  # into the store read
    proc.send_signal(signal.SIGTERM)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == TERMINATED, (stdout, stderr)
    assert "cleaned" not in stdout
    assert stderr.strip().splitlines()[-1] == (
        "-c: stopped by SIGTERM, which came while this process waited for another one of the launch (a collective, "
        "or the start-up that the first process left); it exits without its clean-up"), stderr


def test_a_launched_process_that_takes_the_stop_cleans_up_as_before():
    """The watch leaves a stop the main thread takes alone, however long its clean-up then lasts."""
    proc = _launched("try:\n    time.sleep(60)\nfinally:\n    time.sleep(2)\n", grace=0.5)
    _when_ready(proc)
    proc.send_signal(signal.SIGTERM)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == TERMINATED and stdout == "cleaned\n", (stdout, stderr)
    assert stderr.strip() == "train_x.py: stopped by SIGTERM; rerun", stderr


def test_a_launched_process_ignores_the_signals_of_its_forked_children():
    """A child forked inside the block (a DataLoader worker) inherits the wakeup pipe unless it is dropped; its own
    SIGHUP would then read, in the parent's watch, as a stop the parent never took."""
    body = ("import multiprocessing\n"
            "child = multiprocessing.get_context('fork').Process(target=signal.raise_signal, args=(signal.SIGHUP,))\n"
            "child.start()\n"
            "child.join(timeout=60)\n"
            "assert child.exitcode == -signal.SIGHUP, child.exitcode\n"
            "time.sleep(1.5)\n")
    proc = _launched(body, grace=0.3)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 0 and stdout == "ready\ncleaned\nalive\n", (stdout, stderr)


def _wait_until_dead(pid: int, timeout: float = 10) -> None:
    """Until the child ``pid`` has exited (without reaping it, as torch's own check needs it unreaped)."""
    deadline = time.monotonic() + timeout
    while os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is None:
        assert time.monotonic() < deadline, f"process {pid} did not exit"
        time.sleep(0.01)


@pytest.fixture
def loader_iterator(monkeypatch):
    """A DataLoader iterator with one live worker, torch's SIGCHLD handler installed (again, if an earlier test had
    it taken off); the handler this process had comes back afterwards (conftest.py)."""
    import torch.utils.data._utils.signal_handling as torch_signals

    monkeypatch.setattr(torch_signals, "_SIGCHLD_handler_set", False)
    iterator = iter(torch.utils.data.DataLoader(range(4), num_workers=1, persistent_workers=True))
    next(iterator)
    yield iterator
    iterator._shutdown_workers()


def test_dataloader_workers_killed_by_the_stop_do_not_cut_the_clean_up_short(loader_iterator):
    """A stop sent to the process group (scancel, Kubernetes, a closed terminal) kills the DataLoader workers too.
    torch reports a dead worker from its SIGCHLD handler, with a RuntimeError raised in the main thread wherever it
    is: inside the stop's clean-up, that error skipped the rest of it (a temporary file, the engine's loggers). (A
    worker sent SIGTERM by its own parent exits quietly; one sent SIGHUP, or SIGTERM by anyone else, does not.)"""
    worker = loader_iterator._workers[0]
    cleaned = []
    with pytest.raises(Stopped) as stopped, stopping_on_signals():
        try:
            signal.raise_signal(signal.SIGHUP)
        finally:
            os.kill(worker.pid, signal.SIGHUP)
            _wait_until_dead(worker.pid)
            cleaned.append(True)
    assert cleaned == [True] and stopped.value.__cause__ is None


def test_a_child_signal_pending_with_the_stop_is_dropped_quietly(loader_iterator, monkeypatch):
    """A worker's SIGCHLD can be pending already when the stop's handler runs, which runs first (lower number) and
    takes torch's handler off. Python prints "Signal 17 ignored due to race condition" for a pending signal whose
    handler went back to the default: the stop must leave a handler that does nothing instead."""
    unraisable = []
    monkeypatch.setattr(sys, "unraisablehook", unraisable.append)
    both = {signal.SIGHUP, signal.SIGCHLD}
    main = threading.main_thread().ident
    with pytest.raises(Stopped), stopping_on_signals():
        signal.pthread_sigmask(signal.SIG_BLOCK, both)
        try:
            signal.pthread_kill(main, signal.SIGCHLD)
            signal.pthread_kill(main, signal.SIGHUP)
        finally:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, both)  # both handlers are due at once now
    time.sleep(0.01)
    assert unraisable == []


def test_reproduce_passes_the_signal_on_to_its_stage(tmp_path, monkeypatch):
    """SIGTERM to reproduce.py while a stage runs reaches the stage, which stops by its own clean-up; reproduce.py
    waits for it and stops too (it used to SIGKILL the stage)."""
    import reproduce
    from utils.recipes import RECIPES, Recipe, Stage

    started, stopped = tmp_path / "started", tmp_path / "stopped"
    fake = tmp_path / "python"
    fake.write_text(f"""#!{sys.executable}
import signal, sys, time
def stop(signum, frame):
    open({str(stopped)!r}, "w").write(str(signum))
    sys.exit(128 + signum)
signal.signal(signal.SIGTERM, stop)
open({str(started)!r}, "w").close()
time.sleep(120)
""")
    fake.chmod(0o755)
    monkeypatch.setitem(RECIPES, "one", Recipe("one", "a training", "none", ("synthetic",),
                                               (Stage("tokenizer", "train_vq.py", "r", (), ()),)))
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "Mean.npy").write_bytes(b"")  # the data step is skipped once the statistics exist
    argv = ["one", "--quick", "--checkpoints_dir", str(tmp_path / "ck"), "--data_root", str(tmp_path / "data"),
            "--evaluator_dir", str(tmp_path / "ev"), "--python", str(fake)]

    def terminate_when_started() -> None:
        deadline = time.monotonic() + 60
        while not started.exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        signal.pthread_kill(threading.main_thread().ident, signal.SIGTERM)  # wakes the main thread's wait

    sender = threading.Thread(target=terminate_when_started)
    sender.start()
    with pytest.raises(Stopped), stopping_on_signals():
        reproduce.main(argv)
    sender.join()
    assert stopped.read_text() == str(int(signal.SIGTERM))


def _terminated_after(write):
    """``write``, then SIGTERM to this process, as a scheduler's arriving while a file is being written."""

    def write_then_terminate(*args, **kwargs):
        write(*args, **kwargs)
        if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
            pytest.fail("SIGTERM would kill the script here, leaving what it was writing behind")
        os.kill(os.getpid(), signal.SIGTERM)

    return write_then_terminate


def _prepare_bvh_import(tmp_path) -> list[str]:
    (tmp_path / "src").mkdir()
    write_bvh(tmp_path / "src" / "jump.bvh", synthesize_motion(np.random.default_rng(8), "jump").joints, fps=20)
    return ["bvh", "--src", str(tmp_path / "src"), "--out", str(tmp_path / "Mocap"), "--skeleton", "smpl22"]


def _prepare_render(tmp_path) -> list[str]:
    np.save(tmp_path / "walk.npy", synthesize_motion(np.random.default_rng(8), "walk").joints[:8])
    return [str(tmp_path / "walk.npy"), "--dataset_name", "t2m", "--format", "gif", "--dpi", "20"]


def _prepare_plot_loss(tmp_path) -> list[str]:
    write_run(tmp_path / "run", {"Train/loss": curve()})
    return ["--log_dir", str(tmp_path / "run"), "--output", str(tmp_path / "loss.png")]


@pytest.mark.parametrize("script, prepare, writer, left", [
    ("prepare_data.py", _prepare_bvh_import, (utils.bvh_import, "write_motion"), ["jump.bvh"]),
    ("render.py", _prepare_render, (utils.plot_script, "_write_animation"), ["walk.npy"]),
    ("plot_loss.py", _prepare_plot_loss, (utils.plot_script.Figure, "savefig"), ["events.out.tfevents"]),
])
def test_scripts_outside_run_script_stop_cleanly_on_sigterm(tmp_path, monkeypatch, capsys, script, prepare, writer,
                                                              left):
    """prepare_data.py, render.py and plot_loss.py stopped by SIGTERM while writing: the half-written import folder,
    video or PNG is removed, the script says so in one line and exits with status 143."""
    monkeypatch.delenv(TRACEBACK_ENV, raising=False)
    argv = prepare(tmp_path)
    monkeypatch.setattr(*writer, _terminated_after(getattr(*writer)))
    monkeypatch.setattr(sys, "argv", [script, *argv])
    with pytest.raises(SystemExit) as exit_info:
        runpy.run_path(str(REPO / script), run_name="__main__")
    assert exit_info.value.code == TERMINATED
    assert capsys.readouterr().err.strip().splitlines()[-1] == f"{script}: stopped by SIGTERM; rerun the same command"
    # Only the inputs are left: no import staging folder, temporary file or partial output.
    assert _files_under(tmp_path) and all(os.path.basename(p).startswith(tuple(left)) for p in _files_under(tmp_path))
    # The process is exiting: a repeat of the signal is ignored until it has (see exit_stopped).
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_IGN
