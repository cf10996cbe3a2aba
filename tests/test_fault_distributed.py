"""Two CPU processes (torchrun, gloo) against one: a VQ tokenizer and an FSQ-MARDM generator trained with the same
global batch end with the same weights, and both processes hold identical weights and codebooks at every step.

MARDM draws its masks, corruption, diffusion noise and condition dropout from each process's own RNG stream
(seed + rank), and its loss is a mean over each process's masked tokens, so its reference is one process that
computes the loss of each half of the global batch with that rank's stream (the ``emulate_ranks`` fault point of
tests/fault_helpers.py); the deterministic VQ tokenizer is compared with a plain single-process run.
"""

from __future__ import annotations

import json
import os

import pytest
import torch
from fault_helpers import (
    TOKENIZER_FLAGS,
    read_log,
    run_root,
    run_script,
    tail,
    torchrun_available,
    write_text_encoder,
    write_tokenizer,
)

from utils.checkpoint import load_checkpoint
from utils.file_lock import acquire_lock

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not torchrun_available(),
                                 reason="torchrun needs torch.distributed with the gloo backend, which this torch "
                                        "build lacks")]


def _check_in_sync(report_path: str, steps: int) -> dict[str, float]:
    """Every process saw the same weights and buffers after every forward, and ended with the same state; returns
    the largest difference seen per tensor."""
    with open(report_path) as f:
        report = json.load(f)
    assert report["steps"] == steps
    assert report["max_diff"] and all(v == 0.0 for v in report["max_diff"].values()), report["max_diff"]
    ranks = [load_checkpoint(f"{report_path}.rank{r}.tar")["model"] for r in range(2)]
    assert ranks[0].keys() == ranks[1].keys()
    for key in ranks[0]:
        assert torch.equal(ranks[0][key], ranks[1][key]), key
    return report["max_diff"]


def _check_close(one: dict, two: dict, atol: float) -> None:
    assert one.keys() == two.keys()
    for key in one:
        assert torch.allclose(one[key].float(), two[key].float(), rtol=1e-4, atol=atol), \
            (key, float((one[key].float() - two[key].float()).abs().max()))


def test_two_process_vq_tokenizer_matches_one_process(tmp_path, synthetic_root):
    steps = 10
    args = [*TOKENIZER_FLAGS, "--data_root", synthetic_root, "--model", "VQVAE_Tiny", "--max_iters", str(steps),
            "--save_every", "5", "--eval_every", "5", "--seed", "3", "--name", "vq"]
    report = str(tmp_path / "sync.json")
    two = run_script("train_vq.py", [*args, "--checkpoints_dir", str(tmp_path / "two")], nproc=2,
                     faults={"sync_report": report}, timeout=240)
    assert two.returncode == 0, tail(two)
    one = run_script("train_vq.py", [*args, "--checkpoints_dir", str(tmp_path / "one")])
    assert one.returncode == 0, tail(one)

    compared = _check_in_sync(report, steps)
    assert {"quantizer.codebook", "quantizer.code_sum", "quantizer.code_count"} <= set(compared)

    root_one, root_two = run_root(tmp_path / "one", "vq"), run_root(tmp_path / "two", "vq")
    latest_one = load_checkpoint(str(root_one / "model" / "latest.tar"))
    latest_two = load_checkpoint(str(root_two / "model" / "latest.tar"))
    assert latest_two["step"] == steps and len(latest_two["rng"]) == 2 and len(latest_one["rng"]) == 1
    _check_close(latest_one["model"], latest_two["model"], atol=1e-5)
    losses_one = [row["loss"] for row in read_log(root_one)]
    losses_two = [row["loss"] for row in read_log(root_two)]
    assert len(losses_two) == steps and losses_two == pytest.approx(losses_one, rel=1e-5)
    # Validation ran on the main process only (it used to wait there for the other process: a hang).
    best = load_checkpoint(str(root_two / "model" / "net_best_loss.tar"))
    assert best["step"] in (5, 10) and 0 < best["metrics"]["code_usage"] <= 1
    assert len([n for n in os.listdir(root_two / "model") if n.startswith("events")]) == 1  # rank 0 logs alone


