"""The auditors' report of a vision-language or text output: one static HTML page, no JS,
CSS files or fonts; images are inline PNG data URIs (spec section 8, issue 15 item 5).

A table of every task (records read, kept, rejected by reason; pairs rejected from kept
records by reason; units; rows; tokens by modality; loss tokens; padding fraction; units
per row; text tokens per unit), then per task its rows' units-per-row histogram and a few
decoded rows (`transforms.vl_decode`): each unit's images with its texts, the conditioning
text (a question) apart from the target (a caption, an answer, a document's first
`TEXT_CHARS` characters), so a person can see that pairs are intact.

The bytes depend only on the records, the rows and the text model (no timestamps), so a
rerun writes the same page. `write_vl_stats` writes the statistics files and the page at
once, for the job's statistics stage.
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from audit.report import format_value
from formats.files import write_bytes
from formats.vl_stats_files import TaskKey, ordered_summaries, write_vl_stats_files
from schemas import output as out
from schemas.vocab import GATO, VocabLayout
from transforms.text import SentencePieceTokenizer
from transforms.vl_decode import IMAGE, decode_vl_row

TEXT_CHARS = 300  # characters of a text run shown (a document's first ones)
# Columns of the summary table: (record key, header).
VL_TABLE_COLUMNS: tuple[tuple[str, str], ...] = (
    (out.DATASET, "dataset"),
    (out.TASK, "task"),
    (out.VST_RECORDS_READ, "records read"),
    (out.VST_RECORDS_KEPT, "kept"),
    (out.VST_RECORDS_REJECTED, "rejected"),
    (out.VST_REJECTED_BY_REASON, "rejected by reason"),
    (out.VST_UNITS_REJECTED_BY_REASON, "pairs rejected from kept records"),
    (out.VST_UNITS, "units"),
    (out.VST_ROWS, "rows"),
    (out.VST_TOKENS, "tokens"),
    (out.VST_TEXT_TOKENS, "text tokens"),
    (out.VST_IMAGE_TOKENS, "image tokens"),
    (out.VST_LOSS_TOKENS, "loss tokens"),
    (out.VST_PADDING_FRACTION, "padding fraction"),
    (out.VST_UNITS_PER_ROW_MEAN, "units per row"),
    (out.VST_UNIT_TEXT_TOKENS_MIN, "text tokens per unit: min"),
    (out.VST_UNIT_TEXT_TOKENS_MEDIAN, "median"),
    (out.VST_UNIT_TEXT_TOKENS_MAX, "max"),
)
_TEXT_COLUMNS = frozenset({0, 1, 5, 6})
_TEXT_CLASS = ' class="text"'
_STYLE = """
body { font-family: sans-serif; margin: 24px; color: #111; }
table { border-collapse: collapse; font-size: 12px; }
th, td { border: 1px solid #ccc; padding: 3px 6px; text-align: right; }
th { background: #eef; } td.text { text-align: left; }
section { margin-top: 28px; } .row { border-top: 1px solid #ccc; margin-top: 12px; }
.unit { display: flex; flex-wrap: wrap; gap: 8px; align-items: flex-start; margin: 8px 0; }
.unit img { width: 192px; image-rendering: pixelated; border: 1px solid #999; }
.key { font-family: monospace; font-size: 11px; color: #555; width: 100%; }
.context { color: #555; } .target { color: #111; font-weight: bold; }
"""


def png_data_uri(image: np.ndarray) -> str:
    """uint8 [H, W, 3] -> `data:image/png;base64,...` (Pillow's PNG: no time stamp in it)."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(image, dtype=np.uint8), "RGB").save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def vl_table_cells(record: Mapping[str, Any]) -> list[str]:
    """One task's row of the summary table as text, in `VL_TABLE_COLUMNS` order."""
    return [format_value(record.get(key)) for key, _ in VL_TABLE_COLUMNS]


def _text_html(text: Mapping[str, Any]) -> str:
    shown = text["text"] if text["text"] is not None else "ids " + " ".join(map(str, text["ids"]))
    cut = shown[:TEXT_CHARS] + ("\u2026" if len(shown) > TEXT_CHARS else "")
    role, label = ("target", "target") if text["loss"] else ("context", "context, no loss")
    end = " [E]" if text["end"] else ""
    return f'<p class="{role}">{label}: {html.escape(cut)}{end}</p>'


def _unit_html(unit: Mapping[str, Any]) -> str:
    images, texts = iter(unit["images"]), iter(unit["texts"])
    parts = [f'<div class="key">{html.escape(unit["source_key"])}</div>']
    for index, kind in enumerate(unit["order"]):
        if kind == IMAGE:
            alt = html.escape(f"image {index} of {unit['source_key']}", quote=True)
            parts.append(f'<img alt="{alt}" src="{png_data_uri(next(images))}">')
        else:
            parts.append(_text_html(next(texts)))
    return f'<div class="unit">{"".join(parts)}</div>'


def rows_html(rows: Sequence[Mapping[str, Any]], *, layout: VocabLayout, tokenizer: SentencePieceTokenizer | None) -> str:
    """Decoded rows: per row its name, then each unit's images and texts in order."""
    parts = []
    for row in rows:
        units = decode_vl_row(row, layout=layout, tokenizer=tokenizer)
        title = f"row {row[out.SEQUENCE_INDEX]} of {row[out.EPISODE_ID]} ({row[out.NUM_TOKENS]} tokens, {len(units)} unit(s))"
        parts.append(f'<div class="row"><h3>{html.escape(title)}</h3>{"".join(map(_unit_html, units))}</div>')
    return "".join(parts) or "<p>No rows to show.</p>"


def _section(index: int, record: Mapping[str, Any], rows_part: str) -> str:
    name = f"{record[out.DATASET]} / {record[out.TASK]}"
    histogram = ", ".join(f"{k} unit(s): {n}" for k, n in enumerate(record[out.VST_UNITS_PER_ROW_HISTOGRAM], 1))
    return (
        f'<section id="task-{index}"><h2>{html.escape(name)}</h2>'
        f"<p>Records read {record[out.VST_RECORDS_READ]} = kept {record[out.VST_RECORDS_KEPT]} + rejected "
        f"{record[out.VST_RECORDS_REJECTED]}; {record[out.VST_UNITS]} units in {record[out.VST_ROWS]} rows of "
        f"{record[out.VST_SEQUENCE_LENGTH]} tokens; rows with {html.escape(histogram)}.</p>"
        f"<h3>Decoded rows</h3>{rows_part}</section>"
    )


def render_vl_report(
    records: Sequence[Mapping[str, Any]],
    *,
    report_rows: Mapping[TaskKey, Sequence[Mapping[str, Any]]],
    layout: VocabLayout = GATO,
    tokenizer: SentencePieceTokenizer | None = None,
) -> str:
    """The whole page (records in the order given). Rows of a task without a record are a ValueError."""
    stray = sorted(set(report_rows) - {(r[out.DATASET], r[out.TASK]) for r in records})
    if stray:
        raise ValueError(f"report rows of tasks {stray} that have no stats record")
    header = "".join(f"<th>{html.escape(title)}</th>" for _, title in VL_TABLE_COLUMNS)
    table_rows, sections = [], []
    for index, record in enumerate(records):
        cells = [f"<td{_TEXT_CLASS if i in _TEXT_COLUMNS else ''}>{html.escape(text)}</td>"
                 for i, text in enumerate(vl_table_cells(record))]
        cells[1] = f'<td class="text"><a href="#task-{index}">{html.escape(record[out.TASK])}</a></td>'
        table_rows.append(f"<tr>{''.join(cells)}</tr>")
        rows = report_rows.get((record[out.DATASET], record[out.TASK]), ())
        sections.append(_section(index, record, rows_html(rows, layout=layout, tokenizer=tokenizer)))
    model = "no text model: texts shown as ids" if tokenizer is None else f"text model {tokenizer.source}"
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        f"<title>Gato data: vision-language report</title><style>{_STYLE}</style></head><body>"
        "<h1>Vision-language and text report</h1>"
        "<p>Per task: a record is kept if any of its units is (read = kept + rejected); a kept record's "
        "rejected pairs are counted apart. Text tokens include E; padding fraction = padding / (rows "
        f"&times; L). Decoded with the {html.escape(model)}; [E] marks the end-of-sequence token.</p>"
        f"<table><thead><tr>{header}</tr></thead><tbody>{''.join(table_rows)}</tbody></table>"
        f"{''.join(sections)}</body></html>\n"
    )


def write_vl_report(
    output_dir: str,
    records: Sequence[Mapping[str, Any]],
    *,
    report_rows: Mapping[TaskKey, Sequence[Mapping[str, Any]]],
    text_model: str | None,
    layout: VocabLayout = GATO,
) -> str:
    """Renders `report.html` from `records` (sorted by dataset, task) and the rows to show;
    `text_model` (a path, URL or `bundled:` name) decodes their text. Returns its relative path."""
    tokenizer = None if text_model is None else SentencePieceTokenizer.from_path(text_model)
    page = render_vl_report(ordered_summaries(records), report_rows=report_rows, layout=layout, tokenizer=tokenizer)
    write_bytes(output_dir, out.REPORT_FILE, page.encode("utf-8"))
    return out.REPORT_FILE


def write_vl_stats(
    output_dir: str,
    summaries: Sequence[Mapping[str, Any]],
    *,
    report_rows: Mapping[TaskKey, Sequence[Mapping[str, Any]]],
    text_model: str | None,
    layout: VocabLayout = GATO,
) -> dict[str, str]:
    """Writes stats/stats.parquet, stats/stats.json and report.html; returns the manifest's
    `M_STATS` entry (`M_STATS_PARQUET`, `M_STATS_JSON`, `M_STATS_REPORT`: relative paths)."""
    paths = write_vl_stats_files(output_dir, summaries)
    paths[out.M_STATS_REPORT] = write_vl_report(
        output_dir, summaries, report_rows=report_rows, text_model=text_model, layout=layout
    )
    return paths
