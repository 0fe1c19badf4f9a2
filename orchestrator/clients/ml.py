"""Client of the ML service (docs/ml-api.md): capabilities, text embeddings, image and audio analysis.

Bodies are orjson, not pydantic (docs/performance-limits.md: ~3 ms vs ~6.5 ms a request). Requests go to the
replica of ML_SERVICE_URLS with the fewest items outstanding (`replicas.py`). A replica that refuses the
connection or answers 502/503/504 is dead: taken out, and the request goes to another one; one that does not
answer in time is slow: the request goes to another one, the replica stays in. When every replica failed
a round, tenacity pauses (the Retry-After of an overloaded replica, else capped exponential backoff) and
tries again until the deadline; after that MLUnavailableError says why, and the job that needed the service
fails with that reason (503 "models_failed" from every replica fails at once: retrying cannot help). A
batch the service refuses (413: too large; 400/422/500: an item it cannot take) is split in halves until
the failing item stands alone: that item gets the error, the others their results.
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
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type

from orchestrator.clients.replicas import Replica, ReplicaSet
from orchestrator.clients.retry_after import retry_after_seconds
from orchestrator.logs import get_logger

log = get_logger(__name__)

_BACKOFF_START_S = 0.2  # pause after the first failed round; doubles each round up to the max
_BACKOFF_MAX_S = 5.0
_CONNECT_TIMEOUT_S = 5.0  # a TCP connection takes milliseconds to a live replica
_MIN_REQUEST_S = 0.05  # a request cut to its call's deadline still gets this long
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


class _RetryableError(Exception):
    """Every replica tried this round failed for a reason that may pass (the message says which)."""


class MLRequestError(Exception):
    """The ML service rejected a request (4xx other than 429, or a repeated 500): retrying would not help."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class MLReplicasDisagreeError(Exception):
    """ML replicas run different versions of a model: refused, never mixed."""

    def __init__(self, answered: list[tuple[str, Capabilities]]) -> None:
        keys = sorted({k for _, c in answered for k in c.versions()})
        differ = [k for k in keys if len({c.versions().get(k) for _, c in answered}) > 1]
        shown = "; ".join(
            f"{key}: " + ", ".join(f"{c.versions().get(key)} at {url}" for url, c in answered)
            for key in differ
        )
        super().__init__(
            f"ML replicas run different model versions ({shown}); a job would mix vectors of two models "
            "in one collection: give every replica the same models (or upgrade them all) and start again"
        )


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


@dataclass(slots=True)
class _Request:
    """One call to the ML service, shared by its attempts: what to send and what happened so far."""

    method: str
    path: str
    payload: dict[str, Any] | None
    content: bytes | None
    headers: dict[str, str]
    items: int
    count: bool
    timeout_s: float | None  # each request's timeout; None: the client's
    deadline: float | None  # monotonic; set for calls with their own deadline (requests are cut to it)
    rounds: int = 0
    server_errors: int = 0
    broken: set[str] = field(default_factory=set)  # replicas whose models failed to load
    last_reason: str = ""
    waited: bool = False


@dataclass(frozen=True, slots=True)
class ImageRequestItem:
    id: str
    jpeg: bytes


@dataclass(frozen=True, slots=True)
class AudioRequestItem:
    id: str
    pcm: bytes  # int16 little-endian mono at 16 kHz
    # Heard just before and after `pcm` by the speaker model only (turns come back for `pcm`'s span).
    context_before: bytes = b""
    context_after: bytes = b""
    # ASR decodes in this language (its file's, where the chunk's own detection was unsure); None: detected.
    language: str | None = None