def test_two_process_fsq_mardm_matches_one_process_emulating_the_ranks(tmp_path, synthetic_root):
    steps = 8
    tokenizer = write_tokenizer(tmp_path / "fsq.tar", "FSQ_AE_Tiny", synthetic_root)
    clip = write_text_encoder(tmp_path / "clip")
    args = ["--dataset_name", "synthetic", "--data_root", synthetic_root, "--model", "FSQ-MARDM-SiT-Tiny",
            "--ae_ckpt", tokenizer, "--text_encoder", "clip", "--clip_path", clip, "--batch_size", "8",
            "--num_workers", "0", "--lr", "1e-3", "--warm_up_iter", "2", "--milestones", "1000", "--log_every", "2",
            "--max_iters", str(steps), "--save_every", "4", "--eval_every", "4", "--val_batches", "1",
            "--ema_decay", "0.9", "--seed", "7", "--name", "g"]
    report = str(tmp_path / "sync.json")
    two = run_script("train_MARDM.py", [*args, "--checkpoints_dir", str(tmp_path / "two")], nproc=2,
                     faults={"sync_report": report}, timeout=240)
    assert two.returncode == 0, tail(two)
    one = run_script("train_MARDM.py", [*args, "--checkpoints_dir", str(tmp_path / "one")],
                     faults={"emulate_ranks": 2})
    assert one.returncode == 0, tail(one)

    _check_in_sync(report, steps)
    root_one, root_two = run_root(tmp_path / "one", "g"), run_root(tmp_path / "two", "g")
    latest_one = load_checkpoint(str(root_one / "model" / "latest.tar"))
    latest_two = load_checkpoint(str(root_two / "model" / "latest.tar"))
    assert latest_two["step"] == steps and len(latest_two["rng"]) == 2
    for key in ("model", "ema"):
        _check_close(latest_one[key], latest_two[key], atol=1e-6)
    assert not all(torch.equal(latest_two["model"][k], latest_two["ema"][k]) for k in latest_two["model"])
    losses_one = [row["loss"] for row in read_log(root_one)]
    losses_two = [row["loss"] for row in read_log(root_two)]
    assert len(losses_two) == steps and losses_two == pytest.approx(losses_one, rel=1e-5)


def test_two_process_evaluator_training_keeps_its_best_evaluator(tmp_path, synthetic_root):
    # On this data the validation at step 5 beats the one at step 10, so the final state is not the best.
    args = ["--dataset_name", "synthetic", "--data_root", synthetic_root, "--checkpoints_dir", str(tmp_path),
            "--sizes", "tiny", "--batch_size", "8", "--num_workers", "0", "--lr", "1e-3", "--log_every", "5",
            "--eval_every", "5", "--save_every", "5", "--max_iters", "10", "--pretrain_iters", "4"]
    done = run_script("train_evaluator.py", args, nproc=2, timeout=240)
    assert done.returncode == 0, tail(done)
    root = run_root(tmp_path, "text_mot_match")
    best = load_checkpoint(str(root / "model" / "net_best_val_loss.tar"))
    finest = load_checkpoint(str(root / "model" / "finest.tar"))
    assert best["step"] == 5
    assert finest["metrics"]["val_loss"] == pytest.approx(best["metrics"]["val_loss"], rel=1e-6)
    with open(root / "eval" / "evaluator_val.json") as f:
        assert json.load(f)["best_val_loss"] == pytest.approx(best["metrics"]["val_loss"], rel=1e-6)
    assert done.stdout.count("R-precision top-1") == 1  # one report, from the first process


