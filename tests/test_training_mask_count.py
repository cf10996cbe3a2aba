"""``train_mask_count``: the MoMask / MARDM training mask counted over the padded length ("padded") next to the default
count from each sample's own length ("length"), in the schedule, both generators, their flags and their resume."""

from __future__ import annotations

import math

import pytest
import torch

import models.mardm as mardm
import models.mask_transformer as mt
from models.mardm import MARDM_MODELS
from models.mask_schedule import lengths_to_mask, padded_training_mask, sample_training_mask
from models.mask_transformer import MASK_TRANSFORMERS
from utils.generator_resume import ADDED_GENERATOR_ARGS, check_resume_matches


def test_a_full_length_sample_masks_round_ratio_times_the_padded_length():
    lengths = torch.full((5,), 49)
    ratio = torch.tensor([1.0, 0.5, 0.3, 0.01, 0.0])
    mask = padded_training_mask(lengths, 49, ratio, torch.Generator().manual_seed(0))
    # round(49 * r).clamp(min=1): 49, round(24.5) = 24 (half to even, as torch.round), round(14.7) = 15, 0 -> 1, 1.
    assert mask.sum(1).tolist() == [49, 24, 15, 1, 1]


def test_a_short_sample_gets_a_random_count_of_its_own_tokens_and_sometimes_none():
    """The reference draws round(ratio * N) of all N positions and drops the padded ones: a sample of length l gets
    a hypergeometric count, ratio * l on average, 0 with a real probability."""
    g = torch.Generator().manual_seed(1)
    batch, max_len = 20000, 20
    lengths = torch.full((batch,), 5)
    lengths[0] = max_len  # the whole-batch guard never fires here
    ratio = torch.full((batch,), 0.5)
    mask = padded_training_mask(lengths, max_len, ratio, g)
    assert not (mask & ~lengths_to_mask(lengths, max_len)).any()
    counts = mask[1:].sum(1).float()
    assert counts.mean().item() == pytest.approx(2.5, abs=0.03)          # 10 of 20 drawn, 5 of them valid
    # P(0 of the 5 valid positions among the 10 drawn) = C(15, 10) / C(20, 10).
    assert (counts == 0).float().mean().item() == pytest.approx(math.comb(15, 10) / math.comb(20, 10), abs=0.005)
    # By length (the default), both generators count round(ratio * length) of a sample's own tokens (at least one),
    # as their generation does: round(2.5) = 2, half to even.
    assert sample_training_mask(lengths, max_len, ratio, generator=g)[1:].sum(1).unique().tolist() == [2]
    assert mardm.sample_training_mask(lengths, max_len, ratio, generator=g)[1:].sum(1).unique().tolist() == [2]
    assert mardm.sample_training_mask(lengths, max_len, ratio, generator=g, count="padded")[1:].sum(1).min() == 0


def test_a_batch_cut_to_its_longest_sample_counts_over_the_padded_length_it_is_given():
    """The references pad every sample to 49 tokens (HumanML3D) and draw round(ratio * 49) of those positions; a
    batch cut to its longest sample (20 tokens) drew round(ratio * 20) instead. With ``padded_len`` the mask is the
    one of the full padded batch, cut: the same draws give the same mask."""
    lengths = torch.tensor([20, 5, 12, 1])
    ratio = torch.tensor([0.5, 0.9, 0.3, 0.05])
    cut = padded_training_mask(lengths, 20, ratio, torch.Generator().manual_seed(4), padded_len=49)
    full = padded_training_mask(lengths, 49, ratio, torch.Generator().manual_seed(4))
    assert cut.shape == (4, 20) and torch.equal(cut, full[:, :20])
    assert torch.equal(sample_training_mask(lengths, 20, ratio, torch.Generator().manual_seed(4), count="padded",
                                            padded_len=49), full[:, :20])
    # A sample of 5 tokens: 24 of 49 positions drawn, hypergeometric; as often none of its own as the reference's.
    g = torch.Generator().manual_seed(5)
    many = torch.full((20000,), 5)
    many[0] = 20
    counts = padded_training_mask(many, 20, torch.full((20000,), 0.5), g, padded_len=49)[1:].sum(1).float()
    assert counts.mean().item() == pytest.approx(5 * 24 / 49, abs=0.03)
    assert (counts == 0).float().mean().item() == pytest.approx(math.comb(44, 24) / math.comb(49, 24), abs=0.005)
    # Without it (or a padded length shorter than the batch) the batch's own length is the count's.
    assert torch.equal(padded_training_mask(lengths, 20, ratio, torch.Generator().manual_seed(4)),
                       padded_training_mask(lengths, 20, ratio, torch.Generator().manual_seed(4), padded_len=8))


