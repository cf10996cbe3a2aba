"""Behaviour of evaluation_AE.py and its steps (utils/tokenizer_eval_steps.py) that the script's own test files leave
open: per-part errors of BEAT-X tokenizers, body-part evaluation, the width check, the evaluator choice, and what
main() reports and writes."""

from __future__ import annotations

import json
import logging
import shutil
import types
from pathlib import Path

import numpy as np
import pytest
import torch
from test_evaluation_AE import _essential_tokenizer, _momask_file, env, run_eval, write_dataset  # noqa: F401
from test_evaluation_AE_skips import pretend_released_evaluators
from test_part_aware import TINY, _conditioned_model_and_data, _labels_for

import evaluation_AE
from models.body_parts import part_indices, part_rotation_errors_deg
from models.part_aware import PART_AWARE_MODELS, joint_part_indices
from models.tokenizers import build_tokenizer
from options.config import parse_with_config
from options.eval_options import get_evaluation_ae_parser
from utils.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from utils.conditions import read_conditions, write_conditions
from utils.dataset_specs import get_dataset_spec
from utils.datasets import Text2MotionDataset, read_split
from utils.eval_data import EvalSplitTooSmall
from utils.evaluator import build_evaluator, save_evaluator
from utils.normalization import DatasetError, eval_normalization, load_mean_std
from utils.synthetic import generate_synthetic_dataset
from utils.tokenizer_eval_steps import body_part_columns, reconstruction_data, reconstruction_pass
from utils.tokenizer_stage import dataset_record
from utils.word_vectorizer import LearnedVocab

CPU = torch.device("cpu")
PARTS = ("upper", "lower", "hands", "face")


def _constant_beatx(root: Path, frame: np.ndarray, clips: int = 6) -> None:
    """A BEAT-X-layout test split without captions whose every frame is ``frame`` (330,): crops cannot change what
    the reconstruction pass sees."""
    (root / "new_joint_vecs").mkdir(parents=True)
    rng = np.random.default_rng(1)
    for i in range(clips):
        length = int(rng.integers(40, 70))
        np.save(root / "new_joint_vecs" / f"c{i}.npy", np.tile(frame, (length, 1)).astype(np.float32))
    (root / "test.txt").write_text("".join(f"c{i}\n" for i in range(clips)))


def _rotations(seed: int) -> np.ndarray:
    """(330,) 6D rotations: the first two rows of random rotation matrices, 55 joints."""
    q = np.linalg.qr(np.random.default_rng(seed).standard_normal((55, 3, 3)))[0]
    return q[:, :2, :].reshape(-1).astype(np.float32)


def _pass(data, rebuild, spec, tokenizer_stats, data_stats, body_part=None, columns=None):
    tokenizer = types.SimpleNamespace(codebook_size=None, unit_length=4, kind="ae")
    return reconstruction_pass(data, rebuild, tokenizer, spec, tokenizer_stats=tokenizer_stats, data_stats=data_stats,
                               body_part=body_part, columns=columns or list(range(spec.dim_pose)), labels=None,
                               batch_size=4, seed=3, num_workers=0, device=CPU)


def test_a_body_part_tokenizer_reads_the_columns_its_checkpoint_records():
    """A body-part checkpoint gives its recorded columns, a whole-body one none; a wrong width names file and part."""
    spec = get_dataset_spec("beatx")
    face = part_indices(spec, "face")
    record = {"name": "face", "indices": face}
    assert body_part_columns({"body_part": record}, spec, len(face), "run.tar") == (record, face)
    whole = {"name": "whole", "indices": list(range(330))}
    assert body_part_columns({"body_part": whole}, spec, 330, "run.tar") == (None, list(range(330)))
    assert body_part_columns({}, spec, 330, "run.tar") == (None, list(range(330)))
    with pytest.raises(CheckpointError) as refused:
        body_part_columns({"body_part": record}, spec, 20, "run.tar")
    assert str(refused.value) == ("run.tar: the tokenizer takes 20 features but dataset 'beatx' has 18 in part 'face'; "
                                  "wrong --dataset_name?")


