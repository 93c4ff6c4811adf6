"""Engine.IO WebSocket openings, taken from the front door (front_door.py).

`DirectEngine.accept` takes a request head that opens an Engine.IO v4 WebSocket: a new
session (writes the 101 and the open packet in one write) or a long-polling session's
upgrade (`sid` in the query; writes the 101, then the session waits for the probe). Any
mistake (wrong version, refused origin, unknown session, too many connections from one
address) is not answered here: the request goes on to aiohttp, where the Engine.IO
route (polling.py) answers it with a 4xx and a JSON body.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING
from urllib.parse import parse_qs

from liveroom.frames import ws_text_frame
from liveroom.websocket import RequestHead, upgrade_response

if TYPE_CHECKING:
    from liveroom.sio import SocketServer

__all__ = ["DirectEngine"]


class DirectEngine:
    """Accepts Engine.IO WebSocket openings for one `SocketServer`."""

    def __init__(self, server: SocketServer) -> None:
        self.server = server

    def accept(
        self,
        transport: asyncio.Transport,
        head: RequestHead,
        rest: bytes,
        before: Callable[[], None] = lambda: None,
    ) -> bool:
        """Take the connection if `head` opens (or upgrades to) an Engine.IO v4 WebSocket;
        `before` runs once it is certain, before anything is written."""
        key = head.headers.get("sec-websocket-key")
        query = parse_qs(head.query)
        if not key or not _is_websocket_opening(head, query):
            return False
        origin = head.headers.get("origin")
        if origin is not None and not self.server.allow_origin(origin, head.headers.get("host")):
            return False
        server = self.server
        sid = query.get("sid")
        if sid is not None:
            session = server.sessions.get(sid[0])
            if session is None or len(sid) != 1 or not session.can_upgrade():
                return False
            before()
            transport.set_protocol(session)
            transport.write(upgrade_response(key))
            session.begin_upgrade(transport, rest)
            return True
        peer = transport.get_extra_info("peername")
        new = server.open_session(peer[0] if isinstance(peer, tuple) else "")
        if new is None:
            return False
        before()
        transport.set_protocol(new)  # (uvloop and asyncio set TCP_NODELAY on TCP transports)
        transport.write(upgrade_response(key) + ws_text_frame(server.open_packet(new.eio_sid, [])))
        new.open_websocket(transport, rest)
        return True


def _is_websocket_opening(head: RequestHead, query: dict[str, list[str]]) -> bool:
    return (
        head.method == "GET"
        and query.get("EIO") == ["4"]
        and query.get("transport") == ["websocket"]
        and head.has_token("upgrade", "websocket")
        and head.has_token("connection", "upgrade")
        and head.headers.get("sec-websocket-version") == "13"
    )
