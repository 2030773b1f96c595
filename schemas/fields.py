"""RLDS field names and per-field tokenization specs.

Field names are constants (as in RLDS) so that no module spells them itself. A field is
addressed by its path: nested dict keys joined with `/`, e.g. `observation/image`.
"""

from __future__ import annotations

import dataclasses

from schemas.vocab import Encoding, Modality

# --- RLDS episode and step fields (the RLDS standard, as TFDS stores it). ---
STEPS = "steps"
OBSERVATION = "observation"
ACTION = "action"
REWARD = "reward"
DISCOUNT = "discount"
IS_FIRST = "is_first"
IS_LAST = "is_last"
IS_TERMINAL = "is_terminal"
EPISODE_ID = "episode_id"
EPISODE_RETURN = "episode_return"
CHECKPOINT_ID = "checkpoint_id"

PATH_SEPARATOR = "/"
STEP_FLAGS = (IS_FIRST, IS_LAST, IS_TERMINAL)


def join_path(*parts: str) -> str:
    """`join_path('observation', 'image') == 'observation/image'`."""
    return PATH_SEPARATOR.join(parts)


def role_of(path: str) -> str:
    """`observation` or `action`: the first component of a tokenized field's path."""
    role = path.split(PATH_SEPARATOR, 1)[0]
    if role not in (OBSERVATION, ACTION):
        raise ValueError(
            f"field {path!r} is neither under {OBSERVATION!r} nor {ACTION!r}; "
            "only observation and action fields are tokenized"
        )
    return role


@dataclasses.dataclass(frozen=True)
class FieldSpec:
    """How one field (one path) is tokenized.

    Invariants: `encoding` is set only for continuous fields; `offset` only matters for
    discrete ones; `image_size` (height, width) only for images, and means "resize to"
    instead of the default zero padding to multiples of 16. `loss` overrides the default
    loss mask (actions 1, observations 0), e.g. for a caption that is a prediction target.
    """

    modality: Modality
    encoding: Encoding | None = None
    offset: int = 0
    image_size: tuple[int, int] | None = None
    loss: bool | None = None

    def __post_init__(self) -> None:
        if self.modality in (Modality.PAD, Modality.SEPARATOR):
            raise ValueError(f"a field cannot have modality {self.modality.name}")
        if self.modality is Modality.CONTINUOUS and self.encoding is None:
            raise ValueError("a continuous field needs an encoding (mu_law or linear)")
        if self.modality is not Modality.CONTINUOUS and self.encoding is not None:
            raise ValueError(f"encoding {self.encoding} given for a {self.modality.name} field")
        if self.image_size is not None and self.modality is not Modality.IMAGE:
            raise ValueError("image_size is only meaningful for image fields")

    def to_metadata(self) -> dict[str, object]:
        """JSON-able description, recorded per field in output metadata."""
        return {
            "modality": self.modality.name.lower(),
            "encoding": None if self.encoding is None else self.encoding.value,
            "offset": self.offset,
            "image_size": None if self.image_size is None else list(self.image_size),
            "loss": self.loss,
        }


def continuous(encoding: Encoding | str = Encoding.MU_LAW) -> FieldSpec:
    return FieldSpec(Modality.CONTINUOUS, encoding=Encoding(encoding))


def discrete(offset: int = 0) -> FieldSpec:
    return FieldSpec(Modality.DISCRETE, offset=offset)


def image(size: tuple[int, int] | None = None) -> FieldSpec:
    return FieldSpec(Modality.IMAGE, image_size=size)


def text(loss: bool | None = None) -> FieldSpec:
    return FieldSpec(Modality.TEXT, loss=loss)
