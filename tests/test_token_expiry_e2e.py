"""Identity over time, through a real server: a token that expires while its connection is
open stops working at once, is announced (`token_expired`), can be renewed with
`auth.refresh`, and the connection is closed if it is not."""

from __future__ import annotations

import asyncio
import time
import uuid

from support import ServerProcess, Viewer, module_server, token

GRACE_S = 1.0

server = module_server(
    "server",
    {
        "LIVEROOM_SERVER_PING_INTERVAL_S": "0.5",
        "LIVEROOM_SERVER_PING_TIMEOUT_S": "0.5",
        "LIVEROOM_AUTH_REFRESH_GRACE_S": str(GRACE_S),
    },
)


async def short_lived(server: ServerProcess, user: str, ttl: float = 2) -> Viewer:
    viewer = Viewer(server.url, user, role="admin", reconnection=False)
    viewer.token = token(user, "admin", ttl=ttl)
    return await viewer.connect()


async def until_expired(viewer: Viewer) -> dict[str, object]:
    """Commands until one is refused for the expired token (a token lives whole seconds)."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        ack = await viewer.call("time", {})
        if not ack["ok"]:
            return ack  # type: ignore[no-any-return]
        await asyncio.sleep(0.2)
    raise AssertionError("the token never expired")


async def test_an_expired_token_is_refused_then_renewed(server: ServerProcess) -> None:
    user = "renewer-" + uuid.uuid4().hex[:6]
    viewer = await short_lived(server, user)
    room = "exp-" + uuid.uuid4().hex[:6]
    await viewer.join(room)
    refused = await until_expired(viewer)
    assert refused["error"]["code"] == "token_expired"  # type: ignore[index]
    # A staff command after expiry is refused the same way (an admin token once ran them).
    poll = await viewer.call("poll.create", {"room": room, "question": "q?", "options": ["a", "b"]})
    assert poll["error"]["code"] == "token_expired"
    told = await viewer.wait_for(lambda item: item["type"] == "token_expired")
    assert told[0]["data"]["close_at"] > told[0]["data"]["expired_at"]
    # Another user's token does not renew this connection.
    other = await viewer.call("auth.refresh", {"token": token("someone-else", "admin")})
    assert other["error"]["code"] == "forbidden"
    renewed = await viewer.call("auth.refresh", {"token": token(user, "admin", ttl=600)})
    assert renewed["ok"] is True and renewed["expires_at"] > time.time() * 1000
    assert (await viewer.call("time", {}))["ok"] is True
    await asyncio.sleep(GRACE_S + 0.6)  # past the old grace: still connected, commands work
    assert viewer.client.connected and (await viewer.call("time", {}))["ok"] is True
    await viewer.close()


async def test_a_connection_not_renewed_is_closed_after_the_grace(server: ServerProcess) -> None:
    viewer = await short_lived(server, "lapsed-" + uuid.uuid4().hex[:6])
    await viewer.wait_for(lambda item: item["type"] == "token_expired", timeout=10)
    items = await viewer.wait_for(lambda item: item["type"] == "system.disconnect", timeout=10)
    assert items[0]["data"]["code"] == "token_expired"
    for _ in range(100):
        if not viewer.client.connected:
            break
        await asyncio.sleep(0.05)
    assert not viewer.client.connected
    await viewer.close()


async def test_refresh_payloads_are_checked(server: ServerProcess) -> None:
    viewer = await short_lived(server, "checked-" + uuid.uuid4().hex[:6], ttl=600)
    assert (await viewer.call("auth.refresh", {}))["error"]["code"] == "bad_request"
    assert (await viewer.call("auth.refresh", {"token": "nope"}))["error"]["code"] == "unauthorized"
    viewer_token = token(viewer.user, "viewer")  # a lower role: reconnect instead
    assert (await viewer.call("auth.refresh", {"token": viewer_token}))["error"]["code"] == "forbidden"
    await viewer.close()
