"""Scale-out benchmarks: what Redis adds, one node against two, the same viewers and load.

    python -m liveroom.loadtest.scaleout_bench [--viewers 2000] [--rate 100] [--duration 15]

Starts its own redis-server and liveroom nodes (all nodes on core 0, the load generator on
core 1; with two cores the two nodes share one, so the comparison is CPU per delivery, not
wall-clock throughput) and runs, back to back:

1. `single`: one node, in-memory broker, every viewer on it;
2. `two-nodes`: two nodes on one Redis, viewers split between them, publishers on node A;
3. `cross-node latency`: a light room (viewers on node B, publishers on node A) against
   the same room on one node with the in-memory broker: the p99 difference is what the
   Redis hop adds.

Prints one table and writes the JSON next to the other load test results.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import orjson

from .redis_process import REDIS_SERVER, RedisServer
from .run import _free_port, run_scenario
from .scenarios import Settings
from .servers import SpawnedServer, spawn_server

__all__ = ["main"]

NO_CAP = {"LIVEROOM_DELIVERY_NORMAL_PER_S": "0", "LIVEROOM_LOG_LEVEL": "WARNING"}


@contextmanager
def redis_server(appendonly: bool = False) -> Iterator[str]:
    """A redis-server on a free port (on core 0); `appendonly`: AOF with fsync on every write."""
    if REDIS_SERVER is None:
        raise SystemExit("redis-server is not installed")
    server = RedisServer(Path(tempfile.mkdtemp(prefix="loadtest-redis-")), appendonly=appendonly).start()
    assert server.process is not None
    subprocess.run(
        ["taskset", "-a", "-p", "-c", "0", str(server.process.pid)], check=False, capture_output=True
    )
    try:
        yield server.url
    finally:
        server.stop()


@contextmanager
def nodes(count: int, secret: str, env: dict[str, str]) -> Iterator[list[SpawnedServer]]:
    started = [spawn_server("liveroom", _free_port(), secret, (0,), dict(env)) for _ in range(count)]
    try:
        yield started
    finally:
        for node in started:
            node.stop()


def measure(settings: Settings, servers: list[SpawnedServer]) -> dict[str, Any]:
    """Run the scenario, watching every node's CPU (summed) over the steady window."""
    pids = [node.process.pid for node in servers]
    return run_scenario(replace(settings, server_pid=pids[0], more_server_pids=tuple(pids[1:])))


def run(viewers: int, rate: float, duration: float, light_viewers: int, light_rate: float) -> dict[str, Any]:
    secret = secrets.token_urlsafe(32)
    base = Settings(
        "fanout",
        secret=secret,
        cpus=(1,),
        processes=2,
        duration_s=duration,
        quiet=True,
        connect_rate=0.0,
        concurrency=500,
    )
    results: dict[str, Any] = {}
    with nodes(1, secret, NO_CAP) as [single]:
        results["single"] = measure(replace(base, url=single.url, viewers=viewers, rate=rate), [single])
        results["latency_same_node"] = measure(
            replace(base, url=single.url, viewers=light_viewers, rate=light_rate, sample_every=1), [single]
        )
    with redis_server() as redis_url:
        results["redis_hop"] = asyncio.run(broker_hop(redis_url))
        env = {
            **NO_CAP,
            "LIVEROOM_BROKER_KIND": "redis",
            "LIVEROOM_STORE_KIND": "redis",
            "LIVEROOM_REDIS_URL": redis_url,
        }
        with nodes(2, secret, env) as [a, b]:
            both = f"{a.url},{b.url}"
            results["two_nodes"] = measure(
                replace(base, url=both, publish_url=a.url, viewers=viewers, rate=rate), [a, b]
            )
            results["latency_cross_node"] = measure(
                replace(
                    base, url=b.url, publish_url=a.url, viewers=light_viewers, rate=light_rate, sample_every=1
                ),
                [a, b],
            )
    return results


async def broker_hop(redis_url: str, count: int = 1000) -> dict[str, Any]:
    """The Redis hop alone: node A's broker publishes, node B's receives (one Lua call, one
    pub/sub message, the Stream append), timed on one clock with sub-millisecond stamps."""
    from liveroom.clock import SystemClock
    from liveroom.redis_broker import RedisBroker
    from liveroom.redis_client import connect_redis

    a = RedisBroker(connect_redis(redis_url, False), SystemClock(), 1000, 60)
    b = RedisBroker(connect_redis(redis_url, False), SystemClock(), 1000, 60)
    sent: dict[int, float] = {}
    hops: list[float] = []
    b.set_handler(lambda p: hops.append(time.perf_counter() - sent[orjson.loads(p.encoded)["data"]["n"]]))
    await a.start()
    await b.start()
    await b.subscribe("hop")
    for n in range(count):
        sent[n] = time.perf_counter()
        await a.publish("hop", "bench.hop", {"n": n})
        await asyncio.sleep(0.002)
    await asyncio.sleep(0.5)
    await a.close()
    await b.close()
    hops.sort()
    return {
        "count": len(hops),
        "p50_ms": round(1000 * hops[len(hops) // 2], 3),
        "p99_ms": round(1000 * hops[int(len(hops) * 0.99) - 1], 3),
        "max_ms": round(1000 * hops[-1], 3),
    }


def table(results: dict[str, Any]) -> str:
    rows = [
        "| run | deliveries/s | p50 ms | p99 ms | nodes' CPU (cores) | µs per delivery (all nodes) |",
        "|---|---|---|---|---|---|",
    ]
    for name, summary in results.items():
        if name == "redis_hop":
            continue
        p50, p99 = summary["latency"].get("p50_ms"), summary["latency"].get("p99_ms")
        cores, cost = summary.get("server_cpu_cores"), summary.get("server_us_per_delivery")
        rows.append(f"| {name} | {summary['deliveries_per_s']:,} | {p50} | {p99} | {cores} | {cost} |")
    same, cross = results["latency_same_node"]["latency"], results["latency_cross_node"]["latency"]
    if same.get("p99_ms") is not None and cross.get("p99_ms") is not None:
        rows.append(
            f"\nRedis adds {cross['p99_ms'] - same['p99_ms']:.1f} ms at p99 (cross-node vs one node)."
        )
    hop = results.get("redis_hop")
    if hop:
        rows.append(
            f"The Redis hop alone (publish on one node, receive on another): p50 {hop['p50_ms']} ms, "
            f"p99 {hop['p99_ms']} ms over {hop['count']} items."
        )
    one = results["single"].get("server_us_per_delivery")
    two = results["two_nodes"].get("server_us_per_delivery")
    if one and two:
        rows.append(f"Two nodes cost {two / one:.2f}x the CPU per delivery of one node.")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m liveroom.loadtest.scaleout_bench")
    parser.add_argument("--viewers", type=int, default=2000)
    parser.add_argument("--rate", type=float, default=100.0)
    parser.add_argument("--duration", type=float, default=15.0)
    parser.add_argument("--light-viewers", type=int, default=200)
    # Not a divisor of the tick rate: a publisher in step with the ticks would make the
    # latency depend on the phase between them.
    parser.add_argument("--light-rate", type=float, default=17.0)
    parser.add_argument("--output", default="loadtest-results")
    args = parser.parse_args(argv)
    results = run(args.viewers, args.rate, args.duration, args.light_viewers, args.light_rate)
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"scaleout-{int(time.time())}.json").write_text(json.dumps(results, indent=2))
    print(table(results))
    return 0


if __name__ == "__main__":
    os.sched_setaffinity(0, {1})
    raise SystemExit(main())
