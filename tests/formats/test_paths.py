"""safe_component / path_under: names never escape the output directory (issue 5, item 5)."""

from __future__ import annotations

import os
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from formats.paths import MAX_COMPONENT_CHARS, check_component, path_under, relative_path, safe_component

_SAFE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]*")


def test_readable_names_map_without_hash() -> None:
    assert safe_component("rlu_atari/Pong_run_1") == "rlu_atari__Pong_run_1"
    assert safe_component("atari") == "atari"
    assert safe_component("metaworld-v2.1") == "metaworld-v2.1"
    assert safe_component("a//b") == "a____b"


@pytest.mark.parametrize(
    "hostile",
    ["..", ".", "", "/", "../../etc", "a/../../b", "x\x00y", "\\..\\", ".hidden", "-rf",
     "a\\b", "C:\\x", "~", "$HOME", "a b", "é", "\n", "/" * 300, "x" * 500],
)
def test_hostile_names_become_one_safe_component(hostile: str) -> None:
    component = safe_component(hostile)
    assert _SAFE.fullmatch(component), component
    assert component not in (".", "..")
    assert not component.startswith(".")
    assert len(component) <= MAX_COMPONENT_CHARS
    assert check_component(component) == component


def test_sanitizing_adds_a_hash_so_lookalikes_differ() -> None:
    names = ["a/b", "a__b", "a_/b", "a/_b", "a b", "a_b", "a\x00b", "a?b", ".a", "_a"]
    components = [safe_component(n) for n in names]
    assert len(set(components)) == len(names)
    assert safe_component("a b").startswith("a_b-")
    assert safe_component("a_b") == "a_b"


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=200))
def test_any_text_gives_a_safe_component(name: str) -> None:
    component = safe_component(name)
    assert _SAFE.fullmatch(component)
    assert len(component) <= MAX_COMPONENT_CHARS
    assert safe_component(name) == component  # pure


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=60), st.text(max_size=60))
def test_distinct_names_give_distinct_components(a: str, b: str) -> None:
    if a != b:
        assert safe_component(a) != safe_component(b)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.text(max_size=40), min_size=1, max_size=4))
def test_path_under_stays_under_root(tmp_path_factory, names: list[str]) -> None:
    root = str(tmp_path_factory.getbasetemp() / "out")
    path = path_under(root, *(safe_component(n) for n in names))
    resolved = os.path.realpath(path)
    assert resolved.startswith(os.path.realpath(root) + os.sep)
    assert path.count("/") == root.count("/") + len(names)


@pytest.mark.parametrize("bad", ["..", ".", "", "a/b", "a\\b", "x\x00", ".git", "-x"])
def test_path_under_refuses_unsafe_components(bad: str) -> None:
    with pytest.raises(ValueError, match="unsafe path component"):
        path_under("/tmp/out", "sequences", bad)
    with pytest.raises(ValueError, match="unsafe path component"):
        relative_path("sequences", bad)


def test_path_under_urls_and_trailing_slashes() -> None:
    assert path_under("gs://bucket/out/", "sequences", "atari") == "gs://bucket/out/sequences/atari"
    assert path_under("/tmp/out") == "/tmp/out"
    assert relative_path("sequences", "atari", "part-00000-000.parquet") == (
        "sequences/atari/part-00000-000.parquet"
    )
    with pytest.raises(ValueError):
        path_under("", "x")
