"""Where ``prepare_data.py synthetic`` may write: never over another dataset, and a rerun into an earlier synthetic
folder (the quick pipeline and ``reproduce.py --quick`` after an interrupted run) leaves exactly the new dataset."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

import prepare_data
import reproduce
from utils import recipe_plan
from utils.dataset_specs import get_dataset_spec
from utils.motion_files import read_split
from utils.motion_index import MotionIndex
from utils.normalization import DatasetError, load_mean_std
from utils.paths import HOME_ENV
from utils.recipes import get_recipe
from utils.synthetic import generate_synthetic_dataset, prepare_synthetic_folder


def _synthetic(out, count: int) -> int:
    return prepare_data.main(prepare_data.parse_args(["synthetic", "--out", str(out), "--num_motions", str(count)]))


def _official_like(root) -> dict[str, bytes]:
    """A few files of a HumanML3D folder; returns their contents by relative path."""
    files = {"Mean.npy": b"official mean", "Std.npy": b"official std", "train.txt": b"000000\nM000000\n",
             "new_joint_vecs/000000.npy": b"official clip", "texts/000000.txt": b"a person walks#\n"}
    for name, content in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(content)
    return files


def _unchanged(root, files: dict[str, bytes]) -> bool:
    present = {os.path.relpath(os.path.join(d, n), root) for d, _, names in os.walk(root) for n in names}
    return present == set(files) and all((root / n).read_bytes() == c for n, c in files.items())


def test_refuses_the_folder_of_a_registered_dataset(tmp_path, monkeypatch):
    """--out dataset/HumanML3D would overwrite the official statistics, splits and clips 000000...: refused before
    any file is written, naming the dataset, even while that folder is still empty."""
    monkeypatch.delenv(HOME_ENV, raising=False)
    monkeypatch.chdir(tmp_path)
    official = tmp_path / "dataset" / "HumanML3D"
    files = _official_like(official)
    with pytest.raises(ValueError, match=r"dataset/HumanML3D: the folder of the registered dataset t2m"):
        _synthetic("dataset/HumanML3D", 3)
    assert _unchanged(official, files)
    (tmp_path / "dataset" / "KIT-ML").mkdir()
    with pytest.raises(ValueError, match=r"KIT-ML: the folder of the registered dataset kit"):
        _synthetic(tmp_path / "dataset" / "KIT-ML", 3)
    assert os.listdir(tmp_path / "dataset" / "KIT-ML") == []


def test_refuses_an_imported_dataset_and_foreign_files(tmp_path):
    """A folder with a spec.json (a BVH or AMASS import), or with files the synthetic layout does not have (an
    official copy elsewhere: its mirrored M clips), is refused, naming what is there; nothing is written."""
    imported = tmp_path / "Bandai"
    files = _official_like(imported)
    (imported / "spec.json").write_text("{}")
    files["spec.json"] = b"{}"
    with pytest.raises(ValueError, match=r"Bandai: holds spec.json, the spec of an imported dataset"):
        _synthetic(imported, 3)
    assert _unchanged(imported, files)

    copy = tmp_path / "HumanML3D_copy"
    files = _official_like(copy)
    (copy / "new_joint_vecs" / "M000000.npy").write_bytes(b"mirrored")
    files["new_joint_vecs/M000000.npy"] = b"mirrored"
    with pytest.raises(ValueError, match=r"HumanML3D_copy: holds files that prepare_data.py synthetic does not "
                                         r"write: new_joint_vecs/M000000.npy"):
        _synthetic(copy, 3)
    assert _unchanged(copy, files)

    file_out = tmp_path / "notes.txt"
    file_out.write_text("mine")
    with pytest.raises(ValueError, match=r"notes.txt: a file"):
        _synthetic(file_out, 3)
    assert file_out.read_text() == "mine"


def test_rerun_with_fewer_motions_leaves_only_the_new_clips(tmp_path, capsys):
    """Regenerating an earlier synthetic folder with fewer motions removes the clips past the new count, so
    ``stats`` over every clip (no --split) sees the same clips as the splits, and the files equal a fresh run's."""
    out = tmp_path / "Synthetic"
    assert _synthetic(out, 4) == 0
    assert _synthetic(out, 3) == 0
    for sub, ext in (("new_joint_vecs", "npy"), ("new_joints", "npy"), ("texts", "txt")):
        assert sorted(os.listdir(out / sub)) == [f"00000{i}.{ext}" for i in range(3)]
    assert read_split(str(out), "all") == ["000000", "000001", "000002"]
    fresh = tmp_path / "fresh"
    generate_synthetic_dataset(str(fresh), 3)
    np.testing.assert_array_equal(np.load(out / "Mean.npy"), np.load(fresh / "Mean.npy"))
    capsys.readouterr()
    args = ["stats", "--dataset_name", "synthetic", "--data_root", str(out), "--overwrite"]
    assert prepare_data.main(prepare_data.parse_args(args)) == 0
    assert "from 3 clips" in capsys.readouterr().out


