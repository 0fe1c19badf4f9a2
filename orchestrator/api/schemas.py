"""Request and response bodies at the HTTP edge (pydantic lives here and nowhere deeper).

Request bodies refuse unknown fields (422) and take their flags strictly: `"false"` or `0` is not a bool.
"""

from __future__ import annotations

from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, model_validator

COLLECTION_NAME = r"^[A-Za-z0-9_-]{1,64}$"


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid")


class JobOptions(_Request):
    """What a job may change about one run (the pipeline reads them from `Job.options`, a dict)."""

    model_config = ConfigDict(extra="forbid", strict=True)

    include_hidden: bool | None = Field(
        default=None, description="Ingest names starting with a dot; unset: INCLUDE_HIDDEN"
    )
    prune: bool = Field(default=True, description="Remove points of files gone since the last scan")
    documents: bool | None = Field(
        default=None,
        description="Read PDF, DOCX, HTML, Markdown and text files as documents; unset: INGEST_DOCUMENTS",
    )
    retry_failed: bool = Field(
        default=False, description="Process again the files that failed in an earlier run, though unchanged"
    )
    watch: bool = Field(
        default=False,
        description="After the first pass keep watching the folder: new, changed, moved and deleted files "
        "are ingested within seconds, until the job is cancelled",
    )

    def as_job_options(self) -> dict[str, Any]:
        """The dict a job carries: unset options are left out, so the settings' defaults apply (and
        `watch` only when asked for)."""
        return self.model_dump(exclude_none=True, exclude=None if self.watch else {"watch"})


class JobCreate(_Request):
    """What to ingest: exactly one of a directory (`path`), a URL (`url`) or a text (`text`, `title`)."""

    path: str | None = Field(
        default=None,
        min_length=1,
        max_length=4096,
        description="Absolute path of a directory under one of ALLOWED_ROOTS (or UPLOAD_DIR)",
    )
    url: str | None = Field(
        default=None,
        min_length=1,
        max_length=8192,
        description="An http(s) URL: the job downloads it into UPLOAD_DIR (public addresses only, "
        "URL_ALLOWED_NETWORKS aside; URL_MAX_BYTES, URL_TIMEOUT_S), then ingests it",
    )
    text: str | None = Field(
        default=None, min_length=1, description="A text, stored as <title>.txt in UPLOAD_DIR and ingested"
    )
    title: str | None = Field(default=None, min_length=1, max_length=500, description="The text's name")
    collection: str | None = Field(default=None, pattern=COLLECTION_NAME)
    options: JobOptions = Field(default_factory=JobOptions)

    @model_validator(mode="after")
    def _one_source(self) -> JobCreate:
        given = [n for n in ("path", "url", "text") if getattr(self, n) is not None]
        if len(given) != 1:
            raise ValueError("give exactly one of path, url, text")
        if self.title is not None and self.text is None:
            raise ValueError("title names a text: give it with text")
        if self.options.watch and self.path is None:
            raise ValueError("options.watch watches a folder: give it with path")
        if self.url is not None:
            parts = urlsplit(self.url)
            if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
                raise ValueError("url must be an absolute http or https URL")
        return self


class IngestAlias(_Request):
    """Seed-compatible body of POST /ingest."""

    directory_path: str = Field(min_length=1, max_length=4096)
    collection: str | None = Field(default=None, pattern=COLLECTION_NAME)
    options: JobOptions = Field(default_factory=JobOptions)


# What a re-analysis may ask again, cached or not (the image tasks, the image–text vector, the audio tasks).
ReanalyzeTask = Literal["ocr", "faces", "tags", "objects", "caption", "image_text", "asr", "speakers"]


class ReanalyzeBody(_Request):
    tasks: list[ReanalyzeTask] | None = Field(
        default=None,
        max_length=8,
        description="Tasks to run again whatever the cache holds; unset: what the models changed",
    )


class JobAccepted(BaseModel):
    job_id: str
    state: str
    status_url: str


