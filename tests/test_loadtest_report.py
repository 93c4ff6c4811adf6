"""The load tool as a new user meets it: what it says without its extra, its help, and a
report that says first whether the run can be trusted (no server needed)."""

from __future__ import annotations

import subprocess
import sys

from liveroom.loadtest.machine import verdict
from liveroom.loadtest.report import render_report


def quiet_second(t: int, **changes: float) -> dict[str, float]:
    return {"t": t, "deliveries": 1000, "loadgen_cpu": 0.3, "foreign_cpu": 0.02, "load1": 0.8, **changes}


def test_a_quiet_run_has_no_verdict() -> None:
    rows = [quiet_second(t) for t in range(10)]
    assert verdict(rows, loadgen_cpus=1, machine_cpus=2, publishing=True) == []


def test_a_starved_run_says_why() -> None:
    # The run of the issue: a busy machine, a pegged load generator, seconds without deliveries.
    rows = [quiet_second(t, loadgen_cpu=0.97, foreign_cpu=0.7, load1=3.5) for t in range(10)]
    rows += [quiet_second(t, deliveries=0) for t in range(10, 19)]
    reasons = verdict(rows, loadgen_cpus=1, machine_cpus=2, publishing=True)
    assert len(reasons) == 4, reasons
    assert reasons[0].startswith("the load generator used 0.97 of its 1 CPU(s) in 10 seconds of the window:")
    assert reasons[1] == "other processes used 0.38 cores on average: the machine was shared"
    assert reasons[2] == "the load average reached 3.50 on 2 CPUs"
    assert reasons[3] == "9 second(s) of the window without a single delivery"
    # Nothing published (idle, join-storm): no deliveries is what is expected.
    assert verdict([quiet_second(0, deliveries=0)], 1, 2, publishing=False) == []


def result(saturation: list[str]) -> dict[str, object]:
    timeline = [
        {**quiet_second(t), "connected": 100, "p50_ms": 5.0, "p99_ms": 9.0, "server_cpu": 0.5,
         "server_kernel_cpu": 0.2, "machine_cpu": 0.9, "server_rss_mb": 80.0}
        for t in range(-2, 12)
    ]  # fmt: skip
    return {
        "scenario": "fanout",
        "server": "liveroom",
        "url": "http://127.0.0.1:1",
        "settings": {"viewers": 100, "rate": 10.0, "duration_s": 8.0, "processes": 1},
        "deliveries_per_s": 1000,
        "latency": {"p50_ms": 5.0, "p99_ms": 9.0, "count": 10},
        "priority_latency": {"count": 0},
        "server_cpu_cores": 0.5,
        "machine": {"cpus": 2, "load_average_before": [0.5, 0.4, 0.3], "load_average_after": [0.6, 0.4, 0.3],
                    "foreign_cpu_cores": 0.02, "loadgen_cpus": 1},
        "saturated": bool(saturation),
        "saturation": saturation,
        "window": {"from_t": 2, "to_t": 9},
        "timeline": timeline,
    }  # fmt: skip


def test_the_report_puts_the_verdict_and_summary_before_the_charts() -> None:
    page = render_report(result([]))
    order = [
        page.index(text) for text in ("A quiet run", "<h2>Summary", "<h2>Over time", "<svg", "<h2>Details")
    ]
    assert order == sorted(order)
    for title in (
        "Throughput",
        "Latency, publish to receive",
        "Where the CPU went",
        "Load average (1 minute)",
    ):
        assert f"<h3>{title}</h3>" in page
    assert "server, kernel" in page and "other processes" in page  # the server's CPU split
    assert 'fill="#f0f4fa"' in page  # the measured window, shaded
    assert "<script" not in page


def test_a_saturated_run_is_flagged_at_the_top() -> None:
    page = render_report(result(["the load average reached 3.50 on 2 CPUs"]))
    assert page.index("Saturated run") < page.index("<h2>Summary")
    assert "the load average reached 3.50 on 2 CPUs" in page


def test_without_its_extra_the_load_tool_says_how_to_install_it() -> None:
    for args in (["fanout", "--viewers", "1"], ["flash-sale"]):
        run = subprocess.run(
            [sys.executable, "-c", "import sys; sys.modules['picows'] = None; "
             "from liveroom.loadtest.cli import main; sys.exit(main(sys.argv[1:]))", *args],
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        assert run.returncode == 2, run.stderr
        assert "pip install -e '.[loadtest]'" in run.stderr and "Traceback" not in run.stderr


def test_the_help_names_every_scenario() -> None:
    run = subprocess.run(
        [sys.executable, "-m", "liveroom.loadtest", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert run.returncode == 0
    for name in (
        "fanout",
        "join-storm",
        "idle",
        "slow-consumers",
        "big-room",
        "churn",
        "compare",
        "flash-sale",
    ):
        assert name in run.stdout
