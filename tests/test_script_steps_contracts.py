"""reproduce.py's runner (utils/recipe_runner.py), prepare_data.py's summaries and statistics (utils/dataset_prep.py)
and render.py's inputs (utils/render_inputs.py): behaviour the script-level tests leave open."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import signal
import subprocess
import sys
import time
from types import SimpleNamespace

import pytest
from test_render import random_walk

from utils import recipe_runner
from utils.bvh_import import ImportSummary
from utils.dataset_prep import import_summary_lines, synthetic_use_line, write_dataset_stats
from utils.dataset_specs import get_dataset_spec
from utils.motion_files import read_split
from utils.motion_process import extract_features
from utils.normalization import DatasetError
from utils.paths import HOME_ENV, RENDERS_DIR
from utils.recipe_plan import Step, command
from utils.render_inputs import (
    MotionFile,
    bvh_mapping,
    check_distinct_outputs,
    check_no_existing_outputs,
    classify,
    default_folder,
    load_motions,
    load_statistics,
    output_stems,
)
from utils.stop_signals import Stopped
from utils.synthetic import generate_synthetic_dataset

# ------------------------------------------------------------------------------------------- utils/recipe_runner.py

# A stage that says it is ready once its SIGTERM/SIGHUP handler is in place, and on either signal takes a while to
# clean up before it writes which signal stopped it and exits as the project's scripts do (128 + signum).
_SLOW_STAGE = """import os, signal, sys, time
def stop(signum, frame):
    time.sleep(1.0)
    open({stopped!r}, "w").write(signal.Signals(signum).name)
    sys.exit(128 + signum)
