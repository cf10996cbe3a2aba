"""What the engine does to the weights and the best checkpoint: validation scores the EMA weights, the EMA folds in
the weights after the optimizer step, --grad_clip bounds the update, bf16 validation leaves training as it was, an
equal score keeps the earlier best checkpoint and a changed best mode restarts best tracking."""

from __future__ import annotations

import logging

import pytest
import torch
from test_engine import META, Toy, ToyData, loss_fn, make_cfg, read_log, run_toy, val_loss

from utils.checkpoint import load_checkpoint
from utils.engine import train
from utils.run_dir import RunDir
from utils.seed import set_seed


def _params(state: dict) -> dict:
    names = {name for name, _ in Toy().named_parameters()}
    return {k: v for k, v in state.items() if k in names}


def test_validation_scores_the_ema_weights(tmp_path):
    seen = {}

    def val_fn(model):
        seen.update({k: v.detach().clone() for k, v in model.state_dict().items()})
        return val_loss(model)

    run, _ = run_toy(tmp_path, "ema_val", make_cfg(max_iters=5, ema_decay=0.9, eval_every=5, save_every=5),
                     val_fn=val_fn)
    latest = load_checkpoint(run.latest_path)
    for name, value in _params(latest["ema"]).items():
        torch.testing.assert_close(seen[name], value)
    assert any(not torch.equal(seen[k], v) for k, v in _params(latest["model"]).items())


def test_ema_folds_in_the_weights_after_the_optimizer_step(tmp_path):
    # decay 0: the shadow is the weights of the last update exactly, not those before it
    run, _ = run_toy(tmp_path, "ema0", make_cfg(max_iters=6, ema_decay=0.0))
    latest = load_checkpoint(run.latest_path)
    for name, value in _params(latest["model"]).items():
        torch.testing.assert_close(latest["ema"][name], value, rtol=0, atol=1e-7)


@pytest.mark.parametrize("clip", [1e-3, 0.0])
def test_gradient_clipping_bounds_the_update(tmp_path, clip):
    lr = 1.0
    set_seed(0)
    before = {k: v.detach().clone() for k, v in Toy().named_parameters()}
    set_seed(0)
    run = RunDir(str(tmp_path / "checkpoints"), "t2m", f"clip{clip}")
    train(Toy(), ToyData(), loss_fn, make_cfg(max_iters=1, warm_up_iter=0, grad_clip=clip, lr=lr), run,
          checkpoint_meta=META, optimizer_factory=lambda m: torch.optim.SGD(m.parameters(), lr=lr))
    after = _params(load_checkpoint(run.latest_path)["model"])
    step = torch.sqrt(sum(((after[k] - before[k]) ** 2).sum() for k in before)).item()
    if clip:
        assert step <= lr * clip * (1 + 1e-4)  # plain SGD: the update is lr times the clipped gradient
    else:
        assert step > 10 * lr * 1e-3  # the same step unclipped is far larger: the bound above is not vacuous


def test_bf16_validation_leaves_training_alone(tmp_path):
    """Validation without EMA swaps the autocast forward out; training after it must run as without validation."""
    cfg = make_cfg(max_iters=12, mixed_precision="bf16", eval_every=4)
    with_val, _ = run_toy(tmp_path, "val", cfg, val_fn=val_loss)
    without, _ = run_toy(tmp_path, "noval", cfg)
    assert read_log(with_val) == read_log(without)


def test_an_equal_score_does_not_replace_the_best_checkpoint(tmp_path):
    scores = iter([1.0, 1.0])
    run, result = run_toy(tmp_path, "tie", make_cfg(max_iters=10, best_metric="fid"),
                          val_fn=lambda model: {"fid": next(scores)})
    assert (result.best_value, result.best_step) == (1.0, 5)
    assert load_checkpoint(run.best_path("fid"))["step"] == 5


def test_a_changed_best_mode_restarts_best_tracking(tmp_path, caplog):
    run, _ = run_toy(tmp_path, "mode", make_cfg(max_iters=5, best_metric="fid"), val_fn=lambda model: {"fid": 1.0})
    with caplog.at_level(logging.WARNING, logger="utils.engine"):
        result = train(Toy(), ToyData(), loss_fn, make_cfg(max_iters=10, best_metric="fid", best_mode="max",
                                                           is_continue=True),
                       run, checkpoint_meta=META, val_fn=lambda model: {"fid": 0.5})
    assert "best tracking restarts" in caplog.text
    assert (result.best_value, result.best_step) == (0.5, 10)
