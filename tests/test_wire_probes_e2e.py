"""The server probed from outside as an attacker would, with raw sockets: each probe that
once made it hold memory, hang on to a connection or log a traceback, as a regression
test. Memory is the server's resident set, read from /proc."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import socket
import time
import urllib.request

import aiohttp
import msgpack
import orjson
import pytest
from support import ServerProcess, module_server, token
from wire_support import RawSocket, cpu_seconds, rss_bytes

HEAD_TIMEOUT_S = 0.5
PER_USER = 5
MB = 1 << 20

server = module_server(
    "server",
    {
        "LIVEROOM_SERVER_REQUEST_HEAD_TIMEOUT_S": str(HEAD_TIMEOUT_S),
        "LIVEROOM_LIMITS_MAX_CONNECTIONS_PER_USER": str(PER_USER),
        "LIVEROOM_LOG_LEVEL": "INFO",
        "LIVEROOM_SERVER_METRICS_TOKEN": "metrics-secret",
    },
)


def pid_of(server: ServerProcess) -> int:
    assert server.process is not None
    return server.process.pid


def metric(server: ServerProcess, name: str) -> float:
    """The sum of a metric over its labels."""
    request = urllib.request.Request(
        server.url + "/metrics", headers={"Authorization": "Bearer metrics-secret"}
    )
    with urllib.request.urlopen(request, timeout=5) as response:
        lines = response.read().decode().splitlines()
    return sum(float(line.rsplit(" ", 1)[1]) for line in lines if line.startswith((name + " ", name + "{")))


async def flood(sock: RawSocket, frame: bytes, total: int) -> bool:
    """Send `frame` over and over, never reading; True once the server has cut us off."""
    sent = 0
    try:
        while sent < total:
            sock.writer.write(frame * 64)
            await sock.writer.drain()
            sent += len(frame) * 64
    except ConnectionError:
        return True
    return await sock.ended()


async def test_unread_pings_and_probes_do_not_make_the_server_hold_memory(server: ServerProcess) -> None:
    """Pings (WebSocket and Engine.IO) were answered with no check on the outbound buffer:
    a client that never reads made the server hold +119 MB."""
    from wire_support import client_frame

    before = rss_bytes(pid_of(server))
    sockets = [await RawSocket.connect(server.port, receive_buffer=16_384) for _ in range(6)]
    for sock in sockets:
        await sock.open()  # never signs in
    pings = client_frame(0x9, b"p" * 125)
    probes = client_frame(0x1, b"2" + b"p" * 60)
    cut = await asyncio.gather(
        *(flood(sock, pings if n % 2 else probes, 20 * MB) for n, sock in enumerate(sockets))
    )
    assert all(cut)  # every one was aborted past its (64 KiB) outbound limit
    grown = rss_bytes(pid_of(server)) - before
    assert grown < 24 * MB, f"the server grew {grown / MB:.1f} MB"
    # A 1 MB probe before sign-in is refused from its header.
    big = await RawSocket.connect(server.port)
    await big.open()
    assert (await big.text()).startswith("0")
    big.writer.write(client_frame(0x1, b"2" + b"p" * MB)[:100])  # its header is enough
    assert await big.close_code() == 1009
    for sock in (*sockets, big):
        sock.close()


HEADS = [
    b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET /api/rooms/r1/orders HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET /room/r1 HTTP/1.1\r\nHost: x\r\n\r\n",
    b"POST /whip/r1 HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhi",
    b"POST /socket.io/?EIO=4&transport=polling&sid=x HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n\r\n1",
]


async def dribble(port: int, head: bytes, first: bytes = b"") -> bool:
    """Send `first` whole, then `head` a byte every 50 ms: True if the server closed the
    connection before the head was complete."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        if first:
            writer.write(first)
            await reader.readuntil(b"\r\n\r\n")  # the response head of the first request
        for byte in head[:-1]:
            writer.write(bytes([byte]))
            await writer.drain()
            await asyncio.sleep(0.05)
            if reader.at_eof():
                return True
            if reader._buffer:  # type: ignore[attr-defined]  # (the rest of a first response)
                reader._buffer.clear()  # type: ignore[attr-defined]
        return False
    except ConnectionError:
        return True
    finally:
        writer.close()


