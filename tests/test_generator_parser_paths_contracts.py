"""Parsers of evaluation_MARDM.py and sample.py (defaults, refused values, the family sampling options and the
message naming the flags a family does not take), the skeleton constants against the published paramUtil, and the
small helpers: launch rank, default folders under FSQ_MARDM_HOME (and where videos of dataset clips go), and the
one-line user error."""

from __future__ import annotations

import os
import shlex

import numpy as np
import pytest
import torch

from options.config import parse_with_config
from options.eval_generator_options import (
    FAMILY_FLAGS,
    check_family_flags,
    family_sampling_options,
    get_evaluation_generator_parser,
    get_sample_parser,
)
from utils import launch_env, paramutil
from utils.paths import HOME_ENV, folder_flags, project_path
from utils.render_inputs import default_folder
from utils.user_errors import PATH_ERRORS, TRACEBACK_ENV, exit_with_error


def _sample(*argv: str):
    return parse_with_config(get_sample_parser(), ["--name", "g", *argv])


def _evaluate(*argv: str):
    return parse_with_config(get_evaluation_generator_parser(), ["--name", "g", *argv])


# ---------------------------------------------------------------------------------------------------------------------
# Parser defaults
# ---------------------------------------------------------------------------------------------------------------------

def test_sampling_settings_default_to_the_familys_own():
    # Unset means "the family's published setting": the parsers must not put a number in its place.
    for args in (_sample(), _evaluate()):
        assert (args.time_steps, args.cfg) == (None, None)
        assert args.temperature == 1.0
        assert family_sampling_options(args) == {}
        assert args.which_epoch == "latest" and args.seed == 3407
        assert args.device == ("cuda" if torch.cuda.is_available() else "cpu")


def test_evaluation_defaults_are_the_published_protocol():
    args = _evaluate()
    assert args.eval_batch_size == 32
    assert (args.cal_mm, args.mm_batches, args.mm_repeats, args.mm_sampling) == (True, 3, 30, None)
    assert (args.num_workers, args.save_motions, args.from_motions) == (0, False, None)


def test_sample_defaults_write_one_rendered_sample_per_prompt():
    args = _sample()
    assert (args.repeat_times, args.motion_length, args.format) == (1, None, "auto")
    assert (args.sequence, args.transition_seconds, args.span_prompts, args.anchor_root) == (False, 2.0, False, False)
    assert (args.bvh, args.mesh_video, args.smpl) == (False, False, None)


def test_checkpoints_dir_default_follows_the_home_folder(monkeypatch, tmp_path):
    monkeypatch.setenv(HOME_ENV, str(tmp_path))
    assert _sample().checkpoints_dir == str(tmp_path / "checkpoints")
    assert _evaluate().checkpoints_dir == str(tmp_path / "checkpoints")


# ---------------------------------------------------------------------------------------------------------------------
# Values the parsers take and refuse
# ---------------------------------------------------------------------------------------------------------------------

def test_momask_spellings_set_the_same_options():
    assert _sample("--cond_scale", "2.5").cfg == 2.5
    assert _evaluate("--gumbel_sample").sampling == "gumbel"
    assert _evaluate("--sampling", "categorical").sampling == "categorical"
    assert _sample("--topkr", "0.5").topk_filter_thres == 0.5


@pytest.mark.parametrize("solver", ["ancestral", "ddim", "dopri5", "euler", "heun"])
def test_every_head_sampler_and_solver_is_accepted(solver):
    args = _sample("--head_solver", solver, "--head_steps", "4")
    assert family_sampling_options(args) == {"head_solver": solver, "head_steps": 4}


@pytest.mark.parametrize("argv, flag", [
    (["--topkr", "1"], "--topkr"),
    (["--topkr", "-0.1"], "--topkr"),
    (["--sampling", "greedy"], "--sampling"),
    (["--head_steps", "0"], "--head_steps"),
    (["--temperature", "-1"], "--temperature"),
    (["--repeat_times", "0"], "--repeat_times"),
    (["--time_steps", "0"], "--time_steps"),
])
def test_sample_refuses_out_of_range_values_by_flag(argv, flag, capsys):
    with pytest.raises(SystemExit):
        _sample(*argv)
    assert flag in capsys.readouterr().err


