"""evaluation_AE.py end to end on tiny tokenizer runs, and the reconstruction statistics it reports."""

from __future__ import annotations

import json
import logging
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from tool_helpers import load_tool

import evaluation_AE
from models.loader import load_tokenizer
from models.tokenizers import build_tokenizer
from options.config import parse_with_config
from options.eval_options import get_evaluation_ae_parser
from utils.checkpoint import CheckpointError, file_sha256, load_checkpoint, save_checkpoint
from utils.dataset_specs import get_dataset_spec
from utils.evaluator import build_evaluator, load_evaluator, save_evaluator
from utils.generator_stage import load_stage_tokenizer
from utils.normalization import DatasetError, eval_normalization, load_mean_std
from utils.representation import get_conversion
from utils.tokenizer_eval import ReconstructionStats, bits_per_second
from utils.tokenizer_stage import _joints
from utils.word_vectorizer import LearnedVocab


def write_dataset(root: Path, n_test: int = 36, dim: int = 263, seed: int = 0) -> None:
    """Smooth random-walk features (40-70 frames) with captions, a test and a train split, Mean/Std."""
    rng = np.random.default_rng(seed)
    (root / "new_joint_vecs").mkdir(parents=True)
    (root / "texts").mkdir()
    frames = []
    splits = {"test": [f"c{i:03d}" for i in range(n_test)], "train": ["c000", "c001"]}
    for clip_id in splits["test"]:
        length = int(rng.integers(40, 70))
        motion = np.cumsum(0.05 * rng.standard_normal((length, dim)), axis=0) + rng.standard_normal(dim)
        np.save(root / "new_joint_vecs" / f"{clip_id}.npy", motion.astype(np.float32))
        frames.append(motion)
        word = ("walk", "jump", "sit")[int(rng.integers(3))]
        (root / "texts" / f"{clip_id}.txt").write_text(f"a person does {word}.#a/DET person/NOUN {word}/VERB#0.0#0.0\n")
    for split, ids in splits.items():
        (root / f"{split}.txt").write_text("".join(i + "\n" for i in ids))
    frames = np.concatenate(frames)
    np.save(root / "Mean.npy", frames.mean(0).astype(np.float32))
    np.save(root / "Std.npy", (frames.std(0) + 0.05).astype(np.float32))


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    root = tmp_path_factory.mktemp("synthetic")
    write_dataset(root)
    ck = tmp_path_factory.mktemp("checkpoints")
    spec = get_dataset_spec("synthetic", str(root))
    mean, std = load_mean_std(spec, str(root))
    torch.manual_seed(0)
    for run, name in (("fsq", "FSQ_AE_Tiny"), ("rvq", "RVQVAE_Tiny"), ("ae", "AE_Tiny")):
        model = build_tokenizer(name, input_width=spec.dim_pose)
        # The tokenizers' own statistics (dataset Mean/Std) differ from the evaluator's (feature bias on root/contacts).
        save_checkpoint(str(ck / "synthetic" / run / "model" / "net_best_loss.tar"),
                        {"stage": "tokenizer", "model_name": name, "model_args": dict(model.model_args),
                         "model": model.state_dict(),
                         "dataset": {"name": "synthetic", "spec": spec.to_dict(), "mean": torch.from_numpy(mean),
                                     "std": torch.from_numpy(std)}})
    ev_mean, ev_std = eval_normalization(mean, std, spec)
    vocab = LearnedVocab.from_split(str(root), "test", dim_word=8)
    ev = build_evaluator("synthetic", ev_mean, ev_std, word_vectors=vocab, sizes="tiny", data_root=str(root))
    save_evaluator(str(ck / "synthetic" / "text_mot_match" / "model" / "finest.tar"), ev)
    return root, ck, spec


def run_eval(env, *extra: str) -> dict:
    root, ck, _ = env
    argv = ["--dataset_name", "synthetic", "--data_root", str(root), "--checkpoints_dir", str(ck), "--device", "cpu",
            "--replications", "2", "--seed", "5", *extra]
    return evaluation_AE.main(parse_with_config(get_evaluation_ae_parser(), argv))


