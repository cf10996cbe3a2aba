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
