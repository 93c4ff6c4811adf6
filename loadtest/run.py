"""Running one scenario: start the server if asked, start the processes, gather, sum up."""

from __future__ import annotations

import math
import multiprocessing
import os
import secrets
import socket
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .machine import MachineSample, MachineWatch, load_average
from .profile import start_profile
from .scenarios import Settings
from .servers import ProcessWatch, SpawnedServer, liveroom_metrics, spawn_server
from .stats import Snapshot
from .summary import summarize
from .worker import Plan, Schedule, worker_main

__all__ = ["Recording", "run_scenario"]

STARTUP_S = 2.0  # for the spawned processes to import and get their loops going


@dataclass
class Recording:
    """Everything a run saw, per second, plus the plan's timeline (all wall clock)."""

    settings: Settings
    t0: float
    publish_from: float = 0.0
    publish_until: float = 0.0
    end_at: float = 0.0
    stall_at: float = 0.0
    all_joined_at: float | None = None
    server_pid: int = 0
    profile_path: Path | None = None
    seconds: dict[int, Snapshot] = field(default_factory=dict)
    # Gauges (connected, sampled connections) per second and process: the latest report wins.
    gauges: dict[int, dict[int, tuple[int, int]]] = field(default_factory=dict)
    server: list[tuple[float, float, int]] = field(default_factory=list)  # (time, cpu_s, rss)
    server_system: list[float] = field(default_factory=list)  # kernel CPU seconds, same samples
    server_by_process: list[dict[str, float]] = field(default_factory=list)  # CPU s by process, same samples
    server_rss_before: int = 0
    metrics: dict[str, float] = field(default_factory=dict)
    # The machine, sampled with the server (docs/benchmarks.md, "Is the run trustworthy?").
    machine: list[MachineSample] = field(default_factory=list)
    load_before: list[float] = field(default_factory=list)
    load_after: list[float] = field(default_factory=list)
    processes: int = 0  # load-generator processes


def run_scenario(settings: Settings) -> dict[str, Any]:
    secret = settings.secret or os.environ.get("LIVEROOM_JWT_SECRET") or secrets.token_urlsafe(32)
    load_before = load_average()  # before this run adds its own load
    spawned: SpawnedServer | None = None
    url, pid = settings.url, settings.server_pid
    if not url:
        env = dict(settings.server_env)
        spawned = spawn_server(settings.server, _free_port(), secret, settings.server_cpus, env)
        url, pid = spawned.url, spawned.process.pid
    try:
        watch = ProcessWatch(pid, *settings.more_server_pids) if pid else None
        recording = _record(settings, url, secret, watch)
        recording.load_before, recording.load_after = load_before, load_average()
    finally:
        if spawned is not None:
            spawned.stop()
    summary: dict[str, Any] = summarize(recording, url, spawned.kind if spawned else "external")
    return summary


def _record(settings: Settings, url: str, secret: str, watch: ProcessWatch | None) -> Recording:
    t0 = float(math.ceil(time.time() + STARTUP_S))  # whole seconds, as the processes report
    recording = Recording(settings, t0, server_pid=watch.pid if watch else 0)
    if watch is not None:
        recording.server_rss_before = watch.rss_bytes()
    context = multiprocessing.get_context("spawn")
    pipes, controls, processes = [], [], []
    plans = _plans(settings, url, secret, recording)
    recording.processes = len(plans)
    for plan in plans:
        receiver, sender = context.Pipe(duplex=False)
        control_in, control_out = context.Pipe(duplex=False)
        process = context.Process(target=worker_main, args=(plan, sender, control_in), daemon=True)
        process.start()
        sender.close()
        pipes.append(receiver)
        controls.append(control_out)
        processes.append(process)
    try:
        _gather(recording, pipes, controls, watch)
    finally:
        for process in processes:
            process.join(5)
            if process.is_alive():
                process.kill()
    recording.metrics = liveroom_metrics(url.split(",")[0])
    return recording