def test_fsq_run_writes_eval_json_with_every_metric(env):
    _, ck, spec = env
    result = run_eval(env, "--name", "fsq", "--replications", "3")
    eval_dir = ck / "synthetic" / "fsq" / "eval"
    saved = json.loads((eval_dir / "eval_net_best_loss_seed5.json").read_text())
    assert saved["checkpoint"].endswith("net_best_loss.tar") and len(saved["checkpoint_sha256"]) == 64
    rec = saved["reconstruction"]
    assert rec["mpjpe_mm"] > 0 and rec["mpjpe_seq_mm"] > 0 and math.isfinite(rec["mpjpe_mm"])
    assert set(rec["group_mae"]) == {g.name for g in spec.layout}
    codebook = rec["codebook"]
    assert len(codebook["layers"]) == 1
    layer = codebook["layers"][0]
    assert layer["used_codes"] + layer["dead_codes"] == codebook["codebook_size"]
    assert 0 < layer["usage"] <= 1 and layer["perplexity"] >= 1
    k = codebook["codebook_size"]
    unit = saved["model_args"]["stride_t"] ** saved["model_args"]["down_t"]
    assert saved["bits_per_second"] == pytest.approx(math.log2(k) * spec.fps / unit)
    protocol = saved["protocol"]
    assert set(protocol["metrics"]) == {"fid", "diversity", "top1", "top2", "top3", "matching_score"}
    assert protocol["meta"]["protocol"]["replications"] == 3 and protocol["meta"]["protocol"]["seeds"] == [5, 6, 7]
    assert protocol["meta"]["checkpoint_sha256"] == saved["checkpoint_sha256"]
    jsonl = eval_dir / "eval_net_best_loss_seed5_replications.jsonl"
    lines = [json.loads(line) for line in jsonl.read_text().splitlines()]
    assert len(lines) == 3
    # A tokenizer is deterministic: crops drawn again reuse earlier embeddings (the second replication's one batch
    # is computed in full once, to check that).
    assert lines[0]["reused_rows"] == 0 and lines[2]["reused_rows"] > 0
    assert (eval_dir / "eval.log").is_file()
    assert result["protocol"]["metrics"]["fid"]["mean"] == protocol["metrics"]["fid"]["mean"]


def test_rvq_reports_every_layer_and_ae_has_no_codebook(env):
    rvq = run_eval(env, "--name", "rvq", "--which_epoch", "net_best_loss", "--no_gt_cache")
    layers = rvq["reconstruction"]["codebook"]["layers"]
    assert [layer["layer"] for layer in layers] == list(range(rvq["model_args"]["num_quantizers"]))
    assert rvq["layers"] == rvq["model_args"]["num_quantizers"]
    ae = run_eval(env, "--ckpt", str(env[1] / "synthetic" / "ae" / "model" / "net_best_loss.tar"))
    assert ae["reconstruction"]["codebook"] is None and ae["bits_per_second"] is None
    assert ae["reconstruction"]["mpjpe_mm"] > 0


def test_another_evaluator_writes_its_own_files(env, tmp_path):
    """Scores under an --evaluator_dir other than the dataset's own go to files tagged with the evaluator file's hash;
    naming the default evaluator is the same evaluation, under the same names."""
    root, ck, spec = env
    mean, std = load_mean_std(spec, str(root))
    other = tmp_path / "official" / "text_mot_match" / "model" / "finest.tar"
    torch.manual_seed(1)
    vocab = LearnedVocab.from_split(str(root), "test", dim_word=8)
    save_evaluator(str(other), build_evaluator("synthetic", *eval_normalization(mean, std, spec), word_vectors=vocab,
                                               sizes="tiny", data_root=str(root)))
    own = run_eval(env, "--name", "fsq", "--replications", "1", "--seed", "9")
    theirs = run_eval(env, "--name", "fsq", "--replications", "1", "--seed", "9", "--evaluator_dir",
                      str(tmp_path / "official"))
    run_eval(env, "--name", "fsq", "--replications", "1", "--seed", "9", "--evaluator_dir",
             str(ck / "synthetic" / "text_mot_match"))
    (tmp_path / "linked").symlink_to(ck / "synthetic" / "text_mot_match", target_is_directory=True)
    run_eval(env, "--name", "fsq", "--replications", "1", "--seed", "9", "--evaluator_dir", str(tmp_path / "linked"))
    eval_dir = ck / "synthetic" / "fsq" / "eval"
    stem = "eval_net_best_loss_seed9"
    tagged = f"{stem}_ev{file_sha256(str(other))[:8]}"
    assert sorted(p.name for p in eval_dir.glob(f"{stem}*.json")) == [f"{stem}.json", f"{tagged}.json"]
    for name, result in ((stem, own), (tagged, theirs)):
        saved = json.loads((eval_dir / f"{name}.json").read_text())
        assert saved["protocol"]["metrics"] == json.loads(json.dumps(result["protocol"]["metrics"]))
    assert own["protocol"]["metrics"]["fid"] != theirs["protocol"]["metrics"]["fid"]
    assert (eval_dir / f"{tagged}_replications.jsonl").is_file()


