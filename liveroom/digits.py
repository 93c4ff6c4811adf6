"""Digits in text a client sent, as `int()` reads them."""

from __future__ import annotations

__all__ = ["is_digits"]


def is_digits(text: str) -> bool:
    """`text` is one or more ASCII digits. `str.isdigit()` alone also says yes to `²` or `¹`,
    which `int()` refuses: a Socket.IO packet `0¹` once made the decoder raise ValueError
    (found by the property test of `decode_text`)."""
    return text.isascii() and text.isdigit()
