"""Package layering and the shape of the tree: what each product package may import, one
test module per product module, no module or function too long.

Product packages: `schemas` (constants, registry; imports nothing of ours), `transforms`
(pure numpy), `formats` (on-disk formats, no Beam), `planning` (start-up, no Beam),
`audit` (report and CLI, no Beam), `pipeline` (Beam stages only) and `reader` (the
trainer's streaming reader: no Beam, never `pipeline`), plus the top-level `beam_runner.py`.
`samples/` (sample recorders, our TFDS builders) is not a product package.

`transforms` and `reader` are imported in a fresh interpreter and must not pull in Beam,
TensorFlow or torch; `formats`, `planning` and `audit` must not pull in Beam. The static
rules read every module's imports (also those inside functions: a lazy import is still a
dependency) with `ast`, so they hold whatever a test happens to import.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

HEAVY = ("apache_beam", "tensorflow", "tensorflow_datasets", "torch")
REPO = Path(__file__).resolve().parents[1]
PRODUCT_PACKAGES = ("schemas", "transforms", "formats", "planning", "audit", "pipeline", "reader")
PRODUCT_TOP_LEVEL = ("beam_runner.py",)
OURS = (*PRODUCT_PACKAGES, "samples", "benchmarks", "beam_runner")
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 80
# Module names two product folders may share because one module only re-exports the other
# ({name: the folders}). None today.
SHARED_NAME_ALLOWED: dict[str, frozenset[str]] = {}


def _import_every_module_code(package: str) -> str:
    """Python code that imports every module of `package` (the optional PyTorch adapter
    excepted) and prints the sorted HEAVY modules then loaded, as JSON."""
    return (
        "import importlib, json, pkgutil, sys\n"
        f"pkg = importlib.import_module({package!r})\n"
        "for m in pkgutil.walk_packages(pkg.__path__, pkg.__name__ + '.'):\n"
        # the optional PyTorch adapter is the one module allowed to import torch
        "    if not m.name.endswith('.torch'):\n"
        "        importlib.import_module(m.name)\n"
        f"print(json.dumps(sorted(h for h in {HEAVY!r} if h in sys.modules)))\n"
    )


def _heavy_imports_of(package: str) -> list[str]:
    out = subprocess.run(
        [sys.executable, "-c", _import_every_module_code(package)], capture_output=True, text=True, check=True, cwd=REPO
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("package", ["transforms", "schemas", "reader"])
def test_package_imports_no_heavy_framework(package: str) -> None:
    assert _heavy_imports_of(package) == []


@pytest.mark.parametrize("package", ["formats", "planning", "audit"])
def test_package_imports_no_beam(package: str) -> None:
    assert "apache_beam" not in _heavy_imports_of(package)


def test_the_job_never_imports_tensorflow(tmp_path: object) -> None:
    """Planning, building and running the whole job (in_memory: every stage runs in this
    interpreter) on the Atari samples reads TFDS shards without TensorFlow, so no worker
    pays its import (~3 s, ~500 MB; formats/tfrecord.py)."""
    code = (
        "import json, sys\n"
        "from pipeline.job import run_job\n"
        "from planning.options import JobOptions\n"
        f"run_job(JobOptions(dataset='atari', output_dir={str(tmp_path)!r}))\n"
        "print(json.dumps('tensorflow' in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO)
    assert json.loads(out.stdout.strip().splitlines()[-1]) is False


# --- Static rules: the product modules' own source ----------------------------------------
# Each checker takes the tree's root (the repository by default) so that
# `test_every_static_rule_can_fail` can run it on a small tree that breaks every rule.


def product_modules(root: Path = REPO) -> list[Path]:
    """Every product module (package modules, `__init__.py` included, and the top-level ones)."""
    modules = [p for package in PRODUCT_PACKAGES for p in sorted((root / package).rglob("*.py"))]
    return modules + [root / name for name in PRODUCT_TOP_LEVEL if (root / name).exists()]


def _module_name(path: Path, root: Path) -> str:
    parts = path.relative_to(root).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path, root: Path = REPO) -> list[tuple[int, str]]:
    """(line, absolute module name) of every import statement in the file, at any depth."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    name = _module_name(path, root)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against this module's package
                parts = package.split(".") if package else []
                base = parts[: len(parts) - node.level + 1]
                found.append((node.lineno, ".".join([*base, node.module] if node.module else base)))
            else:
                found.append((node.lineno, node.module or ""))
    return found


