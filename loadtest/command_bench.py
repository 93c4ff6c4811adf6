"""Server CPU per command: many clients, each sending `time` commands one after another.

    python -m liveroom.loadtest.command_bench [--clients 500] [--commands 40]
        [--command time|danmaku] [--hook none|pass|rewrite|answer]

Starts liveroom on CPU 0 (this process on CPU 1), connects and joins the clients (the
picows Socket.IO client of the other scenarios), then has each send its commands in turn,
waiting for every ack. `time` does no work of its own, so the figure is the command path:
read, decode, dispatch, ack, write. `--command danmaku`: each client in a room of its own
sends `danmaku.send` (the message published to that one member), `--hook` with a message
hook plugin (`bench_plugin.BenchHookPlugin`) that passes, rewrites or answers as a bot.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import sys
import time
from typing import Any

from liveroom.auth import TokenAuthority

from .run import _free_port
from .servers import ProcessWatch, spawn_server
from .sioclient import SocketIOClient, connect_client
from .stats import Snapshot

__all__ = ["main"]


async def bench(
    url: str, secret: str, watch: ProcessWatch, clients: int, commands: int, command: str = "time"
) -> dict[str, Any]:
    authority, stats = TokenAuthority(secret), Snapshot()
    connected: list[SocketIOClient] = []
    for start in range(0, clients, 500):
        tokens = [
            authority.mint(f"c{n}", "c", "viewer", ttl_s=600) for n in range(start, min(clients, start + 500))
        ]
        connected += await asyncio.gather(*(connect_client(url, stats, token) for token in tokens))
    rooms = [f"commands-{n}" if command == "danmaku" else "commands" for n in range(len(connected))]
    await asyncio.gather(
        *(client.call("join", {"room": room}) for client, room in zip(connected, rooms, strict=True))
    )

    async def run(client: SocketIOClient, room: str) -> None:
        for n in range(commands):
            if command == "danmaku":
                await client.call("danmaku.send", {"room": room, "text": f"message number {n}"})
            else:
                await client.call("time", {})

    cpu, system, own, began = watch.cpu_s(), watch.system_s(), time.process_time(), time.perf_counter()
    await asyncio.gather(*(run(client, room) for client, room in zip(connected, rooms, strict=True)))
    span = time.perf_counter() - began
    cpu, system, own = watch.cpu_s() - cpu, watch.system_s() - system, time.process_time() - own
    for client in connected:
        client.close()
    total = clients * commands
    return {
        "commands": total,
        "commands_per_s": round(total / span),
        "server_us_per_command": round(1e6 * cpu / total, 1),
        "server_kernel_share": round(system / cpu, 2) if cpu else None,
        "loadgen_us_per_command": round(1e6 * own / total, 1),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m liveroom.loadtest.command_bench")
    parser.add_argument("--clients", type=int, default=500)
    parser.add_argument("--commands", type=int, default=40)
    parser.add_argument("--command", choices=("time", "danmaku"), default="time")
    parser.add_argument("--hook", choices=("none", "pass", "rewrite", "answer"), default="none")
    args = parser.parse_args(argv)
    secret, port = secrets.token_urlsafe(32), _free_port()
    env = {}
    if args.hook != "none":
        env["LIVEROOM_PLUGINS_BENCHHOOK_LOAD"] = "liveroom.loadtest.bench_plugin:BenchHookPlugin"
        env["LIVEROOM_PLUGINS_BENCHHOOK_MODE"] = args.hook
    node = spawn_server("liveroom", port, secret, (0,), env)
    os.sched_setaffinity(0, {1})
    try:
        result = asyncio.run(
            bench(node.url, secret, ProcessWatch(node.process.pid), args.clients, args.commands, args.command)
        )
        result = {"command": args.command, "hook": args.hook, **result}
    finally:
        node.stop()
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
