"""Saved motions (utils/saved_motions.py): what the recorder keeps or removes, what the replay refuses, and how
--from_motions takes its protocol settings from the saved run."""

from __future__ import annotations

import json
import os
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from utils.datasets import EvalBatch
from utils.saved_motions import (
    GENERATION_FLAGS,
    KIND_BATCH,
    KIND_MM,
    MotionRecorder,
    MotionReplay,
    SavedMotionsError,
    make_header,
    replay_source,
    seed_file,
)

D = 3


def _header(**change):
    fields = dict(dataset="synthetic", split="test", seed=1, eval_batch_size=2, multimodality=None, tag="t",
                  which="latest", meta={"checkpoint_sha256": "aaa"})
    fields.update(change)
    return make_header(**fields)


def _batch(captions=("a", "b"), m_lengths=(8, 4)):
    b = len(captions)
    return EvalBatch(torch.zeros(b, 1, 1), torch.zeros(b, 1, 1), list(captions), torch.ones(b, dtype=torch.long),
                     torch.zeros(b, 8, D), torch.tensor(list(m_lengths)), [""] * b)


def _save(folder, calls=((KIND_BATCH, ("a", "b"), (8, 4), (8, 4)),), seed=1, header=None):
    """Record one replication; ``calls``: (kind, captions, GT lengths, returned lengths); width 8, D = 3."""
    recorder = MotionRecorder(folder, header or _header(), np.zeros(D), np.ones(D))
    recorder.begin(seed)
    motions = []
    for kind, captions, m_lengths, lengths in calls:
        motion = torch.randn(len(captions), 8, D, generator=torch.Generator().manual_seed(len(motions)))
        motions.append(motion)
        recorder.record(kind, _batch(captions, m_lengths), motion, torch.tensor(list(lengths)))
    recorder.end(seed)
    return recorder, motions


def _rewrite_seed(folder, seed=1, **change):
    path = seed_file(folder, seed)
    with np.load(path) as z:
        arrays = {name: z[name] for name in z.files}
    arrays.update(change)
    np.savez(path, **arrays)


def test_a_folder_of_another_evaluation_loses_only_its_seed_files(tmp_path):
    """Only ``seed*.npz`` files are removed when the folder held another evaluation's motions."""
    folder = str(tmp_path / "m")
    _save(folder)
    for name in ("keep.npz", "seed_notes.txt"):
        (tmp_path / "m" / name).write_bytes(b"x")
    MotionRecorder(folder, _header(meta={"checkpoint_sha256": "bbb"}), np.zeros(D), np.ones(D))
    assert sorted(os.listdir(folder)) == ["keep.npz", "motions.json", "seed_notes.txt", "statistics.npz"]


@pytest.mark.parametrize("change", [{"dataset": "kit"}, {"split": "val"}, {"eval_batch_size": 4},
                                    {"multimodality": (1, 2)}, {"tag": "u"}, {"meta": {"checkpoint_sha256": "b"}}])
def test_each_identity_field_decides_whether_saved_motions_are_kept(tmp_path, change):
    """A header that differs in dataset, split, batch size, multimodality, tag or meta removes the seed files."""
    folder = str(tmp_path / "m")
    _save(folder)
    MotionRecorder(folder, _header(**change), np.zeros(D), np.ones(D))
    assert not os.path.exists(seed_file(folder, 1))


@pytest.mark.parametrize("change", [{"seed": 5}, {"which": "best"}])
def test_seed_and_which_do_not_make_another_evaluation(tmp_path, change):
    folder = str(tmp_path / "m")
    _save(folder)
    MotionRecorder(folder, _header(**change), np.zeros(D), np.ones(D))
    assert os.path.isfile(seed_file(folder, 1))


def test_a_header_with_another_version_removes_the_seed_files(tmp_path):
    folder = str(tmp_path / "m")
    _save(folder)
    MotionRecorder(folder, {**_header(), "version": 2}, np.zeros(D), np.ones(D))
    assert not os.path.exists(seed_file(folder, 1))


