"""People measured end to end (issue 15): who is who, who is linked to whom, who speaks how long.

    python scripts/eval_people.py [--quick] [--seed 0] [--keep DIR]

1. Diarization: ``scripts/eval_diarization.py``'s ``evaluate`` over its real-speech conversation set
   (``scripts/speech_corpus.py``) with the ML service's configured default backend, as the pipeline hears a
   file (CHUNK_SECONDS pieces, each with SPEAKER_CONTEXT_SECONDS of the conversation either side, turns kept
   for the piece): ``der`` (pyannote.metrics, NIST collar), ``speaker_count_exact`` (per piece) and
   ``same_sex_separated``; the same on whole conversations: ``der_whole``, ``speaker_count_whole``.
   ``--quick``: its QUICK conversations only.
2. People: a set of videos with known ground truth (tests/support/people_media.py) is ingested by the real
   ML service and orchestrator (subprocesses, a temporary DATA_DIR, embedded Qdrant Edge) and read back
   through the HTTP API (GET /people, /people/{id}, /media/{id}). Six real people:

   | person     | face (real photograph)          | voice (real speech)                          |
   |------------|---------------------------------|----------------------------------------------|
   | eileen     | the astronaut (scikit-image)    | "Diane", speaker90 of pyannote.audio's sample |
   | grace      | Grace Hopper (matplotlib)       | "Sheila", speaker91 of the same call          |
   | cameraman  | the cameraman (scikit-image)    | never heard                                   |
   | reader     | never seen                      | a LibriVox reader (pocketsphinx-testdata)     |
   | cards      | never seen                      | pocketsphinx-testdata's "cards" speaker       |
   | spelling   | never seen                      | klettres-data's en_GB reader (letters)        |

   The reader also narrates over a shot of the cameraman for a fifth of the reading (a voice-over over a
   silent face: no link).
   Metrics: ``people_true`` (6), ``people_found`` (persons GET /people lists with an appearance in the set),
   ``people_matched`` (true people whose clusters all lie in one listed person holding nobody else),
   ``link_precision`` / ``link_recall`` (automatic voice-face links against the true pairs; a cluster is who
   most of it is: faces by keyframe, voices by seconds of overlap with the reference turns),
   ``speaking_time_accuracy`` (per speaking person, 1 - |found - true| / true speaking seconds, at least 0,
   averaged; found: ``speaking_s`` of the listed person holding most of that person's speech).

Prints a report, then (last line) one JSON object with these and the timings. Targets: der <= 0.20,
link_precision >= 0.9, link_recall >= 0.8. Decoding runs in spawned processes: keep the ``__main__`` guard.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from scripts.ml_process import REPO, free_port, ml_service, stop_process, wait_ready
from tests.support.people_media import (
    DIANE,
    SHEILA,
    Piece,
    Scene,
    VideoTruth,
    Votes,
    conversation_pieces,
    corpus_piece,
    interview_scenes,
    write_people_video,
)

COLLECTION = "eval_people"
# Who each face and voice of the set is (the ground truth).
IDENTITY: dict[str, str] = {
    "astronaut": "eileen",
    DIANE: "eileen",
    "hopper": "grace",
    SHEILA: "grace",
    "cameraman": "cameraman",
    "librivox": "reader",
    "cards": "cards",
    "klettres-en_GB": "spelling",
}
JOB_TIMEOUT_S = 1800.0


@dataclass(frozen=True, slots=True)
class PeopleSet:
    root: Path
    videos: tuple[VideoTruth, ...]

    def by_path(self) -> dict[str, VideoTruth]:
        return {str(v.path): v for v in self.videos}


def build_set(root: Path) -> PeopleSet:
    """The videos (see the module docstring), written under `root`."""
    pieces = conversation_pieces()
    d, s = pieces[DIANE], pieces[SHEILA]
    reader = corpus_piece("librivox", 21.0)
    cards = corpus_piece("cards", 8.0)
    spelling = corpus_piece("klettres-en_GB", 10.0)
    # The reader is heard over the cameraman's face for a fifth of the reading (a narrator over b-roll).
    fifth = len(reader.samples) // 5
    reader_parts = [
        Piece(reader.speaker, reader.samples[a * fifth : b * fifth if b < 5 else None], "")
        for a, b in ((0, 2), (2, 3), (3, 5))
    ]
    videos = (
        write_people_video(
            root / "interview.mp4",
            interview_scenes(d, s),
        ),
        write_people_video(
            root / "call.mp4",
            [
                Scene(("hopper",), (s[3],), "THE CALL"),
                Scene(("astronaut",), (d[2],), "DIANE"),
                Scene(("hopper",), (s[2], s[0]), "SHEILA"),
                Scene(("astronaut",), (d[3], d[1]), "AGAIN"),
                Scene(("astronaut", "hopper"), (s[1], s[2]), "TOGETHER"),
            ],
        ),
        write_people_video(
            root / "reading.mp4",
            [
                Scene((), (reader_parts[0],), "CHAPTER ONE"),
                Scene(("cameraman",), (reader_parts[1],), ""),
                Scene((), (reader_parts[2],), "THE END"),
            ],
        ),
        write_people_video(
            root / "cameraman.mp4",
            [Scene(("cameraman",), (), "ON SET", silent_s=6.0), Scene((), (), "", silent_s=3.0)],
        ),
        write_people_video(root / "cards.mp4", [Scene((), (cards,), "THE CARDS")]),
        write_people_video(root / "letters.mp4", [Scene((), (spelling,), "A B C")]),
    )
    return PeopleSet(root, videos)


# ------------------------------------------------------------------------------------------------ scoring


@dataclass(slots=True)
class PeopleScore:
    people_true: int
    people_found: int
    people_matched: int
    link_precision: float | None  # None: no link was made
    link_recall: float
    speaking_time_accuracy: float
    links: list[dict[str, Any]] = field(default_factory=list)
    speaking: dict[str, dict[str, float]] = field(default_factory=dict)


def _members(person: Mapping[str, Any]) -> list[str]:
    return [c["cluster"] for c in (*person["faces"], *person["voices"])]


def score_people(
    people: Sequence[Mapping[str, Any]],
    chunks: Sequence[Mapping[str, Any]],
    truths: Mapping[str, VideoTruth],
    identity: Mapping[str, str] = IDENTITY,
) -> PeopleScore:
    """Score what GET /people lists against the truth. `chunks`: chunk payloads (with `path`) of the set."""
    votes = Votes()
    for chunk in chunks:
        truth = truths.get(str(chunk.get("path")))
        if truth is not None:
            votes.add(chunk, truth)
    face_owner, voice_owner = votes.owners()
    owner = {**face_owner, **voice_owner}

    def who(cluster: str) -> str | None:
        found = owner.get(cluster)
        return identity.get(found) if found is not None else None

    speakers, faces_seen = _speakers(truths), _faces(truths)
    true_people = {identity[w] for w in speakers | faces_seen}
    true_pairs = {(v, f) for v in speakers for f in faces_seen if identity[v] == identity[f]}
    links: list[dict[str, Any]] = []
    recalled: set[tuple[str, str]] = set()
    for person in people:
        faces = [f["cluster"] for f in person["faces"]]
        for voice in person["voices"]:
            if voice.get("linked_by") != "auto":
                continue
            for face in faces:
                right = who(voice["cluster"]) is not None and who(voice["cluster"]) == who(face)
                links.append(
                    {
                        "voice": voice["cluster"],
                        "face": face,
                        "voice_is": voice_owner.get(voice["cluster"]),
                        "face_is": face_owner.get(face),
                        "confidence": voice.get("confidence"),
                        "right": right,
                    }
                )
                if right:
                    recalled.add((voice_owner[voice["cluster"]], face_owner[face]))
    right_links = sum(1 for link in links if link["right"])
    precision = right_links / len(links) if links else None
    recall = len(recalled & true_pairs) / len(true_pairs) if true_pairs else 1.0

    listed = [p for p in people if p.get("media_count", 0) >= 1]
    holder = {c: p["id"] for p in listed for c in _members(p)}
    matched = 0
    for name in sorted(true_people):
        mine = {c for c, o in owner.items() if identity.get(o) == name}
        holders = {holder.get(c) for c in mine}
        if len(holders) != 1 or None in holders:
            continue
        [pid] = holders
        others = {who(c) for p in listed if p["id"] == pid for c in _members(p)}
        matched += others == {name}

    speaking: dict[str, dict[str, float]] = {}
    by_id = {p["id"]: p for p in listed}
    for speaker in sorted(speakers):
        true_s = sum(t.speaking_s(speaker) for t in truths.values())
        main = votes.main_voice(speaker)
        pid = holder.get(main) if main is not None else None
        found_s = float(by_id[pid]["speaking_s"]) if pid is not None else 0.0
        accuracy = max(0.0, 1.0 - abs(found_s - true_s) / true_s) if true_s > 0 else 0.0
        speaking[identity.get(speaker, speaker)] = {
            "true_s": round(true_s, 2),
            "found_s": round(found_s, 2),
            "accuracy": round(accuracy, 3),
        }
    accuracy = sum(s["accuracy"] for s in speaking.values()) / len(speaking) if speaking else 0.0
    return PeopleScore(
        people_true=len(true_people),
        people_found=len(listed),
        people_matched=matched,
        link_precision=None if precision is None else round(precision, 3),
        link_recall=round(recall, 3),
        speaking_time_accuracy=round(accuracy, 3),
        links=links,
        speaking=speaking,
    )


def _speakers(truths: Mapping[str, VideoTruth]) -> set[str]:
    return {s.who for t in truths.values() for s in t.heard}


def _faces(truths: Mapping[str, VideoTruth]) -> set[str]:
    return {s.who for t in truths.values() for s in t.seen}


# ------------------------------------------------------------------------------------------------ running


@contextmanager
def orchestrator(data_dir: Path, media: Path, ml_url: str, log_path: Path) -> Iterator[httpx.Client]:
    """The orchestrator as a subprocess on a free loopback port, and a client of it."""
    port = free_port()
    env = {
        **os.environ,
        "DATA_DIR": str(data_dir),
        "ALLOWED_ROOTS": str(media),
        "ML_SERVICE_URL": ml_url,
        "HOST": "127.0.0.1",
        "PORT": str(port),
        "LOG_LEVEL": "WARNING",
    }
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "orchestrator"], cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT
        )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_ready(base, proc, 120.0, path="/health", log_path=log_path)
        with httpx.Client(base_url=base, timeout=120.0) as client:
            yield client
    finally:
        stop_process(proc)


def ingest(client: httpx.Client, path: Path) -> dict[str, Any]:
    """Run one ingest job to its end (polled, bounded)."""
    created = client.post("/jobs", json={"path": str(path), "collection": COLLECTION})
    created.raise_for_status()
    job_id = created.json()["job_id"]
    deadline = time.monotonic() + JOB_TIMEOUT_S
    while True:
        status: dict[str, Any] = client.get(f"/jobs/{job_id}").json()
        if status["state"] not in ("queued", "running", "paused"):
            if status["state"] != "completed":
                raise RuntimeError(f"ingest {status['state']}: {status}")
            return status
        if time.monotonic() > deadline:
            raise TimeoutError(f"ingest still {status['state']} after {JOB_TIMEOUT_S:.0f} s")
        time.sleep(0.5)  # polling the job's state, bounded by the deadline


def read_people(client: httpx.Client) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Every person GET /people lists, and every chunk any of them appears in (GET /media/{id})."""
    params: dict[str, Any] = {"collection": COLLECTION, "limit": 500, "offset": 0}
    people: list[dict[str, Any]] = []
    while True:
        page = client.get("/people", params=params)
        page.raise_for_status()
        body = page.json()
        people += body["people"]
        if body["next_offset"] is None:
            break
        params["offset"] = body["next_offset"]
    chunk_ids: set[str] = set()
    for person in people:
        found = client.get(f"/people/{person['id']}", params={"collection": COLLECTION})
        found.raise_for_status()
        chunk_ids |= {r["chunk_id"] for a in found.json()["appearances"] for r in a["ranges"]}
    chunks = []
    for chunk_id in sorted(chunk_ids):
        got = client.get(f"/media/{chunk_id}", params={"collection": COLLECTION})
        got.raise_for_status()
        chunks.append(got.json())
    return people, chunks


