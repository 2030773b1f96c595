"""GatoReader: opens outputs, defines the global stream, and hands each consumer its batches.

The global stream is a pure function of (outputs, weights, seed, shuffle buffer,
exhaustion policy), never of the world size: global sample g is drawn from a source by
the mixture (`reader.mixture`), and takes the next row of that source's shuffled epoch
order (`reader.shuffle`). Ranks split it by row group (`reader.sharding`): a rank reads
the samples whose row groups it owns, in global order, and decodes no other row group.
A state is the frontier (every sample before it consumed) and the consumed tail past it
(`reader.state`, `reader.scan`), so every remaining sample is read once on resume, at any
world size or batch size; on the same world size and batch size the resumed batches are
the uninterrupted ones.
"""

from __future__ import annotations

import dataclasses
import warnings
from collections import OrderedDict
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from reader.batch import GLOBAL_INDEX, READ_COLUMNS, SOURCE, Unit, assemble, decode_unit
from reader.checksum import verify_shard
from reader.finished_output import Output, check_compatible, open_output
from reader.index import Index, Source, build_index, listed_sources
from reader.mixture import Draws, Exhausted, Mixture, resolve_weights
from reader.prefetch import Prefetcher
from reader.scan import Resume, Walk
from reader.sharding import Consumer, Deal
from reader.shuffle import PlanCache
from reader.state import ReaderState, fingerprint
from schemas.vocab import VocabLayout

Batch = dict[str, np.ndarray]
_OPEN_FILES = 64  # Parquet files kept open per consumer


@dataclasses.dataclass(frozen=True)
class ReaderOptions:
    """How to mix, shuffle and present the outputs.

    - `seed`: every shuffle and mixture draw derives from it.
    - `shuffle_buffer`: rows shuffled together per source (memory: about two windows of
      this many rows per source, per consumer).
    - `exhausted`: "repeat" or "drop" a source that runs out (see `reader.mixture`);
      `num_epochs` (drop only) ends the stream after that many global epochs.
    - `dataset_weights` {dataset: w}, `task_weights` {(dataset, task): share within the
      dataset}: override the manifests' suggested weights; weight 0 leaves a source out.
    - `layout`: the vocabulary layout the model expects; outputs with another are refused.
    - `normalize_images`: float32 ((p / 255) * 2 - 1) / 4 patches instead of raw uint8.
    - `image_channels`: C of the patch arrays (1-channel patches are repeated to it).
    - `max_patches`: fixed patch axis length (static shapes); None pads per batch.
    - `prefetch`: batches read ahead in a background thread; 0 reads in the caller.
    - `verify_checksums`: hash each shard (sha256) the first time this process reads from
      it (and again if its file was replaced since) and raise ValueError if it differs from
      the manifest's digest; False skips this (e.g. for outputs whose manifest lists no
      digests, or to read a damaged output anyway). Whatever this option, every shard open
      re-reads the output's manifest digest and stops the stream with a ValueError once the
      output was rebuilt (`Output.check_unchanged`), rather than mix two builds.
    """

    seed: int = 0
    shuffle_buffer: int = 1024
    exhausted: Exhausted | str = Exhausted.REPEAT
    num_epochs: int | None = None
    dataset_weights: Mapping[str, float] | None = None
    task_weights: Mapping[tuple[str, str], float] | None = None
    layout: VocabLayout | str | None = None
    normalize_images: bool = False
    image_channels: int = 3
    max_patches: int | None = None
    prefetch: int = 4
    verify_checksums: bool = True

    def __post_init__(self) -> None:
        Exhausted(self.exhausted)  # an unknown policy fails here, with the enum's message
        if self.image_channels < 1:
            raise ValueError(f"image_channels must be >= 1, got {self.image_channels}")
        if self.prefetch < 0:
            raise ValueError(f"prefetch must be >= 0, got {self.prefetch}")


