"""The conv backbone's arguments are checked when it is built, so a bad one fails there with its name instead of at
the first forward pass, and ``tools/import_checkpoint.py`` refuses it before it writes a run."""

from __future__ import annotations

import shutil

import pytest
import torch
from test_tokenizer_parity import Fixture, _dataset_args
from tool_helpers import load_tool

from models.encdec import Decoder, Encoder
from models.loader import load_tokenizer
from models.tokenizers import build_tokenizer
from utils.checkpoint import CheckpointError


def test_group_norm_names_the_width_it_cannot_split() -> None:
    """GroupNorm splits the channels in 32 groups: a width of 8 failed in torch naming neither the norm nor --width."""
    for cls in (Encoder, Decoder):
        with pytest.raises(ValueError, match=r"norm 'GN' .*\(--width\) must be a multiple of 32: got 48"):
            cls(input_emb_width=8, output_emb_width=4, width=48, depth=1, norm="GN")
    cls(input_emb_width=8, output_emb_width=4, width=64, depth=1, norm="GN")


@pytest.mark.parametrize("rate", [0, -1, -3])
def test_a_dilation_growth_rate_below_one_is_refused_when_built(rate) -> None:
    """Rate 0 gives dilations 1, 0, 0 and a negative one negative dilations: the model was built and failed only in
    its first forward pass ("non-positive dilation is not supported")."""
    for cls in (Encoder, Decoder):
        with pytest.raises(ValueError, match=rf"dilation_growth_rate must be a whole number >= 1 .*got {rate}"):
            cls(input_emb_width=8, output_emb_width=4, width=8, depth=2, dilation_growth_rate=rate)
    with pytest.raises(ValueError, match="dilation_growth_rate must be"):
        build_tokenizer("RVQVAE_Tiny", input_width=8, dilation_growth_rate=rate)
    model = build_tokenizer("RVQVAE_Tiny", input_width=8, dilation_growth_rate=1)  # 1: every dilation 1, valid
    model(torch.randn(1, 4 * model.unit_length, 8))


@pytest.mark.parametrize("rate", ["0", "-2"])
def test_import_refuses_a_dilation_growth_rate_below_one_before_writing(tmp_path, capsys, rate) -> None:
    fx = Fixture("momask_rvqvae")
    bare = tmp_path / "bare" / "net_best_fid.tar"  # without the fixture's opt.txt, which says 3
    bare.parent.mkdir()
    shutil.copy(fx.checkpoint, bare)
    with pytest.raises(CheckpointError, match=r"net_best_fid.tar: cannot build RVQVAE .*dilation_growth_rate must"):
        load_tokenizer(str(bare), dilation_growth_rate=int(rate))
    tool = load_tool("import_checkpoint")
    argv = ["--src", fx.checkpoint, "--name", "bad_rate", "--checkpoints_dir", str(tmp_path / "runs"),
            *_dataset_args(263, tmp_path), f"--dilation_growth_rate={rate}"]
    with pytest.raises(SystemExit):
        tool.main(tool.get_parser().parse_args(argv))
    assert "argument --dilation_growth_rate: expected a whole number >= 1" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()
