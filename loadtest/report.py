"""The HTML report of a run, for a person: one self-contained file, no script, no CDN.

First whether the figures can be trusted (the machine and the load generator, see
loadtest/machine.py), then the figures that matter with what they mean, then the run
over time (throughput, latency, connections, where the CPU went, the load average,
memory) with the measured window shaded, and last the details (settings, metrics, JSON).
"""

from __future__ import annotations

import html
import json
import math
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

__all__ = ["render_report", "write_report"]

WIDTH, HEIGHT = 760, 210
LEFT, RIGHT, TOP, BOTTOM = 58, 14, 12, 30
# Colours that stay apart for common colour blindness (Okabe-Ito).
BLUE, ORANGE, GREEN, RED, PURPLE, GREY = "#0072b2", "#e69f00", "#009e73", "#d55e00", "#cc79a7", "#999999"
Series = tuple[str, str, str]  # timeline key, label, colour
NONE = "\u2013"  # an en dash: no figure

CSS = """
body{font:15px/1.45 system-ui,sans-serif;margin:2rem auto;max-width:820px;padding:0 1rem;color:#222}
h1{font-size:1.5rem;margin-bottom:.2rem}h2{margin-top:2.2rem;border-bottom:1px solid #ddd}
h3{margin:1.6rem 0 .2rem;font-size:1.05rem}.muted,.caption{color:#666}.caption{margin:.1rem 0 .4rem}
.verdict{padding:.7rem 1rem;border-radius:8px;margin:1rem 0}.verdict ul{margin:.3rem 0 0}
.ok{background:#e8f6ef;border:1px solid #9bd3b7}.warn{background:#fdecea;border:1px solid #e6a39b}
table{border-collapse:collapse;width:100%}td,th{padding:.3rem .5rem;border-bottom:1px solid #eee;
text-align:left;vertical-align:top}td.v{font-variant-numeric:tabular-nums;white-space:nowrap;font-weight:600}
.legend{display:flex;gap:1rem;flex-wrap:wrap;font-size:.85rem;margin:.2rem 0}
.legend i{display:inline-block;width:.8rem;height:.8rem;border-radius:2px;margin-right:.3rem}
svg text{font:11px system-ui,sans-serif;fill:#555}pre{background:#f6f6f6;padding:.6rem;overflow:auto}
"""


def write_report(result: dict[str, Any], path: Path) -> None:
    path.write_text(render_report(result), encoding="utf-8")


def render_report(result: dict[str, Any]) -> str:
    runs = result.get("runs", [result])
    body = [f"<h1>liveroom-loadtest: {_e(result.get('scenario', 'compare'))}</h1>"]
    body.append(f"<p class=muted>Report written {_e(time.strftime('%Y-%m-%d %H:%M:%S'))}.</p>")
    if len(runs) > 1:
        body.append(_comparison(runs))
    for run in runs:
        if len(runs) > 1:
            body.append(f"<h2>{_e(run.get('server'))}</h2>")
        body.append(_run(run))
    return (
        f"<!doctype html><meta charset=utf-8><title>liveroom-loadtest</title><style>{CSS}</style>"
        + "\n".join(body)
    )


def _run(run: dict[str, Any]) -> str:
    rows = run.get("timeline", [])
    window = run.get("window")
    parts = [_settings_line(run), _verdict(run), "<h2>Summary</h2>", _summary(run), "<h2>Over time</h2>"]
    parts.append(
        "<p class=muted>Seconds since the load generator started; the shaded band is the measured"
        " window the summary is taken from (warm-up and wind-down left out).</p>"
    )
    cpus = (run.get("machine") or {}).get("cpus")
    charts: list[tuple[str, str, Sequence[Series], str, dict[str, Any]]] = [
        (
            "Throughput",
            "Items delivered to viewers per second.",
            [("deliveries", "deliveries/s", BLUE)],
            "",
            {},
        ),
        (
            "Latency, publish to receive",
            "Per second, over the sampled viewers: a rising p99 is a queue building up.",
            [("p50_ms", "p50", BLUE), ("p99_ms", "p99", RED), ("priority_p99_ms", "priority p99", GREEN)],
            "ms",
            {},
        ),
        ("Connections", "Open viewer connections.", [("connected", "connected", BLUE)], "", {}),
        (
            "Where the CPU went",
            "Cores in use, stacked: the server (its own code, and the kernel writing for it),"
            " the load generator, and every other process on the machine.",
            [
                ("server_user_cpu", "server", BLUE),
                ("server_kernel_cpu", "server, kernel", PURPLE),
                ("loadgen_cpu", "load generator", ORANGE),
                ("foreign_cpu", "other processes", RED),
            ],
            "cores",
            {"stacked": True, "limit": (cpus, "CPUs")},
        ),
        (
            "Load average (1 minute)",
            "Above the number of CPUs, processes waited for one.",
            [("load1", "load average", GREY)],
            "",
            {"limit": (cpus, "CPUs")},
        ),
        ("Server memory", "Resident set size of the server.", [("server_rss_mb", "RSS", BLUE)], "MB", {}),
    ]
    rows = [_with_user_cpu(row) for row in rows]
    for title, caption, series, unit, options in charts:
        parts.append(_chart(title, caption, rows, series, unit, window, **options))
    parts.append(_details(run))
    return "\n".join(part for part in parts if part)


