"""Bad input through the real surface: every malformed command gets a clear error ack,
and the server and its rooms keep working."""

from __future__ import annotations

import asyncio
import re
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support import ServerProcess, Viewer

SNAKE = re.compile(r"^[a-z][a-z0-9_]*$")
ROOM = "fuzz-room"


class LoopThread:
    """An event loop in a thread, so hypothesis (sync) can drive one long-lived client."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coroutine: Any, timeout: float = 15) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()


@pytest.fixture(scope="module")
def fuzzer(server: ServerProcess) -> Iterator[tuple[LoopThread, Viewer]]:
    loop = LoopThread()
    viewer: Viewer = loop.run(_connect(server))
    yield loop, viewer
    loop.run(viewer.close())
    loop.stop()


async def _connect(server: ServerProcess) -> Viewer:
    viewer = Viewer(server.url, "fuzzer", role="moderator", reconnection=False)
    await viewer.connect()
    await viewer.join(ROOM)
    return viewer


def assert_error_ack(ack: Any, *codes: str) -> None:
    assert isinstance(ack, dict) and ack["ok"] is False, ack
    error = ack["error"]
    assert SNAKE.match(error["code"]) and isinstance(error["message"], str) and error["message"], ack
    if codes:
        assert error["code"] in codes, ack


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False)
    | st.text(max_size=50),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=10), inner, max_size=5),
    max_leaves=12,
)
commands = st.sampled_from(["join", "leave", "time", "danmaku.send"]) | st.text(min_size=1, max_size=30)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(event=commands, payload=json_values)
def test_any_payload_gets_a_well_formed_ack(
    fuzzer: tuple[LoopThread, Viewer], event: str, payload: Any
) -> None:
    loop, viewer = fuzzer
    if event in ("connect", "disconnect", "connect_error", "message"):
        return  # names the client library itself refuses to emit
    ack = loop.run(viewer.call(event, payload))
    assert isinstance(ack, dict) and isinstance(ack.get("ok"), bool), ack
    if not ack["ok"]:
        assert_error_ack(ack)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    room=json_values, text=json_values, extra=st.dictionaries(st.text(max_size=8), json_values, max_size=3)
)
def test_danmaku_shapes(
    fuzzer: tuple[LoopThread, Viewer], room: Any, text: Any, extra: dict[str, Any]
) -> None:
    loop, viewer = fuzzer
    ack = loop.run(viewer.call("danmaku.send", {**extra, "room": room, "text": text}))
    if ack["ok"]:
        assert room == ROOM and isinstance(text, str)
    else:
        assert_error_ack(ack)


async def test_specific_malformed_commands(server: ServerProcess, viewers: list[Viewer]) -> None:
    viewer = Viewer(server.url, "malformed")
    viewers.append(viewer)
    await viewer.connect()
    client = viewer.client
    assert_error_ack(await client.call("join", timeout=5), "bad_request")  # no argument
    assert_error_ack(await client.call("join", ({"room": "a"}, {"room": "b"}), timeout=5), "bad_request")
    assert_error_ack(await client.call("join", [1, 2], timeout=5), "bad_request")
    assert_error_ack(await client.call("join", "r1", timeout=5), "bad_request")
    assert_error_ack(await client.call("join", {"room": "has space"}, timeout=5), "bad_request")
    assert_error_ack(await client.call("join", {"room": "r", "since": -3}, timeout=5), "bad_request")
    assert_error_ack(await client.call("no.such.command", {}, timeout=5), "unknown_event")
    assert_error_ack(await client.call("*", {}, timeout=5), "bad_request")
    big = {"room": "r1", "text": "x" * 20_000}
    assert_error_ack(await client.call("danmaku.send", big, timeout=5), "payload_too_large")
    for n in range(3):
        await viewer.join(f"many-{n}")
    # The server still answers normally afterwards.
    assert (await client.call("time", {}, timeout=5))["ok"] is True


async def test_raw_garbage_packets_do_not_hurt_the_server(
    server: ServerProcess, viewers: list[Viewer]
) -> None:
    """Hand-made Engine.IO/Socket.IO packets a library would never send."""
    import aiohttp
    from support import token

    url = server.url.replace("http", "ws") + "/socket.io/?EIO=4&transport=websocket"
    async with aiohttp.ClientSession() as session, session.ws_connect(url) as ws:
        await ws.receive()  # the Engine.IO open packet
        await ws.send_str('40{"token":"' + token("raw") + '"}')
        assert (await ws.receive()).data.startswith("40")
        garbage = [
            "42",
            "4",
            "42[",
            '42["join"',
            "42{}",
            "42[1,2]",
            '42["connect",{}]',
            "49",
            "4x",
            '421["disconnect",{}]',
            "422[]",
            "423[5]",
            '424["join",{"room":"r"},{"x":1}]',
            "\x00\xff",
        ]
        for packet in garbage:
            await ws.send_str(packet)
        await ws.send_bytes(b"\x00\x01\x02")
        await ws.send_str('4299["time",{}]')
        acks = []
        while True:
            message = await asyncio.wait_for(ws.receive(), 5)
            if message.type != aiohttp.WSMsgType.TEXT:
                break
            if message.data.startswith("43"):
                acks.append(message.data)
            if message.data.startswith("4399"):
                break
        answered = {ack[2 : ack.index("[")]: ack for ack in acks}
        assert '"ok":true' in answered["99"]
        for ack_id in ("1", "2", "3", "4"):  # every garbage event that asked for an ack got an error
            assert '"code":"bad_request"' in answered[ack_id], acks
    viewer = Viewer(server.url, "after-garbage")
    viewers.append(viewer)
    await viewer.connect()
    assert (await viewer.call("time", {}))["ok"] is True


def test_no_server_errors_were_logged(server: ServerProcess) -> None:
    log = server.log()
    assert "Traceback" not in log, log[-3000:]
