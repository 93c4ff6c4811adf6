"""Money as integer minor units (cents, fen): exact in records, on the wire and in sums.

A price arrives as a number or a decimal string (`9.9`, `"9.90"`, `990` means 990.00) and
is kept as an int count of minor units (`990`); it goes out as both the int
(`price_minor`) and a decimal string (`price`, `"9.90"`), never as a float. A value with
more decimals than the currency has, negative, not finite, or above `MAX_MINOR` is refused.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

from liveroom.errors import BadRequest

__all__ = ["MAX_MINOR", "MINOR_DIGITS", "Money", "format_minor", "to_minor"]

MINOR_DIGITS = 2  # minor units per major unit: 10 ** MINOR_DIGITS
MAX_MINOR = 10**12  # ten billion in major units: far above any one price or order
Money = int | float | str


def to_minor(value: Money, field: str = "price", digits: int = MINOR_DIGITS) -> int:
    """A price as minor units, or `BadRequest` saying what is wrong with it."""
    if isinstance(value, bool):
        raise BadRequest(f"{field} must be a number or a decimal string")
    try:
        amount = Decimal(str(value).strip()) if isinstance(value, str) else Decimal(repr(value))
    except InvalidOperation:
        raise BadRequest(f"{field} must be a number or a decimal string, not {str(value)[:32]!r}") from None
    if not amount.is_finite() or amount < 0:
        raise BadRequest(f"{field} must be a finite amount of at least 0")
    minor = amount.scaleb(digits)
    if minor != minor.to_integral_value():
        raise BadRequest(f"{field} has more than {digits} decimal places")
    if minor > MAX_MINOR:
        raise BadRequest(f"{field} is at most {format_minor(MAX_MINOR, digits)}")
    return int(minor)


def format_minor(minor: int, digits: int = MINOR_DIGITS) -> str:
    """Minor units as the decimal string clients show (`990` -> `"9.90"`)."""
    return str(Decimal(minor).scaleb(-digits).quantize(Decimal(1).scaleb(-digits)))
