"""`gato-audit`: the per-task table of a finished output, and comparing two outputs."""

from __future__ import annotations

import hashlib
import io
import json
import os
import pathlib
import re
import shutil
import subprocess
import sys

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from audit.cli import COMPARED_FIELDS, compare_records, format_table, main
from transforms.expert_filter import expert_return
from audit.report import TABLE_HEADERS
from formats.stats_files import read_stats_records
from transforms.books import SequenceCounts
from formats.stats_files import write_statistics
from formats.stats_files import task_statistics
from schemas import output as out
from schemas.vocab import GATO

GOLDEN = pathlib.Path(__file__).resolve().parent / "golden" / "audit_table.txt"
REPO = pathlib.Path(__file__).resolve().parents[2]


def _sequence_counts(kept: int) -> SequenceCounts:
    """Stand-in sequencing of `kept` episodes of 40 tokens: 3 rows each, one prompted (6
    prompt tokens); a lone episode has no other episode to prompt from, so its draws
    (2 of 3 rows) find none."""
    if kept == 1:
        return SequenceCounts(episodes=1, sequences=3, prompted=0, unprompted=3, prompts_unavailable=2, tokens=40)
    return SequenceCounts(episodes=kept, sequences=3 * kept, prompted=kept, unprompted=2 * kept, tokens=46 * kept)


def _write_output(root: pathlib.Path, *, fraction: float = 0.8, finished: bool = True, extra_task: bool = False) -> str:
    pong = [-21.0, -20.0, -19.0, -15.0, -18.0, -10.0, -9.0, -12.0, -8.0, -11.0, -20.0, -9.0]
    tasks = [
        (("atari", "rlu_atari/Pong_run_1"), pong),
        (("dmc", "finger_spin"), [7.0]),  # a single episode: no prompts possible
        (("dmc", "walker_walk"), [0.5 * i for i in range(25)]),
    ]
    if extra_task:
        tasks.append((("dmc", "cheetah_run"), [1.0, 2.0]))
    results = []
    kept_by_task: dict[tuple[str, str], list[bool]] = {}
    for task, values in tasks:
        threshold = expert_return(values, fraction=fraction)
        returns = [(((i,), "s", i), f"e{i}", v, "s") for i, v in enumerate(values)]
        decisions = [(f"e{i}", threshold.keeps(v), "r") for i, v in enumerate(values)]
        kept = [(f"e{i}", v, 4, 40) for i, v in enumerate(values) if threshold.keeps(v)]
        kept_by_task[task] = [True] * len(kept)
        rejects = [(None, "s9", "corrupt_record", None, "CRC")] if task[0] == "atari" else []
        results.append(task_statistics(task, threshold=threshold, returns=returns, decisions=decisions,
                                       kept=kept, rejects=rejects, sequences=_sequence_counts(len(kept))))
    write_statistics(str(root), results)
    shards = [_write_shard(root, task, _sequence_counts(sum(threshold_kept)).sequences)
              for task, threshold_kept in kept_by_task.items()]
    if finished:
        manifest = {
            out.M_FORMAT_VERSION: out.MANIFEST_FORMAT_VERSION,
            out.M_VOCABULARY: GATO.to_metadata(),
            out.M_SEQUENCE_LENGTH: 1024,
            out.M_SHARDS: shards,
            out.M_REJECTS: [],
            out.M_STATS: {out.M_STATS_JSON: out.STATS_JSON_FILE},
        }
        (root / out.MANIFEST_FILE).write_text(json.dumps(manifest))
    return str(root)


