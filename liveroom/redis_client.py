"""Redis clients as liveroom uses them: bounded pools and waits, and what a failure means.

Every call has its own deadline (`socket_timeout_s`, `connect_timeout_s`, `pool_timeout_s`
in `[redis]`), all shorter than a command's (`[limits] command_timeout_s`), so a hung Redis
turns into an answer a client can act on, not a command abandoned halfway. What the answer
is depends on whether the request may have reached Redis (`backend_failure`):

* never sent (no connection could be made or had from the pool), or a read: `unavailable`,
  and nothing changed;
* a write that was sent and got no answer (a timeout, a connection cut mid-call): Redis may
  still run it, e.g. when a paused server resumes. That is `outcome_unknown`: the client
  retries with the same `request_id` and every liveroom write converges on one outcome.

A command is retried by the client library only on a dropped pooled connection (stale after a
Redis restart), never after a timeout: a timed-out write resent would run twice.
"""

from __future__ import annotations

from typing import Any

from redis import exceptions as redis_errors
from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff

from liveroom.config import RedisConfig
from liveroom.errors import CommandError, OutcomeUnknown, Unavailable

__all__ = ["MAX_IN_FLIGHT", "REDIS_ERRORS", "backend_failure", "connect_redis", "retry_options"]

# Redis commands one store or broker keeps in flight at once (and its pool's size).
MAX_IN_FLIGHT = 64
# RedisClusterException is not a RedisError: the cluster client raises it (SlotNotCoveredError)
# while its slot map lacks a slot, e.g. in the moment a failed master's replica is promoted.
REDIS_ERRORS = (redis_errors.RedisError, redis_errors.RedisClusterException, OSError)
_NEVER_SENT = ("connecting to", "Timeout connecting", "No connection available")


def connect_redis(
    config: RedisConfig | str, cluster: bool = False, max_connections: int = MAX_IN_FLIGHT
) -> Redis | RedisCluster:
    """A client whose pool waits (a bounded time) for a free connection instead of failing
    under a burst, with every wait bounded by `[redis]`'s timeouts."""
    if isinstance(config, str):
        config = RedisConfig(url=config, cluster=cluster)
    options: dict[str, Any] = {
        **retry_options(),
        "socket_timeout": config.socket_timeout_s,
        "socket_connect_timeout": config.connect_timeout_s,
    }
    if config.cluster:
        return RedisCluster.from_url(config.url, max_connections=max_connections, **options)
    pool = BlockingConnectionPool.from_url(
        config.url, max_connections=max_connections, timeout=config.pool_timeout_s, **options
    )
    return Redis.from_pool(pool)  # owns the pool: aclose() closes its connections


def retry_options() -> dict[str, Any]:
    """Retry a command a few times, with backoff, when its pooled connection was dropped (and
    only then: redis-py's default also retries after a timeout)."""
    retry = Retry(ExponentialBackoff(cap=0.5, base=0.05), 3, supported_errors=(redis_errors.ConnectionError,))
    return {"retry": retry}


def backend_failure(exc: BaseException, what: str, *, write: bool) -> CommandError:
    """The error a failed Redis call is answered with (see the module docstring)."""
    text = str(exc)
    never_sent = isinstance(exc, redis_errors.MaxConnectionsError) or any(s in text for s in _NEVER_SENT)
    if not write or never_sent:
        return Unavailable(f"{what} is unreachable: {text or type(exc).__name__}")
    return OutcomeUnknown(
        f"{what} did not answer in time: the outcome is unknown; retry with the same request_id"
    )