def test_perfect_reconstruction_scores_like_gt(env, monkeypatch):
    """With the identity as tokenizer, the de-/re-normalisation chain must give FID 0 and MPJPE 0."""
    def identity(tokenizer, motion, cond=None):
        return motion, None

    monkeypatch.setattr(evaluation_AE, "reconstruct", identity)
    result = run_eval(env, "--name", "ae", "--no_gt_cache")
    protocol = result["protocol"]
    assert protocol["metrics"]["fid"]["mean"] < 1e-4
    for key in ("top1", "top2", "top3"):
        assert protocol["metrics"][key]["mean"] == protocol["real"][key]["mean"]
    assert result["reconstruction"]["mpjpe_mm"] < 1e-3
    assert max(result["reconstruction"]["group_mae"].values()) < 1e-5


def test_without_evaluator_the_protocol_is_skipped_with_a_message(env, tmp_path):
    result = run_eval(env, "--name", "fsq", "--checkpoints_dir", str(tmp_path / "no_evaluator"), "--ckpt",
                      str(env[1] / "synthetic" / "fsq" / "model" / "net_best_loss.tar"))
    assert result["protocol"] is None
    # The suggested command, run as printed, trains into and reads from the folders this evaluation used.
    root = env[0]
    assert (f"train_evaluator.py --dataset_name synthetic --checkpoints_dir {tmp_path / 'no_evaluator'} "
            f"--data_root {root}" in result["protocol_skipped"])
    assert result["reconstruction"]["mpjpe_mm"] > 0


def test_reconstruction_metrics_do_not_depend_on_num_workers(env, tmp_path):
    """Each clip's caption, length and crop come from its own seed, so the metrics are the same with or without
    worker processes (batches of 8 over 36 clips: workers would otherwise draw from RNGs of their own)."""
    args = ("--name", "fsq", "--no_protocol", "--batch_size", "8")
    in_process = run_eval(env, *args, "--num_workers", "0")["reconstruction"]
    workers = run_eval(env, *args, "--num_workers", "2")["reconstruction"]
    assert workers == in_process
    assert in_process["mpjpe_mm"] > 0 and in_process["frames"] > 36 * 30  # every clip, the last short batch too


def test_missing_checkpoint_names_what_exists(env):
    with pytest.raises(CheckpointError, match=r"no latest\.tar .*net_best_loss\.tar"):
        run_eval(env, "--name", "fsq", "--which_epoch", "latest")
    with pytest.raises(CheckpointError, match="model_name"):
        run_eval(env, "--name", "fsq", "--ae_model", "AE_Tiny")
    # A run that is not there is said to be missing, not to lack a --which_epoch.
    with pytest.raises(CheckpointError, match=r"no run fqs of dataset synthetic under .*; check --name") as e:
        run_eval(env, "--name", "fqs")
    assert "which_epoch" not in str(e.value)


@pytest.mark.parametrize("seed", ["-1", str(2**64)])
def test_a_seed_out_of_range_fails_by_name_before_the_reconstruction_pass(env, monkeypatch, seed, capsys):
    def reconstruct(*args, **kwargs):
        raise AssertionError("the reconstruction pass ran")

    monkeypatch.setattr(evaluation_AE, "reconstruct", reconstruct)
    with pytest.raises(SystemExit):  # while the flags are read
        run_eval(env, "--name", "fsq", "--seed", seed)
    assert f"argument --seed: expected a whole number in [0, 2^64), got '{seed}'" in capsys.readouterr().err
    # Replication r seeds torch with seed + r: the last one must fit too.
    with pytest.raises(ValueError, match=r"--seed 18446744073709551615: replication r uses seed \+ r, .* for 2 "
                                         r"replication\(s\) give a seed up to 18446744073709551614"):
        run_eval(env, "--name", "fsq", "--seed", str(2**64 - 1))


