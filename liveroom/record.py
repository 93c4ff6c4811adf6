"""A durable record: written once per `(kind, key)`, kept in write order."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Record", "derived_id"]


@dataclass(frozen=True, slots=True)
class Record:
    kind: str
    key: str
    room: str
    data: Mapping[str, Any]
    created_ms: int
    # Position in the store's log of records (ascending in write order), for paging.
    position: int = field(default=0, compare=False)


def derived_id(prefix: str, *parts: str) -> str:
    """A stable id made from what identifies a request (room, caller, `request_id`...): a retried
    command makes the same id, so its write-once record (or `once` publish) is not repeated."""
    digest = hashlib.blake2b("\0".join(parts).encode(), digest_size=8).hexdigest()
    return f"{prefix}{digest}"
