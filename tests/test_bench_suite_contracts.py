"""What the benchmark suite reports: ``bench/run_all.py`` runs the chosen benchmarks with the suite's flags, combines
their rows, names the ones that failed and writes the combined JSON and Markdown; ``benchlib`` judges targets only
where they apply and describes the machine it ran on. Benchmarks are replaced by fakes that write fixed rows, and
time by a fake clock: nothing here is timed. Reports are never lost or half-written: the combined JSON and Markdown go
into folders that do not exist yet (after minutes of benchmarks, a missing folder must not cost the results), and a
results file is replaced only by a complete one."""

from __future__ import annotations

import argparse
import json
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch

import utils

# The benchmarks import each other as top-level modules (``python bench/<name>.py``).
sys.path.insert(0, str(Path(utils.__file__).resolve().parents[1] / "bench"))

import benchlib  # noqa: E402
import run_all  # noqa: E402
import tokenizer_steps  # noqa: E402
from benchlib import Result  # noqa: E402
from sequence_seams import seam_stats  # noqa: E402

# ---------------------------------------------------------------------------------------------------------------------
# run_all: which benchmarks run, with which flags, and what the combined report holds
# ---------------------------------------------------------------------------------------------------------------------


def _row(bench: str, variant: str, value: float, **kwargs) -> dict:
    return vars(Result(bench, "case", variant, value, "s", **kwargs))


class _Suite:
    """Fake benchmark processes: each writes the rows given for it to its ``--json`` file (or nothing, for a name in
    ``no_json``) and exits with its code; every benchmark takes 90 s of a fake clock."""

    def __init__(self, monkeypatch, codes: dict[str, int] | None = None, no_json: tuple[str, ...] = ()) -> None:
        self.commands: list[list[str]] = []
        self.codes, self.no_json = codes or {}, no_json
        scripts = {script: name for name, script in run_all.BENCHMARKS.items()}
        self.clock = 0.0

        def run(cmd, **kwargs):
            self.commands.append(cmd)
            name = scripts[Path(cmd[1]).name]
            if name not in self.no_json:
                rows = [_row(name, "baseline", 2.0), _row(name, "ours", 1.0, ratio=2.0, target=">= 1.25x", met=True)]
                Path(cmd[cmd.index("--json") + 1]).write_text(json.dumps({"rows": rows}))
            self.clock += 90.0
            return types.SimpleNamespace(returncode=self.codes.get(name, 0))

        monkeypatch.setattr(run_all, "subprocess", types.SimpleNamespace(run=run))
        monkeypatch.setattr(run_all, "time", types.SimpleNamespace(perf_counter=lambda: self.clock))
        monkeypatch.setattr(benchlib, "_run", lambda cmd: "")  # no lscpu / free

    def main(self, monkeypatch, argv: list[str]) -> int:
        monkeypatch.setattr(sys, "argv", ["run_all.py", *argv])
        with pytest.raises(SystemExit) as exit_info:
            run_all.main()
        return exit_info.value.code


def test_run_all_runs_the_chosen_benchmarks_in_order_with_the_suite_s_device_and_quick(monkeypatch):
    suite = _Suite(monkeypatch)
    assert suite.main(monkeypatch, ["--quick", "--only", "rvq,fsq", "--device", "cpu"]) == 0
    scripts = [Path(cmd[1]).name for cmd in suite.commands]
    assert scripts == ["bench_rvq.py", "bench_fsq.py"]
    for cmd in suite.commands:
        assert cmd[0] == sys.executable and cmd[2:4] == ["--device", "cpu"] and cmd[-1] == "--quick"
    suite = _Suite(monkeypatch)
    assert suite.main(monkeypatch, ["--only", "index"]) == 0
    assert suite.commands[0][2:4] == ["--device", "auto"] and "--quick" not in suite.commands[0]


def test_run_all_without_only_runs_every_benchmark(monkeypatch):
    suite = _Suite(monkeypatch)
    assert suite.main(monkeypatch, []) == 0
    assert [Path(cmd[1]).name for cmd in suite.commands] == list(run_all.BENCHMARKS.values())


def test_run_all_writes_every_row_the_minutes_and_the_markdown_table(monkeypatch, tmp_path, capsys):
    suite = _Suite(monkeypatch)
    out, md = tmp_path / "all.json", tmp_path / "all.md"
    assert suite.main(monkeypatch, ["--only", "fsq,rvq", "--device", "cpu", "--json", str(out), "--markdown",
                                    str(md)]) == 0
    saved = json.loads(out.read_text())
    rows = [Result(**r) for r in saved["rows"]]
    assert [(r.bench, r.variant) for r in rows] == [("fsq", "baseline"), ("fsq", "ours"), ("rvq", "baseline"),
                                                    ("rvq", "ours")]
    assert saved["minutes"] == {"fsq": 1.5, "rvq": 1.5} and saved["failed"] == []
    assert saved["machine"]["device"] == "cpu"
    assert md.read_text() == run_all.markdown_table(rows) + "\n"
    printed = capsys.readouterr().out
    assert "== All benchmarks: 3.0 min ==" in printed and "minutes per benchmark: fsq 1.5, rvq 1.5" in printed
    assert benchlib.format_table(rows) in printed and "FAILED" not in printed


