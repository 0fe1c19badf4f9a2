"""Client of the ML service (docs/ml-api.md): capabilities, text embeddings, image and audio analysis.

Bodies are orjson, not pydantic (docs/performance-limits.md: ~3 ms vs ~6.5 ms a request). Requests go to the
replica of ML_SERVICE_URLS with the fewest items outstanding (`replicas.py`); a replica that fails is taken
out and the request goes to another one. Transient failures (connection refused, 502/503/504, 429 with
Retry-After) are retried with capped exponential backoff until a deadline; after that MLUnavailableError
says why, and the job that needed the service fails with that reason. A batch the service refuses (413: too
large; 400/422/500: an item it cannot take) is split in halves until the failing item stands alone: that
item gets the error, the others their results.
"""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import httpx
import orjson

from orchestrator.clients.replicas import Replica, ReplicaSet
from orchestrator.logs import get_logger

log = get_logger(__name__)

_BACKOFF_START_S = 0.2
_BACKOFF_MAX_S = 5.0
# A multi-item batch answered with one of these is split in halves (413: too large for the replica; the
# others: an item it cannot take); a single item keeps the error as its own.
_SPLIT_STATUSES = frozenset({400, 413, 422, 500})
# A 500 is retried this many times before it counts as the batch's fault.
_SERVER_ERROR_RETRIES = 1
_T = TypeVar("_T")
_R = TypeVar("_R")


WaitHook = Callable[[str | None], None]
# (endpoint, seconds, items in the request, outcome) for each request, e.g. into a latency histogram.
RequestObserver = Callable[[str, float, int, str], None]


class MLUnavailableError(Exception):
    """The ML service could not be reached or kept failing until the retry deadline."""


class MLRequestError(Exception):
    """The ML service rejected a request (4xx other than 429, or a repeated 500): retrying would not help."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


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

    def versions(self) -> dict[str, str]:
        return {name: str(m.get("version")) for name, m in sorted(self.models.items())}

    def narrowed(self, others: list[Capabilities]) -> Capabilities:
        """These capabilities with each endpoint's limits the smallest across self and `others`."""
        endpoints = dict(self.endpoints)
        for other in others:
            for path, mine in endpoints.items():
                theirs = other.endpoints.get(path)
                if theirs is not None:
                    endpoints[path] = EndpointLimits(
                        min(mine.max_batch, theirs.max_batch),
                        min(mine.preferred_batch, theirs.preferred_batch),
                        min(mine.max_concurrency, theirs.max_concurrency),
                    )
        return Capabilities(models=self.models, endpoints=endpoints, raw=self.raw)


@dataclass(frozen=True, slots=True)
class ImageRequestItem:
    id: str
    jpeg: bytes


@dataclass(frozen=True, slots=True)
class AudioRequestItem:
    id: str
    pcm: bytes  # int16 little-endian mono at 16 kHz


