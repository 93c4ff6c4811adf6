"""`liveroom serve` and `liveroom token`."""

from __future__ import annotations

import argparse
import dataclasses
import errno
import gc
import logging
import os
import socket
import sqlite3
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from liveroom.auth import ROLES, TokenAuthority
from liveroom.config import Config, load_config
from liveroom.errors import CommandError, ConfigError, Unavailable
from liveroom.pages import page_links

__all__ = ["main", "raise_open_files_limit", "startup_failure", "tune_gc"]

DEFAULT_CONFIG = "config.toml"
log = logging.getLogger("liveroom")


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        config = _config(args.config)
        if args.command == "serve":
            workers = args.workers if args.workers is not None else config.server.workers
            return _serve(config, args.host, args.port, workers, args.config)
        return _token(config, args)
    except ConfigError as exc:
        print(f"liveroom: {exc}", file=sys.stderr)
        return 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="liveroom", description="Real-time live-room interaction server")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run one node")
    serve.add_argument("--config", help=f"TOML config file (default: ./{DEFAULT_CONFIG} if present)")
    serve.add_argument("--host", help="address to listen on (overrides [server] host)")
    serve.add_argument("--port", type=int, help="port to listen on (overrides [server] port)")
    serve.add_argument(
        "--workers",
        type=int,
        help="worker processes sharing the port (overrides [server] workers; 0: the core count)",
    )
    token = commands.add_parser("token", help="print a signed token (HS256 with [auth] jwt_secret)")
    token.add_argument("--user", required=True, help="user id (claim 'sub')")
    token.add_argument("--name", help="display name (default: the user id)")
    token.add_argument("--role", choices=ROLES, default="viewer")
    token.add_argument("--room", help="bind the token to one room")
    token.add_argument("--tier", help="the audience tier (claim 'tier'), e.g. vip for costream's VIP lane")
    token.add_argument("--ttl", type=int, help="lifetime in seconds (default: [auth] default_ttl_s)")
    token.add_argument("--config", help=f"TOML config file (default: ./{DEFAULT_CONFIG} if present)")
    token.add_argument(
        "--links", action="store_true", help="also print links to the room's pages (needs --room)"
    )
    token.add_argument("--base-url", help="where the pages are served (default: from [server] host and port)")
    token.add_argument("--host", help="--links: the host `liveroom serve --host` was given")
    token.add_argument("--port", type=int, help="--links: the port `liveroom serve --port` was given")
    return parser


def _config(path: str | None) -> Config:
    if path is None and Path(DEFAULT_CONFIG).is_file():
        path = DEFAULT_CONFIG
    return load_config(path)


