"""The job's configuration: one frozen dataclass, validated on construction.

`beam_runner.py` builds it from flags; tests build it directly. Everything that can change
the output's bytes is here (and so in the manifest's configuration hash); Beam's own
options (runner, workers, project...) are passed separately and never change the bytes.
The hash leaves out the fields that only say where or how to run (output and data dirs,
`overwrite`, `strict`) and the text model's path: the model enters by content (its
sha256, added by `run_job`), so the same data written elsewhere hashes alike. Without
`--data_dir` the job reads the bundled samples (`SAMPLES_DATA_DIR`).

`to_config`, the configuration the manifest records, leaves out where things are: the
output dir, the data dir and the text model's path. So an output's manifest stays true once
the output is moved or copied, and the same job writes the same bytes into any directory,
from any copy of the data, on any machine or runner, whatever its run id (`run_job` hands
the pipeline a copy whose `output_dir` is the run's staging directory
`<output_dir>/_staging/<run id>`).
"""

from __future__ import annotations

import dataclasses
import pathlib
from collections.abc import Mapping
from typing import Any

from formats.manifest import config_hash
from schemas.vl import DEFAULT_IMAGE_SIZE, is_vl_dataset
from schemas.vocab import DEFAULT_SEQUENCE_LENGTH, LAYOUTS, PATCH_SIZE

# The bundled sample datasets (samples/README.md), used when no --data_dir is given.
SAMPLES_DIR = str(pathlib.Path(__file__).resolve().parent.parent / "samples")
SAMPLES_DATA_DIR = f"{SAMPLES_DIR}/data"
# Fields that say where things are: not recorded in the manifest (module doc). The
# SentencePiece model enters by content (`run_job` adds its sha256), not by path.
_LOCATIONS = frozenset({"output_dir", "data_dir", "sentencepiece_model", "vl_spec"})
# Options of one kind of data only: left out of the other kind's configuration, so adding
# vision-language options left agent outputs' manifests as they were. A vision-language
# job records its resolved format and field mapping instead of the flags (`run_job`).
_VL_ONLY = frozenset({"format", "fields", "vl_spec", "image_size"})
_VL_RESOLVED = frozenset({"format", "fields"})
_AGENT_ONLY = frozenset(
    {"filter_fraction", "window_cap", "no_filter", "prompt_fraction", "prompt_tokens", "prompt_pool_size", "rlds_spec"}
)
# Fields that only say where or how to run, never what is written: left out of the hash.
_NOT_HASHED = _LOCATIONS | {"overwrite", "strict"}


