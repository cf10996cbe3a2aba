"""Checkpoints through the real entry points (load_tokenizer, train_MARDM.py, load_generator, --is_continue of
train_AE.py and train_MARDM.py): every file the scripts write loads with weights_only=True; a file carrying a pickled
object that would run code, or a truncated one, is refused with a clear message naming it; a checkpoint of another
model, dataset, feature width or text encoder, and a resume with other settings, fail naming both sides and leave
the run's files as they were. A full disk or an unwritable checkpoints folder stops a script before training."""

from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from fault_helpers import (
    TOKENIZER_FLAGS,
    run_root,
    run_script,
    synthetic_copy,
    tail,
    write_text_encoder,
    write_tokenizer,
)

import train_AE
import train_MARDM
import utils.run_dir as run_dir_module
from models.loader import load_tokenizer
from models.text_encoders import TextEncoder
from models.tokenizers import build_tokenizer
from options.config import parse_with_config
from options.generator_options import get_train_mardm_parser
from options.tokenizer_options import get_train_ae_parser
from utils.checkpoint import CheckpointError, load_checkpoint
from utils.generation import load_generator
from utils.motion_files import CACHE_DIR
from utils.run_dir import RunDirError

REFUSED = {"pickled": "refused to load: the file holds Python objects that could run code",
           "truncated": r"not a readable checkpoint \(truncated or corrupt\?\)"}


def _tokenizer_args(data_root: str, ckpt: str, *extra: str) -> object:
    return parse_with_config(get_train_ae_parser(), [
        *TOKENIZER_FLAGS, "--data_root", data_root, "--model", "FSQ_AE_Tiny", "--max_iters", "4", "--save_every", "4",
        "--eval_every", "4", "--checkpoints_dir", ckpt, "--name", "fsq", *extra])


def _generator_args(runs: dict, ckpt: str, name: str = "gen", *extra: str) -> object:
    return parse_with_config(get_train_mardm_parser(), [
        "--dataset_name", "synthetic", "--data_root", runs["data"], "--checkpoints_dir", ckpt, "--name", name,
        "--model", "FSQ-MARDM-SiT-Tiny", "--text_encoder", "clip", "--clip_path", runs["clip"], "--batch_size", "8",
        "--num_workers", "0", "--max_iters", "2", "--save_every", "2", "--eval_every", "2", "--val_batches", "1",
        "--log_every", "1", "--warm_up_iter", "1", "--ema_decay", "0.9", *extra])


@pytest.fixture(scope="module")
def runs(tmp_path_factory, synthetic_root):
    """A trained tokenizer run ``fsq`` and a generator run ``gen`` on it (with a caption cache), written by the
    scripts' own ``main``."""
    base = tmp_path_factory.mktemp("ckpt_faults")
    ckpt = str(base / "checkpoints")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        clip = write_text_encoder(base / "clip")
        train_AE.main(_tokenizer_args(synthetic_root, ckpt))
        runs = {"base": base, "ckpt": ckpt, "data": synthetic_root, "clip": clip, "cache": str(base / "captions.npz"),
                "tok_run": run_root(ckpt, "fsq"), "gen_run": run_root(ckpt, "gen")}
        train_MARDM.main(_generator_args(runs, ckpt, "gen", "--ae_name", "fsq", "--text_cache", runs["cache"]))
    finally:
        torch.set_num_threads(threads)
    runs["tok"] = str(runs["tok_run"] / "model" / "net_best_loss.tar")
    runs["gen"] = str(runs["gen_run"] / "model" / "latest.tar")
    return runs


