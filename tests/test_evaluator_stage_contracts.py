"""train_evaluator.py's steps (utils/evaluator_stage.py) and its two stages' losses, pinned on a tiny dataset."""

from __future__ import annotations

import copy
import json
import logging
import math
import os
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from test_train_evaluator import parse, run_script, write_dataset
from torch import nn

import train_evaluator
from models.evaluator_training import CoEmbedding, MovementAutoencoder, contrastive_loss, draw_shift
from utils import cli
from utils.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from utils.dataset_specs import get_dataset_spec
from utils.datasets import collate_eval
from utils.eval_data import EvalLoader, build_eval_loader
from utils.eval_protocol import retrieval_metrics
from utils.evaluator import build_evaluator, load_evaluator, save_evaluator
from utils.evaluator_stage import (
    CoEmbeddingValidation,
    check_window_and_batch,
    load_val_loader,
    load_word_vectors,
    pretrain_steps,
    validate_final_state,
    write_validation_report,
)
from utils.metrics import score_batch
from utils.normalization import DatasetError
from utils.word_vectorizer import LearnedVocab, write_glove_folder


@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> Path:
    """Two validation batches of 32 (66 clips), a test split of 5, and a word only the validation captions use."""
    root = tmp_path_factory.mktemp("synthetic_stage")
    write_dataset(root, {"train": 40, "val": 66, "test": 5})
    (root / "texts" / "val000.txt").write_text("a person does pirouette.#a/DET person/NOUN pirouette/VERB#0.0#0.0\n")
    return root


def _stats(data_root: Path) -> tuple[np.ndarray, np.ndarray]:
    return (np.load(data_root / "Mean.npy").astype(np.float32),
            (np.load(data_root / "Std.npy")).astype(np.float32))


def _tiny_evaluator(data_root: Path):
    torch.manual_seed(0)
    mean, std = _stats(data_root)
    vocab = LearnedVocab.from_split(str(data_root), "train", dim_word=16)
    return build_evaluator("synthetic", mean, std, word_vectors=vocab, sizes="tiny", data_root=str(data_root))


# ---------------------------------------------------------------------------------------------------------------------
# check_window_and_batch
# ---------------------------------------------------------------------------------------------------------------------

def test_pretrain_windows_of_any_positive_multiple_of_four_frames_are_accepted(monkeypatch):
    """4, 8 and 24 frames pass; 6 and 10 (not a multiple of the movement encoder's stride 4) are refused."""
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    for window in (4, 8, 24):
        check_window_and_batch(window, 8)
    for window in (6, 10):
        with pytest.raises(ValueError, match=rf"--pretrain_window must be a positive multiple of 4 .*got {window}$"):
            check_window_and_batch(window, 8)


def test_two_captions_per_process_are_enough_for_the_contrastive_loss(monkeypatch):
    """--batch_size 2 on one process, and 8 over 4 processes, leave 2 captions each: accepted."""
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    check_window_and_batch(24, 2)
    monkeypatch.setenv("WORLD_SIZE", "4")
    check_window_and_batch(24, 8)


# ---------------------------------------------------------------------------------------------------------------------
# load_word_vectors
# ---------------------------------------------------------------------------------------------------------------------

def test_a_missing_glove_folder_learns_the_train_vocabulary_with_a_warning(data_root, tmp_path, caplog):
    """--glove_dir naming no folder learns a vocabulary instead, says so naming the folder, and reads only the
    train split's captions (a word of the validation captions stays unknown)."""
    missing = tmp_path / "no_glove"
    cfg = parse(data_root, tmp_path / "ck", "--glove_dir", str(missing))
    with caplog.at_level(logging.WARNING):
        vectors = load_word_vectors(cfg, str(data_root))
    assert isinstance(vectors, LearnedVocab) and vectors.dim_word == 16  # --sizes tiny
    assert f"--glove_dir {missing} does not exist; learning a vocabulary instead" in caplog.text
    assert not any(word.startswith("pirouette") for word in vectors.words)
    assert any(word.startswith("walk") or word.startswith("run") for word in vectors.words)


