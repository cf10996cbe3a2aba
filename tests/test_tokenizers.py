"""Tokenizer models, registries, backbone options, losses and the loader on our own checkpoints."""

from __future__ import annotations

import re

import pytest
import torch
import torch.nn.functional as F

from models import AE_MODELS, TOKENIZERS, VQ_MODELS, build_tokenizer, load_tokenizer
from models.encdec import Decoder, Encoder, Resnet1D
from models.tokenizers import AE, FSQAE, RVQVAE, VQVAE
from utils.checkpoint import CheckpointError, save_checkpoint
from utils.dataset_specs import get_dataset_spec
from utils.losses import position_loss, reconstruction_loss, tokenizer_loss, velocity_loss

TINY = sorted(name for name in TOKENIZERS if name.endswith("_Tiny"))
FULL = sorted(name for name in TOKENIZERS if not name.endswith("_Tiny"))


def _motion(model, batch: int = 2, tokens: int = 4, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, tokens * model.unit_length, model.input_width, generator=g)


def _smooth_motion(model, batch: int = 4, tokens: int = 4, seed: int = 5) -> torch.Tensor:
    """One sine period per feature with random amplitude and phase: learnable in a few steps."""
    g = torch.Generator().manual_seed(seed)
    t = torch.linspace(0, 1, tokens * model.unit_length)[None, :, None]
    amplitude = torch.randn(batch, 1, model.input_width, generator=g)
    phase = torch.rand(batch, 1, model.input_width, generator=g) * 6.28
    return amplitude * torch.sin(6.28 * t + phase)


def _index_shape(model, batch: int, tokens: int) -> tuple[int, ...]:
    return (batch, tokens, model.num_quantizers) if model.kind == "rvq" else (batch, tokens)


# ----------------------------------------------------------------------------------------------------------------------
# registries


def test_every_family_has_a_tiny_variant() -> None:
    for cls in (AE, FSQAE, VQVAE, RVQVAE):
        assert any(isinstance(build_tokenizer(name), cls) for name in TINY), cls
    assert set(AE_MODELS) & set(VQ_MODELS) == set()


@pytest.mark.parametrize("name", TINY)
def test_tiny_variants_run(name: str) -> None:
    torch.manual_seed(0)
    model = build_tokenizer(name)
    motion = _motion(model)
    model.train()
    out = model(motion)
    assert out.recon.shape == motion.shape
    assert out.aux_loss.ndim == 0 and out.perplexity.ndim == 0
    (F.mse_loss(out.recon, motion) + out.aux_loss).backward()
    assert all(p.grad is not None for p in model.encoder.parameters())
    model.eval()
    with torch.no_grad():
        out = model(motion)
        codes = model.encode(motion)
        decoded = model.decode(codes)
    if model.kind == "ae":
        assert codes.shape == (2, 4, model.latent_dim) and codes.dtype == torch.float32
    else:
        assert codes.shape == _index_shape(model, 2, 4) and codes.dtype == torch.long
        assert codes.min() >= 0 and codes.max() < model.codebook_size
    assert torch.equal(out.indices_or_latents, codes)
    assert torch.allclose(decoded, out.recon, atol=1e-5)


# Parameter counts of the reference architectures (encoder + decoder; codebooks are buffers).
REFERENCE_PARAMS = {"VQVAE": 19_436_807, "RVQVAE": 19_436_807, "FSQ_MotionMillion": 11_343_120 + 6_662}
CODEBOOK_SIZES = {"FSQ_AE_Small": 3_125, "FSQ_AE_Medium": 5_000, "FSQ_AE_Large": 36_000, "FSQ_AE_XLarge": 76_800,
                  "FSQ_AE_High": 64_000, "FSQ_AE_Ultra": 102_400, "FSQ_AE_Mega": 163_840,
                  "FSQ_AE_HighDim7": 109_375, "FSQ_AE_HighDim8": 390_625, "FSQ_MotionMillion": 64_000,
                  "VQVAE": 512, "RVQVAE": 512, "VQ_AE_Model": 512}


