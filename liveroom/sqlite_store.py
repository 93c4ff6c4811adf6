"""The embedded store: durable counters and records in SQLite (WAL) on a writer thread.

The event loop never touches the disk: writes go to one thread that commits whatever is
waiting as one transaction (group commit), then resolves each caller's future. A record
or a counter increment is acknowledged only after its transaction has committed. Stock
pools keep their hot state in memory (`StockLedger`), rebuilt from the records on start.
"""

from __future__ import annotations

import asyncio
import queue
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import msgpack

from liveroom.record import Record
from liveroom.store import MemoryStore

__all__ = ["EmbeddedStore"]

T = TypeVar("T")
_SCHEMA = """
CREATE TABLE IF NOT EXISTS records (
    position INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL,
    key TEXT NOT NULL,
    room TEXT NOT NULL,
    created_ms INTEGER NOT NULL,
    data BLOB NOT NULL,
    UNIQUE (kind, key)
);
CREATE INDEX IF NOT EXISTS records_by_room ON records (kind, room, position);
CREATE INDEX IF NOT EXISTS records_by_kind ON records (kind, position);
CREATE TABLE IF NOT EXISTS counters (key TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS awake (room TEXT PRIMARY KEY) WITHOUT ROWID;
"""
_INCR = (
    "INSERT INTO counters (key, value) VALUES (?, ?)"
    " ON CONFLICT (key) DO UPDATE SET value = value + excluded.value RETURNING value"
)
_Job = tuple[Callable[[sqlite3.Connection], Any], asyncio.Future[Any]]


class EmbeddedStore(MemoryStore):
    """`Store` for one node: counters and records in a SQLite file (stock decided in memory).

    A counter increment costs a hop to the writer thread and a share of a commit: callers
    on a hot path add up in memory and `incr` once per interval (see the like plugin)."""

    def __init__(self, path: str | Path, synchronous: str = "normal", max_batch: int = 512) -> None:
        super().__init__()
        self._path = Path(path)
        self._synchronous = synchronous.upper()
        if self._synchronous not in ("NORMAL", "FULL", "EXTRA"):
            raise ValueError("sqlite_synchronous must be normal, full or extra")
        self._max_batch = max_batch
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._path.parent.mkdir(parents=True, exist_ok=True)
        ready: asyncio.Future[None] = self._loop.create_future()
        self._thread = threading.Thread(target=self._run, args=(ready,), name="liveroom-sqlite", daemon=True)
        self._thread.start()
        await ready

    async def close(self) -> None:
        if self._thread is None:
            return
        self._jobs.put(None)
        await asyncio.to_thread(self._thread.join)
        self._thread = None

    async def incr(self, key: str, by: int = 1) -> int:
        return await self._submit(lambda db: int(db.execute(_INCR, (key, by)).fetchone()[0]))

    async def get_counter(self, key: str) -> int:
        def select(db: sqlite3.Connection) -> int:
            row = db.execute("SELECT value FROM counters WHERE key = ?", (key,)).fetchone()
            return 0 if row is None else int(row[0])

        return await self._submit(select)

    async def set_counter(self, key: str, value: int) -> None:
        await self._submit(
            lambda db: db.execute("INSERT OR REPLACE INTO counters (key, value) VALUES (?, ?)", (key, value))
        )

    async def set_awake(self, room: str, awake: bool) -> None:
        sql = "INSERT OR IGNORE INTO awake (room) VALUES (?)" if awake else "DELETE FROM awake WHERE room = ?"
        await self._submit(lambda db: db.execute(sql, (room,)))

    async def awake_rooms(self) -> list[str]:
        return await self._submit(
            lambda db: [row[0] for row in db.execute("SELECT room FROM awake ORDER BY room")]
        )

    async def put_record(self, record: Record) -> tuple[Record, bool]:
        blob = msgpack.packb(dict(record.data), use_bin_type=True)

        def insert(db: sqlite3.Connection) -> tuple[Record, bool]:
            cursor = db.execute(
                "INSERT OR IGNORE INTO records (kind, key, room, created_ms, data) VALUES (?, ?, ?, ?, ?)",
                (record.kind, record.key, record.room, record.created_ms, blob),
            )
            if cursor.rowcount:
                position = cursor.lastrowid or 0
                return Record(
                    record.kind, record.key, record.room, record.data, record.created_ms, position
                ), True
            existing = _fetch_one(db, record.kind, record.key)
            assert existing is not None
            return existing, False

        return await self._submit(insert)

    async def get_record(self, kind: str, key: str) -> Record | None:
        return await self._submit(lambda db: _fetch_one(db, kind, key))

    async def list_records(
        self, kind: str, room: str | None, after: int = 0, limit: int = 100
    ) -> list[Record]:
        def select(db: sqlite3.Connection) -> list[Record]:
            columns = "SELECT position, kind, key, room, created_ms, data FROM records"
            if room is None:
                query = f"{columns} WHERE kind = ? AND position > ? ORDER BY position LIMIT ?"
                rows = db.execute(query, (kind, after, limit)).fetchall()
            else:
                query = f"{columns} WHERE kind = ? AND room = ? AND position > ? ORDER BY position LIMIT ?"
                rows = db.execute(query, (kind, room, after, limit)).fetchall()
            return [_record(row) for row in rows]

        return await self._submit(select)

    async def _submit(self, work: Callable[[sqlite3.Connection], T]) -> T:
        if self._loop is None or self._thread is None:
            raise RuntimeError("the store is not started")
        future: asyncio.Future[T] = self._loop.create_future()
        self._jobs.put((work, future))
        return await future

    def _run(self, ready: asyncio.Future[None]) -> None:
        assert self._loop is not None
        try:
            db = self._open()
        except Exception as exc:  # surfaced to start(): a bad path stops start-up
            self._loop.call_soon_threadsafe(_settle, ready, None, exc)
            return
        self._loop.call_soon_threadsafe(_settle, ready, None, None)
        while self._commit_batch(db):
            pass
        db.close()

    def _commit_batch(self, db: sqlite3.Connection) -> bool:
        """Run every waiting job in one transaction; False once asked to stop."""
        first = self._jobs.get()
        jobs: list[_Job] = []
        job = first
        while job is not None:
            jobs.append(job)
            if len(jobs) >= self._max_batch:
                break
            try:
                job = self._jobs.get_nowait()
            except queue.Empty:
                break
        results = _run_batch(db, jobs)
        assert self._loop is not None
        for (_, future), (value, error) in zip(jobs, results, strict=True):
            self._loop.call_soon_threadsafe(_settle, future, value, error)
        return job is not None

    def _open(self) -> sqlite3.Connection:
        db = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute(f"PRAGMA synchronous={self._synchronous}")
        db.executescript(_SCHEMA)
        return db


