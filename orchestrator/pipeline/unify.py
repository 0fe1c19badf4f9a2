"""One chunk record from the ML service's answers: its keyframes' faces, text and tags, and its speech.

Pure functions (no I/O), called by the infer stage. Faces seen on several keyframes of a chunk become one
face track (box overlap or embedding similarity between consecutive keyframes); the chunk's speech keeps
the words and speaker turns that fall inside its own span (its audio was cut a little wider, so words at a
boundary are not lost, and are not counted twice either). Every number and vector of an answer goes
through `answers.py` first: a malformed face or turn loses its vector (or is dropped), never the job.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from orchestrator import answers

_MAX_TAGS = 8
# A face on the next keyframe continues a track when their identity embeddings are this similar (SFace
# cosine; the same person across frames: ~0.6-0.95), or, when either is too small to have an embedding,
# when its box overlaps the track's last box this much.
TRACK_MIN_IOU = 0.3
TRACK_MIN_SIMILARITY = 0.5
# A speaker turn shorter than this inside its chunk keeps its label but not its voice vector: resemblyzer
# needs ~1.6 s of speech for a stable embedding, and a sliver at a chunk's edge (the next speaker's first
# word in the overlap) made clusters of its own.
MIN_VOICE_TURN_S = 1.5


@dataclass(frozen=True, slots=True)
class Speech:
    transcript: str
    words: list[list[Any]]  # [word, start_s, end_s]
    turns: list[dict[str, Any]]  # {start_s, end_s, speaker, embedding}
    language: str | None


@dataclass(frozen=True, slots=True)
class Visual:
    """What a chunk's pictures show: OCR text, tags (best first), a caption and scene (when a VLM runs),
    and faces (an image's) or face tracks (a video chunk's)."""

    ocr_text: str = ""
    tags: list[str] = field(default_factory=list)
    caption: str | None = None
    faces: list[dict[str, Any]] = field(default_factory=list)
    scene: dict[str, Any] | None = None  # description, objects, on_screen_text, setting


def image_parts(result: dict[str, Any], face_dim: int | None = None) -> Visual:
    """One analyze/images result: OCR text, de-duplicated tag labels (best first), caption, faces, scene.
    A face's embedding that is not `face_dim` finite numbers is dropped (the face stays, unclustered)."""
    ocr = str(answers.mapping(result.get("ocr")).get("text") or "")
    labels: list[str] = []
    for tag in sorted(answers.items(result.get("tags")), key=lambda t: -_score(t)):
        label = str(tag.get("label", "")).strip()
        if label and label not in labels:
            labels.append(label)
    faces = [
        {
            "box": answers.box(f.get("box")),
            "score": answers.number(f.get("score")),
            "embedding": answers.vector(f.get("embedding"), face_dim),
        }
        for f in answers.items(result.get("faces"))
    ]
    caption = result.get("caption")
    scene = result.get("scene")
    return Visual(
        ocr.strip(),
        labels[:_MAX_TAGS],
        caption if isinstance(caption, str) else None,
        faces,
        scene if isinstance(scene, dict) else None,
    )


def _score(entry: dict[str, Any]) -> float:
    return answers.number(entry.get("score")) or 0.0


def compose_text(visual: Visual, transcript: str = "", document: str = "") -> str:
    """The text a chunk's `text` vector is computed from: a document passage's own heading and text, what
    was said, what it shows (caption, tags and the scene's objects and setting), what is written (OCR; the
    VLM's reading when OCR found nothing)."""
    scene = visual.scene or {}
    shows = list(visual.tags)
    for item in scene.get("objects") or []:
        if str(item).strip() and str(item).strip().casefold() not in {t.casefold() for t in shows}:
            shows.append(str(item).strip())
    written = visual.ocr_text or str(scene.get("on_screen_text") or "").strip()
    parts = []
    if document:
        parts.append(document)
    if transcript:
        parts.append(transcript)
    if visual.caption:
        parts.append(visual.caption)
    if shows:
        parts.append("Shows: " + ", ".join(shows) + ".")
    if scene.get("setting"):
        parts.append(f"Setting: {scene['setting']}.")
    if written:
        parts.append("Text: " + written)
    return " ".join(parts)


