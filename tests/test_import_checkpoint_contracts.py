"""``tools/import_checkpoint.py`` (on the T2M-GPT fixture: a 263-dim VQ-VAE without norm layers, imported as t2m):
what an imported run records (statistics and their origin, the resolved model, its parent by absolute path), the runs
and sources it refuses, and the flags it reads (``--levels`` as comma-separated integers, ``--norm``, ``--mu 0``)."""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

import pytest
import torch
from test_evaluation_AE import _momask_file, env  # noqa: F401  (env: the module's fixture)
from test_tokenizer_parity import Fixture
from tool_helpers import load_tool

from utils.checkpoint import CheckpointError, file_sha256, load_checkpoint
from utils.normalization import eval_normalization, load_mean_std


def _import(tmp_path, *argv, src=None, name="imp"):
    """Import the T2M-GPT fixture (or ``src``) as ``<tmp_path>/runs/t2m/<name>``; returns the run folder."""
    tool = load_tool("import_checkpoint")
    args = tool.get_parser().parse_args(["--src", src or Fixture("t2m_gpt_vqvae").checkpoint, "--name", name,
                                         "--dataset_name", "t2m", "--checkpoints_dir", str(tmp_path / "runs"),
                                         "--dilation_growth_rate=3", "--activation=relu", *argv])
    return Path(tool.main(args))


def test_an_import_without_statistics_records_none_and_says_so(tmp_path, capsys):
    """No evaluator under the checkpoints folder: mean, std and their origin are all None (not the reason why), and
    the summary line says "statistics: none"."""
    run = _import(tmp_path)
    state = load_checkpoint(str(run / "model" / "latest.tar"))
    assert state["dataset"]["statistics"] is None
    assert state["dataset"]["mean"] is None and state["dataset"]["std"] is None
    assert capsys.readouterr().out.rstrip().endswith("statistics: none)")


def test_an_import_records_the_resolved_model_and_its_parent_by_absolute_path(tmp_path, monkeypatch):
    """--src given relative to the working directory, --model left out: the run's config and opt.yaml name the
    registry model read from the weights, the parent is the file's absolute path with its hash, and the run starts
    at step 0 as a tokenizer."""
    fx = Fixture("t2m_gpt_vqvae")
    shutil.copy(fx.checkpoint, tmp_path / "net_last.pth")
    monkeypatch.chdir(tmp_path)
    run = _import(tmp_path, src="net_last.pth")
    for file_name in ("latest.tar", "net_best_fid.tar"):
        state = load_checkpoint(str(run / "model" / file_name))
        assert state["parent"] == {"path": str(tmp_path / "net_last.pth"), "sha256": file_sha256(fx.checkpoint),
                                   "format": "t2m-gpt"}
        assert (state["stage"], state["step"], state["epoch"], state["model_name"]) == ("tokenizer", 0, 0, "VQVAE")
        assert state["config"]["model"] == "VQVAE" and state["config"]["src_sha256"] == file_sha256(fx.checkpoint)
    assert "model: VQVAE" in (run / "opt.yaml").read_text().splitlines()


def test_a_hard_link_to_the_run_s_opt_yaml_is_refused(tmp_path):
    run = _import(tmp_path)
    os.link(run / "opt.yaml", tmp_path / "linked.tar")
    before = (run / "opt.yaml").read_bytes()
    with pytest.raises(SystemExit, match=r"is a file of the run folder .*imp that the import writes"):
        _import(tmp_path, "--overwrite", src=str(tmp_path / "linked.tar"))
    assert (run / "opt.yaml").read_bytes() == before


def test_a_missing_src_is_named_also_when_the_run_exists(tmp_path):
    _import(tmp_path)
    missing = str(tmp_path / "typo.pth")
    with pytest.raises(CheckpointError, match=rf"checkpoint not found: {missing}"):
        _import(tmp_path, "--overwrite", src=missing)


def test_levels_are_comma_separated_integers():
    tool = load_tool("import_checkpoint")
    argv = ["--src", "a.pth", "--name", "x", "--dataset_name", "t2m"]
    assert tool.get_parser().parse_args([*argv, "--levels", "8, 8,8,5,5,5,"]).levels == [8, 8, 8, 5, 5, 5]
    assert tool.int_list("8,8,") == [8, 8]


def test_levels_that_are_not_integers_are_an_argument_error_saying_what_was_expected(capsys):
    tool = load_tool("import_checkpoint")
    with pytest.raises(SystemExit):
        tool.get_parser().parse_args(["--src", "a.pth", "--name", "x", "--dataset_name", "t2m", "--levels", "8,x"])
    assert "argument --levels: expected comma-separated integers, got '8,x'" in capsys.readouterr().err


