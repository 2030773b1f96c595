"""Text -> SentencePiece ids (spec section 2), from a model at any fsspec path or bundled.

`SentencePieceTokenizer` pickles as its serialized model proto (Beam ships it to
workers; the C++ processor itself does not pickle) and refuses models with more pieces
than the text range of the vocabulary (32000), so every id it yields is a text id.

Bundled models are package data of `transforms` (`text_models/`), named `bundled:<file>`
(`BUNDLED_MODEL`, the job's default): the name is resolved from the installed package on
whichever machine reads it (the launcher, a Dataflow worker), so a job never hands its
workers a path on the launcher's disk, and the name in a manifest is the same everywhere.
"""

from __future__ import annotations

import importlib.resources
from collections.abc import Sequence
from typing import Any

import numpy as np

from schemas.vocab import TEXT_VOCAB_SIZE
from transforms.errors import INVALID_UTF8, TEXT_ID_OUT_OF_RANGE, TokenizationError


BUNDLED_PREFIX = "bundled:"
_BUNDLED_DIR = "text_models"  # inside this package; shipped as package data (pyproject.toml)
# The default text model: trained on BabyAI missions by samples/text/make_text_model.py,
# with byte fallback, so every text still encodes and decodes exactly.
BUNDLED_MODEL = f"{BUNDLED_PREFIX}gato_text.model"


def bundled_models() -> list[str]:
    """The names of the bundled models (`bundled:<file>`), sorted."""
    directory = importlib.resources.files(__package__).joinpath(_BUNDLED_DIR)
    return sorted(f"{BUNDLED_PREFIX}{f.name}" for f in directory.iterdir() if f.name.endswith(".model"))


def model_bytes(path: str) -> bytes:
    """The bytes of a model file: `bundled:<file>` from this package's data, anything else
    through fsspec (local path, gs://, memory://, ...)."""
    if path.startswith(BUNDLED_PREFIX):
        if path not in bundled_models():  # also keeps `bundled:../x` inside the package
            raise ValueError(f"{path}: no such bundled text model; bundled: {bundled_models()}")
        name = path.removeprefix(BUNDLED_PREFIX)
        return importlib.resources.files(__package__).joinpath(_BUNDLED_DIR, name).read_bytes()
    import fsspec

    with fsspec.open(path, "rb") as f:
        return f.read()


