"""Contracts of the masked-generation schedules (models/mask_schedule.py): length masks and their checks, edit
positions, the MoMask training masks position by position, the residual layer schedule, corruption, sampling."""

from __future__ import annotations

import pytest
import torch

from models.mask_schedule import (
    check_batch,
    check_lengths,
    corrupt_tokens,
    edit_positions,
    lengths_to_mask,
    lowest_score_mask,
    padded_training_mask,
    q_schedule,
    sample_from_logits,
    sample_training_mask,
    top_k_filter,
)


def test_lengths_to_mask_marks_exactly_the_first_length_positions():
    """lengths (B,) -> (B, max_len) bool with True at positions < length."""
    mask = lengths_to_mask(torch.tensor([0, 2, 4]), 4)
    assert mask.tolist() == [[False] * 4, [True, True, False, False], [True] * 4]


@pytest.mark.parametrize("bad, match", [([3, 4], r"who: lengths must be a \(B,\) integer tensor .*got list"),
                                        (torch.tensor([3.0, 4.0]), r"who: lengths must be an integer .*torch.float32"),
                                        (torch.tensor([True, False]), r"who: lengths must be an integer .*torch.bool")])
def test_lengths_that_are_not_an_integer_tensor_are_refused_by_name(bad, match):
    """A list, float or bool lengths tensor is a TypeError naming the caller and what it got."""
    with pytest.raises(TypeError, match=match):
        check_lengths(bad, "who")
    check_lengths(torch.tensor([3, 4]), "who")
    check_lengths(torch.tensor([3, 4], dtype=torch.int32), "who")


def test_batch_and_lengths_must_agree_and_a_training_batch_must_not_be_empty():
    """B of the tokens against lengths' B, in both directions; B = 0 is refused unless allow_empty."""
    with pytest.raises(ValueError, match=r"who: indices holds B=3 samples but lengths has 2"):
        check_batch(3, torch.tensor([1, 2]), "indices", "who")
    with pytest.raises(ValueError, match=r"who: indices holds B=1 samples but lengths has 2"):
        check_batch(1, torch.tensor([1, 2]), "indices", "who")
    with pytest.raises(ValueError, match=r"who: the batch is empty \(B=0\)"):
        check_batch(0, torch.zeros(0, dtype=torch.long), "indices", "who")
    check_batch(0, torch.zeros(0, dtype=torch.long), "indices", "who", allow_empty=True)
    check_batch(2, torch.tensor([1, 2]), "indices", "who")


def test_edit_positions_are_the_edit_mask_inside_the_valid_positions():
    """edit_mask & valid, with shape/dtype checked and a sample whose edits all lie in the padding refused."""
    valid = lengths_to_mask(torch.tensor([3, 5]), 5)
    edit = torch.tensor([[False, True, False, True, True], [True, False, False, False, True]])
    assert edit_positions(edit, valid, "who").tolist() == [[False, True, False, False, False],
                                                           [True, False, False, False, True]]
    with pytest.raises(ValueError, match=r"who: edit_mask must be a bool \(B, N\) = \(2, 5\) tensor, got torch.bool "
                                         r"\(2, 4\)"):
        edit_positions(edit[:, :4], valid, "who")
    with pytest.raises(ValueError, match=r"who: edit_mask must be a bool \(B, N\) = \(2, 5\) tensor, got torch.int64"):
        edit_positions(edit.long(), valid, "who")
    padding_only = torch.tensor([[True, False, False, False, False], [False, False, False, False, False]])
    with pytest.raises(ValueError, match=r"who: edit_mask selects no valid position of samples \[1\]"):
        edit_positions(padding_only, valid, "who")
    with pytest.raises(ValueError, match=r"samples \[0\]"):
        edit_positions(torch.tensor([[False, False, False, True, True], [True] * 5]), valid, "who")


def test_lowest_score_mask_marks_exactly_num_lowest_positions():
    """Per row, the num[b] positions with the lowest scores and no others."""
    scores = torch.tensor([[0.5, 0.1, 0.9, 0.3], [0.2, 0.8, 0.4, 0.6]])
    out = lowest_score_mask(scores, torch.tensor([2, 3]))
    assert out.tolist() == [[False, True, False, True], [True, False, True, True]]


def test_q_schedule_draws_layers_one_to_q_minus_one_biased_low():
    """MoMask's q_schedule for Q = 6: q in [1, 5] with P = 0.32, 0.25, 0.19, 0.16, 0.08; for Q = 2 always 1."""
    g = torch.Generator().manual_seed(0)
    q = q_schedule(200_000, 6, generator=g)
    assert q.dtype == torch.long and q.min() == 1 and q.max() == 5
    freq = torch.bincount(q, minlength=6)[1:].float() / q.numel()
    torch.testing.assert_close(freq, torch.tensor([0.32, 0.25, 0.19, 0.16, 0.08]), atol=0.01, rtol=0)
    assert (q_schedule(100, 2, generator=g) == 1).all()