@pytest.mark.parametrize("argv, flag", [
    (["--num_workers", "-1"], "--num_workers"),
    (["--mm_sampling", "greedy"], "--mm_sampling"),
    (["--eval_batch_size", "0"], "--eval_batch_size"),
])
def test_evaluation_refuses_out_of_range_values_by_flag(argv, flag, capsys):
    with pytest.raises(SystemExit):
        _evaluate(*argv)
    assert flag in capsys.readouterr().err


def test_a_motion_length_of_zero_means_the_length_estimator():
    assert _sample("--motion_length", "0").motion_length == 0


def test_edit_spans_are_repeatable():
    args = _sample("--edit_frames", ":40", "--edit_frames", "100:", "--edit_seconds", "1:2")
    assert args.edit_frames == [":40", "100:"] and args.edit_seconds == ["1:2"]


def test_no_mm_and_cal_mm_turn_multimodality_off_and_on():
    assert _evaluate("--no_mm").cal_mm is False
    assert _evaluate("--no-cal_mm").cal_mm is False
    assert _evaluate("--no_mm", "--cal_mm").cal_mm is True


# ---------------------------------------------------------------------------------------------------------------------
# Family sampling options and the flags a family refuses
# ---------------------------------------------------------------------------------------------------------------------

def test_given_family_options_are_passed_even_when_zero():
    # 0 is a real guidance scale (unconditional residual layers), not "unset".
    args = _sample("--res_cond_scale", "0", "--topkr", "0")
    assert family_sampling_options(args) == {"res_cond_scale": 0.0, "topk_filter_thres": 0.0}


def test_every_family_option_is_read_from_its_flag():
    args = _sample("--topkr", "0.5", "--gumbel_sample", "--res_cond_scale", "3", "--head_steps", "8",
                   "--head_solver", "euler")
    assert family_sampling_options(args) == {"topk_filter_thres": 0.5, "sampling": "gumbel", "res_cond_scale": 3.0,
                                             "head_steps": 8, "head_solver": "euler"}
    assert set(FAMILY_FLAGS) == set(family_sampling_options(args))


def test_options_a_family_takes_pass_the_check():
    check_family_flags({"head_steps": 8, "head_solver": "euler"}, "MARDM", ["head_steps", "head_solver"])
    check_family_flags({}, "MARDM", [])


def test_a_single_refused_option_fails_naming_its_flag_and_the_familys_flags():
    with pytest.raises(ValueError) as error:
        check_family_flags({"topk_filter_thres": 0.5}, "MARDM", ["head_steps", "head_solver"])
    assert str(error.value) == "MARDM generators take no --topkr; their sampling flags: --head_steps, --head_solver"


def test_every_refused_flag_is_named_and_a_family_without_options_says_none():
    options = {"sampling": "gumbel", "head_steps": 4}
    with pytest.raises(ValueError) as error:
        check_family_flags(options, "Plain", iter(()))
    assert str(error.value) == "Plain generators take no --sampling/--gumbel_sample, --head_steps; their sampling " \
                               "flags: none"


def test_the_taken_options_may_be_any_iterable():
    # A generator (dict keys, a filter) is read once: the check must not consume it option by option.
    options = {"res_cond_scale": 2.0, "topk_filter_thres": 0.5}
    check_family_flags(options, "MoMask", (name for name in ("topk_filter_thres", "sampling", "res_cond_scale")))


# ---------------------------------------------------------------------------------------------------------------------
# Skeleton constants (HumanML3D / KIT-ML paramUtil)
# ---------------------------------------------------------------------------------------------------------------------

# The published unit directions, Y up and facing +Z.
T2M_RAW_OFFSETS = [
    [0, 0, 0], [1, 0, 0], [-1, 0, 0], [0, 1, 0], [0, -1, 0], [0, -1, 0], [0, 1, 0], [0, -1, 0], [0, -1, 0],
    [0, 1, 0], [0, 0, 1], [0, 0, 1], [0, 1, 0], [1, 0, 0], [-1, 0, 0], [0, 0, 1], [0, -1, 0], [0, -1, 0],
    [0, -1, 0], [0, -1, 0], [0, -1, 0], [0, -1, 0],
]
KIT_RAW_OFFSETS = [
    [0, 0, 0], [0, 1, 0], [0, 1, 0], [0, 1, 0], [0, 1, 0], [1, 0, 0], [0, -1, 0], [0, -1, 0], [-1, 0, 0],
    [0, -1, 0], [0, -1, 0], [1, 0, 0], [0, -1, 0], [0, -1, 0], [0, 0, 1], [0, 0, 1], [-1, 0, 0], [0, -1, 0],
    [0, -1, 0], [0, 0, 1], [0, 0, 1],
]


