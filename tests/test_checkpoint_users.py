"""A generator keeps working when the tokenizer run it was trained on is trained further (``--is_continue``): the
generator registers itself beside the tokenizer file, and the engine keeps the registered version before replacing
it (utils/checkpoint_users.py)."""

from __future__ import annotations

import json
import logging
import os

import pytest
import torch
from fault_helpers import TOKENIZER_FLAGS, run_root, write_text_encoder

import train_AE
import train_MARDM
import utils.checkpoint_users as checkpoint_users
from options.config import parse_with_config
from options.generator_options import get_train_mardm_parser
from options.tokenizer_options import get_train_ae_parser
from utils.checkpoint import CheckpointError, file_sha256, load_checkpoint
from utils.checkpoint_users import (
    USERS_FILE,
    find_kept_copy,
    keep_used_version,
    kept_copy_path,
    read_users,
    register_parent,
    register_user,
    replace_checkpoint,
)
from utils.generation import load_generator


def _write(path, text: str) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return str(path)


def test_only_a_registered_version_is_kept_and_only_once(tmp_path):
    ckpt = _write(tmp_path / "model" / "latest.tar", "version 1")
    other = _write(tmp_path / "model" / "net_best_loss.tar", "best 1")
    assert keep_used_version(ckpt) is None  # nobody registered: nothing kept
    sha = file_sha256(ckpt)
    register_user(ckpt, sha, str(tmp_path / "gen"))
    register_user(ckpt, sha, str(tmp_path / "gen"))  # twice: listed once
    assert read_users(ckpt) == {sha: [str(tmp_path / "gen")]}
    assert read_users(other) == {}
    assert keep_used_version(other) is None

    kept = keep_used_version(ckpt)
    assert kept == kept_copy_path(ckpt, sha) and kept.endswith(f"latest.{sha[:12]}.tar")
    os.replace(_write(tmp_path / "new", "version 2"), ckpt)  # what save_checkpoint does next
    assert open(kept).read() == "version 1" and find_kept_copy(ckpt, sha) == kept
    assert keep_used_version(ckpt) is None  # version 2 is nobody's
    assert sorted(os.listdir(tmp_path / "model")) == sorted(
        ["latest.tar", os.path.basename(kept), "net_best_loss.tar", USERS_FILE])

    with open(kept, "w") as f:  # a kept copy edited by hand is not the recorded version
        f.write("something else")
    assert find_kept_copy(ckpt, sha) is None


def test_a_damaged_or_unwritable_record_never_stops_training(tmp_path, caplog, monkeypatch):
    ckpt = _write(tmp_path / "model" / "latest.tar", "version 1")
    _write(tmp_path / "model" / USERS_FILE, "{not json")
    with caplog.at_level(logging.WARNING):
        assert keep_used_version(ckpt) is None
    assert "unreadable record" in caplog.text and USERS_FILE in caplog.text
    caplog.clear()

    def read_only(*args, **kwargs):
        raise PermissionError(13, "Permission denied", str(tmp_path / "model" / USERS_FILE))

    monkeypatch.setattr(checkpoint_users, "atomic_write", read_only)  # a folder this user may not write
    with caplog.at_level(logging.WARNING):
        register_user(ckpt, file_sha256(ckpt), str(tmp_path / "gen"))
    assert "could not record" in caplog.text and "without keeping this version" in caplog.text


@pytest.mark.parametrize("record", [{"latest.tar": {"abc": None}}, {"latest.tar": {"abc": "x"}},
                                    {"latest.tar": ["abc"]}, ["latest.tar"]])
def test_a_record_of_another_shape_is_replaced_not_trusted(tmp_path, record):
    ckpt = _write(tmp_path / "model" / "latest.tar", "version 1")
    _write(tmp_path / "model" / USERS_FILE, json.dumps(record))
    register_user(ckpt, "abc", str(tmp_path / "gen"))
    assert read_users(ckpt) == {"abc": [str(tmp_path / "gen")]}


