"""Command line of the Gato data job: parse flags, then call `pipeline.job.run_job`.

    python beam_runner.py --dataset=atari [--tasks='Pong*'] [--output_dir=out/atari]

Flags this module does not know pass through to Beam (`--runner`, `--project`, `--region`,
`--temp_location`, `--num_workers`, `--setup_file`, `--direct_num_workers`, ...); a flag
neither defines is an error with a did-you-mean (Beam would only warn and drop it). Without
`--runner` the job runs locally on Beam's DirectRunner, named explicitly, which
`pipeline/runner.py` maps to Beam's FnApiRunner so that nothing tries the network (Beam's
DirectRunner would first try to fetch Prism).

Errors a user can act on are one line on stderr, no traceback: bad or unknown flags (exit 2),
start-up checks, a claimed, foreign, or unwritable output directory, a runner or storage whose
extra is not installed, `--strict` rejects (exit 1), and a full disk, "error: no space left on
<path>" (exit 1), however deep in Beam it happened. A finished run prints, on stdout, a
table per task (from the output's `stats/stats.json`, so on any runner), the output and the
commands to look at it.
"""

from __future__ import annotations

import argparse
import difflib
import errno
import logging
import re
import sys
from collections.abc import Mapping, Sequence
from typing import Any

from formats.stats_files import read_stats_records
from planning.options import SAMPLES_DATA_DIR, JobOptions
from schemas import output as out

DEFAULT_RUNNER = "DirectRunner"
# formats.files.NO_SPACE_MESSAGE, as it reads inside a message Beam wrapped or annotated.
_NO_SPACE = re.compile(r"no space left on (.+?)(?: \[while running|'|\"|$)", re.MULTILINE)
# Beam logs this once per string annotation of a DoFn or PTransform it meets (our modules use
# `from __future__ import annotations`), ~200 INFO lines a run, saying only that it does not
# check those hints. Dropped from that one logger, by message, so nothing else is hidden.
_TYPE_HINT_LOGGER = "apache_beam.typehints.native_type_compatibility"
_TYPE_HINT_NOTE = "Converting string literal type hint to Any"
# The end-of-run table: (stats record key, header).
SUMMARY_COLUMNS = (
    (out.ST_EPISODES_READ, "read"), (out.ST_KEPT, "kept"), (out.ST_DROPPED, "dropped"),
    (out.ST_REJECTED, "rejected"), (out.ST_SEQUENCES, "sequences"), (out.ST_SEQUENCE_TOKENS, "tokens"),
)
# The same for vision-language and text tasks, whose records carry VST_* keys instead.
VL_SUMMARY_COLUMNS = (
    (out.VST_RECORDS_READ, "read"), (out.VST_RECORDS_KEPT, "kept"), (out.VST_RECORDS_REJECTED, "rejected"),
    (out.VST_UNITS, "units"), (out.VST_ROWS, "rows"), (out.VST_TOKENS, "tokens"),
)


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Every flag's default; a flag whose default is computed (None here) says it in its help."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        return action.help if action.default is None else super()._get_help_string(action)


def _drop_type_hint_notes(record: logging.LogRecord) -> bool:
    return not str(record.msg).startswith(_TYPE_HINT_NOTE)


def configure_logging(level: str) -> None:
    """Our log format at `level`, without Beam's type-hint notes (`_TYPE_HINT_NOTE`)."""
    logging.basicConfig(level=level.upper(), format="%(asctime)s %(levelname)s %(message)s")
    hints = logging.getLogger(_TYPE_HINT_LOGGER)
    if _drop_type_hint_notes not in hints.filters:
        hints.addFilter(_drop_type_hint_notes)