class _Interrupt(Exception):
    pass


def _interrupted(out, count: int, after: int) -> None:
    """A synthetic run into ``out`` stopped after ``after`` motions, before its splits and statistics."""
    def progress(items, **_):
        for n, item in enumerate(items):
            if n == after:
                raise _Interrupt
            yield item

    with pytest.raises(_Interrupt):
        generate_synthetic_dataset(str(out), count, progress=progress)
    assert not (out / "Mean.npy").exists()


def test_quick_pipelines_rerun_after_an_interrupted_run(tmp_path, monkeypatch):
    """train_fsq_pipeline.sh --quick and reproduce.py --quick run ``synthetic`` again into the same folder while its
    Mean.npy is missing: the rerun completes there, with the same flags they pass."""
    out = tmp_path / "Synthetic"
    _interrupted(out, 4, after=2)
    # train_fsq_pipeline.sh: prepare_data.py synthetic --out "$DATA_ROOT" --num_motions 400 --seed 0 --keep_existing
    # (4 here): an unfinished dataset is built again
    argv = ["synthetic", "--out", str(out), "--num_motions", "4", "--seed", "0", "--keep_existing"]
    assert prepare_data.main(prepare_data.parse_args(argv)) == 0
    assert (out / "Mean.npy").exists() and len(read_split(str(out), "all")) == 4

    monkeypatch.setattr(recipe_plan, "QUICK_MOTIONS", 3)
    again = tmp_path / "again"
    _interrupted(again, 3, after=1)
    args = reproduce.get_parser().parse_args(["momask_rvq", "--quick", "--checkpoints_dir", str(tmp_path / "ck"),
                                              "--data_root", str(again)])
    data = recipe_plan.plan(args, get_recipe("momask_rvq"), "synthetic")[0]
    assert data.name == "data" and not os.path.exists(data.done_file)
    assert prepare_data.main(prepare_data.parse_args(data.argv[2:])) == 0
    assert os.path.exists(data.done_file) and len(read_split(str(again), "all")) == 3


def test_an_interrupted_rerun_over_a_finished_dataset_does_not_look_finished(tmp_path):
    """Mean.npy marks a finished dataset for the quick pipelines: a rerun stopped while rewriting the clips of an
    earlier, finished dataset must not leave that dataset's statistics behind, or the pipelines would skip the data
    stage and train on a mix of clips with the earlier statistics and splits."""
    out = tmp_path / "Synthetic"
    assert _synthetic(out, 4) == 0
    _interrupted(out, 5, after=2)  # asserts that Mean.npy is gone
    assert not (out / "Std.npy").exists()


