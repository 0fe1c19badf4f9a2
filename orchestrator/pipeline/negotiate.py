"""Turn the ML service's /capabilities and the settings into one job's pipeline shape."""

from __future__ import annotations

from typing import Any

from orchestrator.clients.ml import Capabilities
from orchestrator.clients.vectors import CollectionSpec
from orchestrator.config import Settings
from orchestrator.manifest import current_manifest, document_options
from orchestrator.media.av_decode import AVOptions
from orchestrator.pipeline.context import PipelineConfig
from orchestrator.pipeline.records import FLOAT_FIELDS, KEYWORD_FIELDS

IMAGE_ENDPOINT = "/v1/analyze/images"
TEXT_ENDPOINT = "/v1/embed/text"
AUDIO_ENDPOINT = "/v1/analyze/audio"
# The vector-store adapter measured durable Edge upserts at ~14-19k points/s in batches of 256 (the flush
# is amortised); larger batches gain nothing measurable.
DEFAULT_UPSERT_BATCH = 256


def pipeline_config(
    settings: Settings,
    caps: Capabilities,
    options: dict[str, Any],
    reanalyze: bool = False,
    refresh_tasks: tuple[str, ...] = (),
) -> PipelineConfig:
    """Batch sizes come from the service (ML_INFERENCE_BATCH_SIZE wins, capped at what it accepts).
    `reanalyze`: read every indexed file again; `refresh_tasks`: ask these tasks again, cached or not."""
    image_limits = caps.limits(IMAGE_ENDPOINT)
    text_limits = caps.limits(TEXT_ENDPOINT)
    negotiated = min(image_limits.preferred_batch, text_limits.max_batch)
    infer_batch = settings.ml_inference_batch_size or negotiated
    infer_batch = max(1, min(infer_batch, image_limits.max_batch, text_limits.max_batch))
    manifest = current_manifest(caps.models, settings)
    audio_batch = None
    if caps.audio_tasks and AUDIO_ENDPOINT in caps.endpoints:
        audio_batch = max(1, caps.limits(AUDIO_ENDPOINT).preferred_batch)
    return PipelineConfig(
        queue_size=settings.queue_size,
        prepare_workers=settings.prepare_workers,
        # One batch more in flight than the service runs at once: the next batch is already waiting
        # there when one finishes, so the service never idles while we parse and embed.
        infer_workers=max(1, min(settings.infer_workers, image_limits.max_concurrency + 1)),
        infer_batch=infer_batch,
        upsert_batch=settings.qdrant_upsert_batch_size or DEFAULT_UPSERT_BATCH,
        ml_image_max_side=settings.ml_image_max_side,
        thumbnail_size=settings.thumbnail_size,
        max_image_pixels=settings.max_image_pixels,
        max_file_bytes=settings.max_file_bytes,
        include_hidden=bool(options.get("include_hidden", settings.include_hidden)),
        prune=bool(options.get("prune", True)),
        thumbnails_dir=settings.thumbnails_dir,
        models_signature=manifest.digest(),
        task_models=manifest.models,
        plans=manifest.plan_digests(),
        reanalyze=reanalyze,
        refresh_tasks=refresh_tasks,
        image_vectors=caps.image_dim is not None,
        text_batch=max(1, text_limits.max_batch),
        audio_batch=audio_batch,
        audio_tasks=tuple(caps.audio_tasks),
        image_tasks=tuple(str(t) for t in caps.raw.get("image_tasks") or ()),
        av=AVOptions(
            chunk_s=settings.chunk_seconds,
            min_chunk_s=settings.min_chunk_seconds,
            keyframes_per_chunk=settings.keyframes_per_chunk,
            ml_max_side=settings.keyframe_max_side,
            thumb_side=settings.thumbnail_size,
            max_duration_s=settings.max_media_seconds,
        ),
        documents=bool(options.get("documents", settings.ingest_documents)),
        doc=document_options(settings),
        face_cluster_threshold=settings.face_cluster_threshold,
        voice_cluster_threshold=voice_threshold(settings.voice_cluster_threshold, caps.models),
        speaker_context_s=settings.speaker_context_seconds,
        retry_failed=bool(options.get("retry_failed", False)),
        text_dim=caps.text_dim,
        image_dim=caps.image_dim,
        face_dim=_vector_size(caps.models, "faces"),
        voice_dim=_vector_size(caps.models, "speakers"),
    )


DEFAULT_VOICE_THRESHOLD = 0.75


def voice_threshold(configured: float | None, models: dict[str, dict[str, Any]]) -> float:
    """VOICE_CLUSTER_THRESHOLD when set, else the speaker model's own (`cluster_threshold` in
    /capabilities: cosines differ in scale between backends), else DEFAULT_VOICE_THRESHOLD."""
    if configured is not None:
        return configured
    announced = (models.get("speakers") or {}).get("cluster_threshold")
    if isinstance(announced, int | float) and not isinstance(announced, bool) and -1.0 <= announced <= 1.0:
        return float(announced)
    return DEFAULT_VOICE_THRESHOLD


def _vector_size(models: dict[str, dict[str, Any]], key: str) -> int | None:
    """The vector size a model announces in /capabilities (None when it does not say)."""
    size = (models.get(key) or {}).get("vector_size")
    return int(size) if isinstance(size, int) and not isinstance(size, bool) and size > 0 else None


def collection_spec(caps: Capabilities) -> CollectionSpec:
    dense = {"text": caps.text_dim}
    if caps.image_dim is not None:
        dense["image"] = caps.image_dim
    return CollectionSpec(dense=dense, keyword_indexes=KEYWORD_FIELDS, float_indexes=FLOAT_FIELDS)
