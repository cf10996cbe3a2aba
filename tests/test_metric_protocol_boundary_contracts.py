"""The metrics and the evaluation protocol: boundaries and contracts the other metric tests leave open (the tolerance
on sqrtm's imaginary part and the value its error reports, argument checks of the index pairs, the pair counts and the
confidence interval, the multimodality settings refused before running, the file-name tags, the
resume key, the GT cache's caption-length check and rewrite, which repeat is the sample, the multimodality draw)."""

from __future__ import annotations

import json
import shutil
import warnings
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from test_eval_protocol import gt_motion, gt_motion_counted, rows_counted, write_dataset
from test_eval_protocol import setup as protocol_setup  # noqa: F401 (a fixture)

from utils import eval_protocol as EP
from utils import metrics as M
from utils.dataset_specs import get_dataset_spec
from utils.eval_data import PROTOCOL_VERSION, build_eval_loader, digest
from utils.gt_cache import GTCache

# ---------------------------------------------------------------------------------------------------------------------
# utils.metrics
# ---------------------------------------------------------------------------------------------------------------------


def _sqrtm_returning(monkeypatch, root):
    monkeypatch.setattr(M.linalg, "sqrtm", lambda a: np.array(root))


def test_frechet_distance_accepts_imaginary_noise_below_one_thousandth_on_the_diagonal_only(monkeypatch):
    """The tolerance is on the diagonal's imaginary part (it is the trace that enters the distance), at 1e-3."""
    eye = np.eye(2)
    _sqrtm_returning(monkeypatch, [[1 + 5e-4j, 0.5j], [0.5j, 1 - 5e-4j]])
    assert M.calculate_frechet_distance(np.zeros(2), eye, np.zeros(2), eye) == pytest.approx(0.0, abs=1e-12)
    _sqrtm_returning(monkeypatch, [[0.5 + 2e-3j, 0], [0, 0.5]])
    with pytest.raises(ValueError, match="imaginary component .* exceeds 0.001 on the diagonal"):
        M.calculate_frechet_distance(np.zeros(2), eye, np.zeros(2), eye)


def test_fid_of_singular_covariances_keeps_the_real_part_without_a_complex_cast():
    """sqrtm of a singular product is complex; its real part is taken before the trace, so no ComplexWarning."""
    rng = np.random.default_rng(1)
    a, b = rng.standard_normal((10, 32)), rng.standard_normal((10, 32))
    with warnings.catch_warnings():
        warnings.simplefilter("error", np.exceptions.ComplexWarning)
        value = M.calculate_fid(a, b)
    assert isinstance(value, float) and value > 0


def test_pairs_need_both_index_sets_whichever_is_missing():
    acts = np.random.default_rng(0).standard_normal((10, 3))
    with pytest.raises(ValueError, match="give both first_indices and second_indices"):
        M.calculate_diversity(acts, 4, second_indices=np.arange(4), rng=np.random.default_rng(0))
    with pytest.raises(ValueError, match="give both"):
        M.calculate_multimodality(acts[None], 4, second_indices=np.arange(4), rng=np.random.default_rng(0))


def test_frechet_distance_error_reports_the_diagonals_imaginary_part(monkeypatch):
    """The check is on the diagonal; the message gave the largest imaginary part anywhere in the matrix."""
    monkeypatch.setattr(M.linalg, "sqrtm", lambda a: np.array([[1 + 2e-3j, 0.5j], [0.5j, 1]]))
    eye = np.eye(2)
    with pytest.raises(ValueError, match=r"imaginary component 0\.002 in sqrtm\(S1 S2\) exceeds 0\.001 on the "
                                         r"diagonal"):
        M.calculate_frechet_distance(np.zeros(2), eye, np.zeros(2), eye)


def test_diversity_and_multimodality_of_no_pairs_are_refused():
    """Zero pairs averaged to NaN with only a numpy RuntimeWarning."""
    acts = np.random.default_rng(0).standard_normal((10, 3))
    with pytest.raises(ValueError, match="diversity: times must be >= 1, got 0"):
        M.calculate_diversity(acts, 0, rng=np.random.default_rng(0))
    with pytest.raises(ValueError, match="multimodality: times must be >= 1, got 0"):
        M.calculate_multimodality(acts[:, None].repeat(3, axis=1), 0, rng=np.random.default_rng(0))
    with pytest.raises(ValueError, match="diversity: times must be >= 1, got 0"):
        M.calculate_diversity(acts, 0, np.array([], dtype=int), np.array([], dtype=int))


def test_confidence_interval_of_no_replications_is_refused():
    with pytest.raises(ValueError, match="at least one value"):
        M.mean_confidence_interval([])