def _run_batch(db: sqlite3.Connection, jobs: list[_Job]) -> list[tuple[Any, BaseException | None]]:
    """Every job in one transaction, each in a savepoint: a failing job fails alone, and
    if the transaction itself fails (disk full, I/O error) every job fails with it, instead
    of the writer thread dying with its callers' futures unresolved."""
    results: list[tuple[Any, BaseException | None]] = []
    try:
        db.execute("BEGIN IMMEDIATE")
        for work, _ in jobs:
            try:
                db.execute("SAVEPOINT job")
                results.append((work(db), None))
                db.execute("RELEASE job")
            except sqlite3.DatabaseError as exc:
                if not db.in_transaction:
                    raise  # SQLite rolled the whole transaction back
                db.execute("ROLLBACK TO job")
                results.append((None, exc))
            except Exception as exc:
                db.execute("ROLLBACK TO job")
                results.append((None, exc))
        db.execute("COMMIT")
    except sqlite3.Error as exc:
        if db.in_transaction:
            db.execute("ROLLBACK")
        return [(None, exc)] * len(jobs)
    return results


def _settle(future: asyncio.Future[Any], value: Any, error: BaseException | None) -> None:
    if future.done():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(value)


def _fetch_one(db: sqlite3.Connection, kind: str, key: str) -> Record | None:
    row = db.execute(
        "SELECT position, kind, key, room, created_ms, data FROM records WHERE kind = ? AND key = ?",
        (kind, key),
    ).fetchone()
    return None if row is None else _record(row)


def _record(row: tuple[Any, ...]) -> Record:
    position, kind, key, room, created_ms, data = row
    return Record(kind, key, room, msgpack.unpackb(data, raw=False), created_ms, position)
