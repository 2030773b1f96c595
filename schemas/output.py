"""Parquet schemas and manifest layout of a finished output (spec section 6).

One explicit schema per table, built here and nowhere else. Every column is a plain
Arrow type (strings, integers, lists, binary) so that pyarrow, Hugging Face `datasets`,
DuckDB and polars read the shards without custom code.

Output directory layout (all names relative to `--output_dir`):

    manifest.json                      written last; its absence means "unfinished"
    sequences/<dataset>/<task>/part-<work item>-<n>.parquet
    rejects/<dataset>/<task>/part-<work item>-<n>.parquet
    stats/stats.parquet, stats/stats.json, stats/episodes.parquet
    report.html, viewer.html           the auditors' report and token viewer
    README.md                          the dataset card (Hugging Face `configs:` YAML header)

While a job runs it also holds `_claim.json` (the one writer's run id) and builds everything
above in `_staging/<run id>/` (temporary shards in its `_tmp/`), then publishes it into place
(`formats/publish.py`); neither is left in a finished output.

`<dataset>` and `<task>` are path components made only by `formats.paths.safe_component`.
"""

from __future__ import annotations

import pyarrow as pa

# --- Column names of the sequences table. ---
DATASET = "dataset"
TASK = "task"
EPISODE_ID = "episode_id"
SEQUENCE_INDEX = "sequence_index"
NUM_TOKENS = "num_tokens"  # tokens before padding (prompt included)
TOKENS = "tokens"
MODALITY = "modality"
LOSS_MASK = "loss_mask"
LOCAL_POSITIONS = "local_positions"
TIMESTEP = "timestep"
IS_PROMPT = "is_prompt"
PROMPT_EPISODE_ID = "prompt_episode_id"  # null when the row has no prompt
PATCH_PIXELS = "patch_pixels"  # one binary of 16*16*C uint8 (HWC) per image token, token order
PATCH_POSITIONS = "patch_positions"  # 4 int16 per image token: row_lo, row_hi, col_lo, col_hi

SOURCE_KEYS = "source_keys"  # vision-language rows only: the source key of each unit in the row

PATCH_POSITION_WIDTH = 4
NO_TIMESTEP = -1  # `timestep` value of prompt and padding tokens

# What each sequences column holds and in which units: carried as pyarrow field metadata
# (keys FIELD_DESCRIPTION, FIELD_UNITS) by every shard, and rendered into the dataset card
# (`formats/dataset_card.py`), so the two never disagree. Per-token columns have L entries.
FIELD_DESCRIPTION = b"description"
FIELD_UNITS = b"units"
SEQUENCE_COLUMN_DOCS: dict[str, tuple[str, str]] = {
    DATASET: ("registry name of the source dataset", "name"),
    TASK: ("task of the episode: `<tfds name>/<config>`", "name"),
    EPISODE_ID: ("id of the source episode (its id fields joined by '/')", "id"),
    SEQUENCE_INDEX: ("0-based index of this sequence within its episode", "sequences"),
    NUM_TOKENS: ("tokens before padding, prompt included", "tokens"),
    TOKENS: ("per token: token id; ranges in the manifest's `vocabulary`", "token id"),
    MODALITY: ("per token: 0 pad, 1 text, 2 image, 3 discrete, 4 continuous, 5 separator", "code"),
    LOSS_MASK: ("per token: true where the token is a prediction target (actions, target text)", "flag"),
    LOCAL_POSITIONS: (
        "per token: observation tokens 0..n-1 within their timestep; separator and actions 511 "
        "(the last index of the 512-entry table); padding 0",
        "index",
    ),
    TIMESTEP: ("per token: timestep within the episode; -1 for prompt and padding", "timestep"),
    IS_PROMPT: ("per token: true on prompt tokens (timesteps of `prompt_episode_id`)", "flag"),
    PROMPT_EPISODE_ID: ("episode the prompt comes from (same task); null when the row has no prompt", "id"),
    PATCH_PIXELS: (
        "one 16x16xC uint8 patch (HWC, raw pixels) per image token, in token order; the model "
        "sees ((p / 255) * 2 - 1) / 4",
        "pixel value 0-255",
    ),
    PATCH_POSITIONS: (
        "4 per image token, flattened: row_lo, row_hi, col_lo, col_hi of the patch in the unit "
        "square, quantized to 128 bins",
        "1/128 of the image side",
    ),
    SOURCE_KEYS: (
        "vision-language and text rows: the source of each unit in the row, in order: "
        "`<record key>#<caption index>` for pairs, the record key for documents",
        "key",
    ),
}