def test_reconstruction_stats_conventions():
    spec = get_dataset_spec("synthetic")
    d = spec.dim_pose
    mean, std = np.zeros(d, np.float32), np.ones(d, np.float32)
    rng = np.random.default_rng(0)
    gt = torch.from_numpy(rng.standard_normal((2, 8, d)).astype(np.float32) * 0.1)
    lengths = torch.tensor([8, 4])
    stats = ReconstructionStats(spec, mean, std, codebook_size=None, unit_length=4)
    stats.update(gt, gt.clone(), lengths)
    same = stats.summary()
    assert same["mpjpe_mm"] == pytest.approx(0, abs=1e-9) and same["frames"] == 12

    recon = gt.clone()
    recon[..., spec.group("rot")] += 0.5  # rotations do not move ric joints
    recon[1, :, spec.group("root_y")] += 0.2  # lifts the root (only) of sequence 1 by 0.2 m ...
    recon[1, 6:] += 100.0  # ... and frames past its length must not count
    stats = ReconstructionStats(spec, mean, std, codebook_size=None, unit_length=4)
    stats.update(gt, recon, lengths)
    out = stats.summary()
    # Root-aligned: the 21 other joints are 0.2 m off the root in 4 of the 12 valid frames.
    assert out["mpjpe_mm"] == pytest.approx(1000 * 0.2 * 21 / 22 * 4 / 12, rel=1e-5)
    assert out["mpjpe_seq_mm"] == pytest.approx(1000 * 0.2 * 21 / 22 / 2, rel=1e-5)
    assert out["group_mae"]["rot"] == pytest.approx(0.5, rel=1e-5)
    assert out["group_mae"]["root_y"] == pytest.approx(0.2 * 4 / 12, rel=1e-5)
    assert out["group_mae"]["ric"] == pytest.approx(0, abs=1e-7)

    codes = torch.tensor([[0, 1, 3], [2, 2, 9]])  # sample 1 has 4 // 4 = 1 valid token
    stats = ReconstructionStats(spec, mean, std, codebook_size=4, unit_length=4)
    lengths_tokens = torch.tensor([12, 4])
    big = torch.zeros(2, 12, d)
    stats.update(big, big, lengths_tokens, codes)
    layer = stats.summary()["codebook"]["layers"][0]
    assert layer["used_codes"] == 4 and layer["dead_codes"] == 0 and layer["usage"] == 1.0
    assert stats.summary()["codebook"]["tokens"] == 4
    assert layer["perplexity"] == pytest.approx(4.0, rel=1e-5)
    assert bits_per_second(1024, 20.0, 4, 6) == pytest.approx(10 * 5 * 6)
    assert bits_per_second(None, 20.0, 4) is None



@pytest.mark.parametrize("name", ["kit", "kit_64"])
def test_kit_mpjpe_is_in_millimetres_as_its_positions(name):
    """KIT-ML's positions are millimetres: the root lifted by 200 units is 200 mm, not 200 m."""
    spec = get_dataset_spec(name)
    d = spec.dim_pose
    gt = torch.from_numpy(np.random.default_rng(1).standard_normal((1, 8, d)).astype(np.float32))
    recon = gt.clone()
    recon[..., spec.group("root_y")] += 200.0
    stats = ReconstructionStats(spec, np.zeros(d, np.float32), np.ones(d, np.float32), None, 4)
    stats.update(gt, recon, torch.tensor([8]))
    assert stats.summary()["mpjpe_mm"] == pytest.approx(200.0 * 20 / 21, rel=1e-4)


def test_reconstruction_stats_of_a_body_part():
    """A part's columns of a joint-recoverable layout: group errors over the part's columns of each group, no MPJPE
    (joints cannot be recovered from part of the features), and validation in training skips joints too."""
    spec = get_dataset_spec("synthetic")
    rot = list(range(*spec.group("rot").indices(spec.dim_pose)))
    columns = [0, 1, *rot[:12]]  # root_rot_velocity, root_linear_velocity[0], two joints' rotations
    width = len(columns)
    gt = torch.zeros(1, 8, width)
    recon = gt.clone()
    recon[..., 2:] += 0.5
    stats = ReconstructionStats(spec, np.zeros(width), np.ones(width), codebook_size=None, unit_length=4,
                                columns=columns)
    stats.update(gt, recon, torch.tensor([8]))
    out = stats.summary()
    assert out["mpjpe_mm"] is None and out["frames"] == 8
    assert set(out["group_mae"]) == {g.name for g in spec.layout if set(range(g.start, g.stop)) & set(columns)}
    assert out["group_mae"]["rot"] == pytest.approx(0.5)
    assert _joints(recon, torch.zeros(width), torch.ones(width), spec) is None
    assert _joints(torch.zeros(1, 8, spec.dim_pose), torch.zeros(spec.dim_pose), torch.ones(spec.dim_pose),
                   spec).shape == (1, 8, spec.joints_num, 3)