@pytest.mark.parametrize("extra,width", [((), 16), (("--dim_word", "20"), 20), (("--sizes", "small"), 128),
                                         (("--sizes", "official"), 300)])
def test_a_learned_vocabulary_is_dim_word_wide_or_the_sizes_default(data_root, tmp_path, extra, width):
    """A learned embedding is --dim_word wide when given, else 300 / 128 / 16 for --sizes official / small / tiny."""
    vectors = load_word_vectors(parse(data_root, tmp_path / "ck", *extra), str(data_root))
    assert isinstance(vectors, LearnedVocab) and vectors.dim_word == width


# ---------------------------------------------------------------------------------------------------------------------
# load_val_loader
# ---------------------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("count", [3, 5])
def test_a_validation_split_of_three_or_more_samples_gets_one_batch_of_all_with_a_warning(tmp_path, caplog, count):
    """A split smaller than the protocol's 32 is validated in one batch of all its samples, with a warning naming
    the split, its size and the R-precision chance."""
    root = tmp_path / "small_val"
    write_dataset(root, {"train": 12, "val": count})
    spec = get_dataset_spec("synthetic", str(root))
    mean, std = _stats(root)
    vocab = LearnedVocab.from_split(str(root), "train", dim_word=16)
    with caplog.at_level(logging.WARNING):
        loader = load_val_loader(spec, "val", mean, std, vocab, str(root))
    assert loader.batch_size == count and loader.num_batches == 1 and loader.split == "val"
    assert (f"the val split has only {count} samples: validation batches of {count} (R-precision chance 1/{count}, "
            "not 1/32)") in caplog.text


def test_a_too_small_validation_split_names_its_split_file_and_the_flag(tmp_path):
    """The refusal of a 2-sample split says which file to add clips to and which flag chooses another split."""
    root = tmp_path / "tiny_val"
    write_dataset(root, {"train": 12, "test": 2})
    spec = get_dataset_spec("synthetic", str(root))
    mean, std = _stats(root)
    vocab = LearnedVocab.from_split(str(root), "train", dim_word=16)
    with pytest.raises(DatasetError, match=rf"the test split has 2 text-motion sample\(s\); .*add clips to "
                                           rf"{re.escape(str(root / 'test.txt'))} or choose another --val_split\)"):
        load_val_loader(spec, "test", mean, std, vocab, str(root))


def test_the_validation_loader_reads_its_split_with_the_evaluator_statistics(data_root):
    """--val_split test gives the test split's 5 clips, normalised with the mean and std passed (not swapped)."""
    spec = get_dataset_spec("synthetic", str(data_root))
    mean, std = _stats(data_root)
    mean, std = mean + 1.0, std * 2.0  # distinct from the files' statistics
    vocab = LearnedVocab.from_split(str(data_root), "train", dim_word=16)
    loader = load_val_loader(spec, "test", mean, std, vocab, str(data_root))
    assert loader.split == "test" and len(loader.dataset) == 5 and loader.batch_size == 5
    np.testing.assert_array_equal(loader.dataset.mean, mean)
    np.testing.assert_array_equal(loader.dataset.std, std)


# ---------------------------------------------------------------------------------------------------------------------
# pretrain_steps
# ---------------------------------------------------------------------------------------------------------------------

def test_stage_one_defaults_to_five_epochs_of_windows(data_root, tmp_path):
    """Without --pretrain_iters a new run pretrains 5 epochs: 5 * (40 // 8) = 25 steps; at least one step per epoch
    when there are fewer windows than a batch; --pretrain_iters is taken as given."""
    cfg = parse(data_root, tmp_path)
    assert pretrain_steps(cfg, 40, None, "latest.tar") == 25
    assert pretrain_steps(cfg, 5, None, "latest.tar") == 5
    assert pretrain_steps(parse(data_root, tmp_path, "--pretrain_iters", "7"), 40, None, "latest.tar") == 7


