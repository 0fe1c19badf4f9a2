"""Upload speed against the disk: a ~200 MB file streamed through POST /uploads over loopback.

    python scripts/bench_source_upload.py --size-mb 200 --json

`measure_upload(workdir)` (also called by scripts/bench_sources.py) starts a real orchestrator process
(`python -m orchestrator`) on a loopback port, streams one WAV file (a header + PCM: it sniffs as audio
without being costly media) to POST /uploads with httpx (a file object in a multipart body: streamed), and
times it until the response (stored, fsync'd, checksummed: blake3 + sha256). The job that ingests the upload
is not timed; it is cancelled right away (an ML service is not needed: `ml_url` only points the
orchestrator at one). The baseline, `disk_mb_s`, copies the same file to the same file system as the upload
path writes it (`sources/sink.py`: BUFFER_BYTES writes, an fdatasync every SYNC_BYTES, an fsync at the end).
`upload_vs_disk` = upload_mb_s / disk_mb_s.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import struct
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from orchestrator.sources.sink import BUFFER_BYTES, SYNC_BYTES
from scripts.ml_process import free_port
from scripts.orchestrator_process import orchestrator_process

_MB = 1 << 20


def write_wav(path: Path, size_bytes: int) -> None:
    """A 16 kHz mono 16-bit WAV of about `size_bytes` (random PCM: nothing compresses or repeats)."""
    data_bytes = max(2, size_bytes - 44) // 2 * 2
    header = b"RIFF" + struct.pack("<I", 36 + data_bytes) + b"WAVE"
    header += b"fmt " + struct.pack("<IHHIIHH", 16, 1, 1, 16_000, 32_000, 2, 16)
    header += b"data" + struct.pack("<I", data_bytes)
    with open(path, "wb") as fh:
        fh.write(header)
        left = data_bytes
        while left:
            block = os.urandom(min(left, 4 * _MB))
            fh.write(block)
            left -= len(block)


def disk_copy_mb_s(source: Path, target: Path) -> float:
    """Copy `source` to `target` as the upload path writes: BUFFER_BYTES writes, an fdatasync every
    SYNC_BYTES, an fsync at the end (`sources/sink.py`)."""
    size = source.stat().st_size
    started = time.perf_counter()
    with open(source, "rb") as src, open(target, "xb") as dst:
        unsynced = 0
        while block := src.read(BUFFER_BYTES):
            dst.write(block)
            unsynced += len(block)
            if unsynced >= SYNC_BYTES:
                dst.flush()
                os.fdatasync(dst.fileno())
                unsynced = 0
        dst.flush()
        os.fsync(dst.fileno())
    elapsed = time.perf_counter() - started
    target.unlink()
    return size / _MB / elapsed


def measure_upload(workdir: Path, ml_url: str | None = None, size_mb: int = 200) -> dict[str, Any]:
    """See the module. Returns upload_mb_s, disk_mb_s, upload_vs_disk (and what was measured)."""
    workdir.mkdir(parents=True, exist_ok=True)
    payload = workdir / "bench upload.wav"
    write_wav(payload, size_mb * _MB)
    size = payload.stat().st_size
    disk = disk_copy_mb_s(payload, workdir / "disk_copy.wav")

    env = {
        "ML_RETRY_DEADLINE_S": "30",
        "MAX_UPLOAD_BYTES": str(size + _MB),
    }
    # Without an ML service to point at, the orchestrator still starts (the upload needs none).
    target = ml_url or f"http://127.0.0.1:{free_port()}"
    log_path = workdir / "orchestrator.log"
    with (
        orchestrator_process(workdir / "data", target, env=env, log_path=log_path) as base,
        httpx.Client(base_url=base, timeout=600.0) as client,
        open(payload, "rb") as fh,
    ):
        started = time.perf_counter()
        resp = client.post(
            "/uploads", files={"file": (payload.name, fh, "audio/wav")}, data={"collection": "bench"}
        )
        elapsed = time.perf_counter() - started
        if resp.status_code != 201:
            raise RuntimeError(f"upload answered {resp.status_code}: {resp.text[:500]}")
        body = resp.json()
        client.post(f"/jobs/{body['job_id']}/cancel")  # its ingest is not what is measured
    if body["size"] != size:
        raise RuntimeError(f"stored {body['size']} bytes of {size}")
    upload = size / _MB / elapsed
    return {
        "upload_bytes": size,
        "upload_s": round(elapsed, 3),
        "upload_mb_s": round(upload, 1),
        "disk_mb_s": round(disk, 1),
        "upload_vs_disk": round(upload / disk, 3),
        "write_size_bytes": BUFFER_BYTES,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--size-mb", type=int, default=200)
    parser.add_argument("--workdir", type=Path, default=None, help="default: a new temporary directory")
    parser.add_argument("--ml-url", default=None, help="point the orchestrator at this ML service")
    parser.add_argument("--json", action="store_true", help="print only the JSON line")
    args = parser.parse_args()
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="bench-upload-"))
    try:
        result = measure_upload(workdir, args.ml_url, args.size_mb)
    finally:
        if args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)
    if not args.json:
        for key, value in result.items():
            print(f"{key:>16}: {value}")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