def test_a_nan_on_one_process_stops_both_and_each_says_where(tmp_path, synthetic_root):
    args = [*TOKENIZER_FLAGS, "--data_root", synthetic_root, "--model", "VQVAE_Tiny", "--max_iters", "6",
            "--save_every", "2", "--eval_every", "2", "--seed", "3", "--name", "vq", "--checkpoints_dir",
            str(tmp_path)]
    done = run_script("train_vq.py", args, nproc=2, faults={"nan_at_step": 3, "nan_rank": 1}, timeout=240)
    assert done.returncode != 0, tail(done)
    model_dir = run_root(tmp_path, "vq") / "model"
    assert os.path.exists(model_dir / "nan_batch_step3_rank1.pt")
    assert not os.path.exists(model_dir / "nan_batch_step3_rank0.pt")
    assert load_checkpoint(str(model_dir / "latest.tar"))["step"] == 2
    assert "[rank1]: utils.engine.NonFiniteLossError: non-finite loss nan at step 3" in done.stderr, tail(done)
    # The first process's loss was finite: its message must not present that value as the non-finite one.
    assert ("[rank0]: utils.engine.NonFiniteLossError: non-finite loss on another process (this process's loss "
            in done.stderr), tail(done)
    assert str(model_dir / "nan_batch_step3_rank*.pt") in done.stderr


def test_a_two_process_run_resumes_in_one_process_where_it_stopped(tmp_path, synthetic_root):
    args = [*TOKENIZER_FLAGS, "--data_root", synthetic_root, "--model", "VQVAE_Tiny", "--save_every", "3",
            "--eval_every", "3", "--seed", "3", "--name", "vq"]
    full = run_script("train_vq.py", [*args, "--max_iters", "8", "--checkpoints_dir", str(tmp_path / "one")])
    assert full.returncode == 0, tail(full)
    first = run_script("train_vq.py", [*args, "--max_iters", "5", "--checkpoints_dir", str(tmp_path / "two")],
                       nproc=2, timeout=240)
    assert first.returncode == 0, tail(first)
    resumed = run_script("train_vq.py", [*args, "--max_iters", "8", "--checkpoints_dir", str(tmp_path / "two"),
                                         "--is_continue"])
    assert resumed.returncode == 0, tail(resumed)
    assert "saved by 2 processes, resumed with 1; RNG streams are reseeded" in resumed.stderr
    one = load_checkpoint(str(run_root(tmp_path / "one", "vq") / "model" / "latest.tar"))
    two = load_checkpoint(str(run_root(tmp_path / "two", "vq") / "model" / "latest.tar"))
    assert two["step"] == 8 and len(two["rng"]) == 1
    _check_close(one["model"], two["model"], atol=1e-5)  # the same batches: this tokenizer draws no random numbers
    losses = [row["loss"] for row in read_log(run_root(tmp_path / "two", "vq"))]
    assert losses == pytest.approx([row["loss"] for row in read_log(run_root(tmp_path / "one", "vq"))], rel=1e-5)



def test_a_two_process_resume_reports_changed_settings_once(tmp_path, synthetic_root):
    """What a resume finds changed (here the schedule and the best-checkpoint criterion's data) is reported by the
    first process alone, not once per process."""
    args = [*TOKENIZER_FLAGS, "--data_root", synthetic_root, "--model", "VQVAE_Tiny", "--save_every", "3",
            "--eval_every", "3", "--seed", "3", "--name", "vq", "--checkpoints_dir", str(tmp_path)]
    first = run_script("train_vq.py", [*args, "--max_iters", "3"], nproc=2, timeout=240)
    assert first.returncode == 0, tail(first)
    resumed = run_script("train_vq.py", [*args, "--max_iters", "4", "--lr_decay", "0.5", "--is_continue"], nproc=2,
                         timeout=240)
    assert resumed.returncode == 0, tail(resumed)
    output = resumed.stdout + resumed.stderr
    assert output.count("resumed with other settings than the run was saved with") == 1, tail(resumed)
    assert "max_iters 3 -> 4" in output and "lr_decay" in output


