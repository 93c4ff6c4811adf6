"""The room's danmaku and interaction timeline while it records, exported beside the file.

The node (not the media worker: it has the broker) reads the room's items from the
broker's history every `interval_s` while a recording runs, from the seq it had when the
recording began, and appends them to `<id>.timeline.jsonl` next to the recording: one
line per item, `{"seq", "type", "ts", "data"}` (`ts` in wall-clock milliseconds, the
broker's). Stream events (`media.*`) are left out. The history is bounded (`[room]
history_count`, `history_age_s`), so a poll a second keeps every item unless a room sends
more than that many in a second; a history reset (a new epoch) is noted in the log.
`export` turns the file into what a player needs: each item's offset `t` in seconds from
the recording's first picture.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from pathlib import Path
from typing import Any

import orjson

__all__ = ["TimelineWriter", "export"]

log = logging.getLogger(__name__)


class TimelineWriter:
    def __init__(self, broker: Any, room: str, path: Path, interval_s: float = 1.0) -> None:
        self.broker = broker
        self.room = room
        self.path = path
        self.interval_s = interval_s
        self.items = 0
        self._since: int | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._since = (await self.broker.history(self.room, None)).latest
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.touch()
        self._task = asyncio.create_task(self._run(), name=f"liveroom-timeline-{self.room}")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
            await self.poll()

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            try:
                await self.poll()
            except Exception as exc:  # the broker is down: try again next time
                log.warning("timeline of %s: %r", self.room, exc)

    async def poll(self) -> None:
        history = await self.broker.history(self.room, self._since)
        if history.reset:
            log.warning("timeline of %s: the room's history was reset; items may be missing", self.room)
        lines = []
        for publication in history.items:
            if publication.type.startswith("media."):
                continue
            item = orjson.loads(publication.encoded)
            lines.append(orjson.dumps({k: item.get(k) for k in ("seq", "type", "ts", "data")}) + b"\n")
        if lines:
            with self.path.open("ab") as out:
                out.writelines(lines)
            self.items += len(lines)
        self._since = history.latest


def export(path: Path, origin_s: float) -> list[dict[str, Any]]:
    """The timeline's items with `t`, seconds from `origin_s` (the recording's first picture)."""
    items = []
    if path.exists():
        for line in path.read_bytes().splitlines():
            with contextlib.suppress(ValueError):
                item = json.loads(line)
                items.append({"t": round(item["ts"] / 1000 - origin_s, 3), **item})
    return items
