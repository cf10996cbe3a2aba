"""The one training loop every stage uses.

A script decides *what* to train (model, dataset, loss function, validation function); :func:`train` decides *how* to
step: device placement, DDP and mixed precision through ``accelerate``, the learning rate as a function of the step
(``utils.lr_schedule``), gradient clipping, EMA, log / eval / save cadence, best-checkpoint tracking, a guard against
non-finite losses, and exact resume.

Exact resume. ``model/latest.tar`` holds the unwrapped weights, optimizer (and fp16 grad scaler), EMA, step, the RNG
states of every process, the data position and the losses summed since the last log (so the first log after a resume
averages the same steps as an uninterrupted run's). The data order is a function of ``(seed, epoch)``
(``utils.batching``), resume starts the epoch at the first unconsumed batch, and every sample's ``random`` /
``np.random`` / torch CPU RNG is seeded from ``(seed, epoch, position)`` before the dataset reads it, so random crops
and caption choices do not depend on worker count, process count or interruptions. On CPU, N steps equal N/2 steps, a
restart with ``is_continue`` and N/2 more, bit for bit (weights, optimizer, EMA and the per-step losses in
``model/train_log.jsonl``).

Batch size. ``cfg.batch_size`` is the *global* batch: with P processes each takes ``batch_size // P`` samples of the
same global batch a single process would take, so a recipe (lr, milestones) means the same thing on any number of
GPUs and DDP's gradient averaging reproduces the single-process gradient of a mean loss.

Example::

    run = RunDir(args.checkpoints_dir, args.dataset_name, args.name)
    cfg = EngineConfig.from_namespace(args, max_iters=epochs_to_iters(args.epoch, len(train_set), args.batch_size))
    result = train(model, train_set, loss_fn, cfg, run, collate_fn=collate, val_fn=validate,
                   checkpoint_meta={"stage": "tokenizer", "model_name": args.model, "model_args": model_args,
                                    "dataset": dataset_info, "config": vars(args), "parent": None})
"""

from __future__ import annotations

import copy
import logging
import math
import os
from collections.abc import Callable, Mapping
from contextlib import ExitStack, nullcontext
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import torch
from accelerate import Accelerator
from accelerate.state import AcceleratorState
from accelerate.utils import InitProcessGroupKwargs, send_to_device
from torch import nn
from torch.utils.data import Dataset
from tqdm import tqdm

from utils.batching import EpochBatchSampler, EpochLoader
from utils.checkpoint import (
    CheckpointError,
    check_matches,
    load_checkpoint,
    remove_stale_temporaries,
    require_keys,
    save_checkpoint,
    to_plain,
    unwrap_model,
)
from utils.checkpoint_users import register_parent, replace_checkpoint
from utils.collectives import MainProcessFailed, all_gather_objects, broadcast_object
from utils.ema import EMA
from utils.engine_config import EngineConfig, TrainResult
from utils.engine_validation import run_val_fn
from utils.logging_utils import TensorBoard, setup_logging
from utils.lr_schedule import lr_factor
from utils.run_dir import RunDir, RunDirError, releasing_run_locks
from utils.seed import get_rng_state, set_rng_state, set_seed
from utils.stop_signals import raise_if_stopped
from utils.train_log import LossWindow, TrainLog

logger = logging.getLogger(__name__)

LossFn = Callable[[nn.Module, Any], tuple[torch.Tensor, Mapping[str, Any]]]
ValFn = Callable[[nn.Module], Mapping[str, Any]]

# Keys the engine writes; checkpoint_meta must not use them.
ENGINE_KEYS = frozenset({"format_version", "model", "ema", "optimizer", "scaler", "step", "epoch", "rng",
                         "data_state", "best", "metrics", "metrics_step", "engine", "loss_window", "log_off_cadence"})
REQUIRED_META = ("stage", "model_name", "model_args")
# How long a process waits in a collective for the others. While the first process validates (with --need_evaluation
# a generation pass over the val split) or writes a checkpoint, the others wait at the broadcast of its outcome, and
# the backends' default timeouts (10 minutes for NCCL, 30 for gloo) would end the run during a long validation.
COLLECTIVE_TIMEOUT = timedelta(hours=2)


class NonFiniteLossError(RuntimeError):
    """Training stopped because the loss became NaN or infinite."""


# ---------------------------------------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------------------------------------

