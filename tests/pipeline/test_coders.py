"""pipeline/coders.py: the job's array-heavy elements are pickled as Beam would pickle them,
and Beam sizes them from their arrays, never by pickling them."""

from __future__ import annotations

import pickle

import apache_beam as beam
import numpy as np
import pytest

from pipeline import coders
from pipeline.coders import EPISODE_TOKENS, SEQUENCED, ArraysCoder
from pipeline.tokenize_episodes import TokenizeEpisodes
from schemas.fields import continuous, discrete
from tests.pipeline.pipeline_fixtures import RUNNER, raw_episode
from transforms.steps import emitted_steps
from transforms.task_tokenizer import TaskTokenizer, TokenizerConfig

TASK = "gato_metaworld/reach-v3"  # raw_episode's task
CONFIG = TokenizerConfig(task_fields={TASK: {"observation/state": continuous("linear"), "action": discrete()}})


def _tokenized():
    raw = raw_episode(episode_id="1")
    return raw.key, TaskTokenizer(CONFIG)(raw.key, emitted_steps(raw))


def test_elements_round_trip_and_are_sized_without_pickling(monkeypatch: pytest.MonkeyPatch) -> None:
    key, episode = _tokenized()
    coder = beam.coders.registry.get_coder(EPISODE_TOKENS)
    decoded_key, decoded = coder.decode(coder.encode((key, episode)))
    assert decoded_key == key and np.array_equal(decoded.tokens, episode.tokens)
    monkeypatch.setattr(ArraysCoder, "encode", lambda self, value: pytest.fail("sized by pickling"))
    size = coder.get_impl().estimate_size((key, episode))
    arrays = sum(v.nbytes for v in vars(episode).values() if isinstance(v, np.ndarray))
    assert coders.nbytes(episode) == arrays + 512 and arrays < size < arrays + 2048


def test_the_array_heavy_outputs_have_the_coder() -> None:
    """Beam picks coders from a PCollection's type: the Tokenize stage's main output and
    the Sequence stage's output type carry `ArraysCoder` for their arrays."""
    for hint in (EPISODE_TOKENS, SEQUENCED):
        assert any(isinstance(c, ArraysCoder) for c in beam.coders.registry.get_coder(hint)._coders)
    pipeline = beam.Pipeline(runner=RUNNER)  # only its graph is under test: never run
    tokenized = pipeline | beam.Create([raw_episode(episode_id="1")]) | TokenizeEpisodes(
        CONFIG, return_fn=lambda raw: 0.0
    )
    assert tokenized.tokenized.element_type == EPISODE_TOKENS


def test_the_coder_is_pickle() -> None:
    key, episode = _tokenized()
    assert ArraysCoder().encode(episode) == pickle.dumps(episode, protocol=pickle.HIGHEST_PROTOCOL)
    assert ArraysCoder() == ArraysCoder() and hash(ArraysCoder()) == hash(ArraysCoder())
