"""JobOptions: validation names the flag; the config hash covers content, not location."""

from __future__ import annotations

import dataclasses

import pytest

from planning.options import JobOptions


def make(**kw: object) -> JobOptions:
    return JobOptions(**{"dataset": "atari", "output_dir": "/tmp/out", **kw})  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("field", "value", "flag"),
    [
        ("filter_fraction", 0.0, "--filter_fraction"),
        ("filter_fraction", 1.5, "--filter_fraction"),
        ("window_cap", 0, "--window_cap"),
        ("prompt_fraction", -0.1, "--prompt_fraction"),
        ("sequence_length", 1, "--sequence_length"),
        ("prompt_tokens", 1024, "--prompt_tokens"),
        ("prompt_pool_size", 0, "--prompt_pool_size"),
        ("rows_per_shard", 0, "--rows_per_shard"),
        ("layout", "nope", "--layout"),
        ("tasks", (), "--tasks"),
    ],
)
def test_bad_values_name_the_flag(field: str, value: object, flag: str) -> None:
    with pytest.raises(ValueError, match=flag):
        make(**{field: value})


def test_prompt_budget_defaults_to_a_quarter() -> None:
    assert make().effective_prompt_tokens == 256
    assert make(sequence_length=100).effective_prompt_tokens == 25
    assert make(prompt_tokens=10).to_config()["prompt_tokens"] == 10


def test_hash_ignores_where_and_how_but_not_what() -> None:
    base = make()
    assert base.config_hash() == make(output_dir="gs://b/o", data_dir="/elsewhere",
                                      overwrite=True, strict=True).config_hash()
    for field, value in [("seed", 1), ("sequence_length", 512), ("tasks", ("Pong*",)),
                         ("layout", "disjoint"), ("no_filter", True)]:
        assert dataclasses.replace(base, **{field: value}).config_hash() != base.config_hash()


def test_text_model_enters_the_hash_by_content_not_path() -> None:
    base = make(sentencepiece_model="/a/text.model")
    assert base.config_hash() == make(sentencepiece_model="gs://b/text.model").config_hash()
    assert base.config_hash({"sentencepiece_model_sha256": "00"}) != base.config_hash(
        {"sentencepiece_model_sha256": "01"}
    )


def test_the_recorded_configuration_names_no_location() -> None:
    # run_job hands the pipeline its staging directory; the manifest names neither it nor
    # the published output, the data dir or the text model's path (a moved output stays true).
    staged = make(output_dir=f"gs://b/out/_staging/{'a' * 32}", data_dir="/data/tfds",
                  sentencepiece_model="/models/text.model")
    assert not {"output_dir", "data_dir", "sentencepiece_model"} & set(staged.to_config())
    assert staged.to_config() == make(output_dir="/elsewhere").to_config()
    assert staged.to_config()["seed"] == 0 and staged.to_config()["tasks"] == ["*"]


@pytest.mark.parametrize(
    ("dataset", "option", "value"),
    [
        ("vqav2", "prompt_fraction", 0.5),
        ("text", "no_filter", True),
        ("coco_captions", "tasks", ("coco*",)),
        ("okvqa", "rlds_spec", "spec.toml"),
        ("atari", "format", "parquet"),
        ("babyai", "fields", ("image=jpg",)),
        ("metaworld", "image_size", 64),
        ("atari", "vl_spec", "vl.toml"),
    ],
)
def test_an_option_of_the_other_kind_of_data_is_refused_not_ignored(dataset: str, option: str, value: object) -> None:
    with pytest.raises(ValueError, match=rf"^--{option}=.*(agent data only|vision-language and text data only)"):
        JobOptions(dataset=dataset, output_dir="o", **{option: value})


def test_vision_language_options_leave_agent_configurations_alone() -> None:
    agent = JobOptions(dataset="atari", output_dir="o").to_config()
    assert not {"format", "fields", "vl_spec", "image_size"} & set(agent)
    vl = JobOptions(dataset="coco_captions", output_dir="o", format="parquet", image_size=64).to_config()
    assert vl["image_size"] == 64 and not {"prompt_fraction", "filter_fraction", "format", "fields"} & set(vl)