def test_confidence_interval_is_computed_in_float64():
    """Replication values are averaged in float64: float32 would round a mean like this one."""
    values = [0.1, 0.2, 0.4, 1e-9]
    mean, ci = M.mean_confidence_interval(np.array(values, dtype=np.float64))
    assert mean == float(np.mean(np.array(values, dtype=np.float64)))
    assert ci == float(1.96 * np.std(np.array(values, dtype=np.float64)) / 2)


# ---------------------------------------------------------------------------------------------------------------------
# utils.eval_protocol helpers
# ---------------------------------------------------------------------------------------------------------------------


def test_renormalize_keeps_a_float32_array_float32():
    d = 3
    motion = np.ones((2, d), np.float32)
    out = EP.renormalize(motion, np.zeros(d), np.full(d, 2.0), np.ones(d), np.ones(d))
    assert isinstance(out, np.ndarray) and out.dtype == np.float32
    np.testing.assert_array_equal(out, np.ones((2, d), np.float32))


def test_location_free_keeps_a_path_whose_sha256_is_unknown():
    """Only a file identified by content leaves the key: a ``<name>_sha256`` of None keeps ``<name>``."""
    meta = {"checkpoint": "/runs/a/latest.tar", "checkpoint_sha256": None, "tokenizer": "/runs/t.tar",
            "tokenizer_sha256": "ab"}
    assert EP.location_free(meta) == {"checkpoint": "/runs/a/latest.tar", "checkpoint_sha256": None,
                                      "tokenizer_sha256": "ab"}


def test_protocol_tag_leaves_explicit_defaults_untagged_and_names_every_mm_setting():
    assert EP.protocol_tag("test", EP.DEFAULT_SEED, 32) == ""
    assert EP.protocol_tag("test", EP.DEFAULT_SEED, None, (EP.MM_BATCHES, 5)) == f"_mm{EP.MM_BATCHES}x5"
    assert EP.protocol_tag("test", EP.DEFAULT_SEED, None, (1, EP.MM_REPEATS)) == f"_mm1x{EP.MM_REPEATS}"


def test_evaluator_tag_of_the_datasets_own_evaluator_is_empty(tmp_path):
    """``--evaluator_dir`` naming the default evaluator (its folder or its file, also through a link) is no other
    evaluator: the file names stay those of the default."""
    default_dir = tmp_path / "text_mot_match"
    (default_dir / "model").mkdir(parents=True)
    (default_dir / "model" / "finest.tar").write_bytes(b"weights")
    (tmp_path / "link.tar").symlink_to(default_dir / "model" / "finest.tar")
    assert EP.evaluator_tag(str(default_dir), str(default_dir)) == ""
    assert EP.evaluator_tag(str(tmp_path / "link.tar"), str(default_dir)) == ""


def test_fast_frechet_distance_refuses_sets_of_other_widths_by_name():
    with pytest.raises(ValueError, match="of the same width"):
        EP._frechet_distance(np.zeros((4, 3)), np.ones((4, 5)))


def _fake(d=3, num_batches=2):
    mean, std = np.zeros(d, np.float32), np.ones(d, np.float32)
    evaluator = SimpleNamespace(mean=mean, std=std)
    loader = SimpleNamespace(dataset=SimpleNamespace(mean=mean, std=std), num_batches=num_batches)
    return evaluator, loader


@pytest.mark.parametrize("setting, value", [("mm_batches", 0), ("mm_times", 0)])
def test_multimodality_over_no_batch_or_no_pair_is_refused_before_running(setting, value):
    """With mm_fn given, mm_batches=0 silently left multimodality out of the report, and mm_times=0 made it NaN,
    after a whole replication of generation."""
    evaluator, loader = _fake()
    with pytest.raises(ValueError, match=f"{setting} must be >= 1, got {value}"):
        EP.evaluate(evaluator, loader, lambda b: None, replications=1, mm_fn=lambda b: None, gt_cache=None,
                    progress=False, **{setting: value})


# ---------------------------------------------------------------------------------------------------------------------
# evaluate() on the tiny evaluator and dataset of test_eval_protocol
# ---------------------------------------------------------------------------------------------------------------------

