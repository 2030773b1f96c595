"""What `pyproject.toml` promises the launcher of a Dataflow job: `--setup_file=./pyproject.toml`
makes Beam's stager run `python -m build --no-isolation --sdist` in the launcher's own
environment (no isolation: no PyPI), so `pip install -e ".[dataflow]"` must bring `build`
and every build requirement, and the build requirements must be able to build this
project (`license = "<SPDX expression>"` needs setuptools >= 77, PEP 639)."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from packaging.requirements import Requirement

PYPROJECT = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())
SPDX_SETUPTOOLS = "77"  # the first setuptools that reads `license` as an SPDX string


def _requirements(specs: list[str]) -> dict[str, Requirement]:
    return {Requirement(s).name.lower(): Requirement(s) for s in specs}


def test_the_build_requirements_can_read_an_spdx_license() -> None:
    assert isinstance(PYPROJECT["project"]["license"], str)
    setuptools = _requirements(PYPROJECT["build-system"]["requires"])["setuptools"]
    # Every version the bound allows is new enough: no version below 77 satisfies it.
    assert not setuptools.specifier.contains("76.1.0") and setuptools.specifier.contains(SPDX_SETUPTOOLS)


def test_the_dataflow_extra_can_build_the_package_beam_stages() -> None:
    dataflow = _requirements(PYPROJECT["project"]["optional-dependencies"]["dataflow"])
    assert "build" in dataflow
    for name, needed in _requirements(PYPROJECT["build-system"]["requires"]).items():
        assert name in dataflow, f"build requirement {needed} is missing from the dataflow extra"
        assert str(dataflow[name].specifier) == str(needed.specifier), name


def test_workers_get_gcs_support_from_the_package_itself() -> None:
    # Beam's stager pip-installs the staged sdist on each worker without extras, and workers
    # read and write gs:// through fsspec, which needs gcsfs (Beam's SDK image does not have it).
    core = _requirements(PYPROJECT["project"]["dependencies"])
    assert "gcsfs" in core and "fsspec" in core


def test_the_worker_image_is_beams_and_holds_every_product_package() -> None:
    """`Dockerfile` (the custom SDK container): Beam's image of the version we depend on, and
    every product package copied in and let through `.dockerignore`."""
    from tests.test_layering import PRODUCT_PACKAGES, PRODUCT_TOP_LEVEL

    root = Path(__file__).resolve().parents[1]
    dockerfile = (root / "Dockerfile").read_text()
    beam = _requirements(PYPROJECT["project"]["dependencies"])["apache-beam"]
    (image,) = re.findall(r"^FROM (\S+)$", dockerfile, re.M)
    assert image.startswith("apache/beam_python3.11_sdk:") and beam.specifier.contains(image.rsplit(":", 1)[1])
    copied = set(re.findall(r"^COPY (\S+)/ \1/$", dockerfile, re.M))
    allowed = {line.strip("!/") for line in (root / ".dockerignore").read_text().splitlines() if line.startswith("!")}
    assert set(PRODUCT_PACKAGES) <= copied and set(PRODUCT_PACKAGES) | set(PRODUCT_TOP_LEVEL) <= allowed


def test_ci_runs_the_readmes_test_command_with_the_extras_the_tests_need() -> None:
    root = Path(__file__).resolve().parents[1]
    readme = (root / "README.md").read_text()
    (command,) = re.findall(r"^python3 -m venv \.venv .*pytest -n 2$", readme, re.M)
    assert command in (root / ".ci" / "run").read_text().splitlines()
    (extras,) = re.findall(r'pip install -q -e "\.\[([a-z,]+)\]"', command)
    # test: pytest and the storage emulators; dataflow: Beam's GCP support and `build`
    # (tests/test_cli_dataflow.py); torch: the reader's adapter.
    assert {"test", "dataflow", "torch"} <= set(extras.split(","))


def test_tensorflow_is_an_extra_for_writing_tfds_datasets_only() -> None:
    # Issue 17: TensorFlow (1.25 GB) was a core dependency though the job never imports it.
    core = _requirements(PYPROJECT["project"]["dependencies"])
    assert not [name for name in core if name.startswith("tensorflow") and name != "tensorflow-datasets"]
    extras = PYPROJECT["project"]["optional-dependencies"]
    assert "tensorflow-cpu" in _requirements(extras["tfds-write"])
    for needs_writers in ("test", "samples"):  # fixtures and samples are written in the TFDS format
        assert "gato-data[tfds-write]" in extras[needs_writers], needs_writers


def test_every_apache_beam_requirement_is_the_tested_release() -> None:
    """Core and extras name one Beam release line: a fresh install took 2.78, whose type
    inference refuses our stages, and the Dask runner subclass is written against 2.77."""
    from packaging.specifiers import SpecifierSet

    optional = PYPROJECT["project"]["optional-dependencies"]
    lines = [*PYPROJECT["project"]["dependencies"], *(r for extra in optional.values() for r in extra)]
    beams = [Requirement(line) for line in lines if line.startswith("apache-beam")]
    assert len(beams) == 3  # core, dask, dataflow
    for requirement in beams:
        assert requirement.specifier == SpecifierSet(">=2.77,<2.78"), str(requirement)