signal.signal(signal.SIGTERM, stop)
signal.signal(signal.SIGHUP, stop)
open({ready!r}, "w").close()
time.sleep(60)
"""


def _interrupt_first_wait(monkeypatch, ready, error: BaseException) -> None:
    """The first ``Popen.wait`` raises ``error`` (Ctrl-C or a stop signal arriving while the stage runs) once the
    stage is ready; later waits are the real ones."""
    real_wait = subprocess.Popen.wait
    calls = []

    def wait(self, *args, **kwargs):
        if not calls:
            calls.append(1)
            deadline = time.monotonic() + 60
            while not os.path.exists(ready) and time.monotonic() < deadline:
                time.sleep(0.02)
            raise error
        return real_wait(self, *args, **kwargs)

    monkeypatch.setattr(subprocess.Popen, "wait", wait)


def test_ctrl_c_stops_the_stage_with_sigterm_waits_for_its_clean_up_and_ignores_further_ctrl_c(tmp_path,
                                                                                               monkeypatch):
    """Ctrl-C while a stage runs: the stage gets SIGTERM, its clean-up ends before the call does, and a further
    Ctrl-C no longer interrupts the call."""
    ready, stopped = str(tmp_path / "ready"), tmp_path / "stopped"
    _interrupt_first_wait(monkeypatch, ready, KeyboardInterrupt())
    previous = signal.getsignal(signal.SIGINT)
    try:
        with pytest.raises(KeyboardInterrupt):
            recipe_runner.run_stage([sys.executable, "-c", _SLOW_STAGE.format(stopped=str(stopped), ready=ready)])
        ignored = signal.getsignal(signal.SIGINT)
    finally:
        signal.signal(signal.SIGINT, previous)
    assert stopped.exists() and stopped.read_text() == "SIGTERM"
    assert ignored == signal.SIG_IGN


def test_a_stop_signal_reaches_the_stage_and_the_call_still_stops(tmp_path, monkeypatch):
    """SIGHUP to reproduce.py while a stage runs: the stage gets the same signal, its clean-up ends before the
    call does, and the call then stops (``Stopped``) rather than going on to the next step."""
    ready, stopped = str(tmp_path / "ready"), tmp_path / "stopped"
    _interrupt_first_wait(monkeypatch, ready, Stopped(signal.SIGHUP))
    with pytest.raises(Stopped) as stop:
        recipe_runner.run_stage([sys.executable, "-c", _SLOW_STAGE.format(stopped=str(stopped), ready=ready)])
    assert stop.value.signum == signal.SIGHUP
    assert stopped.exists() and stopped.read_text() == "SIGHUP"


def test_a_stage_runs_with_the_callers_environment_and_unbuffered_output(monkeypatch):
    """A stage inherits reproduce.py's environment (here a variable of the caller) and runs with PYTHONUNBUFFERED=1,
    so its log lines appear as they are written."""
    monkeypatch.setenv("FSQ_MARDM_STAGE_PROBE", "from the caller")
    monkeypatch.delenv("PYTHONUNBUFFERED", raising=False)  # set by reproduce.py itself, whatever the caller has
    code = ("import os, sys; sys.exit(0 if os.environ.get('FSQ_MARDM_STAGE_PROBE') == 'from the caller' and "
            "os.environ.get('PYTHONUNBUFFERED') == '1' else 7)")
    assert recipe_runner.run_stage([sys.executable, "-c", code]) == 0


def test_a_stop_sent_after_the_stage_ended_is_no_error():
    """A stop that arrives when the stage and everything it started have ended already is not an error."""
    with subprocess.Popen([sys.executable, "-c", "pass"], process_group=0) as stage:
        stage.wait()
    recipe_runner._signal_group(stage, signal.SIGTERM)


def test_the_dry_run_prints_a_finished_step_after_one_that_runs_as_a_command(tmp_path, capsys):
    """--dry_run: a step recorded as finished after a step that runs in the same call is printed to run (it reads
    what the earlier one makes), not as a skipped comment."""
    result = tmp_path / "evaluate.json"
    result.write_text("{}")
    train = Step("train", [sys.executable, "-c", "pass"], str(tmp_path / "latest.tar"), "-c")
    later = Step("evaluate", [sys.executable, "-c", "print()"], str(result), "-c", evaluation=True)
    done = {"evaluate": {"command": command(later), "status": "done", "cwd": os.getcwd(), "output": str(result),
                         "sha256": hashlib.sha256(b"{}").hexdigest()}}
    recipe = SimpleNamespace(name="two", title="a training and its evaluation")
    print("\n".join(recipe_runner.dry_run_lines(recipe, "synthetic", [later], [], done, rerun=False)))
    assert capsys.readouterr().out.splitlines()[1:] == [f"# done, skipped: {command(later)}"]
    print("\n".join(recipe_runner.dry_run_lines(recipe, "synthetic", [train, later], [], done, rerun=False)))
    assert capsys.readouterr().out.splitlines() == ["# reproduce.py two: a training and its evaluation, dataset "
                                                    "synthetic", command(train), command(later)]


# -------------------------------------------------------------------------------------------- utils/dataset_prep.py

def _import_summary(out: str, **fields):

    base = dict(clips=6, motions=7, frames=3600, seconds=1.5, captions_from_labels=4, captions_from_names=2,
                splits={"train": 5, "val": 1, "test": 1})
    return ImportSummary(out, **{**base, **fields})


def test_an_import_prints_every_count_and_where_to_find_it(tmp_path, monkeypatch, capsys):
    """The closing lines of an import: motions, frames and minutes at the rate, each caption source, the splits,
    three examples of the skipped files, the too-short clips listed up to five, and the flags that find the folder
    (named after it, a trailing slash included)."""

    monkeypatch.delenv(HOME_ENV, raising=False)
    out = str(tmp_path / "Mocap") + os.sep
    summary = _import_summary(out, skipped=["a/shape.npz", "b/shape.npz", "c/shape.npz", "d/shape.npz"],
                              too_brief=["tiny.bvh"], generic_captions=["x", "y"], chunked_clips=["long"],
                              too_short=["s1", "s2", "s3", "s4", "s5"])
    print("\n".join(import_summary_lines("bvh", summary, out, 30.0)))
    assert capsys.readouterr().out.splitlines() == [
        f"bvh: 7 motions, 3600 frames (2.0 min at 30 fps) in 1.5 s -> {out}",
        "  clips: 6; captions from labels 4, from file names 2",
        "  splits: train 5, val 1, test 1",
        "  files without motion, skipped: 4, e.g. a/shape.npz, b/shape.npz, c/shape.npz",
        "  files under 2 frames at the target rate, skipped: 1, e.g. tiny.bvh",
        "  captioned only by the words of their names (pass --labels): 2",
        "  split into chunks (longer than the maximum length): 1 clips, e.g. long",
        "  shorter than the minimum length (written; the loaders skip them): 5: s1, s2, s3, s4, s5",
        f"  use it with --dataset_name Mocap --data_root {out}"]


def test_an_import_names_its_too_brief_files_on_their_own_and_cuts_a_long_list(tmp_path, capsys):
    """Files under two frames are counted even when no file lacked motion, and a sixth too-short clip ends the
    list with ' ...'."""

    out = str(tmp_path / "Mocap")
    summary = _import_summary(out, too_brief=["tiny.bvh", "blip.bvh"], too_short=[f"s{i}" for i in range(1, 7)])
    print("\n".join(import_summary_lines("amass", summary, out, 20.0)))
    printed = capsys.readouterr().out.splitlines()
    assert "  files under 2 frames at the target rate, skipped: 2, e.g. tiny.bvh, blip.bvh" in printed
    assert not any("files without motion" in line for line in printed)
    assert "  shorter than the minimum length (written; the loaders skip them): 6: s1, s2, s3, s4, s5 ..." in printed
    assert printed[0] == f"amass: 7 motions, 3600 frames (3.0 min at 20 fps) in 1.5 s -> {out}"


def _stats_dataset(tmp_path):
    """A three-clip synthetic dataset without its statistics."""

    root = tmp_path / "Synthetic"
    generate_synthetic_dataset(str(root), 3, seed=0)
    for name in ("Mean.npy", "Std.npy"):
        (root / name).unlink()
    return root


def test_stats_refuses_a_folder_holding_only_mean_npy(tmp_path):
    """A Mean.npy without its Std.npy is still a file stats would replace: refused without --overwrite, naming
    that file in the singular, and nothing is written."""
    import numpy as np


    root = _stats_dataset(tmp_path)
    np.save(root / "Mean.npy", np.zeros(263, np.float32))
    before = (root / "Mean.npy").read_bytes()
    with pytest.raises(ValueError) as refused:
        write_dataset_stats(get_dataset_spec("synthetic", str(root)), str(root), None, overwrite=False)
    assert str(refused.value).startswith(f"{root / 'Mean.npy'} already exists; pass --overwrite to replace them")
    assert (root / "Mean.npy").read_bytes() == before and not (root / "Std.npy").exists()


def test_stats_refuses_existing_statistics_before_reading_any_clip(tmp_path):
    """Existing statistics are refused before any clip is read: a damaged clip is not what the refusal names."""
    import numpy as np


    root = _stats_dataset(tmp_path)
    clip = read_split(str(root), "train")[0]
    np.save(root / "new_joint_vecs" / f"{clip}.npy", np.full((40, 263), np.nan, np.float32))
    for name in ("Mean.npy", "Std.npy"):
        np.save(root / name, np.ones(263, np.float32))
    with pytest.raises(ValueError, match=r"Std\.npy already exist; pass --overwrite"):
        write_dataset_stats(get_dataset_spec("synthetic", str(root)), str(root), None, overwrite=False)


def test_stats_of_one_split_does_not_blame_missing_split_files(tmp_path):
    """--split train with a clip of the wrong width: the error names the file and the width, without the advice
    meant for a folder that has no split files."""
    import numpy as np


    root = _stats_dataset(tmp_path)
    clip = read_split(str(root), "train")[0]
    np.save(root / "new_joint_vecs" / f"{clip}.npy", np.zeros((40, 10), np.float32))
    with pytest.raises(DatasetError) as refused:
        write_dataset_stats(get_dataset_spec("synthetic", str(root)), str(root), "train", overwrite=False)
    assert f"{clip}.npy" in str(refused.value) and "263" in str(refused.value)
    assert "without train/val/test.txt" not in str(refused.value)
    assert refused.value.kind == "wrong_dim"


def test_stats_without_split_files_explains_a_non_numeric_stray_file(tmp_path):
    """Without split files every .npy under new_joint_vecs/ is a clip: a file of text values fails with the advice
    to move it out, as a file of the wrong width does."""
    import numpy as np


    root = _stats_dataset(tmp_path)
    for split in ("train", "val", "test", "train_val", "all"):
        if (root / f"{split}.txt").exists():
            (root / f"{split}.txt").unlink()
    np.save(root / "new_joint_vecs" / "notes.npy", np.array([["a"] * 263] * 30))
    with pytest.raises(DatasetError, match=r"notes\.npy: dtype <U1 is not numeric.*\(without train/val/test\.txt "
                                           r"every \.npy under new_joint_vecs/ is a clip: move other files out"):
        write_dataset_stats(get_dataset_spec("synthetic", str(root)), str(root), None, overwrite=False)


def test_stats_warnings_are_logged_under_prepare_data(tmp_path, caplog):
    """What stats warns of is logged by the logger named after the script, ``prepare_data``."""


    root = _stats_dataset(tmp_path)
    with open(root / "train.txt", "a") as f:
        f.write("009707\n")
    with caplog.at_level(logging.WARNING):
        stats = write_dataset_stats(get_dataset_spec("synthetic", str(root)), str(root), None, overwrite=False)
    assert stats.clips == 3 and stats.source == "every clip of the splits"
    assert [r.name for r in caplog.records if "009707" in r.getMessage()] == ["prepare_data"]


# ------------------------------------------------------------------------------------------- utils/render_inputs.py

def test_parameters_and_motion_capture_are_told_apart_by_an_upper_case_extension(tmp_path):
    """A camera or Windows copy names files ``WALK.NPZ`` / ``WALK.BVH``: they are SMPL parameters and motion capture,
    not .npy files, whatever the case of the extension."""

    assert classify(str(tmp_path / "WALK.NPZ"), None).kind == "parameters"
    assert classify(str(tmp_path / "WALK.BVH"), None).kind == "bvh"


def test_a_clip_goes_under_renders_of_the_innermost_dataset_folder(tmp_path):
    """A clip whose path holds two clip folders renders under the innermost one's dataset, not the outer one."""

    path = tmp_path / "outer" / "new_joints" / "Inner" / "new_joint_vecs" / "sub" / "x.npy"
    assert default_folder(str(path)) == str(tmp_path / "outer" / "new_joints" / "Inner" / RENDERS_DIR /
                                            "new_joint_vecs" / "sub")
    assert default_folder(str(tmp_path / "loose" / "x.npy")) == str(tmp_path / "loose")


