"""utils.generation: loading a generator run (EMA, tokenizer, text encoder) and generating motion from it.

The runs are built here from untrained tiny models in the checkpoint format ``train_AE.py`` / ``train_MARDM.py`` write
(``utils.tokenizer_stage.dataset_record``, ``utils.generator_stage.generator_checkpoint_meta``), on the synthetic
dataset, with a tiny CLIP text tower from fake weights. ``make_runs`` is shared with test_sample.py and
test_evaluation_MARDM.py.
"""

from __future__ import annotations

import gzip
import math
import os
import shutil

import numpy as np
import pytest
import torch

from models.length_estimator import LengthEstimator
from models.mardm import MARDM_MODELS
from models.text_encoders import CLIP_VOCAB_NAME
from models.tokenizers import build_tokenizer
from utils.checkpoint import CheckpointError, file_sha256, load_checkpoint, save_checkpoint
from utils.dataset_specs import get_dataset_spec
from utils.generation import load_generator
from utils.generator_checkpoints import build_recorded_text_encoder, load_length_estimator, resolve_generator_checkpoint
from utils.generator_stage import TokenizerRef, generator_checkpoint_meta, token_dims
from utils.normalization import load_mean_std
from utils.tokenizer_stage import dataset_record

CLIP_WIDTH, CLIP_CONTEXT, CLIP_EMBED = 32, 16, 16
MINILM_DIM = 384
MERGES = ["w a", "l k</w>", "wa lk</w>", "j u", "m p</w>", "ju mp</w>"]


# ---------------------------------------------------------------------------------------------------------------------
# Tiny runs (shared with the script tests)
# ---------------------------------------------------------------------------------------------------------------------

def write_fake_clip(folder: str) -> str:
    """A 1-layer CLIP text tower with random weights and its BPE vocabulary; returns the weights path."""
    os.makedirs(folder, exist_ok=True)
    g = torch.Generator().manual_seed(0)
    vocab = 512 + len(MERGES) + 2

    def rand(*shape, std=0.05):
        return torch.randn(*shape, generator=g) * std

    w = CLIP_WIDTH
    sd = {"token_embedding.weight": rand(vocab, w, std=0.5), "positional_embedding": rand(CLIP_CONTEXT, w),
          "ln_final.weight": 1 + rand(w), "ln_final.bias": rand(w), "text_projection": rand(w, CLIP_EMBED, std=0.3)}
    p = "transformer.resblocks.0."
    sd.update({p + "attn.in_proj_weight": rand(3 * w, w), p + "attn.in_proj_bias": rand(3 * w),
               p + "attn.out_proj.weight": rand(w, w), p + "attn.out_proj.bias": rand(w),
               p + "ln_1.weight": 1 + rand(w), p + "ln_1.bias": rand(w), p + "ln_2.weight": 1 + rand(w),
               p + "ln_2.bias": rand(w), p + "mlp.c_fc.weight": rand(4 * w, w), p + "mlp.c_fc.bias": rand(4 * w),
               p + "mlp.c_proj.weight": rand(w, 4 * w), p + "mlp.c_proj.bias": rand(w)})
    path = os.path.join(folder, "ViT-tiny.pt")
    save_checkpoint(path, {"state_dict": sd})
    with gzip.open(os.path.join(folder, CLIP_VOCAB_NAME), "wt", encoding="utf-8") as f:
        f.write("#version: 0.2\n" + "\n".join(MERGES) + "\n")
    return path


def save_tokenizer(ckdir: str, data_root: str, run: str, model_name: str, seed: int = 0) -> str:
    """An untrained tokenizer run in train_AE.py's checkpoint format; returns model/net_best_loss.tar."""
    spec = get_dataset_spec("synthetic", data_root)
    mean, std = load_mean_std(spec, data_root)
    torch.manual_seed(seed)
    model = build_tokenizer(model_name, input_width=spec.dim_pose)
    path = os.path.join(ckdir, "synthetic", run, "model", "net_best_loss.tar")
    save_checkpoint(path, {"stage": "tokenizer", "model_name": model_name, "model_args": dict(model.model_args),
                           "model": model.state_dict(), "dataset": dataset_record(spec, mean, std), "config": {},
                           "parent": None, "step": 0})
    return path


