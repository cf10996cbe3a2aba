"""The evaluation protocol on a tiny evaluator and a tiny dataset written into tmp_path."""

from __future__ import annotations

import json
import logging
import math
import os
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from utils.dataset_specs import get_dataset_spec
from utils.eval_data import build_eval_loader
from utils.eval_protocol import evaluate, renormalize, replication_seeds
from utils.eval_report import format_report, write_report_json
from utils.evaluator import build_evaluator
from utils.file_lock import FileLockedError, acquire_lock
from utils.gt_cache import GTCache, GTEmbeddings
from utils.model_embeddings import checked_motion, embed_in_chunks, motion_embeddings
from utils.normalization import eval_normalization, load_mean_std
from utils.run_dir import RunDir, releasing_run_locks
from utils.seed import set_seed
from utils.word_vectorizer import LearnedVocab

WORDS = {"walk": "VERB", "run": "VERB", "jump": "VERB", "wave": "VERB", "sit": "VERB"}


def write_dataset(root: Path, n_test: int = 70, n_train: int = 8, dim: int = 263, seed: int = 0) -> None:
    """Clips of 40-90 frames whose features depend on an action word in their two captions."""
    rng = np.random.default_rng(seed)
    (root / "new_joint_vecs").mkdir(parents=True)
    (root / "texts").mkdir()
    actions = sorted(WORDS)
    ids = {"test": [f"t{i:03d}" for i in range(n_test)], "train": [f"r{i:03d}" for i in range(n_train)]}
    all_motion = []
    for split, names in ids.items():
        for clip_id in names:
            k = int(rng.integers(len(actions)))
            length = int(rng.integers(40, 90))
            t = np.arange(length)[:, None] / 20.0
            motion = np.sin(t * (k + 1) + rng.standard_normal(dim)) + 0.3 * rng.standard_normal((length, dim))
            np.save(root / "new_joint_vecs" / f"{clip_id}.npy", motion.astype(np.float32))
            all_motion.append(motion)
            word = actions[k]
            lines = [f"a person does {word}.#a/DET person/NOUN {word}/{WORDS[word]}#0.0#0.0",
                     f"someone will {word} now.#someone/PRON will/AUX {word}/VERB now/ADV#0.0#0.0"]
            (root / "texts" / f"{clip_id}.txt").write_text("\n".join(lines) + "\n")
        (root / f"{split}.txt").write_text("".join(i + "\n" for i in names))
    frames = np.concatenate(all_motion)
    np.save(root / "Mean.npy", frames.mean(0).astype(np.float32))
    np.save(root / "Std.npy", (frames.std(0) + 0.1).astype(np.float32))


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("synthetic")
    write_dataset(root)
    spec = get_dataset_spec("synthetic", str(root))
    mean, std = eval_normalization(*load_mean_std(spec, str(root)), spec)
    vocab = LearnedVocab.from_split(str(root), "train", dim_word=8)
    torch.manual_seed(0)
    ev = build_evaluator("synthetic", mean, std, word_vectors=vocab, sizes="tiny", data_root=str(root))
    loader = build_eval_loader(ev, spec, "test", data_root=str(root), progress=False)
    return root, spec, ev, loader


def gt_motion(batch):
    return batch.motion, batch.m_lengths


def test_loader_is_a_function_of_the_seed(setup):
    _, _, _, loader = setup
    assert loader.num_batches == 2 and loader.num_samples == 64
    first = list(loader.batches(11))
    torch.rand(1000)  # global RNG use in between must not matter
    again = list(loader.batches(11))
    other = list(loader.batches(12))
    for a, b in zip(first, again):
        assert torch.equal(a.motion, b.motion) and a.captions == b.captions
    assert not all(torch.equal(a.m_lengths, b.m_lengths) for a, b in zip(first, other))
    assert all(bool((b.m_lengths % 4 == 0).all()) and b.motion.shape == (32, 196, 263) for b in first)


def test_loader_leaves_global_rng_alone(setup):
    _, _, _, loader = setup
    torch.manual_seed(5)
    expected = torch.rand(3)
    torch.manual_seed(5)
    for _ in loader.batches(1):
        pass
    assert torch.equal(torch.rand(3), expected)


