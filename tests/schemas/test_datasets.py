"""schemas/datasets.py: the dataset registry (names, Table 1 weights, field specs, order keys)."""

from __future__ import annotations

import pytest

from schemas.datasets import (
    ATARI,
    BABYAI,
    CONTROL_SUITE,
    DMLAB,
    METAWORLD,
    REGISTRY,
    get_dataset,
    task_name,
)
from schemas.fields import continuous, discrete, image, text
from schemas.rlds_spec import (
    KIND_IMAGE,
    KIND_TENSOR,
    KIND_TEXT,
    RETURN_EPISODE_RETURN,
    RETURN_SUM_REWARDS,
    FeatureInfo,
)


def test_registry_names_and_lookup() -> None:
    assert sorted(REGISTRY) == ["atari", "babyai", "control_suite", "dmlab", "metaworld"]
    assert get_dataset("atari") is ATARI
    with pytest.raises(ValueError) as e:
        get_dataset("atary")
    message = str(e.value)
    assert "'atary'" in message
    for name in REGISTRY:
        assert name in message
    assert "rlds:<dir>" in message


def test_table1_sample_weights() -> None:
    weights = {name: spec.sample_weight for name, spec in REGISTRY.items()}
    assert weights == {
        "atari": 0.095,
        "dmlab": 0.0935,
        "babyai": 0.0906,
        "control_suite": 0.0462,
        "metaworld": 0.0896,
    }


def test_field_specs_follow_spec_section_2() -> None:
    assert ATARI.field_specs == {"observation": image(), "action": discrete()}
    assert DMLAB.field_specs == {
        "observation/pixels": image(),
        "observation/last_action": discrete(),
        "observation/last_reward": continuous("mu_law"),
        "action": discrete(),
    }
    # Bounded actions in [-1, 1] are linear, observations mu_law.
    assert METAWORLD.field_specs == {
        "observation/state": continuous("mu_law"),
        "action": continuous("linear"),
    }
    assert CONTROL_SUITE.field_specs == {"action": continuous("linear")}
    assert CONTROL_SUITE.infer_roles == ("observation",)
    # BabyAI's grid is symbolic ids, tokenized as discrete; the mission is text.
    assert BABYAI.field_specs == {
        "observation/image": discrete(),
        "observation/direction": discrete(),
        "observation/mission": text(),
        "action": discrete(),
    }


def test_order_keys_ids_and_return_sources() -> None:
    assert ATARI.order_key == ("checkpoint_id", "episode_id")
    assert ATARI.id_fields == ("checkpoint_id", "episode_id")
    for spec in (DMLAB, CONTROL_SUITE, METAWORLD, BABYAI):
        assert spec.order_key == ("episode_id",)
    assert CONTROL_SUITE.return_source == RETURN_SUM_REWARDS
    for spec in (ATARI, DMLAB, METAWORLD, BABYAI):
        assert spec.return_source == RETURN_EPISODE_RETURN
    assert ATARI.version == "1.3.0" and DMLAB.version == "1.2.0"
    assert len(DMLAB.tfds_names) == 5
    assert task_name("rlu_atari", "Pong_run_1") == "rlu_atari/Pong_run_1"


def test_expected_features_of_the_project_datasets() -> None:
    assert METAWORLD.expected["steps/observation/state"] == FeatureInfo(KIND_TENSOR, "float32", (39,))
    assert METAWORLD.expected["steps/action"] == FeatureInfo(KIND_TENSOR, "float32", (4,))
    assert BABYAI.expected["steps/observation/image"] == FeatureInfo(KIND_TENSOR, "uint8", (7, 7, 3))
    assert BABYAI.expected["steps/observation/mission"].kind == KIND_TEXT
    assert ATARI.expected["steps/observation"] == FeatureInfo(KIND_IMAGE, "uint8", (84, 84, 1))
    # Any shape matches a None shape; a different dtype never does.
    anything = FeatureInfo(KIND_TENSOR, "float32", None)
    assert anything.matches(FeatureInfo(KIND_TENSOR, "float32", (7,)))
    assert not anything.matches(FeatureInfo(KIND_TENSOR, "float64", (7,)))


def test_rlds_dir_names_and_bad_return_sources() -> None:
    from schemas.datasets import RLDS_PREFIX, DatasetSpec, is_rlds_dir

    assert RLDS_PREFIX == "rlds:"
    assert is_rlds_dir("rlds:/data/robot") and is_rlds_dir("rlds:")
    assert not is_rlds_dir("atari") and not is_rlds_dir("/data/rlds:x")
    with pytest.raises(ValueError, match="dataset 'x': return source 'max'"):
        DatasetSpec(name="x", tfds_names=("x",), version=None, order_key=(), id_fields=(), return_source="max")


def test_registry_specs_are_hashable_and_pickle_to_equal_specs() -> None:
    import pickle

    for spec in REGISTRY.values():
        assert pickle.loads(pickle.dumps(spec)) == spec
        assert hash(spec) == hash(pickle.loads(pickle.dumps(spec)))
        # The dict views are copies: changing one never changes the registry.
        spec.field_specs.clear()
        assert spec.field_specs == dict(spec.fields) != {}


def test_rl_unplugged_entries_cite_their_source_and_guess_no_licence() -> None:
    # The dataset card quotes these: the citations are those of tensorflow_datasets' builders.
    from schemas.datasets import ATARI, BABYAI, CONTROL_SUITE, DMLAB, METAWORLD, RL_UNPLUGGED_HOMEPAGE

    assert "eprint={2006.13888}" in ATARI.citation and "gulcehre2020rl" in CONTROL_SUITE.citation
    assert "2103.09575" in DMLAB.citation
    assert {s.homepage for s in (ATARI, DMLAB, CONTROL_SUITE)} == {RL_UNPLUGGED_HOMEPAGE}
    assert all(s.licence is None for s in (ATARI, DMLAB, CONTROL_SUITE, METAWORLD, BABYAI))
    assert METAWORLD.citation is None and BABYAI.citation is None  # our own recordings
