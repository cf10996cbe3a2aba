"""evaluation_MARDM.py end to end: tiny untrained generator and evaluator on the synthetic test split."""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil

import numpy as np
import pytest
import torch
from test_generation import make_runs

import evaluation_MARDM
from options.config import parse_with_config
from options.eval_generator_options import get_evaluation_generator_parser
from utils.checkpoint import CheckpointError, file_sha256
from utils.dataset_specs import get_dataset_spec
from utils.eval_protocol import _drop_rows
from utils.evaluator import build_evaluator, save_evaluator
from utils.generation import MotionGenerator
from utils.normalization import DatasetError, eval_normalization, load_mean_std
from utils.word_vectorizer import LearnedVocab


@pytest.fixture(scope="module")
def setup(tmp_path_factory, synthetic_root):
    ckdir = str(tmp_path_factory.mktemp("eval") / "checkpoints")
    paths = make_runs(ckdir, synthetic_root)
    spec = get_dataset_spec("synthetic", synthetic_root)
    mean, std = eval_normalization(*load_mean_std(spec, synthetic_root), spec)
    torch.manual_seed(0)
    vocab = LearnedVocab.from_split(synthetic_root, "train", dim_word=8)
    evaluator = build_evaluator("synthetic", mean, std, word_vectors=vocab, sizes="tiny", data_root=synthetic_root)
    save_evaluator(os.path.join(ckdir, "synthetic", "text_mot_match", "model", "finest.tar"), evaluator)
    return ckdir, paths, synthetic_root, evaluator


class CallLog:
    """Counts MotionGenerator.generate calls and keeps their settings and last output."""

    def __init__(self, monkeypatch) -> None:
        self.calls: list[dict] = []
        self.last = None
        original = MotionGenerator.generate

        def generate(gen, texts, lengths_frames=None, **kwargs):
            self.calls.append({"n": len(texts), **kwargs})
            self.last = original(gen, texts, lengths_frames, **kwargs)
            return self.last

        monkeypatch.setattr(MotionGenerator, "generate", generate)


def run_eval(ckdir: str, data_root: str, *argv: str) -> dict:
    args = parse_with_config(get_evaluation_generator_parser(),
                             ["--name", "fsq_gen", "--dataset_name", "synthetic", "--checkpoints_dir", ckdir,
                              "--data_root", data_root, "--device", "cpu", "--replications", "2",
                              "--eval_batch_size", "8", "--time_steps", "2", *argv])
    return evaluation_MARDM.main(args)


def test_mm_flags_really_turn_it_off():
    parser = get_evaluation_generator_parser()
    base = ["--name", "x", "--dataset_name", "synthetic"]
    assert parse_with_config(parser, base).cal_mm is True
    assert parse_with_config(get_evaluation_generator_parser(), [*base, "--cal_mm"]).cal_mm is True
    assert parse_with_config(get_evaluation_generator_parser(), [*base, "--no_mm"]).cal_mm is False
    assert parse_with_config(get_evaluation_generator_parser(), [*base, "--no-cal_mm"]).cal_mm is False


def test_too_few_mm_repeats_fail_before_anything_loads(tmp_path):
    with pytest.raises(ValueError, match="--mm_repeats 5: multimodality compares 10 pairs"):
        run_eval(str(tmp_path / "nothing_here"), str(tmp_path), "--mm_repeats", "5")


def test_a_negative_seed_fails_by_name_before_anything_loads(tmp_path):
    with pytest.raises(ValueError, match="--seed -1: .* must be >= 0"):
        run_eval(str(tmp_path / "nothing_here"), str(tmp_path), "--seed", "-1")


