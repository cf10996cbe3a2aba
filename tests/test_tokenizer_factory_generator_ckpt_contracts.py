"""Contracts of the tokenizer constructors and registry (models/tokenizers.py) and of finding and opening a generator
run's files (utils/generator_checkpoints.py), on tiny models and files written in tmp folders."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from test_generation import CLIP_EMBED, write_fake_clip

from models.length_estimator import LengthEstimator
from models.lfq import LFQ
from models.part_aware import PART_AWARE_MODELS
from models.quantizers import QuantizeEMA, QuantizeEMAReset, QuantizeOrig, QuantizeReset
from models.text_encoders import CachedTextEncoder, build_text_encoder
from models.tokenizers import AE_MODELS, TOKENIZERS, VQ_MODELS, build_tokenizer
from utils.checkpoint import CheckpointError, file_sha256, save_checkpoint
from utils.generator_checkpoints import (
    build_recorded_text_encoder,
    checkpoints_roots,
    estimator_text_encoder,
    load_length_estimator,
    require_stage,
    resolve_generator_checkpoint,
    resolve_length_estimator_checkpoint,
    resolve_run,
    resolve_tokenizer_file,
)

TINY = dict(width=8, depth=1)


def _motion(model, frames: int, batch: int = 2) -> torch.Tensor:
    torch.manual_seed(0)
    return torch.randn(batch, frames, model.input_width)


# ----------------------------------------------------------------------------------------------------------------------
# building tokenizers


@pytest.mark.parametrize("name", ["AE_Tiny", "FSQ_AE_Tiny", "LFQ_AE_Tiny", "VQ_AE_Tiny", "VQVAE_Tiny", "RVQVAE_Tiny"])
def test_model_args_rebuild_the_same_model(name):
    """``model_args`` holds only the constructor's keywords, as plain values, and rebuilds a model of the same
    weights layout."""
    model = build_tokenizer(name)
    args = model.model_args
    assert "self" not in args and "__class__" not in args
    assert all(not isinstance(v, tuple) for v in args.values())
    again = build_tokenizer(name, **args)
    assert again.model_args == args
    assert {k: v.shape for k, v in again.state_dict().items()} == {k: v.shape for k, v in model.state_dict().items()}


def test_fsq_levels_given_as_an_array_are_recorded_as_python_ints():
    """FSQ levels from numpy are stored in ``model_args`` as a list of plain ints (a checkpoint must pickle them)."""
    model = build_tokenizer("FSQ_AE_Tiny", levels=np.array([7, 5, 3]))
    assert model.model_args["levels"] == [7, 5, 3]
    assert all(type(level) is int for level in model.model_args["levels"])
    assert model.codebook_size == 105


@pytest.mark.parametrize("key,arg", [("width", "width"), ("latent_dim", "output_emb_width")])
@pytest.mark.parametrize("value", [0, -1])
def test_an_empty_backbone_is_refused_naming_the_size(key, arg, value):
    """A width or latent size below 1 is a ValueError naming the model, the size and the value."""
    with pytest.raises(ValueError, match=rf"AE: {key} must be >= 1, got {value}"):
        build_tokenizer("AE_Tiny", **{arg: value})


@pytest.mark.parametrize("down_t,stride_t,unit", [(3, 2, 8), (1, 4, 4), (2, 4, 16), (0, 2, 1)])
def test_unit_length_is_the_stride_to_the_power_of_the_downsampling_blocks(down_t, stride_t, unit):
    """``unit_length = stride_t ** down_t`` and the model maps T = unit_length frames to one token."""
    model = build_tokenizer("AE_Tiny", down_t=down_t, stride_t=stride_t, **TINY).eval()
    assert model.unit_length == unit
    assert model.encode(_motion(model, unit)).shape[1] == 1


@pytest.mark.parametrize("shape", [(2, 8, 68), (2, 8, 66), (8, 67), (1, 2, 8, 67)])
def test_motion_of_the_wrong_shape_is_refused_naming_the_expected_shape(shape):
    """Motion that is not ``(B, T, input_width)`` is a ValueError naming the expected and the given shape."""
    model = build_tokenizer("AE_Tiny", **TINY)
    with pytest.raises(ValueError, match=rf"AE: expected motion of shape \(B, T, 67\), got \({shape[0]}, "):
        model.encode(torch.zeros(shape))


@pytest.mark.parametrize("frames", [0, 2, 6, 10])
def test_frames_that_are_not_a_positive_multiple_of_the_unit_length_are_refused(frames):
    """T must be a positive multiple of the downsampling factor; the message names T and the factor."""
    model = build_tokenizer("AE_Tiny", **TINY)
    with pytest.raises(ValueError, match=rf"T={frames} frames is not a positive multiple of the downsampling factor 4"):
        model.encode(torch.zeros(1, frames, 67))


def test_one_unit_of_frames_gives_one_token():
    """T equal to the downsampling factor is accepted and encodes to a single token."""
    model = build_tokenizer("VQVAE_Tiny", **TINY).eval()
    assert model.encode(_motion(model, 4)).shape == (2, 1)


def test_float64_motion_and_latents_are_refused_naming_the_input():
    """Double-precision motion or latents for a float32 model are a TypeError naming the input, before any conv."""
    model = build_tokenizer("AE_Tiny", **TINY)
    with pytest.raises(TypeError, match=r"AE: motion is torch.float64 but the model's weights are torch.float32"):
        model.encode(torch.zeros(1, 4, 67, dtype=torch.float64))
    with pytest.raises(TypeError, match=r"AE: latents is torch.float64 but the model's weights are torch.float32"):
        model.decode(torch.zeros(1, 1, 16, dtype=torch.float64))


@pytest.mark.parametrize("shape", [(1, 2, 17), (1, 2, 15), (2, 16), (1, 1, 2, 16)])
def test_latents_of_the_wrong_shape_are_refused_naming_the_latent_size(shape):
    """Latents that are not ``(B, N, latent_dim)`` are a ValueError naming the expected width."""
    model = build_tokenizer("AE_Tiny", **TINY)
    with pytest.raises(ValueError, match=r"AE: expected latents of shape \(B, N, 16\), got"):
        model.decode(torch.zeros(shape))


def test_the_autoencoder_has_no_auxiliary_loss_or_perplexity():
    """The continuous AE's forward returns zero aux loss and perplexity and its latents."""
    model = build_tokenizer("AE_Tiny", **TINY).eval()
    out = model(_motion(model, 8))
    assert out.aux_loss.item() == 0.0 and out.perplexity.item() == 0.0
    assert out.indices_or_latents.shape == (2, 2, 16)