@pytest.mark.parametrize("text", ["{not json", "[1, 2]"])
def test_an_unreadable_or_non_object_header_counts_as_another_evaluation(tmp_path, text):
    folder = str(tmp_path / "m")
    _save(folder)
    (tmp_path / "m" / "motions.json").write_text(text)
    MotionRecorder(folder, _header(), np.zeros(D), np.ones(D))
    assert not os.path.exists(seed_file(folder, 1))
    assert json.loads((tmp_path / "m" / "motions.json").read_text()) == _header()


def test_missing_names_the_seeds_without_a_file(tmp_path):
    recorder, _ = _save(str(tmp_path / "m"), seed=3)
    assert recorder.missing([1, 3, 4]) == [1, 4]
    assert MotionReplay(str(tmp_path / "m")).available([1, 3, 4]) == [3]


def test_replay_returns_every_call_in_order_with_zero_padding(tmp_path):
    folder = str(tmp_path / "m")
    calls = ((KIND_BATCH, ("a", "b"), (8, 4), (8, 5)), (KIND_MM, ("c",), (6,), (3,)), (KIND_MM, ("c",), (6,), (0,)))
    _, motions = _save(folder, calls)
    replay = MotionReplay(folder)
    replay.begin(1)
    for (kind, captions, m_lengths, lengths), motion in zip(calls, motions):
        back, got = replay.call(kind, _batch(captions, m_lengths))
        assert back.shape == (len(captions), 8, D) and got.tolist() == list(lengths)
        for i, n in enumerate(lengths):
            assert torch.equal(back[i, :n], motion[i, :n]) and not back[i, n:].any()
    replay.end(1)
    with np.load(seed_file(folder, 1)) as z:
        assert z["kinds"].tolist() == [KIND_BATCH, KIND_MM, KIND_MM] and z["width"].tolist() == [8, 8, 8]
        assert z["frames"].shape == (16, D)


def test_replay_refuses_a_header_of_another_version(tmp_path):
    folder = str(tmp_path / "m")
    _save(folder)
    (tmp_path / "m" / "motions.json").write_text(json.dumps({**_header(), "version": 2}))
    with pytest.raises(SavedMotionsError, match="field 'version' is 2"):
        MotionReplay(folder)


@pytest.mark.parametrize("field", ["which", "seed", "meta"])
def test_replay_refuses_a_header_missing_a_field(tmp_path, field):
    folder = str(tmp_path / "m")
    _save(folder)
    header = _header()
    del header[field]
    (tmp_path / "m" / "motions.json").write_text(json.dumps(header))
    with pytest.raises(SavedMotionsError, match=f"missing field\\(s\\) {field}"):
        MotionReplay(folder)


def test_replay_refuses_statistics_that_are_not_one_dimensional(tmp_path):
    folder = str(tmp_path / "m")
    _save(folder)
    np.savez(os.path.join(folder, "statistics.npz"), mean=np.zeros((1, D), np.float32),
             std=np.ones((1, D), np.float32))
    with pytest.raises(SavedMotionsError, match=r"one shape \(D,\)"):
        MotionReplay(folder)


@pytest.mark.parametrize("change", [
    {"captions": np.array(["a", "b", "c"])},
    {"frames": np.zeros((13, D), np.float32)},
    {"frames": np.zeros((12, D, 1), np.float32)},
])
def test_a_seed_file_whose_arrays_disagree_is_refused_at_begin(tmp_path, change):
    folder = str(tmp_path / "m")
    _save(folder)
    _rewrite_seed(folder, **change)
    with pytest.raises(SavedMotionsError, match=r"seed1\.npz"):
        MotionReplay(folder).begin(1)


def test_a_call_past_the_saved_ones_is_refused(tmp_path):
    folder = str(tmp_path / "m")
    _save(folder)
    replay = MotionReplay(folder)
    replay.begin(1)
    replay.call(KIND_BATCH, _batch())
    with pytest.raises(SavedMotionsError, match="holds only 1 calls"):
        replay.call(KIND_BATCH, _batch())


def test_a_call_of_another_kind_is_refused(tmp_path):
    folder = str(tmp_path / "m")
    _save(folder)
    replay = MotionReplay(folder)
    replay.begin(1)
    with pytest.raises(SavedMotionsError, match="saved as a batch's motion, asked for as a multimodality repeat"):
        replay.call(KIND_MM, _batch())


