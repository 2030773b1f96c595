"""Tokens back to per-field values: the inverse of `tokenize_episode`, for auditors and tests.

Works from a `TokenizedEpisode` or from the plain per-token columns of a Parquet row
(`tokens`, `modality`, `timestep`, `patch_pixels`; prompt and padding tokens, whose
timestep is -1, are skipped). Continuous values come back within half a bin, discrete
values and text ids exactly, images as the padded (or resized) frames.

A timestep is split into fields by the same rule that built it: observation fields in
path order, the separator, action fields in path order, each field's token count known
from its shape. Text lengths vary: from a Parquet row they are inferred from the
separator, which works when each role has at most one text field; otherwise pass
`field_lengths`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from schemas.fields import ACTION, OBSERVATION, PATH_SEPARATOR, FieldSpec, role_of
from schemas.output import MODALITY, NO_TIMESTEP, PATCH_PIXELS, TIMESTEP, TOKENS
from schemas.vocab import GATO, PATCH_SIZE, Encoding, Modality, VocabLayout
from transforms.continuous import tokens_to_values
from transforms.discrete import decode_discrete
from transforms.images import padded_size, unpatchify
from transforms.text import SentencePieceTokenizer
from transforms.field_tokens import PATCH_PIXELS as PIXELS_PER_CHANNEL
from transforms.field_tokens import ordered_paths
from transforms.tokenize import column_starts
from transforms.types import TokenizedEpisode


@dataclasses.dataclass(frozen=True)
class DecodedEpisode:
    """`fields[path]` has a leading axis over `timesteps` (the episode's timestep indices
    present, ascending). Continuous: float64; discrete: int64; text: object array of
    str; images: uint8 `[T, H', W', C]` (padded/resized frames)."""

    timesteps: np.ndarray
    fields: dict[str, np.ndarray]


def _token_count(spec: FieldSpec, shape: tuple[int, ...]) -> int | None:
    """Tokens per timestep of a fixed-length field; None for text."""
    if spec.modality is Modality.TEXT:
        return None
    if spec.modality is Modality.IMAGE:
        h, w = padded_size((shape[0], shape[1]), size=spec.image_size)
        return (h // PATCH_SIZE) * (w // PATCH_SIZE)
    return int(np.prod(shape, dtype=np.int64))


def _infer_lengths(
    paths: list[str],
    specs: Mapping[str, FieldSpec],
    shapes: Mapping[str, tuple[int, ...]],
    modality: np.ndarray,
    starts: np.ndarray,
) -> np.ndarray:
    """int64[T, F] field lengths; text from the separator (one text field per role)."""
    t = starts.shape[0] - 1
    seps = np.flatnonzero(modality == Modality.SEPARATOR)
    if seps.shape[0] != t or (t and ((seps < starts[:-1]) | (seps >= starts[1:])).any()):
        raise ValueError(
            f"expected one separator per timestep ({t} timesteps), found {seps.shape[0]}"
        )
    role_counts = {
        OBSERVATION: seps - starts[:-1],
        ACTION: starts[1:] - seps - 1,
    }
    lengths = np.zeros((t, len(paths)), dtype=np.int64)
    text_cols: dict[str, int] = {}
    for i, path in enumerate(paths):
        n = _token_count(specs[path], shapes.get(path, ()))
        if n is None:
            role = role_of(path)
            if role in text_cols:
                raise ValueError(
                    f"text fields {paths[text_cols[role]]!r} and {path!r} share a role: "
                    "their lengths cannot be inferred; pass field_lengths"
                )
            text_cols[role] = i
        else:
            lengths[:, i] = n
    for role, i in text_cols.items():
        fixed = sum(lengths[:, j] for j, p in enumerate(paths) if role_of(p) == role)
        lengths[:, i] = role_counts[role] - fixed
    return lengths


def _patch_source(patches: Any) -> tuple[np.ndarray, np.ndarray]:
    """(flat uint8 buffer, int64 offsets[P+1]) from a list of per-patch bytes."""
    items = [bytes(p) for p in patches]
    offsets = np.zeros(len(items) + 1, dtype=np.int64)
    np.cumsum([len(p) for p in items], out=offsets[1:])
    return np.frombuffer(b"".join(items), dtype=np.uint8), offsets


@dataclasses.dataclass(frozen=True)
class _Columns:
    """The episode's tokens (prompt and padding dropped), in token order; image token i
    carries patch `patch_of_token[i]`, `buffer[offsets[p]:offsets[p + 1]]`."""

    tokens: np.ndarray
    modality: np.ndarray
    timestep: np.ndarray
    patch_of_token: np.ndarray
    buffer: np.ndarray
    offsets: np.ndarray


@dataclasses.dataclass(frozen=True)
class _Layout:
    """Where each field sits: `cols[t, c]` tokens from `col_start[t, c]`, columns in token
    order (observation fields, the separator at column `sep`, action fields)."""

    timesteps: np.ndarray  # the timestep indices present, ascending
    cols: np.ndarray  # int64[T, F + 1]
    col_start: np.ndarray  # int64[T, F + 1]
    sep: int


def _source_columns(
    source: TokenizedEpisode | Mapping[str, Any],
    *,
    paths: list[str],
    specs: Mapping[str, FieldSpec],
    shapes: Mapping[str, tuple[int, ...]] | None,
    field_lengths: np.ndarray | None,
) -> tuple[_Columns, dict[str, tuple[int, ...]], np.ndarray | None]:
    """The episode's columns, the per-field shapes and field lengths (a `TokenizedEpisode`
    supplies its own unless given); every non-text field needs a shape."""
    if isinstance(source, TokenizedEpisode):
        tokens, modality, timestep = source.tokens, source.modality, source.timestep
        buffer, offsets = source.patch_pixels, source.patch_offsets
        shapes = dict(zip(source.field_paths, source.field_shapes)) if shapes is None else shapes
        if field_lengths is None and source.field_lengths is not None:
            field_lengths = source.field_lengths
    else:
        tokens = np.asarray(source[TOKENS], dtype=np.int64)
        modality = np.asarray(source[MODALITY], dtype=np.int8)
        timestep = np.asarray(source[TIMESTEP], dtype=np.int64)
        buffer, offsets = _patch_source(source[PATCH_PIXELS])
    shapes = dict(shapes or {})
    missing = [p for p in paths if specs[p].modality is not Modality.TEXT and p not in shapes]
    if missing:
        raise ValueError(f"decode needs the per-timestep shape of {missing}")
    is_image = modality == Modality.IMAGE
    if int(is_image.sum()) != offsets.shape[0] - 1:
        raise ValueError(
            f"{int(is_image.sum())} image tokens but {offsets.shape[0] - 1} patches"
        )
    patch_of_token = np.cumsum(is_image) - 1  # image token i carries patch patch_of_token[i]
    keep = np.flatnonzero(timestep != NO_TIMESTEP)
    columns = _Columns(tokens[keep], modality[keep], timestep[keep], patch_of_token[keep], buffer, offsets)
    return columns, shapes, field_lengths


def _layout(
    columns: _Columns,
    *,
    paths: list[str],
    specs: Mapping[str, FieldSpec],
    shapes: Mapping[str, tuple[int, ...]],
    field_lengths: np.ndarray | None,
) -> _Layout:
    """The fields' token spans per timestep; they must tile each timestep's tokens exactly,
    with the separator between observation and action."""
    if columns.timestep.shape[0] and (np.diff(columns.timestep) < 0).any():
        raise ValueError("timestep indices must be non-decreasing in token order")
    timesteps, counts = np.unique(columns.timestep, return_counts=True)
    starts = np.zeros(timesteps.shape[0] + 1, dtype=np.int64)
    np.cumsum(counts, out=starts[1:])
    if field_lengths is None:
        lengths = _infer_lengths(paths, specs, shapes, columns.modality, starts)
    else:
        lengths = np.asarray(field_lengths, dtype=np.int64).reshape(timesteps.shape[0], len(paths))
    sep = sum(1 for p in paths if role_of(p) != ACTION)
    cols = np.insert(lengths, sep, 1, axis=1)
    own_starts, col_start = column_starts(cols)
    if not np.array_equal(own_starts, starts):
        raise ValueError(
            "field lengths do not add up to the tokens of each timestep "
            f"(expected {np.diff(own_starts).tolist()[:5]}..., found {counts.tolist()[:5]}...)"
        )
    if (columns.modality[col_start[:, sep]] != Modality.SEPARATOR).any():
        raise ValueError("no separator between observation and action tokens")
    return _Layout(timesteps=timesteps, cols=cols, col_start=col_start, sep=sep)


def _field_tokens(columns: _Columns, *, layout: _Layout, column: int, path: str, spec: FieldSpec) -> np.ndarray:
    """Indices into `columns` of the field's tokens, timestep after timestep; a token of
    another modality than the spec's is an error naming field and timestep."""
    lens = layout.cols[:, column]
    index = np.repeat(layout.col_start[:, column], lens) + (
        np.arange(int(lens.sum())) - np.repeat(np.cumsum(lens) - lens, lens)
    )
    wrong = columns.modality[index] != spec.modality
    if wrong.any():
        at = int(np.flatnonzero(wrong)[0])
        raise ValueError(
            f"field {path!r}, timestep {int(columns.timestep[index[at]])}: token has modality "
            f"{int(columns.modality[index[at]])}, the spec says {spec.modality.name}"
        )
    return index