def test_no_mm_run_writes_reports_and_renormalises(setup, monkeypatch):
    ckdir, paths, data_root, evaluator = setup
    log = CallLog(monkeypatch)
    checked = []
    original_evaluate = evaluation_MARDM.evaluate

    def evaluate(ev, loader, motion_fn, *args, **kwargs):
        def checked_motion_fn(batch):
            motion, lengths = motion_fn(batch)
            out = log.last
            expected = (out.features - torch.as_tensor(ev.mean)) / torch.as_tensor(ev.std)
            for i, n in enumerate(lengths.tolist()):
                torch.testing.assert_close(motion[i, :n], expected[i, :n], rtol=1e-4, atol=1e-4)
            assert torch.equal(lengths, batch.m_lengths)  # GT lengths are whole tokens already
            checked.append(len(lengths))
            return motion, lengths

        return original_evaluate(ev, loader, checked_motion_fn, *args, **kwargs)

    monkeypatch.setattr(evaluation_MARDM, "evaluate", evaluate)
    copy = os.path.join(ckdir, "elsewhere", "result.json")
    result = run_eval(ckdir, data_root, "--no_mm", "--cfg", "3", "--temperature", "0.7", "--report_json", copy)

    assert len(log.calls) == 4 == len(checked)  # 2 replications x 2 batches of 8, no multimodality repeats
    assert all(c == {"n": 8, "time_steps": 2, "cfg": 3.0, "temperature": 0.7, "snap": True} for c in log.calls)
    eval_dir = os.path.join(ckdir, "synthetic", "fsq_gen", "eval")
    tag = "latest_ema_ts2_cfg3_temp0.7_nomm_eb8"
    with open(os.path.join(eval_dir, f"eval_{tag}.json")) as f:
        report = json.load(f)
    with open(os.path.join(eval_dir, f"eval_{tag}_replications.jsonl")) as f:
        rows = [json.loads(line) for line in f]
    with open(copy) as f:
        assert json.load(f) == report  # --report_json: the same result, and the file names do not change
    assert os.path.isfile(os.path.join(eval_dir, "eval.log"))
    assert [row["seed"] for row in rows] == [3407, 3408]
    assert all(row["metrics"]["multimodality"] is None and math.isfinite(row["metrics"]["fid"]) for row in rows)
    metrics = report["protocol"]["metrics"]
    assert "multimodality" not in metrics and set(metrics) >= {"fid", "diversity", "top1", "matching_score"}
    assert report["checkpoint_sha256"] == file_sha256(paths["fsq_gen"]) == result["checkpoint_sha256"]
    assert report["generator"]["weights"] == "ema"
    assert report["sampling"] == {"time_steps": 2, "cfg": 3.0, "temperature": 0.7, "snap": True,
                                  "lengths": "GT (m_length // unit_length tokens)", "unit_length": 4}
    proto = report["protocol"]["meta"]["protocol"]
    assert proto["seeds"] == [3407, 3408] and proto["multimodality"] is None
    assert proto["evaluator"]["source"] == evaluator.source and proto["evaluator"]["sha256"]


def test_multimodality_is_on_by_default_and_no_snap_is_honoured(setup, monkeypatch):
    ckdir, _, data_root, _ = setup
    log = CallLog(monkeypatch)
    result = run_eval(ckdir, data_root, "--mm_batches", "1", "--mm_repeats", "11", "--no_snap", "--no_gt_cache")
    assert len(log.calls) == 2 * (11 + 1)  # per replication: batch 0 eleven times, batch 1 once
    assert all(c["snap"] is False and c["cfg"] == 4.5 and c["temperature"] == 1.0 for c in log.calls)
    mm = result["protocol"]["metrics"]["multimodality"]
    assert np.isfinite(mm["mean"]) and mm["mean"] > 0
    eval_dir = os.path.join(ckdir, "synthetic", "fsq_gen", "eval")
    assert os.path.isfile(os.path.join(eval_dir, "eval_latest_ema_ts2_cfg4.5_nosnap_eb8_mm1x11.json"))


def test_protocol_settings_and_moved_runs_keep_their_own_files(setup, tmp_path):
    """An evaluation under another seed or split writes its own files, and a --ckpt stored in another run folder
    writes into that folder, not into the run of the same name under --checkpoints_dir."""
    ckdir, paths, data_root, _ = setup
    eval_dir = os.path.join(ckdir, "synthetic", "fsq_gen", "eval")
    run_eval(ckdir, data_root, "--no_mm", "--replications", "1")
    run_eval(ckdir, data_root, "--no_mm", "--replications", "1", "--seed", "7")
    base, seeded = (os.path.join(eval_dir, f"eval_latest_ema_ts2_cfg4.5_nomm{s}_eb8_replications.jsonl")
                    for s in ("", "_seed7"))
    for path, seed in ((base, 3407), (seeded, 7)):
        with open(path) as f:
            assert [json.loads(line)["seed"] for line in f] == [seed]

    moved = tmp_path / "elsewhere" / "synthetic" / "fsq_gen"
    shutil.copytree(os.path.dirname(os.path.dirname(paths["fsq_gen"])), moved, ignore=shutil.ignore_patterns("eval"))
    evaluation_MARDM.main(parse_with_config(get_evaluation_generator_parser(), [
        "--ckpt", str(moved / "model" / "latest.tar"), "--checkpoints_dir", ckdir, "--data_root", data_root,
        "--device", "cpu", "--replications", "1", "--eval_batch_size", "8", "--time_steps", "2", "--no_mm",
        "--seed", "11"]))
    assert (moved / "eval" / "eval_latest_ema_ts2_cfg4.5_nomm_seed11_eb8.json").is_file()
    assert not os.path.exists(os.path.join(eval_dir, "eval_latest_ema_ts2_cfg4.5_nomm_seed11_eb8.json"))


