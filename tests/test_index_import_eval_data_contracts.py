"""Data loading contracts: the motion index cache (what reuses it, what rebuilds it, which folders a build removes),
the AMASS parameter reader and importer (fields, shapes, frame rates, body models, ids) and the evaluation loader
(seeded batches, GT fingerprint, the validation evaluator)."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from layout_helpers import write_dataset

from utils import evaluator as evaluator_module
from utils import motion_index
from utils.amass_import import BodyModels, read_amass_motion
from utils.dataset_specs import get_dataset_spec
from utils.eval_data import build_eval_loader, load_validation_evaluator
from utils.evaluator import build_evaluator, save_evaluator
from utils.motion_files import DatasetError
from utils.motion_index import MotionIndex
from utils.normalization import eval_normalization, load_mean_std
from utils.paths import CACHE_ENV
from utils.word_vectorizer import LearnedVocab


@pytest.fixture(autouse=True)
def _indexes_in_the_dataset_folder(monkeypatch):
    """The motion indexes go to ``<root>/.cache`` whatever the environment of the test run says."""
    monkeypatch.delenv(CACHE_ENV, raising=False)


# ---------------------------------------------------------------------------------------------------------------------
# Motion index: reuse and rebuild
# ---------------------------------------------------------------------------------------------------------------------


def _index(root: Path, split: str = "train", **kwargs) -> MotionIndex:
    return MotionIndex.build(get_dataset_spec("t2m", str(root)), split, progress=False, **kwargs)


def test_a_split_that_drops_its_id_without_a_file_builds_a_new_index(tmp_path):
    write_dataset(tmp_path, {"a": 30}, {"train": ["a", "gone"]})
    assert _index(tmp_path).skipped.counts == {"ids without a motion file": 1}
    (tmp_path / "train.txt").write_text("a\n")
    index = _index(tmp_path)
    assert index.built and index.skipped.counts == {}


def _older_format(folder: str) -> None:
    meta_path = os.path.join(folder, "meta.json")
    with open(meta_path) as f:
        meta = json.load(f)
    meta["format_version"] = motion_index.INDEX_FORMAT_VERSION - 1
    with open(meta_path, "w") as f:
        json.dump(meta, f)


def _short_lengths(folder: str) -> None:
    np.save(os.path.join(folder, "lengths.npy"), np.array([30], dtype=np.int64))


def _short_motion(folder: str) -> None:
    np.save(os.path.join(folder, "motion.npy"), np.zeros((10, 263), dtype=np.float32))


@pytest.mark.parametrize("damage", [_older_format, _short_lengths, _short_motion])
def test_an_index_of_another_format_or_with_arrays_that_disagree_is_rebuilt(tmp_path, damage, caplog):
    motions = write_dataset(tmp_path, {"a": 30, "b": 25}, {"train": ["a", "b"]})
    damage(_index(tmp_path).folder)
    with caplog.at_level(logging.WARNING):
        index = _index(tmp_path)
    assert index.built and "unreadable motion index" in caplog.text
    np.testing.assert_array_equal(index.lengths, [30, 25])
    np.testing.assert_array_equal(index.clip(1), motions["b"])


def test_opening_an_index_at_another_width_names_the_folder_and_both_widths(tmp_path):
    write_dataset(tmp_path, {"a": 30}, {"train": ["a"]})
    folder = _index(tmp_path).folder
    with pytest.raises(DatasetError, match=rf"{folder}: index format 1 width 263; expected format 1 width 67") as e:
        MotionIndex(folder, "train", 67)
    assert e.value.kind == "stale_index"


def test_a_shared_cache_reuses_the_index_of_a_root_reached_through_a_link(tmp_path):
    write_dataset(tmp_path / "data", {"a": 30}, {"train": ["a"]})
    (tmp_path / "link").symlink_to(tmp_path / "data")
    cache = str(tmp_path / "cache")
    first = _index(tmp_path / "data", cache_dir=cache)
    again = _index(tmp_path / "link", cache_dir=cache)
    assert not again.built and again.folder == first.folder


def test_building_one_split_keeps_the_index_of_a_split_named_after_it(tmp_path):
    """HumanML3D ships ``train.txt`` and ``train_val.txt``: neither index is stale for the other."""
    write_dataset(tmp_path, {"a": 30, "b": 25}, {"train": ["a"], "train_val": ["a", "b"]})
    train_val = _index(tmp_path, "train_val")
    _index(tmp_path, "train")
    assert os.path.isdir(train_val.folder)
    assert not _index(tmp_path, "train_val").built


def test_a_reopened_index_reports_its_skipped_ids_again(tmp_path, caplog):
    write_dataset(tmp_path, {"a": 30}, {"train": ["a", "gone"]})
    _index(tmp_path)
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        again = _index(tmp_path)
    assert not again.built
    assert "1 ids without a motion file (gone)" in caplog.text


def test_a_concurrent_build_that_finished_first_is_opened(tmp_path, monkeypatch):
    """Two processes building the same index: the one whose rename loses opens the winner's index."""
    motions = write_dataset(tmp_path, {"a": 30}, {"train": ["a"]})
    folder = _index(tmp_path).folder
    shutil.rmtree(folder)
    write_index = motion_index._write_index

    def write_and_lose_the_race(tmp, *args):
        write_index(tmp, *args)
        shutil.copytree(tmp, folder)  # the other process renames its copy into place first

    monkeypatch.setattr(motion_index, "_write_index", write_and_lose_the_race)
    index = _index(tmp_path)
    assert index.folder == folder
    np.testing.assert_array_equal(index.clip(0), motions["a"])
    assert [e for e in os.listdir(os.path.dirname(folder)) if e.startswith(motion_index._TMP)] == []


