"""A durable record: written once per `(kind, key)`, kept in write order."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Record"]


@dataclass(frozen=True, slots=True)
class Record:
    kind: str
    key: str
    room: str
    data: Mapping[str, Any]
    created_ms: int
    # Position in the store's log of records (ascending in write order), for paging.
    position: int = field(default=0, compare=False)
