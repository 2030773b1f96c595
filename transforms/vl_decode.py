"""A row of vision-language or text data back into its units' images and texts, for
auditors, the HTML report and tests (spec section 8; `transforms/decode.py` does episodes).

A row (as pyarrow's `to_pylist` gives it, or any mapping with the same columns) holds
units in order; the tokens of unit i carry `timestep` i (pairs) or 0 (a document's row)
and `source_keys[i]` names it. Within a unit:
- image tokens start a new image where their local position is 0 (every image restarts
  its count, and a row never ends inside an image); an image of P patches is a square of
  sqrt(P) x sqrt(P) patches, reassembled with `transforms.images.unpatchify`;
- text runs are cut where the modality or the loss mask changes, so a VQA pair gives the
  question (loss False) then the answer (loss True); two text runs of an interleaved
  document with no image between them come back as one run;
- E (the model's end-of-sequence id) is stripped from the end of a target run and noted
  (`"end": True`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from schemas import output as out
from schemas.vocab import PATCH_SIZE, Modality, VocabLayout
from transforms.images import unpatchify
from transforms.text import SentencePieceTokenizer

IMAGE = "image"  # entries of a decoded unit's "order"
TEXT = "text"
_CHANNELS = 3


def row_name(row: Mapping[str, Any]) -> str:
    """How errors name a row: `<dataset>/<task> row <sequence index> of <episode id>`."""
    return f"{row.get(out.DATASET)}/{row.get(out.TASK)} row {row.get(out.SEQUENCE_INDEX)} of {row.get(out.EPISODE_ID)!r}"


def _image(pixels: list[bytes], *, name: str, at: int, image_size: int | None) -> np.ndarray:
    """uint8 [H, W, 3] from the patches of one image, raster order."""
    count = len(pixels)
    grid = math.isqrt(count)
    expected = None if image_size is None else (image_size // PATCH_SIZE) ** 2
    if grid * grid != count or (expected is not None and count != expected):
        want = "a square number" if expected is None else str(expected)
        raise ValueError(f"{name}: the image at token {at} has {count} patches, expected {want}")
    sizes = {len(p) for p in pixels}
    if sizes != {PATCH_SIZE * PATCH_SIZE * _CHANNELS}:
        raise ValueError(f"{name}: the image at token {at} has patches of {sorted(sizes)} bytes, expected 768")
    flat = np.frombuffer(b"".join(pixels), dtype=np.uint8).reshape(1, count, -1)
    return unpatchify(flat, rows=grid, cols=grid, channels=_CHANNELS)[0]


def _text(ids: np.ndarray, *, loss: bool, end_id: int | None, tokenizer: SentencePieceTokenizer | None) -> dict[str, Any]:
    end = bool(loss and end_id is not None and ids.size and int(ids[-1]) == end_id)
    kept = ids[:-1] if end else ids
    return {
        "text": None if tokenizer is None else tokenizer.decode(kept),
        "loss": loss,
        "end": end,
        "ids": [int(i) for i in kept],
    }


def _runs(keys: np.ndarray) -> list[tuple[int, int]]:
    """[start, stop) of the runs of equal consecutive entries of `keys` (any 1-d array)."""
    if not keys.size:
        return []
    cuts = np.flatnonzero(keys[1:] != keys[:-1]) + 1
    bounds = [0, *cuts.tolist(), int(keys.size)]
    return list(zip(bounds[:-1], bounds[1:]))


def _columns(row: Mapping[str, Any], *, layout: VocabLayout, name: str) -> dict[str, np.ndarray]:
    """The row's per-token columns before padding, checked: text or image tokens only,
    text ids in the text range, image tokens the placeholder, one patch each."""
    n = int(row[out.NUM_TOKENS])
    columns = {
        "tokens": np.asarray(row[out.TOKENS][:n], dtype=np.int64),
        "modality": np.asarray(row[out.MODALITY][:n], dtype=np.int64),
        "loss": np.asarray(row[out.LOSS_MASK][:n], dtype=bool),
        "position": np.asarray(row[out.LOCAL_POSITIONS][:n], dtype=np.int64),
        "timestep": np.asarray(row[out.TIMESTEP][:n], dtype=np.int64),
    }
    tokens, modality = columns["tokens"], columns["modality"]
    is_text, is_image = modality == Modality.TEXT, modality == Modality.IMAGE
    bad = np.flatnonzero(~(is_text | is_image))
    if bad.size:
        raise ValueError(f"{name}: token {int(bad[0])} has modality {int(modality[bad[0]])}, expected text or image")
    bad = np.flatnonzero((is_text & ~layout.in_range(tokens, Modality.TEXT))
                         | (is_image & (tokens != layout.image_placeholder)))
    if bad.size:
        raise ValueError(f"{name}: token {int(bad[0])} has id {int(tokens[bad[0]])}, outside its modality's range")
    if int(is_image.sum()) != len(row[out.PATCH_PIXELS]):
        raise ValueError(f"{name}: {int(is_image.sum())} image tokens but {len(row[out.PATCH_PIXELS])} patches")
    columns["patch"] = np.cumsum(is_image) - 1  # image token i carries patch `patch[i]`
    return columns


def _unit(
    columns: dict[str, np.ndarray], start: int, stop: int, *, row: Mapping[str, Any], name: str,
    tokenizer: SentencePieceTokenizer | None, image_size: int | None,
) -> dict[str, Any]:
    """One unit (tokens [start, stop) of the row): its images, texts and their order."""
    modality, loss, position = columns["modality"], columns["loss"], columns["position"]
    # Run keys: modality, loss, and for images a count of image starts (position 0).
    starts = np.cumsum((modality == Modality.IMAGE) & (position == 0))
    keys = (modality * 2 + loss) * (len(modality) + 1) + np.where(modality == Modality.IMAGE, starts, 0)
    unit: dict[str, Any] = {"images": [], "texts": [], "order": []}
    end_id = None if tokenizer is None else tokenizer.eos_id
    for a, b in _runs(keys[start:stop]):
        a, b = a + start, b + start
        if modality[a] == Modality.IMAGE:
            pixels = [bytes(row[out.PATCH_PIXELS][p]) for p in columns["patch"][a:b]]
            unit["images"].append(_image(pixels, name=name, at=a, image_size=image_size))
            unit["order"].append(IMAGE)
        else:
            unit["texts"].append(_text(columns["tokens"][a:b], loss=bool(loss[a]), end_id=end_id, tokenizer=tokenizer))
            unit["order"].append(TEXT)
    return unit


def decode_vl_row(
    row: Mapping[str, Any],
    *,
    layout: VocabLayout,
    tokenizer: SentencePieceTokenizer | None,
    image_size: int | None = None,
) -> list[dict[str, Any]]:
    """The row's units in order, each `{"source_key", "images": [uint8 HxWx3], "texts":
    [{"text", "loss", "end", "ids"}], "order": ["image" | "text", ...]}` (module doc).

    `tokenizer` None: texts keep their ids only (`"text"` None) and E is not recognized.
    `image_size` (S) checks each image's patch count; None infers the square from it.
    A row that breaks the layout (another modality, an id outside its range, units that
    do not match its source keys, an image that is not square) is a ValueError naming it.
    """
    name = row_name(row)
    columns = _columns(row, layout=layout, name=name)
    keys = list(row[out.SOURCE_KEYS])
    spans = _runs(columns["timestep"])
    if len(spans) != len(keys) or any(int(columns["timestep"][a]) != i for i, (a, _) in enumerate(spans)):
        found = [int(columns["timestep"][a]) for a, _ in spans]
        raise ValueError(f"{name}: units with timesteps {found} do not match its {len(keys)} source keys")
    units = []
    for key, (start, stop) in zip(keys, spans):
        unit = _unit(columns, start, stop, row=row, name=name, tokenizer=tokenizer, image_size=image_size)
        units.append({"source_key": key, **unit})
    return units