# ---------------------------------------------------------------------------------------------------------------------
# Motion index: which folders a build removes
# ---------------------------------------------------------------------------------------------------------------------

def _set_age(path: Path, seconds: float) -> None:
    then = time.time() - seconds
    os.utime(path, (then, then))


def test_an_index_older_than_a_day_is_not_taken_for_an_abandoned_build(tmp_path):
    write_dataset(tmp_path, {"a": 30, "b": 25}, {"train": ["a"], "val": ["b"]})
    val = Path(_index(tmp_path, "val").folder)
    for path in [val, *val.iterdir()]:
        _set_age(path, motion_index.ABANDONED_BUILD_SECONDS + 3600)
    _index(tmp_path, "train")
    assert val.is_dir() and not _index(tmp_path, "val").built


def test_a_build_folder_written_to_within_the_day_is_kept(tmp_path):
    """A build is live while any of its files is fresh, however old the folder's own time stamp."""
    write_dataset(tmp_path, {"a": 30}, {"train": ["a"]})
    live = tmp_path / ".cache" / "motion_index" / ".tmp-val_d263_7-0000cafe"
    live.mkdir(parents=True)
    (live / "motion.npy").write_bytes(b"partial")
    _set_age(live / "motion.npy", 2 * 3600)
    _set_age(live, motion_index.ABANDONED_BUILD_SECONDS + 3600)
    _index(tmp_path)
    assert (live / "motion.npy").exists()


# ---------------------------------------------------------------------------------------------------------------------
# AMASS: reading one parameter file
# ---------------------------------------------------------------------------------------------------------------------

PARENTS = [-1, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 9, 12, 13, 14, 16, 17, 18, 19]  # SMPL's first 22 joints


