"""The dataset card `README.md`: what makes a finished output a Hugging Face dataset directory.

`render_card(manifest, records)` is a pure function of the manifest (before its `card`
entry) and the stats records: a YAML header of `configs:` that `datasets.load_dataset(<dir>)`
reads (the sequences as the default config, one config per dataset and per task, the
episode table, the per-task statistics and, when there are any, the rejects), then the
columns (from the schema's field metadata), the vocabulary layout, the filter summary per
task, the source's citation and licence (registry entries only; otherwise "see the
source") and how to load the output with `datasets`, pyarrow, DuckDB, polars and our reader.

Invariants: the same manifest and records give the same bytes (everything sorted, no
time, no absolute path: the manifest names no location); every `configs:` glob matches
files of this output only (never `manifest.json`, `report.html` or another table).
`add_card` writes it before the manifest and returns the manifest with its `card` entry
(path, bytes, sha256), which publishing and `gato-audit` check like a shard.
"""

from __future__ import annotations

import json
import posixpath
from collections.abc import Mapping, Sequence
from typing import Any

import pyarrow as pa

from formats.files import output_filesystem, sha256_and_size, write_bytes
from formats.stats_files import read_stats_records
from schemas import output as out
from schemas.datasets import REGISTRY, DatasetSpec
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
        features = [f for f in (_hf_feature(field) for field in out.STATS_SCHEMA) if f is not None]
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


def yaml_header(manifest: Mapping[str, Any], title: str) -> str:
    lines = ["---", f"pretty_name: {_q(title)}", "tags:", "- reinforcement-learning", "- gato", "- rlds", "configs:"]
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


def columns_section() -> str:
    """The sequences columns, from the field metadata every shard carries."""
    rows = [
        (f"`{f.name}`", _type_name(f.type), f.metadata[out.FIELD_DESCRIPTION].decode(), f.metadata[out.FIELD_UNITS].decode())
        for f in out.SEQUENCE_SCHEMA
    ]
    return (
        "## Columns\n\nOne row per sequence of L tokens (per-token columns have L entries). The same "
        "descriptions are in each column's Parquet field metadata (`description`, `units`).\n\n"
        + _table(("column", "type", "meaning", "units"), rows)
    )


def vocabulary_section(manifest: Mapping[str, Any]) -> str:
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
        "`modality`, never by its id alone (text and discrete ids may overlap). Local positions: "
        f"observation tokens count 0, 1, ... within their timestep; the separator and every action "
        f"token take {LOCAL_POSITION_TABLE - 1}, the last index of the {LOCAL_POSITION_TABLE}-entry "
        f"table. Image pixels are stored raw; the model sees `{manifest[out.M_IMAGE_NORMALIZATION]}`.\n\n"
        + _table(("modality", "name", "ids", "notes"), rows)
    )


def tasks_section(manifest: Mapping[str, Any], records: Sequence[Mapping[str, Any]]) -> str:
    """Per task: the config name, the episode filter's books and the sequences written."""
    dirs = task_dirs(manifest)
    rows = []
    for r in sorted(records, key=lambda r: (r[out.DATASET], r[out.TASK])):
        directory = dirs.get((r[out.DATASET], r[out.TASK]))
        rows.append((
            f"`{r[out.DATASET]}`", f"`{r[out.TASK]}`", f"`{_config_name(directory)}`" if directory else "-",
            r[out.ST_EPISODES_READ], r[out.ST_KEPT], r[out.ST_DROPPED], r[out.ST_REJECTED],
            _number(r.get(out.ST_WINDOW)), _number(r.get(out.ST_EXPERT_RETURN)), _number(r.get(out.ST_THRESHOLD)),
            _number(r.get(out.ST_SEQUENCES)), _number(r.get(out.ST_SEQUENCE_TOKENS)),
        ))
    return (
        "## Tasks and the episode filter\n\nPer task, over its episodes in collection order: W = max(1, "
        "min(cap, floor(0.1 N))), E = the best mean return of W consecutive episodes, an episode is kept "
        "when its return >= threshold = E - (1 - fraction) |E|; read = kept + dropped + rejected. "
        "`stats/` and `report.html` hold the rest (histograms, reasons of rejects).\n\n"
        + _table(("dataset", "task", "config", "read", "kept", "dropped", "rejected", "W", "E", "threshold",
                  "sequences", "tokens"), rows)
    )


