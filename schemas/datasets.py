"""The dataset registry: what the pipeline knows about each dataset it can read by name.

TensorFlow-free. Task lists that live in TFDS builder classes (230 `rlu_atari` configs,
...) are named here by builder (`config_builders`) and resolved lazily by
`planning/plan.py`; datasets this project records (`metaworld`, `babyai`) take their tasks
from the configs found on disk. A task is named `<tfds name>/<config>`.

`expected_features` is what the dataset must look like on disk (feature path from the
root -> FeatureInfo; keys may be fnmatch patterns, e.g. `steps/observation/*` for
control suite, whose observation keys differ per task). `fields` are the tokenization
specs by step field path; roles listed in `infer_roles` get theirs from the features on
disk instead (inference rules of `schemas/rlds_spec.py`).
"""

from __future__ import annotations

import dataclasses
from typing import Mapping

from schemas.fields import (
    ACTION,
    CHECKPOINT_ID,
    DISCOUNT,
    EPISODE_ID,
    EPISODE_RETURN,
    IS_FIRST,
    IS_LAST,
    IS_TERMINAL,
    OBSERVATION,
    PATH_SEPARATOR,
    REWARD,
    FieldSpec,
    continuous,
    discrete,
    image,
    join_path,
    text,
)
from schemas.rlds_spec import (
    KIND_IMAGE,
    KIND_TENSOR,
    KIND_TEXT,
    RETURN_EPISODE_RETURN,
    RETURN_SOURCES,
    RETURN_SUM_REWARDS,
    FeatureInfo,
    step_path,
)
from schemas.vocab import LOCAL_POSITION_TABLE, Encoding

RLDS_PREFIX = "rlds:"  # `rlds:<dir>`: any RLDS dataset on disk, specs inferred


@dataclasses.dataclass(frozen=True)
class DatasetSpec:
    """One dataset: where its tasks live, how to order and score episodes, how to tokenize.

    Invariants: `order_key` and `id_fields` name episode-level fields; `fields` and
    `expected_features` are stored as sorted tuples of pairs so the spec is hashable and
    picklable (use the `field_specs` / `expected` properties for dicts).
    """

    name: str
    tfds_names: tuple[str, ...]
    version: str | None  # None: the newest version found on disk
    order_key: tuple[str, ...]
    id_fields: tuple[str, ...]  # rendered and joined with "/" into EpisodeKey.episode_id
    return_source: str
    fields: tuple[tuple[str, FieldSpec], ...] = ()
    infer_roles: tuple[str, ...] = ()
    expected_features: tuple[tuple[str, FeatureInfo], ...] = ()
    config_builders: bool = False  # tasks enumerable from the TFDS builder classes
    local_position_table: int = LOCAL_POSITION_TABLE
    sample_weight: float | None = None  # Gato's Table 1, where the dataset is in it
    task_name: str | None = None  # rlds spec file override: one fixed task name
    # For the dataset card (formats/dataset_card.py). Only what the source itself states:
    # None means "see the source", never a guess.
    homepage: str | None = None
    citation: str | None = None  # BibTeX, as the TFDS builder we read declares it
    licence: str | None = None

    def __post_init__(self) -> None:
        if self.return_source not in RETURN_SOURCES:
            raise ValueError(
                f"dataset {self.name!r}: return source {self.return_source!r}; "
                f"allowed: {RETURN_SOURCES}"
            )

    @property
    def field_specs(self) -> dict[str, FieldSpec]:
        return dict(self.fields)

    @property
    def expected(self) -> dict[str, FeatureInfo]:
        return dict(self.expected_features)


def _tensor(dtype: str, shape: tuple[int, ...] | None = ()) -> FeatureInfo:
    return FeatureInfo(KIND_TENSOR, dtype, shape)


def _image(shape: tuple[int, int, int]) -> FeatureInfo:
    return FeatureInfo(KIND_IMAGE, "uint8", shape)


_RLDS_STEP_FEATURES: dict[str, FeatureInfo] = {
    step_path(REWARD): _tensor("float32"),
    step_path(DISCOUNT): _tensor("float32"),
    step_path(IS_FIRST): _tensor("bool"),
    step_path(IS_LAST): _tensor("bool"),
    step_path(IS_TERMINAL): _tensor("bool"),
}


def _pairs(mapping: Mapping[str, object]) -> tuple:
    return tuple(sorted(mapping.items()))