def diarization(seed: int, quick: bool) -> dict[str, Any]:
    """DER and speaker-count accuracy of the configured default backend (scripts/eval_diarization.py), as
    the pipeline hears a file: CHUNK_SECONDS pieces, each with SPEAKER_CONTEXT_SECONDS either side
    (``der``, ``speaker_count_exact``: per piece); and on whole conversations (``der_whole``,
    ``speaker_count_whole``)."""
    from ml_service.config import MLSettings
    from orchestrator.config import Settings
    from scripts.eval_diarization import BACKENDS, as_pipeline, evaluate
    from scripts.speech_corpus import QUICK, conversations, speakers

    settings = MLSettings()
    if settings.pyannote_pipeline_path is not None or settings.speaker_backend not in BACKENDS:
        raise SystemExit(
            "eval_diarization measures the built-in backends only (ML_PYANNOTE_PIPELINE_PATH set)"
        )
    pipeline = Settings()
    convs = conversations(seed, speakers(), names=QUICK if quick else None)
    whole = evaluate(settings.speaker_backend, convs)
    pieces, contexts = as_pipeline(convs, pipeline.chunk_seconds, pipeline.speaker_context_seconds)
    heard = evaluate(settings.speaker_backend, pieces, contexts=contexts)
    return {
        "backend": settings.speaker_backend,
        "conversations": len(convs),
        "pieces": len(pieces),
        "chunk_seconds": pipeline.chunk_seconds,
        "context_seconds": pipeline.speaker_context_seconds,
        "der": heard["der"],
        "speaker_count_exact": heard["speaker_count_exact"],
        "same_sex_separated": heard["same_sex_separated"],
        "der_whole": whole["der"],
        "speaker_count_whole": whole["speaker_count_exact"],
    }


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--seed", type=int, default=0, help="the conversation set's seed (report: 0)")
    parser.add_argument("--quick", action="store_true", help="the diarization part on its QUICK set only")
    parser.add_argument("--keep", type=Path, help="work here and keep it (default: a temporary folder)")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    work = args.keep or Path(tempfile.mkdtemp(prefix="eval-people-"))
    work.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}
    try:
        t = time.perf_counter()
        people_set = build_set(work / "media")
        timings["build_s"] = time.perf_counter() - t
        print(f"{len(people_set.videos)} videos in {people_set.root} ({timings['build_s']:.1f} s)")
        t = time.perf_counter()
        with ml_service(log_path=work / "ml_service.log", timeout_s=600.0) as ml_url:
            with orchestrator(work / "data", people_set.root, ml_url, work / "orchestrator.log") as client:
                timings["start_s"] = time.perf_counter() - t
                t = time.perf_counter()
                job = ingest(client, people_set.root)
                timings["ingest_s"] = time.perf_counter() - t
                print(f"ingested: {job['counters']} ({timings['ingest_s']:.1f} s)")
                people, chunks = read_people(client)
        scored = score_people(people, chunks, people_set.by_path())
        print_people(scored, people)
        t = time.perf_counter()
        diar = diarization(args.seed, args.quick)
        timings["diarization_s"] = time.perf_counter() - t
        pieces = f"{diar['pieces']} pieces of {diar['chunk_seconds']:g} s"
        print(
            f"diarization ({diar['backend']}, {diar['conversations']} conversations as the pipeline hears "
            f"them: {pieces} with {diar['context_seconds']:g} s of context): DER {diar['der']:.3f}, "
            f"speaker count exact {diar['speaker_count_exact']:.2f}, "
            f"same sex apart {diar['same_sex_separated']}; whole conversations: DER {diar['der_whole']:.3f}, "
            f"speaker count exact {diar['speaker_count_whole']:.2f}"
        )
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)
    timings["total_s"] = time.perf_counter() - started
    summary = {
        "der": diar["der"],
        "speaker_count_exact": diar["speaker_count_exact"],
        "same_sex_separated": diar["same_sex_separated"],
        "der_whole": diar["der_whole"],
        "speaker_count_whole": diar["speaker_count_whole"],
        "context_seconds": diar["context_seconds"],
        "diarization_backend": diar["backend"],
        "conversations": diar["conversations"],
        "people_true": scored.people_true,
        "people_found": scored.people_found,
        "people_matched": scored.people_matched,
        "link_precision": scored.link_precision,
        "link_recall": scored.link_recall,
        "speaking_time_accuracy": scored.speaking_time_accuracy,
        "seed": args.seed,
        "quick": args.quick,
        **{k: round(v, 1) for k, v in timings.items()},
    }
    print(json.dumps(summary))


