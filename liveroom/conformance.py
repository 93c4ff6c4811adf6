"""The durability contract every plugin keeps, as tests a plugin author runs with one import.

Subclass `PluginConformance` in a test module (pytest, with pytest-asyncio in auto mode),
name the plugins to load, and write one `scenario`: what a show does with the plugin
(connections from the harness, every command through `run`)::

    from liveroom.conformance import PluginConformance, Run
    from liveroom.testing import NodeHarness

    class TestMyPlugin(PluginConformance):
        plugins = {"mine": {"load": "my_pkg:MyPlugin"}}

        async def scenario(self, h: NodeHarness, room: str, run: Run) -> None:
            host = await h.connect("host", role="host")
            await run.join(host, room)
            await run(host, "mine.start", {"room": room, "request_id": "s1"})

The inherited tests check, on the real node (`NodeHarness`):

* **a failed write leaves no trace**: the scenario is run once per durable write it makes,
  that write failing (`unavailable`, then `outcome_unknown` with nothing written): the
  command it belonged to changes nothing clients see (the room's state on join, the items
  sent), and the same command sent again succeeds;
* **a restart reproduces what clients see**: the room's state on join is the same from a
  new node over the same store;
* **state is bounded**: once every room of the scenario is idle and released, the plugin
  holds no more than it did before (its maps, sets and lists are as small as at start);
* **every item emitted is declared**: no command is answered `internal_error`.

`volatile` names the parts of the join state that are not durable by design (live figures).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, ClassVar

from liveroom.testing import Failure, HarnessConnection, NodeHarness

__all__ = ["PluginConformance", "Run"]

MAX_FAILED_WRITES = 40  # the scenario is rerun once per write, up to this many writes
RETRYABLE = ("unavailable", "outcome_unknown")


@dataclasses.dataclass
class Step:
    name: str
    ack: dict[str, Any]
    before: Any
    after: Any
    items_during: list[dict[str, Any]]


class Run:
    """Runs the scenario's commands, watching the room through an observer connection.

    A command answered `unavailable` or `outcome_unknown` (a write failed) is checked for
    traces and sent again until it gets its real answer, so the scenario goes on as written."""

    def __init__(self, harness: NodeHarness, volatile: frozenset[str]) -> None:
        self.harness = harness
        self.volatile = volatile
        self.steps: list[Step] = []
        self.traces: list[str] = []
        self._observers: dict[str, HarnessConnection] = {}

    async def __call__(self, conn: HarnessConnection, name: str, payload: Any) -> dict[str, Any]:
        room = payload.get("room") if isinstance(payload, dict) else None
        for _ in range(10):
            before = await self.state(room) if room else None
            seen = len(self._observers[room].items) if room in self._observers else 0
            ack = await conn.command(name, payload)
            failed = not ack["ok"] and ack["error"]["code"] in RETRYABLE
            after = await self.state(room) if room and failed else None
            during = self._observers[room].items[seen:] if room in self._observers else []
            self.steps.append(Step(name, ack, before, after, during))
            if not failed:
                return ack
            if before != after:
                self.traces.append(
                    f"{name} failed ({ack['error']['code']}) but changed the state: {before} -> {after}"
                )
            if during:
                self.traces.append(f"{name} failed ({ack['error']['code']}) but sent items: {during}")
        raise AssertionError(f"{name} kept failing: {ack}")

    async def join(self, conn: HarnessConnection, room: str, **extra: Any) -> dict[str, Any]:
        ack = await self(conn, "join", {"room": room, **extra})
        assert ack["ok"], ack
        return ack

    async def state(self, room: str) -> Any:
        """The room's state as a client sees it on join (without the volatile parts)."""
        observer = self._observers.get(room)
        if observer is None:
            observer = self._observers[room] = await self.harness.connect("conformance-observer")
        ack = await observer.command("join", {"room": room})
        if not ack["ok"]:
            return ("join refused", ack["error"]["code"])
        return _without(ack["state"], self.volatile)


class PluginConformance:
    """Subclass with `plugins` and `scenario` (see the module docstring)."""

    plugins: ClassVar[Mapping[str, Mapping[str, Any]]] = {}
    volatile: ClassVar[frozenset[str]] = frozenset({"dashboard"})
    rooms_for_bounds: ClassVar[int] = 5
    # How long after the scenario every room is idle (timers done): then it is released.
    settle_s: ClassVar[float] = 0.0

    async def scenario(self, h: NodeHarness, room: str, run: Run) -> None:
        raise NotImplementedError

    def harness(self) -> NodeHarness:
        return NodeHarness(plugins=self.plugins)

    async def test_a_failed_write_leaves_no_trace(self) -> None:
        async with self.harness() as clean:
            await self.scenario(clean, "room-a", Run(clean, self.volatile))
            writes = clean.store.writes
        assert writes, "the scenario makes no durable write: nothing to check"
        failures: tuple[Failure, ...] = ("unavailable", "unknown_lost")
        for how in failures:
            for number in range(1, min(writes, MAX_FAILED_WRITES) + 1):
                async with self.harness() as h:
                    h.store.fail_write(number, how)
                    run = Run(h, self.volatile)
                    await self.scenario(h, "room-a", run)
                    assert not run.traces, f"write {number} failing ({how}): {run.traces}"

    async def test_a_restart_reproduces_what_clients_see(self) -> None:
        async with self.harness() as h:
            run = Run(h, self.volatile)
            await self.scenario(h, "room-a", run)
            seen = await run.state("room-a")
            await h.restart()
            again = await Run(h, self.volatile).state("room-a")
            assert again == seen, f"after a restart the room shows {again}, before it showed {seen}"

    async def test_state_is_bounded(self) -> None:
        async with self.harness() as h:
            sizes = {plugin.name: _sizes(plugin) for plugin in h.node.plugins}
            for n in range(self.rooms_for_bounds):
                await self.scenario(h, f"room-{n}", Run(h, self.volatile))
            for connection in list(h.connections):
                await connection.vanish()
            await h.advance(self.settle_s + h.config.room.idle_release_s + 5, step=1.0)
            assert len(h.node.rooms) == 0, "rooms still held after everyone left and their timers ran"
            for plugin in h.node.plugins:
                grown = {k: v for k, v in _sizes(plugin).items() if v > sizes[plugin.name].get(k, 0)}
                assert not grown, f"plugin {plugin.name} still holds {grown} after every room was released"

    async def test_every_item_emitted_is_declared(self) -> None:
        async with self.harness() as h:
            run = Run(h, self.volatile)
            await self.scenario(h, "room-a", run)
            bugs = [
                step
                for step in run.steps
                if not step.ack["ok"] and step.ack["error"]["code"] == "internal_error"
            ]
            assert not bugs, [(step.name, step.ack) for step in bugs]


def _without(state: Any, volatile: frozenset[str]) -> Any:
    return {name: part for name, part in state.items() if name not in volatile}


def _sizes(plugin: Any) -> dict[str, int]:
    """The length of every container the plugin keeps directly (its per-room maps...)."""
    return {
        name: len(value)
        for name, value in vars(plugin).items()
        if isinstance(value, dict | set | list | frozenset) and name not in ("config",)
    }