def _decode_image(
    columns: _Columns, *, index: np.ndarray, path: str, spec: FieldSpec, shape: tuple[int, ...], block: np.ndarray
) -> np.ndarray:
    """uint8 `[T, H', W', C]` frames from the patches of the field's tokens (`block` [T, tokens])."""
    h, w = padded_size((shape[0], shape[1]), size=spec.image_size)
    channels = shape[2] if len(shape) == 3 else 1
    nbytes = PIXELS_PER_CHANNEL * channels
    offsets = columns.offsets
    which = columns.patch_of_token[index]
    sizes = offsets[which + 1] - offsets[which]
    if (sizes != nbytes).any():
        raise ValueError(
            f"field {path!r}: patches of {int(sizes[sizes != nbytes][0])} bytes, "
            f"expected {nbytes} (16x16x{channels})"
        )
    pixels = columns.buffer[offsets[which][:, None] + np.arange(nbytes)]
    return unpatchify(
        pixels.reshape(block.shape[0], block.shape[1], nbytes),
        rows=h // PATCH_SIZE, cols=w // PATCH_SIZE, channels=channels,
    )


def _decode_field(
    columns: _Columns,
    *,
    index: np.ndarray,
    lens: np.ndarray,
    path: str,
    spec: FieldSpec,
    shapes: Mapping[str, tuple[int, ...]],
    layout: VocabLayout,
    text: SentencePieceTokenizer | None,
) -> np.ndarray:
    """One field's values over the timesteps, from its tokens (`index`, `lens` per timestep)."""
    t = lens.shape[0]
    ids = columns.tokens[index]
    if spec.modality is Modality.TEXT:
        if text is None:
            raise ValueError(f"field {path!r} is text: pass text=SentencePieceTokenizer")
        pieces = np.split(ids, np.cumsum(lens)[:-1])
        values = np.empty(t, dtype=object)
        values[:] = [text.decode(p) for p in pieces]  # one string per timestep
        return values
    shape = tuple(int(d) for d in shapes[path])
    # Explicit widths: reshape(0, -1) is ambiguous for a row without episode tokens.
    block = ids.reshape(t, _token_count(spec, shape) or 0)
    if spec.modality is Modality.CONTINUOUS:
        values = tokens_to_values(block, Encoding(spec.encoding), layout=layout)
        return values.reshape((t,) + shape)
    if spec.modality is Modality.DISCRETE:
        return decode_discrete(block, offset=spec.offset, layout=layout).reshape((t,) + shape)
    return _decode_image(columns, index=index, path=path, spec=spec, shape=shape, block=block)


