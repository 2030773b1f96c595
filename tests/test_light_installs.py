"""The installs the README promises, proved in real environments without the heavy packages.

`tests/light_env.py` makes venvs holding only the dependency closure of some requirements
(linked from this environment's files, so no network and ~1 s each): TensorFlow, or Beam,
is not installed there at all, not merely blocked. In them:

- the job (`pip install -e .`: the core dependencies, without TensorFlow since issue 17)
  runs on the Atari samples, whose task list comes from TFDS's RL Unplugged builder, and
  writes the same bytes as in the full environment;
- the reader (`pip install --no-deps -e . && pip install numpy pyarrow fsspec`) streams
  that output, importing neither Beam, TensorFlow, tensorflow_datasets nor torch.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from tests.light_env import closure, make_env

REPO = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
CORE = PYPROJECT["project"]["dependencies"]
READER_ONLY = ["numpy", "pyarrow", "fsspec"]  # the README's reader-only install
NOT_INSTALLED = "import importlib.util as u; print([m for m in {mods!r} if u.find_spec(m) is not None])"

pytestmark = pytest.mark.slow


def _run(python: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(python), *args], cwd=REPO, capture_output=True, text=True, timeout=300,
                          env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"})


def _shards(output: Path) -> dict[str, str]:
    manifest = json.loads((output / "manifest.json").read_text())
    return {s["path"]: s["sha256"] for s in manifest["shards"]} | {"config_hash": manifest["config_hash"]}


@pytest.fixture(scope="module")
def light_output(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The Atari sample job run by `beam_runner.py` where TensorFlow is not installed."""
    root = tmp_path_factory.mktemp("light")
    python = make_env(root / "venv", CORE)
    missing = _run(python, "-c", NOT_INSTALLED.format(mods=["tensorflow", "keras"]))
    assert missing.stdout.strip() == "[]", missing.stderr
    output = root / "out"
    job = _run(python, "beam_runner.py", "--dataset=atari", f"--output_dir={output}")
    assert job.returncode == 0, job.stderr[-3000:]
    return output


def test_the_core_dependencies_leave_tensorflow_out() -> None:
    assert "tensorflow-cpu" not in closure(CORE) and "tensorflow" not in closure(CORE)


def test_the_job_runs_without_tensorflow_and_writes_the_same_bytes(light_output: Path, tmp_path: Path) -> None:
    full = tmp_path / "full"
    job = _run(Path(sys.executable), "beam_runner.py", "--dataset=atari", f"--output_dir={full}")
    assert job.returncode == 0, job.stderr[-3000:]
    assert _shards(light_output) == _shards(full)


def test_the_reader_streams_with_numpy_pyarrow_and_fsspec_only(light_output: Path, tmp_path: Path) -> None:
    python = make_env(tmp_path / "venv", READER_ONLY)
    heavy = ["apache_beam", "tensorflow", "tensorflow_datasets", "torch", "google_crc32c", "PIL"]
    assert _run(python, "-c", NOT_INSTALLED.format(mods=heavy)).stdout.strip() == "[]"
    code = (
        "import json, sys\n"
        "from reader import GatoReader, ReaderOptions\n"
        f"stream = GatoReader({str(light_output)!r}, ReaderOptions(seed=0)).batches(4)\n"
        "batch = next(stream)\n"
        "stream.close()\n"
        "print(json.dumps([list(batch['tokens'].shape), sorted(m.split('.')[0] for m in sys.modules)]))\n"
    )
    streamed = _run(python, "-c", code)
    assert streamed.returncode == 0, streamed.stderr[-3000:]
    shape, modules = json.loads(streamed.stdout.strip().splitlines()[-1])
    assert shape == [4, 1024]
    assert not set(modules) & {"apache_beam", "tensorflow", "tensorflow_datasets", "torch"}
