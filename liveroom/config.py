"""Typed, read-only configuration: TOML file, then environment variables, loaded once.

Every setting has a default here, so a node runs with no file at all. The repository's
``config.toml`` spells the same defaults out as the reference. Each setting can be
overridden by an environment variable: ``LIVEROOM_<SECTION>_<KEY>`` always works
(``LIVEROOM_SERVER_PORT``), and the short form
``LIVEROOM_<KEY>`` works for every key that only one section has (``LIVEROOM_PORT``,
``LIVEROOM_JWT_SECRET``; not ``kind``, which both [store] and [broker] have). Plugin sections
live under ``[plugins.NAME]`` and are parsed by the plugin that owns them.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from liveroom.errors import ConfigError

__all__ = [
    "AuthConfig",
    "BrokerConfig",
    "Config",
    "DeliveryConfig",
    "LimitsConfig",
    "MediaConfig",
    "RedisConfig",
    "RoomConfig",
    "ServerConfig",
    "StoreConfig",
    "build_section",
    "load_config",
]

ENV_PREFIX = "LIVEROOM_"


@dataclass(frozen=True, slots=True)
class ServerConfig:
    host: str = "127.0.0.1"
    port: int = 8080
    # Browser origins allowed for CORS and the Socket.IO origin check. Empty means the
    # server's own pages plus http(s)://localhost and 127.0.0.1 on any port.
    allowed_origins: tuple[str, ...] = ()
    ping_interval_s: float = 25.0
    ping_timeout_s: float = 20.0
    # Seconds given to connections and durable writes on SIGINT/SIGTERM.
    shutdown_grace_s: float = 5.0
    # A new connection must finish its first request head within this many seconds.
    request_head_timeout_s: float = 10.0
    # /metrics (it names rooms and counts everything) is served to loopback addresses only,
    # unless metrics_public; with metrics_token set, to whoever sends it as a bearer token.
    metrics_public: bool = False
    metrics_token: str = ""
    # Connections waiting to be accepted: a crowd arriving at once (a stream going live)
    # overflows a short queue, and each dropped SYN costs the client a 1-3 s retransmit.
    listen_backlog: int = 4096
    # How other nodes reach this one ("http://10.0.0.11:8081"): on a cluster, a media request
    # for a room whose media is held here is redirected to it. Empty: http://host:port.
    public_url: str = ""
    # Worker processes sharing the port (`liveroom serve --workers N`, docs/workers.md): each
    # holds its own connections, a supervisor holds the rooms' order and the store; worker 0
    # holds the media plane and the others forward its routes there. 0 means the core count
    # (one process on one core); 1 keeps one process.
    workers: int = 0


@dataclass(frozen=True, slots=True)
class AuthConfig:
    # HS256 secret. Empty: a random secret is made once and kept in jwt_secret_file,
    # shared by `liveroom serve` and `liveroom token`.
    jwt_secret: str = ""
    jwt_secret_file: str = "liveroom-data/jwt.secret"
    # Path to a PEM public key: tokens signed RS256 by the operator's auth service.
    jwt_public_key_file: str = ""
    default_ttl_s: int = 3600
    # A connection whose token expires is told (`token_expired` item) and closed this many
    # seconds later unless it sends `auth.refresh` with a new token (docs/protocol.md).
    refresh_grace_s: float = 30.0


@dataclass(frozen=True, slots=True)
class LimitsConfig:
    # Largest command (one Socket.IO event) accepted, in bytes on the wire.
    max_command_bytes: int = 8192
    # Largest Engine.IO message at all; past it the connection is dropped by Engine.IO.
    max_message_bytes: int = 1_048_576
    max_rooms_per_connection: int = 8
    # Commands per connection per second (token bucket), across all commands.
    commands_per_s: float = 50.0
    commands_burst: int = 100
    # A plugin handler running longer is abandoned and answered `internal_error`.
    command_timeout_s: float = 5.0
    # Before a connection has signed in (Socket.IO CONNECT accepted), what the server writes
    # to it may wait in its buffer up to this many bytes; past it, it is aborted.
    unauthenticated_buffer_bytes: int = 65_536
    # Connections (Engine.IO sessions) per peer address, signed in or not; 0: no cap. Off by
    # default: behind a reverse proxy, or in a load test, every client has the same address.
    max_connections_per_ip: int = 0
    # Socket.IO connections per user (the token's `sub`); 0: no cap.
    max_connections_per_user: int = 20


@dataclass(frozen=True, slots=True)
class RoomConfig:
    history_count: int = 1000
    history_age_s: float = 300.0
    online_interval_ms: int = 500
    # Unchanged rooms' counts are reported to a shared broker this often (its lease).
    presence_refresh_s: float = 3.0
    # A room with nobody in it and nothing pending (no timer, no work) is released from
    # every plugin's memory after this long, and rebuilt from its records on its next use.
    idle_release_s: float = 60.0


@dataclass(frozen=True, slots=True)
class DeliveryConfig:
    # One batch per room per tick. Under load the tick stretches (up to max_tick_ms) so
    # that flushing takes at most half of it: fewer, fuller writes, latency kept bounded.
    tick_ms: int = 50
    max_tick_ms: int = 100
    # A room whose pending normal items would make a frame of fewer than this many holds
    # them for a later tick, no item waiting past max_tick_ms: a write to each member costs
    # the same whatever the frame carries. 1: every tick flushes every room.
    fill_items: int = 4
    # ... in rooms of at least this many members on the node: a smaller room's flush is cheap
    # (about 15 us a write here), and holding it would add latency for nothing.
    fill_members: int = 1000
    # Past this many bytes waiting in a connection's outbound buffer, it is closed
    # with reason `slow_consumer`.
    outbound_buffer_bytes: int = 1_048_576
    # The kernel's send buffer per connection (SO_SNDBUF; Linux doubles it), fixed so a
    # stalled reader cannot hide megabytes there. 0 leaves the kernel to autotune it.
    send_buffer_bytes: int = 131_072
    # Per viewer: at most this many normal items a second (a fair random sample of the
    # room's items past it); 0 lifts the cap. Priority items are never dropped.
    normal_per_s: float = 25.0
    # Counter items (latest value wins) go out at most this often per room.
    counter_updates_per_s: float = 2.0
    counter_types: tuple[str, ...] = ("room.online", "like.total")
    # A flush to more members than this is written this many at a time, the event loop
    # free between slices (acks and other rooms do not wait behind a 20,000-member room).
    writes_per_slice: int = 500
    # A plugin's throttled state updates (auction price, sale stock, poll tally, like total,
    # gift board...) are one write to every member each: in a room of N online they go out at
    # most every N / this seconds (and never more often than the plugin's own interval).
    # About 15-20 µs a write on loopback here: 20,000 a second is a third of a core. 0: off.
    throttled_writes_per_s: float = 20_000.0
    # Debug invariant (on in tests): at every flush, check that each room member has a live
    # transport; a violation is logged as an error and counted in /metrics.
    check_members: bool = False


@dataclass(frozen=True, slots=True)
class StoreConfig:
    kind: str = "embedded"
    sqlite_path: str = "liveroom-data/liveroom.db"
    # SQLite `synchronous`: "normal" survives a process kill (SIGKILL) in WAL mode;
    # "full" also survives power loss, at a cost per commit.
    sqlite_synchronous: str = "normal"


@dataclass(frozen=True, slots=True)
class BrokerConfig:
    # "memory" for one node; "redis" to share rooms between nodes through [redis].
    kind: str = "memory"


@dataclass(frozen=True, slots=True)
class ClusterConfig:
    """Cluster mode (broker and store on Redis): each room's owner node (docs/scaleout.md)."""

    # A room's owner holds its lease this long, renewed every third of it; a dead owner's
    # rooms are served again (by the next node to need them) within it.
    lease_s: float = 3.0
    # A command forwarded to the owner with no answer by then is `outcome_unknown`.
    forward_timeout_s: float = 2.0