@pytest.mark.parametrize("name", FULL)
def test_full_size_variants_shapes(name: str) -> None:
    # Built on the meta device: constructor, parameter count and shapes without allocating 19M parameters.
    with torch.device("meta"):
        model = build_tokenizer(name)
        latents = model.encode_latent(torch.zeros(2, 64, model.input_width))
        recon = model.decode_latent(latents)
    assert latents.shape == (2, 64 // model.unit_length, model.latent_dim)
    assert recon.shape == (2, 64, model.input_width)
    params = sum(p.numel() for p in model.parameters())
    if name in REFERENCE_PARAMS:
        assert params == REFERENCE_PARAMS[name]
    if name in CODEBOOK_SIZES:
        assert model.codebook_size == CODEBOOK_SIZES[name]
    assert model.latent_dim == 512


@pytest.mark.parametrize("name", TINY)
def test_model_args_rebuild_the_model(name: str) -> None:
    model = build_tokenizer(name)
    args = model.model_args

    def plain(value) -> bool:
        if isinstance(value, list):
            return all(plain(v) for v in value)
        return value is None or isinstance(value, (bool, int, float, str))

    assert all(plain(v) for v in args.values()), args
    rebuilt = build_tokenizer(name, **args)
    rebuilt.load_state_dict(model.state_dict())
    motion = _motion(model)
    model.eval()
    rebuilt.eval()
    assert torch.equal(model(motion).recon, rebuilt(motion).recon)


def test_build_tokenizer_errors() -> None:
    with pytest.raises(ValueError, match="unknown tokenizer 'Nope'"):
        build_tokenizer("Nope")
    with pytest.raises(ValueError, match=r"no arguments \['nb_code'\]"):
        build_tokenizer("FSQ_AE_Tiny", nb_code=3)
    with pytest.raises(ValueError, match="quantizer_type"):
        build_tokenizer("VQVAE_Tiny", quantizer_type="kmeans")


@pytest.mark.parametrize("quantizer_type", ["ema_reset", "ema", "reset", "orig"])
def test_vqvae_quantizer_types(quantizer_type: str) -> None:
    model = build_tokenizer("VQVAE_Tiny", quantizer_type=quantizer_type).train()
    out = model(_motion(model))
    assert out.indices_or_latents.shape == (2, 4)
    key = "quantizer.embedding.weight" if quantizer_type == "orig" else "quantizer.codebook"
    assert key in model.state_dict()


def test_bad_motion_fails_clearly() -> None:
    model = build_tokenizer("AE_Tiny")
    with pytest.raises(ValueError, match=r"\(B, T, 67\)"):
        model(torch.zeros(1, 16, 66))
    with pytest.raises(ValueError, match="multiple of the downsampling factor 4"):
        model(torch.zeros(1, 18, 67))
    with pytest.raises(ValueError, match=r"\(B, N, 16\)"):
        model.decode(torch.zeros(1, 4, 15))


# ----------------------------------------------------------------------------------------------------------------------
# FSQ autoencoder API


def test_fsq_ae_coordinates_api() -> None:
    torch.manual_seed(1)
    model = build_tokenizer("FSQ_AE_Tiny").eval()
    motion = _motion(model, batch=3)
    with torch.no_grad():
        enc = model.encode_with_fsq_output(motion)
        out = model(motion)
    assert enc.latent.shape == (3, 4, model.latent_dim)
    assert enc.coords.shape == (3, 4, model.fsq_dim) and enc.indices.shape == (3, 4)
    fsq = model.quantizer
    assert torch.equal(fsq.snap_to_grid(enc.coords), enc.coords)
    assert torch.equal(fsq.codes_to_indices(enc.coords), enc.indices)
    assert torch.equal(enc.indices, model.encode(motion))
    assert torch.allclose(enc.latent, model.fsq_coords_to_latent(enc.coords))
    with torch.no_grad():
        from_coords = model.decode_from_fsq(enc.coords)
        noisy = model.decode_from_fsq(enc.coords + 0.04 * torch.randn_like(enc.coords), snap=True)
    assert torch.allclose(from_coords, out.recon, atol=1e-5)
    assert torch.allclose(model.decode(enc.indices), out.recon, atol=1e-5)
    assert torch.allclose(noisy, out.recon, atol=1e-5)  # noise below half a grid step snaps back


# ----------------------------------------------------------------------------------------------------------------------
# backbone


def _dilations(resnet: Resnet1D) -> list[int]:
    return [block.conv1.dilation[0] for block in resnet.model]


def test_dilations_are_reversed_in_encoder_and_decoder() -> None:
    enc = Encoder(10, 8, down_t=2, width=16, depth=3, dilation_growth_rate=3)
    dec = Decoder(10, 8, down_t=2, width=16, depth=3, dilation_growth_rate=3)
    assert _dilations(enc.model[2][1]) == [9, 3, 1]
    assert _dilations(dec.model[3][0]) == [9, 3, 1]
    assert _dilations(Resnet1D(16, 3, 3, reverse_dilation=False)) == [1, 3, 9]
    assert [block.conv1.padding[0] for block in enc.model[2][1].model] == [9, 3, 1]


@pytest.mark.parametrize("norm", [None, "LN", "GN", "BN"])
@pytest.mark.parametrize("activation", ["relu", "silu", "gelu"])
def test_backbone_options(norm: str | None, activation: str) -> None:
    enc = Encoder(10, 8, down_t=1, width=32, depth=2, activation=activation, norm=norm, kernel_size=5)
    dec = Decoder(10, 8, down_t=1, width=32, depth=2, activation=activation, norm=norm, kernel_size=5)
    x = torch.randn(2, 12, 10)
    latents = enc(x)
    assert latents.shape == (2, 6, 8) and dec(latents).shape == (2, 12, 10)
    has_norm_weights = any(k.endswith("norm1.weight") for k in enc.state_dict())
    assert has_norm_weights == (norm is not None)
    # Each residual block computes x + conv2(act(norm(conv1(act(norm(x)))))) with the chosen activation and the
    # references' norms (T2M-GPT's GroupNorm of 32 groups, eps 1e-6; channel LayerNorm; BatchNorm1d, eps 1e-6).
    for block in (enc.model[2][1].model[0], dec.model[2][0].model[0]):
        generator = torch.Generator().manual_seed(0)
        with torch.no_grad():
            for tensor in [*block.parameters(), *block.buffers()]:
                if tensor.is_floating_point():
                    tensor.copy_(torch.rand(tensor.shape, generator=generator) + 0.5)
        block.eval()
        h = torch.randn(2, 32, 7, generator=generator)
        act = {"relu": F.relu, "silu": F.silu, "gelu": F.gelu}[activation]

        def normed(t, module):
            if norm == "LN":
                return F.layer_norm(t.transpose(1, 2), (32,), module.weight, module.bias).transpose(1, 2)
            if norm == "GN":
                return F.group_norm(t, 32, module.weight, module.bias, eps=1e-6)
            if norm == "BN":
                return F.batch_norm(t, module.running_mean, module.running_var, module.weight, module.bias, eps=1e-6)
            return t

        expected = h + block.conv2(act(normed(block.conv1(act(normed(h, block.norm1))), block.norm2)))
        torch.testing.assert_close(block(h), expected)


def test_backbone_bad_options() -> None:
    with pytest.raises(ValueError, match="activation must be one of"):
        Encoder(10, 8, activation="tanh")
    with pytest.raises(ValueError, match="norm must be one of"):
        Encoder(10, 8, norm="IN")
    with pytest.raises(ValueError, match="kernel_size must be odd"):
        Encoder(10, 8, kernel_size=4)


@pytest.mark.parametrize("stride_t", [1, 3])
def test_odd_temporal_stride_is_refused(stride_t: int) -> None:
    # The strided conv (kernel 2s, padding s // 2) gives T // s frames only for even s; an odd stride would shorten
    # the reconstruction (T=9, s=3: 2 latents, 6 frames back).
    for module in (Encoder, Decoder):
        with pytest.raises(ValueError, match=f"stride_t must be even.*got stride_t={stride_t}"):
            module(10, 8, down_t=1, stride_t=stride_t)
    with pytest.raises(ValueError, match="stride_t must be even"):
        build_tokenizer("AE_Tiny", stride_t=stride_t, down_t=1)
    # Without downsampling there is no strided conv, so the stride is irrelevant.
    assert Encoder(10, 8, down_t=0, stride_t=stride_t, width=16, depth=1)(torch.randn(1, 5, 10)).shape == (1, 5, 8)


def test_block_dropout_only_in_training() -> None:
    torch.manual_seed(2)
    model = build_tokenizer("AE_Tiny", dropout=0.5)
    motion = _motion(model)
    model.train()
    assert not torch.equal(model(motion).recon, model(motion).recon)
    model.eval()
    assert torch.equal(model(motion).recon, model(motion).recon)


# ----------------------------------------------------------------------------------------------------------------------
# losses


def test_loss_terms_are_what_they_say() -> None:
    spec = get_dataset_spec("t2m")
    torch.manual_seed(3)
    pred, target = torch.randn(2, 8, 263), torch.randn(2, 8, 263)
    pos = spec.position_slice
    assert (pos.start, pos.stop) == (4, 67)
    assert torch.isclose(reconstruction_loss(pred, target, "l1"), (pred - target).abs().mean())
    assert torch.isclose(position_loss(pred, target, spec, "mse"), ((pred[..., 4:67] - target[..., 4:67]) ** 2).mean())
    vel_pred, vel_target = pred[:, 1:, 4:67] - pred[:, :-1, 4:67], target[:, 1:, 4:67] - target[:, :-1, 4:67]
    assert torch.isclose(velocity_loss(pred, target, spec, "l1"), (vel_pred - vel_target).abs().mean())
    model = build_tokenizer("VQVAE_Tiny").train()
    out = model(target)
    loss, logs = tokenizer_loss(out.recon, target, out, spec, "l1_smooth", w_pos=0.5, w_vel=0.25, commit=0.02)
    expected = (F.smooth_l1_loss(out.recon, target) + 0.5 * F.smooth_l1_loss(out.recon[..., pos], target[..., pos])
                + 0.25 * velocity_loss(out.recon, target, pos) + 0.02 * out.aux_loss)
    assert torch.isclose(loss, expected)
    assert set(logs) == {"loss", "rec", "pos", "vel", "commit", "perplexity"}
    assert not any(v.requires_grad for v in logs.values())
    with pytest.raises(ValueError, match="recons_loss must be one of"):
        reconstruction_loss(pred, target, "huber")
    with pytest.raises(ValueError, match="same shape"):
        reconstruction_loss(pred, target[:, :4])


@pytest.mark.parametrize("name", ["AE_Tiny", "FSQ_AE_Tiny", "VQ_AE_Tiny", "RVQVAE_Tiny"])
def test_a_few_steps_lower_the_loss(name: str) -> None:
    torch.manual_seed(4)
    model = build_tokenizer(name, dropout=0.0).train()
    spec = get_dataset_spec("t2m_67" if model.input_width == 67 else "t2m")
    motion = _smooth_motion(model)
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-3)
    losses = []
    for _ in range(30):
        out = model(motion)
        loss, _ = tokenizer_loss(out.recon, motion, out, spec)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.75 * losses[0]


