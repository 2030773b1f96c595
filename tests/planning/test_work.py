"""planning/work.py: a Plan's work items are sorted by (task, shard) and indexed 0..n-1, its
tasks sorted; a field tokenized two ways across tasks is an error."""

from __future__ import annotations

import logging

import pytest
from hypothesis import given
from hypothesis import strategies as st

from planning.work import Plan, all_fields, make_plan
from schemas.datasets import CONTROL_SUITE
from schemas.fields import continuous, discrete
from transforms.episode import WorkItem


def test_make_plan_sorts_and_indexes_the_work_items() -> None:
    shards = {"t/b": ("/d/b", ["/d/b/s-1", "/d/b/s-0"]), "t/a": ("/d/a", ["/d/a/s-0"])}
    fields = {"t/b": {"action": discrete()}, "t/a": {"action": continuous("linear")}}
    plan = make_plan(CONTROL_SUITE, fields, shards, {"t/a": {"action": (1,)}, "t/b": {"action": ()}})
    assert plan.work_items == (
        WorkItem("control_suite", "t/a", "/d/a", "/d/a/s-0", 0),
        WorkItem("control_suite", "t/b", "/d/b", "/d/b/s-0", 1),
        WorkItem("control_suite", "t/b", "/d/b", "/d/b/s-1", 2),
    )
    assert plan.tasks == ["t/a", "t/b"] and list(plan.task_fields) == ["t/a", "t/b"]
    assert plan.field_shapes == {"t/a": {"action": (1,)}, "t/b": {"action": ()}}
    assert plan.fields_for("t/b") == {"action": discrete()}


@given(st.dictionaries(st.sampled_from(["x/a", "x/b", "y/c"]), st.sets(st.integers(0, 20), max_size=5)))
def test_plan_invariants_hold_for_any_shards(shard_ids: dict[str, set[int]]) -> None:
    shards = {t: (f"/d/{t}", [f"/d/{t}/s-{i:02d}" for i in ids]) for t, ids in shard_ids.items()}
    fields = {t: {"action": discrete()} for t in shard_ids}
    plan = make_plan(CONTROL_SUITE, fields, shards, {t: {} for t in shard_ids})
    assert [w.index for w in plan.work_items] == list(range(sum(len(ids) for ids in shard_ids.values())))
    keys = [(w.task, w.shard_path) for w in plan.work_items]
    assert keys == sorted(keys)


def test_a_task_without_shards_is_planned_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="planning.work"):
        plan = make_plan(CONTROL_SUITE, {"t": {}}, {"t": ("/d/t", [])}, {"t": {}})
    assert plan.work_items == () and plan.tasks == ["t"]
    assert "tasks with no train shards (no episodes): ['t']" in caplog.text


def test_an_unplanned_task_is_an_error_listing_the_planned_ones() -> None:
    plan = Plan(dataset=CONTROL_SUITE, task_fields={"b": {}, "a": {}}, work_items=())
    with pytest.raises(ValueError, match=r"task 'c' is not in the plan; planned: \['a', 'b'\]"):
        plan.fields_for("c")


def test_all_fields_merges_tasks_and_refuses_two_tokenizations_of_one_path() -> None:
    same = Plan(CONTROL_SUITE, {"a": {"action": continuous("linear"), "observation/x": continuous()},
                                "b": {"action": continuous("linear"), "observation/y": continuous()}}, ())
    assert all_fields(same) == {"action": continuous("linear"), "observation/x": continuous(),
                                "observation/y": continuous()}
    differ = Plan(CONTROL_SUITE, {"a": {"action": continuous("linear")}, "b": {"action": continuous("mu_law")}}, ())
    with pytest.raises(ValueError, match="field 'action' is tokenized differently across tasks .* in 'b'"):
        all_fields(differ)


def test_each_work_item_carries_the_records_its_shard_promises() -> None:
    shards = {"t": ("/d/t", ["/d/t/s-1", "/d/t/s-0"])}
    plan = make_plan(CONTROL_SUITE, {"t": {}}, shards, {"t": {}}, records={"/d/t/s-0": 4, "/d/t/s-1": 0})
    assert [(w.shard_path, w.expected_records) for w in plan.work_items] == [("/d/t/s-0", 4), ("/d/t/s-1", 0)]
    unknown = make_plan(CONTROL_SUITE, {"t": {}}, shards, {"t": {}})
    assert [w.expected_records for w in unknown.work_items] == [None, None]
