"""Stage parsers and prepare_data.py: flag forms and ranges the recipes rely on, the architecture keywords the flags
turn into, the device and head-split checks, and what each prepare_data.py subcommand passes on from its flags."""

from __future__ import annotations

import argparse
import os

import numpy as np
import pytest
import torch

import prepare_data
from options.base_options import get_base_parser
from options.config import parse_with_config
from options.eval_generator_options import (
    check_family_flags,
    family_sampling_options,
    get_evaluation_generator_parser,
    get_sample_parser,
)
from options.eval_options import get_evaluation_ae_parser, get_train_evaluator_parser, torch_device
from options.generator_options import TOKENIZER_WHICH, get_train_length_estimator_parser, get_train_mardm_parser
from options.prepare_data_options import get_prepare_data_parser
from options.token_generator_options import (
    check_head_split,
    get_train_res_transformer_parser,
    get_train_t2m_transformer_parser,
)
from options.token_generator_options import model_overrides as transformer_overrides
from options.tokenizer_options import get_train_ae_parser, get_train_vq_parser, model_overrides


def _refused(parser: argparse.ArgumentParser, argv: list[str], capsys) -> str:
    """The error argparse prints for ``argv``, which must be refused."""
    with pytest.raises(SystemExit):
        parse_with_config(parser, argv)
    return capsys.readouterr().err


# ----------------------------------------------------------------------------------------------------------------------
# Shared training flags
# ----------------------------------------------------------------------------------------------------------------------

def test_zero_is_a_valid_count_for_the_cadence_and_schedule_flags():
    """Zero warm-up, zero lr decay, per-epoch validation/saving and in-process loading are accepted as zeros."""
    args = parse_with_config(get_base_parser(), ["--name", "r", "--warm_up_iter", "0", "--lr_decay", "0",
                                                 "--eval_every", "0", "--save_every", "0", "--num_workers", "0",
                                                 "--milestones", "0"])
    assert (args.warm_up_iter, args.lr_decay, args.eval_every, args.save_every, args.num_workers,
            args.milestones) == (0, 0.0, 0, 0, 0, [0])


@pytest.mark.parametrize("flag, value", [("--warm_up_iter", "-1"), ("--lr_decay", "-0.1"), ("--save_every", "-5"),
                                         ("--max_iters", "2.5"), ("--epoch", "1.5"), ("--mixed_precision", "fp32")])
def test_shared_flags_refuse_values_of_the_wrong_sign_or_type(flag, value, capsys):
    """Negative counts, fractional step counts and unknown precisions are refused naming the flag."""
    err = _refused(get_base_parser(), ["--name", "r", flag, value], capsys)
    assert f"argument {flag}" in err and repr(value) in err, err


def test_shared_defaults_seed_dataset_and_switches():
    """The base parser runs on HumanML3D (t2m) with seed 3407 and every switch off, resuming included."""
    args = parse_with_config(get_base_parser(), ["--name", "r"])
    assert (args.dataset_name, args.seed, args.is_continue, args.lr, args.ema_decay) == ("t2m", 3407, False, 2e-4,
                                                                                       None)
    for precision in ("bf16", "fp16"):
        assert parse_with_config(get_base_parser(), ["--name", "r", "--mixed_precision", precision]).mixed_precision \
            == precision


def test_ema_decay_none_is_accepted_on_the_command_line_and_in_a_preset(tmp_path):
    """'none' on the command line and null in a preset both turn the generator's default EMA off."""
    assert parse_with_config(get_train_mardm_parser(), ["--name", "g", "--ema_decay", "none"]).ema_decay is None
    preset = tmp_path / "p.yaml"
    preset.write_text("ema_decay: null\n")
    assert parse_with_config(get_train_mardm_parser(), ["--name", "g", "--config", str(preset)]).ema_decay is None


# ----------------------------------------------------------------------------------------------------------------------
# Tokenizer stages
# ----------------------------------------------------------------------------------------------------------------------

def test_loss_vel_is_momasks_spelling_of_the_joint_position_weight():
    """--loss_vel and --aux_loss_joints set the same weight."""
    for flag in ("--loss_vel", "--aux_loss_joints"):
        assert parse_with_config(get_train_vq_parser(), ["--name", "r", flag, "0.25"]).aux_loss_joints == 0.25