def test_a_fresh_start_keeps_other_evaluations_lines(tmp_path):
    path = tmp_path / "eval_x_replications.jsonl"
    rows = [{"eval_key": "a", "seed": 1}, {"eval_key": "b", "seed": 1}, {"eval_key": "a", "seed": 2}]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows) + '{"eval_key": "b", "se')  # a torn last line
    assert _drop_rows(str(path), "a") == 2
    assert [json.loads(line) for line in path.read_text().splitlines()] == [{"eval_key": "b", "seed": 1}]


def test_another_evaluator_writes_its_own_files(setup, tmp_path):
    ckdir, _, data_root, evaluator = setup
    other = tmp_path / "official" / "text_mot_match" / "model" / "finest.tar"
    torch.manual_seed(1)
    vocab = LearnedVocab.from_split(data_root, "train", dim_word=8)
    save_evaluator(str(other), build_evaluator("synthetic", evaluator.mean, evaluator.std, word_vectors=vocab,
                                               sizes="tiny", data_root=data_root))
    eval_dir = os.path.join(ckdir, "synthetic", "fsq_gen", "eval")
    own = run_eval(ckdir, data_root, "--no_mm", "--replications", "1", "--seed", "5")
    theirs = run_eval(ckdir, data_root, "--no_mm", "--replications", "1", "--seed", "5",
                      "--evaluator_dir", str(tmp_path / "official"))
    stem = "eval_latest_ema_ts2_cfg4.5_nomm_seed5_eb8"
    tagged = f"{stem}_ev{file_sha256(str(other))[:8]}"
    for name, result in ((stem, own), (tagged, theirs)):
        with open(os.path.join(eval_dir, f"{name}.json")) as f:
            assert json.load(f)["protocol"]["metrics"] == json.loads(json.dumps(result["protocol"]["metrics"]))
    assert theirs["protocol"]["meta"]["protocol"]["evaluator"]["path"] == os.path.abspath(other)
    assert own["protocol"]["metrics"]["fid"] != theirs["protocol"]["metrics"]["fid"]
    # Naming the default evaluator explicitly is the same evaluation, under the same name.
    run_eval(ckdir, data_root, "--no_mm", "--replications", "1", "--seed", "5", "--evaluator_dir",
             os.path.join(ckdir, "synthetic", "text_mot_match"))
    assert sorted(n for n in os.listdir(eval_dir) if n.startswith(stem) and n.endswith(".json")) == \
        [f"{stem}.json", f"{tagged}.json"]


# ---------------------------------------------------------------------------------------------------------------------
# Generate once, score many
# ---------------------------------------------------------------------------------------------------------------------

def rescore(ckdir: str, data_root: str, folder: str, *argv: str) -> dict:
    args = parse_with_config(get_evaluation_generator_parser(),
                             ["--from_motions", folder, "--checkpoints_dir", ckdir, "--data_root", data_root,
                              "--device", "cpu", *argv])
    return evaluation_MARDM.main(args)


def other_evaluator(tmp_path, data_root: str, evaluator) -> str:
    path = tmp_path / "official" / "text_mot_match" / "model" / "finest.tar"
    torch.manual_seed(1)
    vocab = LearnedVocab.from_split(data_root, "train", dim_word=8)
    save_evaluator(str(path), build_evaluator("synthetic", evaluator.mean, evaluator.std, word_vectors=vocab,
                                              sizes="tiny", data_root=data_root))
    return str(tmp_path / "official")