def test_run_all_reports_a_crashed_benchmark_and_one_without_rows_runs_the_rest_and_exits_1(monkeypatch, tmp_path,
                                                                                           capsys):
    suite = _Suite(monkeypatch, codes={"fsq": 1}, no_json=("rvq",))
    out = tmp_path / "all.json"
    assert suite.main(monkeypatch, ["--only", "fsq,rvq,tokenizer", "--json", str(out)]) == 1
    assert len(suite.commands) == 3
    saved = json.loads(out.read_text())
    assert saved["failed"] == ["fsq", "rvq"]
    assert {r["bench"] for r in saved["rows"]} == {"tokenizer"}
    assert "FAILED (see their output above): fsq, rvq" in capsys.readouterr().out


def test_run_all_refuses_an_unknown_benchmark_by_name_before_running_any(monkeypatch, capsys):
    suite = _Suite(monkeypatch)
    assert suite.main(monkeypatch, ["--only", "fsq,speed"]) == 2
    assert suite.commands == []
    assert "--only: unknown speed; choose from fsq, rvq" in capsys.readouterr().err


def test_run_all_cleanup_removes_the_scratch_folder_only_when_asked(monkeypatch, tmp_path):
    scratch = tmp_path / "bench_tmp"
    (scratch / "eval").mkdir(parents=True)
    monkeypatch.setattr(benchlib, "BENCH_TMP", str(scratch))
    assert _Suite(monkeypatch).main(monkeypatch, ["--only", "fsq"]) == 0
    assert scratch.is_dir()
    assert _Suite(monkeypatch).main(monkeypatch, ["--only", "fsq", "--cleanup"]) == 0
    assert not scratch.exists()


def test_markdown_table_has_a_column_per_header_and_bold_missed_targets():
    base = Result("b", "a|b case", "baseline", 2.0, "s", peak_mb=10.0)
    ours = benchlib.speedup_row("b", "a|b case", base, Result("b", "a|b case", "ours", 4.0, "s"), 1.25)
    header, separator, *lines = run_all.markdown_table([base, ours]).splitlines()
    assert separator == "|" + "---|" * 9 and header.count("|") == 10
    assert all(line.count("|") == 10 for line in lines)  # a "|" inside a cell does not open a column
    assert lines[0] == "| b | a/b case | baseline | 2.000 s | 10.0 | - | - | - |  |"
    assert lines[1] == "| b | a/b case | ours | 4.000 s | - | 0.50x | >= 1.25x | **no** |  |"


# ---------------------------------------------------------------------------------------------------------------------
# benchlib: targets, memory, machine line
# ---------------------------------------------------------------------------------------------------------------------


def test_a_memory_target_without_a_baseline_peak_is_judged_on_the_ratio_alone():
    base = Result("b", "c", "baseline", 2.0, "s")
    ours = benchlib.speedup_row("b", "c", base, Result("b", "c", "ours", 1.0, "s", peak_mb=500.0), 1.25,
                                memory_must_not_grow=True)
    assert ours.met is True and ours.target == ">= 1.25x"


def test_a_target_of_zero_is_still_a_target():
    base = Result("b", "c", "baseline", 2.0, "s")
    ours = benchlib.speedup_row("b", "c", base, Result("b", "c", "ours", 4.0, "s"), 0.0)
    assert ours.target == ">= 0x" and ours.met is True


def test_peak_memory_measures_at_a_256_kib_mmap_threshold(monkeypatch):
    thresholds = []
    monkeypatch.setattr(benchlib, "reset_high_water_mark", lambda: True)
    monkeypatch.setattr(benchlib, "proc_status_kb", {"VmRSS": 1024, "VmHWM": 2048}.get)
    monkeypatch.setattr(benchlib, "set_mmap_threshold", thresholds.append)
    assert benchlib.peak_memory(lambda: None, calls=1) == 1.0
    assert thresholds == [256 * 1024, 32 * 2 ** 20]


def test_peak_memory_still_runs_the_call_where_it_cannot_measure_it(monkeypatch):
    calls = []
    monkeypatch.setattr(benchlib, "reset_high_water_mark", lambda: False)
    assert benchlib.peak_memory(lambda: calls.append(1), calls=2) is None
    assert calls == [1, 1]