def test_a_resumed_run_without_a_recorded_pretrain_length_takes_its_own_batch_size(data_root, tmp_path):
    """A run saved before --pretrain_iters was recorded pretrained five epochs at its own --batch_size (4 here:
    5 * 10 = 50 steps), whatever --batch_size is now."""
    cfg = parse(data_root, tmp_path)  # --batch_size 8
    assert pretrain_steps(cfg, 40, {"batch_size": 4}, "latest.tar") == 50
    assert pretrain_steps(cfg, 40, {}, "latest.tar") == 25


def test_a_resume_with_fewer_pretrain_steps_is_refused_too(data_root, tmp_path):
    """Any other --pretrain_iters than the run's is refused, a smaller one as a larger one, naming both."""
    for given in ("2", "8"):
        cfg = parse(data_root, tmp_path, "--pretrain_iters", given)
        with pytest.raises(CheckpointError, match=rf"^run.latest\.tar: .*--pretrain_iters 4 steps, but "
                                                  rf"--pretrain_iters is {given} now"):
            pretrain_steps(cfg, 40, {"pretrain_iters": 4}, "run/latest.tar")
    assert pretrain_steps(parse(data_root, tmp_path, "--pretrain_iters", "4"), 40, {"pretrain_iters": 4}, "x") == 4


# ---------------------------------------------------------------------------------------------------------------------
# CoEmbeddingValidation
# ---------------------------------------------------------------------------------------------------------------------

def _val_loader(data_root: Path, ev) -> EvalLoader:
    spec = get_dataset_spec("synthetic", str(data_root))
    return load_val_loader(spec, "val", ev.mean, ev.std, ev.vocab, str(data_root))


def _expected(model: nn.Module, loader: EvalLoader, seed: int, margin: float) -> dict[str, float]:
    total, hits, match, n = 0.0, np.zeros(3), 0.0, 0
    batches = list(loader.batches(seed))
    for b, batch in enumerate(batches):
        with torch.no_grad():
            text_emb, motion_emb = model(batch.word_embs, batch.pos_ohot, batch.sent_lens, batch.motion,
                                         batch.m_lengths)
        shift = 1 + b % (text_emb.shape[0] - 1)  # 1 for the first batch, 2 for the second
        total += float(sum(contrastive_loss(text_emb, motion_emb, shift, margin)))
        scores = score_batch(text_emb.numpy(), motion_emb.numpy())
        hits += scores.top_k_count
        match += scores.matching_score_sum
        n += text_emb.shape[0]
    return {"val_loss": total / len(batches), "top1": hits[0] / n, "top2": hits[1] / n, "top3": hits[2] / n,
            "matching_score": match / n}


def _adam_after(model: nn.Module, steps: int) -> torch.optim.Optimizer:
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=0.0)
    for _ in range(steps):
        optimizer.zero_grad()
        sum(p.sum() for p in model.parameters() if p.requires_grad).backward()
        optimizer.step()
    return optimizer


def test_validation_scores_every_batch_of_its_seed_with_its_margin(data_root, tmp_path):
    """val_loss is the mean over the validation batches (of --seed's draw) of the contrastive loss with --margin and
    shift 1 + b % (B - 1); top1..top3 and matching_score are per sample over all batches."""
    ev = _tiny_evaluator(data_root)
    model = CoEmbedding(ev.model).eval()
    loader = _val_loader(data_root, ev)
    assert loader.num_batches == 2
    validate = CoEmbeddingValidation(loader, ev, str(tmp_path / "finest.tar"), {}, [_adam_after(model, 1)], seed=7,
                                     margin=3.0, steps_per_epoch=5, resume=False)
    with torch.no_grad():
        got = validate(model)
    want = _expected(model, loader, seed=7, margin=3.0)
    assert set(got) == set(want)
    for key, value in want.items():
        assert got[key] == pytest.approx(value, rel=1e-5), key
    assert want["top2"] != want["top3"] or want["top1"] != want["top2"]  # the ranks are told apart here


