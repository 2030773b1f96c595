"""audit/viewer.py: `viewer.html` shows a few sequences per task as the model sees them.

On the job's own outputs: Atari (frames reassembled from patches, checked pixel for pixel
in a headless Chromium screenshot against the source episode's frame) and the control
suite (no image at all: numbers only). The page is the same bytes when rendered again.
"""

from __future__ import annotations

import base64
import io
import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from audit.viewer import FRAME_BORDER, FRAME_BORDER_PX, FRAME_SCALE, render_viewer, task_rows
from formats.tfds_shards import ShardReader, read_shard
from pipeline.job import run_job
from planning.options import SAMPLES_DATA_DIR, JobOptions
from planning.plan import plan_work
from schemas import output as out
from schemas.vl import KIND_CAPTION
from schemas.vocab import GATO
from tests.audit.chromium import screenshot
from tests.transforms.vl_fixtures import SIZE, caption_record, image_pixels
from tests.vl_row_fixtures import row_dict
from transforms.images import as_frames
from transforms.text import BUNDLED_MODEL, SentencePieceTokenizer
from transforms.vl_sequence import pack_pairs
from transforms.vl_units import UnitConfig, tokenize_record


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


# --- Vision-language rows: units decoded with `transforms.vl_decode`, not as episodes. ---


def _vl_page(*captions: bytes, text: SentencePieceTokenizer | None) -> str:
    """The viewer of one caption record (a 32x32 image, S = 32), tokenized and packed as the job does."""
    tokenizer = SentencePieceTokenizer.from_path(BUNDLED_MODEL)
    config = UnitConfig(eos_id=tokenizer.eos_id, sequence_length=64, image_size=SIZE)
    units = tokenize_record(caption_record(*captions, key="img7"), tokenizer, config).units
    batch = pack_pairs(units, seed=0, dataset="d", sequence_length=64, layout=GATO)
    manifest = {out.M_VOCABULARY: GATO.to_metadata(),
                out.M_VISION_LANGUAGE: {"d": {out.VL_KIND: KIND_CAPTION, out.VL_IMAGE_SIZE: SIZE}}}
    rows = {("d", "d"): [row_dict(batch, r) for r in range(batch.tokens.shape[0])]}
    return render_viewer(manifest, rows, text=text)


def _frames(page: str) -> list[np.ndarray]:
    found = re.findall(r'<img class="frame" width="(\d+)" height="(\d+)"[^>]* src="data:image/png;base64,([^"]+)"', page)
    return [np.asarray(Image.open(io.BytesIO(base64.b64decode(data)))) for _, _, data in found]


def test_a_vision_language_row_shows_each_image_with_its_caption() -> None:
    tokenizer = SentencePieceTokenizer.from_path(BUNDLED_MODEL)
    page = _vl_page(b"a red ball", b"two cubes", text=tokenizer)
    assert page == _vl_page(b"a red ball", b"two cubes", text=tokenizer)  # same bytes again
    frames = _frames(page)
    assert len(frames) == 2 and all(np.array_equal(f, image_pixels()) for f in frames)  # pixel for pixel
    assert page.count(f'<img class="frame" width="{SIZE}" height="{SIZE}"') == 2  # as stored, 1x
    assert "row 0 of img7, " in page and ", 2 unit(s)</h3>" in page
    # Each unit (in packing order): its source key, then its image, then its caption as the target with E.
    for key, caption in (("img7#0", "a red ball"), ("img7#1", "two cubes")):
        at = page.index(f": {key}</div>")
        end = page.find('<div class="when">', at) % (len(page) + 1)  # the next unit, or the end of the page
        shown = page.index(f"<b>target, loss</b> &#x27;{caption}&#x27; [E]</div>", at)
        assert at < page.index('<img class="frame"', at) < shown < end
    assert "not decoded" not in page and "timestep 0</div>" not in page  # not decoded as an episode
    assert "units decoded" in page and FRAME_BORDER in page


def test_without_a_text_model_a_vision_language_row_shows_ids() -> None:
    page = _vl_page(b"a red ball", text=None)
    ids = SentencePieceTokenizer.from_path(BUNDLED_MODEL).encode_batch(["a red ball"])[0].tolist()
    assert "no text model given: text runs as ids" in page and len(_frames(page)) == 1
    assert f"<b>target, loss</b> ids {' '.join(map(str, ids))} 2</div>" in page  # E not recognized: an id


def test_a_vision_language_row_that_breaks_the_layout_says_why() -> None:
    manifest = {out.M_VOCABULARY: GATO.to_metadata(),
                out.M_VISION_LANGUAGE: {"d": {out.VL_KIND: KIND_CAPTION, out.VL_IMAGE_SIZE: 192}}}
    tokenizer = SentencePieceTokenizer.from_path(BUNDLED_MODEL)
    config = UnitConfig(eos_id=tokenizer.eos_id, sequence_length=64, image_size=SIZE)
    units = tokenize_record(caption_record(b"a red ball", key="img7"), tokenizer, config).units
    row = row_dict(pack_pairs(units, seed=0, dataset="d", sequence_length=64, layout=GATO), 0)
    page = render_viewer(manifest, {("d", "d"): [row]}, text=tokenizer)
    assert "not decoded: d/d row 0 of &#x27;img7&#x27;: the image at token 0 has 4 patches, expected 144" in page