def _documented(field: pa.Field) -> pa.Field:
    description, units = SEQUENCE_COLUMN_DOCS[field.name]
    return field.with_metadata({FIELD_DESCRIPTION: description.encode(), FIELD_UNITS: units.encode()})


SEQUENCE_SCHEMA = pa.schema(
    [
        _documented(field)
        for field in (
            pa.field(DATASET, pa.dictionary(pa.int32(), pa.string()), nullable=False),
            pa.field(TASK, pa.dictionary(pa.int32(), pa.string()), nullable=False),
            pa.field(EPISODE_ID, pa.string(), nullable=False),
            pa.field(SEQUENCE_INDEX, pa.int32(), nullable=False),
            pa.field(NUM_TOKENS, pa.int32(), nullable=False),
            pa.field(TOKENS, pa.list_(pa.int32()), nullable=False),
            pa.field(MODALITY, pa.list_(pa.int8()), nullable=False),
            pa.field(LOSS_MASK, pa.list_(pa.bool_()), nullable=False),
            pa.field(LOCAL_POSITIONS, pa.list_(pa.int16()), nullable=False),
            pa.field(TIMESTEP, pa.list_(pa.int32()), nullable=False),
            pa.field(IS_PROMPT, pa.list_(pa.bool_()), nullable=False),
            pa.field(PROMPT_EPISODE_ID, pa.string(), nullable=True),
            pa.field(PATCH_PIXELS, pa.list_(pa.binary()), nullable=False),
            pa.field(PATCH_POSITIONS, pa.list_(pa.int16()), nullable=False),
        )
    ]
)

# Vision-language and text rows (spec section 8): the same columns, plus the source keys.
VL_SEQUENCE_SCHEMA = SEQUENCE_SCHEMA.append(
    _documented(pa.field(SOURCE_KEYS, pa.list_(pa.string()), nullable=False))
)

# --- Rejects table: one row per episode that could not be used (spec section 7). ---
SOURCE_FILE = "source_file"
REASON = "reason"  # a short code, e.g. "nan_value", "discrete_out_of_range", "rlds_is_last"
DETAIL = "detail"  # the full, human-readable message
FIELD = "field"

REJECTS_SCHEMA = pa.schema(
    [
        pa.field(DATASET, pa.string(), nullable=False),
        pa.field(TASK, pa.string(), nullable=False),
        pa.field(EPISODE_ID, pa.string(), nullable=True),  # null when unreadable
        pa.field(SOURCE_FILE, pa.string(), nullable=False),
        pa.field(REASON, pa.string(), nullable=False),
        pa.field(FIELD, pa.string(), nullable=True),
        pa.field(DETAIL, pa.string(), nullable=False),
    ]
)

