"""What one supervisor core sustains (issue 23's model of a bigger machine).

    python -m liveroom.loadtest.supervisor_bench [--workers 2] [--seconds 10] [--in-flight 64]

With `[server] workers = N` every publication and every durable write of the node passes
through the supervisor (`liveroom/ipc_server.py`): the room bus assigns `seq` and writes
each publication once to every subscribed worker's stream, and the store (SQLite, the
supervisor its one writer) takes every record. That is the one part of a node that does not
spread over the cores, so it is what bounds a 16- or 64-core machine running one node.

This starts the supervisor's end alone (`IpcServer` over a `MemoryBroker` and an
`EmbeddedStore` on a temporary SQLite file, pinned to `--server-cpu`) and `--workers`
client processes speaking the real IPC (`IpcBroker`, `IpcStore`, pinned to `--client-cpu`),
each subscribed to the room and keeping `--in-flight` calls outstanding:

1. `publish`: danmaku-sized publications to one room, every worker subscribed (so each is
   also written to every worker's stream, as in a big room spread over the workers);
2. `put_record`: order-sized records, each a new key (SQLite, `synchronous=NORMAL` in WAL,
   the node's setting).

It prints and saves (loadtest-results/supervisor-<time>.json) the rate of each and the
supervisor's CPU per operation (from /proc: user + system of its process).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from .bench_result import machine_summary, save_result
from .machine import load_average

__all__ = ["main"]

ROOM = "big"
DANMAKU = {"id": "0123456789abcdef", "user": {"id": "u1", "name": "Viewer"}, "text": "好看!" * 4}
ORDER = {"sku": "sku-1", "user": "u1", "quantity": 1, "price_minor": 9900, "currency": "CNY"}


def _cpu_s(pid: int) -> float:
    """User + system CPU seconds of process `pid`."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def _serve(path: Path, database: Path, workers: int) -> None:
    from liveroom.clock import SystemClock
    from liveroom.ipc_server import IpcServer
    from liveroom.memory_broker import MemoryBroker
    from liveroom.sqlite_store import EmbeddedStore

    store = EmbeddedStore(str(database))
    await store.start()
    server = IpcServer(MemoryBroker(SystemClock(), 1000, 300), store, workers)
    await server.start(path)
    print("ready", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)  # until stdin closes
    await server.close()
    await store.close()


async def _work(path: Path, index: int, phase: str, seconds: float, in_flight: int) -> None:
    from liveroom.ipc_client import IpcBroker, IpcChannel, IpcStore
    from liveroom.store import Record

    channel = IpcChannel(path, index)
    await channel.connect()
    broker, store = IpcBroker(channel), IpcStore(channel)
    received = 0

    def count(_: Any) -> None:
        nonlocal received
        received += 1

    broker.set_handler(count)
    await broker.subscribe(ROOM)
    print("subscribed", flush=True)  # the driver answers once every worker is: all start together
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    keys = itertools.count()
    done = 0
    start = time.monotonic()
    deadline = start + seconds

    async def one_after_another() -> None:
        nonlocal done
        while time.monotonic() < deadline:
            if phase == "publish":
                await broker.publish(ROOM, "danmaku.message", DANMAKU)
            else:
                n = next(keys)
                await store.put_record(Record("order", f"w{index}-{n}", ROOM, ORDER, int(time.time() * 1000)))
            done += 1

    await asyncio.gather(*(one_after_another() for _ in range(in_flight)))
    elapsed = time.monotonic() - start
    while True:  # the last publications reach this worker's stream: until a quiet second
        before = received
        await asyncio.sleep(1.0)
        if received == before:
            break
    print(json.dumps({"done": done, "elapsed_s": elapsed, "received": received}), flush=True)
    channel.close()


