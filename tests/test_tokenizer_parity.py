"""Parity with the golden fixtures of the official tokenizers (T2M-GPT VQ-VAE, MoMask RVQ-VAE, MARDM AE).

Every size is read from the fixture's manifest or checkpoint (a held-out fixture set uses other sizes). Each fixture
is reproduced twice: through ``load_tokenizer`` (sizes inferred from the weights) and through the model classes built
from the manifest's constructor arguments. ``tools/import_checkpoint.py`` must write a run that loads back with
identical outputs.
"""

from __future__ import annotations

import argparse
import json
import os
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from tool_helpers import load_tool

from models import load_tokenizer
from models.loader import import_official
from models.tokenizers import AE, RVQVAE, VQVAE, build_tokenizer
from utils.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from utils.cli import TRACEBACK_ENV, run_script
from utils.dataset_specs import DATASETS, SPEC_FILE, T2M_KINEMATIC_CHAIN, DatasetSpec, FeatureGroup
from utils.file_lock import acquire_lock
from utils.run_dir import RunDir

FIXTURES = Path(__file__).resolve().parent / "fixtures"
TOKENIZER_FIXTURES = ["t2m_gpt_vqvae", "momask_rvqvae", "mardm_ae"]
WEIGHT_KEYS = {"t2m_gpt_vqvae": "net", "momask_rvqvae": "vq_model", "mardm_ae": "ae"}


class Fixture:
    """A fixture folder: manifest, arrays and checkpoint path."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.dir = FIXTURES / name
        if not (self.dir / "manifest.json").is_file():
            pytest.skip(f"fixture not found: {self.dir}")
        self.manifest = json.loads((self.dir / "manifest.json").read_text())
        with np.load(self.dir / "io.npz", allow_pickle=False) as arrays:
            self.arrays = {k: arrays[k] for k in arrays.files}
        self.checkpoint = str(self.dir / self.manifest["checkpoint"]["file"])

    def tensor(self, key: str) -> torch.Tensor:
        return torch.from_numpy(self.arrays[key])

    def check(self, outputs: dict[str, torch.Tensor]) -> None:
        """Compare ``outputs`` with every manifest output using the manifest's tolerance rule."""
        assert set(outputs) == set(self.manifest["outputs"]), "every manifest output must be reproduced"
        tol = self.manifest["tolerance"]["recommended"]
        for key, got in outputs.items():
            expected = self.arrays[key]
            got = got.detach().double().numpy() if torch.is_tensor(got) else np.asarray(got, dtype=np.float64)
            assert got.shape == expected.shape, f"{self.name}.{key}: shape {got.shape} != {expected.shape}"
            if key in tol.get("exact", []):
                assert np.array_equal(got, expected), f"{self.name}.{key}: {np.sum(got != expected)} mismatches"
                continue
            limits = tol.get("per_output", {}).get(key, tol["default"])
            err = np.abs(got - expected) - (limits["atol"] + limits["rtol"] * np.abs(expected))
            assert (err <= 0).all(), f"{self.name}.{key}: max excess {err.max():.3g} over tolerance {limits}"


def _unshaped_kwargs(fx: Fixture) -> dict:
    """Constructor values the weight shapes cannot tell, from the manifest (passed to the loader as kwargs)."""
    kw = fx.manifest["constructor"]["kwargs"]
    out = {"dilation_growth_rate": kw["dilation_growth_rate"], "activation": kw["activation"]}
    if kw.get("norm") is not None:
        out["norm"] = kw["norm"]
    return out


def _dataset_args(width: int, tmp_path: Path) -> list[str]:
    """``--dataset_name`` (and ``--data_root``) of a dataset whose feature width is ``width``."""
    for name, spec in DATASETS.items():
        if spec.dim_pose == width:
            return ["--dataset_name", name]
    root = tmp_path / f"features{width}"
    root.mkdir()
    spec = DatasetSpec(name=f"features{width}", root=str(root), joints_num=22, dim_pose=width, fps=20.0,
                       representation="essential", kinematic_chain=T2M_KINEMATIC_CHAIN,
                       layout=(FeatureGroup("ric", 0, width),), root_groups=(), contact_group=None)
    spec.save(str(root / SPEC_FILE))
    return ["--dataset_name", spec.name, "--data_root", str(root)]


