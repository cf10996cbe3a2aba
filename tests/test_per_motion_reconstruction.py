"""``evaluation_AE.py --per_motion``: each motion reconstructed alone, cut to its length, as T2M-GPT's evaluation does,
next to the default padded batch (MoMask, MARDM)."""

from __future__ import annotations

import json

import pytest
import torch
from test_evaluation_AE import env, run_eval  # noqa: F401 (fixture)

from models.loader import load_tokenizer
from models.tokenizers import build_tokenizer
from utils.tokenizer_eval import reconstruct, reconstruct_each


@pytest.mark.parametrize("name", ["FSQ_AE_Tiny", "RVQVAE_Tiny", "AE_Tiny"])
def test_each_motion_is_reconstructed_as_if_it_were_alone(name):
    torch.manual_seed(0)
    tokenizer = load_tokenizer_of(name, build_tokenizer(name, input_width=12))
    motion = torch.randn(3, 24, 12)
    lengths = torch.tensor([24, 13, 8])
    motion[1, 13:] = 0.0  # zero padding, as the loaders pad
    motion[2, 8:] = 0.0
    recon, codes = reconstruct_each(tokenizer, motion, lengths)
    assert recon.shape == motion.shape and codes.shape[:2] == (3, 6)
    for i, length in enumerate(lengths.tolist()):
        alone, alone_codes = reconstruct(tokenizer, motion[i:i + 1, :length])
        torch.testing.assert_close(recon[i, :length], alone[0])
        assert (recon[i, length:] == 0).all()
        torch.testing.assert_close(codes[i, :alone_codes.shape[1]], alone_codes[0])
        assert (codes[i, alone_codes.shape[1]:] == 0).all()
    # The padded batch lets the convolutions near a short motion's end read its padding: another reconstruction.
    batched, _ = reconstruct(tokenizer, motion)
    assert not torch.allclose(batched[2, :8], recon[2, :8])
    torch.testing.assert_close(batched[0], recon[0])  # the full-length motion has no padding to read


def load_tokenizer_of(name, model):
    """The ``Tokenizer`` wrapper of a freshly built model, loaded through a checkpoint as the scripts load it."""
    import tempfile

    from utils.checkpoint import save_checkpoint

    with tempfile.TemporaryDirectory() as folder:
        save_checkpoint(f"{folder}/t.tar", {"stage": "tokenizer", "model_name": name,
                                            "model_args": dict(model.model_args), "model": model.state_dict()})
        return load_tokenizer(f"{folder}/t.tar")


def test_per_motion_evaluation_is_tagged_and_scores_the_alone_reconstructions(env):  # noqa: F811
    _, ck, _ = env
    batched = run_eval(env, "--name", "fsq")
    each = run_eval(env, "--name", "fsq", "--per_motion")
    eval_dir = ck / "synthetic" / "fsq" / "eval"
    saved = json.loads((eval_dir / "eval_net_best_loss_each_seed5.json").read_text())
    assert saved["config"]["per_motion"] is True and (eval_dir / "eval_net_best_loss_seed5.json").is_file()
    assert saved["protocol"]["metrics"]["fid"]["mean"] == each["protocol"]["metrics"]["fid"]["mean"]
    assert each["protocol"]["metrics"]["fid"]["mean"] != batched["protocol"]["metrics"]["fid"]["mean"]
    assert each["reconstruction"]["mpjpe_mm"] != batched["reconstruction"]["mpjpe_mm"]
