"""A multipart/form-data body read as a stream (python-multipart's push parser): the one file part goes
straight into a `FileSink`, never to a spooled temporary file (Starlette's `request.form()` spools every
file to one, which writes each upload twice); the few small fields are kept in memory."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

from python_multipart import MultipartParser
from python_multipart.exceptions import FormParserError
from python_multipart.multipart import parse_options_header

from orchestrator.sources.sink import FileSink

MAX_FIELD_BYTES = 4096
MAX_FIELDS = 16


class FormError(ValueError):
    """The body is not the form expected (HTTP 400/422); the message says why."""


@dataclass(slots=True)
class _Part:
    headers: dict[bytes, bytes] = field(default_factory=dict)
    name: str = ""
    filename: str | None = None
    value: bytearray = field(default_factory=bytearray)


@dataclass(slots=True)
class Form:
    fields: dict[str, str]
    sink: FileSink | None  # the file part, finished by the caller
    filename: str | None


async def receive_form(
    chunks: AsyncIterator[bytes],
    content_type: str,
    file_field: str,
    open_sink: Callable[[str], FileSink],
) -> Form:
    """Parse the body; the part named `file_field` (the only file part allowed) is written through the sink
    `open_sink(filename)` returns. On any error the sink is aborted (its file removed) and the error
    raised."""
    mime, params = parse_options_header(content_type)
    if mime != b"multipart/form-data" or b"boundary" not in params:
        raise FormError("the body must be multipart/form-data with a boundary")
    events: list[tuple[str, bytes | memoryview]] = []
    header: list[bytes] = [b"", b""]

    def on_header_end() -> None:
        events.append(("header", header[0].lower() + b"\x00" + header[1]))
        header[0] = header[1] = b""

    def on_header_field(data: bytes, start: int, end: int) -> None:
        header[0] += data[start:end]

    def on_header_value(data: bytes, start: int, end: int) -> None:
        header[1] += data[start:end]

    parser = MultipartParser(
        params[b"boundary"],
        {
            "on_part_begin": lambda: events.append(("begin", b"")),
            "on_header_field": on_header_field,
            "on_header_value": on_header_value,
            "on_header_end": on_header_end,
            "on_headers_finished": lambda: events.append(("headers", b"")),
            "on_part_data": lambda data, start, end: events.append(("data", memoryview(data)[start:end])),
            "on_part_end": lambda: events.append(("end", b"")),
        },
    )
    form = Form(fields={}, sink=None, filename=None)
    part = _Part()
    try:
        async for chunk in chunks:
            try:
                parser.write(chunk)
            except FormParserError as exc:
                raise FormError(f"malformed multipart body: {exc}") from exc
            for kind, data in events:
                part = await _apply(kind, data, part, form, file_field, open_sink)
            events.clear()
        parser.finalize()
        if part.name or part.headers:
            raise FormError("the multipart body ends inside a part")
    except BaseException:
        if form.sink is not None:
            await form.sink.abort()
        raise
    return form


async def _apply(
    kind: str,
    data: bytes | memoryview,
    part: _Part,
    form: Form,
    file_field: str,
    open_sink: Callable[[str], FileSink],
) -> _Part:
    if kind == "begin":
        return _Part()
    if kind == "header":
        name, _, value = bytes(data).partition(b"\x00")
        part.headers[name] = value
    elif kind == "headers":
        _, options = parse_options_header(part.headers.get(b"content-disposition", b""))
        part.name = options.get(b"name", b"").decode("utf-8", errors="replace")
        raw_filename = options.get(b"filename")
        if raw_filename is not None:
            if part.name != file_field or form.sink is not None:
                raise FormError(f"one file is taken, in the field {file_field!r}")
            part.filename = raw_filename.decode("utf-8", errors="replace")
            form.filename = part.filename
            form.sink = open_sink(part.filename)
            await form.sink.open()
        elif part.name == file_field:
            raise FormError(
                f"the field {file_field!r} must be a file (a filename in its Content-Disposition)"
            )
        elif len(form.fields) >= MAX_FIELDS:
            raise FormError("too many form fields")
    elif kind == "data":
        if part.filename is not None and form.sink is not None:
            await form.sink.write(data)
        else:
            part.value += data
            if len(part.value) > MAX_FIELD_BYTES:
                raise FormError(f"the form field {part.name!r} is longer than {MAX_FIELD_BYTES} bytes")
    elif kind == "end":
        if part.filename is None:
            form.fields[part.name] = part.value.decode("utf-8", errors="replace")
        return _Part()
    return part