def test_whole_body_beatx_reports_each_parts_feature_and_rotation_error_over_valid_frames(tmp_path):
    """A whole-body BEAT-X tokenizer gets each part's feature and rotation error over valid frames, in feature units."""
    frame = _rotations(0)
    _constant_beatx(tmp_path, frame)
    spec = get_dataset_spec("beatx", str(tmp_path))
    rng = np.random.default_rng(2)
    mean = rng.normal(size=330).astype(np.float32) * 0.1
    std = rng.uniform(0.5, 2.0, size=330).astype(np.float32)
    data = reconstruction_data(spec, "test", mean, std, str(tmp_path))
    face = part_indices(spec, "face")

    def rebuild(motion, lengths, cond):
        recon = motion.clone()
        recon[..., face] += 0.25  # normalised units: 0.25 * std in feature units
        for i, length in enumerate(lengths.tolist()):
            recon[i, length:] += 100.0
        return recon, None

    out = _pass(data, rebuild, spec, (mean, std), (mean, std))
    assert set(out["part_mae"]) == set(PARTS) == set(out["part_rotation_error_deg"])
    assert out["part_mae"]["face"] == pytest.approx(float(np.mean(0.25 * std[face])), rel=1e-4)
    for name in ("upper", "lower", "hands"):
        assert out["part_mae"][name] == pytest.approx(0.0, abs=1e-5)
        assert out["part_rotation_error_deg"][name] == pytest.approx(0.0, abs=1e-2)
    moved = frame.copy()
    moved[face] += 0.25 * std[face]
    expected = part_rotation_errors_deg(torch.from_numpy(moved)[None, None], torch.from_numpy(frame)[None, None],
                                        {"face": face})["face"]
    assert expected > 1.0
    assert out["part_rotation_error_deg"]["face"] == pytest.approx(expected, rel=1e-3)


def test_a_body_part_is_read_with_the_tokenizer_statistics_and_scored_on_its_own_columns(tmp_path):
    """A body-part tokenizer reads its columns in its own statistics and is scored on them, without MPJPE."""
    frame = _rotations(1)
    _constant_beatx(tmp_path, frame)
    spec = get_dataset_spec("beatx", str(tmp_path))
    face = part_indices(spec, "face")
    rng = np.random.default_rng(3)
    data_mean = rng.normal(size=330).astype(np.float32) * 0.2
    data_std = rng.uniform(0.5, 2.0, size=330).astype(np.float32)
    tok_mean = rng.normal(size=len(face)).astype(np.float32) * 0.2
    tok_std = rng.uniform(0.5, 2.0, size=len(face)).astype(np.float32)
    data = reconstruction_data(spec, "test", data_mean, data_std, str(tmp_path))
    expected_input = torch.from_numpy((frame[face] - tok_mean) / tok_std)
    seen = []

    def rebuild(motion, lengths, cond):
        assert motion.shape[-1] == len(face)
        for i, length in enumerate(lengths.tolist()):
            seen.append(torch.allclose(motion[i, :length], expected_input.expand(length, -1), atol=1e-4))
        recon = torch.zeros_like(motion)  # the tokenizer's mean, in feature units
        for i, length in enumerate(lengths.tolist()):
            recon[i, length:] += 100.0
        return recon, None

    out = _pass(data, rebuild, spec, (tok_mean, tok_std), (data_mean, data_std),
                body_part={"name": "face", "indices": face}, columns=face)
    assert seen and all(seen)
    assert out["mpjpe_mm"] is None and set(out["part_mae"]) == {"face"}
    assert out["part_mae"]["face"] == pytest.approx(float(np.abs(frame[face] - tok_mean).mean()), rel=1e-4)
    expected = part_rotation_errors_deg(torch.from_numpy(tok_mean)[None, None],
                                        torch.from_numpy(frame[face])[None, None], {"face": range(len(face))})["face"]
    assert out["part_rotation_error_deg"]["face"] == pytest.approx(expected, rel=1e-3)
    assert set(out["group_mae"]) == {"rot"}
    assert out["group_mae"]["rot"] == pytest.approx(float(np.abs(frame[face] - tok_mean).mean()), rel=1e-4)