class _WritesMarker:
    """Unpickling this object creates ``path``: a stand-in for code hidden in a checkpoint."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


def _corrupt(src: str, dst: str | Path, kind: str, marker: str) -> str:
    """A copy of checkpoint ``src`` carrying a code-running pickle (``pickled``) or cut in half (``truncated``)."""
    if kind == "pickled":
        state = load_checkpoint(src)
        state["provenance"] = _WritesMarker(marker)
        torch.save(state, str(dst))
    else:
        data = Path(src).read_bytes()
        Path(dst).write_bytes(data[: len(data) // 2])
    return str(dst)


def _copy_run(run: Path, ckpt: str | Path) -> Path:
    """Copy a run folder into another checkpoints root (same dataset / name layout)."""
    dst = Path(ckpt) / run.parent.name / run.name
    shutil.copytree(run, dst)
    return dst


# ---------------------------------------------------------------------------------------------------------------------


def test_every_file_the_scripts_write_loads_without_pickle(runs):
    checked = []
    for folder in (runs["tok_run"], runs["gen_run"]):
        for path in sorted(folder.rglob("*")):
            if path.suffix in (".tar", ".pt"):
                state = torch.load(path, weights_only=True)
                assert isinstance(state, dict) and state["format_version"] == 1, path
            elif path.suffix in (".npy", ".npz"):
                np.load(path, allow_pickle=False)
            elif path.name == "opt.yaml":
                assert isinstance(yaml.safe_load(path.read_text()), dict)
            else:
                continue
            checked.append(path.name)
    assert sorted(checked) == sorted(["latest.tar", "net_best_loss.tar", "opt.yaml"] * 2)
    with np.load(runs["cache"], allow_pickle=False) as cache:
        assert cache["embeddings"].shape[0] == cache["captions"].shape[0] > 0
    index = list(Path(runs["data"], CACHE_DIR).rglob("*.npy"))
    assert index and all(np.load(p, allow_pickle=False).size for p in index)


@pytest.mark.parametrize("kind", sorted(REFUSED))
def test_pickled_or_truncated_checkpoint_is_refused_by_every_entry_point(runs, tmp_path, kind):
    marker = str(tmp_path / "code-ran")
    bad_tok = _corrupt(runs["tok"], tmp_path / "tok.tar", kind, marker)
    bad_gen = _corrupt(runs["gen"], tmp_path / "gen.tar", kind, marker)
    message = REFUSED[kind]

    with pytest.raises(CheckpointError, match=message) as info:
        load_tokenizer(bad_tok)
    assert bad_tok in str(info.value)
    with pytest.raises(CheckpointError, match=message) as info:
        load_generator(bad_gen)
    assert bad_gen in str(info.value)
    with pytest.raises(CheckpointError, match=message):
        train_MARDM.main(_generator_args(runs, str(tmp_path / "ck"), "on_bad", "--ae_ckpt", bad_tok))
    assert not run_root(tmp_path / "ck", "on_bad").exists()

    # --is_continue of runs whose latest.tar went bad: refused before anything is written.
    tok_run = _copy_run(runs["tok_run"], tmp_path / "resume")
    _corrupt(runs["tok"], tok_run / "model" / "latest.tar", kind, marker)
    opt = (tok_run / "opt.yaml").read_bytes()
    with pytest.raises(CheckpointError, match=message):
        train_AE.main(_tokenizer_args(runs["data"], str(tmp_path / "resume"), "--is_continue"))
    assert (tok_run / "opt.yaml").read_bytes() == opt
    gen_run = _copy_run(runs["gen_run"], tmp_path / "resume")
    _corrupt(runs["gen"], gen_run / "model" / "latest.tar", kind, marker)
    opt = (gen_run / "opt.yaml").read_bytes()
    with pytest.raises(CheckpointError, match=message):
        train_MARDM.main(_generator_args(runs, str(tmp_path / "resume"), "gen", "--ae_ckpt", runs["tok"],
                                         "--is_continue"))
    assert (gen_run / "opt.yaml").read_bytes() == opt
    assert not os.path.exists(marker), "the pickled payload ran"


def test_checkpoint_of_another_model_is_refused(runs, tmp_path):
    with pytest.raises(CheckpointError, match=r"model_name 'FSQ-MARDM-SiT-Tiny' is not a registered tokenizer"):
        load_tokenizer(runs["gen"])
    with pytest.raises(CheckpointError, match=r"gen/model/latest.tar: model_name 'FSQ-MARDM-SiT-Tiny' is not a "
                                              r"registered tokenizer"):
        train_MARDM.main(_generator_args(runs, str(tmp_path / "ck"), "on_gen", "--ae_ckpt", runs["gen"]))
    with pytest.raises(CheckpointError, match=r"net_best_loss.tar: stage is 'tokenizer', expected 'generator'"):
        load_generator(runs["tok"])
    with pytest.raises(CheckpointError, match=r"model_name is 'FSQ_AE_Tiny' in the checkpoint but 'AE_Tiny'"):
        load_tokenizer(runs["tok"], model_name="AE_Tiny")
    with pytest.raises(CheckpointError, match=r"trained with text encoder 'clip', asked for 'minilm'"):
        load_generator(runs["gen"], text_encoder="minilm")
    with pytest.raises(CheckpointError, match=r"holds 'FSQ_AE_Tiny' but --ae_model is 'VQ_AE_Tiny'"):
        train_MARDM.main(_generator_args(runs, str(tmp_path / "ck"), "ae_model", "--ae_ckpt", runs["tok"],
                                         "--ae_model", "VQ_AE_Tiny"))
    assert not (tmp_path / "ck").exists()


def test_tokenizer_of_another_dataset_or_width_is_refused_by_load_generator(runs, tmp_path):
    other_dataset = write_tokenizer(tmp_path / "t2m_tok.tar", "FSQ_AE_Tiny", runs["data"])
    state = load_checkpoint(other_dataset)
    state["dataset"]["name"] = "t2m"
    torch.save(state, other_dataset)
    with pytest.raises(CheckpointError, match=r"trained on dataset 't2m' but --dataset_name is 'synthetic'"):
        load_generator(runs["gen"], tokenizer_path=other_dataset)

    narrow = str(tmp_path / "narrow.tar")
    state = load_checkpoint(runs["tok"])
    args = {**state["model_args"], "input_width": 67}
    state.update(model_args=args, model=build_tokenizer("FSQ_AE_Tiny", **args).state_dict())
    state["dataset"] = {**state["dataset"], "mean": state["dataset"]["mean"][:67], "std": state["dataset"]["std"][:67]}
    torch.save(state, narrow)
    with pytest.raises(CheckpointError, match=r"takes 67 features \(mean/std \(\(67,\), \(67,\)\)\) but dataset "
                                              r"'synthetic' has 263"):
        load_generator(runs["gen"], tokenizer_path=narrow)


class _StubMiniLM(TextEncoder):
    """Named like MiniLM, as wide as the test CLIP tower: only the encoder's identity differs."""

    name = "minilm"

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dim = dim

    def encode(self, texts: list[str]) -> torch.Tensor:
        return torch.zeros(len(texts), self.dim)


