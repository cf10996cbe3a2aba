"""plot_loss.py, the reproduce.py report and whole-dataset validation: the values, verdicts, messages and files a
user reads. Pins smoothing that leaves its input alone, every point of a long run read, each run drawn in its own
colour, the --dpi and argument checks; measured/real values and their Markdown rendering; which problems are errors,
where they are reported and how the report counts them."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
from PIL import Image
from test_data_validation import write_clean
from test_plot_loss import curve, write_run

import plot_loss
from utils.data_validation import validate_dataset
from utils.dataset_specs import SPEC_FILE, get_dataset_spec
from utils.recipes import RECIPES
from utils.reproduce_report import build_report, environment, format_markdown, measured, read_result

DPI = 30


def run_cli(*argv: str) -> list[str]:
    return plot_loss.main(plot_loss.parse_args([*argv, "--dpi", str(DPI)]))


def _colour_pixels(path, colour) -> int:
    with Image.open(path) as image:
        rgb = np.asarray(image.convert("RGB")).astype(int)
    return int((np.abs(rgb - np.array(colour)).sum(-1) < 40).sum())


# ---------------------------------------------------------------------------------------------- plot_loss: smoothing

def test_smoothing_leaves_the_values_it_is_given_unchanged():
    values = np.array([4.0, 1.0, 7.0, 2.0])
    plot_loss.smooth_ema(values, 0.9)
    np.testing.assert_array_equal(values, [4.0, 1.0, 7.0, 2.0])


def test_an_infinite_point_passes_through_and_stays_out_of_the_average():
    out = plot_loss.smooth_ema(np.array([1.0, np.inf, 3.0]), 0.5)
    assert out[1] == np.inf
    np.testing.assert_allclose(out[[0, 2]], [1.0, (0.25 + 1.5) / 0.75])


def test_the_default_smoothing_is_tensorboards():
    assert plot_loss.parse_args(["--log_dir", "x"]).smooth == 0.6


# ------------------------------------------------------------------------------------------ plot_loss: reading runs

def test_every_point_of_a_long_run_is_read(tmp_path):
    write_run(tmp_path / "run", {"Train/loss": [1.0 / (i + 1) for i in range(300)]})
    series = plot_loss.read_scalars(str(tmp_path / "run"))["Train/loss"]
    np.testing.assert_array_equal(series.steps, np.arange(300))


# ------------------------------------------------------------------------------------------------- plot_loss: CLI

def test_each_run_is_drawn_even_after_one_without_the_metric(tmp_path, caplog):
    """A metric only the second run logs is drawn in the second run's colour, with a warning naming the first."""
    write_run(tmp_path / "a", {"Train/loss": curve()})
    write_run(tmp_path / "b", {"Train/loss": curve(), "Val/fid": curve()})
    out = tmp_path / "fid.png"
    with caplog.at_level("WARNING", logger="plot_loss"):
        assert plot_loss.main(plot_loss.parse_args(["--log_dirs", str(tmp_path / "a"), str(tmp_path / "b"),
                                                    "--metric", "Val/fid", "--output", str(out), "--dpi", "100"])
                              ) == [str(out)]
    assert _colour_pixels(out, (0xFF, 0x7F, 0x0E)) > 5  # matplotlib's C1, the colour of the second run
    assert any("'Val/fid' is missing from run(s) ['a']" in r.getMessage() for r in caplog.records)


def test_the_png_size_follows_dpi(tmp_path):
    write_run(tmp_path / "run", {"Train/loss": curve()})
    heights = []
    for dpi in ("20", "40"):
        (path,) = plot_loss.main(plot_loss.parse_args(["--log_dir", str(tmp_path / "run"), "--output",
                                                       str(tmp_path / f"loss{dpi}.png"), "--dpi", dpi]))
        with Image.open(path) as image:
            heights.append(image.size[1])
    assert heights == [60, 120]  # 3 inches per panel


