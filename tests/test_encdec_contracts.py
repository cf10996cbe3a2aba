"""Contracts of the shared 1D-conv encoder / decoder (models/encdec.py): the reference layer stack computed by hand,
kernel sizes, norms and their eps, argument checks, the default widths and dilations, block dropout."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from models.encdec import Decoder, Encoder, ResConv1DBlock, normalize_norm_name
from models.tokenizers import build_tokenizer


def _blocks(module: nn.Module) -> list[ResConv1DBlock]:
    return [m for m in module.modules() if isinstance(m, ResConv1DBlock)]


def _ref_resblock(block: ResConv1DBlock, h: torch.Tensor) -> torch.Tensor:
    """The reference pre-activation block without norm, ReLU and no dropout (eval)."""
    c1, c2 = block.conv1, block.conv2
    d = c1.dilation[0]
    k = c1.kernel_size[0]
    y = F.conv1d(F.relu(h), c1.weight, c1.bias, padding=d * (k - 1) // 2, dilation=d)
    return h + F.conv1d(F.relu(y), c2.weight, c2.bias)


def _ref_encoder(enc: Encoder, x: torch.Tensor, k: int, stride: int, down_t: int, rate: int, depth: int):
    """Reference encoder: conv k -> ReLU -> [conv 2s/s/pad s//2 -> blocks with dilations rate**d reversed] -> conv k."""
    m = enc.model
    h = F.relu(F.conv1d(x.transpose(1, 2), m[0].weight, m[0].bias, padding=(k - 1) // 2))
    for i in range(down_t):
        down, res = m[2 + i][0], m[2 + i][1]
        h = F.conv1d(h, down.weight, down.bias, stride=stride, padding=stride // 2)
        blocks = list(res.model)
        assert [b.conv1.dilation[0] for b in blocks] == [rate ** d for d in range(depth)][::-1]
        for b in blocks:
            h = _ref_resblock(b, h)
    last = m[2 + down_t]
    return F.conv1d(h, last.weight, last.bias, padding=(k - 1) // 2).transpose(1, 2)


def _ref_decoder(dec: Decoder, z: torch.Tensor, k: int, stride: int, down_t: int):
    """Reference decoder: conv k -> ReLU -> [blocks -> nearest x stride -> conv 3] -> conv k -> ReLU -> conv k."""
    m = dec.model
    h = F.relu(F.conv1d(z.transpose(1, 2), m[0].weight, m[0].bias, padding=(k - 1) // 2))
    for i in range(down_t):
        res, _, conv = m[2 + i]
        for b in res.model:
            h = _ref_resblock(b, h)
        h = h.repeat_interleave(stride, dim=2)
        assert conv.kernel_size == (3,)
        h = F.conv1d(h, conv.weight, conv.bias, padding=1)
    a, c = m[2 + down_t], m[4 + down_t]
    h = F.relu(F.conv1d(h, a.weight, a.bias, padding=(k - 1) // 2))
    return F.conv1d(h, c.weight, c.bias, padding=(k - 1) // 2).transpose(1, 2)


# ----- models/encdec.py ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("activation", ["relu", "gelu"])
def test_encoder_and_decoder_compute_the_reference_layer_stack(activation):
    """With kernel 5, stride 4 and two downsamplings, the encoder and decoder outputs equal the reference stack
    computed by hand from their own weights: ReLU stem, strided conv (2s, s, s // 2), residual blocks with dilations
    rate**d largest first and kernel 5, final conv of kernel 5; the decoder's nearest upsampling by the stride,
    kernel-3 conv after it, ReLU before its output conv. With gelu blocks, the stems and the decoder's last
    activation stay ReLU (as in every reference) while the blocks use GELU."""
    torch.manual_seed(0)
    kw = dict(input_emb_width=6, output_emb_width=5, down_t=2, stride_t=4, width=8, depth=2, dilation_growth_rate=2,
              kernel_size=5, activation=activation)
    enc, dec = Encoder(**kw).eval(), Decoder(**kw).eval()
    x = torch.randn(2, 64, 6)
    z = enc(x)
    assert z.shape == (2, 4, 5)
    assert dec(z).shape == (2, 64, 6)
    if activation == "relu":
        torch.testing.assert_close(z, _ref_encoder(enc, x, 5, 4, 2, 2, 2))
        torch.testing.assert_close(dec(z), _ref_decoder(dec, z, 5, 4, 2))
    else:
        # The stems and the ReLU before the decoder's output conv are ReLU, never the block activation.
        assert type(enc.model[1]) is nn.ReLU and type(dec.model[1]) is nn.ReLU and type(dec.model[5]) is nn.ReLU
        assert all(type(b.activation1) is nn.GELU for b in _blocks(enc) + _blocks(dec))


def test_kernel_size_reaches_every_conv_but_the_post_upsampling_one():
    """MotionMillion's kernel_size sets the stem, residual (padding dilation * (k - 1) // 2) and output convs; the
    conv after each upsampling stays kernel 3 and the strided conv kernel 2 * stride."""
    enc = Encoder(6, 5, down_t=1, stride_t=2, width=8, depth=3, dilation_growth_rate=3, kernel_size=5)
    dec = Decoder(6, 5, down_t=1, stride_t=2, width=8, depth=3, dilation_growth_rate=3, kernel_size=5)
    for m in (enc, dec):
        blocks = _blocks(m)
        assert [b.conv1.kernel_size[0] for b in blocks] == [5, 5, 5]
        assert [b.conv1.padding[0] for b in blocks] == [18, 6, 2]
    assert enc.model[0].kernel_size == (5,) and enc.model[-1].kernel_size == (5,) and enc.model[-1].padding == (2,)
    assert enc.model[2][0].kernel_size == (4,)
    assert dec.model[2][2].kernel_size == (3,) and dec.model[2][2].padding == (1,)
    assert dec.model[0].kernel_size == (5,) and dec.model[-1].kernel_size == (5,) and dec.model[-3].kernel_size == (5,)


@pytest.mark.parametrize("spelling", [None, "None", "none", "NONE"])
def test_every_spelling_of_no_norm_builds_a_backbone_without_norm_layers(spelling):
    """Option dumps write no norm as None, "None" or "none": all mean no normalisation, not a ValueError."""
    assert normalize_norm_name(spelling) is None
    enc = Encoder(6, 5, down_t=1, width=8, depth=1, norm=spelling)
    assert not any("norm" in k for k in enc.state_dict())


def test_norm_eps_are_the_references():
    """GroupNorm (32 groups) and BatchNorm1d use eps 1e-6 as in T2M-GPT/MoMask; LayerNorm keeps torch's 1e-5."""
    for norm, cls, eps in (("GN", nn.GroupNorm, 1e-6), ("BN", nn.BatchNorm1d, 1e-6), ("LN", nn.LayerNorm, 1e-5)):
        block = _blocks(Encoder(6, 5, down_t=1, width=32, depth=1, norm=norm))[0]
        for n in (block.norm1, block.norm2):
            assert isinstance(n, cls) and n.eps == eps
            assert n.weight is not None and n.bias is not None
        if norm == "GN":
            assert block.norm1.num_groups == 32


@pytest.mark.parametrize("rate", [2.5, 2.0, True])
def test_a_dilation_growth_rate_that_is_not_a_whole_number_is_refused(rate):
    """Float or bool rates are refused when the backbone is built, naming dilation_growth_rate."""
    for cls in (Encoder, Decoder):
        with pytest.raises(ValueError, match=r"dilation_growth_rate must be a whole number >= 1 .*got"):
            cls(6, 5, down_t=1, width=8, depth=2, dilation_growth_rate=rate)


@pytest.mark.parametrize("kwargs", [dict(stride_t=0, down_t=0), dict(stride_t=0, down_t=1), dict(depth=0),
                                    dict(down_t=-1)])
def test_zero_stride_depth_or_negative_down_t_are_refused_by_name(kwargs):
    """stride_t < 1, depth < 1 and down_t < 0 are ValueErrors that name all three constraints."""
    args = dict(input_emb_width=6, output_emb_width=5, width=8, depth=1) | kwargs
    for cls in (Encoder, Decoder):
        with pytest.raises(ValueError, match=r"need down_t >= 0, stride_t >= 1, depth >= 1"):
            cls(**args)


def test_default_backbone_is_the_references_width_512_down_t_2_dilation_3():
    """Encoder()/Decoder() defaults: two strided blocks, dilations [9, 3, 1], 19,436,807 parameters in all for
    263-dim motion (the reference count), 4x downsampling."""
    enc, dec = Encoder(), Decoder()
    assert sum(p.numel() for p in enc.parameters()) == 9_587_200
    assert sum(p.numel() for p in dec.parameters()) == 9_849_607
    assert [b.conv1.dilation[0] for b in _blocks(enc)] == [9, 3, 1] * 2
    assert [b.conv1.dilation[0] for b in _blocks(dec)] == [9, 3, 1] * 2


@pytest.mark.parametrize("cls", [Encoder, Decoder])
def test_block_dropout_is_in_every_residual_block_of_both_halves(cls):
    """dropout=0.2 (MoMask/MARDM) puts Dropout(0.2) after conv2 of every block, encoder and decoder alike, so a
    train-mode pass is random and an eval one is not."""
    torch.manual_seed(0)
    m = cls(6, 5, down_t=1, width=8, depth=2, dropout=0.2)
    assert all(isinstance(b.dropout, nn.Dropout) and b.dropout.p == 0.2 for b in _blocks(m))
    x = torch.randn(1, 8, 6 if cls is Encoder else 5)
    m.train()
    assert not torch.equal(m(x), m(x))
    m.eval()
    assert torch.equal(m(x), m(x))


def test_float64_motion_error_names_the_models_dtype_to_convert_to():
    """float64 motion into a float32 tokenizer: the TypeError says to convert with .to(torch.float32)."""
    model = build_tokenizer("AE_Tiny", input_width=8)
    with pytest.raises(TypeError, match=r"float64 but the model's weights are torch.float32; convert it with "
                                        r"\.to\(torch\.float32\)"):
        model(torch.randn(1, 4 * model.unit_length, 8, dtype=torch.float64))