def test_a_quantized_forward_reports_the_quantizers_loss_and_perplexity_in_their_places():
    """``forward`` returns the quantizer's aux loss and perplexity as ``aux_loss`` and ``perplexity``."""
    torch.manual_seed(0)
    model = build_tokenizer("VQ_AE_Tiny", quantizer_type="orig", beta=0.25).eval()
    x = _motion(model, 8, batch=4)
    expected = model.quantizer(model.encode_latent(x))
    out = model(x)
    assert torch.equal(out.aux_loss, expected.aux_loss) and torch.equal(out.perplexity, expected.perplexity)
    assert not torch.equal(expected.aux_loss, expected.perplexity)


def test_single_codebook_decode_takes_only_indices_of_rank_two():
    """A VQ tokenizer decodes ``(B, N)`` indices and refuses other ranks naming the shape it takes."""
    model = build_tokenizer("VQVAE_Tiny", **TINY).eval()
    assert model.decode(torch.zeros(2, 3, dtype=torch.long)).shape == (2, 12, model.input_width)
    for shape in [(2, 3, 1), (3,)]:
        with pytest.raises(ValueError, match=r"VQVAE: expected indices of shape \(B, N\), got"):
            model.decode(torch.zeros(shape, dtype=torch.long))


def test_residual_decode_takes_layers_or_first_layer_indices_and_names_its_layer_count():
    """An RVQ tokenizer decodes ``(B, N, Q)`` and ``(B, N)`` indices; other ranks are refused naming Q."""
    model = build_tokenizer("RVQVAE_Tiny", **TINY).eval()
    assert model.decode(torch.zeros(2, 3, dtype=torch.long)).shape == (2, 12, model.input_width)
    assert model.decode(torch.zeros(2, 3, 3, dtype=torch.long)).shape == (2, 12, model.input_width)
    with pytest.raises(ValueError, match=r"RVQVAE: expected indices of shape \(B, N, Q\) with Q <= 3 layers"):
        model.decode(torch.zeros(2, 3, 3, 1, dtype=torch.long))


