"""Contracts of the tokenizer loader (models/loader.py), the generator-checkpoint helpers
(utils/generator_checkpoints.py) and the entry checks of every loader of our own checkpoints, on tiny files written in
tmp folders."""

from __future__ import annotations

import logging
import os
import re

import numpy as np
import pytest
import torch
from test_generation import CLIP_EMBED, save_length_estimator, write_fake_clip

import utils.generator_checkpoints as gc
from models import load_tokenizer
from models.length_estimator import LengthEstimator
from models.loader import import_official
from models.text_encoders import CachedTextEncoder, TextEncoder, build_text_encoder
from models.tokenizers import build_tokenizer
from utils.checkpoint import CheckpointError, file_sha256, load_checkpoint, save_checkpoint
from utils.checkpoint_users import kept_copy_path
from utils.dataset_specs import DATASETS
from utils.evaluator import build_evaluator, load_evaluator, save_evaluator
from utils.generation import load_generator
from utils.generator_checkpoints import (
    build_recorded_text_encoder,
    checkpoints_roots,
    estimator_text_encoder,
    load_length_estimator,
    require_stage,
    resolve_generator_checkpoint,
    resolve_length_estimator_checkpoint,
    resolve_tokenizer_file,
)

# ----------------------------------------------------------------------------------------------------------------------
# load_tokenizer on our checkpoints


def _our_file(tmp_path, name: str = "VQVAE_Tiny", **extra) -> tuple[str, torch.nn.Module]:
    torch.manual_seed(0)
    model = build_tokenizer(name).eval()
    path = str(tmp_path / f"{name}.tar")
    save_checkpoint(path, {"stage": "tokenizer", "model_name": name, "model_args": dict(model.model_args),
                           "model": model.state_dict(), **extra})
    return path, model


def _shifted(sd: dict[str, torch.Tensor], by: float) -> dict[str, torch.Tensor]:
    return {k: v + by if v.is_floating_point() else v.clone() for k, v in sd.items()}


def test_statistics_format_is_the_parent_runs_official_format(tmp_path):
    """An imported run (``parent.format``) keeps the official statistics convention; a plain run says 'ours'."""
    imported, _ = _our_file(tmp_path, parent={"format": "momask", "path": "x.tar"})
    tok = load_tokenizer(imported)
    assert (tok.source_format, tok.parent_format, tok.statistics_format) == ("ours", "momask", "momask")
    plain, _ = _our_file(tmp_path / "..", name="AE_Tiny")
    tok = load_tokenizer(plain)
    assert (tok.parent_format, tok.statistics_format) == (None, "ours")


def test_num_quantizers_is_one_for_a_single_codebook_tokenizer(tmp_path):
    """A VQ tokenizer reports Q = 1; an RVQ its layer count."""
    path, _ = _our_file(tmp_path, "VQVAE_Tiny")
    assert load_tokenizer(path).num_quantizers == 1
    path, model = _our_file(tmp_path, "RVQVAE_Tiny")
    assert load_tokenizer(path).num_quantizers == model.num_quantizers > 1


def test_ema_weights_are_loaded_unless_use_ema_is_false(tmp_path):
    """With an ``ema`` entry the EMA weights are the ones loaded (weights='ema'); use_ema=False loads ``model``."""
    torch.manual_seed(0)
    model = build_tokenizer("AE_Tiny").eval()
    ema = _shifted(model.state_dict(), 0.25)
    path = str(tmp_path / "ema.tar")
    save_checkpoint(path, {"stage": "tokenizer", "model_name": "AE_Tiny", "model_args": dict(model.model_args),
                           "model": model.state_dict(), "ema": ema})
    key = "encoder.model.0.weight"
    tok = load_tokenizer(path)
    assert tok.weights == "ema" and torch.equal(tok.model.state_dict()[key], ema[key])
    raw = load_tokenizer(path, use_ema=False)
    assert raw.weights == "model" and torch.equal(raw.model.state_dict()[key], model.state_dict()[key])
    no_ema, _ = _our_file(tmp_path, "AE_Tiny")
    assert load_tokenizer(no_ema).weights == "model"


