"""The dataset card `README.md`: what makes a finished output a Hugging Face dataset directory.

`render_card(manifest, records)` is a pure function of the manifest (before its `card`
entry) and the stats records: a YAML header of `configs:` that `datasets.load_dataset(<dir>)`
reads (the sequences as the default config, one config per dataset and per task, the
episode table, the per-task statistics and, when there are any, the rejects), then the
columns (from the schema's field metadata), the vocabulary layout, the filter summary per
task, the source's citation and licence (registry entries only; otherwise "see the
source") and how to load the output with `datasets`, pyarrow, DuckDB, polars and our reader.
An output of a vision-language dataset (its manifest has a `vision_language` entry) has
no episode table, and the card's words for it come from `formats/vl_card.py` (`CardText`:
records and units instead of episodes, the VL statistics, `VL_REGISTRY`); an agent
output's card is unchanged by it.

Invariants: the same manifest and records give the same bytes (everything sorted, no
time, no absolute path: the manifest names no location); every `configs:` glob matches
files of this output only (never `manifest.json`, `report.html` or another table).
`add_card` writes it before the manifest and returns the manifest with its `card` entry
(path, bytes, sha256), which publishing and `gato-audit` check like a shard.
"""

from __future__ import annotations

import dataclasses
import json
import posixpath
from collections.abc import Mapping, Sequence
from typing import Any

import pyarrow as pa

from formats.files import output_filesystem, sha256_and_size, write_bytes
from formats import vl_card
from formats.stats_files import read_stats_records
from schemas import output as out
from schemas.datasets import REGISTRY, DatasetSpec
from schemas.vl import VL_REGISTRY, VLDatasetSpec
from schemas.vocab import LOCAL_POSITION_TABLE, Modality

DEFAULT_CONFIG = "default"
EPISODES_CONFIG = "episodes"
STATS_CONFIG = "stats"
REJECTS_CONFIG = "rejects"
RESERVED_CONFIGS = frozenset({DEFAULT_CONFIG, EPISODES_CONFIG, STATS_CONFIG, REJECTS_CONFIG})
CONFIG_SEPARATOR = "--"  # `<dataset>--<task dir>`: `datasets` refuses '/' in config names
SEE_THE_SOURCE = "not stated in our registry: see the source"
# Arrow types `datasets` cannot read (map): left out of the `stats` config, still in
# stats.parquet and stats.json.
_HF_SCALARS = {pa.int64(): "int64", pa.float64(): "float64", pa.bool_(): "bool", pa.string(): "string"}


@dataclasses.dataclass(frozen=True)
class CardText:
    """What the card says that depends on what the rows hold: agent episodes (`agent_text`)
    or the records of a vision-language dataset (`vl_text`, words from `formats/vl_card.py`)."""

    tags: tuple[str, ...]
    subject: str  # what was turned into sequences: "Episodes of `atari`"
    details: str  # a paragraph after the intro, or ""
    sequence_schema: pa.Schema  # the columns section's columns
    columns_note: str  # after the columns table, or ""
    positions: str  # the vocabulary section's local positions rule
    stats_schema: pa.Schema  # the `stats` config's features
    tasks_text: str  # the tasks section's heading and prose
    task_columns: tuple[tuple[str, str], ...]  # (stats record key, header) after dataset, task, config
    origin: str  # the source section's first sentence
    spec: DatasetSpec | VLDatasetSpec | None  # homepage, citation, licence
    loading_extra: str  # more `datasets.load_dataset` lines
    files: str  # the files section's lines on the shards, stats/ and the reports


AGENT_TASK_COLUMNS: tuple[tuple[str, str], ...] = (
    (out.ST_EPISODES_READ, "read"), (out.ST_KEPT, "kept"), (out.ST_DROPPED, "dropped"), (out.ST_REJECTED, "rejected"),
    (out.ST_WINDOW, "W"), (out.ST_EXPERT_RETURN, "E"), (out.ST_THRESHOLD, "threshold"),
    (out.ST_SEQUENCES, "sequences"), (out.ST_SEQUENCE_TOKENS, "tokens"),
)


