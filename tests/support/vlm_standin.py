"""A stand-in VLM server speaking the OpenAI-compatible chat-completions protocol (as vLLM serves it).

    with running_vlm_standin(model="standin-vlm", max_side=256) as vlm:   # vlm.url: "http://127.0.0.1:<port>"
        vlm.set_mode("green", "invalid_json")                           # per dominant colour of the image
        ...                                                              # point ML_VLM_URL at vlm.url
        assert vlm.problems == []                                        # every request had the right shape

It runs in a thread of the test process (``http.server``, one thread per connection) on a free loopback
port. ``POST /v1/chat/completions`` checks the request: the model name, a user message with a text part and
an ``image_url`` part whose data URL decodes to a JPEG or PNG no longer than ``max_side``, ``temperature``
0, a positive ``max_tokens`` and (unless ``require_json_mode`` is off) ``response_format`` json_object, plus
the bearer key when one is set. A request that breaks a rule gets 400 and is listed in ``problems``.

The answer depends on the image: its dominant colour (nearest of ``PALETTE``) picks the mode and the words
of a good answer, so a test can tell which answer went to which item. Modes (``MODES``):

- ``good``: the scene as plain JSON (``scene_for(colour)``); ``fenced``: the same inside a ```json fence;
  ``prose``: the same with prose before and after it.
- ``invalid_json``, ``missing_keys`` (no ``setting``), ``wrong_types`` (``objects`` a string), ``bad_fields``
  (both: two validation errors in one message), ``not_object`` (a JSON array), ``empty`` (no text),
  ``truncated`` (cut JSON, finish_reason "length").
- ``http_500``; ``busy_429`` / ``busy_503``: that status with ``Retry-After: <retry_after_s>`` for the first
  ``busy_times`` requests of that colour, then ``good``; ``always_429``: 429 with ``Retry-After: 0`` forever.
- ``slow``: ``good`` after ``slow_s`` seconds (beyond the client's timeout).
- ``no_json_mode``: 400 naming response_format when the request has one, else ``good`` (an older server).

Modes are set per colour from the test (``set_mode``) or over HTTP (``PUT /admin/modes`` with
``{"colour": "mode"}``; ``GET /admin/requests``; ``POST /admin/reset``), for a server in another process.
``GET /v1/models`` lists the model; ``GET /health`` answers 200.
"""

from __future__ import annotations

import base64
import binascii
import io
import json
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import numpy as np
import PIL.Image

PALETTE: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 30),
    "green": (30, 160, 50),
    "blue": (30, 60, 220),
    "yellow": (240, 220, 30),
    "magenta": (220, 40, 200),
    "cyan": (40, 210, 220),
    "orange": (245, 140, 20),
    "white": (245, 245, 245),
    "black": (15, 15, 15),
    "gray": (128, 128, 128),
}
# One thing per colour (a phrase for the description, a noun for "objects") that only the stand-in's answers
# mention: search tests look for these words.
THINGS: dict[str, tuple[str, str]] = {
    "red": ("vintage fire engine", "fire engine"),
    "green": ("tractor in a cabbage field", "tractor"),
    "blue": ("submarine moored under a pier", "submarine"),
    "yellow": ("school bus beside a sunflower stall", "school bus"),
    "magenta": ("flamingo statue", "flamingo"),
    "cyan": ("swimming pool slide", "slide"),
    "orange": ("pumpkin cart", "pumpkin"),
    "white": ("snow igloo", "igloo"),
    "black": ("grand piano on a stage", "piano"),
    "gray": ("concrete lighthouse", "lighthouse"),
}
MODES = frozenset(
    {
        "good",
        "fenced",
        "prose",
        "invalid_json",
        "missing_keys",
        "wrong_types",
        "bad_fields",
        "not_object",
        "empty",
        "truncated",
        "http_500",
        "busy_429",
        "busy_503",
        "always_429",
        "slow",
        "no_json_mode",
    }
)


def scene_for(colour: str) -> dict[str, Any]:
    """The good answer for an image of that dominant colour."""
    phrase, noun = THINGS[colour]
    return {
        "description": f"A {phrase} in front of a plain {colour} wall.",
        "objects": [noun, "wall"],
        "on_screen_text": "",
        "setting": f"{colour} studio",
    }


