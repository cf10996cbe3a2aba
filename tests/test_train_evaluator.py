"""train_evaluator.py: a few steps on a tiny dataset lower the contrastive loss and write a loadable evaluator."""

from __future__ import annotations

import argparse
import json
import re
import signal
from pathlib import Path

import numpy as np
import pytest
import torch

import train_evaluator
from models.evaluator import TextMotionEvaluator
from models.evaluator_training import CoEmbedding, MovementAutoencoder, contrastive_loss, draw_shift
from options.config import parse_with_config
from options.eval_options import get_train_evaluator_parser
from utils import cli
from utils.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from utils.evaluator import load_evaluator
from utils.normalization import DatasetError
from utils.run_dir import RunDirError
from utils.user_errors import TRACEBACK_ENV
from utils.word_vectorizer import (
    SOURCE_GLOVE_FOLDER,
    SOURCE_LEARNED,
    LearnedVocab,
    WordVectorizer,
    vectorizer_digest,
    write_glove_folder,
)

ACTIONS = ("walk", "run", "jump", "wave")


def write_dataset(root: Path, splits: dict[str, int], dim: int = 263, seed: int = 0) -> None:
    """Clips of 40-80 frames whose oscillation frequency is set by the action word of their captions."""
    rng = np.random.default_rng(seed)
    (root / "new_joint_vecs").mkdir(parents=True)
    (root / "texts").mkdir()
    frames = []
    for split, count in splits.items():
        names = [f"{split}{i:03d}" for i in range(count)]
        for clip_id in names:
            k = int(rng.integers(len(ACTIONS)))
            t = np.arange(int(rng.integers(40, 80)))[:, None] / 20.0
            motion = np.sin(t * 2 * (k + 1) + rng.standard_normal(dim)) + 0.2 * rng.standard_normal((len(t), dim))
            np.save(root / "new_joint_vecs" / f"{clip_id}.npy", motion.astype(np.float32))
            frames.append(motion)
            word = ACTIONS[k]
            (root / "texts" / f"{clip_id}.txt").write_text(
                f"a person does {word}.#a/DET person/NOUN {word}/VERB#0.0#0.0\n"
                f"they {word} here.#they/PRON {word}/VERB here/ADV#0.0#0.0\n")
        (root / f"{split}.txt").write_text("".join(i + "\n" for i in names))
    frames = np.concatenate(frames)
    np.save(root / "Mean.npy", frames.mean(0).astype(np.float32))
    np.save(root / "Std.npy", (frames.std(0) + 0.1).astype(np.float32))


@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("synthetic")
    write_dataset(root, {"train": 40, "val": 33, "test": 4})
    return root


def parse(data_root: Path, ck: Path, *extra: str) -> argparse.Namespace:
    argv = ["--dataset_name", "synthetic", "--data_root", str(data_root), "--checkpoints_dir", str(ck),
            "--sizes", "tiny", "--batch_size", "8", "--num_workers", "0", "--lr", "1e-3", "--log_every", "5",
            "--eval_every", "10", "--save_every", "10", *extra]
    return parse_with_config(get_train_evaluator_parser(), argv)


def run_script(data_root: Path, ck: Path, *extra: str) -> dict:
    return train_evaluator.main(parse(data_root, ck, *extra))


def steps(log: Path) -> list[dict]:
    return [json.loads(line) for line in log.read_text().splitlines()]


