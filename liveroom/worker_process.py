"""One worker of `liveroom serve --workers N`: a whole node on the shared port, its rooms'
order, store and owners in the supervisor (`supervisor.py`).

Started by the supervisor as `python -m liveroom.worker_process IPC_SOCKET INDEX CONFIG HOST PORT`
(CONFIG empty: the default lookup; the environment is the supervisor's). On the embedded
backends the node's broker, store and room directory are the supervisor's, over IPC; with
Redis configured the worker is a cluster node like any other, and IPC only carries
readiness and metrics. A worker whose supervisor went away stops.

With the media plane on, worker 0 holds it (WHIP, WHEP, HLS, recordings, RTMP, restreams)
and also serves its app on a Unix socket beside the supervisor's; every other worker
forwards the media routes there (media/forward.py), so a client never sees which worker
its connection landed on.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from liveroom.cli import raise_open_files_limit, startup_failure, tune_gc
from liveroom.config import Config, load_config
from liveroom.errors import ConfigError
from liveroom.handoff import Handoff, set_session_prefix
from liveroom.ipc_client import IpcBroker, IpcChannel, IpcDirectory, IpcStore
from liveroom.node import Node
from liveroom.worker_metrics import merge_worker_metrics

__all__ = ["MEDIA_SOCKET", "MEDIA_WORKER", "WorkerSiblings", "main", "worker_node"]

log = logging.getLogger("liveroom")
MEDIA_WORKER = 0  # the worker that holds the media plane
MEDIA_SOCKET = "media.sock"  # its app, for the others' forwarded media requests (beside ipc.sock)


class WorkerSiblings:
    """What /readyz and /metrics ask of the other workers, through the supervisor."""

    def __init__(self, channel: IpcChannel) -> None:
        self._channel = channel

    async def all_ready(self) -> bool:
        try:
            ready, expected = await self._channel.call("readiness")
        except Exception:
            return False
        return bool(ready >= expected)

    async def metrics(self) -> bytes:
        texts = await self._channel.call("metrics")
        return merge_worker_metrics([(index, text) for index, text in texts])


def worker_node(config: Config, channel: IpcChannel) -> Node:
    if config.broker.kind == "redis":
        return Node(config)  # a cluster node: its backends and owners are on Redis
    return Node(config, store=IpcStore(channel), broker=IpcBroker(channel), directory=IpcDirectory(channel))


def main(argv: Sequence[str] | None = None) -> int:
    path, index, config_path, host, port = argv if argv is not None else sys.argv[1:]
    logging.basicConfig(
        level=os.environ.get("LIVEROOM_LOG_LEVEL", "INFO").upper(),
        format=f"%(asctime)s %(levelname)s w{index} %(name)s: %(message)s",
    )
    try:
        config = load_config(config_path or None)
        server = dataclasses.replace(config.server, host=host, port=int(port), workers=1)
        _serve(config.replace(server=server), path, int(index))
    except ConfigError as exc:
        print(f"liveroom: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:
        if _started:
            raise  # a failure while serving is a bug: keep its traceback
        print(
            f"liveroom: worker {index} cannot start: {startup_failure(exc, host, int(port))}", file=sys.stderr
        )
        return 1
    return 0


_started: list[bool] = []
_started_task: list[asyncio.Task[Any]] = []


def _serve(config: Config, path: str, index: int) -> None:
    import uvloop

    from liveroom.front_door import run_app
    from liveroom.web import build_app

    loop = uvloop.new_event_loop()
    asyncio.set_event_loop(loop)
    set_session_prefix(index)
    handoff = Handoff(Path(path).parent, index)
    channel = IpcChannel(path, index)
    loop.run_until_complete(channel.connect())
    channel.on_lost = lambda: os.kill(os.getpid(), signal.SIGTERM)  # the supervisor is gone
    node = worker_node(config, channel)
    media_socket = Path(path).parent / MEDIA_SOCKET
    holds_media = config.media.enabled and index == MEDIA_WORKER
    forward_to = media_socket if config.media.enabled and not holds_media else None
    app = build_app(config, node, WorkerSiblings(channel), media_at=forward_to)

    async def own_metrics(_args: list[Any]) -> bytes:
        return node.metrics.render()

    channel.answers["metrics"] = own_metrics
    tune_gc()
    raise_open_files_limit()

    def started() -> None:
        _started.append(True)
        _started_task.append(loop.create_task(channel.call("ready", True)))

    server = config.server
    run_app(
        app,
        loop,
        server.host,
        server.port,
        {"/socket.io/": node.sio.direct, "/socket.io-msgpack/": node.msgpack_sio.direct},
        head_timeout_s=server.request_head_timeout_s,
        shutdown_timeout_s=server.shutdown_grace_s,
        backlog=server.listen_backlog,
        started=started,
        on_bad_request=node.metrics.bad_input.labels("http").inc,
        reuse_port=True,
        handoff=handoff,
        unix_path=str(media_socket) if holds_media else None,
    )


if __name__ == "__main__":
    sys.exit(main())
