"""The machine a run shares, and whether the run was starved.

A benchmark on a shared machine measures the server only if neither the load generator
nor other processes held it back. `MachineWatch` reads the machine's busy CPU time and
load average (/proc, Linux) once a second beside the server's own figures; the summary
derives "foreign" CPU (every process that is neither the server nor the load generator)
and `verdict` says, in words, why a run's figures may say more about the machine than
about the server. A run with a verdict is flagged `saturated` in its JSON and HTML.
"""

from __future__ import annotations

import os
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["LIMITS", "MachineSample", "MachineWatch", "load_average", "verdict"]

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True, slots=True)
class MachineSample:
    at: float  # wall clock
    busy_s: float  # CPU seconds the whole machine spent busy since boot (all cores)
    load1: float  # 1-minute load average
    own_s: float  # CPU seconds of this (orchestrating) process


class MachineWatch:
    def sample(self) -> MachineSample:
        return MachineSample(time.time(), _busy_s(), os.getloadavg()[0], time.process_time())


def load_average() -> list[float]:
    return [round(value, 2) for value in os.getloadavg()]


def _busy_s() -> float:
    """user + nice + system + irq + softirq + steal, from /proc/stat's first line."""
    try:
        fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    except OSError:
        return 0.0
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(f) for f in fields[:8])
    return (user + nice + system + irq + softirq + steal) / CLOCK_TICKS


@dataclass(frozen=True, slots=True)
class Limits:
    """Past these, a run's figures are flagged."""

    loadgen_share: float = 0.9  # of the CPUs the load generator may use...
    foreign_cores: float = 0.25  # other processes' CPU...
    # ...on average over the window, or in this many of its seconds (a burst skews the
    # latency of those seconds, and a long window would hide it in the average)
    seconds: int = 3
    load_per_cpu: float = 1.0  # the 1-minute load average per CPU, at its highest


LIMITS = Limits()


def verdict(
    rows: list[dict[str, Any]],
    loadgen_cpus: int,
    machine_cpus: int,
    publishing: bool,
    limits: Limits = LIMITS,
) -> list[str]:
    """Why the measured window's figures may not be the server's (empty: no reason).

    `rows` are the timeline's rows inside the window (`loadgen_cpu`, `foreign_cpu`,
    `load1`, `deliveries`); `loadgen_cpus` is how many CPUs the load generator's
    processes could use at most (one per process, within their pinning).
    """
    reasons: list[str] = []
    busy = _busy(rows, "loadgen_cpu", limits.loadgen_share * loadgen_cpus, limits.seconds)
    if busy is not None:
        reasons.append(
            f"the load generator used {busy[0]:.2f} of its {loadgen_cpus} CPU(s) {busy[1]}:"
            " it may have set the pace, not the server (more --processes, or --cpus)"
        )
    busy = _busy(rows, "foreign_cpu", limits.foreign_cores, limits.seconds)
    if busy is not None:
        reasons.append(f"other processes used {busy[0]:.2f} cores {busy[1]}: the machine was shared")
    loads = [row["load1"] for row in rows if row.get("load1") is not None]
    if loads and max(loads) > limits.load_per_cpu * machine_cpus:
        reasons.append(f"the load average reached {max(loads):.2f} on {machine_cpus} CPUs")
    silent = sum(1 for row in rows if not row.get("deliveries"))
    if publishing and silent:
        reasons.append(f"{silent} second(s) of the window without a single delivery")
    return reasons


def _busy(rows: list[dict[str, Any]], key: str, limit: float, seconds: int) -> tuple[float, str] | None:
    """How much of `key` was used and when, if past `limit` on average or in `seconds` seconds."""
    values = [row[key] for row in rows if row.get(key) is not None]
    mean = _mean(values)
    over = [value for value in values if value >= limit]
    if mean is not None and mean >= limit:
        return mean, "on average"
    if len(over) >= seconds:
        return statistics.fmean(over), f"in {len(over)} seconds of the window"
    return None


def _mean(values: Any) -> float | None:
    present = [value for value in values if value is not None]
    return statistics.fmean(present) if present else None
