"""Command line of the Gato data job: parse flags, then call `pipeline.job.run_job`.

    python beam_runner.py --dataset=atari [--tasks='Pong*'] [--output_dir=out/atari]

Flags this module does not know pass through to Beam unchanged (`--runner`,
`--project`, `--region`, `--temp_location`, `--num_workers`, `--setup_file`,
`--direct_num_workers`, ...). Without `--runner` the job runs locally on Beam's
DirectRunner, named explicitly, which `pipeline/runner.py` maps to Beam's FnApiRunner so
that nothing tries the network (Beam's DirectRunner would first try to fetch Prism).

Errors a user can act on are one line on stderr, no traceback: bad flags (exit 2),
start-up checks, a claimed or foreign output directory, `--strict` rejects (exit 1), and a
full disk, "error: no space left on <path>" (exit 1), however deep in Beam it happened.
"""

from __future__ import annotations

import argparse
import errno
import logging
import re
import sys
from collections.abc import Sequence

from planning.options import SAMPLES_DATA_DIR, JobOptions

DEFAULT_RUNNER = "DirectRunner"
# formats.files.NO_SPACE_MESSAGE, as it reads inside a message Beam wrapped or annotated.
_NO_SPACE = re.compile(r"no space left on (.+?)(?: \[while running|'|\"|$)", re.MULTILINE)


def build_parser() -> argparse.ArgumentParser:
    defaults = {f.name: f.default for f in JobOptions.__dataclass_fields__.values()}
    parser = argparse.ArgumentParser(
        prog="beam_runner.py",
        description="Turn RLDS episodes into Gato training sequences (sharded Parquet). "
        "Unknown flags are passed to Apache Beam.",
    )
    add = parser.add_argument
    add("--dataset", required=True,
        help="registry name (atari, dmlab, control_suite, metaworld, babyai) or rlds:<dir>")
    add("--tasks", default="*",
        help="comma-separated globs over the dataset's task names (default: every task)")
    add("--data_dir", default=None,
        help=f"TFDS data dir, local or gs:// (default: the bundled samples, {SAMPLES_DATA_DIR})")
    add("--output_dir", default=None,
        help="where to write (any fsspec path; default: out/<dataset>)")
    add("--sentencepiece_model", default=None,
        help="SentencePiece model for text fields (any fsspec path; at most 32000 pieces)")
    add("--rlds_spec", default=None, help="TOML overrides for --dataset=rlds:<dir>")
    add("--layout", default=defaults["layout"], help="vocabulary layout: gato or disjoint")
    add("--sequence_length", type=int, default=defaults["sequence_length"])
    add("--seed", type=int, default=defaults["seed"])
    add("--filter_fraction", type=float, default=defaults["filter_fraction"],
        help="keep episodes whose return reaches this fraction of the expert return")
    add("--window_cap", type=int, default=defaults["window_cap"],
        help="largest window of episodes the expert return is averaged over")
    add("--no_filter", action="store_true", help="keep every valid episode (stats still computed)")
    add("--prompt_fraction", type=float, default=defaults["prompt_fraction"])
    add("--prompt_tokens", type=int, default=None,
        help="prompt budget in tokens (default: a quarter of --sequence_length)")
    add("--prompt_pool_size", type=int, default=defaults["prompt_pool_size"],
        help="prompt candidate episodes kept per task")
    add("--rows_per_shard", type=int, default=defaults["rows_per_shard"])
    add("--overwrite", action="store_true", help="replace a finished output")
    add("--strict", action="store_true",
        help="stop at the first bad episode instead of writing it to rejects")
    add("--log_level", default="INFO")
    return parser


def parse(argv: Sequence[str]) -> tuple[JobOptions, list[str]]:
    """(job options, Beam flags). Beam gets `--runner=DirectRunner` unless a runner is named."""
    args, beam_args = build_parser().parse_known_args(list(argv))
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(message)s")
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


def main(argv: Sequence[str] | None = None) -> int:
    try:
        options, beam_args = parse(sys.argv[1:] if argv is None else argv)
    except ValueError as e:  # bad flag values: one line, no traceback
        print(f"error: {e}", file=sys.stderr)
        return 2
    from pipeline.job import run_job  # Beam/TF imports only once flags are valid

    try:
        run_job(options, beam_args=beam_args)
    except ValueError as e:  # start-up checks (names, data dir, features, claims) and --strict rejects
        print(f"error: {e}", file=sys.stderr)
        return 1
    except Exception as e:
        message = no_space_message(e)
        if message is None:
            raise
        print(f"error: {message}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