@pytest.mark.parametrize("qtype,cls", [("ema_reset", QuantizeEMAReset), ("ema", QuantizeEMA),
                                       ("reset", QuantizeReset), ("orig", QuantizeOrig)])
def test_quantizer_type_picks_the_codebook_class(qtype, cls):
    """``quantizer_type`` builds its own codebook class."""
    assert type(build_tokenizer("VQVAE_Tiny", quantizer_type=qtype, **TINY).quantizer) is cls


def test_vq_options_reach_the_codebook():
    """mu, k-means initialisation, rotation trick and (for orig) beta are the codebook's own settings."""
    q = build_tokenizer("VQVAE_Tiny", quantizer_type="ema", mu=0.9, kmeans_init=True, kmeans_iters=3,
                        rotation_trick=True, **TINY).quantizer
    assert (q.mu, q.kmeans_init, q.kmeans_iters, q.rotation_trick) == (0.9, True, 3, True)
    orig = build_tokenizer("VQVAE_Tiny", quantizer_type="orig", beta=0.25, rotation_trick=True, **TINY).quantizer
    assert (orig.beta, orig.rotation_trick) == (0.25, True)


def test_kmeans_init_with_the_original_quantizer_is_refused():
    """The gradient-learned codebook has no k-means initialisation: asking for one is a ValueError."""
    with pytest.raises(ValueError, match=r"kmeans_init initialises the EMA and reset codebooks; quantizer_type 'orig'"):
        build_tokenizer("VQVAE_Tiny", quantizer_type="orig", kmeans_init=True)


def test_an_unknown_quantizer_type_is_refused_listing_the_types():
    """An unknown ``quantizer_type`` is a ValueError at construction listing the known ones."""
    with pytest.raises(ValueError, match=r"quantizer_type must be one of \('ema_reset', 'ema', 'reset', 'orig'\), "
                                         r"got 'gumbel'"):
        build_tokenizer("VQVAE_Tiny", quantizer_type="gumbel")


def test_rvq_options_reach_every_layer():
    """The RVQ settings reach the residual quantizer and each of its layers."""
    model = build_tokenizer("RVQVAE_Tiny", mu=0.9, shared_codebook=True, quantize_dropout_prob=0.5,
                            sample_codebook_temp=0.25, kmeans_init=True, kmeans_iters=4, rotation_trick=True, **TINY)
    rvq = model.quantizer
    assert model.num_quantizers == 3 and rvq.quantize_dropout_prob == 0.5
    assert len({id(layer) for layer in rvq.layers}) == 1
    for layer in rvq.layers:
        assert (layer.mu, layer.sample_codebook_temp, layer.kmeans_init, layer.kmeans_iters, layer.rotation_trick) \
            == (0.9, 0.25, True, 4, True)
    separate = build_tokenizer("RVQVAE_Tiny", **TINY).quantizer
    assert len({id(layer) for layer in separate.layers}) == 3


def test_lfq_options_reach_the_quantizer():
    """The LFQ loss and temperature settings are the quantizer's own."""
    q = build_tokenizer("LFQ_AE_Tiny", entropy_loss_weight=0.3, commitment_loss_weight=0.2, diversity_gamma=2.0,
                        codebook_scale=0.5, inv_temperature=10.0, dense_entropy_max_dim=3, **TINY).quantizer
    assert isinstance(q, LFQ)
    assert (q.entropy_loss_weight, q.commitment_loss_weight, q.diversity_gamma, q.codebook_scale, q.inv_temperature,
            q.dense_entropy_max_dim) == (0.3, 0.2, 2.0, 0.5, 10.0, 3)


def test_decode_from_grid_snaps_only_when_asked():
    """Off-grid coordinates decode as they are unless ``snap``, which decodes their nearest grid point."""
    model = build_tokenizer("FSQ_AE_Tiny", **TINY).eval()
    torch.manual_seed(0)
    coords = torch.rand(1, 2, model.grid_dim) * 1.6 - 0.8
    snapped = model.quantizer.snap_to_grid(coords)
    assert not torch.equal(coords, snapped)
    with torch.no_grad():
        raw = model.decode_from_grid(coords)
        assert torch.equal(raw, model.decode_latent(model.grid_to_latent(coords)))
        on_grid = model.decode_latent(model.grid_to_latent(snapped))
        assert torch.equal(model.decode_from_grid(coords, snap=True), on_grid)
        assert not torch.equal(raw, model.decode_from_grid(coords, snap=True))


