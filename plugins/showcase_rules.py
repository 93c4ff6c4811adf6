"""Product showcase rules, pure: the room's product list and its pinned product, changed by
durable changes replayed in order; and the click -> order figures folded from records."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from liveroom.money import format_minor

__all__ = ["ClickTally", "Product", "Showcase"]


@dataclass(frozen=True, slots=True)
class Product:
    sku: str
    title: str
    price_minor: int  # integer minor units (liveroom.money)
    image: str  # an http(s) URL
    url: str  # the merchant's checkout link

    def record(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__dataclass_fields__}

    def wire(self) -> dict[str, Any]:
        return {**self.record(), "price": format_minor(self.price_minor)}

    @classmethod
    def from_record(cls, data: Mapping[str, Any]) -> Product:
        return cls(str(data["sku"]), str(data["title"]), int(data["price_minor"]), data["image"], data["url"])


@dataclass(slots=True)
class Showcase:
    """A room's products in the host's order, and the one pinned (or none)."""

    products: dict[str, Product] = field(default_factory=dict)
    pinned: str | None = None

    def apply(self, change: Mapping[str, Any]) -> None:
        """One durable change: `{"op": "set", "products": [...]}` replaces the list (a pinned
        product no longer in it is unpinned), `{"op": "pin", "sku"}`, `{"op": "unpin"}`."""
        op = change["op"]
        if op == "set":
            self.products = {p["sku"]: Product.from_record(p) for p in change["products"]}
            if self.pinned not in self.products:
                self.pinned = None
        elif op == "pin" and change["sku"] in self.products:
            self.pinned = change["sku"]
        elif op == "unpin":
            self.pinned = None

    def pinned_product(self) -> dict[str, Any] | None:
        return None if self.pinned is None else self.products[self.pinned].wire()

    def state(self) -> dict[str, Any]:
        return {"products": [p.wire() for p in self.products.values()], "pinned": self.pinned_product()}


@dataclass(slots=True)
class ClickTally:
    """Clicks and orders per SKU, folded in write order from the durable records: each
    product's first click per user (`click`), the flash sales (`sale`: which SKU a sale sells)
    and their orders (`order`). A product's conversion is the share of the users who clicked it
    who then ordered it in one of its flash sales (None when it has no sale)."""

    clicks: dict[str, int] = field(default_factory=dict)  # every click, from the counters
    clickers: dict[str, set[str]] = field(default_factory=dict)  # sku -> users who clicked
    buyers: dict[str, set[str]] = field(default_factory=dict)  # sku -> users who ordered
    sale_sku: dict[str, str] = field(default_factory=dict)  # sale id -> sku
    orders: dict[str, int] = field(default_factory=dict)  # sku -> orders
    after: dict[str, int] = field(default_factory=dict)  # record kind -> last position read
    max_users: int = 1_000_000  # users remembered per SKU; past it the sets stop growing

    def read(self, kind: str, position: int) -> None:
        self.after[kind] = max(self.after.get(kind, 0), position)

    def click(self, sku: str, user: str) -> None:
        _add(self.clickers.setdefault(sku, set()), user, self.max_users)

    def sale(self, sale: str, sku: str) -> None:
        self.sale_sku[sale] = sku

    def order(self, sale: str, user: str) -> None:
        sku = self.sale_sku.get(sale)
        if sku is not None:
            self.orders[sku] = self.orders.get(sku, 0) + 1
            _add(self.buyers.setdefault(sku, set()), user, self.max_users)

    def figures(self, sku: str) -> dict[str, Any]:
        clickers = self.clickers.get(sku, set())
        has_sale = sku in self.sale_sku.values()
        converted = len(clickers & self.buyers.get(sku, set()))
        conversion = round(converted / len(clickers), 4) if has_sale and clickers else None
        return {
            "clicks": self.clicks.get(sku, 0),
            "clickers": len(clickers),
            "orders": self.orders.get(sku, 0) if has_sale else None,
            "conversion": conversion,
        }


def _add(users: set[str], user: str, limit: int) -> None:
    if len(users) < limit:
        users.add(user)