def test_norm_reaches_the_loader_which_refuses_it_on_weights_without_norm_layers(tmp_path):
    tool = load_tool("import_checkpoint")
    assert tool.get_parser().parse_args(["--src", "a", "--name", "x", "--dataset_name", "t2m", "--norm",
                                         "GN"]).norm == "GN"
    with pytest.raises(CheckpointError, match=r"norm='LN' was requested but the weights have no normalisation"):
        _import(tmp_path, "--norm", "LN")
    assert not (tmp_path / "runs").exists()


def test_an_ema_decay_of_zero_is_recorded_not_replaced_by_the_default(tmp_path):
    run = _import(tmp_path, "--mu", "0")
    assert load_checkpoint(str(run / "model" / "latest.tar"))["model_args"]["mu"] == 0.0


def test_convention_statistics_are_recorded_as_float32_with_their_origin(env, tmp_path):  # noqa: F811
    """A MoMask file imported with the evaluator trained here: the dataset's Mean/Std with the evaluator's feature
    bias, recorded as float32 (D,) tensors like every other statistics of a run, and said where they came from."""
    root, ck, spec = env
    tool = load_tool("import_checkpoint")
    tool.main(tool.get_parser().parse_args([
        "--src", _momask_file(tmp_path), "--name", "imp_f32", "--dataset_name", "synthetic", "--data_root", str(root),
        "--checkpoints_dir", str(tmp_path / "runs"), "--evaluator_dir", str(ck / "synthetic" / "text_mot_match")]))
    dataset = load_checkpoint(str(tmp_path / "runs" / "synthetic" / "imp_f32" / "model" / "latest.tar"))["dataset"]
    assert dataset["statistics"] == "dataset Mean/Std with the evaluator feature bias (momask convention)"
    mean, std = eval_normalization(*load_mean_std(spec, str(root)), spec)
    for key, expected in (("mean", mean), ("std", std)):
        assert dataset[key].dtype == torch.float32 and dataset[key].shape == (spec.dim_pose,)
        assert torch.equal(dataset[key], torch.as_tensor(expected, dtype=torch.float32))


def test_a_released_evaluator_without_its_statistics_defers_them_unless_it_was_named(tmp_path, caplog):
    """The released evaluator at the default place but no meta/{mean,std}.npy beside it: the import still writes the
    run, without statistics, saying why; named by --evaluator_dir the same evaluator is an error naming the flag."""
    default = tmp_path / "runs" / "t2m" / "text_mot_match" / "model"
    default.mkdir(parents=True)
    shutil.copy(Path(Fixture("t2m_gpt_vqvae").checkpoint).parents[1] / "t2m_evaluator" / "finest.tar", default)
    with caplog.at_level(logging.WARNING, logger="import_checkpoint"):
        run = _import(tmp_path)
    assert any("no statistics recorded" in r.message and "released evaluators carry no normalisation" in r.message
               for r in caplog.records)
    assert load_checkpoint(str(run / "model" / "latest.tar"))["dataset"]["mean"] is None
    with pytest.raises(CheckpointError, match=rf"^--evaluator_dir {default}: no usable evaluator \(.*released "
                                              r"evaluators carry no normalisation"):
        _import(tmp_path, "--evaluator_dir", str(default), name="named")
    assert not (tmp_path / "runs" / "t2m" / "named").exists()


def test_a_run_of_ours_is_refused_as_already_in_our_format(tmp_path):
    run = _import(tmp_path)
    with pytest.raises(CheckpointError, match=r"latest.tar: already in our format \(model_name 'VQVAE'\); copy the "
                                              r"run folder instead"):
        _import(tmp_path, src=str(run / "model" / "latest.tar"), name="again")
    assert not (tmp_path / "runs" / "t2m" / "again").exists()


ARGV = ["--src", "a.pth", "--name", "x", "--dataset_name", "motionmillion"]


@pytest.mark.parametrize("levels", ["8 8,8,5,5,5", "8,8,8,5,5 5"])
def test_levels_missing_a_comma_are_an_argument_error(levels, capsys):
    tool = load_tool("import_checkpoint")
    with pytest.raises(SystemExit):
        tool.get_parser().parse_args([*ARGV, "--levels", levels])
    assert f"argument --levels: expected comma-separated integers, got '{levels}'" in capsys.readouterr().err


def test_levels_may_be_spaced_around_the_commas():
    tool = load_tool("import_checkpoint")
    assert tool.get_parser().parse_args([*ARGV, "--levels", " 8, 8 ,8,5,5,5 "]).levels == [8, 8, 8, 5, 5, 5]
