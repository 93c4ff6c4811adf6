"""The load generator and the hot path, end to end: a short `fanout` against a real server."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from liveroom.loadtest.cli import main
from support import SECRET, ServerProcess

VIEWERS, RATE, PRIORITY_RATE, PUBLISHERS = 300, 20, 2, 2
BENCH_ENV = {
    "LIVEROOM_STORE_KIND": "memory",
    "LIVEROOM_PLUGINS_BENCH_ENABLED": "true",
    "LIVEROOM_PLUGINS_DANMAKU_RATE_PER_S": "1000",
    "LIVEROOM_PLUGINS_DANMAKU_BURST": "1000",
    "LIVEROOM_DELIVERY_NORMAL_PER_S": "0",
}


@pytest.fixture(scope="module")
def bench_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    process = ServerProcess(tmp_path_factory.mktemp("bench"), env=BENCH_ENV).start()
    yield process
    process.stop()


def test_fanout_smoke(bench_server: ServerProcess, tmp_path: Path) -> None:
    assert bench_server.process is not None
    args = ["fanout", "--url", bench_server.url, "--server-pid", str(bench_server.process.pid)]
    args += ["--secret", SECRET, "--viewers", str(VIEWERS), "--rate", str(RATE), "--duration", "4"]
    args += ["--priority-rate", str(PRIORITY_RATE), "--publishers", str(PUBLISHERS), "--warmup", "1"]
    args += ["--processes", "1", "--cpus", "0-1", "--sample-every", "5", "--output", str(tmp_path), "--quiet"]
    assert main(args) == 0

    [report] = tmp_path.glob("fanout-*.json")
    result = json.loads(report.read_text())
    assert result["joined"] == VIEWERS + PUBLISHERS and result["connect_failures"] == 0
    assert result["dropped"] == 0 and result["publish_errors"] == 0
    # Every viewer gets every item: the steady window sees (close to) viewers x rate.
    expected = VIEWERS * (RATE + PRIORITY_RATE)
    # (Bounds are loose: CI machines are shared, and the window is only a few seconds.)
    assert 0.5 * expected <= result["deliveries_per_s"] <= 1.5 * expected, result["deliveries_per_s"]
    assert result["latency"]["count"] > 0 and result["latency"]["p99_ms"] < 1000, result["latency"]
    assert result["priority_latency"]["p99_ms"] < 1000, result["priority_latency"]
    assert result["priority_loss"] == 0
    assert result["server_cpu_cores"] > 0 and result["loadgen_cpu_cores"] > 0
    page = report.with_suffix(".html").read_text()
    assert page.count("<svg") >= 3 and "Where the CPU went" in page
    # The machine around the run, so that a starved run does not pass for a slow server.
    machine = result["machine"]
    assert machine["cpus"] >= 1 and len(machine["load_average_before"]) == 3, machine
    assert machine["foreign_cpu_cores"] is not None and machine["foreign_cpu_cores"] >= 0, machine
    assert isinstance(result["saturated"], bool) and isinstance(result["saturation"], list)
    assert ("Saturated run" in page) == result["saturated"]
    assert any("foreign_cpu" in row and "load1" in row for row in result["timeline"])
