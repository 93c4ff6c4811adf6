"""One authority per room across a cluster: the room's owner node runs its interactions.

Each room with interaction state has an owner: the node holding the room's lease in Redis
(`<p>:{<room>}:owner`, `SET NX PX [cluster] lease_s`, renewed every third of it). The owner
loads the room's plugin state (`RoomHost.ensure`: every plugin's `load_room`, the same
rebuild a restart runs) and runs every command, join, leave and query of the room. A node
that gets one for a room it does not own forwards it to the owner's inbox (a Redis pub/sub
channel per node) and relays the answer, so a plugin's single-node code sees every node's
users and commands.

Answers stay honest across the hop: a forward that reached no owner (it died, its inbox has
no subscriber) did nothing and is `unavailable` (retry later: the lease runs out within
`lease_s` and the next node to need the room takes it); a forward with no answer within
`[cluster] forward_timeout_s` may have run and is `outcome_unknown` (retry with the same
`request_id`). An owner that cannot renew its lease stops serving the room before another
node can take it, and forgets the room's memory.

Rooms with a pending deadline are in the store's awake index: every `lease_s` each node
takes the awake rooms that have no owner, so a dead owner's timers fire again elsewhere.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Coroutine, Iterable, Mapping
from typing import Any, Protocol

import msgspec

from liveroom.auth import Identity
from liveroom.errors import CommandError, OutcomeUnknown, Unavailable
from liveroom.interactions import Interactions
from liveroom.pending_calls import PendingCalls
from liveroom.rooms import RoomHost
from liveroom.store import Store

__all__ = ["ClusterAuthority", "RoomDirectory"]

log = logging.getLogger(__name__)


class RoomDirectory(Protocol):
    """Where the nodes meet: each room's owner lease and each node's inbox. On Redis
    (`redis_directory.py`) for a cluster; in the supervisor (`ipc_client.IpcDirectory`) for
    one machine's workers. Every method raises `Unavailable` when the directory is unreachable."""

    async def owner(self, room: str) -> str | None:
        """The node holding the room's lease, or None."""
        ...

    async def hold(self, room: str, node: str, ttl_ms: int) -> bool:
        """Take the room's lease for `node`, or renew it if `node` has it; False if another has it."""
        ...

    async def release(self, room: str, node: str) -> None:
        """Give the lease up if `node` has it."""
        ...

    async def send(self, node: str, message: bytes) -> int:
        """Put a message in a node's inbox; how many heard it (0: no such node is listening)."""
        ...

    async def listen(self, node: str, handler: Callable[[bytes], Coroutine[Any, Any, None]]) -> None:
        """Hand every message of this node's inbox to `handler`."""
        ...

    async def listeners(self, node: str) -> int:
        """How many listen on the node's inbox (0: the node is gone)."""
        ...

    async def close(self) -> None: ...


_encode = msgspec.msgpack.Encoder()
_decode = msgspec.msgpack.Decoder()


def _identity(values: Any) -> Identity:
    user_id, name, role, room, expires_at, tier = values
    return Identity(user_id, name, role, room, expires_at, tier)


def _identity_values(identity: Identity) -> list[Any]:
    return [identity.user_id, identity.name, identity.role, identity.room, identity.expires_at, identity.tier]


def _error(code: str, message: str, details: Mapping[str, Any] | None = None) -> CommandError:
    if code == "unavailable":
        return Unavailable(message)
    if code == "outcome_unknown":
        return OutcomeUnknown(message)
    return CommandError(message, code, details)


class _Unheard(Exception):
    """A forward no node heard: its owner is gone (or was remembered wrongly)."""