def test_two_runs_with_the_same_folder_name_must_be_named(tmp_path):
    write_run(tmp_path / "a" / "run", {"Train/loss": curve()})
    write_run(tmp_path / "b" / "run", {"Train/loss": curve()})
    with pytest.raises(ValueError, match=r"run names must differ, got \['run', 'run'\]; pass --names"):
        run_cli("--log_dirs", str(tmp_path / "a" / "run"), str(tmp_path / "b" / "run"), "--output",
                str(tmp_path / "x.png"))
    assert not (tmp_path / "x.png").exists()


def test_an_invalid_smooth_fails_before_anything_is_read(tmp_path):
    with pytest.raises(ValueError, match=r"--smooth must be in \[0, 1\), got 1.5"):
        run_cli("--log_dir", str(tmp_path / "nowhere"), "--list", "--smooth", "1.5")


def test_a_tag_named_loss_in_capitals_is_drawn_by_default(tmp_path, monkeypatch):
    write_run(tmp_path / "run", {"Loss": curve(), "Train/lr": [1e-3] * 30})
    drawn = []
    monkeypatch.setattr(plot_loss, "plot_metrics", lambda runs, metrics, *args: drawn.append(metrics) or "x.png")
    run_cli("--log_dir", str(tmp_path / "run"))
    assert drawn == [["Loss"]]


def test_a_run_without_a_loss_tag_asks_for_metric(tmp_path):
    write_run(tmp_path / "run", {"Train/lr": [1e-3] * 30})
    with pytest.raises(ValueError, match=r"no tag with 'loss' in its name; pass --metric, available tags: "
                                         r"\['Train/lr'\]"):
        run_cli("--log_dir", str(tmp_path / "run"), "--output", str(tmp_path / "x.png"))


@pytest.mark.parametrize("argv", [[], ["--log_dir", "a", "--log_dirs", "b"]])
def test_exactly_one_of_log_dir_and_log_dirs_is_required(argv):
    with pytest.raises(SystemExit):
        plot_loss.parse_args(argv)


def test_a_tag_of_only_punctuation_still_gets_a_file_name():
    assert plot_loss.safe_filename("//") == "scalar"
    assert plot_loss.safe_filename("Val/fid score") == "Val_fid_score"


def test_all_without_output_dir_writes_into_loss_plots(tmp_path, monkeypatch):
    write_run(tmp_path / "run", {"Train/loss": curve()})
    monkeypatch.chdir(tmp_path)
    run_cli("--log_dir", "run", "--all")
    assert sorted(p.name for p in (tmp_path / "loss_plots").iterdir()) == ["Train_loss.png"]

# ------------------------------------------------------------------------------------ reproduce report: the values

def _evaluation_result(**extra) -> dict:
    """An evaluation script's result JSON: protocol metrics with CIs, the GT row, its settings, and MPJPE."""
    evaluator = {"path": "ck/t2m/text_mot_match/model/finest.tar", "sha256": "cd" * 32, "source": "my vectors",
                 "released": False}
    return {"checkpoint": "runs/vq/model/net_best_fid.tar", "checkpoint_sha256": "ab" * 32, "split": "test",
            "protocol": {"metrics": {"fid": {"mean": 0.1, "ci": 0.01}, "top1": {"mean": 0.5, "ci": 0.005}},
                         "real": {"fid": None, "top1": {"mean": 0.511, "ci": 0.003}},
                         "meta": {"protocol": {"replications": 20, "evaluator": evaluator}}},
            "reconstruction": {"mpjpe_mm": 30.0, "mpjpe_seq_mm": None}, **extra}


def test_a_zero_reconstruction_error_is_measured():
    assert measured({"reconstruction": {"mpjpe_mm": 0.0}}) == {"mpjpe_mm": (0.0, None)}