def save_generator(ckdir: str, data_root: str, run: str, model_name: str, tokenizer_path: str, clip_path: str,
                   seed: int = 0, ema: bool = True, minilm: bool = False) -> str:
    """An untrained generator run in train_MARDM.py's format (raw weights + a different EMA); returns latest.tar.
    ``minilm``: on the MiniLM sentence encoder (384-dim) instead of the CLIP file ``clip_path``."""
    from models.loader import load_tokenizer

    spec = get_dataset_spec("synthetic", data_root)
    tokenizer = load_tokenizer(tokenizer_path)
    dims = token_dims(tokenizer)
    torch.manual_seed(seed)
    model = MARDM_MODELS[model_name](dims.ae_dim, dims.target_dim, MINILM_DIM if minilm else CLIP_EMBED,
                                     flow_solver="euler", flow_steps=2)
    # adaLN-Zero and the zeroed output layers make an untrained model ignore its text and tokens; fill them.
    with torch.no_grad():
        for value in model.parameters():
            if not value.any():
                value.normal_(std=0.1)
    text_record = ({"name": "minilm", "dim": MINILM_DIM, "path": None} if minilm else
                   {"name": "clip", "dim": CLIP_EMBED, "path": os.path.abspath(clip_path)})
    meta = generator_checkpoint_meta(model_name, dict(model.model_args), spec, tokenizer,
                                     TokenizerRef(tokenizer_path, os.path.basename(os.path.dirname(
                                         os.path.dirname(tokenizer_path)))), text_record, {})
    weights = model.state_dict()
    state = {**meta, "model": weights, "step": 10}
    if ema:
        g = torch.Generator().manual_seed(seed + 1)
        state["ema"] = {k: v + 0.05 * torch.randn(v.shape, generator=g) if v.is_floating_point() else v.clone()
                        for k, v in weights.items()}
    path = os.path.join(ckdir, "synthetic", run, "model", "latest.tar")
    save_checkpoint(path, state)
    return path


def save_length_estimator(ckdir: str, clip_path: str, unit_length: int = 4, dataset: str | None = None) -> str:
    """An untrained estimator at ``<ckdir>/<dataset or synthetic>/length_estimator``; ``dataset`` also records that
    dataset as ``train_length_estimator.py`` does (None: a file without the record)."""
    torch.manual_seed(0)
    model = LengthEstimator(CLIP_EMBED, num_classes=50, hidden_dim=32)
    path = os.path.join(ckdir, dataset or "synthetic", "length_estimator", "model", "latest.tar")
    state = {"stage": "length_estimator", "model_name": "LengthEstimator", "model_args": dict(model.model_args),
             "model": model.state_dict(),
             "text_encoder": {"name": "clip", "dim": CLIP_EMBED, "path": os.path.abspath(clip_path)},
             "unit_length": unit_length}
    if dataset is not None:
        state["dataset"] = {"name": dataset, "spec": get_dataset_spec(dataset).to_dict()}
    save_checkpoint(path, state)
    return path


def make_runs(ckdir: str, data_root: str) -> dict[str, str]:
    """FSQ-MARDM on FSQ_AE_Tiny (run ``fsq_gen``) and MARDM on AE_Tiny (``ae_gen``) under ``ckdir``."""
    clip = write_fake_clip(os.path.join(ckdir, "clip"))
    fsq_tok = save_tokenizer(ckdir, data_root, "fsq_tok", "FSQ_AE_Tiny")
    ae_tok = save_tokenizer(ckdir, data_root, "ae_tok", "AE_Tiny")
    return {"clip": clip, "fsq_tok": fsq_tok, "ae_tok": ae_tok,
            "fsq_gen": save_generator(ckdir, data_root, "fsq_gen", "FSQ-MARDM-SiT-Tiny", fsq_tok, clip),
            "ae_gen": save_generator(ckdir, data_root, "ae_gen", "MARDM-SiT-Tiny", ae_tok, clip, seed=1)}


@pytest.fixture(scope="module")
def runs(tmp_path_factory, synthetic_root):
    ckdir = str(tmp_path_factory.mktemp("runs") / "checkpoints")
    return ckdir, make_runs(ckdir, synthetic_root)