def _write_shard(root: pathlib.Path, task: tuple[str, str], rows: int) -> dict:
    """A stand-in sequences shard of `rows` rows, and its manifest entry."""
    relative = f"{out.SEQUENCES_DIR}/{task[0]}/{task[1].replace('/', '_')}/part-00000-000.parquet"
    path = root.joinpath(*relative.split("/"))
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table({out.SEQUENCE_INDEX: list(range(rows))}), path)
    data = path.read_bytes()
    return {out.S_PATH: relative, out.S_DATASET: task[0], out.S_TASK: task[1], out.S_ROWS: rows,
            out.S_TOKENS: 0, out.S_BYTES: len(data), out.S_SHA256: hashlib.sha256(data).hexdigest()}


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
    assert lines[4].split()[:9] == ["dmc", "walker_walk", "25", "2", "11.75", "9.4", "6", "19", "0"]
    rows = [_columns(printed, line) for line in lines[2:]]
    assert [(r["task"], r["sequences"], r["prompted"], r["notes"]) for r in rows] == [
        ("rlu_atari/Pong_run_1", "9", "0.333", "-"),
        ("finger_spin", "3", "0.000", "no other eligible episode for prompts (2 row(s) that drew a prompt went unprompted)"),
        ("walker_walk", "18", "0.333", "-"),
    ]


def _columns(table: str, line: str) -> dict[str, str]:
    """One printed row cut into cells by the dashes line under the headers."""
    dashes = table.splitlines()[1]
    spans = [(m.start(), m.end()) for m in re.finditer(r"-+", dashes)]
    cells = [line[a:b].strip() for a, b in spans[:-1]] + [line[spans[-1][0]:].strip()]
    return dict(zip(TABLE_HEADERS, cells))


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
    assert status == 0 and "agree on all 3 task(s)" in printed


def test_compare_reports_differences_task_by_task(tmp_path: pathlib.Path) -> None:
    first = _write_output(tmp_path / "a")
    second = _write_output(tmp_path / "b", fraction=0.5, extra_task=True)
    status, printed, _ = _run([first, "--compare", second])
    assert status == 1
    lines = printed.splitlines()
    assert lines[0].startswith("27 difference(s) between")
    assert "dmc / cheetah_run: only in the second output" in lines
    # Pong: E = -8 both times; threshold -9.6 -> -12 lets -10, -11, -12 in too.
    assert "atari / rlu_atari/Pong_run_1: threshold -9.6 -> -12 (change -2.4)" in lines
    assert "atari / rlu_atari/Pong_run_1: kept 3 -> 6 (change 3)" in lines
    # Twice the kept episodes, twice the rows (stand-in sequencing): the audit shows it.
    assert "atari / rlu_atari/Pong_run_1: sequences 9 -> 18 (change 9)" in lines
    assert "atari / rlu_atari/Pong_run_1: sequence_tokens 138 -> 276 (change 138)" in lines
    assert "atari / rlu_atari/Pong_run_1: expert_return" not in printed
    # Per task: threshold, fraction, kept, dropped, kept min and median, timesteps, tokens,
    # then sequences, prompted, unprompted and sequence tokens.
    assert sum(line.startswith("dmc / walker_walk: ") for line in lines) == 12
    # The lone episode stays kept: only its threshold and fraction move.
    assert sum(line.startswith("dmc / finger_spin: ") for line in lines) == 2


def test_compare_covers_every_sequencing_figure(tmp_path: pathlib.Path) -> None:
    first = read_stats_records(_write_output(tmp_path))
    second = [dict(record) for record in first]
    solo = next(r for r in second if r[out.TASK] == "finger_spin")
    solo.update({out.ST_SEQUENCES: 4, out.ST_PROMPTED_SEQUENCES: 1, out.ST_UNPROMPTED_SEQUENCES: 3,
                 out.ST_PROMPTS_UNAVAILABLE: 0, out.ST_SEQUENCE_TOKENS: 50})
    assert compare_records(first, second) == [
        "dmc / finger_spin: sequences 3 -> 4 (change 1)",
        "dmc / finger_spin: prompted_sequences 0 -> 1 (change 1)",
        "dmc / finger_spin: prompts_unavailable 2 -> 0 (change -2)",
        "dmc / finger_spin: sequence_tokens 40 -> 50 (change 10)",
    ]
    assert set(COMPARED_FIELDS) >= {out.ST_SEQUENCES, out.ST_PROMPTED_SEQUENCES, out.ST_UNPROMPTED_SEQUENCES,
                                    out.ST_PROMPTS_UNAVAILABLE, out.ST_SEQUENCE_TOKENS}


