"""Bounds on every number (issue 17): every command of every built-in plugin, driven on the
in-process harness with extreme numbers in each numeric field (huge, negative, fractional,
past 2^63), never answers `internal_error`: a value out of its documented range is
`bad_request`. After the commands, a fresh member still joins (snapshots encode) and the
clock still moves (timers set from those numbers fire or wait).
"""

from __future__ import annotations

import asyncio
import tempfile
import types
import typing
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any, Literal, Union, get_args, get_origin, get_type_hints

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from plugin_support import api, code, joined, room_name
from support import ServerProcess, Viewer, module_server

from liveroom.config import Config, LimitsConfig
from liveroom.errors import BadRequest
from liveroom.plugin import CommandSpec
from liveroom.sqlite_store import EmbeddedStore
from liveroom.testing import FaultyStore, HarnessConnection, NodeHarness

# Half the draws plausible (so one extreme field at a time reaches the handler), half extreme.
EXTREME = st.one_of(
    st.integers(1, 600),
    st.sampled_from([0, -1, 1, 2**31, 2**53, 2**53 + 1, 2**63 - 1, 2**63, 2**64, -(2**63) - 1, 10**30]),
    st.sampled_from([0.5, -0.5, 1e-300, 5e-324, 1e15, 1e19, 1e308, -1e308]),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=False, allow_infinity=False),
)
MONEY_TEXT = st.sampled_from(
    ["1e400", "99999999999999999999999", "-1", "0.0000001", "1.5", "NaN", "inf", " 3 "]
)


