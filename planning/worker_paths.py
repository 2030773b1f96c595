"""The paths a job's workers read or write, and the refusal when one is on the launcher's disk.

A runner other than the local one (Dataflow, ...) runs the stages on machines that cannot
see the launcher's files, so every path a worker opens must be on shared storage (gs://,
s3://, ...): the data dir (or the `rlds:` dir), the output dir and the text model. A local
path there would fail on every worker, minutes after submission, or write output nobody
finds; `refuse_launcher_paths` fails at start-up instead, in one line naming each flag and
path. `--rlds_spec` is not among them: only the launcher reads it (planning), and workers
get what it says inside the plan. The bundled text model (`bundled:<file>`) is not a path:
each worker loads it from its own installed package (`transforms/text.py`).

`require_storage` checks, for any runner, that fsspec can open every such path (and
`--rlds_spec`) here: a protocol whose library is missing is one line naming what to install.
"""

from __future__ import annotations

import dataclasses

import fsspec
import fsspec.utils

from planning.options import SAMPLES_DATA_DIR, JobOptions
from schemas.datasets import RLDS_PREFIX
from transforms.text import BUNDLED_PREFIX

# The library that gives fsspec a protocol, where fsspec's own hint does not say how to install it.
PROTOCOL_PACKAGES = {"gs": "gcsfs", "gcs": "gcsfs", "s3": "s3fs", "s3a": "s3fs", "az": "adlfs", "abfs": "adlfs"}
# fsspec protocols whose files live in the launcher's own process or disk.
LAUNCHER_PROTOCOLS = frozenset({"file", "local", "memory"})


@dataclasses.dataclass(frozen=True)
class WorkerPath:
    """A path workers open, as a flag gives it: `<flag>=<prefix><path>`."""

    flag: str
    path: str
    prefix: str = ""  # before the path in the flag's value ("rlds:" for --dataset)
    note: str = ""  # where a path the user did not give comes from

    def shown(self) -> str:
        return f"{self.flag}={self.prefix}{self.path}{self.note}"

    def example(self) -> str:
        return f"{self.flag}={self.prefix}gs://MY_BUCKET/..."


def is_launcher_path(path: str) -> bool:
    """Whether `path` names a file only the launcher can see (a local path or memory://).
    In a chained URL (`simplecache::gs://b/x`) the last link holds the files."""
    return fsspec.utils.get_protocol(path.rsplit("::", 1)[-1]) in LAUNCHER_PROTOCOLS


def worker_paths(options: JobOptions) -> list[WorkerPath]:
    """Every path the job's workers open, in flag order (data, output, text model)."""
    if options.dataset.startswith(RLDS_PREFIX):  # data_dir is ignored: the dir is in the name
        data = WorkerPath("--dataset", options.dataset.removeprefix(RLDS_PREFIX), prefix=RLDS_PREFIX)
    elif options.data_dir == SAMPLES_DATA_DIR:
        data = WorkerPath("--data_dir", options.data_dir, note=" (not given: the bundled samples)")
    else:
        data = WorkerPath("--data_dir", options.data_dir)
    model = options.sentencepiece_model
    text = [WorkerPath("--sentencepiece_model", model)] if model and not model.startswith(BUNDLED_PREFIX) else []
    return [data, WorkerPath("--output_dir", options.output_dir), *text]


def refuse_launcher_paths(options: JobOptions, *, runner: str) -> None:
    """Raises ValueError (one line) naming every worker path of `options` that is on the
    launcher, for a job that runs on `runner`'s workers."""
    local = [p for p in worker_paths(options) if is_launcher_path(p.path)]
    if local:
        raise ValueError(
            f"{runner} runs the job on workers that cannot see this machine's disk, but "
            f"{'; '.join(p.shown() for p in local)} {'is' if len(local) == 1 else 'are'} on it: "
            f"give paths on shared storage, e.g. {local[0].example()} "
            "(copy local input there first: gcloud storage cp -r DIR gs://MY_BUCKET/...)"
        )


def require_storage(options: JobOptions) -> None:
    """Raises ValueError (one line) naming the library to install for the first path of
    `options` whose fsspec protocol is not installed."""
    spec = [WorkerPath("--rlds_spec", options.rlds_spec)] if options.rlds_spec else []
    for path in [*worker_paths(options), *spec]:
        protocol = fsspec.utils.get_protocol(path.path.rsplit("::", 1)[-1])
        try:
            fsspec.get_filesystem_class(protocol)
        except ImportError as e:
            package = PROTOCOL_PACKAGES.get(protocol)
            fix = f"pip install {package}" if package else str(e)
            raise ValueError(f"{path.flag}={path.prefix}{path.path}: {protocol}:// paths need "
                             f"{package or 'a library fsspec names'}, not installed: {fix}") from e
        except ValueError:  # not a protocol fsspec knows: opening the path will say so
            continue
