"""Contracts of the evaluation's model-side helpers, the evaluation report, the HumanML3D-layout writers, CLIP's BPE
tokenizer and the scripts' error boundary that the other tests left open: what ``motion_fn`` may return, how
embedding calls are grouped and split, when the memo trusts a model, the report's table and JSON, split and statistics
files, exact token ids, and the one-line errors of ``run_script``."""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import re
import signal
from types import SimpleNamespace

import numpy as np
import pytest
import torch

import utils.dataset_io as dataset_io
from models.clip_tokenizer import CLIP_VOCAB_NAME, CLIPTokenizer, bytes_to_unicode
from utils.cli import RESUME_TRAINING, TRACEBACK_ENV, run_script
from utils.collectives import MainProcessFailed
from utils.dataset_io import (
    humanml3d_mean_std,
    keyed_order,
    keyed_rng,
    split_groups,
    write_mean_std,
    write_motion,
    write_split_files,
)
from utils.dataset_specs import DATASETS
from utils.datasets import EvalBatch
from utils.eval_report import EvalReport, MetricStat, checkpoint_info, format_report, write_report_json
from utils.model_embeddings import ModelMemo, checked_motion, embed_in_chunks, select_rows
from utils.motion_process import extract_features, recover_from_ric
from utils.run_dir import RunDir
from utils.stop_signals import Stopped
from utils.synthetic import synthesize_motion

EVALUATOR = SimpleNamespace(dim_pose=5, unit_length=4)


def _eval_batch(motion, lengths):
    b = motion.shape[0]
    return EvalBatch(torch.zeros(b, 3, 4), torch.zeros(b, 3, 2), [f"c{i}" for i in range(b)], torch.full((b,), 3),
                     motion, torch.as_tensor(lengths), [f"t{i}" for i in range(b)])


class RecordingEvaluator:
    """Embeds a row as (its first feature of frame 0, its length) and records the rows of every call."""
    def __init__(self):
        self.calls = []

    def get_motion_embeddings(self, motion, lengths, keep_input_order=False):
        self.calls.append(motion.shape[0])
        return torch.stack([motion[:, 0, 0], lengths.float()], dim=1)


# ----- utils/model_embeddings.py -------------------------------------------------------------------------------------

@pytest.mark.parametrize("out", [torch.zeros(2, 8, 5), (torch.zeros(2, 8, 5), torch.tensor([8, 8]), None)],
                         ids=["bare-tensor", "three-values"])
def test_motion_fn_must_return_motion_and_lengths(out):
    """A motion_fn returning anything but a (motion, lengths) pair is named as such, even a tensor of two rows."""
    batch = _eval_batch(torch.zeros(2, 8, 5), [8, 8])
    with pytest.raises(ValueError, match=r"motion_fn must return \(motion \(B, T, D\), lengths \(B,\)\)"):
        checked_motion(out, batch, EVALUATOR, "motion_fn")


@pytest.mark.parametrize("shape", [(3, 8, 5), (2, 8, 6), (2, 8)])
def test_motion_of_another_batch_size_or_width_is_refused_naming_the_shape(shape):
    batch = _eval_batch(torch.zeros(2, 8, 5), [8, 8])
    with pytest.raises(ValueError, match=r"expected \(2, T, 5\)"):
        checked_motion((torch.zeros(shape), torch.tensor([8, 8])), batch, EVALUATOR, "motion_fn")


def test_lengths_of_another_count_are_refused():
    batch = _eval_batch(torch.zeros(2, 8, 5), [8, 8])
    with pytest.raises(ValueError, match=r"lengths must be 2 values in \[4, 8\]"):
        checked_motion((torch.zeros(2, 8, 5), torch.tensor([8, 8, 8])), batch, EVALUATOR, "motion_fn")


def test_checked_motion_accepts_both_ends_of_the_length_range_and_returns_float32(tmp_path):
    """Lengths equal to the unit length and to the frame count are valid; float64 motion comes back float32, and the
    frame at each length is the first one zeroed."""
    batch = _eval_batch(torch.zeros(2, 8, 5), [8, 8])
    motion, lengths = checked_motion((torch.ones(2, 8, 5, dtype=torch.float64), [4, 8]), batch, EVALUATOR, "fn")
    assert motion.dtype == torch.float32 and lengths.dtype == torch.int64 and lengths.tolist() == [4, 8]
    assert motion[0, 3].eq(1).all() and motion[0, 4:].eq(0).all() and motion[1].eq(1).all()