def test_only_a_split_without_captions_falls_back_to_every_clip(tmp_path, caplog):
    """A split failing for another reason than missing captions raises it, without the every-clip warning."""
    root = tmp_path / "synthetic"
    write_dataset(root, n_test=6)
    spec = get_dataset_spec("synthetic", str(root))
    mean, std = np.zeros(263, np.float32), np.ones(263, np.float32)
    with caplog.at_level(logging.WARNING, logger="evaluation_AE"):
        with pytest.raises(DatasetError) as refused:
            reconstruction_data(spec, "val", mean, std, str(root))
    assert refused.value.kind != "no_captions"
    assert "every clip of the split" not in caplog.text


def test_a_layout_without_body_parts_reports_no_part_errors(tmp_path):
    """HumanML3D-layout data has no body parts: part_mae is empty and there is no rotation-error entry."""
    root = tmp_path / "synthetic"
    write_dataset(root, n_test=6)
    spec = get_dataset_spec("synthetic", str(root))
    mean, std = np.zeros(263, np.float32), np.ones(263, np.float32)
    data = reconstruction_data(spec, "test", mean, std, str(root))
    out = _pass(data, lambda m, lengths, cond: (m.clone(), None), spec, (mean, std), (mean, std))
    assert out["part_mae"] == {} and "part_rotation_error_deg" not in out
    assert out["mpjpe_mm"] == pytest.approx(0.0, abs=1e-6)


# ---------------------------------------------------------------------------------------------------------------------
# evaluation_AE.py end to end
# ---------------------------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def beatx_env(tmp_path_factory):
    """A captioned BEAT-X-layout dataset (330 dims), its tiny evaluator, and two FSQ runs: one of body part 'face'
    (18 columns, the part's statistics) and one trained with --body_part whole."""

    root = tmp_path_factory.mktemp("beatx")
    write_dataset(root, dim=330)
    ck = tmp_path_factory.mktemp("checkpoints")
    spec = get_dataset_spec("beatx", str(root))
    mean, std = load_mean_std(spec, str(root))
    torch.manual_seed(0)
    for run, part in (("face", "face"), ("whole", "whole")):
        columns = part_indices(spec, part)
        model = build_tokenizer("FSQ_AE_Tiny", input_width=len(columns))
        save_checkpoint(str(ck / "beatx" / run / "model" / "net_best_loss.tar"),
                        {"stage": "tokenizer", "model_name": "FSQ_AE_Tiny", "model_args": dict(model.model_args),
                         "model": model.state_dict(), "body_part": {"name": part, "indices": columns},
                         "dataset": {"name": "beatx", "spec": spec.to_dict(),
                                     "mean": torch.from_numpy(mean[columns]), "std": torch.from_numpy(std[columns])}})
    vocab = LearnedVocab.from_split(str(root), "test", dim_word=8)
    ev = build_evaluator("beatx", *eval_normalization(mean, std, spec), word_vectors=vocab, sizes="tiny",
                         data_root=str(root))
    save_evaluator(str(ck / "beatx" / "text_mot_match" / "model" / "finest.tar"), ev)
    return root, ck, spec


def _run_beatx(beatx_env, *extra: str) -> dict:
    root, ck, _ = beatx_env
    argv = ["--dataset_name", "beatx", "--data_root", str(root), "--checkpoints_dir", str(ck), "--device", "cpu",
            "--replications", "1", "--seed", "5", *extra]
    return evaluation_AE.main(parse_with_config(get_evaluation_ae_parser(), argv))


def test_a_body_part_run_skips_the_protocol_and_reports_its_part(beatx_env, caplog):
    """A body-part run reports its part's errors and skips the protocol with a warning naming the part."""
    with caplog.at_level(logging.WARNING, logger="evaluation_AE"):
        result = _run_beatx(beatx_env, "--name", "face")
    assert result["protocol"] is None
    assert result["protocol_skipped"] == ("the tokenizer covers only body part 'face'; the text-motion protocol needs "
                                          "whole-body motion and is skipped")
    assert "covers only body part 'face'" in caplog.text
    rec = result["reconstruction"]
    assert rec["mpjpe_mm"] is None and set(rec["part_mae"]) == {"face"} and set(rec["group_mae"]) == {"rot"}
    assert rec["part_mae"]["face"] > 0 and rec["frames"] > 36 * 30