def test_saved_motions_rescore_to_the_bit_without_the_generator(setup, monkeypatch, tmp_path):
    ckdir, paths, data_root, evaluator = setup
    eval_dir = os.path.join(ckdir, "synthetic", "fsq_gen", "eval")
    saved = run_eval(ckdir, data_root, "--mm_batches", "1", "--mm_repeats", "11", "--seed", "21", "--save_motions")
    tag = "latest_ema_ts2_cfg4.5_seed21_eb8_mm1x11"
    folder = os.path.join(eval_dir, f"motions_{tag}")
    assert saved["motions_saved"] == folder
    assert sorted(os.listdir(folder)) == ["motions.json", "seed21.npz", "seed22.npz", "statistics.npz"]
    with np.load(os.path.join(folder, "seed21.npz")) as z:
        assert z["kinds"].tolist() == [1] * 11 + [0]  # batch 0 repeated 11 times, then batch 1
        assert z["rows"].tolist() == [8] * 12 and z["frames"].shape == (int(z["lengths"].sum()), 263)

    log = CallLog(monkeypatch)
    again = rescore(ckdir, data_root, folder)
    assert log.calls == []  # nothing generated
    assert again["protocol"]["metrics"] == saved["protocol"]["metrics"]  # exact: same motion, same evaluator
    rows = [[r["metrics"] for r in result["protocol"]["replications"]] for result in (again, saved)]
    assert rows[0] == rows[1]
    assert again["motions_from"] == folder and again["checkpoint_sha256"] == file_sha256(paths["fsq_gen"])
    assert again["sampling"] == saved["sampling"] and not {"name", "ckpt", "cfg", "time_steps"} & set(again["config"])
    key = saved["protocol"]["meta"]["protocol"]["eval_key"]
    assert again["protocol"]["meta"]["protocol"]["eval_key"] == key  # the same evaluation: --is_continue mixes them
    with open(os.path.join(eval_dir, f"eval_{tag}.json")) as f:
        assert json.load(f)["motions_from"] == folder

    # Under another evaluator: the scores of a direct evaluation with it (generation is a function of the seed),
    # written to that evaluator's own files.
    official = other_evaluator(tmp_path, data_root, evaluator)
    theirs = rescore(ckdir, data_root, folder, "--evaluator_dir", official, "--replications", "1")
    assert log.calls == []
    monkeypatch.undo()
    direct = run_eval(ckdir, data_root, "--mm_batches", "1", "--mm_repeats", "11", "--seed", "21",
                      "--replications", "1", "--evaluator_dir", official)
    assert theirs["protocol"]["metrics"] == direct["protocol"]["metrics"]
    assert theirs["protocol"]["metrics"]["fid"] != saved["protocol"]["replications"][0]["metrics"]["fid"]
    ev = file_sha256(os.path.join(official, "text_mot_match", "model", "finest.tar"))[:8]
    assert os.path.isfile(os.path.join(eval_dir, f"eval_{tag}_ev{ev}.json"))


def test_saved_motions_refuse_what_they_cannot_answer(setup, tmp_path):
    ckdir, _, data_root, _ = setup
    run_eval(ckdir, data_root, "--no_mm", "--seed", "31", "--replications", "1", "--save_motions")
    folder = os.path.join(ckdir, "synthetic", "fsq_gen", "eval", "motions_latest_ema_ts2_cfg4.5_nomm_seed31_eb8")
    for flags, named in ((("--cfg", "3", "--time_steps", "4"), "--time_steps, --cfg"), (("--ema",), "--no_ema/--ema"),
                         (("--mm_sampling", "categorical"), "--mm_sampling")):
        with pytest.raises(ValueError, match=f"{named} choose how motion is generated"):
            rescore(ckdir, data_root, folder, *flags)
    with pytest.raises(ValueError, match="--seed is 5, but the motions .* were generated with 31"):
        rescore(ckdir, data_root, folder, "--seed", "5")
    with pytest.raises(ValueError, match=r"no saved motions for replication seed\(s\) \[32\] of 2"):
        rescore(ckdir, data_root, folder, "--replications", "2")
    with pytest.raises(ValueError, match="no motions.json; expected a folder written by evaluation_MARDM.py"):
        rescore(ckdir, data_root, str(tmp_path))

    # Motions made for other crops (here: their GT lengths altered) are not scored against these.
    copy = tmp_path / "tampered"
    shutil.copytree(folder, copy)
    with np.load(copy / "seed31.npz") as z:
        arrays = dict(z)
    arrays["m_lengths"] = arrays["m_lengths"] + 4
    np.savez(copy / "seed31.npz", **arrays)
    with pytest.raises(ValueError, match="seed31.npz: call 0 .*saved for other captions or GT lengths"):
        rescore(ckdir, data_root, str(copy))


def test_saved_motions_honour_flags_typed_at_their_default(setup):
    """A protocol flag typed on the command line is the user's request even at its default value: it is checked
    against the saved run, never silently replaced by the saved run's setting."""
    ckdir, _, data_root, _ = setup
    run_eval(ckdir, data_root, "--no_mm", "--seed", "61", "--replications", "1", "--save_motions")
    folder = os.path.join(ckdir, "synthetic", "fsq_gen", "eval", "motions_latest_ema_ts2_cfg4.5_nomm_seed61_eb8")
    with pytest.raises(ValueError, match=r"no saved motions for replication seed\(s\) \[62, .*\] of 20"):
        rescore(ckdir, data_root, folder, "--replications", "20")
    with pytest.raises(ValueError, match="--seed is 3407, but the motions .* were generated with 61"):
        rescore(ckdir, data_root, folder, "--seed", "3407")
    with pytest.raises(ValueError, match="--which_epoch choose how motion is generated"):
        rescore(ckdir, data_root, folder, "--which_epoch", "latest")
    assert rescore(ckdir, data_root, folder)["protocol"]["meta"]["protocol"]["replications"] == 1


