"""TFDS builders of the two RLDS datasets this project defines: `gato_metaworld`, `gato_babyai`.

After `import samples.tfds_builders`, `tfds.builder('gato_metaworld/reach-v3',
data_dir='samples/data')` reads the bundled samples. `download_and_prepare()` records new
episodes from the simulators (the `samples` extra: metaworld, mujoco, minigrid); without
them it fails with an error naming that extra. Reading never needs the simulators.

Layout (version 1.0.0, one config per task, one split `train`): episode-level
`episode_id` (collection order) and `episode_return` (sum of step rewards); RLDS steps
with `observation`, `action`, `reward`, `discount`, `is_first`, `is_last`, `is_terminal`.

RLDS invariants of every recorded episode: step t holds observation o_t, the action a_t
taken there and the reward r_t that followed it; the final step (`is_last`) holds the
final observation with a zero action and reward 0; `is_terminal` is set on it only when
the environment ended the episode (success), never on a truncation.

Randomness (task variation, action noise, bot mistakes) comes from
`stable_hash(seed, task, episode_index, ...)`, so a config, seed and episode count always
give the same episodes.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any

import numpy as np
import tensorflow_datasets as tfds

from schemas.fields import (
    ACTION,
    DISCOUNT,
    EPISODE_ID,
    EPISODE_RETURN,
    IS_FIRST,
    IS_LAST,
    IS_TERMINAL,
    OBSERVATION,
    REWARD,
    STEPS,
)
from transforms.hashing import stable_hash

GATO_METAWORLD = "gato_metaworld"
GATO_BABYAI = "gato_babyai"
GATO_VERSION = "1.0.0"
SAMPLES_EXTRA = "samples"

METAWORLD_STATE = "state"
METAWORLD_STATE_SIZE = 39
METAWORLD_ACTION_SIZE = 4
METAWORLD_MAX_STEPS = 200  # truncation: metaworld's own limit (500) would triple the samples

BABYAI_IMAGE = "image"
BABYAI_DIRECTION = "direction"
BABYAI_MISSION = "mission"
BABYAI_NUM_ACTIONS = 7  # minigrid: left, right, forward, pickup, drop, toggle, done

# The MT50 tasks that metaworld 3.1.1 ships a scripted expert for (`ENV_POLICY_MAP`).
METAWORLD_TASKS: tuple[str, ...] = (
    "assembly-v3", "basketball-v3", "bin-picking-v3", "box-close-v3",
    "button-press-topdown-v3", "button-press-topdown-wall-v3", "button-press-v3",
    "button-press-wall-v3", "coffee-button-v3", "coffee-pull-v3", "coffee-push-v3",
    "dial-turn-v3", "disassemble-v3", "door-close-v3", "door-lock-v3", "door-open-v3",
    "door-unlock-v3", "drawer-close-v3", "drawer-open-v3", "faucet-close-v3",
    "faucet-open-v3", "hammer-v3", "hand-insert-v3", "handle-press-side-v3",
    "handle-press-v3", "handle-pull-side-v3", "handle-pull-v3", "lever-pull-v3",
    "peg-insert-side-v3", "peg-unplug-side-v3", "pick-out-of-hole-v3", "pick-place-v3",
    "pick-place-wall-v3", "plate-slide-back-side-v3", "plate-slide-back-v3",
    "plate-slide-side-v3", "plate-slide-v3", "push-back-v3", "push-v3", "push-wall-v3",
    "reach-v3", "reach-wall-v3", "shelf-place-v3", "soccer-v3", "stick-pull-v3",
    "stick-push-v3", "sweep-into-v3", "sweep-v3", "window-close-v3", "window-open-v3",
)  # fmt: skip

# BabyAI levels (minigrid `BabyAI-<level>-v0`) that minigrid's bot solves.
BABYAI_LEVELS: tuple[str, ...] = (
    "GoToRedBall", "GoToRedBallGrey", "GoToObj", "GoToLocal", "GoTo", "PickupLoc",
    "PutNextLocal", "Open", "Unlock", "Pickup", "Synth", "BossLevel",
)  # fmt: skip

# Per-episode skill schedules, cycled over episode indices: returns must vary so the
# filter (keep >= 80% of the expert return) has something to drop.
METAWORLD_NOISE_STD: tuple[float, ...] = (0.0, 0.1, 0.3, 1.0, 2.0, 4.0)
BABYAI_EPSILON: tuple[float, ...] = (0.0, 0.1, 0.25, 0.5, 0.75, 1.0)


@dataclasses.dataclass(eq=False)
class GatoTaskConfig(tfds.core.BuilderConfig):
    """One task; `num_episodes` and `seed` fix what `download_and_prepare` records."""

    num_episodes: int = 10
    seed: int = 0


def _missing_simulator(package: str, error: ImportError) -> ImportError:
    return ImportError(
        f"recording this dataset needs the simulator package {package!r} ({error}); "
        f"install the project's {SAMPLES_EXTRA!r} extra: pip install -e '.[{SAMPLES_EXTRA}]'. "
        "Reading already recorded data (e.g. samples/data) needs no simulator."
    )


def _rng(seed: int, task: str, episode: int, purpose: str) -> np.random.Generator:
    """A numpy generator seeded by a stable hash: no global RNG state."""
    return np.random.default_rng(stable_hash(seed, task, episode, purpose))


def _schedule(values: tuple[float, ...], episode: int) -> float:
    return values[episode % len(values)]


def rlds_episode(
    observations: list[Any],
    actions: list[Any],
    rewards: list[float],
    *,
    terminal: bool,
    final_action: Any,
) -> dict[str, Any]:
    """RLDS steps from T+1 observations, T actions and T rewards (see module invariants).

    `observations[t]` may be an array or a dict of arrays; `final_action` is the dummy
    action stored on the `is_last` step.
    """
    num_actions = len(actions)
    if len(observations) != num_actions + 1 or len(rewards) != num_actions:
        raise ValueError(
            f"an episode needs T+1 observations for T actions and T rewards; got "
            f"{len(observations)} observations, {num_actions} actions, {len(rewards)} rewards"
        )
    num_steps = num_actions + 1
    is_last = np.zeros(num_steps, dtype=bool)
    is_last[-1] = True
    is_first = np.zeros(num_steps, dtype=bool)
    is_first[0] = True
    discount = np.ones(num_steps, dtype=np.float32)
    if terminal:
        discount[-1] = 0.0
    if isinstance(observations[0], dict):
        observation: Any = {k: np.stack([o[k] for o in observations]) for k in observations[0]}
    else:
        observation = np.stack(observations)
    return {
        OBSERVATION: observation,
        ACTION: np.stack([*actions, final_action]),
        REWARD: np.asarray([*rewards, 0.0], dtype=np.float32),
        DISCOUNT: discount,
        IS_FIRST: is_first,
        IS_LAST: is_last,
        IS_TERMINAL: is_last & terminal,
    }


def _episode_example(episode: int, steps: dict[str, Any]) -> dict[str, Any]:
    return {
        EPISODE_ID: episode,
        EPISODE_RETURN: np.float32(np.sum(steps[REWARD], dtype=np.float64)),
        STEPS: steps,
    }


def record_metaworld_episode(
    task: str, episode: int, *, seed: int = 0, max_steps: int = METAWORLD_MAX_STEPS
) -> dict[str, Any]:
    """One `gato_metaworld` episode: the scripted expert of `task` plus Gaussian action noise.

    The noise std is `METAWORLD_NOISE_STD` cycled over episodes; the task variation (goal
    and object positions) is one of metaworld's 50 train tasks, chosen by stable hash.
    """
    try:
        import metaworld
        from metaworld.policies import ENV_POLICY_MAP
    except ImportError as error:
        raise _missing_simulator("metaworld", error) from error
    if task not in ENV_POLICY_MAP:
        raise ValueError(f"no scripted Meta-World expert for task {task!r}; known: {sorted(ENV_POLICY_MAP)}")
    benchmark = metaworld.MT1(task, seed=seed)
    env = benchmark.train_classes[task]()
    variations = benchmark.train_tasks
    env.set_task(variations[stable_hash(seed, task, episode, "variation") % len(variations)])
    policy = ENV_POLICY_MAP[task]()
    noise = _rng(seed, task, episode, "noise")
    std = _schedule(METAWORLD_NOISE_STD, episode)
    obs, _ = env.reset(seed=stable_hash(seed, task, episode, "reset") % (1 << 31))
    observations = [np.asarray(obs, dtype=np.float32)]
    actions: list[np.ndarray] = []
    rewards: list[float] = []
    terminal = False
    for _ in range(max_steps):
        action = np.clip(policy.get_action(obs) + noise.normal(0.0, std, METAWORLD_ACTION_SIZE), -1.0, 1.0)
        action = action.astype(np.float32)
        obs, reward, terminated, truncated, _ = env.step(action)
        actions.append(action)
        rewards.append(float(reward))
        observations.append(np.asarray(obs, dtype=np.float32))
        if terminated or truncated:
            terminal = bool(terminated)
            break
    env.close()
    steps = rlds_episode(
        [{METAWORLD_STATE: o} for o in observations],
        actions,
        rewards,
        terminal=terminal,
        final_action=np.zeros(METAWORLD_ACTION_SIZE, dtype=np.float32),
    )
    return _episode_example(episode, steps)


def record_babyai_episode(level: str, episode: int, *, seed: int = 0) -> dict[str, Any]:
    """One `gato_babyai` episode: minigrid's BabyAI bot, overridden by random actions.

    With probability epsilon (`BABYAI_EPSILON` cycled over episodes) a step takes a
    uniformly random action instead of the bot's; the bot is told the action taken and
    replans. If the bot cannot recover from the state it is left in, the rest of the
    episode is random. Episodes end at success (terminal) or minigrid's step limit.
    """
    try:
        import gymnasium as gym
        import minigrid  # noqa: F401 - importing registers the BabyAI-* environments
        from minigrid.utils.baby_ai_bot import BabyAIBot
    except ImportError as error:
        raise _missing_simulator("minigrid", error) from error
    env = gym.make(f"BabyAI-{level}-v0")
    obs, _ = env.reset(seed=stable_hash(seed, level, episode, "reset") % (1 << 31))
    bot: Any = BabyAIBot(env.unwrapped)
    chance = _rng(seed, level, episode, "epsilon")
    epsilon = _schedule(BABYAI_EPSILON, episode)

    def observe(o: dict[str, Any]) -> dict[str, Any]:
        return {
            BABYAI_IMAGE: np.asarray(o["image"], dtype=np.uint8),
            BABYAI_DIRECTION: np.int64(o["direction"]),
            BABYAI_MISSION: str(o["mission"]),
        }

    observations = [observe(obs)]
    actions: list[np.int64] = []
    rewards: list[float] = []
    terminal = False
    taken_by_chance: int | None = None
    while True:
        suggested: int | None = None
        if bot is not None:
            try:
                suggested = int(bot.replan(taken_by_chance))
            except Exception:  # noqa: BLE001 - the bot asserts on states it cannot plan from
                bot = None  # why: a confused bot is a realistic failure mode; act randomly
        if suggested is None or chance.random() < epsilon:
            action = int(chance.integers(BABYAI_NUM_ACTIONS))
            taken_by_chance = action if action != suggested else None
        else:
            action, taken_by_chance = suggested, None
        obs, reward, terminated, truncated, _ = env.step(action)
        actions.append(np.int64(action))
        rewards.append(float(reward))
        observations.append(observe(obs))
        if terminated or truncated:
            terminal = bool(terminated)
            break
    env.close()
    steps = rlds_episode(observations, actions, rewards, terminal=terminal, final_action=np.int64(0))
    return _episode_example(episode, steps)


def _rlds_features(observation: tfds.features.FeaturesDict, action: Any) -> tfds.features.FeaturesDict:
    """The RLDS episode layout shared by both datasets (module docstring)."""
    return tfds.features.FeaturesDict(
        {
            EPISODE_ID: np.int64,
            EPISODE_RETURN: np.float32,
            STEPS: tfds.features.Dataset(
                {
                    OBSERVATION: observation,
                    ACTION: action,
                    REWARD: np.float32,
                    DISCOUNT: np.float32,
                    IS_FIRST: np.bool_,
                    IS_LAST: np.bool_,
                    IS_TERMINAL: np.bool_,
                }
            ),
        }
    )


class _GatoBuilder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
    """Shared by both datasets: one split `train` of `num_episodes` recorded episodes."""

    VERSION = tfds.core.Version(GATO_VERSION)
    DESCRIPTION = ""
    HOMEPAGE = ""

    @staticmethod
    def _observation_features() -> tfds.features.FeaturesDict:
        raise NotImplementedError

    @staticmethod
    def _action_feature() -> Any:
        raise NotImplementedError

    @staticmethod
    def _record(task: str, episode: int, *, seed: int) -> dict[str, Any]:
        raise NotImplementedError

    def _info(self) -> tfds.core.DatasetInfo:
        return tfds.core.DatasetInfo(
            builder=self,
            description=self.DESCRIPTION,
            features=_rlds_features(self._observation_features(), self._action_feature()),
            homepage=self.HOMEPAGE,
        )

    def _split_generators(self, dl_manager: tfds.download.DownloadManager) -> dict[str, Any]:
        del dl_manager
        return {"train": self._generate_examples()}

    def _generate_examples(self) -> Iterator[tuple[int, dict[str, Any]]]:
        config: GatoTaskConfig = self.builder_config  # type: ignore[assignment]
        for episode in range(config.num_episodes):
            yield episode, self._record(config.name, episode, seed=config.seed)


class GatoMetaworld(_GatoBuilder):
    """Meta-World v3 (MT50 tasks) driven by metaworld's scripted experts with action noise."""

    RELEASE_NOTES = {GATO_VERSION: "Scripted experts of metaworld 3.1.1, Gaussian action noise."}
    BUILDER_CONFIGS = [GatoTaskConfig(name=task) for task in METAWORLD_TASKS]
    DESCRIPTION = (
        "Meta-World v3 episodes (39-d state, 4-d action in [-1, 1]) recorded from "
        "metaworld's scripted expert policies with Gaussian action noise of varying "
        f"std {METAWORLD_NOISE_STD}, truncated at {METAWORLD_MAX_STEPS} steps."
    )
    HOMEPAGE = "https://github.com/Farama-Foundation/Metaworld"

    @staticmethod
    def _observation_features() -> tfds.features.FeaturesDict:
        return tfds.features.FeaturesDict(
            {METAWORLD_STATE: tfds.features.Tensor(shape=(METAWORLD_STATE_SIZE,), dtype=np.float32)}
        )

    @staticmethod
    def _action_feature() -> Any:
        return tfds.features.Tensor(shape=(METAWORLD_ACTION_SIZE,), dtype=np.float32)

    _record = staticmethod(record_metaworld_episode)


class GatoBabyai(_GatoBuilder):
    """BabyAI levels (minigrid) driven by minigrid's BabyAI bot with epsilon-random actions."""

    RELEASE_NOTES = {GATO_VERSION: "minigrid's BabyAIBot with epsilon-random actions."}
    BUILDER_CONFIGS = [GatoTaskConfig(name=level) for level in BABYAI_LEVELS]
    DESCRIPTION = (
        "BabyAI episodes: minigrid's symbolic 7x7x3 egocentric grid, direction and "
        "mission text; actions 0..6 from minigrid's BabyAIBot, replaced by uniformly "
        f"random actions with probability epsilon in {BABYAI_EPSILON}."
    )
    HOMEPAGE = "https://github.com/Farama-Foundation/Minigrid"

    @staticmethod
    def _observation_features() -> tfds.features.FeaturesDict:
        return tfds.features.FeaturesDict(
            {
                BABYAI_IMAGE: tfds.features.Tensor(shape=(7, 7, 3), dtype=np.uint8),
                BABYAI_DIRECTION: np.int64,
                BABYAI_MISSION: tfds.features.Text(),
            }
        )

    @staticmethod
    def _action_feature() -> Any:
        return np.int64

    _record = staticmethod(record_babyai_episode)