def test_items_that_fill_max_rows_exactly_share_one_call_and_come_back_in_input_order():
    """Items of the same frame count are joined while the call stays within max_rows (equal counts); items of another
    frame count are never joined with them, and each item gets back its own rows whatever call it went to."""
    evaluator = RecordingEvaluator()
    items = [(torch.full((2, 8, 5), 1.0), torch.tensor([8, 4])), (torch.full((3, 12, 5), 2.0), torch.tensor([12] * 3)),
             (torch.full((2, 8, 5), 3.0), torch.tensor([4, 8])), (torch.full((1, 8, 5), 4.0), torch.tensor([8]))]
    out = embed_in_chunks(evaluator, items, max_rows=4)
    assert evaluator.calls == [4, 1, 3]
    assert [o.shape for o in out] == [(2, 2), (3, 2), (2, 2), (1, 2)]
    np.testing.assert_array_equal(out[0], [[1, 8], [1, 4]])
    np.testing.assert_array_equal(out[1], [[2, 12]] * 3)
    np.testing.assert_array_equal(out[2], [[3, 4], [3, 8]])
    np.testing.assert_array_equal(out[3], [[4, 8]])


def test_the_memo_tolerance_grows_with_the_size_of_the_embeddings():
    """Round-off of large embeddings (0.05 on values of 1000, within 1e-4 of their size) keeps the memo on; the first
    comparison marks the memo verified either way."""
    memo = ModelMemo()
    memo.embeddings["row"] = np.full(4, 1000.0, np.float32)
    memo.verify(["row", "new"], np.stack([np.full(4, 1000.05, np.float32), np.zeros(4, np.float32)]))
    assert memo.enabled and memo.verified and list(memo.embeddings) == ["row"]


def test_the_memo_stays_on_for_the_same_embeddings():
    memo = ModelMemo()
    memo.embeddings["row"] = np.full(4, 0.5, np.float32)
    memo.verify(["row"], np.full((1, 4), 0.5, np.float32))
    assert memo.enabled and memo.verified


def test_a_disabled_memo_gives_every_row_of_every_batch_its_own_key():
    """Without the memo, rows of different batches never share a key, even of identical content."""
    memo = ModelMemo.disabled()
    batch = _eval_batch(torch.zeros(3, 8, 5), [8, 8, 8])
    keys = memo.keys(batch, 0) + memo.keys(batch, 1)
    assert len(set(keys)) == 6 and not memo.enabled


def test_select_rows_takes_every_field_in_the_given_order():
    motion = torch.arange(3.0)[:, None, None].expand(3, 8, 5).clone()
    batch = _eval_batch(motion, [4, 8, 6])
    picked = select_rows(batch, [2, 0])
    assert picked.captions == ["c2", "c0"] and picked.tokens == ["t2", "t0"]
    assert picked.m_lengths.tolist() == [6, 4] and picked.motion[:, 0, 0].tolist() == [2.0, 0.0]


# ----- utils/eval_report.py ------------------------------------------------------------------------------------------

def _report(rows=3):
    return EvalReport(metrics={"matching_score": MetricStat(3.25, 0.125), "top1": MetricStat(0.5, 0.01)},
                      real={"top1": MetricStat(0.6, 0.02)}, rows=[{"replication": i} for i in range(rows)],
                      meta={"protocol": {"num_samples": 64, "split": "val", "batch_size": 32}})


def test_the_report_table_columns_start_two_spaces_after_the_longest_label():
    lines = format_report(_report(), title="run").splitlines()
    assert lines[0] == "run"
    label = "Matching score (MM-Dist)"
    start = len(label) + 2
    assert lines[1] == f"{'Metric':<{start}}{'Real':<22}{'Model':<22}"
    row = next(line for line in lines if line.startswith(label))
    assert row == f"{label}  {'-':<22}{'3.2500 ± 0.1250':<22}"
    assert lines[2] == "-" * (start + 44)


