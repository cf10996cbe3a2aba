"""train_AE.py / train_vq.py on the synthetic data: every tiny registry entry trains, writes its run, resumes
exactly."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch

import train_AE
import train_vq
from models import load_tokenizer
from options.config import parse_with_config
from options.tokenizer_options import get_train_ae_parser, get_train_vq_parser
from utils.checkpoint import load_checkpoint

COMMON = ["--batch_size", "16", "--num_workers", "0", "--lr", "2e-3", "--warm_up_iter", "5", "--milestones", "1000",
          "--log_every", "5", "--save_every", "10", "--val_batches", "2"]


def _run(script, parser, argv):
    args = parse_with_config(parser, argv)
    script.main(args)
    return args


def _losses(run_root: str) -> list[float]:
    with open(os.path.join(run_root, "model", "train_log.jsonl")) as f:
        return [json.loads(line)["loss"] for line in f]


@pytest.mark.parametrize("script,parser,model", [
    (train_AE, get_train_ae_parser, "AE_Tiny"),
    (train_AE, get_train_ae_parser, "FSQ_AE_Tiny"),
    (train_AE, get_train_ae_parser, "VQ_AE_Tiny"),
    (train_vq, get_train_vq_parser, "VQVAE_Tiny"),
    (train_vq, get_train_vq_parser, "RVQVAE_Tiny"),
])
def test_tiny_tokenizers_train_and_write_their_run(tmp_path, synthetic_root, script, parser, model):
    ckpt = str(tmp_path / "ckpt")
    _run(script, parser(), ["--dataset_name", "synthetic", "--data_root", synthetic_root, "--checkpoints_dir", ckpt,
                            "--name", model, "--model", model, "--max_iters", "60", "--eval_every", "30", *COMMON])
    root = os.path.join(ckpt, "synthetic", model)
    for name in ("opt.yaml", "train.log", "model/latest.tar", "model/net_best_loss.tar", "model/train_log.jsonl"):
        assert os.path.isfile(os.path.join(root, name)), name
    assert any(n.startswith("events.out.tfevents") for n in os.listdir(os.path.join(root, "model")))
    losses = _losses(root)
    assert len(losses) == 60
    assert np.mean(losses[-10:]) < 0.9 * np.mean(losses[:10])
    state = load_checkpoint(os.path.join(root, "model", "latest.tar"))
    assert state["model_name"] == model and state["stage"] == "tokenizer" and state["step"] == 60
    assert state["dataset"]["name"] == "synthetic" and state["dataset"]["mean"].shape == (263,)
    tok = load_tokenizer(os.path.join(root, "model", "latest.tar"))
    motion = torch.zeros(2, 64, 263)
    assert tok(motion).shape == (2, 64, 263)


def test_rvq_resume_is_bitwise_exact(tmp_path, synthetic_root):
    base = ["--dataset_name", "synthetic", "--data_root", synthetic_root, "--model", "RVQVAE_Tiny",
            "--eval_every", "10", *COMMON]
    full = str(tmp_path / "full")
    _run(train_vq, get_train_vq_parser(), [*base, "--checkpoints_dir", full, "--name", "r", "--max_iters", "24"])
    part = str(tmp_path / "part")
    _run(train_vq, get_train_vq_parser(), [*base, "--checkpoints_dir", part, "--name", "r", "--max_iters", "13"])
    _run(train_vq, get_train_vq_parser(), [*base, "--checkpoints_dir", part, "--name", "r", "--max_iters", "24",
                                           "--is_continue"])
    a = load_checkpoint(os.path.join(full, "synthetic", "r", "model", "latest.tar"))
    b = load_checkpoint(os.path.join(part, "synthetic", "r", "model", "latest.tar"))
    assert a["step"] == b["step"] == 24
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key
    assert _losses(os.path.join(full, "synthetic", "r")) == _losses(os.path.join(part, "synthetic", "r"))


def test_rvq_validation_reports_code_usage_per_layer(tmp_path, synthetic_root):
    """A collapsed residual layer must show in the validation log, not only in the mean over layers."""
    ckpt = str(tmp_path / "ckpt")
    _run(train_vq, get_train_vq_parser(), ["--dataset_name", "synthetic", "--data_root", synthetic_root,
                                           "--checkpoints_dir", ckpt, "--name", "r", "--model", "RVQVAE_Tiny",
                                           "--max_iters", "10", "--eval_every", "10", *COMMON])
    metrics = load_checkpoint(os.path.join(ckpt, "synthetic", "r", "model", "latest.tar"))["metrics"]
    layers = [metrics[f"code_usage_q{q}"] for q in range(3)]  # RVQVAE_Tiny has 3 layers
    assert "code_usage_q3" not in metrics
    assert all(0 < usage <= 1 for usage in layers)
    assert np.mean(layers) == pytest.approx(metrics["code_usage"])


def test_motionmillion_tiny_on_272_features(tmp_path, synthetic_root):
    from utils.motion_process import extract_features_272

    root = tmp_path / "mm"
    (root / "new_joint_vecs").mkdir(parents=True)
    feats = {}
    for split in ("train", "val"):
        ids = open(os.path.join(synthetic_root, f"{split}.txt")).read().split()
        for clip in ids:
            joints = np.load(os.path.join(synthetic_root, "new_joints", f"{clip}.npy"))
            feats[clip] = extract_features_272(joints)
            np.save(root / "new_joint_vecs" / f"{clip}.npy", feats[clip])
        (root / f"{split}.txt").write_text("\n".join(ids))
    stacked = np.concatenate(list(feats.values()))
    np.save(root / "Mean.npy", stacked.mean(0).astype(np.float32))
    np.save(root / "Std.npy", (stacked.std(0) + 1e-3).astype(np.float32))
    ckpt = str(tmp_path / "ckpt")
    _run(train_vq, get_train_vq_parser(), ["--dataset_name", "motionmillion", "--data_root", str(root),
                                           "--checkpoints_dir", ckpt, "--name", "mm", "--model",
                                           "FSQ_MotionMillion_Tiny", "--max_iters", "40", "--eval_every", "20",
                                           *COMMON])
    losses = _losses(os.path.join(ckpt, "motionmillion", "mm"))
    assert np.mean(losses[-8:]) < np.mean(losses[:8])
    tok = load_tokenizer(os.path.join(ckpt, "motionmillion", "mm", "model", "latest.tar"))
    assert tok.encode(torch.zeros(1, 96, 272)).shape == (1, 48)


def test_contradicting_flags_fail_clearly(tmp_path, synthetic_root):
    with pytest.raises(SystemExit):
        parse_with_config(get_train_vq_parser(), ["--name", "x", "--model", "NoSuchModel"])
    args = parse_with_config(get_train_vq_parser(), ["--name", "x", "--model", "VQVAE_Tiny", "--num_quantizers", "3",
                                                     "--data_root", synthetic_root, "--dataset_name", "synthetic"])
    with pytest.raises(SystemExit, match="one codebook"):
        train_vq.main(args)
    base = ["--name", "x", "--data_root", synthetic_root, "--dataset_name", "synthetic",
            "--checkpoints_dir", str(tmp_path / "ck")]
    for extra, message in ((["--model", "VQVAE_Tiny", "--shared_codebook"], "--shared_codebook: residual-layer"),
                           (["--num_quantizers", "1", "--quantize_dropout_prob", "0.2"], "--model VQVAE has one"),
                           (["--model", "RVQVAE_Tiny", "--quantizer", "ema"], "--quantizer ema: the codebook update")):
        with pytest.raises(SystemExit, match=message):
            train_vq.main(parse_with_config(get_train_vq_parser(), [*base, *extra]))
    with pytest.raises(SystemExit):
        parse_with_config(get_train_vq_parser(), [*base, "--batch_size", "0"])
    assert not (tmp_path / "ck").exists()


def test_flags_a_model_would_ignore_fail_before_the_run_folder_exists(tmp_path, synthetic_root):
    ckpt = tmp_path / "ckpt"
    base = ["--dataset_name", "synthetic", "--data_root", synthetic_root, "--checkpoints_dir", str(ckpt), "--name", "x"]
    args = parse_with_config(get_train_vq_parser(), [*base, "--model", "RVQVAE_Tiny", "--conditions", "species"])
    with pytest.raises(ValueError, match=r"only the part-aware models take conditions .*RVQVAE_Tiny would ignore"):
        train_vq.main(args)
    args = parse_with_config(get_train_vq_parser(), [*base, "--model", "PartAwareRVQ_Tiny", "--conditions", "species",
                                                     "--need_evaluation"])
    with pytest.raises(SystemExit, match="drop it for --body_part / --conditions"):
        train_vq.main(args)
    assert not ckpt.exists()


# --down_t 3: tokens of 8 frames, which do not divide the evaluation batches' 196 frames (padded to whole tokens).
@pytest.mark.parametrize("arch", [[], ["--down_t", "3"]], ids=["unit4", "unit8"])
def test_need_evaluation_selects_on_validation_fid(tmp_path, synthetic_root, arch):
    from utils.dataset_specs import get_dataset_spec
    from utils.evaluator import build_evaluator, save_evaluator
    from utils.normalization import eval_normalization, load_mean_std
    from utils.word_vectorizer import LearnedVocab

    ckpt = tmp_path / "ckpt"
    argv = ["--dataset_name", "synthetic", "--data_root", synthetic_root, "--checkpoints_dir", str(ckpt), "--name",
            "fid", "--model", "FSQ_AE_Tiny", "--max_iters", "20", "--eval_every", "10", "--need_evaluation", *arch,
            *COMMON]
    with pytest.raises(SystemExit, match="no usable evaluator"):
        _run(train_AE, get_train_ae_parser(), argv)
    spec = get_dataset_spec("synthetic", synthetic_root)
    ev_mean, ev_std = eval_normalization(*load_mean_std(spec, synthetic_root), spec)
    vocab = LearnedVocab.from_split(synthetic_root, "train", dim_word=8)
    evaluator = build_evaluator("synthetic", ev_mean, ev_std, word_vectors=vocab, sizes="tiny",
                                data_root=synthetic_root)
    save_evaluator(str(ckpt / "synthetic" / "text_mot_match" / "model" / "finest.tar"), evaluator)
    _run(train_AE, get_train_ae_parser(), argv)
    best = load_checkpoint(str(ckpt / "synthetic" / "fid" / "model" / "net_best_fid.tar"))
    assert best["best"]["metric"] == "fid"
    assert np.isfinite(best["metrics"]["fid"]) and best["metrics"]["fid"] >= 0
    assert {"top1", "matching_score", "mpjpe_mm"} <= set(best["metrics"])


def test_window_mode_all_makes_an_epoch_of_every_window(tmp_path, synthetic_root):
    # MoMask / MARDM count an epoch as every 64-frame window of every clip; one random window per clip gives ~80x
    # fewer steps on HumanML3D, so their "50 epochs" would end long before the 150k/250k milestones.
    from utils.dataset_specs import get_dataset_spec
    from utils.tokenizer_stage import load_window_data

    spec = get_dataset_spec("synthetic", synthetic_root)
    per_clip = load_window_data(spec, 64, synthetic_root)
    every = load_window_data(spec, 64, synthetic_root, mode="all", stride=1)
    lengths = per_clip.train.index.lengths[per_clip.train.clips]
    assert len(every.train) == int((lengths - 64 + 1).sum()) > 10 * len(per_clip.train)
    assert len(load_window_data(spec, 64, synthetic_root, mode="all", stride=8).train) == int(
        ((lengths - 64) // 8 + 1).sum())
    with pytest.raises(ValueError, match="window_stride"):
        load_window_data(spec, 64, synthetic_root, mode="all", stride=0)

    ckpt = str(tmp_path / "ckpt")
    args = _run(train_AE, get_train_ae_parser(), [
        "--config", "options/configs/mardm_ae.yaml", "--dataset_name", "synthetic", "--data_root", synthetic_root,
        "--checkpoints_dir", ckpt, "--name", "every", "--model", "AE_Tiny", "--epoch", "1", "--batch_size", "256",
        "--num_workers", "0", "--log_every", "5", "--val_batches", "1"])
    assert args.window_mode == "all" and args.window_stride == 1
    state = load_checkpoint(os.path.join(ckpt, "synthetic", "every", "model", "latest.tar"))
    assert state["step"] == len(every.train) // 256


def test_window_stride_without_window_mode_all_is_refused(tmp_path, synthetic_root):
    # One random window per clip has no stride: --window_stride 8 alone used to train exactly as without it.
    ckpt = str(tmp_path / "ckpt")
    with pytest.raises(ValueError, match="--window_stride 8 applies to --window_mode all only"):
        _run(train_vq, get_train_vq_parser(), [
            "--dataset_name", "synthetic", "--data_root", synthetic_root, "--checkpoints_dir", ckpt, "--name", "st",
            "--model", "RVQVAE_Tiny", "--max_iters", "2", "--window_stride", "8", *COMMON])
    assert not os.path.exists(os.path.join(ckpt, "synthetic", "st", "model", "latest.tar"))


@pytest.mark.parametrize("preset", ["momask_rvq", "mardm_ae", "fsq_ae_high", "part_aware_rvq"])
def test_epoch_based_reference_presets_train_on_every_window(preset):
    from options.config import load_config

    config = load_config(os.path.join("options", "configs", f"{preset}.yaml"))
    assert config["window_mode"] == "all" and config["window_stride"] == 1 and config["window_size"] == 64


def test_feat_bias_trains_on_the_reference_statistics(tmp_path, synthetic_root):
    # MoMask trains its RVQ-VAE with the std of the root and foot-contact groups divided by 25; --feat_bias gives
    # that normalisation and the checkpoint records it, so evaluation and later stages de-normalise with it.
    from options.config import load_config
    from utils.dataset_specs import get_dataset_spec
    from utils.normalization import feat_bias_normalization, load_mean_std

    momask = load_config(os.path.join("options", "configs", "momask_rvq.yaml"))
    assert momask["feat_bias"] == 25.0
    spec = get_dataset_spec("synthetic", synthetic_root)
    mean, std = load_mean_std(spec, synthetic_root)
    ckpt = str(tmp_path / "ckpt")
    _run(train_vq, get_train_vq_parser(), [
        "--dataset_name", "synthetic", "--data_root", synthetic_root, "--checkpoints_dir", ckpt, "--name", "fb",
        "--model", "RVQVAE_Tiny", "--max_iters", "4", "--feat_bias", "25", *COMMON])
    recorded = load_checkpoint(os.path.join(ckpt, "synthetic", "fb", "model", "latest.tar"))["dataset"]
    expected = std.copy()
    expected[:4] /= 25
    expected[-4:] /= 25
    np.testing.assert_allclose(np.asarray(recorded["std"]), expected, rtol=1e-6)
    np.testing.assert_allclose(np.asarray(recorded["mean"]), mean)
    with pytest.raises(ValueError, match="feature bias must be > 0"):
        feat_bias_normalization(mean, std, spec, 0.0)
    # BEAT-X has neither group: --feat_bias 25 would train on its plain statistics without a word.
    beatx = get_dataset_spec("beatx")
    zeros, ones = np.zeros(beatx.dim_pose, np.float32), np.ones(beatx.dim_pose, np.float32)
    with pytest.raises(ValueError, match="'beatx' has no root or foot-contact feature groups"):
        feat_bias_normalization(zeros, ones, beatx, 25.0)
    np.testing.assert_array_equal(feat_bias_normalization(zeros, ones, beatx, 1.0)[1], ones)


def test_feat_bias_must_be_finite():
    # An infinite bias would make the root and contact std 0 and fail later, far from --feat_bias.
    from utils.dataset_specs import get_dataset_spec
    from utils.normalization import feat_bias_normalization

    spec = get_dataset_spec("t2m")
    zeros, ones = np.zeros(spec.dim_pose, np.float32), np.ones(spec.dim_pose, np.float32)
    for bad in (float("inf"), float("nan"), -5.0):
        with pytest.raises(ValueError, match=r"--feat_bias: the feature bias must be > 0 and finite"):
            feat_bias_normalization(zeros, ones, spec, bad, "--feat_bias")


def test_momask_rvq_preset_is_the_readme_command():
    # MoMask README: --batch_size 256 --num_quantizers 6 --max_epoch 50 --quantize_dropout_prob 0.2 --gamma 0.05
    from options.config import load_config

    preset = load_config(os.path.join("options", "configs", "momask_rvq.yaml"))
    assert (preset["batch_size"], preset["num_quantizers"], preset["epoch"]) == (256, 6, 50)
    assert preset["quantize_dropout_prob"] == 0.2 and preset["lr_decay"] == 0.05
    assert preset["nb_code"] == preset["code_dim"] == 512 and preset["commit"] == 0.02


def _drop_config_keys(latest: str, keys: tuple[str, ...]) -> None:
    """Make ``latest`` look saved before the options ``keys`` existed (its config does not record them)."""
    from utils.checkpoint import save_checkpoint

    state = load_checkpoint(latest)
    for key in keys:
        state["config"].pop(key)
    save_checkpoint(latest, state)


def test_resume_keeps_the_windows_and_statistics_it_trained_on(tmp_path, synthetic_root):
    # A run started before --window_mode / --feat_bias existed trained on one random window per clip and the
    # dataset's Mean/Std. Resumed with a preset that now sets others, it must not switch data mid-run (nor recompute
    # --epoch as ~80x more steps): the refusal names each setting, both values and the flags that resume it.
    from utils.checkpoint import CheckpointError
    from utils.dataset_specs import get_dataset_spec
    from utils.tokenizer_stage import load_window_data

    ckpt = str(tmp_path / "ckpt")
    base = ["--dataset_name", "synthetic", "--data_root", synthetic_root, "--checkpoints_dir", ckpt, "--name", "old",
            "--model", "RVQVAE_Tiny", "--epoch", "4", *COMMON]
    _run(train_vq, get_train_vq_parser(), [*base, "--max_iters", "6"])
    latest = os.path.join(ckpt, "synthetic", "old", "model", "latest.tar")
    _drop_config_keys(latest, ("window_mode", "window_stride", "feat_bias"))
    with pytest.raises(CheckpointError) as refused:
        _run(train_vq, get_train_vq_parser(), [*base, "--is_continue", "--window_mode", "all", "--feat_bias", "25"])
    message = str(refused.value)
    assert "--window_mode random (not recorded: the run predates the option) but all now" in message
    assert "--feat_bias 1.0 (not recorded: the run predates the option) but 25.0 now" in message
    assert "add --window_mode random --feat_bias 1.0 to the command" in message
    assert load_checkpoint(latest)["step"] == 6  # refused before training
    # The same command with the run's own settings resumes.
    _run(train_vq, get_train_vq_parser(), [*base, "--is_continue", "--window_mode", "random", "--feat_bias", "1"])
    state = load_checkpoint(latest)
    clips = load_window_data(get_dataset_spec("synthetic", synthetic_root), None, synthetic_root).train
    assert state["step"] == 4 * (len(clips) // 16)
    assert state["config"]["window_mode"] == "random" and state["config"]["feat_bias"] == 1.0


def test_kmeans_init_and_rotation_trick_flags_are_recorded_and_kept_on_resume(tmp_path, synthetic_root):
    from utils.checkpoint import CheckpointError

    ckpt = str(tmp_path / "ckpt")
    base = ["--dataset_name", "synthetic", "--data_root", synthetic_root, "--checkpoints_dir", ckpt, "--name", "km",
            "--model", "RVQVAE_Tiny", "--kmeans_init", "--kmeans_iters", "3", *COMMON]
    _run(train_vq, get_train_vq_parser(), [*base, "--rotation_trick", "--max_iters", "4"])
    latest = os.path.join(ckpt, "synthetic", "km", "model", "latest.tar")
    state = load_checkpoint(latest)
    assert {k: state["model_args"][k] for k in ("kmeans_init", "kmeans_iters", "rotation_trick")} == {
        "kmeans_init": True, "kmeans_iters": 3, "rotation_trick": True}
    layers = load_tokenizer(latest).model.quantizer.layers
    assert all(layer.kmeans_init and layer.kmeans_iters == 3 and layer.rotation_trick for layer in layers)
    # A k-means initialised layer starts from cluster sizes, not counts of 1: after 4 EMA steps (mu 0.99) of batches
    # of 16 windows x 16 tokens, its counts still sum to about the 256 rows of a batch.
    assert 200 < float(state["model"]["quantizer.layers.0.code_count"].sum()) < 300
    # Resuming without --rotation_trick would train another model: refused as any other model-argument change.
    opt_yaml = os.path.join(ckpt, "synthetic", "km", "opt.yaml")
    with pytest.raises(CheckpointError, match="'rotation_trick': True in the checkpoint but False requested.*"
                                              f"resume with --config {opt_yaml} --is_continue"):
        _run(train_vq, get_train_vq_parser(), [*base, "--max_iters", "6", "--is_continue"])
    _run(train_vq, get_train_vq_parser(), [*base, "--rotation_trick", "--max_iters", "6", "--is_continue"])
    assert load_checkpoint(latest)["step"] == 6
    # The run's opt.yaml, which the refusal names, resumes it with every flag it was started with.
    _run(train_vq, get_train_vq_parser(), ["--config", opt_yaml, "--max_iters", "8", "--is_continue"])
    assert load_checkpoint(latest)["step"] == 8
    # The VQ ablation of train_AE.py takes the flags too; --kmeans_iters alone is refused before the run exists.
    ae = ["--dataset_name", "synthetic", "--data_root", synthetic_root, "--checkpoints_dir", ckpt, "--model",
          "VQ_AE_Tiny", *COMMON, "--max_iters", "2"]
    _run(train_AE, get_train_ae_parser(), [*ae, "--name", "vq", "--kmeans_init", "--rotation_trick"])
    vq_args = load_checkpoint(os.path.join(ckpt, "synthetic", "vq", "model", "latest.tar"))["model_args"]
    assert vq_args["kmeans_init"] is True and vq_args["rotation_trick"] is True and vq_args["kmeans_iters"] == 10
    with pytest.raises(SystemExit, match="--kmeans_iters 5: the iterations of --kmeans_init"):
        _run(train_AE, get_train_ae_parser(), [*ae, "--name", "iters", "--kmeans_iters", "5"])
    assert not os.path.exists(os.path.join(ckpt, "synthetic", "iters"))


def test_a_run_saved_before_kmeans_init_and_rotation_trick_resumes(tmp_path, synthetic_root):
    from utils.checkpoint import CheckpointError, save_checkpoint

    ckpt = str(tmp_path / "ckpt")
    base = ["--dataset_name", "synthetic", "--data_root", synthetic_root, "--checkpoints_dir", ckpt, "--name", "old",
            "--model", "VQVAE_Tiny", *COMMON]
    _run(train_vq, get_train_vq_parser(), [*base, "--max_iters", "3"])
    latest = os.path.join(ckpt, "synthetic", "old", "model", "latest.tar")
    state = load_checkpoint(latest)
    for key in ("kmeans_init", "kmeans_iters", "rotation_trick"):
        state["model_args"].pop(key)
    save_checkpoint(latest, state)
    with pytest.raises(CheckpointError, match="differ in 1 entry: 'kmeans_init': absent in the checkpoint but "
                                              "True requested\\."):
        _run(train_vq, get_train_vq_parser(), [*base, "--max_iters", "5", "--is_continue", "--kmeans_init"])
    _run(train_vq, get_train_vq_parser(), [*base, "--max_iters", "5", "--is_continue"])
    resumed = load_checkpoint(latest)
    assert resumed["step"] == 5 and "kmeans_init" not in resumed["model_args"]
    assert not load_tokenizer(latest).model.quantizer.kmeans_init


def test_a_failed_main_before_it_leaves_nothing_in_the_run_log(tmp_path, synthetic_root):
    # A generator main() holds its set-up records until its run folder exists; one that fails before (a missing
    # tokenizer, a refused flag) leaves them held in the process. A tokenizer run started next in the same process
    # (tests, notebooks) starts its own log afresh rather than writing the failed run's records into it.
    import logging

    from utils.logging_utils import setup_logging

    root = logging.getLogger()
    before = list(root.handlers), root.level
    try:
        setup_logging(hold=True, is_main=True)
        logging.getLogger("train_MARDM").warning("set-up of another run that failed")
        ckpt = str(tmp_path / "ckpt")
        _run(train_AE, get_train_ae_parser(), ["--dataset_name", "synthetic", "--data_root", synthetic_root,
                                               "--checkpoints_dir", ckpt, "--name", "a", "--model", "AE_Tiny",
                                               "--max_iters", "2", "--eval_every", "0", *COMMON])
        log = (tmp_path / "ckpt" / "synthetic" / "a" / "train.log").read_text()
        assert "training starts" in log or "finished at step 2" in log
        assert "another run that failed" not in log
    finally:
        for handler in list(root.handlers):
            if getattr(handler, "_installed_by_setup_logging", False):
                root.removeHandler(handler)
                handler.close()
        for handler in before[0]:
            if handler not in root.handlers:
                root.addHandler(handler)
        root.setLevel(before[1])


def test_validation_loss_is_the_mean_over_windows_not_over_batches():
    # Six validation windows in batches of four: the last batch holds two. Its loss counts for two windows, not for
    # half of the validation set.
    from types import SimpleNamespace

    from utils.tokenizer_stage import reconstruction_metrics

    class Identity(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.unused = torch.nn.Parameter(torch.zeros(()))
            self.calls = 0

        def forward(self, motion):
            self.calls += 1
            return SimpleNamespace(recon=motion, indices_or_latents=motion)

    def terms_fn(motion, out):
        return out.recon.mean(), {"loss": out.recon.mean()}

    windows = torch.cat([torch.zeros(4, 8, 3), torch.ones(2, 8, 3)])
    loader = torch.utils.data.DataLoader(windows, batch_size=4)
    spec = SimpleNamespace(representation="smplx_rot6d", dim_pose=3)  # no joint recovery: loss terms only
    model = Identity()
    metrics = reconstruction_metrics(model, loader, spec, np.zeros(3), np.ones(3), terms_fn)
    assert metrics["loss"] == pytest.approx(2 / 6)
    assert model.calls == 2  # one forward per batch serves the loss terms and the metrics



def test_validation_code_perplexity_is_of_all_windows_per_layer():
    # Layer 0 spreads the val windows over all 4 codes, 2 per batch; layer 1 collapsed onto code 0. Each layer's
    # perplexity is that of the whole val set's histogram (4 and 1), not of a batch's (2 for layer 0).
    from types import SimpleNamespace

    from utils.tokenizer_stage import reconstruction_metrics

    class TwoLayerCodes(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.quantizer = SimpleNamespace(codebook_size=4)
            self.unused = torch.nn.Parameter(torch.zeros(()))

        def forward(self, motion):
            first = motion[:, :2, 0].long()  # (B, N) codes carried in the motion itself
            return SimpleNamespace(recon=motion, indices_or_latents=torch.stack([first, torch.zeros_like(first)], -1))

    def terms_fn(motion, out):
        return motion.mean(), {"loss": motion.mean()}

    windows = torch.tensor([0.0, 1.0, 2.0, 3.0]).repeat_interleave(2)[:, None, None].expand(8, 2, 3).contiguous()
    loader = torch.utils.data.DataLoader(windows, batch_size=4)  # codes {0, 1} in the first batch, {2, 3} after
    spec = SimpleNamespace(representation="smplx_rot6d", dim_pose=3)
    metrics = reconstruction_metrics(TwoLayerCodes(), loader, spec, np.zeros(3), np.ones(3), terms_fn)
    assert metrics["code_perplexity_q0"] == pytest.approx(4.0, rel=1e-4)
    assert metrics["code_perplexity_q1"] == pytest.approx(1.0, rel=1e-4)
    assert metrics["code_perplexity"] == pytest.approx(2.5, rel=1e-4)
    assert (metrics["code_usage_q0"], metrics["code_usage_q1"]) == (1.0, 0.25)

def test_resume_keeps_the_window_size_it_trained_on(tmp_path, synthetic_root):
    # A run trained on the spec's 64-frame windows (no --window_size) must not go on with 32-frame ones: the refusal
    # names the flag, the run's value and the new one; the spec's size given explicitly is the same setting.
    from utils.checkpoint import CheckpointError

    base = ["--dataset_name", "synthetic", "--data_root", synthetic_root, "--checkpoints_dir", str(tmp_path / "ckpt"),
            "--name", "w", "--model", "RVQVAE_Tiny", *COMMON]
    _run(train_vq, get_train_vq_parser(), [*base, "--max_iters", "2"])
    latest = os.path.join(tmp_path, "ckpt", "synthetic", "w", "model", "latest.tar")
    with pytest.raises(CheckpointError) as refused:
        _run(train_vq, get_train_vq_parser(), [*base, "--max_iters", "4", "--is_continue", "--window_size", "32"])
    message = str(refused.value)
    assert "--window_size 64 but 32 now" in message and "add --window_size 64 to the command" in message
    assert load_checkpoint(latest)["step"] == 2
    _run(train_vq, get_train_vq_parser(), [*base, "--max_iters", "4", "--is_continue", "--window_size", "64"])
    assert load_checkpoint(latest)["step"] == 4


def test_resume_reports_a_changed_loss_weighting(tmp_path, synthetic_root, caplog):
    # The loss terms and weights are the training objective: the command line wins on resume (a run may go on with
    # another weighting), but a value other than the run's is named with both, as a changed schedule is. --commit
    # weighs the commitment loss of codebooks only, which a continuous AE does not have.
    import logging

    ckpt = str(tmp_path / "ckpt")
    vq = ["--dataset_name", "synthetic", "--data_root", synthetic_root, "--checkpoints_dir", ckpt, "--name", "vq",
          "--model", "VQVAE_Tiny", *COMMON]
    _run(train_vq, get_train_vq_parser(), [*vq, "--max_iters", "2"])
    with caplog.at_level(logging.WARNING, logger="utils.tokenizer_stage"):
        _run(train_vq, get_train_vq_parser(), [*vq, "--max_iters", "4", "--is_continue", "--recons_loss", "l1",
                                               "--loss_vel", "0.25", "--loss_joint_vel", "0.5", "--commit", "0.05"])
    changed = [r.message for r in caplog.records if "training objective" in r.message]
    latest = os.path.join(ckpt, "synthetic", "vq", "model", "latest.tar")
    assert changed == [f"{latest}: resumed with another training objective than the run was saved with: "
                       f"--recons_loss l1_smooth -> l1, --aux_loss_joints 0.5 -> 0.25, --loss_joint_vel 0.0 -> 0.5, "
                       f"--commit 0.02 -> 0.05; the new values apply from step 2 (add --recons_loss l1_smooth "
                       f"--aux_loss_joints 0.5 --loss_joint_vel 0.0 --commit 0.02 to train as before)"]
    assert load_checkpoint(latest)["config"]["recons_loss"] == "l1"
    caplog.clear()
    ae = ["--dataset_name", "synthetic", "--data_root", synthetic_root, "--checkpoints_dir", ckpt, "--name", "ae",
          "--model", "AE_Tiny", *COMMON]
    _run(train_AE, get_train_ae_parser(), [*ae, "--max_iters", "2"])
    with caplog.at_level(logging.WARNING, logger="utils.tokenizer_stage"):
        _run(train_AE, get_train_ae_parser(), [*ae, "--max_iters", "4", "--is_continue", "--commit", "0.05"])
        _run(train_AE, get_train_ae_parser(), [*ae, "--max_iters", "6", "--is_continue", "--commit", "0.05",
                                               "--aux_loss_joints", "2"])
    changed = [r.message for r in caplog.records if "training objective" in r.message]
    assert len(changed) == 1 and "--aux_loss_joints 1.0 -> 2.0; the new values apply from step 4" in changed[0]
    assert "commit" not in changed[0]
