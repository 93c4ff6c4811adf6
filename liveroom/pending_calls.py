"""Calls sent as messages, each answered by a reply that names the call's number.

A node's forwards to a room's owner (`liveroom.cluster`) and a worker's calls to its
supervisor (`liveroom.ipc_client`) both send a numbered call and wait for the reply with that
number. A reply to a call no longer waited for (it timed out, or its caller gave up) is dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import Callable, Iterator
from typing import Any

__all__ = ["PendingCalls"]


class PendingCalls:
    def __init__(self) -> None:
        self._waiting: dict[int, asyncio.Future[Any]] = {}
        self._numbers = itertools.count(1)

    @contextlib.contextmanager
    def call(self) -> Iterator[tuple[int, asyncio.Future[Any]]]:
        """A new call's number and the future its reply settles; forgotten when the block ends."""
        number = next(self._numbers)
        waiting = self._waiting[number] = asyncio.get_running_loop().create_future()
        try:
            yield number, waiting
        finally:
            self._waiting.pop(number, None)

    def settle(self, number: int, ok: bool, value: Any, error: Callable[[Any], Exception]) -> None:
        """The reply to call `number`: its result `value`, or, not ok, the error `value` describes."""
        waiting = self._waiting.get(number)
        if waiting is not None and not waiting.done():
            if ok:
                waiting.set_result(value)
            else:
                waiting.set_exception(error(value))

    def fail_all(self, error: Exception) -> None:
        """Every call still waiting fails with `error` (the channel is gone)."""
        for waiting in self._waiting.values():
            if not waiting.done():
                waiting.set_exception(error)
