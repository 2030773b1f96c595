"""The command line the sample writers share: `--out DIR --only a,b --seed N`."""

from __future__ import annotations

import argparse
from collections.abc import Sequence


def parse_sample_args(
    argv: list[str] | None, *, description: str, makers: Sequence[str], default_out: str
) -> tuple[str, list[str], int]:
    """(out, chosen makers in the order given, seed); an unknown `--only` name exits with
    a usage error naming it."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--out", default=default_out, help="directory to write (the samples' data_dir)")
    parser.add_argument("--only", default=",".join(makers), help=f"comma-separated subset of {sorted(makers)}")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    chosen = [name.strip() for name in args.only.split(",") if name.strip()]
    unknown = sorted(set(chosen) - set(makers))
    if unknown:
        parser.error(f"unknown --only {unknown}; choose from {sorted(makers)}")
    return args.out, chosen, args.seed
