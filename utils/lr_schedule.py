"""Learning rate as a pure function of the optimizer step (linear warm-up, then step decay at milestones).

The shape follows MoMask / MARDM (``warm_up_iter`` linear ramp, then ``MultiStepLR(milestones, gamma=lr_decay)``), with
three deliberate differences:

- Milestones are *global* optimizer steps. MoMask and MARDM only call ``scheduler.step()`` once ``it >= warm_up_iter``,
  so their milestones fire ``warm_up_iter`` steps after the nominal number (150k becomes about 152k with a 2k warm-up).
  T2M-GPT and MotionMillion run the warm-up as a separate loop before ``total_iter`` iterations, so theirs fire
  ``warm_up_iter`` steps later too (T2M-GPT's 200k at about 201k, MotionMillion's 300k at 348k in one process; its
  released 4-GPU run, see the third point, at about 123k), and their runs are that much longer than ``total_iter``;
  the presets' ``max_iters`` count the warm-up.
- The ramp is ``(step + 1) / warm_up_iter``, reaching the base rate on the last warm-up step; the references use
  ``(it + 1) / (warm_up_iter + 1)``, one step short of it. During the warm-up ours is ``(W + 1) / W`` times theirs,
  0.05% more for W = 2,000.
- The value is computed from the step, never stepped. A ``MultiStepLR`` passed through ``accelerator.prepare`` is
  wrapped in an ``AcceleratedScheduler`` that steps it once per process per optimizer step, so with 4 processes a
  300k milestone fires at step 75k (MotionMillion). A function of the step cannot drift, and resume only needs the
  step.
"""

from __future__ import annotations

from collections.abc import Sequence


def lr_factor(step: int, warm_up_iter: int, milestones: Sequence[int], lr_decay: float) -> float:
    """Multiplier of the base learning rate for the update that follows ``step`` completed updates.

    Warm-up: ``(step + 1) / warm_up_iter`` while ``step < warm_up_iter`` (reaches 1 on the last warm-up step).
    Decay: ``lr_decay ** (number of milestones <= step)``. Both apply if a milestone falls inside the warm-up.
    """
    if step < 0:
        raise ValueError(f"lr_factor: step must be >= 0, got {step}")
    if warm_up_iter < 0:
        raise ValueError(f"lr_factor: warm_up_iter must be >= 0, got {warm_up_iter}")
    factor = lr_decay ** sum(1 for m in milestones if step >= m)
    if step < warm_up_iter:
        factor *= (step + 1) / warm_up_iter
    return factor


def lr_at_step(step: int, base_lr: float, warm_up_iter: int, milestones: Sequence[int], lr_decay: float) -> float:
    """Learning rate of the update that follows ``step`` completed updates (``base_lr * lr_factor(...)``)."""
    return base_lr * lr_factor(step, warm_up_iter, milestones, lr_decay)
