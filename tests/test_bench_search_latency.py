"""scripts/bench_search_latency.py at a tiny size: the report scripts/eval_search.py reads; its command."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from scripts.bench_search_latency import CASES, main, measure, size_label


def test_sizes_are_labelled_as_the_report_keys_them() -> None:
    assert [size_label(n) for n in (500, 1500, 10_000, 100_000)] == ["500", "1500", "10k", "100k"]


async def test_measure_reports_every_query_kind_with_positive_figures(tmp_path: Path) -> None:
    progress: list[str] = []
    report = await measure(
        [300], 12, warmup=2, optimize="always", work_dir=tmp_path, progress=progress.append
    )

    assert report["p95_ms_300"] == report["sizes"]["300"]["queries"]["hybrid_none"]["p95_ms"] > 0
    size = report["sizes"]["300"]
    assert size["points"] == size["shard"]["points"] == 300
    assert size["optimized"] is True
    for key in ("upsert_s", "optimize_s", "build_s", "disk_mb", "rss_before_mb", "rss_built_mb"):
        assert size[key] > 0, key
    assert set(size["queries"]) == {f"{kind}_{name}" for kind, name in CASES}
    for case, figures in size["queries"].items():
        assert 0 < figures["p50_ms"] <= figures["p95_ms"], case
        assert figures["mean_ms"] > 0, case
        assert figures["hits_mean"] > 0, case  # every filter lets some points through
    assert all(0 < share < 1 for share in size["selectivity"].values())
    assert size["dense_recall_at_10"] >= 0.9  # the vectors have neighbours: not uniform noise
    assert any("upserted" in line for line in progress)
    leftovers = await asyncio.to_thread(lambda: list(tmp_path.iterdir()))
    assert leftovers == []  # the store went with its temporary directory


def test_the_command_line_ends_with_one_json_object(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["--sizes", "200", "--queries", "5", "--warmup", "1", "--optimize", "never"]
    main([*args, "--work-dir", str(tmp_path)])

    out = capsys.readouterr().out
    report = json.loads(out.strip().splitlines()[-1])
    assert report["p95_ms_200"] > 0
    assert report["sizes"]["200"]["optimized"] is False
    assert "hybrid_none" in out  # the human-readable table comes first
