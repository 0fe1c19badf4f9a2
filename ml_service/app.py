"""FastAPI application: the HTTP contract of docs/ml-api.md."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import numpy as np
from fastapi import FastAPI, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST
from pydantic import BaseModel, ValidationError

from ml_service import __version__
from ml_service.analyze import VECTOR_DECIMALS
from ml_service.auth import ApiKeyMiddleware
from ml_service.batching import ModelFailed, Overloaded
from ml_service.config import IMAGE_TEXT, ImageTask, MLSettings
from ml_service.middleware import RequestContextMiddleware
from ml_service.models.registry import ModelRegistry
from ml_service.models.text_input import model_input
from ml_service.outputs import advertised_size
from ml_service.schemas import (
    AnalyzeAudioRequest,
    AnalyzeImagesRequest,
    EmbedTextRequest,
    add_request_schemas,
    error_response,
    json_response,
    request_body_schema,
    validation_error_response,
)
from ml_service.service import MLService, Status, VersionNotServed

M = TypeVar("M", bound=BaseModel)


class BodyTooLarge(Exception):
    """The request body is larger than ``MLSettings.max_request_bytes``."""


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refusing (before reading it all) anything over ``limit`` bytes."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge
        chunks.append(chunk)
    return b"".join(chunks)


def create_app(settings: MLSettings, registry: ModelRegistry | None = None) -> FastAPI:
    """Build the app; models load in the background once it starts (lifespan). ``registry``: models of
    the caller's own instead of the configured ones (tests). Refuses to serve beyond loopback without
    ML_API_KEY (``MLSettings.check_exposure``)."""
    settings.check_exposure()
    service = MLService(settings, registry)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await service.start()
        try:
            yield
        finally:
            await service.stop()

    app = FastAPI(title="Archivist ML service", version=__version__, lifespan=lifespan)
    if settings.api_key is not None:  # inside the request context: refusals are logged and counted too
        app.add_middleware(ApiKeyMiddleware, api_key=settings.api_key.get_secret_value())
    app.add_middleware(RequestContextMiddleware, observe=service.metrics.observe_request)
    app.state.service = service
    generate_openapi = app.openapi

    def openapi() -> dict[str, Any]:
        # The endpoints read raw bodies (faster than FastAPI's parsing), so FastAPI does not know
        # their request models; add them once to the generated document.
        if app.openapi_schema is None:
            add_request_schemas(generate_openapi())
        return app.openapi_schema or {}

    app.openapi = openapi  # type: ignore[method-assign]  # FastAPI's documented override

    def not_ready() -> Response | None:
        if service.status is Status.READY:
            return None
        return error_response(
            503,
            f"models are {service.status.value}" + (f": {service.error}" if service.error else ""),
            headers={"Retry-After": "1"} if service.status is Status.LOADING else None,
            # models_failed is final (a client stops retrying this replica); models_loading passes.
            code="models_failed" if service.status is Status.FAILED else "models_loading",
        )

    async def parse(request: Request, model: type[M]) -> M | Response:
        try:
            return model.model_validate_json(await read_body(request, settings.max_request_bytes))
        except BodyTooLarge:
            return error_response(413, f"request body exceeds {settings.max_request_bytes} bytes")
        except ValidationError as exc:
            return validation_error_response(exc)

    def overloaded(exc: Overloaded) -> Response:
        return error_response(429, str(exc), headers={"Retry-After": str(exc.retry_after)})

    def model_failed(exc: ModelFailed) -> Response:
        if exc.final:  # a dead batcher, as a failed load, is final for this process: clients stop retrying it
            return error_response(503, str(exc), code="models_failed")
        # Stopping: a restarted service will answer; retry (here or on another replica).
        return error_response(503, str(exc), headers={"Retry-After": "1"}, code="stopping")

    @app.get("/health")
    async def health() -> Response:
        if service.status is Status.FAILED:
            return json_response({"status": "failed", "error": service.error}, status_code=503)
        return json_response({"status": "ok"})

    @app.get("/metrics")
    async def metrics() -> Response:
        """Prometheus text format: request latency, model batch sizes and times, queue depths."""
        return Response(service.metrics.render(), media_type=CONTENT_TYPE_LATEST)

    @app.get("/ready")
    async def ready() -> Response:
        loaded = [m.key for m in service.registry.all_models() if m.loaded]
        if service.status is Status.READY:
            # Every model served, loaded or not: an unloaded one (ML_LAZY_LOAD, ML_MODEL_TTL_S)
            # loads on the request that needs it.
            return json_response(
                {"status": "ready", "models": [m.key for m in service.registry.all_models()]}
            )
        return json_response(
            {"status": service.status.value, "models": loaded, "error": service.error}, status_code=503
        )

    @app.get("/capabilities")
    async def capabilities() -> Response:
        if (refusal := not_ready()) is not None:
            return refusal
        return json_response(
            {
                "service": "archivist-ml",
                "version": __version__,
                **service.capabilities(),  # with "device": ML_DEVICE as resolved
            }
        )

    @app.post("/v1/embed/text", openapi_extra=request_body_schema(EmbedTextRequest))
    async def embed_text(request: Request) -> Response:
        if (refusal := not_ready()) is not None:
            return refusal
        body = await parse(request, EmbedTextRequest)
        if isinstance(body, Response):
            return body
        # "space": which model embeds the texts: the text model, or the image–text model (vectors
        # comparable with image_vector, for text-to-image search); "version": the current model (absent) or
        # an earlier one served for queries (a collection still built with it).
        try:
            batcher = service.query_batcher(body.space, body.version)
        except VersionNotServed as exc:
            return error_response(404, str(exc), code="version_not_served")
        if batcher is None and body.space == IMAGE_TEXT:
            return error_response(404, "no image–text model is configured (ML_CLIP_MODEL_PATH)")
        if batcher is None:
            return error_response(404, "no text model is enabled (ML_TEXT_ENABLED)")
        dim = advertised_size(batcher.model)
        if len(body.texts) > batcher.model.max_batch:
            return error_response(413, f"{len(body.texts)} texts exceed max_batch {batcher.model.max_batch}")
        try:
            results = await batcher.submit(model_input(batcher.model, body.texts, body.input_type))
        except Overloaded as exc:
            return overloaded(exc)
        except ModelFailed as exc:
            return model_failed(exc)
        model = batcher.model
        content: dict[str, Any] = {"model": model.name, "version": model.version, "dim": dim}
        if all(r.ok for r in results):
            # One (n, dim) array: orjson writes it without building Python floats.
            content["vectors"] = np.round(
                np.stack([r.value for r in results if r.value is not None]), VECTOR_DECIMALS
            )
        else:
            content["vectors"] = [
                None if r.value is None else np.round(r.value, VECTOR_DECIMALS) for r in results
            ]
            content["errors"] = {str(i): r.error for i, r in enumerate(results) if not r.ok}
            content["error_codes"] = {str(i): r.error_code for i, r in enumerate(results) if not r.ok}
        return json_response(content)

    async def analyze(request: Request, with_text: bool) -> Response:
        if (refusal := not_ready()) is not None:
            return refusal
        clip = service.registry.image_text
        if service.analyzer is None or not (service.registry.image or clip is not None):
            return error_response(404, "no image model is enabled (ML_IMAGE_TASKS, ML_CLIP_MODEL_PATH)")
        body = await parse(request, AnalyzeImagesRequest)
        if isinstance(body, Response):
            return body
        requested = list(dict.fromkeys(body.tasks)) if body.tasks is not None else None
        # "image_text" (image_vector) is not an image model task but may be named like one; it is
        # among the defaults when the image–text model is configured.
        image_vectors = clip is not None if requested is None else IMAGE_TEXT in requested
        tasks = (
            [t for t in requested if isinstance(t, ImageTask)]
            if requested is not None
            else list(service.registry.image)
        )
        missing = [t.value for t in tasks if t not in service.registry.image]
        missing += [IMAGE_TEXT] if image_vectors and clip is None else []
        if missing:
            enabled = [t.value for t in service.registry.image] + ([IMAGE_TEXT] if clip is not None else [])
            return error_response(
                422,
                [
                    {
                        "loc": ["body", "tasks"],
                        "type": "value_error",
                        "msg": f"tasks not enabled here: {missing}; enabled: {enabled}",
                    }
                ],
            )
        # No tasks at all (only sizes wanted) is still bounded by the service's image limit.
        limit = service.registry.image_limits(tasks or None, image_text=image_vectors)["max_batch"]
        if len(body.images) > limit:
            return error_response(413, f"{len(body.images)} images exceed max_batch {limit}")
        try:
            content = await service.analyzer.analyze(
                body.images, tasks, with_text=with_text, image_vectors=image_vectors
            )
        except Overloaded as exc:
            return overloaded(exc)
        except ModelFailed as exc:
            return model_failed(exc)
        return json_response(content)

    @app.post("/v1/analyze/images", openapi_extra=request_body_schema(AnalyzeImagesRequest))
    async def analyze_images(request: Request) -> Response:
        return await analyze(request, with_text=False)

    @app.post("/api/v1/batch_embed_and_caption", openapi_extra=request_body_schema(AnalyzeImagesRequest))
    async def batch_embed_and_caption(request: Request) -> Response:
        return await analyze(request, with_text=True)

    @app.post("/v1/analyze/audio", openapi_extra=request_body_schema(AnalyzeAudioRequest))
    async def analyze_audio(request: Request) -> Response:
        if (refusal := not_ready()) is not None:
            return refusal
        audio = service.registry.audio
        if service.audio_analyzer is None or not audio:
            return error_response(404, "no audio model is enabled (ML_ASR_ENABLED, ML_VOICES_ENABLED)")
        body = await parse(request, AnalyzeAudioRequest)
        if isinstance(body, Response):
            return body
        tasks = list(dict.fromkeys(body.tasks)) if body.tasks is not None else list(audio)
        missing = [t.value for t in tasks if t not in audio]
        if missing:
            return error_response(
                422,
                [
                    {
                        "loc": ["body", "tasks"],
                        "type": "value_error",
                        "msg": f"tasks not enabled here: {missing}; enabled: {[t.value for t in audio]}",
                    }
                ],
            )
        limit = service.registry.audio_limits(tasks or None)["max_batch"]
        if len(body.items) > limit:
            return error_response(413, f"{len(body.items)} audio items exceed max_batch {limit}")
        try:
            content = await service.audio_analyzer.analyze(body.items, tasks)
        except Overloaded as exc:
            return overloaded(exc)
        except ModelFailed as exc:
            return model_failed(exc)
        return json_response(content)

    return app
