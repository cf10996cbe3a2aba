"""Resume of what the engine logs and applies: the running loss window between two logs is carried by ``latest.tar``,
so a run interrupted between logs logs the same averages, in ``train_log.jsonl`` and TensorBoard, as an uninterrupted
one; the resumed step's TensorBoard points stay; settings that differ from the run's are applied and reported."""

from __future__ import annotations

import logging
import time

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from test_engine import META, Toy, ToyData, loss_fn, make_cfg, read_log, run_toy, val_loss

from utils.checkpoint import load_checkpoint, save_checkpoint
from utils.engine import train
from utils.run_dir import RunDir
from utils.seed import set_seed

TAGS = ("Train/loss", "Train/mse", "Train/l1", "Train/grad_norm", "Train/lr")


class Killed(Exception):
    """Stands in for a kill inside a step."""


def killed_at(step: int):
    """``loss_fn`` that stops the run inside ``step`` (after the checkpoint of an earlier step)."""
    calls = []

    def fn(model, batch):
        calls.append(1)
        if len(calls) == step:
            raise Killed(f"killed inside step {step}")
        return loss_fn(model, batch)
    return fn


def scalars(run: RunDir, tags: tuple[str, ...] = TAGS) -> dict[str, list[tuple[int, float]]]:
    events = EventAccumulator(run.model_dir)
    events.Reload()
    return {tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in tags}


def resume(run: RunDir, cfg: dict, loss=loss_fn):
    # TensorBoard orders a folder's event files by name, whose seconds and writer counter sort wrongly as text
    # when both files are from the same second: the resumed run's file must come after the interrupted one's.
    time.sleep(1.0)
    set_seed(123)  # whatever the process did before, resume restores the saved states
    return train(Toy(), ToyData(), loss, make_cfg(**cfg, is_continue=True), run, checkpoint_meta=META)


def test_a_run_killed_between_logs_logs_the_same_averages_after_resume(tmp_path):
    # Logs every 4 steps, saves every 6: the checkpoint of step 6 holds steps 5-6 of the window the step-8 log averages.
    cfg = dict(max_iters=16, log_every=4, save_every=6, eval_every=0, grad_clip=1.0)
    full, _ = run_toy(tmp_path, "full", make_cfg(**cfg))
    set_seed(0)
    half = RunDir(str(tmp_path / "checkpoints"), "t2m", "half")
    with pytest.raises(Killed):
        train(Toy(), ToyData(), killed_at(9), make_cfg(**cfg), half, checkpoint_meta=META)
    assert load_checkpoint(half.latest_path)["step"] == 6
    result = resume(half, cfg)
    assert read_log(half) == read_log(full)
    logged = scalars(full)
    assert [step for step, _ in logged["Train/loss"]] == [4, 8, 12, 16]
    assert scalars(half) == logged
    assert result.logs["loss"] == pytest.approx(sum(r["loss"] for r in read_log(full)[-4:]) / 4)


def all_scalars(run: RunDir) -> dict[str, list[tuple[int, float]]]:
    events = EventAccumulator(run.model_dir)
    events.Reload()
    return {tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]}


def test_a_run_extended_past_an_off_cadence_end_logs_as_an_uninterrupted_one(tmp_path):
    # The first run ends at step 13 and logs steps 11-13 there; extended to 20, its step-15 log still averages 11-15,
    # and the end-of-run points at step 13, which an uninterrupted run does not have, are replaced.
    cfg = dict(log_every=5, save_every=5, eval_every=0, grad_clip=1.0)
    full, _ = run_toy(tmp_path, "full", make_cfg(max_iters=20, **cfg))
    half, first = run_toy(tmp_path, "half", make_cfg(max_iters=13, **cfg))
    assert first.logs["loss"] == pytest.approx(sum(r["loss"] for r in read_log(half)[10:13]) / 3)
    assert [step for step, _ in scalars(half)["Train/loss"]] == [5, 10, 13]
    resume(half, {**cfg, "max_iters": 20})
    assert read_log(half) == read_log(full)
    assert [step for step, _ in scalars(full)["Train/loss"]] == [5, 10, 15, 20]
    assert scalars(half) == scalars(full)


@pytest.mark.parametrize(("first_steps", "save_every"), [(12, 6), (13, 5)])
def test_an_off_cadence_end_keeps_its_validation_when_extended(tmp_path, first_steps, save_every):
    # Validation every 4 steps, logs every 5. Ending at step 12, the first run validated (and saved a best checkpoint)
    # there, which an uninterrupted run has too; only the end-of-run Train/ points at step 12 go. Ending at step 13,
    # its last validation is that of step 12: no Val/ point is written at step 13 from it.
    cfg = dict(log_every=5, save_every=save_every, eval_every=4, grad_clip=1.0)
    full, _ = run_toy(tmp_path, "full", make_cfg(max_iters=20, **cfg), val_fn=val_loss)
    half, _ = run_toy(tmp_path, "half", make_cfg(max_iters=first_steps, **cfg), val_fn=val_loss)
    time.sleep(1.0)  # as resume() does
    set_seed(123)
    train(Toy(), ToyData(), loss_fn, make_cfg(max_iters=20, is_continue=True, **cfg), half, checkpoint_meta=META,
          val_fn=val_loss)
    logged = all_scalars(full)
    assert [step for step, _ in logged["Val/val_loss"]] == [4, 8, 12, 16, 20]
    assert 12 in [step for step, _ in logged["Best/val_loss"]]
    assert all_scalars(half) == logged


