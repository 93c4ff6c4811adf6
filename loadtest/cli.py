"""`liveroom-loadtest SCENARIO [options]` and `liveroom-loadtest compare [options]`."""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .report import write_report
from .scenarios import SCENARIOS, scenario_settings
from .servers import SERVER_KINDS

__all__ = ["main"]


INSTALL_HINT = (
    "liveroom-loadtest needs its WebSocket client, picows, from the `loadtest` extra:"
    " pip install 'liveroom[loadtest]' (in a clone: .venv/bin/pip install -e '.[loadtest]')"
)


def main(argv: Sequence[str] | None = None) -> int:
    try:
        return _main(list(sys.argv[1:] if argv is None else argv))
    except ModuleNotFoundError as exc:
        if exc.name != "picows":
            raise
        print(INSTALL_HINT, file=sys.stderr)
        return 2


def _main(words: list[str]) -> int:
    if words[:1] == ["flash-sale"]:  # its own options: see liveroom.loadtest.flash_sale
        from .flash_sale import main as flash_sale

        return flash_sale(words[1:])
    if words[:1] == ["auction"]:  # its own options: see liveroom.loadtest.auction_bench
        from .auction_bench import main as auction

        return auction(words[1:])
    args = _parser().parse_args(words)
    overrides = _overrides(args)
    if args.scenario == "compare":
        from .compare import run_compare

        results = run_compare(scenario_settings("fanout", **overrides), args.servers.split(","))
        _save(results, overrides.get("output") or "loadtest-results", "compare")
        return 0
    from .run import run_scenario

    result = run_scenario(scenario_settings(args.scenario, **overrides))
    _save(result, overrides.get("output") or "loadtest-results", args.scenario)
    print(json.dumps(_headline(result), indent=2))
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="liveroom-loadtest",
        description="Drive a Socket.IO live-room server with many viewers and measure delivery.",
        epilog="flash-sale and auction have options of their own: liveroom-loadtest flash-sale --help."
        " Every run writes"
        " JSON and an HTML report, with the machine's load and a flag when the run was saturated"
        " (docs/benchmarks.md).",
    )
    parser.add_argument(
        "scenario",
        choices=[*SCENARIOS, "compare", "flash-sale", "auction"],
        help="fanout, join-storm, idle, slow-consumers, big-room, churn; compare (fanout on each server);"
        " flash-sale (a storm of buyers at one sale, then a kill and the books);"
        " auction (bidders in an auction's last seconds, then the books)",
    )
    add = parser.add_argument
    add("--url", help="server to target, e.g. http://127.0.0.1:8080 (default: start one)")
    add("--server", choices=SERVER_KINDS, help="which server to start when no --url (default liveroom)")
    add("--servers", default=",".join(SERVER_KINDS), help="compare: servers to run, comma separated")
    add("--server-pid", type=int, help="with --url: the server's pid, to report its CPU and RSS")
    add("--server-cpus", type=_cpus, help="CPUs to pin a started server to (default 0)")
    add("--cpus", type=_cpus, help="CPUs to pin the load generator to (default 1)")
    add("--server-env", action="append", metavar="KEY=VALUE", help="environment for a started server")
    add("--secret", help="JWT secret of the server (default: $LIVEROOM_JWT_SECRET)")
    add("--room", help="room name")
    add("--viewers", type=int)
    add("--processes", type=int, help="load generator processes for the viewers")
    add("--rate", type=float, help="danmaku per second into the room")
    add("--priority-rate", type=float, help="priority items per second (liveroom's bench plugin)")
    add("--publishers", type=int, help="publishing connections")
    add("--text-chars", type=int, help="characters per danmaku")
    add("--duration", type=float, dest="duration_s", help="seconds of publishing (measured part)")
    add("--warmup", type=float, dest="warmup_s", help="seconds left out at the start")
    add("--connect-rate", type=float, help="new connections per second (0: as fast as possible)")
    add("--concurrency", type=int, help="connects in flight at once")
    add("--sample-every", type=int, help="every Nth viewer decodes batches for latency")
    add("--stall-fraction", type=float, help="fraction of viewers that stop reading halfway")
    add("--output", help="directory for the JSON and HTML results (default loadtest-results)")
    add("--quiet", action="store_true", default=None, help="no live progress")
    add("--profile", action="store_true", default=None, help="sample the server with py-spy (needs its pid)")
    return parser


def _cpus(text: str) -> tuple[int, ...]:
    cpus: list[int] = []
    for part in text.split(","):
        low, _, high = part.partition("-")
        cpus.extend(range(int(low), int(high or low) + 1))
    return tuple(cpus)


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    names = (
        *("url", "server", "server_pid", "server_cpus", "cpus", "secret", "room", "viewers", "processes"),
        *("rate", "priority_rate", "publishers", "text_chars", "duration_s", "warmup_s", "connect_rate"),
        *("concurrency", "sample_every", "stall_fraction", "output", "quiet", "profile"),
    )
    overrides = {name: getattr(args, name) for name in names}
    if args.server_env:
        base = dict(SCENARIOS.get(args.scenario, SCENARIOS["fanout"]).server_env)
        base.update(pair.split("=", 1) for pair in args.server_env)
        overrides["server_env"] = tuple(base.items())
    return overrides


def _save(result: dict[str, Any], output: str, name: str) -> None:
    folder = Path(output)
    folder.mkdir(parents=True, exist_ok=True)
    stem = f"{name}-{time.strftime('%Y%m%d-%H%M%S')}"
    (folder / f"{stem}.json").write_text(json.dumps(result, indent=2))
    write_report(result, folder / f"{stem}.html")
    sys.stderr.write(f"\nresults: {folder / stem}.json and .html\n")


def _headline(result: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in result.items() if k not in ("timeline", "settings", "runs", "server_metrics")}
