"""Auction rules, pure: the lowest acceptable bid, anti-snipe extension, the outcome.

An auction opens at `start_minor`; the first bid must be at least that, each later one at
least the current price plus `increment_minor`. A bid accepted in the last `extend_ms` before
the end pushes the end to `now + extend_ms` (anti-snipe), so a late bidder never wins by
leaving the others no time to answer. At the end the highest bid wins if it meets the
reserve. Money is integer minor units (`liveroom.money`); time is server ms, passed in.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from liveroom.errors import CommandError
from liveroom.money import format_minor

__all__ = ["Auction", "Bid", "Outcome", "Terms"]

Phase = Literal["open", "ended"]


@dataclass(frozen=True, slots=True)
class Terms:
    """What the host opened, as the durable record keeps it."""

    id: str
    room: str
    title: str
    start_minor: int
    increment_minor: int
    reserve_minor: int  # 0: no reserve
    opened_at: int  # server ms
    ends_at: int  # the first end; bids may push it later
    extend_ms: int

    def record(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__dataclass_fields__}

    @classmethod
    def from_record(cls, data: Any) -> Terms:
        return cls(**{key: data[key] for key in cls.__dataclass_fields__})


@dataclass(frozen=True, slots=True)
class Bid:
    """An accepted bid: the `n`th of its auction, with the end it left the auction at."""

    n: int
    user: str
    name: str
    amount_minor: int
    at: int  # server ms it was decided at
    ends_at: int
    request: str  # the idempotency key of the command that placed it

    def record(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__dataclass_fields__}

    @classmethod
    def from_record(cls, data: Any) -> Bid:
        return cls(**{key: data[key] for key in cls.__dataclass_fields__})


@dataclass(frozen=True, slots=True)
class Outcome:
    sold: bool
    winner: Bid | None  # the highest bid, whether or not it met the reserve

    def wire(self) -> dict[str, Any]:
        top = self.winner
        return {
            "sold": self.sold,
            "winner": None if top is None or not self.sold else {"id": top.user, "name": top.name},
            "price": None if top is None else format_minor(top.amount_minor),
            "price_minor": None if top is None else top.amount_minor,
            "bids": 0 if top is None else top.n,
        }


@dataclass(slots=True)
class Auction:
    terms: Terms
    ends_at: int = 0
    leader: Bid | None = None
    closed: bool = False

    def __post_init__(self) -> None:
        self.ends_at = max(self.ends_at, self.terms.ends_at)

    @property
    def bids(self) -> int:
        return 0 if self.leader is None else self.leader.n

    def min_bid(self) -> int:
        if self.leader is None:
            return self.terms.start_minor
        return self.leader.amount_minor + self.terms.increment_minor

    def phase(self, now_ms: float) -> Phase:
        return "ended" if self.closed or now_ms >= self.ends_at else "open"

    def check(self, amount_minor: int, now_ms: float) -> None:
        """Raise what a bid of `amount_minor` at `now_ms` is refused with (nothing: acceptable)."""
        if self.phase(now_ms) == "ended":
            raise CommandError("the auction has ended", "auction_ended", self.price_details())
        if amount_minor < self.min_bid():
            raise CommandError(
                f"a bid must be at least {format_minor(self.min_bid())}", "bid_too_low", self.price_details()
            )

    def price_details(self) -> dict[str, Any]:
        """The current price and the lowest acceptable bid (a refused bidder is told both)."""
        price = None if self.leader is None else self.leader.amount_minor
        return {
            "auction": self.terms.id,
            "price": None if price is None else format_minor(price),
            "price_minor": price,
            "min_bid": format_minor(self.min_bid()),
            "min_bid_minor": self.min_bid(),
            "ends_at": self.ends_at,
        }

    def end_after_bid(self, now_ms: float) -> int:
        """The end once a bid is accepted at `now_ms`: pushed to now + extend if it is late."""
        extend = self.terms.extend_ms
        if extend > 0 and now_ms >= self.ends_at - extend:
            return max(self.ends_at, int(now_ms) + extend)
        return self.ends_at

    def next_bid(self, user: str, name: str, amount_minor: int, now_ms: float, request: str) -> Bid:
        """The bid to write if `amount_minor` is acceptable now (raises what it is refused with)."""
        self.check(amount_minor, now_ms)
        return Bid(self.bids + 1, user, name, amount_minor, int(now_ms), self.end_after_bid(now_ms), request)

    def accept(self, bid: Bid) -> None:
        """Count a written bid (the next in order): it leads, and the end is the one it set."""
        if bid.n != self.bids + 1:
            raise ValueError(f"bid {bid.n} is not the next after {self.bids}")
        self.leader = bid
        self.ends_at = max(self.ends_at, bid.ends_at)

    def outcome(self) -> Outcome:
        top = self.leader
        return Outcome(top is not None and top.amount_minor >= self.terms.reserve_minor, top)

    def wire(self, now_ms: float) -> dict[str, Any]:
        """What viewers see: price, leader, the end (for the countdown), never the reserve."""
        terms, top = self.terms, self.leader
        return {
            **self.price_details(),
            "title": terms.title,
            "start": format_minor(terms.start_minor),
            "start_minor": terms.start_minor,
            "increment": format_minor(terms.increment_minor),
            "increment_minor": terms.increment_minor,
            "extend_s": terms.extend_ms / 1000,
            "leader": None if top is None else {"id": top.user, "name": top.name},
            "bids": self.bids,
            "reserve_met": top is not None and top.amount_minor >= terms.reserve_minor,
            "phase": self.phase(now_ms),
        }
