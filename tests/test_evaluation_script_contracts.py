"""evaluation_AE.py and evaluation_MARDM.py main(): what each step receives and what the result records, with the
loading, data and protocol steps replaced by fakes."""

from __future__ import annotations

import json
import os
from types import SimpleNamespace

import numpy as np
import pytest
import torch

import evaluation_AE
import evaluation_MARDM
from options.config import parse_with_config
from options.eval_generator_options import get_evaluation_generator_parser
from options.eval_options import get_evaluation_ae_parser
from utils.eval_data import EvalSplitTooSmall
from utils.eval_protocol import MM_BATCHES, MM_REPEATS, renormalize
from utils.eval_report import write_report_json
from utils.saved_motions import KIND_BATCH, KIND_MM

DIM = 4
TOK_MEAN, TOK_STD = np.full(DIM, 1.0, np.float32), np.full(DIM, 2.0, np.float32)
EV_MEAN, EV_STD = np.full(DIM, -3.0, np.float32), np.full(DIM, 0.5, np.float32)


class FakeReport:
    def to_dict(self):
        return {"fid": 1.5}


def fake_ae(monkeypatch, tmp_path, *, weights="raw", source_format="ours", kind="fsq", saved=None, body_part=None,
            skipped=None, protocol_tag="", split_too_small=False, eval_dataset_conversions=False):
    """Replace every heavy step of evaluation_AE.main by fakes; return the dict the fakes record their calls in."""
    calls: dict = {"written": {}}
    spec = SimpleNamespace(name="synthetic", fps=20, root=str(tmp_path / "data"), dim_pose=DIM)
    other = SimpleNamespace(name="other", fps=20, root=str(tmp_path / "data"), dim_pose=DIM)
    tokenizer = SimpleNamespace(weights=weights, source_format=source_format, kind=kind, model_name="FSQ_AE_Tiny",
                                model=SimpleNamespace(input_width=DIM), unit_length=4, statistics_format="ours",
                                num_quantizers=3, codebook_size=64, model_args={"a": 1})

    def load_tokenizer(path, **kwargs):
        calls["load_tokenizer"] = kwargs
        return tokenizer

    def load_checkpoint(path):
        calls["load_checkpoint"] = path
        return dict(saved or {})

    def body_part_columns(saved_, spec_, width, path):
        calls["saved"] = saved_
        return body_part, list(range(DIM))

    def recorded_statistics(tok, spec_, cfg, stats_evaluator):
        calls["stats_evaluator"] = stats_evaluator
        return TOK_MEAN, TOK_STD, "recorded"

    def reconstruction_data(spec_, split, mean, std, data_root):
        calls["data_stats"] = (mean, std)
        return "data"

    def reconstruction_pass(data, rebuild, tok, spec_, **kwargs):
        calls["pass"] = kwargs
        rebuild(torch.zeros(1, 4, DIM), torch.tensor([4]))
        return {"mpjpe": 0.25}

    def build_eval_loader(evaluator, spec_, split, **kwargs):
        if split_too_small:
            raise EvalSplitTooSmall("split test has 3 clips, fewer than a batch")
        return "loader"

    def reconstruct(tok, motion, cond=None):
        calls.setdefault("reconstruct", []).append(motion.clone())
        return motion, None

    def reconstruct_each(tok, motion, lengths, cond=None):
        calls.setdefault("reconstruct_each", []).append(motion.clone())
        return motion, None

    def evaluate(evaluator, loader, motion_fn, **kwargs):
        calls["evaluate"] = kwargs
        batch = SimpleNamespace(motion=torch.arange(2 * 4 * DIM, dtype=torch.float32).reshape(2, 4, DIM),
                                m_lengths=torch.tensor([4, 4]))
        calls["motion_fn"] = (batch.motion, motion_fn(batch))
        return FakeReport()

    def conversions(src, dst, unit_length, data_root):
        conv = SimpleNamespace(renormalize=lambda motion, lengths, *stats: (motion, lengths), to_dict=lambda: {"c": 1},
                               title_note=lambda log, what: "")
        return conv, conv

    def write_report_json(result, path):
        calls["written"][path] = result

    evaluator = SimpleNamespace(mean=EV_MEAN, std=EV_STD)
    protocol = SimpleNamespace(evaluator=evaluator, stats_evaluator="stats-evaluator", skipped=skipped,
                               tag=protocol_tag)
    fakes = {
        "setup_logging": lambda *a, **k: None,
        "get_dataset_spec": lambda name, root=None: other if name == "other" else spec,
        "load_tokenizer": load_tokenizer, "load_checkpoint": load_checkpoint, "body_part_columns": body_part_columns,
        "protocol_evaluator": lambda *a, **k: protocol, "recorded_statistics": recorded_statistics,
        "checkpoint_info": lambda path: {"checkpoint": path}, "load_mean_std": lambda s, r: (EV_MEAN, EV_STD),
        "reconstruction_data": reconstruction_data, "reconstruction_pass": reconstruction_pass,
        "build_eval_loader": build_eval_loader, "reconstruct": reconstruct, "reconstruct_each": reconstruct_each,
        "evaluate": evaluate, "tokenizer_conversions": conversions, "write_report_json": write_report_json,
        "reconstruction_table": lambda result: "", "format_report": lambda *a, **k: "",
        "evaluation_conditions": lambda *a: SimpleNamespace(names=("left", "right")),
    }
    if not eval_dataset_conversions:
        fakes.pop("tokenizer_conversions")
    for name, fake in fakes.items():
        monkeypatch.setattr(evaluation_AE, name, fake)
    return calls


