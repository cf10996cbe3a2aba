"""What the training engine (``utils.engine.train``) is told and what it returns: ``EngineConfig`` (how to train:
steps, batch, schedule, EMA, cadence, precision, best-checkpoint criterion) and ``TrainResult``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any


@dataclass
class EngineConfig:
    """Everything :func:`train` needs to know about *how* to train. Steps are optimizer updates.

    ``eval_every`` / ``save_every`` of 0 mean once per epoch. ``grad_clip`` 0 is off, ``ema_decay`` None is off.
    ``best_metric`` is a key of the dict returned by ``val_fn``; the best checkpoint is ``net_best_<metric>.tar``.
    ``compile`` wraps the model in ``torch.compile``; a frame that fails to compile runs eagerly instead.
    """

    max_iters: int
    batch_size: int = 256
    num_workers: int = 0
    lr: float = 2e-4
    warm_up_iter: int = 2000
    milestones: tuple[int, ...] = (150_000, 250_000)
    lr_decay: float = 0.1
    weight_decay: float = 0.0
    betas: tuple[float, float] = (0.9, 0.99)  # MoMask / MARDM AdamW betas
    grad_clip: float = 0.0
    ema_decay: float | None = None
    log_every: int = 10
    eval_every: int = 0
    save_every: int = 500
    mixed_precision: str = "no"
    seed: int = 3407
    is_continue: bool = False
    detect_anomaly: bool = False
    best_metric: str = "fid"
    best_mode: str = "min"
    min_free_bytes: int = 256 * 2**20
    compile: bool = False

    def __post_init__(self) -> None:
        self.milestones = tuple(int(m) for m in self.milestones)
        self.betas = tuple(float(b) for b in self.betas)
        checks = [
            (self.max_iters >= 1, "max_iters must be >= 1"),
            (self.batch_size >= 1, "batch_size must be >= 1"),
            (self.num_workers >= 0, "num_workers must be >= 0 (0 loads the data in the training process)"),
            (self.warm_up_iter >= 0, "warm_up_iter must be >= 0 (0 turns warm-up off)"),
            (self.lr_decay >= 0, "lr_decay must be >= 0 (the factor applied to the learning rate at each milestone)"),
            (self.log_every >= 1, "log_every must be >= 1"),
            (self.eval_every >= 0 and self.save_every >= 0, "eval_every and save_every must be >= 0"),
            (self.grad_clip >= 0, "grad_clip must be >= 0 (0 turns clipping off)"),
            (self.ema_decay is None or 0 <= self.ema_decay < 1, "ema_decay must be in [0, 1) or None"),
            (self.mixed_precision in ("no", "bf16", "fp16"), "mixed_precision must be 'no', 'bf16' or 'fp16'"),
            (self.best_mode in ("min", "max"), "best_mode must be 'min' or 'max'"),
            (self.seed >= 0, "seed must be >= 0 (the data order is drawn from numpy seed sequences of the seed)"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(f"EngineConfig: {message}; got {self}")

    @classmethod
    def from_namespace(cls, ns: Any, **overrides: Any) -> EngineConfig:
        """Build from parsed options: every field found in ``vars(ns)`` (None skipped), then ``overrides``."""
        names = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in vars(ns).items() if k in names and v is not None}
        values.update(overrides)
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        """Plain values (tuples as lists), for checkpoints and logs."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}


@dataclass
class TrainResult:
    """What :func:`train` leaves behind."""

    step: int
    epoch: int
    logs: dict[str, float]  # last logged training values (loss, terms, lr)
    metrics: dict[str, float]  # last validation metrics ({} without val_fn)
    best_value: float | None
    best_step: int | None
    latest_path: str
    best_path: str | None  # None until a validation has produced a best checkpoint
    train_log_path: str
    metrics_step: int | None = None  # the step ``metrics`` were taken at (None: unknown, or no validation)

    def summary(self) -> str:
        """``step N: {metrics}`` for a script's last log line, naming the validation's own step when it was earlier
        (validation runs every ``eval_every`` steps, not necessarily at the last)."""
        metrics = {k: round(v, 5) for k, v in self.metrics.items()}
        if not metrics:
            return f"step {self.step} (no validation ran)"
        if self.metrics_step == self.step:
            return f"step {self.step}: {metrics}"
        at = f"step {self.metrics_step}" if self.metrics_step is not None else "an earlier step"
        return f"step {self.step}; last validation, at {at}: {metrics}"
