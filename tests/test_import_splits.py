"""BVH and AMASS imports (``utils.bvh_import.import_clip_folder``, which both share) name every split left without a
motion the loaders keep, and what needs it, instead of writing it silently: one-clip imports serve export and quick
checks, so they are written."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
from test_bvh import _write_yaml

from utils.bvh import SMPL22_JOINT_NAMES
from utils.bvh_export import write_bvh
from utils.bvh_import import SourceClip, import_clip_folder
from utils.dataset_io import split_groups
from utils.motion_files import read_split
from utils.synthetic import synthesize_motion

NEEDS = "training needs motions in train and val, evaluation in test"


def _import(tmp_path: Path, frames: list[int | None], caplog) -> tuple[Path, object, list[str]]:
    """Import one synthetic walk per entry of ``frames`` (its joint frames, None for all) through the shared folder
    loop; returns the folder, the summary and the warnings logged."""
    src = tmp_path / "src"
    files = [src / f"walk{k}.bvh" for k in range(len(frames))]
    joints = {path: synthesize_motion(np.random.default_rng(k), "walk").joints[:n]
              for k, (path, n) in enumerate(zip(files, frames))}

    def read_clip(path: Path) -> SourceClip:
        return SourceClip(path.stem, path.stem, joints[path], 20.0, len(joints[path]))

    out = tmp_path / "Mocap"
    with caplog.at_level(logging.WARNING, logger="utils.bvh_import"):
        summary = import_clip_folder(files, str(src), str(out), read_clip, target_fps=20.0, labels=None, seed=0,
                                     progress=None, lying_hint="", size_hint="")
    return out, summary, [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]


def test_one_and_two_clip_imports_name_the_empty_splits(tmp_path, caplog):
    for count in (1, 2):
        caplog.clear()
        out, summary, warnings = _import(tmp_path / str(count), [None] * count, caplog)
        assert read_split(str(out), "train") and summary.splits["val"] == summary.splits["test"] == 0
        assert summary.empty_splits == {"val": "no motion", "test": "no motion"}
        message = summary.empty_splits_message()
        assert message.startswith("splits val and test hold no motion the loaders keep") and NEEDS in message
        assert f"{count} clip(s): val and test get one clip each only from 3 clips on" in message
        assert message in warnings


def test_a_split_of_only_too_short_motions_is_named(tmp_path, caplog):
    """Three clips fill every split file, but a split whose motions are all shorter than the minimum length is as
    empty to the loaders, which skip them."""
    out, summary, warnings = _import(tmp_path, [None, 20, 20], caplog)
    short = set(summary.too_short)
    expected = [s for s in ("train", "val", "test") if set(read_split(str(out), s)) <= short]
    assert expected and list(summary.empty_splits) == expected
    assert all(why == "only motions shorter than 40 frames, which the loaders skip"
               for why in summary.empty_splits.values())
    message = summary.empty_splits_message()
    assert NEEDS in message and "clips on" not in message and message in warnings
    assert all(split in message for split in expected)


def test_a_full_import_warns_about_no_split(tmp_path, caplog):
    _, summary, warnings = _import(tmp_path, [None, None, None], caplog)
    assert summary.empty_splits == {} and summary.empty_splits_message() == ""
    assert not [w for w in warnings if "split" in w]


def test_prepare_data_bvh_prints_the_empty_splits(tmp_path, capsys):
    import prepare_data

    src = tmp_path / "mocap"
    src.mkdir()
    write_bvh(src / "jump.bvh", synthesize_motion(np.random.default_rng(8), "jump").joints, fps=20)
    skeleton = _write_yaml(tmp_path / "smpl_names.yaml", {n: n for n in SMPL22_JOINT_NAMES})
    args = ["bvh", "--src", str(src), "--out", str(tmp_path / "One"), "--skeleton", str(skeleton)]
    assert prepare_data.main(prepare_data.parse_args(args)) == 0
    printed = capsys.readouterr().out
    assert "  splits val and test hold no motion the loaders keep" in printed and NEEDS in printed


def _import_named(out: Path, names: list[str], seed: int = 0) -> tuple[dict[str, str], dict[str, list[str]]]:
    """Import one synthetic walk per Bandai-style name, in the order given; returns each clip's caption file and the
    train/val/test ids."""
    src = out.parent / "src"

    def read_clip(path: Path) -> SourceClip:
        k = int(path.stem.rsplit("_", 1)[1])
        joints = synthesize_motion(np.random.default_rng(k), "walk").joints
        return SourceClip(path.stem, path.stem, joints, 20.0, len(joints))

    import_clip_folder([src / f"{name}.bvh" for name in names], str(src), str(out), read_clip, target_fps=20.0,
                       labels=None, seed=seed, progress=None, lying_hint="", size_hint="")
    captions = {name: (out / "texts" / f"{name}.txt").read_text() for name in names}
    return captions, {split: read_split(str(out), split) for split in ("train", "val", "test")}


def test_captions_and_splits_depend_on_each_clip_and_the_seed_not_on_the_file_order_or_the_other_clips(tmp_path):
    """A clip's generated captions come from a generator of its own and the splits from a ranking by a hash of each
    clip's id, so importing the same clips in another order gives the same dataset, a subset gives its clips the same
    captions, and the seed still changes both."""
    names = [f"dataset-1_{content}_{style}_{k:03d}" for k, (content, style) in
             enumerate([("walk", "happy"), ("run", "sad"), ("bow", "angry"), ("kick", "normal"), ("walk", "tired"),
                        ("run", "happy"), ("bow", "sad"), ("punch", "angry")])]
    captions, splits = _import_named(tmp_path / "a" / "Mocap", names)
    assert len(splits["val"]) == len(splits["test"]) == 1 and len(splits["train"]) == 6
    assert _import_named(tmp_path / "b" / "Mocap", names[::-1]) == (captions, splits)
    subset, _ = _import_named(tmp_path / "c" / "Mocap", names[3:6])
    assert subset == {name: captions[name] for name in names[3:6]}
    other_captions, other_splits = _import_named(tmp_path / "d" / "Mocap", names, seed=1)
    assert other_captions != captions and other_splits != splits
    with pytest.raises(ValueError, match=r"order must hold each of the 2 group indices once, got \[0, 0\]"):
        split_groups([["a"], ["b"]], [0, 0])
