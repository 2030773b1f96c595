"""Beam's DaskRunner (Beam 2.77), with the translation fixed where it loses or mixes data.

`--runner=apache_beam.runners.dask.dask_runner.DaskRunner --dask_client_address=tcp://HOST:PORT`
(or `--runner=DaskRunner`) runs the job on a `dask.distributed` cluster through
`DaskRunner` below (`pipeline/runner.py` picks it). Beam's own translation
(`apache_beam/runners/dask/`) turns each PCollection into a `dask.bag.Bag`, but:

1. It keys bags by the producing transform, so every tagged output of a multi-output
   ParDo (`.with_outputs(...)`: our Read, Validate, Filter, Tokenize, Sequence, ...) is
   the same bag, holding all outputs mixed ("'RawEpisode' object has no attribute
   'dataset'" downstream). Upstream: apache/beam sdks/python/apache_beam/runners/dask/
   dask_runner.py, `DaskBagVisitor.visit_transform` stores `self.bags[transform_node]` and
   reads `self.bags[input_value.producer]` (Beam 2.77; no upstream issue found for it).
2. A bundle's results are taken before `finish_bundle`, so what `finish_bundle` emits is
   lost (our shard writer closes its shards there): `transform_evaluator.apply_dofn_to_bundle`.
3. A side input is computed by a nested `compute` inside each task that reads it,
   outside the task graph: the task blocks a worker thread meanwhile, and the side
   input's upstream (writes included) may run again.
4. Only the last transform's bag is computed: a branch it does not depend on never runs.
5. `metrics()` raises NotImplementedError.

Here bags are keyed by PCollection, a ParDo's bundle yields (tag, value) pairs that each
output filters by its tag, `finish_bundle` outputs are kept, side inputs are ordinary
dependencies of the tasks (one list per side input, computed once), every sink is
computed in one graph, and `metrics()` returns no counters (nothing collects them on
Dask workers; the statistics files still balance the books). Each bundle (one dask
partition) deserializes its own DoFn and calls its `setup`, so threads of one worker never
share a DoFn's state.

Limits kept from Beam's runner: batch only; Create the only source (Beam's `Read` is a
no-op there); the global window only (values travel without their windows, as in Beam's;
a `WindowInto` another window is refused here).
Beam's `Reshuffle` is a no-op on Dask, so a Create's partitions are the unit of
parallelism: unless `--dask_npartitions` or `--dask_partition_size` says otherwise, each
element of a Create is its own partition (ours hold work items, one TFDS shard each,
which on other runners the read's Reshuffle spreads).
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
from collections.abc import Iterable
from typing import Any

import dask
import dask.bag as db
from dask.delayed import Delayed
from apache_beam import pvalue
from apache_beam.internal import pickler
from apache_beam.metrics.metric import MetricResults
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.pipeline import AppliedPTransform, Pipeline, PipelineVisitor
from apache_beam.runners.common import DoFnContext, DoFnInvoker, DoFnSignature, Receiver, _OutputHandler
from apache_beam.runners.dask import dask_runner as beam_dask
from apache_beam.runners.dask import transform_evaluator as beam_ops
from apache_beam.runners.dask.overrides import _GroupByKeyOnly, dask_overrides
from apache_beam.runners.runner import PipelineState
from apache_beam.transforms import core
from apache_beam.transforms.sideinputs import SideInputMap
from apache_beam.transforms.window import GlobalWindow, GlobalWindows
from apache_beam.utils.windowed_value import WindowedValue

log = logging.getLogger(__name__)

# Each Create element its own partition (module doc), unless the user sizes them.
DEFAULT_BAG_KWARGS = {"partition_size": 1}


class _TagReceiver(Receiver):
    """Appends (tag, value) for each output of one tag (None: the main output)."""

    def __init__(self, tag: str | None, out: list[tuple[str | None, Any]]) -> None:
        self._tag = tag
        self._out = out

    def receive(self, windowed_value: WindowedValue) -> None:
        self._out.append((self._tag, windowed_value.value))


class _Receivers(dict):
    """tag -> `_TagReceiver`, made on first use; `out` holds every output in order."""

    def __init__(self) -> None:
        super().__init__()
        self.out: list[tuple[str | None, Any]] = []

    def __missing__(self, tag: str | None) -> _TagReceiver:
        receiver = self[tag] = _TagReceiver(tag, self.out)
        return receiver


@dataclasses.dataclass(frozen=True)
class _ParDoSpec:
    """What a bundle of one ParDo needs, picklable into the task graph."""

    label: str
    fn: bytes  # the DoFn, pickled: each bundle gets its own instance
    args: tuple[Any, ...]  # a side input stands in them as an ArgumentPlaceholder
    kwargs: dict[str, Any]
    views: tuple[tuple[type, dict[str, Any]], ...]  # (view class, view options) per side input


def _global(value: Any) -> WindowedValue:
    return WindowedValue(value, 0, (GlobalWindow(),))


def _run_bundle(items: Iterable[Any], spec: _ParDoSpec, *sides: list[Any]) -> list[tuple[str | None, Any]]:
    """One dask partition through one DoFn, as one bundle: its (tag, value) outputs,
    those of `finish_bundle` included."""
    receivers = _Receivers()
    side_inputs = [
        SideInputMap(view, options, [_global(v) for v in values]) for (view, options), values in zip(spec.views, sides)
    ]
    invoker = DoFnInvoker.create_invoker(
        DoFnSignature(pickler.loads(spec.fn)),
        _OutputHandler(
            window_fn=None, main_receivers=receivers[None], tagged_receivers=receivers,
            per_element_output_counter=None, output_batch_converter=None,
            process_yields_batches=False, process_batch_yields_elements=False,
        ),
        context=DoFnContext(spec.label, state=None),
        side_inputs=side_inputs,
        input_args=list(spec.args),
        input_kwargs=spec.kwargs,
        user_state_context=None,
        bundle_finalizer_param=core.DoFn.BundleFinalizerParam(),
    )
    invoker.invoke_setup()
    invoker.invoke_start_bundle()
    for item in items:
        invoker.invoke_process(_global(item))
    invoker.invoke_finish_bundle()
    invoker.invoke_teardown()
    return receivers.out


def _select(pairs: Iterable[tuple[str | None, Any]], tag: str | None) -> list[Any]:
    """The values of one output of a bundle's (tag, value) pairs."""
    return [value for t, value in pairs if t == tag]