def test_a_whole_body_part_run_is_evaluated_as_a_whole_body_tokenizer(beatx_env):
    """--body_part whole covers every column: the protocol runs and every part of the spec gets its errors."""
    result = _run_beatx(beatx_env, "--name", "whole")
    assert result["protocol_skipped"] is None and result["protocol"] is not None
    assert set(result["reconstruction"]["part_mae"]) == set(PARTS)
    assert set(result["reconstruction"]["part_rotation_error_deg"]) == set(PARTS)


def test_a_tokenizer_of_another_width_is_refused_naming_the_file_and_the_flag(env):  # noqa: F811
    """Another width is refused naming the file, both widths and --dataset_name, before the run folder exists."""
    root, ck, _ = env
    _essential_tokenizer(env)
    path = ck / "t2m_67" / "fsq67" / "model" / "net_best_loss.tar"
    with pytest.raises(CheckpointError) as refused:
        run_eval(env, "--ckpt", str(path), "--name", "too_narrow")
    assert str(refused.value) == (f"{path}: the tokenizer takes 67 features but dataset 'synthetic' has 263; "
                                  "wrong --dataset_name?")
    assert not (ck / "synthetic" / "too_narrow").exists()


def test_no_protocol_with_eval_dataset_is_refused_naming_both_flags(env):  # noqa: F811
    """--eval_dataset asks only for the protocol: together with --no_protocol it is an error before any work."""
    _, ck, _ = env
    _essential_tokenizer(env)
    with pytest.raises(ValueError, match=r"^--no_protocol skips the protocol that --eval_dataset is for; leave one "
                                         r"of them out$"):
        run_eval(env, "--name", "fsq67", "--dataset_name", "t2m_67", "--eval_dataset", "synthetic", "--no_protocol",
                 "--seed", "43")
    assert not list((ck / "t2m_67" / "fsq67" / "eval").glob("*seed43*"))


def test_eval_dataset_without_its_evaluator_says_how_to_train_that_datasets_one(env):  # noqa: F811
    """The command in the error trains the evaluator of the --eval_dataset, in the folders this evaluation used."""
    root, ck, _ = env
    _essential_tokenizer(env)
    with pytest.raises(CheckpointError) as refused:
        run_eval(env, "--name", "fsq67", "--dataset_name", "t2m_67", "--eval_dataset", "t2m")
    assert (f"train one with: python train_evaluator.py --dataset_name t2m --checkpoints_dir {ck} --data_root {root}"
            in str(refused.value))


def test_eval_dataset_on_a_split_too_small_for_the_protocol_is_an_error(env, tmp_path):  # noqa: F811
    """--eval_dataset on a split smaller than one protocol batch is an error, not a report without the protocol."""
    _, ck, _ = env
    _essential_tokenizer(env)
    small = tmp_path / "small"
    write_dataset(small, n_test=11)
    with pytest.raises(EvalSplitTooSmall, match="11 evaluation samples, fewer than one batch of 32"):
        run_eval(env, "--name", "fsq67", "--dataset_name", "t2m_67", "--eval_dataset", "synthetic", "--data_root",
                 str(small), "--seed", "44")
    assert not list((ck / "t2m_67" / "fsq67" / "eval").glob("*seed44*"))


def test_a_split_too_small_for_the_protocol_is_a_warning(env, tmp_path, caplog):  # noqa: F811
    """Skipping the protocol for a small split is logged as a warning with the reason."""
    small = tmp_path / "small"
    write_dataset(small, n_test=11)
    with caplog.at_level(logging.WARNING, logger="evaluation_AE"):
        result = run_eval(env, "--name", "fsq", "--data_root", str(small), "--seed", "45")
    assert result["protocol"] is None
    assert any(r.levelno == logging.WARNING and "fewer than one batch of 32" in r.getMessage()
               and "the protocol is skipped" in r.getMessage() for r in caplog.records)


