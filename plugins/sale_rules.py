"""Flash-sale rules, pure: a sale's phase at a server time, and what its wire items carry."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

__all__ = ["Phase", "Sale", "phase"]

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