def _audio_item(item: AudioRequestItem) -> dict[str, Any]:
    def b64(pcm: bytes) -> str:
        return base64.b64encode(pcm).decode("ascii")

    body = {"id": item.id, "pcm": b64(item.pcm), "sample_rate": 16000}
    if item.context_before:
        body["context_before"] = b64(item.context_before)
    if item.context_after:
        body["context_after"] = b64(item.context_after)
    if item.language:
        body["language"] = item.language
    return body


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
        api_key: str | None = None,
    ) -> None:
        self._replicas = ReplicaSet(urls)
        self._observe = observe
        self._retry_deadline_s = retry_deadline_s
        self._health_interval_s = health_interval_s
        # ML_SERVICE_API_KEY on every request, the replicas' /ready probes too (they use this client).
        headers = {"x-api-key": api_key} if api_key else None
        self._http = httpx.AsyncClient(timeout=httpx.Timeout(timeout_s, connect=5.0), headers=headers)
        self.requests = 0  # inference requests sent (capabilities and health not counted)

    def start(self) -> None:
        """Start polling the replicas' health (only with more than one replica); needs a running loop."""
        self._replicas.start_health_checks(self._http, self._health_interval_s)

    async def close(self) -> None:
        await self._replicas.stop()
        await self._http.aclose()

    def replica_stats(self) -> list[dict[str, Any]]:
        return [r.snapshot() for r in self._replicas.replicas]

    async def capabilities(
        self, on_wait: WaitHook | None = None, deadline_s: float | None = None
    ) -> Capabilities:
        """What every replica can do: models from the first that answers, each endpoint's limits the
        smallest any replica reports (so a batch sized from them fits whichever replica takes it).
        Replicas that run different model versions raise MLReplicasDisagreeError: a job fed by both
        would mix vectors of two models in one collection."""
        first = Capabilities.parse(
            await self._call(
                "GET", "/capabilities", None, count=False, on_wait=on_wait, deadline_s=deadline_s
            )
        )
        # Which replica answered is the balancer's choice: ask every healthy one (one GET more than needed),
        # so that none is left out of the narrowing. A single replica has nothing to compare.
        replicas = self._replicas.replicas
        others = [r for r in replicas if r.healthy] if len(replicas) > 1 else []
        bodies = await asyncio.gather(*(self._peek(r, "/capabilities") for r in others))
        answered = [
            (r.url, Capabilities.parse(b)) for r, b in zip(others, bodies, strict=True) if b is not None
        ]
        if any(c.versions() != first.versions() for _, c in answered):
            raise MLReplicasDisagreeError(answered)
        return first.narrowed([c for _, c in answered])

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
        timeout_s: float | None = None,
        version: str | None = None,
        query: bool = False,
    ) -> list[list[float] | None]:
        """Vectors in request order; None for a text the service could not embed. `deadline_s` bounds the
        whole call and `timeout_s` each request (interactive search: both short). `space="image_text"`:
        the image–text model's space, to compare with stored image vectors (docs/ml-api.md). `version`:
        the model version that must embed (a collection built with an earlier model than the current
        one; the service answers 404 `version_not_served` when it does not keep that one). `query`: the
        texts are search queries, not documents (models such as multilingual-e5 read the two differently)."""
        extra: dict[str, Any] = {} if space == "text" else {"space": space}
        if query:
            extra["input_type"] = "query"
        if version is not None:
            extra["version"] = version

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
            timeout_s=timeout_s,
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
            body: dict[str, Any] = {"items": [_audio_item(it) for it in part]}
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

    def _observed(self, request: _Request, started: float, outcome: str) -> None:
        if self._observe is not None:
            self._observe(request.path, time.perf_counter() - started, _items(request.payload), outcome)

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
        timeout_s: float | None = None,
        on_wait: WaitHook | None = None,
    ) -> dict[str, Any]:
        """One request with retries over the replicas (tenacity: rounds until the deadline, a pause between
        rounds); `on_wait` hears why we are waiting (and None once answered). A call with its own
        `deadline_s` (interactive) never outlives it: each request's timeout is cut to the time left."""
        window = self._retry_deadline_s if deadline_s is None else deadline_s
        deadline = time.monotonic() + window
        headers = {"content-type": "application/json"}
        if request_id:
            headers["x-request-id"] = request_id
        request = _Request(
            method=method,
            path=path,
            payload=payload,
            content=orjson.dumps(payload) if payload is not None else None,
            headers=headers,
            items=items,
            count=count,
            timeout_s=timeout_s,
            deadline=deadline if deadline_s is not None else None,
        )

        def pause(state: RetryCallState) -> float:
            hint = self._replicas.wait_hint()  # an overloaded replica said when it takes work again
            wanted = hint if hint is not None else _backoff_s(state.attempt_number)
            return max(0.0, min(wanted, deadline - time.monotonic()))

        def waiting(state: RetryCallState) -> None:
            request.waited = True
            wait_s = state.next_action.sleep if state.next_action is not None else 0.0
            log.warning("ml_retry", path=path, reason=request.last_reason, wait_s=round(wait_s, 2))
            if on_wait is not None:
                left = deadline - time.monotonic()
                on_wait(f"ML service: {request.last_reason}; retrying for up to {left:.0f}s more")

        retrying = AsyncRetrying(
            stop=lambda _state: time.monotonic() >= deadline,
            wait=pause,
            retry=retry_if_exception_type(_RetryableError),
            before_sleep=waiting,
            reraise=True,
        )
        try:
            body: dict[str, Any] = await retrying(self._round, request)
        except _RetryableError:
            raise MLUnavailableError(
                f"ML service unavailable after {window:.0f}s of retries: {request.last_reason}"
            ) from None
        if on_wait is not None and request.waited:
            on_wait(None)
        return body

    async def _round(self, request: _Request) -> dict[str, Any]:
        """One try on each usable replica in turn (no pause between them). The first round only uses
        replicas that are up and not overloaded; a later one falls back to any (a request to a replica
        marked down doubles as a probe)."""
        request.rounds += 1
        replicas = self._replicas
        tried: set[str] = set()
        replica = replicas.pick() or (replicas.fallback() if request.rounds > 1 else None)
        if replica is None:
            request.last_reason = request.last_reason or "every replica is out or overloaded"
        while replica is not None:
            tried.add(replica.url)
            try:
                return await self._send(replica, request)
            except _RetryableError as exc:
                request.last_reason = str(exc)
            replica = replicas.pick(tried)
        raise _RetryableError(request.last_reason)

    async def _send(self, replica: Replica, request: _Request) -> dict[str, Any]:
        """One HTTP request to one replica: its body, or why not. A refused or broken connection means the
        replica is dead (taken out until /ready answers); no answer in time means it is slow (the request
        goes elsewhere, the replica stays in)."""
        replicas = self._replicas
        url = f"{replica.url}{request.path}"
        timeout = self._timeout(request)
        if request.count:
            self.requests += 1
        replica.requests += 1
        replica.outstanding += request.items
        started = time.perf_counter()
        try:
            resp = await self._http.request(
                request.method, url, content=request.content, headers=request.headers, timeout=timeout
            )
        except (httpx.ReadTimeout, httpx.WriteTimeout, httpx.PoolTimeout) as exc:
            self._observed(request, started, "timeout")
            replica.slow += 1
            reason = f"no answer within {timeout.read or 0:g}s ({replica.url})"
            log.info("ml_replica_slow", url=replica.url, path=request.path, timeout_s=timeout.read)
            raise _RetryableError(reason) from exc
        except httpx.TransportError as exc:
            self._observed(request, started, "unreachable")
            reason = f"{type(exc).__name__}: {exc or 'connection failed'} ({replica.url})"
            replicas.mark_down(replica, reason)
            raise _RetryableError(reason) from exc
        finally:
            replica.outstanding -= request.items
        status = resp.status_code
        self._observed(request, started, str(status))
        if status < 400:
            replicas.mark_up(replica)
            parsed: dict[str, Any] = orjson.loads(resp.content)
            return parsed
        reason = f"HTTP {status} from {url}: {resp.text[:200]}"
        if status == 429:
            wait_s = retry_after_seconds(resp.headers.get("retry-after"))
            replicas.mark_busy(replica, wait_s if wait_s is not None else _backoff_s(request.rounds))
        elif status in (502, 503, 504):
            replicas.mark_down(replica, reason)
            if status == 503 and _error_code(resp) == "models_failed":
                request.broken.add(replica.url)  # its models failed to load: retrying cannot help
                if len(request.broken) == len(replicas.replicas):
                    raise MLUnavailableError(f"ML service cannot serve, its models failed: {reason}")
        elif status == 500 and request.server_errors < _SERVER_ERROR_RETRIES:
            request.server_errors += 1
        else:
            raise MLRequestError(reason, status)
        raise _RetryableError(reason)

    def _timeout(self, request: _Request) -> httpx.Timeout:
        """The request's own timeout (else the client's), cut to the call's deadline when it has one."""
        total = request.timeout_s if request.timeout_s is not None else self._http.timeout.read
        if request.deadline is not None:
            left = max(_MIN_REQUEST_S, request.deadline - time.monotonic())
            total = left if total is None else min(total, left)
        if total is None:
            return self._http.timeout
        return httpx.Timeout(total, connect=min(_CONNECT_TIMEOUT_S, total))


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


def _backoff_s(rounds: int) -> float:
    """The pause after `rounds` failed rounds when no replica said how long: 0.2 s doubling to 5 s."""
    return float(min(_BACKOFF_START_S * 2 ** max(0, rounds - 1), _BACKOFF_MAX_S))


def _error_code(resp: httpx.Response) -> str | None:
    """The ``code`` of an error body (docs/ml-api.md), None when there is none."""
    try:
        body = orjson.loads(resp.content)
    except orjson.JSONDecodeError:
        return None
    code = body.get("code") if isinstance(body, dict) else None
    return code if isinstance(code, str) else None