def test_saved_motions_honour_preset_values_at_their_default(setup, tmp_path):
    """A protocol setting written in the --config preset is the user's request even at the flag's default value, as
    when typed: it is checked against the saved run (the error names the preset), never silently replaced."""
    ckdir, _, data_root, _ = setup
    run_eval(ckdir, data_root, "--no_mm", "--seed", "62", "--replications", "1", "--save_motions")
    folder = os.path.join(ckdir, "synthetic", "fsq_gen", "eval", "motions_latest_ema_ts2_cfg4.5_nomm_seed62_eb8")
    preset = tmp_path / "rescore.yaml"
    preset.write_text("replications: 20\n")
    with pytest.raises(ValueError, match=r"no saved motions for replication seed\(s\) \[63, .*\] of 20"):
        rescore(ckdir, data_root, folder, "--config", str(preset))
    preset.write_text("seed: 3407\n")
    with pytest.raises(ValueError, match=rf"--seed \(seed: 3407 in {preset}\) is 3407, but the motions .* were "
                                         rf"generated with 62"):
        rescore(ckdir, data_root, folder, "--config", str(preset))
    preset.write_text("which_epoch: latest\n")
    with pytest.raises(ValueError, match=rf"--which_epoch \(which_epoch: latest in {preset}\) choose how motion"):
        rescore(ckdir, data_root, folder, "--config", str(preset))


def test_a_resave_replaces_another_evaluations_motions(tmp_path, caplog):
    from utils.datasets import EvalBatch
    from utils.saved_motions import MotionRecorder, MotionReplay, make_header

    def header(sha: str) -> dict:
        return make_header(dataset="synthetic", split="test", seed=1, eval_batch_size=2, multimodality=None, tag="t",
                           which="latest", meta={"checkpoint_sha256": sha})

    batch = EvalBatch(torch.zeros(2, 1, 1), torch.zeros(2, 1, 1), ["a", "b"], torch.tensor([2, 1]),
                      torch.zeros(2, 8, 3), torch.tensor([8, 4]), ["", ""])
    motion = torch.randn(2, 8, 3)
    folder = str(tmp_path / "motions_t")
    recorder = MotionRecorder(folder, header("aaa"), np.zeros(3), np.ones(3))
    recorder.begin(1)
    recorder.record(0, batch, motion, torch.tensor([8, 4]))
    recorder.end(1)
    replay = MotionReplay(folder)
    replay.begin(1)
    back, lengths = replay.call(0, batch)
    assert torch.equal(back[0], motion[0]) and torch.equal(back[1, :4], motion[1, :4]) and not back[1, 4:].any()
    assert lengths.tolist() == [8, 4]
    replay.end(1)

    MotionRecorder(folder, header("aaa"), np.zeros(3), np.ones(3))  # the same evaluation keeps its files
    assert os.path.isfile(os.path.join(folder, "seed1.npz"))
    MotionRecorder(folder, header("bbb"), np.zeros(3), np.ones(3))  # a new checkpoint's: the old motions go
    assert not os.path.exists(os.path.join(folder, "seed1.npz"))
    assert "checkpoint_sha256 differs" in caplog.text


def save_one_call(folder: str):
    """Save replication seed 1 of one batch's motion (2 rows of 8 and 4 frames, D = 3) in ``folder``; its batch."""
    from utils.datasets import EvalBatch
    from utils.saved_motions import MotionRecorder, make_header

    header = make_header(dataset="synthetic", split="test", seed=1, eval_batch_size=2, multimodality=None, tag="t",
                         which="latest", meta={})
    recorder = MotionRecorder(folder, header, np.zeros(3), np.ones(3))
    recorder.begin(1)
    batch = EvalBatch(torch.zeros(2, 1, 1), torch.zeros(2, 1, 1), ["a", "b"], torch.tensor([2, 1]),
                      torch.zeros(2, 8, 3), torch.tensor([8, 4]), ["", ""])
    recorder.record(0, batch, torch.randn(2, 8, 3), torch.tensor([8, 4]))
    recorder.end(1)
    return batch


def test_saved_motions_with_statistics_of_another_width_name_the_files(tmp_path):
    from utils.saved_motions import MotionReplay

    folder = str(tmp_path / "motions_t")
    save_one_call(folder)
    np.savez(os.path.join(folder, "statistics.npz"), mean=np.zeros(4, np.float32), std=np.ones(4, np.float32))
    with pytest.raises(ValueError, match=r"seed1.npz: 'frames' has shape \(12, 3\), but .*statistics.npz "
                                         r"holds 4-dim statistics; expected \(F, 4\)"):
        MotionReplay(folder).begin(1)
    np.savez(os.path.join(folder, "statistics.npz"), mean=np.zeros(3, np.float32), std=np.ones(2, np.float32))
    with pytest.raises(ValueError, match=r"statistics.npz: expected 'mean' and 'std' of one shape \(D,\)"):
        MotionReplay(folder)