def test_a_checkpoint_without_the_off_cadence_record_resumes_as_an_on_cadence_end(tmp_path):
    # Checkpoints written before the record existed: their end is taken as on the --log_every cadence, so the
    # step-10 points stay (a run ending off it would have them replaced and logged again).
    cfg = dict(log_every=5, save_every=5, eval_every=0, grad_clip=1.0)
    full, _ = run_toy(tmp_path, "full", make_cfg(max_iters=15, **cfg))
    half, _ = run_toy(tmp_path, "half", make_cfg(max_iters=10, **cfg))
    ckpt = load_checkpoint(half.latest_path)
    del ckpt["log_off_cadence"]
    save_checkpoint(half.latest_path, ckpt)
    resume(half, {**cfg, "max_iters": 15})
    assert [step for step, _ in scalars(half)["Train/loss"]] == [5, 10, 15]
    assert scalars(half) == scalars(full)


def test_a_finished_off_cadence_end_resumed_without_more_steps_keeps_its_points(tmp_path):
    cfg = dict(max_iters=13, log_every=5, save_every=5, eval_every=0)
    run, _ = run_toy(tmp_path, "done", make_cfg(**cfg))
    before = scalars(run)
    resume(run, cfg)
    assert [step for step, _ in before["Train/loss"]] == [5, 10, 13]
    assert scalars(run) == before


def test_a_checkpoint_without_a_loss_window_resumes_with_an_empty_one(tmp_path):
    cfg = dict(max_iters=16, log_every=4, save_every=6, eval_every=0)
    run, _ = run_toy(tmp_path, "old", make_cfg(**{**cfg, "max_iters": 6}))
    state = load_checkpoint(run.latest_path)
    assert state["loss_window"][0]["count"] == 2  # steps 5 and 6, not yet logged
    del state["loss_window"]  # written before the window was saved
    save_checkpoint(run.latest_path, state)
    result = resume(run, cfg)
    log = read_log(run)
    points = dict(scalars(run, ("Train/loss",))["Train/loss"])
    assert points[8] == pytest.approx(sum(r["loss"] for r in log[6:8]) / 2)  # steps 7-8 only, as before
    assert result.step == 16


def test_the_saved_loss_window_loads_weights_only(tmp_path):
    run, _ = run_toy(tmp_path, "w", make_cfg(max_iters=7, log_every=4, save_every=7, eval_every=0, grad_clip=1.0))
    window = torch.load(run.latest_path, weights_only=True)["loss_window"]
    assert len(window) == 1 and window[0]["count"] == 3
    assert set(window[0]["sums"]) == {"loss", "mse", "l1", "grad_norm"}


def test_resume_reports_a_changed_ema_decay(tmp_path, caplog):
    # The EMA weights are what validation scores, the best checkpoint holds and later stages load: another decay (or
    # none) from the resumed step on is named with both values, as a changed schedule is.
    run, _ = run_toy(tmp_path, "ema", make_cfg(max_iters=6, ema_decay=0.9, eval_every=0))
    with caplog.at_level(logging.WARNING, logger="utils.engine"):
        train(Toy(), ToyData(), loss_fn, make_cfg(max_iters=8, ema_decay=0.99, eval_every=0, is_continue=True), run,
              checkpoint_meta=META)
    changed = [r.message for r in caplog.records if "resumed with other settings" in r.message]
    assert len(changed) == 1 and "max_iters 6 -> 8, ema_decay 0.9 -> 0.99" in changed[0]
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="utils.engine"):
        train(Toy(), ToyData(), loss_fn, make_cfg(max_iters=10, eval_every=0, is_continue=True), run,
              checkpoint_meta=META)
    changed = [r.message for r in caplog.records if "resumed with other settings" in r.message]
    assert len(changed) == 1 and "ema_decay 0.99 -> None" in changed[0]


def test_resume_reports_a_changed_mixed_precision(tmp_path, caplog):
    # The run records its --mixed_precision so that a resume trains alike: resumed with another one (a flag left out
    # of the command, a preset's), it trains on with the new one from the resumed step, and the log names both.
    run, _ = run_toy(tmp_path, "amp", make_cfg(max_iters=6, mixed_precision="bf16", eval_every=0))
    with caplog.at_level(logging.WARNING, logger="utils.engine"):
        result = train(Toy(), ToyData(), loss_fn, make_cfg(max_iters=8, eval_every=0, is_continue=True), run,
                       checkpoint_meta=META)
    changed = [r.message for r in caplog.records if "resumed with other settings" in r.message]
    assert len(changed) == 1 and "max_iters 6 -> 8, mixed_precision bf16 -> no;" in changed[0]
    assert result.step == 8 and load_checkpoint(run.latest_path)["engine"]["mixed_precision"] == "no"