def test_the_report_shows_the_real_motion_row_beside_the_model():
    report = build_report(RECIPES["t2m_gpt_vq"], "t2m", False, [], {"evaluate": _evaluation_result()})
    rows = {r["metric"]: r for r in report["evaluations"]["evaluate"]["rows"]}
    assert rows["top1"]["real"] == 0.511 and rows["top1"]["mean"] == 0.5 and rows["top1"]["ci"] == 0.005
    assert rows["fid"]["real"] is None  # FID has no GT row (null in the result)
    assert rows["mpjpe_mm"]["mean"] == 30.0 and rows["mpjpe_mm"]["ci"] is None


def test_the_environment_records_whether_the_checkout_had_changes():
    env = environment()
    if env["git_commit"] is None:
        pytest.skip("not a git checkout")
    assert len(env["git_commit"]) == 40 and isinstance(env["git_dirty"], bool)


# ---------------------------------------------------------------------------------- reproduce report: the Markdown

def test_the_markdown_names_the_checkpoints_and_the_evaluator_that_scored_them(tmp_path):
    residual = {"checkpoint": "runs/rtrans/model/net_best_fid.tar", "checkpoint_sha256": "ef" * 32}
    result = _evaluation_result(generator={"model_name": "MaskTransformer", "step": 0, "residual": residual,
                                           "text_encoder": "clip"})
    report = build_report(RECIPES["t2m_gpt_vq"], "t2m", False, [], {"evaluate": result})
    evaluation = report["evaluations"]["evaluate"]["evaluation"]
    assert evaluation["generator"] == {"model_name": "MaskTransformer", "step": 0, "residual": residual,
                                       "text_encoder": "clip"}
    assert evaluation["protocol"]["replications"] == 20
    text = format_markdown(report)
    assert f"`runs/vq/model/net_best_fid.tar` (SHA-256 {'ab' * 8}...)" in text
    assert f"residual transformer `runs/rtrans/model/net_best_fid.tar` (SHA-256 {'ef' * 8}...)" in text
    assert (f"scored by the evaluator `ck/t2m/text_mot_match/model/finest.tar` (SHA-256 {'cd' * 8}...): trained with "
            f"train_evaluator.py (word vectors: my vectors), not the papers' evaluator") in text


def _report(**changes) -> dict:
    env = {"date": "d", "torch": "t", "cuda": None, "git_commit": "abc", "git_dirty": False}
    report = {"title": "T", "recipe": "r", "paper": "P", "dataset": "t2m", "quick": False,
              "published_datasets": ["t2m"], "notes": "", "environment": env, "stages": [], "evaluations": {}}
    report.update(changes)
    return report


def test_the_markdown_says_whether_the_commit_had_uncommitted_changes():
    assert "commit abc\n" in format_markdown(_report())
    dirty = _report(environment={"date": "d", "torch": "t", "cuda": None, "git_commit": "abc", "git_dirty": True})
    assert "commit abc (uncommitted changes)\n" in format_markdown(dirty)


def test_the_markdown_carries_the_recipe_notes_and_the_quick_warning():
    text = format_markdown(_report(notes="evaluates its last weights", quick=True))
    assert "- evaluates its last weights\n" in text
    assert "(--quick: tiny models on the synthetic data; the published numbers are for t2m" in text
    assert "- evaluates" not in format_markdown(_report()) and "--quick" not in format_markdown(_report())


def test_a_quick_run_is_recorded_as_quick():
    assert build_report(RECIPES["t2m_gpt_vq"], "synthetic", True, [], {})["quick"] is True


def test_a_stage_never_timed_shows_no_time():
    stages = [{"name": "tokenizer", "status": "skipped (done)", "seconds": None, "command": "python t.py"},
              {"name": "evaluate", "status": "skipped (done)", "seconds": 61.4, "command": "python e.py"}]
    text = format_markdown(_report(stages=stages))
    assert "| tokenizer | skipped (done) | - | `python t.py` |" in text
    assert "| evaluate | skipped (done) | 61 (an earlier call) | `python e.py` |" in text


