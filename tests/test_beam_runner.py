"""Flag parsing of the CLI: our flags become JobOptions, every other flag goes to Beam."""

from __future__ import annotations

import pytest

from beam_runner import DEFAULT_RUNNER, parse
from planning.options import SAMPLES_DATA_DIR


def test_defaults_read_the_samples_and_name_the_local_runner() -> None:
    options, beam_args = parse(["--dataset=atari"])
    assert options.data_dir == SAMPLES_DATA_DIR
    assert options.output_dir == "out/atari"
    assert options.tasks == ("*",)
    assert beam_args == [f"--runner={DEFAULT_RUNNER}"]


def test_unknown_flags_pass_through_to_beam_unchanged() -> None:
    options, beam_args = parse([
        "--dataset=atari", "--tasks=Pong*, Breakout*", "--runner=DataflowRunner", "--project=p",
        "--region=us-central1", "--num_workers=8", "--setup_file=./pyproject.toml", "--seed=3",
    ])
    assert options.tasks == ("Pong*", "Breakout*") and options.seed == 3
    assert beam_args == ["--runner=DataflowRunner", "--project=p", "--region=us-central1",
                         "--num_workers=8", "--setup_file=./pyproject.toml"]


def test_rlds_dataset_gets_a_plain_default_output_dir() -> None:
    options, _ = parse(["--dataset=rlds:/data/robot"])
    assert options.output_dir == "out/rlds__data_robot"


def test_bad_values_are_value_errors_naming_the_flag() -> None:
    with pytest.raises(ValueError, match="--prompt_fraction"):
        parse(["--dataset=atari", "--prompt_fraction=2"])
