"""Mixture weights and the global draw sequence over sources.

Global sample g draws its source from `keyed_uniform(key_of(seed, "mixture"), g)` and the
(renormalized) weights of the sources still in the mixture; a source's k-th draw takes
row k of its shuffled epoch order. The draw sequence depends only on (seed, weights,
source sizes, exhaustion policy), never on world size, so every rank computes the same
global sequence and takes its own slice of it.

Exhaustion (`Exhausted`):
- REPEAT: a source that runs out starts its next epoch (new shuffle); the stream never ends;
  the mixture proportions hold throughout.
- DROP: a source that runs out leaves the mixture, the others are renormalized; when all
  are out the global epoch ends, every source returns with a new shuffle, until
  `num_epochs` epochs (None: forever). Within a global epoch each row is drawn exactly once.
"""

from __future__ import annotations

import dataclasses
import enum
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from reader.index import SourceKey
from reader.keyed_hash import key_of, keyed_uniform

_BLOCK = 1 << 16  # draws computed per vectorized step
# Most draws replayed to resume a REPEAT state that holds only its position (~20 minutes at
# ~15M draws/s; 1.7e10 samples is far beyond any training run, so more means a corrupt state).
MAX_REPLAY = 2**34


class Exhausted(str, enum.Enum):
    """What happens to a source (dataset or task) that runs out of rows."""

    REPEAT = "repeat"
    DROP = "drop"


