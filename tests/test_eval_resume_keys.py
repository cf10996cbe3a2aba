"""An evaluation's resume key and a saved-motions folder's identity follow the files' content, not their location:
a run folder moved, renamed or reached through a link keeps its finished replications and its saved motions."""

from __future__ import annotations

import json
import logging
import os
import shutil

import numpy as np
from test_eval_protocol import gt_motion, gt_motion_counted
from test_eval_protocol import setup as protocol_setup  # noqa: F401 (a fixture)
from test_evaluation_MARDM import CallLog, run_eval
from test_evaluation_MARDM import setup as generator_setup  # noqa: F401 (a fixture)

import evaluation_MARDM
from options.config import parse_with_config
from options.eval_generator_options import get_evaluation_generator_parser
from utils.eval_data import PROTOCOL_VERSION, digest
from utils.eval_protocol import MM_REPEATS, MM_TIMES, evaluate, evaluator_fingerprint
from utils.saved_motions import MotionRecorder, make_header


def meta_at(root: str, sha: str = "c0ffee") -> dict:
    """A generator's ``meta`` as ``evaluation_MARDM.py`` builds it, for a run stored under ``root``."""
    checkpoint = f"{root}/synthetic/gen/model/latest.tar"
    return {"checkpoint": checkpoint, "checkpoint_sha256": sha,
            "generator": {"checkpoint": checkpoint, "checkpoint_sha256": sha, "model_name": "tiny",
                          "tokenizer": {"path": f"{root}/synthetic/tok/model/latest.tar", "sha256": "7ea",
                                        "recorded_path": "tok/model/latest.tar", "recorded_sha256": "7ea"}},
            "sampling": {"time_steps": 2}}


def test_a_moved_checkpoints_folder_resumes_its_replications(protocol_setup, tmp_path):  # noqa: F811
    _, _, ev, loader = protocol_setup
    path = tmp_path / "replications.jsonl"
    first = evaluate(ev, loader, gt_motion, replications=1, seed=7, results_path=str(path), gt_cache=None,
                     progress=False, meta=meta_at("/data/checkpoints"))
    calls = {"n": 0}
    moved = evaluate(ev, loader, gt_motion_counted(calls), replications=2, seed=7, results_path=str(path),
                     gt_cache=None, progress=False, meta=meta_at("/mnt/moved/checkpoints"), resume=True)
    assert calls["n"] == loader.num_batches  # replication 0 was reused, only replication 1 ran
    assert moved.rows[0]["metrics"] == first.rows[0]["metrics"]
    assert moved.meta["protocol"]["eval_key"] == first.meta["protocol"]["eval_key"]
    # The content still decides: another checkpoint at the same path is another evaluation.
    calls["n"] = 0
    evaluate(ev, loader, gt_motion_counted(calls), replications=2, seed=7, results_path=str(path), gt_cache=None,
             progress=False, meta=meta_at("/mnt/moved/checkpoints", sha="beef"), resume=True)
    assert calls["n"] == 2 * loader.num_batches


def test_replications_written_under_the_earlier_key_are_still_resumed(protocol_setup, tmp_path):  # noqa: F811
    """Rows streamed before the key left out file paths carry the key of the whole ``meta``; a resume from the same
    place reuses them and re-keys them, so that moving the folder afterwards keeps them too."""
    _, _, ev, loader = protocol_setup
    path = tmp_path / "replications.jsonl"
    meta = meta_at("/data/checkpoints")
    first = evaluate(ev, loader, gt_motion, replications=1, seed=7, results_path=str(path), gt_cache=None,
                     progress=False, meta=meta)
    gt_key = digest(PROTOCOL_VERSION, evaluator_fingerprint(ev), loader.fingerprint).hexdigest()
    earlier_key = digest(gt_key, meta, 0, MM_REPEATS, MM_TIMES, False).hexdigest()  # no multimodality: 0 batches
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    path.write_text("".join(json.dumps({**row, "eval_key": earlier_key}) + "\n" for row in rows))

    calls = {"n": 0}
    again = evaluate(ev, loader, gt_motion_counted(calls), replications=1, seed=7, results_path=str(path),
                     gt_cache=None, progress=False, meta=meta, resume=True)
    assert calls["n"] == 0
    assert again.rows[0]["metrics"] == first.rows[0]["metrics"]
    assert [json.loads(line)["eval_key"] for line in path.read_text().splitlines()] == \
        [first.meta["protocol"]["eval_key"]]
    evaluate(ev, loader, gt_motion_counted(calls), replications=1, seed=7, results_path=str(path), gt_cache=None,
             progress=False, meta=meta_at("/mnt/moved/checkpoints"), resume=True)
    assert calls["n"] == 0