# ----------------------------------------------------------------------------------------------------------------------
# the registry


@pytest.mark.parametrize("name,codes", [("FSQ_AE_Small", 3125), ("FSQ_AE_Medium", 5000), ("FSQ_AE_Large", 36000),
                                        ("FSQ_AE_XLarge", 76800), ("FSQ_AE_High", 64000), ("FSQ_AE_Ultra", 102400),
                                        ("FSQ_AE_Mega", 163840), ("FSQ_AE_HighDim7", 109375),
                                        ("FSQ_AE_HighDim8", 390625), ("LFQ_AE", 8192), ("VQ_AE_Model", 512),
                                        ("VQ_AE_Tiny", 32), ("VQVAE_Tiny", 32), ("RVQVAE_Tiny", 32),
                                        ("FSQ_MotionMillion", 64000), ("FSQ_AE_Tiny", 200)])
def test_registered_codebook_sizes(name, codes):
    """Each registered tokenizer keeps its codebook size (a checkpoint's model_name stands for it)."""
    args = {"code_dim": 8} if name.startswith(("FSQ_AE", "LFQ_AE_")) else {}
    assert build_tokenizer(name, **TINY, **args).codebook_size == codes


@pytest.mark.parametrize("name,expected", [
    ("AE_Tiny", dict(input_width=67, output_emb_width=16, width=32, depth=2, dropout=0.2)),
    ("VQ_AE_Model", dict(input_width=67, code_dim=512, dropout=0.2, quantizer_type="ema_reset")),
    ("VQ_AE_Tiny", dict(input_width=67, code_dim=16, dropout=0.2, width=32, depth=2)),
    ("RVQVAE_Tiny", dict(input_width=263, num_quantizers=3, code_dim=16, width=32, depth=2)),
    ("FSQ_MotionMillion", dict(input_width=272, down_t=1, norm="LN", dropout=0.0, levels=[8, 8, 8, 5, 5, 5])),
    ("FSQ_MotionMillion_Tiny", dict(input_width=272, down_t=1, norm="LN", dropout=0.0, levels=[8, 5, 5])),
])
def test_registered_variants_keep_their_settings(name, expected):
    """The registered variants keep the input width, backbone and regularisation their checkpoints were made with."""
    args = build_tokenizer(name, **({} if name.endswith("Tiny") else {"width": 8, "depth": 1})).model_args
    assert {k: args[k] for k in expected} == expected


def test_the_motionmillion_tokenizer_downsamples_by_two():
    """MotionMillion's tokenizer has one downsampling block: 2 frames per token."""
    assert build_tokenizer("FSQ_MotionMillion_Tiny").unit_length == 2


def test_the_registry_holds_every_family():
    """``TOKENIZERS`` is the union of the autoencoder, VQ and part-aware registries."""
    assert set(TOKENIZERS) == set(AE_MODELS) | set(VQ_MODELS) | set(PART_AWARE_MODELS)
    assert "PartAwareRVQ_Tiny" in TOKENIZERS


def test_an_unknown_tokenizer_name_is_refused_listing_the_registry():
    """An unregistered name is a ValueError naming it and listing the registered names."""
    with pytest.raises(ValueError, match=r"unknown tokenizer 'FSQ_AE_Huge'; registered: \[.*'FSQ_AE_High'"):
        build_tokenizer("FSQ_AE_Huge")


def test_an_unknown_keyword_is_refused_naming_only_the_unknown_ones():
    """A keyword the constructor does not take is a ValueError naming the tokenizer, its class, the unknown keywords
    and the allowed ones."""
    with pytest.raises(ValueError, match=r"^tokenizer 'AE_Tiny' \(AE\) has no arguments \['levels', 'nb_code'\]; "
                                         r"allowed: \[.*'output_emb_width'"):
        build_tokenizer("AE_Tiny", levels=[5, 5], nb_code=4, width=8)


def test_keywords_override_the_registered_settings():
    """Keywords replace the registered values and are recorded in ``model_args``."""
    model = build_tokenizer("FSQ_AE_Tiny", levels=[3, 3], width=8)
    assert model.model_args["levels"] == [3, 3] and model.model_args["width"] == 8 and model.codebook_size == 9


