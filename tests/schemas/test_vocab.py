"""schemas/vocab.py: the two vocabulary layouts' exact ids, disjoint non-text ranges, and lookup."""

from __future__ import annotations

import numpy as np
import pytest

from schemas.vocab import (
    DISJOINT,
    GATO,
    IMAGE_NORMALIZATION,
    LAYOUTS,
    NUM_BINS,
    TEXT_VOCAB_SIZE,
    Modality,
    VocabLayout,
    get_layout,
)


def test_spec_constants() -> None:
    assert (TEXT_VOCAB_SIZE, NUM_BINS) == (32000, 1024)
    assert IMAGE_NORMALIZATION == "((p / 255) * 2 - 1) / 4"
    assert [int(m) for m in Modality] == [0, 1, 2, 3, 4, 5]


def test_gato_layout_ids_are_the_papers() -> None:
    assert GATO.modality_range(Modality.TEXT) == (0, 32000)
    assert GATO.modality_range(Modality.DISCRETE) == (0, 1024)  # shares ids with text
    assert GATO.modality_range(Modality.CONTINUOUS) == (32000, 33024)
    assert (GATO.separator, GATO.pad, GATO.image_placeholder, GATO.vocab_size) == (33024, 33025, 33026, 33027)


def test_disjoint_layout_gives_every_modality_its_own_ids() -> None:
    assert DISJOINT.modality_range(Modality.CONTINUOUS) == (32000, 33024)
    assert DISJOINT.modality_range(Modality.DISCRETE) == (33024, 34048)
    assert (DISJOINT.separator, DISJOINT.pad, DISJOINT.image_placeholder, DISJOINT.vocab_size) == (
        34048, 34049, 34050, 34051)


@pytest.mark.parametrize("layout", [GATO, DISJOINT], ids=lambda l: l.name)
def test_ranges_tile_the_vocabulary_and_only_text_and_discrete_may_overlap(layout: VocabLayout) -> None:
    ids = np.arange(layout.vocab_size)
    covered = np.zeros(layout.vocab_size, dtype=int)
    for m in Modality:
        covered += layout.in_range(ids, m)
    assert (covered >= 1).all()  # every id means something
    for token in range(layout.vocab_size):
        modalities = set(layout.candidate_modalities(token))
        assert len(modalities) == 1 or modalities == {Modality.TEXT, Modality.DISCRETE}
    assert layout.candidate_modalities(layout.pad) == (Modality.PAD,)
    assert not layout.in_range(np.array([layout.vocab_size]), Modality.IMAGE).any()


def test_layouts_are_found_by_name_and_describe_themselves() -> None:
    assert LAYOUTS == {"gato": GATO, "disjoint": DISJOINT}
    assert get_layout("disjoint") is DISJOINT
    with pytest.raises(ValueError, match=r"unknown vocabulary layout 'gat'; known layouts: \['disjoint', 'gato'\]"):
        get_layout("gat")
    assert VocabLayout(**GATO.to_metadata()) == GATO
    assert GATO.to_metadata()["name"] == "gato" and GATO.to_metadata()["text_size"] == 32000
