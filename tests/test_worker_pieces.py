"""The pure pieces of `liveroom serve --workers N`: merged metrics and session ids."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from liveroom.handoff import new_session_id, owner_of, set_session_prefix
from liveroom.metrics import Metrics
from liveroom.worker_metrics import merge_worker_metrics


def test_every_workers_figures_come_out_as_one_family_each_labelled_by_worker() -> None:
    one, two = Metrics(), Metrics()
    one.items_sent.inc(3)
    two.items_sent.inc(5)
    two.errors.labels("unavailable").inc()
    merged = merge_worker_metrics([(0, one.render()), (1, two.render())]).decode()
    families = {f.name: f for f in text_string_to_metric_families(merged)}  # valid exposition
    sent = {
        s.labels["worker"]: s.value
        for s in families["liveroom_items_sent"].samples
        if s.name.endswith("_total")
    }
    assert sent == {"0": 3.0, "1": 5.0}
    [error] = [s for s in families["liveroom_errors"].samples if s.name.endswith("_total")]
    assert error.labels == {"code": "unavailable", "worker": "1"}
    assert merged.count("# TYPE liveroom_items_sent_total counter") == 1


def test_a_workers_session_ids_name_it() -> None:
    assert owner_of(new_session_id()) is None  # one process: plain ids
    set_session_prefix(3)
    try:
        sid = new_session_id()
        assert sid.startswith("w3.") and owner_of(sid) == 3
    finally:
        set_session_prefix(None)
    for foreign in ("w.abc", "wx.abc", "abc", "w12abc", ""):
        assert owner_of(foreign) is None
