"""The official JavaScript client (socket.io-client v4, run by node) with its default
transports: long-polling first, then the upgrade to WebSocket; polling alone, binary
attachments included (base64 in the polling payload); and with socket.io-msgpack-parser
at /socket.io-msgpack/, on WebSocket and on polling."""

from __future__ import annotations

import json
import shutil
import subprocess
import uuid
from pathlib import Path
from typing import Any

import pytest
from support import ServerProcess, token

JS = Path(__file__).parent / "js"


def run_node(script: str, *args: str) -> dict[str, Any]:
    if shutil.which("node") is None:
        pytest.skip("node is not installed")
    if not (JS / "node_modules" / "socket.io-msgpack-parser").is_dir():
        pytest.fail("run `npm ci --prefix tests/js` first (the README's test command does)")
    result = subprocess.run(
        ["node", str(JS / script), *args], capture_output=True, text=True, timeout=30, check=False
    )
    assert result.returncode == 0, result.stderr
    outcome: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    return outcome


def test_polling_then_upgrade_and_polling_alone(server: ServerProcess) -> None:
    room = "jsp-" + uuid.uuid4().hex[:8]
    outcome = run_node("polling_upgrade.mjs", server.url, token("jsp-up"), token("jsp-poll"), room)
    assert outcome["firstTransport"] == "polling" and outcome["transport"] == "websocket"
    assert outcome["pollerTransport"] == "polling"
    assert outcome["join"]["ok"] and outcome["pollerJoin"]["ok"] and outcome["sent"]["ok"]
    assert outcome["item"]["data"]["text"] == "polled, then upgraded"
    assert outcome["binary"]["ok"] is True and outcome["time"]["ok"] is True


def test_msgpack_clients_on_websocket_and_polling(server: ServerProcess) -> None:
    room = "jsm-" + uuid.uuid4().hex[:8]
    outcome = run_node("msgpack_round_trip.mjs", server.url, token("jsm-ws"), token("jsm-poll"), room)
    assert outcome["join"]["ok"] and outcome["join"]["room"] == room and outcome["pollerJoin"]["ok"]
    assert outcome["sent"]["ok"]
    assert outcome["received"]["room"] == room
    assert outcome["received"]["item"]["data"]["text"] == "packed 弹幕"
    assert outcome["bad"]["ok"] is False and outcome["bad"]["error"]["code"] == "bad_request"
    assert outcome["refused"]["data"]["code"] == "unauthorized"