def test_a_missing_default_evaluator_is_a_warning_with_the_command_to_train_one(env, tmp_path, caplog):  # noqa: F811
    """A missing default evaluator is logged as a warning that carries the skip reason and the training command."""
    root, ck, _ = env
    with caplog.at_level(logging.WARNING, logger="evaluation_AE"):
        result = run_eval(env, "--ckpt", str(ck / "synthetic" / "fsq" / "model" / "net_best_loss.tar"), "--name",
                          "no_ev", "--checkpoints_dir", str(tmp_path / "bare"))
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert result["protocol_skipped"] in warned
    assert result["protocol_skipped"].startswith("no usable evaluator for 'synthetic' (evaluator checkpoint not found")


def _released_evaluator_without_statistics(env, checkpoints: Path) -> None:  # noqa: F811
    """A released-format (GloVe) evaluator at the default place of ``checkpoints``, its meta folder missing."""


    root, _, spec = env
    ev = build_evaluator("synthetic", *eval_normalization(*load_mean_std(spec, str(root)), spec), sizes="tiny",
                         dim_word=8, data_root=str(root))
    path = checkpoints / "synthetic" / "text_mot_match" / "model" / "finest.tar"
    save_evaluator(str(path), ev)
    state = load_checkpoint(str(path))
    save_checkpoint(str(path), {k: v for k, v in state.items() if k not in ("stage", "model_args")})


def test_a_released_evaluator_without_its_statistics_skips_the_protocol(env, tmp_path):  # noqa: F811
    """A released evaluator without its meta statistics skips the protocol (and --no_protocol) instead of failing."""
    _, ck, _ = env
    released = tmp_path / "released"
    _released_evaluator_without_statistics(env, released)
    result = run_eval(env, "--ckpt", str(ck / "synthetic" / "fsq" / "model" / "net_best_loss.tar"), "--name", "rel",
                      "--checkpoints_dir", str(released))
    assert result["protocol"] is None
    assert "released evaluators carry no normalisation" in result["protocol_skipped"]
    official = run_eval(env, "--ckpt", _momask_file(tmp_path), "--name", "rel_momask", "--no_protocol",
                        "--checkpoints_dir", str(released))
    assert official["tokenizer_statistics"] == "dataset Mean/Std with the evaluator feature bias (momask convention)"
    assert official["reconstruction"]["mpjpe_mm"] > 0


def test_the_report_records_its_settings_prints_its_tables_and_is_copied_to_report_json(env, tmp_path,  # noqa: F811
                                                                                        capsys):
    """The result records tokens per second, seed and GT cache, prints both tables and is copied to --report_json."""
    root, ck, spec = env
    copy = tmp_path / "copy.json"
    result = run_eval(env, "--name", "fsq", "--replications", "1", "--seed", "46", "--report_json", str(copy))
    saved = json.loads((ck / "synthetic" / "fsq" / "eval" / "eval_net_best_loss_seed46.json").read_text())
    assert json.loads(copy.read_text()) == saved
    unit = result["model_args"]["stride_t"] ** result["model_args"]["down_t"]
    assert result["tokens_per_second"] == pytest.approx(spec.fps / unit) and result["seed"] == 46
    assert result["protocol"]["meta"]["protocol"]["gt_cache"] is not None
    out = capsys.readouterr().out
    assert "FSQ_AE_Tiny (fsq) on synthetic test" in out and "MPJPE per frame" in out
    assert "FSQ_AE_Tiny reconstruction, synthetic test" in out and "Metric" in out
    without = run_eval(env, "--name", "fsq", "--replications", "1", "--seed", "47", "--no_gt_cache")
    assert without["protocol"]["meta"]["protocol"]["gt_cache"] is None


def test_is_continue_reuses_finished_replications_and_a_plain_run_does_not(env):  # noqa: F811
    """--is_continue takes finished replications from the JSONL file; a run without it scores them again."""
    _, ck, _ = env
    first = run_eval(env, "--name", "fsq", "--replications", "1", "--seed", "48")
    rows = ck / "synthetic" / "fsq" / "eval" / "eval_net_best_loss_seed48_replications.jsonl"
    row = json.loads(rows.read_text().splitlines()[0])
    row["metrics"]["fid"] = 12345.0
    rows.write_text(json.dumps(row) + "\n")
    continued = run_eval(env, "--name", "fsq", "--replications", "1", "--seed", "48", "--is_continue")
    assert continued["protocol"]["metrics"]["fid"]["mean"] == 12345.0
    again = run_eval(env, "--name", "fsq", "--replications", "1", "--seed", "48")
    assert again["protocol"]["metrics"]["fid"]["mean"] == pytest.approx(first["protocol"]["metrics"]["fid"]["mean"])


