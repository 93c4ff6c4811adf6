"""One load-generator process: its share of viewers (or the publishers), on its own loop.

The parent gives each process a `Plan` and reads a `Snapshot` from it every second over a
pipe. Viewers connect from the plan's `start_at`; once the parent has seen them all joined
it sends every process one `Schedule` (when to publish, stall and stop, by wall clock),
so the measured part starts with the room full.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import resource
import time
from dataclasses import dataclass
from multiprocessing.connection import Connection as Pipe
from typing import Any

import uvloop

from liveroom.auth import Role, TokenAuthority

from .sioclient import SocketIOClient, connect_client
from .stats import Snapshot

__all__ = ["Plan", "Schedule", "worker_main"]

STALLED_RECEIVE_BUFFER = 4096


@dataclass(frozen=True, slots=True)
class Schedule:
    """Wall-clock times of the measured part, sent once everyone has joined."""

    publish_from: float
    publish_until: float  # a little before `end_at`, so the last items land
    stall_at: float
    end_at: float  # close everything and report


@dataclass(frozen=True, slots=True)
class Plan:
    index: int
    url: str
    secret: str
    room: str
    start_at: float  # wall clock: begin connecting
    viewers: int = 0
    connect_rate: float = 0.0  # new connections per second for this process; 0: no pacing
    concurrency: int = 200  # connects in flight at once
    sample_every: int = 10  # every Nth viewer decodes its batches for latency
    stall_every: int = 0  # every Nth viewer stops reading at `stall_at` (0: none)
    churn_s: tuple[float, float] | None = None  # connect, stay this long, leave, again
    publishers: int = 0
    publish_rate: float = 0.0  # danmaku.send per second, over all publishers
    priority_rate: float = 0.0  # bench.publish priority items per second
    text: str = "hello"
    cpus: tuple[int, ...] = ()


def worker_main(plan: Plan, pipe: Pipe, control: Pipe) -> None:
    if plan.cpus:
        os.sched_setaffinity(0, plan.cpus)
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    uvloop.run(Worker(plan, pipe, control).run())


class Worker:
    def __init__(self, plan: Plan, pipe: Pipe, control: Pipe) -> None:
        self.plan = plan
        self.pipe = pipe
        self.control = control
        self.stats = Snapshot()
        self.clients: dict[int, SocketIOClient] = {}
        self.authority = TokenAuthority(plan.secret)
        self._cpu = time.process_time()

    async def run(self) -> None:
        reporter = asyncio.create_task(self._report_every_second())
        await _sleep_until(self.plan.start_at)
        jobs = [asyncio.create_task(self._viewers())]
        publishers = [await self._join(n, role="host") for n in range(self.plan.publishers)]
        schedule: Schedule = await asyncio.get_running_loop().run_in_executor(None, self.control.recv)
        if self.plan.publishers:
            ready = [p for p in publishers if p is not None]
            jobs.append(asyncio.create_task(self._publish(ready, schedule)))
        if self.plan.stall_every:
            jobs.append(asyncio.create_task(self._stall(schedule.stall_at)))
        await _sleep_until(schedule.end_at)
        for job in jobs:
            job.cancel()
        for client in list(self.clients.values()):
            client.close()
        await asyncio.sleep(0.2)
        reporter.cancel()
        self._send("done")

    # -- viewers --------------------------------------------------------------------------

    async def _viewers(self) -> None:
        plan = self.plan
        gate = asyncio.Semaphore(plan.concurrency)
        tasks: set[asyncio.Task[None]] = set()
        started = time.monotonic()
        for number in range(plan.viewers):
            if plan.connect_rate > 0:
                await asyncio.sleep(max(0.0, started + number / plan.connect_rate - time.monotonic()))
            await gate.acquire()
            task = asyncio.create_task(self._viewer(number, gate))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        await asyncio.gather(*tasks)

    async def _viewer(self, number: int, gate: asyncio.Semaphore) -> None:
        try:
            await self._join(number)
        finally:
            gate.release()
        if self.plan.churn_s is not None:
            while True:
                await asyncio.sleep(random.uniform(*self.plan.churn_s))
                client = self.clients.pop(number, None)
                if client is not None:
                    client.close()
                await self._join(number)

    def _stalls(self, number: int) -> bool:
        every = self.plan.stall_every
        return bool(every) and number % every == every // 2 + 1 and not self._sampled(number)

    def _sampled(self, number: int) -> bool:
        return number % self.plan.sample_every == 0

    async def _join(self, number: int, role: Role = "viewer") -> SocketIOClient | None:
        plan = self.plan
        user = f"lt{plan.index}-{number}" if role == "viewer" else f"lt-pub{plan.index}-{number}"
        token = self.authority.mint(user, user, role, ttl_s=3600)
        began = time.monotonic()
        try:
            client = await connect_client(
                plan.url,
                self.stats,
                token,
                sample=role == "viewer" and self._sampled(number),
                receive_buffer=STALLED_RECEIVE_BUFFER if role == "viewer" and self._stalls(number) else None,
            )
            ack = await asyncio.wait_for(client.call("join", {"room": plan.room}), 30)
        except Exception as exc:  # refused, timed out, reset: all count as failures
            self.stats.connect_failures += 1
            self.stats.errors[f"{type(exc).__name__}: {str(exc)[:80]}"] += 1
            return None
        if not (isinstance(ack, dict) and ack.get("ok")):
            self.stats.connect_failures += 1
            self.stats.errors[_code(ack)] += 1
            client.close()
            return None
        self.stats.joined += 1
        self.stats.join_latency.add((time.monotonic() - began) * 1000.0)
        if role == "viewer":
            self.clients[number] = client
        return client

    async def _stall(self, stall_at: float) -> None:
        await _sleep_until(stall_at)
        for number, client in self.clients.items():
            if self._stalls(number):
                client.stop_reading()

    # -- publishers -----------------------------------------------------------------------

    async def _publish(self, ready: list[SocketIOClient], schedule: Schedule) -> None:
        plan = self.plan
        if not ready:
            return
        await _sleep_until(schedule.publish_from)
        began, sent, sent_priority, turn = time.monotonic(), 0, 0, 0
        while time.time() < schedule.publish_until:
            await asyncio.sleep(0.005)
            elapsed = time.monotonic() - began
            while sent < plan.publish_rate * elapsed:
                sent += 1
                turn += 1
                text = f"{sent} {plan.text}"[: max(len(plan.text), 8)]  # within max_length
                ready[turn % len(ready)].emit("danmaku.send", {"room": plan.room, "text": text}, self._acked)
            while sent_priority < plan.priority_rate * elapsed:
                sent_priority += 1
                data = {"room": plan.room, "text": f"priority {sent_priority}", "priority": True}
                ready[0].emit("bench.publish", data, self._acked_priority)

    def _acked(self, reply: Any) -> None:
        if isinstance(reply, dict) and reply.get("ok"):
            self.stats.published += 1
        else:
            self.stats.publish_errors += 1
            self.stats.errors[_code(reply)] += 1

    def _acked_priority(self, reply: Any) -> None:
        if isinstance(reply, dict) and reply.get("ok"):
            self.stats.priority_published += 1
        else:
            self.stats.publish_errors += 1
            self.stats.errors["priority:" + _code(reply)] += 1

    # -- reporting ------------------------------------------------------------------------

    async def _report_every_second(self) -> None:
        with contextlib.suppress(asyncio.CancelledError):
            while True:
                await asyncio.sleep(1.0 - time.time() % 1.0)
                self._send("tick")

    def _send(self, kind: str) -> None:
        now = time.process_time()
        snapshot = self.stats.take()
        snapshot.cpu_s, self._cpu = now - self._cpu, now
        self.pipe.send((kind, self.plan.index, time.time(), snapshot.to_json()))


def _code(reply: Any) -> str:
    if isinstance(reply, dict) and isinstance(reply.get("error"), dict):
        return str(reply["error"].get("code", "error"))
    return "no_ack"


async def _sleep_until(wall: float) -> None:
    await asyncio.sleep(max(0.0, wall - time.time()))