class GatoReader:
    """Streams one or more finished outputs as mixed, shuffled, resumable batches.

    Usage::

        reader = GatoReader(["gs://bucket/atari", "/data/control"], ReaderOptions(seed=1))
        stream = reader.batches(32, rank=rank, world_size=world, state=saved)
        for batch in stream: ...
        saved = stream.state()  # JSON-able
    """

    def __init__(self, outputs: str | Sequence[str], options: ReaderOptions | None = None) -> None:
        self.options = options or ReaderOptions()
        urls = [outputs] if isinstance(outputs, str) else list(outputs)
        self.outputs: tuple[Output, ...] = tuple(open_output(u) for u in urls)
        self.layout, self.sequence_length = check_compatible(
            self.outputs, layout=self.options.layout, normalize_images=self.options.normalize_images
        )
        listed = listed_sources(self.outputs)
        weights = resolve_weights(
            listed,
            [o.sampling_weights for o in self.outputs],
            dataset_weights=self.options.dataset_weights,
            task_weights=self.options.task_weights,
        )
        wanted = {k for k, w in weights.items() if w > 0 and listed[k] > 0}
        self.empty_sources: tuple[tuple[str, str], ...] = tuple(
            sorted(k for k, w in weights.items() if w > 0 and listed[k] == 0)
        )
        if self.empty_sources:
            warnings.warn(
                f"sources {list(self.empty_sources)} have a sampling weight but no rows (every episode "
                "filtered or rejected); they are left out and the other weights renormalized",
                stacklevel=2,
            )
        self.index: Index = build_index(self.outputs, keep=wanted)
        self.sources: tuple[Source, ...] = self.index.sources
        if not self.sources:
            raise ValueError(f"{urls}: no rows in any source with a positive weight; nothing to read")
        # Renormalize over the sources that hold rows (a weighted task with no kept sequences).
        raw = np.asarray([weights[s.key] for s in self.sources], dtype=np.float64)
        self.weights: np.ndarray = raw / raw.sum()
        exhausted = Exhausted(self.options.exhausted)
        self.mixture = Mixture(
            self.weights,
            rows=np.asarray([s.rows for s in self.sources], dtype=np.int64),
            seed=self.options.seed,
            exhausted=exhausted,
            num_epochs=self.options.num_epochs,
        )
        self.deal = Deal.of(self.sources)
        self.fingerprint = fingerprint(
            {
                "outputs": [[o.config_hash, [(s["path"], s["rows"]) for s in o.shards]] for o in self.outputs],
                "sources": [[s.dataset, s.task, s.rows] for s in self.sources],
                "weights": self.weights.tolist(),
                "seed": self.options.seed,
                "shuffle_buffer": self.options.shuffle_buffer,
                "exhausted": exhausted.value,
                "num_epochs": self.options.num_epochs,
            }
        )

    # --- state ---

    def _start(self, state: Mapping[str, Any] | None) -> Resume:
        if state is None:
            return Resume(self.mixture.initial())
        parsed = ReaderState.from_dict(state, expected_fingerprint=self.fingerprint)
        if parsed.mixture is not None:
            return Resume(self.mixture.restore(parsed.mixture), parsed.tail)
        return Resume(self.mixture.state_at(parsed.position), parsed.tail)

    def _state(self, resume: Resume) -> dict[str, Any]:
        mix = resume.mixture
        return ReaderState(self.fingerprint, mix.position, mix.to_dict(), resume.tail).to_dict()

    def check_state(self, state: Mapping[str, Any]) -> None:
        """Raise ValueError now if `state` cannot resume this reader's stream."""
        self._start(state)

    def initial_state(self) -> dict[str, Any]:
        """The state of a stream that has not started."""
        return self._state(Resume(self.mixture.initial()))

    def plan_cache(self) -> PlanCache:
        """A fresh cache of per-(source, epoch) read orders."""
        o = self.options
        return PlanCache(self.sources, unit_rows=self.index.unit_rows, seed=o.seed, buffer=o.shuffle_buffer)

    def walk(self, state: Mapping[str, Any] | None, *, world_size: int) -> Walk:
        """The global stream from `state`, dealt over `world_size` ranks (no data read)."""
        return Walk(self.mixture, self.plan_cache(), self.deal, world_size=world_size, start=self._start(state))

    def state_after(
        self, state: Mapping[str, Any] | None, *, batches: int, batch_size: int, world_size: int
    ) -> dict[str, Any]:
        """The state once every one of `world_size` ranks consumed `batches` batches of
        `batch_size` after `state` (the end of the stream if it ends before)."""
        resume = self._start(state)
        if batches > 0:
            for item in self.walk(state, world_size=world_size).batches(batch_size, rank=0):
                resume = item.after
                if item.number + 1 == batches:
                    break
        return self._state(resume)

    # --- streaming ---

    def batches(
        self,
        batch_size: int,
        *,
        rank: int = 0,
        world_size: int = 1,
        worker: int = 0,
        num_workers: int = 1,
        state: Mapping[str, Any] | None = None,
    ) -> BatchStream:
        """This consumer's batches of the global stream, from `state` (or the beginning)."""
        consumer = Consumer(batch_size, rank=rank, world_size=world_size, worker=worker, num_workers=num_workers)
        self._start(state)  # a bad state fails here, in the caller, not in the read-ahead thread
        return BatchStream(self, consumer, state)

    def _produce(self, consumer: Consumer, state: Mapping[str, Any] | None) -> Iterator[tuple[Batch, Resume]]:
        builder = _BatchBuilder(self)
        walk = self.walk(state, world_size=consumer.world_size)
        for item in walk.batches(consumer.batch_size, rank=consumer.rank):
            if not consumer.builds(item.number):
                continue  # another data-loader worker's batch: dealt, never decoded here
            batch = builder.build(item.draws)
            batch[GLOBAL_INDEX] = item.global_index
            yield batch, item.after