# ----------------------------------------------------------------------------------------------------------------------
# finding a generator's checkpoint


def _touch(path) -> str:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(b"x")
    return str(path)


def _write(path, data: bytes) -> str:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)
    return str(path)


@pytest.mark.parametrize("present,expected", [
    (["net_best_loss.tar", "net_best_fid.tar", "net_best_acc.tar"], "net_best_fid.tar"),
    (["net_best_loss.tar", "net_best_acc.tar"], "net_best_loss.tar"),
    (["net_best_acc.tar", "latest.tar"], "net_best_acc.tar"),
])
def test_best_prefers_fid_then_loss_then_accuracy(tmp_path, present, expected):
    """``which="best"`` takes the FID-best file, else the loss-best, else the accuracy-best."""
    for name in present:
        _touch(tmp_path / "run" / "model" / name)
    assert resolve_generator_checkpoint(str(tmp_path / "run"), "best") == str(tmp_path / "run" / "model" / expected)


def test_the_model_subfolder_is_searched_before_the_run_folder(tmp_path):
    """A run folder with ``model/`` resolves to the file inside it, not one lying beside it."""
    _touch(tmp_path / "run" / "latest.tar")
    inner = _touch(tmp_path / "run" / "model" / "latest.tar")
    assert resolve_generator_checkpoint(str(tmp_path / "run")) == inner


def test_which_names_a_file_with_or_without_its_extension(tmp_path):
    """Any file of ``model/`` is picked by name, with or without ``.tar``."""
    path = _touch(tmp_path / "run" / "model" / "net_epoch_3.tar")
    assert resolve_generator_checkpoint(str(tmp_path / "run"), "net_epoch_3") == path
    assert resolve_generator_checkpoint(str(tmp_path / "run"), "net_epoch_3.tar") == path


def test_a_missing_which_file_lists_the_checkpoints_that_are_there(tmp_path):
    """A run without the asked-for file is named with the checkpoints it has (other files left out)."""
    _touch(tmp_path / "run" / "model" / "net_epoch_3.tar")
    _touch(tmp_path / "run" / "model" / "notes.txt")
    with pytest.raises(CheckpointError, match=r"no latest.tar in .*model; found \['net_epoch_3.tar'\] \(pick one"):
        resolve_generator_checkpoint(str(tmp_path / "run"))
    with pytest.raises(CheckpointError, match=r"no net_best_fid.tar / net_best_loss.tar / net_best_acc.tar in "):
        resolve_generator_checkpoint(str(tmp_path / "run"), "best")


def test_resolve_run_names_a_file_inside_a_run_by_its_folders(tmp_path):
    """A ``--ckpt`` at ``<ck>/<dataset>/<run>/model/<file>`` takes its run and dataset from the folders unless given;
    a loose file is named by its stem, without dataset."""
    ckpt = _touch(tmp_path / "ck" / "kit" / "my_run" / "model" / "net_best_fid.tar")
    assert resolve_run(ckpt, None, None, "unused") == (ckpt, "my_run", "kit")
    assert resolve_run(ckpt, "other", "t2m", "unused") == (ckpt, "other", "t2m")
    loose = _touch(tmp_path / "weights.v2.tar")
    assert resolve_run(loose, None, None, "unused") == (loose, "weights.v2", "")


def test_a_ckpt_in_a_model_folder_just_below_the_root_takes_its_run_name(monkeypatch):
    """``/gen/model/latest.tar`` is the file of run ``gen`` with no dataset, not a run named ``latest``."""
    monkeypatch.setattr(os.path, "isfile", lambda p: p == "/gen/model/latest.tar")
    assert resolve_run("/gen/model/latest.tar", None, None, "unused") == ("/gen/model/latest.tar", "gen", "")


def test_resolve_run_refuses_a_folder_given_as_ckpt(tmp_path):
    """``--ckpt`` must be a file: a run folder is named as not found."""
    _touch(tmp_path / "run" / "model" / "latest.tar")
    with pytest.raises(CheckpointError, match=r"--ckpt: checkpoint not found: .*run$"):
        resolve_run(str(tmp_path / "run"), None, None, str(tmp_path))


