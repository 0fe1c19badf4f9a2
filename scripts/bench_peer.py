"""The ML service's text embeddings side by side with peer inference servers, on the same model and load.

    python scripts/bench_peer.py [--duration 15] [--runs 3] [--litserve] [--json]

Serves the packaged MiniLM directory (all-MiniLM-L6-v2, the files the tests use) on the CPU with
``--threads`` intra-op threads, offline, from: the Archivist ML service (sentence-transformers backend),
Infinity (``infinity-emb[server,torch]``, pinned in scripts/peer_servers.py, in ``.venv-peers/infinity``, made
here with pip and the project's CPU torch) and, with ``--litserve``, LitServe (scripts/peer_litserve.py). One
server runs at a time; each round starts every server in turn (the order alternates between rounds) and times
each row once:
- one text per request, one client (``single``), with the median latency;
- 128 texts per request, one client (``batched``);
- 16 and 64 concurrent clients, one text each (``concurrent16``, ``concurrent64``).
Texts are news-like sentences of 8-30 words (scripts/news_sentences.py), never repeated within a run. Every
client holds one keep-alive connection (scripts/peer_load.py); each row warms up, then runs ``--duration``
seconds; a row's figure is the median of the rounds. Before timing, each peer's vectors for the same 64 texts
must match the service's (cosine >= 0.999). For the service, /metrics splits each row's wall clock: the
model's passes, the time requests spent in the service, texts per pass; and the same 128-text batch is timed
in this process, sub-batched and as one padded pass.

The machine is shared: the load average is reported with the result. The last line printed is one JSON object:
``single_vs_infinity``, ``batched_vs_infinity``, ``concurrent16_vs_infinity``, ``concurrent64_vs_infinity``
(texts/s of the service ÷ Infinity's), the texts/s of each server and row, and the versions.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from scripts.news_sentences import sentences
from scripts.peer_load import Connection, RunResult, request_body, timed_run, vectors
from scripts.peer_servers import (
    INFINITY_VERSION,
    LITSERVE_VERSION,
    SERVED_NAME,
    Server,
    archivist,
    env_versions,
    infinity,
    litserve,
    prepare_infinity,
    prepare_litserve,
    tree_cpu_seconds,
)


@dataclass(frozen=True, slots=True)
class Row:
    name: str
    texts_per_request: int
    clients: int


ROWS = (Row("single", 1, 1), Row("batched", 128, 1), Row("concurrent16", 1, 16), Row("concurrent64", 1, 64))
MIN_COSINE = 0.999
CHECK_TEXTS = 64


def bodies_for(server: Server, row: Row, pool: list[str]) -> list[bytes]:
    """Request bodies cutting ``pool`` into ``row``'s requests (each text once per cycle)."""
    size = row.texts_per_request
    return [
        request_body(server.kind, pool[i : i + size], SERVED_NAME)
        for i in range(0, len(pool) - size + 1, size)
    ]


def check_vectors(server: Server, texts: list[str]) -> np.ndarray[Any, np.dtype[np.float32]]:
    """The server's unit vectors for ``texts`` (one request)."""
    connection = Connection(server.url)
    try:
        status, body = connection.post(server.path, request_body(server.kind, texts, SERVED_NAME))
    finally:
        connection.close()
    if status != 200:
        raise RuntimeError(f"{server.name}: HTTP {status}: {body[:300]!r}")
    matrix = np.asarray(vectors(server.kind, body), dtype=np.float32)
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    unit: np.ndarray[Any, np.dtype[np.float32]] = matrix / np.maximum(norms, 1e-12)
    return unit


_METRIC = re.compile(r"^(archivist_ml_\w+?)(?:\{([^}]*)\})? ([0-9.e+-]+)$", re.MULTILINE)