def test_two_process_generator_validates_with_the_evaluator_on_the_first_process_only(tmp_path, synthetic_root):
    """--need_evaluation under two processes: only the first loads the evaluator (and its word vectors and val
    data), and it selects the best checkpoint on validation FID as one process does."""
    from utils.dataset_specs import get_dataset_spec
    from utils.evaluator import build_evaluator, save_evaluator
    from utils.normalization import eval_normalization, load_mean_std
    from utils.word_vectorizer import LearnedVocab

    spec = get_dataset_spec("synthetic", synthetic_root)
    torch.manual_seed(0)
    save_evaluator(str(tmp_path / "ev" / "model" / "finest.tar"),
                   build_evaluator("synthetic", *eval_normalization(*load_mean_std(spec, synthetic_root), spec),
                                   sizes="tiny", data_root=synthetic_root,
                                   word_vectors=LearnedVocab.from_split(synthetic_root, "train", dim_word=8)))
    tokenizer = write_tokenizer(tmp_path / "fsq.tar", "FSQ_AE_Tiny", synthetic_root)
    clip = write_text_encoder(tmp_path / "clip")
    done = run_script("train_MARDM.py", [
        "--dataset_name", "synthetic", "--data_root", synthetic_root, "--model", "FSQ-MARDM-SiT-Tiny",
        "--ae_ckpt", tokenizer, "--text_encoder", "clip", "--clip_path", clip, "--batch_size", "8",
        "--num_workers", "0", "--max_iters", "4", "--eval_every", "4", "--save_every", "4", "--val_batches", "1",
        "--need_evaluation", "--evaluator_dir", str(tmp_path / "ev"), "--time_steps", "2", "--flow_solver", "euler",
        "--flow_steps", "2", "--checkpoints_dir", str(tmp_path / "runs"), "--name", "g"], nproc=2, timeout=240)
    assert done.returncode == 0, tail(done)
    best = load_checkpoint(str(run_root(tmp_path / "runs", "g") / "model" / "net_best_fid.tar"))
    assert best["best"]["metric"] == "fid" and best["step"] == 4 and best["metrics"]["fid"] >= 0


@pytest.mark.parametrize("failure", ["dataset", "evaluator"])
def test_a_two_process_start_that_fails_leaves_no_run_folder(tmp_path, synthetic_root, failure):
    """A start refused before its first checkpoint leaves checkpoints/ as it was under torchrun too: a dataset file
    missing (every process stops) or, with --need_evaluation, the evaluator (only the first process loads it, while
    the other goes on towards training)."""
    data_root = str(tmp_path / "no_data") if failure == "dataset" else synthetic_root
    args = [*TOKENIZER_FLAGS, "--data_root", data_root, "--model", "VQVAE_Tiny", "--max_iters", "2", "--name", "vq",
            "--checkpoints_dir", str(tmp_path / "runs")]
    if failure == "evaluator":
        args += ["--need_evaluation", "--evaluator_dir", str(tmp_path / "no_evaluator")]
    done = run_script("train_vq.py", args, nproc=2)
    assert done.returncode != 0 and "train_vq.py: error: " in done.stderr, tail(done)
    assert not (tmp_path / "runs").exists(), sorted(str(p) for p in (tmp_path / "runs").rglob("*"))


def test_a_two_process_start_refused_by_a_held_lock_ends_without_waiting_for_torchrun(tmp_path, synthetic_root):
    """The first process refuses the start (another run holds the folder's lock) before it joins the process group,
    so the second process waits in the rendezvous, in native code, where Python cannot run its stop handler: it sat
    there until torchrun killed it 30 s after its SIGTERM. It now takes the SIGTERM for what it is and exits."""
    root = run_root(tmp_path / "runs", "vq")
    root.mkdir(parents=True)
    holder = acquire_lock(str(root / ".lock"), "the run folder", "wait")
    try:
        done = run_script("train_vq.py", [*TOKENIZER_FLAGS, "--data_root", synthetic_root, "--model", "VQVAE_Tiny",
                                          "--max_iters", "2", "--name", "vq", "--checkpoints_dir",
                                          str(tmp_path / "runs")], nproc=2, timeout=120)
    finally:
        holder.release()
    assert done.returncode != 0, tail(done)
    assert f"train_vq.py: error: the run folder {root} is in use by another process (pid {os.getpid()}" \
        in done.stderr, tail(done)
    assert "train_vq.py: stopped by SIGTERM, which came while this process waited for another one" in done.stderr, \
        tail(done)
    assert "forcefully exiting via 9" not in done.stderr, tail(done)
    assert sorted(p.name for p in root.iterdir()) == [".lock"]