# ----------------------------------------------------------------------------------------------------------------------
# loader on our checkpoints


def _save_run(tmp_path, model, name: str) -> str:
    path = str(tmp_path / "net_best_fid.tar")
    save_checkpoint(path, {"stage": "tokenizer", "model_name": name, "model_args": model.model_args,
                           "model": model.state_dict(), "dataset": {"name": "t2m"}})
    return path


@pytest.mark.parametrize("name", ["AE_Tiny", "FSQ_AE_Tiny", "VQVAE_Tiny", "RVQVAE_Tiny"])
def test_load_tokenizer_reads_our_checkpoints(tmp_path, name: str) -> None:
    torch.manual_seed(6)
    model = build_tokenizer(name).train()
    motion = _motion(model)
    model(motion)  # initialises codebooks
    model.eval()
    path = _save_run(tmp_path, model, name)
    tok = load_tokenizer(path)
    assert tok.model_name == name and tok.kind == model.kind and tok.source_format == "ours"
    assert tok.dataset == {"name": "t2m"}
    with torch.no_grad():
        assert torch.equal(tok.encode(motion), model.encode(motion))
        assert torch.equal(tok(motion), model(motion).recon)
        assert torch.equal(tok.decode(tok.encode(motion)), model.decode(model.encode(motion)))
    tok.train()
    assert not tok.model.training  # a frozen tokenizer stays in eval mode
    assert not any(p.requires_grad for p in tok.parameters())


