"""HTTP edge: request bodies (pydantic, parsed straight from bytes) and orjson responses."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

import orjson
from fastapi import Response
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ml_service.config import AudioTask, ImageTask
from ml_service.models.text_input import InputType

# numpy arrays (vectors) serialise natively; no Python float lists are built.
_ORJSON_OPTIONS = orjson.OPT_SERIALIZE_NUMPY


class EmbedTextRequest(BaseModel):
    # Unknown fields are ignored so that clients can send newer options to older replicas.
    model_config = ConfigDict(extra="ignore")

    texts: list[str] = Field(min_length=1)
    space: Literal["text", "image_text"] = Field(
        default="text",
        description='"text": the text model (ML_TEXT_BACKEND); "image_text": the image–text model\'s space, '
        "to compare with image_vector (needs ML_CLIP_MODEL_PATH)",
    )
    input_type: InputType = Field(
        default=InputType.DOCUMENT,
        description='"query": the texts are search queries; "document": texts to be found (chunk texts). '
        'Models trained with instructions read each kind with its own (multilingual-e5: "query: " / '
        '"passage: "); the others read both alike. The image–text space ignores it.',
    )
    version: str | None = Field(
        default=None,
        min_length=1,
        description="the version of the space's model that embeds the texts (/capabilities query_versions): "
        "the current model's (the default) or an earlier one served for queries; another is 404 "
        "version_not_served",
    )


class ImageItem(BaseModel):
    model_config = ConfigDict(extra="ignore")

    id: str
    data: str = Field(description="base64 of an encoded image (JPEG, PNG, WebP, ...)")


class AnalyzeImagesRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    images: list[ImageItem] = Field(min_length=1)
    tasks: list[ImageTask | Literal["image_text"]] | None = Field(
        default=None,
        description='default: every loaded image task, and "image_text" (image_vector) when configured',
    )


class AudioItem(BaseModel):
    model_config = ConfigDict(extra="ignore")

    id: str
    pcm: str = Field(description="base64 of 16-bit little-endian mono PCM samples")
    sample_rate: int = Field(description="samples per second; only 16000 is accepted (else an item error)")
    context_before: str = Field(
        default="",
        description="speaker turns only: base64 PCM (same format) heard just before `pcm`; turns are found "
        "over context_before + pcm + context_after and returned for pcm's span (a voice is told apart "
        "better with more of its speech; ASR ignores the context)",
    )
    context_after: str = Field(
        default="", description="speaker turns only: base64 PCM (same format) heard just after `pcm`"
    )
    language: str | None = Field(
        default=None,
        pattern=r"^[a-z]{2,3}$",
        description="ASR only: decode in this language (ISO 639-1), e.g. the language of the item's file "
        "where detection on the item alone was unsure; absent: ML_ASR_LANGUAGE, else detected. An "
        'English-only model refuses any other than "en" (that item\'s error)',
    )


class AnalyzeAudioRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    items: list[AudioItem] = Field(min_length=1)
    tasks: list[AudioTask] | None = Field(default=None, description="default: every loaded audio task")


_COMPONENT_REF = "#/components/schemas/{model}"
REQUEST_MODELS: tuple[type[BaseModel], ...] = (EmbedTextRequest, AnalyzeImagesRequest, AnalyzeAudioRequest)


def request_body_schema(model: type[BaseModel]) -> dict[str, Any]:
    """OpenAPI ``requestBody`` for endpoints that parse the raw body themselves."""
    schema = {"$ref": _COMPONENT_REF.format(model=model.__name__)}
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}}


def add_request_schemas(openapi: dict[str, Any]) -> None:
    """Put the request models (and the models they use) into the document's components."""
    components = openapi.setdefault("components", {}).setdefault("schemas", {})
    for model in REQUEST_MODELS:
        schema = model.model_json_schema(ref_template=_COMPONENT_REF)
        components.update(schema.pop("$defs", {}))
        components[model.__name__] = schema


def json_response(content: Any, status_code: int = 200, headers: Mapping[str, str] | None = None) -> Response:
    return Response(
        orjson.dumps(content, option=_ORJSON_OPTIONS),
        status_code=status_code,
        media_type="application/json",
        headers=headers,
    )


def error_response(
    status_code: int, detail: Any, headers: Mapping[str, str] | None = None, code: str | None = None
) -> Response:
    """An error body: ``{"detail": ...}``, plus a machine-readable ``code`` where a client acts on it."""
    body = {"detail": detail} if code is None else {"detail": detail, "code": code}
    return json_response(body, status_code=status_code, headers=headers)


def validation_error_response(exc: ValidationError) -> Response:
    """422 in FastAPI's shape, without echoing the input (it may be megabytes of base64)."""
    errors = exc.errors(include_url=False, include_input=False, include_context=False)
    return error_response(
        422, [{"loc": ["body", *e["loc"]], "msg": e["msg"], "type": e["type"]} for e in errors]
    )