@pytest.mark.parametrize("argv, flag", [(["--levels", "1"], "--levels"), (["--mu", "1"], "--mu"),
                                        (["--quantize_dropout_prob", "1.5"], "--quantize_dropout_prob"),
                                        (["--cond_drop_prob", "1"], "--cond_drop_prob"),
                                        (["--window_mode", "every"], "--window_mode"),
                                        (["--recons_loss", "huber"], "--recons_loss")])
def test_tokenizer_flags_refuse_values_without_meaning(argv, flag, capsys):
    """An FSQ level of 1, a codebook decay of 1 and out-of-range probabilities or modes are refused."""
    assert f"argument {flag}" in _refused(get_train_vq_parser(), ["--name", "r", *argv], capsys)


def test_fsq_levels_take_one_value_per_dimension():
    """--levels is a list, one level per FSQ dimension."""
    args = parse_with_config(get_train_ae_parser(), ["--name", "r", "--levels", "8", "5", "5", "5", "--mu", "0"])
    assert (args.levels, args.mu) == ([8, 5, 5, 5], 0.0)


def test_every_architecture_flag_reaches_the_tokenizer_constructor():
    """Each architecture flag that is given becomes a constructor keyword (the quantizer as quantizer_type); the ones
    left out are not passed."""
    argv = ["--name", "r", "--width", "64", "--depth", "2", "--down_t", "0", "--dilation_growth_rate", "3",
            "--output_emb_width", "16", "--code_dim", "8", "--nb_code", "32", "--levels", "5", "5",
            "--entropy_loss_weight", "0", "--diversity_gamma", "0.5", "--commitment_loss_weight", "0.25",
            "--inv_temperature", "10", "--mu", "0.5", "--no-kmeans_init", "--kmeans_iters", "3", "--no-rotation_trick",
            "--norm", "GN", "--activation", "gelu", "--dropout", "0", "--num_quantizers", "2",
            "--quantize_dropout_prob", "0", "--no-shared_codebook", "--quantizer", "ema", "--per_part_dim", "4",
            "--spatial_layers", "1"]
    assert model_overrides(parse_with_config(get_train_vq_parser(), argv)) == {
        "width": 64, "depth": 2, "down_t": 0, "dilation_growth_rate": 3, "output_emb_width": 16, "code_dim": 8,
        "nb_code": 32, "levels": [5, 5], "entropy_loss_weight": 0.0, "diversity_gamma": 0.5,
        "commitment_loss_weight": 0.25, "inv_temperature": 10.0, "mu": 0.5, "kmeans_init": False, "kmeans_iters": 3,
        "rotation_trick": False, "norm": "GN", "activation": "gelu", "dropout": 0.0, "num_quantizers": 2,
        "quantize_dropout_prob": 0.0, "shared_codebook": False, "quantizer_type": "ema", "per_part_dim": 4,
        "spatial_layers": 1}
    assert model_overrides(parse_with_config(get_train_ae_parser(), ["--name", "r"])) == {}


# ----------------------------------------------------------------------------------------------------------------------
# Generator and token-generator stages
# ----------------------------------------------------------------------------------------------------------------------

def test_tokenizer_file_choices_start_with_best():
    """'best' takes the first file that exists in the order net_best_fid, net_best_loss, latest, and is the default of
    every generator stage."""
    assert TOKENIZER_WHICH == ("best", "net_best_fid", "net_best_loss", "latest")
    assert parse_with_config(get_train_mardm_parser(), ["--name", "g"]).ae_which == "best"
    assert parse_with_config(get_train_t2m_transformer_parser(), ["--name", "g"]).vq_which == "best"


def test_length_estimator_refuses_a_hidden_width_below_its_minimum_and_keeps_no_warm_up(capsys):
    """The length estimator trains without warm-up or decay and needs a hidden width that halves to two features."""
    args = parse_with_config(get_train_length_estimator_parser(), [])
    assert (args.warm_up_iter, args.weight_decay, args.ema_decay) == (0, 0.0, None)
    assert "argument --hidden_dim" in _refused(get_train_length_estimator_parser(), ["--hidden_dim", "2"], capsys)


