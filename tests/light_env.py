"""Real Python environments holding only the dependency closure of some requirements.

`make_env(root, requirements)` creates a venv (no pip, no system site-packages) and fills its
site-packages with links to the files the main environment has installed for exactly the
distributions those requirements need, transitively (markers and extras evaluated as pip
would). A package outside that closure (TensorFlow, Beam, ...) is *not installed* there: no
module, no metadata, so `import tensorflow` fails and `find_spec` says None, as after a real
`pip install` of those requirements. It takes a second or two and no network, where a real
install would download or rebuild ~1 GB.

The one difference from a real install: a directory shared by several distributions (the
`google` namespace) is linked whole, with the parts of distributions outside the closure.
"""

from __future__ import annotations

import importlib.metadata as md
import os
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name


def _installed() -> dict[str, md.Distribution]:
    return {canonicalize_name(d.metadata["Name"]): d for d in md.distributions()}


def _applies(requirement: Requirement, extras: Iterable[str]) -> bool:
    if requirement.marker is None:
        return True
    return any(requirement.marker.evaluate({"extra": extra}) for extra in ("", *extras))


def closure(requirements: Iterable[str]) -> set[str]:
    """Normalized names of the distributions `requirements` need, transitively."""
    installed = _installed()
    found: set[str] = set()
    todo = [(Requirement(r), ()) for r in requirements]
    seen: set[tuple[str, frozenset[str]]] = set()
    while todo:
        requirement, parent_extras = todo.pop()
        if not _applies(requirement, parent_extras):
            continue
        name = canonicalize_name(requirement.name)
        key = (name, frozenset(requirement.extras))
        if key in seen:
            continue
        seen.add(key)
        if name not in installed:
            raise ValueError(f"{requirement} is not installed in the main environment")
        found.add(name)
        for child in installed[name].requires or []:
            todo.append((Requirement(child), tuple(requirement.extras)))
    return found


def site_entries(names: Iterable[str]) -> set[str]:
    """Top-level site-packages entries (packages, modules, dist-info, .pth) of those distributions."""
    installed = _installed()
    entries: set[str] = set()
    for name in names:
        for file in installed[name].files or []:
            top = file.parts[0]
            if top != ".." and not top.startswith("__editable__"):
                entries.add(top)
    return entries


def installed_bytes(names: Iterable[str]) -> int:
    """Bytes on disk of every file those distributions installed (their RECORD, scripts included)."""
    installed = _installed()
    total = 0
    for name in names:
        for file in installed[name].files or []:
            path = Path(file.locate())
            if path.is_file():
                total += path.stat().st_size
    return total


def make_env(root: Path, requirements: Iterable[str]) -> Path:
    """A venv in `root` holding only the closure of `requirements`; returns its python."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(root)], check=True)
    site = next((root / "lib").glob("python3*/site-packages"))
    main_site = Path(md.distribution("numpy").locate_file(""))
    for entry in sorted(site_entries(closure(requirements))):
        source = main_site / entry
        if source.exists() and not (site / entry).exists():
            os.symlink(source, site / entry)
    return root / "bin" / "python"
