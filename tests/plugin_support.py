"""Helpers shared by the plugin tests: rooms, joined viewers, and the HTTP host API."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
import uuid
from typing import Any

from support import ServerProcess, Viewer, token


def room_name() -> str:
    return "r-" + uuid.uuid4().hex[:10]


async def joined(
    server: ServerProcess,
    viewers: list[Viewer],
    user: str,
    room: str,
    role: str = "viewer",
    tier: str | None = None,
) -> Viewer:
    viewer = Viewer(server.url, user, role, tier=tier)  # type: ignore[arg-type]
    viewers.append(viewer)
    await viewer.connect()
    await viewer.join(room)
    return viewer


async def server_ms(viewer: Viewer) -> float:
    return float((await viewer.call("time", {}))["server_time"])


def api(
    server: ServerProcess,
    method: str,
    path: str,
    body: Any = None,
    role: str = "host",
    bearer: str | None = None,
) -> tuple[int, Any]:
    """(status, JSON body) of one HTTP API call."""
    headers = {"Content-Type": "application/json"}
    credential = bearer if bearer is not None else token("api-" + role, role)  # type: ignore[arg-type]
    if credential:
        headers["Authorization"] = f"Bearer {credential}"
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(server.url + path, data=data, headers=headers, method=method)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as error:
        with error:
            return error.code, json.load(error)


def code(ack: dict[str, Any]) -> str:
    return "ok" if ack["ok"] else str(ack["error"]["code"])