def test_training_lowers_loss_and_writes_the_official_layout(data_root, tmp_path):
    ck = tmp_path / "checkpoints"
    result = run_script(data_root, ck, "--max_iters", "20", "--pretrain_iters", "4")
    run = ck / "synthetic" / "text_mot_match"
    finest = run / "model" / "finest.tar"
    assert finest.is_file() and (run / "model" / "latest.tar").is_file()
    assert (ck / "synthetic" / "text_mot_match_decomp" / "model" / "latest.tar").is_file()

    losses = [row["loss"] for row in steps(run / "model" / "train_log.jsonl")]
    assert len(losses) == 20
    assert np.mean(losses[-5:]) < losses[0]

    state = load_checkpoint(str(finest))
    assert {"text_encoder", "motion_encoder", "movement_encoder", "epoch", "iter"} <= set(state)
    assert state["word_vectors"]["source"] == SOURCE_LEARNED
    ev = load_evaluator(str(ck / "synthetic"), "synthetic", data_root=str(data_root))
    assert ev.source == SOURCE_LEARNED and ev.path == str(finest)
    # The evaluator statistics are the dataset's with the root and contact std divided by the feature bias.
    std = np.load(data_root / "Std.npy")
    np.testing.assert_allclose(ev.std[:4], std[:4] / 5, rtol=1e-6)
    np.testing.assert_allclose(ev.std[4:259], std[4:259], rtol=1e-6)
    # ... and also lie in meta/, as in the released layout.
    for name, values in (("mean", ev.mean), ("std", ev.std)):
        saved = np.load(run / "meta" / f"{name}.npy")
        assert saved.dtype == np.float32 and np.array_equal(saved, values)

    val = json.loads((run / "eval" / "evaluator_val.json").read_text())
    assert val["batch_size"] == 32 and val["samples"] == 32 and val["chance_top1"] == pytest.approx(1 / 32)
    for key in ("top1", "top2", "top3"):
        assert 0 <= val[key] <= 1 and val[key] == result[key]
    assert val["top1"] <= val["top2"] <= val["top3"]

    # The movement encoder was pretrained and then frozen: the evaluator carries the decomp stage's weights.
    decomp = load_checkpoint(str(ck / "synthetic" / "text_mot_match_decomp" / "model" / "latest.tar"))
    for key, value in state["movement_encoder"].items():
        assert torch.equal(value, decomp["model"][f"evaluator.movement_encoder.{key}"])

    # Refused starts leave the run's opt.yaml as it was: a new run over it, a resume with other widths.
    config = (run / "opt.yaml").read_text()
    with pytest.raises(RunDirError, match="--is_continue"):
        run_script(data_root, ck, "--max_iters", "20", "--lr", "5e-4")
    with pytest.raises(CheckpointError, match="model_args"):
        run_script(data_root, ck, "--max_iters", "25", "--sizes", "small", "--is_continue")
    # Another validation split or margin would score validations against a best (finest.tar) taken otherwise.
    with pytest.raises(CheckpointError, match=r"trained with --val_split val but test now; --margin 10\.0 but 5\.0 "
                                              r"now\. .*add --val_split val --margin 10\.0"):
        run_script(data_root, ck, "--max_iters", "25", "--is_continue", "--val_split", "test", "--margin", "5")
    assert (run / "opt.yaml").read_text() == config

    # Resume continues the same run to the new step count.
    run_script(data_root, ck, "--max_iters", "25", "--pretrain_iters", "4", "--is_continue")
    resumed = steps(run / "model" / "train_log.jsonl")
    assert [row["step"] for row in resumed] == list(range(1, 26))
    assert resumed[:20] == steps_prefix(losses)


def test_a_run_stopped_before_stage_2_saved_resumes_with_is_continue(data_root, tmp_path):
    """Stopped after the movement autoencoder's first save and before the co-embedding's: --is_continue resumes the
    first stage and starts the second (a new start would be refused, as the first stage has a checkpoint)."""
    ck = tmp_path / "checkpoints"
    run_script(data_root, ck, "--max_iters", "10", "--pretrain_iters", "4")
    run = ck / "synthetic" / "text_mot_match"
    for name in ("latest.tar", "finest.tar", "net_best_val_loss.tar", "train_log.jsonl"):
        (run / "model" / name).unlink()
    with pytest.raises(RunDirError, match="text_mot_match_decomp.model.latest.tar exists: pass --is_continue"):
        run_script(data_root, ck, "--max_iters", "10", "--pretrain_iters", "4")
    run_script(data_root, ck, "--max_iters", "10", "--pretrain_iters", "4", "--is_continue")
    assert [row["step"] for row in steps(run / "model" / "train_log.jsonl")] == list(range(1, 11))
    assert (run / "model" / "finest.tar").is_file()
    # Neither stage's checkpoint (a misspelt --name): the main run's missing latest.tar is named.
    with pytest.raises(CheckpointError, match=r"no checkpoint to resume at .*typo.model.latest\.tar"):
        run_script(data_root, ck, "--max_iters", "10", "--name", "typo", "--is_continue")
    assert not (ck / "synthetic" / "typo").exists()