class _Matched(nn.Module):
    """Text and motion embeddings made equal and far apart: val_loss 0 (no positive distance, no near negative)."""

    def __init__(self, inner: CoEmbedding) -> None:
        super().__init__()
        self.inner = inner
        self.evaluator = inner.evaluator

    def forward(self, *args):
        text_emb, _ = self.inner(*args)
        return text_emb * 1e4, text_emb * 1e4


def test_finest_is_replaced_by_a_lower_validation_loss_only(data_root, tmp_path):
    """The first validation writes finest.tar with its step (Adam's count), epoch (step // steps_per_epoch),
    metrics and config; an equal loss later keeps it; a lower one replaces it."""
    ev = _tiny_evaluator(data_root)
    model = CoEmbedding(ev.model).eval()
    loader = _val_loader(data_root, ev)
    finest = str(tmp_path / "finest.tar")
    optimizers = [_adam_after(model, 3)]
    validate = CoEmbeddingValidation(loader, ev, finest, {"margin": 3.0, "seed": 7}, optimizers, seed=7, margin=3.0,
                                     steps_per_epoch=2, resume=False)
    with torch.no_grad():
        first = validate(model)
    state = load_checkpoint(finest)
    assert (state["iter"], state["epoch"]) == (3, 1)
    assert state["metrics"] == pytest.approx(first) and state["config"] == {"margin": 3.0, "seed": 7}
    assert validate.best_val_loss == first["val_loss"] > 0

    optimizers[0] = _adam_after(model, 4)
    with torch.no_grad():
        again = validate(model)
    assert again["val_loss"] == first["val_loss"]
    assert load_checkpoint(finest)["iter"] == 3  # an equal loss is not an improvement

    with torch.no_grad():
        lower = validate(_Matched(model))
    assert lower["val_loss"] < first["val_loss"]
    state = load_checkpoint(finest)
    assert state["iter"] == 4 and state["metrics"]["val_loss"] == pytest.approx(lower["val_loss"])
    assert validate.best_val_loss == lower["val_loss"]


def test_the_best_loss_starts_from_finest_of_a_resumed_run_only(data_root, tmp_path):
    """resume=True starts from the val_loss recorded in finest.tar (infinity when there is none); a new start
    ignores a finest.tar it finds."""
    ev = _tiny_evaluator(data_root)
    loader = _val_loader(data_root, ev)
    finest = str(tmp_path / "finest.tar")

    def validation(resume: bool) -> CoEmbeddingValidation:
        return CoEmbeddingValidation(loader, ev, finest, {}, [], seed=7, margin=10.0, steps_per_epoch=5, resume=resume)

    assert validation(resume=True).best_val_loss == math.inf
    save_evaluator(finest, ev, metrics={"val_loss": 1.25})
    assert validation(resume=True).best_val_loss == 1.25
    assert validation(resume=False).best_val_loss == math.inf


# ---------------------------------------------------------------------------------------------------------------------
# validate_final_state
# ---------------------------------------------------------------------------------------------------------------------