def test_a_rerun_drops_the_loaders_cache_of_the_earlier_clips(tmp_path):
    """The motion index cache is keyed by each clip's size and mtime. A clip rewritten by a run of another --seed may
    keep both (the same frame count, within the filesystem's mtime granularity): emulated here by other values of
    the same size under the earlier mtime. After a rerun the loaders must read the new clips, not the cached ones."""
    out = tmp_path / "Synthetic"
    generate_synthetic_dataset(str(out), 3, seed=0)
    spec = get_dataset_spec("synthetic", str(out))
    MotionIndex.build(spec, "all", str(out), progress=False)
    for clip in sorted((out / "new_joint_vecs").iterdir()):
        st = clip.stat()
        np.save(clip, np.load(clip) + np.float32(1.0))
        os.utime(clip, ns=(st.st_atime_ns, st.st_mtime_ns))
        assert clip.stat().st_size == st.st_size
    prepare_synthetic_folder(str(out), 3)
    index = MotionIndex.build(spec, "all", str(out), progress=False)
    for i in range(len(index)):
        np.testing.assert_array_equal(index.clip(i), np.load(out / "new_joint_vecs" / f"{index.clip_id(i)}.npy"))


def test_a_stopped_run_suggests_making_the_dataset_again_not_computing_statistics(tmp_path):
    """A synthetic folder without Mean.npy is mostly a run stopped before its end: ``stats`` over its clips would make
    it look finished, with clips and splits half made. The loaders' error points first at the command that completes
    it."""
    out = tmp_path / "Synthetic"
    _interrupted(out, 4, after=2)
    with pytest.raises(DatasetError) as info:
        load_mean_std(get_dataset_spec("synthetic", str(out)), str(out))
    message = str(info.value)
    assert f"missing; expected the dataset mean of shape (263,): make the dataset again with python prepare_data.py " \
           f"synthetic --out {out} (a run stopped before its end writes none), or for clips made otherwise" in message


def test_a_finished_dataset_of_other_settings_is_kept_with_a_warning(tmp_path, caplog, capsys):
    """The quick pipelines kept whatever finished dataset was in their folder (300 motions from the stage table's
    command, say) without a word, and their numbers were then not those of 400. The settings are recorded with the
    dataset; --keep_existing keeps a finished one and warns when they differ, as reproduce.py --quick does."""
    import logging

    from utils.synthetic import GENERATOR_VERSION, SETTINGS_FILE, built_with, settings_mismatch

    out = tmp_path / "Synthetic"
    assert built_with(str(out)) is None
    _synthetic(out, 3)
    settings = {"num_motions": 3, "seed": 0, "generator_version": GENERATOR_VERSION}
    assert json.loads((out / SETTINGS_FILE).read_text()) == settings == built_with(str(out))
    assert settings_mismatch(str(out), 3, 0) is None
    assert settings_mismatch(str(out), 4, 0) == (f"{out} holds a synthetic dataset of 3 motions (seed 0), not 4 "
                                                 f"motions (seed 0); to build those: python prepare_data.py "
                                                 f"synthetic --out {out} --num_motions 4 --seed 0, and train again "
                                                 f"the runs trained on the data there now")
    before = (out / "Mean.npy").read_bytes()
    argv = ["synthetic", "--out", str(out), "--num_motions", "4", "--seed", "0", "--keep_existing"]
    with caplog.at_level(logging.WARNING, logger="prepare_data"):
        assert prepare_data.main(prepare_data.parse_args(argv)) == 0
    assert f"kept the finished dataset in {out}" in capsys.readouterr().out
    assert ("kept as it is (--keep_existing), so results on it are not those of the data asked for: "
            f"{out} holds a synthetic dataset of 3 motions (seed 0), not 4 motions (seed 0)") in caplog.text
    assert (out / "Mean.npy").read_bytes() == before and len(read_split(str(out), "all")) == 3
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="prepare_data"):
        prepare_data.main(prepare_data.parse_args(["synthetic", "--out", str(out), "--num_motions", "3",
                                                   "--keep_existing"]))
    assert "holds" not in caplog.text  # the same settings: kept without a word
    # A dataset of the same settings from an earlier generator (whose clips differ) is named as such.
    (out / SETTINGS_FILE).write_text(json.dumps({"num_motions": 3, "seed": 0}))
    assert settings_mismatch(str(out), 3, 0) == (
        f"{out} holds a synthetic dataset of 3 motions (seed 0) built by an earlier version of the generator (version "
        f"1, now {GENERATOR_VERSION}), whose clips differ; to build the current ones: python prepare_data.py "
        f"synthetic --out {out} --num_motions 3 --seed 0, and train again the runs trained on the data there now")
    (out / SETTINGS_FILE).unlink()  # a dataset built before the settings were recorded
    assert "built before they were recorded" in settings_mismatch(str(out), 3, 0)

    with caplog.at_level(logging.WARNING, logger="reproduce"):
        args = reproduce.get_parser().parse_args(["momask_rvq", "--quick", "--checkpoints_dir", str(tmp_path / "ck"),
                                                  "--data_root", str(out)])
        recipe_plan.plan(args, get_recipe("momask_rvq"), "synthetic")
    assert "used as it is, so the results are not those of the quick recipe's data" in caplog.text
    assert "not 400 motions (seed 0); to build those: python prepare_data.py synthetic --out" in caplog.text
    # Without the flag a finished dataset is built again, as before.
    prepare_data.main(prepare_data.parse_args(argv[:-1]))
    assert len(read_split(str(out), "all")) == 4 and built_with(str(out)) == {"num_motions": 4, "seed": 0,
                                                                             "generator_version": GENERATOR_VERSION}


