"""Taking Engine.IO WebSocket openings below python-engineio (see engine_session.py).

`DirectEngine.accept` checks that a request head opens an Engine.IO v4 WebSocket with no
session yet (any mistake is left to python-engineio, which answers it as before), makes
the `EngineSession`, writes the 101 and the Engine.IO open packet in one write, and makes
the session known to python-engineio and python-socketio by its sid.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

import orjson

from liveroom.engine_session import EngineSession
from liveroom.frames import ws_text_frame
from liveroom.ping_wheel import PingWheel
from liveroom.websocket import RequestHead, upgrade_response

if TYPE_CHECKING:
    from liveroom.sio import SocketServer

__all__ = ["DirectEngine"]


class DirectEngine:
    """Accepts Engine.IO WebSocket openings for one `SocketServer` and runs their sessions."""

    def __init__(self, server: SocketServer) -> None:
        self.server = server
        self._wheel: PingWheel | None = None

    @property
    def wheel(self) -> PingWheel:
        if self._wheel is None:  # made on first use: the ping settings are final by then
            shortest = min(self.ping_interval_s, self.ping_timeout_s)
            self._wheel = PingWheel(max(0.05, min(1.0, shortest / 4)))
        return self._wheel

    @property
    def ping_interval_s(self) -> float:
        return float(self.server.eio.ping_interval)

    @property
    def ping_timeout_s(self) -> float:
        return float(self.server.eio.ping_timeout)

    def accept(self, transport: asyncio.Transport, head: RequestHead, rest: bytes) -> bool:
        """Take the connection if `head` opens an Engine.IO v4 WebSocket with no session yet.

        False leaves it to python-engineio's HTTP path, which also answers every mistake
        (wrong version, bad origin, a polling upgrade) with its usual 400.
        """
        key = head.headers.get("sec-websocket-key")
        if not key or not _is_websocket_opening(head):
            return False
        environ = _environ(head, transport)
        origin = head.headers.get("origin")
        if origin is not None and not self._origin_allowed(origin, environ):
            return False
        sid: str = self.server.eio.generate_id()
        session = EngineSession(self, sid, transport)
        transport.set_protocol(session)  # (uvloop and asyncio set TCP_NODELAY on TCP transports)
        transport.write(upgrade_response(key) + ws_text_frame(self._open_packet(sid)))
        self.server.register_session(session, transport, environ)
        session.start(rest)
        return True

    def _open_packet(self, sid: str) -> bytes:
        return b"0" + orjson.dumps(
            {
                "sid": sid,
                "upgrades": [],
                "pingInterval": int(self.ping_interval_s * 1000),
                "pingTimeout": int(self.ping_timeout_s * 1000),
                "maxPayload": self.server.eio.max_http_buffer_size,
            }
        )

    def _origin_allowed(self, origin: str, environ: dict[str, Any]) -> bool:
        allowed = self.server.eio.cors_allowed_origins
        if callable(allowed):
            return bool(allowed(origin, environ))
        if allowed == "*" or allowed is None:
            return True
        return origin in (allowed if isinstance(allowed, list) else [allowed])


def _is_websocket_opening(head: RequestHead) -> bool:
    query = parse_qs(head.query)
    return (
        head.method == "GET"
        and query.get("EIO") == ["4"]
        and query.get("transport") == ["websocket"]
        and "sid" not in query
        and head.has_token("upgrade", "websocket")
        and head.has_token("connection", "upgrade")
        and head.headers.get("sec-websocket-version") == "13"
    )


def _environ(head: RequestHead, transport: asyncio.Transport) -> dict[str, Any]:
    """The WSGI-style environ python-socketio hands to the connect handler (kept small:
    it lives as long as the connection)."""
    peer = transport.get_extra_info("peername")
    environ: dict[str, Any] = {
        "REQUEST_METHOD": head.method,
        "PATH_INFO": head.path,
        "QUERY_STRING": head.query,
        "REMOTE_ADDR": peer[0] if isinstance(peer, tuple) else "",
    }
    for name in ("host", "origin", "user-agent", "x-forwarded-for"):
        if name in head.headers:
            environ["HTTP_" + name.upper().replace("-", "_")] = head.headers[name]
    return environ
