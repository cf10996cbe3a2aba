"""Model-part contracts no other test pinned: the ODE solvers' step rules (zero steps, non-finite retries, landing on
t1, error-free growth), sampling temperature and the cosine training mask ratio, LFQ's default temperature, strided
encoders, body-part errors and refusals, official-file loading (stride, MoMask dropout, strict weights), the
evaluator's motion checks and memo keys, and OpenAI CLIP's BPE merges and text cleaning."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch


# models.ode
def test_fixed_step_solver_refuses_zero_steps():
    """A fixed-step solve with no steps would silently return the initial noise as the sample."""
    from models.ode import odeint_fixed

    for method in ("euler", "heun"):
        with pytest.raises(ValueError, match="num_steps must be >= 1, got 0"):
            odeint_fixed(lambda t, y: -y, torch.ones(3), 0, method)


def test_dopri5_retries_a_non_finite_step_at_min_factor_of_its_size():
    """When a step's error estimate is NaN/inf the step is retried at ``min_factor`` times its size: the first stage
    of the retried step sits at 1/5 of the new step, i.e. min_factor times where the failed step's first stage sat."""
    from models.ode import odeint_dopri5

    calls = []

    def f(t, y):
        calls.append(float(t))
        n = len(calls)
        if 3 <= n <= 8:  # the six stage evaluations of the first attempted step
            return torch.full_like(y, float("nan"))
        return -y

    result = odeint_dopri5(f, torch.ones(2, dtype=torch.float64), 0.0, 1.0, min_factor=0.2)
    assert math.isclose(calls[8] / calls[2], 0.2, rel_tol=1e-9)
    np.testing.assert_allclose(result.y.numpy(), np.exp(-1.0), rtol=1e-3)
    calls.clear()
    odeint_dopri5(f, torch.ones(2, dtype=torch.float64), 0.0, 1.0, min_factor=0.3)
    assert math.isclose(calls[8] / calls[2], 0.3, rel_tol=1e-9)


def test_dopri5_stops_on_a_step_that_lands_exactly_on_t1():
    """A step ending exactly at t1 ends the solve (as torchdiffeq, which steps only while t1 lies beyond the
    reached time): no further step and no extra evaluations. For dy/dt = 0 in float64 the starting step is 1e-6,
    so with t1 = 1e-6 the first step lands exactly on t1: 2 evaluations to choose the step plus 6 stages."""
    from models.ode import odeint_dopri5

    result = odeint_dopri5(lambda t, y: torch.zeros_like(y), torch.ones(3, dtype=torch.float64), 0.0, 1e-6)
    assert (result.num_evals, result.num_steps) == (8, 1)
    assert torch.equal(result.y, torch.ones(3, dtype=torch.float64))



def test_dopri5_grows_an_error_free_step_by_max_factor():
    """A step with zero error estimate grows by ``max_factor`` (torchdiffeq's rule). For dy/dt = 0 in float64 the
    steps are 1e-6, 1e-5, ..., 1: seven steps reach t1 = 1, each of 6 stage evaluations after the 2 of the start."""
    from models.ode import odeint_dopri5

    calls = []

    def f(t, y):
        calls.append(float(t))
        return torch.zeros_like(y)

    result = odeint_dopri5(f, torch.ones(3, dtype=torch.float64), 0.0, 1.0)
    assert (result.num_steps, result.num_evals) == (7, 2 + 7 * 6)
    starts = [calls[2 + 6 * k] for k in range(7)]  # first stage of each step: t_k + h_k / 5
    expected, t, h = [], 0.0, 1e-6
    for _ in range(7):
        expected.append(t + h / 5)
        t, h = t + h, 10 * h
    np.testing.assert_allclose(starts, expected, rtol=1e-9)
    assert torch.equal(result.y, torch.ones(3, dtype=torch.float64))


# models.mask_schedule
@pytest.mark.parametrize("sampling", ["categorical", "gumbel"])
def test_sampling_refuses_a_zero_temperature(sampling):
    """Temperature 0 divides the logits by zero; it is refused up front (ValueError naming the temperature) rather
    than producing NaN probabilities or an arbitrary argmax."""
    from models.mask_schedule import sample_from_logits

    logits = torch.tensor([[0.5, -1.0, 0.0, 2.0]])
    with pytest.raises(ValueError, match="temperature"):
        sample_from_logits(logits, 0.0, sampling, torch.Generator().manual_seed(0))


