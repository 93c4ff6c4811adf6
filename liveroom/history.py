"""A room's history ring: bounded by count and age; answers `since` queries. Pure."""

from __future__ import annotations

from collections import deque

from liveroom.broker import Publication

__all__ = ["HistoryRing"]


class HistoryRing:
    def __init__(self, max_count: int, max_age_ms: float) -> None:
        self._items: deque[Publication] = deque(maxlen=max(1, max_count))
        self._max_age_ms = max_age_ms
        self.latest = 0

    def append(self, publication: Publication) -> None:
        assert publication.seq is not None and publication.seq > self.latest
        self._items.append(publication)
        self.latest = publication.seq

    def trim(self, now_ms: float) -> None:
        horizon = now_ms - self._max_age_ms
        while self._items and self._items[0].ts < horizon:
            self._items.popleft()

    def since(self, since: int | None, now_ms: float) -> tuple[list[Publication], bool]:
        """(items with seq > since, reset). `reset` when some of them are gone or `since` is foreign."""
        self.trim(now_ms)
        if since is None or since == self.latest:
            return [], False
        if since > self.latest:
            return [], True
        oldest = self._items[0].seq if self._items else self.latest + 1
        assert oldest is not None
        if since < oldest - 1:
            return [], True
        return [p for p in self._items if p.seq is not None and p.seq > since], False

    def __len__(self) -> int:
        return len(self._items)
