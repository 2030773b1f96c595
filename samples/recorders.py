"""Per-simulator episode recorders of the bundled samples (used by samples/make_samples.py).

Each `record_*_episode` plays one episode in its simulator (DM Control, ALE) or, for DM
Lab, renders a synthetic one, and returns it as the public TFDS builder's example: the
same features, dtypes and shapes the RL Unplugged files hold. The simulators are imported
inside the recorders: only the `samples` extra has them.

Determinism: every random choice comes from `stable_hash(seed, task, episode, ...)`; the
same seed gives the same episode and, with the same package versions, the same values.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from samples.tfds_builders import rlds_episode
from schemas.fields import CHECKPOINT_ID, EPISODE_ID, EPISODE_RETURN, STEPS
from transforms.hashing import stable_hash

# --- how an episode is played (the datasets and their sizes are in make_samples.py) ---
ATARI_MAX_STEPS = 500  # agent steps (4 frames each); longer episodes are truncated
ATARI_FRAME_SKIP = 4
ATARI_STICKY_ACTIONS = 0.25  # RL Unplugged's Atari data uses sticky actions, p = 0.25
ATARI_SIZE = 84
ATARI_EPSILON: tuple[float, ...] = (1.0, 1.0, 0.9, 0.8, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1, 0.05, 0.0)  # by episode: a "training run"

CONTROL_STEPS = 1000  # dm_control's own limit, as in RL Unplugged
CONTROL_SKILL: tuple[float, ...] = (0.0, 0.2, 0.4, 0.6, 0.8, 0.9, 1.0, 1.0)  # weight of the controller vs noise

DMLAB_STEPS = 250
DMLAB_EPSILON: tuple[float, ...] = (1.0, 0.9, 0.7, 0.5, 0.4, 0.3, 0.2, 0.1, 0.05, 0.0)


def _smooth_noise(rng: np.random.Generator, steps: int, size: int, *, scale: float, smoothing: float) -> np.ndarray:
    """Ornstein-Uhlenbeck-like noise in [-1, 1]: random but temporally correlated actions."""
    shocks = rng.normal(0.0, scale, (steps, size))
    noise = np.zeros((steps, size))
    level = np.zeros(size)
    for t in range(steps):  # a recurrence: each value depends on the previous one
        level = smoothing * level + (1.0 - smoothing) * shocks[t] * 3.0
        noise[t] = level
    return np.clip(noise, -1.0, 1.0)


def _rng(*parts: Any) -> np.random.Generator:
    return np.random.default_rng(stable_hash(*parts))


# ---------------------------------------------------------------- DM Control


def _cartpole_controller(observation: dict[str, np.ndarray]) -> np.ndarray:
    """Energy-pumping swing-up, PD balance near upright (gains tuned by a small sweep)."""
    x, cos_angle, sin_angle = observation["position"]
    x_dot, angle_dot = observation["velocity"]
    if cos_angle > 0.8:
        return np.array([15.0 * sin_angle + 2.0 * angle_dot - x - 2.0 * x_dot])
    energy = 0.5 * angle_dot**2 / 20.0 + cos_angle
    return np.array([-np.sign(angle_dot * cos_angle) * (1.0 - energy) - 0.3 * x - 0.1 * x_dot])


def _walker_controller(observation: dict[str, np.ndarray], t: int) -> np.ndarray:
    """An open-loop gait: hips and knees in antiphase sine waves (walks badly, stands often)."""
    del observation
    phase = 2.0 * np.pi * t / 40.0
    hip, knee = np.sin(phase), np.sin(phase + np.pi / 2)
    return np.array([hip, knee, 0.0, -hip, -knee, 0.0]) * 0.6


def record_control_episode(domain: str, task: str, episode: int, *, seed: int) -> dict[str, Any]:
    """One rlu_control_suite episode: controller and smoothed noise mixed by the skill schedule."""
    from dm_control import suite

    name = f"{domain}_{task}"
    env = suite.load(domain, task, task_kwargs={"random": stable_hash(seed, name, episode, "env") % (1 << 31)})
    spec = env.action_spec()
    skill = CONTROL_SKILL[episode % len(CONTROL_SKILL)]
    noise = _smooth_noise(
        _rng(seed, name, episode, "noise"), CONTROL_STEPS, spec.shape[0], scale=1.0, smoothing=0.8
    )
    time_step = env.reset()

    def observe(ts: Any) -> dict[str, np.ndarray]:
        # Shapes as the public builder declares them: dm_control's scalar `height` is (1,).
        return {k: np.asarray(v, dtype=np.float32).reshape(-1) for k, v in ts.observation.items()}

    observations, actions, rewards = [observe(time_step)], [], []
    for t in range(CONTROL_STEPS):
        if domain == "cartpole":
            control = _cartpole_controller(time_step.observation)
        else:
            control = _walker_controller(time_step.observation, t)
        action = np.clip(skill * control + (1.0 - skill) * noise[t], spec.minimum, spec.maximum).astype(np.float32)
        time_step = env.step(action)
        actions.append(action)
        rewards.append(float(time_step.reward))
        observations.append(observe(time_step))
        if time_step.last():
            break
    # dm_control's suite tasks end only by their time limit: a truncation, never terminal.
    steps = rlds_episode(
        observations, actions, rewards, terminal=False, final_action=np.zeros(spec.shape, np.float32)
    )
    return {EPISODE_ID: episode, "timestamp": 1_700_000_000 + 3600 * episode, STEPS: steps}


# ---------------------------------------------------------------- DM Lab (synthetic)

DMLAB_HEIGHT, DMLAB_WIDTH = 72, 96
DMLAB_NUM_ACTIONS = 9  # forward, back, strafe l/r, look l/r, forward+look l/r, noop
_FORWARD, _BACK, _STRAFE_LEFT, _STRAFE_RIGHT, _LOOK_LEFT, _LOOK_RIGHT, _FWD_LEFT, _FWD_RIGHT, _NOOP = range(9)
_FIELD_OF_VIEW = np.pi / 2
_TURN = np.pi / 12
_OBJECTS = 4
_GOOD = np.array([40, 200, 60], np.uint8)  # apples (+1)
_BAD = np.array([230, 210, 40], np.uint8)  # lemons (-1, seekavoid only)


@dataclasses.dataclass
class _Room:
    """A ring-shaped room: the agent turns (yaw) and walks towards objects on the ring."""

    yaw: float
    angles: np.ndarray  # object bearings
    distances: np.ndarray  # steps until reached
    good: np.ndarray  # bool: reward +1 (else -1)
    wall_hue: np.ndarray  # RGB of the wall band


def _render(room: _Room) -> np.ndarray:
    frame = np.empty((DMLAB_HEIGHT, DMLAB_WIDTH, 3), np.uint8)
    horizon = DMLAB_HEIGHT // 2
    rows = np.arange(DMLAB_HEIGHT)[:, None]
    frame[:horizon] = (np.array([120, 160, 220]) * (0.6 + 0.4 * rows[:horizon] / horizon)[..., None]).astype(np.uint8)
    frame[horizon:] = (np.array([110, 90, 70]) * (0.5 + 0.5 * (rows[horizon:] - horizon) / horizon)[..., None]).astype(np.uint8)
    # Wall band with vertical stripes fixed in the world, so turning moves them.
    bearings = room.yaw + (np.arange(DMLAB_WIDTH) / DMLAB_WIDTH - 0.5) * _FIELD_OF_VIEW
    stripes = (np.floor(bearings / (np.pi / 8)) % 2).astype(bool)
    band = np.where(stripes[:, None], room.wall_hue, (room.wall_hue * 0.7).astype(np.uint8))
    frame[horizon - 10 : horizon + 2] = band[None]
    for angle, distance, good in zip(room.angles, room.distances, room.good):
        offset = (angle - room.yaw + np.pi) % (2 * np.pi) - np.pi
        if abs(offset) > _FIELD_OF_VIEW / 2:
            continue
        column = int((offset / _FIELD_OF_VIEW + 0.5) * DMLAB_WIDTH)
        radius = max(2, int(14 / (1 + 0.4 * distance)))
        top, left = horizon + 4 - radius, column - radius
        frame[max(top, 0) : top + 2 * radius, max(left, 0) : left + 2 * radius] = _GOOD if good else _BAD
    return frame


def _bearing_offset(room: _Room, index: int) -> float:
    return float((room.angles[index] - room.yaw + np.pi) % (2 * np.pi) - np.pi)


def _greedy_action(room: _Room) -> int:
    """Turn to the nearest good object, walk to it; turn away from bad ones in front."""
    candidates = np.flatnonzero(room.good)
    target = candidates[np.argmin([abs(_bearing_offset(room, i)) + 0.05 * room.distances[i] for i in candidates])]
    offset = _bearing_offset(room, int(target))
    if abs(offset) <= _TURN / 2:
        return _FORWARD
    near = abs(offset) < 2 * _TURN  # close to the heading: keep walking while turning
    if offset < 0:
        return _FWD_LEFT if near else _LOOK_LEFT
    return _FWD_RIGHT if near else _LOOK_RIGHT


def _step_room(room: _Room, action: int, rng: np.random.Generator) -> float:
    """Apply `action`; reaching an object gives its reward and respawns it elsewhere."""
    if action in (_LOOK_LEFT, _FWD_LEFT):
        room.yaw -= _TURN
    elif action in (_LOOK_RIGHT, _FWD_RIGHT):
        room.yaw += _TURN
    elif action == _STRAFE_LEFT:
        room.yaw -= _TURN / 3
    elif action == _STRAFE_RIGHT:
        room.yaw += _TURN / 3
    reward = 0.0
    if action in (_FORWARD, _FWD_LEFT, _FWD_RIGHT, _BACK):
        ahead = np.abs((room.angles - room.yaw + np.pi) % (2 * np.pi) - np.pi) <= _TURN
        room.distances = np.where(ahead, room.distances + (1 if action == _BACK else -1), room.distances)
        for index in np.flatnonzero(room.distances <= 0):
            reward += 1.0 if room.good[index] else -1.0
            room.angles[index] = rng.uniform(0, 2 * np.pi)
            room.distances[index] = rng.integers(3, 9)
    room.distances = np.clip(room.distances, 0, 12)
    return reward


def record_dmlab_episode(dataset: str, episode: int, *, seed: int) -> dict[str, Any]:
    """One synthetic episode in the rlu_dmlab features (see SYNTHETIC_NOTE)."""
    rng = _rng(seed, dataset, episode, "world")
    avoid = "seekavoid" in dataset
    room = _Room(
        yaw=float(rng.uniform(0, 2 * np.pi)),
        angles=rng.uniform(0, 2 * np.pi, _OBJECTS),
        distances=rng.integers(3, 9, _OBJECTS),
        good=(np.arange(_OBJECTS) % 2 == 0) if avoid else np.ones(_OBJECTS, bool),
        wall_hue=rng.integers(90, 170, 3).astype(np.uint8),  # muted: objects stay distinct
    )
    epsilon = DMLAB_EPSILON[episode % len(DMLAB_EPSILON)]
    observations, actions, rewards = [], [], []
    last_action, last_reward = 0, 0.0
    for _ in range(DMLAB_STEPS):
        observations.append({"pixels": _render(room), "last_action": np.int64(last_action), "last_reward": np.float32(last_reward)})
        action = int(rng.integers(DMLAB_NUM_ACTIONS)) if rng.random() < epsilon else _greedy_action(room)
        last_action, last_reward = action, _step_room(room, action, rng)
        actions.append(np.int64(action))
        rewards.append(last_reward)
    observations.append({"pixels": _render(room), "last_action": np.int64(last_action), "last_reward": np.float32(last_reward)})
    steps = rlds_episode(observations, actions, rewards, terminal=False, final_action=np.int64(0))
    return {EPISODE_ID: episode, EPISODE_RETURN: np.float32(sum(rewards)), STEPS: steps}


# ---------------------------------------------------------------- Atari


def _atari_frame(screens: list[np.ndarray]) -> np.ndarray:
    """RL Unplugged / DQN preprocessing: max over the last two frames, resize to 84x84."""
    from PIL import Image

    pooled = np.maximum(screens[-1], screens[-2])
    resized = Image.fromarray(pooled).resize((ATARI_SIZE, ATARI_SIZE), Image.BILINEAR)
    return np.asarray(resized, dtype=np.uint8)[..., None]


def _scripted_atari(game: str, ram: np.ndarray) -> int:
    """Track the ball with the paddle (RAM addresses from the Atari RAM annotations)."""
    if game == "Pong":
        paddle, ball = int(ram[51]), int(ram[54])
        # Pong's minimal set: NOOP, FIRE, RIGHT (up), LEFT (down), RIGHTFIRE, LEFTFIRE.
        return 2 if ball < paddle else 3 if ball > paddle + 4 else 0
    paddle, ball = int(ram[72]), int(ram[99])
    # Breakout's minimal set: NOOP, FIRE, RIGHT, LEFT. FIRE serves after a lost life.
    if ball == 0:
        return 1
    return 2 if ball > paddle + 10 else 3 if ball < paddle + 4 else 0


def record_atari_episode(game: str, rom: str, episode: int, *, seed: int) -> dict[str, Any]:
    """One rlu_atari episode: epsilon-greedy around a ball-tracking script, sticky actions."""
    import ale_py

    ale = ale_py.ALEInterface()
    ale_py.ALEInterface.setLoggerMode(ale_py.LoggerMode.Error)
    ale.setInt("random_seed", stable_hash(seed, game, episode, "ale") % (1 << 31))
    ale.setFloat("repeat_action_probability", ATARI_STICKY_ACTIONS)
    ale.setInt("frame_skip", 1)  # skipping and pooling are done here, as in DQN
    ale.loadROM(ale_py.roms.get_rom_path(rom))
    minimal = list(ale.getMinimalActionSet())
    rng = _rng(seed, game, episode, "policy")
    epsilon = ATARI_EPSILON[episode % len(ATARI_EPSILON)]
    screens = [ale.getScreenGrayscale(), ale.getScreenGrayscale()]
    observations, actions, rewards = [_atari_frame(screens)], [], []
    terminal = False
    for _ in range(ATARI_MAX_STEPS):
        if rng.random() < epsilon:
            action = int(rng.integers(len(minimal)))
        else:
            action = _scripted_atari(game, ale.getRAM())
        raw = 0.0
        screens = []
        for _ in range(ATARI_FRAME_SKIP):
            raw += ale.act(minimal[action])
            screens.append(ale.getScreenGrayscale())
            if ale.game_over():
                break
        if len(screens) < 2:
            screens.insert(0, screens[0])
        actions.append(np.int64(action))
        rewards.append(float(np.sign(raw)))  # clipped reward, as RL Unplugged stores it
        observations.append(_atari_frame(screens))
        if ale.game_over():
            terminal = True
            break
    steps = rlds_episode(observations, actions, rewards, terminal=terminal, final_action=np.int64(0))
    return {
        CHECKPOINT_ID: episode // 2,  # skill rises with the checkpoint, like a training run
        EPISODE_ID: episode,
        EPISODE_RETURN: np.float32(sum(rewards)),
        STEPS: steps,
    }
