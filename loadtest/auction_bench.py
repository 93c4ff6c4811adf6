"""The auction scenario: thousands of bidders in an auction's last seconds, then the books.

    python -m liveroom.loadtest.auction_bench [--bidders 5000] [--window-s 10] [--store embedded|redis]

Starts a liveroom node (pinned to CPU 0; this load generator runs on CPU 1) with a durable
store, connects and joins every bidder (the picows Socket.IO client of the other
scenarios), opens an auction of `window_s` seconds whose anti-snipe window is as long (so
every bid is a late one), and fires one `auction.bid` per bidder, spread evenly over the
window: bidders go in pairs, both of a pair bidding the same amount at the same instant
(one of the two may lead, never both), each pair one increment above the pair before. It
reports decisions/s, ack latency percentiles (client round trip, and the server's share from
`liveroom_command_seconds`), then waits for the end and checks the durable books
(`GET auctions/{auction}`): every accepted bid strictly higher than the one before, each
acknowledged bid there once, each bid's end = max(the previous end, its time + window),
and the result's end and winner those of the last bid.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import sys
import time
from typing import Any

from liveroom.auth import TokenAuthority

from .bench_node import bench_node, joined_viewers
from .bench_result import machine_summary, save_result
from .flash_sale import command_latency
from .machine import load_average
from .rest import api
from .servers import ProcessWatch, liveroom_metrics
from .sioclient import SocketIOClient

__all__ = ["check_books", "main"]

START_MINOR, INCREMENT_MINOR = 10_000, 100


async def bidding(
    url: str,
    authority: TokenAuthority,
    host: str,
    room: str,
    bidders: int,
    window_s: int,
    watch: ProcessWatch,
) -> dict[str, Any]:
    clients = await joined_viewers(url, authority, room, bidders, ttl_s=900)
    terms = {
        "title": "Bench lot",
        "start_price": START_MINOR / 100,
        "increment": INCREMENT_MINOR / 100,
        "duration_s": window_s,
        "extend_s": window_s,
    }
    opened = await asyncio.to_thread(
        api, url, host, "POST", f"/api/rooms/{room}/commands/auction.open", terms
    )
    auction = opened["auction"]
    pairs = (bidders + 1) // 2
    step = window_s * 0.95 / pairs  # all inside the window (the first end)

    async def bid(n: int, client: SocketIOClient, at: float) -> tuple[Any, float]:
        await asyncio.sleep(at - time.perf_counter())
        amount = (START_MINOR + (n // 2) * INCREMENT_MINOR) / 100
        payload = {"room": room, "auction": auction, "amount": amount, "request_id": "once"}
        began = time.perf_counter()
        ack = await client.call("auction.bid", payload)
        return ack, time.perf_counter() - began

    metrics_before = await asyncio.to_thread(liveroom_metrics, url)
    cpu_before = watch.cpu_s()
    began = time.perf_counter()
    results = await asyncio.gather(*(bid(n, c, began + (n // 2) * step) for n, c in enumerate(clients)))
    span, cpu = time.perf_counter() - began, watch.cpu_s() - cpu_before
    metrics_after = await asyncio.to_thread(liveroom_metrics, url)
    for client in clients:
        client.close()
    latencies = sorted(latency for _, latency in results)
    return {
        "auction": auction,
        "span_s": span,
        "cpu_s": cpu,
        "accepted": [ack for ack, _ in results if ack.get("ok")],
        "codes": _count(ack["error"]["code"] for ack, _ in results if not ack.get("ok")),
        "p50_ms": 1000 * latencies[len(latencies) // 2],
        "p99_ms": 1000 * latencies[max(0, int(len(latencies) * 0.99) - 1)],
        "max_ms": 1000 * latencies[-1],
        "server_side": command_latency(metrics_before, metrics_after),
    }


def _count(codes: Any) -> dict[str, int]:
    counted: dict[str, int] = {}
    for code in codes:
        counted[code] = counted.get(code, 0) + 1
    return counted


def check_books(books: dict[str, Any], accepted: list[dict[str, Any]], extend_ms: int) -> dict[str, Any]:
    """What the durable records say against what the bidders were told."""
    bids, result = books["bids"], books["result"] or {}
    amounts = [bid["amount_minor"] for bid in bids]
    strictly_higher = all(b > a for a, b in itertools.pairwise(amounts))
    numbered = [bid["n"] for bid in bids] == list(range(1, len(bids) + 1))
    by_n = {bid["n"]: bid for bid in bids}
    acked_there = all(
        ack["bid"] in by_n and by_n[ack["bid"]]["amount_minor"] == ack["amount_minor"] for ack in accepted
    )
    end, ends_right = books["auction"]["ends_at"], True
    for bid in bids:
        end = max(end, bid["at"] + extend_ms) if bid["at"] >= end - extend_ms else end
        ends_right = ends_right and bid["ends_at"] == end
    last = bids[-1] if bids else None
    return {
        "accepted_bids": len(bids),
        "acknowledged": len(accepted),
        "strictly_higher": strictly_higher,
        "numbered_in_order": numbered,
        "acknowledged_all_recorded": acked_there and len(accepted) == len(bids),
        "ends_extended_correctly": ends_right,
        "final_end_extension_ms": None if last is None else end - books["auction"]["ends_at"],
        "result_matches_last_bid": last is not None
        and result.get("ends_at") == end
        and (result.get("winner") or {}).get("id") == last["user"]
        and result.get("price_minor") == last["amount_minor"],
    }


def wait_for_result(url: str, host: str, room: str, auction: str, timeout_s: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while True:
        books: dict[str, Any] = api(url, host, "GET", f"/api/rooms/{room}/auctions/{auction}")
        if books["result"] is not None or time.monotonic() > deadline:
            return books
        time.sleep(0.5)


def run(bidders: int, window_s: int, store: str) -> dict[str, Any]:
    load_before = load_average()
    room = "auction"
    with bench_node(store, {"LIVEROOM_PLUGINS_AUCTION_BID_RATE_PER_S": "100"}) as node:
        watch = ProcessWatch(node.server.process.pid)
        result = asyncio.run(bidding(node.url, node.authority, node.host, room, bidders, window_s, watch))
        books = wait_for_result(node.url, node.host, room, result["auction"], window_s + 30)
    checks = check_books(books, result["accepted"], window_s * 1000)
    correct = all(value for key, value in checks.items() if isinstance(value, bool))
    return {
        "store": store,
        "machine": machine_summary(load_before),
        "bidders": bidders,
        "window_s": window_s,
        "span_s": round(result["span_s"], 3),
        "decisions_per_s": round(bidders / result["span_s"]),
        "p50_ms": round(result["p50_ms"], 1),
        "p99_ms": round(result["p99_ms"], 1),
        "max_ms": round(result["max_ms"], 1),
        "server_side_latency": result["server_side"],
        "server_cpu_s": round(result["cpu_s"], 3),
        "server_us_per_decision": round(1e6 * result["cpu_s"] / bidders, 1),
        "answers": {"ok": len(result["accepted"]), **result["codes"]},
        **checks,
        "correct": correct,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="auction_bench", description="Bidders in an auction's last seconds."
    )
    parser.add_argument("--bidders", type=int, default=5000)
    parser.add_argument("--window-s", type=int, default=10)
    parser.add_argument("--store", choices=("embedded", "redis"), default="embedded")
    parser.add_argument("--output", default="loadtest-results")
    args = parser.parse_args(argv)
    os.sched_setaffinity(0, {1})
    result = run(args.bidders, args.window_s, args.store)
    return save_result(result, args.output, f"auction-{args.store}")


if __name__ == "__main__":
    sys.exit(main())