def ae_main(tmp_path, *extra: str) -> dict:
    ckpt = tmp_path / "runs" / "synthetic" / "fsq" / "model" / "net_best_fid.tar"
    ckpt.parent.mkdir(parents=True, exist_ok=True)
    ckpt.touch()
    argv = ["--dataset_name", "synthetic", "--data_root", str(tmp_path / "data"), "--checkpoints_dir",
            str(tmp_path / "ck"), "--device", "cpu", "--ckpt", str(ckpt), *extra]
    return evaluation_AE.main(parse_with_config(get_evaluation_ae_parser(), argv))


def test_ae_result_records_split_seed_dataset_and_rates_in_a_file_named_by_the_tag(monkeypatch, tmp_path):
    """The result carries the split, the protocol's dataset, tokens per second and the protocol; its file name the
    weights, --per_motion and the split and seed; the same result also goes to --report_json."""
    calls = fake_ae(monkeypatch, tmp_path, weights="ema", protocol_tag="_evabcd1234")
    report_json = str(tmp_path / "out.json")
    result = ae_main(tmp_path, "--split", "val", "--seed", "7", "--per_motion", "--report_json", report_json)
    assert result["split"] == "val" and result["seed"] == 7
    assert result["eval_dataset"] == "synthetic" and result["conversion"] is None
    assert result["tokens_per_second"] == 5.0 and result["layers"] == 1
    assert result["protocol"] == {"fid": 1.5} and result["protocol_skipped"] is None
    eval_dir = tmp_path / "runs" / "synthetic" / "fsq" / "eval"
    out = str(eval_dir / "eval_net_best_fid_ema_each_val_seed7_evabcd1234.json")
    assert calls["written"] == {out: result, report_json: result}
    assert calls["evaluate"]["results_path"] == out.replace(".json", "_replications.jsonl")
    assert calls["pass"]["seed"] == 7


def test_ae_weights_tag_follows_the_weights_actually_loaded(monkeypatch, tmp_path):
    """--no_ema asks the loader for the raw weights, and without EMA weights the file name has no _ema."""
    calls = fake_ae(monkeypatch, tmp_path, weights="raw")
    result = ae_main(tmp_path, "--no_ema", "--is_continue")
    assert calls["load_tokenizer"]["use_ema"] is False
    assert calls["evaluate"]["resume"] is True
    assert list(calls["written"]) == [str(tmp_path / "runs" / "synthetic" / "fsq" / "eval" / "eval_net_best_fid.json")]
    assert result["weights"] == "raw"