def make_optimizer(model: nn.Module, cfg: EngineConfig) -> torch.optim.Optimizer:
    """The engine's default optimizer: ``AdamW(lr, betas, weight_decay)`` over ``model.parameters()``.

    PyTorch's fused AdamW kernel is used where it exists for the parameters (CPU, CUDA): it applies the same update
    in one pass over each tensor instead of about ten elementwise kernels per tensor, which matters most for the
    291M-parameter MARDM-XL (``bench/bench_mardm.py``). Results agree with the per-tensor implementation to rounding
    (about 1e-9 after a few steps). Elsewhere the default implementation runs.
    """
    params = list(model.parameters())
    try:
        return torch.optim.AdamW(params, lr=cfg.lr, betas=cfg.betas, weight_decay=cfg.weight_decay, fused=True)
    except (RuntimeError, ValueError) as e:
        logger.info("fused AdamW unavailable for these parameters (%s); using the default implementation", e)
        return torch.optim.AdamW(params, lr=cfg.lr, betas=cfg.betas, weight_decay=cfg.weight_decay)


def compile_model(model: nn.Module) -> nn.Module:
    """``torch.compile(model)`` where it can run, the model itself otherwise (logged).

    Dynamo's ``suppress_errors`` makes a frame that fails to compile (no C++ compiler, an unsupported operation)
    run eagerly instead of stopping the run. On CPU compilation takes minutes and gains little for the conv
    tokenizers; it pays off on GPU.
    """
    import torch._dynamo

    torch._dynamo.config.suppress_errors = True
    try:
        return torch.compile(model)
    except Exception as e:  # any failure to set compilation up leaves the eager model, which is always correct
        logger.warning("torch.compile failed (%s: %s); training eagerly", type(e).__name__, e)
        return model


def _make_accelerator(mixed_precision: str) -> Accelerator:
    shared = AcceleratorState._shared_state
    if shared and shared.get("_mixed_precision") != mixed_precision:
        # The state is a process-wide singleton; a second run with another precision in the same process (a notebook,
        # the test suite) would otherwise be refused.
        AcceleratorState._reset_state()
    # torchrun on a machine without CUDA: accelerate only picks MULTI_CPU (gloo) when told to use the CPU.
    cpu = int(os.environ.get("LOCAL_RANK", -1)) != -1 and not torch.cuda.is_available()
    accelerator = Accelerator(mixed_precision=mixed_precision, cpu=cpu,
                              kwargs_handlers=[InitProcessGroupKwargs(timeout=COLLECTIVE_TIMEOUT)])
    if mixed_precision == "fp16" and accelerator.device.type == "cpu":
        logger.warning("fp16 mixed precision is not available on CPU; training in fp32")
    # `accelerate launch --mixed_precision` (or the precision saved by `accelerate config`) reaches the script only as
    # this variable, which the explicit argument above overrides: say so rather than train in another precision.
    launcher = os.environ.get("ACCELERATE_MIXED_PRECISION", "").lower()
    if launcher and launcher != mixed_precision and accelerator.is_main_process:
        logger.warning("accelerate launch asks for mixed precision %s, but this run trains with --mixed_precision %s: "
                       "the script's flag decides (pass --mixed_precision %s to train in %s)", launcher,
                       mixed_precision, launcher, launcher)
    return accelerator


def _on_main(accelerator: Accelerator, fn: Callable[[], Any]) -> Any:
    """Run ``fn`` on the main process; if it raises, every process raises (no rank is left waiting at a barrier)."""
    result, error = None, None
    if accelerator.is_main_process:
        try:
            result = fn()
        except Exception as e:
            error = e
    if accelerator.num_processes > 1:
        message = broadcast_object(f"{type(error).__name__}: {error}" if error is not None else None, src=0)
        if error is None and message is not None:
            raise MainProcessFailed(f"the main process failed: {message}")
    if error is not None:
        raise error
    return result


def _gather(accelerator: Accelerator, state: Any) -> list[Any]:
    """``state`` of every process, in rank order (a collective: every process must call it)."""
    if accelerator.num_processes == 1:
        return [state]
    return all_gather_objects(state)


def _check_run_folder(run: RunDir, cfg: EngineConfig, min_free_bytes: int) -> None:
    """Fail at start rather than at the first save: unwritable or full disk, or a run that would be overwritten."""
    run.ensure_writable(min_free_bytes=min_free_bytes)
    removed = remove_stale_temporaries(run.model_dir)
    if removed:
        logger.info("removed temporary files of an interrupted save: %s", removed)
    check_run_start(run, cfg.is_continue)


