"""The stage follows the plugin (issue 17): a guest off the co-stream stage, whichever way,
is off the air, and the publish token they still hold does not put them back.

Real clients: Socket.IO for the room, aiortc over WHIP/WHEP for the media, one server
process (`media.workers = 1`).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import jwt
import pytest
from media_support import WhipError, delete, play, publish, wait_until
from plugin_support import code, joined, room_name
from support import ServerProcess, Viewer, token

from liveroom.errors import Unauthorized
from liveroom.publish_token import PublishTokens
from liveroom.store import MemoryStore


@pytest.fixture(scope="module", params=["1", "2"], ids=["in-node", "workers"])
def server(
    tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[ServerProcess]:
    """The media plane in the node, then in two worker processes (the end goes through the pool)."""
    process = ServerProcess(tmp_path_factory.mktemp("media-stage"), {"LIVEROOM_MEDIA_WORKERS": request.param})
    yield process.start()
    process.stop()


async def on_stage(
    server: ServerProcess, viewers: list[Viewer], room: str, guest: str
) -> tuple[Viewer, Viewer, str]:
    """A host and a guest in `room`, the guest accepted: (host, guest, publish token)."""
    host = await joined(server, viewers, f"host-{room}", room, "host")
    fan = await joined(server, viewers, guest, room)
    assert code(await fan.call("costream.request", {"room": room})) == "ok"
    assert (await host.call("costream.accept", {"room": room, "user": guest}))["slot"] == 1
    [grant] = await fan.wait_for(lambda i: i["type"] == "costream.accepted")
    return host, fan, str(grant["data"]["token"])


async def assert_off_air(server: ServerProcess, room: str, stale_token: str) -> None:
    """Nobody plays slot 1 any more, and the guest's token does not publish again."""
    with pytest.raises(WhipError) as nobody:
        await play(server.url, room, token("late-fan", room=room), slot="1")
    assert nobody.value.status == 404
    with pytest.raises(WhipError) as again:
        await publish(server.url, room, stale_token)
    assert again.value.status == 401
    assert "revoked" in json.loads(again.value.body)["error"]["message"]


@pytest.mark.parametrize("how", ["remove", "leave", "disconnect", "ban"])
async def test_a_guest_off_the_stage_is_off_the_air(
    server: ServerProcess, viewers: list[Viewer], how: str
) -> None:
    room = room_name()
    host, fan, publish_token = await on_stage(server, viewers, room, f"guest-{how}")
    guest = await publish(server.url, room, publish_token)
    watcher = await play(server.url, room, token(f"watcher-{how}", room=room), slot="1")
    try:
        await wait_until(lambda: len(watcher.counters) >= 3, 15, "the guest's video")
        if how == "remove":
            assert code(await host.call("costream.remove", {"room": room, "user": fan.user})) == "ok"
        elif how == "leave":
            assert code(await fan.call("costream.leave", {"room": room})) == "ok"
        elif how == "disconnect":
            await fan.close()
        else:
            ban = {"room": room, "user": fan.user, "duration_s": 60}
            assert code(await host.call("danmaku.ban", ban)) == "ok"
        await wait_until(lambda: watcher.ended.get("video") is True, 10, "the guest's media to end")
        await assert_off_air(server, room, publish_token)
    finally:
        await watcher.close()
        await guest.close()


def test_a_revoked_slot_refuses_the_tokens_minted_before_and_only_those() -> None:
    tokens = PublishTokens("a-secret-that-is-long-enough-for-hs256-000000000")
    heard: list[tuple[str, int, str]] = []
    tokens.on_revoke(lambda room, slot, user: heard.append((room, slot, user)))
    now = time.time()
    old, _ = tokens.mint("ann", "r", 1, now)
    other_slot, _ = tokens.mint("bob", "r", 2, now)
    tokens.revoke("r", 1, "ann", now * 1000)  # in the same millisecond as the mint
    assert heard == [("r", 1, "ann")]
    with pytest.raises(Unauthorized, match="revoked"):
        tokens.verify(old, "r")
    assert tokens.verify(other_slot, "r").slot == 2
    new, _ = tokens.mint("cat", "r", 1, now)  # the next guest of slot 1, in the same millisecond too
    assert tokens.verify(new, "r").user_id == "cat"
    tokens.revoke("r", 9, "", now * 1000 + 120_000)  # later: slot 1's entry outlived its tokens
    assert ("r", 1) not in tokens._revoked


async def test_a_revocation_holds_in_every_process_that_shares_the_store() -> None:
    """Two processes (or nodes, or one before and after a restart) over one store: a slot
    revoked in one is refused in the other, which never heard of it."""
    store, secret = MemoryStore(), "a-secret-that-is-long-enough-for-hs256-000000000"
    here, there = PublishTokens(secret, store=store), PublishTokens(secret, store=store)
    now = time.time()
    old, _ = here.mint("ann", "r", 1, now)
    await here.revoke_everywhere("r", 1, "ann", now * 1000)
    minted = jwt.decode(old, options={"verify_signature": False})["mnt"]
    there.check_revoked("r", 1, minted)  # its own list knows nothing...
    with pytest.raises(Unauthorized, match="revoked"):
        await there.check_revoked_everywhere("r", 1, minted)  # ...the store does
    new, _ = here.mint("cat", "r", 1, now)  # the next guest of the slot publishes anywhere
    await there.check_revoked_everywhere("r", 1, jwt.decode(new, options={"verify_signature": False})["mnt"])
    await there.check_revoked_everywhere("r", 2, minted)  # another slot: untouched


async def test_a_slot_the_host_ended_takes_the_token_with_it(
    server: ServerProcess, viewers: list[Viewer]
) -> None:
    room = room_name()
    host, fan, publish_token = await on_stage(server, viewers, room, "guest-ended")
    guest = await publish(server.url, room, publish_token)
    try:
        status, _ = await delete(f"{server.url}/whip/{room}/slots/1", token(host.user, "host", room=room))
        assert status == 200
        await assert_off_air(server, room, publish_token)
        # The plugin follows: the guest is off the stage too.
        await fan.wait_for(lambda i: i["type"] == "costream.removed")
        await host.wait_for(lambda i: i["type"] == "costream.stage" and i["data"]["guests"] == [])
        # Accepted again later: a new token for the same slot publishes.
        assert code(await fan.call("costream.request", {"room": room})) == "ok"
        assert (await host.call("costream.accept", {"room": room, "user": fan.user}))["slot"] == 1
        grants = await fan.wait_for(lambda i: i["type"] == "costream.accepted", count=2)
        again = await publish(server.url, room, str(grants[-1]["data"]["token"]))
        await again.close()
    finally:
        await guest.close()