def test_machine_info_keeps_a_cpu_model_with_a_colon_whole_and_names_the_device(monkeypatch):
    outputs = {"lscpu": "Model name:    Vendor CPU: 8-Core @ 3.0GHz\n", "free": ""}
    monkeypatch.setattr(benchlib, "_run", lambda cmd: outputs[cmd[0]])
    info = benchlib.machine_info(torch.device("meta"))
    assert info["cpu"] == "Vendor CPU: 8-Core @ 3.0GHz" and info["device"] == "meta" and info["mem_total"] == ""


def test_report_without_json_writes_nothing_and_prints_the_settings(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    benchlib.report([], argparse.Namespace(json=None), torch.device("cpu"), "empty", {"batch": 8, "dim": 4})
    assert "settings: batch=8, dim=4" in capsys.readouterr().out and list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------------------------------------------------------------
# tokenizer_steps: our side autocasts when asked
# ---------------------------------------------------------------------------------------------------------------------


class _Linear(torch.nn.Module):
    """A tokenizer of one linear layer that records the dtype its forward computes in."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.linear = torch.nn.Linear(width, width)
        self.dtypes: list[torch.dtype] = []

    def forward(self, motion: torch.Tensor):
        recon = self.linear(motion)
        self.dtypes.append(recon.dtype)
        return types.SimpleNamespace(recon=recon)


@pytest.mark.parametrize("bf16, dtype", [(None, torch.float32), (True, torch.bfloat16), (False, torch.float32)])
def test_our_tokenizer_step_on_cpu_autocasts_to_bf16_only_when_asked(bf16, dtype, monkeypatch):
    monkeypatch.setattr(tokenizer_steps, "build_tokenizer", lambda name, input_width: _Linear(input_width))
    monkeypatch.setattr(tokenizer_steps, "tokenizer_loss",
                        lambda recon, motion, out, spec: ((recon - motion).pow(2).mean(), {}))
    step, model = tokenizer_steps.ours_step("AE_Model", torch.zeros(1, 4, 67), torch.device("cpu"), bf16=bf16)
    step()
    assert model.dtypes == [dtype]


# ---------------------------------------------------------------------------------------------------------------------
# sequence_seams: the pose change of a frame
# ---------------------------------------------------------------------------------------------------------------------


def test_pose_change_is_the_mean_over_joints_of_each_joint_s_euclidean_step():
    joints = np.zeros((4, 4, 3))  # 4 joints; joint 1 steps by (3, 4, 0) into frame 2, a distance of 5
    joints[2:, 1] = [3.0, 4.0, 0.0]
    at, rest, near = seam_stats(joints, [2], near=1)
    assert at == pytest.approx([5.0 / 4]) and rest == pytest.approx([0.0, 0.0]) and near == pytest.approx([5.0 / 4])


# ---------------------------------------------------------------------------------------------------------------------
# Reports written whole, and --only read as given
# ---------------------------------------------------------------------------------------------------------------------


def test_run_all_writes_its_json_and_markdown_into_new_folders(monkeypatch, tmp_path):
    out, md = tmp_path / "results" / "today" / "all.json", tmp_path / "docs" / "all.md"
    suite = _Suite(monkeypatch)
    assert suite.main(monkeypatch, ["--only", "fsq", "--json", str(out), "--markdown", str(md)]) == 0
    assert [r["bench"] for r in json.loads(out.read_text())["rows"]] == ["fsq", "fsq"]
    assert "| fsq | case | ours |" in md.read_text()


def test_run_all_refuses_an_empty_only_instead_of_running_everything(monkeypatch, capsys):
    suite = _Suite(monkeypatch)
    assert suite.main(monkeypatch, ["--only", ""]) == 2 and suite.commands == []
    assert "--only: unknown empty list" in capsys.readouterr().err


def test_run_all_runs_a_benchmark_named_twice_once(monkeypatch):
    suite = _Suite(monkeypatch)
    assert suite.main(monkeypatch, ["--only", "fsq,rvq,fsq"]) == 0
    assert [Path(cmd[1]).name for cmd in suite.commands] == [run_all.BENCHMARKS["fsq"], run_all.BENCHMARKS["rvq"]]


def test_report_that_fails_while_writing_leaves_the_previous_results_file_whole(tmp_path, capsys):
    out = tmp_path / "rows.json"
    out.write_text('{"title": "yesterday"}')
    rows = [Result("b", "c", "ours", 1.0, "s")]
    with pytest.raises(TypeError, match="not JSON serializable"):
        benchlib.report(rows, argparse.Namespace(json=str(out)), torch.device("cpu"), "today",
                        {"device": torch.device("cpu")})
    assert json.loads(out.read_text()) == {"title": "yesterday"}
    assert [p.name for p in tmp_path.iterdir()] == ["rows.json"]  # no temporary left behind
