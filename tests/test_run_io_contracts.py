"""Run locks, staging folders, the training log and window, event-file checks, logging set-up, asset checks and the
gloo collectives (utils/file_lock.py, staging.py, collectives.py, train_log.py, event_files.py, logging_utils.py,
assets.py): descriptors closed on refusal, staging names and their clean-up, a resumed or damaged log (bytes that are
not UTF-8 named with their line, or dropped as a cut-off last line), rank-tagged warnings, statistics that are a .npz
archive, GloVe folders of the wrong width."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import types

import numpy as np
import pytest
import torch
import torch.distributed as dist

from utils import assets, collectives, staging
from utils.assets import (
    BAD,
    MISSING,
    OK,
    AssetCheck,
    Published,
    _check_statistics,
    check_glove,
    check_published,
    format_checks,
)
from utils.collectives import all_gather_objects, all_reduce_mean, broadcast_object
from utils.event_files import check_event_file
from utils.file_lock import FileLockedError, acquire_lock
from utils.logging_utils import TensorBoard, setup_logging
from utils.staging import remove_abandoned_staging, staging_folder
from utils.train_log import LossWindow, TrainLog
from utils.word_vectorizer import write_glove_folder

# ---------------------------------------------------------------------------------------------------------- run lock


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="counts descriptors through /proc")
def test_a_refused_lock_leaves_no_descriptor_open(tmp_path):
    """Each refusal closes the lock file it opened: a process that retries (an evaluation waiting for a run) must
    not run out of descriptors, nor keep a reference that outlives the holder."""
    path = str(tmp_path / ".lock")
    lock = acquire_lock(path, "the run folder x", "")
    try:
        before = _open_fds()
        for _ in range(3):
            with pytest.raises(FileLockedError):
                acquire_lock(path, "the run folder x", "")
        assert _open_fds() == before
    finally:
        lock.release()


# --------------------------------------------------------------------------------------------------- staging folders


def test_a_staging_folder_keeps_the_host_name_s_dashes_and_dots(tmp_path, monkeypatch):
    monkeypatch.setattr(staging.socket, "gethostname", lambda: "gpu-node-07.cluster local")
    folder = staging_folder(str(tmp_path / "Mocap"), "importing")
    assert folder == f"{tmp_path / 'Mocap'}.importing-gpu-node-07.cluster_local-{os.getpid()}"


def test_a_staging_folder_of_an_out_given_with_a_trailing_slash_is_its_sibling(tmp_path):
    """The final ``os.replace`` needs the staging folder beside ``--out``, not inside it."""
    folder = staging_folder(str(tmp_path / "Mocap") + os.sep, "importing")
    assert os.path.dirname(folder) == str(tmp_path)
    assert os.path.basename(folder).startswith("Mocap.importing-")


def _dead_staging(out: str, pid: int = 4_000_000) -> str:
    """The staging folder of ``out`` on this host named with ``pid`` (above any pid_max, so never running)."""
    folder = staging_folder(out, "importing").rsplit("-", 1)[0] + f"-{pid}"
    os.makedirs(folder)
    return folder


def test_abandoned_staging_of_an_out_given_with_a_trailing_slash_is_removed_and_returned(tmp_path):
    out = str(tmp_path / "Mocap")
    dead = _dead_staging(out)
    assert remove_abandoned_staging(out + os.sep, "importing", "an import") == [dead]
    assert not os.path.exists(dead)


def test_a_file_named_like_a_staging_folder_is_left_alone_and_unreported(tmp_path, caplog):
    out = str(tmp_path / "Mocap")
    name = staging_folder(out, "importing").rsplit("-", 1)[0] + "-4000000"
    with open(name, "w") as f:
        f.write("notes")
    with caplog.at_level(logging.WARNING, logger="utils.staging"):
        assert remove_abandoned_staging(out, "importing", "an import") == []
    assert os.path.isfile(name)
    assert [r for r in caplog.records if r.name == "utils.staging"] == []


def test_every_removed_staging_folder_is_returned(tmp_path):
    out = str(tmp_path / "Mocap")
    dead = sorted([_dead_staging(out, 4_000_001), _dead_staging(out, 4_000_002)])
    assert remove_abandoned_staging(out, "importing", "an import") == dead
    assert sorted(os.listdir(tmp_path)) == []


def test_a_staging_folder_of_another_host_keeps_its_host_in_the_report(tmp_path, caplog):
    folder = tmp_path / "Mocap.importing-node-a-b-123"
    folder.mkdir()
    with caplog.at_level(logging.WARNING, logger="utils.staging"):
        assert remove_abandoned_staging(str(tmp_path / "Mocap"), "importing", "an import") == []
    assert folder.is_dir()
    assert [r.getMessage() for r in caplog.records] == [
        f"{folder}: the staging folder of an import into {tmp_path / 'Mocap'} on host node-a-b (pid 123); remove it if "
        f"that job no longer runs"]


# ------------------------------------------------------------------------------------------ training log and window


def _rows(*steps: int) -> str:
    return "".join(json.dumps({"step": k, "loss": 1.0 / k, "lr": 1e-4}) + "\n" for k in steps)


@pytest.mark.parametrize("earlier, resume_step, enabled, expected", [
    (None, 40, True, [{"step": 41, "loss": 0.5, "lr": 1e-4}]),  # a resumed run whose log is gone starts a new one
    ((1, 2, 3), 0, True, [{"step": 41, "loss": 0.5, "lr": 1e-4}]),  # a fresh start replaces an earlier run's log
    ((1, 2, 3), 1, False, None),  # processes other than the main one neither cut nor write the log
])
def test_the_log_file_after_a_start_and_one_row(tmp_path, earlier, resume_step, enabled, expected):
    path = tmp_path / "train_log.jsonl"
    if earlier is not None:
        path.write_text(_rows(*earlier))
    log = TrainLog(str(path), resume_step=resume_step, enabled=enabled)
    log.write([{"step": 41, "loss": 0.5, "lr": 1e-4}])
    log.close()
    if expected is None:
        assert path.read_text() == _rows(*earlier)
    else:
        assert [json.loads(line) for line in path.read_text().splitlines()] == expected


def _window(rank: int = 0, world: int = 1) -> LossWindow:
    return LossWindow(types.SimpleNamespace(process_index=rank, num_processes=world, device=torch.device("cpu")))


def test_restoring_a_window_drops_the_steps_it_held(tmp_path):
    """A restored window continues from the saved sums: steps it held before are not written to the log again."""
    path = tmp_path / "train_log.jsonl"
    log = TrainLog(str(path), resume_step=0, enabled=True)
    window = _window()
    window.add(1, torch.tensor(5.0), {}, 0.1, None)
    window.load_state_dict([{"count": 2, "sums": {"loss": torch.tensor(3.0)}}])
    window.add(3, torch.tensor(1.0), {}, 0.1, None)
    assert window.report(log) == {"loss": pytest.approx(4.0 / 3.0), "lr": 0.1}
    log.close()
    assert [json.loads(line)["step"] for line in path.read_text().splitlines()] == [3]


def test_window_terms_and_grad_norm_are_averaged_over_the_window():
    window = _window()
    window.add(1, torch.tensor(2.0), {"rec": torch.tensor(1.0), "commit": 0.5}, 0.1, torch.tensor(4.0))
    window.add(2, torch.tensor(4.0), {"rec": torch.tensor(3.0), "commit": 1.5}, 0.1, torch.tensor(2.0))
    report = window.report(TrainLog("", 0, enabled=False))
    assert report == {"rec": 2.0, "commit": 1.0, "loss": 3.0, "grad_norm": 3.0, "lr": 0.1}


def test_a_window_saved_and_restored_reports_as_if_never_interrupted():
    window = _window()
    window.add(1, torch.tensor(1.0), {"rec": torch.tensor(0.5)}, 0.1, None)
    window.add(2, torch.tensor(2.0), {"rec": torch.tensor(1.5)}, 0.1, None)
    state = window.state_dict()
    assert state["count"] == 2 and all(v.device.type == "cpu" for v in state["sums"].values())
    resumed = _window()
    resumed.load_state_dict([state])
    for w in (window, resumed):
        w.add(3, torch.tensor(6.0), {"rec": torch.tensor(1.0)}, 0.2, None)
    off = TrainLog("", 0, enabled=False)
    assert resumed.report(off) == window.report(off) == {"rec": 1.0, "loss": 3.0, "lr": 0.2}


# ------------------------------------------------------------------------------------------------------ event files


def _event_file(log_dir, values) -> str:
    from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter(str(log_dir))
    for step, value in enumerate(values, start=1):
        writer.add_scalar("Train/loss", value, step)
    writer.close()
    (event,) = [os.path.join(log_dir, n) for n in os.listdir(log_dir) if n.startswith("events.out.tfevents")]
    return event


def test_a_damaged_record_length_is_reported_as_such(tmp_path):
    event = _event_file(tmp_path / "run", [1.0, 2.0, 3.0])
    data = bytearray(open(event, "rb").read())
    first = 16 + int.from_bytes(data[:8], "little")
    data[first] ^= 0x01  # the second record's length, off by one
    open(event, "wb").write(bytes(data))
    check = check_event_file(event)
    assert (check.records, check.end, check.problem) == (1, first, "a record's length fails its checksum (damaged)")


def test_a_file_damaged_from_its_first_record_says_where_reading_stops(tmp_path):
    event = _event_file(tmp_path / "run", [1.0])
    data = bytearray(open(event, "rb").read())
    data[12] ^= 0xFF  # inside the first record's payload
    open(event, "wb").write(bytes(data))
    check = check_event_file(event)
    assert (check.records, check.end, check.last_step) == (0, 0, None)
    assert check.describe() == (f"reading stops at byte 0 of {len(data)}: a record fails its checksum (damaged); "
                                f"0 good record(s) before it")


def test_a_whole_file_is_described_by_its_size_and_last_step(tmp_path):
    event = _event_file(tmp_path / "run", [1.0, 0.5, 0.25])
    check = check_event_file(event)
    size = os.path.getsize(event)
    assert (check.size, check.end, check.records, check.last_step, check.problem) == (size, size, 4, 3, "")
    assert check.describe() == f"{size} bytes, 4 good record(s), the last at step 3"


# ---------------------------------------------------------------------------------------------- logging set-up


@pytest.fixture
def root_logger():
    """The root logger, with the handlers and level the test found put back afterwards."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield root
    for handler in [h for h in root.handlers if h not in handlers]:
        root.removeHandler(handler)
        handler.close()
    root.setLevel(level)


