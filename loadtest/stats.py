"""Counters and latency histograms that load-generator processes fill and the parent merges.

Latencies go into a sparse histogram keyed by a rounded millisecond value (1 ms steps up
to 200 ms, 10 ms up to 2 s, 100 ms beyond), so a per-second snapshot stays a few hundred
integers however many items were measured, and snapshots from many processes add up.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Histogram", "Snapshot", "bucket_ms", "merge_snapshots"]


def bucket_ms(latency_ms: float) -> int:
    """The histogram key for a latency: its value rounded down to the bucket's step."""
    if latency_ms < 200:
        return max(0, int(latency_ms))
    if latency_ms < 2000:
        return int(latency_ms) // 10 * 10
    return int(latency_ms) // 100 * 100


class Histogram:
    __slots__ = ("counts",)

    def __init__(self, counts: dict[int, int] | None = None) -> None:
        self.counts: Counter[int] = Counter(counts or {})

    def add(self, latency_ms: float, count: int = 1) -> None:
        self.counts[bucket_ms(latency_ms)] += count

    def merge(self, other: Histogram) -> None:
        self.counts.update(other.counts)

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def percentile(self, fraction: float) -> float | None:
        """The smallest bucket value at or below which `fraction` of the samples fall."""
        total = self.total
        if not total:
            return None
        wanted = fraction * total
        seen = 0
        for key in sorted(self.counts):
            seen += self.counts[key]
            if seen >= wanted:
                return float(key)
        return float(max(self.counts))

    def summary(self) -> dict[str, float | int | None]:
        return {
            "count": self.total,
            "p50_ms": self.percentile(0.50),
            "p90_ms": self.percentile(0.90),
            "p99_ms": self.percentile(0.99),
            "p999_ms": self.percentile(0.999),
            "max_ms": float(max(self.counts)) if self.counts else None,
        }

    def to_json(self) -> dict[str, int]:
        return {str(key): value for key, value in self.counts.items()}

    @classmethod
    def from_json(cls, data: dict[str, int]) -> Histogram:
        return cls({int(key): value for key, value in data.items()})


@dataclass(slots=True)
class Snapshot:
    """What one load-generator process saw in one interval (or in total)."""

    connected: int = 0  # open connections at the end of the interval
    joined: int = 0  # joins acknowledged ok in the interval
    connect_failures: int = 0
    dropped: int = 0  # connections the server closed
    frames: int = 0
    items: int = 0  # deliveries: items counted inside batch frames
    priority_items: int = 0  # priority items seen by the sampled connections
    sampled_items: int = 0  # items seen by the sampled connections
    sampled_connections: int = 0
    counter_updates: int = 0  # room.online items seen by the sampled connections
    published: int = 0  # acks ok for publish commands
    publish_errors: int = 0
    priority_published: int = 0
    cpu_s: float = 0.0  # this process's CPU time (user + system) in the interval
    latency: Histogram = field(default_factory=Histogram)
    priority_latency: Histogram = field(default_factory=Histogram)
    join_latency: Histogram = field(default_factory=Histogram)
    close_reasons: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)

    def take(self) -> Snapshot:
        """This interval's numbers, resetting the interval counters (gauges stay)."""
        taken = Snapshot(**{name: getattr(self, name) for name in _FIELDS})
        for name in _FIELDS:
            if name != "connected" and name != "sampled_connections":
                setattr(self, name, type(getattr(self, name))())
        return taken

    def merge(self, other: Snapshot, gauges: bool = True) -> None:
        for name in _FIELDS:
            mine, theirs = getattr(self, name), getattr(other, name)
            if isinstance(mine, Histogram):
                mine.merge(theirs)
            elif isinstance(mine, Counter):
                mine.update(theirs)
            elif name in ("connected", "sampled_connections"):
                if gauges:
                    setattr(self, name, mine + theirs)
            else:
                setattr(self, name, mine + theirs)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name in _FIELDS:
            value = getattr(self, name)
            out[name] = (
                value.to_json()
                if isinstance(value, Histogram)
                else dict(value)
                if isinstance(value, Counter)
                else value
            )
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Snapshot:
        snapshot = cls()
        for name in _FIELDS:
            current = getattr(snapshot, name)
            value = data.get(name, current)
            if isinstance(current, Histogram):
                value = Histogram.from_json(value)
            elif isinstance(current, Counter):
                value = Counter(value)
            setattr(snapshot, name, value)
        return snapshot


_FIELDS = tuple(Snapshot.__dataclass_fields__)


def merge_snapshots(snapshots: list[Snapshot]) -> Snapshot:
    total = Snapshot()
    for snapshot in snapshots:
        total.merge(snapshot)
    return total