def test_the_masked_transformer_and_mardm_pass_the_padded_length_on(monkeypatch):
    seen = []
    for module in (mt, mardm):
        draw = module.sample_training_mask
        monkeypatch.setattr(module, "sample_training_mask",
                            lambda *a, _draw=draw, **k: seen.append(k["padded_len"]) or _draw(*a, **k))
    lengths = torch.tensor([9, 2, 5])
    masked = MASK_TRANSFORMERS["MoMask-Mask-Tiny"](16, 24, 12, train_mask_count="padded")
    masked(torch.randint(0, 16, (3, 9)), lengths, torch.randn(3, 12), padded_len=49)
    model = MARDM_MODELS["MARDM-SiT-Tiny"](8, 8, 12, train_mask_count="padded")
    model(torch.randn(3, 9, 8), torch.randn(3, 9, 8), lengths, torch.randn(3, 12), padded_len=49)
    model(torch.randn(3, 9, 8), torch.randn(3, 9, 8), lengths, torch.randn(3, 12))
    assert seen == [49, 49, None]


def test_a_batch_left_with_no_masked_token_masks_one_so_the_loss_is_defined():
    g = torch.Generator().manual_seed(2)
    lengths = torch.tensor([1, 2])
    for _ in range(200):
        mask = padded_training_mask(lengths, 49, torch.tensor([0.01, 0.01]), g)  # one of 49 positions drawn each
        assert mask.sum() >= 1 and not (mask & ~lengths_to_mask(lengths, 49)).any()


def test_a_count_rule_outside_the_two_is_refused_by_name():
    with pytest.raises(ValueError, match=r"sample_training_mask: train_mask_count must be one of \('length', "
                                         r"'padded'\), got 'pad'"):
        sample_training_mask(torch.tensor([3]), 4, count="pad")
    with pytest.raises(ValueError, match="MaskTransformer: train_mask_count"):
        MASK_TRANSFORMERS["MoMask-Mask-Tiny"](16, 24, 12, train_mask_count="padding")
    with pytest.raises(ValueError, match="MARDM: train_mask_count"):
        MARDM_MODELS["MARDM-SiT-Tiny"](8, 8, 12, train_mask_count="real")


@pytest.mark.parametrize("count", ["length", "padded"])
def test_both_generators_train_with_the_rule_they_record(monkeypatch, count):
    seen = []

    def spy(module):
        draw = module.sample_training_mask

        def recording(*args, **kwargs):
            seen.append(kwargs.get("count"))
            return draw(*args, **kwargs)
        monkeypatch.setattr(module, "sample_training_mask", recording)

    spy(mt)
    spy(mardm)
    torch.manual_seed(0)
    masked = MASK_TRANSFORMERS["MoMask-Mask-Tiny"](16, 24, 12, train_mask_count=count)
    lengths = torch.tensor([9, 2, 5])
    loss, _ = masked(torch.randint(0, 16, (3, 9)), lengths, torch.randn(3, 12))
    assert torch.isfinite(loss) and masked.model_args["train_mask_count"] == count
    model = MARDM_MODELS["MARDM-SiT-Tiny"](8, 8, 12, train_mask_count=count)
    loss, logs = model(torch.randn(3, 9, 8), torch.randn(3, 9, 8), lengths, torch.randn(3, 12))
    assert torch.isfinite(loss) and model.model_args["train_mask_count"] == count
    assert seen == [count, count]
    rebuilt = MARDM_MODELS["MARDM-SiT-Tiny"](**{k: v for k, v in model.model_args.items()})
    assert rebuilt.train_mask_count == count


def test_a_run_saved_before_the_rule_existed_resumes_with_the_length_count_only():
    """Its checkpoint records no train_mask_count: it trained with "length", which it resumes with without a word;
    asking for "padded" is refused as a changed model."""
    from utils.checkpoint import CheckpointError

    assert ADDED_GENERATOR_ARGS == {"train_mask_count": "length"}
    model_args = MARDM_MODELS["MARDM-SiT-Tiny"](8, 8, 12).model_args
    saved = {"stage": "generator", "model_name": "MARDM-SiT-Tiny", "target": "latents", "text_encoder": {},
             "tokenizer": {"sha256": "s", "weights": "model"},
             "model_args": {k: v for k, v in model_args.items() if k != "train_mask_count"}}

    def meta(**args):
        return {"stage": "generator", "model_name": "MARDM-SiT-Tiny", "target": "latents",
                "text_encoder": {"name": None, "dim": None}, "tokenizer": {"sha256": "s", "weights": "model"},
                "model_args": {**model_args, **args}, "config": {}}

    now = meta()
    check_resume_matches("latest.tar", now, saved)
    assert now["model_args"] == saved["model_args"]  # what the engine checks and records next
    with pytest.raises(CheckpointError, match=r"model_args differ in 1 entry: 'train_mask_count': absent in the "
                                              r"checkpoint but 'padded' requested"):
        check_resume_matches("latest.tar", meta(train_mask_count="padded"), saved)
    recorded = {**saved, "model_args": model_args}  # a run that records it keeps it
    now = meta()
    check_resume_matches("latest.tar", now, recorded)
    assert now["model_args"]["train_mask_count"] == "length"