def agent_text(dataset: str) -> CardText:
    """The card's words for agent episodes (spec sections 1-7)."""
    return CardText(
        tags=("reinforcement-learning", "gato", "rlds"),
        subject=f"Episodes of `{dataset}`",
        details="",
        sequence_schema=out.SEQUENCE_SCHEMA,
        columns_note="",
        positions=(
            "Local positions: observation tokens count 0, 1, ... within their timestep; the separator and every "
            f"action token take {LOCAL_POSITION_TABLE - 1}, the last index of the {LOCAL_POSITION_TABLE}-entry table."
        ),
        stats_schema=out.STATS_SCHEMA,
        tasks_text=(
            "## Tasks and the episode filter\n\nPer task, over its episodes in collection order: W = max(1, "
            "min(cap, floor(0.1 N))), E = the best mean return of W consecutive episodes, an episode is kept "
            "when its return >= threshold = E - (1 - fraction) |E|; read = kept + dropped + rejected. "
            "`stats/` and `report.html` hold the rest (histograms, reasons of rejects).\n\n"
        ),
        task_columns=AGENT_TASK_COLUMNS,
        origin=f"Episodes of `{dataset}`, read from its RLDS (TFDS) files.",
        spec=REGISTRY.get(dataset),
        loading_extra='\nepisodes = datasets.load_dataset(DIR, "episodes")    # every episode\'s return and filter decision',
        files=(
            f"- `{out.SEQUENCES_DIR}/<dataset>/<task>/part-*.parquet`, `{out.REJECTS_DIR}/...`: the shards.\n"
            "- `stats/`: per-task statistics (`stats.parquet`, `stats.json`) and `episodes.parquet`.\n"
            f"- `{out.REPORT_FILE}`: the episode filter report; `{out.VIEWER_FILE}`: a few sequences per task as "
            "the model sees them.\n"
        ),
    )


def vl_text(manifest: Mapping[str, Any], dataset: str, entry: Mapping[str, Any]) -> CardText:
    """The card's words for the records of a vision-language dataset (spec section 8); `entry`
    is the manifest's `vision_language` entry of `dataset`."""
    spec = VL_REGISTRY.get(dataset)
    return CardText(
        tags=vl_card.VL_TAGS[entry[out.VL_KIND]],
        subject=vl_card.vl_subject(dataset, entry),
        details=vl_card.vl_details(entry, sequence_length=int(manifest[out.M_SEQUENCE_LENGTH])),
        sequence_schema=out.VL_SEQUENCE_SCHEMA,
        columns_note=vl_card.VL_COLUMNS_NOTE,
        positions=vl_card.VL_POSITIONS,
        stats_schema=out.VL_STATS_SCHEMA,
        tasks_text=vl_card.VL_TASKS_TEXT,
        task_columns=vl_card.VL_TASK_COLUMNS,
        origin=vl_card.vl_origin(dataset, entry, description=spec.description if spec else ""),
        spec=spec,
        loading_extra=vl_card.VL_LOADING_REJECTS if manifest.get(out.M_REJECTS) else "",
        files=vl_card.VL_FILES,
    )


def card_text(manifest: Mapping[str, Any], dataset: str) -> CardText:
    """`vl_text` where the manifest describes `dataset` under `vision_language`, else `agent_text`."""
    entry = vl_card.vl_entry(manifest, dataset)
    return agent_text(dataset) if entry is None else vl_text(manifest, dataset, entry)


def _q(text: str) -> str:
    """A YAML double-quoted scalar (JSON's string syntax is valid YAML)."""
    return json.dumps(text, ensure_ascii=False)


def _hf_feature(field: pa.Field) -> dict[str, str] | None:
    """The `datasets` YAML feature of a stats column; None for a type it cannot read."""
    if field.type in _HF_SCALARS:
        return {"name": field.name, "dtype": _HF_SCALARS[field.type]}
    if pa.types.is_list(field.type) and field.type.value_type in _HF_SCALARS:
        return {"name": field.name, "list": _HF_SCALARS[field.type.value_type]}
    return None