class UploadAccepted(JobAccepted):
    """A stored upload and the job that ingests it."""

    upload_id: str
    path: str = Field(description="Where the file is kept (UPLOAD_DIR/<collection>/<upload_id>/<name>)")
    size: int
    media_type: str = Field(description="What its content is: image, video, audio or document")
    mime: str
    blake3: str = Field(description="blake3 of the content, hex: the content hash search answers carry")
    sha256: str


class StreamOptions(_Request):
    """What a live stream may change (api/streams.py)."""

    model_config = ConfigDict(extra="forbid", strict=True)

    retention_hours: float | None = Field(
        default=None,
        gt=0,
        le=24 * 366,
        description="Segments older than this are deleted with their points; unset: STREAM_RETENTION_HOURS",
    )

    def as_job_options(self) -> dict[str, Any]:
        return self.model_dump(exclude_none=True)


class StreamCreate(_Request):
    """A live stream to record and ingest until it is stopped."""

    url: str = Field(
        min_length=1,
        max_length=8192,
        description="rtsp:// (credentials allowed; never shown) or an HLS playlist http(s)://….m3u8; "
        "public addresses only, URL_ALLOWED_NETWORKS aside",
    )
    collection: str | None = Field(default=None, pattern=COLLECTION_NAME)
    options: StreamOptions = Field(default_factory=StreamOptions)


class StreamAccepted(JobAccepted):
    stream_id: str = Field(description="The stream's id (also its job's id)")
    url: str = Field(description="The URL without credentials")


MediaType = Literal["image", "video", "audio", "document"]


class SearchFilters(_Request):
    """What narrows a search (GET /search takes the same as query parameters)."""

    collection: str | None = Field(default=None, pattern=COLLECTION_NAME)
    limit: int = Field(default=10, ge=1, le=200)
    offset: int = Field(default=0, ge=0, le=800, description="the previous page's next_offset")
    group_by: Literal["media"] | None = Field(
        default=None, description="media: the best moment per file, its other moments under it"
    )
    mode: Literal["hybrid", "dense", "keyword"] = Field(
        default="hybrid", description="hybrid: meaning and keywords fused; dense: meaning; keyword: words"
    )
    media_type: MediaType | None = None
    path_prefix: str | None = Field(default=None, max_length=4096)
    taken_after: float | None = Field(default=None, description="epoch seconds")
    taken_before: float | None = None
    ingested_after: float | None = Field(default=None, description="epoch seconds")
    ingested_before: float | None = None
    person: str | None = Field(
        default=None, max_length=200, description="a person's id or name: seen or heard"
    )
    speaker: str | None = Field(
        default=None, max_length=200, description="a person's id or name: speaks (the matched words)"
    )
    has_text: bool | None = Field(default=None, description="words read on screen or spoken")
    min_duration_s: float | None = Field(default=None, ge=0)
    max_duration_s: float | None = Field(default=None, ge=0)
    language: str | None = Field(default=None, pattern=r"^[a-z]{2,3}$")


class SearchBody(SearchFilters):
    """Words (`query`), or an example: a stored moment (`media_id`) or an image (`image_base64`)."""

    query: str | None = Field(default=None, min_length=1, max_length=2000)
    media_id: str | None = Field(default=None, pattern=r"^[0-9a-fA-F-]{36}$")
    image_base64: str | None = Field(default=None, min_length=4, description="an image file, base64")

    @model_validator(mode="after")
    def _one_kind(self) -> SearchBody:
        given = [n for n in ("query", "media_id", "image_base64") if getattr(self, n) is not None]
        if len(given) != 1:
            raise ValueError("give exactly one of query, media_id, image_base64")
        return self


class PersonPatch(_Request):
    name: str | None = Field(max_length=200, description="the person's name; null or empty clears it")


class PersonMerge(_Request):
    people: list[str] = Field(min_length=1, max_length=1000, description="the people merged into this one")


class PersonSplit(_Request):
    clusters: list[str] = Field(
        min_length=1, max_length=1000, description="this person's face/voice clusters to move to a new person"
    )