def test_load_tokenizer_refuses_contradictions(tmp_path) -> None:
    model = build_tokenizer("FSQ_AE_Tiny")
    path = _save_run(tmp_path, model, "FSQ_AE_Tiny")
    with pytest.raises(CheckpointError, match="model_name is 'FSQ_AE_Tiny' in the checkpoint but 'FSQ_AE_High'"):
        load_tokenizer(path, model_name="FSQ_AE_High")
    with pytest.raises(CheckpointError, match="levels"):
        load_tokenizer(path, levels=[5, 5, 5])
    bad = str(tmp_path / "other.tar")
    save_checkpoint(bad, {"weights": {}, "epoch": 3})
    with pytest.raises(CheckpointError, match=r"top-level keys are \['epoch', 'format_version', 'weights'\]"):
        load_tokenizer(bad)


@pytest.mark.parametrize("name", ["AE_Tiny", "FSQ_AE_Tiny", "RVQVAE_Tiny", "PartAwareRVQ_Tiny"])
def test_motion_of_the_wrong_dtype_fails_clearly(name: str) -> None:
    model = build_tokenizer(name).eval()
    motion = _motion(model)
    with pytest.raises(TypeError, match="motion must be a floating-point tensor, got torch.int64"):
        model(motion.long())
    with pytest.raises(TypeError, match=r"motion is torch.float64 but the model's weights are torch.float32"):
        model.encode(motion.double())
    latents = model.encode_latent(motion)
    with pytest.raises(TypeError, match="latents must be a floating-point tensor"):
        model.decode_latent(latents.long())
    # Under autocast the convolutions cast float32 and lower-precision inputs; float64 they never cast.
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert model(motion.bfloat16()).recon.shape == motion.shape
        with pytest.raises(TypeError, match="motion is torch.float64"):
            model(motion.double())


