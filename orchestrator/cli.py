"""`archivist`: the same HTTP API for people at a terminal (serve, ingest, reanalyze, search, jobs, status,
control, people)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import httpx
import typer
from httpx_sse import connect_sse
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from orchestrator.sources.roots import is_s3_uri

app = typer.Typer(
    help="Archivist: ingest media directories and search them by meaning.", no_args_is_help=True
)
console = Console()

_ACTIVE = {"queued", "running", "paused"}


def _client(url: str | None) -> httpx.Client:
    base = url or os.environ.get("ARCHIVIST_URL", "http://127.0.0.1:8002")
    headers = {"x-api-key": key} if (key := os.environ.get("API_KEY")) else {}
    return httpx.Client(base_url=base, timeout=60.0, headers=headers)


def _check(resp: httpx.Response) -> dict[str, Any]:
    if resp.status_code >= 400:
        console.print(f"[red]error {resp.status_code}[/red]: {resp.text}")
        raise typer.Exit(2)
    body: dict[str, Any] = resp.json()
    return body


UrlOption = typer.Option(None, "--url", help="Orchestrator URL (default $ARCHIVIST_URL or :8002)")


@app.command()
def serve() -> None:
    """Run the orchestrator (settings from the environment / .env)."""
    from orchestrator.app import main

    main()


@app.command()
def worker() -> None:
    """Run a worker of the distributed mode (DATABASE_URL, QDRANT_URL): claims partitions of every job."""
    import asyncio

    from orchestrator.config import Settings
    from orchestrator.distributed.worker import serve_worker
    from orchestrator.logs import configure_logging

    settings = Settings()
    configure_logging(settings.log_level, settings.log_json)
    asyncio.run(serve_worker(settings))


@app.command()
def ingest(
    directory: str,
    collection: str | None = typer.Option(None, "--collection", "-c"),
    url: str | None = UrlOption,
    wait: bool = typer.Option(True, help="Follow progress until the job ends"),
) -> None:
    """Start a job for DIRECTORY (a folder, or s3://bucket/prefix) and follow it; exits non-zero if the job
    fails."""
    path = directory if is_s3_uri(directory) else str(Path(directory).expanduser().resolve())
    with _client(url) as client:
        body = {"path": path, "collection": collection}
        job = _check(client.post("/jobs", json=body))
        console.print(f"job [bold]{job['job_id']}[/bold] {job['state']}")
        if not wait:
            return
        status = _follow(client, job["job_id"])
    _print_status(status)
    if status["state"] != "completed":
        raise typer.Exit(1)


@app.command()
def upload(
    file: Path,
    collection: str | None = typer.Option(None, "--collection", "-c"),
    url: str | None = UrlOption,
    wait: bool = typer.Option(True, help="Follow its ingest until the job ends"),
) -> None:
    """Upload FILE (streamed, never read whole) and follow the job that ingests it; prints where it is
    kept and its checksums. Exits non-zero if the job fails."""
    with _client(url) as client, file.open("rb") as fh:
        form = {"collection": collection} if collection else {}
        body = _check(client.post("/uploads", files={"file": (file.name, fh)}, data=form))
        console.print(f"stored {escape(body['path'])} ({body['media_type']}, {body['size']} bytes)")
        console.print(f"blake3 {body['blake3']}\nsha256 {body['sha256']}")
        _run_job(client, body, wait)


@app.command("ingest-url")
def ingest_url(
    source: str,
    collection: str | None = typer.Option(None, "--collection", "-c"),
    url: str | None = UrlOption,
    wait: bool = typer.Option(True, help="Follow progress until the job ends"),
) -> None:
    """Download SOURCE (an http(s) URL) into the orchestrator's UPLOAD_DIR and ingest it; exits non-zero
    if the job fails (a refused address, too large, not media: its reason)."""
    with _client(url) as client:
        _run_job(client, _check(client.post("/jobs", json={"url": source, "collection": collection})), wait)


def _run_job(client: httpx.Client, job: dict[str, Any], wait: bool) -> None:
    console.print(f"job [bold]{job['job_id']}[/bold] {job['state']}")
    if not wait:
        return
    status = _follow(client, job["job_id"])
    _print_status(status)
    if status["state"] != "completed":
        raise typer.Exit(1)


@app.command()
def reanalyze(
    collection: str,
    tasks: str | None = typer.Option(
        None, "--tasks", help="Comma-separated tasks to run again whatever the cache holds (ocr,faces,...)"
    ),
    url: str | None = UrlOption,
    wait: bool = typer.Option(True, help="Follow progress until the job ends"),
) -> None:
    """Bring COLLECTION to the ML service's models now: re-analyse what changed (a new OCR model: OCR
    only), or build a new version beside the current one and switch to it (a new text model)."""
    with _client(url) as client:
        before = _check(client.get(f"/collections/{collection}"))
        stale = before.get("stale") or {}
        for change in stale.get("changes") or []:
            console.print(f"stale: {change}")
        body = {"tasks": [t.strip() for t in tasks.split(",") if t.strip()]} if tasks else None
        job = _check(client.post(f"/collections/{collection}/reanalyze", json=body))
        console.print(f"job [bold]{job['job_id']}[/bold] {job['state']}")
        if not wait:
            return
        status = _follow(client, job["job_id"])
        after = _check(client.get(f"/collections/{collection}"))
    _print_status(status)
    console.print(f"collection {collection}: version {after.get('version')}, {after.get('points')} points")
    if status["state"] != "completed":
        raise typer.Exit(1)


def _follow(client: httpx.Client, job_id: str) -> dict[str, Any]:
    """A live bar per stage, fed by the job's Server-Sent Events; returns the final status."""
    columns = (
        TextColumn("{task.description:>10}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TextColumn("{task.fields[note]}"),
        TimeElapsedColumn(),
    )
    stages = ("discovered", "hashed", "inferred", "upserted", "done")
    with Progress(*columns, console=console, transient=True) as bar:
        tasks = {name: bar.add_task(name, total=None, note="") for name in stages}
        with connect_sse(client, "GET", f"/jobs/{job_id}/events", timeout=None) as source:
            if source.response.status_code >= 400:
                source.response.read()
                _check(source.response)
            for sse in source.iter_sse():
                event: dict[str, Any] = sse.json()
                counters = event["counters"]
                total = counters["discovered"] if event.get("scan_complete") else None
                for name, task in tasks.items():
                    bar.update(task, completed=counters[name], total=total)
                note = event.get("waiting_for") or (
                    f"ETA {event['eta_s']:.0f}s" if event.get("eta_s") else ""
                )
                bar.update(tasks["done"], note=f"{event['state']} {note}".strip())
                if event["type"] == "end":
                    break
    return _check(client.get(f"/jobs/{job_id}"))


def _print_status(status: dict[str, Any]) -> None:
    table = Table(title=f"job {status['job_id']}: {status['state']}")
    table.add_column("counter")
    table.add_column("value", justify="right")
    for key, value in status["counters"].items():
        table.add_row(key, str(value))
    table.add_row("elapsed_s", str(status["elapsed_s"]))
    console.print(table)
    if status.get("error"):
        console.print(f"[red]{status['error']}[/red]")
    for err in status.get("errors", []):
        console.print(f"[yellow]failed[/yellow] {err['path']}: {err['reason']} ({err['stage']})")


@app.command()
def search(
    query: str,
    collection: str | None = typer.Option(None, "--collection", "-c"),
    limit: int = typer.Option(10, "--limit", "-n"),
    offset: int = typer.Option(0, "--offset", help="the previous page's next offset"),
    by_file: bool = typer.Option(False, "--by-file", help="the best moment per file (group_by=media)"),
    person: str | None = typer.Option(None, "--person", help="a person's name or id: seen or heard"),
    speaker: str | None = typer.Option(None, "--speaker", help="a person's name or id: speaks the words"),
    url: str | None = UrlOption,
) -> None:
    """Search by meaning and words; prints path, time, score and snippet (matched words bold) of each hit."""
    with _client(url) as client:
        params: dict[str, str | int] = {"q": query, "limit": limit, "offset": offset}
        for name, value in (("collection", collection), ("person", person), ("speaker", speaker)):
            if value:
                params[name] = value
        if by_file:
            params["group_by"] = "media"
        body = _check(client.get("/search", params=params))
    if body.get("no_good_match"):
        console.print("[yellow]no good match[/yellow]: nothing below clears the relevance floor")
    for rank, hit in enumerate(body["hits"], offset + 1):
        at = (
            f" @ {hit['start_s']:.1f}s"
            if hit.get("start_s") is not None and hit["media_type"] != "image"
            else ""
        )
        if hit.get("page") is not None:
            at = f" p. {hit['page']}"
        if hit.get("heading"):
            at += f" — {hit['heading']}"
        console.print(
            f"{rank:2d}. [bold]{hit['score']:.3f}[/bold] {hit['path']}{at}", markup=True, highlight=False
        )
        console.print(f"    {_marked(hit)}", highlight=False)
        for moment in hit.get("moments") or []:
            console.print(f"      also @ {moment['start_s']:.1f}s", highlight=False)
    if body.get("next_offset") is not None:
        console.print(f"more: --offset {body['next_offset']}")


def _marked(hit: dict[str, Any]) -> str:
    """The snippet with its matched words in bold (rich markup; the text itself escaped)."""
    text, out, at = str(hit.get("snippet") or ""), [], 0
    for start, end in hit.get("highlights") or []:
        out += [escape(text[at:start]), "[bold]", escape(text[start:end]), "[/bold]"]
        at = end
    return "".join([*out, escape(text[at:])])


@app.command()
def jobs(url: str | None = UrlOption) -> None:
    """List jobs, newest first."""
    with _client(url) as client:
        body = _check(client.get("/jobs"))
    table = Table("job", "state", "path", "collection", "upserted", "failed")
    for job in body["jobs"]:
        c = job["counters"]
        table.add_row(
            job["job_id"],
            job["state"],
            job["path"] or f"({job.get('kind', 'reanalyze')})",
            job["collection"],
            str(c["upserted"]),
            str(c["failed"]),
        )
    console.print(table)


@app.command()
def status(job_id: str, url: str | None = UrlOption) -> None:
    """Show one job's state and counters."""
    with _client(url) as client:
        _print_status(_check(client.get(f"/jobs/{job_id}")))


def _control(action: str, job_id: str, url: str | None) -> None:
    with _client(url) as client:
        body = _check(client.post(f"/jobs/{job_id}/{action}"))
    console.print(f"job {body['job_id']}: {body['state']}")


@app.command()
def pause(job_id: str, url: str | None = UrlOption) -> None:
    """Pause a running job (in-flight batches finish)."""
    _control("pause", job_id, url)


@app.command()
def resume(job_id: str, url: str | None = UrlOption) -> None:
    """Resume a paused job."""
    _control("resume", job_id, url)


@app.command()
def cancel(job_id: str, url: str | None = UrlOption) -> None:
    """Cancel a job; what is already stored stays consistent."""
    _control("cancel", job_id, url)


people_app = typer.Typer(help="People: list, name, merge, split, undo.", no_args_is_help=True)
app.add_typer(people_app, name="people")
CollectionOption = typer.Option(None, "--collection", "-c")


def _people_params(collection: str | None) -> dict[str, str]:
    return {"collection": collection} if collection else {}


def _print_person(p: dict[str, Any]) -> None:
    voices = ", ".join(
        f"{v['cluster']} ({v['linked_by'] or 'own'}"
        + (f" {v['confidence']:.0%})" if v.get("confidence") is not None else ")")
        for v in p["voices"]
    )
    name = f" [bold]{escape(p['name'])}[/bold]" if p.get("name") else ""
    console.print(
        f"{p['id']}{name} ({p['kind']}): {p['chunk_count']} chunks in {p['media_count']} files, "
        f"speaking {p['speaking_s']:.0f} s" + (f"; voices: {voices}" if voices else ""),
        highlight=False,
    )


@people_app.command("list")
def people_list(
    collection: str | None = CollectionOption,
    name: str | None = typer.Option(None, "--name", help="a part of the name"),
    limit: int = typer.Option(50, "--limit", "-n"),
    offset: int = typer.Option(0, "--offset"),
    url: str | None = UrlOption,
) -> None:
    """People seen or heard, named first."""
    params: dict[str, str | int] = {**_people_params(collection), "limit": limit, "offset": offset}
    if name:
        params["name"] = name
    with _client(url) as client:
        body = _check(client.get("/people", params=params))
    for p in body["people"]:
        _print_person(p)
    if body.get("next_offset") is not None:
        console.print(f"more: --offset {body['next_offset']}")


@people_app.command("name")
def people_name(
    person: str, name: str, collection: str | None = CollectionOption, url: str | None = UrlOption
) -> None:
    """Name PERSON (an empty NAME clears it)."""
    with _client(url) as client:
        _print_person(
            _check(client.patch(f"/people/{person}", params=_people_params(collection), json={"name": name}))
        )


@people_app.command("merge")
def people_merge(
    person: str, others: list[str], collection: str | None = CollectionOption, url: str | None = UrlOption
) -> None:
    """Merge OTHERS into PERSON."""
    with _client(url) as client:
        body = {"people": others}
        _print_person(
            _check(client.post(f"/people/{person}/merge", params=_people_params(collection), json=body))
        )


@people_app.command("split")
def people_split(
    person: str, clusters: list[str], collection: str | None = CollectionOption, url: str | None = UrlOption
) -> None:
    """Move CLUSTERS of PERSON to a new person."""
    with _client(url) as client:
        body = {"clusters": clusters}
        found = _check(client.post(f"/people/{person}/split", params=_people_params(collection), json=body))
    _print_person(found["person"])
    _print_person(found["new"])


@people_app.command("undo")
def people_undo(collection: str | None = CollectionOption, url: str | None = UrlOption) -> None:
    """Undo the last rename, merge or split."""
    with _client(url) as client:
        undone = _check(client.post("/people/undo", params=_people_params(collection)))["undone"]
    console.print(f"undone: {undone['action']} of {undone['person']}", highlight=False)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
