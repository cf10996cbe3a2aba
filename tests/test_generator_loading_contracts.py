"""Generator loading (utils.generation) and the generator side of evaluation_MARDM.py (utils.generator_eval):
which weights are loaded and what is said about it, what a mismatched residual run's error names, what the loaded
generator records, and the tags, options and sources an evaluation is built from."""

from __future__ import annotations

import logging
import os
import shutil

import pytest
import torch
from test_generation import (
    CLIP_EMBED,
    MINILM_DIM,
    make_runs,
    save_generator,
    save_length_estimator,
    save_tokenizer,
    write_fake_clip,
)
from test_generation_backends import _run_state
from test_momask_generation import save_code_tokenizer, save_token_generator

from options.config import parse_with_config
from options.eval_generator_options import get_evaluation_generator_parser
from utils.checkpoint import CheckpointError, file_sha256, load_checkpoint, save_checkpoint
from utils.generation import _check_residual, _select_weights, load_generator
from utils.generation_backends import MARDMBackend, SamplingSettings
from utils.generation_momask import MoMaskBackend
from utils.generator_checkpoints import resolve_run as resolve_generator_run
from utils.generator_eval import generator_source, multimodality_options, output_tag

# ---------------------------------------------------------------------------------------------------------------------
# Weights
# ---------------------------------------------------------------------------------------------------------------------


def test_a_lost_ema_is_a_warning_and_a_run_trained_without_ema_only_a_note(caplog):
    """Without EMA weights the raw ones load: a warning when the engine record says EMA was on (--ema_decay), only
    an info line for a run trained without EMA (or saved before the record), and nothing when EMA is not asked for."""
    raw = {"w": torch.zeros(1)}
    with caplog.at_level(logging.INFO, logger="utils.generation"):
        assert _select_weights({"model": raw, "engine": {"ema_decay": 0.999}}, True, "lost.tar") == (raw, "model")
        assert _select_weights({"model": raw, "engine": {"ema_decay": None}}, True, "off.tar") == (raw, "model")
        assert _select_weights({"model": raw, "config": {"ema_decay": 0.9}}, True, "old.tar") == (raw, "model")
        assert _select_weights({"model": raw, "engine": {"ema_decay": 0.9}}, False, "raw.tar") == (raw, "model")
    levels = {r.getMessage().split(" ")[0]: r.levelno for r in caplog.records}
    assert levels == {"lost.tar": logging.WARNING, "off.tar": logging.INFO, "old.tar": logging.INFO}
    assert all(r.getMessage().endswith("holds no EMA weights; using the raw model weights") for r in caplog.records)


# ---------------------------------------------------------------------------------------------------------------------
# Residual runs
# ---------------------------------------------------------------------------------------------------------------------


def test_a_mismatched_residual_run_names_both_files_and_the_tokenizer():
    """The refusal of a residual run names the residual file first, the masked transformer's file, and the base
    run's tokenizer file they must share."""
    with pytest.raises(CheckpointError) as err:
        _check_residual(_run_state(tokenizer__sha256="def"), "runs/res/model/latest.tar", _run_state(),
                        "runs/mask/model/latest.tar")
    assert str(err.value) == ("runs/res/model/latest.tar: tokenizer sha256 is 'def' in the residual run but 'abc' in "
                              "the masked transformer runs/mask/model/latest.tar; both must be trained on the same "
                              "tokenizer (tok.tar), data and text encoder")