def steps_prefix(losses: list[float]) -> list[dict]:
    return [{"step": i + 1, "loss": loss, "lr": 1e-3} for i, loss in enumerate(losses)]


def test_glove_vectors_are_used_when_the_folder_exists(data_root, tmp_path):
    words = LearnedVocab.from_split(str(data_root), "train").words
    glove = tmp_path / "glove"
    write_glove_folder(str(glove), words, np.random.default_rng(0).standard_normal((len(words), 12)))
    ck = tmp_path / "checkpoints"
    run_script(data_root, ck, "--max_iters", "3", "--pretrain_iters", "0", "--glove_dir", str(glove))
    state = load_checkpoint(str(ck / "synthetic" / "text_mot_match" / "model" / "finest.tar"))
    assert state["word_vectors"]["source"] == SOURCE_GLOVE_FOLDER and state["model_args"]["dim_word"] == 12
    assert state["model_args"]["vocab_size"] is None
    # --dim_word is a learned embedding's width: one that contradicts the GloVe vectors' is refused, naming both.
    with pytest.raises(ValueError, match=rf"--dim_word is 16, but the GloVe vectors in {re.escape(str(glove))} are 12 "
                                         "wide"):
        run_script(data_root, tmp_path / "other", "--max_iters", "3", "--pretrain_iters", "0", "--glove_dir",
                   str(glove), "--dim_word", "16")
    assert not list((tmp_path / "other").rglob("*.tar"))


def test_the_glove_vectors_are_recorded_and_others_refused_at_evaluation_and_resume(data_root, tmp_path):
    """The checkpoint kept only {'source': 'official GloVe'}: vectors of another folder of the same width were
    accepted silently by evaluation and by --is_continue, and a resume without --glove_dir was refused only for its
    dim_word."""
    words = LearnedVocab.from_split(str(data_root), "train").words
    glove, same, other = (tmp_path / name for name in ("glove", "same", "other"))
    for folder, seed in ((glove, 0), (same, 0), (other, 1)):
        write_glove_folder(str(folder), words, np.random.default_rng(seed).standard_normal((len(words), 12)))
    ck = tmp_path / "checkpoints"
    run_script(data_root, ck, "--max_iters", "3", "--pretrain_iters", "0", "--glove_dir", str(glove))
    run = ck / "synthetic" / "text_mot_match" / "model"
    digest, other_digest = (vectorizer_digest(WordVectorizer(str(f))) for f in (glove, other))
    for name in ("finest.tar", "latest.tar"):
        record = load_checkpoint(str(run / name))["word_vectors"]
        assert record["source"] == "GloVe" and record["glove_dir"] == str(glove) and record["sha256"] == digest
    ev = load_evaluator(str(ck / "synthetic"), "synthetic", data_root=str(data_root))
    assert ev.word_vectorizer(str(same)).dim_word == 12  # the same vectors in another folder
    with pytest.raises(ValueError, match=rf"finest\.tar: word_vectors\.sha256 is {digest}, the digest of the GloVe "
                                         rf"vectors of {re.escape(str(glove))} it was trained with, but the vectors of "
                                         rf"{re.escape(str(other))} have {other_digest}"):
        ev.word_vectorizer(str(other))
    with pytest.raises(CheckpointError, match=rf"trained with the GloVe vectors of {re.escape(str(glove))} "
                                              rf"\(word_vectors\.sha256 {digest}\), but those of --glove_dir "
                                              rf"{re.escape(str(other))} differ \({other_digest}\)"):
        run_script(data_root, ck, "--max_iters", "4", "--is_continue", "--glove_dir", str(other))
    missing = rf"trained with the GloVe vectors of {re.escape(str(glove))}, but no --glove_dir is given, .*add " \
              rf"--glove_dir {re.escape(str(glove))}"
    with pytest.raises(CheckpointError, match=missing):
        run_script(data_root, ck, "--max_iters", "4", "--is_continue")
    # A run saved before the record is taken as GloVe by its model arguments: the missing flag is still named.
    latest = load_checkpoint(str(run / "latest.tar"))
    del latest["word_vectors"]
    save_checkpoint(str(run / "latest.tar"), latest)
    with pytest.raises(CheckpointError, match=missing):
        run_script(data_root, ck, "--max_iters", "4", "--is_continue")
    run_script(data_root, ck, "--max_iters", "4", "--is_continue", "--glove_dir", str(same))
    assert load_checkpoint(str(run / "latest.tar"))["word_vectors"]["sha256"] == digest


