"""Flash-sale rules, pure: a sale's phase at a server time, what its wire items carry, and the
room's running sales figures (orders, units, GMV, distinct buyers) folded from its orders."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

__all__ = ["Phase", "Sale", "SalesTally", "phase"]

Phase = Literal["scheduled", "open", "ended"]


@dataclass(frozen=True, slots=True)
class Sale:
    id: str
    room: str
    sku: str
    title: str
    price: float
    stock: int
    per_user_limit: int
    starts_at: int  # server ms
    ends_at: int  # server ms

    def wire(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_wire(cls, data: Any) -> Sale:
        return cls(**{key: data[key] for key in cls.__dataclass_fields__})


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
    gmv: float = 0.0
    buyers: set[str] = field(default_factory=set)

    def add(self, order: Mapping[str, Any], price: float, position: int) -> None:
        self.after = max(self.after, position)
        self.orders += 1
        self.units += int(order["qty"])
        self.gmv += int(order["qty"]) * price
        self.buyers.add(str(order["user"]))

    def wire(self) -> dict[str, Any]:
        return {
            "orders": self.orders,
            "units": self.units,
            "gmv": round(self.gmv, 2),
            "buyers": len(self.buyers),
        }