def test_another_process_prints_only_warnings_tagged_with_its_rank(root_logger, monkeypatch, capsys, tmp_path):
    monkeypatch.setenv("RANK", "3")
    setup_logging(str(tmp_path / "train.log"))
    log = logging.getLogger("test_logging_rank")
    log.info("an info line")
    log.warning("a warning line")
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith("[rank 3] [")
    assert err[0].endswith("WARNING test_logging_rank: a warning line")
    assert not (tmp_path / "train.log").exists()  # only the main process writes the log file


def test_the_log_file_of_a_resumed_run_is_appended_to(root_logger, tmp_path):
    path = tmp_path / "run" / "train.log"
    log = logging.getLogger("test_logging_append")
    setup_logging(str(path), is_main=True)
    log.info("first start")
    setup_logging(str(path), is_main=True)
    log.info("resumed")
    assert [line.split(": ", 1)[1] for line in path.read_text().splitlines()] == ["first start", "resumed"]


def test_a_resumed_tensorboard_hides_the_replayed_steps(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    first = TensorBoard(str(tmp_path))
    for step in range(1, 11):
        first.scalar("Train/loss", float(step), step)
    first.close()
    resumed = TensorBoard(str(tmp_path), purge_step=7)
    for step in range(7, 9):
        resumed.scalar("Train/loss", 100.0 + step, step)
    resumed.close()
    events = EventAccumulator(str(tmp_path), size_guidance={"scalars": 0})
    events.Reload()
    assert [(e.step, e.value) for e in events.Scalars("Train/loss")] == [
        *[(step, float(step)) for step in range(1, 7)], (7, 107.0), (8, 108.0)]


def test_a_disabled_tensorboard_writes_nothing(tmp_path):
    board = TensorBoard(str(tmp_path / "tb"), enabled=False)
    board.scalars("Train", {"loss": 1.0}, 1)
    board.flush()
    board.close()
    assert not (tmp_path / "tb").exists()


# --------------------------------------------------------------------------------------------------------- assets


def test_a_published_file_larger_than_published_is_bad(tmp_path, monkeypatch):
    path = tmp_path / "ViT-B-32.pt"
    path.write_bytes(b"weights and more")
    published = Published(hashlib.sha256(b"weights").hexdigest(), 7, "the weights")
    monkeypatch.setitem(assets.PUBLISHED, "ViT-B-32.pt", published)
    check = check_published("CLIP weights", str(path), "ViT-B-32.pt")
    assert check.state == BAD and check.detail.startswith("has 16 bytes; the weights has 7")


def test_glove_vectors_wider_than_the_evaluator_reads_are_bad(tmp_path):
    write_glove_folder(str(tmp_path), ["sos", "eos", "unk", "walk"], np.ones((4, 12)))
    check = check_glove(str(tmp_path), dim_word=8)
    assert check.state == BAD
    assert check.detail == (f"hold 12-dim vectors ({tmp_path / 'our_vab_data.npy'}) but the evaluator's text encoder "
                            f"reads 8-dim ones")


def test_a_glove_folder_lacking_one_file_names_only_that_one(tmp_path):
    write_glove_folder(str(tmp_path), ["sos", "eos", "unk", "walk"], np.ones((4, 8)))
    (tmp_path / "our_vab_idx.pkl").unlink()
    check = check_glove(str(tmp_path))
    assert check.state == MISSING and check.detail.startswith("lacks our_vab_idx.pkl (")
    assert check.problem.startswith(f"GloVe vectors: {tmp_path} lacks our_vab_idx.pkl")


def test_the_check_table_lines_up_states_assets_and_details():
    checks = [AssetCheck("CLIP weights", "/deps/ViT-B-32.pt", OK, "SHA-256 40d365715913... as published"),
              AssetCheck("GloVe vectors", "/glove", MISSING, ""),
              AssetCheck("evaluator t2m", "/ck/finest.tar", BAD, "does not load: boom")]
    assert format_checks(checks).splitlines() == [
        "OK       CLIP weights   /deps/ViT-B-32.pt: SHA-256 40d365715913... as published",
        "MISSING  GloVe vectors  /glove",
        "BAD      evaluator t2m  /ck/finest.tar: does not load: boom"]
    assert [c.problem for c in checks] == ["", "GloVe vectors: /glove ",
                                           "evaluator t2m: /ck/finest.tar does not load: boom"]


# ---------------------------------------------------------------------------------------------------- collectives


@pytest.fixture
def gloo_group():
    """A one-process gloo group; torch's object collectives are made to fail, since under gloo the engine's
    collectives must run on tensors they own (see utils/collectives.py)."""
    if not dist.is_available() or not dist.is_gloo_available() or dist.is_initialized():
        pytest.skip("needs torch.distributed with gloo and no process group already in this process")
    dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)

    def refused(*args, **kwargs):
        raise AssertionError("torch's object collectives were used under gloo")

    try:
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(collectives.dist, "broadcast_object_list", refused)
            patch.setattr(collectives.dist, "all_gather_object", refused)
            yield
    finally:
        dist.destroy_process_group()


