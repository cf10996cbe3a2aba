"""The conditional part-aware RVQ-VAE's conditioning as the seed describes it: a FiLM layer after the stem and after
every resolution stage of encoder and decoder, each its own; the learned part embedding in the spatial transformer;
condition ids checked against their vocabulary."""

from __future__ import annotations

import pytest
import torch

from models.part_aware import PART_AWARE_MODELS


def _conditioned_tiny():
    torch.manual_seed(0)
    model = PART_AWARE_MODELS["PartAwareRVQ_Tiny"](conditions={"species": 3}, text_dim=4).eval()
    with torch.no_grad():  # trained-looking FiLMs: every layer its own non-zero gamma and beta
        for film in [*model.encoder_film, *model.decoder_film]:
            film.proj.weight.normal_(0.0, 0.3)
            film.proj.bias.normal_(0.0, 0.3)
    cond = {"species": torch.tensor([1, 2]), "text_emb": torch.randn(2, 4)}
    return model, cond


def _film(film, h, cond_vec):
    out = cond_vec @ film.proj.weight.t() + film.proj.bias
    gamma, beta = out[:, :h.shape[1]], out[:, h.shape[1]:]
    return h * (1 + gamma[..., None]) + beta[..., None]


def _stack_with_films(stack, films, h, cond_vec, down_t):
    after = list(range(1, 2 + down_t))  # after the stem ReLU and after every resolution stage
    assert len(films) == len(after)
    for i, module in enumerate(stack):
        h = module(h)
        if i in after:
            h = _film(films[after.index(i)], h, cond_vec)
    return h


def test_film_follows_the_stem_and_every_stage_each_with_its_own_layer():
    model, cond = _conditioned_tiny()
    down_t = model.model_args["down_t"]
    assert len(model.encoder_film) == len(model.decoder_film) == 1 + down_t
    motion = torch.randn(2, 8, 263)
    with torch.no_grad():
        cond_vec = model.condition(cond, 2, motion.device)
        h = model.part_tokens(motion).transpose(1, 2)
        expected = _stack_with_films(model.encoder.model, model.encoder_film, h, cond_vec, down_t).transpose(1, 2)
        torch.testing.assert_close(model.encode_latent(motion, cond), expected)
        latents = torch.randn(2, 2, model.latent_dim)
        expected = _stack_with_films(model.decoder.model, model.decoder_film, latents.transpose(1, 2), cond_vec,
                                     down_t).transpose(1, 2)
        torch.testing.assert_close(model.decode_latent(latents, cond), expected)


def test_the_learned_part_embedding_enters_the_spatial_transformer():
    torch.manual_seed(0)
    model = PART_AWARE_MODELS["PartAwareRVQ_Tiny"]().eval()
    motion = torch.randn(2, 4, 263)
    tokens = model.part_tokens(motion)
    tokens.square().sum().backward()
    assert model.part_pos.grad is not None and model.part_pos.grad.abs().sum() > 0
    with torch.no_grad():
        model.part_pos.add_(torch.randn_like(model.part_pos))
        assert not torch.allclose(model.part_tokens(motion), tokens.detach(), atol=1e-4)


def test_an_id_equal_to_the_vocabulary_size_is_refused_clearly():
    model = PART_AWARE_MODELS["PartAwareRVQ_Tiny"](conditions={"species": 3})
    with pytest.raises(ValueError, match=r"ids must lie in \[0, 3\)"):
        model(torch.zeros(2, 8, 263), cond={"species": torch.tensor([0, 3])})
