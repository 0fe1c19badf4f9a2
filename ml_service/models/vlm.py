"""Scene descriptions from a VLM behind an OpenAI-compatible chat-completions API (how vLLM serves).

Each image becomes one ``POST {base}/v1/chat/completions`` request: a user message with the image (a JPEG
data URL, at most ``ML_VLM_IMAGE_MAX_SIDE`` px long) and the prompt file's text, ``temperature`` 0,
``max_tokens``, and ``response_format: {"type": "json_object"}`` (dropped for good if the server rejects
it). The answer must be one JSON object with ``description``, ``objects``, ``on_screen_text`` and
``setting``; it is extracted (code fences and prose around it are tolerated) and validated (``Scene``).

Everything that can go wrong with one image (HTTP error, timeout, connection error, an answer that is not
such an object) is that image's error; the other images of the batch are unaffected. 429 and 503 are
retried a few times, after the server's ``Retry-After`` when it gives one; nothing else is retried.

The model makes no use of the CPU to speak of: it waits on the network. Its batches run on an executor of
their own (ml_service/service.py), so a slow VLM never holds up the local models, and within a batch up
to ``ML_VLM_CONCURRENCY`` requests are in flight at once.
"""

from __future__ import annotations

import base64
import io
import json
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, ClassVar, TypedDict

import httpx
import PIL.Image
import structlog
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from ml_service.errors import ErrorCode
from ml_service.models.base import Image, InferenceModel, ItemResult, describe_error
from orchestrator.clients.retry_after import retry_after_seconds  # the one reader both services use

log = structlog.get_logger(__name__)

# 429 (rate limited) and 503 (overloaded or still loading) say "later"; a few retries ride out a busy
# spell without holding a batch for long. Anything else (400, 404, 500, timeouts) would fail again.
RETRY_STATUSES = frozenset({429, 503})
MAX_RETRIES = 3
_BACKOFF_START_S = 0.5  # without Retry-After: 0.5, 1, 2 s
# A server asking for a longer pause than this is not waited for: the item fails with that reason.
MAX_RETRY_AFTER_S = 30.0
_JPEG_QUALITY = 90
_ERROR_BODY_CHARS = 200
_PROBE_TIMEOUT_S = 5.0


def packaged_prompt_file() -> Path:
    """The default prompt template (ml_service/prompts/scene.txt, shipped as package data)."""
    return Path(__file__).resolve().parents[1] / "prompts" / "scene.txt"


class SceneDict(TypedDict):
    description: str
    objects: list[str]
    on_screen_text: str
    setting: str


class Scene(BaseModel):
    """A validated answer. Strict types: a number is not a string, a string is not a list."""

    model_config = ConfigDict(extra="ignore", strict=True, str_strip_whitespace=True, frozen=True)

    description: str = Field(min_length=1)
    objects: list[str]
    on_screen_text: str
    setting: str

    @field_validator("objects")
    @classmethod
    def _no_blank_objects(cls, value: list[str]) -> list[str]:
        return [item.strip() for item in value if item.strip()]

    def as_dict(self) -> SceneDict:
        return SceneDict(
            description=self.description,
            objects=list(self.objects),
            on_screen_text=self.on_screen_text,
            setting=self.setting,
        )


class SceneError(ValueError):
    """The VLM's answer is not a usable scene description."""


def _snippet(text: str, limit: int = _ERROR_BODY_CHARS) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


def first_json_object(text: str) -> dict[str, Any]:
    """The answer's JSON object: the whole text, or the first ``{...}`` in it that parses as one.

    That tolerates ```json fences and prose before or after the object. A text that is valid JSON
    but not an object (an array, a string) is refused rather than searched.
    """
    stripped = text.strip()
    if not stripped:
        raise SceneError("the VLM answered an empty text")
    try:
        whole = json.loads(stripped)
    except ValueError:
        pass
    else:
        if isinstance(whole, dict):
            return whole
        raise SceneError(f"the VLM answered JSON that is not an object: {_snippet(stripped)}")
    decoder = json.JSONDecoder()
    first_error: str | None = None
    start = stripped.find("{")
    while start != -1:
        try:
            value, _ = decoder.raw_decode(stripped, start)
        except ValueError as exc:
            first_error = first_error or str(exc)
        else:
            if isinstance(value, dict):
                return value
        start = stripped.find("{", start + 1)
    if first_error is not None:
        raise SceneError(f"the VLM's answer is not valid JSON ({first_error}): {_snippet(stripped)}")
    raise SceneError(f"no JSON object in the VLM's answer: {_snippet(stripped)}")


def parse_scene(text: str) -> Scene:
    """Extract and validate the scene; ``SceneError`` says what is wrong."""
    data = first_json_object(text)
    try:
        return Scene.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'answer'}: {err['msg']}"
            for err in exc.errors(include_url=False)
        )
        raise SceneError(f"the VLM's JSON is not a scene description ({problems})") from None


def chat_completions_url(base_url: str) -> str:
    """``{base}/v1/chat/completions``; a base that already ends in ``/v1`` (OpenAI style) is kept."""
    base = base_url.rstrip("/")
    if not base.endswith("/v1"):
        base += "/v1"
    return f"{base}/chat/completions"


