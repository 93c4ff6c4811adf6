"""The WebSocket opening handshake without I/O (RFC 6455), and the ping wheel; the frames
of an open connection are tested in test_wire_websocket.py."""

from __future__ import annotations

import asyncio

import pytest

from liveroom.ping_wheel import PingWheel
from liveroom.websocket import accept_key, parse_request_head


def test_accept_key_matches_the_rfc_example() -> None:
    assert accept_key("dGhlIHNhbXBsZSBub25jZQ==") == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="


def test_request_head_is_parsed_with_lower_case_names_and_joined_repeats() -> None:
    head = parse_request_head(
        b"GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\nHost: a\r\n"
        b"Connection: keep-alive, Upgrade\r\nX-A: 1\r\nx-a: 2\r\n\r\n"
    )
    assert head is not None
    assert (head.method, head.path, head.query) == ("GET", "/socket.io/", "EIO=4&transport=websocket")
    assert head.headers["x-a"] == "1, 2"
    assert head.has_token("connection", "upgrade") and not head.has_token("connection", "close")


@pytest.mark.parametrize(
    "head",
    [
        b"GET /\r\n\r\n",
        b"GET / HTTP/1.0\r\n\r\n",
        b"GET / HTTP/1.1\r\nno colon\r\n\r\n",
        b"GET / HTTP/1.1\r\n :x\r\n\r\n",
    ],
)
def test_malformed_heads_are_left_to_the_http_server(head: bytes) -> None:
    assert parse_request_head(head) is None


class _Session:
    wheel_slot: int | None = None


async def test_the_ping_wheel_runs_each_sessions_latest_callback_once_in_time_order() -> None:
    wheel = PingWheel(0.01)
    ran: list[str] = []
    a, b, c, d = _Session(), _Session(), _Session(), _Session()
    started = asyncio.get_running_loop().time()
    wheel.schedule(a, 0.05, lambda: ran.append("a"))
    wheel.schedule(b, 0.02, lambda: ran.append("b"))
    wheel.schedule(c, 0.03, lambda: ran.append("c-first"))
    wheel.schedule(c, 0.04, lambda: ran.append("c"))  # replaces c's first
    wheel.schedule(d, 0.03, lambda: [][0])  # a failing callback stops nothing else
    wheel.cancel(b)
    await asyncio.sleep(0.12)
    assert ran == ["c", "a"]
    assert asyncio.get_running_loop().time() - started >= 0.05
    assert a.wheel_slot is None and b.wheel_slot is None