def test_ae_ema_weights_are_asked_for_by_default(monkeypatch, tmp_path):
    """Without --no_ema the loader is asked for the EMA weights and a resumed evaluation is not requested."""
    calls = fake_ae(monkeypatch, tmp_path)
    ae_main(tmp_path)
    assert calls["load_tokenizer"]["use_ema"] is True
    assert calls["evaluate"]["resume"] is False


def test_ae_name_puts_the_results_in_that_run_not_beside_the_ckpt(monkeypatch, tmp_path):
    """--ckpt with --name writes under <checkpoints_dir>/<dataset>/<name>/eval."""
    calls = fake_ae(monkeypatch, tmp_path)
    ae_main(tmp_path, "--name", "elsewhere")
    assert list(calls["written"]) == [str(tmp_path / "ck" / "synthetic" / "elsewhere" / "eval" /
                                          "eval_net_best_fid.json")]


def test_ae_per_motion_rebuilds_each_motion_alone(monkeypatch, tmp_path):
    """--per_motion reconstructs through reconstruct_each, the default through the batched reconstruct."""
    calls = fake_ae(monkeypatch, tmp_path)
    ae_main(tmp_path, "--per_motion")
    assert "reconstruct" not in calls and len(calls["reconstruct_each"]) == 2
    calls = fake_ae(monkeypatch, tmp_path)
    ae_main(tmp_path)
    assert "reconstruct_each" not in calls and len(calls["reconstruct"]) == 2


def test_ae_protocol_motion_is_moved_between_evaluator_and_tokenizer_statistics(monkeypatch, tmp_path):
    """The GT batch is renormalised evaluator -> tokenizer statistics before the tokenizer, and back after it."""
    calls = fake_ae(monkeypatch, tmp_path)
    ae_main(tmp_path)
    gt, (out, lengths) = calls["motion_fn"]
    tokenizer_input = calls["reconstruct"][1]
    assert torch.allclose(tokenizer_input, renormalize(gt, EV_MEAN, EV_STD, TOK_MEAN, TOK_STD))
    assert torch.allclose(out, gt)
    assert lengths.tolist() == [4, 4]


def test_ae_checkpoint_record_and_statistics_evaluator_reach_their_steps(monkeypatch, tmp_path):
    """An ours-format file's own record goes to the body-part step, its conditions give the labels, and the
    protocol's statistics evaluator is asked for the tokenizer statistics; another format reads no record."""
    calls = fake_ae(monkeypatch, tmp_path, saved={"conditions": {"names": ["left", "right"]}})
    result = ae_main(tmp_path)
    assert calls["saved"] == {"conditions": {"names": ["left", "right"]}}
    assert calls["stats_evaluator"] == "stats-evaluator"
    assert result["conditions"] == ["left", "right"]
    assert result["protocol"] is None and "conditioned on ['left', 'right']" in result["protocol_skipped"]
    calls = fake_ae(monkeypatch, tmp_path, source_format="t2m-gpt")
    result = ae_main(tmp_path)
    assert "load_checkpoint" not in calls and calls["saved"] == {}
    assert result["conditions"] is None and result["protocol"] == {"fid": 1.5}


def test_ae_a_body_part_tokenizer_skips_the_protocol_and_reads_the_dataset_statistics(monkeypatch, tmp_path):
    """A body-part tokenizer gets the reconstruction metrics on the dataset's own statistics, the protocol skipped."""
    calls = fake_ae(monkeypatch, tmp_path, saved={}, body_part={"name": "arms"})
    result = ae_main(tmp_path)
    assert calls["data_stats"] == (EV_MEAN, EV_STD) and "evaluate" not in calls
    assert result["protocol"] is None and "only body part 'arms'" in result["protocol_skipped"]
    calls = fake_ae(monkeypatch, tmp_path, saved={})
    ae_main(tmp_path)
    assert calls["data_stats"] == (TOK_MEAN, TOK_STD)


