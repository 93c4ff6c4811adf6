"""The flash-sale scenario: a storm of buyers at one sale, then a kill, then the books.

    liveroom-loadtest flash-sale [--buyers 5000] [--stock 100] [--store embedded|redis]

Starts a liveroom node (pinned to CPU 0; this load generator runs on CPU 1) with a durable
store, schedules a sale through the host HTTP API, connects and joins every buyer (the
picows Socket.IO client of the other scenarios), then fires one `sale.buy` per buyer at
once. It reports decisions/s, ack latency percentiles and the node's CPU per decision;
then kills the node with SIGKILL, starts it again on the same data, and checks the orders
endpoint: exactly `stock` orders, no duplicate, every acknowledged order there.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from typing import Any

from liveroom.auth import TokenAuthority

from .bench_node import bench_node, joined_viewers
from .bench_result import machine_summary, save_result
from .machine import load_average
from .rest import api
from .servers import ProcessWatch, liveroom_metrics
from .sioclient import SocketIOClient

__all__ = ["main"]


async def storm(
    url: str,
    authority: TokenAuthority,
    room: str,
    sale: str,
    buyers: int,
    watch: ProcessWatch,
    spread_s: float,
) -> dict[str, Any]:
    clients = await joined_viewers(url, authority, room, buyers, ttl_s=600)
    payload = {"room": room, "sale": sale, "qty": 1, "request_id": "once"}

    async def buy(client: SocketIOClient, at: float) -> tuple[Any, float]:
        # Buyer n fires at n/buyers of the spread (0: all at once); latency from its own send.
        await asyncio.sleep(at - time.perf_counter())
        began = time.perf_counter()
        ack = await client.call("sale.buy", payload)
        return ack, time.perf_counter() - began

    # The storm only, not the joins.
    metrics_before = await asyncio.to_thread(liveroom_metrics, url)
    cpu_before, system_before, own_before = watch.cpu_s(), watch.system_s(), time.process_time()
    began = time.perf_counter()
    step = spread_s / buyers
    results = await asyncio.gather(*(buy(client, began + n * step) for n, client in enumerate(clients)))
    span, cpu = time.perf_counter() - began, watch.cpu_s() - cpu_before
    system, own = watch.system_s() - system_before, time.process_time() - own_before
    metrics_after = await asyncio.to_thread(liveroom_metrics, url)
    for client in clients:
        client.close()
    latencies = sorted(latency for _, latency in results)
    ordered = sorted(latency for ack, latency in results if ack.get("ok"))
    return {
        "span_s": span,
        "cpu_s": cpu,
        "system_s": system,
        "loadgen_cpu_s": own,
        "acked": sorted(ack["order"]["id"] for ack, _ in results if ack.get("ok")),
        "codes": sorted({ack["error"]["code"] for ack, _ in results if not ack.get("ok")}),
        "p50_ms": 1000 * latencies[len(latencies) // 2],
        "p99_ms": 1000 * latencies[max(0, int(len(latencies) * 0.99) - 1)],
        # The orders alone: each waits for its durable write (group commit) before its ack.
        "order_p50_ms": 1000 * ordered[len(ordered) // 2] if ordered else None,
        "order_max_ms": 1000 * ordered[-1] if ordered else None,
        "server_side": command_latency(metrics_before, metrics_after),
    }


def command_latency(before: dict[str, float], after: dict[str, float]) -> dict[str, float | None]:
    """The server's share of ack latency during the storm (`liveroom_command_seconds`): the
    upper bound of the bucket holding each percentile."""
    prefix = 'liveroom_command_seconds_bucket{le="'
    buckets = sorted(
        (float(name[len(prefix) : -2]), after[name] - before.get(name, 0.0))
        for name in after
        if name.startswith(prefix)
    )
    total = buckets[-1][1] if buckets else 0.0

    def percentile(share: float) -> float | None:
        for bound, count in buckets:
            if total and count >= share * total:
                return 1000 * bound
        return None

    return {"commands": total, "p50_ms_at_most": percentile(0.5), "p99_ms_at_most": percentile(0.99)}


def run(buyers: int, stock: int, store: str, spread_s: float = 0.0, workers: int = 1) -> dict[str, Any]:
    """`workers` > 1: `liveroom serve --workers N` on CPUs 0..N-1 (the supervisor and its
    workers counted together), media off."""
    load_before = load_average()  # the machine, before this run adds to it
    room = "flash"
    cpus = tuple(range(max(1, workers)))
    several = (
        {"LIVEROOM_SERVER_WORKERS": str(workers), "LIVEROOM_MEDIA_ENABLED": "false"} if workers > 1 else {}
    )
    with bench_node(store, several, cpus) as node:
        sale = api(
            node.url,
            node.host,
            "POST",
            f"/api/rooms/{room}/commands/sale.schedule",
            {
                "sku": "sku-1",
                "title": "Flash",
                "price": 1.0,
                "stock": stock,
                "per_user_limit": 1,
                "starts_at": 0,
                "duration_s": 600,
            },
        )["sale"]
        watch = ProcessWatch(node.server.process.pid)
        result = asyncio.run(storm(node.url, node.authority, room, sale, buyers, watch, spread_s))
        cpu = result["cpu_s"]
        node.kill_and_restart()  # right after the storm: no clean shutdown
        books = api(node.url, node.host, "GET", f"/api/rooms/{room}/sales/{sale}/orders?limit=1000")
    ids = [order["id"] for order in books["orders"]]
    return {
        "store": store,
        "machine": machine_summary(load_before),
        "buyers": buyers,
        "stock": stock,
        "workers": workers,
        "spread_s": spread_s,
        "span_s": round(result["span_s"], 3),
        # Wall-clock rate; with a spread it is the offered rate, not the server's limit.
        "decisions_per_s": round(buyers / result["span_s"]),
        # What one core of server sustains: decisions per CPU-second of the node.
        "decisions_per_server_cpu_s": round(buyers / cpu) if cpu else None,
        "p50_ms": round(result["p50_ms"], 1),
        "p99_ms": round(result["p99_ms"], 1),
        "order_p50_ms": _rounded(result["order_p50_ms"]),
        "order_max_ms": _rounded(result["order_max_ms"]),
        "server_side_latency": result["server_side"],
        "server_cpu_s": round(cpu, 3),
        "server_us_per_decision": round(1e6 * cpu / buyers, 1),
        "server_kernel_share": round(result["system_s"] / cpu, 2) if cpu else None,
        "loadgen_cpu_s": round(result["loadgen_cpu_s"], 3),
        "acknowledged_orders": len(result["acked"]),
        "other_answers": result["codes"],
        "orders_after_restart": len(ids),
        "duplicates": len(ids) - len(set(ids)),
        "acknowledged_lost": len(set(result["acked"]) - set(ids)),
        "correct": len(ids) == stock and len(set(ids)) == stock and set(result["acked"]) == set(ids),
    }


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="liveroom-loadtest flash-sale", description="A flash-sale storm.")
    parser.add_argument("--buyers", type=int, default=5000)
    parser.add_argument("--stock", type=int, default=100)
    parser.add_argument("--store", choices=("embedded", "redis"), default="embedded")
    parser.add_argument(
        "--spread-s", type=float, default=0.0, help="fire the buys evenly over this many seconds (0: at once)"
    )
    parser.add_argument("--workers", type=int, default=1, help="liveroom serve --workers N (on CPUs 0..N-1)")
    parser.add_argument("--output", default="loadtest-results")
    args = parser.parse_args(argv)
    os.sched_setaffinity(0, {1})
    result = run(args.buyers, args.stock, args.store, args.spread_s, args.workers)
    return save_result(result, args.output, f"flash-sale-{args.store}")


if __name__ == "__main__":
    sys.exit(main())