def test_resolve_run_by_name_needs_both_name_and_dataset_and_follows_which(tmp_path):
    """Without ``--ckpt`` both ``--name`` and ``--dataset_name`` are needed; ``which`` picks the run's file."""
    ck = tmp_path / "ck"
    _touch(ck / "t2m" / "gen" / "model" / "latest.tar")
    best = _touch(ck / "t2m" / "gen" / "model" / "net_best_fid.tar")
    assert resolve_run(None, "gen", "t2m", str(ck), "best") == (best, "gen", "t2m")
    for name, dataset in [("gen", None), (None, "t2m")]:
        with pytest.raises(ValueError, match=r"pass --name and --dataset_name"):
            resolve_run(None, name, dataset, str(ck))


def test_checkpoints_roots_follow_a_link_to_a_run_file(tmp_path):
    """A link to a run's checkpoint also gives the checkpoints folder of its target."""
    target = _touch(tmp_path / "ck" / "ds" / "run" / "model" / "latest.tar")
    link = tmp_path / "links" / "gen.tar"
    link.parent.mkdir()
    link.symlink_to(target)
    assert checkpoints_roots(str(link)) == [str(tmp_path / "ck")]


def test_checkpoints_roots_need_a_folder_above_the_dataset():
    """``/ds/run/model/x.tar`` has no checkpoints folder; ``/ck/ds/run/model/x.tar`` has ``/ck``."""
    assert checkpoints_roots("/ds/run/model/x.tar") == []
    assert checkpoints_roots("/ck/ds/run/model/x.tar") == ["/ck"]


def test_an_official_generator_file_is_named_as_such():
    """A stage-less file with an official generator's keys is refused naming what wrote it."""
    with pytest.raises(CheckpointError, match=r"m.tar: an official MARDM checkpoint \(top-level keys \['ema_mardm'"):
        require_stage({"ema_mardm": {}}, "m.tar", "generator", "train_mardm.py")
    with pytest.raises(CheckpointError, match=r"m.tar: stage is 'tokenizer', expected 'generator'"):
        require_stage({"stage": "tokenizer", "ema_mardm": {}}, "m.tar", "generator", "train_mardm.py")


# ----------------------------------------------------------------------------------------------------------------------
# finding the length estimator and the tokenizer


def test_a_length_estimator_folder_without_model_subfolder_is_searched_itself(tmp_path):
    """A folder holding only ``latest.tar`` resolves to it."""
    path = _touch(tmp_path / "est" / "latest.tar")
    assert resolve_length_estimator_checkpoint(str(tmp_path / "est")) == path


def test_the_first_best_length_estimator_file_by_name_is_taken_in_a_folder_with_brackets(tmp_path):
    """``net_best_*`` files are matched in folders whose names hold glob characters; the first by name wins."""
    model = tmp_path / "est[1]" / "model"
    acc = _touch(model / "net_best_acc.tar")
    _touch(model / "net_best_loss.tar")
    _touch(model / "latest.tar")
    assert resolve_length_estimator_checkpoint(str(tmp_path / "est[1]")) == acc


def test_a_missing_length_estimator_is_named(tmp_path):
    """An estimator folder without any known file is a CheckpointError listing the file names looked for."""
    (tmp_path / "est" / "model").mkdir(parents=True)
    with pytest.raises(CheckpointError, match=r"no length estimator found: none of \['net_best_\*.tar', 'finest.tar', "
                                              r"'latest.tar'\]"):
        resolve_length_estimator_checkpoint(str(tmp_path / "est"))


def test_a_record_without_tokenizer_path_is_named_as_missing(tmp_path):
    """A generator whose record has no tokenizer path is refused as missing its tokenizer."""
    with pytest.raises(CheckpointError, match=r"gen.tar: the tokenizer the generator was trained on is missing: None"):
        resolve_tokenizer_file({"path": None, "sha256": None}, "gen.tar", None)


def test_a_relative_tokenizer_path_is_found_under_the_generators_checkpoints_folder(tmp_path, monkeypatch):
    """A recorded ``<dataset>/<run>/model/<file>`` is looked for under the generator's own checkpoints folder."""
    tok = _write(tmp_path / "ck" / "ds" / "tok" / "model" / "latest.tar", b"tokenizer")
    gen = _touch(tmp_path / "ck" / "ds" / "gen" / "model" / "latest.tar")
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    record = {"path": os.path.join("ds", "tok", "model", "latest.tar"), "sha256": file_sha256(tok)}
    assert resolve_tokenizer_file(record, gen, None) == (tok, file_sha256(tok))