@pytest.mark.parametrize("captions, m_lengths", [(("a", "x"), (8, 4)), (("a", "b"), (8, 5))])
def test_a_call_for_other_captions_or_gt_lengths_is_refused(tmp_path, captions, m_lengths):
    folder = str(tmp_path / "m")
    _save(folder)
    replay = MotionReplay(folder)
    replay.begin(1)
    with pytest.raises(SavedMotionsError, match="other captions or GT lengths"):
        replay.call(KIND_BATCH, _batch(captions, m_lengths))


def test_ending_before_every_saved_call_was_asked_for_is_refused(tmp_path):
    folder = str(tmp_path / "m")
    _save(folder, ((KIND_BATCH, ("a", "b"), (8, 4), (8, 4)), (KIND_BATCH, ("c",), (8,), (8,))))
    replay = MotionReplay(folder)
    replay.begin(1)
    replay.call(KIND_BATCH, _batch())
    with pytest.raises(SavedMotionsError, match="2 calls saved, 1 asked for"):
        replay.end(1)


def test_a_replication_without_calls_written_as_empty_float_arrays_is_read(tmp_path):
    """Empty per-call and per-row arrays of float dtype (``np.array([])``) describe a replication of no calls."""
    folder = str(tmp_path / "m")
    _save(folder)
    np.savez(seed_file(folder, 1), kinds=np.array([]), rows=np.zeros(0, np.int64), width=np.zeros(0, np.int64),
             captions=np.array([], dtype=np.str_), m_lengths=np.array([]), lengths=np.array([]),
             frames=np.zeros((0, D), np.float32))
    replay = MotionReplay(folder)
    replay.begin(1)
    replay.end(1)


def test_a_call_of_zero_rows_is_accepted(tmp_path):
    folder = str(tmp_path / "m")
    _save(folder)
    np.savez(seed_file(folder, 1), kinds=np.array([0], np.int8), rows=np.array([0]), width=np.array([8]),
             captions=np.array([], dtype=np.str_), m_lengths=np.zeros(0, np.int64), lengths=np.zeros(0, np.int64),
             frames=np.zeros((0, D), np.float32))
    replay = MotionReplay(folder)
    replay.begin(1)
    motion, lengths = replay.call(KIND_BATCH, _batch((), ()))
    assert motion.shape == (0, 8, D) and lengths.shape == (0,)
    replay.end(1)


def test_the_first_row_whose_length_exceeds_the_width_is_named(tmp_path):
    folder = str(tmp_path / "m")
    _save(folder)
    _rewrite_seed(folder, lengths=np.array([9, -1]), frames=np.zeros((8, D), np.float32))
    with pytest.raises(SavedMotionsError, match="'lengths' holds 9 for row 0"):
        MotionReplay(folder).begin(1)


# ---------------------------------------------------------------------------------------------------------------------
# replay_source: the protocol settings come from the saved run
# ---------------------------------------------------------------------------------------------------------------------

_DEFAULTS = {**{dest: None for dest in GENERATION_FLAGS}, "no_ema": False, "no_snap": False, "save_motions": False,
             "dataset_name": "", "split": "test", "seed": 3407, "eval_batch_size": 32, "cal_mm": True,
             "mm_batches": 3, "mm_repeats": 30, "replications": 20}


def _cfg(folder, **given):
    return SimpleNamespace(**{**_DEFAULTS, "from_motions": folder, **given})


def _saved_run(tmp_path, multimodality=(2, 11), seeds=(7, 8), **header_fields):
    folder = str(tmp_path / "run" / "eval" / "motions_t")
    header = {**_header(seed=7, eval_batch_size=4, split="val", multimodality=multimodality), "replications": 2,
              **header_fields}
    for s in seeds:
        _save(folder, seed=s, header=header)
    return folder


def test_replay_source_takes_the_saved_protocol_settings(tmp_path):
    folder = _saved_run(tmp_path)
    cfg = _cfg(folder)
    source = replay_source(cfg, _DEFAULTS.get)
    assert (cfg.split, cfg.seed, cfg.eval_batch_size, cfg.cal_mm, cfg.mm_batches, cfg.mm_repeats,
            cfg.replications) == ("val", 7, 4, True, 2, 11, 2)
    assert source.dataset_name == "synthetic" and source.tag == "t" and source.which == "latest"
    assert source.eval_dir == str(tmp_path / "run" / "eval")
    assert source.meta == {"checkpoint_sha256": "aaa"}
    assert np.array_equal(source.mean, np.zeros(D)) and np.array_equal(source.std, np.ones(D))


