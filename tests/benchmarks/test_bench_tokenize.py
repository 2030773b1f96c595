"""The tokenization benchmark runs and prints every figure beside its Python-loop baseline."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_quick_run_prints_each_figure_with_a_ratio() -> None:
    # A subprocess: the script pins itself to one core, which must not leak into pytest.
    out = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "bench_tokenize.py"), "--quick"],
        capture_output=True, text=True, check=True, timeout=120,
    ).stdout
    for name in ("continuous (mu_law)", "continuous (linear)", "84x84x1 frames patchified",
                 "episodes (1000 steps, 24 obs + 6 act)"):
        line = next(line for line in out.splitlines() if line.startswith(name))
        assert re.search(r"[\d,]+ \w+/s \(numpy\) vs [\d,]+ \w+/s \(Python loop\), ratio [\d,]+x", line)
    assert "affinity [0]" in out
