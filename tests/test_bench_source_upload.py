"""scripts/bench_source_upload.py at a tiny size: it uploads through a real orchestrator process and reports
its numbers (what scripts/bench_sources.py reads)."""

from __future__ import annotations

from pathlib import Path

from scripts.bench_source_upload import measure_upload


def test_measure_upload_reports_its_numbers(tmp_path: Path) -> None:
    result = measure_upload(tmp_path, size_mb=2)
    assert result["upload_bytes"] == 2 << 20
    assert result["upload_mb_s"] > 0 and result["disk_mb_s"] > 0
    assert abs(result["upload_vs_disk"] - result["upload_mb_s"] / result["disk_mb_s"]) < 0.01
    stored = list((tmp_path / "data" / "uploads" / "bench").glob("*/bench upload.wav"))
    assert len(stored) == 1 and stored[0].stat().st_size == 2 << 20
