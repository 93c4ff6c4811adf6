"""From a run's per-second recording to the figures a reader wants, as one JSON object."""

from __future__ import annotations

import os
import statistics
from typing import TYPE_CHECKING, Any

from .machine import verdict
from .profile import summarize_profile
from .stats import Snapshot

if TYPE_CHECKING:
    from .run import Recording

__all__ = ["summarize"]


def summarize(rec: Recording, url: str, server_kind: str) -> dict[str, Any]:
    s = rec.settings
    start = rec.publish_from + s.warmup_s if (s.rate or s.priority_rate) else rec.publish_from
    end = rec.publish_until
    steady, seconds = _window(rec, start, end)
    everything, _ = _window(rec, rec.t0 - 10, rec.end_at + 30)
    result: dict[str, Any] = {
        "scenario": s.scenario,
        "server": server_kind,
        "url": url,
        "server_pid": rec.server_pid,
        "settings": {k: v for k, v in _settings(s).items()},
        "window_s": round(seconds, 2),
        # The measured window in the timeline's seconds (the report shades it).
        "window": {"from_t": round(start - rec.t0, 1), "to_t": round(end - rec.t0, 1)},
        "viewers_connected": max((snap.connected for snap in rec.seconds.values()), default=0),
        "joined": everything.joined,
        "connect_failures": everything.connect_failures,
        "dropped": everything.dropped,
        "errors": dict(everything.errors),
        "close_reasons": dict(everything.close_reasons),
        "join_latency": everything.join_latency.summary(),
        "time_to_all_joined_s": _time_to_join(rec, s.viewers),
        "published": everything.published,
        "publish_errors": everything.publish_errors,
        "deliveries_per_s": round(steady.items / seconds),
        "frames_per_s": round(steady.frames / seconds),
        "latency": steady.latency.summary(),
        "priority_latency": steady.priority_latency.summary(),
        "loadgen_cpu_cores": round(steady.cpu_s / seconds, 3),
        "server_metrics": {k: v for k, v in rec.metrics.items() if _interesting(k)},
        "timeline": _timeline(rec),
    }
    result.update(_server_figures(rec, start, end, steady, seconds))
    result.update(_machine_figures(rec, start, end, result["timeline"]))
    result.update(_sampled_figures(rec, steady, everything, seconds))
    if s.stall_fraction:
        result.update(_slow_figures(rec))
    if rec.profile_path is not None:
        result["server_profile"] = summarize_profile(rec.profile_path)
    return result


def _window(rec: Recording, start: float, end: float) -> tuple[Snapshot, int]:
    """The sum of the whole seconds inside [start, end], and how many there were."""
    total, count = Snapshot(), 0
    for second, snap in rec.seconds.items():
        # A report at second k covers (k-1, k].
        if start <= rec.t0 + second - 1 and rec.t0 + second <= end:
            total.merge(snap, gauges=False)
            count += 1
    return total, max(count, 1)


def _server_figures(
    rec: Recording, start: float, end: float, steady: Snapshot, seconds: int
) -> dict[str, Any]:
    indexes = [i for i, sample in enumerate(rec.server) if start <= sample[0] <= end + 0.6]
    if len(indexes) < 2:
        return {}
    inside = [rec.server[i] for i in indexes]
    (t1, c1, _), (t2, c2, _) = inside[0], inside[-1]
    cpu = (c2 - c1) / (t2 - t1)
    system = (rec.server_system[indexes[-1]] - rec.server_system[indexes[0]]) / (t2 - t1)
    peak_rss = max(rss for _, _, rss in rec.server)
    deliveries_per_s = steady.items / max(seconds, 1)
    figures: dict[str, Any] = {
        "server_cpu_cores": round(cpu, 3),
        "server_kernel_share": round(system / cpu, 3) if cpu else None,
        "server_rss_before_mb": round(rec.server_rss_before / 2**20, 1),
        "server_rss_peak_mb": round(peak_rss / 2**20, 1),
        "server_us_per_delivery": round(1e6 * cpu / deliveries_per_s, 3) if deliveries_per_s else None,
    }
    if len(rec.server_by_process) == len(rec.server) and len(rec.server_by_process[indexes[0]]) > 1:
        first, last = rec.server_by_process[indexes[0]], rec.server_by_process[indexes[-1]]
        figures["server_cpu_cores_by_process"] = {  # the supervisor and each worker
            label: round((last[label] - first[label]) / (t2 - t1), 3) for label in last if label in first
        }
    connected = max((snap.connected for snap in rec.seconds.values()), default=0)
    if connected:
        rss_at_end = inside[-1][2]
        figures["server_rss_per_connection_kb"] = round(
            (rss_at_end - rec.server_rss_before) / connected / 1024, 2
        )
        figures["server_cpu_us_per_s_per_connection"] = round(1e6 * cpu / connected, 3)
    return figures


