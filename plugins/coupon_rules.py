"""Coupon rules, pure: what a rule is, how one is written in config, continuous presence, and
the grants issued and claimed per rule, folded from the durable records."""

from __future__ import annotations

import re
import shlex
from collections import Counter, deque
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

__all__ = ["CouponRule", "CouponTally", "Presence", "parse_rule"]

Trigger = Literal["watch_time", "activity", "drop", "grant"]
# grant: no trigger of its own; a backend (`coupon.grant`, POST coupons/grants) or a plugin grants it.
TRIGGERS = ("watch_time", "activity", "drop", "grant")
ACTIVITIES = ("danmaku", "vote", "like")  # the built-ins' kinds; any other name may be fired
ACTIVITY_NAME = re.compile(r"^[a-z][a-z0-9_.-]{0,31}$")


@dataclass(frozen=True, slots=True)
class CouponRule:
    id: str
    title: str
    trigger: Trigger
    budget: int  # grants at most, per room
    minutes: float = 0.0  # watch_time: continuous presence needed
    activity: str = ""  # activity: "danmaku", "vote", "like" or any name fired by a plugin or backend...
    count: int = 1  # ...this many times (likes: this many likes)...
    within_s: float = 0.0  # ...within this many seconds (a streak); 0: over the whole show

    def wire(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_wire(cls, data: Any) -> CouponRule:
        return cls(**{key: data[key] for key in cls.__dataclass_fields__ if key in data})

    def check(self) -> CouponRule:
        if self.trigger not in TRIGGERS:
            raise ValueError(f"rule {self.id}: trigger must be one of {', '.join(TRIGGERS)}")
        if self.budget < 1:
            raise ValueError(f"rule {self.id}: budget must be at least 1")
        if self.trigger == "watch_time" and self.minutes <= 0:
            raise ValueError(f"rule {self.id}: watch_time needs minutes > 0")
        if self.trigger == "activity" and (not ACTIVITY_NAME.match(self.activity) or self.count < 1):
            raise ValueError(
                f"rule {self.id}: activity must be a name (danmaku, vote, like, ...), count >= 1"
            )
        if not 0 <= self.within_s <= MAX_STREAK_S:
            raise ValueError(f"rule {self.id}: within_s must be between 0 and {MAX_STREAK_S:g}")
        return self


def parse_rule(text: str) -> CouponRule:
    """`id=watch30 trigger=watch_time minutes=30 budget=1000 title="Thanks for watching"`."""
    fields = dict(part.partition("=")[::2] for part in shlex.split(text))
    try:
        return CouponRule(
            id=fields["id"],
            title=fields.get("title", fields["id"]),
            trigger=fields["trigger"],  # type: ignore[arg-type]  # checked below
            budget=int(fields["budget"]),
            minutes=float(fields.get("minutes", 0)),
            activity=fields.get("activity", ""),
            count=int(fields.get("count", 1)),
            within_s=float(fields.get("within_s", 0)),
        ).check()
    except (KeyError, ValueError) as exc:
        raise ValueError(f"coupon rule {text!r}: {exc}") from None


MAX_STREAK_S = 3600.0


class ActivityLog:
    """What each user did, for activity rules: totals over the show, and recent events for
    streaks ("N likes within W seconds"). Pure; memory bounded per user and kind."""

    def __init__(self, max_events: int = 1000) -> None:
        self._totals: dict[tuple[str, ...], int] = {}
        self._recent: dict[tuple[str, ...], deque[tuple[float, int]]] = {}
        self._max_events = max_events

    def add(self, key: tuple[str, ...], now_ms: float, amount: int) -> None:
        self._totals[key] = self._totals.get(key, 0) + amount
        recent = self._recent.setdefault(key, deque(maxlen=self._max_events))
        recent.append((now_ms, amount))
        while recent and recent[0][0] < now_ms - MAX_STREAK_S * 1000:
            recent.popleft()

    def count(self, key: tuple[str, ...], now_ms: float, within_s: float) -> int:
        """The total, or with `within_s` only what happened in the last `within_s` seconds."""
        if within_s <= 0:
            return self._totals.get(key, 0)
        horizon = now_ms - within_s * 1000
        return sum(amount for at, amount in self._recent.get(key, ()) if at >= horizon)


class Presence:
    """Continuous presence per user: a gap shorter than `grace_ms` does not reset it."""

    def __init__(self, grace_ms: float) -> None:
        self._grace_ms = grace_ms
        self._since: dict[str, float] = {}
        self._left: dict[str, float] = {}

    def joined(self, user: str, now_ms: float) -> float:
        """Record a join; returns when the user's continuous presence began."""
        left = self._left.pop(user, None)
        if user in self._since and (left is None or now_ms - left <= self._grace_ms):
            return self._since[user]
        self._since[user] = now_ms
        return now_ms

    def left(self, user: str, now_ms: float) -> None:
        if user in self._since:
            self._left[user] = now_ms

    def present_since(self, user: str) -> float | None:
        """When continuous presence began, if the user is here now."""
        return None if user in self._left else self._since.get(user)

    def forget_gone(self, now_ms: float) -> None:
        """Drop users away longer than the grace period (bounded memory)."""
        for user, left in list(self._left.items()):
            if now_ms - left > self._grace_ms:
                del self._left[user]
                self._since.pop(user, None)


@dataclass(slots=True)
class CouponTally:
    """Grants issued and claimed per rule, folded record by record in write order. Read the
    grants before the claims: a claim is written after its grant, so its grant is known."""

    grants_after: int = 0  # the last positions read: the next read starts there
    claims_after: int = 0
    issued: Counter[str] = field(default_factory=Counter)
    claimed: Counter[str] = field(default_factory=Counter)
    _rule_of: dict[str, str] = field(default_factory=dict)  # grant id -> rule

    def grant(self, data: Any, position: int) -> None:
        self.grants_after = max(self.grants_after, position)
        self._rule_of[data["id"]] = data["rule"]
        self.issued[data["rule"]] += 1

    def claim(self, data: Any, position: int) -> None:
        self.claims_after = max(self.claims_after, position)
        self.claimed[self._rule_of.get(data["grant"], "")] += 1