def _body_model(path: Path, joints_num: int = 52, seed: int = 0) -> Path:
    """A tiny SMPL-H-like (52 joints) or SMPL-X-like (55) model: one vertex per joint, a chain 0.1 m apart per level,
    ``seed`` shifting the whole rest pose so that two models give different joints."""
    parents = PARENTS + [20 + (j % 2) for j in range(22, joints_num)]
    rest = np.zeros((joints_num, 3))
    for j in range(1, joints_num):
        rest[j] = rest[parents[j]] + [0.02 * (j % 3), 0.1, 0.01 * (j % 2)]
    rest += 0.1 * seed
    kintree = np.stack([[4294967295] + parents[1:], range(joints_num)]).astype(np.uint32)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, v_template=rest, shapedirs=np.zeros((joints_num, 3, 10)), J_regressor=np.eye(joints_num),
             kintree_table=kintree, f=np.zeros((1, 3), dtype=np.int32))
    return path


def _body_models(root: Path) -> Path:
    """``root`` in AMASS's layout: smplh male / female / neutral and smplx neutral, each a different rest pose."""
    for gender, seed in (("male", 1), ("female", 2), ("neutral", 3)):
        _body_model(root / "smplh" / gender / "model.npz", seed=seed)
    _body_model(root / "smplx" / "neutral" / "model.npz", joints_num=55, seed=4)
    return root


def _amass(path: Path, frames: int = 21, width: int = 156, fps_key: str = "mocap_framerate", fps=60.0,
           **replace) -> Path:
    """An AMASS-layout file of a still body moving 1 m/s along x; ``replace`` overrides (None drops) a field."""
    t = np.arange(frames) / 60.0
    trans = np.zeros((frames, 3))
    trans[:, 0] = t
    arrays = {"poses": np.zeros((frames, width)), "trans": trans, "betas": np.zeros(16), "gender": np.array("male"),
              fps_key: np.array(fps)}
    arrays.update(replace)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, **{k: v for k, v in arrays.items() if v is not None})
    return path


def test_body_models_take_a_folder_or_a_file_not_both(tmp_path):
    folder = _body_models(tmp_path / "models")
    with pytest.raises(ValueError, match="give one of --body_models DIR .* or --body_model FILE"):
        BodyModels(str(folder), str(folder / "smplh" / "male" / "model.npz"))


@pytest.mark.parametrize("gender", ["../smplx/neutral", "female/../male"])
def test_a_gender_that_is_not_a_plain_word_never_picks_a_model_by_path(tmp_path, gender):
    bodies = BodyModels(str(_body_models(tmp_path / "models")))
    assert bodies.get("smplh", gender, "clip.npz") is bodies.get("smplh", "neutral", "clip.npz")


def test_a_gender_without_a_model_falls_back_to_neutral_with_one_warning(tmp_path, caplog):
    bodies = BodyModels(str(_body_models(tmp_path / "models")))
    with caplog.at_level(logging.WARNING):
        first = bodies.get("smplx", "female", "a.npz")
        second = bodies.get("smplx", "female", "b.npz")
    assert first is second is bodies.get("smplx", "neutral", "c.npz")
    warnings = [r.getMessage() for r in caplog.records if "no smplx body model for gender 'female'" in r.getMessage()]
    assert len(warnings) == 1 and "a.npz" in warnings[0]


def test_text_fields_are_read_without_padding_or_case(tmp_path):
    path = _amass(tmp_path / "a.npz", width=170, gender=np.array([b"Female  "]),
                  surface_model_type=np.array(" SMPLX\n"))
    motion = read_amass_motion(path)
    assert (motion.gender, motion.model_type) == ("female", "smplx")


@pytest.mark.parametrize("stored", [np.zeros(0), np.array([60.0, 60.0]), np.array("sixty"), np.array(np.inf),
                                    np.array("inf")])
def test_a_frame_rate_that_is_not_one_finite_number_names_the_file_and_field(tmp_path, stored):
    path = _amass(tmp_path / "a.npz", fps=stored)
    with pytest.raises(ValueError, match=r"a\.npz: mocap_framerate is .*; expected a positive frame rate"):
        read_amass_motion(path)