@pytest.mark.parametrize("change, message", [
    ({"kinds": np.array([0, 0], np.int8)}, r"'kinds', 'rows' and 'width' hold one entry per call; got 2, 1 and 1"),
    ({"width": np.array([], np.int64)}, r"'kinds', 'rows' and 'width' hold one entry per call; got 1, 1 and 0"),
    ({"width": np.array([6], np.int64)}, r"'lengths' holds 8 for row 0, but the 'width' of its call is 6"),
    ({"lengths": np.array([8, -1], np.int64)}, r"'lengths' holds -1 for row 1, .*expected 0 to the width"),
    ({"rows": np.array(2, np.int64)}, r"'rows' has shape \(\); expected one entry per call"),
    ({"lengths": np.array([8.0, 4.0])}, r"'lengths' holds float64; expected integers")])
def test_a_seed_file_with_arrays_that_disagree_names_the_file_and_the_field(tmp_path, change, message):
    from utils.saved_motions import MotionReplay, SavedMotionsError

    folder = str(tmp_path / "motions_t")
    batch = save_one_call(folder)
    path = os.path.join(folder, "seed1.npz")
    with np.load(path) as z:
        arrays = {name: z[name] for name in z.files}
    np.savez(path, **{**arrays, **change})
    with pytest.raises(SavedMotionsError, match=r"seed1\.npz: " + message):
        replay = MotionReplay(folder)
        replay.begin(1)
        replay.call(0, batch)
        replay.end(1)


def test_resumed_replications_without_saved_motions_are_named(setup, caplog):
    ckdir, _, data_root, _ = setup
    run_eval(ckdir, data_root, "--no_mm", "--seed", "41", "--replications", "1")
    result = run_eval(ckdir, data_root, "--no_mm", "--seed", "41", "--is_continue", "--save_motions")
    assert sorted(os.listdir(result["motions_saved"])) == ["motions.json", "seed42.npz", "statistics.npz"]
    assert "replication seed(s) [41] were reused from the JSONL file" in caplog.text


# ---------------------------------------------------------------------------------------------------------------------
# Under another dataset's evaluator (--eval_dataset)
# ---------------------------------------------------------------------------------------------------------------------