def test_only_unverified_published_numbers_are_marked():
    rows = [{"metric": "diversity", "mean": 9.5, "ci": 0.1, "real": 9.6, "published": None, "source": None,
             "verified": None, "difference": None, "verdict": ""},
            {"metric": "mpjpe_mm", "mean": 29.5, "ci": None, "real": None, "published": 29.5, "source": "paper",
             "verified": True, "difference": 0.0, "verdict": "equal"}]
    text = format_markdown(_report(evaluations={"evaluate": {"evaluation": {}, "rows": rows}}))
    assert "| Diversity | 9.6000 | 9.5000 ± 0.1000 | - | - | - | - |" in text
    assert "| MPJPE per frame (mm) | - | 29.5000 | 29.500 | 0.0000 | equal | paper |" in text
    assert "unverified" not in text


# ---------------------------------------------------------------------------- reproduce report: reading a result

def test_a_result_that_is_not_json_is_an_error_naming_the_file(tmp_path):
    path = tmp_path / "evaluate.json"
    path.write_text('{"protocol": ')  # cut short by a killed evaluation
    with pytest.raises(ValueError, match=rf"^{path}: cannot read the evaluation result .*rerun the evaluation stage"):
        read_result(str(path))
    with pytest.raises(ValueError, match=rf"^{tmp_path / 'missing.json'}: cannot read the evaluation result"):
        read_result(str(tmp_path / "missing.json"))
    path.write_text(json.dumps({"protocol": None}))
    assert read_result(str(path)) == {"protocol": None}


# ---------------------------------------------------------------------------- dataset validation: severity, counts

def test_split_ids_pointing_outside_the_dataset_are_an_error(tmp_path):
    write_clean(tmp_path, ["a"])
    (tmp_path / "train.txt").write_text("a\n../elsewhere/b\n")
    report = validate_dataset(get_dataset_spec("t2m"), str(tmp_path), splits=("train",))
    (problem,) = report.problems
    assert problem.kind == "bad_split" and problem.severity == "error" and not report.ok
    assert problem.path == str(tmp_path / "train.txt") and "point outside the dataset" in problem.message


def test_a_missing_motion_alone_keeps_the_dataset_usable(tmp_path):
    write_clean(tmp_path, ["a", "b"])
    (tmp_path / "new_joint_vecs" / "b.npy").unlink()
    report = validate_dataset(get_dataset_spec("t2m"), str(tmp_path), splits=("train",))
    assert report.counts == {"missing_motion": 1} and report.ok
    assert report.problems[0].severity == "warning"


def test_the_summary_counts_errors_and_warnings_and_lists_every_message_that_fits(tmp_path):
    write_clean(tmp_path, ["a", "b", "c"])
    (tmp_path / "Mean.npy").unlink()
    for clip_id in ("b", "c"):
        (tmp_path / "new_joint_vecs" / f"{clip_id}.npy").unlink()
    report = validate_dataset(get_dataset_spec("t2m"), str(tmp_path), splits=("train",))
    text = report.format(max_per_kind=2)
    assert text.startswith(f"dataset 't2m' at {tmp_path}: FAILED (1 errors, 2 warnings; checked 1 splits, 3 ids, "
                           f"1 motions, 60 frames, 3 texts)")
    assert "  warning missing_motion: 2\n" in text and "b.npy" in text and "c.npy" in text
    assert "more" not in text
    assert "... and 1 more" in report.format(max_per_kind=1)


def test_a_missing_mean_says_it_is_the_mean_that_is_missing(tmp_path):
    write_clean(tmp_path, ["a"])
    (tmp_path / "Mean.npy").unlink()
    (problem,) = validate_dataset(get_dataset_spec("t2m"), str(tmp_path), splits=("train",)).problems
    assert problem.kind == "missing_stats" and problem.path == str(tmp_path / "Mean.npy")
    assert "Mean.npy: missing; expected the dataset mean of shape (263,)" in problem.message


