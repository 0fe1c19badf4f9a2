"""What a collection's points were built with (model versions, chunk plans, pipeline version), and how
that compares with what the ML service and the settings give now.

A collection version records its `Manifest` (catalog.py). At a job's start the manifest of the ML
service's /capabilities and the settings is compared with it (`compare`):
- nothing differs: the job ingests as always;
- only models whose output is derived text differ (OCR, tags, objects, captions, ASR): those tasks are
  re-analysed for every file in place; the text vectors follow the new text (same text model);
- anything that makes a vector or a point id (the text, image–text, face or voice model, the keyword
  analysis, a chunk plan, the pipeline version) differs: a new collection version is built beside the
  old one and replaces it when complete. Vectors of two models never share a space.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import orjson

from orchestrator.config import Settings
from orchestrator.ids import PIPELINE_VERSION, RECORD_SCHEMA
from orchestrator.keywords import ANALYZER, LEGACY_ANALYZER
from orchestrator.media.chunking import KEYFRAME_CHOICE
from orchestrator.media.documents import READER, DocumentOptions

# Models whose output enters chunk records (their /capabilities keys), split by what a change costs.
VECTOR_MODELS = ("text", "image_text", "faces", "speakers")
DERIVED_MODELS = ("ocr", "tags", "objects", "captions", "asr")
RECORD_MODELS = (*VECTOR_MODELS, *DERIVED_MODELS)
# Image task names in requests -> their model's key in /capabilities (the others are the same).
_TASK_MODEL = {"caption": "captions"}

Kind = Literal["current", "derived", "rebuild"]


def model_key(task: str) -> str:
    """The /capabilities key of the model that runs a request task ("caption" -> "captions")."""
    return _TASK_MODEL.get(task, task)


def model_ids(models: dict[str, dict[str, Any]]) -> dict[str, str]:
    """Each record model the service runs, as "name@version"."""
    present = [key for key in RECORD_MODELS if key in models]
    return {key: f"{models[key].get('name')}@{models[key].get('version')}" for key in present}


def plan_settings(settings: Settings) -> dict[str, dict[str, Any]]:
    """The settings that decide what each chunk is: for images the copy the models see, for video and
    audio the chunk boundaries and the keyframes. A different plan never reuses results by chunk index."""
    return {
        "image": {"ml_image_max_side": settings.ml_image_max_side},
        "av": {
            "chunk_seconds": settings.chunk_seconds,
            "min_chunk_seconds": settings.min_chunk_seconds,
            "keyframes_per_chunk": settings.keyframes_per_chunk,
            "keyframe_choice": KEYFRAME_CHOICE,
            "keyframe_max_side": settings.keyframe_max_side,
            "max_media_seconds": settings.max_media_seconds,
        },
        "document": {
            "passage_words": settings.document_passage_words,
            "max_pages": settings.document_max_pages,
            "ml_image_max_side": settings.ml_image_max_side,
            "reader": READER,
        },
    }


def document_options(settings: Settings) -> DocumentOptions:
    """How documents are cut into passages (what the "document" plan records)."""
    return DocumentOptions(
        passage_words=settings.document_passage_words,
        max_pages=settings.document_max_pages,
        ml_max_side=settings.ml_image_max_side,
        thumb_side=settings.thumbnail_size,
    )


def plan_digest(values: dict[str, Any]) -> str:
    return hashlib.blake2b(orjson.dumps(values, option=orjson.OPT_SORT_KEYS), digest_size=8).hexdigest()


@dataclass(frozen=True, slots=True)
class Manifest:
    models: dict[str, str]  # record model key -> "name@version"
    plans: dict[str, dict[str, Any]]  # "image" / "av" / "document" -> the settings that shape the chunks
    pipeline: str = PIPELINE_VERSION
    unknown: bool = False  # a collection from before manifests whose points say other models
    keywords: str = ANALYZER  # the keyword analysis of its sparse vectors (keywords.py)
    schema: str = RECORD_SCHEMA  # the payload's fields (ids.py)

    def plan_digests(self) -> dict[str, str]:
        return {kind: plan_digest(values) for kind, values in self.plans.items()}

    def digest(self) -> str:
        return plan_digest(self.to_json())

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "models": self.models,
            "plans": self.plans,
            "pipeline": self.pipeline,
            "keywords": self.keywords,
            "schema": self.schema,
        }
        if self.unknown:
            out["unknown"] = True
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Manifest:
        return cls(
            models={str(k): str(v) for k, v in dict(data.get("models") or {}).items()},
            plans={str(k): dict(v) for k, v in dict(data.get("plans") or {}).items()},
            pipeline=str(data.get("pipeline", "")),
            unknown=bool(data.get("unknown", False)),
            # Manifests from before the keyword analysis was recorded: made with the legacy one.
            keywords=str(data.get("keywords", LEGACY_ANALYZER)),
            schema=str(data.get("schema", "")),  # before it was recorded: people@1
        )


def current_manifest(models: dict[str, dict[str, Any]], settings: Settings) -> Manifest:
    ids = model_ids(models)
    if "speakers" in ids and settings.speaker_context_seconds:
        # The context the speaker model hears changes its turns and vectors as a new model would.
        ids["speakers"] += f"+context={settings.speaker_context_seconds:g}s"
    return Manifest(models=ids, plans=plan_settings(settings))


def with_new_plans(built: Manifest, now: Manifest) -> Manifest | None:
    """`built` with the chunk plans of kinds it does not know (a kind of file this software did not read
    when the collection was built: it holds no chunk of that kind, so nothing needs rebuilding); None when
    it knows them all."""
    added = {kind: values for kind, values in now.plans.items() if kind not in built.plans}
    if not added or built.unknown:
        return None
    return replace(built, plans={**built.plans, **added})


@dataclass(frozen=True, slots=True)
class Staleness:
    kind: Kind
    changes: list[str] = field(default_factory=list)  # what differs, for people: "ocr: a@1 -> a@2"
    tasks: list[str] = field(default_factory=list)  # the record models that differ

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "changes": self.changes, "tasks": self.tasks}


def compare(built: Manifest, now: Manifest) -> Staleness:
    """What it takes to bring a collection built with `built` to `now` (see the module docstring)."""
    if built.unknown:
        return Staleness("rebuild", ["built before model manifests, with other models than now"], [])
    changes: list[str] = []
    tasks: list[str] = []
    rebuild = False
    if built.pipeline != now.pipeline:
        rebuild = True
        changes.append(f"pipeline version: {built.pipeline} -> {now.pipeline}")
    if built.keywords != now.keywords:
        rebuild = True
        changes.append(f"keyword analysis: {built.keywords or 'legacy'} -> {now.keywords or 'legacy'}")
    if built.schema != now.schema:
        rebuild = True
        changes.append(f"record fields: {built.schema or 'people@1'} -> {now.schema}")
    for kind in sorted(set(built.plans) | set(now.plans)):
        if built.plans.get(kind) != now.plans.get(kind):
            rebuild = True
            changes.append(f"{kind} chunk plan: {built.plans.get(kind)} -> {now.plans.get(kind)}")
    for key in RECORD_MODELS:
        old, new = built.models.get(key), now.models.get(key)
        if old != new:
            tasks.append(key)
            changes.append(f"{key}: {old or 'none'} -> {new or 'none'}")
            rebuild = rebuild or key in VECTOR_MODELS
    if rebuild:
        return Staleness("rebuild", changes, tasks)
    return Staleness("derived" if tasks else "current", changes, tasks)


def legacy_signature(models: dict[str, dict[str, Any]]) -> str:
    """The `models` payload value of points written before manifests (the digest of every record model's
    name@version): a collection from then whose points carry today's value was built with today's models."""
    keys = ["text", "ocr", "faces", "tags", "objects", "captions", "image_text", "asr", "speakers"]
    parts = [f"{t}={models[t].get('name')}@{models[t].get('version')}" for t in sorted(keys) if t in models]
    return hashlib.blake2b("|".join(parts).encode(), digest_size=8).hexdigest()