def encode_jpeg(image: Image, max_side: int) -> bytes:
    """The image as JPEG, shrunk to at most ``max_side`` px on its longest side."""
    pil = PIL.Image.fromarray(image.rgb)
    if max(pil.size) > max_side:
        pil.thumbnail((max_side, max_side), PIL.Image.Resampling.BICUBIC)
    out = io.BytesIO()
    pil.save(out, format="JPEG", quality=_JPEG_QUALITY)
    return out.getvalue()


def _answer_text(body: Any) -> tuple[str, str | None]:
    """The assistant's text and finish reason from a chat-completions answer."""
    try:
        choice = body["choices"][0]
        content = choice["message"]["content"]
    except (KeyError, IndexError, TypeError):
        raise SceneError(f"not a chat-completions answer: {_snippet(json.dumps(body))}") from None
    if isinstance(content, list):  # content parts
        content = "".join(
            str(part.get("text", ""))
            for part in content
            if isinstance(part, dict) and part.get("type") == "text"
        )
    if not isinstance(content, str):
        raise SceneError("the VLM's answer has no text content")
    reason = choice.get("finish_reason")
    return content, reason if isinstance(reason, str) else None


class VLMRequestError(Exception):
    """The request did not produce an answer (HTTP error, timeout, connection)."""