@pytest.mark.parametrize("name", ["AE_Tiny", "FSQ_AE_Tiny", "RVQVAE_Tiny", "PartAwareRVQ_Tiny"])
def test_numpy_arrays_are_refused_naming_the_tensor_expected(tmp_path, name: str) -> None:
    """A numpy array given to a loaded tokenizer's encode (or decode) failed with a bare AttributeError ('numpy.ndarray'
    object has no attribute 'is_floating_point'); it is a TypeError saying which tensor is expected and how to make it
    from the array."""
    model = build_tokenizer(name).eval()
    tok = load_tokenizer(_save_run(tmp_path, model, name))
    motion = _motion(model)
    with pytest.raises(TypeError, match=rf"^{type(model).__name__}: motion must be a torch tensor of shape \(B, T, "
                                        rf"{model.input_width}\), got numpy.ndarray; convert a numpy array with "
                                        r"torch.from_numpy\(motion\).float\(\)$"):
        tok.encode(motion.numpy())
    codes = tok.encode(motion)
    what, convert = ("latents", "float") if model.kind == "ae" else ("indices", "long")
    with pytest.raises(TypeError, match=rf"{what} must be a torch tensor of shape \(B, N.*got numpy.ndarray; convert "
                                        rf"a numpy array with torch.from_numpy\({what}\).{convert}\(\)$"):
        tok.decode(codes.numpy())
    converted = getattr(torch.from_numpy(codes.numpy()), convert)()
    assert torch.equal(tok.decode(converted), tok.decode(codes))


QUANTIZED_TINY = [name for name in TINY if name != "AE_Tiny"]


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float64])
@pytest.mark.parametrize("name", QUANTIZED_TINY)
def test_a_tokenizer_cast_to_another_dtype_runs_in_it(name: str, dtype: torch.dtype) -> None:
    """``model.to(torch.bfloat16)`` (or ``.double()``) with input of that dtype: the quantizers measured and projected
    in float32 against weights and codebooks of the new dtype ("expected m1 and m2 to have the same dtype")."""
    torch.manual_seed(0)
    model = build_tokenizer(name)
    motion = _motion(model)
    model.train()
    model(motion)  # initialises the EMA codebooks from the batch
    model.eval()
    with torch.no_grad():
        codes = model.encode(motion)
        model.to(dtype)
        cast = motion.to(dtype)
        out, cast_codes = model(cast), model.encode(cast)
        decoded = model.decode(cast_codes)
    assert out.recon.dtype == decoded.dtype == dtype and out.recon.shape == motion.shape
    assert torch.isfinite(out.recon.float()).all()
    assert cast_codes.shape == codes.shape and cast_codes.dtype == torch.long
    assert torch.equal(out.indices_or_latents, cast_codes)
    if dtype == torch.float64:  # the same encoder to round-off: the same codes
        assert torch.equal(cast_codes, codes)
    if model.kind in ("fsq", "lfq"):
        coords = model.encode_with_grid_output(cast).coords
        assert model.decode_from_grid(coords, snap=True).dtype == dtype