def test_ae_a_split_too_small_for_the_protocol_still_gives_the_reconstruction_metrics(monkeypatch, tmp_path):
    """EvalSplitTooSmall skips the protocol, naming why, and keeps the reconstruction metrics."""
    fake_ae(monkeypatch, tmp_path, split_too_small=True)
    result = ae_main(tmp_path)
    assert result["protocol"] is None and result["reconstruction"] == {"mpjpe": 0.25}
    assert result["protocol_skipped"].startswith("split test has 3 clips")


def test_ae_a_skipped_protocol_is_recorded(monkeypatch, tmp_path):
    """The protocol step's reason for skipping is in the result."""
    fake_ae(monkeypatch, tmp_path, skipped="no evaluator in the default place")
    result = ae_main(tmp_path)
    assert result["protocol_skipped"] == "no evaluator in the default place"


def test_ae_residual_tokenizers_count_every_layer(monkeypatch, tmp_path):
    """An RVQ tokenizer reports its number of quantizer layers."""
    fake_ae(monkeypatch, tmp_path, kind="rvq")
    assert ae_main(tmp_path)["layers"] == 3


def test_ae_eval_dataset_tags_the_files_and_records_the_protocols_dataset(monkeypatch, tmp_path):
    """--eval_dataset X is recorded and tags the files _asX; the statistics evaluator is not used across datasets."""
    calls = fake_ae(monkeypatch, tmp_path, eval_dataset_conversions=True)
    result = ae_main(tmp_path, "--eval_dataset", "other")
    assert result["eval_dataset"] == "other" and result["dataset"] == "synthetic"
    assert list(calls["written"]) == [str(tmp_path / "runs" / "synthetic" / "fsq" / "eval" /
                                          "eval_net_best_fid_asother.json")]
    assert calls["stats_evaluator"] is None


def test_ae_a_seed_the_protocol_cannot_use_fails_before_the_dataset_is_read(monkeypatch, tmp_path):
    """A base seed whose replications pass 2^64 is refused by name before any data or model is touched."""
    def no_spec(*args, **kwargs):
        raise AssertionError("read the dataset spec")

    monkeypatch.setattr(evaluation_AE, "setup_logging", lambda *a, **k: None)
    monkeypatch.setattr(evaluation_AE, "get_dataset_spec", no_spec)
    argv = ["--dataset_name", "synthetic", "--checkpoints_dir", str(tmp_path), "--name", "fsq", "--replications", "3",
            "--seed", str(2**64 - 2)]
    with pytest.raises(ValueError, match="which torch takes below 2\\^64; for 3 replication"):
        evaluation_AE.main(parse_with_config(get_evaluation_ae_parser(), argv))


def test_ae_written_json_round_trips(monkeypatch, tmp_path):
    """The real report writer stores the result at the tagged path."""
    fake_ae(monkeypatch, tmp_path)
    monkeypatch.setattr(evaluation_AE, "write_report_json", write_report_json)
    result = ae_main(tmp_path)
    path = tmp_path / "runs" / "synthetic" / "fsq" / "eval" / "eval_net_best_fid.json"
    assert json.loads(path.read_text())["which"] == result["which"] == "net_best_fid"
    assert os.path.isdir(tmp_path / "runs" / "synthetic" / "fsq" / "eval")