def source_section(dataset: str, spec: DatasetSpec | None) -> str:
    """Where the episodes come from: homepage, citation and licence as the registry states them."""
    homepage = spec.homepage if spec and spec.homepage else SEE_THE_SOURCE
    licence = spec.licence if spec and spec.licence else SEE_THE_SOURCE
    text = (
        f"## Source, citation and licence\n\nEpisodes of `{dataset}`, read from its RLDS (TFDS) files. "
        "This output is a derived work: the source's terms apply.\n\n"
        f"- Homepage: {homepage}\n- Licence: {licence}\n"
    )
    if spec and spec.citation:
        return text + f"- Citation:\n\n```bibtex\n{spec.citation}\n```\n"
    return text + f"- Citation: {SEE_THE_SOURCE}\n"


def loading_section(manifest: Mapping[str, Any]) -> str:
    task_config = next((c["config_name"] for c in card_configs(manifest) if CONFIG_SEPARATOR in c["config_name"]), None)
    example = f'\none_task = datasets.load_dataset(DIR, "{task_config}")' if task_config else ""
    return f"""## Loading

`DIR` is this directory (local, or a Hub dataset repository id for `datasets`).

```python
import datasets
ds = datasets.load_dataset(DIR)                      # the sequences (config "default"), split "train"{example}
episodes = datasets.load_dataset(DIR, "episodes")    # every episode's return and filter decision

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
too. The `stats` config leaves out `rejected_by_reason` (a map, which `datasets` cannot read); it
is in `stats/stats.json` and `stats/stats.parquet`.
"""


def files_section() -> str:
    return f"""## Files

- `{out.MANIFEST_FILE}`: written last; lists every shard with rows, tokens, bytes and sha256, the
  configuration and its hash, the per-field encodings and shapes, the sampling weights and this card
  (with its sha256). A directory without it is unfinished.
- `{out.SEQUENCES_DIR}/<dataset>/<task>/part-*.parquet`, `{out.REJECTS_DIR}/...`: the shards.
- `stats/`: per-task statistics (`stats.parquet`, `stats.json`) and `episodes.parquet`.
- `{out.REPORT_FILE}`: the episode filter report; `{out.VIEWER_FILE}`: a few sequences per task as the model sees them.

## Uploading to the Hugging Face Hub

```sh
huggingface-cli upload <user>/<repo> DIR . --repo-type=dataset
```

The Hub reads this card's `configs:`; `gato-audit DIR` checks the files against the manifest first.
"""


def render_card(manifest: Mapping[str, Any], records: Sequence[Mapping[str, Any]]) -> str:
    """The card's text (module docstring); deterministic in its arguments."""
    dataset = str((manifest.get(out.M_CONFIG) or {}).get("dataset", "")) or "unknown"
    spec = REGISTRY.get(dataset)
    title = f"Gato training sequences: {dataset}"
    rows = sum(int(s[out.S_ROWS]) for s in manifest.get(out.M_SHARDS) or [])
    intro = (
        f"# {title}\n\nEpisodes of `{dataset}` turned into Gato training sequences (Reed et al., 2022, "
        f"arXiv 2205.06175) by gato-data: {rows} sequences of {manifest[out.M_SEQUENCE_LENGTH]} tokens in "
        f"{len(task_dirs(manifest))} task(s). Configuration hash `{manifest.get(out.M_CONFIG_HASH, '-')}`.\n"
    )
    sections = (
        intro, loading_section(manifest), columns_section(), vocabulary_section(manifest),
        tasks_section(manifest, records), source_section(dataset, spec), files_section(),
    )
    return yaml_header(manifest, title) + "\n" + "\n".join(sections)


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