def _run_phase(
    phase: str,
    path: Path,
    workers: int,
    seconds: float,
    in_flight: int,
    client_cpu: str,
    server_pid: int,
) -> dict[str, Any]:
    command = [
        sys.executable,
        "-m",
        "liveroom.loadtest.supervisor_bench",
        "--role",
        "worker",
        "--path",
        str(path),
    ]
    procs = [
        subprocess.Popen(
            [
                "taskset",
                "-c",
                client_cpu,
                *command,
                "--index",
                str(i),
                "--phase",
                phase,
                "--seconds",
                str(seconds),
                "--in-flight",
                str(in_flight),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for i in range(workers)
    ]
    for proc in procs:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "subscribed"
    cpu_before = _cpu_s(server_pid)
    for proc in procs:
        assert proc.stdin is not None
        proc.stdin.write("go\n")
        proc.stdin.flush()
    outputs = [json.loads(p.communicate(timeout=seconds + 60)[0].strip().splitlines()[-1]) for p in procs]
    cpu = _cpu_s(server_pid) - cpu_before  # the whole phase: connecting and the tail included
    operations = sum(o["done"] for o in outputs)
    elapsed = max(o["elapsed_s"] for o in outputs)
    result = {
        "phase": phase,
        "operations": operations,
        "per_s": round(operations / elapsed),
        # Its CPU against the measured window (it idles before and after: a slight overcount).
        "server_cpu_cores": round(cpu / elapsed, 3),
        "server_us_per_operation": round(cpu / operations * 1e6, 2),
        # What one supervisor core would sustain at that cost, were the workers faster.
        "per_s_at_one_core": round(operations / cpu),
        "received_per_worker": [o["received"] for o in outputs],
    }
    print(json.dumps(result), flush=True)
    return result


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--workers", type=int, default=2, help="worker processes (IPC clients)")
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each phase")
    parser.add_argument("--in-flight", type=int, default=64, help="calls each worker keeps outstanding")
    parser.add_argument("--server-cpu", default="0")
    parser.add_argument("--client-cpu", default="1")
    parser.add_argument("--output", default="loadtest-results")
    parser.add_argument(
        "--start-delay", type=float, default=3.0, help="s for the workers to start and subscribe"
    )
    parser.add_argument(
        "--role", default="driver", choices=["driver", "server", "worker"], help=argparse.SUPPRESS
    )
    parser.add_argument("--path", default="", help=argparse.SUPPRESS)
    parser.add_argument("--database", default="", help=argparse.SUPPRESS)
    parser.add_argument("--index", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--phase", default="publish", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.role == "server":
        asyncio.run(_serve(Path(args.path), Path(args.database), args.workers))
        return 0
    if args.role == "worker":
        asyncio.run(_work(Path(args.path), args.index, args.phase, args.seconds, args.in_flight))
        return 0

    load_before = load_average()
    directory = Path(tempfile.mkdtemp(prefix="lr-supbench-"))
    path = directory / "ipc.sock"
    server = subprocess.Popen(
        [
            "taskset",
            "-c",
            args.server_cpu,
            sys.executable,
            "-m",
            "liveroom.loadtest.supervisor_bench",
            "--role",
            "server",
            "--path",
            str(path),
            "--database",
            str(directory / "store.db"),
            "--workers",
            str(args.workers),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None and server.stdout.readline().strip() == "ready"
        phases = [
            _run_phase(
                phase,
                path,
                args.workers,
                args.seconds,
                args.in_flight,
                args.client_cpu,
                server.pid,
            )
            for phase in ("publish", "put_record")
        ]
    finally:
        assert server.stdin is not None
        server.stdin.close()
        server.wait(30)
        shutil.rmtree(directory, ignore_errors=True)
    result = {
        "scenario": "supervisor",
        "workers": args.workers,
        "in_flight": args.in_flight,
        "seconds": args.seconds,
        "phases": phases,
        "machine": machine_summary(load_before),
        # every publication reached every worker's stream (each worker counts its own)
        "correct": all(received >= phases[0]["operations"] for received in phases[0]["received_per_worker"]),
    }
    return save_result(result, args.output, "supervisor")


if __name__ == "__main__":
    sys.exit(main())
