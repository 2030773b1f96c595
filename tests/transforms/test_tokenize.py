"""tokenize_episode (spec section 3): exact layout, both vocabularies, errors naming the spot."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas import fields as F
from schemas.vocab import DISJOINT, GATO, Modality, VocabLayout
from transforms.continuous import encode_continuous
from transforms.discrete import encode_discrete
from transforms.errors import (
    BAD_DTYPE,
    BAD_SHAPE,
    DISCRETE_OUT_OF_RANGE,
    IMAGE_NOT_UINT8,
    MISSING_FIELD,
    NON_FINITE,
    TOO_MANY_OBSERVATION_TOKENS,
    UNKNOWN_FIELD,
    TokenizationError,
)
from transforms.text import SentencePieceTokenizer
from transforms.tokenize import checked_timestep_starts, tokenize_episode

SEP, IMG, DIS, CON, TXT = (
    int(Modality.SEPARATOR), int(Modality.IMAGE), int(Modality.DISCRETE),
    int(Modality.CONTINUOUS), int(Modality.TEXT),
)


def small_episode() -> tuple[dict, dict]:
    steps = {
        "observation": {
            "pos": np.array([[0.0, 1.0], [-1.0, 256.0]], dtype=np.float32),
            "door": np.array([3, 1023]),
        },
        "action": np.array([[0.5], [-1.0]]),
        "reward": np.array([1.0, 2.0]),  # ignored
        "is_first": np.array([True, False]),  # ignored
    }
    specs = {
        "observation/pos": F.continuous("mu_law"),
        "observation/door": F.discrete(),
        "action": F.continuous("linear"),
    }
    return steps, specs


@pytest.mark.parametrize("layout", [GATO, DISJOINT])
def test_exact_layout_of_two_timesteps(layout: VocabLayout) -> None:
    steps, specs = small_episode()
    ep = tokenize_episode(steps, specs, layout=layout)
    d, s = layout.discrete_offset, layout.separator
    # door (discrete) sorts before pos; mu_law(0)=512, (1)=744, (-1)=279, (256)->1023;
    # linear(0.5)=768, (-1)=0.
    assert ep.tokens.tolist() == [
        d + 3, 32512, 32744, s, 32768,
        d + 1023, 32279, 33023, s, 32000,
    ]
    assert ep.modality.tolist() == [DIS, CON, CON, SEP, CON] * 2
    assert ep.local_positions.tolist() == [0, 1, 2, 511, 511] * 2
    assert ep.loss_mask.tolist() == [False, False, False, False, True] * 2
    assert ep.timestep.tolist() == [0] * 5 + [1] * 5
    assert ep.timestep_starts.tolist() == [0, 5, 10]
    assert ep.field_paths == ("observation/door", "observation/pos", "action")
    assert ep.field_shapes == ((), (2,), (1,))
    assert ep.field_lengths.tolist() == [[1, 2, 1], [1, 2, 1]]
    assert [a.dtype for a in (ep.tokens, ep.modality, ep.local_positions, ep.loss_mask, ep.timestep)] == [
        np.int32, np.int8, np.int32, np.bool_, np.int32,
    ]
    assert ep.patch_pixels.shape == (0,) and ep.patch_offsets.tolist() == [0]
    assert ep.patch_starts.tolist() == [0, 0, 0]


def test_disjoint_separator_and_discrete_ids() -> None:
    steps, specs = small_episode()
    ep = tokenize_episode(steps, specs, layout=DISJOINT)
    assert ep.tokens[0] == 33024 + 3 and ep.tokens[3] == 34048


def test_nested_keys_are_ordered_by_path_not_insertion() -> None:
    one = np.ones(2, dtype=np.int64)
    # insertion order deliberately reversed; '/' (0x2f) < '0' (0x30) < '_' (0x5f)
    obs = {"a_b": one * 3, "a0": one * 2, "a": {"c": one * 1, "b": one * 0}}
    act = {"z": one * 9, "m": {"y": one * 8}}
    specs = {
        p: F.discrete()
        for p in ["observation/a_b", "observation/a0", "observation/a/c", "observation/a/b",
                  "action/z", "action/m/y"]
    }
    ep = tokenize_episode({"action": act, "observation": obs}, specs)
    assert ep.field_paths == (
        "observation/a/b", "observation/a/c", "observation/a0", "observation/a_b",
        "action/m/y", "action/z",
    )
    assert ep.tokens[:7].tolist() == [0, 1, 2, 3, GATO.separator, 8, 9]
    assert ep.local_positions[:7].tolist() == [0, 1, 2, 3, 511, 511, 511]


def test_row_major_flattening_inside_a_field() -> None:
    x = np.arange(2 * 2 * 3).reshape(2, 2, 3)  # T=2, per-step [2, 3]
    ep = tokenize_episode({"observation": x, "action": np.zeros((2, 1), np.int64)},
                          {"observation": F.discrete(), "action": F.discrete()})
    assert ep.tokens[:6].tolist() == [0, 1, 2, 3, 4, 5]
    assert ep.tokens[8:14].tolist() == [6, 7, 8, 9, 10, 11]


def test_images_patches_and_positions() -> None:
    t = 2
    rgb = np.zeros((t, 20, 17, 3), dtype=np.uint8)
    rgb[1, 16:, :16, 0] = 42  # patch (1, 0) of timestep 1
    gray = np.full((t, 16, 16), 7, dtype=np.uint8)
    steps = {"observation": {"cam": rgb, "depth": gray}, "action": np.zeros((t, 1), np.int64)}
    specs = {"observation/cam": F.image(), "observation/depth": F.image(),
             "action": F.discrete()}
    ep = tokenize_episode(steps, specs)
    per_step = [IMG] * 4 + [IMG] + [SEP, DIS]
    assert ep.modality.tolist() == per_step * t
    assert (ep.tokens[ep.modality == IMG] == GATO.image_placeholder).all()
    assert ep.local_positions.tolist() == [0, 1, 2, 3, 4, 511, 511] * t
    assert ep.patch_starts.tolist() == [0, 5, 10]
    sizes = np.diff(ep.patch_offsets).tolist()
    assert sizes == ([768] * 4 + [256]) * t
    assert ep.patch_positions.tolist()[:5] == [
        [0, 64, 0, 64], [0, 64, 64, 127], [64, 127, 0, 64], [64, 127, 64, 127], [0, 127, 0, 127],
    ]
    assert ep.patch_positions.shape == (10, 4) and ep.patch_positions.dtype == np.int16
    patch = lambda i: ep.patch_pixels[ep.patch_offsets[i] : ep.patch_offsets[i + 1]]  # noqa: E731
    # timestep 1, third patch = (1, 0): its 4 image rows are 42, its 12 padding rows 0
    assert patch(5 + 2)[0::3].tolist() == [42] * 64 + [0] * 192
    assert patch(2).max() == 0
    assert (patch(9) == 7).all()
    assert ep.field_shapes[:2] == ((32, 32, 3), (16, 16, 1))


def test_text_fields_vary_in_length_and_loss_follows_the_spec(
    tiny_tokenizer: SentencePieceTokenizer,
) -> None:
    texts = np.array([b"picks the red block", b"", "opens drawer"], dtype=object)
    steps = {
        "observation": {"instruction": texts, "z": np.array([1, 2, 3])},
        "action": {"say": texts, "move": np.array([4, 5, 6])},
    }
    specs = {
        "observation/instruction": F.text(loss=True),  # a caption the model must predict
        "observation/z": F.discrete(),
        "action/move": F.discrete(),
        "action/say": F.text(loss=False),
    }
    ep = tokenize_episode(steps, specs, text=tiny_tokenizer)
    ids = tiny_tokenizer.encode_batch(list(texts))
    expected_tokens: list[int] = []
    expected_loss: list[bool] = []
    expected_local: list[int] = []
    for t in range(3):
        obs = ids[t].tolist() + [t + 1]
        act = [t + 4] + ids[t].tolist()
        expected_tokens += obs + [GATO.separator] + act
        expected_loss += [True] * len(ids[t]) + [False, False, True] + [False] * len(ids[t])
        expected_local += list(range(len(obs))) + [511] * (1 + len(act))
    assert ep.tokens.tolist() == expected_tokens
    assert ep.loss_mask.tolist() == expected_loss
    assert ep.local_positions.tolist() == expected_local
    lengths = [2 * len(i) + 3 for i in ids]
    assert ep.timestep_starts.tolist() == [0, lengths[0], lengths[0] + lengths[1], sum(lengths)]
    assert ep.field_lengths[:, 0].tolist() == [len(i) for i in ids]


def test_text_without_a_model_names_the_field() -> None:
    steps = {"observation": {"instruction": np.array(["hi"])}, "action": np.zeros((1, 1))}
    specs = {"observation/instruction": F.text(), "action": F.continuous()}
    with pytest.raises(ValueError, match="'observation/instruction' is text"):
        tokenize_episode(steps, specs)


def test_observation_token_limit_is_table_minus_one() -> None:
    steps = {"observation": {"a": np.zeros((2, 300)), "b": np.zeros((2, 211))},
             "action": np.zeros((2, 1))}
    specs = {"observation/a": F.continuous(), "observation/b": F.continuous(),
             "action": F.continuous()}
    assert tokenize_episode(steps, specs).local_positions.max() == 511  # 511 fits exactly
    steps["observation"]["b"] = np.zeros((2, 212))
    with pytest.raises(TokenizationError) as info:
        tokenize_episode(steps, specs, episode="ep7")
    err = info.value
    assert (err.reason, err.field, err.timestep, err.value, err.episode) == (
        TOO_MANY_OBSERVATION_TOKENS, "observation/b", 0, 512, "ep7",
    )
    with pytest.raises(ValueError, match="at least 2"):
        tokenize_episode(steps, specs, local_position_table=1)
    big = tokenize_episode(steps, specs, local_position_table=1024)
    assert big.local_positions[511] == 511 and big.local_positions[512] == 1023


@pytest.mark.parametrize(
    ("obs", "spec", "reason", "timestep", "value"),
    [
        (np.array([[0.0], [np.nan], [0.0]]), F.continuous(), NON_FINITE, 1, None),
        (np.array([[0.0], [0.0], [-np.inf]]), F.continuous(), NON_FINITE, 2, -np.inf),
        (np.array([0, 1024, 3]), F.discrete(), DISCRETE_OUT_OF_RANGE, 1, 1024),
        (np.array([0.5, 1.0, 3.0]), F.discrete(), BAD_DTYPE, None, None),
        (np.array(["a", "b", "c"]), F.continuous(), BAD_DTYPE, None, None),
        (np.zeros((3, 16, 16), np.int16), F.image(), IMAGE_NOT_UINT8, None, "int16"),
        (np.zeros((3, 16), np.uint8), F.image(), BAD_SHAPE, None, (3, 16)),
    ],
)
def test_bad_input_names_episode_field_timestep_value(
    obs: np.ndarray, spec: F.FieldSpec, reason: str, timestep: int | None, value: object
) -> None:
    steps = {"observation": {"x": obs}, "action": np.zeros((3, 1))}
    with pytest.raises(TokenizationError) as info:
        tokenize_episode(steps, {"observation/x": spec, "action": F.continuous()}, episode="e1")
    err = info.value
    assert isinstance(err, ValueError)
    assert (err.reason, err.episode, err.field, err.timestep) == (reason, "e1", "observation/x", timestep)
    if value is not None:
        assert err.value == value
    assert "'e1'" in str(err) and "'observation/x'" in str(err)


def test_fields_must_agree_on_the_number_of_timesteps() -> None:
    steps = {"observation": np.zeros((4, 1)), "action": np.zeros((3, 1))}
    with pytest.raises(TokenizationError) as info:
        tokenize_episode(steps, {"observation": F.continuous(), "action": F.continuous()})
    assert (info.value.reason, info.value.field, info.value.value) == (BAD_SHAPE, "action", 3)
    assert "'observation' has 4" in str(info.value)


def test_unknown_and_missing_fields() -> None:
    steps = {"observation": {"x": np.zeros((2, 1)), "extra": np.zeros((2, 1))},
             "action": np.zeros((2, 1))}
    with pytest.raises(TokenizationError) as info:
        tokenize_episode(steps, {"observation/x": F.continuous(), "action": F.continuous()})
    assert (info.value.reason, info.value.field) == (UNKNOWN_FIELD, "observation/extra")
    del steps["observation"]["extra"]
    with pytest.raises(TokenizationError) as info:
        tokenize_episode(steps, {"observation/x": F.continuous(), "observation/y": F.continuous(),
                                 "action": F.continuous()})
    assert (info.value.reason, info.value.field) == (MISSING_FIELD, "observation/y")


def test_ragged_lists_are_a_shape_error() -> None:
    with pytest.raises(TokenizationError) as info:
        tokenize_episode({"observation": [[1.0], [1.0, 2.0]], "action": np.zeros((2, 1))},
                         {"observation": F.continuous(), "action": F.continuous()})
    assert (info.value.reason, info.value.field) == (BAD_SHAPE, "observation")


def test_scalar_leaf_has_no_time_axis() -> None:
    with pytest.raises(TokenizationError) as info:
        tokenize_episode({"observation": np.float64(1.0), "action": np.zeros((1, 1))},
                         {"observation": F.continuous(), "action": F.continuous()})
    assert (info.value.reason, info.value.field) == (BAD_SHAPE, "observation")


def test_empty_episode() -> None:
    ep = tokenize_episode({"observation": np.zeros((0, 3)), "action": np.zeros((0, 1))},
                          {"observation": F.continuous(), "action": F.continuous()})
    assert ep.num_timesteps == 0 and ep.num_tokens == 0
    assert ep.timestep_starts.tolist() == [0]


# --- Property: the vectorized assembly equals a plain per-timestep reference. ---


def reference(steps: dict, specs: dict, layout: VocabLayout) -> tuple[list, list, list, list]:
    """Spec section 3 written as a loop over timesteps (the per-value encoders are tested apart)."""
    obs_paths = sorted(p for p in specs if p.startswith("observation"))
    act_paths = sorted(p for p in specs if p.startswith("action"))

    def leaf(path: str) -> np.ndarray:
        node = steps
        for part in path.split("/"):
            node = node[part]
        return node

    def encode(path: str, t: int) -> list[int]:
        spec, x = specs[path], leaf(path)[t]
        if spec.modality is Modality.CONTINUOUS:
            return encode_continuous(np.ravel(x), spec.encoding, layout=layout).tolist()
        return encode_discrete(np.ravel(x), offset=spec.offset, layout=layout).tolist()

    tokens, local, loss, timestep = [], [], [], []
    n = len(leaf(obs_paths[0]))
    for t in range(n):
        obs = [tok for p in obs_paths for tok in encode(p, t)]
        act = [tok for p in act_paths for tok in encode(p, t)]
        tokens += obs + [layout.separator] + act
        local += list(range(len(obs))) + [511] * (len(act) + 1)
        loss += [False] * (len(obs) + 1) + [True] * len(act)
        timestep += [t] * (len(obs) + len(act) + 1)
    return tokens, local, loss, timestep


field_specs = st.sampled_from(
    [F.continuous("mu_law"), F.continuous("linear"), F.discrete(), F.discrete(offset=3)]
)


@settings(max_examples=60, deadline=None)
@given(
    st.dictionaries(st.sampled_from(["observation/a", "observation/b/c", "observation/b_d"]),
                    field_specs, min_size=1),
    st.dictionaries(st.sampled_from(["action/x", "action/y/z"]), field_specs, min_size=1),
    st.integers(1, 5), st.integers(0, 3), st.sampled_from([GATO, DISJOINT]), st.integers(0, 2**32 - 1),
)
def test_matches_the_per_timestep_reference(
    obs_specs: dict, act_specs: dict, t: int, width: int, layout: VocabLayout, seed: int
) -> None:
    rng = np.random.default_rng(seed)
    specs = {**obs_specs, **act_specs}
    steps: dict = {}
    for path, spec in specs.items():
        if spec.modality is Modality.CONTINUOUS:
            value = rng.normal(scale=100.0, size=(t, width))
        else:
            value = rng.integers(-spec.offset, 1024 - spec.offset, size=(t, width))
        node = steps
        *parents, name = path.split("/")
        for part in parents:
            node = node.setdefault(part, {})
        node[name] = value
    ep = tokenize_episode(steps, specs, layout=layout)
    tokens, local, loss, timestep = reference(steps, specs, layout)
    assert ep.tokens.tolist() == tokens
    assert ep.local_positions.tolist() == local
    assert ep.loss_mask.tolist() == loss
    assert ep.timestep.tolist() == timestep


def test_png_bytes_tokenize_like_the_decoded_frames() -> None:
    import io

    from PIL import Image

    frames = np.random.default_rng(3).integers(0, 256, (3, 20, 24, 3), dtype=np.uint8)
    encoded = []
    for frame in frames:
        buf = io.BytesIO()
        Image.fromarray(frame).save(buf, format="PNG")
        encoded.append(buf.getvalue())
    specs = {"observation/rgb": F.image(), "action": F.discrete()}
    action = np.zeros((3, 1), dtype=np.int64)
    from_png = tokenize_episode(
        {"observation": {"rgb": np.array(encoded, dtype=object)}, "action": action}, specs
    )
    from_array = tokenize_episode({"observation": {"rgb": frames}, "action": action}, specs)
    assert from_png.tokens.tolist() == from_array.tokens.tolist()
    assert np.array_equal(from_png.patch_pixels, from_array.patch_pixels)
    assert np.array_equal(from_png.patch_positions, from_array.patch_positions)


# --- the verdict's check: tokenize_episode's starts and errors, without its tokens ---------


def _outcome(fn: object, *args: object, **kwargs: object) -> object:
    try:
        return ("starts", fn(*args, **kwargs).tolist() if fn is checked_timestep_starts  # type: ignore[operator]
                else fn(*args, **kwargs).timestep_starts.tolist())  # type: ignore[operator]
    except TokenizationError as e:
        return (e.reason, e.field, e.timestep, repr(e.value), str(e))


def _check_cases() -> list[tuple[dict, dict]]:
    """Good episodes of every modality, and every kind of bad input the tokenizer names."""
    cases = [small_episode()]
    grey = np.arange(3 * 20 * 20, dtype=np.uint8).reshape(3, 20, 20)
    cases.append(({"observation": grey, "action": np.array([1, 2, 3])},
                  {"observation": F.image(), "action": F.discrete()}))
    cases.append(({"observation": grey, "action": np.array([1, 2, 3])},
                  {"observation": F.image(size=(32, 48)), "action": F.discrete()}))
    for obs, spec in [
        (np.array([[0.0], [np.nan], [0.0]]), F.continuous()),
        (np.array([[0.0], [0.0], [-np.inf]]), F.continuous("mu_law")),
        (np.array([[1e308], [1e308], [np.inf]]), F.continuous("mu_law")),  # the sum overflows first
        (np.array([[1e308], [1e308], [1e308]]), F.continuous("linear")),  # overflows, all finite
        (np.array([[3], [-7], [2]], np.int64), F.continuous()),
        (np.array([0, 1024, 3]), F.discrete()),
        (np.array([0, 5, 3]), F.discrete(offset=1020)),
        (np.array([True, False, True]), F.discrete()),
        (np.array([0.5, 1.0, 3.0]), F.discrete()),
        (np.array(["a", "b", "c"]), F.continuous()),
        (np.zeros((3, 16, 16), np.int16), F.image()),
        (np.zeros((3, 16), np.uint8), F.image()),
        (np.zeros((3, 2, 300)), F.continuous()),  # 600 observation tokens: over the table
    ]:
        cases.append(({"observation": {"x": obs}, "action": np.zeros((3, 1))},
                      {"observation/x": spec, "action": F.continuous()}))
    cases.append(({"observation": np.zeros((4, 1)), "action": np.zeros((3, 1))},
                  {"observation": F.continuous(), "action": F.continuous()}))
    cases.append(({"observation": {"x": np.zeros((2, 1)), "extra": np.zeros((2, 1))}, "action": np.zeros((2, 1))},
                  {"observation/x": F.continuous(), "action": F.continuous()}))
    cases.append(({"observation": [[1.0], [1.0, 2.0]], "action": np.zeros((2, 1))},
                  {"observation": F.continuous(), "action": F.continuous()}))
    cases.append(({"observation": np.zeros((0, 3)), "action": np.zeros((0, 1))},
                  {"observation": F.continuous(), "action": F.continuous()}))
    return cases


def test_the_check_gives_the_starts_and_the_errors_of_tokenizing() -> None:
    for steps, specs in _check_cases():
        expected = _outcome(tokenize_episode, steps, specs, episode="e1")
        assert _outcome(checked_timestep_starts, steps, specs, episode="e1") == expected, specs
    with pytest.raises(ValueError, match="at least 2"):
        checked_timestep_starts(*small_episode(), local_position_table=1)