def test_token_generator_stages_cache_nothing_and_only_the_base_stage_generates_steps():
    """--cache_tokens is off by default; the masked transformer validates with 18 steps, the residual one has no
    --time_steps flag."""
    base = parse_with_config(get_train_t2m_transformer_parser(), ["--name", "g"])
    res = parse_with_config(get_train_res_transformer_parser(), ["--name", "g"])
    assert (base.cache_tokens, res.cache_tokens, base.time_steps) == (False, False, 18)
    assert not hasattr(res, "time_steps")
    for args in (base, res):
        assert (args.epoch, args.milestones, args.batch_size, args.weight_decay) == (500, [50_000], 64, 1e-5)


def test_transformer_flags_become_the_constructors_keywords():
    """MoMask's --n_layers / --n_heads reach the constructor as num_layers / num_heads, the rest under their own
    names."""
    argv = ["--name", "g", "--latent_dim", "64", "--ff_size", "128", "--n_layers", "2", "--n_heads", "4",
            "--dropout", "0", "--cond_drop_prob", "0", "--label_smoothing", "0.1", "--train_mask_count", "padded"]
    assert transformer_overrides(parse_with_config(get_train_t2m_transformer_parser(), argv)) == {
        "latent_dim": 64, "ff_size": 128, "num_layers": 2, "num_heads": 4, "dropout": 0.0, "cond_drop_prob": 0.0,
        "label_smoothing": 0.1, "train_mask_count": "padded"}
    assert transformer_overrides(parse_with_config(get_train_t2m_transformer_parser(), ["--name", "g"])) == {}


def test_head_split_names_the_flags_that_were_typed():
    """A width the heads do not divide names both typed flags with their values; a divisible pair passes."""
    sizes = {"M": {"latent_dim": 384, "num_heads": 6}}
    check_head_split(argparse.Namespace(model="M", latent_dim=None, n_heads=None), sizes)
    check_head_split(argparse.Namespace(model="M", latent_dim=64, n_heads=8), sizes)
    with pytest.raises(ValueError, match=r"^--n_heads 5 does not divide --latent_dim 64: "):
        check_head_split(argparse.Namespace(model="M", latent_dim=64, n_heads=5), sizes)
    with pytest.raises(ValueError, match=r"^--n_heads 5 does not divide M's latent_dim 384 \(no --latent_dim\): "):
        check_head_split(argparse.Namespace(model="M", latent_dim=None, n_heads=5), sizes)


# ----------------------------------------------------------------------------------------------------------------------
# Evaluation parsers
# ----------------------------------------------------------------------------------------------------------------------

def test_a_cuda_index_past_the_last_device_is_refused(monkeypatch):
    """cuda:N needs N below the device count; the last device is accepted."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert torch_device("cuda:1") == "cuda:1" and torch_device("cuda") == "cuda"
    with pytest.raises(argparse.ArgumentTypeError, match=r"cuda:2: this machine has 2 CUDA devices \(cuda:0 to "
                                                         r"cuda:1\)"):
        torch_device("cuda:2")


def test_cpu_is_always_a_device_and_mps_only_when_available(monkeypatch):
    """cpu is accepted without asking any backend; mps is refused when this torch has none."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    assert torch_device("cpu") == "cpu"
    with pytest.raises(argparse.ArgumentTypeError, match=r"mps: MPS is not available"):
        torch_device("mps")


def test_evaluator_and_tokenizer_evaluation_defaults():
    """The evaluator trains Guo et al.'s recipe; the tokenizer evaluation runs the test split, fresh, on its own run."""
    train = parse_with_config(get_train_evaluator_parser(), [])
    assert (train.batch_size, train.grad_clip, train.margin, train.neg_shift, train.pretrain_window) == (
        32, 0.5, 10.0, "nonzero", 24)
    assert parse_with_config(get_train_evaluator_parser(), ["--max_epoch", "3"]).epoch == 3
    ae = parse_with_config(get_evaluation_ae_parser(), ["--device", "cpu"])
    assert (ae.name, ae.split, ae.is_continue, ae.batch_size, ae.per_motion, ae.num_workers) == (
        "", "test", False, 32, False, 0)


# ----------------------------------------------------------------------------------------------------------------------
# Generator evaluation and sampling parsers
# ----------------------------------------------------------------------------------------------------------------------

def test_gumbel_sample_is_momasks_flag_for_gumbel_draws():
    """--gumbel_sample sets --sampling gumbel and is passed to the family as its sampling option."""
    args = parse_with_config(get_sample_parser(), ["--name", "g", "--gumbel_sample"])
    assert args.sampling == "gumbel" and family_sampling_options(args) == {"sampling": "gumbel"}