def test_gloo_collectives_return_every_object_through_their_own_tensors(gloo_group):
    big = {"state": np.arange(70_000, dtype=np.int64), "text": "é" * 300}  # sizes past one and two bytes
    (gathered,) = all_gather_objects(big)
    assert np.array_equal(gathered["state"], big["state"]) and gathered["text"] == big["text"]
    assert broadcast_object(big, src=0) is big
    values = torch.tensor([1.0, 3.0])
    assert torch.equal(all_reduce_mean(values), values) and torch.equal(values, torch.tensor([1.0, 3.0]))


# ------------------------------------------------------------------------------------------------- damaged files

ROW = '{"step": %d, "loss": 0.5, "lr": 0.0001}\n'


def test_a_train_log_line_of_bytes_that_are_not_utf8_is_named_with_its_line(tmp_path):
    """A line damaged on disk (bytes that decode to nothing) is refused like any other bad line: the file and the line
    are named, and the file is left as it was."""
    path = tmp_path / "train_log.jsonl"
    content = (ROW % 1).encode() + b'{"step": 2, "lo\xff\xfe": 0.5}\n' + (ROW % 3).encode()
    path.write_bytes(content)
    with pytest.raises(ValueError, match=r"train_log.jsonl: line 2 is not a training log row"):
        TrainLog(str(path), resume_step=3, enabled=True)
    assert path.read_bytes() == content


