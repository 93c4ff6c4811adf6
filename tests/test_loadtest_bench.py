"""Benchmarks (`pytest -m bench`): target 1 of the fan-out issue as a regression check.

Left out of the default run: they need both cores for a minute. The figures and the
full set of commands are in docs/benchmarks.md.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from liveroom.loadtest.cli import main

pytestmark = pytest.mark.bench


@pytest.fixture(autouse=True)
def only_when_asked(request: pytest.FixtureRequest) -> None:
    if "bench" not in (request.config.getoption("markexpr") or ""):
        pytest.skip("a benchmark: run with -m bench")


@pytest.mark.timeout(300)
def test_fanout_costs_at_most_1_5_us_per_delivery(tmp_path: Path) -> None:
    args = ["fanout", "--viewers", "5000", "--rate", "100", "--duration", "15", "--processes", "2"]
    args += ["--connect-rate", "0", "--concurrency", "1000", "--output", str(tmp_path), "--quiet"]
    assert main(args) == 0
    [report] = tmp_path.glob("fanout-*.json")
    result = json.loads(report.read_text())
    assert result["connect_failures"] == 0 and result["dropped"] == 0
    assert result["deliveries_per_s"] >= 0.8 * 5000 * 100
    assert result["server_us_per_delivery"] <= 1.5, result["server_us_per_delivery"]