def _machine_figures(
    rec: Recording, start: float, end: float, timeline: list[dict[str, Any]]
) -> dict[str, Any]:
    """The machine around the run, and whether the window's figures are the server's."""
    rows = [row for row in timeline if start <= rec.t0 + row["t"] - 1 and rec.t0 + row["t"] <= end]
    cpus = os.cpu_count() or 1
    foreign = [row["foreign_cpu"] for row in rows if row.get("foreign_cpu") is not None]
    busy = [row["machine_cpu"] for row in rows if row.get("machine_cpu") is not None]
    loads = [row["load1"] for row in rows if row.get("load1") is not None]
    s = rec.settings
    loadgen_cpus = max(1, min(rec.processes or 1, len(s.cpus) if s.cpus else cpus))
    reasons = verdict(rows, loadgen_cpus, cpus, publishing=bool(s.rate or s.priority_rate))
    return {
        "machine": {
            "cpus": cpus,
            "load_average_before": rec.load_before,
            "load_average_after": rec.load_after,
            "load1_max": max(loads) if loads else None,
            "busy_cores": round(statistics.fmean(busy), 3) if busy else None,
            # CPU of every process that is neither the server nor the load generator (None
            # when the server's pid is unknown: it cannot be told apart).
            "foreign_cpu_cores": round(statistics.fmean(foreign), 3) if foreign else None,
            "foreign_cpu_cores_max": max(foreign) if foreign else None,
            "loadgen_cpus": loadgen_cpus,
        },
        "saturated": bool(reasons),
        "saturation": reasons,
    }


def _sampled_figures(rec: Recording, steady: Snapshot, everything: Snapshot, seconds: int) -> dict[str, Any]:
    sampled = max((snap.sampled_connections for snap in rec.seconds.values()), default=0)
    if not sampled:
        return {}
    normal = steady.sampled_items - steady.priority_items - steady.counter_updates
    published_priority = everything.priority_published
    expected = published_priority * sampled
    return {
        "sampled_connections": sampled,
        "normal_items_per_viewer_per_s": round(normal / sampled / seconds, 2),
        "counter_updates_per_viewer_per_s": round(steady.counter_updates / sampled / seconds, 2),
        "priority_published": published_priority,
        "priority_received_by_sampled": everything.priority_items,
        "priority_loss": round(1 - everything.priority_items / expected, 5) if expected else None,
    }


def _slow_figures(rec: Recording) -> dict[str, Any]:
    s = rec.settings
    before, _ = _window(rec, rec.publish_from + s.warmup_s, rec.stall_at)
    after, _ = _window(rec, rec.stall_at + s.warmup_s, rec.publish_until)
    p99_before, p99_after = before.latency.percentile(0.99), after.latency.percentile(0.99)
    return {
        "p99_before_stall_ms": p99_before,
        "p99_after_stall_ms": p99_after,
        "p99_change": round(p99_after / p99_before - 1, 3) if p99_before and p99_after else None,
        "slow_consumer_disconnects": rec.metrics.get(
            'liveroom_server_disconnects_total{reason="slow_consumer"}', 0.0
        ),
    }


def _time_to_join(rec: Recording, viewers: int) -> float | None:
    """Seconds from the first connect until every viewer had joined (to the report's second)."""
    joined = 0
    for second in sorted(rec.seconds):
        joined += rec.seconds[second].joined
        if viewers and joined >= viewers:
            return float(second)
    return None


def _timeline(rec: Recording) -> list[dict[str, Any]]:
    rows = []
    server = {
        round(t - rec.t0 + 0.5): (cpu, system, rss)
        for (t, cpu, rss), system in zip(rec.server, rec.server_system, strict=False)
    }
    machine = {round(sample.at - rec.t0 + 0.5): sample for sample in rec.machine}
    previous: tuple[float, float] | None = None
    previous_machine = None
    for second in sorted(set(rec.seconds) | set(server) | set(machine)):
        snap = rec.seconds.get(second, Snapshot())
        row: dict[str, Any] = {
            "t": second,
            "connected": snap.connected,
            "deliveries": snap.items,
            "p50_ms": snap.latency.percentile(0.5),
            "p99_ms": snap.latency.percentile(0.99),
            "priority_p99_ms": snap.priority_latency.percentile(0.99),
            "loadgen_cpu": round(snap.cpu_s, 3),
        }
        if second in server:
            cpu, system, rss = server[second]
            if previous is not None:
                row["server_cpu"] = round(cpu - previous[0], 3)
                row["server_kernel_cpu"] = round(system - previous[1], 3)
            row["server_rss_mb"] = round((rss or 0) / 2**20, 1)
            previous = (cpu, system)
        sample = machine.get(second)
        if sample is not None:
            row["load1"] = round(sample.load1, 2)
            if previous_machine is not None:
                elapsed = max(sample.at - previous_machine.at, 1e-3)
                busy = (sample.busy_s - previous_machine.busy_s) / elapsed
                own = (sample.own_s - previous_machine.own_s) / elapsed
                row["machine_cpu"] = round(busy, 3)
                if row.get("server_cpu") is not None:
                    foreign = busy - row["server_cpu"] - row["loadgen_cpu"] - own
                    row["foreign_cpu"] = round(max(0.0, foreign), 3)
            previous_machine = sample
        rows.append(row)
    return rows


def _settings(s: Any) -> dict[str, Any]:
    return {name: getattr(s, name) for name in s.__dataclass_fields__ if name != "secret"}


def _interesting(name: str) -> bool:
    return name.startswith(
        (
            "liveroom_items",
            "liveroom_batches",
            "liveroom_server_disconnects",
            "liveroom_errors",
            "liveroom_conn",
        )
    )