def _settings_line(run: dict[str, Any]) -> str:
    s = run.get("settings") or {}
    bits = [
        f"{s.get('viewers', '?')} viewers",
        f"{s.get('rate', 0):g} danmaku/s" if s.get("rate") else "",
        f"{s.get('priority_rate', 0):g} priority/s" if s.get("priority_rate") else "",
        f"{s.get('duration_s', 0):g} s",
        f"{s.get('processes', '?')} load-generator processes",
        f"server {run.get('server')} at {run.get('url')}",
    ]
    return f"<p>{_e(' · '.join(bit for bit in bits if bit))}</p>"


def _verdict(run: dict[str, Any]) -> str:
    machine = run.get("machine") or {}
    reasons = run.get("saturation") or []
    if reasons:
        items = "".join(f"<li>{_e(reason)}</li>" for reason in reasons)
        return (
            "<div class='verdict warn'><b>Saturated run: these figures may say more about the machine"
            f" than about the server.</b><ul>{items}</ul></div>"
        )
    if not machine:
        return ""
    foreign = machine.get("foreign_cpu_cores")
    return (
        "<div class='verdict ok'><b>A quiet run.</b> Load average "
        f"{_load(machine.get('load_average_before'))} before, {_load(machine.get('load_average_after'))}"
        f" after, on {machine.get('cpus')} CPUs; other processes used {_n(foreign, ' cores')};"
        f" the load generator {_n(run.get('loadgen_cpu_cores'), ' cores')} of its"
        f" {machine.get('loadgen_cpus')}.</div>"
    )


def _summary(run: dict[str, Any]) -> str:
    latency, priority = run.get("latency") or {}, run.get("priority_latency") or {}
    machine = run.get("machine") or {}
    get = run.get
    figures: list[tuple[str, str, str]] = [
        (
            "Viewers",
            f"{_n(get('viewers_connected'))} connected, {_n(get('joined'))} joined",
            f"{_n(get('connect_failures'))} failed to connect; {_n(get('dropped'))} dropped by the server",
        ),
        ("Deliveries", _n(get("deliveries_per_s"), " /s"), "items written to viewers per second"),
        (
            "Latency",
            f"p50 {_n(latency.get('p50_ms'), ' ms')} · p99 {_n(latency.get('p99_ms'), ' ms')}",
            f"publish to receive; p99.9 {_n(latency.get('p999_ms'), ' ms')},"
            f" max {_n(latency.get('max_ms'), ' ms')}",
        ),
        (
            "Server CPU",
            _n(get("server_cpu_cores"), " cores"),
            f"{_n(get('server_us_per_delivery'), ' µs')} per delivery;"
            f" kernel share {_n(get('server_kernel_share'))}",
        ),
        (
            "Server memory",
            f"{_n(get('server_rss_before_mb'))} → {_n(get('server_rss_peak_mb'), ' MB')}",
            f"{_n(get('server_rss_per_connection_kb'), ' KB')} per connection",
        ),
        (
            "Load generator",
            _n(get("loadgen_cpu_cores"), " cores"),
            f"of the {_n(machine.get('loadgen_cpus'))} CPU(s) it could use",
        ),
        (
            "Machine",
            f"{_load(machine.get('load_average_before'))} → {_load(machine.get('load_average_after'))}",
            f"load average (1, 5, 15 min) before and after, on {_n(machine.get('cpus'))} CPUs;"
            f" highest 1-min load {_n(machine.get('load1_max'))};"
            f" other processes {_n(machine.get('foreign_cpu_cores'), ' cores')}",
        ),
        (
            "Joining",
            _n(get("time_to_all_joined_s"), " s"),
            "from the first connect until every viewer joined",
        ),
    ]
    if priority.get("count"):
        loss = "" if get("priority_loss") is None else f"; loss {_n(get('priority_loss'))} (must be 0)"
        figures.insert(
            3, ("Priority items", f"p99 {_n(priority.get('p99_ms'), ' ms')}", f"publish to receive{loss}")
        )
    if get("errors") or get("close_reasons"):
        figures.append(
            ("Errors", json.dumps(get("errors")), f"close reasons {json.dumps(get('close_reasons'))}")
        )
    rows = "".join(
        f"<tr><th>{_e(label)}</th><td class=v>{_e(value)}</td><td class=muted>{_e(note)}</td></tr>"
        for label, value, note in figures
    )
    return f"<table>{rows}</table>"


