"""What the engine writes to TensorBoard besides the window means: the gradient norm without clipping, and one
``Best/<metric>`` point per save of the best checkpoint, at the step its weights come from."""

from __future__ import annotations

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from test_engine import make_cfg, read_log, run_toy

from utils.run_dir import RunDir


def scalars(run: RunDir) -> dict[str, list[tuple[int, float]]]:
    events = EventAccumulator(run.model_dir, size_guidance={"scalars": 0})
    events.Reload()
    return {tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]}


def test_gradient_norm_is_logged_without_clipping(tmp_path):
    # A clip far above the norm clips nothing, so both runs train alike and must log the same norms.
    plain, _ = run_toy(tmp_path, "plain", make_cfg(max_iters=10, grad_clip=0.0))
    clipped, _ = run_toy(tmp_path, "clipped", make_cfg(max_iters=10, grad_clip=1e9))
    assert read_log(plain) == read_log(clipped)
    norms, clipped_norms = scalars(plain)["Train/grad_norm"], scalars(clipped)["Train/grad_norm"]
    assert [step for step, _ in norms] == [step for step, _ in clipped_norms] == [5, 10]
    assert all(value > 0 for _, value in norms)
    assert [value for _, value in norms] == pytest.approx([value for _, value in clipped_norms])


def test_best_checkpoint_saves_are_logged_at_their_steps(tmp_path):
    scores = iter([3.0, 1.0, 2.0, 0.5])  # improves at the 1st, 2nd and 4th validation (steps 5, 10, 20)

    def val_fn(model):
        return {"fid": next(scores), "top1": 0.5}

    run, result = run_toy(tmp_path, "best", make_cfg(max_iters=20, best_metric="fid"), val_fn=val_fn)
    logged = scalars(run)
    assert logged["Best/fid"] == [(5, 3.0), (10, 1.0), (20, 0.5)]
    assert [step for step, _ in logged["Val/fid"]] == [5, 10, 15, 20]
    assert (result.best_step, result.best_value) == (20, 0.5)
    assert [tag for tag in logged if tag.startswith("Best/")] == ["Best/fid"]


def test_a_stop_signal_inside_a_scalar_write_lets_the_write_finish(tmp_path, monkeypatch):
    """SIGTERM whose handler runs inside the writer's queue put, after the event is queued and before the queue counts
    it and wakes the writer thread: the stop is held until the write ends, so the queue's count stays true, the thread
    lives (it died of "task_done() called too many times") and the event reaches the file. The queue is reached
    through tensorboard's internals (pinned in requirements.txt)."""
    import signal
    import threading

    from utils.logging_utils import TensorBoard
    from utils.stop_signals import Stopped, stopping_on_signals

    thread_errors = []
    monkeypatch.setattr(threading, "excepthook", lambda args: thread_errors.append(args.exc_value))
    tb = TensorBoard(str(tmp_path))
    queue = tb.writer._get_file_writer().event_writer._async_writer._byte_queue
    real_put = queue._put

    def put_then_terminate(item):
        real_put(item)
        queue._put = real_put
        signal.raise_signal(signal.SIGTERM)  # its handler runs before put() counts the item and wakes the thread

    queue._put = put_then_terminate
    with pytest.raises(Stopped), stopping_on_signals():
        tb.scalar("Train/loss", 1.5, 7)
    tb.close()
    assert thread_errors == []
    events = EventAccumulator(str(tmp_path), size_guidance={"scalars": 0})
    events.Reload()
    assert [(e.step, e.value) for e in events.Scalars("Train/loss")] == [(7, 1.5)]
