"""Open finished outputs by their manifests, and check that several can be mixed.

An output is finished exactly when its `manifest.json` exists (the writer writes it
last), so a directory without one is refused, never read partially. Outputs mixed into
one stream must share the vocabulary layout and the sequence length: ids of one layout
mean something else in another, and batches are [B, L] arrays.
"""

from __future__ import annotations

import dataclasses
import posixpath
from collections.abc import Mapping, Sequence
from typing import Any

import fsspec

from formats.manifest import manifest_location, read_manifest
from schemas import output as out
from schemas.vocab import IMAGE_NORMALIZATION, VocabLayout, get_layout


@dataclasses.dataclass(frozen=True)
class Output:
    """One finished output: where it lives and its parsed manifest.

    Invariant: `manifest` holds every key of `formats.manifest.REQUIRED_KEYS`, and every
    shard entry every key of `REQUIRED_SHARD_KEYS` (`read_manifest` checks them).
    """

    url: str  # as the user gave it (directory or manifest URL)
    root: str  # the output directory, as a path inside `fs`
    fs: fsspec.AbstractFileSystem
    manifest: Mapping[str, Any]

    @property
    def vocabulary(self) -> dict[str, Any]:
        return dict(self.manifest[out.M_VOCABULARY])

    @property
    def sequence_length(self) -> int:
        return int(self.manifest[out.M_SEQUENCE_LENGTH])

    @property
    def image_normalization(self) -> str | None:
        return self.manifest.get(out.M_IMAGE_NORMALIZATION)

    @property
    def config_hash(self) -> str:
        return str(self.manifest.get(out.M_CONFIG_HASH, ""))

    @property
    def shards(self) -> list[Mapping[str, Any]]:
        return list(self.manifest[out.M_SHARDS])

    @property
    def sampling_weights(self) -> Mapping[str, Any]:
        return self.manifest.get(out.M_SAMPLING_WEIGHTS) or {}

    def shard_path(self, relative: str) -> str:
        """The fs path of a shard listed with a relative '/'-separated path."""
        if relative.startswith("/") or ".." in relative.split("/"):
            raise ValueError(
                f"{self.url}: manifest lists shard path {relative!r}, which is not a relative "
                "path inside the output directory; the manifest is corrupt"
            )
        return posixpath.join(self.root, relative)


def open_output(url: str) -> Output:
    """Open the output at `url` (its directory or its manifest.json; local or any fsspec URL).

    Raises ValueError when the manifest is missing (unfinished output), unreadable, of
    another format version, or lacks a required key.
    """
    fs, root, _ = manifest_location(url)
    manifest = read_manifest(url)
    return Output(url=url, root=root, fs=fs, manifest=manifest)


def check_compatible(
    outputs: Sequence[Output],
    *,
    layout: VocabLayout | str | None = None,
    normalize_images: bool = False,
) -> tuple[VocabLayout, int]:
    """The shared (layout, sequence length) of `outputs`, or ValueError saying which differ.

    `layout`, when given, is the layout the model expects: every output must use it.
    `normalize_images` requires every output to state the normalization the reader applies.
    """
    if not outputs:
        raise ValueError("no outputs given: pass at least one output directory or manifest URL")
    first = outputs[0]
    if layout is not None:
        wanted = get_layout(layout) if isinstance(layout, str) else layout
        expected, expected_from = wanted.to_metadata(), f"the requested layout {wanted.name!r}"
    else:
        expected, expected_from = first.vocabulary, first.url
    for o in outputs:
        if o.vocabulary != expected:
            raise ValueError(
                f"{o.url}: vocabulary layout {o.vocabulary} differs from {expected_from} "
                f"({expected}); token ids of different layouts mean different things, so these "
                "outputs cannot be mixed (re-run the pipeline with one --vocabulary layout)"
            )
        if o.sequence_length != first.sequence_length:
            raise ValueError(
                f"{o.url}: sequence_length {o.sequence_length} differs from {first.url} "
                f"({first.sequence_length}); batches need one length"
            )
        if normalize_images and o.image_normalization not in (None, IMAGE_NORMALIZATION):
            raise ValueError(
                f"{o.url}: image normalization {o.image_normalization!r} is not the one this "
                f"reader applies ({IMAGE_NORMALIZATION!r}); read raw patches instead"
            )
    try:
        resolved = VocabLayout(**expected)
    except TypeError as e:
        raise ValueError(f"{first.url}: vocabulary metadata {expected} is not a layout ({e})") from e
    return resolved, first.sequence_length