def test_the_final_state_is_validated_on_a_copy_holding_the_ema_weights(tmp_path):
    """With --ema_decay the validation receives the EMA weights of latest.tar in eval mode, on a copy: the caller's
    model keeps its own weights. Nothing is validated when finest.tar exists."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 3), nn.Dropout(0.5)).train()
    own = copy.deepcopy(model.state_dict())
    ema = {k: torch.full_like(v, 0.5) for k, v in own.items()}
    latest = str(tmp_path / "latest.tar")
    save_checkpoint(latest, {"model": own, "ema": ema})
    seen = []

    def validate(m: nn.Module) -> dict[str, float]:
        seen.append((m.training, {k: v.clone() for k, v in m.state_dict().items()}))
        return {}

    finest = tmp_path / "finest.tar"
    validate_final_state(model, validate, str(finest), latest, ema_decay=0.9)
    assert len(seen) == 1 and seen[0][0] is False
    assert all(torch.equal(seen[0][1][k], ema[k]) for k in ema)
    assert all(torch.equal(model.state_dict()[k], own[k]) for k in own)

    validate_final_state(model, validate, str(finest), latest, ema_decay=None)
    assert len(seen) == 2 and all(torch.equal(seen[1][1][k], own[k]) for k in own)
    finest.write_bytes(b"written by a validation")
    validate_final_state(model, validate, str(finest), latest, ema_decay=0.9)
    assert len(seen) == 2


# ---------------------------------------------------------------------------------------------------------------------
# write_validation_report
# ---------------------------------------------------------------------------------------------------------------------

def test_the_report_scores_val_split_in_the_batches_and_seed_given(data_root, tmp_path, monkeypatch):
    """The report reloads finest.tar and scores GT retrieval on --val_split in batches of the size given with
    --seed; it records the absolute evaluator path, its epoch, the split, batch, samples, chance and best_val_loss."""
    ev = _tiny_evaluator(data_root)
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    save_evaluator(str(model_dir / "finest.tar"), ev, epoch=3, iteration=15)
    cfg = parse(data_root, tmp_path / "ck", "--val_split", "test", "--seed", "11")
    spec = get_dataset_spec("synthetic", str(data_root))
    monkeypatch.chdir(model_dir)
    report = tmp_path / "evaluator_val.json"
    result = write_validation_report(cfg, spec, "finest.tar", 5, 0.75, str(report))
    assert json.loads(report.read_text()) == pytest.approx(result)
    final = load_evaluator(str(model_dir / "finest.tar"), "synthetic", data_root=str(data_root))
    want = retrieval_metrics(final, build_eval_loader(final, spec, "test", data_root=str(data_root), batch_size=5), 11)
    other_seed = retrieval_metrics(final, build_eval_loader(final, spec, "test", data_root=str(data_root),
                                                            batch_size=5), 0)
    assert want != other_seed  # the seed decides the captions drawn
    assert {k: result[k] for k in want} == pytest.approx(want)
    assert result["evaluator"] == str(model_dir / "finest.tar") and os.path.isabs(result["evaluator"])
    assert (result["epoch"], result["split"], result["batch_size"], result["samples"]) == (3, "test", 5, 5)
    assert result["chance_top1"] == pytest.approx(1 / 5) and result["best_val_loss"] == 0.75


# ---------------------------------------------------------------------------------------------------------------------
# train_evaluator.main
# ---------------------------------------------------------------------------------------------------------------------

def test_both_stages_train_the_losses_their_flags_set(data_root, tmp_path, monkeypatch):
    """Stage 1: L1 reconstruction + --lambda_sparsity * mean |latent| + --lambda_smooth * L1 of consecutive latents,
    on windows of --pretrain_window frames. Stage 2: positive + negative contrastive terms with --margin and the
    shift drawn by --neg_shift."""
    calls = []
    engine_train = train_evaluator.train

    def recording_train(model, dataset, loss_fn, *args, **kwargs):
        calls.append((model, dataset, loss_fn))
        return engine_train(model, dataset, loss_fn, *args, **kwargs)

    monkeypatch.setattr(train_evaluator, "train", recording_train)
    run_script(data_root, tmp_path, "--max_iters", "2", "--pretrain_iters", "2", "--pretrain_window", "8",
               "--lambda_sparsity", "0.3", "--lambda_smooth", "0.7", "--margin", "3", "--neg_shift", "reference")
    (decomp, windows, decomp_loss), (coemb, train_set, coemb_loss) = calls
    assert isinstance(decomp, MovementAutoencoder) and isinstance(coemb, CoEmbedding)
    assert windows[0].shape[0] == 8

    torch.manual_seed(0)
    motion = torch.randn(2, 8, 263)
    with torch.no_grad():
        loss, logs = decomp_loss(decomp, motion)
        recon, latents = decomp(motion)
    rec = (recon - motion).abs().mean()
    sparsity = latents.abs().mean()
    smooth = (latents[:, 1:] - latents[:, :-1]).abs().mean()
    assert float(smooth) > 0
    for name, value in (("rec", rec), ("sparsity", sparsity), ("smooth", smooth)):
        assert float(logs[name]) == pytest.approx(float(value), rel=1e-5), name
    assert float(loss) == pytest.approx(float(rec + 0.3 * sparsity + 0.7 * smooth), rel=1e-5)

    coemb.eval()
    batch = collate_eval([train_set[i] for i in range(8)])
    shifts = []
    for seed in range(4):
        torch.manual_seed(seed)
        with torch.no_grad():
            loss, logs = coemb_loss(coemb, batch)
            text_emb, motion_emb = coemb(batch.word_embs, batch.pos_ohot, batch.sent_lens, batch.motion,
                                         batch.m_lengths)
        torch.manual_seed(seed)
        shift = draw_shift(8, "reference")
        shifts.append(shift)
        pos, neg = contrastive_loss(text_emb, motion_emb, shift, 3.0)
        assert float(logs["loss_pos"]) == pytest.approx(float(pos), rel=1e-5)
        assert float(logs["loss_neg"]) == pytest.approx(float(neg), rel=1e-5)
        assert float(loss) == pytest.approx(float(pos + neg), rel=1e-5)
    assert len(set(shifts)) > 1


def test_a_run_without_pretraining_records_no_parent_and_reports_its_best(data_root, tmp_path):
    """--pretrain_iters 0 writes no <name>_decomp run and no parent; finest.tar is the lowest of the validations
    (as net_best_val_loss.tar), with the epoch of its step, and the report's best_val_loss is its val_loss."""
    run_script(data_root, tmp_path, "--max_iters", "10", "--pretrain_iters", "0", "--eval_every", "5",
               "--lr", "1e-2")
    run = tmp_path / "synthetic" / "text_mot_match"
    assert not (tmp_path / "synthetic" / "text_mot_match_decomp").exists()
    latest = load_checkpoint(str(run / "model" / "latest.tar"))
    assert latest["parent"] is None
    finest = load_checkpoint(str(run / "model" / "finest.tar"))
    best = load_checkpoint(str(run / "model" / "net_best_val_loss.tar"))
    assert finest["iter"] == best["step"] and finest["epoch"] == finest["iter"] // 5  # 40 clips / batch 8
    assert finest["metrics"]["val_loss"] == pytest.approx(best["metrics"]["val_loss"], rel=1e-6)
    report = json.loads((run / "eval" / "evaluator_val.json").read_text())
    assert report["best_val_loss"] == pytest.approx(finest["metrics"]["val_loss"], rel=1e-6)


