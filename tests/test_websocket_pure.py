"""The WebSocket protocol without I/O: handshake and client frames (RFC 6455)."""

from __future__ import annotations

import asyncio
import os
import struct

import pytest

from liveroom.ping_wheel import PingWheel
from liveroom.websocket import (
    BINARY,
    CLOSE,
    PING,
    TEXT,
    FrameReader,
    WebSocketError,
    accept_key,
    parse_request_head,
)


def client_frame(
    opcode: int, payload: bytes, final: bool = True, masked: bool = True, mask: bytes = b"\x9a\x3c\x51\xe7"
) -> bytes:
    first = (0x80 if final else 0) | opcode
    length = len(payload)
    mask_bit = 0x80 if masked else 0
    if length < 126:
        header = struct.pack("!BB", first, mask_bit | length)
    elif length < 65536:
        header = struct.pack("!BBH", first, mask_bit | 126, length)
    else:
        header = struct.pack("!BBQ", first, mask_bit | 127, length)
    if not masked:
        return header + payload
    return header + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


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


def test_frames_are_unmasked_and_split_anywhere() -> None:
    reader = FrameReader(1 << 20)
    text = '40{"token":"弹幕"}'.encode()
    big = os.urandom(70_000)
    wire = (
        client_frame(TEXT, text)
        + client_frame(BINARY, big, mask=os.urandom(4))
        + client_frame(TEXT, b"x" * 300)
    )
    messages = []
    for i in range(0, len(wire), 7):  # seven bytes at a time
        messages += reader.feed(wire[i : i + 7])
    assert messages == [(TEXT, text), (BINARY, big), (TEXT, b"x" * 300)]


def test_fragments_are_joined_and_control_frames_pass_between_them() -> None:
    reader = FrameReader(1024)
    wire = (
        client_frame(TEXT, b"42[", final=False)
        + client_frame(PING, b"hi")
        + client_frame(0x0, b'"a"', final=False)
        + client_frame(0x0, b"]")
    )
    assert reader.feed(wire) == [(PING, b"hi"), (TEXT, b'42["a"]')]


@pytest.mark.parametrize(
    ("wire", "code"),
    [
        (client_frame(TEXT, b"hi", masked=False), 1002),  # clients must mask
        (client_frame(TEXT, b"x" * 2000), 1009),  # over the limit, refused from the header
        (client_frame(PING, b"x" * 126), 1002),  # control frames are short
        (client_frame(CLOSE, b"", final=False), 1002),  # and never fragmented
        (client_frame(0x0, b"x"), 1002),  # a continuation of nothing
        (client_frame(0x3, b"x"), 1002),  # a reserved opcode
        (bytes([0xC1]) + client_frame(TEXT, b"x")[1:], 1002),  # RSV1 without an extension
        (client_frame(TEXT, b"a", final=False) + client_frame(TEXT, b"b"), 1002),
    ],
)
def test_protocol_errors_carry_their_close_code(wire: bytes, code: int) -> None:
    with pytest.raises(WebSocketError) as raised:
        FrameReader(1024).feed(wire)
    assert raised.value.code == code


def test_the_size_limit_counts_every_fragment() -> None:
    reader = FrameReader(10)
    assert reader.feed(client_frame(TEXT, b"x" * 6, final=False)) == []
    with pytest.raises(WebSocketError) as raised:
        reader.feed(client_frame(0x0, b"x" * 6))
    assert raised.value.code == 1009


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
