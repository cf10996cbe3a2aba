"""MoMask's opt.txt beside a MoMask file is checked, not only read: the sizes it records must be the weights' (a
missing codebook loaded silently as one quantizer fewer), a value the caller asks for must agree with it (a flag
silently replaced it while the log named opt.txt's), and a bad value in it is blamed on opt.txt, not the file."""

from __future__ import annotations

import logging
import re
import shutil
from pathlib import Path

import pytest
from test_tokenizer_parity import Fixture, _dataset_args
from tool_helpers import load_tool

from models.loader import load_tokenizer
from models.momask_opt import RunOptions, find_run_options, momask_settings
from utils.checkpoint import CheckpointError, load_checkpoint, save_checkpoint


def _momask_run(tmp_path: Path, replace: dict[str, str] | None = None, drop: str | None = None) -> tuple[str, str]:
    """(checkpoint, opt.txt) of the fixture laid out as MoMask writes a run, opt.txt's ``key: value`` lines replaced
    as ``replace`` says and the weight ``drop`` removed."""
    fx = Fixture("momask_rvqvae")
    run = tmp_path / "rvq_nq3"
    (run / "model").mkdir(parents=True)
    src = str(run / "model" / "net_best_fid.tar")
    state = load_checkpoint(fx.checkpoint)
    if drop:
        del state["vq_model"][drop]
    save_checkpoint(src, state)
    text = (fx.dir / "opt.txt").read_text()
    for line, new in (replace or {}).items():
        assert f"\n{line}\n" in text, line
        text = text.replace(f"\n{line}\n", f"\n{new}\n")
    (run / "opt.txt").write_text(text)
    return src, str(run / "opt.txt")


def _import(tmp_path: Path, src: str, *flags: str) -> None:
    tool = load_tool("import_checkpoint")
    argv = ["--src", src, "--name", "imported", "--checkpoints_dir", str(tmp_path / "runs"),
            *_dataset_args(263, tmp_path), *flags]
    tool.main(tool.get_parser().parse_args(argv))


def test_a_missing_codebook_is_refused_naming_opt_txt_and_both_counts(tmp_path) -> None:
    src, opt = _momask_run(tmp_path, drop="quantizer.layers.2.codebook")
    message = (rf"^{re.escape(opt)}: num_quantizers: 3, but the weights of {re.escape(src)} have num_quantizers 2 "
               r"\(quantizer.layers.0 to 1.codebook\)")
    with pytest.raises(CheckpointError, match=message):
        load_tokenizer(src)
    with pytest.raises(CheckpointError, match=message):
        _import(tmp_path, src)
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("line, field, arg, value", [
    ("num_quantizers: 3", "num_quantizers", "num_quantizers", 3),
    ("nb_code: 32", "nb_code", "nb_code", 32),
    ("code_dim: 32", "code_dim", "code_dim", 32),
    ("width: 64", "width", "width", 64),
    ("down_t: 2", "down_t", "down_t", 2),
    ("depth: 3", "depth", "depth", 3),
])
def test_a_size_opt_txt_contradicts_is_refused(tmp_path, line, field, arg, value) -> None:
    src, opt = _momask_run(tmp_path, {line: f"{field}: {value + 1}"})
    with pytest.raises(CheckpointError, match=rf"^{re.escape(opt)}: {field}: {value + 1}, but the weights of "
                                              rf"{re.escape(src)} have {arg} {value}"):
        load_tokenizer(src)


def test_output_emb_width_is_not_a_size_momask_uses(tmp_path) -> None:
    """MoMask's train_vq.py passes code_dim where RVQVAE takes output_emb_width, so a run of another code dim keeps the
    field's default 512 in its opt.txt; such a run was refused as having lost weights."""
    src, _ = _momask_run(tmp_path, {"output_emb_width: 32": "output_emb_width: 512"})
    assert load_tokenizer(src).latent_dim == 32


def test_a_shared_codebook_opt_txt_claims_for_distinct_codebooks_is_refused(tmp_path) -> None:
    src, opt = _momask_run(tmp_path, {"shared_codebook: False": "shared_codebook: True"})
    with pytest.raises(CheckpointError, match=rf"^{re.escape(opt)}: shared_codebook: True, but the 3 layers' "
                                              r"codebooks of .* differ"):
        load_tokenizer(src)