def test_cond_drop_prob_is_read_only_for_conditional_runs(tmp_path):
    """``config.cond_drop_prob`` is the tokenizer's condition dropout only when the run has conditions."""
    cond, _ = _our_file(tmp_path, conditions={"style": 4}, config={"cond_drop_prob": 0.3})
    assert load_tokenizer(cond).cond_drop_prob == pytest.approx(0.3)
    (tmp_path / "b").mkdir()
    plain, _ = _our_file(tmp_path / "b", config={"cond_drop_prob": 0.3})
    assert load_tokenizer(plain).cond_drop_prob == 0.0


@pytest.mark.parametrize("stage,name,match", [
    ("generator", "FSQ-MARDM-SiT-Tiny", r"model_name 'FSQ-MARDM-SiT-Tiny' is not a registered tokenizer; its stage is "
                                        r"'generator'"),
    ("tokenizer", "NoSuchVQ", r"model_name 'NoSuchVQ' is not a registered tokenizer \(\[.*'VQVAE_Tiny'")])
def test_a_file_that_is_no_registered_tokenizer_is_refused_naming_why(tmp_path, stage, name, match):
    """A generator checkpoint is refused as a file of another stage, not as an unknown tokenizer; a tokenizer file
    whose model_name is not registered names the name and lists the registry."""
    path = str(tmp_path / "odd.tar")
    save_checkpoint(path, {"stage": stage, "model_name": name, "model_args": {}, "model": {}})
    with pytest.raises(CheckpointError, match=rf"odd.tar: {match}"):
        load_tokenizer(path)


def test_weights_missing_from_our_file_are_refused(tmp_path):
    """A state dict lacking a weight does not load silently with random values."""
    torch.manual_seed(0)
    model = build_tokenizer("AE_Tiny")
    sd = model.state_dict()
    sd.pop("decoder.model.0.bias")
    path = str(tmp_path / "partial.tar")
    save_checkpoint(path, {"stage": "tokenizer", "model_name": "AE_Tiny", "model_args": dict(model.model_args),
                           "model": sd})
    with pytest.raises(CheckpointError, match=r"(?s)partial.tar: weights do not fit AE: .*decoder.model.0.bias"):
        load_tokenizer(path)


# ----------------------------------------------------------------------------------------------------------------------
# official layouts


def _official(name: str, prefix: str = "", **overrides) -> tuple[dict[str, torch.Tensor], torch.nn.Module]:
    torch.manual_seed(1)
    model = build_tokenizer(name, **overrides).train()
    model(torch.randn(2, 4 * model.unit_length, model.input_width))  # fills the codebooks
    model.eval()
    sd = {prefix + k: v for k, v in model.state_dict().items() if not k.endswith(("code_sum", "code_count", "initted"))}
    return sd, model


def test_a_net_file_with_unknown_quantizer_keys_names_them():
    """Quantizer weights of no known layout are reported by name, not taken for an autoencoder."""
    sd, _ = _official("VQVAE", "vqvae.", nb_code=16, code_dim=8, width=16, depth=1)
    sd["vqvae.quantizer.weird"] = sd.pop("vqvae.quantizer.codebook")
    with pytest.raises(CheckpointError, match=r"^odd.pth: unrecognised quantizer keys \['quantizer.weird'\]"):
        import_official({"net": sd}, "odd.pth")


def test_an_empty_weights_entry_is_named_as_such():
    with pytest.raises(CheckpointError, match=r"^empty.pth: the weights entry is not a non-empty state dict"):
        import_official({"net": {}, "ep": 1}, "empty.pth")


@pytest.mark.parametrize(("key", "asked", "saved"), [("nb_code", 32, 16), ("depth", 3, 1)])
def test_a_size_contradicting_the_weights_names_both(key, asked, saved):
    """nb_code or depth asked for that the weights' shapes contradict is named with both values."""
    sd, _ = _official("VQVAE", "vqvae.", nb_code=16, code_dim=8, width=16, depth=1)
    with pytest.raises(CheckpointError, match=rf"^v.pth: {key}={asked} was requested but the weights say {saved}$"):
        import_official({"net": sd}, "v.pth", **{key: asked})


def test_an_orig_quantizer_request_on_an_ema_codebook_is_refused():
    sd, _ = _official("VQVAE", "vqvae.", nb_code=16, code_dim=8, width=16, depth=1)
    with pytest.raises(CheckpointError, match=r"^v.pth: quantizer_type='orig' needs quantizer.embedding.weight"):
        import_official({"net": sd}, "v.pth", quantizer_type="orig")