def test_a_batch_of_one_motion_gets_the_file_s_own_name(tmp_path):
    """A batch axis holding one motion names the video after the file (``x``), as an unbatched one does; a batch of
    two gets ``x_0`` and ``x_1``."""

    out = str(tmp_path / "videos")
    assert output_stems(MotionFile("a/x.npy", "joints", (1, 40, 22, 3)), out) == [os.path.join(out, "x")]
    assert output_stems(MotionFile("a/x.npy", "features", (1, 40, 263)), out) == [os.path.join(out, "x")]
    assert output_stems(MotionFile("a/x.npy", "joints", (2, 40, 22, 3)), out) == [os.path.join(out, "x_0"),
                                                                                  os.path.join(out, "x_1")]


def test_two_inputs_naming_one_video_by_relative_and_absolute_paths_are_refused(tmp_path, monkeypatch):
    """``videos/x`` and ``<cwd>/videos/x`` are the same video: refused as two inputs writing one file."""

    monkeypatch.chdir(tmp_path)
    files = [MotionFile("a/x.npy", "joints", (4, 22, 3)), MotionFile("b/x.npy", "joints", (4, 22, 3))]
    with pytest.raises(ValueError, match=r"a/x\.npy and b/x\.npy would both write .*x\.<mp4\|gif>"):
        check_distinct_outputs(files, [["videos/x"], [str(tmp_path / "videos" / "x")]])