def _expected(episode: Mapping[str, FeatureInfo], steps: Mapping[str, FeatureInfo]) -> tuple:
    return _pairs({**episode, **_RLDS_STEP_FEATURES, **{step_path(k): v for k, v in steps.items()}})


_OBS = OBSERVATION
RL_UNPLUGGED_HOMEPAGE = "https://github.com/deepmind/deepmind-research/tree/master/rl_unplugged"
# The citations of tensorflow_datasets' rl_unplugged builders (rlu_atari: atari_utils.py,
# rlu_control_suite, rlu_dmlab_*: dmlab_dataset.py). RL Unplugged states no data licence.
_RLU_ATARI_CITATION = """@misc{gulcehre2020rl,
    title={RL Unplugged: Benchmarks for Offline Reinforcement Learning},
    author={Caglar Gulcehre and Ziyu Wang and Alexander Novikov and Tom Le Paine
        and  Sergio Gómez Colmenarejo and Konrad Zolna and Rishabh Agarwal and
        Josh Merel and Daniel Mankowitz and Cosmin Paduraru and Gabriel
        Dulac-Arnold and Jerry Li and Mohammad Norouzi and Matt Hoffman and
        Ofir Nachum and George Tucker and Nicolas Heess and Nando deFreitas},
    year={2020},
    eprint={2006.13888},
    archivePrefix={arXiv},
    primaryClass={cs.LG}
}"""
_RLU_CONTROL_SUITE_CITATION = r"""@inproceedings{gulcehre2020rl,
 title = {RL Unplugged: A Suite of Benchmarks for Offline Reinforcement Learning},
 author = {Gulcehre, Caglar and Wang, Ziyu and Novikov, Alexander and Paine, Thomas and G\'{o}mez, Sergio and Zolna, Konrad and Agarwal, Rishabh and Merel, Josh S and Mankowitz, Daniel J and Paduraru, Cosmin and Dulac-Arnold, Gabriel and Li, Jerry and Norouzi, Mohammad and Hoffman, Matthew and Heess, Nicolas and de Freitas, Nando},
 booktitle = {Advances in Neural Information Processing Systems},
 pages = {7248--7259},
 volume = {33},
 year = {2020}
}"""
_RLU_DMLAB_CITATION = r"""@article{gulcehre2021rbve,
    title={Regularized Behavior Value Estimation},
    author={{\c{C}}aglar G{\"{u}}l{\c{c}}ehre and
               Sergio G{\'{o}}mez Colmenarejo and
               Ziyu Wang and
               Jakub Sygnowski and
               Thomas Paine and
               Konrad Zolna and
               Yutian Chen and
               Matthew W. Hoffman and
               Razvan Pascanu and
               Nando de Freitas},
    year={2021},
    journal   = {CoRR},
    url       = {https://arxiv.org/abs/2103.09575},
    eprint={2103.09575},
    archivePrefix={arXiv},
}"""
_ATARI_GAMES_BUILDER = "rlu_atari"
DMLAB_TFDS_NAMES = (
    "rlu_dmlab_explore_object_rewards_few",
    "rlu_dmlab_explore_object_rewards_many",
    "rlu_dmlab_rooms_select_nonmatching_object",
    "rlu_dmlab_rooms_watermaze",
    "rlu_dmlab_seekavoid_arena01",
)

ATARI = DatasetSpec(
    name="atari",
    tfds_names=(_ATARI_GAMES_BUILDER,),
    version="1.3.0",
    order_key=(CHECKPOINT_ID, EPISODE_ID),
    id_fields=(CHECKPOINT_ID, EPISODE_ID),
    return_source=RETURN_EPISODE_RETURN,
    fields=_pairs({OBSERVATION: image(), ACTION: discrete()}),
    expected_features=_expected(
        {
            CHECKPOINT_ID: _tensor("int64"),
            EPISODE_ID: _tensor("int64"),
            EPISODE_RETURN: _tensor("float32"),
        },
        {OBSERVATION: _image((84, 84, 1)), ACTION: _tensor("int64")},
    ),
    config_builders=True,
    sample_weight=0.095,
    homepage=RL_UNPLUGGED_HOMEPAGE,
    citation=_RLU_ATARI_CITATION,
)