def test_a_resumed_run_keeps_a_finest_better_than_its_later_validations(data_root, tmp_path):
    """A resumed co-embedding stage compares its validations with the val_loss recorded in finest.tar: a later,
    worse validation leaves finest.tar as it was, and the report gives the recorded best."""
    run_script(data_root, tmp_path, "--max_iters", "10", "--pretrain_iters", "0")
    finest_path = tmp_path / "synthetic" / "text_mot_match" / "model" / "finest.tar"
    finest = load_checkpoint(str(finest_path))
    assert finest["iter"] == 10
    finest["metrics"]["val_loss"] = 1e-6  # lower than any validation of this run
    save_checkpoint(str(finest_path), finest)
    run_script(data_root, tmp_path, "--max_iters", "20", "--is_continue")
    kept = load_checkpoint(str(finest_path))
    assert kept["iter"] == 10 and kept["metrics"]["val_loss"] == 1e-6
    report = json.loads((finest_path.parent.parent / "eval" / "evaluator_val.json").read_text())
    assert report["best_val_loss"] == 1e-6


def _forget_settings(latest_path: Path, keys: tuple[str, ...]) -> None:
    state = load_checkpoint(str(latest_path))
    for key in keys:
        state["config"].pop(key, None)
    save_checkpoint(str(latest_path), state)