def service_counters(server: Server) -> dict[str, float]:
    """The text model's pass time and items, and the embed route's request time, from /metrics."""
    connection = Connection(server.url)
    try:
        connection._conn.request("GET", "/metrics")
        text = connection._conn.getresponse().read().decode()
    finally:
        connection.close()
    wanted = {
        ("archivist_ml_model_batch_seconds_sum", 'model="text"'): "model_s",
        ("archivist_ml_model_batch_seconds_count", 'model="text"'): "passes",
        ("archivist_ml_model_batch_items_sum", 'model="text"'): "items",
        ("archivist_ml_http_request_seconds_sum", 'path="/v1/embed/text",status="200"'): "request_s",
    }
    counters = dict.fromkeys(wanted.values(), 0.0)
    for name, labels, value in _METRIC.findall(text):
        key = wanted.get((name, labels))
        if key is not None:
            counters[key] = float(value)
    return counters


def time_split(
    before: dict[str, float], after: dict[str, float], result: RunResult, clients: int
) -> dict[str, Any]:
    """Where a timed run's wall clock went in the service: the share the model computed
    (``model_busy_share``), the share a request spent in the service (one client: the rest is transport and
    the load generator), texts per model pass, and the model's own texts/s while it computed."""
    delta = {key: after[key] - before[key] for key in after}
    return {
        "model_busy_share": round(delta["model_s"] / result.elapsed_s, 3),
        "in_service_share": round(delta["request_s"] / result.elapsed_s, 3) if clients == 1 else None,
        "items_per_pass": round(delta["items"] / delta["passes"], 1) if delta["passes"] else None,
        "model_texts_per_s": round(delta["items"] / delta["model_s"], 1) if delta["model_s"] else None,
    }


def run_row(
    server: Server, row: Row, pool: list[str], duration_s: float, warmup_s: float
) -> tuple[RunResult, dict[str, Any]]:
    """One timed run of ``row`` against ``server``, with the server's CPU seconds per text answered (its
    process tree: steadier than wall-clock time while others load the machine); for the service, also where
    its time went."""
    counters: list[dict[str, float]] = []
    cpu: list[float] = []

    def snapshot() -> None:
        cpu.append(tree_cpu_seconds(server.pid))
        if server.kind == "archivist":
            counters.append(service_counters(server))

    result = timed_run(
        server.url,
        server.path,
        bodies_for(server, row, pool),
        row.texts_per_request,
        row.clients,
        duration_s,
        warmup_s,
        after_warmup=snapshot,
    )
    texts = result.texts_per_s * result.elapsed_s
    extra: dict[str, Any] = {"texts_per_cpu_s": texts / max(tree_cpu_seconds(server.pid) - cpu[0], 1e-9)}
    if counters:
        extra["split"] = time_split(counters[0], service_counters(server), result, row.clients)
    return result, extra