def test_raw_offsets_are_the_published_float_tables():
    for raw, expected in ((paramutil.t2m_raw_offsets, T2M_RAW_OFFSETS), (paramutil.kit_raw_offsets, KIT_RAW_OFFSETS)):
        assert raw.dtype == np.float64
        np.testing.assert_array_equal(raw, np.array(expected, dtype=np.float64))


def test_target_offsets_are_float32_directions_times_bone_lengths():
    offsets = paramutil.T2M_TGT_OFFSETS
    assert offsets.shape == (22, 3) and offsets.dtype == np.float32
    np.testing.assert_allclose(offsets, np.array(T2M_RAW_OFFSETS) * paramutil.T2M_TGT_BONE_LENGTHS[:, None], atol=1e-7)
    # Left and right legs and arms of the official skeleton (000021) differ slightly; each keeps its own length.
    lengths = paramutil.T2M_TGT_BONE_LENGTHS
    assert (lengths[4], lengths[5]) == pytest.approx((0.3936232, 0.39018822))
    assert (lengths[20], lengths[21]) == pytest.approx((0.26601171, 0.2698764))


def test_skeleton_constants_are_read_only():
    for const in (paramutil.t2m_raw_offsets, paramutil.kit_raw_offsets, paramutil.T2M_TGT_BONE_LENGTHS,
                  paramutil.T2M_TGT_OFFSETS):
        with pytest.raises(ValueError, match="read-only"):
            const[0, ...] = 1.0


@pytest.mark.parametrize("name", ["t2m", "kit"])
def test_mirror_chains_pair_each_joint_with_its_x_mirrored_twin(name):
    settings = paramutil.get_skeleton_settings(name)
    right, left = settings.right_chain, settings.left_chain
    assert len(right) == len(left) == 8 and not set(right) & set(left)
    flip = np.array([-1.0, 1.0, 1.0])
    for r, l in zip(right, left):
        np.testing.assert_array_equal(settings.raw_offsets[r] * flip, settings.raw_offsets[l])
    # Mirrored pairs sit at the same depth of two different chains.
    where = {joint: (c, chain.index(joint)) for c, chain in enumerate(settings.kinematic_chain) for joint in chain[1:]}
    for r, l in zip(right, left):
        assert where[r][1] == where[l][1] and where[r][0] != where[l][0]


def test_smplh_hand_chains_pair_fifteen_finger_joints():
    left, right = paramutil.T2M_LEFT_HAND_CHAIN, paramutil.T2M_RIGHT_HAND_CHAIN
    assert sorted(left) == list(range(22, 37)) and sorted(right) == list(range(37, 52))
    assert left[:3] == (22, 23, 24) and right[:3] == (43, 44, 45)


@pytest.mark.parametrize("name, expected", [
    ("t2m", dict(joints_num=22, face_joint_indx=(2, 1, 17, 16), r_hip=2, l_hip=1, fid_l=(7, 10), fid_r=(8, 11),
                 l_idx1=5, l_idx2=8, feet_thre=0.002, fps=20.0)),
    ("kit", dict(joints_num=21, face_joint_indx=(11, 16, 5, 8), r_hip=11, l_hip=16, fid_l=(19, 20), fid_r=(14, 15),
                 l_idx1=17, l_idx2=18, feet_thre=0.05, fps=12.5)),
])
def test_skeleton_settings_are_the_published_ones(name, expected):
    settings = paramutil.get_skeleton_settings(name)
    assert {key: getattr(settings, key) for key in expected} == expected


def test_kit_chains_are_kits_own():
    chain = paramutil.get_skeleton_settings("kit").kinematic_chain
    assert [list(c) for c in chain] == [[0, 11, 12, 13, 14, 15], [0, 16, 17, 18, 19, 20], [0, 1, 2, 3, 4],
                                        [3, 5, 6, 7], [3, 8, 9, 10]]


@pytest.mark.parametrize("name", ["smpl", "", "T2M"])
def test_an_unknown_skeleton_is_refused_by_name(name):
    with pytest.raises(ValueError, match=r"unknown skeleton .*expected one of \['kit', 't2m'\]"):
        paramutil.get_skeleton_settings(name)


# ---------------------------------------------------------------------------------------------------------------------
# Launch rank, default folders, the one-line user error
# ---------------------------------------------------------------------------------------------------------------------