def _comparison(runs: list[dict[str, Any]]) -> str:
    head = (
        "<tr><th>server</th><th>deliveries/s</th><th>p50</th><th>p99</th><th>server CPU</th><th>run</th></tr>"
    )
    rows = "".join(
        f"<tr><th>{_e(run.get('server'))}</th><td class=v>{_n(run.get('deliveries_per_s'))}</td>"
        f"<td class=v>{_n((run.get('latency') or {}).get('p50_ms'), ' ms')}</td>"
        f"<td class=v>{_n((run.get('latency') or {}).get('p99_ms'), ' ms')}</td>"
        f"<td class=v>{_n(run.get('server_cpu_cores'), ' cores')}</td>"
        f"<td>{'saturated' if run.get('saturated') else 'quiet'}</td></tr>"
        for run in runs
    )
    return f"<h2>Side by side</h2><table>{head}{rows}</table>"


def _details(run: dict[str, Any]) -> str:
    metrics = run.get("server_metrics") or {}
    rows = "".join(f"<tr><td>{_e(k)}</td><td class=v>{_n(v)}</td></tr>" for k, v in sorted(metrics.items()))
    everything = {k: v for k, v in run.items() if k != "timeline"}
    parts = ["<h2>Details</h2>"]
    if rows:
        parts.append(f"<details><summary>Server metrics at the end</summary><table>{rows}</table></details>")
    for title, value in (("Settings", run.get("settings")), ("Every figure (JSON)", everything)):
        parts.append(
            f"<details><summary>{title}</summary><pre>{_e(json.dumps(value, indent=2))}</pre></details>"
        )
    return "".join(parts)


def _with_user_cpu(row: dict[str, Any]) -> dict[str, Any]:
    if row.get("server_cpu") is None or row.get("server_kernel_cpu") is None:
        return row
    return {**row, "server_user_cpu": max(0.0, row["server_cpu"] - row["server_kernel_cpu"])}