def build_parser() -> argparse.ArgumentParser:
    defaults = {f.name: f.default for f in JobOptions.__dataclass_fields__.values()}
    parser = argparse.ArgumentParser(
        prog="beam_runner.py",
        description="Turn RLDS episodes into Gato training sequences (sharded Parquet). "
        "Apache Beam's pipeline options (--runner, --project, --num_workers, ...) are passed to Beam.",
        formatter_class=_HelpFormatter,
        allow_abbrev=False,  # --task is a typo to report, not --tasks
    )
    add = parser.add_argument
    add("--dataset", required=True,
        help="registry name: agent data (atari, dmlab, control_suite, metaworld, babyai), rlds:<dir>, "
        "or vision-language and text data (coco_captions, conceptual_captions, vqav2, okvqa, text, interleaved)")
    add("--tasks", default="*",
        help="comma-separated globs over the dataset's task names ('*': every task)")
    add("--data_dir", default=None,
        help=f"TFDS data dir, local or gs:// (not given: the bundled samples, {SAMPLES_DATA_DIR})")
    add("--output_dir", default=None,
        help="where to write (any fsspec path; not given: out/<dataset>)")
    add("--sentencepiece_model", default=None,
        help="SentencePiece model for text fields (any fsspec path; at most 32000 pieces; "
        "not given: the bundled model, for datasets with text)")
    add("--rlds_spec", default=None,
        help="TOML overrides for --dataset=rlds:<dir> (not given: <dir>/gato_spec.toml if present)")
    add("--layout", default=defaults["layout"], help="vocabulary layout: gato or disjoint")
    add("--sequence_length", type=int, default=defaults["sequence_length"],
        help="tokens per training sequence (L)")
    add("--seed", type=int, default=defaults["seed"],
        help="seed of every random choice (prompts); same input, options and seed: same bytes")
    add("--filter_fraction", type=float, default=defaults["filter_fraction"],
        help="keep episodes whose return reaches this fraction of the expert return")
    add("--window_cap", type=int, default=defaults["window_cap"],
        help="largest window of episodes the expert return is averaged over")
    add("--no_filter", action="store_true", help="keep every valid episode (stats still computed)")
    add("--prompt_fraction", type=float, default=defaults["prompt_fraction"],
        help="fraction of sequences that start with a prompt from another good episode of the task")
    add("--prompt_tokens", type=int, default=None,
        help="prompt budget in tokens (not given: a quarter of --sequence_length)")
    add("--prompt_pool_size", type=int, default=defaults["prompt_pool_size"],
        help="prompt candidate episodes kept per task")
    add("--format", default=None,
        help="vision-language input format: parquet, webdataset, tfds, jsonl or txt "
        "(not given: the dataset's default, README's table)")
    add("--fields", default="",
        help="vision-language field mapping overrides, comma-separated <part>=<name>[|<name>...], "
        "e.g. image=jpg,captions=caption (README's table lists the parts)")
    add("--vl_spec", default=None,
        help="TOML file with a vision-language `format` and a [fields] table (flags win over it; "
        "not given: the registry's format and mapping)")
    add("--image_size", type=int, default=defaults["image_size"],
        help="vision-language images are resized and centre-cropped to S x S (a multiple of 16)")
    add("--rows_per_shard", type=int, default=defaults["rows_per_shard"],
        help="sequences per Parquet shard, at most")
    add("--overwrite", action="store_true", help="replace a finished output")
    add("--strict", action="store_true",
        help="stop at the first bad episode instead of writing it to rejects")
    add("--log_level", default="INFO", help="DEBUG, INFO, WARNING or ERROR (the summary prints anyway)")
    return parser


def parse(argv: Sequence[str]) -> tuple[JobOptions, list[str]]:
    """(job options, Beam flags). Beam gets `--runner=DirectRunner` unless a runner is named."""
    args, beam_args = build_parser().parse_known_args(list(argv))
    configure_logging(args.log_level)
    data_dir = args.data_dir
    if data_dir is None:
        data_dir = SAMPLES_DATA_DIR
        logging.info("no --data_dir given: reading the bundled samples in %s", data_dir)
    output_dir = args.output_dir or f"out/{args.dataset.replace(':', '_').replace('/', '_')}"
    options = JobOptions(
        dataset=args.dataset,
        tasks=tuple(t.strip() for t in args.tasks.split(",") if t.strip()),
        data_dir=data_dir,
        output_dir=output_dir,
        sentencepiece_model=args.sentencepiece_model,
        rlds_spec=args.rlds_spec,
        layout=args.layout,
        sequence_length=args.sequence_length,
        seed=args.seed,
        filter_fraction=args.filter_fraction,
        window_cap=args.window_cap,
        no_filter=args.no_filter,
        prompt_fraction=args.prompt_fraction,
        prompt_tokens=args.prompt_tokens,
        prompt_pool_size=args.prompt_pool_size,
        rows_per_shard=args.rows_per_shard,
        format=args.format,
        fields=tuple(f.strip() for f in args.fields.split(",") if f.strip()),
        vl_spec=args.vl_spec,
        image_size=args.image_size,
        overwrite=args.overwrite,
        strict=args.strict,
    )
    if not any(a == "--runner" or a.startswith("--runner=") for a in beam_args):
        beam_args = [f"--runner={DEFAULT_RUNNER}", *beam_args]
    return options, beam_args