# ---------------------------------------------------------------------------------------------------------------------
# load_generator on tiny runs
# ---------------------------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def runs(tmp_path_factory, synthetic_root):
    """FSQ-MARDM ``fsq_gen`` and MARDM ``ae_gen`` (make_runs), and MoMask ``mask`` + ``res`` on an RVQ tokenizer and
    ``vq_mask`` on a one-layer VQ tokenizer."""
    ckdir = str(tmp_path_factory.mktemp("loading") / "checkpoints")
    paths = make_runs(ckdir, synthetic_root)
    rvq = save_code_tokenizer(ckdir, synthetic_root, "rvq", "RVQVAE_Tiny", quantize_dropout_prob=0.0)
    vq = save_code_tokenizer(ckdir, synthetic_root, "vq", "VQVAE_Tiny")
    paths.update(rvq=rvq, vq=vq,
                 mask=save_token_generator(ckdir, synthetic_root, "mask", "MoMask-Mask-Tiny", rvq, paths["clip"]),
                 res=save_token_generator(ckdir, synthetic_root, "res", "MoMask-Res-Tiny", rvq, paths["clip"], seed=1),
                 vq_mask=save_token_generator(ckdir, synthetic_root, "vq_mask", "MoMask-Mask-Tiny", vq,
                                              paths["clip"]))
    return ckdir, paths


def _copy_run(src: str, dst_root: str, run: str, name: str = "latest.tar", edit=None) -> str:
    """Save the checkpoint ``src`` (changed by ``edit(state)``) as ``<dst_root>/synthetic/<run>/model/<name>``."""
    state = load_checkpoint(src)
    if edit is not None:
        edit(state)
    path = os.path.join(dst_root, "synthetic", run, "model", name)
    save_checkpoint(path, state)
    return path


def test_the_residual_file_follows_which_when_res_which_is_not_given(runs, tmp_path):
    """A residual run folder without res_which takes the file ``which`` names (best with best), not latest.tar."""
    _, paths = runs
    root = str(tmp_path)
    for name in ("latest.tar", "net_best_loss.tar"):
        _copy_run(paths["mask"], root, "mask", name)
        _copy_run(paths["res"], root, "res", name)
    gen = load_generator(os.path.join(root, "synthetic", "mask"), which="best",
                         res_run=os.path.join(root, "synthetic", "res"))
    assert gen.info["checkpoint"] == os.path.join(root, "synthetic", "mask", "model", "net_best_loss.tar")
    assert gen.info["residual"]["checkpoint"] == os.path.join(root, "synthetic", "res", "model", "net_best_loss.tar")
    gen = load_generator(os.path.join(root, "synthetic", "mask"), which="best",
                         res_run=os.path.join(root, "synthetic", "res"), res_which="latest")
    assert gen.info["residual"]["checkpoint"] == os.path.join(root, "synthetic", "res", "model", "latest.tar")


def test_the_residual_run_loads_the_weights_use_ema_asks_for_and_records_its_own_step(runs, tmp_path):
    """The residual transformer's EMA weights load unless use_ema=False, as the masked transformer's; the
    provenance records which weights and the residual file's own step."""
    _, paths = runs

    def add_ema(state):
        state["ema"] = {k: v + 0.25 if v.is_floating_point() else v.clone() for k, v in state["model"].items()}
        state["step"] = 7

    res = _copy_run(paths["res"], str(tmp_path), "res", edit=add_ema)
    state = load_checkpoint(res)
    for use_ema, weights in ((True, "ema"), (False, "model")):
        gen = load_generator(paths["mask"], use_ema=use_ema, res_run=res)
        assert gen.info["weights"] == "model"  # the masked transformer has no EMA
        assert gen.info["residual"]["weights"] == weights and gen.info["residual"]["step"] == 7
        for name, value in gen.backend.residual.state_dict().items():
            assert torch.equal(value, state[weights][name]), name


def test_only_a_multi_layer_tokenizer_without_residual_run_is_warned_about(runs, caplog):
    """A masked transformer on a one-layer VQ tokenizer has no residual layers to miss: no warning; on the 3-layer
    RVQ tokenizer without a residual run, one."""
    _, paths = runs
    with caplog.at_level(logging.WARNING, logger="utils.generation"):
        load_generator(paths["vq_mask"])
    assert "only the base layer" not in caplog.text
    with caplog.at_level(logging.WARNING, logger="utils.generation"):
        load_generator(paths["mask"])
    assert "only the base layer of the 3-layer tokenizer" in caplog.text


