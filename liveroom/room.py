"""A room as this node sees it: local members, and the items waiting for the next tick."""

from __future__ import annotations

import asyncio
from collections import Counter

import orjson

from liveroom.broker import Publication
from liveroom.connection import Connection

__all__ = ["LocalRoom"]


class LocalRoom:
    __slots__ = (
        "delivered_seq",
        "fresh",
        "id",
        "id_json",
        "members",
        "online_sent",
        "online_sent_ms",
        "pending",
        "pending_seq",
        "ready",
        "users",
    )

    def __init__(self, room_id: str) -> None:
        self.id = room_id
        self.id_json = orjson.dumps(room_id)
        self.members: dict[Connection, None] = {}
        self.users: Counter[str] = Counter()
        # Encoded items waiting for the next flush, and the highest seq among them.
        self.pending: list[Publication] = []
        self.pending_seq = 0
        # Members that joined since the last flush, with the seq their join ack's `missed`
        # ended at: the next flush must not send them those items again.
        self.fresh: dict[Connection, int] = {}
        # Highest seq handed to members; a joiner's `missed` ends here, its batches start after.
        self.delivered_seq = 0
        self.online_sent = -1
        self.online_sent_ms = 0.0
        # Done once the broker subscription is up and `delivered_seq` is known.
        self.ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    @property
    def online(self) -> int:
        """Distinct users present on this node."""
        return len(self.users)

    def add(self, connection: Connection) -> None:
        if connection not in self.members:
            self.members[connection] = None
            self.users[connection.identity.user_id] += 1

    def remove(self, connection: Connection) -> bool:
        if connection not in self.members:
            return False
        del self.members[connection]
        self.fresh.pop(connection, None)
        user = connection.identity.user_id
        self.users[user] -= 1
        if self.users[user] <= 0:
            del self.users[user]
        return True

    def take_pending(self) -> list[Publication]:
        items, self.pending = self.pending, []
        self.delivered_seq = max(self.delivered_seq, self.pending_seq)
        return items