class SentencePieceTokenizer:
    """A SentencePiece model. Invariant: `vocab_size <= 32000`, so ids are in [0, 32000)."""

    def __init__(self, model_proto: bytes, *, source: str = "<serialized model>") -> None:
        import sentencepiece as spm

        self._proto = bytes(model_proto)
        self._source = source
        self._sp = spm.SentencePieceProcessor()
        try:
            self._sp.LoadFromSerializedProto(self._proto)
        except Exception as exc:  # sentencepiece raises RuntimeError/OSError by version
            raise ValueError(
                f"{source}: not a SentencePiece model ({type(exc).__name__}: {exc})"
            ) from None
        size = int(self._sp.GetPieceSize())
        if size > TEXT_VOCAB_SIZE:
            raise ValueError(
                f"{source}: SentencePiece model has {size} pieces; at most "
                f"{TEXT_VOCAB_SIZE} fit the text range of the vocabulary "
                "(retrain with --vocab_size <= 32000)"
            )

    @classmethod
    def from_path(cls, path: str) -> SentencePieceTokenizer:
        """Read a `.model` file from any fsspec URL (local path, gs://, memory://, ...) or a
        bundled one (`bundled:<file>`, module doc)."""
        return cls(model_bytes(path), source=str(path))

    @property
    def vocab_size(self) -> int:
        return int(self._sp.GetPieceSize())

    @property
    def eos_id(self) -> int | None:
        """The model's end-of-sequence id (spec section 8's E); None when it has none."""
        eos = int(self._sp.eos_id())
        return eos if eos >= 0 else None

    @property
    def source(self) -> str:
        return self._source

    @property
    def model_proto(self) -> bytes:
        return self._proto

    def encode_batch(self, texts: Sequence[str | bytes]) -> list[np.ndarray]:
        """One int32 id array per text, in order. Bytes must be UTF-8.

        Each distinct text is encoded once (an episode repeats its mission at every step);
        every position gets its own array. Errors carry the index into `texts` of the first
        text that fails as their timestep (callers pass one text per timestep):
        `invalid_utf8`, or `text_id_out_of_range` should a model ever yield one.
        """
        slots, encoded = self._encode_distinct(texts)
        return [encoded[slot].copy() for slot in slots]

    def encode_flat(self, texts: Sequence[str | bytes]) -> tuple[np.ndarray, np.ndarray]:
        """(every text's ids in order, concatenated: int32; ids per text: int64[len(texts)]),
        with `encode_batch`'s errors: its ids without an array per text."""
        slots, encoded = self._encode_distinct(texts)
        if len(encoded) == 1:  # one text at every step (a mission): its ids, repeated
            return np.tile(encoded[0], slots.size), np.full(slots.size, encoded[0].size, dtype=np.int64)
        sizes = np.fromiter((ids.size for ids in encoded), np.int64, len(encoded))
        lengths = sizes[slots]
        if not lengths.sum():
            return np.zeros(0, dtype=np.int32), lengths
        firsts = np.cumsum(sizes) - sizes  # where each distinct text's ids start in `joined`
        starts = np.cumsum(lengths) - lengths  # where each text's ids start in the result
        joined = np.concatenate(encoded)
        return joined[np.repeat(firsts[slots] - starts, lengths) + np.arange(int(lengths.sum()))], lengths

    def _encode_distinct(self, texts: Sequence[str | bytes]) -> tuple[np.ndarray, list[np.ndarray]]:
        """(int64: each text's index among the distinct texts, in order of first appearance;
        the distinct texts' ids), checked.

        Only the first text of each run of equal ones is looked up (an episode repeats its
        mission at every step): runs are found with one comparison of neighbours in C.
        """
        items = np.fromiter(texts, dtype=object, count=len(texts))  # never read as nested sequences
        if not items.size:
            return np.zeros(0, dtype=np.int64), []
        heads = np.flatnonzero(np.concatenate(([True], items[1:] != items[:-1])))
        first: dict[Any, int] = {}  # distinct text -> its index among the distinct texts
        at: list[int] = []  # distinct index -> the index of its first text
        head_slots = []
        for i in heads.tolist():
            item = items[i]
            slot = first.setdefault(bytes(item) if isinstance(item, bytearray) else item, len(first))
            if slot == len(at):
                at.append(i)
            head_slots.append(slot)
        slots = np.repeat(np.asarray(head_slots, dtype=np.int64), np.diff(heads, append=items.size))
        strings: list[str] = []
        for slot, item in enumerate(first):
            if isinstance(item, (bytes, bytearray, np.bytes_)):
                try:
                    strings.append(bytes(item).decode("utf-8"))
                except UnicodeDecodeError as exc:
                    i = at[slot]
                    raise TokenizationError(
                        INVALID_UTF8,
                        f"text at index {i} is not UTF-8 ({exc.reason} at byte {exc.start})",
                        timestep=i,
                        value=bytes(item)[max(0, exc.start - 8) : exc.end + 8],
                    ) from None
            else:
                strings.append(str(item))
        # One string per call: given a list, SentencePiece starts a thread pool on every
        # call (~140 us, ~40x the encode of a short mission) for the same ids.
        encoded = [np.asarray(self._sp.Encode(s, out_type=int), dtype=np.int32) for s in strings]
        for slot, ids in enumerate(encoded):
            if ids.size and (ids.max() >= TEXT_VOCAB_SIZE or ids.min() < 0):
                i = at[slot]
                bad = int(ids[(ids >= TEXT_VOCAB_SIZE) | (ids < 0)][0])
                raise TokenizationError(
                    TEXT_ID_OUT_OF_RANGE,
                    f"text at index {i} encoded to an id outside [0, {TEXT_VOCAB_SIZE})",
                    timestep=i,
                    value=bad,
                )
        return slots, encoded

    def decode(self, ids: np.ndarray | Sequence[int]) -> str:
        """Ids back to text (exact for text the model's normalizer leaves unchanged)."""
        ids = [int(i) for i in np.asarray(ids, dtype=np.int64).reshape(-1)]
        bad = [i for i in ids if not 0 <= i < self.vocab_size]
        if bad:
            raise ValueError(
                f"id {bad[0]} is outside the model's {self.vocab_size} pieces ({self._source})"
            )
        return str(self._sp.Decode(ids))

    def __getstate__(self) -> dict[str, Any]:
        return {"model_proto": self._proto, "source": self._source}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["model_proto"], source=state["source"])  # type: ignore[misc]

    def __repr__(self) -> str:
        return f"SentencePieceTokenizer({self._source!r}, vocab_size={self.vocab_size})"