def test_a_run_saved_before_its_settings_were_recorded_resumes_with_their_defaults(data_root, tmp_path):
    """A latest.tar whose config lacks margin and seed was trained with --margin 10.0 and --seed 3407: a resume
    with others is refused naming those values, one with the defaults goes on."""
    run_script(data_root, tmp_path, "--max_iters", "3", "--pretrain_iters", "0")
    latest = tmp_path / "synthetic" / "text_mot_match" / "model" / "latest.tar"
    _forget_settings(latest, ("margin", "seed"))
    with pytest.raises(CheckpointError, match=r"--margin 10\.0 \(not recorded: .*\) but 1\.0 now; --seed 3407 \(not "
                                              r"recorded: .*\) but 0 now"):
        run_script(data_root, tmp_path, "--max_iters", "4", "--is_continue", "--margin", "1", "--seed", "0")
    run_script(data_root, tmp_path, "--max_iters", "4", "--is_continue")
    assert load_checkpoint(str(latest))["step"] == 4


def test_a_resume_with_another_negative_shift_warns_naming_both(data_root, tmp_path):
    """--neg_shift changes the training objective, not the validation: a resume with another one goes on, with a
    warning in the run's train.log naming the old and new values."""
    run_script(data_root, tmp_path, "--max_iters", "3", "--pretrain_iters", "0")
    run_script(data_root, tmp_path, "--max_iters", "4", "--is_continue", "--neg_shift", "reference")
    log = (tmp_path / "synthetic" / "text_mot_match" / "train.log").read_text()
    assert "resumed with another training objective than the run was saved with: --neg_shift nonzero -> " \
           "reference" in log


def test_a_glove_run_resumed_with_a_missing_glove_folder_names_it(data_root, tmp_path):
    """A GloVe run resumed with a --glove_dir that does not exist is refused naming that folder (not as if the flag
    were left out)."""
    words = LearnedVocab.from_split(str(data_root), "train").words
    glove = tmp_path / "glove"
    write_glove_folder(str(glove), words, np.random.default_rng(0).standard_normal((len(words), 12)))
    ck = tmp_path / "ck"
    run_script(data_root, ck, "--max_iters", "3", "--pretrain_iters", "0", "--glove_dir", str(glove))
    moved = tmp_path / "moved"
    with pytest.raises(CheckpointError, match=rf"trained with the GloVe vectors of {re.escape(str(glove))}, but "
                                              rf"--glove_dir {re.escape(str(moved))} does not exist"):
        run_script(data_root, ck, "--max_iters", "4", "--is_continue", "--glove_dir", str(moved))


# ---------------------------------------------------------------------------------------------------------------------
# models/evaluator_training.py
# ---------------------------------------------------------------------------------------------------------------------

def test_the_positive_term_is_the_mean_squared_distance_of_the_pairs():
    """Pairs at distances 5 and 0: positive term (25 + 0) / 2."""
    text = torch.tensor([[0.0, 0.0], [1.0, 1.0]])
    motion = torch.tensor([[3.0, 4.0], [1.0, 1.0]])
    pos, _ = contrastive_loss(text, motion, shift=1, margin=10.0)
    assert float(pos) == pytest.approx(12.5, rel=1e-5)


# ---------------------------------------------------------------------------------------------------------------------
# Inputs that were handled badly
# ---------------------------------------------------------------------------------------------------------------------

class _Interrupted(Exception):
    pass


def test_a_resumed_first_stage_keeps_the_pretrain_length_it_was_started_with(data_root, tmp_path, monkeypatch):
    """A run stopped after stage 1 saved (--pretrain_iters 3) and resumed with --is_continue without the flag keeps
    its 3 steps, as a resumed stage 2 does; it pretrained to five epochs of windows (25 steps) instead."""
    monkeypatch.delenv(cli.TRACEBACK_ENV, raising=False)
    engine_train = train_evaluator.train

    def stop_after_stage_1(*args, **kwargs):
        engine_train(*args, **kwargs)
        raise _Interrupted

    monkeypatch.setattr(train_evaluator, "train", stop_after_stage_1)
    with pytest.raises(_Interrupted):
        cli.run_script(lambda: run_script(data_root, tmp_path, "--max_iters", "4", "--pretrain_iters", "3"),
                       prog="train_evaluator.py")
    decomp_latest = tmp_path / "synthetic" / "text_mot_match_decomp" / "model" / "latest.tar"
    assert load_checkpoint(str(decomp_latest))["step"] == 3
    assert not (tmp_path / "synthetic" / "text_mot_match").exists()

    monkeypatch.setattr(train_evaluator, "train", engine_train)
    run_script(data_root, tmp_path, "--max_iters", "4", "--is_continue")
    assert load_checkpoint(str(decomp_latest))["step"] == 3
    latest = load_checkpoint(str(tmp_path / "synthetic" / "text_mot_match" / "model" / "latest.tar"))
    assert latest["config"]["pretrain_iters"] == 3


