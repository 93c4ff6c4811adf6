"""`liveroom-loadtest compare`: the same fanout run against each server, back to back."""

from __future__ import annotations

import dataclasses
import sys
from typing import Any

from .run import run_scenario
from .scenarios import Settings

__all__ = ["run_compare"]

COLUMNS = (
    ("deliveries/s", "deliveries_per_s", "{:,.0f}"),
    ("server cores", "server_cpu_cores", "{:.2f}"),
    ("µs CPU/delivery", "server_us_per_delivery", "{:.2f}"),
    ("p50 ms", "latency.p50_ms", "{:.0f}"),
    ("p99 ms", "latency.p99_ms", "{:.0f}"),
    ("peak RSS MB", "server_rss_peak_mb", "{:.0f}"),
    ("loadgen cores", "loadgen_cpu_cores", "{:.2f}"),
)


def run_compare(settings: Settings, servers: list[str]) -> dict[str, Any]:
    runs = []
    for server in servers:
        sys.stderr.write(f"\n== {server} ==\n")
        runs.append(run_scenario(dataclasses.replace(settings, server=server, url="", server_pid=0)))
    table = format_table(runs)
    print(table)
    return {"scenario": "compare", "table": table, "runs": runs}


def format_table(runs: list[dict[str, Any]]) -> str:
    base = runs[0]
    head = ["server", *(name for name, _, _ in COLUMNS), f"µs/delivery vs {base['server']}"]
    rows = [head]
    for run in runs:
        row = [str(run["server"])]
        for _, key, fmt in COLUMNS:
            value = _get(run, key)
            row.append("-" if value is None else fmt.format(value))
        mine, theirs = _get(base, "server_us_per_delivery"), _get(run, "server_us_per_delivery")
        row.append(f"{theirs / mine:.1f}x" if mine and theirs else "-")
        rows.append(row)
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    return "\n".join("  ".join(cell.rjust(w) for cell, w in zip(r, widths, strict=True)) for r in rows)


def _get(run: dict[str, Any], dotted: str) -> Any:
    value: Any = run
    for part in dotted.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value