def print_people(scored: PeopleScore, people: Sequence[Mapping[str, Any]]) -> None:
    print(
        f"people listed: {scored.people_found} (true {scored.people_true}, matched {scored.people_matched})"
    )
    for person in people:
        voices = ", ".join(
            f"{v['cluster']} ({v['linked_by'] or 'own'}, {v['speaking_s']:.1f} s)" for v in person["voices"]
        )
        faces = ", ".join(f"{f['cluster']} x{f['count']}" for f in person["faces"])
        print(f"  {person['id']} {person['kind']:5} media {person['media_count']}", end="")
        print(f"  faces [{faces}]  voices [{voices}]")
    for link in scored.links:
        verdict = "right" if link["right"] else "WRONG"
        print(
            f"  link {link['voice']} ({link['voice_is']}) -> {link['face']} ({link['face_is']}) "
            f"confidence {link['confidence']}: {verdict}"
        )
    for name, s in scored.speaking.items():
        print(f"  {name:10} speaks {s['true_s']:6.1f} s, found {s['found_s']:6.1f} s: {s['accuracy']:.2f}")
    print(
        f"link precision {scored.link_precision}, recall {scored.link_recall}; "
        f"speaking time accuracy {scored.speaking_time_accuracy}"
    )


if __name__ == "__main__":
    main()