@pytest.fixture(scope="module")
def fsq_gen(runs):
    ckdir, _ = runs
    return load_generator(os.path.join(ckdir, "synthetic", "fsq_gen"))


# ---------------------------------------------------------------------------------------------------------------------
# Loading
# ---------------------------------------------------------------------------------------------------------------------

def test_load_generator_prefers_ema(runs, fsq_gen):
    _, paths = runs
    state = load_checkpoint(paths["fsq_gen"])
    raw = load_generator(paths["fsq_gen"], use_ema=False)
    for name, value in fsq_gen.model.state_dict().items():
        assert torch.equal(value, state["ema"][name]), name
        assert torch.equal(raw.model.state_dict()[name], state["model"][name]), name
    assert not torch.equal(fsq_gen.model.input_process.weight, raw.model.input_process.weight)
    assert fsq_gen.info["weights"] == "ema" and raw.info["weights"] == "model"
    assert fsq_gen.info["checkpoint_sha256"] == file_sha256(paths["fsq_gen"])
    assert fsq_gen.info["tokenizer"]["sha256"] == file_sha256(paths["fsq_tok"])
    assert (fsq_gen.info["target"], fsq_gen.unit_length, fsq_gen.max_frames) == ("fsq_coords", 4, 196)
    assert not fsq_gen.model.training


def test_which_resolves_run_files(runs, tmp_path):
    ckdir, paths = runs
    run = tmp_path / "run"
    (run / "model").mkdir(parents=True)
    shutil.copy(paths["fsq_gen"], run / "model" / "latest.tar")
    assert resolve_generator_checkpoint(str(run)) == str(run / "model" / "latest.tar")
    assert resolve_generator_checkpoint(str(run / "model"), "latest.tar") == str(run / "model" / "latest.tar")
    with pytest.raises(CheckpointError, match=r"net_best_fid\.tar / net_best_loss\.tar.*latest\.tar"):
        resolve_generator_checkpoint(str(run), "best")
    shutil.copy(paths["fsq_gen"], run / "model" / "net_best_loss.tar")
    assert resolve_generator_checkpoint(str(run), "best").endswith("net_best_loss.tar")
    shutil.copy(paths["fsq_gen"], run / "model" / "net_best_fid.tar")
    assert resolve_generator_checkpoint(str(run), "best").endswith("net_best_fid.tar")
    assert resolve_generator_checkpoint(str(run), "net_best_loss").endswith("net_best_loss.tar")


def test_without_ema_falls_back_to_the_model_weights(runs, synthetic_root):
    ckdir, paths = runs
    path = save_generator(ckdir, synthetic_root, "no_ema", "MARDM-SiT-Tiny", paths["ae_tok"], paths["clip"], ema=False)
    gen = load_generator(path)
    assert gen.info["weights"] == "model"
    assert torch.equal(gen.model.input_process.weight, load_checkpoint(path)["model"]["input_process.weight"])


def test_asking_for_another_text_encoder_fails_naming_both(runs):
    _, paths = runs
    with pytest.raises(CheckpointError, match=r"trained with text encoder 'clip', asked for 'minilm'"):
        load_generator(paths["fsq_gen"], text_encoder="minilm")
    assert load_generator(paths["ae_gen"], text_encoder="clip").text_encoder.name == "clip"


def test_missing_or_changed_tokenizer_fails_naming_the_file(runs, tmp_path, synthetic_root):
    ckdir, paths = runs
    other = str(tmp_path / "ckpt")
    tok = save_tokenizer(other, synthetic_root, "tok", "AE_Tiny")
    gen = save_generator(other, synthetic_root, "gen", "MARDM-SiT-Tiny", tok, paths["clip"])
    sha = file_sha256(tok)
    moved = str(tmp_path / "moved.tar")
    shutil.move(tok, moved)
    with pytest.raises(CheckpointError, match="missing") as err:
        load_generator(gen)
    assert tok in str(err.value) and sha in str(err.value)
    assert load_generator(gen, tokenizer_path=moved).info["tokenizer"]["sha256"] == sha

    save_tokenizer(other, synthetic_root, "tok", "AE_Tiny", seed=5)  # same place, other weights
    with pytest.raises(CheckpointError, match="changed since") as err:
        load_generator(gen)
    assert sha in str(err.value) and tok in str(err.value)