def _concat(parts: Iterable[list[Any]]) -> list[Any]:
    return list(itertools.chain.from_iterable(parts))


def _key(item: tuple[Any, Any]) -> Any:
    return item[0]


def _unwindowed(group: tuple[Any, list[tuple[Any, Any]]]) -> tuple[Any, list[Any]]:
    key, items = group
    return key, [beam_ops.defenestrate(value) for _, value in items]


class _GroupByKey(beam_ops.GroupByKey):
    """Beam's GroupByKey with the task-based shuffle, always. Beam's lets dask choose when
    the graph is built, which without a default client is the on-disk shuffle: one
    store per worker process, so a key's values end up split over several groups."""

    def apply(self, input_bag: db.Bag, side_inputs: Any = None) -> db.Bag:
        return input_bag.groupby(_key, shuffle="tasks").map(_unwindowed)


# Beam's translations (by exact class), ours for GroupByKey; ParDo is `_BagVisitor._pardo`.
TRANSLATIONS = {**beam_ops.TRANSLATIONS, _GroupByKeyOnly: _GroupByKey}


def _nothing(_: Iterable[Any]) -> list[Any]:
    """A sink's partition, run for its effects; nothing travels back to the client."""
    return []


@dataclasses.dataclass
class _BagVisitor(PipelineVisitor):
    """Builds one dask bag per PCollection (module doc)."""

    bag_kwargs: dict[str, Any]
    bags: dict[pvalue.PCollection, db.Bag] = dataclasses.field(default_factory=dict)
    consumed: set[pvalue.PCollection] = dataclasses.field(default_factory=set)
    side_lists: dict[pvalue.PCollection, Delayed] = dataclasses.field(default_factory=dict)

    def visit_transform(self, node: AppliedPTransform) -> None:
        transform = node.transform
        if isinstance(transform, core.WindowInto) and not isinstance(transform.windowing.windowfn, GlobalWindows):
            raise NotImplementedError(f"{node.full_label}: the Dask runner here keeps the global window only")
        inputs = [None if isinstance(p, pvalue.PBegin) else self.bags[p] for p in node.inputs]
        self.consumed.update(p for p in node.inputs if not isinstance(p, pvalue.PBegin))
        self.consumed.update(si.pvalue for si in node.side_inputs)
        # By exact class, as Beam's TRANSLATIONS: the GroupByKey override's `_GroupAlsoByWindow`
        # (a ParDo subclass) must stay a no-op after Beam's GroupByKey, which unwindows values.
        if type(transform) is core.ParDo:
            (main,) = inputs
            pairs = self._pardo(node, main)
            for tag, output in node.outputs.items():
                self.bags[output] = pairs.map_partitions(_select, tag)
            return
        op = TRANSLATIONS.get(type(transform), beam_ops.NoOp)(node, bag_kwargs=self.bag_kwargs)
        flatten = isinstance(op, beam_ops.Flatten)
        bag = op.apply(input_bag=inputs if flatten or len(inputs) != 1 else inputs[0], side_inputs=None)
        for output in node.outputs.values():
            self.bags[output] = bag

    def _pardo(self, node: AppliedPTransform, main: db.Bag) -> db.Bag:
        transform = node.transform
        spec = _ParDoSpec(
            label=node.full_label,
            fn=pickler.dumps(transform.fn),
            # With Beam's placeholders for side inputs, as its DirectRunner passes them
            # (Beam's Dask ParDo passes the AsSideInput objects themselves).
            args=tuple(transform.args),
            kwargs=dict(transform.kwargs),
            views=tuple((type(si), si._view_options()) for si in node.side_inputs),
        )
        return main.map_partitions(_run_bundle, spec, *(self._side_list(si.pvalue) for si in node.side_inputs))

    def _side_list(self, pcoll: pvalue.PCollection) -> Delayed:
        """All of a side input's values in one list: one task, shared by its readers.

        Built from the bag's own keys: a `Bag.reduction` passed as an argument is
        optimized on its own, which fuses (and so runs again) the tasks it reads.
        """
        if pcoll not in self.side_lists:
            parts = self.bags[pcoll].to_delayed(optimize_graph=False)
            self.side_lists[pcoll] = dask.delayed(_concat, pure=True)(parts)
        return self.side_lists[pcoll]

    def sinks(self) -> list[db.Bag]:
        """The bags no transform reads: computing them runs every transform once."""
        return [bag.map_partitions(_nothing) for pcoll, bag in self.bags.items() if pcoll not in self.consumed]