def test_a_moved_tokenizer_run_is_found_beside_the_generator(tmp_path):
    """A tokenizer recorded under an old checkpoints folder is found in the same run under the generator's one."""
    tok = _write(tmp_path / "new" / "ds" / "tok" / "model" / "latest.tar", b"tokenizer")
    gen = _touch(tmp_path / "new" / "ds" / "gen" / "model" / "latest.tar")
    record = {"path": str(tmp_path / "old" / "ds" / "tok" / "model" / "latest.tar"), "sha256": file_sha256(tok)}
    assert resolve_tokenizer_file(record, gen, None) == (tok, file_sha256(tok))


def test_a_changed_tokenizer_is_named_once_as_changed(tmp_path):
    """A recorded tokenizer whose hash differs (and has no kept copy) is named once, as changed, with both hashes."""
    tok = _write(tmp_path / "ck" / "ds" / "tok" / "model" / "latest.tar", b"retrained")
    gen = _touch(tmp_path / "ck" / "ds" / "gen" / "model" / "latest.tar")
    record = {"path": tok, "sha256": "0" * 64}
    with pytest.raises(CheckpointError, match=r"the tokenizer has changed since the generator was trained") as err:
        resolve_tokenizer_file(record, gen, None)
    assert str(err.value).count(tok) == 1 and file_sha256(tok) in str(err.value)


# ----------------------------------------------------------------------------------------------------------------------
# text encoders


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    return write_fake_clip(str(tmp_path_factory.mktemp("clip_weights")))


def test_the_recorded_clip_encoder_is_built_and_memoised(clip):
    """The recorded CLIP file gives a caching encoder of the recorded width; asking for it by name is allowed."""
    record = {"name": "clip", "dim": CLIP_EMBED, "path": clip}
    enc = build_recorded_text_encoder(record, "gen.tar")
    assert isinstance(enc, CachedTextEncoder) and enc.name == "clip" and enc.dim == CLIP_EMBED
    assert build_recorded_text_encoder(record, "gen.tar", requested="clip").dim == CLIP_EMBED
    assert build_recorded_text_encoder({"name": "clip", "dim": None, "path": clip}, "gen.tar").dim == CLIP_EMBED


def test_asking_for_another_text_encoder_is_refused_naming_both(clip):
    """A requested encoder other than the recorded one is refused naming both."""
    with pytest.raises(CheckpointError, match=r"gen.tar: trained with text encoder 'clip', asked for 'minilm'"):
        build_recorded_text_encoder({"name": "clip", "dim": CLIP_EMBED, "path": clip}, "gen.tar", requested="minilm")


def test_a_weights_path_replaces_a_missing_recorded_clip_file(clip, tmp_path):
    """``weights_path`` is used instead of the recorded CLIP file, which may be gone."""
    record = {"name": "clip", "dim": CLIP_EMBED, "path": str(tmp_path / "gone.pt")}
    assert build_recorded_text_encoder(record, "gen.tar", weights_path=clip).dim == CLIP_EMBED


def test_missing_clip_weights_name_where_the_path_came_from(tmp_path):
    """Missing CLIP weights are named with the path and whether it was recorded or given."""
    record = {"name": "clip", "dim": CLIP_EMBED, "path": str(tmp_path / "gone.pt")}
    with pytest.raises(CheckpointError, match=r"CLIP weights not found: .*gone.pt \(the file the model was trained"):
        build_recorded_text_encoder(record, "gen.tar")
    with pytest.raises(CheckpointError, match=r"CLIP weights not found: .*other.pt \(given as text_encoder_path="):
        build_recorded_text_encoder(record, "gen.tar", weights_path=str(tmp_path / "other.pt"))


def test_an_unknown_recorded_text_encoder_is_a_checkpoint_error():
    """A record naming no registered encoder is a CheckpointError naming the file and the record."""
    with pytest.raises(CheckpointError, match=r"gen.tar: text_encoder record .*'nosuch'.*unknown text encoder"):
        build_recorded_text_encoder({"name": "nosuch", "dim": 4, "path": None}, "gen.tar")


