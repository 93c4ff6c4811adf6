"""A lucky bag with 20,000 entrants (issue 20's target: drawn and announced within 1 s of the
deadline).

    python -m liveroom.loadtest.luckybag_bench [--entrants 20000] [--connected 5000] [--duration-s 90]

Starts a redis-server (AOF, fsync on every write: the store) and one liveroom node, both on
core 0; this process, the clients (the picows Socket.IO client of the other scenarios),
runs on core 1. The host starts a bag over the HTTP API; the entrants come in waves of
`--wave`: connect, join, `luckybag.enter`; the last `--connected` of them stay in the room
through the deadline and the others leave once entered (an entry is durable: the entrant
need not stay; and one process holds at most ~20,000 descriptors, the machine's limit). At
the deadline it reports when the server drew (`drawn_at - ends_at`, server ms) and when each
connected entrant received `luckybag.drawn` (its wall clock minus `ends_at`: the same
machine's clock), then checks the result: the entry list (`GET luckybags/{bag}/entries`)
holds every entrant once, and re-running sha256-rank-v1 on it with the published seed gives
the winners.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import sys
import time
from typing import Any

from picows import WSFrame, WSTransport, ws_connect

from liveroom.auth import TokenAuthority

from .bench_node import BenchNode, bench_node
from .bench_result import machine_summary, save_result
from .machine import load_average
from .rest import api
from .sioclient import SocketIOClient, socketio_url
from .stats import Snapshot

__all__ = ["main", "rerun"]

_DRAWN = b'"type":"luckybag.drawn"'


class Entrant(SocketIOClient):
    """A client that notes the wall time (ms) its `luckybag.drawn` arrived."""

    drawn_ms: float | None = None

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        if self.drawn_ms is None and _DRAWN in frame.get_payload_as_bytes():
            self.drawn_ms = time.time() * 1000.0
        super().on_ws_frame(transport, frame)


async def connect(url: str, stats: Snapshot, token: str) -> Entrant:
    _, client = await ws_connect(
        lambda: Entrant(stats, token, False), socketio_url(url), websocket_handshake_timeout=30
    )
    assert isinstance(client, Entrant)
    await client.ready
    return client


def rerun(entrants: list[str], seed: str, winners: int) -> list[str]:
    """sha256-rank-v1 (docs/plugins.md, luckybag), written from the docs."""
    key = bytes.fromhex(seed)
    return sorted(set(entrants), key=lambda u: (hashlib.sha256(key + u.encode()).digest(), u))[:winners]


def _percentiles(values: list[float]) -> dict[str, float | int]:
    ordered = sorted(values)
    if not ordered:
        return {"count": 0}

    def at(q: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(len(ordered) * q))], 1)

    return {"count": len(ordered), "p50_ms": at(0.5), "p99_ms": at(0.99), "max_ms": round(ordered[-1], 1)}


async def join(client: Entrant, room: str) -> None:
    for _ in range(5):  # a loaded node may answer `unavailable` or time a join out: again
        if (await client.call("join", {"room": room})).get("ok"):
            return
        await asyncio.sleep(0.5)
    raise SystemExit("a join failed five times")


async def enter_all(
    url: str, authority: TokenAuthority, room: str, bag: str, entrants: int, keep: int, wave: int
) -> tuple[list[Entrant], dict[str, Any]]:
    """Every entrant connects, joins and enters, `wave` at a time; the last `keep` stay."""
    stats, kept, latencies, codes = Snapshot(), [], [], dict[str, int]()
    began = time.perf_counter()
    for start in range(0, entrants, wave):
        tokens = [
            authority.mint(f"e{n}", f"E{n}", "viewer", ttl_s=3600)
            for n in range(start, min(entrants, start + wave))
        ]
        clients = await asyncio.gather(*(connect(url, stats, token) for token in tokens))
        await asyncio.gather(*(join(client, room) for client in clients))

        async def enter(client: Entrant) -> None:
            sent = time.perf_counter()
            ack = await client.call("luckybag.enter", {"room": room, "bag": bag})
            latencies.append(1000 * (time.perf_counter() - sent))
            code = "ok" if ack.get("ok") else ack["error"]["code"]
            codes[code] = codes.get(code, 0) + 1

        await asyncio.gather(*(enter(client) for client in clients))
        for n, client in enumerate(clients, start=start):
            if n >= entrants - keep:
                kept.append(client)
            else:
                client.close()
    span = time.perf_counter() - began
    return kept, {
        "span_s": round(span, 2),
        "entries_per_s": round(entrants / span),
        "ack": _percentiles(latencies),
        "codes": codes,
    }


async def scenario(
    node: BenchNode, entrants: int, keep: int, wave: int, duration_s: int, winners: int
) -> dict[str, Any]:
    url, authority, host, room = node.url, node.authority, node.host, "bag"
    start = {"prize": "Tea", "winners": winners, "duration_s": duration_s, "request_id": "bench"}
    started = await asyncio.to_thread(
        api, url, host, "POST", f"/api/rooms/{room}/commands/luckybag.start", start
    )
    bag, ends_at = started["bag"], started["ends_at"]
    kept, entering = await enter_all(url, authority, room, bag, entrants, keep, wave)
    left_s = (ends_at - time.time() * 1000) / 1000
    if left_s <= 0:
        raise SystemExit(f"the entries took past the deadline ({entering}); give --duration-s more")
    await asyncio.sleep(left_s + 0.05)
    for _ in range(600):  # 30 s at most for the last of them
        if all(client.drawn_ms is not None for client in kept):
            break
        await asyncio.sleep(0.05)
    got = [client.drawn_ms - ends_at for client in kept if client.drawn_ms is not None]
    for client in kept:
        client.close()
    result = (await asyncio.to_thread(api, url, host, "GET", f"/api/rooms/{room}/luckybags/{bag}"))["result"]
    users: list[str] = []
    after = 0
    while True:
        page = await asyncio.to_thread(
            api, url, host, "GET", f"/api/rooms/{room}/luckybags/{bag}/entries?after={after}&limit=1000"
        )
        users += [entry["user"] for entry in page["entries"]]
        after = page["next"]
        if page["done"]:
            break
    ids = [winner["id"] for winner in result["winners"]]
    announced = _percentiles(got)
    return {
        "entering": entering,
        "server_draw_ms_after_deadline": result["drawn_at"] - ends_at,
        "announcement_ms_after_deadline": announced,
        "connected_at_deadline": len(kept),
        "announcement_missing": len(kept) - len(got),
        "entrants_in_result": result["entrants"],
        "entry_list": len(users),
        "entry_list_distinct": len(set(users)),
        "rerun_matches": rerun(users, result["seed"], winners) == ids,
        "within_1s": bool(got) and len(got) == len(kept) and max(got) <= 1000,
    }


def run(entrants: int, keep: int, wave: int, duration_s: int, winners: int) -> dict[str, Any]:
    load_before = load_average()
    with bench_node("redis", {"LIVEROOM_PLUGINS_LUCKYBAG_MIN_DURATION_S": "1"}) as node:
        found = asyncio.run(scenario(node, entrants, keep, wave, duration_s, winners))
    return {
        "machine": machine_summary(load_before),
        "entrants": entrants,
        "winners": winners,
        **found,
        "correct": found["entry_list"] == found["entry_list_distinct"] == found["entering"]["codes"].get("ok")
        and found["rerun_matches"],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="luckybag_bench", description="A lucky bag's draw with many entrants."
    )
    parser.add_argument("--entrants", type=int, default=20_000)
    parser.add_argument(
        "--connected", type=int, default=5_000, help="entrants still in the room at the deadline"
    )
    parser.add_argument("--wave", type=int, default=1_000, help="entrants connecting and entering at once")
    parser.add_argument(
        "--duration-s", type=int, default=90, help="the bag's countdown (the entries must fit in it)"
    )
    parser.add_argument("--winners", type=int, default=100)
    parser.add_argument("--output", default="loadtest-results")
    args = parser.parse_args(argv)
    os.sched_setaffinity(0, {1})
    result = run(args.entrants, min(args.connected, args.entrants), args.wave, args.duration_s, args.winners)
    return save_result(result, args.output, "luckybag")


if __name__ == "__main__":
    sys.exit(main())