def test_a_moved_run_keeps_its_saved_motions(tmp_path, caplog):
    batch_header = {"dataset": "synthetic", "split": "test", "seed": 1, "eval_batch_size": 2, "multimodality": None,
                    "tag": "t", "which": "latest"}
    folder = str(tmp_path / "motions_t")
    MotionRecorder(folder, make_header(**batch_header, meta=meta_at("/data/checkpoints")), np.zeros(3), np.ones(3))
    np.savez(os.path.join(folder, "seed1.npz"), kinds=np.zeros(0, np.int8))
    with caplog.at_level(logging.WARNING):
        MotionRecorder(folder, make_header(**batch_header, meta=meta_at("/mnt/moved/checkpoints")), np.zeros(3),
                       np.ones(3))
    assert os.path.isfile(os.path.join(folder, "seed1.npz"))
    assert "another evaluation" not in caplog.text
    MotionRecorder(folder, make_header(**batch_header, meta=meta_at("/mnt/moved/checkpoints", sha="beef")),
                   np.zeros(3), np.ones(3))  # another checkpoint's: the old motions go, the content difference named
    assert not os.path.exists(os.path.join(folder, "seed1.npz"))
    assert "checkpoint_sha256 differs" in caplog.text


def test_an_interrupted_evaluation_resumes_after_its_run_folder_moved(generator_setup, tmp_path,  # noqa: F811
                                                                      monkeypatch, caplog):
    ckdir, paths, data_root, _ = generator_setup
    before = tmp_path / "before" / "synthetic" / "fsq_gen"
    shutil.copytree(os.path.dirname(os.path.dirname(paths["fsq_gen"])), before, ignore=shutil.ignore_patterns("eval"))

    def evaluate_run(run, *argv: str) -> dict:
        return evaluation_MARDM.main(parse_with_config(get_evaluation_generator_parser(), [
            "--ckpt", str(run / "model" / "latest.tar"), "--checkpoints_dir", ckdir, "--data_root", data_root,
            "--device", "cpu", "--eval_batch_size", "8", "--time_steps", "2", "--no_mm", "--seed", "31",
            "--save_motions", *argv]))

    first = evaluate_run(before, "--replications", "1")
    after = tmp_path / "after" / "synthetic" / "fsq_gen"
    os.renames(before, after)
    log = CallLog(monkeypatch)
    resumed = evaluate_run(after, "--replications", "2", "--is_continue")
    per_replication = resumed["protocol"]["meta"]["protocol"]["num_batches"]
    assert len(log.calls) == per_replication  # only replication 1 was generated
    assert resumed["protocol"]["replications"][0]["metrics"] == first["protocol"]["replications"][0]["metrics"]
    assert sorted(n for n in os.listdir(resumed["motions_saved"]) if n.startswith("seed")) == \
        ["seed31.npz", "seed32.npz"]
    assert "no saved motions" not in caplog.text


def test_a_run_reached_through_a_link_is_the_same_evaluation(generator_setup, tmp_path, monkeypatch):  # noqa: F811
    ckdir, _, data_root, _ = generator_setup
    run_eval(ckdir, data_root, "--no_mm", "--replications", "1", "--seed", "51")
    link = tmp_path / "linked_checkpoints"
    os.symlink(ckdir, link)
    log = CallLog(monkeypatch)
    run_eval(str(link), data_root, "--no_mm", "--replications", "1", "--seed", "51", "--is_continue")
    assert log.calls == []


def test_a_fresh_start_says_which_finished_replications_it_drops(protocol_setup, tmp_path, caplog):  # noqa: F811
    """Without resume, an evaluation streaming to the file of an earlier run of itself (the tag leaves out
    --replications) dropped that run's finished replications without a word."""
    _, _, ev, loader = protocol_setup
    path = tmp_path / "replications.jsonl"
    evaluate(ev, loader, gt_motion, replications=2, seed=7, results_path=str(path), gt_cache=None, progress=False)
    with caplog.at_level(logging.WARNING, logger="utils.eval_protocol"):
        evaluate(ev, loader, gt_motion, replications=1, seed=7, results_path=str(path), gt_cache=None,
                 progress=False)
    assert f"2 finished replications of an earlier run of this evaluation were dropped from {path}" in caplog.text
    assert len(path.read_text().splitlines()) == 1
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="utils.eval_protocol"):  # a first run drops nothing: no word
        evaluate(ev, loader, gt_motion, replications=1, seed=7, results_path=str(tmp_path / "other.jsonl"),
                 gt_cache=None, progress=False)
    assert "dropped" not in caplog.text