# models.lfq
def test_default_lfq_entropy_uses_vector_quantize_pytorch_temperature():
    """With its defaults (vector-quantize-pytorch's LFQ: inv_temperature 100, entropy weight 0.1, diversity 1) the
    penalty is computed from softmax(2 * 100 * <h, c>) over all corners c: checked against a dense calculation."""
    from models.lfq import LFQ

    lfq = LFQ(8).train()
    g = torch.Generator().manual_seed(0)
    h = 0.01 * torch.randn(64, 3, generator=g, dtype=torch.float64)
    bits = torch.tensor([[(i >> (2 - j)) & 1 for j in range(3)] for i in range(8)], dtype=torch.float64)
    codes = bits * 2 - 1
    probs = torch.softmax(2 * 100.0 * h @ codes.t(), -1)
    per_sample = -(probs * probs.clamp_min(1e-30).log()).sum(-1).mean()
    mean = probs.mean(0)
    codebook = -(mean * mean.log()).sum()
    terms = lfq.entropy_terms(h.float())
    torch.testing.assert_close(terms.per_sample.double(), per_sample, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(terms.codebook.double(), codebook, rtol=1e-4, atol=1e-5)
    out = lfq(h.float()[None])
    torch.testing.assert_close(out.aux_loss.double(), 0.1 * (per_sample - codebook), rtol=1e-4, atol=1e-5)


# models.encdec
@pytest.mark.parametrize("stride_t", [4, 6])
def test_encoder_with_a_larger_even_stride_keeps_t_over_stride_frames(stride_t):
    """The strided down-sampling conv (kernel 2s, stride s) is padded by s // 2 as in T2M-GPT, so T frames give
    T / s latents for any even s, not only for s = 2; checked against a plain conv with that padding."""
    from models.encdec import Encoder

    torch.manual_seed(0)
    enc = Encoder(input_emb_width=5, output_emb_width=4, down_t=1, stride_t=stride_t, width=8, depth=1,
                  dilation_growth_rate=1).eval()
    T = 8 * stride_t
    x = torch.randn(2, T, 5)
    assert enc(x).shape == (2, T // stride_t, 4)
    down = enc.model[2][0]
    stem = enc.model[1](enc.model[0](x.transpose(1, 2)))
    expected = torch.nn.functional.conv1d(stem, down.weight, down.bias, stride=stride_t, padding=stride_t // 2)
    torch.testing.assert_close(down(stem), expected)


# models.body_parts
def test_part_feature_errors_are_mean_absolute_errors():
    """Each part's error is the mean absolute difference over its own feature columns (an independent numpy
    calculation), not a squared error."""
    from models.body_parts import part_feature_errors

    g = torch.Generator().manual_seed(0)
    recon, target = torch.randn(2, 5, 6, generator=g), torch.randn(2, 5, 6, generator=g)
    parts = {"a": [0, 1, 2], "b": [3, 4, 5]}
    errors = part_feature_errors(recon, target, parts)
    diff = np.abs(recon.numpy() - target.numpy())
    for name, idx in parts.items():
        assert errors[name] == pytest.approx(float(diff[..., idx].mean()), rel=1e-6)


def test_part_slice_dataset_refuses_a_window_without_the_last_index():
    """A window of D features has no feature D: asking for it is refused with a ValueError naming the window."""
    from models.body_parts import PartSliceDataset

    ds = PartSliceDataset([torch.zeros(3, 4)], [1, 4])
    with pytest.raises(ValueError, match="has no feature 4"):
        ds[0]
    assert torch.equal(PartSliceDataset([torch.arange(8.0).reshape(2, 4)], [1, 3])[0],
                       torch.tensor([[1.0, 3.0], [5.0, 7.0]]))


def test_combined_decode_refuses_parts_of_different_lengths():
    """Codes whose parts decode to different frame counts cannot be put into one body: a ValueError, not a silent
    broadcast of a one-token part over the whole clip."""
    from models.body_parts import BodyPartTokenizers

    torch.manual_seed(0)
    model = BodyPartTokenizers.build({"a": [0, 1], "b": [2, 3, 4]}, 5, "BodyPartRVQ_Tiny").eval()
    codes = {"a": torch.zeros(1, 3, 3, dtype=torch.long), "b": torch.zeros(1, 1, 3, dtype=torch.long)}
    with torch.no_grad():
        with pytest.raises(ValueError, match="different"):
            model.combined_decode(codes)



def test_body_part_tokenizers_refuse_parts_that_downsample_differently():
    """Every part must turn the same number of frames into one token; parts whose tokenizers downsample differently
    cannot be decoded back into one body and are refused when built."""
    from models.body_parts import BodyPartTokenizers

    common = dict(nb_code=8, code_dim=4, num_quantizers=2, width=8, depth=1)
    with pytest.raises(ValueError, match="downsample alike"):
        BodyPartTokenizers({"a": [0, 1], "b": [2, 3, 4]}, 5,
                           {"a": dict(common, input_width=2, down_t=1), "b": dict(common, input_width=3, down_t=2)})


# models.loader
def test_official_file_with_a_stride_4_backbone_loads_with_its_stride(tmp_path):
    """The temporal stride of an official file is read from its down-sampling conv (kernel 2 * stride): a stride-4
    T2M-GPT-style file loads as stride 4 and reproduces the source model exactly."""
    from models.loader import load_tokenizer
    from models.tokenizers import build_tokenizer
    from utils.checkpoint import save_checkpoint

    torch.manual_seed(1)
    model = build_tokenizer("VQVAE", input_width=12, nb_code=16, code_dim=8, width=16, depth=1, down_t=1,
                            stride_t=4).train()
    x = torch.randn(2, 4 * model.unit_length, 12)
    model(x)
    model.eval()
    sd = {"vqvae." + k: v for k, v in model.state_dict().items()
          if not k.endswith(("code_sum", "code_count", "initted"))}
    path = str(tmp_path / "net_last.pth")
    save_checkpoint(path, {"net": sd})
    tok = load_tokenizer(path)
    assert tok.model_args["stride_t"] == 4 and tok.unit_length == 4
    with torch.no_grad():
        assert torch.equal(tok.encode(x), model.encode(x))


def test_imported_momask_rvq_keeps_the_reference_block_dropout():
    """MoMask's residual blocks carry Dropout(0.2) (train mode only): an imported MoMask RVQ file is rebuilt with it,
    so fine-tuning an imported run trains as the reference did."""
    from models.loader import import_official
    from models.tokenizers import build_tokenizer

    torch.manual_seed(0)
    model = build_tokenizer("RVQVAE", input_width=12, nb_code=16, code_dim=8, width=16, depth=1, num_quantizers=2)
    sd = {k: v for k, v in model.state_dict().items() if not k.endswith(("code_sum", "code_count", "initted"))}
    imported = import_official({"vq_model": sd}, "momask.tar")
    assert imported.model_name == "RVQVAE" and imported.model_args["dropout"] == 0.2
    rebuilt = build_tokenizer(imported.model_name, **imported.model_args)
    drops = [m for m in rebuilt.modules() if isinstance(m, torch.nn.Dropout)]
    assert drops and all(m.p == 0.2 for m in drops)


@pytest.mark.parametrize("damage", ["missing", "unexpected"])
def test_a_checkpoint_whose_weights_do_not_all_fit_is_refused(tmp_path, damage):
    """Loading is strict: a file missing a weight (which would stay randomly initialised) or carrying a weight the
    model does not have is a CheckpointError naming the file, never a silently partial load."""
    from models.loader import load_tokenizer
    from models.tokenizers import build_tokenizer
    from utils.checkpoint import CheckpointError, save_checkpoint

    torch.manual_seed(0)
    model = build_tokenizer("VQVAE", input_width=12, nb_code=16, code_dim=8, width=16, depth=1)
    sd = dict(model.state_dict())
    if damage == "missing":
        del sd["decoder.model.0.bias"]
    else:
        sd["decoder.extra.weight"] = torch.zeros(3)
    path = str(tmp_path / "ours.tar")
    save_checkpoint(path, {"model_name": "VQVAE", "model_args": dict(model.model_args), "model": sd})
    with pytest.raises(CheckpointError, match="ours.tar"):
        load_tokenizer(path)


# utils.model_embeddings
def _eval_batch(motion, lengths):
    from utils.datasets import EvalBatch

    b = motion.shape[0]
    return EvalBatch(torch.zeros(b, 3, 4), torch.zeros(b, 3, 2), ["c"] * b, torch.full((b,), 3), motion,
                     torch.as_tensor(lengths), ["t"] * b)


def test_checked_motion_refuses_non_finite_motion():
    """A generator that returns NaN or inf frames is refused before the evaluator turns them into a NaN FID."""
    from types import SimpleNamespace

    from utils.model_embeddings import checked_motion

    evaluator = SimpleNamespace(dim_pose=5, unit_length=4)
    batch = _eval_batch(torch.zeros(2, 8, 5), [8, 8])
    motion = torch.randn(2, 8, 5)
    good, lengths = checked_motion((motion, torch.tensor([8, 4])), batch, evaluator, "motion_fn")
    assert torch.equal(good[0], motion[0]) and good[1, 4:].eq(0).all() and lengths.tolist() == [8, 4]
    for bad in (float("nan"), float("inf")):
        broken = motion.clone()
        broken[1, 2, 3] = bad
        with pytest.raises(ValueError, match="NaN or inf"):
            checked_motion((broken, torch.tensor([8, 8])), batch, evaluator, "motion_fn")


def test_memo_keys_tell_apart_rows_of_equal_motion_but_different_length():
    """The memo's key covers the GT row's length as well as its content: a model conditioned on the length must not
    be credited with an embedding computed for another length of the same padded motion."""
    from utils.model_embeddings import ModelMemo

    motion = torch.zeros(3, 8, 5)
    motion[:, :4] = 1.0
    keys = ModelMemo().keys(_eval_batch(motion, [4, 8, 4]), 0)
    assert keys[0] == keys[2] and keys[0] != keys[1]



def test_checked_motion_refuses_lengths_shorter_than_one_token():
    """A returned length below the evaluator's unit length (frames per token) is refused, as the GT never has one."""
    from types import SimpleNamespace

    from utils.model_embeddings import checked_motion

    evaluator = SimpleNamespace(dim_pose=5, unit_length=4)
    batch = _eval_batch(torch.zeros(2, 8, 5), [8, 8])
    checked_motion((torch.randn(2, 8, 5), torch.tensor([4, 8])), batch, evaluator, "motion_fn")
    with pytest.raises(ValueError, match=r"lengths must be 2 values in \[4, 8\]"):
        checked_motion((torch.randn(2, 8, 5), torch.tensor([3, 8])), batch, evaluator, "motion_fn")


# models.text_encoders
def test_clip_tokenizer_reads_only_the_merges_openai_clip_uses(tmp_path):
    """OpenAI's vocabulary file holds more merges than CLIP uses: only the first 49152 - 256 - 2 are read, so the
    vocabulary has CLIP ViT-B/32's 49408 tokens (and fits its token embedding), whatever follows in the file."""
    import gzip

    from models.text_encoders import CLIPTokenizer

    used = 49152 - 256 - 2
    path = tmp_path / "bpe_simple_vocab_16e6.txt.gz"
    with gzip.open(path, "wt", encoding="utf-8") as f:
        f.write("#version: 0.2\n" + "\n".join(f"q{i} z" for i in range(used + 50)) + "\n")
    tok = CLIPTokenizer(path)
    assert tok.vocab_size == 49408
    assert ("q0", "z") in tok.bpe_ranks and (f"q{used - 1}", "z") in tok.bpe_ranks
    assert (f"q{used}", "z") not in tok.bpe_ranks
    assert tok.eot_token == 49407 and tok.sot_token == 49406


def test_clip_text_cleaning_unescapes_html_twice_as_openai_does():
    """OpenAI's basic_clean runs html.unescape twice, so a doubly escaped entity ("&amp;amp;") reads as the
    character itself."""
    from models.text_encoders import clean_clip_text

    assert clean_clip_text("Rock &amp;amp; Roll") == "rock & roll"
    assert clean_clip_text("a &amp;lt;b&amp;gt;") == "a <b>"


# mask ratio draw
def test_training_mask_ratio_is_drawn_from_the_cosine_schedule():
    """Without a given ratio, a training step draws r ~ U(0, 1) and masks gamma(r) = cos(pi/2 r) of each sample:
    the same mask as passing that ratio explicitly, and on average 2/pi of the tokens (not 1/2)."""
    from models.mask_schedule import sample_training_mask

    lengths = torch.full((4000,), 100)
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    drawn = sample_training_mask(lengths, 100, generator=g1)
    ratio = torch.cos(torch.rand(4000, generator=g2) * math.pi / 2)
    assert torch.equal(drawn, sample_training_mask(lengths, 100, ratio, generator=g2))
    assert abs(drawn.float().mean().item() - 2 / math.pi) < 0.02