def test_a_changed_tokenizer_recorded_by_a_relative_path_is_named_once(runs, tmp_path, synthetic_root, monkeypatch):
    """The recorded relative path and the same file found under the generator's checkpoints folder were listed as
    two changed tokenizers."""
    _, paths = runs
    monkeypatch.chdir(tmp_path)
    tok = save_tokenizer("ckpt", synthetic_root, "tok", "AE_Tiny")
    assert not os.path.isabs(tok)
    gen = save_generator("ckpt", synthetic_root, "gen", "MARDM-SiT-Tiny", tok, paths["clip"])
    save_tokenizer("ckpt", synthetic_root, "tok", "AE_Tiny", seed=5)
    with pytest.raises(CheckpointError, match=r"changed since the generator was trained: [^,]*net_best_loss\.tar "
                                              r"\(sha256 \w+\), recorded sha256") as err:
        load_generator(gen)
    assert "trained further with --is_continue" in str(err.value)


def test_moved_checkpoints_folder_still_finds_its_tokenizer(runs, tmp_path, synthetic_root):
    _, paths = runs
    old = str(tmp_path / "old" / "checkpoints")
    tok = save_tokenizer(old, synthetic_root, "tok", "AE_Tiny")
    save_generator(old, synthetic_root, "gen", "MARDM-SiT-Tiny", tok, paths["clip"])
    new = str(tmp_path / "new" / "checkpoints")
    shutil.move(old, new)
    gen = load_generator(os.path.join(new, "synthetic", "gen"))
    assert gen.info["tokenizer"]["path"] == os.path.join(new, "synthetic", "tok", "model", "net_best_loss.tar")


# ---------------------------------------------------------------------------------------------------------------------
# Generation
# ---------------------------------------------------------------------------------------------------------------------

def test_generate_shapes_and_rounded_lengths(fsq_gen):
    texts = ["a person walks forward", "someone jumps", "a man waves: twice"]
    out = fsq_gen.generate(texts, [17, 8, 500], time_steps=3, seed=0)
    assert out.lengths.tolist() == [16, 8, 196]
    assert out.features.shape == (3, 196, 263) and out.features_normalised.shape == (3, 196, 263)
    assert out.tokens.shape == (3, 49, 3)
    for i, n in enumerate(out.lengths.tolist()):
        assert out.features[i, n:].abs().sum() == 0 and out.features_normalised[i, n:].abs().sum() == 0
        assert out.features[i, :n].abs().sum() > 0
        assert out.joints[i].shape == (n, 22, 3) and np.isfinite(out.joints[i]).all()
    mean, std = torch.as_tensor(fsq_gen.mean), torch.as_tensor(fsq_gen.std)
    torch.testing.assert_close(out.features[0, :16], out.features_normalised[0, :16] * std + mean)
    with pytest.raises(ValueError, match="at least one token"):
        fsq_gen.generate(["too short"], [3])
    with pytest.raises(ValueError, match="2 lengths"):
        fsq_gen.generate(["one caption"], [8, 8])


def test_seed_reproduces_and_changes_the_sample(fsq_gen):
    a = fsq_gen.generate(["a person walks"], [12], time_steps=2, seed=1)
    b = fsq_gen.generate(["a person walks"], [12], time_steps=2, seed=1)
    c = fsq_gen.generate(["a person walks"], [12], time_steps=2, seed=2)
    assert torch.equal(a.features, b.features)
    assert not torch.equal(a.features, c.features)


def test_text_guidance_and_temperature_change_the_motion(fsq_gen):
    def tokens(text="a person walks", **kw):
        return fsq_gen.generate([text], [12], time_steps=2, seed=1, snap=False, **kw).tokens

    base = tokens()
    assert torch.equal(base, tokens())
    for other in (tokens("someone jumps high"), tokens(cfg=1.0), tokens(temperature=0.5)):
        assert not torch.allclose(base, other)


