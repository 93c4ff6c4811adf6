"""Room litter: what rooms joined once and left cost the server after they are released.

    python -m liveroom.loadtest.room_litter [--rooms 6000] [--connections 6] [--rounds 3]

Starts `liveroom serve` (memory store, `idle_release_s` 2, pinned to `--server-cpu`), and
`--connections` Socket.IO clients (python-socketio, pinned to `--client-cpu` by the caller's
`taskset`) that each join a fresh room, send a danmaku and a like there, and leave, until
`--rooms` rooms have been used. After each round it waits for the idle release and reads the
server's RSS (/proc). Round 1 also pays for the allocator's high-water mark (CPython keeps
freed arenas), so the litter is the growth from round 1 to the last round, per 1,000 rooms:
memory the released rooms still hold. The issue's probe saw about 1.2 KB per room.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import secrets
import socket
import time
from typing import Any

import socketio

from liveroom.auth import TokenAuthority

from .servers import ProcessWatch, spawn_server

__all__ = ["main"]

SECRET = "room-litter-" + "x" * 40
IDLE_RELEASE_S = 2.0
HISTORY_AGE_S = 3.0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def _client(url: str, user: str) -> socketio.AsyncClient:
    client = socketio.AsyncClient(reconnection=False)
    token = TokenAuthority(SECRET).mint(user, user, "viewer")
    await client.connect(url, auth={"token": token}, transports=["websocket"])
    return client


async def _use_rooms(clients: list[socketio.AsyncClient], names: list[str]) -> None:
    """Each client in turn: join a room, one danmaku, one like, leave."""

    async def work(client: socketio.AsyncClient, rooms: list[str]) -> None:
        for room in rooms:
            for event, payload in (
                ("join", {"room": room}),
                ("danmaku.send", {"room": room, "text": "hi"}),
                ("like.send", {"room": room, "count": 1}),
                ("leave", {"room": room}),
            ):
                ack = await client.call(event, payload, timeout=30)
                if not ack.get("ok"):
                    raise RuntimeError(f"{event} in {room}: {ack}")

    share = len(clients)
    await asyncio.gather(*(work(c, names[i::share]) for i, c in enumerate(clients)))


async def run(rooms: int, connections: int, rounds: int, server_cpu: int) -> dict[str, Any]:
    port = _free_port()
    env = {
        "LIVEROOM_ROOM_IDLE_RELEASE_S": str(IDLE_RELEASE_S),
        "LIVEROOM_PLUGINS_LIKE_RATE_PER_S": "1000000",
        "LIVEROOM_PLUGINS_LIKE_BURST": "1000000",
        "LIVEROOM_MEDIA_ENABLED": "false",
        # Durable data (like counters, records) goes to SQLite on disk, not to RSS: what is
        # measured is what the node keeps in memory for rooms it no longer holds.
        "LIVEROOM_STORE_KIND": "embedded",
        # The broker keeps a room's history this long after its last member left.
        "LIVEROOM_ROOM_HISTORY_AGE_S": str(HISTORY_AGE_S),
    }
    server = spawn_server("liveroom", port, SECRET, [server_cpu], env)
    watch = ProcessWatch(server.process.pid)
    names = (f"litter-{secrets.token_hex(3)}-{n}" for n in itertools.count())
    try:
        clients = [await _client(server.url, f"u{n}") for n in range(connections)]
        await asyncio.sleep(1)
        samples: list[dict[str, Any]] = [{"round": 0, "rooms_used": 0, "rss_bytes": watch.rss_bytes()}]
        for number in range(1, rounds + 1):
            started = time.monotonic()
            await _use_rooms(clients, [next(names) for _ in range(rooms)])
            held = watch.rss_bytes()
            await asyncio.sleep(max(IDLE_RELEASE_S, HISTORY_AGE_S) + 3)  # released by the node's sweep
            samples.append(
                {
                    "round": number,
                    "rooms_used": number * rooms,
                    "seconds": round(time.monotonic() - started, 1),
                    "rss_held_bytes": held,
                    "rss_bytes": watch.rss_bytes(),
                }
            )
        for client in clients:
            await client.disconnect()
    finally:
        server.stop()
    first, last = samples[1]["rss_bytes"], samples[-1]["rss_bytes"]
    later_rooms = rooms * (rounds - 1)
    return {
        "rooms_per_round": rooms,
        "connections": connections,
        "samples": samples,
        "first_round_kb_per_1000_rooms": round((first - samples[0]["rss_bytes"]) / rooms, 1),
        "litter_kb_per_1000_rooms": round((last - first) / later_rooms, 1) if later_rooms else None,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rooms", type=int, default=6000, help="fresh rooms per round")
    parser.add_argument("--connections", type=int, default=6)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--server-cpu", type=int, default=0)
    args = parser.parse_args(argv)
    print(json.dumps(asyncio.run(run(args.rooms, args.connections, args.rounds, args.server_cpu)), indent=2))


if __name__ == "__main__":
    main()