def test_gt_vs_gt_fid_is_zero_and_mismatched_motion_is_far(setup, tmp_path):
    _, _, ev, loader = setup
    real = evaluate(ev, loader, gt_motion, replications=2, seed=3, gt_cache=None, progress=False)
    assert real.metrics["fid"].mean < 1e-6
    for key in ("diversity", "top1", "top2", "top3", "matching_score"):
        assert real.metrics[key].mean == pytest.approx(real.real[key].mean, abs=1e-12)
    assert "multimodality" not in real.metrics
    assert 0 < real.metrics["top1"].mean <= real.metrics["top2"].mean <= real.metrics["top3"].mean <= 1

    def noise(batch):
        return torch.randn_like(batch.motion) * 3, batch.m_lengths

    def rolled(batch):  # the same motions paired with other captions: same set, same FID, other R-precision
        return batch.motion.roll(1, 0), batch.m_lengths.roll(1, 0)

    far = evaluate(ev, loader, noise, replications=2, seed=3, gt_cache=None, progress=False)
    swapped = evaluate(ev, loader, rolled, replications=2, seed=3, gt_cache=None, progress=False)
    assert far.metrics["fid"].mean > 1000 * max(real.metrics["fid"].mean, 1e-4)
    assert swapped.metrics["fid"].mean < 1e-6
    assert swapped.metrics["matching_score"].mean != pytest.approx(real.metrics["matching_score"].mean, rel=1e-3)


def test_replications_stream_to_jsonl_and_resume(setup, tmp_path):
    _, _, ev, loader = setup
    path = tmp_path / "eval" / "replications.jsonl"
    calls = {"n": 0}

    def fails_in_second_replication(batch):
        calls["n"] += 1
        if calls["n"] > loader.num_batches:
            raise RuntimeError("killed")
        return gt_motion(batch)

    with pytest.raises(RuntimeError, match="killed"):
        evaluate(ev, loader, fails_in_second_replication, replications=3, seed=7, results_path=str(path),
                 gt_cache=None, progress=False, meta={"checkpoint": "x"})
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert [row["seed"] for row in lines] == [7]
    assert set(lines[0]["metrics"]) >= {"fid", "diversity", "top1", "top2", "top3", "matching_score"}

    calls["n"] = 0
    report = evaluate(ev, loader, gt_motion_counted(calls), replications=3, seed=7, results_path=str(path),
                      gt_cache=None, progress=False, meta={"checkpoint": "x"}, resume=True)
    assert calls["n"] == 2 * loader.num_batches  # replication 0 was reused
    assert [row["seed"] for row in report.rows] == replication_seeds(7, 3) == report.meta["protocol"]["seeds"]
    assert len(path.read_text().splitlines()) == 3
    fresh = evaluate(ev, loader, gt_motion, replications=3, seed=7, gt_cache=None, progress=False)
    for a, b in zip(report.rows, fresh.rows):
        assert a["metrics"] == pytest.approx(b["metrics"], abs=1e-9)


def test_a_resume_says_when_the_file_s_replications_were_made_otherwise(setup, tmp_path, caplog):
    """Replications under another evaluation key (other settings) were silently computed again."""
    _, _, ev, loader = setup
    path = tmp_path / "replications.jsonl"
    evaluate(ev, loader, gt_motion, replications=1, seed=7, results_path=str(path), gt_cache=None, progress=False,
             meta={"checkpoint": "x", "sampling": {"sampling": "categorical"}})
    with caplog.at_level(logging.WARNING, logger="utils.eval_protocol"):
        evaluate(ev, loader, gt_motion, replications=1, seed=7, results_path=str(path), gt_cache=None,
                 progress=False, meta={"checkpoint": "x", "sampling": {"sampling": "gumbel"}}, resume=True)
    assert f"{path} holds 1 replication(s) of these seeds made with other settings" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="utils.eval_protocol"):  # the same settings: reused, no warning
        evaluate(ev, loader, gt_motion, replications=1, seed=7, results_path=str(path), gt_cache=None,
                 progress=False, meta={"checkpoint": "x", "sampling": {"sampling": "gumbel"}}, resume=True)
    assert "other settings" not in caplog.text


