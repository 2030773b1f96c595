"""The vision-language readers' entry points: one work item -> its `VLRecord`s by format,
the start-up check that refuses images given only as URLs, and a format's input files.

`read_records` is lazy and yields in file order (each reader's module says how it
reads and what bad input becomes). `find_url_only` reads only the first rows of one
file: a job must stop before any worker starts when its images are URLs (a worker never
touches the network), with one line saying to download them first.
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Iterator
from typing import Any

from formats.files import join_url, output_filesystem
from formats.vl_fields import first_present, is_url
from formats.vl_parquet import iter_rows, read_parquet
from formats.vl_tfds import read_tfds
from formats.vl_text import iter_lines, parse_line, read_jsonl, read_txt
from formats.vl_webdataset import IMAGE_EXTENSIONS, iter_samples, read_webdataset, sample_view, wds_mapping
from schemas.vl import (
    FORMAT_JSONL,
    FORMAT_PARQUET,
    FORMAT_SUFFIXES,
    FORMAT_TFDS,
    FORMAT_TXT,
    FORMAT_WEBDATASET,
    FORMATS,
    KIND_INTERLEAVED,
    KIND_TEXT,
    FieldMapping,
)
from transforms.episode import WorkItem
from transforms.vl_types import VLRecord

URL_CHECK_ROWS = 16  # rows (samples) of one file the start-up check reads
URL_COLUMNS = ("url", "URL", "image_url")  # img2dataset's input and output name the link `url`
DOWNLOAD_FIRST = (
    "a worker never touches the network: download the images first (e.g. with img2dataset, "
    "which writes WebDataset tars or Parquet with image bytes) and point the job at the result"
)


def read_records(item: WorkItem, *, kind: str, format: str, mapping: FieldMapping) -> Iterator[VLRecord]:
    """The records of one work item (one file or tar shard), lazily, in file order."""
    if format == FORMAT_PARQUET:
        return read_parquet(item, kind=kind, mapping=mapping)
    if format == FORMAT_WEBDATASET:
        return read_webdataset(item, kind=kind, mapping=mapping)
    if format == FORMAT_TFDS:
        return read_tfds(item, kind=kind, mapping=mapping)
    if format == FORMAT_JSONL:
        return read_jsonl(item, kind=kind, mapping=mapping)
    if format == FORMAT_TXT:
        return read_txt(item, kind=kind)
    raise ValueError(f"unknown format {format!r}; known: {FORMATS}")


def _url_in_image(value: Any) -> str | None:
    """The URL an image value holds instead of an image, None if it holds none."""
    if isinstance(value, dict) and value.get("bytes") is None:
        value = value.get("path")
    if isinstance(value, list):  # interleaved: the page's images
        return next((u for u in map(_url_in_image, value) if u is not None), None)
    if is_url(value):
        return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
    return None


def _first_url(rows: Iterator[Any], image_names: tuple[str, ...]) -> tuple[str, str] | None:
    """(where, the URL) of the first image given only as a URL in `rows`."""
    for row in itertools.islice(rows, URL_CHECK_ROWS):
        name, value = first_present(row, image_names)
        if name is not None:
            url = _url_in_image(value)
            if url is not None:
                return f"field {name!r}", url
            continue
        # No image field: an img2dataset-style link column, and no image bytes beside it?
        link_name, link = first_present(row, URL_COLUMNS)
        bytes_name, _ = first_present(row, IMAGE_EXTENSIONS)
        if link_name is not None and bytes_name is None and is_url(link):
            return f"field {link_name!r} and no image field {list(image_names)}", _url_in_image(link) or ""
    return None


def _sample_rows(url: str, *, format: str) -> Iterator[Any]:
    """The rows (WebDataset: sample views) of one file, for the start-up check."""
    if format == FORMAT_WEBDATASET:
        for _, members in iter_samples(url, source_file=url):
            yield sample_view(members)[0]
    elif format == FORMAT_JSONL:
        yield from (row for row in map(parse_line, iter_lines(url)) if isinstance(row, dict))
    else:
        raise ValueError(f"unknown format {format!r}; known: {FORMATS}")


def find_url_only(url: str, *, kind: str, format: str, mapping: FieldMapping) -> str | None:
    """A one-line message when the first rows of the file at `url` give images only as
    URLs (an image column of http(s) strings, a `url` column and no image, a WebDataset
    sample with only a `.json` holding a url); None otherwise (text kinds, TFDS: None)."""
    if kind == KIND_TEXT or format in (FORMAT_TFDS, FORMAT_TXT):
        return None
    names = mapping.images if kind == KIND_INTERLEAVED else mapping.image
    if format == FORMAT_PARQUET:
        rows = iter_rows(url, mapping, batch_rows=URL_CHECK_ROWS, extra=(*URL_COLUMNS, *IMAGE_EXTENSIONS))
    else:
        if format == FORMAT_WEBDATASET and kind != KIND_INTERLEAVED:
            names = wds_mapping(mapping).image
        rows = _sample_rows(url, format=format)
    with contextlib.closing(rows):  # the file is closed once the first rows are seen
        found = _first_url(rows, names)
    if found is None:
        return None
    where, link = found
    return f"{url}: images are given only as URLs ({where}, e.g. {link!r}); {DOWNLOAD_FIRST}"


def vl_input_files(root: str, *, format: str) -> list[str]:
    """The files of `format` under `root` (a directory, searched recursively, or one
    file), sorted, as URLs in `root`'s form. TFDS shards come from dataset_info.json."""
    suffixes = FORMAT_SUFFIXES.get(format)
    if suffixes is None:
        raise ValueError(f"unknown format {format!r}; known: {FORMATS}")
    if not suffixes:
        raise ValueError(f"format {format!r} lists its shards in dataset_info.json, not by file name")
    fs, base = output_filesystem(root)
    if fs.isfile(base):
        return [root] if base.endswith(suffixes) else []
    prefix = base.rstrip("/") + "/"
    found = (p for p in fs.find(base) if p.startswith(prefix) and p.endswith(suffixes))
    return [join_url(root, p[len(prefix):]) for p in sorted(found)]