def test_a_norm_request_on_weights_without_norm_layers_is_refused():
    sd, _ = _official("VQVAE", "vqvae.", nb_code=16, code_dim=8, width=16, depth=1)
    with pytest.raises(CheckpointError, match=r"^v.pth: norm='LN' was requested but the weights have no "
                                              r"normalisation layers"):
        import_official({"net": sd}, "v.pth", norm="LN")


def test_a_requested_dropout_is_kept_in_the_imported_args():
    """Settings the shapes do not fix (dropout) are taken from the caller over the format's default."""
    sd, _ = _official("AE_Model", input_width=64, output_emb_width=8, width=16)
    imported = import_official({"ae": sd}, "ae.tar", dropout=0.05)
    assert imported.model_args["dropout"] == 0.05
    assert import_official({"ae": sd}, "ae.tar").model_args["dropout"] == 0.2


def test_a_single_layer_rvq_is_not_a_shared_codebook():
    sd, _ = _official("RVQVAE", nb_code=16, code_dim=8, width=16, num_quantizers=1)
    assert import_official({"vq_model": sd}, "r.tar").model_args["shared_codebook"] is False


# ----------------------------------------------------------------------------------------------------------------------
# generator checkpoints: finding files


def test_a_run_folder_without_model_subfolder_is_searched_itself(tmp_path):
    (tmp_path / "latest.tar").write_bytes(b"x")
    assert resolve_generator_checkpoint(str(tmp_path)) == str(tmp_path / "latest.tar")


def test_a_missing_run_is_named_as_neither_file_nor_folder(tmp_path):
    missing = str(tmp_path / "nope")
    with pytest.raises(CheckpointError, match=r"generator checkpoint not found: .*nope is neither a file nor a run "
                                              r"folder"):
        resolve_generator_checkpoint(missing)


def test_checkpoints_roots_lists_each_root_once(tmp_path):
    path = tmp_path / "ck" / "ds" / "run" / "model" / "latest.tar"
    path.parent.mkdir(parents=True)
    path.write_bytes(b"x")
    assert checkpoints_roots(str(path)) == [str(tmp_path / "ck")]
    assert checkpoints_roots(str(tmp_path / "loose.tar")) == []


def test_the_best_length_estimator_file_comes_before_latest(tmp_path):
    model = tmp_path / "est" / "model"
    model.mkdir(parents=True)
    for name in ("latest.tar", "finest.tar", "net_best_loss.tar"):
        (model / name).write_bytes(b"x")
    assert resolve_length_estimator_checkpoint(str(tmp_path / "est")) == str(model / "net_best_loss.tar")
    os.remove(model / "net_best_loss.tar")
    assert resolve_length_estimator_checkpoint(str(tmp_path / "est")) == str(model / "finest.tar")


def test_require_stage_refuses_a_file_without_stage(tmp_path):
    with pytest.raises(CheckpointError, match=r"f.tar: stage is None, expected 'length_estimator'"):
        require_stage({"model": {}}, "f.tar", "length_estimator", "train_length_estimator.py")


# ----------------------------------------------------------------------------------------------------------------------
# generator checkpoints: the tokenizer file


def _file(path, data: bytes) -> str:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)
    return str(path)


def test_an_override_tokenizer_returns_its_own_hash_and_warns(tmp_path, caplog):
    recorded = _file(tmp_path / "tok.tar", b"trained on")
    other = _file(tmp_path / "other.tar", b"another one")
    record = {"path": recorded, "sha256": file_sha256(recorded)}
    with caplog.at_level(logging.WARNING, logger="utils.generator_checkpoints"):
        assert resolve_tokenizer_file(record, "gen.tar", other) == (other, file_sha256(other))
    assert "instead of the one the generator was trained on" in caplog.text


def test_a_missing_override_tokenizer_is_named(tmp_path):
    with pytest.raises(CheckpointError, match=r"tokenizer_path: tokenizer checkpoint not found: .*gone.tar"):
        resolve_tokenizer_file({"path": None, "sha256": None}, "gen.tar", str(tmp_path / "gone.tar"))


def test_a_record_without_hash_loads_the_recorded_file(tmp_path):
    recorded = _file(tmp_path / "tok.tar", b"weights")
    assert resolve_tokenizer_file({"path": recorded, "sha256": None}, "gen.tar", None) == (
        recorded, file_sha256(recorded))


