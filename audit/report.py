"""The auditors' report: one static, self-contained HTML page (no JS, CSS files or fonts).

A table of every task (with its sequencing: rows, share prompted, and a note when
prompts were unavailable, e.g. a one-episode task), then per task an inline SVG
histogram of episode returns (all episodes, kept ones on top) with the threshold and the
expert return E drawn, and the windowed mean return over collection order with E's
window marked; and a link to `stats/episodes.parquet`, every episode's return and decision.
Built only from the stats records (`stats/stats.json`, read by `formats.stats_files`),
so it can be re-rendered from any finished output with `write_report(output_dir)`; the
job's Stats stage (`pipeline/task_statistics.py`) renders it from the records it has just
written. Its table cells are also what `gato-audit` prints (`audit/cli.py`). Neither this
module nor the stats reader imports Beam, so `gato-audit` starts fast.
"""

from __future__ import annotations

import html
import math
from collections.abc import Mapping, Sequence
from typing import Any

from formats.files import write_bytes
from formats.stats_files import read_stats_records
from schemas import output as out

# Columns of the summary table (also printed by `gato-audit`): (record key, header).
TABLE_COLUMNS: tuple[tuple[str, str], ...] = (
    (out.DATASET, "dataset"),
    (out.TASK, "task"),
    (out.ST_EPISODES_READ, "N read"),
    (out.ST_WINDOW, "W"),
    (out.ST_EXPERT_RETURN, "E"),
    (out.ST_THRESHOLD, "threshold"),
    (out.ST_KEPT, "kept"),
    (out.ST_DROPPED, "dropped"),
    (out.ST_REJECTED, "rejected"),
    (out.ST_RETURN_MIN, "R min"),
    (out.ST_RETURN_MEDIAN, "R median"),
    (out.ST_RETURN_MAX, "R max"),
    (out.ST_KEPT_RETURN_MIN, "kept R min"),
    (out.ST_KEPT_RETURN_MEDIAN, "kept R median"),
    (out.ST_KEPT_RETURN_MAX, "kept R max"),
    (out.ST_KEPT_TIMESTEPS, "kept timesteps"),
    (out.ST_KEPT_TOKENS, "kept tokens"),
    (out.ST_WINDOW_START, "window start"),
    (out.ST_SEQUENCES, "sequences"),
    (out.ST_SEQUENCE_TOKENS, "sequence tokens"),
)


# Derived columns after TABLE_COLUMNS, in this order (see `table_cells`).
PROMPTED_HEADER = "prompted"  # prompted / sequences
REASONS_HEADER = "rejected by reason"
NOTES_HEADER = "notes"


TABLE_HEADERS: tuple[str, ...] = tuple(title for _, title in TABLE_COLUMNS) + (
    PROMPTED_HEADER,
    REASONS_HEADER,
    NOTES_HEADER,
)


# Indices of the left-aligned (text) columns of the table.
TEXT_COLUMNS = frozenset({0, 1, len(TABLE_HEADERS) - 2, len(TABLE_HEADERS) - 1})
NO_PROMPTS_NOTE = "no other eligible episode for prompts"
_WIDTH, _HEIGHT = 560, 220
_LEFT, _RIGHT, _TOP, _BOTTOM = 56, 12, 14, 30
_COLOR_ALL, _COLOR_KEPT = "#b8c2cc", "#2e8b57"
_COLOR_E, _COLOR_THRESHOLD = "#1f4fd1", "#d12f1f"
_TEXT_CLASS = ' class="text"'


