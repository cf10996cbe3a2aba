"""The tokenizer and token stages (utils/tokenizer_stage.py, utils/token_stage.py): what the code cache is keyed on
and what it encodes, where it is written, fp32 encoding under autocast, the code-usage metrics of validation, and the
records later stages read."""

from __future__ import annotations

import hashlib
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from test_token_stage_contracts import _dataset, _FrameTokenizer
from test_tokenizer_stage_contracts import PATH, _record

from utils import token_stage
from utils import tokenizer_stage as ts
from utils.checkpoint import CheckpointError
from utils.dataset_specs import get_dataset_spec
from utils.run_dir import RunDir
from utils.token_stage import build_token_cache, cached_token_datasets, encode_tokens, token_checkpoint_meta

# ---------------------------------------------------------------------------------------------------------------------
# Code cache
# ---------------------------------------------------------------------------------------------------------------------


def _tokenizer(tmp_path) -> _FrameTokenizer:
    (tmp_path / "tok.tar").write_bytes(b"w")
    return _FrameTokenizer(str(tmp_path / "tok.tar"))


def test_the_code_cache_subtracts_the_dataset_mean_before_encoding(tmp_path):
    """Frames of 1 with mean 0.5 and std 0.25 encode as tokens of 4 * (1 - 0.5) / 0.25 = 8."""
    dataset = _dataset(tmp_path, std=0.25)
    dataset.mean = np.full(2, 0.5, np.float32)
    codes, _ = build_token_cache(_tokenizer(tmp_path), dataset, str(tmp_path / "c.npz"), progress=False)
    assert (codes == 8).all()


@pytest.mark.parametrize("change", ["mean", "names", "rows"])
def test_the_cache_follows_the_mean_the_sample_names_and_their_rows(tmp_path, change):
    """A cache of other samples (renamed, another row of the motion index) or another mean is encoded again."""
    tok = _tokenizer(tmp_path)
    path = str(tmp_path / "c.npz")
    build_token_cache(tok, _dataset(tmp_path), path, progress=False)
    dataset = _dataset(tmp_path)
    if change == "mean":
        dataset.mean = np.full(2, 0.5, np.float32)
    elif change == "names":
        dataset.samples.names = ["a", "b", "d"]
    else:
        dataset.samples.rows = np.array([0, 2, 1])
    tok.seen.clear()
    build_token_cache(tok, dataset, path, progress=False)
    assert tok.seen  # encoded again


def test_a_cache_that_predates_the_weights_record_is_read_for_the_plain_weights(tmp_path):
    """Caches written before ``tokenizer_weights`` was stored hold codes of the plain (non-EMA) weights."""
    tok = _tokenizer(tmp_path)
    path = str(tmp_path / "c.npz")
    dataset = _dataset(tmp_path)
    build_token_cache(tok, dataset, path, progress=False)
    with np.load(path) as f:
        stored = {k: f[k] for k in f.files if k != "tokenizer_weights"}
    np.savez(path, **{**stored, "codes": np.full_like(stored["codes"], 7)})
    tok.seen.clear()
    codes, _ = build_token_cache(tok, dataset, path, progress=False, write=False)
    assert (codes == 7).all() and not tok.seen


def test_cached_datasets_write_each_split_under_the_runs_tokens_folder(tmp_path):
    """cached_token_datasets creates ``<run>/tokens/`` and keeps one file per split; write=False writes nothing."""
    tok = _tokenizer(tmp_path)
    train, val = _dataset(tmp_path), _dataset(tmp_path, stops=(8, 8, 8))
    val.split = "val"
    run = RunDir(str(tmp_path / "ck"), "t2m", "mask")
    cached_token_datasets(tok, RunDir(str(tmp_path / "other"), "t2m", "mask"), train, write=False, progress=False)
    assert not (tmp_path / "other").exists()
    first, second = cached_token_datasets(tok, run, train, val, progress=False)
    names = sorted(p.name.split("_")[0] for p in (tmp_path / "ck" / "t2m" / "mask" / "tokens").iterdir())
    assert names == ["train", "val"]
    assert [len(first), len(second)] == [3, 3] and first.offsets.tolist() == [0, 2, 5, 7]
    assert second.offsets.tolist() == [0, 2, 4, 6]


# ---------------------------------------------------------------------------------------------------------------------
# Encoding
# ---------------------------------------------------------------------------------------------------------------------


class _ComputeDtypeTokenizer(_FrameTokenizer):
    """Records the dtype a matmul inside ``encode`` computes in."""

    def encode(self, motion: torch.Tensor) -> torch.Tensor:
        self.compute_dtype = torch.mm(motion[0], motion[0].T).dtype
        return super().encode(motion)


def test_codes_are_encoded_in_fp32_under_an_enclosing_autocast():
    """encode_tokens inside a bf16 autocast region runs the tokenizer in fp32."""
    tok = _ComputeDtypeTokenizer()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        codes = encode_tokens(tok, torch.ones(2, 8, 2), torch.tensor([8, 4]))
    assert tok.compute_dtype == torch.float32
    assert codes.indices.tolist() == [[4, 4], [4, -1]]


# ---------------------------------------------------------------------------------------------------------------------
# Validation codes
# ---------------------------------------------------------------------------------------------------------------------


class _Codes(torch.nn.Module):
    """Reconstructs its input and reports fixed code indices."""

    def __init__(self, codes, codebook_size):
        super().__init__()
        self.p = torch.nn.Parameter(torch.zeros(()))
        self.codes = codes
        self.quantizer = SimpleNamespace(codebook_size=codebook_size)

    def forward(self, motion):
        return SimpleNamespace(recon=motion, indices_or_latents=self.codes[: motion.shape[0]])


