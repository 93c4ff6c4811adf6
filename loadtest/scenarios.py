"""The scenarios: what each one sets up, and the defaults a bare `liveroom-loadtest NAME` uses."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

__all__ = ["SCENARIOS", "Settings", "scenario_settings"]


@dataclass(frozen=True, slots=True)
class Settings:
    scenario: str
    url: str = ""  # empty: start a server (see `server`); several, comma separated: viewers spread
    publish_url: str = ""  # where the publishers connect (default: the first url)
    server: str = "liveroom"  # which server to start when no url is given
    server_pid: int = 0  # watch this process's CPU and RSS when a url is given
    more_server_pids: tuple[int, ...] = ()  # the other nodes of a scale-out run, summed in
    server_cpus: tuple[int, ...] = (0,)
    cpus: tuple[int, ...] = (1,)  # where the load generator's processes run
    server_env: tuple[tuple[str, str], ...] = ()
    secret: str = ""
    room: str = "bench"
    viewers: int = 1000
    processes: int = 2
    rate: float = 100.0  # danmaku/s into the room
    priority_rate: float = 0.0
    publishers: int = 4
    text_chars: int = 16
    duration_s: float = 20.0  # from the first publish (or from the start of connecting)
    warmup_s: float = 2.0  # left out of the steady-state figures
    connect_rate: float = 2000.0  # new connections per second, over all processes; 0: no pacing
    concurrency: int = 500
    sample_every: int = 20
    stall_fraction: float = 0.0
    churn_s: tuple[float, float] | None = None
    output: str = "loadtest-results"
    profile: bool = False  # sample the server with py-spy during the measured part
    quiet: bool = False

    @property
    def connect_timeout_s(self) -> float:
        """How long connecting may take before the measured part starts anyway."""
        paced = self.viewers / (self.connect_rate or 1000.0)
        return min(120.0, 2.0 * paced + 20.0)


SCENARIOS: dict[str, Settings] = {
    # One hot room: every viewer gets every item (the per-viewer cap lifted).
    "fanout": Settings("fanout", server_env=(("LIVEROOM_DELIVERY_NORMAL_PER_S", "0"),)),
    # Everyone connects and joins at once; nothing is published.
    "join-storm": Settings(
        "join-storm", viewers=10_000, rate=0.0, duration_s=10.0, connect_rate=0.0, concurrency=1000
    ),
    # Connected and joined, nothing published: memory and CPU per idle connection.
    "idle": Settings("idle", viewers=20_000, rate=0.0, duration_s=40.0, connect_rate=4000.0),
    # 1% stop reading halfway; the rest must not notice. Big items fill buffers fast.
    "slow-consumers": Settings(
        "slow-consumers",
        viewers=2000,
        rate=200.0,
        text_chars=200,
        duration_s=40.0,
        stall_fraction=0.01,
        server_env=(("LIVEROOM_DELIVERY_NORMAL_PER_S", "0"),),
    ),
    # A room too hot to show in full: the cap samples normal items, priority ones all pass.
    "big-room": Settings("big-room", viewers=20_000, rate=2000.0, priority_rate=5.0, duration_s=30.0),
    # Viewers come and go (1-3 s each) while the room is busy.
    "churn": Settings("churn", viewers=2000, rate=50.0, duration_s=30.0, churn_s=(1.0, 3.0)),
}


def scenario_settings(name: str, **overrides: Any) -> Settings:
    """The scenario's defaults with the given settings (None: keep the default)."""
    return replace(SCENARIOS[name], **{k: v for k, v in overrides.items() if v is not None})