@pytest.mark.parametrize("val_count", [1, 2])
def test_a_validation_split_under_three_samples_is_refused_before_training(tmp_path, val_count):
    root = tmp_path / "tiny_val"
    write_dataset(root, {"train": 12, "val": val_count})
    ck = tmp_path / "checkpoints"
    expected = rf"{re.escape(str(root))}: the val split has {val_count} text-motion sample\(s\); expected at least 3"
    with pytest.raises(DatasetError, match=expected):
        run_script(root, ck, "--max_iters", "2", "--pretrain_iters", "2")
    # Refused before either stage trained: no checkpoint was written.
    assert not list(ck.rglob("*.tar"))


def test_a_start_refused_in_stage_1_leaves_no_run_folder(data_root, tmp_path, monkeypatch):
    # The movement autoencoder's run folder (<name>_decomp) was made by its log file before the engine counted it as
    # this start's, so a refusal in stage 1 (here a batch larger than the training set) left it behind.
    from utils import cli

    ck = tmp_path / "checkpoints"
    monkeypatch.delenv(cli.TRACEBACK_ENV, raising=False)
    with pytest.raises(SystemExit, match="fewer than one batch of 500"):
        cli.run_script(lambda: run_script(data_root, ck, "--max_iters", "2", "--pretrain_iters", "2",
                                          "--batch_size", "500"), prog="train_evaluator.py")
    assert not ck.exists()


def test_contrastive_loss_and_negative_shift():
    text = torch.tensor([[0.0, 0.0], [3.0, 4.0], [6.0, 8.0]])
    pos, neg = contrastive_loss(text, text.clone(), shift=1, margin=10.0)
    assert float(pos) == pytest.approx(0.0, abs=1e-6)
    # Distances to the shifted motions: |t0-t1| = 5, |t1-t2| = 5, |t2-t0| = 10 -> clamp(10 - d)^2 = 25, 25, 0.
    assert float(neg) == pytest.approx(50 / 3, rel=1e-5)
    torch.manual_seed(0)
    shifts = {draw_shift(4, "nonzero") for _ in range(200)}
    assert shifts == {1, 2, 3}
    assert {draw_shift(4, "reference") for _ in range(200)} == {0, 1, 2}


def _untrained(model: torch.nn.Module) -> list[str]:
    """Trainable parameters that got no gradient: under DDP, a step stops when any exists."""
    return [name for name, p in model.named_parameters() if p.requires_grad and p.grad is None]


def test_each_stage_trains_exactly_the_parameters_its_loss_reaches():
    torch.manual_seed(0)
    evaluator = TextMotionEvaluator(dim_pose=12, dim_word=6, dim_pos_ohot=15, dim_movement_enc_hidden=8,
                                    dim_movement_latent=8, dim_text_hidden=8, dim_motion_hidden=8, dim_coemb_hidden=8)
    motion = torch.randn(2, 16, 12)
    decomp = MovementAutoencoder(evaluator, hidden=8, latent=8)
    recon, _ = decomp(motion)
    (recon - motion).abs().mean().backward()
    assert not _untrained(decomp)
    assert any(p.requires_grad for p in evaluator.movement_encoder.parameters())

    model = CoEmbedding(evaluator)
    model.zero_grad(set_to_none=True)
    text_emb, motion_emb = model(torch.randn(2, 5, 6), torch.randn(2, 5, 15), torch.tensor([5, 3]), motion,
                                 torch.tensor([16, 12]))
    sum(contrastive_loss(text_emb, motion_emb, 1, 10.0)).backward()
    assert not _untrained(model)
    trained = {name.split(".")[1] for name, p in model.named_parameters() if p.requires_grad}
    assert trained == {"text_encoder", "motion_encoder"}