@dataclass(frozen=True, slots=True)
class RedisConfig:
    # redis://host:port/db, or rediss:// for TLS.
    url: str = "redis://127.0.0.1:6379/0"
    # Redis Cluster: keys are hash-tagged per room, pub/sub is sharded (SPUBLISH).
    cluster: bool = False
    key_prefix: str = "lr"
    # An idle room's seq counter and epoch are forgotten after this long.
    meta_ttl_s: int = 604800
    # A node's presence counts last this long unless it reports again (it reports every
    # [room] presence_refresh_s): a killed node's viewers drop out of `online` within it.
    presence_ttl_s: float = 10.0
    # Deadlines of every Redis call, all shorter than [limits] command_timeout_s: an answer
    # (a read), a new connection, a free pooled connection. A write that gets no answer in
    # time is answered `outcome_unknown` (docs/protocol.md); one never sent, `unavailable`.
    socket_timeout_s: float = 2.0
    connect_timeout_s: float = 2.0
    pool_timeout_s: float = 0.5


@dataclass(frozen=True, slots=True)
class MediaConfig:
    """The media plane (WHIP/WHEP forwarding); documented in docs/media.md."""

    enabled: bool = True
    # Media worker processes, rooms hashed to them; 0 means the core count, 1 keeps the
    # media plane in the node process. Workers start on the first WHIP/WHEP request.
    workers: int = 0
    # How long the node waits for a media worker's answer (an SDP offer, a cut...); past it
    # the request is answered 504 outcome_unknown. Far above a loaded worker's answer.
    worker_call_timeout_s: float = 15.0
    # STUN/TURN URLs given to aiortc. Empty: host candidates only (no external lookups).
    ice_servers: tuple[str, ...] = ()
    # Encoded frames waiting per viewer track; past it the viewer skips to the next keyframe.
    viewer_queue_frames: int = 120
    # A joining viewer gets the cached group of pictures if it is at most this long...
    gop_cache_frames: int = 90
    # ...otherwise a keyframe is asked of the publisher, at most once per this interval.
    keyframe_request_interval_s: float = 1.0
    # A viewer moving to another rendition (ABR) cannot use the last keyframe: its requests
    # go through at most once per this interval per rendition (what moves cost an encoder).
    move_keyframe_interval_s: float = 0.5
    max_publishers_per_room: int = 6
    max_viewers_per_room: int = 2000  # connected WHEP viewers (sessions still connecting take none)
    # One user: at most this many WHEP sessions of one stage slot of a room, and this many not yet connected
    # (per media process); a WebRTC session not connected within session_connect_timeout_s is removed.
    max_viewer_sessions_per_user: int = 2
    max_pending_sessions_per_user: int = 2
    max_pending_per_room: int = 500  # WHEP sessions of one room connecting at once, all users
    session_connect_timeout_s: float = 10.0
    # How often publisher bitrate / fps / keyframe interval are sampled into /metrics.
    stats_interval_s: float = 2.0
    # Send viewers' RTP without aiortc's per-packet Python (media/fastpath.py); false
    # falls back to aiortc's own sender loop.
    fast_send: bool = True
    # Dual-path ingest (`?path=backup`, media/failover.py): viewers are switched to the
    # backup once the primary has sent no frame of some kind for this long...
    failover_silence_s: float = 0.1
    # ...and back to the primary at one of its keyframes once it has been healthy this long.
    failover_return_after_s: float = 2.0
    # A primary under this many video frames per second (over 1 s) counts as failed; 0 = off.
    failover_min_fps: float = 0.0
    # A primary under this video bitrate (over 1 s) counts as failed; 0 = off.
    failover_min_bitrate_bps: float = 0.0
    # HLS for the crowd (media/hls.py): the host's H.264 remuxed into MPEG-TS segments under
    # hls_dir/<room>/ (relative to the working directory), served at /hls/<room>/master.m3u8.
    hls_enabled: bool = True
    hls_dir: str = "hls"
    # A segment is cut at the first keyframe after this long (a keyframe is asked for if
    # the publisher's are further apart)...
    hls_segment_s: float = 2.0
    # ...and the live playlist lists this many; older segments are deleted.
    hls_list_size: int = 6
    # Adaptive bitrate (media/abr.py): the rungs, "<height>p:<bits per second>", highest first.
    abr_ladder: tuple[str, ...] = ("720p:2500000", "480p:1200000", "360p:700000", "180p:250000")
    # A host who sends one H.264 video gets the lower rungs made by the server: decoded once,
    # each rung encoded once (x264 ultrafast), in a thread of the room's media process. Off
    # by default: it costs about 0.2 of a core per 720p30 room (docs/media.md, Figures).
    transcode_ladder: bool = False
    # ABR step up (media/abr.py): after this long without congestion a viewer tries the next
    # rung up, and keeps it if its link stays clean for abr_trial_s (failed trials back off).
    abr_up_hold_s: float = 4.0
    abr_trial_s: float = 3.0
    # Recording the host program on request (media/recording.py): fragmented MP4 files under
    # recordings_dir/<room>/ (relative to the working directory), a fragment per keyframe
    # (one asked for after recording_fragment_s), at most recording_max_s per recording.
    recordings_dir: str = "recordings"
    recording_fragment_s: float = 2.0
    recording_max_s: float = 14400.0
    # Co-stream composite (media/composite.py) for HLS (`composite.m3u8`): "off",
    # "side_by_side" or "host_large"; each stage member decoded once, the picture encoded once.
    composite_layout: str = "off"
    composite_size: str = "640x360"
    composite_fps: float = 15.0
    composite_bitrate_bps: int = 800_000
    # RTMP ingest (media/rtmp_server.py): rtmp://rtmp_host:rtmp_port/live/<room>, the publish
    # token as the stream key. Port 0 picks a free one (tests). A message (one video frame)
    # over rtmp_max_message_bytes, or no publish within rtmp_handshake_timeout_s, closes the
    # connection.
    rtmp_enabled: bool = True
    rtmp_host: str = "127.0.0.1"
    rtmp_port: int = 1935
    rtmp_max_message_bytes: int = 8 * 1024 * 1024
    rtmp_handshake_timeout_s: float = 10.0
    # Restreaming the program to other RTMP(S) destinations (media/restream.py): at most this
    # many per room; a dropped destination is retried after a backoff from
    # restream_retry_initial_s doubling up to restream_retry_max_s, and given up ("failed")
    # after restream_max_failures failures in a row (0 = never).
    restream_max_per_room: int = 5
    restream_retry_initial_s: float = 1.0
    restream_retry_max_s: float = 30.0
    restream_max_failures: int = 10