def merge_frames(
    frames: list[tuple[float | None, dict[str, Any]]],
    face_dim: int | None = None,
    span: tuple[float, float] | None = None,
    cuts: Sequence[float] = (),
) -> Visual:
    """A chunk's keyframe results (time, analyze/images result) → OCR text (distinct lines in order),
    tags (best score first), the first caption and scene, and face tracks (`span`: the chunk's start and
    end, `cuts`: its shot changes; see `face_tracks`). One frame (an image): its faces as they are."""
    if len(frames) == 1 and frames[0][0] is None:
        return image_parts(frames[0][1], face_dim)
    lines: list[str] = []
    best: dict[str, float] = {}
    caption: str | None = None
    scene: dict[str, Any] | None = None
    per_frame: list[tuple[float, list[dict[str, Any]]]] = []
    for t_s, result in frames:
        visual = image_parts(result, face_dim)
        for line in visual.ocr_text.splitlines():
            line = line.strip()
            if line and line not in lines:
                lines.append(line)
        for tag in answers.items(result.get("tags")):
            label = str(tag.get("label", "")).strip()
            if label:
                best[label] = max(best.get(label, 0.0), _score(tag))
        caption = caption or visual.caption
        scene = scene or visual.scene
        per_frame.append((t_s or 0.0, visual.faces))
    tags = sorted(best, key=lambda label: -best[label])[:_MAX_TAGS]
    return Visual("\n".join(lines), tags, caption, face_tracks(per_frame, span, cuts), scene)


def face_tracks(
    frames: list[tuple[float, list[dict[str, Any]]]],
    span: tuple[float, float] | None = None,
    cuts: Sequence[float] = (),
) -> list[dict[str, Any]]:
    """Follow faces across keyframes (in time order). A track: the first and last keyframe it is seen on
    (`start_s`, `end_s`), when it is on screen as far as the keyframes and shots tell (`from_s`, `until_s`:
    a face is on screen for its keyframes' shots, bounded by the chunk's `span` and its shot changes `cuts`;
    inside one shot, from half-way to a keyframe before that does not show it, until half-way to one
    after), the box and score of its best detection, the normalised mean of its embeddings (None when every
    face was too small)."""
    tracks: list[dict[str, Any]] = []
    open_tracks: list[int] = []  # indices of tracks seen on the previous keyframe
    times = sorted(t for t, _ in frames)
    for t_s, faces in sorted(frames, key=lambda f: f[0]):
        taken: set[int] = set()
        still_open: list[int] = []
        for face in sorted(faces, key=lambda f: -_score(f)):
            match = _best_track(face, [i for i in open_tracks if i not in taken], tracks)
            if match is None:
                tracks.append({"start_s": t_s, "end_s": t_s, "detections": [face], "last": face})
                match = len(tracks) - 1
            else:
                track = tracks[match]
                track["end_s"] = t_s
                track["detections"].append(face)
                track["last"] = face
            taken.add(match)
            still_open.append(match)
        open_tracks = still_open
    return [_finish(track, times, span, cuts) for track in tracks]


def _best_track(face: dict[str, Any], candidates: list[int], tracks: list[dict[str, Any]]) -> int | None:
    best, best_score = None, 0.0
    for i in candidates:
        last = tracks[i]["last"]
        overlap = iou(face.get("box"), last.get("box"))
        if face.get("embedding") and last.get("embedding"):
            # Identity decides: news anchors sit in the same place shot after shot.
            score = cosine(face.get("embedding"), last.get("embedding"))
            if score < TRACK_MIN_SIMILARITY:
                continue
        elif overlap >= TRACK_MIN_IOU:  # too small to identify: follow the box
            score = overlap
        else:
            continue
        if score > best_score:
            best, best_score = i, score
    return best


def mean_vector(vectors: list[list[float] | None]) -> list[float] | None:
    """The normalised mean of the vectors given (None entries skipped); None when there are none."""
    present = [v for v in vectors if v]
    if not present:
        return None
    present = [v for v in present if len(v) == len(present[0])]  # one size (answers.py checks them)
    summed = [sum(values) for values in zip(*present, strict=True)]
    norm = math.sqrt(sum(v * v for v in summed)) or 1.0
    return [round(v / norm, 6) for v in summed]