def _top(name: str) -> str:
    return name.split(".", 1)[0]


# package -> the packages of ours it must never import
FORBIDDEN_IMPORTS: dict[str, frozenset[str]] = {
    "schemas": frozenset(OURS) - {"schemas"},
    "transforms": frozenset({"formats", "planning", "audit", "pipeline", "reader"}),
    "formats": frozenset({"planning", "audit", "pipeline", "reader"}),
    "planning": frozenset({"pipeline"}),
    "audit": frozenset({"pipeline"}),
    "reader": frozenset({"pipeline"}),
}


def forbidden_imports(package: str, root: Path = REPO) -> list[str]:
    """`path:line imports name` for every import of `package`'s modules that it must not make."""
    problems = []
    for path in sorted((root / package).rglob("*.py")):
        for line, name in imports_of(path, root):
            if _top(name) in FORBIDDEN_IMPORTS[package]:
                problems.append(f"{path.relative_to(root).as_posix()}:{line} imports {name}")
    return problems


@pytest.mark.parametrize("package", sorted(FORBIDDEN_IMPORTS))
def test_packages_import_only_the_layers_below_them(package: str) -> None:
    assert forbidden_imports(package) == []


def beamless_pipeline_modules(root: Path = REPO) -> list[str]:
    """pipeline/ modules (not `__init__.py`) that never import apache_beam."""
    return [
        path.relative_to(root).as_posix()
        for path in sorted((root / "pipeline").rglob("*.py"))
        if path.name != "__init__.py" and not any(_top(n) == "apache_beam" for _, n in imports_of(path, root))
    ]


def test_pipeline_holds_beam_code_only() -> None:
    """Code without Beam belongs in schemas/, transforms/, formats/, planning/ or audit/."""
    assert beamless_pipeline_modules() == []


def shared_module_names(root: Path = REPO) -> dict[str, list[str]]:
    """{module name: its folders} for names of product modules found in several folders."""
    folders: dict[str, set[str]] = {}
    for path in product_modules(root):
        if path.name != "__init__.py":
            folders.setdefault(path.stem, set()).add(path.parent.relative_to(root).as_posix())
    return {
        name: sorted(where)
        for name, where in sorted(folders.items())
        if len(where) > 1 and frozenset(where) != SHARED_NAME_ALLOWED.get(name)
    }


def test_no_module_name_is_shared_by_two_product_folders() -> None:
    assert shared_module_names() == {}


def too_long(root: Path = REPO) -> list[str]:
    """Product modules over MAX_MODULE_LINES lines and functions over MAX_FUNCTION_LINES."""
    problems = []
    for path in product_modules(root):
        text = path.read_text(encoding="utf-8")
        where = path.relative_to(root).as_posix()
        lines = len(text.splitlines())
        if lines > MAX_MODULE_LINES:
            problems.append(f"{where}: {lines} lines")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = node.end_lineno - node.lineno + 1
                if length > MAX_FUNCTION_LINES:
                    problems.append(f"{where}:{node.lineno} {node.name}(): {length} lines")
    return problems


def test_no_module_or_function_is_too_long() -> None:
    assert too_long() == []


def expected_test_module(path: Path, root: Path = REPO) -> Path:
    """tests/<folder>/test_<module>.py for <folder>/<module>.py; tests/test_<m>.py at the top."""
    relative = path.relative_to(root)
    return root / "tests" / relative.parent / f"test_{relative.name}"


def untested_modules(root: Path = REPO) -> list[str]:
    return [
        f"{p.relative_to(root).as_posix()} (no {expected_test_module(p, root).relative_to(root).as_posix()})"
        for p in product_modules(root)
        if p.name != "__init__.py" and not expected_test_module(p, root).exists()
    ]


