"""What the README hands a new user works as written: its two clients, saved as the files
it quotes (docs/examples/), run against a real server; and the docs' tables are whole."""

from __future__ import annotations

import asyncio
import shutil
import sys
import uuid
from pathlib import Path

import pytest
from plugin_support import joined
from support import ServerProcess, Viewer, token

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "docs" / "examples"
JS_MODULES = ROOT / "tests" / "js" / "node_modules"
README = (ROOT / "README.md").read_text(encoding="utf-8")


@pytest.mark.parametrize("name", ["client.mjs", "client.py"])
def test_the_readme_quotes_each_client_whole(name: str) -> None:
    assert (EXAMPLES / name).read_text(encoding="utf-8") in README


def test_the_readme_says_how_to_install_the_load_tool() -> None:
    assert "pip install -e '.[loadtest]'" in README


def test_no_markdown_table_is_cut_by_a_blank_line() -> None:
    """A blank line inside a table leaves the rows after it as plain text (protocol.md's HTTP
    table had its /api and /whip rows outside it)."""
    for path in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        lines = path.read_text(encoding="utf-8").splitlines()
        in_code = False
        for number, line in enumerate(lines[2:], start=2):
            in_code ^= line.startswith("```")
            if (
                not in_code
                and line.startswith("|")
                and lines[number - 1] == ""
                and lines[number - 2].startswith("|")
            ):
                pytest.fail(f"{path.name}:{number + 1}: a table row after a blank line: {line[:60]}")


async def run_client(command: list[str], cwd: Path, server: ServerProcess, viewers: list[Viewer]) -> None:
    """The client joins, says hello (Bob sees it), and prints what Bob says."""
    room = "readme-" + uuid.uuid4().hex[:8]
    bob = await joined(server, viewers, "readme-bob", room)
    child = await asyncio.create_subprocess_exec(
        *command, token("readme-alice", name="Alice"), str(server.port), room,
        cwd=cwd, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        [hello] = await bob.wait_for(lambda i: i["type"] == "danmaku.message", timeout=30)
        assert hello["data"]["text"] == "hello!" and hello["data"]["user"]["id"] == "readme-alice"
        assert (await bob.call("danmaku.send", {"room": room, "text": "hi Alice 你好"}))["ok"]
        printed: list[str] = []
        assert child.stdout is not None
        while "Readme-Bob: hi Alice 你好" not in printed:
            line = await asyncio.wait_for(child.stdout.readline(), 30)
            assert line, (printed, await child.stderr.read() if child.stderr else b"")
            printed.append(line.decode().rstrip("\n"))
        assert printed == ["Alice: hello!", "Readme-Bob: hi Alice 你好"]
    finally:
        child.kill()
        await child.wait()


async def test_the_javascript_client_runs_as_written(
    server: ServerProcess, viewers: list[Viewer], tmp_path: Path
) -> None:
    if shutil.which("node") is None:
        pytest.skip("node is not installed")
    if not (JS_MODULES / "socket.io-client").is_dir():
        pytest.fail("run `npm ci --prefix tests/js` first (the README's test command does)")
    # Saved as the README says (client.mjs), where `npm install socket.io-client` put its package.
    shutil.copy(EXAMPLES / "client.mjs", tmp_path / "client.mjs")
    (tmp_path / "node_modules").symlink_to(JS_MODULES)
    await run_client(["node", "client.mjs"], tmp_path, server, viewers)


async def test_the_python_client_runs_as_written(
    server: ServerProcess, viewers: list[Viewer], tmp_path: Path
) -> None:
    await run_client([sys.executable, str(EXAMPLES / "client.py")], tmp_path, server, viewers)
