"""The records and outcomes of vision-language data: an ImageRef is bytes or a problem."""

from __future__ import annotations

import numpy as np
import pytest

from schemas.vl import KIND_CAPTION, MISSING_IMAGE
from transforms.vl_types import ImageRef, OutcomeCounts, RecordOutcome, TokenizedUnit, VLRecord


def test_an_image_ref_has_exactly_one_of_bytes_and_problem() -> None:
    assert ImageRef(b"\xff\xd8").data == b"\xff\xd8"
    assert ImageRef(None, MISSING_IMAGE, "a.jpg").problem == MISSING_IMAGE
    with pytest.raises(ValueError, match="exactly one"):
        ImageRef(None)
    with pytest.raises(ValueError, match="exactly one"):
        ImageRef(b"x", MISSING_IMAGE)


def _unit(n: int) -> TokenizedUnit:
    return TokenizedUnit(
        key="k", order_index=0, source_key="k#0", tokens=np.zeros(n, np.int32), modality=np.ones(n, np.int8),
        loss_mask=np.ones(n, bool), local_positions=np.full(n, 511, np.int16),
        patch_pixels=np.zeros((0, 768), np.uint8), patch_positions=np.zeros((0, 4), np.int16),
        image_spans=np.zeros((0, 2), np.int64), text_tokens=n,
    )


def test_a_record_is_kept_when_it_has_a_unit() -> None:
    record = VLRecord(dataset="d", task="d", kind=KIND_CAPTION, key="k", source_file="f", index_in_file=0,
                      work_item=0, segments=(ImageRef(b"x"), b"a caption"))
    assert RecordOutcome(record, (_unit(3),), ()).kept
    assert not RecordOutcome(record, (), (("empty_text", "captions", "caption 0 is empty"),)).kept
    assert _unit(3).num_tokens == 3


def test_outcome_counts_keep_what_the_statistics_need_and_no_arrays() -> None:
    record = VLRecord(dataset="d", task="t", kind=KIND_CAPTION, key="k", source_file="f", index_in_file=4,
                      work_item=0, segments=(ImageRef(b"x"), b"a", b""))
    rejects = (("empty_text", "captions", "caption 1 is empty"),)
    counts = OutcomeCounts.of(RecordOutcome(record, (_unit(3), _unit(5)), rejects))
    assert counts == OutcomeCounts(dataset="d", task="t", key="k", source_file="f", index_in_file=4,
                                   unit_text_tokens=(3, 5), rejects=rejects)
    assert counts.kept and not OutcomeCounts.of(RecordOutcome(record, (), rejects)).kept