def check_run_start(run: RunDir, is_continue: bool, meta: Mapping[str, Any] | None = None) -> None:
    """What a script checks before it writes into its run folder (``opt.yaml``, logs) or loads its data and models,
    so that a refused start leaves the run as it was and names the real problem: a new run must not find
    ``latest.tar`` there; a resumed run must find it (a misspelt ``--name`` is reported before any other flag is
    judged) and, when ``meta`` is given, it must hold the same stage, model and model arguments (``train`` checks
    both again on resume). An existing run folder is locked first (``RunDir.lock``), so a second start of a run that
    is training fails here, before it loads anything; a new folder is locked when ``make_dirs`` creates it."""
    if os.path.isdir(run.root):
        run.lock()
    path = run.latest_path
    if not is_continue:
        if os.path.exists(path):
            raise RunDirError(f"{path} exists: pass --is_continue to resume that run, or choose another --name (or "
                              f"delete {run.root}) to start a new one")
        return
    _require_latest(path)
    if meta is not None:
        _check_same_model(path, load_checkpoint(path), meta)


def _require_latest(path: str) -> None:
    if not os.path.exists(path):
        raise CheckpointError(f"--is_continue: no checkpoint to resume at {path} (the run folder is "
                              f"<checkpoints_dir>/<dataset_name>/<name>; check those three flags)")


def _check_same_model(path: str, ckpt: Mapping[str, Any], meta: Mapping[str, Any]) -> None:
    for key in ("stage", "model_name", "model_args"):
        check_matches(path, key, ckpt.get(key), meta[key])


def _improved(value: float, best: float | None, mode: str) -> bool:
    if not math.isfinite(value):
        return False
    return best is None or (value < best if mode == "min" else value > best)


def _estimate_checkpoint_bytes(model: nn.Module, with_ema: bool) -> int:
    weights = sum(t.numel() * t.element_size() for t in model.state_dict().values())
    # weights + AdamW's two moments (+ EMA); the temporary file of a save coexists with the previous checkpoint.
    return 2 * weights * (3 + int(with_ema))


@dataclass
class _State:
    step: int = 0
    epoch: int = 0
    batches_done: int = 0  # batches of the current epoch already trained on
    best_value: float | None = None
    best_step: int | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    metrics_step: int | None = None  # the step ``metrics`` were taken at
    # The last Train/ point is the end of a run off the --log_every cadence: one an uninterrupted longer run lacks.
    log_off_cadence: bool = False
    # On resume from such an end: the step's other TensorBoard points (Val/, Best/), which purging it removes.
    end_points: dict[str, float] = field(default_factory=dict)


# ---------------------------------------------------------------------------------------------------------------------
# The loop
# ---------------------------------------------------------------------------------------------------------------------

def train(model: nn.Module, train_dataset: Dataset, loss_fn: LossFn, cfg: EngineConfig, run: RunDir, *,
          checkpoint_meta: dict[str, Any], collate_fn: Callable | None = None, val_fn: ValFn | None = None,
          optimizer_factory: Callable[[nn.Module], torch.optim.Optimizer] | None = None) -> TrainResult:
    """Train ``model`` for ``cfg.max_iters`` optimizer steps (resuming from ``run.latest_path`` if ``cfg.is_continue``).

    Args:
        model: the module to train (not yet on a device; frozen helpers belong in ``loss_fn``, not here). Buffers
            updated in ``forward`` (EMA codebooks) are part of ``state_dict`` and saved like weights.
        train_dataset: map-style dataset; batches are built by the engine (see :class:`EpochBatchSampler`).
        loss_fn: ``loss_fn(model, batch) -> (loss, logs)``; ``batch`` is on the device, ``loss`` a scalar tensor,
            ``logs`` maps term names to floats / 0-d tensors (same keys every step). Under DDP only ``model(...)``
            (forward) synchronises gradients, so call it rather than a submodule's method.
        cfg: see :class:`EngineConfig`.
        run: the run's folders.
        checkpoint_meta: plain values stored in every checkpoint: ``stage``, ``model_name``, ``model_args``
            (required) and ``dataset``, ``config``, ``parent`` (recommended).
        collate_fn: passed to the ``DataLoader``.
        val_fn: ``val_fn(model) -> {metric: value}``, called every ``cfg.eval_every`` steps on the main process only,
            in eval mode under ``torch.no_grad``, with the EMA weights when EMA is on; must not use collectives.
            The global RNG states are restored afterwards so validation never changes the training trajectory.
        optimizer_factory: ``factory(model) -> optimizer`` instead of :func:`make_optimizer`; each param group's
            ``lr`` is its base rate, scaled by the schedule.

    Returns:
        :class:`TrainResult`. Raises :class:`NonFiniteLossError` when the loss becomes NaN/inf (the batch is saved to
        ``model/nan_batch_step<k>.pt``, ``latest.tar`` keeps the last good state).
    """
    # The run's lock (RunDir.lock), when train takes it itself rather than a script that goes on writing into the run
    # afterwards, is given back on return.
    with releasing_run_locks():
        return _train(model, train_dataset, loss_fn, cfg, run, checkpoint_meta=checkpoint_meta, collate_fn=collate_fn,
                      val_fn=val_fn, optimizer_factory=optimizer_factory)