@pytest.mark.parametrize("flag,value,expected", [
    ("--pretrain_window", "0", "--pretrain_window must be a positive multiple of 4"),
    ("--pretrain_window", "-8", "--pretrain_window must be a positive multiple of 4"),
])
def test_typed_zero_or_negative_sizes_are_refused(data_root, tmp_path, flag, value, expected):
    """A typed 0 is the user's value, not a blank: refused rather than replaced by a default."""
    with pytest.raises(ValueError, match=expected):
        run_script(data_root, tmp_path / "checkpoints", "--max_iters", "2", "--pretrain_iters", "2", flag, value)


@pytest.mark.parametrize("batch_size,processes", [(1, "1"), (4, "4")])
def test_a_batch_of_one_caption_per_process_is_refused_before_training(data_root, tmp_path, monkeypatch,
                                                                       batch_size, processes):
    """The negatives are the other captions of a process's batch: with one per process there are none, which
    torch's random draw reported only at the first step of stage 2, after the movement pre-training."""
    monkeypatch.setenv("WORLD_SIZE", processes)
    ck = tmp_path / "checkpoints"
    with pytest.raises(ValueError, match=rf"--batch_size {batch_size} over {processes} process\(es\) gives 1 "
                                         r"caption\(s\) per process; the contrastive loss needs at least 2"):
        run_script(data_root, ck, "--batch_size", str(batch_size), "--max_iters", "2", "--pretrain_iters", "2")
    assert not list(ck.rglob("*.tar"))


def _groups_equal(a: dict, b: dict) -> bool:
    return all(torch.equal(a[g][k], b[g][k]) for g in ("text_encoder", "motion_encoder") for k in a[g])


def test_a_run_continued_past_its_end_keeps_the_finest_of_a_run_straight_through(data_root, tmp_path):
    """Each invocation's final state competed for finest.tar: a run stopped at --max_iters 17, off the validation
    schedule (every 10 steps), and continued to 20 kept step 17, which a run of 20 never scores."""
    flags = ("--pretrain_iters", "4", "--lr", "1e-2")
    run_script(data_root, tmp_path / "straight", "--max_iters", "20", *flags)
    run_script(data_root, tmp_path / "split", "--max_iters", "17", *flags)
    run_script(data_root, tmp_path / "split", "--max_iters", "20", "--is_continue", *flags)
    a, b = (load_checkpoint(str(tmp_path / name / "synthetic" / "text_mot_match" / "model" / "finest.tar"))
            for name in ("straight", "split"))
    assert a["iter"] == b["iter"] and a["iter"] % 10 == 0 and _groups_equal(a, b)


def test_a_run_shorter_than_one_validation_scores_the_weights_validations_score(data_root, tmp_path):
    """It still gets finest.tar from its final state; with --ema_decay that is the EMA weights, as every validation
    of the engine scores them (the raw ones were saved)."""
    run_script(data_root, tmp_path, "--max_iters", "6", "--pretrain_iters", "4", "--ema_decay", "0.5")
    model_dir = tmp_path / "synthetic" / "text_mot_match" / "model"
    finest, latest = load_checkpoint(str(model_dir / "finest.tar")), load_checkpoint(str(model_dir / "latest.tar"))
    for group in ("text_encoder", "motion_encoder"):
        for key, value in finest[group].items():
            assert torch.equal(value, latest["ema"][f"evaluator.{group}.{key}"]), (group, key)
    assert not all(torch.equal(latest["ema"][k], latest["model"][k]) for k in latest["ema"])


def test_weight_decay_is_applied_not_only_recorded(data_root, tmp_path):
    """--weight_decay was recorded in opt.yaml and the checkpoints but both stages' Adam ignored it."""
    run_script(data_root, tmp_path / "plain", "--max_iters", "4", "--pretrain_iters", "4")
    run_script(data_root, tmp_path / "decay", "--max_iters", "4", "--pretrain_iters", "4", "--weight_decay", "0.5")
    plain, decay = (load_checkpoint(str(tmp_path / name / "synthetic" / "text_mot_match" / "model" / "latest.tar"))
                    for name in ("plain", "decay"))
    assert [g["weight_decay"] for g in decay["optimizer"]["param_groups"]] == [0.5]
    assert [g["weight_decay"] for g in plain["optimizer"]["param_groups"]] == [0]
    assert not all(torch.equal(plain["model"][k], decay["model"][k]) for k in plain["model"])


