"""Parquet schemas and manifest layout of a finished output (spec section 6).

One explicit schema per table, built here and nowhere else. Every column is a plain
Arrow type (strings, integers, lists, binary) so that pyarrow, Hugging Face `datasets`,
DuckDB and polars read the shards without custom code.

Output directory layout (all names relative to `--output_dir`):

    manifest.json                      written last; its absence means "unfinished"
    sequences/<dataset>/<task>/part-<work item>-<n>.parquet
    rejects/<dataset>/<task>/part-<work item>-<n>.parquet
    stats/stats.parquet, stats/stats.json
    report.html

`<dataset>` and `<task>` are path components made only by `pipeline.paths.safe_component`.
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

PATCH_POSITION_WIDTH = 4
NO_TIMESTEP = -1  # `timestep` value of prompt and padding tokens

SEQUENCE_SCHEMA = pa.schema(
    [
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
    ]
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
M_SAMPLING_WEIGHTS = "sampling_weights"  # {dataset: {"weight": w, "tasks": {task: w}}}
M_SHARDS = "shards"  # list of shard entries, below
M_REJECTS = "rejects"  # list of shard entries for rejects files
M_STATS = "stats"  # {"parquet": path, "json": path}

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