class ClusterAuthority:
    """Stands where `Interactions` stands for the dispatcher and the HTTP API (the same four
    calls, the same specs), and sends each call to the room's owner."""

    def __init__(
        self,
        directory: RoomDirectory,
        store: Store,
        interactions: Interactions,
        rooms: RoomHost,
        node_id: str,
        *,
        lease_s: float = 3.0,
        forward_timeout_s: float = 2.0,
    ) -> None:
        self._directory = directory
        self._store = store
        self._local = interactions
        self._rooms = rooms
        self.node_id = node_id
        self._lease_ms = max(300, int(lease_s * 1000))
        self._forward_timeout_s = forward_timeout_s
        self._owned: dict[str, float] = {}  # room -> until when (loop time) this node may serve it
        self._known_owners: dict[str, tuple[str, float]] = {}  # room -> (owner, until when)
        self._looking: dict[str, asyncio.Future[str]] = {}  # room -> its owner lookup under way
        # In the rooms owned here: each present user's joins, by the node they came through.
        self._joined_via: dict[str, dict[str, tuple[Identity, dict[str, int]]]] = {}
        self._suspects: dict[str, float] = {}  # node -> since when its inbox has had no listener
        self._calls = PendingCalls()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._renewer: asyncio.Task[None] | None = None
        # Called with a room this node has just become the owner of (it did not serve it a
        # moment ago): the node asks every node's members of the room to be told again.
        self.on_took: Callable[[str], None] = lambda room: None
        # The rooms this node has members in: a room with members always has an owner, so
        # one whose owner died is taken by one of its nodes within a lease (and told who is
        # here), even when no command comes to need it.
        self.local_rooms: Callable[[], Iterable[str]] = lambda: ()
        # What the dispatcher reads of `Interactions`: the specs stay this node's own.
        self.commands = interactions.commands
        self.queries = interactions.queries
        self.spec = interactions.spec

    # -- lifecycle ----------------------------------------------------------------------

    async def start(self) -> None:
        await self._directory.listen(self.node_id, self._on_message)
        self._renewer = asyncio.create_task(self._renew_forever(), name="liveroom-cluster-leases")

    async def stop(self) -> None:
        """Give up every room at once (another node takes them on their next use)."""
        if self._renewer is not None:
            self._renewer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._renewer
        rooms, self._owned = list(self._owned), {}
        # Bounded: with the directory (or a Redis Cluster master) unreachable, the leases run out.
        with contextlib.suppress(TimeoutError, Unavailable):
            async with asyncio.timeout(2.0):
                await asyncio.gather(*(self._directory.release(room, self.node_id) for room in rooms))
        await self._directory.close()

    # -- the four calls -----------------------------------------------------------------

    async def command(self, room: str, caller: Identity, name: str, raw: Any) -> dict[str, Any]:
        result: dict[str, Any] = await self._route(
            room, "command", [room, _identity_values(caller), name, raw]
        )
        return result

    async def admit(self, room: str, caller: Identity, again: bool = False) -> dict[str, Any]:
        result: dict[str, Any] = await self._route(room, "admit", [room, _identity_values(caller), again])
        return result

    async def left(self, room: str, user: Identity) -> None:
        try:
            owner = await self._directory.owner(room)
        except Unavailable:
            return  # the owner's lease runs out; a new owner starts from no one present
        if owner is not None:  # no owner: nobody holds the room's presence, nothing to tell
            await self._route(room, "left", [room, _identity_values(user)])

    async def query(self, room: str, caller: Identity, path: str, params: Mapping[str, str]) -> Any:
        return await self._route(room, "query", [room, _identity_values(caller), path, dict(params)])

    async def readmit(self, room: str, users: list[Identity]) -> int:
        """This node's members of the room, told to its (new) owner: see `Interactions.readmit`."""
        result: int = await self._route(room, "readmit", [room, [_identity_values(u) for u in users]])
        return result

    async def _run_here(self, op: str, args: list[Any], origin: str) -> Any:
        """Run a call on this node, the room's owner; `origin`: the node its caller is on."""
        room = args[0]
        if op == "readmit":
            users = [_identity(values) for values in args[1]]
            admitted = await self._local.readmit(room, users)
            for user in users:
                self._joined_via.setdefault(room, {}).setdefault(user.user_id, (user, {}))[1].setdefault(
                    origin, 1
                )
            return admitted
        caller = _identity(args[1])
        if op == "command":
            return await self._local.command(room, caller, args[2], args[3])
        if op == "admit":
            result = await self._local.admit(room, caller, args[2])
            if not args[2]:
                user, via = self._joined_via.setdefault(room, {}).setdefault(caller.user_id, (caller, {}))
                via[origin] = via.get(origin, 0) + 1
            return result
        if op == "left":
            self._forget_join(room, caller.user_id, origin)
            return await self._local.left(room, caller)
        if op == "query":
            return await self._local.query(room, caller, args[2], args[3])
        raise CommandError(f"unknown cluster call {op!r}", "internal_error")

    def _forget_join(self, room: str, user_id: str, origin: str) -> None:
        users = self._joined_via.get(room, {})
        if user_id not in users:
            return
        via = users[user_id][1]
        if via.get(origin, 0) > 1:
            via[origin] -= 1
            return
        via.pop(origin, None)
        if not via:
            del users[user_id]
            if not users:
                self._joined_via.pop(room, None)

    async def _forget_dead_nodes(self) -> None:
        """Users whose joins came through a node that died (its inbox has had no subscriber
        for a whole lease: a moment without one, e.g. while it follows a Redis Cluster
        failover, is not death) leave the rooms owned here, as if each of their joins ended."""
        origins = {node for users in self._joined_via.values() for _, via in users.values() for node in via}
        origins.discard(self.node_id)
        now, dead = asyncio.get_running_loop().time(), set()
        for node in origins:
            if await self._directory.listeners(node) > 0:
                self._suspects.pop(node, None)
            elif now - self._suspects.setdefault(node, now) >= self._lease_ms / 1000.0:
                dead.add(node)
        for node in set(self._suspects) - origins:
            del self._suspects[node]
        for node in dead:
            del self._suspects[node]
            for room, users in list(self._joined_via.items()):
                for user_id, (user, via) in list(users.items()):
                    for _ in range(via.get(node, 0)):
                        self._forget_join(room, user_id, node)
                        if room in self._rooms:
                            await self._local.left(room, user)
            log.info("cluster: node %s is gone; its users left the rooms owned here", node)

    # -- routing ------------------------------------------------------------------------

    async def _route(self, room: str, op: str, args: list[Any]) -> Any:
        for _ in range(3):  # an owner that just gave the room up answers not_owner: look again
            owner = await self._owner(room)
            if owner == self.node_id:
                return await self._run_here(op, args, self.node_id)
            try:
                return await self._forward(owner, op, args)
            except _Unheard:
                if self._known_owners.pop(room, None) is None:  # it came from Redis just now
                    raise Unavailable(
                        "the room's owner is gone; its lease runs out in a moment: retry"
                    ) from None
            except CommandError as error:
                self._known_owners.pop(room, None)
                if error.code != "not_owner":
                    raise
        raise Unavailable(f"room {room!r} is moving between nodes; retry")

    async def _owner(self, room: str) -> str:
        if self._serving(room):
            return self.node_id
        known = self._known_owners.get(room)
        if known is not None and asyncio.get_running_loop().time() < known[1]:
            return known[0]
        # One lookup per room at a time: the calls that come meanwhile (a join storm) share it.
        looking = self._looking.get(room)
        if looking is None:
            looking = self._looking[room] = asyncio.ensure_future(self._look_up(room))
            looking.add_done_callback(lambda _: self._looking.pop(room, None))
        return await asyncio.shield(looking)

    async def _look_up(self, room: str) -> str:
        try:
            found = await self._directory.owner(room)
            if found is None and await self._directory.hold(room, self.node_id, self._lease_ms):
                self._took(room)
                return self.node_id
            if found is None:
                found = await self._directory.owner(room)
        except Unavailable as exc:
            raise Unavailable(f"the room's owner cannot be found: {exc.message}") from None
        if found is None:
            raise Unavailable(f"room {room!r} has no owner yet; retry")
        if found == self.node_id and not await self._take(room):  # ours, but lapsed here: renew
            raise Unavailable(f"room {room!r} is moving between nodes; retry")
        if found != self.node_id:
            # Remembered for a third of a lease: a forward to an owner that has moved on is
            # answered not_owner (or heard by no one) and looked up again at once.
            self._known_owners[room] = (found, asyncio.get_running_loop().time() + self._lease_ms / 3000.0)
        return found

    def _serving(self, room: str) -> bool:
        until = self._owned.get(room)
        return until is not None and asyncio.get_running_loop().time() < until

    def _took(self, room: str) -> None:
        # Serve a little less than the lease: another node takes it only once it has run out.
        new = room not in self._owned
        self._owned[room] = asyncio.get_running_loop().time() + self._lease_ms / 1000.0 * 0.8
        if new:
            self.on_took(room)

    async def _forward(self, owner: str, op: str, args: list[Any]) -> Any:
        with self._calls.call() as (call, waiting):
            message = _encode.encode(["q", call, self.node_id, op, args])
            try:
                heard = await self._directory.send(owner, message)
            except Unavailable as exc:
                raise Unavailable(f"the room's owner cannot be reached: {exc.message}") from None
            if not heard:  # no one listens there: the owner is gone, nothing was done
                raise _Unheard
            try:
                async with asyncio.timeout(self._forward_timeout_s):
                    return await waiting
            except TimeoutError:
                if op == "command":
                    raise OutcomeUnknown(
                        "the room's owner did not answer in time: the outcome is unknown; "
                        "retry with the same request_id"
                    ) from None
                raise Unavailable("the room's owner did not answer in time; retry") from None

    # -- the inbox ----------------------------------------------------------------------

    async def _on_message(self, data: bytes) -> None:
        try:
            message = _decode.decode(data)
        except msgspec.DecodeError:
            log.warning("cluster: an undecodable message was dropped")
            return
        if message[0] == "r":
            _, call, ok, value = message
            self._calls.settle(call, ok, value, lambda described: _error(*described))
            return
        task = asyncio.get_running_loop().create_task(self._answer(*message[1:]))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _answer(self, call: int, reply_to: str, op: str, args: list[Any]) -> None:
        room = args[0]
        try:
            if not self._serving(room):
                raise CommandError("not the room's owner", "not_owner")
            reply = [True, await self._run_here(op, args, reply_to)]
        except CommandError as error:
            reply = [False, [error.code, error.message, error.details]]
        except Exception:
            log.exception("cluster call %s on room %s failed", op, room)
            reply = [False, ["internal_error", "the server failed to run this command"]]
        try:
            encoded = _encode.encode(["r", call, *reply])
        except TypeError:
            log.exception("cluster call %s on room %s: its answer cannot be sent", op, room)
            encoded = _encode.encode(["r", call, False, ["internal_error", "the answer could not be sent"]])
        with contextlib.suppress(Unavailable):  # lost: the caller times out and is told
            await self._directory.send(reply_to, encoded)

    # -- leases -------------------------------------------------------------------------

    async def _renew_forever(self) -> None:
        every = self._lease_ms / 3000.0
        while True:
            await asyncio.sleep(every)
            try:
                await self._renew()
                await self._take_awake_rooms()
                await self._take_rooms_left_without_owner()
                await self._forget_dead_nodes()
            except Unavailable as exc:  # the directory is down: the leases run out meanwhile
                # One line (no traceback): during a Redis failover this repeats every third
                # of a lease, and tracebacks would bury the rest of the node's log.
                log.warning("cluster: room leases could not be renewed: %s", exc.message)
            except Exception:
                log.warning("cluster: room leases could not be renewed", exc_info=True)

    async def _renew(self) -> None:
        now = asyncio.get_running_loop().time()
        for room, (_, until) in list(self._known_owners.items()):
            if until <= now:
                del self._known_owners[room]
        for room in list(self._owned):
            if room not in self._rooms:  # released here (idle): give it up
                self._owned.pop(room, None)
                self._joined_via.pop(room, None)
                await self._directory.release(room, self.node_id)
                continue
            if not await self._take(room):
                log.warning("cluster: lost the lease of room %s; another node serves it", room)
                self._owned.pop(room, None)
                self._joined_via.pop(room, None)
                self._rooms.release(room)

    async def _take_awake_rooms(self) -> None:
        """Rooms with a pending deadline and no owner (it died): take them and load them here,
        so their plugins set their timers again from their records."""
        for room in await self._store.awake_rooms():
            if room in self._owned:
                continue
            if await self._directory.owner(room) is not None:
                continue
            if await self._take(room):
                try:
                    await self._rooms.ensure(room)
                except CommandError:
                    continue  # logged; tried again on its next use
                log.info("cluster: took room %s (a deadline pending, no owner)", room)

    async def _take_rooms_left_without_owner(self) -> None:
        rooms = [room for room in self.local_rooms() if room not in self._owned]
        owners = await asyncio.gather(*(self._directory.owner(room) for room in rooms))
        for room, owner in zip(rooms, owners, strict=True):
            if owner is None and await self._take(room):
                log.info("cluster: took room %s (members here, no owner)", room)

    async def _take(self, room: str) -> bool:
        """Take (or renew) the room's lease; True when this node holds it now."""
        if await self._directory.hold(room, self.node_id, self._lease_ms):
            self._took(room)
            return True
        return False
