"""`gato-audit`: the per-task table of a finished output, and comparing two outputs."""

from __future__ import annotations

import io
import os
import pathlib
import subprocess
import sys

import pytest

from pipeline.audit import compare_records, format_table, main
from pipeline.filter import expert_return
from pipeline.report import read_stats_records
from pipeline.stats import task_statistics, write_statistics
from schemas import output as out

GOLDEN = pathlib.Path(__file__).resolve().parents[1] / "golden" / "stats" / "audit_table.txt"
REPO = pathlib.Path(__file__).resolve().parents[2]


def _write_output(root: pathlib.Path, *, fraction: float = 0.8, finished: bool = True, extra_task: bool = False) -> str:
    pong = [-21.0, -20.0, -19.0, -15.0, -18.0, -10.0, -9.0, -12.0, -8.0, -11.0, -20.0, -9.0]
    tasks = [(("atari", "rlu_atari/Pong_run_1"), pong), (("dmc", "walker_walk"), [0.5 * i for i in range(25)])]
    if extra_task:
        tasks.append((("dmc", "cheetah_run"), [1.0, 2.0]))
    results = []
    for task, values in tasks:
        threshold = expert_return(values, fraction=fraction)
        returns = [(((i,), "s", i), f"e{i}", v, "s") for i, v in enumerate(values)]
        decisions = [(f"e{i}", threshold.keeps(v), "r") for i, v in enumerate(values)]
        kept = [(f"e{i}", v, 4, 40) for i, v in enumerate(values) if threshold.keeps(v)]
        rejects = [(None, "s9", "corrupt_record", None, "CRC")] if task[0] == "atari" else []
        results.append(task_statistics(task, threshold=threshold, returns=returns, decisions=decisions,
                                       kept=kept, rejects=rejects))
    write_statistics(str(root), results, report=False)
    if finished:
        (root / out.MANIFEST_FILE).write_text("{}")
    return str(root)


def _run(argv: list[str]) -> tuple[int, str, str]:
    stdout, stderr = io.StringIO(), io.StringIO()
    status = main(argv, stdout=stdout, stderr=stderr)
    return status, stdout.getvalue(), stderr.getvalue()


def test_prints_the_table_of_a_finished_output(tmp_path: pathlib.Path) -> None:
    output = _write_output(tmp_path)
    status, printed, errors = _run([output])
    assert (status, errors) == (0, "")
    if os.environ.get("UPDATE_GOLDEN"):
        GOLDEN.write_text(printed)
    assert printed == GOLDEN.read_text()
    lines = printed.splitlines()
    assert lines[0].split()[:5] == ["dataset", "task", "N", "read", "W"]
    assert lines[2].split()[:9] == ["atari", "rlu_atari/Pong_run_1", "13", "1", "-8", "-9.6", "3", "9", "1"]
    assert lines[3].split()[:9] == ["dmc", "walker_walk", "25", "2", "11.75", "9.4", "6", "19", "0"]


def test_refuses_an_unfinished_output(tmp_path: pathlib.Path) -> None:
    output = _write_output(tmp_path, finished=False)
    status, printed, errors = _run([output])
    assert status == 2 and printed == ""
    assert f"no {out.MANIFEST_FILE}" in errors and "--allow-unfinished" in errors
    status, printed, _ = _run([output, "--allow-unfinished"])
    assert status == 0 and "walker_walk" in printed


def test_refuses_a_missing_directory(tmp_path: pathlib.Path) -> None:
    status, _, errors = _run([str(tmp_path / "nowhere")])
    assert status == 2 and "no such output directory" in errors


def test_refuses_a_finished_output_without_stats(tmp_path: pathlib.Path) -> None:
    (tmp_path / out.MANIFEST_FILE).write_text("{}")
    status, _, errors = _run([str(tmp_path)])
    assert status == 2 and out.STATS_JSON_FILE in errors


def test_compare_identical_outputs(tmp_path: pathlib.Path) -> None:
    first = _write_output(tmp_path / "a")
    second = _write_output(tmp_path / "b")
    status, printed, _ = _run([first, "--compare", second])
    assert status == 0 and "agree on all 2 task(s)" in printed


def test_compare_reports_differences_task_by_task(tmp_path: pathlib.Path) -> None:
    first = _write_output(tmp_path / "a")
    second = _write_output(tmp_path / "b", fraction=0.5, extra_task=True)
    status, printed, _ = _run([first, "--compare", second])
    assert status == 1
    lines = printed.splitlines()
    assert lines[0].startswith("17 difference(s) between")
    assert "dmc / cheetah_run: only in the second output" in lines
    # Pong: E = -8 both times; threshold -9.6 -> -12 lets -10, -11, -12 in too.
    assert "atari / rlu_atari/Pong_run_1: threshold -9.6 -> -12 (change -2.4)" in lines
    assert "atari / rlu_atari/Pong_run_1: kept 3 -> 6 (change 3)" in lines
    assert "atari / rlu_atari/Pong_run_1: expert_return" not in printed
    # Per task: threshold, fraction, kept, dropped, kept min and median, timesteps, tokens.
    assert sum(line.startswith("dmc / walker_walk: ") for line in lines) == 8


def test_compare_records_is_symmetric_in_what_it_finds(tmp_path: pathlib.Path) -> None:
    a = read_stats_records(_write_output(tmp_path / "a"))
    b = read_stats_records(_write_output(tmp_path / "b", fraction=0.9))
    assert len(compare_records(a, b)) == len(compare_records(b, a)) > 0
    assert compare_records(a, a) == []


def test_empty_table() -> None:
    assert format_table([]).splitlines()[-1] == "(no tasks)"


def test_runs_as_a_module(tmp_path: pathlib.Path) -> None:
    output = _write_output(tmp_path)
    done = subprocess.run([sys.executable, "-m", "pipeline.audit", output], cwd=REPO,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout == GOLDEN.read_text()


def test_bad_arguments_exit_with_usage() -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--nonsense"])
    assert exit_info.value.code == 2


def test_the_command_does_not_import_beam_or_tensorflow() -> None:
    # Auditors run it on laptops: it must start fast and need neither.
    code = "import sys, pipeline.audit; print(sorted(m for m in ('apache_beam', 'tensorflow') if m in sys.modules))"
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "[]"
