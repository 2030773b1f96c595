"""What the dataset card says of a vision-language or text output (spec section 8).

`formats/dataset_card.py` lays the card out; where the rows hold records of a
vision-language dataset instead of agent episodes (the manifest has a `vision_language`
entry for the dataset) it takes its words from here: the tags, what was turned into rows
and how (the kind's token layout, S, E), how the agent columns read in these rows, the
local positions rule, the per-task statistics (`VL_STATS_SCHEMA` keys), where the records
came from (`VL_REGISTRY`) and the files (no episode table; the rejects named).

Pure functions of the manifest entry and constants; no Markdown tables here (the layout,
and so the escaping, is dataset_card's), so this module imports nothing of it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from schemas import output as out
from schemas.vl import (
    FORMAT_JSONL,
    FORMAT_PARQUET,
    FORMAT_TFDS,
    FORMAT_TXT,
    FORMAT_WEBDATASET,
    KIND_CAPTION,
    KIND_INTERLEAVED,
    KIND_TEXT,
    KIND_VQA,
    KINDS,
    MAX_PAIRS_PER_ROW,
    PAIR_KINDS,
    VQA_PROMPT,
)
from schemas.vocab import LOCAL_POSITION_TABLE, PATCH_SIZE

# Hub tags per kind (the agent data's are "reinforcement-learning", "gato", "rlds").
VL_TAGS: dict[str, tuple[str, ...]] = {
    KIND_CAPTION: ("image-to-text", "gato", "vision-language"),
    KIND_VQA: ("visual-question-answering", "gato", "vision-language"),
    KIND_TEXT: ("text-generation", "gato"),
    KIND_INTERLEAVED: ("image-text-to-text", "gato", "vision-language"),
}
# What one unit is, plural, capitalised: the card's subject ("... of `vqav2`").
UNIT_NOUNS: dict[str, str] = {
    KIND_CAPTION: "Image-caption pairs",
    KIND_VQA: "Question-answer pairs about images",
    KIND_TEXT: "Text documents",
    KIND_INTERLEAVED: "Interleaved documents (images and text in page order)",
}
_LAYOUTS: dict[str, str] = {
    KIND_CAPTION: "one pair per (image, caption): `[image patches][caption ids][E]`; the caption and E carry the loss",
    KIND_VQA: (
        f'one pair per question: `[image patches][ids of "{VQA_PROMPT}"][answer ids][E]`; the answer '
        "and E carry the loss, the image and the question do not"
    ),
    KIND_TEXT: "one unit per document: `[text ids][E]`, all of it with the loss",
    KIND_INTERLEAVED: (
        "one unit per document: its images (as their patches) and text runs (each encoded on its "
        "own) in page order, then E; the text and E carry the loss, the images do not"
    ),
}
FORMAT_NAMES: dict[str, str] = {
    FORMAT_PARQUET: "Hugging Face Parquet",
    FORMAT_WEBDATASET: "WebDataset tar",
    FORMAT_TFDS: "TFDS",
    FORMAT_JSONL: "JSONL",
    FORMAT_TXT: "`.txt`",
}
_TARGET = LOCAL_POSITION_TABLE - 1

VL_COLUMNS_NOTE = (
    "In these rows `episode_id` is the record key of the row's first unit and `source_keys` "
    "names each unit in order; `timestep` is the unit's index within its row (pairs) or 0 "
    "(documents), -1 on padding; `sequence_index` counts the rows of a document, or of the "
    "pairs of one input file; there are no prompts (`is_prompt` false, `prompt_episode_id` null).\n"
)
VL_POSITIONS = (
    "Local positions: conditioning tokens (an image's patches, then a question) count 0, 1, ... "
    "within their unit (within each image for interleaved documents); every loss-bearing token "
    f"(captions, answers, document text and E) takes {_TARGET}, the last index of the "
    f"{LOCAL_POSITION_TABLE}-entry table, as actions do; padding 0. These rows hold text, image and "
    "padding tokens only."
)
VL_TASKS_TEXT = (
    "## Tasks and their records\n\nOne task per dataset. Per task: records read = kept + rejected "
    "(a record is kept if any of its units is; pairs rejected from kept records are counted apart); "
    "units are the pairs or documents of the kept records; tokens are counted before padding, and "
    "padding fraction = padding / (rows x L); text tokens per unit include E. No episode filter "
    "(it is for agent data). `stats/` and `report.html` hold the rest (rejects by reason, tokens "
    "by modality, loss tokens, units per row).\n\n"
)
# (stats record key, header) of the tasks table, after dataset, task and config.
VL_TASK_COLUMNS: tuple[tuple[str, str], ...] = (
    (out.VST_RECORDS_READ, "records read"),
    (out.VST_RECORDS_KEPT, "kept"),
    (out.VST_RECORDS_REJECTED, "rejected"),
    (out.VST_UNITS, "units"),
    (out.VST_ROWS, "rows"),
    (out.VST_TOKENS, "tokens"),
    (out.VST_PADDING_FRACTION, "padding fraction"),
    (out.VST_UNIT_TEXT_TOKENS_MEDIAN, "text tokens per unit (median)"),
)
VL_LOADING_REJECTS = (
    '\nrejects = datasets.load_dataset(DIR, "rejects")      # every record or pair not used, with its reason'
)
VL_FILES = f"""- `{out.SEQUENCES_DIR}/<dataset>/<task>/part-*.parquet`: the shards; `source_keys` names the units of each row.
- `{out.REJECTS_DIR}/<dataset>/<task>/part-*.parquet`: one row per record or pair that could not be used
  (its record key in `episode_id`, `source_file`, `reason` code, `field`, `detail`).