def _finish(
    track: dict[str, Any], times: list[float], span: tuple[float, float] | None, cuts: Sequence[float]
) -> dict[str, Any]:
    detections = track["detections"]
    top = max(detections, key=_score)
    mean = mean_vector([f.get("embedding") for f in detections])
    start, end = track["start_s"], track["end_s"]
    # Its shot: from the last cut at or before its first keyframe (else the chunk's start) to the first
    # cut after its last keyframe (else the chunk's end); without a span, as far as the keyframes go.
    shot_start = max([c for c in cuts if c <= start], default=span[0] if span else -math.inf)
    shot_end = min([c for c in cuts if c > end], default=span[1] if span else math.inf)
    before = [t for t in times if shot_start <= t < start]  # keyframes of its shot without it
    after = [t for t in times if end < t < shot_end]
    if before:
        first = (before[-1] + start) / 2
    else:
        first = min(shot_start, start) if math.isfinite(shot_start) else start
    if after:
        last = (end + after[0]) / 2
    else:
        last = max(shot_end, end) if math.isfinite(shot_end) else end
    return {
        "box": top.get("box"),
        "score": top.get("score"),
        "embedding": mean,
        "start_s": start,
        "end_s": end,
        "from_s": round(first, 3),
        "until_s": round(last, 3),
        "frames": len(detections),
    }


def _absolute(item: dict[str, Any], audio_start_s: float) -> tuple[float, float] | None:
    """An answer's `start`/`end` (relative to its audio item) in the file's seconds; None when not finite."""
    start, end = answers.number(item.get("start")), answers.number(item.get("end"))
    if start is None or end is None:
        return None
    return round(audio_start_s + start, 2), round(audio_start_s + end, 2)


def speech(
    result: dict[str, Any],
    audio_start_s: float,
    start_s: float,
    end_s: float,
    last: bool,
    voice_dim: int | None = None,
) -> Speech:
    """A chunk's transcript from its (wider) audio item: times made absolute, words and turns kept when
    their middle falls inside [start_s, end_s) (the last chunk keeps its end). A word or turn without
    finite times is dropped; a turn's embedding that is not `voice_dim` finite numbers is dropped."""

    def inside(a: float, b: float) -> bool:
        middle = (a + b) / 2
        return start_s <= middle < end_s or (last and middle >= end_s)

    words: list[list[Any]] = []
    for segment in answers.items(result.get("segments")):
        for word in answers.items(segment.get("words")):
            if (span := _absolute(word, audio_start_s)) is None:
                continue
            a, b = span
            text = str(word.get("word", "")).strip()
            if text and inside(a, b):
                words.append([text, a, b])
    turns: list[dict[str, Any]] = []
    for turn in answers.items(result.get("turns")):
        if (span := _absolute(turn, audio_start_s)) is None:
            continue
        a, b = max(span[0], start_s), span[1] if last else min(span[1], end_s)
        if b - a > 0.2:
            embedding = (
                answers.vector(turn.get("embedding"), voice_dim) if b - a >= MIN_VOICE_TURN_S else None
            )
            turns.append({"start_s": a, "end_s": b, "speaker": turn.get("speaker"), "embedding": embedding})
    language = result.get("language")
    return Speech(
        " ".join(w[0] for w in words), words, turns, language if isinstance(language, str) else None
    )


def iou(a: list[float] | None, b: list[float] | None) -> float:
    """Intersection over union of two [x, y, w, h] boxes."""
    if not a or not b:
        return 0.0
    ax2, ay2, bx2, by2 = a[0] + a[2], a[1] + a[3], b[0] + b[2], b[1] + b[3]
    w = max(0.0, min(ax2, bx2) - max(a[0], b[0]))
    h = max(0.0, min(ay2, by2) - max(a[1], b[1]))
    inter = w * h
    union = a[2] * a[3] + b[2] * b[3] - inter
    return inter / union if union > 0 else 0.0


def cosine(a: list[float] | None, b: list[float] | None) -> float:
    """Cosine similarity; 0.0 when either is missing or their sizes differ (vectors not comparable)."""
    if not a or not b or len(a) != len(b):
        return 0.0
    dot = sum(x * y for x, y in zip(a, b, strict=True))
    na = math.sqrt(sum(x * x for x in a))
    nb = math.sqrt(sum(y * y for y in b))
    return dot / (na * nb) if na and nb else 0.0