def _serve(
    config: Config, host: str | None, port: int | None, workers: int = 1, config_path: str | None = None
) -> int:
    logging.basicConfig(
        level=os.environ.get("LIVEROOM_LOG_LEVEL", "INFO").upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    host = host or config.server.host
    port = port if port is not None else config.server.port
    workers = workers if workers > 0 else os.cpu_count() or 1
    config = config.replace(server=dataclasses.replace(config.server, host=host, port=port))
    started = False

    def listening() -> None:
        nonlocal started
        started = True
        several = f", {workers} workers" if workers > 1 else ""
        print(f"liveroom: serving on http://{host}:{port} (Socket.IO at /socket.io/{several})", flush=True)

    try:
        if workers > 1:
            if port == 0:  # the workers must share one port: pick it for them
                port = _free_port(host)
                config = config.replace(server=dataclasses.replace(config.server, port=port))
            return _supervise(config, workers, config_path, listening)
        _run(config, host, port, listening)
    except ConfigError:
        raise
    except Exception as exc:
        if started:
            raise  # a failure while serving is a bug: keep its traceback
        # Start-up failed for a reason outside the program (a port in use, a file that cannot
        # be written, Redis not there): one line that names it; the traceback at DEBUG.
        log.debug("start-up failed", exc_info=True)
        print(f"liveroom: cannot start: {startup_failure(exc, host, port)}", file=sys.stderr)
        return 1
    return 0


def _run(config: Config, host: str, port: int, listening: Callable[[], None]) -> None:
    import uvloop

    from liveroom.front_door import run_app
    from liveroom.web import NODE_KEY, build_app

    app = build_app(config)
    tune_gc()
    raise_open_files_limit()
    node = app[NODE_KEY]
    server = config.server
    engines = {"/socket.io/": node.sio.direct, "/socket.io-msgpack/": node.msgpack_sio.direct}
    run_app(
        app,
        uvloop.new_event_loop(),
        host,
        port,
        engines,
        head_timeout_s=server.request_head_timeout_s,
        shutdown_timeout_s=server.shutdown_grace_s,
        backlog=server.listen_backlog,
        started=listening,
        on_bad_request=node.metrics.bad_input.labels("http").inc,
    )


def _free_port(host: str) -> int:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


def _supervise(config: Config, workers: int, config_path: str | None, listening: Callable[[], None]) -> int:
    import uvloop

    from liveroom.supervisor import Supervisor, check_port

    if config_path is None and Path(DEFAULT_CONFIG).is_file():
        config_path = str(Path(DEFAULT_CONFIG).resolve())
    elif config_path is not None:
        config_path = str(Path(config_path).resolve())
    check_port(config.server.host, config.server.port)
    supervisor = Supervisor(config, workers, config_path)
    code = uvloop.run(supervisor.run(listening))
    if supervisor.failed is not None:
        print(f"liveroom: cannot start: {supervisor.failed} (its own message is above)", file=sys.stderr)
    return code


def startup_failure(exc: BaseException, host: str, port: int) -> str:
    """What stopped start-up, in one line a person can act on."""
    if isinstance(exc, socket.gaierror):
        return f"cannot listen on {host!r}: {exc.strerror or exc} (check --host / [server] host)"
    if isinstance(exc, OSError) and exc.filename is None:
        if exc.errno == errno.EADDRINUSE:
            return f"{host}:{port} is already in use (another server?); pick another: --port or [server] port"
        if exc.errno == errno.EACCES:
            return f"not allowed to listen on {host}:{port} (ports below 1024 need privileges)"
        if exc.errno == errno.EADDRNOTAVAIL:
            return f"{host} is not an address of this machine (check --host / [server] host)"
    if isinstance(exc, OSError) and exc.filename is not None:
        return f"{exc.strerror or exc}: {exc.filename}"
    if isinstance(exc, sqlite3.Error):
        return f"the SQLite store ([store] sqlite_path): {exc}"
    if isinstance(exc, Unavailable):
        return f"{exc.message} (is Redis up at [redis] url?)"
    if isinstance(exc, CommandError):
        return exc.message
    return f"{type(exc).__name__}: {exc}"


def raise_open_files_limit() -> None:
    """Every viewer is a file descriptor: take the hard limit, not the (often 1024) soft one."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        except (ValueError, OSError):
            return
    logging.getLogger("liveroom").info("open files limit: %s", hard)


def tune_gc() -> None:
    """Everything built at start-up lives as long as the process: move it out of the
    collector's sight, and collect the young generation less often. Under a command storm
    the default threshold (700 allocations) made the collector a large share of the CPU."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(20_000, 20, 20)


def _token(config: Config, args: argparse.Namespace) -> int:
    authority = TokenAuthority.from_config(config.auth)
    ttl = args.ttl if args.ttl is not None else config.auth.default_ttl_s
    if args.links and not args.room:
        raise ConfigError("--links needs --room")
    try:
        minted = authority.mint(args.user, args.name or args.user, args.role, args.room, ttl, args.tier)
    except ValueError as exc:
        raise ConfigError(f"--tier: {exc}") from None
    print(minted)
    if args.links:
        base = args.base_url or _base_url(args.host or config.server.host, args.port or config.server.port)
        if not args.base_url:
            # Stdout stays the token and the links; where they point goes to stderr.
            print(
                f"liveroom: links to {base} (the config's [server] host and port, or --host/--port);"
                " pass --base-url if the pages are served elsewhere",
                file=sys.stderr,
            )
        for line in page_links(base, args.room, args.role, minted):
            print(line)
    return 0


def _base_url(host: str, port: int) -> str:
    host = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
    host = f"[{host}]" if ":" in host else host
    return f"http://{host}:{port}"