def _train(model: nn.Module, train_dataset: Dataset, loss_fn: LossFn, cfg: EngineConfig, run: RunDir, *,
           checkpoint_meta: dict[str, Any], collate_fn: Callable | None, val_fn: ValFn | None,
           optimizer_factory: Callable[[nn.Module], torch.optim.Optimizer] | None) -> TrainResult:
    require_keys(checkpoint_meta, list(REQUIRED_META), "checkpoint_meta")
    clash = sorted(ENGINE_KEYS & set(checkpoint_meta))
    if clash:
        raise ValueError(f"checkpoint_meta uses keys reserved for the engine: {clash}")

    # -- setup -------------------------------------------------------------------------------------------------------
    accelerator = _make_accelerator(cfg.mixed_precision)
    is_main, rank, world = accelerator.is_main_process, accelerator.process_index, accelerator.num_processes
    # Made before the log file would make it, so that a new folder counts as this start's and a start refused before
    # its first checkpoint removes it (discarding_failed_starts): train_evaluator's stage-1 run is made only here.
    _on_main(accelerator, run.make_dirs)
    setup_logging(run.log_file, is_main)
    needed = max(cfg.min_free_bytes, _estimate_checkpoint_bytes(model, cfg.ema_decay is not None))
    _on_main(accelerator, lambda: _check_run_folder(run, cfg, needed))
    set_seed(cfg.seed + rank)  # distinct model randomness per process; data randomness is seeded per sample
    per_epoch = EpochBatchSampler(len(train_dataset), cfg.batch_size, cfg.seed, 0, world_size=world).num_batches
    eval_every = cfg.eval_every or per_epoch
    save_every = cfg.save_every or per_epoch

    # The EMA evaluation copy is taken before prepare(), which patches forward() with autocast on the instance; only
    # the first process validates, so only it holds one (a copy of the whole model: 1.2 GB for MARDM-XL).
    eval_copy = copy.deepcopy(model) if cfg.ema_decay is not None and val_fn is not None and is_main else None
    optimizer = optimizer_factory(model) if optimizer_factory is not None else make_optimizer(model, cfg)
    # Each group's hyperparameters as the current options set them (lr, betas, weight decay, ...), without its tensors.
    fresh_groups = [{k: v for k, v in group.items() if k != "params"} for group in optimizer.param_groups]
    model.train()
    model, optimizer = accelerator.prepare(model, optimizer)
    net = unwrap_model(model)
    if cfg.compile:
        model = compile_model(model)
    if eval_copy is not None:
        eval_copy.to(accelerator.device)
    ema = EMA(net, cfg.ema_decay) if cfg.ema_decay is not None else None
    state = _State()

    def checkpoint_state(resume: bool) -> dict[str, Any]:
        ckpt = {**checkpoint_meta, "model": net.state_dict(), "step": state.step, "epoch": state.epoch,
                "metrics": dict(state.metrics), "metrics_step": state.metrics_step, "engine": cfg.to_dict(),
                "best": {"metric": cfg.best_metric, "mode": cfg.best_mode, "value": state.best_value,
                         "step": state.best_step, "evaluated_with": "ema" if ema is not None else "model"}}
        if ema is not None:
            ckpt["ema"] = ema.state_dict()
        if resume:
            ckpt["optimizer"] = optimizer.state_dict()
            if accelerator.scaler is not None:
                ckpt["scaler"] = accelerator.scaler.state_dict()
            ckpt["data_state"] = {"seed": cfg.seed, "epoch": state.epoch, "batches_done": state.batches_done,
                                  "num_samples": len(train_dataset), "batch_size": cfg.batch_size}
            ckpt["log_off_cadence"] = state.log_off_cadence
        return ckpt

    window = LossWindow(accelerator)

    def save_latest() -> None:
        # One collective (outside _on_main) for the RNG states and loss windows of every process.
        gathered = _gather(accelerator, {"rng": get_rng_state(), "loss_window": window.state_dict()})
        per_process = {key: [g[key] for g in gathered] for key in ("rng", "loss_window")}
        _on_main(accelerator, lambda: replace_checkpoint(run.latest_path, {**checkpoint_state(True), **per_process}))

    if cfg.is_continue:
        _resume(run, cfg, checkpoint_meta, net, optimizer, ema, accelerator, state, len(train_dataset), window)
    for group, fresh in zip(optimizer.param_groups, fresh_groups):
        # The current options win over the hyperparameters stored in a resumed optimizer (load_state_dict brings back
        # the saved groups' rates, betas and weight decay); its moments and step counts are what resume restores.
        group.update(fresh)
        group["initial_lr"] = fresh["lr"]
    # The resumed step's own points (train log, validation) were written before its checkpoint; what the interrupted
    # run logged after that is replaced from the next step on. A run that ended off the --log_every cadence logged
    # Train/ points there that a longer run has not: extended, it replaces that step too and logs its others again.
    replace_end = cfg.is_continue and state.log_off_cadence and state.step < cfg.max_iters
    tb = TensorBoard(run.model_dir, enabled=is_main,
                     purge_step=(state.step if replace_end else state.step + 1) if cfg.is_continue else None)
    for tag, value in state.end_points.items() if replace_end else ():
        tb.scalar(tag, value, state.step)
    train_log = TrainLog(run.train_log_path, state.step, enabled=is_main)
    if not cfg.is_continue:
        save_latest()  # a resumable step-0 state; also proves now that checkpoint_meta can be stored
    # Only once a checkpoint exists (a refused start registers nothing); again on resume, for runs older than this.
    _on_main(accelerator, lambda: register_parent(checkpoint_meta.get("parent"), run.root))
    logger.info("training %s on %s: %d processes, %s, mixed precision %s, %d steps (%d per epoch), from step %d",
                type(net).__name__, accelerator.device, world, f"global batch {cfg.batch_size}",
                "no" if not accelerator.native_amp else accelerator.mixed_precision, cfg.max_iters, per_epoch,
                state.step)

    last_logs: dict[str, float] = {}
    anomaly = torch.autograd.detect_anomaly if cfg.detect_anomaly else nullcontext
    if cfg.detect_anomaly:
        logger.warning("autograd anomaly detection is on: training is several times slower")
    progress = tqdm(total=cfg.max_iters, initial=state.step, disable=not is_main, dynamic_ncols=True, desc=run.name)
    pin = accelerator.device.type == "cuda"
    # Workers start once and serve every epoch (persistent), which keeps the exact data order of resume.
    epochs = EpochLoader(train_dataset, collate_fn, cfg.num_workers, pin)
    try:
        while state.step < cfg.max_iters:
            sampler = EpochBatchSampler(len(train_dataset), cfg.batch_size, cfg.seed, state.epoch,
                                        start=state.batches_done, rank=rank, world_size=world)
            for batch in epochs.epoch(sampler):
                raise_if_stopped()  # a stop whose exception a finalizer swallowed
                batch = send_to_device(batch, accelerator.device, non_blocking=pin)
                lr_scale = lr_factor(state.step, cfg.warm_up_iter, cfg.milestones, cfg.lr_decay)
                for group in optimizer.param_groups:
                    group["lr"] = group["initial_lr"] * lr_scale
                with anomaly():
                    with accelerator.autocast():
                        loss, logs = loss_fn(model, batch)
                    _check_finite(loss, logs, batch, state, run, accelerator, window, train_log)
                    accelerator.backward(loss)
                grad_norm = accelerator.clip_grad_norm_(model.parameters(), cfg.grad_clip) if cfg.grad_clip else None
                if accelerator.scaler is None:  # fp16's grad scaler skips the update of non-finite gradients itself
                    # The norm the check needs is logged too, so Train/grad_norm is there without --grad_clip.
                    grad_norm = grad_norm if grad_norm is not None else _gradient_norm(model)
                    _check_finite(loss, logs, batch, state, run, accelerator, window, train_log, grad_norm=grad_norm)
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
                if ema is not None:
                    ema.update(net)
                state.step += 1
                state.batches_done += 1
                if state.batches_done == per_epoch:
                    state.epoch, state.batches_done = state.epoch + 1, 0
                window.add(state.step, loss, logs, optimizer.param_groups[0]["lr"], grad_norm)
                progress.update(1)

                done = state.step >= cfg.max_iters
                on_cadence = state.step % cfg.log_every == 0
                if on_cadence or done:
                    # A last log off the cadence keeps its window: a resume that trains on logs the same averages.
                    last_logs = window.report(train_log, reset=on_cadence)
                    state.log_off_cadence = not on_cadence
                    tb.scalars("Train", last_logs, state.step)
                    progress.set_postfix(loss=f"{last_logs['loss']:.4f}", lr=f"{last_logs['lr']:.2e}")
                    logger.info("step %d epoch %d %s", state.step, state.epoch,
                                " ".join(f"{k} {v:.5g}" for k, v in last_logs.items()))
                if val_fn is not None and state.step % eval_every == 0:
                    _on_main(accelerator, lambda: _validate(val_fn, net, ema, eval_copy, cfg, run, state, tb,
                                                            checkpoint_state))
                if state.step % save_every == 0 or done:
                    window.flush(train_log)
                    tb.flush()  # on disk before the checkpoint that says this step is done (resume keeps them)
                    save_latest()
                if done:
                    break
    finally:
        # Each is closed even when closing one before it fails, or a stop signal lands in it (joining the DataLoader
        # workers takes a while as training ends): an ExitStack runs every callback, last registered first.
        with ExitStack() as closing:
            for close in (train_log.close, tb.close, progress.close, epochs.close):
                closing.callback(close)

    best_path = run.best_path(cfg.best_metric)
    return TrainResult(step=state.step, epoch=state.epoch, logs=last_logs, metrics=dict(state.metrics),
                       metrics_step=state.metrics_step,
                       best_value=state.best_value, best_step=state.best_step, latest_path=run.latest_path,
                       best_path=best_path if os.path.exists(best_path) else None, train_log_path=run.train_log_path)