class BatchStream(Iterator[Batch]):
    """One consumer's batches; `state()` is the state after the batches taken so far."""

    def __init__(self, reader: GatoReader, consumer: Consumer, start: Mapping[str, Any] | None) -> None:
        self._reader = reader
        self._consumer = consumer
        self._start = start
        self._last: Resume | None = None
        depth = reader.options.prefetch
        produce = lambda: reader._produce(consumer, start)  # noqa: E731
        self._items: Iterator[tuple[Batch, Resume]] = Prefetcher(produce, depth=depth) if depth else produce()

    def __next__(self) -> Batch:
        batch, after = next(self._items)
        self._last = after
        return batch

    def state(self) -> dict[str, Any]:
        """The state once every rank has consumed as many batches as this stream yielded.

        With data-loader workers a single worker cannot know this; the PyTorch adapter
        (or `GatoReader.state_after`) computes it from the batches the trainer consumed.
        """
        if self._consumer.num_workers != 1:
            raise ValueError(
                "state() of one data-loader worker's stream is not the rank's state; use "
                "reader.state_after(start_state, batches=..., batch_size=..., world_size=...) instead"
            )
        if self._last is None:
            return self._reader._state(self._reader._start(self._start))
        return self._reader._state(self._last)

    def close(self) -> None:
        """Stop reading ahead (the background thread)."""
        if isinstance(self._items, Prefetcher):
            self._items.close()

    def __del__(self) -> None:
        # An abandoned stream must not keep its thread (and decoded row groups) alive.
        items = getattr(self, "_items", None)
        if isinstance(items, Prefetcher):
            items.close(wait=False)

    def __enter__(self) -> BatchStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _BatchBuilder:
    """Maps draws to rows, keeps the row groups in use decoded, and assembles batches.

    Memory bound: per source, the decoded row groups of at most the windows the current
    batch touches (a source's cursor only moves forward, so older windows are dropped).
    """

    def __init__(self, reader: GatoReader) -> None:
        self._reader = reader
        self._plans = reader.plan_cache()
        self._units: dict[int, tuple[Unit, int, tuple[int, int]]] = {}  # unit -> (data, source, (epoch, window))
        self._files: OrderedDict[int, pq.ParquetFile] = OrderedDict()

    def _file(self, file_id: int) -> pq.ParquetFile:
        handle = self._files.get(file_id)
        if handle is None:
            # Every row-group read opens its file here: the one place shard bytes are checked.
            file = self._reader.index.files[file_id]
            if file.output is not None:
                file.output.check_unchanged()  # a rebuilt output is refused, not mixed in
            handle = file.open()  # opened before it is verified: the handle holds the verified bytes
            if self._reader.options.verify_checksums:
                try:
                    verify_shard(file.fs, file.path, file.sha256, output_url=file.output_url)
                except ValueError:
                    if file.output is not None:
                        file.output.check_unchanged()  # say "rebuilt" when that is why the bytes differ
                    raise
            self._files[file_id] = handle
            if len(self._files) > _OPEN_FILES:
                self._files.popitem(last=False)
        else:
            self._files.move_to_end(file_id)
        return handle

    def _unit(self, unit: int, source: int, progress: tuple[int, int]) -> Unit:
        entry = self._units.get(unit)
        if entry is not None:
            # A row group's rows do not change between epochs: reuse it, remember the latest use.
            self._units[unit] = (entry[0], source, max(entry[2], progress))
        else:
            r = self._reader
            file_id, group = int(r.index.unit_file[unit]), int(r.index.unit_group[unit])
            file = r.index.files[file_id]
            where = f"{file.output_url}: {file.path} row group {group}"
            try:
                table = self._file(file_id).read_row_group(group, columns=READ_COLUMNS)
            except (OSError, pa.ArrowException) as e:
                raise ValueError(f"{where}: cannot read ({e}); the shard changed or is corrupt") from e
            data = decode_unit(
                table, sequence_length=r.sequence_length, channels=r.options.image_channels, where=where
            )
            self._units[unit] = (data, source, progress)
        return self._units[unit][0]

    def build(self, draws: Draws) -> Batch:
        parts: list[tuple[Unit, np.ndarray, np.ndarray]] = []
        newest: dict[int, tuple[int, int]] = {}
        slots_all = np.arange(len(draws))
        for source in np.unique(draws.source):
            s = int(source)
            of_source = draws.source == source
            for epoch in np.unique(draws.epoch[of_source]):
                sel = of_source & (draws.epoch == epoch)
                units, rows, windows = self._plans.get(s, int(epoch)).locate(draws.cursor[sel])
                slots = slots_all[sel]
                for unit in np.unique(units):
                    in_unit = units == unit
                    progress = (int(epoch), int(windows[in_unit][0]))
                    parts.append((self._unit(int(unit), s, progress), rows[in_unit], slots[in_unit]))
                    newest[s] = max(newest.get(s, progress), progress)
        # Cursors only move forward: row groups of a source's earlier windows are not needed again.
        for unit, (_, s, progress) in list(self._units.items()):
            if s in newest and progress < newest[s]:
                del self._units[unit]
        r = self._reader
        batch = assemble(
            parts,
            batch_size=len(draws),
            sequence_length=r.sequence_length,
            channels=r.options.image_channels,
            max_patches=r.options.max_patches,
            normalize=r.options.normalize_images,
        )
        batch[SOURCE] = draws.source.astype(np.int32)
        return batch
