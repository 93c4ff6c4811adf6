"""The official JavaScript client (socket.io-client v4 from npm, run by node) works unchanged."""

from __future__ import annotations

import json
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest
from support import ServerProcess, token

JS = Path(__file__).parent / "js"


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")
def test_two_js_clients_exchange_danmaku(server: ServerProcess) -> None:
    if not (JS / "node_modules" / "socket.io-client").is_dir():
        pytest.fail("run `npm ci --prefix tests/js` first (the README's test command does)")
    room = "js-" + uuid.uuid4().hex[:8]
    result = subprocess.run(
        [
            "node",
            str(JS / "danmaku_round_trip.mjs"),
            server.url,
            token("js-alice", name="Alice"),
            token("js-bob", name="Bob"),
            room,
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    outcome = json.loads(result.stdout.strip().splitlines()[-1])
    assert outcome["joinA"]["ok"] and outcome["joinA"]["room"] == room and outcome["joinB"]["online"] == 2
    assert outcome["sent"]["ok"]
    item = outcome["got"]["item"]
    assert outcome["got"]["room"] == room
    assert item["data"] == {
        "id": outcome["sent"]["id"],
        "user": {"id": "js-alice", "name": "Alice"},
        "text": "hello from node",
    }
    assert item["seq"] == 1
    assert outcome["badShape"]["ok"] is False and outcome["badShape"]["error"]["code"] == "bad_request"
    assert outcome["time"]["ok"] and isinstance(outcome["time"]["server_time"], float)
    assert outcome["refused"]["data"]["code"] == "unauthorized"
    assert "invalid token" in outcome["refused"]["message"]