def test_mpjpe_per_sequence_weights_short_clips_more():
    spec = get_dataset_spec("synthetic")
    d = spec.dim_pose
    mean, std = np.zeros(d, np.float32), np.ones(d, np.float32)
    gt = torch.zeros(2, 8, d)
    recon = gt.clone()
    recon[1, :, spec.group("ric")] += 0.01  # only the short sequence is off
    stats = ReconstructionStats(spec, mean, std, codebook_size=None, unit_length=4)
    stats.update(gt, recon, torch.tensor([8, 2]))
    out = stats.summary()
    per_seq_err = out["mpjpe_seq_mm"]
    assert out["mpjpe_mm"] == pytest.approx(per_seq_err * 2 * 2 / 10)


def _momask_file(tmp_path: Path) -> str:
    """A MoMask-layout RVQ-VAE file (``vq_model``, codebooks only) for the 263-dim synthetic features."""
    torch.manual_seed(3)
    model = build_tokenizer("RVQVAE", input_width=263, nb_code=16, code_dim=8, width=16, num_quantizers=2).train()
    model(torch.randn(4, 16, 263))  # fills the codebooks
    state = {k: v for k, v in model.state_dict().items() if not k.endswith(("code_sum", "code_count", "initted"))}
    path = str(tmp_path / "net_best_fid.tar")
    save_checkpoint(path, {"vq_model": state, "ep": 3})
    return path


def test_imported_official_run_evaluates_like_the_file(env, tmp_path, caplog):
    """An import records the statistics of the format's convention (MoMask: the released evaluator's; with one
    trained here, whose statistics are not the released meta, the dataset's with the feature bias, and a warning),
    or none when they cannot be read; either way the imported run evaluates exactly like the official file itself."""
    root, ck, spec = env
    src = _momask_file(tmp_path)
    tool = load_tool("import_checkpoint")
    base = ["--src", src, "--dataset_name", "synthetic", "--data_root", str(root), "--checkpoints_dir", str(ck)]
    with caplog.at_level(logging.WARNING, logger="utils.tokenizer_eval"):
        tool.main(tool.get_parser().parse_args([*base, "--name", "imp_ev"]))
    assert any("text_mot_match/model/finest.tar was trained here, not released with the official files" in r.message
               for r in caplog.records)
    bare = tmp_path / "no_evaluator"  # a checkpoints folder without the default evaluator
    with caplog.at_level(logging.WARNING, logger="import_checkpoint"):
        tool.main(tool.get_parser().parse_args([*base[:-1], str(bare), "--name", "imp_none"]))
    assert any("no statistics recorded" in r.message for r in caplog.records)
    shutil.move(bare / "synthetic" / "imp_none", ck / "synthetic" / "imp_none")

    with_stats = load_tokenizer(str(ck / "synthetic" / "imp_ev" / "model" / "latest.tar"))
    assert with_stats.parent_format == "momask"
    assert with_stats.dataset["statistics"] == "dataset Mean/Std with the evaluator feature bias (momask convention)"
    expected = eval_normalization(*load_mean_std(spec, str(root)), spec)[1]
    assert torch.equal(with_stats.dataset["std"], torch.as_tensor(expected))
    without = load_tokenizer(str(ck / "synthetic" / "imp_none" / "model" / "latest.tar"))
    assert without.dataset["mean"] is None and without.statistics_format == "momask"
    with pytest.raises(CheckpointError, match="import it again with --meta_dir"):
        load_stage_tokenizer(without.source, spec, None, "--vq_name")
    load_stage_tokenizer(with_stats.source, spec, None, "--vq_name")

    official = run_eval(env, "--ckpt", src, "--name", "official", "--no_gt_cache")
    for name in ("imp_ev", "imp_none"):
        result = run_eval(env, "--name", name, "--no_gt_cache")
        assert result["tokenizer_statistics"] != "checkpoint" or name == "imp_ev"
        assert result["reconstruction"]["mpjpe_mm"] == pytest.approx(official["reconstruction"]["mpjpe_mm"])
        assert result["protocol"]["metrics"]["fid"]["mean"] == pytest.approx(
            official["protocol"]["metrics"]["fid"]["mean"])