def test_resume_with_other_settings_is_refused_naming_both_sides(runs, tmp_path):
    root = str(tmp_path / "ck")
    tok_run = _copy_run(runs["tok_run"], root)
    gen_run = _copy_run(runs["gen_run"], root)
    opt = {run: (run / "opt.yaml").read_bytes() for run in (tok_run, gen_run)}

    with pytest.raises(RunDirError, match="latest.tar exists: pass --is_continue"):
        train_AE.main(_tokenizer_args(runs["data"], root))
    other_model = parse_with_config(get_train_ae_parser(), [
        *TOKENIZER_FLAGS, "--data_root", runs["data"], "--model", "AE_Tiny", "--max_iters", "8",
        "--checkpoints_dir", root, "--name", "fsq", "--is_continue"])
    with pytest.raises(CheckpointError, match=r"model_name is 'FSQ_AE_Tiny' in the checkpoint but 'AE_Tiny' was "
                                              r"requested"):
        train_AE.main(other_model)
    with pytest.raises(CheckpointError, match=r"model_args differ in 1 entry: 'width': 32 in the checkpoint but 16 "
                                              r"requested\. .*resume with --config .*opt\.yaml --is_continue$"):
        train_AE.main(_tokenizer_args(runs["data"], root, "--is_continue", "--max_iters", "8", "--width", "16"))
    data = synthetic_copy(runs["data"], tmp_path / "data")
    std = np.load(data / "Std.npy")
    std[5] *= 2
    np.save(data / "Std.npy", std)
    with pytest.raises(CheckpointError, match=r"dataset std differs from the run being resumed in 1 features "
                                              r"\(first at index 5: .* in the checkpoint, .* now\)"):
        train_AE.main(_tokenizer_args(str(data), root, "--is_continue", "--max_iters", "8"))

    stub = _StubMiniLM(load_checkpoint(runs["gen"])["text_encoder"]["dim"])
    args = _generator_args(runs, root, "gen", "--ae_ckpt", runs["tok"], "--is_continue", "--max_iters", "4",
                           "--text_encoder", "minilm")
    with pytest.raises(CheckpointError, match=r"text encoder is \('clip', 16\) in the run being resumed but "
                                              r"\('minilm', 16\) now"):
        train_MARDM.main(args, text_encoder=stub)
    for run, content in opt.items():
        assert (run / "opt.yaml").read_bytes() == content, run
    assert load_checkpoint(str(tok_run / "model" / "latest.tar"))["step"] == 4
    assert load_checkpoint(str(gen_run / "model" / "latest.tar"))["step"] == 2


