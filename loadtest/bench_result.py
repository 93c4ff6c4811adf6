"""A scenario bench's result (flash sale, auction, lucky bag): the machine it ran on, and the
JSON file and exit status it ends with."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from .machine import load_average

__all__ = ["machine_summary", "save_result"]


def machine_summary(load_before: list[float]) -> dict[str, Any]:
    """The machine's CPUs and its load average before the run (as given) and now, after it."""
    return {"cpus": os.cpu_count(), "load_average_before": load_before, "load_average_after": load_average()}


def save_result(result: dict[str, Any], output: str, name: str) -> int:
    """Write `result` to `<output>/<name>-<unix s>.json` and print it; the exit status: 0 when
    its checks held (`correct`)."""
    out = Path(output)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}-{int(time.time())}.json").write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))
    return 0 if result["correct"] else 1