@dataclass(frozen=True, slots=True)
class Config:
    server: ServerConfig = field(default_factory=ServerConfig)
    auth: AuthConfig = field(default_factory=AuthConfig)
    limits: LimitsConfig = field(default_factory=LimitsConfig)
    room: RoomConfig = field(default_factory=RoomConfig)
    delivery: DeliveryConfig = field(default_factory=DeliveryConfig)
    store: StoreConfig = field(default_factory=StoreConfig)
    broker: BrokerConfig = field(default_factory=BrokerConfig)
    redis: RedisConfig = field(default_factory=RedisConfig)
    cluster: ClusterConfig = field(default_factory=ClusterConfig)
    media: MediaConfig = field(default_factory=MediaConfig)
    # Raw `[plugins.NAME]` tables (with env overrides applied); each plugin types its own.
    plugins: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)

    def replace(self, **sections: Any) -> Config:
        return dataclasses.replace(self, **sections)


T = TypeVar("T")


def load_config(path: str | Path | None = None, environ: Mapping[str, str] | None = None) -> Config:
    """Read the TOML file (if any) and apply environment overrides."""
    environ = os.environ if environ is None else environ
    raw: dict[str, Any] = {}
    if path is not None:
        try:
            raw = tomllib.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"cannot read config {path}: {exc}") from exc
    sections: dict[str, Any] = {}
    short_names = _short_env_names()
    for f in dataclasses.fields(Config):
        if f.name == "plugins":
            continue
        table = dict(_table(raw, f.name))
        section_type = _section_type(f.name)
        for key in (sf.name for sf in dataclasses.fields(section_type)):
            value = environ.get(f"{ENV_PREFIX}{f.name}_{key}".upper())
            if value is None and short_names[key] == f.name:
                value = environ.get(f"{ENV_PREFIX}{key}".upper())
            if value is not None:
                table[key] = value
        sections[f.name] = build_section(section_type, table, f.name)
    unknown = set(raw) - {f.name for f in dataclasses.fields(Config)}
    if unknown:
        raise ConfigError(f"unknown config section(s): {', '.join(sorted(unknown))}")
    config = Config(**sections, plugins=_plugin_tables(raw, environ))
    _check_cluster_switch(config)
    _check_deadlines(config)
    return config


