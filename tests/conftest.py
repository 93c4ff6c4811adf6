from __future__ import annotations

import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from support import ServerProcess, Viewer  # noqa: E402


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """One real server per test module, on default limits."""
    process = ServerProcess(tmp_path_factory.mktemp("server")).start()
    yield process
    process.stop()


@pytest.fixture
async def viewers(server: ServerProcess) -> AsyncIterator[list[Viewer]]:
    """Collects viewers made by a test and disconnects them afterwards."""
    made: list[Viewer] = []
    yield made
    for viewer in made:
        await viewer.close()