def test_resume_reuses_no_replication_made_with_other_multimodality_pairs(protocol_setup, tmp_path):  # noqa: F811
    _, _, ev, loader = protocol_setup
    path = tmp_path / "replications.jsonl"
    kwargs = dict(replications=1, seed=7, mm_batches=1, mm_repeats=3, results_path=str(path), gt_cache=None,
                  progress=False, meta={"checkpoint": "x"})
    EP.evaluate(ev, loader, gt_motion, mm_fn=gt_motion, mm_times=2, **kwargs)
    calls = {"n": 0}
    EP.evaluate(ev, loader, gt_motion, mm_fn=gt_motion_counted(calls), mm_times=1, resume=True, **kwargs)
    assert calls["n"] == 3  # recomputed: other pairs give another multimodality
    calls["n"] = 0
    EP.evaluate(ev, loader, gt_motion, mm_fn=gt_motion_counted(calls), mm_times=1, resume=True, **kwargs)
    assert calls["n"] == 0


def test_a_fresh_start_also_drops_the_rows_streamed_under_the_earlier_key(protocol_setup, tmp_path):  # noqa: F811
    """Rows written before the key left out file paths belong to the same evaluation: a fresh start drops them too,
    instead of leaving them for a later resume to mix with the new run's."""
    _, _, ev, loader = protocol_setup
    path = tmp_path / "replications.jsonl"
    meta = {"checkpoint": "/data/latest.tar", "checkpoint_sha256": "c0ffee"}
    EP.evaluate(ev, loader, gt_motion, replications=1, seed=7, results_path=str(path), gt_cache=None,
                progress=False, meta=meta)
    gt_key = digest(PROTOCOL_VERSION, EP.evaluator_fingerprint(ev), loader.fingerprint).hexdigest()
    earlier_key = digest(gt_key, meta, 0, EP.MM_REPEATS, EP.MM_TIMES, False).hexdigest()
    row = json.loads(path.read_text())
    path.write_text(json.dumps({**row, "eval_key": earlier_key}) + "\n")
    report = EP.evaluate(ev, loader, gt_motion, replications=1, seed=8, results_path=str(path), gt_cache=None,
                         progress=False, meta=meta)
    assert [json.loads(line)["seed"] for line in path.read_text().splitlines()] == [8]
    assert report.meta["protocol"]["eval_key"] != earlier_key


def test_gt_cache_entry_with_other_caption_lengths_is_recomputed_and_rewritten(protocol_setup, tmp_path):  # noqa: F811
    _, _, ev, loader = protocol_setup
    cache = GTCache(str(tmp_path / "gt_cache"))
    first = EP.evaluate(ev, loader, gt_motion, replications=1, seed=30, gt_cache=cache, progress=False)
    entry = next((tmp_path / "gt_cache").glob("*seed30.npz"))
    with np.load(entry) as data:
        arrays = {k: data[k] for k in data.files}
    arrays["sent_lens"] = arrays["sent_lens"] + 1
    np.savez(entry, **arrays)
    stale = EP.evaluate(ev, loader, gt_motion, replications=1, seed=30, gt_cache=cache, progress=False)
    assert stale.rows[0]["gt_cache"] == "stale"
    assert stale.rows[0]["metrics"] == first.rows[0]["metrics"]
    again = EP.evaluate(ev, loader, gt_motion, replications=1, seed=30, gt_cache=cache, progress=False)
    assert again.rows[0]["gt_cache"] == "hit"  # the stale entry was replaced by the recomputed one


def test_gt_cache_is_on_by_default_next_to_the_evaluators_model_folder(protocol_setup, tmp_path,  # noqa: F811
                                                                       monkeypatch):
    _, _, ev, loader = protocol_setup
    monkeypatch.setattr(ev, "path", str(tmp_path / "text_mot_match" / "model" / "finest.tar"))
    report = EP.evaluate(ev, loader, gt_motion, replications=1, seed=31, progress=False)
    assert report.rows[0]["gt_cache"] == "miss"
    assert len(list((tmp_path / "text_mot_match" / "gt_cache").glob("gt_*_seed31.npz"))) == 1


def test_evaluator_fingerprint_follows_the_evaluators_statistics(protocol_setup, monkeypatch):  # noqa: F811
    """The GT cache key: an evaluator normalising with other statistics embeds other GT."""
    _, _, ev, _ = protocol_setup
    before = EP.evaluator_fingerprint(ev)
    assert EP.evaluator_fingerprint(ev) == before
    with monkeypatch.context() as m:
        m.setattr(ev, "mean", ev.mean + 1)
        assert EP.evaluator_fingerprint(ev) != before
    with monkeypatch.context() as m:
        m.setattr(ev, "std", ev.std * 2)
        assert EP.evaluator_fingerprint(ev) != before