def test_a_bvh_input_never_saves_its_joints_over_another_input(tmp_path):
    """A .bvh input saves its joints beside its video as a features input does: refused when that file is one of
    the inputs."""

    files = [MotionFile(str(tmp_path / "jump.bvh"), "bvh", ()),
             MotionFile(str(tmp_path / "jump_joints.npy"), "joints", (4, 22, 3))]
    with pytest.raises(ValueError, match=r"jump\.bvh would save its joints as .*jump_joints\.npy, over the input"):
        check_distinct_outputs(files, [[str(tmp_path / "jump")], [str(tmp_path / "jump_joints")]])


def test_existing_outputs_include_a_bvh_input_s_joints_mesh_videos_and_dangling_links(tmp_path):
    """Files a run would replace: the joints a .bvh input saves, a mesh video (``_mesh`` suffix) and a link whose
    target is gone (writing through it would create a file elsewhere)."""

    bvh = MotionFile(str(tmp_path / "jump.bvh"), "bvh", ())
    (tmp_path / "jump_joints.npy").write_bytes(b"mine")
    with pytest.raises(FileExistsError, match=r"1 file\(s\) exist already and would be replaced: .*jump_joints\.npy;"):
        check_no_existing_outputs([bvh], [[str(tmp_path / "jump")]], "", "gif")
    joints = MotionFile(str(tmp_path / "walk.npy"), "joints", (4, 22, 3))
    (tmp_path / "walk.gif").write_bytes(b"a skeleton video, not the mesh one")
    check_no_existing_outputs([joints], [[str(tmp_path / "walk")]], "_mesh", "gif")
    (tmp_path / "walk_mesh.gif").write_bytes(b"an earlier mesh video")
    with pytest.raises(FileExistsError, match=r"walk_mesh\.gif"):
        check_no_existing_outputs([joints], [[str(tmp_path / "walk")]], "_mesh", "gif")
    (tmp_path / "run.gif").symlink_to(tmp_path / "gone.gif")
    with pytest.raises(FileExistsError, match=r"run\.gif"):
        check_no_existing_outputs([MotionFile(str(tmp_path / "run.npy"), "joints", (4, 22, 3))],
                                  [[str(tmp_path / "run")]], "", "gif")


