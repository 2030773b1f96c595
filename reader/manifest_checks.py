"""What the reader checks in a manifest beyond `formats.manifest.read_manifest`.

`read_manifest` checks that the keys are there; a reader about to stream an output for
weeks must also not trust what they hold. `check_shard_entries`: every shard entry has
the types the reader relies on, and no file is listed twice (it would be read twice per
epoch). `check_shard_metadata`: a sequences shard carries, in its Parquet schema
metadata, the layout and sequence length it was written with (`formats.parquet_shards`);
they must be the manifest's, or the token ids mean something else than the manifest says.
`manifest_digest`: the sha256 of the manifest's bytes, the identity of one finished
output (a rebuilt output has another manifest), compared by
`reader.finished_output.Output.check_unchanged`.
"""

from __future__ import annotations

import hashlib
import json
import posixpath
import re
from collections.abc import Mapping, Sequence
from typing import Any

import fsspec

from formats.parquet_shards import decode_metadata
from schemas import output as out

_HEX_SHA256 = re.compile(r"[0-9a-fA-F]{64}")
# Schema metadata every sequences shard carries (`formats.parquet_shards.sequence_schema`).
_WRITTEN = (out.META_LAYOUT, out.META_FIELDS, out.META_IMAGE_NORMALIZATION, out.META_SEQUENCE_LENGTH)
# (shard metadata key, manifest key) pairs that must agree: what the token ids and the row
# length mean. (The image normalization states what a reader may apply to the raw uint8
# patches, checked by `check_compatible` when it normalizes; the bytes are the same.)
_AGREEING = (
    (out.META_LAYOUT, out.M_VOCABULARY),
    (out.META_SEQUENCE_LENGTH, out.M_SEQUENCE_LENGTH),
)


def manifest_digest(fs: fsspec.AbstractFileSystem, path: str) -> str:
    """Hex sha256 of the manifest file's bytes; FileNotFoundError when there is none."""
    with fs.open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def _check_entry(url: str, i: int, shard: Mapping[str, Any]) -> None:
    where = f"{url}: manifest field {out.M_SHARDS}[{i}]"
    for key in (out.S_PATH, out.S_DATASET, out.S_TASK):
        value = shard[key]
        if not isinstance(value, str) or not value:
            raise ValueError(f"{where}.{key} is {value!r}, not a non-empty string; the manifest is corrupt")
    rows = shard[out.S_ROWS]
    if isinstance(rows, bool) or not isinstance(rows, int) or rows < 0:
        raise ValueError(f"{where}.{out.S_ROWS} is {rows!r}, not a non-negative integer; the manifest is corrupt")
    sha = shard.get(out.S_SHA256)
    if sha is not None and not (isinstance(sha, str) and _HEX_SHA256.fullmatch(sha)):
        raise ValueError(f"{where}.{out.S_SHA256} is {sha!r}, not a hex sha256; the manifest is corrupt")


def check_shard_entries(url: str, shards: Sequence[Any]) -> None:
    """ValueError naming the entry and field of a shard entry the reader cannot trust:
    not an object, a field of the wrong type, or a file listed twice."""
    first: dict[str, int] = {}
    for i, shard in enumerate(shards):
        if not isinstance(shard, Mapping):
            raise ValueError(f"{url}: manifest field {out.M_SHARDS}[{i}] is {shard!r}, not an object")
        _check_entry(url, i, shard)
        path = posixpath.normpath(shard[out.S_PATH])
        if path in first:
            raise ValueError(
                f"{url}: manifest field {out.M_SHARDS!r} lists {path!r} twice (entries {first[path]} and {i}); "
                "its rows would be read twice per epoch, so the manifest is refused as corrupt"
            )
        first[path] = i


def _shown(value: Any) -> str:
    return json.dumps(value, sort_keys=True) if isinstance(value, (dict, list)) else repr(value)


def check_shard_metadata(
    url: str, relative: str, metadata: Mapping[bytes, bytes] | None, manifest: Mapping[str, Any]
) -> None:
    """ValueError when a sequences shard's schema metadata lacks what the writer puts there,
    or says another vocabulary or sequence length than the manifest."""
    metadata = metadata or {}
    for key in _WRITTEN:
        if key not in metadata:
            raise ValueError(
                f"{url}: shard {relative!r} lacks the schema metadata {key.decode()!r} every sequences "
                "shard of the pipeline carries; it was not written by the pipeline, or was rewritten"
            )
    try:
        decoded = decode_metadata(metadata)
    except (KeyError, ValueError, UnicodeDecodeError) as e:
        raise ValueError(f"{url}: shard {relative!r} has unreadable schema metadata ({e!r})") from e
    for key, manifest_key in _AGREEING:
        found, listed = decoded[key.decode()], manifest.get(manifest_key)
        if found != listed:
            raise ValueError(
                f"{url}: shard {relative!r} was written with {manifest_key} {_shown(found)} but the manifest "
                f"field {manifest_key!r} says {_shown(listed)}; the manifest does not describe its shards "
                "(edited by hand, or mixed with another job's files)"
            )