# ---------------------------------------------------------------------------------------------------------------------
# Pieces of the loop
# ---------------------------------------------------------------------------------------------------------------------

def _gradient_norm(model: nn.Module) -> torch.Tensor:
    """The 2-norm of all of ``model``'s gradients (0 when none has one)."""
    return torch.nn.utils.get_total_norm([p.grad for p in model.parameters() if p.grad is not None])


def _check_finite(loss: torch.Tensor, logs: Mapping[str, Any], batch: Any, state: _State, run: RunDir,
                  accelerator: Accelerator, window: LossWindow, train_log: TrainLog,
                  grad_norm: torch.Tensor | None = None) -> None:
    """Stop before a non-finite loss reaches the weights: dump the batch, keep ``latest.tar``, raise. Given
    ``grad_norm`` (after backward), the same for non-finite gradients of a finite loss (a NaN in a branch that
    ``torch.where`` discards, an infinite derivative): applied, they would turn every weight into NaN.

    One host sync per check (the field's loops pay the same for ``loss.item()``); under DDP the loss flag is reduced
    so that every process stops at the same step (gradients are already averaged over processes).
    """
    checked = loss if grad_norm is None else grad_norm
    bad = (~torch.isfinite(checked.detach())).float()
    if accelerator.num_processes > 1 and grad_norm is None:
        bad_anywhere = accelerator.reduce(bad.clone(), reduction="sum")
    else:
        bad_anywhere = bad
    if not bad_anywhere.item():
        return
    step = state.step + 1
    window.flush(train_log)
    suffix = f"_rank{accelerator.process_index}" if accelerator.num_processes > 1 else ""
    path = os.path.join(run.model_dir, f"nan_batch_step{step}{suffix}.pt")
    terms = {k: float(v) for k, v in logs.items()}
    if bad.item():
        what = (f"non-finite loss {float(loss.detach()):g}" if grad_norm is None else
                f"non-finite gradient norm {float(grad_norm.detach()):g} of the finite loss {float(loss.detach()):g}")
        try:
            save_checkpoint(path, {"stage": "nan_batch", "step": step, "epoch": state.epoch,
                                   "rank": accelerator.process_index, "loss": loss.detach().float().cpu(),
                                   "logs": terms, "batch": to_plain(batch)})
            where = f"the batch was saved to {path}"
        except OSError as e:  # a full disk must not hide the stop's own report behind its dump's
            where = f"its batch could not be saved to {path} ({e.strerror or e})"
    else:
        # This process's own loss is finite: saying "non-finite loss 1.05" would send the reader after the wrong one.
        what = f"non-finite loss on another process (this process's loss {float(loss.detach()):g})"
        where = f"that process saved its batch to {os.path.join(run.model_dir, f'nan_batch_step{step}_rank*.pt')}"
    raise NonFiniteLossError(
        f"{what} at step {step} (epoch {state.epoch}); terms {terms}. Training stopped; {where}, and "
        f"{run.latest_path} still holds the last good state. Check the data for NaN/inf (e.g. a zero std in the "
        f"normalisation statistics), lower --lr, set --grad_clip, or find the operation with --detect_anomaly.")


