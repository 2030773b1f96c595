"""The vision-language report: the stats table, decoded rows whose images come back pixel
for pixel beside their caption or question and answer, the same bytes on every run."""

from __future__ import annotations

import base64
import io
import pathlib
import re

import numpy as np
import pytest
from PIL import Image

from audit.vl_report import TEXT_CHARS, VL_TABLE_COLUMNS, render_vl_report, vl_table_cells, write_vl_stats
from formats.stats_files import read_stats_records
from schemas import output as out
from tests.transforms.test_vl_decode import ANSWER, CAPTION, CAPTION_UNIT, IMAGE_A, IMAGE_B, QUESTION, VQA_UNIT
from tests.transforms.test_vl_stats import EXPECTED
from tests.vl_row_fixtures import make_rows, make_unit, row_dict
from transforms.text import BUNDLED_MODEL, SentencePieceTokenizer

TASK = ("coco", "coco")
IMAGE_TAG = '<img alt="image 0 of img1#3"'
ROWS = {TASK: [row_dict(make_rows([[CAPTION_UNIT, VQA_UNIT]], length=160), 0, dataset="coco", task="coco")]}


def _images(page: str) -> list[np.ndarray]:
    found = re.findall(r'src="data:image/png;base64,([^"]+)"', page)
    return [np.asarray(Image.open(io.BytesIO(base64.b64decode(data)))) for data in found]


def test_write_vl_stats_writes_the_files_and_returns_the_manifest_entry(tmp_path: pathlib.Path) -> None:
    paths = write_vl_stats(str(tmp_path), [EXPECTED], report_rows=ROWS, text_model=BUNDLED_MODEL)
    assert paths == {out.M_STATS_PARQUET: "stats/stats.parquet", out.M_STATS_JSON: "stats/stats.json",
                     out.M_STATS_REPORT: "report.html"}
    assert all((tmp_path / path).is_file() for path in paths.values())
    assert read_stats_records(str(tmp_path)) == [EXPECTED]
    again = tmp_path / "again"
    write_vl_stats(str(again), [EXPECTED], report_rows=ROWS, text_model=BUNDLED_MODEL)
    assert (again / out.REPORT_FILE).read_bytes() == (tmp_path / out.REPORT_FILE).read_bytes()


def test_decoded_rows_show_each_image_with_its_caption_or_question_and_answer() -> None:
    page = render_vl_report([EXPECTED], report_rows=ROWS, tokenizer=SentencePieceTokenizer.from_path(BUNDLED_MODEL))
    images = _images(page)
    assert len(images) == 2
    np.testing.assert_array_equal(images[0], IMAGE_A)
    np.testing.assert_array_equal(images[1], IMAGE_B)
    # In page order: key, image, caption; key, image, question, answer.
    order = [page.index(s) for s in ("img1#3", IMAGE_TAG, f"target: {CAPTION} [E]", "q7#0")]
    assert order == sorted(order)
    question, answer = page.index(f"context, no loss: {QUESTION}"), page.index(f"target: {ANSWER} [E]")
    assert order[-1] < question < answer
    assert "row 0 of img1" in page


def test_the_table_has_every_statistic_of_the_task() -> None:
    cells = vl_table_cells(EXPECTED)
    assert len(cells) == len(VL_TABLE_COLUMNS)
    assert cells == ["coco", "coco", "5", "3", "2", "corrupt_image: 1, empty_text: 1", "empty_text: 1", "4", "4",
                     "127", "115", "12", "112", "0.503906", "1.25", "4", "5.5", "100"]
    page = render_vl_report([EXPECTED], report_rows={})
    assert "rows with 1 unit(s): 3, 2 unit(s): 1, 3 unit(s): 0" in page
    assert "<p>No rows to show.</p>" in page


def test_the_page_is_self_contained_and_escapes_names() -> None:
    record = {**EXPECTED, out.TASK: "<b>t</b>"}
    page = render_vl_report([record], report_rows={})
    for external in ("<script", "<link", "@import", "url(", "<iframe", "http"):
        assert external not in page
    assert "<b>t</b>" not in page and "&lt;b&gt;t&lt;/b&gt;" in page


def test_without_a_text_model_texts_show_as_ids_and_long_texts_are_cut() -> None:
    long = make_unit("doc", target=[5] * (TEXT_CHARS + 50), end_id=None, source_key="doc")
    rows = {TASK: [row_dict(make_rows([[long]], length=400, pair_rows=False), 0, dataset="coco", task="coco")]}
    page = render_vl_report([EXPECTED], report_rows=rows)
    shown = re.search(r'<p class="target">target: (ids [0-9 ]+)\u2026</p>', page)
    assert shown is not None and len(shown.group(1)) == TEXT_CHARS


def test_rows_of_a_task_without_a_record_are_an_error() -> None:
    with pytest.raises(ValueError, match=r"report rows of tasks \[\('coco', 'coco'\)\] that have no stats record"):
        render_vl_report([{**EXPECTED, out.TASK: "other"}], report_rows=ROWS)