def test_a_clip_generator_without_text_encoder_path_logs_no_warning(runs, caplog):
    """The note that --text_encoder_path only reaches the length estimator is given only when a path was given."""
    _, paths = runs
    with caplog.at_level(logging.WARNING, logger="utils.generation"):
        gen = load_generator(paths["fsq_gen"])
    assert gen.text_encoder.name == "clip"
    assert [r.getMessage() for r in caplog.records if r.name == "utils.generation"] == []


def test_a_text_encoder_of_another_width_than_the_model_takes_fails_naming_the_file(runs, tmp_path, synthetic_root):
    """A generator whose recorded text encoder gives 16-dim embeddings but whose model takes 384-dim ones is refused
    at load, naming the file and both widths, rather than failing inside the model at the first caption."""


    _, paths = runs
    minilm = save_generator(str(tmp_path / "a"), synthetic_root, "gen", "MARDM-SiT-Tiny", paths["ae_tok"], "",
                            minilm=True)
    clip_record = {"name": "clip", "dim": 16, "path": os.path.abspath(paths["clip"])}
    path = _copy_run(minilm, str(tmp_path / "b"), "gen", edit=lambda s: s.update(text_encoder=clip_record))
    with pytest.raises(CheckpointError, match=rf"{path}: the model takes {MINILM_DIM}-dim text embeddings, text "
                                              rf"encoder 'clip' gives 16"):
        load_generator(path)


def test_a_text_encoder_wider_than_the_model_takes_fails_naming_the_file(runs, tmp_path):
    """The other way round: a generator on 16-dim CLIP embeddings whose record names MiniLM (384-dim) is refused at
    load too, not only a narrower encoder."""
    _, paths = runs
    minilm_record = {"name": "minilm", "dim": MINILM_DIM, "path": None}
    path = _copy_run(paths["ae_gen"], str(tmp_path / "b"), "gen", edit=lambda s: s.update(text_encoder=minilm_record))
    with pytest.raises(CheckpointError, match=rf"{path}: the model takes {CLIP_EMBED}-dim text embeddings, text "
                                              rf"encoder 'minilm' gives {MINILM_DIM}"):
        load_generator(path)


def test_the_length_estimator_beside_the_path_as_given_is_preferred_to_the_one_beside_a_links_target(runs, tmp_path):
    """A generator file reached through a link takes the length estimator of the checkpoints folder the link is in
    when there is one, else that of the folder the link points into."""


    ckdir, paths = runs
    target_root = str(tmp_path / "target")
    target = _copy_run(paths["ae_gen"], target_root, "gen")
    save_length_estimator(target_root, paths["clip"])
    link_root = tmp_path / "linked"
    (link_root / "synthetic" / "gen" / "model").mkdir(parents=True)
    link = link_root / "synthetic" / "gen" / "model" / "latest.tar"
    os.symlink(target, link)
    assert load_generator(str(link)).length_estimator_path == os.path.join(target_root, "synthetic",
                                                                           "length_estimator")
    save_length_estimator(str(link_root), paths["clip"])
    assert load_generator(str(link)).length_estimator_path == os.path.join(str(link_root), "synthetic",
                                                                           "length_estimator")


def test_the_provenance_names_files_by_absolute_paths_and_the_files_actually_used(runs, tmp_path, monkeypatch,
                                                                                   synthetic_root):  # noqa: F811
    """info names the checkpoint by its absolute path when given a relative one, with its step, and the tokenizer and
    CLIP weights actually loaded (given with tokenizer_path / text_encoder_path): that tokenizer's own SHA-256, beside
    the recorded one."""


    ckdir, paths = runs
    with monkeypatch.context() as patch:
        patch.chdir(ckdir)
        gen = load_generator(os.path.relpath(paths["ae_gen"], ckdir))
    assert gen.info["checkpoint"] == os.path.abspath(paths["ae_gen"]) and gen.info["step"] == 10
    assert gen.info["text_encoder"]["path"] == os.path.abspath(paths["clip"])
    clip = write_fake_clip(str(tmp_path / "clip_copy"))
    other_tok = save_tokenizer(str(tmp_path), synthetic_root, "tok", "AE_Tiny", seed=5)
    gen = load_generator(paths["ae_gen"], text_encoder_path=clip, tokenizer_path=other_tok)
    assert gen.info["text_encoder"] == {"name": "clip", "dim": 16, "path": clip}
    assert gen.info["tokenizer"]["path"] == other_tok and gen.info["tokenizer"]["sha256"] == file_sha256(other_tok)
    assert gen.info["tokenizer"]["recorded_sha256"] == file_sha256(paths["ae_tok"]) != file_sha256(other_tok)
    assert gen.info["tokenizer"]["recorded_path"] == paths["ae_tok"]