class _NoMetrics(MetricResults):
    def query(self, filter: Any = None) -> dict[str, list[Any]]:  # noqa: A002 (Beam's signature)
        return {self.COUNTERS: [], self.DISTRIBUTIONS: [], self.GAUGES: [], self.STRINGSETS: [],
                self.BOUNDED_TRIES: []}


class DaskRunnerResult(beam_dask.DaskRunnerResult):
    """Beam's result, waiting on its own client (Beam's waits on the process's default
    one, which we do not set) and closing it once the job ends; no metrics."""

    def wait_until_finish(self, duration: float | None = None) -> str:
        import dask.distributed as ddist

        if self._state != PipelineState.RUNNING:
            return self._state
        try:
            if duration is not None:  # milliseconds, as Beam counts them
                ddist.wait(self.futures, timeout=duration / 1000)
            self.client.gather(self.futures)  # raises the error of a failed task
        except TimeoutError:
            return self._state
        except BaseException:
            self._state = PipelineState.FAILED
            self.client.close()
            raise
        self._state = PipelineState.DONE
        self.client.close()
        return self._state

    def metrics(self) -> MetricResults:
        log.warning("the Dask runner collects no Beam metrics: the job's counters are empty")
        return _NoMetrics()


class DaskRunner(beam_dask.DaskRunner):
    """Beam's DaskRunner with the translation of this module (module doc)."""

    def run_pipeline(self, pipeline: Pipeline, options: PipelineOptions) -> DaskRunnerResult:
        import dask.distributed as ddist

        dask_options = options.view_as(beam_dask.DaskOptions).get_all_options(drop_default=True, current_only=True)
        bag_kwargs = beam_dask.DaskOptions._extract_bag_kwargs(dask_options) or dict(DEFAULT_BAG_KWARGS)
        pipeline.replace_all(dask_overrides())
        visitor = _BagVisitor(bag_kwargs)
        pipeline.visit(visitor)
        # Not the default client: dask work elsewhere in this process stays where it was.
        client = ddist.Client(**dask_options, set_as_default=False)
        return DaskRunnerResult(client, client.compute(visitor.sinks()))