def test_a_generator_given_a_link_keeps_the_version_beside_the_real_file(tmp_path):
    ckpt = _write(tmp_path / "ck" / "model" / "latest.tar", "version 1")
    (tmp_path / "links").mkdir()
    link = tmp_path / "links" / "tok.tar"
    link.symlink_to(ckpt)
    sha = file_sha256(ckpt)
    register_parent({"path": str(link), "sha256": sha}, str(tmp_path / "gen"))
    assert os.listdir(tmp_path / "links") == ["tok.tar"] and read_users(ckpt) == {sha: [str(tmp_path / "gen")]}
    replace_checkpoint(ckpt, {"step": 2})
    assert find_kept_copy(str(link), sha) == kept_copy_path(ckpt, sha)
    assert open(kept_copy_path(ckpt, sha)).read() == "version 1"


def _tokenizer_args(data_root: str, ckpt: str, *extra: str) -> object:
    return parse_with_config(get_train_ae_parser(), [
        *TOKENIZER_FLAGS, "--data_root", data_root, "--model", "FSQ_AE_Tiny", "--max_iters", "4", "--save_every", "4",
        "--eval_every", "4", "--checkpoints_dir", ckpt, "--name", "fsq", *extra])


def _generator_args(data_root: str, ckpt: str, clip: str, *extra: str) -> object:
    return parse_with_config(get_train_mardm_parser(), [
        "--dataset_name", "synthetic", "--data_root", data_root, "--checkpoints_dir", ckpt, "--name", "gen",
        "--model", "FSQ-MARDM-SiT-Tiny", "--text_encoder", "clip", "--clip_path", clip, "--batch_size", "8",
        "--num_workers", "0", "--save_every", "2", "--eval_every", "2", "--val_batches", "1", "--log_every", "1",
        "--warm_up_iter", "1", *extra])


def test_generator_still_loads_and_resumes_after_its_tokenizer_is_trained_further(tmp_path, synthetic_root):
    ckpt = str(tmp_path / "checkpoints")
    clip = write_text_encoder(tmp_path / "clip")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        train_AE.main(_tokenizer_args(synthetic_root, ckpt))
        tok = str(run_root(ckpt, "fsq") / "model" / "latest.tar")
        sha = file_sha256(tok)
        train_MARDM.main(_generator_args(synthetic_root, ckpt, clip, "--ae_ckpt", tok, "--max_iters", "2"))
        gen_run = str(run_root(ckpt, "gen"))
        with open(run_root(ckpt, "fsq") / "model" / USERS_FILE) as f:
            assert json.load(f) == {"latest.tar": {sha: [os.path.abspath(gen_run)]}}

        train_AE.main(_tokenizer_args(synthetic_root, ckpt, "--is_continue", "--max_iters", "8"))
    finally:
        torch.set_num_threads(threads)
    assert load_checkpoint(tok)["step"] == 8 and file_sha256(tok) != sha
    kept = kept_copy_path(tok, sha)
    assert file_sha256(kept) == sha and load_checkpoint(kept)["step"] == 4

    gen = os.path.join(gen_run, "model", "latest.tar")
    assert load_generator(gen).info["tokenizer"]["sha256"] == sha  # decodes with the version it was trained on

    # Resuming the generator on the tokenizer's new version is refused, naming the kept one; on that one it resumes.
    with pytest.raises(CheckpointError, match=rf"resume with that version, kept as {kept} \(--ae_ckpt"):
        train_MARDM.main(_generator_args(synthetic_root, ckpt, clip, "--ae_ckpt", tok, "--max_iters", "4",
                                         "--is_continue"))
    train_MARDM.main(_generator_args(synthetic_root, ckpt, clip, "--ae_ckpt", kept, "--max_iters", "4",
                                     "--is_continue"))
    assert load_checkpoint(gen)["step"] == 4