def _official_state_dict(fx: Fixture) -> dict[str, torch.Tensor]:
    state = load_checkpoint(fx.checkpoint)
    return {k.removeprefix("vqvae."): v for k, v in state[WEIGHT_KEYS[fx.name]].items()}


def _model_from_manifest(fx: Fixture) -> torch.nn.Module:
    """The model class built from the manifest's constructor arguments, loaded with the official weights."""
    kw = dict(fx.manifest["constructor"]["kwargs"])
    args = fx.manifest["constructor"].get("args", {})
    conv = {k: kw[k] for k in ("down_t", "stride_t", "width", "depth", "dilation_growth_rate", "activation", "norm")}
    if fx.name == "t2m_gpt_vqvae":
        assert kw["output_emb_width"] == kw["code_dim"]
        model = VQVAE(input_width=int(fx.arrays["x"].shape[-1]), nb_code=kw["nb_code"], code_dim=kw["code_dim"],
                      quantizer_type=args["quantizer"], mu=args["mu"], **conv)
    elif fx.name == "momask_rvqvae":
        assert kw["output_emb_width"] == kw["code_dim"]
        model = RVQVAE(input_width=kw["input_width"], nb_code=kw["nb_code"], code_dim=kw["code_dim"],
                       num_quantizers=args["num_quantizers"], shared_codebook=args["shared_codebook"],
                       quantize_dropout_prob=args["quantize_dropout_prob"], mu=args["mu"], **conv)
    else:
        model = AE(input_width=kw["input_width"], output_emb_width=kw["output_emb_width"], **conv)
    model.load_state_dict(_official_state_dict(fx))
    return model.eval()


