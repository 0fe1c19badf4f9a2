"""Every label value of the orchestrator's metrics comes from a small closed set: a failure reason carrying
a path, an odd ML endpoint or status, or an unknown stage never becomes a new time series."""

from __future__ import annotations

import time
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from orchestrator.jobs import Job
from orchestrator.metrics import ML_ENDPOINTS, ML_OUTCOMES, OTHER, REASON_CLASSES, Metrics, reason_class
from orchestrator.pipeline.progress import COUNTERS, STAGES

# Reasons as the pipeline writes them, several with a path or an errno text inside.
REASONS = [
    ("scan", "symlink points outside the root (/etc/passwd)"),
    ("scan", "cannot stat: Permission denied"),
    ("scan", "cannot list directory: [Errno 13] Permission denied: '/srv/private/tax 2023'"),
    ("scan", "file name is not valid UTF-8"),
    ("prepare", "empty file"),
    ("prepare", "file too large: 123456789 bytes (limit 1000)"),
    ("prepare", "cannot read: No such file or directory"),
    ("prepare", "content is text, not media (name ends in .jpg)"),
    ("prepare", "cannot decode image: broken data stream when reading image file /home/a/b.jpg"),
    ("prepare", "image too large: 30000x30000 exceeds 200000000 pixels"),
    ("decode", "decoding timed out after 900 s"),
    ("decode", "decoder failed: invalid data found when processing input /media/x.mp4"),
    ("infer", "the ML service could not analyse this item"),
    ("infer", "something nobody planned for at /secret/path"),
    ("upsert", "same content as another file, which failed to process"),
    (
        "prepare",
        "failed before and unchanged since, not read again (options.retry_failed retries it): empty file",
    ),
    ("prepare", "file was replaced by a symlink after the scan (not followed)"),
    ("nowhere", "empty file"),
]


def _labels(text: str) -> dict[str, set[str]]:
    """label name -> every value it takes in a scrape."""
    values: dict[str, set[str]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            for name, value in sample.labels.items():
                if name != "le":
                    values.setdefault(name, set()).add(value)
    return values


def test_label_values_come_from_closed_sets(tmp_path: Path) -> None:
    job = Job(id="j1", root=tmp_path, collection="media", options={})
    job.progress.started_at = time.time()
    for stage, reason in REASONS:
        job.progress.fail(str(tmp_path / "some file.jpg"), stage, reason)
    metrics = Metrics()
    metrics.watch_jobs(lambda: [job])
    metrics.observe_ml("/v1/analyze/images", 0.1, 4, "200")
    metrics.observe_ml("/v1/analyze/images", 0.1, 4, "418")
    metrics.observe_ml("http://10.0.0.7:8001/v1/analyze/images?x=1", 0.1, 1, "ConnectError: /tmp/sock")

    labels = _labels(metrics.render().decode())
    assert labels["reason"] <= REASON_CLASSES, labels["reason"]
    assert labels["stage"] <= {*STAGES, OTHER}
    assert labels["endpoint"] == {"/v1/analyze/images", OTHER} and "/v1/analyze/images" in ML_ENDPOINTS
    assert labels["outcome"] == {"200", OTHER} and "200" in ML_OUTCOMES
    assert labels["counter"] <= set(COUNTERS)
    for values in labels.values():
        assert not any("/" in v and not v.startswith("/v1/") for v in values), values

    # Each reason keeps its meaning as a class; what is not known is "other", never its own text.
    classes = {reason: reason_class(reason) for _, reason in REASONS}
    assert classes["symlink points outside the root (/etc/passwd)"] == "symlink"
    assert classes["empty file"] == "empty_file"
    assert classes["content is text, not media (name ends in .jpg)"] == "not_media"
    assert classes["decoding timed out after 900 s"] == "decode_timeout"
    assert classes["something nobody planned for at /secret/path"] == OTHER
    assert len(REASON_CLASSES) < 30
