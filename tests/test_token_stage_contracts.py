"""The token stage (utils/token_stage.py): token codes of whole tokens, the code cache and when it is encoded again,
cached crops, the token loss, validation and training-time generation, on stand-in tokenizers and datasets."""

from __future__ import annotations

import os
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from utils import token_stage
from utils.run_dir import RunDir
from utils.token_stage import (
    CachedTokenDataset,
    TextTokenBatch,
    TokenItem,
    TokenLoss,
    build_token_cache,
    check_token_model_fits,
    collate_text_tokens,
    encode_tokens,
    load_token_tokenizer,
    make_token_val_fn,
    rvq_codebooks,
    token_cache_path,
)

# ---------------------------------------------------------------------------------------------------------------------
# token stage
# ---------------------------------------------------------------------------------------------------------------------

class _FrameTokenizer(torch.nn.Module):
    """A stand-in tokenizer: token k of a sample = round(sum of feature 0 over its frames), codes (B, N)."""

    unit_length = 4
    weights = "model"

    def __init__(self, source: str = "", layers: int = 0) -> None:
        super().__init__()
        self.source = source
        self.layers = layers
        self.anchor = torch.nn.Parameter(torch.zeros(1))
        self.seen: list[int] = []

    def encode(self, motion: torch.Tensor) -> torch.Tensor:
        b, t, _ = motion.shape
        assert t % self.unit_length == 0
        self.seen.append(t)
        codes = motion[..., 0].reshape(b, t // self.unit_length, self.unit_length).sum(-1).round().long()
        return codes[..., None].repeat(1, 1, self.layers) if self.layers else codes


def test_encode_tokens_cuts_to_whole_tokens_and_fills_the_rest_with_minus_one():
    tok = _FrameTokenizer(layers=2)
    motion = torch.ones(3, 16, 2)
    codes = encode_tokens(tok, motion, torch.tensor([8, 13, 4]))
    assert codes.lengths.tolist() == [2, 3, 1]
    assert codes.indices.shape == (3, 3, 2)
    assert codes.indices[..., 0].tolist() == [[4, 4, -1], [4, 4, 4], [4, -1, -1]]
    assert torch.equal(codes.indices[..., 0], codes.indices[..., 1])


def test_encode_tokens_of_lengths_under_one_token_keeps_one_padded_token():
    codes = encode_tokens(_FrameTokenizer(), torch.ones(2, 8, 2), torch.tensor([3, 0]))
    assert codes.lengths.tolist() == [0, 0]
    assert codes.indices.tolist() == [[-1], [-1]]


def test_load_token_tokenizer_refuses_an_unknown_role_before_reading_the_file(tmp_path):
    with pytest.raises(ValueError, match="role must be one of"):
        load_token_tokenizer(str(tmp_path / "missing.tar"), None, role="base")


def test_rvq_codebooks_need_an_rvq_tokenizer():
    for kind in ("fsq", "lfq", "vq"):
        with pytest.raises(ValueError, match="codebook embeddings need an RVQ tokenizer"):
            rvq_codebooks(SimpleNamespace(kind=kind, source="tok.tar"))
    layers = [SimpleNamespace(codebook=torch.full((5, 2), float(q))) for q in range(3)]
    tok = SimpleNamespace(kind="rvq", source="tok.tar", model=SimpleNamespace(quantizer=SimpleNamespace(layers=layers)))
    books = rvq_codebooks(tok)
    assert books.shape == (3, 5, 2) and books[:, 0, 0].tolist() == [0.0, 1.0, 2.0]


def test_check_token_model_fits_compares_quantizers_for_the_residual_role_only():
    tok = SimpleNamespace(codebook_size=512, num_quantizers=6, source="tok.tar")
    check_token_model_fits({"codebook_size": 512, "num_quantizers": 3}, tok, "m.tar", "mask")
    with pytest.raises(Exception, match=r"model_args\['num_quantizers'\] is 3"):
        check_token_model_fits({"codebook_size": 512, "num_quantizers": 3}, tok, "m.tar", "res")
    with pytest.raises(Exception, match=r"model_args\['codebook_size'\] is 256"):
        check_token_model_fits({"codebook_size": 256}, tok, "m.tar", "mask")


def test_token_cache_path_uses_the_first_16_hex_digits():
    run = RunDir("/ck", "t2m", "mask")
    sha = "0123456789abcdef" * 4
    assert token_cache_path(run, "val", sha) == os.path.join("/ck", "t2m", "mask", "tokens", "val_0123456789abcdef.npz")


class _Index:
    def __init__(self, folder: str, clips: dict[int, np.ndarray]) -> None:
        self.folder = folder
        self.clips = clips

    def clip(self, row: int, start: int, stop: int, dim: int) -> np.ndarray:
        return self.clips[row][start:stop, :dim]


def _dataset(tmp_path, std=1.0, stops=(10, 12, 9), folder="index_a"):
    """Three samples of 10, 12 and 9 frames (2, 3, 2 whole tokens of 4), feature 0 = 1 everywhere, mean 0."""
    clips = {r: np.ones((16, 2), np.float32) for r in range(3)}
    samples = SimpleNamespace(names=["a", "b", "c"], rows=np.arange(3), starts=np.zeros(3, np.int64),
                              stops=np.array(stops, np.int64))
    samples = _Samples(samples)
    return SimpleNamespace(samples=samples, mean=np.zeros(2, np.float32), std=np.full(2, std, np.float32),
                           index=_Index(str(tmp_path / folder), clips), spec=SimpleNamespace(dim_pose=2,
                                                                                             max_motion_length=40),
                           split="train")


class _Samples:
    def __init__(self, ns):
        self.__dict__.update(vars(ns))
        self.captions = [[SimpleNamespace(caption=n)] for n in ns.names]

    def __len__(self):
        return len(self.names)


def test_the_code_cache_encodes_whole_tokens_of_normalised_motion(tmp_path):
    """Each sample's motion is cut to whole tokens and normalised with the dataset's statistics before encoding."""
    (tmp_path / "tok.tar").write_bytes(b"w")
    tok = _FrameTokenizer(str(tmp_path / "tok.tar"))
    codes, offsets = build_token_cache(tok, _dataset(tmp_path, std=2.0), str(tmp_path / "c.npz"), progress=False)
    assert offsets.tolist() == [0, 2, 5, 7]
    assert codes.shape == (7, 1) and codes.dtype == np.int32
    assert (codes == 2).all()  # 4 frames of 1 / 2
    assert sorted(tok.seen) == [8, 12]


@pytest.mark.parametrize("key, value", [("format", 0), ("tokenizer_sha256", "0" * 64), ("unit_length", 2),
                                        ("samples_sha256", "0" * 64), ("tokenizer_weights", "ema")])
def test_a_cache_written_for_something_else_is_encoded_again(tmp_path, key, value):
    (tmp_path / "tok.tar").write_bytes(b"w")
    tok = _FrameTokenizer(str(tmp_path / "tok.tar"))
    path = str(tmp_path / "c.npz")
    dataset = _dataset(tmp_path)
    build_token_cache(tok, dataset, path, progress=False)
    with np.load(path) as f:
        stored = {k: f[k] for k in f.files}
    np.savez(path, **{**stored, "codes": np.full_like(stored["codes"], 7)})
    codes, _ = build_token_cache(tok, dataset, path, progress=False, write=False)
    assert (codes == 7).all()  # everything matches: read back
    np.savez(path, **{**stored, "codes": np.full_like(stored["codes"], 7), key: value})
    codes, _ = build_token_cache(tok, dataset, path, progress=False, write=False)
    assert (codes == 4).all()  # 4 frames of 1, std 1


@pytest.mark.parametrize("change", [{"std": 2.0}, {"stops": (10, 12, 10)}, {"folder": "index_b"}])
def test_the_cache_follows_statistics_bounds_and_motion_index(tmp_path, change):
    (tmp_path / "tok.tar").write_bytes(b"w")
    tok = _FrameTokenizer(str(tmp_path / "tok.tar"))
    path = str(tmp_path / "c.npz")
    build_token_cache(tok, _dataset(tmp_path), path, progress=False)
    with np.load(path) as f:
        before = str(f["samples_sha256"])
    tok.seen.clear()
    build_token_cache(tok, _dataset(tmp_path, **change), path, progress=False)
    assert tok.seen  # encoded again
    with np.load(path) as f:
        assert str(f["samples_sha256"]) != before


def test_a_cache_is_not_written_when_write_is_false(tmp_path):
    (tmp_path / "tok.tar").write_bytes(b"w")
    tok = _FrameTokenizer(str(tmp_path / "tok.tar"))
    path = tmp_path / "sub" / "c.npz"
    build_token_cache(tok, _dataset(tmp_path), str(path), progress=False, write=False)
    assert not path.exists() and not (tmp_path / "sub").exists()


def _cached(n: int, unit: int = 4, max_tokens: int = 49) -> CachedTokenDataset:
    dataset = SimpleNamespace(samples=[0], split="train", spec=SimpleNamespace(max_motion_length=max_tokens * unit))
    dataset.samples = _Samples(SimpleNamespace(names=["walk"]))
    return CachedTokenDataset(dataset, np.arange(n)[:, None], np.array([0, n]), unit)


def test_cached_dataset_refuses_offsets_of_another_sample_count():
    dataset = SimpleNamespace(samples=_Samples(SimpleNamespace(names=["a"])), split="train",
                              spec=SimpleNamespace(max_motion_length=40))
    with pytest.raises(ValueError, match="2 cached samples for a dataset of 1"):
        CachedTokenDataset(dataset, np.zeros((4, 1)), np.array([0, 2, 4]), 4)
    assert len(CachedTokenDataset(dataset, np.zeros((4, 1)), np.array([0, 4]), 4)) == 1


def test_cached_crops_drop_a_token_a_third_of_the_time_and_start_anywhere():
    """A cached crop is one token short a third of the time (the reference's draw of 1 in 3), and a short crop starts
    at any token it can: here token 0 or 1."""
    ds = _cached(10)
    torch.manual_seed(0)
    items = [ds[0] for _ in range(3000)]
    short = [it for it in items if it.length == 9]
    assert {it.length for it in items} == {9, 10}
    assert 0.30 < len(short) / len(items) < 0.37
    starts = {int(it.indices[0, 0]) for it in short}
    assert starts == {0, 1}
    for it in items:  # the crop is the codes from its start, padded with -1
        first = int(it.indices[0, 0])
        assert it.indices[:it.length, 0].tolist() == list(range(first, first + it.length))
        assert (it.indices[it.length:] == -1).all()


def test_cached_crops_are_at_most_max_tokens_long():
    ds = _cached(10, max_tokens=6)
    torch.manual_seed(0)
    for _ in range(50):
        item = ds[0]
        assert item.length == 6 and item.indices.shape == (6, 1)
        first = int(item.indices[0, 0])
        assert item.indices[:, 0].tolist() == list(range(first, first + 6)) and 0 <= first <= 4


def test_cached_crops_keep_every_token_for_a_unit_of_ten_or_more():
    ds = _cached(5, unit=10)
    torch.manual_seed(0)
    assert {ds[0].length for _ in range(60)} == {5}


def test_a_one_token_sample_is_never_cropped_to_nothing():
    ds = _cached(1)
    torch.manual_seed(0)
    assert {ds[0].length for _ in range(60)} == {1}


class _TextEncoder:
    def encode(self, captions):
        return torch.tensor([[float(len(c))] for c in captions])


def test_token_loss_cuts_cached_codes_to_the_longest_sample_and_passes_the_padded_length():
    indices = torch.arange(2 * 6 * 3).reshape(2, 6, 3)
    batch = TextTokenBatch(["ab", "c"], indices, torch.tensor([3, 2]))
    seen = {}

    def model(idx, lengths, text_emb, **kw):
        seen.update(idx=idx, lengths=lengths, text_emb=text_emb, kw=kw)
        return torch.tensor(0.0), {}

    TokenLoss(None, _TextEncoder(), role="mask", padded_tokens=12)(model, batch)
    assert torch.equal(seen["idx"], indices[:, :3, 0]) and seen["kw"] == {"padded_len": 12}
    assert seen["lengths"].tolist() == [3, 2] and seen["text_emb"].tolist() == [[2.0], [1.0]]
    TokenLoss(None, _TextEncoder(), role="res")(model, batch)
    assert torch.equal(seen["idx"], indices[:, :3]) and seen["kw"] == {}


def _items(n):
    return [TokenItem(f"c{i}", torch.zeros(4, 1, dtype=torch.long), 2) for i in range(n)]


def test_validation_weights_each_batch_by_its_size_and_stops_after_max_batches():
    losses = iter([1.0, 4.0, 100.0])
    seen = []

    def loss_fn(model, batch):
        seen.append(len(batch.captions))
        value = next(losses)
        return torch.tensor(value), {"acc": torch.tensor(value / 10)}

    model = torch.nn.Linear(1, 1)
    val_fn = make_token_val_fn(loss_fn, _items(3), batch_size=2, collate_fn=collate_text_tokens)
    out = val_fn(model)
    assert seen == [2, 1]
    assert out["loss"] == pytest.approx(2.0) and out["acc"] == pytest.approx(0.2)
    seen.clear()
    losses = iter([3.0, 100.0])
    out = make_token_val_fn(loss_fn, _items(5), batch_size=2, max_batches=1, collate_fn=collate_text_tokens)(model)
    assert seen == [2] and out["loss"] == pytest.approx(3.0)


def test_validation_is_reseeded_at_every_call():
    def loss_fn(model, batch):
        return torch.rand(()), {"acc": torch.rand(())}

    val_fn = make_token_val_fn(loss_fn, _items(3), batch_size=2, seed=5, collate_fn=collate_text_tokens)
    model = torch.nn.Linear(1, 1)
    first = val_fn(model)
    torch.rand(7)
    assert val_fn(model) == first


def test_load_token_tokenizer_checks_kind_and_residual_layers(monkeypatch):
    def fake(kind, quantizers):
        tok = SimpleNamespace(kind=kind, num_quantizers=quantizers, model_name=f"{kind}_x")
        monkeypatch.setattr(token_stage, "load_stage_tokenizer", lambda *a, **k: tok)
        return tok

    tok = fake("vq", 1)
    assert load_token_tokenizer("tok.tar", None, role="mask") is tok
    with pytest.raises(ValueError, match=r"1 quantizer layer \(Q == 1\)"):
        load_token_tokenizer("tok.tar", None, role="res")
    tok = fake("rvq", 2)
    assert load_token_tokenizer("tok.tar", None, role="res") is tok
    fake("ae", 1)
    with pytest.raises(ValueError, match="gives no integer codes"):
        load_token_tokenizer("tok.tar", None, role="mask")


def test_training_time_generation_asks_for_whole_tokens_of_at_least_one_and_returns_their_frames(monkeypatch):
    monkeypatch.setattr(token_stage, "protocol_eval_fn", lambda tok, ev, loader, motion_fn_for, seed: motion_fn_for)
    monkeypatch.setattr(token_stage, "decode_indices",
                        lambda tok, indices, tokens: torch.ones(len(tokens), int(tokens.max()) * 4, 2))
    asked = {}

    class Model:
        def generate(self, tokens, text_emb, **kw):
            asked.update(tokens=tokens.tolist(), text_emb=text_emb.tolist(), kw=kw)
            return torch.zeros(len(tokens), int(tokens.max()), dtype=torch.long)

    tok = SimpleNamespace(unit_length=4)
    evaluator = SimpleNamespace(mean=np.zeros(2, np.float32), std=np.full(2, 2.0, np.float32))
    motion_fn_for = token_stage.make_token_generation_eval_fn(
        tok, _TextEncoder(), evaluator, None, np.zeros(2, np.float32), np.ones(2, np.float32), "mask", 4.0,
        time_steps=3)
    batch = SimpleNamespace(m_lengths=torch.tensor([3, 9, 17]), captions=["a", "bb", "ccc"])
    motion, lengths = motion_fn_for(Model(), torch.device("cpu"))(batch)
    assert asked["tokens"] == [1, 2, 4] and asked["kw"]["time_steps"] == 3 and asked["kw"]["cond_scale"] == 4.0
    assert lengths.tolist() == [4, 8, 16]
    assert motion.shape == (3, 16, 2) and torch.allclose(motion, torch.full((3, 16, 2), 0.5))


def test_training_time_residual_generation_keeps_the_base_layer_of_the_gt_motion_in_the_tokenizers_units(monkeypatch):
    """role="res": the GT motion, in the evaluator's normalisation, is encoded in the tokenizer's; the residual model
    completes its base layer (layer 0), not another."""
    monkeypatch.setattr(token_stage, "protocol_eval_fn", lambda tok, ev, loader, motion_fn_for, seed: motion_fn_for)
    encoded = {}

    def encode(tok, motion, frames):
        encoded.update(motion=motion.clone(), frames=frames.tolist())
        layers = torch.arange(3).expand(len(frames), int(frames.max()) // 4, 3)  # layer q holds code q everywhere
        return SimpleNamespace(indices=layers)

    monkeypatch.setattr(token_stage, "encode_tokens", encode)
    monkeypatch.setattr(token_stage, "decode_indices",
                        lambda tok, indices, tokens: torch.ones(len(tokens), int(tokens.max()) * 4, 2))
    asked = {}

    class Model:
        def generate(self, base, tokens, text_emb, **kw):
            asked.update(base=base.clone(), kw=kw)
            return torch.zeros(*base.shape, 3, dtype=torch.long)

    evaluator = SimpleNamespace(mean=np.zeros(2, np.float32), std=np.full(2, 2.0, np.float32))
    motion_fn_for = token_stage.make_token_generation_eval_fn(
        SimpleNamespace(unit_length=4), _TextEncoder(), evaluator, None, np.full(2, 1.0, np.float32),
        np.ones(2, np.float32), "res", 5.0)
    gt = torch.randn(2, 8, 2, generator=torch.Generator().manual_seed(0))
    batch = SimpleNamespace(m_lengths=torch.tensor([8, 4]), captions=["a", "bb"], motion=gt)
    motion_fn_for(Model(), torch.device("cpu"))(batch)
    torch.testing.assert_close(encoded["motion"], gt * 2 - 1)
    assert encoded["frames"] == [8, 4]
    assert (asked["base"] == 0).all() and asked["kw"]["cond_scale"] == 5.0
