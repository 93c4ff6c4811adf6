"""Gift rules, pure: the catalogue, what a wallet's answer means, a room's leaderboard and
totals folded from its gift records, and a PK's window and winner.

A gift's value is its catalogue price times the count, in integer minor units. A wallet
answer is one of four things, and only one of them (`ok`) means the viewer was debited:
the plugin tells the client the truth of each (docs/plugins.md, *gift*).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from liveroom.errors import ConfigError
from liveroom.money import format_minor

__all__ = ["Pk", "Tally", "WalletAnswer", "parse_catalogue", "wallet_answer"]

# ok: debited. insufficient: refused, nothing debited. refused: the wallet said no for another
# reason (a 4xx), nothing debited. unknown: no answer, a 5xx or a timeout (may have debited).
WalletAnswer = Literal["ok", "insufficient", "refused", "unknown"]


def parse_catalogue(entries: Sequence[str]) -> dict[str, int]:
    """`["rose:100", "rocket:50000"]` -> gift name -> price in minor units (ConfigError if bad)."""
    catalogue: dict[str, int] = {}
    for entry in entries:
        name, _, price = entry.partition(":")
        name = name.strip()
        if not (name and name.replace("_", "").replace("-", "").isalnum() and price.strip().isdigit()):
            raise ConfigError(f"[plugins.gift] catalogue: {entry!r} is not name:price_in_minor_units")
        catalogue[name] = int(price)
    return catalogue


def wallet_answer(status: int, body: Mapping[str, Any] | None) -> WalletAnswer:
    """What a wallet's HTTP answer means: 2xx with status ok (or no body) is a debit; 402 or
    status insufficient_funds is a refusal for funds; another 4xx a refusal; else unknown."""
    said = None if body is None else body.get("status")
    if 200 <= status < 300:
        if said in (None, "ok"):
            return "ok"
        return "insufficient" if said == "insufficient_funds" else "unknown"
    if status == 402 or said == "insufficient_funds":
        return "insufficient"
    if 400 <= status < 500 and status not in (408, 409, 425, 429):
        return "refused"
    return "unknown"  # 408/409/425/429 (try again) and 5xx: the debit may or may not be done


@dataclass(slots=True)
class Tally:
    """A room's gifts folded from its records in write order (`after`: the last position)."""

    after: int = 0
    total_minor: int = 0
    gifts: int = 0
    by_gift: dict[str, int] = field(default_factory=dict)  # gift -> count
    by_user: dict[str, int] = field(default_factory=dict)  # user -> value given
    names: dict[str, str] = field(default_factory=dict)
    max_users: int = 100_000  # past it, new givers are not ranked (the totals still count)

    def add(self, gift: Mapping[str, Any], position: int) -> None:
        self.after = max(self.after, position)
        value, user = int(gift["value_minor"]), str(gift["user"])
        self.total_minor += value
        self.gifts += int(gift["count"])
        self.by_gift[gift["gift"]] = self.by_gift.get(gift["gift"], 0) + int(gift["count"])
        if user in self.by_user or len(self.by_user) < self.max_users:
            self.by_user[user] = self.by_user.get(user, 0) + value
            self.names[user] = str(gift.get("name", user))

    def leaderboard(self, size: int) -> list[dict[str, Any]]:
        ranked = sorted(self.by_user.items(), key=lambda pair: (-pair[1], pair[0]))[:size]
        return [
            {"rank": n, "id": user, "name": self.names[user], "value": format_minor(v), "value_minor": v}
            for n, (user, v) in enumerate(ranked, 1)
        ]

    def totals(self) -> dict[str, Any]:
        return {
            "total": format_minor(self.total_minor),
            "total_minor": self.total_minor,
            "gifts": self.gifts,
            "by_gift": dict(self.by_gift),
        }


@dataclass(frozen=True, slots=True)
class Pk:
    """A PK between two rooms: gifts given in `[started_at, ends_at)` score for their room."""

    id: str
    rooms: tuple[str, str]  # (the room whose host started it, the opponent)
    started_at: int
    ends_at: int

    def record(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "rooms": list(self.rooms),
            "started_at": self.started_at,
            "ends_at": self.ends_at,
        }

    @classmethod
    def from_record(cls, data: Any) -> Pk:
        first, second = data["rooms"]
        return cls(data["id"], (first, second), data["started_at"], data["ends_at"])

    def counts(self, created_ms: float) -> bool:
        return self.started_at <= created_ms < self.ends_at

    def other(self, room: str) -> str:
        return self.rooms[1] if room == self.rooms[0] else self.rooms[0]

    def decide_at(self, settle_ms: int) -> int:
        """When the winner is decided: the end, plus time for gifts under way to be written."""
        return self.ends_at + settle_ms

    def result(self, scores: Mapping[str, int]) -> dict[str, Any]:
        """The winner by score (None: a draw), with both sides' scores."""
        first, second = (scores.get(room, 0) for room in self.rooms)
        winner = None if first == second else self.rooms[0] if first > second else self.rooms[1]
        return {
            **self.record(),
            "scores": {room: scores.get(room, 0) for room in self.rooms},
            "winner": winner,
            "draw": winner is None,
        }