def in_process(model_dir: Path, threads: int, texts: list[str], rounds: int) -> dict[str, Any]:
    """The service's text model in this process (no server running) on 128 texts: as it runs now
    (``sub_batched``: length-sorted passes of its compute batch, packed tokens when ``packed_tokens``) and as
    it ran before (``one_padded_pass``: sentence-transformers' encode, one pass), texts per second and per
    CPU-second (steadier while others load the machine)."""
    from ml_service.models.text import TextEmbedder

    model = TextEmbedder(model_dir, device="cpu", threads=threads)
    model.load()
    packed_runtime = model._packed
    sizes = {"sub_batched": model.compute_batch, "one_padded_pass": len(texts)}
    wall: dict[str, list[float]] = {name: [] for name in sizes}
    cpu: dict[str, list[float]] = {name: [] for name in sizes}
    for round_no in range(rounds + 1):  # round 0 warms up
        for name, size in sizes.items():
            model.configured_compute_batch = size
            model._packed = packed_runtime if name == "sub_batched" else None
            started, used = time.perf_counter(), time.process_time()
            model.predict(texts)
            if round_no:
                wall[name].append(len(texts) / (time.perf_counter() - started))
                cpu[name].append(len(texts) / (time.process_time() - used))
    model._packed = packed_runtime
    model.unload()
    return {
        "compute_batch": sizes["sub_batched"],
        "packed_tokens": packed_runtime is not None,
        **{f"{name}_per_s": round(statistics.median(v), 1) for name, v in wall.items()},
        **{f"{name}_per_cpu_s": round(statistics.median(v), 1) for name, v in cpu.items()},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=15.0, help="seconds timed per row and round")
    parser.add_argument("--warmup", type=float, default=3.0, help="seconds of load before each timed run")
    parser.add_argument("--runs", type=int, default=3, help="rounds (medians over them)")
    parser.add_argument("--threads", type=int, default=2, help="intra-op threads of every server")
    parser.add_argument("--litserve", action="store_true", help="LitServe too (its own environment)")
    parser.add_argument("--rows", default=",".join(r.name for r in ROWS), help="which rows to time")
    parser.add_argument("--json", action="store_true", help="print only the JSON line")
    args = parser.parse_args()
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch loads here (as in the service)
    from ml_service.config import packaged_text_model

    model_dir = packaged_text_model()
    rows = [r for r in ROWS if r.name in args.rows.split(",")]
    started = time.perf_counter()
    load_before = os.getloadavg()
    infinity_env = prepare_infinity()
    litserve_env = prepare_litserve() if args.litserve else None
    logs = Path(tempfile.mkdtemp(prefix="bench-peer-"))

    def starters() -> dict[str, Callable[[], AbstractContextManager[Server]]]:
        found: dict[str, Callable[[], AbstractContextManager[Server]]] = {
            "archivist": lambda: archivist(model_dir, args.threads, logs / "archivist.log"),
            "infinity": lambda: infinity(infinity_env, model_dir, args.threads, logs / "infinity.log"),
        }
        if litserve_env is not None:
            found["litserve"] = lambda: litserve(litserve_env, model_dir, args.threads, logs / "litserve.log")
        return found

    servers = starters()
    pool = sentences(4096, seed=7)
    results, extras, reference = measure_rounds(servers, rows, pool, args)
    out = summarise(results, extras, rows, list(servers))
    cosines = {
        name: round(float(np.min(np.sum(reference["archivist"] * vecs, axis=1))), 5)
        for name, vecs in reference.items()
        if name != "archivist"
    }
    inproc = in_process(model_dir, args.threads, pool[:128], rounds=2 * args.runs)
    out["archivist_in_process_batched"] = inproc
    out["min_cosine_vs_archivist"] = cosines
    out["vectors_agree"] = all(c >= MIN_COSINE for c in cosines.values())
    out["versions"] = {
        "infinity": env_versions(
            infinity_env, ("infinity-emb", "torch", "sentence-transformers", "transformers")
        ),
        "archivist": _project_versions(),
        **(
            {"litserve": env_versions(litserve_env, ("litserve", "torch", "sentence-transformers"))}
            if litserve_env is not None
            else {}
        ),
    }
    out["pinned"] = {"infinity-emb": INFINITY_VERSION, "litserve": LITSERVE_VERSION}
    out["model"] = model_dir.parent.name
    out["threads"] = args.threads
    out["runs"] = args.runs
    out["duration_s"] = args.duration
    out["cpu_count"] = os.cpu_count()
    out["load_average_before"] = round(load_before[0], 2)
    out["load_average_after"] = round(os.getloadavg()[0], 2)
    out["total_s"] = round(time.perf_counter() - started, 1)
    out["logs"] = str(logs)
    if not args.json:
        print_table(out, rows, list(servers))
    print(json.dumps(out))
    if not out["vectors_agree"]:
        raise SystemExit(f"vectors differ: {cosines} (need cosine >= {MIN_COSINE})")


Results = dict[str, dict[str, list[RunResult]]]
Extras = dict[str, dict[str, list[dict[str, Any]]]]
Vectors = np.ndarray[Any, np.dtype[np.float32]]


