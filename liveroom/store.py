"""The Store seam: counters and durable records, behind one interface per backend.

Plugins reach it only through their context; the core never imports a backend's client.
Implementations: `MemoryStore` (tests and throwaway nodes), `EmbeddedStore` (one node:
counters in memory, records in SQLite), and the Redis store (scale-out). All pass the
conformance suite in `tests/test_store_conformance.py`.

Guarantees every implementation gives:

* **Counters** are atomic: concurrent `incr` calls never lose an update. They are fast,
  not durable in the embedded store (a restart starts them at zero).
* **Records** are written exactly once per `(kind, key)`: a second `put_record` with the
  same key writes nothing and returns the record already stored, so a retried command
  (same idempotency key) gets the same answer.
* **Durability.** When `put_record` returns, the record survives a kill of the process
  (SIGKILL) in the embedded and Redis (AOF) stores. `MemoryStore` keeps nothing.
* **Never blocks the event loop** on disk or network.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

__all__ = ["MemoryStore", "Record", "Store"]


@dataclass(frozen=True, slots=True)
class Record:
    kind: str
    key: str
    room: str
    data: Mapping[str, Any]
    created_ms: int
    # Position in the store's log of records (ascending in write order), for paging.
    position: int = field(default=0, compare=False)


class Store(Protocol):
    async def start(self) -> None: ...

    async def close(self) -> None:
        """Flush pending writes, then release resources."""
        ...

    async def incr(self, key: str, by: int = 1) -> int:
        """Add `by` to a counter (created at 0) and return its new value."""
        ...

    async def get_counter(self, key: str) -> int: ...

    async def put_record(self, record: Record) -> tuple[Record, bool]:
        """Store the record unless its `(kind, key)` exists. Returns (stored record, created)."""
        ...

    async def get_record(self, kind: str, key: str) -> Record | None: ...

    async def list_records(self, kind: str, room: str, after: int = 0, limit: int = 100) -> list[Record]:
        """Records of a kind in a room, in write order, with `position > after`."""
        ...


class MemoryStore:
    """Everything in process memory: for tests and nodes whose records may be lost."""

    def __init__(self) -> None:
        self._counters: dict[str, int] = {}
        self._records: dict[tuple[str, str], Record] = {}

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None

    async def incr(self, key: str, by: int = 1) -> int:
        value = self._counters.get(key, 0) + by
        self._counters[key] = value
        return value

    async def get_counter(self, key: str) -> int:
        return self._counters.get(key, 0)

    async def put_record(self, record: Record) -> tuple[Record, bool]:
        existing = self._records.get((record.kind, record.key))
        if existing is not None:
            return existing, False
        stored = Record(
            record.kind, record.key, record.room, record.data, record.created_ms, len(self._records) + 1
        )
        self._records[(record.kind, record.key)] = stored
        return stored, True

    async def get_record(self, kind: str, key: str) -> Record | None:
        return self._records.get((kind, key))

    async def list_records(self, kind: str, room: str, after: int = 0, limit: int = 100) -> list[Record]:
        found = [
            r for r in self._records.values() if r.kind == kind and r.room == room and r.position > after
        ]
        return found[:limit]