def test_is_continue_never_reuses_replications_scored_under_other_statistics_from_the_same_folder(env,  # noqa: F811
                                                                                                   tmp_path):
    """--is_continue does not reuse replications scored under other statistics from the same --ae_meta_dir."""

    root, _, spec = env
    src = _momask_file(tmp_path)
    meta_dir = tmp_path / "meta"
    meta_dir.mkdir()
    mean, std = load_mean_std(spec, str(root))
    np.save(meta_dir / "mean.npy", mean)
    np.save(meta_dir / "std.npy", std)
    base = ["--ckpt", src, "--no_gt_cache", "--replications", "1", "--ae_meta_dir", str(meta_dir)]
    before = run_eval(env, *base, "--name", "meta_a")
    np.save(meta_dir / "std.npy", (std * 2.0).astype(np.float32))
    continued = run_eval(env, *base, "--name", "meta_a", "--is_continue")
    fresh = run_eval(env, *base, "--name", "meta_b")
    fid = {name: r["protocol"]["metrics"]["fid"]["mean"] for name, r in
           (("before", before), ("continued", continued), ("fresh", fresh))}
    assert fid["before"] != pytest.approx(fid["fresh"])
    assert fid["continued"] == pytest.approx(fid["fresh"])


def test_reconstruction_metrics_follow_the_seed(env):  # noqa: F811
    """The clips' crops come from --seed: another seed measures other frames, the same seed the same ones."""
    base = ("--name", "fsq", "--no_protocol", "--batch_size", "8")
    seed3 = run_eval(env, *base, "--seed", "3")["reconstruction"]
    seed4 = run_eval(env, *base, "--seed", "4")["reconstruction"]
    assert (seed3["frames"], seed3["mpjpe_mm"]) != (seed4["frames"], seed4["mpjpe_mm"])
    assert run_eval(env, *base, "--seed", "3")["reconstruction"] == seed3


def test_per_motion_reconstruction_of_a_conditional_tokenizer_gets_each_clips_labels(tmp_path, monkeypatch):
    """--per_motion reconstructs each clip of a conditional tokenizer under its labels from conditions.json."""


    root = tmp_path / "data"
    generate_synthetic_dataset(str(root), num_motions=40, seed=0)
    spec, labels, _, model = _conditioned_model_and_data(str(root), tmp_path)
    truth = _labels_for(read_split(str(root), "test"))
    write_conditions(str(root), truth)
    mean, std = load_mean_std(spec, str(root))
    path = str(tmp_path / "net_best_loss.tar")
    save_checkpoint(path, {"stage": "tokenizer", "model_name": TINY, "model_args": model.model_args,
                           "model": model.state_dict(), "conditions": labels.to_dict(),
                           "dataset": dataset_record(spec, mean, std)})
    seen = []
    real = evaluation_AE.reconstruct_each

    def spy(tokenizer, motion, lengths, cond=None):
        seen.append(cond)
        return real(tokenizer, motion, lengths, cond)

    monkeypatch.setattr(evaluation_AE, "reconstruct_each", spy)
    argv = ["--ckpt", path, "--name", "cond_each", "--dataset_name", "synthetic", "--data_root", str(root),
            "--checkpoints_dir", str(tmp_path / "ck"), "--device", "cpu", "--batch_size", "8", "--per_motion",
            "--no_protocol"]
    result = evaluation_AE.main(parse_with_config(get_evaluation_ae_parser(), argv))
    assert result["conditions"] == list(labels.names) and seen and all(c is not None for c in seen)
    data = Text2MotionDataset(spec, "test", mean, std, data_root=str(root))
    clips = [data.index.clip_id(r) for r in data.samples.rows]
    gender = torch.cat([c["gender"] for c in seen]).tolist()
    assert gender == [labels.vocabularies["gender"].index(truth[c]["gender"]) for c in clips]


