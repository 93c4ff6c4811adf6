"""`liveroom serve` and `liveroom token` as a new user meets them: start-up failures in one
line, links that point where the server listens, and the plugins' start-up log line."""

from __future__ import annotations

import errno
import logging
import os
import socket
import sqlite3
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from support import SECRET, free_port

from liveroom.auth import TokenAuthority
from liveroom.cli import startup_failure
from liveroom.config import load_config
from liveroom.errors import Unavailable
from liveroom.node import Node

ENV = {
    "LIVEROOM_JWT_SECRET": SECRET,
    "PATH": "/usr/bin:/bin",
    "LIVEROOM_LOG_LEVEL": "WARNING",
    # RTMP ingest on a free port, not 1935: another run (or xdist worker) may hold that one.
    "LIVEROOM_MEDIA_RTMP_PORT": str(free_port()),
    "LIVEROOM_SERVER_WORKERS": "1",  # one process unless a test asks (the default: the core count)
}


def cli(cwd: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "liveroom", *args]
    return subprocess.run(
        command, capture_output=True, text=True, env={**ENV, **env}, cwd=cwd, timeout=60, check=False
    )


def test_a_port_in_use_stops_start_up_with_one_line(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        run = cli(tmp_path, "serve", "--port", str(port), LIVEROOM_MEDIA_WORKERS="1")
    assert run.returncode == 1, run.stderr
    assert run.stderr.strip().splitlines() == [
        f"liveroom: cannot start: 127.0.0.1:{port} is already in use (another server?);"
        " pick another: --port or [server] port"
    ]
    assert run.stdout == ""  # "serving on" only once it listens


def test_a_mixed_broker_and_store_refuses_to_start(tmp_path: Path) -> None:
    """The README's old "Several nodes" command (broker on Redis, store left embedded): one line
    naming both keys, before anything listens."""
    run = cli(tmp_path, "serve", "--port", "0", LIVEROOM_BROKER_KIND="redis")
    assert run.returncode != 0
    (line,) = run.stderr.strip().splitlines()
    assert "[broker] kind = 'redis' and [store] kind = 'embedded'" in line, line
    assert "LIVEROOM_STORE_KIND=redis" in line
    assert run.stdout == ""


def test_each_start_up_failure_is_named_in_one_line() -> None:
    def named(exc: BaseException) -> str:
        return startup_failure(exc, "10.0.0.9", 80)

    assert named(OSError(errno.EACCES, "denied")) == (
        "not allowed to listen on 10.0.0.9:80 (ports below 1024 need privileges)"
    )
    assert named(OSError(errno.EADDRNOTAVAIL, "x")).startswith("10.0.0.9 is not an address of this machine")
    assert named(socket.gaierror(-2, "Name or service not known")) == (
        "cannot listen on '10.0.0.9': Name or service not known (check --host / [server] host)"
    )
    assert named(PermissionError(errno.EACCES, "Permission denied", "data/jwt.secret")) == (
        "Permission denied: data/jwt.secret"
    )
    assert named(sqlite3.OperationalError("unable to open database file")) == (
        "the SQLite store ([store] sqlite_path): unable to open database file"
    )
    assert named(Unavailable("the store is unreachable")) == (
        "the store is unreachable (is Redis up at [redis] url?)"
    )
    assert "\n" not in named(RuntimeError("anything else"))


def test_token_links_point_where_the_server_listens(tmp_path: Path) -> None:
    minted, *links = cli(
        tmp_path, "token", "--user", "h1", "--role", "host", "--room", "shop:1", "--links"
    ).stdout.splitlines()
    assert TokenAuthority(SECRET).verify(minted).room == "shop:1"
    assert links == [
        f"host console: http://127.0.0.1:8080/host/shop%3A1#token={minted}",
        f"dashboard: http://127.0.0.1:8080/dashboard/shop%3A1#token={minted}",
        f"viewer: http://127.0.0.1:8080/room/shop%3A1#token={minted}",
    ]
    # The config the server reads (./config.toml here), its --port, or a --base-url.
    (tmp_path / "config.toml").write_text('[server]\nhost = "0.0.0.0"\nport = 9123\n')
    run = cli(tmp_path, "token", "--user", "u1", "--room", "r1", "--links")
    assert run.stdout.splitlines()[1].startswith("viewer: http://127.0.0.1:9123/room/r1#token=")
    assert "http://127.0.0.1:9123" in run.stderr and "--base-url" in run.stderr  # where, and how to change it
    run = cli(tmp_path, "token", "--user", "u1", "--room", "r1", "--links", "--port", "9200")
    assert run.stdout.splitlines()[1].startswith("viewer: http://127.0.0.1:9200/room/r1#token=")
    run = cli(
        tmp_path,
        "token",
        "--user",
        "u1",
        "--room",
        "r1",
        "--links",
        "--base-url",
        "https://live.example.com/",
    )
    assert run.stdout.splitlines()[1].startswith("viewer: https://live.example.com/room/r1#token=")
    assert run.stderr == ""
    refused = cli(tmp_path, "token", "--user", "u1", "--links")
    assert refused.returncode == 2 and "--links needs --room" in refused.stderr


def test_start_up_logs_each_plugin_with_its_config(caplog: pytest.LogCaptureFixture) -> None:
    environ = {
        "LIVEROOM_STORE_KIND": "memory",
        "LIVEROOM_JWT_SECRET": SECRET,
        "LIVEROOM_PLUGINS_POLL_ENABLED": "false",
        "LIVEROOM_PLUGINS_SALE_WEBHOOK_URL": "https://shop:hunter2@merchant.example/orders",
    }
    with caplog.at_level(logging.INFO, logger="liveroom.discovery"):
        Node(load_config(None, environ=environ))
    lines = [record.getMessage() for record in caplog.records]
    danmaku = next(line for line in lines if line.startswith("plugin danmaku loaded"))
    assert "from liveroom.plugins.danmaku:DanmakuPlugin: max_length=200, rate_per_s=1.0" in danmaku
    sale = next(line for line in lines if line.startswith("plugin sale loaded"))
    assert "webhook_url='https://***@merchant.example/orders'" in sale and "hunter2" not in sale
    assert not any(line.startswith("plugin poll loaded") for line in lines)
    assert any(line.startswith("plugins not loaded") and "poll" in line for line in lines)


def test_serve_runs_a_worker_per_core_with_media_by_default(tmp_path: Path) -> None:
    """No `--workers`, no `[server] workers`: one worker per core, the media plane on (worker 0
    holds it; docs/workers.md), ready on every worker; SIGTERM stops them all."""
    env = {k: v for k, v in ENV.items() if k != "LIVEROOM_SERVER_WORKERS"}
    port = free_port()
    with subprocess.Popen(
        [sys.executable, "-m", "liveroom", "serve", "--port", str(port)],
        env={**env, "LIVEROOM_STORE_KIND": "memory"},
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as process:
        try:
            assert process.stdout is not None
            line = process.stdout.readline()  # "serving on" once every worker is ready
            cores = os.cpu_count() or 1
            several = f", {cores} workers" if cores > 1 else ""
            url = f"http://127.0.0.1:{port}"
            assert line.strip() == f"liveroom: serving on {url} (Socket.IO at /socket.io/{several})"
            with urllib.request.urlopen(f"{url}/readyz", timeout=10) as response:
                assert response.status == 200
            offer = urllib.request.Request(f"{url}/whip/r1", b"v=0", method="POST")
            with pytest.raises(urllib.error.HTTPError) as refused:  # no token: the media plane answers
                urllib.request.urlopen(offer, timeout=10)
            assert refused.value.code == 401, refused.value.read()
            refused.value.close()
        finally:
            process.terminate()
            assert process.wait(60) == 0, process.communicate()[1]


def test_workers_on_a_port_in_use_stop_start_up_with_one_line(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        run = cli(tmp_path, "serve", "--port", str(port), "--workers", "2", LIVEROOM_MEDIA_ENABLED="false")
    assert run.returncode == 1, run.stderr
    assert run.stderr.strip().splitlines() == [
        f"liveroom: cannot start: 127.0.0.1:{port} is already in use (another server?);"
        " pick another: --port or [server] port"
    ]


def test_a_worker_that_cannot_start_stops_the_supervisor(tmp_path: Path) -> None:
    """A bad plugin fails in each worker as it builds its node: the supervisor stops, exit 1."""
    run = cli(
        tmp_path,
        "serve",
        "--port",
        "0",
        "--workers",
        "2",
        LIVEROOM_MEDIA_ENABLED="false",
        LIVEROOM_PLUGINS_POLL_MIN_DURATION_S="not-a-number",
    )
    assert run.returncode == 1, run.stderr
    assert "liveroom: cannot start: worker" in run.stderr, run.stderr
    assert run.stdout == ""
