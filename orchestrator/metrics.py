"""Prometheus metrics of one orchestrator process, in its own registry (no global state).

Hot paths observe only what cannot be derived (ML request latency and batch sizes, store write latency);
everything the jobs already count is read from them at scrape time by a collector, for free.
"""

from __future__ import annotations

import re
from collections import Counter as Tally
from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from orchestrator.jobs import Job, JobState
from orchestrator.pipeline.progress import COUNTERS, STAGES

_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
_DIGITS = re.compile(r"\d+")


def reason_class(reason: str) -> str:
    """A low-cardinality label for an error reason: its text before the first colon, digits removed."""
    head = reason.split(":", 1)[0].strip().lower()
    return _DIGITS.sub("N", head)[:60] or "unknown"


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.ml_latency = Histogram(
            "archivist_ml_request_seconds",
            "ML service request latency",
            ["endpoint", "outcome"],
            registry=self.registry,
        )
        self.ml_batch = Histogram(
            "archivist_ml_batch_items",
            "Items per ML service request",
            ["endpoint"],
            buckets=_BATCH_BUCKETS,
            registry=self.registry,
        )

    def observe_ml(self, endpoint: str, seconds: float, items: int, outcome: str) -> None:
        self.ml_latency.labels(endpoint, outcome).observe(seconds)
        if items:
            self.ml_batch.labels(endpoint).observe(items)

    def watch_jobs(self, jobs: Callable[[], list[Job]]) -> None:
        self.registry.register(_JobsCollector(jobs))

    def render(self) -> bytes:
        return generate_latest(self.registry)


class _JobsCollector(Collector):
    """Stage throughput, queue depths, cache hits and errors by reason, summed over this process's jobs."""

    def __init__(self, jobs: Callable[[], list[Job]]) -> None:
        self._jobs = jobs

    def collect(self) -> Iterator[Metric]:
        jobs = [j for j in self._jobs() if j.progress.started_at is not None]
        files = CounterMetricFamily(
            "archivist_pipeline", "Pipeline counters summed over jobs", labels=["counter"]
        )
        for name in COUNTERS:
            files.add_metric([name], sum(j.progress.counters[name] for j in jobs))
        yield files
        busy = CounterMetricFamily(
            "archivist_stage_busy_seconds", "Time a stage was working", labels=["stage"]
        )
        items = CounterMetricFamily("archivist_stage_items", "Items a stage processed", labels=["stage"])
        for stage in STAGES:
            busy.add_metric([stage], sum(j.progress.stages[stage].busy_s for j in jobs))
            items.add_metric([stage], sum(j.progress.stages[stage].items for j in jobs))
        yield busy
        yield items
        depth = GaugeMetricFamily("archivist_queue_depth", "Items waiting between stages", labels=["queue"])
        totals: Tally[str] = Tally()
        for job in jobs:
            if job.active:
                for name, queue in job.progress.queues.items():
                    totals[name] += queue.qsize()
        for name, value in totals.items():
            depth.add_metric([name], value)
        yield depth
        hits = sum(j.progress.counters["cache_hits"] for j in jobs)
        chunks = sum(j.progress.counters["chunks"] for j in jobs)
        ratio = GaugeMetricFamily("archivist_cache_hit_ratio", "Chunks served from the result cache")
        ratio.add_metric([], hits / chunks if chunks else 0.0)
        yield ratio
        errors = CounterMetricFamily(
            "archivist_file_errors", "Failed files by stage and reason", labels=["stage", "reason"]
        )
        by_reason: Tally[tuple[str, str]] = Tally(
            (e.stage, reason_class(e.reason)) for j in jobs for e in j.progress.errors
        )
        for (stage, reason), count in by_reason.items():
            errors.add_metric([stage, reason], count)
        yield errors
        states = GaugeMetricFamily("archivist_jobs", "Jobs by state", labels=["state"])
        per_state = Tally(j.state.value for j in self._jobs())
        for state in JobState:
            states.add_metric([state.value], per_state.get(state.value, 0))
        yield states
