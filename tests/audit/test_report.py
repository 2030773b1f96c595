"""The auditors' HTML report: self-contained, escaped, and really rendered by a browser."""

from __future__ import annotations

import pathlib
import re
import xml.etree.ElementTree as ElementTree

import numpy as np
import pytest

from tests.audit.chromium import screenshot
from transforms.expert_filter import expert_return
from audit.report import TABLE_HEADERS, render_report, write_report
from formats.stats_files import read_stats_records
from transforms.books import SequenceCounts
from formats.stats_files import write_statistics
from formats.stats_files import task_statistics
from schemas import output as out

KEPT_GREEN = (0x2E, 0x8B, 0x57)
THRESHOLD_RED = (0xD1, 0x2F, 0x1F)


def _results(task_names: tuple[str, ...] = ("rlu_atari/Pong_run_1", "walker_walk")) -> list:
    rng = np.random.default_rng(0)
    results = []
    for index, task in enumerate(task_names):
        n = 3000 if index == 0 else 200
        values = (
            np.clip(np.round(np.linspace(-21, 15, n) + rng.normal(0, 4, n)), -21, 21)
            if index == 0
            else rng.gamma(2.0, 100.0, n)
        ).tolist()
        threshold = expert_return(values)
        returns = [(((i,), "s", i), f"e{i}", v, "s") for i, v in enumerate(values)]
        decisions = [(f"e{i}", threshold.keeps(v), "r") for i, v in enumerate(values)]
        kept = [(f"e{i}", v, 10, 100) for i, v in enumerate(values) if threshold.keeps(v)]
        rejects = [(None, "bad-shard", "corrupt_record", None, "CRC")] if index == 0 else []
        results.append(task_statistics(("atari", task), threshold=threshold, returns=returns,
                                       decisions=decisions, kept=kept, rejects=rejects))
    return results


def _records() -> list[dict]:
    return [record for record, _ in _results()]


def test_report_is_self_contained() -> None:
    page = render_report(_records())
    assert page.startswith("<!DOCTYPE html>")
    for external in ("<script", "<link", "src=", "@import", "url(", "<iframe"):
        assert external not in page
    assert set(re.findall(r"https?://[^\"' ]+", page)) == {"http://www.w3.org/2000/svg"}  # a namespace, not a fetch


def test_report_has_the_table_and_two_valid_charts_per_task() -> None:
    records = _records()
    page = render_report(records)
    assert page.count("<tr>") == 1 + len(records)
    charts = re.findall(r"<svg.*?</svg>", page, flags=re.S)
    assert len(charts) == 2 * len(records)
    for chart in charts:
        ElementTree.fromstring(chart)  # well-formed XML
    pong = records[0]
    histogram = ElementTree.fromstring(charts[0])
    ns = "{http://www.w3.org/2000/svg}"
    dashed = [line for line in histogram.iter(f"{ns}line") if line.get("stroke-dasharray")]
    assert [line.get("stroke") for line in dashed] == ["#d12f1f", "#1f4fd1"]  # threshold, then E
    threshold_x, expert_x = (float(line.get("x1")) for line in dashed)
    assert threshold_x < expert_x  # E > 0 here: the threshold sits left of E
    bars = [rect for rect in histogram.iter(f"{ns}rect") if rect.get("fill") in ("#b8c2cc", "#2e8b57")]
    assert len(bars) == sum(1 for c in pong[out.ST_HISTOGRAM_ALL] if c) + sum(1 for c in pong[out.ST_HISTOGRAM_KEPT] if c)
    curve = ElementTree.fromstring(charts[1]).find(f"{ns}polyline")
    assert len(curve.get("points").split()) == len(pong[out.ST_WINDOWED_MEAN])
    assert f"N read {pong[out.ST_EPISODES_READ]} = kept {pong[out.ST_KEPT]}" in page
    assert "corrupt_record: 1" in page


def test_names_are_escaped() -> None:
    record, _ = _results(("<script>alert(1)</script>", "a&b"))[0]
    page = render_report([record])
    assert "<script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page


def test_a_task_without_returns_renders_without_charts() -> None:
    record, _ = task_statistics(("d", "t"), threshold=None, returns=[], decisions=[], kept=[],
                                rejects=[("e0", "s", "bad_shape", None, "x")])
    page = render_report([record])
    assert "<svg" not in page and "no histogram" in page


def _sequenced(task: tuple[str, str], values: list[float], counts: SequenceCounts) -> dict:
    threshold = expert_return(values)
    returns = [(((i,), "s", i), f"e{i}", v, "s") for i, v in enumerate(values)]
    decisions = [(f"e{i}", threshold.keeps(v), "r") for i, v in enumerate(values)]
    kept = [(f"e{i}", v, 10, 100) for i, v in enumerate(values) if threshold.keeps(v)]
    record, _ = task_statistics(task, threshold=threshold, returns=returns, decisions=decisions, kept=kept,
                                rejects=[], sequences=counts)
    return record


def _cells(page: str) -> list[list[str]]:
    """The summary table's body rows as cell texts (links unwrapped)."""
    body = re.search(r"<tbody>(.*?)</tbody>", page, flags=re.S).group(1)
    return [
        [re.sub(r"<[^>]+>", "", cell) for cell in re.findall(r"<td[^>]*>(.*?)</td>", row)]
        for row in re.findall(r"<tr>(.*?)</tr>", body)
    ]