def test_a_refused_sampling_option_names_the_flag_as_typed():
    """The sampling option is named by both of its flags, and the family's own flags are listed."""
    with pytest.raises(ValueError, match=r"^MARDM generators take no --sampling/--gumbel_sample; their sampling flags: "
                                         r"--head_steps, --head_solver$"):
        check_family_flags({"sampling": "gumbel"}, "MARDM", ["head_steps", "head_solver"])
    check_family_flags({"head_steps": 5}, "MARDM", ["head_steps", "head_solver"])


def test_multimodality_and_sequence_defaults():
    """Multimodality is on unless --no_mm; a sequence joins segments over 2 s seams; one sample per prompt."""
    evaluate = parse_with_config(get_evaluation_generator_parser(), ["--name", "g", "--device", "cpu"])
    assert evaluate.cal_mm is True and evaluate.which_epoch == "latest"
    assert parse_with_config(get_evaluation_generator_parser(), ["--name", "g", "--no_mm"]).cal_mm is False
    sample = parse_with_config(get_sample_parser(), ["--name", "g", "--device", "cpu"])
    assert (sample.transition_seconds, sample.repeat_times, sample.format, sample.temperature) == (2.0, 1, "auto",
                                                                                                    1.0)


# ----------------------------------------------------------------------------------------------------------------------
# prepare_data.py
# ----------------------------------------------------------------------------------------------------------------------

def test_prepare_data_subcommand_defaults():
    """Each subcommand's defaults: 400 synthetic motions from seed 0, imports at 20 fps from seed 0, neutral SMPL."""
    parser = get_prepare_data_parser()
    synthetic = parser.parse_args(["synthetic"])
    assert (synthetic.num_motions, synthetic.seed, synthetic.keep_existing) == (400, 0, False)
    bvh = parser.parse_args(["bvh", "--src", "s", "--out", "o", "--skeleton", "lafan"])
    assert (bvh.fps, bvh.seed, bvh.mirror, bvh.labels) == (20.0, 0, False, None)
    amass = parser.parse_args(["amass", "--src", "s", "--out", "o", "--body_model", "m.npz"])
    assert (amass.fps, amass.seed, amass.body_models) == (20.0, 0, None)
    smpl = parser.parse_args(["export_smpl", "j.npy", "--body_model", "m.npz"])
    assert (smpl.gender, smpl.fps, smpl.out, smpl.dataset_name) == ("neutral", None, None, "t2m")
    assert parser.parse_args(["pfnn", "--dataset_name", "t2m", "--out", "o"]).gait is False
    assert parser.parse_args(["stats", "--dataset_name", "t2m"]).split is None


@pytest.mark.parametrize("argv", [["bvh", "--src", "s", "--skeleton", "lafan"],
                                  ["amass", "--out", "o", "--body_model", "m.npz"],
                                  ["amass", "--src", "s", "--body_model", "m.npz"],
                                  ["export_smpl", "j.npy"], ["pfnn", "--dataset_name", "t2m"]])
def test_prepare_data_required_flags(argv, capsys):
    """Each subcommand's required flag is refused when missing."""
    with pytest.raises(SystemExit):
        get_prepare_data_parser().parse_args(argv)
    assert "the following arguments are required" in capsys.readouterr().err


@pytest.fixture
def walk(tmp_path):
    path = tmp_path / "walk.npy"
    np.save(path, np.random.default_rng(0).standard_normal((10, 22, 3)).astype(np.float32))
    return path


def _bvh_header(path) -> tuple[str, float]:
    """The Frame Time line and the first OFFSET's largest component of a BVH file."""
    lines = [line.strip() for line in open(path)]
    frame_time = next(line for line in lines if line.startswith("Frame Time:"))
    offsets = [line for line in lines if line.startswith("OFFSET")]
    return frame_time, max(abs(float(v)) for line in offsets[1:] for v in line.split()[1:])


