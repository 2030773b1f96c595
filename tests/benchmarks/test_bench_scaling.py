"""benchmarks/bench_scaling.py: the slope between two runs and the projection's arithmetic."""

from __future__ import annotations

import pytest

from benchmarks import bench_scaling as bs


def test_the_marginal_cost_is_the_slope_so_the_fixed_cost_drops_out() -> None:
    # 2 s fixed + 10 us per timestep; 5 written tokens per timestep.
    small = {"cpu_seconds": 2 + 1e5 * 10e-6, "written_tokens": 5e5, "output_bytes": 1e6}
    large = {"cpu_seconds": 2 + 8e5 * 10e-6, "written_tokens": 40e5, "output_bytes": 8e6, "input_bytes": 16e8}
    cost = bs.marginal(small, large, 100_000, 800_000)
    assert cost["us_per_timestep"] == pytest.approx(10.0)
    assert cost["us_per_token"] == pytest.approx(2.0)
    assert cost["tokens_per_timestep"] == pytest.approx(5.0)
    assert cost["fixed_cpu_seconds"] == pytest.approx(2.0)
    assert cost["input_bytes_per_timestep"] == pytest.approx(2000.0)
    assert cost["output_bytes_per_token"] == pytest.approx(2.0)


def test_the_projection_bills_the_work_over_the_efficiency_and_prices_it() -> None:
    work = bs.EFFICIENCY * bs.VCPUS_PER_WORKER * bs.WALL_HOURS * 10  # ten workers' worth
    billed = work / bs.EFFICIENCY
    cost = billed * bs.PRICE_VCPU_HOUR + billed / bs.VCPUS_PER_WORKER * bs.GB_PER_WORKER * bs.PRICE_GB_HOUR
    assert bs.projection(work) == f"{billed:,.0f} vCPU-h billed, 10 workers x 24 h, ~${cost:,.0f}"


@pytest.mark.parametrize(("workers_worth", "shown"), [(1.4, "2 workers"), (0.3, "1 worker"), (2.0, "2 workers")])
def test_the_projection_rounds_workers_up(workers_worth: float, shown: str) -> None:
    """A fraction of a worker more than a whole number needs one more worker to finish in
    `WALL_HOURS`; rounding down would promise a run that cannot end in time."""
    work = bs.EFFICIENCY * bs.VCPUS_PER_WORKER * bs.WALL_HOURS * workers_worth
    assert f", {shown} x 24 h," in bs.projection(work)