async def test_every_request_head_must_arrive_within_the_timeout(server: ServerProcess) -> None:
    """aiohttp has no head timeout: a head dribbled a byte a second stayed open 150 s."""
    slow = [dribble(server.port, head) for head in HEADS]
    # ...and the second head of a keep-alive connection too.
    slow.append(dribble(server.port, HEADS[0], first=HEADS[0]))
    assert all(await asyncio.gather(*slow))


async def test_idle_partial_heads_are_all_closed(server: ServerProcess) -> None:
    async def partial(head: bytes) -> bytes:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(head)
        try:
            return await asyncio.wait_for(reader.read(), 10)
        finally:
            writer.close()

    heads = [b"POST /api/rooms/r1/commands/x HTTP/1.1\r\nHost: x\r\n", b"GET /socket.io/?EIO=4", b""]
    answers = await asyncio.gather(*(partial(heads[n % 3]) for n in range(60)))
    assert answers == [b""] * 60  # closed without a word, every one


async def test_an_attachment_flood_is_refused_and_memory_stays_bounded(server: ServerProcess) -> None:
    """`4599999-[...]` then 150 one-megabyte messages made the server hold +148 MB."""
    sock = await RawSocket.connect(server.port)
    await sock.signin(token("flooder"))
    before = rss_bytes(pid_of(server))
    sock.send_text('4599999-8["danmaku.send",{"_placeholder":true,"num":0}]')
    blob = b"\x00" * 1_000_000
    for _ in range(40):
        sock.send(0x2, blob)
        await sock.writer.drain()
    ack = await sock.call(9, "time", {})
    assert ack["ok"] is True
    grown = rss_bytes(pid_of(server)) - before
    assert grown < 24 * MB, f"the server grew {grown / MB:.1f} MB"
    sock.close()


async def test_attachments_are_bounded_and_bad_placeholders_answered(server: ServerProcess) -> None:
    sock = await RawSocket.connect(server.port)
    await sock.signin(token("attacher"))

    async def ack_of(ack_id: int) -> dict[str, object]:
        while True:
            message = await sock.text()
            if message.startswith(f"43{ack_id}["):
                return orjson.loads(message[len(f"43{ack_id}") :])[0]  # type: ignore[no-any-return]

    sock.send_text('4599999-8["danmaku.send",{"_placeholder":true,"num":0}]')
    assert (await ack_of(8))["error"]["code"] == "payload_too_large"  # type: ignore[index]
    for num, ack_id in (("5", 3), ("-1", 4), ('"0"', 5)):
        sock.send_text(f'451-{ack_id}["time",{{"b":{{"_placeholder":true,"num":{num}}}}}]')
        sock.send(0x2, b"x")
        assert (await ack_of(ack_id))["error"]["code"] == "bad_request"  # type: ignore[index]
    # A binary event's text counts against max_command_bytes, in bytes: 3,000 characters
    # of Chinese are 9,000 bytes.
    sock.send_text('451-6["time",{"t":"' + "弹" * 3000 + '","b":{"_placeholder":true,"num":0}}]')
    sock.send(0x2, b"x")
    assert (await ack_of(6))["error"]["code"] == "payload_too_large"  # type: ignore[index]
    # An attachment larger than what is left of max_command_bytes.
    sock.send_text('451-7["time",{"b":{"_placeholder":true,"num":0}}]')
    sock.send(0x2, b"x" * 10_000)
    assert (await ack_of(7))["error"]["code"] == "payload_too_large"  # type: ignore[index]
    # A good one, and the connection goes on.
    sock.send_text('451-10["time",{"b":{"_placeholder":true,"num":0}}]')
    sock.send(0x2, b"ok")
    assert (await ack_of(10))["ok"] is True
    assert (await sock.call(11, "time", {}))["ok"] is True
    sock.close()