def test_the_checkpoint_info_is_the_absolute_path_and_the_file_digest(tmp_path, monkeypatch):
    (tmp_path / "net.tar").write_bytes(b"weights")
    monkeypatch.chdir(tmp_path)
    info = checkpoint_info("net.tar")
    assert info == {"checkpoint": str(tmp_path / "net.tar"),
                    "checkpoint_sha256": hashlib.sha256(b"weights").hexdigest()}


def test_the_report_json_is_indented_and_ends_with_a_newline(tmp_path):
    path = tmp_path / "report.json"
    write_report_json({"a": [1], "b": np.bool_(True), "c": object.__name__}, str(path))
    text = path.read_text()
    assert text.endswith("}\n") and text.startswith('{\n  "a": [\n')
    assert json.loads(text) == {"a": [1], "b": True, "c": "object"}


# ----- utils/dataset_io.py -------------------------------------------------------------------------------------------

def test_split_groups_takes_val_then_test_from_the_order_and_keeps_groups_whole():
    """20 groups: round(5%) = 1 group to val, round(15%) = 3 to test, the other 16 to train, in the order given; every
    list is sorted, train_val is train and val, all is every id."""
    groups = [[f"{g:02d}_a", f"{g:02d}_b"] for g in range(20)]
    order = list(range(19, -1, -1))
    splits = split_groups(groups, order)
    assert splits["val"] == ["19_a", "19_b"]
    assert splits["test"] == ["16_a", "16_b", "17_a", "17_b", "18_a", "18_b"]
    assert splits["train"] == [i for g in range(16) for i in groups[g]]
    assert splits["train_val"] == splits["train"] + splits["val"]
    assert splits["all"] == sorted(i for g in groups for i in g)


def test_split_lists_are_sorted_whatever_the_order_of_the_groups():
    groups = [["d"], ["c"], ["b"], ["a"], ["z", "e"]]
    splits = split_groups(groups, [0, 1, 2, 3, 4])
    assert splits == {"val": ["d"], "test": ["c"], "train": ["a", "b", "e", "z"],
                      "train_val": ["a", "b", "d", "e", "z"], "all": ["a", "b", "c", "d", "e", "z"]}


@pytest.mark.parametrize(("n", "sizes"), [(2, (0, 0, 2)), (3, (1, 1, 1)), (4, (1, 1, 2))])
def test_three_groups_give_val_and_test_one_each_and_fewer_leave_them_empty(n, sizes):
    splits = split_groups([[str(g)] for g in range(n)], list(range(n)))
    assert (len(splits["val"]), len(splits["test"]), len(splits["train"])) == sizes


def test_an_order_that_repeats_a_group_is_refused():
    with pytest.raises(ValueError, match="order must hold each of the 3 group indices once"):
        split_groups([["a"], ["b"], ["c"]], [0, 0, 2])


def test_keyed_order_is_a_seeded_shuffle_that_ignores_the_input_order():
    keys = [f"clip{i:02d}" for i in range(20)]
    ranked = [keys[i] for i in keyed_order(keys, 0)]
    assert sorted(ranked) == keys and ranked != keys
    assert [keys[::-1][i] for i in keyed_order(keys[::-1], 0)] == ranked
    assert [keys[i] for i in keyed_order(keys, 1)] != ranked


def test_keyed_rng_draws_depend_on_the_key_and_the_seed():
    draw = keyed_rng(0, "a").random(4)
    np.testing.assert_array_equal(keyed_rng(0, "a").random(4), draw)
    assert not np.array_equal(keyed_rng(0, "b").random(4), draw)
    assert not np.array_equal(keyed_rng(1, "a").random(4), draw)


def test_split_files_hold_one_id_per_line(tmp_path):
    write_split_files(str(tmp_path), {"train": ["b", "a"], "val": []})
    assert (tmp_path / "train.txt").read_text() == "b\na\n"
    assert (tmp_path / "val.txt").read_text() == ""