DMLAB = DatasetSpec(
    name="dmlab",
    tfds_names=DMLAB_TFDS_NAMES,
    version="1.2.0",
    order_key=(EPISODE_ID,),
    id_fields=(EPISODE_ID,),
    return_source=RETURN_EPISODE_RETURN,
    fields=_pairs(
        {
            join_path(_OBS, "pixels"): image(),
            join_path(_OBS, "last_action"): discrete(),
            join_path(_OBS, "last_reward"): continuous(Encoding.MU_LAW),
            ACTION: discrete(),
        }
    ),
    expected_features=_expected(
        {EPISODE_ID: _tensor("int64"), EPISODE_RETURN: _tensor("float32")},
        {
            join_path(_OBS, "pixels"): _image((72, 96, 3)),
            join_path(_OBS, "last_action"): _tensor("int64"),
            join_path(_OBS, "last_reward"): _tensor("float32"),
            ACTION: _tensor("int64"),
        },
    ),
    config_builders=True,
    sample_weight=0.0935,
    homepage=RL_UNPLUGGED_HOMEPAGE,
    citation=_RLU_DMLAB_CITATION,
)

CONTROL_SUITE = DatasetSpec(
    name="control_suite",
    tfds_names=("rlu_control_suite",),
    version="1.0.0",
    order_key=(EPISODE_ID,),
    id_fields=(EPISODE_ID,),
    return_source=RETURN_SUM_REWARDS,  # no episode_return field
    # Observation keys differ per task: inferred (float -> mu_law). The action is bounded
    # in [-1, 1] by dm_control's action spec, hence linear.
    fields=_pairs({ACTION: continuous(Encoding.LINEAR)}),
    infer_roles=(OBSERVATION,),
    expected_features=_expected(
        {EPISODE_ID: _tensor("int64")},
        {join_path(_OBS, "*"): _tensor("float32", None), ACTION: _tensor("float32", None)},
    ),
    config_builders=True,
    sample_weight=0.0462,
    homepage=RL_UNPLUGGED_HOMEPAGE,
    citation=_RLU_CONTROL_SUITE_CITATION,
)

METAWORLD = DatasetSpec(
    name="metaworld",
    tfds_names=("gato_metaworld",),
    version="1.0.0",
    order_key=(EPISODE_ID,),
    id_fields=(EPISODE_ID,),
    return_source=RETURN_EPISODE_RETURN,
    fields=_pairs(
        {join_path(_OBS, "state"): continuous(Encoding.MU_LAW), ACTION: continuous(Encoding.LINEAR)}
    ),
    expected_features=_expected(
        {EPISODE_ID: _tensor("int64"), EPISODE_RETURN: _tensor("float32")},
        {join_path(_OBS, "state"): _tensor("float32", (39,)), ACTION: _tensor("float32", (4,))},
    ),
    sample_weight=0.0896,
)

BABYAI = DatasetSpec(
    name="babyai",
    tfds_names=("gato_babyai",),
    version="1.0.0",
    order_key=(EPISODE_ID,),
    id_fields=(EPISODE_ID,),
    return_source=RETURN_EPISODE_RETURN,
    fields=_pairs(
        {
            # minigrid's symbolic grid (object, colour, state ids), not pixels.
            join_path(_OBS, "image"): discrete(),
            join_path(_OBS, "direction"): discrete(),
            join_path(_OBS, "mission"): text(),
            ACTION: discrete(),
        }
    ),
    expected_features=_expected(
        {EPISODE_ID: _tensor("int64"), EPISODE_RETURN: _tensor("float32")},
        {
            join_path(_OBS, "image"): _tensor("uint8", (7, 7, 3)),
            join_path(_OBS, "direction"): _tensor("int64"),
            join_path(_OBS, "mission"): FeatureInfo(KIND_TEXT, "string"),
            ACTION: _tensor("int64"),
        },
    ),
    sample_weight=0.0906,
)

REGISTRY: dict[str, DatasetSpec] = {
    spec.name: spec for spec in (ATARI, DMLAB, CONTROL_SUITE, METAWORLD, BABYAI)
}


def get_dataset(name: str) -> DatasetSpec:
    """The registry entry `name`; an unknown name is an error listing the known ones."""
    try:
        return REGISTRY[name]
    except KeyError:
        raise ValueError(
            f"unknown dataset {name!r}; known datasets: {sorted(REGISTRY)}, "
            f"or {RLDS_PREFIX}<dir> for any RLDS dataset in TFDS format"
        ) from None


def is_rlds_dir(name: str) -> bool:
    return name.startswith(RLDS_PREFIX)


def task_name(tfds_name: str, config: str) -> str:
    """`rlu_atari/Pong_run_1`: the task of one TFDS config."""
    return tfds_name + PATH_SEPARATOR + config

