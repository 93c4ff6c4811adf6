from __future__ import annotations

import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

sys.path.insert(0, str(Path(__file__).parent))

from redis_support import RedisCluster, RedisServer
from support import ServerProcess, Viewer

# No timing bounds in tests, hypothesis' own included: its 200 ms deadline per example and
# its "too slow" health check failed pure tests (test_wire_pure) at load 40 on two cores.
settings.register_profile("liveroom", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("liveroom")


# Files whose servers need the media plane, besides every tests/test_media_*.py.
MEDIA_FILES = (
    "test_pages.py",
    "test_pages_auction_gift.py",
    "test_plugin_costream.py",  # a guest's publish token at /whip
    "test_webhooks.py",  # stream.started from a WHIP publisher
    "test_wire_probes_e2e.py",  # probes of /whip and /whep
)


@pytest.fixture(scope="module", autouse=True)
def media_plane(request: pytest.FixtureRequest) -> None:
    """The servers of this file (autouse: set before any of its fixtures start one) have the
    media plane only if the file uses it; a node without it starts on a quarter less CPU."""
    name = request.path.name
    ServerProcess.media = name.startswith("test_media_") or name in MEDIA_FILES


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """One redis-server for the conformance suites (tests keep apart by key prefix)."""
    server = RedisServer(tmp_path_factory.mktemp("redis")).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisCluster]:
    """One 3-master Redis Cluster for the conformance suites."""
    cluster = RedisCluster(tmp_path_factory.mktemp("cluster")).start()
    yield cluster
    cluster.stop()


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


def pytest_xdist_auto_num_workers(config: pytest.Config) -> int:
    """How many xdist workers `-n auto` (in addopts) starts: three, each running one test
    file at a time (`--dist loadfile`); none for benchmarks, which pin their own cores and
    print their figures (`-s`). `-n 0` runs any selection in this process.

    Three on two cores: the suite waits more than it computes (259 s of CPU in a 201 s run
    with three workers; 265 s in 306 s with two, docs/testing.md), so a third file's waits
    fill the cores' idle time."""
    return 0 if "bench" in (config.getoption("markexpr") or "") else 3


# The longest files, longest first (per-file test time of a full run with three workers,
# 3 December 2026: 62 s down to 10 s). `--dist loadfile` hands out files in collection
# order (`--no-loadscope-reorder` in addopts keeps it): started first, they end while the
# other workers run the short files, rather than one of them running alone at the end
# (before: the auction pages, 42 s, last and mostly alone, xdist's default order putting
# the files with few tests last).
LONGEST_FIRST = (
    "test_pages.py",
    "test_one_room_any_node_e2e.py",
    "test_every_plugin_any_node_e2e.py",
    "test_auction_gift_e2e.py",
    "test_scaleout_e2e.py",
    "test_pages_auction_gift.py",
    "test_loadtest_smoke.py",
    "test_media_rtmp.py",
    "test_media_failover_e2e.py",
    "test_media_failover_dead_e2e.py",
    "test_media_cameras_e2e.py",
    "test_media_cameras_console.py",
    "test_media_abr_link.py",
    "test_scaleout_sale_e2e.py",
    "test_media_forwarding.py",
    "test_media_server_workers_e2e.py",
    "test_workers_e2e.py",
    "test_shop_e2e.py",
    "test_media_replay.py",
    "test_cluster_failover_e2e.py",
    "test_media_hls.py",
    "test_media_abuse.py",
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The longest files first (`LONGEST_FIRST`, the rest in their order); benchmarks
    (marker `bench`) run only when asked for: `pytest -m bench`."""
    rank = {name: n for n, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: the rest keep their order
    if "bench" in (config.getoption("markexpr") or ""):
        return
    skip = pytest.mark.skip(reason="a benchmark: run with -m bench")
    for item in items:
        if item.get_closest_marker("bench"):
            item.add_marker(skip)
