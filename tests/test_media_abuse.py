"""Abuse inside the rules, on WHIP/WHEP (issue 17): valid tokens used to hog or hijack media.

Real HTTP and real aiortc peers against a server process (`media.workers = 1`) with a small
room (3 connected viewers) and a short connect timeout, so the caps are reached quickly.
"""

from __future__ import annotations

import json
import time
import uuid
import zlib
from collections.abc import Iterator

import jwt
import pytest
from aiortc import RTCConfiguration, RTCPeerConnection
from media_support import (
    Peer,
    WhipError,
    delete,
    get_json,
    patch_fragment,
    play,
    post_sdp,
    publish,
    scrape,
    wait_until,
)
from support import SECRET, ServerProcess, token

from liveroom.publish_token import PublishTokens

MAX_VIEWERS = 3
MAX_PENDING = 5


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    env = {
        "LIVEROOM_MEDIA_WORKERS": "1",
        "LIVEROOM_MEDIA_MAX_VIEWERS_PER_ROOM": str(MAX_VIEWERS),
        "LIVEROOM_MEDIA_SESSION_CONNECT_TIMEOUT_S": "2",
        "LIVEROOM_MEDIA_MAX_PENDING_PER_ROOM": str(MAX_PENDING),
    }
    process = ServerProcess(tmp_path_factory.mktemp("media-abuse"), env)
    yield process.start()
    process.stop()


@pytest.fixture(scope="module")
def workers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """Two media worker processes: rooms hashed over them (pool.py)."""
    env = {"LIVEROOM_MEDIA_WORKERS": "2", "LIVEROOM_MEDIA_SESSION_CONNECT_TIMEOUT_S": "2"}
    process = ServerProcess(tmp_path_factory.mktemp("media-abuse-workers"), env)
    yield process.start()
    process.stop()


def room_name() -> str:
    return f"a-{uuid.uuid4().hex[:8]}"


def rooms_on_both_workers() -> list[str]:
    """Two room names the pool gives to different workers of two (crc32 of the name)."""
    rooms: dict[int, str] = {}
    while len(rooms) < 2:
        room = room_name()
        rooms.setdefault(zlib.crc32(room.encode()) % 2, room)
    return [rooms[0], rooms[1]]


def error_code(body: str) -> str:
    return str(json.loads(body)["error"]["code"])


def open_sessions(server: ServerProcess) -> float:
    return sum(v for k, v in scrape(server.url).items() if k.startswith("liveroom_media_sessions"))


async def offer(
    kinds: tuple[str, ...] = ("video", "audio"), direction: str = "recvonly"
) -> RTCPeerConnection:
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    for kind in kinds:
        pc.addTransceiver(kind, direction)
    await pc.setLocalDescription(await pc.createOffer())
    return pc


async def test_one_viewer_cannot_take_every_slot(server: ServerProcess) -> None:
    room = room_name()
    host = await publish(server.url, room, token("hog-host", "host", room=room))
    other = room_name()
    other_host = await publish(server.url, other, token("other-host", "host", room=other))
    lurking: list[RTCPeerConnection] = []
    viewers = []
    try:
        # Offers that never connect: answered, then removed after the connect timeout; meanwhile
        # they hold no place in the room, and a third is refused to the same user.
        for _ in range(2):
            pc = await offer()
            lurking.append(pc)
            status, _, _ = await post_sdp(
                f"{server.url}/whep/{room}", token("lurker"), pc.localDescription.sdp
            )
            assert status == 201
        pc = await offer()
        lurking.append(pc)
        status, _, body = await post_sdp(
            f"{server.url}/whep/{room}", token("lurker"), pc.localDescription.sdp
        )
        assert (status, error_code(body)) == (429, "too_many_sessions")
        # Two still connecting is the lurker's limit in every room, not only this one.
        status, _, body = await post_sdp(
            f"{server.url}/whep/{other}", token("lurker"), pc.localDescription.sdp
        )
        assert (status, error_code(body)) == (429, "too_many_sessions")
        # The hog: two sessions in the room, not a third (the same SDP posted again, too).
        viewers += [await play(server.url, room, token("hog")) for _ in range(2)]
        with pytest.raises(WhipError) as third:
            await play(server.url, room, token("hog"))
        assert (third.value.status, error_code(third.value.body)) == (429, "too_many_sessions")
        # An honest viewer still gets in; the room is then full of connected viewers.
        viewers.append(await play(server.url, room, token("honest")))
        await wait_until(lambda: all(v.counters for v in viewers), 15, "every viewer's video")
        with pytest.raises(WhipError) as full:
            await play(server.url, room, token("late"))
        assert (full.value.status, error_code(full.value.body)) == (503, "too_many_viewers")
        # The lurker's sessions did not connect: gone after the timeout, so it may try again.
        assert await viewers.pop().end() == 200
        await wait_until(
            lambda: open_sessions(server) == 2 + len(viewers), 10, "unconnected sessions removed"
        )
        pc = await offer()
        lurking.append(pc)
        status, _, _ = await post_sdp(f"{server.url}/whep/{room}", token("lurker"), pc.localDescription.sdp)
        assert status == 201
    finally:
        for pc in lurking:
            await pc.close()
        for viewer in viewers:
            await viewer.end()
        await host.end()
        await other_host.end()


