"""decode_episode: the inverse of tokenize_episode, from the episode and from a Parquet row."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas import fields as F
from schemas import output as O
from schemas.vocab import DISJOINT, GATO, NUM_BINS, Modality, VocabLayout
from transforms.continuous import mu_law_encode
from transforms.decode import as_row, decode_episode, nest
from transforms.text import SentencePieceTokenizer
from transforms.tokenize import tokenize_episode

T = 4


def mixed_episode(seed: int = 0) -> tuple[dict, dict, dict]:
    rng = np.random.default_rng(seed)
    steps = {
        "observation": {
            "image": rng.integers(0, 256, (T, 20, 17, 3), dtype=np.uint8),
            "joints": rng.normal(scale=3.0, size=(T, 2, 3)).astype(np.float32),
            "instruction": np.array([b"picks the red block", b"", b"opens drawer", b"up"], object),
            "lives": rng.integers(0, 5, size=T),
        },
        "action": {"move": rng.uniform(-1, 1, size=(T, 2)), "grip": np.array([0, 1, 1, 0])},
    }
    specs = {
        "observation/image": F.image(),
        "observation/joints": F.continuous("mu_law"),
        "observation/instruction": F.text(),
        "observation/lives": F.discrete(),
        "action/move": F.continuous("linear"),
        "action/grip": F.discrete(offset=2),
    }
    shapes = {
        "observation/image": (20, 17, 3), "observation/joints": (2, 3),
        "observation/lives": (), "action/move": (2,), "action/grip": (),
    }
    return steps, specs, shapes


def check(decoded: dict, steps: dict, rows: slice = slice(None)) -> None:
    obs, act = steps["observation"], steps["action"]
    image = decoded["observation/image"]
    assert image.shape == (len(range(T)[rows]), 32, 32, 3)
    assert np.array_equal(image[:, :20, :17], obs["image"][rows])
    assert image[:, 20:].max(initial=0) == 0 and image[:, :, 17:].max(initial=0) == 0
    joints = decoded["observation/joints"]
    f_in, f_out = mu_law_encode(obs["joints"][rows]), mu_law_encode(joints)
    assert np.abs(f_in - f_out).max() <= 1.0 / NUM_BINS
    assert decoded["observation/instruction"].tolist() == [
        b.decode() for b in obs["instruction"][rows]
    ]
    assert decoded["observation/lives"].tolist() == obs["lives"][rows].tolist()
    assert np.abs(decoded["action/move"] - act["move"][rows]).max() <= 1.0 / NUM_BINS
    assert decoded["action/grip"].tolist() == act["grip"][rows].tolist()


@pytest.mark.parametrize("layout", [GATO, DISJOINT])
def test_round_trip_from_the_tokenized_episode(
    layout: VocabLayout, tiny_tokenizer: SentencePieceTokenizer
) -> None:
    steps, specs, _ = mixed_episode()
    ep = tokenize_episode(steps, specs, layout=layout, text=tiny_tokenizer)
    out = decode_episode(ep, specs, layout=layout, text=tiny_tokenizer)
    assert out.timesteps.tolist() == [0, 1, 2, 3]
    check(out.fields, steps)
    assert set(nest(out.fields)) == {"observation", "action"}
    assert set(nest(out.fields)["action"]) == {"move", "grip"}


def test_round_trip_from_a_parquet_row_with_prompt_and_padding(
    tiny_tokenizer: SentencePieceTokenizer,
) -> None:
    steps, specs, shapes = mixed_episode()
    ep = tokenize_episode(steps, specs, text=tiny_tokenizer)
    prompt_ep = tokenize_episode(mixed_episode(seed=1)[0], specs, text=tiny_tokenizer)
    body, prompt = as_row(ep), as_row(prompt_ep)
    # A row: one prompt timestep (timestep -1), timesteps 2..3 of the episode, padding.
    p_end, b_start = int(prompt_ep.timestep_starts[1]), int(ep.timestep_starts[2])
    p_patches, b_patches = int(prompt_ep.patch_starts[1]), int(ep.patch_starts[2])
    pad = 5
    row = {
        O.TOKENS: prompt[O.TOKENS][:p_end] + body[O.TOKENS][b_start:] + [GATO.pad] * pad,
        O.MODALITY: prompt[O.MODALITY][:p_end] + body[O.MODALITY][b_start:] + [int(Modality.PAD)] * pad,
        O.TIMESTEP: [O.NO_TIMESTEP] * p_end + body[O.TIMESTEP][b_start:] + [O.NO_TIMESTEP] * pad,
        O.PATCH_PIXELS: prompt[O.PATCH_PIXELS][:p_patches] + body[O.PATCH_PIXELS][b_patches:],
    }
    # Through Arrow and back, as a reader would get it.
    table = pa.Table.from_pylist([row])
    out = decode_episode(table.to_pylist()[0], specs, shapes=shapes, text=tiny_tokenizer)
    assert out.timesteps.tolist() == [2, 3]
    check(out.fields, steps, slice(2, 4))


def test_two_text_fields_in_one_role_need_lengths(tiny_tokenizer: SentencePieceTokenizer) -> None:
    texts = np.array([b"up", b"picks the red block"], object)
    steps = {"observation": {"a": texts, "b": texts[::-1].copy()}, "action": np.zeros((2, 1))}
    specs = {"observation/a": F.text(), "observation/b": F.text(), "action": F.continuous()}
    ep = tokenize_episode(steps, specs, text=tiny_tokenizer)
    with pytest.raises(ValueError, match="pass field_lengths"):
        decode_episode(as_row(ep), specs, shapes={"action": (1,)}, text=tiny_tokenizer)
    out = decode_episode(
        as_row(ep), specs, shapes={"action": (1,)}, text=tiny_tokenizer,
        field_lengths=ep.field_lengths,
    )
    assert out.fields["observation/b"].tolist() == ["picks the red block", "up"]


def test_specs_that_do_not_match_the_tokens_are_an_error() -> None:
    steps = {"observation": np.array([1, 2]), "action": np.zeros((2, 1))}
    specs = {"observation": F.discrete(), "action": F.continuous()}
    ep = tokenize_episode(steps, specs)
    wrong = {"observation": F.continuous(), "action": F.continuous()}
    with pytest.raises(ValueError, match="'observation', timestep 0: token has modality 3"):
        decode_episode(ep, wrong)
    with pytest.raises(ValueError, match="do not add up"):
        decode_episode(as_row(ep), specs, shapes={"observation": (2,), "action": (1,)})
    with pytest.raises(ValueError, match="per-timestep shape"):
        decode_episode(as_row(ep), specs)


finite = st.floats(allow_nan=False, allow_infinity=False, width=64)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.lists(finite, min_size=3, max_size=3), min_size=1, max_size=6),
    st.sampled_from([GATO, DISJOINT]),
)
def test_decode_of_encode_is_within_half_a_bin(values: list[list[float]], layout: VocabLayout) -> None:
    x = np.array(values)
    steps = {"observation": {"mu": x}, "action": {"lin": x, "d": np.arange(len(x)) % 1024}}
    specs = {"observation/mu": F.continuous("mu_law"), "action/lin": F.continuous("linear"),
             "action/d": F.discrete()}
    out = decode_episode(tokenize_episode(steps, specs, layout=layout), specs, layout=layout).fields
    f_in = np.clip(mu_law_encode(x), -1, 1)
    assert np.abs(mu_law_encode(out["observation/mu"]) - f_in).max() <= 1 / NUM_BINS + 1e-12
    assert np.abs(out["action/lin"] - np.clip(x, -1, 1)).max() <= 1 / NUM_BINS + 1e-12
    assert out["action/d"].tolist() == (np.arange(len(x)) % 1024).tolist()


def test_resized_grayscale_images_decode_to_the_declared_size() -> None:
    frames = np.full((2, 84, 84), 90, dtype=np.uint8)
    steps = {"observation": frames, "action": np.zeros((2, 1), dtype=np.int64)}
    specs = {"observation": F.image(size=(64, 48)), "action": F.discrete()}
    ep = tokenize_episode(steps, specs)
    assert ep.field_lengths[0].tolist() == [4 * 3, 1]
    # A reader knows the stored frame shape (84, 84), not the resized one.
    out = decode_episode(as_row(ep), specs, shapes={"observation": (84, 84), "action": (1,)})
    image = out.fields["observation"]
    assert image.shape == (2, 64, 48, 1) and (image == 90).all()


def test_a_row_of_only_prompt_and_padding_decodes_to_no_timesteps() -> None:
    steps, specs, shapes = mixed_episode()
    del steps["observation"]["instruction"], specs["observation/instruction"]
    ep = tokenize_episode(steps, specs)
    row = as_row(ep)
    row[O.TIMESTEP] = [O.NO_TIMESTEP] * len(row[O.TIMESTEP])  # all of it is a prompt
    out = decode_episode(row, specs, shapes=shapes)
    assert out.timesteps.tolist() == []
    assert out.fields["observation/image"].shape == (0, 32, 32, 3)
    assert out.fields["observation/joints"].shape == (0, 2, 3)