def _plans(settings: Settings, url: str, secret: str, rec: Recording) -> list[Plan]:
    count = max(1, min(settings.processes, settings.viewers or 1))
    # Several nodes: each viewer process connects to one of them, in turn.
    urls = url.split(",")
    common: dict[str, Any] = {
        "secret": secret,
        "room": settings.room,
        "start_at": rec.t0,
        "concurrency": max(1, settings.concurrency // count),
        "sample_every": settings.sample_every,
        "stall_every": round(1 / settings.stall_fraction) if settings.stall_fraction else 0,
        "churn_s": settings.churn_s,
        "cpus": settings.cpus,
        "text": ("弹幕" * settings.text_chars)[: settings.text_chars]
        if settings.text_chars > 50
        else "x" * settings.text_chars,
    }
    plans = [
        Plan(
            index=index,
            url=urls[index % len(urls)],
            viewers=settings.viewers // count + (1 if index < settings.viewers % count else 0),
            connect_rate=settings.connect_rate / count,
            **common,
        )
        for index in range(count)
    ]
    if settings.rate or settings.priority_rate:
        plans.append(
            Plan(
                index=count,
                url=settings.publish_url or urls[0],
                publishers=settings.publishers,
                publish_rate=settings.rate,
                priority_rate=settings.priority_rate,
                **common,
            )
        )
    return plans


def _gather(rec: Recording, pipes: list[Any], controls: list[Any], watch: ProcessWatch | None) -> None:
    s = rec.settings
    open_pipes = list(pipes)
    expected = s.viewers + (s.publishers if s.rate or s.priority_rate else 0)
    connect_deadline = rec.t0 + s.connect_timeout_s
    hard_stop = connect_deadline + s.duration_s + 30.0
    next_sample = math.floor(time.time()) + 0.5
    machine = MachineWatch()
    profiler = None
    while open_pipes and time.time() < hard_stop:
        if s.profile and rec.end_at and profiler is None and time.time() >= rec.publish_from + s.warmup_s:
            rec.profile_path = Path(s.output) / f"profile-{s.scenario}-{rec.server_pid}.txt"
            rec.profile_path.parent.mkdir(parents=True, exist_ok=True)
            profiler = start_profile(rec.server_pid, rec.publish_until - time.time(), rec.profile_path)
        if not rec.end_at:
            joined = sum(snap.joined for snap in rec.seconds.values())
            if joined >= expected and rec.all_joined_at is None:
                rec.all_joined_at = time.time()
            if rec.all_joined_at is not None or time.time() >= connect_deadline:
                _start_measuring(rec, controls)
                hard_stop = rec.end_at + 20.0
        for pipe in list(open_pipes):
            while pipe.poll():
                try:
                    kind, process, at, data = pipe.recv()
                except EOFError:
                    open_pipes.remove(pipe)
                    break
                _add(rec, round(at - rec.t0), process, Snapshot.from_json(data))
                if kind == "done":
                    open_pipes.remove(pipe)
                    break
        if time.time() >= next_sample:
            rec.machine.append(machine.sample())
            if watch is not None:
                rec.server.append((time.time(), watch.cpu_s(), watch.rss_bytes()))
                rec.server_system.append(watch.system_s())
                rec.server_by_process.append(watch.by_process())
            _progress(rec)
            next_sample += 1.0
        time.sleep(0.05)
    if profiler is not None:
        profiler.wait(30)


def _start_measuring(rec: Recording, controls: list[Any]) -> None:
    s = rec.settings
    rec.publish_from = float(math.ceil(time.time() + 1.0))
    rec.end_at = rec.publish_from + math.ceil(s.duration_s)
    rec.publish_until = rec.end_at - 1.0
    rec.stall_at = rec.publish_from + math.ceil(s.duration_s / 2)
    schedule = Schedule(rec.publish_from, rec.publish_until, rec.stall_at, rec.end_at)
    for control in controls:
        control.send(schedule)


def _add(rec: Recording, second: int, process: int, snapshot: Snapshot) -> None:
    total = rec.seconds.setdefault(second, Snapshot())
    total.merge(snapshot, gauges=False)
    gauges = rec.gauges.setdefault(second, {})
    gauges[process] = (snapshot.connected, snapshot.sampled_connections)
    total.connected = sum(connected for connected, _ in gauges.values())
    total.sampled_connections = sum(sampled for _, sampled in gauges.values())


def _progress(rec: Recording) -> None:
    if rec.settings.quiet or not rec.seconds:
        return
    second = max(rec.seconds)
    latest = rec.seconds[second]
    connected = latest.connected
    p99 = latest.latency.percentile(0.99)
    server = ""
    if len(rec.server) >= 2:
        (t1, c1, _), (t2, c2, rss) = rec.server[-2], rec.server[-1]
        server = f" server cpu {100 * (c2 - c1) / max(t2 - t1, 1e-9):5.1f}% rss {rss / 2**20:6.1f} MB"
    joined = sum(s.joined for s in rec.seconds.values())
    line = (
        f"\r[{rec.settings.scenario}] t={second:4d}s conn {connected:6d} joined {joined:6d}"
        f" deliveries/s {latest.items:9,d} p99 {p99 if p99 is not None else '-':>5} ms"
        f"{server} gen cpu {100 * latest.cpu_s:5.1f}%"
        f"{f' load {rec.machine[-1].load1:.2f}' if rec.machine else ''}"
    )
    sys.stderr.write(line.ljust(140))
    sys.stderr.flush()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
