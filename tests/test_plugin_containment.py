"""A plugin that raises or hangs is contained: `internal_error` for the bug, `outcome_unknown` for
the handler abandoned at the command timeout (it may have written something), and the room
goes on."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from support import ServerProcess, Viewer, module_server

faulty_server = module_server(
    "faulty_server",
    {
        "PYTHONPATH": str(Path(__file__).parent),
        "LIVEROOM_PLUGINS_FAULTY_LOAD": "faulty_plugin:FaultyPlugin",
        "LIVEROOM_COMMAND_TIMEOUT_S": "0.5",
    },
)


async def test_raising_and_hanging_handlers_are_contained(faulty_server: ServerProcess) -> None:
    room = "r-" + uuid.uuid4().hex[:8]
    alice = await Viewer(faulty_server.url, "alice").connect()
    bob = await Viewer(faulty_server.url, "bob").connect()
    try:
        joined = await alice.join(room)
        assert "faulty" not in joined["state"]  # a failing snapshot is left out, the join works
        await bob.join(room)
        for command, expected in (("faulty.raise", "internal_error"), ("faulty.hang", "outcome_unknown")):
            ack = await alice.call(command, {"room": room})
            assert ack["ok"] is False and ack["error"]["code"] == expected, ack
        ack = await alice.call("danmaku.send", {"room": room, "text": "still here"})
        assert ack["ok"] is True
        await bob.wait_for(lambda i: i["type"] == "danmaku.message")
    finally:
        await alice.close()
        await bob.close()
    assert "a bug in a plugin" in faulty_server.log()


def test_a_plugin_that_fails_to_load_stops_start_up(tmp_path: Path) -> None:
    env = {"LIVEROOM_PLUGINS_MISSING_LOAD": "no_such_module:Plugin"}
    with pytest.raises(RuntimeError, match="plugin 'missing' failed to load"):
        ServerProcess(tmp_path, env=env).start()
    env = {"LIVEROOM_PLUGINS_DANMAKU_MAX_LENGTH": "lots"}
    with pytest.raises(RuntimeError, match=r"\[plugins.danmaku\] max_length: expected a number"):
        ServerProcess(tmp_path / "b", env=env).start()
