"""transforms/task_tokenizer.py: a task's episode is tokenized with that task's planned specs,
the configured layout and local position table, and the text model loaded once."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest

from schemas.fields import continuous, discrete, image, text
from schemas.vocab import DISJOINT
from transforms.episode import EpisodeKey
from transforms.errors import TokenizationError
from transforms.task_tokenizer import TaskTokenizer, TokenizerConfig
from transforms.text import SentencePieceTokenizer
from transforms.tokenize import tokenize_episode

FIELDS = {
    "t/a": {"observation/x": continuous("linear"), "action": discrete()},
    "t/b": {"observation/mission": text(), "action": discrete()},
}
STEPS = {"observation": {"x": np.array([[0.5, -0.5], [0.25, 0.0]], np.float32)}, "action": np.array([3, 7])}


def _key(task: str, episode_id: str = "e1") -> EpisodeKey:
    return EpisodeKey("t", task, episode_id, (), "f", 0)


def test_the_config_pickles_and_has_the_documented_defaults() -> None:
    config = TokenizerConfig(task_fields=FIELDS)
    assert (config.layout, config.sentencepiece_model, config.local_position_table, config.max_timestep_tokens) == (
        "gato", None, 512, None)
    assert pickle.loads(pickle.dumps(config)) == config


def test_tokenizes_with_the_tasks_specs_layout_and_position_table() -> None:
    tokenizer = TaskTokenizer(TokenizerConfig(task_fields=FIELDS, layout="disjoint", local_position_table=64))
    assert tokenizer.layout is DISJOINT and tokenizer.text is None
    ours = tokenizer(_key("t/a"), STEPS)
    theirs = tokenize_episode(STEPS, FIELDS["t/a"], layout=DISJOINT, local_position_table=64, episode="e1")
    for name in ("tokens", "modality", "local_positions", "loss_mask", "timestep", "timestep_starts"):
        np.testing.assert_array_equal(getattr(ours, name), getattr(theirs, name))
    gato = TaskTokenizer(TokenizerConfig(task_fields=FIELDS))(_key("t/a"), STEPS)
    assert not np.array_equal(gato.tokens, ours.tokens)  # the layout really changed the ids


def test_errors_name_the_episode_id() -> None:
    tokenizer = TaskTokenizer(TokenizerConfig(task_fields=FIELDS))
    bad = {"observation": {"x": np.array([[np.nan, 0.0], [0.0, 0.0]], np.float32)}, "action": np.array([1, 2])}
    with pytest.raises(TokenizationError) as e:
        tokenizer(_key("t/a", "episode-9"), bad)
    assert e.value.episode == "episode-9" and e.value.field == "observation/x" and e.value.timestep == 0


def test_an_unplanned_task_is_an_error_listing_the_planned_ones() -> None:
    tokenizer = TaskTokenizer(TokenizerConfig(task_fields=FIELDS))
    with pytest.raises(ValueError, match=r"task 't/c' has no field specs in the plan; planned: \['t/a', 't/b'\]"):
        tokenizer(_key("t/c"), STEPS)
    with pytest.raises(ValueError, match="unknown vocabulary layout 'nope'"):
        TaskTokenizer(TokenizerConfig(task_fields=FIELDS, layout="nope"))


def test_text_fields_use_the_configured_model(tiny_model_path: Path) -> None:
    tokenizer = TaskTokenizer(TokenizerConfig(task_fields=FIELDS, sentencepiece_model=str(tiny_model_path)))
    assert isinstance(tokenizer.text, SentencePieceTokenizer) and tokenizer.text.source == str(tiny_model_path)
    steps = {"observation": {"mission": np.array([b"opens drawer", b"picks block"], dtype=object)},
             "action": np.array([0, 1])}
    ours = tokenizer(_key("t/b"), steps)
    theirs = tokenize_episode(steps, FIELDS["t/b"], text=tokenizer.text, episode="e1")
    np.testing.assert_array_equal(ours.tokens, theirs.tokens)
    without_model = TaskTokenizer(TokenizerConfig(task_fields=FIELDS))
    with pytest.raises(ValueError, match="field 'observation/mission' is text but no SentencePiece model was given"):
        without_model(_key("t/b"), steps)


def _png(frame: np.ndarray) -> bytes:
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(frame).save(buf, format="PNG")
    return buf.getvalue()


IMAGE_FIELDS = {"t/i": {"observation/pixels": image(), "action": discrete()}}


def _image_steps(*extra: bytes) -> dict:
    frames = [_png(np.full((20, 20), v, dtype=np.uint8)) for v in (1, 2)] + list(extra)
    return {"observation": {"pixels": np.array(frames, dtype=object)}, "action": np.arange(len(frames))}


def test_the_verdicts_check_has_the_tokens_and_errors_and_decodes_no_plain_frame(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Pass 1's `check` is tokenization without tokens: the same timestep starts, the same
    first error, and no frame decoded that `plain_png_shape` vouches for (that is its point)."""
    from transforms import images

    tokenizer = TaskTokenizer(TokenizerConfig(task_fields=IMAGE_FIELDS))
    steps = _image_steps()
    full = tokenizer(_key("t/i"), steps)
    decoded: list[int] = []
    real = images.decode_png
    monkeypatch.setattr(images, "decode_png", lambda data, index, **kw: decoded.append(index) or real(data, index, **kw))
    np.testing.assert_array_equal(tokenizer.check(_key("t/i"), steps), full.timestep_starts)
    assert decoded == []
    bad = _image_steps(b"\x89PNG\r\n\x1a\n broken")
    with pytest.raises(TokenizationError) as expected:
        tokenizer(_key("t/i"), bad)
    decoded.clear()
    with pytest.raises(TokenizationError) as got:
        tokenizer.check(_key("t/i"), bad)
    assert (got.value.reason, str(got.value)) == (expected.value.reason, str(expected.value))
    assert decoded == [2]  # only the frame the check could not vouch for


def test_verified_tokenization_does_not_check_frames_again(monkeypatch: pytest.MonkeyPatch) -> None:
    from transforms import png_decode

    tokenizer = TaskTokenizer(TokenizerConfig(task_fields=IMAGE_FIELDS))
    steps = _image_steps()
    full = tokenizer(_key("t/i"), steps)
    monkeypatch.setattr(png_decode, "_intact", lambda data: pytest.fail("pass 2 checked a verified frame again"))
    verified = tokenizer.verified(_key("t/i"), steps)
    np.testing.assert_array_equal(verified.patch_pixels, full.patch_pixels)
    np.testing.assert_array_equal(verified.tokens, full.tokens)