def test_export_bvh_writes_next_to_the_input_at_the_datasets_rate_unless_told(walk, tmp_path):
    """export_bvh writes <stem>.bvh at t2m's 20 fps by default, and --fps / --scale change the frame time and the
    lengths."""
    assert prepare_data.main(prepare_data.parse_args(["export_bvh", str(walk)])) == 0
    assert sorted(os.listdir(tmp_path)) == ["walk.bvh", "walk.npy"]
    frame_time, length = _bvh_header(tmp_path / "walk.bvh")
    assert frame_time == "Frame Time: 0.05000000"
    out = tmp_path / "scaled.bvh"
    assert prepare_data.main(prepare_data.parse_args(["export_bvh", str(walk), "--out", str(out), "--fps", "25",
                                                      "--scale", "100"])) == 0
    scaled_time, scaled_length = _bvh_header(out)
    assert scaled_time == "Frame Time: 0.04000000"
    assert scaled_length == pytest.approx(100 * length, rel=1e-4)


def test_output_file_refuses_an_existing_out_without_overwrite_and_takes_it_with(walk, tmp_path):
    """An existing --out is refused naming it unless --overwrite; a new one is returned as given."""
    taken = tmp_path / "taken.bvh"
    taken.write_text("x")
    cfg = argparse.Namespace(input=str(walk), overwrite=False)
    with pytest.raises(FileExistsError, match="--out exists; pass --overwrite"):
        prepare_data._output_file(str(taken), cfg)
    assert prepare_data._output_file(str(taken), argparse.Namespace(input=str(walk), overwrite=True)) == str(taken)
    fresh = tmp_path / "new" / "walk.bvh"
    assert prepare_data._output_file(str(fresh), cfg) == str(fresh) and fresh.parent.is_dir()


@pytest.fixture(scope="module")
def synthetic_root(tmp_path_factory):
    from utils.synthetic import generate_synthetic_dataset

    root = tmp_path_factory.mktemp("prepare_contracts") / "Synthetic"
    generate_synthetic_dataset(str(root), 3, seed=0)
    return root


def test_pfnn_reads_the_data_root_and_adds_gait_columns_when_asked(synthetic_root, tmp_path, capsys):
    """pfnn exports the split of --data_root, and --gait adds columns to the input rows."""
    base = ["pfnn", "--dataset_name", "synthetic", "--data_root", str(synthetic_root), "--split", "train"]
    assert prepare_data.main(prepare_data.parse_args([*base, "--out", str(tmp_path / "plain")])) == 0
    plain = capsys.readouterr().out
    assert prepare_data.main(prepare_data.parse_args([*base, "--out", str(tmp_path / "gait"), "--gait"])) == 0
    gait = capsys.readouterr().out
    plain_x = np.load(tmp_path / "plain" / "Input.npy")
    gait_x = np.load(tmp_path / "gait" / "Input.npy")
    assert plain_x.shape[0] == gait_x.shape[0] > 0 and gait_x.shape[1] > plain_x.shape[1]
    assert f"X {plain_x.shape[1]} columns" in plain and f"X {gait_x.shape[1]} columns" in gait


def test_export_smpl_records_the_given_frame_rate_and_gender(tmp_path):
    """export_smpl writes <stem>_smpl.npz next to the input, with --fps and --gender as given."""
    from test_amass import _body_model

    from utils.smpl_body import load_body_model, smpl_joints, z_up_to_y_up

    model = _body_model(tmp_path / "model.npz")
    rng = np.random.default_rng(3)
    poses = np.zeros((6, 156))
    poses[:, 3:66] = rng.normal(0, 0.2, (6, 63))
    joints = z_up_to_y_up(smpl_joints(load_body_model(str(model)), poses, rng.normal(0, 0.1, (6, 3)), np.zeros(10)))
    source = tmp_path / "walk.npy"
    np.save(source, joints.astype(np.float32))
    argv = ["export_smpl", str(source), "--body_model", str(model), "--fps", "30", "--gender", "female"]
    assert prepare_data.main(prepare_data.parse_args(argv)) == 0
    with np.load(tmp_path / "walk_smpl.npz") as data:
        assert float(data["mocap_framerate"]) == 30.0 and str(data["gender"]) == "female"
        assert data["poses"].shape == (6, 156)


