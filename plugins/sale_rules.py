"""Flash-sale rules, pure: a sale's phase at a server time, what its wire items carry, and the
room's running sales figures (orders, units, GMV, distinct buyers) folded from its orders."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from liveroom.money import format_minor, to_minor

__all__ = ["Phase", "Sale", "SalesTally", "phase"]

Phase = Literal["scheduled", "open", "ended"]


@dataclass(frozen=True, slots=True)
class Sale:
    id: str
    room: str
    sku: str
    title: str
    price_minor: int  # in minor units (liveroom.money)
    stock: int
    per_user_limit: int
    starts_at: int  # server ms
    ends_at: int  # server ms
    tiers: tuple[str, ...] = ()  # a VIP sale: only tokens whose `tier` is one of these may buy

    def record(self) -> dict[str, Any]:
        """What the durable record keeps (money in minor units only)."""
        return {name: _plain(getattr(self, name)) for name in self.__dataclass_fields__}

    def wire(self) -> dict[str, Any]:
        """What clients see: the price also as a decimal string."""
        return {**self.record(), "price": format_minor(self.price_minor)}

    @classmethod
    def from_wire(cls, data: Any) -> Sale:
        fields = {key: data[key] for key in cls.__dataclass_fields__ if key in data}
        fields["tiers"] = tuple(fields.get("tiers", ()))
        if "price_minor" not in fields:  # a record written before prices were minor units
            fields["price_minor"] = to_minor(round(float(data["price"]), 2))
        return cls(**fields)


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def phase(sale: Sale, now_ms: float) -> Phase:
    """Only the server's clock opens and closes a sale: `starts_at <= now < ends_at` is open."""
    if now_ms < sale.starts_at:
        return "scheduled"
    if now_ms < sale.ends_at:
        return "open"
    return "ended"


@dataclass(slots=True)
class SalesTally:
    """A room's orders folded one by one, in write order: `after` is the last position read,
    so the next read starts there and every order counts once."""

    after: int = 0
    orders: int = 0
    units: int = 0
    gmv_minor: int = 0
    buyers: set[str] = field(default_factory=set)
    max_buyers: int = 1_000_000  # distinct buyers remembered; past it, `buyers` stops growing

    def add(self, order: Mapping[str, Any], price_minor: int, position: int) -> None:
        self.after = max(self.after, position)
        self.orders += 1
        self.units += int(order["qty"])
        self.gmv_minor += int(order["qty"]) * price_minor
        if len(self.buyers) < self.max_buyers:
            self.buyers.add(str(order["user"]))

    def wire(self) -> dict[str, Any]:
        return {
            "orders": self.orders,
            "units": self.units,
            "gmv": format_minor(self.gmv_minor),
            "gmv_minor": self.gmv_minor,
            "buyers": len(self.buyers),
        }
