"""Prometheus metrics of one orchestrator process, in its own registry (no global state).

Hot paths observe only what cannot be derived (ML request latency and batch sizes, store write latency);
everything the jobs already count is read from them at scrape time by a collector, for free.
"""

from __future__ import annotations

from collections import Counter as Tally
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from orchestrator.jobs import Job, JobState
from orchestrator.pipeline.progress import COUNTERS, STAGES
from orchestrator.sources.stream_status import COUNTS as STREAM_COUNTS
from orchestrator.sources.stream_status import Connection

_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)

# Every label value comes from a small closed set: a path, an address or a free-form reason never becomes
# one (each distinct value is a time series for ever). Anything not listed is "other".
OTHER = "other"
ML_ENDPOINTS = frozenset(
    {"/v1/analyze/images", "/v1/analyze/audio", "/v1/embed/text", "/capabilities", "/ready"}
)
ML_OUTCOMES = frozenset(
    {"200", "400", "404", "413", "422", "429", "500", "502", "503", "504", "unreachable", "timeout"}
)
# (what a failure reason starts with, its class); the first match wins. The reasons are the pipeline's
# (stages/scan.py, stages/prepare.py, media/, stages/infer.py, stages/upsert.py).
_REASON_CLASSES = (
    ("empty file", "empty_file"),
    ("file too large", "too_large"),
    ("image file too large", "too_large"),
    ("image too large", "too_large"),
    ("too long", "too_long"),
    ("cannot read", "unreadable"),
    ("cannot stat", "unreadable"),
    ("cannot open media", "unreadable"),
    ("cannot list directory", "unreadable"),
    ("file changed while", "changed_while_read"),
    ("file was replaced", "changed_while_read"),
    ("failed before", "failed_before"),
    ("content is", "not_media"),
    ("not media", "not_media"),
    ("audio file, but", "no_audio_models"),
    ("the ml service has no audio", "no_audio_models"),
    ("decoding timed out", "decode_timeout"),
    ("decoder crashed", "decoder_crashed"),
    ("cannot decode", "undecodable"),
    ("not a decodable", "undecodable"),
    ("no decodable", "undecodable"),
    ("not a readable", "undecodable"),
    ("no video or audio", "undecodable"),
    ("decoder failed", "undecodable"),
    ("symlink", "symlink"),
    ("broken symlink", "symlink"),
    ("not a regular file", "not_regular_file"),
    ("file name is not valid", "bad_name"),
    ("same content as another file", "duplicate_of_failed"),
    ("the ml service", "ml_error"),
    ("no result for a chunk", "ml_error"),
)
REASON_CLASSES = frozenset(label for _, label in _REASON_CLASSES) | {OTHER}


def reason_class(reason: str) -> str:
    """A label for an error reason from the closed set REASON_CLASSES (never the reason's own text)."""
    head = reason.strip().lower()
    return next((label for prefix, label in _REASON_CLASSES if head.startswith(prefix)), OTHER)


def bounded(value: str, allowed: frozenset[str] | tuple[str, ...]) -> str:
    return value if value in allowed else OTHER


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self._jobs: _JobsCollector | None = None
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
        endpoint = bounded(endpoint, ML_ENDPOINTS)
        self.ml_latency.labels(endpoint, bounded(outcome, ML_OUTCOMES)).observe(seconds)
        if items:
            self.ml_batch.labels(endpoint).observe(items)

    def watch_jobs(self, jobs: Callable[[], list[Job]]) -> None:
        """`jobs`: the jobs in memory (JobManager.live); one that leaves memory is handed to retire_job."""
        self._jobs = _JobsCollector(jobs)
        self.registry.register(self._jobs)

    def retire_job(self, job: Job) -> None:
        """A job leaving memory (it ended): its counts stay in the totals, which never go down."""
        if self._jobs is not None:
            self._jobs.retired.add(job)

    def count_ended(self, states: Mapping[str, int]) -> None:
        """Jobs that ended in earlier processes, by state (the jobs-by-state gauge covers every job)."""
        if self._jobs is not None:
            self._jobs.retired.states.update(states)

    def render(self) -> bytes:
        return generate_latest(self.registry)


@dataclass(slots=True)
class _Retired:
    """What the jobs that left memory counted (a few small tallies, whatever the number of jobs)."""

    counters: Tally[str] = field(default_factory=Tally)
    busy_s: dict[str, float] = field(default_factory=dict)
    items: Tally[str] = field(default_factory=Tally)
    errors: Tally[tuple[str, str]] = field(default_factory=Tally)
    states: Tally[str] = field(default_factory=Tally)
    streams: Tally[str] = field(default_factory=Tally)  # live streams' counts (StreamStatus.COUNTS)

    def add(self, job: Job) -> None:
        self.states[job.state.value] += 1
        if job.streams:
            self.streams.update({name: job.stream.this_process(name) for name in STREAM_COUNTS})
        if job.progress.started_at is None:  # it did not run in this process
            return
        self.counters.update(job.progress.counters)
        for stage in STAGES:
            self.busy_s[stage] = self.busy_s.get(stage, 0.0) + job.progress.stages[stage].busy_s
            self.items[stage] += job.progress.stages[stage].items
        self.errors.update((bounded(e.stage, STAGES), reason_class(e.reason)) for e in job.progress.errors)


