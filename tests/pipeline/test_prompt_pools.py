"""pipeline/prompt_pools.py: PromptPools / PromptPoolCombine keep the top K candidates per
task in any merge order, and pass 1's light pools (`Pass1`, decoding only the chosen
episodes) equal the pools built from every decoded, validated episode, also when the
best episode offers no window (the fallback to the rest of the task)."""

from __future__ import annotations

import dataclasses
import pickle
from pathlib import Path
from typing import Any

import apache_beam as beam
import numpy as np
import pytest
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to

from pipeline.passes import POOLS, JobParts, Pass1
from pipeline.prompt_pools import PromptCandidatesFn, PromptPoolCombine, PromptPools
from pipeline.read_episodes import ReadEpisodes
from pipeline.validate_episodes import ValidateEpisodes
from planning.options import JobOptions
from planning.plan import plan_work
from planning.text_model import DEFAULT_SENTENCEPIECE_MODEL
from planning.work import Plan
from tests import tfds_fixtures as fx
from tests.pipeline.pipeline_fixtures import RUNNER, toy_candidate
from transforms.prompts import PromptPool, top_candidates

LENGTHS = (3, 4, 4, 5, 6, 9, 7)  # ids 1 and 2 tie on return (reward 0..n-1 summed)
NAN_EPISODE = 5  # the best return, but its joints are NaN: its windows do not tokenize


def _summary(pool: PromptPool) -> tuple:
    """A comparable digest of a pool (its windows hold numpy arrays)."""
    return (pool.capacity, tuple(
        (c.episode_id, c.episode_return, c.rank, tuple((w.kind, w.start, w.tokens.tokens.tobytes()) for w in c.windows))
        for c in pool.candidates
    ))


def test_pool_combine_keeps_the_top_k_per_task() -> None:
    inputs = [toy_candidate(f"t/{'ab'[i % 2]}", f"e{i}", float(i % 9), i) for i in range(30)]
    expected = {
        task: PromptPool(top_candidates([c for t, c in inputs if t == task], 4), 4)
        for task in {t for t, _ in inputs}
    }
    with TestPipeline(runner=RUNNER) as p:
        pools = p | beam.Create(inputs) | PromptPools(capacity=4)
        summary = pools | beam.MapTuple(lambda task, pool: (task, _summary(pool)))
        assert_that(summary, equal_to([(t, _summary(pool)) for t, pool in expected.items()]))
    # Merging partial pools in any grouping gives the same pool.
    combine = PromptPoolCombine(4)
    parts = [combine.add_inputs(combine.create_accumulator(), [c for _, c in inputs[i::3]]) for i in range(3)]
    whole = combine.add_inputs(combine.create_accumulator(), [c for _, c in inputs])
    assert _summary(combine.merge_accumulators(parts)) == _summary(whole)
    assert len(whole.candidates) == 4
    assert [c.episode_return for c in whole.candidates] == [8.0, 8.0, 8.0, 7.0]


def _episode(i: int, n: int) -> dict[str, Any]:
    episode = fx.novel_episode(i, n)
    if i == NAN_EPISODE:
        episode["steps"]["observation"]["joints"][:] = np.nan
    return episode


@pytest.fixture(scope="module")
def plan(tmp_path_factory: pytest.TempPathFactory) -> Plan:
    root = tmp_path_factory.mktemp("prompt_pass")
    episodes = [_episode(i, n) for i, n in enumerate(LENGTHS)]
    fx.write_rlds_dataset(root, "my_robot", "stacking", fx.novel_features(), episodes, num_shards=3)
    return plan_work(f"rlds:{root}", data_dir="")


def _parts(plan: Plan, capacity: int, output_dir: Path) -> JobParts:
    options = JobOptions(
        dataset="rlds:prompt_pass", output_dir=str(output_dir), data_dir="",
        sentencepiece_model=DEFAULT_SENTENCEPIECE_MODEL, sequence_length=1024, prompt_fraction=0.25,
        prompt_tokens=512, seed=3, prompt_pool_size=capacity,
    )
    return JobParts(options=options, plan=plan)


def _canonical(value: Any) -> Any:
    """Pools as plain Python (numpy arrays as lists), so that equality is exact."""
    if dataclasses.is_dataclass(value):
        return (type(value).__name__, tuple((f.name, _canonical(getattr(value, f.name))) for f in dataclasses.fields(value)))
    if isinstance(value, np.ndarray):
        return (str(value.dtype), value.shape, value.tolist())
    if isinstance(value, (tuple, list)):
        return tuple(_canonical(v) for v in value)
    return value


def _save(pools: list[tuple[Any, PromptPool]], path: Path) -> None:
    path.write_bytes(pickle.dumps({task: _canonical(pool) for task, pool in pools}))


def _pools(plan: Plan, capacity: int, path: Path, *, old: bool) -> dict[Any, Any]:
    parts = _parts(plan, capacity, path.parent / "out")
    with TestPipeline(runner=RUNNER) as p:
        work = p | beam.Create(plan.work_items)
        if old:  # the pass 1 this replaces: every episode decoded, validated, windowed
            read = work | ReadEpisodes(parts.spec)
            valid = read.episodes | ValidateEpisodes()
            pools = (
                valid.valid
                | beam.ParDo(PromptCandidatesFn(parts.tokenizer, sequence=parts.sequencing, return_fn=parts.return_fn))
                | PromptPools(capacity)
            )
        else:  # the job's pass 1
            pools = (work | "Pass1" >> Pass1(parts))[POOLS]
        _ = pools | beam.combiners.ToList() | beam.Map(_save, path)
    return pickle.loads(path.read_bytes())


@pytest.mark.parametrize("capacity", [1, 2, 3, 16])
def test_pools_equal_the_full_decode_ones(plan: Plan, capacity: int, tmp_path: Path) -> None:
    new = _pools(plan, capacity, tmp_path / "new", old=False)
    assert new == _pools(plan, capacity, tmp_path / "old", old=True)
    (pool,) = new.values()
    ids = [dict(c[1])["episode_id"] for c in dict(pool[1])["candidates"]]
    # Episode 5 has the best return but no usable windows: the next ones by return take its place.
    by_return = [6, 4, 3, 1, 2, 0] if capacity < 16 else None
    assert str(NAN_EPISODE) not in ids
    if by_return is not None:
        assert sorted(ids, key=int) == sorted((str(i) for i in by_return[:capacity]), key=int)
    else:
        assert len(ids) == len(LENGTHS) - 1