def _validate(val_fn: ValFn, net: nn.Module, ema: EMA | None, eval_copy: nn.Module | None, cfg: EngineConfig,
              run: RunDir, state: _State, tb: TensorBoard, checkpoint_state: Callable[[bool], dict]) -> None:
    """Run ``val_fn`` (main process), log ``Val/*``, and write the best checkpoint when ``cfg.best_metric`` improves
    (logged as ``Best/<best_metric>`` at that step)."""
    metrics = run_val_fn(val_fn, net, ema, eval_copy)
    state.metrics, state.metrics_step = metrics, state.step
    tb.scalars("Val", metrics, state.step)
    logger.info("validation at step %d: %s", state.step, " ".join(f"{k} {v:.5g}" for k, v in metrics.items()))
    if cfg.best_metric not in metrics:
        raise KeyError(f"val_fn returned {sorted(metrics)}, which lacks best_metric {cfg.best_metric!r}")
    value = metrics[cfg.best_metric]
    if _improved(value, state.best_value, cfg.best_mode):
        previous = state.best_value
        state.best_value, state.best_step = value, state.step
        replace_checkpoint(run.best_path(cfg.best_metric), checkpoint_state(False))
        # One point per save of the best checkpoint: the curve's steps are the steps the best weights come from.
        tb.scalar(f"Best/{cfg.best_metric}", value, state.step)
        logger.info("%s improved %s -> %.5g: saved %s", cfg.best_metric,
                    "(none)" if previous is None else f"{previous:.5g}", value, run.best_path(cfg.best_metric))


