"""Quantizers trained under torchrun (2 CPU processes, gloo): what they log does not depend on the number of
processes."""

from __future__ import annotations

import os

import pytest
import torch

# Each quantizer of the training path, seeded alike; a global batch whose halves use different codes.
PERPLEXITY_SCRIPT = """
import json, os, sys
import torch
sys.path.insert(0, {repo!r})
from models.fsq import FSQ
from models.lfq import LFQ
from models.quantizers import QuantizeEMA, QuantizeEMAReset, QuantizeOrig, QuantizeReset
from models.residual_vq import ResidualVQ

FACTORIES = {{"ema_reset": lambda: QuantizeEMAReset(32, 4), "ema": lambda: QuantizeEMA(32, 4),
             "reset": lambda: QuantizeReset(32, 4), "orig": lambda: QuantizeOrig(32, 4),
             "fsq": lambda: FSQ([8, 5, 5]), "lfq": lambda: LFQ(16, dim=4),
             "rvq": lambda: ResidualVQ(2, 32, 4, quantize_dropout_prob=0.0)}}


def perplexities(rank, world):
    g = torch.Generator().manual_seed(0)
    batches = [torch.randn(8, 16, 4, generator=g) for _ in range(3)]
    for b in batches:
        b[:4] += 3.0  # the first half of the global batch (process 0's) lies elsewhere
    out = {{}}
    for name, make in FACTORIES.items():
        torch.manual_seed(1)
        q = make().train()
        dim = 3 if name == "fsq" else 4
        share = 8 // world
        out[name] = [float(q(b[rank * share:(rank + 1) * share, :, :dim]).perplexity) for b in batches]
    return out


if __name__ == "__main__":
    import torch.distributed as dist
    dist.init_process_group("gloo")
    rank = dist.get_rank()
    with open(os.path.join({out!r}, f"rank{{rank}}.json"), "w") as f:
        json.dump(perplexities(rank, 2), f)
    dist.destroy_process_group()
"""


@pytest.mark.slow
@pytest.mark.skipif(not torch.distributed.is_available() or not torch.distributed.is_gloo_available(),
                    reason="needs torch.distributed with the gloo backend")
def test_the_logged_perplexity_is_the_global_batchs_whatever_the_number_of_processes(tmp_path):
    """Each process counted its own codes, and the log took the mean of the processes' perplexities, which is not
    the global batch's: 2 processes logged other values than 1 for the same global batch (26.0 against 25.0)."""
    import importlib.util
    import json
    import subprocess
    import sys
    from pathlib import Path

    script = tmp_path / "ppl.py"
    script.write_text(PERPLEXITY_SCRIPT.format(repo=str(Path(__file__).resolve().parents[1]), out=str(tmp_path)))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                           str(script)], env=env, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-3000:]
    spec = importlib.util.spec_from_file_location("ppl", script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    one = module.perplexities(0, 1)
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    for name, values in one.items():
        for rank in ranks:
            assert rank[name] == pytest.approx(values, rel=1e-5), name