def no_space_message(error: BaseException) -> str | None:
    """"no space left on <path>" when `error` (or one it was raised from) is a full disk."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, OSError) and current.errno in (errno.ENOSPC, errno.EDQUOT):
            return f"no space left on {current.filename or 'the output disk'}"
        match = _NO_SPACE.search(str(current))
        if match:
            return f"no space left on {match.group(1).strip()}"
        current = current.__cause__ or current.__context__
    return None


def unknown_flags_message(unknown: Sequence[str], known: Sequence[str]) -> str:
    """One line naming each unknown flag, with the closest known ones."""
    parts = []
    for flag in unknown:
        close = difflib.get_close_matches(flag, known, n=1)
        parts.append(f"{flag} (did you mean {close[0]}?)" if close else flag)
    return (f"unknown flag{'s' if len(parts) > 1 else ''} {', '.join(parts)}: neither this job nor "
            "Apache Beam defines it (--help lists the job's flags)")


def our_flags() -> list[str]:
    """Every `--flag` of this command line."""
    from pipeline.runner import long_flags  # Beam imports only once our flags are valid

    return long_flags(build_parser())


def _table_lines(records: Sequence[Mapping[str, Any]], columns: Sequence[tuple[str, str]]) -> list[str]:
    header = ["task", *(title for _, title in columns)]
    rows = [[f"{r[out.DATASET]}/{r[out.TASK]}", *(str(r.get(key, "-")) for key, _ in columns)] for r in records]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    return ["  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths)))
            for row in [header, *rows]]


def summary_table(records: Sequence[Mapping[str, Any]], output_dir: str) -> str:
    """What a finished run prints: per task, read/kept/dropped/rejected/sequences/tokens (agent
    tasks) or read/kept/rejected/units/rows/tokens (vision-language tasks: records with
    `VST_RECORDS_READ`), a table for each kind present; then the output and the commands."""
    vl = [r for r in records if out.VST_RECORDS_READ in r]
    agent = [r for r in records if out.VST_RECORDS_READ not in r]
    groups = ((agent, SUMMARY_COLUMNS), (vl, VL_SUMMARY_COLUMNS))
    tables = [_table_lines(group, columns) for group, columns in groups if group] or [_table_lines([], SUMMARY_COLUMNS)]
    lines = [line for i, table in enumerate(tables) for line in ([""] if i else []) + table]
    report = f"{output_dir.rstrip('/')}/{out.REPORT_FILE}"
    return "\n".join([*lines, "", f"output: {output_dir}",
                      f"next:   gato-audit {output_dir}    # verify it, and every task's filter statistics",
                      f"        {report}    # the auditors' report (open in a browser)"])


def main(argv: Sequence[str] | None = None) -> int:
    try:
        options, beam_args = parse(sys.argv[1:] if argv is None else argv)
    except ValueError as e:  # bad flag values: one line, no traceback
        print(f"error: {e}", file=sys.stderr)
        return 2
    from pipeline.job import run_job  # Beam imports only once our flags are valid
    from pipeline.runner import beam_flags, dry_run_requested, unknown_beam_flags

    try:
        unknown = unknown_beam_flags(beam_args)
        if unknown:
            print(f"error: {unknown_flags_message(unknown, our_flags() + beam_flags())}", file=sys.stderr)
            return 2
        run_job(options, beam_args=beam_args)
    except ValueError as e:  # start-up checks (names, paths, extras, claims) and --strict rejects
        print(f"error: {e}", file=sys.stderr)
        return 1
    except Exception as e:
        message = no_space_message(e)
        if message is None:
            raise
        print(f"error: {message}", file=sys.stderr)
        return 1
    if not dry_run_requested(beam_args):
        print(summary_table(read_stats_records(options.output_dir), options.output_dir))
    return 0


if __name__ == "__main__":
    sys.exit(main())