class _JobsCollector(Collector):
    """Stage throughput, queue depths, cache hits and errors by reason, summed over this process's jobs
    (those in memory, plus what the ones that left it counted)."""

    def __init__(self, jobs: Callable[[], list[Job]]) -> None:
        self._jobs = jobs
        self.retired = _Retired()

    def collect(self) -> Iterator[Metric]:
        jobs = [j for j in self._jobs() if j.progress.started_at is not None]
        files = CounterMetricFamily(
            "archivist_pipeline", "Pipeline counters summed over jobs", labels=["counter"]
        )
        retired = self.retired
        for name in COUNTERS:
            files.add_metric([name], sum(j.progress.counters[name] for j in jobs) + retired.counters[name])
        yield files
        busy = CounterMetricFamily(
            "archivist_stage_busy_seconds", "Time a stage was working", labels=["stage"]
        )
        items = CounterMetricFamily("archivist_stage_items", "Items a stage processed", labels=["stage"])
        for stage in STAGES:
            busy.add_metric(
                [stage], sum(j.progress.stages[stage].busy_s for j in jobs) + retired.busy_s.get(stage, 0.0)
            )
            items.add_metric(
                [stage], sum(j.progress.stages[stage].items for j in jobs) + retired.items[stage]
            )
        yield busy
        yield items
        depth = GaugeMetricFamily("archivist_queue_depth", "Items waiting between stages", labels=["queue"])
        totals: Tally[str] = Tally()
        for job in jobs:
            if job.active:
                for name, queue in job.progress.queues.items():
                    totals[name] += queue.qsize()
        for name, value in totals.items():
            depth.add_metric([name], value)  # queue names are the runner's own, a handful
        yield depth
        hits = sum(j.progress.counters["cache_hits"] for j in jobs) + retired.counters["cache_hits"]
        chunks = sum(j.progress.counters["chunks"] for j in jobs) + retired.counters["chunks"]
        ratio = GaugeMetricFamily("archivist_cache_hit_ratio", "Chunks served from the result cache")
        ratio.add_metric([], hits / chunks if chunks else 0.0)
        yield ratio
        errors = CounterMetricFamily(
            "archivist_file_errors", "Failed files by stage and reason", labels=["stage", "reason"]
        )
        by_reason: Tally[tuple[str, str]] = Tally(
            (bounded(e.stage, STAGES), reason_class(e.reason)) for j in jobs for e in j.progress.errors
        )
        by_reason.update(retired.errors)
        for (stage, reason), count in by_reason.items():
            errors.add_metric([stage, reason], count)
        yield errors
        states = GaugeMetricFamily("archivist_jobs", "Jobs by state", labels=["state"])
        per_state = Tally(j.state.value for j in self._jobs())
        per_state.update(retired.states)
        for state in JobState:
            states.add_metric([state.value], per_state.get(state.value, 0))
        yield states
        watching = GaugeMetricFamily("archivist_watching_jobs", "Jobs watching their folder (options.watch)")
        watching.add_metric([], sum(1 for j in self._jobs() if j.active and j.watch.listening))
        yield watching
        yield from self._streams()

    def _streams(self) -> Iterator[Metric]:
        """Live streams (sources/streams.py): by connection state, their segments, reconnects and lag."""
        streams = [j for j in self._jobs() if j.active and j.streams]
        by_state = GaugeMetricFamily("archivist_streams", "Live streams by connection", labels=["state"])
        states = Tally(j.stream.connection.value for j in streams)
        for state in Connection:
            if state is not Connection.STOPPED:
                by_state.add_metric([state.value], states.get(state.value, 0))
        yield by_state
        segments = CounterMetricFamily(
            "archivist_stream_segments",
            "Live stream segments recorded, ingested (taken by a pass) and dropped (buffer full)",
            labels=["event"],
        )
        for name in ("recorded", "ingested", "dropped"):
            own = sum(j.stream.this_process(name) for j in self._jobs() if j.streams)
            segments.add_metric([name], own + self.retired.streams[name])
        yield segments
        reconnects = CounterMetricFamily(
            "archivist_stream_reconnects", "Live stream connections that failed or dropped"
        )
        own = sum(j.stream.this_process("reconnects") for j in self._jobs() if j.streams)
        reconnects.add_metric([], own + self.retired.streams["reconnects"])
        yield reconnects
        lag = GaugeMetricFamily(
            "archivist_stream_lag_seconds",
            "Largest lag of a live stream: its last pass's end minus the live time of its newest segment",
        )
        lag.add_metric([], max((j.stream.lag_s or 0.0 for j in streams), default=0.0))
        yield lag