def test_fsq_constants_stay_float32_when_the_model_is_cast() -> None:
    """bfloat16 rounds the basis of levels [7, 5, 5, 5, 5, 5] (4375) and the bound (3.0030): the grid would move."""
    from models.fsq import FSQ

    fsq = FSQ([7, 5, 5, 5, 5, 5], dim=16)
    constants = {name: buffer.clone() for name, buffer in fsq.named_buffers() if buffer.is_floating_point()}
    fsq.to(torch.bfloat16)
    for name, value in constants.items():
        assert fsq.get_buffer(name).dtype == torch.float32 and torch.equal(fsq.get_buffer(name), value), name
    assert fsq.project_in.weight.dtype == torch.bfloat16


@pytest.mark.parametrize("name", ["FSQ_AE_Tiny", "LFQ_AE_Tiny", "VQVAE_Tiny", "RVQVAE_Tiny"])
def test_decode_of_indices_of_the_wrong_rank_names_the_indices(name: str) -> None:
    """``decode(codes[0])`` looked the indices up first and then failed on the latents that gave ("expected latents
    of shape (B, N, 16), got (16, 16)"), which the caller never passed."""
    model = build_tokenizer(name).eval()
    codes = model.encode(_motion(model))
    expected = r"\(B, N, Q\) with Q <= 3 layers" if model.kind == "rvq" else r"\(B, N\)"
    wrong = [codes[None]] + ([codes[0, 0, 0]] if model.kind == "rvq" else [codes[0]])
    for indices in wrong:
        given = re.escape(str(tuple(indices.shape)))
        with pytest.raises(ValueError, match=rf"expected indices of shape {expected}.*got {given}"):
            model.decode(indices)
    assert model.decode(codes).shape == (2, 4 * model.unit_length, model.input_width)


def test_unit_length_is_stride_to_the_power_of_down_t():
    model = RVQVAE(input_width=12, nb_code=8, code_dim=8, num_quantizers=1, width=16, depth=1, down_t=3)
    assert model.unit_length == 8
    with torch.no_grad():
        assert model(torch.randn(1, 16, 12)).recon.shape == (1, 16, 12)
        with pytest.raises(ValueError, match="not a positive multiple"):
            model(torch.randn(1, 12, 12))  # 12 frames are 1.5 tokens of 8


def test_velocity_loss_refuses_a_single_frame():
    with pytest.raises(ValueError, match="at least 2 frames"):
        velocity_loss(torch.zeros(2, 1, 10), torch.zeros(2, 1, 10), slice(0, 6))


@pytest.mark.parametrize("name", ["AE_Tiny", "FSQ_AE_Tiny", "VQVAE_Tiny", "RVQVAE_Tiny", "LFQ_AE_Tiny"])
def test_decoding_no_tokens_is_refused_naming_the_shape(name: str) -> None:
    """Zero tokens are refused by the tokenizer, as zero frames are by encode, not deep inside a convolution."""
    model = build_tokenizer(name).eval()
    with pytest.raises(ValueError, match=rf"^{type(model).__name__}: latents of shape \(2, 0, {model.latent_dim}\) "
                                         r"hold no tokens; the decoder needs at least one \(N >= 1\)$"):
        model.decode_latent(torch.zeros(2, 0, model.latent_dim))
    if model.kind != "ae":
        empty = torch.zeros((2, 0, 3) if name == "RVQVAE_Tiny" else (2, 0), dtype=torch.long)
        with pytest.raises(ValueError, match="hold no tokens"):
            model.decode(empty)
