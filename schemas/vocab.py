"""Vocabulary layouts and modality codes (spec section 1): the one source of truth.

Every token id, modality code and tokenization constant the project uses is defined
here; the rest of the code imports them instead of repeating numbers.
"""

from __future__ import annotations

import dataclasses
import enum

import numpy as np

# --- Tokenization constants (spec sections 2 and 3). ---
TEXT_VOCAB_SIZE = 32000
NUM_BINS = 1024  # continuous bins, and the size of the discrete value range
MU = 100.0
MU_LAW_M = 256.0
PATCH_SIZE = 16
PATCH_POSITION_BINS = 128
LOCAL_POSITION_TABLE = 512  # default table; the last index is the action index
DEFAULT_SEQUENCE_LENGTH = 1024
# Model-side pixel value: ((p / 255) * 2 - 1) / sqrt(PATCH_SIZE). Stored as text in
# every output's metadata; the reader applies it on request.
IMAGE_NORMALIZATION = "((p / 255) * 2 - 1) / 4"


class Modality(enum.IntEnum):
    """Per-token modality codes, as stored in the `modality` column (int8)."""

    PAD = 0
    TEXT = 1
    IMAGE = 2
    DISCRETE = 3
    CONTINUOUS = 4
    SEPARATOR = 5


class Encoding(str, enum.Enum):
    """Continuous-value encodings before discretization (spec section 2)."""

    MU_LAW = "mu_law"
    LINEAR = "linear"


@dataclasses.dataclass(frozen=True)
class VocabLayout:
    """Where each modality's ids live. Invariant: ranges other than text/discrete are disjoint."""

    name: str
    discrete_offset: int
    continuous_offset: int
    separator: int
    pad: int
    image_placeholder: int
    vocab_size: int
    text_size: int = TEXT_VOCAB_SIZE
    num_bins: int = NUM_BINS

    def modality_range(self, modality: Modality) -> tuple[int, int]:
        """Half-open id range [lo, hi) of a modality."""
        if modality is Modality.TEXT:
            return (0, self.text_size)
        if modality is Modality.DISCRETE:
            return (self.discrete_offset, self.discrete_offset + self.num_bins)
        if modality is Modality.CONTINUOUS:
            return (self.continuous_offset, self.continuous_offset + self.num_bins)
        if modality is Modality.SEPARATOR:
            return (self.separator, self.separator + 1)
        if modality is Modality.PAD:
            return (self.pad, self.pad + 1)
        if modality is Modality.IMAGE:
            return (self.image_placeholder, self.image_placeholder + 1)
        raise ValueError(f"unknown modality {modality!r}")

    def in_range(self, ids: np.ndarray, modality: Modality) -> np.ndarray:
        """Boolean mask: which ids lie in the modality's range."""
        lo, hi = self.modality_range(modality)
        ids = np.asarray(ids)
        return (ids >= lo) & (ids < hi)

    def candidate_modalities(self, token_id: int) -> tuple[Modality, ...]:
        """Every modality whose range holds the id (text and discrete may share ids)."""
        return tuple(m for m in Modality if bool(self.in_range(np.int64(token_id), m)))

    def to_metadata(self) -> dict[str, int | str]:
        """A JSON-able description, written into every output's metadata."""
        return dataclasses.asdict(self)


GATO = VocabLayout(
    name="gato",
    discrete_offset=0,
    continuous_offset=TEXT_VOCAB_SIZE,
    separator=TEXT_VOCAB_SIZE + NUM_BINS,
    pad=TEXT_VOCAB_SIZE + NUM_BINS + 1,
    image_placeholder=TEXT_VOCAB_SIZE + NUM_BINS + 2,
    vocab_size=TEXT_VOCAB_SIZE + NUM_BINS + 3,
)

DISJOINT = VocabLayout(
    name="disjoint",
    discrete_offset=TEXT_VOCAB_SIZE + NUM_BINS,
    continuous_offset=TEXT_VOCAB_SIZE,
    separator=TEXT_VOCAB_SIZE + 2 * NUM_BINS,
    pad=TEXT_VOCAB_SIZE + 2 * NUM_BINS + 1,
    image_placeholder=TEXT_VOCAB_SIZE + 2 * NUM_BINS + 2,
    vocab_size=TEXT_VOCAB_SIZE + 2 * NUM_BINS + 3,
)

LAYOUTS: dict[str, VocabLayout] = {layout.name: layout for layout in (GATO, DISJOINT)}


def get_layout(name: str) -> VocabLayout:
    """The layout called `name`; an unknown name is an error listing the known ones."""
    try:
        return LAYOUTS[name]
    except KeyError:
        raise ValueError(
            f"unknown vocabulary layout {name!r}; known layouts: {sorted(LAYOUTS)}"
        ) from None
