"""`gato-audit`: the per-task filter statistics of a finished output, in the terminal.

    gato-audit OUTPUT_DIR                    verify, and print the table of every task
    gato-audit OUTPUT_DIR --compare OTHER    verify both, and compare them task by task
    gato-audit OUTPUT_DIR --no-verify        the table only, without reading the shards

Reads `stats/stats.json` (`formats.stats_files`) and prints the report's table
(`audit/report.py`); no Beam is imported. An output directory without `manifest.json`
(written last) is unfinished and refused unless `--allow-unfinished`. By default every
output is verified first (`audit/verify.py`: every shard's sha256, bytes and rows against
the manifest, no unlisted shard, and per task read = kept + dropped + rejected, or for a
vision-language task read = kept + rejected and its rejects rows against the stats); each
problem is printed on stderr. Vision-language tasks (spec section 8) get a table of their
own (`VL_TABLE_COLUMNS`). Exit status: 0 when done (and, with --compare, when the
outputs agree), 1 when compared outputs differ, 2 on a usage error or an unusable output
directory, 3 when an output failed verification.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping, Sequence
from typing import Any, TextIO

import fsspec

from audit.report import TABLE_HEADERS, TEXT_COLUMNS, format_value, table_cells
from audit.verify import is_vl_record, verify_output
from audit.vl_report import VL_TABLE_COLUMNS as VL_REPORT_COLUMNS
from formats.paths import path_under
from formats.stats_files import read_stats_records
from schemas import output as out

# What --compare reports, in this order: every count and threshold an auditor cares about.
COMPARED_FIELDS: tuple[str, ...] = (
    out.ST_EPISODES_READ,
    out.ST_EPISODES_WITH_RETURN,
    out.ST_WINDOW,
    out.ST_EXPERT_RETURN,
    out.ST_THRESHOLD,
    out.ST_FRACTION,
    out.ST_CAP,
    out.ST_NO_FILTER,
    out.ST_WINDOW_START,
    out.ST_KEPT,
    out.ST_DROPPED,
    out.ST_REJECTED,
    out.ST_REJECTED_BY_REASON,
    out.ST_RETURN_MIN,
    out.ST_RETURN_MEDIAN,
    out.ST_RETURN_MAX,
    out.ST_KEPT_RETURN_MIN,
    out.ST_KEPT_RETURN_MEDIAN,
    out.ST_KEPT_RETURN_MAX,
    out.ST_KEPT_TIMESTEPS,
    out.ST_KEPT_TOKENS,
    out.ST_SEQUENCES,
    out.ST_PROMPTED_SEQUENCES,
    out.ST_UNPROMPTED_SEQUENCES,
    out.ST_PROMPTS_UNAVAILABLE,
    out.ST_SEQUENCE_TOKENS,
)
# The same for a vision-language task: every column of its stats record.
VL_COMPARED_FIELDS: tuple[str, ...] = tuple(n for n in out.VL_STATS_SCHEMA.names if n not in (out.DATASET, out.TASK))

VERIFY_FAILED = 3  # exit status of an output that failed verification


class AuditError(Exception):
    """An output directory that cannot be audited (missing, unfinished, unreadable)."""


def load_records(output_dir: str, *, allow_unfinished: bool = False) -> list[dict[str, Any]]:
    """The stats records of `output_dir`, refusing an unfinished output (no manifest)."""
    fs, root = fsspec.core.url_to_fs(output_dir)
    if not fs.isdir(root):
        raise AuditError(f"{output_dir}: no such output directory")
    if not allow_unfinished and not fs.exists(path_under(root, out.MANIFEST_FILE)):
        raise AuditError(
            f"{output_dir}: no {out.MANIFEST_FILE}, so the job did not finish (the manifest is "
            "written last); pass --allow-unfinished to read its statistics anyway"
        )
    if not fs.exists(path_under(root, *out.STATS_JSON_FILE.split("/"))):
        raise AuditError(f"{output_dir}: no {out.STATS_JSON_FILE}")
    try:
        return read_stats_records(output_dir)
    except (ValueError, KeyError) as error:
        raise AuditError(f"{output_dir}: unreadable {out.STATS_JSON_FILE}: {error}") from error


# The vision-language table (records with `VST_RECORDS_READ`): beam_runner's VL summary
# columns, then the rejected records by reason; headers as in the HTML report's table.
_VL_KEYS = (out.DATASET, out.TASK, out.VST_RECORDS_READ, out.VST_RECORDS_KEPT, out.VST_RECORDS_REJECTED,
            out.VST_UNITS, out.VST_ROWS, out.VST_TOKENS, out.VST_REJECTED_BY_REASON)
VL_TABLE_COLUMNS: tuple[tuple[str, str], ...] = tuple((key, dict(VL_REPORT_COLUMNS)[key]) for key in _VL_KEYS)
_VL_TEXT_COLUMNS = frozenset({0, 1, len(VL_TABLE_COLUMNS) - 1})


def _aligned(headers: Sequence[str], rows: Sequence[Sequence[str]], text_columns: frozenset[int]) -> list[str]:
    widths = [max(len(cell) for cell in column) for column in zip(headers, *rows)]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(
            cell.ljust(width) if i in text_columns else cell.rjust(width)
            for i, (cell, width) in enumerate(zip(cells, widths))
        ).rstrip()

    return [line(headers), line(["-" * width for width in widths]), *(line(row) for row in rows)]


def format_table(records: Sequence[Mapping[str, Any]]) -> str:
    """The per-task tables as aligned text, one line per task: agent tasks in the report's
    columns, vision-language tasks (`VST_RECORDS_READ`) in `VL_TABLE_COLUMNS`; a table for
    each kind present (the agent one, saying "(no tasks)", when there is none)."""
    agent = [r for r in records if not is_vl_record(r)]
    vl = [r for r in records if is_vl_record(r)]
    tables = []
    if agent or not vl:
        lines = _aligned(TABLE_HEADERS, [table_cells(r) for r in agent], TEXT_COLUMNS)
        tables.append(lines + ([] if agent else ["(no tasks)"]))
    if vl:
        rows = [[format_value(r.get(key)) for key, _ in VL_TABLE_COLUMNS] for r in vl]
        tables.append(_aligned([title for _, title in VL_TABLE_COLUMNS], rows, _VL_TEXT_COLUMNS))
    return "\n\n".join("\n".join(lines) for lines in tables) + "\n"


def compare_records(
    left: Sequence[Mapping[str, Any]], right: Sequence[Mapping[str, Any]]
) -> list[str]:
    """Differences task by task, one line each; empty when the outputs agree exactly."""
    by_task_left = {(r[out.DATASET], r[out.TASK]): r for r in left}
    by_task_right = {(r[out.DATASET], r[out.TASK]): r for r in right}
    differences: list[str] = []
    for task in sorted(set(by_task_left) | set(by_task_right)):
        name = f"{task[0]} / {task[1]}"
        if task not in by_task_right:
            differences.append(f"{name}: only in the first output")
            continue
        if task not in by_task_left:
            differences.append(f"{name}: only in the second output")
            continue
        a, b = by_task_left[task], by_task_right[task]
        fields = VL_COMPARED_FIELDS if is_vl_record(a) or is_vl_record(b) else COMPARED_FIELDS
        for key in fields:
            before, after = a.get(key), b.get(key)
            if before == after:
                continue
            change = f"{format_value(before)} -> {format_value(after)}"
            numbers = [v for v in (before, after) if isinstance(v, (int, float)) and not isinstance(v, bool)]
            if len(numbers) == 2:
                change += f" (change {format_value(after - before)})"
            differences.append(f"{name}: {key} {change}")
    return differences


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gato-audit",
        description="Print the per-task episode-filter statistics of a finished gato-data output, "
        "or compare two outputs task by task.",
    )
    parser.add_argument("output_dir", help="an output directory (local path or URL, e.g. gs://...)")
    parser.add_argument("--compare", metavar="OTHER", help="a second output directory to compare with")
    parser.add_argument(
        "--allow-unfinished",
        action="store_true",
        help=f"read outputs without {out.MANIFEST_FILE} (a job that did not finish)",
    )
    parser.add_argument(
        "--no-verify",
        dest="verify",
        action="store_false",
        help="skip verification: by default every shard's sha256, bytes and row count are checked "
        "against the manifest, unlisted shards are reported, and per task read = kept + dropped + "
        f"rejected is checked; any problem exits with status {VERIFY_FAILED}",
    )
    return parser


def _problems(output_dir: str, records: Sequence[Mapping[str, Any]], stderr: TextIO) -> bool:
    """Verify one output, printing its problems on stderr; True if it has any."""
    fs, root = fsspec.core.url_to_fs(output_dir)
    finished = fs.exists(path_under(root, out.MANIFEST_FILE))
    problems = verify_output(output_dir, records, finished=finished)
    if problems:
        print(f"gato-audit: {output_dir} failed verification ({len(problems)} problem(s)):", file=stderr)
        for line in problems:
            print(f"  {line}", file=stderr)
    return bool(problems)


def main(argv: Sequence[str] | None = None, *, stdout: TextIO | None = None, stderr: TextIO | None = None) -> int:
    """Entry point of `gato-audit`; returns the exit status."""
    stdout = stdout or sys.stdout
    stderr = stderr or sys.stderr
    args = _parser().parse_args(argv)
    try:
        records = load_records(args.output_dir, allow_unfinished=args.allow_unfinished)
        other = (
            load_records(args.compare, allow_unfinished=args.allow_unfinished)
            if args.compare is not None
            else None
        )
    except AuditError as error:
        print(f"gato-audit: {error}", file=stderr)
        return 2
    broken = False
    if args.verify:
        broken = _problems(args.output_dir, records, stderr)
        if other is not None:
            broken = _problems(args.compare, other, stderr) or broken
    status = VERIFY_FAILED if broken else 0
    if other is None:
        stdout.write(format_table(records))
        return status
    differences = compare_records(records, other)
    if not differences:
        stdout.write(f"{args.output_dir} and {args.compare} agree on all {len(records)} task(s)\n")
        return status
    stdout.write(f"{len(differences)} difference(s) between {args.output_dir} and {args.compare}:\n")
    stdout.writelines(line + "\n" for line in differences)
    return status or 1


if __name__ == "__main__":
    sys.exit(main())