def test_a_changed_tokenizer_falls_back_to_its_kept_version(tmp_path):
    recorded = _file(tmp_path / "ck" / "ds" / "tok" / "model" / "latest.tar", b"version one")
    sha = file_sha256(recorded)
    kept = _file(kept_copy_path(recorded, sha), b"version one")
    _file(recorded, b"version two")
    assert resolve_tokenizer_file({"path": recorded, "sha256": sha}, "gen.tar", None) == (kept, sha)


def test_a_recorded_path_outside_a_run_layout_is_not_looked_for_under_the_generators_root(tmp_path):
    """Only a ``.../model/<file>`` path is looked up again under the generator's checkpoints folder."""
    gen = _file(tmp_path / "ck" / "ds" / "gen" / "model" / "latest.tar", b"g")
    lookalike = _file(tmp_path / "ck" / "a" / "b" / "c" / "tok.tar", b"tok")
    record = {"path": str(tmp_path / "gone" / "a" / "b" / "c" / "tok.tar"), "sha256": file_sha256(lookalike)}
    with pytest.raises(CheckpointError, match=r"the tokenizer the generator was trained on is missing"):
        resolve_tokenizer_file(record, gen, None)


# ----------------------------------------------------------------------------------------------------------------------
# generator checkpoints: text encoders


@pytest.fixture(scope="module")
def clip_files(tmp_path_factory):
    root = tmp_path_factory.mktemp("clip")
    first = write_fake_clip(str(root / "a"))
    second = write_fake_clip(str(root / "b"))
    return first, second


def test_a_text_encoder_of_another_width_than_recorded_is_refused(clip_files):
    record = {"name": "clip", "dim": CLIP_EMBED + 1, "path": clip_files[0]}
    with pytest.raises(CheckpointError, match=rf"gen.tar: text encoder 'clip' gives {CLIP_EMBED}-dim embeddings, the "
                                              rf"model was trained on {CLIP_EMBED + 1}-dim ones"):
        build_recorded_text_encoder(record, "gen.tar")


@pytest.mark.parametrize("dim", ["wide", [CLIP_EMBED]])
def test_a_recorded_text_encoder_width_that_is_not_a_number_is_a_checkpoint_error(clip_files, dim):
    """A damaged ``dim`` in the text_encoder record is a CheckpointError naming the file and the value."""
    record = {"name": "clip", "dim": dim, "path": clip_files[0]}
    with pytest.raises(CheckpointError, match=rf"gen.tar: text_encoder record .*dim must be a whole number, got "
                                              rf"{re.escape(repr(dim))}"):
        build_recorded_text_encoder(record, "gen.tar")


def _encoder(path: str) -> CachedTextEncoder:
    return CachedTextEncoder(build_text_encoder("clip", weights_path=path))


def test_an_estimator_on_the_same_clip_file_shares_the_generators_encoder(clip_files):
    first, _ = clip_files
    enc = _encoder(first)
    record = {"name": "clip", "dim": CLIP_EMBED, "path": first}
    assert estimator_text_encoder(record, "est.tar", enc, first, None, "cpu") is enc
    # --text_encoder_path replaces both recorded files: one encoder serves both
    assert estimator_text_encoder(record, "est.tar", enc, first, first, "cpu") is enc


def test_an_estimator_on_another_clip_file_or_width_gets_its_own_encoder(clip_files):
    first, second = clip_files
    enc = _encoder(first)
    other = estimator_text_encoder({"name": "clip", "dim": CLIP_EMBED, "path": second}, "est.tar", enc, first,
                                   None, "cpu")
    assert other is not enc and other.name == "clip"
    with pytest.raises(CheckpointError, match=r"est.tar: text encoder 'clip' gives"):
        estimator_text_encoder({"name": "clip", "dim": CLIP_EMBED * 2, "path": first}, "est.tar", enc, first, None,
                               "cpu")


def test_same_clip_file_reached_through_a_link_is_shared(clip_files, tmp_path):
    first, _ = clip_files
    link = tmp_path / "link.pt"
    link.symlink_to(first)
    enc = _encoder(first)
    record = {"name": "clip", "dim": CLIP_EMBED, "path": str(link)}
    assert estimator_text_encoder(record, "est.tar", enc, first, None, "cpu") is enc


