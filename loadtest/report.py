"""A self-contained HTML report: headline figures and inline SVG charts, no scripts, no CDN."""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any

__all__ = ["write_report"]

WIDTH, HEIGHT, PAD = 640, 180, 40
CHARTS = (
    ("Deliveries per second", ("deliveries",)),
    ("Latency, publish to receive (ms)", ("p50_ms", "p99_ms", "priority_p99_ms")),
    ("Server CPU (cores)", ("server_cpu", "loadgen_cpu")),
    ("Server RSS (MB)", ("server_rss_mb",)),
    ("Connected viewers", ("connected",)),
)
COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd")


def write_report(result: dict[str, Any], path: Path) -> None:
    runs = result.get("runs", [result])
    body = [f"<h1>liveroom-loadtest: {html.escape(str(result.get('scenario', 'compare')))}</h1>"]
    if "table" in result:
        body.append(f"<pre>{html.escape(result['table'])}</pre>")
    for run in runs:
        body.append(
            f"<h2>{html.escape(str(run.get('server')))}: {html.escape(str(run.get('scenario')))}</h2>"
        )
        headline = {k: v for k, v in run.items() if k not in ("timeline", "settings", "runs")}
        body.append(f"<pre>{html.escape(json.dumps(headline, indent=2))}</pre>")
        for title, keys in CHARTS:
            body.append(_chart(title, run.get("timeline", []), keys))
        settings = html.escape(json.dumps(run.get("settings"), indent=2))
        body.append(f"<details><summary>settings</summary><pre>{settings}</pre></details>")
    page = (
        "<!doctype html><meta charset=utf-8><title>liveroom-loadtest</title>"
        "<style>body{font:14px sans-serif;margin:2em}svg{border:1px solid #ddd;margin:.5em 0}"
        "pre{background:#f6f6f6;padding:.5em}</style>" + "\n".join(body)
    )
    path.write_text(page, encoding="utf-8")


def _chart(title: str, rows: list[dict[str, Any]], keys: tuple[str, ...]) -> str:
    series: dict[str, list[tuple[float, float]]] = {
        key: [(row["t"], row[key]) for row in rows if row.get(key) is not None] for key in keys
    }
    points = [p for values in series.values() for p in values]
    if not points:
        return ""
    x_low, x_high = min(p[0] for p in points), max(p[0] for p in points)
    y_high = max(p[1] for p in points) or 1
    parts = [f'<svg width="{WIDTH}" height="{HEIGHT}" role="img"><title>{html.escape(title)}</title>']
    parts.append(f'<text x="{PAD}" y="14">{html.escape(title)} (max {y_high:,.3g})</text>')
    for colour, (key, values) in zip(COLOURS, series.items(), strict=False):
        if not values:
            continue
        coords = " ".join(f"{_x(t, x_low, x_high):.1f},{_y(v, y_high):.1f}" for t, v in values)
        parts.append(f'<polyline fill="none" stroke="{colour}" stroke-width="1.5" points="{coords}"/>')
        legend_x = PAD + 150 * list(series).index(key)
        parts.append(f'<text x="{legend_x}" y="{HEIGHT - 4}" fill="{colour}">{html.escape(key)}</text>')
    parts.append(f'<text x="{PAD}" y="{HEIGHT - 18}" font-size="10">t={x_low}s … {x_high}s</text></svg>')
    return "".join(parts)


def _x(t: float, low: float, high: float) -> float:
    return PAD + (t - low) / max(high - low, 1) * (WIDTH - 2 * PAD)


def _y(value: float, high: float) -> float:
    return HEIGHT - PAD - value / high * (HEIGHT - 2 * PAD)