def format_value(value: Any) -> str:
    """A number or text as auditors read it: ints exact, floats to 6 significant digits."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:.6g}"
    if isinstance(value, Mapping):
        return ", ".join(f"{k}: {v}" for k, v in value.items()) or "-"
    return str(value)


def prompted_share(record: Mapping[str, Any]) -> float | None:
    """prompted / sequences of a task; None without sequences (or from an older stats.json)."""
    sequences = record.get(out.ST_SEQUENCES) or 0
    return record[out.ST_PROMPTED_SEQUENCES] / sequences if sequences else None


def task_notes(record: Mapping[str, Any]) -> str:
    """What an auditor must not miss about a task: rows that wanted a prompt but the task
    had no other eligible episode (a one-episode task gets no prompts at all)."""
    unavailable = record.get(out.ST_PROMPTS_UNAVAILABLE) or 0
    if not unavailable:
        return "-"
    return f"{NO_PROMPTS_NOTE} ({unavailable} row(s) that drew a prompt went unprompted)"


def table_cells(record: Mapping[str, Any]) -> list[str]:
    """One task's row of the summary table as text, in `TABLE_HEADERS` order. Keys an older
    stats.json lacks show as "-"."""
    share = prompted_share(record)
    return [format_value(record.get(key)) for key, _ in TABLE_COLUMNS] + [
        "-" if share is None else f"{share:.3f}",
        format_value(record[out.ST_REJECTED_BY_REASON]),
        task_notes(record),
    ]


def _scale(low: float, high: float, start: float, end: float):
    span = (high - low) or 1.0
    return lambda x: start + (x - low) / span * (end - start)


def _axes(x_low: float, x_high: float, y_low: float, y_high: float, x_label: str, y_label: str) -> list[str]:
    x0, x1, y0, y1 = _LEFT, _WIDTH - _RIGHT, _HEIGHT - _BOTTOM, _TOP
    return [
        f'<line x1="{x0}" y1="{y0}" x2="{x1}" y2="{y0}" stroke="#333"/>',
        f'<line x1="{x0}" y1="{y0}" x2="{x0}" y2="{y1}" stroke="#333"/>',
        f'<text x="{x0}" y="{y0 + 14}" font-size="10">{html.escape(format_value(x_low))}</text>',
        f'<text x="{x1}" y="{y0 + 14}" font-size="10" text-anchor="end">{html.escape(format_value(x_high))}</text>',
        f'<text x="{(x0 + x1) / 2}" y="{y0 + 26}" font-size="11" text-anchor="middle">{html.escape(x_label)}</text>',
        f'<text x="{x0 - 4}" y="{y0}" font-size="10" text-anchor="end">{html.escape(format_value(y_low))}</text>',
        f'<text x="{x0 - 4}" y="{y1 + 8}" font-size="10" text-anchor="end">{html.escape(format_value(y_high))}</text>',
        f'<text x="12" y="{(y0 + y1) / 2}" font-size="11" text-anchor="middle" '
        f'transform="rotate(-90 12 {(y0 + y1) / 2})">{html.escape(y_label)}</text>',
    ]


def _vertical(x: float, color: str, label: str, *, left: bool) -> str:
    # The threshold's label goes left of its line and E's right of its own, one line lower,
    # so the two never overlap however close the lines are.
    anchor, dx, dy = ("end", -3, 10) if left else ("start", 3, 22)
    return (
        f'<line x1="{x:.2f}" y1="{_TOP}" x2="{x:.2f}" y2="{_HEIGHT - _BOTTOM}" stroke="{color}" '
        f'stroke-width="2" stroke-dasharray="5,3"/><text x="{x + dx:.2f}" y="{_TOP + dy}" '
        f'font-size="10" fill="{color}" text-anchor="{anchor}">{html.escape(label)}</text>'
    )


def _horizontal(y: float, color: str, label: str, *, left: bool) -> str:
    # E's label sits at the left end of its line and the threshold's at the right end, so the
    # two stay apart when the lines coincide (E = threshold: fraction 1, or E = 0).
    x, anchor = (_LEFT + 4, "start") if left else (_WIDTH - _RIGHT - 2, "end")
    return (
        f'<line x1="{_LEFT}" y1="{y:.2f}" x2="{_WIDTH - _RIGHT}" y2="{y:.2f}" stroke="{color}" '
        f'stroke-width="1.5" stroke-dasharray="5,3"/><text x="{x}" y="{y - 3:.2f}" '
        f'font-size="10" fill="{color}" text-anchor="{anchor}">{html.escape(label)}</text>'
    )


def _svg(parts: Sequence[str], title: str) -> str:
    body = "".join(parts)
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{_WIDTH}" height="{_HEIGHT}" '
        f'viewBox="0 0 {_WIDTH} {_HEIGHT}" role="img"><title>{html.escape(title)}</title>'
        f'<rect width="100%" height="100%" fill="#fff"/>{body}</svg>'
    )


def histogram_svg(record: Mapping[str, Any]) -> str:
    """Returns of all episodes (grey) and kept ones (green) with threshold and E lines."""
    edges = record[out.ST_HISTOGRAM_EDGES]
    counts_all, counts_kept = record[out.ST_HISTOGRAM_ALL], record[out.ST_HISTOGRAM_KEPT]
    if not edges:
        return "<p>No episode with a return: no histogram.</p>"
    expert, threshold = record[out.ST_EXPERT_RETURN], record[out.ST_THRESHOLD]
    low, high = min([edges[0], threshold]), max(edges[-1], expert)
    x = _scale(low, high, _LEFT, _WIDTH - _RIGHT)
    top = max(max(counts_all), 1)
    y = _scale(0, top, _HEIGHT - _BOTTOM, _TOP)
    parts = _axes(low, high, 0, top, "episode return", "episodes")
    for counts, color in ((counts_all, _COLOR_ALL), (counts_kept, _COLOR_KEPT)):
        for left, right, count in zip(edges, edges[1:], counts):
            if count:
                parts.append(
                    f'<rect x="{x(left):.2f}" y="{y(count):.2f}" width="{max(x(right) - x(left) - 1, 1):.2f}" '
                    f'height="{y(0) - y(count):.2f}" fill="{color}"/>'
                )
    parts.append(_vertical(x(threshold), _COLOR_THRESHOLD, f"threshold {format_value(threshold)}", left=True))
    parts.append(_vertical(x(expert), _COLOR_E, f"E {format_value(expert)}", left=False))
    return _svg(parts, f"Return histogram of {record[out.DATASET]} {record[out.TASK]}")


def windowed_mean_svg(record: Mapping[str, Any]) -> str:
    """Mean return of each window of W consecutive episodes, over collection order."""
    starts, means = record[out.ST_WINDOWED_MEAN_START], record[out.ST_WINDOWED_MEAN]
    if not starts:
        return "<p>No episode with a return: no windowed mean.</p>"
    expert, threshold = record[out.ST_EXPERT_RETURN], record[out.ST_THRESHOLD]
    last = record[out.ST_EPISODES_WITH_RETURN] - record[out.ST_WINDOW]
    y_low, y_high = min(min(means), threshold), max(max(means), expert)
    x = _scale(0, max(last, 1), _LEFT, _WIDTH - _RIGHT)
    y = _scale(y_low, y_high, _HEIGHT - _BOTTOM, _TOP)
    parts = _axes(0, max(last, 1), y_low, y_high, f"window start (collection order, W = {record[out.ST_WINDOW]})", "mean return")
    parts.append(_horizontal(y(threshold), _COLOR_THRESHOLD, "threshold", left=False))
    parts.append(_horizontal(y(expert), _COLOR_E, "E", left=True))
    points = " ".join(f"{x(s):.2f},{y(m):.2f}" for s, m in zip(starts, means))
    parts.append(f'<polyline points="{points}" fill="none" stroke="#222" stroke-width="1.5"/>')
    start = record[out.ST_WINDOW_START]
    parts.append(f'<circle cx="{x(start):.2f}" cy="{y(expert):.2f}" r="4" fill="{_COLOR_E}"/>')
    return _svg(parts, f"Windowed mean return of {record[out.DATASET]} {record[out.TASK]}")


_STYLE = """
body { font-family: sans-serif; margin: 24px; color: #111; }
table { border-collapse: collapse; font-size: 12px; }
th, td { border: 1px solid #ccc; padding: 3px 6px; text-align: right; }
th { background: #eef; } td.text { text-align: left; }
section { margin-top: 28px; } .charts { display: flex; flex-wrap: wrap; gap: 16px; }
.note { color: #a15c00; font-weight: bold; }
.legend span { display: inline-block; width: 12px; height: 12px; margin: 0 4px 0 12px; }
"""


def _sequencing_paragraph(record: Mapping[str, Any]) -> str:
    """The task's sequencing figures, and a warning when prompts were unavailable."""
    if out.ST_SEQUENCES not in record:
        return ""  # an output written before the statistics carried sequencing
    share = prompted_share(record)
    text = (
        f"<p>Sequences {record[out.ST_SEQUENCES]} = prompted {record[out.ST_PROMPTED_SEQUENCES]} + "
        f"unprompted {record[out.ST_UNPROMPTED_SEQUENCES]} (prompted share "
        f"{'-' if share is None else f'{share:.3f}'}); {record[out.ST_SEQUENCE_TOKENS]} tokens before "
        "padding, prompts included.</p>"
    )
    if record[out.ST_PROMPTS_UNAVAILABLE]:
        text += f'<p class="note">{html.escape(task_notes(record))}</p>'
    return text


# Every episode's return and decision is in the output, beside this page (a relative link).
_EPISODES_PARAGRAPH = (
    f'<p>Every episode, with its return and the filter\'s decision: '
    f'<a href="{out.STATS_EPISODES_FILE}">{out.STATS_EPISODES_FILE}</a> (Parquet; e.g. DuckDB '
    f"<code>SELECT * FROM '{out.STATS_EPISODES_FILE}'</code>).</p>"
)


def render_report(stats_records: Sequence[Mapping[str, Any]]) -> str:
    """The whole report as one HTML string (records in the order given: dataset, task)."""
    header = "".join(f"<th>{html.escape(title)}</th>" for title in TABLE_HEADERS)
    rows, sections = [], []
    for index, record in enumerate(stats_records):
        cells = [
            f"<td{_TEXT_CLASS if i in TEXT_COLUMNS else ''}>{html.escape(text)}</td>"
            for i, text in enumerate(table_cells(record))
        ]
        name = f"{record[out.DATASET]} / {record[out.TASK]}"
        cells[1] = f'<td class="text"><a href="#task-{index}">{html.escape(record[out.TASK])}</a></td>'
        rows.append(f"<tr>{''.join(cells)}</tr>")
        filter_note = " (--no_filter: every episode kept)" if record[out.ST_NO_FILTER] else ""
        sections.append(
            f'<section id="task-{index}"><h2>{html.escape(name)}</h2>'
            f"<p>N read {record[out.ST_EPISODES_READ]} = kept {record[out.ST_KEPT]} + dropped "
            f"{record[out.ST_DROPPED]} + rejected {record[out.ST_REJECTED]}; "
            f"W {format_value(record[out.ST_WINDOW])}, E {format_value(record[out.ST_EXPERT_RETURN])}, "
            f"threshold {format_value(record[out.ST_THRESHOLD])} (fraction "
            f"{format_value(record[out.ST_FRACTION])}){html.escape(filter_note)}</p>"
            f"{_sequencing_paragraph(record)}"
            f'<div class="charts">{histogram_svg(record)}{windowed_mean_svg(record)}</div></section>'
        )
    legend = (
        f'<p class="legend"><span style="background:{_COLOR_ALL}"></span>all episodes'
        f'<span style="background:{_COLOR_KEPT}"></span>kept'
        f'<span style="background:{_COLOR_E}"></span>expert return E'
        f'<span style="background:{_COLOR_THRESHOLD}"></span>threshold</p>'
    )
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        f"<title>Gato data: episode filter report</title><style>{_STYLE}</style></head><body>"
        "<h1>Episode filter report</h1>"
        "<p>Per task: W = max(1, min(cap, floor(0.1 N))) over the valid episodes in collection order, "
        "E = best mean return over W consecutive episodes, kept when return &ge; "
        "E &minus; (1 &minus; fraction)&middot;|E|.</p>"
        f"{legend}<table><thead><tr>{header}</tr></thead><tbody>{''.join(rows)}</tbody></table>"
        f"{_EPISODES_PARAGRAPH}"
        f"{''.join(sections)}</body></html>\n"
    )


def write_report(output_dir: str, records: Sequence[Mapping[str, Any]] | None = None) -> str:
    """Renders `report.html` from `records` (default: `stats/stats.json` of `output_dir`);
    returns its relative path."""
    if records is None:
        records = read_stats_records(output_dir)
    write_bytes(output_dir, out.REPORT_FILE, render_report(records).encode("utf-8"))
    return out.REPORT_FILE
