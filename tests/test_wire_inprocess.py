"""The wire layer served in-process (the app, the front door, a node on the memory store):
the per-address cap, a command's size in bytes, and a polling session that survives a
failed upgrade."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator

import aiohttp
import orjson
import pytest
from aiohttp import web
from support import SECRET, free_port, token
from wire_support import RawSocket

from liveroom.config import AuthConfig, Config, LimitsConfig, MediaConfig, ServerConfig, StoreConfig
from liveroom.front_door import FrontDoorSite
from liveroom.web import NODE_KEY, build_app


@pytest.fixture
async def port() -> AsyncIterator[int]:
    config = Config(
        server=ServerConfig(shutdown_grace_s=0.5),
        auth=AuthConfig(jwt_secret=SECRET),
        store=StoreConfig(kind="memory"),
        media=MediaConfig(enabled=False),
        limits=dataclasses.replace(LimitsConfig(), max_connections_per_ip=2),
    )
    app = build_app(config)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    node = app[NODE_KEY]
    engines = {"/socket.io/": node.sio.direct, "/socket.io-msgpack/": node.msgpack_sio.direct}
    number = free_port()
    site = FrontDoorSite(runner, "127.0.0.1", number, engines, head_timeout_s=5, backlog=100)
    await site.start()
    yield number
    await runner.cleanup()


async def test_sessions_per_address_are_capped(port: int) -> None:
    first, second = await RawSocket.connect(port), await RawSocket.connect(port)
    await first.signin(token("ip-a"))
    await second.open()  # not signed in: counts all the same
    url = f"http://127.0.0.1:{port}/socket.io/"
    async with aiohttp.ClientSession() as http:
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await http.ws_connect(url.replace("http", "ws") + "?EIO=4&transport=websocket")
        assert refused.value.status == 429
        async with http.get(url + "?EIO=4&transport=polling") as response:
            assert response.status == 429
            assert (await response.json())["error"]["code"] == "too_many_connections"
        second.close()
        assert await second.ended()
        opened = ""
        for _ in range(100):  # the server sees the close on its next turn
            async with http.get(url + "?EIO=4&transport=polling") as response:
                if response.status == 200:
                    opened = await response.text()
                    break
        assert opened.startswith("0{")
    first.close()


async def test_a_command_is_measured_in_bytes(port: int) -> None:
    """8 KiB is 8,192 bytes: 3,000 Chinese characters are 9,000 of them."""
    sock = await RawSocket.connect(port)
    await sock.signin(token("bytes"))
    assert (await sock.call(1, "join", {"room": "bytes"}))["ok"]
    wide = await sock.call(2, "danmaku.send", {"room": "bytes", "text": "弹" * 3000})
    assert wide["error"]["code"] == "payload_too_large"
    narrow = "42" + "3" + orjson.dumps(["time", {"pad": "x" * 8000}]).decode()
    assert len(narrow.encode()) < 8192
    sock.send_text(narrow)
    while not (message := await sock.text()).startswith("433["):
        pass
    assert orjson.loads(message[3:])[0]["ok"] is True
    sock.close()


async def poll_until(http: aiohttp.ClientSession, url: str, wanted: str) -> str:
    """GET the polling session until a payload holds `wanted` (pings answered on the way)."""
    for _ in range(20):
        async with http.get(url) as response:
            assert response.status == 200, await response.text()
            body = await response.text()
        if wanted in body:
            return body
        if "2" in body.split("\x1e"):
            async with http.post(url, data="3") as pong:
                assert pong.status == 200
    raise AssertionError(f"no {wanted!r} in the polling payloads")


@pytest.mark.parametrize("probe", [b"4not a probe", b"bad frame"])
async def test_a_failed_upgrade_leaves_the_polling_session_working(port: int, probe: bytes) -> None:
    base = f"http://127.0.0.1:{port}/socket.io/?EIO=4&transport=polling"
    async with aiohttp.ClientSession() as http:
        async with http.get(base) as response:
            sid = orjson.loads((await response.text())[1:])["sid"]
        url = f"{base}&sid={sid}"
        async with http.post(url, data="40" + orjson.dumps({"token": token("prober")}).decode()) as posted:
            assert posted.status == 200
        await poll_until(http, url, '40{"sid"')
        sock = await RawSocket.connect(port)
        await sock.open(query=f"EIO=4&transport=websocket&sid={sid}")
        if probe == b"bad frame":
            sock.writer.write(b"\x81\x05hello")  # unmasked: a protocol error
        else:
            sock.send(0x1, probe)
        assert await sock.ended()
        sock.close()
        async with http.post(url, data='421["time",{}]') as posted:
            assert posted.status == 200
        assert '"ok":true' in await poll_until(http, url, "431[")