def test_a_missing_recorded_clip_file_is_never_taken_for_the_generators(clip_files, tmp_path):
    """Two missing CLIP paths are the same file only when their real paths are; else the estimator's own is built
    (and its missing weights named)."""
    first, _ = clip_files
    enc = _encoder(first)
    record = {"name": "clip", "dim": CLIP_EMBED, "path": str(tmp_path / "gone.pt")}
    with pytest.raises(CheckpointError, match=r"est.tar: CLIP weights not found: .*gone.pt"):
        estimator_text_encoder(record, "est.tar", enc, str(tmp_path / "also_gone.pt"), None, "cpu")
    with pytest.raises(CheckpointError, match=r"est.tar: CLIP weights not found: .*gone.pt"):
        estimator_text_encoder(record, "est.tar", enc, None, None, "cpu")


# ----------------------------------------------------------------------------------------------------------------------
# length estimator


def test_the_length_estimator_loads_its_ema_weights_in_eval_mode_with_its_dataset(clip_files, tmp_path):
    path = save_length_estimator(str(tmp_path), clip_files[0], unit_length=4, dataset="t2m")
    state = torch.load(path, weights_only=True)
    state["ema"] = _shifted(state["model"], 0.5)
    save_checkpoint(path, state)
    est = load_length_estimator(path)
    assert not est.model.training and est.unit_length == 4 and est.dataset["name"] == "t2m"
    for key, value in est.model.state_dict().items():
        assert torch.equal(value, state["ema"][key]), key


def test_a_length_estimator_without_its_text_encoder_record_is_refused(tmp_path):
    model = LengthEstimator(CLIP_EMBED, num_classes=10, hidden_dim=16)
    path = str(tmp_path / "est.tar")
    save_checkpoint(path, {"stage": "length_estimator", "model_args": dict(model.model_args),
                           "model": model.state_dict(), "unit_length": 4})
    with pytest.raises(CheckpointError, match=r"est.tar: missing keys \['text_encoder'\]"):
        load_length_estimator(path)


def test_a_length_estimator_with_sizes_the_constructor_refuses_is_named(tmp_path):
    model = LengthEstimator(CLIP_EMBED, num_classes=10, hidden_dim=16)
    path = str(tmp_path / "est.tar")
    save_checkpoint(path, {"stage": "length_estimator", "model_args": {**model.model_args, "hidden_dim": 2},
                           "model": model.state_dict(), "unit_length": 4,
                           "text_encoder": {"name": "clip", "dim": CLIP_EMBED, "path": None}})
    with pytest.raises(CheckpointError, match=r"est.tar: cannot rebuild LengthEstimator from model_args .*hidden_dim"):
        load_length_estimator(path)


def test_a_file_without_down_sampling_blocks_imports_with_the_default_depth():
    """A backbone with down_t=0 has no residual blocks to count; the import keeps the default depth 3 and loads."""
    sd, model = _official("VQVAE", "vqvae.", nb_code=16, code_dim=8, width=16, down_t=0)
    imported = import_official({"net": sd}, "flat.pth")
    assert (imported.model_args["down_t"], imported.model_args["depth"]) == (0, 3)


def test_levels_for_an_autoencoder_file_are_named_as_an_argument_it_does_not_take():
    """FSQ levels given for a MARDM 'ae' file are refused as an unknown AE argument, not read as an FSQ layout."""
    sd, _ = _official("AE_Model", input_width=64, output_emb_width=8, width=16)
    with pytest.raises(CheckpointError, match=r"^ae.tar: cannot build AE_Model from the checkpoint: .*no arguments "
                                              r"\['levels'\]"):
        import_official({"ae": sd}, "ae.tar", levels=[5, 5])


def test_a_text_encoder_path_makes_the_estimator_share_the_generators_clip(clip_files):
    """``--text_encoder_path`` replaces the recorded CLIP file of both models: an estimator recorded on another
    file then reads the generator's own encoder."""
    first, second = clip_files
    enc = _encoder(first)
    record = {"name": "clip", "dim": CLIP_EMBED, "path": second}
    assert estimator_text_encoder(record, "est.tar", enc, first, first, "cpu") is enc