# --- Manifest (manifest.json) keys. ---
MANIFEST_FILE = "manifest.json"
MANIFEST_FORMAT_VERSION = 1
M_FORMAT_VERSION = "format_version"
M_CONFIG = "config"  # the job configuration (JSON object)
M_CONFIG_HASH = "config_hash"  # sha256 of the canonical JSON of `config`
M_VOCABULARY = "vocabulary"  # VocabLayout.to_metadata()
M_SEQUENCE_LENGTH = "sequence_length"
M_IMAGE_NORMALIZATION = "image_normalization"
M_FIELDS = "fields"  # {dataset: {path: FieldSpec.to_metadata()}}
M_FIELD_SHAPES = "field_shapes"  # {dataset: {task: {path: per-timestep shape as stored}}}
M_SAMPLING_WEIGHTS = "sampling_weights"  # {dataset: {"weight": w, "tasks": {task: w}}}
M_SHARDS = "shards"  # list of shard entries, below
M_REJECTS = "rejects"  # list of shard entries for rejects files
M_STATS = "stats"  # {"parquet": path, "json": path}
# Vision-language and text outputs only (spec section 8): {dataset: {VL_* keys below}}.
M_VISION_LANGUAGE = "vision_language"
VL_KIND = "kind"  # schemas.vl KIND_*: what a record is
VL_FORMAT = "format"  # schemas.vl FORMAT_*: how the records were stored
VL_MAPPING = "mapping"  # FieldMapping.to_metadata()
VL_IMAGE_SIZE = "image_size"  # S
VL_END_OF_SEQUENCE_ID = "end_of_sequence_id"  # E, or null when the text model has none
VL_END_OF_SEQUENCE = "end_of_sequence"  # E in words (written, or omitted and why)
VL_PROMPT_FRACTION = "prompt_fraction"  # always 0: no prompts for these kinds

# Keys of one shard entry in M_SHARDS / M_REJECTS.
S_PATH = "path"  # relative to the output directory, '/'-separated
S_DATASET = "dataset"
S_TASK = "task"
S_ROWS = "rows"
S_TOKENS = "tokens"  # non-padding tokens in the shard
S_BYTES = "bytes"
S_SHA256 = "sha256"

# Parquet schema-metadata keys (bytes), carried by every sequences shard.
META_LAYOUT = b"gato.vocabulary"
META_FIELDS = b"gato.fields"
META_IMAGE_NORMALIZATION = b"gato.image_normalization"
META_SEQUENCE_LENGTH = b"gato.sequence_length"

# --- Episode filter and per-task statistics (spec section 4): stats/, report.html. ---
# FilterDecision.reason codes.
FILTER_AT_OR_ABOVE_THRESHOLD = "at_or_above_threshold"
FILTER_BELOW_THRESHOLD = "below_threshold"
FILTER_NO_FILTER = "no_filter"  # --no_filter: kept whatever the return

# Files, relative to the output directory ('/'-separated).
STATS_DIR = "stats"
STATS_PARQUET_FILE = f"{STATS_DIR}/stats.parquet"
STATS_JSON_FILE = f"{STATS_DIR}/stats.json"
STATS_EPISODES_FILE = f"{STATS_DIR}/episodes.parquet"
# Rows per row group of episodes.parquet; each task starts a row group of its own.
STATS_EPISODES_ROW_GROUP_ROWS = 1 << 16
REPORT_FILE = "report.html"
VIEWER_FILE = "viewer.html"  # the token viewer (audit/viewer.py), listed under M_STATS beside the report
CARD_FILE = "README.md"  # the dataset card (formats/dataset_card.py), written just before the manifest
STATS_FORMAT_VERSION = 1
SJ_FORMAT_VERSION = "format_version"  # keys of the top-level object of stats.json
SJ_TASKS = "tasks"  # list of per-task records keyed by the ST_* names below
# Keys of the M_STATS manifest entry besides "parquet" and "json".
M_STATS_PARQUET = "parquet"
M_STATS_JSON = "json"
M_STATS_EPISODES = "episodes"
M_STATS_REPORT = "report"
M_STATS_VIEWER = "viewer"
# Manifest key of the dataset card: {S_PATH, S_BYTES, S_SHA256}, checked like a shard.
M_CARD = "card"

