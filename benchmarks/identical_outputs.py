"""Proof that a speed-up changed no output byte: every bundled sample dataset, before and after.

    python benchmarks/identical_outputs.py run --source <tree> --out <dir>   # one tree's outputs
    python benchmarks/identical_outputs.py compare <dir A> <dir B>           # every file, byte for byte

`run` runs `beam_runner.py --dataset=<name>` of the source tree `--source` (a checkout or a
`git archive` of the commit to compare; PYTHONPATH points at it, so the installed copy is
not what runs) for each of atari, babyai, control_suite, dmlab, metaworld and the six
vision-language and text datasets (coco_captions, ..., vqav2), on the
bundled samples with the default seed, into `<dir>/<name>`. `compare` lists every file
under both directories and exits 1 naming each file that is missing on one side or
differs. The manifest records no locations (output dir, data dir, model path), so two
runs into different directories must give the same bytes in every file.
"""

from __future__ import annotations

import argparse
import filecmp
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

DATASETS = (
    "atari", "babyai", "control_suite", "dmlab", "metaworld",
    "coco_captions", "conceptual_captions", "interleaved", "okvqa", "text", "vqav2",
)


def run(source: Path, out: Path, datasets: Sequence[str]) -> None:
    """Runs the job of `source` on each bundled dataset into `out/<dataset>`."""
    env = {**os.environ, "PYTHONPATH": str(source)}
    for name in datasets:
        # A fresh directory, not --overwrite: the options (overwrite included) are in the manifest.
        shutil.rmtree(out / name, ignore_errors=True)
        started = time.perf_counter()
        subprocess.run(
            [sys.executable, str(source / "beam_runner.py"), f"--dataset={name}",
             f"--output_dir={out / name}"],
            cwd=source, env=env, check=True, capture_output=True,
        )
        print(f"{name}: {time.perf_counter() - started:.1f} s", flush=True)


def differences(a: Path, b: Path) -> list[str]:
    """Relative paths of the files missing on one side or differing in bytes."""
    files_a = {p.relative_to(a) for p in a.rglob("*") if p.is_file()}
    files_b = {p.relative_to(b) for p in b.rglob("*") if p.is_file()}
    bad = [f"only in {a}: {p}" for p in sorted(files_a - files_b)]
    bad += [f"only in {b}: {p}" for p in sorted(files_b - files_a)]
    bad += [f"differs: {p}" for p in sorted(files_a & files_b) if not filecmp.cmp(a / p, b / p, shallow=False)]
    if not files_a:
        bad.append(f"no files under {a}")
    return bad


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    r = sub.add_parser("run")
    r.add_argument("--source", required=True, type=Path)
    r.add_argument("--out", required=True, type=Path)
    r.add_argument("--datasets", default=",".join(DATASETS))
    c = sub.add_parser("compare")
    c.add_argument("a", type=Path)
    c.add_argument("b", type=Path)
    args = p.parse_args(argv)
    if args.command == "run":
        run(args.source.resolve(), args.out.resolve(), [d for d in args.datasets.split(",") if d])
        return 0
    bad = differences(args.a, args.b)
    count = sum(1 for x in args.a.rglob("*") if x.is_file())
    print("\n".join(bad) if bad else f"identical: {count} files")
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
