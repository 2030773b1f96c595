"""Toy sequenced episodes and the Parquet shards they write, shared by the shard writer,
finalization and Beam write-stage tests."""

from __future__ import annotations

from formats.output_dir import finalize_shards
from formats.parquet_shards import ShardWriter, WriteOptions, sequence_record_batch, sequence_schema
from schemas.fields import FieldSpec
from schemas.output import SEQUENCES_DIR
from schemas.vocab import GATO, Encoding, Modality
from tests.sequence_fixtures import make_episode
from transforms.episode import EpisodeKey
from transforms.prompts import PromptPool, prompt_candidate, prompt_windows, slice_timesteps
from transforms.sequence import SequenceBatch, SequenceConfig, sequence_episode

L = 32
FIELDS = {"toy": {"observation/x": FieldSpec(Modality.CONTINUOUS, Encoding.LINEAR),
                  "action": FieldSpec(Modality.DISCRETE)}}
SCHEMA = sequence_schema(layout=GATO, fields=FIELDS, sequence_length=L)


def toy_pool() -> PromptPool:
    ep = make_episode([2, 1, 3] * 4, patches=1, seed=77).episode
    windows = prompt_windows(ep.num_timesteps, lambda a, b: slice_timesteps(ep, a, b), budget=L // 4,
                             seed=0, task="toy/a", episode_id="demo")
    return PromptPool().merged([prompt_candidate("demo", 9.0, windows, seed=0, task="toy/a")])


def toy_episodes(task: str, work_item: int, count: int) -> list[tuple[EpisodeKey, SequenceBatch]]:
    """`count` sequenced episodes of one work item; episode i has id `<work_item>-<i>`."""
    config = SequenceConfig(sequence_length=L, prompt_fraction=0.3, seed=5)
    pool = toy_pool()
    out = []
    for i in range(count):
        episode_id = f"{work_item}-{i}"
        built = make_episode([1 + (i + t) % 5 for t in range(5 + 3 * i)], patches=1 + i % 2, seed=i)
        key = EpisodeKey("toy", task, episode_id, (work_item, i), f"file-{work_item}", i, work_item)
        out.append((key, sequence_episode(built.episode, episode_id=episode_id, task=task,
                                          config=config, prompts=pool.candidates)))
    return out


def write_stream(options: WriteOptions, task: str, work_item: int, count: int) -> list:
    """ShardEntries of one (dataset, task, work item) stream of `count` episodes."""
    writer = ShardWriter(kind=SEQUENCES_DIR, dataset="toy", task=task, work_item=work_item,
                         schema=SCHEMA, options=options, attempt=f"attempt{work_item}")
    entries = []
    for key, batch in toy_episodes(task, work_item, count):
        entries += writer.write(sequence_record_batch(key, batch, SCHEMA))
    return entries + writer.close()


def write_direct(out: str, rows_per_shard: int, row_group_rows: int) -> list[dict]:
    """Manifest entries of work item 7 (three episodes of task toy/a), written and finalized."""
    options = WriteOptions(out, rows_per_shard=rows_per_shard, row_group_rows=row_group_rows)
    return finalize_shards(out, write_stream(options, "toy/a", 7, 3), kind=SEQUENCES_DIR)