class MLClient:
    """One per orchestrator; spreads requests over the replicas of ML_SERVICE_URLS by outstanding items."""

    def __init__(
        self,
        urls: list[str],
        *,
        timeout_s: float,
        retry_deadline_s: float,
        observe: RequestObserver | None = None,
        health_interval_s: float = 2.0,
    ) -> None:
        self._replicas = ReplicaSet(urls)
        self._observe = observe
        self._retry_deadline_s = retry_deadline_s
        self._health_interval_s = health_interval_s
        self._http = httpx.AsyncClient(timeout=httpx.Timeout(timeout_s, connect=5.0))
        self.requests = 0  # inference requests sent (capabilities and health not counted)

    def start(self) -> None:
        """Start polling the replicas' health (only with more than one replica); needs a running loop."""
        self._replicas.start_health_checks(self._http, self._health_interval_s)

    async def close(self) -> None:
        await self._replicas.stop()
        await self._http.aclose()

    def replica_stats(self) -> list[dict[str, Any]]:
        return [r.snapshot() for r in self._replicas.replicas]

    async def capabilities(self, on_wait: WaitHook | None = None) -> Capabilities:
        """What every replica can do: models from the first that answers, each endpoint's limits the
        smallest any replica reports (so a batch sized from them fits whichever replica takes it)."""
        first = Capabilities.parse(
            await self._call("GET", "/capabilities", None, count=False, on_wait=on_wait)
        )
        # Which replica answered is the balancer's choice: ask every healthy one (one GET more than needed),
        # so that none is left out of the narrowing. A single replica has nothing to compare.
        replicas = self._replicas.replicas
        others = [r for r in replicas if r.healthy] if len(replicas) > 1 else []
        bodies = await asyncio.gather(*(self._peek(r, "/capabilities") for r in others))
        caps = [Capabilities.parse(b) for b in bodies if b is not None]
        for other in caps:
            if other.versions() != first.versions():
                log.warning("ml_replicas_differ", first=first.versions(), other=other.versions())
        return first.narrowed(caps)

    async def ready(self) -> bool:
        """At least one replica is ready."""
        answers = await asyncio.gather(*(self._peek(r, "/ready") for r in self._replicas.replicas))
        return any(a is not None for a in answers)

    async def _peek(self, replica: Replica, path: str) -> dict[str, Any] | None:
        try:
            resp = await self._http.get(f"{replica.url}{path}", timeout=2.0)
        except httpx.HTTPError:
            return None
        if resp.status_code != 200:
            return None
        body: dict[str, Any] = orjson.loads(resp.content)
        return body

    async def embed_text(
        self,
        texts: list[str],
        request_id: str | None = None,
        deadline_s: float | None = None,
        on_wait: WaitHook | None = None,
        space: str = "text",
    ) -> list[list[float] | None]:
        """Vectors in request order; None for a text the service could not embed. `deadline_s` shortens
        the retry window (interactive search). `space="image_text"`: the image–text model's space, to
        compare with stored image vectors (docs/ml-api.md)."""
        extra = {} if space == "text" else {"space": space}

        def results(body: dict[str, Any], part: list[str]) -> list[list[float] | None]:
            vectors: list[list[float] | None] = body["vectors"]
            if len(vectors) != len(part):
                raise MLRequestError(f"embed/text answered {len(vectors)} vectors for {len(part)} texts")
            return vectors

        return await self._split_call(
            "/v1/embed/text",
            texts,
            lambda part: {"texts": part, **extra},
            results,
            lambda _text, _reason: None,
            request_id=request_id,
            deadline_s=deadline_s,
            on_wait=on_wait,
        )

    async def analyze_images(
        self,
        items: list[ImageRequestItem],
        tasks: list[str] | None = None,
        request_id: str | None = None,
        on_wait: WaitHook | None = None,
    ) -> list[dict[str, Any]]:
        """Per image: OCR, faces, tags, objects, caption/scene (the `tasks` given; None: all loaded)."""

        def payload(part: list[ImageRequestItem]) -> dict[str, Any]:
            body: dict[str, Any] = {
                "images": [{"id": it.id, "data": base64.b64encode(it.jpeg).decode("ascii")} for it in part]
            }
            if tasks is not None:
                body["tasks"] = tasks
            return body

        return await self._split_call(
            "/v1/analyze/images",
            items,
            payload,
            _results_by_id("analyze/images"),
            _failed_item,
            request_id=request_id,
            on_wait=on_wait,
        )

    async def analyze_audio(
        self,
        items: list[AudioRequestItem],
        tasks: list[str] | None = None,
        request_id: str | None = None,
        on_wait: WaitHook | None = None,
    ) -> list[dict[str, Any]]:
        """Transcripts with word times and speaker turns; times are relative to each item's start."""

        def payload(part: list[AudioRequestItem]) -> dict[str, Any]:
            body: dict[str, Any] = {
                "items": [
                    {"id": it.id, "pcm": base64.b64encode(it.pcm).decode("ascii"), "sample_rate": 16000}
                    for it in part
                ]
            }
            if tasks is not None:
                body["tasks"] = tasks
            return body

        return await self._split_call(
            "/v1/analyze/audio",
            items,
            payload,
            _results_by_id("analyze/audio"),
            _failed_item,
            request_id=request_id,
            on_wait=on_wait,
        )

    async def _split_call(
        self,
        path: str,
        items: list[_T],
        payload_of: Callable[[list[_T]], dict[str, Any]],
        results_of: Callable[[dict[str, Any], list[_T]], list[_R]],
        failed: Callable[[_T, str], _R],
        **kwargs: Any,
    ) -> list[_R]:
        """One request for the batch; refused (413, or an item it cannot take), halves until the failing
        item stands alone and gets the error as its result."""
        try:
            body = await self._call("POST", path, payload_of(items), items=len(items), **kwargs)
        except MLRequestError as exc:
            if exc.status not in _SPLIT_STATUSES:
                raise
            if len(items) == 1:
                return [failed(items[0], str(exc))]
            log.warning("ml_batch_split", path=path, items=len(items), status=exc.status)
            mid = len(items) // 2
            half: Callable[[list[_T]], Awaitable[list[_R]]] = lambda part: self._split_call(  # noqa: E731
                path, part, payload_of, results_of, failed, **kwargs
            )
            return [*await half(items[:mid]), *await half(items[mid:])]
        return results_of(body, items)

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
        items: int = 0,
        request_id: str | None = None,
        deadline_s: float | None = None,
        on_wait: WaitHook | None = None,
    ) -> dict[str, Any]:
        """One request with retries over the replicas; `on_wait` hears why we are waiting (and None once
        answered)."""
        window = self._retry_deadline_s if deadline_s is None else deadline_s
        deadline = time.monotonic() + window
        delay = _BACKOFF_START_S
        content = orjson.dumps(payload) if payload is not None else None
        headers = {"content-type": "application/json"}
        if request_id:
            headers["x-request-id"] = request_id
        last_reason = "no attempt made"
        waited = False
        server_errors = 0
        tried: set[str] = set()  # replicas that failed this request since the last wait
        broken: dict[str, str] = {}  # replicas whose models failed to load: retrying cannot help
        replicas = self._replicas
        while True:
            replica = replicas.pick(tried)
            if replica is None:  # every replica failed, is out or is overloaded: wait, then try again
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise MLUnavailableError(
                        f"ML service unavailable after {window:.0f}s of retries: {last_reason}"
                    )
                hint = replicas.wait_hint()
                wait = min(hint if hint is not None else delay, remaining)
                log.warning("ml_retry", path=path, reason=last_reason, wait_s=round(wait, 2))
                waited = True
                if on_wait is not None:
                    on_wait(f"ML service: {last_reason}; retrying for up to {remaining:.0f}s more")
                await asyncio.sleep(wait)
                delay = min(delay * 2, _BACKOFF_MAX_S)
                tried.clear()
                replica = replicas.pick() or replicas.fallback()
            url = f"{replica.url}{path}"
            if count:
                self.requests += 1
            replica.requests += 1
            replica.outstanding += items
            started = time.perf_counter()
            try:
                resp = await self._http.request(method, url, content=content, headers=headers)
            except httpx.TransportError as exc:
                self._observed(path, started, payload, "unreachable")
                last_reason = f"{type(exc).__name__}: {exc or 'connection failed'} ({replica.url})"
                replicas.mark_down(replica, last_reason)
                tried.add(replica.url)
                continue
            finally:
                replica.outstanding -= items
            self._observed(path, started, payload, str(resp.status_code))
            status = resp.status_code
            if status < 400:
                replicas.mark_up(replica)
                if on_wait is not None and waited:
                    on_wait(None)
                parsed: dict[str, Any] = orjson.loads(resp.content)
                return parsed
            last_reason = f"HTTP {status} from {url}: {resp.text[:200]}"
            if status == 429:
                replicas.mark_busy(replica, _retry_after(resp) or delay)
            elif status in (502, 503, 504):
                replicas.mark_down(replica, last_reason)
                if status == 503 and _error_code(resp) == "models_failed":
                    broken[replica.url] = last_reason
                    if len(broken) == len(replicas.replicas):
                        raise MLUnavailableError(f"ML service cannot serve, its models failed: {last_reason}")
            elif status == 500 and server_errors < _SERVER_ERROR_RETRIES:
                server_errors += 1
            else:
                raise MLRequestError(last_reason, status)
            tried.add(replica.url)


def _results_by_id(name: str) -> Callable[[dict[str, Any], list[Any]], list[dict[str, Any]]]:
    def results(body: dict[str, Any], part: list[Any]) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = body["results"]
        if [r.get("id") for r in found] != [it.id for it in part]:
            raise MLRequestError(f"{name} answered results that do not match the request")
        return found

    return results


def _failed_item(item: ImageRequestItem | AudioRequestItem, reason: str) -> dict[str, Any]:
    return {"id": item.id, "ok": False, "error": f"the ML service refused this item: {reason}"}


def _items(payload: dict[str, Any] | None) -> int:
    if not payload:
        return 0
    return len(payload.get("texts") or payload.get("images") or payload.get("items") or [])


def _error_code(resp: httpx.Response) -> str | None:
    """The ``code`` of an error body (docs/ml-api.md), None when there is none."""
    try:
        body = orjson.loads(resp.content)
    except orjson.JSONDecodeError:
        return None
    code = body.get("code") if isinstance(body, dict) else None
    return code if isinstance(code, str) else None


def _retry_after(resp: httpx.Response) -> float | None:
    value = resp.headers.get("retry-after")
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None