class Rig:
    """One harness on its own loop for the whole module: a host, a moderator and a viewer in
    room "r", a poll open, a sale on, so ids in payloads name real things."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        limits = LimitsConfig(commands_per_s=1e6, commands_burst=10**6)
        fast = {"rate_per_s": 1e6, "burst": 10**6}
        fast_publish = {"publish_rate_per_s": 1e6, "publish_burst": 10**6}
        plugins = {
            "danmaku": {**fast, **fast_publish},
            "like": fast,
            **{name: fast_publish for name in ("poll", "coupon", "sale", "costream")},
        }
        # SQLite, not memory: it is the store that refuses integers past 2^63 (OverflowError).
        self.directory = tempfile.TemporaryDirectory()
        store = FaultyStore(EmbeddedStore(str(Path(self.directory.name) / "extreme.sqlite3")))
        self.harness = NodeHarness(Config(limits=limits), plugins=plugins, store=store)
        self.ids: dict[str, list[str]] = {}
        self.run(self._start())

    def run(self, work: typing.Awaitable[Any]) -> Any:
        return self.loop.run_until_complete(work)

    async def _start(self) -> None:
        h = self.harness
        await h.start()
        self.host, self.mod, self.fan = (
            await h.connect("h", "host"),
            await h.connect("m", "moderator"),
            await h.connect("v"),
        )
        for client in (self.host, self.mod, self.fan):
            await client.join("r")
        poll = await self.host.command(
            "poll.create", {"room": "r", "question": "q", "options": ["a", "b"], "duration_s": 600}
        )
        sale = await self.host.command(
            "sale.schedule",
            {
                "room": "r",
                "sku": "s1",
                "title": "t",
                "price": 1,
                "stock": 5,
                "starts_at": 0,
                "duration_s": 600,
            },
        )
        assert poll["ok"] and sale["ok"], (poll, sale)
        self.ids = {"poll": [poll["poll"], "nope"], "sale": [sale["sale"], "nope"]}

    def specs(self) -> list[CommandSpec[Any]]:
        return [spec for plugin in self.harness.node.plugins for spec in plugin.commands()]

    def close(self) -> None:
        self.run(self.harness.close())
        self.loop.close()
        self.directory.cleanup()


@pytest.fixture(scope="module")
def rig() -> Iterator[Rig]:
    made = Rig()
    yield made
    made.close()


def strategy(name: str, hint: Any, ids: dict[str, list[str]]) -> st.SearchStrategy[Any]:
    """Extreme numbers for numeric fields; plausible, valid values for every other field."""
    origin, args = get_origin(hint), get_args(hint)
    if origin is Annotated:
        return strategy(name, args[0], ids)  # the constraints are what is under test
    if origin in (Union, types.UnionType):
        parts = [strategy(name, a, ids) for a in args if a is not type(None)]
        if str in args and name == "price":
            parts.append(MONEY_TEXT)
        return st.one_of(*parts, *([st.none()] if type(None) in args else []))
    if origin is Literal:
        return st.sampled_from(args)
    if origin is list:
        return st.lists(strategy(name, args[0], ids), min_size=2, max_size=3)
    if hint is bool:
        return st.booleans()
    if hint in (int, float):
        return EXTREME
    if name in ids:
        return st.sampled_from(ids[name])
    if name == "room":
        return st.just("r")
    if name == "user":
        return st.sampled_from(["nobody", "x"])  # not the rig's own clients: a ban would remove them
    return st.sampled_from(["a1", "b2"]) if name in ("sku", "request_id", "id", "key") else st.just("t")


def payload(spec: CommandSpec[Any], ids: dict[str, list[str]]) -> st.SearchStrategy[dict[str, Any]]:
    hints = get_type_hints(spec.payload, include_extras=True)
    return st.fixed_dictionaries({name: strategy(name, hint, ids) for name, hint in hints.items()})


def numeric(spec: CommandSpec[Any]) -> bool:
    return any(
        t in (int, float) or "int" in str(t) or "float" in str(t)
        for t in get_type_hints(spec.payload, include_extras=True).values()
    )


def check(ack: dict[str, Any], what: str) -> None:
    assert ack["ok"] or ack["error"]["code"] != "internal_error", (what, ack)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_no_command_answers_internal_error_to_extreme_numbers(rig: Rig, data: st.DataObject) -> None:
    spec = data.draw(st.sampled_from([s for s in rig.specs() if numeric(s)]), label="command")
    body = data.draw(payload(spec, rig.ids), label="payload")
    client: HarnessConnection = rig.host if spec.staff_only else rig.fan
    check(rig.run(client.command(spec.name, body)), f"{spec.name} {body}")


def test_the_room_still_works_after_the_extreme_numbers(rig: Rig) -> None:
    async def afterwards() -> None:
        await rig.harness.advance(5, step=1)
        late = await rig.harness.connect("late")
        ack = await late.command("join", {"room": "r"})
        check(ack, "join")
        assert ack["ok"], ack
        check(await late.command("time", {}), "time")

    rig.run(afterwards())


@pytest.mark.parametrize("since", [-1, 2**63, 2**64, 1e300, -(2**70)])
def test_join_since_out_of_range_is_bad_request(rig: Rig, since: Any) -> None:
    async def join() -> dict[str, Any]:
        late = await rig.harness.connect("since")
        return await late.command("join", {"room": "r2", "since": since})

    ack = rig.run(join())
    assert not ack["ok"] and ack["error"]["code"] == "bad_request", ack


async def test_the_numbers_of_the_issue_are_bad_requests() -> None:
    async with NodeHarness() as h:
        host = await h.connect("h", "host")
        await host.join("r")
        sale = {"room": "r", "sku": "s", "title": "t", "price": 1, "stock": 1, "duration_s": 60}
        month = 31 * 86_400_000
        for starts_at in (2**63, 2**63 - 1, 2**53, h.clock.now_ms() + month):
            ack = await host.command("sale.schedule", {**sale, "starts_at": starts_at})
            assert ack["error"]["code"] == "bad_request", (starts_at, ack)
        assert (await host.command("sale.schedule", {**sale, "starts_at": h.clock.now_ms() + 3000}))["ok"]
        rule = {"room": "r", "title": "t", "trigger": "activity", "activity": "like", "budget": 5}
        for count in (10**30, 2**63, 10_000_001):
            ack = await host.command("coupon.rule", {**rule, "count": count})
            assert ack["error"]["code"] == "bad_request", (count, ack)


@pytest.mark.parametrize("value", ["abc", "-1", "1e3", "99999999999999999999999", "9007199254740992", " 1"])
async def test_query_numbers_out_of_range_are_bad_requests(value: str) -> None:
    async with NodeHarness() as h:
        host = await h.connect("h", "host")
        await host.join("r")
        for path, name in (("danmaku/moderation", "after"), ("danmaku/hot", "limit")):
            with pytest.raises(BadRequest):
                await h.node.interactions.query("r", host.identity, path, {name: value})


extreme_server = module_server("extreme_server")


@pytest.mark.parametrize("starts_at", [2**63, 2**70, 10**400, -1, 1e308])
async def test_extreme_numbers_over_the_wire_are_bad_requests(
    extreme_server: ServerProcess, viewers: list[Viewer], starts_at: Any
) -> None:
    """The same through the real server: the host HTTP API and a Socket.IO command."""
    room = room_name()
    sale = {"sku": "s", "title": "t", "price": 1, "stock": 1, "duration_s": 60, "starts_at": starts_at}
    status, body = api(extreme_server, "POST", f"/api/rooms/{room}/commands/sale.schedule", sale)
    assert (status, body["error"]["code"]) == (400, "bad_request"), body
    host = await joined(extreme_server, viewers, f"host-{room}", room, "host")
    ack = await host.call("sale.schedule", {**sale, "room": room})
    assert code(ack) == "bad_request", ack
    assert code(await host.call("join", {"room": room, "since": starts_at})) == "bad_request"
