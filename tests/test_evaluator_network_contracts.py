"""The Guo et al. evaluator networks (``models.evaluator``): Xavier-normal initialisation and the movement encoder's
dropout, the checks on their inputs (unit length, ignored feature dims, motion and word widths, a learned vocabulary's
ids, caption lengths), the text embedding recomputed by hand, and motion steps counted in whole units."""

from __future__ import annotations

import pytest
import torch

from models.evaluator import MovementConvEncoder, TextMotionEvaluator

_SIZES = dict(dim_word=6, dim_pos_ohot=15, dim_movement_enc_hidden=8, dim_movement_latent=8, dim_text_hidden=8,
              dim_motion_hidden=8, dim_coemb_hidden=8)


def _evaluator(**kw):
    torch.manual_seed(0)
    return TextMotionEvaluator(**{"dim_pose": 12, **_SIZES, **kw}).eval()


def _caption_batch(b: int = 3, length: int = 7, dim_word: int = 6):
    g = torch.Generator().manual_seed(1)
    words = torch.randn(b, length, dim_word, generator=g)
    pos = torch.nn.functional.one_hot(torch.randint(0, 15, (b, length), generator=g), 15).float()
    return words, pos, torch.tensor([length, 5, 3][:b])


def test_fresh_layers_start_from_xavier_normal_weights():
    # Xavier-normal, as the reference: a Gaussian puts about 8% of the weights beyond sqrt(3) standard deviations,
    # the bound a uniform draw of the same variance never passes.
    torch.manual_seed(0)
    encoder = MovementConvEncoder(64, 256, 256)
    for layer in (encoder.main[0], encoder.main[3], encoder.out_net):
        w = layer.weight.detach()
        std = (2.0 / (w[0].numel() + w.shape[0] * w[0, 0].numel())) ** 0.5
        assert w.std().item() == pytest.approx(std, rel=0.05)
        assert 0.05 < (w.abs() > 3 ** 0.5 * std).float().mean().item() < 0.12
        assert torch.count_nonzero(layer.bias) == 0


def test_movement_encoder_drops_a_fifth_of_its_features_in_training():
    encoder = MovementConvEncoder(4, 8, 8)
    assert [m.p for m in encoder.main if isinstance(m, torch.nn.Dropout)] == [0.2, 0.2]


def test_a_unit_length_below_one_is_refused():
    with pytest.raises(ValueError, match="unit_length must be >= 1, got 0"):
        _evaluator(unit_length=0)


@pytest.mark.parametrize("ignore_dims", [(3, 3), (5, 2), (-1, 4), (8, 13)])
def test_ignore_dims_must_be_a_non_empty_slice_of_the_features(ignore_dims):
    with pytest.raises(ValueError, match=r"ignore_dims must be a slice \[start, stop\) inside \[0, 12\)"):
        _evaluator(ignore_dims=ignore_dims)


def test_ignore_dims_at_the_end_keep_the_leading_features():
    ev = _evaluator(ignore_dims=(8, 12))
    motion = torch.arange(2 * 8 * 12, dtype=torch.float32).reshape(2, 8, 12)
    assert torch.equal(ev.movement_input(motion), motion[..., :8])
    assert ev.encode_movements(motion).shape == (2, 2, 8)


def test_motions_of_another_width_are_refused():
    with pytest.raises(ValueError, match=r"motions must be \(B, T, 12\), got shape \(2, 8, 11\)"):
        _evaluator().encode_motion(torch.zeros(2, 8, 11), torch.tensor([8, 8]))


def test_word_vectors_of_another_width_are_refused():
    words, pos, lens = _caption_batch(dim_word=5)
    with pytest.raises(ValueError, match=r"word vectors must be \(B, L, 6\), got shape \(3, 7, 5\)"):
        _evaluator().encode_text(words, pos, lens)


def test_a_learned_vocabulary_takes_word_ids_only():
    ev = _evaluator(vocab_size=10)
    _, pos, lens = _caption_batch()
    ids = torch.randint(0, 10, (3, 7), generator=torch.Generator().manual_seed(2))
    assert ev.encode_text(ids, pos, lens).shape == (3, 8)
    for bad in (ids.float(), ids[..., None].expand(3, 7, 6)):
        with pytest.raises(ValueError, match=r"learned vocabulary and takes integer word ids \(B, L\)"):
            ev.encode_text(bad, pos, lens)
    with pytest.raises(IndexError):  # id 10 is past the vocabulary
        ev.encode_text(torch.full((3, 7), 10), pos, lens)


def test_caption_lengths_past_the_padded_length_are_refused():
    words, pos, _ = _caption_batch()
    with pytest.raises(ValueError, match=r"caption lengths \(cap_lens\) must lie in \[1, 7\] \(the padded length\), "
                                         r"got \[8, 5, 3\]"):
        _evaluator().encode_text(words, pos, torch.tensor([8, 5, 3]))


def test_text_embedding_reads_the_pos_one_hots_and_both_directions():
    ev = _evaluator()
    words, pos, lens = _caption_batch()
    with torch.no_grad():
        emb = ev.encode_text(words, pos, lens)
        assert not torch.allclose(ev.encode_text(words, pos.roll(1, dims=-1), lens), emb)
        enc = ev.text_encoder
        inputs = enc.input_emb(words + enc.pos_emb(pos))
        h0 = enc.hidden.expand(-1, 3, -1).contiguous()
        forward = [enc.gru(inputs[i:i + 1, :n], h0[:, i:i + 1])[1] for i, n in enumerate(lens.tolist())]
        expected = enc.output_net(torch.cat([torch.cat([h[0], h[1]], dim=-1) for h in forward]))
    torch.testing.assert_close(emb, expected, rtol=1e-5, atol=1e-6)


def test_motion_steps_are_whole_units_of_the_frame_length():
    ev = _evaluator()
    motion = torch.randn(1, 16, 12, generator=torch.Generator().manual_seed(3)).expand(2, 16, 12)
    with torch.no_grad():
        floor, exact = ev.encode_motion(motion, torch.tensor([11, 8]))
    torch.testing.assert_close(floor, exact)


def test_motion_lengths_past_the_padded_length_are_refused_by_name():
    """A length of more frames than the batch holds (20 > 16: 5 steps of 4) is refused with both numbers, on the
    folded inference path and the training path alike, not by torch's packing."""
    ev = _evaluator()
    motion = torch.zeros(2, 16, 12)
    for grad in (False, True):
        with torch.set_grad_enabled(grad), pytest.raises(ValueError, match=r"must lie in \[1, 4\] \(the padded "
                                                                           r"length\), got \[5, 4\]"):
            ev.encode_motion(motion, torch.tensor([20, 16]))
