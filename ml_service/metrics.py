"""Prometheus metrics of the ML service, in its own registry: request latency, model batch sizes and
times, and queue depth per model (read from the batchers at scrape time)."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128)
_PATHS = frozenset(
    {
        "/v1/embed/text",
        "/v1/analyze/images",
        "/v1/analyze/audio",
        "/api/v1/batch_embed_and_caption",
        "/capabilities",
    }
)


class MLMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Histogram(
            "archivist_ml_http_request_seconds",
            "Request latency by path and status",
            ["path", "status"],
            registry=self.registry,
        )
        self.batch_size = Histogram(
            "archivist_ml_model_batch_items",
            "Items per model call (after micro-batching)",
            ["model"],
            buckets=_BATCH_BUCKETS,
            registry=self.registry,
        )
        self.batch_seconds = Histogram(
            "archivist_ml_model_batch_seconds", "Model call duration", ["model"], registry=self.registry
        )

    def observe_request(self, path: str, status: int, seconds: float) -> None:
        # Unknown paths share one label: a scanner probing URLs must not create series.
        self.requests.labels(path if path in _PATHS else "other", str(status)).observe(seconds)

    def observe_batch(self, model: str, items: int, seconds: float) -> None:
        self.batch_size.labels(model).observe(items)
        self.batch_seconds.labels(model).observe(seconds)

    def watch_queues(self, depths: Callable[[], dict[str, int]]) -> None:
        self.registry.register(_Queues(depths))

    def render(self) -> bytes:
        return generate_latest(self.registry)


class _Queues(Collector):
    def __init__(self, depths: Callable[[], dict[str, int]]) -> None:
        self._depths = depths

    def collect(self) -> Iterator[Metric]:
        gauge = GaugeMetricFamily(
            "archivist_ml_queue_items", "Items waiting or running per model", labels=["model"]
        )
        for model, depth in self._depths().items():
            gauge.add_metric([model], depth)
        yield gauge