def test_the_diffusion_heads_sampler_is_a_sampling_option(fsq_gen, runs, tmp_path):
    """head_solver / head_steps reach the head (here SiT, euler in 2 steps as built), are recorded only when given,
    are checked before sampling, and sample.py takes them as --head_solver / --head_steps."""
    import sample
    from options.config import parse_with_config
    from options.eval_generator_options import get_sample_parser

    net = fsq_gen.backend.model.head.net
    evals = []
    forward = net.forward
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(net, "forward", lambda x, t, c: evals.append(1) or forward(x, t, c))
        fsq_gen.generate(["a person walks"], [12], time_steps=2, seed=1, head_solver="euler", head_steps=3)
    assert len(evals) == 2 * 3  # 2 generation steps of 3 euler steps (guidance in the same call)
    assert fsq_gen.sampling_settings().to_dict() == {"time_steps": 18, "cfg": 4.5, "temperature": 1.0, "snap": True}
    assert fsq_gen.sampling_settings(head_solver="heun", head_steps=5).to_dict()["head_steps"] == 5
    with pytest.raises(ValueError, match="--head_steps 5, --head_solver dopri5: dopri5 chooses its own steps"):
        fsq_gen.sampling_settings(head_solver="dopri5", head_steps=5)
    manifest = sample.main(parse_with_config(get_sample_parser(), [
        "--name", "fsq_gen", "--dataset_name", "synthetic", "--checkpoints_dir", runs[0],
        "--text_prompt", "a person walks", "--motion_length", "16",
        "--time_steps", "2", "--head_solver", "euler", "--head_steps", "3", "--no_render", "--output_dir",
        str(tmp_path)]))
    assert manifest["runs"][-1]["sampling"]["head_solver"] == "euler"
    assert manifest["runs"][-1]["sampling"]["head_steps"] == 3


@pytest.mark.parametrize("given, message", [
    ({"time_steps": 2.7}, r"time_steps must be a whole number >= 1, got 2\.7"),
    ({"time_steps": 0}, r"time_steps must be a whole number >= 1, got 0"),
    ({"cfg": -1.0}, r"cfg must be a finite number >= 0, got -1\.0"),
    ({"cfg": math.nan}, r"cfg must be a finite number >= 0, got nan"),
    ({"temperature": math.nan}, r"temperature must be a finite number >= 0, got nan"),
])
def test_sampling_settings_given_through_python_are_checked_as_the_flags_are(fsq_gen, given, message):
    """The command line's --time_steps, --cfg and --temperature types refuse these; the Python API does as well,
    rather than truncating 2.7 steps to 2 or sampling with a negative or NaN guidance scale."""
    with pytest.raises(ValueError, match=message):
        fsq_gen.sampling_settings(**given)
    assert fsq_gen.sampling_settings(time_steps=np.int64(3), cfg=0).to_dict()["time_steps"] == 3
    assert type(fsq_gen.sampling_settings(time_steps=3.0).time_steps) is int


def test_snapping_puts_fsq_tokens_on_the_grid_and_can_be_disabled(fsq_gen):
    quantizer = fsq_gen.tokenizer.model.quantizer
    snapped = fsq_gen.generate(["a person walks"] * 2, [16, 8], time_steps=3, seed=4)
    free = fsq_gen.generate(["a person walks"] * 2, [16, 8], time_steps=3, seed=4, snap=False)
    on = snapped.tokens[0]
    assert torch.equal(quantizer.snap_to_grid(on), on)
    for dim, values in enumerate(quantizer.grid_values()):
        assert torch.isin(on[:, dim], values).all()
    assert not torch.equal(quantizer.snap_to_grid(free.tokens[0]), free.tokens[0])
    assert not torch.allclose(snapped.features, free.features)


def test_decoding_does_not_depend_on_the_batch(fsq_gen):
    torch.manual_seed(0)
    tokens = torch.rand(3, 6, 3) * 2 - 1
    lengths = torch.tensor([6, 2, 4])
    batch = fsq_gen.decode(tokens, lengths)
    for i, n in enumerate(lengths.tolist()):
        alone = fsq_gen.decode(tokens[i:i + 1, :n], lengths[i:i + 1])
        torch.testing.assert_close(batch[i, : n * 4], alone[0])
        assert batch[i, n * 4:].abs().sum() == 0


