"""Safe output paths: the only way a name becomes part of a path under `--output_dir`.

Dataset and task names come from the registry and from users' RLDS directories
(`rlu_atari/Pong_run_1`, or anything a directory listing yields), so they are never
joined into a path as they are. `safe_component` maps a name to one path component
that can never climb out of its parent, hide itself, or name a different directory;
`path_under` joins components and refuses anything that is not such a component.

Invariants of `safe_component(name)`:
- the result matches `[A-Za-z0-9_][A-Za-z0-9._-]*`, is at most `MAX_COMPONENT_CHARS`
  long, and is never empty, `.`, `..` or hidden (no leading dot);
- a name made only of `[A-Za-z0-9._-]` and `/` (no leading dot or dash, no underscore
  next to `/` or another underscore, not too long) maps readably: `/` becomes `__`
  and nothing else changes;
- any other name gets a short sha256 suffix of the original, so distinct names give
  distinct components (up to a 48-bit hash collision).
"""

from __future__ import annotations

import hashlib
import re

MAX_COMPONENT_CHARS = 120
SLASH_REPLACEMENT = "__"
_HASH_CHARS = 12  # 48 bits of sha256: collisions need ~16M names in one directory
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")
_SAFE_COMPONENT = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]*")


def _short_hash(name: str) -> str:
    return hashlib.sha256(name.encode("utf-8", "surrogatepass")).hexdigest()[:_HASH_CHARS]


def safe_component(name: str) -> str:
    """One path component for `name` (see the module invariants)."""
    if not isinstance(name, str):
        raise TypeError(f"safe_component needs a str name, got {type(name).__name__}")
    # `/` -> `__` is reversible only when no underscore touches a slash or another one.
    readable = not any(run in name for run in ("__", "_/", "/_"))
    text = name.replace("/", SLASH_REPLACEMENT)
    sanitized = _UNSAFE.sub("_", text)
    # A leading dot would hide the directory (and `.`/`..` would climb); a leading dash
    # reads as an option to command-line tools.
    sanitized = re.sub(r"^[.-]+", lambda m: "_" * len(m.group(0)), sanitized)
    if readable and sanitized == text and 0 < len(sanitized) <= MAX_COMPONENT_CHARS:
        return sanitized
    keep = MAX_COMPONENT_CHARS - _HASH_CHARS - 1
    head = sanitized[:keep] or "_"
    return f"{head}-{_short_hash(name)}"


def check_component(component: str) -> str:
    """`component` itself if it is a safe path component, else a ValueError saying why."""
    if not isinstance(component, str) or not _SAFE_COMPONENT.fullmatch(component):
        raise ValueError(
            f"unsafe path component {component!r}: components must match "
            f"{_SAFE_COMPONENT.pattern} (make names safe with formats.paths.safe_component)"
        )
    if len(component) > MAX_COMPONENT_CHARS:
        raise ValueError(f"path component too long ({len(component)} chars): {component[:40]!r}...")
    return component


def path_under(root: str, *components: str) -> str:
    """`root/c1/c2/...`, refusing any component that could escape `root`.

    `root` may be a local path or a URL (`gs://bucket/out`); the result always uses `/`.
    """
    if not root:
        raise ValueError("empty output root")
    for component in components:
        check_component(component)
    base = root.rstrip("/") or "/"
    if not components:
        return base
    return base.rstrip("/") + "/" + "/".join(components)


def relative_path(*components: str) -> str:
    """The `/`-joined relative path of safe components (as listed in the manifest)."""
    if not components:
        raise ValueError("a relative path needs at least one component")
    return "/".join(check_component(c) for c in components)