@pytest.mark.parametrize("flags, arg, field", [
    (["--dilation_growth_rate", "2", "--activation", "gelu"], "dilation_growth_rate", "dilation_growth_rate: 3"),
    (["--activation", "gelu"], "activation", "vq_act: relu"),
    (["--mu", "0.5"], "mu", "mu: 0.99"),
    (["--norm", "LN"], "norm", "vq_norm: None"),
])
def test_a_flag_that_contradicts_opt_txt_is_refused_naming_both(tmp_path, flags, arg, field) -> None:
    src, opt = _momask_run(tmp_path)
    with pytest.raises(CheckpointError, match=rf"{arg}=.* was requested but {re.escape(opt)} says {field}; leave "
                                              rf"{arg} out \(drop the flag --{arg}\), or correct opt.txt"):
        _import(tmp_path, src, *flags)
    assert not (tmp_path / "runs").exists()


def test_flags_that_agree_with_opt_txt_are_used_and_logged(tmp_path, caplog) -> None:
    src, opt = _momask_run(tmp_path, {"dilation_growth_rate: 3": "dilation_growth_rate: 2"})
    with caplog.at_level(logging.INFO, logger="models.loader"):
        _import(tmp_path, src, "--dilation_growth_rate", "2", "--activation", "relu")
    assert f"dilation_growth_rate=2, activation='relu', mu=0.99, norm=None, shared_codebook=False from {opt}" \
        in caplog.text
    imported = load_tokenizer(str(tmp_path / "runs" / "t2m" / "imported" / "model" / "latest.tar"))
    assert imported.model_args["dilation_growth_rate"] == 2


@pytest.mark.parametrize("line, new, reason", [
    ("vq_act: relu", "vq_act: foo", "activation must be one of"),
    ("vq_norm: None", "vq_norm: LN", "but the weights of .* have no normalisation layers"),
    ("vq_norm: None", "vq_norm: XN", "norm must be one of"),
    ("mu: 0.99", "mu: 1.5", r"mu must lie in \[0, 1\]"),
    ("dilation_growth_rate: 3", "dilation_growth_rate: 0", "dilation_growth_rate must be a whole number >= 1"),
    ("shared_codebook: False", "shared_codebook: maybe", "cannot read 'maybe' as True or False"),
])
def test_a_bad_opt_txt_value_is_blamed_on_opt_txt(tmp_path, line, new, reason) -> None:
    src, opt = _momask_run(tmp_path, {line: new})
    field, value = new.split(": ")
    with pytest.raises(CheckpointError, match=rf"^{re.escape(opt)}: {field}: .*{reason}") as info:
        load_tokenizer(src)
    assert "cannot build" not in str(info.value) and value in str(info.value)
    with pytest.raises(CheckpointError, match=rf"^{re.escape(opt)}: {field}:"):
        _import(tmp_path, src)
    assert not (tmp_path / "runs").exists()


def test_opt_txt_says_a_run_with_equal_codebooks_did_not_share_them(tmp_path) -> None:
    """Equal codebooks read as one shared codebook; the run's opt.txt saying shared_codebook False is taken."""
    src, _ = _momask_run(tmp_path)
    state = load_checkpoint(src)
    for q in (1, 2):
        state["vq_model"][f"quantizer.layers.{q}.codebook"] = state["vq_model"]["quantizer.layers.0.codebook"]
    save_checkpoint(src, state)
    assert load_tokenizer(src).model_args["shared_codebook"] is False
    shutil.copy(src, tmp_path / "alone.tar")  # without opt.txt: the equality decides
    assert load_tokenizer(str(tmp_path / "alone.tar")).model_args["shared_codebook"] is True


def test_a_momask_file_under_the_legacy_net_key_takes_its_opt_txt(tmp_path) -> None:
    """MoMask's loaders read 'net' as well as 'vq_model'; a file under 'net' was detected as MoMask's but its
    opt.txt was not read (nor checked)."""
    src, opt = _momask_run(tmp_path, {"dilation_growth_rate: 3": "dilation_growth_rate: 2"})
    state = load_checkpoint(src)
    save_checkpoint(src, {"net": state.pop("vq_model"), "ep": state.get("ep", 0)})
    tok = load_tokenizer(src)
    assert tok.source_format == "momask" and tok.model_args["dilation_growth_rate"] == 2
    state = load_checkpoint(src)
    del state["net"]["quantizer.layers.2.codebook"]
    save_checkpoint(src, state)
    with pytest.raises(CheckpointError, match=rf"^{re.escape(opt)}: num_quantizers: 3, but the weights"):
        load_tokenizer(src)


