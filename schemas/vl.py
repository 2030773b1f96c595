"""Vision-language and text datasets (spec section 8): kinds, input formats, field
mappings, reason codes and the registry entries named after Gato's Table 1.

TensorFlow-free and Beam-free. A vision-language dataset has one *kind* (what a record
is: an image with captions, a VQA pair, a text document, an interleaved document) and is
read from one *format* (how records are stored on disk); a `FieldMapping` says which
columns or members hold each part. Each registry entry names its default format and
mapping; both can be overridden per job (`--format`, `--fields`, `--vl_spec`).

A dataset is one task, named like the dataset (`coco_captions`): the rows, stats and
rejects keep the agent data's (dataset, task) keys.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

# --- Kinds: what one record is. ---
KIND_CAPTION = "caption"  # one image, one or more captions: one pair per caption
KIND_VQA = "vqa"  # one image, a question, an answer: one pair
KIND_TEXT = "text"  # one document of text
KIND_INTERLEAVED = "interleaved"  # images and text runs in page order
KINDS = (KIND_CAPTION, KIND_VQA, KIND_TEXT, KIND_INTERLEAVED)
PAIR_KINDS = frozenset({KIND_CAPTION, KIND_VQA})  # packed up to MAX_PAIRS_PER_ROW a row
DOCUMENT_KINDS = frozenset({KIND_TEXT, KIND_INTERLEAVED})  # cut into rows of L tokens

# --- Formats: how records are stored. One work item per file (or tar shard). ---
FORMAT_PARQUET = "parquet"  # Hugging Face Parquet, as `datasets` writes it (OBELICS too)
FORMAT_WEBDATASET = "webdataset"  # tar shards as img2dataset writes them
FORMAT_TFDS = "tfds"  # TFDS `coco_captions` on disk (TFRecord shards + dataset_info.json)
FORMAT_JSONL = "jsonl"  # one JSON object per line; .jsonl, .jsonl.gz, .jsonl.zst
FORMAT_TXT = "txt"  # one document per .txt file
FORMATS = (FORMAT_PARQUET, FORMAT_WEBDATASET, FORMAT_TFDS, FORMAT_JSONL, FORMAT_TXT)
# File name endings each format reads (a directory is searched recursively, sorted).
FORMAT_SUFFIXES: dict[str, tuple[str, ...]] = {
    FORMAT_PARQUET: (".parquet",),
    FORMAT_WEBDATASET: (".tar",),
    FORMAT_TFDS: (),  # shards come from dataset_info.json, like the RLDS data
    FORMAT_JSONL: (".jsonl", ".jsonl.gz", ".jsonl.zst"),
    FORMAT_TXT: (".txt",),
}

# --- Sequencing constants (spec section 8). ---
MAX_PAIRS_PER_ROW = 5
DEFAULT_IMAGE_SIZE = 192  # S: images are resized and centre-cropped to S x S
VQA_PROMPT = "Q: {question} A:"  # the question's text, encoded without loss

# --- Reason codes of vision-language rejects (rejects output, stats). ---
CORRUPT_IMAGE = "corrupt_image"  # bytes no decoder accepts (same code as agent images)
MISSING_IMAGE = "missing_image"  # no bytes and no readable path, or the path is missing
IMAGE_URL_ONLY = "image_url_only"  # only a URL: the data must be downloaded first
EMPTY_TEXT = "empty_text"  # empty or whitespace-only caption, answer, question or document
INVALID_UTF8 = "invalid_utf8"  # same code as agent text
MISSING_FIELD = "missing_field"  # the mapping names a column/member the record lacks
UNIT_TOO_LONG = "unit_too_long"  # a pair with more than L tokens
IMAGE_TOO_LARGE = "image_too_large"  # an image with more patches than L
UNREADABLE_RECORD = "unreadable_record"  # a line that is not JSON, a broken tar member, ...
VL_REASONS = frozenset(
    {CORRUPT_IMAGE, MISSING_IMAGE, IMAGE_URL_ONLY, EMPTY_TEXT, INVALID_UTF8, MISSING_FIELD,
     UNIT_TOO_LONG, IMAGE_TOO_LARGE, UNREADABLE_RECORD}
)

# --- Field mapping: which column (Parquet, JSONL key, TFDS feature path) or WebDataset
# member holds each part. Parquet/JSONL names may be dotted paths into structs (`json.question`
# for WebDataset reads the member `<key>.json`, then its `question`). ---
M_KEY = "key"
M_IMAGE = "image"
M_CAPTIONS = "captions"
M_CAPTION_TEXT = "caption_text"  # inside list-of-structs captions (COCO: captions[*].text)
M_QUESTION = "question"
M_ANSWER = "answer"  # a single answer (VQAv2's multiple_choice_answer)
M_ANSWERS = "answers"  # a list of answers: the most frequent wins (spec section 8)
M_ANSWER_TEXT = "answer_text"  # inside list-of-structs answers (answers[*].answer)
M_QUESTION_ID = "question_id"
M_IMAGE_ID = "image_id"
M_TEXT = "text"  # document text; several columns joined with a blank line (title, text)
M_IMAGES = "images"  # interleaved: the page's images (null where the slot is text)
M_TEXTS = "texts"  # interleaved: the page's texts (null where the slot is an image)
MAPPING_KEYS = (
    M_KEY, M_IMAGE, M_CAPTIONS, M_CAPTION_TEXT, M_QUESTION, M_ANSWER, M_ANSWERS, M_ANSWER_TEXT,
    M_QUESTION_ID, M_IMAGE_ID, M_TEXT, M_IMAGES, M_TEXTS,
)


@dataclasses.dataclass(frozen=True)
class FieldMapping:
    """Column (or member) names per part; a tuple means "the first present" (`text`:
    every present one, joined by a blank line). Empty tuple: the part is not read."""

    key: tuple[str, ...] = ("key",)
    image: tuple[str, ...] = ("image",)
    captions: tuple[str, ...] = ("captions", "caption", "text")
    caption_text: tuple[str, ...] = ("text", "raw")
    question: tuple[str, ...] = ("question",)
    answer: tuple[str, ...] = ("multiple_choice_answer", "answer")
    answers: tuple[str, ...] = ("answers",)
    answer_text: tuple[str, ...] = ("answer",)
    question_id: tuple[str, ...] = ("question_id",)
    image_id: tuple[str, ...] = ("image_id", "image/id")
    text: tuple[str, ...] = ("text",)
    images: tuple[str, ...] = ("images",)
    texts: tuple[str, ...] = ("texts",)

    def replace(self, overrides: Mapping[str, str | tuple[str, ...]]) -> FieldMapping:
        """A copy with `overrides` ({part: name or names}); an unknown part is a ValueError."""
        unknown = sorted(set(overrides) - set(MAPPING_KEYS))
        if unknown:
            raise ValueError(f"unknown field mapping parts {unknown}; known: {list(MAPPING_KEYS)}")
        return dataclasses.replace(
            self, **{k: (v,) if isinstance(v, str) else tuple(v) for k, v in overrides.items()}
        )

    def to_metadata(self) -> dict[str, list[str]]:
        return {k: list(v) for k, v in dataclasses.asdict(self).items()}


@dataclasses.dataclass(frozen=True)
class VLDatasetSpec:
    """One vision-language or text dataset: its kind, default format and mapping, weight.

    `data_subdir`: where its files live under `--data_dir` (the bundled samples follow it).
    """

    name: str
    kind: str
    default_format: str
    data_subdir: str
    mapping: FieldMapping = FieldMapping()
    sample_weight: float | None = None  # Gato's Table 1
    description: str = ""
    homepage: str | None = None
    citation: str | None = None
    licence: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"dataset {self.name!r}: kind {self.kind!r}; known: {KINDS}")
        if self.default_format not in FORMATS:
            raise ValueError(f"dataset {self.name!r}: format {self.default_format!r}; known: {FORMATS}")

    @property
    def task(self) -> str:
        """The one task of a vision-language dataset."""
        return self.name


# Table 1 of the paper: sample weights of the vision-language datasets (fractions).
TABLE1_WEIGHT = 0.0067  # ALIGN, MS-COCO Captions, Conceptual Captions, LTIP, OKVQA, VQAv2
# Private datasets: only their weights are listed (no entry can read them).
TABLE1_PRIVATE_WEIGHTS: dict[str, float] = {"align": TABLE1_WEIGHT, "ltip": TABLE1_WEIGHT}

COCO_CAPTIONS = VLDatasetSpec(
    name="coco_captions", kind=KIND_CAPTION, default_format=FORMAT_TFDS, data_subdir="coco_captions",
    sample_weight=TABLE1_WEIGHT,
    description="MS-COCO Captions: images with five human captions each",
    homepage="https://cocodataset.org",
)
CONCEPTUAL_CAPTIONS = VLDatasetSpec(
    name="conceptual_captions", kind=KIND_CAPTION, default_format=FORMAT_WEBDATASET,
    data_subdir="conceptual_captions", sample_weight=TABLE1_WEIGHT,
    description="Conceptual Captions: web images with one alt-text caption each (as img2dataset downloads them)",
    homepage="https://ai.google.com/research/ConceptualCaptions",
)
VQAV2 = VLDatasetSpec(
    name="vqav2", kind=KIND_VQA, default_format=FORMAT_PARQUET, data_subdir="vqav2",
    sample_weight=TABLE1_WEIGHT,
    description="VQAv2: questions about images with ten human answers each",
    homepage="https://visualqa.org",
)
OKVQA = VLDatasetSpec(
    name="okvqa", kind=KIND_VQA, default_format=FORMAT_PARQUET, data_subdir="okvqa",
    sample_weight=TABLE1_WEIGHT,
    description="OK-VQA: questions that need outside knowledge, ten answers each",
    homepage="https://okvqa.allenai.org",
)
TEXT = VLDatasetSpec(
    name="text", kind=KIND_TEXT, default_format=FORMAT_JSONL, data_subdir="text",
    # C4's `text`, Wikipedia's `title` + `text`, OSCAR's `content`: every present one, joined.
    mapping=FieldMapping(text=("title", "text", "content")),
    sample_weight=0.067,
    description="a MassiveText-like text corpus (C4, Wikipedia, OSCAR, ... as JSONL, Parquet or .txt)",
)
INTERLEAVED = VLDatasetSpec(
    name="interleaved", kind=KIND_INTERLEAVED, default_format=FORMAT_PARQUET, data_subdir="interleaved",
    sample_weight=0.04,
    description="M3W-like interleaved web documents, in the OBELICS layout",
)

VL_REGISTRY: dict[str, VLDatasetSpec] = {
    spec.name: spec for spec in (COCO_CAPTIONS, CONCEPTUAL_CAPTIONS, VQAV2, OKVQA, TEXT, INTERLEAVED)
}


def is_vl_dataset(name: str) -> bool:
    return name in VL_REGISTRY


def get_vl_dataset(name: str) -> VLDatasetSpec:
    try:
        return VL_REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown vision-language dataset {name!r}; known: {sorted(VL_REGISTRY)}") from None