def task_dirs(manifest: Mapping[str, Any]) -> dict[tuple[str, str], str]:
    """{(dataset, task): the directory of its shards under `sequences/`}, sorted."""
    return {
        (str(s[out.S_DATASET]), str(s[out.S_TASK])): posixpath.dirname(str(s[out.S_PATH]))
        for s in sorted(manifest.get(out.M_SHARDS) or [], key=lambda s: s[out.S_PATH])
    }


def _config_name(directory: str) -> str:
    """`sequences/atari/rlu_atari__Pong_run_1` -> `atari--rlu_atari__Pong_run_1` (safe components)."""
    name = CONFIG_SEPARATOR.join(directory.split("/")[1:])
    return f"{name}{CONFIG_SEPARATOR}sequences" if name in RESERVED_CONFIGS else name


def card_configs(manifest: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The `configs:` entries, in the card's order: default, per dataset, per task, tables."""
    entry = lambda name, path, **extra: {"config_name": name, **extra, "path": path}  # noqa: E731
    configs = [entry(DEFAULT_CONFIG, f"{out.SEQUENCES_DIR}/**/*.parquet", default=True)]
    dirs = task_dirs(manifest)
    for dataset_dir in sorted({d.rsplit("/", 1)[0] for d in dirs.values()}):
        configs.append(entry(_config_name(dataset_dir), f"{dataset_dir}/**/*.parquet"))
    for directory in sorted(set(dirs.values())):
        configs.append(entry(_config_name(directory), f"{directory}/*.parquet"))
    stats = manifest.get(out.M_STATS) or {}
    if out.M_STATS_EPISODES in stats:
        configs.append(entry(EPISODES_CONFIG, stats[out.M_STATS_EPISODES]))
    if out.M_STATS_PARQUET in stats:
        schema = out.VL_STATS_SCHEMA if out.M_VISION_LANGUAGE in manifest else out.STATS_SCHEMA
        features = [f for f in (_hf_feature(field) for field in schema) if f is not None]
        configs.append(entry(STATS_CONFIG, stats[out.M_STATS_PARQUET], columns=[f["name"] for f in features], features=features))
    if manifest.get(out.M_REJECTS):
        configs.append(entry(REJECTS_CONFIG, f"{out.REJECTS_DIR}/**/*.parquet"))
    return configs


def _yaml_config(config: Mapping[str, Any]) -> list[str]:
    lines = [f"- config_name: {_q(config['config_name'])}"]
    if config.get("default"):
        lines.append("  default: true")
    lines += ["  data_files:", "  - split: train", f"    path: {_q(config['path'])}"]
    if "columns" in config:
        lines.append("  columns:")
        lines += [f"  - {_q(c)}" for c in config["columns"]]
        lines.append("  features:")
        for feature in config["features"]:
            lines += [f"  - name: {_q(feature['name'])}"]
            lines += [f"    {k}: {_q(v)}" for k, v in feature.items() if k != "name"]
    return lines


def yaml_header(manifest: Mapping[str, Any], title: str, *, tags: Sequence[str]) -> str:
    lines = ["---", f"pretty_name: {_q(title)}", "tags:", *(f"- {tag}" for tag in tags), "configs:"]
    for config in card_configs(manifest):
        lines += _yaml_config(config)
    return "\n".join([*lines, "---"]) + "\n"


def _table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    cell = lambda v: "-" if v is None else str(v).replace("|", "\\|")  # noqa: E731
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def _number(value: Any) -> str:
    return "-" if value is None else (f"{value:.6g}" if isinstance(value, float) else str(value))


def _type_name(arrow_type: pa.DataType) -> str:
    if pa.types.is_dictionary(arrow_type):
        return f"{arrow_type.value_type} (dictionary-encoded)"
    if pa.types.is_list(arrow_type):
        return f"list<{arrow_type.value_type}>"
    return str(arrow_type)


def columns_section(text: CardText) -> str:
    """The sequences columns, from the field metadata every shard carries."""
    rows = [
        (f"`{f.name}`", _type_name(f.type), f.metadata[out.FIELD_DESCRIPTION].decode(), f.metadata[out.FIELD_UNITS].decode())
        for f in text.sequence_schema
    ]
    return (
        "## Columns\n\nOne row per sequence of L tokens (per-token columns have L entries). The same "
        "descriptions are in each column's Parquet field metadata (`description`, `units`).\n\n"
        + _table(("column", "type", "meaning", "units"), rows)
        + (f"\n{text.columns_note}" if text.columns_note else "")
    )


def vocabulary_section(manifest: Mapping[str, Any], text: CardText) -> str:
    vocab = manifest[out.M_VOCABULARY]
    n = vocab["num_bins"]
    rows = [
        (Modality.TEXT.value, "text", f"[0, {vocab['text_size']})", "SentencePiece ids"),
        (Modality.IMAGE.value, "image", str(vocab["image_placeholder"]), "one per 16x16 patch; pixels in `patch_pixels`"),
        (Modality.DISCRETE.value, "discrete", f"[{vocab['discrete_offset']}, {vocab['discrete_offset'] + n})", "integer values"),
        (Modality.CONTINUOUS.value, "continuous", f"[{vocab['continuous_offset']}, {vocab['continuous_offset'] + n})",
         f"{n} bins after mu-law or linear encoding (per field in the manifest)"),
        (Modality.SEPARATOR.value, "separator", str(vocab["separator"]), "between observation and action"),
        (Modality.PAD.value, "padding", str(vocab["pad"]), "after the last timestep"),
    ]
    return (
        f"## Vocabulary\n\nLayout `{vocab['name']}`, {vocab['vocab_size']} ids. Decode a token by its "
        f"`modality`, never by its id alone (text and discrete ids may overlap). {text.positions} "
        f"Image pixels are stored raw; the model sees `{manifest[out.M_IMAGE_NORMALIZATION]}`.\n\n"
        + _table(("modality", "name", "ids", "notes"), rows)
    )


def tasks_section(manifest: Mapping[str, Any], records: Sequence[Mapping[str, Any]], text: CardText) -> str:
    """Per task: the config name and the statistics `text.task_columns` names."""
    dirs = task_dirs(manifest)
    rows = []
    for r in sorted(records, key=lambda r: (r[out.DATASET], r[out.TASK])):
        directory = dirs.get((r[out.DATASET], r[out.TASK]))
        config = f"`{_config_name(directory)}`" if directory else "-"
        rows.append((f"`{r[out.DATASET]}`", f"`{r[out.TASK]}`", config, *(_number(r.get(k)) for k, _ in text.task_columns)))
    return text.tasks_text + _table(("dataset", "task", "config", *(h for _, h in text.task_columns)), rows)


def source_section(text: CardText) -> str:
    """Where the data comes from: homepage, citation and licence as the registry states them."""
    spec = text.spec
    homepage = spec.homepage if spec and spec.homepage else SEE_THE_SOURCE
    licence = spec.licence if spec and spec.licence else SEE_THE_SOURCE
    body = (
        f"## Source, citation and licence\n\n{text.origin} "
        "This output is a derived work: the source's terms apply.\n\n"
        f"- Homepage: {homepage}\n- Licence: {licence}\n"
    )
    if spec and spec.citation:
        return body + f"- Citation:\n\n```bibtex\n{spec.citation}\n```\n"
    return body + f"- Citation: {SEE_THE_SOURCE}\n"


def _left_out(schema: pa.Schema) -> str:
    """The stats columns the `stats` config leaves out, as the loading section says it."""
    names = [f"`{field.name}`" for field in schema if _hf_feature(field) is None]
    if len(names) == 1:
        return f"{names[0]} (a map, which `datasets` cannot read); it\nis"
    return f"{' and '.join(names)} (maps, which `datasets` cannot read); they\nare"


def loading_section(manifest: Mapping[str, Any], text: CardText) -> str:
    task_config = next((c["config_name"] for c in card_configs(manifest) if CONFIG_SEPARATOR in c["config_name"]), None)
    example = f'\none_task = datasets.load_dataset(DIR, "{task_config}")' if task_config else ""
    return f"""## Loading

`DIR` is this directory (local, or a Hub dataset repository id for `datasets`).

```python
import datasets
ds = datasets.load_dataset(DIR)                      # the sequences (config "default"), split "train"{example}{text.loading_extra}

import pyarrow.parquet as pq
table = pq.read_table(f"{{DIR}}/sequences")          # not DIR itself: it holds other tables too

import duckdb
duckdb.sql(f"SELECT task, count(*) FROM read_parquet('{{DIR}}/sequences/**/*.parquet') GROUP BY task")

import polars as pl
df = pl.scan_parquet(f"{{DIR}}/sequences/**/*.parquet").collect()

from reader import GatoReader, ReaderOptions         # this project's streaming reader (mixes, shuffles, resumes)
batches = GatoReader([DIR], ReaderOptions(seed=0)).batches(32)
```

Glob `sequences/**/*.parquet`, never `**/*.parquet`: the statistics and rejects tables are Parquet
too. The `stats` config leaves out {_left_out(text.stats_schema)} in `stats/stats.json` and `stats/stats.parquet`.
"""


def files_section(text: CardText) -> str:
    return f"""## Files

- `{out.MANIFEST_FILE}`: written last; lists every shard with rows, tokens, bytes and sha256, the
  configuration and its hash, the per-field encodings and shapes, the sampling weights and this card
  (with its sha256). A directory without it is unfinished.
{text.files}
## Uploading to the Hugging Face Hub

```sh
huggingface-cli upload <user>/<repo> DIR . --repo-type=dataset
```

The Hub reads this card's `configs:`; `gato-audit DIR` checks the files against the manifest first.
"""


def render_card(manifest: Mapping[str, Any], records: Sequence[Mapping[str, Any]]) -> str:
    """The card's text (module docstring); deterministic in its arguments."""
    dataset = str((manifest.get(out.M_CONFIG) or {}).get("dataset", "")) or "unknown"
    text = card_text(manifest, dataset)
    title = f"Gato training sequences: {dataset}"
    rows = sum(int(s[out.S_ROWS]) for s in manifest.get(out.M_SHARDS) or [])
    intro = (
        f"# {title}\n\n{text.subject} turned into Gato training sequences (Reed et al., 2022, "
        f"arXiv 2205.06175) by gato-data: {rows} sequences of {manifest[out.M_SEQUENCE_LENGTH]} tokens in "
        f"{len(task_dirs(manifest))} task(s). Configuration hash `{manifest.get(out.M_CONFIG_HASH, '-')}`.\n"
        + text.details
    )
    sections = (
        intro, loading_section(manifest, text), columns_section(text), vocabulary_section(manifest, text),
        tasks_section(manifest, records, text), source_section(text), files_section(text),
    )
    return yaml_header(manifest, title, tags=text.tags) + "\n" + "\n".join(sections)


def write_card(output_dir: str, manifest: Mapping[str, Any], records: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Writes `README.md`; returns its manifest entry (path, bytes, sha256)."""
    write_bytes(output_dir, out.CARD_FILE, render_card(manifest, records).encode("utf-8"))
    fs, root = output_filesystem(output_dir)
    sha, size = sha256_and_size(fs, f"{root}/{out.CARD_FILE}")
    return {out.S_PATH: out.CARD_FILE, out.S_BYTES: size, out.S_SHA256: sha}


def add_card(output_dir: str, manifest: Mapping[str, Any]) -> dict[str, Any]:
    """Writes the card of the output at `output_dir` (records from its `stats/stats.json`, when
    the job wrote statistics) and returns `manifest` with its `card` entry."""
    stats = manifest.get(out.M_STATS) or {}
    records = read_stats_records(output_dir) if out.M_STATS_JSON in stats else []
    body = {k: v for k, v in manifest.items() if k != out.M_CARD}
    return {**body, out.M_CARD: write_card(output_dir, body, records)}
