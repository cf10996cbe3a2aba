"""The engine under mixed precision: training in bf16, validation in fp32 as evaluation."""

from __future__ import annotations

import logging

import pytest
import torch
from test_engine import META, Toy, ToyData, loss_fn, make_cfg
from torch import nn

from utils.checkpoint import load_checkpoint
from utils.engine import train
from utils.run_dir import RunDir
from utils.seed import set_seed


@pytest.mark.parametrize("ema_decay", [None, 0.9])
def test_bf16_runs_validate_in_fp32_with_or_without_ema(tmp_path, ema_decay):
    """Without EMA, validation scored the trained model itself, whose forward prepare() had wrapped in bf16 autocast,
    so the best file was picked on other numbers than an evaluation of it gives (and than an EMA run's, scored on an
    fp32 copy). Training itself stays in bf16."""
    seen = {"train": set(), "val": set()}

    class Probe(Toy):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            seen["train" if self.training else "val"].add(torch.is_autocast_enabled("cpu"))
            return super().forward(x)

    def val_fn(model: nn.Module) -> dict[str, float]:
        return {"val_loss": float(nn.functional.mse_loss(model(ToyData().x), ToyData().y))}

    set_seed(0)
    run = RunDir(str(tmp_path / "checkpoints"), "t2m", "probe")
    train(Probe(), ToyData(), loss_fn, make_cfg(max_iters=10, mixed_precision="bf16", ema_decay=ema_decay), run,
          checkpoint_meta=META, val_fn=val_fn)
    assert seen == {"train": {True}, "val": {False}}
    # The autocast forward is back for training after each validation.
    assert load_checkpoint(run.latest_path)["step"] == 10


@pytest.mark.parametrize("asked, trains", [("fp16", "no"), ("bf16", "bf16"), ("no", "no")])
def test_the_start_line_names_the_precision_the_cpu_trains_in(tmp_path, caplog, asked, trains):
    """fp16 autocast does not exist on CPU: the run trains in fp32, and its start line said "mixed precision fp16"
    just after the warning that says so."""
    seen = set()

    class Probe(Toy):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            seen.add(x.new_ones(1, 1).matmul(x.new_ones(1, 1)).dtype if self.training else None)
            return super().forward(x)

    set_seed(0)
    with caplog.at_level(logging.INFO, logger="utils.engine"):
        train(Probe(), ToyData(), loss_fn, make_cfg(max_iters=2, mixed_precision=asked),
              RunDir(str(tmp_path / "checkpoints"), "t2m", asked), checkpoint_meta=META)
    assert seen - {None} == {torch.bfloat16 if trains == "bf16" else torch.float32}
    assert f"mixed precision {trains}, 2 steps" in caplog.text
    assert ("fp16 mixed precision is not available on CPU; training in fp32" in caplog.text) == (asked == "fp16")