def test_ae_generator_decodes_latents(runs):
    _, paths = runs
    gen = load_generator(paths["ae_gen"])
    out = gen.generate(["a person walks", "a person runs"], torch.tensor([8, 20]), time_steps=2, seed=0)
    assert gen.info["target"] == "latent" and out.tokens.shape == (2, 5, 16)
    assert out.lengths.tolist() == [8, 20] and out.features.shape == (2, 20, 263)
    expected = gen.tokenizer.model.decode_latent(out.tokens[1:2, :5])
    torch.testing.assert_close(out.features_normalised[1], expected[0])


def test_lengths_come_from_the_estimator(runs, tmp_path, synthetic_root):
    ckdir, paths = runs
    gen = load_generator(paths["ae_gen"])
    with pytest.raises(CheckpointError, match="no length estimator found"):
        gen.generate(["a person walks"], None, time_steps=2, seed=0)
    save_length_estimator(ckdir, paths["clip"])
    gen = load_generator(paths["ae_gen"])
    out = gen.generate(["a person walks", "someone jumps", "a person runs"], None, time_steps=2, seed=3)
    assert (out.lengths % 4 == 0).all() and out.lengths.min() >= 4 and out.lengths.max() <= 196
    assert gen._length_text_encoder is gen.text_encoder  # same encoder record: shared
    again = gen.generate(["a person walks", "someone jumps", "a person runs"], None, time_steps=2, seed=3)
    assert torch.equal(out.lengths, again.lengths)
    est = load_length_estimator(os.path.join(ckdir, "synthetic", "length_estimator"))
    assert est.unit_length == 4 and est.text_encoder["name"] == "clip"


def test_an_estimator_on_other_clip_weights_reads_its_own_embeddings(runs, tmp_path):
    """An estimator recorded with another CLIP file of the same width was handed the generator's embeddings, of
    another space, without a word (its lengths then followed the wrong text). It now encodes with its own file."""
    from models.text_encoders import CLIPTextEncoder

    _, paths = runs
    other = write_fake_clip(str(tmp_path / "other_clip"))
    weights = load_checkpoint(other)
    g = torch.Generator().manual_seed(7)
    weights["state_dict"] = {k: v + 0.5 * torch.randn(v.shape, generator=g) for k, v in weights["state_dict"].items()}
    save_checkpoint(other, weights)
    estimator = save_length_estimator(str(tmp_path), other)
    gen = load_generator(paths["ae_gen"], length_estimator=estimator)
    gen.length_estimator()
    texts = ["a person walks", "someone jumps"]
    assert gen._length_text_encoder is not gen.text_encoder
    torch.testing.assert_close(gen._length_text_encoder.encode(texts), CLIPTextEncoder(other).encode(texts))
    assert not torch.allclose(gen._length_text_encoder.encode(texts), gen.text_encoder.encode(texts))
    # The generator's own file reached through a link is the same encoder, shared.
    os.symlink(paths["clip"], tmp_path / "linked.pt")
    gen = load_generator(paths["ae_gen"], length_estimator=save_length_estimator(str(tmp_path / "l"),
                                                                                 str(tmp_path / "linked.pt")))
    gen.length_estimator()
    assert gen._length_text_encoder is gen.text_encoder


def test_text_encoder_path_reaches_a_clip_length_estimator(runs, tmp_path, synthetic_root, caplog):
    """A generator on the sentence encoder with a CLIP length estimator whose weights were moved: the error said to
    pass --text_encoder_path, which only went to the generator (and was ignored there). It now reaches the
    estimator."""
    ckdir, paths = runs
    gen_path = save_generator(str(tmp_path), synthetic_root, "minilm_gen", "MARDM-SiT-Tiny", paths["ae_tok"], "",
                              minilm=True)
    moved = str(tmp_path / "moved" / "ViT-tiny.pt")
    estimator = save_length_estimator(str(tmp_path), moved)
    with pytest.raises(CheckpointError, match=r"CLIP weights not found: .*moved/ViT-tiny.pt \(the file the model "
                                              r"was trained with\); pass text_encoder_path"):
        load_generator(gen_path, length_estimator=estimator).length_estimator()
    with caplog.at_level("WARNING", logger="utils.generation"):
        gen = load_generator(gen_path, length_estimator=estimator, text_encoder_path=paths["clip"])
    assert "takes no weights file; --text_encoder_path" in caplog.text and "only used by a CLIP length" in caplog.text
    assert gen.text_encoder.name == "minilm" and gen.info["text_encoder"]["path"] is None
    out = gen.generate(["a person walks"], None, time_steps=2, seed=0)
    assert out.lengths.shape == (1,) and int(out.lengths[0]) % 4 == 0
    assert gen._length_text_encoder.name == "clip"