def test_a_plain_start_is_the_only_process(monkeypatch):
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    assert (launch_env.process_rank(), launch_env.world_size(), launch_env.is_first_process()) == (0, 1, True)


def test_the_first_process_is_global_rank_zero_not_each_nodes_first(monkeypatch):
    # Second node of a two-node launch: local rank 0, global rank 2.
    monkeypatch.setenv("RANK", "2")
    monkeypatch.setenv("LOCAL_RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "4")
    assert (launch_env.process_rank(), launch_env.world_size(), launch_env.is_first_process()) == (2, 4, False)
    monkeypatch.setenv("RANK", "1")
    assert not launch_env.is_first_process()


def test_relative_defaults_resolve_under_a_home_with_a_tilde(monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv(HOME_ENV, "~/fsq")
    assert project_path("glove") == str(tmp_path / "fsq" / "glove")
    assert project_path("/data/glove") == "/data/glove"
    monkeypatch.delenv(HOME_ENV)
    assert project_path("glove") == "glove"


def test_folder_flags_name_only_folders_that_are_not_the_defaults(monkeypatch, tmp_path):
    monkeypatch.delenv(HOME_ENV, raising=False)
    assert folder_flags("checkpoints", None) == ""
    assert folder_flags("./checkpoints") == ""
    assert folder_flags(os.path.abspath("checkpoints")) == ""
    expected = f" --checkpoints_dir {tmp_path / 'runs'} --data_root data/H"
    assert folder_flags(str(tmp_path / "runs"), "data/H") == expected
    assert folder_flags(None, "data/H") == " --data_root data/H"


def test_a_user_error_exits_with_one_line_naming_the_script(monkeypatch):
    monkeypatch.delenv(TRACEBACK_ENV, raising=False)
    try:
        raise FileNotFoundError("no file x.tar")
    except FileNotFoundError as error:
        with pytest.raises(SystemExit) as done:
            exit_with_error("sample.py", error)
    assert str(done.value.code).splitlines()[0] == "sample.py: error: no file x.tar"


def test_the_traceback_switch_reraises_the_error(monkeypatch):
    monkeypatch.setenv(TRACEBACK_ENV, "1")
    with pytest.raises(PermissionError, match="denied"):
        try:
            raise PermissionError("denied")
        except PermissionError as error:
            exit_with_error("sample.py", error)


@pytest.mark.parametrize("error", [FileNotFoundError, FileExistsError, NotADirectoryError, IsADirectoryError,
                                   PermissionError])
def test_every_path_error_counts_as_the_users(error):
    assert issubclass(error, PATH_ERRORS)


@pytest.mark.parametrize("clips", ["new_joint_vecs", "new_joints"])
def test_videos_of_a_datasets_clips_go_to_its_renders_folder(tmp_path, clips):
    # Neither clip folder, which the loaders read file by file, receives videos unasked.
    clip = tmp_path / "HumanML3D" / clips / "000021.npy"
    assert default_folder(str(clip)) == str(tmp_path / "HumanML3D" / "renders" / clips)
    assert default_folder(str(tmp_path / "mine" / "a.npy")) == str(tmp_path / "mine")


@pytest.mark.parametrize("clips", ["new_joint_vecs", "new_joints"])
def test_a_file_under_the_renders_folder_renders_beside_itself(tmp_path, clips):
    # The joints render.py saved beside a clip's video go on rendering there, not into renders/renders/.
    saved = tmp_path / "HumanML3D" / "renders" / clips / "sub" / "000021_joints.npy"
    assert default_folder(str(saved)) == str(saved.parent)


# ---------------------------------------------------------------------------------------------------------------------
# Suggested commands: folder flags a shell reads back as written
# ---------------------------------------------------------------------------------------------------------------------


def test_folder_flags_quote_paths_a_shell_would_split(monkeypatch, tmp_path):
    monkeypatch.delenv(HOME_ENV, raising=False)
    runs, data = tmp_path / "my runs", "data/Human ML3D"
    flags = folder_flags(str(runs), data)
    assert shlex.split(flags) == ["--checkpoints_dir", str(runs), "--data_root", data]


def test_plain_folder_paths_are_printed_as_written(monkeypatch, tmp_path):
    monkeypatch.delenv(HOME_ENV, raising=False)
    assert folder_flags(str(tmp_path / "ck"), "data/x") == f" --checkpoints_dir {tmp_path / 'ck'} --data_root data/x"