def _check_cluster_switch(config: Config) -> None:
    """Cluster mode is one switch: the broker and the store on Redis together, or neither.

    A shared broker over node-local stores makes every node answer from its own records (a
    sale scheduled through one node is `not_found` on another); a shared store under a
    node-local broker splits each room's `seq` and history per node. Both look like they work."""
    broker, store = config.broker.kind, config.store.kind
    if (broker == "redis") != (store == "redis"):
        raise ConfigError(
            f"[broker] kind = {broker!r} and [store] kind = {store!r}: cluster mode puts both on Redis "
            "(LIVEROOM_BROKER_KIND=redis and LIVEROOM_STORE_KIND=redis), one node neither; "
            "see docs/scaleout.md"
        )


def _check_deadlines(config: Config) -> None:
    """A Redis call must end before the command waiting on it (see liveroom.redis_client)."""
    if "redis" not in (config.broker.kind, config.store.kind):
        return
    redis, limit = config.redis, config.limits.command_timeout_s
    worst = redis.pool_timeout_s + redis.connect_timeout_s + redis.socket_timeout_s
    if worst >= limit:
        raise ConfigError(
            f"[redis] pool_timeout_s + connect_timeout_s + socket_timeout_s ({worst:g} s) must be "
            f"shorter than [limits] command_timeout_s ({limit:g} s)"
        )