@pytest.mark.parametrize("drop, named", [("trans", "trans"), ("betas", "betas"),
                                         ("mocap_framerate", "mocap_framerate or mocap_frame_rate")])
def test_a_missing_field_is_named_with_the_file(tmp_path, drop, named):
    path = _amass(tmp_path / "a.npz", **{drop: None})
    with pytest.raises(ValueError, match=rf"a\.npz: lacks {named}; an AMASS file has poses, trans, betas"):
        read_amass_motion(path)


@pytest.mark.parametrize("trans", [np.zeros((21, 2)), np.zeros((20, 3)), np.zeros(21)])
def test_trans_of_another_shape_than_frames_by_three_names_the_file(tmp_path, trans):
    path = _amass(tmp_path / "a.npz", trans=trans)
    with pytest.raises(ValueError, match=rf"a\.npz: trans has shape \({trans.shape[0]},.*\); expected \(21, 3\)"):
        read_amass_motion(path)


# ---------------------------------------------------------------------------------------------------------------------
# Evaluation loader
# ---------------------------------------------------------------------------------------------------------------------

ACTIONS = ("jump", "run", "walk")


def _eval_dataset(root: Path, lengths: dict[str, list[int]]) -> None:
    """A synthetic-spec dataset: per split, clips of the given lengths captioned with an action word each."""
    rng = np.random.default_rng(0)
    (root / "new_joint_vecs").mkdir(parents=True)
    (root / "texts").mkdir()
    dim = get_dataset_spec("synthetic", str(root)).file_dim
    for split, clip_lengths in lengths.items():
        names = [f"{split}{i:03d}" for i in range(len(clip_lengths))]
        for i, (clip_id, length) in enumerate(zip(names, clip_lengths)):
            np.save(root / "new_joint_vecs" / f"{clip_id}.npy", rng.standard_normal((length, dim)).astype(np.float32))
            word = ACTIONS[i % len(ACTIONS)]
            (root / "texts" / f"{clip_id}.txt").write_text(
                f"a person does {word}.#a/DET person/NOUN {word}/VERB#0.0#0.0\n")
        (root / f"{split}.txt").write_text("".join(i + "\n" for i in names))
    np.save(root / "Mean.npy", np.zeros(dim, dtype=np.float32))
    np.save(root / "Std.npy", np.ones(dim, dtype=np.float32))


def _evaluator(root: Path):


    spec = get_dataset_spec("synthetic", str(root))
    mean, std = eval_normalization(*load_mean_std(spec, str(root)), spec)
    torch.manual_seed(0)
    return build_evaluator("synthetic", mean, std, sizes="tiny", data_root=str(root),
                           word_vectors=LearnedVocab.from_split(str(root), "train", dim_word=8))


def _test_split(n: int) -> list[int]:
    return [40 + (7 * i) % 50 for i in range(n)]


@pytest.mark.parametrize("shared_cache", [False, True])
def test_the_gt_fingerprint_does_not_change_when_the_data_folder_moves(tmp_path, monkeypatch, shared_cache):
    """The GT cache stays valid for the same files under another path (the batches are the same), also when the
    motion indexes live in a shared cache, which tells data folders apart by a hash of their path."""
    if shared_cache:
        monkeypatch.setenv(CACHE_ENV, str(tmp_path / "cache"))
    _eval_dataset(tmp_path / "here", {"train": [60] * 4, "test": _test_split(34)})
    ev = _evaluator(tmp_path / "here")
    before = build_eval_loader(ev, get_dataset_spec("synthetic", str(tmp_path / "here")), "test",
                               data_root=str(tmp_path / "here"), progress=False).fingerprint
    os.rename(tmp_path / "here", tmp_path / "there")
    after = build_eval_loader(ev, get_dataset_spec("synthetic", str(tmp_path / "there")), "test",
                              data_root=str(tmp_path / "there"), progress=False)
    assert after.fingerprint == before
    assert (tmp_path / "cache" / "motion_index").is_dir() == shared_cache