def test_a_last_train_log_line_of_garbage_bytes_is_dropped_as_cut_off(tmp_path, caplog):
    """A kill or a crash can leave the end of the last line as garbage: it is dropped with a warning, as a last line
    cut off mid-write is, and the rows before it are kept."""
    path = tmp_path / "train_log.jsonl"
    path.write_bytes((ROW % 1 + ROW % 2).encode() + b'{"step": 3, "lo\xff\x00\x9c')
    with caplog.at_level(logging.WARNING, logger="utils.train_log"):
        TrainLog(str(path), resume_step=3, enabled=True).close()
    assert path.read_text() == ROW % 1 + ROW % 2
    assert "train_log.jsonl: line 3 was cut off mid-write" in caplog.text


def test_statistics_saved_as_an_npz_archive_are_named_bad_not_a_crash(tmp_path):
    path = tmp_path / "Mean.npy"
    with open(path, "wb") as f:  # np.savez into an open file keeps the .npy name
        np.savez(f, mean=np.zeros(263, np.float32))
    check = _check_statistics("dataset synthetic Mean.npy", str(path), [263])
    assert check.state == BAD
    assert check.problem.startswith(f"dataset synthetic Mean.npy: {path} ")
    assert ".npz" in check.detail


def test_a_train_log_row_whose_step_is_true_is_refused(tmp_path):
    """JSON ``true`` is a Python bool, itself an int: it read as step 1."""
    path = tmp_path / "train_log.jsonl"
    path.write_text(ROW % 1 + '{"step": true, "loss": 0.5}\n' + ROW % 3)
    with pytest.raises(ValueError, match=r"train_log.jsonl: line 2 is not a training log row \(not an object with an "
                                         r"integer 'step'\)"):
        TrainLog(str(path), resume_step=3, enabled=True)