# ---------------------------------------------------------------------------------------------------------------------
# The run an evaluation names (utils.generator_checkpoints), its tag, its multimodality options, its source
# ---------------------------------------------------------------------------------------------------------------------

def eval_cfg(*argv: str):

    return parse_with_config(get_evaluation_generator_parser(), list(argv))


def resolve_run(cfg):
    """The run of an evaluation's flags, as ``utils.generator_eval.generator_source`` resolves it."""
    return resolve_generator_run(cfg.ckpt, cfg.name, cfg.dataset_name, cfg.checkpoints_dir, cfg.which_epoch)


def test_resolve_run_takes_name_and_dataset_from_the_flags_else_from_the_ckpts_run_folder(runs, tmp_path):
    """--name / --dataset_name given with --ckpt win over the run folder the file sits in; without them the folder
    names both; a run under --checkpoints_dir resolves its file with --which_epoch; --name needs --dataset_name."""
    ckdir, paths = runs
    ckpt = paths["fsq_gen"]
    assert resolve_run(eval_cfg("--ckpt", ckpt)) == (ckpt, "fsq_gen", "synthetic")
    assert resolve_run(eval_cfg("--ckpt", ckpt, "--name", "other", "--dataset_name", "kit")) == (ckpt, "other", "kit")
    loose = str(tmp_path / "weights.tar")
    os.symlink(ckpt, loose)
    assert resolve_run(eval_cfg("--ckpt", loose)) == (loose, "weights", "")
    best = _copy_run(ckpt, str(tmp_path / "ck"), "gen", "net_best_fid.tar")
    _copy_run(ckpt, str(tmp_path / "ck"), "gen", "latest.tar")
    assert resolve_run(eval_cfg("--name", "gen", "--dataset_name", "synthetic", "--checkpoints_dir",
                                str(tmp_path / "ck"), "--which_epoch", "best")) == (best, "gen", "synthetic")
    with pytest.raises(ValueError, match=r"pass --name and --dataset_name \(a run under --checkpoints_dir\), or "
                                         r"--ckpt \(a file\)"):
        resolve_run(eval_cfg("--name", "gen", "--checkpoints_dir", str(tmp_path / "ck")))
    with pytest.raises(CheckpointError, match=r"--ckpt: checkpoint not found: .*/ck/synthetic/gen$"):
        resolve_run(eval_cfg("--ckpt", str(tmp_path / "ck" / "synthetic" / "gen")))  # a folder is not a file


def test_a_ckpt_in_a_model_folder_just_below_the_root_is_named_after_its_run(monkeypatch):
    """``/gen/model/latest.tar`` is the file of run ``gen`` (with no dataset folder above it), not a run named
    ``latest``."""
    with monkeypatch.context() as patch:
        patch.setattr(os.path, "isfile", lambda p: p == "/gen/model/latest.tar")
        assert resolve_run(eval_cfg("--ckpt", "/gen/model/latest.tar")) == ("/gen/model/latest.tar", "gen", "")


