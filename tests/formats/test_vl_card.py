"""formats/vl_card.py: the dataset card of a vision-language or text output says records,
pairs and documents instead of episodes, shows the section 8 statistics, names the source
from `VL_REGISTRY`, and offers no `episodes` config (issue 15).

The manifests and stats records here are built by hand (no Beam); the golden file is the
whole card of a VQA output with rejects.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from formats.dataset_card import SEE_THE_SOURCE, card_configs, render_card
from formats.vl_card import VL_TASK_COLUMNS, vl_details, vl_entry
from schemas import output as out
from schemas.vl import KIND_CAPTION, KIND_INTERLEAVED, KIND_TEXT, KIND_VQA

GOLDEN = Path(__file__).parent / "golden" / "vl_card.md"
L = 1024


def _entry(kind: str, *, fmt: str = "parquet", eos: int | None = 2, size: int = 192) -> dict[str, Any]:
    return {out.VL_KIND: kind, out.VL_FORMAT: fmt, out.VL_MAPPING: {"key": ["key"]}, out.VL_IMAGE_SIZE: size,
            out.VL_END_OF_SEQUENCE_ID: eos, out.VL_END_OF_SEQUENCE: "written after every target text",
            out.VL_PROMPT_FRACTION: 0.0}


def _manifest(dataset: str = "vqav2", kind: str = KIND_VQA, *, rejects: bool = True, **entry: Any) -> dict[str, Any]:
    path = f"sequences/{dataset}/{dataset}/part-00000-000.parquet"
    return {
        out.M_CONFIG: {"dataset": dataset, "sequence_length": L},
        out.M_CONFIG_HASH: "e" * 64,
        out.M_VOCABULARY: {"name": "gato", "discrete_offset": 0, "continuous_offset": 32000, "separator": 33024,
                           "pad": 33025, "image_placeholder": 33026, "vocab_size": 33027, "text_size": 32000,
                           "num_bins": 1024},
        out.M_SEQUENCE_LENGTH: L,
        out.M_IMAGE_NORMALIZATION: "((p / 255) * 2 - 1) / 4",
        out.M_SHARDS: [{out.S_PATH: path, out.S_DATASET: dataset, out.S_TASK: dataset, out.S_ROWS: 2,
                        out.S_TOKENS: 1500, out.S_BYTES: 1, out.S_SHA256: "0" * 64}],
        out.M_REJECTS: [{out.S_PATH: f"rejects/{dataset}/{dataset}/part-00000-000.parquet"}] if rejects else [],
        out.M_STATS: {out.M_STATS_PARQUET: out.STATS_PARQUET_FILE, out.M_STATS_JSON: out.STATS_JSON_FILE,
                      out.M_STATS_REPORT: out.REPORT_FILE},
        out.M_VISION_LANGUAGE: {dataset: _entry(kind, **entry)},
    }


def _record(dataset: str = "vqav2") -> dict[str, Any]:
    """A task of 7 records (2 rejected), 5 pairs in 2 rows of L tokens: every VL_STATS_SCHEMA key."""
    return {
        out.DATASET: dataset, out.TASK: dataset,
        out.VST_RECORDS_READ: 7, out.VST_RECORDS_KEPT: 5, out.VST_RECORDS_REJECTED: 2,
        out.VST_REJECTED_BY_REASON: {"corrupt_image": 1, "empty_text": 1}, out.VST_UNITS_REJECTED_BY_REASON: {},
        out.VST_UNITS: 5, out.VST_SEQUENCE_LENGTH: L, out.VST_ROWS: 2, out.VST_TOKENS: 1500,
        out.VST_TEXT_TOKENS: 60, out.VST_IMAGE_TOKENS: 1440, out.VST_LOSS_TOKENS: 15,
        out.VST_PADDING_TOKENS: 548, out.VST_PADDING_FRACTION: 548 / 2048, out.VST_UNITS_PER_ROW_MEAN: 2.5,
        out.VST_UNITS_PER_ROW_HISTOGRAM: [0, 1, 1, 0, 0], out.VST_UNIT_TEXT_TOKENS_MIN: 9,
        out.VST_UNIT_TEXT_TOKENS_MEDIAN: 12.5, out.VST_UNIT_TEXT_TOKENS_MAX: 14,
    }


def test_the_vqa_card_matches_its_golden_file() -> None:
    card = render_card(_manifest(), [_record()])
    if os.environ.get("UPDATE_GOLDEN"):
        GOLDEN.write_text(card)
    assert card == GOLDEN.read_text()


def test_the_card_speaks_of_records_and_pairs_never_of_episodes_or_the_filter() -> None:
    card = render_card(_manifest(), [_record()])
    intro = card.split("\n## ")[0]
    assert "Question-answer pairs about images of `vqav2` turned into Gato training sequences" in intro
    assert "Episodes" not in intro and "episodes.parquet" not in card and '"episodes"' not in card
    assert "| `vqav2` | `vqav2` | `vqav2--vqav2` | 7 | 5 | 2 | 5 | 2 | 1500 | 0.267578 | 12.5 |" in card
    assert "| `source_keys` | list<string> |" in card  # the VL column, from its field metadata
    assert "- Homepage: https://visualqa.org\n" in card and f"- Licence: {SEE_THE_SOURCE}\n" in card
    assert 'rejects = datasets.load_dataset(DIR, "rejects")' in card
    assert "- `rejects/<dataset>/<task>/part-*.parquet`: one row per record or pair" in card


def test_the_tasks_table_has_the_section_8_figures_in_order() -> None:
    assert [key for key, _ in VL_TASK_COLUMNS] == [
        out.VST_RECORDS_READ, out.VST_RECORDS_KEPT, out.VST_RECORDS_REJECTED, out.VST_UNITS, out.VST_ROWS,
        out.VST_TOKENS, out.VST_PADDING_FRACTION, out.VST_UNIT_TEXT_TOKENS_MEDIAN,
    ]
    empty = {**_record(), out.VST_PADDING_FRACTION: None, out.VST_UNIT_TEXT_TOKENS_MEDIAN: None}
    assert "| 7 | 5 | 2 | 5 | 2 | 1500 | - | - |" in render_card(_manifest(), [empty])  # null statistics


def test_configs_have_no_episodes_and_the_stats_features_of_the_vl_schema() -> None:
    configs = card_configs(_manifest())
    assert [c["config_name"] for c in configs] == ["default", "vqav2", "vqav2--vqav2", "stats", "rejects"]
    stats = configs[3]
    maps = {out.VST_REJECTED_BY_REASON, out.VST_UNITS_REJECTED_BY_REASON}
    assert stats["columns"] == [name for name in out.VL_STATS_SCHEMA.names if name not in maps]
    assert {"name": out.VST_UNITS_PER_ROW_HISTOGRAM, "list": "int64"} in stats["features"]
    assert {"name": out.VST_UNIT_TEXT_TOKENS_MEDIAN, "dtype": "float64"} in stats["features"]
    without = render_card(_manifest(rejects=False), [_record()])
    assert "rejects = datasets" not in without and '"rejects"' not in without


@pytest.mark.parametrize(
    ("kind", "tags", "subject"),
    [
        (KIND_CAPTION, ["image-to-text", "gato", "vision-language"], "Image-caption pairs of `d`"),
        (KIND_TEXT, ["text-generation", "gato"], "Text documents of `d`"),
        (KIND_INTERLEAVED, ["image-text-to-text", "gato", "vision-language"],
         "Interleaved documents (images and text in page order) of `d`"),
    ],
)
def test_each_kind_has_its_tags_and_subject(kind: str, tags: list[str], subject: str) -> None:
    card = render_card(_manifest("d", kind), [_record("d")])
    header = card.split("configs:")[0]
    assert header.endswith("tags:\n" + "".join(f"- {t}\n" for t in tags))
    assert f"\n\n{subject} turned into Gato training sequences" in card
    assert f"- Licence: {SEE_THE_SOURCE}\n" in card and "(`vision_language`). This output" in card  # not registered


def test_documents_are_cut_and_text_has_no_image_sentence() -> None:
    text = vl_details(_entry(KIND_TEXT, eos=None), sequence_length=L)
    assert "cut into consecutive rows of 1024 tokens; documents are never packed" in text
    assert "Images" not in text and "E is omitted: the text model has no end-of-sequence id." in text
    interleaved = vl_details(_entry(KIND_INTERLEAVED, size=64), sequence_length=L)
    assert ", never inside an image;" in interleaved and "64 x 64 pixels, 16 patches of 16 x 16." in interleaved
    assert "E is the text model's end-of-sequence id 2." in interleaved


def test_the_registry_gives_the_source_and_the_format_its_name() -> None:
    card = render_card(_manifest("coco_captions", KIND_CAPTION, fmt="tfds"), [_record("coco_captions")])
    assert ("Records of `coco_captions`, read from its TFDS files with the field mapping in `manifest.json` "
            "(`vision_language`). Our registry describes it as MS-COCO Captions: images with five human captions "
            "each. This output is a derived work") in card
    assert "- Homepage: https://cocodataset.org\n" in card


def test_vl_entry_is_none_for_agent_outputs_and_refuses_a_missing_or_unknown_entry() -> None:
    manifest = _manifest()
    assert vl_entry({k: v for k, v in manifest.items() if k != out.M_VISION_LANGUAGE}, "vqav2") is None
    assert vl_entry(manifest, "vqav2") == _entry(KIND_VQA)
    with pytest.raises(ValueError, match=r"`vision_language` has no entry for dataset 'okvqa': \['vqav2'\]"):
        vl_entry(manifest, "okvqa")
    with pytest.raises(ValueError, match=r"`vision_language.vqav2.kind` is 'episodes'"):
        vl_entry({**manifest, out.M_VISION_LANGUAGE: {"vqav2": {out.VL_KIND: "episodes"}}}, "vqav2")
