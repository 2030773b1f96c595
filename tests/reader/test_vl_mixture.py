"""One GatoReader over an agent output and two vision-language outputs (issue 15, "Done when").

The outputs are written by the real job on the bundled samples (babyai, coco_captions, text),
each by its own run, so the mixture comes from the manifests alone: the Table 1 weights
babyai 0.0906, coco_captions 0.0067 and text 0.067, renormalized over the three outputs.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

import beam_runner
from reader.batch import SOURCE
from reader.stream import Batch, GatoReader, ReaderOptions
from schemas.output import MANIFEST_FILE, M_SAMPLING_WEIGHTS

DATASETS = ("babyai", "coco_captions", "text")
TABLE1 = {"babyai": 0.0906, "coco_captions": 0.0067, "text": 0.067}
BATCH, DRAWS = 100, 4000


@pytest.fixture(scope="module")
def outputs(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    root = tmp_path_factory.mktemp("mix")
    for name in DATASETS:
        code = beam_runner.main([f"--dataset={name}", f"--output_dir={root / name}", "--log_level=WARNING"])
        assert code == 0, name
    return [str(root / name) for name in DATASETS]


def take(stream: Iterator[Batch], n: int) -> list[Batch]:
    return [next(stream) for _ in range(n)]


def test_the_manifests_carry_table1_weights(outputs: list[str]) -> None:
    for name, out in zip(DATASETS, outputs):
        weights = json.loads((Path(out) / MANIFEST_FILE).read_text())[M_SAMPLING_WEIGHTS]
        assert weights[name]["weight"] == TABLE1[name]


def test_source_shares_match_the_renormalized_table1_weights(outputs: list[str]) -> None:
    reader = GatoReader(outputs, ReaderOptions(seed=7, prefetch=0))
    total = sum(TABLE1.values())
    expected = {name: w / total for name, w in TABLE1.items()}  # babyai .551, coco .041, text .408
    by_dataset = {name: 0.0 for name in DATASETS}
    for source, weight in zip(reader.sources, reader.weights):
        by_dataset[source.dataset] += float(weight)
    assert by_dataset == pytest.approx(expected, abs=1e-12)

    sources = np.concatenate([b[SOURCE] for b in take(iter(reader.batches(BATCH)), DRAWS // BATCH)])
    datasets = np.asarray([reader.sources[s].dataset for s in sources])
    for name, p in expected.items():
        share = float(np.mean(datasets == name))
        # Draws are independent given the weights (keyed uniforms, REPEAT policy): the count is
        # binomial; 4 standard deviations (at most 0.031 for p = 0.55, 0.013 for coco's 0.041)
        # fail by chance about once in 16000 runs, yet would catch equal weights (1/3 each).
        assert abs(share - p) <= 4 * np.sqrt(p * (1 - p) / DRAWS), (name, share, p)


def test_a_resumed_stream_gives_the_uninterrupted_batches(outputs: list[str]) -> None:
    options = ReaderOptions(seed=3, prefetch=0, shuffle_buffer=8)
    uninterrupted = take(GatoReader(outputs, options).batches(16), 12)
    first = GatoReader(outputs, options).batches(16)
    take(first, 5)
    state = json.loads(json.dumps(first.state()))  # as a trainer saves it
    resumed = take(GatoReader(outputs, options).batches(16, state=state), 7)
    seen = {int(s) for b in uninterrupted for s in b[SOURCE]}
    assert seen == set(range(5))  # every source, VL ones included, is in the compared batches
    for want, got in zip(uninterrupted[5:], resumed):
        assert sorted(got) == sorted(want)
        for key in want:
            assert np.array_equal(got[key], want[key]), key
