"""The load generator and the hot path, end to end: a short `fanout` against a real server."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

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


def fanout(
    server: ServerProcess, output: Path, viewers: int, duration_s: float, warmup_s: float
) -> dict[str, Any]:
    """One `liveroom-loadtest fanout` run against the server; its JSON report."""
    assert server.process is not None
    args = ["fanout", "--url", server.url, "--server-pid", str(server.process.pid)]
    args += ["--secret", SECRET, "--viewers", str(viewers), "--rate", str(RATE)]
    args += ["--duration", str(duration_s), "--warmup", str(warmup_s)]
    args += ["--priority-rate", str(PRIORITY_RATE), "--publishers", str(PUBLISHERS)]
    args += ["--processes", "1", "--cpus", "0-1", "--sample-every", "5", "--output", str(output), "--quiet"]
    assert main(args) == 0
    [report] = output.glob("fanout-*.json")
    result: dict[str, Any] = json.loads(report.read_text())
    result["page"] = report.with_suffix(".html").read_text()
    return result


def test_fanout_smoke(bench_server: ServerProcess, tmp_path: Path) -> None:
    """The tool works end to end: everyone joins, nothing is lost, the report is complete.
    (Rates and latencies are the benchmark's, below: a loaded machine moves them.)"""
    result = fanout(bench_server, tmp_path, 100, duration_s=3, warmup_s=0.5)
    assert result["joined"] == 100 + PUBLISHERS and result["connect_failures"] == 0
    assert result["dropped"] == 0 and result["publish_errors"] == 0
    assert result["deliveries_per_s"] > 0 and result["latency"]["count"] > 0
    assert result["priority_loss"] == 0
    assert result["server_cpu_cores"] > 0 and result["loadgen_cpu_cores"] > 0
    page = result["page"]
    assert page.count("<svg") >= 3 and "Where the CPU went" in page
    # The machine around the run, so that a starved run does not pass for a slow server.
    machine = result["machine"]
    assert machine["cpus"] >= 1 and len(machine["load_average_before"]) == 3, machine
    assert machine["foreign_cpu_cores"] is not None and machine["foreign_cpu_cores"] >= 0, machine
    assert isinstance(result["saturated"], bool) and isinstance(result["saturation"], list)
    assert ("Saturated run" in page) == result["saturated"]
    assert any("foreign_cpu" in row and "load1" in row for row in result["timeline"])


@pytest.mark.bench
def test_fanout_delivers_viewers_times_rate_in_time(bench_server: ServerProcess, tmp_path: Path) -> None:
    result = fanout(bench_server, tmp_path, VIEWERS, duration_s=4, warmup_s=1)
    # Every viewer gets every item: the steady window sees (close to) viewers x rate.
    expected = VIEWERS * (RATE + PRIORITY_RATE)
    # (Bounds are loose: CI machines are shared, and the window is only a few seconds.)
    assert 0.5 * expected <= result["deliveries_per_s"] <= 1.5 * expected, result["deliveries_per_s"]
    assert result["latency"]["p99_ms"] < 1000, result["latency"]
    assert result["priority_latency"]["p99_ms"] < 1000, result["priority_latency"]


def test_fanout_smoke_over_two_workers(tmp_path: Path) -> None:
    """`liveroom serve --workers 2`: nothing lost, and the CPU reported per worker process."""
    env = {**BENCH_ENV, "LIVEROOM_SERVER_WORKERS": "2", "LIVEROOM_MEDIA_ENABLED": "false"}
    server = ServerProcess(tmp_path / "server", env=env).launch()
    try:
        wait_ready(server)
        result = fanout(server, tmp_path, 100, duration_s=3, warmup_s=0.5)
    finally:
        server.stop()
    assert result["joined"] == 100 + PUBLISHERS and result["connect_failures"] == 0
    assert result["dropped"] == 0 and result["publish_errors"] == 0 and result["priority_loss"] == 0
    assert {"worker 0", "worker 1"} <= set(result["server_cpu_cores_by_process"]), result


def wait_ready(server: ServerProcess) -> None:
    """Two workers boot side by side: a longer wait than one server's."""
    deadline = time.monotonic() + 120
    while True:
        try:
            server.wait_ready()
            return
        except RuntimeError:
            assert server.process is not None and server.process.poll() is None, server.log()
            assert time.monotonic() < deadline, server.log()


def test_supervisor_bench_smoke(tmp_path: Path) -> None:
    """`supervisor_bench` (issue 23's model): both phases run over the real IPC, and every
    publication reaches both workers."""
    import subprocess
    import sys

    args = ["--workers", "2", "--seconds", "0.5", "--output", str(tmp_path)]
    done = subprocess.run(
        [sys.executable, "-m", "liveroom.loadtest.supervisor_bench", *args], capture_output=True, timeout=120
    )
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    [report] = tmp_path.glob("supervisor-*.json")
    result = json.loads(report.read_text())
    assert [p["phase"] for p in result["phases"]] == ["publish", "put_record"]
    assert all(p["operations"] > 0 and p["server_us_per_operation"] > 0 for p in result["phases"])