def test_an_unknown_sampling_mode_is_refused():
    """sampling other than categorical/gumbel is a ValueError naming the choices."""
    with pytest.raises(ValueError, match=r"sampling must be one of \('categorical', 'gumbel'\), got 'greedy'"):
        sample_from_logits(torch.zeros(2, 3), 1.0, "greedy")


def test_sample_training_mask_refuses_an_unknown_count_rule():
    """count other than length/padded is a ValueError naming sample_training_mask and the choices."""
    with pytest.raises(ValueError, match=r"sample_training_mask: train_mask_count must be one of "
                                         r"\('length', 'padded'\), got 'bogus'"):
        sample_training_mask(torch.tensor([3, 4]), 4, count="bogus")


def test_an_empty_padded_mask_gains_the_first_samples_lowest_score_valid_position():
    """With P = 1000 padded positions and a ratio giving one, the one masked position falls in the padding of the
    2-token samples nearly always; the mask then holds exactly one position, valid, in sample 0."""
    lengths = torch.tensor([2, 2, 2])
    for seed in range(20):
        g = torch.Generator().manual_seed(seed)
        mask = padded_training_mask(lengths, 4, torch.zeros(3), generator=g, padded_len=1000)
        assert not (mask & ~lengths_to_mask(lengths, 4)).any()
        if mask.sum() == 1:
            assert mask[0].sum() == 1


def test_corruption_touches_only_masked_positions_and_only_with_codes_or_the_mask_id():
    """Outside the mask nothing changes; inside, every token is a code in [0, K) or mask_id (here 99, apart from
    K = 8, so that a code K would show): random codes never reach K."""
    g = torch.Generator().manual_seed(0)
    indices = torch.randint(0, 8, (200, 100), generator=g)
    mask = torch.rand(200, 100, generator=g) < 0.5
    out = corrupt_tokens(indices, mask, 8, 99, generator=g)
    assert torch.equal(out[~mask], indices[~mask])
    masked = out[mask]
    assert (((masked >= 0) & (masked < 8)) | (masked == 99)).all()
    assert abs((masked == 99).float().mean().item() - 0.792) < 0.02


@pytest.mark.parametrize("padded_len", [None, 2, 6])
def test_padded_training_mask_follows_the_reference_rule_position_by_position(padded_len):
    """MoMask/MARDM's rule: round(ratio * P).clamp(min=1) lowest of P = max(max_len, padded_len) random scores,
    cut to max_len and ANDed with the valid positions; only an entirely empty batch gains sample 0's lowest-score
    valid position. Recomputed by hand from the same random stream over many seeds."""
    lengths, max_len = torch.tensor([2, 4, 1]), 4
    ratio = torch.tensor([0.5, 1.0, 0.3])
    P = max(max_len, padded_len or 0)
    valid = lengths_to_mask(lengths, max_len)
    saw_empty_row0 = False
    for seed in range(40):
        mask = padded_training_mask(lengths, max_len, ratio, torch.Generator().manual_seed(seed), padded_len)
        scores = torch.rand(3, P, generator=torch.Generator().manual_seed(seed))
        num = torch.round(P * ratio).clamp(min=1).long()
        ranks = scores.argsort(1).argsort(1)
        expected = (ranks < num[:, None])[:, :max_len] & valid
        assert expected.any()                         # sample 1 (ratio 1, full length) always has masked tokens
        assert torch.equal(mask, expected)
        saw_empty_row0 |= not expected[0].any()
    assert saw_empty_row0                             # a short sample may get no target, as in the references


def test_an_all_empty_padded_mask_falls_back_to_sample_0s_lowest_score_valid_position():
    """When no sample has a masked valid position, exactly sample 0's lowest-score valid position is masked."""
    lengths, max_len = torch.tensor([2, 1]), 4
    found = 0
    for seed in range(200):
        mask = padded_training_mask(lengths, max_len, torch.zeros(2), torch.Generator().manual_seed(seed), 50)
        scores = torch.rand(2, 50, generator=torch.Generator().manual_seed(seed))
        rule = (scores.argsort(1).argsort(1) < 1)[:, :max_len] & lengths_to_mask(lengths, max_len)
        if not rule.any():
            found += 1
            expected = torch.zeros(2, max_len, dtype=torch.bool)
            expected[0, scores[0, :2].argmin()] = True
            assert torch.equal(mask, expected)
        else:
            assert torch.equal(mask, rule)
    assert found > 100


@pytest.mark.parametrize("sampling", ["categorical", "gumbel"])
@pytest.mark.parametrize("temperature", [float("inf"), float("nan")])
def test_a_non_finite_temperature_is_refused_like_a_non_positive_one(sampling, temperature):
    """An infinite or NaN temperature is the ValueError naming temperature that a non-positive one gets: it would turn
    the top-k filtered (-inf) entries into NaN, and Gumbel sampling would draw one of them."""
    logits = top_k_filter(torch.tensor([[0.0, 5.0, 1.0, 3.0]] * 4), 0.5)  # entries 0 and 2 are -inf
    with pytest.raises(ValueError, match="temperature must be a finite number > 0"):
        sample_from_logits(logits, temperature, sampling, torch.Generator().manual_seed(0))