def test_an_official_file_under_another_datasets_evaluator_keeps_its_own_statistics(env, tmp_path,  # noqa: F811
                                                                                               monkeypatch):
    """An official t2m_67 file under --eval_dataset synthetic keeps t2m_67's convention statistics."""

    pretend_released_evaluators(monkeypatch)
    torch.manual_seed(3)
    model = build_tokenizer("RVQVAE", input_width=67, nb_code=16, code_dim=8, width=16, num_quantizers=2).train()
    model(torch.randn(4, 16, 67))  # fills the codebooks
    state = {k: v for k, v in model.state_dict().items() if not k.endswith(("code_sum", "code_count", "initted"))}
    src = str(tmp_path / "net_best_fid.tar")
    save_checkpoint(src, {"vq_model": state, "ep": 3})
    result = run_eval(env, "--ckpt", src, "--name", "momask67", "--dataset_name", "t2m_67", "--eval_dataset",
                      "synthetic", "--replications", "1", "--no_gt_cache")
    assert result["tokenizer_statistics"] == "dataset Mean/Std with the evaluator feature bias (momask convention)"
    assert result["protocol"] is not None and result["protocol"]["meta"]["protocol"]["evaluator"]["released"]


def test_the_measured_ground_truth_does_not_depend_on_the_tokenizer_statistics(env, tmp_path, monkeypatch):  # noqa: F811
    """A tokenizer that always returns its own mean is charged the same error whatever statistics it reads with."""
    root, _, spec = env
    src = _momask_file(tmp_path)
    mean, std = load_mean_std(spec, str(root))

    def own_mean(tokenizer, motion, cond=None):
        return torch.zeros_like(motion), None

    monkeypatch.setattr(evaluation_AE, "reconstruct", own_mean)
    results = []
    for k, scale in enumerate((1.0, 2.0)):
        meta = tmp_path / f"meta{k}"
        meta.mkdir()
        np.save(meta / "mean.npy", mean)
        np.save(meta / "std.npy", (std * scale).astype(np.float32))
        results.append(run_eval(env, "--ckpt", src, "--name", f"own_mean{k}", "--no_protocol", "--ae_meta_dir",
                                str(meta))["reconstruction"])
    assert results[0]["mpjpe_mm"] > 0
    assert results[0]["mpjpe_mm"] == pytest.approx(results[1]["mpjpe_mm"], rel=1e-4)
    assert results[0]["group_mae"] == pytest.approx(results[1]["group_mae"], rel=1e-4)


def test_eval_dataset_with_a_conditional_tokenizer_is_refused(env, tmp_path):  # noqa: F811
    """--eval_dataset with a conditional tokenizer stops naming the flag instead of writing an _as<X> report."""


    root, ck, _ = env
    data = tmp_path / "data"
    shutil.copytree(root, data)
    ids = read_split(str(data), "test")
    truth = {clip: {"species": ("human", "robot")[i % 2]} for i, clip in enumerate(ids)}
    write_conditions(str(tmp_path / "trained.json"), truth)
    labels = read_conditions(str(tmp_path / "trained.json"))
    write_conditions(str(data), truth)
    spec = get_dataset_spec("t2m_67", str(data))
    parts = joint_part_indices(spec)
    torch.manual_seed(0)
    model = PART_AWARE_MODELS["PartAwareRVQ_Tiny"](input_width=67, part_indices=parts, num_parts=len(parts),
                                                   conditions=labels.vocab_sizes(), text_dim=4, dropout=0.0)
    save_checkpoint(str(ck / "t2m_67" / "cond67" / "model" / "net_best_loss.tar"),
                    {"stage": "tokenizer", "model_name": "PartAwareRVQ_Tiny", "model_args": model.model_args,
                     "model": model.state_dict(), "conditions": labels.to_dict(),
                     "dataset": dataset_record(spec, *load_mean_std(spec, str(data)))})
    with pytest.raises((ValueError, CheckpointError), match=r"--eval_dataset synthetic.*condition"):
        run_eval(env, "--name", "cond67", "--dataset_name", "t2m_67", "--eval_dataset", "synthetic", "--data_root",
                 str(data), "--replications", "1", "--seed", "49")
    assert not list((ck / "t2m_67" / "cond67").glob("eval/*_assynthetic*"))