async def test_a_viewer_watches_the_host_and_every_guest(server: ServerProcess) -> None:
    """The cap is per stage slot: a viewer plays each member of a co-stream (the viewer page
    does), more than `max_viewer_sessions_per_user` sessions in the room. Before, the cap
    counted the whole room: every viewer was refused the third member of a stage (429)."""
    room = room_name()
    mint = PublishTokens(SECRET).mint
    host = await publish(server.url, room, token("stage-host", "host", room=room))
    guests = [await publish(server.url, room, mint(f"guest-{n}", room, n)[0]) for n in (1, 2)]
    viewers: list[Peer] = []
    try:
        for slot in ("host", "1", "2"):
            viewers.append(await play(server.url, room, token("stage-fan"), slot=slot))
            await wait_until(lambda: len(viewers[-1].counters) >= 3, 15, f"slot {slot}'s video")
        with pytest.raises(WhipError) as full:  # the room's 3 connected viewers: full, not a cap
            await play(server.url, room, token("stage-fan"), slot="1")
        assert (full.value.status, error_code(full.value.body)) == (503, "too_many_viewers")
    finally:
        for peer in (*viewers, *guests, host):
            await peer.end()


async def test_the_pending_cap_holds_over_every_worker_process(workers: ServerProcess) -> None:
    """A user's sessions still connecting are counted by the node over its media processes:
    two in a room of worker 0, then none in a room of worker 1 (before, each worker counted
    its own: two more per worker)."""
    rooms = rooms_on_both_workers()
    hosts = [await publish(workers.url, room, token(f"host-{room}", "host", room=room)) for room in rooms]
    lurking: list[RTCPeerConnection] = []

    async def lurk(room: str) -> tuple[int, str]:
        pc = await offer()
        lurking.append(pc)
        status, _, body = await post_sdp(
            f"{workers.url}/whep/{room}", token("lurker"), pc.localDescription.sdp
        )
        return status, body

    try:
        assert [(await lurk(rooms[0]))[0] for _ in range(2)] == [201, 201]
        status, body = await lurk(rooms[1])
        assert (status, error_code(body)) == (429, "too_many_sessions")
        # Removed unconnected after the connect timeout, the worker says so: places again.
        # (/metrics shows the workers' figures of every half second: first the two lurking.)
        await wait_until(lambda: open_sessions(workers) == len(hosts) + 2, 15, "the lurking sessions")
        await wait_until(lambda: open_sessions(workers) == len(hosts), 15, "unconnected sessions removed")
        status, body = await lurk(rooms[1])
        assert status == 201, body
    finally:
        for pc in lurking:
            await pc.close()
        for host in hosts:
            await host.end()


async def test_many_users_offers_that_never_connect_are_bounded_per_room(server: ServerProcess) -> None:
    room = room_name()
    host = await publish(server.url, room, token("crowd-host", "host", room=room))
    lurking = [await offer() for _ in range(MAX_PENDING + 1)]
    try:
        for n, pc in enumerate(lurking):
            status, _, body = await post_sdp(
                f"{server.url}/whep/{room}", token(f"bot-{n}"), pc.localDescription.sdp
            )
            expected = (201, None) if n < MAX_PENDING else (503, "too_many_viewers")
            assert (status, None if status == 201 else error_code(body)) == expected, n
    finally:
        for pc in lurking:
            await pc.close()
        await host.end()


