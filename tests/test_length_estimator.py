"""Length estimator: MoMask layer layout, class mapping, sampling, and a tiny fit."""

import pytest
import torch

from models.length_estimator import LengthEstimator, classes_to_lengths, lengths_to_classes, sample_lengths


def test_layout_matches_momask_keys_and_sizes():
    model = LengthEstimator(text_dim=384)
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert shapes["output.0.weight"] == (512, 384) and shapes["output.1.weight"] == (512,)
    assert shapes["output.4.weight"] == (256, 512) and shapes["output.8.weight"] == (128, 256)
    assert shapes["output.11.weight"] == (50, 128)
    assert isinstance(model.output[3], torch.nn.Dropout) and model.output[3].p == 0.2
    assert model(torch.randn(3, 384)).shape == (3, 50)
    assert LengthEstimator(**model.model_args).state_dict().keys() == model.state_dict().keys()


def test_class_mapping_round_trip_and_range():
    frames = torch.tensor([4, 40, 41, 43, 196, 199])
    classes = lengths_to_classes(frames, unit_length=4)
    assert classes.tolist() == [1, 10, 10, 10, 49, 49]
    assert classes_to_lengths(classes, 4).tolist() == [4, 40, 40, 40, 196, 196]
    every = torch.arange(1, 50)
    assert torch.equal(lengths_to_classes(classes_to_lengths(every, 4), 4), every)
    with pytest.raises(ValueError, match="frames in \\[2, 196\\]"):
        lengths_to_classes(torch.tensor([2, 196]), 4)
    with pytest.raises(ValueError, match="1..49 tokens"):
        lengths_to_classes(torch.tensor([200]), 4)


def test_sampling_follows_the_softmax_and_skips_empty_motions():
    logits = torch.full((20000, 5), -1e4)
    logits[:, 0] = 10.0  # the empty class is never drawn, however likely
    logits[:, 2] = 0.0
    logits[:, 3] = torch.log(torch.tensor(3.0))
    g = torch.Generator().manual_seed(0)
    drawn = sample_lengths(logits, generator=g)
    assert set(drawn.unique().tolist()) == {2, 3}
    assert (drawn == 3).float().mean().item() == pytest.approx(0.75, abs=0.015)
    cold = sample_lengths(logits, temperature=0.25, generator=g)
    assert (cold == 3).float().mean().item() > 0.95  # 3^4 : 1
    assert sample_lengths(logits[:3], temperature=0).tolist() == [3, 3, 3]
    assert torch.equal(sample_lengths(logits[:50], generator=torch.Generator().manual_seed(4)),
                       sample_lengths(logits[:50], generator=torch.Generator().manual_seed(4)))


def test_tiny_fit_learns_lengths_from_text():
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    centers = torch.randn(4, 16, generator=g) * 2
    target_classes = torch.tensor([8, 20, 35, 49])
    model = LengthEstimator(text_dim=16, hidden_dim=64)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(150):
        which = torch.randint(0, 4, (64,), generator=g)
        text = centers[which] + 0.3 * torch.randn(64, 16, generator=g)
        loss = torch.nn.functional.cross_entropy(model(text), target_classes[which])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert sum(losses[-10:]) / 10 < 0.3 * sum(losses[:10]) / 10
    model.eval()
    with torch.no_grad():
        predicted = sample_lengths(model(centers), temperature=0)
    assert torch.equal(classes_to_lengths(predicted, 4), target_classes * 4)


def test_bad_text_embedding_and_logits_fail_clearly():
    model = LengthEstimator(text_dim=8).eval()
    with pytest.raises(ValueError, match=r"expected text_emb of shape \(B, 8\), got \(2, 9\)"):
        model(torch.randn(2, 9))
    # A single embedding without its batch axis gave (num_classes,) logits that sample_lengths could not index.
    with pytest.raises(ValueError, match=r"expected text_emb of shape \(B, 8\), got \(8,\)"):
        model(torch.randn(8))
    with pytest.raises(TypeError, match="text_emb must be a floating-point tensor, got torch.int64"):
        model(torch.zeros(2, 8, dtype=torch.long))
    with pytest.raises(ValueError, match=r"sample_lengths: expected logits of shape \(B, num_classes\), got \(50,\)"):
        sample_lengths(torch.randn(50))


@pytest.mark.parametrize("hidden_dim", [7, 2, 0, -8])
def test_a_width_whose_last_layers_ignore_the_text_is_refused(hidden_dim):
    # hidden_dim // 4 below 2 left a LayerNorm over one feature (it outputs its bias) or a zero-width layer: the same
    # lengths for every caption, and a negative width failed deep inside torch.
    with pytest.raises(ValueError, match=f"LengthEstimator: hidden_dim must be >= 8 .* got {hidden_dim}"):
        LengthEstimator(text_dim=8, hidden_dim=hidden_dim)
    model = LengthEstimator(text_dim=8, hidden_dim=8).eval()
    logits = model(torch.randn(2, 8))
    assert not torch.allclose(logits[0], logits[1])


def test_a_checkpoint_recording_a_refused_width_names_its_file(tmp_path):
    from utils.checkpoint import CheckpointError, save_checkpoint
    from utils.generator_checkpoints import load_length_estimator

    path = str(tmp_path / "estimator.tar")
    save_checkpoint(path, {"stage": "length_estimator", "model_name": "LengthEstimator", "model": {},
                           "model_args": {"text_dim": 8, "num_classes": 50, "hidden_dim": 2, "dropout": 0.2},
                           "text_encoder": {"name": "minilm", "dim": 8}, "unit_length": 4})
    with pytest.raises(CheckpointError, match=r"estimator.tar: cannot rebuild LengthEstimator .* hidden_dim must be "
                                              r">= 8"):
        load_length_estimator(path)