def paced_frames(port: int, pid: int, user: str, frames: list[tuple[int, int]]) -> list[float]:
    """Blocking: sign in, then send each (size, segment) binary frame in segments paced
    for the server to read them one by one; the server's CPU time for each frame."""
    from wire_support import client_frame

    sock = socket.create_connection(("127.0.0.1", port))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.sendall(
        b"GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
        b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        b"Sec-WebSocket-Version: 13\r\n\r\n"
    )
    sock.sendall(client_frame(0x1, b"40" + orjson.dumps({"token": token(user)})))
    received = b""
    while b'40{"sid"' not in received:  # signed in: the larger message limit applies
        received += sock.recv(65536)
    costs = []
    for n, (size, segment) in enumerate(frames):
        frame = client_frame(0x2, b"\x01" * size)  # an unannounced attachment: read, then dropped
        started = cpu_seconds(pid)
        for i in range(0, len(frame), segment):
            sock.send(frame[i : i + segment])
            until = time.perf_counter() + 0.0001
            while time.perf_counter() < until:
                pass
        ack = f'42{n}["time",{{}}]'.encode()
        sock.sendall(client_frame(0x1, ack))
        while f"43{n}[".encode() not in received:  # the frame was taken whole, and the ack came
            received += sock.recv(65536)
        costs.append(cpu_seconds(pid) - started)
    sock.close()
    return costs


async def test_a_frame_in_small_segments_costs_time_linear_in_its_bytes(server: ServerProcess) -> None:
    """`buffer + data` per segment made a 600 KB frame in 100-byte segments cost 0.49 s:
    every read copied the whole frame so far. The same number of reads for ten times the
    bytes must now cost about the same, not ten times as much."""
    few, many = await asyncio.to_thread(
        paced_frames, server.port, pid_of(server), "paced", [(60_000, 10), (1_000_000, 166)]
    )
    assert many < 2 * few + 0.05, (few, many)


CLOSES = [
    (b"\x03\xe8", 1000),
    (b"\x0f\xa0bye", 4000),
    (b"\x03\xed", 1002),  # 1005: stands for "no code", never sent
    (b"\x03\xee", 1002),  # 1006
    (b"\x03\xf7", 1002),  # 1015
    (b"\x03\xf8", 1002),  # 1016: reserved
    (b"\x0b\xb7", 1002),  # 2999: reserved
    (b"\x03", 1002),  # a one-byte close payload
    (b"\x03\xe8\xff\xfe", 1007),  # a reason that is not UTF-8
]


async def test_the_close_handshake_answers_with_the_right_code(server: ServerProcess) -> None:
    async def close_with(payload: bytes) -> int | None:
        sock = await RawSocket.connect(server.port)
        await sock.open()
        assert (await sock.text()).startswith("0")
        sock.send(0x8, payload)
        code = await sock.close_code()
        sock.close()
        return code

    codes = await asyncio.gather(*(close_with(payload) for payload, _ in CLOSES))
    assert codes == [code for _, code in CLOSES]


async def test_control_frames_do_not_count_against_a_partial_message(server: ServerProcess) -> None:
    sock = await RawSocket.connect(server.port)
    await sock.open()
    assert (await sock.text()).startswith("0")
    limit = 2 * 8192  # a message before sign-in
    sock.send(0x2, b"x" * (limit - 100), final=False)
    sock.send(0x9, b"p" * 125)  # with the fragment, past the limit; but not part of it
    sock.send(0x0, b"", final=True)
    assert await sock.frame() == (0xA, b"p" * 125)
    sock.send_text("40" + orjson.dumps({"token": token("control")}).decode())
    assert (await sock.text()).startswith("40{")
    sock.close()


async def test_garbage_before_connect_is_counted_not_a_traceback(server: ServerProcess) -> None:
    bad_before = metric(server, "liveroom_bad_input_total")
    sock = await RawSocket.connect(server.port)
    await sock.open("/socket.io-msgpack/")
    assert (await sock.text()).startswith("0")
    for n in range(40):
        sock.send(0x2, bytes([0x80 | (n % 16)]) + b"\x01garbage")  # maps of junk, and worse
    sock.send(0x2, msgpack.packb({"type": 0, "nsp": "/", "data": {"token": token("packed")}}))
    while (frame := await sock.frame())[0] != 0x2:
        pass
    assert msgpack.unpackb(frame[1])["type"] == 0  # connected after all that
    sock.close()
    # Malformed HTTP: aiohttp's parser refuses it, once per connection, in one line.
    for request in (b"GET / HTTP/1.1\r\nBad Header\r\n\r\n", b"GET /" + b"x" * 9000 + b" HTTP/1.1\r\n\r\n"):
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(request)
        assert (await reader.read()).split(b" ")[1].startswith(b"4")
        writer.close()
    assert metric(server, "liveroom_bad_input_total") >= bad_before + 40
    log = server.log()
    assert "Traceback" not in log, log[-3000:]
    assert "refused a malformed HTTP request" in log


