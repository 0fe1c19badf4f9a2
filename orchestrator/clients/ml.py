"""Client of the ML service (docs/ml-api.md): capabilities, text embeddings, image analysis.

Bodies are orjson, not pydantic (PERF.md: ~3 ms vs ~6.5 ms a request). Transient failures (connection
refused, 5xx, 429 with Retry-After) are retried with capped exponential backoff until a deadline; after
that MLUnavailableError says why, and the job that needed the service fails with that reason.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import orjson

from orchestrator.logs import get_logger

log = get_logger(__name__)

_BACKOFF_START_S = 0.2
_BACKOFF_MAX_S = 5.0


WaitHook = Callable[[str | None], None]
# (endpoint, seconds, items in the request, outcome) for each request, e.g. into a latency histogram.
RequestObserver = Callable[[str, float, int, str], None]


class MLUnavailableError(Exception):
    """The ML service could not be reached or kept failing until the retry deadline."""


class MLRequestError(Exception):
    """The ML service rejected a request (4xx other than 429): retrying would not help."""


@dataclass(frozen=True, slots=True)
class EndpointLimits:
    max_batch: int
    preferred_batch: int
    max_concurrency: int


@dataclass(frozen=True, slots=True)
class Capabilities:
    models: dict[str, dict[str, Any]]
    endpoints: dict[str, EndpointLimits]
    raw: dict[str, Any] = field(repr=False)

    @property
    def text_dim(self) -> int:
        return int(self.models["text"]["vector_size"])

    @property
    def image_dim(self) -> int | None:
        model = self.models.get("image_text")
        return int(model["vector_size"]) if model and model.get("vector_size") else None

    @property
    def audio_tasks(self) -> list[str]:
        return [str(t) for t in self.raw.get("audio_tasks") or []]

    def limits(self, endpoint: str) -> EndpointLimits:
        return self.endpoints.get(endpoint, EndpointLimits(1, 1, 1))

    @classmethod
    def parse(cls, body: dict[str, Any]) -> Capabilities:
        endpoints = {
            path: EndpointLimits(
                max_batch=int(spec.get("max_batch", 1)),
                preferred_batch=int(spec.get("preferred_batch", spec.get("max_batch", 1))),
                max_concurrency=int(spec.get("max_concurrency", 1)),
            )
            for path, spec in body.get("endpoints", {}).items()
        }
        return cls(models=dict(body.get("models", {})), endpoints=endpoints, raw=body)


@dataclass(frozen=True, slots=True)
class ImageRequestItem:
    id: str
    jpeg: bytes


@dataclass(frozen=True, slots=True)
class AudioRequestItem:
    id: str
    pcm: bytes  # int16 little-endian mono at 16 kHz


class MLClient:
    """One per orchestrator; round-robins over ML_SERVICE_URLS (load-aware routing comes with replicas)."""

    def __init__(
        self,
        urls: list[str],
        *,
        timeout_s: float,
        retry_deadline_s: float,
        observe: RequestObserver | None = None,
    ) -> None:
        self._urls = urls
        self._observe = observe
        self._next_url = itertools.cycle(urls)
        self._retry_deadline_s = retry_deadline_s
        self._http = httpx.AsyncClient(timeout=httpx.Timeout(timeout_s, connect=5.0))
        self.requests = 0  # inference requests sent (capabilities and health not counted)

    async def close(self) -> None:
        await self._http.aclose()

    async def capabilities(self, on_wait: WaitHook | None = None) -> Capabilities:
        return Capabilities.parse(
            await self._call("GET", "/capabilities", None, count=False, on_wait=on_wait)
        )

    async def ready(self) -> bool:
        try:
            resp = await self._http.get(f"{self._urls[0]}/ready", timeout=2.0)
        except httpx.HTTPError:
            return False
        return resp.status_code == 200

    async def embed_text(
        self,
        texts: list[str],
        request_id: str | None = None,
        deadline_s: float | None = None,
        on_wait: WaitHook | None = None,
    ) -> list[list[float]]:
        """Vectors in request order; `deadline_s` shortens the retry window (interactive search)."""
        body = await self._call(
            "POST",
            "/v1/embed/text",
            {"texts": texts},
            request_id=request_id,
            deadline_s=deadline_s,
            on_wait=on_wait,
        )
        vectors: list[list[float]] = body["vectors"]
        if len(vectors) != len(texts):
            raise MLRequestError(f"embed/text answered {len(vectors)} vectors for {len(texts)} texts")
        return vectors

    async def analyze_images(
        self, items: list[ImageRequestItem], request_id: str | None = None, on_wait: WaitHook | None = None
    ) -> list[dict[str, Any]]:
        payload = {
            "images": [{"id": it.id, "data": base64.b64encode(it.jpeg).decode("ascii")} for it in items]
        }
        body = await self._call("POST", "/v1/analyze/images", payload, request_id=request_id, on_wait=on_wait)
        results: list[dict[str, Any]] = body["results"]
        if [r.get("id") for r in results] != [it.id for it in items]:
            raise MLRequestError("analyze/images answered results that do not match the request")
        return results

    async def analyze_audio(
        self,
        items: list[AudioRequestItem],
        tasks: list[str] | None = None,
        request_id: str | None = None,
        on_wait: WaitHook | None = None,
    ) -> list[dict[str, Any]]:
        """Transcripts with word times and speaker turns; times are relative to each item's start."""
        payload: dict[str, Any] = {
            "items": [
                {"id": it.id, "pcm": base64.b64encode(it.pcm).decode("ascii"), "sample_rate": 16000}
                for it in items
            ]
        }
        if tasks is not None:
            payload["tasks"] = tasks
        body = await self._call("POST", "/v1/analyze/audio", payload, request_id=request_id, on_wait=on_wait)
        results: list[dict[str, Any]] = body["results"]
        if [r.get("id") for r in results] != [it.id for it in items]:
            raise MLRequestError("analyze/audio answered results that do not match the request")
        return results

    def _observed(self, path: str, started: float, payload: dict[str, Any] | None, outcome: str) -> None:
        if self._observe is not None:
            self._observe(path, time.perf_counter() - started, _items(payload), outcome)

    async def _call(
        self,
        method: str,
        path: str,
        payload: dict[str, Any] | None,
        *,
        count: bool = True,
        request_id: str | None = None,
        deadline_s: float | None = None,
        on_wait: WaitHook | None = None,
    ) -> dict[str, Any]:
        """One request with retries; `on_wait` hears why we are waiting (and None once answered)."""
        window = self._retry_deadline_s if deadline_s is None else deadline_s
        deadline = time.monotonic() + window
        delay = _BACKOFF_START_S
        content = orjson.dumps(payload) if payload is not None else None
        headers = {"content-type": "application/json"}
        if request_id:
            headers["x-request-id"] = request_id
        last_reason = "no attempt made"
        waited = False
        while True:
            url = f"{next(self._next_url)}{path}"
            if count:
                self.requests += 1
            started = time.perf_counter()
            try:
                resp = await self._http.request(method, url, content=content, headers=headers)
            except httpx.TransportError as exc:
                self._observed(path, started, payload, "unreachable")
                last_reason = f"{type(exc).__name__}: {exc or 'connection failed'}"
                retry_after = None
            else:
                self._observed(path, started, payload, str(resp.status_code))
                if resp.status_code < 400:
                    if on_wait is not None and waited:
                        on_wait(None)
                    parsed: dict[str, Any] = orjson.loads(resp.content)
                    return parsed
                last_reason = f"HTTP {resp.status_code} from {url}: {resp.text[:200]}"
                if resp.status_code not in (429, 502, 503, 504) and resp.status_code < 500:
                    raise MLRequestError(last_reason)
                retry_after = _retry_after(resp)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise MLUnavailableError(
                    f"ML service unavailable after {window:.0f}s of retries: {last_reason}"
                )
            wait = min(retry_after if retry_after is not None else delay, remaining)
            log.warning("ml_retry", path=path, reason=last_reason, wait_s=round(wait, 2))
            waited = True
            if on_wait is not None:
                on_wait(f"ML service: {last_reason}; retrying for up to {remaining:.0f}s more")
            await asyncio.sleep(wait)
            delay = min(delay * 2, _BACKOFF_MAX_S)


def _items(payload: dict[str, Any] | None) -> int:
    if not payload:
        return 0
    return len(payload.get("texts") or payload.get("images") or payload.get("items") or [])


def _retry_after(resp: httpx.Response) -> float | None:
    value = resp.headers.get("retry-after")
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None