class CaptionModel(InferenceModel[Image, SceneDict]):
    """One scene description per image from a remote VLM."""

    key: ClassVar[str] = "captions"  # the orchestrator's RECORD_MODELS name
    task: ClassVar[str] = "scene-description"
    name: ClassVar[str] = "openai-chat-vlm"  # capabilities report the served model's name instead
    vector_size: ClassVar[int | None] = None
    # Batches are sized from ML_VLM_CONCURRENCY (see __init__); these are only the class defaults.
    default_max_batch: ClassVar[int] = 16
    default_preferred_batch: ClassVar[int] = 8
    processing_version: ClassVar[str] = "1"  # request shape, image encoding, answer parsing

    def __init__(
        self,
        *,
        url: str,
        model: str,
        prompt_file: Path | None = None,
        api_key: str | None = None,
        timeout_s: float = 60.0,
        concurrency: int = 8,
        max_tokens: int = 512,
        image_max_side: int = 768,
        max_batch: int | None = None,
        preferred_batch: int | None = None,
    ) -> None:
        # One round of requests in flight is the batch the service prefers; a request may carry two.
        super().__init__(
            max_batch=max_batch or max(2 * concurrency, 1),
            preferred_batch=preferred_batch or concurrency,
            threads=1,
        )
        self.url = chat_completions_url(url)
        self.models_url = self.url.removesuffix("/chat/completions") + "/models"
        self.model = model
        self.prompt_file = prompt_file or packaged_prompt_file()
        self.timeout_s = timeout_s
        self.concurrency = concurrency
        self.max_tokens = max_tokens
        self.image_max_side = image_max_side
        self.instances = 1  # read like an instance group's (ml_service/models/registry.py)
        self._api_key = api_key
        self._prompt = ""
        self._json_mode = True  # response_format json_object, until the server says it has none
        self._json_mode_lock = threading.Lock()
        self._client: httpx.Client | None = None
        self._pool: ThreadPoolExecutor | None = None

    # --- loading ---------------------------------------------------------------------------------

    def weight_files(self) -> list[Path]:
        return [self.prompt_file]

    def processing_options(self) -> str:
        # The served model's name is its identity here (the weights live on the VLM server).
        return f"model={self.model};max_side={self.image_max_side};max_tokens={self.max_tokens}"

    def _load(self) -> None:
        if not self._prompt:  # read once: a reload after an unload keeps the prompt of the version
            prompt = self.prompt_file.read_text(encoding="utf-8").strip()
            if not prompt:
                raise ValueError(f"the VLM prompt file {self.prompt_file} is empty")
            self._prompt = prompt
        headers = {"Authorization": f"Bearer {self._api_key}"} if self._api_key else {}
        limits = httpx.Limits(max_connections=self.concurrency, max_keepalive_connections=self.concurrency)
        self._client = httpx.Client(
            timeout=httpx.Timeout(self.timeout_s), limits=limits, headers=headers, follow_redirects=False
        )
        self._pool = ThreadPoolExecutor(max_workers=self.concurrency, thread_name_prefix="ml-vlm")
        self._probe()

    def _probe(self) -> None:
        """Say in the log whether the VLM server answers and serves the model; never fails the load
        (a vLLM server often starts after this service, and each request reports its own error)."""
        assert self._client is not None
        try:
            response = self._client.get(self.models_url, timeout=min(self.timeout_s, _PROBE_TIMEOUT_S))
            response.raise_for_status()
            served = [str(m.get("id")) for m in response.json().get("data", []) if isinstance(m, dict)]
        except (httpx.HTTPError, ValueError, AttributeError) as exc:
            log.warning("vlm_not_reachable_yet", url=self.models_url, error=describe_error(exc))
            return
        if self.model in served:
            log.info("vlm_reachable", url=self.models_url, model=self.model)
        else:
            log.warning("vlm_model_not_served", url=self.models_url, model=self.model, served=served)

    def close(self) -> None:
        """Release the request threads and connections (a later ``_load`` makes new ones)."""
        pool, client = self._pool, self._client
        self._pool = self._client = None
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)
        if client is not None:
            client.close()

    def _unload(self) -> None:
        self.close()

    def capabilities(self) -> dict[str, object]:
        return {
            **super().capabilities(),
            "name": self.model,
            "device": "remote",  # the VLM server's; nothing runs here but HTTP
            "backend": "openai-chat-completions",
            "concurrency": self.concurrency,
            "timeout_s": self.timeout_s,
            "max_tokens": self.max_tokens,
            "image_max_side": self.image_max_side,
            "prompt_file": self.prompt_file.name,
        }

    # --- inference -------------------------------------------------------------------------------

    def _predict_batch(self, batch: Sequence[Image]) -> list[ItemResult[SceneDict]]:
        if self._pool is None:
            raise RuntimeError("the caption model is not loaded")
        return list(self._pool.map(self.describe, batch))

    def describe(self, image: Image) -> ItemResult[SceneDict]:
        """One image's scene, or the reason there is none (never raises)."""
        try:
            return ItemResult(value=self._describe(image))
        except SceneError as exc:  # it answered, but not a scene description
            log.info("vlm_item_failed", error=str(exc))
            return ItemResult(error=str(exc), code=ErrorCode.INVALID_OUTPUT)
        except VLMRequestError as exc:  # no usable answer: unreachable, too slow, an HTTP error
            log.info("vlm_item_failed", error=str(exc))
            return ItemResult(error=str(exc), code=ErrorCode.MODEL_UNAVAILABLE)
        except Exception as exc:  # a bug here must still stay this item's error
            log.exception("vlm_item_crashed")
            return ItemResult(error=describe_error(exc))

    def _describe(self, image: Image) -> SceneDict:
        jpeg = encode_jpeg(image, self.image_max_side)
        data_url = "data:image/jpeg;base64," + base64.b64encode(jpeg).decode("ascii")
        body = self._post(data_url)
        text, finish_reason = _answer_text(body)
        try:
            return parse_scene(text).as_dict()
        except SceneError as exc:
            if finish_reason == "length":
                raise SceneError(
                    f"the VLM's answer was cut at ML_VLM_MAX_TOKENS={self.max_tokens}: {exc}"
                ) from None
            raise

    def _payload(self, data_url: str, json_mode: bool) -> dict[str, Any]:
        payload: dict[str, Any] = {
            "model": self.model,
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {"type": "image_url", "image_url": {"url": data_url}},
                        {"type": "text", "text": self._prompt},
                    ],
                }
            ],
            "temperature": 0,
            "max_tokens": self.max_tokens,
        }
        if json_mode:
            payload["response_format"] = {"type": "json_object"}
        return payload

    def _post(self, data_url: str) -> Any:
        """The decoded JSON answer, after retrying 429/503 (bounded); raises ``VLMRequestError``."""
        client = self._client
        if client is None:
            raise VLMRequestError("the caption model was closed")
        retries = 0
        while True:
            json_mode = self._json_mode
            try:
                response = client.post(self.url, json=self._payload(data_url, json_mode))
            except httpx.TimeoutException as exc:
                raise VLMRequestError(
                    f"the VLM did not answer within ML_VLM_TIMEOUT_S={self.timeout_s:g} s "
                    f"({type(exc).__name__})"
                ) from None
            except httpx.HTTPError as exc:
                raise VLMRequestError(f"VLM request to {self.url} failed: {describe_error(exc)}") from None
            status = response.status_code
            if status == 200:
                try:
                    return response.json()
                except ValueError:
                    raise VLMRequestError(
                        f"the VLM server answered 200 with a body that is not JSON: {_snippet(response.text)}"
                    ) from None
            if status == 400 and json_mode and "response_format" in response.text:
                self._drop_json_mode(response.text)
                continue
            if status in RETRY_STATUSES and retries < MAX_RETRIES:
                wait = retry_after_seconds(response.headers.get("retry-after"))
                if wait is None:
                    wait = _BACKOFF_START_S * 2**retries
                if wait > MAX_RETRY_AFTER_S:
                    raise VLMRequestError(
                        f"the VLM server answered HTTP {status} and asks to retry after {wait:g} s "
                        f"(more than {MAX_RETRY_AFTER_S:g} s): {_snippet(response.text)}"
                    )
                retries += 1
                log.info("vlm_busy_retrying", status=status, wait_s=wait, attempt=retries)
                time.sleep(wait)
                continue
            tried = f" after {retries} retries" if retries else ""
            raise VLMRequestError(f"the VLM server answered HTTP {status}{tried}: {_snippet(response.text)}")

    def _drop_json_mode(self, answer: str) -> None:
        with self._json_mode_lock:
            if self._json_mode:
                self._json_mode = False
                log.warning("vlm_json_mode_unsupported", model=self.model, answer=_snippet(answer))