def _check_weight(value: object, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{what}: weight {value!r} is not a number")
    w = float(value)
    if not math.isfinite(w) or w < 0:
        raise ValueError(f"{what}: weight {value!r} must be finite and >= 0")
    return w


def _manifest_weight(
    manifest_weights: Sequence[Mapping[str, Any]], *, dataset: str, task: str | None
) -> float | None:
    """The manifests' `sampling_weights[dataset]["weight"]` (task None) or its
    `["tasks"][task]`; None when no manifest gives one; manifests that disagree are an error."""
    where = "" if task is None else f" task {task!r}"
    found: float | None = None
    for weights in manifest_weights:
        entry = weights.get(dataset)
        if entry is None:
            continue
        raw = entry.get("weight") if task is None else (entry.get("tasks") or {}).get(task)
        if raw is None:
            continue
        value = _check_weight(raw, f"manifest sampling weight of {dataset!r}" + where)
        if found is not None and found != value:
            raise ValueError(
                f"the manifests disagree on the sampling weight of {dataset!r}"
                + where
                + f" ({found} vs {value}); pass it explicitly in dataset_weights/task_weights"
            )
        found = value
    return found


def _dataset_weights(
    datasets: Sequence[str],
    *,
    manifest_weights: Sequence[Mapping[str, Any]],
    overrides: Mapping[str, float],
) -> dict[str, float]:
    """w_d of each dataset, the override else the manifests'; a dataset without any is an error."""
    dataset_w: dict[str, float] = {}
    for d in datasets:
        override = overrides.get(d)
        w = (
            _check_weight(override, f"dataset_weights[{d!r}]")
            if override is not None
            else _manifest_weight(manifest_weights, dataset=d, task=None)
        )
        if w is None:
            raise ValueError(
                f"dataset {d!r} has no sampling weight in its manifest; pass one in dataset_weights"
            )
        dataset_w[d] = w
    return dataset_w


def _task_shares(
    dataset: str,
    *,
    sources: Mapping[SourceKey, int],
    manifest_weights: Sequence[Mapping[str, Any]],
    overrides: Mapping[SourceKey, float],
) -> dict[str, float]:
    """s_t of each task of `dataset` (not normalized): every task's override or manifest
    weight, else (none of them has one) the tasks' row counts."""
    tasks = sorted(t for dd, t in sources if dd == dataset)
    shares: dict[str, float | None] = {}
    for t in tasks:
        override = overrides.get((dataset, t))
        shares[t] = (
            _check_weight(override, f"task_weights[{(dataset, t)!r}]")
            if override is not None
            else _manifest_weight(manifest_weights, dataset=dataset, task=t)
        )
    listed = [t for t in tasks if shares[t] is not None]
    if not listed:
        # By rows; a dataset without any rows keeps its weight (split evenly) so that the
        # reader can say it is missing instead of silently renormalizing it away.
        shares = {t: float(sources[(dataset, t)]) for t in tasks}
        if not any(shares.values()):
            shares = {t: 1.0 for t in tasks}
    elif len(listed) != len(tasks):
        raise ValueError(
            f"dataset {dataset!r}: tasks {sorted(set(tasks) - set(listed))} have no weight while "
            f"{listed} do; give every task of the dataset a weight in task_weights"
        )
    return {t: share or 0.0 for t, share in shares.items()}


def resolve_weights(
    sources: Mapping[SourceKey, int],
    manifest_weights: Sequence[Mapping[str, Any]],
    *,
    dataset_weights: Mapping[str, float] | None = None,
    task_weights: Mapping[SourceKey, float] | None = None,
) -> dict[SourceKey, float]:
    """Probability of each (dataset, task), summing to 1 over sources with positive weight.

    p(d, t) = w_d / sum(w) * s_t / sum(s over d's tasks). w_d is `dataset_weights[d]`, else
    the manifests' `sampling_weights[d]["weight"]`; s_t is `task_weights[(d, t)]`, else the
    manifests' `sampling_weights[d]["tasks"][t]`, else (no task weights for d at all) the
    task's row count. `sources` maps each source to its row count. Unknown override keys,
    a dataset without any weight, and manifests that disagree are errors.
    """
    dataset_weights = dict(dataset_weights or {})
    task_weights = dict(task_weights or {})
    datasets = sorted({d for d, _ in sources})
    unknown = sorted(set(dataset_weights) - set(datasets))
    if unknown:
        raise ValueError(f"dataset_weights name unknown datasets {unknown}; known: {datasets}")
    unknown_tasks = sorted(set(task_weights) - set(sources))
    if unknown_tasks:
        raise ValueError(f"task_weights name unknown (dataset, task) pairs {unknown_tasks}; known: {sorted(sources)}")
    dataset_w = _dataset_weights(datasets, manifest_weights=manifest_weights, overrides=dataset_weights)
    total_d = sum(dataset_w.values())
    if total_d <= 0:
        raise ValueError(f"every dataset weight is 0 ({dataset_w}); nothing to read")
    result: dict[SourceKey, float] = {}
    for d in datasets:
        shares = _task_shares(d, sources=sources, manifest_weights=manifest_weights, overrides=task_weights)
        total_t = sum(shares.values())
        for t, share in shares.items():
            result[(d, t)] = 0.0 if total_t <= 0 else dataset_w[d] / total_d * share / total_t
    if sum(result.values()) <= 0:
        raise ValueError("every source has weight 0; nothing to read")
    return result


@dataclasses.dataclass
class MixtureState:
    """Where the global draw sequence stands. Mutable; `to_dict`/`from_dict` are JSON-able.

    `counts[s]`: rows drawn from source s (REPEAT: ever; DROP: in the current epoch).
    `active[s]`: s is still in the mixture (DROP only; always all True under REPEAT).
    `finished`: DROP with `num_epochs` reached; `position` is then the stream's length.
    """

    position: int
    epoch: int
    counts: np.ndarray
    active: np.ndarray
    finished: bool = False

    def copy(self) -> MixtureState:
        return dataclasses.replace(self, counts=self.counts.copy(), active=self.active.copy())

    def to_dict(self) -> dict[str, Any]:
        return {
            "position": int(self.position),
            "epoch": int(self.epoch),
            "counts": [int(c) for c in self.counts],
            "active": [bool(a) for a in self.active],
            "finished": bool(self.finished),
        }

    @staticmethod
    def from_dict(data: Mapping[str, Any], num_sources: int) -> MixtureState:
        """Parse `to_dict`'s layout; a field missing or of the wrong type is a ValueError naming it."""
        for name in ("position", "epoch", "counts", "active", "finished"):
            if name not in data:
                raise ValueError(f"reader state mixture.{name} is missing; the state is corrupt")
        position, epoch = data["position"], data["epoch"]
        for name, value in (("position", position), ("epoch", epoch)):
            if not _is_count(value):
                raise ValueError(f"reader state mixture.{name} {value!r} is not a non-negative integer")
        counts, active, finished = data["counts"], data["active"], data["finished"]
        if not isinstance(counts, list) or len(counts) != num_sources or not all(map(_is_count, counts)):
            raise ValueError(
                f"reader state mixture.counts {counts!r} is not a list of {num_sources} non-negative integers "
                f"(one per source of this reader)"
            )
        if not isinstance(active, list) or len(active) != num_sources or not all(isinstance(a, bool) for a in active):
            raise ValueError(f"reader state mixture.active {active!r} is not a list of {num_sources} booleans")
        if not isinstance(finished, bool):
            raise ValueError(f"reader state mixture.finished {finished!r} is not a boolean")
        return MixtureState(
            position, epoch, np.asarray(counts, dtype=np.int64), np.asarray(active, dtype=bool), finished
        )


def _is_count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2**63


@dataclasses.dataclass(frozen=True)
class Draws:
    """Draws of consecutive global samples: source index, its epoch and row cursor in that epoch."""

    source: np.ndarray  # int64 [n]
    epoch: np.ndarray  # int64 [n]
    cursor: np.ndarray  # int64 [n]

    def __len__(self) -> int:
        return int(self.source.shape[0])


def _cumcount(picks: np.ndarray) -> np.ndarray:
    """For each element, how many earlier elements have the same value."""
    order = np.argsort(picks, kind="stable")
    sorted_picks = picks[order]
    starts = np.r_[0, np.flatnonzero(sorted_picks[1:] != sorted_picks[:-1]) + 1]
    group_start = np.repeat(starts, np.diff(np.r_[starts, len(picks)]))
    result = np.empty_like(order)
    result[order] = np.arange(len(picks)) - group_start
    return result


class Mixture:
    """The global draw sequence. Pure given (weights, rows, seed, policy, num_epochs)."""

    def __init__(
        self,
        weights: np.ndarray,
        *,
        rows: np.ndarray,
        seed: int,
        exhausted: Exhausted | str,
        num_epochs: int | None,
    ) -> None:
        self.weights = np.asarray(weights, dtype=np.float64)
        self.rows = np.asarray(rows, dtype=np.int64)
        if self.weights.shape != self.rows.shape or not (self.weights > 0).all() or not (self.rows > 0).all():
            raise ValueError("Mixture needs one positive weight and a positive row count per source")
        self.exhausted = Exhausted(exhausted)
        if num_epochs is not None and num_epochs < 1:
            raise ValueError(f"num_epochs must be >= 1 or None, got {num_epochs}")
        if self.exhausted is Exhausted.REPEAT and num_epochs is not None:
            raise ValueError("num_epochs applies to exhausted='drop'; with 'repeat' the stream never ends")
        self.num_epochs = num_epochs
        self._key = key_of(seed, "mixture")

    def initial(self) -> MixtureState:
        n = len(self.rows)
        return MixtureState(0, 0, np.zeros(n, dtype=np.int64), np.ones(n, dtype=bool))

    def _pick(self, active: np.ndarray, start: int, n: int) -> np.ndarray:
        cum = np.cumsum(np.where(active, self.weights, 0.0))
        cum /= cum[-1]  # exact 1.0 at the end, so every u in [0, 1) lands on an active source
        u = keyed_uniform(self._key, np.arange(start, start + n, dtype=np.uint64))
        return np.searchsorted(cum, u, side="right").astype(np.int64)

    def take(self, state: MixtureState, n: int) -> Draws:
        """The next (up to) n draws, advancing `state` (fewer only when the stream finishes)."""
        parts = self._advance(state, n, keep=True)
        if not parts:
            empty = np.zeros(0, dtype=np.int64)
            return Draws(empty, empty, empty)
        return Draws(*(np.concatenate(p) for p in zip(*parts)))

    def skip(self, state: MixtureState, n: int) -> None:
        """Advance `state` by up to n draws without keeping them (others' samples)."""
        self._advance(state, n, keep=False)

    def _advance(
        self, state: MixtureState, n: int, *, keep: bool
    ) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        while n > 0 and not state.finished:
            m = min(n, _BLOCK)
            picks = self._pick(state.active, state.position, m)
            drawn = state.counts[picks] + _cumcount(picks)
            if self.exhausted is Exhausted.REPEAT:
                rows = self.rows[picks]
                if keep:
                    parts.append((picks, drawn // rows, drawn % rows))
                exhausted_at = -1
            else:
                last = drawn == self.rows[picks] - 1
                exhausted_at = int(np.argmax(last)) if last.any() else -1
                if exhausted_at >= 0:
                    m = exhausted_at + 1
                    picks, drawn = picks[:m], drawn[:m]
                if keep:
                    parts.append((picks, np.full(m, state.epoch, dtype=np.int64), drawn))
            state.counts += np.bincount(picks, minlength=len(self.rows))
            state.position += m
            n -= m
            if exhausted_at >= 0:
                state.active[picks[exhausted_at]] = False
                if not state.active.any():
                    state.epoch += 1
                    state.counts[:] = 0
                    state.active[:] = True
                    state.finished = self.num_epochs is not None and state.epoch >= self.num_epochs
        return parts

    def state_at(self, position: int, start: MixtureState | None = None) -> MixtureState:
        """The state after `position` draws, simulated from `start` (or the beginning).

        DROP: every global epoch is exactly sum(rows) draws and ends in a known state, so
        only the current epoch is replayed (and a position past the last epoch is an error).
        REPEAT: every draw since `start` is replayed, at most `MAX_REPLAY` of them.
        """
        state = (start or self.initial()).copy()
        if state.position > position:
            state = self.initial()
        if self.exhausted is Exhausted.DROP:
            total = int(self.rows.sum())
            epoch = position // total
            if self.num_epochs is not None and position > self.num_epochs * total:
                raise ValueError(
                    f"reader state position {position} is past the end of the stream ({self.num_epochs} "
                    f"epoch(s) of {total} rows: {self.num_epochs * total}); the state is corrupt or of another stream"
                )
            if state.position < epoch * total:
                n = len(self.rows)
                finished = self.num_epochs is not None and epoch >= self.num_epochs
                state = MixtureState(epoch * total, epoch, np.zeros(n, dtype=np.int64), np.ones(n, dtype=bool), finished)
        elif position - state.position > MAX_REPLAY:
            raise ValueError(
                f"reader state position {position} needs {position - state.position} draws replayed (more than "
                f"{MAX_REPLAY}), as the state holds no mixture snapshot at that position; the position is "
                "corrupt, or save the state with BatchStream.state(), which holds the snapshot"
            )
        self.skip(state, position - state.position)
        return state

    def restore(self, data: Mapping[str, Any]) -> MixtureState:
        """The `MixtureState` of a saved `to_dict`, checked against this mixture; ValueError
        naming the field that is of the wrong type or contradicts the mixture."""
        state = MixtureState.from_dict(data, len(self.rows))
        problem = self._contradiction(state)
        if problem:
            raise ValueError(f"reader state {problem}; the state is corrupt or of another stream")
        return state

    def _contradiction(self, state: MixtureState) -> str | None:
        counts = [int(c) for c in state.counts]
        if self.exhausted is Exhausted.REPEAT:
            if state.epoch != 0:
                return f"mixture.epoch is {state.epoch}, but under 'repeat' it is always 0"
            if not state.active.all():
                return f"mixture.active is {state.active.tolist()}, but under 'repeat' every source stays active"
            if state.finished:
                return "mixture.finished is True, but under 'repeat' the stream never ends"
            drawn = state.position
        else:
            for s, (count, rows, active) in enumerate(zip(counts, self.rows.tolist(), state.active.tolist())):
                if count > rows:
                    return f"mixture.counts[{s}] is {count}, more than the {rows} rows of source {s}"
                if active != (count < rows):
                    return f"mixture.active[{s}] is {active}, but source {s} has {rows - count} of its {rows} rows left"
            ended = self.num_epochs is not None and state.epoch >= self.num_epochs
            if state.finished != ended or (self.num_epochs is not None and state.epoch > self.num_epochs):
                return f"mixture.finished is {state.finished}, but epoch {state.epoch} of num_epochs {self.num_epochs}"
            drawn = state.position - state.epoch * int(self.rows.sum())
        if sum(counts) != drawn:
            return f"mixture.counts sum to {sum(counts)}, but {drawn} draws were made (mixture.position {state.position})"
        return None