@pytest.mark.parametrize("max_motion_length", [20, 196])
def test_samples_shorter_than_the_references_20_frames_are_never_served(tmp_path, max_motion_length):
    """Text2MotionDatasetV2 calls reset_max_len(20), also for a spec whose longest sample is 20 frames."""


    _eval_dataset(tmp_path, {"train": [60] * 4, "test": [12, 15, 19, 20, 21, 23] * 2})
    spec = dataclasses.replace(get_dataset_spec("synthetic", str(tmp_path)), min_motion_length=10,
                               max_motion_length=max_motion_length)
    loader = build_eval_loader(_evaluator(tmp_path), spec, "test", data_root=str(tmp_path), batch_size=3,
                               progress=False)
    assert len(loader.dataset) == 6 and (len(loader), loader.num_samples) == (2, 6)


def test_the_validation_evaluator_defaults_to_text_mot_match_of_the_dataset_as_named(tmp_path, monkeypatch):
    monkeypatch.delenv("RANK", raising=False)
    root = tmp_path / "data"
    _eval_dataset(root, {"train": [60] * 4, "val": _test_split(5)})
    save_evaluator(str(tmp_path / "ckpt" / "synthetic" / "text_mot_match" / "model" / "finest.tar"), _evaluator(root))
    spec = get_dataset_spec("synthetic", str(root))
    evaluator, loader = load_validation_evaluator(None, str(tmp_path / "ckpt"), "synthetic", spec, str(root))
    assert evaluator.dataset_name == "synthetic"
    assert (loader.split, loader.batch_size, len(loader)) == ("val", 5, 1)


def test_an_evaluator_that_fails_to_load_stops_with_the_commands_to_get_one(tmp_path, monkeypatch):
    def unreadable(folder, *args, **kwargs):
        raise ValueError(f"{folder}: mean has 4 values; expected 263")

    monkeypatch.delenv("RANK", raising=False)
    monkeypatch.setattr(evaluator_module, "load_evaluator", unreadable)
    spec = get_dataset_spec("synthetic", str(tmp_path))
    with pytest.raises(SystemExit, match=r"no usable evaluator for dataset 'synthetic' \(.*ev: mean has 4 values.*"
                                         r"python train_evaluator.py --dataset_name synthetic"):
        load_validation_evaluator(str(tmp_path / "ev"), str(tmp_path), "synthetic", spec, str(tmp_path))


@pytest.mark.parametrize("gender", ["b'female'", "female1"])
def test_a_gender_that_names_no_model_folder_uses_neutral_with_a_warning_naming_it(tmp_path, caplog, gender):
    """Converters that ``str()`` a bytes field store ``"b'female'"``: the clip gets the neutral body (other joints
    than the female one), so the user must be told, naming the file and the value."""
    for name, seed in (("female", 1), ("neutral", 2)):
        _body_model(tmp_path / "smplh" / name / "model.npz", seed=seed)
    bodies = BodyModels(str(tmp_path))
    with caplog.at_level(logging.WARNING):
        body = bodies.get("smplh", gender, "S1/walk.npz")
    assert body is bodies.get("smplh", "neutral", "other.npz")
    warnings = " ".join(r.getMessage() for r in caplog.records)
    assert "S1/walk.npz" in warnings and repr(gender) in warnings and "neutral" in warnings


def test_an_empty_gender_field_is_warned_as_no_gender(tmp_path, caplog):
    """An empty ``gender`` array reads as ''; the clip then gets the neutral body like a file without the field."""
    _body_model(tmp_path / "smplh" / "neutral" / "model.npz", seed=2)
    bodies = BodyModels(str(tmp_path))
    with caplog.at_level(logging.WARNING):
        bodies.get("smplh", "", "S1/walk.npz")
    assert "S1/walk.npz has no gender: using the neutral smplh body model" in caplog.text