def _reproduce(fx: Fixture, model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Every manifest output, computed with our API (channels-first arrays are transposed from ``(B, N, C)``)."""
    x = fx.tensor("x")
    with torch.no_grad():
        latents = model.encode_latent(x)
        out = model(x)
        if fx.name == "mardm_ae":
            return {"latent": model.encode(x).transpose(1, 2),
                    "decoded": model.decode(fx.tensor("latent").transpose(1, 2)),
                    "recon": out.recon,
                    "probe_decoded": model.decode(fx.tensor("probe_latent").transpose(1, 2))}
        indices = model.encode(x)
        outputs = {"encoder_out": latents.transpose(1, 2), "code_idx": indices, "decoded": model.decode(indices),
                   "recon": out.recon, "commit_loss": out.aux_loss, "perplexity": out.perplexity}
        if fx.name == "t2m_gpt_vqvae":
            outputs["quantized_latent"] = model.quantizer.indices_to_latents(indices).transpose(1, 2)
            outputs["probe_decoded"] = model.decode(fx.tensor("probe_idx"))
        else:
            # MoMask stacks the per-layer codes as (Q, B, C, N)
            outputs["layer_codes"] = model.quantizer.quantize_layers(latents).layer_latents.permute(2, 0, 3, 1)
            outputs["decoded_masked"] = model.decode(fx.tensor("code_idx_masked"))
            outputs["decoded_base_only"] = model.decode(fx.tensor("code_idx_base_only"))
    return outputs


@pytest.mark.parametrize("name", TOKENIZER_FIXTURES)
def test_parity_through_load_tokenizer(name: str) -> None:
    fx = Fixture(name)
    tok = load_tokenizer(fx.checkpoint, **_unshaped_kwargs(fx))
    assert tok.source_format != "ours"
    expected_kind = {"t2m_gpt_vqvae": "vq", "momask_rvqvae": "rvq", "mardm_ae": "ae"}[name]
    assert tok.kind == expected_kind
    kw = fx.manifest["constructor"]["kwargs"]
    for key in ("width", "down_t", "depth", "nb_code", "code_dim", "output_emb_width", "input_width"):
        if key in kw and key in tok.model_args:
            assert tok.model_args[key] == kw[key], key
    if name == "momask_rvqvae":
        assert tok.num_quantizers == fx.manifest["constructor"]["args"]["num_quantizers"]
    fx.check(_reproduce(fx, tok.model))
    x = fx.tensor("x")
    with torch.no_grad():
        assert torch.equal(tok(x), tok.model(x).recon)
        codes = tok.encode(x)
        assert torch.equal(tok.decode(codes), tok.model.decode(codes))


@pytest.mark.parametrize("name", TOKENIZER_FIXTURES)
def test_parity_through_model_classes(name: str) -> None:
    fx = Fixture(name)
    fx.check(_reproduce(fx, _model_from_manifest(fx)))


@pytest.mark.parametrize("name", ["t2m_gpt_vqvae", "momask_rvqvae"])
def test_official_codebook_continues_in_train_mode(name: str) -> None:
    # The official files hold no init flag / EMA state; training must continue from the loaded codebook (one EMA
    # step with dead-code reset), never re-initialise it from the batch as the references do.
    fx = Fixture(name)
    model = _model_from_manifest(fx)
    layer = model.quantizer.layers[0] if name == "momask_rvqvae" else model.quantizer
    layer.sample_codebook_temp = 0.0
    if name == "momask_rvqvae":
        model.quantizer.quantize_dropout_prob = 0.0
    old = layer.codebook.clone()
    x = fx.tensor("x")
    tokens = x.shape[0] * x.shape[1] // model.unit_length
    x = x.repeat(old.shape[0] // tokens + 1, 1, 1)  # at least K latent rows, so no tiling noise in the reset
    with torch.no_grad():
        latents = model.encode_latent(x).reshape(-1, old.shape[1])
        indices = model.quantizer.quantize(model.encode_latent(x))
    indices = (indices[..., 0] if indices.ndim == 3 else indices).reshape(-1)
    mu = layer.mu
    counts = torch.bincount(indices, minlength=old.shape[0]).float()
    sums = torch.zeros_like(old).index_add_(0, indices, latents)
    ema_count = mu + (1 - mu) * counts
    expected = (mu * old + (1 - mu) * sums) / ema_count[:, None]
    expected = torch.where((ema_count >= 1)[:, None], expected, latents[:old.shape[0]])
    model.quantizer.train()  # the conv blocks stay in eval mode (MoMask's have dropout)
    with torch.no_grad():
        model(x)
    assert bool(layer.initted)
    assert torch.allclose(layer.codebook, expected, atol=1e-5)
    assert not torch.allclose(layer.codebook, latents[:old.shape[0]], atol=1e-3)


@pytest.mark.parametrize("name", TOKENIZER_FIXTURES)
def test_import_checkpoint_round_trip(tmp_path, name: str) -> None:
    fx = Fixture(name)
    tool = load_tool("import_checkpoint")
    official = load_tokenizer(fx.checkpoint, **_unshaped_kwargs(fx))
    dataset_args = _dataset_args(official.model.input_width, tmp_path)
    dataset = dataset_args[1]
    model_flags = [f"--{k}={v}" for k, v in _unshaped_kwargs(fx).items()]
    cfg = tool.get_parser().parse_args(["--src", fx.checkpoint, "--name", "imported", "--checkpoints_dir",
                                        str(tmp_path), *dataset_args, *model_flags])
    run_dir = Path(tool.main(cfg))
    assert run_dir == tmp_path / dataset / "imported"
    for file_name in ("net_best_fid.tar", "latest.tar"):
        tok = load_tokenizer(str(run_dir / "model" / file_name), model_name=official.model_name)
        assert tok.source_format == "ours" and tok.model_args == official.model_args
        assert tok.dataset["name"] == dataset
        x = fx.tensor("x")
        with torch.no_grad():
            assert torch.equal(tok(x), official(x))
            codes = official.encode(x)
            assert torch.equal(tok.encode(x), codes)
            assert torch.equal(tok.decode(codes), official.decode(codes))
    state = load_checkpoint(str(run_dir / "model" / "latest.tar"))
    assert state["parent"]["format"] == official.source_format and state["stage"] == "tokenizer"
    if official.kind in ("vq", "rvq"):
        assert any(k.endswith("initted") and bool(v) for k, v in state["model"].items())
    assert "model_args" in (run_dir / "opt.yaml").read_text()
    with pytest.raises(SystemExit, match="exists"):
        tool.main(cfg)
    wrong = argparse.Namespace(**{**vars(cfg), "name": "wrong", "dataset_name": "motionmillion", "data_root": None})
    with pytest.raises(SystemExit, match="dim_pose 272"):
        tool.main(wrong)


# ----------------------------------------------------------------------------------------------------------------------
# MotionMillion layout (no public fixture: a synthetic file in its on-disk format)


def _motionmillion_file(tmp_path, model) -> str:
    """Our FSQ_MotionMillion weights in MotionMillion's layout: DDP ``module.`` and ``vqvae.`` prefixes, a Haar
    patcher as encoder ``model.0`` (shifting the encoder indices) and as the decoder's last module."""
    sd = {}
    for key, value in model.state_dict().items():
        if key.startswith("encoder.model."):
            index, rest = key[len("encoder.model."):].split(".", 1)
            key = f"encoder.model.{int(index) + 1}.{rest}"
        sd[f"module.vqvae.{key}"] = value
    last = len(model.decoder.model)
    for prefix in ("module.vqvae.encoder.model.0", f"module.vqvae.decoder.model.{last}"):
        sd[f"{prefix}.wavelets"] = torch.tensor([0.7071, 0.7071])
        sd[f"{prefix}._arange"] = torch.arange(2)
    path = str(tmp_path / "net_6000000.pth")
    save_checkpoint(path, {"net": sd, "nb_iter": 6})
    return path


def test_motionmillion_layout_loads(tmp_path) -> None:
    torch.manual_seed(0)
    model = build_tokenizer("FSQ_MotionMillion_Tiny").eval()
    path = _motionmillion_file(tmp_path, model)
    levels = model.model_args["levels"]
    tok = load_tokenizer(path, levels=levels)
    assert tok.kind == "fsq" and tok.model_name == "FSQ_MotionMillion" and tok.source_format == "motionmillion"
    assert tok.model_args["norm"] == "LN" and tok.model_args["down_t"] == 1 and tok.unit_length == 2
    x = torch.randn(2, 12, model.input_width)
    with torch.no_grad():
        assert torch.equal(tok.encode(x), model.encode(x))
        assert torch.allclose(tok(x), model(x).recon, atol=1e-6)
    with pytest.raises(CheckpointError, match="pass levels"):
        load_tokenizer(path)
    with pytest.raises(CheckpointError, match="levels"):
        load_tokenizer(path, levels=[8, 5])
    with pytest.raises(CheckpointError, match="patch_size"):
        load_tokenizer(path, levels=levels, patch_size=4)


def test_a_patch_size_for_a_file_without_a_patcher_is_refused() -> None:
    """--patch_size 2 with a MoMask file (no wavelet patcher) was dropped without a word; patch_size 1 is fine."""
    fx = Fixture("momask_rvqvae")
    with pytest.raises(CheckpointError, match=r"patch_size=2 was requested but the checkpoint has no wavelet patcher"):
        load_tokenizer(fx.checkpoint, patch_size=2)
    assert load_tokenizer(fx.checkpoint, patch_size=1).model_name == "RVQVAE"


def test_official_loader_rejects_contradictions(tmp_path) -> None:
    fx = Fixture("t2m_gpt_vqvae")
    width = fx.manifest["constructor"]["kwargs"]["width"]
    with pytest.raises(CheckpointError, match=f"width={width + 1} was requested but the weights say {width}"):
        load_tokenizer(fx.checkpoint, width=width + 1)
    with pytest.raises(CheckpointError, match="model_name is 'VQVAE' in the checkpoint but 'RVQVAE'"):
        load_tokenizer(fx.checkpoint, model_name="RVQVAE")
    bad = str(tmp_path / "bad.pth")
    save_checkpoint(bad, {"transformer": {}, "ep": 1})
    with pytest.raises(CheckpointError, match=r"top-level keys are \['ep', 'format_version', 'transformer'\]"):
        load_tokenizer(bad)


OFFICIAL_LAYOUTS = [
    # (registry model, overrides, top-level key, key prefix, loader kwargs)
    ("VQVAE", dict(input_width=251, nb_code=20, code_dim=12, width=24, down_t=3, depth=2), "net", "vqvae.", {}),
    ("VQVAE", dict(nb_code=16, code_dim=8, width=16, depth=1, quantizer_type="orig"), "net", "vqvae.", {}),
    ("RVQVAE", dict(input_width=251, nb_code=24, code_dim=8, width=16, num_quantizers=5, down_t=1), "vq_model", "",
     {}),
    ("RVQVAE", dict(nb_code=16, code_dim=8, width=16, num_quantizers=2, shared_codebook=True), "net", "", {}),
    ("AE_Model", dict(input_width=64, output_emb_width=8, width=24, dilation_growth_rate=2, activation="silu"), "ae",
     "", dict(dilation_growth_rate=2, activation="silu")),
]


@pytest.mark.parametrize("name,overrides,top_key,prefix,loader_kwargs", OFFICIAL_LAYOUTS)
def test_loader_infers_sizes_from_official_layouts(tmp_path, name, overrides, top_key, prefix, loader_kwargs) -> None:
    torch.manual_seed(1)
    model = build_tokenizer(name, **overrides).train()
    x = torch.randn(2, 4 * model.unit_length, model.input_width)
    model(x)  # fills the codebooks
    model.eval()
    # official files hold only the codebook of each EMA quantizer
    sd = {prefix + k: v for k, v in model.state_dict().items()
          if not k.endswith(("code_sum", "code_count", "initted"))}
    path = str(tmp_path / "official.tar")
    save_checkpoint(path, {top_key: sd, "ep": 3})
    tok = load_tokenizer(path, **loader_kwargs)
    assert tok.model_name == name
    for key, value in overrides.items():
        assert tok.model_args[key] == value, key
    with torch.no_grad():
        assert torch.equal(tok.encode(x), model.encode(x))
        assert torch.allclose(tok(x), model(x).recon, atol=1e-6)


def test_import_checkpoint_keeps_any_checkpoint_of_an_existing_run(tmp_path) -> None:
    """A run holding only net_best_fid.tar (no latest.tar) is not overwritten without --overwrite."""
    fx = Fixture(TOKENIZER_FIXTURES[0])
    tool = load_tool("import_checkpoint")
    official = load_tokenizer(fx.checkpoint, **_unshaped_kwargs(fx))
    dataset_args = _dataset_args(official.model.input_width, tmp_path)
    model_flags = [f"--{k}={v}" for k, v in _unshaped_kwargs(fx).items()]
    argv = ["--src", fx.checkpoint, "--name", "taken", "--checkpoints_dir", str(tmp_path), *dataset_args,
            *model_flags]
    best = tmp_path / dataset_args[1] / "taken" / "model" / "net_best_fid.tar"
    best.parent.mkdir(parents=True)
    best.write_bytes(b"a trained run's best weights")
    with pytest.raises(SystemExit, match=r"a run exists at .*taken \(net_best_fid.tar\); choose another --name"):
        tool.main(tool.get_parser().parse_args(argv))
    assert best.read_bytes() == b"a trained run's best weights"
    tool.main(tool.get_parser().parse_args([*argv, "--overwrite"]))
    assert load_tokenizer(str(best), model_name=official.model_name).source_format == "ours"


@pytest.mark.parametrize("bad", ["zero", "nan"])
def test_import_checkpoint_refuses_meta_statistics_that_are_not_finite_or_zero(tmp_path, bad: str) -> None:
    """A zero or NaN std in --meta_dir was recorded and read by every later stage (the tokenizer's input then inf
    or NaN); --ae_meta_dir already refused it. The import stops before it makes the run folder."""
    fx = Fixture(TOKENIZER_FIXTURES[0])
    tool = load_tool("import_checkpoint")
    official = load_tokenizer(fx.checkpoint, **_unshaped_kwargs(fx))
    dataset_args = _dataset_args(official.model.input_width, tmp_path)
    meta = tmp_path / "meta"
    meta.mkdir()
    std = np.ones(official.model.input_width, dtype=np.float32)
    std[10] = 0.0 if bad == "zero" else np.nan
    np.save(meta / "mean.npy", np.zeros(official.model.input_width, dtype=np.float32))
    np.save(meta / "std.npy", std)
    argv = ["--src", fx.checkpoint, "--name", "m", "--checkpoints_dir", str(tmp_path / "runs"), *dataset_args,
            *[f"--{k}={v}" for k, v in _unshaped_kwargs(fx).items()], "--meta_dir", str(meta)]
    with pytest.raises(ValueError, match=rf"--meta_dir {meta}: std.npy: mean and std must be finite with std > 0"):
        tool.main(tool.get_parser().parse_args(argv))
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("overwrite", [False, True])
def test_import_checkpoint_refuses_a_run_that_is_training(tmp_path, monkeypatch, overwrite: bool) -> None:
    """A run whose lock is held (it is training, before or after its first checkpoint) is not written over, even with
    --overwrite: the import is refused naming the holder's pid, as a second training start is."""
    monkeypatch.delenv(TRACEBACK_ENV, raising=False)
    fx = Fixture("t2m_gpt_vqvae")
    tool = load_tool("import_checkpoint")
    run = RunDir(str(tmp_path), "synthetic", "busy")
    os.makedirs(run.model_dir)
    if overwrite:
        Path(run.best_path()).write_bytes(b"a training run's best weights")
    before = {name: (Path(run.model_dir) / name).read_bytes() for name in os.listdir(run.model_dir)}
    holder = acquire_lock(run.lock_path, f"the run folder {run.root}", "")
    argv = ["--src", fx.checkpoint, "--name", "busy", "--dataset_name", "synthetic", "--checkpoints_dir",
            str(tmp_path), *[f"--{k}={v}" for k, v in _unshaped_kwargs(fx).items()]]
    try:
        with pytest.raises(SystemExit, match=rf"import_checkpoint.py: error: the run folder {run.root} is in use by "
                                             rf"another process \(pid {os.getpid()} "):
            run_script(lambda: tool.main(tool.get_parser().parse_args(argv + ["--overwrite"] * overwrite)),
                       prog="import_checkpoint.py")
    finally:
        holder.release()
    assert {name: (Path(run.model_dir) / name).read_bytes() for name in os.listdir(run.model_dir)} == before
    assert not os.path.exists(run.config_path)


def test_shared_codebook_request_must_fit_the_codebooks(tmp_path) -> None:
    """A shared RVQ is one module listed Q times: loading distinct per-layer codebooks into it would keep only the
    last one. ``shared_codebook=True`` on such a file is a contradiction; ``False`` overrides the detection."""
    fx = Fixture("momask_rvqvae")
    assert fx.manifest["constructor"]["args"]["shared_codebook"] is False
    with pytest.raises(CheckpointError, match=r"net_best_fid.tar: shared_codebook=True was requested but the "
                                              r"\d+ layers' codebooks differ"):
        load_tokenizer(fx.checkpoint, shared_codebook=True)
    sd = _official_state_dict(fx)
    for key in [k for k in sd if k.startswith("quantizer.layers.")]:
        sd[key] = sd["quantizer.layers.0.codebook"].clone()
    path = str(tmp_path / "same_codebooks.tar")
    save_checkpoint(path, {"vq_model": sd, "ep": 1})
    assert load_tokenizer(path).model_args["shared_codebook"] is True
    assert load_tokenizer(path, shared_codebook=False).model_args["shared_codebook"] is False


# ----------------------------------------------------------------------------------------------------------------------
# Format detection on minimal state dicts made from the fixtures' key lists


def _weights_from_manifest(name: str, prefix: str = "") -> dict[str, torch.Tensor]:
    """Random tensors with the names and shapes the fixture's manifest lists (random codebooks, so RVQ layers are
    not mistaken for one shared codebook); T2M-GPT's ``vqvae.`` holder is dropped, ``prefix`` added."""
    shapes = Fixture(name).manifest["checkpoint"]["state_dict_shapes"]
    gen = torch.Generator().manual_seed(0)
    return {prefix + k.removeprefix("vqvae."): torch.randn(*shape, generator=gen) for k, shape in shapes.items()}


DETECTED = [
    # (fixture, top-level key, registry model, source format)
    ("t2m_gpt_vqvae", "net", "VQVAE", "t2m-gpt"),
    ("momask_rvqvae", "vq_model", "RVQVAE", "momask"),
    ("momask_rvqvae", "net", "RVQVAE", "momask"),  # the legacy key MoMask's loaders still read
    ("mardm_ae", "ae", "AE_Model", "mardm"),
]


@pytest.mark.parametrize("prefix", ["", "vqvae.", "module.", "_orig_mod.", "module.vqvae."])
@pytest.mark.parametrize("name,top_key,model_name,source_format", DETECTED)
def test_each_official_layout_is_detected_as_its_format(name, top_key, model_name, source_format, prefix) -> None:
    imported = import_official({top_key: _weights_from_manifest(name, prefix), "ep": 1}, "f.tar")
    assert (imported.model_name, imported.source_format) == (model_name, source_format)
    assert set(imported.state_dict) == set(_weights_from_manifest(name))


CROSSED = [(name, top_key) for name in TOKENIZER_FIXTURES for top_key in ("net", "vq_model", "ae")
           if not any(d[:2] == (name, top_key) for d in DETECTED)]


@pytest.mark.parametrize("name,top_key", CROSSED)
def test_weights_under_another_format_s_key_are_refused(name, top_key) -> None:
    """A top-level key says which program wrote the file, and so which statistics convention applies: weights of
    another layout under it are an error naming the file, never loaded under the other format's name."""
    with pytest.raises(CheckpointError, match=rf"^crossed.tar: the {top_key!r} entry .* holds "):
        import_official({top_key: _weights_from_manifest(name), "ep": 1}, "crossed.tar")


def test_a_net_file_without_quantizer_weights_is_not_taken_for_an_autoencoder() -> None:
    weights = {k: v for k, v in _weights_from_manifest("t2m_gpt_vqvae").items() if not k.startswith("quantizer.")}
    with pytest.raises(CheckpointError, match=r"^vq.pth: the 'net' entry .*, but these weights are a continuous "
                                              r"autoencoder \(no quantizer weights\); an FSQ"):
        import_official({"net": weights}, "vq.pth")


def test_a_checkpoint_of_another_kind_is_named_as_such(tmp_path) -> None:
    """The released evaluator, an official generator file, or one of our own other stages, given where a tokenizer
    is expected, is refused as what it is, naming the file."""
    evaluator = str(FIXTURES / "t2m_evaluator" / "finest.tar")
    with pytest.raises(CheckpointError, match=r"t2m_evaluator/finest.tar: an official text/motion evaluator "
                                              r"checkpoint .*not a tokenizer"):
        load_tokenizer(evaluator)
    mardm = str(tmp_path / "mardm_latest.tar")
    save_checkpoint(mardm, {"mardm": {}, "ema_mardm": {}, "ep": 1, "total_it": 2})
    with pytest.raises(CheckpointError, match=r"mardm_latest.tar: an official MARDM checkpoint .*not a tokenizer"):
        load_tokenizer(mardm)
    ours = str(tmp_path / "estimator.tar")
    save_checkpoint(ours, {"stage": "length_estimator", "model_name": "LengthEstimator", "model_args": {},
                           "model": {}})
    with pytest.raises(CheckpointError, match=r"estimator.tar: model_name 'LengthEstimator' is not a registered "
                                              r"tokenizer; its stage is 'length_estimator'"):
        load_tokenizer(ours)


@pytest.mark.parametrize("wrapper", ["module.", "_orig_mod.", "_orig_mod.module."])
def test_our_checkpoint_saved_from_a_wrapped_model_loads(tmp_path, wrapper: str) -> None:
    torch.manual_seed(0)
    model = build_tokenizer("VQVAE", nb_code=16, code_dim=8, width=16, depth=1).eval()
    path = str(tmp_path / "wrapped.tar")
    wrapped = {wrapper + k: v for k, v in model.state_dict().items()}
    save_checkpoint(path, {"stage": "tokenizer", "model_name": "VQVAE", "model_args": model.model_args,
                           "model": wrapped, "ema": wrapped})
    tok = load_tokenizer(path)
    x = torch.randn(2, 8, model.input_width)
    with torch.no_grad():
        assert torch.equal(tok(x), model(x).recon)


def test_a_key_present_with_and_without_a_wrapper_prefix_is_refused() -> None:
    sd = _weights_from_manifest("mardm_ae")
    sd["module.encoder.model.0.bias"] = sd["encoder.model.0.bias"] + 1
    with pytest.raises(CheckpointError, match=r"^ae.tar: 'encoder.model.0.bias' and "
                                              r"'module.encoder.model.0.bias' are the same weight"):
        import_official({"ae": sd}, "ae.tar")


@pytest.mark.parametrize("dropped", ["encoder.model.4.", "encoder.model.2.0."])
def test_an_official_file_missing_an_encoder_layer_names_the_file(dropped) -> None:
    """The output conv, or a down-sampling block before it, missing: a bare KeyError naming a key the file need not
    have ('encoder.model.2.weight') escaped as a traceback."""
    weights = {k: v for k, v in _weights_from_manifest("t2m_gpt_vqvae").items() if not k.startswith(dropped)}
    with pytest.raises(CheckpointError, match=r"^partial.pth: no encoder\.model\.\d\.weight in the state dict: the "
                                              r"encoder's layers \[.*\] are not the 1D-conv backbone's"):
        import_official({"net": weights}, "partial.pth")


@pytest.mark.parametrize("key, value", [("encoder.model.0.weight", "2d"), ("encoder.model.2.0.weight", "1d"),
                                        ("encoder.model.0.weight", "none")])
def test_an_official_file_with_a_conv_weight_of_another_rank_names_the_key(key, value) -> None:
    """A damaged convolution weight (one of another rank, or not a tensor) escaped as an IndexError from the size
    inference; it is a CheckpointError naming the file and the key."""
    weights = _weights_from_manifest("t2m_gpt_vqvae")
    weights[key] = {"2d": weights[key][:, :, 0], "1d": torch.zeros(64), "none": None}[value]
    with pytest.raises(CheckpointError, match=rf"^damaged.pth: {re.escape(key)} is .*; expected a Conv1d weight"):
        import_official({"net": weights}, "damaged.pth")


def test_an_official_file_with_a_key_that_is_not_text_is_named() -> None:
    weights = _weights_from_manifest("t2m_gpt_vqvae")
    weights[3] = torch.zeros(1)
    with pytest.raises(CheckpointError, match=r"^odd.pth: the state dict has a key 3 of type int"):
        import_official({"net": weights}, "odd.pth")


def test_a_momask_file_takes_what_its_opt_txt_says_the_shapes_cannot(tmp_path, caplog) -> None:
    """The dilation growth rate (like the activation and the EMA decay) cannot be read from the weights: a MoMask
    run trained with another one than the default 3 loaded as 3, its reconstructions off, without a word. MoMask's
    opt.txt, beside the file or in the run folder above model/, now says it; a value given by the caller must agree
    with it (tests/test_momask_opt_txt.py)."""
    import logging
    import shutil

    fx = Fixture("momask_rvqvae")
    run = tmp_path / "rvq_d2"
    (run / "model").mkdir(parents=True)
    shutil.copy(fx.checkpoint, run / "model" / "net_best_fid.tar")
    text = (fx.dir / "opt.txt").read_text()
    assert "dilation_growth_rate: 3\n" in text and "vq_act: relu\n" in text
    (run / "opt.txt").write_text(text.replace("dilation_growth_rate: 3\n", "dilation_growth_rate: 2\n")
                                 .replace("vq_act: relu\n", "vq_act: gelu\n"))
    with caplog.at_level(logging.INFO, logger="models.loader"):
        tok = load_tokenizer(str(run / "model" / "net_best_fid.tar"))
    assert tok.model_args["dilation_growth_rate"] == 2 and tok.model_args["activation"] == "gelu"
    assert "dilation_growth_rate=2, activation='gelu', mu=0.99, norm=None, shared_codebook=False from" in caplog.text
    default = load_tokenizer(fx.checkpoint)  # the fixture's own opt.txt says 3, the default
    x = fx.tensor("x")
    with torch.no_grad():
        assert not torch.allclose(tok(x), default(x), atol=1e-4)
    assert load_tokenizer(str(run / "model" / "net_best_fid.tar"),
                          dilation_growth_rate=2).model_args["dilation_growth_rate"] == 2
    (run / "opt.txt").write_text(text.replace("dilation_growth_rate: 3\n", "dilation_growth_rate: two\n"))
    with pytest.raises(CheckpointError, match=r"opt.txt: dilation_growth_rate: cannot read 'two' as int"):
        load_tokenizer(str(run / "model" / "net_best_fid.tar"))
