"""The vision-language registry (spec section 8, Gato's Table 1) and field mappings."""

from __future__ import annotations

import pytest

from schemas import vl
from schemas.datasets import REGISTRY


def test_entries_carry_table_1_weights_and_together_with_the_private_ones_make_14_7_percent() -> None:
    weights = {name: spec.sample_weight for name, spec in vl.VL_REGISTRY.items()}
    assert weights == {
        "coco_captions": 0.0067, "conceptual_captions": 0.0067, "vqav2": 0.0067, "okvqa": 0.0067,
        "text": 0.067, "interleaved": 0.04,
    }
    total = sum(weights.values()) + sum(vl.TABLE1_PRIVATE_WEIGHTS.values())
    assert total == pytest.approx(0.147, abs=5e-4)  # the table rounds 0.67% (2/3 of 1%)


def test_every_entry_names_a_known_kind_and_format_and_no_agent_name() -> None:
    for spec in vl.VL_REGISTRY.values():
        assert spec.kind in vl.KINDS and spec.default_format in vl.FORMATS
        assert spec.task == spec.name
    assert not set(vl.VL_REGISTRY) & set(REGISTRY)
    assert vl.PAIR_KINDS | vl.DOCUMENT_KINDS == set(vl.KINDS)


def test_a_bad_kind_or_format_is_refused() -> None:
    with pytest.raises(ValueError, match="kind 'poem'"):
        vl.VLDatasetSpec(name="x", kind="poem", default_format=vl.FORMAT_JSONL, data_subdir="x")
    with pytest.raises(ValueError, match="format 'csv'"):
        vl.VLDatasetSpec(name="x", kind=vl.KIND_TEXT, default_format="csv", data_subdir="x")


def test_mapping_overrides_replace_named_parts_only() -> None:
    mapping = vl.FieldMapping().replace({"image": "jpg", "captions": ("caption", "alt")})
    assert mapping.image == ("jpg",) and mapping.captions == ("caption", "alt")
    assert mapping.question == vl.FieldMapping().question
    assert mapping.to_metadata()["image"] == ["jpg"]
    with pytest.raises(ValueError, match=r"unknown field mapping parts \['picture'\]"):
        vl.FieldMapping().replace({"picture": "jpg"})


def test_unknown_dataset_lists_the_known_ones() -> None:
    assert vl.is_vl_dataset("okvqa") and not vl.is_vl_dataset("atari")
    with pytest.raises(ValueError, match="known: .*coco_captions"):
        vl.get_vl_dataset("coco")