def test_resume_of_a_misspelt_name_is_reported_before_other_flags(runs, tmp_path):
    """A misspelt --name with --is_continue names the missing checkpoint, not whatever other flag would fail next
    (here a batch larger than the data, a tokenizer of the wrong kind), and writes nothing."""
    root = tmp_path / "ck"
    missing = r"--is_continue: no checkpoint to resume at .*typo.model.latest\.tar .*check those three flags"
    with pytest.raises(CheckpointError, match=missing):
        train_AE.main(_tokenizer_args(runs["data"], str(root), "--is_continue", "--name", "typo",
                                      "--batch_size", "4096"))
    with pytest.raises(CheckpointError, match=missing):
        train_MARDM.main(_generator_args(runs, str(root), "typo", "--ae_ckpt", runs["tok"], "--model",
                                         "MARDM-SiT-Tiny", "--is_continue"))
    assert not root.exists()


# ---------------------------------------------------------------------------------------------------------------------
# Disk
# ---------------------------------------------------------------------------------------------------------------------

def _error_line(done, script: str) -> str:
    """The ``<script>: error: ...`` line a script prints for bad input (utils.cli.run_script)."""
    return next((line for line in done.stderr.splitlines() if line.startswith(f"{script}: error: ")), "")


@pytest.mark.slow
def test_full_disk_stops_train_ae_before_training(tmp_path, synthetic_root):
    args = [*TOKENIZER_FLAGS, "--data_root", synthetic_root, "--model", "FSQ_AE_Tiny", "--max_iters", "4",
            "--checkpoints_dir", str(tmp_path / "ck"), "--name", "full"]
    done = run_script("train_AE.py", args, faults={"free_bytes": 10 * 2**20})
    model_dir = run_root(tmp_path / "ck", "full") / "model"
    assert done.returncode == 1, tail(done)
    assert _error_line(done, "train_AE.py").startswith(f"train_AE.py: error: only 10 MiB free on the file system of "
                                                       f"{model_dir}; at least"), tail(done)
    # No checkpoint, loss log or probe left behind: the new run's folder, holding nothing else, is gone too.
    assert not (tmp_path / "ck").exists()


@pytest.mark.slow
def test_uncreatable_checkpoints_dir_stops_train_vq_before_training(tmp_path, synthetic_root):
    blocked = tmp_path / "a_file"
    blocked.write_text("not a folder")
    args = [*TOKENIZER_FLAGS, "--data_root", synthetic_root, "--model", "VQVAE_Tiny", "--max_iters", "4",
            "--checkpoints_dir", str(blocked), "--name", "x"]
    done = run_script("train_vq.py", args)
    assert done.returncode == 1, tail(done)
    expected = (f"train_vq.py: error: cannot create the run folder {blocked}/synthetic/x (Not a directory); fix the "
                f"permissions or pick another --checkpoints_dir")
    assert _error_line(done, "train_vq.py") == expected, tail(done)


@pytest.mark.parametrize("fault", ["full", "read_only"])
def test_full_or_read_only_disk_stops_train_mardm_before_training(runs, tmp_path, monkeypatch, fault):
    if fault == "full":
        usage = run_dir_module.shutil.disk_usage(tmp_path)
        monkeypatch.setattr(run_dir_module.shutil, "disk_usage", lambda path: usage._replace(free=2**20))
        expected = "only 1 MiB free on the file system of"
    else:
        def refuse(path, nbytes):
            raise OSError(errno.EROFS, "Read-only file system", path)

        monkeypatch.setattr(run_dir_module, "_write_probe", refuse)
        expected = r"cannot write to .* \(Read-only file system\); checkpoints would fail at the first save"
    steps = []
    real_call = train_MARDM.GeneratorLoss.__call__
    monkeypatch.setattr(train_MARDM.GeneratorLoss, "__call__",
                        lambda self, model, batch: steps.append(1) or real_call(self, model, batch))
    ckpt = str(tmp_path / "ck")
    with pytest.raises(RunDirError, match=expected):
        train_MARDM.main(_generator_args(runs, ckpt, "disk", "--ae_ckpt", runs["tok"]))
    assert steps == [] and os.listdir(run_root(ckpt, "disk") / "model") == []
