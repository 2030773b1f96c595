"""One episode's step fields -> one block of tokens per field, `[T, k]` (or ragged text),
each value checked (spec section 2); `transforms/tokenize.py` lays the blocks out.

A field's leaf is encoded once for all T timesteps. With `check=True` every error is the
same, but images, continuous and discrete values get shape-only tokens (their widths are
all a check needs): pass 1's verdict makes no tokens (`tokenize.checked_timestep_starts`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import numpy as np

from schemas.fields import ACTION, OBSERVATION, FieldSpec, join_path, role_of
from schemas.vocab import GATO, PATCH_SIZE, Encoding, Modality, VocabLayout
from transforms.continuous import check_continuous, encode_continuous
from transforms.discrete import check_discrete, encode_discrete
from transforms.errors import BAD_SHAPE, MISSING_FIELD, UNKNOWN_FIELD, TokenizationError
from transforms.images import image_grid, image_patches, patch_positions
from transforms.text import SentencePieceTokenizer

_ROLES = (OBSERVATION, ACTION)
PATCH_PIXELS = PATCH_SIZE * PATCH_SIZE  # pixels per patch and channel


@dataclasses.dataclass(frozen=True)
class EncodedField:
    """One field encoded for all T timesteps.

    Exactly one of `tokens` (int32 `[T, k]`) and `ragged` (text: every timestep's ids
    concatenated, int32, and ids per timestep, int64[T]) is set.
    Image fields also carry `patches` uint8 `[T, P, 256*C]` (P == k) and `positions`.
    """

    path: str
    spec: FieldSpec
    shape: tuple[int, ...]
    tokens: np.ndarray | None = None
    ragged: tuple[np.ndarray, np.ndarray] | None = None
    patches: np.ndarray | None = None
    positions: np.ndarray | None = None

    @property
    def is_action(self) -> bool:
        return role_of(self.path) == ACTION

    @property
    def loss(self) -> bool:
        return self.is_action if self.spec.loss is None else bool(self.spec.loss)

    def lengths(self, num_timesteps: int) -> np.ndarray:
        """int64[T]: tokens per timestep."""
        if self.tokens is not None:
            return np.full(num_timesteps, self.tokens.shape[1], dtype=np.int64)
        return self.ragged[1]  # type: ignore[index]  # exactly one of tokens and ragged is set


def flatten_fields(steps: Mapping[str, Any]) -> dict[str, Any]:
    """`{path: leaf}` of the observation and action subtrees (other top-level keys ignored).

    Nested dicts become `/`-joined paths; a non-dict `observation` is the path `observation`.
    """
    out: dict[str, Any] = {}

    def walk(prefix: str, node: Any) -> None:
        if isinstance(node, Mapping):
            for key, child in node.items():
                walk(join_path(prefix, str(key)), child)
        else:
            out[prefix] = node

    for role in _ROLES:
        if role in steps:
            walk(role, steps[role])
    return out


def ordered_paths(paths: list[str] | tuple[str, ...] | Any) -> list[str]:
    """Token order of fields: observation paths sorted, then action paths sorted."""
    paths = list(paths)
    return [p for role in _ROLES for p in sorted(p for p in paths if role_of(p) == role)]


def _num_timesteps(path: str, leaf: Any) -> int:
    shape = np.shape(leaf) if not isinstance(leaf, (list, tuple)) else (len(leaf),)
    if len(shape) == 0:
        raise TokenizationError(
            BAD_SHAPE, "a step field needs a leading time axis, got a scalar", field=path
        )
    return int(shape[0])


def _as_array(leaf: Any) -> np.ndarray:
    try:
        return np.asarray(leaf)
    except ValueError as exc:  # e.g. ragged nested lists
        raise TokenizationError(BAD_SHAPE, f"values do not form an array: {exc}") from None


def _per_step(tokens: np.ndarray, num_timesteps: int) -> np.ndarray:
    """`[T, ...]` -> `[T, k]` (explicit k: `reshape(0, -1)` is ambiguous)."""
    return tokens.reshape(num_timesteps, int(np.prod(tokens.shape[1:], dtype=np.int64)))


def _shape_only(num_timesteps: int, width: int) -> np.ndarray:
    """`[T, width]` tokens whose values nobody reads (a check): a view of one zero."""
    return np.broadcast_to(np.int32(0), (num_timesteps, width))


def _encode_field(
    path: str,
    leaf: Any,
    spec: FieldSpec,
    *,
    layout: VocabLayout,
    text: SentencePieceTokenizer | None,
    num_timesteps: int,
    check: bool = False,
    verified: bool = False,
) -> EncodedField:
    t = num_timesteps
    if check and spec.modality in (Modality.CONTINUOUS, Modality.DISCRETE):
        x = _as_array(leaf)
        if spec.modality is Modality.CONTINUOUS:
            check_continuous(x, leading_time_axis=True)
        else:
            check_discrete(x, offset=spec.offset, leading_time_axis=True)
        return EncodedField(path, spec, x.shape[1:], tokens=_shape_only(t, int(np.prod(x.shape[1:], dtype=np.int64))))
    if spec.modality is Modality.CONTINUOUS:
        x = _as_array(leaf)
        tokens = encode_continuous(
            x, Encoding(spec.encoding), layout=layout, leading_time_axis=True
        )
        return EncodedField(path, spec, x.shape[1:], tokens=_per_step(tokens, t))
    if spec.modality is Modality.DISCRETE:
        x = _as_array(leaf)
        tokens = encode_discrete(x, offset=spec.offset, layout=layout, leading_time_axis=True)
        return EncodedField(path, spec, x.shape[1:], tokens=_per_step(tokens, t))
    if spec.modality is Modality.IMAGE:
        if check:  # frames checked, decoded only where the check cannot vouch for them
            rows, cols, channels = image_grid(leaf, size=spec.image_size)
            shape = (rows * PATCH_SIZE, cols * PATCH_SIZE, channels)
            return EncodedField(path, spec, shape, tokens=_shape_only(t, rows * cols))
        patches, rows, cols = image_patches(leaf, size=spec.image_size, verified=verified)
        channels = patches.shape[2] // PATCH_PIXELS if patches.shape[1] else 1
        shape = (rows * PATCH_SIZE, cols * PATCH_SIZE, channels)
        tokens = np.full((t, rows * cols), layout.image_placeholder, dtype=np.int32)
        return EncodedField(
            path, spec, shape, tokens=tokens, patches=patches,
            positions=patch_positions((rows, cols)),
        )
    if spec.modality is Modality.TEXT:
        if text is None:
            raise ValueError(
                f"field {path!r} is text but no SentencePiece model was given "
                "(pass text=SentencePieceTokenizer.from_path(...))"
            )
        items = list(leaf) if isinstance(leaf, (list, tuple)) else np.asarray(leaf)
        if not isinstance(items, list) and items.ndim != 1:
            raise TokenizationError(
                BAD_SHAPE, f"text must be one string per timestep, got shape {items.shape}",
                value=items.shape,
            )
        return EncodedField(path, spec, (), ragged=text.encode_flat(list(items)))
    raise ValueError(f"field {path!r}: modality {spec.modality!r} cannot be tokenized")


def encode_fields(
    steps: Mapping[str, Any],
    specs: Mapping[str, FieldSpec],
    *,
    layout: VocabLayout = GATO,
    text: SentencePieceTokenizer | None = None,
    episode: str | None = None,
    check: bool = False,
    verified: bool = False,
) -> tuple[int, list[EncodedField]]:
    """(T, fields in token order): check leaves against specs, encode each field.

    `check`: every error encoding raises, but image, continuous and discrete fields get
    shape-only tokens (`checked_timestep_starts`). `verified`: as `tokenize_episode`'s."""
    leaves = flatten_fields(steps)
    for path in sorted(set(leaves) - set(specs)):
        raise TokenizationError(
            UNKNOWN_FIELD, "step field has no spec (add one to the dataset registry)",
            episode=episode, field=path,
        )
    for path in sorted(set(specs) - set(leaves)):
        raise TokenizationError(
            MISSING_FIELD, "spec names a field the steps do not have",
            episode=episode, field=path,
        )
    paths = ordered_paths(leaves)
    num_timesteps: int | None = None
    first = ""
    fields: list[EncodedField] = []
    for path in paths:
        try:
            t = _num_timesteps(path, leaves[path])
            if num_timesteps is None:
                num_timesteps, first = t, path
            elif t != num_timesteps:
                raise TokenizationError(
                    BAD_SHAPE,
                    f"field has {t} timesteps but {first!r} has {num_timesteps}",
                    value=t,
                )
            fields.append(
                _encode_field(
                    path, leaves[path], specs[path],
                    layout=layout, text=text, num_timesteps=t, check=check, verified=verified,
                )
            )
        except TokenizationError as err:
            raise err.with_context(episode=episode, field=path) from None
    return (num_timesteps or 0), fields
