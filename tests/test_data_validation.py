"""validate_dataset: a clean dataset passes; a broken one reports every problem, with its file, in one pass."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest

from utils.data_validation import KINDS, validate_dataset
from utils.dataset_specs import get_dataset_spec
from utils.motion_files import read_split

GOOD_TEXT = "a person walks.#a/DET person/NOUN walk/VERB#0.0#0.0\n"


def write_clean(root: Path, ids: list[str], length: int = 60, dim: int = 263) -> None:
    """A small valid dataset: random (length, dim) features, one caption each, every id in train, Mean/Std."""
    rng = np.random.default_rng(0)
    (root / "new_joint_vecs").mkdir(parents=True)
    (root / "texts").mkdir()
    for clip_id in ids:
        np.save(root / "new_joint_vecs" / f"{clip_id}.npy", rng.standard_normal((length, dim)).astype(np.float32))
        (root / "texts" / f"{clip_id}.txt").write_text(GOOD_TEXT)
    (root / "train.txt").write_text("\n".join(ids) + "\n")
    (root / "val.txt").write_text(ids[0] + "\n")
    (root / "test.txt").write_text(ids[-1] + "\n")
    np.save(root / "Mean.npy", np.zeros(dim, dtype=np.float32))
    np.save(root / "Std.npy", np.ones(dim, dtype=np.float32))


def test_clean_dataset_is_ok(tmp_path):
    write_clean(tmp_path, ["000001", "000002", "000003"])
    report = validate_dataset(get_dataset_spec("t2m"), str(tmp_path))
    assert report.ok and report.problems == [] and report.counts == {}
    assert report.checked == {"splits": 3, "ids": 3, "motions": 3, "frames": 180, "texts": 3}
    assert "OK (0 errors, 0 warnings" in report.format()


def test_broken_dataset_reports_every_problem(tmp_path):
    ids = ["good", "nan", "inf", "width", "short", "long", "zerobytes", "noframes", "strings", "notext", "emptytext",
           "badbytes", "malformed", "notokens"]
    write_clean(tmp_path, ids)
    vecs, texts = tmp_path / "new_joint_vecs", tmp_path / "texts"
    values = np.zeros((60, 263), dtype=np.float32)
    values[5, 10] = np.nan
    np.save(vecs / "nan.npy", values)
    values = np.zeros((60, 263), dtype=np.float32)
    values[1, 200] = -np.inf
    np.save(vecs / "inf.npy", values)
    np.save(vecs / "width.npy", np.zeros((60, 67), dtype=np.float32))
    np.save(vecs / "short.npy", np.zeros((12, 263), dtype=np.float32))
    np.save(vecs / "long.npy", np.zeros((250, 263), dtype=np.float32))
    (vecs / "zerobytes.npy").write_bytes(b"")
    np.save(vecs / "noframes.npy", np.zeros((0, 263), dtype=np.float32))
    np.save(vecs / "strings.npy", np.full((60, 263), "a"))
    (texts / "notext.txt").unlink()
    (texts / "emptytext.txt").write_text("\n")
    (texts / "badbytes.txt").write_bytes(b"a person\xff walks.#a/DET#0#0\n")
    (texts / "malformed.txt").write_text(GOOD_TEXT + "a person waves.#a/DET person/NOUN wave/VERB\n")
    (texts / "notokens.txt").write_text("a person runs.##0.0#0.0\n")
    (tmp_path / "train.txt").write_text("\n".join(ids + ["ghost", "good"]) + "\n")  # good: listed twice
    (tmp_path / "val.txt").write_text("")
    (tmp_path / "test.txt").unlink()
    np.save(tmp_path / "Mean.npy", np.zeros(251, dtype=np.float32))
    std = np.ones(263, dtype=np.float32)
    std[3], std[261] = 0.0, np.nan
    np.save(tmp_path / "Std.npy", std)

    report = validate_dataset(get_dataset_spec("t2m"), str(tmp_path))
    assert not report.ok
    expected = {"stats_shape": 1, "stats_nonfinite": 1, "std_zero": 1, "empty_split": 1, "missing_split": 1,
                "nan": 1, "inf": 1, "wrong_dim": 1, "too_short": 1, "too_long": 1, "empty_motion": 2, "non_numeric": 1,
                "missing_text": 2, "empty_text": 1, "undecodable_text": 1, "malformed_text": 1, "no_tokens": 1,
                "missing_motion": 1, "duplicate_id": 1}
    assert report.counts == expected
    # text_fps needs an imported spec.json: tests/test_bvh.py covers it.
    assert set(expected) == set(KINDS) - {"missing_root", "missing_stats", "unreadable_motion", "unreadable_text",
                                          "text_fps"}
    by_kind = {p.kind: p for p in report.problems}
    names = {"stats_shape": "Mean.npy", "stats_nonfinite": "Std.npy", "std_zero": "Std.npy", "empty_split": "val.txt",
             "missing_split": "test.txt", "nan": "nan.npy", "inf": "inf.npy", "wrong_dim": "width.npy",
             "too_short": "short.npy", "too_long": "long.npy", "non_numeric": "strings.npy",
             "empty_text": "emptytext.txt", "undecodable_text": "badbytes.txt", "malformed_text": "malformed.txt",
             "no_tokens": "notokens.txt", "missing_motion": "ghost.npy", "duplicate_id": "train.txt"}
    for kind, name in names.items():
        assert name in by_kind[kind].message, (kind, by_kind[kind].message)
        assert by_kind[kind].severity == KINDS[kind]
    assert "frame 5, feature 10 (group 'ric')" in by_kind["nan"].message
    assert "line 2: 2 '#'-separated fields" in by_kind["malformed_text"].message
    assert "train.txt: 1 id listed more than once ('good' 2 times)" in by_kind["duplicate_id"].message
    assert "std_zero" in report.format() and "index 3, group 'root_y'" in by_kind["std_zero"].message
    empty = sorted(p.path for p in report.problems if p.kind == "empty_motion")
    assert [Path(p).name for p in empty] == ["noframes.npy", "zerobytes.npy"]
    missing_texts = sorted(Path(p.path).name for p in report.problems if p.kind == "missing_text")
    assert missing_texts == ["ghost.txt", "notext.txt"]

    text = report.format(max_per_kind=1)
    assert text.startswith(f"dataset 't2m' at {tmp_path}: FAILED")
    assert "  error empty_motion: 2" in text and "... and 1 more" in text and "  warning too_short: 1" in text


def test_warnings_alone_keep_ok_and_missing_stats_fail(tmp_path):
    write_clean(tmp_path, ["a", "b"])
    np.save(tmp_path / "new_joint_vecs" / "b.npy", np.zeros((10, 263), dtype=np.float32))
    report = validate_dataset(get_dataset_spec("t2m"), str(tmp_path), splits=("train",))
    assert report.ok and report.counts == {"too_short": 1}
    (tmp_path / "Std.npy").unlink()
    report = validate_dataset(get_dataset_spec("t2m"), str(tmp_path), splits=("train",))
    assert not report.ok and report.counts == {"missing_stats": 1, "too_short": 1}
    assert "Std.npy: missing" in report.problems[0].message


def test_statistics_that_are_not_npy_files_are_reported_not_a_crash(tmp_path):
    write_clean(tmp_path, ["a"])
    buffer = io.BytesIO()
    np.savez(buffer, mean=np.zeros(263))  # an .npz archive renamed to .npy
    (tmp_path / "Mean.npy").write_bytes(buffer.getvalue())
    (tmp_path / "Std.npy").write_bytes(buffer.getvalue()[:100])  # a torn one
    report = validate_dataset(get_dataset_spec("t2m"), str(tmp_path), splits=("train",))
    assert not report.ok and report.counts == {"stats_shape": 2}
    for problem, name in zip(report.problems, ("Mean.npy", "Std.npy")):
        assert problem.message == f"{tmp_path / name}: not a .npy file (no NUMPY header); expected shape (263,)"


def test_a_token_the_evaluation_dataset_refuses_is_an_error(tmp_path):
    # The evaluation dataset reads every token as word/POS and raises on one that is not.
    write_clean(tmp_path, ["a", "b"])
    (tmp_path / "texts" / "b.txt").write_text(GOOD_TEXT + "a person runs.#a/DET person run/VERB#0.0#0.0\n")
    report = validate_dataset(get_dataset_spec("t2m"), str(tmp_path), splits=("train",))
    assert not report.ok and report.counts == {"malformed_text": 1}
    message = report.problems[0].message
    assert message.startswith(f"{tmp_path / 'texts' / 'b.txt'}: caption 'a person runs.': caption token 'person' is "
                              f"not of the form 'word/POS'")


def test_clips_the_text_loaders_skip_as_too_long_are_warnings(tmp_path):
    # The text-motion loaders keep clips of min_motion_length <= T < max_motion_length + unit_length (200 for t2m).
    write_clean(tmp_path, ["a", "b", "c"])
    np.save(tmp_path / "new_joint_vecs" / "b.npy", np.zeros((199, 263), dtype=np.float32))
    np.save(tmp_path / "new_joint_vecs" / "c.npy", np.zeros((200, 263), dtype=np.float32))
    report = validate_dataset(get_dataset_spec("t2m"), str(tmp_path), splits=("train",))
    assert report.ok and report.counts == {"too_long": 1}
    problem = report.problems[0]
    assert problem.severity == "warning" and problem.path == str(tmp_path / "new_joint_vecs" / "c.npy")
    assert "c.npy: 200 frames; expected fewer than 200" in problem.message


def test_t2m_67_accepts_263_files_and_texts_can_be_skipped(tmp_path):
    write_clean(tmp_path, ["a"])
    (tmp_path / "texts" / "a.txt").unlink()
    spec = get_dataset_spec("t2m_67")
    assert validate_dataset(spec, str(tmp_path), texts=False).counts == {}
    assert validate_dataset(spec, str(tmp_path)).counts == {"missing_text": 1}


def test_missing_root(tmp_path):
    report = validate_dataset(get_dataset_spec("t2m"), str(tmp_path / "nowhere"))
    assert not report.ok and report.counts == {"missing_root": 1}
    assert "nowhere: dataset folder missing" in report.format()


def test_validate_command_can_skip_captions_and_pick_splits(tmp_path, capsys):
    import prepare_data

    write_clean(tmp_path, ["a", "b"])
    (tmp_path / "texts" / "a.txt").unlink()
    (tmp_path / "test.txt").unlink()
    base = ["validate", "--dataset_name", "t2m", "--data_root", str(tmp_path)]
    assert prepare_data.main(prepare_data.parse_args(base)) == 1  # the missing caption and test split
    assert prepare_data.main(prepare_data.parse_args([*base, "--no_texts", "--splits", "train", "val"])) == 0
    assert "OK (0 errors" in capsys.readouterr().out


def test_stats_command_recomputes_the_statistics_the_loader_asks_for(tmp_path, capsys):
    """A dataset built by hand has no Mean.npy / Std.npy: the loader's error names the command that computes them,
    and the command gives the statistics the dataset writers use (here: those the synthetic generator wrote)."""
    import prepare_data
    from utils.normalization import load_mean_std
    from utils.synthetic import generate_synthetic_dataset

    root = tmp_path / "Synthetic"
    generate_synthetic_dataset(str(root), 12, seed=0)
    spec = get_dataset_spec("synthetic", str(root))
    written = [np.load(root / name) for name in ("Mean.npy", "Std.npy")]
    for name in ("Mean.npy", "Std.npy"):
        (root / name).unlink()
    with pytest.raises(ValueError, match=r"Mean\.npy: missing.*prepare_data\.py stats --dataset_name synthetic"):
        load_mean_std(spec, str(root))
    args = ["stats", "--dataset_name", "synthetic", "--data_root", str(root)]
    assert prepare_data.main(prepare_data.parse_args(args)) == 0
    assert "from 12 clips" in capsys.readouterr().out
    for name, expected in zip(("Mean.npy", "Std.npy"), written):
        np.testing.assert_allclose(np.load(root / name), expected, rtol=1e-6, atol=1e-7)
    load_mean_std(spec, str(root))
    with pytest.raises(ValueError, match="already exist; pass --overwrite"):
        prepare_data.main(prepare_data.parse_args(args))
    train = read_split(str(root), "train")
    np.save(root / "new_joint_vecs" / f"{train[0]}.npy", np.full((50, 263), np.nan, dtype=np.float32))
    with pytest.raises(ValueError, match=f"{train[0]}\\.npy: .*NAN"):
        prepare_data.main(prepare_data.parse_args([*args, "--overwrite", "--split", "train"]))


def test_stats_command_refuses_a_spec_that_reads_a_slice_of_the_files(tmp_path):
    """t2m_67 reads the first 67 of the 263 columns of HumanML3D's files, which t2m reads whole: statistics computed
    under its spec would leave the std past column 67 un-averaged, in the folder t2m shares, so it names t2m."""
    import prepare_data
    from utils.synthetic import generate_synthetic_dataset

    root = tmp_path / "HumanML3D"
    generate_synthetic_dataset(str(root), 8, seed=0)
    for name in ("Mean.npy", "Std.npy"):
        (root / name).unlink()
    base = ["stats", "--data_root", str(root)]
    with pytest.raises(ValueError, match=r"first 67 of the 263 features.*--dataset_name t2m \("):
        prepare_data.main(prepare_data.parse_args([*base, "--dataset_name", "t2m_67"]))
    assert not (root / "Std.npy").exists()
    assert prepare_data.main(prepare_data.parse_args([*base, "--dataset_name", "t2m"])) == 0
    std = np.load(root / "Std.npy")
    rot = get_dataset_spec("t2m", str(root)).group("rot")
    assert std.shape == (263,) and np.unique(std[rot]).size == 1  # every group averaged, past column 67 too


def test_a_caption_file_that_cannot_be_read_is_one_problem_of_the_report(tmp_path, monkeypatch):
    """No permission to read one caption file: that file is reported and the scan goes on (the report is not lost)."""
    import builtins

    from utils import motion_files

    write_clean(tmp_path, ["000001", "000002", "000003"])
    np.save(tmp_path / "new_joint_vecs" / "000003.npy", np.zeros((10, 263), np.float32))  # too short
    locked = str(tmp_path / "texts" / "000002.txt")

    def guarded_open(path, *args, **kwargs):
        if str(path) == locked:
            raise PermissionError(13, "Permission denied", locked)
        return builtins.open(path, *args, **kwargs)

    monkeypatch.setattr(motion_files, "open", guarded_open, raising=False)
    report = validate_dataset(get_dataset_spec("t2m"), str(tmp_path))
    assert not report.ok and report.counts == {"unreadable_text": 1, "too_short": 1}
    (problem,) = [p for p in report.problems if p.kind == "unreadable_text"]
    assert problem.severity == "error" and problem.path == locked
    assert "000002.txt: cannot read the caption file (Permission denied)" in problem.message