async def test_an_oversized_connect_gets_a_connect_error(server: ServerProcess) -> None:
    sock = await RawSocket.connect(server.port)
    await sock.open()
    assert (await sock.text()).startswith("0")
    sock.send_text("40" + orjson.dumps({"token": "x" * 10_000}).decode())
    refused = await sock.text()
    assert refused.startswith("44") and orjson.loads(refused[2:])["code"] == "payload_too_large"
    sock.close()


async def test_one_user_opens_at_most_the_cap(server: ServerProcess) -> None:
    same = token("one-user")

    async def attempt() -> str:
        sock = await RawSocket.connect(server.port)
        await sock.open()
        assert (await sock.text()).startswith("0")
        sock.send_text("40" + orjson.dumps({"token": same}).decode())
        answer = await sock.text()
        kept.append(sock)
        return answer[:2] if answer.startswith("40") else orjson.loads(answer[2:])["code"]

    kept: list[RawSocket] = []
    answers = [await attempt() for _ in range(PER_USER + 3)]
    assert answers == ["40"] * PER_USER + ["too_many_connections"] * 3
    for sock in kept:
        sock.close()


async def test_names_are_matched_whole_on_the_wire_and_in_paths(server: ServerProcess) -> None:
    """`join "az1\n"` made a room of its own; `POST /whip/nl%0A` made a session, then
    aiohttp refused its Location header with a traceback."""
    sock = await RawSocket.connect(server.port)
    await sock.signin(token("namer"))
    assert (await sock.call(1, "join", {"room": "az1\n"}))["error"]["code"] == "bad_request"
    sock.close()
    host = token("namer", "host")
    async with aiohttp.ClientSession() as http:
        for method, path in (
            ("POST", "/whip/nl%0A"),
            ("POST", "/whep/nl%0A"),
            ("GET", "/api/rooms/nl%0A/likes"),
            ("POST", "/api/rooms/r1/commands/poll.close%0A"),
            ("GET", "/api/rooms/r1/polls/p%0A"),
            ("DELETE", "/whip/r1/slots/1%0A"),
        ):
            headers = {"Authorization": f"Bearer {host}", "Content-Type": "application/sdp"}
            async with http.request(method, server.url + path, data=b"v=0", headers=headers) as response:
                assert response.status == 400, (path, response.status)
                assert (await response.json())["error"]["code"] == "bad_request"
    assert "Traceback" not in server.log()


async def test_headers_and_metrics_access(server: ServerProcess) -> None:
    async with aiohttp.ClientSession() as http:
        for path in (
            "/healthz",
            "/room/r1",
            "/media/demo",
            "/nowhere",
            "/socket.io/?EIO=4&transport=polling",
        ):
            async with http.get(server.url + path) as response:
                assert response.headers.get("X-Content-Type-Options") == "nosniff", path
        async with http.get(server.url + "/media/demo") as response:
            page = await response.read()
            policy = response.headers["Content-Security-Policy"]
        script = page.split(b"<script>")[1].split(b"</script>")[0]
        digest = base64.b64encode(hashlib.sha256(script).digest()).decode()
        assert f"'sha256-{digest}'" in policy and "'unsafe-inline'" not in policy.split("style-src")[0]
        async with http.get(server.url + "/metrics") as response:
            assert response.status == 401  # a token is configured: loopback is not enough
        bearer = {"Authorization": "Bearer metrics-secret"}
        async with http.get(server.url + "/metrics", headers=bearer) as response:
            assert response.status == 200 and b"liveroom_connections" in await response.read()


@pytest.mark.parametrize("origin", ["http://127.0.0.1:8080.evil.example", "http://localhost:99999"])
async def test_malformed_origins_are_refused(server: ServerProcess, origin: str) -> None:
    async with aiohttp.ClientSession() as http:
        with pytest.raises(aiohttp.WSServerHandshakeError):
            await http.ws_connect(
                server.url.replace("http", "ws") + "/socket.io/?EIO=4&transport=websocket",
                headers={"Origin": origin},
            )
        async with http.get(server.url + "/healthz", headers={"Origin": origin}) as response:
            assert response.status == 403
        async with http.get(server.url + "/healthz", headers={"Origin": "http://localhost:5173"}) as response:
            assert response.status == 200


def test_no_probe_left_a_traceback_in_the_log(server: ServerProcess) -> None:
    assert "Traceback" not in server.log(), server.log()[-3000:]