async def test_a_session_is_its_owners_in_its_role_and_room(server: ServerProcess) -> None:
    room = room_name()
    host = await publish(server.url, room, token("owner", "host", room=room))
    url = server.url + host.location
    try:
        for bearer, code in (
            (token("owner", "viewer", room="elsewhere"), "wrong_room"),  # same user, another room
            (token("owner", "host", room="elsewhere"), "wrong_room"),
            (token("owner", "viewer", room=room), "forbidden"),  # same user and room, another role
            (token("owner", "moderator"), "forbidden"),
        ):
            status, body = await get_json(url, bearer)
            assert (status, body["error"]["code"]) == (403, code)
            assert await patch_fragment(url, bearer, "a=end-of-candidates") == 403
            status, text = await delete(url, bearer)
            assert (status, error_code(text)) == (403, code)
        status, body = await get_json(url, token("owner", "host"))  # the owner, any room's token
        assert (status, body["room"]) == (200, room)
        status, _ = await get_json(url, token("boss", "admin"))
        assert status == 200
    finally:
        assert await host.end() == 200


async def test_only_the_publishing_host_or_an_admin_ends_the_host_slot(server: ServerProcess) -> None:
    room = room_name()
    host = await publish(server.url, room, token("the-host", "host", room=room))
    slot = f"{server.url}/whip/{room}/slots/host"
    try:
        for bearer in (
            token("co-host", "host", room=room),
            token("roaming-host", "host"),
            token("fan", room=room),
        ):
            status, text = await delete(slot, bearer)
            assert (status, error_code(text)) == (403, "forbidden")
        status, text = await delete(slot, token("co-host", "host", room="elsewhere"))
        assert (status, error_code(text)) == (403, "wrong_room")
        assert open_sessions(server) >= 1
        status, _ = await delete(slot, token("the-host", "host", room=room))
        assert status == 200
    finally:
        await host.close()


def guest_token(room: str, slot: int, user: str = "guest") -> str:
    claims = {"sub": user, "role": "guest", "room": room, "slot": slot, "scope": "publish"}
    return jwt.encode({**claims, "exp": int(time.time()) + 60}, SECRET, algorithm="HS256")


async def test_a_bound_host_ends_a_guest_and_a_guest_ends_only_its_slot(server: ServerProcess) -> None:
    room = room_name()
    guest = await publish(server.url, room, guest_token(room, 1))
    try:
        status, _ = await delete(server.url + guest.location, guest_token(room, 2))  # same user, other slot
        assert status == 403
        status, _ = await delete(server.url + guest.location, token("h", "host"))  # unbound host
        assert status == 403
        status, _ = await delete(f"{server.url}/whip/{room}/slots/1", guest_token(room, 2))
        assert status == 403  # a guest ends its own slot only
        status, _ = await delete(f"{server.url}/whip/{room}/slots/1", token("h", "host", room=room))
        assert status == 200
    finally:
        await guest.close()


def without(sdp: str, prefix: str) -> str:
    return "".join(line for line in sdp.splitlines(keepends=True) if not line.startswith(prefix))


async def refused(url: str, sdp: str) -> tuple[int, str]:
    status, location, body = await post_sdp(url, token("h", "host"), sdp)
    assert location is None
    return status, error_code(body)


@pytest.mark.parametrize("kind", ["whip", "whep"])
async def test_an_offer_that_cannot_connect_is_a_400(server: ServerProcess, kind: str) -> None:
    room = room_name()
    host = await publish(server.url, room, token("h", "host")) if kind == "whep" else None
    sending = "sendonly" if kind == "whip" else "recvonly"
    url = f"{server.url}/{kind}/{room}"
    before = open_sessions(server)
    pcs = [await offer(direction=sending), await offer(direction="inactive")]
    data = RTCPeerConnection()
    data.createDataChannel("chat")
    await data.setLocalDescription(await data.createOffer())
    pcs.append(data)
    try:
        good = pcs[0].localDescription.sdp
        assert await refused(url, without(good, "a=fingerprint")) == (400, "malformed_sdp")
        assert await refused(url, without(good, "a=ice-ufrag")) == (400, "malformed_sdp")
        assert await refused(url, pcs[1].localDescription.sdp) == (400, "no_media")
        assert await refused(url, data.localDescription.sdp) == (400, "no_media")
        wrong_way = good.replace(f"a={sending}", "a=sendonly" if kind == "whep" else "a=recvonly")
        assert await refused(url, wrong_way) == (400, "no_media")
        assert open_sessions(server) == before
    finally:
        for pc in pcs:
            await pc.close()
        if host is not None:
            await host.end()