def solid_image(colour: str, size: tuple[int, int] = (96, 64), fmt: str = "PNG") -> bytes:
    """An encoded image of one palette colour (what tests send)."""
    out = io.BytesIO()
    PIL.Image.new("RGB", size, PALETTE[colour]).save(out, format=fmt)
    return out.getvalue()


def dominant_colour(pil: PIL.Image.Image) -> str:
    """The palette colour nearest to the image's mean colour."""
    mean = np.asarray(pil.convert("RGB").resize((16, 16)), dtype=np.float64).mean(axis=(0, 1))
    return min(PALETTE, key=lambda name: float(((np.array(PALETTE[name]) - mean) ** 2).sum()))


@dataclass(slots=True)
class Recorded:
    """One chat-completions request as the stand-in saw it."""

    colour: str | None
    mode: str | None
    status: int
    image_size: tuple[int, int] | None
    image_format: str | None
    body: dict[str, Any] = field(repr=False)
    at: float = field(default_factory=time.monotonic)


class BadRequest(Exception):
    pass


class VLMStandIn:
    """State and behaviour of the stand-in; ``running_vlm_standin`` serves it."""

    def __init__(
        self,
        *,
        model: str = "standin-vlm",
        max_side: int | None = None,
        api_key: str | None = None,
        require_json_mode: bool = True,
        slow_s: float = 5.0,
        retry_after_s: int = 1,
        busy_times: int = 1,
    ) -> None:
        self.model = model
        self.max_side = max_side
        self.api_key = api_key
        self.require_json_mode = require_json_mode
        self.slow_s = slow_s
        self.retry_after_s = retry_after_s
        self.busy_times = busy_times
        self.url = ""  # set once serving: http://127.0.0.1:<port>
        self._lock = threading.Lock()
        self._modes: dict[str, str] = {}
        self._busy_seen: Counter[str] = Counter()
        self.requests: list[Recorded] = []
        self.problems: list[str] = []
        self.stopping = threading.Event()

    # --- test controls ---------------------------------------------------------------------------

    def set_mode(self, colour: str, mode: str) -> None:
        if colour not in PALETTE or mode not in MODES:
            raise ValueError(f"unknown colour {colour!r} or mode {mode!r}")
        with self._lock:
            self._modes[colour] = mode

    def reset(self) -> None:
        """Every colour back to ``good``; records and problems cleared."""
        with self._lock:
            self._modes.clear()
            self._busy_seen.clear()
            self.requests.clear()
            self.problems.clear()

    def mode_of(self, colour: str) -> str:
        with self._lock:
            return self._modes.get(colour, "good")

    def count(self, colour: str) -> int:
        """Chat-completions requests seen for images of that colour."""
        with self._lock:
            return sum(1 for r in self.requests if r.colour == colour)

    # --- the protocol ----------------------------------------------------------------------------

    def check(self, body: Any, authorization: str | None) -> PIL.Image.Image:
        """The request's image, or ``BadRequest`` naming the first rule it breaks."""
        if self.api_key is not None and authorization != f"Bearer {self.api_key}":
            raise BadRequest(f"bad Authorization header {authorization!r}")
        if not isinstance(body, dict):
            raise BadRequest("body is not a JSON object")
        if body.get("model") != self.model:
            raise BadRequest(f"model {body.get('model')!r} is not served (only {self.model!r})")
        temperature = body.get("temperature")
        if temperature != 0 or isinstance(temperature, bool):
            raise BadRequest(f"temperature {temperature!r} is not 0")
        max_tokens = body.get("max_tokens")
        if not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1:
            raise BadRequest(f"max_tokens {max_tokens!r} is not a positive integer")
        response_format = body.get("response_format")
        if response_format is not None and response_format != {"type": "json_object"}:
            raise BadRequest(f"unexpected response_format {response_format!r}")
        if self.require_json_mode and response_format is None:
            raise BadRequest("response_format json_object is missing")
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            raise BadRequest("messages is not a non-empty list")
        user = messages[-1]
        if (
            not isinstance(user, dict)
            or user.get("role") != "user"
            or not isinstance(user.get("content"), list)
        ):
            raise BadRequest("the last message is not a user message with content parts")
        parts = user["content"]
        texts = [p for p in parts if isinstance(p, dict) and p.get("type") == "text"]
        images = [p for p in parts if isinstance(p, dict) and p.get("type") == "image_url"]
        if len(texts) != 1 or len(images) != 1 or len(parts) != 2:
            raise BadRequest("content must be one text part and one image_url part")
        if not isinstance(texts[0].get("text"), str) or not texts[0]["text"].strip():
            raise BadRequest("the text part is empty")
        url = (images[0].get("image_url") or {}).get("url")
        if not isinstance(url, str) or not url.startswith(
            ("data:image/jpeg;base64,", "data:image/png;base64,")
        ):
            raise BadRequest("image_url is not a JPEG/PNG data URL")
        try:
            raw = base64.b64decode(url.partition(",")[2], validate=True)
            pil = PIL.Image.open(io.BytesIO(raw))
            pil.load()
        except (binascii.Error, ValueError, OSError) as exc:
            raise BadRequest(f"the data URL does not decode to an image: {exc}") from None
        declared = "JPEG" if url.startswith("data:image/jpeg") else "PNG"
        if pil.format != declared:
            raise BadRequest(f"data URL says {declared}, the bytes are {pil.format}")
        if self.max_side is not None and max(pil.size) > self.max_side:
            raise BadRequest(f"image {pil.size} is longer than {self.max_side} px")
        return pil

    def answer(self, body: Any, authorization: str | None) -> tuple[int, dict[str, str], bytes]:
        """Status, headers and body for one chat-completions request."""
        try:
            pil = self.check(body, authorization)
        except BadRequest as exc:
            with self._lock:
                self.problems.append(str(exc))
                self.requests.append(
                    Recorded(None, None, 400, None, None, body if isinstance(body, dict) else {})
                )
            return _json(
                400, {"object": "error", "message": str(exc), "type": "BadRequestError", "code": 400}
            )
        colour = dominant_colour(pil)
        mode = self.mode_of(colour)
        json_mode = body.get("response_format") is not None
        status, headers, content, finish = 200, {}, None, "stop"
        if mode in ("busy_429", "busy_503"):
            with self._lock:
                self._busy_seen[colour] += 1
                busy = self._busy_seen[colour] <= self.busy_times
            if busy:
                status = 429 if mode == "busy_429" else 503
                headers = {"Retry-After": str(self.retry_after_s)}
            mode = "good"
        if mode == "always_429":
            status, headers = 429, {"Retry-After": "0"}
        elif mode == "http_500":
            status = 500
        elif mode == "no_json_mode" and json_mode:
            status = 400
        with self._lock:
            self.requests.append(Recorded(colour, mode, status, pil.size, pil.format, body))
        if status == 400:
            return _json(400, {"object": "error", "message": "response_format is not supported", "code": 400})
        if status != 200:
            return _json(status, {"object": "error", "message": f"stand-in {mode}", "code": status}, headers)
        if mode == "slow":
            self.stopping.wait(self.slow_s)
        scene = json.dumps(scene_for(colour))
        match mode:
            case "fenced":
                content = f"```json\n{scene}\n```"
            case "prose":
                content = (
                    f"Sure! Here is the description you asked for:\n{scene}\nLet me know if you need more."
                )
            case "invalid_json":
                content = '{"description": "A broken answer", "objects": ["x",], setting: }'
            case "missing_keys":
                content = json.dumps({k: v for k, v in scene_for(colour).items() if k != "setting"})
            case "wrong_types":
                content = json.dumps({**scene_for(colour), "objects": "wall, thing"})
            case "bad_fields":
                bad = {k: v for k, v in scene_for(colour).items() if k != "setting"}
                content = json.dumps({**bad, "objects": "wall, thing"})
            case "not_object":
                content = json.dumps([scene_for(colour)])
            case "empty":
                content = ""
            case "truncated":
                content, finish = scene[: len(scene) // 2], "length"
            case _:
                content = scene
        return _json(
            200,
            {
                "id": f"chatcmpl-standin-{len(self.requests)}",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": self.model,
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": content},
                        "finish_reason": finish,
                    }
                ],
                "usage": {"prompt_tokens": 100, "completion_tokens": 50, "total_tokens": 150},
            },
        )

    def admin(self, method: str, path: str, body: Any) -> tuple[int, dict[str, str], bytes]:
        if method == "PUT" and path == "/admin/modes" and isinstance(body, dict):
            try:
                for colour, mode in body.items():
                    self.set_mode(str(colour), str(mode))
            except ValueError as exc:
                return _json(400, {"detail": str(exc)})
            return _json(200, {"modes": dict(self._modes)})
        if method == "POST" and path == "/admin/reset":
            self.reset()
            return _json(200, {"ok": True})
        if method == "GET" and path == "/admin/requests":
            with self._lock:
                seen = [
                    {"colour": r.colour, "mode": r.mode, "status": r.status, "image_size": r.image_size}
                    for r in self.requests
                ]
                return _json(200, {"requests": seen, "problems": list(self.problems)})
        return _json(404, {"detail": f"no route {method} {path}"})


