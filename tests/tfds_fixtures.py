"""Write small RLDS datasets in the real TFDS on-disk format, for tests.

`write_rlds_dataset` defines a `tfds.core.GeneratorBasedBuilder` on the fly with the given
features and examples and runs `download_and_prepare` into `data_dir`, so the result is
exactly what TFDS writes: `<data_dir>/<name>/<config>/<version>/` with dataset_info.json,
features.json and `<name>-train.tfrecord-NNNNN-of-NNNNN` shards.

Helpers build the feature layouts the project knows (`metaworld_features`,
`babyai_features`, ...) and episodes for them, and damage shard files
(`truncate_file`, `garble_file`, `rewrite_example`, `frame_with_length`) and metadata
(`declare_dtype`) for bad-input tests.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import tensorflow_datasets as tfds

# Shards are tiny in tests; without a low minimum TFDS merges them into one.
_MIN_SHARD_BYTES = 1

Episode = Mapping[str, Any]  # episode-level fields plus "steps": list of step dicts


def write_rlds_dataset(
    data_dir: str | os.PathLike[str],
    name: str,
    config: str,
    features: tfds.features.FeaturesDict | Mapping[str, Any],
    episodes: Sequence[Episode],
    *,
    num_shards: int = 1,
    version: str = "1.0.0",
) -> Path:
    """Write `episodes` as the `train` split of `name/config` and return the builder dir.

    `features` is a TFDS FeaturesDict (or a dict TFDS accepts) with a `steps` Dataset
    feature; each episode is a dict with the episode-level fields and `steps`, a list of
    step dicts (or a dict of per-step arrays). Several configs of one dataset are written by
    calling this once per config with the same `data_dir` and `name`. Records are in
    generation order (TFDS shuffles by key; keys are zero-padded indices, so `disable_shuffling`
    keeps the given order).
    """
    feature_dict = (
        features
        if isinstance(features, tfds.features.FeaturesDict)
        else tfds.features.FeaturesDict(dict(features))
    )
    examples = list(episodes)
    if not 1 <= num_shards <= len(examples):
        raise ValueError(
            f"num_shards={num_shards} with {len(examples)} episodes: TFDS needs 1 <= shards <= episodes"
        )

    class _Builder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
        VERSION = tfds.core.Version(version)
        BUILDER_CONFIGS = [tfds.core.BuilderConfig(name=config)]

        def _info(self) -> tfds.core.DatasetInfo:
            return self.dataset_info_from_configs(
                features=feature_dict, disable_shuffling=True
            )

        def _split_generators(self, dl_manager: Any) -> dict[str, Any]:
            return {"train": self._generate_examples()}

        def _generate_examples(self) -> Any:
            for index, episode in enumerate(examples):
                yield f"{index:08d}", dict(episode)

    _Builder.name = name
    builder = _Builder(data_dir=os.fspath(data_dir), config=config)
    builder.download_and_prepare(
        download_config=tfds.download.DownloadConfig(
            num_shards=num_shards, min_shard_size=_MIN_SHARD_BYTES
        )
    )
    return Path(builder.data_dir)


def shard_files(builder_dir: str | os.PathLike[str]) -> list[Path]:
    """The train shard files of a builder dir, in shard order."""
    return sorted(Path(builder_dir).glob("*-train.tfrecord-*-of-*"))


def truncate_file(path: str | os.PathLike[str], keep_bytes: int) -> None:
    """Cut a file to its first `keep_bytes` bytes (a half-written or truncated shard)."""
    with open(path, "r+b") as f:
        f.truncate(keep_bytes)


def garble_file(path: str | os.PathLike[str], at: int, length: int = 16) -> None:
    """Flip the bits of `length` bytes from offset `at` (a corrupt record: CRC fails)."""
    with open(path, "r+b") as f:
        f.seek(at)
        data = f.read(length)
        f.seek(at)
        f.write(bytes(b ^ 0xFF for b in data))


def record_offsets(path: str | os.PathLike[str]) -> list[int]:
    """Byte offset of each TFRecord in a file (framing: u64 length, u32 crc, data, u32 crc)."""
    offsets = []
    data = Path(path).read_bytes()
    pos = 0
    while pos < len(data):
        offsets.append(pos)
        length = int.from_bytes(data[pos : pos + 8], "little")
        pos += 8 + 4 + length + 4
    return offsets


def rewrite_example(path: str | os.PathLike[str], record: int, edit: Any) -> None:
    """Apply `edit(tf.train.Example)` to one record of a shard, re-framed with valid checksums
    (a foreign writer's record: TFDS would refuse to write it)."""
    from formats.tfrecord import frame_record, iter_records
    from tensorflow_datasets.proto import tf_example_pb2

    with open(path, "rb") as f:
        records = list(iter_records(f))
    example = tf_example_pb2.Example.FromString(records[record])
    edit(example)
    records[record] = example.SerializeToString()
    Path(path).write_bytes(b"".join(frame_record(r) for r in records))


def frame_with_length(path: str | os.PathLike[str], record: int, length: int) -> None:
    """Give one record a crafted `length` with a valid length checksum (its bytes unchanged)."""
    import struct

    from formats.tfrecord import masked_crc32c

    at = record_offsets(path)[record]
    header = struct.pack("<Q", length)
    with open(path, "r+b") as f:
        f.seek(at)
        f.write(header + struct.pack("<I", masked_crc32c(header)))


def declare_dtype(builder_dir: str | os.PathLike[str], field: str, dtype: str) -> None:
    """Edit features.json so that every tensor feature named `field` declares `dtype` (metadata
    that lies about what the records hold)."""
    import json

    path = Path(builder_dir) / "features.json"

    def edit(node: Any) -> None:
        if isinstance(node, dict):
            tensor = node.get(field, {}).get("tensor") if isinstance(node.get(field), dict) else None
            if tensor is not None:
                tensor["dtype"] = dtype
            for value in node.values():
                edit(value)
        elif isinstance(node, list):
            for value in node:
                edit(value)

    features = json.loads(path.read_text())
    edit(features)
    path.write_text(json.dumps(features))


# --- Feature layouts and episodes of the project's datasets. ---


def rlds_flags() -> dict[str, Any]:
    return {
        "reward": np.float32,
        "discount": np.float32,
        "is_first": np.bool_,
        "is_last": np.bool_,
        "is_terminal": np.bool_,
    }


def episode_features(
    step_features: Mapping[str, Any], **episode_fields: Any
) -> tfds.features.FeaturesDict:
    """An RLDS FeaturesDict: episode-level fields (default episode_id and episode_return)
    and `steps` holding `step_features` plus reward, discount and the flags."""
    fields = episode_fields or {"episode_id": np.int64, "episode_return": np.float32}
    return tfds.features.FeaturesDict(
        {**fields, "steps": tfds.features.Dataset({**step_features, **rlds_flags()})}
    )


def metaworld_features() -> tfds.features.FeaturesDict:
    """`gato_metaworld/<task>` v1.0.0 (the brief's layout)."""
    return episode_features(
        {
            "observation": {"state": tfds.features.Tensor(shape=(39,), dtype=np.float32)},
            "action": tfds.features.Tensor(shape=(4,), dtype=np.float32),
        }
    )


def babyai_features() -> tfds.features.FeaturesDict:
    """`gato_babyai/<level>` v1.0.0 (the brief's layout)."""
    return episode_features(
        {
            "observation": {
                "image": tfds.features.Tensor(shape=(7, 7, 3), dtype=np.uint8),
                "direction": np.int64,
                "mission": tfds.features.Text(),
            },
            "action": np.int64,
        }
    )


def flags(num_steps: int, *, is_last: bool = True) -> dict[str, np.ndarray]:
    """RLDS flags for `num_steps` steps: is_first at 0, is_last at the end (unless told not)."""
    first = np.zeros(num_steps, dtype=bool)
    first[0] = True
    last = np.zeros(num_steps, dtype=bool)
    last[-1] = is_last
    return {
        "is_first": first,
        "is_last": last,
        "is_terminal": last.copy(),
        "discount": np.ones(num_steps, dtype=np.float32),
    }


def metaworld_episode(
    episode_id: int, num_steps: int, *, seed: int = 0, is_last: bool = True
) -> dict[str, Any]:
    """A Meta-World-shaped episode with deterministic values; return = sum of rewards."""
    rng = np.random.default_rng([seed, episode_id])
    reward = rng.uniform(0, 1, num_steps).astype(np.float32)
    return {
        "episode_id": episode_id,
        "episode_return": np.float32(reward.sum()),
        "steps": {
            "observation": {
                "state": rng.normal(size=(num_steps, 39)).astype(np.float32)
            },
            "action": rng.uniform(-1, 1, (num_steps, 4)).astype(np.float32),
            "reward": reward,
            **flags(num_steps, is_last=is_last),
        },
    }


def babyai_episode(episode_id: int, num_steps: int, *, seed: int = 0) -> dict[str, Any]:
    rng = np.random.default_rng([seed, episode_id])
    reward = np.zeros(num_steps, dtype=np.float32)
    reward[-2 if num_steps > 1 else 0] = 0.5
    return {
        "episode_id": episode_id,
        "episode_return": np.float32(reward.sum()),
        "steps": {
            "observation": {
                "image": rng.integers(0, 11, (num_steps, 7, 7, 3), dtype=np.uint8),
                "direction": rng.integers(0, 4, num_steps),
                "mission": ["go to the red ball"] * num_steps,
            },
            "action": rng.integers(0, 7, num_steps),
            "reward": reward,
            **flags(num_steps),
        },
    }


def novel_features() -> tfds.features.FeaturesDict:
    """A layout no registry entry knows: nested observation dict with an image (not a
    multiple of 16), a text instruction and a float vector; a dict action; no episode_return."""
    return episode_features(
        {
            "observation": {
                "camera": {"rgb": tfds.features.Image(shape=(20, 24, 3))},
                "instruction": tfds.features.Text(),
                "joints": tfds.features.Tensor(shape=(5,), dtype=np.float32),
            },
            "action": {
                "arm": tfds.features.Tensor(shape=(3,), dtype=np.float32),
                "gripper": np.int64,
            },
        },
        episode_id=np.int64,
    )


def novel_episode(
    episode_id: int, num_steps: int, *, seed: int = 0, is_last: bool = True
) -> dict[str, Any]:
    rng = np.random.default_rng([seed, episode_id])
    return {
        "episode_id": episode_id,
        "steps": {
            "observation": {
                "camera": {"rgb": rng.integers(0, 256, (num_steps, 20, 24, 3), dtype=np.uint8)},
                "instruction": [f"stack block {episode_id}"] * num_steps,
                "joints": rng.normal(size=(num_steps, 5)).astype(np.float32),
            },
            "action": {
                "arm": rng.uniform(-1, 1, (num_steps, 3)).astype(np.float32),
                "gripper": rng.integers(0, 2, num_steps),
            },
            "reward": np.arange(num_steps, dtype=np.float32),
            **flags(num_steps, is_last=is_last),
        },
    }