def test_assets_checks_the_evaluator_given_instead_of_the_runs_one(synthetic_root, tmp_path, capsys):
    """--evaluator_dir replaces <checkpoints_dir>/<dataset>/text_mot_match, and a missing evaluator fails the check."""
    other = tmp_path / "other_evaluator"
    argv = ["assets", "--dataset_name", "synthetic", "--data_root", str(synthetic_root), "--checkpoints_dir",
            str(tmp_path / "ck"), "--evaluator_dir", str(other), "--clip_path", ""]
    assert prepare_data.main(prepare_data.parse_args(argv)) == 1
    printed = capsys.readouterr().out
    assert str(other / "model" / "finest.tar") in printed and "text_mot_match" not in printed


def test_bvh_import_resamples_to_the_given_rate_and_mirrors_when_asked(tmp_path):
    """bvh --fps sets the rate the clips are resampled to, and --mirror adds the M<name> copy of each clip."""
    from test_bvh import _write_yaml

    from utils.bvh import SMPL22_JOINT_NAMES
    from utils.bvh_export import write_bvh
    from utils.synthetic import synthesize_motion

    motion = synthesize_motion(np.random.default_rng(8), "jump")
    src = tmp_path / "mocap"
    src.mkdir()
    write_bvh(src / "jump_take1.bvh", motion.joints, fps=30, scale=100.0)
    skeleton = _write_yaml(tmp_path / "smpl_names.yaml", {n: n for n in SMPL22_JOINT_NAMES}, unit_scale=0.01)
    out = tmp_path / "Mocap10"
    argv = ["bvh", "--src", str(src), "--out", str(out), "--skeleton", skeleton, "--fps", "10", "--mirror"]
    assert prepare_data.main(prepare_data.parse_args(argv)) == 0
    assert sorted(os.listdir(out / "new_joint_vecs")) == ["Mjump_take1.npy", "jump_take1.npy"]
    features = np.load(out / "new_joint_vecs" / "jump_take1.npy")
    assert features.shape == (int((len(motion.joints) - 1) * 10 / 30), 263)


class _Captured(Exception):
    """Raised by a stand-in import to stop prepare_data.py once it has been called."""


def test_amass_passes_every_flag_to_the_import(monkeypatch):
    """amass hands its source, output, body models, rate, labels, seed and --mirror to the import as given."""
    import utils.amass_import

    calls = []

    def fake(src, out, **kwargs):
        calls.append((src, out, kwargs))
        raise _Captured

    monkeypatch.setattr(utils.amass_import, "import_amass_folder", fake)
    argv = ["amass", "--src", "in", "--out", "Out", "--body_model", "m.npz", "--fps", "30", "--labels", "l.csv",
            "--seed", "7", "--mirror"]
    with pytest.raises(_Captured):
        prepare_data.main(prepare_data.parse_args(argv))
    (src, out, kwargs), = calls
    assert (src, out) == ("in", "Out")
    assert {k: v for k, v in kwargs.items() if k != "progress"} == {
        "body_models": None, "body_model": "m.npz", "target_fps": 30.0, "labels": "l.csv", "seed": 7, "mirror": True}


def test_validate_checks_captions_unless_told_not_to(tmp_path, capsys):
    """validate fails on an undecodable caption file, naming it, and --no_texts leaves the captions out of the
    check."""
    from test_data_validation import write_clean

    write_clean(tmp_path, ["a", "b", "c"])
    (tmp_path / "texts" / "b.txt").write_bytes(b"a person\xff walks.#a/DET#0#0\n")
    base = ["validate", "--dataset_name", "t2m", "--data_root", str(tmp_path)]
    assert prepare_data.main(prepare_data.parse_args(base)) == 1
    assert "b.txt" in capsys.readouterr().out
    assert prepare_data.main(prepare_data.parse_args([*base, "--no_texts"])) == 0


def test_stats_writes_into_the_data_root_given(tmp_path, capsys):
    """stats writes Mean.npy / Std.npy into --data_root, not into the registered dataset's folder, and names it."""
    from utils.synthetic import generate_synthetic_dataset

    root = tmp_path / "Synthetic"
    generate_synthetic_dataset(str(root), 3, seed=0)
    for name in ("Mean.npy", "Std.npy"):
        (root / name).unlink()
    argv = ["stats", "--dataset_name", "synthetic", "--data_root", str(root)]
    assert prepare_data.main(prepare_data.parse_args(argv)) == 0
    assert capsys.readouterr().out.rstrip().endswith(f"-> {root}")
    assert np.load(root / "Mean.npy").shape == np.load(root / "Std.npy").shape == (263,)