# Columns of stats/stats.parquet (one row per task, sorted by dataset, task) and keys of
# each record in stats.json (same numbers; NaN statistics of an empty set are null).
ST_EPISODES_READ = "episodes_read"  # N read = kept + dropped + rejected
ST_EPISODES_WITH_RETURN = "episodes_with_return"  # valid episodes: the N of W's rule
ST_WINDOW = "window"  # W
ST_EXPERT_RETURN = "expert_return"  # E
ST_THRESHOLD = "threshold"
ST_FRACTION = "fraction"
ST_CAP = "cap"
ST_NO_FILTER = "no_filter"
ST_WINDOW_START = "window_start"  # collection index of the first episode of E's window
ST_KEPT = "kept"
ST_DROPPED = "dropped"
ST_REJECTED = "rejected"
ST_REJECTED_BY_REASON = "rejected_by_reason"  # map reason code -> count
ST_RETURN_MIN = "return_min"
ST_RETURN_MEDIAN = "return_median"
ST_RETURN_MAX = "return_max"
ST_KEPT_RETURN_MIN = "kept_return_min"
ST_KEPT_RETURN_MEDIAN = "kept_return_median"
ST_KEPT_RETURN_MAX = "kept_return_max"
ST_KEPT_TIMESTEPS = "kept_timesteps"
ST_KEPT_TOKENS = "kept_tokens"
ST_HISTOGRAM_EDGES = "histogram_edges"  # bins + 1 edges over [return_min, return_max]
ST_HISTOGRAM_ALL = "histogram_all"  # counts of all episodes with a return, per bin
ST_HISTOGRAM_KEPT = "histogram_kept"  # counts of kept episodes, per bin
ST_WINDOWED_MEAN_START = "windowed_mean_start"  # collection index of each plotted window
ST_WINDOWED_MEAN = "windowed_mean"  # mean return of that window of W episodes
# Sequencing of the kept episodes (spec section 5); 0 when the job did not sequence.
ST_SEQUENCES = "sequences"  # rows written: prompted + unprompted
ST_PROMPTED_SEQUENCES = "prompted_sequences"
ST_UNPROMPTED_SEQUENCES = "unprompted_sequences"
ST_PROMPTS_UNAVAILABLE = "prompts_unavailable"  # rows that drew a prompt but the task had no other eligible episode
ST_SEQUENCE_TOKENS = "sequence_tokens"  # tokens before padding, prompts included

STATS_SCHEMA = pa.schema(
    [
        pa.field(DATASET, pa.string(), nullable=False),
        pa.field(TASK, pa.string(), nullable=False),
        pa.field(ST_EPISODES_READ, pa.int64(), nullable=False),
        pa.field(ST_EPISODES_WITH_RETURN, pa.int64(), nullable=False),
        pa.field(ST_WINDOW, pa.int64(), nullable=True),  # null: no valid episode at all
        pa.field(ST_EXPERT_RETURN, pa.float64(), nullable=True),
        pa.field(ST_THRESHOLD, pa.float64(), nullable=True),
        pa.field(ST_FRACTION, pa.float64(), nullable=False),
        pa.field(ST_CAP, pa.int64(), nullable=False),
        pa.field(ST_NO_FILTER, pa.bool_(), nullable=False),
        pa.field(ST_WINDOW_START, pa.int64(), nullable=True),
        pa.field(ST_KEPT, pa.int64(), nullable=False),
        pa.field(ST_DROPPED, pa.int64(), nullable=False),
        pa.field(ST_REJECTED, pa.int64(), nullable=False),
        pa.field(ST_REJECTED_BY_REASON, pa.map_(pa.string(), pa.int64()), nullable=False),
        pa.field(ST_RETURN_MIN, pa.float64(), nullable=True),
        pa.field(ST_RETURN_MEDIAN, pa.float64(), nullable=True),
        pa.field(ST_RETURN_MAX, pa.float64(), nullable=True),
        pa.field(ST_KEPT_RETURN_MIN, pa.float64(), nullable=True),
        pa.field(ST_KEPT_RETURN_MEDIAN, pa.float64(), nullable=True),
        pa.field(ST_KEPT_RETURN_MAX, pa.float64(), nullable=True),
        pa.field(ST_KEPT_TIMESTEPS, pa.int64(), nullable=False),
        pa.field(ST_KEPT_TOKENS, pa.int64(), nullable=False),
        pa.field(ST_HISTOGRAM_EDGES, pa.list_(pa.float64()), nullable=False),
        pa.field(ST_HISTOGRAM_ALL, pa.list_(pa.int64()), nullable=False),
        pa.field(ST_HISTOGRAM_KEPT, pa.list_(pa.int64()), nullable=False),
        pa.field(ST_WINDOWED_MEAN_START, pa.list_(pa.int64()), nullable=False),
        pa.field(ST_WINDOWED_MEAN, pa.list_(pa.float64()), nullable=False),
        pa.field(ST_SEQUENCES, pa.int64(), nullable=False),
        pa.field(ST_PROMPTED_SEQUENCES, pa.int64(), nullable=False),
        pa.field(ST_UNPROMPTED_SEQUENCES, pa.int64(), nullable=False),
        pa.field(ST_PROMPTS_UNAVAILABLE, pa.int64(), nullable=False),
        pa.field(ST_SEQUENCE_TOKENS, pa.int64(), nullable=False),
    ]
)