@contextlib.contextmanager
def evaluator_inputs():
    """Records every (motion, lengths) that evaluation_MARDM.py hands to the protocol."""
    inputs = []
    original = evaluation_MARDM.evaluate

    def evaluate(ev, loader, motion_fn, *args, **kwargs):
        def recorded(batch):
            motion, lengths = motion_fn(batch)
            inputs.append((motion.clone(), lengths.clone()))
            return motion, lengths

        return original(ev, loader, recorded, *args, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(evaluation_MARDM, "evaluate", evaluate)
        yield inputs


@pytest.fixture(scope="module")
def essential_run(setup, tmp_path_factory):
    """A t2m_67 evaluator over the synthetic data, and the synthetic (263-dim) generator scored with it (seed 51,
    motions saved; with the motions it handed to the protocol), plus those motions cut to their first 67 dims: the
    saved motions of a 67-dim generator."""
    ckdir, _, data_root, _ = setup
    spec = get_dataset_spec("t2m_67", data_root)
    mean, std = eval_normalization(*load_mean_std(spec, data_root), spec)
    torch.manual_seed(2)
    vocab = LearnedVocab.from_split(data_root, "train", dim_word=8)
    save_evaluator(os.path.join(ckdir, "t2m_67", "text_mot_match", "model", "finest.tar"),
                   build_evaluator("t2m_67", mean, std, word_vectors=vocab, sizes="tiny", data_root=data_root))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the tests (conftest): a BLAS call's last bits depend on its thread count
    try:
        with evaluator_inputs() as inputs:
            result = run_eval(ckdir, data_root, "--no_mm", "--seed", "51", "--replications", "1", "--eval_dataset",
                              "t2m_67", "--save_motions")
    finally:
        torch.set_num_threads(threads)
    sliced = str(tmp_path_factory.mktemp("t2m_67_generator") / "eval" / "motions_sliced")
    shutil.copytree(result["motions_saved"], sliced)
    for name in ("seed51.npz", "statistics.npz"):
        with np.load(os.path.join(sliced, name)) as z:
            arrays = {k: z[k][..., :67] if k in ("frames", "mean", "std") else z[k] for k in z.files}
        np.savez(os.path.join(sliced, name), **arrays)
    with open(os.path.join(sliced, "motions.json")) as f:
        header = json.load(f)
    with open(os.path.join(sliced, "motions.json"), "w") as f:
        json.dump({**header, "dataset": "t2m_67"}, f)
    return result, inputs, sliced


def test_an_exact_conversion_scores_as_a_generator_of_the_sliced_motion(setup, essential_run):
    ckdir, _, data_root, _ = setup
    converted, converted_inputs, sliced = essential_run
    tag = "latest_ema_ts2_cfg4.5_nomm_seed51_eb8_ast2m_67"
    eval_dir = os.path.join(ckdir, "synthetic", "fsq_gen", "eval")
    with open(os.path.join(eval_dir, f"eval_{tag}.json")) as f:
        report = json.load(f)
    assert report["conversion"] == converted["conversion"] == {
        "from": "synthetic", "to": "t2m_67", "from_representation": "humanml3d", "to_representation": "essential",
        "exact": True, "description": "the essential subset: root and ric, the leading 4 + (J-1)*3 dims"}
    assert report["dataset"] == "t2m_67" and report["config"]["eval_dataset"] == "t2m_67"
    proto = report["protocol"]["meta"]["protocol"]
    assert proto["dataset"] == proto["evaluator"]["dataset"] == "t2m_67"
    assert proto["evaluator"]["path"].startswith(os.path.join(ckdir, "t2m_67", "text_mot_match"))
    # The generator's own motion is saved, under the tagged name, next to the native evaluations' folders.
    assert converted["motions_saved"] == os.path.join(eval_dir, f"motions_{tag}")
    with np.load(os.path.join(converted["motions_saved"], "seed51.npz")) as z:
        assert z["frames"].shape[1] == 263

    with evaluator_inputs() as native_inputs:
        native = rescore(ckdir, data_root, sliced)
    assert "conversion" not in native and native["dataset"] == "t2m_67"
    assert len(native_inputs) == len(converted_inputs) == 2
    for (motion, lengths), (native_motion, native_lengths) in zip(converted_inputs, native_inputs):
        assert motion.shape[-1] == 67 and torch.equal(motion, native_motion) and torch.equal(lengths, native_lengths)
    assert native["protocol"]["metrics"] == converted["protocol"]["metrics"]  # bit for bit


def test_saved_native_motions_are_converted_when_scored_again(setup, essential_run, monkeypatch):
    ckdir, _, data_root, _ = setup
    converted, converted_inputs, _ = essential_run
    log = CallLog(monkeypatch)
    with evaluator_inputs() as inputs:
        again = rescore(ckdir, data_root, converted["motions_saved"], "--eval_dataset", "t2m_67")
    assert log.calls == [] and len(inputs) == len(converted_inputs) == 2
    for (motion, lengths), (replayed, replayed_lengths) in zip(converted_inputs, inputs):
        assert torch.equal(motion, replayed) and torch.equal(lengths, replayed_lengths)
    assert again["protocol"]["metrics"] == converted["protocol"]["metrics"]
    assert again["conversion"] == converted["conversion"]
    assert again["protocol"]["meta"]["protocol"]["eval_key"] == converted["protocol"]["meta"]["protocol"]["eval_key"]
    tag = "latest_ema_ts2_cfg4.5_nomm_seed51_eb8_ast2m_67"
    with open(os.path.join(ckdir, "synthetic", "fsq_gen", "eval", f"eval_{tag}.json")) as f:
        assert json.load(f)["motions_from"] == converted["motions_saved"]


def test_a_lossy_conversion_is_recorded_warned_and_flagged(setup, essential_run, monkeypatch, caplog, capsys):
    """The 67-dim motions scored by the synthetic 263-dim evaluator, through joints."""
    from utils.representation import get_conversion
    from utils.saved_motions import MotionReplay

    ckdir, _, data_root, evaluator = setup
    _, _, sliced = essential_run
    conversion = get_conversion(get_dataset_spec("t2m_67", data_root), get_dataset_spec("synthetic", data_root))
    with np.load(os.path.join(sliced, "statistics.npz")) as z:
        mean, std = torch.as_tensor(z["mean"]), torch.as_tensor(z["std"])
    replayed, original_call = [], MotionReplay.call

    def call(replay, kind, batch):
        replayed.append(original_call(replay, kind, batch))
        return replayed[-1]

    monkeypatch.setattr(MotionReplay, "call", call)
    with evaluator_inputs() as inputs:
        result = rescore(ckdir, data_root, sliced, "--eval_dataset", "synthetic")
    assert len(inputs) == len(replayed) == 2
    for (motion, lengths), (saved, saved_lengths) in zip(inputs, replayed):
        raw, _ = conversion(saved * std + mean, saved_lengths)  # the saved 67 dims, as 263 for the evaluator
        assert motion.shape[-1] == 263 and torch.equal(lengths, saved_lengths)
        torch.testing.assert_close(motion, (raw - torch.as_tensor(evaluator.mean)) / torch.as_tensor(evaluator.std))
    assert math.isfinite(result["protocol"]["metrics"]["fid"]["mean"])
    assert result["conversion"] == {"from": "t2m_67", "to": "synthetic", "from_representation": "essential",
                                    "to_representation": "humanml3d", "exact": False,
                                    "description": conversion.conversion.description}
    assert "t2m_67 motion is scored by the synthetic evaluator through a lossy conversion" in caplog.text
    assert "scored as synthetic through the LOSSY conversion t2m_67 -> synthetic" in capsys.readouterr().out
    assert os.path.isfile(os.path.join(os.path.dirname(sliced), "eval_latest_ema_ts2_cfg4.5_nomm_seed51_eb8"
                                                                 "_assynthetic.json"))


def test_evaluations_across_datasets_are_refused_where_they_cannot_correspond(setup, essential_run, tmp_path):
    ckdir, _, data_root, _ = setup
    converted, _, _ = essential_run
    folder = converted["motions_saved"]
    with pytest.raises(ValueError, match=r"--eval_dataset motionmillion: its clips cannot be those of the generator's "
                                         r"dataset 'synthetic' \(fps 20 vs 30; text_fps 20 vs 30\)"):
        rescore(ckdir, data_root, folder, "--eval_dataset", "motionmillion")
    args = parse_with_config(get_evaluation_generator_parser(),  # each dataset at its registered folder
                             ["--from_motions", folder, "--checkpoints_dir", ckdir, "--eval_dataset", "t2m_67"])
    with pytest.raises(ValueError, match="its clips cannot be those of the generator's dataset 'synthetic'"):
        evaluation_MARDM.main(args)
    # A generator whose tokens are 2 frames long cannot be asked for the GT's multiples of 4.
    copy = tmp_path / "motions"
    shutil.copytree(folder, copy)
    with open(copy / "motions.json") as f:
        header = json.load(f)
    header["meta"]["sampling"]["unit_length"] = 2
    (copy / "motions.json").write_text(json.dumps(header))
    with pytest.raises(ValueError, match="GT lengths are multiples of 4 frames, but the generator makes tokens of 2"):
        rescore(ckdir, data_root, str(copy), "--eval_dataset", "t2m_67")


def test_the_heads_sampler_is_in_the_report_and_the_file_names(setup, tmp_path):
    """--head_solver / --head_steps reach the generator, are recorded in the report's sampling settings, and name
    the evaluation's files, so a run with another sampler never resumes or replaces the default one; saved motions
    refuse them, having been generated already."""
    ckdir, _, data_root, _ = setup
    report = run_eval(ckdir, data_root, "--no_mm", "--replications", "1", "--seed", "41", "--head_solver", "heun",
                      "--head_steps", "2")
    assert report["sampling"]["head_solver"] == "heun" and report["sampling"]["head_steps"] == 2
    eval_dir = os.path.join(ckdir, "synthetic", "fsq_gen", "eval")
    assert [name for name in os.listdir(eval_dir) if "_hs2_heun" in name and "seed41" in name]
    with pytest.raises(ValueError, match="--head_steps choose how motion is generated"):
        rescore(ckdir, data_root, str(tmp_path), "--head_steps", "3")


@pytest.mark.parametrize("extra", [["--evaluator_dir", "missing_evaluator"], ["--split", "nosuch"]],
                         ids=["evaluator", "split"])
def test_a_refused_evaluation_leaves_no_run_folder_behind(setup, tmp_path, extra):
    """A --ckpt evaluated under a new --name makes that run's folder only once the evaluator and the data load."""
    ckdir, paths, data_root, _ = setup
    extra = [extra[0], str(tmp_path / extra[1])] if extra[0] == "--evaluator_dir" else extra
    args = parse_with_config(get_evaluation_generator_parser(), [
        "--ckpt", paths["fsq_gen"], "--name", "refused", "--dataset_name", "synthetic", "--checkpoints_dir", ckdir,
        "--data_root", data_root, "--device", "cpu", "--replications", "1", "--eval_batch_size", "8",
        "--time_steps", "2", "--no_mm", "--save_motions", *extra])
    with pytest.raises((CheckpointError, DatasetError, FileNotFoundError)):
        evaluation_MARDM.main(args)
    assert not os.path.exists(os.path.join(ckdir, "synthetic", "refused"))