def test_every_product_module_has_its_test_module() -> None:
    assert untested_modules() == []


def _write(root: Path, relative: str, text: str = "") -> None:
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_every_static_rule_can_fail(tmp_path: Path) -> None:
    """The checkers on a small tree that breaks each rule once, and on one that breaks none."""
    long_function = "def f():\n" + "    x = 1\n" * MAX_FUNCTION_LINES
    _write(tmp_path, "schemas/__init__.py")
    _write(tmp_path, "schemas/vocab.py", "import numpy\n\ndef f():\n    from transforms import hashing\n")
    _write(tmp_path, "transforms/__init__.py")
    _write(tmp_path, "transforms/hashing.py", "from formats.files import output_filesystem\n")
    _write(tmp_path, "formats/__init__.py")
    _write(tmp_path, "formats/files.py", "from ..planning import plan\nfrom . import paths\n")
    _write(tmp_path, "planning/__init__.py", "from pipeline import job\n")
    _write(tmp_path, "audit/__init__.py")
    _write(tmp_path, "audit/cli.py", "import pipeline.job as job\n")
    _write(tmp_path, "reader/__init__.py")
    _write(tmp_path, "reader/hashing.py", "import numpy as np\n" + long_function)
    _write(tmp_path, "reader/stream.py", "import numpy\n" * (MAX_MODULE_LINES + 1))
    _write(tmp_path, "pipeline/__init__.py")
    _write(tmp_path, "pipeline/job.py", "def run():\n    import apache_beam as beam\n")
    _write(tmp_path, "pipeline/helpers.py", "import numpy\n")
    _write(tmp_path, "beam_runner.py", "import pipeline.job\n")
    _write(tmp_path, "tests/pipeline/test_job.py")
    _write(tmp_path, "tests/test_beam_runner.py")
    assert imports_of(tmp_path / "formats/files.py", tmp_path) == [(1, "planning"), (2, "formats")]
    assert {p: forbidden_imports(p, tmp_path) for p in sorted(FORBIDDEN_IMPORTS)} == {
        "audit": ["audit/cli.py:1 imports pipeline.job"],
        "formats": ["formats/files.py:1 imports planning"],
        "planning": ["planning/__init__.py:1 imports pipeline"],
        "reader": [],
        "schemas": ["schemas/vocab.py:4 imports transforms"],
        "transforms": ["transforms/hashing.py:1 imports formats.files"],
    }
    assert beamless_pipeline_modules(tmp_path) == ["pipeline/helpers.py"]  # a lazy import counts
    assert shared_module_names(tmp_path) == {"hashing": ["reader", "transforms"]}
    assert too_long(tmp_path) == [
        f"reader/hashing.py:2 f(): {MAX_FUNCTION_LINES + 1} lines",
        f"reader/stream.py: {MAX_MODULE_LINES + 1} lines",
    ]
    assert untested_modules(tmp_path) == [
        f"{m} (no tests/{m.rpartition('/')[0]}/test_{m.rpartition('/')[2]})"
        for m in ["schemas/vocab.py", "transforms/hashing.py", "formats/files.py", "audit/cli.py",
                  "pipeline/helpers.py", "reader/hashing.py", "reader/stream.py"]
    ]
    clean = tmp_path / "clean"
    _write(clean, "schemas/vocab.py", "import numpy\n")
    _write(clean, "transforms/hashing.py", "from schemas.vocab import GATO\n")
    _write(clean, "pipeline/job.py", "import apache_beam\nfrom formats import files\n")
    for test in ("schemas/test_vocab.py", "transforms/test_hashing.py", "pipeline/test_job.py"):
        _write(clean, f"tests/{test}")
    assert all(forbidden_imports(p, clean) == [] for p in FORBIDDEN_IMPORTS)
    assert (beamless_pipeline_modules(clean), shared_module_names(clean), too_long(clean), untested_modules(clean)) == (
        [], {}, [], [])