def decode_episode(
    source: TokenizedEpisode | Mapping[str, Any],
    specs: Mapping[str, FieldSpec],
    *,
    shapes: Mapping[str, tuple[int, ...]] | None = None,
    layout: VocabLayout = GATO,
    text: SentencePieceTokenizer | None = None,
    field_lengths: np.ndarray | None = None,
) -> DecodedEpisode:
    """Per-field values of the timesteps in `source`.

    `source` is a `TokenizedEpisode`, or a mapping with the Parquet columns `tokens`,
    `modality`, `timestep` and `patch_pixels` (a row as `pyarrow`'s `to_pylist` gives
    it). `shapes` maps each non-text path to its per-timestep shape (images (H, W) or
    (H, W, C), as read or as padded); a `TokenizedEpisode` carries its own.
    `field_lengths` int[T, F] (fields in token order) overrides length inference.
    Tokens that disagree with the specs (wrong modality, id outside its range) raise
    `ValueError` naming field and timestep.
    """
    paths = ordered_paths(specs)
    columns, shapes, field_lengths = _source_columns(
        source, paths=paths, specs=specs, shapes=shapes, field_lengths=field_lengths
    )
    spans = _layout(columns, paths=paths, specs=specs, shapes=shapes, field_lengths=field_lengths)
    out: dict[str, np.ndarray] = {}
    for i, path in enumerate(paths):
        column = i + (i >= spans.sep)  # the separator's column comes before the actions
        index = _field_tokens(columns, layout=spans, column=column, path=path, spec=specs[path])
        out[path] = _decode_field(
            columns, index=index, lens=spans.cols[:, column], path=path, spec=specs[path], shapes=shapes,
            layout=layout, text=text,
        )
    return DecodedEpisode(timesteps=spans.timesteps, fields=out)


def nest(fields: Mapping[str, np.ndarray]) -> dict[str, Any]:
    """`{"observation/a/b": x}` -> `{"observation": {"a": {"b": x}}}` (for comparing with steps)."""
    out: dict[str, Any] = {}
    for path, value in fields.items():
        node = out
        *parents, leaf = path.split(PATH_SEPARATOR)
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return out


def as_row(episode: TokenizedEpisode) -> dict[str, Sequence[Any]]:
    """The per-token columns a Parquet row would carry for the whole episode (tests, audits)."""
    return {
        TOKENS: episode.tokens.tolist(),
        MODALITY: episode.modality.tolist(),
        TIMESTEP: episode.timestep.tolist(),
        PATCH_PIXELS: [
            episode.patch_pixels[a:b].tobytes()
            for a, b in zip(episode.patch_offsets[:-1], episode.patch_offsets[1:])
        ],
    }
