"""The real command line, end to end: `python beam_runner.py ...` in a subprocess.

Input datasets are written in the real TFDS on-disk format by `tests/tfds_fixtures.py`.
These tests pin what a data engineer sees: start-up errors before any work, rejects
with reasons (or a stop under --strict), a killed job leaving no manifest, and the same
bytes from one worker and from two.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import pytest

from schemas.output import CARD_FILE, MANIFEST_FILE, REASON, S_PATH, S_SHA256, VIEWER_FILE
from tests import tfds_fixtures as fx
from tests.transforms.text_fixtures import train_tiny_model

REPO = Path(__file__).resolve().parent.parent
MULTI_PROCESS = ["--direct_num_workers=2", "--direct_running_mode=multi_processing"]


def run_cli(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(REPO / "beam_runner.py"), *args],
        cwd=REPO, capture_output=True, text=True, timeout=timeout,
    )


# Runs beam_runner.py where the modules named in argv[1] (comma-separated, with their submodules)
# cannot be imported, as if not installed: a meta-path finder that raises ModuleNotFoundError.
WITHOUT_MODULES = """
import importlib.abc, runpy, sys
blocked = sys.argv[1].split(",")
class NotInstalled(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if any(name == b or name.startswith(b + ".") for b in blocked):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None
sys.meta_path.insert(0, NotInstalled())
sys.argv = ["beam_runner.py", *sys.argv[2:]]
runpy.run_path("beam_runner.py", run_name="__main__")
"""


def run_cli_without(modules: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", WITHOUT_MODULES, modules, *args],
                          cwd=REPO, capture_output=True, text=True, timeout=300)


def manifest(output: Path) -> dict[str, Any]:
    return json.loads((output / MANIFEST_FILE).read_text())


def stats(output: Path) -> list[dict[str, Any]]:
    return json.loads((output / "stats" / "stats.json").read_text())["tasks"]


def metaworld_data(root: Path, *, tasks: int, episodes: int, steps: int, shards: int = 2) -> Path:
    for t in range(tasks):
        eps = [fx.metaworld_episode(i, steps + 3 * i, seed=t) for i in range(episodes)]
        fx.write_rlds_dataset(root, "gato_metaworld", f"task{t}-v3", fx.metaworld_features(), eps,
                              num_shards=shards)
    return root


@pytest.fixture(scope="module")
def small_metaworld(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return metaworld_data(tmp_path_factory.mktemp("mw"), tasks=2, episodes=10, steps=20)


# --- Start-up checks: one clear message, nothing written. ---


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--dataset=atari", "--data_dir={missing}"], "does not exist"),
        (["--dataset=no_such_dataset"], "atari"),  # the error lists the known names
        (["--dataset=metaworld", "--data_dir={data}", "--tasks=nothing*"], "task0-v3"),
        (["--dataset=metaworld", "--data_dir={data}", "--filter_fraction=2"], "--filter_fraction"),
    ],
)
def test_startup_errors_are_one_clear_message(
    small_metaworld: Path, tmp_path: Path, args: list[str], message: str
) -> None:
    out = tmp_path / "out"
    args = [a.format(missing=tmp_path / "nope", data=small_metaworld) for a in args]
    result = run_cli(*args, f"--output_dir={out}")
    assert result.returncode != 0
    error_lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(error_lines) == 1, result.stderr[-2000:]
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert not out.exists()


def test_features_not_matching_the_registry_stop_at_startup(tmp_path: Path) -> None:
    features = fx.episode_features(
        {"observation": {"state": fx.tfds.features.Tensor(shape=(7,), dtype=np.float32)},
         "action": fx.tfds.features.Tensor(shape=(4,), dtype=np.float32)}
    )
    episode = fx.metaworld_episode(0, 5)
    episode["steps"]["observation"]["state"] = np.zeros((5, 7), np.float32)
    fx.write_rlds_dataset(tmp_path / "data", "gato_metaworld", "odd-v3", features, [episode])
    result = run_cli("--dataset=metaworld", f"--data_dir={tmp_path / 'data'}",
                     f"--output_dir={tmp_path / 'out'}")
    assert result.returncode == 1
    assert "observation/state" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "out").exists()


# --- Issue 17: what a first run prints, and one line for every mistake. ---


def test_a_sample_run_logs_no_type_hint_notes_and_ends_with_a_table_and_next_commands(tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = run_cli("--dataset=atari", f"--output_dir={out}")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "type hint" not in result.stderr and len(result.stderr.splitlines()) < 12, result.stderr
    assert result.stderr.splitlines()[-1].split(" INFO ")[1].startswith("finished in ")
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["task", "read", "kept", "dropped", "rejected", "sequences", "tokens"]
    rows = {line.split()[0]: [int(v) for v in line.split()[1:]] for line in lines[1:3]}
    for task in stats(out):
        read, kept, dropped, rejected, sequences, tokens = rows[f"atari/{task['task']}"]
        assert (read, kept, dropped, rejected) == (task["episodes_read"], task["kept"], task["dropped"], task["rejected"])
        assert (sequences, tokens) == (task["sequences"], task["sequence_tokens"])
    assert lines[-3:] == [f"output: {out}",
                          f"next:   gato-audit {out}    # verify it, and every task's filter statistics",
                          f"        {out}/report.html    # the auditors' report (open in a browser)"]


@pytest.mark.parametrize(("args", "code", "error"), [
    (["--dataset=atari", "--taks=Pong*"], 2, "error: unknown flag --taks (did you mean --tasks?)"),
    (["--dataset=atari", "--output_dir={file}"], 1, "error: --output_dir={file}: cannot write an output directory"),
])
def test_mistakes_are_one_line_without_a_traceback(tmp_path: Path, args: list[str], code: int, error: str) -> None:
    (tmp_path / "file").write_text("in the way")
    args = [a.format(file=tmp_path / "file") for a in args]
    result = run_cli(*args, "--log_level=WARNING")
    assert result.returncode == code and result.stdout == ""
    assert result.stderr.startswith(error.format(file=tmp_path / "file")) and result.stderr.count("\n") == 1, result.stderr


@pytest.mark.parametrize(("missing", "args", "error"), [
    ("google.cloud.dataflow", ["--runner=DataflowRunner", "--project=p", "--region=r", "--temp_location=gs://b/t"],
     'error: --runner=DataflowRunner needs the dataflow extra (missing: google.cloud): '
     'pip install -e ".[dataflow]"\n'),  # `from google.cloud import dataflow` names the package
    ("gcsfs", ["--data_dir=gs://b/data", "--output_dir=gs://b/out"],
     "error: --data_dir=gs://b/data: gs:// paths need gcsfs, not installed: pip install gcsfs\n"),
])
def test_a_missing_extra_is_one_line_naming_it(missing: str, args: list[str], error: str) -> None:
    # Issue 17: a 240-line traceback ending in Beam's ImportError, never naming our extra.
    result = run_cli_without(missing, "--dataset=atari", "--log_level=WARNING", *args)
    assert (result.returncode, result.stderr) == (1, error)


def test_help_shows_the_defaults() -> None:
    result = run_cli("--help")
    assert result.returncode == 0 and "(default: 1024)" in result.stdout and "(default: 0.25)" in result.stdout


# --- A run, a rerun, and the same bytes on two workers. ---


def test_two_workers_write_the_same_bytes_and_reruns_need_overwrite(
    small_metaworld: Path, tmp_path: Path
) -> None:
    one, two = tmp_path / "one", tmp_path / "two"
    first = run_cli("--dataset=metaworld", f"--data_dir={small_metaworld}", f"--output_dir={one}",
                    "--sequence_length=256")
    assert first.returncode == 0, first.stderr[-3000:]
    second = run_cli("--dataset=metaworld", f"--data_dir={small_metaworld}", f"--output_dir={two}",
                     "--sequence_length=256", *MULTI_PROCESS)
    assert second.returncode == 0, second.stderr[-3000:]
    shards_one = {s[S_PATH]: s[S_SHA256] for s in manifest(one)["shards"]}
    assert shards_one, "the job wrote no shards"
    assert shards_one == {s[S_PATH]: s[S_SHA256] for s in manifest(two)["shards"]}
    assert manifest(one)["config_hash"] == manifest(two)["config_hash"]
    for path in shards_one:
        assert (one / path).read_bytes() == (two / path).read_bytes()

    refused = run_cli("--dataset=metaworld", f"--data_dir={small_metaworld}", f"--output_dir={one}")
    assert refused.returncode == 1 and "--overwrite" in refused.stderr

    # The audit command reads the finished output.
    audit = subprocess.run([sys.executable, "-m", "audit.cli", str(one)],
                           capture_output=True, text=True, cwd=REPO)
    assert audit.returncode == 0 and "task0-v3" in audit.stdout


# --- Bad input: rejects with reasons by default, a stop under --strict. ---


@pytest.fixture(scope="module")
def corrupted(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A dataset the registry never saw, with one episode of each kind of bad input."""
    root = tmp_path_factory.mktemp("novel")
    episodes = [fx.novel_episode(i, 6 + i) for i in range(8)]
    episodes[2]["steps"]["observation"]["joints"][3, 1] = np.nan
    episodes[4]["steps"]["action"]["gripper"][2] = 5000
    episodes[5] = fx.novel_episode(5, 8, is_last=False)
    builder = fx.write_rlds_dataset(root / "data", "robot_novel", "stack", fx.novel_features(),
                                    episodes, num_shards=2)
    last = fx.shard_files(builder)[-1]
    fx.truncate_file(last, fx.record_offsets(last)[-1] + 20)  # the last record is cut short
    (root / "spm").mkdir()
    model = train_tiny_model(root / "spm")
    return builder, model


def test_bad_input_goes_to_rejects_with_reasons(corrupted: tuple[Path, Path], tmp_path: Path) -> None:
    builder, model = corrupted
    out = tmp_path / "out"
    result = run_cli(f"--dataset=rlds:{builder}", f"--output_dir={out}",
                     f"--sentencepiece_model={model}", "--no_filter", "--sequence_length=512")
    assert result.returncode == 0, result.stderr[-3000:]
    rejects = [pq.read_table(out / r[S_PATH]).to_pylist() for r in manifest(out)["rejects"]]
    reasons = sorted(row[REASON] for rows in rejects for row in rows)
    assert reasons == sorted(["non_finite", "discrete_out_of_range", "rlds_is_last", "corrupt_record"])
    by_reason = {row[REASON]: row for rows in rejects for row in rows}
    assert by_reason["non_finite"]["episode_id"] == "2"
    assert by_reason["non_finite"]["field"] == "observation/joints"
    assert by_reason["discrete_out_of_range"]["field"] == "action/gripper"
    (task,) = stats(out)
    assert task["kept"] + task["dropped"] + task["rejected"] == task["episodes_read"] == 8
    assert task["rejected"] == 4


def test_strict_stops_naming_file_and_episode(corrupted: tuple[Path, Path], tmp_path: Path) -> None:
    builder, model = corrupted
    out = tmp_path / "out"
    result = run_cli(f"--dataset=rlds:{builder}", f"--output_dir={out}",
                     f"--sentencepiece_model={model}", "--no_filter", "--strict")
    assert result.returncode != 0
    assert "robot_novel-train.tfrecord-0000" in result.stderr
    assert "episode" in result.stderr
    assert not (out / MANIFEST_FILE).exists()


# --- Two jobs on one output directory: one writer, the other refused in one line. ---


def test_two_concurrent_jobs_on_one_output_dir_never_mix(small_metaworld: Path, tmp_path: Path) -> None:
    # Issue 13, defect 1: started together with different seeds.
    out = tmp_path / "out"
    jobs = [subprocess.Popen([sys.executable, str(REPO / "beam_runner.py"), "--dataset=metaworld",
                              f"--data_dir={small_metaworld}", f"--output_dir={out}", f"--seed={seed}",
                              "--sequence_length=256", "--log_level=WARNING"],
                             cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for seed in (0, 1)]
    results = [(job.wait(timeout=300), job.communicate()[1]) for job in jobs]
    codes = sorted(code for code, _ in results)
    assert codes == [0, 1], [err[-2000:] for _, err in results]
    winner = [seed for seed, (code, _) in zip((0, 1), results) if code == 0][0]
    (refusal,) = [err for code, err in results if code == 1]
    lines = [line for line in refusal.splitlines() if line.startswith("error:")]
    # Refused at its claim (or, had the winner finished first, at the finished output).
    assert len(lines) == 1 and "Traceback" not in refusal
    assert "is claimed by run" in lines[0] or "already holds a finished output" in lines[0]
    assert manifest(out)["config"]["seed"] == winner
    listed = {s[S_PATH]: s[S_SHA256] for s in manifest(out)["shards"]}
    on_disk = {p.relative_to(out).as_posix() for p in out.rglob("*.parquet") if "stats" not in p.parts}
    assert set(listed) == on_disk
    assert all(hashlib.sha256((out / p).read_bytes()).hexdigest() == sha for p, sha in listed.items())
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [CARD_FILE, MANIFEST_FILE, "report.html", "sequences", "stats", VIEWER_FILE])


# --- A killed job leaves no manifest; the rerun completes without partial shards. ---


def test_killed_job_leaves_no_manifest_and_rerun_completes(
    tmp_path_factory: pytest.TempPathFactory, tmp_path: Path
) -> None:
    data = metaworld_data(tmp_path_factory.mktemp("mwbig"), tasks=4, episodes=24, steps=150)
    out = tmp_path / "out"
    args = [sys.executable, str(REPO / "beam_runner.py"), "--dataset=metaworld", f"--data_dir={data}",
            f"--output_dir={out}", "--rows_per_shard=8"]
    job = subprocess.Popen(args, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                           start_new_session=True)
    try:
        deadline = time.monotonic() + 240
        while not any(out.glob("_staging/*/_tmp")) and job.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        assert job.poll() is None, "the job ended before it could be killed mid-write"
        os.killpg(job.pid, signal.SIGKILL)
    finally:
        job.wait(timeout=60)
    assert not (out / MANIFEST_FILE).exists()

    rerun = run_cli(*args[2:])
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    listed = {s[S_PATH] for s in manifest(out)["shards"]}
    on_disk = {p.relative_to(out).as_posix() for p in (out / "sequences").rglob("*.parquet")}
    assert listed == on_disk
    assert not (out / "_tmp").exists() and not (out / "_staging").exists()
    assert not (out / "_claim.json").exists()  # the killed job's stale claim was taken over, then released
    assert sum(s["rows"] for s in manifest(out)["shards"]) == sum(
        pq.ParquetFile(out / p).metadata.num_rows for p in listed
    )
