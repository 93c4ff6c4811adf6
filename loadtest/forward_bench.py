"""What forwarding to a room's owner node costs (issue 15's target: at most 2 ms added at p99).

    python -m liveroom.loadtest.forward_bench [--commands 2000] [--failovers 5] [--presence-drops 3]

Starts its own redis-server and two liveroom nodes in cluster mode (broker and store on
Redis), all on core 0; this process, the clients, runs on core 1. A host joins the room
through node A, so A owns it; one client on A (the owner) and one on B (whose commands are
forwarded to A) send the same command in turn, one at a time, and each ack's round trip is
timed. The difference of the two distributions, measured in the same run, is what the
forward adds (B's extra: one pub/sub message each way; the owner's name is remembered for a
third of a lease, so most forwards read no Redis key first).

`--failovers N` then measures owner failover N times, each on two fresh nodes: a poll is
opened through A (the owner) and voted on through both, A is SIGKILLed, and a voter on B
retries its vote every 20 ms; reported: the time from the kill to the first vote accepted
again (the `[cluster] lease_s` target: 3 s) and the votes acknowledged before the kill that
are still counted after it (all of them, or the run fails).

`--presence-drops N` measures, N times on two fresh nodes with the default presence
settings, how long after a node is SIGKILLed its viewer leaves `online` as the survivor's
viewer sees it (`room.online` items; the documented bound is `[redis] presence_ttl_s` plus
up to one `[room] presence_refresh_s`).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import secrets
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

import jwt
import socketio  # type: ignore[import-untyped,unused-ignore]

from .scaleout_bench import NO_CAP, nodes, redis_server

__all__ = ["main"]

T = TypeVar("T")


def _token(secret: str, user: str, role: str) -> str:
    claims = {"sub": user, "name": user, "role": role, "exp": int(time.time()) + 3600}
    return jwt.encode(claims, secret, algorithm="HS256")


async def _client(url: str, secret: str, user: str, role: str, room: str) -> Any:
    client = socketio.AsyncClient(reconnection=False)
    await client.connect(url, auth={"token": _token(secret, user, role)}, transports=["websocket"])
    ack = await client.call("join", {"room": room}, timeout=10)
    if not ack.get("ok"):
        raise SystemExit(f"join failed: {ack}")
    return client


def _percentiles(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)

    def at(q: float) -> float:
        return round(1000 * ordered[min(len(ordered) - 1, int(len(ordered) * q))], 3)

    return {
        "count": len(ordered),
        "p50_ms": at(0.50),
        "p95_ms": at(0.95),
        "p99_ms": at(0.99),
        "max_ms": at(1.0),
    }


async def measure(urls: list[str], secret: str, commands: int) -> dict[str, Any]:
    room = "forward-bench"
    host = await _client(urls[0], secret, "host", "host", room)  # through A: A owns the room
    on_owner = await _client(urls[0], secret, "fan-a", "viewer", room)
    forwarded = await _client(urls[1], secret, "fan-b", "viewer", room)
    times: dict[str, list[float]] = {"owner": [], "forwarded": []}
    try:
        for n in range(commands + 100):  # the first 100 of each warm up, not counted
            for name, client in (("owner", on_owner), ("forwarded", forwarded)):
                started = time.perf_counter()
                ack = await client.call("like.send", {"room": room, "count": 1}, timeout=10)
                spent = time.perf_counter() - started
                if not ack.get("ok"):
                    raise SystemExit(f"{name}: {ack}")
                if n >= 100:
                    times[name].append(spent)
    finally:
        for client in (host, on_owner, forwarded):
            await client.disconnect()
    owner, forward = _percentiles(times["owner"]), _percentiles(times["forwarded"])
    added = {key: round(forward[key] - owner[key], 3) for key in ("p50_ms", "p95_ms", "p99_ms")}
    return {"command": "like.send", "owner": owner, "forwarded": forward, "added": added}


async def failover_once(urls: list[str], secret: str, kill: Any) -> dict[str, Any]:
    room = "failover-" + secrets.token_hex(3)
    host = await _client(urls[0], secret, "host", "host", room)  # through A: A owns the room
    voters = [await _client(urls[n % 2], secret, f"v{n}", "viewer", room) for n in range(10)]
    late = await _client(urls[1], secret, "late", "viewer", room)
    try:
        create = {"room": room, "question": "?", "options": ["a", "b"], "duration_s": 600}
        poll = (await host.call("poll.create", create, timeout=10))["poll"]
        for voter in voters:
            ack = await voter.call("poll.vote", {"room": room, "poll": poll, "option": 0}, timeout=10)
            if not ack.get("ok"):
                raise SystemExit(f"vote before the kill: {ack}")
        kill()
        killed = time.perf_counter()
        codes: dict[str, int] = {}
        while True:
            vote = {"room": room, "poll": poll, "option": 1, "request_id": "late"}
            ack = await late.call("poll.vote", vote, timeout=10)
            if ack.get("ok"):
                break
            code = ack["error"]["code"]
            codes[code] = codes.get(code, 0) + 1
            if code not in ("unavailable", "outcome_unknown") or time.perf_counter() - killed > 30:
                raise SystemExit(f"vote after the kill: {ack}")
            await asyncio.sleep(0.02)
        back_s = time.perf_counter() - killed
        joined = await late.call("join", {"room": room}, timeout=10)
        counts = joined["state"]["poll"]["counts"]
        if counts != [10, 1]:
            raise SystemExit(f"votes lost over the failover: {counts}")
        return {"commands_back_after_s": round(back_s, 3), "answers_meanwhile": codes, "counts": counts}
    finally:
        for client in (host, *voters, late):
            with contextlib.suppress(Exception):
                await client.disconnect()


async def presence_drop_once(urls: list[str], secret: str, kill: Any) -> float:
    room = "presence-" + secrets.token_hex(3)
    seen: list[int] = []
    changed = asyncio.Event()
    survivor = await _client(urls[1], secret, "stays", "viewer", room)

    def on_batch(batch: dict[str, Any]) -> None:
        for item in batch.get("items", []):
            if item["type"] == "room.online":
                seen.append(int(item["data"]["count"]))
                changed.set()

    survivor.on("batch", on_batch)
    doomed = await _client(urls[0], secret, "goes", "viewer", room)
    try:
        while not seen or seen[-1] != 2:
            changed.clear()
            await asyncio.wait_for(changed.wait(), 30)
        kill()
        killed = time.perf_counter()
        while seen[-1] != 1:
            changed.clear()
            await asyncio.wait_for(changed.wait(), 60)
        return round(time.perf_counter() - killed, 2)
    finally:
        for client in (survivor, doomed):
            with contextlib.suppress(Exception):
                await client.disconnect()


def first_node_killed(
    secret: str, env: dict[str, str], runs: int, once: Callable[[list[str], str, Any], Coroutine[Any, Any, T]]
) -> list[T]:
    """`runs` times, on two fresh nodes: `once` (their URLs, the secret, a kill of the first node)."""
    results: list[T] = []
    for _ in range(runs):
        with nodes(2, secret, env) as started:
            first = started[0].process
            results.append(asyncio.run(once([n.url for n in started], secret, lambda p=first: p.kill())))
    return results


def measure_presence_drops(secret: str, env: dict[str, str], runs: int) -> dict[str, Any]:
    return {"left_online_after_s": first_node_killed(secret, env, runs, presence_drop_once)}


def measure_failovers(secret: str, env: dict[str, str], runs: int) -> dict[str, Any]:
    results = first_node_killed(secret, env, runs, failover_once)
    back = sorted(r["commands_back_after_s"] for r in results)
    return {
        "runs": results,
        "commands_back_after_s": {"min": back[0], "median": back[len(back) // 2], "max": back[-1]},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--commands", type=int, default=2000, help="timed commands per client")
    parser.add_argument("--failovers", type=int, default=0, help="owner failovers to time (0: none)")
    parser.add_argument("--presence-drops", type=int, default=0, help="killed nodes' presence to time")
    parser.add_argument("--out", type=Path, default=Path("loadtest-results/forward_bench.json"))
    args = parser.parse_args(argv)
    os.sched_setaffinity(0, {1})
    secret = secrets.token_hex(24)
    with redis_server() as redis_url:
        env = {
            **NO_CAP,
            "LIVEROOM_BROKER_KIND": "redis",
            "LIVEROOM_STORE_KIND": "redis",
            "LIVEROOM_REDIS_URL": redis_url,
            "LIVEROOM_PLUGINS_LIKE_RATE_PER_S": "1000000",
            "LIVEROOM_PLUGINS_LIKE_BURST": "1000000",
        }
        with nodes(2, secret, env) as started:
            result = asyncio.run(measure([node.url for node in started], secret, args.commands))
        if args.failovers:
            result["owner_failover"] = measure_failovers(secret, env, args.failovers)
        if args.presence_drops:
            result["presence_drop"] = measure_presence_drops(secret, env, args.presence_drops)
    result["load_average"] = os.getloadavg()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