def test_a_resume_after_a_torn_line_keeps_every_new_replication_readable(setup, tmp_path):
    """A crash mid-write leaves a last line without its newline: the replications a resume streams after it must
    start a line of their own, or the first of them is glued to the torn one and lost to the next resume."""
    _, _, ev, loader = setup
    path = tmp_path / "replications.jsonl"
    evaluate(ev, loader, gt_motion, replications=1, seed=7, results_path=str(path), gt_cache=None, progress=False,
             meta={"checkpoint": "x"})
    with open(path, "a") as f:
        f.write('{"replication": 1, "seed": 8, "metr')  # torn
    evaluate(ev, loader, gt_motion, replications=3, seed=7, results_path=str(path), gt_cache=None, progress=False,
             meta={"checkpoint": "x"}, resume=True)
    calls = {"n": 0}
    evaluate(ev, loader, gt_motion_counted(calls), replications=3, seed=7, results_path=str(path), gt_cache=None,
             progress=False, meta={"checkpoint": "x"}, resume=True)
    assert calls["n"] == 0  # all three replications were read back


def test_a_second_evaluation_into_the_same_file_is_refused_but_a_training_of_the_run_is_no_obstacle(setup, tmp_path):
    """Two evaluations streaming to one JSONL file would drop or repeat each other's rows; the run's training lock
    (model/ and the run's own files) does not keep an evaluation out of eval/."""
    _, _, ev, loader = setup
    run = RunDir(str(tmp_path), "synthetic", "busy")
    path = os.path.join(run.eval_dir, "eval_net_best_fid_replications.jsonl")
    with releasing_run_locks():
        run.make_dirs()  # the run is training
        evaluate(ev, loader, gt_motion, replications=1, seed=7, results_path=path, gt_cache=None, progress=False)
        other = acquire_lock(path + ".lock", path, "")  # another evaluation of the same file is running
        try:
            with pytest.raises(FileLockedError, match=rf"{re.escape(path)} is in use by another process \(pid "
                                                      rf"{os.getpid()} .*; wait for that evaluation to finish"):
                evaluate(ev, loader, gt_motion, replications=1, seed=7, results_path=path, gt_cache=None,
                         progress=False)
        finally:
            other.release()
        assert len(Path(path).read_text().splitlines()) == 1  # the refused one changed nothing
        acquire_lock(path + ".lock", path, "").release()  # the finished evaluation gave its lock back


def gt_motion_counted(calls):
    def fn(batch):
        calls["n"] += 1
        return gt_motion(batch)
    return fn


def test_confidence_interval_formula(setup):
    _, _, ev, loader = setup
    report = evaluate(ev, loader, lambda b: (b.motion * 0.9, b.m_lengths), replications=3, seed=1, gt_cache=None,
                      progress=False)
    for key, stat in report.metrics.items():
        values = np.array([row["metrics"][key] for row in report.rows])
        assert stat.mean == pytest.approx(values.mean())
        assert stat.ci == pytest.approx(1.96 * values.std(ddof=0) / math.sqrt(3))
    assert len({row["metrics"]["fid"] for row in report.rows}) == 3  # crops differ between replications


def test_gt_cache_hit_skips_the_evaluator_and_gives_identical_numbers(setup, tmp_path, monkeypatch):
    _, _, ev, loader = setup
    calls = {"n": 0}
    original = ev.get_co_embeddings

    def counted(*args, **kwargs):
        calls["n"] += 1
        return original(*args, **kwargs)

    monkeypatch.setattr(ev, "get_co_embeddings", counted)
    cache = GTCache(str(tmp_path / "gt_cache"))

    def model(batch):
        return batch.motion.flip(1) * 0.5, batch.m_lengths

    first = evaluate(ev, loader, model, replications=2, seed=20, gt_cache=cache, progress=False)
    assert calls["n"] == 2 * loader.num_batches
    assert [row["gt_cache"] for row in first.rows] == ["miss", "miss"]
    assert len(list((tmp_path / "gt_cache").glob("*.npz"))) == 2

    calls["n"] = 0
    second = evaluate(ev, loader, model, replications=2, seed=20, gt_cache=cache, progress=False)
    assert calls["n"] == 0
    assert [row["gt_cache"] for row in second.rows] == ["hit", "hit"]
    for a, b in zip(first.rows, second.rows):
        assert a["metrics"] == b["metrics"] and a["real"] == b["real"]

    # Another base seed shares replication seed 21 only.
    calls["n"] = 0
    evaluate(ev, loader, model, replications=2, seed=21, gt_cache=cache, progress=False)
    assert calls["n"] == loader.num_batches

    # A cache entry that does not fit the batches is detected and recomputed.
    key_file = sorted((tmp_path / "gt_cache").glob("*seed20.npz"))[0]
    with np.load(key_file) as data:
        arrays = {k: data[k] for k in data.files}
    arrays["m_lengths"] = arrays["m_lengths"] + 4
    np.savez(key_file, **arrays)
    calls["n"] = 0
    third = evaluate(ev, loader, model, replications=1, seed=20, gt_cache=cache, progress=False)
    assert calls["n"] == loader.num_batches and third.rows[0]["gt_cache"] == "stale"
    assert third.rows[0]["metrics"] == first.rows[0]["metrics"]