@pytest.mark.parametrize("placed", [("model", "finest.tar"), ("meta", "mean.npy"), ("meta", "std.npy")])
def test_a_new_run_refuses_a_folder_holding_a_placed_evaluator(data_root, tmp_path, placed):
    """The released evaluator is placed at text_mot_match, the default --name, without a run's latest.tar: a new run
    there would overwrite its files (meta/ at start-up, finest.tar at the first validation, or report it as its own),
    so it is refused before anything is written."""
    run = tmp_path / "checkpoints" / "synthetic" / "text_mot_match"
    (run / placed[0]).mkdir(parents=True)
    (run / placed[0] / placed[1]).write_bytes(b"placed by hand")
    with pytest.raises(RunDirError, match=rf"{placed[1]} exists without .*latest\.tar: .*choose another --name"):
        run_script(data_root, tmp_path / "checkpoints", "--max_iters", "4", "--pretrain_iters", "2")
    # Only the lock that every start takes on an existing run folder is added.
    assert sorted(p.relative_to(run).as_posix() for p in run.rglob("*")) == [".lock", placed[0], "/".join(placed)]
    assert (run / placed[0] / placed[1]).read_bytes() == b"placed by hand"
    assert not (run.parent / "text_mot_match_decomp").exists()


def test_a_start_killed_before_its_first_checkpoint_is_not_taken_for_a_placed_evaluator(data_root, tmp_path):
    """A start killed (SIGKILL, out of memory) after it wrote opt.yaml and meta/ and before any checkpoint leaves them
    behind without latest.tar, as a placed evaluator's meta/ is: the next start was refused, and --is_continue had
    nothing to resume."""
    run = tmp_path / "checkpoints" / "synthetic" / "text_mot_match"
    (run / "meta").mkdir(parents=True)
    for name in ("mean.npy", "std.npy"):
        (run / "meta" / name).write_bytes(b"written by the killed start")
    (run / "opt.yaml").write_text("name: text_mot_match\n")
    (run / "train.log").write_text("")
    run_script(data_root, tmp_path / "checkpoints", "--max_iters", "4", "--pretrain_iters", "2")
    assert (run / "model" / "latest.tar").is_file() and (run / "model" / "finest.tar").is_file()


def test_a_stop_after_the_first_stage_saved_says_to_resume_it(data_root, tmp_path, monkeypatch, capsys):
    """SIGTERM once the movement autoencoder (<name>_decomp) has saved and before the co-embedding has: the new main
    run folder is removed, but the message says to resume the first stage with --is_continue (a new start would be
    refused), and that resume finishes the run."""
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # as a script starts (under nohup it could be ignored here)
    monkeypatch.delenv(TRACEBACK_ENV, raising=False)
    engine_train = train_evaluator.train

    def train_then_stop(*args, **kwargs):
        result = engine_train(*args, **kwargs)
        signal.raise_signal(signal.SIGTERM)  # its handler stops the script before the second stage starts
        return result

    ck = tmp_path / "checkpoints"
    flags = ("--max_iters", "4", "--pretrain_iters", "2", "--name", "K4")
    monkeypatch.setattr(train_evaluator, "train", train_then_stop)
    with pytest.raises(SystemExit) as exit_info:
        cli.run_script(lambda: train_evaluator.main(parse(data_root, ck, *flags)), prog="train_evaluator.py",
                       resume=cli.RESUME_TRAINING)
    assert exit_info.value.code == 128 + signal.SIGTERM
    run, decomp_latest = ck / "synthetic" / "K4", ck / "synthetic" / "K4_decomp" / "model" / "latest.tar"
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        f"train_evaluator.py: stopped by SIGTERM; nothing was saved in the new run folder {run}, so it was removed, "
        f"but {decomp_latest} was: rerun with --is_continue to resume from it")
    assert not run.exists() and decomp_latest.is_file()

    monkeypatch.setattr(train_evaluator, "train", engine_train)
    run_script(data_root, ck, *flags, "--is_continue")
    assert (run / "model" / "finest.tar").is_file() and load_checkpoint(str(decomp_latest))["step"] == 2