def test_keep_existing_keeps_only_a_synthetic_dataset(tmp_path):
    """--keep_existing kept any folder with a Mean.npy (an import with its spec.json, a registered dataset's folder)
    as a synthetic dataset, where the build without it refuses them."""
    from utils.synthetic import settings_mismatch

    out = tmp_path / "Imported"
    _synthetic(out, 3)
    (out / "spec.json").write_text("{}")
    argv = ["synthetic", "--out", str(out), "--num_motions", "3", "--seed", "0", "--keep_existing"]
    with pytest.raises(ValueError, match=r"Imported: holds spec\.json, the spec of an imported dataset"):
        prepare_data.main(prepare_data.parse_args(argv))
    assert settings_mismatch(str(out), 3, 0).startswith(f"{out} holds a finished dataset that is not a synthetic one")
    assert (out / "Mean.npy").exists()  # refused, not touched


def test_a_synthetic_dataset_elsewhere_is_found_as_the_advice_says(tmp_path, monkeypatch, capsys):
    """A synthetic dataset in a folder of another name was reported as missing its spec.json, which "datasets made
    by prepare_data.py write" (the synthetic command writes none), with advice for t2m features. The build says how to
    use the folder, as an import does, and the lookup by the folder's name gives the same flags."""
    monkeypatch.delenv(HOME_ENV, raising=False)
    monkeypatch.chdir(tmp_path)
    out = os.path.join("dataset", "Synth2")
    _synthetic(out, 3)
    assert "use it with --dataset_name synthetic --data_root dataset/Synth2\n" in capsys.readouterr().out
    with pytest.raises(ValueError) as unknown:
        prepare_data.main(prepare_data.parse_args(["validate", "--dataset_name", "Synth2", "--no_texts"]))
    assert str(unknown.value).endswith("no dataset/Synth2/spec.json (dataset/Synth2 holds a dataset made by "
                                       "prepare_data.py synthetic: pass --dataset_name synthetic --data_root "
                                       "dataset/Synth2)")
    assert get_dataset_spec("synthetic", out).root == out  # the advice, followed
    _synthetic(os.path.join("dataset", "Synthetic"), 3)  # the registered folder needs no --data_root
    assert "use it with --dataset_name synthetic\n" in capsys.readouterr().out