def test_an_estimator_without_clip_paths_shares_the_generators_encoder(clip):
    """Two CLIP records without any path are the same encoder; one without and one with a path are not."""
    enc = CachedTextEncoder(build_text_encoder("clip", weights_path=clip))
    record = {"name": "clip", "dim": CLIP_EMBED, "path": None}
    assert estimator_text_encoder(record, "est.tar", enc, None, None, "cpu") is enc
    own = estimator_text_encoder({"name": "clip", "dim": CLIP_EMBED, "path": clip}, "est.tar", enc, None, None, "cpu")
    assert own is not enc and own.dim == CLIP_EMBED


def test_two_spellings_of_one_missing_clip_file_are_the_same_encoder(clip, tmp_path):
    """Missing CLIP files whose real paths agree are one file: the generator's encoder is shared."""
    (tmp_path / "sub").mkdir()
    enc = CachedTextEncoder(build_text_encoder("clip", weights_path=clip))
    record = {"name": "clip", "dim": CLIP_EMBED, "path": str(tmp_path / "sub" / ".." / "gone.pt")}
    assert estimator_text_encoder(record, "est.tar", enc, str(tmp_path / "gone.pt"), None, "cpu") is enc


def test_a_text_encoder_path_builds_an_estimators_clip_of_another_width(clip, tmp_path):
    """An estimator's CLIP of another width is built from ``--text_encoder_path`` (not its recorded file)."""
    enc = CachedTextEncoder(build_text_encoder("clip", weights_path=clip))
    record = {"name": "clip", "dim": CLIP_EMBED * 2, "path": str(tmp_path / "gone.pt")}
    with pytest.raises(CheckpointError, match=rf"est.tar: text encoder 'clip' gives {CLIP_EMBED}-dim embeddings"):
        estimator_text_encoder(record, "est.tar", enc, clip, clip, "cpu")


# ----------------------------------------------------------------------------------------------------------------------
# loading the length estimator


def _estimator_state(**extra) -> dict:
    torch.manual_seed(0)
    model = LengthEstimator(16, num_classes=10, hidden_dim=16)
    return {"stage": "length_estimator", "model_args": dict(model.model_args), "model": model.state_dict(),
            "text_encoder": {"name": "clip", "dim": 16, "path": None}, "unit_length": 4, **extra}


def test_a_loaded_length_estimator_is_frozen(tmp_path):
    """The loaded estimator is in eval mode with no parameter requiring gradients, and keeps its records."""
    path = str(tmp_path / "est.tar")
    save_checkpoint(path, _estimator_state())
    est = load_length_estimator(path)
    assert not est.model.training and not any(p.requires_grad for p in est.model.parameters())
    assert est.unit_length == 4 and type(est.unit_length) is int and est.dataset is None and est.path == path
    assert est.text_encoder == {"name": "clip", "dim": 16, "path": None}


def test_a_file_of_another_stage_is_refused_as_a_length_estimator(tmp_path):
    """A file whose stage is not ``length_estimator`` is named with its stage."""
    path = str(tmp_path / "est.tar")
    save_checkpoint(path, _estimator_state(stage="generator"))
    with pytest.raises(CheckpointError, match=r"est.tar: stage is 'generator', expected 'length_estimator'"):
        load_length_estimator(path)


def test_a_length_estimator_without_unit_length_is_refused(tmp_path):
    """A length-estimator file without ``unit_length`` names the missing key."""
    state = _estimator_state()
    del state["unit_length"]
    path = str(tmp_path / "est.tar")
    save_checkpoint(path, state)
    with pytest.raises(CheckpointError, match=r"est.tar: missing keys \['unit_length'\]"):
        load_length_estimator(path)


@pytest.mark.parametrize("change", ["weights", "argument"])
def test_weights_or_arguments_that_do_not_fit_are_named(tmp_path, change):
    """Weights of other shapes, or an argument the estimator does not take, are a CheckpointError naming the file."""
    state = _estimator_state()
    if change == "weights":
        state["model"] = LengthEstimator(16, num_classes=12, hidden_dim=16).state_dict()
    else:
        state["model_args"] = {**state["model_args"], "depth_of_field": 3}
    path = str(tmp_path / "est.tar")
    save_checkpoint(path, state)
    with pytest.raises(CheckpointError, match=r"est.tar: cannot rebuild LengthEstimator from model_args"):
        load_length_estimator(path)