@dataclasses.dataclass(frozen=True)
class JobOptions:
    """One job: which episodes to read, how to filter, tokenize and sequence them, where to write.

    Invariants (checked in `__post_init__`, a `ValueError` naming the option otherwise):
    0 < filter_fraction <= 1; window_cap >= 1; 0 <= prompt_fraction <= 1;
    sequence_length >= 2; 0 < prompt_tokens < sequence_length; prompt_pool_size >= 1;
    rows_per_shard >= 1; layout is a known vocabulary layout.
    """

    dataset: str
    output_dir: str
    data_dir: str = SAMPLES_DATA_DIR
    tasks: tuple[str, ...] = ("*",)
    sentencepiece_model: str | None = None
    rlds_spec: str | None = None
    layout: str = "gato"
    sequence_length: int = DEFAULT_SEQUENCE_LENGTH
    seed: int = 0
    filter_fraction: float = 0.8
    window_cap: int = 1000
    no_filter: bool = False
    prompt_fraction: float = 0.25
    prompt_tokens: int | None = None  # None: sequence_length // 4
    prompt_pool_size: int = 16
    rows_per_shard: int = 2048
    overwrite: bool = False
    strict: bool = False
    # Vision-language and text datasets (spec section 8, `planning/vl_plan.py`).
    format: str | None = None  # None: the registry entry's default format
    fields: tuple[str, ...] = ()  # field mapping overrides, `<part>=<name>[|<name>...]`
    vl_spec: str | None = None  # a TOML file with `format` and a `[fields]` table
    image_size: int = DEFAULT_IMAGE_SIZE  # S

    def __post_init__(self) -> None:
        def bad(name: str, why: str) -> ValueError:
            return ValueError(f"--{name}={getattr(self, name)!r}: {why}")

        if not self.dataset:
            raise bad("dataset", "a dataset name is required (e.g. atari, or rlds:<dir>)")
        if not self.output_dir:
            raise bad("output_dir", "an output directory is required")
        if not self.tasks:
            raise bad("tasks", "give at least one task glob ('*' selects every task)")
        if self.layout not in LAYOUTS:
            raise bad("layout", f"unknown vocabulary layout; known: {sorted(LAYOUTS)}")
        if not 0.0 < self.filter_fraction <= 1.0:
            raise bad("filter_fraction", "must be in (0, 1]")
        if self.window_cap < 1:
            raise bad("window_cap", "must be at least 1")
        if not 0.0 <= self.prompt_fraction <= 1.0:
            raise bad("prompt_fraction", "must be in [0, 1]")
        if self.sequence_length < 2:
            raise bad("sequence_length", "must be at least 2")
        if not 0 < self.effective_prompt_tokens < self.sequence_length:
            raise bad("prompt_tokens", f"must be in [1, sequence_length={self.sequence_length})")
        if self.prompt_pool_size < 1:
            raise bad("prompt_pool_size", "must be at least 1")
        if self.rows_per_shard < 1:
            raise bad("rows_per_shard", "must be at least 1")
        if self.image_size < PATCH_SIZE or self.image_size % PATCH_SIZE:
            raise bad("image_size", f"must be a positive multiple of {PATCH_SIZE}")
        self._refuse_other_kinds_options(bad)

    def _refuse_other_kinds_options(self, bad: Any) -> None:
        """An option of the other kind of data would be ignored: a ValueError instead."""
        defaults = {f.name: f.default for f in dataclasses.fields(self)}
        if self.is_vision_language:
            why = "agent data only: vision-language and text data have no filter, prompts or tasks (spec section 8)"
            names = sorted(_AGENT_ONLY | {"tasks"})
        else:
            why = f"vision-language and text data only; {self.dataset!r} is agent data"
            names = sorted(_VL_ONLY)
        for name in names:
            if getattr(self, name) != defaults[name]:
                raise bad(name, why)

    @property
    def is_vision_language(self) -> bool:
        return is_vl_dataset(self.dataset)

    @property
    def effective_prompt_tokens(self) -> int:
        """The prompt budget in tokens: `prompt_tokens`, or a quarter of the sequence."""
        if self.prompt_tokens is not None:
            return self.prompt_tokens
        return max(1, self.sequence_length // 4)

    def to_config(self) -> dict[str, Any]:
        """JSON-able configuration, as recorded in the manifest: every field but the
        locations (module doc)."""
        if self.is_vision_language:
            left_out = _LOCATIONS | _AGENT_ONLY | _VL_RESOLVED
        else:
            left_out = _LOCATIONS | _VL_ONLY
        config = {k: v for k, v in dataclasses.asdict(self).items() if k not in left_out}
        config["tasks"] = list(self.tasks)
        if not self.is_vision_language:
            config["prompt_tokens"] = self.effective_prompt_tokens
        return config

    def config_hash(self, extra: Mapping[str, Any] | None = None) -> str:
        """sha256 of the canonical JSON of the options that determine the output's content.

        `extra` adds facts found at run time that also determine it (e.g. the text model's
        sha256); they are recorded in the manifest's configuration too.
        """
        content = {k: v for k, v in self.to_config().items() if k not in _NOT_HASHED}
        return config_hash({**content, **(extra or {})})
