"""WebDataset tar shards (as img2dataset writes them) -> `VLRecord`s, one shard per work item.

A sample is the run of consecutive members sharing a key: the member name up to the
first dot of its base name, directories kept (`part/000.jpg` -> `part/000`). Members
read: the image (`.jpg`, `.jpeg`, `.png`, `.webp`, the first one in tar order), the
caption (`.txt`) and the metadata (`.json`, parsed). Other members are not read.
The tar is streamed (mode "r|*", compressed or not), so a worker holds one sample.

Field mapping: a part's names are member paths, `txt` or `json.question`; a name that is
not a member's extension is looked up in the `.json` member (`question` reads
`json.question`). Where the mapping keeps `FieldMapping`'s default for the image or
captions, the image comes from the image member and the captions from `.txt`
(`wds_mapping`). The record key is always the sample key (spec section 8).

Bad input: a sample without an image gets `ImageRef(problem=MISSING_IMAGE)`; without
its caption (question, answer) a MISSING_FIELD problem; a `.json` that is not a JSON
object an UNREADABLE_RECORD problem. A tar that cannot be read on (a truncated or
garbled header, a short member), or a key that comes back after other samples, raises
`ValueError` naming the shard and the member: the samples before it have been yielded;
the pipeline's read stage turns the error into one UNREADABLE_RECORD reject for the
rest of the shard, or, with `--strict`, stops the job with it.
"""

from __future__ import annotations

import dataclasses
import json
import re
import tarfile
from collections.abc import Iterator
from typing import Any

import fsspec

from formats.vl_fields import MISSING, lookup, row_segments
from schemas.vl import UNREADABLE_RECORD, FieldMapping
from transforms.episode import WorkItem
from transforms.vl_types import VLRecord

IMAGE_EXTENSIONS = ("jpg", "jpeg", "png", "webp")
CAPTION_EXTENSION = "txt"
JSON_EXTENSION = "json"
READ_EXTENSIONS = frozenset({*IMAGE_EXTENSIONS, CAPTION_EXTENSION, JSON_EXTENSION})
IMAGE_PART = "jpg|jpeg|png|webp"  # the sample's first image member, whatever its extension
# key = base name up to its first dot, directories kept; extension = the rest (lower case).
_MEMBER_NAME = re.compile(r"^((?:.*/)?[^./][^/]*?)\.([^/]+)$")


def split_member(name: str) -> tuple[str, str] | None:
    """(sample key, extension) of a member name; None for a name without an extension."""
    match = _MEMBER_NAME.match(name)
    if match is None:
        return None
    key, rest = match.groups()
    return key, rest.lower()


def wds_mapping(mapping: FieldMapping) -> FieldMapping:
    """The mapping with WebDataset's sources for the image and captions where `mapping`
    keeps FieldMapping's defaults (which name Parquet columns)."""
    defaults = FieldMapping()
    changes: dict[str, tuple[str, ...]] = {}
    if mapping.image == defaults.image:
        changes["image"] = (IMAGE_PART,)
    if mapping.captions == defaults.captions:
        changes["captions"] = (CAPTION_EXTENSION,)
    return dataclasses.replace(mapping, **changes)


class SampleView(dict):
    """A sample's members by extension (`json` parsed), falling back to the `.json`
    object for names no member has, as `formats.vl_fields.lookup` reads it."""

    def __init__(self, members: dict[str, Any]) -> None:
        super().__init__(members)
        metadata = members.get(JSON_EXTENSION)
        self.metadata = metadata if isinstance(metadata, dict) else {}

    def __contains__(self, name: object) -> bool:
        return dict.__contains__(self, name) or lookup(self.metadata, str(name)) is not MISSING

    def __getitem__(self, name: str) -> Any:
        if dict.__contains__(self, name):
            return dict.__getitem__(self, name)
        value = lookup(self.metadata, name)
        if value is MISSING:
            raise KeyError(name)
        return value


def iter_samples(url: str, *, source_file: str) -> Iterator[tuple[str, dict[str, bytes]]]:
    """(sample key, {extension: member bytes}) in tar order (module doc for errors)."""
    seen: set[str] = set()
    key: str | None = None
    members: dict[str, bytes] = {}
    last = "(start of the shard)"
    with fsspec.open(url, "rb") as handle:
        try:
            tar = tarfile.open(fileobj=handle, mode="r|*")
        except (tarfile.TarError, OSError, EOFError) as e:
            raise ValueError(f"{source_file}: not a readable tar file: {e}") from e
        while True:
            try:
                member = tar.next()
            except (tarfile.TarError, OSError, EOFError) as e:
                raise ValueError(f"{source_file}: broken tar after member {last!r}: {e}") from e
            if member is None:
                break
            parts = split_member(member.name) if member.isfile() else None
            if parts is None:
                last = member.name
                continue
            if parts[0] != key:
                # The previous sample is whole once the next one's header is read: yield it
                # before this member's data, which may be where the shard breaks off.
                if key is not None:
                    yield key, members
                if parts[0] in seen:
                    raise ValueError(f"{source_file}: member {member.name!r}: sample {parts[0]!r} comes back after other samples")
                key, members = parts[0], {}
                seen.add(key)
            if parts[1] in READ_EXTENSIONS:
                try:
                    data = tar.extractfile(member).read()
                except (tarfile.TarError, OSError, EOFError) as e:
                    raise ValueError(f"{source_file}: broken tar in member {member.name!r}: {e}") from e
                members.setdefault(parts[1], data)
            last = member.name
    if key is not None:
        yield key, members


def sample_view(members: dict[str, bytes]) -> tuple[SampleView, str | None]:
    """The sample as a lookup view (module doc), and why its `.json` is unreadable."""
    view: dict[str, Any] = dict(members)
    problem = None
    if JSON_EXTENSION in members:
        try:
            parsed = json.loads(members[JSON_EXTENSION].decode("utf-8", "surrogateescape"))
        except json.JSONDecodeError as e:
            parsed, problem = None, f"member .json is not JSON ({e})"
        if parsed is not None and not isinstance(parsed, dict):
            parsed, problem = None, f"member .json holds a JSON {type(parsed).__name__}, not an object"
        view[JSON_EXTENSION] = parsed
    image = next((members[ext] for ext in IMAGE_EXTENSIONS if ext in members), None)
    if image is not None:
        view[IMAGE_PART] = image
    return SampleView(view), problem


def read_webdataset(item: WorkItem, *, kind: str, mapping: FieldMapping) -> Iterator[VLRecord]:
    """The samples of one tar shard as records, in tar order (`index_in_file` = sample)."""
    mapping = wds_mapping(mapping)
    for index, (key, members) in enumerate(iter_samples(item.shard_path, source_file=item.source_file)):
        view, json_problem = sample_view(members)
        segments, problems = row_segments(view, mapping, kind=kind, base_url="")
        if json_problem is not None:
            problems.insert(0, (UNREADABLE_RECORD, JSON_EXTENSION, json_problem))
        yield VLRecord(
            dataset=item.dataset, task=item.task, kind=kind, key=key, source_file=item.source_file,
            index_in_file=index, work_item=item.index, segments=tuple(segments), problems=tuple(problems),
        )
