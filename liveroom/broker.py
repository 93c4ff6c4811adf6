"""The Broker seam: publish/subscribe between nodes, with each room's history.

The core talks only to this interface; `MemoryBroker` serves one node, and the Redis
implementation (scale-out) serves many. Both pass the same conformance suite
(`tests/test_broker_conformance.py`).

Guarantees every implementation gives:

* **Order.** Publications to one room reach every subscriber in `seq` order; `seq` is
  assigned by the broker, strictly increasing per room, and never reused within an epoch.
* **At most once per node.** A subscribed node's handler sees each publication once.
* **History.** Publications made with `history=True` are kept per room, bounded by count
  and age, and `history(room, since)` returns exactly those with `seq > since`, or says
  `reset` when some of them have been evicted (or `since` comes from another epoch).
* **Ephemeral items** (`history=False`) get `seq=None` and are delivered, never replayed.
* **Once per key.** A publish with `once=KEY` that repeats an earlier one with the same key
  in the same room (within the history's age) publishes nothing and returns the first
  one's seq with `repeated=True`: a command retried after an unknown outcome converges.
* **No delivery to the unsubscribed.** A node receives only rooms it has subscribed to.
* **Broken continuity is announced.** When a broker cannot guarantee the next item follows
  the last one delivered (the room's history started over in a new epoch, or items were
  lost beyond the history window), it delivers a `room.reset` publication (`seq=None`,
  data `{"epoch"}`) before going on; `seq` may then start again from 1.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

__all__ = ["RESET_TYPE", "Broker", "HistorySlice", "PresenceReport", "Publication", "PublicationHandler"]

RESET_TYPE = "room.reset"


@dataclass(frozen=True, slots=True)
class Publication:
    """One item published to a room, already encoded for the client wire."""

    room: str
    seq: int | None
    ts: int
    type: str
    encoded: bytes
    priority: bool = False
    # A publish with a `once` key seen before: nothing was published this time (see Broker).
    repeated: bool = False


@dataclass(frozen=True, slots=True)
class HistorySlice:
    epoch: str
    latest: int
    items: list[Publication]
    reset: bool


PublicationHandler = Callable[[Publication], None]


@dataclass(frozen=True, slots=True)
class PresenceReport:
    """One room's presence through this node since its last report: users who came (or, on a
    refresh, every user here: repeats count once), users who left, and this node's distinct count."""

    joined: Sequence[str]
    left: Sequence[str]
    local: int


class Broker(Protocol):
    def set_handler(self, handler: PublicationHandler) -> None:
        """Install the node's single receiver for publications of subscribed rooms."""
        ...

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def subscribe(self, room: str) -> None:
        """Start receiving the room's publications (idempotent)."""
        ...

    async def unsubscribe(self, room: str) -> None:
        """Stop receiving the room's publications (idempotent)."""
        ...

    async def publish(
        self,
        room: str,
        item_type: str,
        data: Any,
        *,
        priority: bool = False,
        history: bool = True,
        once: str | None = None,
    ) -> Publication:
        """Assign `seq` and `ts`, encode once, keep in history if asked, deliver to subscribers.

        Raises `Unavailable` when nothing was published, `OutcomeUnknown` when it may have
        been (a retry with the same `once` key converges)."""
        ...

    async def history(self, room: str, since: int | None, epoch: str | None = None) -> HistorySlice:
        """Items with `seq > since` (none when `since` is None), and the room's latest seq."""
        ...

    async def report_presence(self, reports: dict[str, PresenceReport]) -> dict[str, int]:
        """Report who came to and left each room through this node; get back each room's
        distinct users across live nodes (a user connected through two nodes counts once).
        A node that stops reporting drops out of the totals within `presence_ttl_s`."""
        ...

    async def withdraw_presence(self) -> None:
        """This node is stopping: its users leave every room's count at once."""
        ...
