"""`/metrics` of a node run as several workers: every worker's figures, labelled `worker`.

Each worker keeps its own registry; the worker that serves `/metrics` gathers every worker's
exposition text through the supervisor and merges them family by family (the text format
wants a family's samples together), each sample with a `worker="<index>"` label. Sum them
with `sum without (worker) (...)`.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

__all__ = ["merge_worker_metrics"]


class _Merged:
    def __init__(self, families: Iterable[Metric]) -> None:
        self._families = list(families)

    def collect(self) -> Iterator[Metric]:
        return iter(self._families)


def merge_worker_metrics(texts: Sequence[tuple[int, bytes | str]]) -> bytes:
    """One exposition from every worker's, in worker order, each sample labelled."""
    families: dict[str, Metric] = {}
    for index, text in texts:
        body = text.decode() if isinstance(text, bytes) else text
        for family in text_string_to_metric_families(body):
            merged = families.get(family.name)
            if merged is None:
                merged = families[family.name] = Metric(family.name, family.documentation, family.type)
            merged.samples.extend(
                Sample(s.name, {**s.labels, "worker": str(index)}, s.value, s.timestamp, s.exemplar)
                for s in family.samples
            )
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Merged(families.values()))
    return generate_latest(registry)