def fake_mardm(monkeypatch, tmp_path, *, replayed=False):
    """Replace the generator, evaluator, data and protocol steps of evaluation_MARDM.main by fakes; return the dict
    the fakes record their calls in."""
    calls: dict = {"written": {}, "produced": [], "recorded": []}

    def produce(kind, batch):
        calls["produced"].append(kind)
        return batch.motion + 10 * kind, batch.m_lengths

    source = SimpleNamespace(dataset_name="synthetic", meta={"sampling": {"unit_length": 4}, "checkpoint": "g.tar"},
                             eval_dir=str(tmp_path / "run" / "eval"), tag="latest_ema_ts2", which="latest",
                             title="FSQ-MARDM", mean=TOK_MEAN, std=TOK_STD, sampler={"name": "euler"}, hooks=None,
                             produce=produce)

    def make_source(cfg, *args):
        calls["source"] = "replay" if args else "generator"
        return source

    class Recorder:
        def __init__(self, folder, header, mean, std):
            self.folder = folder
            calls["recorder"] = (folder, header)

        def record(self, kind, batch, motion, lengths):
            calls["recorded"].append(kind)

        def missing(self, seeds):
            return []

    def evaluate(evaluator, loader, motion_fn, **kwargs):
        calls["evaluate"] = kwargs
        batch = SimpleNamespace(motion=torch.arange(2 * 4 * DIM, dtype=torch.float32).reshape(2, 4, DIM),
                                m_lengths=torch.tensor([4, 4]))
        calls["motion_fn"] = (batch.motion, motion_fn(batch))
        if kwargs["mm_fn"] is not None:
            calls["mm_fn"] = kwargs["mm_fn"](batch)
        return SimpleNamespace(to_dict=lambda: {"fid": 2.5}, meta={"protocol": {"seeds": [5, 6]}})

    def conversion_for_evaluation(src, dst, unit_length, data_root):
        calls["conversion"] = (src, dst, unit_length)
        return SimpleNamespace(renormalize=lambda motion, lengths, *stats: (motion * 0 + 7, lengths),
                               to_dict=lambda: {"from": src, "to": dst}, title_note=lambda log: " (converted)")

    def load_evaluator(path, name, device, data_root=None):
        calls["evaluator"] = (path, name)
        return SimpleNamespace(mean=EV_MEAN, std=EV_STD)

    def write_report_json(result, path):
        calls["written"][path] = result

    fakes = {
        "setup_logging": lambda *a, **k: None,
        "replay_source": make_source if replayed else None, "generator_source": make_source,
        "conversion_for_evaluation": conversion_for_evaluation,
        "get_dataset_spec": lambda name, root=None: SimpleNamespace(name=name),
        "load_evaluator": load_evaluator, "build_eval_loader": lambda *a, **k: "loader",
        "evaluator_tag": lambda evaluator_dir, default: "_ev12345678" if evaluator_dir else "",
        "MotionRecorder": Recorder, "make_header": lambda **kwargs: dict(kwargs), "evaluate": evaluate,
        "write_report_json": write_report_json, "format_report": lambda *a, **k: "",
    }
    for name, fake in fakes.items():
        if fake is not None:
            monkeypatch.setattr(evaluation_MARDM, name, fake)
    return calls, source


def mardm_main(tmp_path, *extra: str) -> dict:
    argv = ["--name", "gen", "--dataset_name", "synthetic", "--checkpoints_dir", str(tmp_path / "ck"), "--device",
            "cpu", "--replications", "2", *extra]
    return evaluation_MARDM.main(parse_with_config(get_evaluation_generator_parser(), argv))


def test_mardm_result_and_files_of_a_direct_evaluation(monkeypatch, tmp_path):
    """A direct evaluation records the generator's dataset, split, seed and sampler, resumes on --is_continue, writes
    eval_<tag>.json and --report_json, and scores the generator's motion renormalised to the evaluator statistics."""
    calls, source = fake_mardm(monkeypatch, tmp_path)
    report_json = str(tmp_path / "out.json")
    result = mardm_main(tmp_path, "--split", "val", "--seed", "9", "--is_continue", "--report_json", report_json)
    assert calls["source"] == "generator" and "conversion" not in calls
    assert calls["evaluator"] == (str(tmp_path / "ck" / "synthetic" / "text_mot_match"), "synthetic")
    assert result["dataset"] == "synthetic" and result["split"] == "val" and result["seed"] == 9
    assert result["sampler"] == {"name": "euler"} and result["protocol"] == {"fid": 2.5}
    assert "conversion" not in result and "motions_saved" not in result and "motions_from" not in result
    out = os.path.join(source.eval_dir, "eval_latest_ema_ts2.json")
    assert calls["written"] == {out: result, report_json: result}
    assert calls["evaluate"]["resume"] is True and calls["evaluate"]["hooks"] is None
    assert calls["evaluate"]["results_path"] == out.replace(".json", "_replications.jsonl")
    gt, (motion, lengths) = calls["motion_fn"]
    assert torch.allclose(motion, renormalize(gt, TOK_MEAN, TOK_STD, EV_MEAN, EV_STD))
    mm_motion, _ = calls["mm_fn"]
    assert torch.allclose(mm_motion, renormalize(gt + 10, TOK_MEAN, TOK_STD, EV_MEAN, EV_STD))
    assert calls["produced"] == [KIND_BATCH, KIND_MM]


