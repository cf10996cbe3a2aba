"""The evaluator wrapper (``utils.evaluator``): the reference row order, statistics checked and kept in float32, the
released layout's file and statistics search, clear errors naming the file and the key for damaged or contradicting
checkpoints, and what our own checkpoints record and give back."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

import utils
from utils.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from utils.evaluator import (
    EvaluatorWrapper,
    build_evaluator,
    length_order,
    load_evaluator,
    resolve_evaluator_path,
)
from utils.word_vectorizer import SOURCE_GLOVE, SOURCE_GLOVE_FOLDER, LearnedVocab, WordVectorizer, write_glove_folder

RELEASED = Path(utils.__file__).resolve().parents[1] / "tests" / "fixtures" / "t2m_evaluator" / "finest.tar"
DIM_POSE = 263  # 't2m': HumanML3D features with foot contacts, the width of the released fixture


def _stats(dim_pose: int = DIM_POSE, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.standard_normal(dim_pose).astype(np.float32), rng.uniform(0.5, 2.0, dim_pose).astype(np.float32)


def _released_state() -> dict:
    return load_checkpoint(str(RELEASED))


def _tiny(**kw) -> EvaluatorWrapper:
    torch.manual_seed(0)
    return build_evaluator("t2m", *_stats(), dim_word=12, sizes="tiny", **kw)


def _batch(rng, lengths, frames=40, dim_pose=DIM_POSE, dim_word=12, words=6):
    motions = rng.standard_normal((len(lengths), frames, dim_pose)).astype(np.float32)
    for i, n in enumerate(lengths):
        motions[i, n:] = 0.0
    word_embs = rng.standard_normal((len(lengths), words, dim_word)).astype(np.float32)
    pos = np.eye(15, dtype=np.float32)[rng.integers(0, 15, (len(lengths), words))]
    cap_lens = np.full(len(lengths), words)
    return word_embs, pos, cap_lens, motions, np.asarray(lengths)


# ---------------------------------------------------------------------------------------------------------------------
# Row order and embedding calls


def test_length_order_among_equal_lengths_is_the_reference_argsort():
    # The reference sorts with np.argsort(m_lens)[::-1] (quicksort, not stable): ties must come out the same way.
    lengths = np.array([40, 64, 40, 52, 40, 16, 64, 40, 16, 52, 40, 64, 28, 40, 16, 40, 52, 64, 40, 28])
    order = length_order(lengths)
    np.testing.assert_array_equal(order, np.argsort(lengths)[::-1])
    np.testing.assert_array_equal(length_order(torch.as_tensor(lengths)), order)


def test_embeddings_leave_an_evaluator_in_eval_mode_in_eval_mode():
    ev = _tiny()
    assert not ev.model.training  # built in eval mode
    word_embs, pos, cap_lens, motions, lengths = _batch(np.random.default_rng(0), [40, 28, 36])
    ev.get_co_embeddings(word_embs, pos, cap_lens, motions, lengths)
    assert not ev.model.training


def test_float64_motions_embed_as_their_float32_values():
    ev = _tiny()
    word_embs, pos, cap_lens, motions, lengths = _batch(np.random.default_rng(1), [40, 28, 36])
    expected = ev.get_motion_embeddings(motions, lengths)
    got = ev.get_motion_embeddings(motions.astype(np.float64), lengths)
    assert got.dtype == torch.float32
    torch.testing.assert_close(got, expected, rtol=0, atol=0)


def test_fewer_captions_than_motions_is_refused_by_count():
    ev = _tiny()
    word_embs, pos, cap_lens, motions, lengths = _batch(np.random.default_rng(2), [40, 28, 36])
    with pytest.raises(ValueError, match="got 2 captions but 3 motions"):
        ev.get_co_embeddings(word_embs[:2], pos[:2], cap_lens[:2], motions, lengths)


def test_normalize_tensor_and_array_alike():
    ev = _tiny()
    mean, std = _stats()
    motion = np.random.default_rng(3).standard_normal((2, 5, DIM_POSE)).astype(np.float32)
    np.testing.assert_allclose(ev.normalize(motion), (motion - mean) / std, rtol=1e-6)
    got = ev.normalize(torch.from_numpy(motion))
    assert isinstance(got, torch.Tensor)
    np.testing.assert_allclose(got.numpy(), (motion - mean) / std, rtol=1e-6)


def test_to_moves_the_model_and_the_inputs_device():
    ev = _tiny()
    assert ev.to("meta") is ev and ev.device == torch.device("meta")
    assert next(ev.model.parameters()).device == torch.device("meta")


# ---------------------------------------------------------------------------------------------------------------------
# Statistics and word-vector source of a built evaluator


def test_built_statistics_are_float32_vectors_of_the_dataset_width():
    mean, std = _stats()
    ev = build_evaluator("t2m", mean.astype(np.float64), torch.from_numpy(std), dim_word=12, sizes="tiny")
    assert ev.mean.dtype == np.float32 and ev.std.dtype == np.float32
    np.testing.assert_array_equal(ev.std, std)


@pytest.mark.parametrize("bad", ["mean width", "std width", "nan mean", "zero std"])
def test_statistics_that_cannot_normalise_are_refused_at_build(bad):
    mean, std = _stats()
    if bad == "mean width":
        mean = mean[:-1]
    elif bad == "std width":
        std = std[:-1]
    elif bad == "nan mean":
        mean[3] = np.nan
    else:
        std[3] = 0.0
    expected = r"must be \(263,\) for this evaluator" if "width" in bad else "must be finite with std > 0"
    with pytest.raises(ValueError, match=expected):
        build_evaluator("t2m", mean, std, dim_word=12, sizes="tiny")


def test_a_glove_digest_goes_with_the_glove_folder_source_only():
    ev = _tiny()
    with pytest.raises(ValueError, match="digest of the GloVe vectors goes with source"):
        EvaluatorWrapper(ev.model, ev.model_args, dataset_name="t2m", mean=ev.mean, std=ev.std, source=SOURCE_GLOVE,
                         glove_sha256="0" * 64)
    with pytest.raises(ValueError, match="digest of the GloVe vectors goes with source"):
        EvaluatorWrapper(ev.model, ev.model_args, dataset_name="t2m", mean=ev.mean, std=ev.std,
                         source=SOURCE_GLOVE_FOLDER)


def test_unknown_sizes_are_refused_by_name():
    expected = r"unknown evaluator sizes 'huge'; choose from \['official', 'small', 'tiny'\]"
    with pytest.raises(ValueError, match=expected):
        build_evaluator("t2m", *_stats(), sizes="huge")


def test_glove_evaluator_needs_a_glove_folder_of_its_width(tmp_path):
    ev = _tiny()
    with pytest.raises(ValueError, match="uses the official GloVe vectors: pass glove_dir, the folder holding "
                                         "our_vab_data.npy"):
        ev.word_vectorizer()
    words = ["sos", "eos", "unk", "walk"]
    write_glove_folder(str(tmp_path / "wide"), words, np.ones((len(words), 300)))
    with pytest.raises(ValueError, match="GloVe vectors are 300-dim but the evaluator's text encoder expects 12"):
        ev.word_vectorizer(str(tmp_path / "wide"))


def test_word_vectors_record_names_the_glove_folder_and_digest(tmp_path):
    words = ["sos", "eos", "unk", "walk"]
    write_glove_folder(str(tmp_path / "glove"), words, np.random.default_rng(0).standard_normal((len(words), 12)))
    ev = build_evaluator("t2m", *_stats(), word_vectors=WordVectorizer(str(tmp_path / "glove")), sizes="tiny")
    assert ev.word_vectors_record() == {"source": SOURCE_GLOVE_FOLDER, "dim_word": 12,
                                        "glove_dir": str(tmp_path / "glove"), "sha256": ev.glove_sha256}
    assert len(ev.glove_sha256) == 64


# ---------------------------------------------------------------------------------------------------------------------
# Released layout: where the file and its statistics are found


def test_a_folder_holding_model_finest_tar_resolves_to_it(tmp_path):
    (tmp_path / "run" / "model").mkdir(parents=True)
    shutil.copy(RELEASED, tmp_path / "run" / "model" / "finest.tar")
    assert resolve_evaluator_path(str(tmp_path / "run")) == str(tmp_path / "run" / "model" / "finest.tar")
    assert resolve_evaluator_path(str(tmp_path / "run" / "model")) == str(tmp_path / "run" / "model" / "finest.tar")


def test_a_folder_named_finest_tar_is_not_a_checkpoint(tmp_path):
    (tmp_path / "ev" / "text_mot_match" / "model" / "finest.tar").mkdir(parents=True)
    with pytest.raises(CheckpointError, match=rf"evaluator checkpoint not found: {tmp_path / 'ev'} is not a file"):
        resolve_evaluator_path(str(tmp_path / "ev"))


@pytest.mark.parametrize("meta", ["mardm_eval/meta", "Comp_v6_KLD01/meta"])
def test_released_statistics_are_found_beside_a_run_of_any_name_and_in_every_released_folder(tmp_path, meta):
    # A released file in a run folder of another name (MARDM's evaluators) reads that run's meta/; Guo et al.'s
    # statistics may sit in any of the released folders next to text_mot_match.
    run = "mardm_eval" if meta.startswith("mardm") else "text_mot_match"
    (tmp_path / "t2m" / run / "model").mkdir(parents=True)
    shutil.copy(RELEASED, tmp_path / "t2m" / run / "model" / "finest.tar")
    (tmp_path / "t2m" / meta).mkdir(parents=True)
    mean, std = _stats(seed=4)
    np.save(tmp_path / "t2m" / meta / "mean.npy", mean)
    np.save(tmp_path / "t2m" / meta / "std.npy", std)
    ev = load_evaluator(str(tmp_path / "t2m" / run), "t2m")
    np.testing.assert_array_equal(ev.mean, mean)
    np.testing.assert_array_equal(ev.std, std)


def test_a_released_evaluator_keeps_its_epoch_and_the_unit_length_asked_for():
    ev = load_evaluator(str(RELEASED), "t2m", mean=_stats()[0], std=_stats()[1])
    assert ev.epoch == 0 and ev.unit_length == 4 and ev.released
    assert load_evaluator(str(RELEASED), "t2m", mean=_stats()[0], std=_stats()[1], unit_length=2).unit_length == 2


def test_statistics_given_as_missing_files_or_only_one_of_them_are_refused(tmp_path):
    mean, std = _stats()
    with pytest.raises(FileNotFoundError, match=rf"evaluator mean file not found: {tmp_path / 'mean.npy'}"):
        load_evaluator(str(RELEASED), "t2m", mean=str(tmp_path / "mean.npy"), std=std)
    with pytest.raises(ValueError, match="pass both mean and std for the evaluator, or neither"):
        load_evaluator(str(RELEASED), "t2m", mean=mean)


def test_a_released_evaluator_is_not_one_trained_here(tmp_path):
    from utils.evaluator import save_evaluator, trained_evaluator_source

    assert trained_evaluator_source(str(RELEASED)) is None
    save_evaluator(str(tmp_path / "ours.tar"), _tiny())
    assert trained_evaluator_source(str(tmp_path / "ours.tar")) == SOURCE_GLOVE


# ---------------------------------------------------------------------------------------------------------------------
# Damaged released files: errors name the file and the key


def _load_damaged(tmp_path, state):
    path = tmp_path / "damaged.tar"
    save_checkpoint(str(path), state)
    return load_evaluator(str(path), "t2m", mean=_stats()[0], std=_stats()[1])


def test_a_missing_network_is_named_with_the_keys_present(tmp_path):
    state = _released_state()
    del state["motion_encoder"]
    with pytest.raises(CheckpointError, match=r"damaged\.tar: missing evaluator keys \['motion_encoder'\]; top-level "
                                              r"keys are \['epoch', .*'movement_encoder', 'text_encoder'\]"):
        _load_damaged(tmp_path, state)


def test_a_weight_with_an_extra_dim_is_named(tmp_path):
    state = _released_state()
    state["movement_encoder"]["main.0.weight"] = state["movement_encoder"]["main.0.weight"][None]
    with pytest.raises(CheckpointError, match=r"damaged\.tar: movement_encoder\.main\.0\.weight should have 3 dims"):
        _load_damaged(tmp_path, state)


def test_weights_of_widths_that_do_not_chain_are_named(tmp_path):
    state = _released_state()
    weight = state["motion_encoder"]["output_net.3.weight"]
    state["motion_encoder"]["output_net.3.weight"] = torch.zeros(weight.shape[0] + 1, weight.shape[1])
    state["motion_encoder"]["output_net.3.bias"] = torch.zeros(weight.shape[0] + 1)
    with pytest.raises(CheckpointError, match=r"damaged\.tar: inconsistent evaluator weights: motion_encoder vs "
                                              r"text_encoder embedding width"):
        _load_damaged(tmp_path, state)


def test_a_missing_bias_is_refused_naming_the_network(tmp_path):
    state = _released_state()
    del state["text_encoder"]["output_net.0.bias"]
    with pytest.raises(CheckpointError, match=r"(?s)damaged\.tar: text_encoder weights do not fit the evaluator built "
                                              r"from them: .*output_net\.0\.bias"):
        _load_damaged(tmp_path, state)


def test_a_learned_word_embedding_without_our_metadata_is_refused(tmp_path):
    vocab = LearnedVocab.from_tokens(["a/DET", "man/NOUN", "walk/VERB"], dim_word=12)
    torch.manual_seed(0)
    ev = build_evaluator("t2m", *_stats(), word_vectors=vocab, sizes="tiny")
    from utils.evaluator import save_evaluator

    save_evaluator(str(tmp_path / "ours.tar"), ev)
    state = load_checkpoint(str(tmp_path / "ours.tar"))
    state = {key: state[key] for key in ("text_encoder", "motion_encoder", "movement_encoder", "epoch", "iter")}
    with pytest.raises(CheckpointError, match=r"damaged\.tar: the text encoder has a learned word embedding but the "
                                              r"file lacks the evaluator metadata"):
        _load_damaged(tmp_path, state)


def test_statistics_given_as_tensors_are_taken_as_their_values():
    # Statistics computed with torch (on any device, tracking gradients or not) are read as plain float32 arrays.
    mean, std = _stats()
    ev = build_evaluator("t2m", torch.from_numpy(mean).requires_grad_(), torch.from_numpy(std).requires_grad_(),
                         dim_word=12, sizes="tiny")
    assert isinstance(ev.mean, np.ndarray) and isinstance(ev.std, np.ndarray)
    np.testing.assert_array_equal(ev.mean, mean)


# ---------------------------------------------------------------------------------------------------------------------
# Our own checkpoints: what they record, and the contradictions refused


def _saved(tmp_path, ev=None, **kw) -> dict:
    from utils.evaluator import save_evaluator

    save_evaluator(str(tmp_path / "ours.tar"), ev or _tiny(), **kw)
    return load_checkpoint(str(tmp_path / "ours.tar"))


def _load_edited(tmp_path, state, name="t2m", **kw):
    save_checkpoint(str(tmp_path / "edited.tar"), state)
    return load_evaluator(str(tmp_path / "edited.tar"), name, **kw)


def test_saved_config_and_metrics_are_kept_and_extra_entries_cannot_overwrite_fields(tmp_path):
    from utils.evaluator import save_evaluator

    state = _saved(tmp_path, config={"lr": 1e-4, "glove_dir": None}, metrics={"val_loss": 0.5},
                   extra={"opt_text_encoder": {"step": 3}})
    assert state["config"] == {"lr": 1e-4, "glove_dir": None} and state["metrics"] == {"val_loss": 0.5}
    assert state["opt_text_encoder"] == {"step": 3}
    with pytest.raises(ValueError, match=r"extra checkpoint entries \['epoch', 'model_args'\] would overwrite"):
        save_evaluator(str(tmp_path / "clash.tar"), _tiny(), extra={"model_args": {}, "epoch": 9, "opt": 1})
    assert not (tmp_path / "clash.tar").exists()


def test_a_glove_folder_evaluator_loads_with_its_folder(tmp_path):
    words = ["sos", "eos", "unk", "walk"]
    write_glove_folder(str(tmp_path / "glove"), words, np.random.default_rng(0).standard_normal((len(words), 12)))
    ev = build_evaluator("t2m", *_stats(), word_vectors=WordVectorizer(str(tmp_path / "glove")), sizes="tiny")
    _saved(tmp_path, ev)
    loaded = load_evaluator(str(tmp_path / "ours.tar"), "t2m")
    assert loaded.glove_dir == str(tmp_path / "glove") and loaded.word_vectors_record() == ev.word_vectors_record()
    assert loaded.path == str(tmp_path / "ours.tar") and not loaded.released


def test_a_unit_length_other_than_the_recorded_one_is_refused(tmp_path):
    _saved(tmp_path)
    assert load_evaluator(str(tmp_path / "ours.tar"), "t2m", unit_length=4).unit_length == 4
    with pytest.raises(CheckpointError, match=r"ours\.tar: unit_length is 4 in the checkpoint but 2 was requested"):
        load_evaluator(str(tmp_path / "ours.tar"), "t2m", unit_length=2)


def test_model_args_contradicting_the_weights_are_named(tmp_path):
    state = _saved(tmp_path)
    state["model_args"]["vocab_size"] = 5  # a GloVe evaluator has no word embedding
    with pytest.raises(CheckpointError, match=r"edited\.tar: model_args\['vocab_size'\] = 5 contradicts the weights "
                                              r"\(None\)"):
        _load_edited(tmp_path, state)


def test_a_dataset_record_without_std_is_named(tmp_path):
    state = _saved(tmp_path)
    del state["dataset"]["std"]
    with pytest.raises(CheckpointError, match=r"edited\.tar: dataset record has no evaluator mean/std"):
        _load_edited(tmp_path, state)


def test_a_learned_word_list_of_another_size_than_the_embedding_is_refused(tmp_path):
    vocab = LearnedVocab.from_tokens(["a/DET", "man/NOUN", "walk/VERB"], dim_word=12)
    torch.manual_seed(0)
    state = _saved(tmp_path, build_evaluator("t2m", *_stats(), word_vectors=vocab, sizes="tiny"))
    state["word_vectors"]["words"] = state["word_vectors"]["words"][:-1]
    with pytest.raises(CheckpointError, match=rf"edited\.tar: vocabulary size is {len(vocab) - 1} in the checkpoint "
                                              rf"but {len(vocab)} was requested"):
        _load_edited(tmp_path, state)


def test_an_unknown_word_vector_source_is_named(tmp_path):
    state = _saved(tmp_path)
    state["word_vectors"]["source"] = "word2vec"
    with pytest.raises(CheckpointError, match=r"edited\.tar: word_vectors\.source is 'word2vec'; expected one of"):
        _load_edited(tmp_path, state)


# ---------------------------------------------------------------------------------------------------------------------
# Resuming a co-embedding run, and the released layout's meta/ written for a trained evaluator


def _record(source, sha256=None, glove_dir="/glove"):
    return {"source": source, "dim_word": 12, "glove_dir": glove_dir, "sha256": sha256}


def test_a_resumed_run_keeps_the_word_vectors_it_was_trained_with(caplog):
    from utils.evaluator import check_resumed_word_vectors
    from utils.word_vectorizer import SOURCE_LEARNED

    glove = {"word_vectors": _record(SOURCE_GLOVE_FOLDER, "a" * 64)}
    learned = {"word_vectors": _record(SOURCE_LEARNED, glove_dir=None)}
    check_resumed_word_vectors("latest.tar", glove, _record(SOURCE_GLOVE_FOLDER, "a" * 64), "/glove")
    with caplog.at_level("WARNING", logger="utils.evaluator"):
        check_resumed_word_vectors("latest.tar", learned, _record(SOURCE_LEARNED, glove_dir=None), None)
    assert not caplog.text  # a learned vocabulary has no GloVe digest to miss
    with pytest.raises(CheckpointError, match=r"latest\.tar: .*word_vectors\.sha256 a{64}\), but those of --glove_dir "
                                              r"/other differ \(b{64}\)"):
        check_resumed_word_vectors("latest.tar", glove, _record(SOURCE_GLOVE_FOLDER, "b" * 64), "/other")
    with pytest.raises(CheckpointError, match=r"latest\.tar: the run being resumed was trained with the GloVe vectors "
                                              r"of /glove, but no --glove_dir is given"):
        check_resumed_word_vectors("latest.tar", glove, _record(SOURCE_LEARNED, glove_dir=None), None)
    for source in (SOURCE_GLOVE_FOLDER, SOURCE_GLOVE):
        with pytest.raises(CheckpointError, match=r"latest\.tar: the run being resumed learned its vocabulary"):
            check_resumed_word_vectors("latest.tar", learned, _record(source, "a" * 64), "/glove")
    # A run saved before the record: a learned vocabulary is told by its model_args.
    old_learned = {"model_args": {"vocab_size": 7}, "config": {}}
    check_resumed_word_vectors("latest.tar", old_learned, _record(SOURCE_LEARNED, glove_dir=None), None)
    with caplog.at_level("WARNING", logger="utils.evaluator"):
        check_resumed_word_vectors("latest.tar", {"model_args": {"vocab_size": None}, "config": {"glove_dir": "/g"}},
                                   _record(SOURCE_GLOVE_FOLDER, "a" * 64), "/g")
    assert "latest.tar records no digest of the GloVe vectors" in caplog.text


def test_evaluator_meta_is_written_as_float32_in_the_released_layout(tmp_path):
    from utils.evaluator import save_evaluator_meta

    mean, std = _stats()
    meta = save_evaluator_meta(str(tmp_path / "run"), mean.astype(np.float64), std)
    assert meta == str(tmp_path / "run" / "meta")
    saved = np.load(tmp_path / "run" / "meta" / "std.npy")
    assert saved.dtype == np.float32 and np.array_equal(saved, std)
    ev = load_evaluator(str(RELEASED), "t2m", mean=str(tmp_path / "run" / "meta" / "mean.npy"),
                        std=str(tmp_path / "run" / "meta" / "std.npy"))
    np.testing.assert_array_equal(ev.mean, mean)


def test_an_evaluator_placed_by_hand_is_refused_but_a_run_to_resume_is_not(tmp_path):
    from utils.evaluator import check_no_placed_evaluator
    from utils.run_dir import RunDir, RunDirError

    run = RunDir(str(tmp_path / "ck"), "t2m", "text_mot_match")
    check_no_placed_evaluator(run)  # an empty folder
    Path(run.model_dir).mkdir(parents=True)
    shutil.copy(RELEASED, Path(run.model_dir) / "finest.tar")
    with pytest.raises(RunDirError, match=rf"{Path(run.model_dir) / 'finest.tar'} exists without {run.latest_path}"):
        check_no_placed_evaluator(run)
    Path(run.latest_path).write_bytes(b"")  # a run of train_evaluator.py to resume
    check_no_placed_evaluator(run)


def test_a_released_file_tagged_with_our_stage_but_without_model_args_loads_as_released(tmp_path):
    # Only save_evaluator's full record (stage and model_args) makes a file one of ours.
    state = _released_state()
    state["stage"] = "evaluator"
    ev = _load_edited(tmp_path, state, mean=_stats()[0], std=_stats()[1])
    assert ev.released and ev.source == SOURCE_GLOVE


def test_sizes_may_be_partial_but_not_misspelt():
    ev = build_evaluator("t2m", *_stats(), dim_word=12, sizes={"dim_coemb_hidden": 8})
    assert ev.model_args["dim_coemb_hidden"] == 8 and ev.model_args["dim_motion_hidden"] == 1024
    with pytest.raises(ValueError, match=r"unknown evaluator size keys \['dim_text_hiden'\]; expected \["):
        build_evaluator("t2m", *_stats(), dim_word=12, sizes={"dim_text_hiden": 8})


def test_an_incomplete_statistics_pair_is_passed_over_for_a_complete_one(tmp_path):
    # A mean.npy without its std.npy beside the checkpoint does not hide the pair in Comp_v6_KLD005/meta.
    (tmp_path / "t2m" / "text_mot_match" / "model" / "meta").mkdir(parents=True)
    shutil.copy(RELEASED, tmp_path / "t2m" / "text_mot_match" / "model" / "finest.tar")
    np.save(tmp_path / "t2m" / "text_mot_match" / "model" / "meta" / "mean.npy", np.zeros(DIM_POSE, np.float32))
    (tmp_path / "t2m" / "Comp_v6_KLD005" / "meta").mkdir(parents=True)
    mean, std = _stats(seed=5)
    np.save(tmp_path / "t2m" / "Comp_v6_KLD005" / "meta" / "mean.npy", mean)
    np.save(tmp_path / "t2m" / "Comp_v6_KLD005" / "meta" / "std.npy", std)
    ev = load_evaluator(str(tmp_path / "t2m"), "t2m")
    np.testing.assert_array_equal(ev.mean, mean)
    np.testing.assert_array_equal(ev.std, std)


# ---------------------------------------------------------------------------------------------------------------------
# Statistics files given to load_evaluator for a released checkpoint


@pytest.mark.parametrize("bad", ["zero std", "other width"])
def test_statistics_files_that_cannot_normalise_are_named_by_their_files(tmp_path, bad):
    width = 67 if bad == "other width" else DIM_POSE
    np.save(tmp_path / "mean.npy", np.zeros(width, np.float32))
    np.save(tmp_path / "std.npy", np.zeros(width, np.float32) if bad == "zero std" else np.ones(width, np.float32))
    expected = "must be finite with std > 0" if bad == "zero std" else r"must be \(263,\) for this evaluator"
    with pytest.raises(ValueError, match=rf"^{tmp_path / 'mean.npy'} / {tmp_path / 'std.npy'}: evaluator mean/std "
                                         rf"{expected}"):
        load_evaluator(str(RELEASED), "t2m", mean=str(tmp_path / "mean.npy"), std=str(tmp_path / "std.npy"))


def test_statistics_files_that_fit_load_as_given(tmp_path):
    mean = np.linspace(-1, 1, DIM_POSE).astype(np.float32)
    np.save(tmp_path / "mean.npy", mean)
    np.save(tmp_path / "std.npy", np.full(DIM_POSE, 2.0, np.float32))
    ev = load_evaluator(str(RELEASED), "t2m", mean=str(tmp_path / "mean.npy"), std=str(tmp_path / "std.npy"))
    np.testing.assert_array_equal(ev.mean, mean)
    assert ev.std.tolist() == [2.0] * DIM_POSE
