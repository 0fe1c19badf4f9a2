"""The main job, end to end: sample media -> ML service + orchestrator (embedded Qdrant Edge) -> ingest
through POST /jobs with live progress -> searches -> re-ingest served from the cache -> stop.

    python scripts/demo.py [--keep-data]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from scripts.make_samples import make_sample_tree
from scripts.ml_process import REPO, ServiceFailed, ml_service, wait_ready
from scripts.sample_documents import text_pdf
from scripts.talk_video import make_talk_video

ML_PORT, ORCH_PORT = 8001, 8002
QUERIES = [
    "breaking news about a flood",
    "noticias de una inundación",  # Spanish: the same English headline (multilingual text model)
    "invoice total due",
    "a cat",
    "rocket launch into space",
    "motorbike",
    "a person in a space suit",
    "firefighters repaired the lighthouse",  # said in the news video: the hit says when
    "who rescued the hikers from the glacier",
    "when does the ferry to the island leave",  # page 2 of a PDF report: the hit names the page
]


def write_documents(media: Path) -> list[str]:
    """A two-page PDF report and a Markdown note: documents are searched with the media."""
    folder = media / "documents"
    folder.mkdir(parents=True, exist_ok=True)
    report = text_pdf(
        [
            ["Harbour report", "Fishermen landed cod and hake; the fish market opened at six."],
            ["Island ferry", "The ferry to the island leaves at nine every morning from pier two."],
        ],
        title="Harbour report",
    )
    (folder / "harbour_report.pdf").write_bytes(report)
    (folder / "field_notes.md").write_text("# Field notes\n\nBees visited the almond orchard in February.\n")
    return ["documents/harbour_report.pdf", "documents/field_notes.md"]


def progress_line(status: dict[str, Any]) -> str:
    c = status["counters"]
    return (
        f"  {status['state']:<9} discovered {c['discovered']:>3}  hashed {c['hashed']:>3}  "
        f"unchanged {c['unchanged']:>3}  inferred {c['inferred']:>3}  upserted {c['upserted']:>3}  "
        f"duplicates {c['duplicates']}  failed {c['failed']}  skipped {c['skipped']}  "
        f"ML requests {c['ml_requests']}  ({status['elapsed_s']:.1f}s)"
    )


def ingest(client: httpx.Client, media: Path) -> dict[str, Any]:
    job = client.post("/jobs", json={"path": str(media), "collection": "demo"})
    job.raise_for_status()
    job_id = job.json()["job_id"]
    print(f"  job {job_id} accepted -> {job.json()['status_url']}")
    last = ""
    while True:
        status: dict[str, Any] = client.get(f"/jobs/{job_id}").json()
        line = progress_line(status)
        if line != last:
            print(line, flush=True)
            last = line
        if status["state"] not in ("queued", "running", "paused"):
            return status
        time.sleep(0.5)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--keep-data", action="store_true", help="keep .demo/ (data dir) afterwards")
    args = parser.parse_args()
    work = REPO / ".demo"
    shutil.rmtree(work, ignore_errors=True)
    media = work / "media"
    print(f"1. Sample media in {media}")
    manifest = make_sample_tree(media)
    print(
        f"   {manifest.good_files} good files (incl. {len(manifest.duplicates)} duplicates), "
        f"{len(manifest.bad)} broken, {len(manifest.not_media)} not media"
    )
    talk = make_talk_video(media / "tv/evening_news.mp4", n_phrases=8)
    print(f"   + a {talk.duration_s:.0f} s news video: two presenters, {len(talk.phrases)} spoken sentences")
    print(f"   + documents: {', '.join(write_documents(media))}")

    print(f"2. Starting the ML service on :{ML_PORT} (loading the default models) ...")
    logs = work / "logs"
    logs.mkdir(parents=True)
    with ml_service(port=ML_PORT, log_path=logs / "ml_service.log") as ml_url:
        env = {
            **os.environ,
            "DATA_DIR": str(work / "data"),
            "ALLOWED_ROOTS": str(media),
            "ML_SERVICE_URL": ml_url,
            "PORT": str(ORCH_PORT),
            "LOG_LEVEL": "INFO",
        }
        print(f"   ready at {ml_url}; starting the orchestrator on :{ORCH_PORT} (embedded Qdrant Edge)")
        orch_log = open(logs / "orchestrator.log", "ab")
        orch = subprocess.Popen(
            [sys.executable, "-m", "orchestrator"],
            cwd=REPO,
            env=env,
            stdout=orch_log,
            stderr=subprocess.STDOUT,
        )
        base = f"http://127.0.0.1:{ORCH_PORT}"
        try:
            wait_ready(base, orch, 60.0, path="/health", log_path=logs / "orchestrator.log")
            with httpx.Client(base_url=base, timeout=60.0) as client:
                print("3. Ingesting through POST /jobs")
                first = ingest(client, media)
                for err in first["errors"]:
                    print(f"   recorded failure: {Path(err['path']).relative_to(media)}: {err['reason']}")
                print("4. Searching")
                for query in QUERIES:
                    hits = client.get("/search", params={"q": query, "collection": "demo", "limit": 3}).json()
                    print(f'   "{query}"')
                    for hit in hits["hits"]:
                        rel = Path(hit["path"]).relative_to(media)
                        at = f" @ {hit['start_s']:.1f}s" if hit["start_s"] is not None else ""
                        at = f" page {hit['page']}" if hit.get("page") is not None else at
                        who = hit.get("names") or hit["people"]
                        people = f"  people: {', '.join(who)}" if who else ""
                        print(f"     {hit['score']:.3f}  {rel}{at}  | {hit['snippet'][:90]}{people}")
                people = client.get("/people", params={"collection": "demo"}).json()["people"]
                print(f"   people: {len(people)} (a face, a voice, or both when a voice is linked to a face)")
                for p in people:
                    voices = ", ".join(
                        f"{v['cluster']} linked {v['linked_by']} ({(v['confidence'] or 0):.0%})"
                        for v in p["voices"]
                    )
                    print(
                        f"     {p['id']} ({p['kind']}): {p['chunk_count']} chunks, {p['media_count']} files, "
                        f"speaking {p['speaking_s']:.0f} s{'; voices: ' + voices if voices else ''}"
                    )
                # Name a presenter, then ask where that person says something.
                both = [p for p in people if p["kind"] == "both"]
                if both:
                    named = client.patch(
                        f"/people/{both[0]['id']}",
                        params={"collection": "demo"},
                        json={"name": "Presenter One"},
                    ).json()
                    print(f'   named {named["id"]} "{named["name"]}"')
                    params: dict[str, str | int] = {"q": "weather", "collection": "demo", "limit": 3}
                    params["speaker"] = "Presenter One"
                    for hit in client.get("/search", params=params).json()["hits"]:
                        rel = Path(hit["path"]).relative_to(media)
                        print(
                            f"     speaker=Presenter One: {rel} @ {hit['start_s']:.1f}s"
                            f" | {hit['snippet'][:70]}"
                        )
                print("5. Re-ingesting the unchanged folder (served by the stat index: no ML call, no write)")
                again = ingest(client, media)
                c = again["counters"]
                print(
                    f"   unchanged {c['unchanged']}, ML requests {c['ml_requests']}, "
                    f"upsert requests {c['upsert_requests']}"
                )
                ok = first["state"] == again["state"] == "completed" and c["ml_requests"] == 0
        finally:
            orch.terminate()
            orch.wait(timeout=30)
            orch_log.close()
    print(f"6. Services stopped. Logs (JSON lines) were in {logs}.")
    if not args.keep_data:
        shutil.rmtree(work, ignore_errors=True)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    try:
        main()
    except ServiceFailed as exc:  # a service could not start: say why, with its log's last lines
        print(f"demo: {exc}", file=sys.stderr)
        sys.exit(1)