def test_resuming_the_run_of_another_stage_names_its_stage_not_a_glove_folder(data_root, tmp_path):
    """--is_continue on a --name that holds another script's run (a tokenizer's latest.tar) is refused for its stage;
    it was refused as a GloVe run, telling the user to 'add --glove_dir None'."""
    latest = tmp_path / "synthetic" / "vq" / "model" / "latest.tar"
    latest.parent.mkdir(parents=True)
    save_checkpoint(str(latest), {"stage": "tokenizer", "model_name": "VQVAE_Tiny", "model_args": {"width": 8},
                                  "config": {"name": "vq"}, "step": 5, "model": {}})
    with pytest.raises(CheckpointError, match=r"vq.model.latest\.tar.*stage") as refused:
        run_script(data_root, tmp_path, "--max_iters", "4", "--is_continue", "--name", "vq")
    assert "--glove_dir None" not in str(refused.value)


def test_a_glove_dir_that_is_a_file_is_refused_naming_it(data_root, tmp_path):
    """--glove_dir naming a file (the vectors file instead of their folder) is an error naming that path; it was
    reported as 'does not exist' and a vocabulary was learned in place of the GloVe vectors asked for."""
    vectors_file = tmp_path / "our_vab_data.npy"
    vectors_file.write_bytes(b"not a folder")
    cfg = parse(data_root, tmp_path / "ck", "--glove_dir", str(vectors_file))
    with pytest.raises(ValueError, match=rf"--glove_dir {vectors_file}.*not a folder"):
        load_word_vectors(cfg, str(data_root))


def test_a_pretrain_window_longer_than_every_clip_names_the_flag(data_root, tmp_path):
    """--pretrain_window 200 over clips of 40-80 frames is refused naming --pretrain_window; the DatasetError said
    only 'no clip has 200 frames or more'."""
    with pytest.raises(DatasetError, match=r"--pretrain_window 200: synthetic train: no clip has 200 frames"):
        run_script(data_root, tmp_path, "--max_iters", "2", "--pretrain_iters", "2", "--pretrain_window", "200")


def test_a_pretrain_window_that_leaves_fewer_clips_than_a_batch_names_the_flag(data_root, tmp_path):
    """A window longer than all but a few clips (fewer than --batch_size 8 of the 40) is refused naming
    --pretrain_window and the clips left; the engine's refusal told the user to lower --batch_size."""
    lengths = [np.load(path, mmap_mode="r").shape[0] for path in sorted((data_root / "new_joint_vecs").glob("train*"))]
    window = next(w for w in range(4, 200, 4) if 1 <= sum(n >= w for n in lengths) < 8)
    left = sum(n >= window for n in lengths)
    with pytest.raises(DatasetError, match=rf"--pretrain_window {window}: only {left} clip\(s\) of synthetic train "
                                           rf"have {window} frames or more, fewer than --batch_size 8"):
        run_script(data_root, tmp_path, "--max_iters", "2", "--pretrain_iters", "2", "--pretrain_window",
                   str(window))


def test_no_pretraining_needs_no_pretraining_windows(data_root, tmp_path):
    """--pretrain_iters 0 skips stage 1, so its windows are never drawn: a --pretrain_window longer than every clip
    does not stop the run (it was refused before training)."""
    run_script(data_root, tmp_path, "--max_iters", "2", "--pretrain_iters", "0", "--pretrain_window", "200")
    assert (tmp_path / "synthetic" / "text_mot_match" / "model" / "finest.tar").is_file()