def test_resume_reports_a_changed_schedule(tmp_path, caplog):
    # The current options win on resume, but a rate, decay or length that differs from the run's own (typed, or from
    # a preset or default that changed since) is named with both values: it changes the run from the resumed step.
    run, _ = run_toy(tmp_path, "sched", make_cfg(max_iters=10))
    with caplog.at_level(logging.WARNING, logger="utils.engine"):
        train(Toy(), ToyData(), loss_fn, make_cfg(max_iters=12, lr_decay=0.05, is_continue=True), run,
              checkpoint_meta=META)
    changed = [r.message for r in caplog.records if "resumed with other settings" in r.message]
    assert len(changed) == 1 and "max_iters 10 -> 12, lr_decay 0.5 -> 0.05" in changed[0]
    assert "from step 10" in changed[0]
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="utils.engine"):  # the same settings: nothing to report
        train(Toy(), ToyData(), loss_fn, make_cfg(max_iters=14, lr_decay=0.05, is_continue=True), run,
              checkpoint_meta=META)
    assert [r.message for r in caplog.records if "resumed with other settings" in r.message] == [
        f"{run.latest_path}: resumed with other settings than the run was saved with: max_iters 12 -> 14; the new "
        f"values apply from step 12 (the learning rate is that of the new schedule at this step)"]


def test_resume_applies_the_current_weight_decay_and_betas(tmp_path):
    # The current options win on resume for every schedule setting the engine reports, not only the learning rate:
    # loading the saved optimizer must not bring back the weight decay and betas the run started with.
    run, _ = run_toy(tmp_path, "wd", make_cfg(max_iters=6))
    train(Toy(), ToyData(), loss_fn, make_cfg(max_iters=8, weight_decay=0.1, betas=(0.8, 0.9), is_continue=True), run,
          checkpoint_meta=META)
    groups = load_checkpoint(run.latest_path)["optimizer"]["param_groups"]
    assert [(g["weight_decay"], tuple(g["betas"])) for g in groups] == [(0.1, (0.8, 0.9))] * len(groups)


def test_resume_keeps_the_tensorboard_points_of_the_resumed_step(tmp_path):
    # The interrupted run logged, validated and saved step 10; the resumed one trains from step 11, so the step-10
    # points must stay visible (only what the interrupted run logged after its last save is replaced).
    full, _ = run_toy(tmp_path, "full", make_cfg(max_iters=20), val_fn=val_loss)
    half, _ = run_toy(tmp_path, "half", make_cfg(max_iters=10), val_fn=val_loss)
    # TensorBoard reads a folder's event files in name order: whole seconds, then a counter of the process's writers,
    # which sorts wrongly as text (".9" after ".10") when both files are from the same second.
    time.sleep(1.0)
    train(Toy(), ToyData(), loss_fn, make_cfg(max_iters=20, is_continue=True), half, checkpoint_meta=META,
          val_fn=val_loss)
    scalars = {}
    for run in (full, half):
        events = EventAccumulator(run.model_dir)
        events.Reload()
        scalars[run.name] = {tag: [(e.step, e.value) for e in events.Scalars(tag)]
                             for tag in ("Train/loss", "Val/val_loss")}
    assert [step for step, _ in scalars["full"]["Train/loss"]] == [5, 10, 15, 20]
    assert scalars["half"] == scalars["full"]


def test_resume_with_another_seed_starts_the_next_epoch(tmp_path, caplog):
    # 48 samples, batch 8: 6 batches per epoch; 8 steps stop in epoch 1 after 2 of its batches.
    run, _ = run_toy(tmp_path, "seed", make_cfg(max_iters=8))
    data = load_checkpoint(run.latest_path)["data_state"]
    assert (data["epoch"], data["batches_done"]) == (1, 2)
    with caplog.at_level(logging.WARNING, logger="utils.engine"):
        train(Toy(), ToyData(), loss_fn, make_cfg(max_iters=9, seed=8, is_continue=True), run, checkpoint_meta=META)
    assert "resuming at the start of the next epoch" in caplog.text
    data = load_checkpoint(run.latest_path)["data_state"]
    assert (data["epoch"], data["batches_done"]) == (2, 1)


def test_a_run_killed_right_after_a_save_keeps_the_saved_steps_in_its_log(tmp_path):
    cfg = dict(max_iters=12, log_every=4, save_every=6, eval_every=0)
    full, _ = run_toy(tmp_path, "full", make_cfg(**cfg))
    set_seed(0)
    half = RunDir(str(tmp_path / "checkpoints"), "t2m", "half")
    with pytest.raises(Killed):  # inside step 7: after the step-6 save, before the step-8 log
        train(Toy(), ToyData(), killed_at(7), make_cfg(**cfg), half, checkpoint_meta=META)
    assert load_checkpoint(half.latest_path)["step"] == 6
    assert [r["step"] for r in read_log(half)] == list(range(1, 7))
    resume(half, cfg)
    assert read_log(half) == read_log(full)
