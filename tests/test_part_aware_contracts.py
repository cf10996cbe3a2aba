"""Behaviour of the conditional part-aware RVQ-VAE that the other tests leave open: the partition and condition
checks, the unknown condition id, FiLM conditioning in both encoder and decoder, the unit length, and which features
each part token sees."""

from __future__ import annotations

import pytest
import torch

from models.part_aware import PART_AWARE_MODELS, check_partition

TINY_PA = "PartAwareRVQ_Tiny"


def test_partition_missing_the_last_feature_is_refused():
    with pytest.raises(ValueError, match=r"features \[3\]"):
        check_partition([[0, 1], [2]], 4)


def test_text_is_not_a_categorical_condition_name():
    with pytest.raises(ValueError, match="other than 'text_emb'"):
        PART_AWARE_MODELS[TINY_PA](conditions={"text_emb": 3})


def test_condition_keys_list_text_only_with_a_text_dim():
    assert PART_AWARE_MODELS[TINY_PA](conditions={"species": 3}).condition_keys == ["species"]
    assert PART_AWARE_MODELS[TINY_PA](conditions={"species": 3}, text_dim=4).condition_keys == ["species", "text_emb"]
    text_only = PART_AWARE_MODELS[TINY_PA](text_dim=4)
    assert text_only.condition_keys == ["text_emb"]
    motion = torch.zeros(2, 8, 263)
    assert text_only(motion, cond={"text_emb": torch.randn(2, 4)}).recon.shape == (2, 8, 263)


def _film_active(model):
    with torch.no_grad():
        for film in [*model.encoder_film, *model.decoder_film]:
            film.proj.weight.normal_(0.0, 0.3)
            film.proj.bias.normal_(0.0, 0.3)
        for emb in model.condition.embeddings.values():
            emb.weight.normal_(0.0, 1.0)
        for layer in model.quantizer.layers:
            layer.codebook.normal_(0.0, 1.0)
    return model.eval()


def test_a_missing_categorical_condition_is_the_unknown_id():
    torch.manual_seed(0)
    model = _film_active(PART_AWARE_MODELS[TINY_PA](conditions={"species": 3}))
    motion = torch.randn(2, 8, 263)
    with torch.no_grad():
        missing = model.encode_latent(motion, {})
        unknown = model.encode_latent(motion, {"species": torch.zeros(2, dtype=torch.long)})
        known = model.encode_latent(motion, {"species": torch.ones(2, dtype=torch.long)})
    torch.testing.assert_close(missing, unknown)
    assert not torch.allclose(missing, known)


def test_forward_and_encode_use_the_condition_in_encoder_and_decoder():
    torch.manual_seed(0)
    model = _film_active(PART_AWARE_MODELS[TINY_PA](conditions={"species": 3}))
    motion = torch.randn(2, 8, 263)
    cond = {"species": torch.tensor([1, 2])}
    with torch.no_grad():
        out = model(motion, cond)
        latents = model.encode_latent(motion, cond)
        assert torch.equal(model.encode(motion, cond), model.quantizer.quantize(latents))
        torch.testing.assert_close(out.recon, model.decode(out.indices_or_latents, cond), atol=1e-5, rtol=1e-5)
    assert not torch.equal(model.encode(motion, cond), model.encode(motion))


def test_unit_length_is_stride_to_the_power_of_down_t():
    model = PART_AWARE_MODELS[TINY_PA](down_t=3)
    assert model.unit_length == 8
    assert model.encode_latent(torch.zeros(1, 16, 263)).shape[1] == 2
    with pytest.raises(ValueError, match="multiple of the downsampling factor 8"):
        model(torch.zeros(1, 12, 263))


def test_zero_frames_are_refused_clearly():
    model = PART_AWARE_MODELS[TINY_PA]()
    with pytest.raises(ValueError, match="multiple of the downsampling factor 4"):
        model(torch.zeros(1, 0, 263))


def test_each_part_embedding_sees_exactly_its_features():
    torch.manual_seed(0)
    model = PART_AWARE_MODELS[TINY_PA]().eval()
    parts = model.model_args["part_indices"]
    motion = torch.randn(2, 4, 263)
    seen = {}
    hooks = [emb.register_forward_hook(lambda m, inp, out, p=p: seen.__setitem__(p, inp[0]))
             for p, emb in enumerate(model.part_embed)]
    try:
        with torch.no_grad():
            model.part_tokens(motion)
    finally:
        for h in hooks:
            h.remove()
    for p in (0, 1, 21):
        torch.testing.assert_close(seen[p], motion[..., parts[p]])


def test_spatial_transformer_ends_with_a_layer_norm():
    """The pre-norm spatial transformer ends with a LayerNorm: at initialisation every part token leaves it with
    zero mean and unit variance over its channels."""
    torch.manual_seed(0)
    model = PART_AWARE_MODELS[TINY_PA]().eval()
    with torch.no_grad():
        tokens = model.part_tokens(torch.randn(2, 4, 263) * 3).reshape(2, 4, 22, 8)
    torch.testing.assert_close(tokens.mean(-1), torch.zeros(2, 4, 22), atol=1e-5, rtol=0)
    torch.testing.assert_close(tokens.var(-1, unbiased=False), torch.ones(2, 4, 22), atol=1e-3, rtol=0)
