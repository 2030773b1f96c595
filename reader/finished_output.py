"""Open finished outputs by their manifests, and check that several can be mixed.

An output is finished exactly when its `manifest.json` exists (the writer writes it
last), so a directory without one is refused, never read partially. Outputs mixed into
one stream must share the vocabulary layout and the sequence length: ids of one layout
mean something else in another, and batches are [B, L] arrays.

An opened output is the one manifest it was opened with: `Output.manifest_sha256` is the
sha256 of that manifest's bytes, and `check_unchanged` (called by the stream whenever it
opens a shard) refuses to go on once the directory holds another manifest or none, e.g.
after `--overwrite` rebuilt it, so a live reader never mixes rows of two builds.
"""

from __future__ import annotations

import dataclasses
import posixpath
from collections.abc import Mapping, Sequence
from typing import Any

import fsspec

from formats.manifest import manifest_location, read_manifest
from reader.manifest_checks import check_shard_entries, manifest_digest
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
    manifest_sha256: str = ""  # of the manifest's bytes when opened ("": not known, never checked)
    manifest_path: str = ""  # the manifest, as a path inside `fs`

    def check_unchanged(self) -> None:
        """ValueError if the output's manifest is no longer the one this Output was opened with."""
        if not self.manifest_sha256:
            return
        try:
            now = manifest_digest(self.fs, self.manifest_path)
        except FileNotFoundError:
            raise ValueError(
                f"{self.url}: {out.MANIFEST_FILE} is gone while this reader was streaming the output "
                "(it is being rebuilt, e.g. by --overwrite, or was deleted); the reader stops rather than "
                "mix two builds: open the finished output again with a new GatoReader"
            ) from None
        if now != self.manifest_sha256:
            raise ValueError(
                f"{self.url}: {out.MANIFEST_FILE} changed while this reader was streaming it (sha256 "
                f"{self.manifest_sha256} when opened, {now} now): the output was rebuilt (e.g. --overwrite). "
                "The reader stops rather than mix rows of two builds; open it again with a new GatoReader "
                "(a state saved from this stream does not resume the new build)"
            )

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


def _digest_or_empty(fs: fsspec.AbstractFileSystem, path: str) -> str:
    try:
        return manifest_digest(fs, path)
    except FileNotFoundError:
        return ""


def open_output(url: str) -> Output:
    """Open the output at `url` (its directory or its manifest.json; local or any fsspec URL).

    Raises ValueError when the manifest is missing (unfinished output), unreadable, of
    another format version, lacks a required key, or lists a shard entry the reader cannot
    trust (`reader.manifest_checks.check_shard_entries`).
    """
    fs, root, path = manifest_location(url)
    # The digest before and after parsing: equal, they are the digest of the parsed manifest.
    for _ in range(3):
        before = _digest_or_empty(fs, path)
        manifest = read_manifest(url)  # refuses a missing or corrupt manifest, with its own message
        if before and before == _digest_or_empty(fs, path):
            break
    else:
        raise ValueError(f"{url}: {out.MANIFEST_FILE} keeps changing while it is read (a job is writing it)")
    check_shard_entries(url, manifest[out.M_SHARDS])
    return Output(url=url, root=root, fs=fs, manifest=manifest, manifest_sha256=before, manifest_path=path)


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
