"""When ``evaluation_AE.py`` runs the text-motion protocol, when it skips it with a message, and when it stops: a
named evaluator that cannot be loaded, ``--no_protocol``, a split smaller than one protocol batch."""

from __future__ import annotations

import json

import pytest
from test_evaluation_AE import _momask_file, env, run_eval, write_dataset  # noqa: F401  (env: the module's fixture)

from utils import tokenizer_eval_steps
from utils.checkpoint import CheckpointError


def pretend_released_evaluators(monkeypatch) -> None:
    """Every evaluator evaluation_AE.py loads is taken for a released one (the tests' evaluators stand in for them)."""
    load = tokenizer_eval_steps.load_evaluator

    def released(*args, **kwargs):
        evaluator = load(*args, **kwargs)
        evaluator.released = True
        return evaluator

    monkeypatch.setattr(tokenizer_eval_steps, "load_evaluator", released)


def test_a_named_evaluator_that_cannot_be_loaded_stops_and_keeps_the_last_report(env, tmp_path):  # noqa: F811
    """A mistyped --evaluator_dir was taken for "no evaluator here": the protocol was skipped, exit 0, and the
    finished report of the same tag was replaced by one without the protocol."""
    _, ck, _ = env
    full = run_eval(env, "--name", "fsq", "--replications", "1", "--seed", "31")
    report = ck / "synthetic" / "fsq" / "eval" / "eval_net_best_loss_seed31.json"
    before = report.read_bytes()
    assert full["protocol"] is not None
    with pytest.raises(CheckpointError, match=rf"--evaluator_dir {tmp_path / 'typo'}: no usable evaluator .*fix the "
                                              rf"path, or leave the flag out to use .*text_mot_match"):
        run_eval(env, "--name", "fsq", "--replications", "1", "--seed", "31", "--evaluator_dir", str(tmp_path / "typo"))
    assert report.read_bytes() == before


def test_no_protocol_reports_reconstruction_only_beside_the_full_report(env):  # noqa: F811
    _, ck, _ = env
    eval_dir = ck / "synthetic" / "fsq" / "eval"
    result = run_eval(env, "--name", "fsq", "--seed", "32", "--no_protocol")
    assert result["protocol"] is None and result["protocol_skipped"].startswith("--no_protocol")
    assert result["reconstruction"]["mpjpe_mm"] > 0
    saved = json.loads((eval_dir / "eval_net_best_loss_seed32_recon.json").read_text())
    assert saved["reconstruction"] == result["reconstruction"]
    assert not (eval_dir / "eval_net_best_loss_seed32.json").exists()
    assert not (eval_dir / "eval_net_best_loss_seed32_recon_replications.jsonl").exists()
    with pytest.raises(ValueError, match="--no_protocol skips the protocol that --evaluator_dir is for"):
        run_eval(env, "--name", "fsq", "--no_protocol", "--evaluator_dir", str(ck / "synthetic" / "text_mot_match"))


def test_a_split_smaller_than_one_protocol_batch_still_gets_its_reconstruction_metrics(env, tmp_path):  # noqa: F811
    """11 test clips (a small imported dataset) stopped the whole evaluation before: the protocol needs batches of
    32, which a split of 11 cannot fill. The protocol is skipped with that reason; MPJPE and the rest are reported."""
    _, ck, _ = env
    small = tmp_path / "small"
    write_dataset(small, n_test=11)
    result = run_eval(env, "--name", "fsq", "--data_root", str(small), "--seed", "33")
    assert result["protocol"] is None
    assert "11 evaluation samples, fewer than one batch of 32" in result["protocol_skipped"]
    assert "the reconstruction metrics are reported" in result["protocol_skipped"]
    assert result["reconstruction"]["mpjpe_mm"] > 0 and result["reconstruction"]["frames"] > 11 * 30


def test_an_official_file_keeps_its_evaluator_statistics_when_the_protocol_is_skipped(env, tmp_path,  # noqa: F811
                                                                                       monkeypatch):
    """A MoMask file is read with the released evaluator's statistics; with --no_protocol, or on a split too small
    for the protocol, the evaluator was dropped before those were taken, and the file was reconstructed under the
    dataset's statistics instead (other MPJPE than the full evaluation)."""
    pretend_released_evaluators(monkeypatch)
    src = _momask_file(tmp_path)
    small = tmp_path / "small"
    write_dataset(small, n_test=11)
    full = run_eval(env, "--ckpt", src, "--name", "m_full", "--no_gt_cache", "--seed", "34")
    alone = run_eval(env, "--ckpt", src, "--name", "m_alone", "--no_protocol", "--seed", "34")
    few = run_eval(env, "--ckpt", src, "--name", "m_few", "--data_root", str(small), "--seed", "34")
    assert {r["tokenizer_statistics"] for r in (full, alone, few)} == {"the evaluator's (momask convention)"}
    assert alone["reconstruction"] == full["reconstruction"] and few["protocol"] is None