def test_a_clip_path_used_by_the_generator_is_not_reported_ignored_for_a_minilm_estimator(clip_files, monkeypatch,
                                                                                             caplog):
    """With a CLIP generator and a MiniLM estimator, ``--text_encoder_path`` serves the generator: the estimator's
    encoder is built without a weights file and no 'ignoring' warning is logged."""

    class Stub(TextEncoder):
        name, dim = "minilm", 4

    built = []
    monkeypatch.setattr(gc, "build_text_encoder", lambda name, **kw: built.append((name, kw)) or Stub())
    first, _ = clip_files
    with caplog.at_level(logging.WARNING, logger="utils.generator_checkpoints"):
        out = estimator_text_encoder({"name": "minilm", "dim": 4, "path": None}, "est.tar", _encoder(first), first,
                                     first, "cpu")
    assert out.name == "minilm" and built == [("minilm", {"device": "cpu"})]
    assert "ignoring" not in caplog.text and "ignored" not in caplog.text


# ----------------------------------------------------------------------------------------------------------------------
# damaged entries of our own checkpoints


@pytest.mark.parametrize("entry,value,shown", [("model", None, "NoneType None; expected dict"),
                                               ("ema", [1, 2], r"list \[1, 2\]; expected dict or None"),
                                               ("model_args", [1, 2], r"list \[1, 2\]; expected dict or None")])
def test_a_tokenizer_entry_of_the_wrong_type_is_refused_naming_the_file_and_entry(tmp_path, entry, value, shown):
    """A tokenizer file whose weights (``model``, ``ema``) or ``model_args`` are not dicts is a CheckpointError
    naming the file, the entry, what it holds and what was expected, not an AttributeError or TypeError."""
    path, _ = _our_file(tmp_path, **{entry: value})
    with pytest.raises(CheckpointError, match=rf"VQVAE_Tiny\.tar: entry '{entry}' is {shown}"):
        load_tokenizer(path)


@pytest.mark.parametrize("key,value,expected", [("text_encoder", None, "dict"), ("unit_length", None, "int"),
                                                ("dataset", [1], "dict or None"), ("model_args", "x", "dict")])
def test_a_length_estimator_entry_of_the_wrong_type_is_refused_naming_the_file_and_entry(tmp_path, key, value,
                                                                                          expected):
    """A length-estimator file whose ``text_encoder``, ``unit_length``, ``dataset`` or ``model_args`` has the wrong
    type is a CheckpointError naming the file, the entry and the expected type."""
    model = LengthEstimator(16, num_classes=10, hidden_dim=16)
    state = {"stage": "length_estimator", "model_args": dict(model.model_args), "model": model.state_dict(),
             "text_encoder": {"name": "clip", "dim": 16, "path": None}, "unit_length": 4, key: value}
    path = str(tmp_path / "est.tar")
    save_checkpoint(path, state)
    with pytest.raises(CheckpointError, match=rf"est\.tar: entry '{key}' is .*; expected {expected}$"):
        load_length_estimator(path)


@pytest.mark.parametrize("key,value", [("model_args", [1]), ("dataset", "t2m"), ("target", None), ("ema", 3)])
def test_a_generator_entry_of_the_wrong_type_is_refused_naming_the_file_and_entry(tmp_path, key, value):
    """A generator file whose records have the wrong type is refused naming the file and the entry before anything
    reads them."""
    state = {"stage": "generator", "model_name": "MARDM-DDPM-Tiny", "model_args": {}, "model": {}, "dataset": {},
             "tokenizer": {}, "text_encoder": {}, "target": "latents", key: value}
    path = str(tmp_path / "gen.tar")
    save_checkpoint(path, state)
    with pytest.raises(CheckpointError, match=rf"gen\.tar: entry '{key}' is {type(value).__name__} "):
        load_generator(path)


def test_an_evaluator_whose_model_args_is_not_a_dict_is_refused_naming_the_file(tmp_path):
    """An evaluator written by train_evaluator.py whose ``model_args`` was damaged into a list is a CheckpointError
    naming the file and the entry."""
    dim_pose = DATASETS["t2m"].dim_pose
    path = str(tmp_path / "finest.tar")
    save_evaluator(path, build_evaluator("t2m", np.zeros(dim_pose), np.ones(dim_pose), dim_word=12, sizes="tiny"))
    state = load_checkpoint(path)
    state["model_args"] = list(state["model_args"])
    save_checkpoint(path, state)
    with pytest.raises(CheckpointError, match=r"finest\.tar: the evaluator checkpoint's 'model_args' record is list; "
                                              r"expected a dict$"):
        load_evaluator(path, "t2m")