def _json(
    status: int, content: Any, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], bytes]:
    return status, headers or {}, json.dumps(content).encode()


def _handler(standin: VLMStandIn) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as the client's connection pool expects

        def _send(self, status: int, headers: dict[str, str], payload: bytes) -> None:
            try:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                for name, value in headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(payload)
            except (BrokenPipeError, ConnectionResetError):  # the client gave up (its timeout)
                self.close_connection = True

        def _body(self) -> Any:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            try:
                return json.loads(raw) if raw else None
            except ValueError:
                return None

        def do_GET(self) -> None:
            if self.path == "/health":
                self._send(200, {}, b"{}")
            elif self.path == "/v1/models":
                self._send(
                    *_json(200, {"object": "list", "data": [{"id": standin.model, "object": "model"}]})
                )
            else:
                self._send(*standin.admin("GET", self.path, None))

        def do_POST(self) -> None:
            body = self._body()
            if self.path == "/v1/chat/completions":
                self._send(*standin.answer(body, self.headers.get("Authorization")))
            else:
                self._send(*standin.admin("POST", self.path, body))

        def do_PUT(self) -> None:
            self._send(*standin.admin("PUT", self.path, self._body()))

        def log_message(self, *args: object) -> None:
            pass

    return Handler


@contextmanager
def running_vlm_standin(**options: Any) -> Iterator[VLMStandIn]:
    """Serve a ``VLMStandIn(**options)`` on a free loopback port for the duration of the block."""
    standin = VLMStandIn(**options)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(standin))
    server.daemon_threads = True
    standin.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, name="vlm-standin", daemon=True)
    thread.start()
    try:
        yield standin
    finally:
        standin.stopping.set()  # slow answers return at once
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


# --- an ML service configured for the stand-in -------------------------------------------------------

STANDIN_MODEL = "standin-vlm"
# Small, so that the tests run quickly: images go out at most 256 px long, an answer is awaited 2 s.
STANDIN_IMAGE_MAX_SIDE = 256
STANDIN_TIMEOUT_S = 2.0
STANDIN_CONCURRENCY = 4


def ml_env(url: str, **overrides: str) -> dict[str, str]:
    """Environment of an ML service whose only image task is "caption", asking the stand-in at ``url``;
    the text model stays on (the alias endpoint and the orchestrator need it), the audio models off."""
    return {
        "ML_VLM_URL": url,
        "ML_VLM_MODEL": STANDIN_MODEL,
        "ML_VLM_TIMEOUT_S": str(STANDIN_TIMEOUT_S),
        "ML_VLM_CONCURRENCY": str(STANDIN_CONCURRENCY),
        "ML_VLM_IMAGE_MAX_SIDE": str(STANDIN_IMAGE_MAX_SIDE),
        "ML_IMAGE_TASKS": "caption",
        "ML_TEXT_ENABLED": "true",
        "ML_ASR_ENABLED": "false",
        "ML_VOICES_ENABLED": "false",
        **overrides,
    }
