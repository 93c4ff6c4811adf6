"""Start, history limits, and graceful shutdown of a real server process."""

from __future__ import annotations

import asyncio
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from support import SECRET, ServerProcess, Viewer


async def test_since_older_than_the_history_window_resets(tmp_path: Path) -> None:
    server = ServerProcess(
        tmp_path, env={"LIVEROOM_HISTORY_COUNT": "3", "LIVEROOM_PLUGINS_DANMAKU_BURST": "20"}
    ).start()
    sender = Viewer(server.url, "sender")
    watcher = Viewer(server.url, "watcher")
    try:
        await sender.connect()
        await sender.join("old")
        for n in range(6):
            assert (await sender.call("danmaku.send", {"room": "old", "text": f"m{n}"}))["ok"]
        await watcher.connect()
        too_old = await watcher.join("old", since=1)
        assert too_old["reset"] is True and too_old["missed"] == [] and too_old["seq"] == 6
        recent = await watcher.join("old", since=3)
        assert recent["reset"] is False and [m["seq"] for m in recent["missed"]] == [4, 5, 6]
        assert [m["data"]["text"] for m in recent["missed"]] == ["m3", "m4", "m5"]
    finally:
        await sender.close()
        await watcher.close()
        assert server.stop() == 0


async def test_sigterm_closes_connections_with_a_reason_and_exits_cleanly(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path).start()
    viewer = Viewer(server.url, "stayer", reconnection=False)
    disconnected = asyncio.Event()
    viewer.client.on("disconnect", lambda *reason: disconnected.set())
    await viewer.connect()
    await viewer.join("closing")
    assert server.process is not None
    server.process.send_signal(signal.SIGTERM)
    [farewell] = await viewer.wait_for(lambda i: i["type"] == "system.disconnect", timeout=10)
    assert farewell["seq"] is None
    assert farewell["data"]["code"] == "server_shutdown" and farewell["data"]["message"]
    await asyncio.wait_for(disconnected.wait(), 10)
    assert await asyncio.to_thread(server.process.wait, 15) == 0
    assert "Traceback" not in server.log()
    await viewer.close()


async def test_official_client_reconnects_after_a_restart_and_resets(tmp_path: Path) -> None:
    """A restart starts a new history epoch: a client resuming with its old epoch is told `reset`."""
    server = ServerProcess(tmp_path).start()
    viewer = Viewer(server.url, "returner")
    reconnected = asyncio.Event()
    connects = 0

    def on_connect() -> None:
        nonlocal connects
        connects += 1
        if connects > 1:
            reconnected.set()

    viewer.client.on("connect", on_connect)
    try:
        await viewer.connect()
        first = await viewer.join("again")
        await viewer.call("danmaku.send", {"room": "again", "text": "before restart"})
        server.stop()
        server = ServerProcess(tmp_path, port=server.port).start()
        await asyncio.wait_for(reconnected.wait(), 20)
        ack = await viewer.join("again", since=1, epoch=first["epoch"])
        assert ack["reset"] is True and ack["epoch"] != first["epoch"]
    finally:
        await viewer.close()
        server.stop()


def test_cli_token_and_config_errors(tmp_path: Path) -> None:
    run = [sys.executable, "-m", "liveroom"]
    env = {"LIVEROOM_JWT_SECRET": SECRET, "PATH": "/usr/bin:/bin"}
    minted = subprocess.run(
        [*run, "token", "--user", "u7", "--name", "Seven", "--role", "host", "--room", "r7", "--ttl", "60"],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        check=True,
    )
    from liveroom.auth import TokenAuthority

    identity = TokenAuthority(SECRET).verify(minted.stdout.strip())
    assert (identity.user_id, identity.name, identity.role, identity.room) == ("u7", "Seven", "host", "r7")
    bad = tmp_path / "bad.toml"
    bad.write_text("[server]\nport = 'x'\n")
    failed = subprocess.run(
        [*run, "serve", "--config", str(bad)],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        check=False,
        timeout=30,
    )
    assert failed.returncode == 2 and "expected a number" in failed.stderr
    wrong_role = subprocess.run(
        [*run, "token", "--user", "u", "--role", "king"],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        check=False,
    )
    assert wrong_role.returncode == 2


def test_secret_is_made_once_and_shared_by_serve_and_token(tmp_path: Path) -> None:
    run = [sys.executable, "-m", "liveroom", "token", "--user", "u"]
    env = {"PATH": "/usr/bin:/bin"}
    first = subprocess.run(run, capture_output=True, text=True, env=env, cwd=tmp_path, check=True).stdout
    secret_file = tmp_path / "liveroom-data" / "jwt.secret"
    assert secret_file.stat().st_mode & 0o777 == 0o600
    from liveroom.auth import TokenAuthority

    authority = TokenAuthority(secret_file.read_text().strip())
    assert authority.verify(first.strip()).user_id == "u"


@pytest.mark.parametrize("kind", ["embedded"])
def test_embedded_store_uses_sqlite_wal(tmp_path: Path, kind: str) -> None:
    server = ServerProcess(tmp_path).start()
    server.stop()
    database = sqlite3.connect(tmp_path / "liveroom.db")
    try:
        assert database.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        database.close()