def test_the_last_multimodality_repeat_is_the_batchs_sample(protocol_setup):  # noqa: F811
    """As MoMask / MARDM: of a multimodality batch's repeats, the last one enters FID, R-precision and MM-Dist."""
    _, _, ev, loader = protocol_setup
    repeats = 3
    calls = {"n": 0}

    def last_repeat_is_gt(batch):
        calls["n"] += 1
        if calls["n"] % repeats == 0:
            return gt_motion(batch)
        return torch.randn_like(batch.motion) * 3, batch.m_lengths

    report = EP.evaluate(ev, loader, gt_motion, replications=1, seed=2, mm_fn=last_repeat_is_gt, mm_batches=1,
                         mm_repeats=repeats, mm_times=2, gt_cache=None, progress=False)
    assert report.metrics["fid"].mean < 1e-6
    for key in ("top1", "top2", "top3", "matching_score"):
        assert report.metrics[key].mean == pytest.approx(report.real[key].mean, abs=1e-9), key
    assert report.metrics["multimodality"].mean > 1.0


def test_multimodality_pairs_come_from_the_replications_own_generator(protocol_setup, monkeypatch):  # noqa: F811
    """Replication seed s draws its multimodality pairs from ``np.random.default_rng([s, 3])``, apart from the
    diversity pairs' ``[s, 1]``: the number is reproducible from the seed alone."""
    _, _, ev, loader = protocol_setup
    seen = []
    real = EP.calculate_multimodality

    def recording(activations, times, **kwargs):
        seen.append(np.array(activations))
        return real(activations, times, **kwargs)

    monkeypatch.setattr(EP, "calculate_multimodality", recording)

    def sample(batch):
        return batch.motion + 0.5 * torch.randn_like(batch.motion), batch.m_lengths

    report = EP.evaluate(ev, loader, sample, replications=1, seed=4, mm_fn=sample, mm_batches=1, mm_repeats=11,
                         mm_times=10, gt_cache=None, progress=False)
    expected = M.calculate_multimodality(seen[0], 10, rng=np.random.default_rng([4, 3]))
    assert report.rows[0]["metrics"]["multimodality"] == expected
    assert expected != M.calculate_multimodality(seen[0], 10, rng=np.random.default_rng([4, 1]))


def test_the_real_row_does_not_depend_on_the_model(protocol_setup):  # noqa: F811
    """The Real row scores GT against its captions: the retrieval numbers of the same pass, whatever the model."""
    _, _, ev, loader = protocol_setup
    report = EP.evaluate(ev, loader, lambda b: (b.motion.flip(0), b.m_lengths.flip(0)), replications=1, seed=5,
                         gt_cache=None, progress=False)
    got = EP.retrieval_metrics(ev, loader, seed=5)
    for key in ("top1", "top2", "top3", "matching_score"):
        assert report.real[key].mean == pytest.approx(got[key], rel=1e-9), key
    assert report.metrics["matching_score"].mean != pytest.approx(got["matching_score"], rel=1e-3)


def test_a_row_drawn_again_in_a_later_batch_of_the_replication_is_not_computed_again(protocol_setup,  # noqa: F811
                                                                                     tmp_path):
    """With ``deterministic=True`` a crop that an earlier batch of the same replication already drew (identical
    clips) goes to the model once, already in the first replication, and scores as if computed again."""
    _, _, ev, _ = protocol_setup
    root = tmp_path / "twins"
    write_dataset(root, n_test=66)
    names = (root / "test.txt").read_text().split()
    for name in names[1:]:  # every test clip a copy of the first: equal crops repeat within a pass
        shutil.copy(root / "new_joint_vecs" / f"{names[0]}.npy", root / "new_joint_vecs" / f"{name}.npy")
        shutil.copy(root / "texts" / f"{names[0]}.txt", root / "texts" / f"{name}.txt")
    loader = build_eval_loader(ev, get_dataset_spec("synthetic", str(root)), "test", data_root=str(root),
                               progress=False)
    every, memo = {"rows": 0, "batches": []}, {"rows": 0, "batches": []}
    plain = EP.evaluate(ev, loader, rows_counted(every), replications=1, seed=3, gt_cache=None, progress=False)
    once = EP.evaluate(ev, loader, rows_counted(memo), replications=1, seed=3, gt_cache=None, progress=False,
                       deterministic=True)
    assert loader.num_batches == 2
    assert memo["rows"] < every["rows"] == loader.num_samples
    assert once.rows[0]["reused_rows"] == loader.num_samples - memo["rows"]
    for key in ("fid", "diversity", "top1", "top2", "top3", "matching_score"):
        assert once.rows[0]["metrics"][key] == pytest.approx(plain.rows[0]["metrics"][key], rel=1e-5, abs=1e-6), key
