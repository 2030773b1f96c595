"""pipeline/tokenize_vl_records.py: every record gives its outcome (kept or not), each
rejected pair or record a Reject named by record key and file, exact counters per task,
and `--strict` stops on the first reject with its detail."""

from __future__ import annotations

import apache_beam as beam
import pytest
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to

from pipeline.counters import counter_name
from pipeline.rejects import REJECTS_TAG
from pipeline.tokenize_vl_records import COUNTER_NAMESPACE, TokenizeVLRecords
from schemas.vl import CORRUPT_IMAGE, INVALID_UTF8, M_CAPTIONS, M_IMAGE
from tests.pipeline.pipeline_fixtures import RUNNER, committed_counters
from tests.transforms.vl_fixtures import EOS, SIZE, caption_record
from transforms.vl_types import ImageRef, VLRecord
from transforms.vl_units import UnitConfig

CONFIG = UnitConfig(eos_id=EOS, sequence_length=64, image_size=SIZE)
MODEL = "bundled:gato_text.model"
TASK = ("d", "d")  # dataset and task of vl_fixtures.record


def _records() -> list[VLRecord]:
    """Two kept records (one losing a caption to invalid UTF-8) and one with a corrupt image."""
    return [
        caption_record(b"a red ball", b"a blue cube", key="good"),
        caption_record(b"a red ball", b"\xff\xfe broken", key="half"),
        caption_record(b"a red ball", key="noimage", image=ImageRef(b"not an image")),
    ]


def _run(records: list[VLRecord], *, strict: bool = False):
    """Each record as a tuple of its own; `outcomes` flattened back to single outcomes."""
    p = TestPipeline(runner=RUNNER)
    out = p | beam.Create([(r,) for r in records]) | TokenizeVLRecords(CONFIG, sentencepiece_model=MODEL, strict=strict)
    return p, {"outcomes": out.outcomes | "EachOutcome" >> beam.FlatMap(lambda o: o), REJECTS_TAG: out[REJECTS_TAG]}


def test_every_record_has_its_outcome_and_each_reject_names_file_record_and_key() -> None:
    p, out = _run(_records())
    assert_that(
        out["outcomes"] | beam.Map(lambda o: (o.record.key, o.kept, [u.source_key for u in o.units],
                                           [r[0] for r in o.rejects])),
        equal_to([
            ("good", True, ["good#0", "good#1"], []),
            ("half", True, ["half#0"], [INVALID_UTF8]),
            ("noimage", False, [], [CORRUPT_IMAGE]),
        ]),
        label="Outcomes",
    )
    assert_that(
        out[REJECTS_TAG] | beam.Map(lambda r: (r.dataset, r.task, r.episode_id, r.source_file, r.reason,
                                               r.field, r.detail.split(": ")[0])),
        equal_to([
            ("d", "d", "half", "f.parquet", INVALID_UTF8, M_CAPTIONS, "f.parquet, record 3 (key 'half')"),
            ("d", "d", "noimage", "f.parquet", CORRUPT_IMAGE, M_IMAGE, "f.parquet, record 3 (key 'noimage')"),
        ]),
        label="Rejects",
    )
    # The detail goes on with the unit's own message: the field and the bad value.
    assert_that(
        out[REJECTS_TAG] | "Fields" >> beam.Map(lambda r: r.detail.split(": ", 1)[1].split(":")[0]),
        equal_to(["record 'half' (f.parquet #3), field captions[1]", "record 'noimage' (f.parquet #3), field image"]),
        label="DetailField",
    )
    result = p.run()
    result.wait_until_finish()
    assert committed_counters(result, COUNTER_NAMESPACE) == {
        counter_name(TASK, "kept"): 2,
        counter_name(TASK, "rejected"): 1,
        counter_name(TASK, "units"): 3,
        counter_name(TASK, "rejects"): 2,
    }


def test_a_record_without_rejects_counts_no_rejects() -> None:
    p, out = _run([caption_record(b"a red ball", key="only")])
    assert_that(out[REJECTS_TAG], equal_to([]), label="Rejects")
    result = p.run()
    result.wait_until_finish()
    assert committed_counters(result, COUNTER_NAMESPACE) == {
        counter_name(TASK, "kept"): 1, counter_name(TASK, "units"): 1,
    }


def test_strict_raises_on_the_first_reject_with_its_detail() -> None:
    with pytest.raises(ValueError, match=r"f\.parquet, record 3 \(key 'half'\): record 'half' "
                                         r"\(f\.parquet #3\), field captions\[1\]: not UTF-8"):
        with TestPipeline(runner=RUNNER) as p:
            _ = p | beam.Create([tuple(_records()[:2])]) | TokenizeVLRecords(
                CONFIG, sentencepiece_model=MODEL, strict=True
            )


def test_a_files_records_as_one_tuple_give_the_tuple_of_their_outcomes_in_order() -> None:
    records = _records()
    with TestPipeline(runner=RUNNER) as p:
        out = p | beam.Create([tuple(records)]) | TokenizeVLRecords(CONFIG, sentencepiece_model=MODEL)
        summary = out.outcomes | beam.Map(lambda outcomes: tuple((o.record.key, len(o.units)) for o in outcomes))
        assert_that(summary, equal_to([tuple((r.key, n) for r, n in zip(records, (2, 1, 0)))]), label="Outcomes")
        flat = out.outcomes | beam.FlatMap(lambda o: o) | "Keys" >> beam.Map(lambda o: o.record.key)
        assert_that(flat, equal_to([r.key for r in records]), label="Each")
