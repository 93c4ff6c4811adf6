"""WebSocket-first connections served below python-engineio (engine_session.py), through
a real server: the Engine.IO handshake, pings and their timeout, protocol errors, and
everything else still reaching aiohttp through the front door."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import aiohttp
import orjson
import pytest
from support import ServerProcess, Viewer, module_server, token

PING_INTERVAL_S = 1.0
PING_TIMEOUT_S = 0.5


server = module_server(
    "server",
    {
        "LIVEROOM_SERVER_PING_INTERVAL_S": str(PING_INTERVAL_S),
        "LIVEROOM_SERVER_PING_TIMEOUT_S": str(PING_TIMEOUT_S),
        "LIVEROOM_SERVER_REQUEST_HEAD_TIMEOUT_S": "0.5",
        "LIVEROOM_LIMITS_MAX_MESSAGE_BYTES": "4096",
        "LIVEROOM_LIMITS_MAX_COMMAND_BYTES": "1024",
    },
)


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


def ws_url(server: ServerProcess) -> str:
    return server.url.replace("http", "ws") + "/socket.io/?EIO=4&transport=websocket"


async def open_socketio(
    http: aiohttp.ClientSession, server: ServerProcess
) -> aiohttp.ClientWebSocketResponse:
    ws = await http.ws_connect(ws_url(server), autoping=False)
    opened = await ws.receive_str()
    assert opened.startswith("0")
    handshake = orjson.loads(opened[1:])
    assert handshake["upgrades"] == [] and handshake["pingInterval"] == PING_INTERVAL_S * 1000
    assert handshake["pingTimeout"] == PING_TIMEOUT_S * 1000 and handshake["maxPayload"] == 4096
    await ws.send_str("40" + orjson.dumps({"token": token("raw")}).decode())
    connected = await ws.receive_str()
    assert connected.startswith("40") and "sid" in orjson.loads(connected[2:])
    return ws


async def test_a_raw_client_joins_and_gets_its_ack(
    server: ServerProcess, http: aiohttp.ClientSession
) -> None:
    ws = await open_socketio(http, server)
    await ws.send_str('421["join",{"room":"direct"}]')
    ack = await ws.receive_str()
    assert ack.startswith("431[") and orjson.loads(ack[3:])[0]["ok"] is True
    await ws.close()


async def test_pings_keep_an_answering_client_and_drop_a_silent_one(
    server: ServerProcess, http: aiohttp.ClientSession
) -> None:
    answering = await open_socketio(http, server)
    silent = await open_socketio(http, server)
    pings = 0
    deadline = time.monotonic() + PING_INTERVAL_S * 2 + PING_TIMEOUT_S + 0.5
    while time.monotonic() < deadline:
        message = await answering.receive(timeout=2)
        if message.data == "2":
            pings += 1
            await answering.send_str("3")
    assert pings >= 2 and not answering.closed
    # The silent one got one ping, no pong went back, and the server hung up.
    seen = [await silent.receive(timeout=1) for _ in range(2)]
    assert seen[0].data == "2" and seen[1].type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
    await answering.close()


async def test_a_websocket_that_never_connects_socketio_is_closed(
    server: ServerProcess, http: aiohttp.ClientSession
) -> None:
    ws = await http.ws_connect(ws_url(server), autoping=False)
    assert (await ws.receive_str()).startswith("0")
    closing = await ws.receive(timeout=PING_INTERVAL_S + 1)
    assert closing.data == "1"  # Engine.IO close, then the WebSocket close
    final = await ws.receive(timeout=1)
    assert final.type == aiohttp.WSMsgType.CLOSE and final.extra == "connect_timeout"


@pytest.mark.parametrize(
    ("send", "code"),
    [
        (lambda ws: ws.send_bytes(b"x" * 5000), 1009),  # over max_message_bytes
        (lambda ws: ws._writer.send_frame(b"\xff\xfe", aiohttp.WSMsgType.TEXT), 1007),  # not UTF-8
    ],
)
async def test_protocol_errors_close_with_their_code(
    server: ServerProcess, http: aiohttp.ClientSession, send: object, code: int
) -> None:
    ws = await open_socketio(http, server)
    await send(ws)  # type: ignore[operator]
    while (message := await ws.receive(timeout=2)).type == aiohttp.WSMsgType.TEXT:
        pass
    assert message.type == aiohttp.WSMsgType.CLOSE and message.data == code


async def test_garbage_and_an_oversized_command_leave_the_connection_working(
    server: ServerProcess, http: aiohttp.ClientSession
) -> None:
    ws = await open_socketio(http, server)
    await ws.send_str("not engine.io")  # skipped
    await ws.send_str('427["join",{"room":"' + "x" * 2000 + '"}]')
    assert orjson.loads((await ws.receive_str())[3:])[0]["error"]["code"] == "payload_too_large"
    await ws.send_str('428["time"]')
    assert (await ws.receive_str()).startswith("438[")
    await ws.close()


async def test_http_still_reaches_aiohttp_with_keep_alive(server: ServerProcess) -> None:
    connector = aiohttp.TCPConnector(limit=1)
    async with aiohttp.ClientSession(connector=connector) as http:
        for _ in range(3):  # one connection, three requests
            async with http.get(server.url + "/healthz") as response:
                assert response.status == 200
        async with http.get(server.url + "/socket.io/?EIO=3&transport=websocket") as response:
            assert response.status == 400  # the Engine.IO errors are python-engineio's, as before


async def test_a_bad_origin_is_refused_and_polling_still_works(server: ServerProcess) -> None:
    async with aiohttp.ClientSession() as http:
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await http.ws_connect(ws_url(server), headers={"Origin": "https://evil.example"})
        assert refused.value.status == 400
    poller = Viewer(server.url, "poller")
    await poller.connect(transports=["polling"])
    assert (await poller.join("direct"))["ok"] is True
    await poller.close()


async def test_an_unfinished_request_head_is_closed(server: ServerProcess) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(b"GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\nHost: x\r\n")
    assert await asyncio.wait_for(reader.read(), 3) == b""  # closed after request_head_timeout_s
    writer.close()


async def test_commands_outside_the_fast_path_still_reach_python_socketio(server: ServerProcess) -> None:
    viewer = Viewer(server.url, "binary")
    await viewer.connect()
    # A binary event (an attachment) is python-socketio's to reassemble; the ack still comes.
    ack = await viewer.call("time", {"blob": b"\x00\x01"})
    assert isinstance(ack, dict) and "ok" in ack
    # The same command as a plain event takes the fast path and gets the same kind of ack.
    assert (await viewer.call("time", {}))["ok"] is True
    await viewer.close()


async def test_a_polling_client_that_upgrades_is_python_engineios(server: ServerProcess) -> None:
    viewer = Viewer(server.url, "upgrader")
    await viewer.connect(transports=["polling", "websocket"])
    for _ in range(50):  # the upgrade happens in the background after the connect
        if viewer.client.transport() == "websocket":
            break
        await asyncio.sleep(0.05)
    assert viewer.client.transport() == "websocket"
    assert (await viewer.join("direct"))["ok"] is True
    assert (await viewer.call("time", {}))["ok"] is True
    await viewer.close()
