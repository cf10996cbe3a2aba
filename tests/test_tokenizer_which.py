"""Which file of a tokenizer run a generator trains on (``--ae_which`` / ``--vq_which``): the presets follow the papers
(MARDM its AE's ``latest.tar``, MoMask its RVQ's ``net_best_fid.tar``), the default takes the best file there is."""

from __future__ import annotations

import os

import pytest

import train_MARDM
import train_res_transformer
import train_t2m_transformer
from options.config import parse_with_config
from options.generator_options import get_train_mardm_parser
from options.token_generator_options import get_train_res_transformer_parser, get_train_t2m_transformer_parser
from options.tokenizer_options import get_train_vq_parser
from utils.checkpoint import CheckpointError
from utils.generator_stage import resolve_tokenizer_checkpoint
from utils.token_stage import resolve_vq_checkpoint

PRESETS = os.path.join("options", "configs")


@pytest.fixture()
def run(tmp_path):
    """A tokenizer run trained without --need_evaluation: latest.tar and net_best_loss.tar, no net_best_fid.tar."""
    model = tmp_path / "ck" / "t2m" / "AE" / "model"
    model.mkdir(parents=True)
    for name in ("latest.tar", "net_best_loss.tar"):
        (model / name).write_bytes(b"x")
    return str(tmp_path / "ck"), str(model)


def test_which_file_of_the_run(run):
    ckpt, model = run
    assert resolve_tokenizer_checkpoint(ckpt, "t2m", "AE").path == os.path.join(model, "net_best_loss.tar")
    assert resolve_tokenizer_checkpoint(ckpt, "t2m", "AE", which="latest").path == os.path.join(model, "latest.tar")
    assert resolve_vq_checkpoint(ckpt, "t2m", "AE", which="best").path == os.path.join(model, "net_best_loss.tar")
    with pytest.raises(CheckpointError, match=r"--vq_name 'AE' --vq_which net_best_fid: no net_best_fid.tar in .* "
                                              r"\(found \['latest.tar', 'net_best_loss.tar'\]\); the tokenizer run "
                                              r"writes it only when trained with --need_evaluation; pass --vq_which "
                                              r"best"):
        resolve_vq_checkpoint(ckpt, "t2m", "AE", which="net_best_fid")
    with pytest.raises(CheckpointError, match=r"--ae_name 'BE': none of \['net_best_fid.tar', 'net_best_loss.tar', "
                                              r"'latest.tar'\] in"):
        resolve_tokenizer_checkpoint(ckpt, "t2m", "BE")
    with pytest.raises(ValueError, match="--ae_which must be one of"):
        resolve_tokenizer_checkpoint(ckpt, "t2m", "AE", which="finest")
    # A file named with --ae_ckpt is taken as given.
    assert resolve_tokenizer_checkpoint(ckpt, "t2m", None, os.path.join(model, "latest.tar"),
                                        which="net_best_fid").path.endswith("latest.tar")


def _preset(parser, name: str):
    return parse_with_config(parser, ["--config", os.path.join(PRESETS, name), "--name", "x"])


def test_presets_take_the_file_the_papers_train_on():
    for name in ("mardm_sit_xl.yaml", "mardm_ddpm_xl.yaml", "fsq_mardm_sit_xl.yaml", "vq_mardm_sit_xl.yaml"):
        assert _preset(get_train_mardm_parser(), name).ae_which == "latest", name
    assert _preset(get_train_vq_parser(), "momask_rvq.yaml").need_evaluation
    for parser, name in ((get_train_t2m_transformer_parser(), "momask_mask.yaml"),
                         (get_train_res_transformer_parser(), "momask_res.yaml")):
        args = _preset(parser, name)
        assert args.vq_which == "net_best_fid" and args.need_evaluation, name
    assert get_train_mardm_parser().get_default("ae_which") == "best"


class _Resolved(Exception):
    pass


@pytest.mark.parametrize("script, parser, flag", [
    (train_MARDM, get_train_mardm_parser, "--ae_which"),
    (train_t2m_transformer, get_train_t2m_transformer_parser, "--vq_which"),
    (train_res_transformer, get_train_res_transformer_parser, "--vq_which")])
def test_the_scripts_pass_the_flag_on(run, monkeypatch, script, parser, flag):
    ckpt, model = run
    resolve = resolve_tokenizer_checkpoint if script is train_MARDM else resolve_vq_checkpoint

    def resolved(*args, **kwargs):
        raise _Resolved(resolve(*args, **kwargs).path)

    name = "resolve_tokenizer_checkpoint" if script is train_MARDM else "resolve_vq_checkpoint"
    monkeypatch.setattr(script, name, resolved)
    args = parse_with_config(parser(), ["--dataset_name", "t2m", "--checkpoints_dir", ckpt, "--name", "g",
                                        "--ae_name", "AE", flag, "latest"])
    with pytest.raises(_Resolved, match="latest.tar"):
        script.main(args)


@pytest.mark.parametrize("script, parser, preset, flag", [
    (train_MARDM, get_train_mardm_parser, "tiny_mardm.yaml", "ae"),
    (train_t2m_transformer, get_train_t2m_transformer_parser, "tiny_momask.yaml", "vq"),
    (train_res_transformer, get_train_res_transformer_parser, "momask_res.yaml", "vq")])
def test_a_tokenizer_file_on_the_command_line_replaces_the_run_a_preset_names(run, monkeypatch, script, parser,
                                                                              preset, flag):
    # The presets name their tokenizer run (vq_name: RVQ_Tiny, ae_name: FSQ_Tiny): a --vq_ckpt / --ae_ckpt typed
    # with them was refused as naming two tokenizers, though the user gave one.
    ckpt, model = run
    resolve = resolve_tokenizer_checkpoint if script is train_MARDM else resolve_vq_checkpoint

    def resolved(*args, **kwargs):
        raise _Resolved(resolve(*args, **kwargs))

    monkeypatch.setattr(script, "resolve_tokenizer_checkpoint" if script is train_MARDM else "resolve_vq_checkpoint",
                        resolved)
    file = os.path.join(model, "latest.tar")
    common = ["--config", os.path.join(PRESETS, preset), "--dataset_name", "t2m", "--checkpoints_dir", ckpt,
              "--name", "g", "--text_encoder", "minilm", "--no-need_evaluation"]
    args = parse_with_config(parser(), [*common, f"--{flag}_ckpt", file])
    assert getattr(args, f"{flag}_name") is not None  # the preset's
    with pytest.raises(_Resolved) as found:
        script.main(args)
    assert found.value.args[0] == (file, "AE")
    assert getattr(args, f"{flag}_name") is None  # so the run's opt.yaml records the tokenizer it used
    # Both typed on the command line: still two tokenizers.
    args = parse_with_config(parser(), [*common, f"--{flag}_ckpt", file, f"--{flag}_name", "other"])
    with pytest.raises(ValueError, match=f"--{flag}_name 'other' and --{flag}_ckpt .* name two tokenizers"):
        script.main(args)
