"""A filesystem spy for tests: what fsspec opens, lists and stats while a block runs.

`spy_on_files(monkeypatch)` patches fsspec's `AbstractFileSystem.open` (every filesystem
opens files through it) and the local filesystem's `ls` and `info`, and returns a
`FileSpy` that records each call. Stages that run in this interpreter (the
BundleBasedDirectRunner, plain functions) are seen; worker processes are not.
"""

from __future__ import annotations

import collections
import dataclasses
import threading
from typing import Any

import pytest
from fsspec.implementations.local import LocalFileSystem
from fsspec.spec import AbstractFileSystem


@dataclasses.dataclass
class FileSpy:
    """`opened`: (path, mode) of every file opened; `calls`: how often `ls` and `info` were
    called (the `info` calls a local listing makes for its entries are not counted)."""

    opened: list[tuple[str, str]] = dataclasses.field(default_factory=list)
    calls: collections.Counter = dataclasses.field(default_factory=collections.Counter)
    local: threading.local = dataclasses.field(default_factory=threading.local)

    def read(self, suffix: str = "") -> list[str]:
        """The paths ending in `suffix` that were opened for reading."""
        return [path for path, mode in self.opened if "r" in mode and str(path).endswith(suffix)]


def spy_on_files(monkeypatch: pytest.MonkeyPatch) -> FileSpy:
    spy = FileSpy()
    real_open, real_ls, real_info = AbstractFileSystem.open, LocalFileSystem.ls, LocalFileSystem.info

    def open_(self: AbstractFileSystem, path: str, mode: str = "rb", *args: Any, **kwargs: Any) -> Any:
        spy.opened.append((str(path), mode))
        return real_open(self, path, mode, *args, **kwargs)

    def ls(self: LocalFileSystem, path: str, *args: Any, **kwargs: Any) -> Any:
        spy.calls["ls"] += 1
        spy.local.listing = True
        try:
            return real_ls(self, path, *args, **kwargs)
        finally:
            spy.local.listing = False

    def info(self: LocalFileSystem, path: str, **kwargs: Any) -> Any:
        if not getattr(spy.local, "listing", False):  # not a listing's own stat of its entries
            spy.calls["info"] += 1
        return real_info(self, path, **kwargs)

    monkeypatch.setattr(AbstractFileSystem, "open", open_)
    monkeypatch.setattr(LocalFileSystem, "ls", ls)
    monkeypatch.setattr(LocalFileSystem, "info", info)
    return spy