def test_replay_source_without_multimodality_turns_it_off(tmp_path):
    folder = _saved_run(tmp_path, multimodality=None)
    cfg = _cfg(folder)
    replay_source(cfg, _DEFAULTS.get)
    assert cfg.cal_mm is False and (cfg.mm_batches, cfg.mm_repeats) == (3, 30)


def test_replay_source_produces_the_saved_calls_of_each_kind(tmp_path):
    folder = str(tmp_path / "run" / "eval" / "motions_t")
    calls = ((KIND_BATCH, ("a", "b"), (8, 4), (8, 4)), (KIND_MM, ("c",), (6,), (5,)))
    header = {**_header(seed=7), "replications": 1}
    _, motions = _save(folder, calls, seed=7, header=header)
    source = replay_source(_cfg(folder), _DEFAULTS.get)
    source.hooks.begin(7)
    source.produce(KIND_BATCH, _batch())
    motion, lengths = source.produce(KIND_MM, _batch(("c",), (6,)))
    assert lengths.tolist() == [5] and torch.equal(motion[0, :5], motions[1][0, :5])
    source.hooks.end(7)


def test_replay_source_refuses_generation_flags_and_contradicting_settings(tmp_path):
    folder = _saved_run(tmp_path)
    with pytest.raises(ValueError, match="--cfg"):
        replay_source(_cfg(folder, cfg=4.5), _DEFAULTS.get)
    with pytest.raises(ValueError, match="--split is test, but the motions"):
        replay_source(_cfg(folder, split="test", seed=9), lambda d: "val" if d == "split" else _DEFAULTS.get(d))
    with pytest.raises(ValueError, match="--dataset_name 'kit'"):
        replay_source(_cfg(folder, dataset_name="kit"), _DEFAULTS.get)
    cfg = _cfg(folder, dataset_name="synthetic", seed=7)  # agreeing values are fine
    replay_source(cfg, _DEFAULTS.get)
    assert cfg.seed == 7


def test_replay_source_honours_an_explicit_replication_count_and_names_missing_seeds(tmp_path):
    folder = _saved_run(tmp_path, seeds=(7, 8, 9))
    cfg = _cfg(folder, replications=3)
    replay_source(cfg, _DEFAULTS.get)
    assert cfg.replications == 3
    with pytest.raises(SavedMotionsError, match=r"replication seed\(s\) \[10, 11\] of 5"):
        replay_source(_cfg(folder, replications=5), _DEFAULTS.get)


def test_per_call_arrays_of_different_lengths_are_refused_at_begin(tmp_path):
    folder = str(tmp_path / "m")
    _save(folder)
    _rewrite_seed(folder, width=np.array([8, 8]))
    with pytest.raises(SavedMotionsError, match="hold one entry per call; got 1, 1 and 2"):
        MotionReplay(folder).begin(1)


def test_a_replication_recorded_without_calls_replays(tmp_path):
    """A replication that made no generator call is saved with frames of the statistics' width, so the replay
    reads it back."""
    folder = str(tmp_path / "m")
    recorder = MotionRecorder(folder, _header(), np.zeros(D), np.ones(D))
    recorder.begin(1)
    recorder.end(1)
    replay = MotionReplay(folder)
    replay.begin(1)
    replay.end(1)


def test_empty_float_call_arrays_are_read_as_no_calls(tmp_path):
    """Empty arrays pass the integer check whatever their dtype (np.array([]) is float), and are then read as a
    replication of no call rather than failing in numpy."""
    folder = str(tmp_path / "m")
    _save(folder)
    np.savez(seed_file(folder, 1), kinds=np.array([]), rows=np.array([]), width=np.array([]),
             captions=np.array([], dtype=np.str_), m_lengths=np.array([]), lengths=np.array([]),
             frames=np.zeros((0, D), np.float32))
    replay = MotionReplay(folder)
    replay.begin(1)
    replay.end(1)
