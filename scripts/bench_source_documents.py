"""Documents per second: a many-page PDF ingested end to end, and what reading it alone costs.

    python scripts/bench_source_documents.py --pages 120 --json

`measure_documents(workdir, ml_url)` (also called by scripts/bench_sources.py) writes a PDF of `pages` pages
(about 120 distinct words each, so every page is one or two passages), ingests it through a real orchestrator
(`POST /jobs`, polled until it ends) into a fresh collection against the ML service at `ml_url`, and reports
`pdf_pages_per_s` (pages / job time), `pdf_read_pages_per_s` (PDFium reading the same file in-process: text
layer, page thumbnails, passages: what the decode worker does) and where the job's time went (its stage
busy times). The ML service's text model is the bound: each passage is one text to embed.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from orchestrator.media.documents import DocumentOptions, decode_document
from orchestrator.media.sniff import PDF_MIME
from scripts.ml_process import ml_service
from scripts.orchestrator_process import orchestrator_process
from scripts.sample_documents import text_pdf

_WORDS = (
    "harbour ferry island council bridge river market school library garden orchard museum station "
    "festival storm flood drought harvest fishermen teachers nurses engineers budget election report "
    "tunnel railway airport hospital theatre concert football basketball cycling marathon mountain "
    "glacier volcano forest desert coast village city province region archive newspaper interview"
).split()


def write_pdf(path: Path, pages: int, seed: int = 7) -> None:
    rng = random.Random(seed)
    content = []
    for n in range(pages):
        lines = [f"Section {n + 1}"]
        for _ in range(10):
            lines.append(" ".join(rng.choice(_WORDS) for _ in range(12)) + ".")
        content.append(lines)
    path.write_bytes(text_pdf(content, title="Benchmark report"))


def measure_documents(workdir: Path, ml_url: str, pages: int = 120) -> dict[str, Any]:
    """See the module."""
    media = workdir / "documents"
    media.mkdir(parents=True, exist_ok=True)
    pdf = media / "report.pdf"
    write_pdf(pdf, pages)
    started = time.perf_counter()
    decoded = decode_document(str(pdf), DocumentOptions(mime=PDF_MIME))
    read_s = time.perf_counter() - started
    with (
        orchestrator_process(workdir / "data", ml_url, [media]) as base,
        httpx.Client(base_url=base, timeout=60.0) as client,
    ):
        started = time.perf_counter()
        job = client.post("/jobs", json={"path": str(media), "collection": "bench_documents"}).json()
        while True:
            status = client.get(f"/jobs/{job['job_id']}").json()
            if status["state"] not in ("queued", "running", "paused"):
                break
            time.sleep(0.2)
        job_s = time.perf_counter() - started
    if status["state"] != "completed" or status["counters"]["failed"]:
        raise RuntimeError(f"the job ended {status['state']}: {status.get('errors')}")
    return {
        "pdf_pages": pages,
        "pdf_passages": len(decoded.passages),
        "pdf_pages_per_s": round(pages / job_s, 2),
        "pdf_read_pages_per_s": round(pages / read_s, 1),
        "pdf_job_s": round(job_s, 2),
        "pdf_stage_busy_s": {k: v["busy_s"] for k, v in (status.get("stages") or {}).items()},
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--pages", type=int, default=120)
    parser.add_argument("--ml-url", default=None, help="an ML service already running (else one is started)")
    parser.add_argument("--json", action="store_true", help="print only the JSON line")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-documents-") as tmp, ml_service(args.ml_url) as ml_url:
        result = measure_documents(Path(tmp), ml_url, args.pages)
    if not args.json:
        for key, value in result.items():
            print(f"{key}: {value}")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
