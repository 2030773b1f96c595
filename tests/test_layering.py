"""Package layering: what a trainer or a tokenization user imports must stay light.

`transforms` (pure numpy tokenization) and `reader` (the trainer's streaming reader)
are imported in a fresh interpreter and must not pull in Beam, TensorFlow or torch.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

HEAVY = ("apache_beam", "tensorflow", "tensorflow_datasets", "torch")


@pytest.mark.parametrize("package", ["transforms", "schemas", "reader"])
def test_package_imports_no_heavy_framework(package: str) -> None:
    code = (
        "import importlib, json, pkgutil, sys\n"
        f"pkg = importlib.import_module({package!r})\n"
        "for m in pkgutil.walk_packages(pkg.__path__, pkg.__name__ + '.'):\n"
        # the optional PyTorch adapter is the one module allowed to import torch
        "    if not m.name.endswith('.torch'):\n"
        "        importlib.import_module(m.name)\n"
        f"print(json.dumps(sorted(h for h in {HEAVY!r} if h in sys.modules)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []


def test_the_job_never_imports_tensorflow(tmp_path: object) -> None:
    """Planning, building and running the whole job (in_memory: every stage runs in this
    interpreter) on the Atari samples reads TFDS shards without TensorFlow, so no worker
    pays its import (~3 s, ~500 MB; pipeline/records.py)."""
    code = (
        "import json, sys\n"
        "from pipeline.job import run_job\n"
        "from planning.options import JobOptions\n"
        f"run_job(JobOptions(dataset='atari', output_dir={str(tmp_path)!r}))\n"
        "print(json.dumps('tensorflow' in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout.strip().splitlines()[-1]) is False