def test_statistics_are_over_every_frame_with_the_std_averaged_per_group_and_constant_groups_set_to_one(tmp_path,
                                                                                                    caplog):
    spec = DATASETS["synthetic"]
    rng = np.random.default_rng(0)
    clips = {"a": rng.normal(2.0, 3.0, (3, spec.file_dim)), "b": rng.normal(-1.0, 0.5, (1, spec.file_dim))}
    contacts = spec.layout[-1]
    os.makedirs(tmp_path / "new_joint_vecs")
    for name, x in clips.items():
        x[:, contacts.start:contacts.stop] = 1.0
        np.save(tmp_path / "new_joint_vecs" / f"{name}.npy", x.astype(np.float32))
    frames = np.concatenate([clips["a"], clips["b"]]).astype(np.float32).astype(np.float64)
    expected_std = frames.std(0)
    for group in spec.layout:
        expected_std[group.start:group.stop] = expected_std[group.start:group.stop].mean()
    expected_std[contacts.start:contacts.stop] = 1.0
    write_mean_std(str(tmp_path), ["a", "b"], spec)
    mean, std = np.load(tmp_path / "Mean.npy"), np.load(tmp_path / "Std.npy")
    assert mean.dtype == std.dtype == np.float32 and mean.shape == std.shape == (spec.file_dim,)
    np.testing.assert_allclose(mean, frames.mean(0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(std, expected_std, rtol=1e-5)
    assert contacts.name in caplog.text


def test_statistics_of_a_single_frame_are_refused(tmp_path):
    spec = DATASETS["synthetic"]
    np.save(tmp_path / "a.npy", np.zeros((1, spec.file_dim), np.float32))
    with pytest.raises(ValueError, match="from 1 frames"):
        humanml3d_mean_std([str(tmp_path / "a.npy")], spec)


def _joints():
    return synthesize_motion(np.random.default_rng([1234, 0]), "walk").joints[:30]


def test_write_motion_writes_features_joints_and_captions_under_the_ids_folders(tmp_path):
    joints = _joints()
    features = write_motion(str(tmp_path), "take/01", joints, ["a person walks#a/DET#0.0#0.0", "someone walks"],
                            fps=10.0)
    np.testing.assert_array_equal(features, extract_features(joints, fps=10.0))
    assert features.shape == (29, 263)
    np.testing.assert_array_equal(np.load(tmp_path / "new_joint_vecs" / "take" / "01.npy"), features)
    saved = np.load(tmp_path / "new_joints" / "take" / "01.npy")
    assert saved.dtype == np.float32 and saved.shape == (29, 22, 3)
    np.testing.assert_allclose(saved, recover_from_ric(features, 22), rtol=1e-5, atol=1e-5)
    assert (tmp_path / "texts" / "take" / "01.txt").read_text() == "a person walks#a/DET#0.0#0.0\nsomeone walks\n"


def test_features_with_one_non_finite_value_are_refused_naming_the_clip_before_any_file(tmp_path, monkeypatch):
    """The features are checked before anything is written: one NaN that feature extraction lets through (its own
    checks refuse non-finite joints) fails naming the clip."""

    def one_nan(joints, fps):
        features = extract_features(joints, fps=fps)
        features[3, 100] = np.nan
        return features

    monkeypatch.setattr(dataset_io, "extract_features", one_nan)
    with pytest.raises(ValueError, match="clip 'bad': feature extraction produced non-finite values"):
        dataset_io.write_motion(str(tmp_path), "bad", _joints(), ["x"])
    assert not (tmp_path / "new_joint_vecs").exists()


# ----- models/clip_tokenizer.py --------------------------------------------------------------------------------------

def _vocab(path, merges):
    with gzip.open(path, "wt", encoding="utf-8") as f:
        f.write("#version: 0.2\n" + "\n".join(merges) + "\n")
    return path


def test_a_word_of_several_pieces_gives_the_same_ids_every_time(tmp_path):
    """BPE results are remembered per word: the second caption holding "walker" splits it as the first did."""
    tok = CLIPTokenizer(_vocab(tmp_path / "v.txt.gz", ["w a", "l k", "wa lk", "e r</w>"]))
    first = tok.encode("walker")
    assert first == [tok.encoder["walk"], tok.encoder["er</w>"]]
    assert tok.encode("walker walker") == first + first
    assert tok(["walker", "walker"], 5).tolist() == [[tok.sot_token, *first, tok.eot_token, 0]] * 2


def test_a_caption_that_exactly_fills_the_context_keeps_every_token(tmp_path):
    tok = CLIPTokenizer(_vocab(tmp_path / "v.txt.gz", ["a b</w>"]))
    ab = tok.encoder["ab</w>"]
    assert tok(["ab ab ab"], 5).tolist() == [[tok.sot_token, ab, ab, ab, tok.eot_token]]
    assert tok(["ab ab ab ab"], 5).tolist() == [[tok.sot_token, ab, ab, ab, tok.eot_token]]


def test_contractions_match_case_insensitively_as_in_openais_pattern(tmp_path):
    """OpenAI compiles its pattern with IGNORECASE, so "'\u017f" (long s, which folds to "s") is one contraction
    pre-token ("'" not marked end of word), although lower-casing leaves the long s as it is."""
    tok = CLIPTokenizer(_vocab(tmp_path / "v.txt.gz", ["w a"]))
    bu = bytes_to_unicode()
    assert tok.encode("'\u017f") == [tok.encoder["'"], tok.encoder[bu[0xC5]], tok.encoder[bu[0xBF] + "</w>"]]


def test_a_folder_in_place_of_the_vocabulary_is_reported_as_missing(tmp_path):
    folder = tmp_path / CLIP_VOCAB_NAME
    folder.mkdir()
    with pytest.raises(FileNotFoundError, match=re.escape(f"CLIP BPE vocabulary not found: {folder}; expected "
                                                          f"{CLIP_VOCAB_NAME}")):
        CLIPTokenizer(folder)


def test_a_vocabulary_cut_off_mid_stream_is_refused_naming_it(tmp_path):
    full = _vocab(tmp_path / "full.txt.gz", [f"q{i} z" for i in range(2000)]).read_bytes()
    cut = tmp_path / "cut.txt.gz"
    cut.write_bytes(full[: len(full) // 2])
    with pytest.raises(ValueError, match=r"cut\.txt\.gz: not a readable gzip-compressed BPE vocabulary"):
        CLIPTokenizer(cut)


# ----- utils/cli.py --------------------------------------------------------------------------------------------------

@pytest.fixture()
def stop_handlers():
    """exit_stopped ignores SIGTERM/SIGHUP from then on: give the test process its handlers back."""
    saved = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGHUP)}
    yield
    for signum, handler in saved.items():
        signal.signal(signum, handler)


def test_a_stopped_run_with_a_checkpoint_says_how_to_resume_it(monkeypatch, tmp_path, capsys, stop_handlers):
    """A run that existed before (a resumed one, holding latest.tar) stopped by SIGTERM: nothing is removed, and the
    line says how the script goes on."""

    monkeypatch.delenv(TRACEBACK_ENV, raising=False)
    for name in ("WORLD_SIZE", "RANK", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    run = RunDir(str(tmp_path / "checkpoints"), "synthetic", "resumed")
    os.makedirs(run.model_dir)
    open(run.latest_path, "wb").close()

    def main():
        run.make_dirs()
        raise Stopped(signal.SIGTERM)

    with pytest.raises(SystemExit) as exit_info:
        run_script(main, prog="train_vq.py", resume=RESUME_TRAINING)
    assert exit_info.value.code == 128 + signal.SIGTERM
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert line == f"train_vq.py: stopped by SIGTERM; {RESUME_TRAINING}"
    assert os.path.isfile(run.latest_path)


def test_a_main_process_failure_is_reported_by_its_first_line(monkeypatch):
    monkeypatch.delenv(TRACEBACK_ENV, raising=False)

    def main():
        raise MainProcessFailed("the main process failed: ValueError: val.txt: empty split\nTraceback (most recent "
                                "call last):\n  File \"train_vq.py\", line 3")

    with pytest.raises(SystemExit) as exit_info:
        run_script(main, prog="train_vq.py")
    assert str(exit_info.value).splitlines()[0] == (
        "train_vq.py: error: the main process failed: ValueError: val.txt: empty split (see that process's error)")


@pytest.mark.parametrize("words", ["Connection reset by peer", "Broken pipe", "NCCL communicator was aborted"])
def test_every_kind_of_lost_peer_is_one_line_in_a_launch_of_several_processes(monkeypatch, words):
    monkeypatch.delenv(TRACEBACK_ENV, raising=False)
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")

    def main():
        raise RuntimeError(f"[gloo] {words}\nException raised from send")

    with pytest.raises(SystemExit) as exit_info:
        run_script(main, prog="train_vq.py")
    assert str(exit_info.value).splitlines()[0] == (
        f"train_vq.py: error: another process of this launch ended, so this one stops too (see that process's error; "
        f"here: [gloo] {words})")
