"""Building chunk records: one Qdrant point per chunk, its named vectors and its payload."""

from __future__ import annotations

import time
from typing import Any

from orchestrator.clients.vectors import PointRecord
from orchestrator.identities import Identities, people_fields
from orchestrator.ids import PIPELINE_VERSION, point_id
from orchestrator.keywords import filename_words, sparse_vector
from orchestrator.people import Assignment
from orchestrator.pipeline.messages import AnalyzedFile
from orchestrator.points import path_fields

# Payload fields with a keyword index (filters) and a float index (time ranges). `paths` is not indexed:
# nothing filters on it, and with many copies per content its index grew with every path (memory).
KEYWORD_FIELDS = ("media_type", "content_hash", "dirs", "people", "speaking", "clusters", "language")
FLOAT_FIELDS = ("taken_at_ts", "start_s", "indexed_at", "duration_s", "text_chars")


def build_points(
    item: AnalyzedFile,
    paths: list[str],
    models_signature: str,
    people: dict[tuple[str, int], Assignment] | None = None,
    plan: str | None = None,
    identities: Identities | None = None,
) -> list[PointRecord]:
    """`plan`: the chunk plan's digest of a video or audio file (its chunk thumbnails are named by it).
    `identities`: who the faces' and voices' clusters are (names, merges, links: `identities.py`)."""
    ids = identities or Identities()
    prepared = item.prepared
    media = prepared.media
    exif = dict(media.exif)
    taken_at, taken_at_ts = exif.pop("taken_at", None), exif.pop("taken_at_ts", None)
    names = filename_words(paths)
    points = []
    for chunk in prepared.chunks:
        analysis = item.chunks[chunk.index]
        assigned = (people or {}).get((prepared.content_hash, chunk.index)) or Assignment()
        faces = [
            {
                "box": f.get("box"),
                "score": f.get("score"),
                "cluster": assigned.faces[n] if n < len(assigned.faces) else None,
                **({"start_s": f["start_s"], "end_s": f.get("end_s")} if "start_s" in f else {}),
                **({"from_s": f["from_s"], "until_s": f.get("until_s")} if "from_s" in f else {}),
            }
            for n, f in enumerate(analysis.faces)
        ]
        speakers = [
            {
                "start_s": t.get("start_s"),
                "end_s": t.get("end_s"),
                "speaker": t.get("speaker"),
                "voice": assigned.voices[n] if n < len(assigned.voices) else None,
                "on_screen": assigned.on_screen[n] if n < len(assigned.on_screen) else [],
            }
            for n, t in enumerate(analysis.turns)
        ]
        payload: dict[str, Any] = {
            **path_fields(paths),
            "media_type": media.media_type,
            "mime": media.mime,
            "content_hash": prepared.content_hash,
            "chunk_index": chunk.index,
            "chunk_count": len(prepared.chunks),
            "chunk_plan": plan,
            "start_s": chunk.start_s,
            "end_s": chunk.end_s,
            "size": prepared.entry.size,
            "width": media.width,
            "height": media.height,
            "duration_s": media.duration_s,
            "taken_at": taken_at,
            "taken_at_ts": taken_at_ts,
            "exif": exif,
            "av": media.av,
            "ocr_text": analysis.ocr_text,
            "tags": analysis.tags,
            "caption": analysis.caption,
            "scene": analysis.scene,
            "faces_count": len(analysis.faces),
            "transcript": analysis.transcript,
            "words": analysis.words,
            "language": analysis.language,
            # faces, speakers (with each one's person and name), clusters, people, speaking, names
            **people_fields({"faces": faces, "speakers": speakers}, ids),
            "text": analysis.text,
            # What was read or heard (the has_text filter): OCR, transcript and a document's own text, not
            # tags or captions.
            "text_chars": len(analysis.ocr_text.strip()) + len(analysis.transcript.strip()) + len(chunk.text),
            "models": models_signature,
            "pipeline_version": PIPELINE_VERSION,
            "indexed_at": time.time(),
        }
        if media.media_type == "document":  # where in the document: its page, its section and heading
            payload.update(
                page=chunk.page, section=chunk.section, heading=chunk.heading, document=media.document
            )
        dense = {"text": analysis.text_vector}
        if analysis.image_vector is not None:
            dense["image"] = analysis.image_vector
        points.append(
            PointRecord(
                id=point_id(prepared.content_hash, chunk.index),
                dense=dense,
                # Keywords: the chunk's text and its files' names (one search box for both).
                sparse={"sparse": sparse_vector(f"{analysis.text}\n{names}")},
                payload=payload,
            )
        )
    return points