def test_mardm_no_mm_passes_no_multimodality_function(monkeypatch, tmp_path):
    """--no_mm evaluates without a multimodality function and --is_continue is off by default."""
    calls, _ = fake_mardm(monkeypatch, tmp_path)
    mardm_main(tmp_path, "--no_mm")
    assert calls["evaluate"]["mm_fn"] is None and calls["evaluate"]["resume"] is False
    assert calls["produced"] == [KIND_BATCH]


def test_mardm_eval_dataset_converts_and_tags_the_files(monkeypatch, tmp_path):
    """--eval_dataset X converts the generator's motion to X, takes X's evaluator and records the conversion."""
    calls, source = fake_mardm(monkeypatch, tmp_path)
    result = mardm_main(tmp_path, "--eval_dataset", "other", "--no_mm", "--evaluator_dir", str(tmp_path / "ev"))
    assert calls["conversion"] == ("synthetic", "other", 4)
    assert calls["evaluator"] == (str(tmp_path / "ev"), "other")
    assert result["dataset"] == "other" and result["conversion"] == {"from": "synthetic", "to": "other"}
    assert calls["evaluate"]["meta"]["conversion"] == {"from": "synthetic", "to": "other"}
    assert list(calls["written"]) == [os.path.join(source.eval_dir, "eval_latest_ema_ts2_asother_ev12345678.json")]
    motion, _ = calls["motion_fn"][1]
    assert torch.equal(motion, torch.full_like(motion, 7.0))


def test_mardm_eval_dataset_takes_the_default_evaluator_of_that_dataset(monkeypatch, tmp_path):
    """Without --evaluator_dir, --eval_dataset X reads <checkpoints_dir>/X/text_mot_match."""
    calls, _ = fake_mardm(monkeypatch, tmp_path)
    mardm_main(tmp_path, "--eval_dataset", "other", "--no_mm")
    assert calls["evaluator"] == (str(tmp_path / "ck" / "other" / "text_mot_match"), "other")


def test_mardm_saved_motions_go_to_their_own_folder_with_the_run_settings(monkeypatch, tmp_path):
    """--save_motions records every batch in motions_<tag>[_asX] (no evaluator tag), its header holding the settings,
    and the recorder is the evaluation's hooks."""
    calls, source = fake_mardm(monkeypatch, tmp_path)
    result = mardm_main(tmp_path, "--save_motions", "--eval_dataset", "other", "--seed", "4",
                        "--evaluator_dir", str(tmp_path / "ev"))
    folder, header = calls["recorder"]
    assert folder == os.path.join(source.eval_dir, "motions_latest_ema_ts2_asother")
    assert result["motions_saved"] == folder
    assert header["seed"] == 4 and header["replications"] == 2 and header["sampler"] == {"name": "euler"}
    assert header["eval_dataset"] == "other" and header["dataset"] == "synthetic"
    assert header["multimodality"] == (MM_BATCHES, MM_REPEATS)
    assert calls["evaluate"]["hooks"] is source.hooks and type(source.hooks).__name__ == "Recorder"
    assert calls["recorded"] == [KIND_BATCH, KIND_MM]


def test_mardm_replayed_motions_drop_the_generation_flags_and_name_their_folder(monkeypatch, tmp_path):
    """--from_motions scores a replay source, records the folder's absolute path and drops the generation flags."""
    calls, _ = fake_mardm(monkeypatch, tmp_path, replayed=True)
    monkeypatch.chdir(tmp_path)
    result = mardm_main(tmp_path, "--from_motions", "saved", "--no_mm")
    assert calls["source"] == "replay"
    assert result["motions_from"] == str(tmp_path / "saved")
    assert "time_steps" not in result["config"] and "split" in result["config"]
