"""The scale benchmark of the per-task stages (issue 14): a tiny run finishes, balances its
books, publishes a manifest and prints every figure."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from formats.manifest import read_manifest
from schemas import output as out

ROOT = Path(__file__).resolve().parents[2]


def test_a_tiny_run_prints_every_figure(tmp_path: Path) -> None:
    run = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "bench_stats_scale.py"), "--episodes", "2500",
         "--output_dir", str(tmp_path)],
        capture_output=True, text=True, timeout=300,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    lines = run.stdout.splitlines()
    patterns = [
        r"machine: \d+ cores, load average .*",
        r"one task of 2,500 episodes: 2,4\d\d with a return; W \d+, E -?[\d.]+, threshold -?[\d.]+",
        r"  read (2,5\d\d) = kept ([\d,]+) \+ dropped ([\d,]+) \+ rejected ([\d,]+)",
        r"  output: 3 sequences shards, 1 rejects shards, episodes.parquet [\d,]+ rows in 1 row groups, [\d,]+ bytes",
        r"  time [\d.]+ s \(pipeline construction and run; imports before the clock\)",
        r"  peak RSS [\d,]+ MiB \(process tree, polled\), maxrss [\d,]+ MiB; [\d,]+ MiB of it .*",
        r"  peak RSS against the target: [\d,]+ MiB <= 1,536 MiB \(1.5 GiB\) (OK|MISSED)",
    ]
    for pattern in patterns:
        assert any(re.fullmatch(pattern, line) for line in lines), f"{pattern!r} not in\n{run.stdout}"
    read, kept, dropped, rejected = (int(x.replace(",", "")) for x in re.search(patterns[2], run.stdout).groups())
    assert read == kept + dropped + rejected and kept and dropped and rejected
    manifest = read_manifest(str(tmp_path / "out"))  # published from its staging directory
    assert len(manifest[out.M_SHARDS]) == 3 and sum(s[out.S_ROWS] for s in manifest[out.M_SHARDS]) == 2500
    assert not (tmp_path / "out" / out.STAGING_DIR).exists() and not (tmp_path / "out" / out.TMP_DIR).exists()