- `{out.STATS_DIR}/`: per-task statistics (`stats.parquet`, `stats.json`); there is no per-episode table.
- `{out.REPORT_FILE}`: the statistics and a few decoded rows per task (each image beside its texts);
  `{out.VIEWER_FILE}`: a few sequences per task as the model sees them.
"""


def vl_entry(manifest: Mapping[str, Any], dataset: str) -> Mapping[str, Any] | None:
    """The manifest's `vision_language` entry of `dataset`; None for an agent output (no
    `vision_language` key). An entry that is missing, or names no known kind, is a ValueError."""
    described = manifest.get(out.M_VISION_LANGUAGE)
    if described is None:
        return None
    entry = described.get(dataset)
    if not isinstance(entry, Mapping):
        raise ValueError(f"manifest: `{out.M_VISION_LANGUAGE}` has no entry for dataset {dataset!r}: {sorted(described)}")
    if entry.get(out.VL_KIND) not in KINDS:
        raise ValueError(f"manifest: `{out.M_VISION_LANGUAGE}.{dataset}.{out.VL_KIND}` is {entry.get(out.VL_KIND)!r}; known: {KINDS}")
    return entry


def vl_subject(dataset: str, entry: Mapping[str, Any]) -> str:
    """What was turned into sequences: "Question-answer pairs about images of `vqav2`"."""
    return f"{UNIT_NOUNS[entry[out.VL_KIND]]} of `{dataset}`"


def vl_details(entry: Mapping[str, Any], *, sequence_length: int) -> str:
    """The paragraph after the intro: the kind's token layout, how units become rows, S and E."""
    kind = entry[out.VL_KIND]
    if kind in PAIR_KINDS:
        rows = (
            f"Within each input file pairs are put in a stable hash order and packed greedily, at most "
            f"{MAX_PAIRS_PER_ROW} to a row of {sequence_length} tokens, never split; the rest of the row is padding."
        )
    else:
        rows = (
            f"Each document is cut into consecutive rows of {sequence_length} tokens"
            + (", never inside an image" if kind == KIND_INTERLEAVED else "")
            + "; documents are never packed together and a document's last row is padded."
        )
    eos = entry.get(out.VL_END_OF_SEQUENCE_ID)
    e = f"E is the text model's end-of-sequence id {eos}." if eos is not None else (
        "E is omitted: the text model has no end-of-sequence id."
    )
    size = entry.get(out.VL_IMAGE_SIZE)
    images = "" if kind == KIND_TEXT or size is None else (
        f" Images are resized (shorter side to S) and centre-cropped to S x S = {size} x {size} pixels, "
        f"{(int(size) // PATCH_SIZE) ** 2} patches of {PATCH_SIZE} x {PATCH_SIZE}."
    )
    return f"\nUnits: {_LAYOUTS[kind]}. {rows}{images} {e} No filter and no prompts.\n"


def vl_origin(dataset: str, entry: Mapping[str, Any], *, description: str) -> str:
    """The source section's first sentences: the records, their format, the registry's description."""
    fmt = str(entry.get(out.VL_FORMAT))
    return (
        f"Records of `{dataset}`, read from its {FORMAT_NAMES.get(fmt, fmt)} files with the field mapping in "
        f"`{out.MANIFEST_FILE}` (`{out.M_VISION_LANGUAGE}`)."
        + (f" Our registry describes it as {description}." if description else "")
    )
