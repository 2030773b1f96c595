"""Record the bundled sample datasets from real simulators, in the exact TFDS on-disk formats.

    python samples/make_samples.py --out samples/data [--only atari,control_suite,...] [--seed 0]

Needs the `samples` extra (ale-py, dm-control, mujoco, metaworld, minigrid) installed in a
separate venv: `pip install -e '.[samples]'`. Reading the result needs only TFDS.

Each rlu_* dataset is written by a subclass of its public TFDS builder whose only change is
where examples come from (a simulator instead of the RL Unplugged GCS files), so features,
version, file names and dataset_info are those the public builder reads; the episodes come
from the recorders in `samples/recorders.py`. `gato_metaworld` and `gato_babyai` are
written by this project's builders (`samples/tfds_builders.py`).

Determinism: every random choice comes from `stable_hash(seed, task, episode, ...)`; the
same seed gives the same episodes and, with the same package versions, the same files.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

# Run from a checkout without installing: the project's packages live one level up.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow_datasets as tfds  # noqa: E402

from samples import tfds_builders as gato  # noqa: E402
from samples.cli import parse_sample_args  # noqa: E402
from samples.recorders import (  # noqa: E402
    ATARI_STICKY_ACTIONS,
    record_atari_episode,
    record_control_episode,
    record_dmlab_episode,
)

Example = tuple[int, dict[str, Any]]

# --- what is recorded (names, sizes; how an episode is played is in samples/recorders.py) ---
ATARI_GAMES: tuple[tuple[str, str, int], ...] = (("Pong", "pong", 2), ("Breakout", "breakout", 1))  # (config game, ROM, TFDS shards)
ATARI_RUN = 1
ATARI_EPISODES = 12

CONTROL_TASKS: tuple[tuple[str, str], ...] = (("cartpole", "swingup"), ("walker", "walk"))
CONTROL_EPISODES = 8

METAWORLD_TASKS: tuple[str, ...] = ("reach-v3", "push-v3", "drawer-open-v3")
METAWORLD_EPISODES = 10
BABYAI_LEVELS: tuple[str, ...] = ("GoToRedBall", "GoToLocal", "PickupLoc")
BABYAI_EPISODES = 12

DMLAB_DATASETS: tuple[str, ...] = ("rlu_dmlab_explore_object_rewards_few", "rlu_dmlab_seekavoid_arena01")
DMLAB_CONFIG = "training_0"
DMLAB_EPISODES = 10
SYNTHETIC_NOTE = (
    "\n\nSYNTHETIC SAMPLE: DeepMind Lab has no installable simulator. These episodes are "
    "rendered by gato-data's samples/make_samples.py (coloured objects in a ring-shaped "
    "room seen from the agent's yaw, a scripted epsilon-greedy agent), in exactly the "
    "public features; they are not DeepMind Lab observations."
)
RECORDED_NOTE = "\n\nSAMPLE: recorded by gato-data's samples/make_samples.py from {simulator}, not the RL Unplugged files."


# ---------------------------------------------------------------- writing TFDS datasets


def _fresh(builder: tfds.core.DatasetBuilder) -> None:
    """Remove an earlier recording so download_and_prepare writes anew."""
    shutil.rmtree(builder.data_dir, ignore_errors=True)


def _prepare(builder: tfds.core.DatasetBuilder, num_shards: int) -> None:
    _fresh(builder)
    builder.download_and_prepare(
        download_config=tfds.download.DownloadConfig(
            num_shards=num_shards, compute_stats=tfds.download.ComputeStatsMode.SKIP
        )
    )
    print(f"wrote {builder.data_dir}: {builder.info.splits['train'].shard_lengths} episodes per shard")


def write_rlu(
    public_name: str,
    config: str,
    examples: Callable[[], Iterator[Example]],
    *,
    out: str,
    note: str,
    num_shards: int = 1,
    public_module: bool = False,
) -> None:
    """Write `public_name/config` with the public builder's features from `examples`.

    `public_module`: dataset_info.json names the public builder's module (as the public
    builder writes it) instead of this script's, which differs by how it is run.
    """
    public_cls = tfds.builder_cls(public_name)

    class Recorded(public_cls, skip_registration=True):  # type: ignore[misc, valid-type]
        name = public_name
        if public_module:
            __module__ = public_cls.__module__

        def get_description(self) -> str:
            return super().get_description() + note

        def _info(self) -> tfds.core.DatasetInfo:
            # Builders that pass their description to DatasetInfo (coco_captions) skip
            # get_description: add the note there too.
            info = super()._info()
            if not info.description.endswith(note):
                info.as_proto.description += note
            return info

        def _split_generators(self, dl_manager: Any) -> dict[str, Any]:
            del dl_manager
            return {"train": examples()}

    _prepare(Recorded(config=config, data_dir=out), num_shards)


# ---------------------------------------------------------------- DM Control


def make_control_suite(out: str, seed: int) -> None:
    for domain, task in CONTROL_TASKS:
        def examples(domain: str = domain, task: str = task) -> Iterator[Example]:
            for episode in range(CONTROL_EPISODES):
                yield episode, record_control_episode(domain, task, episode, seed=seed)

        note = RECORDED_NOTE.format(simulator="dm_control 1.0.28 (MuJoCo 3.3.0)")
        write_rlu("rlu_control_suite", f"{domain}_{task}", examples, out=out, note=note)


# ---------------------------------------------------------------- Meta-World, BabyAI


def _make_gato(builder_cls: type, tasks: tuple[str, ...], episodes: int, out: str, seed: int) -> None:
    for task in tasks:
        config = gato.GatoTaskConfig(name=task, num_episodes=episodes, seed=seed)

        class Configured(builder_cls, skip_registration=True):  # type: ignore[misc, valid-type]
            # TFDS refuses a custom config named like a registered one: replace the list.
            name = builder_cls.name
            BUILDER_CONFIGS = [config]

        _prepare(Configured(config=task, data_dir=out), 1)


def make_metaworld(out: str, seed: int) -> None:
    _make_gato(gato.GatoMetaworld, METAWORLD_TASKS, METAWORLD_EPISODES, out, seed)


def make_babyai(out: str, seed: int) -> None:
    _make_gato(gato.GatoBabyai, BABYAI_LEVELS, BABYAI_EPISODES, out, seed)


# ---------------------------------------------------------------- DM Lab (synthetic)


def make_dmlab(out: str, seed: int) -> None:
    for dataset in DMLAB_DATASETS:
        def examples(dataset: str = dataset) -> Iterator[Example]:
            for episode in range(DMLAB_EPISODES):
                yield episode, record_dmlab_episode(dataset, episode, seed=seed)

        write_rlu(dataset, DMLAB_CONFIG, examples, out=out, note=SYNTHETIC_NOTE)


# ---------------------------------------------------------------- Atari


def make_atari(out: str, seed: int) -> None:
    for game, rom, shards in ATARI_GAMES:
        def examples(game: str = game, rom: str = rom) -> Iterator[Example]:
            for episode in range(ATARI_EPISODES):
                yield episode, record_atari_episode(game, rom, episode, seed=seed)

        note = RECORDED_NOTE.format(simulator=f"ale-py (sticky actions p={ATARI_STICKY_ACTIONS})")
        write_rlu("rlu_atari", f"{game}_run_{ATARI_RUN}", examples, out=out, note=note, num_shards=shards)


MAKERS: dict[str, Callable[[str, int], None]] = {
    "control_suite": make_control_suite,
    "metaworld": make_metaworld,
    "babyai": make_babyai,
    "dmlab": make_dmlab,
    "atari": make_atari,
}


def main(argv: list[str] | None = None) -> None:
    out, chosen, seed = parse_sample_args(
        argv, description=__doc__.split("\n\n")[0], makers=list(MAKERS),
        default_out=str(Path(__file__).resolve().parent / "data"),
    )
    for name in chosen:
        MAKERS[name](out, seed)
    remove_recording_leftovers(Path(out))


def remove_recording_leftovers(out: Path) -> None:
    """Keep only what readers need: dataset_info.json, features.json and the shards.

    TFDS leaves an empty download cache and, per dataset, `.config/metadata.json` naming
    the recording subclass's only config as the default (misleading for the real builder).
    """
    shutil.rmtree(out / "downloads", ignore_errors=True)
    for leftover in out.glob("*/.config"):
        shutil.rmtree(leftover)
    for leftover in out.glob("*/*/*/metadata.json"):
        leftover.unlink()


if __name__ == "__main__":
    main()