def test_the_tag_spells_family_options_by_their_short_names_and_numbers_compactly():
    """Family options go into the file names under their short names (topk, rcfg, hs; the sampling and the head's
    solver by value alone), in the order given, floats written as %g (3.0 -> 3)."""
    cfg = eval_cfg("--name", "mask", "--dataset_name", "synthetic", "--no_mm")
    settings = SamplingSettings(time_steps=10, cfg=4.0)
    momask = {"topk_filter_thres": 0.9, "sampling": "gumbel", "res_cond_scale": 3.0, "res_temperature": 1.0}
    assert output_tag(cfg, "/r/mask/model/latest.tar", "model", settings, momask) == \
        "latest_ts10_cfg4_topk0.9_gumbel_rcfg3_res_temperature1_nomm"
    assert output_tag(cfg, "/r/gen/model/latest.tar", "ema", settings, {"head_steps": 2, "head_solver": "heun"}) == \
        "latest_ema_ts10_cfg4_hs2_heun_nomm"


def test_multimodality_settings_leave_the_tag_of_an_evaluation_without_multimodality():
    """With --no_mm, --mm_sampling and --mm_batches / --mm_repeats choose nothing that is computed: the tag is the
    one of the same evaluation without them."""
    settings = SamplingSettings(time_steps=10, cfg=4.0)
    plain = output_tag(eval_cfg("--name", "m", "--dataset_name", "synthetic", "--no_mm"), "/r/m/model/latest.tar",
                       "model", settings, {})
    assert plain == "latest_ts10_cfg4_nomm"
    for extra in (["--mm_sampling", "categorical"], ["--mm_batches", "1", "--mm_repeats", "11"]):
        cfg = eval_cfg("--name", "m", "--dataset_name", "synthetic", "--no_mm", *extra)
        assert output_tag(cfg, "/r/m/model/latest.tar", "model", settings, {}) == plain
    cfg = eval_cfg("--name", "m", "--dataset_name", "synthetic", "--mm_sampling", "categorical")
    assert output_tag(cfg, "/r/m/model/latest.tar", "model", settings, {}) == "latest_ts10_cfg4_mmcategorical"


def test_multimodality_options_keep_the_other_family_options():
    """MoMask's multimodality repeats change only the ``sampling`` option: the other options given stay; a family
    without its own multimodality draw gets the options unchanged."""
    cfg = eval_cfg("--name", "m", "--dataset_name", "synthetic")
    given = {"res_cond_scale": 3.0, "topk_filter_thres": 0.5, "sampling": "categorical"}
    assert multimodality_options(cfg, MoMaskBackend, given) == {**given, "sampling": "gumbel"}
    assert multimodality_options(cfg, MARDMBackend, {"head_steps": 2}) == {"head_steps": 2}


def test_the_generator_source_follows_the_weight_tokenizer_and_run_flags(runs, tmp_path):
    """generator_source loads what the flags ask for and files the evaluation accordingly: --no_ema (raw weights,
    no _ema in the tag), --tokenizer_path (its SHA-256 prefix in the tag), --ckpt with --name (the named run's eval/
    folder), a --ckpt outside any run (the generator's own dataset, a run named after the file), the file or
    --which_epoch the saved motions are labelled with, and the diffusion head's resolved sampler for the report."""
    ckdir, paths = runs
    base = ["--checkpoints_dir", ckdir, "--device", "cpu", "--no_mm"]
    run_dir = os.path.join(ckdir, "synthetic", "fsq_gen")

    source = generator_source(eval_cfg("--ckpt", paths["fsq_gen"], "--no_ema", *base))
    assert source.tag == "latest_ts18_cfg4.5_nomm" and source.meta["generator"]["weights"] == "model"
    assert source.eval_dir == os.path.join(run_dir, "eval") and source.which == "latest.tar"
    assert source.dataset_name == "synthetic"
    settings = load_generator(paths["fsq_gen"]).sampling_settings()
    assert source.sampler == load_generator(paths["fsq_gen"]).backend.sampler(settings) and source.sampler["head"]

    source = generator_source(eval_cfg("--name", "fsq_gen", "--dataset_name", "synthetic",
                                       "--tokenizer_path", paths["fsq_tok"], *base))
    assert source.tag == f"latest_ema_ts18_cfg4.5_tok-{file_sha256(paths['fsq_tok'])[:8]}_nomm"
    assert source.which == "latest" and source.eval_dir == os.path.join(run_dir, "eval")

    source = generator_source(eval_cfg("--ckpt", paths["fsq_gen"], "--name", "renamed", *base))
    assert source.eval_dir == os.path.join(ckdir, "synthetic", "renamed", "eval")

    loose = str(tmp_path / "weights.tar")
    os.symlink(paths["fsq_gen"], loose)
    source = generator_source(eval_cfg("--ckpt", loose, *base))
    assert source.dataset_name == "synthetic"
    assert source.eval_dir == os.path.join(ckdir, "synthetic", "weights", "eval")
    with pytest.raises(CheckpointError, match=r"weights.tar: the generator was trained on dataset 'synthetic' but "
                                              r"--dataset_name is 'kit'"):
        generator_source(eval_cfg("--ckpt", loose, "--dataset_name", "kit", *base))