# stats/episodes.parquet: one row per episode read, for auditors (sorted by dataset, task,
# collection index; rejects without a return last, by source file and episode id).
EP_COLLECTION_INDEX = "collection_index"  # 0-based position in collection order; null if rejected before pass 1
EP_RETURN = "return"
EP_DECISION = "decision"  # one of DECISION_*
DECISION_KEPT = "kept"
DECISION_DROPPED = "dropped"
DECISION_REJECTED = "rejected"
# REASON column: the FILTER_* code for kept/dropped, the reject's reason code for rejected.

STATS_EPISODES_SCHEMA = pa.schema(
    [
        pa.field(DATASET, pa.string(), nullable=False),
        pa.field(TASK, pa.string(), nullable=False),
        pa.field(EPISODE_ID, pa.string(), nullable=True),
        pa.field(EP_COLLECTION_INDEX, pa.int64(), nullable=True),
        pa.field(EP_RETURN, pa.float64(), nullable=True),
        pa.field(EP_DECISION, pa.string(), nullable=False),
        pa.field(REASON, pa.string(), nullable=False),
        pa.field(SOURCE_FILE, pa.string(), nullable=True),
    ]
)

# --- Output directory names (relative to --output_dir) of the sequences/rejects writer. ---
SEQUENCES_DIR = "sequences"
REJECTS_DIR = "rejects"
TMP_DIR = "_tmp"  # per-attempt temporary shards (and per-task episode tables); removed once moved or merged
SHARD_NAME_FORMAT = "part-{work_item:05d}-{shard:03d}.parquet"
# Sub-directories an unfinished output may hold (removed before a rerun reuses it).
OUTPUT_SUBDIRS = (SEQUENCES_DIR, REJECTS_DIR, TMP_DIR, STATS_DIR)
# One writer per output directory (formats/claim.py): created exclusively at start-up,
# names the run id, removed when the job ends. Never part of a finished output's bytes.
CLAIM_FILE = "_claim.json"
# Where a job builds its output before publishing it (formats/layout.py, formats/publish.py):
# `_staging/<run id>/` holds the same layout as the output directory.
STAGING_DIR = "_staging"
MANIFEST_TEMP_SUFFIX = ".tmp"  # `.manifest.json.<hex>.tmp`: the manifest before its rename

