"""Lucky bag (福袋) rules, pure: a bag and its entry conditions, the seed, and the draw.

**The draw** is a function of the entry list and the seed only, so anyone holding both can
run it again and must get the same winners (`ALGORITHM`, "sha256-rank-v1"):

1. `seed` is 64 hex digits (32 random bytes, drawn when the bag starts); `seed_hash`,
   published when the bag starts, is `SHA-256(bytes.fromhex(seed))` in hex, so the seed
   cannot be chosen after the entries are known.
2. Each distinct entrant's user id gets the score `SHA-256(bytes.fromhex(seed) + user_id
   encoded as UTF-8)`, a 32-byte string.
3. Entrants are ordered by (score, user id), bytes compared as unsigned, and the first
   `winners` are the winners, in that order.

In Python: `sorted(set(ids), key=lambda u: (sha256(seed_bytes + u.encode()).digest(), u))[:n]`.
"""

from __future__ import annotations

import hashlib
import heapq
import secrets
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from liveroom.errors import CommandError

__all__ = ["ALGORITHM", "Bag", "Via", "check_entry", "draw", "keyword_matches", "new_seed", "seed_hash"]

ALGORITHM = "sha256-rank-v1"
Via = Literal["keyword", "button"]


@dataclass(frozen=True, slots=True)
class Bag:
    id: str
    room: str
    prize: str
    winners: int  # how many are drawn (fewer if fewer entered)
    starts_at: int  # server ms
    ends_at: int  # server ms: the deadline, when the server draws
    seed_hash: str
    keyword: str = ""  # entry by sending this in danmaku (empty: the enter button)
    watch_minutes: float = 0.0  # continuous presence in the room needed to enter
    tiers: tuple[str, ...] = ()  # a token `tier` among these needed to enter (empty: anyone)
    # The store position of the room's entries before this bag's first (its list starts after it).
    entries_after: int = 0

    def wire(self) -> dict[str, Any]:
        """What clients see (never the seed, which the bag's record keeps apart)."""
        return {
            "bag": self.id,
            "prize": self.prize,
            "winners": self.winners,
            "starts_at": self.starts_at,
            "ends_at": self.ends_at,
            "seed_hash": self.seed_hash,
            "keyword": self.keyword,
            "watch_minutes": self.watch_minutes,
            "tiers": list(self.tiers),
        }

    def record(self, seed: str) -> dict[str, Any]:
        return {**self.wire(), "room": self.room, "entries_after": self.entries_after, "seed": seed}

    @classmethod
    def from_record(cls, data: Mapping[str, Any]) -> tuple[Bag, str]:
        """The bag and its seed, from its record."""
        bag = cls(
            data["bag"],
            data["room"],
            data["prize"],
            int(data["winners"]),
            int(data["starts_at"]),
            int(data["ends_at"]),
            data["seed_hash"],
            data.get("keyword", ""),
            float(data.get("watch_minutes", 0.0)),
            tuple(data.get("tiers", ())),
            int(data.get("entries_after", 0)),
        )
        return bag, str(data["seed"])


def new_seed() -> str:
    return secrets.token_hex(32)


def seed_hash(seed: str) -> str:
    return hashlib.sha256(bytes.fromhex(seed)).hexdigest()


def draw(entrants: Iterable[str], seed: str, winners: int) -> list[str]:
    """The winners among `entrants` (user ids; repeats count once), as `ALGORITHM` says."""
    seed_bytes = bytes.fromhex(seed)

    def score(user: str) -> tuple[bytes, str]:
        return hashlib.sha256(seed_bytes + user.encode()).digest(), user

    return heapq.nsmallest(winners, set(entrants), key=score)


def _fold(text: str) -> str:
    """NFKC (full-width to half-width), case folded, whitespace dropped."""
    return "".join(unicodedata.normalize("NFKC", text).casefold().split())


def keyword_matches(keyword: str, text: str) -> bool:
    """A danmaku enters when it is the keyword, give or take width, case and spaces."""
    return bool(keyword) and _fold(text) == _fold(keyword)


def check_entry(bag: Bag, tier: str | None, present_since: float | None, now_ms: float, via: Via) -> None:
    """Raise what an entry is refused with: the deadline passed (`closed`), the bag wants its
    keyword sent in danmaku (`keyword_required`), a tier (`tier_required`) or more watching
    (`watch_more`, saying how long)."""
    if now_ms >= bag.ends_at:
        raise CommandError("the lucky bag is closed", "closed")
    if bag.keyword and via != "keyword":
        raise CommandError(f"send {bag.keyword!r} in the chat to enter", "keyword_required")
    if bag.tiers and tier not in bag.tiers:
        raise CommandError(f"for {', '.join(bag.tiers)} members only", "tier_required")
    needed_ms = bag.watch_minutes * 60_000
    watched_ms = 0.0 if present_since is None else now_ms - present_since
    if watched_ms < needed_ms:
        left_s = int((needed_ms - watched_ms + 999) // 1000)
        raise CommandError(f"watch {left_s} s more to enter", "watch_more")