def test_a_momask_evaluation_takes_the_residual_file_of_which_epoch_and_records_mm_sampling_only_with_mm(runs,
                                                                                                       tmp_path):
    """--which_epoch picks the residual run's file as well as the masked transformer's; the multimodality draw is
    recorded in the sampling settings (which key the evaluation) only when multimodality is computed."""
    _, paths = runs
    root = str(tmp_path)
    for name in ("latest.tar", "net_best_loss.tar"):
        _copy_run(paths["mask"], root, "mask", name)
        _copy_run(paths["res"], root, "res", name)
    base = ["--name", "mask", "--res_name", "res", "--dataset_name", "synthetic", "--checkpoints_dir", root,
            "--device", "cpu"]
    source = generator_source(eval_cfg(*base, "--which_epoch", "best", "--no_mm"))
    assert source.meta["generator"]["checkpoint"] == os.path.join(root, "synthetic", "mask", "model",
                                                                  "net_best_loss.tar")
    assert source.meta["generator"]["residual"]["checkpoint"] == os.path.join(root, "synthetic", "res", "model",
                                                                              "net_best_loss.tar")
    assert "mm_sampling" not in source.meta["sampling"]
    assert generator_source(eval_cfg(*base)).meta["sampling"]["mm_sampling"] == "gumbel"


@pytest.mark.parametrize("role", ["generator", "residual"])
@pytest.mark.parametrize("damage, message", [
    (lambda s: s.pop("target"), r"missing keys \['target'\]"),
    (lambda s: s.pop("text_encoder"), r"missing keys \['text_encoder'\]"),
    (lambda s: s.update(target=3), r"entry 'target' is int 3; expected str"),
    (lambda s: s.update(model_args=[1, 2]), r"entry 'model_args' is list \[1, 2\]; expected dict"),
], ids=["no-target", "no-text-encoder", "int-target", "list-model-args"])
def test_a_damaged_generator_or_residual_file_is_refused_naming_the_file_and_the_entry(runs, tmp_path, role, damage,
                                                                                      message):
    """A masked transformer or residual file missing an entry, or holding one of the wrong type, is refused naming
    that file and the entry, not with a bare KeyError or a failure inside the model."""
    _, paths = runs
    bad = _copy_run(paths["mask" if role == "generator" else "res"], str(tmp_path), "bad", edit=damage)
    with pytest.raises(CheckpointError, match=rf"^{bad}: {message}"):
        if role == "generator":
            load_generator(bad)
        else:
            load_generator(paths["mask"], res_run=bad)


@pytest.mark.parametrize("entry", ["mean", "std", "spec"])
def test_a_generator_whose_dataset_record_lacks_an_entry_names_the_file_and_the_record(runs, tmp_path, entry):
    """A generator file whose dataset record has no mean, std or spec is refused naming the file, the record and the
    entry."""
    _, paths = runs
    bad = _copy_run(paths["fsq_gen"], str(tmp_path), "bad", edit=lambda s: s["dataset"].pop(entry))
    with pytest.raises(CheckpointError, match=rf"^{bad} \(dataset record\): missing keys \['{entry}'\]"):
        load_generator(bad)