def _chart(
    title: str,
    caption: str,
    rows: list[dict[str, Any]],
    series: Sequence[Series],
    unit: str,
    window: dict[str, Any] | None,
    stacked: bool = False,
    limit: tuple[Any, str] | None = None,
) -> str:
    present = [
        (key, label, colour) for key, label, colour in series if any(r.get(key) is not None for r in rows)
    ]
    if not present or not rows:
        return ""
    times = [row["t"] for row in rows]
    x0, x1 = min(times), max(max(times), min(times) + 1)
    lines = _stack(rows, present) if stacked else _lines(rows, present)
    top = max([v for points in lines.values() for _, v in points] + [limit[0] if limit and limit[0] else 0])
    y1 = _nice(top)

    def x(t: float) -> float:
        return float(LEFT + (t - x0) / (x1 - x0) * (WIDTH - LEFT - RIGHT))

    def y(v: float) -> float:
        return HEIGHT - BOTTOM - v / y1 * (HEIGHT - TOP - BOTTOM)

    svg = [f'<svg viewBox="0 0 {WIDTH} {HEIGHT}" width="100%" role="img"><title>{_e(title)}</title>']
    if window and window.get("to_t", 0) > window.get("from_t", 0):
        a, b = x(max(x0, window["from_t"])), x(min(x1, window["to_t"]))
        band = HEIGHT - TOP - BOTTOM
        svg.append(f'<rect x="{a:.1f}" y="{TOP}" width="{b - a:.1f}" height="{band}" fill="#f0f4fa"/>')
    for tick in _ticks(0, y1):
        svg.append(
            f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y(tick):.1f}" y2="{y(tick):.1f}" stroke="#e4e4e4"/>'
        )
        svg.append(f'<text x="{LEFT - 6}" y="{y(tick) + 4:.1f}" text-anchor="end">{_tick_label(tick)}</text>')
    for tick in _ticks(x0, x1):
        svg.append(f'<text x="{x(tick):.1f}" y="{HEIGHT - 10}" text-anchor="middle">{tick:g}s</text>')
    if unit:
        svg.append(f'<text x="6" y="{TOP + 4}">{_e(unit)}</text>')
    for key, _, colour in reversed(present) if stacked else present:
        points = lines[key]
        if not points:
            continue
        coords = " ".join(f"{x(t):.1f},{y(v):.1f}" for t, v in points)
        if stacked:
            base = f"{x(points[-1][0]):.1f},{y(0):.1f} {x(points[0][0]):.1f},{y(0):.1f}"
            svg.append(
                f'<polygon points="{coords} {base}" fill="{colour}" fill-opacity=".75" stroke="none"/>'
            )
        else:
            svg.append(f'<polyline points="{coords}" fill="none" stroke="{colour}" stroke-width="1.8"/>')
    legend = "".join(f'<span><i style="background:{c}"></i>{_e(label)}</span>' for _, label, c in present)
    if limit and limit[0]:
        svg.append(
            f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y(limit[0]):.1f}" y2="{y(limit[0]):.1f}"'
            ' stroke="#333" stroke-dasharray="5 4"/>'
        )
        legend += f"<span>- - {_e(limit[0])} {_e(limit[1])}</span>"
    svg.append("</svg>")
    head = f"<h3>{_e(title)}</h3><p class=caption>{_e(caption)}</p><div class=legend>{legend}</div>"
    return head + "".join(svg)


def _lines(rows: list[dict[str, Any]], series: Sequence[Series]) -> dict[str, list[tuple[float, float]]]:
    return {key: [(r["t"], float(r[key])) for r in rows if r.get(key) is not None] for key, _, _ in series}


def _stack(rows: list[dict[str, Any]], series: Sequence[Series]) -> dict[str, list[tuple[float, float]]]:
    """Cumulative sums in series order, over the seconds where the first series is known."""
    stacked: dict[str, list[tuple[float, float]]] = {key: [] for key, _, _ in series}
    for row in rows:
        if row.get(series[0][0]) is None:
            continue
        total = 0.0
        for key, _, _ in series:
            total += float(row.get(key) or 0.0)
            stacked[key].append((row["t"], total))
    return stacked


def _nice(value: float) -> float:
    """The smallest 1, 2 or 5 times a power of ten at or above `value` (at least 1)."""
    if value <= 1:
        return 1.0 if value > 0.5 or value <= 0 else 0.5
    power = 10 ** math.floor(math.log10(value))
    return float(next(step * power for step in (1, 2, 5, 10) if step * power >= value))


def _ticks(low: float, high: float, most: int = 8) -> Iterable[float]:
    span = max(high - low, 1e-9)
    step = _nice(span / most) if span / most > 1 else next(s for s in (0.1, 0.2, 0.5, 1) if span / s <= most)
    first = math.ceil(low / step) * step
    count = int((high - first) / step + 1e-9) + 1
    return [round(first + i * step, 6) for i in range(count)]


def _tick_label(value: float) -> str:
    return f"{value / 1000:g}k" if value >= 10_000 else f"{value:g}"


def _load(values: Any) -> str:
    return " / ".join(f"{v:g}" for v in values) if values else NONE


def _n(value: Any, unit: str = "") -> str:
    if value is None:
        return NONE
    if isinstance(value, float):
        text = f"{value:,.3g}" if abs(value) < 100 else f"{value:,.0f}"
    elif isinstance(value, int):
        text = f"{value:,}"
    else:
        text = str(value)
    return text + unit


def _e(value: Any) -> str:
    return html.escape(str(value))