def test_compare_records_is_symmetric_in_what_it_finds(tmp_path: pathlib.Path) -> None:
    a = read_stats_records(_write_output(tmp_path / "a"))
    b = read_stats_records(_write_output(tmp_path / "b", fraction=0.9))
    assert len(compare_records(a, b)) == len(compare_records(b, a)) > 0
    assert compare_records(a, a) == []


def test_empty_table() -> None:
    assert format_table([]).splitlines()[-1] == "(no tasks)"


def test_runs_as_a_module(tmp_path: pathlib.Path) -> None:
    output = _write_output(tmp_path)
    done = subprocess.run([sys.executable, "-m", "audit.cli", output], cwd=REPO,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout == GOLDEN.read_text()


def test_bad_arguments_exit_with_usage() -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--nonsense"])
    assert exit_info.value.code == 2


def test_the_command_does_not_import_beam_or_tensorflow() -> None:
    # Auditors run it on laptops: it must start fast and need neither.
    code = "import sys, audit.cli; print(sorted(m for m in ('apache_beam', 'tensorflow') if m in sys.modules))"
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "[]"


PONG_SHARD = "sequences/atari/rlu_atari_Pong_run_1/part-00000-000.parquet"


def _edit_manifest(output: str, edit) -> None:  # noqa: ANN001
    path = pathlib.Path(output, out.MANIFEST_FILE)
    manifest = json.loads(path.read_text())
    edit(manifest)
    path.write_text(json.dumps(manifest))


def test_a_broken_shard_fails_the_audit_and_is_named(tmp_path: pathlib.Path) -> None:
    output = _write_output(tmp_path)
    shard = tmp_path.joinpath(*PONG_SHARD.split("/"))
    listed = hashlib.sha256(shard.read_bytes()).hexdigest()
    data = bytearray(shard.read_bytes())
    data[len(data) // 2] ^= 0xFF
    shard.write_bytes(bytes(data))
    found = hashlib.sha256(bytes(data)).hexdigest()
    status, printed, errors = _run([output])
    assert status == 3
    assert printed == GOLDEN.read_text()  # the table is still printed, on stdout
    assert errors.splitlines()[0] == f"gato-audit: {output} failed verification ({len(errors.splitlines()) - 1} problem(s)):"
    assert f"  shards shard {PONG_SHARD}: sha256 {found}, the manifest lists {listed}" in errors.splitlines()
    status, printed, errors = _run([output, "--no-verify"])
    assert (status, printed, errors) == (0, GOLDEN.read_text(), "")


def test_rows_bytes_missing_and_unlisted_shards_are_reported(tmp_path: pathlib.Path) -> None:
    output = _write_output(tmp_path)
    _edit_manifest(output, lambda m: m[out.M_SHARDS][0].update({out.S_ROWS: 10, out.S_BYTES: 1}))
    stray = tmp_path / "sequences" / "atari" / "rlu_atari_Pong_run_1" / "part-00007-000.parquet"
    stray.write_bytes(tmp_path.joinpath(*PONG_SHARD.split("/")).read_bytes())
    tmp_path.joinpath("sequences", "dmc", "walker_walk", "part-00000-000.parquet").unlink()
    status, _, errors = _run([output])
    size = tmp_path.joinpath(*PONG_SHARD.split("/")).stat().st_size
    assert status == 3
    assert errors.splitlines()[1:] == [
        f"  shards shard {PONG_SHARD}: {size} bytes, the manifest lists 1",
        f"  shards shard {PONG_SHARD}: 9 rows, the manifest lists 10",
        "  shards shard sequences/dmc/walker_walk/part-00000-000.parquet: listed in the manifest but missing",
        "  sequences/atari/rlu_atari_Pong_run_1/part-00007-000.parquet: on disk but not listed in the manifest "
        "(another run's shard?)",
        "  atari / rlu_atari/Pong_run_1: the stats count 9 sequences, the manifest lists 10 rows",
    ]


def test_unbalanced_books_and_a_corrupt_manifest_fail_the_audit(tmp_path: pathlib.Path) -> None:
    output = _write_output(tmp_path)
    stats = tmp_path.joinpath(*out.STATS_JSON_FILE.split("/"))
    document = json.loads(stats.read_text())
    document[out.SJ_TASKS][0][out.ST_EPISODES_READ] = 14
    stats.write_text(json.dumps(document))
    status, _, errors = _run([output])
    assert status == 3
    assert errors.splitlines()[1:] == [
        "  atari / rlu_atari/Pong_run_1: 14 episodes read but kept 3 + dropped 9 + rejected 1 = 13: "
        "episodes lost or counted twice"
    ]
    (tmp_path / out.MANIFEST_FILE).write_text("{}")
    status, _, errors = _run([output, "--no-verify"])
    assert status == 0
    status, _, errors = _run([output])
    assert status == 3 and "  manifest: " in errors and "lacks the keys" in errors


def test_compare_verifies_both_outputs(tmp_path: pathlib.Path) -> None:
    first = _write_output(tmp_path / "a")
    second = _write_output(tmp_path / "b")
    (tmp_path / "b").joinpath(*PONG_SHARD.split("/")).unlink()
    status, printed, errors = _run([first, "--compare", second])
    assert status == 3 and "agree on all 3 task(s)" in printed
    assert f"gato-audit: {second} failed verification" in errors and str(first) + " failed" not in errors


def test_help_documents_no_verify(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "--no-verify skip verification: by default every shard's sha256, bytes and row count" in text
    assert "any problem exits with status 3" in text


@pytest.fixture(scope="module")
def vl_output(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    """A real vision-language output (vqav2: 12 records kept, 3 rows, no rejects), made once."""
    import beam_runner  # Beam only here: the command itself never imports it

    output = tmp_path_factory.mktemp("vl") / "out"
    assert beam_runner.main(["--dataset=vqav2", f"--output_dir={output}", "--log_level=WARNING"]) == 0
    return output


VL_TABLE = (
    "dataset  task   records read  kept  rejected  units  rows  tokens  rejected by reason\n"
    "-------  -----  ------------  ----  --------  -----  ----  ------  ------------------\n"
    "vqav2    vqav2            12    12         0     12     3    2112  -\n"
)


def test_a_vision_language_output_verifies_and_prints_its_own_table(vl_output: pathlib.Path) -> None:
    assert _run([str(vl_output)]) == (0, VL_TABLE, "")
    status, printed, _ = _run([str(vl_output), "--compare", str(vl_output)])
    assert (status, printed) == (0, f"{vl_output} and {vl_output} agree on all 1 task(s)\n")


def test_a_mixed_record_list_prints_both_tables() -> None:
    agent = {out.DATASET: "atari", out.TASK: "pong", out.ST_REJECTED_BY_REASON: {}}
    vl = {out.DATASET: "vqav2", out.TASK: "vqav2", out.VST_RECORDS_READ: 1, out.VST_REJECTED_BY_REASON: {"x": 1}}
    agent_table, vl_table = format_table([agent, vl]).split("\n\n")
    assert agent_table.splitlines()[0].split()[:3] == ["dataset", "task", "N"]
    assert vl_table.splitlines()[2] == "vqav2    vqav2             1     -         -      -     -       -  x: 1"


def test_a_tampered_vision_language_stats_count_fails_the_audit(
    vl_output: pathlib.Path, tmp_path: pathlib.Path
) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(vl_output, copy)
    stats = copy.joinpath(*out.STATS_JSON_FILE.split("/"))
    document = json.loads(stats.read_text())
    document[out.SJ_TASKS][0][out.VST_RECORDS_READ] = 13
    stats.write_text(json.dumps(document))
    status, printed, errors = _run([str(copy)])
    assert status == 3
    assert printed == VL_TABLE.replace("           12    12", "           13    12")
    assert errors.splitlines() == [
        f"gato-audit: {copy} failed verification (1 problem(s)):",
        "  vqav2 / vqav2: 13 records read but kept 12 + rejected 0 = 12: records lost or counted twice",
    ]
    status, printed, _ = _run([str(vl_output), "--compare", str(copy)])
    assert status == 3 and printed.splitlines()[1] == "vqav2 / vqav2: records_read 12 -> 13 (change 1)"