def test_opt_txt_beside_a_t2m_gpt_file_is_not_applied(tmp_path) -> None:
    """'net' is T2M-GPT's key too: an opt.txt beside a VQ-VAE file is not MoMask's and is not read."""
    fx = Fixture("t2m_gpt_vqvae")
    shutil.copy(fx.checkpoint, tmp_path / "net_last.pth")
    (tmp_path / "opt.txt").write_text("dilation_growth_rate: 2\nnum_quantizers: 6\nvq_act: foo\n")
    assert load_tokenizer(str(tmp_path / "net_last.pth")).model_args["dilation_growth_rate"] == 3


_WEIGHTS = dict(nb_code=32, code_dim=32, num_quantizers=3, width=64, down_t=2, stride_t=2, depth=3, norm=None)


def _options(**fields: str) -> RunOptions:
    base = {"dilation_growth_rate": "3", "vq_act": "relu", "mu": "0.99", "vq_norm": "None",
            "shared_codebook": "False"}
    return RunOptions("/runs/rvq/opt.txt", {**base, **fields})


def _settings(options: RunOptions, weights: dict | None = None, shared: bool = False, requested: dict | None = None):
    return momask_settings(options, "/runs/rvq/model/net_best_fid.tar", {**_WEIGHTS, **(weights or {})}, shared,
                           requested or {})


def test_opt_txt_is_read_beside_the_file_before_the_run_folder(tmp_path):
    model_dir = tmp_path / "run" / "model"
    model_dir.mkdir(parents=True)
    (tmp_path / "run" / "opt.txt").write_text("width: 64\n")
    (model_dir / "opt.txt").write_text("------------ Options -------------\nwidth: 128\n")
    found = find_run_options(str(model_dir / "net_best_fid.tar"))
    assert found.path == str(model_dir / "opt.txt") and found.fields == {"width": "128"}


def test_opt_txt_values_keep_their_colons(tmp_path):
    (tmp_path / "opt.txt").write_text("checkpoints_dir: C:/runs\nname:  rvq:nq6 \n")
    found = find_run_options(str(tmp_path / "net.tar"))
    assert found.fields == {"checkpoints_dir": "C:/runs", "name": "rvq:nq6"}


def test_a_none_value_reads_as_missing():
    options = RunOptions("opt.txt", {"mu": "None", "width": ""})
    assert options.read("mu", float) is None and options.read("width", int) is None
    assert options.read("depth", int) is None


@pytest.mark.parametrize("field, value", [("stride_t", "1"), ("num_quantizers", "2"), ("width", "32")])
def test_a_size_smaller_or_larger_than_the_weights_is_refused(field, value):
    with pytest.raises(CheckpointError, match=rf"^/runs/rvq/opt.txt: {field}: {value}, but the weights of "
                                              rf"/runs/rvq/model/net_best_fid.tar have {field} "):
        _settings(_options(**{field: value}))


@pytest.mark.parametrize("opt_norm, weights_norm, layers", [("LN", "BN", "BatchNorm layers"),
                                                             ("BN", "LN", "affine LN / GN layers")])
def test_a_vq_norm_that_contradicts_the_batch_norm_weights_is_refused(opt_norm, weights_norm, layers):
    with pytest.raises(CheckpointError, match=rf"^/runs/rvq/opt.txt: vq_norm: {opt_norm}, but the weights of "
                                              rf"/runs/rvq/model/net_best_fid.tar have {layers}$"):
        _settings(_options(vq_norm=opt_norm), weights=dict(norm=weights_norm))
    assert _settings(_options(vq_norm=weights_norm), weights=dict(norm=weights_norm))["norm"] == weights_norm


def test_a_lowercase_none_norm_is_returned_as_none():
    assert _settings(_options(vq_norm="none"))["norm"] is None


def test_a_requested_norm_is_compared_by_meaning():
    assert _settings(_options(), requested={"norm": "none"})["norm"] is None
    with pytest.raises(CheckpointError, match=r"norm='XN' was requested but /runs/rvq/opt.txt says vq_norm: None"):
        _settings(_options(), requested={"norm": "XN"})


def test_shared_codebook_is_accepted_for_equal_codebooks_and_a_single_layer():
    assert _settings(_options(shared_codebook="True"), shared=True)["shared_codebook"] is True
    one = _settings(_options(shared_codebook="True", num_quantizers="1"), weights=dict(num_quantizers=1))
    assert one["shared_codebook"] is True