def test_an_estimator_of_a_dataset_at_another_frame_rate_is_refused(runs, tmp_path):
    """A length estimator counts frames of its own dataset: KIT-ML's 12.5 fps lengths would give a 20 fps generator
    motions of 5/8 the duration. One of another dataset at the same frame rate is accepted."""
    _, paths = runs
    kit = save_length_estimator(str(tmp_path), paths["clip"], dataset="kit")
    gen = load_generator(paths["ae_gen"], length_estimator=kit)
    with pytest.raises(CheckpointError, match=r"trained on 'kit' at 12.5 fps.*'synthetic' is at 20.0 fps"):
        gen.generate(["a person walks"], None, time_steps=2, seed=0)
    same_rate = save_length_estimator(str(tmp_path), paths["clip"], dataset="t2m")
    out = load_generator(paths["ae_gen"], length_estimator=same_rate).generate(["a person walks"], None,
                                                                               time_steps=2, seed=0)
    assert out.lengths.shape == (1,) and int(out.lengths[0]) % 4 == 0


def test_the_tokenizer_loads_with_the_weights_the_generator_was_trained_on(tmp_path, synthetic_root):
    """A generator records whether it was trained on its tokenizer's EMA weights; files from before that record
    were trained on the raw ones, and load them."""
    ckdir = str(tmp_path / "checkpoints")
    clip = write_fake_clip(os.path.join(ckdir, "clip"))
    tok = save_tokenizer(ckdir, synthetic_root, "tok", "FSQ_AE_Tiny")
    state = load_checkpoint(tok)
    state["ema"] = {k: v + 0.01 if v.is_floating_point() else v for k, v in state["model"].items()}
    save_checkpoint(tok, state)
    gen = save_generator(ckdir, synthetic_root, "gen", "FSQ-MARDM-SiT-Tiny", tok, clip)
    assert load_checkpoint(gen)["tokenizer"]["weights"] == "ema"
    assert load_generator(gen).tokenizer.weights == "ema"
    older = load_checkpoint(gen)
    del older["tokenizer"]["weights"]
    save_checkpoint(gen, older)
    assert load_generator(gen).tokenizer.weights == "model"


def test_a_file_of_another_stage_is_named_as_such(runs):
    _, paths = runs
    with pytest.raises(CheckpointError, match=r"stage is 'tokenizer', expected 'generator' \(a generator"):
        load_generator(paths["fsq_tok"])
    with pytest.raises(CheckpointError, match=r"stage is 'generator', expected 'length_estimator'"):
        load_length_estimator(paths["fsq_gen"])


def test_a_replaced_tokenizer_of_another_model_names_the_generators_record(runs):
    _, paths = runs
    with pytest.raises(CheckpointError, match="holds 'AE_Tiny' but the generator's recorded tokenizer model is "
                                              "'FSQ_AE_Tiny'"):
        load_generator(paths["fsq_gen"], tokenizer_path=paths["ae_tok"])


def test_missing_clip_weights_are_named_by_where_the_path_came_from(tmp_path):
    record = {"name": "clip", "dim": CLIP_EMBED, "path": str(tmp_path / "trained_with" / "ViT-B-32.pt")}
    with pytest.raises(CheckpointError, match=r"gen.tar: CLIP weights not found: .*trained_with/ViT-B-32.pt \(the "
                                              r"file the model was trained with\); pass text_encoder_path="):
        build_recorded_text_encoder(record, "gen.tar")
    with pytest.raises(CheckpointError, match=r"gen.tar: CLIP weights not found: .*elsewhere.pt \(given as "
                                              r"text_encoder_path"):
        build_recorded_text_encoder(record, "gen.tar", weights_path=str(tmp_path / "elsewhere.pt"))