def test_a_resumed_second_stage_keeps_the_movement_encoder_it_froze(data_root, tmp_path):
    """Once the co-embedding stage has a checkpoint, the movement encoder is fixed (that checkpoint holds it): a resume
    with another --pretrain_iters is refused, and one without the flag leaves the first stage's run untouched."""
    ck = tmp_path / "checkpoints"
    run_script(data_root, ck, "--max_iters", "10", "--pretrain_iters", "4")
    run, decomp = ck / "synthetic" / "text_mot_match", ck / "synthetic" / "text_mot_match_decomp"
    decomp_files = {p: p.read_bytes() for p in (decomp / "model").iterdir()}
    config = (run / "opt.yaml").read_text()
    with pytest.raises(CheckpointError, match=r"text_mot_match.model.latest\.tar: .*--pretrain_iters 4 steps, but "
                                              r"--pretrain_iters is 8 now"):
        run_script(data_root, ck, "--max_iters", "12", "--pretrain_iters", "8", "--is_continue")
    assert (run / "opt.yaml").read_text() == config
    # Left out, the flag would default to five epochs of windows (25 steps here): the run's 4 are kept instead.
    run_script(data_root, ck, "--max_iters", "12", "--is_continue")
    assert {p: p.read_bytes() for p in (decomp / "model").iterdir()} == decomp_files
    latest = load_checkpoint(str(run / "model" / "latest.tar"))
    assert latest["step"] == 12 and latest["config"]["pretrain_iters"] == 4
    assert latest["parent"] == str(decomp / "model" / "latest.tar")
    run_script(data_root, ck, "--max_iters", "14", "--pretrain_iters", "4", "--is_continue")


def test_a_resume_with_another_seed_is_refused(data_root, tmp_path):
    """The validation batches (crops, captions) are drawn from --seed: a resume with another would compare its
    validations with a finest.tar loss taken on other batches."""
    ck = tmp_path / "checkpoints"
    run_script(data_root, ck, "--max_iters", "10", "--pretrain_iters", "2", "--seed", "3")
    config = (ck / "synthetic" / "text_mot_match" / "opt.yaml").read_text()
    with pytest.raises(CheckpointError, match=r"text_mot_match.model.latest\.tar: the run being resumed was trained "
                                              r"with --seed 3 but 5 now\. .*add --seed 3"):
        run_script(data_root, ck, "--max_iters", "12", "--pretrain_iters", "2", "--seed", "5", "--is_continue")
    assert (ck / "synthetic" / "text_mot_match" / "opt.yaml").read_text() == config
    run_script(data_root, ck, "--max_iters", "12", "--pretrain_iters", "2", "--seed", "3", "--is_continue")


_TINY_SIZES = dict(dim_word=6, dim_pos_ohot=15, dim_movement_enc_hidden=8, dim_movement_latent=8, dim_text_hidden=8,
               dim_motion_hidden=8, dim_coemb_hidden=8)


def _hinge_reference(text, motion, shift, margin):
    terms = [max(margin - float(torch.linalg.vector_norm(text[i] - motion[(i + shift) % len(text)])), 0.0) ** 2
             for i in range(len(text))]
    return sum(terms) / len(terms)


@pytest.mark.parametrize("shift", [1, 2])
def test_negative_of_caption_i_is_motion_i_plus_shift(shift):
    text = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 2.0]])
    motion = torch.tensor([[5.0, 0.0], [0.0, 0.0], [0.0, 1.0]])
    _, neg = contrastive_loss(text, motion, shift=shift, margin=10.0)
    assert float(neg) == pytest.approx(_hinge_reference(text, motion, shift, 10.0), rel=1e-5)


def test_negatives_farther_than_the_margin_cost_nothing():
    text = torch.tensor([[0.0, 0.0], [20.0, 0.0]])
    _, neg = contrastive_loss(text, text.clone(), shift=1, margin=10.0)
    assert float(neg) == 0.0


def test_frozen_movement_encoder_runs_without_dropout_in_stage_2():
    torch.manual_seed(0)
    ev = TextMotionEvaluator(dim_pose=12, **_TINY_SIZES)
    model = CoEmbedding(ev).train()
    assert model.training and ev.text_encoder.training and not ev.movement_encoder.training
    args = (torch.randn(2, 5, 6), torch.randn(2, 5, 15), torch.tensor([5, 3]), torch.randn(2, 16, 12),
            torch.tensor([16, 12]))
    first = model(*args)[1]
    second = model(*args)[1]
    assert torch.equal(first, second)  # no dropout anywhere on the motion path
