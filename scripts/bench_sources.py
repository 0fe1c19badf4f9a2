"""Every way media arrives, measured in one run against one ML service (issue targets in brackets):

    python scripts/bench_sources.py            # all; the last line is JSON
    python scripts/bench_sources.py --only upload,documents

- upload: a ~200 MB file through POST /uploads vs the same bytes written to the same disk the same way
  (`upload_mb_s`, `upload_vs_disk` [≥ 0.5]); scripts/bench_source_upload.py
- s3: the same small images ingested from a local directory and from an S3-compatible server (moto, a real
  server process on loopback), warm result cache, median of alternating runs (`s3_files_per_s`,
  `s3_vs_local`); scripts/bench_source_s3.py
- watch: a file written into a watched folder until search finds it (`watch_latency_p95_s` [≤ chunk length
  + 5 s]); scripts/bench_source_watch.py
- live: a sentence spoken on a live stream until search finds it (`live_lag_p95_s` [≤ chunk length + 10 s]);
  scripts/bench_source_live.py
- documents: a many-page PDF ingested end to end (`pdf_pages_per_s`) and read alone
  (`pdf_read_pages_per_s`); scripts/bench_source_documents.py

Each piece runs its own orchestrator process(es) on loopback against the one ML service started here (the
default models, as users run them). A piece that cannot run here reports why instead of a number.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from scripts.ml_process import ml_service

# name -> (module, function): each function takes (workdir, ml_url) and returns a dict of numbers.
PIECES = {
    "upload": ("scripts.bench_source_upload", "measure_upload"),
    "documents": ("scripts.bench_source_documents", "measure_documents"),
    "watch": ("scripts.bench_source_watch", "measure_watch"),
    "s3": ("scripts.bench_source_s3", "measure_s3"),
    "live": ("scripts.bench_source_live", "measure_live"),
}


def run_piece(name: str, workdir: Path, ml_url: str) -> dict[str, Any]:
    module, function = PIECES[name]
    started = time.monotonic()
    try:
        measure = getattr(importlib.import_module(module), function)
        result: dict[str, Any] = measure(workdir / name, ml_url)
    except Exception as exc:  # one piece failing must not hide the others' numbers
        traceback.print_exc()
        return {f"{name}_error": f"{type(exc).__name__}: {exc}"}
    result[f"{name}_bench_s"] = round(time.monotonic() - started, 1)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--only", default=",".join(PIECES), help="comma-separated: " + ", ".join(PIECES))
    parser.add_argument("--ml-url", default=None, help="an ML service already running (else one is started)")
    parser.add_argument("--workdir", type=Path, default=None, help="default: a new temporary directory")
    args = parser.parse_args()
    names = [n.strip() for n in args.only.split(",") if n.strip()]
    unknown = sorted(set(names) - set(PIECES))
    if unknown:
        parser.error(f"unknown pieces: {', '.join(unknown)}")
    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="bench-sources-") as tmp, ml_service(args.ml_url) as ml_url:
        workdir = args.workdir or Path(tmp)
        for name in names:
            print(f"== {name}", flush=True)
            result = run_piece(name, workdir, ml_url)
            for key, value in result.items():
                print(f"   {key}: {value}", flush=True)
            # Keys two pieces share ("n") keep the first; the later piece's get its name in front.
            out.update({(f"{name}_{k}" if k in out else k): v for k, v in result.items()})
    print(json.dumps(out))


if __name__ == "__main__":
    main()