def test_is_continue_never_reuses_replications_scored_under_other_tokenizer_statistics(env, tmp_path):
    """The statistics an official tokenizer runs with (--ae_meta_dir, else its format's convention) change its
    reconstructions, so replications streamed under other statistics are not taken over by --is_continue."""
    root, _, spec = env
    src = _momask_file(tmp_path)
    meta_dir = tmp_path / "meta"
    meta_dir.mkdir()
    mean, std = load_mean_std(spec, str(root))
    np.save(meta_dir / "mean.npy", mean)
    np.save(meta_dir / "std.npy", std)
    base = ["--ckpt", src, "--no_gt_cache"]
    convention = run_eval(env, *base, "--name", "stats_a")
    continued = run_eval(env, *base, "--name", "stats_a", "--ae_meta_dir", str(meta_dir), "--is_continue")
    fresh = run_eval(env, *base, "--name", "stats_b", "--ae_meta_dir", str(meta_dir))
    fid = {name: r["protocol"]["metrics"]["fid"]["mean"] for name, r in
           (("convention", convention), ("continued", continued), ("fresh", fresh))}
    assert fid["convention"] != pytest.approx(fid["fresh"])
    assert fid["continued"] == pytest.approx(fid["fresh"])


@pytest.mark.parametrize("mean, std, expected", [
    (np.zeros(67), np.ones(67), r"\(67,\).*\(263,\)"),
    (np.zeros(263), np.r_[np.ones(262), 0.0], "finite.*std > 0"),
])
def test_ae_meta_dir_statistics_of_another_width_or_zero_std_are_refused_by_name(env, tmp_path, mean, std, expected):
    src = _momask_file(tmp_path)
    meta_dir = tmp_path / "meta"
    meta_dir.mkdir()
    np.save(meta_dir / "mean.npy", mean.astype(np.float32))
    np.save(meta_dir / "std.npy", std.astype(np.float32))
    with pytest.raises(ValueError, match=f"--ae_meta_dir.*{expected}"):
        run_eval(env, "--ckpt", src, "--name", "bad_meta", "--no_gt_cache", "--ae_meta_dir", str(meta_dir))


def test_meta_statistics_that_are_no_npy_array_name_the_file(env, tmp_path):
    # A failed download saves an HTML page under mean.npy: numpy's own error named neither the file nor the flag.
    root, ck, _ = env
    src = _momask_file(tmp_path)
    meta_dir = tmp_path / "meta"
    meta_dir.mkdir()
    (meta_dir / "mean.npy").write_text("<html>not found</html>")
    np.save(meta_dir / "std.npy", np.ones(263, np.float32))
    with pytest.raises(ValueError, match=r"meta.mean\.npy: not a \.npy file .*meta folder \(--ae_meta_dir\)"):
        run_eval(env, "--ckpt", src, "--name", "html_meta", "--no_gt_cache", "--ae_meta_dir", str(meta_dir))
    tool = load_tool("import_checkpoint")
    with pytest.raises(ValueError, match=r"meta.mean\.npy: not a \.npy file .*meta folder \(--meta_dir\)"):
        tool.main(tool.get_parser().parse_args(["--src", src, "--dataset_name", "synthetic", "--data_root", str(root),
                                                "--checkpoints_dir", str(ck), "--name", "html_import",
                                                "--meta_dir", str(meta_dir)]))
    assert not (ck / "synthetic" / "html_import").exists()  # the inputs are read before the run folder is made