def test_denorm_without_statistics_names_the_file_and_the_flag(tmp_path):
    """--denorm with no Mean.npy in the data root: FileNotFoundError naming the file and --data_root."""

    with pytest.raises(FileNotFoundError, match=rf"--denorm needs {tmp_path / 'Mean.npy'} \(dataset statistics\); "
                                                r"set --data_root"):
        load_statistics(get_dataset_spec("t2m", str(tmp_path)))


def test_statistics_must_be_one_dimensional_and_come_back_as_float32(tmp_path):
    """A (263, 2) Mean.npy is refused with its shape; float64 statistics come back as float32."""
    import numpy as np


    spec = get_dataset_spec("t2m", str(tmp_path))
    np.save(tmp_path / "Mean.npy", np.zeros((263, 2), np.float32))
    np.save(tmp_path / "Std.npy", np.ones(263, np.float32))
    with pytest.raises(ValueError, match=r"Mean\.npy: expected shape \(263,\) for dataset 't2m', got \(263, 2\)"):
        load_statistics(spec)
    np.save(tmp_path / "Mean.npy", np.linspace(0, 1, 263))
    np.save(tmp_path / "Std.npy", np.linspace(1, 2, 263))
    mean, std = load_statistics(spec)
    assert mean.dtype == std.dtype == np.float32
    np.testing.assert_allclose(std, np.linspace(1, 2, 263), rtol=1e-6)


def test_a_bvh_input_after_another_kind_still_needs_the_skeleton(tmp_path):
    """The mapping is asked for whichever input is the .bvh one: a joints file first does not hide it."""

    files = [MotionFile(str(tmp_path / "walk.npy"), "joints", (4, 22, 3)),
             MotionFile(str(tmp_path / "jump.bvh"), "bvh", ())]
    with pytest.raises(ValueError, match=r"jump\.bvh: a BVH file renders through the mapping of its joints onto "
                                         r"SMPL-22; pass --skeleton NAME"):
        bvh_mapping(files, None)


def test_the_records_name_the_command_without_is_continue_and_keep_a_skipped_step_s_time(tmp_path):
    """A training continued with --is_continue is recorded (report and state.json) under the command a user types,
    without it; a step skipped as finished reports the seconds it took when it ran."""

    latest = tmp_path / "latest.tar"
    latest.write_bytes(b"weights")
    data = tmp_path / "Mean.npy"
    data.write_bytes(b"statistics")
    prepare = Step("data", [sys.executable, "-c", "raise SystemExit(9)"], str(data), "-c", always_skip_when_done=True)
    train = Step("train", [sys.executable, "-c", "pass"], str(latest), "-c", training=True)
    state = {"stages": {"data": {"command": command(prepare), "status": "done", "seconds": 2.5, "output": str(data),
                                 "sha256": hashlib.sha256(b"statistics").hexdigest()}}}
    state_path = tmp_path / "state.json"
    records, failure = recipe_runner.run_steps([prepare, train], state, str(state_path), rerun=False)
    assert failure is None
    assert [(r["status"], r["command"]) for r in records] == [("skipped (done)", command(prepare)),
                                                             ("done", command(train))]
    assert records[0]["seconds"] == 2.5 and records[1]["seconds"] >= 0
    written = json.loads(state_path.read_text())["stages"]
    assert written["train"]["command"] == command(train) and written["train"]["status"] == "done"


