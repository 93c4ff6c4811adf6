"""No silent loss on one node: viewers who vanish mid-command cost the others nothing, and every
gap in `seq` a client sees is either stated in the batch (`skipped`) or a real loss.

Forty viewers close their sockets abruptly (no close frame, no Socket.IO disconnect) while
commands of theirs are still queued on the server, during a steady flow of danmaku faster
than the per-viewer cap. The remaining viewers, on WebSocket, long-polling or msgpack, must
each account for every seq: received, or listed in a batch's `skipped`."""

from __future__ import annotations

import asyncio
import urllib.request
import uuid
from typing import Any

import pytest
from raw_client import RawClient
from support import ServerProcess, Viewer, module_server, token

lossless_server = module_server(
    "lossless_server",
    env={
        "LIVEROOM_PLUGINS_DANMAKU_RATE_PER_S": "100",
        "LIVEROOM_PLUGINS_DANMAKU_BURST": "100",
        "LIVEROOM_PING_INTERVAL_S": "2",
        "LIVEROOM_PING_TIMEOUT_S": "2",
    },
)

# Well above the per-viewer cap (25/s after a second's burst): some items are sampled out,
# and said so (120 items in 1.5 s against the 62 the cap lets through).
FLOW_PER_S = 80
FLOW_SECONDS = 1.5
VANISHING = 40


def unexplained(batches: list[dict[str, Any]], after: int, through: int) -> list[int]:
    """Seqs in (after, through] that a client neither received nor was told were skipped."""
    covered: set[int] = set()
    for batch in batches:
        covered.update(item["seq"] for item in batch["items"] if item["seq"] is not None)
        for first, last in batch.get("skipped", []):
            covered.update(range(first, last + 1))
    return [seq for seq in range(after + 1, through + 1) if seq not in covered]


async def vanish_mid_command(url: str, room: str, n: int) -> None:
    """Join, queue a burst of commands, and go away before the server has run them."""
    client = await RawClient.connect(url, token(f"gone-{n}-{uuid.uuid4().hex[:6]}"))
    assert (await client.call("join", {"room": room}))["ok"]
    for i in range(60):
        if i % 3 == 0:
            client.emit("danmaku.send", {"room": room, "text": f"last words {i}"})
        elif i % 3 == 1:
            client.emit("join", {"room": f"{room}-other-{i}"})
        else:
            client.emit("time", {})
    client.vanish()


async def send_flow(url: str, room: str) -> None:
    senders = [await Viewer(url, f"sender-{i}-{room}").connect() for i in range(4)]
    try:
        for sender in senders:
            await sender.join(room)
        interval = len(senders) / FLOW_PER_S
        for n in range(int(FLOW_PER_S * FLOW_SECONDS / len(senders))):
            for sender in senders:
                await sender.client.emit("danmaku.send", {"room": room, "text": f"flow {n}"})
            await asyncio.sleep(interval)
    finally:
        for sender in senders:
            await sender.close()


@pytest.mark.parametrize("kind", ["websocket", "polling", "msgpack"])
async def test_viewers_who_vanish_mid_command_cost_the_others_nothing(
    lossless_server: ServerProcess, kind: str
) -> None:
    server, room = lossless_server, "loss-" + uuid.uuid4().hex[:8]
    viewers = [_viewer(server, f"stay-{kind}-{i}", kind) for i in range(12)]
    try:
        for viewer in viewers:
            await _connect(viewer, kind)
        joined = [(await viewer.join(room))["seq"] for viewer in viewers]
        flow = asyncio.create_task(send_flow(server.url, room))
        for wave in range(4):  # the vanishing come in waves while the danmaku flow
            await asyncio.gather(*(vanish_mid_command(server.url, room, wave * 100 + n) for n in range(10)))
            await asyncio.sleep(FLOW_SECONDS / 5)
        await flow
        latest = await _latest_seq(server, room)
        for viewer, after in zip(viewers, joined, strict=True):
            await _wait_covered(viewer, after, latest)
            assert unexplained(viewer.batches, after, latest) == [], viewer.user
        assert any(batch.get("skipped") for batch in viewers[0].batches)  # the cap was at work, and said so
    finally:
        for viewer in viewers:
            await viewer.close()
    assert "delivery tick failed" not in server.log()
    assert _metric(server, "liveroom_invariant_violations_total") == 0


def _viewer(server: ServerProcess, user: str, kind: str) -> Viewer:
    return Viewer(server.url, user, serializer="msgpack") if kind == "msgpack" else Viewer(server.url, user)


async def _connect(viewer: Viewer, kind: str) -> None:
    if kind == "msgpack":
        await viewer.client.connect(
            viewer.url,
            auth={"token": viewer.token},
            transports=["websocket"],
            socketio_path="socket.io-msgpack",
            wait_timeout=10,
        )
    else:
        await viewer.connect(transports=[kind])


async def _latest_seq(server: ServerProcess, room: str) -> int:
    probe = await Viewer(server.url, "probe-" + room).connect()
    try:
        return int((await probe.join(room))["seq"])
    finally:
        await probe.close()


async def _wait_covered(viewer: Viewer, after: int, latest: int, timeout: float = 20) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while asyncio.get_running_loop().time() < deadline:
        seen = [i["seq"] for b in viewer.batches for i in b["items"] if i["seq"] is not None]
        seen += [r[1] for b in viewer.batches for r in b.get("skipped", [])]
        if seen and max(seen) >= latest:
            return
        await asyncio.sleep(0.1)


def _metric(server: ServerProcess, name: str) -> float:
    with urllib.request.urlopen(server.url + "/metrics", timeout=5) as response:
        for line in response.read().decode().splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
    return 0.0