def build_section(section_type: type[T], table: Mapping[str, Any], where: str) -> T:
    """Build a frozen dataclass from a TOML table, converting env strings and checking types."""
    hints = typing.get_type_hints(section_type)
    names = {f.name for f in dataclasses.fields(section_type)}  # type: ignore[arg-type]
    unknown = set(table) - names
    if unknown:
        raise ConfigError(f"[{where}]: unknown key(s) {', '.join(sorted(unknown))}")
    values = {key: _coerce(hints[key], value, f"[{where}] {key}") for key, value in table.items()}
    return section_type(**values)


def _coerce(hint: Any, value: Any, where: str) -> Any:
    origin = typing.get_origin(hint)
    if origin is tuple:
        if isinstance(value, str):
            value = [part.strip() for part in value.split(",") if part.strip()]
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        return tuple(_coerce(typing.get_args(hint)[0], item, where) for item in value)
    if origin in (typing.Union, types.UnionType):
        return _coerce(next(a for a in typing.get_args(hint) if a is not type(None)), value, where)
    if hint is bool:
        if isinstance(value, str) and value.lower() in ("1", "true", "yes", "on", "0", "false", "no", "off"):
            return value.lower() in ("1", "true", "yes", "on")
        if isinstance(value, bool):
            return value
    elif hint in (int, float):
        try:
            number = hint(value) if isinstance(value, str) else value
        except ValueError:
            raise ConfigError(f"{where}: expected a number, got {value!r}") from None
        if isinstance(number, int | float) and not isinstance(number, bool):
            if hint is int and not float(number).is_integer():
                raise ConfigError(f"{where}: expected a whole number, got {value!r}")
            return hint(number)
    elif hint is str and isinstance(value, str):
        return value
    raise ConfigError(f"{where}: expected {getattr(hint, '__name__', hint)}, got {value!r}")


def _section_type(name: str) -> type[Any]:
    hint = typing.get_type_hints(Config)[name]
    assert isinstance(hint, type)
    return hint


def _table(raw: Mapping[str, Any], name: str) -> Mapping[str, Any]:
    table = raw.get(name, {})
    if not isinstance(table, dict):
        raise ConfigError(f"[{name}] must be a table")
    return table


def _short_env_names() -> dict[str, str]:
    """key -> section, for the LIVEROOM_<KEY> short form; a key found in two sections has none."""
    names: dict[str, str] = {}
    for f in dataclasses.fields(Config):
        if f.name != "plugins":
            for sf in dataclasses.fields(_section_type(f.name)):
                names[sf.name] = "" if sf.name in names else f.name
    return names


def _plugin_tables(raw: Mapping[str, Any], environ: Mapping[str, str]) -> dict[str, dict[str, Any]]:
    tables = {name: dict(table) for name, table in _table(raw, "plugins").items() if isinstance(table, dict)}
    prefix = f"{ENV_PREFIX}PLUGINS_"
    for key, value in environ.items():
        if key.startswith(prefix):
            plugin, _, setting = key[len(prefix) :].lower().partition("_")
            if setting:
                tables.setdefault(plugin, {})[setting] = value
    return tables