def test_data_found_in_place_gets_a_finished_record_with_its_sha256(tmp_path):
    """Data made before the first call (no record) is kept and recorded as finished with its file and SHA-256, so
    that a later change to it is noticed."""

    data = tmp_path / "Mean.npy"
    data.write_bytes(b"statistics")
    prepare = Step("data", [sys.executable, "-c", "raise SystemExit(9)"], str(data), "-c", always_skip_when_done=True)
    state_path = tmp_path / "state.json"
    records, failure = recipe_runner.run_steps([prepare], {"stages": {}}, str(state_path), rerun=False)
    assert failure is None and records[0]["status"] == "skipped (done)" and records[0]["seconds"] is None
    assert json.loads(state_path.read_text())["stages"] == {"data": {
        "command": command(prepare), "status": "done", "seconds": None, "output": str(data),
        "sha256": hashlib.sha256(b"statistics").hexdigest()}}


def test_the_registered_synthetic_folder_needs_no_data_root_however_it_is_spelled(tmp_path, monkeypatch):
    """The synthetic dataset's own folder, named absolutely or under $FSQ_MARDM_HOME, is found by --dataset_name
    alone; any other folder needs --data_root."""

    monkeypatch.delenv(HOME_ENV, raising=False)
    monkeypatch.chdir(tmp_path)
    assert synthetic_use_line(str(tmp_path / "dataset" / "Synthetic")) == "use it with --dataset_name synthetic"
    monkeypatch.setenv(HOME_ENV, str(tmp_path / "home"))
    home_folder = str(tmp_path / "home" / "dataset" / "Synthetic")
    assert synthetic_use_line(home_folder) == "use it with --dataset_name synthetic"
    assert synthetic_use_line(os.path.join("dataset", "Synthetic")) == (
        "use it with --dataset_name synthetic --data_root dataset/Synthetic")


def test_a_leading_slice_dataset_de_normalises_the_wider_file_s_own_columns(tmp_path):
    """t2m_67 reading a 263-wide HumanML3D file with --denorm: the leading 67 columns are de-normalised with the
    67-wide statistics, giving the joints of the 67-wide file."""
    import numpy as np


    spec = get_dataset_spec("t2m_67", str(tmp_path))
    features = extract_features(random_walk(frames=21)).astype(np.float32)
    mean, std = features.mean(0)[:67], features.std(0)[:67] + 1.0
    np.save(tmp_path / "wide.npy", (features - features.mean(0)) / (features.std(0) + 1.0))
    np.save(tmp_path / "narrow.npy", np.load(tmp_path / "wide.npy")[:, :67])
    wide = load_motions(MotionFile(str(tmp_path / "wide.npy"), "features", (20, 263)), spec, mean, std)
    narrow = load_motions(MotionFile(str(tmp_path / "narrow.npy"), "features", (20, 67)), spec, mean, std)
    assert wide.shape == (1, 20, 22, 3)
    np.testing.assert_array_equal(wide, narrow)


def test_stats_of_a_split_whose_clips_have_no_motion_file_names_the_folder(tmp_path, caplog):
    """stats --split val where no id of val.txt has a motion file: the error names new_joint_vecs/ and the ids
    left out (it said only 'cannot compute dataset statistics from 0 frames', and the warning naming the missing
    files was never logged, since it comes after the sums)."""
    root = tmp_path / "Synthetic"
    generate_synthetic_dataset(str(root), 3, seed=0)
    (root / "val.txt").write_text("999998\n999999\n")
    with caplog.at_level(logging.WARNING), pytest.raises(ValueError) as refused:
        write_dataset_stats(get_dataset_spec("synthetic", str(root)), str(root), "val", overwrite=True)
    said = str(refused.value) + "\n" + "\n".join(r.getMessage() for r in caplog.records)
    assert str(root / "new_joint_vecs") in said and "999998" in said