def test_ema_weights_are_evaluated_unless_no_ema(env, tmp_path):
    """A run trained with --ema_decay chose its best file with its EMA weights: those are the ones loaded."""
    root, ck, spec = env
    raw = load_checkpoint(str(ck / "synthetic" / "ae" / "model" / "net_best_loss.tar"))
    ema = {k: v + 0.01 * torch.randn_like(v) if v.is_floating_point() else v.clone() for k, v in raw["model"].items()}
    path = tmp_path / "ema.tar"
    save_checkpoint(str(path), {**raw, "ema": ema})
    tok = load_tokenizer(str(path))
    assert tok.weights == "ema"
    assert torch.equal(tok.model.state_dict()["encoder.model.0.weight"], ema["encoder.model.0.weight"])
    raw_tok = load_tokenizer(str(path), use_ema=False)
    assert raw_tok.weights == "model"
    assert torch.equal(raw_tok.model.state_dict()["encoder.model.0.weight"], raw["model"]["encoder.model.0.weight"])
    with_ema = run_eval(env, "--ckpt", str(path), "--name", "ema_run", "--replications", "1")
    without = run_eval(env, "--ckpt", str(path), "--name", "ema_run", "--replications", "1", "--no_ema")
    assert (with_ema["weights"], without["weights"]) == ("ema", "model")
    eval_dir = ck / "synthetic" / "ema_run" / "eval"  # each keeps its own files
    assert (eval_dir / "eval_ema_ema_seed5.json").is_file() and (eval_dir / "eval_ema_seed5.json").is_file()
    rows = [json.loads(line) for line in (eval_dir / "eval_ema_ema_seed5_replications.jsonl").read_text().splitlines()]
    assert rows and all(row["seed"] == 5 for row in rows)
    assert with_ema["reconstruction"]["mpjpe_mm"] != without["reconstruction"]["mpjpe_mm"]


def test_a_dataset_without_captions_gets_reconstruction_metrics(env, tmp_path):
    """Captions are optional for tokenizers: without any, the reconstruction pass takes every clip of the split."""
    _, ck, _ = env
    root = tmp_path / "no_text"
    write_dataset(root)
    shutil.rmtree(root / "texts")
    argv = ["--name", "fsq", "--dataset_name", "synthetic", "--data_root", str(root), "--checkpoints_dir", str(ck),
            "--device", "cpu", "--no_protocol"]
    result = evaluation_AE.main(parse_with_config(get_evaluation_ae_parser(), argv))
    assert result["protocol"] is None and result["reconstruction"]["mpjpe_mm"] > 0
    assert result["reconstruction"]["frames"] > 36 * 30  # all 36 test clips (40 to 70 frames, cropped to whole tokens)


def test_results_go_to_the_named_run_or_the_files_own(env, tmp_path):
    """--ckpt of a file in <run>/model/ writes to that run's eval/; with --name too, to the named run's."""
    root, ck, _ = env
    path = str(ck / "synthetic" / "fsq" / "model" / "net_best_loss.tar")
    base = ["--ckpt", path, "--dataset_name", "synthetic", "--data_root", str(root), "--checkpoints_dir", str(ck),
            "--device", "cpu", "--replications", "1", "--seed", "9"]
    evaluation_AE.main(parse_with_config(get_evaluation_ae_parser(), base))
    assert (ck / "synthetic" / "fsq" / "eval" / "eval_net_best_loss_seed9.json").is_file()
    evaluation_AE.main(parse_with_config(get_evaluation_ae_parser(), [*base, "--seed", "10", "--name", "mine"]))
    assert (ck / "synthetic" / "mine" / "eval" / "eval_net_best_loss_seed10.json").is_file()
    assert not (ck / "synthetic" / "fsq" / "eval" / "eval_net_best_loss_seed10.json").exists()


# ---------------------------------------------------------------------------------------------------------------------
# Under another dataset's evaluator (--eval_dataset)
# ---------------------------------------------------------------------------------------------------------------------

def _essential_tokenizer(env) -> None:
    """An FSQ tokenizer of t2m_67 (the first 67 dims of the same files) with the dataset's statistics."""
    root, ck, _ = env
    spec = get_dataset_spec("t2m_67", str(root))
    mean, std = load_mean_std(spec, str(root))
    torch.manual_seed(3)
    model = build_tokenizer("FSQ_AE_Tiny", input_width=spec.dim_pose)
    save_checkpoint(str(ck / "t2m_67" / "fsq67" / "model" / "net_best_loss.tar"),
                    {"stage": "tokenizer", "model_name": "FSQ_AE_Tiny", "model_args": dict(model.model_args),
                     "model": model.state_dict(),
                     "dataset": {"name": "t2m_67", "spec": spec.to_dict(), "mean": torch.from_numpy(mean),
                                 "std": torch.from_numpy(std)}})


