"""transforms/field_tokens.py: step fields become one token block per field, in path order,
and a check gives every error and every width without making the tokens."""

from __future__ import annotations

import numpy as np
import pytest

from schemas import fields as F
from tests.transforms.png_fixtures import png
from transforms.errors import NON_FINITE, TokenizationError
from transforms.field_tokens import encode_fields, flatten_fields, ordered_paths


def _steps() -> tuple[dict, dict]:
    frames = np.array([png(np.full((20, 20), v, np.uint8)) for v in (1, 2)], dtype=object)
    steps = {
        "observation": {"b": np.array([[0.5, 1.0], [0.0, -1.0]]), "a": frames},
        "action": {"z": np.array([3, 4]), "y": np.array([[0.1], [0.2]])},
        "reward": np.zeros(2),  # not a token field
    }
    specs = {"observation/a": F.image(), "observation/b": F.continuous(), "action/y": F.continuous("linear"),
             "action/z": F.discrete()}
    return steps, specs


def test_paths_flatten_and_order_observations_then_actions() -> None:
    steps, _ = _steps()
    assert list(flatten_fields(steps)) == ["observation/b", "observation/a", "action/z", "action/y"]
    assert ordered_paths(flatten_fields(steps)) == ["observation/a", "observation/b", "action/y", "action/z"]


def test_a_check_gives_the_widths_without_the_tokens() -> None:
    steps, specs = _steps()
    t, encoded = encode_fields(steps, specs)
    t_checked, checked = encode_fields(steps, specs, check=True)
    assert t == t_checked == 2
    assert [f.path for f in checked] == [f.path for f in encoded]
    assert [f.shape for f in checked] == [f.shape for f in encoded] == [(32, 32, 1), (2,), (1,), ()]
    for full, light in zip(encoded, checked, strict=True):
        assert np.array_equal(full.lengths(2), light.lengths(2))
        assert light.patches is None and not light.tokens.flags.writeable  # a view of one zero
    assert encoded[0].patches.shape == (2, 4, 256)


def test_a_check_raises_what_encoding_raises() -> None:
    steps, specs = _steps()
    steps["action"]["y"][1, 0] = np.nan
    for check in (False, True):
        with pytest.raises(TokenizationError) as info:
            encode_fields(steps, specs, episode="e", check=check)
        assert (info.value.reason, info.value.field, info.value.timestep) == (NON_FINITE, "action/y", 1)