def _code_metrics(codes, codebook_size):
    spec = SimpleNamespace(representation="smplx_rot6d", dim_pose=3)
    loader = torch.utils.data.DataLoader(torch.zeros(len(codes), 2, 3), batch_size=len(codes))
    return ts.reconstruction_metrics(_Codes(codes, codebook_size), loader, spec, np.zeros(3), np.ones(3),
                                     lambda motion, out: (out.recon.mean(), {"loss": out.recon.mean()}))


def test_code_perplexity_is_the_mean_over_residual_layers_and_logged_per_layer():
    """Layer 0 uses 4 codes evenly (perplexity 4), layer 1 one code (perplexity 1): mean 2.5."""
    codes = torch.stack([torch.tensor([[0, 1, 2, 3]]), torch.zeros(1, 4, dtype=torch.long)], -1)  # (1, 4, 2)
    metrics = _code_metrics(codes, 8)
    assert metrics["code_perplexity"] == pytest.approx(2.5, rel=1e-4)
    assert metrics["code_perplexity_q0"] == pytest.approx(4.0, rel=1e-4)
    assert metrics["code_perplexity_q1"] == pytest.approx(1.0, rel=1e-4)


def test_code_usage_ignores_padding_codes_of_minus_one():
    """Codes of -1 (padding) are not counted: two of four codes used, evenly."""
    metrics = _code_metrics(torch.tensor([[0, 1, -1, -1], [1, 0, -1, -1]]), 4)
    assert metrics["code_usage"] == pytest.approx(0.5)
    assert metrics["code_perplexity"] == pytest.approx(2.0, rel=1e-4)


def test_validation_loss_terms_are_means_over_windows_not_batches():
    """Batches of 2 and 1 windows with per-window losses 0, 1 | 2: the mean is 1, not the batch mean 1.25."""
    spec = SimpleNamespace(representation="smplx_rot6d", dim_pose=3)
    windows = torch.arange(3.0).reshape(3, 1, 1).expand(3, 2, 3)
    loader = torch.utils.data.DataLoader(windows, batch_size=2)
    metrics = ts.reconstruction_metrics(_Codes(torch.zeros(3, 1, dtype=torch.long), 4), loader, spec, np.zeros(3),
                                        np.ones(3), lambda motion, out: (out.recon.mean(), {"loss": out.recon.mean()}))
    assert metrics["loss"] == pytest.approx(1.0)


# ---------------------------------------------------------------------------------------------------------------------
# Resume and run set-up
# ---------------------------------------------------------------------------------------------------------------------


def test_a_conditional_run_saved_before_condition_dropout_resumes_without_dropout():
    """A run that recorded no cond_drop_prob trained without condition dropout: 0.0 resumes, 0.5 is refused."""
    ts.check_training_settings("/runs/x/model/latest.tar", {"conditions": ["style"]},
                               {"conditions": ["style"], "cond_drop_prob": 0.0})
    with pytest.raises(CheckpointError, match=r"--cond_drop_prob 0\.0 \(not recorded.*but 0\.5 now"):
        ts.check_training_settings("/runs/x/model/latest.tar", {"conditions": ["style"]},
                                   {"conditions": ["style"], "cond_drop_prob": 0.5})



def test_the_generator_record_names_the_tokenizer_weights_and_hashes_its_file(tmp_path, monkeypatch):
    """A token generator's checkpoint records which tokenizer weights it read and the sha256 of the tokenizer file,
    in ``tokenizer`` and as its ``parent``."""
    monkeypatch.setattr(token_stage, "tokenizer_statistics", lambda tok: (np.zeros(2), np.ones(2)))
    path = tmp_path / "tok.tar"
    path.write_bytes(b"abc")
    tok = SimpleNamespace(model_name="RVQVAE_Tiny", kind="rvq", weights="ema")
    meta = token_checkpoint_meta("Mask_Tiny", {}, get_dataset_spec("synthetic"), tok,
                                 SimpleNamespace(name="vq", path=str(path)), {}, {})
    sha = hashlib.sha256(b"abc").hexdigest()
    assert meta["tokenizer"]["weights"] == "ema" and meta["tokenizer"]["sha256"] == sha
    assert meta["parent"] == {"path": str(path), "sha256": sha} and meta["target"] == "tokens"


def test_resume_on_other_statistics_names_their_shape_or_the_first_feature_that_differs():
    spec = get_dataset_spec("synthetic")
    d = spec.dim_pose
    moved = np.zeros(d)
    moved[[2, 5]] = 1.0
    with pytest.raises(CheckpointError, match=r"dataset mean differs from the run being resumed in 2 features \(first "
                                              r"at index 2: 0 in the checkpoint, 1 now\)"):
        ts.check_tokenizer_resume(_record(), PATH, _record(dataset=ts.dataset_record(spec, moved, np.ones(d))))
    wider = _record()
    wider["dataset"] = {**wider["dataset"], "mean": np.zeros(d + 1).tolist()}
    with pytest.raises(CheckpointError, match=rf"dataset mean has shape \({d},\) in the run being resumed but "
                                              rf"\({d + 1},\) now"):
        ts.check_tokenizer_resume(_record(), PATH, wider)


def test_resume_from_all_windows_to_random_ones_names_the_stride_too():
    """The stride is left out of the comparison only when both runs draw random windows."""
    saved = _record(config={"window_size": None, "window_mode": "all", "window_stride": 4})
    with pytest.raises(CheckpointError, match=r"(?s)window_mode.*window_stride"):
        ts.check_tokenizer_resume(saved, PATH, _record(config={"window_size": None, "window_mode": "random"}))
    ts.check_tokenizer_resume(_record(config={"window_size": None, "window_stride": 4}), PATH, _record())