# --- Vision-language and text outputs (spec section 8): per-task statistics. ---
# Same files as the agent statistics (STATS_PARQUET_FILE, STATS_JSON_FILE with
# SJ_FORMAT_VERSION / SJ_TASKS, REPORT_FILE; no episodes.parquet), one record per task
# keyed by DATASET, TASK and the VST_* names below (built by `transforms/vl_stats.py`).
# Records are counted read = kept + rejected (a record is kept if any of its units is);
# statistics of an empty set are null.
VST_RECORDS_READ = "records_read"
VST_RECORDS_KEPT = "records_kept"
VST_RECORDS_REJECTED = "records_rejected"
VST_REJECTED_BY_REASON = ST_REJECTED_BY_REASON  # rejected records: map reason code -> count
VST_UNITS_REJECTED_BY_REASON = "units_rejected_by_reason"  # pairs dropped from kept records, by reason
VST_UNITS = "units"  # units (pairs, documents) of the kept records
VST_SEQUENCE_LENGTH = "sequence_length"  # L of the rows
VST_ROWS = "rows"
VST_TOKENS = "tokens"  # tokens of the rows before padding
VST_TEXT_TOKENS = "text_tokens"  # of them, modality TEXT (E included)
VST_IMAGE_TOKENS = "image_tokens"  # of them, modality IMAGE (one per patch)
VST_LOSS_TOKENS = "loss_tokens"
VST_PADDING_TOKENS = "padding_tokens"  # rows * L - tokens
VST_PADDING_FRACTION = "padding_fraction"  # padding_tokens / (rows * L)
VST_UNITS_PER_ROW_MEAN = "units_per_row_mean"  # source keys per row, averaged over rows
VST_UNITS_PER_ROW_HISTOGRAM = "units_per_row_histogram"  # rows with 1, 2, ..., MAX_PAIRS_PER_ROW units
VST_UNIT_TEXT_TOKENS_MIN = "unit_text_tokens_min"  # text tokens (E included) per unit of a kept record
VST_UNIT_TEXT_TOKENS_MEDIAN = "unit_text_tokens_median"  # exact; the mean of the middle two for an even count
VST_UNIT_TEXT_TOKENS_MAX = "unit_text_tokens_max"

VL_STATS_SCHEMA = pa.schema(
    [
        pa.field(DATASET, pa.string(), nullable=False),
        pa.field(TASK, pa.string(), nullable=False),
        pa.field(VST_RECORDS_READ, pa.int64(), nullable=False),
        pa.field(VST_RECORDS_KEPT, pa.int64(), nullable=False),
        pa.field(VST_RECORDS_REJECTED, pa.int64(), nullable=False),
        pa.field(VST_REJECTED_BY_REASON, pa.map_(pa.string(), pa.int64()), nullable=False),
        pa.field(VST_UNITS_REJECTED_BY_REASON, pa.map_(pa.string(), pa.int64()), nullable=False),
        pa.field(VST_UNITS, pa.int64(), nullable=False),
        pa.field(VST_SEQUENCE_LENGTH, pa.int64(), nullable=False),
        pa.field(VST_ROWS, pa.int64(), nullable=False),
        pa.field(VST_TOKENS, pa.int64(), nullable=False),
        pa.field(VST_TEXT_TOKENS, pa.int64(), nullable=False),
        pa.field(VST_IMAGE_TOKENS, pa.int64(), nullable=False),
        pa.field(VST_LOSS_TOKENS, pa.int64(), nullable=False),
        pa.field(VST_PADDING_TOKENS, pa.int64(), nullable=False),
        pa.field(VST_PADDING_FRACTION, pa.float64(), nullable=True),
        pa.field(VST_UNITS_PER_ROW_MEAN, pa.float64(), nullable=True),
        pa.field(VST_UNITS_PER_ROW_HISTOGRAM, pa.list_(pa.int64()), nullable=False),
        pa.field(VST_UNIT_TEXT_TOKENS_MIN, pa.int64(), nullable=True),
        pa.field(VST_UNIT_TEXT_TOKENS_MEDIAN, pa.float64(), nullable=True),
        pa.field(VST_UNIT_TEXT_TOKENS_MAX, pa.int64(), nullable=True),
    ]
)