def test_statistics_that_differ_from_the_tokenizers_name_the_generator_and_the_tokenizer_file(runs, tmp_path):
    """The refusal of a generator trained on other statistics than its tokenizer's names both files."""
    _, paths = runs

    def double_std(state):
        state["dataset"]["std"] = torch.as_tensor(state["dataset"]["std"]).float() * 2

    bad = _copy_run(paths["fsq_gen"], str(tmp_path), "bad", edit=double_std)
    with pytest.raises(CheckpointError, match=rf"^{bad}: the generator's dataset mean/std differ from those of its "
                                              rf"tokenizer {paths['fsq_tok']}; decoded motion"):
        load_generator(bad)


def test_a_wrong_text_encoder_is_named_before_the_tokenizer_is_looked_for(runs, tmp_path):
    """--text_encoder naming another encoder than the recorded one fails first, even when the tokenizer file is
    missing too (nothing heavy is loaded for a request that cannot be served)."""
    _, paths = runs

    def lose_tokenizer(state):
        state["tokenizer"] = {**state["tokenizer"], "path": str(tmp_path / "gone.tar")}

    bad = _copy_run(paths["fsq_gen"], str(tmp_path / "ck"), "bad", edit=lose_tokenizer)
    with pytest.raises(CheckpointError, match="trained with text encoder 'clip', asked for 'minilm'"):
        load_generator(bad, text_encoder="minilm")
    with pytest.raises(CheckpointError, match="tokenizer the generator was trained on is missing"):
        load_generator(bad, text_encoder="clip")


def test_a_residual_run_given_to_a_mardm_generator_is_refused_before_it_is_looked_for(runs, tmp_path):
    """A MARDM generator refuses res_run for what it is (MARDM takes none; drop the flag) before the residual run
    is looked up or read: a residual path that does not exist gets the same answer."""
    _, paths = runs
    expected = (rf"^{paths['fsq_gen']}: mardm generators take no residual run \(only MoMask's masked transformer "
                rf"does\); drop res_run / --res_name$")
    for res_run in (paths["res"], str(tmp_path / "missing")):
        with pytest.raises(CheckpointError, match=expected):
            load_generator(paths["fsq_gen"], res_run=res_run)


@pytest.mark.parametrize("field", ["mean", "std"])
def test_a_residual_file_whose_dataset_record_lacks_its_statistics_is_refused_naming_the_file(runs, tmp_path, field):
    """A residual run whose dataset record has no mean / std fails naming that file and the record, as the masked
    transformer's own record does ("<file> (dataset record): missing keys ['mean']"), not with a bare KeyError."""
    _, paths = runs
    state = load_checkpoint(paths["res"])
    del state["dataset"][field]
    bad = str(tmp_path / "res.tar")
    save_checkpoint(bad, state)
    with pytest.raises(CheckpointError, match=rf"{bad} \(dataset record\): missing keys \['{field}'\]"):
        load_generator(paths["mask"], res_run=bad)


def test_a_ckpt_in_a_run_folder_outside_a_dataset_folder_is_evaluated_on_the_generators_dataset(runs, tmp_path):
    """``--ckpt backup/fsq_gen/model/latest.tar`` (a run folder copied out of ``<checkpoints>/<dataset>/``) without
    --dataset_name: the folder above the run is not a dataset, so the evaluation is of the generator's own dataset.
    It was refused as "--dataset_name is 'backup'", a flag the user never gave."""


    ckdir, paths = runs
    copied = tmp_path / "backup" / "fsq_gen"
    shutil.copytree(os.path.dirname(os.path.dirname(paths["fsq_gen"])), copied)
    cfg = parse_with_config(get_evaluation_generator_parser(), [
        "--ckpt", str(copied / "model" / "latest.tar"), "--checkpoints_dir", ckdir, "--device", "cpu", "--no_mm"])
    source = generator_source(cfg)
    assert source.dataset_name == "synthetic"
    assert source.eval_dir == str(copied / "eval")
