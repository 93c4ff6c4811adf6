"""One client connection: who it is, which rooms it joined, and how bytes reach it.

A WebSocket connection is written to directly: the same pre-built frame for every member
of a room, one `transport.write` per connection per tick, no task or queue per recipient.
A long-polling connection (rare; browsers upgrade) gets the message through its session's
queue for the next GET (liveroom/polling.py). Either way the outbound buffer is bounded:
past the limit the connection is marked slow, and the hub closes it as `slow_consumer`.

A connection is live until it starts closing (`closing`: the server is closing it, or the
client went away). From then on it is no room's member (the node detaches it at once, not
after its queued commands), and `deliver` writes nothing. `deliver` never raises: a write
that fails marks the connection for dropping with `drop_reason`, and the other members of
the room get their items whatever happens to this one.

The kernel's send buffer is fixed per socket (`send_buffer_bytes`) rather than left to
autotune: a stalled reader would otherwise hide megabytes in the kernel, where neither
the limit nor the operator sees them. What does not fit there waits in the transport's
buffer, which is what `outbound_buffer_bytes` bounds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from typing import Any

from liveroom.auth import Identity
from liveroom.frames import batch_message, msgpack_batch_message, ws_binary_frame, ws_text_frame
from liveroom.ratelimit import TokenBucket

__all__ = ["Connection"]

log = logging.getLogger(__name__)


class Connection:
    __slots__ = (
        "_transport",
        "bucket",
        "closing",
        "drop_reason",
        "eio_sid",
        "eio_socket",
        "identity",
        "limit_bytes",
        "msgpack",
        "rooms",
        "send_buffer_bytes",
        "sid",
    )

    def __init__(
        self,
        sid: str,
        eio_sid: str,
        identity: Identity,
        eio_socket: Any,
        bucket: TokenBucket,
        limit_bytes: int,
        send_buffer_bytes: int = 131_072,
        msgpack: bool = False,
    ) -> None:
        self.sid = sid
        self.eio_sid = eio_sid
        self.identity = identity
        self.eio_socket = eio_socket
        self.bucket = bucket
        self.limit_bytes = limit_bytes
        self.send_buffer_bytes = send_buffer_bytes
        # Connected through the msgpack endpoint: batches go as msgpack binary packets.
        self.msgpack = msgpack
        self.rooms: set[str] = set()
        self._transport: asyncio.Transport | None = None
        self.closing = False
        self.drop_reason = "slow_consumer"  # why `deliver` answered False

    @property
    def transport(self) -> asyncio.Transport | None:
        """Set once the connection runs over WebSocket (at once, or after the polling upgrade)."""
        return self._transport

    @transport.setter
    def transport(self, transport: asyncio.Transport | None) -> None:
        self._transport = transport
        sock = None if transport is None else transport.get_extra_info("socket")
        if sock is not None and self.send_buffer_bytes > 0:
            with contextlib.suppress(OSError):  # not a TCP socket: nothing to bound
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, self.send_buffer_bytes)

    def deliver(self, frame: bytes, message: bytes) -> bool:
        """Send one Engine.IO message (`frame` is it as a WebSocket frame).

        False when the connection must be dropped (`drop_reason` says why: too slow, or
        its write failed). Never raises; writes nothing once the connection is closing."""
        try:
            transport = self._transport
            if transport is not None and self.eio_socket.upgraded:
                if transport.is_closing():
                    return True
                if transport.get_write_buffer_size() > self.limit_bytes:
                    self.drop_reason = "slow_consumer"
                    return False
                transport.write(frame)
                return True
            if self.closing:
                return True
            return self._queue_polling(message)
        except Exception:  # a broken transport costs this member, never the room's flush
            log.exception("writing to connection %s failed", self.sid)
            self.drop_reason = "transport_error"
            return False

    @property
    def live(self) -> bool:
        """Not closing, and with a way to write to: what every room member must be at a flush.

        (A transport already closing under us is tolerated: writes to it are skipped, and its
        `connection_lost` detaches the connection on the next turn of the loop.)"""
        if self.closing:
            return False
        if self._transport is not None:
            return True
        return bool(self.eio_socket.polling)  # a long-polling session still open

    def frames_for(
        self, room_json: bytes, items: list[bytes], skipped: list[list[int]] | None = None
    ) -> tuple[bytes, bytes]:
        """(WebSocket frame, Engine.IO message) of a batch in this connection's wire format."""
        if self.msgpack:
            message = msgpack_batch_message(room_json, items, skipped)
            return ws_binary_frame(message), message
        message = batch_message(room_json, items, skipped)
        return ws_text_frame(message), message

    def send_batch(self, room_json: bytes, items: list[bytes]) -> bool:
        """A batch for this connection alone (personal items, a joiner's catch-up, a farewell)."""
        return self.deliver(*self.frames_for(room_json, items))

    def _queue_polling(self, message: bytes) -> bool:
        # The session's queue for the client's next GET, bounded in packets and bytes.
        if self.eio_socket.queue_message(message):
            return True
        self.drop_reason = "slow_consumer"
        return False