def test_an_essential_tokenizer_is_scored_by_the_full_evaluator_through_the_conversions(env, monkeypatch, caplog):
    root, ck, _ = env
    _essential_tokenizer(env)
    seen = []
    original = evaluation_AE.evaluate

    def evaluate(ev, loader, motion_fn, *args, **kwargs):
        def recorded(batch):
            motion, lengths = motion_fn(batch)
            seen.append((batch.motion.clone(), batch.m_lengths.clone(), motion.clone(), lengths.clone()))
            return motion, lengths

        return original(ev, loader, recorded, *args, **kwargs)

    def identity(tokenizer, motion, cond=None):
        return motion, None

    monkeypatch.setattr(evaluation_AE, "evaluate", evaluate)
    monkeypatch.setattr(evaluation_AE, "reconstruct", identity)
    with caplog.at_level(logging.WARNING, logger="evaluation_AE"):
        result = run_eval(env, "--name", "fsq67", "--dataset_name", "t2m_67", "--eval_dataset", "synthetic",
                          "--replications", "1", "--no_gt_cache")
    assert "t2m_67 reconstruction is scored by the synthetic evaluator through a lossy conversion" in caplog.text
    eval_dir = ck / "t2m_67" / "fsq67" / "eval"
    saved = json.loads((eval_dir / "eval_net_best_loss_seed5_assynthetic.json").read_text())
    assert saved["dataset"] == "t2m_67" and saved["eval_dataset"] == "synthetic"
    assert saved["conversion"]["input"]["exact"] and not saved["conversion"]["output"]["exact"]
    assert (saved["conversion"]["input"]["from"], saved["conversion"]["output"]["to"]) == ("synthetic", "synthetic")
    proto = saved["protocol"]["meta"]["protocol"]
    assert proto["dataset"] == proto["evaluator"]["dataset"] == "synthetic"
    assert result["reconstruction"]["mpjpe_mm"] < 1e-3  # the reconstruction metrics stay on t2m_67's own data
    # What the evaluator saw: its GT cut to the 67 dims, through the identity, re-extracted as 263-dim features.
    ev = load_evaluator(str(ck / "synthetic" / "text_mot_match"), "synthetic", "cpu", data_root=str(root))
    s263, s67 = get_dataset_spec("synthetic", str(root)), get_dataset_spec("t2m_67", str(root))
    assert seen
    for gt, gt_lengths, motion, lengths in seen:
        raw67 = gt[..., :67] * torch.as_tensor(ev.std[:67]) + torch.as_tensor(ev.mean[:67])
        expected, _ = get_conversion(s67, s263)(raw67, gt_lengths)
        got = motion * torch.as_tensor(ev.std) + torch.as_tensor(ev.mean)
        assert torch.equal(lengths, gt_lengths) and got.shape == gt.shape
        assert torch.allclose(got, expected.float(), atol=1e-3)


def test_eval_dataset_without_its_evaluator_is_an_error_not_a_skipped_protocol(env):
    root, ck, _ = env
    _essential_tokenizer(env)
    with pytest.raises(CheckpointError, match=r"--eval_dataset t2m: no usable evaluator \(.*t2m.text_mot_match"):
        run_eval(env, "--name", "fsq67", "--dataset_name", "t2m_67", "--eval_dataset", "t2m", "--replications", "1")
    assert not list((ck / "t2m_67" / "fsq67" / "eval").glob("*_ast2m*"))


def test_a_tokenizer_whose_input_would_be_converted_lossily_is_refused(env):
    with pytest.raises(ValueError, match=r"--eval_dataset t2m_67: the tokenizer's synthetic input would come from "
                                         r"t2m_67's GT through a lossy conversion"):
        run_eval(env, "--name", "fsq", "--eval_dataset", "t2m_67")


@pytest.mark.parametrize("extra", [["--ae_model", "AE_Tiny"], ["--split", "val"]], ids=["model", "split"])
def test_a_refused_evaluation_leaves_no_run_folder_behind(env, extra):
    """A --ckpt evaluated under a new --name makes that run's folder only once the model and data checks passed."""
    root, ck, _ = env
    path = str(ck / "synthetic" / "fsq" / "model" / "net_best_loss.tar")
    argv = ["--ckpt", path, "--name", "refused", "--dataset_name", "synthetic", "--data_root", str(root),
            "--checkpoints_dir", str(ck), "--device", "cpu", "--replications", "1", *extra]
    with pytest.raises((CheckpointError, DatasetError)):
        evaluation_AE.main(parse_with_config(get_evaluation_ae_parser(), argv))
    assert not (ck / "synthetic" / "refused").exists()