@pytest.mark.parametrize("repeated, shown", [(5, "'d4' 2 times)"), (6, "'d4' 2 times, ...)")])
def test_a_split_listing_many_ids_twice_shows_the_first_five(tmp_path, repeated, shown):
    ids = [f"d{i}" for i in range(repeated)]
    write_clean(tmp_path, ids)
    (tmp_path / "train.txt").write_text("\n".join(ids + ids) + "\n")
    (problem,) = validate_dataset(get_dataset_spec("t2m"), str(tmp_path), splits=("train",)).problems
    assert f"train.txt: {repeated} ids listed more than once ('d0' 2 times, " in problem.message
    assert shown in problem.message and "'d5'" not in problem.message


# ------------------------------------------------------------------------------ dataset validation: clip lengths

def test_a_long_clip_is_only_a_problem_when_captions_are_checked(tmp_path):
    """too_long is the text-motion loaders' limit; a motion-only dataset (texts=False) has no such limit."""
    write_clean(tmp_path, ["a", "b"])
    np.save(tmp_path / "new_joint_vecs" / "b.npy", np.zeros((250, 263), np.float32))
    spec = get_dataset_spec("t2m")
    assert validate_dataset(spec, str(tmp_path), splits=("train",), texts=False).counts == {}
    (problem,) = validate_dataset(spec, str(tmp_path), splits=("train",)).problems
    assert problem.kind == "too_long"
    assert "b.npy: 250 frames; expected fewer than 200 (max_motion_length 196 + unit_length 4)" in problem.message


def test_a_short_clip_names_both_limits_that_skip_it(tmp_path):
    write_clean(tmp_path, ["a", "b"])
    np.save(tmp_path / "new_joint_vecs" / "b.npy", np.zeros((30, 263), np.float32))
    (problem,) = validate_dataset(get_dataset_spec("t2m"), str(tmp_path), splits=("train",)).problems
    assert problem.kind == "too_short"
    assert "b.npy: 30 frames; expected at least min_motion_length 40" in problem.message
    assert "shorter than window_size 64" in problem.message


# ------------------------------------------------------------------------------- dataset validation: text_fps

def _tagged(tmp_path, fps: float, spec_file: bool):
    write_clean(tmp_path, ["a", "b"])
    (tmp_path / "texts" / "b.txt").write_text("a person walks.#a/DET person/NOUN walk/VERB#1.0#2.5\n")
    if spec_file:
        (tmp_path / SPEC_FILE).write_text("{}")
    spec = dataclasses.replace(get_dataset_spec("t2m"), fps=fps, text_fps=20.0)
    return validate_dataset(spec, str(tmp_path), splits=("train",))


def test_time_tags_at_another_rate_than_an_imported_dataset_are_a_warning(tmp_path):
    report = _tagged(tmp_path, 30.0, spec_file=True)
    (problem,) = report.problems
    assert problem.kind == "text_fps" and problem.severity == "warning" and report.ok
    assert problem.path == str(tmp_path / SPEC_FILE)
    assert f"text_fps 20 but fps 30, so the time tags of 1 caption files (e.g. {tmp_path / 'texts' / 'b.txt'})" in (
        problem.message)


@pytest.mark.parametrize("fps, spec_file", [(20.0, True), (30.0, False)])
def test_time_tags_are_fine_at_the_clip_rate_or_without_an_import(tmp_path, fps, spec_file):
    # A registered dataset without spec.json (KIT: 12.5 fps, tags at 20) is read as the reference loaders read it.
    assert _tagged(tmp_path, fps, spec_file).counts == {}


@pytest.mark.parametrize("content", ["[]", "null", "3.5"])
def test_a_result_file_that_is_not_a_json_object_is_an_error_naming_it(tmp_path, content):
    path = tmp_path / "evaluate.json"
    path.write_text(content)
    with pytest.raises(ValueError, match=rf"^{path}: cannot read the evaluation result .*expected a JSON object.*"
                                         r"rerun the evaluation stage"):
        read_result(str(path))