# How a run steps: the current options win on resume (so a run can be continued with another rate or length), but a
# value that differs from the run's own is reported, whether it was typed or came from a preset or default that
# changed since the run started. The EMA decay belongs here: the EMA weights are what validation scores, the best
# checkpoint holds and later stages load, and without it later checkpoints carry none. So does the precision: the run
# records it so that a resume trains alike, and a switch (out of fp16's overflows, onto a machine without bf16) is
# allowed but said.
SCHEDULE_KEYS = ("max_iters", "lr", "warm_up_iter", "milestones", "lr_decay", "weight_decay", "betas", "grad_clip",
                 "ema_decay", "mixed_precision")


def _warn_schedule_changes(path: str, saved: Mapping[str, Any], cfg: EngineConfig, step: int,
                           warn: Callable[..., None]) -> None:
    current = cfg.to_dict()
    changed = [f"{key} {saved[key]} -> {current[key]}" for key in SCHEDULE_KEYS
               if key in saved and saved[key] != current[key]]
    if changed:
        warn("%s: resumed with other settings than the run was saved with: %s; the new values apply from step %d "
             "(the learning rate is that of the new schedule at this step)", path, ", ".join(changed), step)


def _resume(run: RunDir, cfg: EngineConfig, meta: dict[str, Any], net: nn.Module, optimizer: torch.optim.Optimizer,
            ema: EMA | None, accelerator: Accelerator, state: _State, num_samples: int, window: LossWindow) -> None:
    """Restore everything ``latest.tar`` holds into the live objects (on every process; what it finds changed is
    reported once, by the first process)."""
    warn = logger.warning if accelerator.is_main_process else (lambda *args, **kwargs: None)
    path = run.latest_path
    _require_latest(path)
    ckpt = load_checkpoint(path)
    require_keys(ckpt, ["model", "optimizer", "step", "epoch", "rng", "data_state", "best", "metrics"], path)
    _check_same_model(path, ckpt, meta)
    try:
        net.load_state_dict(ckpt["model"])
    except RuntimeError as e:  # torch names the model class and the weights, not the file
        raise CheckpointError(f"{path}: the saved model weights do not fit this model ({e}); resume with the model "
                              f"the run began with, or start a new --name") from e
    try:
        optimizer.load_state_dict(ckpt["optimizer"])
    except (ValueError, KeyError) as e:  # torch names neither the file nor what differs beyond its groups
        raise CheckpointError(f"{path}: the saved optimizer state does not fit this run's optimizer ({e}); resume "
                              f"with the optimizer (parameter groups) the run began with, or start a new --name") from e
    if ema is not None:
        if "ema" not in ckpt:
            raise CheckpointError(f"{path}: EMA is on (--ema_decay {cfg.ema_decay}) but the checkpoint has no EMA "
                                  "weights; resume with --ema_decay none (or --config <run>/opt.yaml) or a new run")
        try:
            ema.load_state_dict(ckpt["ema"])
        except (ValueError, KeyError) as e:  # the EMA names the weight, not the file
            raise CheckpointError(f"{path}: the saved EMA weights do not fit this model ({e}); resume with the "
                                  f"model the run was started with, or start a new --name") from e
    if accelerator.scaler is not None and "scaler" in ckpt:
        accelerator.scaler.load_state_dict(ckpt["scaler"])
    best = ckpt["best"]
    if best["metric"] == cfg.best_metric and best["mode"] == cfg.best_mode:
        state.best_value, state.best_step = best["value"], best["step"]
    else:
        warn("%s: best checkpoint criterion changed from %s/%s to %s/%s; best tracking restarts",
             path, best["metric"], best["mode"], cfg.best_metric, cfg.best_mode)
    state.step, state.metrics = int(ckpt["step"]), dict(ckpt["metrics"])
    state.metrics_step = ckpt.get("metrics_step")  # absent from runs saved before it was recorded
    state.log_off_cadence = bool(ckpt.get("log_off_cadence", False))
    if state.metrics_step == state.step:
        state.end_points.update({f"Val/{k}": v for k, v in state.metrics.items()})
    if best["step"] == state.step and best["value"] is not None:
        state.end_points[f"Best/{best['metric']}"] = best["value"]
    _warn_schedule_changes(path, ckpt.get("engine") or {}, cfg, state.step, warn)
    data = ckpt["data_state"]
    same_data = (data["num_samples"], data["batch_size"], data["seed"]) == (num_samples, cfg.batch_size, cfg.seed)
    if same_data:
        state.epoch, state.batches_done = int(data["epoch"]), int(data["batches_done"])
    else:
        warn("%s: dataset size, batch size or seed changed (%s); resuming at the start of the next epoch, "
             "not bitwise exact", path, data)
        state.epoch, state.batches_done = int(data["epoch"]) + int(data["batches_done"] > 0), 0
    rng = ckpt["rng"]
    if len(rng) == accelerator.num_processes:
        set_rng_state(rng[accelerator.process_index])
    else:
        warn("%s: saved by %d processes, resumed with %d; RNG streams are reseeded (not bitwise exact)",
             path, len(rng), accelerator.num_processes)
        set_seed(cfg.seed + state.step * 1009 + accelerator.process_index)
    if "loss_window" in ckpt:  # absent from runs saved before it was: their first log averages the steps since resume
        window.load_state_dict(ckpt["loss_window"])
    logger.info("resumed %s at step %d (epoch %d, batch %d of the epoch)", path, state.step, state.epoch,
                state.batches_done)
    if state.step >= cfg.max_iters:
        # Rerunning a finished stage is a no-op; a length below the step reached is more likely a typo.
        (logger.warning if state.step > cfg.max_iters else logger.info)(
            "%s is at step %d and the run is set to %d steps: nothing left to train (raise --max_iters or --epoch "
            "to continue)", path, state.step, cfg.max_iters)