def test_report_shows_the_prompted_share_and_flags_a_task_without_prompts() -> None:
    # One episode: its 10 rows cannot be prompted, 4 of them drew a prompt. Eight episodes
    # (returns 1..8: W 1, E 8, threshold 6.4 keeps 7 and 8): 9 of 20 rows prompted.
    solo = _sequenced(("dmc", "solo"), [3.0], SequenceCounts(1, 10, 0, 10, 4, 100))
    many = _sequenced(("dmc", "many"), [float(v) for v in range(1, 9)], SequenceCounts(2, 20, 9, 11, 0, 236))
    page = render_report([many, solo])
    headers = re.findall(r"<th>(.*?)</th>", page)
    assert headers == list(TABLE_HEADERS) and headers[-3:] == ["prompted", "rejected by reason", "notes"]
    rows = {row[1]: dict(zip(headers, row)) for row in _cells(page)}
    assert (rows["many"]["sequences"], rows["many"]["prompted"], rows["many"]["notes"]) == ("20", "0.450", "-")
    assert (rows["solo"]["sequences"], rows["solo"]["prompted"]) == ("10", "0.000")
    assert rows["solo"]["notes"] == "no other eligible episode for prompts (4 row(s) that drew a prompt went unprompted)"
    assert rows["solo"]["sequence tokens"] == "100" and rows["many"]["sequence tokens"] == "236"
    assert "Sequences 20 = prompted 9 + unprompted 11 (prompted share 0.450); 236 tokens" in page
    assert page.count('<p class="note">no other eligible episode for prompts') == 1  # only the solo section


def test_a_record_from_before_sequencing_counts_still_renders() -> None:
    record = _records()[0]
    for key in (out.ST_SEQUENCES, out.ST_PROMPTED_SEQUENCES, out.ST_UNPROMPTED_SEQUENCES,
                out.ST_PROMPTS_UNAVAILABLE, out.ST_SEQUENCE_TOKENS):
        del record[key]
    page = render_report([record])
    row = dict(zip(TABLE_HEADERS, _cells(page)[0]))
    assert (row["sequences"], row["prompted"], row["notes"]) == ("-", "-", "-")
    assert "Sequences" not in page


def test_write_report_renders_from_stats_json(tmp_path: pathlib.Path) -> None:
    write_statistics(str(tmp_path), _results())
    assert write_report(str(tmp_path)) == out.REPORT_FILE
    assert (tmp_path / out.REPORT_FILE).read_text() == render_report(read_stats_records(str(tmp_path)))


def test_report_renders_in_headless_chromium(tmp_path: pathlib.Path) -> None:
    write_statistics(str(tmp_path), _results())
    write_report(str(tmp_path))
    pixels = screenshot(tmp_path / out.REPORT_FILE, tmp_path, width=1200, height=2000)
    assert pixels.shape == (2000, 1200, 3)
    assert pixels.std() > 10  # not a blank page
    # The first task's charts sit below the table: that band must hold the kept bars
    # (green) and the threshold line (red), i.e. the SVGs were drawn, not just text.
    band = pixels[250:1000]
    def count(color: tuple[int, int, int]) -> int:
        return int(np.all(np.abs(band - np.array(color)) <= 12, axis=-1).sum())
    assert count(KEPT_GREEN) > 2000
    assert count(THRESHOLD_RED) > 50
    assert int((band.min(axis=-1) < 200).sum()) > 20_000  # plenty of non-white pixels


def _label_boxes(chart: str) -> dict[str, tuple[float, float, float, float]]:
    """{label text: (x0, y0, x1, y1)} of a chart's coloured labels, at 10 px font (6 px a character)."""
    ns = "{http://www.w3.org/2000/svg}"
    boxes = {}
    for text in ElementTree.fromstring(chart).iter(f"{ns}text"):
        if text.get("fill") in ("#1f4fd1", "#d12f1f"):
            x, y, width = float(text.get("x")), float(text.get("y")), 6.0 * len(text.text)
            x0 = {"start": x, "end": x - width}[text.get("text-anchor")]
            boxes[text.text] = (x0, y - 10, x0 + width, y)
    return boxes


def test_e_and_threshold_labels_stay_apart_when_they_are_equal() -> None:
    # Issue 17: with fraction 1 the threshold is E, and the windowed-mean chart wrote both
    # labels at the same place.
    values = [1.0, 3.0, 2.0, 5.0, 4.0, 6.0, 2.0, 3.0, 1.0, 2.0, 4.0, 3.0]
    threshold = expert_return(values, fraction=1.0)
    assert threshold.threshold == threshold.expert_return
    returns = [(((i,), "s", i), f"e{i}", v, "s") for i, v in enumerate(values)]
    decisions = [(f"e{i}", threshold.keeps(v), "r") for i, v in enumerate(values)]
    kept = [(f"e{i}", v, 10, 100) for i, v in enumerate(values) if threshold.keeps(v)]
    record, _ = task_statistics(("d", "t"), threshold=threshold, returns=returns, decisions=decisions,
                                kept=kept, rejects=[])
    for chart in re.findall(r"<svg.*?</svg>", render_report([record]), flags=re.S):
        (a, b) = _label_boxes(chart).values()
        assert a[2] <= b[0] or b[2] <= a[0] or a[3] <= b[1] or b[3] <= a[1], (a, b)


def test_the_report_links_every_episode() -> None:
    # Issue 17: the report had no per-episode list nor a way to it.
    page = render_report(_records())
    assert f'<a href="{out.STATS_EPISODES_FILE}">' in page