def test_a_torn_or_corrupt_gt_cache_entry_is_recomputed_not_a_crash(tmp_path, caplog):
    cache = GTCache(str(tmp_path))
    entry = GTEmbeddings(np.zeros((4, 8), np.float32), np.ones((4, 8), np.float32), np.arange(4), np.arange(4))
    cache.save("k" * 64, 0, entry)
    path = Path(cache.path("k" * 64, 0))
    raw = path.read_bytes()
    assert cache.load("k" * 64, 0) is not None
    for damaged in (raw[:len(raw) // 2], raw[:200] + bytes([raw[200] ^ 0xFF]) + raw[201:]):
        path.write_bytes(damaged)
        caplog.clear()
        assert cache.load("k" * 64, 0) is None
        assert f"GT cache {path} is unreadable" in caplog.text


def test_embedding_in_chunks_equals_embedding_each_batch_alone(setup):
    """A generator returns each batch at T = its longest length, where the evaluator's convolutions read their own
    zero padding past the end; padding that batch to a longer one's T in a shared call would change its longest
    rows' embeddings, so chunked calls (the GT cache's) must give each batch's own numbers."""
    _, _, ev, loader = setup
    items = []
    for batch in loader.batches(3):
        frames = int(batch.m_lengths.max())
        items.append(checked_motion((batch.motion[:, :frames], batch.m_lengths), batch, ev, "motion_fn"))
    items.append((items[0][0][:, :-8], items[0][1].clamp(max=items[0][0].shape[1] - 8)))  # a shorter T
    assert len({motion.shape[1] for motion, _ in items}) > 1
    chunked = embed_in_chunks(ev, items, max_rows=1000)
    for item, emb in zip(items, chunked):
        np.testing.assert_allclose(emb, motion_embeddings(ev, *item), rtol=1e-5, atol=1e-5)


def rows_counted(calls, scale=0.9):
    """A deterministic per-row model (a fixed map of the GT row) that counts the rows it is asked for."""
    def fn(batch):
        calls["rows"] += batch.motion.shape[0]
        calls["batches"].append(batch)
        return batch.motion * scale + 0.1 * torch.tanh(batch.motion.flip(1)), batch.m_lengths
    return fn


@pytest.mark.parametrize("cached", [False, True])
def test_deterministic_model_reuses_repeated_crops_with_the_same_numbers(setup, tmp_path, cached):
    _, _, ev, loader = setup
    gt_cache = GTCache(str(tmp_path / "gt_cache")) if cached else None
    every = {"rows": 0, "batches": []}
    memo = {"rows": 0, "batches": []}
    plain = evaluate(ev, loader, rows_counted(every), replications=6, seed=40, gt_cache=gt_cache, progress=False)
    reused = evaluate(ev, loader, rows_counted(memo), replications=6, seed=40, gt_cache=gt_cache, progress=False,
                      deterministic=True)
    assert every["rows"] == 6 * loader.num_samples
    assert [row["reused_rows"] for row in plain.rows] == [0] * 6
    counts = [row["reused_rows"] for row in reused.rows]
    assert counts[0] == 0 and all(c > 0 for c in counts[2:])
    # Replication 1's first batch with a known row is computed in full once (the check); after that every known
    # row is skipped, so the model sees exactly the rows that were not reused.
    assert memo["rows"] == 6 * loader.num_samples - sum(counts)
    assert memo["rows"] < 0.8 * every["rows"]
    assert any(b.motion.shape[0] < loader.batch_size for b in memo["batches"])  # a subset of a batch's rows
    for a, b in zip(plain.rows, reused.rows):
        assert a["metrics"]["multimodality"] is None and b["metrics"]["multimodality"] is None
        for key in ("fid", "diversity", "top1", "top2", "top3", "matching_score"):
            assert b["metrics"][key] == pytest.approx(a["metrics"][key], rel=1e-5, abs=1e-6), key
        assert a["real"] == b["real"]
    # Anchored to GT: a model returning its input, remembered, scores exactly like GT in every replication.
    report = evaluate(ev, loader, gt_motion, replications=4, seed=40, gt_cache=gt_cache, progress=False,
                      deterministic=True)
    assert sum(row["reused_rows"] for row in report.rows) > 0
    for row in report.rows:
        assert row["metrics"]["fid"] < 1e-5
        for key in ("top1", "top2", "top3", "matching_score"):
            assert row["metrics"][key] == pytest.approx(row["real"][key], abs=1e-5), key


def test_a_model_declared_deterministic_that_is_not_switches_the_memo_off(setup, caplog):
    _, _, ev, loader = setup

    def sample(batch):  # seeded per replication by the protocol, different from one replication to the next
        return batch.motion + 0.3 * torch.randn_like(batch.motion), batch.m_lengths

    plain = evaluate(ev, loader, sample, replications=4, seed=50, gt_cache=None, progress=False)
    with caplog.at_level("WARNING", logger="utils.model_embeddings"):
        declared = evaluate(ev, loader, sample, replications=4, seed=50, gt_cache=None, progress=False,
                            deterministic=True)
    assert "declared deterministic" in caplog.text
    assert [row["reused_rows"] for row in declared.rows] == [0] * 4
    for a, b in zip(plain.rows, declared.rows):  # the same calls in the same order: the same numbers
        assert a["metrics"] == b["metrics"]


def test_deterministic_and_multimodality_exclude_each_other(setup):
    _, _, ev, loader = setup
    with pytest.raises(ValueError, match="pass one or the other"):
        evaluate(ev, loader, gt_motion, replications=1, mm_fn=gt_motion, deterministic=True, gt_cache=None,
                 progress=False)


def test_multimodality_uses_repeats(setup):
    _, _, ev, loader = setup

    def sample(batch):
        return batch.motion + 0.2 * torch.randn_like(batch.motion), batch.m_lengths

    report = evaluate(ev, loader, sample, replications=1, seed=2, mm_fn=sample, mm_batches=1, mm_repeats=11,
                      mm_times=10, gt_cache=None, progress=False)
    assert report.metrics["multimodality"].mean > 0
    deterministic = evaluate(ev, loader, gt_motion, replications=1, seed=2, mm_fn=gt_motion, mm_batches=1,
                             mm_repeats=11, mm_times=10, gt_cache=None, progress=False)
    assert deterministic.metrics["multimodality"].mean < 1e-6


def test_renormalize_round_trip():
    rng = np.random.default_rng(0)
    d = 7
    m1, s1 = rng.standard_normal(d), rng.uniform(0.5, 2, d)
    m2, s2 = rng.standard_normal(d), rng.uniform(0.5, 2, d)
    raw = rng.standard_normal((2, 5, d)).astype(np.float32)
    x1 = (raw - m1) / s1
    x2 = renormalize(x1, m1, s1, m2, s2)
    np.testing.assert_allclose(x2, (raw - m2) / s2, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(renormalize(x2, m2, s2, m1, s1), x1, rtol=1e-5, atol=1e-5)
    t = torch.from_numpy(x1.astype(np.float32))
    back = renormalize(renormalize(t, m1, s1, m2, s2), m2, s2, m1, s1)
    assert isinstance(back, torch.Tensor) and torch.allclose(back, t, atol=1e-5)
    assert renormalize(t, m1, s1, m1.copy(), s1.copy()) is t
    with pytest.raises(ValueError, match="from_std"):
        renormalize(t, m1, s1[:3], m2, s2)


def test_bad_motion_fn_output_fails_clearly(setup):
    _, _, ev, loader = setup
    with pytest.raises(ValueError, match=r"motion has shape .*expected \(32, T, 263\)"):
        evaluate(ev, loader, lambda b: (b.motion[..., :10], b.m_lengths), replications=1, gt_cache=None,
                 progress=False)
    with pytest.raises(ValueError, match="lengths must be"):
        evaluate(ev, loader, lambda b: (b.motion[:, :40], b.m_lengths), replications=1, gt_cache=None,
                 progress=False)
    with pytest.raises(ValueError, match="NaN"):
        evaluate(ev, loader, lambda b: (b.motion * float("nan"), b.m_lengths), replications=1, gt_cache=None,
                 progress=False)


def test_loader_refuses_another_datasets_evaluator(setup):
    root, spec, _, _ = setup
    mean, std = np.zeros(263, np.float32), np.ones(263, np.float32)
    other = build_evaluator("t2m", mean, std, sizes="tiny", dim_word=8)
    with pytest.raises(ValueError, match="belongs to dataset 't2m'"):
        build_eval_loader(other, spec, "test", data_root=str(root), progress=False)


def test_report_table_and_json(setup, tmp_path):
    _, _, ev, loader = setup
    report = evaluate(ev, loader, gt_motion, replications=1, seed=0, gt_cache=None, progress=False,
                      meta={"checkpoint": "ckpt.tar", "steps": 10})
    text = format_report(report, title="test")
    assert "FID" in text and "R-precision top-3" in text and "Matching score" in text
    # One replication: means only, since a ± 0 would claim no uncertainty.
    assert "±" not in text and text.endswith("1 replication of 64 test samples (batch 32); no interval from one "
                                             "replication")
    path = tmp_path / "report.json"
    write_report_json(report, str(path))
    data = json.loads(path.read_text())
    assert data["meta"]["steps"] == 10 and data["meta"]["protocol"]["split"] == "test"
    assert data["meta"]["protocol"]["evaluator"]["source"] == "learned vocabulary"
    assert data["metrics"]["fid"]["mean"] == report.metrics["fid"].mean


def test_each_replication_reports_progress_over_its_model_calls(setup, monkeypatch):
    """A generator's replication can take most of an hour: a bar per replication advances with every model call
    (``mm_repeats`` per multimodality batch, one per other batch) instead of only the bar over replications."""
    import utils.eval_protocol as protocol

    bars = []

    class RecordingBar:
        def __init__(self, iterable=None, total=None, desc=None, **kwargs):
            self.iterable, self.total, self.desc, self.updates = iterable, total, desc, []
            bars.append(self)

        def __iter__(self):
            return iter(self.iterable)

        def update(self, n=1):
            self.updates.append(n)

        def set_postfix(self, **kwargs):
            pass

        def close(self):
            pass

    monkeypatch.setattr(protocol, "tqdm", RecordingBar)
    _, _, ev, loader = setup
    calls = []

    def sample(batch):
        calls.append(1)
        return batch.motion + 0.2 * torch.randn_like(batch.motion), batch.m_lengths

    evaluate(ev, loader, sample, replications=2, seed=2, mm_fn=sample, mm_batches=1, mm_repeats=11, mm_times=10,
             gt_cache=None)
    per_replication = [bar for bar in bars if bar.iterable is None]
    assert [bar.desc for bar in per_replication] == ["replication 1/2", "replication 2/2"]
    expected = 11 + loader.num_batches - 1
    for bar in per_replication:
        assert bar.total == expected
        assert bar.updates == [1] * expected  # one step per model call, so the ETA moves during the replication
    assert len(calls) == 2 * expected


def test_validation_evaluator_is_loaded_by_the_first_process_only(tmp_path, monkeypatch, synthetic_root):
    from utils.eval_data import load_validation_evaluator

    spec = get_dataset_spec("synthetic", synthetic_root)
    missing = str(tmp_path / "no_evaluator")
    monkeypatch.setenv("RANK", "1")
    assert load_validation_evaluator(missing, str(tmp_path), "synthetic", spec, synthetic_root) == (None, None)
    monkeypatch.setenv("RANK", "0")
    with pytest.raises(SystemExit, match="--need_evaluation: no usable evaluator for dataset 'synthetic'"):
        load_validation_evaluator(missing, str(tmp_path), "synthetic", spec, synthetic_root)


@pytest.mark.parametrize("n_val", [1, 2])
def test_validation_needs_two_val_samples_and_says_so_before_training(tmp_path, n_val):
    """A val split of one evaluation sample has no FID (a covariance needs two samples): --need_evaluation refuses it
    when the evaluator is loaded, not at the first validation after the training steps before it. Two samples
    validate, with a finite FID."""
    from utils.eval_data import load_validation_evaluator
    from utils.evaluator import save_evaluator

    root = tmp_path / "data"
    write_dataset(root, n_test=4)
    (root / "val.txt").write_text("".join(f"t{i:03d}\n" for i in range(n_val)))
    spec = get_dataset_spec("synthetic", str(root))
    mean, std = eval_normalization(*load_mean_std(spec, str(root)), spec)
    torch.manual_seed(0)
    ev = build_evaluator("synthetic", mean, std, sizes="tiny", data_root=str(root),
                         word_vectors=LearnedVocab.from_split(str(root), "train", dim_word=8))
    save_evaluator(str(tmp_path / "ev" / "model" / "finest.tar"), ev)
    if n_val == 1:
        with pytest.raises(SystemExit, match="val split has 1 evaluation sample"):
            load_validation_evaluator(str(tmp_path / "ev"), str(tmp_path), "synthetic", spec, str(root))
        return
    evaluator, loader = load_validation_evaluator(str(tmp_path / "ev"), str(tmp_path), "synthetic", spec, str(root))
    report = evaluate(evaluator, loader, gt_motion, replications=1, gt_cache=None, progress=False)
    assert loader.batch_size == 2 and report.metrics["fid"].mean == 0.0
    assert math.isfinite(report.metrics["diversity"].mean)


def test_protocol_constants_are_the_published_ones():
    # Guo et al. / MoMask / MARDM: 20 replications, multimodality over 3 batches x 30 generations x 10 pairs, top-3.
    import inspect

    from utils import eval_protocol

    assert (eval_protocol.DEFAULT_REPLICATIONS, eval_protocol.MM_BATCHES, eval_protocol.MM_REPEATS,
            eval_protocol.MM_TIMES, eval_protocol.TOP_K) == (20, 3, 30, 10, 3)
    defaults = inspect.signature(evaluate).parameters
    assert (defaults["replications"].default, defaults["mm_repeats"].default) == (20, 30)


def test_retrieval_metrics_equal_the_real_row_of_the_protocol(setup):
    """train_evaluator.py reports retrieval_metrics (R-precision and MM-Dist of the GT); they are the GT row of
    one protocol replication with the same seed."""
    from utils.eval_protocol import retrieval_metrics

    _, _, ev, loader = setup
    report = evaluate(ev, loader, gt_motion, replications=1, seed=5, gt_cache=None, progress=False)
    got = retrieval_metrics(ev, loader, seed=5)
    for key in ("top1", "top2", "top3", "matching_score"):
        assert got[key] == pytest.approx(report.real[key].mean, rel=1e-9), key


def test_multimodality_batches_are_capped_at_the_loaders(setup):
    """mm_batches above the loader's batch count uses every batch, and the report records what ran."""
    _, _, ev, loader = setup
    assert loader.num_batches == 2
    report = evaluate(ev, loader, gt_motion, replications=1, seed=1, mm_fn=gt_motion, mm_batches=5, mm_repeats=3,
                      mm_times=2, gt_cache=None, progress=False)
    assert report.meta["protocol"]["multimodality"] == {"batches": 2, "repeats": 3, "pairs": 2}


def test_evaluate_restores_the_callers_random_state_and_seeds_the_model_per_replication(setup):
    """The caller's torch and numpy random states are as before the call, and replication r's model randomness
    starts from a fresh set_seed(seed + r)."""
    _, _, ev, loader = setup
    drawn = []

    def noisy(batch):
        drawn.append(torch.rand(1).item())
        return batch.motion + 0.01 * torch.randn_like(batch.motion), batch.m_lengths

    torch.manual_seed(11)
    np.random.seed(11)
    expected_torch, expected_np = torch.rand(2), np.random.rand(2)
    torch.manual_seed(11)
    np.random.seed(11)
    evaluate(ev, loader, noisy, replications=2, seed=5, gt_cache=None, progress=False)
    assert torch.equal(torch.rand(2), expected_torch)
    np.testing.assert_array_equal(np.random.rand(2), expected_np)
    for r, value in enumerate([drawn[0], drawn[loader.num_batches]]):
        set_seed(5 + r)
        assert value == torch.rand(1).item()
