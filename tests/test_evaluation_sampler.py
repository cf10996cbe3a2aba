"""A generator evaluation records the sampler it ran, the model's own choices resolved: MARDM's diffusion-head solver
and steps live in the model's arguments, and "head_solver: null" in the sampling settings said nothing of them."""

from __future__ import annotations

import json
import os

import pytest
from test_evaluation_MARDM import run_eval, setup  # noqa: F401  (setup: the module's fixture)

from models.diffusion import DiffusionHead
from utils.checkpoint import load_checkpoint


def test_the_head_resolves_the_sampler_it_runs():
    sit = DiffusionHead(4, 8, depth=1, width=8, flow_solver="heun", flow_steps=12)
    assert sit.sampler() == {"diffusion": "sit", "solver": "heun", "steps": 12}
    assert sit.sampler(3, "euler") == {"diffusion": "sit", "solver": "euler", "steps": 3}
    assert sit.sampler(solver="dopri5") == {"diffusion": "sit", "solver": "dopri5", "steps": None, "atol": 1e-6,
                                            "rtol": 1e-3}
    ddpm = DiffusionHead(4, 8, depth=1, width=8, diffusion="ddpm", diffusion_steps=50)
    assert ddpm.sampler() == {"diffusion": "ddpm", "solver": "ancestral", "steps": 50, "training_steps": 50}
    assert ddpm.sampler(10, "ddim")["steps"] == 10
    with pytest.raises(ValueError, match="DDPM sampling steps must be between 1 and the 50 training steps"):
        ddpm.sampler(80)


def test_the_report_names_the_head_sampler_the_model_chose(setup):  # noqa: F811
    ckdir, _, data_root, _ = setup
    state = load_checkpoint(os.path.join(ckdir, "synthetic", "fsq_gen", "model", "latest.tar"))
    args = state["model_args"]
    report = run_eval(ckdir, data_root, "--no_mm", "--replications", "1", "--seed", "43")
    assert "head_solver" not in report["sampling"]  # left to the model
    expected = {"diffusion": args["diffusion"], "solver": args["flow_solver"]}
    assert {k: report["sampler"]["head"][k] for k in expected} == expected
    saved = [name for name in os.listdir(os.path.join(ckdir, "synthetic", "fsq_gen", "eval"))
             if "_seed43" in name and name.endswith(".json") and "_hs" not in name]
    assert saved and json.loads(open(os.path.join(ckdir, "synthetic", "fsq_gen", "eval", saved[0])).read()
                                )["sampler"] == report["sampler"]
    chosen = run_eval(ckdir, data_root, "--no_mm", "--replications", "1", "--seed", "43", "--head_solver", "heun",
                      "--head_steps", "2")
    assert chosen["sampler"]["head"] == {"diffusion": "sit", "solver": "heun", "steps": 2}


def test_the_sampler_record_does_not_key_the_evaluation(setup, monkeypatch):  # noqa: F811
    """Replications streamed before the record existed (or under another description of the same sampler) are
    reused by --is_continue: the record sits beside the meta that keys the evaluation, not in it."""
    from utils.generation import MotionGenerator
    from utils.generation_backends import GeneratorBackend, MARDMBackend

    ckdir, _, data_root, _ = setup
    first = run_eval(ckdir, data_root, "--no_mm", "--replications", "1", "--seed", "44")
    calls = []
    generate = MotionGenerator.generate
    monkeypatch.setattr(MotionGenerator, "generate", lambda *a, **k: calls.append(1) or generate(*a, **k))
    monkeypatch.setattr(MARDMBackend, "sampler", GeneratorBackend.sampler)  # as before the record: {}
    again = run_eval(ckdir, data_root, "--no_mm", "--replications", "1", "--seed", "44", "--is_continue")
    assert calls == [] and again["sampler"] == {} and first["sampler"]["head"]
    assert again["protocol"]["metrics"]["fid"]["mean"] == first["protocol"]["metrics"]["fid"]["mean"]
