"""audit/viewer.py: `viewer.html` shows a few sequences per task as the model sees them.

On the job's own outputs: Atari (frames reassembled from patches, checked pixel for pixel
in a headless Chromium screenshot against the source episode's frame) and the control
suite (no image at all: numbers only). The page is the same bytes when rendered again.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from audit.viewer import FRAME_BORDER, FRAME_BORDER_PX, FRAME_SCALE, render_viewer, task_rows
from formats.tfds_shards import ShardReader, read_shard
from pipeline.job import run_job
from planning.options import SAMPLES_DATA_DIR, JobOptions
from planning.plan import plan_work
from schemas import output as out
from tests.audit.chromium import screenshot
from transforms.images import as_frames


def _job(tmp_path_factory: pytest.TempPathFactory, dataset: str, tasks: str) -> tuple[Path, dict[str, Any]]:
    output = tmp_path_factory.mktemp(dataset) / "out"
    run_job(JobOptions(dataset=dataset, output_dir=str(output), tasks=(tasks,)))
    return output, json.loads((output / out.MANIFEST_FILE).read_text())


@pytest.fixture(scope="module")
def pong(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    return _job(tmp_path_factory, "atari", "Pong*")


@pytest.fixture(scope="module")
def cartpole(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    return _job(tmp_path_factory, "control_suite", "cartpole*")


def test_the_job_writes_the_viewer_and_lists_it_beside_the_report(pong: tuple[Path, dict[str, Any]]) -> None:
    output, manifest = pong
    assert manifest[out.M_STATS][out.M_STATS_VIEWER] == out.VIEWER_FILE
    page = (output / out.VIEWER_FILE).read_text()
    assert page == render_viewer(manifest, task_rows(str(output), manifest))  # same bytes again
    for external in ("<script", "<link", "@import", "url(", "http://", "https://"):
        assert external not in page
    assert page.count('class="frame"') > 0 and "local position 511" in page and "t m2" in page


def test_control_suite_rows_show_numbers_and_no_image(cartpole: tuple[Path, dict[str, Any]]) -> None:
    output, manifest = cartpole
    page = (output / out.VIEWER_FILE).read_text()
    assert "<img" not in page and re.search(r"class=\"t m4[^\"]*\" title=", page)
    assert not re.search(r"class=\"t m2[^\"]*\" title=", page)  # no image token
    assert "not decoded" not in page and re.search(r"<b>action</b> \[-?[0-9.]+", page)


def _source_frame(episode_id: str, timestep: int) -> np.ndarray:
    plan = plan_work("atari", data_dir=SAMPLES_DATA_DIR, tasks=("Pong*",))
    for item in plan.work_items:
        for episode in read_shard(item, reader=ShardReader(item.builder_dir), spec=plan.dataset):
            if episode.key.episode_id == episode_id:
                return as_frames(episode.steps["observation"])[timestep]
    raise AssertionError(f"episode {episode_id} not in the samples")


def test_a_frame_in_the_screenshot_is_the_source_frame(
    pong: tuple[Path, dict[str, Any]], tmp_path: Path
) -> None:
    output, manifest = pong
    pixels = screenshot(output / out.VIEWER_FILE, tmp_path, width=1200, height=1400)
    border = np.all(np.abs(pixels - np.array([int(FRAME_BORDER[i:i + 2], 16) for i in (1, 3, 5)])) <= 2, axis=-1)
    ys, xs = np.nonzero(border)
    assert ys.size, "no frame drawn"
    top = int(ys.min())
    left = int(xs[ys == top].min())  # the first frame's top-left corner
    row = task_rows(str(output), manifest)[("atari", "rlu_atari/Pong_run_1")][0]
    timestep = min(t for t in row[out.TIMESTEP] if t != out.NO_TIMESTEP)
    source = _source_frame(row[out.EPISODE_ID], timestep)[..., 0]
    h, w = source.shape
    inner = pixels[top + FRAME_BORDER_PX: top + FRAME_BORDER_PX + h * FRAME_SCALE,
                   left + FRAME_BORDER_PX: left + FRAME_BORDER_PX + w * FRAME_SCALE]
    shown = inner[::FRAME_SCALE, ::FRAME_SCALE]
    assert shown.shape == (h, w, 3)
    assert np.abs(shown - source[..., None]).max() <= 1  # grey levels as stored, scaled without smoothing
    assert np.array_equal(inner[1::FRAME_SCALE, 1::FRAME_SCALE], shown)  # pixelated: each pixel a 2x2 block