def measure_rounds(
    servers: dict[str, Callable[[], AbstractContextManager[Server]]],
    rows: list[Row],
    pool: list[str],
    args: argparse.Namespace,
) -> tuple[Results, Extras, dict[str, Vectors]]:
    """Every round starts each server in turn (the order alternating) and times each row once; each server's
    vectors for the check texts are taken at its first start."""
    check_texts = sentences(CHECK_TEXTS, seed=99)
    results: Results = {s: {r.name: [] for r in rows} for s in servers}
    extras: Extras = {s: {r.name: [] for r in rows} for s in servers}
    reference: dict[str, Vectors] = {}
    for round_no in range(args.runs):
        order = list(servers) if round_no % 2 == 0 else list(reversed(servers))
        for name in order:
            with servers[name]() as server:
                if name not in reference:
                    reference[name] = check_vectors(server, check_texts)
                for row in rows:
                    result, extra = run_row(server, row, pool, args.duration, args.warmup)
                    results[name][row.name].append(result)
                    extras[name][row.name].append(extra)
                    if not args.json:
                        print(
                            f"round {round_no + 1} {name:9} {row.name:12} {result.texts_per_s:7.1f} texts/s "
                            f"p50 {result.p50_ms:6.1f} ms, {extra['texts_per_cpu_s']:6.1f} texts per CPU-s",
                            flush=True,
                        )
    return results, extras, reference


def summarise(results: Results, extras: Extras, rows: list[Row], servers: list[str]) -> dict[str, Any]:
    """Medians over the rounds: texts/s per server and row, the ratios to Infinity (wall clock, and per
    server CPU second), the single row's latency, and the service's time split."""
    out: dict[str, Any] = {}
    for row in rows:
        for name in servers:
            out[f"{name}_{row.name}_per_s"] = round(
                statistics.median(r.texts_per_s for r in results[name][row.name]), 1
            )
            out[f"{name}_{row.name}_per_cpu_s"] = round(
                statistics.median(e["texts_per_cpu_s"] for e in extras[name][row.name]), 1
            )
        if "infinity" in servers:
            for unit in ("per_s", "per_cpu_s"):
                ratio = out[f"archivist_{row.name}_{unit}"] / out[f"infinity_{row.name}_{unit}"]
                key = f"{row.name}_vs_infinity" if unit == "per_s" else f"{row.name}_cpu_vs_infinity"
                out[key] = round(ratio, 2)
    for name in servers:
        if "single" in results[name]:
            out[f"{name}_single_p50_ms"] = round(
                statistics.median(r.p50_ms for r in results[name]["single"]), 1
            )
    out["archivist_time_split"] = {
        row: {key: _median([e["split"][key] for e in found]) for key in found[0]["split"]}
        for row, found in extras["archivist"].items()
        if found
    }
    return out


def _median(values: list[Any]) -> Any:
    present = [v for v in values if v is not None]
    return round(statistics.median(present), 3) if present else None


def _project_versions() -> dict[str, str]:
    import importlib.metadata as metadata

    return {p: metadata.version(p) for p in ("torch", "sentence-transformers", "transformers")}


def print_table(out: dict[str, Any], rows: list[Row], servers: list[str]) -> None:
    print("| texts/s | " + " | ".join(servers) + " | archivist ÷ infinity | per server CPU-second |")
    print("|---" * (len(servers) + 3) + "|")
    for row in rows:
        cells = [f"{out[f'{s}_{row.name}_per_s']}" for s in servers]
        if row.name == "single":
            cells = [f"{c} (p50 {out[f'{s}_single_p50_ms']} ms)" for c, s in zip(cells, servers, strict=True)]
        ratios = f"{out.get(f'{row.name}_vs_infinity')} | {out.get(f'{row.name}_cpu_vs_infinity')}"
        print(f"| {row.name} | " + " | ".join(cells) + f" | {ratios} |")


if __name__ == "__main__":
    main()
