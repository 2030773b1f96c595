"""Prints the fault suite's verdict (tests/faults/) at the end of a run: one line per fault, then
`faults: N/M held`. Here, not in tests/faults/: with pytest-xdist the controller loads only
this top-level conftest, and it sees every worker's reports.

Hypothesis runs without its per-example deadline: the engine and emulator tests load both
cores, and a property that held is no less true for taking 270 ms once (deadline flakes
were seen on a loaded machine). Examples and shrinking are unchanged.
"""

from __future__ import annotations

from typing import Any

from hypothesis import settings

settings.register_profile("gato", deadline=None)
settings.load_profile("gato")

_PREFIX = "tests/faults/test_faults.py::test_fault["


def pytest_terminal_summary(terminalreporter: Any) -> None:
    outcomes: dict[str, str] = {}
    for status in ("passed", "failed", "error"):
        for report in terminalreporter.stats.get(status, []):
            nodeid = getattr(report, "nodeid", "")
            if nodeid.startswith(_PREFIX) and getattr(report, "when", "call") in ("call", "setup"):
                name = nodeid[len(_PREFIX):-1]
                if status != "passed" or name not in outcomes:
                    outcomes[name] = "held" if status == "passed" else "BROKEN"
    if not outcomes:
        return
    terminalreporter.section("fault suite")
    for name, outcome in outcomes.items():
        terminalreporter.write_line(f"fault {name}: {outcome}")
    held = sum(1 for outcome in outcomes.values() if outcome == "held")
    terminalreporter.write_line(f"faults: {held}/{len(outcomes)} held")
